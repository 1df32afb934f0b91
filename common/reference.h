/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Image references and repository names per the OCI distribution spec grammar
 * (the one distribution/reference implements), with Docker Hub's familiar
 * short forms normalised: "nginx" is "docker.io/library/nginx:latest". */

#include <stdbool.h>
#include <stddef.h>

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

/* The path component that names registry (host[:port], as a spec or an ns=
 * names it) in a namespaced mirror path "/v2/<component>/<repository>/...":
 * the name in lower case with each ':' written '_', an IPv6 address without
 * brackets and written out in all eight groups ("ghcr.io", "127.0.0.1_5000",
 * "fd00_0_0_0_0_0_0_1_5000"). A valid path component that no other registry
 * gives (host names have no '_'; the count of '_' tells the forms apart).
 * Returns 0; -EINVAL when registry is no host[:port], or is a name that
 * reference_parse() reads as a Docker Hub namespace (no '.', no port, not
 * "localhost"), which a repository of another registry may begin with;
 * -ENAMETOOLONG when it does not fit size bytes; -ENOMEM. */
int reference_registry_namespace(const char *registry, char *buf, size_t size);

/* Parses "[domain/]path[:tag][@digest]". A first component without '.' or ':'
 * (and not "localhost") is a Docker Hub path; single-component Docker Hub paths
 * get "library/". When want_tag is true and neither tag nor digest is given,
 * the tag is "latest"; when false, a tag or digest is an error (a repository).
 * On failure *ret_reason names the problem. */
int reference_parse(const char *s, bool want_tag, struct reference *ret, const char **ret_reason);
void reference_done(struct reference *r);

/* "domain/path[:tag][@digest]"; NULL on allocation failure. */
char *reference_to_string(const struct reference *r);
