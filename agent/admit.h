/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Connection admission: layerd accepts on its listen socket itself and hands
 * each connection to libmicrohttpd (MHD_add_connection), so a new client is
 * always answered, whatever the other connections do. A table of the open
 * connections (by descriptor) knows what each is doing: reading its first
 * request's head since it connected, in a request, or idle between requests
 * since some time. Deadlines are absolute (a byte now and then does not
 * reset them): the first head within ADMIT_HEAD_DEADLINE_MS of the accept,
 * an idle keep-alive connection within ADMIT_IDLE_DEADLINE_MS of its last
 * answer. At capacity the oldest idle connection is cut to make room, else
 * the oldest that has been reading a head for a while (slowloris); when none
 * can be cut, the new connection gets a 503 at once and is closed.
 * Connections are cut by shutdown(2), never close(2): MHD owns the
 * descriptor and sees the end as from any peer. */

#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>

#define ADMIT_HEAD_DEADLINE_MS 10000
/* containerd's client (remotes/docker/config/hosts.go) closes its idle
 * connections after 30 s: a longer deadline leaves the close to it, so a
 * request never races a closing connection. At capacity idle connections are
 * cut first anyway. */
#define ADMIT_IDLE_DEADLINE_MS 35000
/* A connection reading its first head for longer may be cut at capacity:
 * containerd sends a request head in one write. */
#define ADMIT_SHED_HEAD_AFTER_MS 1000
/* How often deadlines are checked: a connection lives at most this much past one. */
#define ADMIT_SWEEP_MS 250

/* What admission works with; admit_limits_for() derives it from the open-file limit. */
struct admit_limits {
        unsigned capacity;  /* connections held open at once (cut ones not counted) */
        unsigned cut_slack; /* cut connections MHD has not closed yet, on top of capacity */
        unsigned fd_max;    /* connections on descriptors >= this are refused (the table's size) */
        uint64_t head_ms, idle_ms, shed_head_after_ms;
};

/* The limits for a process whose open-file limit is nofile (UINT64_MAX: none):
 * capacity is what is left after a reserve of descriptors for everything
 * behind the connections (see admit.c), at most max_connections (the spec's
 * agent.max_connections). */
struct admit_limits admit_limits_for(uint64_t nofile, unsigned max_connections);

/* How a connection is cut: shutdown(2) in layerd, a recorder in tests. Called
 * with the table's lock held; it must not call back into the table. */
typedef void (*admit_cut_fn)(void *userdata, int fd);

struct admit;

/* A table for limits; cut (NULL: shutdown(fd, SHUT_RDWR)) with userdata. 0 or -ENOMEM. */
int admit_new(const struct admit_limits *limits, admit_cut_fn cut, void *userdata, struct admit **ret);
/* Stops the accept thread if it runs (admit_listen_stop()) and frees a; NULL-safe; returns NULL. */
struct admit *admit_free(struct admit *a);

enum admit_verdict {
        ADMIT_TAKE,   /* give it to MHD */
        ADMIT_REFUSE, /* answer 503 and close it (admit_refuse()) */
        ADMIT_VERDICT_MAX,
};

/* Everything below is thread-safe; now_ms is CLOCK_MONOTONIC (time_now_ms()). */

/* A connection accepted on fd at now_ms: taken (maybe after cutting another
 * to make room) or refused. A taken fd is owned by MHD from here; it stays
 * in the table until admit_closed(), or admit_forget() if MHD never took it. */
enum admit_verdict admit_accepted(struct admit *a, int fd, uint64_t now_ms);
/* fd was taken but MHD closed it at once (MHD_add_connection() failed). */
void admit_forget(struct admit *a, int fd);
/* MHD started the connection on fd (MHD_CONNECTION_NOTIFY_STARTED). */
void admit_started(struct admit *a, int fd, uint64_t now_ms);
/* A request's head is in (the access handler's first call): no admission deadline while it runs. */
void admit_request_begin(struct admit *a, int fd);
/* The request on fd is answered (MHD_OPTION_NOTIFY_COMPLETED): idle since now_ms. */
void admit_request_end(struct admit *a, int fd, uint64_t now_ms);
/* MHD closes fd (MHD_CONNECTION_NOTIFY_CLOSED, before its close(2)). */
void admit_closed(struct admit *a, int fd);
/* Cuts the connections past their deadline at now_ms and drops taken ones
 * MHD never started. Returns how many it cut. */
unsigned admit_sweep(struct admit *a, uint64_t now_ms);

struct admit_stats {
        unsigned open, heads, busy, idle, cut; /* connections now, by state (open counts all) */
        uint64_t shed, refused, head_expired, idle_expired; /* since admit_new() */
};
void admit_get_stats(struct admit *a, struct admit_stats *ret);
/* The stats and the capacity as /metrics lines (a pull metrics hook; userdata is the struct admit). */
void admit_metrics(FILE *f, void *userdata);

/* Answers a refused connection "503 Service Unavailable" (as far as its send
 * buffer takes it, without waiting) and closes it. */
void admit_refuse(int fd);

/* ---- with libmicrohttpd ---- */

/* MHD_OPTION_NOTIFY_CONNECTION with cls = the struct admit. */
void admit_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode toe);
/* The descriptor of conn, or -1. */
int admit_connection_fd(struct MHD_Connection *conn);
/* Starts the thread that accepts on listen_fd (borrowed, made non-blocking)
 * for d (started with MHD_USE_NO_LISTEN_SOCKET) and sweeps every
 * ADMIT_SWEEP_MS. 0 or -errno. */
int admit_listen_start(struct admit *a, int listen_fd, struct MHD_Daemon *d);
/* Stops accepting and joins the thread; connections already taken go on.
 * Call before MHD_stop_daemon(). Idempotent. */
void admit_listen_stop(struct admit *a);
