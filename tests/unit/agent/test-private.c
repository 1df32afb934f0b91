/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/private.c: the private-content table, what a restart
 * reads back (so a restart opens no leak), a file that does not parse
 * being an error, never an empty table, a torn last line dropped, appends
 * and compaction, a deleted file that opens nothing (the sentinel), and
 * pruning what the cache lost while marks and stores go on (pins). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/private.h"
#include "common/fsutil.h"
#include "common/time.h"

static char dir[] = "/tmp/layerd-test-private-XXXXXX";

static int setup(void **state) {
        (void) state;
        return mkdtemp(dir) ? 0 : -1;
}

/* The table's file and its sentinel gone: a fresh cache directory. */
static void clean(void) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, PRIVATE_FILE);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%s", dir, PRIVATE_SENTINEL);
        unlink(path);
}

static int teardown(void **state) {
        (void) state;
        clean();
        return rmdir(dir);
}

static struct digest dg(char c) {
        char s[80];
        snprintf(s, sizeof(s), "sha256:%064d", 0);
        memset(s + 7, c, 64);
        struct digest d;
        assert_int_equal(digest_parse(s, &d), 0);
        return d;
}

static void check_marked(struct private_set *s) {
        struct digest a = dg('a'), b = dg('b'), c = dg('c');
        bool here = true;
        assert_true(private_repo(s, "r.example", "team/app"));
        assert_false(private_repo(s, "r.example", "pub/app"));
        assert_false(private_repo(s, "q.example", "team/app"));
        assert_true(private_digest(s, &a, "r.example", "team/app", &here));
        assert_true(here);
        assert_true(private_digest(s, &a, "r.example", "pub/app", &here));
        assert_false(here);
        assert_true(private_digest(s, &b, "r.example", "pub/app", &here)); /* confirmed there */
        assert_true(here);
        assert_false(private_digest(s, &c, "r.example", "team/app", &here));
        assert_false(here);
}

/* What a fresh open of the table in dir counts: what is on disk. */
static size_t count_on_disk(void) {
        struct private_set *s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        size_t n = private_count(s);
        private_free(s);
        return n;
}

static void test_mark_and_reload(void **state) {
        (void) state;
        struct private_set *s = NULL;
        unsigned line = 0;
        assert_int_equal(private_open(dir, &s, &line), 0);
        assert_int_equal(private_count(s), 0);
        struct digest ds[2] = { dg('a'), dg('b') };
        assert_int_equal(private_mark(s, "r.example", "team/app", ds, 2), 0);
        assert_int_equal(private_mark(s, "r.example", "team/app", ds, 2), 0); /* again: nothing new */
        assert_int_equal(private_confirm(s, "r.example", "pub/app", &ds[1]), 0);
        assert_int_equal(private_count(s), 4);
        check_marked(s);
        /* Invalid names are refused, not written. */
        assert_int_equal(private_mark(s, "r.example", "Bad Name", NULL, 0), -EINVAL);
        assert_int_equal(private_mark(s, "r\texample", "team/app", NULL, 0), -EINVAL);
        private_free(s);

        /* A restart reads back every entry. */
        s = NULL;
        assert_int_equal(private_open(dir, &s, &line), 0);
        assert_int_equal(private_count(s), 4);
        check_marked(s);
        private_free(s);
}

/* A write that failed is tried again by the next mark of the same entries:
 * the retry of a refused request must not pass for recorded (a restart would
 * then serve the private digest under any name). */
