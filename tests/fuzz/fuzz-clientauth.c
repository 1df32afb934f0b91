/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the client's Authorization header (agent/clientauth.c),
 * which any local client controls. Besides "no crash, no leak": a header that
 * parses gives a non-empty user without ':' and fields within their bounds, and
 * the same key for the same input; a refusal leaves the struct all zero (no
 * copy of a secret is kept). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/clientauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t salt[] = "fuzz";

static bool all_zero(const void *p, size_t n) {
        const uint8_t *b = p;
        for (size_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 2 * CLIENT_AUTH_HEADER_MAX)
                return 0;
        char *header = malloc(size + 1);
        if (!header)
                return 0;
        memcpy(header, data, size);
        header[size] = '\0'; /* MHD hands over a C string: what follows a NUL is not seen */
        struct client_auth a, b;
        int r = client_auth_parse(header, salt, sizeof(salt), &a);
        if (r == 0) {
                if (!a.set || !a.user[0] || strchr(a.user, ':') || strlen(a.user) > CLIENT_AUTH_FIELD_MAX ||
                    strlen(a.password) > CLIENT_AUTH_FIELD_MAX)
                        abort();
                if (client_auth_parse(header, salt, sizeof(salt), &b) != 0 || memcmp(a.key, b.key, sizeof(a.key)))
                        abort();
                client_auth_wipe(&b);
        } else if ((r != -ENOENT && r != -EINVAL && r != -ENOMEM) || !all_zero(&a, sizeof(a)))
                abort();
        client_auth_wipe(&a);
        free(header);
        return 0;
}
