/* SPDX-License-Identifier: Apache-2.0 */
/* The pull API: what containerd (and skopeo, podman) ask a mirror for.
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
 *   "Range: bytes=N-", from its first host again).
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
#include "agent/pull.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "agent/relay.h"
#include "agent/route.h"
#include "common/digest.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/range.h"
#include "common/ratelimit.h"
#include "common/reference.h"
#include "common/time.h"

#define HEADER_WAIT_MS 20000   /* longest wait for an upstream before answering 503 */
#define STREAM_WAIT_MS 60000   /* longest wait for the next bytes of a download */
#define STREAM_BLOCK (256 * 1024)
#define SKIP_READS_PER_CALL 16 /* blocks read and dropped (up to a Range start) per call on the event loop */
#define ACCEPT_MAX 1024
#define PROGRESS_EVERY_MS 10000
#define DL_BATCH (256 * 1024)
#define MT_CACHE_SLOTS 256 /* manifests' media types remembered, direct-mapped by digest */
#define TAG_CACHE_SLOTS 256 /* tag records remembered, direct-mapped by name */
#define TAG_KEY_MAX 512
#define TAGS_CACHE_SLOTS 64 /* tag list pages remembered */
#define TAGS_CACHE_PAGE_MAX (256 * 1024) /* bigger tag list pages are passed on, not remembered */
#define TAGS_TTL_MS 30000   /* how long a tag list page is served from memory */
#define THROTTLE_SLICE_NS (50 * 1000000ULL) /* a rate-limited download rechecks for clients this often */

static const char *const route_names[_ROUTE_MAX] = {
        [ROUTE_V2] = "v2",         [ROUTE_MANIFEST] = "manifest", [ROUTE_BLOB] = "blob",       [ROUTE_TAGS] = "tags",
        [ROUTE_METRICS] = "metrics", [ROUTE_HEALTH] = "health",   [ROUTE_OTHER] = "other",
};

/* The statuses layerd answers with; the last slot counts any other. */
static const unsigned status_slots[] = { 200, 206, 400, 404, 405, 416, 500, 503, 0 };
#define STATUS_SLOTS ELEMENTSOF(status_slots)

struct spec_ref {
        struct spec *spec;
        unsigned refs; /* under pull->lock */
};

/* A blob download in flight: single-flight is the cache's (cache_begin());
 * this carries what the cache does not know, the upstream's verdict. */
struct download {
        struct download *next;
        unsigned refs; /* under pull->lock */
        struct digest digest;
        char *registry, *repository;
        struct cache_entry *entry; /* the writer's reference, the download thread's */
        int status;                /* under pull->lock: 0 while running, then 200, 404, 503 */
        char endpoint[256];        /* under pull->lock: who sent the bytes, once known */
        unsigned readers;          /* under pull->lock: clients streaming it */
        bool finish_abandoned;     /* agent.finish_abandoned_downloads when it started */
        atomic_bool cancel;        /* nobody wants it any more */
        struct ratelimit *limit;   /* prefetch: held to this rate while no client follows it */
        struct pull *pull;
        uint64_t bytes, last_progress_ms, started_ms;
        char *batch;      /* the download thread's: bytes not yet given to the cache */
        size_t batch_len;
};

struct pull {
        pthread_mutex_t lock; /* spec, downloads, threads */
        pthread_cond_t ended; /* a download thread ended */
        struct spec_ref *spec;
        struct cache *cache;
        char *cache_dir;
        struct fallback *fb;
        struct download *downloads;
        unsigned threads;
        unsigned suspended; /* streams' connections a waker is to resume: MHD cannot stop with one */
        atomic_bool stopping;

        pthread_mutex_t mt_lock; /* mt_cache and tag_cache; taken alone */
        struct tag_slot {
                bool used;
                char key[TAG_KEY_MAX]; /* registry "\n" repository "\n" tag */
                struct cache_tag tag;
        } tag_cache[TAG_CACHE_SLOTS];
        struct mt_slot {
                bool used;
                struct digest digest;
                char media_type[CACHE_MEDIA_TYPE_MAX];
        } mt_cache[MT_CACHE_SLOTS];

        pthread_mutex_t tags_lock; /* tags_cache; taken alone */
        struct tags_slot {
                char key[TAG_KEY_MAX]; /* registry "\n" repository "\n" n "\n" last; "" when free */
                uint64_t at_ms;
                void *body;
                size_t size;
                char *next_last;
        } tags_cache[TAGS_CACHE_SLOTS];

        atomic_uint_fast64_t ready_gate_until_ms; /* /readyz waits for prefetch until then; 0: it does not */
        void (*metrics_hook)(FILE *f, void *userdata); /* set before serving */
        void *metrics_userdata;

        atomic_uint_fast64_t requests[_ROUTE_MAX][STATUS_SLOTS];
        atomic_uint_fast64_t bytes_served, stale_serves, cut_streams,
                verify_failures, /* stream-throughs that did not verify (the cache counts downloads) */
                stream_throughs;
};

/* One request, for its log line. */
struct request {
        /* Deferral (defer()): the first pass runs on MHD's event loop with
         * may_block false; where it would wait it sets would_block instead,
         * and a worker thread runs the request again with may_block true. Its
         * answer (deferred: queue() keeps it here) is queued on resumption. */
        bool may_block, would_block, deferred, worker_done;
        struct MHD_Response *prepared;
        unsigned prepared_status;
        struct MHD_Connection *conn;
        struct pull *pull;
        char *url;
        bool head;

        uint64_t started_ms;
        enum route route;
        const char *method;
        char ns[256];
        char repo[256];
        char ref[160];
        unsigned status;
        const char *outcome; /* hit, miss, join, stale, upstream, - */
        char endpoint[256];
        atomic_uint_fast64_t bytes;
        uint64_t length; /* body bytes promised (fd and buffer responses) */
        char reason[256]; /* why, for an error answer */
        bool streamed;
        bool has_body;
};

/* ---- shared state --------------------------------------------------------------- */

static struct spec_ref *spec_ref_get(struct pull *p) {
        pthread_mutex_lock(&p->lock);
        struct spec_ref *r = p->spec;
        r->refs++;
        pthread_mutex_unlock(&p->lock);
        return r;
}

static void spec_ref_put_locked(struct spec_ref *r) {
        if (r && --r->refs == 0) {
                spec_free(r->spec);
                free(r);
        }
}

static void spec_ref_put(struct pull *p, struct spec_ref *r) {
        pthread_mutex_lock(&p->lock);
        spec_ref_put_locked(r);
        pthread_mutex_unlock(&p->lock);
}

int pull_new(struct cache *cache, const char *cache_dir, struct fallback *fb, struct spec *spec, struct pull **ret) {
        struct pull *p = calloc(1, sizeof(*p));
        struct spec_ref *r = calloc(1, sizeof(*r));
        char *dir = strdup(cache_dir);
        if (!p || !r || !dir) {
                free(p);
                free(r);
                free(dir);
                return -ENOMEM;
        }
        p->cache_dir = dir;
        r->spec = spec;
        r->refs = 1;
        pthread_mutex_init(&p->lock, NULL);
        pthread_mutex_init(&p->mt_lock, NULL);
        pthread_mutex_init(&p->tags_lock, NULL);
        time_cond_init(&p->ended); /* shutdown's wait is no wall-clock time */
        p->spec = r;
        p->cache = cache;
        p->fb = fb;
        *ret = p;
        return 0;
}

void pull_set_spec(struct pull *p, struct spec *spec) {
        struct spec_ref *r = calloc(1, sizeof(*r));
        if (!r) {
                log_error("out of memory: the new spec is not taken");
                spec_free(spec);
                return;
        }
        r->spec = spec;
        r->refs = 1;
        pthread_mutex_lock(&p->lock);
        struct spec_ref *old = p->spec;
        p->spec = r;
        spec_ref_put_locked(old);
        pthread_mutex_unlock(&p->lock);
}

int pull_shutdown(struct pull *p, int timeout_ms) {
        atomic_store(&p->stopping, true);
        uint64_t deadline = time_deadline_ms(timeout_ms);
        int r = 0;
        pthread_mutex_lock(&p->lock);
        while ((p->threads > 0 || p->suspended > 0) && r == 0)
                if (time_cond_wait_until(&p->ended, &p->lock, deadline) == -ETIMEDOUT)
                        r = -ETIMEDOUT;
        pthread_mutex_unlock(&p->lock);
        return r;
}

