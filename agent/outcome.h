/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the pull core tells whoever asked (a client through http.c, or
 * prefetch): found, not found, unavailable or a bad request, with a reason.
 * The upstream's verdict becomes an outcome here, once; http.c maps an
 * outcome to a status code in one place (http_respond_outcome()), and the
 * in-process API returns its errno. Pure: no I/O, no transport. */

#include <stdbool.h>

#include "fallback/fallback.h"

#define OUTCOME_REASON_MAX 256
/* The reason of a request refused with -ENOBUFS: the memory budget is held by others. */
#define OUTCOME_BUDGET_REASON "memory budget for in-flight bodies exhausted (agent.max_inflight_memory)"

enum outcome_kind {
        OUTCOME_FOUND,
        OUTCOME_NOT_FOUND,   /* here or upstream: the client may try its next host */
        OUTCOME_UNAVAILABLE, /* nobody answered in time, or we cannot now: the next host, or later */
        OUTCOME_BAD_REQUEST, /* the request itself is wrong */
};

struct outcome {
        enum outcome_kind kind;
        int error;                       /* the -errno for the in-process API (0 when found) */
        char reason[OUTCOME_REASON_MAX]; /* for the client's error body and the log line */
        bool auth_refused; /* not found because the origin asked for credentials (or refused the
                            * ones sent): a registry with auth_passthrough challenges the client */
};

/* Sets *o; returns o->error. error: -ENOENT (not found), -EINVAL (bad
 * request), any other negative errno (unavailable), 0 (found). The reason is
 * printf-formatted; NULL fmt: the errno's text. */
int outcome_set(struct outcome *o, int error, const char *fmt, ...) _printf_(3, 4);

/* What an answer of the chain means (fallback_fetch() returned r and *fr):
 * 200 is found; 404 is not found, and so are 401 and 403 (layerd holds the
 * credentials: a client could not do better on this host); a failure of
 * every endpoint, a 5xx, no answer within the wait or an error of the chain
 * itself (r < 0) is unavailable (-EHOSTUNREACH, -ETIMEDOUT; -ECANCELED at
 * shutdown; -ENOBUFS past the memory budget; the sink's errno). Returns o->error. */
int outcome_from_upstream(struct outcome *o, int r, const struct fallback_response *fr);

/* True for the upstream statuses that mean "not here" (404, 401, 403). */
bool outcome_status_not_found(int status);
