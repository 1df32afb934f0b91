/* SPDX-License-Identifier: Apache-2.0 */
/* Request path and ns parsing for the pull API (agent/route.h). The grammar
 * is the distribution spec's: /v2/<name>/{manifests,blobs}/<reference> and
 * /v2/<name>/tags/list, where <name> may itself contain "manifests" or
 * "blobs" components. libmicrohttpd hands over the path already
 * percent-decoded, so "%2e%2e" arrives here as ".." and "%" only as itself. */
#include "agent/route.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/macro.h"
#include "common/parse.h"

#define TAGS_SUFFIX "/tags/list"
#define NS_MAX 256 /* what the request log keeps of an ns */

static int fail(struct route_match *r, int errnum, unsigned status, const char *code, const char *message) {
        r->error = (struct route_error) { .status = status, .code = code, .message = message };
        return errnum;
}

static int no_route(struct route_match *r) {
        r->kind = ROUTE_OTHER;
        return fail(r, -ENOENT, 404, "NOT_FOUND", "no such route");
}

static const char *last_of(const char *s, const char *key) {
        const char *at = NULL;
        for (const char *q = strstr(s, key); q; q = strstr(q + 1, key))
                at = q;
        return at;
}

/* "<name>/<kind>/<ref>": name and ref point into path (NUL-terminated in place). */
static bool split_api_path(char *path, const char *kind, char **ret_name, char **ret_ref) {
        char key[16];
        snprintf(key, sizeof(key), "/%s/", kind);
        char *at = (char *) last_of(path, key); /* the last one: a repository may itself contain "blobs" */
        if (!at || at == path)
                return false;
        *at = '\0';
        *ret_name = path;
        *ret_ref = at + strlen(key);
        return true;
}

/* host[:port] as a registry is named (what ?ns= carries). */
static bool ns_is_valid(const char *ns) {
        _cleanup_free_ char *host = NULL;
        uint16_t port = 0;
        return strlen(ns) < NS_MAX && parse_host_port(ns, false, &host, &port) == 0;
}

int route_parse(const char *url, const char *ns, const char *default_registry, struct route_match *ret) {
        *ret = (struct route_match) { .kind = ROUTE_OTHER };
        if (strcmp(url, "/v2/") == 0 || strcmp(url, "/v2") == 0) {
                ret->kind = ROUTE_V2;
                return 0;
        }
        bool ready = strcmp(url, "/readyz") == 0;
        if (ready || strcmp(url, "/healthz") == 0) {
                ret->kind = ROUTE_HEALTH;
                ret->ready = ready;
                return 0;
        }
        if (strcmp(url, "/metrics") == 0) {
                ret->kind = ROUTE_METRICS;
                return 0;
        }
        if (strncmp(url, "/v2/", 4) != 0 || strlen(url) > ROUTE_URL_MAX)
                return no_route(ret);

        char path[ROUTE_URL_MAX + 1];
        snprintf(path, sizeof(path), "%s", url + 4);
        char *name = NULL, *ref = NULL;
        /* The kind is the keyword that comes last: "org/manifests" is a valid repository. */
        const char *m = last_of(path, "/manifests/"), *b = last_of(path, "/blobs/");
        bool manifest = m && (!b || m > b);
        /* Referrers too by the last keyword: "<name>/referrers/<digest>". */
        const char *rf = last_of(path, "/referrers/");
        bool referrers = rf && (!m || rf > m) && (!b || rf > b);
        size_t plen = strlen(path), slen = strlen(TAGS_SUFFIX);
        bool tags = plen > slen && strcmp(path + plen - slen, TAGS_SUFFIX) == 0;
        if (tags) {
                path[plen - slen] = '\0';
                name = path;
        } else if (!split_api_path(path, referrers ? "referrers" : manifest ? "manifests" : "blobs", &name, &ref))
                return no_route(ret);
        ret->kind = tags ? ROUTE_TAGS : referrers ? ROUTE_REFERRERS : manifest ? ROUTE_MANIFEST : ROUTE_BLOB;

        /* The grammar admits no "..", no "%", no empty component: nothing can leave the cache root. */
        size_t name_len = strlen(name);
        if (name_len > REFERENCE_NAME_MAX || !reference_path_is_valid(name))
                return fail(ret, -EINVAL, 400, "NAME_INVALID", "invalid repository name");
        /* Fits (name[REFERENCE_NAME_MAX + 1]); memcpy, because gcc -O1 (the TSan build) cannot see that
         * the length check bounds an snprintf and fails the build with -Wformat-truncation. */
        memcpy(ret->name, name, name_len + 1);

        if (tags)
                ref = (char *) "tags/list"; /* for the log line */
        else if (digest_parse(ref, &ret->digest) == 0)
                ret->by_digest = true;
        else if (!manifest || referrers)
                return fail(ret, -EINVAL, 400, "DIGEST_INVALID", "invalid digest");
        else if (!reference_tag_is_valid(ref))
                return fail(ret, -EINVAL, 400, "MANIFEST_INVALID", "invalid tag or digest");
        snprintf(ret->reference, sizeof(ret->reference), "%s", ref);

        if (!ns || !ns[0])
                ns = default_registry;
        /* Anything a client sends goes into logs only once it is known to be a host name. */
        if (ns && !ns_is_valid(ns))
                return fail(ret, -EINVAL, 400, "NAME_INVALID", "ns is not a registry host");
        ret->registry = ns;
        return 0;
}

bool route_namespace(struct route_match *r, const char *(*lookup)(const char *component, void *ctx), void *ctx) {
        /* Every route with a repository: one left out would send its requests (and a
         * client's credentials, on a challenge) to the default registry. */
        if (r->kind != ROUTE_MANIFEST && r->kind != ROUTE_BLOB && r->kind != ROUTE_TAGS && r->kind != ROUTE_REFERRERS)
                return false;
        char *slash = strchr(r->name, '/');
        if (!slash)
                return false; /* "/v2/ghcr.io/manifests/x": the default registry's "ghcr.io", as before */
        char component[REFERENCE_NAME_MAX + 1];
        size_t n = (size_t) (slash - r->name);
        memcpy(component, r->name, n);
        component[n] = '\0';
        const char *registry = lookup(component, ctx);
        if (!registry)
                return false;
        /* The rest of a valid name is a valid name. */
        memmove(r->name, slash + 1, strlen(slash + 1) + 1);
        r->registry = registry;
        return true;
}

int route_repository(const struct route_match *r, const char *host, char *buf, size_t size) {
        const char *prefix = strcmp(host, "docker.io") == 0 && !strchr(r->name, '/') ? "library/" : "";
        if (strlen(prefix) + strlen(r->name) >= size)
                return -ENAMETOOLONG;
        snprintf(buf, size, "%s%s", prefix, r->name);
        return 0;
}
