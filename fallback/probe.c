/* SPDX-License-Identifier: Apache-2.0 */
/* One GET of an endpoint's API root, the distribution spec's "API version
 * check" (end-1: GET /v2/), as a health check for `layerd doctor`. Nothing is
 * pulled and no credentials are sent: an answer of any kind shows that the
 * endpoint is reachable and speaks HTTP, and a registry that wants a token
 * says so with a 401. The request goes out as a fetch's would (TLS settings,
 * the spec's headers, ?ns= for a mirror), so a probe that passes means the
 * chain can reach the endpoint the same way. */
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/time.h"
#include "fallback/fallback.h"
#include "fallback/http.h"

#define PROBE_CONNECT_MS 5000   /* defaults as fallback_configure() has them */
#define PROBE_RESPONSE_MS 10000
#define PROBE_BODY_MS 1000      /* a /v2/ body is "{}": not waited for beyond this */

static void set_reason(struct fallback_probe_result *ret, const char *fmt, ...) _printf_(2, 3);
static void set_reason(struct fallback_probe_result *ret, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ret->reason, sizeof(ret->reason), fmt, ap);
        va_end(ap);
}

/* The API root's URL: .../v2/ (or .../ with override_path), plus ?ns= for a mirror. */
static char *probe_url(const struct fallback_endpoint_config *e, const char *registry) {
        char *ns = NULL, *url = NULL;
        if (!e->is_origin && registry) {
                ns = curl_easy_escape(NULL, registry, 0);
                if (!ns)
                        return NULL;
        }
        if (asprintf(&url, "%s%s/%s%s", e->url, e->override_path ? "" : "/v2", ns ? "?ns=" : "", ns ? ns : "") < 0)
                url = NULL;
        curl_free(ns);
        return url;
}

static void slist_free(struct curl_slist **l) {
        curl_slist_free_all(*l);
}

/* One GET of url with e's TLS settings, headers and timeouts. */
static int probe(const struct fallback_endpoint_config *e, const char *url, struct fallback_probe_result *ret) {
        struct http_client *client = NULL;
        struct http_response hr = { 0 };
        _cleanup_(slist_free) struct curl_slist *hdrs = NULL;
        int r;

        snprintf(ret->url, sizeof(ret->url), "%s", url);
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
                set_reason(ret, "not an http(s) URL");
                return -EINVAL;
        }
        for (size_t i = 0; i < e->n_headers; i++) {
                _cleanup_free_ char *line = NULL;
                struct curl_slist *l;
                if (asprintf(&line, "%s: %s", e->headers[i].name, e->headers[i].value) < 0 ||
                    !(l = curl_slist_append(hdrs, line))) {
                        set_reason(ret, "out of memory");
                        return -ENOMEM;
                }
                hdrs = l;
        }
        r = http_client_new(&client);
        if (r < 0) {
                set_reason(ret, "cannot set up libcurl");
                return r;
        }
        uint64_t connect_ms = e->connect_timeout_ms ? e->connect_timeout_ms : PROBE_CONNECT_MS;
        uint64_t response_ms = e->response_timeout_ms ? e->response_timeout_ms : PROBE_RESPONSE_MS;
        uint64_t start = time_now_ms();
        struct http_request rq = {
                .url = url,
                .headers = hdrs,
                .user_agent = "layerd",
                .ca_file = e->ca_file,
                .client_cert = e->client_cert,
                .client_key = e->client_key,
                .skip_verify = e->skip_verify,
                .connect_timeout_ms = connect_ms,
                .response_timeout_ms = response_ms,
                .idle_timeout_ms = PROBE_BODY_MS,
                /* A bound on the whole: connect, headers, and a short body. */
                .deadline_ms = start + connect_ms + response_ms + PROBE_BODY_MS,
        };
        r = http_perform(client, &rq, &hr);
        ret->elapsed_ms = time_now_ms() - start;
        /* The headers are the answer: a body cut short or slow changes nothing. */
        if (hr.status >= 200) {
                ret->status = (int) hr.status;
                r = 0;
                if (hr.status == 401)
                        set_reason(ret, "auth required");
                else if (hr.status < 200 || hr.status > 299)
                        set_reason(ret, "HTTP %ld", hr.status);
        } else {
                if (r == 0)
                        r = -EPROTO; /* cannot happen: a complete exchange has a status */
                set_reason(ret, "%s", hr.reason[0] ? hr.reason : strerror(-r));
        }
        http_response_done(&hr);
        http_client_free(client);
        return r;
}

int fallback_probe(const struct fallback_endpoint_config *e, const char *registry, struct fallback_probe_result *ret) {
        *ret = (struct fallback_probe_result) { 0 };
        if (!e || !e->url) {
                set_reason(ret, "no URL");
                return -EINVAL;
        }
        _cleanup_free_ char *url = probe_url(e, registry);
        if (!url) {
                set_reason(ret, "out of memory");
                return -ENOMEM;
        }
        return probe(e, url, ret);
}

int fallback_probe_path(const struct fallback_endpoint_config *e, const char *path, struct fallback_probe_result *ret) {
        *ret = (struct fallback_probe_result) { 0 };
        if (!e || !e->url || !path || path[0] != '/') {
                set_reason(ret, "no URL");
                return -EINVAL;
        }
        _cleanup_free_ char *url = NULL;
        if (asprintf(&url, "%s%s", e->url, path) < 0) {
                set_reason(ret, "out of memory");
                return -ENOMEM;
        }
        return probe(e, url, ret);
}
