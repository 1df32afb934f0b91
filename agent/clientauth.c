/* SPDX-License-Identifier: Apache-2.0 */
/* The client's Authorization header, Basic only (RFC 7617): what containerd
 * sends a mirror after its Basic challenge. Every copy of the secret is
 * wiped: the decoded buffer here, the struct by its owner. */
#include "agent/clientauth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base64.h"
#include "common/digest.h"
#include "common/macro.h"

void client_auth_wipe(struct client_auth *a) {
        explicit_bzero(a, sizeof(*a));
}

static int make_key(const uint8_t *salt, size_t salt_size, struct client_auth *a) {
        struct digest d;
        const char *user[] = { a->user };
        int r = digest_fields(salt, salt_size, user, 1, a->password, strlen(a->password), &d);
        if (r < 0)
                return r;
        memcpy(a->key, d.bytes, CLIENT_AUTH_KEY_SIZE);
        explicit_bzero(&d, sizeof(d));
        return 0;
}

int client_auth_own_key(const uint8_t *salt, size_t salt_size, uint8_t ret[static CLIENT_AUTH_KEY_SIZE]) {
        struct client_auth a = {}; /* user and password "": the salt and one NUL are hashed */
        int r = make_key(salt, salt_size, &a);
        if (r >= 0)
                memcpy(ret, a.key, CLIENT_AUTH_KEY_SIZE);
        return r;
}

int client_auth_parse(const char *header, const uint8_t *salt, size_t salt_size, struct client_auth *ret) {
        client_auth_wipe(ret);
        if (!header)
                return -ENOENT;
        size_t len = strnlen(header, CLIENT_AUTH_HEADER_MAX + 1);
        if (len > CLIENT_AUTH_HEADER_MAX)
                return -EINVAL;
        if (len < 6 || strncasecmp(header, "Basic", 5) != 0 || (header[5] != ' ' && header[5] != '\t'))
                return -ENOENT;
        const char *b64 = header + 6;
        while (*b64 == ' ' || *b64 == '\t')
                b64++;
        size_t n = strlen(b64);
        while (n > 0 && (b64[n - 1] == ' ' || b64[n - 1] == '\t'))
                n--;
        if (n == 0)
                return -EINVAL;
        char trimmed[CLIENT_AUTH_HEADER_MAX + 1];
        memcpy(trimmed, b64, n);
        trimmed[n] = '\0';
        char *plain = NULL;
        size_t size = 0;
        int r = base64_decode(trimmed, &plain, &size);
        explicit_bzero(trimmed, sizeof(trimmed));
        if (r < 0)
                return -EINVAL;
        char *colon = memchr(plain, ':', size);
        size_t ul = colon ? (size_t) (colon - plain) : 0, pl = colon ? size - ul - 1 : 0;
        /* A NUL inside would cut the secret short of what the client meant. */
        if (!colon || ul == 0 || ul > CLIENT_AUTH_FIELD_MAX || pl > CLIENT_AUTH_FIELD_MAX ||
            memchr(plain, '\0', size))
                r = -EINVAL;
        else {
                memcpy(ret->user, plain, ul);
                memcpy(ret->password, colon + 1, pl);
                r = make_key(salt, salt_size, ret);
        }
        explicit_bzero(plain, size);
        free(plain);
        if (r < 0) {
                client_auth_wipe(ret);
                return r == -ENOMEM ? r : -EINVAL;
        }
        ret->set = true;
        return 0;
}
