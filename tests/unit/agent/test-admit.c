/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/admit.c: the limits the open-file limit gives, the
 * deadlines (absolute: nothing a connection does moves them), who is cut at
 * capacity and when a new connection is refused instead, the 503 a refused
 * one gets; then the same table from many threads at once (for
 * ThreadSanitizer), and the accept thread in front of a real libmicrohttpd
 * daemon on 127.0.0.1: a request is answered, a slowloris is cut at its head
 * deadline, an idle keep-alive connection at its idle deadline. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/admit.h"
#include "common/macro.h"
#include "common/time.h"

/* ---- the table, with a recorder for cuts ----------------------------------------------- */

#define CUTS_MAX 64
static int cuts[CUTS_MAX];
static size_t n_cuts;

static void record_cut(void *userdata, int fd) {
        (void) userdata;
        if (n_cuts < CUTS_MAX)
                cuts[n_cuts] = fd;
        n_cuts++;
}

static struct admit *table(unsigned capacity, unsigned slack) {
        struct admit_limits l = { .capacity = capacity, .cut_slack = slack, .fd_max = 64, .head_ms = 10000,
                                  .idle_ms = 35000, .shed_head_after_ms = 1000 };
        struct admit *a = NULL;
        n_cuts = 0;
        assert_int_equal(admit_new(&l, record_cut, NULL, &a), 0);
        return a;
}

/* fd accepted and started at t, in its first request's head. */
static void connect_at(struct admit *a, int fd, uint64_t t) {
        assert_int_equal(admit_accepted(a, fd, t), ADMIT_TAKE);
        admit_started(a, fd, t);
}

/* fd accepted at t0 and answered a request at t1: idle since t1. */
static void idle_since(struct admit *a, int fd, uint64_t t0, uint64_t t1) {
        connect_at(a, fd, t0);
        admit_request_begin(a, fd);
        admit_request_end(a, fd, t1);
}

static void test_limits(void **state) {
        (void) state;
        /* 1024: a quarter (256) kept back, a sixteenth of the rest for cut ones. */
        struct admit_limits l = admit_limits_for(1024, 4096);
        assert_int_equal(l.capacity, 720);
        assert_int_equal(l.cut_slack, 48);
        assert_int_equal(l.fd_max, 1024);
        assert_true(l.capacity + l.cut_slack + 256 <= 1024);
        /* A small limit keeps ADMIT_RESERVE_MIN (128) back. */
        l = admit_limits_for(180, 4096);
        assert_int_equal(l.capacity, 48);
        assert_int_equal(l.cut_slack, 4);
        assert_true(l.capacity + l.cut_slack + 128 <= 180);
        /* High limits stop at agent.max_connections (a memory bound); the table at its size. */
        l = admit_limits_for(524288, 4096);
        assert_int_equal(l.capacity, 4096);
        assert_int_equal(l.fd_max, 1u << 17);
        l = admit_limits_for(524288, 10000);
        assert_int_equal(l.capacity, 10000);
        l = admit_limits_for(UINT64_MAX, 65536);
        assert_int_equal(l.capacity, 65536);
        assert_true(l.capacity + l.cut_slack <= l.fd_max);
        /* ...and a low open-file limit below it. */
        l = admit_limits_for(1024, 65536);
        assert_int_equal(l.capacity, 720);
        /* Too few descriptors for the reserve: a floor, never zero. */
        l = admit_limits_for(64, 4096);
        assert_int_equal(l.capacity, 16);
        assert_true(l.cut_slack >= 1);
        assert_int_equal(l.head_ms, ADMIT_HEAD_DEADLINE_MS);
        assert_int_equal(l.idle_ms, ADMIT_IDLE_DEADLINE_MS);
}

static void test_head_deadline(void **state) {
        (void) state;
        struct admit *a = table(8, 2);
        connect_at(a, 5, 1000);
        connect_at(a, 6, 3000);
        /* No byte it sends moves the deadline: the table has no way to be told. */
        assert_int_equal(admit_sweep(a, 10999), 0);
        assert_int_equal(admit_sweep(a, 11000), 1);
        assert_int_equal(n_cuts, 1);
        assert_int_equal(cuts[0], 5);
        assert_int_equal(admit_sweep(a, 12999), 0);
        assert_int_equal(admit_sweep(a, 13000), 1);
        assert_int_equal(cuts[1], 6);
        struct admit_stats s;
        admit_get_stats(a, &s);
        assert_int_equal(s.cut, 2);
        assert_int_equal(s.head_expired, 2);
        /* Cut ones stay counted until MHD closes them. */
        assert_int_equal(s.open, 2);
        admit_closed(a, 5);
        admit_closed(a, 6);
        admit_get_stats(a, &s);
        assert_int_equal(s.open, 0);
        admit_free(a);
}

