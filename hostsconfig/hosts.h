/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Runtime mirror configs rendered from the cluster spec: containerd's
 * hosts.toml tree (docs/hosts.md in containerd), Docker's daemon.json
 * registry-mirrors, Talos's registry documents (RegistryMirrorConfig and
 * RegistryTLSConfig, Talos 1.12+) or its older machine.registries patch, and
 * containers-registries.conf(5) for CRI-O and podman. Rendering is
 * byte-for-byte deterministic and does no I/O, but for one read: the Talos
 * documents carry a CA certificate's contents (Talos takes no paths), so the
 * talos format reads the spec's ca_file files. hosts_apply() puts a rendered
 * set on disk safely. */

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "hostsconfig/spec.h"

/* First line of every file layerd writes; --prune removes only files that start with it. */
#define HOSTS_MANAGED_MARKER "# Managed by layerd"
#define HOSTS_FILE_MAX (1024 * 1024)

enum hosts_format {
        HOSTS_FORMAT_CONTAINERD,
        HOSTS_FORMAT_DOCKER,
        HOSTS_FORMAT_TALOS,
        HOSTS_FORMAT_REGISTRIES_CONF,
        HOSTS_FORMAT_TALOS_LEGACY,
        _HOSTS_FORMAT_MAX,
};

/* "containerd", "docker", "talos", "registries-conf", "talos-legacy"; -EINVAL for anything else. */
int hosts_format_from_string(const char *s);
const char *hosts_format_to_string(enum hosts_format f);

struct hosts_file {
        char *name;    /* relative to the output directory: "docker.io/hosts.toml", "daemon.json" */
        char *content; /* NUL-terminated */
        size_t size;
};

struct hosts_output {
        enum hosts_format format;
        struct hosts_file *files; /* in spec order */
        size_t n_files, cap_files;
};

/* Renders s for a runtime. agent_url is where that runtime reaches layerd
 * ("http://127.0.0.1:5080"). What a format cannot express is left out and
 * explained in notes (one entry each; no positions). Returns 0, -ENOMEM, or
 * -EFBIG when a file would exceed HOSTS_FILE_MAX. */
int hosts_render(const struct spec *s, enum hosts_format format, const char *agent_url, struct hosts_output **ret,
                 struct error_list *notes);
struct hosts_output *hosts_output_free(struct hosts_output *o);

/* The agent URL a runtime on the same node uses for a listen address: an
 * unspecified address (0.0.0.0, ::) becomes loopback. Caller frees. */
char *hosts_agent_url(const char *listen_host, unsigned listen_port);

enum hosts_change_kind {
        HOSTS_WRITTEN,
        HOSTS_UNCHANGED,
        HOSTS_PRUNED,
        _HOSTS_CHANGE_MAX,
};

struct hosts_change {
        char *name;       /* relative to the directory */
        enum hosts_change_kind kind;
        char *old_content; /* what was there (NULL: nothing), for diffs */
        size_t old_size;
        bool was_unmanaged; /* an existing file layerd did not write was replaced */
};

struct hosts_report {
        struct hosts_change *changes;
        size_t n_changes, cap_changes;
        size_t count[_HOSTS_CHANGE_MAX];
};

enum {
        HOSTS_APPLY_DRY_RUN = 1u << 0, /* decide and report, write nothing */
        HOSTS_APPLY_PRUNE = 1u << 1,   /* remove managed registry dirs the output no longer has (containerd) */
};

/* Puts o under dir: every target is checked first (dir creatable and
 * writable, no path in the way), so a problem is reported with nothing
 * changed; then each changed file is written atomically (temp, fsync, rename,
 * fsync dir) and an unchanged one is left alone. Returns 0 with a report
 * (caller frees); -errno with the reasons in errors when a check failed
 * (nothing was changed); -EIO when writing failed part way (each file is old
 * or new, never torn; errors name the ones that failed); -ENOMEM. */
int hosts_apply(const struct hosts_output *o, const char *dir, unsigned flags, struct hosts_report **ret,
                struct error_list *errors);
struct hosts_report *hosts_report_free(struct hosts_report *r);

static inline void hosts_output_freep(struct hosts_output **o) {
        hosts_output_free(*o);
}
static inline void hosts_report_freep(struct hosts_report **r) {
        hosts_report_free(*r);
}
