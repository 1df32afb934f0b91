/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the WWW-Authenticate parser (what an upstream, or anything
 * pretending to be one, sends). Besides "no crash, no leak": whatever parses
 * is written back in canonical form, which must parse to the same challenges. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fallback/challenge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Canonical form: scheme, then token68 or params as quoted strings. */
static char *render(const struct challenge_list *l) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f)
                abort();
        for (size_t i = 0; i < l->n; i++) {
                const struct challenge *c = &l->items[i];
                fprintf(f, "%s%s", i ? ", " : "", c->scheme);
                if (c->token68)
                        fprintf(f, " %s", c->token68);
                for (size_t j = 0; j < c->n_params; j++) {
                        fprintf(f, "%s%s=\"", j ? "," : " ", c->params[j].name);
                        for (const char *v = c->params[j].value; *v; v++) {
                                if (*v == '"' || *v == '\\')
                                        fputc('\\', f);
                                fputc(*v, f);
                        }
                        fputc('"', f);
                }
        }
        fclose(f);
        return out;
}

static bool same(const struct challenge_list *a, const struct challenge_list *b) {
        if (a->n != b->n)
                return false;
        for (size_t i = 0; i < a->n; i++) {
                const struct challenge *x = &a->items[i], *y = &b->items[i];
                if (strcmp(x->scheme, y->scheme) != 0 || !x->token68 != !y->token68 ||
                    (x->token68 && strcmp(x->token68, y->token68) != 0) || x->n_params != y->n_params)
                        return false;
                for (size_t j = 0; j < x->n_params; j++)
                        if (strcmp(x->params[j].name, y->params[j].name) != 0 ||
                            strcmp(x->params[j].value, y->params[j].value) != 0)
                                return false;
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > CHALLENGE_HEADER_MAX + 16)
                return 0;
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        struct challenge_list l, again;
        if (challenge_parse(s, &l) == 0) {
                char *text = render(&l);
                /* Escaping can make the text longer than the limit: only compare when it fits. */
                if (strlen(text) <= CHALLENGE_HEADER_MAX) {
                        if (challenge_parse(text, &again) != 0) {
                                fprintf(stderr, "canonical form does not parse: %s\n", text);
                                abort();
                        }
                        if (!same(&l, &again)) {
                                fprintf(stderr, "canonical form parses differently: %s\n", text);
                                abort();
                        }
                        challenge_list_done(&again);
                }
                free(text);
                challenge_list_done(&l);
        }
        free(s);
        return 0;
}
