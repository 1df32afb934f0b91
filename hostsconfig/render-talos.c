/* SPDX-License-Identifier: Apache-2.0 */
/* A Talos machine-config patch: machine.registries.mirrors.<host>.endpoints.
 * Talos configures containerd's hosts itself, so containerd sends ns= and
 * layerd can serve every mirrored registry. Talos has one overridePath per
 * registry and wants certificate contents rather than paths, so what differs
 * per endpoint is left out with a note. */
#include <errno.h>
#include <string.h>
#include <yaml.h>

#include "common/macro.h"
#include "hostsconfig/render-internal.h"

struct emit {
        yaml_emitter_t e;
        bool ok;
};

static void ev_scalar(struct emit *m, const char *s, bool quoted) {
        yaml_event_t ev;
        if (m->ok)
                m->ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *) s, (int) strlen(s), 1, 1,
                                                     quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE) &&
                        yaml_emitter_emit(&m->e, &ev);
}

static void ev_map(struct emit *m, bool start) {
        yaml_event_t ev;
        if (m->ok)
                m->ok = (start ? yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE)
                               : yaml_mapping_end_event_initialize(&ev)) &&
                        yaml_emitter_emit(&m->e, &ev);
}

static void ev_seq(struct emit *m, bool start) {
        yaml_event_t ev;
        if (m->ok)
                m->ok = (start ? yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE)
                               : yaml_sequence_end_event_initialize(&ev)) &&
                        yaml_emitter_emit(&m->e, &ev);
}

static int emit_registries(struct emit *m, const struct spec *s, const char *agent_url, struct error_list *notes) {
        ev_map(m, true);
        ev_scalar(m, "machine", false);
        ev_map(m, true);
        ev_scalar(m, "registries", false);
        ev_map(m, true);
        ev_scalar(m, "mirrors", false);
        ev_map(m, true);
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
                ev_scalar(m, is_default ? "*" : r->host, true);
                ev_map(m, true);
                ev_scalar(m, "endpoints", false);
                ev_seq(m, true);
                for (size_t j = 0; j < n_urls; j++)
                        ev_scalar(m, urls[j], false);
                ev_seq(m, false);
                if (!is_default && (!registry_origin_endpoint(r) || !implied)) {
                        ev_scalar(m, "skipFallback", false);
                        ev_scalar(m, "true", false);
                }
                ev_map(m, false);
        }
        ev_map(m, false);
        ev_map(m, false);
        ev_map(m, false);
        ev_map(m, false);
        return m->ok ? 0 : -ENOMEM;
}

int render_talos(const struct spec *s, const char *agent_url, struct hosts_output *o, struct error_list *notes) {
        struct render_buf b;
        struct emit m = { .ok = true };
        yaml_event_t ev;
        int r = render_buf_open(&b);
        if (r < 0)
                return r;
        fprintf(b.f, "%s: rendered from the cluster spec by `layerd hosts --format talos`; apply as a machine-config patch.\n",
                HOSTS_MANAGED_MARKER);
        if (!yaml_emitter_initialize(&m.e)) {
                render_buf_discard(&b);
                return -ENOMEM;
        }
        yaml_emitter_set_output_file(&m.e, b.f);
        yaml_emitter_set_unicode(&m.e, 1);
        yaml_emitter_set_width(&m.e, -1);
        m.ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&m.e, &ev) &&
               yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&m.e, &ev);
        r = emit_registries(&m, s, agent_url, notes);
        m.ok = m.ok && r == 0 && yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&m.e, &ev) &&
               yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&m.e, &ev) && yaml_emitter_flush(&m.e);
        yaml_emitter_delete(&m.e);
        if (!m.ok) {
                render_buf_discard(&b);
                return -ENOMEM;
        }
        return render_buf_finish(&b, o, "talos-registries.yaml");
}
