/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared between the upstream client's own files (fallback.c: the chain walk
 * and one endpoint's exchange; answer.c: what an endpoint sent; token.c: the
 * token flow; breaker.c: circuit breakers and their background probes;
 * config.c: the state and the configuration); not part of its interface.
 *
 * Lock order: fb->reconfigure, then fb->lock, then an endpoint's token lock
 * (ep_state.tlock); never the other way round. A credentials source's lock
 * (credsource.c) is taken with no other held, or fb->reconfigure alone. */

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/macro.h"
#include "fallback/challenge.h"
#include "fallback/credentials.h"
#include "fallback/fallback.h"
#include "fallback/http.h"

/* ---- state (config.c) -------------------------------------------------------- */

struct token {
        struct token *next;
        char *scope;
        char *value; /* secret: wiped when freed */
        uint64_t expires_at; /* CLOCK_MONOTONIC ms */
        bool fetching;       /* one fetch in flight for this scope; others wait on tcond */
        bool client;         /* got with a client's credentials (CLIENT_TOKENS_PER_ENDPOINT_MAX) */
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
        uint64_t tokens_gen; /* tlock: counts fallback_tokens_drop(); a token fetched across one is not kept */

        /* The published configuration's source of this endpoint's credentials (NULL: none, or not in
         * it): what a reload's new source takes over from. Written under fb->reconfigure and fb->lock. */
        struct credsource *cs;
};

/* One endpoint's settings, immutable once configured. */
struct ep {
        char *url;
        char *host; /* host[:port] of url, for credentials and same-host checks */
        char *origin; /* scheme://host:port */
        bool is_origin, override_path, skip_verify;
        bool allow_private_redirects; /* a hop away may go to any class of address (fallback/addr.h) */
        bool no_pull, no_resolve; /* containerd's capabilities, negated: zero is "may" */
        char *ca_file, *client_cert, *client_key;
        struct credsource *cs; /* where the credentials come from; NULL: anonymous */
        bool creds_changed;    /* fallback_configure(): a reload changed them (the tokens go once it is published) */
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
        pthread_mutex_t reconfigure; /* one fallback_configure() at a time */
        struct fallback_options o;
        char *user_agent;
        struct config *config;
        struct ep_state *states;
        struct http_client *http;
        uint64_t rng;
        /* Background probes of half-open breakers (fallback_breaker_probe()): how many
         * run, signalled as each ends; closing cancels them for fallback_free(). */
        unsigned probes;
        pthread_cond_t probes_done;
        atomic_bool closing;
};

/* ---- circuit breakers (breaker.c) -------------------------------------------- */

#define EVENT_REASON_MAX 256 /* an event's reason, NUL included */

/* An event to send once the lock it was made under is released. */
struct event_buf {
        struct fallback_event ev;
        char reason[EVENT_REASON_MAX];
        bool set;
};

enum admit {
        ADMIT_NO,
        ADMIT_YES,
        ADMIT_PROBE,
};

/* ---- a fetch in progress (fallback.c, answer.c, token.c) --------------------- */

#define FETCH_REASON_MAX 200 /* why the current attempt failed, NUL included */

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
        char *token_key;       /* what tokens are cached under: scope, and a hash of req->client_auth when set */
        struct credentials client_creds; /* req->client_auth's, borrowed (has_client) */
        bool has_client;
        bool by_digest;
        struct digest want;
        bool as_get;           /* a HEAD by tag that has to be answered with a GET */
        /* The half-open breaker whose probe this request carries itself, until
         * the verdict: given by the first 2xx head (fallback_on_head()), else
         * by the attempt's outcome. */
        struct ep_state *probing;

        /* the current exchange */
        struct http_response *hr;
        bool body_started;
        uint64_t skip;         /* bytes to drop (an endpoint that ignored Range) */
        uint64_t attempt_bytes;
        int64_t total;         /* the blob's size as upstreams said it */
        struct buf manifest;
        struct budget_hold held; /* what manifest's memory takes of req->budget */
        int abort_error;
        bool prep_failed;      /* blob_prepare() refused the answer */
        /* The class of address the endpoint answered from (public until it did):
         * where its redirects and token realm may lead (fallback_addr_hop_mask()). */
        enum fallback_addr_class ep_class;

        /* The current endpoint's credentials for this attempt (a copy, wiped
         * when it ends), from its source (fallback_creds_get()); NULL: none. */
        struct credentials *creds;
        /* The generation of e's tokens (fallback_tokens_gen()) when creds were copied: a token
         * got with them is kept only if no change of credentials dropped the tokens since. */
        uint64_t tokens_gen;

        long answer;           /* OUT_ANSWER's status */
        char reason[FETCH_REASON_MAX];
};

