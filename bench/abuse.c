/* SPDX-License-Identifier: Apache-2.0 */
/* The misbehaving clients of `make bench`'s abuse section (issue 16): what any
 * local process can do to a server on 127.0.0.1, and how a well-behaved
 * client fares meanwhile. One thread, epoll; it raises its own open-file soft
 * limit to the hard limit first (5,000 connections need 5,000 descriptors).
 *
 *   abuse [-H HEADER]... load PORT IDLE_PATH IDLE SLOW HOLD_SECONDS [PATH K]...
 *     IDLE keep-alive connections, each sending one complete GET IDLE_PATH and
 *     reading its answer, then idle; SLOW slowloris connections, each sending a
 *     request head one byte a second and never ending it. A connection the
 *     server closes is opened again (at most once a second each), as an
 *     attacker would. Prints
 *       READY idle_answered=A idle=IDLE idle_pending=P slow_open=S slow=SLOW ms=T
 *     once every idle connection is answered (or failed), or after 5 s; then,
 *     for each PATH, K fresh GETs one after another, each on a new connection,
 *     timed from connect() to the answer's last byte (2 s at most each, 10 s
 *     for the K), one line each:
 *       RESULT path=PATH ran=N ok=N timeouts=N errors=N non2xx=N p50_ms=X p99_ms=Y max_ms=Z
 *     (a timed-out request counts as 2,000 ms in the percentiles); then keeps
 *     the load until HOLD_SECONDS after READY or SIGTERM, and prints
 *       END idle_open=N slow_open=N idle_closed=N slow_closed=N reconnects=N connect_errors=N
 *     (*_closed: connections the server closed; *_open: connected right now).
 *
 *   abuse [-H HEADER]... stall PORT N SECONDS PATH
 *     N connections with a 4 KiB receive buffer each GET PATH and never read;
 *     after SECONDS, "RESULT n=N heads_200=H heads_other=O no_answer=Z"
 *     (what the first bytes waiting in each socket say, peeked, not read).
 *
 *   abuse [-H HEADER]... abandon PORT AFTER_BYTES SECONDS < PATHS
 *     One connection per line of stdin (a path), all at once, each GET PATH,
 *     closed as soon as the answer's head and AFTER_BYTES of its body have
 *     arrived: the client that gives up on a download. At most SECONDS in all.
 *     "RESULT n=N heads_2xx=H heads_other=O timeouts=T errors=E ms=M".
 *
 * Every wait is bounded. Exit 0 when it ran (whatever the numbers), 1 when it
 * could not set up, 2 on a usage error. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define CONNECTIONS_MAX 20000
#define HEADERS_MAX 8
#define REQUEST_MAX 8192
#define HEAD_MAX 8192 /* an answer's head must fit; bodies are counted, not kept */
#define PATH_MAX_LEN 4096
#define SETUP_US (5 * 1000000ull)
#define PROBE_US (2 * 1000000ull)
#define PROBES_US (10 * 1000000ull)
#define PROBE_GAP_US 5000ull
#define RECONNECT_US 1000000ull
#define SLOW_TICK_US 1000000ull
#define SECONDS_MAX 600

enum kind { K_IDLE, K_SLOW, K_PROBE, K_STALL, K_ABANDON };
enum state {
        S_FREE,       /* no socket */
        S_CONNECTING, /* connect() in progress */
        S_SENDING,    /* the request (or, slowloris, its first part) is going out */
        S_READING,    /* waiting for the answer */
        S_HELD,       /* idle after its answer; slowloris between bytes; stall: never read */
        S_DONE,       /* probe/abandon: finished, the socket is closed */
};

struct conn {
        int fd;
        enum kind kind;
        enum state state;
        const char *req;
        size_t req_len, off;
        uint64_t t_open;       /* when connect() was called */
        bool answered;         /* an idle connection got its first answer */
        bool failed;           /* probe/abandon: ended in an error */
        size_t have;           /* bytes of the head in in[] */
        bool in_body;
        bool until_close;      /* no Content-Length: the body ends with the connection */
        uint64_t body_left, body_got;
        int status;
        char *in;
};

