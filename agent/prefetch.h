/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Prefetch: the spec's prefetch list kept in the cache (active sync), and
 * the offline check of the same list. A round resolves every entry (an
 * image, or a repository's tags through tags/list and the tag filter), then
 * fetches each image's manifest, the manifests of the platforms asked for,
 * and their config and layers, through the agent's own pull machinery
 * (agent/pull.h): the same single-flight downloads, verification and tag
 * records as clients, so a client asking for a blob that prefetch is
 * downloading joins that download. Everything a listed image refers to is
 * pinned (never evicted) while it is listed. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/pull.h"
#include "common/digest.h"
#include "common/ratelimit.h"
#include "hostsconfig/spec.h"

#define PREFETCH_PINS_FILE "prefetch.pins" /* under the cache directory */
#define PREFETCH_PLATFORM_MAX 64            /* "os/arch/variant", NUL included */

struct prefetch_platform_report {
        char platform[PREFETCH_PLATFORM_MAX]; /* "linux/amd64", or "-" for a single-platform manifest */
        unsigned blobs, present, fetched, missing;
        char first_missing[DIGEST_STRING_MAX];
};

#define PREFETCH_PLATFORMS_TEXT_MAX 256 /* the platforms asked, comma-separated, NUL included */
#define PREFETCH_REASON_MAX 256         /* why an image failed, for logs and the summary */
#define PREFETCH_IMAGE_NAME_MAX 512     /* registry/repository:reference as shown, NUL included */

/* One image of a round, as hooks and logs see it. */
struct prefetch_image_report {
        const char *registry, *repository, *reference; /* reference: tag or digest */
        unsigned index, count;  /* 1-based position in the round, and the round's images */
        char digest[DIGEST_STRING_MAX]; /* the image's own manifest (index or manifest), once known */
        char platforms[PREFETCH_PLATFORMS_TEXT_MAX]; /* as asked, comma-separated */
        struct prefetch_platform_report plat[SPEC_PLATFORMS_MAX + 1];
        unsigned n_plat;
        unsigned blobs, blobs_done, blobs_fetched, blobs_present; /* config and layers, all platforms */
        uint64_t bytes_done, bytes_fetched;
        uint64_t started_ms, ms;
        bool stale;             /* the tag's last known answer: every upstream failed */
        int error;              /* 0 or the first -errno */
        bool transient;         /* a failure that may pass (no upstream answered...): pins stay */
        char reason[PREFETCH_REASON_MAX];
};

struct prefetch_hooks {
        /* After each blob (done false) and once at the image's end (done
         * true); from the round's worker threads, one call at a time. */
        void (*image)(const struct prefetch_image_report *r, bool done, void *userdata);
        void *userdata;
};

struct prefetch_round_stats {
        unsigned images, images_ok, images_failed, entries_failed;
        uint64_t blobs_fetched, bytes_fetched;
        uint64_t ms;
};

/* The node's own platform, "linux/<arch>[/<variant>]" with the GOARCH names
 * containerd matches (x86_64 -> amd64, aarch64 -> arm64/v8, armv7l -> arm/v7). */
void prefetch_node_platform(char *buf, size_t size);

/* One round over list in the calling thread, with list->concurrency workers
 * (stopping, may be NULL, ends it early):
 * online, everything is fetched into the cache (at limit's rate, may be NULL)
 * and, when pins is given, pinned; offline, nothing is asked upstream and
 * every blob is re-hashed (the check). Entries whose registry is not mirrored
 * fail. Returns 0 when every image is complete, -EIO when any is not (the
 * reports say which), -ENOMEM. */
struct prefetch_pins;
int prefetch_round(struct pull *p, const struct spec_prefetch *list, bool offline, struct ratelimit *limit,
                   struct prefetch_pins *pins, const struct prefetch_hooks *hooks, atomic_bool *stopping,
                   struct prefetch_round_stats *ret);

/* The pinned set: what the last rounds listed, persisted in
 * CACHE_DIR/prefetch.pins so that a restarted agent (or one started on a
 * cache a node-image build filled with `layerd prefetch --once`) pins it
 * before its first eviction pass. prefetch_pins_load() reads the file and
 * pins what it names (a missing file is an empty set). */
int prefetch_pins_load(struct cache *c, const char *cache_dir, struct prefetch_pins **ret);
struct prefetch_pins *prefetch_pins_free(struct prefetch_pins *pins);

/* The background worker of `layerd serve`: a round at start, then every
 * prefetch.interval, with the spec in force at the time (pull_spec_acquire).
 * prefetch_new() takes pins over, registers the metrics and, with
 * prefetch.wait_ready, closes /readyz until the first round ended (bounded
 * by wait_ready_timeout), before anything listens; prefetch_run() starts
 * the thread. */
struct prefetch;
int prefetch_new(struct pull *p, struct prefetch_pins *pins, struct prefetch **ret);
int prefetch_run(struct prefetch *pf);

/* One round now in the calling thread, with the worker's pins and rate
 * limit, after the worker's round in progress (the admin API's `layerd
 * prefetch --once`). Returns prefetch_round()'s value, or -ENODATA when the
 * spec in force lists nothing. */
int prefetch_round_now(struct prefetch *pf, const struct prefetch_hooks *hooks, struct prefetch_round_stats *ret);

/* The worker's progress, for `layerd status`. */
struct prefetch_status {
        uint64_t rounds;
        bool running;            /* a round of the worker is in progress */
        unsigned round_done, round_images; /* images ended of the round running, else of the last (0: none yet) */
        bool have_last;
        struct prefetch_round_stats last;
        int64_t last_end_s;      /* wall clock */
        uint64_t next_round_ms;  /* time_now_ms() of the next round; 0 while one runs */
};
void prefetch_status(struct prefetch *pf, struct prefetch_status *ret);

/* A round now (after a reload), unless one is running. */
void prefetch_kick(struct prefetch *pf);

/* Asks the worker to stop (the round in progress ends at its next step;
 * pull_shutdown() cuts its downloads), without waiting. */
void prefetch_stop(struct prefetch *pf);

/* Stops, joins the worker and frees; accepts NULL; returns NULL. */
struct prefetch *prefetch_free(struct prefetch *pf);

/* The prefetch metrics in Prometheus text form (a pull metrics hook). */
void prefetch_metrics(FILE *f, void *userdata);

static inline void prefetch_pins_freep(struct prefetch_pins **p) {
        prefetch_pins_free(*p);
}
