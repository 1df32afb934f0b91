/* SPDX-License-Identifier: Apache-2.0 */
/* The layerd form of the cluster spec: every validation rule with its exact
 * error text and position, and the model it produces. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostsconfig/spec.h"

#define CACHE "/var/lib/layerd"

static struct spec *parse_ok(const char *yaml) {
        struct spec *s = NULL;
        struct error_list errors;
        int r = spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors);
        if (r != 0) {
                error_list_print(&errors, stderr);
                fail_msg("spec did not parse: %d", r);
        }
        assert_non_null(s);
        return s;
}

/* Asserts the spec is rejected with exactly `count` errors, the first being `first`. */
static void expect_errors(const char *yaml, size_t count, const char *first) {
        struct spec *s = (struct spec *) 0x1; /* must stay untouched on failure */
        struct error_list errors;
        char buf[1024];
        int r = spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors);
        assert_int_equal(r, -EINVAL);
        assert_ptr_equal(s, (struct spec *) 0x1);
        assert_true(errors.n > 0);
        error_list_format(&errors, 0, buf, sizeof(buf));
        if (strcmp(buf, first) != 0 || error_list_count(&errors) != count) {
                error_list_print(&errors, stderr);
                fail_msg("expected %zu error(s), first \"%s\"", count, first);
        }
}

#define REG "registries: {docker.io: {}}\n"
#define EP(extra) "registries:\n  docker.io:\n    endpoints:\n      - url: https://a.example.com\n" extra

/* ---- YAML level ----------------------------------------------------------------- */

static void test_yaml_syntax(void **state) {
        (void) state;
        expect_errors("registries: [\n", 1,
                      "spec.yaml:2:1: YAML syntax error: while parsing a flow node did not find expected node content");
        expect_errors("a: 'x\n", 1,
                      "spec.yaml:2:1: YAML syntax error: while scanning a quoted scalar found unexpected end of stream");
}

static void test_yaml_shape(void **state) {
        (void) state;
        expect_errors("", 1, "spec.yaml: empty file: expected a mapping with \"registries\"");
        expect_errors("# only a comment\n", 1, "spec.yaml: empty file: expected a mapping with \"registries\"");
        expect_errors("- a\n", 1, "spec.yaml:1:1: expected a mapping at the top level, got a list");
        expect_errors("hello\n", 1, "spec.yaml:1:1: expected a mapping at the top level, got a scalar");
        expect_errors(REG "---\n" REG, 1, "spec.yaml:2:1: more than one YAML document: a spec is one document");
        expect_errors("? [a]\n: b\n" REG, 1, "spec.yaml:1:3: keys must be strings");
}

static void test_unknown_keys(void **state) {
        (void) state;
        expect_errors("regsitries:\n  docker.io: {}\n", 2,
                      "spec.yaml:1:1: unknown key \"regsitries\" (did you mean \"registries\"?)");
        expect_errors("agent:\n  listne: 127.0.0.1:1\n" REG, 1,
                      "spec.yaml:2:3: agent: unknown key \"listne\" (did you mean \"listen\"?)");
        expect_errors("agent:\n  colour: blue\n" REG, 1, "spec.yaml:2:3: agent: unknown key \"colour\"");
        expect_errors(EP("        override-path: true\n"), 1,
                      "spec.yaml:5:9: registries.docker.io.endpoints[0]: unknown key \"override-path\" "
                      "(did you mean \"override_path\"?)");
        expect_errors(EP("        tls: {ca: /ca.pem}\n"), 1,
                      "spec.yaml:5:15: registries.docker.io.endpoints[0].tls: unknown key \"ca\"");
}

static void test_duplicate_keys(void **state) {
        (void) state;
        expect_errors("agent:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n" REG, 1,
                      "spec.yaml:3:3: agent.listen: duplicate key (first at line 2)");
        expect_errors("registries:\n  docker.io: {}\n  Docker.IO: {}\n", 1,
                      "spec.yaml:3:3: registries.docker.io: duplicate registry (first at line 2)");
        expect_errors(EP("        headers: {X-A: a, x-a: b}\n"), 1,
                      "spec.yaml:5:27: registries.docker.io.endpoints[0].headers.x-a: duplicate key (first at line 5)");
        expect_errors(REG "agent: {}\nagent: {}\n", 1, "spec.yaml:3:1: agent: duplicate key (first at line 2)");
}

static void test_types(void **state) {
        (void) state;
        expect_errors("agent: [1]\n" REG, 1, "spec.yaml:1:8: agent: expected a mapping, got a list");
        expect_errors("agent:\n  listen: {a: 1}\n" REG, 1,
                      "spec.yaml:2:11: agent.listen: expected a string, got a mapping");
        expect_errors("registries: [docker.io]\n", 1, "spec.yaml:1:13: registries: expected a mapping, got a list");
        expect_errors("registries:\n  docker.io:\n    mirror: yes\n", 1,
                      "spec.yaml:3:13: registries.docker.io.mirror: expected true or false, got \"yes\"");
        expect_errors("registries:\n  docker.io:\n    mirror: [true]\n", 1,
                      "spec.yaml:3:13: registries.docker.io.mirror: expected true or false, got a list");
        expect_errors("registries:\n  docker.io:\n    origin: null\n", 1,
                      "spec.yaml:3:13: registries.docker.io.origin: expected a string, got null");
        expect_errors("registries:\n  docker.io:\n    origin: \"https://a\\0b\"\n", 1,
                      "spec.yaml:3:13: registries.docker.io.origin: contains a NUL character");
        expect_errors("registries:\n  docker.io:\n    endpoints: [~]\n", 1,
                      "spec.yaml:3:17: registries.docker.io.endpoints[0]: expected a mapping, got null");
        expect_errors("registries:\n  docker.io:\n    endpoints: https://a.example.com\n", 1,
                      "spec.yaml:3:16: registries.docker.io.endpoints: expected a list, got a scalar");
}

static void test_version(void **state) {
        (void) state;
        struct spec *s = parse_ok("version: 1\n" REG);
        spec_free(s);
        expect_errors("version: 2\n" REG, 1,
                      "spec.yaml:1:10: version: unsupported version \"2\" (this layerd reads version 1)");
}

/* ---- agent ---------------------------------------------------------------------- */

static void test_agent_defaults(void **state) {
        (void) state;
        struct spec *s = parse_ok(REG);
        assert_int_equal(s->format, SPEC_FORMAT_LAYERD);
        assert_string_equal(s->source, "spec.yaml");
        assert_string_equal(s->agent.listen_host, "127.0.0.1");
        assert_int_equal(s->agent.listen_port, 5080);
        assert_string_equal(s->agent.cache_dir, CACHE);
        assert_int_equal(s->agent.cache_max_bytes, 10ULL << 30);
        assert_true(s->agent.finish_abandoned_downloads);
        assert_string_equal(s->agent.default_registry, "docker.io");
        assert_int_equal(s->prefetch.interval_ms, 6ULL * 3600 * 1000);
        assert_int_equal(s->prefetch.concurrency, 2);
        assert_false(s->prefetch.referrers);
        assert_int_equal(s->prefetch.n_entries, 0);
        spec_free(s);
}

