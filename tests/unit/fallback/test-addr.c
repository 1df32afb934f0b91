/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for fallback/addr.c: the class of each address range the issue
 * names, and which hops away from an endpoint may go where — e.g. a public
 * registry redirecting to 127.0.0.1 is refused (no public endpoint can be had
 * on loopback in a test, so the decision is tested here, as a pure function). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include "common/macro.h"
#include "fallback/addr.h"
#include "fallback/fallback.h"
#include "fallback/http.h"

static enum fallback_addr_class of(const char *ip) {
        enum fallback_addr_class c = _FALLBACK_ADDR_CLASS_MAX;
        assert_int_equal(fallback_addr_class_of_ip(ip, &c), 0);
        /* The sockaddr path (libcurl's opensocket callback) agrees with the text one. */
        struct sockaddr_storage ss = { 0 };
        struct sockaddr_in *in = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        if (inet_pton(AF_INET, ip, &in->sin_addr) == 1)
                in->sin_family = AF_INET;
        else {
                assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
                in6->sin6_family = AF_INET6;
        }
        assert_int_equal(fallback_addr_class((struct sockaddr *) &ss), c);
        return c;
}

static void test_classes(void **state) {
        (void) state;
        static const struct {
                const char *ip;
                enum fallback_addr_class c;
        } cases[] = {
                { "127.0.0.1", FALLBACK_ADDR_LOOPBACK },      { "127.255.255.254", FALLBACK_ADDR_LOOPBACK },
                { "0.0.0.0", FALLBACK_ADDR_LOOPBACK },        { "0.1.2.3", FALLBACK_ADDR_LOOPBACK },
                { "::1", FALLBACK_ADDR_LOOPBACK },            { "::", FALLBACK_ADDR_LOOPBACK },
                { "::ffff:127.0.0.1", FALLBACK_ADDR_LOOPBACK },
                { "169.254.169.254", FALLBACK_ADDR_LINK_LOCAL }, { "169.254.0.1", FALLBACK_ADDR_LINK_LOCAL },
                { "fe80::1", FALLBACK_ADDR_LINK_LOCAL },      { "febf::1", FALLBACK_ADDR_LINK_LOCAL },
                { "::ffff:169.254.169.254", FALLBACK_ADDR_LINK_LOCAL },
                { "10.0.0.1", FALLBACK_ADDR_PRIVATE },        { "10.255.255.255", FALLBACK_ADDR_PRIVATE },
                { "172.16.0.1", FALLBACK_ADDR_PRIVATE },      { "172.31.255.255", FALLBACK_ADDR_PRIVATE },
                { "192.168.1.1", FALLBACK_ADDR_PRIVATE },     { "100.64.0.1", FALLBACK_ADDR_PRIVATE },
                { "100.127.255.255", FALLBACK_ADDR_PRIVATE }, { "fc00::1", FALLBACK_ADDR_PRIVATE },
                { "fd12:3456::1", FALLBACK_ADDR_PRIVATE },    { "::ffff:10.1.2.3", FALLBACK_ADDR_PRIVATE },
                { "::ffff:192.168.0.1", FALLBACK_ADDR_PRIVATE },
                /* just outside each range */
                { "1.0.0.1", FALLBACK_ADDR_PUBLIC },          { "126.255.255.255", FALLBACK_ADDR_PUBLIC },
                { "128.0.0.1", FALLBACK_ADDR_PUBLIC },        { "169.253.255.255", FALLBACK_ADDR_PUBLIC },
                { "169.255.0.1", FALLBACK_ADDR_PUBLIC },      { "11.0.0.1", FALLBACK_ADDR_PUBLIC },
                { "9.255.255.255", FALLBACK_ADDR_PUBLIC },    { "172.15.255.255", FALLBACK_ADDR_PUBLIC },
                { "172.32.0.1", FALLBACK_ADDR_PUBLIC },       { "192.167.1.1", FALLBACK_ADDR_PUBLIC },
                { "192.169.1.1", FALLBACK_ADDR_PUBLIC },      { "100.63.255.255", FALLBACK_ADDR_PUBLIC },
                { "100.128.0.1", FALLBACK_ADDR_PUBLIC },      { "8.8.8.8", FALLBACK_ADDR_PUBLIC },
                { "2001:db8::1", FALLBACK_ADDR_PUBLIC },      { "2600::1", FALLBACK_ADDR_PUBLIC },
                { "fe00::1", FALLBACK_ADDR_PUBLIC },          { "fbff::1", FALLBACK_ADDR_PUBLIC },
                { "::2", FALLBACK_ADDR_PUBLIC },              { "::ffff:8.8.8.8", FALLBACK_ADDR_PUBLIC },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                if (of(cases[i].ip) != cases[i].c)
                        fail_msg("%s: %s, want %s", cases[i].ip, fallback_addr_class_name(of(cases[i].ip)),
                                 fallback_addr_class_name(cases[i].c));
        }
}

static void test_not_an_address(void **state) {
        (void) state;
        enum fallback_addr_class c = FALLBACK_ADDR_PUBLIC;
        assert_int_equal(fallback_addr_class_of_ip(NULL, &c), -EINVAL);
        assert_int_equal(fallback_addr_class_of_ip("localhost", &c), -EINVAL);
        assert_int_equal(fallback_addr_class_of_ip("", &c), -EINVAL);
        assert_int_equal(fallback_addr_class_of_ip("127.1", &c), -EINVAL);
        assert_int_equal(c, FALLBACK_ADDR_PUBLIC); /* untouched */
        /* Another family is treated as the most guarded class. */
        struct sockaddr sa = { .sa_family = AF_UNIX };
        assert_int_equal(fallback_addr_class(&sa), FALLBACK_ADDR_LOOPBACK);
        assert_int_equal(fallback_addr_class(NULL), FALLBACK_ADDR_LOOPBACK);
}

