/* SPDX-License-Identifier: Apache-2.0 */
/* The checks and defaults both spec forms share (spec-layerd.c, spec-helm.c):
 * an endpoint's defaults, the origin marked or appended, duplicate endpoints,
 * and spec_finish()'s cross-checks once a whole document is read. */
#include <string.h>

#include "hostsconfig/spec-internal.h"

/* ---- endpoints -------------------------------------------------------------- */

void spec_endpoint_defaults(struct spec_endpoint *e) {
        e->capabilities = SPEC_CAP_PULL | SPEC_CAP_RESOLVE;
        e->connect_timeout_ms = 0; /* not given: its default depends on is_origin, see spec_finish() */
        e->response_timeout_ms = SPEC_DEFAULT_RESPONSE_TIMEOUT_MS;
        e->idle_timeout_ms = SPEC_DEFAULT_IDLE_TIMEOUT_MS;
}

void spec_mark_origin(struct spec_ctx *c, struct spec_registry *r, bool append) {
        bool listed = false;
        if (!r->origin)
                return;
        for (size_t i = 0; i < r->n_endpoints; i++)
                if (r->endpoints[i].url && strcmp(r->endpoints[i].url, r->origin) == 0) {
                        r->endpoints[i].is_origin = true;
                        listed = true;
                }
        if (listed || !append)
                return;
        /* Parsers allocate one spare slot for this; a registry without endpoints has no array yet. */
        if (!r->endpoints) {
                r->endpoints = spec_calloc(c, 1, sizeof(struct spec_endpoint));
                if (!r->endpoints)
                        return;
        }
        struct spec_endpoint *o = &r->endpoints[r->n_endpoints++];
        spec_endpoint_defaults(o);
        o->is_origin = true;
        o->url = spec_strdup(c, r->origin);
}

void spec_check_duplicate_endpoint(struct spec_ctx *c, const struct spec_registry *r, size_t i,
                                   const yaml_node_t *n, const char *path) {
        const char *url = r->endpoints[i].url;
        for (size_t j = 0; url && j < i; j++)
                if (r->endpoints[j].url && strcmp(r->endpoints[j].url, url) == 0) {
                        spec_error(c, n, path, "duplicate endpoint \"%s\" (first at line %u)", url,
                                   r->endpoints[j].line);
                        return;
                }
}

/* ---- the whole spec --------------------------------------------------------- */

static void finish_default_registry(struct spec_ctx *c, const yaml_node_t *n) {
        struct spec *s = c->spec;
        if (!n) {
                const struct spec_registry *r = spec_find_registry(s, "docker.io");
                if (r && r->mirror)
                        s->agent.default_registry = spec_strdup(c, "docker.io");
                return;
        }
        if (spec_is_null(n))
                return;
        const char *path = "agent.default_registry";
        const char *host = spec_scalar(c, n, path);
        if (!host)
                return;
        const struct spec_registry *r = spec_find_registry(s, host);
        if (!r)
                spec_error(c, n, path, "\"%.128s\" is not in registries", host);
        else if (!r->mirror)
                spec_error(c, n, path, "\"%.128s\" has mirror: false", host);
        else
                s->agent.default_registry = spec_strdup(c, r->host);
}

/* A connect timeout not given is 1s for a mirror and 5s for the origin. A mirror is a cache in the
 * same cluster or data centre, where a connection is made in well under a millisecond, so 1s is
 * ample and bounds what a dead mirror costs each time its circuit breaker lets a probe through (and
 * containerd >= 2.0.7 gets it as dial_timeout). The origin is across the internet. Runs once the
 * origins are marked, in both forms; a given timeout is never 0 (its minimum is 1ms). */
static void finish_connect_timeouts(struct spec *s) {
        for (size_t i = 0; i < s->n_registries; i++)
                for (size_t j = 0; j < s->registries[i].n_endpoints; j++) {
                        struct spec_endpoint *e = &s->registries[i].endpoints[j];
                        if (e->connect_timeout_ms == 0)
                                e->connect_timeout_ms = e->is_origin ? SPEC_DEFAULT_CONNECT_TIMEOUT_MS
                                                                     : SPEC_DEFAULT_MIRROR_CONNECT_TIMEOUT_MS;
                }
}

