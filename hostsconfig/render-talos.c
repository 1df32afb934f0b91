/* SPDX-License-Identifier: Apache-2.0 */
/* `--format talos`: the registry documents of Talos 1.12+, one YAML stream of
 *   RegistryMirrorConfig  per registry: name, endpoints[].url,
 *                         endpoints[].overridePath, skipFallback;
 *   RegistryTLSConfig     per endpoint host with TLS settings: ca, insecureSkipVerify;
 * each `apiVersion: v1alpha1`, with exactly the fields Talos defines
 * (siderolabs/talos pkg/machinery/config/types/cri/registry_mirror.go and
 * registry_tls.go): Talos decodes its documents strictly, so one unknown key
 * makes it refuse the whole machine config. Talos builds containerd's
 * hosts.toml from them itself, so containerd sends ns= and layerd can serve
 * every mirrored registry.
 *
 * What Talos has no field for (headers, capabilities, timeouts) or what layerd
 * does not copy into a file (a client certificate's private key, which
 * clientIdentity needs; credentials, which RegistryAuthConfig holds in clear)
 * is left out with a note. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/macro.h"
#include "hostsconfig/render-internal.h"
#include "hostsconfig/render-yaml.h"

/* A CA file larger than this is not a registry's CA (a system bundle is ~220 KiB). */
#define TALOS_CA_MAX (512 * 1024)

/* One URL of a RegistryMirrorConfig. */
struct talos_endpoint {
        const struct spec_registry *r;
        const char *url;
        const struct spec_endpoint *e; /* NULL for layerd itself */
};

/* The endpoints of one registry: eps[first..first+n). */
struct talos_mirror {
        const struct spec_registry *r;
        size_t first, n;
        bool skip_fallback;
};

/* A RegistryTLSConfig: Talos matches it by the host[:port] of an endpoint's URL. */
struct talos_tls {
        char *name;
        const struct talos_endpoint *ep; /* the first endpoint of the host with TLS settings: they are rendered */
};

struct talos {
        struct talos_endpoint *eps;
        size_t n_eps, cap_eps;
        struct talos_mirror *mirrors;
        size_t n_mirrors, cap_mirrors;
        struct talos_tls *tls;
        size_t n_tls, cap_tls;
};

static void talos_done(struct talos *t) {
        for (size_t i = 0; i < t->n_tls; i++)
                free(t->tls[i].name);
        free(t->tls);
        free(t->mirrors);
        free(t->eps);
}

static bool has_tls(const struct spec_endpoint *e) {
        return e->ca_file || e->client_cert || e->skip_verify;
}

