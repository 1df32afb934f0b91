/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/time.c. Timings are checked only in the direction
 * the clock guarantees (a timed-out wait ended at or after its deadline) and
 * otherwise within seconds, so a loaded machine cannot make them fail. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "common/time.h"

#define GENEROUS_MS 10000 /* an upper bound no healthy run comes near */

static void test_now(void **state) {
        (void) state;
        struct timespec ts;
        assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        uint64_t ref_ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
        uint64_t ms = time_now_ms(), ns = time_now_ns(), ms2 = time_now_ms();
        /* The same clock, read in order: never backwards, the units agree. */
        assert_true(ms >= ref_ms && ms - ref_ms < GENEROUS_MS);
        assert_true(ns / 1000000 >= ms && ns / 1000000 <= ms2);
        assert_true(ms2 >= ms);
}

static void test_deadline(void **state) {
        (void) state;
        assert_true(time_deadline_ms(-1) == TIME_NEVER);
        assert_true(time_deadline_ms(INT64_MIN) == TIME_NEVER);
        uint64_t before = time_now_ms();
        uint64_t d0 = time_deadline_ms(0), d = time_deadline_ms(5000);
        uint64_t after = time_now_ms();
        assert_true(d0 >= before && d0 <= after);
        assert_true(d >= before + 5000 && d <= after + 5000);
        /* The largest timeout is still a finite deadline, not a wrapped one. */
        uint64_t far = time_deadline_ms(INT64_MAX);
        assert_true(far != TIME_NEVER && far >= before + (uint64_t) INT64_MAX);
}

static void test_left_clamped(void **state) {
        (void) state;
        assert_int_equal(time_left_ms(TIME_NEVER), -1);
        assert_int_equal(time_left_ms(0), 0);
        uint64_t now = time_now_ms();
        assert_int_equal(time_left_ms(now - 1), 0);
        int left = time_left_ms(now + 1000);
        assert_true(left > 1000 - GENEROUS_MS / 10 && left <= 1000);
        /* Beyond what poll() takes: clamped, never negative or truncated. */
        assert_int_equal(time_left_ms(now + ((uint64_t) 1 << 40)), INT_MAX);
        assert_int_equal(time_left_ms(TIME_NEVER - 1), INT_MAX);
}

struct waiter {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool flag;
};

static void waiter_init(struct waiter *w) {
        pthread_mutex_init(&w->lock, NULL);
        assert_int_equal(time_cond_init(&w->cond), 0);
        w->flag = false;
}

static void waiter_done(struct waiter *w) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
}

static void test_wait_times_out(void **state) {
        (void) state;
        struct waiter w;
        waiter_init(&w);
        uint64_t start = time_now_ms(), deadline = time_deadline_ms(50);
        pthread_mutex_lock(&w.lock);
        int r;
        do
                r = time_cond_wait_until(&w.cond, &w.lock, deadline);
        while (r == 0); /* spurious wake-ups */
        pthread_mutex_unlock(&w.lock);
        uint64_t end = time_now_ms();
        assert_int_equal(r, -ETIMEDOUT);
        /* At or after the deadline: a cond on CLOCK_REALTIME would have taken
         * this monotonic deadline for one long past and returned at once. */
        assert_true(end >= deadline);
        assert_true(end - start < GENEROUS_MS);
        /* A deadline already passed: at once. */
        pthread_mutex_lock(&w.lock);
        assert_int_equal(time_cond_wait_until(&w.cond, &w.lock, start), -ETIMEDOUT);
        pthread_mutex_unlock(&w.lock);
        waiter_done(&w);
}

static void *signaller(void *arg) {
        struct waiter *w = arg;
        struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&w->lock);
        w->flag = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* Waits for the signaller with deadline; returns the last result. */
static int wait_signalled(struct waiter *w, uint64_t deadline) {
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, signaller, w), 0);
        int r = 0;
        pthread_mutex_lock(&w->lock);
        while (!w->flag && r == 0)
                r = time_cond_wait_until(&w->cond, &w->lock, deadline);
        bool flag = w->flag;
        pthread_mutex_unlock(&w->lock);
        pthread_join(th, NULL);
        assert_true(flag);
        return r;
}

static void test_wait_signalled(void **state) {
        (void) state;
        struct waiter w;
        waiter_init(&w);
        uint64_t start = time_now_ms();
        assert_int_equal(wait_signalled(&w, time_deadline_ms(GENEROUS_MS)), 0);
        assert_true(time_now_ms() - start < GENEROUS_MS);
        /* No bound at all: still woken. */
        w.flag = false;
        assert_int_equal(wait_signalled(&w, TIME_NEVER), 0);
        waiter_done(&w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_now),
                cmocka_unit_test(test_deadline),
                cmocka_unit_test(test_left_clamped),
                cmocka_unit_test(test_wait_times_out),
                cmocka_unit_test(test_wait_signalled),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
