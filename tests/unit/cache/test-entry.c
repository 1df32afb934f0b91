/* SPDX-License-Identifier: Apache-2.0 */
/* Entries: the verdict every reader gets, the source, interest (wanted,
 * followers), cache_begin() with joiners before its file exists, and memory
 * entries (a ring for one reader: backpressure, the reader leaving, the last
 * byte held until verified, skipping). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache-internal.h"
#include "common/fsutil.h"
#include "common/time.h"
#include "tests/unit/cache/cache-test.h"

#define WAIT_MS 10000 /* every wait for another thread is bounded by this */

/* ---- a writer on a thread of its own --------------------------------------------------- */

struct writer_job {
        struct cache_entry *e;
        const unsigned char *data;
        size_t size, chunk;
        const char *source;  /* set before the first byte, when given */
        bool commit;         /* commit after the last byte */
        bool gated;          /* ... only once the test says go */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool go;
        int result;          /* the first error, or the commit's result */
};

static void writer_job_init(struct writer_job *w, struct cache_entry *e, const unsigned char *data, size_t size,
                            size_t chunk) {
        *w = (struct writer_job) { .e = e, .data = data, .size = size, .chunk = chunk, .result = 1 };
        pthread_mutex_init(&w->lock, NULL);
        assert_int_equal(time_cond_init(&w->cond), 0);
}

static void writer_job_go(struct writer_job *w) {
        pthread_mutex_lock(&w->lock);
        w->go = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

static int writer_job_join(struct writer_job *w, pthread_t t) {
        assert_int_equal(pthread_join(t, NULL), 0);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        return w->result;
}

static void *writer_main(void *arg) {
        struct writer_job *w = arg;
        int r = 0;
        if (w->source)
                cache_entry_set_source(w->e, w->source);
        for (size_t off = 0; off < w->size && r == 0; off += w->chunk)
                r = cache_write(w->e, w->data + off, w->size - off < w->chunk ? w->size - off : w->chunk);
        if (r == 0 && w->gated) {
                uint64_t deadline = time_deadline_ms(WAIT_MS);
                pthread_mutex_lock(&w->lock);
                while (!w->go && r == 0)
                        r = time_cond_wait_until(&w->cond, &w->lock, deadline);
                pthread_mutex_unlock(&w->lock);
        }
        if (r == 0 && w->commit)
                r = cache_commit(w->e, NULL);
        w->result = r;
        return NULL;
}

/* Waits (bounded) until the writer has written exactly `want` bytes, never more. */
static void wait_offset(struct cache_entry *e, uint64_t want) {
        uint64_t deadline = time_deadline_ms(WAIT_MS);
        uint64_t off;
        /* No condition to wait on from outside: polled, as a metrics scrape would. */
        while ((off = cache_entry_offset(e)) < want && time_now_ms() < deadline)
                usleep(1000);
        assert_int_equal(off, want);
}

/* Reads until n bytes arrived (each read bounded). */
static void read_exactly(struct cache_reader *r, unsigned char *buf, size_t n) {
        size_t have = 0;
        while (have < n) {
                ssize_t k = cache_reader_read(r, buf + have, n - have, WAIT_MS);
                assert_true(k > 0);
                have += (size_t) k;
        }
}

/* ---- verdicts ------------------------------------------------------------------------------ */

static void test_verdicts(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(1000, 1, DIGEST_SHA256, &d);
        struct cache_entry *e = NULL, *joined = NULL;
        struct cache_reader *r = NULL;
        unsigned char buf[2000];
        uint64_t size;
        bool writer;

        /* The upstream has no such blob: every reader learns exactly that. */
        assert_int_equal(cache_begin(c, &d, -1, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_begin(c, &d, -1, &joined, &writer), 0);
        assert_false(writer);
        assert_int_equal(cache_reader_new(joined, &r), 0);
        assert_int_equal(cache_entry_wait_end(joined, 0), -ETIMEDOUT);
        assert_int_equal(cache_write(e, b, 10), 0);
        assert_int_equal(cache_fail(e, 5), -EINVAL); /* a reason is a negative errno */
        assert_int_equal(cache_fail(e, -ENOENT), 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -ENOENT);
        assert_int_equal(cache_entry_wait_size(joined, 0, &size), -ENOENT);
        assert_int_equal(cache_entry_wait_end(joined, 0), -ENOENT);
        assert_int_equal(cache_fail(e, -EHOSTUNREACH), -EINVAL); /* already finished */
        assert_int_equal(cache_commit(e, NULL), -EINVAL);
        assert_int_equal(cache_write(e, b, 10), -EINVAL);
        cache_reader_free(r);
        cache_entry_unref(joined);
        cache_writer_unref(e);

        /* A failed download is not joined: the next caller writes. */
        assert_int_equal(cache_begin(c, &d, 1000, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_write(e, b, 600), 0);
        /* Too short at commit: the readers get -EMSGSIZE, not the bytes they were following. */
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 600);
        assert_int_equal(cache_commit(e, NULL), -EMSGSIZE);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -EMSGSIZE);
        assert_int_equal(cache_entry_wait_end(e, 0), -EMSGSIZE);
        cache_reader_free(r);
        cache_writer_unref(e);

        /* -ENOSPC from the writer keeps its meaning: continue uncached from the offset. */
        assert_int_equal(cache_begin(c, &d, 1000, &e, &writer), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_write(e, b, 100), 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 100);
        assert_int_equal(cache_fail(e, -ENOSPC), 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -ENOSPC);
        cache_reader_free(r);
        cache_writer_unref(e);

        /* cache_abort() is cache_fail(-EIO); a writer letting go unfinished too. */
        assert_int_equal(cache_begin(c, &d, 1000, &e, &writer), 0);
        assert_int_equal(cache_begin(c, &d, 1000, &joined, &writer), 0);
        cache_abort(e);
        assert_int_equal(cache_entry_wait_end(joined, 0), -EIO);
        cache_abort(e); /* harmless */
        cache_writer_unref(e);
        cache_entry_unref(joined);
        assert_int_equal(cache_begin(c, &d, 1000, &e, &writer), 0);
        assert_int_equal(cache_begin(c, &d, 1000, &joined, &writer), 0);
        cache_writer_unref(e);
        assert_int_equal(cache_entry_wait_end(joined, 0), -EIO);
        cache_entry_unref(joined);

        /* And a good one ends with 0. */
        assert_int_equal(cache_begin(c, &d, 1000, &e, &writer), 0);
        assert_int_equal(cache_write(e, b, 1000), 0);
        assert_int_equal(cache_entry_wait_end(e, 20), -ETIMEDOUT);
        assert_int_equal(cache_commit(e, NULL), 0);
        assert_int_equal(cache_entry_wait_end(e, 0), 0);
        assert_int_equal(cache_fail(e, -EIO), -EINVAL);
        cache_writer_unref(e);

        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.aborted, 4); /* ENOENT, ENOSPC, two -EIO */
        assert_int_equal(st.mismatched, 1);
        assert_int_equal(st.committed, 1);
        assert_int_equal(st.in_flight, 0);
        free(b);
        cache_close(c);
}

