/* SPDX-License-Identifier: Apache-2.0 */
/* What a cached manifest is, read from its own JSON: the agent serves
 * manifests from the cache by digest and must send their media type. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fallback/fallback.h"
#include "fallback/fallback-internal.h"

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

bool fallback_manifest_is_whole(const void *body, size_t size) {
        json_error_t jerr;
        if (!body || size == 0 || size > FALLBACK_MANIFEST_MAX)
                return false;
        /* json_loadb() fails on anything but whitespace after the value: a
         * body cut short is never a whole object. */
        json_auto_t *root = json_loadb(body, size, 0, &jerr);
        return json_is_object(root) && (json_is_string(json_object_get(root, "mediaType")) ||
                                        json_is_integer(json_object_get(root, "schemaVersion")));
}

void fallback_strv_free(char **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

int fallback_tags_parse(const void *body, size_t size, char ***ret_tags, size_t *ret_n) {
        json_error_t jerr;
        if (!body || size == 0 || size > FALLBACK_MANIFEST_MAX)
                return -EBADMSG;
        json_auto_t *root = json_loadb(body, size, 0, &jerr);
        json_t *tags = json_object_get(root, "tags");
        if (!json_is_object(root) || !(json_is_array(tags) || json_is_null(tags) || !tags))
                return -EBADMSG;
        size_t len = json_is_array(tags) ? json_array_size(tags) : 0, n = 0;
        char **v = calloc(len ? len : 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                const char *t = json_string_value(json_array_get(tags, i));
                if (!t)
                        continue;
                v[n] = strdup(t);
                if (!v[n]) {
                        fallback_strv_free(v, n);
                        return -ENOMEM;
                }
                n++;
        }
        *ret_tags = v;
        *ret_n = n;
        return 0;
}

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int fallback_link_next_last(const char *link, char **ret_last) {
        /* RFC 8288: link-value = "<" URI-Reference ">" *( ";" link-param ), values separated by ",". */
        for (const char *p = link; p && *p;) {
                const char *lt = strchr(p, '<');
                const char *gt = lt ? strchr(lt, '>') : NULL;
                if (!gt)
                        return -ENOENT;
                const char *end = strchr(gt, ',');
                size_t plen = end ? (size_t) (end - gt) : strlen(gt);
                /* rel="next" or rel=next among the parameters. */
                bool next = false;
                for (const char *q = gt; q && q < gt + plen; q = strchr(q + 1, ';')) {
                        const char *r = q + (*q == ';');
                        while (*r == ' ')
                                r++;
                        if (strncasecmp(r, "rel=", 4) == 0) {
                                r += 4;
                                r += *r == '"';
                                next = strncasecmp(r, "next", 4) == 0 && (r[4] == '"' || r[4] == ';' || r[4] == ',' ||
                                                                        r[4] == ' ' || r[4] == '\0');
                        }
                        if (next)
                                break;
                }
                if (next) {
                        const char *qs = memchr(lt, '?', (size_t) (gt - lt));
                        for (const char *a = qs; a && a < gt; a = memchr(a + 1, '&', (size_t) (gt - a - 1))) {
                                if (strncmp(a + 1, "last=", 5) != 0)
                                        continue;
                                const char *v = a + 6;
                                size_t vlen = strcspn(v, "&>");
                                if (v + vlen > gt)
                                        vlen = (size_t) (gt - v);
                                char *out = malloc(vlen + 1), *o = out;
                                if (!out)
                                        return -ENOMEM;
                                for (size_t i = 0; i < vlen; i++) {
                                        if (v[i] == '%' && i + 2 < vlen && hexval(v[i + 1]) >= 0 &&
                                            hexval(v[i + 2]) >= 0) {
                                                *o++ = (char) (hexval(v[i + 1]) * 16 + hexval(v[i + 2]));
                                                i += 2;
                                        } else
                                                *o++ = v[i];
                                }
                                *o = '\0';
                                if (!out[0]) {
                                        free(out);
                                        return -ENOENT;
                                }
                                *ret_last = out;
                                return 0;
                        }
                        return -ENOENT;
                }
                p = end ? end + 1 : NULL;
        }
        return -ENOENT;
}

void fallback_manifest_refs_done(struct fallback_manifest_refs *r) {
        if (!r)
                return;
        free(r->config.media_type);
        free(r->config.platform);
        for (size_t i = 0; i < r->n_items; i++) {
                free(r->items[i].media_type);
                free(r->items[i].platform);
        }
        free(r->items);
        *r = (struct fallback_manifest_refs) {};
}

static int descriptor(json_t *j, bool want_platform, struct fallback_descriptor *ret) {
        const char *d = json_string_value(json_object_get(j, "digest"));
        json_t *size = json_object_get(j, "size");
        const char *mt = json_string_value(json_object_get(j, "mediaType"));
        if (!json_is_object(j) || !d || digest_parse(d, &ret->digest) < 0)
                return -EBADMSG;
        if (size && (!json_is_integer(size) || json_integer_value(size) < 0))
                return -EBADMSG;
        ret->size = size ? (int64_t) json_integer_value(size) : -1;
        if (mt && strlen(mt) < 128 && !(ret->media_type = strdup(mt)))
                return -ENOMEM;
        json_t *pl = want_platform ? json_object_get(j, "platform") : NULL;
        const char *os = json_string_value(json_object_get(pl, "os"));
        const char *arch = json_string_value(json_object_get(pl, "architecture"));
        const char *variant = json_string_value(json_object_get(pl, "variant"));
        if (os && arch && strlen(os) < 64 && strlen(arch) < 64 && (!variant || strlen(variant) < 64) &&
            asprintf(&ret->platform, "%s/%s%s%s", os, arch, variant && variant[0] ? "/" : "",
                     variant ? variant : "") < 0) {
                ret->platform = NULL;
                return -ENOMEM;
        }
        return 0;
}

int fallback_manifest_refs(const void *body, size_t size, struct fallback_manifest_refs *ret) {
        json_error_t jerr;
        if (!body || size == 0 || size > FALLBACK_MANIFEST_MAX)
                return -EBADMSG;
        json_auto_t *root = json_loadb(body, size, 0, &jerr);
        if (!json_is_object(root))
                return -EBADMSG;
        json_t *manifests = json_object_get(root, "manifests");
        json_t *layers = json_object_get(root, "layers");
        json_t *config = json_object_get(root, "config");
        struct fallback_manifest_refs m = { .is_index = json_is_array(manifests) };
        json_t *items = m.is_index ? manifests : layers;
        int r = 0;
        if (!m.is_index && (!json_is_object(config) || !json_is_array(layers)))
                return -EBADMSG;
        m.items = calloc(json_array_size(items) + 1, sizeof(*m.items));
        if (!m.items)
                return -ENOMEM;
        if (!m.is_index) {
                r = descriptor(config, false, &m.config);
                m.has_config = r >= 0;
        }
        for (size_t i = 0; r >= 0 && i < json_array_size(items); i++) {
                r = descriptor(json_array_get(items, i), m.is_index, &m.items[m.n_items]);
                m.n_items++; /* counted even when half-filled: freed below */
        }
        if (r < 0) {
                fallback_manifest_refs_done(&m);
                return r;
        }
        *ret = m;
        return 0;
}