static void test_failed_write_retried(void **state) {
        (void) state;
        char path[256], inner[300];
        snprintf(path, sizeof(path), "%s/%s", dir, PRIVATE_FILE);
        snprintf(inner, sizeof(inner), "%s/x", path);
        clean();
        struct private_set *s = NULL;
        unsigned line = 0;
        assert_int_equal(private_open(dir, &s, &line), 0);
        /* The file's name taken by a directory that is not empty: rename(2) fails. */
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(mkdir(inner, 0700), 0);
        struct digest a = dg('a');
        assert_true(private_mark(s, "r.example", "team/app", &a, 1) < 0);
        assert_true(private_mark(s, "r.example", "team/app", &a, 1) < 0); /* still not on disk */
        assert_int_equal(rmdir(inner), 0);
        assert_int_equal(rmdir(path), 0);
        assert_int_equal(private_mark(s, "r.example", "team/app", &a, 1), 0); /* nothing new, written now */
        private_free(s);
        s = NULL;
        assert_int_equal(private_open(dir, &s, &line), 0);
        assert_true(private_repo(s, "r.example", "team/app"));
        assert_true(private_digest(s, &a, "r.example", "pub/app", NULL));
        private_free(s);
        clean();
}

/* A repository the origin asked credentials for, with nothing stored: noted in
 * memory, for a while, never on disk (anyone can make such notes). */
static void test_notes(void **state) {
        (void) state;
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, PRIVATE_FILE);
        clean();
        struct private_set *s = NULL;
        unsigned line = 0;
        assert_int_equal(private_open(dir, &s, &line), 0);
        uint64_t now = time_now_ms();
        private_note(s, "r.example", "team/app", now);
        assert_true(private_repo(s, "r.example", "team/app"));
        assert_false(private_repo(s, "r.example", "team/other"));
        assert_int_equal(private_count(s), 0);
        assert_int_equal(access(path, F_OK), -1); /* no write */
        /* Expired: the origin is asked again. */
        private_note(s, "r.example", "old/app", now - PRIVATE_NOTE_TTL_MS - 1);
        assert_false(private_repo(s, "r.example", "old/app"));
        /* More names than room: the table stays bounded, the newest is there. */
        char repo[64];
        for (unsigned i = 0; i < 2 * PRIVATE_NOTES_MAX; i++) {
                snprintf(repo, sizeof(repo), "flood/n%u", i);
                private_note(s, "r.example", repo, now);
        }
        assert_true(private_repo(s, "r.example", repo));
        private_free(s);
        /* A restart forgets notes; what was stored with a mark stays. */
        s = NULL;
        assert_int_equal(private_open(dir, &s, &line), 0);
        assert_false(private_repo(s, "r.example", "team/app"));
        private_free(s);
}

/* A file that does not parse: an error with the line, never an empty table. */
static void test_bad_file(void **state) {
        (void) state;
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, PRIVATE_FILE);
        static const char *const bad[] = {
                "r\tr.example\tteam/app\nx\tjunk\n",
                "r\tr.example\tteam/app\np\tsha256:abc\tr.example\tteam/app\n",
                "r\tr.example\tTeam App\n",
                /* A bad line before a good one: not a torn append, an error. */
                "r\tr.example\tteam/app\nr\tr.example\tteam/a\tpp\nr\tr.example\tteam/b\n",
                "r\tr.example\tteam/app\n\nr\tr.example\tteam/b\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(write_file_atomic(path, bad[i], strlen(bad[i]), 0600), 0);
                struct private_set *s = NULL;
                unsigned line = 0;
                assert_int_equal(private_open(dir, &s, &line), -EBADMSG);
                assert_null(s);
                assert_int_equal(line, i == 2 ? 1 : 2);
        }
        clean();
        /* Memory only: no file at all. */
        struct private_set *s = NULL;
        assert_int_equal(private_open(NULL, &s, NULL), 0);
        assert_int_equal(private_mark(s, "r", "a/b", NULL, 0), 0);
        assert_true(private_repo(s, "r", "a/b"));
        private_free(s);
}

/* A cache that holds the digests of the letters in cached, and cannot tell
 * of those in unknown (dg() digests). */
struct fake_cache {
        const char *cached, *unknown;
        unsigned asked;
};

static int fake_present(void *userdata, const struct digest *d) {
        struct fake_cache *c = userdata;
        char s[DIGEST_STRING_MAX];
        char letter = digest_to_string(d, s)[7];
        c->asked++;
        if (strchr(c->cached, letter))
                return 0;
        return strchr(c->unknown, letter) ? -EIO : -ENOENT;
}

