/* SPDX-License-Identifier: Apache-2.0 */
/* containerd's registry host config: DIR/<host[:port]>/hosts.toml, one per
 * registry, as containerd's docs/hosts.md and remotes/docker/config/hosts.go
 * define it. containerd tries the [host] tables in file order and the root
 * `server` last, so the order we write is the failover order: layerd first (so
 * containerd still reaches the other endpoints on its own when layerd is
 * down), then the spec's endpoints, then the origin. */
#include <errno.h>
#include <string.h>

#include "common/macro.h"
#include "common/parse.h"
#include "hostsconfig/render-internal.h"

/* dial_timeout exists from containerd 2.0.7 and 2.1 on; the spec says which
 * containerd it targets, and we write only what that containerd reads. */
#define VERSION_DIAL_TIMEOUT 20007
/* Before 1.7.32 (and in all of 1.6) a file with `server` but no [host] table
 * is dropped as an "invalid host tree", silently turning the config off. */
#define VERSION_SERVER_ONLY_OK 10732
#define AGENT_DIAL_TIMEOUT "1s"

static void capabilities(FILE *f, const char *indent, unsigned caps) {
        fprintf(f, "%scapabilities = [", indent);
        if (caps & SPEC_CAP_PULL)
                fputs("\"pull\"", f);
        if (caps & SPEC_CAP_RESOLVE)
                fputs((caps & SPEC_CAP_PULL) ? ", \"resolve\"" : "\"resolve\"", f);
        fputs("]\n", f);
}

/* The keys of a host (or of the root, for the server), without its header table. */
static void host_keys(FILE *f, const char *indent, const struct spec_endpoint *e, bool with_caps, unsigned version) {
        if (with_caps)
                capabilities(f, indent, e->capabilities);
        if (e->ca_file) {
                fprintf(f, "%sca = ", indent);
                toml_string(f, e->ca_file);
                fputc('\n', f);
        }
        if (e->client_cert) {
                /* A pair when the key is separate; a single file holds both otherwise. */
                fprintf(f, "%sclient = ", indent);
                if (e->client_key) {
                        fputs("[[", f);
                        toml_string(f, e->client_cert);
                        fputs(", ", f);
                        toml_string(f, e->client_key);
                        fputs("]]", f);
                } else {
                        toml_string(f, e->client_cert);
                }
                fputc('\n', f);
        }
        if (e->skip_verify)
                fprintf(f, "%sskip_verify = true\n", indent);
        if (e->override_path)
                fprintf(f, "%soverride_path = true\n", indent);
        if (version >= VERSION_DIAL_TIMEOUT) {
                char d[32];
                format_duration_ms(e->connect_timeout_ms, d, sizeof(d));
                fprintf(f, "%sdial_timeout = \"%s\"\n", indent, d);
        }
}

/* [host."URL".header] for a host, [header] for the server (url NULL). */
static void header_table(FILE *f, const char *url, const struct spec_endpoint *e) {
        const char *indent = url ? "  " : "";
        if (e->n_headers == 0)
                return;
        if (url) {
                fputs("  [host.", f);
                toml_string(f, url);
                fputs(".header]\n", f);
        } else {
                fputs("\n[header]\n", f);
        }
        for (size_t i = 0; i < e->n_headers; i++) {
                const struct spec_header *h = &e->headers[i];
                fprintf(f, "%s  ", indent);
                toml_key(f, h->name);
                fputs(" = ", f);
                if (h->n_values == 1) {
                        toml_string(f, h->values[0]);
                } else {
                        fputc('[', f);
                        for (size_t j = 0; j < h->n_values; j++) {
                                if (j > 0)
                                        fputs(", ", f);
                                toml_string(f, h->values[j]);
                        }
                        fputc(']', f);
                }
                fputc('\n', f);
        }
}

static void host_table(FILE *f, const char *url, const struct spec_endpoint *e, unsigned version) {
        fputs("\n[host.", f);
        toml_string(f, url);
        fputs("]\n", f);
        host_keys(f, "  ", e, true, version);
        header_table(f, url, e);
}

