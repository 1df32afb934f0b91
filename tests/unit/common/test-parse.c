/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/parse.c: every parser is driven to both sides of each
 * boundary, and every failure is checked to leave the output untouched. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/parse.h"

/* Written into outputs before a call that must fail, then checked to survive. */
#define U64_SENTINEL UINT64_C(0xdeadbeefcafef00d)
#define U16_SENTINEL ((uint16_t) 0xbeef)
static char sentinel_storage;
#define SENTINEL_PTR (&sentinel_storage)

/* Macros rather than helper functions so cmocka reports the failing case's line. */
#define UINT_OK(s, max, want)                                          \
        do {                                                           \
                uint64_t v_ = U64_SENTINEL;                            \
                assert_int_equal(parse_uint((s), (max), &v_), 0);      \
                assert_int_equal(v_, (want));                          \
        } while (0)

#define UINT_FAIL(s, max, err)                                         \
        do {                                                           \
                uint64_t v_ = U64_SENTINEL;                            \
                assert_int_equal(parse_uint((s), (max), &v_), (err));  \
                assert_int_equal(v_, U64_SENTINEL);                    \
        } while (0)

#define PORT_OK(s, want)                                               \
        do {                                                           \
                uint16_t v_ = U16_SENTINEL;                            \
                assert_int_equal(parse_port((s), &v_), 0);             \
                assert_int_equal(v_, (want));                          \
        } while (0)

#define PORT_FAIL(s, err)                                              \
        do {                                                           \
                uint16_t v_ = U16_SENTINEL;                            \
                assert_int_equal(parse_port((s), &v_), (err));         \
                assert_int_equal(v_, U16_SENTINEL);                    \
        } while (0)

#define SIZE_OK(s, want)                                               \
        do {                                                           \
                uint64_t v_ = U64_SENTINEL;                            \
                assert_int_equal(parse_size((s), &v_), 0);             \
                assert_int_equal(v_, (want));                          \
        } while (0)

#define SIZE_FAIL(s, err)                                              \
        do {                                                           \
                uint64_t v_ = U64_SENTINEL;                            \
                assert_int_equal(parse_size((s), &v_), (err));         \
                assert_int_equal(v_, U64_SENTINEL);                    \
        } while (0)

#define DURATION_OK(s, want)                                           \
        do {                                                           \
                uint64_t v_ = U64_SENTINEL;                            \
                assert_int_equal(parse_duration_ms((s), &v_), 0);      \
                assert_int_equal(v_, (want));                          \
        } while (0)

#define DURATION_FAIL(s, err)                                          \
        do {                                                           \
                uint64_t v_ = U64_SENTINEL;                            \
                assert_int_equal(parse_duration_ms((s), &v_), (err));  \
                assert_int_equal(v_, U64_SENTINEL);                    \
        } while (0)

#define FORMAT_SIZE(bytes, want)                                                   \
        do {                                                                       \
                char b_[64];                                                       \
                assert_int_equal(format_size((bytes), b_, sizeof(b_)), strlen(want)); \
                assert_string_equal(b_, (want));                                   \
        } while (0)

#define FORMAT_DURATION(ms, want)                                                        \
        do {                                                                             \
                char b_[64];                                                             \
                assert_int_equal(format_duration_ms((ms), b_, sizeof(b_)), strlen(want)); \
                assert_string_equal(b_, (want));                                         \
        } while (0)

#define HOST_PORT_OK(s, required, want_host, want_port)                                  \
        do {                                                                             \
                char *h_ = SENTINEL_PTR;                                                 \
                uint16_t p_ = U16_SENTINEL;                                              \
                assert_int_equal(parse_host_port((s), (required), &h_, &p_), 0);         \
                assert_non_null(h_);                                                     \
                assert_ptr_not_equal(h_, SENTINEL_PTR);                                  \
                assert_string_equal(h_, (want_host));                                    \
                assert_int_equal(p_, (want_port));                                       \
                free(h_);                                                                \
        } while (0)

#define HOST_PORT_FAIL(s, required, err)                                                 \
        do {                                                                             \
                char *h_ = SENTINEL_PTR;                                                 \
                uint16_t p_ = U16_SENTINEL;                                              \
                assert_int_equal(parse_host_port((s), (required), &h_, &p_), (err));     \
                assert_ptr_equal(h_, SENTINEL_PTR);                                      \
                assert_int_equal(p_, U16_SENTINEL);                                      \
        } while (0)

/* Parses s, checks every field and the canonical text, and frees. */
#define URL_OK(s, want_scheme, want_host, want_port, want_path, want_text)              \
        do {                                                                            \
                struct url u_ = {};                                                     \
                const char *why_ = SENTINEL_PTR;                                        \
                assert_int_equal(url_parse((s), &u_, &why_), 0);                        \
                assert_string_equal(u_.scheme, (want_scheme));                          \
                assert_string_equal(u_.host, (want_host));                              \
                assert_int_equal(u_.port, (want_port));                                 \
                assert_string_equal(u_.path, (want_path));                              \
                char *t_ = url_to_string(&u_);                                          \
                assert_non_null(t_);                                                    \
                assert_string_equal(t_, (want_text));                                   \
                free(t_);                                                               \
                url_done(&u_);                                                          \
        } while (0)

/* Fails with -EINVAL, names the expected reason, and leaves *ret untouched. */
#define URL_FAIL(s, want_reason)                                                        \
        do {                                                                            \
                struct url u_ = { .scheme = SENTINEL_PTR, .host = SENTINEL_PTR,         \
                                  .port = U16_SENTINEL, .path = SENTINEL_PTR };         \
                const char *why_ = NULL;                                                \
                assert_int_equal(url_parse((s), &u_, &why_), -EINVAL);                  \
                assert_non_null(why_);                                                  \
                assert_string_equal(why_, (want_reason));                               \
                assert_ptr_equal(u_.scheme, SENTINEL_PTR);                              \
                assert_ptr_equal(u_.host, SENTINEL_PTR);                                \
                assert_int_equal(u_.port, U16_SENTINEL);                                \
                assert_ptr_equal(u_.path, SENTINEL_PTR);                                \
        } while (0)