/* ---- source ---------------------------------------------------------------------------------- */

static void test_source(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(10, 2, DIGEST_SHA256, &d);
        struct cache_entry *e = NULL, *joined = NULL;
        char buf[CACHE_SOURCE_MAX + 10];
        bool writer;

        assert_int_equal(cache_begin(c, &d, 10, &e, &writer), 0);
        assert_int_equal(cache_begin(c, &d, 10, &joined, &writer), 0);
        memset(buf, 'x', sizeof(buf));
        cache_entry_source(joined, buf, sizeof(buf));
        assert_string_equal(buf, ""); /* unknown yet */
        cache_entry_set_source(e, "https://mirror.example:5000/v2/");
        cache_entry_source(joined, buf, sizeof(buf));
        assert_string_equal(buf, "https://mirror.example:5000/v2/");
        cache_entry_source(joined, buf, 6); /* cut to the caller's buffer */
        assert_string_equal(buf, "https");
        buf[0] = 'x';
        cache_entry_source(joined, buf, 0); /* nothing written */
        assert_int_equal(buf[0], 'x');

        /* The owner: unset until the writer says; compared, never handed out. */
        uint8_t mine[CACHE_OWNER_SIZE], other[CACHE_OWNER_SIZE];
        memset(mine, 0x11, sizeof(mine));
        memset(other, 0x11, sizeof(other));
        other[CACHE_OWNER_SIZE - 1] = 0x12;
        assert_false(cache_entry_owned_by(joined, mine));
        cache_entry_set_owner(e, mine);
        assert_true(cache_entry_owned_by(joined, mine));
        assert_false(cache_entry_owned_by(joined, other));

        char *longer = unit_repeat('a', 300);
        cache_entry_set_source(e, longer);
        cache_entry_source(joined, buf, sizeof(buf));
        assert_int_equal(strlen(buf), CACHE_SOURCE_MAX - 1);
        assert_memory_equal(buf, longer, CACHE_SOURCE_MAX - 1);
        free(longer);

        /* It outlives the commit, for the readers' last log line. */
        cache_entry_set_source(e, "http://127.0.0.1:1/");
        assert_int_equal(cache_write(e, b, 10), 0);
        assert_int_equal(cache_commit(e, NULL), 0);
        cache_writer_unref(e);
        cache_entry_source(joined, buf, sizeof(buf));
        assert_string_equal(buf, "http://127.0.0.1:1/");
        cache_entry_unref(joined);
        free(b);
        cache_close(c);
}

