/* SPDX-License-Identifier: Apache-2.0 */
/* Circuit breakers: when an endpoint is skipped, for how long, and how one
 * probe (a HEAD on a thread of its own, while clients go on to the next
 * endpoint) decides whether it mended. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/time.h"
#include "common/macro.h"
#include "fallback/fallback-internal.h"

/* ---- circuit breakers -------------------------------------------------------- */

void fallback_emit(struct fallback *fb, struct event_buf *b) {
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

enum admit fallback_breaker_admit(struct fallback *fb, struct ep_state *st, uint64_t now, struct event_buf *evb) {
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
void fallback_breaker_success(struct fallback *fb, struct ep_state *st, struct event_buf *evb) {
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
void fallback_breaker_release(struct fallback *fb, struct ep_state *st) {
        pthread_mutex_lock(&fb->lock);
        st->probe_in_flight = false;
        pthread_mutex_unlock(&fb->lock);
}

void fallback_breaker_failure(struct fallback *fb, struct ep_state *st, const char *reason, uint64_t at_least_ms,
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

/* ---- background probes ---------------------------------------------------------
 * When an endpoint's backoff is over, one request has to find out whether it
 * mended. Were that a client's request, a dead endpoint would cost that client
 * its whole timeout once per backoff (1 s, 2 s, ... 60 s): the request that
 * finds the breaker half-open goes on to the next endpoint instead, and the
 * same exchange as a HEAD (no body, no Docker Hub "pull") probes the endpoint
 * on a thread of its own. Its outcome closes or reopens the breaker as a
 * client's request would. Only when no later endpoint could serve does the
 * client's request probe itself: it has nothing better to do. Its response
 * head is then the verdict (fallback_on_head()), not the end of its body: a
 * blob trickling for minutes must not keep the registry's other requests
 * refused as "circuit open" all that time. */
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
        if (fallback_request_check(&p->req, &f) < 0 || fallback_fetch_names(&f) < 0) {
                fallback_breaker_release(fb, p->e->st);
        } else {
                enum outcome o = fallback_attempt(&f, p->e);
                /* Reconfigured meanwhile: this probe spoke with the old settings
                 * (CA, credentials, timeouts); it decides nothing. */
                pthread_mutex_lock(&fb->lock);
                bool stale = fb->config != p->cfg;
                pthread_mutex_unlock(&fb->lock);
                if (stale)
                        o = OUT_ABORT;
                switch (o) {
                case OUT_OK:
                        fallback_breaker_success(fb, p->e->st, &evb);
                        fallback_count_answer(fb, p->e, true);
                        break;
                case OUT_ANSWER:
                        fallback_breaker_success(fb, p->e->st, &evb);
                        fallback_count_answer(fb, p->e, false);
                        break;
                case OUT_ABORT:
                        fallback_breaker_release(fb, p->e->st);
                        break;
                default:
                        fallback_breaker_failure(fb, p->e->st, f.reason, f.answer < 0 ? (uint64_t) -f.answer * 1000 : 0, &evb);
                        break;
                }
        }
        fallback_emit(fb, &evb);
        fallback_manifest_wipe(&f);
        free(f.repo);
        free(f.scope);
        free(f.token_key);
        fallback_response_done(&resp);
        pthread_mutex_lock(&fb->lock);
        fallback_config_unref_locked(fb, p->cfg);
        if (--fb->probes == 0)
                pthread_cond_broadcast(&fb->probes_done);
        pthread_mutex_unlock(&fb->lock);
        probe_free(p);
        return NULL;
}

/* Probes e (whose breaker f's request was admitted to probe) in the
 * background with a HEAD of the same object; 0 when started. */
int fallback_breaker_probe(struct fetch *f, struct config *cfg, const struct ep *e) {
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
                fallback_config_unref_locked(fb, cfg);
                if (--fb->probes == 0)
                        pthread_cond_broadcast(&fb->probes_done);
                pthread_mutex_unlock(&fb->lock);
                probe_free(p);
                return -r;
        }
        return 0;
}

/* ---- reports from the caller ------------------------------------------------- */

/* A failure the caller saw that fallback could not (a blob whose digest did not
 * match once whole): it counts against the endpoint as one of its own would. */
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
        fallback_breaker_failure(fb, st, reason, 0, &evb);
        fallback_emit(fb, &evb);
        pthread_mutex_lock(&fb->lock);
        fallback_ep_state_unref_locked(fb, st);
        pthread_mutex_unlock(&fb->lock);
}
