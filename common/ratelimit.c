/* SPDX-License-Identifier: Apache-2.0 */
/* A token bucket that lets the taker go into debt: a 256 KiB write is
 * never refused, it just buys the wait that pays for it. The bucket starts
 * empty, so a transfer's measured rate is the configured one from the
 * first byte (tests measure it within 20 %). */
#include "common/ratelimit.h"

#define NS_PER_S UINT64_C(1000000000)

void ratelimit_init(struct ratelimit *rl, uint64_t rate) {
        *rl = (struct ratelimit) { .rate = rate, .burst = rate / 20 };
        if (rl->burst < 16384)
                rl->burst = 16384;
        pthread_mutex_init(&rl->lock, NULL);
}

void ratelimit_done(struct ratelimit *rl) {
        pthread_mutex_destroy(&rl->lock);
}

uint64_t ratelimit_take(struct ratelimit *rl, uint64_t n, uint64_t now_ns) {
        pthread_mutex_lock(&rl->lock); /* rate may change (a reload): read under the lock too */
        if (rl->rate == 0) {
                pthread_mutex_unlock(&rl->lock);
                return 0;
        }
        if (rl->last_ns == 0)
                rl->last_ns = now_ns;
        if (now_ns > rl->last_ns) {
                /* Refill; in 128-bit so that long pauses and high rates cannot overflow. */
                unsigned __int128 add = (unsigned __int128) (now_ns - rl->last_ns) * rl->rate / NS_PER_S;
                unsigned __int128 room = (unsigned __int128) ((int64_t) rl->burst - rl->tokens);
                if (rl->tokens >= (int64_t) rl->burst)
                        room = 0;
                rl->tokens += (int64_t) (add < room ? add : room);
                /* Only whole bytes advance the clock: sub-byte remainders are kept. */
                rl->last_ns = add < room ? rl->last_ns + (uint64_t) (add * NS_PER_S / rl->rate) : now_ns;
        }
        rl->tokens -= (int64_t) n;
        uint64_t wait = 0;
        if (rl->tokens < 0)
                wait = (uint64_t) ((unsigned __int128) (uint64_t) -rl->tokens * NS_PER_S / rl->rate);
        pthread_mutex_unlock(&rl->lock);
        return wait;
}
