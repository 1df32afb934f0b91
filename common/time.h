/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Time for timeouts and durations, on CLOCK_MONOTONIC: a wall-clock step
 * (NTP, `date -s`, a VM resumed) neither stretches nor cuts a wait. A
 * deadline is an absolute CLOCK_MONOTONIC millisecond count, so it travels
 * in a struct (fallback_request.deadline_ms) and compares with a plain <.
 * Wall-clock time (what is stored on disk) stays time(NULL). */

#include <pthread.h>
#include <stdint.h>

/* The deadline that never comes: time_deadline_ms() of a negative timeout. */
#define TIME_NEVER UINT64_MAX

/* CLOCK_MONOTONIC now, in whole milliseconds (truncated). */
uint64_t time_now_ms(void);

/* CLOCK_MONOTONIC now, in nanoseconds. */
uint64_t time_now_ns(void);

/* The deadline timeout_ms from now (time_now_ms() + timeout_ms), or
 * TIME_NEVER for a negative timeout (no bound). */
uint64_t time_deadline_ms(int64_t timeout_ms);

/* Milliseconds left until deadline_ms as poll() takes them: 0 once it has
 * passed, at most INT_MAX, and -1 (wait without bound) for TIME_NEVER. */
int time_left_ms(uint64_t deadline_ms);

/* Initializes cond so that its timed waits count on CLOCK_MONOTONIC; 0 or
 * -errno. Every cond given to time_cond_wait_until() comes from here. */
int time_cond_init(pthread_cond_t *cond);

/* Waits on cond with mutex held, as pthread_cond_wait() does, until woken or
 * deadline_ms passes (TIME_NEVER: no bound): 0 when woken (maybe spuriously:
 * the caller re-checks its condition), -ETIMEDOUT once the deadline passed. */
int time_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ms);
