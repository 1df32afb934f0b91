/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/host.c: which Host headers the pull API takes (the
 * names and addresses a local client sends) and which it refuses (a page's
 * own name after DNS rebinding, other addresses, malformed values). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "agent/host.h"
#include "common/macro.h"

static struct sockaddr_storage local;
static socklen_t local_len;

static const struct sockaddr *local_v4(const char *ip) {
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(5080) };
        assert_int_equal(inet_pton(AF_INET, ip, &in.sin_addr), 1);
        memset(&local, 0, sizeof(local));
        memcpy(&local, &in, sizeof(in));
        local_len = sizeof(in);
        return (const struct sockaddr *) &local;
}

static const struct sockaddr *local_v6(const char *ip) {
        struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(5080) };
        assert_int_equal(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
        memset(&local, 0, sizeof(local));
        memcpy(&local, &in6, sizeof(in6));
        local_len = sizeof(in6);
        return (const struct sockaddr *) &local;
}

/* Host against a connection that arrived on ip (set before the call reads local_len). */
static bool at_v4(const char *host, const char *ip) {
        const struct sockaddr *sa = local_v4(ip);
        return host_is_acceptable(host, sa, local_len);
}

static bool at_v6(const char *host, const char *ip) {
        const struct sockaddr *sa = local_v6(ip);
        return host_is_acceptable(host, sa, local_len);
}

static void test_loopback_always(void **state) {
        (void) state;
        static const char *const ok[] = {
                "localhost", "LOCALHOST:5080", "localhost.", "localhost:1", "127.0.0.1", "127.0.0.1:5080",
                "127.1.2.3:65535", "[::1]", "[::1]:5080", "[::ffff:127.0.0.1]:5080", "[0:0:0:0:0:0:0:1]:80",
        };
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                assert_true(host_is_acceptable(ok[i], NULL, 0));
                assert_true(at_v4(ok[i], "10.0.0.7"));
        }
        /* HTTP/1.0 without Host: allowed. */
        assert_true(host_is_acceptable(NULL, NULL, 0));
}

static void test_rebinding_refused(void **state) {
        (void) state;
        static const char *const bad[] = {
                "evil.example", "evil.example:5080", "evil.localhost", "localhost.evil.example", "127.0.0.1.nip.io",
                "node1:5080", "10.0.0.8:5080", "[fe80::1]:5080", "0.0.0.0:5080", "[::]:5080",
                /* malformed */
                "", ":5080", "127.0.0.1:", "127.0.0.1:50a", "127.0.0.1:123456", "[::1", "[::1]x", "::1",
                "127.0.0.1 ", "127.0.0.1:5080:1", "[]:80", "0x7f.1", "2130706433",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_false(host_is_acceptable(bad[i], NULL, 0));
                assert_false(at_v4(bad[i], "10.0.0.7"));
        }
}

static void test_connection_address(void **state) {
        (void) state;
        /* The address the connection arrived on, with any port or none. */
        assert_false(host_is_acceptable("10.0.0.7:5080", NULL, 0));
        assert_true(at_v4("10.0.0.7:5080", "10.0.0.7"));
        assert_true(at_v4("10.0.0.7", "10.0.0.7"));
        assert_false(at_v4("10.0.0.8:5080", "10.0.0.7"));
        /* A dual-stack wildcard listener sees an IPv4 client as ::ffff:10.0.0.7. */
        assert_true(at_v6("10.0.0.7:5080", "::ffff:10.0.0.7"));
        assert_false(at_v6("10.0.0.8:5080", "::ffff:10.0.0.7"));
        assert_true(at_v6("[2001:db8::7]:5080", "2001:db8::7"));
        assert_true(at_v6("[2001:DB8:0::7]", "2001:db8::7"));
        assert_true(at_v6("[fe80::7%25eth0]:5080", "fe80::7"));
        assert_false(at_v6("[2001:db8::8]:5080", "2001:db8::7"));
        assert_false(at_v4("[2001:db8::7]:5080", "10.0.0.7"));
        /* A name stays refused even when it is this node's: only a page's would be sent. */
        assert_false(at_v4("node1.example:5080", "10.0.0.7"));
        /* Too short a sockaddr is no address. */
        assert_false(host_is_acceptable("10.0.0.7", local_v4("10.0.0.7"), 4));
}

static void test_length(void **state) {
        (void) state;
        char host[HOST_HEADER_MAX + 8];
        memset(host, 'a', sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        assert_false(host_is_acceptable(host, NULL, 0));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_loopback_always),
                cmocka_unit_test(test_rebinding_refused),
                cmocka_unit_test(test_connection_address),
                cmocka_unit_test(test_length),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
