/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base64.h"

#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

int base64_decode(const char *s, char **ret, size_t *ret_size) {
        size_t len = strlen(s);
        if (len % 4 != 0 || len > INT_MAX)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                          c == '/' || (c == '=' && i >= len - 2 && (i == len - 1 || s[len - 1] == '='));
                if (!ok)
                        return -EINVAL;
        }
        unsigned char *out = malloc(len / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        /* EVP_DecodeBlock counts padding as zero bytes: drop them from the size. */
        int n = len ? EVP_DecodeBlock(out, (const unsigned char *) s, (int) len) : 0;
        if (n < 0) {
                free(out);
                return -EINVAL;
        }
        if (len >= 1 && s[len - 1] == '=')
                n--;
        if (len >= 2 && s[len - 2] == '=')
                n--;
        out[n] = '\0';
        *ret = (char *) out;
        *ret_size = (size_t) n;
        return 0;
}

int base64_encode(const void *data, size_t size, char **ret) {
        if (size > (size_t) INT_MAX / 4 * 3 - 3)
                return -EINVAL;
        char *out = malloc((size + 2) / 3 * 4 + 1);
        if (!out)
                return -ENOMEM;
        (void) EVP_EncodeBlock((unsigned char *) out, data, (int) size);
        *ret = out;
        return 0;
}
