/* SPDX-License-Identifier: Apache-2.0 */
#include "fallback/fallback.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "common/macro.h"
#include "common/parse.h"
#include "common/reference.h"
#include "common/time.h"
#include "fallback/challenge.h"
#include "fallback/credentials.h"
#include "fallback/http.h"

#define TOKENS_PER_ENDPOINT_MAX 256
#define TOKEN_DEFAULT_TTL_S 60 /* distribution token spec: expires_in defaults to 60 s */
#define TOKEN_WAIT_MAX_MS 30000

/* ---- state ------------------------------------------------------------------- */

struct token {
        struct token *next;
        char *scope;
        char *value; /* secret: wiped when freed */
        uint64_t expires_at; /* CLOCK_MONOTONIC ms */
        bool fetching;       /* one fetch in flight for this scope; others wait on tcond */
};

/* What survives a reconfiguration: keyed by registry and URL. Breaker and
 * counters are under fb->lock; tokens under tlock. */
struct ep_state {
        struct ep_state *next;
        unsigned refs; /* fb->lock */
        char *registry, *url;

        enum fallback_breaker_state state;
        unsigned failures;
        uint64_t open_until, backoff_ms;
        bool probe_in_flight;
        bool wants_basic; /* answered a Basic challenge: send credentials up front */

        uint64_t requests, ok, failed, not_found, bytes, opens, resumes, token_fetches;
        int64_t rl_limit, rl_remaining;

        pthread_mutex_t tlock;
        pthread_cond_t tcond;
        struct token *tokens;
        size_t n_tokens;
};

/* One endpoint's settings, immutable once configured. */
struct ep {
        char *url;
        char *host; /* host[:port] of url, for credentials and same-host checks */
        char *origin; /* scheme://host:port */
        bool is_origin, override_path, skip_verify;
        bool no_pull, no_resolve; /* containerd's capabilities, negated: zero is "may" */
        char *ca_file, *client_cert, *client_key;
        struct credentials *creds;
        uint64_t connect_ms, response_ms, idle_ms;
        struct curl_slist *headers;
        struct ep_state *st;
};

struct registry {
        char *host;
        struct ep *eps;
        size_t n_eps;
};

struct config {
        unsigned refs; /* fb->lock */
        struct registry *regs;
        size_t n_regs;
};

struct fallback {
        pthread_mutex_t lock;
        struct fallback_options o;
        char *user_agent;
        struct config *config;
        struct ep_state *states;
        struct http_client *http;
        uint64_t rng;
        /* Background probes of half-open breakers (probe_start()): how many
         * run, signalled as each ends; closing cancels them for fallback_free(). */
        unsigned probes;
        pthread_cond_t probes_done;
        atomic_bool closing;
};

int fallback_global_init(void) {
        return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void fallback_global_done(void) {
        curl_global_cleanup();
}

static void wipe_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

static void token_free(struct token *t) {
        free(t->scope);
        wipe_free(t->value);
        free(t);
}

static void ep_state_unref_locked(struct fallback *fb, struct ep_state *st) {
        if (!st || --st->refs > 0)
                return;
        for (struct ep_state **p = &fb->states; *p; p = &(*p)->next)
                if (*p == st) {
                        *p = st->next;
                        break;
                }
        while (st->tokens) {
                struct token *t = st->tokens;
                st->tokens = t->next;
                token_free(t);
        }
        pthread_mutex_destroy(&st->tlock);
        pthread_cond_destroy(&st->tcond);
        free(st->registry);
        free(st->url);
        free(st);
}

static struct ep_state *ep_state_get_locked(struct fallback *fb, const char *registry, const char *url) {
        for (struct ep_state *st = fb->states; st; st = st->next)
                if (strcmp(st->registry, registry) == 0 && strcmp(st->url, url) == 0) {
                        st->refs++;
                        return st;
                }
        struct ep_state *st = calloc(1, sizeof(*st));
        if (!st)
                return NULL;
        st->registry = strdup(registry);
        st->url = strdup(url);
        if (!st->registry || !st->url) {
                free(st->registry);
                free(st->url);
                free(st);
                return NULL;
        }
        time_cond_init(&st->tcond);
        pthread_mutex_init(&st->tlock, NULL);
        st->refs = 1;
        st->rl_limit = st->rl_remaining = -1;
        st->next = fb->states;
        fb->states = st;
        return st;
}

static void config_unref_locked(struct fallback *fb, struct config *c) {
        if (!c || --c->refs > 0)
                return;
        for (size_t i = 0; i < c->n_regs; i++) {
                struct registry *r = &c->regs[i];
                for (size_t j = 0; j < r->n_eps; j++) {
                        struct ep *e = &r->eps[j];
                        free(e->url);
                        free(e->host);
                        free(e->origin);
                        free(e->ca_file);
                        free(e->client_cert);
                        free(e->client_key);
                        credentials_free(e->creds);
                        curl_slist_free_all(e->headers);
                        ep_state_unref_locked(fb, e->st);
                }
                free(r->eps);
                free(r->host);
        }
        free(c->regs);
        free(c);
}

static void config_unref(struct fallback *fb, struct config *c) {
        pthread_mutex_lock(&fb->lock);
        config_unref_locked(fb, c);
        pthread_mutex_unlock(&fb->lock);
}

int fallback_new(const struct fallback_options *o, struct fallback **ret) {
        struct fallback *fb = calloc(1, sizeof(*fb));
        if (!fb)
                return -ENOMEM;
        pthread_mutex_init(&fb->lock, NULL);
        pthread_cond_init(&fb->probes_done, NULL);
        if (o)
                fb->o = *o;
        if (!fb->o.breaker_failures)
                fb->o.breaker_failures = 1;
        if (!fb->o.breaker_backoff_min_ms)
                fb->o.breaker_backoff_min_ms = 1000;
        if (!fb->o.breaker_backoff_max_ms)
                fb->o.breaker_backoff_max_ms = 60000;
        if (fb->o.breaker_backoff_max_ms < fb->o.breaker_backoff_min_ms)
                fb->o.breaker_backoff_max_ms = fb->o.breaker_backoff_min_ms;
        fb->user_agent = strdup(fb->o.user_agent ? fb->o.user_agent : "layerd");
        fb->o.user_agent = NULL;
        if (getrandom(&fb->rng, sizeof(fb->rng), GRND_NONBLOCK) != sizeof(fb->rng))
                fb->rng = (uint64_t) time(NULL) ^ (uint64_t) (uintptr_t) fb;
        fb->rng |= 1;
        int r = fb->user_agent ? http_client_new(&fb->http) : -ENOMEM;
        if (r < 0) {
                fallback_free(fb);
                return r;
        }
        *ret = fb;
        return 0;
}

struct fallback *fallback_free(struct fallback *fb) {
        if (!fb)
                return NULL;
        /* Probes end within ~100 ms of this (their cancel hook), and hold
         * references to the configuration and the HTTP client until then. */
        atomic_store(&fb->closing, true);
        pthread_mutex_lock(&fb->lock);
        while (fb->probes > 0)
                pthread_cond_wait(&fb->probes_done, &fb->lock);
        config_unref_locked(fb, TAKE_PTR(fb->config));
        pthread_mutex_unlock(&fb->lock);
        http_client_free(fb->http);
        free(fb->user_agent);
        pthread_cond_destroy(&fb->probes_done);
        pthread_mutex_destroy(&fb->lock);
        free(fb);
        return NULL;
}

/* ---- configuration ----------------------------------------------------------- */

static char *url_part(const char *url, CURLUPart part, unsigned flags) {
        CURLU *u = curl_url();
        char *v = NULL, *out = NULL;
        if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, part, &v, flags) == CURLUE_OK)
                out = strdup(v);
        curl_free(v);
        curl_url_cleanup(u);
        return out;
}