/* Pruning drops only the pairs of digests the cache does not have; the
 * private repositories stay, a digest the cache has stays private under
 * every repository it was recorded for, the file is rewritten, and marking
 * a dropped digest again (what a refetch does before storing it) closes it
 * again. */
static void test_prune(void **state) {
        (void) state;
        struct private_set *s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        struct digest a = dg('a'), b = dg('b'), c = dg('c'), d = dg('d');
        struct digest app[] = { a, b, c, d }, other[] = { d };
        assert_int_equal(private_mark(s, "r.example", "team/app", app, 4), 0);
        assert_int_equal(private_mark(s, "r.example", "team/other", other, 1), 0);
        assert_int_equal(private_confirm(s, "r.example", "pub/app", &b), 0);
        assert_int_equal(private_count(s), 2 + 4 + 1 + 1);

        /* b is cached, c cannot be told: kept; a and d (both of its pairs) are dropped. */
        struct fake_cache fc = { .cached = "b", .unknown = "c" };
        size_t pruned = 99;
        assert_int_equal(private_prune(s, fake_present, &fc, &pruned), 0);
        assert_int_equal(pruned, 3);
        /* Once per pair, never for a repository; again for each digest to drop
         * (a and d), with marks held off. */
        assert_int_equal(fc.asked, 8);
        for (int pass = 0; pass < 2; pass++) {
                bool here = false;
                assert_int_equal(private_count(s), 2 + 3);
                assert_true(private_repo(s, "r.example", "team/app"));
                assert_true(private_repo(s, "r.example", "team/other"));
                assert_false(private_digest(s, &a, "r.example", "team/app", NULL));
                assert_false(private_digest(s, &d, "r.example", "team/other", NULL));
                assert_true(private_digest(s, &b, "r.example", "pub/app", &here));
                assert_true(here);
                assert_true(private_digest(s, &b, "r.example", "other/app", &here));
                assert_false(here);
                assert_true(private_digest(s, &c, "r.example", "team/app", &here));
                assert_true(here);
                /* The file says the same after a restart. */
                private_free(s);
                s = NULL;
                assert_int_equal(private_open(dir, &s, NULL), 0);
        }

        /* Nothing to drop: nothing changes. */
        fc = (struct fake_cache) { .cached = "bc", .unknown = "" };
        pruned = 99;
        assert_int_equal(private_prune(s, fake_present, &fc, &pruned), 0);
        assert_int_equal(pruned, 0);
        assert_int_equal(private_count(s), 5);

        /* A refetch of a marks it before it is stored: private again, not under pub/app. */
        assert_int_equal(private_mark(s, "r.example", "team/app", &a, 1), 0);
        bool here = true;
        assert_true(private_digest(s, &a, "r.example", "pub/app", &here));
        assert_false(here);
        private_free(s);

        /* Memory only: pruned, nothing written. */
        s = NULL;
        assert_int_equal(private_open(NULL, &s, NULL), 0);
        assert_int_equal(private_mark(s, "r.example", "team/app", &a, 1), 0);
        fc = (struct fake_cache) { .cached = "", .unknown = "" };
        assert_int_equal(private_prune(s, fake_present, &fc, &pruned), 0);
        assert_int_equal(pruned, 1);
        assert_false(private_digest(s, &a, "r.example", "pub/app", NULL));
        assert_true(private_repo(s, "r.example", "team/app"));
        private_free(s);

        clean();
}

#define THREADS 4
#define MARKS 50

struct worker {
        struct private_set *s;
        unsigned id;
};

static void *marker_main(void *arg) {
        struct worker *w = arg;
        char repo[32];
        snprintf(repo, sizeof(repo), "team/app%u", w->id);
        for (unsigned i = 0; i < MARKS; i++) {
                char ds[80];
                snprintf(ds, sizeof(ds), "sha256:%056x%08x", w->id, i);
                struct digest d;
                if (digest_parse(ds, &d) < 0 || private_mark(w->s, "r.example", repo, &d, 1) < 0)
                        return (void *) 1;
                bool here = false;
                /* What a mark returned for is visible to every lookup at once. */
                if (!private_digest(w->s, &d, "r.example", repo, &here) || !here ||
                    !private_repo(w->s, "r.example", repo))
                        return (void *) 1;
        }
        return NULL;
}

