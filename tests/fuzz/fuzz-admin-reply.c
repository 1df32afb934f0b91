/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the admin API's reply parser (agent/admin-wire.c), which
 * reads what comes back over the admin socket. Besides "no crash, no leak",
 * it checks what admin_remote() relies on: a parsed reply's output and errors
 * lie inside the input, end at its end, and its statuses are in range. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/admin-wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* An exact-size copy, so that ASan sees any read past the end. */
        char *copy = malloc(size ? size : 1);
        if (!copy)
                return 0;
        memcpy(copy, data, size);
        struct admin_reply r;
        if (admin_reply_parse(copy, size, &r) == 0) {
                if (r.status < 100 || r.status > 999 || r.exit_status < -1 || r.exit_status > 255 ||
                    r.out < copy || r.out + r.out_len != r.err || r.err + r.err_len != copy + size)
                        abort();
        }
        free(copy);
        return 0;
}