/* "scheme://host:port" (port always spelled out), or NULL. */
static char *url_origin(const char *url) {
        _cleanup_free_ char *scheme = url_part(url, CURLUPART_SCHEME, 0);
        _cleanup_free_ char *host = url_part(url, CURLUPART_HOST, 0);
        _cleanup_free_ char *port = url_part(url, CURLUPART_PORT, CURLU_DEFAULT_PORT);
        char *out = NULL;
        if (!scheme || !host || !port || asprintf(&out, "%s://%s:%s", scheme, host, port) < 0)
                return NULL;
        return out;
}

/* host[:port] as clients name a registry (the port only when not the scheme's default). */
static char *url_hostport(const char *url) {
        _cleanup_free_ char *host = url_part(url, CURLUPART_HOST, 0);
        _cleanup_free_ char *port = url_part(url, CURLUPART_PORT, 0);
        char *out = NULL;
        if (!host)
                return NULL;
        if (asprintf(&out, "%s%s%s", host, port ? ":" : "", port ? port : "") < 0)
                return NULL;
        return out;
}

static int ep_fill(struct fallback *fb, const char *registry, const struct fallback_endpoint_config *c, struct ep *e,
                   struct error_list *errors) {
        e->url = strdup(c->url);
        e->host = url_hostport(c->url);
        e->origin = url_origin(c->url);
        if (!e->url)
                return -ENOMEM;
        if (!e->host || !e->origin) {
                error_list_add(errors, 0, 0, "registry %s: endpoint %s: not a URL", registry, c->url);
                return -EINVAL;
        }
        e->is_origin = c->is_origin;
        e->no_pull = c->no_pull;
        e->no_resolve = c->no_resolve;
        e->override_path = c->override_path;
        e->skip_verify = c->skip_verify;
        if ((c->ca_file && !(e->ca_file = strdup(c->ca_file))) ||
            (c->client_cert && !(e->client_cert = strdup(c->client_cert))) ||
            (c->client_key && !(e->client_key = strdup(c->client_key))))
                return -ENOMEM;
        e->connect_ms = c->connect_timeout_ms ? c->connect_timeout_ms : 5000;
        e->response_ms = c->response_timeout_ms ? c->response_timeout_ms : 10000;
        e->idle_ms = c->idle_timeout_ms ? c->idle_timeout_ms : 30000;
        for (size_t i = 0; i < c->n_headers; i++) {
                _cleanup_free_ char *line = NULL;
                if (asprintf(&line, "%s: %s", c->headers[i].name, c->headers[i].value) < 0)
                        return -ENOMEM;
                struct curl_slist *l = curl_slist_append(e->headers, line);
                if (!l)
                        return -ENOMEM;
                e->headers = l;
        }
        if (c->credentials_file) {
                size_t before = errors->n;
                int r = credentials_load(c->credentials_file, e->host, &e->creds, errors);
                if (r < 0) {
                        /* Name the endpoint in what credentials_load() said (if it
                         * was stored: a full list only counts it). */
                        if (errors->n > before) {
                                struct error *last = &errors->items[errors->n - 1];
                                char msg[ERROR_MESSAGE_MAX];
                                /* A read error already starts with the file's name. */
                                bool named = strncmp(last->message, c->credentials_file,
                                                     strlen(c->credentials_file)) == 0;
                                snprintf(msg, sizeof(msg), "registry %s: endpoint %s: credentials %s%s%s", registry,
                                         c->url, named ? "" : c->credentials_file, named ? "" : ": ", last->message);
                                memcpy(last->message, msg, sizeof(msg));
                        }
                        return r == -ENOMEM ? r : -EINVAL;
                }
                if (!e->creds)
                        error_list_add(errors, 0, 0, "registry %s: endpoint %s: %s has no credentials for %s",
                                       registry, c->url, c->credentials_file, e->host);
                if (!e->creds)
                        return -EINVAL;
        }
        pthread_mutex_lock(&fb->lock);
        e->st = ep_state_get_locked(fb, registry, e->url);
        pthread_mutex_unlock(&fb->lock);
        return e->st ? 0 : -ENOMEM;
}

int fallback_configure(struct fallback *fb, const struct fallback_registry_config *regs, size_t n,
                       struct error_list *errors) {
        struct config *c = calloc(1, sizeof(*c));
        int r = 0;
        if (!c)
                return -ENOMEM;
        c->refs = 1;
        c->regs = calloc(n ? n : 1, sizeof(*c->regs));
        if (!c->regs) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                struct registry *reg = &c->regs[i];
                c->n_regs++;
                reg->host = strdup(regs[i].host);
                reg->eps = calloc(regs[i].n_endpoints ? regs[i].n_endpoints : 1, sizeof(*reg->eps));
                if (!reg->host || !reg->eps) {
                        r = -ENOMEM;
                        goto fail;
                }
                for (size_t j = 0; j < regs[i].n_endpoints; j++) {
                        reg->n_eps++;
                        int k = ep_fill(fb, reg->host, &regs[i].endpoints[j], &reg->eps[j], errors);
                        if (k < 0 && (r == 0 || k == -ENOMEM))
                                r = k;
                }
        }
        if (r < 0)
                goto fail;
        pthread_mutex_lock(&fb->lock);
        struct config *old = fb->config;
        fb->config = c;
        config_unref_locked(fb, old);
        pthread_mutex_unlock(&fb->lock);
        return 0;
