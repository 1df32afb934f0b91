/* SPDX-License-Identifier: Apache-2.0 */
/* containerd's config.toml, as far as the CRI plugin's registry settings go;
 * the behaviour each rule follows is listed in containerd-config.h. */
#include "hostsconfig/containerd-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/macro.h"
#include "hostsconfig/toml.h"

_Static_assert(HOSTS_CONTAINERD_CONFIG_FILE_MAX == TOML_FILE_MAX, "one cap for the file");

/* The registry table of each config version, by index version - 1. */
static const char *const registry_path[3][3] = {
        { "plugins", "cri", "registry" },
        { "plugins", "io.containerd.grpc.v1.cri", "registry" },
        { "plugins", "io.containerd.cri.v1.images", "registry" },
};

static const char *const registry_name[3] = {
        "plugins.cri.registry",
        "plugins.\"io.containerd.grpc.v1.cri\".registry",
        "plugins.\"io.containerd.cri.v1.images\".registry",
};

/* disabled_plugins entries that turn the CRI off. Version 1 matches plugin
 * IDs only; Debian's 1.6.20 with a version-2 file honours both "cri" and the
 * URI (checked); 2.x splits the CRI, and without its images plugin the CRI
 * service does not load either. */
static const char *const cri_names[3][4] = {
        { "cri", NULL },
        { "cri", "io.containerd.grpc.v1.cri", NULL },
        { "cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", NULL },
};

int hosts_containerd_config_version_readers(unsigned version) {
        switch (version) {
        case 1:
        case 2:
                return HOSTS_CONTAINERD_MAJOR_1 | HOSTS_CONTAINERD_MAJOR_2;
        case 3:
                return HOSTS_CONTAINERD_MAJOR_2;
        default:
                return -EINVAL;
        }
}

static void strv_free(char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

struct hosts_containerd_config *hosts_containerd_config_free(struct hosts_containerd_config *c) {
        if (!c)
                return NULL;
        free(c->config_path);
        free(c->misplaced_table);
        free(c->misplaced_config_path);
        strv_free(c->mirror_hosts, c->n_mirror_hosts);
        strv_free(c->imports, c->n_imports);
        return mfree(c);
}


static bool wrong_type(struct error_list *errors, const struct toml_value *v, enum toml_type want, const char *what) {
        if (!v || v->type == want)
                return false;
        error_list_add(errors, v->line, v->column, "%s must be a%s %s, not a%s %s", what,
                       want == TOML_INTEGER || want == TOML_ARRAY ? "n" : "", toml_type_to_string(want),
                       v->type == TOML_INTEGER || v->type == TOML_ARRAY ? "n" : "", toml_type_to_string(v->type));
        return true;
}

/* A non-empty config_path string under a registry table, or NULL; errors for the wrong type. */
static const struct toml_value *registry_config_path(const struct toml_table *root, size_t index,
                                                     struct error_list *errors) {
        const struct toml_value *reg = toml_get_path(root, registry_path[index], 3);
        if (!reg || wrong_type(errors, reg, TOML_TABLE, registry_name[index]))
                return NULL;
        const struct toml_value *cp = toml_table_get(reg->table, "config_path");
        if (!cp || wrong_type(errors, cp, TOML_STRING, "config_path"))
                return NULL;
        return cp->string[0] ? cp : NULL;
}

/* The elements of an array of strings, copied; what names the key in errors. */
static int string_array(const struct toml_value *v, const char *what, char ***ret, size_t *ret_n,
                        struct error_list *errors) {
        if (!v)
                return 0;
        if (wrong_type(errors, v, TOML_ARRAY, what))
                return -EINVAL;
        char **out = calloc(v->array->n ? v->array->n : 1, sizeof(*out));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < v->array->n; i++) {
                const struct toml_value *e = &v->array->items[i];
                if (wrong_type(errors, e, TOML_STRING, what)) {
                        strv_free(out, i);
                        return -EINVAL;
                }
                out[i] = strdup(e->string);
                if (!out[i]) {
                        strv_free(out, i);
                        return -ENOMEM;
                }
        }
        *ret = out;
        *ret_n = v->array->n;
        return 0;
}

