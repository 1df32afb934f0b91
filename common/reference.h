/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Image references and repository names per the OCI distribution spec grammar
 * (the one distribution/reference implements), with Docker Hub's familiar
 * short forms normalised: "nginx" is "docker.io/library/nginx:latest". */

#include <stdbool.h>

#define REFERENCE_NAME_MAX 255 /* domain + "/" + path, as in distribution/reference */

struct reference {
        char *domain; /* "docker.io", "registry.example.com:5000" */
        char *path;   /* "library/nginx" */
        char *tag;    /* NULL when absent (or when only a digest was given) */
        char *digest; /* "sha256:<64 hex>"; NULL when absent */
};

/* A repository path: components of [a-z0-9]+ joined by '.', '_', '__' or '-'+, separated by '/'. */
bool reference_path_is_valid(const char *path);

/* "sha256:<64 lower hex>" or "sha512:<128 lower hex>": the algorithms layerd can verify. */
bool reference_digest_is_valid(const char *digest);

/* A tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. */
bool reference_tag_is_valid(const char *tag);

/* Parses "[domain/]path[:tag][@digest]". A first component without '.' or ':'
 * (and not "localhost") is a Docker Hub path; single-component Docker Hub paths
 * get "library/". When want_tag is true and neither tag nor digest is given,
 * the tag is "latest"; when false, a tag or digest is an error (a repository).
 * On failure *ret_reason names the problem. */
int reference_parse(const char *s, bool want_tag, struct reference *ret, const char **ret_reason);
void reference_done(struct reference *r);

/* "domain/path[:tag][@digest]"; NULL on allocation failure. */
char *reference_to_string(const struct reference *r);
