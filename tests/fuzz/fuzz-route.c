/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the pull API's router (agent/route.c). The input is
 * "URL\nNS\nDEFAULT": the decoded request path, the ns parameter and
 * agent.default_registry; a missing line is an absent value. Besides "no
 * crash, no leak", it checks what dispatch() relies on: every outcome is one
 * of the three, with a well-formed answer; a route that parses rebuilds to
 * exactly its path from its name and reference; names, references and the
 * registry pass their validators, so nothing unchecked reaches a log line, a
 * cache path or an upstream; a namespaced path (route_namespace) is the same
 * route with its first component moved from the name to the registry. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/route.h"
#include "common/digest.h"
#include "common/parse.h"
#include "common/reference.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                               \
        do {                                                                    \
                fprintf(stderr, __VA_ARGS__);                                   \
                fputc('\n', stderr);                                            \
                abort();                                                        \
        } while (0)

static char *next_line(char *s) {
        char *nl = s ? strchr(s, '\n') : NULL;
        if (!nl)
                return NULL;
        *nl = '\0';
        return nl + 1;
}

static void check_error(const char *url, const struct route_match *m, int r) {
        const struct route_error *e = &m->error;
        if (!e->code || !e->message)
                FAIL("\"%s\": refused (%d) without a code or message", url, r);
        if (strpbrk(e->message, "\"\\") || strpbrk(e->code, "\"\\"))
                FAIL("\"%s\": error text needs escaping", url);
        if (r == -ENOENT) {
                if (m->kind != ROUTE_OTHER || e->status != 404 || strcmp(e->code, "NOT_FOUND") != 0)
                        FAIL("\"%s\": no route answered %u %s as kind %d", url, e->status, e->code, (int) m->kind);
                return;
        }
        if (m->kind != ROUTE_MANIFEST && m->kind != ROUTE_BLOB && m->kind != ROUTE_TAGS && m->kind != ROUTE_REFERRERS)
                FAIL("\"%s\": bad request on kind %d", url, (int) m->kind);
        if (e->status != 400 || (strcmp(e->code, "NAME_INVALID") != 0 && strcmp(e->code, "MANIFEST_INVALID") != 0 &&
                                 strcmp(e->code, "DIGEST_INVALID") != 0))
                FAIL("\"%s\": bad request answered %u %s", url, e->status, e->code);
        if (m->registry)
                FAIL("\"%s\": refused but names a registry", url);
        /* What validated before the refusal is logged: it must be valid. */
        if (m->name[0] && !reference_path_is_valid(m->name))
                FAIL("\"%s\": refused with invalid name \"%s\"", url, m->name);
        if (m->reference[0] && !m->name[0])
                FAIL("\"%s\": refused with a reference but no name", url);
}

static void check_api(const char *url, const char *ns, const char *dflt, const struct route_match *m) {
        if (strlen(m->name) > REFERENCE_NAME_MAX || !reference_path_is_valid(m->name))
                FAIL("\"%s\": invalid name \"%s\" routed", url, m->name);
        char rebuilt[ROUTE_URL_MAX + 64];
        if (m->kind == ROUTE_TAGS) {
                if (strcmp(m->reference, "tags/list") != 0 || m->by_digest)
                        FAIL("\"%s\": tag list with reference \"%s\"", url, m->reference);
                snprintf(rebuilt, sizeof(rebuilt), "/v2/%s/tags/list", m->name);
        } else {
                struct digest d;
                bool is_digest = digest_parse(m->reference, &d) == 0;
                if (is_digest != m->by_digest || (is_digest && !digest_equal(&d, &m->digest)))
                        FAIL("\"%s\": by_digest %d for reference \"%s\"", url, m->by_digest, m->reference);
                if ((m->kind == ROUTE_BLOB || m->kind == ROUTE_REFERRERS) && !m->by_digest)
                        FAIL("\"%s\": blob or referrers without a digest", url);
                if (!m->by_digest && !reference_tag_is_valid(m->reference))
                        FAIL("\"%s\": invalid tag \"%s\" routed", url, m->reference);
                snprintf(rebuilt, sizeof(rebuilt), "/v2/%s/%s/%s", m->name,
                         m->kind == ROUTE_BLOB        ? "blobs"
                         : m->kind == ROUTE_REFERRERS ? "referrers"
                                                      : "manifests",
                         m->reference);
        }
        if (strcmp(rebuilt, url) != 0)
                FAIL("\"%s\": routed as \"%s\"", url, rebuilt);

        const char *want = ns && ns[0] ? ns : dflt;
        if (m->registry != want)
                FAIL("\"%s\": registry is not ns or the default", url);
        if (m->registry) {
                char *host = NULL;
                uint16_t port;
                if (strlen(m->registry) > 255 || parse_host_port(m->registry, false, &host, &port) < 0)
                        FAIL("\"%s\": invalid registry \"%s\" routed", url, m->registry);
                free(host);
        }

        char repo[256];
        if (route_repository(m, "docker.io", repo, sizeof(repo)) == 0) {
                const char *bare = strchr(m->name, '/') ? repo : repo + strlen("library/");
                if (strcmp(bare, m->name) != 0 || (bare != repo && strncmp(repo, "library/", 8) != 0))
                        FAIL("\"%s\": Docker Hub repository \"%s\" for \"%s\"", url, repo, m->name);
        } else if (strchr(m->name, '/') || strlen(m->name) + strlen("library/") < sizeof(repo))
                FAIL("\"%s\": repository \"%s\" refused as too long", url, m->name);
}

