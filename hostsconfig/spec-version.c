/* SPDX-License-Identifier: Apache-2.0 */
/* hosts.containerd_version: the version grammar of the spec, how containerd
 * spells its own version, and "auto" filled in once the agent has asked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostsconfig/spec-internal.h"
#include "hostsconfig/spec.h"

#define PART_MAX 99 /* two decimal digits per part in the code */

/* A decimal part of at most two digits at *p (advanced); false if there is none or it is over PART_MAX. */
static bool part(const char **p, unsigned *ret) {
        const char *s = *p;
        unsigned v = 0;
        while (*s >= '0' && *s <= '9') {
                if (s - *p >= 2)
                        return false;
                v = v * 10 + (unsigned) (*s++ - '0');
        }
        if (s == *p || v > PART_MAX)
                return false;
        *p = s;
        *ret = v;
        return true;
}

/* Two or three dot-separated parts at *p (advanced past them). */
static bool parts(const char **p, unsigned v[3]) {
        const char *s = *p;
        v[0] = v[1] = v[2] = 0;
        for (unsigned n = 0;; n++) {
                if (!part(&s, &v[n]))
                        return false;
                if (*s != '.' || n == 2) {
                        if (n == 0)
                                return false;
                        *p = s;
                        return true;
                }
                s++;
        }
}

int spec_version_code(const char *s, unsigned *ret) {
        unsigned v[3];
        if (!s || !parts(&s, v) || *s != '\0')
                return -EINVAL;
        *ret = v[0] * 10000 + v[1] * 100 + v[2];
        return 0;
}

int spec_containerd_version_normalize(const char *text, char ret[SPEC_CONTAINERD_VERSION_MAX], unsigned *ret_code) {
        static const char space[] = " \t\r\n";
        if (!text)
                return -EINVAL;
        for (const char *w = text + strspn(text, space); *w; w += strcspn(w, space), w += strspn(w, space)) {
                const char *p = w + (*w == 'v');
                unsigned v[3];
                /* After the numbers only a word's end or a suffix: Debian's "~ds1", a
                 * package revision "-0ubuntu1", a prerelease "-rc.1", build metadata "+x".
                 * The prerelease of a version counts as the version: it reads the same keys. */
                if (!parts(&p, v) || (*p != '\0' && !strchr(space, *p) && !strchr("~-+", *p)))
                        continue;
                snprintf(ret, SPEC_CONTAINERD_VERSION_MAX, "%u.%u.%u", v[0], v[1], v[2]);
                *ret_code = v[0] * 10000 + v[1] * 100 + v[2];
                return 0;
        }
        return -EINVAL;
}

int spec_set_containerd_version(struct spec *s, const char *version) {
        unsigned code;
        if (!s->hosts.containerd_version_auto)
                return -EEXIST;
        if (spec_version_code(version, &code) < 0)
                return -EINVAL;
        char *v = strdup(version);
        if (!v)
                return -ENOMEM;
        free(s->hosts.containerd_version);
        s->hosts.containerd_version = v;
        s->hosts.containerd_version_code = code;
        return 0;
}

unsigned spec_containerd_version_code(const struct spec *s) {
        return s->hosts.containerd_version_code ? s->hosts.containerd_version_code
                                                : SPEC_CONTAINERD_VERSION_FALLBACK_CODE;
}
