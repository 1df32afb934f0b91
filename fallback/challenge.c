/* SPDX-License-Identifier: Apache-2.0 */
/* A recursive-descent reading of RFC 9110's grammar:
 *
 *   WWW-Authenticate = #challenge
 *   challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param       = token BWS "=" BWS ( token / quoted-string )
 *
 * The comma separates both challenges and parameters; a new challenge starts
 * where a token is followed by whitespace and then not by '='. */
#include "fallback/challenge.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/macro.h"

static bool is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token68_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr("-._~+/", c));
}

static void skip_ows(const char **p) {
        while (**p == ' ' || **p == '\t')
                (*p)++;
}

/* Skips OWS and any empty list elements (",  ,"), as #rule allows. */
static void skip_list_sep(const char **p) {
        for (;;) {
                skip_ows(p);
                if (**p != ',')
                        return;
                (*p)++;
        }
}

static char *lower_dup(const char *s, size_t n) {
        char *d = strndup(s, n);
        for (char *q = d; d && *q; q++)
                if (*q >= 'A' && *q <= 'Z')
                        *q = (char) (*q - 'A' + 'a');
        return d;
}

/* A token at *p; its length, 0 when there is none. */
static size_t token_len(const char *p) {
        size_t n = 0;
        while (is_tchar(p[n]))
                n++;
        return n;
}

/* quoted-string at *p (which is '"'): the unescaped value, or NULL (-EINVAL/-ENOMEM in *err). */
static char *quoted(const char **p, int *err) {
        const char *q = *p + 1;
        size_t cap = strlen(q) + 1, n = 0;
        char *out = malloc(cap);
        if (!out) {
                *err = -ENOMEM;
                return NULL;
        }
        for (;;) {
                char c = *q++;
                if (c == '"')
                        break;
                if (c == '\\')
                        c = *q++; /* quoted-pair: the next character stands for itself */
                /* qdtext and quoted-pair allow no control characters but tab
                 * (and NUL is the end: unterminated). */
                if (c == '\0' || ((unsigned char) c < 0x20 && c != '\t') || c == 0x7f) {
                        free(out);
                        *err = -EINVAL;
                        return NULL;
                }
                out[n++] = c;
        }
        out[n] = '\0';
        *p = q;
        return out;
}

static int parse_params(const char **p, struct challenge *c) {
        for (;;) {
                const char *save = *p;
                skip_list_sep(p);
                size_t n = token_len(*p);
                if (n == 0)
                        return 0; /* end of input */
                const char *after = *p + n;
                const char *look = after;
                skip_ows(&look);
                if (*look != '=') {
                        /* Not a parameter: the next challenge's scheme. */
                        *p = save;
                        return 0;
                }
                if (c->n_params == CHALLENGE_PARAMS_MAX)
                        return -E2BIG;
                struct challenge_param *pr = &c->params[c->n_params];
                look++;
                skip_ows(&look);
                int err = 0;
                char *value;
                if (*look == '"') {
                        value = quoted(&look, &err);
                } else {
                        size_t vn = token_len(look);
                        if (vn == 0)
                                return -EINVAL;
                        value = strndup(look, vn);
                        err = value ? 0 : -ENOMEM;
                        look += vn;
                }
                if (!value)
                        return err;
                pr->name = lower_dup(*p, n);
                if (!pr->name) {
                        free(value);
                        return -ENOMEM;
                }
                pr->value = value;
                c->n_params++;
                *p = look;
                skip_ows(p);
                if (**p != ',' && **p != '\0')
                        return -EINVAL;
        }
}

int challenge_parse(const char *value, struct challenge_list *ret) {
        struct challenge_list l = {};
        const char *p = value;
        int r = 0;

        if (strlen(value) > CHALLENGE_HEADER_MAX)
                return -E2BIG;
        for (;;) {
                skip_list_sep(&p);
                if (*p == '\0')
                        break;
                size_t n = token_len(p);
                if (n == 0) {
                        r = -EINVAL;
                        goto out;
                }
                if (l.n == CHALLENGES_MAX) {
                        r = -E2BIG;
                        goto out;
                }
                struct challenge *c = &l.items[l.n++];
                c->scheme = lower_dup(p, n);
                if (!c->scheme) {
                        r = -ENOMEM;
                        goto out;
                }
                p += n;
                if (*p != ' ' && *p != '\t' && *p != ',' && *p != '\0') {
                        r = -EINVAL;
                        goto out;
                }
                skip_ows(&p);
                /* token68: characters of its set, optional '=' padding, then the end or a comma. */
                size_t t = 0;
                while (is_token68_char(p[t]))
                        t++;
                size_t pad = t;
                while (p[pad] == '=')
                        pad++;
                const char *after = p + pad;
                skip_ows(&after);
                if (t > 0 && (*after == ',' || *after == '\0') && (pad > t || token_len(p) != t || p[t] != '=')) {
                        c->token68 = strndup(p, pad);
                        if (!c->token68) {
                                r = -ENOMEM;
                                goto out;
                        }
                        p = after;
                        continue;
                }
                r = parse_params(&p, c);
                if (r < 0)
                        goto out;
        }
        if (l.n == 0) {
                r = -EINVAL;
                goto out;
        }
        *ret = l;
        return 0;
out:
        challenge_list_done(&l);
        return r;
}

void challenge_list_done(struct challenge_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].scheme);
                free(l->items[i].token68);
                for (size_t j = 0; j < l->items[i].n_params; j++) {
                        free(l->items[i].params[j].name);
                        free(l->items[i].params[j].value);
                }
        }
        *l = (struct challenge_list) {};
}

const char *challenge_param(const struct challenge *c, const char *name) {
        for (size_t i = 0; i < c->n_params; i++)
                if (strcasecmp(c->params[i].name, name) == 0)
                        return c->params[i].value;
        return NULL;
}

const struct challenge *challenge_find(const struct challenge_list *l, const char *scheme) {
        for (size_t i = 0; i < l->n; i++)
                if (strcasecmp(l->items[i].scheme, scheme) == 0)
                        return &l->items[i];
        return NULL;
}
