/* SPDX-License-Identifier: Apache-2.0 */
/* The tag index: round trips, replacement, names that could leave the cache
 * refused before any path is built, damaged records never half believed, and
 * the memory in front of the files: answers without a file read, forgets a
 * tag whose write failed, direct-mapped slots, threads racing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "tests/unit/cache/fixture.h"

static struct cache_tag sample(const char *text, int64_t at) {
        struct cache_tag t = { .size = 1234, .fetched_at = at };
        assert_int_equal(digest_buffer(DIGEST_SHA256, text, strlen(text), &t.digest), 0);
        snprintf(t.media_type, sizeof(t.media_type), "application/vnd.oci.image.index.v1+json");
        return t;
}

static void test_round_trip(void **state) {
        struct fixture *f = *state;
        struct cache_tag t = sample("a", 1700000000), got;
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "library/nginx", "1.27", &got), -ENOENT);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/nginx", "1.27", &t), 0);
        memset(&got, 0, sizeof(got));
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "library/nginx", "1.27", &got), 0);
        assert_true(digest_equal(&got.digest, &t.digest));
        assert_string_equal(got.media_type, t.media_type);
        assert_int_equal(got.size, 1234);
        assert_int_equal(got.fetched_at, 1700000000);

        /* Replaced whole; other tags, repositories and registries are separate. */
        struct cache_tag u = sample("b", -5);
        u.size = 0;
        snprintf(u.media_type, sizeof(u.media_type), "application/vnd.docker.distribution.manifest.v2+json");
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/nginx", "1.27", &u), 0);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "library/nginx", "1.27", &got), 0);
        assert_true(digest_equal(&got.digest, &u.digest));
        assert_int_equal(got.fetched_at, -5);
        assert_int_equal(got.size, 0);
        assert_int_equal(cache_tag_put(f->cache, "registry.example.com:5000", "team/app", "v1", &t), 0);
        assert_int_equal(cache_tag_get(f->cache, "registry.example.com:5000", "team/app", "latest", &got), -ENOENT);
        assert_int_equal(cache_tag_get(f->cache, "quay.io", "team/app", "v1", &got), -ENOENT);
        assert_int_equal(cache_tag_get(f->cache, "registry.example.com:5000", "team/app", "v1", &got), 0);

        /* A tag and a longer repository name never meet on disk. */
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/app", "v1", &t), 0);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/app/v1", "latest", &u), 0);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/x/sub", "latest", &t), 0);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/x", "sub", &u), 0);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "library/app", "v1", &got), 0);
        assert_true(digest_equal(&got.digest, &t.digest));
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "library/x", "sub", &got), 0);
        assert_true(digest_equal(&got.digest, &u.digest));

        /* Registry names are compared in canonical form. */
        assert_int_equal(cache_tag_get(f->cache, "Registry.Example.COM:05000", "team/app", "v1", &got), 0);

        /* sha512 digests too. */
        struct cache_tag w = t;
        assert_int_equal(digest_buffer(DIGEST_SHA512, "c", 1, &w.digest), 0);
        assert_int_equal(cache_tag_put(f->cache, "[fd00::1]:5000", "x", "y", &w), 0);
        assert_int_equal(cache_tag_get(f->cache, "[fd00::1]:5000", "x", "y", &got), 0);
        assert_true(digest_equal(&got.digest, &w.digest));
}

static void test_names_refused(void **state) {
        struct fixture *f = *state;
        struct cache_tag t = sample("a", 1), got;
        static const char *const bad[][3] = {
                { "../etc", "a", "b" },          { "docker.io/x", "a", "b" },  { "", "a", "b" },
                { "docker.io", "../../etc", "b" }, { "docker.io", "a/../b", "b" }, { "docker.io", "/a", "b" },
                { "docker.io", "A", "b" },       { "docker.io", "a", "../x" }, { "docker.io", "a", ".hidden" },
                { "docker.io", "a", "a/b" },     { "docker.io", "a", "" },     { "docker.io", "a", "-x" },
                { "..", "a", "b" },              { "docker.io", ".", "b" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(cache_tag_put(f->cache, bad[i][0], bad[i][1], bad[i][2], &t), -EINVAL);
                assert_int_equal(cache_tag_get(f->cache, bad[i][0], bad[i][1], bad[i][2], &got), -EINVAL);
        }
        static const char *const bad_types[] = { "", "text", "a/b\nc", "a/b c", "a/b;charset=x" };
        for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
                snprintf(t.media_type, sizeof(t.media_type), "%s", bad_types[i]);
                assert_int_equal(cache_tag_put(f->cache, "docker.io", "a", "b", &t), -EINVAL);
        }
}

