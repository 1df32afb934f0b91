/* SPDX-License-Identifier: Apache-2.0 */
#include "common/reference.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/macro.h"
#include "common/parse.h"

static bool is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* component := [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)* over [s, s+n). */
static bool component_is_valid(const char *s, size_t n) {
        size_t i = 0;
        if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
                return false;
        while (i < n) {
                if (is_lower_alnum(s[i])) {
                        i++;
                        continue;
                }
                size_t start = i;
                if (s[i] == '.') {
                        i++;
                } else if (s[i] == '_') {
                        i++;
                        if (i < n && s[i] == '_')
                                i++;
                } else if (s[i] == '-') {
                        while (i < n && s[i] == '-')
                                i++;
                } else {
                        return false;
                }
                if (i >= n || !is_lower_alnum(s[i]) || i == start)
                        return false;
        }
        return true;
}

bool reference_path_is_valid(const char *path) {
        size_t len = strlen(path);
        if (len == 0 || len > REFERENCE_NAME_MAX)
                return false;
        const char *c = path;
        for (;;) {
                const char *slash = strchr(c, '/');
                size_t n = slash ? (size_t) (slash - c) : strlen(c);
                if (!component_is_valid(c, n))
                        return false;
                if (!slash)
                        return true;
                c = slash + 1;
        }
}

bool reference_digest_is_valid(const char *digest) {
        struct digest d;
        return digest_parse(digest, &d) == 0;
}

static bool is_word(char c) {
        return isalnum((unsigned char) c) || c == '_';
}

bool reference_tag_is_valid(const char *tag) {
        size_t n = strlen(tag);
        if (n == 0 || n > 128 || !is_word(tag[0]))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!is_word(tag[i]) && tag[i] != '.' && tag[i] != '-')
                        return false;
        return true;
}

int reference_registry_namespace(const char *registry, char *buf, size_t size) {
        _cleanup_free_ char *host = NULL;
        uint16_t port;
        int r = parse_host_port(registry, false, &host, &port);
        if (r < 0)
                return r == -ENOMEM ? r : -EINVAL;
        char text[REFERENCE_NAME_MAX + 1], port_text[PORT_TEXT_MAX] = "";
        if (port)
                snprintf(port_text, sizeof(port_text), "_%u", port);
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) == 1) {
                /* In full: "::" would be an empty part, and a leading or trailing '_' no valid component. */
                const uint8_t *b = a6.s6_addr;
                snprintf(text, sizeof(text), "%x_%x_%x_%x_%x_%x_%x_%x%s", b[0] << 8 | b[1], b[2] << 8 | b[3],
                         b[4] << 8 | b[5], b[6] << 8 | b[7], b[8] << 8 | b[9], b[10] << 8 | b[11],
                         b[12] << 8 | b[13], b[14] << 8 | b[15], port_text);
        } else if (!port && !strchr(host, '.') && strcmp(host, "localhost") != 0) {
                /* "registry/app" is Docker Hub's registry/app to every client: never a namespace. */
                return -EINVAL;
        } else {
                /* memcpy: gcc -O2 cannot see that the length check bounds an snprintf (-Wformat-truncation). */
                size_t host_len = strlen(host), port_len = strlen(port_text);
                if (host_len + port_len >= sizeof(text))
                        return -ENAMETOOLONG;
                memcpy(text, host, host_len);
                memcpy(text + host_len, port_text, port_len + 1);
        }
        if (strlen(text) >= size)
                return -ENAMETOOLONG;
        memcpy(buf, text, strlen(text) + 1);
        return 0;
}

void reference_done(struct reference *r) {
        free(r->domain);
        free(r->path);
        free(r->tag);
        free(r->digest);
        *r = (struct reference) {};
}

