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
/* A blob streamed while it downloads: the block MHD fills from the follow
 * reader and sends, one per follower, paid from the budget. 64 KiB: a block
 * is sent before the next one is read, so a bigger one buys a few system
 * calls, and under fan-in each follower holds one (16 pulls of a 5-layer
 * image follow 80 streams at once: 20 MiB of blocks at 256 KiB, 5 MiB now). */
#define STREAM_BLOCK (64 * 1024)
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
        bool private_repo; /* fetched for a private repository: served only as its access allows */
        void *body;
        size_t size;
        char *next_last;
};

/* What a request's credentials did, for its log line (auth=) and the counters. */
enum access_use {
        ACCESS_USE_NONE,        /* "-" */
        ACCESS_USE_PASSTHROUGH, /* they went to the origin */
        ACCESS_USE_CHALLENGE,   /* the client was answered 401 with a Basic challenge */
        _ACCESS_USE_MAX,
};

/* How a request's access was judged (agent/access.c), for its log line (verdict=) and the counters. */
enum access_how {
        ACCESS_HOW_NONE,         /* "-": public, nothing to judge */
        ACCESS_HOW_VERDICT_HIT,  /* a fresh verdict of the origin's */
        ACCESS_HOW_VERDICT_MISS, /* the origin was asked again */
        ACCESS_HOW_CONFIRMED,    /* a private digest under another name: the origin was asked */
        ACCESS_HOW_GRACE,        /* the origin down, within auth_outage_grace */
        _ACCESS_HOW_MAX,
};

const char *access_use_to_string(enum access_use u);
const char *access_how_to_string(enum access_how h);

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
        uint8_t own_key[CLIENT_AUTH_KEY_SIZE]; /* layerd's own credentials' (clientauth.h): auth_passthrough off */
        atomic_uint_fast64_t auth_uses[_ACCESS_USE_MAX]; /* requests by what their credentials did */
        atomic_uint_fast64_t auth_hows[_ACCESS_HOW_MAX]; /* requests by how their access was judged */
        atomic_uint_fast64_t auth_refusals;
        atomic_uint_fast64_t auth_parses; /* Authorization headers parsed: a base64 decode and a salted SHA-256 each */
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
        const struct client_auth *client; /* the client's credentials toward the origin, or NULL */
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

/* A committed manifest from the cache (at most FALLBACK_MANIFEST_MAX) into
 * *a: its bytes, or with want_fd, when over MANIFEST_SENDFILE_MIN, an open
 * descriptor instead (the bytes are read only when the media type must be
 * worked out from them). media_type, when known (a tag's record), saves
 * working it out. The bytes read are taken from the pull's budget first
 * (-ENOBUFS past it); -ENOENT when not in the cache. */
int manifest_cached(struct pull *p, const struct digest *d, const char *media_type, bool want_fd,
                    struct manifest_answer *a);

/* Stores the verified manifest d (recorded private first for q's private
 * repository, agent/private.h); a failure only costs a later refetch. */
void manifest_store(struct pull *p, const struct manifest_query *q, const struct digest *d, const void *body,
                    uint64_t size);

/* The record policy of tags and referrers indexes (the cache's records of
 * what upstream last said): a record younger than ttl_ms is trusted without
 * asking; when asking fails with outcome o (fallback_fetch() returned
 * fetched), the record's last answer stands if every upstream failed (not
 * "not found", not a shutdown, not our own memory budget): stale-if-error,
 * counted and logged by manifest_record_stale_served() (name: "tag=v1" and
 * the like). */
bool manifest_record_is_fresh(const struct cache_tag *t, uint64_t ttl_ms);
bool manifest_record_may_stand(const struct outcome *o, int fetched);
void manifest_record_stale_served(struct pull *p, const char *what, const char *registry, const char *repository,
                                  const char *name, const struct cache_tag *t, const struct outcome *o);

/* ---- referrers.c: the OCI 1.1 referrers index of a manifest ---- */

struct referrers_query {
        const char *registry; /* a host the spec mirrors */
        const char *repository;
        struct digest subject;
        uint64_t tag_ttl_ms;  /* an index fetched less long ago is served without asking */
        bool may_block;       /* false: -EWOULDBLOCK instead of asking upstream (the event loop) */
        const struct client_auth *client; /* the client's credentials toward the origin, or NULL */
        bool private_repo;    /* the index is recorded private (agent/private.h) before it is stored */
};

struct referrers_answer {
        void *body;       /* the whole (unfiltered) index, validated */
        size_t size;
        struct budget_hold held; /* what body takes of the pull's budget: moves with it */
        const char *cache; /* hit, miss, stale, uncached (a paginated index): for the log line */
        char endpoint[PULL_ENDPOINT_MAX];
        bool stale;       /* the last index fetched: every upstream failed */
};

/* The referrers index of q->subject: from the cache while its record is
 * younger than q->tag_ttl_ms, else through the chain (validated, stored like
 * a manifest and recorded; a paginated answer is passed on, not stored), else
 * the last one fetched when every upstream fails. A registry without the
 * API answers 404: not found, and nothing is recorded. Returns 0 with *a
 * (release with referrers_answer_done()), -EWOULDBLOCK, or -errno with *o. */
