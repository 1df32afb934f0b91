/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Peers for the fallback/ tests, all on 127.0.0.1:
 * - struct upstream: tests/fixtures/upstream.py (a fault-injecting fake
 *   registry) as a child process, driven over its control API with libcurl;
 * - struct hole: a socket bound to a free port that either listens and never
 *   accepts (a "blackhole": connects succeed, nothing is ever answered) or
 *   does not listen at all ("refusing": connects are refused; the port stays
 *   ours while it is bound, so nobody else can take it).
 * Every wait is bounded. The tests run from the repository root, as `make
 * check` runs them. Include after <cmocka.h>. */

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "common/digest.h"
#include "common/fsutil.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/time.h"
#include "fallback/fallback.h"

#define UPSTREAM_SCRIPT "tests/fixtures/upstream.py"
#define UPSTREAM_START_MS 10000
#define UPSTREAM_STOP_MS 5000
#define UPSTREAM_CALL_MS 20000 /* one control request (4 MiB uploads under valgrind included) */

static inline void fixture_sleep_ms(uint64_t ms) {
        struct timespec ts = { .tv_sec = (time_t) (ms / 1000), .tv_nsec = (long) (ms % 1000) * 1000000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ---- upstream.py ------------------------------------------------------------- */

struct upstream {
        pid_t pid;
        int port;
        char url[64];        /* "http://127.0.0.1:PORT" */
        char host[32];       /* "127.0.0.1:PORT", the credentials key */
        char dir[64];        /* temporary directory holding the port file */
        char port_file[96];
};

/* Starts upstream.py; upstream_wait_ready() finishes the start, so that
 * several can boot at the same time. */
static inline void upstream_spawn(struct upstream *u) {
        *u = (struct upstream) { .pid = -1 };
        snprintf(u->dir, sizeof(u->dir), "/tmp/layerd-test-upstream-XXXXXX");
        assert_non_null(mkdtemp(u->dir));
        snprintf(u->port_file, sizeof(u->port_file), "%s/port", u->dir);
        if (access(UPSTREAM_SCRIPT, R_OK) < 0)
                fail_msg("%s: %s (run the test from the repository root)", UPSTREAM_SCRIPT, strerror(errno));
        /* Debian's interpreter rather than a PATH shim: it starts faster, and tests/run uses it too. */
        const char *python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* If the test dies, so does its fixture. */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd >= 0)
                        dup2(fd, STDIN_FILENO);
                execlp(python, python, UPSTREAM_SCRIPT, "--port-file", u->port_file, (char *) NULL);
                _exit(127);
        }
        u->pid = pid;
}

static inline void upstream_wait_ready(struct upstream *u) {
        uint64_t give_up = time_now_ms() + UPSTREAM_START_MS;
        for (;;) {
                _cleanup_free_ char *data = NULL;
                size_t size;
                if (read_file_bounded(u->port_file, 16, &data, &size) == 0) {
                        char *nl = strchr(data, '\n');
                        if (nl)
                                *nl = '\0';
                        uint16_t port;
                        if (parse_port(data, &port) < 0)
                                fail_msg("%s: not a port: \"%s\"", u->port_file, data);
                        u->port = port;
                        snprintf(u->url, sizeof(u->url), "http://127.0.0.1:%d", u->port);
                        snprintf(u->host, sizeof(u->host), "127.0.0.1:%d", u->port);
                        return;
                }
                int status;
                if (waitpid(u->pid, &status, WNOHANG) == u->pid) {
                        u->pid = -1;
                        fail_msg("%s exited (status 0x%x) before writing its port", UPSTREAM_SCRIPT, (unsigned) status);
                }
                if (time_now_ms() > give_up)
                        fail_msg("%s wrote no port within %d ms", UPSTREAM_SCRIPT, UPSTREAM_START_MS);
                fixture_sleep_ms(10);
        }
}

/* SIGTERM, then SIGKILL if it is not gone within UPSTREAM_STOP_MS. */
static inline void upstream_stop(struct upstream *u) {
        if (u->pid > 0) {
                kill(u->pid, SIGTERM);
                uint64_t give_up = time_now_ms() + UPSTREAM_STOP_MS;
                int status;
                while (waitpid(u->pid, &status, WNOHANG) == 0) {
                        if (time_now_ms() > give_up) {
                                kill(u->pid, SIGKILL);
                                waitpid(u->pid, &status, 0);
                                break;
                        }
                        fixture_sleep_ms(10);
                }
                u->pid = -1;
        }
        if (u->dir[0]) {
                unlink(u->port_file);
                rmdir(u->dir);
                u->dir[0] = '\0';
        }
}

struct fixture_buf {
        char *data;
        size_t len;
};

