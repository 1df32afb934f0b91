/* SPDX-License-Identifier: Apache-2.0 */
/* Golden round-trips: each example spec prints to exactly its .out file, and
 * that output parses back to a model that prints identically (so the printed
 * form is a faithful, stable spec of its own). Run with LAYERD_UPDATE_GOLDEN=1
 * to rewrite the .out files after an intended change, then review the diff. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostsconfig/spec.h"

#define CACHE "/var/lib/layerd"

static char *print_to_string(const struct spec *s) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        assert_non_null(f);
        assert_int_equal(spec_print(s, f), 0);
        assert_int_equal(fclose(f), 0);
        return out;
}

static char *read_file(const char *path) {
        FILE *f = fopen(path, "re");
        if (!f)
                return NULL;
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        assert_non_null(m);
        int c;
        while ((c = fgetc(f)) != EOF)
                fputc(c, m);
        fclose(f);
        fclose(m);
        return buf;
}

static void check_golden(struct spec *s, const char *golden) {
        char *out = print_to_string(s);
        if (getenv("LAYERD_UPDATE_GOLDEN")) {
                FILE *f = fopen(golden, "we");
                assert_non_null(f);
                fputs(out, f);
                fclose(f);
        }
        char *want = read_file(golden);
        if (!want)
                fail_msg("cannot read %s (run from the repository root)", golden);
        if (strcmp(out, want) != 0) {
                fprintf(stderr, "--- %s\n+++ printed\n%s", golden, out);
                fail_msg("output differs from %s", golden);
        }

        /* The printed spec is itself a valid spec with the same model. */
        struct spec *again = NULL;
        struct error_list errors;
        int r = spec_parse("printed.yaml", out, strlen(out), "/elsewhere", &again, &errors);
        if (r != 0) {
                error_list_print(&errors, stderr);
                fail_msg("printed spec does not parse");
        }
        char *out2 = print_to_string(again);
        assert_string_equal(out2, out);
        free(out2);
        spec_free(again);
        free(want);
        free(out);
        spec_free(s);
}

static void golden_file(const char *input, const char *golden, enum spec_format format) {
        struct spec *s = NULL;
        struct error_list errors;
        int r = spec_load_file(input, CACHE, &s, &errors);
        if (r != 0) {
                error_list_print(&errors, stderr);
                fail_msg("%s does not parse", input);
        }
        assert_int_equal(s->format, format);
        check_golden(s, golden);
}

static void test_example_spec(void **state) {
        (void) state;
        golden_file("docs/example-spec.yaml", "tests/golden/example-spec.out", SPEC_FORMAT_LAYERD);
}

static void test_example_helm(void **state) {
        (void) state;
        golden_file("docs/example-helm-values.yaml", "tests/golden/example-helm-values.out", SPEC_FORMAT_HELM);
}

/* containerRegistries beside localRegistryCache (the chart's layout). */
static void test_helm_nested(void **state) {
        (void) state;
        golden_file("tests/golden/helm-nested.yaml", "tests/golden/helm-nested.out", SPEC_FORMAT_HELM);
}

static void test_quoting(void **state) {
        (void) state;
        golden_file("tests/golden/quoting.yaml", "tests/golden/quoting.out", SPEC_FORMAT_LAYERD);
}

static void test_minimal(void **state) {
        (void) state;
        golden_file("tests/golden/minimal.yaml", "tests/golden/minimal.out", SPEC_FORMAT_LAYERD);
}

static void test_builtin(void **state) {
        (void) state;
        struct spec *s = NULL;
        struct error_list errors;
        assert_int_equal(spec_load_default(CACHE, &s, &errors), 0);
        check_golden(s, "tests/golden/builtin.out");
}

/* auto prints as auto, resolved or not: the spec said auto, and a printed
 * spec must not pin the version of the node it happened to be printed on. */
