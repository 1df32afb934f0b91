/* SPDX-License-Identifier: Apache-2.0 */
#include "fallback/http.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pthread.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/time.h"

#define POLL_MAX_MS 100 /* how late a deadline may be noticed */
#define SYSTEM_CA_DIR "/etc/ssl/certs" /* Debian's hashed roots (ca-certificates) */
#define ERROR_BODY_MAX (16 * 1024)
#define ERROR_BODY_WAIT_MS 1000 /* ... and how long it is waited for after the headers */
#define LANE_MAXCONNECTS 8L

struct lane {
        struct lane *next;
        CURLM *multi; /* owns the lane's connection cache */
        CURL *easy;
        char *origin; /* scheme://host:port of the last exchange, to pick a lane with a warm connection */
};

struct http_client {
        CURLSH *share;
        pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
        pthread_mutex_t lock; /* lanes */
        struct lane *idle;
        size_t n_idle;
};

struct exchange {
        const struct http_request *req;
        struct http_response *resp;
        CURL *easy;
        uint64_t sent_at;      /* request sent on a connection (0: not yet) */
        uint64_t last_byte_at; /* headers or body byte last seen */
        uint64_t headers_at;   /* the final response's headers complete */
        bool headers_done;
        int body_error;        /* the on_body callback's errno */
        uint64_t dropped;      /* bytes of an error body */
        bool error_body_cut;   /* ... more than ERROR_BODY_MAX of them: the response is taken as complete */
        bool peer_refused;     /* a connection was refused by req->peer_mask: resp->peer_ip says where */
        int socket_errno;      /* socket() failed for a connection (EMFILE: out of descriptors) */
        struct curl_slist *own_headers; /* req->headers and the Basic Authorization line (wiped when freed) */
};

static void set_reason(struct http_response *r, const char *fmt, ...) _printf_(2, 3);
static void set_reason(struct http_response *r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        /* Reasons end up in key="value" log fields: no quote may end one early. */
        log_vquotef(r->reason, sizeof(r->reason), fmt, ap);
        va_end(ap);
}

/* The value of header `name` in the last response, or NULL (curl_easy_header,
 * libcurl >= 7.84: libcurl parsed the headers; we only pick). */
static char *header_dup(CURL *h, const char *name, size_t index) {
        struct curl_header *hd = NULL;
        if (curl_easy_header(h, name, index, CURLH_HEADER, -1, &hd) != CURLHE_OK || !hd->value)
                return NULL;
        return strdup(hd->value);
}

static int64_t header_int(CURL *h, const char *name) {
        _cleanup_free_ char *v = header_dup(h, name, 0);
        if (!v)
                return -1;
        /* ratelimit-remaining: "76;w=21600" (Docker Hub); Retry-After: seconds (dates are ignored). */
        char *semi = strchr(v, ';');
        if (semi)
                *semi = '\0';
        char *s = v;
        while (*s == ' ')
                s++;
        size_t len = strlen(s);
        while (len > 0 && s[len - 1] == ' ')
                s[--len] = '\0';
        uint64_t n;
        if (parse_uint(s, INT64_MAX, &n) < 0)
                return -1;
        return (int64_t) n;
}

