/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/json.c: escapes, well-formed UTF-8 kept, anything
 * else (a cut sequence, an overlong form, a surrogate, a stray byte) written
 * as U+FFFD, so what layerd status prints always parses. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "common/json.h"

static void expect_json(const char *in, const char *want) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        assert_non_null(f);
        json_write_string(f, in);
        assert_int_equal(fclose(f), 0);
        assert_string_equal(buf, want);
        free(buf);
}

static void test_escapes(void **state) {
        (void) state;
        expect_json("", "\"\"");
        expect_json("a\"b\\c", "\"a\\\"b\\\\c\"");
        expect_json("tab\there\n", "\"tab\\u0009here\\u000a\"");
}

static void test_utf8(void **state) {
        (void) state;
        /* Well-formed: 2, 3 and 4 bytes, at the ends of their ranges. */
        expect_json("caf\xc3\xa9", "\"caf\xc3\xa9\"");
        expect_json("\xe2\x82\xac \xef\xbf\xbd", "\"\xe2\x82\xac \xef\xbf\xbd\"");
        expect_json("\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", "\"\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"");
        /* A sequence cut short (snprintf of a reason), at the end and before ASCII. */
        expect_json("ab\xe2\x82", "\"ab\\ufffd\\ufffd\"");
        expect_json("\xc3x", "\"\\ufffdx\"");
        /* Overlong forms, a surrogate, past U+10FFFF, stray continuation bytes, 0xff. */
        expect_json("\xc0\xaf", "\"\\ufffd\\ufffd\"");
        expect_json("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");
        expect_json("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");
        expect_json("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
        expect_json("\x80\xbf\xff", "\"\\ufffd\\ufffd\\ufffd\"");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_escapes),
                cmocka_unit_test(test_utf8),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
