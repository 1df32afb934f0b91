/* SPDX-License-Identifier: Apache-2.0 */
/* Blob downloads: one per digest, joined by every client and prefetch round
 * that wants the blob, each on a thread of its own so that no client
 * (leaving early or not) decides its fate. Single-flight is the cache's
 * (cache_begin()), and so is everything a follower needs to know of the
 * download: the upstream's verdict (made an outcome once, handed to
 * cache_fail()), who sent the bytes (cache_entry_set_source()), whether
 * anybody still wants it (cache_entry_wanted()) and whether a client follows
 * it (cache_entry_followers(): a prefetch download keeps to its rate limit
 * only while none does). When the cache cannot take a blob (its disk is
 * full) the same download runs into an entry with no disk behind it, for one
 * client (stream-through).
 *
 * Bounds (bounds.h): every download, stored or not, holds one of
 * agent.max_downloads slots from its start to its end (a thread, a socket
 * and a file each). Past it a client is refused at once (-EBUSY: the front
 * end answers 503 and containerd tries its next host): a slot frees only
 * when a whole blob download ends, seconds to minutes, so a short wait would
 * rarely get one and a long one would hold the pull that containerd cannot
 * time out. Prefetch takes at most half of the slots and waits for one
 * instead of failing, so it never starves clients. A download every client
 * left goes on for the cache only while fewer than
 * agent.max_abandoned_downloads do and at most
 * agent.abandoned_download_timeout after it was left. */
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
#define DL_BATCH_MS 200 /* bytes wait in the batch at most this long (a slow upstream's followers see them) */
#define THROTTLE_SLICE_NS (50 * 1000000ULL) /* a rate-limited download rechecks for clients this often */
#define UNSTORED_WINDOW (1024 * 1024)       /* a stream-through's bytes in memory, at most */
#define SLOT_RETRY_NS (100 * 1000000L)      /* prefetch looks for a free download slot this often */

/* The download thread's alone. */
struct download {
        struct digest digest;
        char *registry, *repository;
        struct cache_entry *entry;  /* the writer's reference */
        bool finish_abandoned;      /* go on when nobody wants it any more... */
        unsigned max_abandoned;     /* ...while fewer than this many are abandoned (agent.max_abandoned_downloads)... */
        uint64_t abandon_ms;        /* ...and for this long (agent.abandoned_download_timeout) */
        uint64_t abandoned_at;      /* when it was abandoned (counted in bounds), or 0 */
        const char *cancel_why;     /* set once it was cancelled past a cap: why, for the log */
        bool background;            /* holds a slot of prefetch's share */
        bool unstored;              /* stream-through: an entry with no disk behind it */
        struct ratelimit *limit;    /* prefetch: held to this rate while no client follows it */
        struct pull *pull;
        uint64_t bytes, last_progress_ms, started_ms;
        char *batch;                /* bytes not yet given to the cache */
        size_t batch_len;
        uint64_t batch_ms;          /* when its first byte came */
        struct budget_hold held;    /* the batch's share of the pull's budget */
        bool mark_private;          /* record the digest for repository at the origin's answer (dl_start) */
        bool pinned;                /* the digest pinned in the private-content table until the store ended */
        char *user, *password;      /* a private repository's client's credentials (secret: wiped), or NULL */
        uint8_t client_key[FALLBACK_CLIENT_KEY_SIZE]; /* client_auth's key */
        struct fallback_client_auth client_auth;
};

_Static_assert(CLIENT_AUTH_KEY_SIZE == FALLBACK_CLIENT_KEY_SIZE, "the client's key is the token cache's");

static struct download *download_free(struct download *dl) {
        if (!dl)
                return NULL;
        free(dl->registry);
        free(dl->repository);
        free(dl->batch);
        if (dl->pinned) /* committed or failed by now */
                private_unpin(dl->pull->private, &dl->digest);
        budget_hold_release(&dl->held);
        secret_free(dl->user);
        secret_free(dl->password);
        free(dl);
        return NULL;
}

