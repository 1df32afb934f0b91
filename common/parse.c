/* SPDX-License-Identifier: Apache-2.0 */
#include "common/parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"

/* Reads leading decimal digits; *end points past them. -EINVAL when there are none. */
static int read_digits(const char *s, const char **end, uint64_t *ret) {
        uint64_t v = 0;
        const char *p = s;
        if (!isdigit((unsigned char) *p))
                return -EINVAL;
        for (; isdigit((unsigned char) *p); p++) {
                unsigned d = (unsigned) (*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *end = p;
        *ret = v;
        return 0;
}

int parse_uint(const char *s, uint64_t max, uint64_t *ret) {
        const char *end;
        uint64_t v;
        int r = read_digits(s, &end, &v);
        if (r < 0)
                return r;
        if (*end != '\0')
                return -EINVAL;
        if (v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int parse_port(const char *s, uint16_t *ret) {
        uint64_t v;
        int r = parse_uint(s, 65535, &v);
        if (r < 0)
                return r;
        if (v == 0)
                return -ERANGE;
        *ret = (uint16_t) v;
        return 0;
}

static int mul_checked(uint64_t a, uint64_t b, uint64_t *ret) {
        if (b != 0 && a > UINT64_MAX / b)
                return -ERANGE;
        *ret = a * b;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = {
                { "", 1 },
                { "B", 1 },
                { "K", 1ULL << 10 },
                { "Ki", 1ULL << 10 },
                { "KiB", 1ULL << 10 },
                { "KB", 1000ULL },
                { "M", 1ULL << 20 },
                { "Mi", 1ULL << 20 },
                { "MiB", 1ULL << 20 },
                { "MB", 1000ULL * 1000 },
                { "G", 1ULL << 30 },
                { "Gi", 1ULL << 30 },
                { "GiB", 1ULL << 30 },
                { "GB", 1000ULL * 1000 * 1000 },
                { "T", 1ULL << 40 },
                { "Ti", 1ULL << 40 },
                { "TiB", 1ULL << 40 },
                { "TB", 1000ULL * 1000 * 1000 * 1000 },
        };
        const char *end;
        uint64_t v;
        int r = read_digits(s, &end, &v);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(end, units[i].suffix) == 0) {
                        r = mul_checked(v, units[i].factor, &v);
                        if (r < 0)
                                return r;
                        *ret = v;
                        return 0;
                }
        return -EINVAL;
}

int parse_duration_ms(const char *s, uint64_t *ret) {
        static const struct {
                const char *unit;
                uint64_t ms;
        } units[] = {
                /* "ms" before "m" so the longer unit wins. */
                { "ms", 1 },
                { "s", 1000 },
                { "m", 60ULL * 1000 },
                { "h", 3600ULL * 1000 },
                { "d", 86400ULL * 1000 },
        };
        uint64_t total = 0;
        const char *p = s;
        if (*p == '\0')
                return -EINVAL;
        while (*p != '\0') {
                uint64_t v, term;
                int r = read_digits(p, &p, &v);
                if (r < 0)
                        return r;
                size_t i;
                for (i = 0; i < ELEMENTSOF(units); i++) {
                        size_t n = strlen(units[i].unit);
                        if (strncmp(p, units[i].unit, n) == 0 && !isalpha((unsigned char) p[n]))
                                break;
                }
                if (i == ELEMENTSOF(units))
                        return -EINVAL;
                p += strlen(units[i].unit);
                r = mul_checked(v, units[i].ms, &term);
                if (r < 0)
                        return r;
                if (total > UINT64_MAX - term)
                        return -ERANGE;
                total += term;
        }
        *ret = total;
        return 0;
}

int format_size(uint64_t bytes, char *buf, size_t size) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        size_t u = 0;
        while (u + 1 < ELEMENTSOF(units) && bytes != 0 && bytes % 1024 == 0) {
                bytes /= 1024;
                u++;
        }
        return snprintf(buf, size, "%llu%s", (unsigned long long) bytes, units[u]);
}

int format_duration_ms(uint64_t ms, char *buf, size_t size) {
        static const struct {
                const char *unit;
                uint64_t ms;
        } units[] = {
                { "d", 86400ULL * 1000 }, { "h", 3600ULL * 1000 }, { "m", 60ULL * 1000 },
                { "s", 1000 },            { "ms", 1 },
        };
        if (ms == 0)
                return snprintf(buf, size, "0s");
        size_t off = 0;
        int total = 0;
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                if (ms < units[i].ms)
                        continue;
                uint64_t n = ms / units[i].ms;
                ms %= units[i].ms;
                int w = snprintf(buf + off, off < size ? size - off : 0, "%llu%s",
                                 (unsigned long long) n, units[i].unit);
                if (w < 0)
                        return w;
                total += w;
                off = off + (size_t) w < size ? off + (size_t) w : size;
        }
        return total;
}

bool hostname_is_valid(const char *s) {
        size_t len = strlen(s);
        if (len == 0 || len > 253)
                return false;
        const char *label = s;
        for (const char *p = s;; p++) {
                if (*p == '.' || *p == '\0') {
                        size_t n = (size_t) (p - label);
                        if (n == 0 || n > 63 || label[0] == '-' || p[-1] == '-')
                                return false;
                        if (*p == '\0')
                                return true;
                        label = p + 1;
                } else if (!isalnum((unsigned char) *p) && *p != '-') {
                        return false;
                }
        }
}

int parse_host_port(const char *s, bool port_required, char **ret_host, uint16_t *ret_port) {
        _cleanup_free_ char *host = NULL;
        const char *port_text = NULL;
        uint16_t port = 0;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close)
                        return -EINVAL;
                host = strndup(s + 1, (size_t) (close - s - 1));
                if (!host)
                        return -ENOMEM;
                struct in6_addr a6;
                if (inet_pton(AF_INET6, host, &a6) != 1)
                        return -EINVAL;
                /* One spelling per address: "FD00:0::1" is "fd00::1". */
                char text[INET6_ADDRSTRLEN];
                if (!inet_ntop(AF_INET6, &a6, text, sizeof(text)))
                        return -EINVAL;
                free(host);
                host = strdup(text);
                if (!host)
                        return -ENOMEM;
                if (close[1] == ':')
                        port_text = close + 2;
                else if (close[1] != '\0')
                        return -EINVAL;
        } else {
                const char *colon = strchr(s, ':');
                if (colon && strchr(colon + 1, ':'))
                        return -EINVAL; /* an IPv6 address must be bracketed */
                host = colon ? strndup(s, (size_t) (colon - s)) : strdup(s);
                if (!host)
                        return -ENOMEM;
                if (colon)
                        port_text = colon + 1;
                /* A dotted quad is also a syntactically valid host name, so check
                 * it as an address first: 999.1.1.1 must not pass as a name. */
                struct in_addr a4;
                bool all_digits_and_dots = host[strspn(host, "0123456789.")] == '\0';
                if (all_digits_and_dots ? inet_pton(AF_INET, host, &a4) != 1 : !hostname_is_valid(host))
                        return -EINVAL;
        }
        /* Both branches: an IPv6 address may be written with upper-case hex digits. */
        for (char *p = host; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        if (port_text) {
                int r = parse_port(port_text, &port);
                if (r < 0)
                        return r;
        } else if (port_required) {
                return -EINVAL;
        }
        *ret_host = TAKE_PTR(host);
        *ret_port = port;
        return 0;
}

