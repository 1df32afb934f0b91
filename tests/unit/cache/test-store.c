/* SPDX-License-Identifier: Apache-2.0 */
/* The store: layout and lock, verify-then-commit, single flight with follow
 * readers racing a slow writer, aborts and mismatches, crash recovery. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/cache.h"
#include "common/fsutil.h"
#include "tests/unit/cache/cache-test.h"

static size_t count_dir(const char *root, const char *sub) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", root, sub);
        DIR *d = opendir(path);
        assert_non_null(d);
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

static void store(struct cache *c, const unsigned char *b, size_t n, const struct digest *d) {
        struct cache_entry *e = NULL;
        bool writer = false;
        assert_int_equal(cache_begin(c, d, (int64_t) n, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_write(e, b, n), 0);
        assert_int_equal(cache_commit(e, NULL), 0);
        cache_entry_unref(e);
}

/* cache rm's blob removal: never a pinned blob; reading without counting a use. */
static void test_remove_and_read(void **state) {
        struct fixture *f = *state;
        struct error_list errors;
        assert_int_equal(cache_open(f->root, &f->cache, &errors), 0);
        unsigned char a[300], b[100];
        memset(a, 'a', sizeof(a));
        memset(b, 'b', sizeof(b));
        struct digest da, db, dc;
        assert_int_equal(digest_buffer(DIGEST_SHA256, a, sizeof(a), &da), 0);
        assert_int_equal(digest_buffer(DIGEST_SHA256, b, sizeof(b), &db), 0);
        assert_int_equal(digest_buffer(DIGEST_SHA256, "c", 1, &dc), 0);
        store(f->cache, a, sizeof(a), &da);
        store(f->cache, b, sizeof(b), &db);
        struct cache_stats before, st;
        cache_get_stats(f->cache, &before);
        void *data = NULL;
        size_t size = 0;
        assert_int_equal(cache_read_blob(f->cache, &da, sizeof(a) - 1, &data, &size), -EFBIG);
        assert_int_equal(cache_read_blob(f->cache, &dc, 1000, &data, &size), -ENOENT);
        assert_int_equal(cache_read_blob(f->cache, &da, sizeof(a), &data, &size), 0);
        assert_int_equal(size, sizeof(a));
        assert_memory_equal(data, a, sizeof(a));
        free(data);
        cache_get_stats(f->cache, &st);
        assert_int_equal(st.hits, before.hits); /* a look, not a use */

        assert_int_equal(cache_pin(f->cache, &db, true), 0);
        assert_int_equal(cache_remove_blob(f->cache, &db), -EBUSY);
        assert_int_equal(cache_remove_blob(f->cache, &dc), -ENOENT);
        assert_int_equal(cache_remove_blob(f->cache, &da), 0);
        uint64_t n;
        assert_int_equal(cache_stat(f->cache, &da, &n), -ENOENT);
        assert_int_equal(cache_stat(f->cache, &db, &n), 0);
        cache_get_stats(f->cache, &st);
        assert_int_equal(st.blobs, 1);
        assert_int_equal(st.bytes, sizeof(b));
        f->cache = cache_close(f->cache);
        assert_int_equal(cache_open(f->root, &f->cache, &errors), 0); /* gone from disk too */
        assert_int_equal(cache_wait_ready(f->cache, -1), 0);
        assert_int_equal(cache_stat(f->cache, &da, &n), -ENOENT);
        cache_get_stats(f->cache, &st);
        assert_int_equal(st.blobs, 1);
}

static void test_layout_and_lock(void **state) {
        struct fixture *f = *state;
        char sub[128];
        snprintf(sub, sizeof(sub), "%s/a/b", f->root);
        struct cache *c = open_ok(sub);
        char path[256];
        struct stat st;
        static const char *const dirs[] = { "blobs/sha256", "blobs/sha512", "tmp" };
        for (size_t i = 0; i < 3; i++) {
                snprintf(path, sizeof(path), "%s/%s", sub, dirs[i]);
                assert_int_equal(stat(path, &st), 0);
                assert_true(S_ISDIR(st.st_mode));
        }
        snprintf(path, sizeof(path), "%s/VERSION", sub);
        FILE *v = fopen(path, "re");
        assert_non_null(v);
        char line[16] = "";
        assert_non_null(fgets(line, sizeof(line), v));
        fclose(v);
        assert_string_equal(line, "1\n");

        /* A second owner is refused, clearly; the first keeps working. */
        struct cache *c2 = NULL;
        struct error_list errors;
        assert_int_equal(cache_open(sub, &c2, &errors), -EBUSY);
        assert_null(c2);
        char buf[512];
        error_list_format(&errors, 0, buf, sizeof(buf));
        char want[512];
        snprintf(want, sizeof(want), "%s: in use by another layerd process (its lock is held)", sub);
        assert_string_equal(buf, want);
        cache_close(c);
        /* Released on close. */
        c = open_ok(sub);
        cache_close(c);

        /* A format this layerd does not know is refused, not guessed. */
        v = fopen(path, "we");
        fputs("7\n", v);
        fclose(v);
        assert_int_equal(cache_open(sub, &c2, &errors), -EPROTO);
        error_list_format(&errors, 0, buf, sizeof(buf));
        snprintf(want, sizeof(want), "%s: cache format \"7\" is not the format 1 this layerd reads", sub);
        assert_string_equal(buf, want);
}

static void test_commit_and_read(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(100000, 1, DIGEST_SHA256, &d);
        uint64_t size;
        assert_int_equal(cache_stat(c, &d, &size), -ENOENT);

        struct cache_entry *e = NULL;
        bool writer = false;
        assert_int_equal(cache_begin(c, &d, 100000, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_write(e, b, 40000), 0);
        assert_int_equal(cache_entry_offset(e), 40000);
        assert_int_equal(cache_write(e, b + 40000, 60000), 0);
        /* Not visible before the commit. */
        assert_int_equal(cache_stat(c, &d, &size), -ENOENT);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.in_flight, 1);
        assert_int_equal(cache_commit(e, NULL), 0);
        cache_entry_unref(e);

        assert_int_equal(cache_stat(c, &d, &size), 0);
        assert_int_equal(size, 100000);
        int fd = -1;
        assert_int_equal(cache_open_blob(c, &d, &fd, &size), 0);
        unsigned char *back = malloc(100000);
        assert_int_equal(read(fd, back, 100000), 100000);
        assert_memory_equal(back, b, 100000);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
        /* Already there: no second download. */
        assert_int_equal(cache_begin(c, &d, 100000, &e, &writer), -EEXIST);
        cache_get_stats(c, &st);
        assert_int_equal(st.blobs, 1);
        assert_int_equal(st.bytes, 100000);
        assert_int_equal(st.committed, 1);
        assert_int_equal(st.in_flight, 0);
        assert_int_equal(st.hits, 1);
        assert_int_equal(st.misses, 1);
        assert_int_equal(st.joins, 0);
        assert_int_equal(st.bytes_written, 100000);
        assert_int_equal(count_dir(f->root, "tmp"), 0);

        /* sha512 content works the same way. */
        struct digest d5;
        unsigned char *b5 = content(777, 2, DIGEST_SHA512, &d5);
        store(c, b5, 777, &d5);
        assert_int_equal(cache_stat(c, &d5, &size), 0);
        assert_int_equal(size, 777);
        free(b5);
        free(back);
        free(b);
        cache_close(c);
}

