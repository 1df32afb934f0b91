/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Registry credentials from a docker config.json ("auths" section), the
 * format `docker login`, `podman login` and Kubernetes dockerconfigjson
 * secrets use. Internal to fallback/. The secrets are wiped when freed and
 * never appear in an error message. */

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

#define CREDENTIALS_FILE_MAX (1024 * 1024)

struct credentials {
        char *user;     /* may be NULL with an identity token */
        char *password; /* NULL with an identity token */
        /* An OAuth2 refresh token ("identitytoken", or a credential helper's
         * Secret for the user "<token>"): traded at the token realm for access
         * tokens (fallback/token.c), never sent as a password to a registry. */
        char *identity_token;
};

/* Reads file and picks the entry for host ("host" or "host:port", lower
 * case). Keys may be written as "host", "https://host", "https://host/v1/";
 * Docker Hub's names (docker.io, index.docker.io, registry-1.docker.io) all
 * match one another. An entry with an "identitytoken" gives that token (and
 * the user name, if any) and no password. Returns 0 with *ret set (or NULL when the file has no
 * entry for host), or -EINVAL/-errno with the reason in errors. */
int credentials_load(const char *file, const char *host, struct credentials **ret, struct error_list *errors);

/* Parses config.json text (for tests and the fuzz target); see credentials_load. */
int credentials_parse(const char *data, size_t size, const char *host, struct credentials **ret, struct error_list *errors);

/* Whether h (len bytes) names Docker Hub: docker.io, index.docker.io or
 * registry-1.docker.io, in any case. */
bool credentials_is_docker_hub(const char *h, size_t len);

struct credentials *credentials_free(struct credentials *c);

/* A deep copy (NULL for NULL, and on -ENOMEM: check c). */
struct credentials *credentials_dup(const struct credentials *c);

/* Whether a and b (either may be NULL) hold the same secrets. */
bool credentials_equal(const struct credentials *a, const struct credentials *b);

/* Whether c can answer a Basic challenge (a user and a password, not an identity token). */
static inline bool credentials_have_password(const struct credentials *c) {
        return c && c->user && c->password;
}

static inline void credentials_freep(struct credentials **c) {
        credentials_free(*c);
}
