/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the TOML-subset parser and the containerd config.toml
 * analysis on top of it. Besides "no crash, no leak": a TOML error always
 * carries a position (only the size cap has none), the analysis fails exactly
 * where the TOML does with the same first error, and a tree that parses has
 * no container deeper than TOML_DEPTH_MAX. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostsconfig/containerd-config.h"
#include "hostsconfig/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_table(const struct toml_table *t, unsigned depth);

static void check_value(const struct toml_value *v, unsigned depth) {
        if (v->line == 0 || v->column == 0)
                abort();
        if (v->type == TOML_STRING && !v->string)
                abort();
        if (v->type == TOML_ARRAY) {
                if (v->array->depth != depth || depth > TOML_DEPTH_MAX)
                        abort();
                for (size_t i = 0; i < v->array->n; i++)
                        check_value(&v->array->items[i], depth + 1);
        }
        if (v->type == TOML_TABLE)
                check_table(v->table, depth);
}

static void check_table(const struct toml_table *t, unsigned depth) {
        if (t->depth != depth || depth > TOML_DEPTH_MAX || t->n > TOML_TABLE_KEYS_MAX)
                abort();
        for (size_t i = 0; i < t->n; i++) {
                if (!t->pairs[i].key)
                        abort();
                check_value(&t->pairs[i].value, depth + 1);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct toml_table *t = NULL;
        struct hosts_containerd_config *c = NULL;
        struct error_list toml_errors, errors;
        char buf[1024];

        int r = toml_parse("fuzz.toml", (const char *) data, size, &t, &toml_errors);
        int r2 = hosts_containerd_config_parse("fuzz.toml", (const char *) data, size, &c, &errors);
        if (r < 0) {
                if (toml_errors.n != 1 || (toml_errors.items[0].line == 0 && size <= TOML_FILE_MAX))
                        abort();
                const struct error *a = &errors.items[0], *b = &toml_errors.items[0];
                if (r2 >= 0 || errors.n != 1 || a->line != b->line || a->column != b->column ||
                    strcmp(a->message, b->message) != 0)
                        abort();
                if (error_list_format(&toml_errors, 0, buf, sizeof(buf)) < 0)
                        abort();
                return 0;
        }
        check_table(t, 0);
        toml_table_free(t);
        if (r2 < 0) {
                for (size_t i = 0; i < errors.n; i++)
                        if (errors.items[i].line == 0 || error_list_format(&errors, i, buf, sizeof(buf)) < 0)
                                abort();
                return 0;
        }
        if (c->version < 1 || c->version > 3 || !c->registry_table ||
            hosts_containerd_config_version_readers(c->version) <= 0)
                abort();
        if (c->config_path && (!c->config_path[0] || c->config_path_line == 0))
                abort();
        if (c->misplaced_table && (!c->misplaced_config_path || strcmp(c->misplaced_table, c->registry_table) == 0))
                abort();
        if (c->has_configs_tls && !c->has_configs)
                abort();
        hosts_containerd_config_free(c);
        return 0;
}
