/* SPDX-License-Identifier: Apache-2.0 */
/* The pull core's shared state: its lifecycle, the spec in force (held by
 * reference: a reload never frees one a request still uses), the threads it
 * runs and their shutdown. What a mirror guarantees containerd, and how the
 * work is spread over threads, is told where it is done: http.c (the front
 * end, deferral), stream.c (blobs streamed while they download), manifest.c,
 * download.c, tags.c, metrics.c. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "agent/log.h"
#include "agent/pull-internal.h"
#include "common/time.h"

struct spec_ref *spec_ref_get(struct pull *p) {
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

void spec_ref_put(struct pull *p, struct spec_ref *r) {
        pthread_mutex_lock(&p->lock);
        spec_ref_put_locked(r);
        pthread_mutex_unlock(&p->lock);
}

struct present {
        struct cache *cache;
        struct pull *p; /* NULL: at start-up, nothing to cancel */
};

static int cached(void *userdata, const struct digest *d) {
        struct present *c = userdata;
        if (c->p && atomic_load(&c->p->stopping))
                return -ECANCELED;
        uint64_t size;
        return cache_stat(c->cache, d, &size);
}

/* What the cache no longer has leaves the private-content table: a digest
 * fetched again is marked again before it is stored, and one being stored
 * is pinned (agent/private.h). A failed rewrite is only a bigger file. */
static void prune_private(struct private_set *s, struct cache *cache, const char *cache_dir, struct pull *p) {
        size_t pruned = 0;
        struct present c = { .cache = cache, .p = p };
        int r = private_prune(s, cached, &c, &pruned);
        if (r == -ECANCELED)
                return;
        if (r < 0)
                log_warning("cannot prune the private-content table: file=\"%s/%s\": %s", cache_dir, PRIVATE_FILE,
                            strerror(-r));
        else if (pruned > 0)
                log_info("private-content: dropped %zu entries of digests no longer cached, %zu kept", pruned,
                         private_count(s));
        if (p && r >= 0) {
                atomic_fetch_add(&p->private_prunes, 1);
                atomic_fetch_add(&p->private_pruned, pruned);
        }
}

struct digests {
        struct digest *d;
        size_t n, cap;
};

static int collect(const struct digest *d, uint64_t size, bool pinned, void *userdata) {
        (void) size, (void) pinned;
        struct digests *l = userdata;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 256;
                struct digest *n = realloc(l->d, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                l->d = n;
                l->cap = cap;
        }
        l->d[l->n++] = *d;
        return 0;
}

/* The table's file deleted, its sentinel left: whatever the cache holds may
 * be private, to a repository nobody knows now. Each digest is served under
 * a name only once the origin confirms it there (agent/access.c). */
static int adopt_lost(struct pull *p, struct cache *cache, const char *cache_dir) {
        struct digests l = {};
        int r = cache_foreach_blob(cache, collect, &l);
        if (r >= 0)
                r = private_adopt_lost(p->private, l.d, l.n);
        if (r >= 0) {
                p->private_lost = l.n;
                log_error("the private-content table was deleted, its sentinel is there: file=\"%s/%s\"; the %zu "
                          "cached blobs are now served under a repository's name only once its origin confirms "
                          "the repository has them (empty the whole cache directory to start afresh)",
                          cache_dir, PRIVATE_FILE, l.n);
        } else
                log_error("the private-content table was deleted, its sentinel is there, and the cached blobs "
                          "cannot be recorded private: file=\"%s/%s\": %s",
                          cache_dir, PRIVATE_FILE, strerror(-r));
        free(l.d);
        return r;
}

static void *prune_main(void *userdata) {
        struct pull *p = userdata;
        prune_private(p->private, p->cache, p->cache_dir, p);
        atomic_store(&p->private_pruning, false);
        pull_thread_end(p);
        return NULL;
}

