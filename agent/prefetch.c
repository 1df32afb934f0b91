/* SPDX-License-Identifier: Apache-2.0 */
/* Prefetch rounds, the pinned set and the background worker (see prefetch.h).
 *
 * Why in-process and not HTTP requests to the agent's own listener:
 * `layerd prefetch --once` runs without a server, and the pull API's
 * functions (pull_manifest_ensure, pull_blob_ensure) are what a client's
 * request runs anyway: single-flight downloads, verification, tag records.
 *
 * Real pulls go first: prefetch downloads are bounded by
 * prefetch.concurrency (one image per worker, its blobs one at a time) and
 * held to prefetch.bandwidth only while no client follows them; a client
 * that asks for a blob prefetch is downloading joins that download and lifts
 * its limit (agent/download.c dl_throttle). */
#include "agent/prefetch.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "agent/log.h"
#include "common/buf.h"
#include "common/fsutil.h"
#include "common/macro.h"
#include "common/reference.h"
#include "common/time.h"

#define TAGS_PAGE 1000 /* tags asked per tags/list page */
#define TAGS_PAGES_MAX 1000 /* pages of one repository's list read at most */
#define PINS_FILE_MAX (16u << 20)

/* ---- platforms -------------------------------------------------------------------- */

void prefetch_node_platform(char *buf, size_t size) {
        struct utsname u;
        const char *arch = "amd64";
        if (uname(&u) == 0) {
                const char *m = u.machine;
                /* GOARCH names, as image indexes and containerd spell them. */
                arch = strcmp(m, "x86_64") == 0                                   ? "amd64"
                       : strcmp(m, "aarch64") == 0 || strcmp(m, "arm64") == 0     ? "arm64/v8"
                       : strcmp(m, "armv7l") == 0 || strcmp(m, "armv7") == 0      ? "arm/v7"
                       : strcmp(m, "armv6l") == 0                                 ? "arm/v6"
                       : strcmp(m, "i686") == 0 || strcmp(m, "i386") == 0         ? "386"
                       : strcmp(m, "ppc64le") == 0                                ? "ppc64le"
                       : strcmp(m, "s390x") == 0                                  ? "s390x"
                       : strcmp(m, "riscv64") == 0                                ? "riscv64"
                                                                                  : m;
        }
        snprintf(buf, size, "linux/%s", arch);
}

/* ---- the pinned set --------------------------------------------------------------- */

struct prefetch_pins {
        pthread_mutex_t lock;
        struct cache *cache;
        char *path;
        struct digest *cur, *prev; /* this round's (appended, may repeat); the last rounds' (sorted, unique) */
        size_t n_cur, cap_cur, n_prev;
};

static int digest_cmp(const void *a, const void *b) {
        const struct digest *x = a, *y = b;
        if (x->algorithm != y->algorithm)
                return x->algorithm < y->algorithm ? -1 : 1;
        return memcmp(x->bytes, y->bytes, sizeof(x->bytes));
}

static size_t digest_unique(struct digest *v, size_t n) {
        size_t k = 0;
        if (n == 0)
                return 0;
        qsort(v, n, sizeof(*v), digest_cmp);
        for (size_t i = 0; i < n; i++)
                if (k == 0 || digest_cmp(&v[k - 1], &v[i]) != 0)
                        v[k++] = v[i];
        return k;
}

/* Pins d now (before it is fetched: eviction must never take it) and
 * remembers it for this round. */
static int pins_add(struct prefetch_pins *pins, const struct digest *d) {
        if (!pins)
                return 0;
        int r = cache_pin(pins->cache, d, true);
        if (r < 0)
                return r;
        pthread_mutex_lock(&pins->lock);
        if (ARRAY_RESERVE(pins->cur, &pins->cap_cur, pins->n_cur + 1, 256, SIZE_MAX) < 0) {
                pthread_mutex_unlock(&pins->lock);
                return -ENOMEM;
        }
        pins->cur[pins->n_cur++] = *d;
        pthread_mutex_unlock(&pins->lock);
        return 0;
}

static int pins_save(const struct prefetch_pins *pins) {
        /* One "algo:hex\n" per pin: at most DIGEST_STRING_MAX bytes, the newline in the NUL's place. */
        _cleanup_buf_ struct buf text = BUF_INIT(pins->n_prev * DIGEST_STRING_MAX);
        for (size_t i = 0; i < pins->n_prev; i++) {
                char ds[DIGEST_STRING_MAX];
                int r = buf_printf(&text, "%s\n", digest_to_string(&pins->prev[i], ds));
                if (r < 0)
                        return r;
        }
        return write_file_atomic(pins->path, buf_str(&text), text.len, 0644);
}

/* The round's end: complete (every entry resolved), what is no longer
 * listed is unpinned; incomplete (an upstream failed), nothing is unpinned,
 * since what an unresolved entry refers to is not known this time. */
