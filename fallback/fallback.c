/* SPDX-License-Identifier: Apache-2.0 */
/* The chain walk (each endpoint in turn, failover, resume, the breakers
 * consulted and told) and one endpoint's exchange, cut into its steps: build
 * the request, perform it, then a transport error, a redirect, a 401 or the
 * answer's status decides. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/time.h"
#include "common/macro.h"
#include "common/reference.h"
#include "fallback/fallback-internal.h"

/* ---- one endpoint's exchange ------------------------------------------------- */

/* What events name the request by: a tag list has no reference. */
static const char *event_reference(const struct fetch *f) {
        return f->req->kind == FALLBACK_TAGS ? "tags/list" : f->req->reference; /* referrers: the subject */
}

static size_t pct_encode(const char *s, char *out, size_t size) {
        static const char hex[] = "0123456789ABCDEF";
        size_t n = 0;
        for (; *s && n + 4 < size; s++) {
                unsigned char c = (unsigned char) *s;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_' || c == '~')
                        out[n++] = (char) c;
                else {
                        out[n++] = '%';
                        out[n++] = hex[c >> 4];
                        out[n++] = hex[c & 15];
                }
        }
        out[n] = '\0';
        return n;
}

/* GET /v2/<name>/tags/list[?n=N][&last=TAG][&ns=REGISTRY] (distribution spec "Listing Tags"). */
static char *build_tags_url(const struct fetch *f, const struct ep *e, const char *ns) {
        char last[3 * 128 + 1] = "", q[3 * 128 + 3 * 256 + 64] = "";
        char *url = NULL;
        size_t len = 0;
        if (f->req->tags_n)
                len += (size_t) snprintf(q + len, sizeof(q) - len, "&n=%u", f->req->tags_n);
        if (f->req->tags_last) {
                pct_encode(f->req->tags_last, last, sizeof(last));
                len += (size_t) snprintf(q + len, sizeof(q) - len, "&last=%s", last);
        }
        if (ns[0])
                snprintf(q + len, sizeof(q) - len, "&ns=%s", ns);
        if (q[0])
                q[0] = '?';
        if (asprintf(&url, "%s%s/%s/tags/list%s", e->url, e->override_path ? "" : "/v2", f->repo, q) < 0)
                return NULL;
        return url;
}

static char *build_url(const struct fetch *f, const struct ep *e) {
        char ns[3 * 256 + 1] = "";
        char *url = NULL;
        if (!e->is_origin)
                pct_encode(f->reg->host, ns, sizeof(ns));
        if (f->req->kind == FALLBACK_TAGS)
                return build_tags_url(f, e, ns);
        /* containerd adds ?ns=<registry> for mirror hosts; layerd does the
         * same, so a central layerd (or any ns-aware mirror) knows the origin. */
        const char *kind = f->req->kind == FALLBACK_MANIFEST    ? "manifests"
                           : f->req->kind == FALLBACK_REFERRERS ? "referrers"
                                                                : "blobs";
        if (asprintf(&url, "%s%s/%s/%s/%s%s%s", e->url, e->override_path ? "" : "/v2", f->repo, kind, f->req->reference,
                     e->is_origin ? "" : "?ns=", ns) < 0)
                return NULL;
        return url;
}

static bool is_redirect(long s) {
        return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

/* Resolves location against base; NULL when it is not an http(s) URL. */
static char *resolve_location(const char *base, const char *location) {
        CURLU *u = curl_url();
        char *v = NULL, *out = NULL;
        if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
            curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_URL, &v, 0) == CURLUE_OK)
                out = strdup(v);
        curl_free(v);
        curl_url_cleanup(u);
        if (out && strncmp(out, "https://", 8) != 0 && strncmp(out, "http://", 7) != 0)
                out = mfree(out);
        return out;
}

