/* SPDX-License-Identifier: Apache-2.0 */
/* The tag index: ROOT/tags/<registry>/<repository>/_tags/<tag>, one small text
 * file per tag ("digest\nmedia type\nsize\nfetched at\n"), replaced
 * atomically. Tags change upstream; digests never do, so this is the only
 * part of the cache that is ever rewritten. Recent records are also kept in
 * memory (memo.c), so a manifest request by tag needs no file read. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache-internal.h"
#include "common/buf.h"
#include "common/fsutil.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/reference.h"

#define TAG_RECORD_MAX 512

/* Validates every part of a record's name (none can hold "..", a leading '.',
 * or a '/' outside the repository's own; name is a tag or what
 * referrers_name() made) and returns the registry's one spelling:
 * "Docker.IO" and "docker.io" share their tags. */
static int tag_registry(const char *registry, const char *repository, const char *name, char **ret) {
        _cleanup_free_ char *host = NULL;
        uint16_t port;
        if (strchr(registry, '/') || parse_host_port(registry, false, &host, &port) < 0 ||
            !reference_path_is_valid(repository) || !reference_tag_is_valid(name))
                return -EINVAL;
        bool v6 = strchr(host, ':') != NULL;
        char port_text[8] = "";
        if (port)
                snprintf(port_text, sizeof(port_text), ":%u", port);
        if (asprintf(ret, "%s%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "", port_text) < 0)
                return -ENOMEM;
        return 0;
}

/* Where records live beside a repository's: tags, and the referrers indexes of its manifests. */
enum record_dir {
        RECORD_TAGS,
        RECORD_REFERRERS,
};

static const char *const record_dirs[] = { [RECORD_TAGS] = "_tags", [RECORD_REFERRERS] = "_referrers" };

/* ROOT/tags/<registry>/<repository>/_tags/<tag>, from names tag_registry() checked. */
static int tag_path(struct cache *c, enum record_dir dir, const char *registry, const char *repository,
                    const char *tag, char **ret) {
        /* Tags live under "_tags": no repository component can start with '_',
         * so library/app:v1 and library/app/v1:latest never meet. */
        if (asprintf(ret, "%s/tags/%s/%s/%s/%s", cache_root_path(c), registry, repository, record_dirs[dir], tag) < 0)
                return -ENOMEM;
        return 0;
}

/* The memory's key for a checked name; false when too long to be remembered.
 * A tag has no '/': "_referrers/<name>" is no tag's key. */
static bool tag_key(enum record_dir dir, const char *registry, const char *repository, const char *tag,
                    char key[static CACHE_TAG_KEY_MAX]) {
        int n = snprintf(key, CACHE_TAG_KEY_MAX, "%s\n%s\n%s%s%s", registry, repository,
                         dir == RECORD_TAGS ? "" : record_dirs[dir], dir == RECORD_TAGS ? "" : "/", tag);
        return n >= 0 && n < CACHE_TAG_KEY_MAX;
}

static bool media_type_is_valid(const char *s) {
        /* type "/" subtype, RFC 6838 restricted names, with "+suffix" and parameters left out. */
        size_t n = strlen(s);
        if (n == 0 || n >= CACHE_MEDIA_TYPE_MAX || !strchr(s, '/'))
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr("!#$&-^_.+/", *p)))
                        return false;
        return true;
}

/* Writes a record where tag_path() says, creating its directories. */
static int write_record(char *path, const char *record, size_t size) {
        char *slash = strrchr(path, '/');
        *slash = '\0';
        int r = mkdir_p(path, 0755);
        *slash = '/';
        if (r < 0)
                return r;
        return write_file_atomic(path, record, size, 0644);
}

static int record_put(struct cache *c, enum record_dir dir, const char *registry, const char *repository,
                      const char *tag, const struct cache_tag *t) {
        _cleanup_free_ char *canonical = NULL, *path = NULL;
        char record[TAG_RECORD_MAX], digest[DIGEST_STRING_MAX], key[CACHE_TAG_KEY_MAX];
        int r = tag_registry(registry, repository, tag, &canonical);
        if (r < 0)
                return r;
        if (!media_type_is_valid(t->media_type))
                return -EINVAL;
        int n = snprintf(record, sizeof(record), "%s\n%s\n%" PRIu64 "\n%" PRId64 "\n", digest_to_string(&t->digest, digest),
                         t->media_type, t->size, t->fetched_at);
        if (n < 0 || (size_t) n >= sizeof(record))
                return -EINVAL;
        r = tag_path(c, dir, canonical, repository, tag, &path);
        if (r < 0)
                return r;
        /* This process is the cache's only writer (flock), so what it wrote
         * last is what the file holds: the memory is never stale. */
        bool remember = tag_key(dir, canonical, repository, tag, key);
        uint64_t version = remember ? cache_memo_tag_begin(cache_memo(c), key) : 0;
        r = write_record(path, record, (size_t) n);
        if (remember)
                cache_memo_tag_settle(cache_memo(c), key, version, r == 0 ? t : NULL);
        return r;
}

