/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the store's and entries' tests share besides the fixture (use
 * setup_dir/teardown): a cache opened with its index complete, deterministic
 * content. Include after <cmocka.h> and tests/unit/unit.h. */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "tests/unit/cache/fixture.h"

static inline struct cache *open_ok(const char *root) {
        struct cache *c = NULL;
        struct error_list errors;
        int r = cache_open(root, &c, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                fail_msg("cache_open: %s", strerror(-r));
        }
        /* The index is built in the background; the counts below want it whole. */
        assert_int_equal(cache_wait_ready(c, 10000), 0);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_true(st.ready);
        return c;
}

/* Deterministic content of n bytes and its digest. */
static inline unsigned char *content(size_t n, unsigned seed, enum digest_algorithm a, struct digest *d) {
        unsigned char *b = malloc(n ? n : 1);
        assert_non_null(b);
        uint32_t x = 2463534242u ^ (seed * 2654435761u); /* xorshift32: seeds give unrelated bytes */
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b[i] = (unsigned char) x;
        }
        assert_int_equal(digest_buffer(a, b, n, d), 0);
        return b;
}
