/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The metrics listener (agent.metrics_listen, `serve --metrics-listen`): an
 * HTTP server of its own for Prometheus and probes on an address the pull API
 * does not use (the node's, on Kubernetes, where the pod shares the host's
 * network). It answers GET and HEAD of /metrics, /healthz and /readyz only,
 * with the pull API's texts; every other path is 404 and every other method
 * 405, so nothing of the pull API is reachable through it. Its Host header is
 * not checked: a scraper names the node as it likes, and nothing here acts
 * on a request. A libmicrohttpd daemon apart from the pull API's, with one
 * thread, METRICS_LISTEN_CONNECTIONS connections at most (those past it are
 * closed at once) and short timeouts: a flood of connections on it takes
 * nothing from the pull API's admission, threads or memory budget. */

#include <stdio.h>

#define METRICS_LISTEN_CONNECTIONS 16   /* open at once; more are closed as they come */
#define METRICS_LISTEN_PER_IP 8         /* of those, from one address */
#define METRICS_LISTEN_TIMEOUT_S 10     /* an idle or slow connection is closed after it */
#define METRICS_LISTEN_BACKLOG 16

struct pull;
struct metrics_listener;

/* Serves on listen_fd (a listening socket, taken over: closed by
 * metrics_listen_stop(), or here on failure) from p's counters, with the
 * listener's own after them (in its /metrics only). p must outlive the
 * listener. Returns 0 or -errno. */
int metrics_listen_start(struct pull *p, int listen_fd, struct metrics_listener **ret);

/* Stops serving (joins the thread, closes every connection) and frees m; NULL-safe; returns NULL. */
struct metrics_listener *metrics_listen_stop(struct metrics_listener *m);