static void pins_finish(struct prefetch_pins *pins, bool complete) {
        if (!pins)
                return;
        pthread_mutex_lock(&pins->lock);
        size_t n = digest_unique(pins->cur, pins->n_cur);
        if (complete) {
                for (size_t i = 0; i < pins->n_prev; i++)
                        if (n == 0 || !bsearch(&pins->prev[i], pins->cur, n, sizeof(struct digest), digest_cmp))
                                (void) cache_pin(pins->cache, &pins->prev[i], false);
                free(pins->prev);
                pins->prev = TAKE_PTR(pins->cur); /* NULL when the list is empty now */
                pins->n_prev = n;
                pins->cap_cur = 0;
        } else if (n > 0) {
                struct digest *next = malloc((pins->n_prev + n) * sizeof(*next));
                if (next) { /* else the file keeps last time's set; the pins in memory hold anyway */
                        if (pins->n_prev)
                                memcpy(next, pins->prev, pins->n_prev * sizeof(*next));
                        memcpy(next + pins->n_prev, pins->cur, n * sizeof(*next));
                        free(pins->prev);
                        pins->prev = next;
                        pins->n_prev = digest_unique(next, pins->n_prev + n);
                }
        }
        pins->n_cur = 0;
        int r = pins_save(pins);
        if (r < 0)
                log_warning("cannot save the prefetch pins file=\"%s\": %s", pins->path, strerror(-r));
        pthread_mutex_unlock(&pins->lock);
}

int prefetch_pins_load(struct cache *c, const char *cache_dir, struct prefetch_pins **ret) {
        struct prefetch_pins *pins = calloc(1, sizeof(*pins));
        if (!pins || asprintf(&pins->path, "%s/%s", cache_dir, PREFETCH_PINS_FILE) < 0) {
                free(pins);
                return -ENOMEM;
        }
        pthread_mutex_init(&pins->lock, NULL);
        pins->cache = c;
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        int r = read_file_bounded(pins->path, PINS_FILE_MAX, &text, &size);
        if (r < 0 && r != -ENOMEM) {
                /* Unreadable, too big, not a file: serving must not depend on
                 * it. Nothing is pinned until the next round writes it anew. */
                if (r != -ENOENT)
                        log_warning("ignoring the prefetch pins file=\"%s\": %s", pins->path, strerror(-r));
                r = 0;
        } else if (r >= 0) {
                size_t lines = 0;
                for (size_t i = 0; i < size; i++)
                        lines += text[i] == '\n';
                pins->prev = calloc(lines + 1, sizeof(struct digest));
                r = pins->prev ? 0 : -ENOMEM;
                for (char *line = text, *nl; r >= 0 && line && *line; line = nl ? nl + 1 : NULL) {
                        nl = strchr(line, '\n');
                        if (nl)
                                *nl = '\0';
                        /* A damaged line pins nothing: the next round rewrites the file. */
                        if (digest_parse(line, &pins->prev[pins->n_prev]) == 0 &&
                            cache_pin(c, &pins->prev[pins->n_prev], true) == 0)
                                pins->n_prev++;
                }
        }
        if (r < 0) {
                prefetch_pins_free(pins);
                return r;
        }
        *ret = pins;
        return 0;
}

struct prefetch_pins *prefetch_pins_free(struct prefetch_pins *pins) {
        if (!pins)
                return NULL;
        pthread_mutex_destroy(&pins->lock);
        free(pins->path);
        free(pins->cur);
        free(pins->prev);
        free(pins);
        return NULL;
}

/* ---- a round ---------------------------------------------------------------------- */

struct job {
        char *registry, *repository, *reference;
        char *const *platforms;
        size_t n_platforms;
};

struct round {
        struct pull *pull;
        bool offline;
        bool referrers; /* prefetch.referrers */
        struct ratelimit *limit;
        struct prefetch_pins *pins;
        const struct prefetch_hooks *hooks;
        atomic_bool *stopping;
        pthread_mutex_t lock; /* next, stats, hook calls */
        struct job *jobs;
        size_t n_jobs, next;
        struct prefetch_round_stats stats;
        unsigned transient_failures; /* images and entries that failed for a reason that may pass */
        char node_platform[PREFETCH_PLATFORM_MAX];
};

static void report_hook(struct round *rd, const struct prefetch_image_report *r, bool done) {
        if (!rd->hooks || !rd->hooks->image)
                return;
        pthread_mutex_lock(&rd->lock);
        rd->hooks->image(r, done, rd->hooks->userdata);
        pthread_mutex_unlock(&rd->lock);
}

/* A failure that says nothing lasting about the image: the next round may
 * well succeed. Not found, not mirrored, not an image, too big: lasting. */
static bool error_is_transient(int error) {
        switch (error) {
        case -ENOENT:
        case -ENXIO:
        case -EMEDIUMTYPE:
        case -EINVAL:
        case -EFBIG:
        case -EBADMSG:
        case -EPROTO:
        case -ERANGE:
                return false;
        default:
                return true;
        }
}

static void report_error(struct prefetch_image_report *r, int error, const char *fmt, ...) _printf_(3, 4);
static void report_error(struct prefetch_image_report *r, int error, const char *fmt, ...) {
        if (error_is_transient(error))
                r->transient = true;
        if (r->error)
                return; /* the first one says the most */
        va_list ap;
        va_start(ap, fmt);
        log_vquotef(r->reason, sizeof(r->reason), fmt, ap);
        va_end(ap);
        r->error = error;
}

