/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the docker config.json reader (a file an operator or a
 * Kubernetes secret provides). Besides "no crash, no leak": every refusal
 * comes with an error message, and an entry that parsed has a non-empty user
 * and a password, or a non-empty identity token (and no password). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fallback/credentials.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const hosts[] = { "registry.example.com", "docker.io", "127.0.0.1:5000" };
        if (size > 64 * 1024)
                return 0;
        for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
                struct error_list errors;
                struct credentials *c = NULL;
                error_list_init(&errors, "config.json");
                int r = credentials_parse((const char *) data, size, hosts[i], &c, &errors);
                if (r == 0 && c) {
                        bool pair = c->user && c->user[0] && c->password && !c->identity_token;
                        bool token = c->identity_token && c->identity_token[0] && !c->password &&
                                     (!c->user || c->user[0]);
                        if (!pair && !token)
                                abort();
                        free(c->user);
                        c->user = NULL;
                }
                if (r < 0 && errors.n == 0 && r != -ENOMEM)
                        abort(); /* every refusal says why */
                credentials_free(c);
        }
        return 0;
}
