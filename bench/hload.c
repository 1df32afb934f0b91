/* SPDX-License-Identifier: Apache-2.0 */
/* A small closed-loop HTTP/1.1 load generator for `make bench`, for the HEAD
 * rows: Debian's wrk 4.1 waits for a body after a HEAD response that carries
 * Content-Length, so it completes no HEAD request at all. Same model as wrk:
 * CONNECTIONS keep-alive connections to 127.0.0.1, each sending its next
 * request as soon as the previous response is complete, for SECONDS; one
 * thread, epoll.
 *
 *   hload PORT PATH METHOD CONNECTIONS SECONDS [HEADER...]
 *
 * Prints wrk.lua's line:
 *   RESULT requests=N rps=R p50_ms=X p99_ms=Y errors=N non2xx=N stalled=N
 * (errors: connections that failed or ended early; latency from sending a
 * request to the last byte of its response). Exit 0 when at least one request
 * completed, 1 otherwise, 2 on a usage error. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define CONNECTIONS_MAX 4096
#define SECONDS_MAX 600
#define REQUEST_MAX 8192
#define INBUF 65536           /* a response head must fit; bodies are counted, not kept */
#define SAMPLES_MAX 100000000 /* latencies kept for the percentiles (400 MB at most) */

struct conn {
        int fd;
        bool sent;        /* the current request went out (all of it) */
        size_t off;       /* bytes of the request sent so far */
        uint64_t t0;      /* when the request was sent */
        size_t have;      /* bytes in in[] */
        bool in_body;     /* head parsed; skipping the body */
        uint64_t body_left;
        int status;
        bool close_after; /* "Connection: close" */
        uint64_t last_us; /* when it last completed a request (or connected) */
        char in[INBUF];
};

static char request[REQUEST_MAX];
static size_t request_len;
static bool head_method;
static struct sockaddr_in addr;
static uint32_t *samples;
static size_t n_samples, cap_samples;
static uint64_t completed, errors, non2xx;

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

static void record(uint64_t us) {
        if (n_samples == cap_samples) {
                size_t cap = cap_samples ? cap_samples * 2 : 65536;
                if (cap > SAMPLES_MAX)
                        return; /* percentiles of the first SAMPLES_MAX requests */
                uint32_t *p = realloc(samples, cap * sizeof(*p));
                if (!p)
                        return;
                samples = p;
                cap_samples = cap;
        }
        samples[n_samples++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t) us;
}

static int conn_open(int ep, struct conn *c) {
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        int one = 1;
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(c->fd, (struct sockaddr *) &addr, sizeof(addr)) < 0 && errno != EINPROGRESS) {
                int r = -errno;
                close(c->fd);
                c->fd = -1;
                return r;
        }
        c->sent = false;
        c->off = 0;
        c->have = 0;
        c->in_body = false;
        c->last_us = client_now_us();
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                return -errno;
        return 0;
}

static void conn_close(struct conn *c) {
        if (c->fd >= 0)
                close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
}