static void test_mismatch(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d, other, got;
        unsigned char *b = content(5000, 3, DIGEST_SHA256, &d);
        unsigned char *wrong = content(5000, 4, DIGEST_SHA256, &other);
        struct cache_entry *e = NULL;
        struct cache_reader *r = NULL;
        bool writer;
        assert_int_equal(cache_begin(c, &d, -1, &e, &writer), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_write(e, wrong, 5000), 0);
        unsigned char buf[8192];
        /* The reader may see bytes while they arrive... */
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 1000), 5000);
        assert_int_equal(cache_commit(e, &got), -EBADMSG);
        assert_true(digest_equal(&got, &other));
        /* ...and then learns they were wrong, and why. */
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 1000), -EBADMSG);
        assert_int_equal(cache_entry_wait_end(e, 0), -EBADMSG);
        uint64_t size;
        assert_int_equal(cache_stat(c, &d, &size), -ENOENT);
        assert_int_equal(count_dir(f->root, "tmp"), 0);
        cache_reader_free(r);
        cache_entry_unref(e);

        /* Wrong size, known in advance: too much is refused at once, too little at commit. */
        assert_int_equal(cache_begin(c, &d, 4999, &e, &writer), 0);
        assert_int_equal(cache_write(e, b, 5000), -EMSGSIZE);
        cache_abort(e);
        cache_entry_unref(e);
        assert_int_equal(cache_begin(c, &d, 5001, &e, &writer), 0);
        assert_int_equal(cache_write(e, b, 5000), 0);
        assert_int_equal(cache_commit(e, NULL), -EMSGSIZE);
        cache_entry_unref(e);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.mismatched, 2);
        assert_int_equal(st.aborted, 1);
        assert_int_equal(st.blobs, 0);
        /* After all that, a good download still goes through. */
        store(c, b, 5000, &d);
        assert_int_equal(cache_stat(c, &d, &size), 0);
        free(b);
        free(wrong);
        cache_close(c);
}

static void test_abort_and_timeout(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(1000, 5, DIGEST_SHA256, &d);
        struct cache_entry *e = NULL, *joined = NULL;
        struct cache_reader *r = NULL;
        bool writer;
        assert_int_equal(cache_begin(c, &d, 1000, &e, &writer), 0);
        assert_int_equal(cache_begin(c, &d, 1000, &joined, &writer), 0);
        assert_false(writer);
        assert_ptr_equal(joined, e);
        assert_int_equal(cache_reader_new(joined, &r), 0);
        unsigned char buf[2000];
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 50), -ETIMEDOUT);
        assert_int_equal(cache_write(e, b, 500), 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 50), 500);
        assert_memory_equal(buf, b, 500);
        cache_abort(e);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 50), -EIO);
        assert_int_equal(cache_write(e, b, 10), -EINVAL);
        cache_entry_unref(e);
        cache_entry_unref(joined);
        cache_reader_free(r);
        assert_int_equal(count_dir(f->root, "tmp"), 0);

        /* A writer that lets go without commit or abort: the download is aborted. */
        assert_int_equal(cache_begin(c, &d, 1000, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_write(e, b, 10), 0);
        cache_entry_unref(e);
        assert_int_equal(count_dir(f->root, "tmp"), 0);

        /* ...even with a follower still reading: it learns at once, and the
         * next caller becomes a writer instead of joining a dead download. */
        assert_int_equal(cache_begin(c, &d, 1000, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_begin(c, &d, 1000, &joined, &writer), 0);
        assert_false(writer);
        assert_int_equal(cache_reader_new(joined, &r), 0);
        cache_writer_unref(e);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 1000), -EIO);
        struct cache_entry *again = NULL;
        assert_int_equal(cache_begin(c, &d, 1000, &again, &writer), 0);
        assert_true(writer);
        assert_ptr_not_equal(again, joined);
        cache_reader_free(r);
        cache_entry_unref(joined);
        assert_int_equal(cache_write(again, b, 1000), 0);
        assert_int_equal(cache_commit(again, NULL), 0);
        cache_writer_unref(again); /* after a commit: only the reference goes */
        uint64_t size;
        assert_int_equal(cache_stat(c, &d, &size), 0);
        assert_int_equal(cache_begin(c, &d, 1000, &e, &writer), -EEXIST);

        /* Asking for nothing gets nothing, not an error. */
        struct digest d2;
        unsigned char *b2 = content(100, 6, DIGEST_SHA256, &d2);
        assert_int_equal(cache_begin(c, &d2, 100, &e, &writer), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_write(e, b2, 100), 0);
        assert_int_equal(cache_reader_read(r, buf, 0, 0), 0);
        /* The last byte stays back until the blob is verified; an abort then withholds it for good. */
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 99);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -ETIMEDOUT);
        cache_abort(e);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -EIO);
        cache_reader_free(r);
        cache_writer_unref(e);
        free(b2);
        free(b);
        cache_close(c);
}

/* The size known late (from the upstream's headers), the last byte held back until the commit. */
static void test_size_and_holdback(void **state) {
        const char *root = *state;
        struct cache *c = NULL;
        struct cache_entry *e = NULL, *joined = NULL;
        struct cache_reader *r = NULL;
        bool writer;
        uint64_t size = 0;
        char buf[64];
        struct digest d;
        unsigned char *b = content(50, 7, DIGEST_SHA256, &d);

        c = open_ok(root);
        assert_int_equal(cache_begin(c, &d, -1, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_begin(c, &d, -1, &joined, &writer), 0);
        assert_false(writer);
        assert_int_equal(cache_entry_wait_size(joined, 0, &size), -ETIMEDOUT);
        assert_int_equal(cache_write(e, b, 10), 0);
        assert_int_equal(cache_entry_set_size(e, 5), -EMSGSIZE); /* fewer than written */
        assert_int_equal(cache_entry_set_size(e, 50), 0);
        assert_int_equal(cache_entry_set_size(e, 51), -EMSGSIZE); /* contradicts */
        assert_int_equal(cache_entry_wait_size(joined, 0, &size), 0);
        assert_int_equal(size, 50);
        assert_int_equal(cache_write(e, b + 10, 40), 0);
        assert_int_equal(cache_write(e, b + 50, 1), -EMSGSIZE); /* beyond the size now known */

        /* A skip goes as far as a read could, never past the held-back byte. */
        assert_int_equal(cache_reader_new(joined, &r), 0);
        assert_int_equal(cache_reader_skip(r, 20), 20);
        assert_int_equal(cache_reader_skip(r, 1000), 29);
        assert_int_equal(cache_reader_skip(r, 1000), 0);
        cache_reader_free(r);

        assert_int_equal(cache_reader_new(joined, &r), 0);
        assert_int_equal(cache_reader_wait(r, 0), 0); /* bytes to read: no wait */
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 49);
        assert_memory_equal(buf, b, 49);
        /* The last byte is held back: a wait times out, as a read does. */
        assert_int_equal(cache_reader_wait(r, 20), -ETIMEDOUT);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -ETIMEDOUT);
        assert_int_equal(cache_commit(e, NULL), 0);
        assert_int_equal(cache_reader_wait(r, 0), 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 1);
        assert_int_equal(buf[0], b[49]);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 0);
        cache_reader_free(r);
        assert_int_equal(cache_entry_wait_size(joined, 0, &size), 0);
        assert_int_equal(size, 50);
        cache_entry_unref(joined);
        cache_writer_unref(e);

        /* A download that fails before its size is known: waiters learn it. */
        struct digest d2;
        unsigned char *b2 = content(20, 8, DIGEST_SHA256, &d2);
        assert_int_equal(cache_begin(c, &d2, -1, &e, &writer), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_reader_wait(r, 0), -ETIMEDOUT);
        cache_abort(e);
        assert_int_equal(cache_reader_wait(r, 0), 0); /* no more waiting: the read says why */
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), -EIO);
        cache_reader_free(r);
        assert_int_equal(cache_entry_wait_size(e, 0, &size), -EIO);
        cache_writer_unref(e);
        free(b2);
        free(b);
        cache_close(c);
}

