/* SPDX-License-Identifier: Apache-2.0 */
/* The store: layout, the index of committed blobs, start-up recovery,
 * eviction, pins and verification. Downloads and their readers are
 * cache/entry.c's. See cache.h for the contract. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache-internal.h"
#include "common/fsutil.h"
#include "common/macro.h"
#include "common/time.h"

/* What the store holds, in memory: a hash of digest -> record, and the
 * records on a list from least to most recently used. */
struct blob_rec {
        struct digest digest;
        uint64_t size;
        bool pinned;
        int64_t used_ms;     /* the last use (cache_mono_ms()): the list is in this order */
        int64_t recorded_ms; /* the last use written to the file's mtime (or read from it), same clock */
        int64_t mtime_ms;    /* that mtime, on the wall clock (index_record_uses() mends it after a step) */
        struct blob_rec *hash_next;
        struct blob_rec *older, *newer;
};

#define PIN_BUCKETS 1024

struct pin {
        struct digest digest;
        struct pin *next;
};

/* ---- the index (all under c->lock) ------------------------------------------------- */

static size_t bucket_of(const struct cache *c, const struct digest *d) {
        uint64_t h;
        memcpy(&h, d->bytes, sizeof(h)); /* digests are uniform already */
        return (size_t) (h ^ (uint64_t) d->algorithm) & (c->n_buckets - 1);
}

static struct blob_rec *index_find(const struct cache *c, const struct digest *d) {
        for (struct blob_rec *b = c->buckets[bucket_of(c, d)]; b; b = b->hash_next)
                if (digest_equal(&b->digest, d))
                        return b;
        return NULL;
}

static void lru_unlink(struct cache *c, struct blob_rec *b) {
        if (b->older)
                b->older->newer = b->newer;
        else
                c->oldest = b->newer;
        if (b->newer)
                b->newer->older = b->older;
        else
                c->newest = b->older;
        b->older = b->newer = NULL;
}

static void lru_append(struct cache *c, struct blob_rec *b) {
        b->older = c->newest;
        b->newer = NULL;
        if (c->newest)
                c->newest->newer = b;
        else
                c->oldest = b;
        c->newest = b;
}

static int index_grow(struct cache *c) {
        size_t n = c->n_buckets ? c->n_buckets * 2 : 1024;
        struct blob_rec **nb = calloc(n, sizeof(*nb));
        if (!nb)
                return -ENOMEM;
        struct blob_rec **old = c->buckets;
        size_t old_n = c->n_buckets;
        c->buckets = nb;
        c->n_buckets = n;
        for (size_t i = 0; i < old_n; i++)
                for (struct blob_rec *b = old[i], *next; b; b = next) {
                        next = b->hash_next;
                        size_t k = bucket_of(c, &b->digest);
                        b->hash_next = nb[k];
                        nb[k] = b;
                }
        free(old);
        return 0;
}

static struct pin **pin_slot(struct cache *c, const struct digest *d) {
        uint64_t h;
        memcpy(&h, d->bytes, sizeof(h));
        struct pin **p = &c->pins[(h ^ (uint64_t) d->algorithm) % PIN_BUCKETS];
        while (*p && !digest_equal(&(*p)->digest, d))
                p = &(*p)->next;
        return p; /* the pin, or the NULL link to put it at */
}

bool cache_pinned_locked(struct cache *c, const struct digest *d) {
        return *pin_slot(c, d) != NULL;
}

/* Adds (or refreshes) a blob as the most recently used, used at now_ms
 * (cache_mono_ms()) with mtime_ms on disk. */
static int index_add(struct cache *c, const struct digest *d, uint64_t size, int64_t now_ms, int64_t mtime_ms) {
        struct blob_rec *b = index_find(c, d);
        if (b) {
                c->stats.bytes = c->stats.bytes - b->size + size;
                b->size = size;
                b->used_ms = b->recorded_ms = now_ms;
                b->mtime_ms = mtime_ms;
                lru_unlink(c, b);
                lru_append(c, b);
                return 0;
        }
        if (c->stats.blobs >= c->n_buckets) {
                int r = index_grow(c);
                if (r < 0)
                        return r;
        }
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->digest = *d;
        b->size = size;
        b->used_ms = b->recorded_ms = now_ms;
        b->mtime_ms = mtime_ms;
        b->pinned = *pin_slot(c, d) != NULL;
        size_t k = bucket_of(c, d);
        b->hash_next = c->buckets[k];
        c->buckets[k] = b;
        lru_append(c, b);
        c->stats.blobs++;
        c->stats.bytes += size;
        return 0;
}

/* Adds a blob found on disk at start-up, last used at used_ms (from its
 * mtime_ms), as older than everything known so far (which was committed
 * while the indexer ran); a known one is left alone. */
static int index_add_old(struct cache *c, const struct digest *d, uint64_t size, int64_t used_ms,
                         int64_t mtime_ms) {
        if (index_find(c, d))
                return 0;
        int r = index_add(c, d, size, used_ms, mtime_ms);
        if (r < 0)
                return r;
        struct blob_rec *b = c->newest;
        if (b != c->oldest) {
                lru_unlink(c, b);
                b->newer = c->oldest;
                c->oldest->older = b;
                c->oldest = b;
        }
        return 0;
}

