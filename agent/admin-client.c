/* SPDX-License-Identifier: Apache-2.0 */
/* The command line's side of the admin API (agent/admin.h): the socket's
 * path, one request over it, the command's output printed as it would have
 * been offline. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/admin-wire.h"
#include "agent/admin.h"
#include "common/buf.h"
#include "common/macro.h"

#define ADMIN_SEND_TIMEOUT_S 10

int admin_socket_path(const struct spec *s, const char *cache_dir, const char *override, char *buf, size_t size) {
        const char *p = override ? override : s->agent.admin_socket;
        int n = p ? snprintf(buf, size, "%s", p) : snprintf(buf, size, "%s/%s", cache_dir, ADMIN_SOCKET_NAME);
        if (n < 0 || (size_t) n >= size || n > SPEC_ADMIN_SOCKET_PATH_MAX)
                return -ENAMETOOLONG;
        return n > 0 ? 1 : 0;
}

static int connect_socket(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct timeval tv = { .tv_sec = ADMIN_SEND_TIMEOUT_S };
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (const struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int send_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* The reply, read until the agent closes (the request said Connection: close). */
static int read_all(int fd, struct buf *b) {
        for (;;) {
                int r = buf_reserve(b, 64 * 1024);
                if (r == -EFBIG && b->len < b->max)
                        r = buf_reserve(b, b->max - b->len);
                if (r < 0)
                        return r;
                ssize_t k = read(fd, b->data + b->len, b->cap - 1 - b->len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return 0;
                b->len += (size_t) k;
                b->data[b->len] = '\0';
        }
}

int admin_remote(const char *socket_path, const char *method, const char *target, const char *who) {
        return admin_remote_dir(socket_path, method, target, NULL, who);
}

int admin_remote_dir(const char *socket_path, const char *method, const char *target, const char *cache_dir,
                     const char *who) {
        if (!socket_path)
                return ADMIN_NO_AGENT;
        char dir_id[48] = "";
        struct stat st;
        if (cache_dir && stat(cache_dir, &st) < 0) {
                fprintf(stderr, "%s: %s: %s\n", who, cache_dir, strerror(errno));
                return 1;
        }
        if (cache_dir)
                snprintf(dir_id, sizeof(dir_id), "%ju:%ju", (uintmax_t) st.st_dev, (uintmax_t) st.st_ino);
        _cleanup_close_ int fd = connect_socket(socket_path);
        /* Nothing there, or a socket file nobody listens on (an agent that
         * crashed): the command opens the cache itself, whose lock tells
         * whether an agent without an admin socket holds it. */
        if (fd == -ENOENT || fd == -ECONNREFUSED)
                return ADMIN_NO_AGENT;
        if (fd < 0) {
                fprintf(stderr, "%s: cannot reach the agent at \"%s\": %s\n", who, socket_path, strerror(-fd));
                return 1;
        }
        /* Whoever may create the path could listen there: only root's or our
         * own listener is told the command and believed about the cache. */
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                fprintf(stderr, "%s: cannot tell who listens at \"%s\": %s\n", who, socket_path, strerror(errno));
                return 1;
        }
        if (cred.uid != 0 && cred.uid != geteuid()) {
                fprintf(stderr, "%s: refusing the socket at \"%s\": its listener runs as uid %u, neither root nor us\n",
                        who, socket_path, (unsigned) cred.uid);
                return 1;
        }
        _cleanup_buf_ struct buf req = BUF_INIT(ADMIN_REQUEST_MEMORY);
        int r = buf_printf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", method, target);
        if (r >= 0 && dir_id[0])
                r = buf_printf(&req, "%s: %s\r\n", ADMIN_CACHE_DIR_HEADER, dir_id);
        if (r >= 0)
                r = buf_printf(&req, "\r\n");
        if (r >= 0)
                r = send_all(fd, req.data, req.len);
        if (r >= 0)
                (void) shutdown(fd, SHUT_WR);
        _cleanup_buf_ struct buf reply = BUF_INIT(ADMIN_REPLY_HEAD_MAX + ADMIN_REPLY_BODY_MAX);
        if (r >= 0)
                r = read_all(fd, &reply);
        struct admin_reply rep;
        if (r >= 0)
                r = admin_reply_parse(reply.data ? reply.data : "", reply.len, &rep);
        if (r < 0) {
                fprintf(stderr, "%s: the agent at \"%s\" did not answer: %s\n", who, socket_path, strerror(-r));
                return 1;
        }
        if (rep.status == 409 && cache_dir) {
                fprintf(stderr,
                        "%s: the agent at \"%s\" serves another cache directory than \"%s\": nothing was run; name "
                        "that directory's agent with --admin-socket\n",
                        who, socket_path, cache_dir);
                return 1;
        }
        if (rep.status != 200 || rep.exit_status < 0) {
                fprintf(stderr, "%s: the agent at \"%s\" answered %u: %.*s\n", who, socket_path, rep.status,
                        (int) (rep.out_len > 512 ? 512 : rep.out_len), rep.out);
                return 1;
        }
        if (fwrite(rep.out, 1, rep.out_len, stdout) != rep.out_len || fflush(stdout) != 0)
                return 1;
        (void) fwrite(rep.err, 1, rep.err_len, stderr);
        return rep.exit_status;
}
