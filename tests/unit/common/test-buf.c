/* SPDX-License-Identifier: Apache-2.0 */
/* The capped buffer: appends up to the cap and not a byte past it, always
 * NUL-terminated, printf short and long, ownership handed over, reuse; and
 * array_reserve()'s growth and bound. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <string.h>

#include "common/buf.h"

static void test_append(void **state) {
        (void) state;
        _cleanup_buf_ struct buf b = BUF_INIT(10);
        assert_string_equal(buf_str(&b), "");
        assert_null(b.data); /* nothing allocated before the first byte */
        assert_int_equal(buf_append(&b, NULL, 0), 0);
        assert_int_equal(buf_append(&b, "abc", 3), 0);
        assert_int_equal(buf_append_char(&b, 'd'), 0);
        assert_int_equal(buf_append_str(&b, "efg"), 0);
        assert_int_equal(b.len, 7);
        assert_string_equal(b.data, "abcdefg");
        assert_true(b.cap <= 11); /* never more than the cap and its NUL */

        /* Past the cap: refused whole, the buffer as it was. */
        assert_int_equal(buf_append(&b, "hijk", 4), -EFBIG);
        assert_int_equal(b.len, 7);
        assert_string_equal(b.data, "abcdefg");
        assert_int_equal(buf_append(&b, "hij", 3), 0);
        assert_string_equal(b.data, "abcdefghij");
        assert_int_equal(buf_append_char(&b, 'x'), -EFBIG);
        assert_int_equal(buf_append(&b, NULL, 0), 0);
        assert_int_equal(buf_append(&b, "x", SIZE_MAX), -EFBIG);

        /* Binary data keeps its NULs and still ends in one. */
        buf_reset(&b);
        assert_int_equal(b.len, 0);
        assert_string_equal(buf_str(&b), "");
        assert_int_equal(buf_append(&b, "a\0b", 3), 0);
        assert_memory_equal(b.data, "a\0b\0", 4);
}

static void test_unbounded_max(void **state) {
        (void) state;
        _cleanup_buf_ struct buf b = BUF_INIT(SIZE_MAX);
        assert_int_equal(buf_append(&b, "a", 1), 0);
        assert_int_equal(buf_append(&b, "x", SIZE_MAX), -EFBIG); /* no wrap-around */
        assert_int_equal(buf_append(&b, "x", SIZE_MAX - 1), -EFBIG);
        assert_string_equal(b.data, "a");
        struct buf zero = {};
        assert_int_equal(buf_append(&zero, "a", 1), -EFBIG); /* a zero cap holds nothing */
}

static void test_printf(void **state) {
        (void) state;
        _cleanup_buf_ struct buf b = BUF_INIT(1000);
        assert_int_equal(buf_printf(&b, "%s=%d", "a", 1), 0);
        assert_int_equal(buf_printf(&b, "%s", ""), 0);
        assert_string_equal(b.data, "a=1");
        /* Longer than the formatting's stack buffer. */
        char *big = unit_repeat('z', 600);
        assert_int_equal(buf_printf(&b, " %s.", big), 0);
        assert_int_equal(b.len, 3 + 1 + 600 + 1);
        assert_int_equal(b.data[b.len - 1], '.');
        assert_int_equal(b.data[b.len], '\0');
        /* Past the cap, short or long: nothing appended. */
        size_t before = b.len;
        assert_int_equal(buf_printf(&b, "%s", big), -EFBIG);
        assert_int_equal(b.len, before);
        assert_int_equal(b.data[b.len], '\0');
        assert_int_equal(buf_printf(&b, "%0*d", (int) (1000 - before + 1), 7), -EFBIG);
        assert_int_equal(buf_printf(&b, "%0*d", (int) (1000 - before), 7), 0);
        assert_int_equal(b.len, 1000);
        free(big);
}

