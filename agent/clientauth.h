/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A client's registry credentials, from its Authorization header, for
 * pass-through to the origin (agent/http.c). containerd answers a mirror's
 * Basic challenge with "Authorization: Basic base64(user:password)" of the
 * pull's credentials (docs/agent.md); nothing else is taken. The secrets live
 * in the struct only and are wiped with client_auth_wipe(). Pure: no I/O. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLIENT_AUTH_HEADER_MAX 4096 /* a longer header is no credentials: no registry password is that long */
#define CLIENT_AUTH_FIELD_MAX 1024  /* user or password, bytes */
#define CLIENT_AUTH_KEY_SIZE 32     /* a SHA-256 */

struct client_auth {
        bool set;
        char user[CLIENT_AUTH_FIELD_MAX + 1];
        char password[CLIENT_AUTH_FIELD_MAX + 1];
        /* Names the credentials without holding them: SHA-256 of a per-process salt,
         * the user and the password. What verdicts are kept under. */
        uint8_t key[CLIENT_AUTH_KEY_SIZE];
};

/* Parses header (NULL: none). "Basic <base64 of user:password>", the scheme in
 * any case, padding required: 0 with *ret set and its key made from salt
 * (salt_size bytes); -ENOENT for no header or another scheme (Bearer, ...),
 * -EINVAL for a malformed or oversized one (both mean "no credentials": the
 * client is challenged). *ret is wiped and left unset on failure. */
int client_auth_parse(const char *header, const uint8_t *salt, size_t salt_size, struct client_auth *ret);

/* The key of layerd's own credentials (the endpoint's identity, whatever it
 * is: anonymous, a credentials file, a helper), made from salt: what its
 * verdicts are kept under with auth_passthrough off. No client's key equals
 * it (a client's user is never empty). 0 or -ENOMEM. */
int client_auth_own_key(const uint8_t *salt, size_t salt_size, uint8_t ret[static CLIENT_AUTH_KEY_SIZE]);

/* Wipes every byte of *a. */
void client_auth_wipe(struct client_auth *a);