static inline size_t fixture_buf_write(char *data, size_t size, size_t n, void *userdata) {
        struct fixture_buf *b = userdata;
        size_t len = size * n;
        char *p = realloc(b->data, b->len + len + 1);
        if (!p)
                return 0;
        memcpy(p + b->len, data, len);
        b->data = p;
        b->len += len;
        b->data[b->len] = '\0';
        return len;
}

/* One request to the fixture (its control API, or the registry API as a
 * plain client would make it). Returns the status; the body in *ret_body
 * when asked for (caller frees). */
static inline long upstream_call(const struct upstream *u, const char *method, const char *path, const void *body,
                                 size_t size, char **ret_body) {
        _cleanup_free_ char *url = NULL;
        assert_true(asprintf(&url, "%s%s", u->url, path) > 0);
        struct fixture_buf b = { 0 };
        CURL *h = curl_easy_init();
        assert_non_null(h);
        struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
        assert_non_null(hdrs);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) UPSTREAM_CALL_MS);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fixture_buf_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        if (body || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) size);
        }
        CURLcode c = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(h);
        if (c != CURLE_OK) {
                free(b.data);
                fail_msg("%s %s: %s", method, url, curl_easy_strerror(c));
        }
        if (ret_body)
                *ret_body = b.data ? b.data : strdup("");
        else
                free(b.data);
        return status;
}

static inline void upstream_expect(const struct upstream *u, const char *method, const char *path, const void *body,
                                   size_t size, long want) {
        _cleanup_free_ char *answer = NULL;
        long status = upstream_call(u, method, path, body, size, &answer);
        if (status != want)
                fail_msg("%s %s%s: HTTP %ld, wanted %ld: %s", method, u->url, path, status, want, answer);
}

static inline void upstream_reset(const struct upstream *u) {
        upstream_expect(u, "POST", "/_fixture/reset", NULL, 0, 200);
}

static inline void upstream_put_blob(const struct upstream *u, const char *digest, const void *data, size_t size) {
        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "/_fixture/blob/%s", digest) > 0);
        upstream_expect(u, "PUT", path, data, size, 201);
}

/* Stores a manifest under name:ref (and its digest); type NULL: the fixture's default. */
static inline void upstream_put_manifest(const struct upstream *u, const char *name, const char *ref, const char *type,
                                         const void *data, size_t size) {
        _cleanup_free_ char *path = NULL;
        char *escaped = NULL;
        if (type) {
                escaped = curl_easy_escape(NULL, type, 0);
                assert_non_null(escaped);
        }
        assert_true(asprintf(&path, "/_fixture/manifest/%s/%s%s%s", name, ref, type ? "?type=" : "",
                             type ? escaped : "") > 0);
        curl_free(escaped);
        upstream_expect(u, "PUT", path, data, size, 201);
}

/* PUTs the JSON that fmt formats to a control path of the fixture. */
static inline void upstream_put_json(const struct upstream *u, const char *path, const char *fmt, va_list ap)
        _printf_(3, 0);
static inline void upstream_put_json(const struct upstream *u, const char *path, const char *fmt, va_list ap) {
        _cleanup_free_ char *json = NULL;
        int n = vasprintf(&json, fmt, ap);
        assert_true(n >= 0);
        upstream_expect(u, "PUT", path, json, (size_t) n, 200);
}

/* Replaces the fixture's rules with the JSON list fmt formats. */
static inline void upstream_rules(const struct upstream *u, const char *fmt, ...) _printf_(2, 3);
static inline void upstream_rules(const struct upstream *u, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        upstream_put_json(u, "/_fixture/rules", fmt, ap);
        va_end(ap);
}

/* Sets the fixture's auth mode from the JSON object fmt formats. */
static inline void upstream_auth(const struct upstream *u, const char *fmt, ...) _printf_(2, 3);
static inline void upstream_auth(const struct upstream *u, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        upstream_put_json(u, "/_fixture/auth", fmt, ap);
        va_end(ap);
}

static inline void upstream_expire_tokens(const struct upstream *u) {
        upstream_expect(u, "POST", "/_fixture/expire_tokens", NULL, 0, 200);
}

/* The request log since the last reset: a JSON list (caller json_decref()s). */
static inline json_t *upstream_log(const struct upstream *u) {
        _cleanup_free_ char *body = NULL;
        assert_int_equal(upstream_call(u, "GET", "/_fixture/log", NULL, 0, &body), 200);
        json_error_t jerr;
        json_t *log = json_loads(body, 0, &jerr);
        if (!json_is_array(log))
                fail_msg("fixture log is not a JSON list: %s", body);
        return log;
}