#define REASON_SCHEME "scheme must be http or https"
#define REASON_NOT_URL "not a URL"
#define REASON_USERINFO "user info in a URL is not allowed (use credentials_file)"
#define REASON_QUERY "query or fragment in a URL is not allowed"
#define REASON_CHAR "invalid character in URL path"
#define REASON_NOT_NORMAL "URL path is not normalised"
#define REASON_HOST "invalid host or port"

/* ---- parse_uint ------------------------------------------------------------------ */

static void test_parse_uint_valid(void **state) {
        (void) state;
        UINT_OK("0", 0, 0);
        UINT_OK("0", UINT64_MAX, 0);
        UINT_OK("1", UINT64_MAX, 1);
        UINT_OK("42", 100, 42);
        UINT_OK("007", 10, 7);
        UINT_OK("10", 10, 10);
        UINT_OK("4294967296", UINT64_MAX, UINT64_C(4294967296));
        UINT_OK("18446744073709551614", UINT64_MAX, UINT64_MAX - 1);
        UINT_OK("18446744073709551615", UINT64_MAX, UINT64_MAX);
        UINT_OK("000000000000000000000000018446744073709551615", UINT64_MAX, UINT64_MAX);
}

static void test_parse_uint_range(void **state) {
        (void) state;
        UINT_FAIL("11", 10, -ERANGE);
        UINT_FAIL("1", 0, -ERANGE);
        UINT_FAIL("65536", 65535, -ERANGE);
        UINT_FAIL("18446744073709551615", UINT64_MAX - 1, -ERANGE);
        UINT_FAIL("18446744073709551616", UINT64_MAX, -ERANGE);
        UINT_FAIL("18446744073709551620", UINT64_MAX, -ERANGE);
        UINT_FAIL("27670116110564327424", UINT64_MAX, -ERANGE); /* 1.5 * 2^64: wraps to a small value */
        UINT_FAIL("99999999999999999999999999999", UINT64_MAX, -ERANGE);
}

static void test_parse_uint_invalid(void **state) {
        (void) state;
        UINT_FAIL("", UINT64_MAX, -EINVAL);
        UINT_FAIL("+1", UINT64_MAX, -EINVAL);
        UINT_FAIL("-1", UINT64_MAX, -EINVAL);
        UINT_FAIL("-0", UINT64_MAX, -EINVAL);
        UINT_FAIL(" 1", UINT64_MAX, -EINVAL);
        UINT_FAIL("1 ", UINT64_MAX, -EINVAL);
        UINT_FAIL("\t1", UINT64_MAX, -EINVAL);
        UINT_FAIL("1\n", UINT64_MAX, -EINVAL);
        UINT_FAIL("0x10", UINT64_MAX, -EINVAL);
        UINT_FAIL("1e3", UINT64_MAX, -EINVAL);
        UINT_FAIL("1.0", UINT64_MAX, -EINVAL);
        UINT_FAIL("1_000", UINT64_MAX, -EINVAL);
        UINT_FAIL("12a", UINT64_MAX, -EINVAL);
        UINT_FAIL("a12", UINT64_MAX, -EINVAL);
        /* Invalid characters are reported as such even when the value would be out of range. */
        UINT_FAIL("11x", 10, -EINVAL);
}

/* ---- parse_port ------------------------------------------------------------------ */

static void test_parse_port(void **state) {
        (void) state;
        PORT_OK("1", 1);
        PORT_OK("80", 80);
        PORT_OK("443", 443);
        PORT_OK("05000", 5000);
        PORT_OK("65534", 65534);
        PORT_OK("65535", 65535);

        PORT_FAIL("0", -ERANGE);
        PORT_FAIL("00", -ERANGE);
        PORT_FAIL("65536", -ERANGE);
        PORT_FAIL("131071", -ERANGE); /* 65535 + 65536: must not wrap into range */
        PORT_FAIL("18446744073709551616", -ERANGE);

        PORT_FAIL("", -EINVAL);
        PORT_FAIL("+80", -EINVAL);
        PORT_FAIL("-80", -EINVAL);
        PORT_FAIL(" 80", -EINVAL);
        PORT_FAIL("80 ", -EINVAL);
        PORT_FAIL("8o", -EINVAL);
        PORT_FAIL("http", -EINVAL);
        PORT_FAIL(":80", -EINVAL);
}

/* ---- parse_size ------------------------------------------------------------------ */

static void test_parse_size_units(void **state) {
        (void) state;
        SIZE_OK("0", 0);
        SIZE_OK("0B", 0);
        SIZE_OK("0TiB", 0);
        SIZE_OK("1", 1);
        SIZE_OK("1B", 1);
        SIZE_OK("1500B", 1500);
        SIZE_OK("1K", 1024);
        SIZE_OK("1Ki", 1024);
        SIZE_OK("1KiB", 1024);
        SIZE_OK("1KB", 1000);
        SIZE_OK("3M", UINT64_C(3) << 20);
        SIZE_OK("3Mi", UINT64_C(3) << 20);
        SIZE_OK("3MiB", UINT64_C(3) << 20);
        SIZE_OK("3MB", UINT64_C(3000000));
        SIZE_OK("20G", UINT64_C(20) << 30);
        SIZE_OK("20Gi", UINT64_C(20) << 30);
        SIZE_OK("20GiB", UINT64_C(20) << 30);
        SIZE_OK("20GB", UINT64_C(20000000000));
        SIZE_OK("2T", UINT64_C(2) << 40);
        SIZE_OK("2Ti", UINT64_C(2) << 40);
        SIZE_OK("2TiB", UINT64_C(2) << 40);
        SIZE_OK("2TB", UINT64_C(2000000000000));
        SIZE_OK("0010KiB", 10240);
}

static void test_parse_size_overflow(void **state) {
        (void) state;
        /* The largest values on each side of 2^64. */
        SIZE_OK("18446744073709551615", UINT64_MAX);
        SIZE_OK("18446744073709551615B", UINT64_MAX);
        SIZE_FAIL("18446744073709551616", -ERANGE);
        SIZE_FAIL("18446744073709551616B", -ERANGE);

        SIZE_OK("18014398509481983KiB", UINT64_MAX - 1023);
        SIZE_FAIL("18014398509481984KiB", -ERANGE); /* exactly 2^64 */
        SIZE_OK("17179869183GiB", UINT64_C(18446744072635809792));
        SIZE_FAIL("17179869184GiB", -ERANGE); /* exactly 2^64 */
        SIZE_FAIL("17179869185G", -ERANGE);
        SIZE_OK("16777215TiB", UINT64_C(18446742974197923840));
        SIZE_FAIL("16777216TiB", -ERANGE); /* exactly 2^64: wraps to 0 if unchecked */
        SIZE_FAIL("16777216Ti", -ERANGE);
        SIZE_OK("18446744TB", UINT64_C(18446744000000000000));
        SIZE_FAIL("18446745TB", -ERANGE);
        SIZE_FAIL("18446744073709551615KB", -ERANGE);
        SIZE_FAIL("99999999999999999999999TiB", -ERANGE);
}

