/* SPDX-License-Identifier: Apache-2.0 */
/* Streams and their wakers (see stream.h). Bytes come from the cache's
 * follow reader of the download, which holds the blob's last byte back until
 * it verified. When the cache's disk fills up under the download, the rest
 * comes from a download of the same blob into memory (stream-through), from
 * its first byte again (to verify the digest), the bytes already sent
 * dropped. */
#include "agent/stream.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"

#define SKIP_READS_PER_CALL 16 /* blocks read and dropped (up to a Range start) per call on the event loop */

struct stream {
        struct pull *pull;
        struct MHD_Connection *conn;
        atomic_uint_fast64_t *sent;
        char *endpoint;
        size_t endpoint_size;
        /* The waker: a thread that, while the connection is suspended for want
         * of bytes (armed), waits for the source and resumes it. */
        pthread_mutex_t wlock;
        pthread_cond_t wcond;
        pthread_t waker;
        bool waker_started, armed, stop, stalled; /* under wlock */
        uint64_t armed_at;                         /* s->abs when last armed */
        /* The source; only touched by the connection's thread, or by the
         * waker while the connection is suspended. */
        struct cache_reader *reader; /* holds the entry */
        struct cache_entry *entry;   /* the reader's */
        bool through;                /* streaming through memory (the cache's disk filled up) */
        bool holds_wait;             /* one of agent.max_upstream_waits: its waker may wait for the download */
        uint64_t abs;                /* bytes taken from the source so far */
        uint64_t start;              /* Range start: bytes to read and drop */
        uint64_t left;               /* bytes still to send */
        uint64_t drop;               /* bytes of the stream-through to drop (already sent from the cache) */
        uint64_t size;               /* the whole blob's, as promised to the client */
        struct digest digest;
        char registry[REFERENCE_NAME_MAX + 1], repository[REFERENCE_NAME_MAX + 1];
        struct budget_hold held; /* the response's block buffer (STREAM_BLOCK, MHD's) in the pull's budget */
};

/* The cache's disk filled up under this download: a pull must not fail for
 * that, so the rest comes from a download into memory, from its first byte
 * (to verify the digest); the bytes already sent are dropped. */
static int stream_through(struct stream *s) {
        char ds[DIGEST_STRING_MAX];
        log_notice("cache disk full, streaming through: ns=%s repo=%s digest=%s offset=%" PRIu64, s->registry,
                   s->repository, digest_to_string(&s->digest, ds), s->abs);
        struct download_want w = { .registry = s->registry, .repository = s->repository, .digest = s->digest,
                                   .size = (int64_t) s->size };
        struct download_hold h;
        int r = download_start_unstored(s->pull, &w, &h);
        if (r < 0)
                return r;
        struct cache_reader *rd = NULL;
        struct cache_entry *e = h.entry;
        r = cache_reader_new(e, &rd);
        download_release(&h); /* the reader holds the entry now */
        if (r < 0)
                return r;
        cache_reader_free(s->reader);
        s->reader = rd;
        s->entry = e;
        s->through = true;
        s->drop = s->abs;
        return 0;
}

/* Up to max bytes of the source, without waiting: -EAGAIN when it has none yet. */
static ssize_t source_read(struct stream *s, char *buf, size_t max) {
        while (s->drop > 0) {
                uint64_t k = cache_reader_skip(s->reader, s->drop);
                if (k > 0) {
                        s->drop -= k;
                        continue;
                }
                /* Nothing to drop now: a read tells bytes to come from a failure. */
                ssize_t n = cache_reader_read(s->reader, buf, s->drop < max ? (size_t) s->drop : max, 0);
                if (n == -ETIMEDOUT)
                        return -EAGAIN;
                if (n <= 0)
                        return n == 0 ? -EIO : n;
                s->drop -= (uint64_t) n;
        }
        ssize_t n = cache_reader_read(s->reader, buf, max, 0);
        if (n == -ETIMEDOUT)
                return -EAGAIN;
        if (n != -ENOSPC || s->through)
                return n;
        int r = stream_through(s);
        return r < 0 ? r : source_read(s, buf, max);
}

static void *waker_main(void *arg) {
        struct stream *s = arg;
        pthread_mutex_lock(&s->wlock);
        for (;;) {
                while (!s->armed && !s->stop)
                        pthread_cond_wait(&s->wcond, &s->wlock);
                if (s->stop)
                        break;
                pthread_mutex_unlock(&s->wlock);
                /* The connection is suspended: its thread touches neither source now. */
                int r = cache_reader_wait(s->reader, STREAM_WAIT_MS);
                pthread_mutex_lock(&s->wlock);
                if (r == -ETIMEDOUT)
                        s->stalled = true;
                s->armed = false;
                MHD_resume_connection(s->conn);
                pthread_mutex_lock(&s->pull->lock);
                s->pull->suspended--;
                pthread_cond_broadcast(&s->pull->ended);
                pthread_mutex_unlock(&s->pull->lock);
        }
        pthread_mutex_unlock(&s->wlock);
        return NULL;
}

/* Nothing to send yet: suspends the connection until the waker sees bytes
 * (or the end, a failure, or no progress for the stream's wait). */
