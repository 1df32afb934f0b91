/* SPDX-License-Identifier: Apache-2.0 */
/* `layerd cache rm IMAGE...` and `layerd cache refresh IMAGE...`: images as
 * units. What an image needs is worked out from the manifests in the cache
 * (an index's manifests, each manifest's config and layers), so removing
 * one keeps every blob that another recorded image or a pin still needs.
 * The same functions run offline and in the agent (agent/admin.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/agent.h"
#include "agent/pull.h"
#include "cache/cache.h"
#include "common/buf.h"
#include "common/macro.h"
#include "common/reference.h"

#define RM_IMAGES_MAX 64

/* A set of digests: open addressing, grown at half full. */
struct digest_set {
        struct digest *slots;
        bool *used;
        size_t cap, n;
};

static size_t slot_of(const struct digest_set *s, const struct digest *d) {
        uint64_t h;
        memcpy(&h, d->bytes, sizeof(h)); /* a digest's bytes are uniformly spread already */
        return (size_t) (h & (s->cap - 1));
}

static bool set_has(const struct digest_set *s, const struct digest *d) {
        if (s->cap == 0)
                return false;
        for (size_t i = slot_of(s, d); s->used[i]; i = (i + 1) & (s->cap - 1))
                if (digest_equal(&s->slots[i], d))
                        return true;
        return false;
}

/* Adds d; returns 1 when it was new, 0 when there already, -ENOMEM. */
static int set_add(struct digest_set *s, const struct digest *d) {
        if (set_has(s, d))
                return 0;
        if (2 * (s->n + 1) > s->cap) {
                struct digest_set g = { .cap = s->cap ? 2 * s->cap : 64 };
                g.slots = calloc(g.cap, sizeof(*g.slots));
                g.used = calloc(g.cap, sizeof(*g.used));
                if (!g.slots || !g.used) {
                        free(g.slots);
                        free(g.used);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < s->cap; i++)
                        if (s->used[i])
                                (void) set_add(&g, &s->slots[i]);
                free(s->slots);
                free(s->used);
                *s = g;
        }
        size_t i = slot_of(s, d);
        while (s->used[i])
                i = (i + 1) & (s->cap - 1);
        s->slots[i] = *d;
        s->used[i] = true;
        s->n++;
        return 1;
}

static void set_done(struct digest_set *s) {
        free(s->slots);
        free(s->used);
        *s = (struct digest_set) {};
}

/* Adds root and, when it is a manifest stored in the cache, everything it
 * refers to (an index's manifests, recursively; a manifest's config and
 * layers). Blobs that are not manifests or not stored add only themselves. */
static int add_closure(struct cache *c, struct digest_set *s, const struct digest *root) {
        int r = set_add(s, root);
        if (r <= 0)
                return r;
        _cleanup_free_ void *body = NULL;
        size_t size;
        r = cache_read_blob(c, root, FALLBACK_MANIFEST_MAX, &body, &size);
        if (r == -ENOENT || r == -EFBIG)
                return 0; /* not stored, or too large to be a manifest: a leaf */
        if (r < 0)
                return r; /* unreadable: what it refers to is unknown, so nothing may be removed */
        struct fallback_manifest_refs refs;
        if (fallback_manifest_refs(body, size, &refs) < 0)
                return 0; /* a config or a layer */
        if (refs.has_config)
                r = set_add(s, &refs.config.digest);
        for (size_t i = 0; r >= 0 && i < refs.n_items; i++)
                r = refs.is_index ? add_closure(c, s, &refs.items[i].digest) : set_add(s, &refs.items[i].digest);
        fallback_manifest_refs_done(&refs);
        return r < 0 ? r : 0;
}

struct target {
        struct reference ref;
        struct digest digest; /* with ref.digest */
        unsigned records;     /* tag records dropped */
        bool stored;          /* with ref.digest: the manifest is in the cache */
};

struct rm_walk {
        struct cache *c;
        struct target *targets;
        size_t n;
        struct digest_set keep, gone;
        /* the records to drop, collected first: nothing is removed while the walk reads */
        char **drop; /* registry, repository, tag, ... */
        size_t n_drop, cap_drop;
        int error;
};