static void test_agent_settings(void **state) {
        (void) state;
        struct spec *s = parse_ok("agent:\n  listen: '[::1]:6000'\n  cache_dir: /srv/cache\n"
                                  "  cache_max_size: 500MB\n  default_registry: Quay.io\n"
                                  "registries: {docker.io: {}, quay.io: {}}\n");
        assert_string_equal(s->agent.listen_host, "::1");
        assert_int_equal(s->agent.listen_port, 6000);
        assert_string_equal(s->agent.cache_dir, "/srv/cache");
        assert_int_equal(s->agent.cache_max_bytes, 500ULL * 1000 * 1000);
        assert_string_equal(s->agent.default_registry, "quay.io");
        assert_null(s->agent.admin_socket); /* <cache_dir>/admin.sock, agent/admin.h */
        spec_free(s);

        s = parse_ok("agent: {admin_socket: /run/layerd/admin.sock}\n" REG);
        assert_string_equal(s->agent.admin_socket, "/run/layerd/admin.sock");
        spec_free(s);
        s = parse_ok("agent: {admin_socket: ''}\n" REG);
        assert_string_equal(s->agent.admin_socket, ""); /* none */
        spec_free(s);

        s = parse_ok("agent: {cache_max_size: 80%, cache_min_free: 2GiB}\n" REG);
        assert_int_equal(s->agent.cache_max_percent, 80);
        assert_int_equal(s->agent.cache_max_bytes, 0);
        assert_int_equal(s->agent.cache_min_free_bytes, 2ULL << 30);
        assert_int_equal(s->agent.max_inflight_memory, SPEC_DEFAULT_MAX_INFLIGHT_MEMORY);
        assert_int_equal(s->agent.cache_max_age_ms, 0); /* retention by age: off unless asked */
        spec_free(s);

        s = parse_ok("agent: {cache_max_age: 14d}\n" REG);
        assert_int_equal(s->agent.cache_max_age_ms, 14ULL * 86400 * 1000);
        spec_free(s);
        s = parse_ok("agent: {cache_max_age: 0s}\n" REG);
        assert_int_equal(s->agent.cache_max_age_ms, 0);
        spec_free(s);

        s = parse_ok("agent: {max_inflight_memory: 64MiB}\n" REG);
        assert_int_equal(s->agent.max_inflight_memory, 64ULL << 20);
        spec_free(s);

        s = parse_ok("agent: {default_registry: null}\n" REG);
        assert_null(s->agent.default_registry);
        assert_true(s->agent.finish_abandoned_downloads);
        /* The caps on upstream work: their defaults (docs/spec.md says how they were chosen)... */
        assert_int_equal(s->agent.max_downloads, SPEC_DEFAULT_MAX_DOWNLOADS);
        assert_int_equal(s->agent.max_upstream_waits, SPEC_DEFAULT_MAX_UPSTREAM_WAITS);
        assert_int_equal(s->agent.max_abandoned_downloads, SPEC_DEFAULT_MAX_ABANDONED_DOWNLOADS);
        assert_int_equal(s->agent.abandoned_download_timeout_ms, SPEC_DEFAULT_ABANDONED_DOWNLOAD_TIMEOUT_MS);
        assert_int_equal(s->agent.max_connections, SPEC_DEFAULT_MAX_CONNECTIONS);
        spec_free(s);

        /* ...and as given. */
        s = parse_ok("agent:\n  max_downloads: 4\n  max_upstream_waits: 1\n  max_abandoned_downloads: 1024\n"
                     "  abandoned_download_timeout: 90s\n  max_connections: 10000\n" REG);
        assert_int_equal(s->agent.max_connections, 10000);
        assert_int_equal(s->agent.max_downloads, 4);
        assert_int_equal(s->agent.max_upstream_waits, 1);
        assert_int_equal(s->agent.max_abandoned_downloads, 1024);
        assert_int_equal(s->agent.abandoned_download_timeout_ms, 90000);
        spec_free(s);

        /* Explicit values both ways, in more than one of the core schema's spellings. */
        static const struct {
                const char *yaml;
                bool want;
        } finish[] = {
                { "agent: {finish_abandoned_downloads: false}\n" REG, false },
                { "agent: {finish_abandoned_downloads: FALSE}\n" REG, false },
                { "agent: {finish_abandoned_downloads: true}\n" REG, true },
                { "agent: {finish_abandoned_downloads: \"True\"}\n" REG, true },
        };
        for (size_t i = 0; i < ELEMENTSOF(finish); i++) {
                s = parse_ok(finish[i].yaml);
                assert_int_equal(s->agent.finish_abandoned_downloads, finish[i].want);
                spec_free(s);
        }

        /* No docker.io: no default registry unless one is named. */
        s = parse_ok("registries: {quay.io: {}}\n");
        assert_null(s->agent.default_registry);
        spec_free(s);
}

/* agent.metrics_listen (issue 19): none by default; any address, IPv6 bracketed, or a name. */
static void test_agent_metrics_listen(void **state) {
        (void) state;
        struct spec *s = parse_ok("agent: {}\n" REG);
        assert_null(s->agent.metrics_host);
        spec_free(s);
        s = parse_ok("agent: {metrics_listen: 0.0.0.0:9580}\n" REG);
        assert_string_equal(s->agent.metrics_host, "0.0.0.0");
        assert_int_equal(s->agent.metrics_port, 9580);
        spec_free(s);
        s = parse_ok("agent: {metrics_listen: '[FD00::1]:9580'}\n" REG);
        assert_string_equal(s->agent.metrics_host, "fd00::1");
        spec_free(s);
        s = parse_ok("agent: {listen: '127.0.0.1:5080', metrics_listen: 'node-1.example:5080'}\n" REG);
        assert_string_equal(s->agent.metrics_host, "node-1.example");
        spec_free(s);
        expect_errors("agent:\n  metrics_listen: 0.0.0.0\n" REG, 1,
                      "spec.yaml:2:19: agent.metrics_listen: not a HOST:PORT address (like 127.0.0.1:5080 or "
                      "[::1]:5080): \"0.0.0.0\"");
        expect_errors("agent:\n  metrics_listen: fd00::1:9580\n" REG, 1,
                      "spec.yaml:2:19: agent.metrics_listen: not a HOST:PORT address (like 127.0.0.1:5080 or "
                      "[::1]:5080): \"fd00::1:9580\"");
        expect_errors("agent:\n  metrics_listen: [a, b]\n" REG, 1,
                      "spec.yaml:2:19: agent.metrics_listen: expected a string, got a list");
        expect_errors("agent:\n  listen: 127.0.0.1:7000\n  metrics_listen: 127.0.0.1:7000\n" REG, 1,
                      "spec.yaml:3:19: agent.metrics_listen: is agent.listen's address: the metrics listener needs a "
                      "port of its own (like 9580)");
}

static void test_agent_errors(void **state) {
        (void) state;
        expect_errors("agent:\n  listen: 127.0.0.1\n" REG, 1,
                      "spec.yaml:2:11: agent.listen: not a HOST:PORT address (like 127.0.0.1:5080 or [::1]:5080): "
                      "\"127.0.0.1\"");
        expect_errors("agent:\n  listen: 127.0.0.1:0\n" REG, 1,
                      "spec.yaml:2:11: agent.listen: not a HOST:PORT address (like 127.0.0.1:5080 or [::1]:5080): "
                      "\"127.0.0.1:0\"");
        expect_errors("agent:\n  listen: ::1:80\n" REG, 1,
                      "spec.yaml:2:11: agent.listen: not a HOST:PORT address (like 127.0.0.1:5080 or [::1]:5080): "
                      "\"::1:80\"");
        expect_errors("agent:\n  cache_dir: var/lib/layerd\n" REG, 1,
                      "spec.yaml:2:14: agent.cache_dir: not an absolute path: \"var/lib/layerd\"");
        expect_errors("agent:\n  admin_socket: run/admin.sock\n" REG, 1,
                      "spec.yaml:2:17: agent.admin_socket: not an absolute path: \"run/admin.sock\"");
        expect_errors("agent:\n  admin_socket: /run/layerd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n" REG, 1,
                      "spec.yaml:2:17: agent.admin_socket: longer than 107 bytes (a unix socket's limit)");
        expect_errors("agent:\n  cache_max_size: 10XB\n" REG, 1,
                      "spec.yaml:2:19: agent.cache_max_size: not a size (like 512MiB, 20GiB, 10GB): \"10XB\"");
        expect_errors("agent:\n  cache_max_size: 1000KiB\n" REG, 1,
                      "spec.yaml:2:19: agent.cache_max_size: must be at least 1MiB");
        expect_errors("agent:\n  cache_max_size: 0%\n" REG, 1,
                      "spec.yaml:2:19: agent.cache_max_size: a percentage must be 1% to 100%: \"0%\"");
        expect_errors("agent:\n  cache_max_size: 101%\n" REG, 1,
                      "spec.yaml:2:19: agent.cache_max_size: a percentage must be 1% to 100%: \"101%\"");
        expect_errors("agent:\n  cache_max_size: 5.5%\n" REG, 1,
                      "spec.yaml:2:19: agent.cache_max_size: a percentage must be 1% to 100%: \"5.5%\"");
        expect_errors("agent:\n  cache_min_free: lots\n" REG, 1,
                      "spec.yaml:2:19: agent.cache_min_free: not a size (like 512MiB, 20GiB, 10GB): \"lots\"");
        expect_errors("agent:\n  cache_max_age: soon\n" REG, 1,
                      "spec.yaml:2:18: agent.cache_max_age: not a duration (like 500ms, 5s, 1h30m): \"soon\"");
        expect_errors("agent:\n  cache_max_age: 500ms\n" REG, 1,
                      "spec.yaml:2:18: agent.cache_max_age: must be 0 (none) or at least 1s");
        expect_errors("agent:\n  cache_max_age: 4000d\n" REG, 1,
                      "spec.yaml:2:18: agent.cache_max_age: must be between 0s and 3650d");
        expect_errors("agent:\n  max_downloads: 0\n" REG, 1,
                      "spec.yaml:2:18: agent.max_downloads: must be between 2 and 1024");
        expect_errors("agent:\n  max_connections: 8\n" REG, 1,
                      "spec.yaml:2:20: agent.max_connections: must be between 16 and 65536");
        expect_errors("agent:\n  max_upstream_waits: 5000\n" REG, 1,
                      "spec.yaml:2:23: agent.max_upstream_waits: must be between 1 and 4096");
        expect_errors("agent:\n  max_abandoned_downloads: some\n" REG, 1,
                      "spec.yaml:2:28: agent.max_abandoned_downloads: expected an integer, got \"some\"");
        expect_errors("agent:\n  abandoned_download_timeout: 500ms\n" REG, 1,
                      "spec.yaml:2:31: agent.abandoned_download_timeout: must be between 1s and 1d");
        expect_errors("agent:\n  max_inflight_memory: much\n" REG, 1,
                      "spec.yaml:2:24: agent.max_inflight_memory: not a size (like 512MiB, 20GiB, 10GB): \"much\"");
        expect_errors("agent:\n  max_inflight_memory: 4MiB\n" REG, 1,
                      "spec.yaml:2:24: agent.max_inflight_memory: must be at least 8MiB");
        expect_errors("agent:\n  finish_abandoned_downloads: no\n" REG, 1,
                      "spec.yaml:2:31: agent.finish_abandoned_downloads: expected true or false, got \"no\"");
        expect_errors("agent:\n  finish_abandoned_downloads: 0\n" REG, 1,
                      "spec.yaml:2:31: agent.finish_abandoned_downloads: expected true or false, got \"0\"");
        expect_errors("agent:\n  finish_abandoned_downloads:\n" REG, 1,
                      "spec.yaml:2:30: agent.finish_abandoned_downloads: expected true or false, got null");
        expect_errors("agent: {finish_abandoned_downloads: [true]}\n" REG, 1,
                      "spec.yaml:1:37: agent.finish_abandoned_downloads: expected true or false, got a list");
        expect_errors("agent:\n  finish_abandoned_download: false\n" REG, 1,
                      "spec.yaml:2:3: agent: unknown key \"finish_abandoned_download\" "
                      "(did you mean \"finish_abandoned_downloads\"?)");
        expect_errors("agent:\n  default_registry: quay.io\n" REG, 1,
                      "spec.yaml:2:21: agent.default_registry: \"quay.io\" is not in registries");
        expect_errors("agent:\n  default_registry: docker.io\nregistries: {docker.io: {mirror: false}}\n", 1,
                      "spec.yaml:2:21: agent.default_registry: \"docker.io\" has mirror: false");
        /* Errors come sorted by position, whatever order the checks ran in. */
        expect_errors("agent:\n  cache_max_size: x\n  cache_dir: y\n  listen: z\n" REG, 3,
                      "spec.yaml:2:19: agent.cache_max_size: not a size (like 512MiB, 20GiB, 10GB): \"x\"");
}

