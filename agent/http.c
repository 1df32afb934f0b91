/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP front end of the pull API (libmicrohttpd): what containerd (and
 * skopeo, podman) ask a mirror for, routed (route.c) to the pull core.
 *
 * What containerd needs from a mirror (remotes/docker/resolver.go,
 * fetcher.go), and so what every route here guarantees:
 * - the first request is HEAD /v2/<name>/manifests/<tag>?ns=<registry>; the
 *   answer carries Docker-Content-Digest and Content-Length;
 * - a mirror that cannot serve answers fast with 404 or 503 and containerd
 *   moves on to its next host; it never gets a 429 (containerd retries those
 *   on the same host) and never waits without bound (containerd has no
 *   response timeout): upstream waits are bounded and turn into 503;
 * - a 200 carries exactly the content: manifests are verified before a byte
 *   is sent; a blob streamed while it downloads keeps its last byte back
 *   until its digest verified (cache_reader_read()), and on a mismatch the
 *   connection is cut (containerd does not fall back after a mismatch);
 * - Range answers are 206 with Content-Range (containerd resumes with
 *   "Range: bytes=N-", from its first host again); a range to the blob's end
 *   streams like a whole blob, one that ends earlier is only answered once
 *   the blob verified (range_ends_early()): a digest proves nothing about a
 *   prefix, and lazy-pulling clients read such ranges.
 *
 * Threads: libmicrohttpd runs a small pool of event-loop threads, which
 * answer everything that needs no upstream at once (cache hits: sendfile
 * from the blob, manifests from memory). A request that has to wait for an
 * upstream (a miss, a tag to revalidate, a HEAD of an uncached blob) is
 * suspended and handed to a thread of its own (defer()), which prepares the
 * answer and resumes it. A blob streamed while it downloads is read without
 * waiting; when nothing is there yet the connection is suspended and the
 * stream's waker thread resumes it when bytes arrive. So idle and cached
 * connections cost no thread: 256 of them, about 8 KiB each (their request memory). */
#include "agent/http.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/host.h"
#include "agent/log.h"
#include "agent/pull-internal.h"
#include "agent/route.h"
#include "agent/stream.h"
#include "common/digest.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/range.h"
#include "common/reference.h"
#include "common/time.h"

#define ACCEPT_MAX 1024

/* One request, for its log line. */
struct request {
        /* Deferral (defer()): the first pass runs on MHD's event loop with
         * may_block false; where it would wait it sets would_block instead,
         * and a worker thread runs the request again with may_block true. Its
         * answer (deferred: queue() keeps it here) is queued on resumption. */
        bool may_block, would_block, deferred, worker_done;
        bool holds_wait; /* one of agent.max_upstream_waits: the worker's, or its stream's once made */
        struct MHD_Response *prepared;
        unsigned prepared_status;
        struct MHD_Connection *conn;
        struct pull *pull;
        char *url;
        bool head;

        uint64_t started_ms;
        uint64_t started_ns, answered_ns; /* the head in; the last answer made (agent/reqmetrics.h) */
        char registry[REFERENCE_NAME_MAX + 1]; /* the mirrored registry's host as the spec has it, or "" */
        enum route route;
        const char *method;
        char ns[REFERENCE_NAME_MAX + 1];
        char repo[REFERENCE_NAME_MAX + 1];
        char ref[ROUTE_REFERENCE_MAX];
        unsigned status;
        const char *outcome; /* hit, miss, join, stale, upstream, - */
        char endpoint[PULL_ENDPOINT_MAX];
        atomic_uint_fast64_t bytes;
        uint64_t length; /* body bytes promised (fd and buffer responses) */
        char reason[OUTCOME_REASON_MAX]; /* why, for an error answer */
        bool streamed;
        bool has_body;
        /* Pass-through (agent/access.c): the client's credentials (secret: wiped in
         * http_completed(); parsed only for a private repository), the registry they
         * may go to, what the log line says. */
        struct client_auth client;
        const struct spec_registry *reg; /* while registry_route() holds the spec; else NULL */
        enum access_use auth;
        enum access_how verdict;
};

/* ---- responses ---------------------------------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *conn, struct request *rq, unsigned status,
                             struct MHD_Response *resp) {
        if (!resp)
                return MHD_NO;
        rq->status = status;
        rq->answered_ns = time_now_ns();
        bool ok = MHD_add_response_header(resp, "Docker-Distribution-API-Version", "registry/2.0") == MHD_YES;
        if (ok && rq->deferred) {
                /* On a worker: queued by pull_handle() once the connection is resumed. */
                if (rq->prepared)
                        MHD_destroy_response(rq->prepared);
                rq->prepared = resp;
                rq->prepared_status = status;
                return MHD_YES;
        }
        enum MHD_Result r = ok ? MHD_queue_response(conn, status, resp) : MHD_NO;
        MHD_destroy_response(resp);
        return r;
}

/* The first pass of a request that has to wait: ends it; defer() runs it again. */
static enum MHD_Result would_block(struct request *rq) {
        rq->would_block = true;
        return MHD_YES;
}

/* Distribution spec error body: {"errors":[{"code":"...","message":"..."}]}. */
static enum MHD_Result respond_error(struct MHD_Connection *conn, struct request *rq, unsigned status,
                                     const char *code, const char *fmt, ...) _printf_(5, 6);
static enum MHD_Result respond_error(struct MHD_Connection *conn, struct request *rq, unsigned status,
                                     const char *code, const char *fmt, ...) {
        char msg[OUTCOME_REASON_MAX], body[2 * OUTCOME_REASON_MAX];
        va_list ap;
        va_start(ap, fmt);
        /* Quoted as for a log line: no quote, backslash or control byte is left to escape in JSON. */
        log_vquotef(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        snprintf(rq->reason, sizeof(rq->reason), "%s", msg);
        int n = snprintf(body, sizeof(body), "{\"errors\":[{\"code\":\"%s\",\"message\":\"%s\"}]}", code, msg);
        struct MHD_Response *resp = MHD_create_response_from_buffer((size_t) n, body, MHD_RESPMEM_MUST_COPY);
        if (resp && (MHD_add_response_header(resp, "Content-Type", "application/json") != MHD_YES ||
                     (status == MHD_HTTP_METHOD_NOT_ALLOWED &&
                      MHD_add_response_header(resp, "Allow", "GET, HEAD") != MHD_YES))) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        rq->length = (uint64_t) n;
        /* containerd answers a Basic challenge with the pull's credentials (docs/agent.md). */
        if (status == MHD_HTTP_UNAUTHORIZED &&
            MHD_add_response_header(resp, "WWW-Authenticate", "Basic realm=\"layerd\"") != MHD_YES) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        return queue(conn, rq, status, resp);
}

/* 401 with a Basic challenge: the repository is private and the request's
 * credentials are missing or were refused by the origin. */
static enum MHD_Result respond_challenge(struct MHD_Connection *conn, struct request *rq, const char *why) {
        rq->auth = ACCESS_USE_CHALLENGE;
        return respond_error(conn, rq, MHD_HTTP_UNAUTHORIZED, "UNAUTHORIZED", "%s", why);
}

static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max) {
        (void) cls, (void) pos, (void) buf, (void) max;
        return MHD_CONTENT_READER_END_WITH_ERROR;
}

