/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/reqmetrics.c: latencies land in the bucket whose
 * bound is the first not below them, the text's buckets are cumulative and
 * end in +Inf == _count, outcomes are mapped as the log line's cache= says,
 * and registries are counted apart (past the table's size together), also by
 * threads racing to add the same registry: no count is lost, no registry is
 * listed twice. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/reqmetrics.h"

/* The value of the sample line that begins with prefix (labels included), or -1. */
static double sample(const char *text, const char *prefix) {
        size_t len = strlen(prefix);
        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
                if (strncmp(l, prefix, len) == 0 && l[len] == ' ')
                        return strtod(l + len + 1, NULL);
        return -1;
}

static char *text_of(struct reqmetrics *m) {
        char *data = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&data, &len);
        assert_non_null(f);
        reqmetrics_write(m, f);
        assert_int_equal(fclose(f), 0);
        return data;
}

static void test_buckets(void **state) {
        (void) state;
        struct reqmetrics *m = malloc(sizeof(*m));
        assert_non_null(m);
        reqmetrics_init(m);
        reqmetrics_observe(m, REQMETRICS_BLOB, REQMETRICS_HIT, 200000);      /* 0.2 ms */
        reqmetrics_observe(m, REQMETRICS_BLOB, REQMETRICS_HIT, 1000000);     /* 1 ms: le="0.001" */
        reqmetrics_observe(m, REQMETRICS_BLOB, REQMETRICS_HIT, 1000001);     /* just above */
        reqmetrics_observe(m, REQMETRICS_BLOB, REQMETRICS_HIT, 40000000000); /* 40 s: +Inf only */
        reqmetrics_observe(m, REQMETRICS_MANIFEST, REQMETRICS_MISS, 300000000);
        char *t = text_of(m);
        const char *b = "layerd_request_duration_seconds_bucket{route=\"blob\",cache=\"hit\",le=";
        char key[160];
        snprintf(key, sizeof(key), "%s\"0.001\"}", b);
        assert_true(sample(t, key) == 2);
        snprintf(key, sizeof(key), "%s\"0.0025\"}", b);
        assert_true(sample(t, key) == 3);
        snprintf(key, sizeof(key), "%s\"30\"}", b);
        assert_true(sample(t, key) == 3);
        snprintf(key, sizeof(key), "%s\"+Inf\"}", b);
        assert_true(sample(t, key) == 4);
        assert_true(sample(t, "layerd_request_duration_seconds_count{route=\"blob\",cache=\"hit\"}") == 4);
        assert_true(sample(t, "layerd_request_duration_seconds_sum{route=\"blob\",cache=\"hit\"}") > 40.0);
        assert_true(sample(t, "layerd_request_duration_seconds_bucket{route=\"manifest\",cache=\"miss\",le=\"0.25\"}") ==
                    0);
        assert_true(sample(t, "layerd_request_duration_seconds_bucket{route=\"manifest\",cache=\"miss\",le=\"0.5\"}") ==
                    1);
        /* Every route and outcome is written, zero or not: rate() has a series from the start. */
        assert_true(sample(t, "layerd_request_duration_seconds_count{route=\"tags\",cache=\"stale\"}") == 0);
        assert_non_null(strstr(t, "# TYPE layerd_request_duration_seconds histogram\n"));
        free(t);
        free(m);
}

static void test_outcomes(void **state) {
        (void) state;
        assert_int_equal(reqmetrics_outcome_of(200, "hit"), REQMETRICS_HIT);
        assert_int_equal(reqmetrics_outcome_of(206, "hit"), REQMETRICS_HIT);
        assert_int_equal(reqmetrics_outcome_of(200, "-"), REQMETRICS_HIT);
        assert_int_equal(reqmetrics_outcome_of(200, "miss"), REQMETRICS_MISS);
        assert_int_equal(reqmetrics_outcome_of(200, "join"), REQMETRICS_MISS);
        assert_int_equal(reqmetrics_outcome_of(200, "revalidated"), REQMETRICS_MISS);
        assert_int_equal(reqmetrics_outcome_of(200, "through"), REQMETRICS_MISS);
        assert_int_equal(reqmetrics_outcome_of(200, "upstream"), REQMETRICS_MISS);
        assert_int_equal(reqmetrics_outcome_of(200, "stale"), REQMETRICS_STALE);
        assert_int_equal(reqmetrics_outcome_of(404, "miss"), REQMETRICS_ERROR);
        assert_int_equal(reqmetrics_outcome_of(503, "-"), REQMETRICS_ERROR);
        assert_int_equal(reqmetrics_outcome_of(0, "-"), REQMETRICS_ERROR);
}

