/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for fallback/manifest.c: the media type of a cached manifest. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_media_type),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
