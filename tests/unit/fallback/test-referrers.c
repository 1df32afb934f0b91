/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for fallback/referrers.c: the OCI 1.1 referrers index read
 * strictly (what a registry sends is stored and served again) and filtered
 * by artifactType. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fallback/fallback.h"

#define D1 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define D2 "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
#define MT "application/vnd.oci.image.manifest.v1+json"
#define SIG "application/vnd.dev.cosign.artifact.sig.v1+json"
#define SBOM "application/spdx+json"
#define HEAD "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":"
#define SIG_DESC "{\"mediaType\":\"" MT "\",\"digest\":\"" D1 "\",\"size\":10,\"artifactType\":\"" SIG "\"," \
                 "\"annotations\":{\"org.example\":\"x\"}}"
#define SBOM_DESC "{\"mediaType\":\"" MT "\",\"digest\":\"" D2 "\",\"size\":20,\"artifactType\":\"" SBOM "\"}"
#define PLAIN_DESC "{\"mediaType\":\"" MT "\",\"digest\":\"" D2 "\",\"size\":30}"

static int parse(const char *json, struct fallback_referrers *r) {
        return fallback_referrers_parse(json, strlen(json), r);
}

static void test_parse(void **state) {
        (void) state;
        struct fallback_referrers r;
        char ds[DIGEST_STRING_MAX];
        const char *index = HEAD "[" SIG_DESC "," SBOM_DESC "," PLAIN_DESC "],\"annotations\":{\"a\":\"b\"}}";
        assert_int_equal(parse(index, &r), 0);
        assert_int_equal(r.n, 3);
        assert_string_equal(digest_to_string(&r.items[0].digest, ds), D1);
        assert_int_equal(r.items[0].size, 10);
        assert_string_equal(r.items[0].media_type, MT);
        assert_string_equal(r.items[0].artifact_type, SIG);
        assert_string_equal(r.items[1].artifact_type, SBOM);
        assert_null(r.items[2].artifact_type);
        fallback_referrers_done(&r);
        assert_int_equal(r.n, 0);
        fallback_referrers_done(&r); /* twice, and NULL: harmless */
        fallback_referrers_done(NULL);

        /* No referrers: an empty index, not an error. */
        assert_int_equal(parse(HEAD "[]}", &r), 0);
        assert_int_equal(r.n, 0);
        fallback_referrers_done(&r);
}

static void bad(const char *json) {
        struct fallback_referrers r = { .n = 77 };
        assert_int_equal(parse(json, &r), -EBADMSG);
        assert_int_equal(r.n, 77); /* untouched */
}