/* A HEAD answer for an object of size bytes whose body layerd does not hold:
 * MHD sends the headers of a response of that size and never asks for bytes. */
static struct MHD_Response *head_response(uint64_t size) {
        return MHD_create_response_from_callback(size, 4096, no_body, NULL, NULL);
}

static bool add_object_headers(struct MHD_Response *resp, const struct digest *d, const char *media_type) {
        char ds[DIGEST_STRING_MAX], etag[DIGEST_STRING_MAX + 2];
        digest_to_string(d, ds);
        snprintf(etag, sizeof(etag), "\"%s\"", ds);
        return MHD_add_response_header(resp, "Docker-Content-Digest", ds) == MHD_YES &&
               MHD_add_response_header(resp, "ETag", etag) == MHD_YES &&
               MHD_add_response_header(resp, "Content-Type", media_type ? media_type : "application/octet-stream") ==
                       MHD_YES;
}

/* A body held for a response, with its share of the pull's budget: both are
 * given back when MHD is done with the response (a client that does not read
 * keeps them until its connection ends). */
struct held_body {
        void *body;
        struct budget_hold held;
};

static void held_body_free(void *cls) {
        struct held_body *hb = cls;
        free(hb->body);
        budget_hold_release(&hb->held);
        free(hb);
}

/* A response of size bytes at *body, which it takes over with *held (both
 * left empty) on success; NULL (nothing taken) when out of memory. */
static struct MHD_Response *response_from_held(size_t size, void **body, struct budget_hold *held) {
        struct held_body *hb = malloc(sizeof(*hb));
        if (!hb)
                return NULL;
        *hb = (struct held_body) { .body = *body, .held = *held };
        struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(size, *body,
                                                                                         held_body_free, hb);
        if (!resp) {
                free(hb);
                return NULL;
        }
        *body = NULL;
        *held = (struct budget_hold) {};
        return resp;
}

/* A manifest answer: from the cache's file (sendfile; nothing held per
 * connection but the descriptor), else from its bytes, which the response
 * takes over with their share of the budget. */
static enum MHD_Result respond_manifest(struct MHD_Connection *conn, struct request *rq, bool head,
                                        struct manifest_answer *a) {
        struct MHD_Response *resp;
        if (head || (a->fd < 0 && !a->body))
                resp = head_response(a->size);
        else if (a->fd >= 0) {
                resp = MHD_create_response_from_fd_at_offset64(a->size, a->fd, 0);
                if (resp)
                        a->fd = -1; /* MHD's now */
        } else
                resp = response_from_held((size_t) a->size, &a->body, &a->held);
        if (resp && !add_object_headers(resp, &a->digest, a->media_type)) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        rq->length = head ? 0 : a->size;
        return queue(conn, rq, MHD_HTTP_OK, resp);
}

/* ---- requests ------------------------------------------------------------------------- */

struct accept_buf {
        char text[ACCEPT_MAX];
        size_t len;
};

/* skopeo and podman send one Accept line per media type: merge them. */
static enum MHD_Result collect_accept(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        struct accept_buf *a = cls;
        (void) kind;
        if (!key || strcasecmp(key, "Accept") != 0 || !value || !value[0])
                return MHD_YES;
        size_t add = strlen(value);
        if (a->len + add + 3 > sizeof(a->text))
                return MHD_YES; /* what does not fit is not asked for */
        if (a->len > 0) {
                memcpy(a->text + a->len, ", ", 2);
                a->len += 2;
        }
        memcpy(a->text + a->len, value, add + 1);
        a->len += add;
        return MHD_YES;
}


/* The one place where what the core says becomes a status code. manifest
 * picks the error code's noun (MANIFEST_UNKNOWN or BLOB_UNKNOWN). A mirror
 * that cannot serve answers fast with 404 (not found: containerd tries its
 * next host) or 503 (unavailable: the same), never 429 and never a wait
 * without bound. */
static enum MHD_Result respond_outcome(struct MHD_Connection *conn, struct request *rq, const struct outcome *o,
                                       bool manifest) {
        if (o->error == -ENOBUFS) {
                /* Once per request, here, whichever holder refused it. */
                atomic_fetch_add(&rq->pull->budget_refusals, 1);
                log_warning("refused, %s: ns=%s repo=%s ref=%s held=%" PRIu64 " limit=%" PRIu64, OUTCOME_BUDGET_REASON,
                            rq->ns, rq->repo[0] ? rq->repo : "-", rq->ref[0] ? rq->ref : "-",
                            budget_held(&rq->pull->budget), budget_limit(&rq->pull->budget));
        }
        if (o->auth_refused && rq->reg && rq->reg->auth_passthrough && rq->repo[0]) {
                /* The origin asked for credentials, or refused the ones sent. */
                access_refused(rq->pull, rq->reg->host, rq->repo, &rq->client);
                return respond_challenge(conn, rq, rq->client.set ? "the origin refused the credentials"
                                                                  : "the repository needs credentials");
        }
        switch (o->kind) {
        case OUTCOME_NOT_FOUND:
                return respond_error(conn, rq, MHD_HTTP_NOT_FOUND, manifest ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN", "%s",
                                     o->reason);
        case OUTCOME_BAD_REQUEST:
                return respond_error(conn, rq, MHD_HTTP_BAD_REQUEST, manifest ? "MANIFEST_INVALID" : "DIGEST_INVALID",
                                     "%s", o->reason);
        case OUTCOME_FOUND: /* not an error: a caller's slip, answered as one */
        case OUTCOME_UNAVAILABLE:
        default:
                return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "%s", o->reason);
        }
}

