/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for a token endpoint's answer (untrusted: any realm a registry
 * names). Besides "no crash, no leak": an accepted answer has a token that
 * can go in a header line, a lifetime within a day, and a refresh token, if
 * any, that can go in a form. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fallback/fallback-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > FALLBACK_TOKEN_MAX)
                return 0;
        char *token = NULL, *refresh = NULL;
        uint64_t ttl = 0;
        char reason[128];
        int r = fallback_token_parse(data, size, &token, &ttl, &refresh, reason, sizeof(reason));
        if (r == 0) {
                if (!token || !token[0] || strpbrk(token, "\r\n ") || ttl == 0 || ttl > 86400ULL * 1000)
                        abort();
                if (refresh && (!refresh[0] || strpbrk(refresh, "\r\n")))
                        abort();
                free(token);
                free(refresh);
        } else if (r != -EPROTO && r != -ENOMEM)
                abort();
        return 0;
}
