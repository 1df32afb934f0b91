/* SPDX-License-Identifier: Apache-2.0 */
/* What an endpoint sent: a blob's body into the sink once its Content-Range,
 * size and digest claim are checked, manifests and tag lists read whole and
 * bounded, manifests verified against their digest. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/range.h"
#include "fallback/fallback-internal.h"


enum outcome fallback_fail(struct fetch *f, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_vquotef(f->reason, sizeof(f->reason), fmt, ap); /* log fields are quoted */
        va_end(ap);
        return OUT_FAIL;
}


/* The media type of a manifest: Content-Type unless it is a generic one, else the body's mediaType. */
static char *manifest_media_type(const struct http_response *hr, const struct buf *body) {
        const char *ct = hr->content_type;
        size_t len = ct ? strcspn(ct, ";") : 0;
        while (len > 0 && ct[len - 1] == ' ')
                len--;
        if (ct && len > 0 && strncasecmp(ct, "application/json", len) != 0 && strncasecmp(ct, "text/plain", len) != 0)
                return strndup(ct, len);
        if (!body || !body->data)
                return ct ? strndup(ct, len) : NULL;
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *root = json_loadb(body->data, body->len, 0, &jerr);
        const char *mt = json_string_value(json_object_get(root, "mediaType"));
        return mt ? strdup(mt) : ct ? strndup(ct, len) : NULL;
}

/* "bytes A-B/TOTAL" -> A and TOTAL (-1 for "*"). */
static int parse_content_range(const char *s, uint64_t *ret_start, int64_t *ret_total) {
        /* Strict digits (parse_uint: no sign, no space, no overflow), not sscanf. */
        char buf[CONTENT_RANGE_MAX];
        uint64_t a, b, t;
        size_t len = s ? strlen(s) : 0;
        if (!s || strncmp(s, "bytes ", 6) != 0 || len - 6 >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s + 6, len - 6 + 1);
        char *dash = strchr(buf, '-'), *slash = strchr(buf, '/');
        if (!dash || !slash || slash < dash)
                return -EINVAL;
        *dash = *slash = '\0';
        if (parse_uint(buf, UINT64_MAX, &a) < 0 || parse_uint(dash + 1, UINT64_MAX, &b) < 0 || b < a)
                return -EINVAL;
        if (strcmp(slash + 1, "*") == 0)
                *ret_total = -1;
        else if (parse_uint(slash + 1, INT64_MAX, &t) < 0 || t <= b)
                return -EINVAL;
        else
                *ret_total = (int64_t) t;
        *ret_start = a;
        return 0;
}

/* Before the body of a 2xx blob answer: where it starts and what its total is. */
static enum outcome blob_prepare(struct fetch *f) {
        struct http_response *hr = f->hr;
        uint64_t at = f->req->offset + f->resp->received;
        int64_t total = -1;
        f->skip = 0;
        /* The digest claim is checked here, before a byte reaches the sink:
         * another blob's bytes must not be kept, nor resumed from elsewhere. */
        if (hr->digest) {
                struct digest claimed;
                if (digest_parse(hr->digest, &claimed) < 0)
                        return fallback_fail(f, "bad Docker-Content-Digest \"%.80s\"", hr->digest);
                if (!digest_equal(&claimed, &f->want))
                        return fallback_fail(f, "Docker-Content-Digest is another blob's");
        }
        if (hr->status == 206) {
                uint64_t start;
                if (parse_content_range(hr->content_range, &start, &total) < 0 || start != at)
                        return fallback_fail(f, "206 with Content-Range \"%.60s\" for bytes %" PRIu64 "-",
                                    hr->content_range ? hr->content_range : "", at);
        } else {
                /* 200: the whole blob, whatever was asked (an endpoint that ignores Range). */
                total = hr->content_length;
                f->skip = at;
        }
        if (total >= 0 && f->total >= 0 && total != f->total)
                return fallback_fail(f, "size %" PRId64 " differs from %" PRId64 " said before", total, f->total);
        if (total >= 0 && (uint64_t) total < at)
                return fallback_fail(f, "size %" PRId64 " is less than the %" PRIu64 " bytes already received", total, at);
        if (total >= 0)
                f->total = total;
        return OUT_OK;
}

/* The first body byte (or the end of an empty body) of a 2xx blob answer. */
static int blob_begin(struct fetch *f) {
        const struct fallback_request *req = f->req;
        f->body_started = true;
        if (blob_prepare(f) != OUT_OK) {
                f->prep_failed = true;
                return -EPROTO;
        }
        if (req->sink->start) {
                int r = req->sink->start(req->sink->userdata, f->total);
                if (r < 0) {
                        f->abort_error = r;
                        return r;
                }
        }
        return 0;
}