int reference_parse(const char *s, bool want_tag, struct reference *ret, const char **ret_reason) {
        const char *reason_dummy;
        const char **reason = ret_reason ? ret_reason : &reason_dummy;
        _cleanup_free_ char *copy = strdup(s), *canonical_domain = NULL;
        struct reference r = {};
        int rc = -EINVAL;

        if (!copy)
                return -ENOMEM;
        char *at = strchr(copy, '@');
        if (at) {
                *at = '\0';
                if (!reference_digest_is_valid(at + 1)) {
                        *reason = "invalid digest (sha256:<64 hex> or sha512:<128 hex>)";
                        goto out;
                }
        }
        /* A tag is the part after the last ':' that has no '/' after it;
         * a ':' before a '/' is the domain's port. */
        char *last_slash = strrchr(copy, '/');
        char *colon = strrchr(last_slash ? last_slash : copy, ':');
        if (colon) {
                *colon = '\0';
                if (!reference_tag_is_valid(colon + 1)) {
                        *reason = "invalid tag";
                        goto out;
                }
        }
        if (!want_tag && (colon || at)) {
                *reason = "a repository takes no tag or digest";
                goto out;
        }

        char *slash = strchr(copy, '/');
        const char *domain = "docker.io", *path = copy;
        bool docker_hub = true;
        if (slash && (memchr(copy, '.', (size_t) (slash - copy)) || memchr(copy, ':', (size_t) (slash - copy)) ||
                      strncmp(copy, "localhost/", 10) == 0 || strncmp(copy, "localhost:", 10) == 0)) {
                *slash = '\0';
                domain = copy;
                path = slash + 1;
                _cleanup_free_ char *host = NULL;
                uint16_t port;
                if (parse_host_port(domain, false, &host, &port) < 0) {
                        *reason = "invalid registry host";
                        goto out;
                }
                /* One spelling per registry: lower case, IPv6 compressed, port
                 * without leading zeros ("Registry.Example.com:05000"). */
                bool v6 = strchr(host, ':') != NULL;
                char port_text[PORT_TEXT_MAX] = "";
                if (port)
                        snprintf(port_text, sizeof(port_text), ":%u", port);
                if (asprintf(&canonical_domain, "%s%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "", port_text) < 0) {
                        rc = -ENOMEM;
                        goto out;
                }
                domain = canonical_domain;
                docker_hub = strcmp(domain, "docker.io") == 0 || strcmp(domain, "index.docker.io") == 0;
                if (docker_hub)
                        domain = "docker.io";
        }
        if (!reference_path_is_valid(path)) {
                *reason = "invalid repository name (lower-case components separated by '/')";
                goto out;
        }
        /* distribution/reference checks the normalised name, "library/" included. */
        bool add_library = docker_hub && !strchr(path, '/');
        if (strlen(domain) + 1 + (add_library ? strlen("library/") : 0) + strlen(path) > REFERENCE_NAME_MAX) {
                *reason = "name longer than 255 characters";
                goto out;
        }
        r.domain = strdup(domain);
        if (add_library) {
                if (asprintf(&r.path, "library/%s", path) < 0)
                        r.path = NULL;
        } else {
                r.path = strdup(path);
        }
        if (colon)
                r.tag = strdup(colon + 1);
        else if (want_tag && !at)
                r.tag = strdup("latest");
        if (at)
                r.digest = strdup(at + 1);
        if (!r.domain || !r.path || (colon && !r.tag) || (want_tag && !at && !colon && !r.tag) ||
            (at && !r.digest)) {
                rc = -ENOMEM;
                goto out;
        }
        *ret = r;
        return 0;
out:
        reference_done(&r);
        return rc;
}

char *reference_to_string(const struct reference *r) {
        char *s = NULL;
        if (asprintf(&s, "%s/%s%s%s%s%s", r->domain, r->path, r->tag ? ":" : "", r->tag ? r->tag : "",
                     r->digest ? "@" : "", r->digest ? r->digest : "") < 0)
                return NULL;
        return s;
}
