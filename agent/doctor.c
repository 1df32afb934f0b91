/* SPDX-License-Identifier: Apache-2.0 */
/* `layerd doctor`: why a node's pulls would not go through layerd, found
 * before a pod waits on it. The failure this exists for is silent: a
 * containerd whose CRI plugin does not read the hosts directory (config_path
 * missing, or under the table of another config version) pulls straight from
 * the origins, and nothing anywhere says so. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <dirent.h>

#include "agent/agent.h"
#include "agent/doctor.h"
#include "agent/log.h"
#include "common/buf.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/macro.h"
#include "common/parse.h"
#include "hostsconfig/containerd-config.h"

#define DUMP_TIMEOUT_MS 10000
#define DUMP_MAX HOSTS_CONTAINERD_CONFIG_FILE_MAX
#define DUMP_REASON_MAX 256 /* why containerd's config dump could not be read, NUL included */
#define NOT_OK_TEXT_MAX 768 /* " name=status" of each check not ok, for serve's one log line */
#define TMPFS_MAGIC_ 0x01021994
#define OVERLAYFS_MAGIC_ 0x794c7630
#define NFS_MAGIC_ 0x6969
/* containerd 2.x's config_path when its config sets none. */
#define CONTAINERD2_DEFAULT_CONFIG_PATH "/etc/containerd/certs.d:/etc/docker/certs.d"

static const char *const status_names[_DOCTOR_STATUS_MAX] = { "ok", "warn", "fail" };

/* Cuts a UTF-8 sequence that snprintf() split at the end of s, so that a
 * long path in a message stays valid text (and valid JSON). */
static void utf8_trim(char *s) {
        size_t n = strlen(s), start = n;
        while (start > 0 && n - start < 4 && ((unsigned char) s[start - 1] & 0xC0) == 0x80)
                start--;
        if (start == 0)
                return;
        unsigned char lead = (unsigned char) s[start - 1];
        size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (n - (start - 1) < want)
                s[start - 1] = '\0';
}

/* Adds a check; fix is a printf format (NULL for ok). Out of memory drops
 * the check and is reported by doctor_run(). */
_printf_(4, 0) static void vadd(struct doctor_report *r, const char *name, enum doctor_status st, const char *fmt,
                                va_list ap, const char *fix) {
        r->last_dropped = true;
        if (ARRAY_RESERVE(r->checks, &r->allocated, r->n + 1, 16, SIZE_MAX) < 0) {
                r->oom = true;
                return;
        }
        struct doctor_check *c = &r->checks[r->n++];
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->status = st;
        if (vsnprintf(c->message, sizeof(c->message), fmt, ap) >= (int) sizeof(c->message))
                utf8_trim(c->message);
        snprintf(c->fix, sizeof(c->fix), "%s", fix ? fix : "");
        r->count[st]++;
        r->last_dropped = false;
}

_printf_(4, 5) static void add(struct doctor_report *r, const char *name, enum doctor_status st, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vadd(r, name, st, fmt, ap, NULL);
        va_end(ap);
}

/* The fix of the check added last (none when that one was dropped). */
_printf_(2, 3) static void fix(struct doctor_report *r, const char *fmt, ...) {
        if (r->n == 0 || r->last_dropped)
                return;
        va_list ap;
        va_start(ap, fmt);
        char *f = r->checks[r->n - 1].fix;
        if (vsnprintf(f, DOCTOR_TEXT_MAX, fmt, ap) >= DOCTOR_TEXT_MAX)
                utf8_trim(f);
        va_end(ap);
}

void doctor_report_done(struct doctor_report *r) {
        free(r->checks);
        *r = (struct doctor_report) {};
}

/* ---- containerd's config ----------------------------------------------------------------- */

/* containerd's own merged view of its config (imports applied, defaults
 * filled in), from the binary when it is at hand: what containerd will read,
 * rather than our reading of the file. NULL when there is no binary. */