/* Marks from several threads at once, lookups among them: every one of them
 * is in the table and in the file read back (ThreadSanitizer runs this too). */
static void test_concurrent_marks(void **state) {
        (void) state;
        struct private_set *s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        pthread_t t[THREADS];
        struct worker w[THREADS];
        for (unsigned i = 0; i < THREADS; i++) {
                w[i] = (struct worker) { .s = s, .id = i };
                assert_int_equal(pthread_create(&t[i], NULL, marker_main, &w[i]), 0);
        }
        for (unsigned i = 0; i < THREADS; i++) {
                void *ret = NULL;
                assert_int_equal(pthread_join(t[i], &ret), 0);
                assert_null(ret);
        }
        assert_int_equal(private_count(s), THREADS * (MARKS + 1));
        private_free(s);
        assert_int_equal(count_on_disk(), THREADS * (MARKS + 1));
        clean();
}

static void file_path(char *buf, size_t size, const char *name) {
        snprintf(buf, size, "%s/%s", dir, name);
}

static struct stat stat_of(const char *name) {
        char path[256];
        struct stat st;
        file_path(path, sizeof(path), name);
        assert_int_equal(stat(path, &st), 0);
        return st;
}

/* A new entry is one append to the same file (its inode stays: no rewrite),
 * of exactly its line; an entry recorded already writes nothing. The file
 * reads back the same, also with lines written twice (what a retried append
 * or an older layerd may leave). */
static void test_append(void **state) {
        (void) state;
        clean();
        struct private_set *s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        struct digest a = dg('a'), b = dg('b');
        assert_int_equal(private_mark(s, "r.example", "team/app", &a, 1), 0); /* the first write: whole */
        struct stat st0 = stat_of(PRIVATE_FILE);
        assert_int_equal(private_mark(s, "r.example", "team/app", &b, 1), 0);
        struct stat st1 = stat_of(PRIVATE_FILE);
        assert_int_equal(st1.st_ino, st0.st_ino);
        char line[256], ds[DIGEST_STRING_MAX];
        int n = snprintf(line, sizeof(line), "p\t%s\tr.example\tteam/app\n", digest_to_string(&b, ds));
        assert_int_equal(st1.st_size, st0.st_size + n);
        assert_int_equal(private_mark(s, "r.example", "team/app", &b, 1), 0);
        assert_int_equal(stat_of(PRIVATE_FILE).st_size, st1.st_size);
        private_free(s);

        /* Duplicated lines load, as one entry each. */
        char path[256];
        file_path(path, sizeof(path), PRIVATE_FILE);
        FILE *f = fopen(path, "a");
        assert_non_null(f);
        fputs(line, f);
        fclose(f);
        assert_int_equal(count_on_disk(), 3);
        clean();
}

/* A crash during an append leaves a last line without its newline: dropped
 * (it named nothing stored yet), and the next write rewrites the file whole
 * rather than append after the torn bytes. */
