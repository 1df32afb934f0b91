/* SPDX-License-Identifier: Apache-2.0 */
/* The store: layout, single-flight downloads, follow readers, verify-then-
 * rename commits, start-up recovery. See cache.h for the contract. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "common/fsutil.h"
#include "common/macro.h"

/* "blobs/sha512/ab/" + 128 hex + NUL, and "tmp/sha512-<hex>.<n>". */
#define CACHE_PATH_MAX 192

enum entry_state {
        ENTRY_WRITING,
        ENTRY_COMMITTED,
        ENTRY_FAILED,
};

struct cache_entry {
        struct cache *cache;
        struct digest digest;
        int64_t expected_size;
        int fd;                      /* the download; renamed into blobs/ at commit, so it stays valid */
        char tmp_name[CACHE_PATH_MAX]; /* relative to the root */
        struct digester *hasher;     /* the writer's alone */
        bool finished;               /* the writer committed or aborted: the writer's alone */
        unsigned refs;               /* under cache->lock */
        struct cache_entry *next;    /* the in-flight list, under cache->lock */
        bool listed;                 /* on that list, under cache->lock */

        pthread_mutex_t lock;        /* guards written and state */
        pthread_cond_t progress;     /* signalled when either changes */
        uint64_t written;
        enum entry_state state;
};

struct cache_reader {
        struct cache_entry *entry;
        uint64_t offset;
};

struct cache {
        int root_fd;
        int lock_fd;
        pthread_mutex_t lock; /* guards everything below; taken before any entry's lock */
        struct cache_entry *in_flight;
        uint64_t tmp_counter;
        struct cache_stats stats;
};

static void blob_path(const struct digest *d, char buf[static CACHE_PATH_MAX]) {
        char hex[129];
        digest_hex(d, hex);
        snprintf(buf, CACHE_PATH_MAX, "blobs/%s/%.2s/%s", digest_algorithm_name(d->algorithm), hex, hex);
}

/* ---- opening ------------------------------------------------------------------- */

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

