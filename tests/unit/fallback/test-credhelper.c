/* SPDX-License-Identifier: Apache-2.0 */
/* The docker credential-helper protocol: answers parsed (and refused without
 * quoting them), helpers run as docker runs them (`get`, the server URL on
 * stdin), and helpers that fail: non-zero exit, bad JSON, too much output, a
 * hang (killed at the timeout, reaped). The helpers are /bin/sh scripts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/time.h"
#include "fallback/credhelper.h"

#define SECRET "s3cr3t-Pa55w0rd"

static char dir[] = "/tmp/layerd-test-credhelper-XXXXXX";

/* A helper script NAME in dir with body (after "#!/bin/sh"); returns its path (static). */
static const char *helper(const char *name, const char *body) {
        static char path[128];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "#!/bin/sh\n%s\n", body);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(path, 0700), 0);
        return path;
}

static int setup(void **state) {
        (void) state;
        /* A subreaper, as a PID 1 layerd is a reaper: what a helper leaves behind becomes our
         * child, and unit_assert_no_child() sees it unless it was killed and reaped. */
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
                return -1;
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        (void) state;
        nftw(dir, unit_remove_one, 8, FTW_DEPTH | FTW_PHYS);
        return 0;
}

static void parse_bad(const char *json, const char *needle) {
        struct credentials *c = (struct credentials *) 0x1;
        char reason[CREDHELPER_REASON_MAX] = "";
        assert_int_equal(credhelper_parse(json, strlen(json), &c, reason, sizeof(reason)), -EBADMSG);
        assert_ptr_equal(c, (struct credentials *) 0x1);
        if (!strstr(reason, needle))
                fail_msg("reason \"%s\" does not say \"%s\"", reason, needle);
        assert_null(strstr(reason, SECRET));
}

static void test_parse(void **state) {
        (void) state;
        char reason[CREDHELPER_REASON_MAX];
        struct credentials *c = NULL;
        const char *pair = "{\"ServerURL\": \"r.example\", \"Username\": \"AWS\", \"Secret\": \"" SECRET "\"}";
        assert_int_equal(credhelper_parse(pair, strlen(pair), &c, reason, sizeof(reason)), 0);
        assert_string_equal(c->user, "AWS");
        assert_string_equal(c->password, SECRET);
        assert_null(c->identity_token);
        credentials_free(c);

        /* "<token>": Secret is an identity token (the refresh-token flow). */
        const char *tok = "{\"Username\": \"<token>\", \"Secret\": \"refresh-" SECRET "\"}";
        assert_int_equal(credhelper_parse(tok, strlen(tok), &c, reason, sizeof(reason)), 0);
        assert_null(c->user);
        assert_null(c->password);
        assert_string_equal(c->identity_token, "refresh-" SECRET);
        credentials_free(c);

        parse_bad("{\"Username\": \"u\", \"Secret\": \"" SECRET "\"", "not a JSON object"); /* cut short */
        parse_bad("credentials not found in native keychain", "not a JSON object");
        parse_bad("[\"" SECRET "\"]", "not a JSON object");
        parse_bad("{\"Username\": \"u\"}", "no usable Username and Secret");
        parse_bad("{\"Username\": \"\", \"Secret\": \"" SECRET "\"}", "no usable");
        parse_bad("{\"Username\": \"u\", \"Secret\": 7}", "no usable");
        parse_bad("{\"Username\": \"u\", \"Secret\": \"" SECRET "\\r\\nX-Evil: 1\"}", "no usable");
        parse_bad("{\"Username\": \"u\", \"Secret\": \"a\", \"Secret\": \"" SECRET "\"}", "not a JSON object");
}

static void test_server_url(void **state) {
        (void) state;
        assert_string_equal(credhelper_server_url("docker.io"), "https://index.docker.io/v1/");
        assert_string_equal(credhelper_server_url("registry-1.docker.io"), "https://index.docker.io/v1/");
        assert_string_equal(credhelper_server_url("123.dkr.ecr.eu-west-1.amazonaws.com"),
                            "123.dkr.ecr.eu-west-1.amazonaws.com");
        assert_string_equal(credhelper_server_url("127.0.0.1:5000"), "127.0.0.1:5000");
}