static void test_torn_last_line(void **state) {
        (void) state;
        clean();
        char path[256], ds[DIGEST_STRING_MAX], text[1024];
        struct digest a = dg('a'), b = dg('b'), c = dg('c');
        file_path(path, sizeof(path), PRIVATE_FILE);
        int n = snprintf(text, sizeof(text), "r\tr.example\tteam/app\np\t%s\tr.example\tteam/app\np\t",
                         digest_to_string(&a, ds));
        n += snprintf(text + n, sizeof(text) - (size_t) n, "%s\tr.exa", digest_to_string(&b, ds));
        assert_int_equal(write_file_atomic(path, text, (size_t) n, 0600), 0);
        struct private_set *s = NULL;
        unsigned line = 0;
        assert_int_equal(private_open(dir, &s, &line), 0);
        assert_true(private_torn(s));
        assert_false(private_lost(s));
        assert_int_equal(private_count(s), 2);
        assert_true(private_digest(s, &a, "r.example", "pub/app", NULL));
        assert_false(private_digest(s, &b, "r.example", "pub/app", NULL));
        assert_int_equal(stat_of(PRIVATE_FILE).st_size, n); /* left as it is until the next write */
        assert_int_equal(private_mark(s, "r.example", "team/app", &c, 1), 0);
        private_free(s);
        s = NULL;
        assert_int_equal(private_open(dir, &s, &line), 0);
        assert_false(private_torn(s));
        assert_int_equal(private_count(s), 3);
        assert_true(private_digest(s, &c, "r.example", "pub/app", NULL));
        assert_false(private_digest(s, &b, "r.example", "pub/app", NULL));
        private_free(s);
        clean();
}

/* The file holding far more than the live entries (lines written many times
 * over) is rewritten whole, compacted, at the next mark. */
static void test_compaction(void **state) {
        (void) state;
        clean();
        char path[256];
        file_path(path, sizeof(path), PRIVATE_FILE);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        size_t live = 0;
        for (int copy = 0; copy < 3; copy++)
                for (unsigned i = 0; i < 1000; i++) {
                        int n = fprintf(f, "p\tsha256:%064x\tr.example\tteam/app\n", i);
                        if (copy == 0)
                                live += (size_t) n;
                }
        fclose(f);
        struct private_set *s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        assert_int_equal(private_count(s), 1000);
        ino_t before = stat_of(PRIVATE_FILE).st_ino;
        struct digest a = dg('a');
        assert_int_equal(private_mark(s, "r.example", "team/app", &a, 1), 0);
        struct stat st = stat_of(PRIVATE_FILE);
        assert_int_not_equal(st.st_ino, before);
        char line[256], ds[DIGEST_STRING_MAX];
        live += (size_t) snprintf(line, sizeof(line), "r\tr.example\tteam/app\np\t%s\tr.example\tteam/app\n",
                                  digest_to_string(&a, ds));
        assert_int_equal(st.st_size, live);
        /* Appends again after it. */
        struct digest b = dg('b');
        assert_int_equal(private_mark(s, "r.example", "team/app", &b, 1), 0);
        assert_int_equal(stat_of(PRIVATE_FILE).st_ino, st.st_ino);
        private_free(s);
        assert_int_equal(count_on_disk(), 1003);
        clean();
}

/* A deleted file opens nothing: its sentinel says it was there, and every
 * digest then in the cache is recorded private to an unknown repository
 * (served under a name only once the origin confirms it there). A cache
 * without either (fresh, or from before) starts empty; a file without its
 * sentinel (from before) gets one. */
static void test_sentinel(void **state) {
        (void) state;
        clean();
        char path[256], sentinel[256];
        file_path(path, sizeof(path), PRIVATE_FILE);
        file_path(sentinel, sizeof(sentinel), PRIVATE_SENTINEL);
        struct private_set *s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        assert_false(private_lost(s));
        assert_int_equal(access(sentinel, F_OK), -1); /* nothing written yet */
        struct digest a = dg('a'), b = dg('b');
        assert_int_equal(private_mark(s, "r.example", "team/app", &a, 1), 0);
        assert_int_equal(access(sentinel, F_OK), 0);
        private_free(s);

        assert_int_equal(unlink(path), 0);
        s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        assert_true(private_lost(s));
        assert_false(private_digest(s, &a, "r.example", "pub/app", NULL));
        struct digest cached[] = { a, b };
        assert_int_equal(private_adopt_lost(s, cached, 2), 0);
        bool here = true;
        assert_true(private_digest(s, &a, "r.example", "team/app", &here));
        assert_false(here);
        assert_true(private_digest(s, &b, "r.example", "pub/app", &here));
        assert_false(here);
        assert_false(private_repo(s, "r.example", "team/app")); /* that was in the file */
        assert_int_equal(private_confirm(s, "r.example", "pub/app", &b), 0);
        private_free(s);
        /* On disk: a restart is not lost any more, and still closed. */
        s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        assert_false(private_lost(s));
        assert_true(private_digest(s, &a, "r.example", "pub/app", &here));
        assert_false(here);
        assert_true(private_digest(s, &b, "r.example", "pub/app", &here));
        assert_true(here);
        private_free(s);

        /* Lost with an empty cache: the file is written all the same. */
        assert_int_equal(unlink(path), 0);
        s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        assert_true(private_lost(s));
        assert_int_equal(private_adopt_lost(s, NULL, 0), 0);
        assert_int_equal(access(path, F_OK), 0);
        private_free(s);

        /* A file from before the sentinel: given one at open. */
        assert_int_equal(unlink(sentinel), 0);
        s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        assert_false(private_lost(s));
        assert_int_equal(access(sentinel, F_OK), 0);
        private_free(s);
        clean();
}

