/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A growable byte buffer with a hard cap, after curl's dynbuf: every buffer
 * fed from the network, a file or a user has a most it will hold, and says
 * so when it is reached instead of growing without bound. The bytes are
 * always followed by a NUL (not counted in len), so text can be used as a C
 * string at any time. A failed append leaves the buffer as it was.
 *
 * Also here: the same doubling growth for arrays of any type (array_reserve). */

#include <stdarg.h>
#include <stddef.h>

#include "common/macro.h"

struct buf {
        char *data; /* NULL until the first byte (or reserve); then NUL-terminated */
        size_t len; /* bytes held, NUL not counted */
        size_t cap; /* bytes allocated, NUL included */
        size_t max; /* the most len may reach */
};

/* An empty buffer that holds at most max bytes; nothing is allocated yet. A
 * zeroed struct buf with .max set is the same. */
#define BUF_INIT(m) ((struct buf) { .max = (m) })

/* Makes room for size more bytes (and the NUL) with one allocation of
 * exactly that, so that appends up to it allocate nothing (for a caller that
 * accounts for what the buffer holds, see common/budget.h). -EFBIG when len
 * would pass max, -ENOMEM; either way the buffer is unchanged. */
int buf_reserve(struct buf *b, size_t size);

/* Appends size bytes (data may be NULL when size is 0). -EFBIG when len would
 * pass max, -ENOMEM; either way nothing is appended. */
int buf_append(struct buf *b, const void *data, size_t size);

/* Appends a C string, without its NUL. Fails like buf_append(). */
int buf_append_str(struct buf *b, const char *s);

/* Appends one byte. Fails like buf_append(). */
int buf_append_char(struct buf *b, char c);

/* Appends formatted text. Fails like buf_append() (a format error is -EINVAL). */
int buf_printf(struct buf *b, const char *fmt, ...) _printf_(2, 3);
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) _printf_(2, 0);

/* The bytes as a C string: "" when none were appended. Valid until the next
 * change to the buffer. */
const char *buf_str(const struct buf *b);

/* Hands the bytes (NUL-terminated, len of them) to the caller, who frees
 * them, and leaves the buffer empty (max kept). NULL only when out of memory
 * (an empty buffer gives an allocated ""). */
char *buf_take(struct buf *b, size_t *ret_len);

/* Empties the buffer, keeping its memory for reuse. */
void buf_reset(struct buf *b);

/* Frees the memory; the buffer is then empty (max kept) and can be reused. */
void buf_free(struct buf *b);

static inline void buf_freep(struct buf *b) {
        buf_free(b);
}
#define _cleanup_buf_ _cleanup_(buf_freep)

/* Makes room for n elements of size bytes in *array, whose allocated count is
 * *cap: when *cap < n, grows it by doubling (at least to min_cap) and updates
 * both. -EFBIG when n is more than max, -ENOMEM; either way *array and *cap
 * are unchanged. For lists built one element at a time. */
int array_reserve(void **array, size_t *cap, size_t n, size_t size, size_t min_cap, size_t max);

/* array_reserve() for a typed pointer: ARRAY_RESERVE(v, cap, n + 1, 16, SIZE_MAX). */
#define ARRAY_RESERVE(array, cap, n, min_cap, max)                                                  \
        ({                                                                                      \
                void *_a_ = (array);                                                            \
                int _r_ = array_reserve(&_a_, (cap), (n), sizeof(*(array)), (min_cap), (max));   \
                (array) = _a_;                                                                  \
                _r_;                                                                            \
        })