static struct hosts_containerd_config *containerd_dump(const char *path, char *why, size_t why_size,
                                                       bool *ret_refused) {
        char *argv[] = { (char *) "containerd", (char *) "--config", (char *) path, (char *) "config", (char *) "dump",
                         NULL };
        _cleanup_free_ char *out = NULL;
        size_t size = 0;
        int status = 0;
        int r = agent_run(argv, DUMP_TIMEOUT_MS, DUMP_MAX, &out, &size, &status);
        *ret_refused = false;
        if (r == -ENOENT)
                return NULL; /* no binary: the file is all there is */
        if (r < 0) {
                snprintf(why, why_size, "containerd config dump: %s", strerror(-r));
                return NULL;
        }
        if (status != 0) {
                /* containerd itself cannot load this config. */
                snprintf(why, why_size, "containerd --config %s config dump exited with %d", path, status);
                *ret_refused = true;
                return NULL;
        }
        struct hosts_containerd_config *c = NULL;
        struct error_list errors;
        if (hosts_containerd_config_parse("containerd config dump", out, size, &c, &errors) < 0) {
                char e[ERROR_MESSAGE_MAX + ERROR_SOURCE_MAX + 32] = "";
                if (errors.n > 0)
                        (void) error_list_format(&errors, 0, e, sizeof(e));
                /* Cut to why_size on purpose (one line of the report); gcc -O1 sees the cut and would
                 * warn about a call whose result is ignored. */
                if (snprintf(why, why_size, "cannot read containerd config dump: %s", e) < 0)
                        why[0] = '\0';
                return NULL;
        }
        return c;
}

/* Whether dir is one of the directories of a config_path (containerd 2.x
 * takes a ':'-separated list), compared as written and as resolved. */
static bool config_path_names(const char *config_path, const char *dir) {
        _cleanup_free_ char *want = realpath(dir, NULL);
        const char *p = config_path;
        while (*p) {
                size_t len = strcspn(p, ":");
                _cleanup_free_ char *one = strndup(p, len);
                if (!one)
                        return false;
                while (len > 1 && one[len - 1] == '/')
                        one[--len] = '\0';
                _cleanup_free_ char *real = realpath(one, NULL);
                if (strcmp(one, dir) == 0 || (want && real && strcmp(want, real) == 0))
                        return true;
                p += strcspn(p, ":");
                if (*p == ':')
                        p++;
        }
        return false;
}

/* The containerd major version the node runs: 0 when unknown. */
static unsigned node_major(const struct spec *s, const struct doctor_options *o) {
        if (o->version && o->version->source != AGENT_CONTAINERD_NONE)
                return o->version->code / 10000;
        /* auto, once resolved, holds the node's version (serve --write-hosts). */
        if (s->hosts.containerd_version_auto && s->hosts.containerd_version_code == 0)
                return 0;
        return s->hosts.containerd_version_code / 10000;
}

