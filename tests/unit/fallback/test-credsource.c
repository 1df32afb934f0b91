/* SPDX-License-Identifier: Apache-2.0 */
/* An endpoint's credentials that change while fetches run, against the
 * fixture registry (tests/fixtures/upstream.py): a credentials file re-read
 * when it is replaced (and its tokens dropped), kept when the new one is
 * malformed (one event), a credential helper run once for many concurrent
 * fetches and again when its lifetime is over, a failing helper, and an
 * identity token traded as an OAuth2 refresh token (rotated by the realm; a
 * realm without the OAuth2 flow), reloads, and a request with its client's
 * credentials, which leaves the endpoint's own alone. A HEAD of a manifest the
 * fixture does not hold answers 404 when the credentials were good, 401 when
 * they were not. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"
#include "tests/unit/fallback/fixture.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "fallback/fallback.h"

#define REG "registry.test"
#define STAT_WAIT_MS 1100 /* a credentials file is looked at once a second at most */

static struct {
        struct upstream a;
        char tmp[64];
} env;

struct events {
        pthread_mutex_t lock;
        size_t updated, failed;
        char last_reason[256];
        bool restore_nofile; /* the first failure sets RLIMIT_NOFILE back to nofile */
        struct rlimit nofile;
};

static void on_event(const struct fallback_event *ev, void *userdata) {
        struct events *e = userdata;
        pthread_mutex_lock(&e->lock);
        if (ev->type == FALLBACK_EVENT_CREDENTIALS_UPDATED)
                e->updated++;
        if (ev->type == FALLBACK_EVENT_CREDENTIALS_FAILED) {
                e->failed++;
                if (e->restore_nofile)
                        assert_int_equal(setrlimit(RLIMIT_NOFILE, &e->nofile), 0);
                e->restore_nofile = false;
        }
        if (ev->type == FALLBACK_EVENT_CREDENTIALS_UPDATED || ev->type == FALLBACK_EVENT_CREDENTIALS_FAILED)
                snprintf(e->last_reason, sizeof(e->last_reason), "%s", ev->reason);
        pthread_mutex_unlock(&e->lock);
}

/* The events of the test that runs (emptied before each). */
static struct events ev = { .lock = PTHREAD_MUTEX_INITIALIZER };

static struct fallback *fb_with(const struct fallback_endpoint_config *ep) {
        struct fallback_options o = { .user_agent = "layerd-test/1", .on_event = on_event, .userdata = &ev };
        struct fallback *fb = NULL;
        assert_int_equal(fallback_new(&o, &fb), 0);
        struct fallback_registry_config r = { .host = REG, .endpoints = ep, .n_endpoints = 1 };
        struct error_list errors;
        error_list_init(&errors, "test");
        if (fallback_configure(fb, &r, 1, &errors) < 0) {
                error_list_print(&errors, stderr);
                fail_msg("fallback_configure failed");
        }
        return fb;
}

static struct fallback_endpoint_config endpoint(void) {
        return (struct fallback_endpoint_config) { .url = env.a.url, .is_origin = true, .connect_timeout_ms = 10000,
                                                   .response_timeout_ms = 10000, .idle_timeout_ms = 10000 };
}

/* An endpoint whose credentials come from the helper at path. */
static struct fallback_endpoint_config helper_endpoint(const char *path) {
        struct fallback_endpoint_config ep = endpoint();
        ep.credential_helper = path;
        return ep;
}

/* A client whose one endpoint takes its credentials from the file at path. */
static struct fallback *fb_with_file(const char *path) {
        struct fallback_endpoint_config ep = endpoint();
        ep.credentials_file = path;
        return fb_with(&ep);
}

/* The status of a HEAD of a manifest nobody has: 404 through good credentials, 401 otherwise. */
/* The status of a HEAD of repo's manifest "none" that must be done by deadline_ms (-errno: none). */
static int probe_until(struct fallback *fb, const char *repo, uint64_t deadline_ms) {
        struct fallback_request req = { .registry = REG, .repository = repo, .kind = FALLBACK_MANIFEST,
                                        .reference = "none", .head = true, .deadline_ms = deadline_ms };
        struct fallback_response resp;
        int r = fallback_fetch(fb, &req, &resp);
        if (r < 0)
                return r;
        int status = resp.status;
        fallback_response_done(&resp);
        return status;
}

