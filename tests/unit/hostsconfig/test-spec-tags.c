/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for hostsconfig/spec-tags.c: the prefetch tag filter. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "hostsconfig/spec.h"

static char *const tags[] = {
        "latest", "1.25.3", "v1.26.0", "1.26.1", "1.27.0-rc.1", "1.27.0", "2.0.0", "1.26", "alpine",
        "1.26.1-alpine", "2024-05-01", "2024-06-01", "bad tag", "1.26.1", "0.9.0",
};
#define N (sizeof(tags) / sizeof(tags[0]))

/* The selection as "a,b,c". */
static char *pick(const char *regex, const char *semver, unsigned newest) {
        struct spec_prefetch_entry e = { .repository = (char *) "docker.io/library/nginx",
                                         .tag_regex = (char *) regex, .tag_semver = (char *) semver,
                                         .newest = newest };
        size_t *idx = NULL, n = 0;
        assert_int_equal(spec_prefetch_select_tags(&e, tags, N, &idx, &n), 0);
        char *out = calloc(1, 1024);
        assert_non_null(out);
        for (size_t i = 0; i < n; i++) {
                assert_true(idx[i] < N);
                if (i)
                        strcat(out, ",");
                strcat(out, tags[idx[i]]);
        }
        free(idx);
        return out;
}

#define PICK(want, re, sv, nw)                            \
        do {                                              \
                char *got_ = pick((re), (sv), (nw));      \
                bool same_ = strcmp(got_, (want)) == 0;   \
                if (!same_)                               \
                        print_error("got %s\n", got_);    \
                free(got_);                               \
                assert_true(same_);                       \
        } while (0)

static void test_filters(void **state) {
        (void) state;
        /* no filter: every valid tag once; versions by precedence, then the rest reverse-lexically */
        PICK("2.0.0,1.27.0,1.27.0-rc.1,1.26.1,1.26.1-alpine,v1.26.0,1.26,1.25.3,0.9.0,latest,alpine,2024-06-01,"
             "2024-05-01",
             NULL, NULL, 0);
        PICK("1.27.0,1.26.1,v1.26.0,1.26,1.25.3", NULL, ">=1.25 <2", 0);
        PICK("1.26.1,v1.26.0,1.26", NULL, "~1.26", 0);
        PICK("1.27.0,1.26.1", NULL, ">=1.25 <2", 2);
        PICK("1.27.0,1.27.0-rc.1,1.26.1,1.25.3", "^1\\.[0-9]+\\.[0-9]+(-rc\\.[0-9]+)?$", NULL, 0);
        PICK("1.27.0,1.26.1,1.25.3", "^1\\.[0-9]+\\.[0-9]+(-rc\\.[0-9]+)?$", ">=1", 0);
        PICK("2024-06-01", "^20[0-9]{2}-", NULL, 1);
        PICK("", "^2024", ">=0", 0); /* a date is not a version */
        PICK("", "^nothing$", NULL, 3);
        PICK("2.0.0", NULL, "^2 || <0.5", 0);
}

static void test_bad_regex(void **state) {
        (void) state;
        struct spec_prefetch_entry e = { .tag_regex = (char *) "(" };
        size_t *idx = (size_t *) 1, n = 7;
        assert_int_equal(spec_prefetch_select_tags(&e, tags, N, &idx, &n), -22);
        assert_int_equal(n, 7);
        /* an empty list is a selection of nothing */
        struct spec_prefetch_entry all = { .newest = 0 };
        assert_int_equal(spec_prefetch_select_tags(&all, NULL, 0, &idx, &n), 0);
        assert_int_equal(n, 0);
        free(idx);
}

static void test_platform_match(void **state) {
        (void) state;
        assert_true(spec_platform_match("linux/amd64", "linux/amd64"));
        assert_true(spec_platform_match("linux/amd64", "linux/amd64/v3")); /* no variant asked for: any */
        assert_true(spec_platform_match("linux/arm64", "linux/arm64/v8"));
        assert_true(spec_platform_match("linux/arm64/v8", "linux/arm64"));
        assert_true(spec_platform_match("linux/arm", "linux/arm/v7"));
        assert_false(spec_platform_match("linux/arm", "linux/arm/v6"));
        assert_false(spec_platform_match("linux/arm/v6", "linux/arm"));
        assert_false(spec_platform_match("linux/amd64", "linux/arm64"));
        assert_false(spec_platform_match("linux/amd64", "windows/amd64"));
        assert_false(spec_platform_match("linux/amd64", NULL)); /* an index entry without a platform */
        assert_false(spec_platform_match("linux/amd64", "linux"));
        assert_false(spec_platform_match("linux", "linux/amd64"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_filters),
                cmocka_unit_test(test_bad_regex),
                cmocka_unit_test(test_platform_match),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