static void record_ratelimit(struct fetch *f, const struct ep *e, struct event_buf *evb) {
        const struct http_response *hr = f->hr;
        if (hr->ratelimit_remaining < 0)
                return;
        pthread_mutex_lock(&f->fb->lock);
        e->st->rl_limit = hr->ratelimit_limit;
        e->st->rl_remaining = hr->ratelimit_remaining;
        pthread_mutex_unlock(&f->fb->lock);
        evb->ev = (struct fallback_event) { .type = FALLBACK_EVENT_RATELIMIT, .registry = f->reg->host,
                                            .repository = f->repo, .reference = event_reference(f),
                                            .endpoint = e->url, .ratelimit_limit = hr->ratelimit_limit,
                                            .ratelimit_remaining = hr->ratelimit_remaining };
        evb->set = true;
}

static bool header_add(struct curl_slist **l, const char *line) {
        struct curl_slist *n = curl_slist_append(*l, line);
        if (!n)
                return false;
        *l = n;
        return true;
}

/* One endpoint's exchange in progress: what the steps of fallback_attempt() share. */
struct exchange {
        const struct ep *e;
        char *first;         /* the request's URL on the endpoint */
        char *url;           /* where redirects led, once one did */
        const char *cur;     /* the URL asked now: first or url */
        char *token;         /* the Bearer token to send (secret: wiped when freed) */
        bool same_host;      /* cur is on the endpoint's origin; false for good after a hop away */
        bool on_origin;      /* cur is on the endpoint's origin now (a hop may come back) */
        bool refreshed;      /* a 401 had its one new token, or the switch to Basic */
        bool basic;          /* Basic credentials go instead of a token */
        unsigned redirects;
        struct http_response hr;
};

/* What a step of fallback_attempt() decided. */
enum step {
        STEP_NEXT,  /* not this step's case: the next step looks at the answer */
        STEP_AGAIN, /* ask again: a redirect, new credentials, a HEAD by tag as a GET */
        STEP_DONE,  /* the attempt's outcome is decided */
};

/* Build the request's headers: a resume is a Range from the bytes the sink already has. */
static int request_headers(const struct fetch *f, const struct exchange *x, bool head, struct curl_slist **ret) {
        const struct fallback_request *req = f->req;
        struct curl_slist *hdrs = NULL;
        char line[512];
        bool ok = true;
        if (req->kind == FALLBACK_MANIFEST || req->kind == FALLBACK_REFERRERS) {
                /* A referrers answer is an OCI image index, and nothing else. */
                snprintf(line, sizeof(line), "Accept: %.490s",
                         req->kind == FALLBACK_REFERRERS ? FALLBACK_REFERRERS_MEDIA_TYPE
                         : req->accept                   ? req->accept
                                                         : FALLBACK_ACCEPT_DEFAULT);
                ok = ok && header_add(&hdrs, line);
        }
        uint64_t at = req->offset + f->resp->received;
        if (req->kind == FALLBACK_BLOB && !head && at > 0) {
                snprintf(line, sizeof(line), "Range: bytes=%" PRIu64 "-", at);
                ok = ok && header_add(&hdrs, line);
        }
        /* The spec's headers and the credentials are the endpoint's:
         * never sent where a redirect leads to another host. */
        _cleanup_free_ char *bearer = NULL;
        if (x->same_host && x->token && !x->basic) {
                if (asprintf(&bearer, "Authorization: Bearer %s", x->token) < 0)
                        bearer = NULL;
                ok = ok && bearer && header_add(&hdrs, bearer);
        }
        if (bearer) /* the list has its own copy, wiped with the list */
                explicit_bzero(bearer, strlen(bearer));
        for (const struct curl_slist *h = x->same_host ? x->e->headers : NULL; ok && h; h = h->next)
                ok = header_add(&hdrs, h->data);
        if (!ok) {
                http_headers_free_wiped(hdrs);
                return -ENOMEM;
        }
        *ret = hdrs;
        return 0;
}