static int render_registry(const struct spec *s, const struct spec_registry *r, const char *agent_url,
                           struct hosts_output *o, struct error_list *notes) {
        struct render_buf b;
        unsigned version = spec_containerd_version_code(s);
        int rc = render_buf_open(&b);
        if (rc < 0)
                return rc;
        FILE *f = b.f;
        bool is_default = strcmp(r->host, SPEC_DEFAULT_REGISTRY) == 0;
        const struct spec_endpoint *origin = registry_origin_endpoint(r);
        /* The server is the origin; an air-gapped registry (no origin in its
         * chain) makes its last endpoint the server, so that containerd never
         * goes to the origin by itself. _default has no server at all. */
        const struct spec_endpoint *server = is_default || r->n_endpoints == 0 ? NULL
                                             : origin                           ? origin
                                                                                : &r->endpoints[r->n_endpoints - 1];
        size_t n_hosts = 0;

        fprintf(f, "%s: rendered from the cluster spec by `layerd hosts`; do not edit, changes are overwritten.\n",
                HOSTS_MANAGED_MARKER);
        /* An unresolved "auto" is said as such: the file is then right for
         * any containerd, but may lack what a newer one could read. */
        if (s->hosts.containerd_version_code == 0)
                fprintf(f, "# Registry %s, for containerd %s (auto: not detected). Tried in order: ", r->host,
                        SPEC_CONTAINERD_VERSION_FALLBACK);
        else
                fprintf(f, "# Registry %s, for containerd %s. Tried in order: ", r->host, s->hosts.containerd_version);
        if (r->mirror)
                fputs("layerd, ", f);
        fputs(is_default ? "the hosts below, then the registry a pull names.\n" : "the hosts below, then the server.\n",
              f);
        if (server) {
                fputs("server = ", f);
                toml_string(f, server->url);
                fputc('\n', f);
                /* The origin keeps containerd's default capabilities (pull,
                 * resolve and push) when the spec gives it the default pull and
                 * resolve; anything narrower, or a mirror standing in as server,
                 * gets exactly what the spec says. */
                bool caps = server != origin || server->capabilities != (SPEC_CAP_PULL | SPEC_CAP_RESOLVE);
                host_keys(f, "", server, caps, version);
                header_table(f, NULL, server);
        }
        if (r->mirror) {
                fputs("\n[host.", f);
                toml_string(f, agent_url);
                fputs("]\n", f);
                capabilities(f, "  ", SPEC_CAP_PULL | SPEC_CAP_RESOLVE);
                if (version >= VERSION_DIAL_TIMEOUT)
                        fprintf(f, "  dial_timeout = \"%s\"\n", AGENT_DIAL_TIMEOUT);
                n_hosts++;
        }
        for (size_t i = 0; i < r->n_endpoints; i++) {
                const struct spec_endpoint *e = &r->endpoints[i];
                /* The server is tried last by containerd anyway; an origin listed
                 * before other endpoints keeps its place as a host as well. */
                if (e == server && i == r->n_endpoints - 1)
                        continue;
                /* layerd listed among its own endpoints is already the first
                 * host; a second [host] table of the same URL is invalid TOML,
                 * and containerd ignores an invalid file whole. */
                if (r->mirror && strcmp(e->url, agent_url) == 0) {
                        error_list_add(notes, 0, 0, "%s: %s left out: it is layerd itself, already the first host",
                                       r->host, e->url);
                        continue;
                }
                host_table(f, e->url, e, version);
                n_hosts++;
        }
        if (n_hosts == 0 && server && version < VERSION_SERVER_ONLY_OK) {
                host_table(f, server->url, server, version);
                n_hosts++;
        }
        _cleanup_free_ char *name = NULL;
        if (asprintf(&name, "%s/hosts.toml", r->host) < 0) {
                render_buf_discard(&b);
                return -ENOMEM;
        }
        return render_buf_finish(&b, o, name);
}

int render_containerd(const struct spec *s, const char *agent_url, struct hosts_output *o, struct error_list *notes) {
        for (size_t i = 0; i < s->n_registries; i++) {
                const struct spec_registry *r = &s->registries[i];
                int rc = render_registry(s, r, agent_url, o, notes);
                if (rc < 0)
                        return rc;
                for (size_t j = 0; j < r->n_endpoints; j++)
                        if (r->endpoints[j].credentials_file || r->endpoints[j].credential_helper)
                                error_list_add(notes, 0, 0,
                                               "%s: %s of %s is for layerd only: containerd's hosts.toml "
                                               "has no place for credentials",
                                               r->host,
                                               r->endpoints[j].credentials_file ? "credentials_file" : "credential_helper",
                                               r->endpoints[j].url);
        }
        return 0;
}
