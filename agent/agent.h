/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the agent's subcommands share. */

#include <stdbool.h>
#include <stdio.h>

#include "common/error.h"
#include "fallback/fallback.h"
#include "hostsconfig/hosts.h"
#include "hostsconfig/spec.h"

/* Loads the spec at path, or the built-in one when path is NULL, with the
 * per-user default cache directory. Returns 0, -ENOMEM, or -errno/-EINVAL with
 * the reasons in errors. */
int agent_load_spec(const char *path, struct spec **ret, struct error_list *errors);

/* Renders s for format and applies it to dir (hosts_apply flags). With
 * diff_out, a unified diff of every change goes there. Returns 0 with the
 * report, or -errno with the reasons in errors; notes gets what the format left out. */
int agent_write_hosts(const struct spec *s, const char *agent_url, enum hosts_format format, const char *dir,
                      unsigned flags, FILE *diff_out, struct hosts_report **ret, struct error_list *notes,
                      struct error_list *errors);

/* `layerd cache COMMAND`; returns the exit status. */
int agent_cmd_cache(int argc, char **argv);

/* The cache's bounds in bytes: agent.cache_max_size (a percentage is taken of
 * the file system holding dir) and agent.cache_min_free. Returns 0 or -errno. */
int agent_cache_limits(const struct spec *s, const char *dir, uint64_t *ret_max, uint64_t *ret_min_free);

struct cache;

/* Applies the spec's bounds to c: agent_cache_limits() and agent.cache_max_age
 * (starting the eviction thread when one is set). Returns 0 with the size
 * bound in *ret_max (may be NULL), or -errno. */
int agent_cache_apply_limits(const struct spec *s, const char *dir, struct cache *c, uint64_t *ret_max);

/* From now on every eviction pass of c is logged, one line with its counts
 * by reason (size, free space, age). */
void agent_cache_log_evictions(struct cache *c);

/* The spec's mirrored registries (never _default, never mirror: false) as
 * fallback chains (tags resolved only where "resolve" is allowed, content
 * pulled only where "pull" is). A bad credentials file
 * is an error in errors and nothing changes. */
int agent_fallback_configure(struct fallback *fb, const struct spec *s, struct error_list *errors);

/* Fills ec from the spec's endpoint se (borrowing its strings), with its
 * headers, one per value, in hdrs (room for every value of se's headers).
 * Returns how many of hdrs it used. */
size_t agent_endpoint_config(const struct spec_endpoint *se, struct fallback_header *hdrs,
                             struct fallback_endpoint_config *ec);

/* The last failure of the endpoint at URL endpoint reported by a fallback
 * client agent_fallback_new() made (what `layerd status` shows): copies its
 * reason to buf and returns true, or false when it never failed. */
#define AGENT_ENDPOINT_TEXT_MAX 256
#define AGENT_LAST_ERROR_MAX 160
bool agent_upstream_last_error(const char *endpoint, char *buf, size_t size, int64_t *ret_when_s);

/* A fallback client for s whose events are logged. */
int agent_fallback_new(const struct spec *s, struct fallback **ret, struct error_list *errors);

/* `layerd prefetch`; returns the exit status. */
int agent_cmd_prefetch(int argc, char **argv);

/* `layerd cache stats|ls|verify|gc` (what) on the open cache at dir, whose
 * bounds s gives (gc; NULL: the bounds already set, as in the running agent,
 * where a spec taken before a long wait could undo a reload's): the output to
 * out, errors to err. The same for the command line and the running agent's
 * admin API. Returns the exit status. */
struct cache;
int agent_cache_command(struct cache *cache, const char *dir, const struct spec *s, const char *what, FILE *out,
                        FILE *err);

/* `layerd cache rm`: drops the tag records of images (registry/repository
 * with :tag, or @digest: every record of that digest in the repository) and
 * removes every blob they need that no other recorded image needs and no pin
 * holds, worked out from the manifests in c. Returns the exit status (1 when
 * an image was not in the cache). */
struct pull;
int agent_cache_rm(struct cache *c, char **images, size_t n_images, FILE *out, FILE *err);

/* `layerd cache refresh`: revalidates the tags of images now through p's
 * chains (NULL: no agent runs; says so). Returns the exit status. */
