/* SPDX-License-Identifier: Apache-2.0 */
#include "fallback/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

/* a is in host byte order. 0/8 is "this host" (Linux connects 0.0.0.0 to
 * the local host): loopback. */
static enum fallback_addr_class class_v4(uint32_t a) {
        if ((a >> 24) == 127 || (a >> 24) == 0)
                return FALLBACK_ADDR_LOOPBACK;
        if ((a >> 16) == ((169u << 8) | 254))
                return FALLBACK_ADDR_LINK_LOCAL;
        if ((a >> 24) == 10 || (a >> 20) == ((172u << 4) | 1) || (a >> 16) == ((192u << 8) | 168) ||
            (a >> 22) == ((100u << 2) | 1)) /* 100.64/10: carrier-grade NAT, often a cluster's own */
                return FALLBACK_ADDR_PRIVATE;
        return FALLBACK_ADDR_PUBLIC;
}

static enum fallback_addr_class class_v6(const struct in6_addr *a) {
        const uint8_t *b = a->s6_addr;
        static const uint8_t zero[16] = { 0 };
        if (IN6_IS_ADDR_V4MAPPED(a))
                /* ::ffff:127.0.0.1 reaches 127.0.0.1 on a dual-stack socket. */
                return class_v4((uint32_t) b[12] << 24 | (uint32_t) b[13] << 16 | (uint32_t) b[14] << 8 | b[15]);
        if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1)) /* :: and ::1 */
                return FALLBACK_ADDR_LOOPBACK;
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
                return FALLBACK_ADDR_LINK_LOCAL;
        if ((b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)) /* ULA, and the old site-local */
                return FALLBACK_ADDR_PRIVATE;
        return FALLBACK_ADDR_PUBLIC;
}

enum fallback_addr_class fallback_addr_class(const struct sockaddr *sa) {
        if (sa && sa->sa_family == AF_INET) {
                struct sockaddr_in in;
                memcpy(&in, sa, sizeof(in));
                return class_v4(ntohl(in.sin_addr.s_addr));
        }
        if (sa && sa->sa_family == AF_INET6) {
                struct sockaddr_in6 in6;
                memcpy(&in6, sa, sizeof(in6));
                return class_v6(&in6.sin6_addr);
        }
        return FALLBACK_ADDR_LOOPBACK;
}

int fallback_addr_class_of_ip(const char *ip, enum fallback_addr_class *ret) {
        struct in_addr a4;
        struct in6_addr a6;
        if (!ip)
                return -EINVAL;
        if (inet_pton(AF_INET, ip, &a4) == 1) {
                *ret = class_v4(ntohl(a4.s_addr));
                return 0;
        }
        if (inet_pton(AF_INET6, ip, &a6) == 1) {
                *ret = class_v6(&a6);
                return 0;
        }
        return -EINVAL;
}

const char *fallback_addr_class_name(enum fallback_addr_class c) {
        static const char *const names[_FALLBACK_ADDR_CLASS_MAX] = {
                [FALLBACK_ADDR_PUBLIC] = "public",
                [FALLBACK_ADDR_LOOPBACK] = "loopback",
                [FALLBACK_ADDR_LINK_LOCAL] = "link-local",
                [FALLBACK_ADDR_PRIVATE] = "private",
        };
        return c >= 0 && c < _FALLBACK_ADDR_CLASS_MAX ? names[c] : "?";
}

unsigned fallback_addr_hop_mask(enum fallback_addr_class endpoint, bool allow_private) {
        if (allow_private)
                return (1u << _FALLBACK_ADDR_CLASS_MAX) - 1;
        return 1u << FALLBACK_ADDR_PUBLIC | (endpoint >= 0 && endpoint < _FALLBACK_ADDR_CLASS_MAX ? 1u << endpoint : 0);
}