static void test_containerd_version(void **state) {
        (void) state;
        static const char *const yaml[] = { "registries: {docker.io: {}}\n",
                                            "registries: {docker.io: {}}\nhosts: {containerd_version: auto}\n",
                                            "registries: {docker.io: {}}\nhosts: {containerd_version: 1.7.24}\n" };
        static const char *const want[] = { "\nhosts:\n  containerd_version: auto\n",
                                            "\nhosts:\n  containerd_version: auto\n",
                                            "\nhosts:\n  containerd_version: \"1.7.24\"\n" };
        for (size_t i = 0; i < ELEMENTSOF(yaml); i++) {
                struct spec *s = NULL;
                struct error_list errors;
                assert_int_equal(spec_parse("spec.yaml", yaml[i], strlen(yaml[i]), CACHE, &s, &errors), 0);
                assert_int_equal(spec_set_containerd_version(s, "1.6.20"), i < 2 ? 0 : -EEXIST);
                char *out = print_to_string(s);
                if (!strstr(out, want[i]))
                        fail_msg("printed:\n%s\nwithout:%s", out, want[i]);
                free(out);
                spec_free(s);
        }
}

/* The durations print exactly and come back as the same values: 0s (tag_ttl
 * may be 0), the extremes of each range, and nothing for _default. */
static void test_durations_round_trip(void **state) {
        (void) state;
        static const char yaml[] = "agent: {cache_max_age: 14d}\n"
                                   "registries:\n"
                                   "  docker.io:\n"
                                   "    tag_ttl: 0s\n"
                                   "    endpoints:\n"
                                   "      - url: https://a.example.com\n"
                                   "        timeouts: {connect: 1ms, response: 1h, idle: 1h}\n"
                                   "      - url: https://b.example.com\n"
                                   "        timeouts: {response: 1m30s500ms}\n"
                                   "        allow_private_redirects: true\n"
                                   "  quay.io: {tag_ttl: 30d, auth_passthrough: false, auth_verdict_ttl: 1h, "
                                   "auth_outage_grace: 7d}\n"
                                   "  gcr.io: {mirror: false, tag_ttl: 1d12h}\n"
                                   "  _default: {endpoints: [https://z.example.com]}\n";
        struct spec *s = NULL, *again = NULL;
        struct error_list errors;
        assert_int_equal(spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors), 0);
        char *out = print_to_string(s);
        assert_non_null(strstr(out, "  docker.io:\n    mirror: true\n    origin: https://registry-1.docker.io\n"
                                    "    fallback_to_origin: true\n    tag_ttl: 0s\n    endpoints:\n"));
        assert_non_null(strstr(out, "      timeouts: {connect: 1ms, response: 1h, idle: 1h}\n"));
        /* A mirror's default connect timeout, then the origin's. */
        assert_non_null(strstr(out, "      allow_private_redirects: true\n"
                                    "      timeouts: {connect: 1s, response: 1m30s500ms, idle: 30s}\n"
                                    "    - url: https://registry-1.docker.io\n"));
        assert_non_null(strstr(out, "    - url: https://registry-1.docker.io\n      capabilities: [pull, resolve]\n"
                                    "      override_path: false\n      timeouts: {connect: 5s, response: 10s, idle: 30s}\n"));
        assert_non_null(strstr(out, "    tag_ttl: 30d\n    auth_passthrough: false\n    auth_verdict_ttl: 1h\n"
                                    "    auth_outage_grace: 7d\n"));
        assert_null(strstr(out, "  docker.io:\n    mirror: true\n    origin: https://registry-1.docker.io\n"
                                "    fallback_to_origin: true\n    tag_ttl: 0s\n    auth_")); /* defaults: not printed */
        assert_non_null(strstr(out, "    tag_ttl: 1d12h\n"));
        assert_non_null(strstr(out, "  cache_min_free: 0B\n  cache_max_age: 14d\n")); /* printed only when set */
        assert_non_null(strstr(out, "  _default:\n    mirror: false\n    endpoints:\n"));

        int r = spec_parse("printed.yaml", out, strlen(out), CACHE, &again, &errors);
        if (r != 0) {
                error_list_print(&errors, stderr);
                fail_msg("printed spec does not parse");
        }
        assert_int_equal(again->agent.cache_max_age_ms, 14ULL * 86400 * 1000);
        assert_int_equal(again->n_registries, s->n_registries);
        for (size_t i = 0; i < s->n_registries; i++) {
                const struct spec_registry *a = &s->registries[i], *b = &again->registries[i];
                assert_string_equal(b->host, a->host);
                assert_int_equal(b->tag_ttl_ms, a->tag_ttl_ms);
                assert_int_equal(b->auth_passthrough, a->auth_passthrough);
                assert_int_equal(b->auth_verdict_ttl_ms, a->auth_verdict_ttl_ms);
                assert_int_equal(b->auth_outage_grace_ms, a->auth_outage_grace_ms);
                assert_int_equal(b->n_endpoints, a->n_endpoints);
                for (size_t j = 0; j < a->n_endpoints; j++) {
                        assert_string_equal(b->endpoints[j].url, a->endpoints[j].url);
                        assert_int_equal(b->endpoints[j].connect_timeout_ms, a->endpoints[j].connect_timeout_ms);
                        assert_int_equal(b->endpoints[j].response_timeout_ms, a->endpoints[j].response_timeout_ms);
                        assert_int_equal(b->endpoints[j].idle_timeout_ms, a->endpoints[j].idle_timeout_ms);
                        assert_int_equal(b->endpoints[j].allow_private_redirects, a->endpoints[j].allow_private_redirects);
                }
        }
        assert_int_equal(again->registries[0].tag_ttl_ms, 0);
        assert_int_equal(again->registries[0].endpoints[1].response_timeout_ms, 90500);
        assert_true(again->registries[0].endpoints[1].allow_private_redirects);
        assert_false(again->registries[0].endpoints[0].allow_private_redirects);
        char *out2 = print_to_string(again);
        assert_string_equal(out2, out);
        free(out2);
        free(out);
        spec_free(again);
        spec_free(s);
}