struct target {
        const struct spec_registry *reg;
        const struct client_auth *client; /* toward the origin, or NULL (agent/access.c) */
        bool private_repo;
        bool finish_abandoned;
        char repo[REFERENCE_NAME_MAX + 1];
        const char *accept;
};

/* ---- manifests and blobs -------------------------------------------------------------- */

static enum MHD_Result manifest(struct pull *p, struct MHD_Connection *conn, struct request *rq,
                                const struct target *t, bool head, const struct route_match *rt) {
        struct manifest_query q = { .registry = t->reg->host, .repository = t->repo,
                                    .tag = rt->by_digest ? NULL : rq->ref, .digest = rt->digest, .accept = t->accept,
                                    .tag_ttl_ms = t->reg->tag_ttl_ms, .head = head, .may_block = rq->may_block,
                                    .want_fd = true, .client = t->client,
                                    .private_repo = t->private_repo };
        struct manifest_answer a = { .fd = -1 };
        struct outcome o;
        int r = manifest_resolve(p, &q, &a, &o);
        if (r == -EWOULDBLOCK)
                return would_block(rq);
        rq->outcome = a.cache;
        if (a.endpoint[0])
                snprintf(rq->endpoint, sizeof(rq->endpoint), "%s", a.endpoint);
        if (r < 0)
                return respond_outcome(conn, rq, &o, true);
        enum MHD_Result ret = respond_manifest(conn, rq, head, &a);
        manifest_answer_done(&a);
        return ret;
}

/* A HEAD of a blob not in the cache needs no bytes: ask upstream, cache nothing. */
static enum MHD_Result blob_head_upstream(struct pull *p, struct MHD_Connection *conn, struct request *rq,
                                          const struct target *t, const struct digest *d) {
        struct fallback_request req = pull_upstream_request(p, t->reg->host, t->repo, FALLBACK_BLOB, rq->ref, true);
        struct fallback_client_auth view;
        req.client_auth = access_client_view(t->client, &view);
        struct fallback_response fr;
        struct outcome o;
        int r = outcome_from_upstream(&o, fallback_fetch(p->fb, &req, &fr), &fr);
        rq->outcome = "miss";
        if (fr.endpoint)
                snprintf(rq->endpoint, sizeof(rq->endpoint), "%s", fr.endpoint);
        if (r == 0 && fr.size < 0)
                outcome_set(&o, -EHOSTUNREACH, "upstream did not say the blob's size");
        int64_t size = fr.size;
        fallback_response_done(&fr);
        if (o.error < 0)
                return respond_outcome(conn, rq, &o, false);
        struct MHD_Response *resp = head_response((uint64_t) size);
        if (resp && (!add_object_headers(resp, d, NULL) ||
                     MHD_add_response_header(resp, "Accept-Ranges", "bytes") != MHD_YES)) {
                MHD_destroy_response(resp);
                resp = NULL;
        }
        return queue(conn, rq, MHD_HTTP_OK, resp);
}

/* 416, saying how big the blob is (RFC 9110 section 15.5.17). */
static enum MHD_Result respond_unsatisfiable(struct MHD_Connection *conn, struct request *rq, uint64_t size) {
        char cr[CONTENT_RANGE_MAX];
        snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        if (resp && MHD_add_response_header(resp, "Content-Range", cr) != MHD_YES) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        return queue(conn, rq, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
}

static enum MHD_Result respond_blob_fd(struct MHD_Connection *conn, struct request *rq, struct pull *p, bool head,
                                       int fd, uint64_t size, const struct digest *d) {
        const char *range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Range");
        uint64_t start = 0, length = size;
        unsigned status = MHD_HTTP_OK;
        int r = range && !head ? range_parse(range, size, &start, &length) : -EINVAL;
        if (r == -ERANGE) {
                close(fd);
                return respond_unsatisfiable(conn, rq, size);
        }
        if (r == 0)
                status = MHD_HTTP_PARTIAL_CONTENT;
        else {
                start = 0;
                length = size;
        }
        struct MHD_Response *resp;
        if (head) {
                close(fd);
                resp = head_response(size);
        } else
                /* sendfile(2) from the blob's descriptor: MHD owns fd from here. */
                resp = MHD_create_response_from_fd_at_offset64(length, fd, start);
        if (!resp) {
                if (!head)
                        close(fd);
                return MHD_NO;
        }
        char cr[CONTENT_RANGE_MAX];
        snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, start + length - 1, size);
        if (!add_object_headers(resp, d, NULL) || MHD_add_response_header(resp, "Accept-Ranges", "bytes") != MHD_YES ||
            (status == MHD_HTTP_PARTIAL_CONTENT && MHD_add_response_header(resp, "Content-Range", cr) != MHD_YES)) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        rq->length = head ? 0 : length;
        if (!head)
                atomic_fetch_add(&p->bytes_served, length);
        return queue(conn, rq, status, resp);
}

/* Answers with the download h (its size known), then streams the bytes as they arrive. */
static enum MHD_Result respond_blob_stream(struct MHD_Connection *conn, struct request *rq, struct pull *p,
                                           const struct target *t, const struct download_hold *h,
                                           const struct digest *d, uint64_t size) {
        const char *range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Range");
        uint64_t start = 0, length = size;
        int k = range ? range_parse(range, size, &start, &length) : -EINVAL;
        if (k == -ERANGE)
                return respond_unsatisfiable(conn, rq, size);
        if (k < 0) {
                start = 0;
                length = size;
        }
        struct stream_params sp = { .pull = p, .conn = conn, .sent = &rq->bytes, .endpoint = rq->endpoint,
                                    .endpoint_size = sizeof(rq->endpoint), .registry = t->reg->host,
                                    .repository = t->repo, .digest = *d, .start = start, .length = length,
                                    .size = size, .holds_wait = rq->holds_wait };
        struct stream *s = NULL;
        int r = stream_new(&sp, h, &s);
        if (r == -ENOBUFS) {
                struct outcome o;
                download_outcome(r, &o);
                return respond_outcome(conn, rq, &o, false);
        }
        if (r < 0)
                return MHD_NO;
        rq->holds_wait = false; /* the stream's now: it waits for the download (its waker) until it ends */
        struct MHD_Response *resp = MHD_create_response_from_callback(length, STREAM_BLOCK, stream_read, s, stream_free);
        if (!resp) {
                stream_free(s);
                return MHD_NO;
        }
        char cr[CONTENT_RANGE_MAX];
        snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, start + length - 1, size);
        if (!add_object_headers(resp, d, NULL) || MHD_add_response_header(resp, "Accept-Ranges", "bytes") != MHD_YES ||
            (k == 0 && MHD_add_response_header(resp, "Content-Range", cr) != MHD_YES)) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        rq->streamed = true;
        rq->length = length;
        return queue(conn, rq, k == 0 ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, resp);
}

