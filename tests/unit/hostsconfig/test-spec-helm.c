/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for hostsconfig/spec-helm.c: the Helm-values form of the cluster
 * spec (docs/spec.md, "Helm-values form"), driven through spec_parse() the way
 * `layerd check-config values.yaml` does. Every test owns its result through
 * the fixture, so spec_free() runs in teardown even when an assertion fails
 * and the suite stays leak-free under ASan and valgrind. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/error.h"
#include "hostsconfig/spec.h"

#define SOURCE "values.yaml"
#define CACHE_DIR "/var/lib/layerd"

/* The path down to localRegistryCache; its keys go at 8 spaces, so a key
 * written on line 5 of a test's YAML has its value at column 9 + len("key: "). */
#define CACHE_HEAD                                                              \
        "global:\n"                                                             \
        "  components:\n"                                                       \
        "    containerd:\n"                                                     \
        "      localRegistryCache:\n"

#define CACHE_ENABLED CACHE_HEAD "        enabled: true\n"

struct fixture {
        struct spec *spec;
        struct error_list errors;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        spec_free(f->spec);
        free(f);
        return 0;
}

/* Drops the previous result, so one test can parse several inputs. */
static int parse(struct fixture *f, const char *yaml) {
        f->spec = spec_free(f->spec);
        return spec_parse(SOURCE, yaml, strlen(yaml), CACHE_DIR, &f->spec, &f->errors);
}

static void print_errors(const struct fixture *f) {
        char buf[ERROR_SOURCE_MAX + ERROR_MESSAGE_MAX + 32];
        for (size_t i = 0; i < f->errors.n; i++) {
                error_list_format(&f->errors, i, buf, sizeof(buf));
                print_message("  %s\n", buf);
        }
}

static const struct spec *parse_ok(struct fixture *f, const char *yaml) {
        int r = parse(f, yaml);
        if (r != 0)
                print_errors(f);
        assert_int_equal(r, 0);
        assert_int_equal(error_list_count(&f->errors), 0);
        assert_non_null(f->spec);
        assert_int_equal(f->spec->format, SPEC_FORMAT_HELM);
        assert_string_equal(f->spec->source, SOURCE);
        return f->spec;
}

/* Parses yaml expecting failure with exactly n errors; *ret must stay untouched then. */
static void parse_fail(struct fixture *f, const char *yaml, size_t n) {
        struct spec *const untouched = (struct spec *) 0x1;
        struct spec *s = untouched;

        f->spec = spec_free(f->spec);
        int r = spec_parse(SOURCE, yaml, strlen(yaml), CACHE_DIR, &s, &f->errors);
        if (s != untouched) {
                f->spec = s; /* freed in teardown */
                fail_msg("spec_parse() wrote *ret on failure (returned %d)", r);
        }
        if (r != -EINVAL || error_list_count(&f->errors) != n)
                print_errors(f);
        assert_int_equal(r, -EINVAL);
        assert_int_equal(error_list_count(&f->errors), n);
        assert_int_equal(f->errors.n, n);
}

static void assert_error(const struct fixture *f, size_t i, const char *expected) {
        char buf[ERROR_SOURCE_MAX + ERROR_MESSAGE_MAX + 32];
        assert_true(i < f->errors.n);
        assert_true(error_list_format(&f->errors, i, buf, sizeof(buf)) > 0);
        assert_string_equal(buf, expected);
}

static void expect_error(struct fixture *f, const char *yaml, size_t n, const char *first) {
        parse_fail(f, yaml, n);
        assert_error(f, 0, first);
}

/* Registry i as the mapping must have produced it. */
static const struct spec_registry *assert_registry(const struct spec *s, size_t i, const char *host, bool mirror,
                                                   const char *origin, size_t n_endpoints) {
        assert_true(i < s->n_registries);
        const struct spec_registry *r = &s->registries[i];
        assert_string_equal(r->host, host);
        assert_int_equal(r->mirror, mirror);
        assert_string_equal(r->origin, origin);
        assert_int_equal(r->n_endpoints, n_endpoints);
        assert_int_equal(r->tag_ttl_ms, SPEC_DEFAULT_TAG_TTL_MS);
        assert_ptr_equal(spec_find_registry(s, host), r);
        return r;
}

/* The Helm form cannot express anything beyond url and override_path, so
 * every other endpoint setting must be at its default (docs/spec.md): the
 * connect timeout is the origin's 5s or a mirror's 1s. */
static void assert_endpoint(const struct spec_registry *r, size_t i, const char *url, bool is_origin,
                            bool override_path, unsigned line) {
        assert_true(i < r->n_endpoints);
        const struct spec_endpoint *e = &r->endpoints[i];
        assert_string_equal(e->url, url);
        assert_int_equal(e->is_origin, is_origin);
        assert_int_equal(e->override_path, override_path);
        assert_int_equal(e->line, line);
        assert_int_equal(e->capabilities, SPEC_CAP_PULL | SPEC_CAP_RESOLVE);
        assert_int_equal(e->connect_timeout_ms,
                         is_origin ? SPEC_DEFAULT_CONNECT_TIMEOUT_MS : SPEC_DEFAULT_MIRROR_CONNECT_TIMEOUT_MS);
        assert_int_equal(e->response_timeout_ms, SPEC_DEFAULT_RESPONSE_TIMEOUT_MS);
        assert_int_equal(e->idle_timeout_ms, SPEC_DEFAULT_IDLE_TIMEOUT_MS);
        assert_null(e->ca_file);
        assert_null(e->client_cert);
        assert_null(e->client_key);
        assert_false(e->skip_verify);
        assert_null(e->credentials_file);
        assert_null(e->headers);
        assert_int_equal(e->n_headers, 0);
}

/* ---- the mapping ----------------------------------------------------------------- */