/* Namespaced paths (route_namespace) for a request without ns: a spec that
 * mirrors these registries, by their path components. */
static const char *const namespaces[][2] = {
        { "ghcr.io", "ghcr.io" },
        { "registry.example.com_5000", "registry.example.com:5000" },
        { "localhost", "localhost" },
};

static const char *lookup(const char *component, void *ctx) {
        (void) ctx;
        for (size_t i = 0; i < sizeof(namespaces) / sizeof(namespaces[0]); i++)
                if (strcmp(component, namespaces[i][0]) == 0)
                        return namespaces[i][1];
        return NULL;
}

/* A namespaced route is the same route with the first component moved from
 * the name to the registry; any other is left exactly as it was. */
static void check_namespace(const char *url, const struct route_match *before) {
        struct route_match m = *before;
        if (!route_namespace(&m, lookup, NULL)) {
                if (strcmp(m.name, before->name) != 0 || m.registry != before->registry)
                        FAIL("\"%s\": no namespace, but the route changed", url);
                return;
        }
        if (!m.name[0] || !reference_path_is_valid(m.name) || strcmp(m.reference, before->reference) != 0 ||
            m.kind != before->kind)
                FAIL("\"%s\": namespaced as \"%s\"", url, m.name);
        const char *registry = NULL;
        for (size_t i = 0; i < sizeof(namespaces) / sizeof(namespaces[0]); i++) {
                size_t n = strlen(namespaces[i][0]);
                if (strncmp(before->name, namespaces[i][0], n) == 0 && before->name[n] == '/' &&
                    strcmp(before->name + n + 1, m.name) == 0)
                        registry = namespaces[i][1];
        }
        if (!registry || m.registry != registry)
                FAIL("\"%s\": namespace \"%s\" of \"%s\" is not the registry's", url, m.registry, before->name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* Paths over ROUTE_URL_MAX are refused at once: a little past it is enough. */
        if (size > 4096)
                return 0;
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        char *url = s, *ns = next_line(url), *dflt = next_line(ns);
        (void) next_line(dflt);

        struct route_match m;
        int r = route_parse(url, ns, dflt, &m);
        if (r == -ENOENT || r == -EINVAL)
                check_error(url, &m, r);
        else if (r != 0)
                FAIL("\"%s\": route_parse returned %d", url, r);
        else if (m.kind == ROUTE_MANIFEST || m.kind == ROUTE_BLOB || m.kind == ROUTE_TAGS ||
                 m.kind == ROUTE_REFERRERS) {
                check_api(url, ns, dflt, &m);
                check_namespace(url, &m);
        }
        else if (m.name[0] || m.reference[0] || m.registry || m.kind == ROUTE_OTHER ||
                 (m.kind == ROUTE_V2 && strcmp(url, "/v2/") != 0 && strcmp(url, "/v2") != 0) ||
                 (m.kind == ROUTE_HEALTH && strcmp(url, m.ready ? "/readyz" : "/healthz") != 0) ||
                 (m.kind == ROUTE_METRICS && strcmp(url, "/metrics") != 0))
                FAIL("\"%s\": fixed route %d is wrong", url, (int) m.kind);
        free(s);
        return 0;
}
