/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/verdict.c: the origin's verdicts on clients'
 * credentials, per (credentials, registry, repository), with their age; a
 * refusal forgets; a full table drops the oldest. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/verdict.h"

static void key(uint8_t k[static CLIENT_AUTH_KEY_SIZE], unsigned n) {
        memset(k, 0, CLIENT_AUTH_KEY_SIZE);
        memcpy(k, &n, sizeof(n));
        k[CLIENT_AUTH_KEY_SIZE - 1] = 0x77;
}

/* The calls by credentials, registry and repository, as a check makes them. */
static void accept_at(struct verdicts *v, const uint8_t ck[static CLIENT_AUTH_KEY_SIZE], const char *reg,
                      const char *repo, uint64_t now_ms) {
        struct verdict_key k;
        verdict_key(ck, reg, repo, &k);
        verdict_accept(v, &k, now_ms);
}

static int64_t age_of(struct verdicts *v, const uint8_t ck[static CLIENT_AUTH_KEY_SIZE], const char *reg,
                      const char *repo, uint64_t now_ms) {
        struct verdict_key k;
        verdict_key(ck, reg, repo, &k);
        return verdict_age(v, &k, now_ms);
}

static void test_accept_age_forget(void **state) {
        (void) state;
        struct verdicts *v = malloc(sizeof(*v));
        assert_non_null(v);
        verdicts_init(v);
        uint8_t alice[CLIENT_AUTH_KEY_SIZE], bob[CLIENT_AUTH_KEY_SIZE];
        key(alice, 1);
        key(bob, 2);
        assert_int_equal(age_of(v, alice, "r.example", "team/app", 1000), -1);
        accept_at(v, alice, "r.example", "team/app", 1000);
        assert_int_equal(age_of(v, alice, "r.example", "team/app", 1500), 500);
        /* Not for other credentials, another repository or registry. */
        assert_int_equal(age_of(v, bob, "r.example", "team/app", 1500), -1);
        assert_int_equal(age_of(v, alice, "r.example", "team/other", 1500), -1);
        assert_int_equal(age_of(v, alice, "q.example", "team/app", 1500), -1);
        /* Names that run together do not collide: "a"+"b/c" vs "ab"+"/c" is not a valid
         * repository, but "r.example/x"+"y" vs "r.example"+"x/y" must differ. */
        accept_at(v, alice, "r.example/x", "y", 1000);
        assert_int_equal(age_of(v, alice, "r.example", "x/y", 1000), -1);
        /* A new acceptance renews it. */
        accept_at(v, alice, "r.example", "team/app", 4000);
        assert_int_equal(age_of(v, alice, "r.example", "team/app", 4100), 100);
        /* A clock read earlier than the acceptance is age 0, not negative. */
        assert_int_equal(age_of(v, alice, "r.example", "team/app", 3000), 0);
        struct verdict_key k;
        verdict_key(alice, "r.example", "team/app", &k);
        verdict_forget(v, &k);
        assert_int_equal(age_of(v, alice, "r.example", "team/app", 4100), -1);
        verdicts_done(v);
        free(v);
}

/* Full: the oldest verdict makes room; the others stay. */
static void test_full(void **state) {
        (void) state;
        struct verdicts *v = malloc(sizeof(*v));
        assert_non_null(v);
        verdicts_init(v);
        uint8_t k[CLIENT_AUTH_KEY_SIZE];
        for (unsigned i = 0; i < VERDICT_SLOTS; i++) {
                key(k, i);
                accept_at(v, k, "r", "a", 1000 + i);
        }
        key(k, VERDICT_SLOTS);
        accept_at(v, k, "r", "a", 900000);
        assert_int_equal(age_of(v, k, "r", "a", 900000), 0);
        key(k, 0); /* the oldest */
        assert_int_equal(age_of(v, k, "r", "a", 900000), -1);
        key(k, 1);
        assert_int_equal(age_of(v, k, "r", "a", 900000), 900000 - 1001);
        verdicts_done(v);
        free(v);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_accept_age_forget),
                cmocka_unit_test(test_full),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
