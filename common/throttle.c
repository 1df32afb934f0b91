/* SPDX-License-Identifier: Apache-2.0 */
/* A linear scan of 64 slots under a lock: taken only on the events it
 * throttles (a request served while its origin is down), never per request. */
#include "common/throttle.h"

#include <string.h>

#include "common/hash.h"

void throttle_init(struct throttle *t, uint64_t interval_ms) {
        memset(t, 0, sizeof(*t));
        t->interval_ms = interval_ms;
        pthread_mutex_init(&t->lock, NULL);
}

void throttle_done(struct throttle *t) {
        pthread_mutex_destroy(&t->lock);
}

/* FNV-1a over a, a separator no string holds, and b; never 0 (a free slot). */
static uint64_t key_of(const char *a, const char *b) {
        uint64_t h = hash_fnv1a_str(hash_fnv1a_byte(hash_fnv1a_str(HASH_FNV1A_INIT, a), 0xffu), b);
        return h ? h : 1;
}

/* The key's slot, or the one it is to take: a free one, else the one told least recently. */
static struct throttle_slot *slot_locked(struct throttle *t, uint64_t k, bool *ret_found) {
        struct throttle_slot *victim = &t->slots[0];
        for (size_t i = 0; i < THROTTLE_SLOTS; i++) {
                struct throttle_slot *x = &t->slots[i];
                if (x->key == k) {
                        *ret_found = true;
                        return x;
                }
                if (victim->key != 0 && (x->key == 0 || x->told_ms < victim->told_ms))
                        victim = x;
        }
        *ret_found = false;
        return victim;
}

bool throttle_pass(struct throttle *t, const char *a, const char *b, uint64_t now_ms, uint64_t *ret_held) {
        uint64_t k = key_of(a, b), held = 0;
        bool found, pass = true;
        pthread_mutex_lock(&t->lock);
        struct throttle_slot *s = slot_locked(t, k, &found);
        if (!found) {
                *s = (struct throttle_slot) { .key = k, .told_ms = now_ms };
        } else if (now_ms >= s->told_ms && now_ms - s->told_ms < t->interval_ms) {
                s->held++;
                pass = false;
        } else {
                held = s->held;
                s->held = 0;
                s->told_ms = now_ms;
        }
        pthread_mutex_unlock(&t->lock);
        if (pass && ret_held)
                *ret_held = held;
        return pass;
}