/* ---- registries ----------------------------------------------------------------- */

static void test_registry_defaults(void **state) {
        (void) state;
        struct spec *s = parse_ok("registries:\n  docker.io:\n  GHCR.io: {}\n  registry.example.com:5000: {}\n");
        assert_int_equal(s->n_registries, 3);
        const struct spec_registry *r = &s->registries[0];
        assert_string_equal(r->host, "docker.io");
        assert_true(r->mirror);
        assert_string_equal(r->origin, "https://registry-1.docker.io");
        assert_int_equal(r->n_endpoints, 1);
        assert_string_equal(r->endpoints[0].url, "https://registry-1.docker.io");
        assert_true(r->endpoints[0].is_origin);
        assert_int_equal(r->endpoints[0].capabilities, SPEC_CAP_PULL | SPEC_CAP_RESOLVE);
        assert_int_equal(r->endpoints[0].connect_timeout_ms, 5000);
        assert_int_equal(r->endpoints[0].response_timeout_ms, 10000);
        assert_int_equal(r->endpoints[0].idle_timeout_ms, 30000);
        assert_false(r->endpoints[0].override_path);
        assert_int_equal(r->endpoints[0].line, 0);
        assert_int_equal(r->tag_ttl_ms, 5 * 60 * 1000);
        assert_int_equal(s->registries[1].tag_ttl_ms, SPEC_DEFAULT_TAG_TTL_MS);
        assert_string_equal(s->registries[1].host, "ghcr.io");
        assert_string_equal(s->registries[1].origin, "https://ghcr.io");
        assert_string_equal(s->registries[2].origin, "https://registry.example.com:5000");
        assert_ptr_equal(spec_find_registry(s, "GHCR.IO"), &s->registries[1]);
        assert_null(spec_find_registry(s, "quay.io"));
        spec_free(s);
}

/* Namespaced mirror paths: a mirrored registry by its path component, and
 * nothing else (not _default, not mirror: false, not a name without a dot or
 * port, which a Docker Hub namespace could have). */
static void test_registry_namespace_lookup(void **state) {
        (void) state;
        struct spec *s = parse_ok("registries:\n  docker.io:\n  Registry.Example.com:5000: {}\n  \"[FD00::1]:5000\": {}\n"
                                  "  localhost: {}\n  quay.io: {mirror: false}\n  registry: {}\n"
                                  "  _default: {endpoints: [https://zot.example.com]}\n");
        assert_ptr_equal(spec_find_registry_namespace(s, "docker.io"), spec_find_registry(s, "docker.io"));
        assert_ptr_equal(spec_find_registry_namespace(s, "registry.example.com_5000"),
                         spec_find_registry(s, "registry.example.com:5000"));
        assert_ptr_equal(spec_find_registry_namespace(s, "fd00_0_0_0_0_0_0_1_5000"),
                         spec_find_registry(s, "[fd00::1]:5000"));
        assert_ptr_equal(spec_find_registry_namespace(s, "localhost"), spec_find_registry(s, "localhost"));
        assert_non_null(spec_find_registry(s, "registry"));
        assert_null(spec_find_registry_namespace(s, "registry"));
        assert_null(spec_find_registry_namespace(s, "quay.io"));
        assert_null(spec_find_registry_namespace(s, "_default"));
        assert_null(spec_find_registry_namespace(s, "registry.example.com:5000"));
        assert_null(spec_find_registry_namespace(s, "registry.example.com"));
        assert_null(spec_find_registry_namespace(s, "Docker.io"));
        assert_null(spec_find_registry_namespace(s, ""));
        spec_free(s);
}

static void test_registry_host_canonical(void **state) {
        (void) state;
        /* One spelling per registry, so lookups by the name a client sends work,
         * and the derived origin is a canonical URL like every other. */
        struct spec *s = parse_ok("registries:\n  Example.COM:0443: {}\n  \"[FD00:0::1]:05000\": {}\n");
        assert_string_equal(s->registries[0].host, "example.com:443");
        assert_string_equal(s->registries[0].origin, "https://example.com");
        assert_string_equal(s->registries[1].host, "[fd00::1]:5000");
        assert_string_equal(s->registries[1].origin, "https://[fd00::1]:5000");
        spec_free(s);
        expect_errors("registries:\n  example.com:443: {}\n  EXAMPLE.com:0443: {}\n", 1,
                      "spec.yaml:3:3: registries.example.com:443: duplicate registry (first at line 2)");
}

static void test_registry_chain(void **state) {
        (void) state;
        struct spec *s = parse_ok(
                "registries:\n"
                "  docker.io:\n"
                "    endpoints:\n"
                "      - https://zot.example.com:5000/\n"
                "      - url: https://harbor.example.com/v2/proxy-docker.io\n"
                "        override_path: true\n"
                "        capabilities: [pull]\n"
                "        credentials_file: /etc/layerd/harbor.json\n"
                "        headers: {X-One: a, X-Two: [b, c]}\n"
                "        timeouts: {connect: 1s, response: 20s, idle: 1m30s}\n"
                "        allow_private_redirects: true\n"
                "        tls: {ca_file: /ca.pem, client_cert: /c.pem, client_key: /k.pem, insecure_skip_verify: true}\n");
        const struct spec_registry *r = &s->registries[0];
        assert_int_equal(r->n_endpoints, 3);
        assert_string_equal(r->endpoints[0].url, "https://zot.example.com:5000");
        assert_int_equal(r->endpoints[0].line, 4);
        assert_false(r->endpoints[0].is_origin);
        assert_int_equal(r->endpoints[0].connect_timeout_ms, SPEC_DEFAULT_MIRROR_CONNECT_TIMEOUT_MS);
        const struct spec_endpoint *h = &r->endpoints[1];
        assert_string_equal(h->url, "https://harbor.example.com/v2/proxy-docker.io");
        assert_true(h->override_path);
        assert_int_equal(h->capabilities, SPEC_CAP_PULL);
        assert_string_equal(h->credentials_file, "/etc/layerd/harbor.json");
        assert_int_equal(h->n_headers, 2);
        assert_string_equal(h->headers[0].name, "X-One");
        assert_int_equal(h->headers[0].n_values, 1);
        assert_string_equal(h->headers[0].values[0], "a");
        assert_int_equal(h->headers[1].n_values, 2);
        assert_string_equal(h->headers[1].values[1], "c");
        assert_int_equal(h->connect_timeout_ms, 1000);
        assert_int_equal(h->response_timeout_ms, 20000);
        assert_int_equal(h->idle_timeout_ms, 90000);
        assert_string_equal(h->ca_file, "/ca.pem");
        assert_string_equal(h->client_cert, "/c.pem");
        assert_string_equal(h->client_key, "/k.pem");
        assert_true(h->skip_verify);
        assert_true(h->allow_private_redirects);
        assert_false(r->endpoints[0].allow_private_redirects); /* the default */
        /* The origin is implied, last, with defaults. */
        assert_string_equal(r->endpoints[2].url, "https://registry-1.docker.io");
        assert_true(r->endpoints[2].is_origin);
        assert_int_equal(r->endpoints[2].connect_timeout_ms, SPEC_DEFAULT_CONNECT_TIMEOUT_MS);
        assert_int_equal(r->endpoints[2].response_timeout_ms, SPEC_DEFAULT_RESPONSE_TIMEOUT_MS);
        spec_free(s);
}

