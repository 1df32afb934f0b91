/* SPDX-License-Identifier: Apache-2.0 */
/* The admin API's agent side (agent/admin.h): a unix socket only the agent's
 * user may connect to (the permission is the authentication), served by a
 * libmicrohttpd daemon of its own, apart from the pull API's: a thread per
 * connection (a command such as `cache verify` works for minutes), a handful
 * of connections, short timeouts, and no request bodies (a command's
 * arguments are its query string, which MHD parses and bounds).
 *
 * Routes (docs/agent.md, "Admin API"): GET /v1/ping, GET /v1/status,
 * GET /v1/cache/{stats,ls}, POST /v1/cache/{verify,gc,check,rm,refresh},
 * POST /v1/prefetch.
 * A command's answer is 200 with its exit status whatever it is; with
 * ?format=text the body is its output then its errors (ADMIN_STDOUT_HEADER
 * says where they part), else a JSON object of both. */
#include "agent/admin.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/admin-wire.h"
#include "agent/agent.h"
#include "agent/log.h"
#include "agent/prefetch.h"
#include "agent/pull.h"
#include "agent/status.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/macro.h"
#include "common/time.h"

#define ADMIN_STREAM_MAX (ADMIN_REPLY_BODY_MAX / 2) /* a command's output, and its errors, each */

struct admin {
        struct MHD_Daemon *daemon;
        struct admin_target target;
        char path[SPEC_ADMIN_SOCKET_PATH_MAX + 1];
        dev_t dev;
        ino_t ino;
};

/* ---- the socket ------------------------------------------------------------------- */

static int sockaddr_for(const char *path, struct sockaddr_un *sa) {
        *sa = (struct sockaddr_un) { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa->sun_path))
                return -ENAMETOOLONG;
        memcpy(sa->sun_path, path, strlen(path) + 1);
        return 0;
}

/* What is at path already: nothing (0), a socket nobody answers on, left by
 * an agent that did not stop (0, replaced), an agent (-EADDRINUSE), or
 * something else, never removed (-EEXIST). */
static int check_existing(const char *path) {
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        struct sockaddr_un sa;
        int r = sockaddr_for(path, &sa);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) &sa, sizeof(sa)) == 0)
                return -EADDRINUSE;
        return errno == ECONNREFUSED ? 0 : -errno;
}

/* Binds a listening socket at path that nobody but this user can ever
 * connect to: bound inside a fresh directory of mode 0700 next to path,
 * made 0600, then renamed onto path (which also replaces a stale socket
 * atomically). No umask: it is the process's, and threads already create
 * cache files. Returns the fd (st filled in) or -errno. */
static int bind_private(const char *path, struct stat *st) {
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return -EINVAL;
        *slash = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        char tmpdir[SPEC_ADMIN_SOCKET_PATH_MAX + 16];
        int n = snprintf(tmpdir, sizeof(tmpdir), "%s/.aXXXXXX", dir);
        if (n < 0 || (size_t) n >= sizeof(tmpdir) || !mkdtemp(tmpdir))
                return n < 0 || (size_t) n >= sizeof(tmpdir) ? -ENAMETOOLONG : -errno;
        _cleanup_close_ int dfd = open(tmpdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        /* The temporary path is longer than path when its name is short:
         * then it is bound through the directory's descriptor, whose path fits. */
        char tmp[sizeof(tmpdir) + 8];
        snprintf(tmp, sizeof(tmp), "%s/s", tmpdir);
        if (strlen(tmp) > SPEC_ADMIN_SOCKET_PATH_MAX && dfd >= 0)
                snprintf(tmp, sizeof(tmp), "/proc/self/fd/%d/s", dfd);
        struct sockaddr_un sa;
        int r = dfd < 0 ? -errno : sockaddr_for(tmp, &sa);
        _cleanup_close_ int fd = r < 0 ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (r >= 0 && fd < 0)
                r = -errno;
        if (r >= 0 && (bind(fd, (const struct sockaddr *) &sa, sizeof(sa)) < 0 || fchmodat(dfd, "s", 0600, 0) < 0 ||
                       listen(fd, ADMIN_CONNECTIONS_MAX) < 0 || renameat(dfd, "s", AT_FDCWD, path) < 0 ||
                       lstat(path, st) < 0))
                r = -errno;
        if (dfd >= 0)
                (void) unlinkat(dfd, "s", 0); /* gone already after the rename */
        (void) rmdir(tmpdir);
        return r < 0 ? r : TAKE_FD(fd);
}

/* ---- output streams bounded like every buffer --------------------------------------- */

static ssize_t stream_write(void *cookie, const char *data, size_t size) {
        struct buf *b = cookie;
        if (buf_append(b, data, size) < 0) {
                errno = EFBIG;
                return -1;
        }
        return (ssize_t) size;
}

static FILE *stream_open(struct buf *b) {
        return fopencookie(b, "w", (cookie_io_functions_t) { .write = stream_write });
}

/* ---- requests --------------------------------------------------------------------- */

struct args {
        char *images[ADMIN_ARGS_MAX], *platforms[ADMIN_ARGS_MAX];
        size_t n_images, n_platforms;
        bool text;
        const char *bad; /* the first argument refused */
};

static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        struct args *a = cls;
        (void) kind;
        if (!value)
                value = "";
        if (strcmp(key, "image") == 0 && a->n_images < ADMIN_ARGS_MAX)
                a->images[a->n_images++] = (char *) value;
        else if (strcmp(key, "platform") == 0 && a->n_platforms < ADMIN_ARGS_MAX && strchr(value, '/'))
                a->platforms[a->n_platforms++] = (char *) value;
        else if (strcmp(key, "format") == 0 && (strcmp(value, "text") == 0 || strcmp(value, "json") == 0))
                a->text = strcmp(value, "text") == 0;
        else {
                a->bad = key;
                return MHD_NO;
        }
        return MHD_YES;
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type, struct buf *body,
                               int exit_status, size_t out_len) {
        size_t len = 0;
        char *data = buf_take(body, &len);
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, data ? data : (char *) "",
                                                                    data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                free(data);
                return MHD_NO;
        }
        char n[24];
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        if (exit_status >= 0) {
                snprintf(n, sizeof(n), "%d", exit_status);
                (void) MHD_add_response_header(resp, ADMIN_EXIT_HEADER, n);
                snprintf(n, sizeof(n), "%zu", out_len);
                (void) MHD_add_response_header(resp, ADMIN_STDOUT_HEADER, n);
        }
        enum MHD_Result ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* A refusal: {"error": "..."} with status. */