static int probe_repo(struct fallback *fb, const char *repo) {
        int status = probe_until(fb, repo, time_now_ms() + 30000);
        assert_true(status > 0);
        return status;
}

static int probe(struct fallback *fb) {
        return probe_repo(fb, "test/app");
}

/* name in the test's temporary directory (a new string). */
static char *tmp_path(const char *name) {
        char *path = NULL;
        assert_true(asprintf(&path, "%s/%s", env.tmp, name) > 0);
        return path;
}

/* path replaced (a rename, as every writer of such files does) by text. */
static void replace(const char *path, const char *fmt, ...) _printf_(2, 3);
static void replace(const char *path, const char *fmt, ...) {
        _cleanup_free_ char *text = NULL;
        va_list ap;
        va_start(ap, fmt);
        assert_true(vasprintf(&text, fmt, ap) >= 0);
        va_end(ap);
        assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
}

static void replace_credentials(const char *path, const char *user, const char *password) {
        _cleanup_free_ char *pair = NULL;
        assert_true(asprintf(&pair, "%s:%s", user, password) > 0);
        _cleanup_free_ char *auth = unit_base64(pair);
        replace(path, "{\"auths\": {\"%s\": {\"auth\": \"%s\"}}}", env.a.host, auth);
}

/* path replaced by a credentials file whose entry is the identity token token. */
static void replace_identity_token(const char *path, const char *token) {
        replace(path, "{\"auths\": {\"%s\": {\"auth\": \"dTo=\", \"identitytoken\": \"%s\"}}}", env.a.host, token);
}

static size_t count(const struct upstream *u, const char *method, const char *part, long status) {
        json_auto_t *log = upstream_log(u);
        return log_count_status(log, method, part, status);
}

static int group_setup(void **state) {
        (void) state;
        assert_int_equal(fallback_global_init(), 0);
        snprintf(env.tmp, sizeof(env.tmp), "/tmp/layerd-test-credsource-XXXXXX");
        assert_non_null(mkdtemp(env.tmp));
        upstream_spawn(&env.a);
        upstream_wait_ready(&env.a);
        return 0;
}

static int group_teardown(void **state) {
        (void) state;
        upstream_stop(&env.a);
        unit_rm_rf(env.tmp);
        fallback_global_done();
        return 0;
}

/* The password changes at the registry (its tokens expired), then in the file at path, and the
 * file's change is due to be seen. */
static void new_password(const char *path, const char *password) {
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"alice\", \"password\": \"%s\"}", password);
        upstream_expire_tokens(&env.a);
        replace_credentials(path, "alice", password);
        fixture_sleep_ms(STAT_WAIT_MS);
}

/* A client whose credentials file at path holds alice's password, which the registry takes (checked). */
static struct fallback *fb_with_password(const char *path, const char *password) {
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"alice\", \"password\": \"%s\"}", password);
        replace_credentials(path, "alice", password);
        struct fallback *fb = fb_with_file(path);
        assert_int_equal(probe(fb), 404);
        return fb;
}

static int reset(void **state) {
        (void) state;
        upstream_reset(&env.a);
        pthread_mutex_lock(&ev.lock);
        ev.updated = ev.failed = 0;
        ev.last_reason[0] = '\0';
        ev.restore_nofile = false;
        pthread_mutex_unlock(&ev.lock);
        return 0;
}

