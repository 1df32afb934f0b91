/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/reference.c: the distribution/reference grammar, Docker
 * Hub normalisation, the 255-byte name limit, and repository-only parsing. */

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

#include "common/macro.h"
#include "common/reference.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEX128 HEX64 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define D256 "sha256:" HEX64
#define D512 "sha512:" HEX128

static char sentinel_storage;
#define SENTINEL_PTR (&sentinel_storage)

#define REASON_DIGEST "invalid digest (sha256:<64 hex> or sha512:<128 hex>)"
#define REASON_TAG "invalid tag"
#define REASON_REPO_ONLY "a repository takes no tag or digest"
#define REASON_HOST "invalid registry host"
#define REASON_PATH "invalid repository name (lower-case components separated by '/')"
#define REASON_LONG "name longer than 255 characters"

/* Checks each field (NULL where absent) and the canonical text, then frees.
 * A macro so that cmocka reports the failing case's line. */
#define REF_OK(s, want_tag, w_domain, w_path, w_tag, w_digest, w_text)          \
        do {                                                                    \
                struct reference r_ = {};                                       \
                const char *why_ = SENTINEL_PTR;                                \
                assert_int_equal(reference_parse((s), (want_tag), &r_, &why_), 0); \
                check_field(r_.domain, (w_domain));                             \
                check_field(r_.path, (w_path));                                 \
                check_field(r_.tag, (w_tag));                                   \
                check_field(r_.digest, (w_digest));                             \
                char *t_ = reference_to_string(&r_);                            \
                assert_non_null(t_);                                            \
                assert_string_equal(t_, (w_text));                              \
                free(t_);                                                       \
                reference_done(&r_);                                            \
        } while (0)

#define REF_FAIL(s, want_tag, want_reason)                                      \
        do {                                                                    \
                struct reference r_ = { .domain = SENTINEL_PTR, .path = SENTINEL_PTR, \
                                        .tag = SENTINEL_PTR, .digest = SENTINEL_PTR }; \
                const char *why_ = NULL;                                        \
                assert_int_equal(reference_parse((s), (want_tag), &r_, &why_), -EINVAL); \
                assert_non_null(why_);                                          \
                assert_string_equal(why_, (want_reason));                       \
                assert_ptr_equal(r_.domain, SENTINEL_PTR);                      \
                assert_ptr_equal(r_.path, SENTINEL_PTR);                        \
                assert_ptr_equal(r_.tag, SENTINEL_PTR);                         \
                assert_ptr_equal(r_.digest, SENTINEL_PTR);                      \
        } while (0)

static void check_field(const char *got, const char *want) {
        if (want)
                assert_string_equal(got, want);
        else
                assert_null(got);
}

/* ---- reference_path_is_valid ------------------------------------------------------- */

static void test_path_valid(void **state) {
        (void) state;
        assert_true(reference_path_is_valid("a"));
        assert_true(reference_path_is_valid("0"));
        assert_true(reference_path_is_valid("nginx"));
        assert_true(reference_path_is_valid("library/nginx"));
        assert_true(reference_path_is_valid("a/b/c/d"));
        assert_true(reference_path_is_valid("a.b"));
        assert_true(reference_path_is_valid("a_b"));
        assert_true(reference_path_is_valid("a__b"));
        assert_true(reference_path_is_valid("a-b"));
        assert_true(reference_path_is_valid("a---b"));
        assert_true(reference_path_is_valid("a.b_c__d-e--f"));
        assert_true(reference_path_is_valid("1a/2b/3"));
        assert_true(reference_path_is_valid("proxy-docker.io/library/nginx"));

        char *p = unit_repeat('a', 255);
        assert_true(reference_path_is_valid(p));
        free(p);
}

