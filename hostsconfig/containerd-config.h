/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What containerd's CRI plugin does with registries, read from a
 * containerd config.toml (for `layerd doctor`). The file is parsed with the
 * TOML subset of hostsconfig/toml.h (no dates or times; every error at
 * line:column) and summarised as the facts below; judging them is the
 * caller's business.
 *
 * containerd behaviour this rests on (Debian's 1.6.20 checked in
 * tests/fixtures/containerd/README):
 *  - `version` absent means 1. Version 1 names plugins by their short ID
 *    (plugins.cri); version 2 by URI (plugins."io.containerd.grpc.v1.cri");
 *    version 3 is containerd 2.x's, whose images half of the CRI reads
 *    plugins."io.containerd.cri.v1.images". containerd 2.x migrates version 1
 *    and 2 files as it loads them, so their registry table still counts there.
 *  - config_path = "" is the same as no config_path (containerd tests != "").
 *  - containerd 1.6/1.7: the CRI plugin fails to load when config_path is set
 *    together with any registry.mirrors entry ("`mirrors` cannot be set when
 *    `config_path` is provided") or any registry.configs."host".tls table
 *    ("`configs.tls` cannot be set ..."); registry.configs."host".auth alone
 *    is accepted.
 *  - `imports` are other files merged in; they are listed, never read here. */

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

#define HOSTS_CONTAINERD_CONFIG_FILE_MAX (1024 * 1024) /* the TOML parser's cap too */

struct hosts_containerd_config {
        unsigned version;           /* the file's `version`; 1 when absent (containerd's rule) */
        const char *registry_table; /* static: the table this version's CRI reads, as TOML:
                                     * plugins.cri.registry, plugins."io.containerd.grpc.v1.cri".registry
                                     * or plugins."io.containerd.cri.v1.images".registry */
        char *config_path;          /* registry_table's config_path; NULL when absent or "" */
        unsigned config_path_line;  /* 0 when config_path is NULL */
        char *misplaced_table;      /* another version's registry table (as TOML) holding a non-empty
                                     * config_path, which this version's CRI does not read; NULL when none */
        char *misplaced_config_path;
        unsigned misplaced_line;
        char **mirror_hosts;        /* the "HOST" keys of registry_table.mirrors, in file order */
        size_t n_mirror_hosts;
        bool has_configs;           /* registry_table.configs has at least one host (auth or tls) */
        bool has_configs_tls;       /* ...and one of them has a tls table: 1.6/1.7 refuse that with config_path */
        bool has_auths;             /* registry_table.auths has at least one host (deprecated) */
        bool cri_disabled;          /* disabled_plugins names the CRI plugin of this version */
        char **imports;             /* `imports`, as written; not followed */
        size_t n_imports;
};

/* Parses size bytes of a containerd config.toml named source (for messages)
 * into *ret (caller frees). Returns -EINVAL with positioned errors for TOML it
 * cannot read, a `version` that is not 1, 2 or 3, or a known key of the wrong
 * type (config_path, mirrors, configs, auths, disabled_plugins, imports);
 * -ENOMEM; nothing is written to ret on failure. errors is reset with source as its name. */
int hosts_containerd_config_parse(const char *source, const char *data, size_t size,
                                  struct hosts_containerd_config **ret, struct error_list *errors);

/* Reads path (at most HOSTS_CONTAINERD_CONFIG_FILE_MAX bytes) and parses it as
 * above; -ENOENT, -EFBIG (with an error) or another -errno when it cannot be read. */
int hosts_containerd_config_load(const char *path, struct hosts_containerd_config **ret, struct error_list *errors);

/* Frees c and everything it owns; accepts NULL, returns NULL. */
struct hosts_containerd_config *hosts_containerd_config_free(struct hosts_containerd_config *c);

enum {
        HOSTS_CONTAINERD_MAJOR_1 = 1u << 0, /* containerd 1.x (1.6, 1.7) */
        HOSTS_CONTAINERD_MAJOR_2 = 1u << 1, /* containerd 2.x */
};

/* Which containerd majors read a config file of this version as written, as
 * HOSTS_CONTAINERD_MAJOR_* bits: 1 and 2 -> both (2.x migrates them on load),
 * 3 -> 2.x only (Debian's 1.6.20 does not refuse `version = 3` but reads the
 * file as version 2, ignoring the version-3 plugin tables). -EINVAL for any
 * other version. */
int hosts_containerd_config_version_readers(unsigned version);

static inline void hosts_containerd_config_freep(struct hosts_containerd_config **c) {
        hosts_containerd_config_free(*c);
}