static void test_file_replaced(void **state) {
        (void) state;
        _cleanup_free_ char *path = tmp_path("config.json");
        _cleanup_(fallback_freep) struct fallback *fb = fb_with_password(path, "pw-1");

        /* The password changes at the registry, then in the file. */
        new_password(path, "pw-2");
        assert_int_equal(probe(fb), 404);
        assert_int_equal(ev.updated, 1);
        assert_non_null(strstr(ev.last_reason, "new credentials in use"));
        assert_null(strstr(ev.last_reason, "pw-"));

        /* The same credentials written again: nothing changes, the token is kept. */
        size_t tokens = count(&env.a, "GET", "/token", -1);
        replace(path, "{\"auths\": {\"%s\": {\"username\": \"alice\", \"password\": \"pw-2\"}}}", env.a.host);
        fixture_sleep_ms(STAT_WAIT_MS);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(count(&env.a, "GET", "/token", -1), tokens);
        assert_int_equal(ev.updated, 1);

        /* Malformed: the last good credentials stay, said once. */
        replace(path, "{\"auths\": {");
        fixture_sleep_ms(STAT_WAIT_MS);
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 404);
        fixture_sleep_ms(STAT_WAIT_MS);
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(ev.failed, 1);
        assert_non_null(strstr(ev.last_reason, "not valid JSON; the last good credentials stay in use"));
        /* ... and so when it is gone. */
        assert_int_equal(unlink(path), 0);
        fixture_sleep_ms(STAT_WAIT_MS);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(ev.failed, 1); /* still the same failure spell */
        assert_non_null(strstr(ev.last_reason, "not valid JSON"));

        /* Credentials the registry refuses: the token got with the old ones is dropped, not used on. */
        replace_credentials(path, "alice", "wrong");
        fixture_sleep_ms(STAT_WAIT_MS);
        assert_int_equal(probe(fb), 401);
        assert_int_equal(ev.updated, 2);
        assert_non_null(strstr(ev.last_reason, "new credentials in use"));
}

/* A changed file whose read fails for a reason that is not its content (here EMFILE: no
 * descriptor left for a moment) is read again a second later, not taken as seen. */
static void test_file_read_error(void **state) {
        (void) state;
        _cleanup_free_ char *path = tmp_path("emfile.json");
        _cleanup_(fallback_freep) struct fallback *fb = fb_with_password(path, "pw-1");

        new_password(path, "pw-2");
        /* No descriptor below the limit is free: the read fails; the event puts the limit back. */
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &ev.nofile), 0);
        int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(lowest > 2);
        close(lowest);
        struct rlimit low = { .rlim_cur = (rlim_t) lowest, .rlim_max = ev.nofile.rlim_max };
        ev.restore_nofile = true;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        assert_int_equal(probe(fb), 401); /* the old password, which the registry no longer takes */
        assert_false(ev.restore_nofile);
        assert_int_equal(ev.failed, 1);
        assert_non_null(strstr(ev.last_reason, "Too many open files"));

        fixture_sleep_ms(STAT_WAIT_MS);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(ev.updated, 1);
}

struct late_probe {
        struct fallback *fb;
        int status;
};

static void *late_probe_main(void *userdata) {
        struct late_probe *p = userdata;
        p->status = probe(p->fb);
        return NULL;
}

/* A fetch that copied the old credentials before they changed, and trades them for a token
 * after the change dropped the tokens: its token is used once, never cached for the fetches
 * that have the new credentials. */
static void test_token_of_old_credentials(void **state) {
        (void) state;
        _cleanup_free_ char *path = tmp_path("late.json");
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"alice\", \"password\": \"pw-1\"}");
        /* The late fetch's first request is held: it meets its 401 after the change. */
        upstream_rules(&env.a, "[{\"path\": \"/v2/test/app/manifests/none\", \"times\": 1, \"delay_ms\": 3000}]");
        replace_credentials(path, "alice", "pw-1");
        _cleanup_(fallback_freep) struct fallback *fb = fb_with_file(path);
        struct late_probe late = { .fb = fb };
        pthread_t thread;
        assert_int_equal(pthread_create(&thread, NULL, late_probe_main, &late), 0);
        fixture_sleep_ms(200);
        replace_credentials(path, "alice", "wrong");
        fixture_sleep_ms(STAT_WAIT_MS);
        assert_int_equal(probe_repo(fb, "other/app"), 401); /* reads the new file: the tokens are dropped */
        assert_int_equal(ev.updated, 1);
        pthread_join(thread, NULL);
        assert_int_equal(late.status, 404); /* its credentials were good when it began */
        assert_int_equal(probe(fb), 401);   /* not with the old credentials' token */
}

/* A file that went away: said once, by its name and errno, never twice. */
static void test_file_gone(void **state) {
        (void) state;
        _cleanup_free_ char *path = tmp_path("gone.json"), *want = NULL;
        assert_true(asprintf(&want, "%s: No such file or directory; the last good credentials stay in use", path) > 0);
        replace_credentials(path, "alice", "pw");
        _cleanup_(fallback_freep) struct fallback *fb = fb_with_file(path);
        assert_int_equal(unlink(path), 0);
        fixture_sleep_ms(STAT_WAIT_MS);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(ev.failed, 1);
        assert_string_equal(ev.last_reason, want);
        fixture_sleep_ms(STAT_WAIT_MS);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(ev.failed, 1);
}