/* Pass-through of clients' credentials: on by default, its windows, line:col errors. */
static void test_registry_auth(void **state) {
        (void) state;
        struct spec *s = parse_ok("registries:\n"
                                  "  docker.io: {}\n"
                                  "  quay.io: {auth_passthrough: false}\n"
                                  "  ghcr.io: {auth_verdict_ttl: 0s, auth_outage_grace: 0s}\n"
                                  "  r.example.com: {auth_verdict_ttl: 5m, auth_outage_grace: 7d}\n");
        assert_true(s->registries[0].auth_passthrough);
        assert_int_equal(s->registries[0].auth_verdict_ttl_ms, SPEC_DEFAULT_AUTH_VERDICT_TTL_MS);
        assert_int_equal(s->registries[0].auth_outage_grace_ms, SPEC_DEFAULT_AUTH_OUTAGE_GRACE_MS);
        assert_false(s->registries[1].auth_passthrough);
        assert_int_equal(s->registries[2].auth_verdict_ttl_ms, 0);
        assert_int_equal(s->registries[2].auth_outage_grace_ms, 0);
        assert_int_equal(s->registries[3].auth_verdict_ttl_ms, 5ULL * 60 * 1000);
        assert_int_equal(s->registries[3].auth_outage_grace_ms, 7ULL * 86400 * 1000);
        spec_free(s);

        expect_errors("registries:\n  docker.io:\n    auth_passthrough: yes\n", 1,
                      "spec.yaml:3:23: registries.docker.io.auth_passthrough: expected true or false, got \"yes\"");
        expect_errors("registries:\n  docker.io:\n    auth_verdict_ttl: 2h\n", 1,
                      "spec.yaml:3:23: registries.docker.io.auth_verdict_ttl: must be between 0s and 1h");
        expect_errors("registries:\n  docker.io:\n    auth_outage_grace: 8d\n", 1,
                      "spec.yaml:3:24: registries.docker.io.auth_outage_grace: must be between 0s and 7d");
        expect_errors("registries:\n  docker.io:\n    auth_verdict_ttl: 10m\n    auth_outage_grace: 5m\n", 1,
                      "spec.yaml:4:24: registries.docker.io.auth_outage_grace: shorter than auth_verdict_ttl: "
                      "it would never apply (0s turns it off)");
        expect_errors("registries:\n  _default:\n    endpoints: [https://a.example.com]\n    auth_passthrough: true\n",
                      1, "spec.yaml:4:23: registries._default: _default takes no auth_passthrough: layerd never serves it");
}

static void test_registry_tag_ttl(void **state) {
        (void) state;
        struct spec *s = parse_ok("registries:\n"
                                  "  docker.io: {tag_ttl: 1h30m}\n"
                                  "  quay.io: {tag_ttl: 0s}\n"       /* revalidate every time */
                                  "  ghcr.io: {tag_ttl: 30d}\n"      /* the longest */
                                  "  gcr.io: {mirror: false, tag_ttl: 1m}\n"
                                  "  registry.k8s.io: {endpoints: [https://a.example.com]}\n");
        assert_int_equal(s->registries[0].tag_ttl_ms, 90ULL * 60 * 1000);
        assert_int_equal(s->registries[1].tag_ttl_ms, 0);
        assert_int_equal(s->registries[2].tag_ttl_ms, 30ULL * 86400 * 1000);
        assert_int_equal(s->registries[3].tag_ttl_ms, 60 * 1000);
        assert_int_equal(s->registries[4].tag_ttl_ms, SPEC_DEFAULT_TAG_TTL_MS);
        spec_free(s);

        expect_errors("registries:\n  docker.io:\n    tag_ttl: 5\n", 1,
                      "spec.yaml:3:14: registries.docker.io.tag_ttl: not a duration (like 500ms, 5s, 1h30m): \"5\"");
        expect_errors("registries:\n  docker.io:\n    tag_ttl: -1s\n", 1,
                      "spec.yaml:3:14: registries.docker.io.tag_ttl: not a duration (like 500ms, 5s, 1h30m): \"-1s\"");
        expect_errors("registries:\n  docker.io:\n    tag_ttl: 30d1ms\n", 1,
                      "spec.yaml:3:14: registries.docker.io.tag_ttl: must be between 0s and 30d");
        expect_errors("registries:\n  docker.io:\n    tag_ttl: 31d\n", 1,
                      "spec.yaml:3:14: registries.docker.io.tag_ttl: must be between 0s and 30d");
        expect_errors("registries:\n  docker.io:\n    tag_ttl: [1m]\n", 1,
                      "spec.yaml:3:14: registries.docker.io.tag_ttl: expected a string, got a list");
        expect_errors("registries:\n  docker.io:\n    tag_ttl: ~\n", 1,
                      "spec.yaml:3:14: registries.docker.io.tag_ttl: expected a string, got null");
        expect_errors("registries:\n  docker.io:\n    tag_tll: 1m\n", 1,
                      "spec.yaml:3:5: registries.docker.io: unknown key \"tag_tll\" (did you mean \"tag_ttl\"?)");
        /* Errors elsewhere in the registry are still reported next to it. */
        expect_errors("registries:\n  docker.io:\n    tag_ttl: soon\n    mirror: maybe\n", 2,
                      "spec.yaml:3:14: registries.docker.io.tag_ttl: not a duration (like 500ms, 5s, 1h30m): "
                      "\"soon\"");
}

static void test_registry_origin(void **state) {
        (void) state;
        /* A listed origin is the origin, in its place, and is not appended again. */
        struct spec *s = parse_ok("registries:\n  quay.io:\n    endpoints: [https://QUAY.io:443/, https://b.example.com]\n");
        const struct spec_registry *r = &s->registries[0];
        assert_int_equal(r->n_endpoints, 2);
        assert_true(r->endpoints[0].is_origin);
        assert_string_equal(r->endpoints[0].url, "https://quay.io");
        assert_false(r->endpoints[1].is_origin);
        spec_free(s);

        /* An explicit origin replaces the derived one. */
        s = parse_ok("registries:\n  registry.example.com:\n    origin: http://registry.example.com:8080\n");
        r = &s->registries[0];
        assert_string_equal(r->origin, "http://registry.example.com:8080");
        assert_string_equal(r->endpoints[0].url, "http://registry.example.com:8080");
        spec_free(s);

        /* Air-gapped: no origin at all. */
        s = parse_ok("registries:\n  docker.io:\n    fallback_to_origin: false\n    endpoints: [https://a.example.com]\n");
        r = &s->registries[0];
        assert_int_equal(r->n_endpoints, 1);
        assert_false(r->endpoints[0].is_origin);
        spec_free(s);

        expect_errors("registries:\n  docker.io:\n    fallback_to_origin: false\n", 1,
                      "spec.yaml:3:25: registries.docker.io: no endpoints: list some or set fallback_to_origin: true");
}

static void test_registry_errors(void **state) {
        (void) state;
        expect_errors("registries: {}\n", 1, "spec.yaml:1:13: registries: no registries: list at least one");
        expect_errors("agent: {}\n", 1, "spec.yaml:1:1: missing required key \"registries\"");
        expect_errors("registries:\n  \"bad host\": {}\n", 1,
                      "spec.yaml:2:3: registries: not a registry host[:port]: \"bad host\"");
        expect_errors("registries:\n  example.com:99999: {}\n", 1,
                      "spec.yaml:2:3: registries: not a registry host[:port]: \"example.com:99999\"");
        expect_errors("registries:\n  example.com/path: {}\n", 1,
                      "spec.yaml:2:3: registries: not a registry host[:port]: \"example.com/path\"");
        expect_errors("registries:\n  docker.io:\n    endpoints: []\n", 1,
                      "spec.yaml:3:16: registries.docker.io.endpoints: empty list");
        expect_errors("registries:\n  docker.io:\n    origin: registry-1.docker.io\n", 1,
                      "spec.yaml:3:13: registries.docker.io.origin: not a URL: \"registry-1.docker.io\"");
}