static enum MHD_Result refuse(struct MHD_Connection *conn, unsigned status, const char *fmt, ...) _printf_(3, 4);
static enum MHD_Result refuse(struct MHD_Connection *conn, unsigned status, const char *fmt, ...) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        _cleanup_buf_ struct buf body = BUF_INIT(1024);
        FILE *f = stream_open(&body);
        if (f) {
                fputs("{\"error\":", f);
                json_write_string(f, msg);
                fputs("}\n", f);
                (void) fclose(f);
        }
        return respond(conn, status, "application/json", &body, -1, 0);
}

enum command {
        CMD_PING,
        CMD_STATUS,
        CMD_STATS,
        CMD_LS,
        CMD_VERIFY,
        CMD_GC,
        CMD_CHECK,
        CMD_PREFETCH,
        CMD_RM,
        CMD_REFRESH,
        _CMD_MAX,
};

static const struct {
        const char *path, *method;
        bool takes_images;
} commands[_CMD_MAX] = {
        [CMD_PING] = { "/v1/ping", "GET", false },           [CMD_STATUS] = { "/v1/status", "GET", false },
        [CMD_STATS] = { "/v1/cache/stats", "GET", false },   [CMD_LS] = { "/v1/cache/ls", "GET", false },
        [CMD_VERIFY] = { "/v1/cache/verify", "POST", false }, [CMD_GC] = { "/v1/cache/gc", "POST", false },
        [CMD_CHECK] = { "/v1/cache/check", "POST", true },   [CMD_PREFETCH] = { "/v1/prefetch", "POST", false },
        [CMD_RM] = { "/v1/cache/rm", "POST", true },         [CMD_REFRESH] = { "/v1/cache/refresh", "POST", true },
};

static int admin_prefetch_round(void *cls, const struct prefetch_hooks *h, struct prefetch_round_stats *st) {
        return prefetch_round_now(cls, h, st);
}

