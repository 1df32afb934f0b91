/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The origin's verdicts on clients' credentials: "these credentials may read
 * registry/repository", remembered a while so that a warm pull asks the
 * origin at most once per auth_verdict_ttl (docs/spec.md). In memory only,
 * keyed by a hash of the credentials' key (agent/clientauth.h), the registry
 * and the repository: no credential is held. Fixed size; the oldest verdict
 * goes first. Thread-safe. */

#include <pthread.h>
#include <stdint.h>

#include "agent/clientauth.h"

#define VERDICT_SLOTS 4096

struct verdict_key {
        uint8_t bytes[CLIENT_AUTH_KEY_SIZE];
};

struct verdict_slot {
        struct verdict_key key;           /* SHA-256 of credentials key, registry, repository */
        uint64_t accepted_ms;              /* 0: free */
};

struct verdicts {
        pthread_mutex_t lock;
        struct verdict_slot slots[VERDICT_SLOTS];
};

void verdicts_init(struct verdicts *v);
void verdicts_done(struct verdicts *v);

/* Names a verdict: a hash of the credentials' key ckey, registry and
 * repository, made once per check and used for each of the calls below. All
 * zero when out of memory: no verdict is ever kept or found under it. */
void verdict_key(const uint8_t ckey[static CLIENT_AUTH_KEY_SIZE], const char *registry, const char *repository,
                 struct verdict_key *ret);

/* The origin accepted k's credentials for k's registry/repository at now_ms. */
void verdict_accept(struct verdicts *v, const struct verdict_key *k, uint64_t now_ms);

/* The origin refused them: k's verdict is forgotten. */
void verdict_forget(struct verdicts *v, const struct verdict_key *k);

/* How long ago (ms) the origin last accepted k, or -1 when it never did (or
 * that was forgotten). */
int64_t verdict_age(struct verdicts *v, const struct verdict_key *k, uint64_t now_ms);