static void test_registry_limits(void **state) {
        (void) state;
        char *yaml = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&yaml, &len);
        assert_non_null(f);
        fputs("registries:\n", f);
        for (int i = 0; i < SPEC_REGISTRIES_MAX + 1; i++)
                fprintf(f, "  r%d.example.com: {}\n", i);
        fclose(f);
        expect_errors(yaml, 1, "spec.yaml:2:3: registries: too many registries (at most 256)");
        free(yaml);

        f = open_memstream(&yaml, &len);
        assert_non_null(f);
        fputs("registries:\n  docker.io:\n    endpoints:\n", f);
        for (int i = 0; i < SPEC_ENDPOINTS_MAX + 1; i++)
                fprintf(f, "      - https://e%d.example.com\n", i);
        fclose(f);
        expect_errors(yaml, 1,
                      "spec.yaml:4:7: registries.docker.io.endpoints: too many endpoints (at most 16 besides the origin)");
        free(yaml);

        /* 16 and the origin listed too (as check-config prints them): fine. */
        f = open_memstream(&yaml, &len);
        assert_non_null(f);
        fputs("registries:\n  docker.io:\n    endpoints:\n", f);
        for (int i = 0; i < SPEC_ENDPOINTS_MAX; i++)
                fprintf(f, "      - https://e%d.example.com\n", i);
        fputs("      - https://registry-1.docker.io\n", f);
        fclose(f);
        struct spec *s = parse_ok(yaml);
        assert_int_equal(s->registries[0].n_endpoints, SPEC_ENDPOINTS_MAX + 1);
        spec_free(s);
        free(yaml);

        /* 18 items is too many whatever they are. */
        f = open_memstream(&yaml, &len);
        assert_non_null(f);
        fputs("registries:\n  docker.io:\n    endpoints:\n", f);
        for (int i = 0; i < SPEC_ENDPOINTS_MAX + 2; i++)
                fprintf(f, "      - https://e%d.example.com\n", i);
        fclose(f);
        expect_errors(yaml, 1,
                      "spec.yaml:4:7: registries.docker.io.endpoints: too many endpoints (at most 16 besides the origin)");
        free(yaml);
}

/* ---- endpoints ------------------------------------------------------------------- */

static void test_endpoint_url(void **state) {
        (void) state;
        /* The issue's own example. */
        expect_errors("registries:\n  docker.io:\n    endpoints:\n      - url: https://a.example.com\n      - url: \"zot:\"\n",
                      1, "spec.yaml:5:14: registries.docker.io.endpoints[1].url: not a URL: \"zot:\"");
        expect_errors("registries:\n  docker.io:\n    endpoints: [\"https://u:p@a.example.com\"]\n", 1,
                      "spec.yaml:3:17: registries.docker.io.endpoints[0].url: user info in a URL is not allowed "
                      "(use credentials_file): \"https://***@a.example.com\"");
        /* The secret stays out of the message even when the URL is wrong in other ways too. */
        expect_errors("registries:\n  docker.io:\n    endpoints: [\"https://user:s3cr@t@a..example.com/x\"]\n", 1,
                      "spec.yaml:3:17: registries.docker.io.endpoints[0].url: user info in a URL is not allowed "
                      "(use credentials_file): \"https://***@a..example.com/x\"");
        expect_errors("registries:\n  docker.io:\n    endpoints: [ftp://a.example.com]\n", 1,
                      "spec.yaml:3:17: registries.docker.io.endpoints[0].url: scheme must be http or https: "
                      "\"ftp://a.example.com\"");
        expect_errors("registries:\n  docker.io:\n    endpoints: [\"https://a.example.com/?x=1\"]\n", 1,
                      "spec.yaml:3:17: registries.docker.io.endpoints[0].url: query or fragment in a URL is not "
                      "allowed: \"https://a.example.com/?x=1\"");
        expect_errors("registries:\n  docker.io:\n    endpoints: [\"https://a..example.com\"]\n", 1,
                      "spec.yaml:3:17: registries.docker.io.endpoints[0].url: invalid host or port: "
                      "\"https://a..example.com\"");
        /* containerd treats a path ending in /v2 as the API root: say so. */
        expect_errors("registries:\n  docker.io:\n    endpoints: [https://cache.example.com/v2/]\n", 1,
                      "spec.yaml:3:17: registries.docker.io.endpoints[0].url: path ends in /v2, which makes it the "
                      "API root: set override_path: true");
        struct spec *v2 = parse_ok("registries:\n  docker.io:\n    endpoints:\n      - {url: https://c.example.com/v2, "
                                   "override_path: true}\n      - https://c.example.com/v2x\n");
        assert_true(v2->registries[0].endpoints[0].override_path);
        spec_free(v2);
        expect_errors("registries:\n  docker.io:\n    endpoints:\n      - capabilities: [pull]\n", 1,
                      "spec.yaml:4:9: registries.docker.io.endpoints[0]: missing required key \"url\"");
        /* Same endpoint twice once normalised. */
        expect_errors("registries:\n  docker.io:\n    endpoints:\n      - https://a.example.com/\n"
                      "      - url: https://A.example.com:443\n",
                      1,
                      "spec.yaml:5:9: registries.docker.io.endpoints[1]: duplicate endpoint "
                      "\"https://a.example.com\" (first at line 4)");
}

static void test_endpoint_capabilities(void **state) {
        (void) state;
        expect_errors(EP("        capabilities: [pull, push, fetch]\n"), 2,
                      "spec.yaml:5:30: registries.docker.io.endpoints[0].capabilities[1]: \"push\" is not "
                      "supported: layerd is pull-only");
        expect_errors(EP("        capabilities: [pull, fetch]\n"), 1,
                      "spec.yaml:5:30: registries.docker.io.endpoints[0].capabilities[1]: unknown capability "
                      "\"fetch\" (pull or resolve)");
        expect_errors(EP("        capabilities: []\n"), 1,
                      "spec.yaml:5:23: registries.docker.io.endpoints[0].capabilities: empty list");
        expect_errors(EP("        capabilities: [pull, pull]\n"), 1,
                      "spec.yaml:5:30: registries.docker.io.endpoints[0].capabilities[1]: \"pull\" listed twice");
        struct spec *s = parse_ok(EP("        capabilities: [resolve]\n"));
        assert_int_equal(s->registries[0].endpoints[0].capabilities, SPEC_CAP_RESOLVE);
        spec_free(s);
}

static void test_endpoint_tls(void **state) {
        (void) state;
        expect_errors("registries:\n  docker.io:\n    endpoints:\n      - url: http://a.example.com\n"
                      "        tls: {ca_file: /ca.pem}\n",
                      1, "spec.yaml:5:14: registries.docker.io.endpoints[0].tls: TLS settings need an https:// URL");
        expect_errors(EP("        tls: {client_key: /k.pem}\n"), 1,
                      "spec.yaml:5:27: registries.docker.io.endpoints[0].tls.client_key: needs client_cert");
        expect_errors(EP("        tls: {ca_file: ca.pem}\n"), 1,
                      "spec.yaml:5:24: registries.docker.io.endpoints[0].tls.ca_file: not an absolute path: \"ca.pem\"");
        expect_errors(EP("        tls: {insecure_skip_verify: 1}\n"), 1,
                      "spec.yaml:5:37: registries.docker.io.endpoints[0].tls.insecure_skip_verify: expected true "
                      "or false, got \"1\"");
        /* A certificate alone: its file holds the key too. */
        struct spec *s = parse_ok(EP("        tls: {client_cert: /bundle.pem}\n"));
        assert_string_equal(s->registries[0].endpoints[0].client_cert, "/bundle.pem");
        assert_null(s->registries[0].endpoints[0].client_key);
        spec_free(s);
}

/* credential_helper: a mapping or the command alone; never with credentials_file. */
static void test_endpoint_credential_helper(void **state) {
        (void) state;
        struct spec *s = parse_ok(EP("        credential_helper: {command: /usr/bin/docker-credential-ecr-login, "
                                     "lifetime: 6h, timeout: 10s}\n"));
        const struct spec_endpoint *e = &s->registries[0].endpoints[0];
        assert_string_equal(e->credential_helper, "/usr/bin/docker-credential-ecr-login");
        assert_int_equal(e->credential_helper_lifetime_ms, 6ULL * 3600 * 1000);
        assert_int_equal(e->credential_helper_timeout_ms, 10000);
        spec_free(s);
        s = parse_ok(EP("        credential_helper: /usr/bin/docker-credential-gcr\n"));
        e = &s->registries[0].endpoints[0];
        assert_string_equal(e->credential_helper, "/usr/bin/docker-credential-gcr");
        assert_int_equal(e->credential_helper_lifetime_ms, SPEC_DEFAULT_CREDENTIAL_HELPER_LIFETIME_MS);
        assert_int_equal(e->credential_helper_timeout_ms, SPEC_DEFAULT_CREDENTIAL_HELPER_TIMEOUT_MS);
        spec_free(s);
        expect_errors(EP("        credential_helper: docker-credential-gcr\n"), 1,
                      "spec.yaml:5:28: registries.docker.io.endpoints[0].credential_helper: not an absolute path: "
                      "\"docker-credential-gcr\"");
        expect_errors(EP("        credential_helper: {lifetime: 1m}\n"), 1,
                      "spec.yaml:5:28: registries.docker.io.endpoints[0].credential_helper: missing required key "
                      "\"command\"");
        expect_errors(EP("        credential_helper: {command: /h, timeout: 2m}\n"), 1,
                      "spec.yaml:5:51: registries.docker.io.endpoints[0].credential_helper.timeout: must be between "
                      "100ms and 1m");
        expect_errors(EP("        credential_helper: {command: /h, args: [x]}\n"), 1,
                      "spec.yaml:5:42: registries.docker.io.endpoints[0].credential_helper: unknown key \"args\"");
        expect_errors(EP("        credentials_file: /c.json\n        credential_helper: /h\n"), 1,
                      "spec.yaml:6:28: registries.docker.io.endpoints[0].credential_helper: credentials_file and "
                      "credential_helper exclude each other");
}

