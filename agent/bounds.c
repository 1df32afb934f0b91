/* SPDX-License-Identifier: Apache-2.0 */
/* Caps on the upstream work in flight (see bounds.h). Each take is one
 * compare-and-swap loop on its counter, never a lock: the event loop takes
 * a wait slot for every request it defers. */
#include "agent/bounds.h"

#include <stddef.h>

/* One more on *v unless it is at max already. */
static bool take(atomic_uint *v, unsigned max) {
        unsigned cur = atomic_load(v);
        do {
                if (cur >= max)
                        return false;
        } while (!atomic_compare_exchange_weak(v, &cur, cur + 1));
        return true;
}

unsigned bounds_background_max(unsigned max) {
        return max / 2 ? max / 2 : 1;
}

bool bounds_take_download(struct bounds *b, unsigned max, bool background) {
        if (!take(&b->downloads, max))
                return false;
        if (background && !take(&b->background, bounds_background_max(max))) {
                atomic_fetch_sub(&b->downloads, 1);
                return false;
        }
        return true;
}

void bounds_put_download(struct bounds *b, bool background) {
        if (background)
                atomic_fetch_sub(&b->background, 1);
        atomic_fetch_sub(&b->downloads, 1);
}

bool bounds_abandon(struct bounds *b, unsigned max) {
        if (take(&b->abandoned, max))
                return true;
        bounds_refused(b, BOUNDS_ABANDONED);
        return false;
}

void bounds_unabandon(struct bounds *b) {
        atomic_fetch_sub(&b->abandoned, 1);
}

bool bounds_take_wait(struct bounds *b, unsigned max) {
        if (take(&b->waits, max))
                return true;
        bounds_refused(b, BOUNDS_UPSTREAM_WAITS);
        return false;
}

void bounds_put_wait(struct bounds *b) {
        atomic_fetch_sub(&b->waits, 1);
}

void bounds_refused(struct bounds *b, enum bounds_cap cap) {
        if ((unsigned) cap < _BOUNDS_CAP_MAX)
                atomic_fetch_add(&b->refused[cap], 1);
}

const char *bounds_cap_to_string(enum bounds_cap cap) {
        static const char *const names[_BOUNDS_CAP_MAX] = {
                [BOUNDS_DOWNLOADS] = "max_downloads",
                [BOUNDS_UPSTREAM_WAITS] = "max_upstream_waits",
                [BOUNDS_ABANDONED] = "max_abandoned_downloads",
                [BOUNDS_ABANDONED_TIME] = "abandoned_download_timeout",
        };
        return (unsigned) cap < _BOUNDS_CAP_MAX ? names[cap] : NULL;
}
