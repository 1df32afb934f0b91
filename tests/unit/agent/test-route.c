/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/route.c: every route of the pull API, the ns parameter
 * and agent.default_registry, and the exact error (status, code, message) each
 * bad path gets — the same answers the integration tests see over HTTP. The
 * method plays no part: HEAD and GET of a path route alike (pull_handle()
 * refuses other methods before routing). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/route.h"
#include "common/digest.h"
#include "common/macro.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEX128 HEX64 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define D256 "sha256:" HEX64
#define D512 "sha512:" HEX128

/* A route that parses: kind, name, reference and registry (compared by pointer:
 * it is ns or default_registry itself). A macro so cmocka names the failing line. */
#define ROUTE_OK(url, ns, dflt, w_kind, w_name, w_ref, w_registry)              \
        do {                                                                    \
                struct route_match m_;                                          \
                assert_int_equal(route_parse(url, ns, dflt, &m_), 0);           \
                assert_int_equal(m_.kind, w_kind);                              \
                assert_string_equal(m_.name, w_name);                           \
                assert_string_equal(m_.reference, w_ref);                       \
                assert_ptr_equal(m_.registry, w_registry);                       \
        } while (0)

/* A refused route: the return, the kind it is counted under, the answer, and
 * what validated before the refusal (for the log line); registry stays NULL. */
#define ROUTE_FAIL(url, ns, dflt, w_r, w_kind, w_status, w_code, w_msg, w_name, w_ref) \
        do {                                                                    \
                struct route_match m_;                                          \
                assert_int_equal(route_parse(url, ns, dflt, &m_), w_r);         \
                assert_int_equal(m_.kind, w_kind);                              \
                assert_int_equal(m_.error.status, w_status);                    \
                assert_string_equal(m_.error.code, w_code);                     \
                assert_string_equal(m_.error.message, w_msg);                   \
                assert_string_equal(m_.name, w_name);                           \
                assert_string_equal(m_.reference, w_ref);                       \
                assert_null(m_.registry);                                       \
        } while (0)

#define NO_ROUTE(url) ROUTE_FAIL(url, "docker.io", NULL, -ENOENT, ROUTE_OTHER, 404, "NOT_FOUND", "no such route", "", "")
#define BAD_NAME(url, kind)                                                     \
        ROUTE_FAIL(url, "docker.io", NULL, -EINVAL, kind, 400, "NAME_INVALID", "invalid repository name", "", "")
#define BAD_TAG(url, name)                                                      \
        ROUTE_FAIL(url, "docker.io", NULL, -EINVAL, ROUTE_MANIFEST, 400, "MANIFEST_INVALID", "invalid tag or digest", \
                   name, "")
#define BAD_DIGEST(url, name)                                                   \
        ROUTE_FAIL(url, "docker.io", NULL, -EINVAL, ROUTE_BLOB, 400, "DIGEST_INVALID", "invalid digest", name, "")
#define BAD_NS(url, ns, dflt, kind, name, ref)                                  \
        ROUTE_FAIL(url, ns, dflt, -EINVAL, kind, 400, "NAME_INVALID", "ns is not a registry host", name, ref)

static void test_fixed_routes(void **state) {
        (void) state;
        struct route_match m;
        /* The version check, health and metrics take no ns: a bad one does not matter. */
        assert_int_equal(route_parse("/v2/", "not a host", NULL, &m), 0);
        assert_int_equal(m.kind, ROUTE_V2);
        assert_null(m.registry);
        assert_int_equal(route_parse("/v2", NULL, "docker.io", &m), 0);
        assert_int_equal(m.kind, ROUTE_V2);
        assert_null(m.registry);
        assert_int_equal(route_parse("/healthz", NULL, NULL, &m), 0);
        assert_int_equal(m.kind, ROUTE_HEALTH);
        assert_false(m.ready);
        assert_int_equal(route_parse("/readyz", "x y", NULL, &m), 0);
        assert_int_equal(m.kind, ROUTE_HEALTH);
        assert_true(m.ready);
        assert_int_equal(route_parse("/metrics", NULL, NULL, &m), 0);
        assert_int_equal(m.kind, ROUTE_METRICS);
        assert_string_equal(m.name, "");
        assert_string_equal(m.reference, "");
}