static void test_parse_size_invalid(void **state) {
        (void) state;
        SIZE_FAIL("", -EINVAL);
        SIZE_FAIL("B", -EINVAL);
        SIZE_FAIL("KiB", -EINVAL);
        SIZE_FAIL("+1", -EINVAL);
        SIZE_FAIL("+1KiB", -EINVAL);
        SIZE_FAIL("-1", -EINVAL);
        SIZE_FAIL(" 1", -EINVAL);
        SIZE_FAIL("1 ", -EINVAL);
        SIZE_FAIL("1 KiB", -EINVAL);
        SIZE_FAIL("1KiB ", -EINVAL);
        SIZE_FAIL("1.5GiB", -EINVAL);
        SIZE_FAIL("1kib", -EINVAL);
        SIZE_FAIL("1k", -EINVAL);
        SIZE_FAIL("1kB", -EINVAL);
        SIZE_FAIL("1Kb", -EINVAL);
        SIZE_FAIL("1KIB", -EINVAL);
        SIZE_FAIL("1b", -EINVAL);
        SIZE_FAIL("1iB", -EINVAL);
        SIZE_FAIL("1KiBB", -EINVAL);
        SIZE_FAIL("1BB", -EINVAL);
        SIZE_FAIL("1P", -EINVAL);
        SIZE_FAIL("1PiB", -EINVAL);
        SIZE_FAIL("1PB", -EINVAL);
        SIZE_FAIL("1EiB", -EINVAL);
        SIZE_FAIL("1GiB1", -EINVAL);
        SIZE_FAIL("0x10", -EINVAL);
}

/* ---- parse_duration_ms ------------------------------------------------------------ */

static void test_parse_duration_valid(void **state) {
        (void) state;
        DURATION_OK("0s", 0);
        DURATION_OK("0ms", 0);
        DURATION_OK("0d", 0);
        DURATION_OK("1ms", 1);
        DURATION_OK("250ms", 250);
        DURATION_OK("1500ms", 1500);
        DURATION_OK("1s", 1000);
        DURATION_OK("1m", 60000);
        DURATION_OK("1h", 3600000);
        DURATION_OK("1d", 86400000);
        DURATION_OK("1h30m", 5400000);
        DURATION_OK("90m", 5400000);
        DURATION_OK("2m30s", 150000);
        DURATION_OK("1m1ms", 60001); /* "ms" after "m" must not be read as minutes */
        DURATION_OK("1ms1m", 60001);
        DURATION_OK("1d2h3m4s5ms", 93784005);
        DURATION_OK("007s", 7000);
        DURATION_OK("18446744073709551615ms", UINT64_MAX);
        DURATION_OK("18446744073709551s", UINT64_C(18446744073709551000));
        DURATION_OK("18446744073709551s615ms", UINT64_MAX);
        DURATION_OK("213503982334d", UINT64_C(18446744073657600000));
}

static void test_parse_duration_overflow(void **state) {
        (void) state;
        DURATION_FAIL("18446744073709551616ms", -ERANGE);
        DURATION_FAIL("18446744073709552s", -ERANGE);
        DURATION_FAIL("307445734561826m", -ERANGE);
        DURATION_FAIL("5124095576031h", -ERANGE);
        DURATION_FAIL("213503982335d", -ERANGE);
        /* Each term fits; the sum does not. */
        DURATION_FAIL("18446744073709551615ms1ms", -ERANGE);
        DURATION_FAIL("18446744073709551s616ms", -ERANGE);
        DURATION_FAIL("213503982334d1d", -ERANGE);
}

static void test_parse_duration_invalid(void **state) {
        (void) state;
        DURATION_FAIL("", -EINVAL);
        DURATION_FAIL("0", -EINVAL);
        DURATION_FAIL("1", -EINVAL);
        DURATION_FAIL("1500", -EINVAL);
        DURATION_FAIL("ms", -EINVAL);
        DURATION_FAIL("s", -EINVAL);
        DURATION_FAIL("h1", -EINVAL);
        DURATION_FAIL("1h30", -EINVAL);
        DURATION_FAIL("1x", -EINVAL);
        DURATION_FAIL("1H", -EINVAL);
        DURATION_FAIL("1S", -EINVAL);
        DURATION_FAIL("1min", -EINVAL);
        DURATION_FAIL("1hh", -EINVAL);
        DURATION_FAIL("1mss", -EINVAL);
        DURATION_FAIL("1sm", -EINVAL);
        DURATION_FAIL("1us", -EINVAL);
        DURATION_FAIL("1.5h", -EINVAL);
        DURATION_FAIL("+1s", -EINVAL);
        DURATION_FAIL("-1s", -EINVAL);
        DURATION_FAIL(" 1s", -EINVAL);
        DURATION_FAIL("1s ", -EINVAL);
        DURATION_FAIL("1 s", -EINVAL);
        DURATION_FAIL("1h 30m", -EINVAL);
        DURATION_FAIL("1h,30m", -EINVAL);
        DURATION_FAIL("1h-30m", -EINVAL);
}

/* ---- format_size / format_duration_ms ---------------------------------------------- */