static void index_remove(struct cache *c, struct blob_rec *b) {
        for (struct blob_rec **p = &c->buckets[bucket_of(c, &b->digest)]; *p; p = &(*p)->hash_next)
                if (*p == b) {
                        *p = b->hash_next;
                        break;
                }
        lru_unlink(c, b);
        c->stats.blobs--;
        c->stats.bytes -= b->size;
        free(b);
}

/* How stale the use recorded on disk may get: a hot blob costs one
 * futimens() per this, and a crash loses at most this much of its last use
 * (which must stay well below the age that evicts it). */
static int64_t record_every_ms(const struct cache *c) {
        int64_t every = CACHE_USE_RECORD_MS;
        if (c->max_age_ms && c->max_age_ms / 4 < (uint64_t) every)
                every = (int64_t) (c->max_age_ms / 4);
        return every;
}

/* The time of a use at now_ms (cache_mono_ms()): never before the newest
 * use, so that the list stays in order of use (eviction by age stops at the
 * first blob young enough) when a use read the clock before another took
 * the lock. */
static int64_t use_time(const struct cache *c, int64_t now_ms) {
        return c->newest && now_ms < c->newest->used_ms ? c->newest->used_ms : now_ms;
}

/* The wall-clock time of a use at used_ms (cache_mono_ms()), seen from the
 * clocks' readings real_ms and mono_ms: as long before the one as the use
 * was before the other, so that a wall-clock step since does not count. */
static int64_t wall_of(int64_t used_ms, int64_t real_ms, int64_t mono_ms) {
        int64_t ms = real_ms - (mono_ms - used_ms);
        return ms > 0 ? ms : 0;
}

/* A use of d (size bytes) at now_ms (cache_mono_ms(), real_ms on the wall
 * clock); true with the time to write to the file's mtime in *ret_mtime_ms
 * when it is due (it then counts as recorded). */
static bool index_touch(struct cache *c, const struct digest *d, uint64_t size, int64_t now_ms, int64_t real_ms,
                        int64_t *ret_mtime_ms) {
        int64_t mono_ms = now_ms;
        now_ms = use_time(c, now_ms);
        int64_t mtime_ms = wall_of(now_ms, real_ms, mono_ms);
        struct blob_rec *b = index_find(c, d);
        if (!b) {
                /* Not listed yet at start-up: listed now as just used (the
                 * indexer leaves a known blob alone), and its mtime written. */
                if (c->indexed || index_add(c, d, size, now_ms, mtime_ms) < 0)
                        return false;
                *ret_mtime_ms = mtime_ms;
                return true;
        }
        b->used_ms = now_ms;
        if (b != c->newest) {
                lru_unlink(c, b);
                lru_append(c, b);
        }
        if (now_ms - b->recorded_ms < record_every_ms(c))
                return false;
        b->recorded_ms = now_ms;
        b->mtime_ms = *ret_mtime_ms = mtime_ms;
        return true;
}