/* A hop (redirect, token realm) from an endpoint of class ep to an address ip. */
static bool hop(enum fallback_addr_class ep, const char *ip, bool allow) {
        return fallback_addr_allowed(fallback_addr_hop_mask(ep, allow), of(ip));
}

static void test_hops(void **state) {
        (void) state;
        /* A public endpoint: public hops only. */
        assert_true(hop(FALLBACK_ADDR_PUBLIC, "52.1.2.3", false));
        assert_false(hop(FALLBACK_ADDR_PUBLIC, "127.0.0.1", false));
        assert_false(hop(FALLBACK_ADDR_PUBLIC, "::ffff:127.0.0.1", false));
        assert_false(hop(FALLBACK_ADDR_PUBLIC, "169.254.169.254", false));
        assert_false(hop(FALLBACK_ADDR_PUBLIC, "10.0.0.5", false));
        assert_false(hop(FALLBACK_ADDR_PUBLIC, "fd00::5", false));
        assert_false(hop(FALLBACK_ADDR_PUBLIC, "0.0.0.0", false));
        /* An endpoint on loopback may send layerd to loopback (every test does), not to the LAN. */
        assert_true(hop(FALLBACK_ADDR_LOOPBACK, "127.0.0.1", false));
        assert_true(hop(FALLBACK_ADDR_LOOPBACK, "::1", false));
        assert_true(hop(FALLBACK_ADDR_LOOPBACK, "52.1.2.3", false));
        assert_false(hop(FALLBACK_ADDR_LOOPBACK, "10.0.0.5", false));
        assert_false(hop(FALLBACK_ADDR_LOOPBACK, "169.254.169.254", false));
        /* A private mirror may use private storage, not loopback or link-local. */
        assert_true(hop(FALLBACK_ADDR_PRIVATE, "192.168.1.9", false));
        assert_true(hop(FALLBACK_ADDR_PRIVATE, "fd00::9", false));
        assert_false(hop(FALLBACK_ADDR_PRIVATE, "127.0.0.1", false));
        assert_false(hop(FALLBACK_ADDR_PRIVATE, "169.254.169.254", false));
        /* allow_private_redirects: anything. */
        assert_true(hop(FALLBACK_ADDR_PUBLIC, "127.0.0.1", true));
        assert_true(hop(FALLBACK_ADDR_PUBLIC, "169.254.169.254", true));
        assert_true(hop(FALLBACK_ADDR_PUBLIC, "10.0.0.5", true));
        /* Out-of-range classes are never allowed. */
        assert_false(fallback_addr_allowed(fallback_addr_hop_mask(FALLBACK_ADDR_PUBLIC, true), _FALLBACK_ADDR_CLASS_MAX));
        assert_string_equal(fallback_addr_class_name(FALLBACK_ADDR_LINK_LOCAL), "link-local");
}

/* A listener on 127.0.0.1 that never answers, non-blocking: whether layerd connected shows in accept(). */
static int listener(int *ret_port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(in);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &in, sizeof(in)), 0);
        assert_int_equal(listen(fd, 8), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &in, &len), 0);
        *ret_port = ntohs(in.sin_port);
        return fd;
}

/* http_perform() with a peer mask, end to end on loopback: a hop that may
 * only go to public addresses is refused before connecting, by address and by
 * a name (localhost) that resolves to loopback; one that may go there connects. */
static void test_perform_refuses(void **state) {
        (void) state;
        struct http_client *c = NULL;
        int port;
        int lfd = listener(&port);
        char url[96];
        assert_int_equal(fallback_global_init(), 0);
        assert_int_equal(http_client_new(&c), 0);
        const char *const hosts[] = { "127.0.0.1", "localhost" };
        for (size_t i = 0; i < ELEMENTSOF(hosts); i++) {
                struct http_response hr = { 0 };
                http_response_done(&hr);
                snprintf(url, sizeof(url), "http://%s:%d/v2/", hosts[i], port);
                struct http_request rq = { .url = url, .connect_timeout_ms = 1000, .response_timeout_ms = 300,
                                           .idle_timeout_ms = 300, .peer_checked = true,
                                           .peer_mask = fallback_addr_hop_mask(FALLBACK_ADDR_PUBLIC, false) };
                assert_int_equal(http_perform(c, &rq, &hr), -EPERM);
                assert_non_null(strstr(hr.reason, " is a loopback address"));
                assert_int_equal(hr.peer_class, FALLBACK_ADDR_LOOPBACK);
                assert_true(accept(lfd, NULL, NULL) < 0); /* not even a connection */
                http_response_done(&hr);

                /* The endpoint's own class: it connects (and times out: nobody answers). */
                rq.peer_mask = fallback_addr_hop_mask(FALLBACK_ADDR_LOOPBACK, false);
                assert_int_equal(http_perform(c, &rq, &hr), -ETIMEDOUT);
                int afd = accept(lfd, NULL, NULL);
                assert_true(afd >= 0);
                close(afd);
                http_response_done(&hr);
        }
        http_client_free(c);
        fallback_global_done();
        close(lfd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_classes),
                cmocka_unit_test(test_not_an_address),
                cmocka_unit_test(test_hops),
                cmocka_unit_test(test_perform_refuses),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
