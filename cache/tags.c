/* SPDX-License-Identifier: Apache-2.0 */
/* The tag index: ROOT/tags/<registry>/<repository>/_tags/<tag>, one small text
 * file per tag ("digest\nmedia type\nsize\nfetched at\n"), replaced
 * atomically. Tags change upstream; digests never do, so this is the only
 * part of the cache that is ever rewritten. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache-internal.h"
#include "common/fsutil.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/reference.h"

#define TAG_RECORD_MAX 512

/* Builds ROOT/tags/<registry>/<repository>/<tag> after validating every part:
 * none can hold "..", a leading '.', or a '/' outside the repository's own. */
static int tag_path(struct cache *c, const char *registry, const char *repository, const char *tag, char **ret) {
        _cleanup_free_ char *host = NULL;
        uint16_t port;
        if (strchr(registry, '/') || parse_host_port(registry, false, &host, &port) < 0 ||
            !reference_path_is_valid(repository) || !reference_tag_is_valid(tag))
                return -EINVAL;
        /* One spelling per registry: "Docker.IO" and "docker.io" share their tags. */
        bool v6 = strchr(host, ':') != NULL;
        char port_text[8] = "";
        if (port)
                snprintf(port_text, sizeof(port_text), ":%u", port);
        /* Tags live under "_tags": no repository component can start with '_',
         * so library/app:v1 and library/app/v1:latest never meet. */
        if (asprintf(ret, "%s/tags/%s%s%s%s/%s/_tags/%s", cache_root_path(c), v6 ? "[" : "", host, v6 ? "]" : "",
                     port_text, repository, tag) < 0)
                return -ENOMEM;
        return 0;
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

int cache_tag_put(struct cache *c, const char *registry, const char *repository, const char *tag,
                  const struct cache_tag *t) {
        _cleanup_free_ char *path = NULL;
        char record[TAG_RECORD_MAX], digest[DIGEST_STRING_MAX];
        int r = tag_path(c, registry, repository, tag, &path);
        if (r < 0)
                return r;
        if (!media_type_is_valid(t->media_type))
                return -EINVAL;
        int n = snprintf(record, sizeof(record), "%s\n%s\n%" PRIu64 "\n%" PRId64 "\n", digest_to_string(&t->digest, digest),
                         t->media_type, t->size, t->fetched_at);
        if (n < 0 || (size_t) n >= sizeof(record))
                return -EINVAL;
        char *slash = strrchr(path, '/');
        *slash = '\0';
        r = mkdir_p(path, 0755);
        *slash = '/';
        if (r < 0)
                return r;
        return write_file_atomic(path, record, (size_t) n, 0644);
}

int cache_tag_get(struct cache *c, const char *registry, const char *repository, const char *tag,
                  struct cache_tag *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t size;
        int r = tag_path(c, registry, repository, tag, &path);
        if (r < 0)
                return r;
        r = read_file_bounded(path, TAG_RECORD_MAX, &text, &size);
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

int cache_tag_list(struct cache *c, const char *registry, const char *repository, size_t max, char ***ret_tags,
                   size_t *ret_n) {
        _cleanup_free_ char *path = NULL;
        int r = tag_path(c, registry, repository, "x", &path);
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
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        char **nv = realloc(v, ncap * sizeof(char *));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        cap = ncap;
                }
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