/* The times for futimens()/utimensat(): the atime left alone, the mtime ms. */
static void use_times(int64_t ms, struct timespec t[static 2]) {
        t[0] = (struct timespec) { .tv_nsec = UTIME_OMIT };
        t[1] = (struct timespec) { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
}

/* At close: the uses not written yet (fewer than record_every_ms() old), and
 * the mtimes that a wall-clock step since made wrong (a node that booted days
 * behind, then set right: otherwise the next start sees days-old uses). */
static void index_record_uses(struct cache *c) {
        int64_t real = cache_now_ms(c), mono = cache_mono_ms(c), every = record_every_ms(c);
        for (struct blob_rec *b = c->oldest; b; b = b->newer) {
                int64_t want = wall_of(b->used_ms, real, mono);
                if (b->used_ms > b->recorded_ms || want - b->mtime_ms > every || b->mtime_ms - want > every) {
                        char path[CACHE_PATH_MAX];
                        struct timespec t[2];
                        cache_blob_path(&b->digest, path);
                        use_times(want, t);
                        (void) utimensat(c->root_fd, path, t, AT_SYMLINK_NOFOLLOW);
                }
        }
}

static void index_free(struct cache *c) {
        for (struct blob_rec *b = c->oldest, *next; b; b = next) {
                next = b->newer;
                free(b);
        }
        free(c->buckets);
        c->buckets = NULL;
        c->oldest = c->newest = NULL;
        for (size_t i = 0; c->pins && i < PIN_BUCKETS; i++)
                for (struct pin *p = c->pins[i], *next; p; p = next) {
                        next = p->next;
                        free(p);
                }
        free(c->pins);
        c->pins = NULL;
}

void cache_blob_path(const struct digest *d, char buf[static CACHE_PATH_MAX]) {
        char hex[129];
        digest_hex(d, hex);
        snprintf(buf, CACHE_PATH_MAX, "blobs/%s/%.2s/%s", digest_algorithm_name(d->algorithm), hex, hex);
}

bool cache_index_has_locked(const struct cache *c, const struct digest *d) {
        return index_find(c, d) != NULL;
}

int cache_index_add_locked(struct cache *c, const struct digest *d, uint64_t size) {
        /* The file was just written: its mtime is about the wall clock's now. */
        return index_add(c, d, size, use_time(c, cache_mono_ms(c)), cache_now_ms(c));
}

static int64_t real_now_ms(void *userdata) {
        (void) userdata;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t real_mono_ms(void *userdata) {
        (void) userdata;
        return (int64_t) time_now_ms();
}

int64_t cache_now_ms(const struct cache *c) {
        return c->opts.now_ms(c->opts.now_userdata);
}

int64_t cache_mono_ms(const struct cache *c) {
        return c->opts.mono_ms(c->opts.now_userdata);
}

void cache_evict_wake_locked(struct cache *c) {
        if (c->evictor_running) {
                c->evict_wanted = true;
                pthread_cond_signal(&c->evict_cond);
        }
}

const char *cache_root_path(const struct cache *c) {
        return c->root_path;
}

struct cache_memo *cache_memo(struct cache *c) {
        return c->memo;
}

/* ---- opening ------------------------------------------------------------------- */

int cache_fsync_at(int dirfd, const char *path, bool parent) {
        char buf[CACHE_PATH_MAX];
        snprintf(buf, sizeof(buf), "%s", path);
        if (parent) {
                char *slash = strrchr(buf, '/');
                if (slash)
                        *slash = '\0';
                else
                        snprintf(buf, sizeof(buf), ".");
        }
        _cleanup_close_ int fd = openat(dirfd, buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

static int mkdirat_p(int dirfd, const char *path) {
        if (mkdirat(dirfd, path, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int check_version(struct cache *c, const char *root, struct error_list *errors) {
        char buf[32] = "";
        _cleanup_close_ int fd = openat(c->root_fd, "VERSION", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/VERSION", root) < 0)
                        return -ENOMEM;
                snprintf(buf, sizeof(buf), "%d\n", CACHE_FORMAT_VERSION);
                int r = write_file_atomic(path, buf, strlen(buf), 0644);
                if (r < 0)
                        error_list_add(errors, 0, 0, "cannot write VERSION: %s", strerror(-r));
                return r;
        }
        if (fd < 0) {
                int e = errno;
                error_list_add(errors, 0, 0, "cannot read VERSION: %s", strerror(e));
                return -e;
        }
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0) {
                int e = errno;
                error_list_add(errors, 0, 0, "cannot read VERSION: %s", strerror(e));
                return -e;
        }
        buf[n] = '\0';
        char want[16];
        snprintf(want, sizeof(want), "%d\n", CACHE_FORMAT_VERSION);
        if (strcmp(buf, want) != 0) {
                buf[strcspn(buf, "\n")] = '\0';
                error_list_add(errors, 0, 0, "cache format \"%.16s\" is not the format %d this layerd reads", buf,
                               CACHE_FORMAT_VERSION);
                return -EPROTO;
        }
        return 0;
}

/* A directory stream on dirfd/path, never through a symbolic link. */
static int opendirat(int dirfd, const char *path, DIR **ret) {
        int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int e = errno;
                close(fd);
                return -e;
        }
        *ret = d;
        return 0;
}

/* Partial downloads of a process that died: never served, so simply removed. */
static int clean_tmp(struct cache *c) {
        DIR *d;
        int r0 = opendirat(c->root_fd, "tmp", &d);
        if (r0 < 0)
                return r0;
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
                        r = r ? r : -errno;
                else
                        c->stats.partials_removed++;
        }
        closedir(d);
        return r;
}

static bool is_hex(const char *s, size_t n) {
        if (strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

struct found {
        struct digest digest;
        uint64_t size;
        struct timespec mtime;
};

struct found_list {
        struct found *v;
        size_t n, cap;
};

/* Lists the blobs of one algorithm by their names and sizes: nothing is
 * re-hashed, because nothing enters blobs/ without being verified. Names that
 * are not a digest of this algorithm are ignored (and never served). */
static int list_blobs(struct cache *c, enum digest_algorithm a, struct found_list *l) {
        char path[CACHE_PATH_MAX];
        size_t hex_len = digest_size(a) * 2;
        snprintf(path, sizeof(path), "blobs/%s", digest_algorithm_name(a));
        DIR *top;
        int r0 = opendirat(c->root_fd, path, &top);
        if (r0 < 0)
                return r0;
        struct dirent *de;
        while ((de = readdir(top))) {
                if (atomic_load(&c->closing))
                        break;
                if (!is_hex(de->d_name, 2))
                        continue;
                DIR *sub;
                if (opendirat(dirfd(top), de->d_name, &sub) < 0)
                        continue;
                struct dirent *be;
                while ((be = readdir(sub))) {
                        struct stat st;
                        char full[DIGEST_STRING_MAX];
                        if (!is_hex(be->d_name, hex_len) || strncmp(be->d_name, de->d_name, 2) != 0)
                                continue;
                        if (fstatat(dirfd(sub), be->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                                continue;
                        if (l->n == l->cap) {
                                size_t cap = l->cap ? l->cap * 2 : 4096;
                                struct found *v = realloc(l->v, cap * sizeof(*v));
                                if (!v) {
                                        closedir(sub);
                                        closedir(top);
                                        return -ENOMEM;
                                }
                                l->v = v;
                                l->cap = cap;
                        }
                        snprintf(full, sizeof(full), "%s:%.128s", digest_algorithm_name(a), be->d_name);
                        if (digest_parse(full, &l->v[l->n].digest) < 0)
                                continue;
                        l->v[l->n].size = (uint64_t) st.st_size;
                        l->v[l->n].mtime = st.st_mtim;
                        l->n++;
                }
                closedir(sub);
        }
        closedir(top);
        return 0;
}

static int by_mtime(const void *x, const void *y) {
        const struct found *a = x, *b = y;
        if (a->mtime.tv_sec != b->mtime.tv_sec)
                return a->mtime.tv_sec < b->mtime.tv_sec ? -1 : 1;
        if (a->mtime.tv_nsec != b->mtime.tv_nsec)
                return a->mtime.tv_nsec < b->mtime.tv_nsec ? -1 : 1;
        return memcmp(a->digest.bytes, b->digest.bytes, sizeof(a->digest.bytes));
}

/* Lists what is on disk, oldest first, and adds it to the index behind
 * whatever was committed in the meantime. */
static void *indexer(void *arg) {
        struct cache *c = arg;
        struct found_list found = {};
        int r = 0;
        for (int a = 0; a < _DIGEST_ALGORITHM_MAX && r == 0; a++)
                r = list_blobs(c, (enum digest_algorithm) a, &found);
        if (r == 0 && found.n > 0)
                qsort(found.v, found.n, sizeof(*found.v), by_mtime);
        pthread_mutex_lock(&c->lock);
        /* Newest first, each put at the old end: the oldest ends up first to go.
         * The mtime is the last use recorded (cache_open_blob()), on the wall
         * clock: in memory, as long before the monotonic now as it is before
         * the wall-clock now; one in the future (a clock stepped back) counts
         * as now. */
        int64_t real = cache_now_ms(c), mono = cache_mono_ms(c);
        for (size_t i = found.n; r == 0 && i-- > 0;) {
                const struct timespec *m = &found.v[i].mtime;
                int64_t mtime = (int64_t) m->tv_sec * 1000 + m->tv_nsec / 1000000, ago = real - mtime;
                r = index_add_old(c, &found.v[i].digest, found.v[i].size, mono - (ago > 0 ? ago : 0), mtime);
        }
        c->indexed = true;
        /* Stopped early by a close: what was listed is not everything. */
        c->index_error = r == 0 && atomic_load(&c->closing) ? -ECANCELED : r;
        pthread_cond_broadcast(&c->indexed_cond);
        cache_evict_wake_locked(c);
        pthread_mutex_unlock(&c->lock);
        free(found.v);
        return NULL;
}

int cache_wait_ready(struct cache *c, int timeout_ms) {
        uint64_t deadline = time_deadline_ms(timeout_ms);
        pthread_mutex_lock(&c->lock);
        int w = 0;
        while (!c->indexed && w == 0)
                w = time_cond_wait_until(&c->indexed_cond, &c->lock, deadline);
        int r = c->indexed ? c->index_error : -ETIMEDOUT;
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cache_open(const char *root, struct cache **ret, struct error_list *errors) {
        return cache_open_with(root, NULL, ret, errors);
}

int cache_open_with(const char *root, const struct cache_options *opts, struct cache **ret,
                    struct error_list *errors) {
        _cleanup_(cache_closep) struct cache *c = NULL;
        int r;

        error_list_init(errors, root);
        r = mkdir_p(root, 0700);
        if (r < 0) {
                error_list_add(errors, 0, 0, "cannot create: %s", strerror(-r));
                return r;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->root_fd = c->lock_fd = -1;
        if (opts)
                c->opts = *opts;
        if (!c->opts.now_ms)
                c->opts.now_ms = real_now_ms;
        if (!c->opts.mono_ms)
                c->opts.mono_ms = real_mono_ms;
        /* Everything cache_close() destroys is set up before the first way out. */
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->evict_lock, NULL);
        time_cond_init(&c->evict_cond);
        time_cond_init(&c->indexed_cond);
        c->root_path = strdup(root);
        c->pins = calloc(PIN_BUCKETS, sizeof(*c->pins));
        c->memo = cache_memo_new();
        if (!c->root_path || !c->pins || !c->memo)
                return -ENOMEM;
        c->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (c->root_fd < 0) {
                r = -errno;
                error_list_add(errors, 0, 0, "cannot open: %s", strerror(-r));
                return r;
        }
        /* One process per cache directory: two would remove each other's partials. */
        c->lock_fd = openat(c->root_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (c->lock_fd < 0) {
                r = -errno;
                error_list_add(errors, 0, 0, "cannot open the lock file: %s", strerror(-r));
                return r;
        }
        if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                error_list_add(errors, 0, 0, "%s", r == -EBUSY ? "in use by another layerd process (its lock is held)"
                                                                : strerror(-r));
                return r;
        }
        r = check_version(c, root, errors);
        if (r < 0)
                return r;
        static const char *const dirs[] = { "blobs", "blobs/sha256", "blobs/sha512", "tmp", "tags" };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                r = mkdirat_p(c->root_fd, dirs[i]);
                if (r < 0) {
                        error_list_add(errors, 0, 0, "cannot create %s: %s", dirs[i], strerror(-r));
                        return r;
                }
        }
        r = clean_tmp(c);
        if (r < 0) {
                error_list_add(errors, 0, 0, "cannot clean tmp: %s", strerror(-r));
                return r;
        }
        r = index_grow(c);
        if (r < 0)
                return r;
        r = -pthread_create(&c->indexer, NULL, indexer, c);
        if (r < 0) {
                error_list_add(errors, 0, 0, "cannot start the indexer: %s", strerror(-r));
                return r;
        }
        c->indexer_running = true;
        *ret = TAKE_PTR(c);
        return 0;
}

struct cache *cache_close(struct cache *c) {
        if (!c)
                return NULL;
        if (c->indexer_running) {
                atomic_store(&c->closing, true);
                pthread_join(c->indexer, NULL);
        }
        if (c->evictor_running) {
                pthread_mutex_lock(&c->lock);
                c->evictor_stop = true;
                pthread_cond_signal(&c->evict_cond);
                pthread_mutex_unlock(&c->lock);
                pthread_join(c->evictor, NULL);
        }
        /* Only the owner of the lock writes to blobs/; an index that is not
         * whole still holds every use made since the start. */
        if (c->lock_fd >= 0 && c->root_fd >= 0)
                index_record_uses(c);
        if (c->lock_fd >= 0)
                close(c->lock_fd); /* releases the flock */
        if (c->root_fd >= 0)
                close(c->root_fd);
        index_free(c);
        cache_memo_free(c->memo);
        free(c->root_path);
        pthread_cond_destroy(&c->evict_cond);
        pthread_cond_destroy(&c->indexed_cond);
        pthread_mutex_destroy(&c->evict_lock);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* ---- committed blobs --------------------------------------------------------------- */

/* Opens a stored blob without counting it as a use. */
static int open_blob_fd(struct cache *c, const struct digest *d, int *ret_fd, uint64_t *ret_size) {
        char path[CACHE_PATH_MAX];
        cache_blob_path(d, path);
        _cleanup_close_ int fd = openat(c->root_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -ENOENT;
        *ret_fd = TAKE_FD(fd);
        *ret_size = (uint64_t) st.st_size;
        return 0;
}

int cache_read_blob(struct cache *c, const struct digest *d, size_t max, void **ret, size_t *ret_size) {
        int fd;
        uint64_t size;
        int r = open_blob_fd(c, d, &fd, &size); /* a look, not a use: recency and hits stay */
        if (r < 0)
                return r;
        _cleanup_close_ int fd_owned = fd;
        if (size > max)
                return -EFBIG;
        _cleanup_free_ char *buf = malloc(size ? size : 1);
        if (!buf)
                return -ENOMEM;
        size_t got = 0;
        while (got < size) {
                ssize_t k = pread(fd_owned, buf + got, size - got, (off_t) got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                got += (size_t) k;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = got;
        return 0;
}

int cache_open_blob(struct cache *c, const struct digest *d, int *ret_fd, uint64_t *ret_size) {
        int r = open_blob_fd(c, d, ret_fd, ret_size);
        if (r < 0)
                return r;
        int64_t now = cache_mono_ms(c), real = cache_now_ms(c), record_ms = 0;
        pthread_mutex_lock(&c->lock);
        bool record = index_touch(c, d, *ret_size, now, real, &record_ms);
        c->stats.hits++;
        pthread_mutex_unlock(&c->lock);
        /* Outside the lock: the inode's time, no data, no fsync. A failure
         * (a read-only file system) costs recency after a restart, nothing else. */
        if (record) {
                struct timespec t[2];
                use_times(record_ms, t);
                (void) futimens(*ret_fd, t);
        }
        return 0;
}

int cache_stat(struct cache *c, const struct digest *d, uint64_t *ret_size) {
        char path[CACHE_PATH_MAX];
        struct stat st;
        cache_blob_path(d, path);
        if (fstatat(c->root_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -ENOENT;
        *ret_size = (uint64_t) st.st_size;
        return 0;
}

void cache_get_stats(struct cache *c, struct cache_stats *ret) {
        pthread_mutex_lock(&c->lock);
        *ret = c->stats;
        ret->ready = c->indexed && c->index_error == 0;
        ret->in_flight = 0;
        for (struct cache_entry *e = c->in_flight; e; e = e->next)
                ret->in_flight++;
        pthread_mutex_unlock(&c->lock);
}

/* ---- eviction ------------------------------------------------------------------------ */

#define EVICT_BATCH 32
#define EVICT_PERIOD_S 30

static uint64_t free_bytes(struct cache *c) {
        struct statvfs sv;
        if (fstatvfs(c->root_fd, &sv) < 0)
                return UINT64_MAX; /* unknown: do not evict for it */
        return (uint64_t) sv.f_bavail * sv.f_frsize;
}

/* Whether eviction has work, and for which bound (_CACHE_EVICT_REASON_MAX:
 * none); c->lock held. low: evict down to the low watermarks rather than
 * stop at the high ones. Downloads in progress count (their room in tmp/),
 * and extra bytes more that a writer wants room for. */
static enum cache_evict_reason over(struct cache *c, bool low, uint64_t freed_since_statvfs, uint64_t avail,
                                    uint64_t extra) {
        uint64_t max = low ? c->max_bytes / 10 * 9 : c->max_bytes;
        if (c->max_bytes && c->stats.bytes + c->stats.tmp_bytes + extra > max)
                return CACHE_EVICT_SIZE;
        if (c->min_free_bytes) {
                uint64_t want = low ? c->min_free_bytes + c->min_free_bytes / 10 : c->min_free_bytes;
                if (avail != UINT64_MAX && avail + freed_since_statvfs < want)
                        return CACHE_EVICT_FREE;
        }
        return _CACHE_EVICT_REASON_MAX;
}

/* Removes b's file and record (c->lock held), counted for why; false when the
 * file cannot be removed (b is then passed over and stays). */
static bool evict_one(struct cache *c, struct blob_rec *b, enum cache_evict_reason why,
                      struct cache_evict_report *rep) {
        char path[CACHE_PATH_MAX];
        cache_blob_path(&b->digest, path);
        /* A reader with the file open keeps reading it. */
        if (unlinkat(c->root_fd, path, 0) < 0 && errno != ENOENT) {
                c->stats.evict_errors++;
                return false;
        }
        c->stats.evictions++;
        c->stats.evicted_by[why]++;
        c->stats.evicted_bytes += b->size;
        rep->blobs[why]++;
        rep->bytes[why] += b->size;
        index_remove(c, b);
        return true;
}

/* Between batches of an eviction pass: c->lock let go a moment, so that
 * serving and commits are not held up by a long pass. */
static void let_others_in(struct cache *c) {
        pthread_mutex_unlock(&c->lock);
        sched_yield();
        pthread_mutex_lock(&c->lock);
}

/* A blob a pass keeps (pinned, or its file cannot be removed), c->lock held:
 * put at the new end as used at now_ms, so that the next batch, pass and
 * evictor_wait_ms() do not walk it again; it comes of age again a whole age
 * later (a pinned blob counts as in use, an unremovable one is retried then). */
static void pass_over(struct cache *c, struct blob_rec *b, int64_t now_ms) {
        b->used_ms = use_time(c, now_ms);
        if (b != c->newest) {
                lru_unlink(c, b);
                lru_append(c, b);
        }
}

/* Evicts the unpinned blobs last used max_age_ms ago or longer (c->lock
 * held), looking at EVICT_BATCH at most before it lets others in; the oldest
 * first, so it stops at the first one younger (those passed over are younger
 * now: one look at each). */
static void evict_aged(struct cache *c, struct cache_evict_report *rep) {
        if (!c->max_age_ms)
                return;
        uint64_t budget = c->stats.blobs;
        for (;;) {
                int64_t now = cache_mono_ms(c), cutoff = now - (int64_t) c->max_age_ms;
                unsigned n = 0;
                struct blob_rec *b = c->oldest;
                while (n < EVICT_BATCH && budget > 0 && b && b->used_ms <= cutoff) {
                        struct blob_rec *next = b->newer;
                        budget--;
                        n++;
                        if (b->pinned || !evict_one(c, b, CACHE_EVICT_AGE, rep))
                                pass_over(c, b, now);
                        b = next;
                }
                if (n < EVICT_BATCH)
                        return;
                let_others_in(c);
        }
}

uint64_t cache_evict_for(struct cache *c, uint64_t extra) {
        uint64_t evicted = 0, freed = 0;
        /* Without the whole index the oldest blobs are unknown: wait for it,
         * and evict nothing if it could not be built. */
        if (cache_wait_ready(c, -1) < 0)
                return 0;
        /* One pass at a time (the background thread and a caller), each with
         * its own look at the free space: two at once would evict twice.
         * Lock order: evict_lock, then lock. */
        pthread_mutex_lock(&c->evict_lock);
        pthread_mutex_lock(&c->lock);
        bool want_free = c->min_free_bytes != 0;
        pthread_mutex_unlock(&c->lock);
        uint64_t avail = want_free ? free_bytes(c) : UINT64_MAX;
        pthread_mutex_lock(&c->lock);
        /* Age first: what it frees counts for the other bounds too. */
        struct cache_evict_report rep = {};
        evict_aged(c, &rep);
        freed = rep.bytes[CACHE_EVICT_AGE];
        /* Pinned blobs and those that cannot be removed (EACCES, EROFS, an
         * immutable file) are passed over to the new end, not looked at again
         * by the next batch: at most one look at each. */
        uint64_t budget = c->stats.blobs;
        struct blob_rec *b = c->oldest;
        if (over(c, false, freed, avail, extra) != _CACHE_EVICT_REASON_MAX)
                for (;;) {
                        unsigned n = 0;
                        int64_t now = cache_mono_ms(c);
                        enum cache_evict_reason why;
                        while (n < EVICT_BATCH && budget > 0 && b &&
                               (why = over(c, true, freed, avail, extra)) != _CACHE_EVICT_REASON_MAX) {
                                struct blob_rec *next = b->newer;
                                budget--;
                                n++;
                                uint64_t size = b->size;
                                if (!b->pinned && evict_one(c, b, why, &rep))
                                        freed += size;
                                else
                                        pass_over(c, b, now);
                                b = next;
                        }
                        if (n < EVICT_BATCH)
                                break;
                        /* The cursor may be gone after that (used, removed), so
                         * start again from the oldest. */
                        let_others_in(c);
                        b = c->oldest;
                }
        void (*report)(const struct cache_evict_report *r, void *userdata) = c->evict_report;
        void *report_userdata = c->evict_report_userdata;
        pthread_mutex_unlock(&c->lock);
        for (int i = 0; i < _CACHE_EVICT_REASON_MAX; i++)
                evicted += rep.blobs[i];
        /* Under evict_lock still: reports come in the order of the passes. */
        if (report && evicted)
                report(&rep, report_userdata);
        pthread_mutex_unlock(&c->evict_lock);
        return evicted;
}

uint64_t cache_evict_now(struct cache *c) {
        return cache_evict_for(c, 0);
}

/* How long the evictor may sleep (c->lock held): EVICT_PERIOD_S, or less
 * until the oldest blob comes of age (a pinned one then goes to the new end:
 * pass_over()); at least EVICT_AGE_MIN_WAIT_MS, against a busy loop. */
#define EVICT_AGE_MIN_WAIT_MS 1000
static int64_t evictor_wait_ms(struct cache *c) {
        int64_t wait = EVICT_PERIOD_S * 1000;
        if (!c->max_age_ms || !c->indexed)
                return wait;
        struct blob_rec *b = c->oldest;
        if (b) {
                int64_t due = b->used_ms + (int64_t) c->max_age_ms - cache_mono_ms(c) + 1;
                if (due < wait)
                        wait = due > EVICT_AGE_MIN_WAIT_MS ? due : EVICT_AGE_MIN_WAIT_MS;
        }
        return wait;
}

static void *evictor(void *arg) {
        struct cache *c = arg;
        pthread_mutex_lock(&c->lock);
        for (;;) {
                /* Woken by commits and full disks, and every EVICT_PERIOD_S
                 * anyway (other writers may eat the free space in between), or
                 * sooner when a blob comes of age. */
                uint64_t until = time_deadline_ms(evictor_wait_ms(c));
                while (!c->evict_wanted && !c->evictor_stop)
                        if (time_cond_wait_until(&c->evict_cond, &c->lock, until) == -ETIMEDOUT) {
                                c->evict_wanted = c->min_free_bytes != 0 || c->max_age_ms != 0;
                                break;
                        }
                if (!c->evict_wanted && !c->evictor_stop)
                        continue;
                if (c->evictor_stop)
                        break;
                c->evict_wanted = false;
                pthread_mutex_unlock(&c->lock);
                (void) cache_evict_now(c);
                pthread_mutex_lock(&c->lock);
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

/* With c->lock held: starts the eviction thread when a bound needs it and
 * wakes it (for a pass under the new bounds, and a new wait). */
static int evictor_start_locked(struct cache *c) {
        int r = 0;
        if (!c->evictor_running && (c->max_bytes || c->min_free_bytes || c->max_age_ms)) {
                r = -pthread_create(&c->evictor, NULL, evictor, c);
                c->evictor_running = r == 0;
        }
        cache_evict_wake_locked(c);
        return r;
}

int cache_set_limits(struct cache *c, uint64_t max_bytes, uint64_t min_free_bytes) {
        pthread_mutex_lock(&c->lock);
        c->max_bytes = max_bytes;
        c->min_free_bytes = min_free_bytes;
        int r = evictor_start_locked(c);
        pthread_mutex_unlock(&c->lock);
        return r;
}

uint64_t cache_max_bytes(struct cache *c) {
        pthread_mutex_lock(&c->lock);
        uint64_t max = c->max_bytes;
        pthread_mutex_unlock(&c->lock);
        return max;
}

int cache_set_max_age(struct cache *c, uint64_t max_age_ms) {
        pthread_mutex_lock(&c->lock);
        c->max_age_ms = max_age_ms;
        int r = evictor_start_locked(c);
        pthread_mutex_unlock(&c->lock);
        return r;
}

void cache_set_evict_report(struct cache *c, void (*fn)(const struct cache_evict_report *r, void *userdata),
                            void *userdata) {
        pthread_mutex_lock(&c->lock);
        c->evict_report = fn;
        c->evict_report_userdata = userdata;
        pthread_mutex_unlock(&c->lock);
}

int cache_pin(struct cache *c, const struct digest *d, bool pinned) {
        int r = 0;
        pthread_mutex_lock(&c->lock);
        struct pin **slot = pin_slot(c, d);
        if (pinned && !*slot) {
                struct pin *p = calloc(1, sizeof(*p));
                if (p) {
                        p->digest = *d;
                        *slot = p;
                        c->stats.pinned++;
                } else {
                        r = -ENOMEM;
                }
        } else if (!pinned && *slot) {
                struct pin *p = *slot;
                *slot = p->next;
                free(p);
                c->stats.pinned--;
                /* Evictable from now on: a store above its bounds sheds it at
                 * once, not at the next commit. */
                cache_evict_wake_locked(c);
        }
        struct blob_rec *b = r == 0 ? index_find(c, d) : NULL;
        if (b)
                b->pinned = pinned;
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- walking and verifying ------------------------------------------------------------ */

int cache_remove_blob(struct cache *c, const struct digest *d) {
        int r = cache_wait_ready(c, -1);
        if (r < 0)
                return r;
        pthread_mutex_lock(&c->lock);
        struct blob_rec *b = index_find(c, d);
        char path[CACHE_PATH_MAX];
        cache_blob_path(d, path);
        if (!b)
                r = -ENOENT;
        else if (b->pinned)
                r = -EBUSY;
        else if (unlinkat(c->root_fd, path, 0) < 0 && errno != ENOENT) /* a reader with it open keeps reading */
                r = -errno;
        else
                index_remove(c, b);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cache_foreach_blob(struct cache *c, int (*fn)(const struct digest *d, uint64_t size, bool pinned, void *userdata),
                       void *userdata) {
        int r = cache_wait_ready(c, -1);
        if (r < 0)
                return r;
        /* Copied under the lock, called without it: a slow fn (the admin
         * API's listing into a growing buffer) must not hold up every pull. */
        struct blob_row {
                struct digest digest;
                uint64_t size;
                bool pinned;
        };
        pthread_mutex_lock(&c->lock);
        size_t n = (size_t) c->stats.blobs, k = 0;
        struct blob_row *all = calloc(n ? n : 1, sizeof(*all));
        for (struct blob_rec *b = c->oldest; all && b && k < n; b = b->newer)
                all[k++] = (struct blob_row) { .digest = b->digest, .size = b->size, .pinned = b->pinned };
        pthread_mutex_unlock(&c->lock);
        if (!all)
                return -ENOMEM;
        for (size_t i = 0; i < k && r == 0; i++)
                r = fn(&all[i].digest, all[i].size, all[i].pinned, userdata);
        free(all);
        return r;
}

/* Hashes one stored blob; 1 when it matches its name, 0 when not, -errno. */
static int verify_one(struct cache *c, const struct digest *d, struct digest *ret_got) {
        int fd;
        uint64_t size;
        int r = open_blob_fd(c, d, &fd, &size); /* a check is not a use: recency stays */
        if (r < 0)
                return r;
        _cleanup_close_ int fd_owned = fd;
        _cleanup_(digester_freep) struct digester *h = NULL;
        r = digester_new(d->algorithm, &h);
        if (r < 0)
                return r;
        static const size_t chunk = 1 << 16;
        _cleanup_free_ unsigned char *buf = malloc(chunk);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd_owned, buf, chunk);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                r = digester_update(h, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
        r = digester_final(h, ret_got);
        if (r < 0)
                return r;
        return digest_equal(ret_got, d);
}

int cache_verify_blob(struct cache *c, const struct digest *d, uint64_t *ret_size) {
        struct digest got;
        uint64_t size;
        int r = cache_stat(c, d, &size);
        if (r < 0)
                return r;
        r = verify_one(c, d, &got);
        if (r < 0)
                return r;
        if (r == 0)
                return -EBADMSG;
        *ret_size = size;
        return 0;
}

int cache_verify(struct cache *c, void (*on_bad)(const struct digest *want, const struct digest *got, void *userdata),
                 void *userdata, uint64_t *ret_checked, uint64_t *ret_quarantined) {
        uint64_t checked = 0, quarantined = 0;
        int r = cache_wait_ready(c, -1);
        if (r < 0)
                return r;
        r = mkdirat_p(c->root_fd, "quarantine");
        if (r < 0)
                return r;
        /* The list is taken first: hashing runs without the lock, blob by blob. */
        pthread_mutex_lock(&c->lock);
        size_t n = (size_t) c->stats.blobs, k = 0;
        struct digest *all = calloc(n ? n : 1, sizeof(*all));
        for (struct blob_rec *b = c->oldest; all && b && k < n; b = b->newer)
                all[k++] = b->digest;
        pthread_mutex_unlock(&c->lock);
        if (!all)
                return -ENOMEM;
        for (size_t i = 0; i < k; i++) {
                struct digest got;
                int ok = verify_one(c, &all[i], &got);
                if (ok == -ENOENT)
                        continue; /* evicted meanwhile */
                if (ok < 0) {
                        free(all);
                        return ok;
                }
                checked++;
                if (ok)
                        continue;
                char path[CACHE_PATH_MAX], hex[DIGEST_HEX_MAX], dest[CACHE_PATH_MAX];
                cache_blob_path(&all[i], path);
                digest_hex(&all[i], hex);
                snprintf(dest, sizeof(dest), "quarantine/%s-%s", digest_algorithm_name(all[i].algorithm), hex);
                /* Out of blobs/ first, under the lock, so it is never served again. */
                pthread_mutex_lock(&c->lock);
                r = renameat(c->root_fd, path, c->root_fd, dest) < 0 ? -errno : 0;
                struct blob_rec *b = r == 0 ? index_find(c, &all[i]) : NULL;
                if (b)
                        index_remove(c, b);
                pthread_mutex_unlock(&c->lock);
                if (r < 0) {
                        free(all);
                        return r;
                }
                quarantined++;
                if (on_bad)
                        on_bad(&all[i], &got, userdata);
        }
        free(all);
        *ret_checked = checked;
        *ret_quarantined = quarantined;
        return 0;
}