static void test_endpoint_headers(void **state) {
        (void) state;
        expect_errors(EP("        headers: {authorization: Bearer x}\n"), 1,
                      "spec.yaml:5:19: registries.docker.io.endpoints[0].headers.authorization: secrets do not "
                      "belong in the spec: use credentials_file");
        expect_errors(EP("        headers: {Cookie: a=b}\n"), 1,
                      "spec.yaml:5:19: registries.docker.io.endpoints[0].headers.Cookie: secrets do not belong "
                      "in the spec: use credentials_file");
        expect_errors(EP("        headers: {\"bad name\": x}\n"), 1,
                      "spec.yaml:5:19: registries.docker.io.endpoints[0].headers.bad name: not a valid header name");
        expect_errors(EP("        headers: {X-A: \"a\\r\\nX-Injected: 1\"}\n"), 1,
                      "spec.yaml:5:24: registries.docker.io.endpoints[0].headers.X-A: header values cannot "
                      "contain line breaks");
        expect_errors(EP("        headers: {X-A: \"a\\x01b\"}\n"), 1,
                      "spec.yaml:5:24: registries.docker.io.endpoints[0].headers.X-A: header values cannot "
                      "contain control characters");
        struct spec *t = parse_ok(EP("        headers: {X-A: \"a\\tb\"}\n"));
        assert_string_equal(t->registries[0].endpoints[0].headers[0].values[0], "a\tb");
        spec_free(t);
        expect_errors(EP("        headers: {X-A: []}\n"), 1,
                      "spec.yaml:5:24: registries.docker.io.endpoints[0].headers.X-A: empty list");
        expect_errors(EP("        headers: [X-A]\n"), 1,
                      "spec.yaml:5:18: registries.docker.io.endpoints[0].headers: expected a mapping, got a list");
}

static void test_endpoint_timeouts(void **state) {
        (void) state;
        expect_errors(EP("        timeouts: {connect: 5}\n"), 1,
                      "spec.yaml:5:29: registries.docker.io.endpoints[0].timeouts.connect: not a duration (like "
                      "500ms, 5s, 1h30m): \"5\"");
        expect_errors(EP("        timeouts: {idle: 2h}\n"), 1,
                      "spec.yaml:5:26: registries.docker.io.endpoints[0].timeouts.idle: must be between 1ms and 1h");
        expect_errors(EP("        timeouts: {connect: 0s}\n"), 1,
                      "spec.yaml:5:29: registries.docker.io.endpoints[0].timeouts.connect: must be between 1ms and 1h");
        expect_errors(EP("        timeouts: {total: 5s}\n"), 1,
                      "spec.yaml:5:20: registries.docker.io.endpoints[0].timeouts: unknown key \"total\"");

        struct spec *s = parse_ok(EP("        timeouts: {response: 1ms}\n"));
        const struct spec_endpoint *e = &s->registries[0].endpoints[0];
        assert_int_equal(e->response_timeout_ms, 1);
        assert_int_equal(e->connect_timeout_ms, SPEC_DEFAULT_MIRROR_CONNECT_TIMEOUT_MS);
        assert_int_equal(e->idle_timeout_ms, SPEC_DEFAULT_IDLE_TIMEOUT_MS);
        spec_free(s);
        s = parse_ok(EP("        timeouts: {connect: 1s, response: 1h, idle: 2m}\n"));
        assert_int_equal(s->registries[0].endpoints[0].response_timeout_ms, 3600 * 1000);
        spec_free(s);
        expect_errors(EP("        timeouts: {response: 0s}\n"), 1,
                      "spec.yaml:5:30: registries.docker.io.endpoints[0].timeouts.response: must be between 1ms and 1h");
        expect_errors(EP("        timeouts: {response: 1h1ms}\n"), 1,
                      "spec.yaml:5:30: registries.docker.io.endpoints[0].timeouts.response: must be between 1ms and 1h");
        expect_errors(EP("        timeouts: {response: 10}\n"), 1,
                      "spec.yaml:5:30: registries.docker.io.endpoints[0].timeouts.response: not a duration (like "
                      "500ms, 5s, 1h30m): \"10\"");
        expect_errors(EP("        timeouts:\n          respones: 5s\n"), 1,
                      "spec.yaml:6:11: registries.docker.io.endpoints[0].timeouts: unknown key \"respones\" (did you "
                      "mean \"response\"?)");
}

/* r has n endpoints, with these connect timeouts (ms); endpoint origin is the origin (-1: none is). */
static void assert_connect_ms(const struct spec_registry *r, int origin, size_t n, const uint64_t *want) {
        assert_int_equal(r->n_endpoints, n);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(r->endpoints[i].is_origin, (int) i == origin);
                assert_int_equal(r->endpoints[i].connect_timeout_ms, want[i]);
        }
}

static void test_endpoint_connect_default(void **state) {
        (void) state;
        assert_int_equal(SPEC_DEFAULT_CONNECT_TIMEOUT_MS, 5000);
        assert_int_equal(SPEC_DEFAULT_MIRROR_CONNECT_TIMEOUT_MS, 1000);

        /* A mirror gets 1s, the implied origin 5s; given values win on both,
         * including a mirror's 5s and an origin's 1s. */
        struct spec *s = parse_ok("registries:\n"
                                  "  docker.io:\n"
                                  "    endpoints:\n"
                                  "      - https://a.example.com\n"
                                  "      - {url: https://b.example.com, timeouts: {connect: 5s}}\n"
                                  "      - {url: https://c.example.com, timeouts: {response: 3s}}\n"
                                  "  quay.io:\n"
                                  "    endpoints:\n"
                                  "      - {url: https://quay.io, timeouts: {connect: 1s}}\n"
                                  "      - {url: https://d.example.com, timeouts: {connect: 250ms}}\n");
        assert_connect_ms(&s->registries[0], 3, 4, (const uint64_t[]) { 1000, 5000, 1000, 5000 });
        assert_int_equal(s->registries[0].endpoints[2].response_timeout_ms, 3000);
        assert_connect_ms(&s->registries[1], 0, 2, (const uint64_t[]) { 1000, 250 });
        spec_free(s);

        /* An endpoint whose URL is the origin (as written or once normalised) is
         * the origin: 5s wherever it is listed, also without fallback_to_origin. */
        s = parse_ok("registries:\n"
                     "  quay.io:\n"
                     "    endpoints: [https://a.example.com, https://QUAY.io:443/, https://b.example.com]\n"
                     "  registry.example.com:\n"
                     "    origin: http://registry.example.com:8080\n"
                     "    endpoints: [http://registry.example.com:8080, https://c.example.com]\n"
                     "  ghcr.io:\n"
                     "    fallback_to_origin: false\n"
                     "    endpoints: [https://d.example.com, https://ghcr.io]\n");
        assert_connect_ms(&s->registries[0], 1, 3, (const uint64_t[]) { 1000, 5000, 1000 });
        assert_connect_ms(&s->registries[1], 0, 2, (const uint64_t[]) { 5000, 1000 });
        assert_connect_ms(&s->registries[2], 1, 2, (const uint64_t[]) { 1000, 5000 });
        spec_free(s);

        /* Without an origin every endpoint is a mirror: air-gapped, and
         * containerd's catch-all. A registry layerd does not serve keeps its
         * implied origin (for containerd), at 5s. */
        s = parse_ok("registries:\n"
                     "  docker.io:\n"
                     "    fallback_to_origin: false\n"
                     "    endpoints: [https://a.example.com]\n"
                     "  registry.example.com:\n"
                     "    mirror: false\n"
                     "    endpoints: [https://b.example.com]\n"
                     "  _default:\n"
                     "    endpoints: [https://c.example.com]\n");
        assert_connect_ms(&s->registries[0], -1, 1, (const uint64_t[]) { 1000 });
        assert_connect_ms(&s->registries[1], 1, 2, (const uint64_t[]) { 1000, 5000 });
        assert_connect_ms(&s->registries[2], -1, 1, (const uint64_t[]) { 1000 });
        spec_free(s);
}

static void test_alias_expansion_bounded(void **state) {
        (void) state;
        /* A few kilobytes of aliases naming gigabytes: refused, fast, with one error. */
        char *yaml = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&yaml, &len);
        assert_non_null(f);
        fputs("registries:\n  r0.example.com:\n    endpoints:\n      - url: https://a.example.com\n        headers: &h\n", f);
        fputs("          X-0: [&v \"", f);
        for (int i = 0; i < 4000; i++)
                fputc('x', f);
        fputs("\"]\n", f);
        for (int i = 1; i < 32; i++)
                fprintf(f, "          X-%d: [*v, *v, *v, *v, *v, *v, *v, *v, *v, *v, *v, *v, *v, *v, *v, *v]\n", i);
        for (int r = 1; r < 64; r++) {
                fprintf(f, "  r%d.example.com:\n    endpoints:\n", r);
                for (int e = 0; e < 16; e++)
                        fprintf(f, "      - {url: https://a%d.example.com, headers: *h}\n", e);
        }
        fclose(f);
        assert_true(len < 64 * 1024);
        struct spec *s = NULL;
        struct error_list errors;
        assert_int_equal(spec_parse("spec.yaml", yaml, len, CACHE, &s, &errors), -EINVAL);
        assert_int_equal(error_list_count(&errors), 1);
        assert_non_null(strstr(errors.items[0].message, "the spec expands to more than 4194304 bytes (through YAML aliases?)"));
        free(yaml);
}

