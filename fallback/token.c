/* SPDX-License-Identifier: Apache-2.0 */
/* The distribution token flow: a Bearer challenge's realm asked for a token
 * (with the endpoint's credentials where they may go), its answer parsed,
 * tokens cached per endpoint and scope until shortly before they expire, one
 * fetch in flight per key. Secrets are wiped when freed. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/time.h"
#include "common/macro.h"
#include "fallback/fallback-internal.h"

#define TOKENS_PER_ENDPOINT_MAX 256 /* the endpoint's own (anonymous, or with its credentials) */
/* Got with clients' credentials: a bound of their own, so that no number of clients can
 * push the endpoint's own tokens out. */
#define CLIENT_TOKENS_PER_ENDPOINT_MAX 256
#define TOKEN_DEFAULT_TTL_S 60 /* distribution token spec: expires_in defaults to 60 s */
#define TOKEN_WAIT_MAX_MS 30000

void fallback_token_free(struct token *t) {
        free(t->scope);
        secret_free(t->value);
        free(t);
}

/* ---- tokens ------------------------------------------------------------------ */

/* RFC 3339 ("2024-05-01T10:00:00.123Z", "+02:00") to Unix seconds; -1 if not that. */
static int64_t parse_rfc3339(const char *s) {
        struct tm tm = { 0 };
        const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -1;
        if (*p == '.')
                for (p++; *p >= '0' && *p <= '9'; p++)
                        ;
        int64_t off = 0;
        if (*p == 'Z' || *p == 'z')
                p++;
        else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
                int h = (p[1] - '0') * 10 + (p[2] - '0'), m = (p[4] - '0') * 10 + (p[5] - '0');
                off = (int64_t) (h * 3600 + m * 60) * (*p == '+' ? 1 : -1);
                p += 6;
        } else
                return -1;
        if (*p)
                return -1;
        time_t t = timegm(&tm);
        return t == (time_t) -1 ? -1 : (int64_t) t - off;
}

int fallback_buf_append(void *userdata, const void *data, size_t size) {
        return buf_append(userdata, data, size);
}

void fallback_buf_wipe(struct buf *b) {
        if (b->data)
                explicit_bzero(b->data, b->cap);
        buf_free(b);
        *b = (struct buf) { 0 };
}

/* Parses a token endpoint's answer: the token, and its lifetime in ms; an
 * OAuth2 answer's new refresh token into *ret_refresh when that is given (else NULL). */
static int token_parse(const struct buf *b, char **ret_token, uint64_t *ret_ttl_ms, char **ret_refresh, char *reason,
                       size_t rsize) {
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *root = json_loadb(b->data, b->len, 0, &jerr);
        if (!json_is_object(root)) {
                snprintf(reason, rsize, "token answer is not a JSON object");
                return -EPROTO;
        }
        /* "token" is the distribution name, "access_token" the OAuth 2 one; both are allowed. */
        const char *tok = json_string_value(json_object_get(root, "token"));
        if (!tok || !tok[0])
                tok = json_string_value(json_object_get(root, "access_token"));
        if (!tok || !tok[0] || strpbrk(tok, "\r\n ")) {
                snprintf(reason, rsize, "token answer has no usable token");
                return -EPROTO;
        }
        int64_t ttl = TOKEN_DEFAULT_TTL_S;
        json_t *exp = json_object_get(root, "expires_in");
        if (json_is_integer(exp) && json_integer_value(exp) > 0)
                ttl = json_integer_value(exp);
        if (ttl > 86400)
                ttl = 86400;
        const char *issued = json_string_value(json_object_get(root, "issued_at"));
        if (issued) {
                int64_t at = parse_rfc3339(issued);
                int64_t left = at >= 0 ? at + ttl - (int64_t) time(NULL) : ttl;
                /* A clock skewed ahead of the server's must not make a fresh token look expired. */
                if (left > 0 && left < ttl)
                        ttl = left;
        }
        uint64_t ms = (uint64_t) ttl * 1000;
        uint64_t margin = ms / 10 < 10000 ? ms / 10 : 10000; /* renew a little early */
        const char *refresh = json_string_value(json_object_get(root, "refresh_token"));
        bool want_rt = ret_refresh && refresh && refresh[0] && !strpbrk(refresh, "\r\n");
        char *t = strdup(tok);
        char *rt = want_rt ? strdup(refresh) : NULL;
        if (!t || (want_rt && !rt)) {
                secret_free(t);
                secret_free(rt);
                return -ENOMEM;
        }
        *ret_token = t;
        *ret_ttl_ms = ms - margin;
        if (ret_refresh)
                *ret_refresh = rt;
        return 0;
}

