/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/digest.c: FIPS 180-2 vectors one-shot and incremental,
 * odd chunkings checked against digests computed outside layerd (Python's
 * hashlib), the exact "algo:hex" grammar on both sides, and outputs that stay
 * untouched on every failure. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/macro.h"

#define HEX_ZERO_64 "0000000000000000000000000000000000000000000000000000000000000000"
#define HEX_ZERO_128 HEX_ZERO_64 HEX_ZERO_64
#define HEX_SEQ_64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

#define SHA256_EMPTY "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA256_ABC "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA256_448 "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define SHA256_MILLION_A "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
#define SHA512_EMPTY                                                                                           \
        "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"                              \
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
#define SHA512_ABC                                                                                             \
        "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"                              \
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
#define SHA512_896                                                                                             \
        "sha512:8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"                              \
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"
#define SHA512_MILLION_A                                                                                       \
        "sha512:e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"                              \
        "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"

#define MSG_448 "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define MSG_896                                                                                                \
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst" \
        "nopqrstu"

/* The pattern buffer: byte i is (31 i + 7) mod 251, PATTERN_SIZE bytes; its digests
 * were computed with hashlib so that chunked hashing is checked against an outside value. */
#define PATTERN_SIZE 100003
#define SHA256_PATTERN "sha256:2581069860d413c527e66278fefe7261689c85ee418255827ff3d1f8fb253404"
#define SHA512_PATTERN                                                                                         \
        "sha512:a95070dbaf43109f25d64570623f9abb33ad7561b91f099ebd9467cfdee753e9"                              \
        "e19d7a9927bd01e9d8d788af713bb3d0a617236371b6b6bcffddc219afc3b97e"

#define MILLION 1000000

/* Written into outputs before a call that must fail, then checked to survive. */
#define SENTINEL_BYTE 0xa5
static char sentinel_storage;
#define SENTINEL_PTR ((struct digester *) (void *) &sentinel_storage)

static void digest_fill_sentinel(struct digest *d) {
        memset(d, SENTINEL_BYTE, sizeof(*d));
}

static void assert_digest_is_sentinel(const struct digest *d) {
        struct digest s;
        digest_fill_sentinel(&s);
        assert_memory_equal(d, &s, sizeof(s));
}

/* Macros rather than helper functions so cmocka reports the failing case's line. */
#define ASSERT_DIGEST_STRING(d, want)                                                  \
        do {                                                                           \
                char buf_[DIGEST_STRING_MAX];                                          \
                assert_string_equal(digest_to_string((d), buf_), (want));              \
        } while (0)

#define BUFFER_IS(a, data, size, want)                                                 \
        do {                                                                           \
                struct digest d_;                                                      \
                assert_int_equal(digest_buffer((a), (data), (size), &d_), 0);          \
                assert_int_equal(d_.algorithm, (a));                                   \
                ASSERT_DIGEST_STRING(&d_, (want));                                     \
        } while (0)

#define PARSE_OK(s)                                                                    \
        do {                                                                           \
                struct digest d_;                                                      \
                digest_fill_sentinel(&d_);                                             \
                assert_int_equal(digest_parse((s), &d_), 0);                           \
                ASSERT_DIGEST_STRING(&d_, (s));                                        \
        } while (0)

#define PARSE_FAIL(s)                                                                  \
        do {                                                                           \
                struct digest d_;                                                      \
                digest_fill_sentinel(&d_);                                             \
                assert_int_equal(digest_parse((s), &d_), -EINVAL);                     \
                assert_digest_is_sentinel(&d_);                                        \
        } while (0)

static unsigned char *pattern_new(void) {
        unsigned char *p = malloc(PATTERN_SIZE);
        assert_non_null(p);
        for (size_t i = 0; i < PATTERN_SIZE; i++)
                p[i] = (unsigned char) ((31 * i + 7) % 251);
        return p;
}

/* Hashes size bytes in chunks whose sizes cycle through chunks[], with empty
 * updates (NULL data) in between, and returns the digest as a string. */
static void hash_chunked(enum digest_algorithm a, const unsigned char *data, size_t size, const size_t *chunks,
                         size_t n_chunks, char buf[static DIGEST_STRING_MAX]) {
        _cleanup_(digester_freep) struct digester *h = NULL;
        struct digest d;
        size_t off = 0;

        assert_int_equal(digester_new(a, &h), 0);
        assert_non_null(h);
        for (size_t i = 0; off < size; i++) {
                size_t n = chunks[i % n_chunks];
                if (n > size - off)
                        n = size - off;
                assert_int_equal(digester_update(h, data + off, n), 0);
                assert_int_equal(digester_update(h, NULL, 0), 0);
                off += n;
        }
        assert_int_equal(digester_final(h, &d), 0);
        assert_int_equal(d.algorithm, a);
        digest_to_string(&d, buf);
}

