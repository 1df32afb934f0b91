/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Where an upstream connection goes, as a class of address: what decides
 * whether a redirect or a token realm may lead there (a registry on the
 * internet has no business sending layerd to the node's loopback, its link's
 * metadata service or the private network). Pure: no I/O, no libcurl.
 * Internal to fallback/. */

#include <stdbool.h>
#include <sys/socket.h>

enum fallback_addr_class {
        FALLBACK_ADDR_PUBLIC,     /* anything not below */
        FALLBACK_ADDR_LOOPBACK,   /* 127/8, 0/8, ::1, :: */
        FALLBACK_ADDR_LINK_LOCAL, /* 169.254/16, fe80::/10 */
        FALLBACK_ADDR_PRIVATE,    /* 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, fec0::/10 */
        _FALLBACK_ADDR_CLASS_MAX,
};

/* The class of an AF_INET or AF_INET6 address (IPv4-mapped IPv6 as its IPv4
 * address); any other family is FALLBACK_ADDR_LOOPBACK, the most guarded. */
enum fallback_addr_class fallback_addr_class(const struct sockaddr *sa);

/* The class of a numeric address as text ("10.1.2.3", "fe80::1", "::ffff:127.0.0.1");
 * -EINVAL when ip is not one. */
int fallback_addr_class_of_ip(const char *ip, enum fallback_addr_class *ret);

/* "public", "loopback", "link-local" or "private", for log lines. */
const char *fallback_addr_class_name(enum fallback_addr_class c);

/* The classes a hop away from an endpoint (a redirect, a token realm) may
 * connect to, as a mask of 1u << class: public ones always, the endpoint's own
 * class (it already is there: an endpoint on 127.0.0.1 may send layerd to
 * 127.0.0.1), every class when the spec allows it for the endpoint. */
unsigned fallback_addr_hop_mask(enum fallback_addr_class endpoint, bool allow_private);

/* Whether mask (fallback_addr_hop_mask()) lets a connection go to class c. */
static inline bool fallback_addr_allowed(unsigned mask, enum fallback_addr_class c) {
        return c >= 0 && c < _FALLBACK_ADDR_CLASS_MAX && (mask & (1u << c));
}