void url_done(struct url *u) {
        free(u->scheme);
        free(u->host);
        free(u->path);
        *u = (struct url) {};
}

int url_parse(const char *s, struct url *ret, const char **ret_reason) {
        const char *reason_dummy;
        const char **reason = ret_reason ? ret_reason : &reason_dummy;
        struct url u = {};
        const char *scheme;

        if (strncasecmp(s, "https://", 8) == 0)
                scheme = "https";
        else if (strncasecmp(s, "http://", 7) == 0)
                scheme = "http";
        else {
                *reason = strstr(s, "://") ? "scheme must be http or https" : "not a URL";
                return -EINVAL;
        }
        const char *auth = s + strlen(scheme) + 3;
        size_t auth_len = strcspn(auth, "/?#");
        const char *rest = auth + auth_len;
        if (memchr(auth, '@', auth_len)) {
                *reason = "user info in a URL is not allowed (use credentials_file)";
                return -EINVAL;
        }
        if (*rest == '?' || *rest == '#' || strpbrk(rest, "?#")) {
                *reason = "query or fragment in a URL is not allowed";
                return -EINVAL;
        }
        for (const char *p = rest; *p; p++)
                if ((unsigned char) *p <= ' ' || *p == '\\' || *p == '"' || (unsigned char) *p >= 0x7f) {
                        *reason = "invalid character in URL path";
                        return -EINVAL;
                }
        /* A final "/." or "/.." is a dot segment too: the trailing-slash
         * removal below would otherwise turn "/b/../" (refused) into "/b/..". */
        size_t rest_len = strlen(rest);
        bool dot_at_end = (rest_len >= 2 && strcmp(rest + rest_len - 2, "/.") == 0) ||
                          (rest_len >= 3 && strcmp(rest + rest_len - 3, "/..") == 0);
        if (strstr(rest, "/../") || strstr(rest, "/./") || strstr(rest, "//") || dot_at_end) {
                *reason = "URL path is not normalised";
                return -EINVAL;
        }
        _cleanup_free_ char *authority = strndup(auth, auth_len);
        if (!authority)
                return -ENOMEM;
        if (authority[0] == '\0') {
                *reason = "not a URL";
                return -EINVAL;
        }
        int r = parse_host_port(authority, false, &u.host, &u.port);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                *reason = "invalid host or port";
                return -EINVAL;
        }
        u.scheme = strdup(scheme);
        size_t path_len = strlen(rest);
        while (path_len > 0 && rest[path_len - 1] == '/')
                path_len--;
        u.path = strndup(rest, path_len);
        if (!u.scheme || !u.path) {
                url_done(&u);
                return -ENOMEM;
        }
        if ((strcmp(u.scheme, "https") == 0 && u.port == 443) || (strcmp(u.scheme, "http") == 0 && u.port == 80))
                u.port = 0;
        *ret = u;
        return 0;
}

