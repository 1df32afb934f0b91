/* SPDX-License-Identifier: Apache-2.0 */
/* Docker's daemon.json "registry-mirrors": Docker consults mirrors for Docker
 * Hub only, tries them in order and then Hub itself. The daemon sends no
 * ?ns= to a mirror, so layerd is listed only when docker.io is its default
 * registry (otherwise layerd would answer for the wrong registry). */
#include <string.h>

#include "common/json.h"
#include "common/macro.h"
#include "hostsconfig/render-internal.h"

/* Docker treats loopback registries as insecure by default (127.0.0.0/8 and ::1). */
static bool is_loopback(const char *url) {
        const char *h = url_without_scheme(url);
        if (strncmp(h, "[::1]", 5) == 0)
                return true;
        size_t len = strcspn(h, ":/");
        return (len == 9 && strncmp(h, "localhost", 9) == 0) ||
               (strncmp(h, "127.", 4) == 0 && strspn(h, "0123456789.") == len);
}

int render_docker(const struct spec *s, const char *agent_url, struct hosts_output *o, struct error_list *notes) {
        const struct spec_registry *hub = spec_find_registry(s, "docker.io");
        const char *mirrors[RENDER_URLS_MAX], *insecure[RENDER_URLS_MAX];
        size_t n = 0, n_insecure = 0;
        struct render_buf b;

        for (size_t i = 0; i < s->n_registries; i++)
                if (&s->registries[i] != hub)
                        error_list_add(notes, 0, 0, "%s: not rendered: Docker's registry-mirrors apply to docker.io only",
                                       s->registries[i].host);
        int implied = hub ? registry_origin_is_implied(hub) : 1;
        if (implied < 0)
                return implied;
        if (!hub)
                error_list_add(notes, 0, 0, "docker.io is not in the spec: no mirrors to render");
        else {
                if (hub->mirror && s->agent.default_registry && strcmp(s->agent.default_registry, "docker.io") == 0)
                        mirrors[n++] = agent_url;
                else if (hub->mirror)
                        error_list_add(notes, 0, 0,
                                       "docker.io: layerd left out: Docker sends no ns= and layerd's default_registry "
                                       "is not docker.io");
                for (size_t i = 0; i < hub->n_endpoints; i++) {
                        const struct spec_endpoint *e = &hub->endpoints[i];
                        /* Docker falls back to Docker Hub by itself; a custom origin
                         * is an endpoint like any other to it. */
                        if (e->is_origin && implied)
                                continue;
                        /* Docker refuses mirror URLs with a path, and has no per-mirror TLS or headers. */
                        if (url_path(e->url)[0] != '\0') {
                                error_list_add(notes, 0, 0, "docker.io: %s left out: Docker mirrors cannot have a path",
                                               e->url);
                                continue;
                        }
                        if (e->ca_file || e->client_cert || e->n_headers > 0 || e->skip_verify)
                                error_list_add(notes, 0, 0,
                                               "docker.io: %s: TLS settings and headers are not rendered (Docker reads "
                                               "certificates from /etc/docker/certs.d)",
                                               e->url);
                        mirrors[n++] = e->url;
                        if (url_is_http(e->url) && !is_loopback(e->url))
                                insecure[n_insecure++] = url_without_scheme(e->url);
                }
                if (!registry_origin_endpoint(hub))
                        error_list_add(notes, 0, 0,
                                       "docker.io: fallback_to_origin is false, but Docker always falls back to Docker Hub");
                else if (!implied)
                        error_list_add(notes, 0, 0,
                                       "docker.io: the origin %s is listed as a mirror, and Docker falls back to Docker "
                                       "Hub after it",
                                       hub->origin);
        }

        int r = render_buf_open(&b);
        if (r < 0)
                return r;
        /* JSON has no comments and dockerd refuses unknown keys, so this file
         * carries no marker: it is a fragment to merge into daemon.json. */
        fputs("{\n  \"registry-mirrors\": [", b.f);
        for (size_t i = 0; i < n; i++) {
                fputs(i ? ", " : "", b.f);
                json_write_string(b.f, mirrors[i]);
        }
        fputs("]", b.f);
        if (n_insecure > 0) {
                fputs(",\n  \"insecure-registries\": [", b.f);
                for (size_t i = 0; i < n_insecure; i++) {
                        fputs(i ? ", " : "", b.f);
                        json_write_string(b.f, insecure[i]);
                }
                fputs("]", b.f);
        }
        fputs("\n}\n", b.f);
        return render_buf_finish(&b, o, "daemon.json");
}