static void test_registries(void **state) {
        (void) state;
        struct reqmetrics *m = malloc(sizeof(*m));
        assert_non_null(m);
        reqmetrics_init(m);
        reqmetrics_count_registry(m, "docker.io", true);
        reqmetrics_count_registry(m, "docker.io", true);
        reqmetrics_count_registry(m, "docker.io", false);
        reqmetrics_count_registry(m, "ghcr.io", false);
        char *t = text_of(m);
        assert_true(sample(t, "layerd_registry_hits_total{registry=\"docker.io\"}") == 2);
        assert_true(sample(t, "layerd_registry_misses_total{registry=\"docker.io\"}") == 1);
        assert_true(sample(t, "layerd_registry_hits_total{registry=\"ghcr.io\"}") == 0);
        assert_true(sample(t, "layerd_registry_misses_total{registry=\"ghcr.io\"}") == 1);
        assert_true(sample(t, "layerd_registry_hits_total{registry=\"(other)\"}") == -1);
        free(t);
        /* Past the table: together. */
        for (int i = 0; i < REQMETRICS_REGISTRIES + 3; i++) {
                char name[32];
                snprintf(name, sizeof(name), "r%d.example", i);
                reqmetrics_count_registry(m, name, true);
        }
        t = text_of(m);
        assert_true(sample(t, "layerd_registry_hits_total{registry=\"(other)\"}") == 5);
        assert_true(sample(t, "layerd_registry_hits_total{registry=\"r0.example\"}") == 1);
        free(t);
        free(m);
}

#define THREADS 8
#define ROUNDS 5000

static void *racer(void *arg) {
        struct reqmetrics *m = arg;
        for (int i = 0; i < ROUNDS; i++) {
                char name[32];
                snprintf(name, sizeof(name), "r%d.example", i % 16);
                reqmetrics_count_registry(m, name, i % 3 != 0);
                reqmetrics_observe(m, (enum reqmetrics_route) (i % _REQMETRICS_ROUTE_MAX),
                                   (enum reqmetrics_outcome) (i % _REQMETRICS_OUTCOME_MAX), (uint64_t) i * 1000);
        }
        return NULL;
}

static void test_threads(void **state) {
        (void) state;
        struct reqmetrics *m = malloc(sizeof(*m));
        assert_non_null(m);
        reqmetrics_init(m);
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, racer, m), 0);
        /* Written while they record: must not race either. */
        free(text_of(m));
        for (int i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(atomic_load(&m->n_registries), 16);
        uint64_t hits = 0, misses = 0;
        for (unsigned i = 0; i < atomic_load(&m->n_registries); i++) {
                for (unsigned j = 0; j < i; j++)
                        assert_string_not_equal(m->registries[i].name, m->registries[j].name);
                hits += atomic_load(&m->registries[i].hits);
                misses += atomic_load(&m->registries[i].misses);
        }
        assert_int_equal(hits + misses, (uint64_t) THREADS * ROUNDS);
        char *text = text_of(m);
        double total = 0;
        for (int r = 0; r < _REQMETRICS_ROUTE_MAX; r++)
                for (int o = 0; o < _REQMETRICS_OUTCOME_MAX; o++) {
                        static const char *const rn[] = { "manifest", "blob", "tags", "other" };
                        static const char *const on[] = { "hit", "miss", "stale", "error" };
                        char key[128];
                        snprintf(key, sizeof(key), "layerd_request_duration_seconds_count{route=\"%s\",cache=\"%s\"}",
                                 rn[r], on[o]);
                        total += sample(text, key);
                }
        assert_true(total == (double) THREADS * ROUNDS);
        free(text);
        free(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_buckets),
                cmocka_unit_test(test_outcomes),
                cmocka_unit_test(test_registries),
                cmocka_unit_test(test_threads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