struct pull *pull_free(struct pull *p) {
        if (!p)
                return NULL;
        spec_ref_put_locked(p->spec);
        for (size_t i = 0; i < TAGS_CACHE_SLOTS; i++) {
                free(p->tags_cache[i].body);
                free(p->tags_cache[i].next_last);
        }
        pthread_mutex_destroy(&p->tags_lock);
        free(p->cache_dir);
        pthread_cond_destroy(&p->ended);
        pthread_mutex_destroy(&p->mt_lock);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

static bool pull_stopping(void *userdata) {
        struct pull *p = userdata;
        return atomic_load(&p->stopping);
}

/* A request to the registry's chain that a client (or a prefetch round) waits
 * for: bounded by HEADER_WAIT_MS, ended by shutdown. */
static struct fallback_request upstream_request(struct pull *p, const char *registry, const char *repository,
                                                enum fallback_kind kind, const char *reference, bool head) {
        return (struct fallback_request) { .registry = registry, .repository = repository, .kind = kind,
                                           .reference = reference, .head = head,
                                           .deadline_ms = time_now_ms() + HEADER_WAIT_MS,
                                           .cancelled = pull_stopping, .cancel_userdata = p };
}

/* ---- responses ---------------------------------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *conn, struct request *rq, unsigned status,
                             struct MHD_Response *resp) {
        if (!resp)
                return MHD_NO;
        rq->status = status;
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
        char msg[256], body[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* The message holds only validated names, digests and fixed text: no JSON escaping is needed
         * beyond refusing quotes and backslashes, which none of those can contain. */
        for (char *c = msg; *c; c++)
                if (*c == '"' || *c == '\\' || (unsigned char) *c < 0x20)
                        *c = '?';
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
        return queue(conn, rq, status, resp);
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

static enum MHD_Result respond_manifest(struct MHD_Connection *conn, struct request *rq, bool head, const void *body,
                                        uint64_t size, const struct digest *d, const char *media_type) {
        struct MHD_Response *resp = head || !body ? head_response(size)
                                                  : MHD_create_response_from_buffer((size_t) size, (void *) body,
                                                                                    MHD_RESPMEM_MUST_COPY);
        if (resp && !add_object_headers(resp, d, media_type)) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        rq->length = head ? 0 : size;
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

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

static bool is_index(const char *media_type) {
        return strcmp(media_type, MT_OCI_INDEX) == 0 || strcmp(media_type, MT_DOCKER_LIST) == 0;
}

static bool accepts(const char *accept, const char *media_type) {
        if (!accept || !accept[0] || strstr(accept, "*/*"))
                return true;
        if (!media_type)
                return false;
        size_t n = strlen(media_type);
        for (const char *p = strstr(accept, media_type); p; p = strstr(p + n, media_type))
                if ((p == accept || p[-1] == ' ' || p[-1] == ',') && (p[n] == '\0' || p[n] == ',' || p[n] == ';' ||
                                                                      p[n] == ' '))
                        return true;
        return false;
}

/* The media type of a recently served manifest, or NULL (caller frees). */
static char *mt_cache_get(struct pull *p, const struct digest *d) {
        struct mt_slot *slot = &p->mt_cache[(d->bytes[0] | (unsigned) d->bytes[1] << 8) % MT_CACHE_SLOTS];
        char *mt = NULL;
        pthread_mutex_lock(&p->mt_lock);
        if (slot->used && digest_equal(&slot->digest, d))
                mt = strdup(slot->media_type);
        pthread_mutex_unlock(&p->mt_lock);
        return mt;
}

static void mt_cache_put(struct pull *p, const struct digest *d, const char *media_type) {
        struct mt_slot *slot = &p->mt_cache[(d->bytes[0] | (unsigned) d->bytes[1] << 8) % MT_CACHE_SLOTS];
        if (strlen(media_type) >= sizeof(slot->media_type))
                return;
        pthread_mutex_lock(&p->mt_lock);
        slot->used = true;
        slot->digest = *d;
        snprintf(slot->media_type, sizeof(slot->media_type), "%s", media_type);
        pthread_mutex_unlock(&p->mt_lock);
}

/* The tag index, with its recent records in memory: this process is the
 * cache's only writer (flock), so the copy here is never stale. Saves a file
 * read on every manifest request by tag. */
static struct tag_slot *tag_slot(struct pull *p, const char *key) {
        uint32_t h = 2166136261u; /* FNV-1a */
        for (const char *c = key; *c; c++)
                h = (h ^ (unsigned char) *c) * 16777619u;
        return &p->tag_cache[h % TAG_CACHE_SLOTS];
}

static int tag_get(struct pull *p, const char *registry, const char *repo, const char *tag, struct cache_tag *ret) {
        char key[TAG_KEY_MAX];
        if ((size_t) snprintf(key, sizeof(key), "%s\n%s\n%s", registry, repo, tag) >= sizeof(key))
                return cache_tag_get(p->cache, registry, repo, tag, ret);
        struct tag_slot *slot = tag_slot(p, key);
        pthread_mutex_lock(&p->mt_lock);
        bool hit = slot->used && strcmp(slot->key, key) == 0;
        if (hit)
                *ret = slot->tag;
        pthread_mutex_unlock(&p->mt_lock);
        if (hit)
                return 0;
        int r = cache_tag_get(p->cache, registry, repo, tag, ret);
        if (r == 0) {
                pthread_mutex_lock(&p->mt_lock);
                slot->used = true;
                memcpy(slot->key, key, sizeof(key));
                slot->tag = *ret;
                pthread_mutex_unlock(&p->mt_lock);
        }
        return r;
}

static void tag_put(struct pull *p, const char *registry, const char *repo, const char *tag, const struct cache_tag *t) {
        char key[TAG_KEY_MAX];
        int r = cache_tag_put(p->cache, registry, repo, tag, t);
        if ((size_t) snprintf(key, sizeof(key), "%s\n%s\n%s", registry, repo, tag) >= sizeof(key))
                return;
        struct tag_slot *slot = tag_slot(p, key);
        pthread_mutex_lock(&p->mt_lock);
        if (r == 0) {
                slot->used = true;
                memcpy(slot->key, key, sizeof(key));
                slot->tag = *t;
        } else if (slot->used && strcmp(slot->key, key) == 0)
                slot->used = false; /* not on disk: not here either */
        pthread_mutex_unlock(&p->mt_lock);
}

/* Reads a committed manifest from the cache (at most FALLBACK_MANIFEST_MAX);
 * media_type, when known (a tag's record), saves working it out. */
static int cached_manifest(struct pull *p, const struct digest *d, const char *media_type, void **ret_body,
                           uint64_t *ret_size, char **ret_media_type) {
        int fd = -1;
        uint64_t size = 0;
        int r = cache_open_blob(p->cache, d, &fd, &size);
        if (r < 0)
                return r;
        if (size > FALLBACK_MANIFEST_MAX) {
                close(fd);
                return -EFBIG;
        }
        char *body = malloc(size ? size : 1);
        ssize_t n = body ? pread(fd, body, size, 0) : -1;
        close(fd);
        if (!body || n < 0 || (uint64_t) n != size) {
                free(body);
                return body ? -EIO : -ENOMEM;
        }
        /* Parsing the JSON for its media type was a third of a cached GET's
         * CPU: a tag's record says it, and recent digests are remembered. */
        char *mt = media_type ? strdup(media_type) : mt_cache_get(p, d);
        if (!mt) {
                mt = fallback_manifest_media_type(body, size);
                if (mt)
                        mt_cache_put(p, d, mt);
        }
        if (!mt) {
                free(body);
                return -EMEDIUMTYPE; /* the digest names a blob, not a manifest */
        }
        *ret_body = body;
        *ret_size = size;
        *ret_media_type = mt;
        return 0;
}

/* Stores a verified manifest; a failure only costs a later refetch. */
static void store_manifest(struct pull *p, const struct digest *d, const void *body, uint64_t size) {
        struct cache_entry *e = NULL;
        bool writer = false;
        int r = cache_begin(p->cache, d, (int64_t) size, &e, &writer);
        if (r < 0 || !writer) {
                if (e)
                        cache_entry_unref(e);
                return;
        }
        r = cache_write(e, body, size);
        if (r >= 0)
                r = cache_commit(e, NULL);
        if (r < 0) {
                char ds[DIGEST_STRING_MAX];
                log_warning("cannot cache manifest digest=%s: %s", digest_to_string(d, ds), strerror(-r));
        }
        cache_writer_unref(e);
}

static void note_endpoint(struct request *rq, const struct fallback_response *fr) {
        if (fr->endpoint)
                snprintf(rq->endpoint, sizeof(rq->endpoint), "%s", fr->endpoint);
}

/* An upstream status that is not 200, for the client: 404 lets containerd
 * move on (the origin's "not found", and also its 401/403: layerd holds the
 * credentials, containerd could not do better here), 503 for the rest. */
static enum MHD_Result respond_upstream_failure(struct MHD_Connection *conn, struct request *rq,
                                                const struct fallback_response *fr, bool manifest) {
        if (fr->status == 404 || fr->status == 401 || fr->status == 403)
                return respond_error(conn, rq, MHD_HTTP_NOT_FOUND, manifest ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN",
                                     "upstream answered %d", fr->status);
        return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "no upstream answered: %s",
                             fr->error[0] ? fr->error : "unavailable");
}

struct target {
        const struct spec_registry *reg;
        bool finish_abandoned;
        char repo[256];
        const char *accept;
};

static enum MHD_Result manifest_by_digest(struct pull *p, struct MHD_Connection *conn, struct request *rq,
                                          const struct target *t, bool head, const struct digest *d) {
        char ds[DIGEST_STRING_MAX];
        digest_to_string(d, ds);
        _cleanup_free_ void *body = NULL;
        _cleanup_free_ char *mt = NULL;
        uint64_t size = 0;
        if (cached_manifest(p, d, NULL, &body, &size, &mt) == 0) {
                rq->outcome = "hit";
                return respond_manifest(conn, rq, head, body, size, d, mt);
        }
        if (!rq->may_block)
                return would_block(rq);
        struct fallback_request req = upstream_request(p, t->reg->host, t->repo, FALLBACK_MANIFEST, ds, head);
        req.accept = t->accept;
        struct fallback_response fr;
        int r = fallback_fetch(p->fb, &req, &fr);
        rq->outcome = "miss";
        note_endpoint(rq, &fr);
        enum MHD_Result ret;
        if (r < 0)
                ret = respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "%s", strerror(-r));
        else if (fr.status != 200)
                ret = respond_upstream_failure(conn, rq, &fr, true);
        else {
                if (fr.body)
                        store_manifest(p, d, fr.body, (uint64_t) fr.size);
                ret = respond_manifest(conn, rq, head, fr.body, fr.size >= 0 ? (uint64_t) fr.size : 0, d,
                                       fr.media_type);
        }
        fallback_response_done(&fr);
        return ret;
}

