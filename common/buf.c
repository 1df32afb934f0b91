/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

#define BUF_MIN_CAP 64

/* Makes room for size more bytes and the NUL. */
static int buf_grow(struct buf *b, size_t size) {
        if (b->len > b->max || size > b->max - b->len || b->len + size == SIZE_MAX)
                return -EFBIG;
        size_t need = b->len + size + 1; /* the NUL too */
        if (need <= b->cap)
                return 0;
        /* Doubling keeps appends amortised O(1); the cap bounds the last step. */
        size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
        while (cap < need && cap <= SIZE_MAX / 2)
                cap *= 2;
        if (cap < need)
                cap = need;
        if (b->max < SIZE_MAX && cap > b->max + 1)
                cap = b->max + 1;
        char *data = realloc(b->data, cap);
        if (!data)
                return -ENOMEM;
        b->data = data;
        b->cap = cap;
        return 0;
}

int buf_reserve(struct buf *b, size_t size) {
        if (b->len > b->max || size > b->max - b->len || b->len + size == SIZE_MAX)
                return -EFBIG;
        size_t need = b->len + size + 1;
        if (need <= b->cap)
                return 0;
        char *data = realloc(b->data, need);
        if (!data)
                return -ENOMEM;
        if (!b->data)
                data[0] = '\0';
        b->data = data;
        b->cap = need;
        return 0;
}

int buf_append(struct buf *b, const void *data, size_t size) {
        int r = buf_grow(b, size);
        if (r < 0)
                return r;
        if (size > 0)
                memcpy(b->data + b->len, data, size);
        b->len += size;
        b->data[b->len] = '\0';
        return 0;
}

int buf_append_str(struct buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

int buf_append_char(struct buf *b, char c) {
        return buf_append(b, &c, 1);
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap) {
        va_list copy;
        va_copy(copy, ap);
        char small[256];
        int n = vsnprintf(small, sizeof(small), fmt, copy);
        va_end(copy);
        if (n < 0)
                return -EINVAL;
        if ((size_t) n < sizeof(small))
                return buf_append(b, small, (size_t) n);
        /* Too long for the stack: format straight into the buffer. */
        int r = buf_grow(b, (size_t) n);
        if (r < 0)
                return r;
        vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        b->len += (size_t) n;
        return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = buf_vprintf(b, fmt, ap);
        va_end(ap);
        return r;
}

const char *buf_str(const struct buf *b) {
        return b->data ? b->data : "";
}

char *buf_take(struct buf *b, size_t *ret_len) {
        char *data = b->data ? b->data : strdup("");
        if (!data)
                return NULL;
        if (ret_len)
                *ret_len = b->len;
        *b = BUF_INIT(b->max);
        return data;
}

void buf_reset(struct buf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = '\0';
}

void buf_free(struct buf *b) {
        free(b->data);
        *b = BUF_INIT(b->max);
}

int array_reserve(void **array, size_t *cap, size_t n, size_t size, size_t min_cap, size_t max) {
        if (n > max)
                return -EFBIG;
        if (n <= *cap)
                return 0;
        size_t c = *cap ? *cap : (min_cap ? min_cap : 1);
        while (c < n && c <= SIZE_MAX / 2)
                c *= 2;
        if (c < n)
                c = n;
        if (c > max)
                c = max;
        /* More bytes than there are addresses: refused before the allocator sees it. */
        if (size && n > SIZE_MAX / size)
                return -ENOMEM;
        if (size && c > SIZE_MAX / size)
                c = SIZE_MAX / size;
        void *v = reallocarray(*array, c, size);
        if (!v)
                return -ENOMEM;
        *array = v;
        *cap = c;
        return 0;
}