static void test_doc_example(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_ENABLED
                "        mirroredRegistries: [docker.io, ghcr.io, registry.k8s.io]\n"
                "        port: 6001\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: zot.mgmt.example.com:5000\n"                          /* line 10 */
                "    - endpoint: https://harbor.mgmt.example.com/v2/proxy-docker.io\n" /* line 11 */
                "  ghcr.io:\n"
                "    - endpoint: harbor.mgmt.example.com\n");                          /* line 13 */

        assert_string_equal(s->agent.listen_host, "127.0.0.1");
        assert_int_equal(s->agent.listen_port, 6001);
        assert_string_equal(s->agent.cache_dir, CACHE_DIR);
        assert_int_equal(s->agent.cache_max_bytes, SPEC_DEFAULT_CACHE_MAX_SIZE);
        assert_true(s->agent.finish_abandoned_downloads);
        assert_string_equal(s->agent.default_registry, "docker.io");
        assert_int_equal(s->prefetch.n_entries, 0);
        assert_int_equal(s->prefetch.n_platforms, 0);
        assert_int_equal(s->prefetch.interval_ms, SPEC_DEFAULT_PREFETCH_INTERVAL_MS);
        assert_int_equal(s->prefetch.concurrency, SPEC_DEFAULT_PREFETCH_CONCURRENCY);
        assert_int_equal(s->prefetch.bandwidth_bps, 0);

        assert_int_equal(s->n_registries, 3);
        const struct spec_registry *r = assert_registry(s, 0, "docker.io", true, "https://registry-1.docker.io", 3);
        assert_endpoint(r, 0, "https://zot.mgmt.example.com:5000", false, false, 10);
        assert_endpoint(r, 1, "https://harbor.mgmt.example.com/v2/proxy-docker.io", false, true, 11);
        assert_endpoint(r, 2, "https://registry-1.docker.io", true, false, 0);

        r = assert_registry(s, 1, "ghcr.io", true, "https://ghcr.io", 2);
        assert_endpoint(r, 0, "https://harbor.mgmt.example.com", false, false, 13);
        assert_endpoint(r, 1, "https://ghcr.io", true, false, 0);

        r = assert_registry(s, 2, "registry.k8s.io", true, "https://registry.k8s.io", 1);
        assert_endpoint(r, 0, "https://registry.k8s.io", true, false, 0);
}

static void test_port_default(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n");
        assert_string_equal(s->agent.listen_host, "127.0.0.1");
        assert_int_equal(s->agent.listen_port, SPEC_DEFAULT_PORT);
        assert_int_equal(SPEC_DEFAULT_PORT, 5080);
}

static void test_port_range_ends(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        port: 1\n");
        assert_string_equal(s->agent.listen_host, "127.0.0.1");
        assert_int_equal(s->agent.listen_port, 1);
        s = parse_ok(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        port: 65535\n");
        assert_int_equal(s->agent.listen_port, 65535);
}

/* Mirrored registries come in mirroredRegistries order, not containerRegistries
 * order; hosts only in containerRegistries follow with mirror: false. */
static void test_order_and_unmirrored(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_ENABLED
                "        mirroredRegistries:\n"
                "          - quay.io\n"
                "          - docker.io\n"
                "          - registry.example.com:5000\n"
                "containerRegistries:\n"
                "  registry.lab.example.com:\n"
                "    - endpoint: http://cache.lab.example.com:5000\n" /* line 12 */
                "  docker.io:\n"
                "    - endpoint: zot.example.com\n"                  /* line 14 */
                "  ghcr.io:\n"
                "    - endpoint: harbor.example.com/ghcr\n");        /* line 16 */

        assert_int_equal(s->n_registries, 5);
        const struct spec_registry *r = assert_registry(s, 0, "quay.io", true, "https://quay.io", 1);
        assert_endpoint(r, 0, "https://quay.io", true, false, 0);
        r = assert_registry(s, 1, "docker.io", true, "https://registry-1.docker.io", 2);
        assert_endpoint(r, 0, "https://zot.example.com", false, false, 14);
        assert_endpoint(r, 1, "https://registry-1.docker.io", true, false, 0);
        r = assert_registry(s, 2, "registry.example.com:5000", true, "https://registry.example.com:5000", 1);
        assert_endpoint(r, 0, "https://registry.example.com:5000", true, false, 0);
        r = assert_registry(s, 3, "registry.lab.example.com", false, "https://registry.lab.example.com", 2);
        assert_endpoint(r, 0, "http://cache.lab.example.com:5000", false, false, 12);
        assert_endpoint(r, 1, "https://registry.lab.example.com", true, false, 0);
        r = assert_registry(s, 4, "ghcr.io", false, "https://ghcr.io", 2);
        assert_endpoint(r, 0, "https://harbor.example.com/ghcr", false, false, 16);
        assert_endpoint(r, 1, "https://ghcr.io", true, false, 0);
        assert_string_equal(s->agent.default_registry, "docker.io");
}

static void check_all_unmirrored(const struct spec *s) {
        assert_int_equal(s->n_registries, 3);
        assert_registry(s, 0, "ghcr.io", false, "https://ghcr.io", 1);
        assert_endpoint(&s->registries[0], 0, "https://ghcr.io", true, false, 0);
        assert_registry(s, 1, "docker.io", false, "https://registry-1.docker.io", 2);
        assert_endpoint(&s->registries[1], 0, "https://zot.example.com", false, false, 10);
        assert_endpoint(&s->registries[1], 1, "https://registry-1.docker.io", true, false, 0);
        assert_registry(s, 2, "quay.io", false, "https://quay.io", 2);
        assert_endpoint(&s->registries[2], 0, "https://cache.example.com", false, false, 12);
        assert_endpoint(&s->registries[2], 1, "https://quay.io", true, false, 0);
        /* docker.io is there but not served: requests without ?ns= are refused. */
        assert_null(s->agent.default_registry);
}

static void test_enabled_false(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_HEAD
                "        enabled: false\n"
                "        mirroredRegistries: [ghcr.io, docker.io]\n"
                "        port: 5081\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: zot.example.com\n"   /* line 10 */
                "  quay.io:\n"
                "    - endpoint: cache.example.com\n"); /* line 12 */
        check_all_unmirrored(s);
        /* The port still applies: the listener is configured, just serves nothing. */
        assert_int_equal(s->agent.listen_port, 5081);
}

