/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the referrers index a registry sends (fallback/referrers.c):
 * the first line is an artifactType, the rest the index. Whatever parses has
 * valid digests and media types; its filtered form parses again, holds only
 * descriptors of that artifactType, and no more of them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/reference.h"
#include "fallback/fallback.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 256 * 1024)
                return 0;
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        char *body = memchr(s, '\n', size);
        const char *type = "application/vnd.dev.cosign.artifact.sig.v1+json";
        size_t len = size;
        if (body) {
                *body++ = '\0';
                type = s;
                len = size - (size_t) (body - s);
        } else
                body = s;
        struct fallback_referrers r;
        if (fallback_referrers_parse(body, len, &r) == 0) {
                char ds[DIGEST_STRING_MAX];
                for (size_t i = 0; i < r.n; i++)
                        if (!reference_digest_is_valid(digest_to_string(&r.items[i].digest, ds)) ||
                            !r.items[i].media_type[0] || r.items[i].size < 0)
                                abort();
                char *out = NULL;
                size_t out_size = 0;
                struct fallback_referrers f;
                if (fallback_referrers_filter(body, len, type, &out, &out_size) == 0) {
                        if (fallback_referrers_parse(out, out_size, &f) != 0 || f.n > r.n)
                                abort();
                        for (size_t i = 0; i < f.n; i++)
                                if (!f.items[i].artifact_type || strcmp(f.items[i].artifact_type, type) != 0)
                                        abort();
                        fallback_referrers_done(&f);
                        free(out);
                }
                fallback_referrers_done(&r);
        } else if (fallback_referrers_filter(body, len, type, &(char *) { NULL }, &(size_t) { 0 }) == 0)
                abort(); /* what does not parse is not filtered either */
        free(s);
        return 0;
}
