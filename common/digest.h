/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Content digests as the OCI distribution spec writes them ("sha256:<hex>",
 * "sha512:<hex>"), computed with libcrypto. The value functions are pure; a
 * digester is used by one thread at a time, distinct digesters are independent. */

#include <stdbool.h>
#include <stddef.h>

#define DIGEST_STRING_MAX (7 + 128 + 1) /* "sha512:" + 128 hex + NUL */
#define DIGEST_HEX_MAX (128 + 1)        /* 128 hex + NUL */

enum digest_algorithm {
        DIGEST_SHA256,
        DIGEST_SHA512,
        _DIGEST_ALGORITHM_MAX,
};

/* A plain value: copy it, compare it with digest_equal(). Bytes past
 * digest_size(algorithm) are zero when written by this module and never compared. */
struct digest {
        enum digest_algorithm algorithm;
        unsigned char bytes[64];
};

/* Parses "sha256:<64 lower hex>" or "sha512:<128 lower hex>" exactly (no upper case,
 * no whitespace, nothing after); -EINVAL otherwise. */
int digest_parse(const char *s, struct digest *ret);

/* Length in bytes of the algorithm's digest (32, 64); 0 for a value outside the enum. */
size_t digest_size(enum digest_algorithm a);

/* "sha256" / "sha512" (static strings); NULL for a value outside the enum. */
const char *digest_algorithm_name(enum digest_algorithm a);

/* Writes "algo:hex" into buf (at least DIGEST_STRING_MAX); returns buf. A digest
 * whose algorithm is outside the enum gives "". */
char *digest_to_string(const struct digest *d, char buf[static DIGEST_STRING_MAX]);

/* Just the hex part, lower case, into buf (at least 129 bytes); returns buf. A digest
 * whose algorithm is outside the enum gives "". */
char *digest_hex(const struct digest *d, char buf[static DIGEST_HEX_MAX]);

/* True when both have the same (valid) algorithm and the same digest_size() bytes. */
bool digest_equal(const struct digest *a, const struct digest *b);

/* An incremental hasher; opaque. */
struct digester;

/* Starts hashing with algorithm a. -EINVAL for a value outside the enum, -ENOMEM,
 * or -EIO when libcrypto refuses the algorithm. */
int digester_new(enum digest_algorithm a, struct digester **ret);

/* Feeds size bytes (data may be NULL when size is 0). -EINVAL after digester_final();
 * after an -EIO or -ENOMEM every later update and final fail with the same error. */
int digester_update(struct digester *h, const void *data, size_t size);

/* Finishes and writes the digest of everything fed; the digester can then only be
 * freed (after a successful final, update and final are -EINVAL). Fails like digester_update(). */
int digester_final(struct digester *h, struct digest *ret);

/* Frees h; returns NULL; accepts NULL. */
struct digester *digester_free(struct digester *h);

static inline void digester_freep(struct digester **h) {
        digester_free(*h);
}

/* One-shot convenience: the digest of size bytes at data. Fails like digester_new(). */
int digest_buffer(enum digest_algorithm a, const void *data, size_t size, struct digest *ret);

/* The SHA-256 of head (head_size bytes), then each of the n strings in fields with its NUL (the
 * NULs keep "ab" + "c" apart from "a" + "bc"), then tail (tail_size bytes); head and tail may be
 * NULL when their size is 0. No copy of the input is made (they may be secrets: OpenSSL cleanses
 * its context when freed). Fails like digester_new(). */
int digest_fields(const void *head, size_t head_size, const char *const *fields, size_t n, const void *tail,
                  size_t tail_size, struct digest *ret);
