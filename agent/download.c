/* SPDX-License-Identifier: Apache-2.0 */
/* Blob downloads: one per digest (the cache's single-flight, cache_begin()),
 * joined by every client and prefetch round that wants the blob, each on a
 * thread of its own so that no client (leaving early or not) decides its
 * fate. What the cache does not know travels here: the upstream's verdict
 * (an outcome, made once), who sent the bytes, whether anybody still wants
 * the download, whether a client follows it (a prefetch download keeps to
 * its rate limit only while none does). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/log.h"
#include "agent/pull-internal.h"
#include "common/macro.h"
#include "common/ratelimit.h"
#include "common/time.h"

#define PROGRESS_EVERY_MS 10000
#define DL_BATCH (256 * 1024)
#define THROTTLE_SLICE_NS (50 * 1000000ULL) /* a rate-limited download rechecks for clients this often */

struct download {
        struct download *next;
        unsigned refs; /* under pull->lock */
        struct digest digest;
        char *registry, *repository;
        struct cache_entry *entry;  /* the writer's reference, the download thread's */
        bool done;                  /* under pull->lock: the verdict is in */
        struct outcome verdict;     /* under pull->lock, once done */
        char endpoint[PULL_ENDPOINT_MAX]; /* under pull->lock: who sent the bytes, once known */
        unsigned readers;           /* under pull->lock: clients streaming it */
        bool finish_abandoned;      /* agent.finish_abandoned_downloads when it started */
        atomic_bool cancel;         /* nobody wants it any more */
        struct ratelimit *limit;    /* prefetch: held to this rate while no client follows it */
        struct pull *pull;
        uint64_t bytes, last_progress_ms, started_ms;
        char *batch;                /* the download thread's: bytes not yet given to the cache */
        size_t batch_len;
};

static void download_unref_locked(struct pull *p, struct download *dl) {
        if (!dl || --dl->refs > 0)
                return;
        for (struct download **q = &p->downloads; *q; q = &(*q)->next)
                if (*q == dl) {
                        *q = dl->next;
                        break;
                }
        free(dl->registry);
        free(dl->repository);
        free(dl->batch);
        free(dl);
}

/* Under pull->lock: a client stops waiting for dl. The last one gone before
 * the end: finish for the cache (agent.finish_abandoned_downloads), or cancel. */
static void reader_release_locked(struct download *dl) {
        if (--dl->readers == 0 && !dl->done && !dl->finish_abandoned)
                atomic_store(&dl->cancel, true);
}

static int dl_start(void *userdata, int64_t total) {
        struct download *dl = userdata;
        if (total < 0)
                return 0;
        return cache_entry_set_size(dl->entry, (uint64_t) total);
}

static bool dl_cancelled(void *userdata) {
        struct download *dl = userdata;
        return atomic_load(&dl->pull->stopping) || atomic_load(&dl->cancel);
}

/* Hands the batched bytes to the cache (and so to the clients following it). */
static int dl_flush(struct download *dl) {
        if (dl->batch_len == 0)
                return 0;
        int r = cache_write(dl->entry, dl->batch, dl->batch_len);
        dl->batch_len = 0;
        return r;
}

static bool dl_followed(struct download *dl) {
        pthread_mutex_lock(&dl->pull->lock);
        bool followed = dl->readers > 0;
        pthread_mutex_unlock(&dl->pull->lock);
        return followed;
}

/* A prefetch download keeps to the shared rate while no client follows it;
 * once one joins, the client waits on these bytes and the limit lifts
 * (real pulls go first). Sleeps in slices to notice that, and cancels. */
static void dl_throttle(struct download *dl, size_t size) {
        if (dl_followed(dl))
                return;
        uint64_t wait = ratelimit_take(dl->limit, size, time_now_ns());
        while (wait > 0 && !dl_cancelled(dl)) {
                uint64_t slice = wait < THROTTLE_SLICE_NS ? wait : THROTTLE_SLICE_NS;
                struct timespec ts = { .tv_sec = (time_t) (slice / 1000000000ULL),
                                       .tv_nsec = (long) (slice % 1000000000ULL) };
                nanosleep(&ts, NULL);
                wait -= slice;
                if (dl_followed(dl))
                        break;
        }
}

