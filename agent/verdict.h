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

struct verdict_slot {
        uint8_t key[CLIENT_AUTH_KEY_SIZE]; /* SHA-256 of credentials key, registry, repository */
        uint64_t accepted_ms;              /* 0: free */
};

struct verdicts {
        pthread_mutex_t lock;
        struct verdict_slot slots[VERDICT_SLOTS];
};

void verdicts_init(struct verdicts *v);
void verdicts_done(struct verdicts *v);

/* The origin accepted credentials ckey for registry/repository at now_ms. */
void verdict_accept(struct verdicts *v, const uint8_t ckey[static CLIENT_AUTH_KEY_SIZE], const char *registry,
                    const char *repository, uint64_t now_ms);

/* The origin refused them: any verdict of theirs for registry/repository is forgotten. */
void verdict_forget(struct verdicts *v, const uint8_t ckey[static CLIENT_AUTH_KEY_SIZE], const char *registry,
                    const char *repository);

/* How long ago (ms) the origin last accepted them for registry/repository,
 * or -1 when it never did (or that was forgotten). */
int64_t verdict_age(struct verdicts *v, const uint8_t ckey[static CLIENT_AUTH_KEY_SIZE], const char *registry,
                    const char *repository, uint64_t now_ms);