/* Perform one exchange (hdrs consumed); counted on the endpoint however it ends, for its stats. */
static int perform(struct fetch *f, struct exchange *x, bool head, struct curl_slist *hdrs) {
        const struct fallback_request *req = f->req;
        const struct ep *e = x->e;
        const struct credentials *creds = fallback_fetch_creds(f, e);
        f->body_started = false;
        f->skip = 0;
        f->attempt_bytes = 0;
        fallback_manifest_wipe(f);
        struct http_request rq = {
                .url = x->cur,
                .head = head,
                .headers = hdrs,
                .user_agent = f->fb->user_agent,
                /* The CA is trust, not a secret: a registry on a private CA may
                 * redirect to its own storage elsewhere (containerd uses the
                 * host's TLS config for redirects too). The rest stays home. */
                .ca_file = e->ca_file,
                .client_cert = x->same_host ? e->client_cert : NULL,
                .client_key = x->same_host ? e->client_key : NULL,
                .skip_verify = x->same_host && e->skip_verify,
                .connect_timeout_ms = e->connect_ms,
                .response_timeout_ms = e->response_ms,
                .idle_timeout_ms = e->idle_ms,
                .user = x->same_host && x->basic && creds ? creds->user : NULL,
                .password = x->same_host && x->basic && creds ? creds->password : NULL,
                .on_body = fallback_on_body,
                .on_head = fallback_on_head,
                .userdata = f,
                /* Bounds a whole exchange too: a body trickling in within the idle
                 * timeout cannot hold a caller past its deadline (blob downloads,
                 * long by nature, come without one). */
                .deadline_ms = req->deadline_ms,
                .cancelled = req->cancelled,
                .cancel_userdata = req->cancel_userdata,
                /* The endpoint is where the spec says; a hop away goes only where it may. */
                .peer_checked = !x->on_origin,
                .peer_mask = fallback_addr_hop_mask(f->ep_class, e->allow_private_redirects),
        };
        f->prep_failed = false;
        int r = http_perform(f->fb->http, &rq, &x->hr);
        if (x->on_origin && x->hr.peer_ip[0])
                f->ep_class = x->hr.peer_class;
        http_headers_free_wiped(hdrs);
        f->resp->attempts++;

        struct event_buf evb = { 0 };
        pthread_mutex_lock(&f->fb->lock);
        e->st->requests++;
        e->st->bytes += f->attempt_bytes;
        pthread_mutex_unlock(&f->fb->lock);
        record_ratelimit(f, e, &evb);
        fallback_emit(f->fb, &evb);
        return r;
}

/* Classify an exchange that ended without an answer (r < 0): only the endpoint's faults count against it. */
static enum outcome transport_failure(struct fetch *f, const struct exchange *x, int r) {
        const struct fallback_request *req = f->req;
        enum outcome out;
        if (f->prep_failed)
                out = OUT_FAIL; /* f->reason says why */
        else if (f->abort_error < 0) {
                snprintf(f->reason, sizeof(f->reason), "%s", x->hr.reason);
                out = OUT_ABORT;
        } else if (r == -EPERM) {
                _cleanup_free_ char *o = fallback_url_origin(x->cur);
                out = fallback_fail(f, "redirect to %.80s refused: %s, the endpoint's is %s (allow_private_redirects)",
                                    o ? o : "?", x->hr.reason, fallback_addr_class_name(f->ep_class));
        } else if (r == -EFBIG && req->kind == FALLBACK_MANIFEST)
                out = fallback_fail(f, "manifest larger than %u bytes", FALLBACK_MANIFEST_MAX);
        else if (r == -ENOMEM || r == -ECANCELED || r == -EMFILE || r == -ENFILE) {
                /* Ours, not the endpoint's: no breaker counts it (descriptors run out under load). */
                f->abort_error = r;
                snprintf(f->reason, sizeof(f->reason), "%s", x->hr.reason);
                out = OUT_ABORT;
        } else if (r == -ECONNABORTED && req->kind == FALLBACK_BLOB && !req->head && f->body_started &&
                   f->total >= 0 && req->offset + f->resp->received == (uint64_t) f->total) {
                /* Every byte is here, only the connection's end was rough:
                 * the sink's owner verifies the digest. */
                out = fallback_accept_answer(f, x->e);
        } else {
                out = fallback_fail(f, "%s", x->hr.reason);
                /* A connection that broke mid-body (not a stall) is worth one resume there. */
                if (r == -ECONNABORTED && req->kind == FALLBACK_BLOB && f->attempt_bytes > 0)
                        out = OUT_BROKEN;
        }
        return out;
}