static void test_format_size(void **state) {
        (void) state;
        FORMAT_SIZE(0, "0B");
        FORMAT_SIZE(1, "1B");
        FORMAT_SIZE(1000, "1000B");
        FORMAT_SIZE(1023, "1023B");
        FORMAT_SIZE(1024, "1KiB");
        FORMAT_SIZE(1025, "1025B");
        FORMAT_SIZE(1500, "1500B");
        FORMAT_SIZE(1536, "1536B");
        FORMAT_SIZE(UINT64_C(1) << 20, "1MiB");
        FORMAT_SIZE((UINT64_C(1) << 20) + 1024, "1025KiB");
        FORMAT_SIZE(UINT64_C(20) << 30, "20GiB");
        FORMAT_SIZE(UINT64_C(1) << 40, "1TiB");
        FORMAT_SIZE(UINT64_C(1) << 50, "1024TiB"); /* TiB is the largest unit */
        FORMAT_SIZE(UINT64_C(1) << 63, "8388608TiB");
        FORMAT_SIZE(UINT64_C(18446744072635809792), "17179869183GiB");
        FORMAT_SIZE(UINT64_MAX, "18446744073709551615B");
}

static void test_format_size_roundtrip(void **state) {
        (void) state;
        static const uint64_t values[] = {
                0, 1, 1023, 1024, 1500, 1536, UINT64_C(1) << 20, UINT64_C(20) << 30, UINT64_C(1) << 40,
                UINT64_C(1) << 63, UINT64_MAX - 1023, UINT64_MAX,
        };
        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                char buf[64];
                uint64_t v = U64_SENTINEL;
                assert_true(format_size(values[i], buf, sizeof(buf)) > 0);
                assert_int_equal(parse_size(buf, &v), 0);
                assert_int_equal(v, values[i]);
        }
}

static void test_format_size_truncation(void **state) {
        (void) state;
        char buf[8];
        memset(buf, 'X', sizeof(buf));
        assert_int_equal(format_size(UINT64_C(20) << 30, buf, 4), 5);
        assert_string_equal(buf, "20G");
        assert_memory_equal(buf + 4, "XXXX", 4);

        memset(buf, 'X', sizeof(buf));
        assert_int_equal(format_size(UINT64_C(20) << 30, buf, 1), 5);
        assert_int_equal(buf[0], '\0');
        assert_int_equal(buf[1], 'X');

        assert_int_equal(format_size(UINT64_MAX, NULL, 0), 21);
}

static void test_format_duration(void **state) {
        (void) state;
        FORMAT_DURATION(0, "0s");
        FORMAT_DURATION(1, "1ms");
        FORMAT_DURATION(250, "250ms");
        FORMAT_DURATION(999, "999ms");
        FORMAT_DURATION(1000, "1s");
        FORMAT_DURATION(1001, "1s1ms");
        FORMAT_DURATION(1500, "1s500ms");
        FORMAT_DURATION(59999, "59s999ms");
        FORMAT_DURATION(60000, "1m");
        FORMAT_DURATION(150000, "2m30s");
        FORMAT_DURATION(3600000, "1h");
        FORMAT_DURATION(3600001, "1h1ms");
        FORMAT_DURATION(5400000, "1h30m");
        FORMAT_DURATION(86399999, "23h59m59s999ms");
        FORMAT_DURATION(86400000, "1d");
        FORMAT_DURATION(93784005, "1d2h3m4s5ms");
        FORMAT_DURATION(UINT64_C(86400000) * 365, "365d");
        FORMAT_DURATION(UINT64_MAX, "213503982334d14h25m51s615ms");
}

static void test_format_duration_roundtrip(void **state) {
        (void) state;
        static const uint64_t values[] = {
                0, 1, 999, 1000, 60001, 5400000, 86399999, 93784005, UINT64_C(18446744073657600000), UINT64_MAX,
        };
        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                char buf[64];
                uint64_t v = U64_SENTINEL;
                assert_true(format_duration_ms(values[i], buf, sizeof(buf)) > 0);
                assert_int_equal(parse_duration_ms(buf, &v), 0);
                assert_int_equal(v, values[i]);
        }
}

static void test_format_duration_truncation(void **state) {
        (void) state;
        char buf[8];

        /* Truncated in the middle of the second term. */
        memset(buf, 'X', sizeof(buf));
        assert_int_equal(format_duration_ms(5400000, buf, 4), 5);
        assert_string_equal(buf, "1h3");
        assert_memory_equal(buf + 4, "XXXX", 4);

        /* Truncated exactly at a term boundary. */
        memset(buf, 'X', sizeof(buf));
        assert_int_equal(format_duration_ms(5400000, buf, 3), 5);
        assert_string_equal(buf, "1h");
        assert_memory_equal(buf + 3, "XXXXX", 5);

        /* The first term alone fills the buffer; later terms write nothing. */
        memset(buf, 'X', sizeof(buf));
        assert_int_equal(format_duration_ms(93784005, buf, 2), 11);
        assert_string_equal(buf, "1");
        assert_memory_equal(buf + 2, "XXXXXX", 6);

        memset(buf, 'X', sizeof(buf));
        assert_int_equal(format_duration_ms(93784005, buf, 1), 11);
        assert_int_equal(buf[0], '\0');
        assert_int_equal(buf[1], 'X');

        /* Exactly enough room. */
        memset(buf, 'X', sizeof(buf));
        assert_int_equal(format_duration_ms(5400000, buf, 6), 5);
        assert_string_equal(buf, "1h30m");
        assert_memory_equal(buf + 6, "XX", 2);

        memset(buf, 'X', sizeof(buf));
        assert_int_equal(format_duration_ms(0, buf, 2), 2);
        assert_string_equal(buf, "0");

        assert_int_equal(format_duration_ms(93784005, NULL, 0), 11);
        assert_int_equal(format_duration_ms(0, NULL, 0), 2);
}

/* ---- hostname_is_valid --------------------------------------------------------------- */

static void test_hostname_valid(void **state) {
        (void) state;
        assert_true(hostname_is_valid("a"));
        assert_true(hostname_is_valid("0"));
        assert_true(hostname_is_valid("localhost"));
        assert_true(hostname_is_valid("example.com"));
        assert_true(hostname_is_valid("Registry.Example.COM"));
        assert_true(hostname_is_valid("a-b.c-d"));
        assert_true(hostname_is_valid("a--b"));
        assert_true(hostname_is_valid("123"));
        assert_true(hostname_is_valid("1a.2b"));
        assert_true(hostname_is_valid("xn--bcher-kva.example"));

        char *l63 = unit_repeat('a', 63);
        assert_true(hostname_is_valid(l63));
        char name[300];
        snprintf(name, sizeof(name), "x.%s.y", l63);
        assert_true(hostname_is_valid(name));
        free(l63);

        /* 63+1+63+1+63+1+61 = 253 bytes: the longest name. */
        char *l61 = unit_repeat('d', 61);
        snprintf(name, sizeof(name), "%s.%s.%s.%s", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                 "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc", l61);
        assert_int_equal(strlen(name), 253);
        assert_true(hostname_is_valid(name));
        free(l61);
}

