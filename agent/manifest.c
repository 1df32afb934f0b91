/* SPDX-License-Identifier: Apache-2.0 */
/* Manifests, for clients and prefetch alike: the cache, the tag policy and
 * the chain, in one resolver (manifest_resolve()).
 *
 * The tag policy: a tag's record (the cache's tag index: what the tag
 * pointed to when upstream last said) younger than the registry's tag_ttl
 * is trusted without asking; an older one is revalidated with a HEAD (Docker
 * Hub counts a manifest GET as a pull, a HEAD not); when every upstream
 * fails (not "not found"), the last answer stands (stale-if-error). What a
 * tag points to depends on what the client accepts (a client that takes no
 * index may be given one platform's manifest), so a record is only made of
 * an answer every client could get, and used only for a client that accepts
 * its media type. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "agent/pull-internal.h"
#include "common/macro.h"
#include "common/reference.h"

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
/* Bigger cached manifests are sent from their file rather than from a copy
 * held per connection (a 4 MiB one, 200 clients that do not read: 849 MiB). */
#define MANIFEST_SENDFILE_MIN (16 * 1024)

static bool is_index(const char *media_type) {
        return strcmp(media_type, MT_OCI_INDEX) == 0 || strcmp(media_type, MT_DOCKER_LIST) == 0;
}

/* Whether an Accept header (merged lines; NULL: none) takes media_type. */
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

void manifest_answer_done(struct manifest_answer *a) {
        free(a->body);
        budget_hold_release(&a->held);
        free(a->media_type);
        if (a->fd >= 0)
                close(a->fd);
        *a = (struct manifest_answer) { .fd = -1 };
}

int manifest_cached(struct pull *p, const struct digest *d, const char *media_type, bool want_fd,
                    struct manifest_answer *a) {
        _cleanup_close_ int fd = -1;
        uint64_t size = 0;
        int r = cache_open_blob(p->cache, d, &fd, &size);
        if (r < 0)
                return r;
        if (size > FALLBACK_MANIFEST_MAX)
                return -EFBIG;
        /* Parsing the JSON for its media type was a third of a cached GET's
         * CPU: a tag's record says it, and the cache remembers recent ones. */
        char known[CACHE_MEDIA_TYPE_MAX];
        _cleanup_free_ char *mt = media_type                                                   ? strdup(media_type)
                                  : cache_media_type_get(p->cache, d, known, sizeof(known)) == 0 ? strdup(known)
                                                                                                 : NULL;
        /* Small manifests (nearly all) are read: one buffer answer is cheaper than
         * sendfile after the headers, and they cost little memory per connection. */
        bool by_fd = want_fd && size > MANIFEST_SENDFILE_MIN;
        _cleanup_free_ char *body = NULL;
        _cleanup_hold_ struct budget_hold held = {};
        if (!mt || !by_fd) {
                r = budget_hold_reserve(&held, &p->budget, size ? size : 1);
                if (r < 0)
                        return r;
                body = malloc(size ? size : 1);
                if (!body)
                        return -ENOMEM;
                ssize_t n = pread(fd, body, size, 0);
                if (n < 0 || (uint64_t) n != size)
                        return -EIO;
        }
        if (!mt) {
                mt = fallback_manifest_media_type(body, size);
                if (!mt)
                        return -EMEDIUMTYPE; /* the digest names a blob, not a manifest */
                cache_media_type_remember(p->cache, d, mt);
        }
        manifest_answer_done(a);
        a->digest = *d;
        a->size = size;
        a->media_type = TAKE_PTR(mt);
        if (by_fd)
                a->fd = TAKE_FD(fd);
        else {
                a->body = TAKE_PTR(body);
                a->held = budget_hold_take(&held);
        }
        return 0;
}

/* A public repository's manifest says the origin has what it refers to under
 * that name: a digest private through another repository is confirmed for it
 * here (as access.c does after a HEAD), so that with the origin down
 * `GET /v2/<public>/blobs/<shared layer>` is served from disk like the rest
 * of the image. A failure only costs that outage protection. */
