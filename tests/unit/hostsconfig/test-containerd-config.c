/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for hostsconfig/containerd-config.c over the fixtures of
 * tests/fixtures/containerd/ (real `containerd config dump` output of
 * Debian's 1.6.20 and hand-written files; see the README there). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostsconfig/containerd-config.h"

#define FIXTURES "tests/fixtures/containerd/"

#define V1_TABLE "plugins.cri.registry"
#define V2_TABLE "plugins.\"io.containerd.grpc.v1.cri\".registry"
#define V3_TABLE "plugins.\"io.containerd.cri.v1.images\".registry"

static struct hosts_containerd_config *load(const char *name) {
        struct hosts_containerd_config *c = NULL;
        struct error_list errors;
        int r = hosts_containerd_config_load(name, &c, &errors);
        if (r < 0)
                error_list_print(&errors, stderr);
        assert_int_equal(r, 0);
        assert_int_equal(errors.n, 0);
        assert_non_null(c);
        return c;
}

static struct hosts_containerd_config *parse(const char *text) {
        struct hosts_containerd_config *c = NULL;
        struct error_list errors;
        int r = hosts_containerd_config_parse("c.toml", text, strlen(text), &c, &errors);
        if (r < 0)
                error_list_print(&errors, stderr);
        assert_int_equal(r, 0);
        return c;
}

static void parse_fails(const char *text, unsigned line, unsigned col, const char *want) {
        struct hosts_containerd_config *c = NULL;
        struct error_list errors;
        int r = hosts_containerd_config_parse("c.toml", text, strlen(text), &c, &errors);
        if (r != -EINVAL || errors.n < 1 || errors.items[0].line != line || errors.items[0].column != col ||
            !strstr(errors.items[0].message, want)) {
                fprintf(stderr, "input:\n%s\nr=%d, want %u:%u \"%s\", got:\n", text, r, line, col, want);
                error_list_print(&errors, stderr);
                fail();
        }
        assert_null(c);
}

static void assert_nothing_else(const struct hosts_containerd_config *c) {
        assert_null(c->misplaced_table);
        assert_null(c->misplaced_config_path);
        assert_int_equal(c->n_mirror_hosts, 0);
        assert_false(c->has_configs);
        assert_false(c->has_configs_tls);
        assert_false(c->has_auths);
        assert_false(c->cri_disabled);
}

/* ---- real containerd 1.6.20 `config dump` output ------------------------------------ */

static void test_dump_config_path(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "dump-1.6.20-v2-config-path.toml");
        assert_int_equal(c->version, 2);
        assert_string_equal(c->registry_table, V2_TABLE);
        assert_string_equal(c->config_path, "/etc/containerd/certs.d");
        assert_int_equal(c->config_path_line, 145);
        /* The dump's empty [registry.mirrors], [registry.configs], [registry.auths] are not entries. */
        assert_nothing_else(c);
        /* config dump lists the file it loaded under imports. */
        assert_int_equal(c->n_imports, 1);
        assert_string_equal(c->imports[0], "input-v2-config-path.toml");
        hosts_containerd_config_free(c);
}

static void test_dump_no_config_path(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "dump-1.6.20-v2-no-config-path.toml");
        assert_int_equal(c->version, 2);
        assert_null(c->config_path); /* config_path = "" */
        assert_int_equal(c->config_path_line, 0);
        assert_nothing_else(c);
        hosts_containerd_config_free(c);
}

static void test_dump_v3_table(void **state) {
        (void) state;
        /* containerd 1.6.20 dropped the v3 table: its merged config has no config_path. */
        struct hosts_containerd_config *c = load(FIXTURES "dump-1.6.20-v2-v3-table.toml");
        assert_null(c->config_path);
        assert_nothing_else(c);
        hosts_containerd_config_free(c);

        /* What it was given: the same file, before containerd, says where it went. */
        c = load(FIXTURES "input-v2-v3-table.toml");
        assert_int_equal(c->version, 2);
        assert_null(c->config_path);
        assert_string_equal(c->misplaced_table, V3_TABLE);
        assert_string_equal(c->misplaced_config_path, "/etc/containerd/certs.d");
        assert_int_equal(c->misplaced_line, 15);
        hosts_containerd_config_free(c);
}

static void test_dump_mirrors(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "dump-1.6.20-v2-mirrors.toml");
        assert_string_equal(c->config_path, "/etc/containerd/certs.d");
        assert_int_equal(c->n_mirror_hosts, 1);
        assert_string_equal(c->mirror_hosts[0], "docker.io");
        assert_false(c->has_configs);
        hosts_containerd_config_free(c);
}

/* ---- hand-written files ---------------------------------------------------------------- */