/* ---- sizes and names ---------------------------------------------------------------- */

static void test_size_and_name(void **state) {
        (void) state;
        assert_int_equal(digest_size(DIGEST_SHA256), 32);
        assert_int_equal(digest_size(DIGEST_SHA512), 64);
        assert_string_equal(digest_algorithm_name(DIGEST_SHA256), "sha256");
        assert_string_equal(digest_algorithm_name(DIGEST_SHA512), "sha512");

        assert_int_equal(digest_size(_DIGEST_ALGORITHM_MAX), 0);
        assert_int_equal(digest_size((enum digest_algorithm) - 1), 0);
        assert_null(digest_algorithm_name(_DIGEST_ALGORITHM_MAX));
        assert_null(digest_algorithm_name((enum digest_algorithm) - 1));
}

/* ---- known vectors (FIPS 180-2) ---------------------------------------------------------- */

static void test_vectors_sha256(void **state) {
        (void) state;
        BUFFER_IS(DIGEST_SHA256, "", 0, SHA256_EMPTY);
        BUFFER_IS(DIGEST_SHA256, NULL, 0, SHA256_EMPTY);
        BUFFER_IS(DIGEST_SHA256, "abc", 3, SHA256_ABC);
        BUFFER_IS(DIGEST_SHA256, MSG_448, strlen(MSG_448), SHA256_448);
}

static void test_vectors_sha512(void **state) {
        (void) state;
        BUFFER_IS(DIGEST_SHA512, "", 0, SHA512_EMPTY);
        BUFFER_IS(DIGEST_SHA512, NULL, 0, SHA512_EMPTY);
        BUFFER_IS(DIGEST_SHA512, "abc", 3, SHA512_ABC);
        BUFFER_IS(DIGEST_SHA512, MSG_896, strlen(MSG_896), SHA512_896);
}

static void test_vectors_million_a(void **state) {
        _cleanup_free_ unsigned char *a = malloc(MILLION);
        static const size_t chunks[] = { 997 };
        char buf[DIGEST_STRING_MAX];

        (void) state;
        assert_non_null(a);
        memset(a, 'a', MILLION);

        BUFFER_IS(DIGEST_SHA256, a, MILLION, SHA256_MILLION_A);
        BUFFER_IS(DIGEST_SHA512, a, MILLION, SHA512_MILLION_A);

        /* 1003 chunks of 997 and a last one of 9: none lines up with a block. */
        hash_chunked(DIGEST_SHA256, a, MILLION, chunks, ELEMENTSOF(chunks), buf);
        assert_string_equal(buf, SHA256_MILLION_A);
        hash_chunked(DIGEST_SHA512, a, MILLION, chunks, ELEMENTSOF(chunks), buf);
        assert_string_equal(buf, SHA512_MILLION_A);
}

/* ---- incremental hashing ------------------------------------------------------------ */

static void test_incremental_equals_one_shot(void **state) {
        _cleanup_free_ unsigned char *p = pattern_new();
        /* Around the 64- and 128-byte block sizes, primes, and one larger than the buffer. */
        static const size_t odd[] = { 1, 3, 7, 63, 64, 65, 127, 128, 129, 1021, 4099 };
        static const size_t single[][1] = { { 1 }, { 13 }, { 111 }, { 8191 }, { PATTERN_SIZE + 1 } };
        char buf[DIGEST_STRING_MAX];

        (void) state;
        BUFFER_IS(DIGEST_SHA256, p, PATTERN_SIZE, SHA256_PATTERN);
        BUFFER_IS(DIGEST_SHA512, p, PATTERN_SIZE, SHA512_PATTERN);

        hash_chunked(DIGEST_SHA256, p, PATTERN_SIZE, odd, ELEMENTSOF(odd), buf);
        assert_string_equal(buf, SHA256_PATTERN);
        hash_chunked(DIGEST_SHA512, p, PATTERN_SIZE, odd, ELEMENTSOF(odd), buf);
        assert_string_equal(buf, SHA512_PATTERN);

        for (size_t i = 0; i < ELEMENTSOF(single); i++) {
                hash_chunked(DIGEST_SHA256, p, PATTERN_SIZE, single[i], 1, buf);
                assert_string_equal(buf, SHA256_PATTERN);
                hash_chunked(DIGEST_SHA512, p, PATTERN_SIZE, single[i], 1, buf);
                assert_string_equal(buf, SHA512_PATTERN);
        }
}