fail:
        config_unref(fb, c);
        return r;
}

/* ---- circuit breakers -------------------------------------------------------- */

struct event_buf {
        struct fallback_event ev;
        char reason[256];
        bool set;
};

static void emit(struct fallback *fb, struct event_buf *b) {
        if (b->set && fb->o.on_event)
                fb->o.on_event(&b->ev, fb->o.userdata);
        b->set = false;
}

static uint64_t rng_next_locked(struct fallback *fb) {
        /* xorshift64*: jitter only, no need for more. */
        fb->rng ^= fb->rng >> 12;
        fb->rng ^= fb->rng << 25;
        fb->rng ^= fb->rng >> 27;
        return fb->rng * 2685821657736338717ULL;
}

enum admit {
        ADMIT_NO,
        ADMIT_YES,
        ADMIT_PROBE,
};

static enum admit breaker_admit(struct fallback *fb, struct ep_state *st, uint64_t now, struct event_buf *evb) {
        enum admit a = ADMIT_YES;
        pthread_mutex_lock(&fb->lock);
        if (st->state == FALLBACK_BREAKER_OPEN && now >= st->open_until) {
                st->state = FALLBACK_BREAKER_HALF_OPEN;
                st->probe_in_flight = false;
                evb->ev = (struct fallback_event) { .type = FALLBACK_EVENT_BREAKER_HALF_OPEN, .registry = st->registry,
                                                    .endpoint = st->url, .reason = "backoff over" };
                evb->set = true;
        }
        if (st->state == FALLBACK_BREAKER_OPEN)
                a = ADMIT_NO;
        else if (st->state == FALLBACK_BREAKER_HALF_OPEN) {
                a = st->probe_in_flight ? ADMIT_NO : ADMIT_PROBE;
                st->probe_in_flight = true;
        }
        pthread_mutex_unlock(&fb->lock);
        return a;
}

/* The endpoint answered as a server should (2xx, or a 4xx that is an answer). */
static void breaker_success(struct fallback *fb, struct ep_state *st, struct event_buf *evb) {
        pthread_mutex_lock(&fb->lock);
        if (st->state != FALLBACK_BREAKER_CLOSED) {
                evb->ev = (struct fallback_event) { .type = FALLBACK_EVENT_BREAKER_CLOSED, .registry = st->registry,
                                                    .endpoint = st->url, .reason = "probe succeeded" };
                evb->set = true;
        }
        st->state = FALLBACK_BREAKER_CLOSED;
        st->failures = 0;
        st->backoff_ms = 0;
        st->probe_in_flight = false;
        pthread_mutex_unlock(&fb->lock);
}

/* A probe that ended without a verdict (the receiver gave up): the next request probes. */
static void breaker_release(struct fallback *fb, struct ep_state *st) {
        pthread_mutex_lock(&fb->lock);
        st->probe_in_flight = false;
        pthread_mutex_unlock(&fb->lock);
}

static void breaker_failure(struct fallback *fb, struct ep_state *st, const char *reason, uint64_t at_least_ms,
                            struct event_buf *evb) {
        pthread_mutex_lock(&fb->lock);
        st->failed++;
        st->failures++;
        /* A request let through before the breaker opened that fails in the
         * same outage is counted, but neither opens it again nor doubles the
         * backoff (else a burst of N requests would start at min * 2^N). */
        if (st->state != FALLBACK_BREAKER_OPEN &&
            (st->state == FALLBACK_BREAKER_HALF_OPEN || st->failures >= fb->o.breaker_failures)) {
                /* Exponential from the minimum, capped; jitter in [50%, 100%] so
                 * that nodes that saw the same outage do not probe in step. */
                uint64_t b = st->backoff_ms ? st->backoff_ms * 2 : fb->o.breaker_backoff_min_ms;
                if (b > fb->o.breaker_backoff_max_ms)
                        b = fb->o.breaker_backoff_max_ms;
                st->backoff_ms = b;
                uint64_t wait = b / 2 + rng_next_locked(fb) % (b / 2 + 1);
                if (wait < at_least_ms)
                        wait = at_least_ms < fb->o.breaker_backoff_max_ms ? at_least_ms : fb->o.breaker_backoff_max_ms;
                st->state = FALLBACK_BREAKER_OPEN;
                st->open_until = time_now_ms() + wait;
                st->opens++;
                snprintf(evb->reason, sizeof(evb->reason), "%s", reason);
                evb->ev = (struct fallback_event) { .type = FALLBACK_EVENT_BREAKER_OPEN, .registry = st->registry,
                                                    .endpoint = st->url, .reason = evb->reason, .backoff_ms = wait };
                evb->set = true;
        }
        st->probe_in_flight = false;
        pthread_mutex_unlock(&fb->lock);
}