static void test_enabled_absent(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_HEAD
                "        mirroredRegistries: [ghcr.io, docker.io]\n"
                "\n"
                "\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: zot.example.com\n"   /* line 10 */
                "  quay.io:\n"
                "    - endpoint: cache.example.com\n"); /* line 12 */
        check_all_unmirrored(s);
        assert_int_equal(s->agent.listen_port, SPEC_DEFAULT_PORT);
}

/* The core schema's spellings of true (docs/spec.md: only true or false). */
static void test_enabled_spellings(void **state) {
        struct fixture *f = *state;
        static const char *const yes[] = { "true", "True", "TRUE" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                char yaml[256];
                snprintf(yaml, sizeof(yaml), CACHE_HEAD "        enabled: %s\n        mirroredRegistries: [docker.io]\n",
                         yes[i]);
                const struct spec *s = parse_ok(f, yaml);
                assert_true(s->registries[0].mirror);
        }
}

/* Without mirroredRegistries, enabled: false, and an empty list is fine. */
static void test_enabled_false_empty_list(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_HEAD
                "        enabled: false\n"
                "        mirroredRegistries: []\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: zot.example.com\n");
        assert_int_equal(s->n_registries, 1);
        assert_registry(s, 0, "docker.io", false, "https://registry-1.docker.io", 2);
        assert_null(s->agent.default_registry);
}

static void test_endpoint_forms(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_ENABLED
                "        mirroredRegistries: [docker.io]\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: a.example.com\n"                 /* line 9 */
                "    - endpoint: b.example.com:5000/mirror/\n"    /* line 10 */
                "    - endpoint: http://c.example.com:80/\n"      /* line 11 */
                "    - endpoint: HTTPS://D.Example.COM:443/Path\n" /* line 12 */
                "    - endpoint: 10.0.0.5:5000\n"                 /* line 13 */
                "    - endpoint: \"[fd00::1]:5000\"\n");          /* line 14 */
        const struct spec_registry *r = assert_registry(s, 0, "docker.io", true, "https://registry-1.docker.io", 7);
        assert_endpoint(r, 0, "https://a.example.com", false, false, 9);
        assert_endpoint(r, 1, "https://b.example.com:5000/mirror", false, false, 10);
        assert_endpoint(r, 2, "http://c.example.com", false, false, 11);
        assert_endpoint(r, 3, "https://d.example.com/Path", false, false, 12);
        assert_endpoint(r, 4, "https://10.0.0.5:5000", false, false, 13);
        assert_endpoint(r, 5, "https://[fd00::1]:5000", false, false, 14);
        assert_endpoint(r, 6, "https://registry-1.docker.io", true, false, 0);
}

/* Harbor proxy projects carry the API root in the path; /v2 must be a whole
 * path segment, so "/v2x" is an ordinary prefix. */
static void test_override_path(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_ENABLED
                "        mirroredRegistries: [docker.io]\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: h1.example.com/v2\n"
                "    - endpoint: https://h2.example.com/v2/proxy-docker.io\n"
                "    - endpoint: h3.example.com/v2/\n"
                "    - endpoint: h4.example.com/v2x\n"
                "    - endpoint: h5.example.com/mirror/v2\n"
                "    - endpoint: h6.example.com/dockerhub\n"
                "    - endpoint: h7.example.com\n");
        const struct spec_registry *r = assert_registry(s, 0, "docker.io", true, "https://registry-1.docker.io", 8);
        assert_endpoint(r, 0, "https://h1.example.com/v2", false, true, 9);
        assert_endpoint(r, 1, "https://h2.example.com/v2/proxy-docker.io", false, true, 10);
        assert_endpoint(r, 2, "https://h3.example.com/v2", false, true, 11);
        assert_endpoint(r, 3, "https://h4.example.com/v2x", false, false, 12);
        assert_endpoint(r, 4, "https://h5.example.com/mirror/v2", false, false, 13);
        assert_endpoint(r, 5, "https://h6.example.com/dockerhub", false, false, 14);
        assert_endpoint(r, 6, "https://h7.example.com", false, false, 15);
        assert_endpoint(r, 7, "https://registry-1.docker.io", true, false, 0);
}

/* An endpoint that normalises to the origin is the origin: marked where it
 * is listed and not appended a second time. */
static void test_endpoint_is_origin(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_ENABLED
                "        mirroredRegistries: [docker.io, ghcr.io]\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: registry-1.docker.io\n"     /* line 9 */
                "    - endpoint: zot.example.com\n"          /* line 10 */
                "  ghcr.io:\n"
                "    - endpoint: https://GHCR.io:443/\n"     /* line 12 */
                "  quay.io:\n"
                "    - endpoint: https://quay.io\n");        /* line 14 */
        assert_int_equal(s->n_registries, 3);
        const struct spec_registry *r = assert_registry(s, 0, "docker.io", true, "https://registry-1.docker.io", 2);
        assert_endpoint(r, 0, "https://registry-1.docker.io", true, false, 9);
        assert_endpoint(r, 1, "https://zot.example.com", false, false, 10);
        /* The origin's connect timeout, listed first or not; the mirror's after it. */
        assert_int_equal(r->endpoints[0].connect_timeout_ms, 5000);
        assert_int_equal(r->endpoints[1].connect_timeout_ms, 1000);
        r = assert_registry(s, 1, "ghcr.io", true, "https://ghcr.io", 1);
        assert_endpoint(r, 0, "https://ghcr.io", true, false, 12);
        assert_int_equal(r->endpoints[0].connect_timeout_ms, 5000);
        r = assert_registry(s, 2, "quay.io", false, "https://quay.io", 1);
        assert_endpoint(r, 0, "https://quay.io", true, false, 14);
        assert_int_equal(r->endpoints[0].connect_timeout_ms, 5000);
}

/* docker.io's API host is registry-1.docker.io; https://docker.io is just another endpoint. */
static void test_docker_io_origin(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_ENABLED
                "        mirroredRegistries: [docker.io]\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: docker.io\n");
        const struct spec_registry *r = assert_registry(s, 0, "docker.io", true, "https://registry-1.docker.io", 2);
        assert_endpoint(r, 0, "https://docker.io", false, false, 9);
        assert_endpoint(r, 1, "https://registry-1.docker.io", true, false, 0);
        assert_int_equal(r->endpoints[0].connect_timeout_ms, 1000);
        assert_int_equal(r->endpoints[1].connect_timeout_ms, 5000);
}