static int dl_start(void *userdata, int64_t total) {
        struct download *dl = userdata;
        /* Recorded only now: the origin says the repository has the digest (a mark
         * made before asking stayed after a 404, and let the repository's readers
         * have the blob once another's download stored it). Before any byte is
         * stored, and before the size wakes the joiners, which check it. */
        if (dl->mark_private) {
                /* Pinned first (once): a prune must not drop the mark before the store ended. */
                int r = dl->pinned ? 0 : private_pin(dl->pull->private, &dl->digest);
                dl->pinned = r >= 0;
                if (r >= 0)
                        r = private_mark(dl->pull->private, dl->registry, dl->repository, &dl->digest, 1);
                if (r < 0) {
                        char ds[DIGEST_STRING_MAX];
                        log_error("cannot record private content, not caching the blob: ns=%s repo=%s digest=%s: %s",
                                  dl->registry, dl->repository, digest_to_string(&dl->digest, ds), strerror(-r));
                        return r;
                }
        }
        if (total < 0)
                return 0;
        return cache_entry_set_size(dl->entry, (uint64_t) total);
}

/* Shutdown, or nobody wants the bytes any more (every client left, none
 * joined) and agent.finish_abandoned_downloads says not to finish for the
 * cache, or the abandoned downloads' cap or deadline says so. The download
 * thread's alone (fallback polls it on the thread that fetches). */
static bool dl_cancelled(void *userdata) {
        struct download *dl = userdata;
        struct bounds *b = &dl->pull->bounds;
        if (atomic_load(&dl->pull->stopping) || dl->cancel_why)
                return true;
        if (cache_entry_wanted(dl->entry)) {
                if (dl->abandoned_at) {
                        bounds_unabandon(b); /* a client came back */
                        dl->abandoned_at = 0;
                }
                return false;
        }
        if (!dl->finish_abandoned)
                return true;
        uint64_t now = time_now_ms();
        if (!dl->abandoned_at) {
                if (!bounds_abandon(b, dl->max_abandoned)) {
                        dl->cancel_why = "cancelled, no client wants it and agent.max_abandoned_downloads "
                                         "others go on already";
                        return true;
                }
                dl->abandoned_at = now ? now : 1;
                return false;
        }
        if (now - dl->abandoned_at >= dl->abandon_ms) {
                bounds_refused(b, BOUNDS_ABANDONED_TIME);
                dl->cancel_why = "cancelled, no client wanted it for agent.abandoned_download_timeout";
                return true;
        }
        return false;
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
        return cache_entry_followers(dl->entry) > 0;
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
         * profile was all pwrite and wake-ups). From a slow upstream the batch
         * goes out after DL_BATCH_MS anyway: its followers' streams move (and
         * find out when their clients have gone, see dl_cancelled()). */
        int r = 0;
        uint64_t now = time_now_ms();
        if (dl->batch_len + size > DL_BATCH)
                r = dl_flush(dl);
        if (r >= 0 && size >= DL_BATCH)
                r = cache_write(dl->entry, data, size);
        else if (r >= 0) {
                if (dl->batch_len == 0)
                        dl->batch_ms = now;
                memcpy(dl->batch + dl->batch_len, data, size);
                dl->batch_len += size;
                if (now - dl->batch_ms >= DL_BATCH_MS)
                        r = dl_flush(dl);
        }
        if (r < 0)
                return r;
        dl->bytes += size;
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
                log_error("upstream sent wrong bytes, not %s: ns=%s repo=%s digest=%s got=%s size=%" PRIu64
                          " endpoint=%s",
                          dl->unstored ? "served" : "cached", dl->registry, dl->repository, ds, gs, dl->bytes,
                          endpoint ? endpoint : "-");
                if (endpoint)
                        fallback_report_bad(p->fb, dl->registry, endpoint, "served bytes that do not match their digest");
                return outcome_set(o, c, "upstream sent bytes that do not match the digest");
        }
        if (c < 0 && !dl->unstored) {
                /* Verified either way (its clients got it); was it stored? */
                uint64_t sz;
                if (cache_stat(p->cache, &dl->digest, &sz) == 0)
                        log_warning("blob stored but maybe not durable: digest=%s: %s", ds, strerror(-c));
                else
                        log_warning("verified blob not stored: ns=%s repo=%s digest=%s: %s", dl->registry,
                                    dl->repository, ds, strerror(-c));
        } else if (c >= 0)
                log_info("%s ns=%s repo=%s digest=%s bytes=%" PRIu64 " ms=%" PRIu64 " endpoint=%s",
                         dl->unstored ? "streamed through, not cached:" : "downloaded", dl->registry, dl->repository,
                         ds, dl->bytes, time_now_ms() - dl->started_ms, endpoint ? endpoint : "-");
        return outcome_set(o, 0, NULL);
}

