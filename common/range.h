/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The Range request header (RFC 9110 section 14.2) for one byte range, the
 * forms containerd and other clients send: "bytes=A-", "bytes=A-B",
 * "bytes=-N" (the last N bytes). */

#include <stdint.h>

/* A Content-Range value or header text: "bytes ", three 20-digit numbers, '-' and '/', NUL. */
#define CONTENT_RANGE_MAX 96

/* Applies value to an object of size bytes. Returns 0 with the range to send
 * (start, and length >= 1); -ERANGE when no byte of it exists (answer 416
 * with "Content-Range: bytes *\/size"); -EINVAL when the header is not one
 * byte range this parser takes (several ranges, another unit, malformed),
 * which RFC 9110 lets a server ignore: answer 200 with the whole object. */
int range_parse(const char *value, uint64_t size, uint64_t *ret_start, uint64_t *ret_length);
