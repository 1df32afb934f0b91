/* SPDX-License-Identifier: Apache-2.0 */
/* Connection admission (admit.h): the table of open connections, their
 * deadlines, who is cut at capacity, and the thread that accepts and sweeps.
 *
 * Why layerd accepts itself: at its connection limit libmicrohttpd stops
 * polling its listen socket, so new connections wait in the kernel's backlog,
 * accepted by the kernel and never answered; containerd has no response
 * timeout, so such a pull hangs. Here every connection is accepted at once
 * and either taken (after cutting an idle one if need be) or answered 503,
 * which containerd takes as "try the next host". And MHD's timeout counts
 * inactivity only: a client sending a header byte every few seconds would
 * keep its slot forever; the deadlines here are absolute. */
#include "agent/admit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/log.h"
#include "common/macro.h"
#include "common/time.h"

/* Descriptors kept for what stands behind the connections, never used for
 * them: a cached blob being sent holds its file (sendfile), a download its
 * upstream socket (libcurl) and its file in the cache's tmp/, the cache its
 * directories, MHD its wake-up descriptors per thread, plus
 * journald, the spec and credentials files. A quarter of the limit, at least
 * ADMIT_RESERVE_MIN: with the usual hard limit of 524288 that is far more
 * than downloads ever hold at once; with 1024 it leaves 768 for connections. */
#define ADMIT_RESERVE_MIN 128
/* Each connection costs its MHD memory pool (SERVE_MEMORY_PER_CONNECTION,
 * 8 KiB, resident whole after its first request: MHD zeroes it between
 * requests) and MHD's connection state, about 9 KiB in all (5,000 idle
 * connections: 55 MiB resident), plus socket buffers in the kernel. So the
 * spec's agent.max_connections (default 4096: near 37 MiB, well inside the
 * DaemonSet's 128 MiB) bounds them however high the open-file limit is;
 * past it the oldest idle one makes room. */
#define ADMIT_CONNECTIONS_MIN 16
/* The table is indexed by descriptor; beyond this a connection is refused. */
#define ADMIT_FD_TABLE_MAX (1u << 17)
/* Connections accepted in one go before the sweep's clock is looked at again. */
#define ADMIT_ACCEPT_BATCH 64

struct admit_limits admit_limits_for(uint64_t nofile, unsigned max_connections) {
        uint64_t reserve = nofile / 4 > ADMIT_RESERVE_MIN ? nofile / 4 : ADMIT_RESERVE_MIN;
        uint64_t avail = nofile > reserve ? nofile - reserve : 0;
        /* A connection cut to make room holds its descriptor until MHD closes
         * it (its next turn of the event loop): a sixteenth for those. */
        uint64_t slack = avail / 16 > 4 ? avail / 16 : 4;
        uint64_t cap = avail > slack ? avail - slack : 0;
        if (cap > max_connections)
                cap = max_connections;
        if (cap < ADMIT_CONNECTIONS_MIN)
                cap = ADMIT_CONNECTIONS_MIN;
        if (slack > cap / 4 + 4)
                slack = cap / 4 + 4;
        return (struct admit_limits) {
                .capacity = (unsigned) cap,
                .cut_slack = (unsigned) slack,
                .fd_max = nofile < ADMIT_FD_TABLE_MAX ? (unsigned) nofile : ADMIT_FD_TABLE_MAX,
                .head_ms = ADMIT_HEAD_DEADLINE_MS,
                .idle_ms = ADMIT_IDLE_DEADLINE_MS,
                .shed_head_after_ms = ADMIT_SHED_HEAD_AFTER_MS,
        };
}

enum conn_state {
        CONN_FREE,
        CONN_PENDING, /* taken, MHD has not started it yet */
        CONN_HEAD,    /* reading its first request's head since it was accepted */
        CONN_BUSY,    /* in a request */
        CONN_IDLE,    /* between requests since `since` */
        CONN_CUT,     /* shut down; MHD has not closed it yet */
        CONN_STATE_MAX,
};

enum { LIST_HEAD, LIST_IDLE, LIST_MAX };

/* One descriptor's slot; the lists are ordered by `since` (appended in time order). */
struct conn {
        int prev, next; /* in list_of(state), -1 at the ends */
        uint64_t since; /* accepted (PENDING, HEAD), answered (IDLE) */
        uint8_t state;
};

struct admit {
        struct admit_limits limits;
        admit_cut_fn cut;
        void *userdata;