static void test_hostname_invalid(void **state) {
        (void) state;
        assert_false(hostname_is_valid(""));
        assert_false(hostname_is_valid("."));
        assert_false(hostname_is_valid(".."));
        assert_false(hostname_is_valid("a."));
        assert_false(hostname_is_valid("example.com."));
        assert_false(hostname_is_valid(".a"));
        assert_false(hostname_is_valid("a..b"));
        assert_false(hostname_is_valid("-"));
        assert_false(hostname_is_valid("-a"));
        assert_false(hostname_is_valid("a-"));
        assert_false(hostname_is_valid("a.-b"));
        assert_false(hostname_is_valid("a-.b"));
        assert_false(hostname_is_valid("a_b"));
        assert_false(hostname_is_valid("a b"));
        assert_false(hostname_is_valid(" a"));
        assert_false(hostname_is_valid("a "));
        assert_false(hostname_is_valid("a:80"));
        assert_false(hostname_is_valid("a/b"));
        assert_false(hostname_is_valid("[::1]"));
        assert_false(hostname_is_valid("b\xc3\xbc" "cher.example"));

        char *l64 = unit_repeat('a', 64);
        assert_false(hostname_is_valid(l64));
        char name[300];
        snprintf(name, sizeof(name), "x.%s.y", l64);
        assert_false(hostname_is_valid(name));
        snprintf(name, sizeof(name), "x.%s", l64);
        assert_false(hostname_is_valid(name));
        free(l64);

        /* 254 bytes of valid labels. */
        char *l62 = unit_repeat('d', 62);
        snprintf(name, sizeof(name), "%s.%s.%s.%s", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                 "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc", l62);
        assert_int_equal(strlen(name), 254);
        assert_false(hostname_is_valid(name));
        free(l62);
}

/* ---- parse_host_port ------------------------------------------------------------------ */

static void test_host_port_valid(void **state) {
        (void) state;
        HOST_PORT_OK("example.com", false, "example.com", 0);
        HOST_PORT_OK("example.com:5000", false, "example.com", 5000);
        HOST_PORT_OK("example.com:5000", true, "example.com", 5000);
        HOST_PORT_OK("Registry.Example.COM:443", false, "registry.example.com", 443);
        HOST_PORT_OK("localhost:1", true, "localhost", 1);
        HOST_PORT_OK("localhost:65535", true, "localhost", 65535);
        HOST_PORT_OK("a", false, "a", 0);
        HOST_PORT_OK("1.2.3.4", false, "1.2.3.4", 0);
        HOST_PORT_OK("127.0.0.1:5080", true, "127.0.0.1", 5080);
        HOST_PORT_OK("255.255.255.255:80", false, "255.255.255.255", 80);
        HOST_PORT_OK("0.0.0.0:80", true, "0.0.0.0", 80);
        HOST_PORT_OK("[::1]", false, "::1", 0);
        HOST_PORT_OK("[::1]:5000", false, "::1", 5000);
        HOST_PORT_OK("[::1]:5000", true, "::1", 5000);
        HOST_PORT_OK("[::]:65535", true, "::", 65535);
        HOST_PORT_OK("[2001:db8::1]:443", false, "2001:db8::1", 443);
        HOST_PORT_OK("[::ffff:1.2.3.4]:80", false, "::ffff:1.2.3.4", 80);

        /* One spelling per IPv6 address: lower case, zeros compressed. */
        HOST_PORT_OK("[FD00:0::1]:443", false, "fd00::1", 443);
        HOST_PORT_OK("[2001:DB8:0:0:0:0:0:1]", false, "2001:db8::1", 0);
        HOST_PORT_OK("[0:0:0:0:0:0:0:1]:5000", true, "::1", 5000);
        HOST_PORT_OK("[2001:0db8:0000:0000:0000:0000:0000:0001]", false, "2001:db8::1", 0);
        HOST_PORT_OK("[FE80::ABCD]", false, "fe80::abcd", 0);

        char *l63 = unit_repeat('a', 63);
        char s[128];
        snprintf(s, sizeof(s), "%s.example:80", l63);
        char want[128];
        snprintf(want, sizeof(want), "%s.example", l63);
        HOST_PORT_OK(s, true, want, 80);
        free(l63);
}

static void test_host_port_port_required(void **state) {
        (void) state;
        HOST_PORT_FAIL("example.com", true, -EINVAL);
        HOST_PORT_FAIL("1.2.3.4", true, -EINVAL);
        HOST_PORT_FAIL("[::1]", true, -EINVAL);
        HOST_PORT_FAIL("example.com:", true, -EINVAL);
        HOST_PORT_FAIL("example.com:0", true, -ERANGE);
}

