/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A blob streamed to one client while it downloads (the body of a
 * libmicrohttpd callback response): read without waiting on the event loop;
 * when nothing is there yet the connection is suspended and the stream's
 * waker thread resumes it when bytes arrive. The last byte only once the
 * download verified; a failure or a mismatch cuts the connection, never a
 * complete body with wrong bytes. When the cache's disk fills up under a
 * download, the rest comes through memory (stream-through). */

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/pull-internal.h"

struct stream;

struct stream_params {
        struct pull *pull;
        struct MHD_Connection *conn;
        atomic_uint_fast64_t *sent;   /* the request's count of body bytes sent */
        char *endpoint;               /* the request's endpoint for its log line, set at the end */
        size_t endpoint_size;
        const char *registry, *repository;
        struct digest digest;
        uint64_t start, length, size; /* the range sent, of the whole blob's size */
        bool holds_wait;              /* the caller's slot of agent.max_upstream_waits passes to the stream */
};

/* A stream of the download h (which stays the caller's: the stream follows
 * it with a reader of its own). With sp->holds_wait, the stream takes the
 * caller's upstream-wait slot over on success and gives it back when freed.
 * -ENOBUFS when the pull's memory budget has no room for its block buffer. */
int stream_new(const struct stream_params *sp, const struct download_hold *h, struct stream **ret);

/* The MHD content reader and its free callback; cls is the stream. */
ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max);
void stream_free(void *cls);
