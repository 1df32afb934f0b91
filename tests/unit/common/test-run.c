/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/run.c: a child's input, output, environment and
 * exit status, and its bounds (time, output size, input size), with every
 * child reaped and its process group killed (what a script left behind too). Real programs from /bin. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/run.h"
#include "common/time.h"

static int run_sh(const char *script, const char *input, char *const *envp, uint64_t timeout_ms, size_t max,
                  char **out, size_t *size, int *status) {
        char *argv[] = { "/bin/sh", "-c", (char *) script, NULL };
        struct run_options o = { .argv = argv, .envp = envp, .input = input, .input_size = input ? strlen(input) : 0,
                                 .timeout_ms = timeout_ms, .max = max };
        return run_program(&o, out, size, status);
}

static void test_input_output_status(void **state) {
        (void) state;
        char *out = NULL;
        size_t size = 0;
        int status = -1;
        assert_int_equal(run_sh("read -r x; printf '<%s>' \"$x\"; exit 3", "registry.example", NULL, 5000, 100, &out,
                                &size, &status),
                         0);
        assert_string_equal(out, "<registry.example>");
        assert_int_equal(size, 18);
        assert_int_equal(status, 3);
        free(out);
        /* Without input, stdin is /dev/null: a read ends at once. */
        assert_int_equal(run_sh("cat; echo done", NULL, NULL, 5000, 100, &out, &size, &status), 0);
        assert_string_equal(out, "done\n");
        assert_int_equal(status, 0);
        free(out);
        /* A child that does not read its input is no trouble (no SIGPIPE here). */
        assert_int_equal(run_sh("exit 0", "ignored", NULL, 5000, 100, &out, &size, &status), 0);
        free(out);
        unit_assert_no_child();
}

/* Only stdin, stdout and stderr reach the child, even a descriptor without O_CLOEXEC. */
static void test_descriptors(void **state) {
        (void) state;
        int leak = open("/dev/null", O_RDONLY); /* deliberately without O_CLOEXEC */
        assert_true(leak > 2);
        char *out = NULL;
        size_t size = 0;
        int status = -1;
        assert_int_equal(run_sh("ls /proc/self/fd | wc -l", NULL, NULL, 5000, 100, &out, &size, &status), 0);
        /* 0, 1, 2 and the one ls opened to read the directory. */
        assert_string_equal(out, "4\n");
        free(out);
        close(leak);
        unit_assert_no_child();
}

static void test_environment(void **state) {
        (void) state;
        char *envp[] = { "PATH=/usr/bin:/bin", "ONLY=this", NULL };
        char *out = NULL;
        size_t size = 0;
        int status = -1;
        assert_int_equal(setenv("LAYERD_TEST_LEAK", "yes", 1), 0);
        assert_int_equal(run_sh("printf '%s/%s' \"$ONLY\" \"${LAYERD_TEST_LEAK:-clean}\"", NULL, envp, 5000, 100, &out,
                                &size, &status),
                         0);
        assert_string_equal(out, "this/clean");
        free(out);
        /* NULL: the caller's environment. */
        assert_int_equal(run_sh("printf '%s' \"$LAYERD_TEST_LEAK\"", NULL, NULL, 5000, 100, &out, &size, &status), 0);
        assert_string_equal(out, "yes");
        free(out);
        unsetenv("LAYERD_TEST_LEAK");
        unit_assert_no_child();
}

