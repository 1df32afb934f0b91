/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/clientauth.c: the client's Authorization header,
 * Basic only (what containerd sends after a mirror's Basic challenge);
 * anything else is no credentials, and nothing of a refused header is kept. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/clientauth.h"

static const uint8_t salt[] = "unit-test-salt";

static bool all_zero(const void *p, size_t n) {
        const uint8_t *b = p;
        for (size_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

static void test_basic(void **state) {
        (void) state;
        struct client_auth a;
        /* "alice:s3cr:et" — a colon in the password belongs to it (RFC 7617). */
        assert_int_equal(client_auth_parse("Basic YWxpY2U6czNjcjpldA==", salt, sizeof(salt), &a), 0);
        assert_true(a.set);
        assert_string_equal(a.user, "alice");
        assert_string_equal(a.password, "s3cr:et");
        assert_false(all_zero(a.key, sizeof(a.key)));
        /* The scheme in any case, blanks around the token. */
        struct client_auth b;
        assert_int_equal(client_auth_parse("bASIC   YWxpY2U6czNjcjpldA==  ", salt, sizeof(salt), &b), 0);
        assert_memory_equal(a.key, b.key, sizeof(a.key));
        client_auth_wipe(&a);
        assert_true(all_zero(&a, sizeof(a)));
        client_auth_wipe(&b);
}

/* The key tells credentials apart (user/password split included) and depends on the salt. */
static void test_keys(void **state) {
        (void) state;
        struct client_auth a, b, c, d;
        assert_int_equal(client_auth_parse("Basic YWI6Yw==", salt, sizeof(salt), &a), 0); /* ab:c */
        assert_int_equal(client_auth_parse("Basic YTpiYw==", salt, sizeof(salt), &b), 0); /* a:bc */
        assert_int_equal(client_auth_parse("Basic YWI6Yw==", (const uint8_t *) "x", 1, &c), 0);
        assert_int_equal(client_auth_parse("Basic YWI6Yw==", salt, sizeof(salt), &d), 0);
        assert_memory_not_equal(a.key, b.key, sizeof(a.key));
        assert_memory_not_equal(a.key, c.key, sizeof(a.key));
        assert_memory_equal(a.key, d.key, sizeof(a.key));
        /* An empty password is a password. */
        assert_int_equal(client_auth_parse("Basic YWxpY2U6", salt, sizeof(salt), &a), 0);
        assert_string_equal(a.password, "");
}

/* No header, another scheme: -ENOENT; malformed: -EINVAL; either way nothing is kept. */
/* layerd's own key: made from the salt alone, not all zero, and never a
 * client's (here: one with an empty password, the nearest preimage). */
static void test_own_key(void **state) {
        (void) state;
        uint8_t own[CLIENT_AUTH_KEY_SIZE], again[CLIENT_AUTH_KEY_SIZE], other[CLIENT_AUTH_KEY_SIZE];
        static const uint8_t salt2[] = "another-salt";
        assert_int_equal(client_auth_own_key(salt, sizeof(salt), own), 0);
        assert_int_equal(client_auth_own_key(salt, sizeof(salt), again), 0);
        assert_int_equal(client_auth_own_key(salt2, sizeof(salt2), other), 0);
        assert_false(all_zero(own, sizeof(own)));
        assert_memory_equal(own, again, sizeof(own));
        assert_memory_not_equal(own, other, sizeof(own));
        struct client_auth a;
        assert_int_equal(client_auth_parse("Basic YTo=", salt, sizeof(salt), &a), 0); /* "a:" */
        assert_memory_not_equal(a.key, own, sizeof(own));
        client_auth_wipe(&a);
}

static void test_refused(void **state) {
        (void) state;
        static const struct {
                const char *header;
                int want;
        } cases[] = {
                { "Bearer abc.def.ghi", -ENOENT },
                { "Basi", -ENOENT },
                { "BasicYWxpY2U6eA==", -ENOENT },
                { "Digest username=\"a\"", -ENOENT },
                { "Basic ", -EINVAL },
                { "Basic !!!!", -EINVAL },
                { "Basic YWxpY2U=", -EINVAL },       /* "alice": no colon */
                { "Basic OnB3", -EINVAL },           /* ":pw": no user */
                { "Basic YWxpY2U6eA", -EINVAL },     /* padding missing */
                { "Basic YQBiOmM=", -EINVAL },       /* "a\0b:c" */
                { "Basic YWxp Y2U6eA==", -EINVAL },  /* a blank inside */
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct client_auth a;
                memset(&a, 0x5a, sizeof(a));
                assert_int_equal(client_auth_parse(cases[i].header, salt, sizeof(salt), &a), cases[i].want);
                assert_false(a.set);
                assert_true(all_zero(&a, sizeof(a)));
        }
        struct client_auth a;
        assert_int_equal(client_auth_parse(NULL, salt, sizeof(salt), &a), -ENOENT);
}

/* Bounds: a header over CLIENT_AUTH_HEADER_MAX, a field over CLIENT_AUTH_FIELD_MAX. */
static void test_bounds(void **state) {
        (void) state;
        static char header[CLIENT_AUTH_HEADER_MAX + 64];
        struct client_auth a;
        memset(header, 'A', sizeof(header) - 1);
        memcpy(header, "Basic ", 6);
        header[sizeof(header) - 1] = '\0';
        assert_int_equal(client_auth_parse(header, salt, sizeof(salt), &a), -EINVAL);
        /* "u:" + 1025 'p': base64 of 1027 bytes fits the header, the password not the field. */
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        uint8_t plain[1027];
        plain[0] = 'u';
        plain[1] = ':';
        memset(plain + 2, 'p', sizeof(plain) - 2);
        char *o = header + 6;
        for (size_t i = 0; i < sizeof(plain); i += 3) {
                uint32_t v = (uint32_t) plain[i] << 16 | (uint32_t) (i + 1 < sizeof(plain) ? plain[i + 1] : 0) << 8 |
                             (i + 2 < sizeof(plain) ? plain[i + 2] : 0);
                *o++ = b64[v >> 18 & 63];
                *o++ = b64[v >> 12 & 63];
                *o++ = i + 1 < sizeof(plain) ? b64[v >> 6 & 63] : '=';
                *o++ = i + 2 < sizeof(plain) ? b64[v & 63] : '=';
        }
        *o = '\0';
        assert_int_equal(client_auth_parse(header, salt, sizeof(salt), &a), -EINVAL);
        /* One byte less of password: 1024, the most a field takes. */
        assert_int_equal(client_auth_parse("Basic dTpw", salt, sizeof(salt), &a), 0);
        assert_string_equal(a.password, "p");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basic),
                cmocka_unit_test(test_keys),
                cmocka_unit_test(test_own_key),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_bounds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
