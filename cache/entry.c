/* SPDX-License-Identifier: Apache-2.0 */
/* Downloads and their readers: single-flight entries (stored: a file in
 * tmp/, renamed into blobs/ once verified) and memory entries (a ring for one
 * reader, when the disk cannot take the blob), the verdict every reader gets,
 * and the rule that no reader gets a blob's last byte before its digest
 * verified. See cache.h for the contract. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache-internal.h"
#include "common/macro.h"
#include "common/time.h"

struct cache_reader {
        struct cache_entry *entry;
        uint64_t offset;
};

/* What a failed download counts as. */
enum fail_kind {
        FAIL_ABORTED,    /* given up by its writer (or its last reference) */
        FAIL_MISMATCHED, /* wrong size or digest */
        FAIL_UNBEGUN,    /* cache_begin() could not start it after all: no miss, no abort */
        _FAIL_KIND_MAX,
};

static struct cache_entry *entry_new(struct cache *c, const struct digest *d, int64_t expected_size, bool stored) {
        struct cache_entry *e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        e->cache = c;
        e->digest = *d;
        e->stored = stored;
        e->fd = -1;
        e->expected_size = expected_size;
        e->state = ENTRY_WRITING;
        e->refs = 1;
        e->writer_held = true;
        e->stall_ms = CACHE_UNSTORED_WAIT_MS;
        pthread_mutex_init(&e->lock, NULL);
        time_cond_init(&e->progress);
        return e;
}

static void entry_free(struct cache_entry *e) {
        if (e->fd >= 0)
                close(e->fd);
        digester_free(e->hasher);
        free(e->ring);
        budget_hold_release(&e->ring_held);
        pthread_cond_destroy(&e->progress);
        pthread_mutex_destroy(&e->lock);
        free(e);
}

/* Takes e off the in-flight list; c->lock held. */
static void unlist(struct cache *c, struct cache_entry *e) {
        for (struct cache_entry **p = &c->in_flight; *p; p = &(*p)->next)
                if (*p == e) {
                        *p = e->next;
                        e->listed = false;
                        return;
                }
}

static void set_state(struct cache_entry *e, enum entry_state s) {
        pthread_mutex_lock(&e->lock);
        e->state = s;
        pthread_cond_broadcast(&e->progress);
        pthread_mutex_unlock(&e->lock);
}

/* e->lock held: anyone but the writer holds e. */
static bool wanted_locked(const struct cache_entry *e) {
        return e->refs > (e->writer_held ? 1u : 0u);
}

/* e->lock held: a reference (reader: and a reader) more. A memory entry's
 * writer may wait for exactly this: wake it. */
static void ref_locked(struct cache_entry *e, bool reader) {
        e->refs++;
        e->readers += reader;
        e->had_interest = true;
        if (!e->stored)
                pthread_cond_broadcast(&e->progress);
}

/* c->lock held: e's room in tmp/ is given back. */
static void unreserve_locked(struct cache *c, struct cache_entry *e) {
        c->stats.tmp_bytes -= e->reserved;
        e->reserved = 0;
}

/* The end of a download that will not be stored: its file goes, readers
 * learn why (reason, a negative errno). */
static void fail(struct cache_entry *e, enum fail_kind kind, int reason) {
        struct cache *c = e->cache;
        e->finished = true;
        if (e->fd >= 0)
                (void) unlinkat(c->root_fd, e->tmp_name, 0);
        pthread_mutex_lock(&c->lock);
        if (e->listed)
                unlist(c, e);
        unreserve_locked(c, e);
        if (kind == FAIL_MISMATCHED)
                c->stats.mismatched++;
        else if (kind == FAIL_UNBEGUN)
                c->stats.misses--;
        else if (e->stored)
                c->stats.aborted++;
        if (reason == -ENOSPC)
                cache_evict_wake_locked(c); /* a full disk: make room for the next download */
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_lock(&e->lock);
        /* Verified bytes stay good for the readers that have them open (the
         * descriptor outlives the name); only the store does without them. */
        if (e->state == ENTRY_VERIFIED)
                e->state = ENTRY_COMMITTED;
        else {
                e->fail_reason = reason;
                e->state = ENTRY_FAILED;
        }
        pthread_cond_broadcast(&e->progress);
        pthread_mutex_unlock(&e->lock);
}

