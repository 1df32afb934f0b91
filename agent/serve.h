/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `layerd serve`: the HTTP front end on libmicrohttpd. */

#include <stdint.h>

#include "hostsconfig/spec.h"

struct serve_config {
        const struct spec *spec; /* borrowed */
        const char *listen_host; /* effective values: the spec's, or the command line's */
        uint16_t listen_port;
        const char *cache_dir;
};

/* Listens, notifies readiness, and serves until SIGTERM or SIGINT; returns 0
 * on a clean stop, -errno when it could not start (already logged). */
int serve_run(const struct serve_config *cfg);