static void test_v2_operator(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "v2-operator.toml");
        assert_int_equal(c->version, 2);
        assert_string_equal(c->registry_table, V2_TABLE);
        assert_string_equal(c->config_path, "/etc/containerd/certs.d");
        assert_int_equal(c->config_path_line, 12);
        assert_nothing_else(c);
        assert_int_equal(c->n_imports, 0);
        hosts_containerd_config_free(c);
}

static void test_v3_default(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "v3-default.toml");
        assert_int_equal(c->version, 3);
        assert_string_equal(c->registry_table, V3_TABLE);
        assert_string_equal(c->config_path, "/etc/containerd/certs.d");
        assert_int_equal(c->config_path_line, 27);
        assert_nothing_else(c);
        assert_int_equal(c->n_imports, 0); /* imports = [] */
        hosts_containerd_config_free(c);
}

static void test_v1(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "v1-cri.toml");
        assert_int_equal(c->version, 1);
        assert_string_equal(c->registry_table, V1_TABLE);
        assert_string_equal(c->config_path, "/etc/containerd/certs.d");
        assert_int_equal(c->config_path_line, 9);
        assert_nothing_else(c);
        hosts_containerd_config_free(c);

        /* plugins."cri" is the same table. */
        c = parse("[plugins.\"cri\".registry]\nconfig_path = '/d'\n");
        assert_string_equal(c->config_path, "/d");
        hosts_containerd_config_free(c);
}

static void test_misplaced(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "v2-misplaced.toml");
        assert_int_equal(c->version, 2);
        assert_null(c->config_path);
        assert_string_equal(c->misplaced_table, V3_TABLE);
        assert_string_equal(c->misplaced_config_path, "/etc/containerd/certs.d");
        assert_int_equal(c->misplaced_line, 6);
        hosts_containerd_config_free(c);

        /* v3 with the v2 table; v1 with the v2 table; v2 with the v1 table. */
        c = parse("version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/a\"\n");
        assert_null(c->config_path);
        assert_string_equal(c->misplaced_table, V2_TABLE);
        assert_int_equal(c->misplaced_line, 3);
        hosts_containerd_config_free(c);
        c = parse("[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/a\"\n");
        assert_int_equal(c->version, 1);
        assert_null(c->config_path);
        assert_string_equal(c->misplaced_table, V2_TABLE);
        hosts_containerd_config_free(c);
        c = parse("version = 2\nplugins.cri.registry.config_path = \"/b\"\n"
                  "[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/a\"\n");
        assert_string_equal(c->config_path, "/a");
        assert_string_equal(c->misplaced_table, V1_TABLE);
        assert_string_equal(c->misplaced_config_path, "/b");
        assert_int_equal(c->misplaced_line, 2);
        hosts_containerd_config_free(c);
        /* An empty config_path elsewhere is nothing. */
        c = parse("version = 2\n[plugins.\"io.containerd.cri.v1.images\".registry]\nconfig_path = \"\"\n");
        assert_null(c->misplaced_table);
        hosts_containerd_config_free(c);
}

static void test_mirrors_configs_auths(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "v2-mirrors.toml");
        assert_string_equal(c->config_path, "/etc/containerd/certs.d");
        assert_int_equal(c->n_mirror_hosts, 2);
        assert_string_equal(c->mirror_hosts[0], "docker.io");
        assert_string_equal(c->mirror_hosts[1], "registry.example.com:5000");
        assert_true(c->has_configs);
        assert_true(c->has_configs_tls);
        assert_true(c->has_auths);
        assert_false(c->cri_disabled);
        hosts_containerd_config_free(c);

        /* configs with auth only: accepted by 1.6 next to config_path. */
        c = parse("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.io\".auth]\nusername = 'u'\n");
        assert_true(c->has_configs);
        assert_false(c->has_configs_tls);
        hosts_containerd_config_free(c);
        /* An empty tls table still counts (containerd tests TLS != nil). */
        c = parse("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.io\".tls]\n");
        assert_true(c->has_configs_tls);
        hosts_containerd_config_free(c);
        /* Mirrors under another version's table are not this version's. */
        c = parse("version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\nendpoint = []\n");
        assert_int_equal(c->n_mirror_hosts, 0);
        hosts_containerd_config_free(c);
        /* Inline tables are the same thing. */
        c = parse("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                  "mirrors = { \"docker.io\" = { endpoint = [\"http://127.0.0.1:5080\"] } }\n");
        assert_int_equal(c->n_mirror_hosts, 1);
        assert_string_equal(c->mirror_hosts[0], "docker.io");
        hosts_containerd_config_free(c);
}