/* Whether the client's Range ends before the blob's last byte. While the
 * blob downloads, the follow reader holds back only the last byte until the
 * digest verified: a range that ends earlier would be a complete answer of
 * bytes nothing vouches for (a SHA-256 proves nothing about a prefix). So it
 * is answered only once the blob verified. A range to the end (containerd's
 * resume, "bytes=N-") streams as it downloads. */
static bool range_ends_early(struct MHD_Connection *conn, uint64_t size) {
        const char *range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Range");
        uint64_t start = 0, length = 0;
        return range && range_parse(range, size, &start, &length) == 0 && start + length < size;
}

/* 503 for a range of a blob whose bytes are not verified (see range_ends_early()). */
static enum MHD_Result respond_unverified_range(struct MHD_Connection *conn, struct request *rq, const char *why) {
        return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                             "a range that ends before the blob's end is only sent once the blob verified: %s", why);
}

/* The cache cannot take the blob (its disk is full, say): a download of it
 * through memory for this client alone, answered once its size is known. */
static enum MHD_Result respond_blob_through(struct MHD_Connection *conn, struct request *rq, struct pull *p,
                                            const struct target *t, const struct digest *d) {
        char ds[DIGEST_STRING_MAX];
        log_notice("the cache cannot take the blob, streaming through: ns=%s repo=%s digest=%s", t->reg->host, t->repo,
                   digest_to_string(d, ds));
        rq->outcome = "through";
        struct download_want w = { .registry = t->reg->host, .repository = t->repo, .digest = *d, .size = -1,
                                   .client = t->client };
        struct download_hold h = {};
        uint64_t size = 0;
        int r = download_start_unstored(p, &w, &h);
        if (r >= 0)
                r = cache_entry_wait_size(h.entry, HEADER_WAIT_MS, &size);
        enum MHD_Result ret;
        if (r < 0) {
                struct outcome o;
                download_outcome(r, &o);
                ret = respond_outcome(conn, rq, &o, false);
        } else if (range_ends_early(conn, size))
                /* Nothing is stored: no verified file to answer the range from. */
                ret = respond_unverified_range(conn, rq, "the cache cannot take it");
        else
                ret = respond_blob_stream(conn, rq, p, t, &h, d, size);
        download_release(&h); /* the stream follows it, if it was made */
        return ret;
}

/* The request's Authorization header (not parsed here: agent/access.c), or NULL. */
static const char *authorization(struct MHD_Connection *conn) {
        return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
}

/* The answer to an access check that did not allow the request. */
static enum MHD_Result respond_access(struct MHD_Connection *conn, struct request *rq, enum access_verdict v,
                                      const struct outcome *o, bool manifest) {
        switch (v) {
        case ACCESS_WOULD_BLOCK:
                return would_block(rq);
        case ACCESS_CHALLENGE:
                return respond_challenge(conn, rq, o->reason);
        default:
                return respond_outcome(conn, rq, o, manifest);
        }
}

/* The blob d is coming from (or came from) a download another repository's or
 * other credentials' request started: this request's check passed before that
 * request's download recorded d as private (download.c, at the origin's
 * answer), so it is checked again: a private digest is then confirmed by the
 * origin under this request's name. Blocks: a worker thread's. */
static bool joined_allowed(struct pull *p, struct MHD_Connection *conn, struct request *rq, const struct target *t,
                           const struct digest *d, enum MHD_Result *ret) {
        char ds[DIGEST_STRING_MAX];
        struct access_query q = { .reg = t->reg, .repository = t->repo, .kind = FALLBACK_BLOB,
                                  .reference = digest_to_string(d, ds), .digest = d, .client = &rq->client,
                                  .authorization = authorization(conn), .may_block = true };
        struct access_answer acc;
        struct outcome o;
        enum access_verdict v = access_check(p, &q, &acc, &o);
        if (acc.how != ACCESS_HOW_NONE)
                rq->verdict = acc.how;
        if (v == ACCESS_ALLOW)
                return true;
        *ret = respond_access(conn, rq, v, &o, false);
        return false;
}

