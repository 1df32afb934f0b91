/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/bounds.c: the caps on upstream work in flight. A cap
 * is never passed, not even by threads racing for its last slot; prefetch
 * (background) holds at most its share of the download slots, so clients
 * always find the rest; every refusal is counted by the cap that made it. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "agent/bounds.h"

static void test_downloads(void **state) {
        (void) state;
        struct bounds b = {};
        for (int i = 0; i < 4; i++)
                assert_true(bounds_take_download(&b, 4, false));
        assert_false(bounds_take_download(&b, 4, false));
        assert_false(bounds_take_download(&b, 4, true));
        assert_int_equal(atomic_load(&b.downloads), 4);
        assert_int_equal(atomic_load(&b.background), 0);
        bounds_put_download(&b, false);
        assert_true(bounds_take_download(&b, 4, false));
        /* A cap lowered by a reload: nothing new until the count is under it. */
        assert_false(bounds_take_download(&b, 2, false));
        for (int i = 0; i < 4; i++)
                bounds_put_download(&b, false);
        assert_int_equal(atomic_load(&b.downloads), 0);
        /* The caller says what a refusal was. */
        for (int i = 0; i < _BOUNDS_CAP_MAX; i++)
                assert_int_equal(atomic_load(&b.refused[i]), 0);
}

static void test_background_share(void **state) {
        (void) state;
        assert_int_equal(bounds_background_max(32), 16);
        assert_int_equal(bounds_background_max(3), 1);
        assert_int_equal(bounds_background_max(1), 1);
        struct bounds b = {};
        /* Prefetch takes half of 4, and no more... */
        assert_true(bounds_take_download(&b, 4, true));
        assert_true(bounds_take_download(&b, 4, true));
        assert_false(bounds_take_download(&b, 4, true));
        assert_int_equal(atomic_load(&b.downloads), 2); /* the refused one gave its slot back */
        /* ...so clients still get the other half. */
        assert_true(bounds_take_download(&b, 4, false));
        assert_true(bounds_take_download(&b, 4, false));
        assert_false(bounds_take_download(&b, 4, false));
        bounds_put_download(&b, true);
        assert_int_equal(atomic_load(&b.background), 1);
        assert_true(bounds_take_download(&b, 4, true));
        assert_int_equal(atomic_load(&b.background), 2);
        /* With one slot, prefetch may have it while no client does. */
        struct bounds one = {};
        assert_true(bounds_take_download(&one, 1, true));
        assert_false(bounds_take_download(&one, 1, false));
}

static void test_abandoned_and_waits(void **state) {
        (void) state;
        struct bounds b = {};
        assert_true(bounds_abandon(&b, 2));
        assert_true(bounds_abandon(&b, 2));
        assert_false(bounds_abandon(&b, 2));
        assert_int_equal(atomic_load(&b.refused[BOUNDS_ABANDONED]), 1);
        bounds_unabandon(&b);
        assert_true(bounds_abandon(&b, 2));
        assert_int_equal(atomic_load(&b.abandoned), 2);

        assert_true(bounds_take_wait(&b, 1));
        assert_false(bounds_take_wait(&b, 1));
        assert_false(bounds_take_wait(&b, 1));
        assert_int_equal(atomic_load(&b.refused[BOUNDS_UPSTREAM_WAITS]), 2);
        bounds_put_wait(&b);
        assert_true(bounds_take_wait(&b, 1));

        bounds_refused(&b, BOUNDS_ABANDONED_TIME);
        bounds_refused(&b, _BOUNDS_CAP_MAX); /* not a cap: ignored */
        assert_int_equal(atomic_load(&b.refused[BOUNDS_ABANDONED_TIME]), 1);
        assert_string_equal(bounds_cap_to_string(BOUNDS_DOWNLOADS), "max_downloads");
        assert_string_equal(bounds_cap_to_string(BOUNDS_UPSTREAM_WAITS), "max_upstream_waits");
        assert_string_equal(bounds_cap_to_string(BOUNDS_ABANDONED), "max_abandoned_downloads");
        assert_string_equal(bounds_cap_to_string(BOUNDS_ABANDONED_TIME), "abandoned_download_timeout");
        assert_null(bounds_cap_to_string(_BOUNDS_CAP_MAX));
}

/* Threads racing for few slots: the count never passes the cap. */
#define RACERS 8
#define ROUNDS 20000
#define CAP 3

struct race {
        struct bounds *b;
        atomic_uint *peak;
        bool background;
};

static void *racer(void *arg) {
        struct race *r = arg;
        for (int i = 0; i < ROUNDS; i++) {
                if (!bounds_take_download(r->b, CAP, r->background))
                        continue;
                unsigned now = atomic_load(&r->b->downloads), seen = atomic_load(r->peak);
                while (now > seen && !atomic_compare_exchange_weak(r->peak, &seen, now))
                        ;
                if (r->background && atomic_load(&r->b->background) > bounds_background_max(CAP))
                        atomic_store(r->peak, 1000);
                bounds_put_download(r->b, r->background);
                if (bounds_take_wait(r->b, CAP))
                        bounds_put_wait(r->b);
        }
        return NULL;
}

static void test_race(void **state) {
        (void) state;
        struct bounds b = {};
        atomic_uint peak = 0;
        pthread_t t[RACERS];
        struct race r[RACERS];
        for (int i = 0; i < RACERS; i++) {
                r[i] = (struct race) { .b = &b, .peak = &peak, .background = i % 2 };
                assert_int_equal(pthread_create(&t[i], NULL, racer, &r[i]), 0);
        }
        for (int i = 0; i < RACERS; i++)
                pthread_join(t[i], NULL);
        assert_true(atomic_load(&peak) >= 1);
        assert_true(atomic_load(&peak) <= CAP);
        assert_int_equal(atomic_load(&b.downloads), 0);
        assert_int_equal(atomic_load(&b.background), 0);
        assert_int_equal(atomic_load(&b.waits), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_downloads),
                cmocka_unit_test(test_background_share),
                cmocka_unit_test(test_abandoned_and_waits),
                cmocka_unit_test(test_race),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