/* Follow a redirect, bounded and never down to http: credentials stay behind once it leaves the origin. */
static enum step follow_redirect(struct fetch *f, struct exchange *x, enum outcome *out) {
        if (!is_redirect(x->hr.status) || !x->hr.location)
                return STEP_NEXT;
        if (++x->redirects > FALLBACK_REDIRECTS_MAX) {
                *out = fallback_fail(f, "more than %d redirects", FALLBACK_REDIRECTS_MAX);
                return STEP_DONE;
        }
        char *next = resolve_location(x->cur, x->hr.location);
        if (!next) {
                *out = fallback_fail(f, "redirect to a location that is not http(s)");
                return STEP_DONE;
        }
        bool downgraded = strncmp(x->cur, "https://", 8) == 0 && strncmp(next, "http://", 7) == 0;
        free(x->url);
        x->url = next;
        x->cur = x->url;
        if (downgraded) {
                *out = fallback_fail(f, "redirect from https to http refused");
                return STEP_DONE;
        }
        _cleanup_free_ char *o = fallback_url_origin(x->cur);
        x->on_origin = o && strcmp(o, x->e->origin) == 0;
        if (!x->on_origin)
                x->same_host = false; /* and stays so for later hops */
        return STEP_AGAIN;
}

/* Authorise after the endpoint's first 401: one new token or the switch to Basic, as its challenge asks. */
static enum step authorise(struct fetch *f, struct exchange *x, enum outcome *out) {
        const struct ep *e = x->e;
        if (x->hr.status != 401 || !x->same_host || x->refreshed)
                return STEP_NEXT;
        struct challenge_list cl = { 0 };
        if (x->hr.challenge && challenge_parse(x->hr.challenge, &cl) == 0) {
                const struct challenge *bc = challenge_find(&cl, "bearer");
                const struct challenge *bas = challenge_find(&cl, "basic");
                if (bc) {
                        char *fresh = NULL;
                        if (x->basic) {
                                /* The endpoint moved on to tokens: stop sending Basic. */
                                x->basic = false;
                                pthread_mutex_lock(&f->fb->lock);
                                e->st->wants_basic = false;
                                pthread_mutex_unlock(&f->fb->lock);
                        }
                        int k = fallback_token_get(f, e, bc, f->scope, x->token, &fresh, f->reason,
                                                   sizeof(f->reason));
                        challenge_list_done(&cl);
                        if (k == -ENOMEM || k == -ECANCELED) {
                                /* Not the endpoint's fault: no blame, the fetch ends. */
                                f->abort_error = k;
                                *out = OUT_ABORT;
                                return STEP_DONE;
                        }
                        if (k == -EACCES) { /* wrong or missing credentials: an answer, not a failure */
                                f->answer = 401;
                                *out = OUT_ANSWER;
                                return STEP_DONE;
                        }
                        if (k < 0) {
                                *out = OUT_FAIL;
                                return STEP_DONE;
                        }
                        secret_free(x->token);
                        x->token = fresh;
                        x->refreshed = true;
                        return STEP_AGAIN;
                }
                if (bas && credentials_have_password(fallback_fetch_creds(f, e)) && !x->basic) {
                        challenge_list_done(&cl);
                        x->basic = x->refreshed = true;
                        pthread_mutex_lock(&f->fb->lock);
                        e->st->wants_basic = true;
                        pthread_mutex_unlock(&f->fb->lock);
                        return STEP_AGAIN;
                }
        }
        challenge_list_done(&cl);
        return STEP_NEXT;
}

