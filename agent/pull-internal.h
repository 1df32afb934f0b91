/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the pull core's files share (pull.c, manifest.c, download.c, tags.c,
 * metrics.c) and what the HTTP front end (http.c, stream.c) takes from it.
 * Nothing here knows HTTP: the core answers with a struct outcome, which
 * http.c turns into a status code in one place. */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "agent/bounds.h"
#include "agent/clientauth.h"
#include "agent/private.h"
#include "agent/reqmetrics.h"
#include "agent/verdict.h"
#include "agent/outcome.h"
#include "cache/cache.h"
#include "agent/pull.h"
#include "agent/route.h"
#include "common/budget.h"
#include "common/digest.h"
#include "common/throttle.h"

#define HEADER_WAIT_MS 20000 /* longest wait for an upstream before answering "unavailable" */
#define STREAM_WAIT_MS 60000 /* longest wait for the next bytes of a download */
#define STREAM_BLOCK (256 * 1024)
/* An outage of minutes under a pull of many layers would log the
 * auth_outage_grace line per request: once a minute per repository, counted. */
#define AUTH_GRACE_LOG_INTERVAL_MS (60 * 1000)
#define TAGS_CACHE_SLOTS 64 /* tag list pages remembered */
#define TAGS_KEY_MAX 512    /* registry "\n" repository "\n" n "\n" last */
#define PULL_ENDPOINT_MAX CACHE_SOURCE_MAX /* an endpoint URL as logged: what a download's entry carries */

/* The statuses layerd answers with; the last slot (0) counts any other. */
#define STATUS_SLOTS 9
extern const unsigned pull_status_slots[STATUS_SLOTS];

struct spec_ref {
        struct spec *spec;
        unsigned refs; /* under pull->lock */
};

struct tags_slot {
        char key[TAGS_KEY_MAX]; /* "" when free */
        uint64_t at_ms;
        void *body;
        size_t size;
        char *next_last;
};

struct pull {
        pthread_mutex_t lock; /* spec, threads, suspended */
        pthread_cond_t ended; /* a thread of ours ended, a connection was resumed */
        struct spec_ref *spec;
        struct cache *cache;
        char *cache_dir;
        struct fallback *fb;
        unsigned threads;
        unsigned suspended; /* streams' connections a waker is to resume: MHD cannot stop with one */
        atomic_bool stopping;

        pthread_mutex_t tags_lock; /* tags_cache; taken alone */
        struct tags_slot tags_cache[TAGS_CACHE_SLOTS];

        atomic_uint_fast64_t ready_gate_until_ms; /* /readyz waits for prefetch until then; 0: it does not */
        struct {
                void (*fn)(FILE *f, void *userdata);
                void *userdata;
        } metrics_hooks[_PULL_METRICS_HOOK_MAX]; /* set before serving */

        struct bounds bounds; /* downloads, abandoned ones and upstream waits in flight (agent.max_*) */
        /* What in-flight requests hold in memory together (agent.max_inflight_memory):
         * upstream manifest bodies and tag pages while they come and until their
         * client has read them, small manifests read from the cache, stream
         * buffers, stream-through rings, download batches. Taken before the
         * bytes are allocated; past it a request gets 503 at once. */
        struct budget budget;
        atomic_uint_fast64_t budget_refusals; /* requests answered 503 for it */

        /* Pass-through of clients' credentials (agent/access.c): what is private, the
         * origin's verdicts, the salt of the credentials' keys (random per process). */
        struct private_set *private;
        struct verdicts verdicts;
        struct throttle grace_log; /* the auth_outage_grace line: once per registry/repository a minute */
        uint8_t auth_salt[32];
        atomic_uint_fast64_t auth_passthrough, auth_challenges, auth_verdict_hits, auth_verdict_misses,
                auth_refusals, auth_outage_serves, auth_confirms;
        /* The private-content table's upkeep (pull_private_upkeep()): the digests
         * recorded private to an unknown repository at start-up (its file was
         * deleted), the prunes run and the entries they dropped. */
        uint64_t private_lost;
        atomic_uint_fast64_t private_prunes, private_pruned;
        atomic_bool private_pruning;
        uint64_t private_pruned_ms; /* when the last prune started: the caller of upkeep's alone */

        atomic_uint_fast64_t requests[_ROUTE_MAX][STATUS_SLOTS];
        atomic_uint_fast64_t bytes_served, stale_serves, cut_streams;
        struct reqmetrics reqmetrics; /* latency histograms, per-registry hits and misses */
};

/* ---- pull.c: shared state ---- */