/* ---- interest ---------------------------------------------------------------------------------- */

static void test_interest(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(10, 3, DIGEST_SHA256, &d);
        struct cache_entry *e = NULL, *joined = NULL, *extra = NULL;
        struct cache_reader *r1 = NULL, *r2 = NULL;
        bool writer;

        assert_int_equal(cache_begin(c, &d, 10, &e, &writer), 0);
        assert_true(writer);
        /* The writer's own reference is not interest. */
        assert_false(cache_entry_wanted(e));
        assert_int_equal(cache_entry_followers(e), 0);
        assert_int_equal(cache_begin(c, &d, 10, &joined, &writer), 0);
        assert_true(cache_entry_wanted(e));
        assert_int_equal(cache_entry_followers(e), 0); /* joined, not following */
        cache_entry_unref(joined);
        assert_false(cache_entry_wanted(e));
        extra = cache_entry_ref(e);
        assert_true(cache_entry_wanted(e));
        cache_entry_unref(extra);
        assert_false(cache_entry_wanted(e));

        assert_int_equal(cache_reader_new(e, &r1), 0);
        assert_true(cache_entry_wanted(e));
        assert_int_equal(cache_entry_followers(e), 1);
        assert_int_equal(cache_reader_new(e, &r2), 0); /* a stored entry has any number */
        assert_int_equal(cache_entry_followers(e), 2);
        r1 = cache_reader_free(r1);
        assert_int_equal(cache_entry_followers(e), 1);
        assert_true(cache_entry_wanted(e));
        r2 = cache_reader_free(r2);
        assert_int_equal(cache_entry_followers(e), 0);
        assert_false(cache_entry_wanted(e));

        /* Once the writer let go, whoever holds the entry is interest. */
        assert_int_equal(cache_begin(c, &d, 10, &joined, &writer), 0);
        assert_false(writer);
        assert_int_equal(cache_write(e, b, 10), 0);
        assert_int_equal(cache_commit(e, NULL), 0);
        cache_writer_unref(e);
        assert_true(cache_entry_wanted(joined));
        cache_entry_unref(joined);
        free(b);
        cache_close(c);
}

/* A writer that polls cache_entry_wanted() and cancels when nobody wants the download. */
struct canceller {
        struct cache_entry *e;
        int result;
};

static void *canceller_main(void *arg) {
        struct canceller *k = arg;
        static const unsigned char block[4096];
        uint64_t deadline = time_deadline_ms(WAIT_MS);
        int r = 0;
        while (r == 0 && cache_entry_wanted(k->e) && time_now_ms() < deadline) {
                r = cache_write(k->e, block, sizeof(block));
                usleep(1000); /* a download's pace, not a synchronisation */
        }
        k->result = r < 0 ? r : cache_entry_wanted(k->e) ? -ETIMEDOUT : cache_fail(k->e, -ECANCELED);
        return NULL;
}

static void test_unwanted_is_cancelled(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(10, 4, DIGEST_SHA256, &d);
        struct cache_entry *e = NULL, *joined = NULL;
        struct cache_reader *r = NULL;
        unsigned char buf[4096];
        bool writer;

        assert_int_equal(cache_begin(c, &d, -1, &e, &writer), 0);
        assert_int_equal(cache_begin(c, &d, -1, &joined, &writer), 0);
        assert_int_equal(cache_reader_new(joined, &r), 0);
        struct canceller k = { .e = e, .result = 1 };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, canceller_main, &k), 0);
        /* The client follows for a while... */
        read_exactly(r, buf, sizeof(buf));
        assert_int_equal(cache_entry_followers(joined), 1);
        /* ...and leaves: the writer notices and cancels. */
        cache_reader_free(r);
        cache_entry_unref(joined);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(k.result, 0);
        assert_int_equal(cache_entry_wait_end(e, 0), -ECANCELED);
        cache_writer_unref(e);
        free(b);
        cache_close(c);
}

