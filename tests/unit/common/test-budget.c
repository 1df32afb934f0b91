/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/budget.c: takes past the limit fail and count, holds
 * give back exactly what they took, and threads racing near the limit never
 * hold more than it together (run under ThreadSanitizer too). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>

#include "common/budget.h"

static void test_take_give(void **state) {
        (void) state;
        struct budget b;
        budget_init(&b, 100);
        assert_int_equal(budget_take(&b, 60), 0);
        assert_int_equal(budget_take(&b, 41), -ENOBUFS);
        assert_int_equal(budget_held(&b), 60); /* a refused take keeps nothing */
        assert_int_equal(budget_take(&b, 40), 0);
        assert_int_equal(budget_take(&b, 1), -ENOBUFS);
        assert_int_equal(budget_take(&b, 0), 0);
        budget_give(&b, 100);
        assert_int_equal(budget_held(&b), 0);
        assert_int_equal(budget_take(&b, 101), -ENOBUFS); /* more than the whole limit */
        assert_int_equal(budget_take(&b, UINT64_MAX), -ENOBUFS);
        assert_int_equal(budget_refused(&b), 4);
        assert_int_equal(budget_limit(&b), 100);
}

static void test_unlimited_and_null(void **state) {
        (void) state;
        struct budget b;
        budget_init(&b, 0);
        assert_int_equal(budget_take(&b, UINT64_MAX / 2), 0);
        assert_int_equal(budget_held(&b), UINT64_MAX / 2);
        budget_give(&b, UINT64_MAX / 2);
        assert_int_equal(budget_take(NULL, 1000), 0);
        budget_give(NULL, 1000);
        struct budget_hold h = {};
        assert_int_equal(budget_hold_reserve(&h, NULL, 1000), 0);
        assert_null(h.budget);
        budget_hold_release(&h);
}

static void test_limit_change(void **state) {
        (void) state;
        struct budget b;
        budget_init(&b, 100);
        assert_int_equal(budget_take(&b, 80), 0);
        budget_set_limit(&b, 50); /* what is held stays held; no more is given */
        assert_int_equal(budget_held(&b), 80);
        assert_int_equal(budget_take(&b, 1), -ENOBUFS);
        budget_give(&b, 80);
        assert_int_equal(budget_take(&b, 50), 0);
        budget_give(&b, 50);
}

static void test_hold(void **state) {
        (void) state;
        struct budget b;
        budget_init(&b, 1000);
        struct budget_hold h = {};
        assert_int_equal(budget_hold_reserve(&h, &b, 300), 0);
        assert_int_equal(budget_hold_reserve(&h, &b, 200), 0); /* already holds more */
        assert_int_equal(h.n, 300);
        assert_int_equal(budget_hold_reserve(&h, &b, 700), 0); /* grows by the difference */
        assert_int_equal(budget_held(&b), 700);
        assert_int_equal(budget_hold_reserve(&h, &b, 1001), -ENOBUFS);
        assert_int_equal(h.n, 700); /* unchanged on failure */
        struct budget_hold moved = budget_hold_take(&h);
        assert_int_equal(h.n, 0);
        budget_hold_release(&h); /* empty: gives nothing */
        assert_int_equal(budget_held(&b), 700);
        {
                _cleanup_hold_ struct budget_hold scoped = moved;
                assert_int_equal(budget_held(&b), 700);
        }
        assert_int_equal(budget_held(&b), 0);
}

#define THREADS 8
#define ROUNDS 20000
#define LIMIT 1000

struct racer {
        struct budget *b;
        unsigned ok;
        int over; /* held seen above the limit */
};

static void *race(void *arg) {
        struct racer *r = arg;
        for (unsigned i = 0; i < ROUNDS; i++) {
                struct budget_hold h = {};
                uint64_t n = 100 + (i % 7) * 50;
                if (budget_hold_reserve(&h, r->b, n) == 0) {
                        r->ok++;
                        if (budget_held(r->b) > LIMIT)
                                r->over = 1;
                }
                budget_hold_release(&h);
        }
        return NULL;
}

static void test_threads(void **state) {
        (void) state;
        struct budget b;
        budget_init(&b, LIMIT);
        pthread_t th[THREADS];
        struct racer rs[THREADS];
        for (unsigned i = 0; i < THREADS; i++) {
                rs[i] = (struct racer) { .b = &b };
                assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
        }
        unsigned ok = 0;
        for (unsigned i = 0; i < THREADS; i++) {
                pthread_join(th[i], NULL);
                ok += rs[i].ok;
                assert_int_equal(rs[i].over, 0);
        }
        assert_int_equal(budget_held(&b), 0);
        assert_int_equal(ok + budget_refused(&b), THREADS * ROUNDS);
        assert_true(ok > 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_take_give),
                cmocka_unit_test(test_unlimited_and_null),
                cmocka_unit_test(test_limit_change),
                cmocka_unit_test(test_hold),
                cmocka_unit_test(test_threads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