const char *fallback_breaker_state_to_string(enum fallback_breaker_state s) {
        static const char *const names[_FALLBACK_BREAKER_STATE_MAX] = {
                [FALLBACK_BREAKER_CLOSED] = "closed",
                [FALLBACK_BREAKER_OPEN] = "open",
                [FALLBACK_BREAKER_HALF_OPEN] = "half-open",
        };
        return s >= 0 && s < _FALLBACK_BREAKER_STATE_MAX ? names[s] : NULL;
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

struct buf {
        char *data;
        size_t len, max;
};

static int buf_append(void *userdata, const void *data, size_t size) {
        struct buf *b = userdata;
        if (size > b->max - b->len)
                return -EFBIG;
        char *n = realloc(b->data, b->len + size + 1);
        if (!n)
                return -ENOMEM;
        memcpy(n + b->len, data, size);
        b->data = n;
        b->len += size;
        b->data[b->len] = '\0';
        return 0;
}

static void buf_wipe(struct buf *b) {
        if (b->data)
                explicit_bzero(b->data, b->len);
        free(b->data);
        *b = (struct buf) { 0 };
}

/* Parses a token endpoint's answer: the token, and its lifetime in ms. */
static int token_parse(const struct buf *b, char **ret_token, uint64_t *ret_ttl_ms, char *reason, size_t rsize) {
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
        char *t = strdup(tok);
        if (!t)
                return -ENOMEM;
        *ret_token = t;
        *ret_ttl_ms = ms - margin;
        return 0;
}

static struct token *token_find(struct ep_state *st, const char *scope) {
        for (struct token *t = st->tokens; t; t = t->next)
                if (strcmp(t->scope, scope) == 0)
                        return t;
        return NULL;
}

/* A cached token for scope still valid, or NULL (caller frees). */
static char *token_peek(struct ep_state *st, const char *scope) {
        char *out = NULL;
        uint64_t now = time_now_ms();
        pthread_mutex_lock(&st->tlock);
        struct token *t = token_find(st, scope);
        if (t && t->value && now < t->expires_at)
                out = strdup(t->value);
        pthread_mutex_unlock(&st->tlock);
        return out;
}

/* Drops dead tokens, and the oldest beyond TOKENS_PER_ENDPOINT_MAX (new ones
 * are put first, so the one just fetched stays); never one being fetched. */
static void token_trim_locked(struct ep_state *st) {
        uint64_t now = time_now_ms();
        size_t kept = 0;
        for (struct token **p = &st->tokens; *p;) {
                struct token *t = *p;
                if (!t->fetching && (kept >= TOKENS_PER_ENDPOINT_MAX || !t->value || now >= t->expires_at)) {
                        *p = t->next;
                        token_free(t);
                        st->n_tokens--;
                } else {
                        kept++;
                        p = &t->next;
                }
        }
}

struct fetch;
static bool fetch_cancelled(const struct fetch *f);
static uint64_t fetch_deadline(const struct fetch *f);
static int token_request(struct fetch *f, const struct ep *e, const struct challenge *ch, const char *scope,
                         char **ret_token, uint64_t *ret_ttl, char *reason, size_t rsize);

/* A token for scope that is not `rejected`: a cached one, or one fetched now.
 * Only one fetch per endpoint and scope runs; concurrent callers wait for it. */
static int token_get(struct fetch *f, const struct ep *e, const struct challenge *ch, const char *scope,
                     const char *rejected, char **ret, char *reason, size_t rsize) {
        struct ep_state *st = e->st;
        uint64_t give_up = time_now_ms() + TOKEN_WAIT_MAX_MS;
        pthread_mutex_lock(&st->tlock);
        for (;;) {
                struct token *t = token_find(st, scope);
                if (t && t->fetching) {
                        /* In slices: a cancelled fetch stops waiting within 100 ms. */
                        uint64_t now = time_now_ms(), until = now + 100 < give_up ? now + 100 : give_up;
                        uint64_t deadline = fetch_deadline(f);
                        if (deadline && deadline < until)
                                until = deadline;
                        (void) time_cond_wait_until(&st->tcond, &st->tlock, until);
                        if (fetch_cancelled(f)) {
                                pthread_mutex_unlock(&st->tlock);
                                snprintf(reason, rsize, "cancelled");
                                return -ECANCELED;
                        }
                        now = time_now_ms();
                        if (now >= give_up || (deadline && now >= deadline)) {
                                pthread_mutex_unlock(&st->tlock);
                                snprintf(reason, rsize, "timed out waiting for a token");
                                return -ETIMEDOUT;
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
                        if (!t || !(t->scope = strdup(scope))) {
                                free(t);
                                pthread_mutex_unlock(&st->tlock);
                                return -ENOMEM;
                        }
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
                wipe_free(t->value);
                t->value = NULL;
                char *copy = NULL;
                if (r >= 0) {
                        t->value = value;
                        t->expires_at = time_now_ms() + ttl;
                        /* Copied under the lock: once it is released, the trim
                         * below or another thread's refresh may free value. */
                        copy = strdup(value);
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

/* ---- fetching ---------------------------------------------------------------- */

enum outcome {
        OUT_OK,       /* a good answer */
        OUT_ANSWER,   /* the endpoint answered with a non-2xx status (f->answer) */
        OUT_FAIL,     /* the endpoint failed (counts against its breaker) */
        OUT_BROKEN,   /* a blob body broke after some bytes: worth one resume from the same endpoint */
        OUT_ABORT,    /* the sink or memory gave up: the whole fetch ends */
};

struct fetch {
        struct fallback *fb;
        const struct fallback_request *req;
        struct fallback_response *resp;
        const struct registry *reg;
        char *repo;
        char *scope;
        bool by_digest;
        struct digest want;
        bool as_get;           /* a HEAD by tag that has to be answered with a GET */

        /* the current exchange */
        struct http_response *hr;
        bool body_started;
        uint64_t skip;         /* bytes to drop (an endpoint that ignored Range) */
        uint64_t attempt_bytes;
        int64_t total;         /* the blob's size as upstreams said it */
        struct buf manifest;
        int abort_error;
        bool prep_failed;      /* blob_prepare() refused the answer */

        long answer;           /* OUT_ANSWER's status */
        char reason[200];
};

/* What events name the request by: a tag list has no reference. */
static const char *event_reference(const struct fetch *f) {
        return f->req->kind == FALLBACK_TAGS ? "tags/list" : f->req->reference;
}

static bool fetch_cancelled(const struct fetch *f) {
        return f->req->cancelled && f->req->cancelled(f->req->cancel_userdata);
}

static uint64_t fetch_deadline(const struct fetch *f) {
        return f->req->deadline_ms;
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
        _cleanup_free_ char *realm_origin = url_origin(realm);
        _cleanup_free_ char *realm_scheme = url_part(realm, CURLUPART_SCHEME, 0);
        if (!realm_origin || !realm_scheme) {
                snprintf(reason, rsize, "token realm is not an http(s) URL");
                return -EPROTO;
        }
        /* Credentials go to the realm the registry names (that is the token
         * flow), but never in clear text to another host. */
        bool same = strcmp(realm_origin, e->origin) == 0;
        bool send_creds = e->creds && (same || strcmp(realm_scheme, "https") == 0);

        CURLU *u = curl_url();
        char *url = NULL;
        bool ok = u && curl_url_set(u, CURLUPART_URL, realm, 0) == CURLUE_OK;
        _cleanup_free_ char *q1 = NULL, *q2 = NULL;
        if (ok && service && asprintf(&q1, "service=%s", service) >= 0)
                ok = curl_url_set(u, CURLUPART_QUERY, q1, CURLU_APPENDQUERY | CURLU_URLENCODE) == CURLUE_OK;
        /* The challenge's scope may hold several, space-separated: one parameter each. */
        const char *scopes = ch_scope ? ch_scope : scope;
        for (const char *p = scopes; ok && *p;) {
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
                .user = send_creds ? e->creds->user : NULL,
                .password = send_creds ? e->creds->password : NULL,
                .on_body = buf_append,
                .userdata = &b,
                .deadline_ms = f->req->deadline_ms,
                .cancelled = f->req->cancelled,
                .cancel_userdata = f->req->cancel_userdata,
        };
        pthread_mutex_lock(&f->fb->lock);
        e->st->token_fetches++;
        pthread_mutex_unlock(&f->fb->lock);
        int r = http_perform(f->fb->http, &rq, &hr);
        curl_free(url);
        if (r < 0)
                snprintf(reason, rsize, "token endpoint: %s", hr.reason);
        else if (hr.status != 200) {
                snprintf(reason, rsize, "token endpoint: HTTP %ld%s", hr.status,
                         hr.status == 401 || hr.status == 403 ? (e->creds ? " (credentials refused)" : " (credentials needed)") : "");
                r = hr.status == 401 || hr.status == 403 ? -EACCES : -EPROTO;
        } else
                r = token_parse(&b, ret_token, ret_ttl, reason, rsize);
        buf_wipe(&b);
        http_response_done(&hr);
        return r;
}

static enum outcome blob_prepare(struct fetch *f);

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

static int on_body(void *userdata, const void *data, size_t size) {
        struct fetch *f = userdata;
        const struct fallback_request *req = f->req;

        if (req->kind != FALLBACK_BLOB) { /* manifests and tag lists: read whole, bounded */
                int r = buf_append(&f->manifest, data, size);
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
        if (asprintf(&url, "%s%s/%s/%s/%s%s%s", e->url, e->override_path ? "" : "/v2", f->repo,
                     f->req->kind == FALLBACK_MANIFEST ? "manifests" : "blobs", f->req->reference,
                     e->is_origin ? "" : "?ns=", ns) < 0)
                return NULL;
        return url;
}

static enum outcome fail(struct fetch *f, const char *fmt, ...) _printf_(2, 3);
static enum outcome fail(struct fetch *f, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->reason, sizeof(f->reason), fmt, ap);
        va_end(ap);
        for (char *c = f->reason; *c; c++) /* log fields are quoted: see http.c set_reason() */
                if (*c == '"')
                        *c = '\'';
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

/* Checks a 2xx answer and fills the response. */
static enum outcome accept_answer(struct fetch *f, const struct ep *e) {
        struct http_response *hr = f->hr;
        struct fallback_response *resp = f->resp;
        const struct fallback_request *req = f->req;
        struct digest claimed;
        bool has_claim = hr->digest && digest_parse(hr->digest, &claimed) == 0;

        if (hr->digest && !has_claim)
                return fail(f, "bad Docker-Content-Digest \"%.80s\"", hr->digest);

        if (req->kind == FALLBACK_BLOB) {
                if (has_claim && !digest_equal(&claimed, &f->want))
                        return fail(f, "Docker-Content-Digest is another blob's");
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

        if (req->kind == FALLBACK_TAGS) {
                /* Unverifiable by nature (no digest): the caller parses it strictly. */
                if (hr->link) {
                        int r = fallback_link_next_last(hr->link, &resp->next_last);
                        if (r == -ENOMEM) {
                                f->abort_error = r;
                                return OUT_ABORT;
                        }
                }
                resp->size = (int64_t) f->manifest.len;
                resp->body = TAKE_PTR(f->manifest.data);
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
                                return fail(f, "Docker-Content-Digest is another manifest's");
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
                return fail(f, "digest mismatch: asked for %s, got %s", digest_to_string(&f->want, a),
                            digest_to_string(&got, b));
        if (!f->by_digest && has_claim && !digest_equal(&got, &claimed))
                return fail(f, "digest mismatch: Docker-Content-Digest %s, content %s", digest_to_string(&claimed, a),
                            digest_to_string(&got, b));
        resp->has_digest = true;
        resp->digest = got;
        resp->size = (int64_t) f->manifest.len;
        resp->media_type = manifest_media_type(hr, &f->manifest);
        resp->body = TAKE_PTR(f->manifest.data);
        f->manifest = (struct buf) { .max = FALLBACK_MANIFEST_MAX };
        (void) e;
        return OUT_OK;
}

/* "bytes A-B/TOTAL" -> A and TOTAL (-1 for "*"). */
static int parse_content_range(const char *s, uint64_t *ret_start, int64_t *ret_total) {
        /* Strict digits (parse_uint: no sign, no space, no overflow), not sscanf. */
        char buf[96];
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
                        return fail(f, "bad Docker-Content-Digest \"%.80s\"", hr->digest);
                if (!digest_equal(&claimed, &f->want))
                        return fail(f, "Docker-Content-Digest is another blob's");
        }
        if (hr->status == 206) {
                uint64_t start;
                if (parse_content_range(hr->content_range, &start, &total) < 0 || start != at)
                        return fail(f, "206 with Content-Range \"%.60s\" for bytes %" PRIu64 "-",
                                    hr->content_range ? hr->content_range : "", at);
        } else {
                /* 200: the whole blob, whatever was asked (an endpoint that ignores Range). */
                total = hr->content_length;
                f->skip = at;
        }
        if (total >= 0 && f->total >= 0 && total != f->total)
                return fail(f, "size %" PRId64 " differs from %" PRId64 " said before", total, f->total);
        if (total >= 0 && (uint64_t) total < at)
                return fail(f, "size %" PRId64 " is less than the %" PRIu64 " bytes already received", total, at);
        if (total >= 0)
                f->total = total;
        return OUT_OK;
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

/* Frees a header list, wiping each line first: one may be "Authorization: ...". */
static void slist_wipe_free(struct curl_slist *l) {
        for (struct curl_slist *i = l; i; i = i->next)
                if (i->data)
                        explicit_bzero(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

static bool header_add(struct curl_slist **l, const char *line) {
        struct curl_slist *n = curl_slist_append(*l, line);
        if (!n)
                return false;
        *l = n;
        return true;
}

/* One endpoint: the request, with its auth round trips and redirects. */
static enum outcome attempt(struct fetch *f, const struct ep *e) {
        const struct fallback_request *req = f->req;
        _cleanup_free_ char *first = build_url(f, e);
        _cleanup_free_ char *url = NULL;
        _cleanup_free_ char *token = token_peek(e->st, f->scope);
        char *cur = first;
        bool same_host = true, refreshed = false, basic = false, downgraded = false;
        unsigned redirects = 0;
        struct http_response hr = { 0 };
        enum outcome out;

        if (!first) {
                f->abort_error = -ENOMEM;
                return OUT_ABORT;
        }
        f->as_get = false; /* a HEAD stays a HEAD on the next endpoint */
        http_response_done(&hr);
        f->hr = &hr;
        pthread_mutex_lock(&f->fb->lock);
        basic = e->st->wants_basic && e->creds;
        pthread_mutex_unlock(&f->fb->lock);

        for (;;) {
                struct curl_slist *hdrs = NULL;
                char line[512];
                bool ok = true;
                bool head = req->head && !f->as_get;
                if (req->kind == FALLBACK_MANIFEST) {
                        snprintf(line, sizeof(line), "Accept: %.490s", req->accept ? req->accept : FALLBACK_ACCEPT_DEFAULT);
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
                if (same_host && token && !basic) {
                        if (asprintf(&bearer, "Authorization: Bearer %s", token) < 0)
                                bearer = NULL;
                        ok = ok && bearer && header_add(&hdrs, bearer);
                }
                for (const struct curl_slist *h = same_host ? e->headers : NULL; ok && h; h = h->next)
                        ok = header_add(&hdrs, h->data);
                if (!ok) {
                        if (bearer)
                                explicit_bzero(bearer, strlen(bearer));
                        slist_wipe_free(hdrs);
                        http_response_done(&hr);
                        f->abort_error = -ENOMEM;
                        return OUT_ABORT;
                }

                f->body_started = false;
                f->skip = 0;
                f->attempt_bytes = 0;
                buf_wipe(&f->manifest);
                f->manifest.max = FALLBACK_MANIFEST_MAX;
                struct http_request rq = {
                        .url = cur,
                        .head = head,
                        .headers = hdrs,
                        .user_agent = f->fb->user_agent,
                        /* The CA is trust, not a secret: a registry on a private CA may
                         * redirect to its own storage elsewhere (containerd uses the
                         * host's TLS config for redirects too). The rest stays home. */
                        .ca_file = e->ca_file,
                        .client_cert = same_host ? e->client_cert : NULL,
                        .client_key = same_host ? e->client_key : NULL,
                        .skip_verify = same_host && e->skip_verify,
                        .connect_timeout_ms = e->connect_ms,
                        .response_timeout_ms = e->response_ms,
                        .idle_timeout_ms = e->idle_ms,
                        .user = same_host && basic ? e->creds->user : NULL,
                        .password = same_host && basic ? e->creds->password : NULL,
                        .on_body = on_body,
                        .userdata = f,
                        /* Bounds a whole exchange too: a body trickling in within the idle
                         * timeout cannot hold a caller past its deadline (blob downloads,
                         * long by nature, come without one). */
                        .deadline_ms = req->deadline_ms,
                        .cancelled = req->cancelled,
                        .cancel_userdata = req->cancel_userdata,
                };
                f->prep_failed = false;
                int r = http_perform(f->fb->http, &rq, &hr);
                if (bearer)
                        explicit_bzero(bearer, strlen(bearer));
                slist_wipe_free(hdrs);
                f->resp->attempts++;

                struct event_buf evb = { 0 };
                pthread_mutex_lock(&f->fb->lock);
                e->st->requests++;
                e->st->bytes += f->attempt_bytes;
                pthread_mutex_unlock(&f->fb->lock);
                record_ratelimit(f, e, &evb);
                emit(f->fb, &evb);

                if (r < 0) {
                        if (f->prep_failed)
                                out = OUT_FAIL; /* f->reason says why */
                        else if (f->abort_error < 0) {
                                snprintf(f->reason, sizeof(f->reason), "%s", hr.reason);
                                out = OUT_ABORT;
                        } else if (r == -EFBIG && req->kind == FALLBACK_MANIFEST)
                                out = fail(f, "manifest larger than %u bytes", FALLBACK_MANIFEST_MAX);
                        else if (r == -ENOMEM || r == -ECANCELED) {
                                f->abort_error = r;
                                snprintf(f->reason, sizeof(f->reason), "%s", hr.reason);
                                out = OUT_ABORT;
                        } else if (r == -ECONNABORTED && req->kind == FALLBACK_BLOB && !req->head && f->body_started &&
                                   f->total >= 0 && req->offset + f->resp->received == (uint64_t) f->total) {
                                /* Every byte is here, only the connection's end was rough:
                                 * the sink's owner verifies the digest. */
                                out = accept_answer(f, e);
                        } else {
                                out = fail(f, "%s", hr.reason);
                                /* A connection that broke mid-body (not a stall) is worth one resume there. */
                                if (r == -ECONNABORTED && req->kind == FALLBACK_BLOB && f->attempt_bytes > 0)
                                        out = OUT_BROKEN;
                        }
                        break;
                }

                long s = hr.status;
                if (is_redirect(s) && hr.location) {
                        if (++redirects > FALLBACK_REDIRECTS_MAX) {
                                out = fail(f, "more than %d redirects", FALLBACK_REDIRECTS_MAX);
                                break;
                        }
                        char *next = resolve_location(cur, hr.location);
                        if (!next) {
                                out = fail(f, "redirect to a location that is not http(s)");
                                break;
                        }
                        if (strncmp(cur, "https://", 8) == 0 && strncmp(next, "http://", 7) == 0)
                                downgraded = true;
                        free(url);
                        url = next;
                        cur = url;
                        if (downgraded) {
                                out = fail(f, "redirect from https to http refused");
                                break;
                        }
                        _cleanup_free_ char *o = url_origin(cur);
                        if (!o || strcmp(o, e->origin) != 0)
                                same_host = false; /* and stays so for later hops */
                        continue;
                }
                if (s == 401 && same_host && !refreshed) {
                        struct challenge_list cl = { 0 };
                        if (hr.challenge && challenge_parse(hr.challenge, &cl) == 0) {
                                const struct challenge *bc = challenge_find(&cl, "bearer");
                                const struct challenge *bas = challenge_find(&cl, "basic");
                                if (bc) {
                                        char *fresh = NULL;
                                        if (basic) {
                                                /* The endpoint moved on to tokens: stop sending Basic. */
                                                basic = false;
                                                pthread_mutex_lock(&f->fb->lock);
                                                e->st->wants_basic = false;
                                                pthread_mutex_unlock(&f->fb->lock);
                                        }
                                        int k = token_get(f, e, bc, f->scope, token, &fresh, f->reason,
                                                          sizeof(f->reason));
                                        challenge_list_done(&cl);
                                        if (k == -ENOMEM || k == -ECANCELED) {
                                                /* Not the endpoint's fault: no blame, the fetch ends. */
                                                f->abort_error = k;
                                                out = OUT_ABORT;
                                                break;
                                        }
                                        if (k == -EACCES) { /* wrong or missing credentials: an answer, not a failure */
                                                f->answer = 401;
                                                out = OUT_ANSWER;
                                                break;
                                        }
                                        if (k < 0) {
                                                out = OUT_FAIL;
                                                break;
                                        }
                                        wipe_free(token);
                                        token = fresh;
                                        refreshed = true;
                                        continue;
                                }
                                if (bas && e->creds && !basic) {
                                        challenge_list_done(&cl);
                                        basic = refreshed = true;
                                        pthread_mutex_lock(&f->fb->lock);
                                        e->st->wants_basic = true;
                                        pthread_mutex_unlock(&f->fb->lock);
                                        continue;
                                }
                        }
                        challenge_list_done(&cl);
                }
                if (s >= 200 && s <= 299) {
                        out = accept_answer(f, e);
                        if (out == OUT_ANSWER && f->as_get)
                                continue; /* the HEAD by tag, again as a GET */
                        break;
                }
                /* 416: a resume the endpoint cannot serve; never a final answer for the client. */
                if (s == 429 || s == 416 || s >= 500 || s < 200 || is_redirect(s)) {
                        out = fail(f, "HTTP %ld%s", s, s == 429 ? " (rate limited)" : "");
                        break;
                }
                snprintf(f->reason, sizeof(f->reason), "HTTP %ld", s);
                f->answer = s;
                out = OUT_ANSWER;
                break;
        }
        if (out == OUT_FAIL && hr.status == 429 && hr.retry_after_s > 0)
                f->answer = -(long) hr.retry_after_s; /* read by the chain walk as a backoff floor */
        wipe_free(TAKE_PTR(token));
        http_response_done(&hr);
        f->hr = NULL;
        return out;
}

static void failover_event(struct fetch *f, const struct ep *e, bool answered, bool last, struct event_buf *evb) {
        snprintf(evb->reason, sizeof(evb->reason), "%s", f->reason);
        evb->ev = (struct fallback_event) { .type = FALLBACK_EVENT_FAILOVER, .registry = f->reg->host,
                                            .repository = f->repo, .reference = event_reference(f),
                                            .endpoint = e->url, .reason = evb->reason, .answered = answered,
                                            .last = last };
        evb->set = true;
}

static void count_answer(struct fallback *fb, const struct ep *e, bool ok) {
        pthread_mutex_lock(&fb->lock);
        if (ok)
                e->st->ok++;
        else
                e->st->not_found++;
        pthread_mutex_unlock(&fb->lock);
}

/* containerd's capabilities: "resolve" answers tags, "pull" serves content by digest. */
static bool eligible(const struct ep *e, const struct fetch *f) {
        bool tag = (f->req->kind == FALLBACK_MANIFEST && !f->by_digest) || f->req->kind == FALLBACK_TAGS;
        return tag ? !e->no_resolve : !e->no_pull;
}

static int request_check(const struct fallback_request *req, struct fetch *f) {
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

/* f->repo and f->scope for f->req on f->reg. */
static int fetch_names(struct fetch *f) {
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
        return 0;
}

/* ---- background probes ---------------------------------------------------------
 * When an endpoint's backoff is over, one request has to find out whether it
 * mended. Were that a client's request, a dead endpoint would cost that client
 * its whole timeout once per backoff (1 s, 2 s, ... 60 s): the request that
 * finds the breaker half-open goes on to the next endpoint instead, and the
 * same exchange as a HEAD (no body, no Docker Hub "pull") probes the endpoint
 * on a thread of its own. Its outcome closes or reopens the breaker as a
 * client's request would. Only when no later endpoint could serve does the
 * client's request probe itself: it has nothing better to do. */
struct probe {
        struct fallback *fb;
        struct config *cfg; /* a reference: reg and e point into it */
        const struct registry *reg;
        const struct ep *e;
        struct fallback_request req;
        char *repository, *reference, *accept;
};

static bool probe_cancelled(void *userdata) {
        struct fallback *fb = userdata;
        return atomic_load(&fb->closing);
}

static void probe_free(struct probe *p) {
        free(p->repository);
        free(p->reference);
        free(p->accept);
        free(p);
}

static void *probe_main(void *userdata) {
        struct probe *p = userdata;
        struct fallback *fb = p->fb;
        struct fallback_response resp = { .size = -1 };
        struct fetch f = { .fb = fb, .req = &p->req, .resp = &resp, .reg = p->reg, .total = -1,
                           .manifest = { .max = FALLBACK_MANIFEST_MAX } };
        struct event_buf evb = { 0 };
        if (request_check(&p->req, &f) < 0 || fetch_names(&f) < 0) {
                breaker_release(fb, p->e->st);
        } else {
                enum outcome o = attempt(&f, p->e);
                /* Reconfigured meanwhile: this probe spoke with the old settings
                 * (CA, credentials, timeouts); it decides nothing. */
                pthread_mutex_lock(&fb->lock);
                bool stale = fb->config != p->cfg;
                pthread_mutex_unlock(&fb->lock);
                if (stale)
                        o = OUT_ABORT;
                switch (o) {
                case OUT_OK:
                        breaker_success(fb, p->e->st, &evb);
                        count_answer(fb, p->e, true);
                        break;
                case OUT_ANSWER:
                        breaker_success(fb, p->e->st, &evb);
                        count_answer(fb, p->e, false);
                        break;
                case OUT_ABORT:
                        breaker_release(fb, p->e->st);
                        break;
                default:
                        breaker_failure(fb, p->e->st, f.reason, f.answer < 0 ? (uint64_t) -f.answer * 1000 : 0, &evb);
                        break;
                }
        }
        emit(fb, &evb);
        buf_wipe(&f.manifest);
        free(f.repo);
        free(f.scope);
        fallback_response_done(&resp);
        pthread_mutex_lock(&fb->lock);
        config_unref_locked(fb, p->cfg);
        if (--fb->probes == 0)
                pthread_cond_broadcast(&fb->probes_done);
        pthread_mutex_unlock(&fb->lock);
        probe_free(p);
        return NULL;
}

/* Probes e (whose breaker f's request was admitted to probe) in the
 * background with a HEAD of the same object; 0 when started. */
static int probe_start(struct fetch *f, struct config *cfg, const struct ep *e) {
        struct fallback *fb = f->fb;
        const struct fallback_request *req = f->req;
        struct probe *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (struct probe) { .fb = fb, .cfg = cfg, .reg = f->reg, .e = e };
        p->repository = strdup(req->repository);
        p->reference = strdup(req->reference);
        p->accept = req->accept ? strdup(req->accept) : NULL;
        if (!p->repository || !p->reference || (req->accept && !p->accept)) {
                probe_free(p);
                return -ENOMEM;
        }
        p->req = (struct fallback_request) { .registry = f->reg->host, .repository = p->repository,
                                             .kind = req->kind, .reference = p->reference, .head = true,
                                             .accept = p->accept, .cancelled = probe_cancelled,
                                             .cancel_userdata = fb };
        /* closing is read under the lock that fallback_free() counts probes under. */
        pthread_mutex_lock(&fb->lock);
        bool closing = atomic_load(&fb->closing);
        if (!closing) {
                cfg->refs++;
                fb->probes++;
        }
        pthread_mutex_unlock(&fb->lock);
        if (closing) {
                probe_free(p);
                return -ECANCELED;
        }

        pthread_attr_t attr;
        pthread_t t;
        int r = pthread_attr_init(&attr);
        if (r == 0) {
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                pthread_attr_setstacksize(&attr, 512 * 1024);
                r = pthread_create(&t, &attr, probe_main, p);
                pthread_attr_destroy(&attr);
        }
        if (r != 0) {
                pthread_mutex_lock(&fb->lock);
                config_unref_locked(fb, cfg);
                if (--fb->probes == 0)
                        pthread_cond_broadcast(&fb->probes_done);
                pthread_mutex_unlock(&fb->lock);
                probe_free(p);
                return -r;
        }
        return 0;
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

int fallback_fetch(struct fallback *fb, const struct fallback_request *req, struct fallback_response *ret) {
        struct fetch f = { .fb = fb, .req = req, .resp = ret, .total = -1,
                           .manifest = { .max = FALLBACK_MANIFEST_MAX } };
        *ret = (struct fallback_response) { .size = -1 };
        int r = request_check(req, &f);
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
        r = fetch_names(&f);
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
                enum admit a = breaker_admit(fb, e->st, now, &evb);
                emit(fb, &evb);
                if (a == ADMIT_NO)
                        continue;
                /* A tag list has no HEAD to probe with (and no reference): it probes itself. */
                if (a == ADMIT_PROBE && req->kind != FALLBACK_TAGS && later_usable(&f, i, now) &&
                    probe_start(&f, cfg, e) == 0)
                        continue; /* probed in the background; this request goes on */
                for (;;) {
                        if (req->cancelled && req->cancelled(req->cancel_userdata)) {
                                breaker_release(fb, e->st);
                                snprintf(ret->error, sizeof(ret->error), "cancelled");
                                r = -ECANCELED;
                                goto out;
                        }
                        if (ret->attempts >= max || (req->deadline_ms && time_now_ms() >= req->deadline_ms)) {
                                snprintf(f.reason, sizeof(f.reason), "gave up after %u requests", ret->attempts);
                                breaker_release(fb, e->st);
                                goto walked;
                        }
                        if (req->kind == FALLBACK_BLOB && !req->head && ret->received > 0) {
                                evb.ev = (struct fallback_event) { .type = FALLBACK_EVENT_RESUME, .registry = f.reg->host,
                                                                   .repository = f.repo, .reference = req->reference,
                                                                   .endpoint = e->url,
                                                                   .offset = req->offset + ret->received };
                                evb.set = true;
                                emit(fb, &evb);
                                pthread_mutex_lock(&fb->lock);
                                e->st->resumes++;
                                pthread_mutex_unlock(&fb->lock);
                        }
                        any_tried = true;
                        f.answer = 0;
                        uint64_t before = ret->received;
                        enum outcome o = attempt(&f, e);
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
                                breaker_success(fb, e->st, &evb);
                                count_answer(fb, e, true);
                                ret->status = 200;
                                answered = true;
                                break;
                        case OUT_ANSWER:
                                breaker_success(fb, e->st, &evb);
                                emit(fb, &evb); /* a CLOSED event first: the failover one reuses evb */
                                count_answer(fb, e, false);
                                /* A mirror's 401/403/404 means "not here": the origin may have it. */
                                if (last) {
                                        ret->status = (int) f.answer;
                                        answered = true;
                                } else {
                                        failover_event(&f, e, true, last, &evb);
                                }
                                break;
                        case OUT_ABORT:
                                breaker_release(fb, e->st);
                                r = f.abort_error < 0 ? f.abort_error : -ENOMEM;
                                snprintf(ret->error, sizeof(ret->error), "%s", f.reason);
                                goto out;
                        default: { /* OUT_FAIL, or OUT_BROKEN twice */
                                uint64_t floor_ms = f.answer < 0 ? (uint64_t) -f.answer * 1000 : 0;
                                breaker_failure(fb, e->st, f.reason, floor_ms, &evb);
                                emit(fb, &evb);
                                failover_event(&f, e, false, last, &evb);
                                break;
                        }
                        }
                        emit(fb, &evb);
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
        buf_wipe(&f.manifest);
        free(f.repo);
        free(f.scope);
        config_unref(fb, cfg);
        return r;
}

void fallback_response_done(struct fallback_response *r) {
        free(r->endpoint);
        free(r->media_type);
        free(r->body);
        free(r->next_last);
        *r = (struct fallback_response) { .size = -1 };
}

void fallback_report_bad(struct fallback *fb, const char *registry, const char *endpoint, const char *reason) {
        struct ep_state *st = NULL;
        struct event_buf evb = { 0 };
        pthread_mutex_lock(&fb->lock);
        for (struct ep_state *s = fb->states; s; s = s->next)
                if (strcasecmp(s->registry, registry) == 0 && strcmp(s->url, endpoint) == 0) {
                        st = s;
                        st->refs++;
                        break;
                }
        pthread_mutex_unlock(&fb->lock);
        if (!st)
                return;
        breaker_failure(fb, st, reason, 0, &evb);
        emit(fb, &evb);
        pthread_mutex_lock(&fb->lock);
        ep_state_unref_locked(fb, st);
        pthread_mutex_unlock(&fb->lock);
}

void fallback_foreach_endpoint(struct fallback *fb,
                               void (*fn)(const struct fallback_endpoint_stats *s, void *userdata), void *userdata) {
        pthread_mutex_lock(&fb->lock);
        const struct config *c = fb->config;
        for (size_t i = 0; c && i < c->n_regs; i++)
                for (size_t j = 0; j < c->regs[i].n_eps; j++) {
                        const struct ep_state *st = c->regs[i].eps[j].st;
                        struct fallback_endpoint_stats s = {
                                .registry = c->regs[i].host,
                                .endpoint = st->url,
                                .state = st->state,
                                .consecutive_failures = st->failures,
                                .requests = st->requests,
                                .ok = st->ok,
                                .failures = st->failed,
                                .not_found = st->not_found,
                                .bytes = st->bytes,
                                .breaker_opens = st->opens,
                                .resumes = st->resumes,
                                .token_fetches = st->token_fetches,
                                .ratelimit_limit = st->rl_limit,
                                .ratelimit_remaining = st->rl_remaining,
                        };
                        fn(&s, userdata);
                }
        pthread_mutex_unlock(&fb->lock);
}