static void log_failure(struct download *dl, int r, const struct fallback_response *fr, const struct outcome *o) {
        char ds[DIGEST_STRING_MAX];
        digest_to_string(&dl->digest, ds);
        if (r == -ENOSPC)
                log_warning("cache disk full, download not cached: ns=%s repo=%s digest=%s", dl->registry,
                            dl->repository, ds);
        else if ((r == -ECANCELED || r == -EPIPE) && !atomic_load(&dl->pull->stopping))
                log_info("download %s: ns=%s repo=%s digest=%s bytes=%" PRIu64,
                         dl->unstored     ? "ended, its client left"
                         : dl->cancel_why ? dl->cancel_why
                                          : "cancelled, no client wants it (agent.finish_abandoned_downloads: false)",
                         dl->registry, dl->repository, ds, dl->bytes);
        else if (r == -EMFILE || r == -ENFILE)
                /* Descriptors ran out (a socket or the cache's file): this download fails, nothing else. */
                log_warning("download failed, out of file descriptors: ns=%s repo=%s digest=%s reason=\"%s\"",
                            dl->registry, dl->repository, ds, o->reason);
        else if (r != -ECANCELED)
                log_warning("download failed: ns=%s repo=%s digest=%s status=%d reason=\"%s\"", dl->registry,
                            dl->repository, ds, r < 0 ? 503 : fr->status, o->reason);
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
                .client_auth = dl->user ? &dl->client_auth : NULL,
        };
        struct fallback_response fr;
        struct outcome o;
        dl->started_ms = dl->last_progress_ms = time_now_ms();
        int r = fallback_fetch(p->fb, &req, &fr);
        if (r >= 0 && fr.status == 200)
                r = dl_flush(dl); /* the tail, before the commit */
        /* Before the commit, which releases the readers' last byte: their log lines name it. */
        if (fr.endpoint)
                cache_entry_set_source(dl->entry, fr.endpoint);
        if (outcome_from_upstream(&o, r, &fr) == 0)
                (void) dl_commit(dl, fr.endpoint, &o);
        else {
                log_failure(dl, r, &fr, &o);
                /* Every follower gets the verdict (-ENOSPC: the cache already said). */
                if (r != -ENOSPC)
                        (void) cache_fail(dl->entry, o.auth_refused ? -EACCES : o.error);
        }
        fallback_response_done(&fr);
        cache_writer_unref(dl->entry);
        if (dl->abandoned_at)
                bounds_unabandon(&p->bounds);
        bounds_put_download(&p->bounds, dl->background);
        download_free(dl);
        pull_thread_end(p);
        return NULL;
}

/* The spec's caps on downloads, read at each start (a reload applies to the next). */
struct caps {
        unsigned downloads, abandoned;
        uint64_t abandon_ms;
};

static struct caps caps_get(struct pull *p) {
        struct spec_ref *sr = spec_ref_get(p);
        const struct spec_agent *a = &sr->spec->agent;
        struct caps c = { .downloads = a->max_downloads, .abandoned = a->max_abandoned_downloads,
                          .abandon_ms = a->abandoned_download_timeout_ms };
        spec_ref_put(p, sr);
        return c;
}

/* Runs the download of w into the writer entry e on a thread of its own,
 * which takes e and the download slot the caller took over (also on failure). */