        /* Taken by MHD's threads (a few times per request), the accept thread
         * and the sweep; held for O(1) work and shutdown(2) calls only. */
        pthread_mutex_t lock;
        struct conn *conns; /* limits.fd_max slots */
        int first[LIST_MAX], last[LIST_MAX];
        unsigned count[CONN_STATE_MAX];
        uint64_t shed, refused, head_expired, idle_expired;

        /* The accept thread (admit_listen_start()). */
        struct MHD_Daemon *daemon;
        int listen_fd, wake[2], spare_fd;
        uint64_t fd_logged_ms; /* the last "out of file descriptors" line: the accept thread's alone */
        pthread_t thread;
        bool running;
};

static void cut_shutdown(void *userdata, int fd) {
        (void) userdata;
        /* Both directions: MHD's next read sees the end, and so does the client. */
        (void) shutdown(fd, SHUT_RDWR);
}

int admit_new(const struct admit_limits *limits, admit_cut_fn cut, void *userdata, struct admit **ret) {
        struct admit *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->limits = *limits;
        a->cut = cut ? cut : cut_shutdown;
        a->userdata = userdata;
        a->listen_fd = a->wake[0] = a->wake[1] = a->spare_fd = -1;
        for (size_t l = 0; l < LIST_MAX; l++)
                a->first[l] = a->last[l] = -1;
        /* calloc: pages of descriptors never used are never touched. */
        a->conns = calloc(limits->fd_max ? limits->fd_max : 1, sizeof(*a->conns));
        if (!a->conns || pthread_mutex_init(&a->lock, NULL) != 0) {
                free(a->conns);
                free(a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

struct admit *admit_free(struct admit *a) {
        if (!a)
                return NULL;
        admit_listen_stop(a);
        pthread_mutex_destroy(&a->lock);
        free(a->conns);
        free(a);
        return NULL;
}

/* ---- the table (lock held) ------------------------------------------------------------ */

static int list_of(uint8_t state) {
        return state == CONN_PENDING || state == CONN_HEAD ? LIST_HEAD : state == CONN_IDLE ? LIST_IDLE : -1;
}

static struct conn *slot(struct admit *a, int fd) {
        return fd >= 0 && (unsigned) fd < a->limits.fd_max ? &a->conns[fd] : NULL;
}

static void unlink_conn(struct admit *a, int fd) {
        struct conn *c = &a->conns[fd];
        int l = list_of(c->state);
        if (l >= 0) {
                if (c->prev >= 0)
                        a->conns[c->prev].next = c->next;
                else
                        a->first[l] = c->next;
                if (c->next >= 0)
                        a->conns[c->next].prev = c->prev;
                else
                        a->last[l] = c->prev;
        }
        c->prev = c->next = -1;
        a->count[c->state]--;
        c->state = CONN_FREE;
}

/* Puts the free slot fd in state, at the end of its list. */
static void link_conn(struct admit *a, int fd, uint8_t state, uint64_t since) {
        struct conn *c = &a->conns[fd];
        c->state = state;
        c->since = since;
        c->prev = c->next = -1;
        a->count[state]++;
        int l = list_of(state);
        if (l < 0)
                return;
        c->prev = a->last[l];
        if (c->prev >= 0)
                a->conns[c->prev].next = fd;
        else
                a->first[l] = fd;
        a->last[l] = fd;
}

static void set_state(struct admit *a, int fd, uint8_t state, uint64_t since) {
        if (a->conns[fd].state != CONN_FREE)
                unlink_conn(a, fd);
        link_conn(a, fd, state, since);
}

static void cut(struct admit *a, int fd) {
        set_state(a, fd, CONN_CUT, 0);
        a->cut(a->userdata, fd);
}

static unsigned live(const struct admit *a) {
        return a->count[CONN_PENDING] + a->count[CONN_HEAD] + a->count[CONN_BUSY] + a->count[CONN_IDLE];
}

/* Who makes room for a new connection: the oldest idle one, else the one
 * that has been reading its first head the longest, if for a while (a real
 * client's head comes in one go; a slowloris's never does). -1: nobody. */
static int victim(struct admit *a, uint64_t now_ms) {
        if (a->first[LIST_IDLE] >= 0)
                return a->first[LIST_IDLE];
        for (int fd = a->first[LIST_HEAD]; fd >= 0; fd = a->conns[fd].next) {
                const struct conn *c = &a->conns[fd];
                if (c->since + a->limits.shed_head_after_ms > now_ms)
                        return -1; /* the rest are younger still */
                if (c->state == CONN_HEAD)
                        return fd; /* never a PENDING one: its descriptor may not be MHD's any more */
        }
        return -1;
}

/* ---- the table's API ------------------------------------------------------------------ */

enum admit_verdict admit_accepted(struct admit *a, int fd, uint64_t now_ms) {
        enum admit_verdict v = ADMIT_REFUSE;
        pthread_mutex_lock(&a->lock);
        struct conn *c = slot(a, fd);
        if (c) {
                /* The kernel gave this number again: whatever held it before is
                 * closed (a taken one MHD dropped without a word). */
                if (c->state != CONN_FREE)
                        unlink_conn(a, fd);
                /* Cut ones count until MHD closed them: room for those is the slack. */
                if (a->count[CONN_CUT] + live(a) < a->limits.capacity + a->limits.cut_slack) {
                        int old = live(a) >= a->limits.capacity ? victim(a, now_ms) : -1;
                        if (old >= 0) {
                                cut(a, old);
                                a->shed++;
                        }
                        if (live(a) < a->limits.capacity) {
                                link_conn(a, fd, CONN_PENDING, now_ms);
                                v = ADMIT_TAKE;
                        }
                }
        }
        if (v == ADMIT_REFUSE)
                a->refused++;
        pthread_mutex_unlock(&a->lock);
        return v;
}

void admit_forget(struct admit *a, int fd) {
        pthread_mutex_lock(&a->lock);
        struct conn *c = slot(a, fd);
        if (c && c->state == CONN_PENDING)
                unlink_conn(a, fd);
        pthread_mutex_unlock(&a->lock);
}

void admit_started(struct admit *a, int fd, uint64_t now_ms) {
        pthread_mutex_lock(&a->lock);
        struct conn *c = slot(a, fd);
        if (c) {
                if (c->state == CONN_PENDING) {
                        /* The same list, in the same place: its deadline counts from the accept. */
                        c->state = CONN_HEAD;
                        a->count[CONN_PENDING]--;
                        a->count[CONN_HEAD]++;
                } else
                        /* Its PENDING slot was dropped as stale (MHD was that slow): from now. */
                        set_state(a, fd, CONN_HEAD, now_ms);
        }
        pthread_mutex_unlock(&a->lock);
}

void admit_request_begin(struct admit *a, int fd) {
        pthread_mutex_lock(&a->lock);
        struct conn *c = slot(a, fd);
        if (c && c->state != CONN_FREE && c->state != CONN_CUT)
                set_state(a, fd, CONN_BUSY, 0);
        pthread_mutex_unlock(&a->lock);
}

void admit_request_end(struct admit *a, int fd, uint64_t now_ms) {
        pthread_mutex_lock(&a->lock);
        struct conn *c = slot(a, fd);
        if (c && c->state == CONN_BUSY)
                set_state(a, fd, CONN_IDLE, now_ms);
        pthread_mutex_unlock(&a->lock);
}

void admit_closed(struct admit *a, int fd) {
        pthread_mutex_lock(&a->lock);
        struct conn *c = slot(a, fd);
        if (c && c->state != CONN_FREE)
                unlink_conn(a, fd);
        pthread_mutex_unlock(&a->lock);
}

unsigned admit_sweep(struct admit *a, uint64_t now_ms) {
        unsigned n = 0;
        pthread_mutex_lock(&a->lock);
        /* Each list is in time order: stop at the first one within its deadline. */
        for (int fd = a->first[LIST_HEAD]; fd >= 0; fd = a->first[LIST_HEAD]) {
                struct conn *c = &a->conns[fd];
                if (c->since + a->limits.head_ms > now_ms)
                        break;
                if (c->state == CONN_PENDING) {
                        /* MHD dropped it without a word (its own limit): the
                         * number may be another file's by now, never to cut. */
                        unlink_conn(a, fd);
                        continue;
                }
                cut(a, fd);
                a->head_expired++;
                n++;
        }
        for (int fd = a->first[LIST_IDLE]; fd >= 0; fd = a->first[LIST_IDLE]) {
                if (a->conns[fd].since + a->limits.idle_ms > now_ms)
                        break;
                cut(a, fd);
                a->idle_expired++;
                n++;
        }
        pthread_mutex_unlock(&a->lock);
        return n;
}

void admit_get_stats(struct admit *a, struct admit_stats *ret) {
        pthread_mutex_lock(&a->lock);
        *ret = (struct admit_stats) {
                .open = live(a) + a->count[CONN_CUT],
                .heads = a->count[CONN_PENDING] + a->count[CONN_HEAD],
                .busy = a->count[CONN_BUSY],
                .idle = a->count[CONN_IDLE],
                .cut = a->count[CONN_CUT],
                .shed = a->shed,
                .refused = a->refused,
                .head_expired = a->head_expired,
                .idle_expired = a->idle_expired,
        };
        pthread_mutex_unlock(&a->lock);
}

void admit_metrics(FILE *f, void *userdata) {
        struct admit *a = userdata;
        struct admit_stats s;
        admit_get_stats(a, &s);
        fprintf(f,
                "# HELP layerd_connections Client connections open, by state (reading a head, in a request, idle, cut).\n"
                "# TYPE layerd_connections gauge\n"
                "layerd_connections{state=\"head\"} %u\nlayerd_connections{state=\"request\"} %u\n"
                "layerd_connections{state=\"idle\"} %u\nlayerd_connections{state=\"cut\"} %u\n"
                "# HELP layerd_connections_capacity Connections held open at most (from the open-file limit).\n"
                "# TYPE layerd_connections_capacity gauge\nlayerd_connections_capacity %u\n"
                "# HELP layerd_connections_closed_total Connections layerd closed or refused, by reason.\n"
                "# TYPE layerd_connections_closed_total counter\n"
                "layerd_connections_closed_total{reason=\"shed\"} %" PRIu64 "\n"
                "layerd_connections_closed_total{reason=\"refused\"} %" PRIu64 "\n"
                "layerd_connections_closed_total{reason=\"head_deadline\"} %" PRIu64 "\n"
                "layerd_connections_closed_total{reason=\"idle_deadline\"} %" PRIu64 "\n",
                s.heads, s.busy, s.idle, s.cut, a->limits.capacity, s.shed, s.refused, s.head_expired,
                s.idle_expired);
}

/* ---- refusing ------------------------------------------------------------------------- */

/* The distribution spec's error body; Connection: close, as nothing more is read. */
#define REFUSAL_BODY "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections\"}]}"
#define REFUSAL_LENGTH "68"
_Static_assert(sizeof(REFUSAL_BODY) - 1 == 68, "REFUSAL_LENGTH is the body's length");
static const char refusal[] = "HTTP/1.1 503 Service Unavailable\r\n"
                              "Content-Type: application/json\r\n"
                              "Docker-Distribution-API-Version: registry/2.0\r\n"
                              "Connection: close\r\n"
                              "Content-Length: " REFUSAL_LENGTH "\r\n"
                              "\r\n" REFUSAL_BODY;

void admit_refuse(int fd) {
        char drain[1024];
        /* A fresh socket's send buffer takes this whole: nothing waits. */
        (void) send(fd, refusal, sizeof(refusal) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void) shutdown(fd, SHUT_WR);
        /* What the client sent already is read first: closing with unread
         * bytes would send a reset, which may overtake the answer. */
        for (int i = 0; i < 8 && recv(fd, drain, sizeof(drain), MSG_DONTWAIT) > 0; i++)
                ;
        close(fd);
}

/* ---- with libmicrohttpd --------------------------------------------------------------- */

int admit_connection_fd(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        return ci ? ci->connect_fd : -1;
}

void admit_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode toe) {
        struct admit *a = cls;
        (void) socket_context;
        /* CLOSED comes before MHD's close(2): the number is still this connection's. */
        int fd = admit_connection_fd(conn);
        if (toe == MHD_CONNECTION_NOTIFY_STARTED)
                admit_started(a, fd, time_now_ms());
        else
                admit_closed(a, fd);
}

/* Out of descriptors (EMFILE): the spare one is given up for a moment to
 * answer one waiting connection with a 503, so none waits in the backlog. */
static bool refuse_with_spare(struct admit *a, int error) {
        /* Said when it happens (at most every 10 s), not only in the minute's summary. */
        uint64_t now = time_now_ms();
        if (a->fd_logged_ms == 0 || now - a->fd_logged_ms >= 10000) {
                a->fd_logged_ms = now;
                log_warning("out of file descriptors accepting a connection (%s): answering 503 to new connections "
                            "until some are closed",
                            strerror(error));
        }
        if (a->spare_fd < 0)
                return false;
        close(a->spare_fd);
        int fd = accept4(a->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
                admit_refuse(fd);
                pthread_mutex_lock(&a->lock);
                a->refused++;
                pthread_mutex_unlock(&a->lock);
        }
        a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        return fd >= 0;
}

/* Accepts what the backlog holds, up to a batch. Returns false after an error
 * that would repeat at once (the caller pauses rather than spin). */
static bool accept_some(struct admit *a) {
        for (unsigned i = 0; i < ADMIT_ACCEPT_BATCH; i++) {
                struct sockaddr_storage sa;
                socklen_t len = sizeof(sa);
                int fd = accept4(a->listen_fd, (struct sockaddr *) &sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return true;
                        if (errno == ECONNABORTED || errno == EINTR)
                                continue;
                        if ((errno == EMFILE || errno == ENFILE) && refuse_with_spare(a, errno))
                                continue;
                        return false;
                }
                if (admit_accepted(a, fd, time_now_ms()) == ADMIT_REFUSE) {
                        admit_refuse(fd);
                        continue;
                }
                /* MHD's thread picks it up (MHD_USE_ITC); on failure it closed fd. */
                if (MHD_add_connection(a->daemon, fd, (struct sockaddr *) &sa, len) != MHD_YES)
                        admit_forget(a, fd);
        }
        return true;
}

#define ADMIT_REPORT_MS 60000
#define ADMIT_ERROR_PAUSE_MS 10

/* What admission did lately, once a minute when it did anything. */
static void report(struct admit *a, struct admit_stats *last) {
        struct admit_stats s;
        admit_get_stats(a, &s);
        if (s.shed != last->shed || s.refused != last->refused || s.head_expired != last->head_expired ||
            s.idle_expired != last->idle_expired)
                log_notice("connections open=%u capacity=%u in the last minute: shed=%" PRIu64 " refused=%" PRIu64
                           " head_deadline=%" PRIu64 " idle_deadline=%" PRIu64,
                           s.open, a->limits.capacity, s.shed - last->shed, s.refused - last->refused,
                           s.head_expired - last->head_expired, s.idle_expired - last->idle_expired);
        *last = s;
}

static void *listen_main(void *arg) {
        struct admit *a = arg;
        struct admit_stats last = {};
        uint64_t now = time_now_ms(), next_sweep = now + ADMIT_SWEEP_MS, next_report = now + ADMIT_REPORT_MS;
        for (;;) {
                struct pollfd p[2] = { { .fd = a->listen_fd, .events = POLLIN }, { .fd = a->wake[0], .events = POLLIN } };
                int n = poll(p, ELEMENTSOF(p), time_left_ms(next_sweep));
                if (n > 0 && p[1].revents)
                        break;
                bool ok = n >= 0 || errno == EINTR;
                if (n > 0 && p[0].revents)
                        ok = (p[0].revents & POLLIN) && accept_some(a);
                if (!ok) {
                        /* The listen socket in trouble (ENOBUFS, no spare descriptor): not a busy loop. */
                        struct timespec pause = { .tv_nsec = ADMIT_ERROR_PAUSE_MS * 1000000L };
                        nanosleep(&pause, NULL);
                }
                now = time_now_ms();
                if (now >= next_sweep) {
                        admit_sweep(a, now);
                        next_sweep = now + ADMIT_SWEEP_MS;
                }
                if (now >= next_report) {
                        report(a, &last);
                        next_report = now + ADMIT_REPORT_MS;
                }
        }
        return NULL;
}

static void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

int admit_listen_start(struct admit *a, int listen_fd, struct MHD_Daemon *d) {
        if (a->running)
                return -EBUSY;
        int flags = fcntl(listen_fd, F_GETFL);
        if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        if (pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        a->listen_fd = listen_fd;
        a->daemon = d;
        pthread_attr_t attr;
        int r = pthread_attr_init(&attr);
        if (r == 0) {
                pthread_attr_setstacksize(&attr, 128 * 1024);
                r = pthread_create(&a->thread, &attr, listen_main, a);
                pthread_attr_destroy(&attr);
        }
        if (r != 0) {
                close_fd(&a->wake[0]);
                close_fd(&a->wake[1]);
                close_fd(&a->spare_fd);
                return -r;
        }
        a->running = true;
        return 0;
}

void admit_listen_stop(struct admit *a) {
        if (!a || !a->running)
                return;
        (void) !write(a->wake[1], "", 1);
        pthread_join(a->thread, NULL);
        a->running = false;
        close_fd(&a->wake[0]);
        close_fd(&a->wake[1]);
        close_fd(&a->spare_fd);
}