int fallback_token_parse(const void *data, size_t size, char **ret_token, uint64_t *ret_ttl_ms, char **ret_refresh,
                         char *reason, size_t rsize) {
        struct buf b = { .data = (void *) data, .len = size };
        return token_parse(&b, ret_token, ret_ttl_ms, ret_refresh, reason, rsize);
}

/* Appends s percent-encoded (RFC 3986 unreserved characters kept) for an
 * application/x-www-form-urlencoded body. */
static int form_append(struct buf *b, const char *name, const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        int r = buf_append(b, b->len ? "&" : "", b->len ? 1 : 0);
        if (r >= 0)
                r = buf_append(b, name, strlen(name));
        if (r >= 0)
                r = buf_append(b, "=", 1);
        for (const unsigned char *p = (const unsigned char *) s; r >= 0 && *p; p++) {
                char enc[3] = { '%', hex[*p >> 4], hex[*p & 15] };
                bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                             *p == '-' || *p == '.' || *p == '_' || *p == '~';
                r = plain ? buf_append(b, p, 1) : buf_append(b, enc, 3);
        }
        return r;
}

int fallback_token_oauth_form(const char *service, const char *scopes, const char *refresh_token, struct buf *b) {
        /* The distribution token spec's OAuth2 request (docs/spec/auth/oauth.md):
         * the scopes space-separated in one parameter, as containerd sends them. */
        /* Room for all of it at once: a secret never left behind by a realloc. */
        size_t room = 128 + 3 * (strlen(refresh_token) + (service ? strlen(service) : 0) + (scopes ? strlen(scopes) : 0));
        /* Its bound is its inputs' (a refresh token is as long as its file or
         * helper answer allows): encoded, one takes three times its length. */
        if (b->max < room)
                b->max = room;
        int r = buf_reserve(b, room);
        if (r >= 0)
                r = form_append(b, "grant_type", "refresh_token");
        if (r >= 0 && service)
                r = form_append(b, "service", service);
        if (r >= 0 && scopes && scopes[0])
                r = form_append(b, "scope", scopes);
        if (r >= 0)
                r = form_append(b, "client_id", "layerd");
        if (r >= 0)
                r = form_append(b, "refresh_token", refresh_token);
        return r;
}

static struct token *token_find(struct ep_state *st, const char *scope) {
        for (struct token *t = st->tokens; t; t = t->next)
                if (strcmp(t->scope, scope) == 0)
                        return t;
        return NULL;
}

/* A cached token for scope still valid, or NULL (caller frees). */
char *fallback_token_peek(struct ep_state *st, const char *scope) {
        char *out = NULL;
        uint64_t now = time_now_ms();
        pthread_mutex_lock(&st->tlock);
        struct token *t = token_find(st, scope);
        if (t && t->value && now < t->expires_at)
                out = strdup(t->value);
        pthread_mutex_unlock(&st->tlock);
        return out;
}

/* Drops dead tokens, and the oldest beyond TOKENS_PER_ENDPOINT_MAX of the endpoint's own and
 * CLIENT_TOKENS_PER_ENDPOINT_MAX of clients' (new ones are put first, so the one just fetched
 * stays); never one being fetched. */
static void token_trim_locked(struct ep_state *st) {
        static const size_t max[2] = { TOKENS_PER_ENDPOINT_MAX, CLIENT_TOKENS_PER_ENDPOINT_MAX };
        uint64_t now = time_now_ms();
        size_t kept[2] = { 0, 0 };
        for (struct token **p = &st->tokens; *p;) {
                struct token *t = *p;
                if (!t->fetching && (kept[t->client] >= max[t->client] || !t->value || now >= t->expires_at)) {
                        *p = t->next;
                        fallback_token_free(t);
                        st->n_tokens--;
                } else {
                        kept[t->client]++;
                        p = &t->next;
                }
        }
}