static char *challenges_join(CURL *h) {
        struct curl_header *hd = NULL;
        if (curl_easy_header(h, "WWW-Authenticate", 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
                return NULL;
        size_t amount = hd->amount;
        _cleanup_buf_ struct buf out = BUF_INIT(HTTP_CHALLENGE_MAX - 1);
        for (size_t i = 0; i < amount && i < 8; i++) {
                if (curl_easy_header(h, "WWW-Authenticate", i, CURLH_HEADER, -1, &hd) != CURLHE_OK)
                        break;
                /* Whole challenges only: one cut short would be misread. */
                size_t add = strlen(hd->value);
                if (out.len + add + 3 > HTTP_CHALLENGE_MAX)
                        break;
                if (buf_printf(&out, "%s%s", out.len > 0 ? ", " : "", hd->value) < 0)
                        break;
        }
        return out.data ? buf_take(&out, NULL) : NULL;
}

static void headers_complete(struct exchange *x) {
        struct http_response *r = x->resp;
        long code = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 100 && code < 200)
                return; /* an interim answer: the real one follows */
        x->headers_done = true;
        x->headers_at = time_now_ms();
        r->status = code;
        r->content_type = header_dup(x->easy, "Content-Type", 0);
        r->digest = header_dup(x->easy, "Docker-Content-Digest", 0);
        r->location = header_dup(x->easy, "Location", 0);
        r->content_range = header_dup(x->easy, "Content-Range", 0);
        r->link = header_dup(x->easy, "Link", 0);
        r->challenge = challenges_join(x->easy);
        r->content_length = header_int(x->easy, "Content-Length");
        r->retry_after_s = header_int(x->easy, "Retry-After");
        r->ratelimit_limit = header_int(x->easy, "ratelimit-limit");
        r->ratelimit_remaining = header_int(x->easy, "ratelimit-remaining");
        if (x->req->on_head)
                x->req->on_head(x->req->userdata, r);
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata) {
        struct exchange *x = userdata;
        size_t len = size * n;
        x->last_byte_at = time_now_ms();
        if (len <= 2 && (len == 0 || data[0] == '\r' || data[0] == '\n'))
                headers_complete(x);
        else if (x->headers_done && len >= 5 && memcmp(data, "HTTP/", 5) == 0)
                x->headers_done = false; /* a new response (after a 1xx) */
        return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        struct exchange *x = userdata;
        size_t len = size * n;
        x->last_byte_at = time_now_ms();
        if (!x->headers_done)
                headers_complete(x);
        if (x->resp->status < 200 || x->resp->status > 299 || !x->req->on_body) {
                /* Error bodies are dropped, and not waited for beyond a little:
                 * the status is the answer (the connection is given up). */
                x->dropped += len;
                if (x->dropped > ERROR_BODY_MAX) {
                        x->error_body_cut = true;
                        return CURL_WRITEFUNC_ERROR;
                }
                return len;
        }
        int r = x->req->on_body(x->req->userdata, data, len);
        if (r < 0) {
                x->body_error = r;
                return CURL_WRITEFUNC_ERROR;
        }
        /* The sink may take its time (a rate limit sleeps in it): that is no
         * stall of the upstream, whose idle timeout counts from here. */
        x->last_byte_at = time_now_ms();
        x->resp->body_bytes += len;
        return len;
}

/* Records where the exchange connects; false (and the exchange marked) when req->peer_mask forbids it. */
static bool peer_admit(struct exchange *x, enum fallback_addr_class c, const char *ip) {
        snprintf(x->resp->peer_ip, sizeof(x->resp->peer_ip), "%s", ip);
        x->resp->peer_class = c;
        if (!x->req->peer_checked || fallback_addr_allowed(x->req->peer_mask, c))
                return true;
        x->peer_refused = true;
        return false;
}

/* libcurl asks for each address it tries, after DNS and before connecting:
 * a forbidden one gets no socket, so not even a SYN goes there (libcurl
 * tries the name's next address, if any). */
static curl_socket_t on_opensocket(void *userdata, curlsocktype purpose, struct curl_sockaddr *a) {
        struct exchange *x = userdata;
        char ip[INET6_ADDRSTRLEN] = "?";
        (void) purpose;
        if (a->family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *) (const void *) &a->addr)->sin_addr, ip, sizeof(ip));
        else if (a->family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) (const void *) &a->addr)->sin6_addr, ip, sizeof(ip));
        if (!peer_admit(x, fallback_addr_class(&a->addr), ip))
                return CURL_SOCKET_BAD;
        curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
        if (fd < 0)
                x->socket_errno = errno; /* libcurl would call it "Couldn't connect": it is not the peer's */
        return fd;
}

/* Called once a connection is ready and the request about to go out (libcurl >= 7.80);
 * also for a reused connection, which on_opensocket() never saw for this request. */
static int on_prereq(void *userdata, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port) {
        struct exchange *x = userdata;
        (void) conn_local_ip, (void) conn_primary_port, (void) conn_local_port;
        enum fallback_addr_class c;
        if (fallback_addr_class_of_ip(conn_primary_ip, &c) < 0)
                c = FALLBACK_ADDR_LOOPBACK; /* not an IP address: trust it no more than the most guarded */
        if (!peer_admit(x, c, conn_primary_ip ? conn_primary_ip : "?"))
                return CURL_PREREQFUNC_ABORT;
        x->peer_refused = false; /* a name's other address was refused, this one will do */
        x->sent_at = x->last_byte_at = time_now_ms();
        return CURL_PREREQFUNC_OK;
}

static int map_curl_error(CURLcode c) {
        switch (c) {
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_PARTIAL_FILE:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_HTTP2_STREAM:
                return -ECONNABORTED;
        default:
                return -EPROTO;
        }
}

