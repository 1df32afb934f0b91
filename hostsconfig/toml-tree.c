/* SPDX-License-Identifier: Apache-2.0 */
/* The tree of toml.h: freeing it, growing it, looking things up in it.
 * Split from the parser (toml.c), which builds it. */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/macro.h"
#include "hostsconfig/toml-internal.h"

const char *toml_type_to_string(enum toml_type type) {
        static const char *const names[_TOML_TYPE_MAX] = {
                [TOML_STRING] = "string", [TOML_INTEGER] = "integer", [TOML_FLOAT] = "float",
                [TOML_BOOLEAN] = "boolean", [TOML_ARRAY] = "array",   [TOML_TABLE] = "table",
        };
        return type < _TOML_TYPE_MAX ? names[type] : "unknown";
}

struct toml_table *toml_table_free(struct toml_table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n; i++) {
                free(t->pairs[i].key);
                toml_value_done(&t->pairs[i].value);
        }
        free(t->pairs);
        return mfree(t);
}

struct toml_array *toml_array_free(struct toml_array *a) {
        if (!a)
                return NULL;
        for (size_t i = 0; i < a->n; i++)
                toml_value_done(&a->items[i]);
        free(a->items);
        return mfree(a);
}

void toml_value_done(struct toml_value *v) {
        switch (v->type) {
        case TOML_STRING:
                free(v->string);
                break;
        case TOML_ARRAY:
                toml_array_free(v->array);
                break;
        case TOML_TABLE:
                toml_table_free(v->table);
                break;
        default:
                break;
        }
        v->type = TOML_BOOLEAN; /* owns nothing now */
}

struct toml_pair *toml_table_find(const struct toml_table *t, const char *key) {
        for (size_t i = 0; i < t->n; i++)
                if (strcmp(t->pairs[i].key, key) == 0)
                        return &t->pairs[i];
        return NULL;
}

int toml_array_append(struct toml_array *a, struct toml_value *v) {
        int r = ARRAY_RESERVE(a->items, &a->cap, a->n + 1, TOML_SLOTS_MIN, SIZE_MAX);
        if (r < 0)
                return r;
        a->items[a->n++] = *v;
        v->type = TOML_BOOLEAN;
        return 0;
}

const struct toml_value *toml_table_get(const struct toml_table *t, const char *key) {
        const struct toml_pair *pair = t ? toml_table_find(t, key) : NULL;
        return pair ? &pair->value : NULL;
}

const struct toml_value *toml_get_path(const struct toml_table *t, const char *const *parts, size_t n) {
        const struct toml_value *v = NULL;
        for (size_t i = 0; i < n; i++) {
                if (i > 0) {
                        if (v->type != TOML_TABLE)
                                return NULL;
                        t = v->table;
                }
                v = toml_table_get(t, parts[i]);
                if (!v)
                        return NULL;
        }
        return v;
}