static void test_idle_deadline(void **state) {
        (void) state;
        struct admit *a = table(8, 2);
        idle_since(a, 7, 0, 2000);
        connect_at(a, 8, 0);
        admit_request_begin(a, 8); /* busy: a long blob, say */
        assert_int_equal(admit_sweep(a, 36999), 0);
        assert_int_equal(admit_sweep(a, 37000), 1);
        assert_int_equal(cuts[0], 7);
        /* A request in progress has no admission deadline (MHD's inactivity timeout stays). */
        assert_int_equal(admit_sweep(a, UINT64_MAX / 2), 0);
        /* The next request on a keep-alive connection: busy again, then idle from its end. */
        admit_request_end(a, 8, 50000);
        admit_request_begin(a, 8);
        admit_request_end(a, 8, 60000);
        assert_int_equal(admit_sweep(a, 94999), 0);
        assert_int_equal(admit_sweep(a, 95000), 1);
        assert_int_equal(cuts[1], 8);
        admit_free(a);
}

static void test_pending_never_cut(void **state) {
        (void) state;
        struct admit *a = table(8, 2);
        /* Taken, never started: MHD dropped it without a word; the number may be another file's. */
        assert_int_equal(admit_accepted(a, 9, 0), ADMIT_TAKE);
        assert_int_equal(admit_sweep(a, 20000), 0);
        assert_int_equal(n_cuts, 0);
        struct admit_stats s;
        admit_get_stats(a, &s);
        assert_int_equal(s.open, 0);
        /* A number given again by the kernel replaces what was there. */
        assert_int_equal(admit_accepted(a, 10, 0), ADMIT_TAKE);
        assert_int_equal(admit_accepted(a, 10, 5), ADMIT_TAKE);
        admit_get_stats(a, &s);
        assert_int_equal(s.open, 1);
        /* MHD refused it at once. */
        admit_forget(a, 10);
        admit_get_stats(a, &s);
        assert_int_equal(s.open, 0);
        admit_free(a);
}

static void test_shed_oldest_idle(void **state) {
        (void) state;
        struct admit *a = table(3, 2);
        idle_since(a, 2, 0, 100); /* idle the longest */
        idle_since(a, 1, 0, 300);
        connect_at(a, 3, 0);
        admit_request_begin(a, 3);
        assert_int_equal(admit_accepted(a, 4, 400), ADMIT_TAKE);
        assert_int_equal(n_cuts, 1);
        assert_int_equal(cuts[0], 2);
        admit_closed(a, 2);
        assert_int_equal(admit_accepted(a, 5, 500), ADMIT_TAKE);
        assert_int_equal(cuts[1], 1);
        struct admit_stats s;
        admit_get_stats(a, &s);
        assert_int_equal(s.shed, 2);
        assert_int_equal(s.refused, 0);
        admit_free(a);
}

static void test_shed_slow_head_else_refuse(void **state) {
        (void) state;
        struct admit *a = table(2, 2);
        connect_at(a, 1, 0);
        connect_at(a, 2, 200);
        /* Both read their head for less than a second: a real client's may be on its way. */
        assert_int_equal(admit_accepted(a, 3, 900), ADMIT_REFUSE);
        assert_int_equal(n_cuts, 0);
        /* A second on, the older one is a slowloris: it makes room. */
        assert_int_equal(admit_accepted(a, 3, 1000), ADMIT_TAKE);
        assert_int_equal(n_cuts, 1);
        assert_int_equal(cuts[0], 1);
        /* Busy ones are never cut. */
        admit_started(a, 3, 1000);
        admit_request_begin(a, 2);
        admit_request_begin(a, 3);
        assert_int_equal(admit_accepted(a, 4, 99999), ADMIT_REFUSE);
        struct admit_stats s;
        admit_get_stats(a, &s);
        assert_int_equal(s.refused, 2);
        assert_int_equal(s.busy, 2);
        admit_free(a);
}