/* Reads and checks the record at path. */
static int read_record(const char *path, struct cache_tag *ret) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r = read_file_bounded(path, TAG_RECORD_MAX, &text, &size);
        if (r == -EFBIG || r == -EINVAL)
                return -EBADMSG;
        if (r < 0)
                return r;
        /* Four lines, each checked: a damaged record is never half believed. */
        char *lines[4];
        char *p = text;
        for (int i = 0; i < 4; i++) {
                char *nl = strchr(p, '\n');
                if (!nl)
                        return -EBADMSG;
                *nl = '\0';
                lines[i] = p;
                p = nl + 1;
        }
        struct cache_tag t = {};
        uint64_t at;
        bool negative = lines[3][0] == '-';
        if (*p != '\0' || digest_parse(lines[0], &t.digest) < 0 || !media_type_is_valid(lines[1]) ||
            parse_uint(lines[2], UINT64_MAX, &t.size) < 0 || parse_uint(lines[3] + negative, INT64_MAX, &at) < 0)
                return -EBADMSG;
        snprintf(t.media_type, sizeof(t.media_type), "%s", lines[1]);
        t.fetched_at = negative ? -(int64_t) at : (int64_t) at;
        *ret = t;
        return 0;
}

static int record_get(struct cache *c, enum record_dir dir, const char *registry, const char *repository,
                      const char *tag, struct cache_tag *ret) {
        _cleanup_free_ char *canonical = NULL, *path = NULL;
        char key[CACHE_TAG_KEY_MAX];
        int r = tag_registry(registry, repository, tag, &canonical);
        if (r < 0)
                return r;
        uint64_t version = 0;
        bool remember = tag_key(dir, canonical, repository, tag, key);
        if (remember && cache_memo_tag_get(cache_memo(c), key, ret, &version) == 0)
                return 0;
        r = tag_path(c, dir, canonical, repository, tag, &path);
        if (r < 0)
                return r;
        struct cache_tag t;
        r = read_record(path, &t);
        if (r < 0)
                return r;
        if (remember)
                cache_memo_tag_settle(cache_memo(c), key, version, &t);
        *ret = t;
        return 0;
}

int cache_tag_get(struct cache *c, const char *registry, const char *repository, const char *tag,
                  struct cache_tag *ret) {
        return record_get(c, RECORD_TAGS, registry, repository, tag, ret);
}

int cache_tag_put(struct cache *c, const char *registry, const char *repository, const char *tag,
                  const struct cache_tag *t) {
        return record_put(c, RECORD_TAGS, registry, repository, tag, t);
}

/* "sha256-<hex>", the tag schema's name for a subject (a valid tag); a
 * sha512 digest is longer than a tag may be, so its name is cut to the
 * tag's 128 characters (still 121 hex digits: no two subjects meet). */
static void referrers_name(const struct digest *subject, char name[static DIGEST_STRING_MAX]) {
        digest_to_string(subject, name);
        *strchr(name, ':') = '-';
        name[128] = '\0'; /* the distribution grammar's longest tag */
}

int cache_referrers_get(struct cache *c, const char *registry, const char *repository, const struct digest *subject,
                        struct cache_tag *ret) {
        char name[DIGEST_STRING_MAX];
        referrers_name(subject, name);
        return record_get(c, RECORD_REFERRERS, registry, repository, name, ret);
}

int cache_referrers_put(struct cache *c, const char *registry, const char *repository, const struct digest *subject,
                        const struct cache_tag *t) {
        char name[DIGEST_STRING_MAX];
        referrers_name(subject, name);
        return record_put(c, RECORD_REFERRERS, registry, repository, name, t);
}

int cache_tag_list(struct cache *c, const char *registry, const char *repository, size_t max, char ***ret_tags,
                   size_t *ret_n) {
        _cleanup_free_ char *canonical = NULL, *path = NULL;
        int r = tag_registry(registry, repository, "x", &canonical);
        if (r < 0)
                return r;
        r = tag_path(c, RECORD_TAGS, canonical, repository, "x", &path);
        if (r < 0)
                return r;
        path[strlen(path) - 2] = '\0'; /* the _tags directory */
        DIR *d = opendir(path);        /* glibc opens it O_CLOEXEC */
        if (!d)
                return errno == ENOENT ? -ENOENT : -errno;
        char **v = NULL;
        size_t n = 0, cap = 0;
        r = 0;
        for (struct dirent *de; (de = readdir(d));) {
                /* Temporary files of atomic writes start with '.', which no tag can. */
                if (!reference_tag_is_valid(de->d_name))
                        continue;
                if (n == max)
                        break;
                r = ARRAY_RESERVE(v, &cap, n + 1, 16, SIZE_MAX);
                if (r < 0)
                        break;
                v[n] = strdup(de->d_name);
                if (!v[n]) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        closedir(d);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(v[i]);
                free(v);
                return r;
        }
        *ret_tags = v;
        *ret_n = n;
        return 0;
}