static void confirm_public(struct pull *p, const struct manifest_query *q, const struct digest *ds, size_t n) {
        for (size_t i = 0; i < n; i++) {
                bool here = false;
                if (!private_digest(p->private, &ds[i], q->registry, q->repository, &here) || here)
                        continue;
                int r = private_confirm(p->private, q->registry, q->repository, &ds[i]);
                if (r < 0) {
                        char s[DIGEST_STRING_MAX];
                        log_warning("cannot record a shared digest for a public repository ns=%s repo=%s digest=%s: %s",
                                    q->registry, q->repository, digest_to_string(&ds[i], s), strerror(-r));
                }
        }
}

/* A manifest fetched for a private repository, and what it refers to, are
 * recorded as private (agent/private.h) before it is stored: nothing of it
 * may sit in the cache unmarked, where another repository's name could
 * reach it. A public repository's confirms what of it is private elsewhere.
 * stored: the manifest is in the cache already (said in the log line).
 * 0, or why it must not be stored. */
static int mark_private(struct pull *p, const struct manifest_query *q, const struct digest *d, const void *body,
                        uint64_t size, bool stored) {
        if (!q->private_repo && private_count(p->private) == 0)
                return 0; /* nothing is private: no public manifest need be read */
        struct fallback_manifest_refs refs;
        bool parsed = fallback_manifest_refs(body, size, &refs) == 0;
        size_t n = 1 + (parsed ? refs.n_items + refs.has_config : 0);
        _cleanup_free_ struct digest *ds = calloc(n, sizeof(*ds));
        if (!ds) {
                if (parsed)
                        fallback_manifest_refs_done(&refs);
                return q->private_repo ? -ENOMEM : 0;
        }
        ds[0] = *d;
        size_t k = 1;
        if (parsed) {
                if (refs.has_config)
                        ds[k++] = refs.config.digest;
                for (size_t i = 0; i < refs.n_items; i++)
                        ds[k++] = refs.items[i].digest;
                fallback_manifest_refs_done(&refs);
        }
        if (!q->private_repo) {
                confirm_public(p, q, ds, k);
                return 0;
        }
        int r = private_mark(p->private, q->registry, q->repository, ds, k);
        if (r < 0) {
                char s[DIGEST_STRING_MAX];
                log_error("cannot record private content, %s: ns=%s repo=%s digest=%s: %s",
                          stored ? "the cached manifest and what it refers to stay unrecorded"
                                 : "not caching the manifest",
                          q->registry, q->repository, digest_to_string(d, s), strerror(-r));
        }
        return r;
}

