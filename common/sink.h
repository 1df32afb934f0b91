/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Where a producer (fallback/, downloading a blob) puts bytes without knowing
 * who consumes them (agent/ binds it to a cache writer and its readers).
 * A small vtable in the OpenSMTPD back-end style: the producer calls start()
 * once a good answer is known, then write() with the bytes in order. */

#include <stddef.h>
#include <stdint.h>

struct sink {
        void *userdata;
        /* The answer that will deliver the bytes is known: total is the whole
         * object's size (-1 when the upstream did not say). May be called
         * again after a resume from another endpoint, with the same total.
         * NULL: not interested. A negative errno aborts the download. */
        int (*start)(void *userdata, int64_t total);
        /* The next bytes, in order; a negative errno aborts the download. */
        int (*write)(void *userdata, const void *data, size_t size);
};
