/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Helpers the unit tests share. Include after <cmocka.h>. */

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A string of n copies of c; the test frees it. */
static inline char *unit_repeat(char c, size_t n) {
        char *s = malloc(n + 1);
        assert_non_null(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

static inline int unit_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

/* Removes dir and everything under it, never following links (rm -rf). */
static inline int unit_rm_rf(const char *dir) {
        return nftw(dir, unit_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