static void test_incremental_no_updates(void **state) {
        _cleanup_(digester_freep) struct digester *h = NULL;
        struct digest d;

        (void) state;
        assert_int_equal(digester_new(DIGEST_SHA512, &h), 0);
        assert_int_equal(digester_final(h, &d), 0);
        ASSERT_DIGEST_STRING(&d, SHA512_EMPTY);
}

/* Two digesters interleaved do not disturb each other. */
static void test_incremental_independent(void **state) {
        _cleanup_(digester_freep) struct digester *a = NULL;
        _cleanup_(digester_freep) struct digester *b = NULL;
        struct digest da, db;

        (void) state;
        assert_int_equal(digester_new(DIGEST_SHA256, &a), 0);
        assert_int_equal(digester_new(DIGEST_SHA256, &b), 0);
        assert_ptr_not_equal(a, b);
        assert_int_equal(digester_update(a, "a", 1), 0);
        assert_int_equal(digester_update(b, "ab", 2), 0);
        assert_int_equal(digester_update(a, "bc", 2), 0);
        assert_int_equal(digester_final(b, &db), 0);
        assert_int_equal(digester_final(a, &da), 0);
        ASSERT_DIGEST_STRING(&da, SHA256_ABC);
        assert_false(digest_equal(&da, &db));
}

/* ---- parse ---------------------------------------------------------------------------- */

static void test_parse_valid(void **state) {
        static const unsigned char seq[] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
        struct digest d;

        (void) state;
        PARSE_OK(SHA256_EMPTY);
        PARSE_OK(SHA256_ABC);
        PARSE_OK(SHA512_EMPTY);
        PARSE_OK(SHA512_ABC);
        PARSE_OK("sha256:" HEX_ZERO_64);
        PARSE_OK("sha512:" HEX_ZERO_128);
        PARSE_OK("sha256:" HEX_SEQ_64);
        PARSE_OK("sha512:" HEX_SEQ_64 HEX_SEQ_64);

        /* The bytes themselves, not only the round trip. */
        assert_int_equal(digest_parse("sha256:" HEX_SEQ_64, &d), 0);
        assert_int_equal(d.algorithm, DIGEST_SHA256);
        for (size_t i = 0; i < 32; i++)
                assert_int_equal(d.bytes[i], seq[i % ELEMENTSOF(seq)]);
        assert_int_equal(digest_parse(SHA512_ABC, &d), 0);
        assert_int_equal(d.algorithm, DIGEST_SHA512);
        assert_int_equal(d.bytes[0], 0xdd);
        assert_int_equal(d.bytes[63], 0x9f);

        /* What a parsed sha256 holds beyond its 32 bytes is zero. */
        assert_int_equal(digest_parse(SHA256_ABC, &d), 0);
        for (size_t i = 32; i < sizeof(d.bytes); i++)
                assert_int_equal(d.bytes[i], 0);
}

