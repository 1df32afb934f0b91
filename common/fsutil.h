/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* File-system helpers. */

#include <sys/types.h>

/* Creates path and its missing parents with mode (like mkdir -p); an existing
 * directory is fine, an existing non-directory is -ENOTDIR. Returns 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);

#include <stddef.h>

/* Writes all of data to fd, resuming after short writes and EINTR. Returns 0 or -errno. */
int write_all(int fd, const void *data, size_t size);

/* Replaces path with data, crash-safely: the bytes go to a temporary file in
 * the same directory, which is fsync'ed, given mode, renamed over path, and the
 * directory fsync'ed. A reader sees the old file or the new, never a mix; on
 * failure the temporary file is removed and path is untouched. Returns 0 or -errno. */
int write_file_atomic(const char *path, const void *data, size_t size, mode_t mode);

/* Reads a whole regular file of at most max bytes into a NUL-terminated buffer
 * (caller frees). -ENOENT when absent, -EFBIG when larger than max. */
int read_file_bounded(const char *path, size_t max, char **ret, size_t *ret_size);

/* fsyncs the directory that holds path, so a rename, unlink or mkdir there is durable. */
int fsync_dir_of(const char *path);
