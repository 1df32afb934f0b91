/* SPDX-License-Identifier: Apache-2.0 */
/* containerd versions as containerd and its packagers spell them, normalised
 * to what hosts.containerd_version holds; and the spec's own version grammar. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "common/macro.h"
#include "hostsconfig/spec.h"
#include "hostsconfig/spec-internal.h"

static void assert_normalized(const char *text, const char *want, unsigned want_code) {
        char v[SPEC_CONTAINERD_VERSION_MAX] = "unchanged";
        unsigned code = 1;
        int r = spec_containerd_version_normalize(text, v, &code);
        if (r != 0)
                fail_msg("\"%s\": %d", text, r);
        assert_string_equal(v, want);
        assert_int_equal(code, want_code);
}

static void assert_no_version(const char *text) {
        char v[SPEC_CONTAINERD_VERSION_MAX] = "unchanged";
        unsigned code = 1;
        assert_int_equal(spec_containerd_version_normalize(text, v, &code), -EINVAL);
        assert_string_equal(v, "unchanged"); /* written only on success */
        assert_int_equal(code, 1);
}

static void test_as_containerd_says_it(void **state) {
        (void) state;
        assert_normalized("1.6.20~ds1", "1.6.20", 10620);           /* Debian 12, over the socket */
        assert_normalized("v2.0.7", "2.0.7", 20007);                /* upstream's release binaries */
        assert_normalized("1.7.24-0ubuntu1", "1.7.24", 10724);      /* Ubuntu */
        assert_normalized("2.1.0-rc.1", "2.1.0", 20100);            /* a prerelease reads the same keys */
        assert_normalized("1.7.27+unknown", "1.7.27", 10727);
        assert_normalized("1.7", "1.7.0", 10700);
        assert_normalized("0.0.1", "0.0.1", 1);
        assert_normalized("99.99.99", "99.99.99", 999999);
}

/* `containerd --version`: the version is the first word that is one. */
static void test_version_output(void **state) {
        (void) state;
        assert_normalized("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n", "1.6.20",
                          10620);
        assert_normalized("containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n", "1.7.27",
                          10727);
        assert_normalized("containerd github.com/containerd/containerd/v2 v2.0.7 1b8b6b6a2f5b\n", "2.0.7", 20007);
        assert_normalized("\t  v1.6.38\r\n", "1.6.38", 10638);
}

static void test_not_versions(void **state) {
        (void) state;
        assert_no_version("");
        assert_no_version("   \n");
        assert_no_version("containerd");
        assert_no_version("containerd github.com/containerd/containerd/v2"); /* "v2" alone is no version */
        assert_no_version("2");
        assert_no_version("v");
        assert_no_version("1.");
        assert_no_version(".6.20");
        assert_no_version("1.6.20.4");   /* four parts */
        assert_no_version("1.6.20abc");  /* no suffix separator */
        assert_no_version("1.100.0");    /* over 99: no room in the code */
        assert_no_version("100.1.0");
        assert_no_version("1.6.123");
        assert_no_version("V1.6.20");
        assert_no_version("x1.6.20");
        assert_no_version(NULL);
}

static void test_spec_grammar(void **state) {
        (void) state;
        unsigned code = 7;
        assert_int_equal(spec_version_code("1.6", &code), 0);
        assert_int_equal(code, 10600);
        assert_int_equal(spec_version_code("2.0.7", &code), 0);
        assert_int_equal(code, 20007);
        assert_int_equal(spec_version_code("1.7.32", &code), 0);
        assert_int_equal(code, 10732);
        static const char *const bad[] = { "2", "v1.7", "1.7.100", "1.6.20~ds1", "auto", "", "1..2", "1.2.3.4", "1.2 " };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                code = 7;
                assert_int_equal(spec_version_code(bad[i], &code), -EINVAL);
                assert_int_equal(code, 7);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_as_containerd_says_it),
                cmocka_unit_test(test_version_output),
                cmocka_unit_test(test_not_versions),
                cmocka_unit_test(test_spec_grammar),
        };
        return cmocka_run_group_tests_name("spec-version", tests, NULL, NULL);
}
