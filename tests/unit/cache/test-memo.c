/* SPDX-License-Identifier: Apache-2.0 */
/* The media types the cache remembers for manifests: found after being
 * remembered, forgotten by a colliding digest, too long ones never kept,
 * threads racing on the same slots. (The tag memory is tested in test-tags.c.) */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "tests/unit/cache/fixture.h"

static struct digest digest_of(const char *text) {
        struct digest d;
        assert_int_equal(digest_buffer(DIGEST_SHA256, text, strlen(text), &d), 0);
        return d;
}

static void test_remember(void **state) {
        struct fixture *f = *state;
        struct digest d = digest_of("a");
        char buf[CACHE_MEDIA_TYPE_MAX];
        assert_int_equal(cache_media_type_get(f->cache, &d, buf, sizeof(buf)), -ENOENT);
        cache_media_type_remember(f->cache, &d, "application/vnd.oci.image.manifest.v1+json");
        assert_int_equal(cache_media_type_get(f->cache, &d, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "application/vnd.oci.image.manifest.v1+json");

        /* Replaced by a later answer for the same digest. */
        cache_media_type_remember(f->cache, &d, "application/vnd.oci.image.index.v1+json");
        assert_int_equal(cache_media_type_get(f->cache, &d, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "application/vnd.oci.image.index.v1+json");

        /* A buffer too small is refused, not truncated into. */
        char small[8] = "xxxxxxx";
        assert_int_equal(cache_media_type_get(f->cache, &d, small, sizeof(small)), -ENOBUFS);
        assert_string_equal(small, "xxxxxxx");

        /* The same bytes under another algorithm are another digest. */
        struct digest other = d;
        other.algorithm = DIGEST_SHA512;
        assert_int_equal(cache_media_type_get(f->cache, &other, buf, sizeof(buf)), -ENOENT);

        /* Memory only: a fresh cache knows nothing. */
        reopen(f);
        assert_int_equal(cache_media_type_get(f->cache, &d, buf, sizeof(buf)), -ENOENT);
}

static void test_too_long_not_kept(void **state) {
        struct fixture *f = *state;
        struct digest d = digest_of("a");
        char buf[CACHE_MEDIA_TYPE_MAX + 8];
        char *longest = unit_repeat('x', CACHE_MEDIA_TYPE_MAX - 1), *too_long = unit_repeat('y', CACHE_MEDIA_TYPE_MAX);
        cache_media_type_remember(f->cache, &d, longest);
        assert_int_equal(cache_media_type_get(f->cache, &d, buf, sizeof(buf)), 0);
        assert_string_equal(buf, longest);
        cache_media_type_remember(f->cache, &d, too_long);
        assert_int_equal(cache_media_type_get(f->cache, &d, buf, sizeof(buf)), 0);
        assert_string_equal(buf, longest); /* the earlier one stays */
        free(longest);
        free(too_long);
}

/* 256 slots by the digest's first byte (digests are uniform): one that shares it replaces. */
static void test_collision_replaces(void **state) {
        struct fixture *f = *state;
        struct digest a = digest_of("a"), b = a;
        char buf[CACHE_MEDIA_TYPE_MAX];
        b.bytes[5] ^= 1;
        cache_media_type_remember(f->cache, &a, "application/a");
        cache_media_type_remember(f->cache, &b, "application/b");
        assert_int_equal(cache_media_type_get(f->cache, &a, buf, sizeof(buf)), -ENOENT);
        assert_int_equal(cache_media_type_get(f->cache, &b, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "application/b");
        /* Another slot is left alone. */
        struct digest c = a;
        c.bytes[0] ^= 1;
        cache_media_type_remember(f->cache, &c, "application/c");
        assert_int_equal(cache_media_type_get(f->cache, &b, buf, sizeof(buf)), 0);
}

#define RACE_THREADS 8
#define RACE_ROUNDS 2000

static void *race(void *userdata) {
        struct cache *c = userdata;
        static const char *const types[] = { "application/a", "application/bb", "application/ccc" };
        for (int i = 0; i < RACE_ROUNDS; i++) {
                struct digest d = {};
                d.bytes[0] = (unsigned char) (i % 4);
                d.bytes[1] = (unsigned char) (i % 3);
                char buf[CACHE_MEDIA_TYPE_MAX];
                if (i % 2)
                        cache_media_type_remember(c, &d, types[i % 3]);
                else if (cache_media_type_get(c, &d, buf, sizeof(buf)) == 0)
                        /* A digest is only ever given one type here: never another's, never torn. */
                        assert_string_equal(buf, types[i % 3]);
        }
        return NULL;
}

static void test_threads(void **state) {
        struct fixture *f = *state;
        pthread_t threads[RACE_THREADS];
        for (int i = 0; i < RACE_THREADS; i++)
                assert_int_equal(pthread_create(&threads[i], NULL, race, f->cache), 0);
        for (int i = 0; i < RACE_THREADS; i++)
                assert_int_equal(pthread_join(threads[i], NULL), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_remember, setup, teardown),
                cmocka_unit_test_setup_teardown(test_too_long_not_kept, setup, teardown),
                cmocka_unit_test_setup_teardown(test_collision_replaces, setup, teardown),
                cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