static void test_path_invalid(void **state) {
        (void) state;
        assert_false(reference_path_is_valid(""));
        assert_false(reference_path_is_valid("A"));
        assert_false(reference_path_is_valid("Nginx"));
        assert_false(reference_path_is_valid("library/Nginx"));
        assert_false(reference_path_is_valid("/"));
        assert_false(reference_path_is_valid("/a"));
        assert_false(reference_path_is_valid("a/"));
        assert_false(reference_path_is_valid("a//b"));
        assert_false(reference_path_is_valid("a..b"));
        assert_false(reference_path_is_valid("a___b"));
        assert_false(reference_path_is_valid("a_-b"));
        assert_false(reference_path_is_valid("a-_b"));
        assert_false(reference_path_is_valid("a.-b"));
        assert_false(reference_path_is_valid("a-.b"));
        assert_false(reference_path_is_valid("a._b"));
        assert_false(reference_path_is_valid("-a"));
        assert_false(reference_path_is_valid("a-"));
        assert_false(reference_path_is_valid("_a"));
        assert_false(reference_path_is_valid("a_"));
        assert_false(reference_path_is_valid("__a"));
        assert_false(reference_path_is_valid(".a"));
        assert_false(reference_path_is_valid("a."));
        assert_false(reference_path_is_valid("a/-b"));
        assert_false(reference_path_is_valid("a/b."));
        assert_false(reference_path_is_valid("a b"));
        assert_false(reference_path_is_valid("a:b"));
        assert_false(reference_path_is_valid("a@b"));
        assert_false(reference_path_is_valid("a+b"));
        assert_false(reference_path_is_valid("\xc3\xa9"));

        char *p = unit_repeat('a', 256);
        assert_false(reference_path_is_valid(p));
        free(p);
}

/* ---- reference_digest_is_valid ------------------------------------------------------ */

