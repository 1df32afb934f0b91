/* SPDX-License-Identifier: Apache-2.0 */
#include "common/digest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/macro.h"

/* Read-only; indexed by enum digest_algorithm. */
static const struct {
        const char *name;
        size_t size;
        const EVP_MD *(*md)(void);
} algorithms[_DIGEST_ALGORITHM_MAX] = {
        [DIGEST_SHA256] = { "sha256", 32, EVP_sha256 },
        [DIGEST_SHA512] = { "sha512", 64, EVP_sha512 },
};

_Static_assert(sizeof(((struct digest *) NULL)->bytes) == 64, "struct digest holds a sha512");
_Static_assert(DIGEST_STRING_MAX == sizeof("sha512:") - 1 + 2 * 64 + 1, "DIGEST_STRING_MAX");
_Static_assert(DIGEST_HEX_MAX == 2 * 64 + 1, "DIGEST_HEX_MAX");

struct digester {
        enum digest_algorithm algorithm;
        EVP_MD_CTX *ctx;
        bool finished;
        int error; /* sticky: once libcrypto failed, the state is not trusted again */
};

static bool algorithm_is_valid(enum digest_algorithm a) {
        /* Through unsigned so that a negative value from a cast is out of range too. */
        return (unsigned) a < (unsigned) _DIGEST_ALGORITHM_MAX;
}

/* Maps a libcrypto failure to -ENOMEM or -EIO and empties the calling thread's
 * OpenSSL error queue: libcurl shares that queue in the same thread and reads
 * it after its own calls fail, so stale entries from here would mislead it. */
static int evp_error(void) {
        int r = -EIO;
        for (;;) {
                unsigned long e = ERR_get_error();
                if (e == 0)
                        break;
                if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
                        r = -ENOMEM;
        }
        return r;
}

size_t digest_size(enum digest_algorithm a) {
        return algorithm_is_valid(a) ? algorithms[a].size : 0;
}

const char *digest_algorithm_name(enum digest_algorithm a) {
        return algorithm_is_valid(a) ? algorithms[a].name : NULL;
}

static int unhex(char c) {
        /* Lower case only: the distribution spec's digest grammar for sha256 and
         * sha512 is [a-f0-9], and one spelling per digest keeps string compares exact. */
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

int digest_parse(const char *s, struct digest *ret) {
        struct digest d = {};
        enum digest_algorithm a;

        for (a = 0; a < _DIGEST_ALGORITHM_MAX; a++) {
                size_t n = strlen(algorithms[a].name);
                if (strncmp(s, algorithms[a].name, n) == 0 && s[n] == ':') {
                        s += n + 1;
                        break;
                }
        }
        if (a == _DIGEST_ALGORITHM_MAX)
                return -EINVAL;

        d.algorithm = a;
        /* A NUL inside the expected length fails unhex(), so nothing past the string is read. */
        for (size_t i = 0; i < algorithms[a].size; i++) {
                int hi = unhex(s[2 * i]);
                if (hi < 0)
                        return -EINVAL;
                int lo = unhex(s[2 * i + 1]);
                if (lo < 0)
                        return -EINVAL;
                d.bytes[i] = (unsigned char) (hi << 4 | lo);
        }
        if (s[2 * algorithms[a].size] != '\0')
                return -EINVAL;

        *ret = d;
        return 0;
}

char *digest_hex(const struct digest *d, char buf[static DIGEST_HEX_MAX]) {
        static const char hex[] = "0123456789abcdef";
        size_t n = digest_size(d->algorithm);

        for (size_t i = 0; i < n; i++) {
                buf[2 * i] = hex[d->bytes[i] >> 4];
                buf[2 * i + 1] = hex[d->bytes[i] & 0xf];
        }
        buf[2 * n] = '\0';
        return buf;
}

char *digest_to_string(const struct digest *d, char buf[static DIGEST_STRING_MAX]) {
        const char *name = digest_algorithm_name(d->algorithm);
        size_t n;

        if (!name) {
                buf[0] = '\0';
                return buf;
        }
        n = strlen(name);
        memcpy(buf, name, n);
        buf[n] = ':';
        digest_hex(d, buf + n + 1);
        return buf;
}

bool digest_equal(const struct digest *a, const struct digest *b) {
        if (a->algorithm != b->algorithm || !algorithm_is_valid(a->algorithm))
                return false;
        return memcmp(a->bytes, b->bytes, digest_size(a->algorithm)) == 0;
}

struct digester *digester_free(struct digester *h) {
        if (!h)
                return NULL;
        EVP_MD_CTX_free(h->ctx);
        return mfree(h);
}

int digester_new(enum digest_algorithm a, struct digester **ret) {
        _cleanup_(digester_freep) struct digester *h = NULL;

        if (!algorithm_is_valid(a))
                return -EINVAL;

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->algorithm = a;

        h->ctx = EVP_MD_CTX_new();
        if (!h->ctx)
                return -ENOMEM;
        if (EVP_DigestInit_ex(h->ctx, algorithms[a].md(), NULL) != 1)
                return evp_error();

        *ret = TAKE_PTR(h);
        return 0;
}

int digester_update(struct digester *h, const void *data, size_t size) {
        if (h->error < 0)
                return h->error;
        if (h->finished)
                return -EINVAL;
        if (size == 0)
                return 0;
        if (!data)
                return -EINVAL;
        if (EVP_DigestUpdate(h->ctx, data, size) != 1) {
                h->error = evp_error();
                return h->error;
        }
        return 0;
}

int digester_final(struct digester *h, struct digest *ret) {
        struct digest d = { .algorithm = h->algorithm };
        unsigned len = 0;

        if (h->error < 0)
                return h->error;
        if (h->finished)
                return -EINVAL;

        /* Whatever happens, the context is spent: EVP allows no use after final. */
        h->finished = true;
        if (EVP_DigestFinal_ex(h->ctx, d.bytes, &len) != 1)
                h->error = evp_error();
        else if (len != algorithms[h->algorithm].size)
                h->error = -EIO;
        if (h->error < 0)
                return h->error;

        *ret = d;
        return 0;
}

int digest_buffer(enum digest_algorithm a, const void *data, size_t size, struct digest *ret) {
        _cleanup_(digester_freep) struct digester *h = NULL;
        struct digest d;
        int r;

        r = digester_new(a, &h);
        if (r < 0)
                return r;
        r = digester_update(h, data, size);
        if (r < 0)
                return r;
        r = digester_final(h, &d);
        if (r < 0)
                return r;

        *ret = d;
        return 0;
}

int digest_fields(const void *head, size_t head_size, const char *const *fields, size_t n, const void *tail,
                  size_t tail_size, struct digest *ret) {
        _cleanup_(digester_freep) struct digester *h = NULL;
        int r = digester_new(DIGEST_SHA256, &h);
        if (r >= 0)
                r = digester_update(h, head, head_size);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = digester_update(h, fields[i], strlen(fields[i]) + 1);
        if (r >= 0)
                r = digester_update(h, tail, tail_size);
        if (r >= 0)
                r = digester_final(h, ret);
        return r;
}