/* Classify the answer by its status: failover needs to tell an endpoint that cannot serve from one that said no. */
static enum step classify_status(struct fetch *f, struct exchange *x, enum outcome *out) {
        long s = x->hr.status;
        if (s >= 200 && s <= 299) {
                *out = fallback_accept_answer(f, x->e);
                if (*out == OUT_ANSWER && f->as_get)
                        return STEP_AGAIN; /* the HEAD by tag, again as a GET */
                return STEP_DONE;
        }
        /* 416: a resume the endpoint cannot serve; never a final answer for the client. */
        if (s == 429 || s == 416 || s >= 500 || s < 200 || is_redirect(s)) {
                *out = fallback_fail(f, "HTTP %ld%s", s, s == 429 ? " (rate limited)" : "");
                return STEP_DONE;
        }
        snprintf(f->reason, sizeof(f->reason), "HTTP %ld", s);
        f->answer = s;
        *out = OUT_ANSWER;
        return STEP_DONE;
}

/* One endpoint: the request, with its auth round trips and redirects. */
enum outcome fallback_attempt(struct fetch *f, const struct ep *e) {
        struct exchange x = { .e = e, .same_host = true, .on_origin = true };
        enum outcome out = OUT_ABORT;

        /* First: new credentials drop the tokens the old ones got. A request with its
         * client's credentials sends no others: the endpoint's are not looked at. */
        if (f->has_client)
                f->tokens_gen = fallback_tokens_gen(e->st);
        else if (fallback_creds_get(f, e, &f->creds) < 0) {
                f->abort_error = -ENOMEM;
                return OUT_ABORT;
        }
        x.first = build_url(f, e);
        x.token = fallback_token_peek(e->st, f->token_key);
        x.cur = x.first;
        if (!x.first) {
                secret_free(x.token);
                f->creds = credentials_free(f->creds);
                f->abort_error = -ENOMEM;
                return OUT_ABORT;
        }
        f->as_get = false; /* a HEAD stays a HEAD on the next endpoint */
        f->ep_class = FALLBACK_ADDR_PUBLIC;
        http_response_done(&x.hr);
        f->hr = &x.hr;
        pthread_mutex_lock(&f->fb->lock);
        x.basic = e->st->wants_basic && credentials_have_password(fallback_fetch_creds(f, e));
        pthread_mutex_unlock(&f->fb->lock);

        for (enum step next = STEP_AGAIN; next == STEP_AGAIN;) {
                bool head = f->req->head && !f->as_get;
                struct curl_slist *hdrs = NULL;
                if (request_headers(f, &x, head, &hdrs) < 0) {
                        f->abort_error = -ENOMEM;
                        out = OUT_ABORT;
                        break;
                }
                int r = perform(f, &x, head, hdrs);
                if (r < 0) {
                        out = transport_failure(f, &x, r);
                        break;
                }
                next = follow_redirect(f, &x, &out);
                if (next == STEP_NEXT)
                        next = authorise(f, &x, &out);
                if (next == STEP_NEXT)
                        next = classify_status(f, &x, &out);
        }
        if (out == OUT_FAIL && x.hr.status == 429 && x.hr.retry_after_s > 0)
                f->answer = -(long) x.hr.retry_after_s; /* read by the chain walk as a backoff floor */
        secret_free(x.token);
        free(x.first);
        free(x.url);
        http_response_done(&x.hr);
        f->hr = NULL;
        f->creds = credentials_free(f->creds);
        return out;
}

/* ---- the chain walk ---------------------------------------------------------- */

static void failover_event(struct fetch *f, const struct ep *e, bool answered, bool last, struct event_buf *evb) {
        snprintf(evb->reason, sizeof(evb->reason), "%s", f->reason);
        evb->ev = (struct fallback_event) { .type = FALLBACK_EVENT_FAILOVER, .registry = f->reg->host,
                                            .repository = f->repo, .reference = event_reference(f),
                                            .endpoint = e->url, .reason = evb->reason, .answered = answered,
                                            .last = last };
        evb->set = true;
}

