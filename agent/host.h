/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Whether a request's Host header names this node the way a local client
 * does: a web page in a browser on the node could otherwise reach the pull API
 * through DNS rebinding (its own name, resolved to 127.0.0.1, in Host).
 * containerd, skopeo and podman send the address they were given. Pure: no
 * I/O, no libmicrohttpd, so it is unit tested on its own. */

#include <stdbool.h>
#include <sys/socket.h>

#define HOST_HEADER_MAX 300 /* longer is no name or address of ours */

/* True when host (the Host header's value; NULL when the request had none,
 * as HTTP/1.0 allows) is a loopback name or address — "localhost",
 * 127.0.0.0/8, [::1], [::ffff:127.x.y.z] — or the address the connection
 * arrived on (local, its socket's own; NULL when unknown), with any port or
 * none. Anything else (a name, another address, a malformed value) is false. */
bool host_is_acceptable(const char *host, const struct sockaddr *local, socklen_t local_len);
