/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/host.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

/* host[:port] or [v6][:port] split into the host (brackets and an IPv6
 * zone "%25eth0" dropped) and checked for a numeric port; false when malformed. */
static bool split_host(const char *s, char *out, size_t size, bool *ret_v6) {
        const char *end, *port;
        size_t len = strlen(s);
        *ret_v6 = s[0] == '[';
        if (*ret_v6) {
                end = strchr(s, ']');
                if (!end)
                        return false;
                s++;
                port = end + 1;
        } else {
                end = strchr(s, ':');
                if (!end)
                        end = s + len;
                port = end;
        }
        if (*port) {
                if (*port != ':' || !port[1] || strspn(port + 1, "0123456789") != strlen(port + 1) || strlen(port + 1) > 5)
                        return false;
        }
        size_t n = (size_t) (end - s);
        if (*ret_v6) {
                const char *zone = memchr(s, '%', n);
                if (zone)
                        n = (size_t) (zone - s);
        }
        if (n == 0 || n >= size)
                return false;
        memcpy(out, s, n);
        out[n] = '\0';
        return true;
}

static bool v4_is_loopback(const struct in_addr *a) {
        return (ntohl(a->s_addr) >> 24) == 127;
}

static bool v6_is_loopback(const struct in6_addr *a) {
        if (IN6_IS_ADDR_LOOPBACK(a))
                return true;
        struct in_addr v4;
        if (!IN6_IS_ADDR_V4MAPPED(a))
                return false;
        memcpy(&v4, a->s6_addr + 12, 4);
        return v4_is_loopback(&v4);
}

/* a (AF_INET) is the local address, itself or as ::ffff:a.b.c.d on a dual-stack socket. */
static bool same_v4(const struct in_addr *a, const struct sockaddr *local, socklen_t len) {
        if (local->sa_family == AF_INET && len >= (socklen_t) sizeof(struct sockaddr_in)) {
                struct sockaddr_in in;
                memcpy(&in, local, sizeof(in));
                return in.sin_addr.s_addr == a->s_addr;
        }
        if (local->sa_family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
                struct sockaddr_in6 in6;
                memcpy(&in6, local, sizeof(in6));
                return IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr) && memcmp(in6.sin6_addr.s6_addr + 12, &a->s_addr, 4) == 0;
        }
        return false;
}

static bool same_v6(const struct in6_addr *a, const struct sockaddr *local, socklen_t len) {
        if (local->sa_family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
                struct sockaddr_in6 in6;
                memcpy(&in6, local, sizeof(in6));
                return memcmp(&in6.sin6_addr, a, sizeof(*a)) == 0;
        }
        if (local->sa_family == AF_INET && IN6_IS_ADDR_V4MAPPED(a)) {
                struct in_addr v4;
                memcpy(&v4, a->s6_addr + 12, 4);
                return same_v4(&v4, local, len);
        }
        return false;
}

bool host_is_acceptable(const char *host, const struct sockaddr *local, socklen_t local_len) {
        char name[HOST_HEADER_MAX];
        bool v6;
        if (!host)
                return true; /* HTTP/1.0 without Host: no browser sends that */
        if (strlen(host) >= HOST_HEADER_MAX || !split_host(host, name, sizeof(name), &v6))
                return false;
        if (!v6) {
                struct in_addr a4;
                if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0)
                        return true;
                if (inet_pton(AF_INET, name, &a4) != 1)
                        return false; /* a name: only a browser's page would send one that points here */
                return v4_is_loopback(&a4) || (local && same_v4(&a4, local, local_len));
        }
        struct in6_addr a6;
        if (inet_pton(AF_INET6, name, &a6) != 1)
                return false;
        return v6_is_loopback(&a6) || (local && same_v6(&a6, local, local_len));
}