static const char *ensure_error(int r, bool offline) {
        switch (r) {
        case -ENOENT:
                return offline ? "not in the cache" : "not found upstream";
        case -EHOSTUNREACH:
                return "no upstream answered";
        case -ENXIO:
                return "registry not mirrored by this spec";
        case -EBADMSG:
                return offline ? "damaged in the cache (wrong digest)" : "upstream sent wrong bytes";
        default:
                return strerror(-r);
        }
}

static bool round_stopping(const struct round *rd) {
        return rd->stopping && atomic_load(rd->stopping);
}

/* Config and layers of one image manifest into plat, deduplicated against
 * what the image already has in list (layers shared between platforms). */
static int collect_blobs(const struct fallback_manifest_refs *m, struct fallback_descriptor **list, size_t *n,
                         size_t *cap, struct prefetch_platform_report *plat, size_t **owner, size_t plat_index) {
        for (size_t i = 0; i < m->n_items + 1; i++) {
                const struct fallback_descriptor *d = i == 0 ? &m->config : &m->items[i - 1];
                if (i == 0 && !m->has_config)
                        continue;
                plat->blobs++;
                bool dup = false;
                for (size_t j = 0; j < *n && !dup; j++)
                        dup = digest_equal(&(*list)[j].digest, &d->digest) && (*owner)[j] == plat_index;
                if (dup)
                        continue;
                /* Two arrays, one count: both grow alike from the same cap. */
                size_t list_cap = *cap, owner_cap = *cap;
                if (ARRAY_RESERVE(*list, &list_cap, *n + 1, 16, SIZE_MAX) < 0 ||
                    ARRAY_RESERVE(*owner, &owner_cap, *n + 1, 16, SIZE_MAX) < 0)
                        return -ENOMEM;
                *cap = list_cap;
                (*list)[*n] = (struct fallback_descriptor) { .digest = d->digest, .size = d->size };
                (*owner)[*n] = plat_index;
                (*n)++;
        }
        return 0;
}

/* prefetch.referrers is bounded: pinned content is exempt from the cache's
 * size bound, and a registry may attach any number of artifacts of any size
 * to an image. Past these, the rest is left to be fetched on demand. */
#define PREFETCH_REFERRERS_MAX 32                  /* referrers of one image */
#define PREFETCH_REFERRER_BLOB_MAX (16ULL << 20)   /* bytes of one referrer's blob */

/* One referrer of an image: its manifest and what it refers to (a
 * signature's or SBOM's layers), pinned with the image. */
static int referrer_run(struct round *rd, const struct job *j, const struct fallback_referrer *ref,
                        struct prefetch_image_report *r) {
        char ds[DIGEST_STRING_MAX];
        struct pull_manifest m = {};
        struct fallback_manifest_refs refs = {};
        digest_to_string(&ref->digest, ds);
        (void) pins_add(rd->pins, &ref->digest);
        int k = pull_manifest_ensure(rd->pull, j->registry, j->repository, ds, false, &m);
        if (k >= 0)
                k = fallback_manifest_refs(m.body, m.size, &refs);
        if (k < 0) {
                report_error(r, k, "referrer %s: %s", ds, k == -EBADMSG ? "not a manifest" : ensure_error(k, false));
                pull_manifest_done(&m);
                return k;
        }
        /* An index among the referrers names manifests, not blobs: only its own bytes are kept. */
        for (size_t i = 0; !refs.is_index && i < refs.n_items + 1 && !round_stopping(rd); i++) {
                const struct fallback_descriptor *d = i == 0 ? &refs.config : &refs.items[i - 1];
                if (i == 0 && !refs.has_config)
                        continue;
                if (d->size > (int64_t) PREFETCH_REFERRER_BLOB_MAX) {
                        char bs[DIGEST_STRING_MAX];
                        log_notice("prefetch ns=%s repo=%s: referrer %s blob %s of %" PRId64
                                   " bytes not prefetched (over %llu MiB; fetched when asked for)",
                                   j->registry, j->repository, ds, digest_to_string(&d->digest, bs), d->size,
                                   PREFETCH_REFERRER_BLOB_MAX >> 20);
                        continue;
                }
                bool fetched = false;
                uint64_t size = 0;
                (void) pins_add(rd->pins, &d->digest);
                k = pull_blob_ensure(rd->pull, j->registry, j->repository, &d->digest, d->size, rd->limit, false,
                                     &fetched, &size);
                if (k < 0) {
                        char bs[DIGEST_STRING_MAX];
                        report_error(r, k, "referrer %s blob %s: %s", ds, digest_to_string(&d->digest, bs),
                                     ensure_error(k, false));
                        break;
                }
        }
        fallback_manifest_refs_done(&refs);
        pull_manifest_done(&m);
        return k < 0 ? k : 0;
}

/* prefetch.referrers: the referrers of the digest the image resolved to
 * (what cosign and notation sign and attach to). A registry without the
 * Referrers API (404) has none to fetch: no error. */