void spec_finish(struct spec_ctx *c, const yaml_node_t *default_registry) {
        struct spec *s = c->spec;
        if (!s->agent.listen_host)
                s->agent.listen_host = spec_strdup(c, "127.0.0.1");
        if (s->agent.listen_port == 0)
                s->agent.listen_port = SPEC_DEFAULT_PORT;
        if (!s->agent.cache_dir)
                s->agent.cache_dir = spec_strdup(c, c->default_cache_dir);
        if (s->agent.cache_max_bytes == 0 && s->agent.cache_max_percent == 0)
                s->agent.cache_max_bytes = SPEC_DEFAULT_CACHE_MAX_SIZE;
        if (s->agent.max_downloads == 0)
                s->agent.max_downloads = SPEC_DEFAULT_MAX_DOWNLOADS;
        if (s->agent.max_upstream_waits == 0)
                s->agent.max_upstream_waits = SPEC_DEFAULT_MAX_UPSTREAM_WAITS;
        if (s->agent.max_abandoned_downloads == 0)
                s->agent.max_abandoned_downloads = SPEC_DEFAULT_MAX_ABANDONED_DOWNLOADS;
        if (s->agent.abandoned_download_timeout_ms == 0)
                s->agent.abandoned_download_timeout_ms = SPEC_DEFAULT_ABANDONED_DOWNLOAD_TIMEOUT_MS;
        if (s->agent.max_connections == 0)
                s->agent.max_connections = SPEC_DEFAULT_MAX_CONNECTIONS;
        if (s->agent.max_inflight_memory == 0)
                s->agent.max_inflight_memory = SPEC_DEFAULT_MAX_INFLIGHT_MEMORY;
        if (s->prefetch.interval_ms == 0)
                s->prefetch.interval_ms = SPEC_DEFAULT_PREFETCH_INTERVAL_MS;
        if (s->prefetch.concurrency == 0)
                s->prefetch.concurrency = SPEC_DEFAULT_PREFETCH_CONCURRENCY;
        if (s->prefetch.wait_ready_timeout_ms == 0)
                s->prefetch.wait_ready_timeout_ms = SPEC_DEFAULT_PREFETCH_WAIT_READY_TIMEOUT_MS;
        finish_default_registry(c, default_registry);
        finish_connect_timeouts(s);
        if (!s->hosts.containerd_version) {
                /* auto: the agent asks the node's containerd (spec_set_containerd_version()). */
                s->hosts.containerd_version = spec_strdup(c, SPEC_DEFAULT_CONTAINERD_VERSION);
                s->hosts.containerd_version_auto = true;
        }

        /* Prefetch goes through layerd, so only a mirrored registry can be prefetched from. */
        for (size_t i = 0; i < s->prefetch.n_entries; i++) {
                struct spec_prefetch_entry *e = &s->prefetch.entries[i];
                if (!e->registry)
                        continue;
                const struct spec_registry *r = spec_find_registry(s, e->registry);
                if (!r || !r->mirror) {
                        char p[SPEC_PATH_MAX];
                        spec_path_index(p, sizeof(p), "prefetch.images", i);
                        spec_error(c, spec_node(c, c->prefetch_nodes->data.sequence.items.start[i]), p,
                                   "registry \"%s\" is %s", e->registry,
                                   r ? "not mirrored (mirror: false)" : "not in registries");
                }
        }
}

void spec_auth_defaults(struct spec_registry *r) {
        r->auth_passthrough = true;
        r->auth_verdict_ttl_ms = SPEC_DEFAULT_AUTH_VERDICT_TTL_MS;
        r->auth_outage_grace_ms = SPEC_DEFAULT_AUTH_OUTAGE_GRACE_MS;
}