/* Marks (mark_private()) and stores a verified manifest. */
static void store_marked(struct pull *p, const struct manifest_query *q, const struct digest *d, const void *body,
                         uint64_t size) {
        if (mark_private(p, q, d, body, size, false) < 0)
                return;
        struct cache_entry *e = NULL;
        bool writer = false;
        int r = cache_begin(p->cache, d, (int64_t) size, &e, &writer);
        if (r < 0 || !writer) {
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

/* A private repository's manifest is pinned from its mark to the end of its
 * store: a prune meanwhile keeps the mark (agent/private.h). */
void manifest_store(struct pull *p, const struct manifest_query *q, const struct digest *d, const void *body,
                    uint64_t size) {
        if (!q->private_repo) {
                store_marked(p, q, d, body, size);
                return;
        }
        if (private_pin(p->private, d) < 0)
                return;
        store_marked(p, q, d, body, size);
        private_unpin(p->private, d);
}

static void note_endpoint(struct manifest_answer *a, const struct fallback_response *fr) {
        if (fr->endpoint)
                snprintf(a->endpoint, sizeof(a->endpoint), "%s", fr->endpoint);
}

static int by_digest(struct pull *p, const struct manifest_query *q, const struct digest *d,
                     struct manifest_answer *a, struct outcome *o) {
        int c = manifest_cached(p, d, NULL, q->want_fd, a);
        if (c == 0) {
                a->cache = "hit";
                return outcome_set(o, 0, NULL);
        }
        if (c == -ENOBUFS) /* here, but no memory to read it into now: not a reason to ask upstream */
                return outcome_set(o, c, OUTCOME_BUDGET_REASON);
        if (q->offline)
                return outcome_set(o, -ENOENT, "not in the cache");
        if (!q->may_block)
                return -EWOULDBLOCK;
        char ds[DIGEST_STRING_MAX];
        struct fallback_request req = pull_upstream_request(p, q->registry, q->repository, FALLBACK_MANIFEST,
                                                            digest_to_string(d, ds), q->head);
        req.accept = q->accept;
        struct fallback_client_auth view;
        req.client_auth = access_client_view(q->client, &view);
        struct fallback_response fr;
        int r = outcome_from_upstream(o, fallback_fetch(p->fb, &req, &fr), &fr);
        a->cache = "miss";
        note_endpoint(a, &fr);
        if (r == 0) {
                if (fr.body && fr.size >= 0) {
                        manifest_store(p, q, d, fr.body, (uint64_t) fr.size);
                        a->fetched = true;
                }
                a->digest = *d;
                a->size = fr.size >= 0 ? (uint64_t) fr.size : 0;
                a->body = TAKE_PTR(fr.body);
                a->held = budget_hold_take(&fr.held);
                a->media_type = TAKE_PTR(fr.media_type);
                if (!a->media_type && a->body)
                        a->media_type = fallback_manifest_media_type(a->body, a->size);
                if (a->fetched && a->media_type)
                        cache_media_type_remember(p->cache, d, a->media_type); /* hits need not parse it */
                /* Stored: sent from the file like a hit, not from this request's copy. */
                uint64_t stored = 0;
                int fd = -1;
                if (q->want_fd && a->body && a->size > MANIFEST_SENDFILE_MIN &&
                    cache_open_blob(p->cache, d, &fd, &stored) == 0) {
                        if (stored == a->size) {
                                a->fd = fd;
                                a->body = mfree(a->body);
                                budget_hold_release(&a->held);
                        } else
                                close(fd);
                }
        }
        fallback_response_done(&fr);
        return r;
}

/* The answer a tag's record t gives: for a HEAD the record itself, else the
 * manifest it names from the cache. */
static int from_record(struct pull *p, const struct manifest_query *q, const struct cache_tag *t,
                       struct manifest_answer *a) {
        if (!q->head)
                return manifest_cached(p, &t->digest, t->media_type, q->want_fd, a);
        a->digest = t->digest;
        a->size = t->size;
        a->media_type = strdup(t->media_type);
        return a->media_type ? 0 : -ENOMEM;
}

static int64_t record_age_ms(const struct cache_tag *t) {
        return ((int64_t) time(NULL) - t->fetched_at) * 1000;
}

bool manifest_record_is_fresh(const struct cache_tag *t, uint64_t ttl_ms) {
        int64_t age_ms = record_age_ms(t);
        return age_ms >= 0 && (uint64_t) age_ms < ttl_ms;
}

bool manifest_record_may_stand(const struct outcome *o, int fetched) {
        return o->kind == OUTCOME_UNAVAILABLE && fetched != -ECANCELED && fetched != -ENOBUFS;
}

/* The record policy shared with referrers.c (pull-internal.h). */
void manifest_record_stale_served(struct pull *p, const char *what, const char *registry, const char *repository,
                                  const char *name, const struct cache_tag *t, const struct outcome *o) {
        char ds[DIGEST_STRING_MAX];
        atomic_fetch_add(&p->stale_serves, 1);
        log_warning("serving a stale %s, every upstream failed: ns=%s repo=%s %s digest=%s age_s=%" PRId64
                    " reason=\"%s\"",
                    what, registry, repository, name, digest_to_string(&t->digest, ds), record_age_ms(t) / 1000,
                    o->reason);
}

static int by_tag(struct pull *p, const struct manifest_query *q, struct manifest_answer *a, struct outcome *o) {
        struct cache_tag known;
        bool have = cache_tag_get(p->cache, q->registry, q->repository, q->tag, &known) == 0 &&
                    accepts(q->accept, known.media_type);
        /* A record of a digest private elsewhere, not recorded for this repository,
         * is not trusted, nor served stale: the origin says (every cached digest is
         * so once the private-content table was found deleted, agent/private.h). */
        bool here = false;
        bool trusted = have && (!private_digest(p->private, &known.digest, q->registry, q->repository, &here) || here);

        /* Fresh enough (offline: whatever the node has): no upstream request at all. */
        if (have && (q->offline || (trusted && manifest_record_is_fresh(&known, q->tag_ttl_ms)))) {
                int c = from_record(p, q, &known, a);
                if (c == 0) {
                        a->cache = "hit";
                        return outcome_set(o, 0, NULL);
                }
                if (c == -ENOBUFS)
                        return outcome_set(o, c, OUTCOME_BUDGET_REASON);
        }
        if (q->offline)
                return outcome_set(o, -ENOENT, "no record of the tag");
        if (!q->may_block)
                return -EWOULDBLOCK;

        struct fallback_request req =
                pull_upstream_request(p, q->registry, q->repository, FALLBACK_MANIFEST, q->tag, true);
        req.accept = q->accept;
        struct fallback_client_auth view;
        req.client_auth = access_client_view(q->client, &view);
        struct fallback_response fr;
        int fetched = fallback_fetch(p->fb, &req, &fr);
        int r = outcome_from_upstream(o, fetched, &fr);
        note_endpoint(a, &fr);
        if (r == 0 && fr.has_digest) {
                struct cache_tag now = { .digest = fr.digest, .size = fr.size >= 0 ? (uint64_t) fr.size : 0,
                                         .fetched_at = (int64_t) time(NULL) };
                snprintf(now.media_type, sizeof(now.media_type), "%s", fr.media_type ? fr.media_type : MT_OCI_MANIFEST);
                /* The origin names the digest in this repository: a record of it stands
                 * here even where it is private elsewhere (kept fresh and stale). */
                if (!q->private_repo)
                        confirm_public(p, q, &now.digest, 1);
                /* Only an answer every client could get is recorded. */
                bool general = accepts(q->accept, MT_OCI_INDEX) && accepts(q->accept, MT_DOCKER_LIST);
                if (fr.size >= 0 && fr.media_type && (general || is_index(now.media_type)))
                        (void) cache_tag_put(p->cache, q->registry, q->repository, q->tag, &now);
                if (fr.body) /* the endpoint sent no digest on HEAD: fallback asked with GET */
                        manifest_store(p, q, &fr.digest, fr.body, (uint64_t) fr.size);
                const char *how = have && digest_equal(&known.digest, &fr.digest) ? "revalidated" : "miss";
                fallback_response_done(&fr);
                if (q->head) {
                        a->cache = how;
                        return outcome_set(o, from_record(p, q, &now, a), NULL);
                }
                char endpoint[sizeof(a->endpoint)];
                memcpy(endpoint, a->endpoint, sizeof(endpoint));
                r = by_digest(p, q, &now.digest, a, o);
                if (r == 0 && strcmp(a->cache, "hit") == 0) {
                        a->cache = how; /* the bytes were here; the tag was asked upstream */
                        memcpy(a->endpoint, endpoint, sizeof(endpoint));
                }
                return r;
        }
        if (r == 0)
                r = outcome_set(o, -EHOSTUNREACH, "upstream sent no digest for the tag");
        fallback_response_done(&fr);
        a->cache = "miss";
        /* A record not trusted (above) is not served stale either. */
        if (!have || !trusted || !manifest_record_may_stand(o, fetched) || from_record(p, q, &known, a) < 0)
                return r;
        a->cache = "stale";
        a->stale = true;
        char name[160];
        snprintf(name, sizeof(name), "tag=%s", q->tag);
        manifest_record_stale_served(p, "tag", q->registry, q->repository, name, &known, o);
        return outcome_set(o, 0, NULL);
}

/* A private repository's manifest served from the cache may have been stored
 * while the repository was public, unmarked, with what it refers to: marked
 * now (agent/private.h), before its blobs are asked for under another name.
 * A manifest recorded for the repository was marked with what it refers to;
 * it costs no parse. A failure leaves it as it was. */
static void mark_served(struct pull *p, const struct manifest_query *q, const struct manifest_answer *a) {
        bool here = false;
        if (private_digest(p->private, &a->digest, q->registry, q->repository, &here) && here)
                return;
        const void *body = a->body;
        _cleanup_free_ char *read = NULL;
        _cleanup_hold_ struct budget_hold held = {};
        if (!body && a->fd >= 0) {
                if (a->size > FALLBACK_MANIFEST_MAX || budget_hold_reserve(&held, &p->budget, a->size + 1) < 0)
                        return;
                read = malloc(a->size + 1);
                if (!read)
                        return;
                ssize_t n = pread(a->fd, read, a->size, 0);
                if (n < 0 || (uint64_t) n != a->size)
                        return;
                body = read;
        }
        if (body)
                (void) mark_private(p, q, &a->digest, body, a->size, true); /* logs a failure */
}

int manifest_resolve(struct pull *p, const struct manifest_query *q, struct manifest_answer *ret,
                     struct outcome *o) {
        struct manifest_answer a = { .cache = "-", .fd = -1 };
        *ret = a; /* whatever the caller had there: nothing to free, no descriptor */
        int r = q->tag ? by_tag(p, q, &a, o) : by_digest(p, q, &q->digest, &a, o);
        if (r >= 0 && q->offline && a.body) {
                /* The air-gapped check: a manifest is hashed again like every
                 * blob, not trusted for being in the cache. */
                struct digest got;
                r = digest_buffer(a.digest.algorithm, a.body, a.size, &got);
                if (r >= 0 && !digest_equal(&got, &a.digest))
                        r = outcome_set(o, -EBADMSG, "the cached manifest does not match its digest");
        }
        if (r >= 0 && q->private_repo && !a.fetched)
                mark_served(p, q, &a);
        if (r < 0) {
                /* The endpoint and what the cache did stay for the log line. */
                ret->cache = a.cache;
                memcpy(ret->endpoint, a.endpoint, sizeof(a.endpoint));
                manifest_answer_done(&a);
                return r;
        }
        *ret = a;
        return 0;
}

/* ---- the in-process API ---- */

void pull_manifest_done(struct pull_manifest *m) {
        free(m->body);
        free(m->media_type);
        *m = (struct pull_manifest) {};
}

int pull_manifest_ensure(struct pull *p, const char *registry, const char *repository, const char *reference,
                         bool offline, struct pull_manifest *ret) {
        struct manifest_query q = { .repository = repository, .offline = offline, .may_block = true };
        if (digest_parse(reference, &q.digest) < 0) {
                if (!reference_tag_is_valid(reference))
                        return -EINVAL;
                q.tag = reference;
        }
        if (!reference_path_is_valid(repository))
                return -EINVAL;
        struct spec_ref *sr = spec_ref_get(p);
        const struct spec_registry *reg = pull_registry(sr->spec, registry, offline);
        struct manifest_answer a = { .fd = -1 };
        struct outcome o;
        int r = -ENXIO;
        if (reg || offline) {
                q.registry = reg ? reg->host : registry;
                q.tag_ttl_ms = reg ? reg->tag_ttl_ms : 0;
                /* Prefetch with the endpoint's own credentials: recorded private like a client's fetch. */
                q.private_repo = private_repo(p->private, q.registry, repository);
                r = manifest_resolve(p, &q, &a, &o);
        }
        spec_ref_put(p, sr);
        if (r < 0)
                return r;
        if (!a.body || !a.media_type) {
                manifest_answer_done(&a);
                return -EMEDIUMTYPE; /* no manifest a client could use */
        }
        *ret = (struct pull_manifest) { .body = TAKE_PTR(a.body), .size = a.size, .media_type = TAKE_PTR(a.media_type),
                                        .digest = a.digest, .fetched = a.fetched, .stale = a.stale };
        manifest_answer_done(&a);
        return 0;
}