static void referrers_run(struct round *rd, const struct job *j, const struct digest *subject,
                          struct prefetch_image_report *r) {
        _cleanup_free_ void *body = NULL;
        size_t size = 0;
        struct fallback_referrers refs = {};
        int k = pull_referrers_ensure(rd->pull, j->registry, j->repository, subject, &body, &size);
        if (k == -ENOENT)
                return;
        if (k >= 0)
                k = fallback_referrers_parse(body, size, &refs);
        if (k < 0) {
                report_error(r, k, "referrers: %s", ensure_error(k, false));
                return;
        }
        /* The index itself is content too (agent/referrers.c stores it by its sha256). */
        struct digest index;
        if (digest_buffer(DIGEST_SHA256, body, size, &index) == 0)
                (void) pins_add(rd->pins, &index);
        if (refs.n > PREFETCH_REFERRERS_MAX)
                log_notice("prefetch ns=%s repo=%s: %zu referrers, the first %d prefetched (the rest fetched when "
                           "asked for)",
                           j->registry, j->repository, refs.n, PREFETCH_REFERRERS_MAX);
        for (size_t i = 0; i < refs.n && i < PREFETCH_REFERRERS_MAX && !round_stopping(rd); i++)
                (void) referrer_run(rd, j, &refs.items[i], r);
        fallback_referrers_done(&refs);
}

static void image_run(struct round *rd, const struct job *j, unsigned index) {
        struct prefetch_image_report r = { .registry = j->registry, .repository = j->repository,
                                           .reference = j->reference, .index = index,
                                           .count = (unsigned) rd->n_jobs, .started_ms = time_now_ms() };
        struct pull_manifest top = {};
        struct fallback_manifest_refs refs = {};
        struct fallback_descriptor *blobs = NULL;
        size_t *owner = NULL, n_blobs = 0, cap = 0;
        char ds[DIGEST_STRING_MAX];
        int k;

        for (size_t i = 0; i < j->n_platforms; i++) {
                size_t len = strlen(r.platforms);
                snprintf(r.platforms + len, sizeof(r.platforms) - len, "%s%s", i ? "," : "", j->platforms[i]);
        }
        k = pull_manifest_ensure(rd->pull, j->registry, j->repository, j->reference, rd->offline, &top);
        if (k < 0) {
                report_error(&r, k, "manifest: %s", ensure_error(k, rd->offline));
                goto done;
        }
        digest_to_string(&top.digest, r.digest);
        r.stale = top.stale;
        (void) pins_add(rd->pins, &top.digest);
        uint64_t have;
        if (!rd->offline && cache_stat(pull_cache(rd->pull), &top.digest, &have) < 0) {
                /* A tag's digest is known only once resolved, so it is pinned
                 * after it was stored: a store above its bounds may have
                 * evicted it in between. Pinned now, it is stored again. */
                struct pull_manifest again = {};
                k = pull_manifest_ensure(rd->pull, j->registry, j->repository, r.digest, false, &again);
                pull_manifest_done(&again);
                if (k < 0) {
                        report_error(&r, k, "manifest %s: %s", r.digest, ensure_error(k, false));
                        goto done;
                }
        }
        if (rd->referrers)
                referrers_run(rd, j, &top.digest, &r);
        k = fallback_manifest_refs(top.body, top.size, &refs);
        if (k < 0) {
                report_error(&r, k, "manifest %s: not an image manifest or index", r.digest);
                goto done;
        }
        if (!refs.is_index) {
                /* A single-platform manifest is taken as it is: its platform is
                 * in its config, which is fetched anyway. */
                r.n_plat = 1;
                snprintf(r.plat[0].platform, sizeof(r.plat[0].platform), "-");
                k = collect_blobs(&refs, &blobs, &n_blobs, &cap, &r.plat[0], &owner, 0);
                if (k < 0) {
                        report_error(&r, k, "%s", strerror(-k));
                        goto done;
                }
        }
        for (size_t i = 0; refs.is_index && i < j->n_platforms && !round_stopping(rd); i++) {
                struct prefetch_platform_report *pl = &r.plat[r.n_plat++];
                snprintf(pl->platform, sizeof(pl->platform), "%s", j->platforms[i]);
                const struct fallback_descriptor *child = NULL;
                for (size_t c = 0; c < refs.n_items && !child; c++)
                        if (spec_platform_match(j->platforms[i], refs.items[c].platform))
                                child = &refs.items[c];
                if (!child) {
                        pl->missing++;
                        report_error(&r, -ENOENT, "the index has no manifest for %s", j->platforms[i]);
                        continue;
                }
                struct pull_manifest cm = {};
                struct fallback_manifest_refs crefs = {};
                digest_to_string(&child->digest, ds);
                (void) pins_add(rd->pins, &child->digest);
                k = pull_manifest_ensure(rd->pull, j->registry, j->repository, ds, rd->offline, &cm);
                if (k >= 0)
                        k = fallback_manifest_refs(cm.body, cm.size, &crefs);
                if (k >= 0 && crefs.is_index)
                        k = -EMEDIUMTYPE; /* nested indexes: not what an image for a platform is */
                if (k >= 0)
                        k = collect_blobs(&crefs, &blobs, &n_blobs, &cap, pl, &owner, r.n_plat - 1);
                if (k < 0) {
                        pl->missing++;
                        snprintf(pl->first_missing, sizeof(pl->first_missing), "%s", ds);
                        report_error(&r, k, "%s manifest %s: %s", j->platforms[i], ds,
                                     k == -EMEDIUMTYPE || k == -EBADMSG ? "not an image manifest"
                                                                       : ensure_error(k, rd->offline));
                }
                fallback_manifest_refs_done(&crefs);
                pull_manifest_done(&cm);
        }
        r.blobs = (unsigned) n_blobs;
        for (size_t i = 0; i < n_blobs && !round_stopping(rd); i++) {
                struct prefetch_platform_report *pl = &r.plat[owner[i]];
                bool fetched = false;
                uint64_t size = 0;
                digest_to_string(&blobs[i].digest, ds);
                k = pins_add(rd->pins, &blobs[i].digest);
                if (k >= 0)
                        k = pull_blob_ensure(rd->pull, j->registry, j->repository, &blobs[i].digest, blobs[i].size,
                                             rd->limit, rd->offline, &fetched, &size);
                r.blobs_done++;
                if (k < 0) {
                        pl->missing++;
                        if (!pl->first_missing[0])
                                snprintf(pl->first_missing, sizeof(pl->first_missing), "%s", ds);
                        report_error(&r, k, "blob %s: %s", ds, ensure_error(k, rd->offline));
                } else {
                        pl->present++;
                        r.bytes_done += size;
                        if (fetched) {
                                pl->fetched++;
                                r.blobs_fetched++;
                                r.bytes_fetched += size;
                        } else
                                r.blobs_present++;
                }
                report_hook(rd, &r, false);
        }
        if (round_stopping(rd))
                report_error(&r, -ECANCELED, "stopped");
done:
        r.ms = time_now_ms() - r.started_ms;
        if (!rd->offline)
                agent_log(r.error ? LOG_WARNING : LOG_INFO,
                          "prefetch ns=%s repo=%s ref=%s digest=%s platforms=%s blobs=%u fetched=%u present=%u "
                          "bytes=%" PRIu64 " fetched_bytes=%" PRIu64 " ms=%" PRIu64 "%s%s%s%s",
                          j->registry, j->repository, j->reference, r.digest[0] ? r.digest : "-",
                          r.platforms, r.blobs, r.blobs_fetched, r.blobs_present, r.bytes_done, r.bytes_fetched,
                          r.ms, r.stale ? " stale=yes" : "", r.error ? " error=\"" : "", r.error ? r.reason : "",
                          r.error ? "\"" : "");
        pthread_mutex_lock(&rd->lock);
        if (r.error)
                rd->stats.images_failed++;
        if (r.error && r.transient)
                rd->transient_failures++;
        if (!r.error)
                rd->stats.images_ok++;
        rd->stats.blobs_fetched += r.blobs_fetched;
        rd->stats.bytes_fetched += r.bytes_fetched;
        pthread_mutex_unlock(&rd->lock);
        report_hook(rd, &r, true);
        free(blobs);
        free(owner);
        fallback_manifest_refs_done(&refs);
        pull_manifest_done(&top);
}