void fallback_tokens_drop(struct ep_state *st) {
        pthread_mutex_lock(&st->tlock);
        st->tokens_gen++;
        for (struct token *t = st->tokens; t; t = t->next)
                if (!t->fetching) {
                        t->value = secret_free(t->value);
                }
        token_trim_locked(st);
        pthread_mutex_unlock(&st->tlock);
}

uint64_t fallback_tokens_gen(struct ep_state *st) {
        pthread_mutex_lock(&st->tlock);
        uint64_t gen = st->tokens_gen;
        pthread_mutex_unlock(&st->tlock);
        return gen;
}

int fallback_wait_slice(struct fetch *f, pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t give_up) {
        const struct fallback_request *req = f->req;
        if (req->deadline_ms && req->deadline_ms < give_up)
                give_up = req->deadline_ms;
        if (req->cancelled && req->cancelled(req->cancel_userdata))
                return -ECANCELED;
        uint64_t now = time_now_ms();
        if (now >= give_up)
                return -ETIMEDOUT;
        /* In slices: a cancelled fetch stops waiting within one. */
        uint64_t until = now + FALLBACK_WAIT_SLICE_MS;
        (void) time_cond_wait_until(cond, lock, until < give_up ? until : give_up);
        return 0;
}

/* A grant the realm refused: -EACCES (the client gets a 401), told as a
 * credentials event too, since the 401's reason is not logged. */
static int oauth_refused(struct fetch *f, const struct ep *e, const char *reason) {
        struct event_buf evb = { 0 };
        fallback_creds_event(f, e, FALLBACK_EVENT_CREDENTIALS_FAILED, &evb, "%s", reason);
        fallback_emit(f->fb, &evb);
        return -EACCES;
}

