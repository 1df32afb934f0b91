/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The HTTP front end of the pull API on libmicrohttpd: /v2/ routes (manifests,
 * blobs, tag lists) answered by the pull core, /metrics, /healthz, /readyz.
 * MHD runs a pool of event-loop threads (MHD_USE_POLL, see agent/serve.c;
 * MHD_ALLOW_SUSPEND_RESUME): http_handle() answers what needs no upstream at
 * once and suspends the rest onto threads of their own (agent/http.c,
 * "Threads"). */

#include <microhttpd.h>

/* The MHD access handler and completion notifier; cls is the struct pull. */
enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                            const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls);
void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe);
