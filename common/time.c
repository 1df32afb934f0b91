/* SPDX-License-Identifier: Apache-2.0 */
/* One monotonic clock for every timeout in layerd. A condition variable's
 * timed wait counts on CLOCK_REALTIME unless told otherwise, and an
 * absolute realtime deadline moves with the wall clock: set back an hour,
 * a one-second wait lasts an hour. Hence the condattr in time_cond_init(). */
#include "common/time.h"

#include <errno.h>
#include <limits.h>
#include <time.h>

#define NS_PER_MS UINT64_C(1000000)
#define MS_PER_S UINT64_C(1000)

uint64_t time_now_ns(void) {
        struct timespec ts;
        /* Cannot fail for CLOCK_MONOTONIC with a valid pointer (clock_gettime(2)). */
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * (MS_PER_S * NS_PER_MS) + (uint64_t) ts.tv_nsec;
}

uint64_t time_now_ms(void) {
        return time_now_ns() / NS_PER_MS;
}

uint64_t time_deadline_ms(int64_t timeout_ms) {
        if (timeout_ms < 0)
                return TIME_NEVER;
        /* Cannot wrap: both terms are below 2^63 (the clock counts from boot). */
        return time_now_ms() + (uint64_t) timeout_ms;
}

int time_left_ms(uint64_t deadline_ms) {
        if (deadline_ms == TIME_NEVER)
                return -1;
        uint64_t now = time_now_ms();
        if (now >= deadline_ms)
                return 0;
        return deadline_ms - now > INT_MAX ? INT_MAX : (int) (deadline_ms - now);
}

int time_cond_init(pthread_cond_t *cond) {
        pthread_condattr_t attr;
        int r = pthread_condattr_init(&attr);
        if (r != 0)
                return -r;
        r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (r == 0)
                r = pthread_cond_init(cond, &attr);
        pthread_condattr_destroy(&attr);
        return -r;
}

int time_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ms) {
        if (deadline_ms == TIME_NEVER) {
                pthread_cond_wait(cond, mutex);
                return 0;
        }
        struct timespec ts = { .tv_sec = (time_t) (deadline_ms / MS_PER_S),
                               .tv_nsec = (long) (deadline_ms % MS_PER_S * NS_PER_MS) };
        return -pthread_cond_timedwait(cond, mutex, &ts);
}
