/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/range.c: the Range forms clients send, the edges of
 * the object, and what must be ignored (200) versus refused (416). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "common/range.h"

#define SENTINEL UINT64_C(0xdeadbeefcafef00d)

#define RANGE_OK(v, size, want_start, want_len)                                          \
        do {                                                                             \
                uint64_t s_ = SENTINEL, l_ = SENTINEL;                                   \
                assert_int_equal(range_parse((v), (size), &s_, &l_), 0);                 \
                assert_int_equal(s_, (want_start));                                      \
                assert_int_equal(l_, (want_len));                                        \
        } while (0)

#define RANGE_ERR(v, size, err)                                                          \
        do {                                                                             \
                uint64_t s_ = SENTINEL, l_ = SENTINEL;                                   \
                assert_int_equal(range_parse((v), (size), &s_, &l_), (err));             \
                assert_int_equal(s_, SENTINEL);                                          \
                assert_int_equal(l_, SENTINEL);                                          \
        } while (0)

static void test_forms(void **state) {
        (void) state;
        RANGE_OK("bytes=0-", 100, 0, 100);
        RANGE_OK("bytes=10-", 100, 10, 90);   /* containerd's resume */
        RANGE_OK("bytes=99-", 100, 99, 1);
        RANGE_OK("bytes=0-0", 100, 0, 1);
        RANGE_OK("bytes=10-19", 100, 10, 10);
        RANGE_OK("bytes=10-1000", 100, 10, 90); /* an end past the object is cut to it */
        RANGE_OK("bytes=-10", 100, 90, 10);
        RANGE_OK("bytes=-1000", 100, 0, 100);
        RANGE_OK(" bytes=5-6 ", 100, 5, 2);
        RANGE_OK("bytes=18446744073709551614-", UINT64_MAX, UINT64_MAX - 1, 1);
}

static void test_unsatisfiable(void **state) {
        (void) state;
        RANGE_ERR("bytes=100-", 100, -ERANGE);
        RANGE_ERR("bytes=100-200", 100, -ERANGE);
        RANGE_ERR("bytes=0-", 0, -ERANGE);
        RANGE_ERR("bytes=-0", 100, -ERANGE);
        RANGE_ERR("bytes=-5", 0, -ERANGE);
}

static void test_ignored(void **state) {
        (void) state;
        RANGE_ERR(NULL, 100, -EINVAL);
        RANGE_ERR("", 100, -EINVAL);
        RANGE_ERR("bytes", 100, -EINVAL);
        RANGE_ERR("bytes=", 100, -EINVAL);
        RANGE_ERR("bytes=-", 100, -EINVAL);
        RANGE_ERR("items=0-1", 100, -EINVAL);
        RANGE_ERR("Bytes=0-1", 100, -EINVAL);
        RANGE_ERR("bytes=0-1,5-6", 100, -EINVAL); /* several ranges: 200 with everything */
        RANGE_ERR("bytes=5-4", 100, -EINVAL);
        RANGE_ERR("bytes=+5-", 100, -EINVAL);
        RANGE_ERR("bytes=a-", 100, -EINVAL);
        RANGE_ERR("bytes=1-x", 100, -EINVAL);
        RANGE_ERR("bytes=18446744073709551616-", 100, -EINVAL); /* overflow */
        RANGE_ERR("bytes=-18446744073709551616", 100, -EINVAL);
        RANGE_ERR("bytes=0--1", 100, -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_forms),
                cmocka_unit_test(test_unsatisfiable),
                cmocka_unit_test(test_ignored),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
