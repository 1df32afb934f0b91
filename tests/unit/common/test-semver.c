/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/semver.c: tag versions, precedence, and the ranges
 * of the prefetch tag filter (npm's meaning of partial versions, ~ and ^). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "common/semver.h"

static struct semver V(const char *s) {
        struct semver v;
        assert_int_equal(semver_parse(s, &v), 0);
        return v;
}

static bool M(const char *range, const char *tag) {
        struct semver v = V(tag);
        return semver_range_match(range, &v);
}

static void test_parse(void **state) {
        (void) state;
        struct semver v;
        v = V("v1.2.3");
        assert_int_equal(v.major, 1);
        assert_int_equal(v.minor, 2);
        assert_int_equal(v.patch, 3);
        assert_int_equal(v.parts, 3);
        assert_string_equal(v.pre, "");
        v = V("1.27");
        assert_int_equal(v.minor, 27);
        assert_int_equal(v.patch, 0);
        assert_int_equal(v.parts, 2);
        v = V("1.2.3-rc.1");
        assert_string_equal(v.pre, "rc.1");
        v = V("7");
        assert_int_equal(v.major, 7);
        v = V("1.2.3-alpine3.19");
        assert_string_equal(v.pre, "alpine3.19");
        memset(&v, 0x55, sizeof(v));
        const char *bad[] = { "latest", "", "v", "1.", "1.2.3.4", "1..2", "1.2_3", "V1.2", "1.2.3-", "1.2.3+b",
                              "x1", "1.2.3-a_b", "1234567890123", "2024-06-01", "1.2-rc1" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(semver_parse(bad[i], &v), -EINVAL);
        assert_int_equal(v.major, 0x5555555555555555ULL); /* untouched on failure */
}

static int C(const char *a, const char *b) {
        struct semver x = V(a), y = V(b);
        return semver_compare(&x, &y);
}

static void test_compare(void **state) {
        (void) state;
        assert_true(C("1.2.3", "1.2.4") < 0);
        assert_true(C("1.10.0", "1.9.9") > 0);
        assert_true(C("2", "1.99.99") > 0);
        assert_int_equal(C("1.2", "v1.2.0"), 0);
        /* semver.org 11.4: 1.0.0-alpha < -alpha.1 < -alpha.beta < -beta < -beta.2 < -beta.11 < -rc.1 < 1.0.0 */
        const char *order[] = { "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                                "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0" };
        for (size_t i = 0; i + 1 < sizeof(order) / sizeof(order[0]); i++) {
                assert_true(C(order[i], order[i + 1]) < 0);
                assert_true(C(order[i + 1], order[i]) > 0);
        }
        assert_int_equal(C("1.0.0-rc.01", "1.0.0-rc.1"), 0);
}

static void test_ranges(void **state) {
        (void) state;
        assert_true(M(">=1.7 <2", "1.7.0"));
        assert_true(M(">=1.7 <2", "v1.9.12"));
        assert_false(M(">=1.7 <2", "1.6.9"));
        assert_false(M(">=1.7 <2", "2.0.0"));
        /* partial versions cover every version they name */
        assert_true(M("1.2", "1.2.9"));
        assert_false(M("1.2", "1.3.0"));
        assert_true(M("=1.2.3", "1.2.3"));
        assert_false(M("1.2.3", "1.2.4"));
        assert_true(M("1.x", "1.99.0"));
        assert_false(M("1.x", "2.0.0"));
        assert_true(M("*", "0.0.1"));
        assert_true(M(">1.2", "1.3.0"));
        assert_false(M(">1.2", "1.2.9"));
        assert_true(M(">1.2.3", "1.2.4"));
        assert_false(M(">1.2.3", "1.2.3"));
        assert_true(M("<=1.2", "1.2.9"));
        assert_false(M("<=1.2", "1.3.0"));
        assert_true(M("<=1.2.3", "1.2.3"));
        assert_false(M("<1.2", "1.2.0"));
        /* tilde: patch updates (minor ones given only a major) */
        assert_true(M("~1.27", "1.27.4"));
        assert_false(M("~1.27", "1.28.0"));
        assert_true(M("~1.2.3", "1.2.9"));
        assert_false(M("~1.2.3", "1.2.2"));
        assert_true(M("~1", "1.9.0"));
        assert_false(M("~1", "2.0.0"));
        /* caret: up to the first non-zero part */
        assert_true(M("^1.2.3", "1.9.0"));
        assert_false(M("^1.2.3", "2.0.0"));
        assert_true(M("^0.2.3", "0.2.9"));
        assert_false(M("^0.2.3", "0.3.0"));
        assert_true(M("^0.0.3", "0.0.3"));
        assert_false(M("^0.0.3", "0.0.4"));
        assert_false(M("^0.0", "0.1.0"));
        assert_true(M("^0", "0.9.0"));
        /* alternatives */
        assert_true(M("~1.27 || ^2", "2.5.0"));
        assert_true(M("~1.27 || ^2", "1.27.1"));
        assert_false(M("~1.27 || ^2", "1.28.0"));
        /* prereleases never match (npm, with ranges that cannot name one) */
        assert_false(M(">=1.2", "1.3.0-rc1"));
        assert_false(M("*", "1.0.0-alpha"));
}

static void test_valid(void **state) {
        (void) state;
        const char *good[] = { ">=1.7 <2", "~1.27 || ^2", "1.x", "*", "v1.2.3", "  >1  ", "1.2.x", "=1", "1.X.*" };
        const char *bad[] = { "", " ", "|| 1", "1 ||", ">=1.x.2.3", "1.x.3", "latest", ">= 1", "1.2.3.4", "!1",
                              "1 |", "1.2-rc1" };
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_true(semver_range_is_valid(good[i]));
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_false(semver_range_is_valid(bad[i]));
                struct semver v = V("1.0.0");
                assert_false(semver_range_match(bad[i], &v));
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_compare),
                cmocka_unit_test(test_ranges),
                cmocka_unit_test(test_valid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