static enum MHD_Result blob(struct pull *p, struct MHD_Connection *conn, struct request *rq, const struct target *t,
                            bool head, const struct digest *d) {
        struct download_want w = { .registry = t->reg->host, .repository = t->repo, .digest = *d, .size = -1,
                                   .finish_abandoned = t->finish_abandoned, .client = t->client,
                                   .mark_private = t->private_repo };
        bool joined_foreign = false; /* an earlier round followed another's download */
        for (unsigned round = 0; round < 3; round++) {
                int fd = -1;
                uint64_t size = 0;
                if (cache_open_blob(p->cache, d, &fd, &size) == 0) {
                        enum MHD_Result refused;
                        if (joined_foreign && !joined_allowed(p, conn, rq, t, d, &refused)) {
                                close(fd);
                                return refused;
                        }
                        rq->outcome = "hit";
                        return respond_blob_fd(conn, rq, p, head, fd, size, d);
                }
                if (!rq->may_block)
                        return would_block(rq);
                if (head)
                        return blob_head_upstream(p, conn, rq, t, d);
                /* A private repository's download records the digest before a byte of it
                 * is stored (w.mark_private, agent/private.h). */
                struct download_hold h;
                int r = download_join_or_start(p, &w, &h);
                if (r == -EEXIST)
                        continue; /* committed meanwhile: serve it from disk */
                if (r == -ESHUTDOWN || r == -ENOMEM || r == -EMFILE || r == -ENFILE)
                        /* Out of descriptors, a stream-through would fail on its socket too. */
                        return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "%s",
                                             strerror(-r));
                if (r == -EBUSY || r == -ENOBUFS) {
                        /* agent.max_downloads or agent.max_inflight_memory: 503 at once, containerd
                         * tries its next host (download.c says why). */
                        struct outcome o;
                        download_outcome(r, &o);
                        return respond_outcome(conn, rq, &o, false);
                }
                if (r < 0) {
                        /* The cache cannot start it (disk full, read-only, ...): stream through. */
                        char ds[DIGEST_STRING_MAX];
                        log_warning("cannot cache the blob: ns=%s repo=%s digest=%s: %s", t->reg->host, t->repo,
                                    digest_to_string(d, ds), strerror(-r));
                        return respond_blob_through(conn, rq, p, t, d);
                }
                rq->outcome = h.started ? "miss" : "join";
                bool foreign = h.foreign;
                joined_foreign |= foreign;
                /* Answered as soon as the size is known; the stream follows the
                 * download from there. A range that ends before the blob's end
                 * waits (this is a worker thread) for the blob to verify, the
                 * whole within the upstream wait, then comes from the file. */
                uint64_t deadline = time_deadline_ms(HEADER_WAIT_MS);
                r = cache_entry_wait_size(h.entry, HEADER_WAIT_MS, &size);
                enum MHD_Result refused;
                if (r >= 0 && foreign && !joined_allowed(p, conn, rq, t, d, &refused)) {
                        download_release(&h);
                        return refused;
                }
                bool early = r >= 0 && range_ends_early(conn, size);
                if (early)
                        r = download_wait_end(p, &h, deadline);
                enum MHD_Result ret = MHD_NO;
                if (r >= 0 && !early)
                        ret = respond_blob_stream(conn, rq, p, t, &h, d, size);
                download_release(&h);
                if (r == -EEXIST || (early && r == 0))
                        continue; /* committed (verified): serve it, the range too, from disk */
                if (foreign && (r == -EACCES || r == -ENOENT))
                        /* The origin's answer to another repository or other credentials, not
                         * to this request: never applied to it (a public repository would be
                         * recorded private). It asks for itself next round. */
                        continue;
                if (r == -ENOSPC)
                        return respond_blob_through(conn, rq, p, t, d); /* the disk filled up before the size came */
                if (early && r == -ETIMEDOUT)
                        return respond_unverified_range(conn, rq, "it is still downloading");
                if (r < 0) {
                        struct outcome o;
                        download_outcome(r, &o);
                        return respond_outcome(conn, rq, &o, false);
                }
                return ret;
        }
        return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "the blob keeps changing state");
}

/* ---- tag lists, metrics, health ----------------------------------------------------- */

/* GET /v2/<name>/tags/list[?n=&last=]: one page through the chain, as the
 * registry paginates it; the next page's link points back here. */
static enum MHD_Result tags_list(struct pull *p, struct MHD_Connection *conn, struct request *rq,
                                 const struct target *t, const char *name, const char *ns_arg) {
        const char *n_text = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "n");
        const char *last = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "last");
        uint64_t n = 0;
        if (n_text && (parse_uint(n_text, FALLBACK_TAGS_MAX, &n) < 0 || n == 0))
                return respond_error(conn, rq, MHD_HTTP_BAD_REQUEST, "PAGINATION_NUMBER_INVALID",
                                     "n must be 1 to %d", FALLBACK_TAGS_MAX);
        if (last && last[0] && !reference_tag_is_valid(last))
                return respond_error(conn, rq, MHD_HTTP_BAD_REQUEST, "TAG_INVALID", "last is not a tag");
        /* A page may have to come from upstream: never on the event loop (tag lists are rare). */
        if (!rq->may_block)
                return would_block(rq);
        _cleanup_free_ void *body = NULL;
        size_t size = 0;
        _cleanup_free_ char *next = NULL;
        _cleanup_hold_ struct budget_hold held = {};
        struct tags_access ta = { .client = &rq->client, .authorization = authorization(conn) };
        int r = tags_page(p, t->reg->host, t->repo, (unsigned) n, last && last[0] ? last : NULL, &ta, &body, &size,
                          &next, &held);
        rq->outcome = "upstream";
        rq->verdict = ta.answer.how;
        if (ta.answer.with_client)
                rq->auth = ACCESS_USE_PASSTHROUGH;
        if (r == -EACCES)
                return respond_challenge(conn, rq, ta.outcome.reason);
        if (r == -ENOENT)
                return respond_error(conn, rq, MHD_HTTP_NOT_FOUND, "NAME_UNKNOWN", "upstream knows no such repository");
        if (r == -ENOBUFS) {
                struct outcome o;
                outcome_set(&o, r, OUTCOME_BUDGET_REASON);
                return respond_outcome(conn, rq, &o, false);
        }
        if (r < 0)
                return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "no upstream answered: %s",
                                     strerror(-r));
        struct MHD_Response *resp = response_from_held(size, &body, &held);
        if (!resp)
                return MHD_NO;
        bool ok = MHD_add_response_header(resp, "Content-Type", "application/json") == MHD_YES;
        if (ok && next) {
                /* name, ns and tags are validated: nothing here needs escaping. */
                _cleanup_free_ char *link = NULL;
                char n_part[32] = "";
                if (n)
                        snprintf(n_part, sizeof(n_part), "n=%" PRIu64 "&", n);
                ok = asprintf(&link, "</v2/%s/tags/list?%slast=%s%s%s>; rel=\"next\"", name, n_part, next,
                              ns_arg ? "&ns=" : "", ns_arg ? ns_arg : "") >= 0 &&
                     MHD_add_response_header(resp, "Link", link) == MHD_YES;
        }
        if (!ok) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        rq->length = size;
        return queue(conn, rq, MHD_HTTP_OK, resp);
}

/* GET /v2/<name>/referrers/<digest>[?artifactType=]: the OCI 1.1 referrers
 * index (agent/referrers.c). The filter is applied here, on the whole index
 * that is cached, whatever the registry could do: so the answer always says
 * OCI-Filters-Applied, as the spec asks of a registry that filtered. */
