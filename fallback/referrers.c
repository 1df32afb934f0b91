/* SPDX-License-Identifier: Apache-2.0 */
/* The OCI 1.1 referrers index, read strictly: its bytes come from a registry
 * and are served again from the cache, so only a document a client can use
 * is ever kept (fallback.h). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "fallback/fallback.h"

#define REFERRERS_STRING_MAX 128 /* a media type or artifact type, NUL excluded */

static const char *short_string(json_t *j) {
        const char *s = json_string_value(j);
        return s && s[0] && strlen(s) < REFERRERS_STRING_MAX ? s : NULL;
}

/* The index's "manifests" when root is a referrers index, else NULL. */
static json_t *index_manifests(json_t *root) {
        json_t *manifests = json_object_get(root, "manifests");
        const char *mt = json_string_value(json_object_get(root, "mediaType"));
        json_t *version = json_object_get(root, "schemaVersion");
        /* The spec requires the index's mediaType in the answer: an object without it is
         * not an index a client could tell from a manifest. */
        if (!json_is_object(root) || !json_is_integer(version) || json_integer_value(version) != 2 || !mt ||
            strcmp(mt, FALLBACK_REFERRERS_MEDIA_TYPE) != 0 || !json_is_array(manifests) ||
            json_array_size(manifests) > FALLBACK_REFERRERS_MAX)
                return NULL;
        return manifests;
}

static int referrer(json_t *j, struct fallback_referrer *ret) {
        const char *d = json_string_value(json_object_get(j, "digest"));
        const char *mt = short_string(json_object_get(j, "mediaType"));
        json_t *size = json_object_get(j, "size"), *at = json_object_get(j, "artifactType");
        if (!json_is_object(j) || !d || digest_parse(d, &ret->digest) < 0 || !mt || !json_is_integer(size) ||
            json_integer_value(size) < 0 || (at && !short_string(at)))
                return -EBADMSG;
        ret->size = (int64_t) json_integer_value(size);
        ret->media_type = strdup(mt);
        ret->artifact_type = at ? strdup(json_string_value(at)) : NULL;
        return ret->media_type && (!at || ret->artifact_type) ? 0 : -ENOMEM;
}

void fallback_referrers_done(struct fallback_referrers *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++) {
                free(r->items[i].media_type);
                free(r->items[i].artifact_type);
        }
        free(r->items);
        *r = (struct fallback_referrers) {};
}

static json_t *load(const void *body, size_t size) {
        json_error_t jerr;
        if (!body || size == 0 || size > FALLBACK_MANIFEST_MAX)
                return NULL;
        return json_loadb(body, size, 0, &jerr);
}

int fallback_referrers_parse(const void *body, size_t size, struct fallback_referrers *ret) {
        json_auto_t *root = load(body, size);
        json_t *manifests = index_manifests(root);
        if (!manifests)
                return -EBADMSG;
        struct fallback_referrers v = { .items = calloc(json_array_size(manifests) + 1, sizeof(*v.items)) };
        if (!v.items)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 0; r >= 0 && i < json_array_size(manifests); i++)
                r = referrer(json_array_get(manifests, i), &v.items[v.n++]); /* counted half-filled: freed below */
        if (r < 0) {
                fallback_referrers_done(&v);
                return r;
        }
        *ret = v;
        return 0;
}

int fallback_referrers_filter(const void *body, size_t size, const char *artifact_type, char **ret_body,
                              size_t *ret_size) {
        json_auto_t *root = load(body, size);
        json_t *manifests = index_manifests(root);
        if (!manifests)
                return -EBADMSG;
        json_auto_t *kept = json_array();
        if (!kept)
                return -ENOMEM;
        for (size_t i = 0; i < json_array_size(manifests); i++) {
                json_t *d = json_array_get(manifests, i);
                /* Only what fallback_referrers_parse() accepts: checked here as there. */
                struct fallback_referrer item = {};
                int r = referrer(d, &item);
                bool keep = r >= 0 && item.artifact_type && strcmp(item.artifact_type, artifact_type) == 0;
                free(item.media_type);
                free(item.artifact_type);
                if (r < 0)
                        return r;
                if (keep && json_array_append(kept, d) < 0)
                        return -ENOMEM;
        }
        if (json_object_set(root, "manifests", kept) < 0)
                return -ENOMEM;
        char *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!out)
                return -ENOMEM;
        *ret_size = strlen(out);
        *ret_body = out;
        return 0;
}
