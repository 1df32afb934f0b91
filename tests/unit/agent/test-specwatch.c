/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/specwatch.c: a change of the spec's content is one
 * SIGHUP to the target thread (an in-place rewrite, a rename over it, a
 * kubelet-style "..data" symlink swap, the file going away and coming back,
 * its directory removed and re-created or moved away and replaced); a touch
 * or identical bytes are none, nor an edit a SIGHUP from elsewhere already
 * reloads; a rejected reload is asked for again after the backoff; a change
 * since the spec in force was read (start-up) is one at once; a stop is prompt. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/specwatch.h"
#include "common/time.h"
#include "tests/unit/unit.h"

static char dir[64];
static char path[128];

/* A SIGHUP arrives for this thread within ms. */
static bool sighup_within(long ms) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGHUP);
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
        return sigtimedwait(&set, NULL, &ts) == SIGHUP;
}

/* The "no change" wait: past the debounce (twice: the stat() after it) with room to spare. */
#define QUIET_MS (4 * SPEC_WATCH_DEBOUNCE_MS)
#define CHANGE_MS 3000

static void put(const char *p, const char *text) {
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static void xsystem(const char *fmt, ...) {
        char cmd[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        assert_int_equal(system(cmd), 0);
}

static int setup(void **state) {
        (void) state;
        snprintf(dir, sizeof(dir), "/tmp/layerd-specwatch.XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/spec.yaml", dir);
        return 0;
}

static int teardown(void **state) {
        (void) state;
        xsystem("rm -rf '%s' '%s.old'", dir, dir);
        (void) sighup_within(0); /* nothing left pending for the next test */
        return 0;
}

static struct spec_watch *start(void) {
        struct spec_watch *w = NULL;
        assert_int_equal(spec_watch_start(path, NULL, pthread_self(), &w), 0);
        assert_non_null(w);
        return w;
}

static void test_rewrite_in_place(void **state) {
        (void) state;
        put(path, "version: 1\n");
        struct spec_watch *w = start();
        assert_false(sighup_within(QUIET_MS)); /* the bytes at start count as seen */
        put(path, "version: 1\nregistries: {}\n");
        assert_true(sighup_within(CHANGE_MS));
        assert_false(sighup_within(QUIET_MS)); /* one change, one SIGHUP */
        put(path, "version: 1\nregistries: {}\n"); /* identical bytes */
        assert_false(sighup_within(QUIET_MS));
        xsystem("touch '%s'", path);
        assert_false(sighup_within(QUIET_MS));
        spec_watch_stop(w);
}

static void test_rename_over(void **state) {
        (void) state;
        put(path, "a: 1\n");
        struct spec_watch *w = start();
        xsystem("printf 'a: 2\\n' >'%s.new' && mv '%s.new' '%s'", path, path, path);
        assert_true(sighup_within(CHANGE_MS));
        /* Another file in the directory is none of its business. */
        xsystem("printf 'x\\n' >'%s/other.yaml'", dir);
        assert_false(sighup_within(QUIET_MS));
        spec_watch_stop(w);
}

/* The kubelet's atomic writer: a new timestamped directory, "..data_tmp"
 * renamed over "..data", the old directory removed. */
static void kubelet_swap(int n, const char *text) {
        char p[256];
        snprintf(p, sizeof(p), "%s/..ts%d", dir, n);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/..ts%d/spec.yaml", dir, n);
        put(p, text);
        xsystem("cd '%s' && ln -s ..ts%d ..data_tmp && mv -T ..data_tmp ..data && rm -rf ..ts%d", dir, n, n - 1);
}

static void test_kubelet_swap(void **state) {
        (void) state;
        kubelet_swap(1, "v: 1\n");
        xsystem("cd '%s' && ln -s ..data/spec.yaml spec.yaml", dir);
        struct spec_watch *w = start();
        kubelet_swap(2, "v: 2\n");
        assert_true(sighup_within(CHANGE_MS));
        assert_false(sighup_within(QUIET_MS));
        kubelet_swap(3, "v: 2\n"); /* a re-sync: the same bytes */
        assert_false(sighup_within(QUIET_MS));
        kubelet_swap(4, "v: 4\n"); /* later swaps are still seen */
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_stop(w);
}

static void test_gone_and_back(void **state) {
        (void) state;
        put(path, "v: 1\n");
        struct spec_watch *w = start();
        assert_int_equal(unlink(path), 0);
        assert_true(sighup_within(CHANGE_MS)); /* the reload says why it cannot read it */
        put(path, "v: 1\n");
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_stop(w);
}

static void test_directory_recreated(void **state) {
        (void) state;
        put(path, "v: 1\n");
        struct spec_watch *w = start();
        xsystem("rm -rf '%s'", dir);
        assert_true(sighup_within(CHANGE_MS));
        assert_int_equal(mkdir(dir, 0755), 0);
        put(path, "v: 2\n");
        /* Watched again at the next stat() (SPEC_WATCH_POLL_MS). */
        assert_true(sighup_within(SPEC_WATCH_POLL_MS + CHANGE_MS));
        put(path, "v: 3\n");
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_stop(w);
}

/* The directory moved away (IN_MOVE_SELF) and another put at its path: the
 * watch leaves the old inode, so edits at the path are seen at once again. */
static void test_directory_moved(void **state) {
        (void) state;
        put(path, "v: 1\n");
        struct spec_watch *w = start();
        xsystem("mv '%s' '%s.old'", dir, dir);
        assert_true(sighup_within(CHANGE_MS)); /* the file is gone from the path */
        assert_int_equal(mkdir(dir, 0755), 0);
        put(path, "v: 2\n");
        assert_true(sighup_within(SPEC_WATCH_POLL_MS + CHANGE_MS));
        put(path, "v: 3\n"); /* by inotify, not at the next stat() SPEC_WATCH_STAT_MS later */
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_stop(w);
}

/* A rejected reload (a credentials file not there yet): the same bytes are
 * reloaded again after SPEC_WATCH_RETRY_MS, no change needed; an applied one
 * ends the retries. */
static void test_retry_after_rejected(void **state) {
        (void) state;
        put(path, "v: 1\n");
        struct spec_watch *w = start();
        put(path, "v: 2\n");
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_reload_failed(w);
        assert_false(sighup_within(SPEC_WATCH_RETRY_MS - 1000));
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_reload_applied(w);
        assert_false(sighup_within(QUIET_MS));
        put(path, "v: 3\n"); /* rejected, then replaced before the retry: one SIGHUP each */
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_reload_failed(w);
        put(path, "v: 4\n");
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_reload_applied(w);
        assert_false(sighup_within(SPEC_WATCH_RETRY_MS + QUIET_MS));
        spec_watch_reload_failed(NULL);
        spec_watch_reload_applied(NULL);
        spec_watch_stop(w);
}

/* The spec in force was loaded from other bytes than the file holds when
 * the watch starts (changed during start-up): reloaded at once; the same
 * bytes: nothing. */
static void test_initial_seen(void **state) {
        (void) state;
        struct spec_print loaded;
        put(path, "v: 1\n");
        spec_watch_print(path, &loaded);
        assert_int_equal(loaded.error, 0);
        put(path, "v: 2\n");
        struct spec_watch *w = NULL;
        assert_int_equal(spec_watch_start(path, &loaded, pthread_self(), &w), 0);
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_stop(w);
        spec_watch_print(path, &loaded);
        assert_int_equal(spec_watch_start(path, &loaded, pthread_self(), &w), 0);
        assert_false(sighup_within(QUIET_MS));
        spec_watch_stop(w);
}

/* An edit then `systemctl reload` (a SIGHUP from another process): one
 * reload, the signal's; a later edit is still seen. The watcher's own
 * signal changes nothing. */
static void test_signal_from_elsewhere(void **state) {
        (void) state;
        put(path, "v: 1\n");
        struct spec_watch *w = start();
        put(path, "v: 2\n");
        siginfo_t info = { .si_signo = SIGHUP, .si_code = SI_USER, .si_pid = 1 };
        spec_watch_note_signal(w, &info);
        assert_false(sighup_within(QUIET_MS));
        put(path, "v: 3\n");
        assert_true(sighup_within(CHANGE_MS));
        info = (siginfo_t) { .si_signo = SIGHUP, .si_code = SI_TKILL, .si_pid = getpid() };
        put(path, "v: 4\n");
        spec_watch_note_signal(w, &info); /* the watcher's own: v: 4 is still new */
        assert_true(sighup_within(CHANGE_MS));
        spec_watch_note_signal(NULL, &info);
        spec_watch_stop(w);
}

static void test_stop_is_prompt(void **state) {
        (void) state;
        put(path, "v: 1\n");
        struct spec_watch *w = start();
        uint64_t t0 = time_now_ms();
        assert_null(spec_watch_stop(w));
        assert_true(time_now_ms() - t0 < 1000);
        assert_null(spec_watch_stop(NULL));
}

int main(void) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGHUP);
        /* As serve_block_signals() does: the watcher's thread inherits it. */
        assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_rewrite_in_place, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rename_over, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubelet_swap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gone_and_back, setup, teardown),
                cmocka_unit_test_setup_teardown(test_directory_recreated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_directory_moved, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retry_after_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(test_initial_seen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_signal_from_elsewhere, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_is_prompt, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
