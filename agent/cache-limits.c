/* SPDX-License-Identifier: Apache-2.0 */
/* The cache's bounds as the spec states them, for everything that opens the
 * store (serve, prefetch, cache gc, doctor). A file of its own so that none of
 * those commands depends on another's file for it. */
#include <errno.h>
#include <sys/statvfs.h>

#include "agent/agent.h"

int agent_cache_limits(const struct spec *s, const char *dir, uint64_t *ret_max, uint64_t *ret_min_free) {
        uint64_t max = s->agent.cache_max_bytes;
        if (s->agent.cache_max_percent) {
                struct statvfs sv;
                if (statvfs(dir, &sv) < 0)
                        return -errno;
                max = (uint64_t) sv.f_blocks * sv.f_frsize / 100 * s->agent.cache_max_percent;
        }
        *ret_max = max;
        *ret_min_free = s->agent.cache_min_free_bytes;
        return 0;
}