/* Connections that carried registry requests since the last reset. */
static inline unsigned upstream_connections(const struct upstream *u) {
        _cleanup_free_ char *body = NULL;
        assert_int_equal(upstream_call(u, "GET", "/_fixture/connections", NULL, 0, &body), 200);
        json_error_t jerr;
        json_t *o = json_loads(body, 0, &jerr);
        assert_true(json_is_integer(json_object_get(o, "count")));
        unsigned n = (unsigned) json_integer_value(json_object_get(o, "count"));
        json_decref(o);
        return n;
}

/* Log entry fields. */
static inline const char *log_path(const json_t *log, size_t i) {
        return json_string_value(json_object_get(json_array_get(log, i), "path"));
}

static inline const char *log_method(const json_t *log, size_t i) {
        return json_string_value(json_object_get(json_array_get(log, i), "method"));
}

static inline long log_status(const json_t *log, size_t i) {
        json_t *s = json_object_get(json_array_get(log, i), "status");
        return json_is_integer(s) ? (long) json_integer_value(s) : -1;
}

/* A request header (lower-case name), or NULL. */
static inline const char *log_header(const json_t *log, size_t i, const char *name) {
        return json_string_value(json_object_get(json_object_get(json_array_get(log, i), "headers"), name));
}

/* Entries whose method is method (NULL: any), whose path contains part and whose status is
 * status (-1: any). */
static inline size_t log_count_status(const json_t *log, const char *method, const char *part, long status) {
        size_t n = 0;
        for (size_t i = 0; i < json_array_size(log); i++)
                if ((!method || strcmp(log_method(log, i), method) == 0) && strstr(log_path(log, i), part) &&
                    (status < 0 || log_status(log, i) == status))
                        n++;
        return n;
}

/* Entries whose method is method (NULL: any) and whose path contains part. */
static inline size_t log_count(const json_t *log, const char *method, const char *part) {
        return log_count_status(log, method, part, -1);
}

/* A client's credentials for a pass-through request (fallback_request.client_auth), keyed by a
 * hash of both as the agent keys them; *key holds the key's bytes. */
static inline struct fallback_client_auth fixture_client_auth(const char *user, const char *password,
                                                              struct digest *key) {
        const char *fields[] = { user, password };
        assert_int_equal(digest_fields(NULL, 0, fields, 2, NULL, 0, key), 0);
        return (struct fallback_client_auth) { .user = user, .password = password, .key = key->bytes };
}

/* An OCI image manifest whose config is the blob config_digest (size bytes),
 * with no layers; its size and digest in *ret_size, *ret_digest. The test frees it. */
static inline char *fixture_manifest(const char *config_digest, size_t size, size_t *ret_size,
                                     struct digest *ret_digest) {
        char *m = NULL;
        int n = asprintf(&m,
                         "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
                         "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
                         "\"size\":%zu},\"layers\":[]}",
                         config_digest, size);
        assert_true(n > 0);
        assert_int_equal(digest_buffer(DIGEST_SHA256, m, (size_t) n, ret_digest), 0);
        *ret_size = (size_t) n;
        return m;
}

/* ---- blackhole and refusing ports -------------------------------------------- */

struct hole {
        int fd;
        int port;
        char url[64];
        int client; /* hole_open_full(): the connection that fills the queue */
};

/* listening: connects succeed and are never answered; else they are refused. */
static inline void hole_open(struct hole *h, bool listening) {
        *h = (struct hole) { .fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), .client = -1 };
        assert_true(h->fd >= 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        assert_int_equal(bind(h->fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        socklen_t len = sizeof(sa);
        assert_int_equal(getsockname(h->fd, (struct sockaddr *) &sa, &len), 0);
        h->port = ntohs(sa.sin_port);
        if (listening)
                assert_int_equal(listen(h->fd, 64), 0);
        snprintf(h->url, sizeof(h->url), "http://127.0.0.1:%d", h->port);
}

/* A listener whose accept queue is full: the kernel drops new SYNs, so a
 * connect neither succeeds nor is refused; it times out. */
static inline void hole_open_full(struct hole *h) {
        hole_open(h, false);
        assert_int_equal(listen(h->fd, 0), 0);
        h->client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(h->client >= 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) h->port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        assert_int_equal(connect(h->client, (struct sockaddr *) &sa, sizeof(sa)), 0);
}

/* Takes (and closes) every connection waiting on a blackhole; returns how many. */
static inline unsigned hole_drain(struct hole *h) {
        unsigned n = 0;
        for (;;) {
                int fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        break;
                close(fd);
                n++;
        }
        return n;
}

static inline void hole_close(struct hole *h) {
        if (h->client >= 0)
                close(h->client);
        if (h->fd >= 0)
                close(h->fd);
        h->fd = h->client = -1;
}