static void test_no_route(void **state) {
        (void) state;
        NO_ROUTE("");
        NO_ROUTE("/");
        NO_ROUTE("/v1/");
        NO_ROUTE("/V2/");
        NO_ROUTE("v2/");
        NO_ROUTE("/v2x");
        /* Exact paths only: no trailing slash, no query, no prefix match. */
        NO_ROUTE("/healthz/");
        NO_ROUTE("/readyz/");
        NO_ROUTE("/metrics/");
        NO_ROUTE("/metricsx");
        NO_ROUTE("/v2//");
        NO_ROUTE("/v2/library/nginx");
        NO_ROUTE("/v2/library/nginx/");
        NO_ROUTE("/v2/library/nginx/referrers");
        NO_ROUTE("/v2/library/nginx/manifests");
        NO_ROUTE("/v2/library/nginx/blobs");
        NO_ROUTE("/v2/library/nginx/tags/list/");
        NO_ROUTE("/v2/library/nginx/tags");
        /* A keyword with no name before it. */
        NO_ROUTE("/v2//manifests/latest");
        NO_ROUTE("/v2//blobs/" D256);
        NO_ROUTE("/v2//referrers/" D256);
        NO_ROUTE("/v2/manifests/latest");
        NO_ROUTE("/v2/tags/list");
        NO_ROUTE("/v2//tags/list");
}

static void test_manifest(void **state) {
        (void) state;
        ROUTE_OK("/v2/library/nginx/manifests/latest", "docker.io", NULL, ROUTE_MANIFEST, "library/nginx", "latest",
                 "docker.io");
        ROUTE_OK("/v2/nginx/manifests/1.27.0-alpine", "docker.io", NULL, ROUTE_MANIFEST, "nginx", "1.27.0-alpine",
                 "docker.io");
        ROUTE_OK("/v2/a/b/c/manifests/_x", "registry.example.com:5000", NULL, ROUTE_MANIFEST, "a/b/c", "_x",
                 "registry.example.com:5000");

        struct route_match m;
        assert_int_equal(route_parse("/v2/library/nginx/manifests/latest", "docker.io", NULL, &m), 0);
        assert_false(m.by_digest);
        assert_int_equal(route_parse("/v2/library/nginx/manifests/" D256, "docker.io", NULL, &m), 0);
        assert_int_equal(m.kind, ROUTE_MANIFEST);
        assert_true(m.by_digest);
        assert_string_equal(m.reference, D256);
        struct digest d;
        assert_int_equal(digest_parse(D256, &d), 0);
        assert_true(digest_equal(&m.digest, &d));
        assert_int_equal(route_parse("/v2/library/nginx/manifests/" D512, "docker.io", NULL, &m), 0);
        assert_true(m.by_digest);
        assert_string_equal(m.reference, D512);
        assert_int_equal(digest_parse(D512, &d), 0);
        assert_true(digest_equal(&m.digest, &d));

        /* A tag of 128 characters is the longest. */
        char url[512];
        _cleanup_free_ char *tag128 = unit_repeat('t', 128), *tag129 = unit_repeat('t', 129);
        snprintf(url, sizeof(url), "/v2/a/manifests/%s", tag128);
        ROUTE_OK(url, "docker.io", NULL, ROUTE_MANIFEST, "a", tag128, "docker.io");
        snprintf(url, sizeof(url), "/v2/a/manifests/%s", tag129);
        BAD_TAG(url, "a");
}