void fallback_manifest_wipe(struct fetch *f) {
        fallback_buf_wipe(&f->manifest);
        f->manifest.max = FALLBACK_MANIFEST_MAX;
        budget_hold_release(&f->held);
}

/* Room for size more bytes of a manifest or tag page, taken from the
 * request's budget before it is allocated: the announced length at once (one
 * allocation), else doubling as it comes. Beyond FALLBACK_MANIFEST_MAX the
 * append itself fails (-EFBIG); the budget's refusal ends the fetch. */
static int manifest_room(struct fetch *f, size_t size) {
        struct buf *b = &f->manifest;
        if (b->len + size + 1 <= b->cap || size > b->max - b->len)
                return 0;
        size_t want = b->len + size;
        int64_t announced = f->hr ? f->hr->content_length : -1;
        if (announced >= 0 && (uint64_t) announced > want && (uint64_t) announced <= b->max)
                want = (size_t) announced;
        else if (announced < 0) {
                size_t twice = b->len > 32 * 1024 ? 2 * b->len : 64 * 1024;
                want = twice > want ? twice : want;
                want = want < b->max ? want : b->max;
        }
        int r = budget_hold_reserve(&f->held, f->req->budget, (uint64_t) want + 1);
        if (r < 0) {
                f->abort_error = r; /* the whole fetch ends: no endpoint's fault */
                return r;
        }
        return buf_reserve(b, want - b->len);
}

int fallback_on_body(void *userdata, const void *data, size_t size) {
        struct fetch *f = userdata;
        const struct fallback_request *req = f->req;

        if (req->kind != FALLBACK_BLOB) { /* manifests and tag lists: read whole, bounded */
                int r = manifest_room(f, size);
                if (r >= 0)
                        r = fallback_buf_append(&f->manifest, data, size);
                f->attempt_bytes += size;
                return r;
        }
        if (!f->body_started) {
                int r = blob_begin(f);
                if (r < 0)
                        return r;
        }
        const char *p = data;
        if (f->skip > 0) {
                size_t drop = size < f->skip ? size : (size_t) f->skip;
                f->skip -= drop;
                p += drop;
                size -= drop;
        }
        if (size == 0)
                return 0;
        int r = req->sink->write(req->sink->userdata, p, size);
        if (r < 0) {
                f->abort_error = r;
                return r;
        }
        f->resp->received += size;
        f->attempt_bytes += size;
        return 0;
}

/* A request that carries a half-open breaker's probe gives its verdict with
 * the head: the endpoint answers as a server should, and nothing the body
 * does later (a blob trickling for minutes) may keep every other request of
 * the registry waiting for that verdict (they are refused while a probe is in
 * flight). A body that fails after this counts against the closed breaker as
 * any request's would. Non-2xx heads need no early verdict: their bodies are
 * not waited for beyond a second (http.h), the attempt's outcome decides. */
void fallback_on_head(void *userdata, const struct http_response *hr) {
        struct fetch *f = userdata;
        if (!f->probing || hr->status < 200 || hr->status > 299)
                return;
        /* blob_prepare() only computes (blob_begin() does it again at the first
         * byte): a blob answer that it refuses is no verdict yet, that failure is. */
        if (f->req->kind == FALLBACK_BLOB && !f->req->head && blob_prepare(f) != OUT_OK)
                return;
        struct event_buf evb = { 0 };
        fallback_breaker_success(f->fb, f->probing, &evb);
        f->probing = NULL;
        fallback_emit(f->fb, &evb);
}

/* Checks a 2xx answer and fills the response. */
enum outcome fallback_accept_answer(struct fetch *f, const struct ep *e) {
        struct http_response *hr = f->hr;
        struct fallback_response *resp = f->resp;
        const struct fallback_request *req = f->req;
        struct digest claimed;
        bool has_claim = hr->digest && digest_parse(hr->digest, &claimed) == 0;

        if (hr->digest && !has_claim)
                return fallback_fail(f, "bad Docker-Content-Digest \"%.80s\"", hr->digest);