static void reconfigure(struct fallback *fb, const struct fallback_endpoint_config *ep);

/* A helper in env.tmp: answers user u and the password in the file NAME.pw after
 * sleeping `delay` seconds; counts its runs in NAME.runs. Returns its path. */
static char *write_helper(const char *name, const char *delay, const char *password) {
        char *path = tmp_path(name);
        replace(path,
                "#!/bin/sh\n"
                "read -r server\n"
                "echo \"$server\" >>%s.runs\n"
                "sleep %s\n"
                "printf '{\"Username\": \"u\", \"Secret\": \"%%s\"}' \"$(cat %s.pw)\"\n",
                path, delay, path);
        assert_int_equal(chmod(path, 0700), 0);
        _cleanup_free_ char *pw = NULL;
        assert_true(asprintf(&pw, "%s.pw", path) > 0);
        replace(pw, "%s", password);
        return path;
}

static size_t lines_of(const char *helper, const char *ext) {
        _cleanup_free_ char *path = NULL, *data = NULL;
        size_t size = 0, n = 0;
        assert_true(asprintf(&path, "%s.%s", helper, ext) > 0);
        if (read_file_bounded(path, 1 << 20, &data, &size) < 0)
                return 0;
        for (size_t i = 0; i < size; i++)
                n += data[i] == '\n';
        return n;
}

struct worker {
        struct fallback *fb;
        pthread_barrier_t *barrier;
        const char *repo; /* NULL: test/app */
        int status;
};

static void *worker_main(void *userdata) {
        struct worker *w = userdata;
        pthread_barrier_wait(w->barrier);
        w->status = probe_repo(w->fb, w->repo ? w->repo : "test/app");
        return NULL;
}

#define WORKERS_MAX 8

/* n probes at once (of repos[i], or test/app without repos); each one's status must be want. */
static void probe_at_once(struct fallback *fb, size_t n, const char *const *repos, int want) {
        pthread_barrier_t barrier;
        pthread_t threads[WORKERS_MAX];
        struct worker w[WORKERS_MAX];
        assert_true(n <= WORKERS_MAX);
        assert_int_equal(pthread_barrier_init(&barrier, NULL, (unsigned) n), 0);
        for (size_t i = 0; i < n; i++) {
                w[i] = (struct worker) { .fb = fb, .barrier = &barrier, .repo = repos ? repos[i] : NULL };
                assert_int_equal(pthread_create(&threads[i], NULL, worker_main, &w[i]), 0);
        }
        for (size_t i = 0; i < n; i++)
                pthread_join(threads[i], NULL);
        pthread_barrier_destroy(&barrier);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(w[i].status, want);
}

static void test_helper_single_flight(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"basic\", \"user\": \"u\", \"password\": \"h-1\"}");
        _cleanup_free_ char *helper = write_helper("docker-credential-flight", "0.3", "h-1");
        struct fallback_endpoint_config ep = helper_endpoint(helper);
        ep.credential_helper_lifetime_ms = 3000; /* room for a slow run (valgrind) before the checks within it */
        _cleanup_(fallback_freep) struct fallback *fb = fb_with(&ep);

        /* Eight fetches at once: one run of the helper, the others wait for it. */
        probe_at_once(fb, 8, NULL, 404);
        assert_int_equal(lines_of(helper, "runs"), 1);
        assert_int_equal(ev.updated, 1);

        /* Within its lifetime it is not asked again; after it, it is, and the new password is used. */
        assert_int_equal(probe(fb), 404);
        assert_int_equal(lines_of(helper, "runs"), 1);
        upstream_auth(&env.a, "{\"mode\": \"basic\", \"user\": \"u\", \"password\": \"h-2\"}");
        _cleanup_free_ char *pw = NULL;
        assert_true(asprintf(&pw, "%s.pw", helper) > 0);
        replace(pw, "h-2");
        fixture_sleep_ms(3100);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(lines_of(helper, "runs"), 2);
        assert_int_equal(ev.updated, 2);
        assert_int_equal(ev.failed, 0);
}