/* Drops a reference (reader: a reader's; writer: the writer's); the last one
 * frees e, giving up a download still being written. */
static void entry_release(struct cache_entry *e, bool reader, bool writer) {
        struct cache *c = e->cache;
        /* A stored entry's last reference goes off the list in the same breath
         * (under the cache's lock): nobody may join an entry about to be freed. */
        if (e->stored)
                pthread_mutex_lock(&c->lock);
        pthread_mutex_lock(&e->lock);
        bool last = --e->refs == 0;
        e->readers -= reader;
        if (writer)
                e->writer_held = false;
        if (!e->stored)
                pthread_cond_broadcast(&e->progress); /* its writer may wait for the reader */
        pthread_mutex_unlock(&e->lock);
        if (e->stored) {
                if (last && e->listed)
                        unlist(c, e);
                pthread_mutex_unlock(&c->lock);
        }
        if (!last)
                return;
        /* Nobody holds it any more: a download still being written has no writer. */
        if (!e->finished)
                fail(e, FAIL_ABORTED, -EIO);
        entry_free(e);
}

/* ---- room in tmp/ ------------------------------------------------------------------------ */

/* c->lock held: whether need more bytes in tmp/ fit under max_bytes now.
 * Before the index is complete the store's size is not known: no refusal. */
static bool room_locked(const struct cache *c, uint64_t need) {
        return !c->max_bytes || !c->indexed || c->stats.bytes + c->stats.tmp_bytes + need <= c->max_bytes;
}

/* Counts a stored download's first upto bytes in tmp/ against the size
 * limit (downloads in progress take disk as much as the blobs do), evicting
 * to make room: 0, or -ENOSPC when it does not fit (nothing counted). A
 * pinned blob (prefetch's) is never refused, as it is never evicted: it only
 * makes room. The writer's thread: eviction is disk I/O, never on a lock
 * others wait for. */