static void test_parse_invalid(void **state) {
        (void) state;
        PARSE_FAIL("");
        PARSE_FAIL("sha256");
        PARSE_FAIL("sha256:");
        PARSE_FAIL("sha512:");
        PARSE_FAIL(":" HEX_ZERO_64);
        PARSE_FAIL(HEX_ZERO_64);
        /* Algorithms layerd cannot verify. */
        PARSE_FAIL("sha384:" HEX_ZERO_64 "00000000000000000000000000000000");
        PARSE_FAIL("md5:00000000000000000000000000000000");
        PARSE_FAIL("sha1:0000000000000000000000000000000000000000");
        PARSE_FAIL("sha25:" HEX_ZERO_64);
        PARSE_FAIL("sha2566:" HEX_ZERO_64);
        PARSE_FAIL("sha256+b64u:" HEX_ZERO_64);
        /* Upper case anywhere. */
        PARSE_FAIL("SHA256:" HEX_ZERO_64);
        PARSE_FAIL("Sha256:" HEX_ZERO_64);
        PARSE_FAIL("sha256:" "A" "00000000000000000000000000000000000000000000000000000000000000f");
        PARSE_FAIL("sha256:" "000000000000000000000000000000000000000000000000000000000000000F");
        PARSE_FAIL("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855");
        /* Wrong length for the algorithm. */
        PARSE_FAIL("sha256:" "000000000000000000000000000000000000000000000000000000000000000");
        PARSE_FAIL("sha256:" HEX_ZERO_64 "0");
        PARSE_FAIL("sha256:" HEX_ZERO_64 "00");
        PARSE_FAIL("sha256:" HEX_ZERO_128);
        PARSE_FAIL("sha512:" HEX_ZERO_64);
        PARSE_FAIL("sha512:" HEX_ZERO_128 "0");
        PARSE_FAIL("sha512:" HEX_ZERO_64 "000000000000000000000000000000000000000000000000000000000000000");
        /* Not hex. */
        PARSE_FAIL("sha256:" "g000000000000000000000000000000000000000000000000000000000000000");
        PARSE_FAIL("sha256:" "000000000000000000000000000000000000000000000000000000000000000g");
        PARSE_FAIL("sha256:" "0x00000000000000000000000000000000000000000000000000000000000000");
        PARSE_FAIL("sha256:" "-000000000000000000000000000000000000000000000000000000000000000");
        /* Whitespace and separators. */
        PARSE_FAIL(SHA256_EMPTY "\n");
        PARSE_FAIL(SHA256_EMPTY " ");
        PARSE_FAIL(" " SHA256_EMPTY);
        PARSE_FAIL("\t" SHA256_EMPTY);
        PARSE_FAIL("sha256 :" HEX_ZERO_64);
        PARSE_FAIL("sha256: " HEX_ZERO_64);
        PARSE_FAIL("sha256::" HEX_ZERO_64);
        PARSE_FAIL("sha256=" HEX_ZERO_64);
        PARSE_FAIL("sha256-" HEX_ZERO_64);
        PARSE_FAIL("sha256:" "0000000000000000000000000000000 00000000000000000000000000000000");
        PARSE_FAIL(SHA256_EMPTY "@");
        PARSE_FAIL(SHA256_EMPTY ":");
        PARSE_FAIL(SHA256_EMPTY "\r");
        /* A digest whose string is cut short by a NUL (the C string ends there). */
        PARSE_FAIL("sha256:e3b0c44298fc1c149afbf4c8996fb924\0" "27ae41e4649b934ca495991b7852b855");
        PARSE_FAIL("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85\0" "5");
}

/* A string cut at every length below a valid digest never parses, and nothing past
 * its NUL is read (ASan checks the exact-size heap copies). */
static void test_parse_prefixes(void **state) {
        static const char *const valid[] = { SHA256_ABC, SHA512_ABC };

        (void) state;
        for (size_t v = 0; v < ELEMENTSOF(valid); v++) {
                size_t len = strlen(valid[v]);
                for (size_t n = 0; n <= len; n++) {
                        _cleanup_free_ char *s = strndup(valid[v], n);
                        struct digest d;
                        assert_non_null(s);
                        digest_fill_sentinel(&d);
                        if (n == len) {
                                assert_int_equal(digest_parse(s, &d), 0);
                                ASSERT_DIGEST_STRING(&d, valid[v]);
                        } else {
                                assert_int_equal(digest_parse(s, &d), -EINVAL);
                                assert_digest_is_sentinel(&d);
                        }
                }
        }
}

/* ---- to_string / hex --------------------------------------------------------------- */

static void test_to_string_roundtrip(void **state) {
        (void) state;
        for (enum digest_algorithm a = 0; a < _DIGEST_ALGORITHM_MAX; a++)
                for (unsigned seed = 0; seed < 256; seed++) {
                        struct digest d = { .algorithm = a }, back;
                        char s[DIGEST_STRING_MAX], s2[DIGEST_STRING_MAX];

                        for (size_t i = 0; i < digest_size(a); i++)
                                d.bytes[i] = (unsigned char) (seed * 131 + i * 17);
                        assert_ptr_equal(digest_to_string(&d, s), s);
                        assert_int_equal(strlen(s), strlen(digest_algorithm_name(a)) + 1 + 2 * digest_size(a));
                        assert_int_equal(digest_parse(s, &back), 0);
                        assert_true(digest_equal(&d, &back));
                        assert_memory_equal(&d, &back, sizeof(d));
                        assert_string_equal(digest_to_string(&back, s2), s);
                }
}