static enum MHD_Result manifest_by_tag(struct pull *p, struct MHD_Connection *conn, struct request *rq,
                                       const struct target *t, bool head) {
        const char *tag = rq->ref;
        struct cache_tag known;
        bool have = tag_get(p, t->reg->host, t->repo, tag, &known) == 0 &&
                    accepts(t->accept, known.media_type);
        int64_t age_ms = have ? ((int64_t) time(NULL) - known.fetched_at) * 1000 : 0;
        _cleanup_free_ void *body = NULL;
        _cleanup_free_ char *mt = NULL;
        uint64_t size = 0;

        /* Fresh enough: no upstream request at all. */
        if (have && age_ms >= 0 && (uint64_t) age_ms < t->reg->tag_ttl_ms) {
                if (head) {
                        rq->outcome = "hit";
                        return respond_manifest(conn, rq, true, NULL, known.size, &known.digest, known.media_type);
                }
                if (cached_manifest(p, &known.digest, known.media_type, &body, &size, &mt) == 0) {
                        rq->outcome = "hit";
                        return respond_manifest(conn, rq, false, body, size, &known.digest, mt);
                }
        }

        if (!rq->may_block)
                return would_block(rq);
        /* Revalidate with HEAD: Docker Hub counts a manifest GET as a pull, a HEAD not. */
        struct fallback_request req = upstream_request(p, t->reg->host, t->repo, FALLBACK_MANIFEST, tag, true);
        req.accept = t->accept;
        struct fallback_response fr;
        int r = fallback_fetch(p->fb, &req, &fr);
        note_endpoint(rq, &fr);
        enum MHD_Result ret;
        if (r >= 0 && fr.status == 200 && fr.has_digest) {
                struct cache_tag now = { .digest = fr.digest, .size = fr.size >= 0 ? (uint64_t) fr.size : 0,
                                         .fetched_at = (int64_t) time(NULL) };
                snprintf(now.media_type, sizeof(now.media_type), "%s",
                         fr.media_type ? fr.media_type : "application/vnd.oci.image.manifest.v1+json");
                /* What a tag points to depends on what the client accepts: a
                 * client that takes no index may be given one platform's
                 * manifest. Only an answer every client could get is recorded. */
                bool general = accepts(t->accept, MT_OCI_INDEX) && accepts(t->accept, MT_DOCKER_LIST);
                if (fr.size >= 0 && fr.media_type && (general || is_index(now.media_type)))
                        tag_put(p, t->reg->host, t->repo, tag, &now);
                rq->outcome = have && digest_equal(&known.digest, &fr.digest) ? "revalidated" : "miss";
                if (fr.body) /* the endpoint sent no digest on HEAD: fallback asked with GET */
                        store_manifest(p, &fr.digest, fr.body, (uint64_t) fr.size);
                if (head)
                        ret = respond_manifest(conn, rq, true, NULL, now.size, &fr.digest, now.media_type);
                else if (cached_manifest(p, &fr.digest, NULL, &body, &size, &mt) == 0)
                        ret = respond_manifest(conn, rq, false, body, size, &fr.digest, mt);
                else
                        ret = manifest_by_digest(p, conn, rq, t, false, &fr.digest);
                fallback_response_done(&fr);
                return ret;
        }
        /* stale-if-error: every upstream failed (not "not found"), the node's last answer stands. */
        bool failed = r < 0 || (fr.status != 200 && fr.status != 404 && fr.status != 401 && fr.status != 403);
        if (failed && have && (head || cached_manifest(p, &known.digest, known.media_type, &body, &size, &mt) == 0)) {
                char ds[DIGEST_STRING_MAX];
                atomic_fetch_add(&p->stale_serves, 1);
                rq->outcome = "stale";
                log_warning("serving a stale tag, every upstream failed: ns=%s repo=%s tag=%s digest=%s age_s=%" PRId64
                            " reason=\"%s\"",
                            t->reg->host, t->repo, tag, digest_to_string(&known.digest, ds), age_ms / 1000,
                            r < 0 ? strerror(-r) : fr.error);
                ret = head ? respond_manifest(conn, rq, true, NULL, known.size, &known.digest, known.media_type)
                           : respond_manifest(conn, rq, false, body, size, &known.digest, mt);
        } else if (r < 0) {
                rq->outcome = "miss";
                ret = respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "%s", strerror(-r));
        } else {
                rq->outcome = "miss";
                ret = respond_upstream_failure(conn, rq, &fr, true);
        }
        fallback_response_done(&fr);
        return ret;
}

/* ---- blobs ----------------------------------------------------------------------------- */

static void download_unref_locked(struct pull *p, struct download *dl) {
        if (!dl || --dl->refs > 0)
                return;
        for (struct download **q = &p->downloads; *q; q = &(*q)->next)
                if (*q == dl) {
                        *q = dl->next;
                        break;
                }
        free(dl->registry);
        free(dl->repository);
        free(dl->batch);
        free(dl);
}


/* Under pull->lock: a client stops waiting for dl. The last one gone before
 * the end: finish for the cache (the default), or cancel. */
static void reader_release_locked(struct download *dl) {
        if (--dl->readers == 0 && dl->status == 0 && !dl->finish_abandoned)
                atomic_store(&dl->cancel, true);
}

static int dl_start(void *userdata, int64_t total) {
        struct download *dl = userdata;
        if (total < 0)
                return 0;
        return cache_entry_set_size(dl->entry, (uint64_t) total);
}

static bool dl_cancelled(void *userdata) {
        struct download *dl = userdata;
        return atomic_load(&dl->pull->stopping) || atomic_load(&dl->cancel);
}

/* Hands the batched bytes to the cache (and so to the clients following it). */
static int dl_flush(struct download *dl) {
        if (dl->batch_len == 0)
                return 0;
        int r = cache_write(dl->entry, dl->batch, dl->batch_len);
        dl->batch_len = 0;
        return r;
}

/* A prefetch download keeps to the shared rate while no client follows it;
 * once one joins, the client waits on these bytes and the limit lifts
 * (real pulls go first). Sleeps in slices to notice that, and cancels. */
static void dl_throttle(struct download *dl, size_t size) {
        struct pull *p = dl->pull;
        pthread_mutex_lock(&p->lock);
        bool followed = dl->readers > 0;
        pthread_mutex_unlock(&p->lock);
        if (followed)
                return;
        uint64_t wait = ratelimit_take(dl->limit, size, time_now_ns());
        while (wait > 0 && !dl_cancelled(dl)) {
                uint64_t slice = wait < THROTTLE_SLICE_NS ? wait : THROTTLE_SLICE_NS;
                struct timespec ts = { .tv_sec = (time_t) (slice / 1000000000ULL),
                                       .tv_nsec = (long) (slice % 1000000000ULL) };
                nanosleep(&ts, NULL);
                wait -= slice;
                pthread_mutex_lock(&p->lock);
                followed = dl->readers > 0;
                pthread_mutex_unlock(&p->lock);
                if (followed)
                        break;
        }
}

static int dl_write(void *userdata, const void *data, size_t size) {
        struct download *dl = userdata;
        if (dl_cancelled(dl))
                return -ECANCELED;
        if (dl->limit)
                dl_throttle(dl, size);
        /* libcurl hands over 16 KiB at a time: one write, one digest update and
         * one wake-up of every reader per DL_BATCH instead (the cold path's
         * profile was all pwrite and wake-ups). */
        int r = 0;
        if (dl->batch_len + size > DL_BATCH)
                r = dl_flush(dl);
        if (r >= 0 && size >= DL_BATCH)
                r = cache_write(dl->entry, data, size);
        else if (r >= 0) {
                memcpy(dl->batch + dl->batch_len, data, size);
                dl->batch_len += size;
        }
        if (r < 0)
                return r;
        dl->bytes += size;
        uint64_t now = time_now_ms();
        if (now - dl->last_progress_ms >= PROGRESS_EVERY_MS) {
                char ds[DIGEST_STRING_MAX];
                uint64_t secs = (now - dl->started_ms) / 1000;
                log_info("downloading ns=%s repo=%s digest=%s bytes=%" PRIu64 " rate_kib_s=%" PRIu64, dl->registry,
                         dl->repository, digest_to_string(&dl->digest, ds), dl->bytes,
                         secs ? dl->bytes / 1024 / secs : dl->bytes / 1024);
                dl->last_progress_ms = now;
        }
        return 0;
}

