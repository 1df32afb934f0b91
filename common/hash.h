/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* FNV-1a (64 bits), for the in-memory tables keyed by strings (not a
 * cryptographic hash: nothing here may depend on it resisting collisions).
 * Start from HASH_FNV1A_INIT and feed strings and bytes in turn. */

#include <stdint.h>

#define HASH_FNV1A_INIT 1469598103934665603ULL

static inline uint64_t hash_fnv1a_byte(uint64_t h, unsigned char c) {
        return (h ^ c) * 1099511628211ULL;
}

/* h fed with the bytes of s (NUL-terminated, the NUL not included). */
static inline uint64_t hash_fnv1a_str(uint64_t h, const char *s) {
        for (; *s; s++)
                h = hash_fnv1a_byte(h, (unsigned char) *s);
        return h;
}
