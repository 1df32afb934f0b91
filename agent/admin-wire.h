/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The admin API's wire, the parts layerd parses itself (the agent's side is
 * libmicrohttpd's): the reply an admin command gets over the unix socket,
 * and the query string a command's arguments travel in. Pure: no I/O. */

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define ADMIN_REPLY_HEAD_MAX (16 * 1024)        /* status line and headers */
#define ADMIN_REPLY_BODY_MAX (64 * 1024 * 1024) /* a command's output: `cache ls` of a large cache */
#define ADMIN_EXIT_HEADER "Layerd-Exit-Status"   /* the command's exit status (text replies) */
#define ADMIN_STDOUT_HEADER "Layerd-Stdout-Length" /* body = its standard output, then its errors */
/* In a request: "<st_dev>:<st_ino>" of the cache directory the command named;
 * an agent whose cache is another directory refuses it (409) unrun. */
#define ADMIN_CACHE_DIR_HEADER "Layerd-Cache-Dir-Id"

/* A reply as the command line uses it. Points into the parsed buffer. */
struct admin_reply {
        unsigned status;       /* HTTP status */
        int exit_status;       /* the header's, 0..255; -1 when absent */
        const char *out, *err; /* the command's standard output and errors (not NUL-terminated) */
        size_t out_len, err_len;
};

/* Parses a whole HTTP/1.1 reply read until the agent closed the connection:
 * status line, headers (ADMIN_REPLY_HEAD_MAX at most), a body of exactly
 * Content-Length bytes when it says so. Without the stdout header, the whole
 * body is out. Returns 0, or -EBADMSG for anything malformed or inconsistent. */
int admin_reply_parse(const char *data, size_t size, struct admin_reply *ret);

/* Appends "key=value" percent-encoded (RFC 3986 unreserved characters kept),
 * with '?' or '&' before it as b's content asks. Returns 0 or -EFBIG (past b's cap)/-ENOMEM. */
int admin_query_append(struct buf *b, const char *key, const char *value);
