/* SPDX-License-Identifier: Apache-2.0 */
/* The metrics listener (agent/metrics-listen.h): /metrics, /healthz and
 * /readyz on a libmicrohttpd daemon of their own. */
#include "agent/metrics-listen.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/log.h"
#include "agent/pull-internal.h"

#define MESSAGE_MAX 1024
#define THREAD_STACK (256 * 1024)
/* A request head (a scraper's is a few hundred bytes) and the response's headers. */
#define MEMORY_PER_CONNECTION (8 * 1024)

/* What is counted of the answers, by status. */
enum answer {
        ANSWER_OK,
        ANSWER_UNAVAILABLE, /* /readyz while not ready */
        ANSWER_NOT_FOUND,
        ANSWER_METHOD,
        _ANSWER_MAX,
};

static const unsigned answer_status[_ANSWER_MAX] = { 200, 503, 404, 405 };

struct metrics_listener {
        struct pull *pull;
        struct MHD_Daemon *d;
        atomic_uint_fast64_t answers[_ANSWER_MAX];
        atomic_uint connections; /* open now */
};

/* libmicrohttpd says so for each connection past METRICS_LISTEN_CONNECTIONS
 * and each peer gone mid-request: a flood would flood the log. */
static void on_log(void *cls, const char *fmt, va_list ap) {
        char buf[MESSAGE_MAX];
        (void) cls;
        vsnprintf(buf, sizeof(buf), fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        if (strstr(buf, "connection limit") || strstr(buf, "closed by remote") || strstr(buf, "closed when reading"))
                log_debug("metrics listener: libmicrohttpd: %s", buf);
        else
                log_warning("metrics listener: libmicrohttpd: %s", buf);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
        struct metrics_listener *m = cls;
        (void) conn, (void) socket_context;
        if (toe == MHD_CONNECTION_NOTIFY_STARTED)
                atomic_fetch_add(&m->connections, 1);
        else
                atomic_fetch_sub(&m->connections, 1);
}

static enum MHD_Result answer(struct metrics_listener *m, struct MHD_Connection *conn, enum answer a,
                              struct MHD_Response *resp, const char *content_type) {
        if (!resp)
                return MHD_NO;
        bool ok = MHD_add_response_header(resp, "Content-Type", content_type) == MHD_YES &&
                  (a != ANSWER_METHOD || MHD_add_response_header(resp, "Allow", "GET, HEAD") == MHD_YES);
        enum MHD_Result r = ok ? MHD_queue_response(conn, answer_status[a], resp) : MHD_NO;
        MHD_destroy_response(resp);
        if (r == MHD_YES)
                atomic_fetch_add(&m->answers[a], 1);
        return r;
}

static enum MHD_Result answer_text(struct metrics_listener *m, struct MHD_Connection *conn, enum answer a,
                                   const char *text) {
        return answer(m, conn, a,
                      MHD_create_response_from_buffer(strlen(text), (void *) text, MHD_RESPMEM_PERSISTENT),
                      "text/plain");
}

static void listener_metrics(FILE *f, struct metrics_listener *m);

/* The pull API's /metrics text and the listener's own counters after it. */
static struct MHD_Response *metrics_response(struct metrics_listener *m) {
        char *data = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&data, &len);
        if (!f)
                return NULL;
        metrics_write(m->pull, f);
        listener_metrics(f, m);
        if (fclose(f) != 0) {
                free(data);
                return NULL;
        }
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        if (!resp)
                free(data);
        return resp;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
        static char seen; /* the request's head is in; it is answered once it is whole (the next call) */
        struct metrics_listener *m = cls;
        (void) version, (void) upload_data;
        if (!*req_cls) {
                *req_cls = &seen;
                return MHD_YES;
        }
        if (*upload_data_size) {
                *upload_data_size = 0; /* a body is nothing to us (the timeout bounds it) */
                return MHD_YES;
        }
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return answer_text(m, conn, ANSWER_METHOD, "only GET and HEAD\n");
        if (strcmp(url, "/metrics") == 0)
                return answer(m, conn, ANSWER_OK, metrics_response(m), "text/plain; version=0.0.4");
        if (strcmp(url, "/healthz") == 0)
                return answer_text(m, conn, ANSWER_OK, "ok\n");
        if (strcmp(url, "/readyz") == 0) {
                const char *why = metrics_not_ready(m->pull);
                if (!why)
                        return answer_text(m, conn, ANSWER_OK, "ready\n");
                return answer_text(m, conn, ANSWER_UNAVAILABLE, why);
        }
        /* The pull API (/v2/...) included: it is served on agent.listen only. */
        return answer_text(m, conn, ANSWER_NOT_FOUND, "not found: this address serves /metrics, /healthz and /readyz\n");
}

static void listener_metrics(FILE *f, struct metrics_listener *m) {
        fputs("# HELP layerd_metrics_listener_requests_total Requests the metrics listener answered, by status.\n"
              "# TYPE layerd_metrics_listener_requests_total counter\n",
              f);
        for (int a = 0; a < _ANSWER_MAX; a++)
                fprintf(f, "layerd_metrics_listener_requests_total{status=\"%u\"} %" PRIu64 "\n", answer_status[a],
                        (uint64_t) atomic_load(&m->answers[a]));
        fprintf(f,
                "# HELP layerd_metrics_listener_connections Connections open on the metrics listener.\n"
                "# TYPE layerd_metrics_listener_connections gauge\nlayerd_metrics_listener_connections %u\n",
                (unsigned) atomic_load(&m->connections));
}

int metrics_listen_start(struct pull *p, int listen_fd, struct metrics_listener **ret) {
        struct metrics_listener *m = calloc(1, sizeof(*m));
        if (!m) {
                close(listen_fd);
                return -ENOMEM;
        }
        m->pull = p;
        /* One thread for every connection: scrapes are few and answered from memory. */
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_ITC;
        errno = 0;
        m->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,
                                MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_NOTIFY_CONNECTION, on_connection, m,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned) METRICS_LISTEN_CONNECTIONS,
                                MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned) METRICS_LISTEN_PER_IP,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) METRICS_LISTEN_TIMEOUT_S,
                                MHD_OPTION_THREAD_STACK_SIZE, (size_t) THREAD_STACK,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) MEMORY_PER_CONNECTION, MHD_OPTION_END);
        if (!m->d) {
                int r = errno ? -errno : -ENOMEM;
                close(listen_fd);
                free(m);
                return r;
        }
        *ret = m;
        return 0;
}

struct metrics_listener *metrics_listen_stop(struct metrics_listener *m) {
        if (!m)
                return NULL;
        MHD_stop_daemon(m->d);
        free(m);
        return NULL;
}