/* ---- a writer thread and a follower ------------------------------------------------------ */

#define FOLLOW_SIZE (1 << 20)

static void test_writer_thread_and_follower(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(FOLLOW_SIZE, 5, DIGEST_SHA256, &d);
        unsigned char *got = malloc(FOLLOW_SIZE);
        struct cache_entry *e = NULL;
        struct cache_reader *r = NULL;
        char source[CACHE_SOURCE_MAX];
        uint64_t size = 0;
        bool writer;

        assert_non_null(got);
        assert_int_equal(cache_begin(c, &d, -1, &e, &writer), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        struct writer_job w;
        writer_job_init(&w, e, b, FOLLOW_SIZE, 7919);
        w.source = "http://127.0.0.1:5000/v2/";
        w.commit = true;
        pthread_t t;
        assert_int_equal(cache_entry_set_size(e, FOLLOW_SIZE), 0); /* the upstream's Content-Length */
        assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
        assert_int_equal(cache_entry_wait_size(e, WAIT_MS, &size), 0);
        assert_int_equal(size, FOLLOW_SIZE);
        read_exactly(r, got, FOLLOW_SIZE);
        assert_int_equal(cache_reader_read(r, got, 1, WAIT_MS), 0);
        assert_memory_equal(got, b, FOLLOW_SIZE);
        assert_int_equal(cache_entry_wait_end(e, WAIT_MS), 0);
        cache_entry_source(e, source, sizeof(source));
        assert_string_equal(source, "http://127.0.0.1:5000/v2/");
        assert_int_equal(writer_job_join(&w, t), 0);
        cache_reader_free(r);
        cache_writer_unref(e);
        assert_int_equal(cache_stat(c, &d, &size), 0);
        assert_int_equal(size, FOLLOW_SIZE);
        free(got);
        free(b);
        cache_close(c);
}

/* ---- cache_begin(): joiners before the file exists ----------------------------------------- */

struct join_hook {
        struct cache *cache;
        struct digest digest;
        struct cache_entry *joined;
        struct cache_reader *reader;
        int calls;
};

/* Runs in cache_begin() between listing the entry and the disk: join it then. */
static void join_while_listed(void *userdata) {
        struct join_hook *h = userdata;
        bool writer = true;
        h->calls++;
        assert_int_equal(cache_begin(h->cache, &h->digest, -1, &h->joined, &writer), 0);
        assert_false(writer);
        assert_int_equal(cache_reader_new(h->joined, &h->reader), 0);
}

static void hook_check_and_release(struct join_hook *h, int want) {
        unsigned char buf[16];
        uint64_t size;
        assert_int_equal(h->calls, 1);
        assert_int_equal(cache_entry_wait_size(h->joined, WAIT_MS, &size), want);
        assert_int_equal(cache_reader_read(h->reader, buf, sizeof(buf), WAIT_MS), want);
        assert_int_equal(cache_entry_wait_end(h->joined, WAIT_MS), want);
        h->reader = cache_reader_free(h->reader);
        h->joined = cache_entry_unref(h->joined);
        h->calls = 0;
}

static void test_begin_joiners(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(300, 6, DIGEST_SHA256, &d);
        struct join_hook h = { .cache = c, .digest = d };
        struct cache_entry *e = NULL;
        struct cache_stats st;
        char path[PATH_MAX], hex[DIGEST_HEX_MAX];
        uint64_t size;
        bool writer;

        /* The download's file cannot be made (tmp/ is not a directory): the
         * caller and the joiner who came meanwhile both get the errno. */
        snprintf(path, sizeof(path), "%s/tmp", f->root);
        assert_int_equal(rmdir(path), 0);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        c->test_listed = join_while_listed;
        c->test_listed_userdata = &h;
        assert_int_equal(cache_begin(c, &d, 300, &e, &writer), -ENOTDIR);
        hook_check_and_release(&h, -ENOTDIR);
        cache_get_stats(c, &st);
        assert_int_equal(st.misses, 0); /* nothing was begun */
        assert_int_equal(st.joins, 1);
        assert_int_equal(st.aborted, 0);
        assert_int_equal(st.in_flight, 0);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkdir(path, 0700), 0);

        /* The blob is on disk but not in the index (put there behind the
         * cache's back): -EEXIST for the caller, and the joiner is told to look again. */
        digest_hex(&d, hex);
        snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s", f->root, hex);
        assert_int_equal(mkdir_p(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", f->root, hex, hex);
        assert_int_equal(write_file_atomic(path, b, 300, 0644), 0);
        assert_int_equal(cache_begin(c, &d, 300, &e, &writer), -EEXIST);
        hook_check_and_release(&h, -EEXIST);
        cache_get_stats(c, &st);
        assert_int_equal(st.misses, 0);
        assert_int_equal(st.in_flight, 0);

        /* A blob the index knows is answered without listing anything. */
        assert_int_equal(unlink(path), 0);
        c->test_listed = NULL;
        assert_int_equal(cache_begin(c, &d, 300, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_write(e, b, 300), 0);
        assert_int_equal(cache_commit(e, NULL), 0);
        cache_writer_unref(e);
        c->test_listed = join_while_listed;
        assert_int_equal(cache_begin(c, &d, 300, &e, &writer), -EEXIST);
        assert_int_equal(h.calls, 0);

        /* The index says stored, the disk no longer has it: download it again. */
        c->test_listed = NULL;
        assert_int_equal(unlink(path), 0);
        assert_int_equal(cache_begin(c, &d, 300, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_write(e, b, 300), 0);
        assert_int_equal(cache_commit(e, NULL), 0);
        cache_writer_unref(e);
        assert_int_equal(cache_stat(c, &d, &size), 0);
        free(b);
        cache_close(c);
}

/* ---- memory entries ---------------------------------------------------------------------------- */

#define RING 4096
#define THROUGH_SIZE (64 * 1024)

static void test_unstored_stream(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(THROUGH_SIZE, 7, DIGEST_SHA256, &d);
        unsigned char *got = malloc(THROUGH_SIZE);
        struct cache_entry *e = NULL, *stored = NULL;
        struct cache_reader *r = NULL, *second = NULL;
        struct cache_stats st;
        uint64_t size = 0;
        bool writer;

        assert_non_null(got);
        assert_int_equal(cache_begin_unstored(c, &d, THROUGH_SIZE, 0, NULL, &e), -EINVAL);
        assert_int_equal(cache_begin_unstored(c, &d, THROUGH_SIZE, RING, NULL, &e), 0);
        assert_false(cache_entry_wanted(e));
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_reader_new(e, &second), -EBUSY); /* one reader, ever */
        assert_true(cache_entry_wanted(e));
        assert_int_equal(cache_entry_followers(e), 1);
        /* Not in the store, not in flight: the same digest begins a download of its own. */
        assert_int_equal(cache_stat(c, &d, &size), -ENOENT);
        assert_int_equal(cache_begin(c, &d, THROUGH_SIZE, &stored, &writer), 0);
        assert_true(writer);
        assert_ptr_not_equal(stored, e);
        cache_writer_unref(stored);
        cache_get_stats(c, &st);
        assert_int_equal(st.unstored, 1);
        assert_int_equal(st.misses, 1); /* the stored one's */
        assert_int_equal(st.in_flight, 0);

        struct writer_job w;
        writer_job_init(&w, e, b, THROUGH_SIZE, 1000);
        w.commit = w.gated = true;
        w.source = "http://127.0.0.1:5001/v2/";
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
        /* Backpressure: the writer fills the ring and waits for the reader. */
        wait_offset(e, RING);
        usleep(20000); /* room for a writer that ignores the ring to show it */
        assert_int_equal(cache_entry_offset(e), RING);
        assert_int_equal(cache_entry_wait_size(e, 0, &size), 0);
        assert_int_equal(size, THROUGH_SIZE);

        /* Everything but the last byte, which waits for the digest. */
        read_exactly(r, got, THROUGH_SIZE - 1);
        wait_offset(e, THROUGH_SIZE); /* written, and still held back: */
        assert_int_equal(cache_reader_read(r, got + THROUGH_SIZE - 1, 1, 20), -ETIMEDOUT);
        assert_int_equal(cache_reader_wait(r, 20), -ETIMEDOUT);
        assert_int_equal(cache_entry_wait_end(e, 0), -ETIMEDOUT);
        writer_job_go(&w);
        assert_int_equal(cache_reader_read(r, got + THROUGH_SIZE - 1, 1, WAIT_MS), 1);
        assert_int_equal(cache_reader_read(r, got, 1, WAIT_MS), 0);
        assert_memory_equal(got, b, THROUGH_SIZE);
        assert_int_equal(cache_entry_wait_end(e, WAIT_MS), 0);
        assert_int_equal(writer_job_join(&w, t), 0);
        char source[CACHE_SOURCE_MAX];
        cache_entry_source(e, source, sizeof(source));
        assert_string_equal(source, "http://127.0.0.1:5001/v2/");
        cache_reader_free(r);
        cache_writer_unref(e);
        /* Nothing stored. */
        assert_int_equal(cache_stat(c, &d, &size), -ENOENT);
        int fd;
        assert_int_equal(cache_open_blob(c, &d, &fd, &size), -ENOENT);
        cache_get_stats(c, &st);
        assert_int_equal(st.committed, 0);
        assert_int_equal(st.bytes_written, 0);
        free(got);
        free(b);
        cache_close(c);
}

/* The ring is paid from the caller's budget: refused past it, given back with the entry. */
static void test_unstored_budget(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(64, 9, DIGEST_SHA256, &d);
        struct budget budget;
        struct cache_entry *e = NULL, *other = NULL;

        budget_init(&budget, RING + RING / 2);
        assert_int_equal(cache_begin_unstored(c, &d, 64, RING, &budget, &e), 0);
        assert_int_equal(budget_held(&budget), RING);
        assert_int_equal(cache_begin_unstored(c, &d, 64, RING, &budget, &other), -ENOBUFS);
        assert_null(other);
        assert_int_equal(budget_held(&budget), RING);
        struct cache_entry *held = cache_entry_ref(e);
        cache_writer_unref(e);
        assert_int_equal(budget_held(&budget), RING); /* a reference still holds the ring */
        cache_entry_unref(held);
        assert_int_equal(budget_held(&budget), 0);
        assert_int_equal(cache_begin_unstored(c, &d, 64, RING, &budget, &e), 0);
        cache_writer_unref(e);
        assert_int_equal(budget_held(&budget), 0);
        free(b);
        cache_close(c);
}

static void test_unstored_reader_leaves(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(THROUGH_SIZE, 8, DIGEST_SHA256, &d);
        struct cache_entry *e = NULL;
        struct cache_reader *r = NULL;

        /* The client goes while the writer waits for room: -EPIPE, at once. */
        assert_int_equal(cache_begin_unstored(c, &d, -1, RING, NULL, &e), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        struct writer_job w;
        writer_job_init(&w, e, b, THROUGH_SIZE, 1000);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
        wait_offset(e, RING);
        cache_reader_free(r);
        assert_int_equal(writer_job_join(&w, t), -EPIPE);
        assert_false(cache_entry_wanted(e));
        assert_int_equal(cache_fail(e, -EPIPE), 0);
        cache_writer_unref(e);

        /* So does another reference going (a shutdown: the stream is freed). */
        struct cache_entry *held = NULL;
        assert_int_equal(cache_begin_unstored(c, &d, -1, RING, NULL, &e), 0);
        held = cache_entry_ref(e);
        writer_job_init(&w, e, b, THROUGH_SIZE, 1000);
        assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
        wait_offset(e, RING);
        cache_entry_unref(held);
        assert_int_equal(writer_job_join(&w, t), -EPIPE);
        cache_writer_unref(e);

        /* A reader that takes nothing: -ETIMEDOUT after the stall bound (shortened here). */
        assert_int_equal(cache_begin_unstored(c, &d, -1, RING, NULL, &e), 0);
        e->stall_ms = 50;
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_write(e, b, RING), 0);
        uint64_t t0 = time_now_ms();
        assert_int_equal(cache_write(e, b + RING, 1), -ETIMEDOUT);
        assert_true(time_now_ms() - t0 >= 40);
        cache_reader_free(r);
        cache_writer_unref(e);

        /* A shutdown: the stop flag ends a write waiting for room, the reader still there and taking nothing. */
        atomic_bool stop = false;
        assert_int_equal(cache_begin_unstored(c, &d, -1, RING, NULL, &e), 0);
        cache_entry_set_stop(e, &stop);
        assert_int_equal(cache_reader_new(e, &r), 0);
        writer_job_init(&w, e, b, THROUGH_SIZE, 1000);
        assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
        wait_offset(e, RING);
        atomic_store(&stop, true);
        assert_int_equal(writer_job_join(&w, t), -ECANCELED);
        assert_true(cache_entry_wanted(e)); /* it was the flag, not the reader leaving */
        cache_reader_free(r);
        cache_writer_unref(e);

        /* Nobody came yet: not "unwanted" (the reader may be on its way), only full. */
        assert_int_equal(cache_begin_unstored(c, &d, -1, RING, NULL, &e), 0);
        e->stall_ms = 50;
        assert_int_equal(cache_write(e, b, RING), 0);
        assert_int_equal(cache_write(e, b + RING, 1), -ETIMEDOUT);
        cache_writer_unref(e);
        free(b);
        cache_close(c);
}

static void test_unstored_mismatch(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d, other, got;
        unsigned char *b = content(50, 9, DIGEST_SHA256, &d);
        unsigned char *wrong = content(50, 10, DIGEST_SHA256, &other);
        struct cache_entry *e = NULL;
        struct cache_reader *r = NULL;
        unsigned char buf[64];
        struct cache_stats st;

        assert_int_equal(cache_begin_unstored(c, &d, 50, 64, NULL, &e), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_write(e, wrong, 50), 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 49); /* never the last byte */
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -ETIMEDOUT);
        assert_int_equal(cache_commit(e, &got), -EBADMSG);
        assert_true(digest_equal(&got, &other));
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -EBADMSG);
        assert_int_equal(cache_entry_wait_end(e, 0), -EBADMSG);
        cache_reader_free(r);
        cache_writer_unref(e);

        /* Short: -EMSGSIZE. */
        assert_int_equal(cache_begin_unstored(c, &d, 60, 64, NULL, &e), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_write(e, b, 50), 0);
        assert_int_equal(cache_write(e, b, 11), -EMSGSIZE); /* beyond the size */
        assert_int_equal(cache_commit(e, NULL), -EMSGSIZE);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -EMSGSIZE);
        cache_reader_free(r);
        cache_writer_unref(e);

        /* The writer gives up: the reader gets its reason. */
        assert_int_equal(cache_begin_unstored(c, &d, 50, 64, NULL, &e), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_fail(e, -EHOSTUNREACH), 0);
        uint64_t size;
        assert_int_equal(cache_entry_wait_size(e, 0, &size), -EHOSTUNREACH);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -EHOSTUNREACH);
        cache_reader_free(r);
        cache_writer_unref(e);

        cache_get_stats(c, &st);
        assert_int_equal(st.mismatched, 2);
        assert_int_equal(st.aborted, 0); /* the store's count */
        assert_int_equal(st.unstored, 3);
        free(wrong);
        free(b);
        cache_close(c);
}

