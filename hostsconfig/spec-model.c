/* SPDX-License-Identifier: Apache-2.0 */
/* The model's own operations, which need no YAML: freeing it, looking a
 * registry up, and the origin a registry host implies. Both form parsers and
 * the renderers use them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/parse.h"
#include "common/reference.h"
#include "hostsconfig/spec-internal.h"

/* ---- freeing ---------------------------------------------------------------- */

static void strv_free(char **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

void spec_endpoint_done(struct spec_endpoint *e) {
        free(e->url);
        free(e->ca_file);
        free(e->client_cert);
        free(e->client_key);
        free(e->credentials_file);
        free(e->credential_helper);
        for (size_t i = 0; e->headers && i < e->n_headers; i++) {
                free(e->headers[i].name);
                strv_free(e->headers[i].values, e->headers[i].n_values);
        }
        free(e->headers);
        *e = (struct spec_endpoint) {};
}

void spec_registry_done(struct spec_registry *r) {
        free(r->host);
        free(r->origin);
        for (size_t i = 0; r->endpoints && i < r->n_endpoints; i++)
                spec_endpoint_done(&r->endpoints[i]);
        free(r->endpoints);
        *r = (struct spec_registry) {};
}

struct spec *spec_free(struct spec *s) {
        if (!s)
                return NULL;
        free(s->source);
        free(s->agent.listen_host);
        free(s->agent.metrics_host);
        free(s->agent.cache_dir);
        free(s->agent.default_registry);
        free(s->agent.admin_socket);
        for (size_t i = 0; s->registries && i < s->n_registries; i++)
                spec_registry_done(&s->registries[i]);
        free(s->registries);
        for (size_t i = 0; s->prefetch.entries && i < s->prefetch.n_entries; i++) {
                struct spec_prefetch_entry *p = &s->prefetch.entries[i];
                free(p->image);
                free(p->repository);
                free(p->tag_regex);
                free(p->tag_semver);
                free(p->registry);
                strv_free(p->platforms, p->n_platforms);
        }
        free(s->prefetch.entries);
        strv_free(s->prefetch.platforms, s->prefetch.n_platforms);
        free(s->hosts.containerd_version);
        free(s);
        return NULL;
}

/* ---- lookups ---------------------------------------------------------------- */

char *spec_default_origin(const char *host) {
        /* Docker Hub's API is not served at docker.io itself; containerd and
         * docker both special-case the name the same way. */
        if (strcmp(host, "docker.io") == 0)
                return strdup("https://registry-1.docker.io");
        _cleanup_free_ char *s = NULL;
        if (asprintf(&s, "https://%s", host) < 0)
                return NULL;
        /* Canonical form, as every other URL of the model ("host:443" has no port). */
        struct url u;
        if (url_parse(s, &u, NULL) < 0)
                return NULL;
        char *canonical = url_to_string(&u);
        url_done(&u);
        return canonical;
}

const struct spec_registry *spec_find_registry(const struct spec *s, const char *host) {
        for (size_t i = 0; i < s->n_registries; i++)
                if (s->registries[i].host && strcasecmp(s->registries[i].host, host) == 0)
                        return &s->registries[i];
        return NULL;
}

const struct spec_registry *spec_find_registry_namespace(const struct spec *s, const char *component) {
        for (size_t i = 0; i < s->n_registries; i++) {
                const struct spec_registry *r = &s->registries[i];
                char ns[REFERENCE_NAME_MAX + 1];
                if (r->host && r->mirror && strcmp(r->host, SPEC_DEFAULT_REGISTRY) != 0 &&
                    reference_registry_namespace(r->host, ns, sizeof(ns)) == 0 && strcmp(ns, component) == 0)
                        return r;
        }
        return NULL;
}
