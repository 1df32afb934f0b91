/* SPDX-License-Identifier: Apache-2.0 */
/* fallback_probe() against real peers on 127.0.0.1: the fixture registry
 * (tests/fixtures/upstream.py) open and with Basic auth, a refusing port and
 * one that never answers. What the fixture saw is asserted as well (the
 * path with ?ns= for a mirror, the spec's headers, no Authorization). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"
#include "tests/unit/fallback/fixture.h"

#include "fallback/fallback.h"

#define FAST_MS 300
#define SLOW_MS 10000 /* for answers that must come, under valgrind too */

static struct {
        struct upstream up;
        struct hole refuse, hang;
} env;

static int group_setup(void **state) {
        (void) state;
        assert_int_equal(fallback_global_init(), 0);
        upstream_spawn(&env.up);
        upstream_wait_ready(&env.up);
        hole_open(&env.refuse, false);
        hole_open(&env.hang, true);
        return 0;
}

static int group_teardown(void **state) {
        (void) state;
        upstream_stop(&env.up);
        hole_close(&env.refuse);
        hole_close(&env.hang);
        fallback_global_done();
        return 0;
}

static int reset(void **state) {
        (void) state;
        upstream_reset(&env.up);
        hole_drain(&env.hang);
        return 0;
}

static struct fallback_endpoint_config endpoint(const char *url, bool is_origin) {
        return (struct fallback_endpoint_config) { .url = url, .is_origin = is_origin, .connect_timeout_ms = SLOW_MS,
                                                   .response_timeout_ms = SLOW_MS, .idle_timeout_ms = SLOW_MS };
}

static void test_ok(void **state) {
        (void) state;
        static const struct fallback_header headers[] = { { "X-Probe", "yes" } };
        struct fallback_endpoint_config e = endpoint(env.up.url, true);
        e.headers = headers;
        e.n_headers = 1;
        struct fallback_probe_result res;
        assert_int_equal(fallback_probe(&e, "registry.test", &res), 0);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.reason, "");
        assert_true(res.elapsed_ms < SLOW_MS);
        char want[128];
        snprintf(want, sizeof(want), "%s/v2/", env.up.url);
        assert_string_equal(res.url, want);

        json_auto_t *log = upstream_log(&env.up);
        assert_int_equal(json_array_size(log), 1);
        assert_string_equal(log_method(log, 0), "GET");
        assert_string_equal(log_path(log, 0), "/v2/"); /* the origin: no ns */
        assert_string_equal(log_header(log, 0, "x-probe"), "yes");
        assert_null(log_header(log, 0, "authorization"));
}

/* A mirror gets ?ns=, as a fetch does; override_path asks the URL itself. */
static void test_mirror_ns_and_override_path(void **state) {
        (void) state;
        struct fallback_endpoint_config e = endpoint(env.up.url, false);
        struct fallback_probe_result res;
        assert_int_equal(fallback_probe(&e, "reg.example:5000", &res), 0);
        assert_int_equal(res.status, 200);

        char root[128];
        snprintf(root, sizeof(root), "%s/v2", env.up.url);
        e = endpoint(root, true);
        e.override_path = true;
        assert_int_equal(fallback_probe(&e, "reg.example:5000", &res), 0);
        assert_int_equal(res.status, 200);

        json_auto_t *log = upstream_log(&env.up);
        assert_int_equal(json_array_size(log), 2);
        assert_string_equal(log_path(log, 0), "/v2/?ns=reg.example%3A5000");
        assert_string_equal(log_path(log, 1), "/v2/");
}

/* Credentials are not the probe's business: a 401 is an answer. */
static void test_auth_required(void **state) {
        (void) state;
        upstream_auth(&env.up, "{\"mode\": \"basic\", \"user\": \"u\", \"password\": \"p\"}");
        struct fallback_endpoint_config e = endpoint(env.up.url, true);
        e.credentials_file = "/nonexistent/config.json"; /* never read */
        struct fallback_probe_result res;
        assert_int_equal(fallback_probe(&e, NULL, &res), 0);
        assert_int_equal(res.status, 401);
        assert_string_equal(res.reason, "auth required");
}

static void test_other_status(void **state) {
        (void) state;
        upstream_rules(&env.up, "[{\"path\": \"^/v2/$\", \"status\": 503}]");
        struct fallback_endpoint_config e = endpoint(env.up.url, true);
        struct fallback_probe_result res;
        assert_int_equal(fallback_probe(&e, NULL, &res), 0);
        assert_int_equal(res.status, 503);
        assert_string_equal(res.reason, "HTTP 503");
}

static void test_refused(void **state) {
        (void) state;
        struct fallback_endpoint_config e = endpoint(env.refuse.url, true);
        struct fallback_probe_result res;
        assert_int_equal(fallback_probe(&e, NULL, &res), -ECONNREFUSED);
        assert_int_equal(res.status, 0);
        assert_true(res.reason[0] != '\0');
}

/* Connects (the backlog takes it) and never answers: the response timeout. */
static void test_timeout(void **state) {
        (void) state;
        struct fallback_endpoint_config e = endpoint(env.hang.url, true);
        e.response_timeout_ms = FAST_MS;
        struct fallback_probe_result res;
        assert_int_equal(fallback_probe(&e, NULL, &res), -ETIMEDOUT);
        assert_int_equal(res.status, 0);
        assert_true(res.elapsed_ms >= FAST_MS);
        assert_true(res.elapsed_ms < SLOW_MS);
        if (!strstr(res.reason, "no response within"))
                fail_msg("reason: %s", res.reason);

        /* The fixture hanging on /v2/ is the same to the probe. */
        upstream_rules(&env.up, "[{\"path\": \"^/v2/$\", \"hang\": true}]");
        e = endpoint(env.up.url, true);
        e.response_timeout_ms = FAST_MS;
        assert_int_equal(fallback_probe(&e, NULL, &res), -ETIMEDOUT);
}

static void test_bad_url(void **state) {
        (void) state;
        struct fallback_endpoint_config e = endpoint("ftp://127.0.0.1:1", true);
        struct fallback_probe_result res;
        assert_int_equal(fallback_probe(&e, NULL, &res), -EINVAL);
        assert_int_equal(res.status, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_ok, reset),
                cmocka_unit_test_setup(test_mirror_ns_and_override_path, reset),
                cmocka_unit_test_setup(test_auth_required, reset),
                cmocka_unit_test_setup(test_other_status, reset),
                cmocka_unit_test_setup(test_refused, reset),
                cmocka_unit_test_setup(test_timeout, reset),
                cmocka_unit_test_setup(test_bad_url, reset),
        };
        return cmocka_run_group_tests_name("probe", tests, group_setup, group_teardown);
}