static enum MHD_Result referrers(struct pull *p, struct MHD_Connection *conn, struct request *rq,
                                 const struct target *t, bool head, const struct route_match *rt) {
        const char *at = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "artifactType");
        if (at && !at[0])
                at = NULL;
        if (at && (strlen(at) >= CACHE_MEDIA_TYPE_MAX || strpbrk(at, "\"\\\r\n")))
                return respond_error(conn, rq, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED", "artifactType is not a media type");
        struct referrers_query q = { .registry = t->reg->host, .repository = t->repo, .subject = rt->digest,
                                     .tag_ttl_ms = t->reg->tag_ttl_ms, .may_block = rq->may_block,
                                     .client = t->client, .private_repo = t->private_repo };
        struct referrers_answer a;
        struct outcome o;
        int r = referrers_resolve(p, &q, &a, &o);
        if (r == -EWOULDBLOCK)
                return would_block(rq);
        rq->outcome = a.cache;
        if (a.endpoint[0])
                snprintf(rq->endpoint, sizeof(rq->endpoint), "%s", a.endpoint);
        if (r < 0) {
                referrers_answer_done(&a);
                return respond_outcome(conn, rq, &o, true);
        }
        if (at) {
                /* The filtered index is never bigger than what its hold was taken for, but for escapes. */
                char *filtered = NULL;
                size_t size = 0;
                r = fallback_referrers_filter(a.body, a.size, at, &filtered, &size);
                if (r < 0) {
                        referrers_answer_done(&a);
                        return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                             "cannot filter the referrers index: %s", strerror(-r));
                }
                free(a.body);
                a.body = filtered;
                a.size = size;
        }
        struct MHD_Response *resp = head ? head_response(a.size) : response_from_held(a.size, &a.body, &a.held);
        bool ok = resp && MHD_add_response_header(resp, "Content-Type", FALLBACK_REFERRERS_MEDIA_TYPE) == MHD_YES &&
                  (!at || MHD_add_response_header(resp, "OCI-Filters-Applied", "artifactType") == MHD_YES);
        rq->length = head ? 0 : a.size;
        referrers_answer_done(&a);
        if (!ok) {
                if (resp)
                        MHD_destroy_response(resp);
                return MHD_NO;
        }
        return queue(conn, rq, MHD_HTTP_OK, resp);
}

static enum MHD_Result respond_metrics(struct pull *p, struct MHD_Connection *conn, struct request *rq) {
        char *data = NULL;
        size_t len = 0;
        if (metrics_text(p, &data, &len) < 0)
                return MHD_NO;
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(data);
                return MHD_NO;
        }
        if (MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4") != MHD_YES) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        rq->length = len;
        return queue(conn, rq, MHD_HTTP_OK, resp);
}

static enum MHD_Result respond_text(struct MHD_Connection *conn, struct request *rq, unsigned status,
                                    const char *text) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), (void *) text,
                                                                    MHD_RESPMEM_PERSISTENT);
        if (resp && MHD_add_response_header(resp, "Content-Type", "text/plain") != MHD_YES) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        rq->length = strlen(text);
        return queue(conn, rq, status, resp);
}

/* ---- dispatch -------------------------------------------------------------------------- */

static enum MHD_Result respond_ready(struct pull *p, struct MHD_Connection *conn, struct request *rq) {
        const char *why = metrics_not_ready(p);
        if (!why)
                return respond_text(conn, rq, MHD_HTTP_OK, "ready\n");
        return respond_text(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, why);
}

/* Pass-through: whether the request may go on (t->client and
 * t->private_repo then set); else the answer made, or the request
 * deferred, in *ret. The client's credentials are read only where they
 * count (agent/access.c). */
static bool access_allowed(struct pull *p, struct MHD_Connection *conn, struct request *rq, struct target *t,
                           const struct route_match *rt, enum MHD_Result *ret) {
        struct access_query q = { .reg = t->reg, .repository = t->repo,
                                  .kind = rt->kind == ROUTE_BLOB ? FALLBACK_BLOB : FALLBACK_MANIFEST,
                                  .reference = rq->ref,
                                  .digest = rt->kind == ROUTE_BLOB || rt->by_digest ? &rt->digest : NULL,
                                  .client = &rq->client, .authorization = authorization(conn),
                                  .may_block = rq->may_block };
        struct access_answer acc;
        struct outcome o;
        enum access_verdict v = access_check(p, &q, &acc, &o);
        rq->verdict = acc.how;
        if (v != ACCESS_ALLOW) {
                *ret = respond_access(conn, rq, v, &o, rt->kind != ROUTE_BLOB);
                return false;
        }
        t->client = acc.with_client ? &rq->client : NULL;
        t->private_repo = acc.private_repo;
        if (t->client)
                rq->auth = ACCESS_USE_PASSTHROUGH;
        return true;
}

static const char *namespace_registry(const char *component, void *ctx) {
        const struct spec_registry *r = spec_find_registry_namespace(ctx, component);
        return r ? r->host : NULL;
}

/* A request for a registry's content: with the spec in force (held until the answer is made). */
static enum MHD_Result registry_route(struct pull *p, struct MHD_Connection *conn, bool head, struct request *rq,
                                      struct route_match *rt, const char *ns_arg) {
        struct spec_ref *sr = spec_ref_get(p);
        const struct spec *s = sr->spec;
        /* A tag list's next page is asked for by the path the client used. */
        char path_name[sizeof(rt->name)];
        memcpy(path_name, rt->name, sizeof(path_name));
        /* Without ns: "/v2/<registry namespace>/<repository>" first (docs/agent.md), then the default. */
        if (!rt->registry && route_namespace(rt, namespace_registry, (void *) s))
                snprintf(rq->ns, sizeof(rq->ns), "%s", rt->registry);
        else if (!rt->registry && s->agent.default_registry) {
                rt->registry = s->agent.default_registry;
                snprintf(rq->ns, sizeof(rq->ns), "%s", rt->registry);
        }
        struct target t = { .reg = rt->registry ? spec_find_registry(s, rt->registry) : NULL,
                            .finish_abandoned = s->agent.finish_abandoned_downloads };
        enum MHD_Result ret;
        /* No open proxy: only registries the spec mirrors are ever asked. */
        if (!t.reg || !t.reg->mirror || strcmp(t.reg->host, SPEC_DEFAULT_REGISTRY) == 0) {
                ret = respond_error(conn, rq, MHD_HTTP_NOT_FOUND, "NAME_UNKNOWN", "registry %s is not mirrored here",
                                    rt->registry ? rq->ns : "(none: no ns parameter and no agent.default_registry)");
                goto out;
        }
        if (route_repository(rt, t.reg->host, t.repo, sizeof(t.repo)) < 0) {
                ret = respond_error(conn, rq, MHD_HTTP_BAD_REQUEST, "NAME_INVALID", "repository name too long");
                goto out;
        }
        snprintf(rq->repo, sizeof(rq->repo), "%s", t.repo);
        rq->reg = t.reg;
        snprintf(rq->registry, sizeof(rq->registry), "%s", t.reg->host); /* ns as sent may differ in case */
        struct accept_buf accept = { .len = 0 };
        MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_accept, &accept);
        t.accept = accept.len ? accept.text : NULL;

        if (rt->kind != ROUTE_TAGS) {
                enum MHD_Result done = MHD_YES;
                if (!access_allowed(p, conn, rq, &t, rt, &done)) {
                        ret = done;
                        goto out;
                }
        }

        if (rt->kind == ROUTE_TAGS)
                ret = tags_list(p, conn, rq, &t, path_name, ns_arg);
        else if (rt->kind == ROUTE_REFERRERS)
                ret = referrers(p, conn, rq, &t, head, rt);
        else if (rt->kind == ROUTE_BLOB)
                ret = blob(p, conn, rq, &t, head, &rt->digest);
        else
                ret = manifest(p, conn, rq, &t, head, rt);
