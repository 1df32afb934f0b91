/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/base64.c (docker config.json "auth" fields). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"

static void ok(const char *in, const char *want, size_t want_size) {
        char *out = (char *) 0x1;
        size_t size = 12345;
        assert_int_equal(base64_decode(in, &out, &size), 0);
        assert_int_equal(size, want_size);
        assert_memory_equal(out, want, want_size);
        assert_int_equal(out[size], '\0');
        free(out);
}

static void bad(const char *in) {
        char *out = (char *) 0x1;
        size_t size = 12345;
        assert_int_equal(base64_decode(in, &out, &size), -EINVAL);
        assert_ptr_equal(out, (char *) 0x1); /* untouched on failure */
        assert_int_equal(size, 12345);
}

static void test_decode(void **state) {
        (void) state;
        ok("", "", 0);
        ok("Zg==", "f", 1);
        ok("Zm8=", "fo", 2);
        ok("Zm9v", "foo", 3);
        ok("dXNlcjpwYXNz", "user:pass", 9);
        ok("AAE=", "\0\1", 2); /* binary, NUL inside */
        ok("+/+/", "\xfb\xff\xbf", 3);
}

static void test_refused(void **state) {
        (void) state;
        bad("Zg");      /* padding required */
        bad("Zg=");
        bad("Z===");
        bad("Zg==Zg=="); /* padding only at the end */
        bad("Zm9v\n");
        bad("Zm 9v");
        bad("Zm9-");    /* URL-safe alphabet is another encoding */
        bad("=Zm9");
}

static void enc(const char *in, size_t size, const char *want) {
        char *got = NULL;
        assert_int_equal(base64_encode(in, size, &got), 0);
        assert_string_equal(got, want);
        free(got);
}

static void test_encode(void **state) {
        (void) state;
        enc("", 0, "");
        enc("f", 1, "Zg==");
        enc("fo", 2, "Zm8=");
        enc("foo", 3, "Zm9v");
        enc("user:pass", 9, "dXNlcjpwYXNz");
        enc("\0\1", 2, "AAE=");
        enc("\xfb\xff\xbf", 3, "+/+/");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decode),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_encode),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
