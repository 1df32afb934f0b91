/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for a docker credential helper's answer (semi-trusted: a
 * program the operator named, but one that may print anything). Besides "no
 * crash, no leak": an accepted answer is a user and a password, or an
 * identity token, none with a line break; a refusal never quotes the input. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fallback/credhelper.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > CREDHELPER_OUTPUT_MAX)
                return 0;
        struct credentials *c = NULL;
        char reason[CREDHELPER_REASON_MAX] = "";
        int r = credhelper_parse((const char *) data, size, &c, reason, sizeof(reason));
        if (r == 0) {
                bool pair = c->user && c->password && !c->identity_token;
                bool token = !c->user && !c->password && c->identity_token;
                if (!pair && !token)
                        abort();
                const char *fields[] = { c->user, c->password, c->identity_token };
                for (size_t i = 0; i < 3; i++)
                        if (fields[i] && (!fields[i][0] || strpbrk(fields[i], "\r\n")))
                                abort();
                credentials_free(c);
        } else if (r == -EBADMSG) {
                /* Only our two fixed sentences. */
                if (strcmp(reason, "answer is not a JSON object") != 0 &&
                    strcmp(reason, "answer has no usable Username and Secret") != 0)
                        abort();
        } else if (r != -ENOMEM)
                abort();
        return 0;
}