static void test_default_registry_without_docker_io(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_ENABLED
                "        mirroredRegistries: [ghcr.io]\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: zot.example.com\n");
        assert_int_equal(s->n_registries, 2);
        assert_registry(s, 0, "ghcr.io", true, "https://ghcr.io", 1);
        assert_registry(s, 1, "docker.io", false, "https://registry-1.docker.io", 2);
        assert_null(s->agent.default_registry);

        s = parse_ok(f, CACHE_ENABLED "        mirroredRegistries: [quay.io, ghcr.io]\n");
        assert_int_equal(s->n_registries, 2);
        assert_null(s->agent.default_registry);
}

/* Hosts are case-insensitive: the two lists name the same registry in any case. */
static void test_host_case(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_ENABLED
                "        mirroredRegistries: [GHCR.io, Docker.IO]\n"
                "containerRegistries:\n"
                "  ghcr.IO:\n"
                "    - endpoint: Zot.Example.COM/Mirror\n");
        assert_int_equal(s->n_registries, 2);
        const struct spec_registry *r = assert_registry(s, 0, "ghcr.io", true, "https://ghcr.io", 2);
        assert_endpoint(r, 0, "https://zot.example.com/Mirror", false, false, 9);
        assert_registry(s, 1, "docker.io", true, "https://registry-1.docker.io", 1);
        assert_string_equal(s->agent.default_registry, "docker.io");
}

/* The values file belongs to the whole chart: keys outside the two blocks,
 * whatever their type, are not ours to judge. */
static void test_unrelated_keys_ignored(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                "image: nginx:1.27\n"
                "replicaCount: [1, 2]\n"
                "global:\n"
                "  clusterName: workload-1\n"
                "  components:\n"
                "    cilium:\n"
                "      enabled: yes\n"
                "    containerd:\n"
                "      version: 1.7\n"
                "      localRegistryCache:\n"
                "        enabled: true\n"
                "        mirroredRegistries: [docker.io]\n"
                "        port: 5090\n"
                "      config: {a: b}\n"
                "    kubelet: ~\n"
                "  labels: [x]\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: zot.example.com\n" /* line 19 */
                "ingress:\n"
                "  enabled: on\n");
        assert_int_equal(s->agent.listen_port, 5090);
        assert_int_equal(s->n_registries, 1);
        const struct spec_registry *r = assert_registry(s, 0, "docker.io", true, "https://registry-1.docker.io", 2);
        assert_endpoint(r, 0, "https://zot.example.com", false, false, 19);
        assert_endpoint(r, 1, "https://registry-1.docker.io", true, false, 0);
}

static void test_endpoint_limit(void **state) {
        struct fixture *f = *state;
        char yaml[2048];
        size_t len = (size_t) snprintf(yaml, sizeof(yaml), "%s",
                                       CACHE_ENABLED "        mirroredRegistries: [docker.io]\ncontainerRegistries:\n  docker.io:\n");
        for (unsigned i = 0; i < SPEC_ENDPOINTS_MAX; i++)
                len += (size_t) snprintf(yaml + len, sizeof(yaml) - len, "    - endpoint: c%u.example.com\n", i);
        assert_true(len < sizeof(yaml));
        const struct spec *s = parse_ok(f, yaml);
        /* The origin comes on top of the 16 listed endpoints. */
        const struct spec_registry *r = assert_registry(s, 0, "docker.io", true, "https://registry-1.docker.io",
                                                        SPEC_ENDPOINTS_MAX + 1);
        assert_endpoint(r, SPEC_ENDPOINTS_MAX - 1, "https://c15.example.com", false, false, 24);
        assert_endpoint(r, SPEC_ENDPOINTS_MAX, "https://registry-1.docker.io", true, false, 0);

        len += (size_t) snprintf(yaml + len, sizeof(yaml) - len, "    - endpoint: c16.example.com\n");
        assert_true(len < sizeof(yaml));
        expect_error(f, yaml, 1, SOURCE ":9:5: containerRegistries.docker.io: too many items (at most 16)");
}

/* ---- errors in localRegistryCache ---------------------------------------------------- */

static void test_missing_cache(void **state) {
        struct fixture *f = *state;
        static const char *const inputs[] = {
                "global:\n"
                "  clusterName: x\n"
                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: zot:5000\n",

                "global:\n"
                "  components:\n"
                "    containerd:\n"
                "      version: 1.7\n",

                "containerRegistries:\n"
                "  docker.io:\n"
                "    - endpoint: zot:5000\n",
        };
        /* The error points at the deepest part of the path that exists. */
        static const char *const where[] = { SOURCE ":2:3", SOURCE ":4:7", SOURCE ":1:1" };
        for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                char want[512];
                snprintf(want, sizeof(want),
                         "%s: global.components.containerd.localRegistryCache: missing (layerd reads its settings from there)",
                         where[i]);
                expect_error(f, inputs[i], 1, want);
        }
}

static void test_cache_not_mapping(void **state) {
        struct fixture *f = *state;
        expect_error(f, CACHE_HEAD "        - enabled\n", 1,
                     SOURCE ":5:9: global.components.containerd.localRegistryCache: expected a mapping, got a list");
        expect_error(f,
                     "global:\n"
                     "  components:\n"
                     "    containerd:\n"
                     "      localRegistryCache: [a]\n",
                     1, SOURCE ":4:27: global.components.containerd.localRegistryCache: expected a mapping, got a list");
        expect_error(f, CACHE_HEAD, 1,
                     SOURCE ":4:26: global.components.containerd.localRegistryCache: expected a mapping, got null");
        expect_error(f,
                     "global:\n"
                     "  components:\n"
                     "    containerd:\n"
                     "      localRegistryCache: true\n",
                     1, SOURCE ":4:27: global.components.containerd.localRegistryCache: expected a mapping, got a scalar");
}