/* Runs cmd with its output to out and errors to err; returns its exit status. */
static int run(const struct admin_target *t, enum command cmd, const struct args *a, FILE *out, FILE *err) {
        switch (cmd) {
        case CMD_PING:
                fputs("ok\n", out);
                return 0;
        case CMD_STATUS:
                return status_write(t, !a->text, out);
        case CMD_CHECK:
                return agent_cache_check(t->pull, (char **) a->images, a->n_images, (char **) a->platforms,
                                         a->n_platforms, out, err);
        case CMD_PREFETCH:
                return agent_prefetch_report(admin_prefetch_round, t->pf, false, out, err);
        case CMD_RM:
                return agent_cache_rm(t->cache, (char **) a->images, a->n_images, out, err);
        case CMD_REFRESH:
                return agent_cache_refresh(t->pull, (char **) a->images, a->n_images, out, err);
        default:
                /* No spec: the agent's reloads set the bounds, gc only evicts now. */
                return agent_cache_command(t->cache, t->cache_dir, NULL, commands[cmd].path + strlen("/v1/cache/"),
                                           out, err);
        }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
        struct admin *adm = cls;
        (void) version;
        (void) upload_data;
        (void) req_cls;
        (void) upload_data_size;
        /* Everything is answered at the first call, before a body is read: the API takes none. */
        const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if ((length && strcmp(length, "0") != 0) ||
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
                return refuse(conn, MHD_HTTP_CONTENT_TOO_LARGE, "the admin API takes no request body");
        enum command cmd = _CMD_MAX;
        for (int i = 0; i < _CMD_MAX; i++)
                if (strcmp(url, commands[i].path) == 0)
                        cmd = i;
        if (cmd == _CMD_MAX)
                return refuse(conn, MHD_HTTP_NOT_FOUND, "no such admin route");
        if (strcmp(method, commands[cmd].method) != 0)
                return refuse(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "%s only", commands[cmd].method);
        /* Two agents may share a spec and its fixed admin_socket: a command
         * naming a cache directory runs only on the agent of that directory. */
        const char *want_dir = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, ADMIN_CACHE_DIR_HEADER);
        if (want_dir) {
                struct stat st;
                char own[48] = "";
                if (stat(adm->target.cache_dir, &st) == 0)
                        snprintf(own, sizeof(own), "%ju:%ju", (uintmax_t) st.st_dev, (uintmax_t) st.st_ino);
                if (strcmp(want_dir, own) != 0)
                        return refuse(conn, MHD_HTTP_CONFLICT, "this agent's cache is \"%.160s\", another directory",
                                      adm->target.cache_dir);
        }
        struct args a = {};
        (void) MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, on_arg, &a);
        if (a.bad || (!commands[cmd].takes_images && a.n_images > 0) || (cmd != CMD_CHECK && a.n_platforms > 0))
                return refuse(conn, MHD_HTTP_BAD_REQUEST, "unknown, repeated past %d or invalid argument \"%.64s\"",
                              ADMIN_ARGS_MAX, a.bad ? a.bad : "image");
        _cleanup_buf_ struct buf out = BUF_INIT(ADMIN_STREAM_MAX), err = BUF_INIT(ADMIN_STREAM_MAX);
        _cleanup_(fclosep) FILE *fo = stream_open(&out);
        _cleanup_(fclosep) FILE *fe = stream_open(&err);
        if (!fo || !fe)
                return refuse(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        uint64_t t0 = time_now_ms();
        int status = run(&adm->target, cmd, &a, fo, fe);
        log_info("admin command=%s exit=%d ms=%" PRIu64, commands[cmd].path, status, time_now_ms() - t0);
        if (fclose(TAKE_PTR(fo)) != 0 || fclose(TAKE_PTR(fe)) != 0)
                return refuse(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "the output is larger than %d bytes",
                              ADMIN_STREAM_MAX);
        if (a.text || (cmd == CMD_STATUS)) {
                size_t out_len = out.len;
                if (err.len > 0 && buf_append(&out, err.data, err.len) < 0) /* within ADMIN_REPLY_BODY_MAX */
                        return refuse(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
                return respond(conn, MHD_HTTP_OK,
                               a.text ? "text/plain; charset=utf-8" : "application/json", &out, status, out_len);
        }
        _cleanup_buf_ struct buf body = BUF_INIT(ADMIN_REPLY_BODY_MAX);
        _cleanup_(fclosep) FILE *f = stream_open(&body);
        if (!f)
                return refuse(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        fprintf(f, "{\"exit_status\":%d,\"stdout\":", status);
        json_write_string(f, buf_str(&out));
        fputs(",\"stderr\":", f);
        json_write_string(f, buf_str(&err));
        fputs("}\n", f);
        if (fclose(TAKE_PTR(f)) != 0)
                return refuse(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "the answer is too large");
        return respond(conn, MHD_HTTP_OK, "application/json", &body, status, body.len);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        (void) cls;
        vsnprintf(buf, sizeof(buf), fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        log_debug("admin: libmicrohttpd: %s", buf);
}

int admin_start(const char *path, const struct admin_target *t, struct admin **ret) {
        _cleanup_free_ struct admin *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        if (strlen(path) >= sizeof(a->path))
                return -ENAMETOOLONG;
        memcpy(a->path, path, strlen(path) + 1);
        a->target = *t;
        int r = check_existing(path);
        if (r < 0)
                return r;
        struct stat st;
        _cleanup_close_ int fd = bind_private(path, &st);
        if (fd < 0)
                return fd;
        a->dev = st.st_dev;
        a->ino = st.st_ino;
        errno = 0;
        a->daemon = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC, 0,
                NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) ADMIN_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned) ADMIN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) ADMIN_REQUEST_MEMORY,
                MHD_OPTION_END);
        if (!a->daemon) {
                r = -(errno ? errno : ENOMEM);
                (void) unlink(path);
                return r;
        }
        (void) TAKE_FD(fd); /* MHD's now: closed by MHD_stop_daemon() */
        *ret = TAKE_PTR(a);
        return 0;
}

struct admin *admin_stop(struct admin *a) {
        if (!a)
                return NULL;
        MHD_stop_daemon(a->daemon);
        /* Only our own socket: another agent may have replaced a file it thought stale. */
        struct stat st;
        if (lstat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino)
                (void) unlink(a->path);
        free(a);
        return NULL;
}