/* The cache of a runtime prune: holds the letters in cached (changed by
 * what a concurrent store does), and, the first time it is asked for the
 * letter race, marks, stores and unpins it, as a download does between a
 * prune's first look and its second (marks are not held off then). */
struct racing_cache {
        struct private_set *s;
        char cached[8];
        char race;
        bool raced;
};

static int racing_present(void *userdata, const struct digest *d) {
        struct racing_cache *c = userdata;
        char ds[DIGEST_STRING_MAX];
        char letter = digest_to_string(d, ds)[7];
        bool there = strchr(c->cached, letter) != NULL;
        if (letter == c->race && !c->raced) {
                c->raced = true;
                assert_int_equal(private_pin(c->s, d), 0);
                assert_int_equal(private_mark(c->s, "r.example", "team/app", d, 1), 0);
                c->cached[strlen(c->cached)] = letter; /* committed */
                private_unpin(c->s, d);
        }
        return there ? 0 : -ENOENT;
}

/* While serving: an evicted digest is dropped, a pinned one (its store under
 * way) is kept, and so is one stored between the prune's two looks. */
static void test_runtime_prune(void **state) {
        (void) state;
        clean();
        struct private_set *s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        struct digest a = dg('a'), b = dg('b'), c = dg('c'), e = dg('e');
        struct digest all[] = { a, b, c, e };
        assert_int_equal(private_mark(s, "r.example", "team/app", all, 4), 0);
        assert_int_equal(private_pin(s, &b), 0); /* b's store is under way */
        assert_int_equal(private_pin(s, &b), 0); /* twice (two stores) */
        struct racing_cache rc = { .s = s, .cached = "e", .race = 'c' };
        size_t pruned = 0;
        assert_int_equal(private_prune(s, racing_present, &rc, &pruned), 0);
        assert_true(rc.raced);
        assert_int_equal(pruned, 1); /* a */
        assert_false(private_digest(s, &a, "r.example", "pub/app", NULL));
        assert_true(private_digest(s, &b, "r.example", "pub/app", NULL));
        assert_true(private_digest(s, &c, "r.example", "pub/app", NULL));
        assert_true(private_digest(s, &e, "r.example", "pub/app", NULL));
        /* One store of b ended: still pinned by the other. */
        private_unpin(s, &b);
        rc = (struct racing_cache) { .s = s, .cached = "ce" };
        assert_int_equal(private_prune(s, racing_present, &rc, &pruned), 0);
        assert_int_equal(pruned, 0);
        /* Both ended, b failed: dropped. */
        private_unpin(s, &b);
        assert_int_equal(private_prune(s, racing_present, &rc, &pruned), 0);
        assert_int_equal(pruned, 1);
        assert_false(private_digest(s, &b, "r.example", "pub/app", NULL));
        private_free(s);
        /* The file says so. */
        s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        assert_int_equal(private_count(s), 3);
        assert_false(private_digest(s, &a, "r.example", "pub/app", NULL));
        assert_true(private_digest(s, &c, "r.example", "pub/app", NULL));
        private_free(s);
        clean();
}

