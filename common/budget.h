/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A byte budget shared by many holders: what in-flight requests may hold in
 * memory together (bodies being fetched, bodies waiting for a slow client,
 * stream buffers). Bytes are taken before they are allocated and given back
 * when they are freed; past the limit a take fails at once, so the caller
 * can refuse its request quickly instead of growing without bound.
 * Lock-free and thread-safe; no logging, no allocation. */

#include <stdatomic.h>
#include <stdint.h>

#include "common/macro.h"

struct budget {
        atomic_uint_fast64_t limit;   /* bytes that may be held together; 0: no limit */
        atomic_uint_fast64_t held;    /* bytes taken and not given back */
        atomic_uint_fast64_t refused; /* takes that failed */
};

/* One holder's share of a budget: the bytes it took, given back together. A
 * zeroed hold (no budget) is valid and holds nothing. Not thread-safe itself:
 * it belongs to one owner at a time (moved with what it pays for). */
struct budget_hold {
        struct budget *budget; /* NULL: nothing is counted */
        uint64_t n;
};

/* An empty budget of limit bytes (0: unlimited, only counted). */
void budget_init(struct budget *b, uint64_t limit);

/* Changes the limit (a spec reload); what is held stays held, even past it. */
void budget_set_limit(struct budget *b, uint64_t limit);

/* Takes n bytes: 0, or -ENOBUFS when held + n would pass the limit (nothing
 * taken; counted in refused). A NULL budget takes anything. */
int budget_take(struct budget *b, uint64_t n);

/* Gives back n bytes taken earlier. A NULL budget ignores it. */
void budget_give(struct budget *b, uint64_t n);

uint64_t budget_held(const struct budget *b);
uint64_t budget_limit(const struct budget *b);
uint64_t budget_refused(const struct budget *b);

/* Makes h hold at least total bytes of budget b (taking only the
 * difference): 0, or -ENOBUFS with h unchanged. h must be empty or already
 * hold bytes of b. A NULL b takes nothing and succeeds. */
int budget_hold_reserve(struct budget_hold *h, struct budget *b, uint64_t total);

/* Gives back everything h holds; h is then empty. */
void budget_hold_release(struct budget_hold *h);

/* What h holds, handed to the caller; h is left empty (for moving a hold along
 * with the buffer it pays for). */
static inline struct budget_hold budget_hold_take(struct budget_hold *h) {
        struct budget_hold t = *h;
        *h = (struct budget_hold) {};
        return t;
}

static inline void budget_hold_releasep(struct budget_hold *h) {
        budget_hold_release(h);
}
#define _cleanup_hold_ _cleanup_(budget_hold_releasep)
