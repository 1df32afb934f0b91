/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One HTTP exchange over libcurl with the deadlines layerd needs and libcurl
 * alone does not give precisely: connect (libcurl's own), response headers
 * within response_timeout_ms of the request being sent, and no gap of more
 * than idle_timeout_ms between body bytes. Redirects are not followed (the
 * caller decides what may go to another host). Internal to fallback/.
 *
 * Connection reuse across threads: libcurl's shared connection cache is not
 * thread-safe (curl known bug 11.11, still so in 7.88), so a client keeps a
 * pool of "lanes" instead, each a multi handle with its own connection
 * cache, lent to one exchange at a time and preferably to one for the same
 * host. DNS and TLS sessions are shared between lanes through a share
 * handle (those are thread-safe with lock callbacks). */

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "fallback/addr.h"

#define HTTP_CHALLENGE_MAX 8192
#define HTTP_REASON_MAX 160 /* http_response.reason, NUL included */
#define HTTP_LANES_IDLE_MAX 32 /* idle lanes (with their connections) kept */

struct http_client;
struct http_response;

struct http_request {
        const char *url;
        bool head;
        const struct curl_slist *headers; /* complete "Name: value" lines */
        const char *user_agent;
        const char *ca_file, *client_cert, *client_key;
        bool skip_verify;
        uint64_t connect_timeout_ms, response_timeout_ms, idle_timeout_ms;
        uint64_t deadline_ms; /* CLOCK_MONOTONIC ms bounding the whole exchange; 0: none */
        bool (*cancelled)(void *userdata); /* polled: true ends the exchange with -ECANCELED */
        void *cancel_userdata;
        const char *user, *password; /* Basic credentials, or NULL */
        /* A POST of this application/x-www-form-urlencoded body (post_size bytes), not copied; NULL: GET or HEAD. */
        const char *post_fields;
        size_t post_size;
        /* Body bytes of a 2xx answer (other bodies are dropped). A negative
         * errno aborts the exchange and is returned by http_perform(). */
        int (*on_body)(void *userdata, const void *data, size_t size);
        /* Once the final response's headers are complete (status >= 200, the
         * headers in resp), before any of its body; NULL: not told. */
        void (*on_head)(void *userdata, const struct http_response *resp);
        void *userdata; /* of on_body and on_head */
        /* Where the connection may go: when peer_checked, only to an address
         * whose class is in peer_mask (fallback_addr_hop_mask()), checked on the
         * address libcurl connects to (after DNS, so a name rebound to 127.0.0.1
         * does not slip through) and again on a reused connection. */
        bool peer_checked;
        unsigned peer_mask;
};

struct http_response {
        long status;            /* 0: no response headers */
        char *content_type;
        char *digest;           /* Docker-Content-Digest */
        char *location;
        char *content_range;
        char *link;             /* the first Link header (tag list pagination) */
        char *challenge;        /* every WWW-Authenticate value joined with ", " */
        int64_t content_length; /* -1: absent */
        int64_t retry_after_s;  /* -1: absent or not in seconds */
        int64_t ratelimit_limit, ratelimit_remaining; /* -1: absent */
        uint64_t body_bytes;    /* body bytes received (2xx only) */
        char reason[HTTP_REASON_MAX]; /* when http_perform() fails: what happened, for logs */
        char peer_ip[48];       /* the address the request went to ("" if none), a proxy's if one is used */
        enum fallback_addr_class peer_class; /* ... and its class */
};

/* Frees a header list, wiping each line first: one may be "Authorization: ...". */
void http_headers_free_wiped(struct curl_slist *l);

/* Performs the exchange. Returns 0 when a complete response was received
 * (any status; the body of a non-2xx one is not waited for beyond 16 KiB
 * or 1 s), -ETIMEDOUT (connect or response timeout, or deadline),
 * -ETIME (stalled in the body), -ECONNABORTED (connection broke; body
 * incomplete), -ECONNREFUSED, -EHOSTUNREACH (DNS/route), -EPROTO (TLS or
 * protocol error), -EPERM (the peer's address is not in req->peer_mask:
 * nothing was sent), the callback's errno, or -ENOMEM. The response's
 * headers are filled in whenever they arrived. */
int http_perform(struct http_client *c, const struct http_request *req, struct http_response *ret);

/* A client with an empty lane pool; -ENOMEM or -EIO (libcurl). */
int http_client_new(struct http_client **ret);
struct http_client *http_client_free(struct http_client *c);

void http_response_done(struct http_response *r);