/* The spec in force, held until spec_ref_put(). */
struct spec_ref *spec_ref_get(struct pull *p);
void spec_ref_put(struct pull *p, struct spec_ref *r);

/* A thread of ours is about to start: counted before it exists, so that
 * pull_shutdown() waits for it; false once stopping (then none may start). */
bool pull_thread_begin(struct pull *p);
/* ... and has ended (or never started). */
void pull_thread_end(struct pull *p);

/* A request to the registry's chain that a client (or a prefetch round)
 * waits for: bounded by HEADER_WAIT_MS, ended by shutdown. */
struct fallback_request pull_upstream_request(struct pull *p, const char *registry, const char *repository,
                                              enum fallback_kind kind, const char *reference, bool head);

/* The registry a request may go to: one the spec mirrors (no open proxy);
 * offline (nothing is asked upstream), any name. NULL otherwise. */
const struct spec_registry *pull_registry(const struct spec *s, const char *registry, bool offline);

/* ---- manifest.c: one manifest resolver for clients and prefetch ---- */

struct manifest_query {
        const char *registry; /* a host the spec mirrors (or any name, offline) */
        const char *repository;
        const char *tag;       /* by tag, or NULL: by digest */
        struct digest digest;  /* by digest */
        const char *accept;    /* the client's Accept; NULL takes every manifest type */
        uint64_t tag_ttl_ms;   /* a tag record younger than this is trusted without asking */
        bool head;             /* no body wanted: a HEAD may be answered from a tag's record */
        bool offline;          /* the node's records and cache only; nothing is asked upstream */
        bool may_block;        /* false: -EWOULDBLOCK instead of asking upstream (the event loop) */
        bool want_fd;          /* a cached body over 16 KiB may come as an open descriptor instead of bytes */
        const struct fallback_client_auth *client_auth; /* the client's credentials, toward the origin */
        bool private_repo;     /* what is fetched is recorded private (agent/private.h) before it is stored */
};

struct manifest_answer {
        struct digest digest;
        uint64_t size;
        void *body;       /* verified bytes; NULL for a HEAD answered without them, or with fd */
        struct budget_hold held; /* what body takes of the pull's budget: moves with it */
        int fd;           /* with want_fd: the committed manifest's descriptor (size bytes), or -1 */
        char *media_type; /* may be NULL when an upstream HEAD by digest did not say */
        const char *cache; /* hit, miss, revalidated, stale: for the request's log line */
        char endpoint[PULL_ENDPOINT_MAX]; /* who answered, when upstream did */
        bool fetched;     /* the body came from upstream now */
        bool stale;       /* a tag's last known answer: every upstream failed */
};

/* Resolves q: the cache, the tag policy (trusted for tag_ttl_ms, then
 * revalidated with a HEAD; the last answer kept when every upstream fails),
 * else the chain (stored once verified). *ret is set whatever happens. Returns 0 with *ret (release with
 * manifest_answer_done()), or -EWOULDBLOCK (q->may_block false and upstream
 * must be asked), or -errno with *o saying what it means for a client. */
int manifest_resolve(struct pull *p, const struct manifest_query *q, struct manifest_answer *ret,
                     struct outcome *o);
/* Frees what *a (filled by manifest_resolve(), which sets all of it) holds and leaves it empty (fd -1). */
void manifest_answer_done(struct manifest_answer *a);

/* ---- download.c: single-flight blob downloads ---- */

struct download_want {
        const char *registry, *repository;
        struct digest digest;
        int64_t size;             /* -1: unknown */
        bool finish_abandoned;    /* go on when every client left (agent.finish_abandoned_downloads) */
        bool background;          /* prefetch: waits for a slot of its share of agent.max_downloads */
        struct ratelimit *limit;  /* prefetch: held to this while no client follows; NULL for a client */
        const struct fallback_client_auth *client_auth; /* a private repository's: copied for the
                                                          * download, wiped when it ends */
        const uint8_t *client_key; /* with client_auth: its CLIENT_AUTH_KEY_SIZE key (names the
                                    * download's owner with the repository), else NULL */
        bool mark_private; /* a private repository's: the digest is recorded for it (agent/private.h)
                            * once the origin answers with the bytes, before they are stored */
};

/* A client's or a prefetch round's hold on a download: a reference on its
 * cache entry, which carries the bytes, the verdict and who sent them. */
struct download_hold {
        struct cache_entry *entry;
        bool started; /* this call started it */
        bool foreign; /* joined a download for another repository or other credentials: its
                       * access was judged for them, and its verdict is theirs */
};