static void *worker_main(void *arg) {
        struct round *rd = arg;
        for (;;) {
                pthread_mutex_lock(&rd->lock);
                size_t i = rd->next < rd->n_jobs && !round_stopping(rd) ? rd->next++ : SIZE_MAX;
                pthread_mutex_unlock(&rd->lock);
                if (i == SIZE_MAX)
                        return NULL;
                image_run(rd, &rd->jobs[i], (unsigned) i + 1);
        }
}

static int job_add(struct round *rd, size_t *cap, const char *registry, const char *repository, const char *ref,
                   char *const *platforms, size_t n_platforms) {
        if (ARRAY_RESERVE(rd->jobs, cap, rd->n_jobs + 1, 16, SIZE_MAX) < 0)
                return -ENOMEM;
        struct job *j = &rd->jobs[rd->n_jobs];
        *j = (struct job) { .registry = strdup(registry), .repository = strdup(repository), .reference = strdup(ref),
                            .platforms = platforms, .n_platforms = n_platforms };
        if (!j->registry || !j->repository || !j->reference) {
                free(j->registry);
                free(j->repository);
                free(j->reference);
                return -ENOMEM;
        }
        rd->n_jobs++;
        return 0;
}

/* A repository entry's tags: tags/list page by page (online), or the tags
 * this node recorded (offline: the node's own view, for the check). */
static int entry_tags(struct round *rd, const char *registry, const char *repository, char ***ret, size_t *ret_n) {
        if (rd->offline)
                return cache_tag_list(pull_cache(rd->pull), registry, repository, FALLBACK_TAGS_MAX, ret, ret_n);
        char **all = NULL;
        size_t n = 0, cap = 0;
        char *last = NULL;
        unsigned pages = 0;
        int r;
        do {
                void *body = NULL;
                size_t size = 0, m = 0, before = n;
                char *next = NULL, **page = NULL;
                r = pull_tags_page(rd->pull, registry, repository, TAGS_PAGE, last, &body, &size, &next);
                if (r >= 0)
                        r = fallback_tags_parse(body, size, &page, &m);
                free(body);
                if (r >= 0) {
                        /* Capped: a runaway list does not grow without bound. */
                        size_t take = m < FALLBACK_TAGS_MAX - n ? m : FALLBACK_TAGS_MAX - n;
                        r = ARRAY_RESERVE(all, &cap, n + take + 1, 16, SIZE_MAX);
                        if (r >= 0) {
                                for (size_t i = 0; i < m; i++)
                                        if (i < take)
                                                all[n + i] = page[i];
                                        else
                                                free(page[i]);
                                n += take;
                                free(page);
                                page = NULL;
                                m = 0;
                        }
                }
                bool empty = r >= 0 && m == 0 && n == before;
                fallback_strv_free(page, m);
                /* Pages go forward in lexical order (distribution's "last"): a
                 * next page that does not, or an empty page, ends the list, as
                 * does a runaway number of pages: no registry makes this loop. */
                if (next && (empty || ++pages >= TAGS_PAGES_MAX || (last && strcmp(next, last) <= 0))) {
                        free(next);
                        next = NULL;
                }
                free(last);
                last = next;
        } while (r >= 0 && last && n < FALLBACK_TAGS_MAX && !round_stopping(rd));
        free(last);
        if (r < 0) {
                fallback_strv_free(all, n);
                return r;
        }
        *ret = all;
        *ret_n = n;
        return 0;
}