static int dl_write(void *userdata, const void *data, size_t size) {
        struct download *dl = userdata;
        if (dl_cancelled(dl))
                return -ECANCELED;
        if (dl->limit)
                dl_throttle(dl, size);
        /* libcurl hands over 16 KiB at a time: one write, one digest update and
         * one wake-up of every reader per DL_BATCH instead (the cold path's
         * profile was all pwrite and wake-ups). */
        int r = 0;
        if (dl->batch_len + size > DL_BATCH)
                r = dl_flush(dl);
        if (r >= 0 && size >= DL_BATCH)
                r = cache_write(dl->entry, data, size);
        else if (r >= 0) {
                memcpy(dl->batch + dl->batch_len, data, size);
                dl->batch_len += size;
        }
        if (r < 0)
                return r;
        dl->bytes += size;
        uint64_t now = time_now_ms();
        if (now - dl->last_progress_ms >= PROGRESS_EVERY_MS) {
                char ds[DIGEST_STRING_MAX];
                uint64_t secs = (now - dl->started_ms) / 1000;
                log_info("downloading ns=%s repo=%s digest=%s bytes=%" PRIu64 " rate_kib_s=%" PRIu64, dl->registry,
                         dl->repository, digest_to_string(&dl->digest, ds), dl->bytes,
                         secs ? dl->bytes / 1024 / secs : dl->bytes / 1024);
                dl->last_progress_ms = now;
        }
        return 0;
}

/* The end of a download whose bytes all came: verified and stored, or not. */
static int dl_commit(struct download *dl, const char *endpoint, struct outcome *o) {
        struct pull *p = dl->pull;
        char ds[DIGEST_STRING_MAX];
        digest_to_string(&dl->digest, ds);
        struct digest got;
        int c = cache_commit(dl->entry, &got);
        if (c == -EBADMSG || c == -EMSGSIZE) {
                char gs[DIGEST_STRING_MAX] = "-";
                if (c == -EBADMSG)
                        digest_to_string(&got, gs);
                log_error("upstream sent wrong bytes, not cached: ns=%s repo=%s digest=%s got=%s size=%" PRIu64
                          " endpoint=%s",
                          dl->registry, dl->repository, ds, gs, dl->bytes, endpoint ? endpoint : "-");
                if (endpoint)
                        fallback_report_bad(p->fb, dl->registry, endpoint, "served bytes that do not match their digest");
                return outcome_set(o, -EBADMSG, "upstream sent bytes that do not match the digest");
        }
        if (c < 0) {
                /* Verified either way (its clients got it); was it stored? */
                uint64_t sz;
                if (cache_stat(p->cache, &dl->digest, &sz) == 0)
                        log_warning("blob stored but maybe not durable: digest=%s: %s", ds, strerror(-c));
                else
                        log_warning("verified blob not stored: ns=%s repo=%s digest=%s: %s", dl->registry,
                                    dl->repository, ds, strerror(-c));
        } else
                log_info("downloaded ns=%s repo=%s digest=%s bytes=%" PRIu64 " ms=%" PRIu64 " endpoint=%s",
                         dl->registry, dl->repository, ds, dl->bytes, time_now_ms() - dl->started_ms,
                         endpoint ? endpoint : "-");
        return outcome_set(o, 0, NULL);
}