/* Verified bytes reach the readers even when the store then cannot take the
 * blob (here its directory's name is taken by a file): nothing wrong is ever
 * served, nothing right is withheld, and nothing is stored. */
static void test_verified_survives_store_failure(void **state) {
        const char *root = *state;
        struct cache_entry *e = NULL;
        struct cache_reader *r = NULL;
        bool writer;
        char buf[64], hex[DIGEST_HEX_MAX], path[PATH_MAX];
        struct digest d;
        unsigned char *b = content(50, 9, DIGEST_SHA256, &d);
        struct cache *c = open_ok(root);

        digest_hex(&d, hex);
        snprintf(path, sizeof(path), "%s/blobs/sha256", root);
        assert_int_equal(mkdir_p(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s", root, hex);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);

        assert_int_equal(cache_begin(c, &d, 50, &e, &writer), 0);
        assert_int_equal(cache_reader_new(e, &r), 0);
        assert_int_equal(cache_write(e, b, 50), 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 49);
        assert_true(cache_commit(e, NULL) < 0);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 1);
        assert_int_equal(buf[0], b[49]);
        assert_int_equal(cache_reader_read(r, buf, sizeof(buf), 0), 0);
        cache_reader_free(r);
        cache_writer_unref(e);
        uint64_t size;
        assert_true(cache_stat(c, &d, &size) < 0); /* not stored (ENOTDIR here) */
        free(b);
        cache_close(c);
}

/* ---- many threads, one digest -------------------------------------------------------- */

#define RACERS 16
#define RACE_SIZE (1 << 20)

struct race {
        struct cache *cache;
        const unsigned char *data;
        struct digest digest;
        pthread_barrier_t start;
        int writers;
        pthread_mutex_t lock;
};

static void *racer(void *arg) {
        struct race *race = arg;
        struct cache_entry *e = NULL;
        struct cache_reader *r = NULL;
        bool writer = false;
        unsigned char *got = malloc(RACE_SIZE);
        size_t have = 0;
        long ok = 0;

        pthread_barrier_wait(&race->start);
        int rc = cache_begin(race->cache, &race->digest, RACE_SIZE, &e, &writer);
        if (rc == -EEXIST) {
                /* Lost the race to a finished download: read the blob. */
                int fd;
                uint64_t size;
                if (cache_open_blob(race->cache, &race->digest, &fd, &size) == 0) {
                        ok = size == RACE_SIZE && read(fd, got, RACE_SIZE) == RACE_SIZE &&
                             memcmp(got, race->data, RACE_SIZE) == 0;
                        close(fd);
                }
                free(got);
                return (void *) ok;
        }
        if (rc < 0 || cache_reader_new(e, &r) < 0) {
                free(got);
                return (void *) 0;
        }
        if (writer) {
                pthread_mutex_lock(&race->lock);
                race->writers++;
                pthread_mutex_unlock(&race->lock);
                /* Slowly, in odd chunks, so readers really follow. */
                for (size_t off = 0; off < RACE_SIZE;) {
                        size_t n = off + 7919 < RACE_SIZE ? 7919 : RACE_SIZE - off;
                        if (cache_write(e, race->data + off, n) < 0)
                                break;
                        off += n;
                        if (off % (64 * 7919) == 0)
                                usleep(1000);
                }
                if (cache_commit(e, NULL) < 0) {
                        cache_reader_free(r);
                        cache_entry_unref(e);
                        free(got);
                        return (void *) 0;
                }
        }
        for (;;) {
                ssize_t n = cache_reader_read(r, got + have, RACE_SIZE - have, 10000);
                if (n <= 0) {
                        ok = n == 0 && have == RACE_SIZE && memcmp(got, race->data, RACE_SIZE) == 0;
                        break;
                }
                have += (size_t) n;
        }
        cache_reader_free(r);
        cache_entry_unref(e);
        free(got);
        return (void *) ok;
}

static void test_single_flight(void **state) {
        struct fixture *f = *state;
        struct race race = { .cache = open_ok(f->root) };
        unsigned char *data = content(RACE_SIZE, 9, DIGEST_SHA256, &race.digest);
        race.data = data;
        pthread_barrier_init(&race.start, NULL, RACERS);
        pthread_mutex_init(&race.lock, NULL);
        pthread_t t[RACERS];
        for (int i = 0; i < RACERS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, racer, &race), 0);
        int good = 0;
        for (int i = 0; i < RACERS; i++) {
                void *ok;
                pthread_join(t[i], &ok);
                good += ok != NULL;
        }
        assert_int_equal(good, RACERS);
        assert_int_equal(race.writers, 1);
        struct cache_stats st;
        cache_get_stats(race.cache, &st);
        assert_int_equal(st.misses, 1);
        assert_int_equal(st.joins + st.hits, RACERS - 1);
        assert_int_equal(st.committed, 1);
        assert_int_equal(st.in_flight, 0);
        pthread_barrier_destroy(&race.start);
        pthread_mutex_destroy(&race.lock);
        free(data);
        cache_close(race.cache);
}

/* ---- crash and restart ----------------------------------------------------------------- */