static void test_anchors(void **state) {
        (void) state;
        /* Anchors and aliases are plain YAML and work like the copied text. */
        struct spec *s = parse_ok("registries:\n"
                                  "  docker.io:\n"
                                  "    endpoints:\n"
                                  "      - &zot {url: https://zot.example.com, timeouts: {connect: 1s}}\n"
                                  "  quay.io:\n"
                                  "    endpoints: [*zot]\n");
        assert_string_equal(s->registries[1].endpoints[0].url, "https://zot.example.com");
        assert_int_equal(s->registries[1].endpoints[0].connect_timeout_ms, 1000);
        spec_free(s);
}

/* ---- _default and hosts ----------------------------------------------------------- */

static void test_default_registry_entry(void **state) {
        (void) state;
        struct spec *s = parse_ok("registries:\n  docker.io: {}\n  _default:\n    endpoints: [https://zot.example.com]\n");
        const struct spec_registry *d = spec_find_registry(s, "_default");
        assert_non_null(d);
        assert_false(d->mirror);
        assert_null(d->origin);
        assert_int_equal(d->n_endpoints, 1);
        assert_false(d->endpoints[0].is_origin);
        spec_free(s);
        expect_errors("registries:\n  _default:\n    mirror: true\n    endpoints: [https://z.example.com]\n", 1,
                      "spec.yaml:3:13: registries._default: _default cannot be mirrored by layerd (that would make "
                      "it an open proxy)");
        expect_errors("registries:\n  _default:\n    origin: https://a.example.com\n    endpoints: [https://z.example.com]\n",
                      1, "spec.yaml:3:13: registries._default: _default has no origin: containerd uses the registry a "
                         "pull names");
        /* No tags are cached for _default, so there is nothing to revalidate. */
        expect_errors("registries:\n  _default:\n    tag_ttl: 1m\n    endpoints: [https://z.example.com]\n", 1,
                      "spec.yaml:3:14: registries._default: _default takes no tag_ttl: layerd never serves it, so "
                      "it caches no tags");
        expect_errors("registries:\n  _default:\n    tag_ttl: 0s\n    endpoints: [https://z.example.com]\n", 1,
                      "spec.yaml:3:14: registries._default: _default takes no tag_ttl: layerd never serves it, so "
                      "it caches no tags");
        expect_errors("registries:\n  _default: {}\n", 1,
                      "spec.yaml:2:13: registries._default: missing required key \"endpoints\"");
        expect_errors("registries:\n  _default:\n", 1,
                      "spec.yaml:2:12: registries._default: expected a mapping, got null");
        expect_errors("agent: {default_registry: _default}\nregistries:\n  _default: {endpoints: [https://z.example.com]}\n",
                      1, "spec.yaml:1:27: agent.default_registry: \"_default\" has mirror: false");
}

static void test_hosts_section(void **state) {
        (void) state;
        /* auto is the default: unresolved (code 0) until the agent asks containerd. */
        struct spec *s = parse_ok(REG);
        assert_string_equal(s->hosts.containerd_version, "auto");
        assert_true(s->hosts.containerd_version_auto);
        assert_int_equal(s->hosts.containerd_version_code, 0);
        assert_int_equal(spec_containerd_version_code(s), 10600);
        spec_free(s);
        s = parse_ok(REG "hosts: {containerd_version: auto}\n");
        assert_true(s->hosts.containerd_version_auto);
        assert_int_equal(s->hosts.containerd_version_code, 0);
        spec_free(s);
        s = parse_ok(REG "hosts: {containerd_version: 2.0.7}\n");
        assert_false(s->hosts.containerd_version_auto);
        assert_int_equal(s->hosts.containerd_version_code, 20007);
        assert_int_equal(spec_containerd_version_code(s), 20007);
        spec_free(s);
        s = parse_ok(REG "hosts: {containerd_version: \"1.6\"}\n");
        assert_false(s->hosts.containerd_version_auto);
        assert_string_equal(s->hosts.containerd_version, "1.6");
        assert_int_equal(s->hosts.containerd_version_code, 10600);
        spec_free(s);
        expect_errors(REG "hosts: {containerd_version: \"2\"}\n", 1,
                      "spec.yaml:2:29: hosts.containerd_version: not a version (like 1.7 or 2.0.7) or auto: \"2\"");
        expect_errors(REG "hosts: {containerd_version: v1.7}\n", 1,
                      "spec.yaml:2:29: hosts.containerd_version: not a version (like 1.7 or 2.0.7) or auto: \"v1.7\"");
        expect_errors(REG "hosts: {containerd_version: 1.7.100}\n", 1,
                      "spec.yaml:2:29: hosts.containerd_version: not a version (like 1.7 or 2.0.7) or auto: \"1.7.100\"");
        expect_errors(REG "hosts: {containerd_version: Auto}\n", 1,
                      "spec.yaml:2:29: hosts.containerd_version: not a version (like 1.7 or 2.0.7) or auto: \"Auto\"");
        expect_errors(REG "hosts: {containerd: 1.7}\n", 1,
                      "spec.yaml:2:9: hosts: unknown key \"containerd\" (did you mean \"containerd_version\"?)");
}

/* ---- prefetch ------------------------------------------------------------------- */