static void *download_main(void *arg) {
        struct download *dl = arg;
        struct pull *p = dl->pull;
        char ds[DIGEST_STRING_MAX];
        digest_to_string(&dl->digest, ds);
        struct sink sink = { .userdata = dl, .start = dl_start, .write = dl_write };
        struct fallback_request req = {
                .registry = dl->registry, .repository = dl->repository, .kind = FALLBACK_BLOB,
                .reference = ds, .sink = &sink, .cancelled = dl_cancelled, .cancel_userdata = dl,
        };
        struct fallback_response fr;
        dl->started_ms = dl->last_progress_ms = time_now_ms();
        int r = fallback_fetch(p->fb, &req, &fr);
        if (r >= 0 && fr.status == 200)
                r = dl_flush(dl); /* the tail, before the commit */
        int status = r >= 0 ? fr.status : 503;
        if (fr.endpoint) {
                /* Before the commit, which releases the readers' last byte: their log lines name it. */
                pthread_mutex_lock(&p->lock);
                snprintf(dl->endpoint, sizeof(dl->endpoint), "%s", fr.endpoint);
                pthread_mutex_unlock(&p->lock);
        }
        if (r >= 0 && fr.status == 200) {
                struct digest got;
                int c = cache_commit(dl->entry, &got);
                if (c == -EBADMSG || c == -EMSGSIZE) {
                        char gs[DIGEST_STRING_MAX] = "-";
                        if (c == -EBADMSG)
                                digest_to_string(&got, gs);
                        log_error("upstream sent wrong bytes, not cached: ns=%s repo=%s digest=%s got=%s size=%" PRIu64
                                  " endpoint=%s",
                                  dl->registry, dl->repository, ds, gs, dl->bytes, fr.endpoint ? fr.endpoint : "-");
                        if (fr.endpoint)
                                fallback_report_bad(p->fb, dl->registry, fr.endpoint, "served bytes that do not match their digest");
                        status = 502;
                } else if (c < 0) {
                        /* Verified either way (its clients got it); was it stored? */
                        uint64_t sz;
                        if (cache_stat(p->cache, &dl->digest, &sz) == 0)
                                log_warning("blob stored but maybe not durable: digest=%s: %s", ds, strerror(-c));
                        else
                                log_warning("verified blob not stored: ns=%s repo=%s digest=%s: %s", dl->registry,
                                            dl->repository, ds, strerror(-c));
                } else
                        log_info("downloaded ns=%s repo=%s digest=%s bytes=%" PRIu64 " ms=%" PRIu64 " endpoint=%s",
                                 dl->registry, dl->repository, ds, dl->bytes, time_now_ms() - dl->started_ms,
                                 fr.endpoint ? fr.endpoint : "-");
        } else {
                if (r == -ENOSPC)
                        log_warning("cache disk full, download not cached: ns=%s repo=%s digest=%s", dl->registry,
                                    dl->repository, ds);
                else if (r == -ECANCELED && !atomic_load(&p->stopping))
                        log_info("download cancelled, no client wants it (agent.finish_abandoned_downloads: false): "
                                 "ns=%s repo=%s digest=%s bytes=%" PRIu64,
                                 dl->registry, dl->repository, ds, dl->bytes);
                else if (r != -ECANCELED)
                        log_warning("download failed: ns=%s repo=%s digest=%s status=%d reason=\"%s\"", dl->registry,
                                    dl->repository, ds, status, r < 0 ? strerror(-r) : fr.error);
        }
        /* The verdict first, then the wake-up of the readers (commit or abort). */
        pthread_mutex_lock(&p->lock);
        dl->status = status == 200 ? 200 : status;
        pthread_mutex_unlock(&p->lock);
        fallback_response_done(&fr);
        cache_writer_unref(dl->entry); /* aborts what was not committed */
        pthread_mutex_lock(&p->lock);
        download_unref_locked(p, dl);
        p->threads--;
        pthread_cond_broadcast(&p->ended);
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

struct stream {
        struct pull *pull;
        struct request *rq;
        struct MHD_Connection *conn;
        /* The waker: a thread that, while the connection is suspended for want
         * of bytes (armed), waits for the source and resumes it. */
        pthread_mutex_t wlock;
        pthread_cond_t wcond;
        pthread_t waker;
        bool waker_started, armed, stop, stalled; /* under wlock */
        uint64_t armed_at;                         /* s->abs when last armed */
        struct cache_reader *reader; /* the cache's follow reader; NULL when streaming through */
        struct relay *relay;         /* stream-through from upstream, when the cache cannot take the blob */
        struct download *dl;         /* the download followed (a reference), or NULL */
        uint64_t abs;                /* bytes taken from the source so far */
        uint64_t start;              /* Range start: bytes to read and drop */
        uint64_t left;               /* bytes still to send */
        uint64_t drop;               /* relay bytes to skip (already taken from the cache) */
        uint64_t size;               /* the whole blob's, as promised to the client */
        struct digest digest;
        char registry[256], repository[256];
};

/* A thread of ours is about to start: counted before it exists, so that
 * pull_shutdown() waits for it; false once stopping (then none may start). */
static bool thread_begin(struct pull *p) {
        pthread_mutex_lock(&p->lock);
        bool stopping = atomic_load(&p->stopping);
        if (!stopping)
                p->threads++;
        pthread_mutex_unlock(&p->lock);
        return !stopping;
}

/* ... and has ended (or never started). */
static void thread_end(struct pull *p) {
        pthread_mutex_lock(&p->lock);
        p->threads--;
        pthread_cond_broadcast(&p->ended);
        pthread_mutex_unlock(&p->lock);
}

static void relay_exited(void *userdata) {
        thread_end(userdata);
}

/* Stream-through: the blob from upstream for this client alone, uncached. */
static int relay_start(struct pull *p, const char *registry, const char *repository, const struct digest *d,
                       int64_t expected_size, struct relay **ret) {
        struct relay_hooks hooks = { .stopping = &p->stopping, .exited = relay_exited, .userdata = p };
        if (!thread_begin(p))
                return -ESHUTDOWN;
        int r = relay_new(p->fb, registry, repository, d, expected_size, &hooks, ret);
        if (r < 0)
                thread_end(p);
        else
                atomic_fetch_add(&p->stream_throughs, 1);
        return r;
}

/* Up to max bytes of the source, without waiting: -EAGAIN when it has none yet. */
static ssize_t source_read(struct stream *s, char *buf, size_t max) {
        if (!s->relay) {
                ssize_t n = cache_reader_read(s->reader, buf, max, 0);
                if (n == -ETIMEDOUT)
                        return -EAGAIN;
                if (n != -ENOSPC)
                        return n;
                /* The cache's disk filled up under this download: a pull must
                 * not fail for that, so the rest comes straight from upstream. */
                char ds[DIGEST_STRING_MAX];
                log_notice("cache disk full, streaming through: ns=%s repo=%s digest=%s offset=%" PRIu64, s->registry,
                           s->repository, digest_to_string(&s->digest, ds), s->abs);
                int r = relay_start(s->pull, s->registry, s->repository, &s->digest, (int64_t) s->size, &s->relay);
                if (r < 0)
                        return r;
                s->drop = s->abs; /* the relay starts at byte 0, to verify the digest */
        }
        for (unsigned rounds = 0; s->drop > 0; rounds++) {
                if (rounds >= SKIP_READS_PER_CALL)
                        return -EAGAIN; /* suspended; the waker sees bytes and resumes it at once */
                ssize_t n = relay_read(s->relay, buf, s->drop < max ? (size_t) s->drop : max, 0);
                if (n <= 0)
                        return n == 0 ? -EIO : n == -ETIMEDOUT ? -EAGAIN : n;
                s->drop -= (uint64_t) n;
        }
        ssize_t n = relay_read(s->relay, buf, max, 0);
        return n == -ETIMEDOUT ? -EAGAIN : n;
}

static void *waker_main(void *arg) {
        struct stream *s = arg;
        pthread_mutex_lock(&s->wlock);
        for (;;) {
                while (!s->armed && !s->stop)
                        pthread_cond_wait(&s->wcond, &s->wlock);
                if (s->stop)
                        break;
                pthread_mutex_unlock(&s->wlock);
                /* The connection is suspended: its thread touches neither source now. */
                int r = s->relay ? relay_wait(s->relay, RELAY_WAIT_MS) : cache_reader_wait(s->reader, STREAM_WAIT_MS);
                pthread_mutex_lock(&s->wlock);
                if (r == -ETIMEDOUT)
                        s->stalled = true;
                s->armed = false;
                MHD_resume_connection(s->conn);
                pthread_mutex_lock(&s->pull->lock);
                s->pull->suspended--;
                pthread_cond_broadcast(&s->pull->ended);
                pthread_mutex_unlock(&s->pull->lock);
        }
        pthread_mutex_unlock(&s->wlock);
        return NULL;
}

/* Nothing to send yet: suspends the connection until the waker sees bytes
 * (or the end, a failure, or no progress for the stream's wait). */
static ssize_t stream_cut(struct stream *s, ssize_t why);
static ssize_t stream_suspend(struct stream *s) {
        pthread_mutex_lock(&s->wlock);
        /* Stalled: the waker's wait ran out with no bytes since it was armed;
         * bytes that came after all (s->abs moved) clear it. */
        bool stalled = s->stalled && s->abs == s->armed_at;
        s->stalled = false;
        if (!stalled && !s->waker_started) {
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setstacksize(&attr, 64 * 1024);
                s->waker_started = pthread_create(&s->waker, &attr, waker_main, s) == 0;
                pthread_attr_destroy(&attr);
        }
        if (stalled || !s->waker_started) {
                pthread_mutex_unlock(&s->wlock);
                /* No thread to spare: cut (containerd resumes with a Range)
                 * rather than hold an event-loop thread and its connections. */
                return stream_cut(s, stalled ? -ETIMEDOUT : -EAGAIN);
        }
        pthread_mutex_lock(&s->pull->lock);
        bool stopping = atomic_load(&s->pull->stopping);
        if (!stopping)
                s->pull->suspended++;
        pthread_mutex_unlock(&s->pull->lock);
        if (stopping) {
                /* pull_shutdown() waits for no suspended connection: none new. */
                pthread_mutex_unlock(&s->wlock);
                return stream_cut(s, -ESHUTDOWN);
        }
        MHD_suspend_connection(s->conn);
        s->armed = true;
        s->armed_at = s->abs;
        pthread_cond_signal(&s->wcond);
        pthread_mutex_unlock(&s->wlock);
        return 0;
}

static ssize_t stream_cut(struct stream *s, ssize_t why) {
        /* The download failed, or did not verify: cut the connection; never a
         * complete body with wrong bytes. */
        char ds[DIGEST_STRING_MAX];
        atomic_fetch_add(&s->pull->cut_streams, 1);
        if (s->relay && why == -EBADMSG)
                atomic_fetch_add(&s->pull->verify_failures, 1); /* the cache counts its own */
        log_warning("cutting a streamed blob: ns=%s repo=%s digest=%s sent=%" PRIu64 " reason=\"%s\"", s->registry,
                    s->repository, digest_to_string(&s->digest, ds), (uint64_t) atomic_load(&s->rq->bytes),
                    why == 0 ? "ended early" : strerror((int) -why));
        return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        struct stream *s = cls;
        (void) pos;
        for (unsigned rounds = 0; s->abs < s->start; rounds++) {
                uint64_t want = s->start - s->abs;
                /* Up to a Range's start: skipped in the cache without reading;
                 * read and dropped from a relay, a bounded amount per call (the
                 * event loop has other connections). */
                uint64_t k = s->relay ? 0 : cache_reader_skip(s->reader, want);
                if (k > 0) {
                        s->abs += k;
                        continue;
                }
                if (rounds >= SKIP_READS_PER_CALL)
                        return stream_suspend(s); /* bytes are there: resumed at once */
                ssize_t n = source_read(s, buf, want < max ? (size_t) want : max);
                if (n == -EAGAIN)
                        return stream_suspend(s);
                if (n <= 0)
                        return stream_cut(s, n);
                s->abs += (uint64_t) n;
        }
        if (s->left == 0 && s->size == 0) {
                /* An empty blob has no last byte to hold back: end only once the
                 * source confirms it (verified), and cut if it has bytes after all. */
                ssize_t n = source_read(s, buf, max);
                if (n == -EAGAIN)
                        return stream_suspend(s);
                return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : stream_cut(s, n < 0 ? n : -EMSGSIZE);
        }
        if (s->left == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
        ssize_t n = source_read(s, buf, s->left < max ? (size_t) s->left : max);
        if (n == -EAGAIN)
                return stream_suspend(s);
        if (n <= 0)
                return stream_cut(s, n); /* 0 here: the blob ended before its size */
        s->abs += (uint64_t) n;
        s->left -= (uint64_t) n;
        if (s->left == 0 && s->dl) {
                pthread_mutex_lock(&s->pull->lock);
                snprintf(s->rq->endpoint, sizeof(s->rq->endpoint), "%s", s->dl->endpoint);
                pthread_mutex_unlock(&s->pull->lock);
        }
        atomic_fetch_add(&s->rq->bytes, (uint64_t) n);
        atomic_fetch_add(&s->pull->bytes_served, (uint64_t) n);
        return n;
}

static void stream_free(void *cls) {
        struct stream *s = cls;
        pthread_mutex_lock(&s->wlock);
        s->stop = true;
        pthread_cond_signal(&s->wcond);
        bool started = s->waker_started;
        pthread_mutex_unlock(&s->wlock);
        if (started)
                pthread_join(s->waker, NULL);
        pthread_cond_destroy(&s->wcond);
        pthread_mutex_destroy(&s->wlock);
        cache_reader_free(s->reader);
        relay_free(s->relay);
        if (s->dl) {
                pthread_mutex_lock(&s->pull->lock);
                reader_release_locked(s->dl);
                download_unref_locked(s->pull, s->dl);
                pthread_mutex_unlock(&s->pull->lock);
        }
        free(s);
}

/* 416, saying how big the blob is (RFC 9110 section 15.5.17). */
static enum MHD_Result respond_unsatisfiable(struct MHD_Connection *conn, struct request *rq, uint64_t size) {
        char cr[64];
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
        char cr[96];
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

/* A download in flight, joined or started: answer as soon as its size is
 * known, then stream it as it arrives. */
static enum MHD_Result respond_fetch_failure(struct MHD_Connection *conn, struct request *rq, int r, int status) {
        if (r == -ETIMEDOUT)
                return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                     "no upstream answered within %d s", HEADER_WAIT_MS / 1000);
        if (status == 404 || status == 401 || status == 403)
                return respond_error(conn, rq, MHD_HTTP_NOT_FOUND, "BLOB_UNKNOWN", "upstream answered %d", status);
        return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "download failed: %s",
                             strerror(-r));
}

/* A download in flight (joined or started: e), or, when the cache cannot
 * take the blob (e NULL, or its disk filled before the size was known), a
 * stream-through: answer as soon as the size is known, then stream the
 * bytes as they arrive. */
static enum MHD_Result respond_blob_stream(struct MHD_Connection *conn, struct request *rq, struct pull *p,
                                           const struct target *t, struct download *dl, struct cache_entry *e,
                                           const struct digest *d) {
        uint64_t size = 0;
        struct relay *relay = NULL;
        int r = e ? cache_entry_wait_size(e, HEADER_WAIT_MS, &size) : -ENOSPC;
        if (r == -ENOSPC) {
                char ds[DIGEST_STRING_MAX];
                log_notice("the cache cannot take the blob, streaming through: ns=%s repo=%s digest=%s", t->reg->host,
                           t->repo, digest_to_string(d, ds));
                int status = 0;
                r = relay_start(p, t->reg->host, t->repo, d, -1, &relay);
                if (r >= 0)
                        r = relay_wait_size(relay, HEADER_WAIT_MS, &size, &status);
                if (r < 0) {
                        relay_free(relay);
                        return respond_fetch_failure(conn, rq, r, status);
                }
                e = NULL;
                rq->outcome = "through";
        } else if (r < 0) {
                pthread_mutex_lock(&p->lock);
                int status = dl ? dl->status : 0;
                pthread_mutex_unlock(&p->lock);
                return respond_fetch_failure(conn, rq, r, status);
        }
        const char *range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Range");
        uint64_t start = 0, length = size;
        int k = range ? range_parse(range, size, &start, &length) : -EINVAL;
        if (k == -ERANGE) {
                relay_free(relay);
                return respond_unsatisfiable(conn, rq, size);
        }
        if (k < 0) {
                start = 0;
                length = size;
        }
        struct stream *s = calloc(1, sizeof(*s));
        if (!s) {
                relay_free(relay);
                return MHD_NO;
        }
        *s = (struct stream) { .pull = p, .rq = rq, .conn = conn, .relay = relay, .start = start, .left = length,
                               .size = size, .digest = *d };
        pthread_mutex_init(&s->wlock, NULL);
        pthread_cond_init(&s->wcond, NULL);
        if (e && dl) {
                pthread_mutex_lock(&p->lock);
                dl->refs++;
                dl->readers++;
                s->dl = dl;
                pthread_mutex_unlock(&p->lock);
        }
        snprintf(s->registry, sizeof(s->registry), "%s", t->reg->host);
        snprintf(s->repository, sizeof(s->repository), "%s", t->repo);
        if (e && cache_reader_new(e, &s->reader) < 0) {
                stream_free(s);
                return MHD_NO;
        }
        struct MHD_Response *resp = MHD_create_response_from_callback(length, STREAM_BLOCK, stream_read, s, stream_free);
        if (!resp) {
                stream_free(s);
                return MHD_NO;
        }
        char cr[96];
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

/* Under p->lock: the download of d into the writer entry e, on a thread of
 * its own so that no client (leaving early or not) decides its fate. On
 * success *ret holds a reference for the caller. */
static int download_start(struct pull *p, const struct target *t, const struct digest *d, struct cache_entry *e,
                          unsigned readers, struct ratelimit *limit, struct download **ret) {
        struct download *dl = calloc(1, sizeof(*dl));
        if (!dl)
                return -ENOMEM;
        dl->refs = 2; /* the caller's, the thread's */
        dl->readers = readers; /* a client: the caller, until its stream takes over; prefetch: none */
        dl->limit = limit;
        dl->digest = *d;
        dl->finish_abandoned = t->finish_abandoned;
        dl->pull = p;
        dl->entry = e;
        dl->registry = strdup(t->reg->host);
        dl->repository = strdup(t->repo);
        dl->batch = malloc(DL_BATCH);
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int r = dl->registry && dl->repository && dl->batch ? -pthread_create(&th, &attr, download_main, dl) : -ENOMEM;
        pthread_attr_destroy(&attr);
        if (r < 0) {
                free(dl->registry);
                free(dl->repository);
                free(dl->batch);
                free(dl);
                return r;
        }
        dl->next = p->downloads;
        p->downloads = dl;
        p->threads++;
        *ret = dl;
        return 0;
}

static enum MHD_Result blob(struct pull *p, struct MHD_Connection *conn, struct request *rq, const struct target *t,
                            bool head, const struct digest *d) {
        for (unsigned round = 0; round < 3; round++) {
                int fd = -1;
                uint64_t size = 0;
                if (cache_open_blob(p->cache, d, &fd, &size) == 0) {
                        rq->outcome = "hit";
                        return respond_blob_fd(conn, rq, p, head, fd, size, d);
                }
                if (!rq->may_block)
                        return would_block(rq);
                if (head) {
                        /* A HEAD needs no bytes: ask upstream, cache nothing. */
                        struct fallback_request req =
                                upstream_request(p, t->reg->host, t->repo, FALLBACK_BLOB, rq->ref, true);
                        struct fallback_response fr;
                        int r = fallback_fetch(p->fb, &req, &fr);
                        rq->outcome = "miss";
                        note_endpoint(rq, &fr);
                        enum MHD_Result ret;
                        if (r >= 0 && fr.status == 200 && fr.size >= 0) {
                                struct MHD_Response *resp = head_response((uint64_t) fr.size);
                                if (resp && (!add_object_headers(resp, d, NULL) ||
                                             MHD_add_response_header(resp, "Accept-Ranges", "bytes") != MHD_YES)) {
                                        MHD_destroy_response(resp);
                                        resp = NULL;
                                }
                                ret = queue(conn, rq, MHD_HTTP_OK, resp);
                        } else if (r >= 0 && fr.status != 200)
                                ret = respond_upstream_failure(conn, rq, &fr, false);
                        else
                                ret = respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                                    "no upstream answered");
                        fallback_response_done(&fr);
                        return ret;
                }

                /* Join the download in flight or start it; the download table
                 * and the cache's in-flight list change together under p->lock. */
                struct cache_entry *e = NULL, *mine = NULL;
                bool writer = false;
                struct download *dl = NULL;
                pthread_mutex_lock(&p->lock);
                int r = atomic_load(&p->stopping) ? -ESHUTDOWN : cache_begin(p->cache, d, -1, &e, &writer);
                if (r == 0 && !writer) {
                        /* The download of this very entry (a finished one of the same
                         * digest may linger on the list while its readers end). */
                        for (dl = p->downloads; dl; dl = dl->next)
                                if (dl->entry == e && dl->status == 0)
                                        break;
                        if (dl && atomic_load(&dl->cancel)) {
                                /* Being cancelled, nobody wanted it: not to be joined. */
                                pthread_mutex_unlock(&p->lock);
                                cache_entry_unref(e);
                                return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                                     "the download was just cancelled; try again");
                        }
                        if (dl) {
                                dl->refs++;
                                dl->readers++; /* from now on: a cancel must not miss this client */
                        }
                } else if (r == 0) {
                        /* This request's own reference, taken before the thread can finish and drop the writer's. */
                        mine = cache_entry_ref(e);
                        r = download_start(p, t, d, e, 1, NULL, &dl);
                        if (r < 0) {
                                mine = cache_entry_unref(mine);
                                cache_writer_unref(e);
                        }
                }
                pthread_mutex_unlock(&p->lock);
                if (r == -EEXIST)
                        continue; /* committed meanwhile: serve it from disk */
                if (r == -ESHUTDOWN || r == -ENOMEM)
                        return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "%s",
                                             strerror(-r));
                if (r < 0) {
                        /* The cache cannot start it (disk full, read-only, ...): stream through. */
                        char ds[DIGEST_STRING_MAX];
                        log_warning("cannot cache the blob: ns=%s repo=%s digest=%s: %s", t->reg->host, t->repo,
                                    digest_to_string(d, ds), strerror(-r));
                        return respond_blob_stream(conn, rq, p, t, NULL, NULL, d);
                }
                rq->outcome = writer ? "miss" : "join";
                if (!writer)
                        mine = e;
                enum MHD_Result ret = respond_blob_stream(conn, rq, p, t, dl, mine, d);
                cache_entry_unref(mine);
                if (dl) {
                        /* The stream, if one was made, counts itself. */
                        pthread_mutex_lock(&p->lock);
                        reader_release_locked(dl);
                        download_unref_locked(p, dl);
                        pthread_mutex_unlock(&p->lock);
                }
                return ret;
        }
        return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "the blob keeps changing state");
}

