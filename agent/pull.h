/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The OCI distribution pull API on libmicrohttpd: manifests and blobs from
 * the cache, misses through the fallback chains into the cache, streamed to
 * every waiting client while they download; /metrics, /healthz, /readyz.
 * MHD runs a pool of event-loop threads (MHD_USE_EPOLL, MHD_ALLOW_SUSPEND_RESUME):
 * pull_handle() answers what needs no upstream at once and suspends the rest
 * onto threads of their own (agent/pull.c, "Threads"). */

#include <microhttpd.h>
#include <stdbool.h>

#include "cache/cache.h"
#include "fallback/fallback.h"
#include "hostsconfig/spec.h"

struct pull;

/* The state request threads share. cache and fb stay the caller's and must
 * outlive it; spec is taken over; cache_dir (copied) is where /metrics reads
 * the file system's free space. */
int pull_new(struct cache *cache, const char *cache_dir, struct fallback *fb, struct spec *spec, struct pull **ret);

/* Frees; call after the MHD daemon stopped and pull_shutdown() returned. */
struct pull *pull_free(struct pull *p);

/* A new spec for requests that start from now on (taken over); requests in
 * flight finish with the one they started with. */
void pull_set_spec(struct pull *p, struct spec *spec);

/* Stops downloads from going on (they are cut at their next bytes) and
 * waits at most timeout_ms for their threads to end and for every suspended
 * connection to be resumed (libmicrohttpd cannot stop with one). Returns 0,
 * or -ETIMEDOUT with threads still running (then neither MHD_stop_daemon()
 * nor pull_free() may run). */
int pull_shutdown(struct pull *p, int timeout_ms);

/* The MHD access handler and completion notifier; cls is the struct pull. */
enum MHD_Result pull_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                            const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls);
void pull_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe);

/* Counters for the service manager's STATUS= line. */
void pull_status(struct pull *p, char *buf, size_t size);