static void test_bad_reference(void **state) {
        (void) state;
        BAD_TAG("/v2/a/manifests/", "a");
        BAD_TAG("/v2/a/manifests/-latest", "a");
        BAD_TAG("/v2/a/manifests/.latest", "a");
        BAD_TAG("/v2/a/manifests/lat:est", "a");
        BAD_TAG("/v2/a/manifests/lat est", "a");
        BAD_TAG("/v2/a/manifests/latest/", "a"); /* trailing slash */
        BAD_TAG("/v2/a/manifests/v1/extra", "a");
        /* A digest that is not one is no tag either (':' is not in a tag). */
        BAD_TAG("/v2/a/manifests/sha256:" "0123", "a");
        BAD_TAG("/v2/a/manifests/sha256:" HEX64 "0", "a");
        BAD_TAG("/v2/a/manifests/sha384:" HEX64, "a");
        /* Lower-case hex only: one spelling per digest. */
        BAD_TAG("/v2/a/manifests/sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "a");

        BAD_DIGEST("/v2/a/blobs/latest", "a");
        BAD_DIGEST("/v2/a/blobs/", "a");
        BAD_DIGEST("/v2/a/blobs/" D256 "/", "a"); /* trailing slash */
        BAD_DIGEST("/v2/a/blobs/" "sha256:" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", "a");
        BAD_DIGEST("/v2/a/blobs/" "sha256:" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeF", "a");
        BAD_DIGEST("/v2/a/blobs/" "SHA256:" HEX64, "a");
        BAD_DIGEST("/v2/a/blobs/" "md5:0123456789abcdef0123456789abcdef", "a");
        BAD_DIGEST("/v2/a/blobs/" D256 "%00", "a");
        /* An upload's path is a blob path with no digest (POST and PUT never get here). */
        BAD_DIGEST("/v2/library/nginx/blobs/uploads/", "library/nginx");
}

static void test_blob_and_tags(void **state) {
        (void) state;
        ROUTE_OK("/v2/library/nginx/blobs/" D256, "docker.io", NULL, ROUTE_BLOB, "library/nginx", D256, "docker.io");
        ROUTE_OK("/v2/x/blobs/" D512, "ghcr.io", NULL, ROUTE_BLOB, "x", D512, "ghcr.io");
        struct route_match m;
        assert_int_equal(route_parse("/v2/x/blobs/" D256, "ghcr.io", NULL, &m), 0);
        assert_true(m.by_digest);

        ROUTE_OK("/v2/library/nginx/tags/list", "docker.io", NULL, ROUTE_TAGS, "library/nginx", "tags/list",
                 "docker.io");
        ROUTE_OK("/v2/a/tags/list", NULL, NULL, ROUTE_TAGS, "a", "tags/list", NULL);
        assert_int_equal(route_parse("/v2/a/tags/list", "docker.io", NULL, &m), 0);
        assert_false(m.by_digest);
}

/* GET /v2/<name>/referrers/<digest> (OCI 1.1): by digest only. */
static void test_referrers(void **state) {
        (void) state;
        ROUTE_OK("/v2/library/nginx/referrers/" D256, "docker.io", NULL, ROUTE_REFERRERS, "library/nginx", D256,
                 "docker.io");
        ROUTE_OK("/v2/x/referrers/" D512, NULL, "ghcr.io", ROUTE_REFERRERS, "x", D512, "ghcr.io");
        struct route_match m;
        assert_int_equal(route_parse("/v2/x/referrers/" D256, "ghcr.io", NULL, &m), 0);
        assert_true(m.by_digest);
        /* The keyword that comes last decides, as for the others. */
        ROUTE_OK("/v2/org/referrers/manifests/v1", "docker.io", NULL, ROUTE_MANIFEST, "org/referrers", "v1",
                 "docker.io");
        ROUTE_OK("/v2/org/manifests/referrers/" D256, "docker.io", NULL, ROUTE_REFERRERS, "org/manifests", D256,
                 "docker.io");
        ROUTE_OK("/v2/org/referrers/blobs/" D256, "docker.io", NULL, ROUTE_BLOB, "org/referrers", D256, "docker.io");
        /* A tag (the tag schema's "sha256-<hex>" too) is no subject. */
        ROUTE_FAIL("/v2/a/referrers/latest", "docker.io", NULL, -EINVAL, ROUTE_REFERRERS, 400, "DIGEST_INVALID",
                   "invalid digest", "a", "");
        ROUTE_FAIL("/v2/a/referrers/sha256-" HEX64, "docker.io", NULL, -EINVAL, ROUTE_REFERRERS, 400,
                   "DIGEST_INVALID", "invalid digest", "a", "");
        ROUTE_FAIL("/v2/a/referrers/" D256 "/", "docker.io", NULL, -EINVAL, ROUTE_REFERRERS, 400, "DIGEST_INVALID",
                   "invalid digest", "a", "");
        BAD_NAME("/v2/../referrers/" D256, ROUTE_REFERRERS);
        NO_ROUTE("/v2/referrers/" D256);
}

/* A repository may itself hold "manifests", "blobs", "tags" or "list"
 * components: the keyword that comes last decides. */
static void test_keywords_in_names(void **state) {
        (void) state;
        ROUTE_OK("/v2/org/manifests/manifests/v1", "docker.io", NULL, ROUTE_MANIFEST, "org/manifests", "v1",
                 "docker.io");
        ROUTE_OK("/v2/org/blobs/manifests/v1", "docker.io", NULL, ROUTE_MANIFEST, "org/blobs", "v1", "docker.io");
        ROUTE_OK("/v2/org/manifests/x/blobs/" D256, "docker.io", NULL, ROUTE_BLOB, "org/manifests/x", D256,
                 "docker.io");
        ROUTE_OK("/v2/blobs/blobs/" D256, "docker.io", NULL, ROUTE_BLOB, "blobs", D256, "docker.io");
        ROUTE_OK("/v2/tags/list/manifests/v1", "docker.io", NULL, ROUTE_MANIFEST, "tags/list", "v1", "docker.io");
        ROUTE_OK("/v2/org/tags/list/tags/list", "docker.io", NULL, ROUTE_TAGS, "org/tags/list", "tags/list",
                 "docker.io");
        /* tags/list at the end wins over an earlier keyword. */
        ROUTE_OK("/v2/org/manifests/v1/tags/list", "docker.io", NULL, ROUTE_TAGS, "org/manifests/v1", "tags/list",
                 "docker.io");
        /* The last "/manifests/" is the keyword: what follows is the reference. */
        BAD_TAG("/v2/org/manifests/a/manifests/", "org/manifests/a");
}

static void test_bad_names(void **state) {
        (void) state;
        BAD_NAME("/v2/Library/nginx/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a//b/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2//a/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a/b//manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/-a/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a-/blobs/" D256, ROUTE_BLOB);
        BAD_NAME("/v2/a..b/blobs/" D256, ROUTE_BLOB);
        BAD_NAME("/v2/a b/tags/list", ROUTE_TAGS);
        BAD_NAME("/v2/a:b/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a@b/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a\\b/manifests/latest", ROUTE_MANIFEST);
        /* The name is checked before the reference. */
        BAD_NAME("/v2/A/blobs/latest", ROUTE_BLOB);
        BAD_NAME("/v2/A/manifests/-", ROUTE_MANIFEST);
}

/* Nothing in a name can climb out of the cache root, decoded or not
 * (libmicrohttpd decodes %2e%2e to ".." before the path gets here). */
static void test_traversal_and_encoding(void **state) {
        (void) state;
        BAD_NAME("/v2/../etc/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a/../../etc/blobs/" D256, ROUTE_BLOB);
        BAD_NAME("/v2/./a/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a/./b/tags/list", ROUTE_TAGS);
        BAD_NAME("/v2/../tags/list", ROUTE_TAGS);
        BAD_NAME("/v2/..%2fetc/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/%2e%2e/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a%2fb/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a%00/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a\n/manifests/latest", ROUTE_MANIFEST);
        BAD_NAME("/v2/a\xc3\xa9/manifests/latest", ROUTE_MANIFEST);
        BAD_TAG("/v2/a/manifests/..", "a");
        BAD_TAG("/v2/a/manifests/../../x", "a");
        BAD_TAG("/v2/a/manifests/%2e%2e", "a");
        BAD_TAG("/v2/a/manifests/v1%0a", "a");
        BAD_TAG("/v2/a/manifests/v1\n", "a");
        BAD_DIGEST("/v2/a/blobs/../" D256, "a");
        BAD_DIGEST("/v2/a/blobs/sha256%3a" HEX64, "a");
        /* A name that looks like a query: the query never reaches the path. */
        BAD_NAME("/v2/a?ns=x/manifests/latest", ROUTE_MANIFEST);
}

static void test_lengths(void **state) {
        (void) state;
        char url[ROUTE_URL_MAX + 64];
        /* A name of 255 characters is the longest (distribution/reference). */
        _cleanup_free_ char *n255 = unit_repeat('a', 255), *n256 = unit_repeat('a', 256);
        snprintf(url, sizeof(url), "/v2/%s/manifests/v1", n255);
        ROUTE_OK(url, "ghcr.io", NULL, ROUTE_MANIFEST, n255, "v1", "ghcr.io");
        snprintf(url, sizeof(url), "/v2/%s/manifests/v1", n256);
        BAD_NAME(url, ROUTE_MANIFEST);
        char name[300];
        snprintf(name, sizeof(name), "a/%s", n255 + 2);
        snprintf(url, sizeof(url), "/v2/%s/blobs/" D256, name);
        ROUTE_OK(url, "ghcr.io", NULL, ROUTE_BLOB, name, D256, "ghcr.io");
        snprintf(url, sizeof(url), "/v2/a/%s/blobs/" D256, n255 + 1);
        BAD_NAME(url, ROUTE_BLOB);

        /* A path of 1024 bytes is parsed (here: refused for its name); 1025 is no route at all. */
        _cleanup_free_ char *fill = unit_repeat('a', ROUTE_URL_MAX - strlen("/v2/") - strlen("/manifests/v1"));
        snprintf(url, sizeof(url), "/v2/%s/manifests/v1", fill);
        assert_int_equal(strlen(url), ROUTE_URL_MAX);
        BAD_NAME(url, ROUTE_MANIFEST);
        snprintf(url, sizeof(url), "/v2/%sa/manifests/v1", fill);
        assert_int_equal(strlen(url), ROUTE_URL_MAX + 1);
        NO_ROUTE(url);
        _cleanup_free_ char *huge = unit_repeat('/', 1 << 20);
        memcpy(huge, "/v2/", 4);
        NO_ROUTE(huge);
}

static void test_ns(void **state) {
        (void) state;
        const char *url = "/v2/library/nginx/manifests/latest";
        const char *ns = "registry.example.com:5000", *dflt = "docker.io";
        /* ns wins over the default; an empty or absent ns takes the default, which may be absent too. */
        ROUTE_OK(url, ns, dflt, ROUTE_MANIFEST, "library/nginx", "latest", ns);
        ROUTE_OK(url, "", dflt, ROUTE_MANIFEST, "library/nginx", "latest", dflt);
        ROUTE_OK(url, NULL, dflt, ROUTE_MANIFEST, "library/nginx", "latest", dflt);
        ROUTE_OK(url, NULL, NULL, ROUTE_MANIFEST, "library/nginx", "latest", NULL);
        ROUTE_OK(url, "", NULL, ROUTE_MANIFEST, "library/nginx", "latest", NULL);
        ROUTE_OK(url, "127.0.0.1:5000", NULL, ROUTE_MANIFEST, "library/nginx", "latest", "127.0.0.1:5000");
        ROUTE_OK(url, "[::1]:5000", NULL, ROUTE_MANIFEST, "library/nginx", "latest", "[::1]:5000");
        ROUTE_OK(url, "localhost", NULL, ROUTE_MANIFEST, "library/nginx", "latest", "localhost");
        /* Case is the spec lookup's business (host names are case-insensitive). */
        ROUTE_OK(url, "Docker.IO", NULL, ROUTE_MANIFEST, "library/nginx", "latest", "Docker.IO");

        /* Refused with the name and reference already known (they go into the log line). */
        BAD_NS(url, "not a host", NULL, ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS(url, "docker.io/library", dflt, ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS(url, "https://docker.io", dflt, ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS(url, "docker.io:99999", dflt, ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS(url, "docker.io:", dflt, ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS(url, "-docker.io", dflt, ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS(url, "docker.io\"", dflt, ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS(url, "docker.io\n", dflt, ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS(url, "::1", dflt, ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS("/v2/a/blobs/" D256, "a b", NULL, ROUTE_BLOB, "a", D256);
        BAD_NS("/v2/a/tags/list", "a b", NULL, ROUTE_TAGS, "a", "tags/list");
        /* A default is checked like an ns. */
        BAD_NS(url, NULL, "not a host", ROUTE_MANIFEST, "library/nginx", "latest");
        BAD_NS(url, "", "not a host", ROUTE_MANIFEST, "library/nginx", "latest");
        /* 256 characters and more are no ns, whatever they hold. */
        _cleanup_free_ char *long_ns = unit_repeat('a', 256);
        memcpy(long_ns, "a.", 2);
        BAD_NS(url, long_ns, dflt, ROUTE_MANIFEST, "library/nginx", "latest");
        /* The name and the reference are checked first. */
        BAD_NAME("/v2/A/manifests/latest", ROUTE_MANIFEST);
        ROUTE_FAIL("/v2/a/manifests/-", "not a host", NULL, -EINVAL, ROUTE_MANIFEST, 400, "MANIFEST_INVALID",
                   "invalid tag or digest", "a", "");
}

static void test_repository(void **state) {
        (void) state;
        struct route_match m;
        char repo[256];
        assert_int_equal(route_parse("/v2/nginx/manifests/latest", "docker.io", NULL, &m), 0);
        assert_int_equal(route_repository(&m, "docker.io", repo, sizeof(repo)), 0);
        assert_string_equal(repo, "library/nginx");
        /* Only Docker Hub, spelt as the spec spells it, and only single names. */
        assert_int_equal(route_repository(&m, "ghcr.io", repo, sizeof(repo)), 0);
        assert_string_equal(repo, "nginx");
        assert_int_equal(route_parse("/v2/library/nginx/manifests/latest", "docker.io", NULL, &m), 0);
        assert_int_equal(route_repository(&m, "docker.io", repo, sizeof(repo)), 0);
        assert_string_equal(repo, "library/nginx");
        assert_int_equal(route_parse("/v2/bitnami/redis/blobs/" D256, "docker.io", NULL, &m), 0);
        assert_int_equal(route_repository(&m, "docker.io", repo, sizeof(repo)), 0);
        assert_string_equal(repo, "bitnami/redis");

        /* "library/" and a single name of 247 fit 256 bytes; 248 does not, and the buffer is left alone. */
        char url[512];
        _cleanup_free_ char *n247 = unit_repeat('n', 247), *n248 = unit_repeat('n', 248);
        snprintf(url, sizeof(url), "/v2/%s/manifests/v1", n247);
        assert_int_equal(route_parse(url, "docker.io", NULL, &m), 0);
        assert_int_equal(route_repository(&m, "docker.io", repo, sizeof(repo)), 0);
        assert_int_equal(strlen(repo), 255);
        assert_memory_equal(repo, "library/", 8);
        snprintf(url, sizeof(url), "/v2/%s/manifests/v1", n248);
        assert_int_equal(route_parse(url, "docker.io", NULL, &m), 0);
        snprintf(repo, sizeof(repo), "untouched");
        assert_int_equal(route_repository(&m, "docker.io", repo, sizeof(repo)), -ENAMETOOLONG);
        assert_string_equal(repo, "untouched");
        assert_int_equal(route_repository(&m, "quay.io", repo, sizeof(repo)), 0);
        assert_string_equal(repo, n248);
}

/* A spec that mirrors ghcr.io, registry.example.com:5000 and [fd00::1]:5000
 * (the namespaces hostsconfig's lookup gives: agent/http.c asks the spec). */
static const char *const ns_table[][2] = {
        { "ghcr.io", "ghcr.io" },
        { "registry.example.com_5000", "registry.example.com:5000" },
        { "fd00_0_0_0_0_0_0_1_5000", "[fd00::1]:5000" },
        { "docker.io", "docker.io" },
};

static const char *ns_lookup(const char *component, void *ctx) {
        unsigned *calls = ctx;
        (*calls)++;
        for (size_t i = 0; i < ELEMENTSOF(ns_table); i++)
                if (strcmp(ns_table[i][0], component) == 0)
                        return ns_table[i][1];
        return NULL;
}

/* Routed without ns and with the namespace lookup: kind, name, reference, registry. */
#define NS_ROUTE(url, w_matched, w_kind, w_name, w_ref, w_registry)             \
        do {                                                                    \
                struct route_match m_;                                          \
                unsigned calls_ = 0;                                            \
                assert_int_equal(route_parse(url, NULL, NULL, &m_), 0);         \
                assert_int_equal(route_namespace(&m_, ns_lookup, &calls_), w_matched); \
                assert_int_equal(m_.kind, w_kind);                              \
                assert_string_equal(m_.name, w_name);                           \
                assert_string_equal(m_.reference, w_ref);                       \
                if (w_registry)                                                 \
                        assert_string_equal(m_.registry, (const char *) (w_registry)); \
                else                                                            \
                        assert_null(m_.registry);                               \
        } while (0)

static void test_namespace(void **state) {
        (void) state;
        NS_ROUTE("/v2/ghcr.io/org/app/manifests/v1", true, ROUTE_MANIFEST, "org/app", "v1", "ghcr.io");
        NS_ROUTE("/v2/ghcr.io/app/blobs/" D256, true, ROUTE_BLOB, "app", D256, "ghcr.io");
        NS_ROUTE("/v2/ghcr.io/org/app/tags/list", true, ROUTE_TAGS, "org/app", "tags/list", "ghcr.io");
        NS_ROUTE("/v2/ghcr.io/org/app/referrers/" D256, true, ROUTE_REFERRERS, "org/app", D256, "ghcr.io");
        NS_ROUTE("/v2/registry.example.com_5000/a/b/c/manifests/" D256, true, ROUTE_MANIFEST, "a/b/c", D256,
                 "registry.example.com:5000");
        NS_ROUTE("/v2/fd00_0_0_0_0_0_0_1_5000/app/manifests/latest", true, ROUTE_MANIFEST, "app", "latest",
                 "[fd00::1]:5000");
        /* Docker Hub by its namespace: "library/" is route_repository()'s business, as without one. */
        NS_ROUTE("/v2/docker.io/nginx/manifests/latest", true, ROUTE_MANIFEST, "nginx", "latest", "docker.io");
        /* Only the first component: a repository of ghcr.io may begin with a registry's name too. */
        NS_ROUTE("/v2/ghcr.io/docker.io/x/manifests/v1", true, ROUTE_MANIFEST, "docker.io/x", "v1", "ghcr.io");
        /* Keywords in the repository stay where they were. */
        NS_ROUTE("/v2/ghcr.io/manifests/blobs/manifests/v1", true, ROUTE_MANIFEST, "manifests/blobs", "v1",
                 "ghcr.io");

        /* Not a namespace: the name is left whole, for ns or the default registry. */
        NS_ROUTE("/v2/ghcr.io/manifests/v1", false, ROUTE_MANIFEST, "ghcr.io", "v1", NULL);
        NS_ROUTE("/v2/library/nginx/manifests/latest", false, ROUTE_MANIFEST, "library/nginx", "latest", NULL);
        NS_ROUTE("/v2/quay.io/org/app/manifests/v1", false, ROUTE_MANIFEST, "quay.io/org/app", "v1", NULL);
        /* The spelling with ':' is no path component, and a prefix or suffix of a namespace is another name. */
        NS_ROUTE("/v2/registry.example.com/a/manifests/v1", false, ROUTE_MANIFEST, "registry.example.com/a", "v1",
                 NULL);
        NS_ROUTE("/v2/ghcr.io.x/a/manifests/v1", false, ROUTE_MANIFEST, "ghcr.io.x/a", "v1", NULL);
        NS_ROUTE("/v2/ghcr/a/manifests/v1", false, ROUTE_MANIFEST, "ghcr/a", "v1", NULL);

        /* Nothing to do for routes without a repository, and the lookup is not asked. */
        struct route_match m;
        unsigned calls = 0;
        assert_int_equal(route_parse("/v2/", NULL, NULL, &m), 0);
        assert_false(route_namespace(&m, ns_lookup, &calls));
        assert_int_equal(route_parse("/metrics", NULL, NULL, &m), 0);
        assert_false(route_namespace(&m, ns_lookup, &calls));
        assert_int_equal(route_parse("/v2/nginx/manifests/latest", NULL, NULL, &m), 0);
        assert_false(route_namespace(&m, ns_lookup, &calls));
        assert_int_equal(calls, 0);
        assert_int_equal(route_parse("/v2/ghcr.io/a/manifests/latest", NULL, NULL, &m), 0);
        assert_true(route_namespace(&m, ns_lookup, &calls));
        assert_int_equal(calls, 1);
        /* A refused request is never routed on. */
        assert_int_equal(route_parse("/v2/x", NULL, NULL, &m), -ENOENT);
        assert_false(route_namespace(&m, ns_lookup, &calls));
        assert_int_equal(calls, 1);

        /* The longest name keeps its rest whole. */
        char url[ROUTE_URL_MAX + 64];
        _cleanup_free_ char *n247 = unit_repeat('a', 247);
        snprintf(url, sizeof(url), "/v2/ghcr.io/%s/manifests/v1", n247);
        NS_ROUTE(url, true, ROUTE_MANIFEST, n247, "v1", "ghcr.io");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fixed_routes),
                cmocka_unit_test(test_no_route),
                cmocka_unit_test(test_manifest),
                cmocka_unit_test(test_bad_reference),
                cmocka_unit_test(test_blob_and_tags),
                cmocka_unit_test(test_keywords_in_names),
                cmocka_unit_test(test_referrers),
                cmocka_unit_test(test_bad_names),
                cmocka_unit_test(test_traversal_and_encoding),
                cmocka_unit_test(test_lengths),
                cmocka_unit_test(test_ns),
                cmocka_unit_test(test_repository),
                cmocka_unit_test(test_namespace),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
