/* SPDX-License-Identifier: Apache-2.0 */
/* The layerd form of the cluster spec (docs/spec.md): version, agent,
 * registries, prefetch and hosts into the model. The checks it shares with
 * the Helm-values form are in spec-common.c. */
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/parse.h"
#include "common/reference.h"
#include "common/semver.h"
#include "hostsconfig/spec-internal.h"

#define DURATION_MAX_MS (3600ULL * 1000)
#define TAG_TTL_MAX_MS (30ULL * 86400 * 1000)
#define AUTH_VERDICT_TTL_MAX_MS (3600ULL * 1000)
#define AUTH_OUTAGE_GRACE_MAX_MS (7ULL * 86400 * 1000)
#define REGEX_ERROR_MAX 128 /* regerror()'s text, NUL included */

const char *const spec_layerd_top_keys[SPEC_LAYERD_TOP_KEYS] = { "version", "agent", "registries", "prefetch",
                                                                 "hosts" };

/* ---- small value types ------------------------------------------------------- */

static size_t seq_len(const yaml_node_t *n) {
        return (size_t) (n->data.sequence.items.top - n->data.sequence.items.start);
}

static size_t map_len(const yaml_node_t *n) {
        return (size_t) (n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* A list of at most max items, non-empty; NULL with an error otherwise. */
static bool want_list(struct spec_ctx *c, const yaml_node_t *n, const char *path, size_t max) {
        if (n->type != YAML_SEQUENCE_NODE) {
                spec_error(c, n, path, "expected a list, got %s", spec_node_kind(n));
                return false;
        }
        if (seq_len(n) == 0) {
                spec_error(c, n, path, "empty list");
                return false;
        }
        if (seq_len(n) > max) {
                spec_error(c, n, path, "too many items (at most %zu)", max);
                return false;
        }
        return true;
}

static int get_duration(struct spec_ctx *c, const yaml_node_t *n, const char *path, uint64_t min_ms,
                        uint64_t max_ms, uint64_t *ret) {
        const char *s = spec_scalar(c, n, path);
        if (!s)
                return -EINVAL;
        uint64_t v;
        if (parse_duration_ms(s, &v) < 0) {
                spec_error(c, n, path, "not a duration (like 500ms, 5s, 1h30m): \"%.64s\"", s);
                return -EINVAL;
        }
        if (v < min_ms || v > max_ms) {
                char lo[32], hi[32];
                format_duration_ms(min_ms, lo, sizeof(lo));
                format_duration_ms(max_ms, hi, sizeof(hi));
                spec_error(c, n, path, "must be between %s and %s", lo, hi);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int get_size(struct spec_ctx *c, const yaml_node_t *n, const char *path, uint64_t min, uint64_t *ret) {
        const char *s = spec_scalar(c, n, path);
        if (!s)
                return -EINVAL;
        uint64_t v;
        if (parse_size(s, &v) < 0) {
                spec_error(c, n, path, "not a size (like 512MiB, 20GiB, 10GB): \"%.64s\"", s);
                return -EINVAL;
        }
        if (v < min) {
                char lo[32];
                format_size(min, lo, sizeof(lo));
                spec_error(c, n, path, "must be at least %s", lo);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static char *get_abs_path(struct spec_ctx *c, const yaml_node_t *n, const char *path) {
        const char *s = spec_scalar(c, n, path);
        if (!s)
                return NULL;
        if (s[0] != '/') {
                spec_error(c, n, path, "not an absolute path: \"%.128s\"", s);
                return NULL;
        }
        return spec_strdup(c, s);
}

/* A URL in canonical form, or NULL with an error recorded. */
static char *get_url(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct url *ret_url) {
        const char *s = spec_scalar(c, n, path);
        if (!s)
                return NULL;
        struct url u;
        const char *reason = NULL;
        int r = url_parse(s, &u, &reason);
        if (r == -ENOMEM) {
                c->oom = true;
                return NULL;
        }
        if (r < 0) {
                char shown[SPEC_URL_SHOWN_MAX];
                url_redact(s, shown, sizeof(shown));
                spec_error(c, n, path, "%s: \"%s\"", reason, shown);
                return NULL;
        }
        char *text = url_to_string(&u);
        if (!text)
                c->oom = true;
        if (ret_url)
                *ret_url = u;
        else
                url_done(&u);
        return text;
}

static bool platform_is_valid(const char *s) {
        /* os/arch[/variant], each [a-z0-9_]+ ("linux/arm64/v8", "windows/amd64"). */
        size_t parts = 0, len = 0;
        for (const char *p = s;; p++) {
                if (*p == '/' || *p == '\0') {
                        if (len == 0)
                                return false;
                        parts++;
                        len = 0;
                        if (*p == '\0')
                                break;
                } else if (islower((unsigned char) *p) || isdigit((unsigned char) *p) || *p == '_') {
                        len++;
                } else {
                        return false;
                }
        }
        return parts == 2 || parts == 3;
}

static void get_platforms(struct spec_ctx *c, const yaml_node_t *n, const char *path, char ***ret, size_t *ret_n) {
        if (!want_list(c, n, path, SPEC_PLATFORMS_MAX))
                return;
        size_t len = seq_len(n);
        char **v = spec_calloc(c, len, sizeof(char *));
        if (!v)
                return;
        *ret = v;
        *ret_n = len;
        for (size_t i = 0; i < len; i++) {
                char p[SPEC_PATH_MAX];
                spec_path_index(p, sizeof(p), path, i);
                yaml_node_t *item = spec_node(c, n->data.sequence.items.start[i]);
                const char *s = spec_scalar(c, item, p);
                if (!s)
                        continue;
                if (!platform_is_valid(s)) {
                        spec_error(c, item, p, "not a platform (os/arch[/variant], like linux/arm64): \"%.64s\"", s);
                        continue;
                }
                v[i] = spec_strdup(c, s);
        }
}

/* ---- agent ------------------------------------------------------------------ */

static void parse_listen(struct spec_ctx *c, const yaml_node_t *n, const char *path, char **ret_host,
                         uint16_t *ret_port) {
        const char *s = spec_scalar(c, n, path);
        if (!s)
                return;
        char *host = NULL;
        uint16_t port;
        int r = parse_host_port(s, true, &host, &port);
        if (r == -ENOMEM) {
                c->oom = true;
                return;
        }
        if (r < 0) {
                spec_error(c, n, path, "not a HOST:PORT address (like 127.0.0.1:5080 or [::1]:5080): \"%.128s\"", s);
                return;
        }
        free(*ret_host);
        *ret_host = host;
        *ret_port = port;
}

/* A size, or a share of the cache's file system ("80%"). */
static void parse_cache_max(struct spec_ctx *c, const yaml_node_t *n) {
        const char *path = "agent.cache_max_size";
        const char *s = spec_scalar(c, n, path);
        size_t len = s ? strlen(s) : 0;
        if (len > 1 && s[len - 1] == '%') {
                _cleanup_free_ char *digits = strndup(s, len - 1);
                uint64_t pct;
                if (!digits) {
                        c->oom = true;
                        return;
                }
                if (parse_uint(digits, 100, &pct) < 0 || pct == 0) {
                        spec_error(c, n, path, "a percentage must be 1%% to 100%%: \"%.32s\"", s);
                        return;
                }
                c->spec->agent.cache_max_percent = (unsigned) pct;
                return;
        }
        if (s)
                (void) get_size(c, n, path, 1ULL << 20, &c->spec->agent.cache_max_bytes);
}

/* agent.admin_socket: an absolute path short enough for a unix socket's
 * address, or "" for no admin API. */
static void parse_admin_socket(struct spec_ctx *c, const yaml_node_t *n) {
        const char *s = spec_scalar(c, n, "agent.admin_socket");
        if (!s)
                return;
        if (s[0] != '\0' && s[0] != '/') {
                spec_error(c, n, "agent.admin_socket", "not an absolute path: \"%.128s\"", s);
                return;
        }
        if (strlen(s) > SPEC_ADMIN_SOCKET_PATH_MAX) {
                spec_error(c, n, "agent.admin_socket", "longer than %d bytes (a unix socket's limit)",
                           SPEC_ADMIN_SOCKET_PATH_MAX);
                return;
        }
        free(c->spec->agent.admin_socket);
        c->spec->agent.admin_socket = spec_strdup(c, s);
}

static void parse_agent(struct spec_ctx *c, const yaml_node_t *n, const yaml_node_t **ret_default_registry) {
        static const char *const keys[] = { "listen", "cache_dir", "cache_max_size", "default_registry",
                                            "cache_min_free", "finish_abandoned_downloads", "max_downloads",
                                            "max_upstream_waits", "max_abandoned_downloads",
                                            "abandoned_download_timeout", "max_inflight_memory", "max_connections",
                                            "cache_max_age", "metrics_listen", "admin_socket" };
        yaml_node_t *v[ELEMENTSOF(keys)];
        if (spec_mapping(c, n, "agent", keys, ELEMENTSOF(keys), v, false) < 0)
                return;
        if (v[0])
                parse_listen(c, v[0], "agent.listen", &c->spec->agent.listen_host, &c->spec->agent.listen_port);
        if (v[1]) {
                char *dir = get_abs_path(c, v[1], "agent.cache_dir");
                if (dir) {
                        free(c->spec->agent.cache_dir);
                        c->spec->agent.cache_dir = dir;
                }
        }
        if (v[2])
                parse_cache_max(c, v[2]);
        if (v[4])
                (void) get_size(c, v[4], "agent.cache_min_free", 0, &c->spec->agent.cache_min_free_bytes);
        if (v[5])
                (void) spec_get_bool(c, v[5], "agent.finish_abandoned_downloads",
                                     &c->spec->agent.finish_abandoned_downloads);
        static const char *const counts[] = { "agent.max_downloads", "agent.max_upstream_waits",
                                              "agent.max_abandoned_downloads" };
        unsigned *const count_dst[] = { &c->spec->agent.max_downloads, &c->spec->agent.max_upstream_waits,
                                        &c->spec->agent.max_abandoned_downloads };
        /* Two downloads at least: prefetch may hold half of them, never a client's only one. */
        static const uint64_t count_min[] = { 2, 1, 1 };
        static const uint64_t count_max[] = { SPEC_MAX_DOWNLOADS_MAX, SPEC_MAX_UPSTREAM_WAITS_MAX,
                                              SPEC_MAX_DOWNLOADS_MAX };
        for (size_t i = 0; i < ELEMENTSOF(counts); i++) {
                uint64_t x;
                if (v[6 + i] && spec_get_uint(c, v[6 + i], counts[i], count_min[i], count_max[i], &x) == 0)
                        *count_dst[i] = (unsigned) x;
        }
        if (v[9])
                (void) get_duration(c, v[9], "agent.abandoned_download_timeout", 1000, 24ULL * 3600 * 1000,
                                    &c->spec->agent.abandoned_download_timeout_ms);
        if (v[10])
                (void) get_size(c, v[10], "agent.max_inflight_memory", SPEC_MIN_MAX_INFLIGHT_MEMORY,
                                &c->spec->agent.max_inflight_memory);
        uint64_t conns;
        if (v[11] && spec_get_uint(c, v[11], "agent.max_connections", SPEC_MAX_CONNECTIONS_MIN,
                                   SPEC_MAX_CONNECTIONS_MAX, &conns) == 0)
                c->spec->agent.max_connections = (unsigned) conns;
        uint64_t age;
        /* 0 is off; anything shorter than a second would evict between a
         * manifest and its layers. */
        if (v[12] && get_duration(c, v[12], "agent.cache_max_age", 0, SPEC_CACHE_MAX_AGE_MAX_MS, &age) == 0) {
                if (age > 0 && age < 1000)
                        spec_error(c, v[12], "agent.cache_max_age", "must be 0 (none) or at least 1s");
                else
                        c->spec->agent.cache_max_age_ms = age;
        }
        struct spec_agent *a = &c->spec->agent;
        if (v[13]) {
                parse_listen(c, v[13], "agent.metrics_listen", &a->metrics_host, &a->metrics_port);
                /* The pull API's own address would fail to bind at start, after the cache opened. */
                if (a->metrics_host && a->metrics_port == (a->listen_host ? a->listen_port : SPEC_DEFAULT_PORT) &&
                    strcmp(a->metrics_host, a->listen_host ? a->listen_host : "127.0.0.1") == 0)
                        spec_error(c, v[13], "agent.metrics_listen", "is agent.listen's address: the metrics "
                                   "listener needs a port of its own (like 9580)");
        }
        if (v[14])
                parse_admin_socket(c, v[14]);
        /* Checked against the registries in spec_finish(), once they are known. */
        *ret_default_registry = v[3];
}

/* ---- registries ------------------------------------------------------------- */

static void parse_capabilities(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct spec_endpoint *e) {
        if (!want_list(c, n, path, 8))
                return;
        unsigned caps = 0;
        for (size_t i = 0; i < seq_len(n); i++) {
                char p[SPEC_PATH_MAX];
                spec_path_index(p, sizeof(p), path, i);
                yaml_node_t *item = spec_node(c, n->data.sequence.items.start[i]);
                const char *s = spec_scalar(c, item, p);
                if (!s)
                        continue;
                unsigned bit = strcmp(s, "pull") == 0 ? SPEC_CAP_PULL : strcmp(s, "resolve") == 0 ? SPEC_CAP_RESOLVE : 0;
                if (bit == 0) {
                        if (strcmp(s, "push") == 0)
                                spec_error(c, item, p, "\"push\" is not supported: layerd is pull-only");
                        else
                                spec_error(c, item, p, "unknown capability \"%.32s\" (pull or resolve)", s);
                        continue;
                }
                if (caps & bit)
                        spec_error(c, item, p, "\"%s\" listed twice", s);
                caps |= bit;
        }
        if (caps)
                e->capabilities = caps;
}

static void parse_tls(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct spec_endpoint *e) {
        static const char *const keys[] = { "ca_file", "client_cert", "client_key", "insecure_skip_verify" };
        yaml_node_t *v[ELEMENTSOF(keys)];
        char p[SPEC_PATH_MAX];
        if (spec_mapping(c, n, path, keys, ELEMENTSOF(keys), v, false) < 0)
                return;
        char **dst[] = { &e->ca_file, &e->client_cert, &e->client_key };
        for (size_t i = 0; i < ELEMENTSOF(dst); i++)
                if (v[i]) {
                        spec_path_key(p, sizeof(p), path, keys[i]);
                        *dst[i] = get_abs_path(c, v[i], p);
                }
        if (v[2] && !v[1]) {
                spec_path_key(p, sizeof(p), path, "client_key");
                spec_error(c, v[2], p, "needs client_cert");
        }
        if (v[3]) {
                spec_path_key(p, sizeof(p), path, "insecure_skip_verify");
                (void) spec_get_bool(c, v[3], p, &e->skip_verify);
        }
}

static bool header_name_is_valid(const char *s) {
        /* RFC 9110 token. */
        if (!*s)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && !strchr("!#$%&'*+-.^_`|~", *s))
                        return false;
        return true;
}

static char *get_header_value(struct spec_ctx *c, const yaml_node_t *n, const char *path) {
        const char *s = spec_scalar(c, n, path);
        if (!s)
                return NULL;
        if (strpbrk(s, "\r\n")) {
                spec_error(c, n, path, "header values cannot contain line breaks");
                return NULL;
        }
        /* RFC 9110 field values: no control characters but tab. Go's net/http
         * (containerd) refuses them, which would silently kill the endpoint. */
        for (const unsigned char *q = (const unsigned char *) s; *q; q++)
                if ((*q < 0x20 && *q != '\t') || *q == 0x7f) {
                        spec_error(c, n, path, "header values cannot contain control characters");
                        return NULL;
                }
        return spec_strdup(c, s);
}

static void parse_headers(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct spec_endpoint *e) {
        if (n->type != YAML_MAPPING_NODE) {
                spec_error(c, n, path, "expected a mapping, got %s", spec_node_kind(n));
                return;
        }
        size_t len = map_len(n);
        if (len > SPEC_HEADERS_MAX) {
                spec_error(c, n, path, "too many headers (at most %d)", SPEC_HEADERS_MAX);
                return;
        }
        e->headers = spec_calloc(c, len, sizeof(struct spec_header));
        if (!e->headers)
                return;
        e->n_headers = len;
        for (size_t i = 0; i < len; i++) {
                const yaml_node_pair_t *pair = &n->data.mapping.pairs.start[i];
                yaml_node_t *k = spec_node(c, pair->key), *val = spec_node(c, pair->value);
                const char *name = spec_scalar(c, k, path);
                if (!name || !spec_key_is_unique(c, n, i, path, true))
                        continue;
                char p[SPEC_PATH_MAX];
                spec_path_key(p, sizeof(p), path, name);
                if (!header_name_is_valid(name)) {
                        spec_error(c, k, p, "not a valid header name");
                        continue;
                }
                if (strcasecmp(name, "Authorization") == 0 || strcasecmp(name, "Proxy-Authorization") == 0 ||
                    strcasecmp(name, "Cookie") == 0) {
                        spec_error(c, k, p, "secrets do not belong in the spec: use credentials_file");
                        continue;
                }
                struct spec_header *h = &e->headers[i];
                h->name = spec_strdup(c, name);
                if (val->type == YAML_SEQUENCE_NODE) {
                        if (!want_list(c, val, p, SPEC_HEADER_VALUES_MAX))
                                continue;
                        h->values = spec_calloc(c, seq_len(val), sizeof(char *));
                        if (!h->values)
                                continue;
                        h->n_values = seq_len(val);
                        for (size_t j = 0; j < h->n_values; j++) {
                                char pj[SPEC_PATH_MAX];
                                spec_path_index(pj, sizeof(pj), p, j);
                                h->values[j] = get_header_value(c, spec_node(c, val->data.sequence.items.start[j]), pj);
                        }
                } else {
                        h->values = spec_calloc(c, 1, sizeof(char *));
                        if (!h->values)
                                continue;
                        h->n_values = 1;
                        h->values[0] = get_header_value(c, val, p);
                }
        }
}

static void parse_timeouts(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct spec_endpoint *e) {
        static const char *const keys[] = { "connect", "response", "idle" };
        yaml_node_t *v[ELEMENTSOF(keys)];
        char p[SPEC_PATH_MAX];
        if (spec_mapping(c, n, path, keys, ELEMENTSOF(keys), v, false) < 0)
                return;
        uint64_t *dst[] = { &e->connect_timeout_ms, &e->response_timeout_ms, &e->idle_timeout_ms };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (v[i]) {
                        spec_path_key(p, sizeof(p), path, keys[i]);
                        (void) get_duration(c, v[i], p, 1, DURATION_MAX_MS, dst[i]);
                }
}

/* containerd appends /v2 to an endpoint's path unless override_path is set
 * or the path already ends in /v2 (then it is the API root). Spelling that out
 * keeps containerd, layerd and the other runtimes' configs in agreement. */
static void check_v2_suffix(struct spec_ctx *c, const yaml_node_t *n, const char *path, const struct spec_endpoint *e) {
        if (!e->url || e->override_path)
                return;
        size_t len = strlen(e->url);
        if (len >= 3 && strcmp(e->url + len - 3, "/v2") == 0)
                spec_error(c, n, path, "path ends in /v2, which makes it the API root: set override_path: true");
}

/* credential_helper: {command, lifetime, timeout}, or the command alone. */
static void parse_credential_helper(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct spec_endpoint *e) {
        static const char *const keys[] = { "command", "lifetime", "timeout" };
        yaml_node_t *v[ELEMENTSOF(keys)];
        char p[SPEC_PATH_MAX];
        e->credential_helper_lifetime_ms = SPEC_DEFAULT_CREDENTIAL_HELPER_LIFETIME_MS;
        e->credential_helper_timeout_ms = SPEC_DEFAULT_CREDENTIAL_HELPER_TIMEOUT_MS;
        if (n->type == YAML_SCALAR_NODE) {
                e->credential_helper = get_abs_path(c, n, path);
                return;
        }
        if (spec_mapping(c, n, path, keys, ELEMENTSOF(keys), v, false) < 0)
                return;
        spec_path_key(p, sizeof(p), path, "command");
        if (!v[0])
                spec_error(c, n, path, "missing required key \"command\"");
        else
                e->credential_helper = get_abs_path(c, v[0], p);
        if (v[1]) {
                spec_path_key(p, sizeof(p), path, "lifetime");
                (void) get_duration(c, v[1], p, 1000, 24ULL * 3600 * 1000, &e->credential_helper_lifetime_ms);
        }
        if (v[2]) {
                spec_path_key(p, sizeof(p), path, "timeout");
                (void) get_duration(c, v[2], p, 100, 60 * 1000, &e->credential_helper_timeout_ms);
        }
}

static void parse_endpoint(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct spec_endpoint *e) {
        static const char *const keys[] = { "url",  "capabilities", "override_path", "tls", "headers",
                                            "credentials_file", "timeouts", "allow_private_redirects",
                                            "credential_helper" };
        yaml_node_t *v[ELEMENTSOF(keys)];
        char p[SPEC_PATH_MAX];

        spec_endpoint_defaults(e);
        e->line = (unsigned) n->start_mark.line + 1;
        /* A bare string is shorthand for {url: ...}. */
        if (n->type == YAML_SCALAR_NODE && !spec_is_null(n)) {
                spec_path_key(p, sizeof(p), path, "url");
                e->url = get_url(c, n, p, NULL);
                check_v2_suffix(c, n, p, e);
                return;
        }
        if (spec_mapping(c, n, path, keys, ELEMENTSOF(keys), v, false) < 0)
                return;
        struct url u = {};
        char p0[SPEC_PATH_MAX];
        spec_path_key(p0, sizeof(p0), path, "url");
        if (!v[0])
                spec_error(c, n, path, "missing required key \"url\"");
        else
                e->url = get_url(c, v[0], p0, &u);
        bool have_url = e->url != NULL;
        if (v[1]) {
                spec_path_key(p, sizeof(p), path, "capabilities");
                parse_capabilities(c, v[1], p, e);
        }
        if (v[2]) {
                spec_path_key(p, sizeof(p), path, "override_path");
                (void) spec_get_bool(c, v[2], p, &e->override_path);
        }
        if (v[3]) {
                spec_path_key(p, sizeof(p), path, "tls");
                if (have_url && strcmp(u.scheme, "https") != 0)
                        spec_error(c, v[3], p, "TLS settings need an https:// URL");
                parse_tls(c, v[3], p, e);
        }
        if (v[4]) {
                spec_path_key(p, sizeof(p), path, "headers");
                parse_headers(c, v[4], p, e);
        }
        if (v[5]) {
                spec_path_key(p, sizeof(p), path, "credentials_file");
                e->credentials_file = get_abs_path(c, v[5], p);
        }
        if (v[6]) {
                spec_path_key(p, sizeof(p), path, "timeouts");
                parse_timeouts(c, v[6], p, e);
        }
        if (v[7]) {
                spec_path_key(p, sizeof(p), path, "allow_private_redirects");
                (void) spec_get_bool(c, v[7], p, &e->allow_private_redirects);
        }
        if (v[8]) {
                spec_path_key(p, sizeof(p), path, "credential_helper");
                if (v[5])
                        spec_error(c, v[8], p, "credentials_file and credential_helper exclude each other");
                else
                        parse_credential_helper(c, v[8], p, e);
        }
        if (v[0])
                check_v2_suffix(c, v[0], p0, e);
        url_done(&u);
}

/* The origin (derived unless given), marked or appended, and the endpoint count checked. */
static void finish_origin(struct spec_ctx *c, struct spec_registry *r, const char *path, const yaml_node_t *endpoints,
                          bool fallback) {
        if (!r->origin) {
                r->origin = spec_default_origin(r->host);
                if (!r->origin) {
                        c->oom = true;
                        return;
                }
        }
        spec_mark_origin(c, r, fallback);
        size_t mirrors = 0;
        for (size_t i = 0; i < r->n_endpoints; i++)
                mirrors += !r->endpoints[i].is_origin;
        if (mirrors > SPEC_ENDPOINTS_MAX) {
                char pe[SPEC_PATH_MAX];
                spec_path_key(pe, sizeof(pe), path, "endpoints");
                spec_error(c, endpoints, pe, "too many endpoints (at most %d besides the origin)", SPEC_ENDPOINTS_MAX);
        }
}

/* auth_passthrough, auth_verdict_ttl, auth_outage_grace (v[0..2], NULL when absent). A verdict
 * trusted for a day would outlive a revoked credential too long; an outage grace shorter than the
 * verdict's TTL would never apply. */
static void parse_registry_auth(struct spec_ctx *c, const char *path, yaml_node_t *const *v, struct spec_registry *r) {
        char p[SPEC_PATH_MAX];
        if (v[0]) {
                spec_path_key(p, sizeof(p), path, "auth_passthrough");
                (void) spec_get_bool(c, v[0], p, &r->auth_passthrough);
        }
        if (v[1]) {
                spec_path_key(p, sizeof(p), path, "auth_verdict_ttl");
                (void) get_duration(c, v[1], p, 0, AUTH_VERDICT_TTL_MAX_MS, &r->auth_verdict_ttl_ms);
        }
        if (v[2]) {
                spec_path_key(p, sizeof(p), path, "auth_outage_grace");
                if (get_duration(c, v[2], p, 0, AUTH_OUTAGE_GRACE_MAX_MS, &r->auth_outage_grace_ms) == 0 &&
                    r->auth_outage_grace_ms && r->auth_outage_grace_ms < r->auth_verdict_ttl_ms)
                        spec_error(c, v[2], p, "shorter than auth_verdict_ttl: it would never apply (0s turns it off)");
        }
}

static void parse_registry(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct spec_registry *r) {
        static const char *const keys[] = { "mirror", "origin", "fallback_to_origin", "endpoints", "tag_ttl",
                                            "auth_passthrough", "auth_verdict_ttl", "auth_outage_grace" };
        yaml_node_t *v[ELEMENTSOF(keys)] = {};
        char p[SPEC_PATH_MAX];
        bool fallback = true;

        bool is_default = strcmp(r->host, SPEC_DEFAULT_REGISTRY) == 0;
        r->mirror = !is_default;
        r->tag_ttl_ms = SPEC_DEFAULT_TAG_TTL_MS;
        spec_auth_defaults(r);
        /* "docker.io:" with nothing after it: every default. */
        if (spec_is_null(n) && !is_default) {
                finish_origin(c, r, path, NULL, true);
                return;
        }
        if (spec_mapping(c, n, path, keys, ELEMENTSOF(keys), v, false) < 0)
                return;
        if (is_default) {
                /* containerd's catch-all: the origin is whatever registry a pull
                 * names, and layerd serving it would make it an open proxy. */
                bool mirror = false;
                if (v[0] && spec_get_bool(c, v[0], path, &mirror) == 0 && mirror)
                        spec_error(c, v[0], path, "_default cannot be mirrored by layerd (that would make it an open proxy)");
                for (size_t i = 1; i <= 2; i++)
                        if (v[i])
                                spec_error(c, v[i], path, "_default has no origin: containerd uses the registry a pull names");
                if (v[4])
                        spec_error(c, v[4], path,
                                   "_default takes no tag_ttl: layerd never serves it, so it caches no tags");
                if (!v[3])
                        spec_error(c, n, path, "missing required key \"endpoints\"");
                v[1] = v[2] = NULL;
                v[0] = v[4] = NULL;
                for (size_t i = 5; i <= 7; i++)
                        if (v[i]) {
                                spec_error(c, v[i], path, "_default takes no %s: layerd never serves it", keys[i]);
                                v[i] = NULL;
                        }
        }
        if (v[0]) {
                spec_path_key(p, sizeof(p), path, "mirror");
                (void) spec_get_bool(c, v[0], p, &r->mirror);
        }
        if (v[1]) {
                spec_path_key(p, sizeof(p), path, "origin");
                r->origin = get_url(c, v[1], p, NULL);
        }
        if (v[2]) {
                spec_path_key(p, sizeof(p), path, "fallback_to_origin");
                (void) spec_get_bool(c, v[2], p, &fallback);
        }
        if (v[4]) {
                /* 0 is allowed: revalidate every tag on every request. */
                spec_path_key(p, sizeof(p), path, "tag_ttl");
                (void) get_duration(c, v[4], p, 0, TAG_TTL_MAX_MS, &r->tag_ttl_ms);
        }
        parse_registry_auth(c, path, v + 5, r);
        if (v[3]) {
                spec_path_key(p, sizeof(p), path, "endpoints");
                /* SPEC_ENDPOINTS_MAX besides the origin, which a printed spec lists too. */
                if (v[3]->type == YAML_SEQUENCE_NODE && seq_len(v[3]) > SPEC_ENDPOINTS_MAX + 1) {
                        spec_error(c, v[3], p, "too many endpoints (at most %d besides the origin)", SPEC_ENDPOINTS_MAX);
                        return;
                }
                if (want_list(c, v[3], p, SPEC_ENDPOINTS_MAX + 1)) {
                        size_t len = seq_len(v[3]);
                        /* One spare slot for the implied origin. */
                        r->endpoints = spec_calloc(c, len + 1, sizeof(struct spec_endpoint));
                        if (r->endpoints) {
                                r->n_endpoints = len;
                                for (size_t i = 0; i < len; i++) {
                                        char pi[SPEC_PATH_MAX];
                                        spec_path_index(pi, sizeof(pi), p, i);
                                        yaml_node_t *item = spec_node(c, v[3]->data.sequence.items.start[i]);
                                        parse_endpoint(c, item, pi, &r->endpoints[i]);
                                        spec_check_duplicate_endpoint(c, r, i, item, pi);
                                }
                        }
                } else {
                        return;
                }
        }
        if (is_default)
                return;
        if (!fallback && r->n_endpoints == 0) {
                spec_error(c, v[2], path, "no endpoints: list some or set fallback_to_origin: true");
                return;
        }
        if (v[1] && !r->origin)
                return; /* an invalid origin was reported */
        finish_origin(c, r, path, v[3], fallback);
}

static void parse_registries(struct spec_ctx *c, const yaml_node_t *n) {
        const char *path = "registries";
        if (n->type != YAML_MAPPING_NODE) {
                spec_error(c, n, path, "expected a mapping, got %s", spec_node_kind(n));
                return;
        }
        size_t len = map_len(n);
        if (len == 0) {
                spec_error(c, n, path, "no registries: list at least one");
                return;
        }
        if (len > SPEC_REGISTRIES_MAX) {
                spec_error(c, n, path, "too many registries (at most %d)", SPEC_REGISTRIES_MAX);
                return;
        }
        c->spec->registries = spec_calloc(c, len, sizeof(struct spec_registry));
        if (!c->spec->registries)
                return;
        c->spec->n_registries = len;
        for (size_t i = 0; i < len; i++) {
                const yaml_node_pair_t *pair = &n->data.mapping.pairs.start[i];
                yaml_node_t *k = spec_node(c, pair->key);
                struct spec_registry *r = &c->spec->registries[i];
                bool is_default = k->type == YAML_SCALAR_NODE && strcmp((const char *) k->data.scalar.value,
                                                                        SPEC_DEFAULT_REGISTRY) == 0;
                _cleanup_free_ char *host = is_default ? spec_strdup(c, SPEC_DEFAULT_REGISTRY)
                                                       : spec_registry_host(c, k, path);
                if (!host)
                        continue;
                char p[SPEC_PATH_MAX];
                spec_path_key(p, sizeof(p), path, host);
                /* Compared in canonical form: "Docker.io" and "docker.io", or
                 * "zot:05000" and "zot:5000", are the same registry. */
                const struct spec_registry *first = spec_find_registry(c->spec, host);
                if (first) {
                        const yaml_node_t *fk = spec_node(c, n->data.mapping.pairs.start[first - c->spec->registries].key);
                        spec_error(c, k, p, "duplicate registry (first at line %u)", (unsigned) fk->start_mark.line + 1);
                        continue;
                }
                r->host = TAKE_PTR(host);
                parse_registry(c, spec_node(c, pair->value), p, r);
        }
}

/* ---- prefetch --------------------------------------------------------------- */

static void parse_tags(struct spec_ctx *c, const yaml_node_t *n, const char *path, struct spec_prefetch_entry *e) {
        static const char *const keys[] = { "regex", "semver", "newest" };
        yaml_node_t *v[ELEMENTSOF(keys)];
        char p[SPEC_PATH_MAX];
        if (spec_mapping(c, n, path, keys, ELEMENTSOF(keys), v, false) < 0)
                return;
        if (v[0]) {
                spec_path_key(p, sizeof(p), path, "regex");
                const char *s = spec_scalar(c, v[0], p);
                regex_t re;
                int r = s ? regcomp(&re, s, REG_EXTENDED | REG_NOSUB) : -1;
                if (r == 0) {
                        regfree(&re);
                        e->tag_regex = spec_strdup(c, s);
                } else if (s) {
                        char why[REGEX_ERROR_MAX];
                        regerror(r, NULL, why, sizeof(why));
                        spec_error(c, v[0], p, "not a valid extended regular expression: %s", why);
                }
        }
        if (v[1]) {
                spec_path_key(p, sizeof(p), path, "semver");
                const char *s = spec_scalar(c, v[1], p);
                if (s && !semver_range_is_valid(s))
                        spec_error(c, v[1], p, "not a semver range (like \">=1.2 <2\" or \"~1.27\"): \"%.64s\"", s);
                else if (s)
                        e->tag_semver = spec_strdup(c, s);
        }
        if (v[2]) {
                uint64_t newest;
                spec_path_key(p, sizeof(p), path, "newest");
                if (spec_get_uint(c, v[2], p, 1, 1000, &newest) == 0)
                        e->newest = (unsigned) newest;
        }
}

static void parse_prefetch_entry(struct spec_ctx *c, const yaml_node_t *n, const char *path,
                                 struct spec_prefetch_entry *e) {
        static const char *const keys[] = { "image", "repository", "tags", "platforms" };
        yaml_node_t *v[ELEMENTSOF(keys)] = {};
        const yaml_node_t *ref_node = n;
        bool is_image = true;
        char p[SPEC_PATH_MAX];

        if (n->type == YAML_SCALAR_NODE && !spec_is_null(n)) {
                snprintf(p, sizeof(p), "%s", path);
        } else {
                if (spec_mapping(c, n, path, keys, ELEMENTSOF(keys), v, false) < 0)
                        return;
                if (!!v[0] == !!v[1]) {
                        spec_error(c, n, path, "needs exactly one of \"image\" or \"repository\"");
                        return;
                }
                is_image = v[0] != NULL;
                ref_node = is_image ? v[0] : v[1];
                spec_path_key(p, sizeof(p), path, is_image ? "image" : "repository");
                if (v[2]) {
                        char pt[SPEC_PATH_MAX];
                        spec_path_key(pt, sizeof(pt), path, "tags");
                        if (is_image)
                                spec_error(c, v[2], pt, "tag filters apply to a \"repository\", not an \"image\"");
                        else
                                parse_tags(c, v[2], pt, e);
                }
                if (v[3]) {
                        char pp[SPEC_PATH_MAX];
                        spec_path_key(pp, sizeof(pp), path, "platforms");
                        get_platforms(c, v[3], pp, &e->platforms, &e->n_platforms);
                }
        }
        const char *s = spec_scalar(c, ref_node, p);
        if (!s)
                return;
        struct reference ref;
        const char *reason = NULL;
        int r = reference_parse(s, is_image, &ref, &reason);
        if (r == -ENOMEM) {
                c->oom = true;
                return;
        }
        if (r < 0) {
                spec_error(c, ref_node, p, "%s: \"%.128s\"", reason, s);
                return;
        }
        char *text = reference_to_string(&ref);
        if (!text)
                c->oom = true;
        if (is_image)
                e->image = text;
        else
                e->repository = text;
        e->registry = spec_strdup(c, ref.domain);
        reference_done(&ref);
}

static void parse_prefetch(struct spec_ctx *c, const yaml_node_t *n) {
        static const char *const keys[] = { "interval", "concurrency", "bandwidth", "platforms", "images",
                                            "wait_ready", "wait_ready_timeout", "referrers" };
        yaml_node_t *v[ELEMENTSOF(keys)];
        struct spec_prefetch *pf = &c->spec->prefetch;
        if (spec_mapping(c, n, "prefetch", keys, ELEMENTSOF(keys), v, false) < 0)
                return;
        if (v[0])
                (void) get_duration(c, v[0], "prefetch.interval", 60 * 1000, 365ULL * 86400 * 1000, &pf->interval_ms);
        if (v[1]) {
                uint64_t x;
                if (spec_get_uint(c, v[1], "prefetch.concurrency", 1, SPEC_PREFETCH_CONCURRENCY_MAX, &x) == 0)
                        pf->concurrency = (unsigned) x;
        }
        if (v[2])
                (void) get_size(c, v[2], "prefetch.bandwidth", 0, &pf->bandwidth_bps);
        if (v[3])
                get_platforms(c, v[3], "prefetch.platforms", &pf->platforms, &pf->n_platforms);
        if (v[5])
                (void) spec_get_bool(c, v[5], "prefetch.wait_ready", &pf->wait_ready);
        if (v[6])
                (void) get_duration(c, v[6], "prefetch.wait_ready_timeout", 1000, 24ULL * 3600 * 1000,
                                    &pf->wait_ready_timeout_ms);
        if (v[7])
                (void) spec_get_bool(c, v[7], "prefetch.referrers", &pf->referrers);
        if (v[4] && want_list(c, v[4], "prefetch.images", SPEC_PREFETCH_MAX)) {
                size_t len = seq_len(v[4]);
                pf->entries = spec_calloc(c, len, sizeof(struct spec_prefetch_entry));
                if (!pf->entries)
                        return;
                pf->n_entries = len;
                c->prefetch_nodes = v[4];
                for (size_t i = 0; i < len; i++) {
                        char p[SPEC_PATH_MAX];
                        spec_path_index(p, sizeof(p), "prefetch.images", i);
                        parse_prefetch_entry(c, spec_node(c, v[4]->data.sequence.items.start[i]), p, &pf->entries[i]);
                }
        }
}

/* ---- hosts ------------------------------------------------------------------ */

static void parse_hosts(struct spec_ctx *c, const yaml_node_t *n) {
        static const char *const keys[] = { "containerd_version" };
        yaml_node_t *v[ELEMENTSOF(keys)];
        if (spec_mapping(c, n, "hosts", keys, ELEMENTSOF(keys), v, false) < 0)
                return;
        if (v[0]) {
                const char *s = spec_scalar(c, v[0], "hosts.containerd_version");
                unsigned code = 0;
                bool is_auto = s && strcmp(s, SPEC_CONTAINERD_VERSION_AUTO) == 0;
                if (s && !is_auto && spec_version_code(s, &code) < 0)
                        spec_error(c, v[0], "hosts.containerd_version",
                                   "not a version (like 1.7 or 2.0.7) or auto: \"%.32s\"", s);
                else if (s) {
                        c->spec->hosts.containerd_version = spec_strdup(c, s);
                        c->spec->hosts.containerd_version_auto = is_auto;
                        c->spec->hosts.containerd_version_code = code; /* auto: 0 until resolved */
                }
        }
}

void spec_parse_layerd(struct spec_ctx *c, const yaml_node_t *root) {
        yaml_node_t *v[ELEMENTSOF(spec_layerd_top_keys)];
        const yaml_node_t *default_registry = NULL;
        if (spec_mapping(c, root, "", spec_layerd_top_keys, ELEMENTSOF(spec_layerd_top_keys), v, false) < 0)
                return;
        if (v[0]) {
                const char *version = spec_scalar(c, v[0], "version");
                if (version && strcmp(version, "1") != 0)
                        spec_error(c, v[0], "version", "unsupported version \"%.32s\" (this layerd reads version 1)",
                                   version);
        }
        if (v[1])
                parse_agent(c, v[1], &default_registry);
        if (v[2])
                parse_registries(c, v[2]);
        else
                spec_error(c, root, "", "missing required key \"registries\"");
        if (v[3])
                parse_prefetch(c, v[3]);
        if (v[4])
                parse_hosts(c, v[4]);
        spec_finish(c, default_registry);
}