static int analyse(const struct toml_table *root, struct hosts_containerd_config *c, struct error_list *errors) {
        int r;

        const struct toml_value *version = toml_table_get(root, "version");
        c->version = 1;
        if (version) {
                if (wrong_type(errors, version, TOML_INTEGER, "version"))
                        return -EINVAL;
                if (version->integer < 1 || version->integer > 3) {
                        error_list_add(errors, version->line, version->column,
                                       "version %lld is not one containerd reads (1, 2 or 3)", (long long) version->integer);
                        return -EINVAL;
                }
                c->version = (unsigned) version->integer;
        }
        size_t idx = c->version - 1;
        c->registry_table = registry_name[idx];

        const struct toml_value *cp = registry_config_path(root, idx, errors);
        if (cp) {
                c->config_path = strdup(cp->string);
                if (!c->config_path)
                        return -ENOMEM;
                c->config_path_line = cp->line;
        }
        for (size_t i = 0; i < ELEMENTSOF(registry_path) && !c->misplaced_table; i++) {
                if (i == idx)
                        continue;
                const struct toml_value *other = registry_config_path(root, i, errors);
                if (!other)
                        continue;
                c->misplaced_table = strdup(registry_name[i]);
                c->misplaced_config_path = strdup(other->string);
                if (!c->misplaced_table || !c->misplaced_config_path)
                        return -ENOMEM;
                c->misplaced_line = other->line;
        }

        const struct toml_value *reg = toml_get_path(root, registry_path[idx], 3);
        if (reg && reg->type == TOML_TABLE) {
                const struct toml_value *mirrors = toml_table_get(reg->table, "mirrors");
                if (mirrors && !wrong_type(errors, mirrors, TOML_TABLE, "registry.mirrors") && mirrors->table->n > 0) {
                        c->mirror_hosts = calloc(mirrors->table->n, sizeof(char *));
                        if (!c->mirror_hosts)
                                return -ENOMEM;
                        for (size_t i = 0; i < mirrors->table->n; i++) {
                                c->mirror_hosts[i] = strdup(mirrors->table->pairs[i].key);
                                if (!c->mirror_hosts[i])
                                        return -ENOMEM;
                                c->n_mirror_hosts++;
                        }
                }
                const struct toml_value *configs = toml_table_get(reg->table, "configs");
                if (configs && !wrong_type(errors, configs, TOML_TABLE, "registry.configs")) {
                        c->has_configs = configs->table->n > 0;
                        /* containerd checks `TLS != nil`: a tls table, even an empty one. */
                        for (size_t i = 0; i < configs->table->n; i++) {
                                const struct toml_value *host = &configs->table->pairs[i].value;
                                if (host->type == TOML_TABLE && toml_table_get(host->table, "tls"))
                                        c->has_configs_tls = true;
                        }
                }
                const struct toml_value *auths = toml_table_get(reg->table, "auths");
                if (auths && !wrong_type(errors, auths, TOML_TABLE, "registry.auths"))
                        c->has_auths = auths->table->n > 0;
        }

        _cleanup_free_ char **disabled = NULL;
        size_t n_disabled = 0;
        r = string_array(toml_table_get(root, "disabled_plugins"), "disabled_plugins", &disabled, &n_disabled, errors);
        if (r == -ENOMEM)
                return r;
        for (size_t i = 0; i < n_disabled; i++) {
                for (const char *const *name = cri_names[idx]; *name; name++)
                        if (strcmp(disabled[i], *name) == 0)
                                c->cri_disabled = true;
                free(disabled[i]);
        }

        r = string_array(toml_table_get(root, "imports"), "imports", &c->imports, &c->n_imports, errors);
        if (r == -ENOMEM)
                return r;
        return error_list_count(errors) > 0 ? -EINVAL : 0;
}

int hosts_containerd_config_parse(const char *source, const char *data, size_t size,
                                  struct hosts_containerd_config **ret, struct error_list *errors) {
        _cleanup_(toml_table_freep) struct toml_table *root = NULL;
        _cleanup_(hosts_containerd_config_freep) struct hosts_containerd_config *c = NULL;

        int r = toml_parse(source, data, size, &root, errors);
        if (r < 0)
                return r;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = analyse(root, c, errors);
        if (r < 0) {
                error_list_sort(errors);
                return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int hosts_containerd_config_load(const char *path, struct hosts_containerd_config **ret, struct error_list *errors) {
        _cleanup_free_ char *data = NULL;
        size_t size;

        error_list_init(errors, path);
        int r = read_file_bounded(path, HOSTS_CONTAINERD_CONFIG_FILE_MAX, &data, &size);
        if (r == -EFBIG)
                error_list_add(errors, 0, 0, "larger than %d bytes", HOSTS_CONTAINERD_CONFIG_FILE_MAX);
        if (r < 0)
                return r;
        return hosts_containerd_config_parse(path, data, size, ret, errors);
}
