/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/outcome.c: the one place where an answer of the
 * fallback chain (or the failure to get one) becomes what the pull core tells
 * a client or prefetch: found, not found (404, 401, 403: layerd holds the
 * credentials, the client can do no better on this host), unavailable (every
 * endpoint failed, a 5xx, no answer in time, shutdown) or a bad request, each
 * with the -errno of the in-process API and a reason for the log line. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/outcome.h"

/* o as it would be left by a previous use: every call must set all of it. */
static void dirty(struct outcome *o) {
        memset(o, 0x5a, sizeof(*o));
        o->reason[sizeof(o->reason) - 1] = '\0';
}

/* An answer of the chain: status, and the last endpoint's failure text. */
static struct fallback_response answer(int status, const char *error) {
        struct fallback_response fr = { .status = status, .size = -1 };
        snprintf(fr.error, sizeof(fr.error), "%s", error);
        return fr;
}

static void test_upstream_found(void **state) {
        (void) state;
        struct outcome o;
        struct fallback_response fr = answer(200, "");
        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, 0, &fr), 0);
        assert_int_equal(o.kind, OUTCOME_FOUND);
        assert_int_equal(o.error, 0);
        assert_string_equal(o.reason, "");
}

/* The origin's 401/403 (fallback's auth_refused) stays not found, marked so that a
 * registry with auth_passthrough challenges the client; a mirror's is not marked,
 * and outcome_set() clears the mark. */
static void test_upstream_auth_refused(void **state) {
        (void) state;
        struct outcome o;
        struct fallback_response fr = answer(401, "");
        fr.auth_refused = true;
        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, 0, &fr), -ENOENT);
        assert_int_equal(o.kind, OUTCOME_NOT_FOUND);
        assert_true(o.auth_refused);
        fr.auth_refused = false;
        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, 0, &fr), -ENOENT);
        assert_false(o.auth_refused);
        dirty(&o);
        outcome_set(&o, -ENOENT, NULL);
        assert_false(o.auth_refused);
}

/* 404, and 401/403 alike: not here, the client may try its next host. */
static void test_upstream_not_found(void **state) {
        (void) state;
        static const int statuses[] = { 404, 401, 403 };
        for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
                struct outcome o;
                struct fallback_response fr = answer(statuses[i], "ignored for an answer");
                char want[64];
                dirty(&o);
                assert_int_equal(outcome_from_upstream(&o, 0, &fr), -ENOENT);
                assert_int_equal(o.kind, OUTCOME_NOT_FOUND);
                assert_int_equal(o.error, -ENOENT);
                snprintf(want, sizeof(want), "upstream answered %d", statuses[i]);
                assert_string_equal(o.reason, want);
                assert_true(outcome_status_not_found(statuses[i]));
        }
        /* Nothing else is "not found". */
        static const int others[] = { 200, 206, 400, 405, 416, 429, 500, 502, 503, 0 };
        for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
                assert_false(outcome_status_not_found(others[i]));
}

/* The chain reports 503 when no endpoint answered; a 500 is the same verdict. */
static void test_upstream_unavailable(void **state) {
        (void) state;
        static const int statuses[] = { 500, 503 };
        for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
                struct outcome o;
                struct fallback_response fr = answer(statuses[i], "http://127.0.0.1:9/: connection refused");
                dirty(&o);
                assert_int_equal(outcome_from_upstream(&o, 0, &fr), -EHOSTUNREACH);
                assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
                assert_int_equal(o.error, -EHOSTUNREACH);
                assert_string_equal(o.reason, "no upstream answered: http://127.0.0.1:9/: connection refused");
        }
        /* No failure text: the reason still says something. */
        struct outcome o;
        struct fallback_response fr = answer(503, "");
        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, 0, &fr), -EHOSTUNREACH);
        assert_string_equal(o.reason, "no upstream answered: unavailable");
}

/* No answer reached: fallback_fetch()'s own errors. fr is not looked at. */
static void test_upstream_errors(void **state) {
        (void) state;
        struct fallback_response fr = answer(200, "");
        struct outcome o;

        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, -ETIMEDOUT, &fr), -ETIMEDOUT);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
        assert_string_equal(o.reason, "no upstream answered within the wait");

        /* An unknown registry is no "not found" of the content: unavailable. */
        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, -ENOENT, &fr), -EHOSTUNREACH);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
        assert_string_equal(o.reason, strerror(ENOENT));

        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, -ECANCELED, &fr), -ECANCELED);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
        assert_string_equal(o.reason, strerror(ECANCELED));

        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, -ENOMEM, &fr), -ENOMEM);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);

        /* The sink's errors (the cache refusing bytes) keep their errno. */
        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, -ENOSPC, &fr), -ENOSPC);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
        assert_string_equal(o.reason, strerror(ENOSPC));

        /* The chain's own -EINVAL is no client's bad request: unavailable. */
        dirty(&o);
        assert_int_equal(outcome_from_upstream(&o, -EINVAL, &fr), -EHOSTUNREACH);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
        assert_string_equal(o.reason, strerror(EINVAL));
}

static void test_set(void **state) {
        (void) state;
        struct outcome o;

        dirty(&o);
        assert_int_equal(outcome_set(&o, 0, NULL), 0);
        assert_int_equal(o.kind, OUTCOME_FOUND);
        assert_string_equal(o.reason, "");

        dirty(&o);
        assert_int_equal(outcome_set(&o, -ENOENT, "not in the cache"), -ENOENT);
        assert_int_equal(o.kind, OUTCOME_NOT_FOUND);
        assert_string_equal(o.reason, "not in the cache");

        dirty(&o);
        assert_int_equal(outcome_set(&o, -EINVAL, "bad %s %d", "digest", 7), -EINVAL);
        assert_int_equal(o.kind, OUTCOME_BAD_REQUEST);
        assert_string_equal(o.reason, "bad digest 7");

        /* NULL fmt: the errno's text. */
        static const int unavailable[] = { -EHOSTUNREACH, -ETIMEDOUT, -ECANCELED, -EBADMSG, -EIO, -ESHUTDOWN };
        for (size_t i = 0; i < sizeof(unavailable) / sizeof(unavailable[0]); i++) {
                dirty(&o);
                assert_int_equal(outcome_set(&o, unavailable[i], NULL), unavailable[i]);
                assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
                assert_int_equal(o.error, unavailable[i]);
                assert_string_equal(o.reason, strerror(-unavailable[i]));
        }

        /* A reason longer than the room is cut, terminated. */
        char long_text[OUTCOME_REASON_MAX * 2];
        memset(long_text, 'x', sizeof(long_text) - 1);
        long_text[sizeof(long_text) - 1] = '\0';
        dirty(&o);
        outcome_set(&o, -EIO, "%s", long_text);
        assert_int_equal(strlen(o.reason), OUTCOME_REASON_MAX - 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_upstream_found),
                cmocka_unit_test(test_upstream_not_found),
                cmocka_unit_test(test_upstream_auth_refused),
                cmocka_unit_test(test_upstream_unavailable),
                cmocka_unit_test(test_upstream_errors),
                cmocka_unit_test(test_set),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