static void test_killed_mid_write(void **state) {
        struct fixture *f = *state;
        struct digest d, kept;
        unsigned char *b = content(200000, 11, DIGEST_SHA256, &d);
        unsigned char *k = content(3000, 12, DIGEST_SHA256, &kept);
        struct cache *c = open_ok(f->root);
        store(c, k, 3000, &kept);
        cache_close(c);

        int pipefd[2];
        assert_int_equal(pipe(pipefd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct cache *cc = NULL;
                struct error_list errors;
                struct cache_entry *e = NULL;
                bool writer;
                if (cache_open(f->root, &cc, &errors) < 0 || cache_begin(cc, &d, 200000, &e, &writer) < 0 ||
                    cache_write(e, b, 100000) < 0)
                        _exit(1);
                (void) !write(pipefd[1], "x", 1);
                for (;;)
                        pause(); /* killed here, mid-download, lock held */
        }
        char x;
        close(pipefd[1]);
        assert_int_equal(read(pipefd[0], &x, 1), 1);
        close(pipefd[0]);
        /* While the child lives, its lock keeps us out. */
        struct cache *c2 = NULL;
        struct error_list errors;
        assert_int_equal(cache_open(f->root, &c2, &errors), -EBUSY);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(count_dir(f->root, "tmp"), 1);

        /* Restart: the partial is gone, nothing of it is served, the rest is counted. */
        c = open_ok(f->root);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.partials_removed, 1);
        assert_int_equal(st.blobs, 1);
        assert_int_equal(st.bytes, 3000);
        assert_int_equal(count_dir(f->root, "tmp"), 0);
        uint64_t size;
        assert_int_equal(cache_stat(c, &d, &size), -ENOENT);
        store(c, b, 200000, &d);
        assert_int_equal(cache_stat(c, &d, &size), 0);
        cache_close(c);
        free(b);
        free(k);
}

static void test_counts_ignore_foreign_files(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d1, d2;
        unsigned char *b1 = content(10, 13, DIGEST_SHA256, &d1);
        unsigned char *b2 = content(20, 14, DIGEST_SHA512, &d2);
        store(c, b1, 10, &d1);
        store(c, b2, 20, &d2);
        cache_close(c);
        char path[256];
        snprintf(path, sizeof(path), "%s/blobs/sha256/ab", f->root);
        mkdir(path, 0755);
        static const char *const foreign[] = { "notadigest", "cd0000000000000000000000000000000000000000000000000000000000000000",
                                               "ab00" };
        for (size_t i = 0; i < 3; i++) {
                snprintf(path, sizeof(path), "%s/blobs/sha256/ab/%s", f->root, foreign[i]);
                FILE *x = fopen(path, "we");
                assert_non_null(x);
                fputs("junk", x);
                fclose(x);
        }
        c = open_ok(f->root);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.blobs, 2);
        assert_int_equal(st.bytes, 30);
        cache_close(c);
        free(b1);
        free(b2);
}

/* ---- eviction ----------------------------------------------------------------------- */

static void test_eviction_lru_and_pins(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d[6];
        unsigned char *b[6];
        for (int i = 0; i < 6; i++) {
                b[i] = content(4000, 20 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 4000, &d[i]);
        }
        /* Used recently: 0 becomes the newest. Pinned: 1 is never evicted. */
        int fd;
        uint64_t size;
        assert_int_equal(cache_open_blob(c, &d[0], &fd, &size), 0);
        close(fd);
        assert_int_equal(cache_pin(c, &d[1], true), 0);
        struct digest absent;
        unsigned char *x = content(10, 99, DIGEST_SHA256, &absent);
        /* A digest not stored yet can be pinned ahead of its download. */
        assert_int_equal(cache_pin(c, &absent, true), 0);
        struct cache_stats ps;
        cache_get_stats(c, &ps);
        assert_int_equal(ps.pinned, 2);
        assert_int_equal(cache_pin(c, &absent, false), 0);

        /* A reader holding blob 2 open keeps reading it after it is evicted. */
        int held;
        assert_int_equal(cache_open_blob(c, &d[2], &held, &size), 0);
        /* Make 2 the oldest again after that open: touch 3, 4, 5, 0. */
        for (int i = 3; i < 6; i++) {
                assert_int_equal(cache_open_blob(c, &d[i], &fd, &size), 0);
                close(fd);
        }
        assert_int_equal(cache_open_blob(c, &d[0], &fd, &size), 0);
        close(fd);

        /* 24000 bytes against a 12000 limit: down to 90 % (10800), oldest first, pins kept. */
        cache_set_limits(c, 12000, 0);
        uint64_t n = cache_evict_now(c); /* the background thread may have done it already */
        struct cache_stats st;
        for (int i = 0; i < 500; i++) {
                cache_get_stats(c, &st);
                if (st.evictions >= 4)
                        break;
                usleep(10000);
        }
        (void) n;
        cache_get_stats(c, &st);
        assert_int_equal(st.evictions, 4);
        assert_int_equal(st.evicted_bytes, 16000);
        assert_int_equal(st.blobs, 2);
        assert_int_equal(st.bytes, 8000);
        assert_int_equal(st.pinned, 1);
        assert_int_equal(cache_stat(c, &d[1], &size), 0);  /* pinned */
        assert_int_equal(cache_stat(c, &d[0], &size), 0);  /* most recent */
        for (int i = 2; i < 6; i++)
                assert_int_equal(cache_stat(c, &d[i], &size), -ENOENT);
        unsigned char back[4000];
        assert_int_equal(pread(held, back, sizeof(back), 0), 4000);
        assert_memory_equal(back, b[2], 4000);
        close(held);

        /* Every new commit over the limit wakes the background eviction. */
        struct digest more;
        unsigned char *m = content(6000, 40, DIGEST_SHA256, &more);
        store(c, m, 6000, &more);
        for (int i = 0; i < 500; i++) {
                cache_get_stats(c, &st);
                if (st.evictions == 5)
                        break;
                usleep(10000);
        }
        assert_int_equal(st.evictions, 5);
        assert_int_equal(cache_stat(c, &d[0], &size), -ENOENT);
        assert_int_equal(cache_stat(c, &d[1], &size), 0);
        assert_int_equal(cache_stat(c, &more, &size), 0);

        /* Only pinned blobs left over the limit: they stay. */
        assert_int_equal(cache_pin(c, &more, true), 0);
        cache_set_limits(c, 1000, 0);
        cache_evict_now(c);
        cache_get_stats(c, &st);
        assert_int_equal(st.blobs, 2);
        assert_int_equal(cache_pin(c, &more, false), 0);
        cache_evict_now(c);
        cache_get_stats(c, &st);
        assert_int_equal(st.blobs, 1);
        assert_int_equal(st.pinned, 1);
        cache_close(c);
        for (int i = 0; i < 6; i++)
                free(b[i]);
        free(m);
        free(x);
}

/* Downloads in progress count against the size limit: room is made for them
 * by evicting, one that cannot have it fails with -ENOSPC (its clients stream
 * it through), and its room is given back when it ends. */
