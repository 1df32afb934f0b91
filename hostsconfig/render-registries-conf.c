/* SPDX-License-Identifier: Apache-2.0 */
/* containers-registries.conf(5), version 2, for CRI-O and podman:
 * [[registry]] with prefix and location, and [[registry.mirror]] entries
 * tried in order before the location (the registry itself, last). A mirror
 * location is host[:port][/namespace], the namespace going after /v2/, which
 * expresses override_path endpoints (Harbor's /v2/proxy-x) but not a prefix
 * before /v2. These clients send no ns= to a mirror, so layerd is listed for
 * every registry it mirrors with the registry's namespace
 * ("127.0.0.1:5080/ghcr.io", reference_registry_namespace()), which tells it
 * the registry (docs/agent.md, "Namespaced paths"). */
#include <string.h>

#include "common/macro.h"
#include "common/reference.h"
#include "hostsconfig/render-internal.h"

static void mirror(FILE *f, const char *location, bool insecure) {
        fputs("\n[[registry.mirror]]\nlocation = ", f);
        toml_string(f, location);
        fputc('\n', f);
        if (insecure)
                fputs("insecure = true\n", f);
}

int render_registries_conf(const struct spec *s, const char *agent_url, struct hosts_output *o,
                           struct error_list *notes) {
        struct render_buf b;
        int r = render_buf_open(&b);
        if (r < 0)
                return r;
        FILE *f = b.f;
        fprintf(f, "%s: rendered from the cluster spec by `layerd hosts --format registries-conf`; do not edit.\n",
                HOSTS_MANAGED_MARKER);
        fputs("unqualified-search-registries = []\n", f);
        for (size_t i = 0; i < s->n_registries; i++) {
                const struct spec_registry *reg = &s->registries[i];
                if (strcmp(reg->host, SPEC_DEFAULT_REGISTRY) == 0) {
                        error_list_add(notes, 0, 0, "_default: not rendered: registries.conf has no catch-all mirror");
                        continue;
                }
                int implied = registry_origin_is_implied(reg);
                if (implied < 0) {
                        render_buf_discard(&b);
                        return implied;
                }
                /* The location is where the registry is: its name, when that
                 * implies the origin (containers/image resolves docker.io to
                 * Docker Hub's API host itself); else a custom origin's host. */
                const char *reg_location = reg->host;
                if (!implied && url_path(reg->origin)[0] == '\0')
                        reg_location = url_without_scheme(reg->origin);
                else if (!implied)
                        error_list_add(notes, 0, 0,
                                       "%s: origin %s left out: registries.conf cannot put a path before /v2",
                                       reg->host, reg->origin);
                fputs("\n[[registry]]\nprefix = ", f);
                toml_string(f, reg->host);
                fputs("\nlocation = ", f);
                toml_string(f, reg_location);
                fputc('\n', f);
                /* An implied origin is https; only a custom one can be plain http. */
                if (reg_location != reg->host && url_is_http(reg->origin))
                        fputs("insecure = true\n", f);
                char ns[REFERENCE_NAME_MAX + 1];
                r = reg->mirror ? reference_registry_namespace(reg->host, ns, sizeof(ns)) : 0;
                if (r == -ENOMEM) {
                        render_buf_discard(&b);
                        return r;
                }
                if (reg->mirror && r == 0) {
                        _cleanup_free_ char *location = NULL;
                        if (asprintf(&location, "%s/%s", url_without_scheme(agent_url), ns) < 0) {
                                render_buf_discard(&b);
                                return -ENOMEM;
                        }
                        mirror(f, location, true);
                } else if (reg->mirror && r == -EINVAL)
                        error_list_add(notes, 0, 0,
                                       "%s: layerd left out: no namespaced path for a name without a dot or port "
                                       "(clients read \"%s/...\" as Docker Hub's)",
                                       reg->host, reg->host);
                else if (reg->mirror)
                        error_list_add(notes, 0, 0, "%s: layerd left out: the name is too long for a namespaced path",
                                       reg->host);
                for (size_t j = 0; j < reg->n_endpoints; j++) {
                        const struct spec_endpoint *e = &reg->endpoints[j];
                        if (e->is_origin)
                                continue;
                        const char *path = url_path(e->url);
                        _cleanup_free_ char *location = NULL;
                        if (e->override_path && strncmp(path, "/v2", 3) == 0 && (path[3] == '\0' || path[3] == '/')) {
                                /* https://harbor/v2/proxy-x: the namespace after /v2 (but
                                 * /v2x is no /v2 root: "harborx" would be another host) */
                                size_t host_len = (size_t) (path - url_without_scheme(e->url));
                                if (asprintf(&location, "%.*s%s", (int) host_len, url_without_scheme(e->url),
                                             path + 3) < 0) {
                                        render_buf_discard(&b);
                                        return -ENOMEM;
                                }
                        } else if (path[0] != '\0') {
                                error_list_add(notes, 0, 0,
                                               "%s: %s left out: registries.conf cannot put a path before /v2",
                                               reg->host, e->url);
                                continue;
                        }
                        if (e->ca_file || e->client_cert || e->n_headers > 0)
                                error_list_add(notes, 0, 0,
                                               "%s: %s: certificates and headers are not rendered (containers-certs.d(5) "
                                               "holds certificates)",
                                               reg->host, e->url);
                        mirror(f, location ? location : url_without_scheme(e->url), url_is_http(e->url) || e->skip_verify);
                }
                if (!registry_origin_endpoint(reg))
                        error_list_add(notes, 0, 0,
                                       "%s: fallback_to_origin is false, but CRI-O and podman always try the location "
                                       "last",
                                       reg->host);
        }
        return render_buf_finish(&b, o, "registries.conf");
}
