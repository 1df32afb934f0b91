/* SPDX-License-Identifier: Apache-2.0 */
/* Request latency histograms and per-registry hit and miss counters
 * (agent/reqmetrics.h): atomic counters, no lock on a request's way. */
#include "agent/reqmetrics.h"

#include <inttypes.h>
#include <string.h>

#include "common/macro.h"

/* Prometheus' default buckets start at 5 ms and end at 10 s: a cache hit
 * answers in well under a millisecond and an upstream wait may take 20 s. */
const double reqmetrics_bucket_bounds[REQMETRICS_BUCKETS] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                              0.25,  0.5,    1,     2.5,  5,     10,  30 };

/* The same bounds in nanoseconds, for reqmetrics_observe(). */
static const uint64_t bucket_ns[REQMETRICS_BUCKETS] = { 1000000,   2500000,   5000000,    10000000,   25000000,
                                                        50000000,  100000000, 250000000,  500000000,  1000000000,
                                                        2500000000, 5000000000, 10000000000, 30000000000 };

static const char *const route_names[_REQMETRICS_ROUTE_MAX] = {
        [REQMETRICS_MANIFEST] = "manifest",
        [REQMETRICS_BLOB] = "blob",
        [REQMETRICS_TAGS] = "tags",
        [REQMETRICS_OTHER] = "other",
};

static const char *const outcome_names[_REQMETRICS_OUTCOME_MAX] = {
        [REQMETRICS_HIT] = "hit",
        [REQMETRICS_MISS] = "miss",
        [REQMETRICS_STALE] = "stale",
        [REQMETRICS_ERROR] = "error",
};

void reqmetrics_init(struct reqmetrics *m) {
        memset(m, 0, sizeof(*m));
        atomic_flag_clear(&m->add_lock);
}

void reqmetrics_observe(struct reqmetrics *m, enum reqmetrics_route route, enum reqmetrics_outcome outcome,
                        uint64_t ns) {
        if ((unsigned) route >= _REQMETRICS_ROUTE_MAX)
                route = REQMETRICS_OTHER;
        if ((unsigned) outcome >= _REQMETRICS_OUTCOME_MAX)
                outcome = REQMETRICS_ERROR;
        size_t b = 0; /* le: the first bound ns is not above */
        while (b < REQMETRICS_BUCKETS && ns > bucket_ns[b])
                b++;
        atomic_fetch_add_explicit(&m->buckets[route][outcome][b], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->sum_us[route][outcome], ns / 1000, memory_order_relaxed);
}

/* The slot of registry among the first n, or NULL. */
static struct reqmetrics_registry *find(struct reqmetrics *m, const char *registry, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                if (strcmp(m->registries[i].name, registry) == 0)
                        return &m->registries[i];
        return NULL;
}

void reqmetrics_count_registry(struct reqmetrics *m, const char *registry, bool hit) {
        struct reqmetrics_registry *r = NULL;
        size_t len = strlen(registry);
        if (len > 0 && len < REQMETRICS_REGISTRY_MAX) {
                r = find(m, registry, atomic_load_explicit(&m->n_registries, memory_order_acquire));
                if (!r) {
                        /* A registry's first answer: the slot is added under the lock, after
                         * looking again (another thread may just have added it). */
                        while (atomic_flag_test_and_set_explicit(&m->add_lock, memory_order_acquire))
                                ;
                        unsigned n = atomic_load_explicit(&m->n_registries, memory_order_relaxed);
                        r = find(m, registry, n);
                        if (!r && n < REQMETRICS_REGISTRIES) {
                                r = &m->registries[n];
                                memcpy(r->name, registry, len + 1);
                                atomic_store_explicit(&m->n_registries, n + 1, memory_order_release);
                        }
                        atomic_flag_clear_explicit(&m->add_lock, memory_order_release);
                }
        }
        atomic_uint_fast64_t *c = r ? (hit ? &r->hits : &r->misses) : (hit ? &m->other_hits : &m->other_misses);
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

enum reqmetrics_outcome reqmetrics_outcome_of(unsigned status, const char *cache) {
        if (status < 200 || status >= 400)
                return REQMETRICS_ERROR;
        if (strcmp(cache, "stale") == 0)
                return REQMETRICS_STALE;
        /* "-": answered without the cache or an upstream (the version check). */
        if (strcmp(cache, "hit") == 0 || strcmp(cache, "-") == 0)
                return REQMETRICS_HIT;
        return REQMETRICS_MISS;
}

void reqmetrics_write(struct reqmetrics *m, FILE *f) {
        fputs("# HELP layerd_request_duration_seconds Time from a pull API request's head to its answer's "
              "status and headers (a blob's body streams after), by route and cache outcome.\n"
              "# TYPE layerd_request_duration_seconds histogram\n",
              f);
        for (int r = 0; r < _REQMETRICS_ROUTE_MAX; r++)
                for (int o = 0; o < _REQMETRICS_OUTCOME_MAX; o++) {
                        char labels[64];
                        snprintf(labels, sizeof(labels), "route=\"%s\",cache=\"%s\"", route_names[r],
                                 outcome_names[o]);
                        uint64_t cum = 0;
                        for (size_t b = 0; b <= REQMETRICS_BUCKETS; b++) {
                                cum += atomic_load_explicit(&m->buckets[r][o][b], memory_order_relaxed);
                                if (b < REQMETRICS_BUCKETS)
                                        fprintf(f, "layerd_request_duration_seconds_bucket{%s,le=\"%g\"} %" PRIu64 "\n",
                                                labels, reqmetrics_bucket_bounds[b], cum);
                                else
                                        fprintf(f, "layerd_request_duration_seconds_bucket{%s,le=\"+Inf\"} %" PRIu64
                                                   "\n", labels, cum);
                        }
                        uint64_t us = atomic_load_explicit(&m->sum_us[r][o], memory_order_relaxed);
                        fprintf(f, "layerd_request_duration_seconds_sum{%s} %" PRIu64 ".%06" PRIu64 "\n", labels,
                                us / 1000000, us % 1000000);
                        fprintf(f, "layerd_request_duration_seconds_count{%s} %" PRIu64 "\n", labels, cum);
                }
        /* Registry hosts hold no quotes or backslashes (validated by the spec). */
        unsigned n = atomic_load_explicit(&m->n_registries, memory_order_acquire);
        static const char *const families[2][2] = {
                { "layerd_registry_hits_total", "Manifest and blob requests answered from the node, by registry." },
                { "layerd_registry_misses_total", "Manifest and blob requests answered from upstream, by registry." },
        };
        for (int k = 0; k < 2; k++) {
                fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", families[k][0], families[k][1], families[k][0]);
                for (unsigned i = 0; i < n; i++)
                        fprintf(f, "%s{registry=\"%s\"} %" PRIu64 "\n", families[k][0], m->registries[i].name,
                                (uint64_t) atomic_load_explicit(k == 0 ? &m->registries[i].hits
                                                                       : &m->registries[i].misses,
                                                                memory_order_relaxed));
                uint64_t other = atomic_load_explicit(k == 0 ? &m->other_hits : &m->other_misses, memory_order_relaxed);
                if (other)
                        fprintf(f, "%s{registry=\"(other)\"} %" PRIu64 "\n", families[k][0], other);
        }
}