static void test_to_string_exact_buffers(void **state) {
        /* Heap buffers of exactly the documented sizes, so ASan sees any overrun. */
        _cleanup_free_ char *s = malloc(DIGEST_STRING_MAX);
        _cleanup_free_ char *hex = malloc(129);
        struct digest d;

        (void) state;
        assert_non_null(s);
        assert_non_null(hex);

        assert_int_equal(digest_parse(SHA512_ABC, &d), 0);
        assert_ptr_equal(digest_to_string(&d, s), s);
        assert_string_equal(s, SHA512_ABC);
        assert_int_equal(strlen(s), DIGEST_STRING_MAX - 1);
        assert_ptr_equal(digest_hex(&d, hex), hex);
        assert_string_equal(hex, SHA512_ABC + strlen("sha512:"));
        assert_int_equal(strlen(hex), 128);

        assert_int_equal(digest_parse(SHA256_ABC, &d), 0);
        assert_string_equal(digest_to_string(&d, s), SHA256_ABC);
        assert_string_equal(digest_hex(&d, hex), SHA256_ABC + strlen("sha256:"));
        assert_int_equal(strlen(hex), 64);
}

static void test_to_string_invalid_algorithm(void **state) {
        struct digest d;
        char s[DIGEST_STRING_MAX], hex[DIGEST_HEX_MAX];

        (void) state;
        memset(&d, 0, sizeof(d));
        d.algorithm = _DIGEST_ALGORITHM_MAX;
        memset(s, 'x', sizeof(s));
        memset(hex, 'x', sizeof(hex));
        assert_string_equal(digest_to_string(&d, s), "");
        assert_string_equal(digest_hex(&d, hex), "");
}

/* ---- equal ------------------------------------------------------------------------------ */

static void test_equal(void **state) {
        struct digest a, b;

        (void) state;
        assert_int_equal(digest_parse(SHA256_ABC, &a), 0);
        b = a;
        assert_true(digest_equal(&a, &b));
        assert_true(digest_equal(&a, &a));

        /* The last byte counts. */
        b.bytes[31] ^= 1;
        assert_false(digest_equal(&a, &b));
        b = a;
        b.bytes[0] ^= 0x80;
        assert_false(digest_equal(&a, &b));

        /* Bytes beyond a sha256's 32 do not count. */
        b = a;
        b.bytes[32] = 0xff;
        b.bytes[63] = 0xff;
        assert_true(digest_equal(&a, &b));

        /* Same bytes, other algorithm. */
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        a.algorithm = DIGEST_SHA256;
        b.algorithm = DIGEST_SHA512;
        assert_false(digest_equal(&a, &b));
        assert_false(digest_equal(&b, &a));

        /* sha512 compares all 64. */
        assert_int_equal(digest_parse(SHA512_ABC, &a), 0);
        b = a;
        b.bytes[63] ^= 1;
        assert_false(digest_equal(&a, &b));

        /* Outside the enum nothing is equal, not even to itself. */
        memset(&a, 0, sizeof(a));
        a.algorithm = _DIGEST_ALGORITHM_MAX;
        assert_false(digest_equal(&a, &a));

        /* Digests of different content differ. */
        assert_int_equal(digest_buffer(DIGEST_SHA256, "abc", 3, &a), 0);
        assert_int_equal(digest_buffer(DIGEST_SHA256, "abd", 3, &b), 0);
        assert_false(digest_equal(&a, &b));
        assert_int_equal(digest_buffer(DIGEST_SHA256, "abc", 3, &b), 0);
        assert_true(digest_equal(&a, &b));
}

/* ---- failures leave outputs alone ---------------------------------------------------------- */

static void test_new_invalid_algorithm(void **state) {
        struct digester *h = SENTINEL_PTR;
        struct digest d;

        (void) state;
        assert_int_equal(digester_new(_DIGEST_ALGORITHM_MAX, &h), -EINVAL);
        assert_ptr_equal(h, SENTINEL_PTR);
        assert_int_equal(digester_new((enum digest_algorithm) - 1, &h), -EINVAL);
        assert_ptr_equal(h, SENTINEL_PTR);

        digest_fill_sentinel(&d);
        assert_int_equal(digest_buffer(_DIGEST_ALGORITHM_MAX, "abc", 3, &d), -EINVAL);
        assert_digest_is_sentinel(&d);
        assert_int_equal(digest_buffer((enum digest_algorithm) 42, "abc", 3, &d), -EINVAL);
        assert_digest_is_sentinel(&d);
}