static void test_disabled_cri(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "disabled-cri.toml");
        assert_int_equal(c->version, 1);
        assert_true(c->cri_disabled);
        assert_null(c->config_path);
        hosts_containerd_config_free(c);

        static const struct {
                const char *text;
                bool disabled;
        } cases[] = {
                { "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n", false }, /* v1 matches IDs only */
                { "version = 2\ndisabled_plugins = [\"cri\"]\n", true },
                { "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n", true },
                { "version = 2\ndisabled_plugins = [\"io.containerd.cri.v1.images\"]\n", false },
                { "version = 3\ndisabled_plugins = [\"io.containerd.cri.v1.images\"]\n", true },
                { "version = 3\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n", true },
                { "version = 3\ndisabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\", \"cri\"]\n", true },
                { "version = 2\ndisabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\"]\n", false },
                { "version = 2\ndisabled_plugins = []\n", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                c = parse(cases[i].text);
                if (c->cri_disabled != cases[i].disabled) {
                        fprintf(stderr, "case %zu: %s", i, cases[i].text);
                        fail();
                }
                hosts_containerd_config_free(c);
        }
}

static void test_imports(void **state) {
        (void) state;
        struct hosts_containerd_config *c = load(FIXTURES "imports.toml");
        assert_int_equal(c->n_imports, 2);
        assert_string_equal(c->imports[0], "/etc/containerd/conf.d/*.toml");
        assert_string_equal(c->imports[1], "/etc/containerd/registry.toml");
        assert_string_equal(c->config_path, "/etc/containerd/certs.d");
        hosts_containerd_config_free(c);
}

static void test_errors(void **state) {
        (void) state;
        parse_fails("version = 4\n", 1, 11, "version 4 is not one containerd reads");
        parse_fails("version = 0\n", 1, 11, "version 0");
        parse_fails("version = \"2\"\n", 1, 11, "version must be an integer, not a string");
        parse_fails("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = 1\n", 3, 15,
                    "config_path must be a string, not an integer");
        parse_fails("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nregistry = 'x'\n", 3, 12,
                    "must be a table, not a string");
        parse_fails("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nmirrors = []\n", 3, 11,
                    "registry.mirrors must be a table, not an array");
        parse_fails("disabled_plugins = \"cri\"\n", 1, 20, "disabled_plugins must be an array");
        parse_fails("disabled_plugins = [1]\n", 1, 21, "disabled_plugins must be a string, not an integer");
        parse_fails("imports = [\"a\", true]\n", 1, 17, "imports must be a string, not a boolean");
        /* TOML errors come through with their position. */
        parse_fails("version = 2\n[plugins]\n[plugins]\n", 3, 1, "table [plugins] defined twice");
        parse_fails("version = 2\ntimeout = 1979-05-27\n", 2, 11, "dates and times are not supported");

        /* Every type error in the file is reported, top to bottom. */
        struct hosts_containerd_config *c = NULL;
        struct error_list errors;
        const char *text = "imports = 1\ndisabled_plugins = 2\n";
        assert_int_equal(hosts_containerd_config_parse("c.toml", text, strlen(text), &c, &errors), -EINVAL);
        assert_int_equal(errors.n, 2);
        assert_int_equal(errors.items[0].line, 1);
        assert_int_equal(errors.items[1].line, 2);
        char buf[ERROR_MESSAGE_MAX + 64];
        error_list_format(&errors, 0, buf, sizeof(buf));
        assert_string_equal(buf, "c.toml:1:11: imports must be an array, not an integer");

        assert_int_equal(hosts_containerd_config_load(FIXTURES "does-not-exist.toml", &c, &errors), -ENOENT);
        assert_null(c);
}

static void test_version_readers(void **state) {
        (void) state;
        assert_int_equal(hosts_containerd_config_version_readers(1), HOSTS_CONTAINERD_MAJOR_1 | HOSTS_CONTAINERD_MAJOR_2);
        assert_int_equal(hosts_containerd_config_version_readers(2), HOSTS_CONTAINERD_MAJOR_1 | HOSTS_CONTAINERD_MAJOR_2);
        assert_int_equal(hosts_containerd_config_version_readers(3), HOSTS_CONTAINERD_MAJOR_2);
        assert_int_equal(hosts_containerd_config_version_readers(0), -EINVAL);
        assert_int_equal(hosts_containerd_config_version_readers(4), -EINVAL);
        assert_null(hosts_containerd_config_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dump_config_path),
                cmocka_unit_test(test_dump_no_config_path),
                cmocka_unit_test(test_dump_v3_table),
                cmocka_unit_test(test_dump_mirrors),
                cmocka_unit_test(test_v2_operator),
                cmocka_unit_test(test_v3_default),
                cmocka_unit_test(test_v1),
                cmocka_unit_test(test_misplaced),
                cmocka_unit_test(test_mirrors_configs_auths),
                cmocka_unit_test(test_disabled_cri),
                cmocka_unit_test(test_imports),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_version_readers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