static void test_bounds(void **state) {
        (void) state;
        char *out = (char *) 0x1;
        size_t size = 0;
        int status = -1;
        /* Killed at the timeout with its group (the sleep is a child of the shell), and reaped. */
        uint64_t t0 = time_now_ms();
        assert_int_equal(run_sh("sleep 30; echo late", NULL, NULL, 300, 100, &out, &size, &status), -ETIMEDOUT);
        uint64_t took = time_now_ms() - t0;
        assert_true(took >= 300 && took < 2000);
        assert_ptr_equal(out, (char *) 0x1); /* ret_* untouched on failure */
        /* A program that closed its output but runs on is bounded as well. */
        assert_int_equal(run_sh("exec >&-; sleep 30", NULL, NULL, 300, 100, &out, &size, &status), -ETIMEDOUT);
        /* More output than allowed. */
        assert_int_equal(run_sh("head -c 100000 /dev/zero", NULL, NULL, 5000, 1000, &out, &size, &status), -EFBIG);
        /* Input larger than a socket's buffer is refused before anything runs. */
        char *big = unit_repeat('x', RUN_INPUT_MAX + 1);
        assert_int_equal(run_sh("cat", big, NULL, 5000, 100, &out, &size, &status), -E2BIG);
        free(big);
        /* No such program: glibc's posix_spawn says so; under valgrind (which
         * emulates it with fork and exec) the child exits 127, as a shell's would. */
        char *argv[] = { "/nonexistent/helper", NULL };
        struct run_options o = { .argv = argv, .timeout_ms = 1000, .max = 10 };
        int r = run_program(&o, &out, &size, &status);
        if (r == 0) {
                assert_int_equal(status, 127);
                free(out);
        } else
                assert_int_equal(r, -ENOENT);
        /* Killed by a signal: 128 + its number. */
        assert_int_equal(run_sh("kill -9 $$", NULL, NULL, 5000, 100, &out, &size, &status), 0);
        assert_int_equal(status, 128 + 9);
        free(out);
        unit_assert_no_child();
}

/* What a wrapper script leaves behind in its group (a background sleep) is killed when it
 * exits, and when it is killed at the timeout; and reaped, since this test is a subreaper
 * as a PID 1 layerd is a reaper: the sleep's pid is gone, not a zombie. */
static void test_group_killed(void **state) {
        (void) state;
        assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        char path[] = "/tmp/layerd-test-run-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        _cleanup_free_ char *exits = NULL, *hangs = NULL;
        assert_true(asprintf(&exits, "sleep 30 & echo $! >%s; echo done", path) > 0);
        assert_true(asprintf(&hangs, "sleep 30 & echo $! >%s; sleep 30", path) > 0);
        char *out = NULL;
        size_t size = 0;
        int status = -1;
        /* The leader exits at once; the sleep holds the output pipe, which does not hold us. */
        uint64_t t0 = time_now_ms();
        assert_int_equal(run_sh(exits, NULL, NULL, 5000, 100, &out, &size, &status), 0);
        assert_true(time_now_ms() - t0 < 4000);
        assert_string_equal(out, "done\n");
        assert_int_equal(status, 0);
        free(out);
        unit_assert_gone(path);
        unit_assert_no_child();
        /* At the timeout. */
        assert_int_equal(run_sh(hangs, NULL, NULL, 300, 100, &out, &size, &status), -ETIMEDOUT);
        unit_assert_gone(path);
        unit_assert_no_child();
        assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
        unlink(path);
}

static bool cancel_after(void *userdata) {
        unsigned *calls = userdata;
        return ++*calls > 3;
}

/* A run is killed (with its group) when its caller gives up. */
static void test_cancelled(void **state) {
        (void) state;
        char *argv[] = { "/bin/sh", "-c", "sleep 30", NULL };
        unsigned calls = 0;
        struct run_options o = { .argv = argv, .timeout_ms = 20000, .max = 10, .cancelled = cancel_after,
                                 .cancel_userdata = &calls };
        char *out = NULL;
        size_t size = 0;
        int status = -1;
        uint64_t t0 = time_now_ms();
        assert_int_equal(run_program(&o, &out, &size, &status), -ECANCELED);
        assert_true(time_now_ms() - t0 < 3000);
        unit_assert_no_child();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_input_output_status),
                cmocka_unit_test(test_environment),
                cmocka_unit_test(test_descriptors),
                cmocka_unit_test(test_bounds),
                cmocka_unit_test(test_group_killed),
                cmocka_unit_test(test_cancelled),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