static void check_containerd_config(struct doctor_report *rep, const struct spec *s, const struct doctor_options *o) {
        struct error_list errors;
        _cleanup_(hosts_containerd_config_freep) struct hosts_containerd_config *file = NULL, *dump = NULL;
        char why[DUMP_REASON_MAX] = "";
        int r = hosts_containerd_config_load(o->containerd_config, &file, &errors);
        unsigned major = node_major(s, o);
        const char *node = o->version && o->version->source != AGENT_CONTAINERD_NONE ? o->version->version
                                                                                     : s->hosts.containerd_version;

        if (r == -ENOENT && o->local_only) {
                /* serve in a container: the node's config is not mounted there. */
                add(rep, "containerd.config", DOCTOR_WARN, "%s: not found here", o->containerd_config);
                fix(rep, "Run layerd doctor on the node itself, or give serve --containerd-config.");
                return;
        }
        if (r == -ENOENT) {
                /* containerd then runs on its defaults: no config_path in 1.x, the
                 * standard directory in 2.x. */
                if (major >= 2 && config_path_names(CONTAINERD2_DEFAULT_CONFIG_PATH, o->hosts_dir)) {
                        add(rep, "containerd.config", DOCTOR_OK,
                            "%s: absent; containerd %s's default config_path is %s", o->containerd_config,
                            node, CONTAINERD2_DEFAULT_CONFIG_PATH);
                        return;
                }
                add(rep, "containerd.config", DOCTOR_FAIL, "%s: absent, so the CRI plugin reads no hosts directory",
                    o->containerd_config);
                fix(rep, "Create %s with config_path = \"%s\" under the CRI registry table (see below) and restart "
                         "containerd.", o->containerd_config, o->hosts_dir);
                return;
        }
        if (r < 0) {
                char e[ERROR_MESSAGE_MAX + ERROR_SOURCE_MAX + 32] = "";
                if (errors.n > 0)
                        (void) error_list_format(&errors, 0, e, sizeof(e));
                else
                        snprintf(e, sizeof(e), "%s: %s", o->containerd_config, strerror(-r));
                add(rep, "containerd.config", r == -EACCES ? DOCTOR_WARN : DOCTOR_FAIL, "%s", e);
                fix(rep, r == -EACCES ? "Run layerd doctor as root, or with read access to containerd's config."
                                      : "Correct the file: containerd refuses to start with a config it cannot parse.");
                return;
        }
        bool refused = false;
        if (!o->local_only)
                dump = containerd_dump(o->containerd_config, why, sizeof(why), &refused);
        /* The merged dump decides what containerd reads (imports, defaults);
         * the file itself is where a misplaced key is found and fixed. */
        const struct hosts_containerd_config *eff = dump ? dump : file;
        if (refused) {
                add(rep, "containerd.config", DOCTOR_FAIL, "%s: version %u, but %s: containerd will not start with it",
                    o->containerd_config, file->version, why);
                fix(rep, "Run containerd --config %s config dump and correct what it reports.", o->containerd_config);
        } else if (!dump && why[0]) {
                add(rep, "containerd.config", DOCTOR_WARN, "%s: version %u; %s, so the file alone was read",
                    o->containerd_config, file->version, why);
                fix(rep, "Check that containerd config dump works on this node.");
        } else {
                add(rep, "containerd.config", DOCTOR_OK, "%s: version %u%s%s%s", o->containerd_config, file->version,
                    dump ? ", as containerd config dump merges it" : "", file->n_imports ? ", with imports" : "",
                    !dump && file->n_imports ? " (not followed: containerd's binary is not at hand)" : "");
        }
        if (file->version >= 3 && major == 1) {
                /* Seen with 1.6.20: it starts, reads the file as version 2 and
                 * ignores the version-3 plugin tables, config_path among them. */
                add(rep, "containerd.config_path", DOCTOR_FAIL,
                    "%s is a version-%u file: containerd %s reads it as version 2 and ignores its "
                    "[plugins.\"io.containerd.cri.v1.images\"] tables, config_path among them",
                    o->containerd_config, file->version, node);
                fix(rep, "Write a version = 2 file with config_path = \"%s\" under [%s] and restart containerd.",
                    o->hosts_dir, "plugins.\"io.containerd.grpc.v1.cri\".registry");
                return;
        }

        /* config_path under the table this version reads; containerd 2.x has a
         * default one (its dump shows it; the file alone does not). */
        const char *config_path = eff->config_path ? eff->config_path
                                  : !dump && major >= 2 ? CONTAINERD2_DEFAULT_CONFIG_PATH
                                                        : NULL;
        if (config_path) {
                if (config_path_names(config_path, o->hosts_dir)) {
                        add(rep, "containerd.config_path", DOCTOR_OK, "config_path = \"%s\" under [%s]%s", config_path,
                            eff->registry_table, eff->config_path ? "" : " (containerd 2.x's default)");
                } else {
                        add(rep, "containerd.config_path", DOCTOR_FAIL,
                            "config_path = \"%s\" under [%s] is not the directory layerd's hosts files are in (%s)",
                            config_path, eff->registry_table, o->hosts_dir);
                        fix(rep, "Set config_path = \"%s\" under [%s] (or write the hosts files to %s) and restart "
                                 "containerd.", o->hosts_dir, eff->registry_table, config_path);
                }
        } else {
                const struct hosts_containerd_config *m = eff->misplaced_table ? eff : file;
                if (m->misplaced_table)
                        add(rep, "containerd.config_path", DOCTOR_FAIL,
                            "config_path = \"%s\" is under [%s] (line %u), which a version-%u file does not read: the CRI "
                            "plugin (the kubelet's pulls) never uses layerd",
                            m->misplaced_config_path, m->misplaced_table, m->misplaced_line, file->version);
                else
                        add(rep, "containerd.config_path", DOCTOR_FAIL,
                            "no config_path under [%s]: the CRI plugin (the kubelet's pulls) never uses layerd",
                            eff->registry_table);
                fix(rep, "Put config_path = \"%s\" under [%s] in %s and restart containerd.", o->hosts_dir,
                    eff->registry_table, o->containerd_config);
        }

        /* containerd refuses to start the CRI plugin with either beside
         * config_path (1.6.20 seen; 2.x validates the same). */
        if (config_path && eff->has_configs_tls) {
                add(rep, "containerd.mirrors", DOCTOR_FAIL,
                    "registry.configs under [%s] has a tls table beside config_path: containerd refuses to start the "
                    "CRI plugin with both", eff->registry_table);
                fix(rep, "Move the TLS settings into the hosts files (the spec's endpoint tls keys) and remove the "
                         "configs tls tables.");
        } else if (eff->n_mirror_hosts > 0) {
                bool both = config_path != NULL;
                add(rep, "containerd.mirrors", both ? DOCTOR_FAIL : DOCTOR_WARN,
                    "registry.mirrors under [%s] names %zu registr%s (first \"%s\")%s", eff->registry_table,
                    eff->n_mirror_hosts, eff->n_mirror_hosts == 1 ? "y" : "ies", eff->mirror_hosts[0],
                    both ? " beside config_path: containerd refuses to start the CRI plugin with both"
                         : ": a deprecated way that bypasses the hosts files");
                fix(rep, "Remove the registry.mirrors tables; layerd's hosts files under %s replace them.", o->hosts_dir);
        } else {
                add(rep, "containerd.mirrors", DOCTOR_OK, "no registry.mirrors beside config_path");
        }
        if (eff->cri_disabled) {
                add(rep, "containerd.cri", DOCTOR_WARN, "disabled_plugins turns the CRI plugin off: no kubelet pulls "
                                                        "through this containerd");
                fix(rep, "Take the CRI plugin out of disabled_plugins if the kubelet is to use this containerd.");
        } else {
                add(rep, "containerd.cri", DOCTOR_OK, "the CRI plugin is enabled");
        }
}