static int token_request(struct fetch *f, const struct ep *e, const struct challenge *ch, const char *scope,
                         char **ret_token, uint64_t *ret_ttl, char *reason, size_t rsize) {
        const char *realm = challenge_param(ch, "realm");
        const char *service = challenge_param(ch, "service");
        const char *ch_scope = challenge_param(ch, "scope");
        if (!realm) {
                snprintf(reason, rsize, "Bearer challenge without realm");
                return -EPROTO;
        }
        _cleanup_free_ char *realm_origin = fallback_url_origin(realm);
        _cleanup_free_ char *realm_scheme = fallback_url_part(realm, CURLUPART_SCHEME, 0);
        if (!realm_origin || !realm_scheme) {
                snprintf(reason, rsize, "token realm is not an http(s) URL");
                return -EPROTO;
        }
        /* Credentials go to the realm the registry names (that is the token
         * flow), but never in clear text to another host. */
        bool same = strcmp(realm_origin, e->origin) == 0;
        const struct credentials *creds = fallback_fetch_creds(f, e);
        bool send_creds = creds && (same || strcmp(realm_scheme, "https") == 0);
        /* An identity token is an OAuth2 refresh token: POSTed to the realm
         * (the distribution token spec's OAuth2 flow), never sent as Basic. */
        bool oauth = send_creds && creds->identity_token;

        CURLU *u = curl_url();
        char *url = NULL;
        bool ok = u && curl_url_set(u, CURLUPART_URL, realm, 0) == CURLUE_OK;
        _cleanup_free_ char *q1 = NULL, *q2 = NULL;
        if (ok && !oauth && service && asprintf(&q1, "service=%s", service) >= 0)
                ok = curl_url_set(u, CURLUPART_QUERY, q1, CURLU_APPENDQUERY | CURLU_URLENCODE) == CURLUE_OK;
        /* The challenge's scope may hold several, space-separated: one parameter each. */
        const char *scopes = ch_scope ? ch_scope : scope;
        for (const char *p = oauth ? "" : scopes; ok && *p;) {
                size_t len = strcspn(p, " ");
                if (len > 0) {
                        free(q2);
                        q2 = NULL;
                        ok = asprintf(&q2, "scope=%.*s", (int) len, p) >= 0 &&
                             curl_url_set(u, CURLUPART_QUERY, q2, CURLU_APPENDQUERY | CURLU_URLENCODE) == CURLUE_OK;
                }
                p += len;
                while (*p == ' ')
                        p++;
        }
        if (ok)
                ok = curl_url_get(u, CURLUPART_URL, &url, 0) == CURLUE_OK;
        curl_url_cleanup(u);
        if (!ok) {
                curl_free(url);
                snprintf(reason, rsize, "cannot build the token URL");
                return -EPROTO;
        }

        char *refresh_token = NULL; /* the one sent: the source's current (fallback_creds_grant_begin()) */
        char *rotated = NULL;       /* the one the realm gave in its place */
        if (oauth) {
                int k = fallback_creds_grant_begin(f, e, creds->identity_token, &refresh_token);
                if (k < 0) {
                        curl_free(url);
                        snprintf(reason, rsize, "%s",
                                 k == -ECANCELED   ? "cancelled"
                                 : k == -ETIMEDOUT ? "timed out waiting for another grant"
                                                   : "out of memory");
                        return k;
                }
        }
        struct buf form = { 0 };
        if (oauth && fallback_token_oauth_form(service, scopes, refresh_token, &form) < 0) {
                curl_free(url);
                fallback_buf_wipe(&form);
                fallback_creds_grant_end(e, refresh_token, NULL);
                secret_free(refresh_token);
                snprintf(reason, rsize, "cannot build the token request");
                return -ENOMEM;
        }
        struct buf b = { .max = FALLBACK_TOKEN_MAX };
        struct http_response hr = { 0 };
        http_response_done(&hr);
        struct http_request rq = {
                .url = url,
                .user_agent = f->fb->user_agent,
                .ca_file = e->ca_file, /* trust anchors, no secret: as containerd, for the realm too */
                .client_cert = same ? e->client_cert : NULL,
                .client_key = same ? e->client_key : NULL,
                .skip_verify = same && e->skip_verify,
                .connect_timeout_ms = e->connect_ms,
                .response_timeout_ms = e->response_ms,
                .idle_timeout_ms = e->idle_ms,
                .user = send_creds && !oauth ? creds->user : NULL,
                .password = send_creds && !oauth ? creds->password : NULL,
                .post_fields = oauth ? form.data : NULL,
                .post_size = form.len,
                .on_body = fallback_buf_append,
                .userdata = &b,
                .deadline_ms = f->req->deadline_ms,
                .cancelled = f->req->cancelled,
                .cancel_userdata = f->req->cancel_userdata,
                /* A realm elsewhere is a hop away from the endpoint, as a redirect is. */
                .peer_checked = !same,
                .peer_mask = fallback_addr_hop_mask(f->ep_class, e->allow_private_redirects),
        };
        pthread_mutex_lock(&f->fb->lock);
        e->st->token_fetches++;
        pthread_mutex_unlock(&f->fb->lock);
        int r = http_perform(f->fb->http, &rq, &hr);
        curl_free(url);
        if (r == -EPERM)
                snprintf(reason, rsize, "token realm %.80s refused: %s, the endpoint's is %s (allow_private_redirects)",
                         realm_origin, hr.reason, fallback_addr_class_name(f->ep_class));
        else if (r < 0)
                snprintf(reason, rsize, "token endpoint: %s", hr.reason);
        else if (oauth && (hr.status == 404 || hr.status == 405)) {
                /* A realm without the OAuth2 flow. containerd would try a GET
                 * with the refresh token as a Basic password; layerd sends a
                 * secret only as what it is: these credentials cannot be used here. */
                snprintf(reason, rsize,
                         "token endpoint: HTTP %ld to the OAuth2 POST: the realm takes no refresh tokens, "
                         "the identity token cannot be used",
                         hr.status);
                r = oauth_refused(f, e, reason);
        } else if (oauth && (hr.status == 400 || hr.status == 401 || hr.status == 403)) {
                /* RFC 6749 5.2: a grant refused (invalid_grant: the refresh token
                 * is revoked, expired or already rotated away) is an answer about
                 * these credentials, not a failing endpoint: its breaker stays
                 * shut, and its public repositories go on being served. */
                snprintf(reason, rsize, "token endpoint: HTTP %ld to the OAuth2 POST: the refresh token was refused",
                         hr.status);
                r = oauth_refused(f, e, reason);
        } else if (hr.status != 200) {
                snprintf(reason, rsize, "token endpoint: HTTP %ld%s", hr.status,
                         hr.status == 401 || hr.status == 403
                                 ? (creds ? " (credentials refused)" : " (credentials needed)")
                                 : "");
                r = hr.status == 401 || hr.status == 403 ? -EACCES : -EPROTO;
        } else
                r = token_parse(&b, ret_token, ret_ttl, oauth ? &rotated : NULL, reason, rsize);
        if (oauth)
                fallback_creds_grant_end(e, refresh_token, rotated);
        secret_free(rotated);
        secret_free(refresh_token);
        fallback_buf_wipe(&form);
        fallback_buf_wipe(&b);
        http_response_done(&hr);
        return r;
}