void fallback_count_answer(struct fallback *fb, const struct ep *e, bool ok) {
        pthread_mutex_lock(&fb->lock);
        if (ok)
                e->st->ok++;
        else
                e->st->not_found++;
        pthread_mutex_unlock(&fb->lock);
}

/* containerd's capabilities: "resolve" answers tags, "pull" serves content by digest. */
static bool eligible(const struct ep *e, const struct fetch *f) {
        /* A client's credentials are for the origin only, and a mirror's answer to a
         * request without them would say nothing of them. */
        if (f->req->client_auth && !e->is_origin)
                return false;
        bool tag = (f->req->kind == FALLBACK_MANIFEST && !f->by_digest) || f->req->kind == FALLBACK_TAGS ||
                   f->req->kind == FALLBACK_REFERRERS;
        return tag ? !e->no_resolve : !e->no_pull;
}

int fallback_request_check(const struct fallback_request *req, struct fetch *f) {
        if (!req->registry || !req->repository || req->kind < 0 || req->kind >= _FALLBACK_KIND_MAX)
                return -EINVAL;
        if (!reference_path_is_valid(req->repository))
                return -EINVAL;
        if (req->kind == FALLBACK_TAGS)
                return req->reference || req->head || req->offset ||
                                       (req->tags_last && !reference_tag_is_valid(req->tags_last))
                               ? -EINVAL
                               : 0;
        if (!req->reference)
                return -EINVAL;
        f->by_digest = digest_parse(req->reference, &f->want) == 0;
        if (req->kind == FALLBACK_REFERRERS)
                return !f->by_digest || req->head || req->offset ? -EINVAL : 0;
        if (!f->by_digest && (req->kind == FALLBACK_BLOB || !reference_tag_is_valid(req->reference)))
                return -EINVAL;
        if (req->kind == FALLBACK_BLOB && !req->head && (!req->sink || !req->sink->write))
                return -EINVAL;
        if (req->kind == FALLBACK_MANIFEST && req->offset)
                return -EINVAL;
        if (req->accept && (strpbrk(req->accept, "\r\n") || strlen(req->accept) > 480))
                return -EINVAL;
        return 0;
}

static const struct registry *registry_find(const struct config *c, const char *host) {
        for (size_t i = 0; c && i < c->n_regs; i++)
                if (strcasecmp(c->regs[i].host, host) == 0)
                        return &c->regs[i];
        return NULL;
}

/* f->repo, f->scope and f->token_key for f->req on f->reg (the client's credentials named by their key). */
int fallback_fetch_names(struct fetch *f) {
        /* Docker Hub names single-component repositories library/<name>. */
        bool hub = strcasecmp(f->reg->host, "docker.io") == 0 && !strchr(f->req->repository, '/');
        if (asprintf(&f->repo, "%s%s", hub ? "library/" : "", f->req->repository) < 0) {
                f->repo = NULL;
                return -ENOMEM;
        }
        if (asprintf(&f->scope, "repository:%s:pull", f->repo) < 0) {
                f->scope = NULL;
                return -ENOMEM;
        }
        const struct fallback_client_auth *ca = f->req->client_auth;
        if (!ca) {
                f->token_key = strdup(f->scope);
                return f->token_key ? 0 : -ENOMEM;
        }
        if (!ca->user || !ca->password || !ca->key)
                return -EINVAL;
        f->client_creds = (struct credentials) { .user = (char *) ca->user, .password = (char *) ca->password };
        f->has_client = true;
        struct digest d = { .algorithm = DIGEST_SHA256 };
        memcpy(d.bytes, ca->key, FALLBACK_CLIENT_KEY_SIZE);
        char hex[DIGEST_HEX_MAX];
        if (asprintf(&f->token_key, "%s client=%s", f->scope, digest_hex(&d, hex)) < 0) {
                f->token_key = NULL;
                return -ENOMEM;
        }
        return 0;
}

