/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A token bucket for bytes: what prefetch downloads share so that together
 * they hold the spec's prefetch.bandwidth. The caller sleeps as told (it
 * decides how: in slices, cancellable). Thread-safe. */

#include <pthread.h>
#include <stdint.h>

struct ratelimit {
        pthread_mutex_t lock;
        uint64_t rate;     /* bytes per second; 0: unlimited */
        uint64_t burst;    /* bytes that may go at once after a pause */
        int64_t tokens;    /* may go negative: bytes sent ahead of the rate (debt) */
        uint64_t last_ns;  /* when tokens were last refilled; 0: never */
};

/* An empty bucket for rate bytes per second (0: unlimited); the burst is
 * 50 ms of the rate, at least 16 KiB (one libcurl write). */
void ratelimit_init(struct ratelimit *rl, uint64_t rate);
void ratelimit_done(struct ratelimit *rl);

/* Takes n bytes at now_ns (CLOCK_MONOTONIC) and returns how many ns the
 * caller must wait so that the bytes taken so far keep to the rate (0: none).
 * Over any interval the bytes taken exceed rate * seconds by at most burst. */
uint64_t ratelimit_take(struct ratelimit *rl, uint64_t n, uint64_t now_ns);
