/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Standard base64 (RFC 4648 section 4) over libcrypto, for docker config.json
 * "auth" fields. */

#include <stddef.h>

/* Decodes s (padding required, no whitespace) into a NUL-terminated buffer
 * the caller frees; *ret_size excludes the NUL. -EINVAL for malformed input. */
int base64_decode(const char *s, char **ret, size_t *ret_size);

/* Encodes size bytes of data, padded, into a NUL-terminated buffer the caller
 * frees (and wipes, if data was a secret). */
int base64_encode(const void *data, size_t size, char **ret);
