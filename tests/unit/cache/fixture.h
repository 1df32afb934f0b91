/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A cache on a fresh temporary directory for each test, as cmocka setup and
 * teardown functions (teardown closes f->cache when there is one). Include
 * after <cmocka.h> and tests/unit/unit.h. */

#include <stdio.h>
#include <stdlib.h>

#include "cache/cache.h"

struct fixture {
        char root[64];
        struct cache *cache;
};

/* The directory alone (f->cache NULL): for tests that open caches themselves. */
static inline int setup_dir(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        snprintf(f->root, sizeof(f->root), "/tmp/layerd-test-cache-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        *state = f;
        return 0;
}

static inline int setup(void **state) {
        struct error_list errors;
        setup_dir(state);
        struct fixture *f = *state;
        assert_int_equal(cache_open(f->root, &f->cache, &errors), 0);
        return 0;
}

static inline int teardown(void **state) {
        struct fixture *f = *state;
        cache_close(f->cache);
        unit_rm_rf(f->root);
        free(f);
        return 0;
}

/* A fresh cache on the same directory: what it keeps in memory starts empty. */
static inline void reopen(struct fixture *f) {
        struct error_list errors;
        cache_close(f->cache);
        assert_int_equal(cache_open(f->root, &f->cache, &errors), 0);
}