static struct sockaddr_in addr;
static uint16_t port;
static const char *headers[HEADERS_MAX];
static size_t n_headers;
static int ep = -1;
static volatile sig_atomic_t stopping;
static bool keep_load; /* load mode: reopen what the server closes */
static uint64_t abandon_after;
static struct {
        uint64_t idle_closed, slow_closed, reconnects, connect_errors;
} stats;

static void on_term(int sig) {
        (void) sig;
        stopping = 1;
}

/* request_for PATH COMPLETE: a GET of PATH with the -H headers, whole or (for
 * slowloris) cut after the Host line and a header's name, in a new buffer. */
static char *request_for(const char *path, bool complete, size_t *ret_len) {
        char *r = malloc(REQUEST_MAX);
        if (!r)
                return NULL;
        int n = snprintf(r, REQUEST_MAX, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n", path, (unsigned) port);
        for (size_t i = 0; i < n_headers && n > 0 && n < REQUEST_MAX; i++)
                n += snprintf(r + n, REQUEST_MAX - (size_t) n, "%s\r\n", headers[i]);
        if (n > 0 && n < REQUEST_MAX)
                n += snprintf(r + n, REQUEST_MAX - (size_t) n, complete ? "\r\n" : "X-Slow: ");
        if (n <= 0 || n >= REQUEST_MAX) {
                free(r);
                return NULL;
        }
        *ret_len = (size_t) n;
        return r;
}

static void watch(struct conn *c, uint32_t events, int op) {
        struct epoll_event ev = { .events = events, .data.ptr = c };
        (void) epoll_ctl(ep, op, c->fd, &ev);
}

static void conn_close(struct conn *c, enum state next) {
        if (c->fd >= 0)
                close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
        c->state = next;
}

/* Starts a connection; false (counted) when the socket or connect() fails at once. */
static bool conn_open(struct conn *c) {
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        c->t_open = client_now_us();
        c->off = c->have = 0;
        c->in_body = c->until_close = false;
        c->body_left = c->body_got = 0;
        c->status = 0;
        if (c->fd < 0) {
                stats.connect_errors++;
                c->state = S_FREE;
                return false;
        }
        int one = 1;
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (c->kind == K_STALL) {
                /* A small window: the server's send buffer fills, then what it holds is its own. */
                int small = 4096;
                (void) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        }
        if (connect(c->fd, (struct sockaddr *) &addr, sizeof(addr)) < 0 && errno != EINPROGRESS) {
                stats.connect_errors++;
                conn_close(c, S_FREE);
                return false;
        }
        c->state = S_CONNECTING;
        watch(c, EPOLLOUT, EPOLL_CTL_ADD);
        return true;
}

/* Sends what is left of c->req; false when the connection failed. */
static bool conn_send(struct conn *c) {
        while (c->off < c->req_len) {
                ssize_t k = send(c->fd, c->req + c->off, c->req_len - c->off, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN) {
                        watch(c, EPOLLOUT, EPOLL_CTL_MOD);
                        c->state = S_SENDING;
                        return true;
                }
                if (k < 0)
                        return false;
                c->off += (size_t) k;
        }
        switch (c->kind) {
        case K_SLOW:
                c->state = S_HELD;
                watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
                break;
        case K_STALL:
                c->state = S_HELD;
                watch(c, 0, EPOLL_CTL_MOD); /* never read; the peek at the end says what came */
                break;
        default:
                c->state = S_READING;
                watch(c, EPOLLIN, EPOLL_CTL_MOD);
        }
        return true;
}

/* Parses the head in c->in[0..len): status, Content-Length. */
static bool parse_head(struct conn *c, size_t len) {
        c->in[len] = '\0';
        int64_t length;
        if (!client_head(c->in, &c->status, &length))
                return false;
        c->until_close = length < 0;
        c->body_left = length > 0 ? (uint64_t) length : 0;
        if (c->status == 204 || c->status == 304 || (c->status >= 100 && c->status < 200))
                c->until_close = false, c->body_left = 0;
        return true;
}

/* Takes the bytes just appended to c->in: returns 1 when the answer is
 * complete (or, abandon, far enough), 0 when more are needed, -1 on an error. */
static int conn_consume(struct conn *c, size_t got) {
        if (!c->in_body) {
                c->in[c->have] = '\0';
                char *end = strstr(c->in, "\r\n\r\n");
                if (!end)
                        return c->have >= HEAD_MAX - 1 ? -1 : 0;
                size_t head_len = (size_t) (end + 4 - c->in);
                if (!parse_head(c, head_len - 2))
                        return -1;
                c->in_body = true;
                got = c->have - head_len;
                c->have = 0; /* the body is counted, not kept */
        }
        c->body_got += got;
        if (c->kind == K_ABANDON) /* far enough, or a short answer is whole */
                return c->body_got >= abandon_after || (!c->until_close && c->body_got >= c->body_left) ? 1 : 0;
        if (c->until_close)
                return 0;
        if (got > c->body_left)
                return -1; /* more than announced: nothing may follow (one request at a time) */
        c->body_left -= got;
        return c->body_left == 0 ? 1 : 0;
}

static bool latency_done; /* the current probe ended */
static void conn_finished(struct conn *c, bool ok) {
        switch (c->kind) {
        case K_IDLE:
                if (ok) {
                        c->answered = true;
                        c->state = S_HELD;
                        watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
                        return;
                }
                if (c->answered)
                        stats.idle_closed++;
                conn_close(c, S_FREE);
                return;
        case K_SLOW:
                stats.slow_closed++;
                conn_close(c, S_FREE);
                return;
        case K_PROBE:
        case K_ABANDON:
                c->failed = !ok;
                conn_close(c, S_DONE);
                latency_done = true;
                return;
        case K_STALL:
                conn_close(c, S_DONE);
                return;
        }
}

/* Reads what is there; the connection ends on an error, EOF or a complete answer. */
static void conn_read(struct conn *c) {
        for (;;) {
                if (c->state == S_HELD) {
                        /* idle or slowloris: anything but EAGAIN ends it (server close, or an answer) */
                        char sink[4096];
                        ssize_t k = recv(c->fd, sink, sizeof(sink), 0);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0 && errno == EAGAIN)
                                return;
                        if (k > 0 && c->kind == K_IDLE)
                                continue; /* an unasked-for byte: not the close we wait for */
                        conn_finished(c, false);
                        return;
                }
                size_t off = c->in_body ? 0 : c->have;
                ssize_t k = recv(c->fd, c->in + off, HEAD_MAX - 1 - off, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return;
                if (k <= 0) {
                        bool ended = k == 0 && c->in_body && c->until_close;
                        conn_finished(c, ended && c->kind != K_IDLE);
                        return;
                }
                if (!c->in_body)
                        c->have += (size_t) k;
                int r = conn_consume(c, (size_t) k);
                if (r != 0) {
                        conn_finished(c, r > 0);
                        return;
                }
        }
}

static void on_event(struct conn *c, uint32_t events) {
        if (c->fd < 0)
                return;
        if (c->kind == K_STALL && c->state == S_HELD) {
                /* A hang-up is reported even with no events asked for: still read nothing. */
                (void) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                return;
        }
        if (c->state == S_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
                        stats.connect_errors += c->kind == K_IDLE || c->kind == K_SLOW;
                        conn_finished(c, false);
                        return;
                }
                c->state = S_SENDING;
        }
        if (c->state == S_SENDING) {
                if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return;
                if (!conn_send(c))
                        conn_finished(c, false);
                return;
        }
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
                conn_read(c);
}