/* ---- the in-process API (prefetch, cache check) ----------------------------------------- */

const struct spec *pull_spec_acquire(struct pull *p, void **ret_token) {
        struct spec_ref *r = spec_ref_get(p);
        *ret_token = r;
        return r->spec;
}

void pull_spec_release(struct pull *p, void *token) {
        spec_ref_put(p, token);
}

void pull_set_ready_gate(struct pull *p, uint64_t until_ms) {
        atomic_store(&p->ready_gate_until_ms, until_ms);
}

void pull_set_metrics_hook(struct pull *p, void (*fn)(FILE *f, void *userdata), void *userdata) {
        p->metrics_hook = fn;
        p->metrics_userdata = userdata;
}

void pull_manifest_done(struct pull_manifest *m) {
        free(m->body);
        free(m->media_type);
        *m = (struct pull_manifest) {};
}

/* The registry a request of the in-process API may go to: a mirrored one
 * (no open proxy here either); offline, any name (nothing is asked). */
static const struct spec_registry *api_registry(const struct spec *s, const char *registry, bool offline) {
        const struct spec_registry *reg = spec_find_registry(s, registry);
        if (!offline && (!reg || !reg->mirror || strcmp(reg->host, SPEC_DEFAULT_REGISTRY) == 0))
                return NULL;
        return reg;
}

