/* SPDX-License-Identifier: Apache-2.0 */
/* Stream-through: a blob fetched upstream for one client, bypassing the
 * cache, for when the cache cannot take it (the disk is full: a pull must
 * never fail because of that). A producer thread fetches the whole blob
 * through the fallback chains into a bounded ring and hashes it; the client's
 * thread reads from the ring. As with the cache's readers, the last byte is
 * held back until the digest verified, so a client never receives a complete
 * body with wrong bytes. */
#include "agent/relay.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/time.h"

#define RELAY_RING (1024 * 1024)

struct relay {
        pthread_mutex_t lock;
        pthread_cond_t cond; /* any change below */
        unsigned refs;
        char *ring;
        size_t head, len;   /* readable bytes: ring[head .. head+len) modulo RELAY_RING */
        uint64_t produced;  /* bytes put in the ring so far */
        uint64_t consumed;  /* bytes taken out */
        int64_t total;      /* -1 until the upstream said */
        bool started, done, abandoned;
        int error;          /* when done: 0 (verified) or -errno */
        int status;         /* the upstream's final status when it failed */

        struct fallback *fb;
        char *registry, *repository;
        struct digest digest;
        struct digester *hasher; /* the producer's alone */
        struct relay_hooks hooks;
};

static void relay_unref(struct relay *r) {
        pthread_mutex_lock(&r->lock);
        bool last = --r->refs == 0;
        pthread_mutex_unlock(&r->lock);
        if (!last)
                return;
        digester_free(r->hasher);
        free(r->ring);
        free(r->registry);
        free(r->repository);
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
}

static int relay_start_cb(void *userdata, int64_t total) {
        struct relay *r = userdata;
        pthread_mutex_lock(&r->lock);
        if (total >= 0 && r->total >= 0 && total != r->total) {
                /* Another size than the one the client was promised: not this blob. */
                pthread_mutex_unlock(&r->lock);
                return -EMSGSIZE;
        }
        if (r->total < 0)
                r->total = total;
        r->started = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return 0;
}

static int relay_write_cb(void *userdata, const void *data, size_t size) {
        struct relay *r = userdata;
        const char *p = data;
        int e = digester_update(r->hasher, data, size);
        if (e < 0)
                return e;
        pthread_mutex_lock(&r->lock);
        while (size > 0) {
                /* Wait for room in slices, so that a shutdown is noticed within 100 ms
                 * even while the reader sleeps; a reader that takes nothing for
                 * RELAY_WAIT_MS is gone. */
                for (int waited = 0; !r->abandoned && r->len == RELAY_RING && !atomic_load(r->hooks.stopping) &&
                                     waited < RELAY_WAIT_MS;
                     waited += 100)
                        (void) time_cond_wait_until(&r->cond, &r->lock, time_deadline_ms(100));
                if (r->abandoned || r->len == RELAY_RING || atomic_load(r->hooks.stopping)) {
                        pthread_mutex_unlock(&r->lock);
                        return -ECANCELED; /* the client left, or stopped reading */
                }
                size_t tail = (r->head + r->len) % RELAY_RING;
                size_t room = RELAY_RING - r->len;
                size_t chunk = RELAY_RING - tail < room ? RELAY_RING - tail : room;
                if (chunk > size)
                        chunk = size;
                memcpy(r->ring + tail, p, chunk);
                r->len += chunk;
                r->produced += chunk;
                p += chunk;
                size -= chunk;
                pthread_cond_broadcast(&r->cond);
        }
        pthread_mutex_unlock(&r->lock);
        return 0;
}

static bool relay_cancelled(void *userdata) {
        struct relay *r = userdata;
        pthread_mutex_lock(&r->lock);
        bool gone = r->abandoned;
        pthread_mutex_unlock(&r->lock);
        return gone || atomic_load(r->hooks.stopping);
}

static void *relay_main(void *arg) {
        struct relay *r = arg;
        char ds[DIGEST_STRING_MAX];
        struct sink sink = { .userdata = r, .start = relay_start_cb, .write = relay_write_cb };
        struct fallback_request req = {
                .registry = r->registry, .repository = r->repository, .kind = FALLBACK_BLOB,
                .reference = digest_to_string(&r->digest, ds), .sink = &sink,
                .cancelled = relay_cancelled, .cancel_userdata = r,
        };
        struct fallback_response fr;
        int e = fallback_fetch(r->fb, &req, &fr);
        int status = e >= 0 ? fr.status : 503;
        if (e >= 0 && fr.status == 200) {
                struct digest got;
                e = digester_final(r->hasher, &got);
                if (e >= 0 && !digest_equal(&got, &r->digest))
                        e = -EBADMSG;
                if (e == -EBADMSG && fr.endpoint)
                        fallback_report_bad(r->fb, r->registry, fr.endpoint, "served bytes that do not match their digest");
        } else if (e >= 0)
                e = -EIO;
        fallback_response_done(&fr);
        pthread_mutex_lock(&r->lock);
        r->done = true;
        r->error = e < 0 ? e : 0;
        r->status = status;
        if (r->error == 0 && r->total < 0)
                r->total = (int64_t) r->produced;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        struct relay_hooks hooks = r->hooks;
        relay_unref(r);
        if (hooks.exited)
                hooks.exited(hooks.userdata);
        return NULL;
}