static void test_host_port_invalid(void **state) {
        (void) state;
        /* Ports. */
        HOST_PORT_FAIL("a:0", false, -ERANGE);
        HOST_PORT_FAIL("a:65536", false, -ERANGE);
        HOST_PORT_FAIL("a:18446744073709551616", false, -ERANGE);
        HOST_PORT_FAIL("[::1]:0", false, -ERANGE);
        HOST_PORT_FAIL("[::1]:65536", false, -ERANGE);
        HOST_PORT_FAIL("a:", false, -EINVAL);
        HOST_PORT_FAIL("a:+80", false, -EINVAL);
        HOST_PORT_FAIL("a:-1", false, -EINVAL);
        HOST_PORT_FAIL("a: 80", false, -EINVAL);
        HOST_PORT_FAIL("a:80 ", false, -EINVAL);
        HOST_PORT_FAIL("a:http", false, -EINVAL);
        HOST_PORT_FAIL("[::1]:", false, -EINVAL);
        HOST_PORT_FAIL("[::1]:+80", false, -EINVAL);

        /* Hosts. */
        HOST_PORT_FAIL("", false, -EINVAL);
        HOST_PORT_FAIL(":80", false, -EINVAL);
        HOST_PORT_FAIL(" a", false, -EINVAL);
        HOST_PORT_FAIL("a ", false, -EINVAL);
        HOST_PORT_FAIL("a_b:80", false, -EINVAL);
        HOST_PORT_FAIL("-a:80", false, -EINVAL);
        HOST_PORT_FAIL("a.", false, -EINVAL);
        HOST_PORT_FAIL("example.com.:80", false, -EINVAL);
        HOST_PORT_FAIL("a..b", false, -EINVAL);
        HOST_PORT_FAIL("a/b", false, -EINVAL);
        HOST_PORT_FAIL("user@a:80", false, -EINVAL);

        /* Dotted quads are addresses, not host names. */
        HOST_PORT_FAIL("999.1.1.1", false, -EINVAL);
        HOST_PORT_FAIL("999.1.1.1:80", false, -EINVAL);
        HOST_PORT_FAIL("256.0.0.1", false, -EINVAL);
        HOST_PORT_FAIL("1.2.3", false, -EINVAL);
        HOST_PORT_FAIL("1.2.3.4.5", false, -EINVAL);
        HOST_PORT_FAIL("1.2.3.4.", false, -EINVAL);
        HOST_PORT_FAIL("1..3.4", false, -EINVAL);

        /* IPv6 must be bracketed, well-formed and without a zone. */
        HOST_PORT_FAIL("::1", false, -EINVAL);
        HOST_PORT_FAIL("::1:80", false, -EINVAL);
        HOST_PORT_FAIL("2001:db8::1", false, -EINVAL);
        HOST_PORT_FAIL("a:b:c", false, -EINVAL);
        HOST_PORT_FAIL("[::1", false, -EINVAL);
        HOST_PORT_FAIL("[::1]x", false, -EINVAL);
        HOST_PORT_FAIL("[::1]80", false, -EINVAL);
        HOST_PORT_FAIL("[::1]]:80", false, -EINVAL);
        HOST_PORT_FAIL("[]", false, -EINVAL);
        HOST_PORT_FAIL("[]:80", false, -EINVAL);
        HOST_PORT_FAIL("[1.2.3.4]:80", false, -EINVAL);
        HOST_PORT_FAIL("[example.com]:80", false, -EINVAL);
        HOST_PORT_FAIL("[fe80::1%eth0]:80", false, -EINVAL);
        HOST_PORT_FAIL("[::g]", false, -EINVAL);
        HOST_PORT_FAIL("[ ::1]", false, -EINVAL);

        char *l64 = unit_repeat('a', 64);
        char s[128];
        snprintf(s, sizeof(s), "%s.example:80", l64);
        HOST_PORT_FAIL(s, false, -EINVAL);
        free(l64);
}

/* ---- url_parse / url_to_string ------------------------------------------------------- */

static void test_url_parse_valid(void **state) {
        (void) state;
        URL_OK("https://registry.example.com", "https", "registry.example.com", 0, "", "https://registry.example.com");
        URL_OK("https://registry.example.com/", "https", "registry.example.com", 0, "", "https://registry.example.com");
        URL_OK("http://a", "http", "a", 0, "", "http://a");
        URL_OK("http://a/v2/mirror", "http", "a", 0, "/v2/mirror", "http://a/v2/mirror");
        URL_OK("http://a/v2/mirror/", "http", "a", 0, "/v2/mirror", "http://a/v2/mirror");
        URL_OK("https://a:8443/v2/proxy-docker.io/", "https", "a", 8443, "/v2/proxy-docker.io",
               "https://a:8443/v2/proxy-docker.io");

        /* Default ports are dropped; the other scheme's default is not. */
        URL_OK("https://a:443", "https", "a", 0, "", "https://a");
        URL_OK("https://a:443/", "https", "a", 0, "", "https://a");
        URL_OK("http://a:80/x", "http", "a", 0, "/x", "http://a/x");
        URL_OK("https://a:80", "https", "a", 80, "", "https://a:80");
        URL_OK("http://a:443", "http", "a", 443, "", "http://a:443");
        URL_OK("https://a:1", "https", "a", 1, "", "https://a:1");
        URL_OK("https://a:65535", "https", "a", 65535, "", "https://a:65535");

        /* Scheme and host are case-insensitive and lower-cased; the path is not. */
        URL_OK("HTTPS://Registry.Example.COM/Path/X", "https", "registry.example.com", 0, "/Path/X",
               "https://registry.example.com/Path/X");
        URL_OK("HtTp://A:80", "http", "a", 0, "", "http://a");

        /* Addresses. */
        URL_OK("http://10.0.0.1:5000/", "http", "10.0.0.1", 5000, "", "http://10.0.0.1:5000");
        URL_OK("http://[::1]:5000/x", "http", "::1", 5000, "/x", "http://[::1]:5000/x");
        URL_OK("https://[::1]", "https", "::1", 0, "", "https://[::1]");
        URL_OK("https://[::1]:443/", "https", "::1", 0, "", "https://[::1]");
        URL_OK("https://[2001:db8::1]:8443/a", "https", "2001:db8::1", 8443, "/a", "https://[2001:db8::1]:8443/a");
        URL_OK("https://[2001:DB8::A]/", "https", "2001:db8::a", 0, "", "https://[2001:db8::a]");
        URL_OK("https://[2001:0db8:0:0:0:0:0:1]:443/v2", "https", "2001:db8::1", 0, "/v2", "https://[2001:db8::1]/v2");

        /* Path characters that are legal, including names that merely start with a dot. */
        URL_OK("https://a/.well-known/x", "https", "a", 0, "/.well-known/x", "https://a/.well-known/x");
        URL_OK("https://a/b..c/...", "https", "a", 0, "/b..c/...", "https://a/b..c/...");
        URL_OK("https://a/b@c", "https", "a", 0, "/b@c", "https://a/b@c");
        URL_OK("https://a/b%20c:d", "https", "a", 0, "/b%20c:d", "https://a/b%20c:d");
}

