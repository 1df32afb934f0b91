/* SPDX-License-Identifier: Apache-2.0 */
#include "common/range.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* Decimal digits only, no sign, no overflow; *p advances past them. */
static bool digits(const char **p, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;
        if (*s < '0' || *s > '9')
                return false;
        for (; *s >= '0' && *s <= '9'; s++) {
                if (v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *p = s;
        *ret = v;
        return true;
}

int range_parse(const char *value, uint64_t size, uint64_t *ret_start, uint64_t *ret_length) {
        const char *p = value;
        uint64_t a = 0, b = 0;
        if (!p)
                return -EINVAL;
        while (*p == ' ' || *p == '\t')
                p++;
        if (strncmp(p, "bytes=", 6) != 0)
                return -EINVAL;
        p += 6;
        while (*p == ' ')
                p++;
        if (*p == '-') { /* suffix: the last b bytes */
                p++;
                if (!digits(&p, &b))
                        return -EINVAL;
                while (*p == ' ' || *p == '\t')
                        p++;
                if (*p)
                        return -EINVAL;
                if (b == 0 || size == 0)
                        return -ERANGE;
                *ret_start = b >= size ? 0 : size - b;
                *ret_length = size - *ret_start;
                return 0;
        }
        if (!digits(&p, &a) || *p++ != '-')
                return -EINVAL;
        bool open = !(*p >= '0' && *p <= '9');
        if (!open && !digits(&p, &b))
                return -EINVAL;
        while (*p == ' ' || *p == '\t')
                p++;
        if (*p) /* several ranges, or garbage */
                return -EINVAL;
        if (!open && b < a)
                return -EINVAL;
        if (a >= size)
                return -ERANGE;
        if (open || b >= size)
                b = size - 1;
        *ret_start = a;
        *ret_length = b - a + 1;
        return 0;
}