void pull_private_upkeep(struct pull *p, uint64_t now_ms) {
        uint64_t since = now_ms - p->private_pruned_ms;
        bool due = since >= PRIVATE_PRUNE_INTERVAL_MS ||
                   (since >= PRIVATE_PRUNE_RETRY_MS && private_prune_wanted(p->private));
        if (!due || atomic_exchange(&p->private_pruning, true))
                return;
        p->private_pruned_ms = now_ms;
        /* Counted like a download's thread: shutdown waits for it, and it stops
         * at the next digest it would ask the cache about. */
        pthread_t t;
        pthread_attr_t attr;
        bool started = false;
        if (pull_thread_begin(p)) {
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                started = pthread_create(&t, &attr, prune_main, p) == 0;
                pthread_attr_destroy(&attr);
                if (!started) {
                        log_warning("cannot start a thread to prune the private-content table");
                        pull_thread_end(p);
                }
        }
        if (!started)
                atomic_store(&p->private_pruning, false);
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
        /* What is private must be known before anything is served: a table that
         * cannot be read is an error, never an empty one (that would leak). */
        unsigned line = 0;
        int k = private_open(cache_dir, &p->private, &line);
        if (k == 0 && private_torn(p->private))
                log_warning("private-content: its last line was cut short (a crash during a write) and is dropped: "
                            "file=\"%s/%s\"", cache_dir, PRIVATE_FILE);
        if (k == 0 && private_lost(p->private))
                k = adopt_lost(p, cache, cache_dir);
        if (k == 0)
                prune_private(p->private, cache, cache_dir, NULL);
        p->private_pruned_ms = time_now_ms();
        if (k == 0 && getrandom(p->auth_salt, sizeof(p->auth_salt), 0) != (ssize_t) sizeof(p->auth_salt))
                k = -errno;
        if (k == 0)
                k = client_auth_own_key(p->auth_salt, sizeof(p->auth_salt), p->own_key);
        if (k < 0) {
                if (k == -EBADMSG)
                        log_error("the private-content table does not parse: file=\"%s/%s\" line=%u (do not delete "
                                  "it alone: every cached blob would then be private to an unknown repository; empty "
                                  "the whole cache directory instead)",
                                  cache_dir, PRIVATE_FILE, line);
                private_free(p->private);
                free(p);
                free(r);
                free(dir);
                return k;
        }
        verdicts_init(&p->verdicts);
        reqmetrics_init(&p->reqmetrics);
        throttle_init(&p->grace_log, AUTH_GRACE_LOG_INTERVAL_MS);
        r->spec = spec;
        r->refs = 1;
        pthread_mutex_init(&p->lock, NULL);
        pthread_mutex_init(&p->tags_lock, NULL);
        time_cond_init(&p->ended); /* shutdown's wait is no wall-clock time */
        p->spec = r;
        budget_init(&p->budget, spec->agent.max_inflight_memory);
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
        budget_set_limit(&p->budget, spec->agent.max_inflight_memory);
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
        tags_cache_free(p);
        private_free(p->private);
        verdicts_done(&p->verdicts);
        throttle_done(&p->grace_log);
        explicit_bzero(p->auth_salt, sizeof(p->auth_salt));
        pthread_mutex_destroy(&p->tags_lock);
        free(p->cache_dir);
        pthread_cond_destroy(&p->ended);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

static bool pull_stopping(void *userdata) {
        struct pull *p = userdata;
        return atomic_load(&p->stopping);
}

struct fallback_request pull_upstream_request(struct pull *p, const char *registry, const char *repository,
                                              enum fallback_kind kind, const char *reference, bool head) {
        return (struct fallback_request) { .registry = registry, .repository = repository, .kind = kind,
                                           .reference = reference, .head = head,
                                           .deadline_ms = time_now_ms() + HEADER_WAIT_MS, .budget = &p->budget,
                                           .cancelled = pull_stopping, .cancel_userdata = p };
}

bool pull_thread_begin(struct pull *p) {
        pthread_mutex_lock(&p->lock);
        bool stopping = atomic_load(&p->stopping);
        if (!stopping)
                p->threads++;
        pthread_mutex_unlock(&p->lock);
        return !stopping;
}

void pull_thread_end(struct pull *p) {
        pthread_mutex_lock(&p->lock);
        p->threads--;
        pthread_cond_broadcast(&p->ended);
        pthread_mutex_unlock(&p->lock);
}

const struct spec_registry *pull_registry(const struct spec *s, const char *registry, bool offline) {
        const struct spec_registry *reg = spec_find_registry(s, registry);
        if (!offline && (!reg || !reg->mirror || strcmp(reg->host, SPEC_DEFAULT_REGISTRY) == 0))
                return NULL;
        return reg;
}

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

void pull_set_metrics_hook(struct pull *p, enum pull_metrics_hook slot, void (*fn)(FILE *f, void *userdata),
                           void *userdata) {
        assert(slot >= 0 && slot < _PULL_METRICS_HOOK_MAX);
        p->metrics_hooks[slot].fn = fn;
        p->metrics_hooks[slot].userdata = userdata;
}

struct cache *pull_cache(struct pull *p) {
        return p->cache;
}
