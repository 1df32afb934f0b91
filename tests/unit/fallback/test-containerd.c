/* SPDX-License-Identifier: Apache-2.0 */
/* containerd's version answer: the gRPC frame and protobuf decoding on
 * hand-made bytes (what containerd 1.6.20 sends, unknown fields of every wire
 * type, and each way a frame can be broken), then the socket side's errors
 * against unix sockets that are missing, refuse, hang or speak another
 * protocol. A live containerd is tests/integration/test-hosts-cli.sh's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/macro.h"
#include "fallback/containerd.h"
#include "fallback/fallback.h"
#include "tests/unit/unit.h"

/* ---- frames -------------------------------------------------------------------- */

struct frame {
        uint8_t b[8192];
        size_t len;
};

static void put(struct frame *f, const void *data, size_t n) {
        assert_true(f->len + n <= sizeof(f->b));
        memcpy(f->b + f->len, data, n);
        f->len += n;
}

static void put_byte(struct frame *f, uint8_t c) {
        put(f, &c, 1);
}

static void put_varint(struct frame *f, uint64_t v) {
        do {
                put_byte(f, (uint8_t) ((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
                v >>= 7;
        } while (v);
}

static void put_string(struct frame *f, unsigned field, const char *s) {
        put_varint(f, (uint64_t) field << 3 | 2);
        put_varint(f, strlen(s));
        put(f, s, strlen(s));
}

/* The gRPC frame around message m: flag, big-endian length (len, or m's own). */
static struct frame grpc(uint8_t flag, const struct frame *m, int64_t len) {
        struct frame f = { 0 };
        uint32_t n = len >= 0 ? (uint32_t) len : (uint32_t) m->len;
        uint8_t h[5] = { flag, (uint8_t) (n >> 24), (uint8_t) (n >> 16), (uint8_t) (n >> 8), (uint8_t) n };
        put(&f, h, 5);
        put(&f, m->b, m->len);
        return f;
}

static int decode(const struct frame *f, char **ret, char *reason) {
        *ret = NULL;
        reason[0] = '\0';
        return containerd_version_decode(f->b, f->len, ret, reason, 160);
}

static void assert_refused(const struct frame *f, const char *why) {
        char *v = NULL, reason[160];
        assert_int_equal(decode(f, &v, reason), -EPROTO);
        assert_null(v);
        if (!strstr(reason, why))
                fail_msg("reason \"%s\" does not say \"%s\"", reason, why);
}

static void assert_version(const struct frame *f, const char *want) {
        char *v = NULL, reason[160];
        int r = decode(f, &v, reason);
        if (r != 0)
                fail_msg("decode: %d: %s", r, reason);
        assert_string_equal(v, want);
        free(v);
}

/* ---- decoding ------------------------------------------------------------------ */

/* The bytes containerd 1.6.20 (Debian 12) answers: 00 00000022, then
 * version "1.6.20~ds1" and a 20-byte revision. */
static void test_good(void **state) {
        (void) state;
        struct frame m = { 0 };
        put_string(&m, 1, "1.6.20~ds1");
        put_string(&m, 2, "1.6.20~ds1-1+deb12u3");
        assert_int_equal(m.len, 0x22);
        struct frame f = grpc(0, &m, -1);
        assert_memory_equal(f.b, "\x00\x00\x00\x00\x22\x0a\x0a" "1.6.20~ds1", 17);
        assert_version(&f, "1.6.20~ds1");

        /* The revision first, or absent: only field 1 counts. */
        struct frame m2 = { 0 };
        put_string(&m2, 2, "abcdef");
        put_string(&m2, 1, "v2.0.7");
        f = grpc(0, &m2, -1);
        assert_version(&f, "v2.0.7");
}

static void test_unknown_fields(void **state) {
        (void) state;
        struct frame m = { 0 };
        put_varint(&m, 3 << 3 | 0); /* varint */
        put_varint(&m, UINT64_MAX);  /* ten bytes */
        put_varint(&m, 4 << 3 | 1); /* fixed64 */
        put(&m, "\1\2\3\4\5\6\7\x08", 8);
        put_string(&m, 1, "1.7.24-0ubuntu1");
        put_varint(&m, 5 << 3 | 5); /* fixed32 */
        put(&m, "\1\2\3\4", 4);
        put_string(&m, 6, ""); /* an empty LEN */
        put_varint(&m, 7 << 3 | 3); /* a group, with a nested group and a string inside */
        put_varint(&m, 8 << 3 | 3);
        put_string(&m, 1, "not the version: inside a group");
        put_varint(&m, 8 << 3 | 4);
        put_varint(&m, 9 << 3 | 0);
        put_varint(&m, 1);
        put_varint(&m, 7 << 3 | 4);
        put_varint(&m, (uint64_t) 0x1fffffff << 3 | 0); /* the highest field number */
        put_varint(&m, 0);
        struct frame f = grpc(0, &m, -1);
        assert_version(&f, "1.7.24-0ubuntu1");
}

static void test_truncated_varint(void **state) {
        (void) state;
        struct frame m = { 0 };
        put_byte(&m, 0x0a); /* field 1, LEN, and a length that never ends */
        put_byte(&m, 0x8a);
        struct frame f = grpc(0, &m, -1);
        assert_refused(&f, "version field");

        struct frame t = { 0 };
        put_string(&t, 1, "1.6.20");
        put_byte(&t, 0x98); /* a tag cut in half */
        f = grpc(0, &t, -1);
        assert_refused(&f, "bad tag");

        struct frame u = { 0 };
        put_string(&u, 1, "1.6.20");
        put_byte(&u, 3 << 3 | 0);
        put_byte(&u, 0xff); /* an unknown varint cut short */
        f = grpc(0, &u, -1);
        assert_refused(&f, "field 3");

        /* Eleven bytes: more than 64 bits. */
        struct frame w = { 0 };
        put_byte(&w, 3 << 3 | 0);
        put(&w, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10);
        f = grpc(0, &w, -1);
        assert_refused(&f, "field 3");
}

static void test_length_overflow(void **state) {
        (void) state;
        struct frame m = { 0 };
        put_byte(&m, 0x0a);
        put_byte(&m, 0x7f); /* 127 bytes announced, 3 follow */
        put(&m, "1.6", 3);
        struct frame f = grpc(0, &m, -1);
        assert_refused(&f, "version field");

        struct frame h = { 0 }; /* a length near 2^64: no wrap-around */
        put_byte(&h, 6 << 3 | 2);
        put_varint(&h, UINT64_MAX - 1);
        f = grpc(0, &h, -1);
        assert_refused(&f, "field 6");

        struct frame x = { 0 }; /* fixed64 and fixed32 past the end */
        put_byte(&x, 4 << 3 | 1);
        put(&x, "1234567", 7);
        f = grpc(0, &x, -1);
        assert_refused(&f, "field 4");
        struct frame y = { 0 };
        put_byte(&y, 5 << 3 | 5);
        put(&y, "123", 3);
        f = grpc(0, &y, -1);
        assert_refused(&f, "field 5");

        /* The frame's length against what follows, and against the cap. */
        struct frame v = { 0 };
        put_string(&v, 1, "1.6.20");
        f = grpc(0, &v, (int64_t) v.len + 1);
        assert_refused(&f, "frame says");
        f = grpc(0, &v, (int64_t) v.len - 1);
        assert_refused(&f, "frame says");
        f = grpc(0, &v, CONTAINERD_MESSAGE_MAX + 1);
        assert_refused(&f, "at most");
        f = grpc(0, &v, UINT32_MAX);
        assert_refused(&f, "at most");
        _cleanup_free_ char *big = unit_repeat('1', CONTAINERD_MESSAGE_MAX);
        struct frame b = { 0 };
        put_string(&b, 2, big);
        f = grpc(0, &b, -1);
        assert_refused(&f, "at most");
}

static void test_compressed(void **state) {
        (void) state;
        struct frame m = { 0 };
        put_string(&m, 1, "1.6.20");
        struct frame f = grpc(1, &m, -1);
        assert_refused(&f, "compressed");
        f = grpc(0x80, &m, -1);
        assert_refused(&f, "compressed");
}

static void test_empty(void **state) {
        (void) state;
        struct frame none = { 0 };
        assert_refused(&none, "no gRPC frame");
        struct frame four = { .b = { 0, 0, 0, 0 }, .len = 4 };
        assert_refused(&four, "no gRPC frame");
        struct frame m = { 0 };
        struct frame f = grpc(0, &m, -1); /* an empty message: no version */
        assert_refused(&f, "no version");
        put_string(&m, 1, "");
        f = grpc(0, &m, -1);
        assert_refused(&f, "no version");
        struct frame r = { 0 };
        put_string(&r, 2, "only a revision");
        f = grpc(0, &r, -1);
        assert_refused(&f, "no version");
}

static void test_garbage(void **state) {
        (void) state;
        struct frame f = { 0 };
        put(&f, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
        assert_refused(&f, "compressed"); /* 'H' as the flag */

        struct frame m = { 0 };
        put_byte(&m, 0x00); /* field 0 */
        put_byte(&m, 0x01);
        f = grpc(0, &m, -1);
        assert_refused(&f, "bad tag");

        const uint8_t bad_wire[] = { 3 << 3 | 6, 3 << 3 | 7, 3 << 3 | 4 }; /* 6, 7, and an end without a start */
        for (size_t i = 0; i < ELEMENTSOF(bad_wire); i++) {
                struct frame w = { 0 };
                put_byte(&w, bad_wire[i]);
                put_byte(&w, 0);
                f = grpc(0, &w, -1);
                assert_refused(&f, "field 3");
        }

        struct frame g = { 0 }; /* a group whose end tag names another field */
        put_byte(&g, 3 << 3 | 3);
        put_byte(&g, 4 << 3 | 4);
        f = grpc(0, &g, -1);
        assert_refused(&f, "field 3");

        struct frame o = { 0 }; /* a group never closed */
        put_byte(&o, 3 << 3 | 3);
        f = grpc(0, &o, -1);
        assert_refused(&f, "field 3");

        struct frame d = { 0 }; /* groups nested deeper than anyone writes */
        for (int i = 0; i < 64; i++)
                put_byte(&d, 3 << 3 | 3);
        for (int i = 0; i < 64; i++)
                put_byte(&d, 3 << 3 | 4);
        f = grpc(0, &d, -1);
        assert_refused(&f, "field 3");

        struct frame v = { 0 }; /* the version as a varint */
        put_byte(&v, 1 << 3 | 0);
        put_byte(&v, 7);
        f = grpc(0, &v, -1);
        assert_refused(&f, "version field");

        static const char *const bad_versions[] = { "1.6\n", "1.6 20", "1.6\"x", "\xc3\xa9" };
        for (size_t i = 0; i < ELEMENTSOF(bad_versions); i++) {
                struct frame b = { 0 };
                put_string(&b, 1, bad_versions[i]);
                f = grpc(0, &b, -1);
                assert_refused(&f, "version with byte");
        }
        _cleanup_free_ char *long_version = unit_repeat('1', CONTAINERD_VERSION_MAX + 1);
        struct frame l = { 0 };
        put_string(&l, 1, long_version);
        f = grpc(0, &l, -1);
        assert_refused(&f, "version of");

        /* Pseudo-random bytes after a valid header: refused or decoded, never past the end (ASan). */
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        for (int round = 0; round < 2000; round++) {
                struct frame r = { 0 };
                size_t n = (size_t) (round % 61);
                for (size_t i = 0; i < n; i++) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        put_byte(&r, (uint8_t) x);
                }
                f = grpc(0, &r, -1);
                char *out = NULL, reason[160];
                int rc = decode(&f, &out, reason);
                assert_true(rc == 0 || rc == -EPROTO);
                assert_true(rc == 0 ? out != NULL : out == NULL);
                free(out);
        }
}

/* ---- the socket ------------------------------------------------------------------ */

static char tmp[64];

static int group_setup(void **state) {
        (void) state;
        assert_int_equal(fallback_global_init(), 0);
        snprintf(tmp, sizeof(tmp), "/tmp/layerd-test-containerd-XXXXXX");
        assert_non_null(mkdtemp(tmp));
        return 0;
}

static int group_teardown(void **state) {
        (void) state;
        unit_rm_rf(tmp);
        fallback_global_done();
        return 0;
}

/* A unix socket at tmp/name, bound; listening or not. */
static int unix_socket(const char *name, bool listening, char *path, size_t size) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(path, size, "%s/%s", tmp, name);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        unlink(path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        if (listening)
                assert_int_equal(listen(fd, 8), 0);
        return fd;
}

static void assert_fails(const char *path, uint64_t timeout_ms, int want, const char *why) {
        char *v = NULL, reason[256] = "";
        int r = fallback_containerd_version(path, timeout_ms, &v, reason, sizeof(reason));
        if (r != want)
                fail_msg("%s: %d (%s), wanted %d: %s", path, r, strerror(-r), want, reason);
        assert_null(v);
        if (!strstr(reason, why))
                fail_msg("reason \"%s\" does not say \"%s\"", reason, why);
}

static void test_no_socket(void **state) {
        (void) state;
        char path[128];
        snprintf(path, sizeof(path), "%s/missing.sock", tmp);
        assert_fails(path, 500, -ENOENT, "No such file");
        snprintf(path, sizeof(path), "%s/file", tmp);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
        assert_fails(path, 500, -ENOTSOCK, "not a socket");
}

static void test_refused(void **state) {
        (void) state;
        char path[128];
        int fd = unix_socket("refuse.sock", false, path, sizeof(path));
        assert_fails(path, 500, -ECONNREFUSED, "connection refused");
        close(fd);
}

/* Connects (the backlog takes it), and nothing ever answers. */
static void test_timeout(void **state) {
        (void) state;
        char path[128];
        int fd = unix_socket("hang.sock", true, path, sizeof(path));
        assert_fails(path, 300, -ETIMEDOUT, "no answer in time");
        close(fd);
}

struct http1_peer {
        int fd;
};

/* Answers the HTTP/2 preface as an HTTP/1.1 server would. */
static void *http1_main(void *userdata) {
        struct http1_peer *p = userdata;
        int c = accept4(p->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
                return NULL;
        char buf[512];
        (void) !read(c, buf, sizeof(buf));
        static const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void) !write(c, answer, sizeof(answer) - 1);
        close(c);
        return NULL;
}

static void test_not_grpc(void **state) {
        (void) state;
        char path[128];
        struct http1_peer p = { .fd = unix_socket("http1.sock", true, path, sizeof(path)) };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, http1_main, &p), 0);
        assert_fails(path, 2000, -EPROTO, "not a gRPC answer");
        pthread_join(t, NULL);
        close(p.fd);
}

int main(void) {
        const struct CMUnitTest decoding[] = {
                cmocka_unit_test(test_good),         cmocka_unit_test(test_unknown_fields),
                cmocka_unit_test(test_truncated_varint), cmocka_unit_test(test_length_overflow),
                cmocka_unit_test(test_compressed),   cmocka_unit_test(test_empty),
                cmocka_unit_test(test_garbage),
        };
        const struct CMUnitTest socket_tests[] = {
                cmocka_unit_test(test_no_socket),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_timeout),
                cmocka_unit_test(test_not_grpc),
        };
        int failed = cmocka_run_group_tests_name("decoding", decoding, NULL, NULL);
        failed += cmocka_run_group_tests_name("socket", socket_tests, group_setup, group_teardown);
        return failed;
}