out:
        rq->reg = NULL; /* the spec's, released now */
        spec_ref_put(p, sr);
        return ret;
}

/* Routes the request (agent/route.c) and answers it, or sets rq->would_block.
 * Health checks, metrics and the version check need no spec. */
static enum MHD_Result dispatch(struct pull *p, struct MHD_Connection *conn, const char *url, bool head,
                                struct request *rq) {
        const char *ns_arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ns");
        struct route_match rt;
        int r = route_parse(url, ns_arg, NULL, &rt);
        rq->route = rt.kind;
        snprintf(rq->repo, sizeof(rq->repo), "%s", rt.name);
        snprintf(rq->ref, sizeof(rq->ref), "%s", rt.reference);
        if (rt.registry)
                snprintf(rq->ns, sizeof(rq->ns), "%s", rt.registry);
        if (r < 0)
                return respond_error(conn, rq, rt.error.status, rt.error.code, "%s", rt.error.message);
        switch (rt.kind) {
        case ROUTE_V2:
                return respond_text(conn, rq, MHD_HTTP_OK, "{}");
        case ROUTE_HEALTH:
                return rt.ready ? respond_ready(p, conn, rq) : respond_text(conn, rq, MHD_HTTP_OK, "ok\n");
        case ROUTE_METRICS:
                return respond_metrics(p, conn, rq);
        default:
                return registry_route(p, conn, head, rq, &rt, ns_arg);
        }
}

static void *worker_main(void *arg) {
        struct request *rq = arg;
        struct pull *p = rq->pull;
        rq->may_block = true;
        if (dispatch(p, rq->conn, rq->url, rq->head, rq) != MHD_YES && rq->prepared) {
                MHD_destroy_response(rq->prepared);
                rq->prepared = NULL;
        }
        /* Before the resumption, after which rq may be gone. */
        if (rq->holds_wait)
                bounds_put_wait(&p->bounds);
        rq->holds_wait = false;
        rq->worker_done = true;
        MHD_resume_connection(rq->conn);
        pull_thread_end(p);
        return NULL;
}

/* The request has to wait for an upstream: suspends the connection (MHD's
 * thread goes on with others) and runs it again on a thread of its own.
 * Those threads are capped (agent.max_upstream_waits): past it the answer is
 * a 503 at once, from here. A queue would hold connections containerd cannot
 * time out, for as long as upstreams are slow; a 503 sends containerd to its
 * next host now, which is what a node without layerd does. */
static enum MHD_Result defer(struct pull *p, struct MHD_Connection *conn, const char *url, bool head,
                             struct request *rq) {
        rq->would_block = false;
        struct spec_ref *sr = spec_ref_get(p);
        unsigned max = sr->spec->agent.max_upstream_waits;
        spec_ref_put(p, sr);
        if (!bounds_take_wait(&p->bounds, max))
                return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                     "%u requests wait for upstreams already (agent.max_upstream_waits); "
                                     "try the next host", max);
        rq->holds_wait = true;
        if (!pull_thread_begin(p)) {
                bounds_put_wait(&p->bounds);
                rq->holds_wait = false;
                return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "shutting down");
        }
        rq->url = strdup(url);
        rq->pull = p;
        rq->conn = conn;
        rq->head = head;
        rq->deferred = true;
        pthread_attr_t attr;
        pthread_t t;
        int r = rq->url ? pthread_attr_init(&attr) : ENOMEM;
        MHD_suspend_connection(conn);
        if (r == 0) {
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                pthread_attr_setstacksize(&attr, 256 * 1024);
                r = pthread_create(&t, &attr, worker_main, rq);
                pthread_attr_destroy(&attr);
        }
        if (r != 0) {
                /* Answered at once, from here, when the connection comes back. */
                respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "no thread: %s", strerror(r));
                bounds_put_wait(&p->bounds);
                rq->holds_wait = false;
                rq->worker_done = true;
                MHD_resume_connection(conn);
                pull_thread_end(p);
        }
        return MHD_YES;
}

/* The request's Host names this node as a local client would (agent/host.h):
 * a loopback name or address, or the address this connection arrived on (a
 * wildcard or socket-activated listener has no other to compare with). */
static bool host_allowed(struct MHD_Connection *conn) {
        const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
        if (host_is_acceptable(host, NULL, 0))
                return true; /* without a system call, as nearly every request is */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct sockaddr_storage local;
        socklen_t len = sizeof(local);
        if (!ci || getsockname(ci->connect_fd, (struct sockaddr *) &local, &len) < 0)
                return false;
        return host_is_acceptable(host, (const struct sockaddr *) &local, len);
}

enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                            const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls) {
        struct pull *p = cls;
        struct request *rq = *req_cls;
        (void) version, (void) upload_data;
        if (!rq) {
                /* The headers are in; answering only once the whole request is
                 * (the next call) keeps the connection open for the next one. */
                rq = calloc(1, sizeof(*rq));
                if (!rq)
                        return MHD_NO;
                *req_cls = rq;
                rq->pull = p;
                rq->started_ms = time_now_ms();
                rq->started_ns = time_now_ns();
                rq->outcome = "-";
                rq->route = ROUTE_OTHER;
                rq->method = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0  ? "HEAD"
                             : strcmp(method, MHD_HTTP_METHOD_GET) == 0 ? "GET"
                                                                        : "other";
                snprintf(rq->ns, sizeof(rq->ns), "-");
                return MHD_YES;
        }
        if (rq->worker_done) {
                /* Resumed: the worker's answer (none: it could not make one). */
                rq->worker_done = false;
                struct MHD_Response *resp = TAKE_PTR(rq->prepared);
                if (!resp)
                        return MHD_NO;
                enum MHD_Result r = MHD_queue_response(conn, rq->prepared_status, resp);
                MHD_destroy_response(resp);
                return r;
        }
        if (*upload_data_size) {
                /* No pull request has a body: drop it (MHD bounds the connection's time). */
                rq->has_body = true;
                *upload_data_size = 0;
                return MHD_YES;
        }
        bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
        if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
                /* Push, delete and the rest: layerd is a read-only mirror. */
                return respond_error(conn, rq, MHD_HTTP_METHOD_NOT_ALLOWED, "UNSUPPORTED",
                                     "layerd is a read-only mirror");
        if (rq->has_body)
                return respond_error(conn, rq, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED", "a pull request has no body");
        if (!host_allowed(conn))
                /* DNS rebinding: a page's own name, resolved to this node, in Host. */
                return respond_error(conn, rq, MHD_HTTP_BAD_REQUEST, "DENIED",
                                     "Host is neither a loopback name or address nor the address this connection reached");
        enum MHD_Result ret = dispatch(p, conn, url, head, rq);
        return rq->would_block ? defer(p, conn, url, head, rq) : ret;
}

/* The pass-through counters, once per request from what its log line says (a
 * deferred request is decided twice: on the event loop, then on its thread). */
static void count_auth(struct pull *p, const struct request *rq) {
        /* Nothing for the public requests, nearly all: no shared counter to contend for. */
        if (rq->auth != ACCESS_USE_NONE)
                atomic_fetch_add(&p->auth_uses[rq->auth], 1);
        if (rq->verdict != ACCESS_HOW_NONE)
                atomic_fetch_add(&p->auth_hows[rq->verdict], 1);
}

/* The request's latency and, for a mirrored registry's content, its hit or
 * miss (agent/reqmetrics.h). Health checks and scrapes are no pulls. */
static void count_latency(struct pull *p, const struct request *rq) {
        enum reqmetrics_route route;
        switch (rq->route) {
        case ROUTE_METRICS:
        case ROUTE_HEALTH:
                return;
        case ROUTE_MANIFEST:
                route = REQMETRICS_MANIFEST;
                break;
        case ROUTE_BLOB:
                route = REQMETRICS_BLOB;
                break;
        case ROUTE_TAGS:
                route = REQMETRICS_TAGS;
                break;
        default:
                route = REQMETRICS_OTHER;
                break;
        }
        enum reqmetrics_outcome o = reqmetrics_outcome_of(rq->status, rq->outcome);
        uint64_t end = rq->answered_ns ? rq->answered_ns : time_now_ns();
        reqmetrics_observe(&p->reqmetrics, route, o, end > rq->started_ns ? end - rq->started_ns : 0);
        /* A stale tag's answer came from the node: a hit for the ratio. */
        if (rq->registry[0] && (route == REQMETRICS_MANIFEST || route == REQMETRICS_BLOB) && o != REQMETRICS_ERROR)
                reqmetrics_count_registry(&p->reqmetrics, rq->registry, o != REQMETRICS_MISS);
}

/* libmicrohttpd parses headers in place, in the connection's buffer, which
 * it keeps (unwiped) while the connection lives: the client's credentials
 * are wiped there, in each Authorization header's value. */
static enum MHD_Result wipe_authorization(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                          const char *value, size_t value_size) {
        (void) cls;
        (void) kind;
        if (value && key_size == strlen(MHD_HTTP_HEADER_AUTHORIZATION) &&
            strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0)
                explicit_bzero((char *) value, value_size);
        return MHD_YES;
}

void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe) {
        struct pull *p = cls;
        struct request *rq = *req_cls;
        if (!rq)
                return;
        /* The request is over: libmicrohttpd reads none of its headers again. */
        (void) MHD_get_connection_values_n(conn, MHD_HEADER_KIND, wipe_authorization, NULL);
        *req_cls = NULL;
        size_t slot = STATUS_SLOTS - 1;
        for (size_t i = 0; i + 1 < STATUS_SLOTS; i++)
                if (pull_status_slots[i] == rq->status)
                        slot = i;
        atomic_fetch_add(&p->requests[rq->route][slot], 1);
        count_auth(p, rq);
        count_latency(p, rq);
        uint64_t bytes = rq->streamed ? (uint64_t) atomic_load(&rq->bytes)
                                      : (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? rq->length : 0);
        /* Health checks and metrics scrapes would drown the log: debug only. */
        int level = rq->route == ROUTE_HEALTH || rq->route == ROUTE_METRICS ? LOG_DEBUG : LOG_INFO;
        /* auth= and verdict= only where pass-through had a say: other lines stay as they were. */
        bool auth = rq->auth != ACCESS_USE_NONE, verdict = rq->verdict != ACCESS_HOW_NONE;
        agent_log(level,
                  "request method=%s ns=%s repo=%s ref=%s status=%u bytes=%" PRIu64 " ms=%" PRIu64
                  " cache=%s endpoint=%s%s%s%s%s%s%s%s%s",
                  rq->method, rq->ns, rq->repo[0] ? rq->repo : "-", rq->ref[0] ? rq->ref : "-", rq->status, bytes,
                  time_now_ms() - rq->started_ms, rq->outcome, rq->endpoint[0] ? rq->endpoint : "-",
                  auth ? " auth=" : "", auth ? access_use_to_string(rq->auth) : "", verdict ? " verdict=" : "",
                  verdict ? access_how_to_string(rq->verdict) : "",
                  toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " incomplete=yes",
                  rq->reason[0] ? " reason=\"" : "", rq->reason, rq->reason[0] ? "\"" : "");
        if (rq->prepared)
                MHD_destroy_response(rq->prepared);
        client_auth_wipe(&rq->client);
        free(rq->url);
        free(rq);
}