/* A token for scope that is not `rejected`: a cached one, or one fetched now.
 * Only one fetch per endpoint and scope runs; concurrent callers wait for it. */
int fallback_token_get(struct fetch *f, const struct ep *e, const struct challenge *ch, const char *scope,
                     const char *rejected, char **ret, char *reason, size_t rsize) {
        struct ep_state *st = e->st;
        /* A client's credentials' tokens are theirs alone: cached under their hash too. */
        const char *key = f->token_key ? f->token_key : scope;
        uint64_t give_up = time_now_ms() + TOKEN_WAIT_MAX_MS;
        pthread_mutex_lock(&st->tlock);
        for (;;) {
                struct token *t = token_find(st, key);
                if (t && t->fetching) {
                        int k = fallback_wait_slice(f, &st->tcond, &st->tlock, give_up);
                        if (k < 0) {
                                pthread_mutex_unlock(&st->tlock);
                                snprintf(reason, rsize, "%s",
                                         k == -ECANCELED ? "cancelled" : "timed out waiting for a token");
                                return k;
                        }
                        continue;
                }
                if (t && t->value && time_now_ms() < t->expires_at && (!rejected || strcmp(t->value, rejected) != 0)) {
                        char *v = strdup(t->value);
                        pthread_mutex_unlock(&st->tlock);
                        if (!v)
                                return -ENOMEM;
                        *ret = v;
                        return 0;
                }
                if (!t) {
                        t = calloc(1, sizeof(*t));
                        if (!t || !(t->scope = strdup(key))) {
                                free(t);
                                pthread_mutex_unlock(&st->tlock);
                                return -ENOMEM;
                        }
                        t->client = f->has_client;
                        t->next = st->tokens;
                        st->tokens = t;
                        st->n_tokens++;
                }
                t->fetching = true;
                pthread_mutex_unlock(&st->tlock);

                char *value = NULL;
                uint64_t ttl = 0;
                int r = token_request(f, e, ch, scope, &value, &ttl, reason, rsize);

                pthread_mutex_lock(&st->tlock);
                t->fetching = false;
                t->value = secret_free(t->value);
                char *copy = NULL;
                if (r >= 0) {
                        /* Copied under the lock: once it is released, the trim
                         * below or another thread's refresh may free value. */
                        copy = strdup(value);
                        /* Got with credentials that changed meanwhile: used once, not kept. */
                        if (st->tokens_gen == f->tokens_gen) {
                                t->value = value;
                                t->expires_at = time_now_ms() + ttl;
                        } else
                                secret_free(value);
                }
                token_trim_locked(st);
                pthread_cond_broadcast(&st->tcond);
                pthread_mutex_unlock(&st->tlock);
                if (r < 0)
                        return r;
                if (!copy)
                        return -ENOMEM;
                *ret = copy;
                return 0;
        }
}