static struct epoll_event evs[1024];

/* Runs the event loop for at most timeout_us. */
static void pump(uint64_t timeout_us) {
        int k = epoll_wait(ep, evs, (int) (sizeof(evs) / sizeof(evs[0])), (int) (timeout_us / 1000));
        for (int i = 0; i < k; i++)
                on_event(evs[i].data.ptr, evs[i].events);
}

static struct conn *conns;
static size_t n_idle, n_slow;
static char *idle_req, *slow_req;
static size_t idle_req_len, slow_req_len;
static uint64_t last_tick, last_scan;

/* Every second: a byte on each slowloris connection; and, while the load is
 * kept, the connections the server closed are opened again. */
static void tick(void) {
        uint64_t t = client_now_us();
        if (t - last_scan < SLOW_TICK_US / 10)
                return; /* 5,000 connections are not scanned after every event */
        last_scan = t;
        bool second = t - last_tick >= SLOW_TICK_US;
        for (size_t i = 0; i < n_idle + n_slow; i++) {
                struct conn *c = &conns[i];
                if (c->state == S_FREE && keep_load && t - c->t_open >= RECONNECT_US) {
                        stats.reconnects++;
                        (void) conn_open(c);
                } else if (second && c->kind == K_SLOW && c->state == S_HELD &&
                           send(c->fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
                        conn_finished(c, false);
        }
        if (second)
                last_tick = t;
}

static void count_load(size_t *idle_answered, size_t *idle_pending, size_t *idle_open, size_t *slow_open) {
        *idle_answered = *idle_pending = *idle_open = *slow_open = 0;
        for (size_t i = 0; i < n_idle; i++) {
                enum state s = conns[i].state;
                *idle_answered += s == S_HELD;
                *idle_pending += s == S_CONNECTING || s == S_SENDING || s == S_READING;
                *idle_open += s == S_HELD || s == S_SENDING || s == S_READING;
        }
        for (size_t i = n_idle; i < n_idle + n_slow; i++)
                *slow_open += conns[i].state == S_HELD;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* K fresh GETs of PATH one after another, each on a new connection. */
static int probe(const char *path, uint64_t k) {
        size_t len;
        _Alignas(8) static char in[HEAD_MAX];
        char *req = request_for(path, true, &len);
        uint64_t *lat = calloc(k ? k : 1, sizeof(*lat));
        if (!req || !lat) {
                free(req);
                free(lat);
                return -ENOMEM;
        }
        uint64_t ran = 0, ok = 0, timeouts = 0, errors = 0, non2xx = 0, end = client_now_us() + PROBES_US;
        while (ran < k && client_now_us() < end && !stopping) {
                struct conn c = { .fd = -1, .kind = K_PROBE, .req = req, .req_len = len, .in = in };
                latency_done = false;
                if (!conn_open(&c)) {
                        errors++;
                        lat[ran++] = PROBE_US;
                        continue;
                }
                uint64_t deadline = c.t_open + PROBE_US;
                while (!latency_done && client_now_us() < deadline && !stopping) {
                        uint64_t t = client_now_us();
                        pump(deadline - t < 100000 ? deadline - t : 100000);
                        tick();
                }
                uint64_t us = client_now_us() - c.t_open;
                if (!latency_done) {
                        timeouts++;
                        us = PROBE_US;
                        conn_close(&c, S_DONE);
                } else if (c.failed)
                        errors++;
                else {
                        ok++;
                        non2xx += c.status < 200 || c.status > 299;
                }
                lat[ran++] = us;
                /* A gap: a new request now and then, not a load of its own. */
                uint64_t gap_end = client_now_us() + PROBE_GAP_US;
                while (client_now_us() < gap_end)
                        pump(PROBE_GAP_US / 2), tick();
        }
        qsort(lat, ran, sizeof(*lat), cmp_u64);
        double p50 = ran ? lat[(ran - 1) * 50 / 100] / 1000.0 : 0, p99 = ran ? lat[(ran - 1) * 99 / 100] / 1000.0 : 0,
               mx = ran ? lat[ran - 1] / 1000.0 : 0;
        printf("RESULT path=%s ran=%" PRIu64 " ok=%" PRIu64 " timeouts=%" PRIu64 " errors=%" PRIu64 " non2xx=%" PRIu64
               " p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
               path, ran, ok, timeouts, errors, non2xx, p50, p99, mx);
        fflush(stdout);
        free(req);
        free(lat);
        return 0;
}

static int mode_load(int argc, char **argv) {
        uint64_t idle, slow, hold;
        if (argc < 5 || argv[1][0] != '/' || !client_parse_u64(argv[2], CONNECTIONS_MAX, &idle) ||
            !client_parse_u64(argv[3], CONNECTIONS_MAX, &slow) || idle + slow > CONNECTIONS_MAX ||
            !client_parse_u64(argv[4], SECONDS_MAX, &hold) || (argc - 5) % 2)
                return -EINVAL;
        for (int i = 5; i < argc; i += 2) {
                uint64_t k;
                if (argv[i][0] != '/' || strlen(argv[i]) > PATH_MAX_LEN || !client_parse_u64(argv[i + 1], 100000, &k))
                        return -EINVAL;
        }
        n_idle = idle;
        n_slow = slow;
        idle_req = request_for(argv[1], true, &idle_req_len);
        slow_req = request_for(argv[1], false, &slow_req_len);
        conns = calloc(idle + slow + 1, sizeof(*conns));
        if (!idle_req || !slow_req || !conns)
                return -ENOMEM;
        for (size_t i = 0; i < idle + slow; i++) {
                struct conn *c = &conns[i];
                c->fd = -1;
                c->kind = i < idle ? K_IDLE : K_SLOW;
                c->req = c->kind == K_IDLE ? idle_req : slow_req;
                c->req_len = c->kind == K_IDLE ? idle_req_len : slow_req_len;
                if (c->kind == K_IDLE && !(c->in = malloc(HEAD_MAX)))
                        return -ENOMEM;
                (void) conn_open(c);
        }
        uint64_t t0 = client_now_us();
        last_tick = t0;
        size_t answered, pending, idle_open, slow_open;
        for (;;) {
                count_load(&answered, &pending, &idle_open, &slow_open);
                if (pending == 0 || client_now_us() - t0 >= SETUP_US || stopping)
                        break;
                pump(50000);
                tick();
        }
        keep_load = true;
        printf("READY idle_answered=%zu idle=%zu idle_pending=%zu slow_open=%zu slow=%zu ms=%" PRIu64 "\n", answered,
               n_idle, pending, slow_open, n_slow, (client_now_us() - t0) / 1000);
        fflush(stdout);
        uint64_t ready = client_now_us();
        for (int i = 5; i < argc && !stopping; i += 2) {
                uint64_t k = 0;
                (void) client_parse_u64(argv[i + 1], 100000, &k); /* checked above */
                if (probe(argv[i], k) < 0)
                        return -ENOMEM;
        }
        while (!stopping && client_now_us() - ready < hold * 1000000u) {
                pump(100000);
                tick();
        }
        count_load(&answered, &pending, &idle_open, &slow_open);
        printf("END idle_open=%zu slow_open=%zu idle_closed=%" PRIu64 " slow_closed=%" PRIu64 " reconnects=%" PRIu64
               " connect_errors=%" PRIu64 "\n",
               idle_open, slow_open, stats.idle_closed, stats.slow_closed, stats.reconnects, stats.connect_errors);
        return 0;
}

static int mode_stall(int argc, char **argv) {
        uint64_t n, seconds;
        if (argc != 4 || !client_parse_u64(argv[1], CONNECTIONS_MAX, &n) || n == 0 || !client_parse_u64(argv[2], SECONDS_MAX, &seconds) ||
            argv[3][0] != '/')
                return -EINVAL;
        size_t len;
        char *req = request_for(argv[3], true, &len);
        conns = calloc(n, sizeof(*conns));
        if (!req || !conns)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                conns[i] = (struct conn) { .fd = -1, .kind = K_STALL, .req = req, .req_len = len };
                (void) conn_open(&conns[i]);
        }
        uint64_t end = client_now_us() + seconds * 1000000u;
        while (!stopping && client_now_us() < end)
                pump(100000);
        uint64_t ok = 0, other = 0, none = 0;
        for (size_t i = 0; i < n; i++) {
                char head[13] = "";
                ssize_t k = conns[i].fd >= 0 ? recv(conns[i].fd, head, 12, MSG_PEEK | MSG_DONTWAIT) : -1;
                if (k == 12 && strncmp(head, "HTTP/1.1 200", 12) == 0)
                        ok++;
                else if (k > 0)
                        other++;
                else
                        none++;
                conn_close(&conns[i], S_DONE);
        }
        printf("RESULT n=%" PRIu64 " heads_200=%" PRIu64 " heads_other=%" PRIu64 " no_answer=%" PRIu64 "\n", n, ok, other,
               none);
        free(req);
        return 0;
}

static int mode_abandon(int argc, char **argv) {
        uint64_t seconds;
        if (argc != 3 || !client_parse_u64(argv[1], UINT32_MAX, &abandon_after) || !client_parse_u64(argv[2], SECONDS_MAX, &seconds))
                return -EINVAL;
        size_t n = 0, cap = 0;
        char line[PATH_MAX_LEN + 2];
        while (fgets(line, sizeof(line), stdin)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (line[0] != '/')
                        continue;
                if (n == CONNECTIONS_MAX)
                        return -E2BIG;
                if (n == cap) {
                        cap = cap ? cap * 2 : 256;
                        struct conn *p = realloc(conns, cap * sizeof(*p));
                        if (!p)
                                return -ENOMEM;
                        conns = p;
                }
                struct conn *c = &conns[n];
                *c = (struct conn) { .fd = -1, .kind = K_ABANDON };
                char *req = request_for(line, true, &c->req_len);
                c->req = req;
                c->in = malloc(HEAD_MAX);
                if (!req || !c->in)
                        return -ENOMEM;
                n++;
        }
        uint64_t t0 = client_now_us(), end = t0 + seconds * 1000000u;
        for (size_t i = 0; i < n; i++)
                if (!conn_open(&conns[i]))
                        conns[i].failed = true, conns[i].state = S_DONE;
        for (;;) {
                size_t open = 0;
                for (size_t i = 0; i < n; i++)
                        open += conns[i].state != S_DONE;
                if (open == 0 || stopping || client_now_us() >= end)
                        break;
                pump(50000);
        }
        uint64_t heads_ok = 0, heads_other = 0, timeouts = 0, errors = 0;
        for (size_t i = 0; i < n; i++) {
                struct conn *c = &conns[i];
                if (c->state != S_DONE) {
                        timeouts++;
                        conn_close(c, S_DONE);
                } else if (c->failed && !c->in_body)
                        errors++;
                else if (c->status >= 200 && c->status <= 299)
                        heads_ok++;
                else
                        heads_other++;
                free((char *) c->req);
                free(c->in);
        }
        printf("RESULT n=%zu heads_2xx=%" PRIu64 " heads_other=%" PRIu64 " timeouts=%" PRIu64 " errors=%" PRIu64
               " ms=%" PRIu64 "\n",
               n, heads_ok, heads_other, timeouts, errors, (client_now_us() - t0) / 1000);
        return 0;
}

static int usage(void) {
        fputs("usage: abuse [-H HEADER]... load PORT IDLE_PATH IDLE SLOW HOLD_SECONDS [PATH K]...\n"
              "       abuse [-H HEADER]... stall PORT N SECONDS PATH\n"
              "       abuse [-H HEADER]... abandon PORT AFTER_BYTES SECONDS < PATHS\n",
              stderr);
        return 2;
}

int main(int argc, char **argv) {
        int i = 1;
        for (; i + 1 < argc && strcmp(argv[i], "-H") == 0; i += 2) {
                if (n_headers == HEADERS_MAX || strpbrk(argv[i + 1], "\r\n"))
                        return usage();
                headers[n_headers++] = argv[i + 1];
        }
        uint64_t p;
        if (argc - i < 2 || !client_parse_u64(argv[i + 1], 65535, &p) || p == 0)
                return usage();
        port = (uint16_t) p;
        addr = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons(port),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        /* Like nginx's worker_rlimit_nofile: the soft limit up to the hard one. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        struct sigaction sa = { .sa_handler = on_term };
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGTERM, &sa, NULL);
        (void) sigaction(SIGINT, &sa, NULL);
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0) {
                fprintf(stderr, "abuse: epoll_create1: %s\n", strerror(errno));
                return 1;
        }
        const char *mode = argv[i];
        /* argv of the mode: its name's slot holds the port, then its own arguments. */
        int margc = argc - i - 1;
        char **margv = argv + i + 1;
        int r;
        if (strcmp(mode, "load") == 0)
                r = mode_load(margc, margv);
        else if (strcmp(mode, "stall") == 0)
                r = mode_stall(margc, margv);
        else if (strcmp(mode, "abandon") == 0)
                r = mode_abandon(margc, margv);
        else
                return usage();
        if (r == -EINVAL)
                return usage();
        if (r < 0) {
                fprintf(stderr, "abuse: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