/* ---- containerd's version ------------------------------------------------------------------ */

static void check_containerd_version(struct doctor_report *rep, const struct spec *s,
                                     const struct agent_containerd_version *v) {
        const char *from = v->source == AGENT_CONTAINERD_SOCKET ? "its socket" : "containerd --version";
        if (v->source == AGENT_CONTAINERD_NONE) {
                add(rep, "containerd.version", DOCTOR_WARN,
                    "containerd's version is unknown (socket: %s; binary: %s): the hosts files follow the rules of "
                    "containerd %s",
                    v->socket_reason[0] ? v->socket_reason : "-", v->binary_reason[0] ? v->binary_reason : "-",
                    s->hosts.containerd_version_auto ? SPEC_CONTAINERD_VERSION_FALLBACK : s->hosts.containerd_version);
                fix(rep, "Give layerd containerd's socket (read-only) or name hosts.containerd_version in the spec.");
        } else if (!s->hosts.containerd_version_auto && v->code < s->hosts.containerd_version_code) {
                add(rep, "containerd.version", DOCTOR_FAIL,
                    "containerd %s (from %s) is older than hosts.containerd_version %s: it may drop files rendered "
                    "for the newer one",
                    v->version, from, s->hosts.containerd_version);
                fix(rep, "Set hosts.containerd_version to %s (the oldest on the nodes), or to auto.", v->version);
        } else if (s->hosts.containerd_version_auto) {
                add(rep, "containerd.version", DOCTOR_OK, "containerd %s (from %s); hosts files rendered for it (auto)",
                    v->version, from);
        } else {
                add(rep, "containerd.version", DOCTOR_OK, "containerd %s (from %s) reads files rendered for %s",
                    v->version, from, s->hosts.containerd_version);
        }
}

/* ---- the hosts files ---------------------------------------------------------------------- */

static void check_hosts_files(struct doctor_report *rep, const struct spec *s, const struct doctor_options *o) {
        _cleanup_(hosts_output_freep) struct hosts_output *out = NULL;
        struct error_list notes;
        if (hosts_render(s, HOSTS_FORMAT_CONTAINERD, o->agent_url, &out, &notes) < 0) {
                add(rep, "hosts.files", DOCTOR_FAIL, "cannot render the hosts files for the spec");
                fix(rep, "Check the spec with layerd check-config.");
                return;
        }
        size_t missing = 0, stale = 0, foreign = 0, same = 0;
        char first[DOCTOR_TEXT_MAX / 2] = "";
        for (size_t i = 0; i < out->n_files; i++) {
                const struct hosts_file *f = &out->files[i];
                /* Registries layerd does not mirror are rendered too, but a file
                 * of their own there is the operator's business. */
                const char *slash = strchr(f->name, '/');
                _cleanup_free_ char *host = slash ? strndup(f->name, (size_t) (slash - f->name)) : NULL;
                const struct spec_registry *reg = host ? spec_find_registry(s, host) : NULL;
                _cleanup_free_ char *path = NULL, *have = NULL;
                size_t size = 0;
                if (asprintf(&path, "%s/%s", o->hosts_dir, f->name) < 0) {
                        rep->oom = true;
                        return;
                }
                int r = read_file_bounded(path, HOSTS_FILE_MAX, &have, &size);
                const char *what = NULL;
                if (r == -ENOENT) {
                        missing++;
                        what = "missing";
                } else if (r < 0) {
                        missing++;
                        what = "unreadable";
                } else if (size == f->size && memcmp(have, f->content, size) == 0) {
                        same++;
                } else if (strncmp(have, HOSTS_MANAGED_MARKER, strlen(HOSTS_MANAGED_MARKER)) != 0) {
                        if (reg && reg->mirror) {
                                foreign++;
                                what = "not written by layerd";
                        } else {
                                same++;
                        }
                } else {
                        stale++;
                        what = "stale";
                }
                if (what && !first[0])
                        snprintf(first, sizeof(first), "%s/%s %s", o->hosts_dir, f->name, what);
        }
        if (missing + stale + foreign == 0) {
                add(rep, "hosts.files", DOCTOR_OK, "%zu files under %s match the spec", same, o->hosts_dir);
                return;
        }
        add(rep, "hosts.files", missing + foreign ? DOCTOR_FAIL : DOCTOR_WARN,
            "%zu missing, %zu stale, %zu not written by layerd, %zu up to date under %s (first: %s)", missing, stale,
            foreign, same, o->hosts_dir, first);
        fix(rep, "Run layerd hosts --dir %s with this spec, or layerd serve --write-hosts %s.", o->hosts_dir,
            o->hosts_dir);
}

