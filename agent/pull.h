/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The pull core, which knows no transport: manifests and blobs from the
 * cache, misses through the fallback chains into the cache (single-flight
 * downloads that every waiting client follows), tag lists, counters. The
 * HTTP front end (agent/http.h) and prefetch both use it. */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cache/cache.h"
#include "fallback/fallback.h"
#include "hostsconfig/spec.h"

struct pull;

/* The state request threads share. cache and fb stay the caller's and must
 * outlive it; spec is taken over; cache_dir (copied) is where /metrics reads
 * the file system's free space. */
int pull_new(struct cache *cache, const char *cache_dir, struct fallback *fb, struct spec *spec, struct pull **ret);

/* Frees; call after the MHD daemon stopped and pull_shutdown() returned. */
struct pull *pull_free(struct pull *p);

/* A new spec for requests that start from now on (taken over); requests in
 * flight finish with the one they started with. */
void pull_set_spec(struct pull *p, struct spec *spec);

/* Stops downloads from going on (they are cut at their next bytes) and
 * waits at most timeout_ms for their threads to end and for every suspended
 * connection to be resumed (libmicrohttpd cannot stop with one). Returns 0,
 * or -ETIMEDOUT with threads still running (then neither MHD_stop_daemon()
 * nor pull_free() may run). */
int pull_shutdown(struct pull *p, int timeout_ms);

/* ---- in-process API: what prefetch and `layerd cache check` use, the same
 * single-flight downloads, verification, tag records and chains as clients ---- */

struct ratelimit;

struct pull_manifest {
        void *body;          /* verified bytes */
        uint64_t size;
        char *media_type;
        struct digest digest;
        bool fetched;        /* came from upstream now (false: the cache had it) */
        bool stale;          /* a tag's last known answer: every upstream failed */
};

/* The manifest registry/repository:reference (tag or digest) in the cache,
 * fetched through the chain when missing (tags revalidated after tag_ttl, as
 * for clients; stale-if-error). Offline: the cache and tag records only.
 * Returns 0 with *ret (release with pull_manifest_done()); -ENOENT not
 * found (upstream 404/401/403, or not in the cache offline), -EHOSTUNREACH no
 * upstream answered, -ENXIO not a mirrored registry, -EINVAL, -ECANCELED,
 * -ENOBUFS (the memory budget of in-flight requests is used up: later),
 * -ENOMEM. */
int pull_manifest_ensure(struct pull *p, const char *registry, const char *repository, const char *reference,
                         bool offline, struct pull_manifest *ret);
void pull_manifest_done(struct pull_manifest *m);

/* Blob d (size bytes, -1 unknown) in the cache: present, joined to a
 * download in flight, or downloaded now on the agent's download thread, held
 * to limit (may be NULL) while no client follows it, and waited for.
 * Offline: present and re-hashed. Returns 0 with *ret_fetched (this call
 * downloaded it) and *ret_size; -ENOENT (absent, or upstream 404), -EBADMSG
 * (wrong bytes, upstream or on disk), -EHOSTUNREACH, -ENXIO, -ESHUTDOWN,
 * -ENOBUFS (memory budget). */
int pull_blob_ensure(struct pull *p, const char *registry, const char *repository, const struct digest *d,
                     int64_t size, struct ratelimit *limit, bool offline, bool *ret_fetched, uint64_t *ret_size);

/* One page of GET /v2/<repository>/tags/list (n: page size, 0 the registry's;
 * last: start after it, NULL from the start) through the chain, remembered 30 s.
 * Returns 0 with the JSON page (*ret_body, malloc'd; a well-formed page) and
 * the next page's "last" (NULL on the last page); -ENOENT, -EHOSTUNREACH,
 * -ENXIO, -EINVAL, -ENOBUFS (memory budget), -ENOMEM. */
int pull_tags_page(struct pull *p, const char *registry, const char *repository, unsigned n, const char *last,
                   void **ret_body, size_t *ret_size, char **ret_next_last);

/* The referrers index (OCI 1.1) of registry/repository's manifest subject,
 * as a client gets it (agent/referrers.c): cached for the registry's tag_ttl,
 * stale-if-error. Returns 0 with the whole index (*ret_body, malloc'd,
 * validated); -ENOENT (the registry has no referrers API, or not found),
 * -EHOSTUNREACH, -ENXIO, -EINVAL, -ENOBUFS, -ENOMEM. */
int pull_referrers_ensure(struct pull *p, const char *registry, const char *repository, const struct digest *subject,
                          void **ret_body, size_t *ret_size);

/* The cache the state was made with. */
struct cache *pull_cache(struct pull *p);

/* The spec in force, kept alive until released (a reload does not free it). */
const struct spec *pull_spec_acquire(struct pull *p, void **ret_token);
void pull_spec_release(struct pull *p, void *token);

/* /readyz answers 503 "prefetching" until until_ms (time_now_ms()); 0 lifts it. */
void pull_set_ready_gate(struct pull *p, uint64_t until_ms);

/* Who adds lines to /metrics, in this order. */
enum pull_metrics_hook {
        PULL_METRICS_ADMISSION, /* serve.c: the connections (agent/admit.c) */
        PULL_METRICS_PREFETCH,
        _PULL_METRICS_HOOK_MAX,
};
/* fn is called at the end of every /metrics answer; set before serving,
 * unset (NULL) only once nothing answers /metrics any more. */
void pull_set_metrics_hook(struct pull *p, enum pull_metrics_hook slot, void (*fn)(FILE *f, void *userdata),
                           void *userdata);

/* Prunes the private-content table (agent/private.h) on a thread of its
 * own, when PRIVATE_PRUNE_INTERVAL_MS passed since the last prune, or
 * PRIVATE_PRUNE_RETRY_MS since it with a mark refused for the table's caps;
 * does nothing while one runs. Called from one thread (serve.c's loop). */
void pull_private_upkeep(struct pull *p, uint64_t now_ms);

/* Counters for the service manager's STATUS= line. */
void pull_status(struct pull *p, char *buf, size_t size);
