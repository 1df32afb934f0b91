/* SPDX-License-Identifier: Apache-2.0 */
/* The client's state and its configuration: a struct fallback's life, the
 * per-endpoint state that outlives a reconfiguration (breakers, counters,
 * tokens), the spec's endpoints turned into immutable settings, and the
 * counters read back from them. */
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "common/filestamp.h"
#include "common/time.h"
#include "common/macro.h"
#include "fallback/fallback-internal.h"

/* jansson copies what it parses (a helper's Secret, a token answer's tokens)
 * into memory of its own, and grows its buffers by copying: all of it is
 * wiped when jansson frees it, not only the copies layerd makes. */
static void json_free_wiped(void *p) {
        if (p) {
                explicit_bzero(p, malloc_usable_size(p));
                free(p);
        }
}

/* libcurl likewise: the request it builds (an Authorization line in it), a
 * token answer it received, are in its buffers; each is wiped when freed.
 * A wipe per free, not per byte: transfers keep their buffers throughout. */
static void *curl_realloc_wiped(void *p, size_t size) {
        if (!p)
                return malloc(size);
        /* Never in place: realloc would free a moved block unwiped. */
        size_t old = malloc_usable_size(p);
        void *n = malloc(size ? size : 1);
        if (!n)
                return NULL;
        memcpy(n, p, old < size ? old : size);
        json_free_wiped(p);
        return n;
}

int fallback_global_init(void) {
        json_set_alloc_funcs(malloc, json_free_wiped);
        return curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, json_free_wiped, curl_realloc_wiped, strdup,
                                    calloc) == CURLE_OK
                       ? 0
                       : -EIO;
}

void fallback_global_done(void) {
        curl_global_cleanup();
}

void fallback_ep_state_unref_locked(struct fallback *fb, struct ep_state *st) {
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
                fallback_token_free(t);
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

void fallback_config_unref_locked(struct fallback *fb, struct config *c) {
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
                        fallback_credsource_free(e->cs);
                        curl_slist_free_all(e->headers);
                        fallback_ep_state_unref_locked(fb, e->st);
                }
                free(r->eps);
                free(r->host);
        }
        free(c->regs);
        free(c);
}

void fallback_config_unref(struct fallback *fb, struct config *c) {
        pthread_mutex_lock(&fb->lock);
        fallback_config_unref_locked(fb, c);
        pthread_mutex_unlock(&fb->lock);
}

int fallback_new(const struct fallback_options *o, struct fallback **ret) {
        struct fallback *fb = calloc(1, sizeof(*fb));
        if (!fb)
                return -ENOMEM;
        pthread_mutex_init(&fb->lock, NULL);
        pthread_mutex_init(&fb->reconfigure, NULL);
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
        fallback_config_unref_locked(fb, TAKE_PTR(fb->config));
        pthread_mutex_unlock(&fb->lock);
        http_client_free(fb->http);
        free(fb->user_agent);
        pthread_cond_destroy(&fb->probes_done);
        pthread_mutex_destroy(&fb->reconfigure);
        pthread_mutex_destroy(&fb->lock);
        free(fb);
        return NULL;
}

/* ---- configuration ----------------------------------------------------------- */

char *fallback_url_part(const char *url, CURLUPart part, unsigned flags) {
        CURLU *u = curl_url();
        char *v = NULL, *out = NULL;
        if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, part, &v, flags) == CURLUE_OK)
                out = strdup(v);
        curl_free(v);
        curl_url_cleanup(u);
        return out;
}

/* "scheme://host:port" (port always spelled out), or NULL. */
char *fallback_url_origin(const char *url) {
        _cleanup_free_ char *scheme = fallback_url_part(url, CURLUPART_SCHEME, 0);
        _cleanup_free_ char *host = fallback_url_part(url, CURLUPART_HOST, 0);
        _cleanup_free_ char *port = fallback_url_part(url, CURLUPART_PORT, CURLU_DEFAULT_PORT);
        char *out = NULL;
        if (!scheme || !host || !port || asprintf(&out, "%s://%s:%s", scheme, host, port) < 0)
                return NULL;
        return out;
}

/* host[:port] as clients name a registry (the port only when not the scheme's default). */
static char *url_hostport(const char *url) {
        _cleanup_free_ char *host = fallback_url_part(url, CURLUPART_HOST, 0);
        _cleanup_free_ char *port = fallback_url_part(url, CURLUPART_PORT, 0);
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
        e->origin = fallback_url_origin(c->url);
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
        e->allow_private_redirects = c->allow_private_redirects;
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
        if (c->credentials_file && c->credential_helper) {
                error_list_add(errors, 0, 0, "registry %s: endpoint %s: credentials_file and credential_helper both given",
                               registry, c->url);
                return -EINVAL;
        }
        struct credentials *creds = NULL;
        struct file_stamp stamp = { 0 };
        if (c->credentials_file) {
                size_t before = errors->n;
                /* Looked at before it is read: a change in between is seen on the next use. */
                (void) file_stamp_update(&stamp, c->credentials_file, time_now_ms());
                int r = credentials_load(c->credentials_file, e->host, &creds, errors);
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
                if (!creds)
                        error_list_add(errors, 0, 0, "registry %s: endpoint %s: %s has no credentials for %s",
                                       registry, c->url, c->credentials_file, e->host);
                if (!creds)
                        return -EINVAL;
        }
        if ((c->credentials_file || c->credential_helper) &&
            fallback_credsource_new(c, creds, c->credentials_file ? &stamp : NULL, &e->cs) < 0)
                return -ENOMEM;
        pthread_mutex_lock(&fb->lock);
        e->st = ep_state_get_locked(fb, registry, e->url);
        pthread_mutex_unlock(&fb->lock);
        return e->st ? 0 : -ENOMEM;
}

/* Sets the ep_state.cs of each of c's endpoints to its source (on), or to NULL. Under fb->lock and fb->reconfigure. */
static void link_sources_locked(const struct config *c, bool on) {
        for (size_t i = 0; c && i < c->n_regs; i++)
                for (size_t j = 0; j < c->regs[i].n_eps; j++)
                        c->regs[i].eps[j].st->cs = on ? c->regs[i].eps[j].cs : NULL;
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
        pthread_mutex_lock(&fb->reconfigure);
        /* An endpoint that stays keeps what its source knew (ep_state.cs: the published
         * configuration's, which nobody else replaces while fb->reconfigure is held). Before c
         * is published: no request may find one of its sources without it. */
        for (size_t i = 0; i < c->n_regs; i++)
                for (size_t j = 0; j < c->regs[i].n_eps; j++) {
                        struct ep *e = &c->regs[i].eps[j];
                        e->creds_changed = fallback_credsource_take_over(e->st->cs, e->cs);
                }
        pthread_mutex_lock(&fb->lock);
        struct config *old = fb->config;
        link_sources_locked(old, false);
        link_sources_locked(c, true);
        fb->config = c;
        pthread_mutex_unlock(&fb->lock);
        /* After it is published: a token that a request of the old configuration gets with the old
         * credentials from now on is not kept (fallback_tokens_gen()). */
        for (size_t i = 0; i < c->n_regs; i++)
                for (size_t j = 0; j < c->regs[i].n_eps; j++)
                        if (c->regs[i].eps[j].creds_changed)
                                fallback_tokens_drop(c->regs[i].eps[j].st);
        pthread_mutex_unlock(&fb->reconfigure);
        fallback_config_unref(fb, old);
        return 0;
fail:
        fallback_config_unref(fb, c);
        return r;
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