/* The path down to localRegistryCache must be mappings all the way. */
static void test_path_not_mapping(void **state) {
        struct fixture *f = *state;
        expect_error(f, "global: 3\n", 1, SOURCE ":1:9: global: expected a mapping, got a scalar");
        expect_error(f, "global:\n  components: [containerd]\n", 1,
                     SOURCE ":2:15: global.components: expected a mapping, got a list");
        expect_error(f, "global:\n  components:\n    containerd:\n", 1,
                     SOURCE ":3:16: global.components.containerd: expected a mapping, got null");
}

static void test_unknown_cache_key(void **state) {
        struct fixture *f = *state;
        /* The typo is the one error: "enabled, but no mirroredRegistries" would only repeat it. */
        expect_error(f, CACHE_ENABLED "        mirroredRegistry: [docker.io]\n", 1,
                     SOURCE ":6:9: global.components.containerd.localRegistryCache: unknown key \"mirroredRegistry\" "
                            "(did you mean \"mirroredRegistries\"?)");

        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        prot: 5000\n", 1,
                     SOURCE ":7:9: global.components.containerd.localRegistryCache: unknown key \"prot\" "
                            "(did you mean \"port\"?)");
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        size: 10GiB\n", 1,
                     SOURCE ":7:9: global.components.containerd.localRegistryCache: unknown key \"size\"");
}

static void test_duplicate_cache_keys(void **state) {
        struct fixture *f = *state;
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        enabled: false\n", 1,
                     SOURCE ":7:9: global.components.containerd.localRegistryCache.enabled: duplicate key (first at line 5)");
        expect_error(f,
                     CACHE_ENABLED
                     "        mirroredRegistries: [docker.io]\n"
                     "      localRegistryCache:\n"
                     "        enabled: false\n",
                     1, SOURCE ":7:7: global.components.containerd.localRegistryCache: duplicate key (first at line 4)");
}

/* YAML 1.1 booleans are refused rather than guessed. */
static void test_enabled_not_boolean(void **state) {
        struct fixture *f = *state;
        expect_error(f, CACHE_HEAD "        enabled: yes\n        mirroredRegistries: [docker.io]\n", 1,
                     SOURCE ":5:18: global.components.containerd.localRegistryCache.enabled: expected true or false, got \"yes\"");
        expect_error(f, CACHE_HEAD "        enabled: on\n        mirroredRegistries: [docker.io]\n", 1,
                     SOURCE ":5:18: global.components.containerd.localRegistryCache.enabled: expected true or false, got \"on\"");
        expect_error(f, CACHE_HEAD "        enabled: 1\n        mirroredRegistries: [docker.io]\n", 1,
                     SOURCE ":5:18: global.components.containerd.localRegistryCache.enabled: expected true or false, got \"1\"");
        expect_error(f, CACHE_HEAD "        enabled:\n        mirroredRegistries: [docker.io]\n", 1,
                     SOURCE ":5:17: global.components.containerd.localRegistryCache.enabled: expected true or false, got null");
}

static void test_port_invalid(void **state) {
        struct fixture *f = *state;
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        port: 0\n", 1,
                     SOURCE ":7:15: global.components.containerd.localRegistryCache.port: must be between 1 and 65535");
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        port: 70000\n", 1,
                     SOURCE ":7:15: global.components.containerd.localRegistryCache.port: must be between 1 and 65535");
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        port: 65536\n", 1,
                     SOURCE ":7:15: global.components.containerd.localRegistryCache.port: must be between 1 and 65535");
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        port: abc\n", 1,
                     SOURCE ":7:15: global.components.containerd.localRegistryCache.port: expected an integer, got \"abc\"");
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io]\n        port: [5080]\n", 1,
                     SOURCE ":7:15: global.components.containerd.localRegistryCache.port: expected an integer, got a list");
}

static void test_mirrored_not_list(void **state) {
        struct fixture *f = *state;
        const char *p = SOURCE ":6:29: global.components.containerd.localRegistryCache.mirroredRegistries: ";
        char want[256];

        snprintf(want, sizeof(want), "%sexpected a list, got a scalar", p);
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: docker.io\n", 1, want);
        snprintf(want, sizeof(want), "%sexpected a list, got a mapping", p);
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: {docker.io: true}\n", 1, want);
        /* The type is checked even when disabled. */
        expect_error(f, CACHE_HEAD "        enabled: false\n        mirroredRegistries: docker.io\n", 1,
                     SOURCE ":6:29: global.components.containerd.localRegistryCache.mirroredRegistries: expected a list, got a scalar");
        expect_error(f, CACHE_ENABLED "        mirroredRegistries:\n", 1,
                     SOURCE ":6:28: global.components.containerd.localRegistryCache.mirroredRegistries: expected a list, got null");
}

static void test_mirrored_empty_when_enabled(void **state) {
        struct fixture *f = *state;
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: []\n", 1,
                     SOURCE ":6:29: global.components.containerd.localRegistryCache.mirroredRegistries: empty list");
        /* containerRegistries does not stand in for the list. */
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: []\ncontainerRegistries:\n  docker.io:\n    - endpoint: zot\n",
                     1, SOURCE ":6:29: global.components.containerd.localRegistryCache.mirroredRegistries: empty list");
        expect_error(f, CACHE_ENABLED "        port: 5080\n", 1,
                     SOURCE ":5:9: global.components.containerd.localRegistryCache: enabled, but no mirroredRegistries");
}

static void test_no_registries(void **state) {
        struct fixture *f = *state;
        expect_error(f, CACHE_HEAD "        enabled: false\n", 1,
                     SOURCE ":5:9: global.components.containerd.localRegistryCache: no registries: list "
                            "mirroredRegistries or containerRegistries");
        expect_error(f, CACHE_HEAD "        enabled: false\ncontainerRegistries: {}\n", 1,
                     SOURCE ":5:9: global.components.containerd.localRegistryCache: no registries: list "
                            "mirroredRegistries or containerRegistries");
}