const struct credentials *fallback_fetch_creds(const struct fetch *f, const struct ep *e) {
        if (f->has_client)
                return e->is_origin ? &f->client_creds : NULL;
        return f->creds;
}

/* Could an endpoint after index i serve f's request without waiting for a
 * breaker (closed, or its backoff over and no probe under way)? */
static bool later_usable(struct fetch *f, size_t i, uint64_t now) {
        bool usable = false;
        pthread_mutex_lock(&f->fb->lock);
        for (size_t j = i + 1; j < f->reg->n_eps && !usable; j++) {
                const struct ep *e = &f->reg->eps[j];
                if (!eligible(e, f))
                        continue;
                const struct ep_state *st = e->st;
                usable = st->state == FALLBACK_BREAKER_CLOSED ||
                         (st->state == FALLBACK_BREAKER_OPEN && now >= st->open_until) ||
                         (st->state == FALLBACK_BREAKER_HALF_OPEN && !st->probe_in_flight);
        }
        pthread_mutex_unlock(&f->fb->lock);
        return usable;
}

/* f's attempts ended without a verdict (cancelled, given up, aborted): the
 * probe it carried, if it still does, goes to the next request. A request that
 * was not the probe leaves the breaker alone (another may carry it now). */
static void probe_release(struct fetch *f) {
        if (f->probing)
                fallback_breaker_release(f->fb, f->probing);
        f->probing = NULL;
}