        if (req->kind == FALLBACK_BLOB) {
                if (has_claim && !digest_equal(&claimed, &f->want))
                        return fallback_fail(f, "Docker-Content-Digest is another blob's");
                resp->has_digest = true;
                resp->digest = f->want;
                if (req->head) {
                        resp->size = hr->content_length;
                        return OUT_OK;
                }
                if (!f->body_started && blob_begin(f) < 0) /* an empty body: the sink still learns the size */
                        return f->prep_failed ? OUT_FAIL : OUT_ABORT;
                if (f->skip > 0 || (f->total >= 0 && req->offset + resp->received != (uint64_t) f->total)) {
                        snprintf(f->reason, sizeof(f->reason), "body ended at %" PRIu64 " of %" PRId64 " bytes",
                                 req->offset + resp->received, f->total);
                        return OUT_BROKEN;
                }
                resp->size = f->total >= 0 ? f->total : (int64_t) (req->offset + resp->received);
                return OUT_OK;
        }

        if (req->kind == FALLBACK_TAGS || req->kind == FALLBACK_REFERRERS) {
                /* Unverifiable by nature (no digest): the caller parses it strictly. */
                resp->has_next = req->kind == FALLBACK_REFERRERS && hr->link;
                if (req->kind == FALLBACK_TAGS && hr->link) {
                        int r = fallback_link_next_last(hr->link, &resp->next_last);
                        if (r == -ENOMEM) {
                                f->abort_error = r;
                                return OUT_ABORT;
                        }
                }
                resp->size = (int64_t) f->manifest.len;
                resp->body = TAKE_PTR(f->manifest.data);
                resp->held = budget_hold_take(&f->held);
                f->manifest = (struct buf) { .max = FALLBACK_MANIFEST_MAX };
                return OUT_OK;
        }

        /* Manifests. */
        if (req->head && !f->as_get && hr->content_length < 0) {
                /* A HEAD must say the size (containerd builds its descriptor from it): ask with GET. */
                f->as_get = true;
                return OUT_ANSWER;
        }
        if (req->head && !f->as_get) {
                if (f->by_digest) {
                        if (has_claim && !digest_equal(&claimed, &f->want))
                                return fallback_fail(f, "Docker-Content-Digest is another manifest's");
                        resp->digest = f->want;
                } else if (has_claim)
                        resp->digest = claimed;
                else {
                        /* No digest for a tag: only a GET can tell (containerd does the same). */
                        f->as_get = true;
                        return OUT_ANSWER;
                }
                resp->has_digest = true;
                resp->size = hr->content_length;
                resp->media_type = manifest_media_type(hr, NULL);
                return OUT_OK;
        }
        struct digest got;
        enum digest_algorithm alg = f->by_digest ? f->want.algorithm : has_claim ? claimed.algorithm : DIGEST_SHA256;
        int r = digest_buffer(alg, f->manifest.data ? f->manifest.data : "", f->manifest.len, &got);
        if (r < 0) {
                f->abort_error = r;
                return OUT_ABORT;
        }
        char a[DIGEST_STRING_MAX], b[DIGEST_STRING_MAX];
        if (f->by_digest && !digest_equal(&got, &f->want))
                return fallback_fail(f, "digest mismatch: asked for %s, got %s", digest_to_string(&f->want, a),
                            digest_to_string(&got, b));
        if (!f->by_digest && has_claim && !digest_equal(&got, &claimed))
                return fallback_fail(f, "digest mismatch: Docker-Content-Digest %s, content %s", digest_to_string(&claimed, a),
                            digest_to_string(&got, b));
        if (!f->by_digest && !has_claim) {
                /* A tag's manifest that no digest vouches for: its digest is
                 * worked out from these bytes and recorded as the tag (served
                 * for tag_ttl, and when every upstream fails), so they must be
                 * all the endpoint meant to send. A body without Content-Length
                 * ends with the connection, cut or not: only whole JSON tells. */
                if (hr->content_length >= 0 && f->manifest.len != (uint64_t) hr->content_length)
                        return fallback_fail(f, "manifest without Docker-Content-Digest ended at %zu of %" PRId64
                                                " bytes", f->manifest.len, hr->content_length);
                if (!fallback_manifest_is_whole(f->manifest.data, f->manifest.len))
                        return fallback_fail(f, "manifest without Docker-Content-Digest is not a whole manifest "
                                                "(cut short?)");
        }
        resp->has_digest = true;
        resp->digest = got;
        resp->size = (int64_t) f->manifest.len;
        resp->media_type = manifest_media_type(hr, &f->manifest);
        resp->body = TAKE_PTR(f->manifest.data);
        resp->held = budget_hold_take(&f->held);
        f->manifest = (struct buf) { .max = FALLBACK_MANIFEST_MAX };
        (void) e;
        return OUT_OK;
}