static void write_raw(struct fixture *f, const char *text) {
        char path[256];
        snprintf(path, sizeof(path), "%s/tags/docker.io/a/_tags/b", f->root);
        FILE *x = fopen(path, "we");
        assert_non_null(x);
        fputs(text, x);
        fclose(x);
}

static void test_damaged_records(void **state) {
        struct fixture *f = *state;
        struct cache_tag t = sample("a", 1), got;
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "a", "b", &t), 0);
        char digest[DIGEST_STRING_MAX], good[512];
        digest_to_string(&t.digest, digest);
        snprintf(good, sizeof(good), "%s\napplication/json\n5\n7\n", digest);
        write_raw(f, good);
        reopen(f);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", "b", &got), 0);
        assert_int_equal(got.size, 5);

        const char *damaged[] = {
                "",                                     /* empty */
                "sha256:abc\napplication/json\n5\n7\n", /* bad digest */
                NULL,                                   /* filled below: truncated */
                NULL,                                   /* trailing garbage */
                NULL,                                   /* bad size */
        };
        char trunc[512], trailing[600], badsize[512];
        snprintf(trunc, sizeof(trunc), "%s\napplication/json\n5\n", digest);
        snprintf(trailing, sizeof(trailing), "%s\napplication/json\n5\n7\nextra", digest);
        snprintf(badsize, sizeof(badsize), "%s\napplication/json\n-5\n7\n", digest);
        damaged[2] = trunc;
        damaged[3] = trailing;
        damaged[4] = badsize;
        for (size_t i = 0; i < 5; i++) {
                write_raw(f, damaged[i]);
                reopen(f);
                memset(&got, 0x5a, sizeof(got));
                struct cache_tag before = got;
                assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", "b", &got), -EBADMSG);
                assert_memory_equal(&got, &before, sizeof(got));
        }
        /* Too large to be a record. */
        char big[1024];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        write_raw(f, big);
        reopen(f);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", "b", &got), -EBADMSG);
}

static void tag_file(struct fixture *f, const char *tag, char path[static 256]) {
        snprintf(path, 256, "%s/tags/docker.io/a/_tags/%s", f->root, tag);
}

/* A get after a put needs no file; a fresh cache reads it again. */
static void test_memory_answers(void **state) {
        struct fixture *f = *state;
        struct cache_tag t = sample("a", 1), got;
        char path[256];
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "a", "b", &t), 0);
        tag_file(f, "b", path);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(cache_tag_get(f->cache, "Docker.IO", "a", "b", &got), 0);
        assert_true(digest_equal(&got.digest, &t.digest));
        assert_int_equal(got.size, t.size);
        assert_string_equal(got.media_type, t.media_type);
        /* Names are checked before the memory is asked. */
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", "../b", &got), -EINVAL);
        reopen(f);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", "b", &got), -ENOENT);

        /* A record read from the file is remembered too. */
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "a", "c", &t), 0);
        reopen(f);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", "c", &got), 0);
        tag_file(f, "c", path);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", "c", &got), 0);
        assert_true(digest_equal(&got.digest, &t.digest));
}

/* A put whose file cannot be written forgets the tag: the next get says what the disk holds. */
static void test_failed_put_forgets(void **state) {
        struct fixture *f = *state;
        struct cache_tag t = sample("a", 1), u = sample("b", 2), got;
        char digest[DIGEST_STRING_MAX], good[512];
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "a", "b", &t), 0);
        snprintf(good, sizeof(good), "%s\napplication/json\n5\n7\n", digest_to_string(&t.digest, digest));
        write_raw(f, good); /* behind the cache's back: not seen while it remembers */
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", "b", &got), 0);
        assert_int_equal(got.size, 1234);

        /* Root ignores permissions; a file-size limit of one byte fails the write. */
        struct rlimit old, tiny = { .rlim_cur = 1 };
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        tiny.rlim_max = old.rlim_max;
        void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
        int r = cache_tag_put(f->cache, "docker.io", "a", "b", &u);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, old_handler);
        assert_int_equal(r, -EFBIG);

        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", "b", &got), 0);
        assert_int_equal(got.size, 5);
        assert_int_equal(got.fetched_at, 7);
}