/* Offline, a repository whose tags this node never recorded: a failed "image". */
static void report_missing_entry(struct round *rd, const char *registry, const char *repository, int error) {
        struct prefetch_image_report r = { .registry = registry, .repository = repository, .reference = "(tags)" };
        report_error(&r, error, "no tags recorded for this repository: %s", ensure_error(error, true));
        pthread_mutex_lock(&rd->lock);
        rd->stats.images_failed++;
        pthread_mutex_unlock(&rd->lock);
        report_hook(rd, &r, true);
}

/* The round's images: every entry resolved (repository entries through
 * their tags); an entry that cannot be resolved is logged and counted. */
static int round_jobs(struct round *rd, const struct spec_prefetch *list, char *const *node) {
        size_t cap = 0;
        for (size_t i = 0; i < list->n_entries && !round_stopping(rd); i++) {
                const struct spec_prefetch_entry *e = &list->entries[i];
                char *const *plats = e->n_platforms ? e->platforms : list->n_platforms ? list->platforms : node;
                size_t n_plats = e->n_platforms ? e->n_platforms : list->n_platforms ? list->n_platforms : 1;
                struct reference ref = {};
                const char *why = NULL;
                int r = reference_parse(e->image ? e->image : e->repository, e->image != NULL, &ref, &why);
                if (r < 0) {
                        rd->stats.entries_failed++;
                        log_warning("prefetch entry=\"%s\" cannot be parsed: %s", e->image ? e->image : e->repository,
                                    why ? why : strerror(-r));
                        continue;
                }
                if (e->image) {
                        /* By digest when both are given: the tag only names it. */
                        r = job_add(rd, &cap, ref.domain, ref.path, ref.digest ? ref.digest : ref.tag, plats, n_plats);
                        reference_done(&ref);
                        if (r < 0)
                                return r;
                        continue;
                }
                char **tags = NULL;
                size_t n = 0, *idx = NULL, m = 0;
                r = entry_tags(rd, ref.domain, ref.path, &tags, &n);
                if (r >= 0)
                        r = spec_prefetch_select_tags(e, tags, n, &idx, &m);
                if (r < 0) {
                        rd->stats.entries_failed++;
                        if (error_is_transient(r))
                                rd->transient_failures++;
                        if (rd->offline)
                                report_missing_entry(rd, ref.domain, ref.path, r);
                        else
                                log_warning("prefetch ns=%s repo=%s: cannot list the tags: %s", ref.domain, ref.path,
                                            ensure_error(r, rd->offline));
                }
                for (size_t k = 0; r >= 0 && k < m; k++)
                        r = job_add(rd, &cap, ref.domain, ref.path, tags[idx[k]], plats, n_plats);
                free(idx);
                fallback_strv_free(tags, n);
                reference_done(&ref);
                if (r == -ENOMEM)
                        return r;
        }
        return 0;
}

