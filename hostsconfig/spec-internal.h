/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared by the parsers of the two spec forms; not part of the module's public
 * interface. Who calls whom, one way only: spec.c (loading) picks the form and
 * calls its parser, spec-layerd.c or spec-helm.c; both parsers build on
 * spec-common.c (the checks both forms share), spec-yaml.c (typed access to the
 * document) and spec-model.c (freeing and lookups, no YAML). */

#include <stdbool.h>
#include <yaml.h>

#include "common/error.h"
#include "common/macro.h"
#include "hostsconfig/spec.h"

#define SPEC_PATH_MAX 512     /* key path shown in errors, e.g. registries.docker.io.endpoints[1].url */
#define SPEC_STRING_MAX 4096  /* longest scalar accepted */
#define SPEC_URL_SHOWN_MAX 256 /* a URL quoted in an error (url_redact()ed), NUL included */
/* What the model may hold once aliases are expanded: YAML aliases let a few
 * kilobytes name gigabytes, so every scalar read counts against this. */
#define SPEC_EXPANDED_MAX (4 * SPEC_FILE_MAX)

struct spec_ctx {
        yaml_document_t *doc;
        struct error_list *errors;
        struct spec *spec;
        const char *default_cache_dir;
        const yaml_node_t *prefetch_nodes; /* prefetch.images, for positions in late checks */
        size_t expanded;    /* bytes of scalars read so far, aliases counted each time */
        bool oom;
};

/* ---- spec-yaml.c: typed access to the document ------------------------------ */

/* Records an error at node n ("path: message"); with n NULL the error has no position. */
void spec_error(struct spec_ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...) _printf_(4, 5);

/* Joins "parent.key" or "parent[index]" into buf (bounded, truncated). */
void spec_path_key(char *buf, size_t size, const char *parent, const char *key);
void spec_path_index(char *buf, size_t size, const char *parent, size_t index);

yaml_node_t *spec_node(struct spec_ctx *c, int id);

/* The text of a non-null scalar, or NULL with an error recorded ("expected a string"). */
const char *spec_scalar(struct spec_ctx *c, const yaml_node_t *n, const char *path);
bool spec_is_null(const yaml_node_t *n);
const char *spec_node_kind(const yaml_node_t *n);

/* Scalar converters: 0 on success, -EINVAL with an error recorded. */
int spec_get_bool(struct spec_ctx *c, const yaml_node_t *n, const char *path, bool *ret);
int spec_get_uint(struct spec_ctx *c, const yaml_node_t *n, const char *path, uint64_t min, uint64_t max, uint64_t *ret);

/* Checks that n is a mapping whose keys are all in known[0..n_known) without
 * duplicates, recording errors (with a did-you-mean hint for unknown keys) and
 * storing each known key's value node in values[i] (NULL when absent). With
 * ignore_unknown, unknown keys are skipped silently (the Helm form's shared
 * blocks). Returns -EINVAL when n is not a mapping (values all NULL then). */
int spec_mapping(struct spec_ctx *c, const yaml_node_t *n, const char *path, const char *const *known,
                 size_t n_known, yaml_node_t **values, bool ignore_unknown);

/* Checks that the key node at pair index i of mapping n is not repeated among
 * pairs [0, i); records "duplicate key" and returns false when it is. Compares
 * case-insensitively when fold_case is set (host names). */
bool spec_key_is_unique(struct spec_ctx *c, const yaml_node_t *n, size_t i, const char *path, bool fold_case);

/* strdup that records allocation failure in c->oom. */
char *spec_strdup(struct spec_ctx *c, const char *s);
void *spec_calloc(struct spec_ctx *c, size_t n, size_t size);

/* Registry host key "host[:port]", lower-cased into a new string; NULL with an error recorded. */
char *spec_registry_host(struct spec_ctx *c, const yaml_node_t *n, const char *path);

/* ---- spec-common.c: the checks both forms share ----------------------------- */

/* Fills an endpoint with defaults (capabilities pull+resolve, default timeouts), except the connect
 * timeout: that is left 0 ("not given") for spec_finish(), which knows by then whether the endpoint
 * is the origin. */
void spec_endpoint_defaults(struct spec_endpoint *e);

/* Final cross-checks and defaults shared by both forms: origins, implied origin
 * endpoints, default_registry, prefetch registries, the connect timeouts not given
 * (after spec_mark_origin()). */
void spec_finish(struct spec_ctx *c, const yaml_node_t *root);

/* r's auth_* keys at their defaults (pass-through on, docs/spec.md). */
void spec_auth_defaults(struct spec_registry *r);

/* Marks the endpoints whose URL is r's origin; when append is set and none is,
 * appends the origin with default settings (the spare slot parsers reserve). */
void spec_mark_origin(struct spec_ctx *c, struct spec_registry *r, bool append);

/* Records an error at n when endpoint i repeats the URL of an earlier one. */
void spec_check_duplicate_endpoint(struct spec_ctx *c, const struct spec_registry *r, size_t i,
                                   const yaml_node_t *n, const char *path);

/* ---- the two forms' parsers (called by spec.c only) ------------------------- */

/* The top-level keys of the layerd form: a document with any of them is that
 * form (spec.c), and no other key may appear beside them. */
#define SPEC_LAYERD_TOP_KEYS 5
extern const char *const spec_layerd_top_keys[SPEC_LAYERD_TOP_KEYS];

/* The layerd form (spec-layerd.c) and the Helm-values form (spec-helm.c):
 * each fills c->spec from root (a mapping) and ends with spec_finish(),
 * recording every problem in c->errors. */
void spec_parse_layerd(struct spec_ctx *c, const yaml_node_t *root);
void spec_parse_helm(struct spec_ctx *c, const yaml_node_t *root);

/* ---- spec-model.c: freeing and lookups -------------------------------------- */

/* Free what a registry or an endpoint owns and zero it. */
void spec_registry_done(struct spec_registry *r);
void spec_endpoint_done(struct spec_endpoint *e);

/* ---- spec-version.c --------------------------------------------------------- */

/* "MAJOR.MINOR[.PATCH]" (each part 0..99) into major*10000 + minor*100 + patch; -EINVAL otherwise. */
int spec_version_code(const char *s, unsigned *ret);
