/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/admin-wire.c: the admin API's reply as the command
 * line parses it (status, exit status, where output ends and errors begin,
 * Content-Length kept to, malformed heads refused) and arguments encoded into
 * a query string. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "agent/admin-wire.h"

static int parse(const char *s, struct admin_reply *r) {
        return admin_reply_parse(s, strlen(s), r);
}

static void test_reply(void **state) {
        (void) state;
        struct admin_reply r;
        const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nLayerd-Exit-Status: 1\r\n"
                        "layerd-stdout-length:  4 \r\n\r\nout\nerr\nX";
        assert_int_equal(admin_reply_parse(s, strlen(s) - 1, &r), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.exit_status, 1);
        assert_int_equal(r.out_len, 4);
        assert_memory_equal(r.out, "out\n", 4);
        assert_int_equal(r.err_len, 4);
        assert_memory_equal(r.err, "err\n", 4);
        /* Without the stdout header (an error answer), the body is out. */
        assert_int_equal(parse("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{}", &r), 0);
        assert_int_equal(r.status, 404);
        assert_int_equal(r.exit_status, -1);
        assert_int_equal(r.out_len, 2);
        assert_int_equal(r.err_len, 0);
        assert_int_equal(parse("HTTP/1.0 200 \r\n\r\n", &r), 0);
        assert_int_equal(r.out_len, 0);
}

static void test_malformed(void **state) {
        (void) state;
        struct admin_reply r = { .status = 7 };
        static const char *const bad[] = {
                "",
                "HTTP/1.1 200 OK\r\n",                                   /* no end of head */
                "HTTP/2 200 OK\r\n\r\n",                                 /* not HTTP/1.x */
                "HTTP/1.1 20 OK\r\n\r\n",                                /* two digits */
                "HTTP/1.1 099 OK\r\n\r\n",                               /* below 100 */
                "HTTP/1.1 200OK\r\n\r\n",                                /* no space */
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab",        /* short body */
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab",        /* long body */
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",          /* not a number */
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",         /* negative */
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", /* twice */
                "HTTP/1.1 200 OK\r\nLayerd-Exit-Status: 256\r\n\r\n",    /* past 255 */
                "HTTP/1.1 200 OK\r\nLayerd-Stdout-Length: 3\r\n\r\nab",  /* past the body */
                "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
                "HTTP/1.1 200 OK\nX: bare LF\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(parse(bad[i], &r), -EBADMSG);
                assert_int_equal(r.status, 7); /* written only on success */
        }
}

static void test_head_bound(void **state) {
        (void) state;
        static char big[ADMIN_REPLY_HEAD_MAX + 64];
        memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
        memset(big + 20, 'a', sizeof(big) - 20);
        memcpy(big + sizeof(big) - 4, "\r\n\r\n", 4);
        struct admin_reply r;
        assert_int_equal(admin_reply_parse(big, sizeof(big), &r), -EBADMSG);
}

static void test_query(void **state) {
        (void) state;
        struct buf b = BUF_INIT(256);
        assert_int_equal(buf_append_str(&b, "/v1/cache/check"), 0);
        assert_int_equal(admin_query_append(&b, "image", "reg:5000/a/b:v1"), 0);
        assert_int_equal(admin_query_append(&b, "image", "x@sha256:ab&c=d e+f~_.-"), 0);
        assert_string_equal(buf_str(&b), "/v1/cache/check?image=reg%3A5000%2Fa%2Fb%3Av1"
                                         "&image=x%40sha256%3Aab%26c%3Dd%20e%2Bf~_.-");
        buf_free(&b);
        struct buf small = BUF_INIT(8);
        assert_int_equal(admin_query_append(&small, "k", "long value"), -EFBIG);
        buf_free(&small);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reply),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_head_bound),
                cmocka_unit_test(test_query),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
