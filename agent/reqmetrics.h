/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the pull API's answers took and whether the node had them: request
 * latency as Prometheus histograms by route kind and cache outcome, and per
 * registry the hits and misses a hit ratio is computed from (in PromQL, at
 * query time). Recorded with relaxed atomic additions only: no lock on a
 * request's way, whatever the number of threads. Pure (no I/O but the FILE
 * written to, no libmicrohttpd), unit tested under ThreadSanitizer. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The route kinds of the latency histograms. */
enum reqmetrics_route {
        REQMETRICS_MANIFEST,
        REQMETRICS_BLOB,
        REQMETRICS_TAGS,
        REQMETRICS_OTHER, /* /v2/ and paths that are no route */
        _REQMETRICS_ROUTE_MAX,
};

/* How an answer was made. */
enum reqmetrics_outcome {
        REQMETRICS_HIT,   /* from the node: the cache, a trusted tag record, nothing upstream asked */
        REQMETRICS_MISS,  /* an upstream was asked (fetched, joined a download, revalidated, a tag list) */
        REQMETRICS_STALE, /* a tag's last known answer, every upstream having failed */
        REQMETRICS_ERROR, /* answered with an error status (4xx, 5xx) or none */
        _REQMETRICS_OUTCOME_MAX,
};

/* Upper bounds of the latency buckets, in seconds: 1 ms (a cache hit) to 30 s
 * (past HEADER_WAIT_MS's 20 s, every wait layerd bounds), +Inf after them. */
#define REQMETRICS_BUCKETS 14
extern const double reqmetrics_bucket_bounds[REQMETRICS_BUCKETS];

/* Registries counted apart; more (the spec changed many times) are counted
 * together under registry="(other)". The spec holds at most SPEC_REGISTRIES_MAX. */
#define REQMETRICS_REGISTRIES 64
#define REQMETRICS_REGISTRY_MAX 256 /* a registry host, NUL included */

struct reqmetrics_registry {
        char name[REQMETRICS_REGISTRY_MAX]; /* final once n_registries counts the slot */
        atomic_uint_fast64_t hits, misses;
};

struct reqmetrics {
        /* Per bucket, not cumulative (the last slot is +Inf): the text's cumulative
         * counts are sums made while writing, so they never decrease along le and
         * +Inf is _count exactly, whatever is recorded meanwhile. */
        atomic_uint_fast64_t buckets[_REQMETRICS_ROUTE_MAX][_REQMETRICS_OUTCOME_MAX][REQMETRICS_BUCKETS + 1];
        atomic_uint_fast64_t sum_us[_REQMETRICS_ROUTE_MAX][_REQMETRICS_OUTCOME_MAX];
        /* Slots are filled in order under add_lock (a spin lock, taken once per
         * registry and process); n_registries is stored (release) after the
         * slot's name, so lookups read the first n_registries without it. */
        atomic_uint n_registries;
        atomic_flag add_lock;
        struct reqmetrics_registry registries[REQMETRICS_REGISTRIES];
        atomic_uint_fast64_t other_hits, other_misses;
};

/* Zeroes m (a static or calloc'ed one is ready already). */
void reqmetrics_init(struct reqmetrics *m);

/* One answer of route kind route with outcome outcome that took ns nanoseconds. Thread-safe. */
void reqmetrics_observe(struct reqmetrics *m, enum reqmetrics_route route, enum reqmetrics_outcome outcome,
                        uint64_t ns);

/* One content request (manifest or blob) for registry answered from the node
 * (hit) or from upstream (!hit). Thread-safe; never allocates. */
void reqmetrics_count_registry(struct reqmetrics *m, const char *registry, bool hit);

/* The outcome of an answer: its status, and the pull core's word for where
 * it came from (the request log line's cache=: hit, miss, join, revalidated,
 * stale, through, upstream, "-"). */
enum reqmetrics_outcome reqmetrics_outcome_of(unsigned status, const char *cache);

/* The histograms (layerd_request_duration_seconds) and the registries' counters
 * (layerd_registry_hits_total, layerd_registry_misses_total) as Prometheus text. */
void reqmetrics_write(struct reqmetrics *m, FILE *f);
