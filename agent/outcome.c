/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/outcome.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int outcome_set(struct outcome *o, int error, const char *fmt, ...) {
        o->error = error;
        o->auth_refused = false;
        o->kind = error == 0          ? OUTCOME_FOUND
                  : error == -ENOENT  ? OUTCOME_NOT_FOUND
                  : error == -EINVAL  ? OUTCOME_BAD_REQUEST
                                      : OUTCOME_UNAVAILABLE;
        if (!fmt) {
                snprintf(o->reason, sizeof(o->reason), "%s", error ? strerror(-error) : "");
                return error;
        }
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(o->reason, sizeof(o->reason), fmt, ap);
        va_end(ap);
        return error;
}

bool outcome_status_not_found(int status) {
        return status == 404 || status == 401 || status == 403;
}

int outcome_from_upstream(struct outcome *o, int r, const struct fallback_response *fr) {
        if (r == -ETIMEDOUT)
                return outcome_set(o, r, "no upstream answered within the wait");
        if (r == -ENOBUFS)
                return outcome_set(o, r, OUTCOME_BUDGET_REASON);
        /* The chain's own errors are never the client's "not found" or "bad request". */
        if (r < 0)
                return outcome_set(o, r == -ENOENT || r == -EINVAL ? -EHOSTUNREACH : r, "%s", strerror(-r));
        if (fr->status == 200)
                return outcome_set(o, 0, NULL);
        if (outcome_status_not_found(fr->status)) {
                outcome_set(o, -ENOENT, "upstream answered %d", fr->status);
                o->auth_refused = fr->auth_refused;
                return o->error;
        }
        return outcome_set(o, -EHOSTUNREACH, "no upstream answered: %s", fr->error[0] ? fr->error : "unavailable");
}