char *url_to_string(const struct url *u) {
        char *s = NULL;
        bool v6 = strchr(u->host, ':') != NULL;
        char port[PORT_TEXT_MAX] = "";
        bool default_port = (strcmp(u->scheme, "https") == 0 && u->port == 443) ||
                            (strcmp(u->scheme, "http") == 0 && u->port == 80);
        if (u->port != 0 && !default_port)
                snprintf(port, sizeof(port), ":%u", u->port);
        if (asprintf(&s, "%s://%s%s%s%s%s", u->scheme, v6 ? "[" : "", u->host, v6 ? "]" : "", port, u->path) < 0)
                return NULL;
        return s;
}

bool url_redact(const char *s, char *buf, size_t size) {
        /* A string shown here is often malformed, so nothing about its shape is
         * trusted: without "://" the user info starts at the beginning, and the
         * last '@' anywhere ends it (a password may hold '@', and an unencoded '/'
         * is common in base64 tokens). Hiding an '@' in a path as well is the
         * price of never showing a secret. */
        const char *scheme_end = strstr(s, "://");
        const char *auth = scheme_end ? scheme_end + 3 : s;
        const char *at = strrchr(auth, '@');
        if (!at) {
                snprintf(buf, size, "%s", s);
                return false;
        }
        snprintf(buf, size, "%.*s***%s", (int) (auth - s), s, at);
        return true;
}