int cache_tag_remove(struct cache *c, const char *registry, const char *repository, const char *tag) {
        _cleanup_free_ char *canonical = NULL, *path = NULL;
        char key[CACHE_TAG_KEY_MAX];
        int r = tag_registry(registry, repository, tag, &canonical);
        if (r < 0)
                return r;
        r = tag_path(c, RECORD_TAGS, canonical, repository, tag, &path);
        if (r < 0)
                return r;
        bool remember = tag_key(RECORD_TAGS, canonical, repository, tag, key);
        uint64_t version = remember ? cache_memo_tag_begin(cache_memo(c), key) : 0;
        r = unlink(path) < 0 ? -errno : 0;
        if (remember)
                cache_memo_tag_settle(cache_memo(c), key, version, NULL); /* forgotten either way */
        return r;
}

/* ---- every tag record: ROOT/tags/<registry>/<repository...>/_tags/<tag> ---- */

#define TAG_WALK_DEPTH_MAX 64 /* repository components: the grammar has no bound, a store does */

struct tag_walk {
        struct cache *c;
        int (*fn)(const char *registry, const char *repository, const char *tag, const struct cache_tag *t,
                  void *userdata);
        void *userdata;
        struct buf path; /* "<registry>/<repository...>" under ROOT/tags */
};

static int walk_records(struct tag_walk *w, int fd_dir, size_t registry_len) {
        DIR *d = fdopendir(fd_dir);
        if (!d) {
                close(fd_dir);
                return -errno;
        }
        int r = 0;
        for (struct dirent *de; r == 0 && (de = readdir(d));) {
                if (!reference_tag_is_valid(de->d_name))
                        continue; /* ".", "..", an atomic write's temporary file */
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/tags/%s/_tags/%s", cache_root_path(w->c), buf_str(&w->path), de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                struct cache_tag t;
                r = read_record(path, &t);
                if (r == -ENOENT || r == -EBADMSG) {
                        r = 0; /* removed meanwhile, or damaged: cache_tag_get() treats it as unknown too */
                        continue;
                }
                if (r < 0)
                        break; /* unreadable: a caller deciding what is unused must not guess */
                _cleanup_free_ char *registry = strndup(buf_str(&w->path), registry_len);
                if (!registry) {
                        r = -ENOMEM;
                        break;
                }
                r = w->fn(registry, buf_str(&w->path) + registry_len + 1, de->d_name, &t, w->userdata);
        }
        closedir(d);
        return r;
}

static int walk_dir(struct tag_walk *w, int fd_dir, unsigned depth, size_t registry_len) {
        DIR *d = fdopendir(fd_dir);
        if (!d) {
                close(fd_dir);
                return -errno;
        }
        int r = 0;
        for (struct dirent *de; r == 0 && (de = readdir(d));) {
                if (de->d_name[0] == '.' || (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
                        continue;
                bool records = strcmp(de->d_name, record_dirs[RECORD_TAGS]) == 0;
                if (de->d_name[0] == '_' && !records)
                        continue; /* _referrers: records of another kind */
                if ((records && depth < 2) || (!records && depth >= TAG_WALK_DEPTH_MAX))
                        continue;
                int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
                        continue; /* removed meanwhile, or not a directory (DT_UNKNOWN, a symlink) */
                if (fd < 0) {
                        r = -errno;
                        break;
                }
                if (records) {
                        r = walk_records(w, fd, registry_len);
                        continue;
                }
                size_t len = w->path.len;
                r = buf_printf(&w->path, "%s%s", len ? "/" : "", de->d_name);
                if (r >= 0)
                        r = walk_dir(w, fd, depth + 1, depth == 0 ? w->path.len : registry_len);
                else
                        close(fd);
                w->path.len = len;
                if (w->path.data)
                        w->path.data[len] = '\0';
        }
        closedir(d);
        return r;
}

int cache_foreach_tag(struct cache *c,
                      int (*fn)(const char *registry, const char *repository, const char *tag, const struct cache_tag *t,
                                void *userdata),
                      void *userdata) {
        _cleanup_free_ char *root = NULL;
        if (asprintf(&root, "%s/tags", cache_root_path(c)) < 0)
                return -ENOMEM;
        int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        struct tag_walk w = { .c = c, .fn = fn, .userdata = userdata, .path = BUF_INIT(4096) };
        int r = walk_dir(&w, fd, 0, 0);
        buf_free(&w.path);
        return r;
}
