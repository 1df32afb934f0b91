/* SPDX-License-Identifier: Apache-2.0 */
/* What a cached manifest is, read from its own JSON: the agent serves
 * manifests from the cache by digest and must send their media type. */
#include <jansson.h>
#include <string.h>

#include "fallback/fallback.h"

char *fallback_manifest_media_type(const void *body, size_t size) {
        json_error_t jerr;
        if (!body || size == 0 || size > FALLBACK_MANIFEST_MAX)
                return NULL;
        json_auto_t *root = json_loadb(body, size, 0, &jerr);
        if (!json_is_object(root))
                return NULL;
        const char *mt = json_string_value(json_object_get(root, "mediaType"));
        if (mt && mt[0] && strlen(mt) < 128)
                return strdup(mt);
        /* Docker schema 2 always says; an OCI manifest may leave mediaType out:
         * "manifests" makes it an index, "config" and "layers" an image manifest. */
        if (json_integer_value(json_object_get(root, "schemaVersion")) != 2)
                return NULL;
        if (json_is_array(json_object_get(root, "manifests")))
                return strdup("application/vnd.oci.image.index.v1+json");
        if (json_is_object(json_object_get(root, "config")) && json_is_array(json_object_get(root, "layers")))
                return strdup("application/vnd.oci.image.manifest.v1+json");
        return NULL;
}
