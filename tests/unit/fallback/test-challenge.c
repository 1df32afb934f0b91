/* SPDX-License-Identifier: Apache-2.0 */
/* WWW-Authenticate parsing: what registries really send, and what they
 * sometimes get wrong. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fallback/challenge.h"

static void test_docker_hub(void **state) {
        (void) state;
        struct challenge_list l;
        assert_int_equal(challenge_parse("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
                                         "scope=\"repository:library/nginx:pull\"",
                                         &l),
                         0);
        assert_int_equal(l.n, 1);
        assert_string_equal(l.items[0].scheme, "bearer");
        assert_null(l.items[0].token68);
        assert_int_equal(l.items[0].n_params, 3);
        assert_string_equal(challenge_param(&l.items[0], "realm"), "https://auth.docker.io/token");
        assert_string_equal(challenge_param(&l.items[0], "SERVICE"), "registry.docker.io");
        assert_string_equal(challenge_param(&l.items[0], "scope"), "repository:library/nginx:pull");
        assert_null(challenge_param(&l.items[0], "error"));
        challenge_list_done(&l);
}

static void test_commas_and_escapes(void **state) {
        (void) state;
        struct challenge_list l;
        /* Scopes of several repositories are comma-separated inside one quoted string. */
        assert_int_equal(challenge_parse("bearer  realm = \"https://r.example.com/t\" , scope=\"repository:a:pull,push "
                                         "repository:b:pull\", error=insufficient_scope, x=\"say \\\"hi\\\" \\\\ ok\"",
                                         &l),
                         0);
        assert_int_equal(l.n, 1);
        assert_string_equal(challenge_param(&l.items[0], "realm"), "https://r.example.com/t");
        assert_string_equal(challenge_param(&l.items[0], "scope"), "repository:a:pull,push repository:b:pull");
        assert_string_equal(challenge_param(&l.items[0], "error"), "insufficient_scope");
        assert_string_equal(challenge_param(&l.items[0], "x"), "say \"hi\" \\ ok");
        challenge_list_done(&l);
}

static void test_several_challenges(void **state) {
        (void) state;
        struct challenge_list l;
        assert_int_equal(challenge_parse("Basic realm=\"Registry Realm\", Bearer realm=\"https://a.example.com/token\","
                                         "service=reg, Negotiate, NTLM TlRMTVNTUAABAAAAB4IIog==",
                                         &l),
                         0);
        assert_int_equal(l.n, 4);
        assert_string_equal(l.items[0].scheme, "basic");
        assert_string_equal(challenge_param(&l.items[0], "realm"), "Registry Realm");
        const struct challenge *b = challenge_find(&l, "BEARER");
        assert_ptr_equal(b, &l.items[1]);
        assert_string_equal(challenge_param(b, "service"), "reg");
        assert_string_equal(l.items[2].scheme, "negotiate");
        assert_int_equal(l.items[2].n_params, 0);
        assert_null(l.items[2].token68);
        assert_string_equal(l.items[3].token68, "TlRMTVNTUAABAAAAB4IIog==");
        assert_null(challenge_find(&l, "digest"));
        challenge_list_done(&l);

        /* "realm=" with nothing after it is, by the grammar, a token68. */
        assert_int_equal(challenge_parse("Bearer realm=", &l), 0);
        assert_string_equal(l.items[0].token68, "realm=");
        assert_int_equal(l.items[0].n_params, 0);
        challenge_list_done(&l);

        /* Several header lines joined by ", ", with empty elements. */
        assert_int_equal(challenge_parse(" , Basic realm=x,, ,Bearer realm=y ,", &l), 0);
        assert_int_equal(l.n, 2);
        assert_string_equal(challenge_param(&l.items[1], "realm"), "y");
        challenge_list_done(&l);
}

static void test_malformed(void **state) {
        (void) state;
        static const char *const bad[] = {
                "",                                   /* no challenge */
                " , ",                                /* only separators */
                "realm=\"x\"",                        /* parameter without a scheme */
                "Bearer realm=\"unterminated",        /* open quote */
                "Bearer realm=\"a\\",                 /* escape at the end */
                "Bearer realm=\"a\nb\"",              /* line break in a quoted string */
                "Bearer realm=\"a\\\nb\"",            /* ...even escaped (found by the fuzzer) */
                "Bearer realm=\"a\x01b\"",            /* another control character */
                "Bearer realm=\"x\" junk",             /* junk after a quoted value */
                "Bearer realm=\"x\" service=\"y\"",   /* parameters must be comma-separated */
                "Bear\"er realm=x",                   /* not a token */
                "Bearer realm=x=y",                   /* junk after a value */
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct challenge_list l = { .n = 99 };
                int r = challenge_parse(bad[i], &l);
                if (r != -EINVAL)
                        fail_msg("\"%s\": got %d, expected -EINVAL", bad[i], r);
                assert_int_equal(l.n, 99); /* untouched */
        }
}

static void test_limits(void **state) {
        (void) state;
        struct challenge_list l;
        char buf[CHALLENGE_HEADER_MAX + 64];
        size_t n = 0;
        for (int i = 0; i < CHALLENGES_MAX + 1; i++)
                n += (size_t) snprintf(buf + n, sizeof(buf) - n, "%sS%d realm=x", i ? ", " : "", i);
        assert_int_equal(challenge_parse(buf, &l), -E2BIG);
        n = (size_t) snprintf(buf, sizeof(buf), "Bearer ");
        for (int i = 0; i < CHALLENGE_PARAMS_MAX + 1; i++)
                n += (size_t) snprintf(buf + n, sizeof(buf) - n, "%sp%d=v", i ? "," : "", i);
        assert_int_equal(challenge_parse(buf, &l), -E2BIG);
        memset(buf, 'a', CHALLENGE_HEADER_MAX + 1);
        buf[CHALLENGE_HEADER_MAX + 1] = '\0';
        assert_int_equal(challenge_parse(buf, &l), -E2BIG);
        /* Exactly at the limits is fine. */
        n = (size_t) snprintf(buf, sizeof(buf), "Bearer ");
        for (int i = 0; i < CHALLENGE_PARAMS_MAX; i++)
                n += (size_t) snprintf(buf + n, sizeof(buf) - n, "%sp%d=v", i ? "," : "", i);
        assert_int_equal(challenge_parse(buf, &l), 0);
        assert_int_equal(l.items[0].n_params, CHALLENGE_PARAMS_MAX);
        challenge_list_done(&l);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_docker_hub),
                cmocka_unit_test(test_commas_and_escapes),
                cmocka_unit_test(test_several_challenges),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_limits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
