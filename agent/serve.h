/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `layerd serve`: the HTTP front end on libmicrohttpd. */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/specwatch.h"
#include "hostsconfig/spec.h"

/* The command line's settings; NULL/0 where the spec decides. */
#define SERVE_CONFIG_ERROR (-EINVAL)

struct serve_config {
        const char *spec_path;      /* NULL: the built-in spec */
        const struct spec_print *spec_seen; /* what spec_path held before it was loaded; NULL: read at the watch's start */
        const char *listen_host;    /* overrides agent.listen */
        uint16_t listen_port;
        const char *cache_dir;      /* overrides agent.cache_dir */
        const char *write_hosts_dir; /* containerd hosts directory to keep in step with the spec */
        const char *containerd_socket; /* asked for containerd's version when the spec says auto */
        const char *containerd_config; /* containerd's config, for the start-up checks */
        const char *metrics_host;   /* overrides agent.metrics_listen */
        uint16_t metrics_port;
        bool no_watch;              /* reload on SIGHUP only, not when the spec file changes */
        const char *admin_socket;   /* overrides agent.admin_socket ("" = none) */
        const char *version;        /* shown by `layerd status` */
};

/* Blocks the signals serve_run() waits for (SIGTERM, SIGINT, SIGHUP) and
 * ignores SIGPIPE. Call first thing, before any thread exists and before
 * slow start-up work, so an early SIGHUP cannot kill the process. */
int serve_block_signals(void);

/* Listens, writes hosts files, notifies readiness, and serves until SIGTERM or
 * SIGINT; SIGHUP reloads the spec (a bad one is logged and the old one kept)
 * and rewrites the hosts files, and so does a change of the spec file's
 * content (unless cfg->no_watch). *spec is owned, and may be replaced by a
 * reload. Returns 0 on a clean stop; SERVE_CONFIG_ERROR when the
 * configuration cannot work (the hosts directory was refused before anything
 * was written); another -errno when it could not start. Both already logged. */
int serve_run(const struct serve_config *cfg, struct spec **spec);