static int reserve(struct cache_entry *e, uint64_t upto) {
        struct cache *c = e->cache;
        int r = 0;
        pthread_mutex_lock(&c->lock);
        bool pinned = cache_pinned_locked(c, &e->digest);
        for (unsigned pass = 0; upto > e->reserved; pass++) {
                uint64_t need = upto - e->reserved;
                /* What is in tmp/ already, with this, is more than the limit:
                 * evicting every blob would not make room. */
                bool hopeless = c->stats.tmp_bytes + need > c->max_bytes;
                if (room_locked(c, need) || (pinned && (pass > 0 || hopeless))) {
                        c->stats.tmp_bytes += need;
                        e->reserved = upto;
                        break;
                }
                if (!pinned && (pass > 0 || hopeless)) {
                        c->stats.tmp_refused++;
                        r = -ENOSPC;
                        break;
                }
                pthread_mutex_unlock(&c->lock);
                (void) cache_evict_for(c, need);
                pthread_mutex_lock(&c->lock);
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- starting ------------------------------------------------------------------------- */

/* c->lock held: joins the stored download of d in flight; NULL when there is none. */
static struct cache_entry *join_locked(struct cache *c, const struct digest *d) {
        for (struct cache_entry *e = c->in_flight; e; e = e->next) {
                if (!digest_equal(&e->digest, d))
                        continue;
                pthread_mutex_lock(&e->lock);
                bool alive = e->refs > 0;
                if (alive)
                        ref_locked(e, false);
                pthread_mutex_unlock(&e->lock);
                if (alive)
                        return e;
        }
        return NULL;
}

int cache_begin(struct cache *c, const struct digest *d, int64_t expected_size, struct cache_entry **ret,
                bool *ret_writer) {
        char hex[DIGEST_HEX_MAX];
        uint64_t size;
        bool trust_index = true;
        struct cache_entry *e;

        for (;;) {
                pthread_mutex_lock(&c->lock);
                e = join_locked(c, d);
                if (e) {
                        c->stats.joins++;
                        pthread_mutex_unlock(&c->lock);
                        *ret = e;
                        *ret_writer = false;
                        return 0;
                }
                /* A commit renames, then unlists and indexes in one go under
                 * this lock: a blob committed since the caller last looked is
                 * known here without asking the disk. */
                if (!trust_index || !cache_index_has_locked(c, d))
                        break;
                pthread_mutex_unlock(&c->lock);
                if (cache_stat(c, d, &size) == 0)
                        return -EEXIST;
                trust_index = false; /* gone from disk behind the index's back: download it */
        }
        e = entry_new(c, d, expected_size, true);
        if (!e) {
                pthread_mutex_unlock(&c->lock);
                return -ENOMEM;
        }
        digest_hex(d, hex);
        snprintf(e->tmp_name, sizeof(e->tmp_name), "tmp/%s-%s.%llu", digest_algorithm_name(d->algorithm), hex,
                 (unsigned long long) ++c->tmp_counter);
        e->next = c->in_flight;
        c->in_flight = e;
        e->listed = true;
        c->stats.misses++;
        pthread_mutex_unlock(&c->lock);

        if (c->test_listed)
                c->test_listed(c->test_listed_userdata);
        /* Listed: joiners may come from now on, and wait for this. The disk is
         * asked outside the lock that every miss and join take. A blob not in
         * the index (before it is complete at start-up) may still be on disk. */
        int r = cache_stat(c, d, &size) == 0 ? -EEXIST : 0;
        if (r == 0)
                r = digester_new(d->algorithm, &e->hasher);
        if (r == 0) {
                e->fd = openat(c->root_fd, e->tmp_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (e->fd < 0)
                        r = -errno;
        }
        if (r == 0 && expected_size > 0)
                r = reserve(e, (uint64_t) expected_size);
        if (r < 0) {
                fail(e, FAIL_UNBEGUN, r); /* joiners learn it from their wait or read */
                entry_release(e, false, true);
                return r;
        }
        *ret = e;
        *ret_writer = true;
        return 0;
}

int cache_join(struct cache *c, const struct digest *d, struct cache_entry **ret) {
        pthread_mutex_lock(&c->lock);
        struct cache_entry *e = join_locked(c, d);
        if (e)
                c->stats.joins++;
        pthread_mutex_unlock(&c->lock);
        if (!e)
                return -ENOENT;
        *ret = e;
        return 0;
}

int cache_begin_unstored(struct cache *c, const struct digest *d, int64_t expected_size, size_t window,
                         struct budget *budget, struct cache_entry **ret) {
        if (window == 0 || expected_size < -1)
                return -EINVAL;
        struct budget_hold held = {};
        int r = budget_hold_reserve(&held, budget, window);
        if (r < 0)
                return r;
        struct cache_entry *e = entry_new(c, d, expected_size, false);
        if (!e) {
                budget_hold_release(&held);
                return -ENOMEM;
        }
        e->ring_held = held;
        e->window = window;
        e->ring = malloc(window);
        r = e->ring ? digester_new(d->algorithm, &e->hasher) : -ENOMEM;
        if (r < 0) {
                entry_free(e);
                return r;
        }
        pthread_mutex_lock(&c->lock);
        c->stats.unstored++;
        pthread_mutex_unlock(&c->lock);
        *ret = e;
        return 0;
}

/* ---- writing ---------------------------------------------------------------------------- */

/* A memory entry's bytes into its ring, waiting for room while the reader
 * (or someone who may still make it) wants them. */
static int ring_write(struct cache_entry *e, const char *p, size_t size) {
        int r = 0;
        pthread_mutex_lock(&e->lock);
        uint64_t seen = e->consumed, deadline = time_deadline_ms(e->stall_ms);
        while (size > 0) {
                if (e->had_interest && !wanted_locked(e)) {
                        r = -EPIPE; /* the reader left: nobody will ever take these */
                        break;
                }
                if (e->consumed != seen) {
                        seen = e->consumed;
                        deadline = time_deadline_ms(e->stall_ms);
                }
                size_t room = e->window - (size_t) (e->written - e->consumed);
                if (room == 0) {
                        if (e->stop && atomic_load(e->stop)) {
                                r = -ECANCELED;
                                break;
                        }
                        /* In slices, to notice the stop flag. */
                        uint64_t slice = time_deadline_ms(CACHE_STOP_CHECK_MS);
                        if (time_cond_wait_until(&e->progress, &e->lock, slice < deadline ? slice : deadline) ==
                                    -ETIMEDOUT &&
                            e->consumed == seen && time_now_ms() >= deadline) {
                                r = -ETIMEDOUT; /* a reader that takes nothing is gone */
                                break;
                        }
                        continue;
                }
                size_t at = (size_t) (e->written % e->window);
                size_t chunk = e->window - at < room ? e->window - at : room;
                if (chunk > size)
                        chunk = size;
                memcpy(e->ring + at, p, chunk);
                e->written += chunk;
                p += chunk;
                size -= chunk;
                pthread_cond_broadcast(&e->progress);
        }
        pthread_mutex_unlock(&e->lock);
        return r;
}

static int file_write(struct cache_entry *e, uint64_t off, const char *data, size_t size) {
        const char *p = data;
        size_t left = size;
        if (reserve(e, off + size) < 0) {
                fail(e, FAIL_ABORTED, -ENOSPC);
                return -ENOSPC;
        }
        while (left > 0) {
                ssize_t n = pwrite(e->fd, p, left, (off_t) (off + (size - left)));
                if (n < 0 && errno == EINTR)
                        continue;
                /* Out of room, whatever the limit (disk, quota, file size): one answer. */
                if (n < 0 && (errno == ENOSPC || errno == EDQUOT || errno == EFBIG)) {
                        fail(e, FAIL_ABORTED, -ENOSPC);
                        return -ENOSPC;
                }
                if (n < 0)
                        return -errno;
                p += n;
                left -= (size_t) n;
        }
        /* Readers only ever see bytes that are in the file. */
        pthread_mutex_lock(&e->lock);
        e->written += size;
        pthread_cond_broadcast(&e->progress);
        pthread_mutex_unlock(&e->lock);
        return 0;
}

int cache_write(struct cache_entry *e, const void *data, size_t size) {
        uint64_t off = cache_entry_offset(e);
        if (e->finished)
                return -EINVAL;
        if (e->expected_size >= 0 && off + size > (uint64_t) e->expected_size)
                return -EMSGSIZE;
        int r = digester_update(e->hasher, data, size);
        if (r < 0)
                return r;
        return e->stored ? file_write(e, off, data, size) : ring_write(e, data, size);
}

int cache_entry_set_size(struct cache_entry *e, uint64_t size) {
        int r = 0;
        if (e->finished || size > INT64_MAX)
                return -EINVAL;
        pthread_mutex_lock(&e->lock);
        if ((e->expected_size >= 0 && (uint64_t) e->expected_size != size) || e->written > size)
                r = -EMSGSIZE;
        pthread_mutex_unlock(&e->lock);
        /* Room for the whole blob before readers learn its size: one that
         * cannot have it is streamed through from its first byte. */
        if (r == 0 && e->stored && reserve(e, size) < 0) {
                fail(e, FAIL_ABORTED, -ENOSPC);
                return -ENOSPC;
        }
        if (r == 0) {
                pthread_mutex_lock(&e->lock);
                e->expected_size = (int64_t) size;
                pthread_cond_broadcast(&e->progress);
                pthread_mutex_unlock(&e->lock);
        }
        return r;
}

int cache_entry_wait_size(struct cache_entry *e, int timeout_ms, uint64_t *ret) {
        uint64_t deadline = time_deadline_ms(timeout_ms);
        int r = 0;
        pthread_mutex_lock(&e->lock);
        while (e->state == ENTRY_WRITING && e->expected_size < 0) {
                r = time_cond_wait_until(&e->progress, &e->lock, deadline);
                if (r < 0)
                        break;
        }
        if (r == 0 && e->state == ENTRY_FAILED)
                r = e->fail_reason;
        else if (r == 0)
                *ret = e->state == ENTRY_WRITING ? (uint64_t) e->expected_size : e->written;
        pthread_mutex_unlock(&e->lock);
        return r;
}

int cache_entry_wait_end(struct cache_entry *e, int timeout_ms) {
        uint64_t deadline = time_deadline_ms(timeout_ms);
        int r = 0;
        pthread_mutex_lock(&e->lock);
        while (e->state == ENTRY_WRITING || e->state == ENTRY_VERIFIED) {
                r = time_cond_wait_until(&e->progress, &e->lock, deadline);
                if (r < 0)
                        break;
        }
        if (r == 0 && e->state == ENTRY_FAILED)
                r = e->fail_reason;
        pthread_mutex_unlock(&e->lock);
        return r;
}

uint64_t cache_entry_offset(struct cache_entry *e) {
        pthread_mutex_lock(&e->lock);
        uint64_t w = e->written;
        pthread_mutex_unlock(&e->lock);
        return w;
}

void cache_entry_set_source(struct cache_entry *e, const char *source) {
        pthread_mutex_lock(&e->lock);
        snprintf(e->source, sizeof(e->source), "%s", source ? source : "");
        pthread_mutex_unlock(&e->lock);
}

void cache_entry_source(struct cache_entry *e, char *buf, size_t size) {
        if (size == 0)
                return;
        pthread_mutex_lock(&e->lock);
        snprintf(buf, size, "%s", e->source);
        pthread_mutex_unlock(&e->lock);
}

void cache_entry_set_owner(struct cache_entry *e, const uint8_t owner[CACHE_OWNER_SIZE]) {
        pthread_mutex_lock(&e->lock);
        memcpy(e->owner, owner, CACHE_OWNER_SIZE);
        e->has_owner = true;
        pthread_mutex_unlock(&e->lock);
}

bool cache_entry_owned_by(struct cache_entry *e, const uint8_t owner[CACHE_OWNER_SIZE]) {
        pthread_mutex_lock(&e->lock);
        bool same = e->has_owner && memcmp(e->owner, owner, CACHE_OWNER_SIZE) == 0;
        pthread_mutex_unlock(&e->lock);
        return same;
}

bool cache_entry_wanted(struct cache_entry *e) {
        pthread_mutex_lock(&e->lock);
        bool w = wanted_locked(e);
        pthread_mutex_unlock(&e->lock);
        return w;
}

void cache_entry_set_stop(struct cache_entry *e, const atomic_bool *stop) {
        pthread_mutex_lock(&e->lock);
        e->stop = stop;
        pthread_mutex_unlock(&e->lock);
}

unsigned cache_entry_followers(struct cache_entry *e) {
        pthread_mutex_lock(&e->lock);
        unsigned n = e->readers;
        pthread_mutex_unlock(&e->lock);
        return n;
}

/* ---- the end: commit or fail ----------------------------------------------------------- */

/* Makes verified bytes durable and puts them in the store. */
static int store(struct cache_entry *e, uint64_t size) {
        struct cache *c = e->cache;
        char path[CACHE_PATH_MAX], dir[CACHE_PATH_MAX];

        /* Durable before visible: the data, then the name, then the directory. */
        cache_blob_path(&e->digest, path);
        snprintf(dir, sizeof(dir), "%.*s", (int) (strrchr(path, '/') - path), path);
        int r = fsync(e->fd) < 0 ? -errno : 0;
        if (r == 0 && mkdirat(c->root_fd, dir, 0755) == 0)
                r = cache_fsync_at(c->root_fd, dir, true); /* a new directory: make its name durable too */
        else if (r == 0 && errno != EEXIST)
                r = -errno;
        if (r == 0 && renameat(c->root_fd, e->tmp_name, c->root_fd, path) < 0)
                r = -errno;
        if (r < 0) {
                fail(e, FAIL_ABORTED, r == -ENOSPC || r == -EDQUOT ? -ENOSPC : -EIO);
                return r;
        }
        /* Renamed: the verified blob is in the store, whatever happens next;
         * a failing directory fsync only means it may not survive a power cut. */
        int durable = cache_fsync_at(c->root_fd, dir, false);
        e->finished = true;
        pthread_mutex_lock(&c->lock);
        /* Unlisted and indexed in one go: cache_begin() relies on it. */
        unlist(c, e);
        unreserve_locked(c, e); /* its bytes are the store's from here */
        c->stats.committed++;
        c->stats.bytes_written += size;
        /* Stored either way; only eviction would not know of it on failure. */
        (void) cache_index_add_locked(c, &e->digest, size);
        cache_evict_wake_locked(c);
        pthread_mutex_unlock(&c->lock);
        set_state(e, ENTRY_COMMITTED);
        return durable;
}

int cache_commit(struct cache_entry *e, struct digest *ret_got) {
        struct digest got;

        if (e->finished)
                return -EINVAL;
        uint64_t size = cache_entry_offset(e);
        if (e->expected_size >= 0 && size != (uint64_t) e->expected_size) {
                fail(e, FAIL_MISMATCHED, -EMSGSIZE);
                return -EMSGSIZE;
        }
        int r = digester_final(e->hasher, &got);
        if (r < 0) {
                fail(e, FAIL_ABORTED, -EIO);
                return r;
        }
        if (!digest_equal(&got, &e->digest)) {
                fail(e, FAIL_MISMATCHED, -EBADMSG);
                if (ret_got)
                        *ret_got = got;
                return -EBADMSG;
        }
        if (!e->stored) {
                e->finished = true;
                set_state(e, ENTRY_COMMITTED); /* nothing to store: the reader may have the last byte */
                return 0;
        }
        /* The bytes are right: readers (clients streaming the download) get
         * the rest now rather than after the fsync; the store only shows
         * the blob once it is durable. */
        set_state(e, ENTRY_VERIFIED);
        return store(e, size);
}

int cache_fail(struct cache_entry *e, int error) {
        if (e->finished || error >= 0)
                return -EINVAL;
        fail(e, FAIL_ABORTED, error);
        return 0;
}

void cache_abort(struct cache_entry *e) {
        (void) cache_fail(e, -EIO);
}

/* ---- references -------------------------------------------------------------------------- */

struct cache_entry *cache_entry_ref(struct cache_entry *e) {
        /* The caller holds a reference: e cannot be unlisted for good meanwhile. */
        pthread_mutex_lock(&e->lock);
        ref_locked(e, false);
        pthread_mutex_unlock(&e->lock);
        return e;
}

struct cache_entry *cache_entry_unref(struct cache_entry *e) {
        if (e)
                entry_release(e, false, false);
        return NULL;
}

struct cache_entry *cache_writer_unref(struct cache_entry *e) {
        if (!e)
                return NULL;
        /* A writer that lets go unfinished gives the download up at once, so
         * its followers and later joiners are not left waiting for nobody. */
        cache_abort(e);
        entry_release(e, false, true);
        return NULL;
}

/* ---- follow readers ------------------------------------------------------------------ */

int cache_reader_new(struct cache_entry *e, struct cache_reader **ret) {
        struct cache_reader *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        pthread_mutex_lock(&e->lock);
        /* A ring cannot be read twice from the first byte. */
        bool busy = !e->stored && e->had_reader;
        if (!busy) {
                e->had_reader = true;
                ref_locked(e, true);
        }
        pthread_mutex_unlock(&e->lock);
        if (busy) {
                free(r);
                return -EBUSY;
        }
        r->entry = e;
        *ret = r;
        return 0;
}

/* How far readers may read. Until the digest is verified, the last byte of
 * a blob of known size stays back: no client ever holds a complete body that
 * might be wrong (containerd does not retry a digest mismatch elsewhere; it
 * fails the pull). With the size unknown the client cannot tell the end
 * before cache_reader_read() says 0, which happens only after the commit.
 * The same for stored and memory entries. */
static uint64_t readable_locked(const struct cache_entry *e) {
        if (e->state == ENTRY_WRITING && e->expected_size > 0 && e->written >= (uint64_t) e->expected_size)
                return (uint64_t) e->expected_size - 1;
        return e->written;
}

/* e->lock held, a memory entry: n readable bytes out of the ring (into buf,
 * or dropped when buf is NULL), making room for the writer. */
static void ring_take_locked(struct cache_reader *r, void *buf, size_t n) {
        struct cache_entry *e = r->entry;
        if (buf) {
                size_t at = (size_t) (e->consumed % e->window);
                size_t first = e->window - at < n ? e->window - at : n;
                memcpy(buf, e->ring + at, first);
                memcpy((char *) buf + first, e->ring, n - first);
        }
        e->consumed += n;
        r->offset += n;
        pthread_cond_broadcast(&e->progress);
}

ssize_t cache_reader_read(struct cache_reader *r, void *buf, size_t size, int timeout_ms) {
        struct cache_entry *e = r->entry;
        uint64_t deadline = time_deadline_ms(timeout_ms);
        if (size == 0)
                return 0;
        pthread_mutex_lock(&e->lock);
        while (e->state == ENTRY_WRITING && r->offset >= readable_locked(e)) {
                int w = time_cond_wait_until(&e->progress, &e->lock, deadline);
                if (w < 0) {
                        pthread_mutex_unlock(&e->lock);
                        return w;
                }
        }
        enum entry_state state = e->state;
        int reason = e->fail_reason;
        uint64_t avail = readable_locked(e) - r->offset;
        size_t want = avail < size ? (size_t) avail : size;
        /* A failed download's bytes are never good bytes, even those already in the file. */
        if (state != ENTRY_FAILED && want > 0 && !e->stored)
                ring_take_locked(r, buf, want);
        pthread_mutex_unlock(&e->lock);
        if (state == ENTRY_FAILED)
                return reason;
        if (want == 0 || !e->stored)
                return (ssize_t) want;
        for (;;) {
                ssize_t n = pread(e->fd, buf, want, (off_t) r->offset);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO; /* the file is shorter than what was written: not ours to trust */
                r->offset += (uint64_t) n;
                return n;
        }
}

uint64_t cache_reader_skip(struct cache_reader *r, uint64_t n) {
        struct cache_entry *e = r->entry;
        pthread_mutex_lock(&e->lock);
        uint64_t readable = e->state == ENTRY_FAILED ? r->offset : readable_locked(e);
        uint64_t k = readable > r->offset ? readable - r->offset : 0;
        if (k > n)
                k = n;
        if (e->stored)
                r->offset += k;
        else
                ring_take_locked(r, NULL, (size_t) k); /* at most the ring's window */
        pthread_mutex_unlock(&e->lock);
        return k;
}

int cache_reader_wait(struct cache_reader *r, int timeout_ms) {
        struct cache_entry *e = r->entry;
        uint64_t deadline = time_deadline_ms(timeout_ms);
        int ret = 0;
        pthread_mutex_lock(&e->lock);
        while (e->state == ENTRY_WRITING && r->offset >= readable_locked(e)) {
                ret = time_cond_wait_until(&e->progress, &e->lock, deadline);
                if (ret < 0)
                        break;
        }
        pthread_mutex_unlock(&e->lock);
        return ret;
}

struct cache_reader *cache_reader_free(struct cache_reader *r) {
        if (!r)
                return NULL;
        entry_release(r->entry, true, false);
        free(r);
        return NULL;
}