/* A manifest by digest: the cache, else upstream (verified), stored. */
static int api_manifest_by_digest(struct pull *p, const char *host, const char *repo, const struct digest *d,
                                  bool offline, struct pull_manifest *m) {
        char ds[DIGEST_STRING_MAX];
        if (cached_manifest(p, d, NULL, &m->body, &m->size, &m->media_type) == 0) {
                m->digest = *d;
                return 0;
        }
        if (offline)
                return -ENOENT;
        struct fallback_request req =
                upstream_request(p, host, repo, FALLBACK_MANIFEST, digest_to_string(d, ds), false);
        struct fallback_response fr;
        int r = fallback_fetch(p->fb, &req, &fr);
        if (r >= 0 && fr.status == 200 && fr.body && fr.size >= 0) {
                store_manifest(p, d, fr.body, (uint64_t) fr.size);
                m->size = (uint64_t) fr.size;
                m->body = TAKE_PTR(fr.body);
                m->media_type = fr.media_type ? TAKE_PTR(fr.media_type) : fallback_manifest_media_type(m->body, m->size);
                m->digest = *d;
                m->fetched = true;
                r = m->media_type ? 0 : -EMEDIUMTYPE;
        } else if (r >= 0)
                r = fr.status == 404 || fr.status == 401 || fr.status == 403 ? -ENOENT : -EHOSTUNREACH;
        fallback_response_done(&fr);
        if (r < 0)
                pull_manifest_done(m);
        return r;
}

int pull_manifest_ensure(struct pull *p, const char *registry, const char *repository, const char *reference,
                         bool offline, struct pull_manifest *ret) {
        struct pull_manifest m = {};
        struct digest d;
        bool by_digest = digest_parse(reference, &d) == 0;
        if ((!by_digest && !reference_tag_is_valid(reference)) || !reference_path_is_valid(repository))
                return -EINVAL;
        struct spec_ref *sr = spec_ref_get(p);
        const struct spec_registry *reg = api_registry(sr->spec, registry, offline);
        const char *host = reg ? reg->host : registry;
        int r = 0;
        if (!reg && !offline) {
                r = -ENXIO;
                goto out;
        }
        if (!by_digest) {
                /* As a client's request by tag (manifest_by_tag): fresh records
                 * are trusted, older ones revalidated with a HEAD, the last
                 * answer kept when every upstream fails. Offline: the record. */
                struct cache_tag known;
                bool have = tag_get(p, host, repository, reference, &known) == 0;
                int64_t age_ms = have ? ((int64_t) time(NULL) - known.fetched_at) * 1000 : 0;
                bool fresh = have && (offline || (age_ms >= 0 && (uint64_t) age_ms < reg->tag_ttl_ms));
                if (fresh && cached_manifest(p, &known.digest, known.media_type, &m.body, &m.size, &m.media_type) == 0) {
                        m.digest = known.digest;
                        goto out;
                }
                if (offline) {
                        r = -ENOENT;
                        goto out;
                }
                struct fallback_request req =
                        upstream_request(p, host, repository, FALLBACK_MANIFEST, reference, true);
                struct fallback_response fr;
                r = fallback_fetch(p->fb, &req, &fr);
                if (r >= 0 && fr.status == 200 && fr.has_digest) {
                        struct cache_tag now = { .digest = fr.digest, .size = fr.size >= 0 ? (uint64_t) fr.size : 0,
                                                 .fetched_at = (int64_t) time(NULL) };
                        snprintf(now.media_type, sizeof(now.media_type), "%s", fr.media_type ? fr.media_type : "");
                        /* The default Accept takes every manifest type: an answer any client could get. */
                        if (fr.size >= 0 && fr.media_type)
                                tag_put(p, host, repository, reference, &now);
                        if (fr.body)
                                store_manifest(p, &fr.digest, fr.body, (uint64_t) fr.size);
                        d = fr.digest;
                        fallback_response_done(&fr);
                } else {
                        bool failed = r < 0 || (fr.status != 404 && fr.status != 401 && fr.status != 403);
                        fallback_response_done(&fr);
                        if (r == -ECANCELED)
                                goto out;
                        if (failed && have &&
                            cached_manifest(p, &known.digest, known.media_type, &m.body, &m.size, &m.media_type) == 0) {
                                m.digest = known.digest;
                                m.stale = true;
                                r = 0;
                                goto out;
                        }
                        r = failed ? -EHOSTUNREACH : -ENOENT;
                        goto out;
                }
        }
        r = api_manifest_by_digest(p, host, repository, &d, offline, &m);
out:
        spec_ref_put(p, sr);
        if (r >= 0 && offline && m.body) {
                /* The air-gapped check: a manifest is hashed again like every
                 * blob, not trusted for being in the cache. */
                struct digest got;
                r = digest_buffer(m.digest.algorithm, m.body, m.size, &got);
                if (r >= 0 && !digest_equal(&got, &m.digest))
                        r = -EBADMSG;
        }
        if (r < 0) {
                pull_manifest_done(&m);
                return r;
        }
        *ret = m;
        return 0;
}

/* Follows an entry someone else writes (no download of ours: a manifest
 * being stored, say) to its end; 0 once committed. */
static int follow_to_end(struct cache_entry *e) {
        _cleanup_(cache_reader_freep) struct cache_reader *rd = NULL;
        _cleanup_free_ char *buf = malloc(STREAM_BLOCK);
        if (!buf)
                return -ENOMEM;
        int r = cache_reader_new(e, &rd);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = cache_reader_read(rd, buf, STREAM_BLOCK, STREAM_WAIT_MS);
                if (n <= 0)
                        return (int) n;
        }
}

int pull_blob_ensure(struct pull *p, const char *registry, const char *repository, const struct digest *d,
                     int64_t size, struct ratelimit *limit, bool offline, bool *ret_fetched, uint64_t *ret_size) {
        uint64_t have = 0;
        if (offline) {
                /* Re-hashed: what an air-gapped site checks before it cuts the link. */
                int r = cache_verify_blob(p->cache, d, &have);
                if (r == 0)
                        *ret_size = have, *ret_fetched = false;
                return r;
        }
        if (cache_stat(p->cache, d, &have) == 0) {
                *ret_size = have;
                *ret_fetched = false;
                return 0;
        }
        struct spec_ref *sr = spec_ref_get(p);
        struct target t = { .reg = api_registry(sr->spec, registry, false), .finish_abandoned = true };
        int r = -ENXIO;
        bool fetched = false;
        if (!t.reg || (size_t) snprintf(t.repo, sizeof(t.repo), "%s", repository) >= sizeof(t.repo))
                goto out;
        for (unsigned round = 0; round < 3; round++) {
                struct cache_entry *e = NULL;
                struct download *dl = NULL;
                bool writer = false, reader = false;
                pthread_mutex_lock(&p->lock);
                r = atomic_load(&p->stopping) ? -ESHUTDOWN : cache_begin(p->cache, d, size, &e, &writer);
                if (r == 0 && !writer) {
                        for (dl = p->downloads; dl; dl = dl->next)
                                if (dl->entry == e && dl->status == 0)
                                        break;
                        if (dl) {
                                dl->refs++;
                                /* A client's download (no limit to lift) is wanted by this
                                 * round too: its client leaving must not cancel it
                                 * (finish_abandoned_downloads: false). Another round's
                                 * limited one is only waited for. */
                                reader = !dl->limit;
                                if (reader)
                                        dl->readers++;
                        }
                } else if (r == 0) {
                        /* No client is waiting: at the prefetch rate, finished even if nobody joins. */
                        r = download_start(p, &t, d, e, 0, limit, &dl);
                        if (r < 0)
                                cache_writer_unref(e);
                        e = NULL; /* the download thread's now */
                        fetched = r == 0;
                }
                pthread_mutex_unlock(&p->lock);
                if (r == -EEXIST)
                        break;
                if (r < 0)
                        goto out;
                if (dl) {
                        int status;
                        pthread_mutex_lock(&p->lock);
                        while ((status = dl->status) == 0 && !atomic_load(&p->stopping))
                                (void) time_cond_wait_until(&p->ended, &p->lock, time_deadline_ms(1000));
                        if (reader)
                                reader_release_locked(dl);
                        download_unref_locked(p, dl);
                        pthread_mutex_unlock(&p->lock);
                        cache_entry_unref(e);
                        if (status == 0) {
                                r = -ESHUTDOWN;
                                goto out;
                        }
                        if (status != 200) {
                                r = status == 404 || status == 401 || status == 403 ? -ENOENT
                                    : status == 502                                  ? -EBADMSG
                                                                                     : -EHOSTUNREACH;
                                goto out;
                        }
                } else {
                        r = follow_to_end(e);
                        cache_entry_unref(e);
                        if (r < 0)
                                goto out;
                }
                break;
        }
        r = cache_stat(p->cache, d, &have);
        if (r == 0) {
                *ret_size = have;
                *ret_fetched = fetched;
        }
out:
        spec_ref_put(p, sr);
        return r;
}

