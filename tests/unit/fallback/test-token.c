/* SPDX-License-Identifier: Apache-2.0 */
/* The token flow's pure parts: a token endpoint's answer (distribution's
 * "token" and OAuth2's "access_token", lifetimes, a rotated refresh token)
 * and the OAuth2 refresh-token grant's form body. The exchanges themselves
 * are tested against the fixture in test-fallback.c and
 * tests/integration/test-credentials.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fallback/fallback-internal.h"

static int parse(const char *json, char **token, uint64_t *ttl, char **refresh) {
        char reason[128] = "";
        int r = fallback_token_parse(json, strlen(json), token, ttl, refresh, reason, sizeof(reason));
        if (r < 0)
                assert_true(reason[0]);
        return r;
}

static void test_answer(void **state) {
        (void) state;
        char *token = NULL, *refresh = (char *) 0x1;
        uint64_t ttl = 0;
        /* distribution's form: the token, 60 s without expires_in (less the early renewal). */
        assert_int_equal(parse("{\"token\": \"abc\"}", &token, &ttl, &refresh), 0);
        assert_string_equal(token, "abc");
        assert_int_equal(ttl, 54000);
        assert_null(refresh);
        free(token);

        /* OAuth2's: access_token, expires_in and a new refresh token. */
        assert_int_equal(parse("{\"access_token\": \"at\", \"expires_in\": 300, \"refresh_token\": \"rt2\", "
                               "\"scope\": \"repository:a:pull\"}",
                               &token, &ttl, &refresh),
                         0);
        assert_string_equal(token, "at");
        assert_int_equal(ttl, 290000);
        assert_string_equal(refresh, "rt2");
        free(token);
        free(refresh);

        /* A refresh token is taken only when asked for, and only if it could be sent again. */
        assert_int_equal(parse("{\"access_token\": \"at\", \"refresh_token\": \"rt2\"}", &token, &ttl, NULL), 0);
        free(token);
        assert_int_equal(parse("{\"access_token\": \"at\", \"refresh_token\": \"r\\r\\nt\"}", &token, &ttl, &refresh), 0);
        assert_null(refresh);
        free(token);
        assert_int_equal(parse("{\"access_token\": \"at\", \"refresh_token\": \"\"}", &token, &ttl, &refresh), 0);
        assert_null(refresh);
        free(token);

        /* A lifetime is capped at a day. */
        assert_int_equal(parse("{\"token\": \"t\", \"expires_in\": 99999999}", &token, &ttl, NULL), 0);
        assert_int_equal(ttl, 86400000 - 10000);
        free(token);
}

static void test_bad_answer(void **state) {
        (void) state;
        char *token = (char *) 0x1, *refresh = (char *) 0x1;
        uint64_t ttl = 7;
        static const char *const bad[] = {
                "", "[]", "{\"token\": \"\"}", "{\"access_token\": 5}", "{\"token\": \"a b\"}",
                "{\"token\": \"a\\nb\"}", "{\"refresh_token\": \"rt\"}", "{\"token\": \"abc\"",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(parse(bad[i], &token, &ttl, &refresh), -EPROTO);
                assert_ptr_equal(token, (char *) 0x1);
                assert_ptr_equal(refresh, (char *) 0x1);
                assert_int_equal(ttl, 7);
        }
}

static void test_oauth_form(void **state) {
        (void) state;
        struct buf b = BUF_INIT(FALLBACK_TOKEN_MAX);
        assert_int_equal(fallback_token_oauth_form("registry.example.com", "repository:a/b:pull repository:c:pull",
                                                   "r+t/=&x y", &b),
                         0);
        assert_string_equal(b.data, "grant_type=refresh_token&service=registry.example.com"
                                    "&scope=repository%3Aa%2Fb%3Apull%20repository%3Ac%3Apull"
                                    "&client_id=layerd&refresh_token=r%2Bt%2F%3D%26x%20y");
        /* One allocation: a secret is never left behind in memory a realloc freed. The
         * room for the worst case (every byte encoded) was reserved before the first byte. */
        assert_int_equal(b.cap, 128 + 3 * (strlen("registry.example.com") +
                                           strlen("repository:a/b:pull repository:c:pull") + strlen("r+t/=&x y")) +
                                        1);
        fallback_buf_wipe(&b);

        b = BUF_INIT(FALLBACK_TOKEN_MAX);
        assert_int_equal(fallback_token_oauth_form(NULL, "", "rt", &b), 0);
        assert_string_equal(b.data, "grant_type=refresh_token&client_id=layerd&refresh_token=rt");
        fallback_buf_wipe(&b);

        /* A refresh token longer than a token answer may be (one in a credentials file
         * may be up to its 1 MiB), every byte of it encoded. */
        char *huge = unit_repeat('%', FALLBACK_TOKEN_MAX);
        b = BUF_INIT(FALLBACK_TOKEN_MAX);
        assert_int_equal(fallback_token_oauth_form("s", "", huge, &b), 0);
        assert_int_equal(b.len, strlen("grant_type=refresh_token&service=s&client_id=layerd&refresh_token=") +
                                        3 * FALLBACK_TOKEN_MAX);
        fallback_buf_wipe(&b);
        free(huge);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_answer),
                cmocka_unit_test(test_bad_answer),
                cmocka_unit_test(test_oauth_form),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
