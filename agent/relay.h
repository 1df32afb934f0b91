/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Stream-through for one client when the cache cannot take a blob (see
 * relay.c). A relay is used by one reading thread; its producer runs on a
 * thread of its own. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/digest.h"
#include "fallback/fallback.h"

#define RELAY_WAIT_MS 60000 /* a reader that takes no bytes for this long is gone */

struct relay;

/* How the owner of the fallback client keeps track of relay threads. */
struct relay_hooks {
        const atomic_bool *stopping;         /* set: the producer stops at its next bytes */
        void (*exited)(void *userdata);      /* the producer's last act (it no longer uses fb) */
        void *userdata;
};

/* Starts fetching blob d from registry/repository through fb, from its first
 * byte (so that its digest can be checked). expected_size is the size a
 * client was already promised (-1: none); an upstream that says another one
 * fails the relay. hooks is copied; fb must stay until hooks->exited was called. */
int relay_new(struct fallback *fb, const char *registry, const char *repository, const struct digest *d,
              int64_t expected_size, const struct relay_hooks *hooks, struct relay **ret);

/* The blob's size once the upstream said it, waiting at most timeout_ms.
 * -ETIMEDOUT; -EIO and friends when the fetch failed first, with the
 * upstream's final status (404, 503...) in *ret_status. */
int relay_wait_size(struct relay *r, int timeout_ms, uint64_t *ret_size, int *ret_status);

/* Up to size bytes, in order from the first; the last byte only once the
 * digest verified. 0 at the verified end; -EBADMSG on a digest mismatch,
 * another -errno when the fetch failed; -ETIMEDOUT. */
ssize_t relay_read(struct relay *r, void *buf, size_t size, int timeout_ms);

/* Waits at most timeout_ms until relay_read() would not wait (bytes to
 * read, the end, or a failure): 0, or -ETIMEDOUT. Consumes nothing. */
int relay_wait(struct relay *r, int timeout_ms);

/* Lets go; a producer still running stops at its next bytes. Returns NULL. */
struct relay *relay_free(struct relay *r);
