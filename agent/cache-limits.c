/* SPDX-License-Identifier: Apache-2.0 */
/* The cache's bounds as the spec states them, for everything that opens the
 * store (serve, prefetch, cache gc, doctor). A file of its own so that none of
 * those commands depends on another's file for it. */
#include <errno.h>
#include <inttypes.h>
#include <sys/statvfs.h>

#include "agent/agent.h"
#include "agent/log.h"
#include "cache/cache.h"

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

int agent_cache_apply_limits(const struct spec *s, const char *dir, struct cache *c, uint64_t *ret_max) {
        uint64_t max = 0, min_free = 0;
        int r = agent_cache_limits(s, dir, &max, &min_free);
        if (r < 0)
                return r;
        /* The age first: the pass cache_set_limits() asks for applies both. */
        r = cache_set_max_age(c, s->agent.cache_max_age_ms);
        if (r == 0)
                r = cache_set_limits(c, max, min_free);
        if (r == 0 && ret_max)
                *ret_max = max;
        return r;
}

/* One line per eviction pass, with its counts by reason: the cache is by
 * digest, shared by every registry, so no registry is named. */
static void log_evictions(const struct cache_evict_report *rep, void *userdata) {
        (void) userdata;
        uint64_t blobs = 0, bytes = 0;
        for (int i = 0; i < _CACHE_EVICT_REASON_MAX; i++) {
                blobs += rep->blobs[i];
                bytes += rep->bytes[i];
        }
        log_info("cache eviction blobs=%" PRIu64 " bytes=%" PRIu64 " size=%" PRIu64 " free_space=%" PRIu64
                 " age=%" PRIu64,
                 blobs, bytes, rep->blobs[CACHE_EVICT_SIZE], rep->blobs[CACHE_EVICT_FREE], rep->blobs[CACHE_EVICT_AGE]);
}

void agent_cache_log_evictions(struct cache *c) {
        cache_set_evict_report(c, log_evictions, NULL);
}