void http_headers_free_wiped(struct curl_slist *l) {
        for (struct curl_slist *i = l; i; i = i->next)
                if (i->data)
                        explicit_bzero(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

/* req->headers with "Authorization: Basic <user:password>" added, in *ret. */
static int basic_headers(const struct http_request *req, struct curl_slist **ret) {
        const char *pw = req->password ? req->password : "";
        size_t lu = strlen(req->user), lp = strlen(pw);
        _cleanup_free_ char *pair = malloc(lu + 1 + lp + 1);
        _cleanup_free_ char *b64 = NULL, *line = NULL;
        struct curl_slist *l = NULL;
        int r = pair ? 0 : -ENOMEM;
        if (r == 0) {
                memcpy(pair, req->user, lu);
                pair[lu] = ':';
                memcpy(pair + lu + 1, pw, lp + 1);
                r = base64_encode(pair, lu + 1 + lp, &b64);
                explicit_bzero(pair, lu + 1 + lp);
        }
        if (r == 0 && asprintf(&line, "Authorization: Basic %s", b64) < 0) {
                line = NULL;
                r = -ENOMEM;
        }
        for (const struct curl_slist *h = req->headers; r == 0 && h; h = h->next) {
                struct curl_slist *n = curl_slist_append(l, h->data);
                if (!n)
                        r = -ENOMEM;
                else
                        l = n;
        }
        if (r == 0) {
                struct curl_slist *n = curl_slist_append(l, line);
                if (!n)
                        r = -ENOMEM;
                else
                        l = n;
        }
        if (b64)
                explicit_bzero(b64, strlen(b64));
        if (line)
                explicit_bzero(line, strlen(line));
        if (r < 0) {
                http_headers_free_wiped(l);
                return r;
        }
        *ret = l;
        return 0;
}

static int setup(CURL *h, CURLSH *share, const struct http_request *req, struct exchange *x, char *errbuf) {
        bool ok = true;
#define SET(opt, val) ok = ok && curl_easy_setopt(h, opt, val) == CURLE_OK
        SET(CURLOPT_URL, req->url);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        /* Behind an https_proxy, the proxy's "200 Connection established" must not
         * count as the response (it would end the wait for the real headers). */
        SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
        SET(CURLOPT_NOBODY, req->head ? 1L : 0L);
        SET(CURLOPT_HTTPHEADER, (struct curl_slist *) req->headers);
        SET(CURLOPT_USERAGENT, req->user_agent ? req->user_agent : "layerd");
        SET(CURLOPT_CONNECTTIMEOUT_MS, (long) (req->connect_timeout_ms ? req->connect_timeout_ms : 5000));
        SET(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
        SET(CURLOPT_BUFFERSIZE, 128L * 1024);
        SET(CURLOPT_ERRORBUFFER, errbuf);
        SET(CURLOPT_HEADERFUNCTION, on_header);
        SET(CURLOPT_HEADERDATA, x);
        SET(CURLOPT_WRITEFUNCTION, on_write);
        SET(CURLOPT_WRITEDATA, x);
        SET(CURLOPT_PREREQFUNCTION, on_prereq);
        SET(CURLOPT_PREREQDATA, x);
        SET(CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
        SET(CURLOPT_OPENSOCKETDATA, x);
        SET(CURLOPT_SHARE, share);
        if (req->post_fields) {
                SET(CURLOPT_POSTFIELDSIZE, (long) req->post_size);
                SET(CURLOPT_POSTFIELDS, req->post_fields);
        }
        if (req->user) {
                /* Our own header rather than CURLOPT_USERNAME/PASSWORD: libcurl would
                 * keep those in the pooled handle and in the cached connection (to
                 * match it for reuse), unwiped. Redirects are not followed here, so
                 * the header goes to req->url only. */
                int r = basic_headers(req, &x->own_headers);
                if (r < 0)
                        return r;
                SET(CURLOPT_HTTPHEADER, x->own_headers);
        }
        if (req->ca_file) {
                /* Added to the system's roots, not instead of them (as containerd
                 * does): CAINFO alone would replace the default bundle. */
                SET(CURLOPT_CAINFO, req->ca_file);
                if (access(SYSTEM_CA_DIR, R_OK) == 0)
                        SET(CURLOPT_CAPATH, SYSTEM_CA_DIR);
        }
        if (req->client_cert)
                SET(CURLOPT_SSLCERT, req->client_cert);
        if (req->client_key)
                SET(CURLOPT_SSLKEY, req->client_key);
        if (req->skip_verify) {
                SET(CURLOPT_SSL_VERIFYPEER, 0L);
                SET(CURLOPT_SSL_VERIFYHOST, 0L);
        }
#undef SET
        return ok ? 0 : -ENOMEM;
}

void http_response_done(struct http_response *r) {
        free(r->content_type);
        free(r->digest);
        free(r->location);
        free(r->content_range);
        free(r->link);
        free(r->challenge);
        *r = (struct http_response) { .content_length = -1, .retry_after_s = -1, .ratelimit_limit = -1,
                                      .ratelimit_remaining = -1, .peer_class = FALLBACK_ADDR_PUBLIC };
}

static struct lane *lane_free(struct lane *l) {
        if (!l)
                return NULL;
        if (l->multi && l->easy)
                curl_multi_remove_handle(l->multi, l->easy);
        if (l->easy)
                curl_easy_cleanup(l->easy);
        if (l->multi)
                curl_multi_cleanup(l->multi);
        free(l->origin);
        free(l);
        return NULL;
}

/* "scheme://host:port" of url, or NULL. */
static char *url_origin(const char *url) {
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
        if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
            asprintf(&out, "%s://%s:%s", scheme, host, port) < 0)
                out = NULL;
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        return out;
}

/* An idle lane, one that last talked to origin if there is one; else a new one. */
static struct lane *lane_get(struct http_client *c, const char *origin) {
        pthread_mutex_lock(&c->lock);
        struct lane **pick = NULL;
        for (struct lane **l = &c->idle; *l; l = &(*l)->next)
                if (!pick || (origin && (*l)->origin && strcmp((*l)->origin, origin) == 0)) {
                        pick = l;
                        if (origin && (*l)->origin && strcmp((*l)->origin, origin) == 0)
                                break;
                }
        struct lane *got = NULL;
        if (pick) {
                got = *pick;
                *pick = got->next;
                got->next = NULL;
                c->n_idle--;
        }
        pthread_mutex_unlock(&c->lock);
        if (got)
                return got;

        got = calloc(1, sizeof(*got));
        if (!got)
                return NULL;
        errno = 0;
        got->multi = curl_multi_init(); /* its wake-up socketpair takes two descriptors */
        got->easy = curl_easy_init();
        if (!got->multi || !got->easy ||
            curl_multi_setopt(got->multi, CURLMOPT_MAXCONNECTS, LANE_MAXCONNECTS) != CURLM_OK)
                return lane_free(got);
        return got;
}

static void lane_put(struct http_client *c, struct lane *l, char *origin) {
        free(l->origin);
        l->origin = origin;
        curl_easy_reset(l->easy);
        pthread_mutex_lock(&c->lock);
        if (c->n_idle < HTTP_LANES_IDLE_MAX) {
                l->next = c->idle;
                c->idle = l;
                c->n_idle++;
                l = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        lane_free(l);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *userdata) {
        struct http_client *c = userdata;
        (void) h, (void) access;
        if (data >= 0 && data < CURL_LOCK_DATA_LAST)
                pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userdata) {
        struct http_client *c = userdata;
        (void) h;
        if (data >= 0 && data < CURL_LOCK_DATA_LAST)
                pthread_mutex_unlock(&c->share_locks[data]);
}

int http_client_new(struct http_client **ret) {
        struct http_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        for (size_t i = 0; i < ELEMENTSOF(c->share_locks); i++)
                pthread_mutex_init(&c->share_locks[i], NULL);
        c->share = curl_share_init();
        if (!c->share || curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
            curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
            curl_share_setopt(c->share, CURLSHOPT_USERDATA, c) != CURLSHE_OK ||
            curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
            curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
                http_client_free(c);
                return -EIO;
        }
        *ret = c;
        return 0;
}

struct http_client *http_client_free(struct http_client *c) {
        if (!c)
                return NULL;
        while (c->idle) {
                struct lane *l = c->idle;
                c->idle = l->next;
                lane_free(l);
        }
        /* Lanes hold references into the share: they go first. */
        if (c->share)
                curl_share_cleanup(c->share);
        for (size_t i = 0; i < ELEMENTSOF(c->share_locks); i++)
                pthread_mutex_destroy(&c->share_locks[i]);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

int http_perform(struct http_client *c, const struct http_request *req, struct http_response *ret) {
        char errbuf[CURL_ERROR_SIZE] = "";
        struct exchange x = { .req = req, .resp = ret };
        int r = 0;

        http_response_done(ret);
        char *origin = url_origin(req->url);
        struct lane *lane = lane_get(c, origin);
        if (!lane) {
                /* Out of descriptors is not out of memory: say which (fallback.c blames no endpoint for either). */
                int e = errno == EMFILE || errno == ENFILE ? -errno : -ENOMEM;
                free(origin);
                set_reason(ret, "no connection to the upstream: %s", strerror(-e));
                return e;
        }
        CURL *h = lane->easy;
        CURLM *m = lane->multi;
        x.easy = h;
        r = setup(h, c->share, req, &x, errbuf);
        if (r < 0)
                goto out;
        if (curl_multi_add_handle(m, h) != CURLM_OK) {
                r = -ENOMEM;
                goto out;
        }

        /* Our own loop rather than curl_easy_perform(): libcurl has no "time
         * to response headers" limit, and its low-speed check has one-second
         * granularity; here every deadline is noticed within POLL_MAX_MS. */
        CURLcode result = CURLE_OK;
        bool finished = false;
        for (;;) {
                int running = 0;
                if (curl_multi_perform(m, &running) != CURLM_OK) {
                        r = -ENOMEM;
                        break;
                }
                CURLMsg *msg;
                int left;
                while ((msg = curl_multi_info_read(m, &left)))
                        if (msg->msg == CURLMSG_DONE) {
                                result = msg->data.result;
                                finished = true;
                        }
                if (finished || running == 0)
                        break;

                uint64_t now = time_now_ms(), wake = now + POLL_MAX_MS;
                if (req->cancelled && req->cancelled(req->cancel_userdata)) {
                        r = -ECANCELED;
                        set_reason(ret, "cancelled");
                        break;
                }
                if (req->deadline_ms && now >= req->deadline_ms) {
                        r = -ETIMEDOUT;
                        set_reason(ret, "deadline reached");
                        break;
                }
                if (x.sent_at && !x.headers_done && now - x.sent_at >= req->response_timeout_ms) {
                        r = -ETIMEDOUT;
                        set_reason(ret, "no response within %" PRIu64 " ms", req->response_timeout_ms);
                        break;
                }
                /* An error body is not waited for beyond ERROR_BODY_WAIT_MS either,
                 * trickling or stalled: the status is the answer (taken before the
                 * idle timeout could turn it into a failure). */
                uint64_t grace = req->idle_timeout_ms < ERROR_BODY_WAIT_MS ? req->idle_timeout_ms : ERROR_BODY_WAIT_MS;
                if (x.headers_done && (ret->status < 200 || ret->status > 299) && now - x.headers_at >= grace) {
                        x.error_body_cut = true;
                        break;
                }
                if (x.headers_done && now - x.last_byte_at >= req->idle_timeout_ms) {
                        r = -ETIME;
                        set_reason(ret, "stalled: no byte for %" PRIu64 " ms after %" PRIu64 " body bytes",
                                   req->idle_timeout_ms, ret->body_bytes);
                        break;
                }
                if (req->deadline_ms && req->deadline_ms < wake)
                        wake = req->deadline_ms;
                if (curl_multi_poll(m, NULL, 0, (int) (wake - now), NULL) != CURLM_OK) {
                        r = -ENOMEM;
                        break;
                }
        }
        if (x.peer_refused) {
                r = -EPERM;
                set_reason(ret, "%s is a %s address", ret->peer_ip, fallback_addr_class_name(ret->peer_class));
        } else if (r == 0 && finished && result == CURLE_COULDNT_CONNECT &&
                   (x.socket_errno == EMFILE || x.socket_errno == ENFILE || x.socket_errno == ENOBUFS ||
                    x.socket_errno == ENOMEM)) {
                /* This process ran out of something (descriptors, memory): the upstream did nothing wrong. */
                r = x.socket_errno == EMFILE || x.socket_errno == ENFILE ? -x.socket_errno : -ENOMEM;
                set_reason(ret, "no socket for the upstream: %s", strerror(x.socket_errno));
        } else if (r == 0 && x.error_body_cut) {
                /* The headers are the answer; the rest of an error body is nobody's business. */
        } else if (r == 0 && finished && result != CURLE_OK) {
                if (x.body_error < 0) {
                        r = x.body_error;
                        set_reason(ret, "aborted by the receiver: %s", strerror(-r));
                } else {
                        r = map_curl_error(result);
                        if (r == -ETIMEDOUT && !x.sent_at)
                                set_reason(ret, "connect timeout: %s", errbuf[0] ? errbuf : curl_easy_strerror(result));
                        else
                                set_reason(ret, "%s", errbuf[0] ? errbuf : curl_easy_strerror(result));
                }
        } else if (r == 0 && !finished) {
                r = -ECONNABORTED;
                set_reason(ret, "transfer ended without a result");
        }
        /* A transfer cut short by us leaves its connection unusable; libcurl
         * closes it on removal rather than putting it back in the cache. */
        curl_multi_remove_handle(m, h);
out:
        lane_put(c, lane, origin); /* resets the handle: it no longer points at own_headers */
        http_headers_free_wiped(x.own_headers);
        return r;
}