static ssize_t stream_cut(struct stream *s, ssize_t why);
static ssize_t stream_suspend(struct stream *s) {
        pthread_mutex_lock(&s->wlock);
        /* Stalled: the waker's wait ran out with no bytes since it was armed;
         * bytes that came after all (s->abs moved) clear it. */
        bool stalled = s->stalled && s->abs == s->armed_at;
        s->stalled = false;
        if (!stalled && !s->waker_started) {
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setstacksize(&attr, 64 * 1024);
                s->waker_started = pthread_create(&s->waker, &attr, waker_main, s) == 0;
                pthread_attr_destroy(&attr);
        }
        if (stalled || !s->waker_started) {
                pthread_mutex_unlock(&s->wlock);
                /* No thread to spare: cut (containerd resumes with a Range)
                 * rather than hold an event-loop thread and its connections. */
                return stream_cut(s, stalled ? -ETIMEDOUT : -EAGAIN);
        }
        pthread_mutex_lock(&s->pull->lock);
        bool stopping = atomic_load(&s->pull->stopping);
        if (!stopping)
                s->pull->suspended++;
        pthread_mutex_unlock(&s->pull->lock);
        if (stopping) {
                /* pull_shutdown() waits for no suspended connection: none new. */
                pthread_mutex_unlock(&s->wlock);
                return stream_cut(s, -ESHUTDOWN);
        }
        MHD_suspend_connection(s->conn);
        s->armed = true;
        s->armed_at = s->abs;
        pthread_cond_signal(&s->wcond);
        pthread_mutex_unlock(&s->wlock);
        return 0;
}

static ssize_t stream_cut(struct stream *s, ssize_t why) {
        /* The download failed, or did not verify: cut the connection; never a
         * complete body with wrong bytes. */
        char ds[DIGEST_STRING_MAX];
        atomic_fetch_add(&s->pull->cut_streams, 1);
        log_warning("cutting a streamed blob: ns=%s repo=%s digest=%s sent=%" PRIu64 " reason=\"%s\"", s->registry,
                    s->repository, digest_to_string(&s->digest, ds), (uint64_t) atomic_load(s->sent),
                    why == 0 ? "ended early" : why == -ENOBUFS ? OUTCOME_BUDGET_REASON : strerror((int) -why));
        return MHD_CONTENT_READER_END_WITH_ERROR;
}

ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        struct stream *s = cls;
        (void) pos;
        for (unsigned rounds = 0; s->abs < s->start; rounds++) {
                uint64_t want = s->start - s->abs;
                /* Up to a Range's start: skipped without reading where the
                 * bytes are there, else read and dropped, a bounded amount per
                 * call (the event loop has other connections). */
                uint64_t k = cache_reader_skip(s->reader, want);
                if (k > 0) {
                        s->abs += k;
                        continue;
                }
                if (rounds >= SKIP_READS_PER_CALL)
                        return stream_suspend(s); /* bytes are there: resumed at once */
                ssize_t n = source_read(s, buf, want < max ? (size_t) want : max);
                if (n == -EAGAIN)
                        return stream_suspend(s);
                if (n <= 0)
                        return stream_cut(s, n);
                s->abs += (uint64_t) n;
        }
        if (s->left == 0 && s->size == 0) {
                /* An empty blob has no last byte to hold back: end only once the
                 * source confirms it (verified), and cut if it has bytes after all. */
                ssize_t n = source_read(s, buf, max);
                if (n == -EAGAIN)
                        return stream_suspend(s);
                return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : stream_cut(s, n < 0 ? n : -EMSGSIZE);
        }
        if (s->left == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
        ssize_t n = source_read(s, buf, s->left < max ? (size_t) s->left : max);
        if (n == -EAGAIN)
                return stream_suspend(s);
        if (n <= 0)
                return stream_cut(s, n); /* 0 here: the blob ended before its size */
        s->abs += (uint64_t) n;
        s->left -= (uint64_t) n;
        if (s->left == 0)
                cache_entry_source(s->entry, s->endpoint, s->endpoint_size);
        atomic_fetch_add(s->sent, (uint64_t) n);
        atomic_fetch_add(&s->pull->bytes_served, (uint64_t) n);
        return n;
}

void stream_free(void *cls) {
        struct stream *s = cls;
        pthread_mutex_lock(&s->wlock);
        s->stop = true;
        pthread_cond_signal(&s->wcond);
        bool started = s->waker_started;
        pthread_mutex_unlock(&s->wlock);
        if (started)
                pthread_join(s->waker, NULL);
        pthread_cond_destroy(&s->wcond);
        pthread_mutex_destroy(&s->wlock);
        cache_reader_free(s->reader);
        if (s->holds_wait)
                bounds_put_wait(&s->pull->bounds);
        budget_hold_release(&s->held);
        free(s);
}


int stream_new(const struct stream_params *sp, const struct download_hold *h, struct stream **ret) {
        struct stream *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        *s = (struct stream) { .pull = sp->pull, .conn = sp->conn, .sent = sp->sent, .endpoint = sp->endpoint,
                               .endpoint_size = sp->endpoint_size, .entry = h->entry, .start = sp->start,
                               .left = sp->length, .size = sp->size, .digest = sp->digest };
        /* MHD gives each callback response a block of STREAM_BLOCK bytes, filled
         * while its client does not read: counted like any body held. */
        int r = budget_hold_reserve(&s->held, &sp->pull->budget, STREAM_BLOCK);
        if (r >= 0)
                r = cache_reader_new(h->entry, &s->reader);
        if (r < 0) {
                budget_hold_release(&s->held);
                free(s);
                return r;
        }
        s->holds_wait = sp->holds_wait;
        pthread_mutex_init(&s->wlock, NULL);
        pthread_cond_init(&s->wcond, NULL);
        snprintf(s->registry, sizeof(s->registry), "%s", sp->registry);
        snprintf(s->repository, sizeof(s->repository), "%s", sp->repository);
        *ret = s;
        return 0;
}
