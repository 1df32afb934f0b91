/* SPDX-License-Identifier: Apache-2.0 */
#include "common/budget.h"

#include <errno.h>
#include <stddef.h>

void budget_init(struct budget *b, uint64_t limit) {
        atomic_init(&b->limit, limit);
        atomic_init(&b->held, 0);
        atomic_init(&b->refused, 0);
}

void budget_set_limit(struct budget *b, uint64_t limit) {
        atomic_store(&b->limit, limit);
}

int budget_take(struct budget *b, uint64_t n) {
        if (!b)
                return 0;
        uint64_t limit = atomic_load(&b->limit);
        uint_fast64_t held = atomic_load(&b->held);
        /* A compare-and-swap loop, not fetch_add and undo: a take that fails
         * never shows as held, so concurrent takes near the limit cannot
         * refuse each other for bytes that were never kept. */
        do {
                if (limit && (n > limit || held > limit - n)) {
                        atomic_fetch_add(&b->refused, 1);
                        return -ENOBUFS;
                }
        } while (!atomic_compare_exchange_weak(&b->held, &held, held + n));
        return 0;
}

void budget_give(struct budget *b, uint64_t n) {
        if (b && n)
                atomic_fetch_sub(&b->held, n);
}

uint64_t budget_held(const struct budget *b) {
        return atomic_load(&b->held);
}

uint64_t budget_limit(const struct budget *b) {
        return atomic_load(&b->limit);
}

uint64_t budget_refused(const struct budget *b) {
        return atomic_load(&b->refused);
}

int budget_hold_reserve(struct budget_hold *h, struct budget *b, uint64_t total) {
        if (!b || total <= h->n)
                return 0;
        int r = budget_take(b, total - h->n);
        if (r < 0)
                return r;
        h->budget = b;
        h->n = total;
        return 0;
}

void budget_hold_release(struct budget_hold *h) {
        budget_give(h->budget, h->n);
        *h = (struct budget_hold) {};
}
