/* SPDX-License-Identifier: Apache-2.0 */
/* The Helm-values form of the spec: the block cluster operators already write
 * for a node-local registry cache,
 *
 *   global.components.containerd.localRegistryCache {enabled, mirroredRegistries, port}
 *   containerRegistries.<host>: [{endpoint: ...}, ...]
 *
 * with containerRegistries either beside localRegistryCache (under
 * global.components.containerd, the chart's own layout) or at the top level,
 * mapped onto the same model as layerd's own form (docs/spec.md, "Helm-values
 * form"). A values file is shared with the rest of a chart, so keys outside
 * these two blocks are not ours to judge and are ignored; inside them every
 * key is checked. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "common/parse.h"
#include "hostsconfig/spec-internal.h"

/* Follows one key of a mapping on the way down to localRegistryCache; NULL
 * (with an error when the node has the wrong type) when it is not there. */
static yaml_node_t *descend(struct spec_ctx *c, const yaml_node_t *n, const char *path, const char *key) {
        const char *const known[] = { key };
        yaml_node_t *v;
        if (spec_mapping(c, n, path, known, 1, &v, true) < 0)
                return NULL;
        return v;
}

static struct spec_registry *add_registry(struct spec_ctx *c, const char *host, bool mirror) {
        struct spec *s = c->spec;
        struct spec_registry *r = &s->registries[s->n_registries++];
        r->host = spec_strdup(c, host);
        r->mirror = mirror;
        r->tag_ttl_ms = SPEC_DEFAULT_TAG_TTL_MS;
        spec_auth_defaults(r);
        r->origin = spec_default_origin(host);
        if (!r->origin)
                c->oom = true;
        return r;
}

/* An endpoint as operators write it: "host[:port][/path]" or a full URL. */
static void helm_endpoint(struct spec_ctx *c, const yaml_node_t *item, const char *path, struct spec_endpoint *e) {
        static const char *const keys[] = { "endpoint" };
        yaml_node_t *v;
        char p[SPEC_PATH_MAX];

        spec_endpoint_defaults(e);
        e->line = (unsigned) item->start_mark.line + 1;
        if (spec_mapping(c, item, path, keys, 1, &v, false) < 0)
                return;
        if (!v) {
                spec_error(c, item, path, "missing required key \"endpoint\"");
                return;
        }
        spec_path_key(p, sizeof(p), path, "endpoint");
        const char *s = spec_scalar(c, v, p);
        if (!s)
                return;
        _cleanup_free_ char *full = NULL;
        if (!strstr(s, "://")) {
                if (asprintf(&full, "https://%s", s) < 0) {
                        c->oom = true;
                        return;
                }
        }
        char shown[SPEC_URL_SHOWN_MAX];
        if (url_redact(full ? full : s, shown, sizeof(shown))) {
                /* The Helm form has no place for credentials; the layerd form does.
                 * Show the value as written, without the scheme we added. */
                spec_error(c, v, p, "credentials in an endpoint are not allowed (the layerd form's credentials_file "
                           "holds them): \"%s\"", full ? shown + strlen("https://") : shown);
                return;
        }
        struct url u;
        const char *reason = NULL;
        int r = url_parse(full ? full : s, &u, &reason);
        if (r == -ENOMEM) {
                c->oom = true;
                return;
        }
        if (r < 0) {
                spec_error(c, v, p, "%s: \"%.128s\"", reason, s);
                return;
        }
        /* Harbor proxy projects are written with the API root in the path
         * (https://harbor/v2/proxy-docker.io); containerd needs override_path
         * for them, and must append /v2 to any other path. */
        e->override_path = strncmp(u.path, "/v2", 3) == 0 && (u.path[3] == '\0' || u.path[3] == '/');
        e->url = url_to_string(&u);
        if (!e->url)
                c->oom = true;
        url_done(&u);
}

