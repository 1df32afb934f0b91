/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for what prefetch reads from registries and the spec: the
 * first byte picks the parser, the rest is its input.
 *  0: a semver range and a tag ("RANGE\nTAG"): a range that matches is valid,
 *     a tag that parses compares equal to itself;
 *  1: a Link header: a "last" found is never empty;
 *  2: a tags/list page;
 *  3: a manifest's descriptors: every digest found is valid. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/reference.h"
#include "common/semver.h"
#include "fallback/fallback.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 65536)
                return 0;
        char *s = malloc(size);
        if (!s)
                return 0;
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        switch (data[0] % 4) {
        case 0: {
                char *tag = strchr(s, '\n');
                struct semver v;
                if (tag)
                        *tag++ = '\0';
                if (tag && semver_parse(tag, &v) == 0) {
                        if (semver_compare(&v, &v) != 0)
                                abort();
                        if (semver_range_match(s, &v) && !semver_range_is_valid(s))
                                abort();
                }
                (void) semver_range_is_valid(s);
                break;
        }
        case 1: {
                char *last = NULL;
                if (fallback_link_next_last(s, &last) == 0 && (!last || !last[0]))
                        abort();
                free(last);
                break;
        }
        case 2: {
                char **tags = NULL;
                size_t n = 0;
                if (fallback_tags_parse(s, size - 1, &tags, &n) == 0)
                        fallback_strv_free(tags, n);
                break;
        }
        default: {
                struct fallback_manifest_refs m;
                if (fallback_manifest_refs(s, size - 1, &m) == 0) {
                        char ds[DIGEST_STRING_MAX];
                        for (size_t i = 0; i < m.n_items; i++)
                                if (!reference_digest_is_valid(digest_to_string(&m.items[i].digest, ds)))
                                        abort();
                        fallback_manifest_refs_done(&m);
                }
                break;
        }
        }
        free(s);
        return 0;
}