static int on_tag(const char *registry, const char *repository, const char *tag, const struct cache_tag *t,
                  void *userdata) {
        struct rm_walk *w = userdata;
        bool matched = false;
        for (size_t i = 0; i < w->n; i++) {
                struct target *x = &w->targets[i];
                if (strcasecmp(registry, x->ref.domain) != 0 || strcmp(repository, x->ref.path) != 0)
                        continue;
                if ((x->ref.tag && strcmp(tag, x->ref.tag) == 0) ||
                    (x->ref.digest && digest_equal(&t->digest, &x->digest))) {
                        x->records++;
                        matched = true;
                }
        }
        if (!matched)
                return add_closure(w->c, &w->keep, &t->digest);
        int r = add_closure(w->c, &w->gone, &t->digest);
        if (r >= 0)
                r = ARRAY_RESERVE(w->drop, &w->cap_drop, w->n_drop + 3, 48, SIZE_MAX);
        if (r < 0)
                return r;
        w->drop[w->n_drop] = strdup(registry);
        w->drop[w->n_drop + 1] = strdup(repository);
        w->drop[w->n_drop + 2] = strdup(tag);
        w->n_drop += 3;
        return w->drop[w->n_drop - 1] && w->drop[w->n_drop - 2] && w->drop[w->n_drop - 3] ? 0 : -ENOMEM;
}

struct blob_list {
        struct digest *d;
        size_t n, cap;
};

static int on_small_blob(const struct digest *d, uint64_t size, bool pinned, void *userdata) {
        struct blob_list *l = userdata;
        (void) pinned;
        if (size > FALLBACK_MANIFEST_MAX)
                return 0; /* too large to be a manifest */
        int r = ARRAY_RESERVE(l->d, &l->cap, l->n + 1, 256, SIZE_MAX);
        if (r < 0)
                return r;
        l->d[l->n++] = *d;
        return 0;
}

/* Adds to w->keep the closure of every stored manifest not in w->gone; a blob
 * that is not a manifest adds only itself, which removes nothing. */
static int keep_untagged(struct cache *c, struct rm_walk *w) {
        struct blob_list l = {};
        int r = cache_foreach_blob(c, on_small_blob, &l); /* a snapshot: read without the store's lock */
        for (size_t i = 0; r >= 0 && i < l.n; i++)
                if (!set_has(&w->gone, &l.d[i]))
                        r = add_closure(c, &w->keep, &l.d[i]);
        free(l.d);
        return r;
}

/* Parses IMAGE arguments as `cache check` does; returns how many, or -1 after saying why. */
static int parse_targets(char **images, size_t n, struct target *targets, const char *who, FILE *err) {
        for (size_t i = 0; i < n; i++) {
                const char *why = NULL;
                int r = reference_parse(images[i], true, &targets[i].ref, &why);
                if (r < 0 || (targets[i].ref.digest && digest_parse(targets[i].ref.digest, &targets[i].digest) < 0)) {
                        fprintf(err, "%s: \"%s\": %s\n", who, images[i], why ? why : "not an image reference");
                        if (r >= 0)
                                reference_done(&targets[i].ref);
                        for (size_t j = 0; j < i; j++)
                                reference_done(&targets[j].ref);
                        return -1;
                }
        }
        return (int) n;
}

int agent_cache_rm(struct cache *c, char **images, size_t n_images, FILE *out, FILE *err) {
        if (n_images == 0 || n_images > RM_IMAGES_MAX) {
                fprintf(err, "layerd cache rm: name 1 to %d images\n", RM_IMAGES_MAX);
                return 2;
        }
        struct target targets[RM_IMAGES_MAX] = {};
        if (parse_targets(images, n_images, targets, "layerd cache rm", err) < 0)
                return 2;
        struct rm_walk w = { .c = c, .targets = targets, .n = n_images };
        int r = cache_wait_ready(c, -1);
        if (r >= 0)
                r = cache_foreach_tag(c, on_tag, &w);
        /* An image named by digest is the manifest itself, recorded by a tag or
         * not; one not stored is reported, not removed. */
        for (size_t i = 0; r >= 0 && i < n_images; i++) {
                uint64_t size;
                if (!targets[i].ref.digest)
                        continue;
                r = cache_stat(c, &targets[i].digest, &size);
                targets[i].stored = r == 0;
                if (r == 0 || r == -ENOENT)
                        r = targets[i].stored ? add_closure(c, &w.gone, &targets[i].digest) : 0;
        }
        /* Images pulled by digest only have no tag record: every other stored
         * manifest keeps what it refers to too. */
        if (r >= 0)
                r = keep_untagged(c, &w);
        int status = 0;
        uint64_t removed = 0, removed_bytes = 0, shared = 0, pinned = 0;
        for (size_t i = 0; r >= 0 && i < w.n_drop; i += 3) {
                int k = cache_tag_remove(c, w.drop[i], w.drop[i + 1], w.drop[i + 2]);
                if (k < 0 && k != -ENOENT) {
                        fprintf(err, "layerd cache rm: cannot remove the record of %s/%s:%s: %s\n", w.drop[i],
                                w.drop[i + 1], w.drop[i + 2], strerror(-k));
                        status = 1;
                }
        }
        for (size_t i = 0; r >= 0 && i < w.gone.cap; i++) {
                if (!w.gone.used[i])
                        continue;
                const struct digest *d = &w.gone.slots[i];
                uint64_t size = 0;
                if (cache_stat(c, d, &size) < 0)
                        continue; /* not stored */
                if (set_has(&w.keep, d)) {
                        shared++;
                        continue;
                }
                int k = cache_remove_blob(c, d);
                if (k == -EBUSY)
                        pinned++;
                else if (k == 0) {
                        removed++;
                        removed_bytes += size;
                } else if (k != -ENOENT) {
                        char s[DIGEST_STRING_MAX];
                        fprintf(err, "layerd cache rm: cannot remove %s: %s\n", digest_to_string(d, s), strerror(-k));
                        status = 1;
                }
        }
        if (r < 0) {
                fprintf(err, "layerd cache rm: %s\n", strerror(-r));
                status = 1;
        }
        for (size_t i = 0; r >= 0 && i < n_images; i++) {
                if (targets[i].records == 0 && !targets[i].stored) {
                        fprintf(err, "layerd cache rm: not in the cache: %s\n", images[i]);
                        status = 1;
                } else
                        fprintf(out, "removed %s (%u tag records)\n", images[i], targets[i].records);
        }
        if (r >= 0)
                fprintf(out,
                        "%" PRIu64 " blobs removed (%" PRIu64 " bytes); kept %" PRIu64 " other images use, %" PRIu64
                        " pinned\n",
                        removed, removed_bytes, shared, pinned);
        for (size_t i = 0; i < w.n_drop; i++)
                free(w.drop[i]);
        free(w.drop);
        set_done(&w.keep);
        set_done(&w.gone);
        for (size_t i = 0; i < n_images; i++)
                reference_done(&targets[i].ref);
        return fflush(out) == 0 ? status : 1;
}