int referrers_resolve(struct pull *p, const struct referrers_query *q, struct referrers_answer *a, struct outcome *o);
void referrers_answer_done(struct referrers_answer *a);

/* ---- download.c: single-flight blob downloads ---- */

struct download_want {
        const char *registry, *repository;
        struct digest digest;
        int64_t size;             /* -1: unknown */
        bool finish_abandoned;    /* go on when every client left (agent.finish_abandoned_downloads) */
        bool background;          /* prefetch: waits for a slot of its share of agent.max_downloads */
        struct ratelimit *limit;  /* prefetch: held to this while no client follows; NULL for a client */
        const struct client_auth *client; /* a private repository's client's credentials, or NULL:
                                           * copied for the download (wiped when it ends); their
                                           * key names the download's owner with the repository */
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

struct tags_access;

/* pull_tags_page() with the page's share of the pull's budget in *ret_held
 * (for a response that holds the page until its client read it); -ENOBUFS
 * past the budget. With ta (a client's request), the page is judged as
 * content is (access_check()): -EACCES when the client must be challenged
 * (ta->outcome says why); NULL (layerd's own question, prefetch): none. */
int tags_page(struct pull *p, const char *registry, const char *repository, unsigned n, const char *last,
              struct tags_access *ta, void **ret_body, size_t *ret_size, char **ret_next_last,
              struct budget_hold *ret_held);

void tags_cache_free(struct pull *p);

/* ---- access.c: who may read what of a private repository ---- */

enum access_verdict {
        ACCESS_ALLOW,       /* serve (a->with_client: with the client's credentials toward the origin) */
        ACCESS_CHALLENGE,   /* 401 with a Basic challenge: credentials needed, or refused */
        ACCESS_NOT_FOUND,   /* the origin says there is no such thing in this repository */
        ACCESS_UNAVAILABLE, /* the origin could not say, and nothing allows serving without it */
        ACCESS_WOULD_BLOCK, /* the origin must be asked: not on the event loop */
        ACCESS_ASK,         /* the origin must be asked, and the caller's own request is the question
                             * (a tag list, kind FALLBACK_TAGS): judged with access_judge() */
        _ACCESS_VERDICT_MAX,
};

struct access_query {
        const struct spec_registry *reg;
        const char *repository;
        enum fallback_kind kind;      /* what the check asks the origin for (HEAD); FALLBACK_TAGS: nothing */
        const char *reference;        /* tag or digest (for a tag list, what its log line says) */
        const struct digest *digest;  /* by digest: the object, or NULL */
        struct client_auth *client;   /* the request's credentials: parsed from authorization when needed */
        const char *authorization;    /* the request's Authorization header, or NULL */
        bool may_block;
};

struct access_answer {
        bool with_client;  /* toward the origin with q->client's credentials (else layerd's own) */
        bool private_repo;
        enum access_how how;
        /* What access_judge() needs of the check: */
        bool elsewhere;              /* q->digest is private for another repository, not confirmed here */
        bool has_key;                /* key names a verdict: the client's, or layerd's own */
        struct verdict_key key;
        int64_t age;                 /* of that verdict, -1 none */
        uint64_t now_ms;
};

/* A client's tag list request (tags_page()): its credentials in, the judgement out. */
struct tags_access {
        struct client_auth *client;   /* the request's credentials: parsed from authorization when needed */
        const char *authorization;    /* its Authorization header, or NULL */
        struct access_answer answer;  /* set always */
        struct outcome outcome;       /* why, for -EACCES */
};

/* The fallback's view of c's credentials (borrowed from *c) in *buf: buf, or
 * NULL for none (c NULL or unset). */
const struct fallback_client_auth *access_client_view(const struct client_auth *c, struct fallback_client_auth *buf);

/* Decides whether q's object may be served to q's client (docs/agent.md,
 * "Private images"): a repository the origin asked credentials for is served
 * only to credentials it accepted within the registry's auth_verdict_ttl (else
 * it is asked again with a HEAD; while it is down, within
 * auth_outage_grace); a digest fetched for a private repository is served
 * under another only once the origin confirms it is there. Without
 * auth_passthrough the credentials are layerd's own, and so is the verdict.
 * The Authorization header is parsed (into q->client) only past the public
 * case. Sets *a always and o's reason for the refusals. */
enum access_verdict access_check(struct pull *p, const struct access_query *q, struct access_answer *a,
                                 struct outcome *o);

/* The origin's answer (fallback_fetch() returned r and *fr) to the question
 * access_check() asked, or left to the caller (ACCESS_ASK; a tag list fetched
 * anonymously that the origin refused, with *a from ACCESS_ALLOW): the
 * verdict kept or dropped, the repository recorded private on a refusal.
 * ALLOW for a 200, or within auth_outage_grace while the origin is down
 * (a->how ACCESS_HOW_GRACE: no answer to serve, only what is kept). */
enum access_verdict access_judge(struct pull *p, const struct access_query *q, struct access_answer *a, int r,
                                 const struct fallback_response *fr, struct outcome *o);

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
