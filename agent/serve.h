/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `layerd serve`: the HTTP front end on libmicrohttpd. */

#include <stdint.h>

#include "hostsconfig/spec.h"

/* The command line's settings; NULL/0 where the spec decides. */
struct serve_config {
        const char *spec_path;      /* NULL: the built-in spec */
        const char *listen_host;    /* overrides agent.listen */
        uint16_t listen_port;
        const char *cache_dir;      /* overrides agent.cache_dir */
        const char *write_hosts_dir; /* containerd hosts directory to keep in step with the spec */
};

/* Listens, writes hosts files, notifies readiness, and serves until SIGTERM or
 * SIGINT; SIGHUP reloads the spec (a bad one is logged and the old one kept)
 * and rewrites the hosts files. *spec is owned, and may be replaced by a
 * reload. Returns 0 on a clean stop; -EINVAL when the configuration cannot
 * work (hosts directory unwritable), other -errno when it could not start;
 * both already logged. */
int serve_run(const struct serve_config *cfg, struct spec **spec);