static void test_take(void **state) {
        (void) state;
        struct buf b = BUF_INIT(100);
        size_t len = 99;
        char *s = buf_take(&b, &len);
        assert_non_null(s); /* an empty buffer gives "" */
        assert_string_equal(s, "");
        assert_int_equal(len, 0);
        free(s);

        assert_int_equal(buf_append_str(&b, "hello"), 0);
        s = buf_take(&b, &len);
        assert_string_equal(s, "hello");
        assert_int_equal(len, 5);
        assert_null(b.data);
        assert_int_equal(b.len, 0);
        assert_int_equal(b.max, 100); /* reusable as it was */
        assert_int_equal(buf_append_str(&b, "again"), 0);
        assert_string_equal(buf_str(&b), "again");
        free(s);
        buf_free(&b);
        assert_null(b.data);
        assert_int_equal(b.max, 100);
        buf_free(&b); /* twice is harmless */
}

static void test_grows(void **state) {
        (void) state;
        _cleanup_buf_ struct buf b = BUF_INIT(1 << 20);
        for (int i = 0; i < 100000; i++)
                assert_int_equal(buf_append_char(&b, (char) ('a' + i % 26)), 0);
        assert_int_equal(b.len, 100000);
        assert_int_equal(b.data[99999], 'a' + 99999 % 26);
        assert_int_equal(b.data[100000], '\0');
        assert_true(b.cap < 2 * 100001 + 64);
}

static void test_reserve(void **state) {
        (void) state;
        _cleanup_buf_ struct buf b = BUF_INIT(100);
        assert_int_equal(buf_reserve(&b, 40), 0);
        assert_int_equal(b.cap, 41); /* exactly: a caller accounting for it knows what it holds */
        assert_string_equal(buf_str(&b), "");
        char *at = b.data;
        for (int i = 0; i < 40; i++)
                assert_int_equal(buf_append_char(&b, 'x'), 0);
        assert_ptr_equal(b.data, at); /* nothing allocated up to the reserve */
        assert_int_equal(b.cap, 41);
        assert_int_equal(buf_reserve(&b, 10), 0);
        assert_int_equal(b.cap, 51);
        assert_int_equal(buf_reserve(&b, 5), 0); /* room already */
        assert_int_equal(b.cap, 51);
        assert_int_equal(buf_reserve(&b, 61), -EFBIG);
        assert_int_equal(b.cap, 51);
        assert_int_equal(b.len, 40);
}

static void test_array_reserve(void **state) {
        (void) state;
        int *v = NULL;
        size_t cap = 0;
        assert_int_equal(ARRAY_RESERVE(v, &cap, 1, 16, 100), 0);
        assert_int_equal(cap, 16);
        assert_non_null(v);
        for (int i = 0; i < 16; i++)
                v[i] = i;
        assert_int_equal(ARRAY_RESERVE(v, &cap, 16, 16, 100), 0); /* room already */
        assert_int_equal(cap, 16);
        assert_int_equal(ARRAY_RESERVE(v, &cap, 17, 16, 100), 0);
        assert_int_equal(cap, 32);
        assert_int_equal(v[15], 15);
        assert_int_equal(ARRAY_RESERVE(v, &cap, 90, 16, 100), 0);
        assert_int_equal(cap, 100); /* bounded by the most */
        int *before = v;
        assert_int_equal(ARRAY_RESERVE(v, &cap, 101, 16, 100), -EFBIG);
        assert_ptr_equal(v, before);
        assert_int_equal(cap, 100);
        free(v);

        /* A count whose bytes would overflow is refused, not wrapped. */
        v = NULL;
        cap = 0;
        assert_int_equal(ARRAY_RESERVE(v, &cap, SIZE_MAX / 2, 1, SIZE_MAX), -ENOMEM);
        assert_null(v);
        assert_int_equal(cap, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_append),        cmocka_unit_test(test_unbounded_max),
                cmocka_unit_test(test_printf),        cmocka_unit_test(test_take),
                cmocka_unit_test(test_grows),         cmocka_unit_test(test_array_reserve),
                cmocka_unit_test(test_reserve),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
