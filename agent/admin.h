/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The admin API (docs/agent.md, "Admin API"): HTTP/1.1 on a unix socket of
 * mode 0600, for the operator's commands while the agent runs. The agent's
 * side (admin.c, on libmicrohttpd) runs the very functions the offline
 * commands run and answers with their output; the command line's side
 * (admin-client.c) connects, asks and prints. */

#include <stdint.h>
#include <stdio.h>

#include "hostsconfig/spec.h"

#define ADMIN_SOCKET_NAME "admin.sock" /* under the cache directory, when the spec names no socket */
#define ADMIN_CONNECTIONS_MAX 4        /* operators' commands at once */
#define ADMIN_TIMEOUT_S 30             /* an idle or slow request is cut after this */
#define ADMIN_REQUEST_MEMORY (16 * 1024) /* request line and headers; bodies are refused */
#define ADMIN_ARGS_MAX 64              /* images or platforms of one request */

struct cache;
struct pull;
struct prefetch;

/* What the admin API works on: the running agent's own objects, borrowed. */
struct admin_target {
        struct cache *cache;
        const char *cache_dir;
        struct pull *pull;
        struct prefetch *pf;
        const char *version;
        uint64_t started_ms; /* time_now_ms() at start */
        int64_t started_s;   /* wall clock at start */
};

/* The admin socket's path: override when given ("" = none), else the spec's
 * agent.admin_socket, else <cache_dir>/admin.sock. Writes it to buf and
 * returns 1, 0 when there is no admin socket, or -ENAMETOOLONG. */
int admin_socket_path(const struct spec *s, const char *cache_dir, const char *override, char *buf, size_t size);

/* Binds path (mode 0600 from the start; its directory created 0700 when
 * missing; a stale socket replaced only when nothing answers on it) and serves
 * the admin API on it with a thread per connection, at most
 * ADMIN_CONNECTIONS_MAX. t must outlive the daemon. Returns 0, -EADDRINUSE
 * (an agent answers there), -EEXIST (something else is there) or -errno. */
struct admin;
int admin_start(const char *path, const struct admin_target *t, struct admin **ret);

/* Stops serving (waits for commands in progress) and removes the socket file
 * when it is still the one bound. Accepts NULL; returns NULL. */
struct admin *admin_stop(struct admin *a);

/* ---- the command line's side ------------------------------------------------------- */

#define ADMIN_NO_AGENT 256 /* admin_remote(): no agent answers; run the command offline */

/* Runs the command at target (e.g. "/v1/cache/stats") on the agent behind
 * socket_path (NULL: none), printing its output and errors to stdout and
 * stderr as the command prints them offline. Returns the command's exit
 * status, ADMIN_NO_AGENT when no agent listens there, or 1 after printing why
 * the agent could not be asked. */
int admin_remote(const char *socket_path, const char *method, const char *target, const char *who);

/* admin_remote() naming the cache directory the command is for (NULL: none):
 * an agent serving another directory refuses, and this returns 1 saying so. */
int admin_remote_dir(const char *socket_path, const char *method, const char *target, const char *cache_dir,
                     const char *who);