/* ---- layerd itself and its endpoints -------------------------------------------------------- */

/* One GET on layerd itself, as containerd reaches it: its /v2/ (path NULL),
 * or path. layerd is nobody's mirror (no ns=). */
static int probe_layerd(const char *agent_url, const char *path, struct fallback_probe_result *p) {
        struct fallback_endpoint_config e = {
                .url = agent_url,
                .is_origin = true,
                .connect_timeout_ms = 1000,
                .response_timeout_ms = 2000,
                .idle_timeout_ms = 2000,
        };
        return path ? fallback_probe_path(&e, path, p) : fallback_probe(&e, NULL, p);
}

static void check_layerd(struct doctor_report *rep, const struct doctor_options *o) {
        struct fallback_probe_result p = {};
        int r = probe_layerd(o->agent_url, NULL, &p);
        if (r < 0 || p.status != 200) {
                add(rep, "layerd.listen", DOCTOR_FAIL, "%s/v2/: %s", o->agent_url, p.reason[0] ? p.reason : "no answer");
                fix(rep, "Start layerd serve with this spec (containerd pulls from the origins meanwhile).");
                return;
        }
        add(rep, "layerd.listen", DOCTOR_OK, "%s/v2/ answers 200 in %" PRIu64 " ms", o->agent_url, p.elapsed_ms);
        p = (struct fallback_probe_result) {};
        r = probe_layerd(o->agent_url, "/readyz", &p);
        if (r < 0 || p.status != 200) {
                add(rep, "layerd.ready", DOCTOR_WARN, "%s/readyz: %s", o->agent_url,
                    r < 0 ? p.reason : "not ready (the first prefetch round is still running)");
                fix(rep, "Wait for the first prefetch round, or see layerd's log.");
                return;
        }
        add(rep, "layerd.ready", DOCTOR_OK, "%s/readyz answers 200", o->agent_url);
}

static void check_endpoints(struct doctor_report *rep, const struct spec *s) {
        for (size_t i = 0; i < s->n_registries; i++) {
                const struct spec_registry *reg = &s->registries[i];
                if (!reg->mirror || strcmp(reg->host, SPEC_DEFAULT_REGISTRY) == 0)
                        continue;
                size_t reachable = 0, first = rep->n;
                for (size_t j = 0; j < reg->n_endpoints; j++) {
                        const struct spec_endpoint *se = &reg->endpoints[j];
                        size_t n_hdrs = 0;
                        for (size_t k = 0; k < se->n_headers; k++)
                                n_hdrs += se->headers[k].n_values;
                        _cleanup_free_ struct fallback_header *hdrs = calloc(n_hdrs + 1, sizeof(*hdrs));
                        if (!hdrs) {
                                rep->oom = true;
                                return;
                        }
                        struct fallback_endpoint_config e;
                        (void) agent_endpoint_config(se, hdrs, &e);
                        struct fallback_probe_result p = {};
                        char name[DOCTOR_NAME_MAX];
                        snprintf(name, sizeof(name), "endpoint.%s.%zu", reg->host, j);
                        int r = fallback_probe(&e, reg->host, &p);
                        /* 401: it answers and wants a token, as registries do. */
                        if (r == 0 && ((p.status >= 200 && p.status < 300) || p.status == 401)) {
                                reachable++;
                                add(rep, name, DOCTOR_OK, "%s answers %d in %" PRIu64 " ms%s%s", p.url, p.status,
                                    p.elapsed_ms, p.reason[0] ? ": " : "", p.reason);
                        } else {
                                add(rep, name, DOCTOR_WARN, "%s: %s", p.url[0] ? p.url : se->url,
                                    p.reason[0] ? p.reason : "no answer");
                                fix(rep, "Check the endpoint's address, TLS settings and timeouts; layerd moves on to "
                                         "the next one meanwhile.");
                        }
                }
                /* No endpoint of the chain answers: only the cache can serve. */
                if (reachable == 0 && reg->n_endpoints > 0) {
                        for (size_t k = first; k < rep->n; k++) {
                                rep->count[rep->checks[k].status]--;
                                rep->checks[k].status = DOCTOR_FAIL;
                                rep->count[DOCTOR_FAIL]++;
                        }
                        fix(rep, "No endpoint of %s answers: only what is cached can be pulled; check the network "
                                 "path to them.", reg->host);
                }
        }
}