static void test_unstored_skip(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(40, 11, DIGEST_SHA256, &d);
        struct cache_entry *e = NULL;
        struct cache_reader *r = NULL;
        unsigned char buf[64];
        uint64_t size;

        assert_int_equal(cache_begin_unstored(c, &d, -1, 16, NULL, &e), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_write(e, b, 16), 0); /* the ring is full */
        /* Skipping drops bytes from the ring: room for the writer at once. */
        assert_int_equal(cache_reader_skip(r, 10), 10);
        assert_int_equal(cache_write(e, b + 16, 10), 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 16);
        assert_memory_equal(buf, b + 10, 16);
        assert_int_equal(cache_reader_skip(r, 100), 0); /* nothing there */
        assert_int_equal(cache_entry_set_size(e, 40), 0);
        assert_int_equal(cache_write(e, b + 26, 14), 0);
        /* As far as a read could go: not the held-back last byte. */
        assert_int_equal(cache_reader_skip(r, 100), 13);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -ETIMEDOUT);
        assert_int_equal(cache_commit(e, NULL), 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 1);
        assert_int_equal(buf[0], b[39]);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 0);
        assert_int_equal(cache_entry_wait_size(e, 0, &size), 0);
        assert_int_equal(size, 40);
        cache_reader_free(r);
        cache_writer_unref(e);
        free(b);
        cache_close(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_verdicts, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_source, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_interest, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_unwanted_is_cancelled, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_writer_thread_and_follower, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_begin_joiners, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_unstored_stream, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_unstored_reader_leaves, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_unstored_budget, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_unstored_mismatch, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_unstored_skip, setup_dir, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
