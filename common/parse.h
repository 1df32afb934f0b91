/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Strict parsers for the small value types of configuration and requests.
 * All return 0 or -EINVAL/-ERANGE and write *ret only on success; none accept
 * leading or trailing whitespace, signs, or empty input. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decimal digits only, value <= max. */
int parse_uint(const char *s, uint64_t max, uint64_t *ret);

/* A TCP port, 1..65535. */
int parse_port(const char *s, uint16_t *ret);
#define PORT_TEXT_MAX 8 /* a port as text, ":65535" and its NUL */

/* Bytes: an integer with an optional unit, binary (K, Ki, KiB ... T, TiB: powers
 * of 1024) or decimal (KB, MB, GB, TB: powers of 1000); "B" is bytes. */
int parse_size(const char *s, uint64_t *ret);

/* A duration as one or more <integer><unit> terms (units ms, s, m, h, d), e.g.
 * "1h30m", in milliseconds; a unit is required. */
int parse_duration_ms(const char *s, uint64_t *ret);

/* Writes the shortest exact form: "20GiB", "1500B"; returns snprintf's result. */
int format_size(uint64_t bytes, char *buf, size_t size);

/* Writes "1h30m", "250ms", "0s"; returns snprintf's result. */
int format_duration_ms(uint64_t ms, char *buf, size_t size);

/* RFC 1123 host name: dot-separated labels of [A-Za-z0-9-], 1..63 bytes each,
 * no leading or trailing '-', 253 bytes in all; a trailing dot is refused. */
bool hostname_is_valid(const char *s);

/* Splits "host", "host:port", "1.2.3.4:port" or "[v6]:port". The host must be a
 * valid host name, IPv4 or bracketed IPv6 address; ret_host is the host without
 * brackets (caller frees); *ret_port is 0 when absent and port_required is false. */
int parse_host_port(const char *s, bool port_required, char **ret_host, uint16_t *ret_port);

struct url {
        char *scheme; /* "http" or "https", lower case */
        char *host;   /* lower case, IPv6 without brackets */
        uint16_t port; /* 0 when absent */
        char *path;   /* "" or "/a/b", no trailing '/' */
};

/* Parses an absolute http(s) URL with no user info, query or fragment.
 * On failure *ret_reason (when given) names the problem in a few words. */
int url_parse(const char *s, struct url *ret, const char **ret_reason);
void url_done(struct url *u);

/* Copies s into buf (truncated to size) with any user info of an http(s)
 * URL ("user:password@") replaced by "***@", so that a URL can be shown in an
 * error message without the secret in it. Returns true when something was hidden. */
bool url_redact(const char *s, char *buf, size_t size);

/* The canonical text: scheme://host[:port]path, the port dropped when it is the
 * scheme's default, IPv6 in brackets. Returns NULL on allocation failure. */
char *url_to_string(const struct url *u);
