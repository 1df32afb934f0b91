/* SPDX-License-Identifier: Apache-2.0 */
/* Which tags of a repository a prefetch entry keeps warm. Zot's sync
 * `content` filter is the model (a regex and/or a semver range); "newest N"
 * needs an order, and registries list tags lexically (distribution) or in
 * push order (others), neither of which is "newest". So: tags that are
 * versions order by version precedence, highest first; tags that are not
 * versions come after them, in reverse lexical order (date-stamped tags like
 * "2024-05-01" then still come newest first). A semver filter admits only
 * version tags, and no prereleases (see common/semver.h). */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/reference.h"
#include "common/semver.h"
#include "hostsconfig/spec.h"

struct cand {
        const char *tag;
        bool is_version;
        struct semver v;
};

static int cand_cmp(const void *a, const void *b) {
        const struct cand *x = a, *y = b;
        if (x->is_version != y->is_version)
                return x->is_version ? -1 : 1;
        if (x->is_version) {
                int c = semver_compare(&y->v, &x->v); /* highest first */
                if (c != 0)
                        return c;
                /* "1.2" and "1.2.0" are the same version: the fuller spelling first, then lexical. */
                if (x->v.parts != y->v.parts)
                        return x->v.parts > y->v.parts ? -1 : 1;
        }
        return strcmp(y->tag, x->tag);
}

int spec_prefetch_select_tags(const struct spec_prefetch_entry *e, char *const *tags, size_t n, size_t **ret_idx,
                              size_t *ret_n) {
        regex_t re;
        bool have_re = false;
        int r = 0;
        struct cand *c = calloc(n ? n : 1, sizeof(*c));
        size_t *idx = NULL, m = 0;
        if (!c)
                return -ENOMEM;
        if (e->tag_regex) {
                if (regcomp(&re, e->tag_regex, REG_EXTENDED | REG_NOSUB) != 0) {
                        free(c);
                        return -EINVAL;
                }
                have_re = true;
        }
        for (size_t i = 0; i < n; i++) {
                const char *t = tags[i];
                if (!t || !reference_tag_is_valid(t))
                        continue; /* a registry's list is input: only valid tags are ever asked for */
                bool dup = false;
                for (size_t j = 0; j < m && !dup; j++)
                        dup = strcmp(c[j].tag, t) == 0;
                if (dup)
                        continue;
                if (have_re && regexec(&re, t, 0, NULL, 0) != 0)
                        continue;
                struct cand k = { .tag = t };
                k.is_version = semver_parse(t, &k.v) == 0;
                if (e->tag_semver && !(k.is_version && semver_range_match(e->tag_semver, &k.v)))
                        continue;
                c[m++] = k;
        }
        if (have_re)
                regfree(&re);
        qsort(c, m, sizeof(*c), cand_cmp);
        if (e->newest && m > e->newest)
                m = e->newest;
        idx = calloc(m ? m : 1, sizeof(*idx));
        if (!idx) {
                r = -ENOMEM;
                goto out;
        }
        /* Back to indices into tags (pointers are unique per element). */
        for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < n; j++)
                        if (tags[j] == c[i].tag) {
                                idx[i] = j;
                                break;
                        }
        *ret_idx = idx;
        *ret_n = m;
out:
        free(c);
        return r;
}

/* os, arch and variant of "os/arch[/variant]", with containerd's default variants. */
static bool platform_split(const char *s, char os[64], char arch[64], char variant[64]) {
        os[0] = arch[0] = variant[0] = '\0';
        if (!s || sscanf(s, "%63[^/]/%63[^/]/%63s", os, arch, variant) < 2)
                return false;
        if (strcmp(arch, "arm64") == 0 && !variant[0])
                snprintf(variant, 64, "v8");
        if (strcmp(arch, "arm") == 0 && !variant[0])
                snprintf(variant, 64, "v7");
        return true;
}

bool spec_platform_match(const char *want, const char *have) {
        char wo[64], wa[64], wv[64], ho[64], ha[64], hv[64];
        if (!platform_split(want, wo, wa, wv) || !platform_split(have, ho, ha, hv))
                return false;
        if (strcmp(wo, ho) != 0 || strcmp(wa, ha) != 0)
                return false;
        /* No variant asked for (amd64): any; one asked for: that one. */
        return !wv[0] || strcmp(wv, hv) == 0;
}