static void test_mirrored_invalid_host(void **state) {
        struct fixture *f = *state;
        const char *p = SOURCE ":6:41: global.components.containerd.localRegistryCache.mirroredRegistries[1]: ";
        char want[256];

        snprintf(want, sizeof(want), "%snot a registry host[:port]: \"bad host!\"", p);
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io, \"bad host!\"]\n", 1, want);
        snprintf(want, sizeof(want), "%snot a registry host[:port]: \"https://ghcr.io\"", p);
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io, \"https://ghcr.io\"]\n", 1, want);
        snprintf(want, sizeof(want), "%snot a registry host[:port]: \"ghcr.io/x\"", p);
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io, ghcr.io/x]\n", 1, want);
        snprintf(want, sizeof(want), "%snot a registry host[:port]: \"ghcr.io:0\"", p);
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io, \"ghcr.io:0\"]\n", 1, want);
        snprintf(want, sizeof(want), "%sexpected a string, got a list", p);
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io, [ghcr.io]]\n", 1, want);
}

static void test_mirrored_twice(void **state) {
        struct fixture *f = *state;
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io, ghcr.io, docker.io]\n", 1,
                     SOURCE ":6:50: global.components.containerd.localRegistryCache.mirroredRegistries[2]: "
                            "\"docker.io\" listed twice");
        /* Case does not make it another registry. */
        expect_error(f, CACHE_ENABLED "        mirroredRegistries: [docker.io, ghcr.io, Docker.IO]\n", 1,
                     SOURCE ":6:50: global.components.containerd.localRegistryCache.mirroredRegistries[2]: "
                            "\"docker.io\" listed twice");
}

/* Every problem in one run, not just the first. */
static void test_several_errors(void **state) {
        struct fixture *f = *state;
        parse_fail(f,
                   CACHE_ENABLED
                   "        mirroredRegistries: [docker.io, 'a b', docker.io]\n"
                   "containerRegistries:\n"
                   "  docker.io:\n"
                   "    - endpoint: ftp://x\n"
                   "  quay.io: []\n",
                   4);
        assert_error(f, 0, SOURCE ":6:41: global.components.containerd.localRegistryCache.mirroredRegistries[1]: "
                                  "not a registry host[:port]: \"a b\"");
        assert_error(f, 1, SOURCE ":6:48: global.components.containerd.localRegistryCache.mirroredRegistries[2]: "
                                  "\"docker.io\" listed twice");
        assert_error(f, 2, SOURCE ":9:17: containerRegistries.docker.io[0].endpoint: scheme must be http or https: \"ftp://x\"");
        assert_error(f, 3, SOURCE ":10:12: containerRegistries.quay.io: empty list");
}

static void test_too_many_registries(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *yaml = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&yaml, &size);
        assert_non_null(m);
        fputs(CACHE_ENABLED "        mirroredRegistries:\n", m);
        for (unsigned i = 0; i <= SPEC_REGISTRIES_MAX; i++)
                fprintf(m, "          - r%u.example.com\n", i);
        assert_int_equal(fclose(m), 0);

        expect_error(f, yaml, 1,
                     SOURCE ":7:11: global.components.containerd.localRegistryCache.mirroredRegistries: too many "
                            "registries (at most 256)");
}

static void test_registries_in_both_lists_count_once(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *yaml = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&yaml, &size);
        assert_non_null(m);
        fputs(CACHE_ENABLED "        mirroredRegistries:\n", m);
        for (unsigned i = 0; i < 200; i++)
                fprintf(m, "          - r%u.example.com\n", i);
        fputs("containerRegistries:\n", m);
        for (unsigned i = 0; i < 200; i++)
                fprintf(m, "  r%u.example.com:\n    - endpoint: zot.example.com\n", i);
        assert_int_equal(fclose(m), 0);
        parse_ok(f, yaml);
        assert_int_equal(f->spec->n_registries, 200);
        assert_true(f->spec->registries[199].mirror);
        assert_int_equal(f->spec->registries[199].n_endpoints, 2);
}

static void test_errors_in_both_blocks(void **state) {
        struct fixture *f = *state;
        /* An error in localRegistryCache does not hide those in containerRegistries. */
        parse_fail(f,
                   CACHE_ENABLED
                   "        mirroredRegistries: [docker.io]\n"
                   "        port: 0\n"
                   "containerRegistries:\n"
                   "  docker.io:\n"
                   "    - endpoint: ftp://x\n",
                   2);
        assert_error(f, 0, SOURCE ":7:15: global.components.containerd.localRegistryCache.port: must be between 1 and 65535");
        assert_error(f, 1, SOURCE ":10:17: containerRegistries.docker.io[0].endpoint: scheme must be http or https: \"ftp://x\"");
}

/* ---- errors in containerRegistries ------------------------------------------------------ */

#define ONE_MIRROR CACHE_ENABLED "        mirroredRegistries: [docker.io]\n"

static void test_registries_not_mapping(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "containerRegistries: [docker.io]\n", 1,
                     SOURCE ":7:22: containerRegistries: expected a mapping, got a list");
        expect_error(f, ONE_MIRROR "containerRegistries: docker.io\n", 1,
                     SOURCE ":7:22: containerRegistries: expected a mapping, got a scalar");
        expect_error(f, ONE_MIRROR "containerRegistries:\n", 1,
                     SOURCE ":7:21: containerRegistries: expected a mapping, got null");
}

static void test_registry_invalid_key(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "containerRegistries:\n  https://ghcr.io:\n    - endpoint: zot\n", 1,
                     SOURCE ":8:3: containerRegistries: not a registry host[:port]: \"https://ghcr.io\"");
}

static void test_registry_entries_not_list(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    endpoint: zot:5000\n", 1,
                     SOURCE ":9:5: containerRegistries.docker.io: expected a list, got a mapping");
        expect_error(f, ONE_MIRROR "containerRegistries:\n  ghcr.io:\n", 1,
                     SOURCE ":8:11: containerRegistries.ghcr.io: expected a list, got null");
        expect_error(f, ONE_MIRROR "containerRegistries:\n  ghcr.io: zot\n", 1,
                     SOURCE ":8:12: containerRegistries.ghcr.io: expected a list, got a scalar");
}

