/* SPDX-License-Identifier: Apache-2.0 */
/* `--format talos-legacy`: the machine-config patch of Talos before 1.12,
 * machine.registries.mirrors.<host>.endpoints (render-talos.c writes the
 * documents that replaced it). Talos configures containerd's hosts itself, so containerd sends ns= and
 * layerd can serve every mirrored registry. Talos has one overridePath per
 * registry and wants certificate contents rather than paths, so what differs
 * per endpoint is left out with a note. */
#include <errno.h>
#include <string.h>

#include "common/macro.h"
#include "hostsconfig/render-internal.h"
#include "hostsconfig/render-yaml.h"

static int emit_registries(struct render_yaml *m, const struct spec *s, const char *agent_url, struct error_list *notes) {
        render_yaml_map(m, true);
        render_yaml_scalar(m, "machine", YAML_ANY_SCALAR_STYLE);
        render_yaml_map(m, true);
        render_yaml_scalar(m, "registries", YAML_ANY_SCALAR_STYLE);
        render_yaml_map(m, true);
        render_yaml_scalar(m, "mirrors", YAML_ANY_SCALAR_STYLE);
        render_yaml_map(m, true);
        for (size_t i = 0; i < s->n_registries; i++) {
                const struct spec_registry *r = &s->registries[i];
                bool is_default = strcmp(r->host, SPEC_DEFAULT_REGISTRY) == 0;
                int implied = registry_origin_is_implied(r);
                if (implied < 0)
                        return implied;
                /* What Talos can take, collected first: a registry with none is
                 * left out rather than written with an empty list. */
                const char *urls[RENDER_URLS_MAX];
                size_t n_urls = 0;
                if (r->mirror)
                        urls[n_urls++] = agent_url;
                for (size_t j = 0; j < r->n_endpoints; j++) {
                        const struct spec_endpoint *e = &r->endpoints[j];
                        /* Talos falls back to the registry's name by itself; a custom
                         * origin lives elsewhere, so it is listed, and the fallback (to
                         * the wrong host) turned off below. */
                        if (e->is_origin && implied)
                                continue;
                        if (e->override_path) {
                                error_list_add(notes, 0, 0,
                                               "%s: %s left out: Talos has one overridePath per registry, and layerd "
                                               "needs it off",
                                               r->host, e->url);
                                continue;
                        }
                        if (e->ca_file || e->client_cert || e->n_headers > 0 || e->skip_verify)
                                error_list_add(notes, 0, 0,
                                               "%s: %s: TLS settings and headers are not rendered (Talos takes "
                                               "certificate contents in machine.registries.config)",
                                               r->host, e->url);
                        urls[n_urls++] = e->url;
                }
                if (n_urls == 0) {
                        error_list_add(notes, 0, 0, "%s: not rendered: no endpoint Talos can use", r->host);
                        continue;
                }
                /* Talos names the catch-all "*". Keys are always quoted: written
                 * plain, hosts such as null, true, yes or 1e5 would read as a null,
                 * a boolean or a number rather than the registry's name. */
                render_yaml_scalar(m, is_default ? "*" : r->host, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
                render_yaml_map(m, true);
                render_yaml_scalar(m, "endpoints", YAML_ANY_SCALAR_STYLE);
                render_yaml_seq(m, true);
                for (size_t j = 0; j < n_urls; j++)
                        render_yaml_scalar(m, urls[j], YAML_ANY_SCALAR_STYLE);
                render_yaml_seq(m, false);
                if (!is_default && (!registry_origin_endpoint(r) || !implied)) {
                        render_yaml_pair(m, "skipFallback", "true");
                }
                render_yaml_map(m, false);
        }
        render_yaml_map(m, false);
        render_yaml_map(m, false);
        render_yaml_map(m, false);
        render_yaml_map(m, false);
        return m->ok ? 0 : -ENOMEM;
}

struct legacy {
        const struct spec *s;
        const char *agent_url;
        struct error_list *notes;
};

static int emit_patch(struct render_yaml *m, void *userdata) {
        const struct legacy *x = userdata;
        render_yaml_document(m, true);
        int r = emit_registries(m, x->s, x->agent_url, x->notes);
        render_yaml_document(m, false);
        return r;
}

int render_talos_legacy(const struct spec *s, const char *agent_url, struct hosts_output *o,
                        struct error_list *notes) {
        struct legacy x = { .s = s, .agent_url = agent_url, .notes = notes };
        return render_yaml_file(o, "talos-registries.yaml",
                                "rendered from the cluster spec by `layerd hosts --format talos-legacy`; apply as a "
                                "machine-config patch.",
                                emit_patch, &x);
}