/* ---- functions shared between the files -------------------------------------- */

/* config.c */
/* Drops a reference to st; the last one unlinks and frees it (with its tokens). Under fb->lock. */
void fallback_ep_state_unref_locked(struct fallback *fb, struct ep_state *st);
/* Drops a reference to c; the last one frees it and its endpoints. Under fb->lock. */
void fallback_config_unref_locked(struct fallback *fb, struct config *c);
/* fallback_config_unref_locked() taking fb->lock itself. */
void fallback_config_unref(struct fallback *fb, struct config *c);
/* One part of url (a new string, or NULL when url is not one or has no such part). */
char *fallback_url_part(const char *url, CURLUPart part, unsigned flags);
/* "scheme://host:port" of url (port always spelled out, a new string), or NULL. */
char *fallback_url_origin(const char *url);

/* token.c */
/* Frees a cached token, its value wiped. */
void fallback_token_free(struct token *t);
/* Appends to a struct buf (userdata), kept NUL-terminated; -EFBIG beyond its max. */
int fallback_buf_append(void *userdata, const void *data, size_t size);
/* Wipes and frees b's data and zeroes b (max included). */
void fallback_buf_wipe(struct buf *b);
/* A cached token for scope still valid (a new string), or NULL. */
char *fallback_token_peek(struct ep_state *st, const char *scope);
/* A token for scope that is not `rejected` into *ret (a new string): a cached one, or one fetched
 * now through the challenge ch; one fetch per endpoint and scope runs at a time. On failure
 * reason says why; -EACCES when the token endpoint refused the credentials. */
int fallback_token_get(struct fetch *f, const struct ep *e, const struct challenge *ch, const char *scope,
                       const char *rejected, char **ret, char *reason, size_t rsize);

/* Parses a token endpoint's answer (exposed for tests and the fuzz target): the token ("token" or
 * "access_token") and its lifetime in ms; with ret_refresh, an OAuth2 "refresh_token" (or NULL). */
int fallback_token_parse(const void *data, size_t size, char **ret_token, uint64_t *ret_ttl_ms, char **ret_refresh,
                         char *reason, size_t rsize);
/* The OAuth2 refresh-token grant's form body (grant_type, service, scope, client_id=layerd,
 * refresh_token), percent-encoded, into b (room for the whole form reserved at once, b's max
 * raised to it if needed: a secret is never copied by a realloc); b's caller wipes it. */
int fallback_token_oauth_form(const char *service, const char *scopes, const char *refresh_token, struct buf *b);
#define FALLBACK_WAIT_SLICE_MS 100
/* One slice (FALLBACK_WAIT_SLICE_MS at most) of f's wait on cond under lock (held), bounded by
 * give_up and f's deadline (CLOCK_MONOTONIC ms): -ECANCELED once f is cancelled, -ETIMEDOUT once
 * a bound is past (both looked at before waiting), else 0: look again at what is waited for. */
int fallback_wait_slice(struct fetch *f, pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t give_up);
/* Drops st's cached tokens (the credentials they were got with changed); a fetch under way keeps its own. */
void fallback_tokens_drop(struct ep_state *st);
/* How many times st's tokens were dropped: taken before credentials are copied, it tells whether
 * a token got with the copy may be kept. */
uint64_t fallback_tokens_gen(struct ep_state *st);

/* credsource.c */
struct credsource;
struct file_stamp;
/* A source for an endpoint configured as c (its file or helper), holding creds (taken over, may
 * be NULL) read when the file looked as stamp (NULL: no file). -ENOMEM (creds freed). */
int fallback_credsource_new(const struct fallback_endpoint_config *c, struct credentials *creds,
                            const struct file_stamp *stamp, struct credsource **ret);
struct credsource *fallback_credsource_free(struct credsource *cs);
/* At a reconfiguration, before it is published, the source new of an endpoint that stays takes
 * over what old knew and still holds (the same helper's answer, within its lifetime; a rotated
 * identity token). Returns whether the credentials differ (then the endpoint's tokens are to be
 * dropped); either may be NULL. Neither source's lock held. */
bool fallback_credsource_take_over(struct credsource *old, struct credsource *new);
/* A credentials event about e for f (reason formatted from fmt) into evb, to send with fallback_emit(). */
void fallback_creds_event(struct fetch *f, const struct ep *e, enum fallback_event_type type, struct event_buf *evb,
                          const char *fmt, ...) _printf_(5, 6);