static void test_use_after_final(void **state) {
        _cleanup_(digester_freep) struct digester *h = NULL;
        struct digest d;

        (void) state;
        assert_int_equal(digester_new(DIGEST_SHA256, &h), 0);
        assert_int_equal(digester_update(h, "abc", 3), 0);
        assert_int_equal(digester_final(h, &d), 0);
        ASSERT_DIGEST_STRING(&d, SHA256_ABC);

        digest_fill_sentinel(&d);
        assert_int_equal(digester_final(h, &d), -EINVAL);
        assert_digest_is_sentinel(&d);
        assert_int_equal(digester_update(h, "x", 1), -EINVAL);
        assert_int_equal(digester_update(h, NULL, 0), -EINVAL);
        assert_int_equal(digester_final(h, &d), -EINVAL);
        assert_digest_is_sentinel(&d);
}

/* NULL data with a non-zero size is refused and feeds nothing. */
static void test_update_null_data(void **state) {
        _cleanup_(digester_freep) struct digester *h = NULL;
        struct digest d;

        (void) state;
        assert_int_equal(digester_new(DIGEST_SHA256, &h), 0);
        assert_int_equal(digester_update(h, "ab", 2), 0);
        assert_int_equal(digester_update(h, NULL, 5), -EINVAL);
        assert_int_equal(digester_update(h, "c", 1), 0);
        assert_int_equal(digester_final(h, &d), 0);
        ASSERT_DIGEST_STRING(&d, SHA256_ABC);

        digest_fill_sentinel(&d);
        assert_int_equal(digest_buffer(DIGEST_SHA256, NULL, 1, &d), -EINVAL);
        assert_digest_is_sentinel(&d);
}

/* ---- lifetime ------------------------------------------------------------------------------- */

static void test_digester_free(void **state) {
        struct digester *h = NULL;

        (void) state;
        assert_null(digester_free(NULL));
        digester_freep(&h);

        /* Freed unfinished, and freed after an update only: no leak (ASan, valgrind). */
        assert_int_equal(digester_new(DIGEST_SHA512, &h), 0);
        assert_null(digester_free(h));
        assert_int_equal(digester_new(DIGEST_SHA512, &h), 0);
        assert_int_equal(digester_update(h, "abc", 3), 0);
        h = digester_free(h);
        assert_null(h);
}

/* digest_fields() hashes head, each field and its NUL, then tail: as the bytes laid end to end. */
static void test_fields(void **state) {
        (void) state;
        static const unsigned char whole[] = { 's', 'a', 'l', 't', 'a', 'b', 0, 'c', 0, 'k', 'e', 'y' };
        const char *fields[] = { "ab", "c" };
        struct digest got, want;
        assert_int_equal(digest_fields("salt", 4, fields, 2, "key", 3, &got), 0);
        assert_int_equal(digest_buffer(DIGEST_SHA256, whole, sizeof(whole), &want), 0);
        assert_true(digest_equal(&got, &want));
        /* "ab" + "c" is not "a" + "bc". */
        const char *moved[] = { "a", "bc" };
        assert_int_equal(digest_fields("salt", 4, moved, 2, "key", 3, &want), 0);
        assert_false(digest_equal(&got, &want));
        /* Nothing at all: the SHA-256 of no bytes. */
        assert_int_equal(digest_fields(NULL, 0, NULL, 0, NULL, 0, &got), 0);
        assert_int_equal(digest_buffer(DIGEST_SHA256, NULL, 0, &want), 0);
        assert_true(digest_equal(&got, &want));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_size_and_name),
                cmocka_unit_test(test_vectors_sha256),
                cmocka_unit_test(test_vectors_sha512),
                cmocka_unit_test(test_vectors_million_a),
                cmocka_unit_test(test_incremental_equals_one_shot),
                cmocka_unit_test(test_incremental_no_updates),
                cmocka_unit_test(test_incremental_independent),
                cmocka_unit_test(test_parse_valid),
                cmocka_unit_test(test_parse_invalid),
                cmocka_unit_test(test_parse_prefixes),
                cmocka_unit_test(test_to_string_roundtrip),
                cmocka_unit_test(test_to_string_exact_buffers),
                cmocka_unit_test(test_to_string_invalid_algorithm),
                cmocka_unit_test(test_equal),
                cmocka_unit_test(test_new_invalid_algorithm),
                cmocka_unit_test(test_use_after_final),
                cmocka_unit_test(test_update_null_data),
                cmocka_unit_test(test_digester_free),
                cmocka_unit_test(test_fields),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