static void test_tmp_counts_against_limit(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d[3], big, huge, grow;
        unsigned char *b[3];
        for (int i = 0; i < 3; i++) {
                b[i] = content(4000, 60 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 4000, &d[i]);
        }
        unsigned char *bb = content(6000, 70, DIGEST_SHA256, &big);
        unsigned char *hb = content(7000, 71, DIGEST_SHA256, &huge);
        unsigned char *gb = content(8000, 72, DIGEST_SHA256, &grow);
        assert_int_equal(cache_set_limits(c, 12000, 0), 0);
        cache_evict_now(c);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.blobs, 3); /* 12000: not over */

        /* A 6000-byte download, its size known: two blobs go to make room
         * (down to 90 % with it: 12000 + 6000 -> at most 10800). */
        struct cache_entry *e = NULL, *j = NULL;
        bool writer = false;
        assert_int_equal(cache_begin(c, &big, -1, &e, &writer), 0);
        assert_true(writer);
        assert_int_equal(cache_join(c, &big, &j), 0); /* in flight: joined, never started */
        assert_ptr_equal(j, e);
        cache_entry_unref(j);
        assert_int_equal(cache_join(c, &huge, &j), -ENOENT);
        assert_int_equal(cache_entry_set_size(e, 6000), 0);
        cache_get_stats(c, &st);
        assert_int_equal(st.tmp_bytes, 6000);
        assert_int_equal(st.blobs, 1);
        assert_true(st.bytes + st.tmp_bytes <= 12000);
        uint64_t size;
        assert_int_equal(cache_stat(c, &d[2], &size), 0); /* the most recent stays */

        /* Size unknown: the bytes written count as they come. 2000 fit beside
         * the blob; 2500 more only once it is evicted; 2000 more not at all. */
        struct cache_entry *g = NULL;
        assert_int_equal(cache_begin(c, &grow, -1, &g, &writer), 0);
        assert_int_equal(cache_write(g, gb, 2000), 0);
        cache_get_stats(c, &st);
        assert_int_equal(st.tmp_bytes, 8000);
        assert_int_equal(st.blobs, 1);
        assert_int_equal(cache_write(g, gb + 2000, 2500), 0);
        cache_get_stats(c, &st);
        assert_int_equal(st.tmp_bytes, 10500);
        assert_int_equal(st.blobs, 0);
        assert_int_equal(cache_write(g, gb + 4500, 2000), -ENOSPC);
        cache_get_stats(c, &st);
        assert_int_equal(st.tmp_bytes, 6000); /* given up: its room goes back */
        assert_int_equal(st.tmp_refused, 1);
        cache_writer_unref(g);

        /* 7000 more do not fit beside the 6000 in flight even with no blob: refused. */
        struct cache_entry *h = NULL;
        assert_int_equal(cache_begin(c, &huge, 7000, &h, &writer), -ENOSPC);
        cache_get_stats(c, &st);
        assert_int_equal(st.tmp_refused, 2);
        assert_int_equal(st.tmp_bytes, 6000);
        assert_int_equal(count_dir(f->root, "tmp"), 1);
        /* Pinned (prefetch's), it is never refused, as it is never evicted: over the limit it goes. */
        assert_int_equal(cache_pin(c, &huge, true), 0);
        assert_int_equal(cache_begin(c, &huge, 7000, &h, &writer), 0);
        cache_get_stats(c, &st);
        assert_int_equal(st.tmp_bytes, 13000);
        cache_writer_unref(h);
        assert_int_equal(cache_pin(c, &huge, false), 0);

        /* Committed: its room in tmp/ becomes the store's bytes. */
        assert_int_equal(cache_write(e, bb, 6000), 0);
        assert_int_equal(cache_commit(e, NULL), 0);
        cache_writer_unref(e);
        cache_get_stats(c, &st);
        assert_int_equal(st.tmp_bytes, 0);
        assert_int_equal(st.bytes, 6000);

        /* Now 7000 fit, once that blob is evicted; given up, their room goes back. */
        assert_int_equal(cache_begin(c, &huge, 7000, &h, &writer), 0);
        cache_get_stats(c, &st);
        assert_int_equal(st.tmp_bytes, 7000);
        assert_int_equal(st.blobs, 0);
        cache_writer_unref(h);
        cache_get_stats(c, &st);
        assert_int_equal(st.tmp_bytes, 0);
        assert_int_equal(count_dir(f->root, "tmp"), 0);
        cache_close(c);
        for (int i = 0; i < 3; i++)
                free(b[i]);
        free(bb);
        free(hb);
        free(gb);
}

static void test_eviction_for_free_space(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d[3];
        unsigned char *b[3];
        for (int i = 0; i < 3; i++)
                b[i] = content(1000, 60 + (unsigned) i, DIGEST_SHA256, &d[i]);
        /* Pinned before it is downloaded, as prefetch does. */
        assert_int_equal(cache_pin(c, &d[1], true), 0);
        for (int i = 0; i < 3; i++)
                store(c, b[i], 1000, &d[i]);
        /* No file system has this much free: everything unpinned goes. */
        assert_int_equal(cache_set_limits(c, 0, UINT64_MAX / 4), 0);
        cache_evict_now(c);
        struct cache_stats st;
        for (int i = 0; i < 500; i++) {
                cache_get_stats(c, &st);
                if (st.blobs == 1)
                        break;
                usleep(10000);
        }
        assert_int_equal(st.blobs, 1);
        assert_int_equal(st.evictions, 2);
        uint64_t size;
        assert_int_equal(cache_stat(c, &d[1], &size), 0);
        /* Unbounded again: nothing more happens. */
        assert_int_equal(cache_set_limits(c, 0, 0), 0);
        assert_int_equal(cache_evict_now(c), 0);
        cache_close(c);
        for (int i = 0; i < 3; i++)
                free(b[i]);
}

struct seen {
        struct digest d[8];
        size_t n;
        struct digest bad_want, bad_got;
        int bad_calls;
};

static int collect(const struct digest *d, uint64_t size, bool pinned, void *userdata) {
        struct seen *s = userdata;
        (void) size;
        (void) pinned;
        if (s->n < 8)
                s->d[s->n++] = *d;
        return 0;
}

static void on_bad(const struct digest *want, const struct digest *got, void *userdata) {
        struct seen *s = userdata;
        s->bad_want = *want;
        s->bad_got = *got;
        s->bad_calls++;
}

static void test_verify_quarantines(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d[3];
        unsigned char *b[3];
        for (int i = 0; i < 3; i++) {
                b[i] = content(3000, 70 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 3000, &d[i]);
        }
        struct seen before = {}, after = {};
        assert_int_equal(cache_foreach_blob(c, collect, &before), 0);
        assert_int_equal(before.n, 3);
        for (int i = 0; i < 3; i++)
                assert_true(digest_equal(&before.d[i], &d[i])); /* least recently used first */

        /* Bit rot in blob 1, behind the cache's back. */
        char hex[129], path[256];
        digest_hex(&d[1], hex);
        snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", f->root, hex, hex);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "X", 1, 1500), 1);
        close(fd);

        uint64_t checked = 0, quarantined = 0;
        struct seen bad = {};
        assert_int_equal(cache_verify(c, on_bad, &bad, &checked, &quarantined), 0);
        assert_int_equal(checked, 3);
        assert_int_equal(quarantined, 1);
        assert_int_equal(bad.bad_calls, 1);
        assert_true(digest_equal(&bad.bad_want, &d[1]));
        assert_false(digest_equal(&bad.bad_got, &d[1]));
        uint64_t size;
        assert_int_equal(cache_stat(c, &d[1], &size), -ENOENT);
        snprintf(path, sizeof(path), "%s/quarantine/sha256-%s", f->root, hex);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        struct cache_stats cs;
        cache_get_stats(c, &cs);
        assert_int_equal(cs.blobs, 2);
        assert_int_equal(cs.bytes, 6000);
        /* Checking is not using: the order of the others is unchanged. */
        assert_int_equal(cache_foreach_blob(c, collect, &after), 0);
        assert_int_equal(after.n, 2);
        assert_true(digest_equal(&after.d[0], &d[0]));
        assert_true(digest_equal(&after.d[1], &d[2]));
        /* A clean store: nothing more to do. */
        assert_int_equal(cache_verify(c, NULL, NULL, &checked, &quarantined), 0);
        assert_int_equal(checked, 2);
        assert_int_equal(quarantined, 0);
        cache_close(c);
        for (int i = 0; i < 3; i++)
                free(b[i]);
}