/* e's credentials for f's attempt (a copy, NULL: anonymous): its file re-read if it changed, its
 * helper run if its answer is stale; the last good ones when that fails (reported once by an
 * event). Tokens are dropped when they change; f->tokens_gen is their generation as of the copy.
 * 0 or -ENOMEM. */
int fallback_creds_get(struct fetch *f, const struct ep *e, struct credentials **ret);
/* Takes e's source's turn to trade its identity token at the realm (one grant per source at a
 * time: a realm that rotates refresh tokens refuses the one a concurrent grant just traded),
 * waiting for another's within f's deadline and cancellation. *ret: the token to send (a new
 * string, wiped by the caller), the source's current one (`used`, the attempt's, when the source
 * holds none). 0, -ETIMEDOUT, -ECANCELED or -ENOMEM; on 0, fallback_creds_grant_end() must follow. */
int fallback_creds_grant_begin(struct fetch *f, const struct ep *e, const char *used, char **ret);
/* Ends the grant that sent `used`; fresh (NULL: none) is the refresh token the realm gave in its
 * place, kept in e's source if it still holds used. */
void fallback_creds_grant_end(const struct ep *e, const char *used, const char *fresh);

/* breaker.c */
/* Sends b's event to the caller's on_event, if one is set, and clears it. Never under fb->lock. */
void fallback_emit(struct fallback *fb, struct event_buf *b);
/* May a request go to st's endpoint now: yes, no (open, or a probe under way), or as the probe. */
enum admit fallback_breaker_admit(struct fallback *fb, struct ep_state *st, uint64_t now, struct event_buf *evb);
/* The endpoint answered as a server should: the breaker closes. */
void fallback_breaker_success(struct fallback *fb, struct ep_state *st, struct event_buf *evb);
/* A request admitted ended without a verdict: the next one may probe. */
void fallback_breaker_release(struct fallback *fb, struct ep_state *st);
/* The endpoint failed: counted, and the breaker opens (for at least at_least_ms) when due. */
void fallback_breaker_failure(struct fallback *fb, struct ep_state *st, const char *reason, uint64_t at_least_ms,
                              struct event_buf *evb);
/* Probes e (whose breaker f's request was admitted to probe) in the background with a HEAD of
 * the same object, holding a reference to cfg until it ends; 0 when started. */
int fallback_breaker_probe(struct fetch *f, struct config *cfg, const struct ep *e);

/* answer.c */
/* Sets f->reason (double quotes made single: it is logged quoted) and returns OUT_FAIL. */
enum outcome fallback_fail(struct fetch *f, const char *fmt, ...) _printf_(2, 3);
/* Empties f->manifest and gives back what it held of the budget. */
void fallback_manifest_wipe(struct fetch *f);
/* The body callback of an exchange: a blob's bytes to the sink (checked first), others into f->manifest. */
int fallback_on_body(void *userdata, const void *data, size_t size);
/* The head callback of an exchange: a 2xx head (for a blob, one whose Content-Range, size and digest
 * claim pass) closes the breaker whose probe f carries (f->probing, then NULL). */
void fallback_on_head(void *userdata, const struct http_response *hr);
/* Checks a 2xx answer from e (f->hr) and fills f->resp. */
enum outcome fallback_accept_answer(struct fetch *f, const struct ep *e);

/* manifest.c */
/* Whether body parses whole as a manifest: one JSON object, nothing after it,
 * with a string mediaType or an integer schemaVersion. What a tag's manifest
 * that no Docker-Content-Digest vouches for must be to be taken. */
bool fallback_manifest_is_whole(const void *body, size_t size);

/* fallback.c */
/* One endpoint: f's request, with its auth round trips and redirects. */
enum outcome fallback_attempt(struct fetch *f, const struct ep *e);
/* Counts an answer of e: a good one, or one that says "not here". */
void fallback_count_answer(struct fallback *fb, const struct ep *e, bool ok);
/* -EINVAL unless req is a well-formed request; sets f->by_digest and f->want. */
int fallback_request_check(const struct fallback_request *req, struct fetch *f);
/* f->repo, f->scope and f->token_key for f->req on f->reg. */
int fallback_fetch_names(struct fetch *f);
/* The credentials f may send to e: the client's toward the origin when the request carries
 * them (none toward another endpoint), else e's own (f->creds, this attempt's copy from its
 * source); NULL for none. */
const struct credentials *fallback_fetch_creds(const struct fetch *f, const struct ep *e);