int agent_cache_refresh(struct pull *p, char **images, size_t n_images, FILE *out, FILE *err);

/* `layerd cache check`: images (or, with none, the prefetch list of p's spec)
 * in p's cache, offline, on the given platforms (none: the list's, else the
 * node's own), one line per image and platform to out. Returns the exit
 * status: 0 every blob present and verified, 1 not, 2 usage. */
struct pull;
int agent_cache_check(struct pull *p, char **images, size_t n_images, char **platforms, size_t n_platforms, FILE *out,
                      FILE *err);

/* `layerd prefetch`'s report of one round: round runs it with the hooks it
 * is given (returning prefetch_round()'s value, or -ENODATA when the spec
 * lists nothing); progress lines go to err (rewritten in place when tty), the
 * summary table to out. The same for the command line and the admin API.
 * Returns the exit status. */
struct prefetch_hooks;
struct prefetch_round_stats;
int agent_prefetch_report(int (*round)(void *cls, const struct prefetch_hooks *h, struct prefetch_round_stats *st),
                          void *cls, bool tty, FILE *out, FILE *err);

/* `layerd fetch`; returns the exit status. */
int agent_cmd_fetch(int argc, char **argv);

/* ---- the node's containerd ------------------------------------------------------------ */

#define AGENT_CONTAINERD_SOCKET_DEFAULT "/run/containerd/containerd.sock"
#define AGENT_CONTAINERD_BINARY_TIMEOUT_MS 2000 /* `containerd --version` */
#define AGENT_CONTAINERD_REASON_MAX 192
#define AGENT_CONTAINERD_REPORTED_MAX 128 /* a version as containerd spelled it, quoted and cut, NUL included */

enum agent_containerd_source {
        AGENT_CONTAINERD_SOCKET, /* its gRPC socket answered */
        AGENT_CONTAINERD_BINARY, /* `containerd --version`, from PATH */
        AGENT_CONTAINERD_NONE,   /* neither: the 1.6 rules apply */
        _AGENT_CONTAINERD_SOURCE_MAX,
};

struct agent_containerd_version {
        enum agent_containerd_source source;
        char version[SPEC_CONTAINERD_VERSION_MAX]; /* "1.6.20"; "" for NONE */
        unsigned code;                             /* spec_containerd_version_normalize()'s; 0 for NONE */
        char reported[AGENT_CONTAINERD_REPORTED_MAX]; /* as containerd spelled it ("1.6.20~ds1"); "" for NONE */
        char socket_reason[AGENT_CONTAINERD_REASON_MAX]; /* why the socket gave none; "" when it did */
        char binary_reason[AGENT_CONTAINERD_REASON_MAX]; /* why the binary gave none; "" when it did or was not run */
};

const char *agent_containerd_source_to_string(enum agent_containerd_source s);

/* The version of the node's containerd: from its socket (socket_path, at
 * most FALLBACK_CONTAINERD_TIMEOUT_MS), else from `containerd --version`
 * found on PATH (no shell, output bounded, killed after
 * AGENT_CONTAINERD_BINARY_TIMEOUT_MS), else source NONE. Never logs.
 * Returns 0 with *ret filled in (NONE is not an error), or -ENOMEM. */
int agent_containerd_version(const char *socket_path, struct agent_containerd_version *ret);

/* When s says containerd_version: auto, detects the version (as above),
 * fills it into s (spec_set_containerd_version()) and logs one line saying
 * which and from where, or, at warning level, that the 1.6 rules apply.
 * A spec naming its version is left alone. Call before s is shared.
 * Returns 0 or -ENOMEM; *ret (may be NULL) gets the detection when one ran. */
int agent_resolve_spec_version(struct spec *s, const char *socket_path, struct agent_containerd_version *ret);

/* Runs argv[0] (found on PATH, no shell) with stdin and stderr on /dev/null
 * and returns its standard output (NUL-terminated, at most max bytes) and
 * exit status (128 + signal when killed). The program is killed when it runs
 * past timeout_ms (-ETIMEDOUT) or writes more than max (-EFBIG). Returns 0,
 * or -errno (-ENOENT: no such program). */
int agent_run(char *const argv[], uint64_t timeout_ms, size_t max, char **ret_out, size_t *ret_size, int *ret_status);
