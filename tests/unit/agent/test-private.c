/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/private.c: the private-content table, what a restart
 * reads back (so a restart opens no leak), a file that does not parse
 * being an error, never an empty table, and pruning what the cache lost. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
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

static int teardown(void **state) {
        (void) state;
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, PRIVATE_FILE);
        unlink(path);
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
        unlink(path);
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
        unlink(path);
}

/* A repository the origin asked credentials for, with nothing stored: noted in
 * memory, for a while, never on disk (anyone can make such notes). */
static void test_notes(void **state) {
        (void) state;
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, PRIVATE_FILE);
        unlink(path);
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
                "r\tr.example\tteam/app", /* cut short */
                "r\tr.example\tTeam App\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(write_file_atomic(path, bad[i], strlen(bad[i]), 0600), 0);
                struct private_set *s = NULL;
                unsigned line = 0;
                assert_int_equal(private_open(dir, &s, &line), -EBADMSG);
                assert_null(s);
                assert_int_equal(line, i == 2 || i == 3 ? 1 : 2);
        }
        unlink(path);
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
        assert_int_equal(fc.asked, 6); /* once per pair, never for a repository */
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

        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, PRIVATE_FILE);
        unlink(path);
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
        s = NULL;
        assert_int_equal(private_open(dir, &s, NULL), 0);
        assert_int_equal(private_count(s), THREADS * (MARKS + 1));
        private_free(s);
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, PRIVATE_FILE);
        unlink(path);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mark_and_reload),
                cmocka_unit_test(test_bad_file),
                cmocka_unit_test(test_notes),
                cmocka_unit_test(test_failed_write_retried),
                cmocka_unit_test(test_prune),
                cmocka_unit_test(test_concurrent_marks),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
