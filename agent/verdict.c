/* SPDX-License-Identifier: Apache-2.0 */
/* Verdicts in a fixed table searched whole: 4096 slots of 40 bytes is a
 * scan of microseconds, once per request for a private repository, and a
 * fixed table cannot be grown by clients that make up credentials. */
#include "agent/verdict.h"

#include <string.h>

#include "common/digest.h"
#include "common/macro.h"

void verdicts_init(struct verdicts *v) {
        memset(v, 0, sizeof(*v));
        pthread_mutex_init(&v->lock, NULL);
}

void verdicts_done(struct verdicts *v) {
        pthread_mutex_destroy(&v->lock);
        explicit_bzero(v->slots, sizeof(v->slots));
}

void verdict_key(const uint8_t ckey[static CLIENT_AUTH_KEY_SIZE], const char *registry, const char *repository,
                 struct verdict_key *ret) {
        _cleanup_(digester_freep) struct digester *h = NULL;
        struct digest d = {};
        /* Out of memory: an all-zero key, which no verdict is ever found under. */
        if (digester_new(DIGEST_SHA256, &h) >= 0 && digester_update(h, ckey, CLIENT_AUTH_KEY_SIZE) >= 0 &&
            digester_update(h, registry, strlen(registry) + 1) >= 0 &&
            digester_update(h, repository, strlen(repository) + 1) >= 0)
                (void) digester_final(h, &d);
        memcpy(ret->bytes, d.bytes, CLIENT_AUTH_KEY_SIZE);
}

static bool key_zero(const struct verdict_key *k) {
        static const uint8_t zero[CLIENT_AUTH_KEY_SIZE];
        return memcmp(k->bytes, zero, CLIENT_AUTH_KEY_SIZE) == 0;
}

static struct verdict_slot *find_locked(struct verdicts *v, const struct verdict_key *k) {
        for (size_t i = 0; i < VERDICT_SLOTS; i++)
                if (v->slots[i].accepted_ms && memcmp(v->slots[i].key.bytes, k->bytes, CLIENT_AUTH_KEY_SIZE) == 0)
                        return &v->slots[i];
        return NULL;
}

void verdict_accept(struct verdicts *v, const struct verdict_key *k, uint64_t now_ms) {
        if (key_zero(k))
                return;
        pthread_mutex_lock(&v->lock);
        struct verdict_slot *s = find_locked(v, k);
        if (!s) {
                /* A free slot, else the oldest verdict's (free ones are 0: the oldest). */
                s = &v->slots[0];
                for (size_t i = 1; i < VERDICT_SLOTS && s->accepted_ms; i++)
                        if (v->slots[i].accepted_ms < s->accepted_ms)
                                s = &v->slots[i];
        }
        s->key = *k;
        s->accepted_ms = now_ms ? now_ms : 1;
        pthread_mutex_unlock(&v->lock);
}

void verdict_forget(struct verdicts *v, const struct verdict_key *k) {
        pthread_mutex_lock(&v->lock);
        struct verdict_slot *s = find_locked(v, k);
        if (s)
                *s = (struct verdict_slot) {};
        pthread_mutex_unlock(&v->lock);
}

int64_t verdict_age(struct verdicts *v, const struct verdict_key *k, uint64_t now_ms) {
        if (key_zero(k))
                return -1;
        pthread_mutex_lock(&v->lock);
        struct verdict_slot *s = find_locked(v, k);
        int64_t age = s ? (now_ms >= s->accepted_ms ? (int64_t) (now_ms - s->accepted_ms) : 0) : -1;
        pthread_mutex_unlock(&v->lock);
        return age;
}