static void test_digest_validity(void **state) {
        (void) state;
        assert_true(reference_digest_is_valid(D256));
        assert_true(reference_digest_is_valid(D512));
        assert_true(reference_digest_is_valid("sha256:" "0000000000000000000000000000000000000000000000000000000000000000"));

        assert_false(reference_digest_is_valid(""));
        assert_false(reference_digest_is_valid("sha256:"));
        assert_false(reference_digest_is_valid("sha512:"));
        assert_false(reference_digest_is_valid(HEX64));
        assert_false(reference_digest_is_valid("sha256" HEX64));
        assert_false(reference_digest_is_valid("sha256::" HEX64));
        assert_false(reference_digest_is_valid("SHA256:" HEX64));
        assert_false(reference_digest_is_valid("sha384:" HEX64 "0123456789abcdef0123456789abcdef"));
        assert_false(reference_digest_is_valid("md5:0123456789abcdef0123456789abcdef"));
        assert_false(reference_digest_is_valid(" " D256));
        assert_false(reference_digest_is_valid(D256 " "));
        assert_false(reference_digest_is_valid(D256 "0"));   /* 65 hex */
        assert_false(reference_digest_is_valid(D512 "0"));   /* 129 hex */
        assert_false(reference_digest_is_valid("sha256:" HEX128)); /* wrong length for the algorithm */
        assert_false(reference_digest_is_valid("sha512:" HEX64));
        assert_false(reference_digest_is_valid("sha256:" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"));
        assert_false(reference_digest_is_valid("sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
        assert_false(reference_digest_is_valid("sha256:" "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
}

/* ---- reference_tag_is_valid --------------------------------------------------------- */

static void test_tag_validity(void **state) {
        (void) state;
        assert_true(reference_tag_is_valid("latest"));
        assert_true(reference_tag_is_valid("a"));
        assert_true(reference_tag_is_valid("A"));
        assert_true(reference_tag_is_valid("0"));
        assert_true(reference_tag_is_valid("_"));
        assert_true(reference_tag_is_valid("_a"));
        assert_true(reference_tag_is_valid("1.25"));
        assert_true(reference_tag_is_valid("v1.0.0-rc.1_Build"));
        assert_true(reference_tag_is_valid("a.."));
        assert_true(reference_tag_is_valid("a--"));

        char *t = unit_repeat('t', 128);
        assert_true(reference_tag_is_valid(t));
        free(t);
        t = unit_repeat('t', 129);
        assert_false(reference_tag_is_valid(t));
        free(t);

        assert_false(reference_tag_is_valid(""));
        assert_false(reference_tag_is_valid("."));
        assert_false(reference_tag_is_valid(".a"));
        assert_false(reference_tag_is_valid("-a"));
        assert_false(reference_tag_is_valid("a/b"));
        assert_false(reference_tag_is_valid("a:b"));
        assert_false(reference_tag_is_valid("a@b"));
        assert_false(reference_tag_is_valid("a b"));
        assert_false(reference_tag_is_valid("a+b"));
        assert_false(reference_tag_is_valid("a\n"));
        assert_false(reference_tag_is_valid("\xc3\xa9"));
}

/* ---- reference_parse ------------------------------------------------------------------ */

static void test_parse_docker_hub(void **state) {
        (void) state;
        REF_OK("nginx", true, "docker.io", "library/nginx", "latest", NULL, "docker.io/library/nginx:latest");
        REF_OK("nginx:1.25", true, "docker.io", "library/nginx", "1.25", NULL, "docker.io/library/nginx:1.25");
        REF_OK("nginx:latest", true, "docker.io", "library/nginx", "latest", NULL, "docker.io/library/nginx:latest");
        REF_OK("nginx@" D256, true, "docker.io", "library/nginx", NULL, D256, "docker.io/library/nginx@" D256);
        REF_OK("nginx:1.25@" D256, true, "docker.io", "library/nginx", "1.25", D256,
               "docker.io/library/nginx:1.25@" D256);
        REF_OK("library/nginx", true, "docker.io", "library/nginx", "latest", NULL, "docker.io/library/nginx:latest");
        REF_OK("bitnami/redis:7.2", true, "docker.io", "bitnami/redis", "7.2", NULL, "docker.io/bitnami/redis:7.2");
        REF_OK("a/b/c", true, "docker.io", "a/b/c", "latest", NULL, "docker.io/a/b/c:latest");
        REF_OK("docker.io/nginx", true, "docker.io", "library/nginx", "latest", NULL, "docker.io/library/nginx:latest");
        REF_OK("docker.io/library/nginx", true, "docker.io", "library/nginx", "latest", NULL,
               "docker.io/library/nginx:latest");
        REF_OK("index.docker.io/x/y", true, "docker.io", "x/y", "latest", NULL, "docker.io/x/y:latest");
        REF_OK("index.docker.io/nginx:1", true, "docker.io", "library/nginx", "1", NULL, "docker.io/library/nginx:1");
        /* A first component that merely starts with "localhost" is a Docker Hub namespace. */
        REF_OK("localhostx/a", true, "docker.io", "localhostx/a", "latest", NULL, "docker.io/localhostx/a:latest");
        REF_OK("a__b/c-d.e:Tag_1", true, "docker.io", "a__b/c-d.e", "Tag_1", NULL, "docker.io/a__b/c-d.e:Tag_1");
}

static void test_parse_registries(void **state) {
        (void) state;
        REF_OK("localhost/a", true, "localhost", "a", "latest", NULL, "localhost/a:latest");
        REF_OK("localhost:5000/a", true, "localhost:5000", "a", "latest", NULL, "localhost:5000/a:latest");
        REF_OK("localhost:5000/a:t", true, "localhost:5000", "a", "t", NULL, "localhost:5000/a:t");
        REF_OK("registry.example.com/a", true, "registry.example.com", "a", "latest", NULL,
               "registry.example.com/a:latest");
        REF_OK("registry.example.com:5000/a/b:tag@" D256, true, "registry.example.com:5000", "a/b", "tag", D256,
               "registry.example.com:5000/a/b:tag@" D256);
        REF_OK("registry.example.com:5000/a/b@" D256, true, "registry.example.com:5000", "a/b", NULL, D256,
               "registry.example.com:5000/a/b@" D256);
        REF_OK("ghcr.io/org/img@" D512, true, "ghcr.io", "org/img", NULL, D512, "ghcr.io/org/img@" D512);
        REF_OK("127.0.0.1:5000/a", true, "127.0.0.1:5000", "a", "latest", NULL, "127.0.0.1:5000/a:latest");
        REF_OK("[::1]:5000/a:1", true, "[::1]:5000", "a", "1", NULL, "[::1]:5000/a:1");
        REF_OK("quay.io/docker.io/library/nginx", true, "quay.io", "docker.io/library/nginx", "latest", NULL,
               "quay.io/docker.io/library/nginx:latest");
}

static void test_parse_repository_only(void **state) {
        (void) state;
        REF_OK("nginx", false, "docker.io", "library/nginx", NULL, NULL, "docker.io/library/nginx");
        REF_OK("index.docker.io/x/y", false, "docker.io", "x/y", NULL, NULL, "docker.io/x/y");
        REF_OK("localhost:5000/a", false, "localhost:5000", "a", NULL, NULL, "localhost:5000/a");
        REF_OK("registry.example.com:5000/a/b", false, "registry.example.com:5000", "a/b", NULL, NULL,
               "registry.example.com:5000/a/b");

        REF_FAIL("nginx:1.25", false, REASON_REPO_ONLY);
        REF_FAIL("nginx:latest", false, REASON_REPO_ONLY);
        REF_FAIL("nginx@" D256, false, REASON_REPO_ONLY);
        REF_FAIL("nginx:1@" D256, false, REASON_REPO_ONLY);
        REF_FAIL("localhost:5000/a:t", false, REASON_REPO_ONLY);
        REF_FAIL("registry.example.com:5000/a/b@" D512, false, REASON_REPO_ONLY);
}

static void test_parse_invalid_path(void **state) {
        (void) state;
        REF_FAIL("", true, REASON_PATH);
        REF_FAIL("Nginx", true, REASON_PATH);
        REF_FAIL("NGINX:latest", true, REASON_PATH);
        REF_FAIL("library/Nginx", true, REASON_PATH);
        REF_FAIL("docker.io/Library/nginx", true, REASON_PATH);
        REF_FAIL("registry.example.com/A/b", true, REASON_PATH);
        REF_FAIL("a//b", true, REASON_PATH);
        REF_FAIL("registry.example.com//a", true, REASON_PATH);
        REF_FAIL("/nginx", true, REASON_PATH);
        REF_FAIL("nginx/", true, REASON_PATH);
        REF_FAIL("docker.io/", true, REASON_PATH);
        REF_FAIL("a..b", true, REASON_PATH);
        REF_FAIL("a___b", true, REASON_PATH);
        REF_FAIL("a_-b", true, REASON_PATH);
        REF_FAIL("-a", true, REASON_PATH);
        REF_FAIL("a-", true, REASON_PATH);
        REF_FAIL("a b", true, REASON_PATH);
        REF_FAIL(":tag", true, REASON_PATH);
        REF_FAIL("@" D256, true, REASON_PATH);
        REF_FAIL("nginx:a:b", true, REASON_PATH);
        REF_FAIL("a/b:c/d", true, REASON_PATH);
}

static void test_parse_invalid_tag_digest(void **state) {
        (void) state;
        REF_FAIL("nginx:", true, REASON_TAG);
        REF_FAIL("nginx:.a", true, REASON_TAG);
        REF_FAIL("nginx:-a", true, REASON_TAG);
        REF_FAIL("nginx:a+b", true, REASON_TAG);
        REF_FAIL("localhost:5000/a:", true, REASON_TAG);
        REF_FAIL("nginx:", false, REASON_TAG);

        char *t = unit_repeat('t', 129);
        char s[256];
        snprintf(s, sizeof(s), "nginx:%s", t);
        REF_FAIL(s, true, REASON_TAG);
        free(t);
        t = unit_repeat('t', 128);
        snprintf(s, sizeof(s), "nginx:%s", t);
        char want[256];
        snprintf(want, sizeof(want), "docker.io/library/nginx:%s", t);
        REF_OK(s, true, "docker.io", "library/nginx", t, NULL, want);
        free(t);

        REF_FAIL("nginx@", true, REASON_DIGEST);
        REF_FAIL("nginx@sha256", true, REASON_DIGEST);
        REF_FAIL("nginx@sha256:", true, REASON_DIGEST);
        REF_FAIL("nginx@" HEX64, true, REASON_DIGEST);
        REF_FAIL("nginx@" D256 "0", true, REASON_DIGEST);
        REF_FAIL("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", true, REASON_DIGEST);
        REF_FAIL("nginx@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", true, REASON_DIGEST);
        REF_FAIL("nginx@md5:0123456789abcdef0123456789abcdef", true, REASON_DIGEST);
        REF_FAIL("nginx@@" D256, true, REASON_DIGEST);
        REF_FAIL("nginx@" D256 "@" D256, true, REASON_DIGEST);
        REF_FAIL("nginx@" D256 ":tag", true, REASON_DIGEST);
        REF_FAIL("nginx@" D256, false, REASON_REPO_ONLY);
        REF_FAIL("nginx@sha256:00", false, REASON_DIGEST);
}

static void test_parse_invalid_host(void **state) {
        (void) state;
        REF_FAIL("exa_mple.com/a", true, REASON_HOST);
        REF_FAIL("-registry.example.com/a", true, REASON_HOST);
        REF_FAIL("registry.example.com./a", true, REASON_HOST);
        REF_FAIL("registry..example.com/a", true, REASON_HOST);
        REF_FAIL("registry.example.com:0/a", true, REASON_HOST);
        REF_FAIL("registry.example.com:65536/a", true, REASON_HOST);
        REF_FAIL("registry.example.com:/a", true, REASON_HOST);
        REF_FAIL("registry.example.com:+80/a", true, REASON_HOST);
        REF_FAIL("localhost:x/a", true, REASON_HOST);
        REF_FAIL("999.1.1.1/a", true, REASON_HOST);
        REF_FAIL("::1/a", true, REASON_HOST);
        REF_FAIL("[::1/a", true, REASON_HOST);
}

static void test_parse_name_length(void **state) {
        (void) state;
        char s[600], want[600];

        /* "registry.example.com" (20) + "/" + 234 = 255 bytes: the longest name. */
        char *p = unit_repeat('a', 234);
        snprintf(s, sizeof(s), "registry.example.com/%s", p);
        snprintf(want, sizeof(want), "registry.example.com/%s:latest", p);
        REF_OK(s, true, "registry.example.com", p, "latest", NULL, want);
        free(p);

        /* 256 bytes. */
        p = unit_repeat('a', 235);
        snprintf(s, sizeof(s), "registry.example.com/%s", p);
        REF_FAIL(s, true, REASON_LONG);
        snprintf(s, sizeof(s), "registry.example.com/%s:t@" D256, p);
        REF_FAIL(s, true, REASON_LONG);
        free(p);

        /* The tag and digest do not count towards the name. */
        p = unit_repeat('a', 234);
        snprintf(s, sizeof(s), "registry.example.com/%s:t@" D256, p);
        snprintf(want, sizeof(want), "registry.example.com/%s:t@" D256, p);
        REF_OK(s, true, "registry.example.com", p, "t", D256, want);
        free(p);

        /* The limit applies to the normalised name, as distribution/reference
         * parses "docker.io/library/<name>": 18 + 237 = 255 bytes. */
        p = unit_repeat('a', 237);
        char want_path[600];
        snprintf(want_path, sizeof(want_path), "library/%s", p);
        snprintf(want, sizeof(want), "docker.io/library/%s:latest", p);
        REF_OK(p, true, "docker.io", want_path, "latest", NULL, want);
        free(p);
        p = unit_repeat('a', 238);
        REF_FAIL(p, true, REASON_LONG);
        free(p);
        p = unit_repeat('a', 245);
        REF_FAIL(p, true, REASON_LONG);
        free(p);

        /* index.docker.io is counted as the "docker.io" it becomes: 10 + 245 = 255. */
        p = unit_repeat('a', 243);
        snprintf(s, sizeof(s), "index.docker.io/x/%s", p);
        snprintf(want_path, sizeof(want_path), "x/%s", p);
        snprintf(want, sizeof(want), "docker.io/x/%s", p);
        REF_OK(s, false, "docker.io", want_path, NULL, NULL, want);
        free(p);
        p = unit_repeat('a', 244);
        snprintf(s, sizeof(s), "index.docker.io/x/%s", p);
        REF_FAIL(s, false, REASON_LONG);
        free(p);

        /* A path that alone exceeds the limit. */
        p = unit_repeat('a', 256);
        snprintf(s, sizeof(s), "registry.example.com/%s", p);
        assert_int_equal(reference_parse(s, true, &(struct reference) {}, NULL), -EINVAL);
        free(p);
}

static void test_parse_null_reason(void **state) {
        (void) state;
        struct reference r = { .domain = SENTINEL_PTR, .path = SENTINEL_PTR, .tag = SENTINEL_PTR,
                               .digest = SENTINEL_PTR };
        assert_int_equal(reference_parse("Nginx", true, &r, NULL), -EINVAL);
        assert_int_equal(reference_parse("nginx:1", false, &r, NULL), -EINVAL);
        assert_int_equal(reference_parse("nginx@sha256:0", true, &r, NULL), -EINVAL);
        assert_ptr_equal(r.domain, SENTINEL_PTR);
        assert_ptr_equal(r.path, SENTINEL_PTR);
        assert_ptr_equal(r.tag, SENTINEL_PTR);
        assert_ptr_equal(r.digest, SENTINEL_PTR);

        r = (struct reference) {};
        assert_int_equal(reference_parse("nginx", true, &r, NULL), 0);
        reference_done(&r);
        assert_null(r.domain);
        assert_null(r.path);
        assert_null(r.tag);
        assert_null(r.digest);
}

/* ---- reference_to_string ------------------------------------------------------------- */

static void test_to_string(void **state) {
        (void) state;
        static const struct {
                struct reference r;
                const char *want;
        } cases[] = {
                { { "docker.io", "library/nginx", NULL, NULL }, "docker.io/library/nginx" },
                { { "docker.io", "library/nginx", "latest", NULL }, "docker.io/library/nginx:latest" },
                { { "docker.io", "library/nginx", NULL, D256 }, "docker.io/library/nginx@" D256 },
                { { "localhost:5000", "a/b", "t", D512 }, "localhost:5000/a/b:t@" D512 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *s = reference_to_string(&cases[i].r);
                assert_non_null(s);
                assert_string_equal(s, cases[i].want);
                free(s);
        }
}

/* The canonical text parses back to the same reference. */
static void test_roundtrip(void **state) {
        (void) state;
        static const char *const inputs[] = {
                "nginx", "index.docker.io/x/y:1", "localhost:5000/a@" D256,
                "registry.example.com:5000/a/b:tag@" D256, "[::1]:5000/a",
        };
        for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                struct reference a = {}, b = {};
                assert_int_equal(reference_parse(inputs[i], true, &a, NULL), 0);
                char *s = reference_to_string(&a);
                assert_non_null(s);
                assert_int_equal(reference_parse(s, true, &b, NULL), 0);
                char *t = reference_to_string(&b);
                assert_non_null(t);
                assert_string_equal(s, t);
                assert_string_equal(a.domain, b.domain);
                assert_string_equal(a.path, b.path);
                check_field(b.tag, a.tag);
                check_field(b.digest, a.digest);
                free(s);
                free(t);
                reference_done(&a);
                reference_done(&b);
        }
}

/* ---- reference_registry_namespace ---------------------------------------------------- */

#define NS_OK(registry, want)                                                   \
        do {                                                                    \
                char b_[REFERENCE_NAME_MAX + 1];                                \
                assert_int_equal(reference_registry_namespace((registry), b_, sizeof(b_)), 0); \
                assert_string_equal(b_, (want));                                \
        } while (0)

static void test_registry_namespace(void **state) {
        (void) state;
        NS_OK("docker.io", "docker.io");
        NS_OK("registry.k8s.io", "registry.k8s.io");
        NS_OK("Registry.Example.COM", "registry.example.com");
        NS_OK("xn--bcher-kva.example", "xn--bcher-kva.example");
        NS_OK("localhost", "localhost");
        NS_OK("localhost:5000", "localhost_5000");
        NS_OK("registry.example.com:5000", "registry.example.com_5000");
        NS_OK("127.0.0.1:05000", "127.0.0.1_5000");
        NS_OK("10.0.0.1", "10.0.0.1");
        /* A name without a dot is a namespace once it has a port. */
        NS_OK("registry:5000", "registry_5000");
        /* IPv6 in all eight groups: "::" would be an empty part ('_' next to '_' or at an end). */
        NS_OK("[::1]", "0_0_0_0_0_0_0_1");
        NS_OK("[::1]:5000", "0_0_0_0_0_0_0_1_5000");
        NS_OK("[FD00::1]:5000", "fd00_0_0_0_0_0_0_1_5000");
        NS_OK("[fe80::]", "fe80_0_0_0_0_0_0_0");
        NS_OK("[::ffff:10.1.2.3]:443", "0_0_0_0_0_ffff_a01_203_443");

        /* What a Docker Hub namespace could be called: never a registry's namespace. */
        char b[REFERENCE_NAME_MAX + 1] = "untouched";
        assert_int_equal(reference_registry_namespace("registry", b, sizeof(b)), -EINVAL);
        assert_int_equal(reference_registry_namespace("library", b, sizeof(b)), -EINVAL);
        assert_int_equal(reference_registry_namespace("null", b, sizeof(b)), -EINVAL);
        /* No host[:port]. */
        assert_int_equal(reference_registry_namespace("", b, sizeof(b)), -EINVAL);
        assert_int_equal(reference_registry_namespace("docker.io/library", b, sizeof(b)), -EINVAL);
        assert_int_equal(reference_registry_namespace("::1", b, sizeof(b)), -EINVAL);
        assert_int_equal(reference_registry_namespace("a_b.example", b, sizeof(b)), -EINVAL);
        assert_int_equal(reference_registry_namespace("docker.io:0", b, sizeof(b)), -EINVAL);
        assert_string_equal(b, "untouched");
        /* Bounded by size: "docker.io" takes 10 bytes. */
        assert_int_equal(reference_registry_namespace("docker.io", b, 9), -ENAMETOOLONG);
        assert_string_equal(b, "untouched");
        NS_OK("docker.io", "docker.io");
        assert_int_equal(reference_registry_namespace("docker.io", b, 10), 0);
        /* A host name of 253 characters with a port is longer than a repository name may be. */
        char host[254];
        for (size_t i = 0; i < 253; i++)
                host[i] = i % 2 ? '.' : 'a';
        host[253] = '\0';
        NS_OK(host, host);
        char with_port[264];
        snprintf(with_port, sizeof(with_port), "%s:65535", host);
        assert_int_equal(reference_registry_namespace(with_port, b, sizeof(b)), -ENAMETOOLONG);
}

/* Every namespace is one valid path component, a different one for every
 * registry, and names a registry exactly when reference_parse() reads the
 * registry's name before a '/' as a registry (and not as Docker Hub's). */
static void test_registry_namespace_unambiguous(void **state) {
        (void) state;
        static const char *const registries[] = {
                "docker.io", "ghcr.io", "localhost", "localhost:5000", "localhost:50", "localhost:500",
                "a.b", "a.b:1", "a.b.1", "a-b.c", "a--b.c", "1.2.3.4", "1.2.3.4:5", "1.2.3.45",
                "[::1]", "[::1]:5", "[::1:5]", "[::15]", "[1::]", "[0:0:0:0:0:0:0:1]:5", "[::ffff:1.2.3.4]",
                "[::102:304]", "x.y:65535", "registry", "hub", "library", "a",
        };
        char ns[ELEMENTSOF(registries)][REFERENCE_NAME_MAX + 1];
        for (size_t i = 0; i < ELEMENTSOF(registries); i++) {
                int r = reference_registry_namespace(registries[i], ns[i], sizeof(ns[i]));
                char ref[300];
                snprintf(ref, sizeof(ref), "%s/x", registries[i]);
                struct reference parsed = {};
                assert_int_equal(reference_parse(ref, false, &parsed, NULL), 0);
                bool is_hub = strcmp(parsed.domain, "docker.io") == 0 && strcmp(registries[i], "docker.io") != 0;
                reference_done(&parsed);
                if (r < 0) {
                        assert_int_equal(r, -EINVAL);
                        assert_true(is_hub);
                        ns[i][0] = '\0';
                        continue;
                }
                assert_false(is_hub);
                assert_true(reference_path_is_valid(ns[i]));
                assert_null(strchr(ns[i], '/'));
                /* Only two spellings of one registry meet: "[0:0:0:0:0:0:0:1]:5" is "[::1]:5". */
                for (size_t j = 0; j < i; j++)
                        if (ns[j][0] && strcmp(ns[i], ns[j]) == 0)
                                assert_true(strcmp(registries[i], "[0:0:0:0:0:0:0:1]:5") == 0 &&
                                            strcmp(registries[j], "[::1]:5") == 0);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_path_valid),
                cmocka_unit_test(test_path_invalid),
                cmocka_unit_test(test_digest_validity),
                cmocka_unit_test(test_tag_validity),
                cmocka_unit_test(test_parse_docker_hub),
                cmocka_unit_test(test_parse_registries),
                cmocka_unit_test(test_parse_repository_only),
                cmocka_unit_test(test_parse_invalid_path),
                cmocka_unit_test(test_parse_invalid_tag_digest),
                cmocka_unit_test(test_parse_invalid_host),
                cmocka_unit_test(test_parse_name_length),
                cmocka_unit_test(test_parse_null_reason),
                cmocka_unit_test(test_to_string),
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_registry_namespace),
                cmocka_unit_test(test_registry_namespace_unambiguous),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
