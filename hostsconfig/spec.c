/* SPDX-License-Identifier: Apache-2.0 */
/* Loading the cluster spec: libyaml reads one document, its top-level keys
 * say which form it is, and that form's parser (spec-layerd.c, spec-helm.c)
 * fills in the model. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "hostsconfig/spec-internal.h"

static const char *const helm_top_keys[] = { "global", "containerRegistries" };

/* Which form is it? Helm values when it has a Helm key and no layerd key. */
static bool is_helm(struct spec_ctx *c, const yaml_node_t *root, const yaml_node_t **ret_conflict,
                    const char **ret_layerd_key, const char **ret_helm_key) {
        const char *layerd_key = NULL, *helm_key = NULL;
        const yaml_node_t *conflict = NULL;
        for (const yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
                const yaml_node_t *k = spec_node(c, p->key);
                if (!k || k->type != YAML_SCALAR_NODE)
                        continue;
                const char *key = (const char *) k->data.scalar.value;
                for (size_t i = 0; i < ELEMENTSOF(spec_layerd_top_keys); i++)
                        if (strcmp(key, spec_layerd_top_keys[i]) == 0 && !layerd_key) {
                                layerd_key = spec_layerd_top_keys[i];
                                if (helm_key)
                                        conflict = k;
                        }
                for (size_t i = 0; i < ELEMENTSOF(helm_top_keys); i++)
                        if (strcmp(key, helm_top_keys[i]) == 0 && !helm_key) {
                                helm_key = helm_top_keys[i];
                                if (layerd_key)
                                        conflict = k;
                        }
        }
        *ret_conflict = conflict;
        *ret_layerd_key = layerd_key;
        *ret_helm_key = helm_key;
        return helm_key && !layerd_key;
}

static void parse_root(struct spec_ctx *c, const yaml_node_t *root) {
        if (!root) {
                error_list_add(c->errors, 0, 0, "empty file: expected a mapping with \"registries\"");
                return;
        }
        if (root->type != YAML_MAPPING_NODE) {
                spec_error(c, root, "", "expected a mapping at the top level, got %s", spec_node_kind(root));
                return;
        }
        const yaml_node_t *conflict;
        const char *lk, *hk;
        if (is_helm(c, root, &conflict, &lk, &hk)) {
                c->spec->format = SPEC_FORMAT_HELM;
                spec_parse_helm(c, root);
                return;
        }
        if (conflict) {
                spec_error(c, conflict, "", "mixes layerd keys (\"%s\") with Helm values keys (\"%s\"): use one form",
                           lk, hk);
                return;
        }
        spec_parse_layerd(c, root);
}

/* ---- loading ---------------------------------------------------------------- */

static void yaml_error(struct spec_ctx *c, const yaml_parser_t *parser) {
        /* problem_mark is where libyaml gave up; context_mark, when set, is
         * where the construct began (an unclosed quote, say). */
        const yaml_mark_t *m = &parser->problem_mark;
        const char *problem = parser->problem ? parser->problem : "cannot parse";
        if (parser->error == YAML_MEMORY_ERROR) {
                c->oom = true;
                return;
        }
        if (parser->context)
                error_list_add(c->errors, (unsigned) m->line + 1, (unsigned) m->column + 1, "YAML syntax error: %s %s",
                               parser->context, problem);
        else
                error_list_add(c->errors, (unsigned) m->line + 1, (unsigned) m->column + 1, "YAML syntax error: %s",
                               problem);
}

int spec_parse(const char *source, const char *data, size_t size, const char *default_cache_dir,
               struct spec **ret, struct error_list *errors) {
        _cleanup_(spec_freep) struct spec *s = NULL;
        yaml_parser_t parser;
        yaml_document_t doc;
        struct spec_ctx c = { .errors = errors, .default_cache_dir = default_cache_dir ? default_cache_dir : "/var/lib/layerd" };
        int r = -EINVAL;

        error_list_init(errors, source);
        if (size > SPEC_FILE_MAX) {
                error_list_add(errors, 0, 0, "larger than %d bytes", SPEC_FILE_MAX);
                return -EFBIG;
        }
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->source = strdup(source);
        if (!s->source)
                return -ENOMEM;
        /* Unlike the other agent defaults, which spec_finish() fills in where a
         * field is still zero, a boolean that defaults to true has no "unset"
         * value: set it before either form is parsed (the Helm form and the
         * compiled-in spec keep it). */
        s->agent.finish_abandoned_downloads = SPEC_DEFAULT_FINISH_ABANDONED_DOWNLOADS;
        c.spec = s;
        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) data, size);
        if (!yaml_parser_load(&parser, &doc)) {
                yaml_error(&c, &parser);
                yaml_parser_delete(&parser);
                return c.oom ? -ENOMEM : -EINVAL;
        }
        c.doc = &doc;
        parse_root(&c, yaml_document_get_root_node(&doc));

        /* A second document in the stream is almost certainly a mistake
         * (two specs pasted together); refuse it rather than ignore it. */
        yaml_document_t next;
        if (!c.oom && error_list_count(errors) == 0) {
                if (!yaml_parser_load(&parser, &next)) {
                        yaml_error(&c, &parser);
                } else {
                        if (yaml_document_get_root_node(&next))
                                error_list_add(errors, (unsigned) next.start_mark.line + 1,
                                               (unsigned) next.start_mark.column + 1,
                                               "more than one YAML document: a spec is one document");
                        yaml_document_delete(&next);
                }
        }
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        error_list_sort(errors);
        if (c.oom)
                return -ENOMEM;
        if (error_list_count(errors) > 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int spec_load_file(const char *path, const char *default_cache_dir, struct spec **ret, struct error_list *errors) {
        _cleanup_free_ char *buf = NULL;
        size_t len;

        error_list_init(errors, path);
        int r = read_file_bounded(path, SPEC_FILE_MAX, &buf, &len);
        if (r == -EFBIG)
                error_list_add(errors, 0, 0, "larger than %d bytes", SPEC_FILE_MAX);
        else if (r == -EINVAL)
                error_list_add(errors, 0, 0, "not a regular file");
        else if (r < 0 && r != -ENOMEM)
                error_list_add(errors, 0, 0, "cannot open: %s", strerror(-r));
        if (r < 0)
                return r;
        return spec_parse(path, buf, len, default_cache_dir, ret, errors);
}

const char *spec_yaml_version(void) {
        return yaml_get_version_string();
}