static void test_registry_empty_list(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io: []\n", 1,
                     SOURCE ":8:14: containerRegistries.docker.io: empty list");
        /* Also for a registry that is not mirrored. */
        expect_error(f, ONE_MIRROR "containerRegistries:\n  quay.io: []\n", 1,
                     SOURCE ":8:12: containerRegistries.quay.io: empty list");
}

static void test_entry_unknown_key(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: zot:5000\n      endpiont: x\n", 1,
                     SOURCE ":10:7: containerRegistries.docker.io[0]: unknown key \"endpiont\" (did you mean \"endpoint\"?)");
        /* The layerd form's keys do not exist here. */
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: zot:5000\n      override_path: true\n", 1,
                     SOURCE ":10:7: containerRegistries.docker.io[0]: unknown key \"override_path\"");
}

static void test_entry_missing_endpoint(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - {}\n", 1,
                     SOURCE ":9:7: containerRegistries.docker.io[0]: missing required key \"endpoint\"");
        parse_fail(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - url: zot:5000\n", 2);
        assert_error(f, 0, SOURCE ":9:7: containerRegistries.docker.io[0]: unknown key \"url\"");
        assert_error(f, 1, SOURCE ":9:7: containerRegistries.docker.io[0]: missing required key \"endpoint\"");
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: zot\n    - endpoint:\n", 1,
                     SOURCE ":10:16: containerRegistries.docker.io[1].endpoint: expected a string, got null");
}

static void test_entry_not_mapping(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - zot:5000\n", 1,
                     SOURCE ":9:7: containerRegistries.docker.io[0]: expected a mapping, got a scalar");
}

static void test_endpoint_invalid(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: ftp://x\n", 1,
                     SOURCE ":9:17: containerRegistries.docker.io[0].endpoint: scheme must be http or https: \"ftp://x\"");
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: zot:notaport\n", 1,
                     SOURCE ":9:17: containerRegistries.docker.io[0].endpoint: invalid host or port: \"zot:notaport\"");
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: https://zot/a?b=c\n", 1,
                     SOURCE ":9:17: containerRegistries.docker.io[0].endpoint: query or fragment in a URL is not allowed: "
                            "\"https://zot/a?b=c\"");
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: zot/a/../b\n", 1,
                     SOURCE ":9:17: containerRegistries.docker.io[0].endpoint: URL path is not normalised: \"zot/a/../b\"");
}

/* User info is refused. Only the stable part of the message is asserted: the
 * hint and the echo of the password are in the report as wrong. */
static void test_endpoint_user_info(void **state) {
        struct fixture *f = *state;
        static const char *const inputs[] = { "https://user:pw@host", "user:pw@host" };
        /* The password never reaches the message, which points to where credentials go. */
        static const char *const want[] = {
                SOURCE ":9:17: containerRegistries.docker.io[0].endpoint: credentials in an endpoint are not allowed "
                       "(the layerd form's credentials_file holds them): \"https://***@host\"",
                SOURCE ":9:17: containerRegistries.docker.io[0].endpoint: credentials in an endpoint are not allowed "
                       "(the layerd form's credentials_file holds them): \"***@host\"",
        };
        for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                char yaml[256];
                snprintf(yaml, sizeof(yaml), ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: %s\n", inputs[i]);
                expect_error(f, yaml, 1, want[i]);
        }
}

static void test_endpoint_duplicate(void **state) {
        struct fixture *f = *state;
        /* Same URL once normalised: scheme added, host lower-cased, default port and '/' dropped. */
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: zot:5000\n    - endpoint: https://ZOT:5000/\n", 1,
                     SOURCE ":10:7: containerRegistries.docker.io[1]: duplicate endpoint \"https://zot:5000\" (first at line 9)");
        expect_error(f,
                     ONE_MIRROR
                     "containerRegistries:\n"
                     "  docker.io:\n"
                     "    - endpoint: registry-1.docker.io\n"
                     "    - endpoint: zot\n"
                     "    - endpoint: https://registry-1.docker.io:443\n",
                     1,
                     SOURCE ":11:7: containerRegistries.docker.io[2]: duplicate endpoint \"https://registry-1.docker.io\" "
                            "(first at line 9)");
}

static void test_registry_duplicate_key(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: zot:5000\n  Docker.io:\n    - endpoint: harbor\n", 1,
                     SOURCE ":10:3: containerRegistries.Docker.io: duplicate key (first at line 8)");
        expect_error(f, ONE_MIRROR "containerRegistries:\n  docker.io:\n    - endpoint: zot:5000\ncontainerRegistries: {}\n", 1,
                     SOURCE ":10:1: containerRegistries: duplicate key (first at line 7)");
        /* The same registry spelt two ways is caught after canonicalisation. */
        expect_error(f, ONE_MIRROR "containerRegistries:\n  zot.example.com:5000:\n    - endpoint: a\n"
                                   "  zot.example.com:05000:\n    - endpoint: b\n", 1,
                     SOURCE ":10:3: containerRegistries.zot.example.com:5000: duplicate registry");
}

/* ---- containerRegistries beside localRegistryCache (the chart's layout) ------------------ */

/* The values block exactly as operators write it for the management-cluster
 * cache (issue 14): the Zot endpoint must come first, and an endpoint that is
 * the origin is the origin, once. Before, this block parsed as valid and the
 * nested containerRegistries was silently ignored. */
static void test_nested_registries(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                "global:\n"
                "  components:\n"
                "    containerd:\n"
                "      localRegistryCache:\n"
                "        enabled: true\n"
                "        mirroredRegistries:\n"
                "          - registry.example.com\n"
                "          - oci.example.net\n"
                "        port: 32767\n"
                "      containerRegistries:\n"
                "        registry.example.com:\n"
                "          - endpoint: zot.mgmt.example.com\n" /* line 12 */
                "        oci.example.net:\n"
                "          - endpoint: oci.example.net\n");    /* line 14 */

        assert_int_equal(s->agent.listen_port, 32767);
        assert_int_equal(s->n_registries, 2);
        const struct spec_registry *r = assert_registry(s, 0, "registry.example.com", true, "https://registry.example.com", 2);
        assert_endpoint(r, 0, "https://zot.mgmt.example.com", false, false, 12);
        assert_endpoint(r, 1, "https://registry.example.com", true, false, 0);
        r = assert_registry(s, 1, "oci.example.net", true, "https://oci.example.net", 1);
        assert_endpoint(r, 0, "https://oci.example.net", true, false, 14);
        assert_null(s->agent.default_registry);
}