/* Joins the download of w->digest in flight (ret->foreign when it was started
 * for another registry/repository/credentials key than w's) or starts it on a thread of its
 * own, if one of agent.max_downloads is free (a background one: of its share,
 * bounds_background_max()). Returns 0 with *ret (release with
 * download_release()); -EEXIST when the blob is committed (read it from the
 * cache), -EBUSY when no slot is free (a client's is counted as refused),
 * -ESHUTDOWN, -ENOMEM, -ENOBUFS (no memory budget for its buffer), or the
 * cache's reason it cannot take the blob (then stream it through). A download
 * whose clients all left goes on (w->finish_abandoned) only while fewer than
 * agent.max_abandoned_downloads do, and for agent.abandoned_download_timeout
 * at most. */
int download_join_or_start(struct pull *p, const struct download_want *w, struct download_hold *ret);

/* The download of w for one client, through memory only (the cache cannot
 * take the blob: stream-through); w->size is the size promised, or -1. The
 * client must follow it with a reader before releasing *ret. It takes a slot
 * of agent.max_downloads too: -EBUSY when none is free. */
int download_start_unstored(struct pull *p, const struct download_want *w, struct download_hold *ret);

void download_release(struct download_hold *h);

/* Waits until h's download ended, at most until deadline_ms (TIME_NEVER: no
 * bound) and never past a shutdown: 0 once verified, the verdict of a
 * download that failed (-EEXIST: it turned out committed, see cache_begin()),
 * -ETIMEDOUT, -ESHUTDOWN. Blocks: never on the event loop. */
int download_wait_end(struct pull *p, const struct download_hold *h, uint64_t deadline_ms);

/* What a download's verdict r (from its cache entry) means for a client. */
void download_outcome(int r, struct outcome *o);

/* ---- tags.c ---- */

/* pull_tags_page() with the page's share of the pull's budget in *ret_held
 * (for a response that holds the page until its client read it); -ENOBUFS
 * past the budget. */
int tags_page(struct pull *p, const char *registry, const char *repository, unsigned n, const char *last,
              void **ret_body, size_t *ret_size, char **ret_next_last, struct budget_hold *ret_held);

void tags_cache_free(struct pull *p);

/* ---- access.c: who may read what of a private repository ---- */

enum access_verdict {
        ACCESS_ALLOW,       /* serve (a->client_auth: with the client's credentials toward the origin) */
        ACCESS_CHALLENGE,   /* 401 with a Basic challenge: credentials needed, or refused */
        ACCESS_NOT_FOUND,   /* the origin says there is no such thing in this repository */
        ACCESS_UNAVAILABLE, /* the origin could not say, and nothing allows serving without it */
        ACCESS_WOULD_BLOCK, /* the origin must be asked: not on the event loop */
        _ACCESS_VERDICT_MAX,
};

struct access_query {
        const struct spec_registry *reg;
        const char *repository;
        enum fallback_kind kind;      /* what the check asks the origin for (HEAD) */
        const char *reference;        /* tag or digest */
        const struct digest *digest;  /* by digest: the object, or NULL */
        const struct client_auth *client; /* the request's credentials (set or not) */
        bool may_block;
};

struct access_answer {
        const struct fallback_client_auth *client_auth; /* points into *this: NULL for anonymous */
        struct fallback_client_auth ca;
        bool private_repo;
        const char *how; /* for the log line: "-", "verdict-hit", "verdict-miss", "confirmed", "grace" */
};

/* Decides whether q's object may be served to q's client (docs/agent.md,
 * "Private images"): a repository the origin asked credentials for is served
 * only to credentials it accepted within the registry's auth_verdict_ttl (else
 * it is asked again with a HEAD; while it is down, within
 * auth_outage_grace); a digest fetched for a private repository is served
 * under another only once the origin confirms it is there. Sets *a always and
 * o's reason for the refusals. */
enum access_verdict access_check(struct pull *p, const struct access_query *q, struct access_answer *a,
                                 struct outcome *o);

/* The origin asked for credentials (or refused the ones sent) for
 * registry/repository: it is recorded private and client's verdict dropped. */
void access_refused(struct pull *p, const char *registry, const char *repository, const struct client_auth *client);

/* ---- metrics.c ---- */

/* Writes the Prometheus text of every counter to f. */
void metrics_write(struct pull *p, FILE *f);
/* metrics_write()'s text in *ret_data (malloc'ed, the caller frees), *ret_size bytes. 0 or -ENOMEM. */
int metrics_text(struct pull *p, char **ret_data, size_t *ret_size);
/* NULL when /readyz says ready, else its 503 answer's text ("indexing the cache\n", "prefetching\n"). */
const char *metrics_not_ready(struct pull *p);