/* ---- the cache directory ------------------------------------------------------------------ */

/* Sizes for a person: "83.2 GiB" (format_size() writes exact values for specs). */
static void human_size(uint64_t bytes, char *buf, size_t size) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double) bytes;
        size_t u = 0;
        while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                u++;
        }
        snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void check_cache(struct doctor_report *rep, const struct spec *s, const struct doctor_options *o) {
        struct stat st;
        const char *dir = o->cache_dir;
        _cleanup_free_ char *parent = NULL;
        bool exists = stat(dir, &st) == 0;
        if (!exists && errno != ENOENT) {
                add(rep, "cache.dir", DOCTOR_FAIL, "%s: %s", dir, strerror(errno));
                fix(rep, "Make %s a directory the user layerd runs as can write.", dir);
                return;
        }
        if (!exists) {
                /* serve creates it, with its missing parents: the nearest
                 * existing ancestor must let it. */
                parent = strdup(dir);
                if (!parent) {
                        rep->oom = true;
                        return;
                }
                for (;;) {
                        /* cache_dir is absolute (the spec and --cache-dir see to it). */
                        char *slash = strrchr(parent, '/');
                        if (!slash || slash == parent) {
                                parent[0] = '/';
                                parent[1] = '\0';
                                break;
                        }
                        *slash = '\0';
                        if (stat(parent, &st) == 0 || errno != ENOENT)
                                break;
                }
                if (access(parent, W_OK | X_OK) < 0) {
                        add(rep, "cache.dir", DOCTOR_FAIL, "%s does not exist and cannot be created: %s: %s", dir,
                            parent, strerror(errno));
                        fix(rep, "Create %s, owned by the user layerd runs as.", dir);
                        return;
                }
                add(rep, "cache.dir", DOCTOR_OK, "%s does not exist yet; layerd serve creates it", dir);
        } else if (!S_ISDIR(st.st_mode)) {
                add(rep, "cache.dir", DOCTOR_FAIL, "%s is not a directory", dir);
                fix(rep, "Point agent.cache_dir at a directory.");
                return;
        } else if (access(dir, W_OK | X_OK) < 0) {
                add(rep, "cache.dir", DOCTOR_FAIL, "%s is not writable by uid %u (owner uid %u)", dir,
                    (unsigned) geteuid(), (unsigned) st.st_uid);
                fix(rep, "Give the directory to the user layerd runs as (chown).");
                return;
        } else {
                struct statfs sf;
                const char *fs = NULL;
                if (statfs(dir, &sf) == 0) {
                        if ((unsigned long) sf.f_type == TMPFS_MAGIC_)
                                fs = "tmpfs: the cache lives in memory and is lost at every reboot";
                        else if ((unsigned long) sf.f_type == OVERLAYFS_MAGIC_)
                                fs = "overlayfs: the container's own layer, lost with the container";
                        else if ((unsigned long) sf.f_type == NFS_MAGIC_)
                                fs = "NFS: a network hop for every cached byte";
                }
                if (fs) {
                        add(rep, "cache.dir", DOCTOR_WARN, "%s is on %s", dir, fs);
                        fix(rep, "Put the cache on the node's own disk (a hostPath in Kubernetes).");
                } else {
                        add(rep, "cache.dir", DOCTOR_OK, "%s, owner uid %u, writable", dir, (unsigned) st.st_uid);
                }
        }
        const char *probe = parent ? parent : dir;
        struct statvfs sv;
        uint64_t max = 0, min_free = 0;
        int r = statvfs(probe, &sv) < 0 ? -errno : agent_cache_limits(s, probe, &max, &min_free);
        if (r < 0) {
                add(rep, "cache.space", DOCTOR_WARN, "cannot measure the file system of %s: %s", probe, strerror(-r));
                fix(rep, "Check that %s is on a mounted file system.", probe);
                return;
        }
        uint64_t avail = (uint64_t) sv.f_bavail * sv.f_frsize;
        char a[32], m[32], f[32];
        human_size(avail, a, sizeof(a));
        human_size(max, m, sizeof(m));
        human_size(min_free, f, sizeof(f));
        if (avail < min_free) {
                add(rep, "cache.space", DOCTOR_WARN, "%s free, below cache_min_free %s: layerd caches nothing new", a, f);
                fix(rep, "Free space on the file system of %s, or lower agent.cache_min_free.", probe);
        } else if (avail < max / 10) {
                add(rep, "cache.space", DOCTOR_WARN, "%s free for a cache of up to %s", a, m);
                fix(rep, "Lower agent.cache_max_size or give the cache a larger file system.");
        } else {
                add(rep, "cache.space", DOCTOR_OK, "%s free, cache_max_size %s, cache_min_free %s", a, m, f);
        }
}