static bool streq_null(const char *a, const char *b) {
        return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_tls(const struct spec_endpoint *a, const struct spec_endpoint *b) {
        return streq_null(a->ca_file, b->ca_file) && streq_null(a->client_cert, b->client_cert) &&
               streq_null(a->client_key, b->client_key) && a->skip_verify == b->skip_verify;
}

/* "host[:port]" of a canonical URL, as Go's url.URL.Host has it (brackets of an IPv6 literal kept). */
static char *url_host(const char *url) {
        const char *rest = url_without_scheme(url);
        return strndup(rest, strcspn(rest, "/"));
}

static int add_endpoint(struct talos *t, const struct spec_registry *r, const char *url, const struct spec_endpoint *e) {
        int k = ARRAY_RESERVE(t->eps, &t->cap_eps, t->n_eps + 1, 16, SIZE_MAX);
        if (k < 0)
                return k;
        t->eps[t->n_eps++] = (struct talos_endpoint) { .r = r, .url = url, .e = e };
        return 0;
}

/* What of endpoint e Talos cannot take, said once each. */
static void note_endpoint(const struct spec_registry *r, const struct spec_endpoint *e, struct error_list *notes) {
        if (e->n_headers > 0)
                error_list_add(notes, 0, 0, "%s: %s: headers not rendered: Talos has no field for them", r->host,
                               e->url);
        if (e->capabilities != (SPEC_CAP_PULL | SPEC_CAP_RESOLVE))
                error_list_add(notes, 0, 0,
                               "%s: %s: capabilities not rendered: Talos lets every endpoint resolve tags and pull",
                               r->host, e->url);
        if (e->credentials_file || e->credential_helper)
                error_list_add(notes, 0, 0,
                               "%s: credentials of %s are for layerd only: Talos's RegistryAuthConfig would hold the "
                               "secret itself in the machine config",
                               r->host, e->url);
}

/* The endpoints Talos gets for r, in the spec's order, into t. */
static int collect_registry(struct talos *t, const struct spec_registry *r, const char *agent_url,
                            struct error_list *notes) {
        int implied = registry_origin_is_implied(r);
        if (implied < 0)
                return implied;
        size_t first = t->n_eps;
        int k = 0;
        if (r->mirror)
                k = add_endpoint(t, r, agent_url, NULL);
        for (size_t j = 0; k >= 0 && j < r->n_endpoints; j++) {
                const struct spec_endpoint *e = &r->endpoints[j];
                if (r->mirror && strcmp(e->url, agent_url) == 0) {
                        error_list_add(notes, 0, 0, "%s: %s left out: it is layerd itself, already the first endpoint",
                                       r->host, e->url);
                        continue;
                }
                /* Talos falls back to the registry's name by itself after the
                 * last endpoint. The implied origin is listed only where the
                 * spec puts it before other endpoints, or when it has TLS
                 * settings: Talos applies a RegistryTLSConfig to the endpoints
                 * it lists, not to its fallback. A custom origin is always
                 * listed (the fallback would reach the wrong host). */
                if (e->is_origin && implied && j + 1 == r->n_endpoints && !has_tls(e))
                        continue;
                note_endpoint(r, e, notes);
                k = add_endpoint(t, r, e->url, e);
        }
        if (k < 0)
                return k;
        if (t->n_eps == first) {
                error_list_add(notes, 0, 0, "%s: not rendered: no endpoint Talos can use", r->host);
                return 0;
        }
        k = ARRAY_RESERVE(t->mirrors, &t->cap_mirrors, t->n_mirrors + 1, 16, SIZE_MAX);
        if (k < 0)
                return k;
        /* fallback_to_origin: false (no origin), or a custom origin listed
         * above: the fallback to the registry's name must not happen. */
        bool skip = strcmp(r->host, SPEC_DEFAULT_REGISTRY) != 0 && (!registry_origin_endpoint(r) || !implied);
        t->mirrors[t->n_mirrors++] =
                (struct talos_mirror) { .r = r, .first = first, .n = t->n_eps - first, .skip_fallback = skip };
        return 0;
}

static struct talos_tls *find_tls(struct talos *t, const char *name) {
        for (size_t i = 0; i < t->n_tls; i++)
                if (strcmp(t->tls[i].name, name) == 0)
                        return &t->tls[i];
        return NULL;
}

/* One RegistryTLSConfig per host: the first endpoint on it with TLS settings
 * gives them; Talos applies them to every endpoint on that host, so one whose
 * own settings differ is said. */
static int collect_tls(struct talos *t, struct error_list *notes) {
        for (size_t i = 0; i < t->n_eps; i++) {
                const struct talos_endpoint *ep = &t->eps[i];
                /* The spec allows TLS settings on https:// endpoints only. */
                if (!ep->e || !has_tls(ep->e))
                        continue;
                _cleanup_free_ char *name = url_host(ep->url);
                if (!name)
                        return -ENOMEM;
                if (find_tls(t, name))
                        continue;
                int k = ARRAY_RESERVE(t->tls, &t->cap_tls, t->n_tls + 1, 16, SIZE_MAX);
                if (k < 0)
                        return k;
                t->tls[t->n_tls++] = (struct talos_tls) { .name = TAKE_PTR(name), .ep = ep };
        }
        for (size_t i = 0; i < t->n_eps; i++) {
                const struct talos_endpoint *ep = &t->eps[i];
                /* Talos applies a RegistryTLSConfig to https endpoints only. */
                if (!ep->e || url_is_http(ep->url))
                        continue;
                _cleanup_free_ char *name = url_host(ep->url);
                if (!name)
                        return -ENOMEM;
                const struct talos_tls *x = find_tls(t, name);
                if (!x || same_tls(x->ep->e, ep->e))
                        continue;
                if (has_tls(ep->e))
                        error_list_add(notes, 0, 0,
                                       "%s: %s: own TLS settings not rendered: Talos has one RegistryTLSConfig per "
                                       "host, and those of %s apply",
                                       ep->r->host, ep->url, x->ep->url);
                else
                        error_list_add(notes, 0, 0,
                                       "%s: %s gets the TLS settings of %s: Talos has one RegistryTLSConfig per host",
                                       ep->r->host, ep->url, x->ep->url);
        }
        return 0;
}

/* The PEM text of a CA file, when it is one Talos accepts: readable here,
 * ASCII, with a certificate in it. NULL with a note otherwise; -ENOMEM. */
static int read_ca(const struct talos_tls *x, char **ret, struct error_list *notes) {
        const char *path = x->ep->e->ca_file;
        _cleanup_free_ char *pem = NULL;
        size_t size = 0;
        const char *why = NULL;
        int k = read_file_bounded(path, TALOS_CA_MAX, &pem, &size);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                why = strerror(-k);
        for (size_t i = 0; !why && i < size; i++)
                if ((pem[i] < 0x20 && pem[i] != '\n' && pem[i] != '\r' && pem[i] != '\t') || (unsigned char) pem[i] >= 0x7f)
                        why = "not PEM text";
        if (!why && !strstr(pem, "-----BEGIN CERTIFICATE-----"))
                why = "no PEM certificate in it";
        if (why) {
                error_list_add(notes, 0, 0,
                               "%s: ca_file %s not rendered: %s (Talos takes the certificate itself: render where the "
                               "file is, or add ca to the RegistryTLSConfig for %s)",
                               x->ep->r->host, path, why, x->name);
                *ret = NULL;
                return 0;
        }
        *ret = TAKE_PTR(pem);
        return 0;
}

static void emit_header(struct render_yaml *m, const char *kind, const char *name) {
        render_yaml_document(m, true);
        render_yaml_map(m, true);
        render_yaml_pair(m, "apiVersion", "v1alpha1");
        render_yaml_pair(m, "kind", kind);
        /* Always quoted: a host such as null, true or 1e5 would read as a null, a boolean or a number. */
        render_yaml_scalar(m, "name", YAML_ANY_SCALAR_STYLE);
        render_yaml_scalar(m, name, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
}

static void emit_footer(struct render_yaml *m) {
        render_yaml_map(m, false);
        render_yaml_document(m, false);
}

static void emit_mirror(struct render_yaml *m, const struct talos *t, const struct talos_mirror *x) {
        const struct spec_registry *r = x->r;
        bool is_default = strcmp(r->host, SPEC_DEFAULT_REGISTRY) == 0;
        /* Talos names the catch-all "*". */
        emit_header(m, "RegistryMirrorConfig", is_default ? "*" : r->host);
        render_yaml_scalar(m, "endpoints", YAML_ANY_SCALAR_STYLE);
        render_yaml_seq(m, true);
        for (size_t i = x->first; i < x->first + x->n; i++) {
                const struct talos_endpoint *ep = &t->eps[i];
                render_yaml_map(m, true);
                render_yaml_pair(m, "url", ep->url);
                /* Per endpoint since the documents: a Harbor proxy project keeps its path. */
                if (ep->e && ep->e->override_path)
                        render_yaml_pair(m, "overridePath", "true");
                render_yaml_map(m, false);
        }
        render_yaml_seq(m, false);
        if (x->skip_fallback)
                render_yaml_pair(m, "skipFallback", "true");
        emit_footer(m);
}

static int emit_tls(struct render_yaml *m, const struct talos_tls *x, struct error_list *notes) {
        const struct spec_endpoint *e = x->ep->e;
        _cleanup_free_ char *ca = NULL;
        if (e->ca_file) {
                int k = read_ca(x, &ca, notes);
                if (k < 0)
                        return k;
        }
        if (e->client_cert)
                error_list_add(notes, 0, 0,
                               "%s: client certificate of %s not rendered: Talos's clientIdentity takes the private "
                               "key itself, and layerd does not copy private keys into rendered files",
                               x->ep->r->host, x->ep->url);
        if (!ca && !e->skip_verify)
                return 0;
        emit_header(m, "RegistryTLSConfig", x->name);
        if (ca) {
                render_yaml_scalar(m, "ca", YAML_ANY_SCALAR_STYLE);
                render_yaml_scalar(m, ca, YAML_LITERAL_SCALAR_STYLE);
        }
        if (e->skip_verify)
                render_yaml_pair(m, "insecureSkipVerify", "true");
        emit_footer(m);
        return 0;
}

struct talos_emit {
        const struct talos *t;
        struct error_list *notes;
};

static int emit_documents(struct render_yaml *m, void *userdata) {
        const struct talos_emit *x = userdata;
        int r = 0;
        for (size_t i = 0; i < x->t->n_mirrors; i++)
                emit_mirror(m, x->t, &x->t->mirrors[i]);
        for (size_t i = 0; r >= 0 && i < x->t->n_tls; i++)
                r = emit_tls(m, &x->t->tls[i], x->notes);
        return r;
}

int render_talos(const struct spec *s, const char *agent_url, struct hosts_output *o, struct error_list *notes) {
        _cleanup_(talos_done) struct talos t = {};
        int r = 0;
        for (size_t i = 0; r >= 0 && i < s->n_registries; i++)
                r = collect_registry(&t, &s->registries[i], agent_url, notes);
        if (r >= 0)
                r = collect_tls(&t, notes);
        if (r < 0)
                return r;
        struct talos_emit x = { .t = &t, .notes = notes };
        return render_yaml_file(o, "talos-registries.yaml",
                                "rendered from the cluster spec by `layerd hosts --format talos`: Talos 1.12+ "
                                "documents, apply as a machine-config patch.",
                                emit_documents, &x);
}