struct timed_probe {
        struct fallback *fb;
        uint64_t within_ms; /* its deadline, from its start */
        uint64_t took_ms;
};

static void *timed_probe_main(void *userdata) {
        struct timed_probe *p = userdata;
        uint64_t t0 = time_now_ms();
        (void) probe_until(p->fb, "test/app", t0 + p->within_ms);
        p->took_ms = time_now_ms() - t0;
        return NULL;
}

/* A helper that hangs (its timeout: 20 s) holds up neither the requests that have its last
 * good answer (they use it) nor, past its deadline, the request that runs it or one that
 * waits for a first answer; such a cut is not the helper's failure. */
static void test_helper_hangs(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"basic\", \"user\": \"u\", \"password\": \"h-1\"}");
        _cleanup_free_ char *delay = NULL, *sleep_for = NULL;
        assert_true(asprintf(&delay, "%s/docker-credential-hang.delay", env.tmp) > 0);
        assert_true(asprintf(&sleep_for, "$(cat %s 2>/dev/null || echo 0)", delay) > 0);
        _cleanup_free_ char *helper = write_helper("docker-credential-hang", sleep_for, "h-1");
        struct fallback_endpoint_config ep = helper_endpoint(helper);
        ep.credential_helper_lifetime_ms = 1000;
        ep.credential_helper_timeout_ms = 20000;
        _cleanup_(fallback_freep) struct fallback *fb = fb_with(&ep);
        assert_int_equal(probe(fb), 404);

        replace(delay, "30");
        fixture_sleep_ms(1100); /* the answer is stale: the next request runs the helper, which hangs */
        struct timed_probe runner = { .fb = fb, .within_ms = 2000 };
        pthread_t thread;
        assert_int_equal(pthread_create(&thread, NULL, timed_probe_main, &runner), 0);
        fixture_sleep_ms(300);
        uint64_t t0 = time_now_ms();
        assert_int_equal(probe(fb), 404); /* the last good answer */
        assert_true(time_now_ms() - t0 < 1500);
        pthread_join(thread, NULL);
        assert_true(runner.took_ms < 5000);
        assert_int_equal(lines_of(helper, "runs"), 2);
        assert_int_equal(ev.failed, 0);

        /* No answer yet: a request waits for the run, within its own deadline. */
        _cleanup_(fallback_freep) struct fallback *fresh = fb_with(&ep);
        struct timed_probe first = { .fb = fresh, .within_ms = 3000 }, waiter = { .fb = fresh, .within_ms = 1000 };
        pthread_t threads[2];
        assert_int_equal(pthread_create(&threads[0], NULL, timed_probe_main, &first), 0);
        fixture_sleep_ms(300);
        assert_int_equal(pthread_create(&threads[1], NULL, timed_probe_main, &waiter), 0);
        pthread_join(threads[1], NULL);
        pthread_join(threads[0], NULL);
        assert_true(waiter.took_ms < 2500);
        assert_true(first.took_ms < 6000);
        assert_int_equal(ev.failed, 0);
}

static void test_helper_fails(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"basic\", \"user\": \"u\", \"password\": \"h-1\"}");
        _cleanup_free_ char *helper = tmp_path("docker-credential-none");
        replace(helper, "#!/bin/sh\necho run >>%s.runs\necho 'credentials not found in native keychain'\nexit 1\n",
                helper);
        assert_int_equal(chmod(helper, 0700), 0);
        struct fallback_endpoint_config ep = helper_endpoint(helper);
        _cleanup_(fallback_freep) struct fallback *fb = fb_with(&ep);
        assert_int_equal(probe(fb), 401); /* anonymous, then: the registry's answer */
        assert_int_equal(ev.failed, 1);
        assert_non_null(strstr(ev.last_reason, "credential helper exited with status 1; none to use"));
        /* Not run again for every fetch. */
        assert_int_equal(probe(fb), 401);
        assert_int_equal(lines_of(helper, "runs"), 1);
        assert_int_equal(ev.failed, 1);
}