int doctor_run(const struct spec *s, const struct doctor_options *o, struct doctor_report *ret) {
        struct doctor_report rep = {};
        check_containerd_config(&rep, s, o);
        if (o->version)
                check_containerd_version(&rep, s, o->version);
        if (!o->skip_hosts_files)
                check_hosts_files(&rep, s, o);
        if (!o->local_only)
                check_layerd(&rep, o);
        if (!o->local_only && !o->offline)
                check_endpoints(&rep, s);
        check_cache(&rep, s, o);
        /* A report with a check missing would pass a node nobody looked at. */
        if (rep.oom) {
                doctor_report_done(&rep);
                return -ENOMEM;
        }
        *ret = rep;
        return 0;
}

/* ---- output --------------------------------------------------------------------------------- */

static void print_json(const struct doctor_report *rep, FILE *f) {
        fputs("{\"checks\":[", f);
        for (size_t i = 0; i < rep->n; i++) {
                const struct doctor_check *c = &rep->checks[i];
                fputs(i ? ",{\"name\":" : "{\"name\":", f);
                json_write_string(f, c->name);
                fprintf(f, ",\"status\":\"%s\",\"message\":", status_names[c->status]);
                json_write_string(f, c->message);
                fputs(",\"fix\":", f);
                json_write_string(f, c->fix);
                fputc('}', f);
        }
        fprintf(f, "],\"ok\":%zu,\"warn\":%zu,\"fail\":%zu}\n", rep->count[DOCTOR_OK], rep->count[DOCTOR_WARN],
                rep->count[DOCTOR_FAIL]);
}

static void print_text(const struct doctor_report *rep, FILE *f) {
        for (size_t i = 0; i < rep->n; i++) {
                const struct doctor_check *c = &rep->checks[i];
                fprintf(f, "%-4s %s: %s\n", status_names[c->status], c->name, c->message);
                if (c->status != DOCTOR_OK && c->fix[0])
                        fprintf(f, "     fix: %s\n", c->fix);
        }
        fprintf(f, "%zu ok, %zu warn, %zu fail\n", rep->count[DOCTOR_OK], rep->count[DOCTOR_WARN],
                rep->count[DOCTOR_FAIL]);
}

void doctor_log_summary(const struct spec *s, const struct doctor_options *o) {
        struct doctor_report rep = {};
        struct doctor_options local = *o;
        local.local_only = true;
        (void) doctor_run(s, &local, &rep);
        /* Every check that is not ok, by name, as long as they fit; "..." says more were left out. */
        char bad[NOT_OK_TEXT_MAX] = "";
        size_t len = 0;
        for (size_t i = 0; i < rep.n; i++) {
                if (rep.checks[i].status == DOCTOR_OK)
                        continue;
                char one[DOCTOR_NAME_MAX + 8];
                int w = snprintf(one, sizeof(one), "%s%s=%s", len ? " " : "", rep.checks[i].name,
                                 status_names[rep.checks[i].status]);
                if (w < 0 || (size_t) w >= sizeof(bad) - len - 4) {
                        memcpy(bad + len, " ...", 5);
                        break;
                }
                memcpy(bad + len, one, (size_t) w + 1);
                len += (size_t) w;
        }
        if (rep.count[DOCTOR_WARN] + rep.count[DOCTOR_FAIL] == 0)
                log_info("doctor ok=%zu warn=0 fail=0 containerd_config=\"%s\" hosts_dir=\"%s\"", rep.count[DOCTOR_OK],
                         o->containerd_config, o->hosts_dir);
        else
                log_warning("doctor ok=%zu warn=%zu fail=%zu %s containerd_config=\"%s\" hosts_dir=\"%s\" (layerd doctor "
                            "says how to fix each)",
                            rep.count[DOCTOR_OK], rep.count[DOCTOR_WARN], rep.count[DOCTOR_FAIL], bad,
                            o->containerd_config, o->hosts_dir);
        doctor_report_done(&rep);
}

