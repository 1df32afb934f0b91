/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/throttle.c, on a simulated clock: one event per key
 * per interval, the held-back ones counted into the next told one, keys
 * independent, a full table still lets a new key's first event through,
 * threads together get one told event (run under TSan too). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common/throttle.h"

static void test_once_per_interval(void **state) {
        (void) state;
        struct throttle t;
        throttle_init(&t, 60000);
        uint64_t held = 99;
        assert_true(throttle_pass(&t, "reg", "team/app", 1000, &held));
        assert_int_equal(held, 0);
        for (uint64_t now = 1000; now < 61000; now += 100) {
                held = 99;
                assert_false(throttle_pass(&t, "reg", "team/app", now, &held));
                assert_int_equal(held, 99); /* untouched when held back */
        }
        /* 600 held back; the first at or past the interval is told with their count */
        assert_true(throttle_pass(&t, "reg", "team/app", 61000, &held));
        assert_int_equal(held, 600);
        assert_false(throttle_pass(&t, "reg", "team/app", 61001, NULL));
        /* a quiet key: told again with what was held since */
        assert_true(throttle_pass(&t, "reg", "team/app", 500000, &held));
        assert_int_equal(held, 1);
        assert_true(throttle_pass(&t, "reg", "team/app", 600000, &held));
        assert_int_equal(held, 0);
        throttle_done(&t);
}

static void test_keys_independent(void **state) {
        (void) state;
        struct throttle t;
        throttle_init(&t, 1000);
        uint64_t held;
        assert_true(throttle_pass(&t, "reg", "team/app", 10, &held));
        assert_true(throttle_pass(&t, "reg", "team/other", 10, &held));
        assert_true(throttle_pass(&t, "reg2", "team/app", 10, &held));
        /* the pair is the key, not the joined string */
        assert_true(throttle_pass(&t, "regt", "eam/app", 10, &held));
        assert_false(throttle_pass(&t, "reg", "team/app", 20, &held));
        assert_false(throttle_pass(&t, "reg2", "team/app", 20, &held));
        throttle_done(&t);
}

static void test_full_table(void **state) {
        (void) state;
        struct throttle t;
        throttle_init(&t, 1000);
        char repo[32];
        /* more keys than slots: each key's first event is told */
        for (int i = 0; i < 3 * THROTTLE_SLOTS; i++) {
                snprintf(repo, sizeof(repo), "team/app%d", i);
                assert_true(throttle_pass(&t, "reg", repo, (uint64_t) i, NULL));
        }
        /* the last THROTTLE_SLOTS keys are remembered and held back */
        for (int i = 2 * THROTTLE_SLOTS; i < 3 * THROTTLE_SLOTS; i++) {
                snprintf(repo, sizeof(repo), "team/app%d", i);
                assert_false(throttle_pass(&t, "reg", repo, 500, NULL));
        }
        /* the least recently told was taken over: told again */
        assert_true(throttle_pass(&t, "reg", "team/app0", 500, NULL));
        throttle_done(&t);
}

#define RACERS 4
#define EACH 1000

static atomic_uint told;

static void *race(void *arg) {
        struct throttle *t = arg;
        for (int i = 0; i < EACH; i++)
                if (throttle_pass(t, "reg", "team/app", 7, NULL))
                        atomic_fetch_add(&told, 1);
        return NULL;
}

static void test_threads(void **state) {
        (void) state;
        struct throttle t;
        throttle_init(&t, 1000);
        pthread_t th[RACERS];
        for (int i = 0; i < RACERS; i++)
                assert_int_equal(pthread_create(&th[i], NULL, race, &t), 0);
        for (int i = 0; i < RACERS; i++)
                pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&told), 1);
        uint64_t held;
        assert_true(throttle_pass(&t, "reg", "team/app", 1007, &held));
        assert_int_equal(held, RACERS * EACH - 1);
        throttle_done(&t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_once_per_interval),
                cmocka_unit_test(test_keys_independent),
                cmocka_unit_test(test_full_table),
                cmocka_unit_test(test_threads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