static void test_cut_slack(void **state) {
        (void) state;
        struct admit *a = table(2, 1);
        idle_since(a, 1, 0, 10);
        idle_since(a, 2, 0, 20);
        /* Room made by cutting 1; MHD has not closed it yet. */
        assert_int_equal(admit_accepted(a, 3, 30), ADMIT_TAKE);
        /* The slack is used up: refused without cutting 2 for nothing. */
        assert_int_equal(admit_accepted(a, 4, 40), ADMIT_REFUSE);
        assert_int_equal(n_cuts, 1);
        admit_closed(a, 1);
        assert_int_equal(admit_accepted(a, 4, 50), ADMIT_TAKE);
        assert_int_equal(n_cuts, 2);
        assert_int_equal(cuts[1], 2);
        /* Descriptors past the table are refused. */
        assert_int_equal(admit_accepted(a, 64, 60), ADMIT_REFUSE);
        assert_int_equal(admit_accepted(a, -1, 60), ADMIT_REFUSE);
        admit_free(a);
}

static void test_refuse(void **state) {
        (void) state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        static const char req[] = "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        assert_int_equal(write(sv[1], req, sizeof(req) - 1), (ssize_t) sizeof(req) - 1);
        admit_refuse(sv[0]);
        char buf[1024];
        size_t n = 0;
        ssize_t k;
        while (n < sizeof(buf) - 1 && (k = read(sv[1], buf + n, sizeof(buf) - 1 - n)) > 0)
                n += (size_t) k;
        buf[n] = '\0';
        assert_true(strncmp(buf, "HTTP/1.1 503 ", 13) == 0);
        assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
        const char *body = strstr(buf, "\r\n\r\n");
        assert_non_null(body);
        const char *cl = strstr(buf, "Content-Length: ");
        assert_non_null(cl);
        assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body + 4));
        assert_non_null(strstr(body, "\"UNAVAILABLE\""));
        close(sv[1]);
}

/* ---- many threads at once (ThreadSanitizer) -------------------------------------------- */

#define THREADS 4
#define PER_THREAD 12
#define ROUNDS 2000

static void *churn(void *arg) {
        struct admit *a = ((void **) arg)[0];
        int base = (int) (intptr_t) ((void **) arg)[1];
        for (unsigned r = 0; r < ROUNDS; r++) {
                int fd = base + (int) (r % PER_THREAD);
                uint64_t t = r;
                if (admit_accepted(a, fd, t) != ADMIT_TAKE)
                        continue;
                admit_started(a, fd, t);
                admit_request_begin(a, fd);
                admit_request_end(a, fd, t);
                if (r % 3 == 0)
                        admit_closed(a, fd);
        }
        for (int fd = base; fd < base + PER_THREAD; fd++)
                admit_closed(a, fd);
        return NULL;
}

static void *sweeper(void *arg) {
        struct admit *a = arg;
        for (uint64_t t = 0; t < ROUNDS; t += 10)
                admit_sweep(a, t * 100);
        return NULL;
}

static void test_threads(void **state) {
        (void) state;
        struct admit_limits l = { .capacity = 24, .cut_slack = 4, .fd_max = THREADS * PER_THREAD,
                                  .head_ms = 50, .idle_ms = 50, .shed_head_after_ms = 5 };
        struct admit *a = NULL;
        assert_int_equal(admit_new(&l, record_cut, NULL, &a), 0);
        n_cuts = 0;
        pthread_t t[THREADS + 1];
        void *args[THREADS][2];
        for (int i = 0; i < THREADS; i++) {
                args[i][0] = a;
                args[i][1] = (void *) (intptr_t) (i * PER_THREAD);
                assert_int_equal(pthread_create(&t[i], NULL, churn, args[i]), 0);
        }
        assert_int_equal(pthread_create(&t[THREADS], NULL, sweeper, a), 0);
        for (int i = 0; i <= THREADS; i++)
                pthread_join(t[i], NULL);
        struct admit_stats s;
        admit_get_stats(a, &s);
        assert_int_equal(s.open, 0);
        assert_int_equal(s.heads + s.busy + s.idle + s.cut, 0);
        admit_free(a);
}

/* ---- in front of libmicrohttpd ------------------------------------------------------- */

static struct admit *live_admit;

static enum MHD_Result hello(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                             const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls) {
        static int first;
        (void) cls, (void) url, (void) method, (void) version, (void) upload_data, (void) upload_data_size;
        if (!*req_cls) {
                *req_cls = &first;
                admit_request_begin(live_admit, admit_connection_fd(conn));
                return MHD_YES;
        }
        struct MHD_Response *resp = MHD_create_response_from_buffer(2, (void *) "{}", MHD_RESPMEM_PERSISTENT);
        enum MHD_Result r = MHD_queue_response(conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return r;
}

static void done(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe) {
        (void) cls, (void) req_cls, (void) toe;
        admit_request_end(live_admit, admit_connection_fd(conn), time_now_ms());
}

static int connect_to(uint16_t port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

/* Reads fd until the peer closes it or timeout_ms passes; the bytes in buf. */
static bool closed_within(int fd, int timeout_ms, char *buf, size_t size) {
        uint64_t deadline = time_deadline_ms(timeout_ms);
        size_t n = 0;
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, time_left_ms(deadline)) <= 0)
                        return false;
                ssize_t k = recv(fd, buf + n, size - 1 - n, 0);
                if (k <= 0)
                        break;
                n += (size_t) k;
                buf[n] = '\0';
        }
        buf[n] = '\0';
        return true;
}