static void test_identity_token(void **state) {
        (void) state;
        /* As long as real ones (JWTs of 1 to 2 KiB). */
        _cleanup_free_ char *pad = unit_repeat('x', 2000);
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"u\", \"password\": \"unused\", "
                              "\"refresh_token\": \"rt-1%s\", \"rotate_refresh\": true}", pad);
        _cleanup_free_ char *path = tmp_path("idtoken.json");
        replace(path, "{\"auths\": {\"%s\": {\"auth\": \"dTo=\", \"identitytoken\": \"rt-1%s\"}}}", env.a.host,
                pad);
        _cleanup_(fallback_freep) struct fallback *fb = fb_with_file(path);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(count(&env.a, "POST", "/token", 200), 1);
        assert_int_equal(count(&env.a, "GET", "/token", -1), 0);
        {
                /* A form, without Basic credentials. */
                json_auto_t *log = upstream_log(&env.a);
                for (size_t i = 0; i < json_array_size(log); i++)
                        if (strcmp(log_method(log, i), "POST") == 0) {
                                assert_null(log_header(log, i, "authorization"));
                                assert_string_equal(log_header(log, i, "content-type"),
                                                    "application/x-www-form-urlencoded");
                        }
        }
        /* The realm rotated the refresh token: the next grant uses the new one. */
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(count(&env.a, "POST", "/token", 200), 2);

        /* A realm without the OAuth2 flow: 401, with a clear event. */
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"u\", \"password\": \"unused\"}");
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 401);
        assert_int_equal(ev.failed, 1);
        assert_non_null(strstr(ev.last_reason, "HTTP 405 to the OAuth2 POST: the realm takes no refresh tokens"));
        assert_null(strstr(ev.last_reason, "rt-"));
}

/* Concurrent grants for several scopes against a realm that rotates refresh tokens: each
 * sends the token the one before it got (one grant at a time, the token read when it is
 * built), none an already rotated one. A re-read file or a reload that gives the original
 * token again keeps the rotated one (the realm refuses the original now); a new one is taken. */
static void test_identity_token_rotation(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"u\", \"password\": \"unused\", "
                              "\"refresh_token\": \"rt-1\", \"rotate_refresh\": true}");
        _cleanup_free_ char *path = tmp_path("rotating.json");
        replace_identity_token(path, "rt-1");
        struct fallback_endpoint_config ep = endpoint();
        ep.credentials_file = path;
        _cleanup_(fallback_freep) struct fallback *fb = fb_with(&ep);

        static const char *const repos[] = { "r/a", "r/b", "r/c", "r/d" };
        probe_at_once(fb, 4, repos, 404);
        assert_int_equal(count(&env.a, "POST", "/token", 200), 4);
        assert_int_equal(count(&env.a, "POST", "/token", 400), 0);

        /* The file written again with the original token (a Secret re-synced): the rotated one stays. */
        replace_identity_token(path, "rt-1");
        fixture_sleep_ms(STAT_WAIT_MS);
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(count(&env.a, "POST", "/token", 400), 0);
        assert_int_equal(ev.updated, 0);
        /* So at a reload (SIGHUP), which reads the file again. */
        reconfigure(fb, &ep);
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(count(&env.a, "POST", "/token", 400), 0);
        /* ... and after the reload, when the file is re-read again. */
        replace_identity_token(path, "rt-1");
        fixture_sleep_ms(STAT_WAIT_MS);
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(count(&env.a, "POST", "/token", 400), 0);
        assert_int_equal(count(&env.a, "POST", "/token", 200), 7);

        /* A new token in the file (the operator logged in again) is new credentials. */
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"u\", \"password\": \"unused\", "
                              "\"refresh_token\": \"rt-new\", \"rotate_refresh\": true}");
        replace_identity_token(path, "rt-new");
        fixture_sleep_ms(STAT_WAIT_MS);
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(count(&env.a, "POST", "/token", 400), 0);
        assert_int_equal(ev.updated, 1);
}

/* The same with a helper that answers an identity token: a reload that keeps the helper
 * keeps the rotated token, and so does the helper's next run that gives the original again. */