static void *download_main(void *arg) {
        struct download *dl = arg;
        struct pull *p = dl->pull;
        char ds[DIGEST_STRING_MAX];
        digest_to_string(&dl->digest, ds);
        struct sink sink = { .userdata = dl, .start = dl_start, .write = dl_write };
        struct fallback_request req = {
                .registry = dl->registry, .repository = dl->repository, .kind = FALLBACK_BLOB,
                .reference = ds, .sink = &sink, .cancelled = dl_cancelled, .cancel_userdata = dl,
        };
        struct fallback_response fr;
        struct outcome o;
        dl->started_ms = dl->last_progress_ms = time_now_ms();
        int r = fallback_fetch(p->fb, &req, &fr);
        if (r >= 0 && fr.status == 200)
                r = dl_flush(dl); /* the tail, before the commit */
        if (fr.endpoint) {
                /* Before the commit, which releases the readers' last byte: their log lines name it. */
                pthread_mutex_lock(&p->lock);
                snprintf(dl->endpoint, sizeof(dl->endpoint), "%s", fr.endpoint);
                pthread_mutex_unlock(&p->lock);
        }
        if (outcome_from_upstream(&o, r, &fr) == 0)
                (void) dl_commit(dl, fr.endpoint, &o);
        else if (r == -ENOSPC)
                log_warning("cache disk full, download not cached: ns=%s repo=%s digest=%s", dl->registry,
                            dl->repository, ds);
        else if (r == -ECANCELED && !atomic_load(&p->stopping))
                log_info("download cancelled, no client wants it (agent.finish_abandoned_downloads: false): "
                         "ns=%s repo=%s digest=%s bytes=%" PRIu64,
                         dl->registry, dl->repository, ds, dl->bytes);
        else if (r != -ECANCELED)
                log_warning("download failed: ns=%s repo=%s digest=%s status=%d reason=\"%s\"", dl->registry,
                            dl->repository, ds, r < 0 ? 503 : fr.status, o.reason);
        /* The verdict first, then the wake-up of the readers (commit or abort). */
        pthread_mutex_lock(&p->lock);
        dl->verdict = o;
        dl->done = true;
        pthread_mutex_unlock(&p->lock);
        fallback_response_done(&fr);
        cache_writer_unref(dl->entry); /* aborts what was not committed */
        pthread_mutex_lock(&p->lock);
        download_unref_locked(p, dl);
        p->threads--;
        pthread_cond_broadcast(&p->ended);
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

/* Under p->lock: the download of w into the writer entry e, on a thread of
 * its own. On success *ret holds a reference for the caller. */
static int download_start_locked(struct pull *p, const struct download_want *w, struct cache_entry *e,
                                 struct download **ret) {
        struct download *dl = calloc(1, sizeof(*dl));
        if (!dl)
                return -ENOMEM;
        dl->refs = 2;                      /* the caller's, the thread's */
        dl->readers = w->follow ? 1 : 0; /* a client: the caller, until its stream takes over; prefetch: none */
        dl->limit = w->limit;
        dl->digest = w->digest;
        dl->finish_abandoned = w->finish_abandoned;
        dl->pull = p;
        dl->entry = e;
        dl->registry = strdup(w->registry);
        dl->repository = strdup(w->repository);
        dl->batch = malloc(DL_BATCH);
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int r = dl->registry && dl->repository && dl->batch ? -pthread_create(&th, &attr, download_main, dl) : -ENOMEM;
        pthread_attr_destroy(&attr);
        if (r < 0) {
                free(dl->registry);
                free(dl->repository);
                free(dl->batch);
                free(dl);
                return r;
        }
        dl->next = p->downloads;
        p->downloads = dl;
        p->threads++;
        *ret = dl;
        return 0;
}

int download_join_or_start(struct pull *p, const struct download_want *w, struct download_hold *ret) {
        struct cache_entry *e = NULL;
        struct download_hold h = {};
        bool writer = false;
        /* The download table and the cache's in-flight list change together under p->lock. */
        pthread_mutex_lock(&p->lock);
        int r = atomic_load(&p->stopping) ? -ESHUTDOWN : cache_begin(p->cache, &w->digest, w->size, &e, &writer);
        if (r == 0 && !writer) {
                /* The download of this very entry (a finished one of the same
                 * digest may linger on the list while its readers end). None:
                 * someone else writes it (a manifest being stored). */
                for (h.dl = p->downloads; h.dl; h.dl = h.dl->next)
                        if (h.dl->entry == e && !h.dl->done)
                                break;
                if (h.dl && atomic_load(&h.dl->cancel)) {
                        /* Being cancelled, nobody wanted it: not to be joined. */
                        h.dl = NULL;
                        r = -ECANCELED;
                } else if (h.dl) {
                        h.dl->refs++;
                        /* A client follows it (from now on a cancel must not miss
                         * it). Prefetch only waits, but a client's download (no
                         * limit) is wanted by the round too: its client leaving
                         * must not cancel it. */
                        h.reader = w->follow || !h.dl->limit;
                        if (h.reader)
                                h.dl->readers++;
                }
                h.entry = e;
        } else if (r == 0) {
                /* The caller's reference, taken before the thread can finish and drop the writer's. */
                h.entry = cache_entry_ref(e);
                r = download_start_locked(p, w, e, &h.dl);
                if (r < 0) {
                        cache_writer_unref(e);
                        h.entry = cache_entry_unref(h.entry);
                } else {
                        h.reader = w->follow;
                        h.started = true;
                }
        }
        pthread_mutex_unlock(&p->lock);
        if (r < 0) {
                cache_entry_unref(h.entry);
                return r;
        }
        *ret = h;
        return 0;
}

void download_release(struct pull *p, struct download_hold *h) {
        cache_entry_unref(h->entry);
        if (h->dl) {
                pthread_mutex_lock(&p->lock);
                if (h->reader)
                        reader_release_locked(h->dl);
                download_unref_locked(p, h->dl);
                pthread_mutex_unlock(&p->lock);
        }
        *h = (struct download_hold) {};
}

void download_follow(struct pull *p, const struct download_hold *h, struct download_hold *ret) {
        *ret = (struct download_hold) { .entry = cache_entry_ref(h->entry), .dl = h->dl, .reader = h->dl != NULL };
        if (ret->dl) {
                pthread_mutex_lock(&p->lock);
                ret->dl->refs++;
                ret->dl->readers++;
                pthread_mutex_unlock(&p->lock);
        }
}

void download_outcome(struct pull *p, const struct download_hold *h, int r, struct outcome *o) {
        bool done = false;
        if (h->dl) {
                pthread_mutex_lock(&p->lock);
                done = h->dl->done && h->dl->verdict.error != 0;
                if (done)
                        *o = h->dl->verdict;
                pthread_mutex_unlock(&p->lock);
        }
        if (done)
                return;
        if (r == -ETIMEDOUT)
                outcome_set(o, r, "no upstream answered within %d s", HEADER_WAIT_MS / 1000);
        else
                outcome_set(o, r == -ENOENT ? -EIO : r, "download failed: %s", strerror(-r));
}

void download_endpoint(struct pull *p, const struct download_hold *h, char *buf, size_t size) {
        if (!h->dl)
                return;
        pthread_mutex_lock(&p->lock);
        if (h->dl->endpoint[0])
                snprintf(buf, size, "%s", h->dl->endpoint);
        pthread_mutex_unlock(&p->lock);
}

/* Follows an entry someone else writes (no download of ours: a manifest
 * being stored, say) to its end; 0 once committed. */
static int follow_to_end(struct cache_entry *e) {
        _cleanup_(cache_reader_freep) struct cache_reader *rd = NULL;
        _cleanup_free_ char *buf = malloc(STREAM_BLOCK);
        if (!buf)
                return -ENOMEM;
        int r = cache_reader_new(e, &rd);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = cache_reader_read(rd, buf, STREAM_BLOCK, STREAM_WAIT_MS);
                if (n <= 0)
                        return (int) n;
        }
}

