/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One event per key per interval let through, the others counted: for a log
 * line that would otherwise be written once per request (each blob of every
 * pull while an origin is down). A key is a pair of strings (registry,
 * repository), remembered by a 64-bit hash in a fixed table of THROTTLE_SLOTS:
 * two keys that share a hash are throttled together, and a key that finds
 * the table full takes the slot told least recently (its count is lost), so
 * the cost is bounded and the worst case is a line too few or too many.
 * Thread-safe (one short lock, no allocation, no I/O). */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define THROTTLE_SLOTS 64

struct throttle_slot {
        uint64_t key;     /* hash of the pair; 0: a free slot */
        uint64_t told_ms; /* when an event of this key was last let through */
        uint64_t held;    /* events held back since then */
};

struct throttle {
        pthread_mutex_t lock;
        uint64_t interval_ms;
        struct throttle_slot slots[THROTTLE_SLOTS];
};

/* An empty table that lets one event per key through per interval_ms. */
void throttle_init(struct throttle *t, uint64_t interval_ms);
void throttle_done(struct throttle *t);

/* Whether the event of key (a, b) at now_ms (CLOCK_MONOTONIC) is to be told:
 * the key's first, and then the first interval_ms or more after the last told.
 * When it is, *ret_held gets how many of the key's events were held back
 * since the last told one (0 for the first), and the count starts again. */
bool throttle_pass(struct throttle *t, const char *a, const char *b, uint64_t now_ms, uint64_t *ret_held);