static void test_identity_token_helper_rotation(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"u\", \"password\": \"unused\", "
                              "\"refresh_token\": \"rt-1\", \"rotate_refresh\": true}");
        _cleanup_free_ char *helper = tmp_path("docker-credential-token");
        replace(helper, "#!/bin/sh\necho run >>%s.runs\nprintf '{\"Username\": \"<token>\", \"Secret\": \"rt-1\"}'\n",
                helper);
        assert_int_equal(chmod(helper, 0700), 0);
        struct fallback_endpoint_config ep = helper_endpoint(helper);
        ep.credential_helper_lifetime_ms = 1500;
        _cleanup_(fallback_freep) struct fallback *fb = fb_with(&ep);
        assert_int_equal(probe(fb), 404);
        reconfigure(fb, &ep);
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 404);
        fixture_sleep_ms(1600);
        upstream_expire_tokens(&env.a);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(lines_of(helper, "runs"), 2);
        assert_int_equal(count(&env.a, "POST", "/token", 200), 3);
        assert_int_equal(count(&env.a, "POST", "/token", 400), 0);
}

static void copy_stats(const struct fallback_endpoint_stats *s, void *userdata) {
        *(struct fallback_endpoint_stats *) userdata = *s;
}

/* A refresh token the realm refuses (400 invalid_grant): a 401 and an event, not an
 * endpoint failure; the breaker stays shut and public repositories are served. */
static void test_identity_token_refused(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"u\", \"password\": \"unused\", "
                              "\"refresh_token\": \"rt-live\", \"private\": [\"test/\"]}");
        _cleanup_free_ char *path = tmp_path("revoked.json");
        replace_identity_token(path, "rt-revoked");
        _cleanup_(fallback_freep) struct fallback *fb = fb_with_file(path);
        assert_int_equal(probe(fb), 401);
        assert_int_equal(count(&env.a, "POST", "/token", 400), 1);
        assert_int_equal(ev.failed, 1);
        assert_non_null(strstr(ev.last_reason, "HTTP 400 to the OAuth2 POST: the refresh token was refused"));
        assert_null(strstr(ev.last_reason, "rt-"));
        assert_int_equal(probe(fb), 401);
        assert_int_equal(probe_repo(fb, "pub/app"), 404);
        struct fallback_endpoint_stats st = { 0 };
        fallback_foreach_endpoint(fb, copy_stats, &st);
        assert_int_equal(st.state, FALLBACK_BREAKER_CLOSED);
        assert_int_equal(st.breaker_opens, 0);
        assert_int_equal(st.failures, 0);
}

static void reconfigure(struct fallback *fb, const struct fallback_endpoint_config *ep) {
        struct fallback_registry_config r = { .host = REG, .endpoints = ep, .n_endpoints = 1 };
        struct error_list errors;
        error_list_init(&errors, "test");
        assert_int_equal(fallback_configure(fb, &r, 1, &errors), 0);
}

/* A reload (SIGHUP) that changes an endpoint's credentials drops its tokens; one that keeps
 * its helper keeps the helper's answer (not run again). */
static void test_reconfigure(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"alice\", \"password\": \"pw-1\"}");
        _cleanup_free_ char *one = NULL, *two = NULL;
        assert_true(asprintf(&one, "%s/one.json", env.tmp) > 0);
        assert_true(asprintf(&two, "%s/two.json", env.tmp) > 0);
        replace_credentials(one, "alice", "pw-1");
        replace_credentials(two, "alice", "wrong");
        struct fallback_endpoint_config ep = endpoint();
        ep.credentials_file = one;
        _cleanup_(fallback_freep) struct fallback *fb = fb_with(&ep);
        assert_int_equal(probe(fb), 404);
        reconfigure(fb, &ep); /* the same credentials: the token is kept */
        assert_int_equal(probe(fb), 404);
        assert_int_equal(count(&env.a, "GET", "/token", -1), 1);
        ep.credentials_file = two; /* the registry still takes the token the old ones got */
        reconfigure(fb, &ep);
        assert_int_equal(probe(fb), 401);

        upstream_auth(&env.a, "{\"mode\": \"basic\", \"user\": \"u\", \"password\": \"h-1\"}");
        _cleanup_free_ char *helper = write_helper("docker-credential-reload", "0", "h-1");
        ep = helper_endpoint(helper);
        reconfigure(fb, &ep);
        assert_int_equal(probe(fb), 404);
        reconfigure(fb, &ep);
        assert_int_equal(probe(fb), 404);
        assert_int_equal(lines_of(helper, "runs"), 1);
}

