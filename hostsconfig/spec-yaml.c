/* SPDX-License-Identifier: Apache-2.0 */
/* Typed access to libyaml's document tree with positioned errors: the helpers
 * both spec forms are built from. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "common/parse.h"
#include "hostsconfig/spec-internal.h"

#define HINT_KEY_MAX 63 /* a longer key gets no did-you-mean hint */

void spec_error(struct spec_ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...) {
        char msg[ERROR_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* libyaml marks are 0-based; editors count from 1. */
        unsigned line = n ? (unsigned) n->start_mark.line + 1 : 0;
        unsigned col = n ? (unsigned) n->start_mark.column + 1 : 0;
        if (path && path[0])
                error_list_add(c->errors, line, col, "%s: %s", path, msg);
        else
                error_list_add(c->errors, line, col, "%s", msg);
}

void spec_path_key(char *buf, size_t size, const char *parent, const char *key) {
        if (parent && parent[0])
                snprintf(buf, size, "%s.%s", parent, key);
        else
                snprintf(buf, size, "%s", key);
}

void spec_path_index(char *buf, size_t size, const char *parent, size_t index) {
        snprintf(buf, size, "%s[%zu]", parent, index);
}

yaml_node_t *spec_node(struct spec_ctx *c, int id) {
        return yaml_document_get_node(c->doc, id);
}

bool spec_is_null(const yaml_node_t *n) {
        if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        const char *s = (const char *) n->data.scalar.value;
        return n->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
               strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

const char *spec_node_kind(const yaml_node_t *n) {
        switch (n->type) {
        case YAML_MAPPING_NODE:
                return "a mapping";
        case YAML_SEQUENCE_NODE:
                return "a list";
        case YAML_SCALAR_NODE:
                return spec_is_null(n) ? "null" : "a scalar";
        default:
                return "nothing";
        }
}

const char *spec_scalar(struct spec_ctx *c, const yaml_node_t *n, const char *path) {
        if (n->type != YAML_SCALAR_NODE || spec_is_null(n)) {
                spec_error(c, n, path, "expected a string, got %s", spec_node_kind(n));
                return NULL;
        }
        if (memchr(n->data.scalar.value, '\0', n->data.scalar.length)) {
                spec_error(c, n, path, "contains a NUL character");
                return NULL;
        }
        if (n->data.scalar.length > SPEC_STRING_MAX) {
                spec_error(c, n, path, "longer than %d characters", SPEC_STRING_MAX);
                return NULL;
        }
        /* Counted with a little for the structure around it, and reported once. */
        if (c->expanded <= SPEC_EXPANDED_MAX) {
                c->expanded += n->data.scalar.length + 16;
                if (c->expanded > SPEC_EXPANDED_MAX)
                        spec_error(c, n, path, "the spec expands to more than %d bytes (through YAML aliases?)",
                                   SPEC_EXPANDED_MAX);
        }
        if (c->expanded > SPEC_EXPANDED_MAX)
                return NULL;
        return (const char *) n->data.scalar.value;
}

int spec_get_bool(struct spec_ctx *c, const yaml_node_t *n, const char *path, bool *ret) {
        /* YAML 1.2 core schema booleans only: "yes"/"on" are YAML 1.1 and a
         * classic source of surprises, so they are refused rather than guessed. */
        static const char *const t[] = { "true", "True", "TRUE" }, *const f[] = { "false", "False", "FALSE" };
        if (n->type == YAML_SCALAR_NODE && !spec_is_null(n)) {
                const char *s = (const char *) n->data.scalar.value;
                for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                        if (strcmp(s, t[i]) == 0) {
                                *ret = true;
                                return 0;
                        }
                        if (strcmp(s, f[i]) == 0) {
                                *ret = false;
                                return 0;
                        }
                }
                spec_error(c, n, path, "expected true or false, got \"%.64s\"", s);
                return -EINVAL;
        }
        spec_error(c, n, path, "expected true or false, got %s", spec_node_kind(n));
        return -EINVAL;
}

int spec_get_uint(struct spec_ctx *c, const yaml_node_t *n, const char *path, uint64_t min, uint64_t max,
                  uint64_t *ret) {
        if (n->type != YAML_SCALAR_NODE || spec_is_null(n)) {
                spec_error(c, n, path, "expected an integer, got %s", spec_node_kind(n));
                return -EINVAL;
        }
        const char *s = (const char *) n->data.scalar.value;
        uint64_t v;
        int r = parse_uint(s, UINT64_MAX, &v);
        if (r == -EINVAL) {
                spec_error(c, n, path, "expected an integer, got \"%.64s\"", s);
                return r;
        }
        if (r < 0 || v < min || v > max) {
                spec_error(c, n, path, "must be between %llu and %llu", (unsigned long long) min,
                           (unsigned long long) max);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

/* Edit distance for the did-you-mean hint; keys are short (< 32 chars). */
static size_t edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        if (la > HINT_KEY_MAX || lb > HINT_KEY_MAX)
                return SIZE_MAX;
        size_t row[HINT_KEY_MAX + 1];
        for (size_t j = 0; j <= lb; j++)
                row[j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t diag = row[0];
                row[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t up = row[j];
                        size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
                        size_t best = diag + cost;
                        if (up + 1 < best)
                                best = up + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        row[j] = best;
                        diag = up;
                }
        }
        return row[lb];
}

static const char *closest_key(const char *key, const char *const *known, size_t n_known) {
        const char *best = NULL;
        size_t best_d = SIZE_MAX;
        /* A shortened key ("containerd" for "containerd_version") is a likely slip too. */
        for (size_t i = 0; i < n_known && strlen(key) >= 4; i++)
                if (strncmp(key, known[i], strlen(key)) == 0)
                        return known[i];
        for (size_t i = 0; i < n_known; i++) {
                size_t d = edit_distance(key, known[i]);
                if (d < best_d) {
                        best_d = d;
                        best = known[i];
                }
        }
        /* Only suggest what is plausibly a typo, not any key at all. */
        if (best && (best_d <= 2 || best_d * 3 <= strlen(best)))
                return best;
        return NULL;
}

bool spec_key_is_unique(struct spec_ctx *c, const yaml_node_t *n, size_t i, const char *path, bool fold_case) {
        const yaml_node_pair_t *pairs = n->data.mapping.pairs.start;
        const yaml_node_t *k = spec_node(c, pairs[i].key);
        if (!k || k->type != YAML_SCALAR_NODE)
                return true;
        for (size_t j = 0; j < i; j++) {
                const yaml_node_t *o = spec_node(c, pairs[j].key);
                if (!o || o->type != YAML_SCALAR_NODE)
                        continue;
                const char *a = (const char *) k->data.scalar.value, *b = (const char *) o->data.scalar.value;
                if (fold_case ? strcasecmp(a, b) == 0 : strcmp(a, b) == 0) {
                        char p[SPEC_PATH_MAX];
                        spec_path_key(p, sizeof(p), path, a);
                        spec_error(c, k, p, "duplicate key (first at line %u)", (unsigned) o->start_mark.line + 1);
                        return false;
                }
        }
        return true;
}

int spec_mapping(struct spec_ctx *c, const yaml_node_t *n, const char *path, const char *const *known,
                 size_t n_known, yaml_node_t **values, bool ignore_unknown) {
        for (size_t i = 0; i < n_known; i++)
                values[i] = NULL;
        if (n->type != YAML_MAPPING_NODE) {
                spec_error(c, n, path, "expected a mapping, got %s", spec_node_kind(n));
                return -EINVAL;
        }
        size_t n_pairs = (size_t) (n->data.mapping.pairs.top - n->data.mapping.pairs.start);
        for (size_t i = 0; i < n_pairs; i++) {
                const yaml_node_pair_t *pair = &n->data.mapping.pairs.start[i];
                yaml_node_t *k = spec_node(c, pair->key);
                if (!k || k->type != YAML_SCALAR_NODE) {
                        spec_error(c, k ? k : n, path, "keys must be strings");
                        continue;
                }
                const char *key = (const char *) k->data.scalar.value;
                size_t j;
                for (j = 0; j < n_known; j++)
                        if (strcmp(key, known[j]) == 0)
                                break;
                if (j == n_known) {
                        if (ignore_unknown)
                                continue;
                        const char *hint = closest_key(key, known, n_known);
                        if (hint)
                                spec_error(c, k, path, "unknown key \"%.64s\" (did you mean \"%s\"?)", key, hint);
                        else
                                spec_error(c, k, path, "unknown key \"%.64s\"", key);
                        continue;
                }
                if (!spec_key_is_unique(c, n, i, path, false))
                        continue;
                values[j] = spec_node(c, pair->value);
        }
        return 0;
}

char *spec_strdup(struct spec_ctx *c, const char *s) {
        char *d = strdup(s);
        if (!d)
                c->oom = true;
        return d;
}

void *spec_calloc(struct spec_ctx *c, size_t n, size_t size) {
        void *p = calloc(n ? n : 1, size);
        if (!p)
                c->oom = true;
        return p;
}

char *spec_registry_host(struct spec_ctx *c, const yaml_node_t *n, const char *path) {
        const char *s = spec_scalar(c, n, path);
        if (!s)
                return NULL;
        _cleanup_free_ char *host = NULL;
        uint16_t port;
        int r = parse_host_port(s, false, &host, &port);
        if (r == -ENOMEM) {
                c->oom = true;
                return NULL;
        }
        if (r < 0 || strchr(s, '/')) {
                spec_error(c, n, path, "not a registry host[:port]: \"%.128s\"", s);
                return NULL;
        }
        /* Canonical, as parse_host_port leaves the host (lower case, IPv6
         * compressed), with the port written without leading zeros. */
        bool v6 = strchr(host, ':') != NULL;
        char port_text[PORT_TEXT_MAX] = "", *canonical = NULL;
        if (port)
                snprintf(port_text, sizeof(port_text), ":%u", port);
        if (asprintf(&canonical, "%s%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "", port_text) < 0) {
                c->oom = true;
                return NULL;
        }
        return canonical;
}