/* A prune told to stop (shutdown) drops nothing. */
static int cancelled_present(void *userdata, const struct digest *d) {
        (void) userdata, (void) d;
        return -ECANCELED;
}

static void test_prune_cancelled(void **state) {
        (void) state;
        clean();
        struct private_set *s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        struct digest a = dg('a');
        assert_int_equal(private_mark(s, "r.example", "team/app", &a, 1), 0);
        size_t pruned = 7;
        assert_int_equal(private_prune(s, cancelled_present, NULL, &pruned), -ECANCELED);
        assert_int_equal(pruned, 7);
        assert_true(private_digest(s, &a, "r.example", "pub/app", NULL));
        private_free(s);
        clean();
}

#define PRUNERS_ROUNDS 20

struct pruner {
        struct private_set *s;
        atomic_bool *stop;
};

static int absent(void *userdata, const struct digest *d) {
        (void) userdata, (void) d;
        return -ENOENT;
}

static void *pruner_main(void *arg) {
        struct pruner *w = arg;
        while (!atomic_load(w->stop))
                if (private_prune(w->s, absent, NULL, NULL) < 0)
                        return (void *) 1;
        return NULL;
}

/* Marks (each pinned, as a store's) while prunes run over and over, with
 * nothing in the cache: a pinned digest is never dropped while pinned
 * (ThreadSanitizer runs this too). */
static void *pinned_marker_main(void *arg) {
        struct worker *w = arg;
        char repo[32];
        snprintf(repo, sizeof(repo), "team/app%u", w->id);
        for (unsigned i = 0; i < MARKS; i++) {
                char ds[80];
                snprintf(ds, sizeof(ds), "sha256:%056x%08x", w->id, i);
                struct digest d;
                if (digest_parse(ds, &d) < 0 || private_pin(w->s, &d) < 0)
                        return (void *) 1;
                bool ok = private_mark(w->s, "r.example", repo, &d, 1) == 0;
                bool here = false;
                ok = ok && private_digest(w->s, &d, "r.example", repo, &here) && here;
                private_unpin(w->s, &d);
                if (!ok)
                        return (void *) 1;
        }
        return NULL;
}

static void test_prune_while_marking(void **state) {
        (void) state;
        clean();
        struct private_set *s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        atomic_bool stop = false;
        struct pruner pw = { .s = s, .stop = &stop };
        pthread_t pt, t[THREADS];
        struct worker w[THREADS];
        assert_int_equal(pthread_create(&pt, NULL, pruner_main, &pw), 0);
        for (unsigned i = 0; i < THREADS; i++) {
                w[i] = (struct worker) { .s = s, .id = i };
                assert_int_equal(pthread_create(&t[i], NULL, pinned_marker_main, &w[i]), 0);
        }
        for (unsigned i = 0; i < THREADS; i++) {
                void *ret = NULL;
                assert_int_equal(pthread_join(t[i], &ret), 0);
                assert_null(ret);
        }
        atomic_store(&stop, true);
        void *ret = NULL;
        assert_int_equal(pthread_join(pt, &ret), 0);
        assert_null(ret);
        /* Nothing pinned, nothing cached: all digests go, the repositories stay. */
        assert_int_equal(private_prune(s, absent, NULL, NULL), 0);
        assert_int_equal(private_count(s), THREADS);
        private_free(s);
        s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        assert_int_equal(private_count(s), THREADS);
        private_free(s);
        clean();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mark_and_reload),
                cmocka_unit_test(test_bad_file),
                cmocka_unit_test(test_notes),
                cmocka_unit_test(test_failed_write_retried),
                cmocka_unit_test(test_prune),
                cmocka_unit_test(test_concurrent_marks),
                cmocka_unit_test(test_append),
                cmocka_unit_test(test_torn_last_line),
                cmocka_unit_test(test_compaction),
                cmocka_unit_test(test_sentinel),
                cmocka_unit_test(test_runtime_prune),
                cmocka_unit_test(test_prune_cancelled),
                cmocka_unit_test(test_prune_while_marking),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