static unsigned fnv1a_slot(const char *key) {
        uint32_t h = 2166136261u;
        for (const char *p = key; *p; p++)
                h = (h ^ (unsigned char) *p) * 16777619u;
        return h % 256;
}

/* Two tags whose names share a slot: the later one replaces the earlier in memory. */
static void test_collision_replaces(void **state) {
        struct fixture *f = *state;
        char a[16] = "t0", b[16] = "", key[64];
        snprintf(key, sizeof(key), "docker.io\na\n%s", a);
        unsigned slot = fnv1a_slot(key);
        for (int i = 1; !b[0]; i++) {
                snprintf(key, sizeof(key), "docker.io\na\nt%d", i);
                if (fnv1a_slot(key) == slot)
                        snprintf(b, sizeof(b), "t%d", i);
        }
        struct cache_tag t = sample("a", 1), u = sample("b", 2), got;
        char path[256];
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "a", a, &t), 0);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "a", b, &u), 0);
        tag_file(f, a, path);
        assert_int_equal(unlink(path), 0);
        tag_file(f, b, path);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", a, &got), -ENOENT);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "a", b, &got), 0);
        assert_true(digest_equal(&got.digest, &u.digest));
}

#define RACE_THREADS 8
#define RACE_ROUNDS 300
#define RACE_TAGS 4

struct racer {
        struct cache *cache;
        int id;
};

static void *race(void *userdata) {
        struct racer *x = userdata;
        for (int i = 0; i < RACE_ROUNDS; i++) {
                char tag[16];
                snprintf(tag, sizeof(tag), "v%d", (x->id + i) % RACE_TAGS);
                if (i % 3 == 0) {
                        struct cache_tag t = { .size = (uint64_t) x->id, .fetched_at = i };
                        snprintf(t.media_type, sizeof(t.media_type), "application/json");
                        assert_int_equal(digest_buffer(DIGEST_SHA256, tag, strlen(tag), &t.digest), 0);
                        assert_int_equal(cache_tag_put(x->cache, "docker.io", "race", tag, &t), 0);
                } else {
                        struct cache_tag got;
                        int r = cache_tag_get(x->cache, "docker.io", "race", tag, &got);
                        assert_true(r == 0 || r == -ENOENT);
                }
        }
        return NULL;
}

/* Threads putting and getting the same few tags: afterwards the memory says what the files say. */
static void test_threads(void **state) {
        struct fixture *f = *state;
        pthread_t threads[RACE_THREADS];
        struct racer racers[RACE_THREADS];
        for (int i = 0; i < RACE_THREADS; i++) {
                racers[i] = (struct racer) { .cache = f->cache, .id = i };
                assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
        }
        for (int i = 0; i < RACE_THREADS; i++)
                assert_int_equal(pthread_join(threads[i], NULL), 0);
        struct cache_tag remembered[RACE_TAGS], stored;
        for (int i = 0; i < RACE_TAGS; i++) {
                char tag[16];
                snprintf(tag, sizeof(tag), "v%d", i);
                assert_int_equal(cache_tag_get(f->cache, "docker.io", "race", tag, &remembered[i]), 0);
        }
        reopen(f);
        for (int i = 0; i < RACE_TAGS; i++) {
                char tag[16];
                snprintf(tag, sizeof(tag), "v%d", i);
                assert_int_equal(cache_tag_get(f->cache, "docker.io", "race", tag, &stored), 0);
                assert_int_equal(stored.size, remembered[i].size);
                assert_int_equal(stored.fetched_at, remembered[i].fetched_at);
        }
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The tags a repository has on disk: its own only (not a longer name's), no temporary files. */
static void test_list(void **state) {
        struct fixture *f = *state;
        struct cache_tag t = sample("a", 1);
        char **tags = NULL;
        size_t n = 0;
        assert_int_equal(cache_tag_list(f->cache, "docker.io", "library/app", 10, &tags, &n), -ENOENT);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/app", "v2", &t), 0);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/app", "v1", &t), 0);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/app", "v10", &t), 0);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/app/sub", "latest", &t), 0);
        char junk[256];
        snprintf(junk, sizeof(junk), "%s/tags/docker.io/library/app/_tags/.v3.tmp", f->root);
        FILE *j = fopen(junk, "w");
        assert_non_null(j);
        fclose(j);
        assert_int_equal(cache_tag_list(f->cache, "Docker.IO", "library/app", 10, &tags, &n), 0);
        assert_int_equal(n, 3);
        qsort(tags, n, sizeof(char *), cmp_str);
        assert_string_equal(tags[0], "v1");
        assert_string_equal(tags[1], "v10");
        assert_string_equal(tags[2], "v2");
        for (size_t i = 0; i < n; i++)
                free(tags[i]);
        free(tags);
        assert_int_equal(cache_tag_list(f->cache, "docker.io", "library/app", 2, &tags, &n), 0);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++)
                free(tags[i]);
        free(tags);
        assert_int_equal(cache_tag_list(f->cache, "docker.io", "../etc", 2, &tags, &n), -EINVAL);
}