static void tags_key(char *key, size_t size, const char *registry, const char *repository, unsigned n,
                     const char *last) {
        snprintf(key, size, "%s\n%s\n%u\n%s", registry, repository, n, last ? last : "");
}

int pull_tags_page(struct pull *p, const char *registry, const char *repository, unsigned n, const char *last,
                   void **ret_body, size_t *ret_size, char **ret_next_last) {
        char key[TAG_KEY_MAX];
        if ((last && !reference_tag_is_valid(last)) || !reference_path_is_valid(repository) ||
            strlen(registry) + strlen(repository) + 160 > sizeof(key))
                return -EINVAL;
        tags_key(key, sizeof(key), registry, repository, n, last);
        uint32_t h = 2166136261u;
        for (const char *c = key; *c; c++)
                h = (h ^ (unsigned char) *c) * 16777619u;
        struct tags_slot *slot = &p->tags_cache[h % TAGS_CACHE_SLOTS];
        void *body = NULL;
        char *next = NULL;
        size_t size = 0;
        int r = -ENOENT;

        /* Served from memory for a while: containerd, crictl and the prefetch
         * worker asking for the same list in a burst cost one upstream request. */
        pthread_mutex_lock(&p->tags_lock);
        if (strcmp(slot->key, key) == 0 && time_now_ms() - slot->at_ms < TAGS_TTL_MS) {
                body = malloc(slot->size ? slot->size : 1);
                next = slot->next_last ? strdup(slot->next_last) : NULL;
                if (body && (next || !slot->next_last)) {
                        memcpy(body, slot->body, slot->size);
                        size = slot->size;
                        r = 0;
                } else
                        r = -ENOMEM;
        }
        pthread_mutex_unlock(&p->tags_lock);
        if (r == 0 || r == -ENOMEM)
                goto out;

        struct spec_ref *sr = spec_ref_get(p);
        const struct spec_registry *reg = api_registry(sr->spec, registry, false);
        struct fallback_request req =
                upstream_request(p, reg ? reg->host : registry, repository, FALLBACK_TAGS, NULL, false);
        req.tags_n = n;
        req.tags_last = last;
        struct fallback_response fr;
        r = reg ? fallback_fetch(p->fb, &req, &fr) : -ENXIO;
        spec_ref_put(p, sr);
        if (r == -ENXIO)
                goto out;
        if (r >= 0 && fr.status == 200) {
                char **tags = NULL;
                size_t nt = 0;
                /* Only a well-formed page is passed on or remembered. */
                r = fallback_tags_parse(fr.body, fr.size >= 0 ? (size_t) fr.size : 0, &tags, &nt);
                fallback_strv_free(tags, nt);
                if (r == -EBADMSG)
                        r = -EHOSTUNREACH;
        } else if (r >= 0)
                r = fr.status == 404 || fr.status == 401 || fr.status == 403 ? -ENOENT : -EHOSTUNREACH;
        if (r >= 0 && fr.next_last && !reference_tag_is_valid(fr.next_last)) {
                /* distribution's "last" is a tag: anything else (it goes into
                 * our own Link header) ends the list here. */
                free(fr.next_last);
                fr.next_last = NULL;
        }
        /* Small pages are remembered (64 slots of at most TAGS_CACHE_PAGE_MAX). */
        if (r >= 0 && (size_t) fr.size <= TAGS_CACHE_PAGE_MAX) {
                void *copy = malloc((size_t) fr.size ? (size_t) fr.size : 1);
                char *copy_next = fr.next_last ? strdup(fr.next_last) : NULL;
                if (copy && (copy_next || !fr.next_last)) {
                        memcpy(copy, fr.body, (size_t) fr.size);
                        pthread_mutex_lock(&p->tags_lock);
                        free(slot->body);
                        free(slot->next_last);
                        snprintf(slot->key, sizeof(slot->key), "%s", key);
                        slot->at_ms = time_now_ms();
                        slot->body = copy;
                        slot->size = (size_t) fr.size;
                        slot->next_last = copy_next;
                        pthread_mutex_unlock(&p->tags_lock);
                } else {
                        free(copy);
                        free(copy_next);
                }
        }
        if (r >= 0) {
                size = (size_t) fr.size;
                body = TAKE_PTR(fr.body);
                next = TAKE_PTR(fr.next_last);
        }
        fallback_response_done(&fr);
out:
        if (r < 0) {
                free(body);
                free(next);
                return r;
        }
        *ret_body = body;
        *ret_size = size;
        *ret_next_last = next;
        return 0;
}

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
        void *body = NULL;
        size_t size = 0;
        _cleanup_free_ char *next = NULL;
        int r = pull_tags_page(p, t->reg->host, t->repo, (unsigned) n, last && last[0] ? last : NULL, &body, &size,
                               &next);
        rq->outcome = "upstream";
        if (r == -ENOENT)
                return respond_error(conn, rq, MHD_HTTP_NOT_FOUND, "NAME_UNKNOWN", "upstream knows no such repository");
        if (r < 0)
                return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "no upstream answered: %s",
                                     strerror(-r));
        struct MHD_Response *resp = MHD_create_response_from_buffer(size, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
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

/* ---- metrics and health ------------------------------------------------------------- */

struct metrics_buf {
        char *data;
        size_t len;
        FILE *f;
};

static void endpoint_metrics(const struct fallback_endpoint_stats *s, void *userdata) {
        FILE *f = userdata;
        /* Registry hosts and canonical URLs hold no quotes or backslashes (validated by the spec). */
        char labels[640];
        snprintf(labels, sizeof(labels), "registry=\"%s\",endpoint=\"%s\"", s->registry, s->endpoint);
        fprintf(f, "layerd_upstream_requests_total{%s,outcome=\"ok\"} %" PRIu64 "\n", labels, s->ok);
        fprintf(f, "layerd_upstream_requests_total{%s,outcome=\"not_found\"} %" PRIu64 "\n", labels, s->not_found);
        fprintf(f, "layerd_upstream_requests_total{%s,outcome=\"failed\"} %" PRIu64 "\n", labels, s->failures);
        fprintf(f, "layerd_upstream_http_requests_total{%s} %" PRIu64 "\n", labels, s->requests);
        fprintf(f, "layerd_upstream_bytes_total{%s} %" PRIu64 "\n", labels, s->bytes);
        fprintf(f, "layerd_upstream_resumes_total{%s} %" PRIu64 "\n", labels, s->resumes);
        fprintf(f, "layerd_upstream_token_fetches_total{%s} %" PRIu64 "\n", labels, s->token_fetches);
        fprintf(f, "layerd_upstream_breaker_opens_total{%s} %" PRIu64 "\n", labels, s->breaker_opens);
        for (int st = 0; st < _FALLBACK_BREAKER_STATE_MAX; st++)
                fprintf(f, "layerd_upstream_breaker_state{%s,state=\"%s\"} %d\n", labels,
                        fallback_breaker_state_to_string(st), s->state == (enum fallback_breaker_state) st);
        if (s->ratelimit_remaining >= 0)
                fprintf(f, "layerd_upstream_ratelimit_remaining{%s} %" PRId64 "\n", labels, s->ratelimit_remaining);
}

static enum MHD_Result respond_metrics(struct pull *p, struct MHD_Connection *conn, struct request *rq) {
        char *data = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&data, &len);
        if (!f)
                return MHD_NO;
        fputs("# HELP layerd_requests_total HTTP requests answered, by route and status.\n"
              "# TYPE layerd_requests_total counter\n", f);
        for (int r = 0; r < _ROUTE_MAX; r++)
                for (size_t s = 0; s < STATUS_SLOTS; s++) {
                        uint64_t v = atomic_load(&p->requests[r][s]);
                        if (v == 0)
                                continue;
                        if (status_slots[s])
                                fprintf(f, "layerd_requests_total{route=\"%s\",status=\"%u\"} %" PRIu64 "\n",
                                        route_names[r], status_slots[s], v);
                        else
                                fprintf(f, "layerd_requests_total{route=\"%s\",status=\"other\"} %" PRIu64 "\n",
                                        route_names[r], v);
                }
        struct cache_stats cs;
        cache_get_stats(p->cache, &cs);
        fprintf(f,
                "# TYPE layerd_cache_hits_total counter\nlayerd_cache_hits_total %" PRIu64 "\n"
                "# TYPE layerd_cache_misses_total counter\nlayerd_cache_misses_total %" PRIu64 "\n"
                "# TYPE layerd_cache_joins_total counter\nlayerd_cache_joins_total %" PRIu64 "\n"
                "# TYPE layerd_cache_bytes_written_total counter\nlayerd_cache_bytes_written_total %" PRIu64 "\n"
                "# TYPE layerd_cache_evictions_total counter\nlayerd_cache_evictions_total %" PRIu64 "\n"
                "# TYPE layerd_cache_evicted_bytes_total counter\nlayerd_cache_evicted_bytes_total %" PRIu64 "\n"
                "# TYPE layerd_cache_verify_failures_total counter\nlayerd_cache_verify_failures_total %" PRIu64 "\n"
                "# TYPE layerd_cache_blobs gauge\nlayerd_cache_blobs %" PRIu64 "\n"
                "# TYPE layerd_cache_bytes gauge\nlayerd_cache_bytes %" PRIu64 "\n"
                "# TYPE layerd_cache_pinned gauge\nlayerd_cache_pinned %" PRIu64 "\n"
                "# TYPE layerd_downloads_in_flight gauge\nlayerd_downloads_in_flight %" PRIu64 "\n"
                "# TYPE layerd_served_bytes_total counter\nlayerd_served_bytes_total %" PRIu64 "\n"
                "# TYPE layerd_stale_serves_total counter\nlayerd_stale_serves_total %" PRIu64 "\n"
                "# TYPE layerd_cut_streams_total counter\nlayerd_cut_streams_total %" PRIu64 "\n"
                "# TYPE layerd_stream_throughs_total counter\nlayerd_stream_throughs_total %" PRIu64 "\n",
                cs.hits, cs.misses, cs.joins, cs.bytes_written, cs.evictions, cs.evicted_bytes,
                (uint64_t) atomic_load(&p->verify_failures) + cs.mismatched, cs.blobs, cs.bytes, cs.pinned,
                cs.in_flight, (uint64_t) atomic_load(&p->bytes_served), (uint64_t) atomic_load(&p->stale_serves),
                (uint64_t) atomic_load(&p->cut_streams), (uint64_t) atomic_load(&p->stream_throughs));
        struct statvfs sv;
        if (statvfs(p->cache_dir, &sv) == 0)
                fprintf(f,
                        "# TYPE layerd_cache_fs_free_bytes gauge\nlayerd_cache_fs_free_bytes %" PRIu64 "\n"
                        "# TYPE layerd_cache_fs_size_bytes gauge\nlayerd_cache_fs_size_bytes %" PRIu64 "\n",
                        (uint64_t) sv.f_bavail * sv.f_frsize, (uint64_t) sv.f_blocks * sv.f_frsize);
        fputs("# TYPE layerd_upstream_requests_total counter\n", f);
        fallback_foreach_endpoint(p->fb, endpoint_metrics, f);
        if (p->metrics_hook)
                p->metrics_hook(f, p->metrics_userdata);
        if (fclose(f) != 0) {
                free(data);
                return MHD_NO;
        }
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

void pull_status(struct pull *p, char *buf, size_t size) {
        struct cache_stats cs;
        cache_get_stats(p->cache, &cs);
        snprintf(buf, size, "serving: %" PRIu64 " blobs cached, %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
                 " downloading, %" PRIu64 " stale serves",
                 cs.blobs, cs.hits, cs.misses, cs.in_flight, (uint64_t) atomic_load(&p->stale_serves));
}

/* ---- dispatch -------------------------------------------------------------------------- */

static enum MHD_Result respond_ready(struct pull *p, struct MHD_Connection *conn, struct request *rq) {
        struct cache_stats cs;
        cache_get_stats(p->cache, &cs);
        /* Serving works before the index is complete; "ready" means every count is true. */
        if (!cs.ready)
                return respond_text(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "indexing the cache\n");
        /* prefetch.wait_ready: boot images first (bounded by prefetch.wait_ready_timeout). */
        uint64_t gate = atomic_load(&p->ready_gate_until_ms);
        if (gate && time_now_ms() < gate)
                return respond_text(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "prefetching\n");
        return respond_text(conn, rq, MHD_HTTP_OK, "ready\n");
}

/* Routes the request (agent/route.c) and answers it, or sets rq->would_block. */
static enum MHD_Result dispatch(struct pull *p, struct MHD_Connection *conn, const char *url, bool head,
                                struct request *rq) {
        const char *ns_arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ns");
        struct spec_ref *sr = spec_ref_get(p);
        const struct spec *s = sr->spec;
        struct route_match rt;
        int r = route_parse(url, ns_arg, s->agent.default_registry, &rt);
        rq->route = rt.kind;
        snprintf(rq->repo, sizeof(rq->repo), "%s", rt.name);
        snprintf(rq->ref, sizeof(rq->ref), "%s", rt.reference);
        if (rt.registry)
                snprintf(rq->ns, sizeof(rq->ns), "%s", rt.registry);
        enum MHD_Result ret;
        if (r < 0) {
                ret = respond_error(conn, rq, rt.error.status, rt.error.code, "%s", rt.error.message);
                goto out;
        }
        switch (rt.kind) {
        case ROUTE_V2:
                ret = respond_text(conn, rq, MHD_HTTP_OK, "{}");
                goto out;
        case ROUTE_HEALTH:
                ret = rt.ready ? respond_ready(p, conn, rq) : respond_text(conn, rq, MHD_HTTP_OK, "ok\n");
                goto out;
        case ROUTE_METRICS:
                ret = respond_metrics(p, conn, rq);
                goto out;
        default:
                break;
        }

        struct target t = { .reg = rt.registry ? spec_find_registry(s, rt.registry) : NULL,
                            .finish_abandoned = s->agent.finish_abandoned_downloads };
        /* No open proxy: only registries the spec mirrors are ever asked. */
        if (!t.reg || !t.reg->mirror || strcmp(t.reg->host, SPEC_DEFAULT_REGISTRY) == 0) {
                ret = respond_error(conn, rq, MHD_HTTP_NOT_FOUND, "NAME_UNKNOWN", "registry %s is not mirrored here",
                                    rt.registry ? rq->ns : "(none: no ns parameter and no agent.default_registry)");
                goto out;
        }
        if (route_repository(&rt, t.reg->host, t.repo, sizeof(t.repo)) < 0) {
                ret = respond_error(conn, rq, MHD_HTTP_BAD_REQUEST, "NAME_INVALID", "repository name too long");
                goto out;
        }
        snprintf(rq->repo, sizeof(rq->repo), "%s", t.repo);
        struct accept_buf accept = { .len = 0 };
        MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_accept, &accept);
        t.accept = accept.len ? accept.text : NULL;

        if (rt.kind == ROUTE_TAGS)
                ret = tags_list(p, conn, rq, &t, rt.name, ns_arg);
        else if (rt.kind == ROUTE_BLOB)
                ret = blob(p, conn, rq, &t, head, &rt.digest);
        else if (rt.by_digest)
                ret = manifest_by_digest(p, conn, rq, &t, head, &rt.digest);
        else
                ret = manifest_by_tag(p, conn, rq, &t, head);
out:
        spec_ref_put(p, sr);
        return ret;
}