static void want(int ep, struct conn *c, uint32_t events) {
        struct epoll_event ev = { .events = events, .data.ptr = c };
        (void) epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends (the rest of) the request; false when the connection failed. */
static bool conn_send(int ep, struct conn *c) {
        if (c->off == 0)
                c->t0 = client_now_us();
        while (c->off < request_len) {
                ssize_t k = send(c->fd, request + c->off, request_len - c->off, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN) {
                        want(ep, c, EPOLLIN | EPOLLOUT);
                        return true;
                }
                if (k < 0)
                        return false;
                c->off += (size_t) k;
        }
        c->sent = true;
        want(ep, c, EPOLLIN);
        return true;
}

/* Parses a response head in c->in[0..len): status, Content-Length, Connection. */
static bool parse_head(struct conn *c, size_t len) {
        c->in[len] = '\0';
        int64_t length;
        if (!client_head(c->in, &c->status, &length))
                return false;
        c->body_left = length > 0 ? (uint64_t) length : 0;
        const char *conn = client_header(c->in, "connection:"), *close = conn ? strcasestr(conn, "close") : NULL;
        c->close_after = strncmp(c->in, "HTTP/1.0", 8) == 0 || (close && close < strstr(conn, "\r\n"));
        if (head_method || c->status == 204 || c->status == 304)
                c->body_left = 0;
        return true;
}

/* Consumes received bytes; returns 1 when a response completed, 0 when more
 * bytes are needed, -1 on a protocol error. */
static int conn_consume(struct conn *c) {
        if (!c->in_body) {
                c->in[c->have < INBUF ? c->have : INBUF - 1] = '\0';
                char *end = strstr(c->in, "\r\n\r\n");
                if (!end)
                        return c->have >= INBUF - 1 ? -1 : 0;
                size_t head_len = (size_t) (end + 4 - c->in);
                if (!parse_head(c, head_len - 2))
                        return -1;
                c->in_body = true;
                memmove(c->in, c->in + head_len, c->have - head_len);
                c->have -= head_len;
        }
        uint64_t take = c->have < c->body_left ? c->have : c->body_left;
        c->body_left -= take;
        memmove(c->in, c->in + take, c->have - take);
        c->have -= take;
        if (c->body_left > 0)
                return 0;
        c->in_body = false;
        return c->have > 0 ? -1 : 1; /* nothing may follow: one request at a time */
}

int main(int argc, char **argv) {
        uint64_t port, conns, seconds;
        if (argc < 6 || !client_parse_u64(argv[1], 65535, &port) || port == 0 || argv[2][0] != '/' ||
            !client_parse_u64(argv[4], CONNECTIONS_MAX, &conns) || conns == 0 || !client_parse_u64(argv[5], SECONDS_MAX, &seconds) ||
            seconds == 0 || strspn(argv[3], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(argv[3])) {
                fprintf(stderr, "usage: hload PORT PATH METHOD CONNECTIONS (1..%d) SECONDS (1..%d) [HEADER...]\n",
                        CONNECTIONS_MAX, SECONDS_MAX);
                return 2;
        }
        head_method = strcmp(argv[3], "HEAD") == 0;
        int n = snprintf(request, sizeof(request), "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%" PRIu64 "\r\n", argv[3],
                         argv[2], port);
        for (int i = 6; i < argc && n > 0 && (size_t) n < sizeof(request); i++)
                n += snprintf(request + n, sizeof(request) - (size_t) n, "%s\r\n", argv[i]);
        if (n > 0 && (size_t) n < sizeof(request))
                n += snprintf(request + n, sizeof(request) - (size_t) n, "\r\n");
        if (n <= 0 || (size_t) n >= sizeof(request)) {
                fprintf(stderr, "hload: request longer than %d bytes\n", REQUEST_MAX);
                return 2;
        }
        request_len = (size_t) n;
        addr = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct conn *cs = calloc(conns, sizeof(*cs));
        struct epoll_event *evs = calloc(conns, sizeof(*evs));
        if (ep < 0 || !cs || !evs) {
                fprintf(stderr, "hload: cannot set up: %s\n", strerror(errno));
                return 1;
        }
        uint64_t start = client_now_us(), stop = start + seconds * 1000000u;
        for (uint64_t i = 0; i < conns; i++) {
                int r = conn_open(ep, &cs[i]);
                if (r < 0) {
                        fprintf(stderr, "hload: connect: %s\n", strerror(-r));
                        return 1;
                }
        }
        for (;;) {
                uint64_t t = client_now_us();
                if (t >= stop)
                        break;
                int k = epoll_wait(ep, evs, (int) conns, (int) ((stop - t) / 1000 + 1));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        fprintf(stderr, "hload: epoll_wait: %s\n", strerror(errno));
                        return 1;
                }
                for (int i = 0; i < k; i++) {
                        struct conn *c = evs[i].data.ptr;
                        bool failed = false;
                        if (c->fd < 0)
                                continue;
                        if (!c->sent && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                                failed = !conn_send(ep, c);
                        if (!failed && c->sent && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                                for (;;) {
                                        ssize_t got = recv(c->fd, c->in + c->have, INBUF - 1 - c->have, 0);
                                        if (got < 0 && errno == EINTR)
                                                continue;
                                        if (got < 0 && errno == EAGAIN)
                                                break;
                                        if (got <= 0) {
                                                failed = true;
                                                break;
                                        }
                                        c->have += (size_t) got;
                                        int r = conn_consume(c);
                                        if (r < 0) {
                                                failed = true;
                                                break;
                                        }
                                        if (r == 0)
                                                continue;
                                        uint64_t done = client_now_us();
                                        if (done <= stop) {
                                                completed++;
                                                c->last_us = done;
                                                record(done - c->t0);
                                                if (c->status < 200 || c->status > 299)
                                                        non2xx++;
                                        }
                                        if (c->close_after) {
                                                conn_close(c);
                                                if (conn_open(ep, c) < 0)
                                                        failed = true;
                                        } else {
                                                c->sent = false;
                                                c->off = 0;
                                                failed = !conn_send(ep, c);
                                        }
                                        break;
                                }
                        }
                        if (failed) {
                                errors++;
                                conn_close(c);
                                if (client_now_us() < stop && conn_open(ep, c) < 0)
                                        errors++;
                        }
                }
        }
        double elapsed = (double) (client_now_us() - start) / 1e6;
        double p50 = 0, p99 = 0;
        if (n_samples) {
                qsort(samples, n_samples, sizeof(samples[0]), cmp_u32);
                p50 = samples[(n_samples - 1) * 50 / 100] / 1000.0;
                p99 = samples[(n_samples - 1) * 99 / 100] / 1000.0;
        }
        /* Connections with no answer in the run's last second: a server that
         * forgot a request (a closed loop always has one out). */
        uint64_t stalled = 0;
        for (uint64_t i = 0; i < conns; i++)
                stalled += cs[i].last_us + 1000000 < stop;
        printf("RESULT requests=%" PRIu64 " rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%" PRIu64 " non2xx=%" PRIu64
               " stalled=%" PRIu64 "\n",
               completed, (double) completed / elapsed, p50, p99, errors, non2xx, stalled);
        for (uint64_t i = 0; i < conns; i++)
                conn_close(&cs[i]);
        free(cs);
        free(evs);
        free(samples);
        close(ep);
        return completed > 0 ? 0 : 1;
}
