/* SPDX-License-Identifier: Apache-2.0 */
/* Tag versions and version ranges for the prefetch tag filter. The range
 * grammar and meaning follow npm's node-semver (what operators know from
 * Helm charts and Renovate): a partial version means every version it
 * covers ("1.2" is >=1.2.0 <1.3.0), ~ allows patch (or minor, given only a
 * major) updates, ^ allows everything left of the first non-zero part. */
#include "common/semver.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#define SEMVER_NUMBER_MAX UINT64_C(999999999999) /* 12 digits: no overflow in comparisons */

/* Decimal digits at *p into *ret; advances p. false when none or too many. */
static bool number(const char **p, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;
        while (isdigit((unsigned char) *s)) {
                if (s - *p >= 12)
                        return false;
                v = v * 10 + (uint64_t) (*s++ - '0');
        }
        if (s == *p || v > SEMVER_NUMBER_MAX)
                return false;
        *p = s;
        *ret = v;
        return true;
}

int semver_parse(const char *tag, struct semver *ret) {
        struct semver v = {};
        const char *p = tag;
        uint64_t *part[3] = { &v.major, &v.minor, &v.patch };
        if (!p)
                return -EINVAL;
        if (*p == 'v')
                p++;
        for (;;) {
                if (!number(&p, part[v.parts]))
                        return -EINVAL;
                v.parts++;
                if (*p != '.' || v.parts == 3)
                        break;
                p++;
        }
        if (*p == '-' && v.parts == 3) {
                /* Only a full version has a prerelease (semver.org 9): "2024-06-01" is a date, not 2024-"06-01". */
                size_t len = strlen(++p);
                if (len == 0 || len >= sizeof(v.pre) || strspn(p, "0123456789abcdefghijklmnopqrstuvwxyz"
                                                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-") != len)
                        return -EINVAL;
                memcpy(v.pre, p, len + 1);
                p += len;
        }
        if (*p != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

static int cmp_u64(uint64_t a, uint64_t b) {
        return a < b ? -1 : a > b;
}

static int cmp_triple(const struct semver *a, const struct semver *b) {
        int c = cmp_u64(a->major, b->major);
        if (c == 0)
                c = cmp_u64(a->minor, b->minor);
        if (c == 0)
                c = cmp_u64(a->patch, b->patch);
        return c;
}

/* One dot-separated prerelease identifier against another (length-bounded). */
static int cmp_identifier(const char *a, size_t la, const char *b, size_t lb) {
        bool na = la > 0 && strspn(a, "0123456789") >= la, nb = lb > 0 && strspn(b, "0123456789") >= lb;
        if (na && nb) {
                /* Numerically: the longer one (without leading zeros) is larger. */
                while (la > 1 && *a == '0')
                        a++, la--;
                while (lb > 1 && *b == '0')
                        b++, lb--;
                if (la != lb)
                        return la < lb ? -1 : 1;
                return memcmp(a, b, la) < 0 ? -1 : memcmp(a, b, la) > 0;
        }
        if (na != nb)
                return na ? -1 : 1;
        int c = memcmp(a, b, la < lb ? la : lb);
        if (c != 0)
                return c < 0 ? -1 : 1;
        return cmp_u64(la, lb);
}

int semver_compare(const struct semver *a, const struct semver *b) {
        int c = cmp_triple(a, b);
        if (c != 0)
                return c;
        if (!a->pre[0] || !b->pre[0])
                return a->pre[0] ? -1 : b->pre[0] ? 1 : 0; /* a release is above its prereleases */
        const char *pa = a->pre, *pb = b->pre;
        for (;;) {
                size_t la = strcspn(pa, "."), lb = strcspn(pb, ".");
                c = cmp_identifier(pa, la, pb, lb);
                if (c != 0)
                        return c;
                pa += la;
                pb += lb;
                if (!*pa || !*pb)
                        return *pa ? 1 : *pb ? -1 : 0; /* more identifiers: higher */
                pa++;
                pb++;
        }
}

enum op { OP_EQ, OP_GT, OP_GE, OP_LT, OP_LE, OP_TILDE, OP_CARET };

/* One comparator at *p (advanced past it): op, the version's given parts
 * (k: how many before the first wildcard or the end). false when malformed. */
static bool comparator(const char **p, enum op *ret_op, struct semver *ret_v, unsigned *ret_k) {
        const char *s = *p;
        enum op op = OP_EQ;
        if (s[0] == '>' && s[1] == '=')
                op = OP_GE, s += 2;
        else if (s[0] == '<' && s[1] == '=')
                op = OP_LE, s += 2;
        else if (*s == '>')
                op = OP_GT, s++;
        else if (*s == '<')
                op = OP_LT, s++;
        else if (*s == '=')
                s++;
        else if (*s == '~')
                op = OP_TILDE, s++;
        else if (*s == '^')
                op = OP_CARET, s++;
        if (*s == 'v')
                s++;
        struct semver v = {};
        uint64_t *part[3] = { &v.major, &v.minor, &v.patch };
        unsigned k = 0;
        bool wild = false;
        for (unsigned i = 0; i < 3; i++) {
                if (*s == 'x' || *s == 'X' || *s == '*') {
                        s++;
                        wild = true;
                } else if (wild || !number(&s, part[i]))
                        return false; /* "1.x.3": nothing after a wildcard but wildcards */
                else
                        k++;
                if (*s != '.')
                        break;
                if (i == 2)
                        return false;
                s++;
        }
        if (*s != ' ' && *s != '\0' && !(s[0] == '|' && s[1] == '|'))
                return false;
        *p = s;
        *ret_op = op;
        *ret_v = v;
        *ret_k = k;
        return true;
}

/* The first version past what the first k parts of x cover ("1.2" -> 1.3.0). */
static struct semver bump(const struct semver *x, unsigned k) {
        struct semver n = { .major = x->major, .minor = x->minor, .patch = x->patch };
        if (k <= 1)
                n = (struct semver) { .major = x->major + 1 };
        else if (k == 2)
                n = (struct semver) { .major = x->major, .minor = x->minor + 1 };
        else
                n.patch++;
        return n;
}

static bool holds(enum op op, const struct semver *x, unsigned k, const struct semver *v) {
        if (k == 0)
                return true; /* "*", "x", ">=x": any version */
        int lo = cmp_triple(v, x);
        struct semver up = bump(x, k);
        int hi = cmp_triple(v, &up);
        switch (op) {
        case OP_EQ:
                return k == 3 ? lo == 0 : lo >= 0 && hi < 0;
        case OP_GT:
                return k == 3 ? lo > 0 : hi >= 0;
        case OP_GE:
                return lo >= 0;
        case OP_LT:
                return lo < 0;
        case OP_LE:
                return k == 3 ? lo <= 0 : hi < 0;
        case OP_TILDE:
                /* ~1.2.3 and ~1.2: patch updates; ~1: minor updates. */
                up = bump(x, k >= 2 ? 2 : 1);
                return lo >= 0 && cmp_triple(v, &up) < 0;
        case OP_CARET:
                /* Everything left of the first non-zero given part stays. */
                up = x->major > 0 || k == 1 ? bump(x, 1) : x->minor > 0 || k == 2 ? bump(x, 2) : bump(x, 3);
                return lo >= 0 && cmp_triple(v, &up) < 0;
        }
        return false;
}

/* Walks the range; with v, whether v satisfies it; without, whether it is valid. */
static bool walk(const char *range, const struct semver *v) {
        const char *p = range;
        size_t comparators = 0;
        bool all = true, any = false;
        if (!p)
                return false;
        for (;;) {
                while (*p == ' ')
                        p++;
                if (*p == '\0' || (p[0] == '|' && p[1] == '|')) {
                        if (comparators == 0)
                                return false; /* an empty alternative */
                        any = any || all;
                        if (*p == '\0')
                                break;
                        p += 2;
                        comparators = 0;
                        all = true;
                        continue;
                }
                enum op op;
                struct semver x;
                unsigned k;
                if (!comparator(&p, &op, &x, &k))
                        return false;
                comparators++;
                if (v)
                        all = all && holds(op, &x, k, v);
        }
        return v ? any : true;
}

bool semver_range_is_valid(const char *range) {
        return walk(range, NULL);
}

bool semver_range_match(const char *range, const struct semver *v) {
        if (!v || v->pre[0] || !walk(range, NULL))
                return false;
        return walk(range, v);
}