static void test_reject(void **state) {
        (void) state;
        /* Not an index: garbage, another document, the distribution error a registry without the API sends. */
        bad("");
        bad("not json");
        bad("[]");
        bad("{\"errors\":[{\"code\":\"NAME_UNKNOWN\",\"message\":\"repository name not known\"}]}");
        bad(HEAD "[]} trailing");
        /* The index's mediaType is required in a referrers answer, and must be the OCI index's. */
        bad("{\"schemaVersion\":2,\"manifests\":[]}");
        bad("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\","
            "\"manifests\":[]}");
        bad("{\"schemaVersion\":1,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}");
        bad("{\"schemaVersion\":\"2\",\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}");
        bad("{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}");
        bad(HEAD "null}");
        bad(HEAD "{}}");
        /* Descriptors: mediaType, a valid digest and a size are required. */
        bad(HEAD "[1]}");
        bad(HEAD "[{\"digest\":\"" D1 "\",\"size\":1}]}");
        bad(HEAD "[{\"mediaType\":\"" MT "\",\"size\":1}]}");
        bad(HEAD "[{\"mediaType\":\"" MT "\",\"digest\":\"" D1 "\"}]}");
        bad(HEAD "[{\"mediaType\":\"" MT "\",\"digest\":\"" D1 "\",\"size\":-1}]}");
        bad(HEAD "[{\"mediaType\":\"" MT "\",\"digest\":\"" D1 "\",\"size\":\"1\"}]}");
        bad(HEAD "[{\"mediaType\":\"" MT "\",\"digest\":\"sha256:abc\",\"size\":1}]}");
        bad(HEAD "[{\"mediaType\":\"" MT "\",\"digest\":\"md5:d41d8cd98f00b204e9800998ecf8427e\",\"size\":1}]}");
        bad(HEAD "[{\"mediaType\":\"\",\"digest\":\"" D1 "\",\"size\":1}]}");
        bad(HEAD "[{\"mediaType\":\"" MT "\",\"digest\":\"" D1 "\",\"size\":1,\"artifactType\":7}]}");
        bad(HEAD "[{\"mediaType\":\"" MT "\",\"digest\":\"" D1 "\",\"size\":1,\"artifactType\":\"\"}]}");
        bad(HEAD "[" SIG_DESC ",{}]}");
        /* Bounded: an over-long media type, too many descriptors, too many bytes. */
        char mt[200];
        memset(mt, 'a', sizeof(mt) - 1);
        mt[sizeof(mt) - 1] = '\0';
        char *json = NULL;
        assert_true(asprintf(&json, HEAD "[{\"mediaType\":\"%s\",\"digest\":\"" D1 "\",\"size\":1}]}", mt) > 0);
        bad(json);
        free(json);
        size_t n = FALLBACK_REFERRERS_MAX + 1, each = strlen(PLAIN_DESC) + 1, cap = strlen(HEAD) + n * each + 4;
        char *many = malloc(cap);
        assert_non_null(many);
        size_t len = (size_t) snprintf(many, cap, "%s[", HEAD);
        for (size_t i = 0; i < n; i++)
                len += (size_t) snprintf(many + len, cap - len, "%s%s", i ? "," : "", PLAIN_DESC);
        snprintf(many + len, cap - len, "]}");
        bad(many);
        /* FALLBACK_REFERRERS_MAX of them are taken: the last one cut off. */
        struct fallback_referrers r;
        snprintf(many + len - each, cap - (len - each), "]}");
        assert_int_equal(parse(many, &r), 0);
        assert_int_equal(r.n, FALLBACK_REFERRERS_MAX);
        fallback_referrers_done(&r);
        free(many);
        struct fallback_referrers r2;
        assert_int_equal(fallback_referrers_parse(HEAD "[]}", FALLBACK_MANIFEST_MAX + 1, &r2), -EBADMSG);
        assert_int_equal(fallback_referrers_parse(NULL, 0, &r2), -EBADMSG);
}

static void filtered(const char *index, const char *artifact_type, size_t want_n, const char *want_first) {
        char *out = NULL;
        size_t size = 0;
        assert_int_equal(fallback_referrers_filter(index, strlen(index), artifact_type, &out, &size), 0);
        assert_int_equal(size, strlen(out));
        /* Still a referrers index, with only what matches. */
        struct fallback_referrers r;
        assert_int_equal(fallback_referrers_parse(out, size, &r), 0);
        assert_int_equal(r.n, want_n);
        for (size_t i = 0; i < r.n; i++)
                assert_string_equal(r.items[i].artifact_type, artifact_type);
        if (want_first) {
                char ds[DIGEST_STRING_MAX];
                assert_string_equal(digest_to_string(&r.items[0].digest, ds), want_first);
        }
        fallback_referrers_done(&r);
        free(out);
}

static void test_filter(void **state) {
        (void) state;
        const char *index = HEAD "[" SIG_DESC "," SBOM_DESC "," PLAIN_DESC "],\"annotations\":{\"a\":\"b\"}}";
        filtered(index, SIG, 1, D1);
        filtered(index, SBOM, 1, D2);
        filtered(index, "application/none", 0, NULL);
        /* The rest of the document stays: its annotations, a descriptor's annotations. */
        char *out = NULL;
        size_t size = 0;
        assert_int_equal(fallback_referrers_filter(index, strlen(index), SIG, &out, &size), 0);
        assert_non_null(strstr(out, "\"annotations\":{\"a\":\"b\"}"));
        assert_non_null(strstr(out, "\"org.example\":\"x\""));
        assert_null(strstr(out, D2));
        free(out);
        /* What is no index is not filtered. */
        assert_int_equal(fallback_referrers_filter("[]", 2, SIG, &out, &size), -EBADMSG);
        assert_int_equal(fallback_referrers_filter("{\"schemaVersion\":2,\"manifests\":[]}", 33, SIG, &out, &size),
                         -EBADMSG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_reject),
                cmocka_unit_test(test_filter),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