int prefetch_round(struct pull *p, const struct spec_prefetch *list, bool offline, struct ratelimit *limit,
                   struct prefetch_pins *pins, const struct prefetch_hooks *hooks, atomic_bool *stopping,
                   struct prefetch_round_stats *ret) {
        struct round rd = { .pull = p, .offline = offline, .referrers = list->referrers && !offline, .limit = limit,
                            .pins = offline ? NULL : pins, .hooks = hooks, .stopping = stopping };
        uint64_t t0 = time_now_ms();
        char *node[1] = { rd.node_platform };
        prefetch_node_platform(rd.node_platform, sizeof(rd.node_platform));
        pthread_mutex_init(&rd.lock, NULL);
        int r = round_jobs(&rd, list, node);
        rd.stats.images = (unsigned) rd.n_jobs;
        unsigned workers = list->concurrency ? list->concurrency : 1;
        if (workers > rd.n_jobs)
                workers = (unsigned) rd.n_jobs;
        pthread_t th[SPEC_PREFETCH_CONCURRENCY_MAX];
        unsigned started = 0;
        for (; r >= 0 && started < workers && started < ELEMENTSOF(th); started++)
                if (pthread_create(&th[started], NULL, worker_main, &rd) != 0)
                        break;
        if (r >= 0 && started == 0 && rd.n_jobs > 0)
                worker_main(&rd); /* no thread could start: the caller's own */
        for (unsigned i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        /* Unpinning only after a complete round: what an entry or image that
         * failed for a passing reason (an upstream down) refers to this time
         * is not known, so last time's pins stay. One that cannot be had (not
         * found, no manifest for a platform) holds nothing back: else one
         * image gone for good would keep every later digest pinned forever. */
        bool complete = r >= 0 && rd.transient_failures == 0 && !round_stopping(&rd);
        bool all_ok = r >= 0 && rd.stats.entries_failed == 0 && rd.stats.images_failed == 0 && !round_stopping(&rd);
        pins_finish(rd.pins, complete);
        for (size_t i = 0; i < rd.n_jobs; i++) {
                free(rd.jobs[i].registry);
                free(rd.jobs[i].repository);
                free(rd.jobs[i].reference);
        }
        free(rd.jobs);
        pthread_mutex_destroy(&rd.lock);
        rd.stats.ms = time_now_ms() - t0;
        *ret = rd.stats;
        if (r < 0)
                return r;
        return all_ok ? 0 : -EIO;
}

/* ---- the background worker ---------------------------------------------------------- */

struct prefetch {
        struct pull *pull;
        struct prefetch_pins *pins;
        pthread_t thread;
        bool running;
        pthread_mutex_t round_lock; /* one round at a time: the worker's or an operator's (admin API) */
        pthread_mutex_t lock; /* kick, the counters below */
        pthread_cond_t wake;
        bool kick;
        atomic_bool stopping;
        struct ratelimit limit;
        /* metrics: the last round's, and totals */
        uint64_t rounds, images_fetched_total, bytes_total, blobs_total;
        struct prefetch_round_stats last;
        bool have_last;
        int64_t last_end_s;
        bool in_round;
        uint64_t next_round_ms;
        unsigned round_done, round_images; /* the round in progress: images ended, of how many */
};

/* The worker's round's progress, for `layerd status`. */
static void worker_progress(const struct prefetch_image_report *r, bool done, void *userdata) {
        struct prefetch *pf = userdata;
        if (!done)
                return;
        pthread_mutex_lock(&pf->lock);
        pf->round_done++;
        pf->round_images = r->count;
        pthread_mutex_unlock(&pf->lock);
}

static void *prefetch_main(void *arg) {
        struct prefetch *pf = arg;
        bool first = true;
        while (!atomic_load(&pf->stopping)) {
                void *token = NULL;
                const struct spec *s = pull_spec_acquire(pf->pull, &token);
                uint64_t interval = s->prefetch.interval_ms;
                struct prefetch_round_stats st = {};
                int r = 0;
                /* The rate may change with a reload; an idle bucket starts over. */
                pthread_mutex_lock(&pf->limit.lock);
                pf->limit.rate = s->prefetch.bandwidth_bps;
                pf->limit.burst = pf->limit.rate / 20 > 16384 ? pf->limit.rate / 20 : 16384;
                pthread_mutex_unlock(&pf->limit.lock);
                bool any = s->prefetch.n_entries > 0 || pf->pins->n_prev > 0;
                pthread_mutex_lock(&pf->lock);
                pf->in_round = any;
                pf->next_round_ms = 0;
                pf->round_done = pf->round_images = 0;
                pthread_mutex_unlock(&pf->lock);
                if (any) {
                        log_info("prefetch round starting entries=%zu", s->prefetch.n_entries);
                        pthread_mutex_lock(&pf->round_lock);
                        struct prefetch_hooks progress = { .image = worker_progress, .userdata = pf };
                        r = prefetch_round(pf->pull, &s->prefetch, false, &pf->limit, pf->pins, &progress,
                                           &pf->stopping, &st);
                        pthread_mutex_unlock(&pf->round_lock);
                }
                pull_spec_release(pf->pull, token);
                if (any && !atomic_load(&pf->stopping)) {
                        agent_log(r < 0 ? LOG_WARNING : LOG_INFO,
                                  "prefetch round done images=%u ok=%u failed=%u entries_failed=%u fetched_blobs=%" PRIu64
                                  " fetched_bytes=%" PRIu64 " ms=%" PRIu64,
                                  st.images, st.images_ok, st.images_failed, st.entries_failed, st.blobs_fetched,
                                  st.bytes_fetched, st.ms);
                        pthread_mutex_lock(&pf->lock);
                        pf->rounds++;
                        pf->images_fetched_total += st.images_ok;
                        pf->bytes_total += st.bytes_fetched;
                        pf->blobs_total += st.blobs_fetched;
                        pf->last = st;
                        pf->have_last = true;
                        pf->last_end_s = (int64_t) time(NULL);
                        pthread_mutex_unlock(&pf->lock);
                }
                if (first) {
                        /* Done or not (an origin down must not keep a node out for good):
                         * the first round ended, /readyz no longer waits for it. */
                        pull_set_ready_gate(pf->pull, 0);
                        first = false;
                }
                pthread_mutex_lock(&pf->lock);
                uint64_t until = time_deadline_ms((int64_t) interval);
                pf->in_round = false;
                pf->next_round_ms = time_now_ms() + interval;
                while (!pf->kick && !atomic_load(&pf->stopping))
                        if (time_cond_wait_until(&pf->wake, &pf->lock, until) == -ETIMEDOUT)
                                break;
                pf->kick = false;
                pthread_mutex_unlock(&pf->lock);
        }
        return NULL;
}

int prefetch_new(struct pull *p, struct prefetch_pins *pins, struct prefetch **ret) {
        struct prefetch *pf = calloc(1, sizeof(*pf));
        if (!pf) {
                prefetch_pins_free(pins);
                return -ENOMEM;
        }
        pf->pull = p;
        pf->pins = pins;
        pthread_mutex_init(&pf->lock, NULL);
        pthread_mutex_init(&pf->round_lock, NULL);
        time_cond_init(&pf->wake); /* the interval is no wall-clock time */
        ratelimit_init(&pf->limit, 0);
        void *token = NULL;
        const struct spec *s = pull_spec_acquire(p, &token);
        if (s->prefetch.wait_ready && s->prefetch.n_entries > 0)
                pull_set_ready_gate(p, time_now_ms() + s->prefetch.wait_ready_timeout_ms);
        pull_spec_release(p, token);
        pull_set_metrics_hook(p, PULL_METRICS_PREFETCH, prefetch_metrics, pf);
        *ret = pf;
        return 0;
}

int prefetch_run(struct prefetch *pf) {
        int r = -pthread_create(&pf->thread, NULL, prefetch_main, pf);
        if (r < 0) {
                pull_set_ready_gate(pf->pull, 0);
                return r;
        }
        pf->running = true;
        return 0;
}

int prefetch_round_now(struct prefetch *pf, const struct prefetch_hooks *hooks, struct prefetch_round_stats *ret) {
        void *token = NULL;
        const struct spec *s = pull_spec_acquire(pf->pull, &token);
        int r = -ENODATA;
        if (s->prefetch.n_entries > 0) {
                log_info("prefetch round starting entries=%zu by=admin", s->prefetch.n_entries);
                pthread_mutex_lock(&pf->round_lock);
                r = prefetch_round(pf->pull, &s->prefetch, false, &pf->limit, pf->pins, hooks, &pf->stopping, ret);
                pthread_mutex_unlock(&pf->round_lock);
        }
        pull_spec_release(pf->pull, token);
        return r;
}

void prefetch_status(struct prefetch *pf, struct prefetch_status *ret) {
        pthread_mutex_lock(&pf->lock);
        *ret = (struct prefetch_status) { .rounds = pf->rounds, .have_last = pf->have_last, .last = pf->last,
                                          .last_end_s = pf->last_end_s, .next_round_ms = pf->next_round_ms,
                                          .running = pf->in_round, .round_done = pf->round_done,
                                          .round_images = pf->round_images };
        pthread_mutex_unlock(&pf->lock);
}

void prefetch_kick(struct prefetch *pf) {
        if (!pf)
                return;
        pthread_mutex_lock(&pf->lock);
        pf->kick = true;
        pthread_cond_signal(&pf->wake);
        pthread_mutex_unlock(&pf->lock);
}

void prefetch_stop(struct prefetch *pf) {
        if (!pf)
                return;
        pthread_mutex_lock(&pf->lock);
        atomic_store(&pf->stopping, true);
        pthread_cond_signal(&pf->wake);
        pthread_mutex_unlock(&pf->lock);
}

struct prefetch *prefetch_free(struct prefetch *pf) {
        if (!pf)
                return NULL;
        prefetch_stop(pf);
        if (pf->running)
                pthread_join(pf->thread, NULL);
        pull_set_metrics_hook(pf->pull, PULL_METRICS_PREFETCH, NULL, NULL);
        ratelimit_done(&pf->limit);
        pthread_cond_destroy(&pf->wake);
        pthread_mutex_destroy(&pf->lock);
        pthread_mutex_destroy(&pf->round_lock);
        prefetch_pins_free(pf->pins);
        free(pf);
        return NULL;
}

void prefetch_metrics(FILE *f, void *userdata) {
        struct prefetch *pf = userdata;
        pthread_mutex_lock(&pf->lock);
        fprintf(f,
                "# TYPE layerd_prefetch_rounds_total counter\nlayerd_prefetch_rounds_total %" PRIu64 "\n"
                "# TYPE layerd_prefetch_images_total counter\nlayerd_prefetch_images_total %" PRIu64 "\n"
                "# TYPE layerd_prefetch_blobs_total counter\nlayerd_prefetch_blobs_total %" PRIu64 "\n"
                "# TYPE layerd_prefetch_bytes_total counter\nlayerd_prefetch_bytes_total %" PRIu64 "\n",
                pf->rounds, pf->images_fetched_total, pf->blobs_total, pf->bytes_total);
        if (pf->have_last)
                fprintf(f,
                        "# TYPE layerd_prefetch_last_round_images gauge\nlayerd_prefetch_last_round_images %u\n"
                        "# TYPE layerd_prefetch_last_round_errors gauge\nlayerd_prefetch_last_round_errors %u\n"
                        "# TYPE layerd_prefetch_last_round_duration_seconds gauge\n"
                        "layerd_prefetch_last_round_duration_seconds %.3f\n"
                        "# TYPE layerd_prefetch_last_round_end_seconds gauge\nlayerd_prefetch_last_round_end_seconds %" PRId64
                        "\n",
                        pf->last.images, pf->last.images_failed + pf->last.entries_failed,
                        (double) pf->last.ms / 1000.0, pf->last_end_s);
        pthread_mutex_unlock(&pf->lock);
}