/* Referrers records: beside the tags, never among them; the tag schema's
 * "sha256-<hex>" tag and the referrers record of that digest are separate. */
static void test_referrers(void **state) {
        struct fixture *f = *state;
        struct cache_tag t = sample("index", 1700000000), u = sample("tag", 5), got;
        struct digest subject, other, long_subject;
        assert_int_equal(digest_buffer(DIGEST_SHA256, "subject", 7, &subject), 0);
        assert_int_equal(digest_buffer(DIGEST_SHA256, "other", 5, &other), 0);
        assert_int_equal(digest_buffer(DIGEST_SHA512, "subject", 7, &long_subject), 0);
        assert_int_equal(cache_referrers_get(f->cache, "ghcr.io", "org/app", &subject, &got), -ENOENT);
        assert_int_equal(cache_referrers_put(f->cache, "ghcr.io", "org/app", &subject, &t), 0);
        assert_int_equal(cache_referrers_get(f->cache, "GHCR.io", "org/app", &subject, &got), 0);
        assert_true(digest_equal(&got.digest, &t.digest));
        assert_int_equal(got.fetched_at, 1700000000);
        assert_int_equal(cache_referrers_get(f->cache, "ghcr.io", "org/app", &other, &got), -ENOENT);
        assert_int_equal(cache_referrers_get(f->cache, "ghcr.io", "org/other", &subject, &got), -ENOENT);

        /* The tag schema's tag of the same digest is a tag, and another record. */
        char ds[DIGEST_STRING_MAX], tag[DIGEST_STRING_MAX];
        snprintf(tag, sizeof(tag), "sha256-%s", digest_to_string(&subject, ds) + 7);
        assert_int_equal(cache_tag_get(f->cache, "ghcr.io", "org/app", tag, &got), -ENOENT);
        assert_int_equal(cache_tag_put(f->cache, "ghcr.io", "org/app", tag, &u), 0);
        assert_int_equal(cache_referrers_get(f->cache, "ghcr.io", "org/app", &subject, &got), 0);
        assert_true(digest_equal(&got.digest, &t.digest));
        assert_int_equal(cache_tag_get(f->cache, "ghcr.io", "org/app", tag, &got), 0);
        assert_true(digest_equal(&got.digest, &u.digest));
        char **tags = NULL;
        size_t n = 0;
        assert_int_equal(cache_tag_list(f->cache, "ghcr.io", "org/app", 10, &tags, &n), 0);
        assert_int_equal(n, 1); /* the tag only */
        assert_string_equal(tags[0], tag);
        free(tags[0]);
        free(tags);

        /* A sha512 subject (longer than a tag may be) has its record too; from disk as well. */
        assert_int_equal(cache_referrers_put(f->cache, "ghcr.io", "org/app", &long_subject, &u), 0);
        reopen(f);
        assert_int_equal(cache_referrers_get(f->cache, "ghcr.io", "org/app", &long_subject, &got), 0);
        assert_true(digest_equal(&got.digest, &u.digest));
        assert_int_equal(cache_referrers_get(f->cache, "ghcr.io", "org/app", &subject, &got), 0);
        assert_true(digest_equal(&got.digest, &t.digest));
        char path[512];
        snprintf(path, sizeof(path), "%s/tags/ghcr.io/org/app/_referrers/sha256-%s", f->root, digest_to_string(&subject, ds) + 7);
        assert_int_equal(access(path, F_OK), 0); /* where docs/agent.md says */
        /* Names are checked as for tags. */
        assert_int_equal(cache_referrers_put(f->cache, "ghcr.io", "../etc", &subject, &t), -EINVAL);
        assert_int_equal(cache_referrers_get(f->cache, "gh/cr.io", "org/app", &subject, &got), -EINVAL);
}