/* credential_helper prints as a mapping with its defaults spelled out, and reads back the same. */
static void test_credential_helper_round_trip(void **state) {
        (void) state;
        static const char yaml[] = "registries:\n"
                                   "  docker.io:\n"
                                   "    endpoints:\n"
                                   "      - url: https://a.example.com\n"
                                   "        credential_helper: /usr/bin/docker-credential-a\n"
                                   "      - url: https://b.example.com\n"
                                   "        credential_helper: {command: /usr/bin/docker-credential-b, lifetime: 6h, "
                                   "timeout: 1500ms}\n";
        struct spec *s = NULL, *again = NULL;
        struct error_list errors;
        assert_int_equal(spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors), 0);
        char *out = print_to_string(s);
        assert_non_null(strstr(out, "      credential_helper: {command: /usr/bin/docker-credential-a, lifetime: 10m, "
                                    "timeout: 5s}\n"));
        assert_non_null(strstr(out, "      credential_helper: {command: /usr/bin/docker-credential-b, lifetime: 6h, "
                                    "timeout: 1s500ms}\n"));
        assert_int_equal(spec_parse("printed.yaml", out, strlen(out), CACHE, &again, &errors), 0);
        char *out2 = print_to_string(again);
        assert_string_equal(out2, out);
        free(out2);
        free(out);
        spec_free(again);
        spec_free(s);
}

static void test_write_error(void **state) {
        (void) state;
        struct spec *s = NULL;
        struct error_list errors;
        assert_int_equal(spec_load_default(CACHE, &s, &errors), 0);
        FILE *f = fopen("/dev/full", "we");
        assert_non_null(f);
        assert_int_equal(spec_print(s, f), -EIO);
        fclose(f);
        spec_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_example_spec), cmocka_unit_test(test_example_helm),
                cmocka_unit_test(test_helm_nested),
                cmocka_unit_test(test_quoting),      cmocka_unit_test(test_minimal),
                cmocka_unit_test(test_builtin),      cmocka_unit_test(test_durations_round_trip),
                cmocka_unit_test(test_write_error),  cmocka_unit_test(test_containerd_version),
                cmocka_unit_test(test_credential_helper_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