int relay_new(struct fallback *fb, const char *registry, const char *repository, const struct digest *d,
              int64_t expected_size, const struct relay_hooks *hooks, struct relay **ret) {
        struct relay *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        pthread_mutex_init(&r->lock, NULL);
        time_cond_init(&r->cond);
        r->refs = 2; /* the caller's, the producer's */
        r->total = expected_size;
        r->fb = fb;
        r->hooks = *hooks;
        r->digest = *d;
        r->ring = malloc(RELAY_RING);
        r->registry = strdup(registry);
        r->repository = strdup(repository);
        int e = r->ring && r->registry && r->repository ? digester_new(d->algorithm, &r->hasher) : -ENOMEM;
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (e >= 0)
                e = -pthread_create(&th, &attr, relay_main, r);
        pthread_attr_destroy(&attr);
        if (e < 0) {
                r->refs = 1;
                relay_unref(r);
                return e;
        }
        *ret = r;
        return 0;
}

int relay_wait_size(struct relay *r, int timeout_ms, uint64_t *ret_size, int *ret_status) {
        uint64_t deadline = time_deadline_ms(timeout_ms);
        int e = 0;
        pthread_mutex_lock(&r->lock);
        while (!r->done && (!r->started || r->total < 0) && e == 0)
                if (time_cond_wait_until(&r->cond, &r->lock, deadline) == -ETIMEDOUT)
                        e = -ETIMEDOUT;
        if (e == 0 && r->done && r->error < 0)
                e = r->error;
        else if (e == 0 && r->total < 0)
                e = -EIO;
        if (e == 0)
                *ret_size = (uint64_t) r->total;
        *ret_status = r->status;
        pthread_mutex_unlock(&r->lock);
        return e;
}

/* Under r->lock: bytes relay_read() may hand out now (the last one only once verified). */
static uint64_t relay_avail_locked(const struct relay *r) {
        uint64_t limit = r->produced;
        bool verified = r->done && r->error == 0;
        if (!verified && r->total > 0 && limit >= (uint64_t) r->total)
                limit = (uint64_t) r->total - 1;
        else if (!verified && r->total < 0 && limit > 0)
                limit--;
        return limit - r->consumed;
}

int relay_wait(struct relay *r, int timeout_ms) {
        uint64_t deadline = time_deadline_ms(timeout_ms);
        int ret = 0;
        pthread_mutex_lock(&r->lock);
        while (!r->done && relay_avail_locked(r) == 0)
                if (time_cond_wait_until(&r->cond, &r->lock, deadline) == -ETIMEDOUT) {
                        ret = -ETIMEDOUT;
                        break;
                }
        pthread_mutex_unlock(&r->lock);
        return ret;
}

ssize_t relay_read(struct relay *r, void *buf, size_t size, int timeout_ms) {
        uint64_t deadline = time_deadline_ms(timeout_ms);
        ssize_t n = 0;
        pthread_mutex_lock(&r->lock);
        for (;;) {
                /* The last byte waits for the verdict: with the size known, the
                 * byte at size-1; without, always the newest one. */
                uint64_t avail = relay_avail_locked(r);
                if (r->done && r->error < 0) {
                        n = r->error;
                        break;
                }
                if (avail > 0 && size > 0) {
                        size_t want = avail < size ? (size_t) avail : size;
                        size_t first = RELAY_RING - r->head < want ? RELAY_RING - r->head : want;
                        memcpy(buf, r->ring + r->head, first);
                        memcpy((char *) buf + first, r->ring, want - first);
                        r->head = (r->head + want) % RELAY_RING;
                        r->len -= want;
                        r->consumed += want;
                        n = (ssize_t) want;
                        pthread_cond_broadcast(&r->cond);
                        break;
                }
                if (r->done || size == 0) {
                        n = 0; /* verified and all read */
                        break;
                }
                if (time_cond_wait_until(&r->cond, &r->lock, deadline) == -ETIMEDOUT) {
                        n = -ETIMEDOUT;
                        break;
                }
        }
        pthread_mutex_unlock(&r->lock);
        return n;
}

struct relay *relay_free(struct relay *r) {
        if (!r)
                return NULL;
        pthread_mutex_lock(&r->lock);
        r->abandoned = true; /* the producer stops at its next bytes */
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        relay_unref(r);
        return NULL;
}