struct removing {
        struct cache *c;
        unsigned calls, removed;
};

static int remove_each(const struct digest *d, uint64_t size, bool pinned, void *userdata) {
        struct removing *x = userdata;
        uint64_t got;
        (void) pinned;
        x->calls++;
        assert_int_equal(cache_stat(x->c, d, &got), 0);
        assert_int_equal(got, size);
        if (cache_remove_blob(x->c, d) == 0)
                x->removed++;
        return 0;
}

/* The callback runs without the store's lock: it may call back into the cache
 * (the live `cache ls` must not hold up pulls while it writes). */
static void test_foreach_calls_back(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d[3];
        unsigned char *b[3];
        for (int i = 0; i < 3; i++) {
                b[i] = content(1000, 90 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 1000, &d[i]);
        }
        struct removing x = { .c = c };
        assert_int_equal(cache_foreach_blob(c, remove_each, &x), 0);
        assert_int_equal(x.calls, 3);
        assert_int_equal(x.removed, 3);
        struct cache_stats cs;
        cache_get_stats(c, &cs);
        assert_int_equal(cs.blobs, 0);
        cache_close(c);
        for (int i = 0; i < 3; i++)
                free(b[i]);
}

static void test_disk_full(void **state) {
        struct fixture *f = *state;
        /* In a child, so the file-size limit stays there: a full disk as the
         * writer sees it (EFBIG here, ENOSPC or EDQUOT on a real one). */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct cache *c = NULL;
                struct error_list errors;
                struct digest d;
                unsigned char *b = content(100000, 80, DIGEST_SHA256, &d);
                signal(SIGXFSZ, SIG_IGN);
                if (cache_open(f->root, &c, &errors) < 0)
                        _exit(10);
                struct rlimit rl = { 50000, 50000 };
                setrlimit(RLIMIT_FSIZE, &rl);
                struct cache_entry *e = NULL, *joined = NULL;
                struct cache_reader *r = NULL;
                bool writer;
                if (cache_begin(c, &d, 100000, &e, &writer) < 0 || !writer)
                        _exit(11);
                if (cache_begin(c, &d, 100000, &joined, &writer) < 0 || writer || cache_reader_new(joined, &r) < 0)
                        _exit(12);
                int w = cache_write(e, b, 100000);
                /* The cache says so, the download is given up, and the follower is
                 * told it may go on uncached from its offset: never fed a short blob. */
                if (w != -ENOSPC)
                        _exit(13);
                cache_abort(e); /* harmless: already given up */
                unsigned char buf[1024];
                if (cache_reader_read(r, buf, sizeof(buf), 1000) != -ENOSPC)
                        _exit(14);
                cache_reader_free(r);
                cache_entry_unref(joined);
                cache_entry_unref(e);
                uint64_t size;
                if (cache_stat(c, &d, &size) != -ENOENT)
                        _exit(15);
                /* Room again: the same download now works. */
                rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
                struct rlimit up = { RLIM_INFINITY, RLIM_INFINITY };
                if (setrlimit(RLIMIT_FSIZE, &up) < 0 && setrlimit(RLIMIT_FSIZE, &rl) < 0) {
                        /* Raising the hard limit needs privilege: stop here, that was the point. */
                        cache_close(c);
                        _exit(0);
                }
                if (cache_begin(c, &d, 100000, &e, &writer) < 0 || cache_write(e, b, 100000) < 0 ||
                    cache_commit(e, NULL) < 0)
                        _exit(16);
                cache_entry_unref(e);
                cache_close(c);
                free(b);
                _exit(0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(count_dir(f->root, "tmp"), 0);
}

static void test_restart_keeps_commit_order(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d[3];
        unsigned char *b[3];
        for (int i = 0; i < 3; i++) {
                b[i] = content(1000, 50 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 1000, &d[i]);
        }
        cache_close(c);
        /* Commit times decide the order after a restart: 2, then 0, then 1. */
        static const int order[3] = { 2, 0, 1 };
        for (int i = 0; i < 3; i++) {
                char hex[129], path[256];
                digest_hex(&d[order[i]], hex);
                snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", f->root, hex, hex);
                struct timespec t[2] = { { 1000 * (i + 1), 0 }, { 1000 * (i + 1), 0 } };
                assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
        }
        c = open_ok(f->root);
        /* 3000 bytes over a 2000 limit: down to 1800, the two oldest go. */
        cache_set_limits(c, 2000, 0);
        cache_evict_now(c);
        uint64_t size;
        assert_int_equal(cache_stat(c, &d[2], &size), -ENOENT);
        assert_int_equal(cache_stat(c, &d[0], &size), -ENOENT);
        assert_int_equal(cache_stat(c, &d[1], &size), 0);
        cache_close(c);
        for (int i = 0; i < 3; i++)
                free(b[i]);
}

/* ---- retention by age, with a fake clock ---- */

/* The real clocks plus what the test moved each by: a commit's mtime (the
 * real time) is its first use, as with the real clocks. Time passing moves
 * both (clock_pass()); a wall-clock step moves the wall clock only. */
struct fake_clock {
        _Atomic int64_t wall_offset_ms, mono_offset_ms;
};

static int64_t clock_ms(clockid_t id, int64_t offset_ms) {
        struct timespec ts;
        clock_gettime(id, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + offset_ms;
}

static int64_t fake_now_ms(void *userdata) {
        struct fake_clock *clk = userdata;
        return clock_ms(CLOCK_REALTIME, atomic_load(&clk->wall_offset_ms));
}

static int64_t fake_mono_ms(void *userdata) {
        struct fake_clock *clk = userdata;
        return clock_ms(CLOCK_MONOTONIC, atomic_load(&clk->mono_offset_ms));
}

/* Both clocks at ms past the test's start (time passing, no step). */
static void clock_pass(struct fake_clock *clk, int64_t ms) {
        atomic_store(&clk->wall_offset_ms, ms);
        atomic_store(&clk->mono_offset_ms, ms);
}

static struct cache *open_fake_clock(const char *root, struct fake_clock *clk) {
        struct cache *c = NULL;
        struct error_list errors;
        const struct cache_options opts = { .now_ms = fake_now_ms, .mono_ms = fake_mono_ms, .now_userdata = clk };
        assert_int_equal(cache_open_with(root, &opts, &c, &errors), 0);
        assert_int_equal(cache_wait_ready(c, 10000), 0);
        return c;
}

static int64_t mtime_ms(const char *root, const struct digest *d) {
        char hex[129], path[256];
        struct stat st;
        digest_hex(d, hex);
        snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", root, hex, hex);
        assert_int_equal(stat(path, &st), 0);
        return (int64_t) st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}

static void serve(struct cache *c, const struct digest *d) {
        int fd;
        uint64_t size;
        assert_int_equal(cache_open_blob(c, d, &fd, &size), 0);
        close(fd);
}

static struct cache_evict_report reported;
static unsigned reports;

static void on_evict(const struct cache_evict_report *r, void *userdata) {
        (void) userdata;
        for (int i = 0; i < _CACHE_EVICT_REASON_MAX; i++) {
                reported.blobs[i] += r->blobs[i];
                reported.bytes[i] += r->bytes[i];
        }
        reports++;
}

/* Blobs not served for max_age go, oldest first, pins kept; a use is written
 * to the file's mtime at most once per quarter of the age (batched), the rest
 * at close; a restart rebuilds last use from it, so what was served before
 * the restart is kept and what idled past the age is not. */
static void test_retention_by_age(void **state) {
        struct fixture *f = *state;
        struct fake_clock clk = {};
        memset(&reported, 0, sizeof(reported));
        reports = 0;
        struct cache *c = open_fake_clock(f->root, &clk);
        cache_set_evict_report(c, on_evict, NULL);
        struct digest d[4];
        unsigned char *b[4];
        for (int i = 0; i < 4; i++) {
                b[i] = content(1000, 70 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 1000, &d[i]);
        }
        int64_t t0 = fake_now_ms(&clk);
        assert_int_equal(cache_pin(c, &d[3], true), 0);
        /* Off: nothing is old enough to go, however long it idles. */
        clock_pass(&clk, 3650LL * 86400 * 1000);
        assert_int_equal(cache_evict_now(c), 0);
        clock_pass(&clk, 0);
        assert_int_equal(cache_set_max_age(c, 10000), 0);

        /* 5 s on, 0 is served: past a quarter of the age, so written to its mtime at once. */
        clock_pass(&clk, 5000);
        serve(c, &d[0]);
        int64_t served = mtime_ms(f->root, &d[0]);
        /* Within a millisecond below: the wall and monotonic clocks are read apart, each in whole ms. */
        assert_true(served >= t0 + 5000 - 1 && served < t0 + 5000 + 1000);
        /* 1 s later again: under a quarter of the age since, batched (no write). */
        clock_pass(&clk, 6000);
        serve(c, &d[0]);
        assert_int_equal(mtime_ms(f->root, &d[0]), served);

        /* 11 s on: 1 and 2 idled past the age, 0 was served 5 s ago, 3 is pinned. */
        clock_pass(&clk, 11000);
        /* The evictor wakes by itself too (test_age_wakes_evictor) and may take
         * some first: what is gone, and the counts by reason, are what is checked. */
        (void) cache_evict_now(c);
        uint64_t size;
        assert_int_equal(cache_stat(c, &d[0], &size), 0);
        assert_int_equal(cache_stat(c, &d[1], &size), -ENOENT);
        assert_int_equal(cache_stat(c, &d[2], &size), -ENOENT);
        assert_int_equal(cache_stat(c, &d[3], &size), 0);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.evictions, 2);
        assert_int_equal(st.evicted_by[CACHE_EVICT_AGE], 2);
        assert_int_equal(st.evicted_by[CACHE_EVICT_SIZE], 0);
        assert_int_equal(st.evicted_by[CACHE_EVICT_FREE], 0);
        assert_true(reports >= 1);
        assert_int_equal(reported.blobs[CACHE_EVICT_AGE], 2);
        assert_int_equal(reported.bytes[CACHE_EVICT_AGE], 2000);

        /* Closing writes the use not written yet (6 s). */
        cache_close(c);
        int64_t closed = mtime_ms(f->root, &d[0]);
        assert_true(closed >= t0 + 6000 - 1 && closed < t0 + 6000 + 1000);

        /* After a restart, 0's last use is 6 s, not its commit: kept at 15 s, gone at 17 s. */
        clock_pass(&clk, 15000);
        c = open_fake_clock(f->root, &clk);
        assert_int_equal(cache_pin(c, &d[3], true), 0); /* pins live in memory: again after each start */
        assert_int_equal(cache_set_max_age(c, 10000), 0);
        assert_int_equal(cache_evict_now(c), 0);
        assert_int_equal(cache_stat(c, &d[0], &size), 0);
        clock_pass(&clk, 17000);
        (void) cache_evict_now(c); /* or the evictor did, as above */
        assert_int_equal(cache_stat(c, &d[0], &size), -ENOENT);
        assert_int_equal(cache_stat(c, &d[3], &size), 0);
        cache_get_stats(c, &st);
        assert_int_equal(st.evicted_by[CACHE_EVICT_AGE], 1);
        cache_close(c);
        for (int i = 0; i < 4; i++)
                free(b[i]);
}

/* The order of last use survives a restart: the size bound takes the blob
 * served least recently, not the one committed first. */
static void test_restart_keeps_use_order(void **state) {
        struct fixture *f = *state;
        struct fake_clock clk = {};
        struct cache *c = open_fake_clock(f->root, &clk);
        struct digest d[2];
        unsigned char *b[2];
        for (int i = 0; i < 2; i++) {
                b[i] = content(1000, 80 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 1000, &d[i]);
        }
        /* 0 committed first, served a minute and a half later: the most recent use. */
        clock_pass(&clk, 90000);
        serve(c, &d[0]);
        cache_close(c);
        c = open_fake_clock(f->root, &clk);
        assert_int_equal(cache_set_limits(c, 1500, 0), 0);
        cache_evict_now(c);
        uint64_t size;
        assert_int_equal(cache_stat(c, &d[0], &size), 0);
        assert_int_equal(cache_stat(c, &d[1], &size), -ENOENT);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.evicted_by[CACHE_EVICT_SIZE], 1);
        assert_int_equal(st.evicted_by[CACHE_EVICT_AGE], 0);
        cache_close(c);
        for (int i = 0; i < 2; i++)
                free(b[i]);
}