/* A request that carries its client's credentials does not look at the endpoint's own: its
 * helper is not run for it (nor waited for). */
static void test_client_auth_leaves_own_alone(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"basic\", \"user\": \"u\", \"password\": \"h-1\"}");
        _cleanup_free_ char *helper = write_helper("docker-credential-own", "0", "h-1");
        struct fallback_endpoint_config ep = helper_endpoint(helper);
        _cleanup_(fallback_freep) struct fallback *fb = fb_with(&ep);
        struct digest key;
        struct fallback_client_auth ca = fixture_client_auth("u", "h-1", &key);
        struct fallback_request req = { .registry = REG, .repository = "test/app", .kind = FALLBACK_MANIFEST,
                                        .reference = "none", .head = true, .client_auth = &ca,
                                        .deadline_ms = time_now_ms() + 30000 };
        struct fallback_response resp;
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        assert_int_equal(resp.status, 404); /* the client's credentials, good */
        fallback_response_done(&resp);
        assert_int_equal(lines_of(helper, "runs"), 0);
        assert_int_equal(probe(fb), 404); /* without them: the helper's */
        assert_int_equal(lines_of(helper, "runs"), 1);
}

struct reload_race {
        struct fallback *fb;
        atomic_bool stop;
        unsigned fetches;
};

static void *reload_race_main(void *userdata) {
        struct reload_race *r = userdata;
        while (!atomic_load(&r->stop)) {
                (void) probe_until(r->fb, "test/app", time_now_ms() + 5000);
                r->fetches++;
        }
        return NULL;
}

/* A reload hands the helper's answer over to the new configuration before it publishes it: a
 * request at any moment of a reload finds the answer, and never runs the helper again (handed
 * over after, a second of this ran it about ten times). */
static void test_reconfigure_hands_over_first(void **state) {
        (void) state;
        enum { THREADS = 4 };
        _cleanup_free_ char *helper = write_helper("docker-credential-race", "0", "h-1");
        struct fallback_endpoint_config ep = helper_endpoint(helper);
        ep.credential_helper_lifetime_ms = 600000;
        _cleanup_(fallback_freep) struct fallback *fb = fb_with(&ep);
        assert_int_equal(probe(fb), 404); /* the fixture asks for no credentials */
        assert_int_equal(lines_of(helper, "runs"), 1);

        struct reload_race race[THREADS];
        pthread_t threads[THREADS];
        for (size_t i = 0; i < THREADS; i++) {
                race[i] = (struct reload_race) { .fb = fb };
                assert_int_equal(pthread_create(&threads[i], NULL, reload_race_main, &race[i]), 0);
        }
        /* A reload takes some tens of microseconds, a fetch a millisecond: for a second, many
         * fetches begin while one runs. */
        uint64_t until = time_now_ms() + 1000;
        while (time_now_ms() < until)
                reconfigure(fb, &ep);
        unsigned fetches = 0;
        for (size_t i = 0; i < THREADS; i++) {
                atomic_store(&race[i].stop, true);
                pthread_join(threads[i], NULL);
                fetches += race[i].fetches;
        }
        assert_true(fetches > 0);
        assert_int_equal(lines_of(helper, "runs"), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_file_replaced, reset),
                cmocka_unit_test_setup(test_file_gone, reset),
                cmocka_unit_test_setup(test_token_of_old_credentials, reset),
                cmocka_unit_test_setup(test_file_read_error, reset),
                cmocka_unit_test_setup(test_helper_single_flight, reset),
                cmocka_unit_test_setup(test_helper_fails, reset),
                cmocka_unit_test_setup(test_helper_hangs, reset),
                cmocka_unit_test_setup(test_identity_token, reset),
                cmocka_unit_test_setup(test_identity_token_refused, reset),
                cmocka_unit_test_setup(test_identity_token_rotation, reset),
                cmocka_unit_test_setup(test_identity_token_helper_rotation, reset),
                cmocka_unit_test_setup(test_reconfigure, reset),
                cmocka_unit_test_setup(test_reconfigure_hands_over_first, reset),
                cmocka_unit_test_setup(test_client_auth_leaves_own_alone, reset),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