int agent_cache_refresh(struct pull *p, char **images, size_t n_images, FILE *out, FILE *err) {
        if (n_images == 0 || n_images > RM_IMAGES_MAX) {
                fprintf(err, "layerd cache refresh: name 1 to %d images\n", RM_IMAGES_MAX);
                return 2;
        }
        if (!p) {
                fprintf(err, "layerd cache refresh: needs the running agent (its upstream client); none answers on "
                             "the admin socket\n");
                return 1;
        }
        struct target targets[RM_IMAGES_MAX] = {};
        if (parse_targets(images, n_images, targets, "layerd cache refresh", err) < 0)
                return 2;
        struct cache *c = pull_cache(p);
        int status = 0;
        for (size_t i = 0; i < n_images; i++) {
                const struct reference *ref = &targets[i].ref;
                if (!ref->tag || ref->digest) {
                        fprintf(out, "%s: a digest never changes: nothing to refresh\n", images[i]);
                        continue;
                }
                /* The record made due now: the resolver revalidates it as for a
                 * client past tag_ttl (and serves it stale if no upstream answers). */
                struct cache_tag t, due;
                int r = cache_tag_get(c, ref->domain, ref->path, ref->tag, &t);
                if (r == 0) {
                        due = t;
                        due.fetched_at = 0;
                        r = cache_tag_put(c, ref->domain, ref->path, ref->tag, &due);
                }
                bool known = r == 0;
                char before[DIGEST_STRING_MAX] = "-", after[DIGEST_STRING_MAX];
                if (known)
                        digest_to_string(&t.digest, before);
                struct pull_manifest m;
                r = pull_manifest_ensure(p, ref->domain, ref->path, ref->tag, false, &m);
                /* No answer: the record gets its own age back (the stale-serving
                 * grace counts from it), unless an answer replaced it meanwhile. */
                struct cache_tag now;
                if ((r < 0 || m.stale) && known && cache_tag_get(c, ref->domain, ref->path, ref->tag, &now) == 0 &&
                    now.fetched_at == 0)
                        (void) cache_tag_put(c, ref->domain, ref->path, ref->tag, &t);
                if (r < 0) {
                        fprintf(err, "layerd cache refresh: %s: %s\n", images[i],
                                r == -ENOENT         ? "not found upstream"
                                : r == -EHOSTUNREACH ? "no upstream answered"
                                : r == -ENXIO        ? "not a mirrored registry"
                                                     : strerror(-r));
                        status = 1;
                        continue;
                }
                digest_to_string(&m.digest, after);
                bool stale = m.stale;
                pull_manifest_done(&m);
                if (stale)
                        fprintf(out, "%s %s (stale: no upstream answered)\n", images[i], after);
                else if (strcmp(before, "-") == 0)
                        fprintf(out, "%s %s (new)\n", images[i], after);
                else if (strcmp(before, after) == 0)
                        fprintf(out, "%s %s (unchanged)\n", images[i], after);
                else
                        fprintf(out, "%s %s (was %s)\n", images[i], after, before);
                if (stale)
                        status = 1;
        }
        for (size_t i = 0; i < n_images; i++)
                reference_done(&targets[i].ref);
        return fflush(out) == 0 ? status : 1;
}