/* Partial downloads of a process that died: never served, so simply removed. */
static int clean_tmp(struct cache *c) {
        int fd = openat(c->root_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int e = errno;
                close(fd);
                return -e;
        }
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

/* Counts the blobs of one algorithm by their names and sizes: nothing is
 * re-hashed, because nothing enters blobs/ without being verified. Names that
 * are not a digest of this algorithm are ignored (and never served). */
static int count_blobs(struct cache *c, enum digest_algorithm a) {
        char path[CACHE_PATH_MAX];
        size_t hex_len = digest_size(a) * 2;
        snprintf(path, sizeof(path), "blobs/%s", digest_algorithm_name(a));
        int fd = openat(c->root_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        DIR *top = fdopendir(fd);
        if (!top) {
                int e = errno;
                close(fd);
                return -e;
        }
        struct dirent *de;
        while ((de = readdir(top))) {
                if (!is_hex(de->d_name, 2))
                        continue;
                int sub_fd = openat(dirfd(top), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (sub_fd < 0)
                        continue;
                DIR *sub = fdopendir(sub_fd);
                if (!sub) {
                        close(sub_fd);
                        continue;
                }
                struct dirent *be;
                while ((be = readdir(sub))) {
                        struct stat st;
                        if (!is_hex(be->d_name, hex_len) || strncmp(be->d_name, de->d_name, 2) != 0)
                                continue;
                        if (fstatat(dirfd(sub), be->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                                continue;
                        c->stats.blobs++;
                        c->stats.bytes += (uint64_t) st.st_size;
                }
                closedir(sub);
        }
        closedir(top);
        return 0;
}

int cache_open(const char *root, struct cache **ret, struct error_list *errors) {
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
        pthread_mutex_init(&c->lock, NULL);
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
        static const char *const dirs[] = { "blobs", "blobs/sha256", "blobs/sha512", "tmp" };
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
        for (int a = 0; a < _DIGEST_ALGORITHM_MAX; a++) {
                r = count_blobs(c, (enum digest_algorithm) a);
                if (r < 0) {
                        error_list_add(errors, 0, 0, "cannot read blobs/%s: %s",
                                       digest_algorithm_name((enum digest_algorithm) a), strerror(-r));
                        return r;
                }
        }
        *ret = TAKE_PTR(c);
        return 0;
}

struct cache *cache_close(struct cache *c) {
        if (!c)
                return NULL;
        if (c->lock_fd >= 0)
                close(c->lock_fd); /* releases the flock */
        if (c->root_fd >= 0)
                close(c->root_fd);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* ---- committed blobs --------------------------------------------------------------- */

int cache_open_blob(struct cache *c, const struct digest *d, int *ret_fd, uint64_t *ret_size) {
        char path[CACHE_PATH_MAX];
        blob_path(d, path);
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

int cache_stat(struct cache *c, const struct digest *d, uint64_t *ret_size) {
        char path[CACHE_PATH_MAX];
        struct stat st;
        blob_path(d, path);
        if (fstatat(c->root_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -ENOENT;
        *ret_size = (uint64_t) st.st_size;
        return 0;
}

/* ---- downloads --------------------------------------------------------------------- */

static void entry_free(struct cache_entry *e) {
        if (e->fd >= 0)
                close(e->fd);
        digester_free(e->hasher);
        pthread_cond_destroy(&e->progress);
        pthread_mutex_destroy(&e->lock);
        free(e);
}

/* Takes e off the in-flight list; c->lock held. */
static void unlist(struct cache *c, struct cache_entry *e) {
        for (struct cache_entry **p = &c->in_flight; *p; p = &(*p)->next)
                if (*p == e) {
                        *p = e->next;
                        e->listed = false;
                        return;
                }
}

static void set_state(struct cache_entry *e, enum entry_state s) {
        pthread_mutex_lock(&e->lock);
        e->state = s;
        pthread_cond_broadcast(&e->progress);
        pthread_mutex_unlock(&e->lock);
}

int cache_begin(struct cache *c, const struct digest *d, int64_t expected_size, struct cache_entry **ret,
                bool *ret_writer) {
        char path[CACHE_PATH_MAX], hex[129];
        struct stat st;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        for (struct cache_entry *e = c->in_flight; e; e = e->next)
                if (digest_equal(&e->digest, d)) {
                        e->refs++;
                        pthread_mutex_unlock(&c->lock);
                        *ret = e;
                        *ret_writer = false;
                        return 0;
                }
        blob_path(d, path);
        if (fstatat(c->root_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
                pthread_mutex_unlock(&c->lock);
                return -EEXIST;
        }
        struct cache_entry *e = calloc(1, sizeof(*e));
        if (!e) {
                pthread_mutex_unlock(&c->lock);
                return -ENOMEM;
        }
        e->cache = c;
        e->digest = *d;
        e->expected_size = expected_size;
        e->refs = 1;
        e->state = ENTRY_WRITING;
        pthread_mutex_init(&e->lock, NULL);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&e->progress, &attr);
        pthread_condattr_destroy(&attr);
        digest_hex(d, hex);
        snprintf(e->tmp_name, sizeof(e->tmp_name), "tmp/%s-%s.%llu", digest_algorithm_name(d->algorithm), hex,
                 (unsigned long long) ++c->tmp_counter);
        e->fd = openat(c->root_fd, e->tmp_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (e->fd < 0)
                r = -errno;
        if (r == 0)
                r = digester_new(d->algorithm, &e->hasher);
        if (r < 0) {
                if (e->fd >= 0)
                        (void) unlinkat(c->root_fd, e->tmp_name, 0);
                pthread_mutex_unlock(&c->lock);
                entry_free(e);
                return r;
        }
        e->next = c->in_flight;
        c->in_flight = e;
        e->listed = true;
        pthread_mutex_unlock(&c->lock);
        *ret = e;
        *ret_writer = true;
        return 0;
}

int cache_write(struct cache_entry *e, const void *data, size_t size) {
        uint64_t off = cache_entry_offset(e);
        if (e->finished)
                return -EINVAL;
        if (e->expected_size >= 0 && off + size > (uint64_t) e->expected_size)
                return -EFBIG;
        const char *p = data;
        size_t left = size;
        while (left > 0) {
                ssize_t n = pwrite(e->fd, p, left, (off_t) (off + (size - left)));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                left -= (size_t) n;
        }
        int r = digester_update(e->hasher, data, size);
        if (r < 0)
                return r;
        /* Readers only ever see bytes that are in the file. */
        pthread_mutex_lock(&e->lock);
        e->written += size;
        pthread_cond_broadcast(&e->progress);
        pthread_mutex_unlock(&e->lock);
        return 0;
}

uint64_t cache_entry_offset(struct cache_entry *e) {
        pthread_mutex_lock(&e->lock);
        uint64_t w = e->written;
        pthread_mutex_unlock(&e->lock);
        return w;
}

/* The end of a download that will not be stored: its file goes, readers learn. */
static void fail(struct cache_entry *e, bool mismatch) {
        struct cache *c = e->cache;
        e->finished = true;
        (void) unlinkat(c->root_fd, e->tmp_name, 0);
        pthread_mutex_lock(&c->lock);
        unlist(c, e);
        if (mismatch)
                c->stats.mismatched++;
        else
                c->stats.aborted++;
        pthread_mutex_unlock(&c->lock);
        set_state(e, ENTRY_FAILED);
}

int cache_commit(struct cache_entry *e, struct digest *ret_got) {
        struct cache *c = e->cache;
        char path[CACHE_PATH_MAX], dir[CACHE_PATH_MAX];
        struct digest got;
        int r;

        if (e->finished)
                return -EINVAL;
        uint64_t size = cache_entry_offset(e);
        if (e->expected_size >= 0 && size != (uint64_t) e->expected_size) {
                fail(e, true);
                return -EMSGSIZE;
        }
        r = digester_final(e->hasher, &got);
        if (r < 0) {
                fail(e, false);
                return r;
        }
        if (!digest_equal(&got, &e->digest)) {
                fail(e, true);
                if (ret_got)
                        *ret_got = got;
                return -EBADMSG;
        }
        /* Durable before visible: the data, then the name, then the directory. */
        blob_path(&e->digest, path);
        snprintf(dir, sizeof(dir), "%.*s", (int) (strrchr(path, '/') - path), path);
        r = fsync(e->fd) < 0 ? -errno : mkdirat_p(c->root_fd, dir);
        if (r == 0 && renameat(c->root_fd, e->tmp_name, c->root_fd, path) < 0)
                r = -errno;
        if (r == 0) {
                _cleanup_close_ int dfd = openat(c->root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0 || fsync(dfd) < 0)
                        r = -errno;
        }
        if (r < 0) {
                fail(e, false);
                return r;
        }
        e->finished = true;
        pthread_mutex_lock(&c->lock);
        unlist(c, e);
        c->stats.committed++;
        c->stats.blobs++;
        c->stats.bytes += size;
        pthread_mutex_unlock(&c->lock);
        set_state(e, ENTRY_COMMITTED);
        return 0;
}

void cache_abort(struct cache_entry *e) {
        if (!e->finished)
                fail(e, false);
}

struct cache_entry *cache_entry_unref(struct cache_entry *e) {
        if (!e)
                return NULL;
        struct cache *c = e->cache;
        pthread_mutex_lock(&c->lock);
        bool last = --e->refs == 0;
        pthread_mutex_unlock(&c->lock);
        if (!last)
                return NULL;
        /* Nobody holds it any more: a download still being written has no writer. */
        if (!e->finished)
                fail(e, false);
        entry_free(e);
        return NULL;
}

/* ---- follow readers ------------------------------------------------------------------ */

int cache_reader_new(struct cache_entry *e, struct cache_reader **ret) {
        struct cache_reader *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        pthread_mutex_lock(&e->cache->lock);
        e->refs++;
        pthread_mutex_unlock(&e->cache->lock);
        r->entry = e;
        *ret = r;
        return 0;
}

ssize_t cache_reader_read(struct cache_reader *r, void *buf, size_t size, int timeout_ms) {
        struct cache_entry *e = r->entry;
        struct timespec deadline;
        if (timeout_ms >= 0) {
                clock_gettime(CLOCK_MONOTONIC, &deadline);
                deadline.tv_sec += timeout_ms / 1000;
                deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
                if (deadline.tv_nsec >= 1000000000L) {
                        deadline.tv_sec++;
                        deadline.tv_nsec -= 1000000000L;
                }
        }
        pthread_mutex_lock(&e->lock);
        while (e->state == ENTRY_WRITING && r->offset == e->written) {
                int w = timeout_ms >= 0 ? pthread_cond_timedwait(&e->progress, &e->lock, &deadline)
                                        : pthread_cond_wait(&e->progress, &e->lock);
                if (w == ETIMEDOUT) {
                        pthread_mutex_unlock(&e->lock);
                        return -ETIMEDOUT;
                }
        }
        enum entry_state state = e->state;
        uint64_t avail = e->written - r->offset;
        pthread_mutex_unlock(&e->lock);
        /* A failed download's bytes are never good bytes, even those already in the file. */
        if (state == ENTRY_FAILED)
                return -EIO;
        if (avail == 0)
                return 0;
        size_t want = avail < size ? (size_t) avail : size;
        for (;;) {
                ssize_t n = pread(e->fd, buf, want, (off_t) r->offset);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO; /* the file is shorter than what was written: not ours to trust */
                r->offset += (uint64_t) n;
                return n;
        }
}

struct cache_reader *cache_reader_free(struct cache_reader *r) {
        if (!r)
                return NULL;
        cache_entry_unref(r->entry);
        free(r);
        return NULL;
}

void cache_get_stats(struct cache *c, struct cache_stats *ret) {
        pthread_mutex_lock(&c->lock);
        *ret = c->stats;
        ret->in_flight = 0;
        for (struct cache_entry *e = c->in_flight; e; e = e->next)
                ret->in_flight++;
        pthread_mutex_unlock(&c->lock);
}