int fallback_fetch(struct fallback *fb, const struct fallback_request *req, struct fallback_response *ret) {
        struct fetch f = { .fb = fb, .req = req, .resp = ret, .total = -1,
                           .manifest = { .max = FALLBACK_MANIFEST_MAX } };
        *ret = (struct fallback_response) { .size = -1 };
        int r = fallback_request_check(req, &f);
        if (r < 0) {
                snprintf(ret->error, sizeof(ret->error), "bad request");
                return r;
        }

        pthread_mutex_lock(&fb->lock);
        struct config *cfg = fb->config;
        if (cfg)
                cfg->refs++;
        pthread_mutex_unlock(&fb->lock);
        f.reg = registry_find(cfg, req->registry);
        if (!f.reg || f.reg->n_eps == 0) {
                snprintf(ret->error, sizeof(ret->error), "registry %s is not configured", req->registry);
                r = -ENOENT;
                goto out;
        }
        r = fallback_fetch_names(&f);
        if (r < 0)
                goto out;

        unsigned max = fb->o.attempts_max ? fb->o.attempts_max : 2 * (unsigned) f.reg->n_eps + 2;
        bool answered = false, any_tried = false;
        for (size_t i = 0; i < f.reg->n_eps && !answered; i++) {
                const struct ep *e = &f.reg->eps[i];
                if (!eligible(e, &f))
                        continue;
                bool last = true, resumed_here = false;
                for (size_t j = i + 1; j < f.reg->n_eps && last; j++)
                        last = !eligible(&f.reg->eps[j], &f);
                struct event_buf evb = { 0 };

                uint64_t now = time_now_ms();
                enum admit a = fallback_breaker_admit(fb, e->st, now, &evb);
                fallback_emit(fb, &evb);
                if (a == ADMIT_NO)
                        continue;
                /* A tag list or referrers index has no HEAD to probe with: it probes itself. */
                if (a == ADMIT_PROBE && req->kind != FALLBACK_TAGS && req->kind != FALLBACK_REFERRERS &&
                    later_usable(&f, i, now) &&
                    fallback_breaker_probe(&f, cfg, e) == 0)
                        continue; /* probed in the background; this request goes on */
                f.probing = a == ADMIT_PROBE ? e->st : NULL;
                for (;;) {
                        if (req->cancelled && req->cancelled(req->cancel_userdata)) {
                                probe_release(&f);
                                snprintf(ret->error, sizeof(ret->error), "cancelled");
                                r = -ECANCELED;
                                goto out;
                        }
                        if (ret->attempts >= max || (req->deadline_ms && time_now_ms() >= req->deadline_ms)) {
                                snprintf(f.reason, sizeof(f.reason), "gave up after %u requests", ret->attempts);
                                probe_release(&f);
                                goto walked;
                        }
                        if (req->kind == FALLBACK_BLOB && !req->head && ret->received > 0) {
                                evb.ev = (struct fallback_event) { .type = FALLBACK_EVENT_RESUME, .registry = f.reg->host,
                                                                   .repository = f.repo, .reference = req->reference,
                                                                   .endpoint = e->url,
                                                                   .offset = req->offset + ret->received };
                                evb.set = true;
                                fallback_emit(fb, &evb);
                                pthread_mutex_lock(&fb->lock);
                                e->st->resumes++;
                                pthread_mutex_unlock(&fb->lock);
                        }
                        any_tried = true;
                        f.answer = 0;
                        uint64_t before = ret->received;
                        enum outcome o = fallback_attempt(&f, e);
                        /* A body that broke goes on once more from where it broke on the
                         * same endpoint; so does one that stalled after some progress on
                         * the last endpoint, which has no next one to go to. */
                        bool progressed = ret->received > before;
                        if (!resumed_here && (o == OUT_BROKEN || (o == OUT_FAIL && progressed && last))) {
                                resumed_here = true;
                                continue;
                        }
                        switch (o) {
                        case OUT_OK:
                                fallback_breaker_success(fb, e->st, &evb);
                                fallback_count_answer(fb, e, true);
                                ret->status = 200;
                                answered = true;
                                break;
                        case OUT_ANSWER:
                                fallback_breaker_success(fb, e->st, &evb);
                                fallback_emit(fb, &evb); /* a CLOSED event first: the failover one reuses evb */
                                fallback_count_answer(fb, e, false);
                                /* A mirror's 401/403/404 means "not here": the origin may have it. */
                                if (last) {
                                        ret->status = (int) f.answer;
                                        ret->auth_refused = e->is_origin && (f.answer == 401 || f.answer == 403);
                                        answered = true;
                                } else {
                                        failover_event(&f, e, true, last, &evb);
                                }
                                break;
                        case OUT_ABORT:
                                probe_release(&f);
                                r = f.abort_error < 0 ? f.abort_error : -ENOMEM;
                                snprintf(ret->error, sizeof(ret->error), "%s", f.reason);
                                goto out;
                        default: { /* OUT_FAIL, or OUT_BROKEN twice */
                                uint64_t floor_ms = f.answer < 0 ? (uint64_t) -f.answer * 1000 : 0;
                                fallback_breaker_failure(fb, e->st, f.reason, floor_ms, &evb);
                                fallback_emit(fb, &evb);
                                failover_event(&f, e, false, last, &evb);
                                break;
                        }
                        }
                        f.probing = NULL; /* the verdict is given */
                        fallback_emit(fb, &evb);
                        if (answered) {
                                ret->endpoint = strdup(e->url);
                                if (!ret->endpoint) {
                                        r = -ENOMEM;
                                        goto out;
                                }
                        }
                        break;
                }
        }
walked:
        if (!answered) {
                /* Nothing usable: 503, never a 429, so containerd moves on to its next host at once. */
                ret->status = 503;
                snprintf(ret->error, sizeof(ret->error), "%s",
                         any_tried || f.reason[0] ? f.reason : "every endpoint is unavailable (circuit open)");
        } else if (ret->status != 200)
                snprintf(ret->error, sizeof(ret->error), "%s", f.reason);
        r = 0;
out:
        fallback_manifest_wipe(&f);
        free(f.repo);
        free(f.scope);
        free(f.token_key);
        fallback_config_unref(fb, cfg);
        return r;
}

void fallback_response_done(struct fallback_response *r) {
        free(r->endpoint);
        free(r->media_type);
        free(r->body);
        free(r->next_last);
        budget_hold_release(&r->held);
        *r = (struct fallback_response) { .size = -1 };
}