static void test_listener(void **state) {
        (void) state;
        struct admit_limits l = { .capacity = 8, .cut_slack = 2, .fd_max = 1024, .head_ms = 400, .idle_ms = 600,
                                  .shed_head_after_ms = 100 };
        assert_int_equal(admit_new(&l, NULL, NULL, &live_admit), 0);
        struct sockaddr_in sa = { .sin_family = AF_INET };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        socklen_t len = sizeof(sa);
        assert_int_equal(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 64), 0);
        assert_int_equal(getsockname(lfd, (struct sockaddr *) &sa, &len), 0);
        uint16_t port = ntohs(sa.sin_port);
        struct MHD_Daemon *d = MHD_start_daemon(
                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC, 0, NULL,
                NULL, hello, NULL, MHD_OPTION_NOTIFY_COMPLETED, done, NULL, MHD_OPTION_NOTIFY_CONNECTION,
                admit_notify_connection, live_admit, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_THREAD_POOL_SIZE, 2u,
                MHD_OPTION_END);
        assert_non_null(d);
        assert_int_equal(admit_listen_start(live_admit, lfd, d), 0);

        char buf[2048];
        static const char req[] = "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        /* A slowloris: a byte now and then, never a whole head. */
        int slow = connect_to(port);
        assert_int_equal(send(slow, "G", 1, MSG_NOSIGNAL), 1);
        /* A keep-alive client: answered, then idle. */
        int idle = connect_to(port);
        assert_int_equal(send(idle, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t) sizeof(req) - 1);
        uint64_t t0 = time_now_ms();
        struct pollfd p = { .fd = idle, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 5000), 1);
        ssize_t k = recv(idle, buf, sizeof(buf) - 1, 0);
        assert_true(k > 0);
        buf[k] = '\0';
        assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
        for (int i = 0; i < 3; i++) {
                usleep(100 * 1000);
                (void) send(slow, "E", 1, MSG_NOSIGNAL);
        }
        /* Cut at its head deadline (400 ms + a sweep), though it kept sending. */
        assert_true(closed_within(slow, 2000, buf, sizeof(buf)));
        assert_true(time_now_ms() - t0 < 400 + ADMIT_SWEEP_MS + 1500); /* slack for valgrind on a busy machine */
        /* Cut at its idle deadline (600 ms after its answer + a sweep). */
        assert_true(closed_within(idle, 3000, buf, sizeof(buf)));
        assert_true(time_now_ms() - t0 >= 550); /* the answer may have been sent a moment before t0 */
        close(slow);
        close(idle);

        /* Fill up with clients that send nothing; once they are a while at it,
         * a new client still gets its answer, one of them cut to make room. */
        int crowd[8];
        for (size_t i = 0; i < ELEMENTSOF(crowd); i++)
                crowd[i] = connect_to(port);
        usleep(200 * 1000);
        int fresh = connect_to(port);
        assert_int_equal(send(fresh, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t) sizeof(req) - 1);
        p = (struct pollfd) { .fd = fresh, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 5000), 1);
        k = recv(fresh, buf, sizeof(buf) - 1, 0);
        assert_true(k > 0);
        buf[k] = '\0';
        assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
        struct admit_stats s;
        admit_get_stats(live_admit, &s);
        assert_true(s.shed >= 1);
        close(fresh);
        for (size_t i = 0; i < ELEMENTSOF(crowd); i++)
                close(crowd[i]);

        admit_listen_stop(live_admit);
        MHD_stop_daemon(d);
        close(lfd);
        live_admit = admit_free(live_admit);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_head_deadline),
                cmocka_unit_test(test_idle_deadline),
                cmocka_unit_test(test_pending_never_cut),
                cmocka_unit_test(test_shed_oldest_idle),
                cmocka_unit_test(test_shed_slow_head_else_refuse),
                cmocka_unit_test(test_cut_slack),
                cmocka_unit_test(test_refuse),
                cmocka_unit_test(test_threads),
                cmocka_unit_test(test_listener),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