static void test_get(void **state) {
        (void) state;
        char reason[CREDHELPER_REASON_MAX] = "";
        struct credentials *c = NULL;
        /* What docker sends: "get", the server URL on stdin; the environment is clean. */
        assert_int_equal(setenv("LAYERD_TEST_LEAK", "yes", 1), 0);
        const char *h = helper("docker-credential-ok",
                               "[ \"$1\" = get ] || exit 9\n"
                               "read -r url\n"
                               "printf '{\"ServerURL\": \"%s\", \"Username\": \"%s\", \"Secret\": \"%s\"}' "
                               "\"$url\" \"$url\" \"$HOME:$PATH:${LAYERD_TEST_LEAK:-clean}\"");
        assert_int_equal(credhelper_get(h, "docker.io", 5000, NULL, NULL, &c, reason, sizeof(reason)), 0);
        assert_string_equal(c->user, "https://index.docker.io/v1/");
        assert_string_equal(c->password, "/:/usr/local/bin:/usr/bin:/bin:clean");
        credentials_free(c);
        unsetenv("LAYERD_TEST_LEAK");
        unit_assert_no_child();
}

static void get_fails(const char *body, uint64_t timeout_ms, int want, const char *needle) {
        char reason[CREDHELPER_REASON_MAX] = "";
        struct credentials *c = (struct credentials *) 0x1;
        const char *h = helper("docker-credential-bad", body);
        assert_int_equal(credhelper_get(h, "r.example", timeout_ms, NULL, NULL, &c, reason, sizeof(reason)), want);
        assert_ptr_equal(c, (struct credentials *) 0x1);
        if (!strstr(reason, needle))
                fail_msg("reason \"%s\" does not say \"%s\"", reason, needle);
        assert_null(strstr(reason, SECRET));
        unit_assert_no_child();
}

static void test_get_failures(void **state) {
        (void) state;
        /* docker-credential-helpers' answer when it has nothing: a message and exit 1. */
        get_fails("echo 'credentials not found in native keychain " SECRET "'; exit 1", 5000, -ENOKEY,
                  "exited with status 1");
        get_fails("printf '{\"Username\": \"u\", \"Secret\": \"" SECRET "\"'", 5000, -EBADMSG, "not a JSON object");
        get_fails("head -c 100000 /dev/zero", 5000, -EFBIG, "more than 65536 bytes");
        uint64_t t0 = time_now_ms();
        /* Killed with what the wrapper started (not exec'd), which is reaped: its pid is gone. */
        char body[256];
        snprintf(body, sizeof(body), "sleep 30 & echo $! >%s/left; wait", dir);
        get_fails(body, 300, -ETIMEDOUT, "killed after 300 ms");
        assert_true(time_now_ms() - t0 < 2000);
        char left[128];
        snprintf(left, sizeof(left), "%s/left", dir);
        unit_assert_gone(left);
        get_fails("exec >&-; sleep 30", 300, -ETIMEDOUT, "killed after 300 ms");
        get_fails("kill -9 $$", 5000, -ENOKEY, "exited with status 137");

        char reason[CREDHELPER_REASON_MAX] = "";
        struct credentials *c = NULL;
        /* glibc's posix_spawn tells; valgrind's emulation makes it an exit with 127 (common/test-run.c). */
        int r = credhelper_get("/nonexistent/docker-credential-x", "r.example", 1000, NULL, NULL, &c, reason,
                               sizeof(reason));
        if (r == -ENOKEY)
                assert_non_null(strstr(reason, "exited with status 127"));
        else {
                assert_int_equal(r, -ENOENT);
                assert_non_null(strstr(reason, "cannot run"));
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_server_url),
                cmocka_unit_test(test_get),
                cmocka_unit_test(test_get_failures),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