struct seen {
        char names[8][160];
        size_t n;
};

static int on_tag(const char *registry, const char *repository, const char *tag, const struct cache_tag *t,
                  void *userdata) {
        struct seen *s = userdata;
        assert_true(s->n < 8);
        assert_int_equal(t->size, 1234);
        snprintf(s->names[s->n++], sizeof(s->names[0]), "%s %s %s", registry, repository, tag);
        return strcmp(tag, "stop") == 0 ? 7 : 0;
}

static int by_name(const void *a, const void *b) {
        return strcmp(a, b);
}

/* Every record walked (deep repositories, ports), none of another kind; one removed. */
static void test_walk_and_remove(void **state) {
        struct fixture *f = *state;
        struct seen s = {};
        assert_int_equal(cache_foreach_tag(f->cache, on_tag, &s), 0); /* no tags/ yet */
        assert_int_equal(s.n, 0);
        struct cache_tag t = sample("a", 1);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/nginx", "1.27", &t), 0);
        assert_int_equal(cache_tag_put(f->cache, "docker.io", "library/nginx", "latest", &t), 0);
        assert_int_equal(cache_tag_put(f->cache, "Registry.Example.com:5000", "a/b/c/d", "v1", &t), 0);
        assert_int_equal(cache_tag_put(f->cache, "quay.io", "x", "v2", &t), 0);
        struct digest subject;
        assert_int_equal(digest_buffer(DIGEST_SHA256, "s", 1, &subject), 0);
        assert_int_equal(cache_referrers_put(f->cache, "quay.io", "x", &subject, &t), 0);
        assert_int_equal(cache_foreach_tag(f->cache, on_tag, &s), 0);
        assert_int_equal(s.n, 4);
        qsort(s.names, s.n, sizeof(s.names[0]), by_name);
        assert_string_equal(s.names[0], "docker.io library/nginx 1.27");
        assert_string_equal(s.names[1], "docker.io library/nginx latest");
        assert_string_equal(s.names[2], "quay.io x v2");
        assert_string_equal(s.names[3], "registry.example.com:5000 a/b/c/d v1");

        /* Removed: from the file and from memory; a second time, -ENOENT. */
        struct cache_tag got;
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "library/nginx", "latest", &got), 0);
        assert_int_equal(cache_tag_remove(f->cache, "docker.io", "library/nginx", "latest"), 0);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "library/nginx", "latest", &got), -ENOENT);
        assert_int_equal(cache_tag_remove(f->cache, "docker.io", "library/nginx", "latest"), -ENOENT);
        assert_int_equal(cache_tag_remove(f->cache, "docker.io", "../x", "latest"), -EINVAL);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "library/nginx", "1.27", &got), 0);
        reopen(f);
        assert_int_equal(cache_tag_get(f->cache, "docker.io", "library/nginx", "latest", &got), -ENOENT);

        /* fn's non-zero answer stops the walk and is returned. */
        assert_int_equal(cache_tag_put(f->cache, "quay.io", "x", "stop", &t), 0);
        s.n = 0;
        assert_int_equal(cache_foreach_tag(f->cache, on_tag, &s), 7);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_names_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_damaged_records, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list, setup, teardown),
                cmocka_unit_test_setup_teardown(test_referrers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_memory_answers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_put_forgets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_collision_replaces, setup, teardown),
                cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_walk_and_remove, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