static void helm_endpoints(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct spec_registry *r) {
        if (n->type != YAML_SEQUENCE_NODE) {
                spec_error(c, n, path, "expected a list, got %s", spec_node_kind(n));
                return;
        }
        size_t len = (size_t) (n->data.sequence.items.top - n->data.sequence.items.start);
        if (len == 0) {
                spec_error(c, n, path, "empty list");
                return;
        }
        if (len > SPEC_ENDPOINTS_MAX) {
                spec_error(c, n, path, "too many items (at most %d)", SPEC_ENDPOINTS_MAX);
                return;
        }
        r->endpoints = spec_calloc(c, len + 1, sizeof(struct spec_endpoint));
        if (!r->endpoints)
                return;
        r->n_endpoints = len;
        for (size_t i = 0; i < len; i++) {
                char p[SPEC_PATH_MAX];
                spec_path_index(p, sizeof(p), path, i);
                yaml_node_t *item = spec_node(c, n->data.sequence.items.start[i]);
                helm_endpoint(c, item, p, &r->endpoints[i]);
                spec_check_duplicate_endpoint(c, r, i, item, p);
        }
}

/* containerRegistries, where operators write it: beside localRegistryCache
 * under global.components.containerd (the chart's layout), or at the top
 * level. Either is read; both at once would leave one silently unused, so that
 * is an error. *ret_path is the key path for errors about the block. */
static const yaml_node_t *find_registries(struct spec_ctx *c, const yaml_node_t *root, const yaml_node_t *containerd,
                                          const char **ret_path) {
        static const char *const nested_path = "global.components.containerd.containerRegistries";
        const yaml_node_t *top = descend(c, root, "", "containerRegistries");
        /* A containerd that is not a mapping was reported on the way down. */
        const yaml_node_t *nested = containerd && containerd->type == YAML_MAPPING_NODE
                                            ? descend(c, containerd, "global.components.containerd", "containerRegistries")
                                            : NULL;
        *ret_path = nested ? nested_path : "containerRegistries";
        if (top && nested) {
                spec_error(c, nested, nested_path,
                           "also given at the top level (line %lu): keep one containerRegistries block",
                           (unsigned long) top->start_mark.line + 1);
                return NULL;
        }
        return nested ? nested : top;
}