/* Waits for the download's verdict (prefetch): 0 once stored. */
static int download_wait(struct pull *p, const struct download_hold *h) {
        if (!h->dl)
                return follow_to_end(h->entry);
        pthread_mutex_lock(&p->lock);
        while (!h->dl->done && !atomic_load(&p->stopping))
                (void) time_cond_wait_until(&p->ended, &p->lock, time_deadline_ms(1000));
        int r = !h->dl->done ? -ESHUTDOWN : h->dl->verdict.error;
        pthread_mutex_unlock(&p->lock);
        /* The in-process API's words: unavailable is "no upstream answered". */
        if (r < 0 && r != -ENOENT && r != -EBADMSG && r != -ESHUTDOWN)
                r = -EHOSTUNREACH;
        return r;
}

int pull_blob_ensure(struct pull *p, const char *registry, const char *repository, const struct digest *d,
                     int64_t size, struct ratelimit *limit, bool offline, bool *ret_fetched, uint64_t *ret_size) {
        uint64_t have = 0;
        if (offline) {
                /* Re-hashed: what an air-gapped site checks before it cuts the link. */
                int r = cache_verify_blob(p->cache, d, &have);
                if (r == 0)
                        *ret_size = have, *ret_fetched = false;
                return r;
        }
        if (cache_stat(p->cache, d, &have) == 0) {
                *ret_size = have;
                *ret_fetched = false;
                return 0;
        }
        struct spec_ref *sr = spec_ref_get(p);
        const struct spec_registry *reg = pull_registry(sr->spec, registry, false);
        /* No client is waiting: at the prefetch rate, finished even if nobody joins. */
        struct download_want w = { .registry = reg ? reg->host : NULL, .repository = repository, .digest = *d,
                                   .size = size, .finish_abandoned = true, .limit = limit };
        int r = -ENXIO;
        bool fetched = false;
        struct download_hold h;
        if (reg)
                r = download_join_or_start(p, &w, &h);
        if (r == -EEXIST)
                r = 0; /* committed meanwhile */
        else if (r == -ECANCELED)
                r = -EHOSTUNREACH; /* a client's download nobody wanted any more */
        else if (r >= 0) {
                fetched = h.started;
                r = download_wait(p, &h);
                download_release(p, &h);
        }
        spec_ref_put(p, sr);
        if (r == 0)
                r = cache_stat(p->cache, d, &have);
        if (r < 0)
                return r;
        *ret_size = have;
        *ret_fetched = fetched;
        return 0;
}