static int download_run(struct pull *p, const struct download_want *w, struct cache_entry *e, bool unstored,
                        const struct caps *caps) {
        struct download *dl = calloc(1, sizeof(*dl));
        if (!dl) {
                cache_writer_unref(e);
                bounds_put_download(&p->bounds, w->background);
                return -ENOMEM;
        }
        *dl = (struct download) { .digest = w->digest, .entry = e, .pull = p, .limit = w->limit,
                                  .finish_abandoned = w->finish_abandoned && !unstored, .unstored = unstored,
                                  .max_abandoned = caps->abandoned, .abandon_ms = caps->abandon_ms,
                                  .background = w->background, .mark_private = w->mark_private,
                                  .registry = strdup(w->registry), .repository = strdup(w->repository) };
        int r = budget_hold_reserve(&dl->held, &p->budget, DL_BATCH);
        if (r == 0 && w->client) {
                dl->user = strdup(w->client->user);
                dl->password = strdup(w->client->password);
                memcpy(dl->client_key, w->client->key, sizeof(dl->client_key));
                dl->client_auth = (struct fallback_client_auth) { .user = dl->user, .password = dl->password,
                                                                  .key = dl->client_key };
                if (!dl->user || !dl->password)
                        r = -ENOMEM;
        }
        if (r == 0)
                dl->batch = malloc(DL_BATCH);
        if (r == 0 && !(dl->registry && dl->repository && dl->batch))
                r = -ENOMEM;
        if (unstored)
                cache_entry_set_stop(e, &p->stopping); /* its writes wait for the client: not past a shutdown */
        if (r == 0 && !pull_thread_begin(p))
                r = -ESHUTDOWN;
        if (r == 0) {
                pthread_t th;
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                r = -pthread_create(&th, &attr, download_main, dl);
                pthread_attr_destroy(&attr);
                if (r < 0)
                        pull_thread_end(p);
        }
        if (r < 0) {
                cache_writer_unref(e);
                bounds_put_download(&p->bounds, w->background);
                download_free(dl);
        }
        return r;
}

/* A download slot for w, or -EBUSY (a client's refusal counted). */
static int take_slot(struct pull *p, const struct download_want *w, const struct caps *caps) {
        if (bounds_take_download(&p->bounds, caps->downloads, w->background))
                return 0;
        if (!w->background)
                bounds_refused(&p->bounds, BOUNDS_DOWNLOADS);
        return -EBUSY;
}

/* Whom w's download is for: a hash of the registry, the repository and the
 * key of the credentials it fetches with (none: anonymous, or the endpoint's
 * own). Never the credentials themselves. */
static int owner_of(const struct download_want *w, uint8_t ret[CACHE_OWNER_SIZE]) {
        const char *names[] = { w->registry, w->repository };
        struct digest d;
        int r = digest_fields(NULL, 0, names, ELEMENTSOF(names), w->client ? w->client->key : NULL,
                              w->client ? CLIENT_AUTH_KEY_SIZE : 0, &d);
        if (r < 0)
                return r;
        memcpy(ret, d.bytes, CACHE_OWNER_SIZE);
        return 0;
}

int download_join_or_start(struct pull *p, const struct download_want *w, struct download_hold *ret) {
        if (atomic_load(&p->stopping))
                return -ESHUTDOWN;
        uint8_t owner[CACHE_OWNER_SIZE];
        int r = owner_of(w, owner);
        if (r < 0)
                return r;
        struct cache_entry *e = NULL;
        /* Joining costs no slot: only a new download is capped. */
        if (cache_join(p->cache, &w->digest, &e) == 0) {
                *ret = (struct download_hold) { .entry = e, .foreign = !cache_entry_owned_by(e, owner) };
                return 0;
        }
        struct caps caps = caps_get(p);
        r = take_slot(p, w, &caps);
        if (r < 0)
                return r;
        bool writer = false;
        r = cache_begin(p->cache, &w->digest, w->size, &e, &writer);
        if (r < 0 || !writer)
                bounds_put_download(&p->bounds, w->background); /* nothing started (or joined after all) */
        if (r < 0)
                return r;
        if (!writer) {
                *ret = (struct download_hold) { .entry = e, .foreign = !cache_entry_owned_by(e, owner) };
                return 0;
        }
        cache_entry_set_owner(e, owner);
        /* The caller's reference, taken before the thread can finish and drop the writer's. */
        struct cache_entry *mine = cache_entry_ref(e);
        r = download_run(p, w, e, false, &caps);
        if (r < 0) {
                cache_entry_unref(mine);
                return r;
        }
        *ret = (struct download_hold) { .entry = mine, .started = true };
        return 0;
}