/* Last use and ageing count on the monotonic clock: the wall clock stepped
 * forward by days after serving (chrony fixing a node that booted behind)
 * evicts nothing, not even across a restart (at close the mtimes are mended
 * to as far before the stepped clock as the uses were before now); stepped back by
 * days, the blobs still age out when their age has passed. */
static void test_age_ignores_wall_clock_steps(void **state) {
        struct fixture *f = *state;
        struct fake_clock clk = {};
        struct cache *c = open_fake_clock(f->root, &clk);
        struct digest d[3];
        unsigned char *b[3];
        for (int i = 0; i < 3; i++) {
                b[i] = content(1000, 100 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 1000, &d[i]);
                serve(c, &d[i]);
        }
        assert_int_equal(cache_set_max_age(c, 10000), 0);
        const int64_t day = 86400LL * 1000;
        atomic_store(&clk.wall_offset_ms, 3 * day);
        assert_int_equal(cache_evict_now(c), 0);
        /* Through a restart: the uses written at close are "just now" on the stepped clock. */
        cache_close(c);
        for (int i = 0; i < 3; i++)
                assert_true(mtime_ms(f->root, &d[i]) > fake_now_ms(&clk) - 5000);
        c = open_fake_clock(f->root, &clk);
        assert_int_equal(cache_set_max_age(c, 10000), 0);
        assert_int_equal(cache_evict_now(c), 0);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.blobs, 3);

        /* 5 s pass, 2 is served; then the wall clock goes back 10 days. */
        atomic_store(&clk.mono_offset_ms, 5000);
        atomic_store(&clk.wall_offset_ms, 3 * day + 5000);
        serve(c, &d[2]);
        atomic_store(&clk.wall_offset_ms, -7 * day + 5000);
        assert_int_equal(cache_evict_now(c), 0);
        /* 11 s on: 0 and 1 idled past the age, 2 was served 6 s ago. */
        atomic_store(&clk.mono_offset_ms, 11000);
        atomic_store(&clk.wall_offset_ms, -7 * day + 11000);
        (void) cache_evict_now(c); /* or the evictor did */
        uint64_t size;
        assert_int_equal(cache_stat(c, &d[0], &size), -ENOENT);
        assert_int_equal(cache_stat(c, &d[1], &size), -ENOENT);
        assert_int_equal(cache_stat(c, &d[2], &size), 0);
        /* ...and 2 goes too once its age has passed. */
        atomic_store(&clk.mono_offset_ms, 16000);
        (void) cache_evict_now(c);
        assert_int_equal(cache_stat(c, &d[2], &size), -ENOENT);
        cache_get_stats(c, &st);
        assert_int_equal(st.evicted_by[CACHE_EVICT_AGE], 3);
        cache_close(c);
        for (int i = 0; i < 3; i++)
                free(b[i]);
}