static void test_url_parse_scheme(void **state) {
        (void) state;
        URL_FAIL("ftp://a", REASON_SCHEME);
        URL_FAIL("file:///etc/passwd", REASON_SCHEME);
        URL_FAIL("httpss://a", REASON_SCHEME);
        URL_FAIL("htt://a", REASON_SCHEME);
        URL_FAIL("://a", REASON_SCHEME);
        URL_FAIL(" https://a", REASON_SCHEME);
        URL_FAIL("", REASON_NOT_URL);
        URL_FAIL("registry.example.com", REASON_NOT_URL);
        URL_FAIL("registry.example.com:5000/x", REASON_NOT_URL);
        URL_FAIL("https:/a", REASON_NOT_URL);
        URL_FAIL("https:a", REASON_NOT_URL);
        URL_FAIL("https", REASON_NOT_URL);
        URL_FAIL("https://", REASON_NOT_URL);
        URL_FAIL("https:///x", REASON_NOT_URL);
        URL_FAIL("http:///", REASON_NOT_URL);
}

static void test_url_parse_refused_parts(void **state) {
        (void) state;
        URL_FAIL("https://user@a", REASON_USERINFO);
        URL_FAIL("https://user:secret@a:443/x", REASON_USERINFO);
        URL_FAIL("https://@a", REASON_USERINFO);

        URL_FAIL("https://a?x=1", REASON_QUERY);
        URL_FAIL("https://a?", REASON_QUERY);
        URL_FAIL("https://a/p?x=1", REASON_QUERY);
        URL_FAIL("https://a/?", REASON_QUERY);
        URL_FAIL("https://a#frag", REASON_QUERY);
        URL_FAIL("https://a/p#", REASON_QUERY);
        URL_FAIL("https://a:443?x", REASON_QUERY);

        URL_FAIL("https://a/b c", REASON_CHAR);
        URL_FAIL("https://a/b\tc", REASON_CHAR);
        URL_FAIL("https://a/b\\c", REASON_CHAR);
        URL_FAIL("https://a/b\"c", REASON_CHAR);
        URL_FAIL("https://a/b\x7f", REASON_CHAR);
        URL_FAIL("https://a/b\x01", REASON_CHAR);
        URL_FAIL("https://a/b\xc3\xa9", REASON_CHAR);
        URL_FAIL("https://a/ ", REASON_CHAR);
}

static void test_url_parse_path_not_normalised(void **state) {
        (void) state;
        URL_FAIL("https://a//", REASON_NOT_NORMAL);
        URL_FAIL("https://a//b", REASON_NOT_NORMAL);
        URL_FAIL("https://a/b//c", REASON_NOT_NORMAL);
        URL_FAIL("https://a/b//", REASON_NOT_NORMAL);
        URL_FAIL("https://a/./b", REASON_NOT_NORMAL);
        URL_FAIL("https://a/b/./", REASON_NOT_NORMAL);
        URL_FAIL("https://a/../b", REASON_NOT_NORMAL);
        URL_FAIL("https://a/b/../c", REASON_NOT_NORMAL);
        URL_FAIL("https://a/b/../", REASON_NOT_NORMAL);
        /* The same dot segments without a trailing '/': the slash is dropped,
         * so these would otherwise become the paths "/b/.." and "/b/.". */
        URL_FAIL("https://a/b/..", REASON_NOT_NORMAL);
        URL_FAIL("https://a/b/.", REASON_NOT_NORMAL);
        URL_FAIL("https://a/..", REASON_NOT_NORMAL);
        URL_FAIL("https://a/.", REASON_NOT_NORMAL);
}

static void test_url_parse_bad_host(void **state) {
        (void) state;
        URL_FAIL("https://::1/", REASON_HOST);
        URL_FAIL("https://::1", REASON_HOST);
        URL_FAIL("https://2001:db8::1/v2", REASON_HOST);
        URL_FAIL("https://[::1/x", REASON_HOST);
        URL_FAIL("https://[::1]x/", REASON_HOST);
        URL_FAIL("https://[fe80::1%25eth0]/", REASON_HOST);
        URL_FAIL("https://a:0", REASON_HOST);
        URL_FAIL("https://a:65536/", REASON_HOST);
        URL_FAIL("https://a:/", REASON_HOST);
        URL_FAIL("https://a:443x", REASON_HOST);
        URL_FAIL("https://999.1.1.1/", REASON_HOST);
        URL_FAIL("https://a_b/", REASON_HOST);
        URL_FAIL("https://a./", REASON_HOST);
        URL_FAIL("https://-a/", REASON_HOST);
        URL_FAIL("https://a\\b/", REASON_HOST);
        URL_FAIL("https://a b/", REASON_HOST);

        char *l64 = unit_repeat('a', 64);
        char s[128];
        snprintf(s, sizeof(s), "https://%s.example/", l64);
        URL_FAIL(s, REASON_HOST);
        free(l64);

        char *l63 = unit_repeat('a', 63);
        char want_host[128], want_text[128];
        snprintf(s, sizeof(s), "https://%s.EXAMPLE/", l63);
        snprintf(want_host, sizeof(want_host), "%s.example", l63);
        snprintf(want_text, sizeof(want_text), "https://%s.example", l63);
        URL_OK(s, "https", want_host, 0, "", want_text);
        free(l63);
}

static void test_url_parse_null_reason(void **state) {
        (void) state;
        struct url u = { .scheme = SENTINEL_PTR, .host = SENTINEL_PTR, .port = U16_SENTINEL, .path = SENTINEL_PTR };
        assert_int_equal(url_parse("ftp://a", &u, NULL), -EINVAL);
        assert_int_equal(url_parse("https://a?q", &u, NULL), -EINVAL);
        assert_int_equal(url_parse("https://a:0", &u, NULL), -EINVAL);
        assert_ptr_equal(u.scheme, SENTINEL_PTR);
        assert_ptr_equal(u.host, SENTINEL_PTR);
        assert_int_equal(u.port, U16_SENTINEL);
        assert_ptr_equal(u.path, SENTINEL_PTR);

        u = (struct url) {};
        assert_int_equal(url_parse("https://a/x/", &u, NULL), 0);
        assert_string_equal(u.path, "/x");
        url_done(&u);
        assert_null(u.scheme);
        assert_null(u.host);
        assert_null(u.path);
        assert_int_equal(u.port, 0);
}

