/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Registry credentials from a docker config.json ("auths" section), the
 * format `docker login`, `podman login` and Kubernetes dockerconfigjson
 * secrets use. Internal to fallback/. The secrets are wiped when freed and
 * never appear in an error message. */

#include <stddef.h>

#include "common/error.h"

#define CREDENTIALS_FILE_MAX (1024 * 1024)

struct credentials {
        char *user;
        char *password;
};

/* Reads file and picks the entry for host ("host" or "host:port", lower
 * case). Keys may be written as "host", "https://host", "https://host/v1/";
 * Docker Hub's names (docker.io, index.docker.io, registry-1.docker.io) all
 * match one another. Returns 0 with *ret set (or NULL when the file has no
 * entry for host), or -EINVAL/-errno with the reason in errors. */
int credentials_load(const char *file, const char *host, struct credentials **ret, struct error_list *errors);

/* Parses config.json text (for tests and the fuzz target); see credentials_load. */
int credentials_parse(const char *data, size_t size, const char *host, struct credentials **ret, struct error_list *errors);

struct credentials *credentials_free(struct credentials *c);

static inline void credentials_freep(struct credentials **c) {
        credentials_free(*c);
}