void spec_parse_helm(struct spec_ctx *c, const yaml_node_t *root) {
        static const char *const cache_keys[] = { "enabled", "mirroredRegistries", "port" };
        static const char *const cache_path = "global.components.containerd.localRegistryCache";
        static const char *const mr_path = "global.components.containerd.localRegistryCache.mirroredRegistries";
        /* Walk down to localRegistryCache, remembering the deepest node found
         * so that "missing" points where the block should have been. */
        static const char *const steps[][2] = {
                { "", "global" },
                { "global", "components" },
                { "global.components", "containerd" },
                { "global.components.containerd", "localRegistryCache" },
        };
        const yaml_node_t *cache = root, *deepest = root, *containerd = NULL;
        size_t errors_before = error_list_count(c->errors);
        for (size_t i = 0; cache && i < ELEMENTSOF(steps); i++) {
                deepest = cache;
                cache = descend(c, cache, steps[i][0], steps[i][1]);
                if (i == 2)
                        containerd = cache;
        }
        const char *regs_path;
        const yaml_node_t *regs = find_registries(c, root, containerd, &regs_path);
        yaml_node_t *v[ELEMENTSOF(cache_keys)] = {};
        bool enabled = false;
        size_t n_mirrored = 0, n_regs = 0;

        /* A wrong type on the way down was reported; "missing" would only repeat it. */
        if (!cache && error_list_count(c->errors) == errors_before)
                spec_error(c, deepest, "", "%s: missing (layerd reads its settings from there)", cache_path);
        else if (cache) {
                size_t before = error_list_count(c->errors);
                if (spec_mapping(c, cache, cache_path, cache_keys, ELEMENTSOF(cache_keys), v, false) == 0) {
                        bool typo = error_list_count(c->errors) > before;
                        if (v[0])
                                (void) spec_get_bool(c, v[0], "global.components.containerd.localRegistryCache.enabled",
                                                     &enabled);
                        if (v[2]) {
                                uint64_t port;
                                if (spec_get_uint(c, v[2], "global.components.containerd.localRegistryCache.port", 1,
                                                  65535, &port) == 0)
                                        c->spec->agent.listen_port = (uint16_t) port;
                        }
                        if (v[1] && v[1]->type != YAML_SEQUENCE_NODE)
                                spec_error(c, v[1], mr_path, "expected a list, got %s", spec_node_kind(v[1]));
                        else if (v[1])
                                n_mirrored = (size_t) (v[1]->data.sequence.items.top - v[1]->data.sequence.items.start);
                        /* A misspelt mirroredRegistries was reported as unknown key already. */
                        if (enabled && n_mirrored == 0 && !typo && (!v[1] || v[1]->type == YAML_SEQUENCE_NODE))
                                spec_error(c, v[1] ? v[1] : cache, v[1] ? mr_path : cache_path,
                                           v[1] ? "empty list" : "enabled, but no mirroredRegistries");
                        if (n_mirrored > SPEC_REGISTRIES_MAX) {
                                spec_error(c, v[1], mr_path, "too many registries (at most %d)", SPEC_REGISTRIES_MAX);
                                n_mirrored = 0;
                        }
                }
        }
        if (regs) {
                if (regs->type != YAML_MAPPING_NODE)
                        spec_error(c, regs, regs_path, "expected a mapping, got %s", spec_node_kind(regs));
                else
                        n_regs = (size_t) (regs->data.mapping.pairs.top - regs->data.mapping.pairs.start);
                if (n_regs > SPEC_REGISTRIES_MAX) {
                        spec_error(c, regs, regs_path, "too many registries (at most %d)",
                                   SPEC_REGISTRIES_MAX);
                        n_regs = 0;
                }
        }
        if (cache && n_mirrored + n_regs == 0 && error_list_count(c->errors) == 0) {
                spec_error(c, cache, cache_path, "no registries: list mirroredRegistries or containerRegistries");
                return;
        }
        /* Room for both lists; hosts in both are merged, so the real count may be lower. */
        c->spec->registries = spec_calloc(c, n_mirrored + n_regs, sizeof(struct spec_registry));
        if (!c->spec->registries)
                return;

        /* Mirrored registries first, in their order; each keeps its own
         * containerRegistries endpoints (found below) ahead of the origin. */
        for (size_t i = 0; i < n_mirrored; i++) {
                char p[SPEC_PATH_MAX];
                spec_path_index(p, sizeof(p), mr_path, i);
                const yaml_node_t *item = spec_node(c, v[1]->data.sequence.items.start[i]);
                _cleanup_free_ char *host = spec_registry_host(c, item, p);
                if (!host)
                        continue;
                if (spec_find_registry(c->spec, host)) {
                        spec_error(c, item, p, "\"%s\" listed twice", host);
                        continue;
                }
                add_registry(c, host, enabled);
        }
        for (size_t i = 0; i < n_regs; i++) {
                const yaml_node_pair_t *pair = &regs->data.mapping.pairs.start[i];
                const yaml_node_t *key = spec_node(c, pair->key);
                _cleanup_free_ char *host = spec_registry_host(c, key, regs_path);
                if (!host || !spec_key_is_unique(c, regs, i, regs_path, true))
                        continue;
                struct spec_registry *r = (struct spec_registry *) spec_find_registry(c->spec, host);
                /* Registries the cache does not mirror are still rendered for
                 * containerd, which then goes to their endpoints directly. */
                if (!r) {
                        if (c->spec->n_registries >= SPEC_REGISTRIES_MAX) {
                                spec_error(c, key, regs_path, "too many registries (at most %d)",
                                           SPEC_REGISTRIES_MAX);
                                break;
                        }
                        r = add_registry(c, host, false);
                }
                char p[SPEC_PATH_MAX];
                spec_path_key(p, sizeof(p), regs_path, host);
                if (r->endpoints) {
                        /* Same registry spelt differently ("zot:05000", "zot:5000"). */
                        spec_error(c, key, p, "duplicate registry");
                        continue;
                }
                helm_endpoints(c, spec_node(c, pair->value), p, r);
        }
        for (size_t i = 0; i < c->spec->n_registries; i++)
                spec_mark_origin(c, &c->spec->registries[i], true);
        spec_finish(c, NULL);
}
