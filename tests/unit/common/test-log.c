/* SPDX-License-Identifier: Apache-2.0 */
/* log_quote(): what may stand inside a quoted log field or a JSON string, and
 * the mark of a cut. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/log.h"

static void test_quote(void **state) {
        (void) state;
        char out[64];
        assert_string_equal(log_quote(out, sizeof(out), "plain text: a/b-c_d.e 1+1=2"), "plain text: a/b-c_d.e 1+1=2");
        assert_string_equal(log_quote(out, sizeof(out), "say \"hi\""), "say 'hi'");
        assert_string_equal(log_quote(out, sizeof(out), "a\\b\nc\rd\te\x7f" "f\x1b[31m"), "a?b?c?d?e?f?[31m");
        assert_string_equal(log_quote(out, sizeof(out), "caf\xc3\xa9"), "caf??");
        assert_string_equal(log_quote(out, sizeof(out), ""), "");
}

static void test_cut(void **state) {
        (void) state;
        char out[8];
        assert_string_equal(log_quote(out, sizeof(out), "1234567"), "1234567"); /* fits exactly */
        assert_string_equal(log_quote(out, sizeof(out), "12345678"), "1234...");
        char tiny[3];
        assert_string_equal(log_quote(tiny, sizeof(tiny), "abc"), "ab"); /* no room for a mark */
        char none[1] = { 'x' };
        log_quote(none, 0, "abc"); /* nothing written */
        assert_int_equal(none[0], 'x');
        assert_string_equal(log_quote(none, 1, "abc"), "");
}

static void test_in_place(void **state) {
        (void) state;
        char s[16] = "a\"b\nc";
        assert_ptr_equal(log_quote(s, sizeof(s), s), s);
        assert_string_equal(s, "a'b?c");
}

static void test_quotef(void **state) {
        (void) state;
        char out[16];
        assert_string_equal(log_quotef(out, sizeof(out), "%s=%d", "k\"", 7), "k'=7");
        assert_string_equal(log_quotef(out, sizeof(out), "%s", "0123456789abcdefXYZ"), "0123456789ab...");
        assert_string_equal(log_quotef(out, sizeof(out), "%s", "0123456789abcde"), "0123456789abcde");
        assert_string_equal(log_quotef(out, sizeof(out), "%.*s", 3, "line\nnext"), "lin");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_quote),
                cmocka_unit_test(test_cut),
                cmocka_unit_test(test_in_place),
                cmocka_unit_test(test_quotef),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