/* Retention by age passes pinned blobs over to the new end (so later batches
 * and passes do not walk them again), across several batches: pins are kept,
 * the others old enough go, and the order of use of those left is kept (a
 * size bound then takes the least recently used first, the pins passed over
 * counting as used at the pass). */
#define AGED_N 70
static void test_age_passes_pins_over(void **state) {
        struct fixture *f = *state;
        struct fake_clock clk = {};
        struct cache *c = open_fake_clock(f->root, &clk);
        struct digest d[AGED_N];
        unsigned char *b[AGED_N];
        for (int i = 0; i < AGED_N; i++) {
                b[i] = content(100, 200 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 100, &d[i]);
                if (i % 2 == 0)
                        assert_int_equal(cache_pin(c, &d[i], true), 0);
        }
        clock_pass(&clk, 5000);
        serve(c, &d[67]);
        serve(c, &d[69]);
        assert_int_equal(cache_set_max_age(c, 10000), 0);
        clock_pass(&clk, 11000);
        (void) cache_evict_now(c); /* or the evictor did */
        uint64_t size;
        for (int i = 0; i < AGED_N; i++)
                assert_int_equal(cache_stat(c, &d[i], &size), i % 2 == 0 || i == 67 || i == 69 ? 0 : -ENOENT);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.evicted_by[CACHE_EVICT_AGE], AGED_N / 2 - 2);

        /* Unpinned, 37 blobs (3700 bytes) over 3600: down to 3240, so 5 go:
         * 67, 69 (used at 5 s), then 0, 2, 4 (passed over at 11 s, in order). */
        for (int i = 0; i < AGED_N; i += 2)
                assert_int_equal(cache_pin(c, &d[i], false), 0);
        assert_int_equal(cache_set_limits(c, 3600, 0), 0);
        (void) cache_evict_now(c);
        for (int i = 0; i < AGED_N; i++) {
                bool gone = i == 67 || i == 69 || i == 0 || i == 2 || i == 4 || (i % 2 == 1);
                assert_int_equal(cache_stat(c, &d[i], &size), gone ? -ENOENT : 0);
        }
        cache_get_stats(c, &st);
        assert_int_equal(st.evicted_by[CACHE_EVICT_SIZE], 5);
        cache_close(c);
        for (int i = 0; i < AGED_N; i++)
                free(b[i]);
}

/* A blob whose file cannot be removed (here a directory in its place:
 * EISDIR, even for root) is passed over to the new end: tried once per age,
 * not on every pass, and the others old enough still go. */
static void test_age_unremovable_tried_once_per_age(void **state) {
        struct fixture *f = *state;
        struct fake_clock clk = {};
        struct cache *c = open_fake_clock(f->root, &clk);
        struct digest d[2];
        unsigned char *b[2];
        for (int i = 0; i < 2; i++) {
                b[i] = content(1000, 300 + (unsigned) i, DIGEST_SHA256, &d[i]);
                store(c, b[i], 1000, &d[i]);
        }
        char hex[129], path[512];
        digest_hex(&d[0], hex);
        snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", f->root, hex, hex);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkdir(path, 0700), 0);
        char inside[600];
        snprintf(inside, sizeof(inside), "%s/x", path);
        assert_int_equal(mkdir(inside, 0700), 0);
        assert_int_equal(cache_set_max_age(c, 10000), 0);
        clock_pass(&clk, 11000);
        (void) cache_evict_now(c);
        (void) cache_evict_now(c);
        (void) cache_evict_now(c);
        uint64_t size;
        assert_int_equal(cache_stat(c, &d[1], &size), -ENOENT);
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_int_equal(st.evicted_by[CACHE_EVICT_AGE], 1);
        assert_int_equal(st.evict_errors, 1);
        assert_int_equal(st.blobs, 1);
        /* A whole age later: tried again, once. */
        clock_pass(&clk, 22000);
        (void) cache_evict_now(c);
        (void) cache_evict_now(c);
        cache_get_stats(c, &st);
        assert_int_equal(st.evict_errors, 2);
        cache_close(c);
        assert_int_equal(rmdir(inside), 0);
        for (int i = 0; i < 2; i++)
                free(b[i]);
}

/* The eviction thread wakes by itself when the oldest blob comes of age
 * (real clock, a 1 s age). */
static void test_age_wakes_evictor(void **state) {
        struct fixture *f = *state;
        struct cache *c = open_ok(f->root);
        struct digest d;
        unsigned char *b = content(1000, 90, DIGEST_SHA256, &d);
        store(c, b, 1000, &d);
        assert_int_equal(cache_set_max_age(c, 1000), 0);
        struct cache_stats st;
        for (int i = 0; i < 400; i++) {
                cache_get_stats(c, &st);
                if (st.evictions)
                        break;
                usleep(10000);
        }
        assert_int_equal(st.evicted_by[CACHE_EVICT_AGE], 1);
        assert_int_equal(st.blobs, 0);
        cache_close(c);
        free(b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_layout_and_lock, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_commit_and_read, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_mismatch, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_size_and_holdback, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_verified_survives_store_failure, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_abort_and_timeout, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_single_flight, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_killed_mid_write, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_counts_ignore_foreign_files, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_eviction_lru_and_pins, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_eviction_for_free_space, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_tmp_counts_against_limit, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_restart_keeps_commit_order, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_verify_quarantines, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_disk_full, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_retention_by_age, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_restart_keeps_use_order, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_age_wakes_evictor, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_age_ignores_wall_clock_steps, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_age_passes_pins_over, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_age_unremovable_tried_once_per_age, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_remove_and_read, setup_dir, teardown),
                cmocka_unit_test_setup_teardown(test_foreach_calls_back, setup_dir, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