static void test_prefetch_model(void **state) {
        (void) state;
        struct spec *s = parse_ok("registries: {docker.io: {}, quay.io: {}}\n"
                                  "prefetch:\n"
                                  "  interval: 30m\n"
                                  "  concurrency: 4\n"
                                  "  bandwidth: 10MiB\n"
                                  "  wait_ready: true\n"
                                  "  wait_ready_timeout: 90s\n"
                                  "  referrers: true\n"
                                  "  platforms: [linux/amd64, linux/arm64/v8]\n"
                                  "  images:\n"
                                  "    - nginx\n"
                                  "    - image: quay.io/org/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                                  "      platforms: [linux/s390x]\n"
                                  "    - repository: quay.io/prometheus/node-exporter\n"
                                  "      tags: {regex: '^v1\\.', semver: '>=1.7 <2 || ^3', newest: 3}\n");
        const struct spec_prefetch *p = &s->prefetch;
        assert_int_equal(p->interval_ms, 30 * 60 * 1000);
        assert_int_equal(p->concurrency, 4);
        assert_int_equal(p->bandwidth_bps, 10 << 20);
        assert_true(p->wait_ready);
        assert_int_equal(p->wait_ready_timeout_ms, 90 * 1000);
        assert_true(p->referrers);
        assert_int_equal(p->n_platforms, 2);
        assert_string_equal(p->platforms[1], "linux/arm64/v8");
        assert_int_equal(p->n_entries, 3);
        assert_string_equal(p->entries[0].image, "docker.io/library/nginx:latest");
        assert_string_equal(p->entries[0].registry, "docker.io");
        assert_null(p->entries[0].repository);
        assert_string_equal(p->entries[1].image,
                            "quay.io/org/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_int_equal(p->entries[1].n_platforms, 1);
        assert_string_equal(p->entries[2].repository, "quay.io/prometheus/node-exporter");
        assert_null(p->entries[2].image);
        assert_string_equal(p->entries[2].tag_regex, "^v1\\.");
        assert_string_equal(p->entries[2].tag_semver, ">=1.7 <2 || ^3");
        assert_int_equal(p->entries[2].newest, 3);
        spec_free(s);
}

static void test_prefetch_errors(void **state) {
        (void) state;
        expect_errors(REG "prefetch:\n  interval: 10s\n", 1,
                      "spec.yaml:3:13: prefetch.interval: must be between 1m and 365d");
        expect_errors(REG "prefetch:\n  wait_ready: maybe\n", 1,
                      "spec.yaml:3:15: prefetch.wait_ready: expected true or false, got \"maybe\"");
        expect_errors(REG "prefetch:\n  referrers: yes please\n", 1,
                      "spec.yaml:3:14: prefetch.referrers: expected true or false, got \"yes please\"");
        expect_errors(REG "prefetch:\n  wait_ready_timeout: 2d\n", 1,
                      "spec.yaml:3:23: prefetch.wait_ready_timeout: must be between 1s and 1d");
        expect_errors(REG "prefetch:\n  concurrency: 0\n", 1,
                      "spec.yaml:3:16: prefetch.concurrency: must be between 1 and 64");
        expect_errors(REG "prefetch:\n  concurrency: two\n", 1,
                      "spec.yaml:3:16: prefetch.concurrency: expected an integer, got \"two\"");
        expect_errors(REG "prefetch:\n  platforms: [linux]\n", 1,
                      "spec.yaml:3:15: prefetch.platforms[0]: not a platform (os/arch[/variant], like linux/arm64): "
                      "\"linux\"");
        expect_errors(REG "prefetch:\n  images: []\n", 1, "spec.yaml:3:11: prefetch.images: empty list");
        expect_errors(REG "prefetch:\n  images: [Nginx]\n", 1,
                      "spec.yaml:3:12: prefetch.images[0]: invalid repository name (lower-case components "
                      "separated by '/'): \"Nginx\"");
        expect_errors(REG "prefetch:\n  images: [\"nginx@sha256:abc\"]\n", 1,
                      "spec.yaml:3:12: prefetch.images[0]: invalid digest (sha256:<64 hex> or sha512:<128 hex>): "
                      "\"nginx@sha256:abc\"");
        expect_errors(REG "prefetch:\n  images:\n    - repository: redis:7\n", 1,
                      "spec.yaml:4:19: prefetch.images[0].repository: a repository takes no tag or digest: \"redis:7\"");
        expect_errors(REG "prefetch:\n  images:\n    - image: nginx\n      tags: {newest: 1}\n", 1,
                      "spec.yaml:5:13: prefetch.images[0].tags: tag filters apply to a \"repository\", not an "
                      "\"image\"");
        expect_errors(REG "prefetch:\n  images:\n    - {image: a, repository: b}\n", 1,
                      "spec.yaml:4:7: prefetch.images[0]: needs exactly one of \"image\" or \"repository\"");
        expect_errors(REG "prefetch:\n  images:\n    - repository: redis\n      tags: {regex: \"(\"}\n", 1,
                      "spec.yaml:5:21: prefetch.images[0].tags.regex: not a valid extended regular expression: "
                      "Unmatched ( or \\(");
        expect_errors(REG "prefetch:\n  images:\n    - repository: redis\n      tags: {semver: \">=1.x.2.3\"}\n", 1,
                      "spec.yaml:5:22: prefetch.images[0].tags.semver: not a semver range (like \">=1.2 <2\" or "
                      "\"~1.27\"): \">=1.x.2.3\"");
        expect_errors(REG "prefetch:\n  images:\n    - repository: redis\n      tags: {semver: \"|| 1\"}\n", 1,
                      "spec.yaml:5:22: prefetch.images[0].tags.semver: not a semver range (like \">=1.2 <2\" or "
                      "\"~1.27\"): \"|| 1\"");
        expect_errors(REG "prefetch:\n  images:\n    - repository: redis\n      tags: {newest: 0}\n", 1,
                      "spec.yaml:5:22: prefetch.images[0].tags.newest: must be between 1 and 1000");
        /* Prefetch goes through layerd: only mirrored registries of the spec. */
        expect_errors(REG "prefetch:\n  images: [quay.io/a/b]\n", 1,
                      "spec.yaml:3:12: prefetch.images[0]: registry \"quay.io\" is not in registries");
        expect_errors("registries: {docker.io: {}, quay.io: {mirror: false}}\nprefetch:\n  images: [quay.io/a/b]\n", 1,
                      "spec.yaml:3:12: prefetch.images[0]: registry \"quay.io\" is not mirrored (mirror: false)");
}

/* ---- every error reported, nothing half-applied ------------------------------------ */

static void test_many_errors(void **state) {
        (void) state;
        char *yaml = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&yaml, &len);
        assert_non_null(f);
        fputs("registries:\n  docker.io:\n    endpoints:\n", f);
        for (int i = 0; i < 16; i++)
                fprintf(f, "      - {url: \"x%d\", capabilities: [push]}\n", i);
        fclose(f);
        struct spec *s = NULL;
        struct error_list errors;
        assert_int_equal(spec_parse("spec.yaml", yaml, len, CACHE, &s, &errors), -EINVAL);
        assert_null(s);
        assert_int_equal(errors.n, ERROR_LIST_MAX);
        assert_int_equal(error_list_count(&errors), 32);
        assert_int_equal(errors.dropped, 12);
        free(yaml);
}

/* ---- loading ---------------------------------------------------------------------- */

static void test_load_file(void **state) {
        (void) state;
        char path[] = "/tmp/test-spec-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        const char *yaml = "agent:\n  listen: 127.0.0.1:7000\n" REG;
        assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t) strlen(yaml));
        close(fd);

        struct spec *s = NULL;
        struct error_list errors;
        assert_int_equal(spec_load_file(path, CACHE, &s, &errors), 0);
        assert_string_equal(s->source, path);
        assert_int_equal(s->agent.listen_port, 7000);
        spec_free(s);
        s = NULL;

        /* Errors name the file. */
        assert_true(truncate(path, 0) == 0);
        assert_int_equal(spec_load_file(path, CACHE, &s, &errors), -EINVAL);
        assert_string_equal(errors.source, path);
        unlink(path);

        assert_int_equal(spec_load_file(path, CACHE, &s, &errors), -ENOENT);
        char buf[512], want[512];
        error_list_format(&errors, 0, buf, sizeof(buf));
        snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
        assert_string_equal(buf, want);
        assert_null(s);

        assert_int_equal(spec_load_file("/tmp", CACHE, &s, &errors), -EINVAL);
        error_list_format(&errors, 0, buf, sizeof(buf));
        assert_string_equal(buf, "/tmp: not a regular file");
}

static void test_too_large(void **state) {
        (void) state;
        size_t size = SPEC_FILE_MAX + 1;
        char *big = malloc(size + 1);
        assert_non_null(big);
        memset(big, '#', size);
        big[size] = '\0';
        struct spec *s = NULL;
        struct error_list errors;
        assert_int_equal(spec_parse("spec.yaml", big, size, CACHE, &s, &errors), -EFBIG);
        char buf[256];
        error_list_format(&errors, 0, buf, sizeof(buf));
        assert_string_equal(buf, "spec.yaml: larger than 1048576 bytes");

        char path[] = "/tmp/test-spec-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, big, size), (ssize_t) size);
        close(fd);
        assert_int_equal(spec_load_file(path, CACHE, &s, &errors), -EFBIG);
        assert_null(s);
        unlink(path);
        free(big);
}

static void test_builtin(void **state) {
        (void) state;
        struct spec *s = NULL;
        struct error_list errors;
        assert_int_equal(spec_load_default("/home/u/.cache/layerd", &s, &errors), 0);
        assert_int_equal(s->format, SPEC_FORMAT_BUILTIN);
        assert_string_equal(s->agent.listen_host, "127.0.0.1");
        assert_int_equal(s->agent.listen_port, SPEC_DEFAULT_PORT);
        assert_string_equal(s->agent.cache_dir, "/home/u/.cache/layerd");
        assert_true(s->agent.finish_abandoned_downloads);
        assert_string_equal(s->agent.default_registry, "docker.io");
        static const char *const hosts[] = { "docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io" };
        assert_int_equal(s->n_registries, 5);
        for (size_t i = 0; i < 5; i++) {
                assert_string_equal(s->registries[i].host, hosts[i]);
                assert_true(s->registries[i].mirror);
                assert_int_equal(s->registries[i].n_endpoints, 1);
                assert_true(s->registries[i].endpoints[0].is_origin);
                assert_int_equal(s->registries[i].endpoints[0].connect_timeout_ms, SPEC_DEFAULT_CONNECT_TIMEOUT_MS);
        }
        spec_free(s);
        assert_null(spec_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_yaml_syntax),
                cmocka_unit_test(test_yaml_shape),
                cmocka_unit_test(test_unknown_keys),
                cmocka_unit_test(test_duplicate_keys),
                cmocka_unit_test(test_types),
                cmocka_unit_test(test_version),
                cmocka_unit_test(test_agent_defaults),
                cmocka_unit_test(test_agent_settings),
                cmocka_unit_test(test_agent_errors),
                cmocka_unit_test(test_agent_metrics_listen),
                cmocka_unit_test(test_registry_namespace_lookup),
                cmocka_unit_test(test_registry_defaults),
                cmocka_unit_test(test_registry_host_canonical),
                cmocka_unit_test(test_registry_chain),
                cmocka_unit_test(test_registry_tag_ttl),
                cmocka_unit_test(test_registry_auth),
                cmocka_unit_test(test_registry_origin),
                cmocka_unit_test(test_registry_errors),
                cmocka_unit_test(test_registry_limits),
                cmocka_unit_test(test_endpoint_url),
                cmocka_unit_test(test_endpoint_capabilities),
                cmocka_unit_test(test_endpoint_tls),
                cmocka_unit_test(test_endpoint_headers),
                cmocka_unit_test(test_endpoint_credential_helper),
                cmocka_unit_test(test_endpoint_timeouts),
                cmocka_unit_test(test_endpoint_connect_default),
                cmocka_unit_test(test_anchors),
                cmocka_unit_test(test_alias_expansion_bounded),
                cmocka_unit_test(test_default_registry_entry),
                cmocka_unit_test(test_hosts_section),
                cmocka_unit_test(test_prefetch_model),
                cmocka_unit_test(test_prefetch_errors),
                cmocka_unit_test(test_many_errors),
                cmocka_unit_test(test_load_file),
                cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_builtin),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