/* Registries only in the nested block are rendered (mirror: false), as at the top level. */
static void test_nested_registries_unmirrored(void **state) {
        struct fixture *f = *state;
        const struct spec *s = parse_ok(f,
                CACHE_ENABLED
                "        mirroredRegistries: [docker.io]\n"
                "      containerRegistries:\n"
                "        quay.io:\n"
                "          - endpoint: cache.example.com\n"); /* line 9 */
        assert_int_equal(s->n_registries, 2);
        assert_registry(s, 0, "docker.io", true, "https://registry-1.docker.io", 1);
        const struct spec_registry *r = assert_registry(s, 1, "quay.io", false, "https://quay.io", 2);
        assert_endpoint(r, 0, "https://cache.example.com", false, false, 9);
        assert_endpoint(r, 1, "https://quay.io", true, false, 0);
}

/* Both places at once: one would be silently unused, so neither is taken. */
static void test_nested_and_top_level(void **state) {
        struct fixture *f = *state;
        expect_error(f,
                     CACHE_ENABLED
                     "        mirroredRegistries: [docker.io]\n"
                     "      containerRegistries:\n"
                     "        docker.io:\n"
                     "          - endpoint: zot.example.com\n"
                     "containerRegistries:\n"
                     "  docker.io:\n"
                     "    - endpoint: harbor.example.com\n",
                     1,
                     SOURCE ":8:9: global.components.containerd.containerRegistries: also given at the top level "
                            "(line 11): keep one containerRegistries block");
        /* Also when the top-level block comes first in the file. */
        expect_error(f,
                     "containerRegistries:\n"
                     "  docker.io:\n"
                     "    - endpoint: harbor.example.com\n"
                     CACHE_ENABLED
                     "        mirroredRegistries: [docker.io]\n"
                     "      containerRegistries: {}\n",
                     1,
                     SOURCE ":10:28: global.components.containerd.containerRegistries: also given at the top level "
                            "(line 2): keep one containerRegistries block");
}

/* Errors inside the nested block name its own path. */
static void test_nested_errors(void **state) {
        struct fixture *f = *state;
        expect_error(f, ONE_MIRROR "      containerRegistries: [docker.io]\n", 1,
                     SOURCE ":7:28: global.components.containerd.containerRegistries: expected a mapping, got a list");
        expect_error(f, ONE_MIRROR "      containerRegistries:\n        docker.io:\n          - endpoint: ftp://x\n", 1,
                     SOURCE ":9:23: global.components.containerd.containerRegistries.docker.io[0].endpoint: "
                            "scheme must be http or https: \"ftp://x\"");
        expect_error(f, ONE_MIRROR "      containerRegistries:\n        https://ghcr.io:\n          - endpoint: zot\n", 1,
                     SOURCE ":8:9: global.components.containerd.containerRegistries: not a registry host[:port]: "
                            "\"https://ghcr.io\"");
        expect_error(f, ONE_MIRROR "      containerRegistries:\n        docker.io:\n          - endpoint: a\n"
                                   "        Docker.io:\n          - endpoint: b\n", 1,
                     SOURCE ":10:9: global.components.containerd.containerRegistries.Docker.io: duplicate key "
                            "(first at line 8)");
}

/* ---- form detection ----------------------------------------------------------------------- */

static void test_mixed_forms(void **state) {
        struct fixture *f = *state;
        expect_error(f, "registries:\n  docker.io:\ncontainerRegistries:\n  docker.io:\n    - endpoint: zot:5000\n", 1,
                     SOURCE ":3:1: mixes layerd keys (\"registries\") with Helm values keys (\"containerRegistries\"): use one form");
        expect_error(f, ONE_MIRROR "version: 1\n", 1,
                     SOURCE ":7:1: mixes layerd keys (\"version\") with Helm values keys (\"global\"): use one form");
        expect_error(f, "agent:\n  listen: 127.0.0.1:5080\n" ONE_MIRROR, 1,
                     SOURCE ":3:1: mixes layerd keys (\"agent\") with Helm values keys (\"global\"): use one form");
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
                T(test_doc_example),
                T(test_port_default),
                T(test_port_range_ends),
                T(test_order_and_unmirrored),
                T(test_enabled_false),
                T(test_enabled_absent),
                T(test_enabled_spellings),
                T(test_enabled_false_empty_list),
                T(test_endpoint_forms),
                T(test_override_path),
                T(test_endpoint_is_origin),
                T(test_docker_io_origin),
                T(test_default_registry_without_docker_io),
                T(test_host_case),
                T(test_unrelated_keys_ignored),
                T(test_endpoint_limit),
                T(test_missing_cache),
                T(test_cache_not_mapping),
                T(test_path_not_mapping),
                T(test_unknown_cache_key),
                T(test_duplicate_cache_keys),
                T(test_enabled_not_boolean),
                T(test_port_invalid),
                T(test_mirrored_not_list),
                T(test_mirrored_empty_when_enabled),
                T(test_no_registries),
                T(test_mirrored_invalid_host),
                T(test_mirrored_twice),
                T(test_several_errors),
                T(test_too_many_registries),
                T(test_registries_in_both_lists_count_once),
                T(test_errors_in_both_blocks),
                T(test_registries_not_mapping),
                T(test_registry_invalid_key),
                T(test_registry_entries_not_list),
                T(test_registry_empty_list),
                T(test_entry_unknown_key),
                T(test_entry_missing_endpoint),
                T(test_entry_not_mapping),
                T(test_endpoint_invalid),
                T(test_endpoint_user_info),
                T(test_endpoint_duplicate),
                T(test_registry_duplicate_key),
                T(test_mixed_forms),
                T(test_nested_registries),
                T(test_nested_registries_unmirrored),
                T(test_nested_and_top_level),
                T(test_nested_errors),
#undef T
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
