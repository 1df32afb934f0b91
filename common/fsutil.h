/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* File-system helpers. */

#include <sys/types.h>

/* Creates path and its missing parents with mode (like mkdir -p); an existing
 * directory is fine, an existing non-directory is -ENOTDIR. Returns 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);