static const char usage_doctor[] =
        "Usage: layerd doctor [--spec FILE] [--containerd-config FILE] [--hosts-dir DIR]\n"
        "                     [--containerd-socket PATH] [--offline] [--format text|json]\n"
        "\n"
        "Check that this node's pulls go through layerd: containerd's config (config_path\n"
        "under the table its version reads, no conflicting registry.mirrors), containerd's\n"
        "version, the hosts files against the spec, layerd itself, each endpoint, and the\n"
        "cache directory. One line per check (ok, warn or fail), with the fix for each\n"
        "that is not ok.\n"
        "\n"
        "  --spec FILE                the cluster spec; the built-in one when absent\n"
        "  --containerd-config FILE   containerd's config (default " DOCTOR_DEFAULT_CONTAINERD_CONFIG ")\n"
        "  --hosts-dir DIR            where the hosts files are (default " DOCTOR_DEFAULT_HOSTS_DIR ")\n"
        "  --containerd-socket PATH   asked for containerd's version (default " AGENT_CONTAINERD_SOCKET_DEFAULT ")\n"
        "  --offline                  contact no endpoint of the spec\n"
        "  --format FORMAT            text (default) or json\n"
        "  -h, --help                 show this help\n"
        "\n"
        "Exit status: 0 nothing failed, 1 a check failed, 2 usage or configuration error.\n";

int agent_cmd_doctor(int argc, char **argv) {
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' },
                { "containerd-config", required_argument, NULL, 'c' },
                { "hosts-dir", required_argument, NULL, 'd' },
                { "containerd-socket", required_argument, NULL, 'S' },
                { "offline", no_argument, NULL, 'o' },
                { "format", required_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(spec_freep) struct spec *spec = NULL;
        _cleanup_free_ char *agent_url = NULL;
        struct doctor_options o = {
                .containerd_config = DOCTOR_DEFAULT_CONTAINERD_CONFIG,
                .hosts_dir = DOCTOR_DEFAULT_HOSTS_DIR,
                .containerd_socket = AGENT_CONTAINERD_SOCKET_DEFAULT,
        };
        const char *spec_path = NULL;
        bool json = false;
        struct error_list errors;
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        spec_path = optarg;
                        break;
                case 'c':
                        o.containerd_config = optarg;
                        break;
                case 'd':
                        o.hosts_dir = optarg;
                        break;
                case 'S':
                        o.containerd_socket = optarg;
                        break;
                case 'o':
                        o.offline = true;
                        break;
                case 'f':
                        if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
                                fprintf(stderr, "layerd doctor: --format: text or json, not \"%s\"\n", optarg);
                                return 2;
                        }
                        json = strcmp(optarg, "json") == 0;
                        break;
                case 'h':
                        fputs(usage_doctor, stdout);
                        return 0;
                default:
                        fputs(usage_doctor, stderr);
                        return 2;
                }
        }
        if (optind != argc) {
                fprintf(stderr, "layerd doctor: unexpected argument \"%s\"\n", argv[optind]);
                return 2;
        }
        /* Every finding is a check of the report; log lines would only repeat them. */
        agent_log_set_max_level(LOG_ERR);
        int r = agent_load_spec(spec_path, &spec, &errors);
        if (r < 0) {
                (void) error_list_print(&errors, stderr);
                return r == -ENOMEM ? 1 : 2;
        }
        /* Detected whatever the spec says: the check compares the two. */
        struct agent_containerd_version version = {};
        r = spec->hosts.containerd_version_auto ? agent_resolve_spec_version(spec, o.containerd_socket, &version)
                                                : agent_containerd_version(o.containerd_socket, &version);
        if (r < 0) {
                fprintf(stderr, "layerd doctor: %s\n", strerror(-r));
                return 1;
        }
        o.version = &version;
        agent_url = hosts_agent_url(spec->agent.listen_host, spec->agent.listen_port);
        if (!agent_url)
                return 1;
        o.agent_url = agent_url;
        o.cache_dir = spec->agent.cache_dir;

        struct doctor_report rep = {};
        r = doctor_run(spec, &o, &rep);
        if (r < 0) {
                fprintf(stderr, "layerd doctor: %s\n", strerror(-r));
                return 1;
        }
        if (json)
                print_json(&rep, stdout);
        else
                print_text(&rep, stdout);
        int status = rep.count[DOCTOR_FAIL] ? 1 : 0;
        doctor_report_done(&rep);
        return fflush(stdout) == 0 ? status : 1;
}
