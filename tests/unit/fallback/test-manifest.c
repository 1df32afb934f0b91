/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for fallback/manifest.c: the media type of a cached manifest,
 * the descriptors a manifest refers to, tag list pages and their Link. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fallback/fallback.h"

static void is(const char *json, const char *want) {
        char *mt = fallback_manifest_media_type(json, strlen(json));
        if (!want) {
                assert_null(mt);
                return;
        }
        assert_non_null(mt);
        assert_string_equal(mt, want);
        free(mt);
}

static void test_media_type(void **state) {
        (void) state;
        is("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\"}",
           "application/vnd.docker.distribution.manifest.v2+json");
        is("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}",
           "application/vnd.oci.image.index.v1+json");
        /* OCI leaves mediaType optional: the shape says what it is. */
        is("{\"schemaVersion\":2,\"manifests\":[]}", "application/vnd.oci.image.index.v1+json");
        is("{\"schemaVersion\":2,\"config\":{},\"layers\":[]}", "application/vnd.oci.image.manifest.v1+json");
        /* Not manifests: a layer's bytes, other JSON, an unknown shape. */
        is("\x1f\x8b\x08\x00", NULL);
        is("[1,2]", NULL);
        is("{\"schemaVersion\":1}", NULL);
        is("{\"schemaVersion\":2}", NULL);
        is("{\"schemaVersion\":2,\"mediaType\":\"\"}", NULL);
        assert_null(fallback_manifest_media_type(NULL, 0));
        assert_null(fallback_manifest_media_type("{}", 0));
}

#define D1 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define D2 "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

static void test_refs(void **state) {
        (void) state;
        struct fallback_manifest_refs m;
        char ds[DIGEST_STRING_MAX];
        const char *index = "{\"schemaVersion\":2,\"manifests\":["
                            "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1 "\",\"size\":7,"
                            "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
                            "{\"digest\":\"" D2 "\",\"size\":9,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
                            "{\"digest\":\"" D2 "\"}]}";
        assert_int_equal(fallback_manifest_refs(index, strlen(index), &m), 0);
        assert_true(m.is_index);
        assert_false(m.has_config);
        assert_int_equal(m.n_items, 3);
        assert_string_equal(m.items[0].platform, "linux/arm64/v8");
        assert_string_equal(m.items[0].media_type, "application/vnd.oci.image.manifest.v1+json");
        assert_string_equal(digest_to_string(&m.items[0].digest, ds), D1);
        assert_int_equal(m.items[0].size, 7);
        assert_string_equal(m.items[1].platform, "linux/amd64");
        assert_null(m.items[1].media_type);
        assert_null(m.items[2].platform);
        assert_int_equal(m.items[2].size, -1);
        fallback_manifest_refs_done(&m);

        const char *image = "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":2},"
                            "\"layers\":[{\"digest\":\"" D2 "\",\"size\":100},{\"digest\":\"" D1 "\",\"size\":3}]}";
        assert_int_equal(fallback_manifest_refs(image, strlen(image), &m), 0);
        assert_false(m.is_index);
        assert_true(m.has_config);
        assert_string_equal(digest_to_string(&m.config.digest, ds), D1);
        assert_int_equal(m.n_items, 2);
        assert_int_equal(m.items[0].size, 100);
        fallback_manifest_refs_done(&m);

        /* Every digest must be a valid one before anything is fetched by it. */
        const char *bad[] = {
                "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"sha256:../../etc/passwd\"}]}",
                "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"md5:d41d8cd98f00b204e9800998ecf8427e\"}]}",
                "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\"},\"layers\":[{\"size\":1}]}",
                "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":-1},\"layers\":[]}",
                "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":\"1\"},\"layers\":[]}",
                "{\"schemaVersion\":2,\"layers\":[]}",
                "{\"schemaVersion\":2,\"manifests\":[7]}",
                "[]",
                "not json",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(fallback_manifest_refs(bad[i], strlen(bad[i]), &m), -EBADMSG);
        assert_int_equal(fallback_manifest_refs(NULL, 0, &m), -EBADMSG);
}

static void test_tags(void **state) {
        (void) state;
        char **tags = NULL;
        size_t n = 0;
        const char *page = "{\"name\":\"library/nginx\",\"tags\":[\"1.25\",7,\"latest\",null]}";
        assert_int_equal(fallback_tags_parse(page, strlen(page), &tags, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(tags[0], "1.25");
        assert_string_equal(tags[1], "latest");
        fallback_strv_free(tags, n);
        /* distribution answers "tags": null for a repository without tags */
        page = "{\"name\":\"x\",\"tags\":null}";
        assert_int_equal(fallback_tags_parse(page, strlen(page), &tags, &n), 0);
        assert_int_equal(n, 0);
        fallback_strv_free(tags, n);
        page = "{\"name\":\"x\",\"tags\":\"latest\"}";
        assert_int_equal(fallback_tags_parse(page, strlen(page), &tags, &n), -EBADMSG);
        assert_int_equal(fallback_tags_parse("[]", 2, &tags, &n), -EBADMSG);
        assert_int_equal(fallback_tags_parse("", 0, &tags, &n), -EBADMSG);
}

static void link_is(const char *link, const char *want) {
        char *last = NULL;
        int r = fallback_link_next_last(link, &last);
        if (!want) {
                assert_int_equal(r, -ENOENT);
                assert_null(last);
                return;
        }
        assert_int_equal(r, 0);
        assert_string_equal(last, want);
        free(last);
}

static void test_link(void **state) {
        (void) state;
        /* docker-registry's form, and what other registries send */
        link_is("</v2/library/nginx/tags/list?last=1.25.3&n=2>; rel=\"next\"", "1.25.3");
        link_is("</v2/x/tags/list?n=100&last=v1.2>; rel=\"next\"", "v1.2");
        link_is("<https://r.example/v2/x/tags/list?n=5&last=a%2Db&foo=1>;rel=next", "a-b");
        link_is("</v2/x/tags/list?n=5&last=a>; rel=\"prev\", </v2/x/tags/list?n=5&last=z>; rel=\"next\"", "z");
        link_is("</v2/x/tags/list?n=5&last=a>; rel=\"prev\"", NULL);
        link_is("</v2/x/tags/list?n=5>; rel=\"next\"", NULL);
        link_is("</v2/x/tags/list?n=5&last=>; rel=\"next\"", NULL);
        link_is("garbage", NULL);
        link_is("", NULL);
        link_is("</v2/x/tags/list?last=q>; rel=\"nextpage\"", NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_media_type),
                cmocka_unit_test(test_refs),
                cmocka_unit_test(test_tags),
                cmocka_unit_test(test_link),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
