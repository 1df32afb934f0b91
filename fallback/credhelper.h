/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The docker credential-helper protocol (docker-credential-ecr-login,
 * -gcr, -acr-env, ...): `<command> get`, the registry's server URL on stdin,
 * {"ServerURL", "Username", "Secret"} on stdout. Internal to fallback/. The
 * answer is a secret: wiped when freed (jansson's copies too, once
 * fallback_global_init() has run), never in a reason. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fallback/credentials.h"

#define CREDHELPER_OUTPUT_MAX (64u * 1024) /* an answer larger than this is not one */
#define CREDHELPER_REASON_MAX 160

/* The user name with which a helper says that Secret is an identity (OAuth2 refresh) token. */
#define CREDHELPER_TOKEN_USER "<token>"

/* Parses a helper's answer: credentials with user and password, or (user
 * "<token>") an identity token. Returns 0 with *ret, or -EBADMSG with the
 * reason (never quoting the input) in reason. */
int credhelper_parse(const char *data, size_t size, struct credentials **ret, char *reason, size_t rsize);

/* Runs `command get` (no shell, in a process group of its own, with only
 * PATH=/usr/local/bin:/usr/bin:/bin and HOME=/ in its environment), host's
 * server URL on stdin, killed with its group past timeout_ms or once
 * cancelled(userdata) says so (NULL: never); reaped.
 * Returns 0 with *ret, or -errno with reason: -ETIMEDOUT, -ECANCELED, -EFBIG (more than
 * CREDHELPER_OUTPUT_MAX), -EBADMSG (not an answer), -ENOKEY (exited
 * non-zero: no credentials), -ENOENT/-EACCES (cannot run command). */
int credhelper_get(const char *command, const char *host, uint64_t timeout_ms, bool (*cancelled)(void *userdata),
                   void *userdata, struct credentials **ret, char *reason, size_t rsize);

/* The server URL docker gives a helper for host: "https://index.docker.io/v1/" for Docker Hub's names, else host. */
const char *credhelper_server_url(const char *host);
