/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the Range header parser (what any local client sends).
 * Besides "no crash": an accepted range lies inside the object and is not
 * empty, for several object sizes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint64_t sizes[] = { 0, 1, 100, UINT64_MAX };
        if (size > 4096)
                return 0;
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                uint64_t start, len;
                if (range_parse(s, sizes[i], &start, &len) == 0 &&
                    (len == 0 || start >= sizes[i] || len > sizes[i] - start))
                        abort();
        }
        free(s);
        return 0;
}