int download_start_unstored(struct pull *p, const struct download_want *w, struct download_hold *ret) {
        if (atomic_load(&p->stopping))
                return -ESHUTDOWN;
        struct caps caps = caps_get(p);
        int r = take_slot(p, w, &caps);
        if (r < 0)
                return r;
        struct cache_entry *e = NULL;
        r = cache_begin_unstored(p->cache, &w->digest, w->size, UNSTORED_WINDOW, &p->budget, &e);
        if (r < 0) {
                bounds_put_download(&p->bounds, w->background);
                return r;
        }
        struct cache_entry *mine = cache_entry_ref(e);
        r = download_run(p, w, e, true, &caps);
        if (r < 0) {
                cache_entry_unref(mine);
                return r;
        }
        *ret = (struct download_hold) { .entry = mine, .started = true };
        return 0;
}

void download_release(struct download_hold *h) {
        cache_entry_unref(h->entry);
        *h = (struct download_hold) {};
}

void download_outcome(int r, struct outcome *o) {
        switch (r) {
        case -ENOENT:
                outcome_set(o, r, "upstream has no such blob");
                break;
        case -EACCES: /* the download's verdict: the origin asked for credentials */
                outcome_set(o, -ENOENT, "the origin asks for credentials");
                o->auth_refused = true;
                break;
        case -EHOSTUNREACH:
                outcome_set(o, r, "no upstream answered");
                break;
        case -ETIMEDOUT:
                outcome_set(o, r, "no upstream answered within %d s", HEADER_WAIT_MS / 1000);
                break;
        case -EBADMSG:
        case -EMSGSIZE:
                outcome_set(o, r, "upstream sent bytes that do not match the digest");
                break;
        case -ENOBUFS:
                outcome_set(o, r, OUTCOME_BUDGET_REASON);
                break;
        case -ECANCELED:
        case -EPIPE:
                outcome_set(o, r, "the download was cancelled: nobody wanted it; try again");
                break;
        case -EBUSY:
                outcome_set(o, r, "too many downloads at once (agent.max_downloads); try the next host");
                break;
        default:
                outcome_set(o, r, "download failed: %s", strerror(-r));
                break;
        }
}

int download_wait_end(struct pull *p, const struct download_hold *h, uint64_t deadline_ms) {
        /* In slices, to notice a shutdown. */
        for (;;) {
                int left = time_left_ms(deadline_ms);
                int r = cache_entry_wait_end(h->entry, left < 0 || left > 1000 ? 1000 : left);
                if (r != -ETIMEDOUT)
                        return r;
                if (atomic_load(&p->stopping))
                        return -ESHUTDOWN;
                if (time_left_ms(deadline_ms) == 0)
                        return -ETIMEDOUT;
        }
}

/* Waits for the download's verdict (prefetch): 0 once stored. */
static int download_wait(struct pull *p, const struct download_hold *h) {
        int r = download_wait_end(p, h, TIME_NEVER);
        if (r == -ESHUTDOWN)
                return r;
        /* The in-process API's words: unavailable is "no upstream answered". */
        if (r < 0 && r != -ENOENT && r != -EBADMSG && r != -EEXIST)
                r = -EHOSTUNREACH;
        return r == -EEXIST ? 0 : r;
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
                                   .size = size, .finish_abandoned = true, .background = true, .limit = limit };
        int r = -ENXIO;
        bool fetched = false;
        struct download_hold h;
        /* A private repository's blob (fetched with the endpoint's own credentials) is
         * recorded as such before it is stored, as a client's would be: at the
         * origin's answer (dl_start), not before a 404. */
        w.mark_private = reg && private_repo(p->private, reg->host, repository);
        /* Past prefetch's share of the download slots: wait for one (clients go first). */
        while (reg && (r = download_join_or_start(p, &w, &h)) == -EBUSY) {
                struct timespec ts = { .tv_nsec = SLOT_RETRY_NS };
                nanosleep(&ts, NULL);
        }
        if (r == -EEXIST)
                r = 0; /* committed meanwhile */
        else if (r >= 0) {
                fetched = h.started;
                r = download_wait(p, &h);
                download_release(&h);
        }
        spec_ref_put(p, sr);
        if (r == 0)
                r = cache_stat(p->cache, d, &have);
        if (r == -EACCES)
                r = -ENOENT; /* the origin asked for credentials: not found, as pull.h says of a 401 */
        if (r < 0)
                return r;
        *ret_size = have;
        *ret_fetched = fetched;
        return 0;
}