static void test_url_to_string(void **state) {
        (void) state;
        static const struct {
                struct url u;
                const char *want;
        } cases[] = {
                { { "https", "a", 0, "" }, "https://a" },
                { { "http", "a", 0, "/x/y" }, "http://a/x/y" },
                { { "https", "a", 8443, "/v2" }, "https://a:8443/v2" },
                { { "https", "a", 65535, "" }, "https://a:65535" },
                { { "http", "::1", 0, "" }, "http://[::1]" },
                { { "http", "2001:db8::1", 5000, "/p" }, "http://[2001:db8::1]:5000/p" },
                { { "https", "10.0.0.1", 1, "" }, "https://10.0.0.1:1" },
                /* The scheme's default port is dropped even when the caller spelled it out. */
                { { "https", "a", 443, "/v2" }, "https://a/v2" },
                { { "http", "a", 80, "" }, "http://a" },
                { { "https", "::1", 443, "" }, "https://[::1]" },
                { { "http", "a", 443, "" }, "http://a:443" },
                { { "https", "a", 80, "" }, "https://a:80" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *s = url_to_string(&cases[i].u);
                assert_non_null(s);
                assert_string_equal(s, cases[i].want);
                free(s);
        }
}

static void test_url_roundtrip(void **state) {
        (void) state;
        static const char *const inputs[] = {
                "https://registry.example.com",
                "http://a:8080/v2/proxy",
                "https://[::1]:5000/x",
                "https://10.0.0.1",
        };
        for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                struct url u = {}, again = {};
                assert_int_equal(url_parse(inputs[i], &u, NULL), 0);
                char *s = url_to_string(&u);
                assert_non_null(s);
                assert_string_equal(s, inputs[i]);
                assert_int_equal(url_parse(s, &again, NULL), 0);
                assert_string_equal(again.scheme, u.scheme);
                assert_string_equal(again.host, u.host);
                assert_int_equal(again.port, u.port);
                assert_string_equal(again.path, u.path);
                free(s);
                url_done(&u);
                url_done(&again);
        }
}

/* ---- url_redact ------------------------------------------------------------------------- */

#define REDACT(s, want_hidden, want)                                                     \
        do {                                                                             \
                char b_[256];                                                            \
                memset(b_, 'X', sizeof(b_));                                             \
                assert_int_equal(url_redact((s), b_, sizeof(b_)), (want_hidden));        \
                assert_string_equal(b_, (want));                                         \
        } while (0)

static void test_url_redact(void **state) {
        (void) state;
        REDACT("https://user:secret@a.example.com/x", true, "https://***@a.example.com/x");
        REDACT("https://user@a", true, "https://***@a");
        REDACT("https://@a", true, "https://***@a");
        REDACT("http://u:p@[::1]:5000", true, "http://***@[::1]:5000");
        REDACT("HTTPS://u:p@a", true, "HTTPS://***@a");
        /* A password may hold '@'; the last one ends the user info. */
        REDACT("https://user:s3cr@t@a..example.com/x", true, "https://***@a..example.com/x");
        /* Unencoded '/', '?' or '#' in a password (base64 tokens hold '/'). */
        REDACT("https://robot:tok/EN+s3cret==@mirror.example.com/v2", true, "https://***@mirror.example.com/v2");
        REDACT("https://u:pa?ss@a", true, "https://***@a");
        REDACT("https://u:pa#ss@a/x", true, "https://***@a/x");

        REDACT("https://a.example.com/x", false, "https://a.example.com/x");
        REDACT("https://a:443", false, "https://a:443");
        REDACT("", false, "");
        REDACT("user:pw", false, "user:pw");
        REDACT("not a url", false, "not a url");
        /* Without a scheme (the Helm form's endpoints, or a typo) the user info starts at the beginning. */
        REDACT("robot:tok@host", true, "***@host");
        REDACT("robot:tok/x@host:5000/v2", true, "***@host:5000/v2");
}

/* Whatever the buffer size, no byte of the secret is shown. */
static void test_url_redact_truncation(void **state) {
        (void) state;
        static const char *const inputs[] = {
                "https://robot:SECRET@mirror.example.com/v2",
                "https://robot:SE/CRET@mirror.example.com/v2",
                "https://SECRET@a",
        };
        for (size_t i = 0; i < ELEMENTSOF(inputs); i++)
                for (size_t size = 1; size <= 64; size++) {
                        char buf[80];
                        memset(buf, 'X', sizeof(buf));
                        assert_true(url_redact(inputs[i], buf, size));
                        assert_true(strlen(buf) < size);
                        assert_null(strstr(buf, "SE"));
                        assert_int_equal(buf[size], 'X');
                }

        char buf[16];
        memset(buf, 'X', sizeof(buf));
        assert_true(url_redact("https://u:p@host.example", buf, 10));
        assert_string_equal(buf, "https://*");
        assert_false(url_redact("https://a.example.com", buf, 10));
        assert_string_equal(buf, "https://a");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_uint_valid),
                cmocka_unit_test(test_parse_uint_range),
                cmocka_unit_test(test_parse_uint_invalid),
                cmocka_unit_test(test_parse_port),
                cmocka_unit_test(test_parse_size_units),
                cmocka_unit_test(test_parse_size_overflow),
                cmocka_unit_test(test_parse_size_invalid),
                cmocka_unit_test(test_parse_duration_valid),
                cmocka_unit_test(test_parse_duration_overflow),
                cmocka_unit_test(test_parse_duration_invalid),
                cmocka_unit_test(test_format_size),
                cmocka_unit_test(test_format_size_roundtrip),
                cmocka_unit_test(test_format_size_truncation),
                cmocka_unit_test(test_format_duration),
                cmocka_unit_test(test_format_duration_roundtrip),
                cmocka_unit_test(test_format_duration_truncation),
                cmocka_unit_test(test_hostname_valid),
                cmocka_unit_test(test_hostname_invalid),
                cmocka_unit_test(test_host_port_valid),
                cmocka_unit_test(test_host_port_port_required),
                cmocka_unit_test(test_host_port_invalid),
                cmocka_unit_test(test_url_parse_valid),
                cmocka_unit_test(test_url_parse_scheme),
                cmocka_unit_test(test_url_parse_refused_parts),
                cmocka_unit_test(test_url_parse_path_not_normalised),
                cmocka_unit_test(test_url_parse_bad_host),
                cmocka_unit_test(test_url_parse_null_reason),
                cmocka_unit_test(test_url_to_string),
                cmocka_unit_test(test_url_roundtrip),
                cmocka_unit_test(test_url_redact),
                cmocka_unit_test(test_url_redact_truncation),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
