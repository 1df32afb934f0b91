/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Caps on the upstream work in flight (agent.max_downloads,
 * agent.max_upstream_waits, agent.max_abandoned_downloads): counters taken
 * before the work starts and given back when it ends, and the count of what
 * each cap refused. Pure (no I/O, no MHD); every function is thread-safe
 * (atomics) and takes the cap in force as an argument, so a reloaded spec
 * applies to the next take. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum bounds_cap {
        BOUNDS_DOWNLOADS,       /* agent.max_downloads: a client's download was refused */
        BOUNDS_UPSTREAM_WAITS,  /* agent.max_upstream_waits: a request that had to wait was refused */
        BOUNDS_ABANDONED,       /* agent.max_abandoned_downloads: an abandoned download was cancelled */
        BOUNDS_ABANDONED_TIME,  /* agent.abandoned_download_timeout: one was cancelled, not done in time */
        _BOUNDS_CAP_MAX,
};

struct bounds {
        atomic_uint downloads;  /* running: clients', prefetch's, abandoned ones */
        atomic_uint background; /* of those, prefetch's */
        atomic_uint abandoned;  /* of those, the ones no client or prefetch round wants any more */
        atomic_uint waits;      /* requests waiting for an upstream (a thread each) */
        atomic_uint_fast64_t refused[_BOUNDS_CAP_MAX];
};

/* The share of max downloads that background work (prefetch) may hold:
 * half, at least one. The rest is always there for clients. */
unsigned bounds_background_max(unsigned max);

/* A download slot under max (background: also under
 * bounds_background_max(max)); false when none is free. Not counted as
 * refused: the caller says whether it was (bounds_refused()). */
bool bounds_take_download(struct bounds *b, unsigned max, bool background);
/* Gives back what bounds_take_download() took (the same background). */
void bounds_put_download(struct bounds *b, bool background);

/* A running download lost its last client: true when it may go on (fewer
 * than max are abandoned), false when it must be cancelled (counted as
 * refused by BOUNDS_ABANDONED). */
bool bounds_abandon(struct bounds *b, unsigned max);
/* An abandoned download was joined again, or ended. */
void bounds_unabandon(struct bounds *b);

/* A slot for a request that waits for an upstream; false when max are in
 * use (counted as refused by BOUNDS_UPSTREAM_WAITS). */
bool bounds_take_wait(struct bounds *b, unsigned max);
void bounds_put_wait(struct bounds *b);

/* Counts one refusal by cap. */
void bounds_refused(struct bounds *b, enum bounds_cap cap);

/* The spec key of cap, for log lines and metrics labels. */
const char *bounds_cap_to_string(enum bounds_cap cap);