static void *worker_main(void *arg) {
        struct request *rq = arg;
        struct pull *p = rq->pull;
        rq->may_block = true;
        if (dispatch(p, rq->conn, rq->url, rq->head, rq) != MHD_YES && rq->prepared) {
                MHD_destroy_response(rq->prepared);
                rq->prepared = NULL;
        }
        rq->worker_done = true;
        MHD_resume_connection(rq->conn);
        thread_end(p);
        return NULL;
}

/* The request has to wait for an upstream: suspends the connection (MHD's
 * thread goes on with others) and runs it again on a thread of its own. */
static enum MHD_Result defer(struct pull *p, struct MHD_Connection *conn, const char *url, bool head,
                             struct request *rq) {
        rq->would_block = false;
        if (!thread_begin(p))
                return respond_error(conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "shutting down");
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
                rq->worker_done = true;
                MHD_resume_connection(conn);
                thread_end(p);
        }
        return MHD_YES;
}

enum MHD_Result pull_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
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
                rq->started_ms = time_now_ms();
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
        enum MHD_Result ret = dispatch(p, conn, url, head, rq);
        return rq->would_block ? defer(p, conn, url, head, rq) : ret;
}

void pull_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe) {
        struct pull *p = cls;
        struct request *rq = *req_cls;
        (void) conn;
        if (!rq)
                return;
        *req_cls = NULL;
        size_t slot = STATUS_SLOTS - 1;
        for (size_t i = 0; i + 1 < STATUS_SLOTS; i++)
                if (status_slots[i] == rq->status)
                        slot = i;
        atomic_fetch_add(&p->requests[rq->route][slot], 1);
        uint64_t bytes = rq->streamed ? (uint64_t) atomic_load(&rq->bytes)
                                      : (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? rq->length : 0);
        /* Health checks and metrics scrapes would drown the log: debug only. */
        int level = rq->route == ROUTE_HEALTH || rq->route == ROUTE_METRICS ? LOG_DEBUG : LOG_INFO;
        agent_log(level,
                  "request method=%s ns=%s repo=%s ref=%s status=%u bytes=%" PRIu64 " ms=%" PRIu64
                  " cache=%s endpoint=%s%s%s%s%s",
                  rq->method, rq->ns, rq->repo[0] ? rq->repo : "-", rq->ref[0] ? rq->ref : "-", rq->status, bytes,
                  time_now_ms() - rq->started_ms, rq->outcome, rq->endpoint[0] ? rq->endpoint : "-",
                  toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " incomplete=yes",
                  rq->reason[0] ? " reason=\"" : "", rq->reason, rq->reason[0] ? "\"" : "");
        if (rq->prepared)
                MHD_destroy_response(rq->prepared);
        free(rq->url);
        free(rq);
}

struct cache *pull_cache(struct pull *p) {
        return p->cache;
}
