/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the pull core (agent/manifest.c, agent/download.c,
 * agent/tags.c) and its HTTP front end (agent/http.c, agent/stream.c),
 * in-process: a real cache in a temporary directory, a real fallback client
 * built from a spec the way `layerd serve` builds it (agent_fallback_new()),
 * pointed at the fault-injecting fake registry tests/fixtures/upstream.py,
 * and for the front end a libmicrohttpd daemon on 127.0.0.1 with serve.c's
 * threading flags, asked through libcurl.
 *
 * Each case checks what the caller is told (the outcome's kind and errno,
 * the cache word of the log line: hit, miss, revalidated, stale) and, where
 * that is the point, how many requests reached the upstream (its request
 * log). Only the functions of the core's headers are used, never a
 * download's insides (the pull's thread count aside: wait_pull_idle()).
 * Every wait is bounded (WAIT_MS, generous for valgrind); where the upstream
 * has to be slow (joins, streams), the fixture is told to delay or stall,
 * never the test to sleep. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"
#include "tests/unit/fallback/fixture.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/http.h"
#include "agent/pull-internal.h"
#include "cache/cache.h"
#include "common/digest.h"
#include "common/macro.h"
#include "common/time.h"
#include "hostsconfig/spec.h"

#define REG "fx.test"     /* the fixture, default timeouts */
#define SLOW "slow.test"  /* the fixture, idle timeout 1 s: a stalled body is resumed */
#define DOWN "down.test"  /* a port that refuses connections */
#define OWN "own.test"    /* the fixture, auth_passthrough off: layerd's own credentials only */
#define MIR "mir.test"    /* the fixture as a mirror (http://localhost:PORT, asked with ?ns=), then as the origin */
#define REPO "lib/app"
#define TAG "v1"
#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define BLOB_SIZE (600 * 1024) /* more than two of the download's 256 KiB batches */
#define STALL_AT (300 * 1024)  /* a stalled body stops here: one batch reached the cache */
#define JOINERS 6
#define DELAY_MS 1500          /* an upstream this slow keeps a download in flight while others join */
#define WAIT_MS 60000          /* the longest any one wait may take (valgrind included) */
#define HOUR_MS (3600 * 1000)

static struct {
        struct upstream up;
        struct hole down;
        unsigned char *blob;
        struct digest blob_digest;
        char blob_ds[DIGEST_STRING_MAX];
        struct digest absent_digest; /* a blob the upstream does not have */
        char *manifest;
        size_t manifest_size;
        struct digest manifest_digest;
        char manifest_ds[DIGEST_STRING_MAX];

        /* One test's. */
        char dir[64];
        struct cache *cache;
        struct fallback *fb;
        struct pull *pull;
        struct MHD_Daemon *mhd;
        uint16_t port;
} env;

/* ---- set-up ------------------------------------------------------------------------- */

static struct spec *make_spec(void) {
        _cleanup_free_ char *yaml = NULL;
        int n = asprintf(&yaml,
                         "version: 1\n"
                         "agent:\n"
                         "  cache_dir: %s\n"
                         "registries:\n"
                         "  \"" REG "\":\n"
                         "    origin: %s\n"
                         "    tag_ttl: 1h\n"
                         "  \"" SLOW "\":\n"
                         "    origin: %s\n"
                         "    endpoints: [{url: %s, timeouts: {idle: 1s}}]\n"
                         "  \"" DOWN "\":\n"
                         "    origin: %s\n"
                         "  \"" OWN "\":\n"
                         "    origin: %s\n"
                         "    auth_passthrough: false\n"
                         "  \"" MIR "\":\n"
                         "    origin: %s\n"
                         "    endpoints: [http://localhost:%d]\n",
                         env.dir, env.up.url, env.up.url, env.up.url, env.down.url, env.up.url, env.up.url,
                         env.up.port);
        assert_true(n > 0);
        struct spec *s = NULL;
        struct error_list errors;
        error_list_init(&errors, "spec");
        int r = spec_parse("spec.yaml", yaml, (size_t) n, env.dir, &s, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                fail_msg("spec_parse: %s", strerror(-r));
        }
        return s;
}

static int setup(void **state) {
        (void) state;
        upstream_reset(&env.up);
        upstream_put_blob(&env.up, env.blob_ds, env.blob, BLOB_SIZE);
        upstream_put_manifest(&env.up, REPO, TAG, NULL, env.manifest, env.manifest_size);
        hole_drain(&env.down);

        snprintf(env.dir, sizeof(env.dir), "/tmp/layerd-test-core-XXXXXX");
        assert_non_null(mkdtemp(env.dir));
        struct error_list errors;
        error_list_init(&errors, "cache");
        assert_int_equal(cache_open(env.dir, &env.cache, &errors), 0);
        struct spec *s = make_spec();
        error_list_init(&errors, "spec");
        assert_int_equal(agent_fallback_new(s, &env.fb, &errors), 0);
        assert_int_equal(pull_new(env.cache, env.dir, env.fb, s, &env.pull), 0);
        return 0;
}

static int teardown(void **state) {
        (void) state;
        /* serve.c's order: no thread of ours left, then the daemon, then the state. */
        int r = pull_shutdown(env.pull, WAIT_MS);
        if (env.mhd) {
                MHD_stop_daemon(env.mhd);
                env.mhd = NULL;
                if (r == 0)
                        r = pull_shutdown(env.pull, WAIT_MS);
        }
        assert_int_equal(r, 0);
        env.pull = pull_free(env.pull);
        env.fb = fallback_free(env.fb);
        env.cache = cache_close(env.cache);
        unit_rm_rf(env.dir);
        return 0;
}

/* setup(), and the HTTP front end as `layerd serve` runs it (serve.c's flags). */
static int setup_http(void **state) {
        setup(state);
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        env.mhd = MHD_start_daemon(flags, 0, NULL, NULL, http_handle, env.pull, MHD_OPTION_SOCK_ADDR, &sa,
                                   MHD_OPTION_NOTIFY_COMPLETED, http_completed, env.pull, MHD_OPTION_CONNECTION_LIMIT,
                                   64u, MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_THREAD_POOL_SIZE, 2u,
                                   MHD_OPTION_END);
        assert_non_null(env.mhd);
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(env.mhd, MHD_DAEMON_INFO_BIND_PORT);
        assert_non_null(info);
        assert_true(info->port > 0);
        env.port = info->port;
        return 0;
}

static int group_setup(void **state) {
        (void) state;
        assert_int_equal(fallback_global_init(), 0);
        env.blob = unit_pseudo_random(BLOB_SIZE);
        assert_int_equal(digest_buffer(DIGEST_SHA256, env.blob, BLOB_SIZE, &env.blob_digest), 0);
        digest_to_string(&env.blob_digest, env.blob_ds);
        assert_int_equal(digest_buffer(DIGEST_SHA256, "absent", 6, &env.absent_digest), 0);
        env.manifest = fixture_manifest(env.blob_ds, BLOB_SIZE, &env.manifest_size, &env.manifest_digest);
        digest_to_string(&env.manifest_digest, env.manifest_ds);
        upstream_spawn(&env.up);
        upstream_wait_ready(&env.up);
        hole_open(&env.down, false);
        return 0;
}

static int group_teardown(void **state) {
        (void) state;
        upstream_stop(&env.up);
        hole_close(&env.down);
        free(env.blob);
        free(env.manifest);
        fallback_global_done();
        return 0;
}

/* ---- helpers ------------------------------------------------------------------------ */

/* Requests that reached the upstream since the test began: method (NULL any), path containing part
 * ("/v2/": every registry request). */
static size_t upstream_requests(const char *method, const char *part) {
        json_t *log = upstream_log(&env.up);
        size_t n = log_count(log, method, part);
        json_decref(log);
        return n;
}

static struct manifest_query query_tag(const char *registry, const char *tag) {
        return (struct manifest_query) { .registry = registry, .repository = REPO, .tag = tag,
                                         .tag_ttl_ms = HOUR_MS, .may_block = true };
}

static struct manifest_query query_digest(const struct digest *d) {
        return (struct manifest_query) { .registry = REG, .repository = REPO, .digest = *d, .tag_ttl_ms = HOUR_MS,
                                         .may_block = true };
}

/* An answer that is the manifest, its bytes included (or not, for a HEAD). */
static void assert_manifest(const struct manifest_answer *a, bool body) {
        assert_true(digest_equal(&a->digest, &env.manifest_digest));
        assert_int_equal(a->size, env.manifest_size);
        assert_non_null(a->media_type);
        assert_string_equal(a->media_type, OCI_MANIFEST);
        if (body) {
                assert_non_null(a->body);
                assert_memory_equal(a->body, env.manifest, env.manifest_size);
        } else
                assert_null(a->body);
}

/* Resolves q; asserts the return (and, on success, that the answer is the manifest) and the cache word. */
static void expect_resolve(const struct manifest_query *q, int want_r, const char *want_cache) {
        struct manifest_answer a = {};
        struct outcome o = {};
        int r = manifest_resolve(env.pull, q, &a, &o);
        if (r != want_r)
                fail_msg("manifest_resolve: %d (%s), wanted %d; reason \"%s\"", r, strerror(-r), want_r, o.reason);
        if (want_cache) {
                assert_non_null(a.cache);
                assert_string_equal(a.cache, want_cache);
        }
        if (r == 0) {
                assert_int_equal(o.kind, OUTCOME_FOUND);
                assert_manifest(&a, !q->head);
                manifest_answer_done(&a);
        }
}

/* Makes the tag's record two hours old: past the 1 h TTL. */
static void age_record(const char *registry) {
        struct cache_tag t;
        assert_int_equal(cache_tag_get(env.cache, registry, REPO, TAG, &t), 0);
        t.fetched_at -= 2 * 3600;
        assert_int_equal(cache_tag_put(env.cache, registry, REPO, TAG, &t), 0);
}

/* Waits until the pull core runs no thread (downloads, workers): bounded. */
static void wait_pull_idle(void) {
        uint64_t deadline = time_deadline_ms(WAIT_MS);
        pthread_mutex_lock(&env.pull->lock);
        while (env.pull->threads > 0 &&
               time_cond_wait_until(&env.pull->ended, &env.pull->lock, deadline) != -ETIMEDOUT)
                ;
        unsigned left = env.pull->threads;
        pthread_mutex_unlock(&env.pull->lock);
        if (left)
                fail_msg("%u threads of the pull core still running after %d ms", left, WAIT_MS);
}

/* Reads entry e to its end (bounded), comparing with the blob: 0 when whole and equal. */
static int read_entry(struct cache_entry *e, size_t *ret_len) {
        _cleanup_(cache_reader_freep) struct cache_reader *rd = NULL;
        int r = cache_reader_new(e, &rd);
        size_t off = 0;
        char buf[64 * 1024];
        while (r >= 0) {
                ssize_t n = cache_reader_read(rd, buf, sizeof(buf), WAIT_MS);
                if (n <= 0) {
                        r = (int) n;
                        break;
                }
                if (off + (size_t) n > BLOB_SIZE || memcmp(buf, env.blob + off, (size_t) n) != 0)
                        r = -EBADMSG;
                off += (size_t) n;
        }
        *ret_len = off;
        return r == 0 && off != BLOB_SIZE ? -EMSGSIZE : r;
}

/* ---- manifests ------------------------------------------------------------------------ */

/* ---- access to private repositories (agent/access.c) --------------------------------- */

#define ALICE_PW "pw-of-alice"

/* access_check() for REPO's manifest TAG (or, with d, the object d) on registry reg. */
static enum access_verdict access_as(const char *reg, const char *repo, const struct digest *d, const char *header,
                                     bool may_block, struct access_answer *a) {
        void *token = NULL;
        const struct spec *sp = pull_spec_acquire(env.pull, &token);
        struct client_auth ca = {};
        char ds[DIGEST_STRING_MAX];
        struct access_query q = { .reg = spec_find_registry(sp, reg), .repository = repo,
                                  .kind = FALLBACK_MANIFEST, .reference = d ? digest_to_string(d, ds) : TAG,
                                  .digest = d, .client = &ca, .authorization = header, .may_block = may_block };
        struct outcome o;
        enum access_verdict v = access_check(env.pull, &q, a, &o);
        client_auth_wipe(&ca);
        pull_spec_release(env.pull, token);
        return v;
}

/* The challenge logic: public is served as ever; a private repository needs
 * credentials the origin accepted (one HEAD per verdict), wrong ones are
 * challenged and forgotten; a private digest under another name needs the
 * origin's word; never a blocking question on the event loop. */
static void test_access(void **state) {
        (void) state;
        upstream_auth(&env.up, "{\"mode\": \"basic\", \"user\": \"alice\", \"password\": \"" ALICE_PW "\", "
                               "\"private\": [\"" REPO "\"]}");
        _cleanup_free_ char *b64 = unit_base64("alice:" ALICE_PW);
        _cleanup_free_ char *good = NULL, *bad = NULL;
        assert_true(asprintf(&good, "Basic %s", b64) > 0);
        _cleanup_free_ char *b64bad = unit_base64("alice:wrong");
        assert_true(asprintf(&bad, "Basic %s", b64bad) > 0);
        struct access_answer a;

        /* Not known private: served, nothing asked. */
        assert_int_equal(access_as(REG, REPO, NULL, NULL, true, &a), ACCESS_ALLOW);
        assert_false(a.private_repo);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 0);

        struct digest ds[1] = { env.manifest_digest };
        assert_int_equal(private_mark(env.pull->private, REG, REPO, ds, 1), 0);
        assert_int_equal(access_as(REG, REPO, NULL, NULL, true, &a), ACCESS_CHALLENGE);
        assert_int_equal(access_as(REG, REPO, NULL, good, false, &a), ACCESS_WOULD_BLOCK);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 0);
        assert_int_equal(access_as(REG, REPO, NULL, good, true, &a), ACCESS_ALLOW);
        assert_int_equal(a.how, ACCESS_HOW_VERDICT_MISS);
        assert_true(a.private_repo);
        /* One check: the origin's 401 saying Basic, then the HEAD with the credentials. */
        assert_int_equal(upstream_requests("HEAD", "/manifests/" TAG), 2);
        assert_int_equal(access_as(REG, REPO, NULL, good, false, &a), ACCESS_ALLOW); /* on the event loop */
        assert_int_equal(a.how, ACCESS_HOW_VERDICT_HIT);
        assert_int_equal(access_as(REG, REPO, &env.manifest_digest, good, false, &a), ACCESS_ALLOW);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 2);

        /* Wrong credentials: asked, refused, challenged; the good ones keep their verdict. */
        assert_int_equal(access_as(REG, REPO, NULL, bad, true, &a), ACCESS_CHALLENGE);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 3); /* Basic up front now */
        assert_int_equal(access_as(REG, REPO, NULL, bad, true, &a), ACCESS_CHALLENGE);
        assert_int_equal(access_as(REG, REPO, NULL, good, false, &a), ACCESS_ALLOW);

        /* The private manifest's digest under another name: the origin is asked
         * (anonymously: that repository is not private) and says 404. */
        assert_int_equal(access_as(REG, "other/app", &env.manifest_digest, NULL, false, &a), ACCESS_WOULD_BLOCK);
        assert_int_equal(access_as(REG, "other/app", &env.manifest_digest, good, true, &a), ACCESS_NOT_FOUND);
        json_auto_t *log = upstream_log(&env.up);
        size_t last = json_array_size(log) - 1;
        assert_non_null(strstr(log_path(log, last), "/v2/other/app/manifests/sha256:"));
        assert_null(log_header(log, last, "authorization"));
        /* Once the origin has it there too, it says so, and that is remembered. */
        upstream_put_manifest(&env.up, "other/app", TAG, NULL, env.manifest, env.manifest_size);
        assert_int_equal(access_as(REG, "other/app", &env.manifest_digest, NULL, true, &a), ACCESS_ALLOW);
        assert_int_equal(a.how, ACCESS_HOW_CONFIRMED);
        bool here = false;
        assert_true(private_digest(env.pull->private, &env.manifest_digest, REG, "other/app", &here));
        assert_true(here);
        assert_int_equal(access_as(REG, "other/app", &env.manifest_digest, NULL, false, &a), ACCESS_ALLOW);
}

/* The origin down: credentials it accepted within auth_outage_grace still read
 * what they were accepted for; older ones, none, or another repository's: no. */
static void test_access_outage(void **state) {
        (void) state;
        assert_int_equal(private_mark(env.pull->private, DOWN, REPO, NULL, 0), 0);
        _cleanup_free_ char *b64 = unit_base64("alice:" ALICE_PW);
        _cleanup_free_ char *good = NULL;
        assert_true(asprintf(&good, "Basic %s", b64) > 0);
        struct client_auth ca;
        assert_int_equal(client_auth_parse(good, env.pull->auth_salt, sizeof(env.pull->auth_salt), &ca), 0);
        uint64_t now = time_now_ms();
        struct access_answer a;
        /* Past the verdict's 60 s, inside the hour of grace. */
        struct verdict_key k;
        verdict_key(ca.key, DOWN, REPO, &k);
        verdict_accept(&env.pull->verdicts, &k, now - 61 * 1000);
        assert_int_equal(access_as(DOWN, REPO, NULL, good, true, &a), ACCESS_ALLOW);
        assert_int_equal(a.how, ACCESS_HOW_GRACE);
        assert_int_equal(access_as(DOWN, REPO, NULL, NULL, true, &a), ACCESS_CHALLENGE);
        assert_int_equal(private_mark(env.pull->private, DOWN, "other/app", NULL, 0), 0);
        assert_int_equal(access_as(DOWN, "other/app", NULL, good, true, &a), ACCESS_UNAVAILABLE);
        /* Past the grace. */
        verdict_accept(&env.pull->verdicts, &k, now - HOUR_MS - 1000);
        assert_int_equal(access_as(DOWN, REPO, NULL, good, true, &a), ACCESS_UNAVAILABLE);
        client_auth_wipe(&ca);
}

/* auth_passthrough off: what is recorded private is checked with layerd's own
 * credentials, and the origin's verdict on them is kept as a client's is: one
 * HEAD per auth_verdict_ttl, not one per request (a client's header changes
 * nothing). */
static void test_access_own_verdict(void **state) {
        (void) state;
        struct digest ds[1] = { env.manifest_digest };
        assert_int_equal(private_mark(env.pull->private, OWN, REPO, ds, 1), 0);
        _cleanup_free_ char *b64 = unit_base64("alice:" ALICE_PW);
        _cleanup_free_ char *header = NULL;
        assert_true(asprintf(&header, "Basic %s", b64) > 0);
        struct access_answer a;
        assert_int_equal(access_as(OWN, REPO, NULL, NULL, false, &a), ACCESS_WOULD_BLOCK);
        assert_int_equal(access_as(OWN, REPO, NULL, NULL, true, &a), ACCESS_ALLOW);
        assert_int_equal(a.how, ACCESS_HOW_VERDICT_MISS);
        assert_false(a.with_client);
        assert_int_equal(upstream_requests("HEAD", "/manifests/"), 1);
        for (int i = 0; i < 5; i++) {
                assert_int_equal(access_as(OWN, REPO, i % 2 ? &env.manifest_digest : NULL, i == 3 ? header : NULL,
                                           false, &a),
                                 ACCESS_ALLOW);
                assert_int_equal(a.how, ACCESS_HOW_VERDICT_HIT);
                assert_false(a.with_client);
        }
        assert_int_equal(upstream_requests(NULL, "/v2/"), 1);
        json_auto_t *log = upstream_log(&env.up);
        assert_null(log_header(log, 0, "authorization"));
        /* Another repository recorded private: its own verdict. */
        assert_int_equal(private_mark(env.pull->private, OWN, "other/app", NULL, 0), 0);
        upstream_put_manifest(&env.up, "other/app", TAG, NULL, env.manifest, env.manifest_size);
        assert_int_equal(access_as(OWN, "other/app", NULL, NULL, true, &a), ACCESS_ALLOW);
        assert_int_equal(a.how, ACCESS_HOW_VERDICT_MISS);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 2);
}

static void test_manifest_by_digest(void **state) {
        (void) state;
        struct manifest_query q = query_digest(&env.manifest_digest);
        struct manifest_answer a = {};
        struct outcome o;
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), 0);
        assert_string_equal(a.cache, "miss");
        assert_true(a.fetched);
        assert_manifest(&a, true);
        assert_string_equal(a.endpoint, env.up.url);
        manifest_answer_done(&a);
        assert_int_equal(upstream_requests("GET", "/manifests/"), 1);

        /* Stored once verified: the second time from the cache alone. */
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), 0);
        assert_string_equal(a.cache, "hit");
        assert_false(a.fetched);
        assert_manifest(&a, true);
        manifest_answer_done(&a);
        assert_int_equal(upstream_requests(NULL, "/manifests/"), 1);

        /* A digest upstream does not know: not found. */
        struct manifest_query q2 = query_digest(&env.absent_digest);
        assert_int_equal(manifest_resolve(env.pull, &q2, &a, &o), -ENOENT);
        assert_int_equal(o.kind, OUTCOME_NOT_FOUND);
        assert_string_equal(a.cache, "miss");
}

/* A tag the node never saw: a HEAD for its digest, the manifest by digest;
 * then a record younger than tag_ttl answers without upstream. */
static void test_tag_fresh(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, TAG);
        expect_resolve(&q, 0, "miss");
        assert_int_equal(upstream_requests("HEAD", "/manifests/" TAG), 1);
        assert_int_equal(upstream_requests("GET", "/manifests/sha256:"), 1);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 2);
        struct cache_tag t;
        assert_int_equal(cache_tag_get(env.cache, REG, REPO, TAG, &t), 0);
        assert_true(digest_equal(&t.digest, &env.manifest_digest));

        expect_resolve(&q, 0, "hit");
        assert_int_equal(upstream_requests(NULL, "/v2/"), 2);
}

/* A record older than tag_ttl: one HEAD revalidates it (no GET: the bytes are here). */
static void test_tag_revalidated(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, TAG);
        expect_resolve(&q, 0, "miss");
        age_record(REG);
        size_t before = upstream_requests(NULL, "/v2/");
        expect_resolve(&q, 0, "revalidated");
        assert_int_equal(upstream_requests(NULL, "/v2/"), before + 1);
        assert_int_equal(upstream_requests("HEAD", "/manifests/" TAG), 2);
        /* The record is young again. */
        struct cache_tag t;
        assert_int_equal(cache_tag_get(env.cache, REG, REPO, TAG, &t), 0);
        assert_true(t.fetched_at >= (int64_t) time(NULL) - 60);
        expect_resolve(&q, 0, "hit");
        assert_int_equal(upstream_requests(NULL, "/v2/"), before + 1);

        /* The tag moved upstream meanwhile: the new manifest, not the record's. */
        age_record(REG);
        static const char moved[] = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\",\"layers\":[]}";
        upstream_put_manifest(&env.up, REPO, TAG, NULL, moved, sizeof(moved) - 1);
        struct manifest_answer a = {};
        struct outcome o;
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), 0);
        assert_string_equal(a.cache, "miss");
        assert_int_equal(a.size, sizeof(moved) - 1);
        assert_memory_equal(a.body, moved, sizeof(moved) - 1);
        manifest_answer_done(&a);
}

/* Every upstream fails (a 5xx; a refused connection) and the record is
 * expired: the last known answer stands, said as stale. */
static void test_tag_stale(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, TAG);
        expect_resolve(&q, 0, "miss");
        age_record(REG);
        upstream_rules(&env.up, "[{\"path\": \"/manifests/\", \"status\": 503}]");
        struct manifest_answer a = {};
        struct outcome o;
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), 0);
        assert_string_equal(a.cache, "stale");
        assert_true(a.stale);
        assert_int_equal(o.kind, OUTCOME_FOUND);
        assert_manifest(&a, true);
        manifest_answer_done(&a);
        assert_true(upstream_requests("HEAD", "/manifests/" TAG) >= 2);
        assert_int_equal(atomic_load(&env.pull->stale_serves), 1);

        /* The in-process API says so too (the spec's tag_ttl: 1h, the record is older). */
        struct pull_manifest m = {};
        assert_int_equal(pull_manifest_ensure(env.pull, REG, REPO, TAG, false, &m), 0);
        assert_true(m.stale);
        assert_false(m.fetched);
        assert_true(digest_equal(&m.digest, &env.manifest_digest));
        pull_manifest_done(&m);

        /* Nobody listening at all: the same, HEAD included (a record of
         * down.test's for the manifest already in the cache). */
        struct cache_tag t = { .digest = env.manifest_digest, .size = env.manifest_size,
                               .fetched_at = (int64_t) time(NULL) - 2 * 3600 };
        snprintf(t.media_type, sizeof(t.media_type), OCI_MANIFEST);
        assert_int_equal(cache_tag_put(env.cache, DOWN, REPO, TAG, &t), 0);
        struct manifest_query down = query_tag(DOWN, TAG);
        expect_resolve(&down, 0, "stale");
        down.head = true;
        expect_resolve(&down, 0, "stale");
}

/* 404 from upstream is "not found", and so are 401 and 403; a record does
 * not make it stale-if-error (the tag is gone, not the upstream). */
static void test_tag_not_found(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, "nope");
        struct manifest_answer a = {};
        struct outcome o;
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -ENOENT);
        assert_int_equal(o.kind, OUTCOME_NOT_FOUND);
        assert_string_equal(o.reason, "upstream answered 404");
        assert_string_equal(a.cache, "miss");
        assert_null(a.body);

        q = query_tag(REG, TAG);
        expect_resolve(&q, 0, "miss");
        age_record(REG);
        static const int statuses[] = { 404, 401, 403 };
        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                upstream_rules(&env.up, "[{\"path\": \"/manifests/\", \"status\": %d}]", statuses[i]);
                assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -ENOENT);
                assert_int_equal(o.kind, OUTCOME_NOT_FOUND);
                assert_string_equal(a.cache, "miss");
                assert_false(a.stale);
                struct pull_manifest m = {};
                assert_int_equal(pull_manifest_ensure(env.pull, REG, REPO, TAG, false, &m), -ENOENT);
        }
}

/* No upstream answers and the node has no record: unavailable. */
static void test_tag_unavailable(void **state) {
        (void) state;
        struct manifest_query q = query_tag(DOWN, TAG);
        struct manifest_answer a = {};
        struct outcome o;
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -EHOSTUNREACH);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
        assert_string_equal(a.cache, "miss");

        upstream_rules(&env.up, "[{\"path\": \"/manifests/\", \"status\": 500}]");
        q = query_tag(REG, TAG);
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -EHOSTUNREACH);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
        assert_string_equal(a.cache, "miss");
        struct pull_manifest m = {};
        assert_int_equal(pull_manifest_ensure(env.pull, DOWN, REPO, TAG, false, &m), -EHOSTUNREACH);
}

/* On the event loop (may_block false) nothing waits for upstream: what needs it is -EWOULDBLOCK. */
static void test_may_block(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, TAG);
        q.may_block = false;
        struct manifest_answer a = {};
        struct outcome o;
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -EWOULDBLOCK);
        struct manifest_query qd = query_digest(&env.manifest_digest);
        qd.may_block = false;
        assert_int_equal(manifest_resolve(env.pull, &qd, &a, &o), -EWOULDBLOCK);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 0);

        /* Once there, a fresh record and the bytes answer on the loop; an expired record does not. */
        q.may_block = true;
        expect_resolve(&q, 0, "miss");
        q.may_block = false;
        expect_resolve(&q, 0, "hit");
        expect_resolve(&qd, 0, "hit");
        age_record(REG);
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -EWOULDBLOCK);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 2);
}

/* containerd's first request, HEAD by tag: answered from a fresh record with
 * no bytes read and no upstream; from an expired one with one HEAD upstream. */
static void test_head_from_record(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, TAG);
        q.head = true;
        expect_resolve(&q, 0, "miss");
        /* A HEAD needs no body: none was fetched. */
        assert_int_equal(upstream_requests("GET", "/v2/"), 0);
        assert_int_equal(upstream_requests("HEAD", "/manifests/" TAG), 1);
        expect_resolve(&q, 0, "hit");
        assert_int_equal(upstream_requests(NULL, "/v2/"), 1);
        age_record(REG);
        expect_resolve(&q, 0, "revalidated");
        assert_int_equal(upstream_requests("HEAD", "/manifests/" TAG), 2);
        assert_int_equal(upstream_requests("GET", "/v2/"), 0);
}

/* Offline: the node's records and cache only, any age; nothing asked upstream. */
static void test_offline(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, TAG);
        q.offline = true;
        struct manifest_answer a = {};
        struct outcome o;
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -ENOENT);
        assert_int_equal(o.kind, OUTCOME_NOT_FOUND);
        assert_string_equal(o.reason, "no record of the tag");
        struct manifest_query qd = query_digest(&env.manifest_digest);
        qd.offline = true;
        assert_int_equal(manifest_resolve(env.pull, &qd, &a, &o), -ENOENT);
        assert_string_equal(o.reason, "not in the cache");
        struct pull_manifest m = {};
        assert_int_equal(pull_manifest_ensure(env.pull, REG, REPO, TAG, true, &m), -ENOENT);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 0);

        q.offline = false;
        expect_resolve(&q, 0, "miss");
        size_t before = upstream_requests(NULL, "/v2/");
        age_record(REG);
        q.offline = true;
        expect_resolve(&q, 0, "hit");
        expect_resolve(&qd, 0, "hit");
        assert_int_equal(pull_manifest_ensure(env.pull, REG, REPO, TAG, true, &m), 0);
        assert_false(m.fetched);
        assert_true(digest_equal(&m.digest, &env.manifest_digest));
        pull_manifest_done(&m);
        /* Offline takes any registry name (what the node holds is all there is). */
        assert_int_equal(pull_manifest_ensure(env.pull, "elsewhere.test", REPO, TAG, true, &m), -ENOENT);
        assert_int_equal(upstream_requests(NULL, "/v2/"), before);
}

/* The in-process API's own refusals, before any upstream. */
static void test_manifest_ensure_refusals(void **state) {
        (void) state;
        struct pull_manifest m = {};
        assert_int_equal(pull_manifest_ensure(env.pull, "elsewhere.test", REPO, TAG, false, &m), -ENXIO);
        assert_int_equal(pull_manifest_ensure(env.pull, REG, REPO, "bad tag", false, &m), -EINVAL);
        assert_int_equal(pull_manifest_ensure(env.pull, REG, "Bad/Repo", TAG, false, &m), -EINVAL);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 0);
        assert_int_equal(pull_manifest_ensure(env.pull, REG, REPO, env.manifest_ds, false, &m), 0);
        assert_true(m.fetched);
        assert_false(m.stale);
        assert_int_equal(m.size, env.manifest_size);
        assert_string_equal(m.media_type, OCI_MANIFEST);
        pull_manifest_done(&m);
}

/* ---- blobs -------------------------------------------------------------------------- */

static void test_blob_ensure_once(void **state) {
        (void) state;
        bool fetched = false;
        uint64_t size = 0;
        assert_int_equal(pull_blob_ensure(env.pull, REG, REPO, &env.blob_digest, BLOB_SIZE, NULL, false, &fetched,
                                          &size),
                         0);
        assert_true(fetched);
        assert_int_equal(size, BLOB_SIZE);
        assert_int_equal(pull_blob_ensure(env.pull, REG, REPO, &env.blob_digest, -1, NULL, false, &fetched, &size),
                         0);
        assert_false(fetched);
        assert_int_equal(size, BLOB_SIZE);
        /* Offline: present and hashed again. */
        assert_int_equal(pull_blob_ensure(env.pull, REG, REPO, &env.blob_digest, -1, NULL, true, &fetched, &size), 0);
        assert_false(fetched);
        assert_int_equal(upstream_requests("GET", "/blobs/"), 1);

        assert_int_equal(pull_blob_ensure(env.pull, REG, REPO, &env.absent_digest, -1, NULL, true, &fetched, &size),
                         -ENOENT);
        assert_int_equal(pull_blob_ensure(env.pull, "elsewhere.test", REPO, &env.absent_digest, -1, NULL, false,
                                          &fetched, &size),
                         -ENXIO);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 1);
}

/* Prefetch of a private repository's blob records it only once the origin
 * answered with it: a digest the repository does not have (404) is not
 * recorded for it (a stale entry would let the repository's readers have the
 * blob once another's download stored it). */
static void test_blob_ensure_private_marks_at_answer(void **state) {
        (void) state;
        assert_int_equal(private_mark(env.pull->private, REG, REPO, NULL, 0), 0);
        bool fetched = false, here = false;
        uint64_t size = 0;
        assert_int_equal(pull_blob_ensure(env.pull, REG, REPO, &env.absent_digest, -1, NULL, false, &fetched, &size),
                         -ENOENT);
        assert_false(private_digest(env.pull->private, &env.absent_digest, REG, REPO, NULL));
        assert_int_equal(pull_blob_ensure(env.pull, REG, REPO, &env.blob_digest, BLOB_SIZE, NULL, false, &fetched,
                                          &size),
                         0);
        assert_true(fetched);
        assert_true(private_digest(env.pull->private, &env.blob_digest, REG, REPO, &here));
        assert_true(here);
}

/* Content cached while its repository was public is recorded private when a
 * manifest of the repository, now known private, is served from the cache:
 * the manifest and what it refers to. Served again: nothing new written. */
static void test_manifest_marked_when_served(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, TAG);
        expect_resolve(&q, 0, "miss"); /* public: stored unmarked */
        assert_int_equal(private_count(env.pull->private), 0);
        assert_int_equal(private_mark(env.pull->private, REG, REPO, NULL, 0), 0); /* turned private */
        q.private_repo = true;
        expect_resolve(&q, 0, "hit");
        bool here = false;
        assert_true(private_digest(env.pull->private, &env.manifest_digest, REG, REPO, &here));
        assert_true(here);
        assert_true(private_digest(env.pull->private, &env.blob_digest, REG, REPO, &here));
        assert_true(here);
        assert_true(private_digest(env.pull->private, &env.blob_digest, REG, "other/app", &here));
        assert_false(here);
        size_t n = private_count(env.pull->private);
        char path[128];
        snprintf(path, sizeof(path), "%s/%s", env.dir, PRIVATE_FILE);
        struct stat st0, st1;
        assert_int_equal(stat(path, &st0), 0);
        expect_resolve(&q, 0, "hit");
        assert_int_equal(stat(path, &st1), 0);
        assert_int_equal(private_count(env.pull->private), n);
        assert_int_equal(st1.st_size, st0.st_size);
        /* A HEAD sends no content: nothing to mark. */
        assert_int_equal(upstream_requests(NULL, "/v2/"), 2);
}

/* A fresh tag record naming a digest private elsewhere and not recorded for
 * the repository (every cached digest, once the private-content table was
 * found deleted) is not trusted: the origin is asked, and nothing is served
 * stale while it is down. */
static void test_tag_record_of_private_digest(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, TAG);
        expect_resolve(&q, 0, "miss");
        expect_resolve(&q, 0, "hit");
        assert_int_equal(upstream_requests("HEAD", "/manifests/" TAG), 1);
        assert_int_equal(private_adopt_lost(env.pull->private, &env.manifest_digest, 1), 0);
        upstream_rules(&env.up, "[{\"path\": \"/manifests/\", \"status\": 503}]");
        struct manifest_answer a = {};
        struct outcome o;
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -EHOSTUNREACH);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
        assert_int_equal(atomic_load(&env.pull->stale_serves), 0);
        assert_int_equal(upstream_requests("HEAD", "/manifests/" TAG), 2);
}

/* The origin's answer for the tag of a public repository confirms its digest
 * there: the record is trusted again, fresh and stale. */
static void test_tag_record_confirmed(void **state) {
        (void) state;
        struct manifest_query q = query_tag(REG, TAG);
        expect_resolve(&q, 0, "miss");
        assert_int_equal(private_adopt_lost(env.pull->private, &env.manifest_digest, 1), 0);
        expect_resolve(&q, 0, "revalidated");
        assert_int_equal(upstream_requests("HEAD", "/manifests/" TAG), 2);
        bool here = false;
        assert_true(private_digest(env.pull->private, &env.manifest_digest, REG, REPO, &here));
        assert_true(here);
        expect_resolve(&q, 0, "hit");
        assert_int_equal(upstream_requests("HEAD", "/manifests/" TAG), 2);
        /* Stale once the record is old and the origin down: q's tag_ttl made 0. */
        q.tag_ttl_ms = 0;
        upstream_rules(&env.up, "[{\"path\": \"/manifests/\", \"status\": 503}]");
        expect_resolve(&q, 0, "stale");
        assert_int_equal(atomic_load(&env.pull->stale_serves), 1);
}

/* The agent's upkeep prunes while serving, on a thread of its own, once the
 * interval passed: a recorded digest the cache no longer has is dropped, a
 * cached one kept; before the interval nothing runs. */
static void test_private_upkeep(void **state) {
        (void) state;
        bool fetched = false;
        uint64_t size = 0, now = time_now_ms();
        assert_int_equal(private_mark(env.pull->private, REG, REPO, NULL, 0), 0);
        assert_int_equal(pull_blob_ensure(env.pull, REG, REPO, &env.blob_digest, BLOB_SIZE, NULL, false, &fetched,
                                          &size),
                         0);
        assert_int_equal(private_mark(env.pull->private, REG, REPO, &env.absent_digest, 1), 0);
        assert_int_equal(private_count(env.pull->private), 3);
        pull_private_upkeep(env.pull, now);
        wait_pull_idle();
        assert_int_equal(private_count(env.pull->private), 3);
        pull_private_upkeep(env.pull, now + PRIVATE_PRUNE_INTERVAL_MS + 1000);
        wait_pull_idle();
        assert_int_equal(private_count(env.pull->private), 2);
        assert_false(private_digest(env.pull->private, &env.absent_digest, REG, REPO, NULL));
        assert_true(private_digest(env.pull->private, &env.blob_digest, REG, "other/app", NULL));
        assert_int_equal(atomic_load(&env.pull->private_prunes), 1);
        assert_int_equal(atomic_load(&env.pull->private_pruned), 1);
}

struct joiner {
        pthread_barrier_t *barrier;
        bool prefetch; /* pull_blob_ensure() (a prefetch round) instead of a client's join */
        int r;         /* the join's (or pull_blob_ensure()'s) return */
        bool started;  /* this one started the download (prefetch: fetched it) */
        int read_r;    /* reading the entry to its end: 0 (whole and equal), or the download's verdict */
        size_t read_len;
        struct outcome o; /* download_outcome() of a failed read */
};

/* No cmocka assertion off the main thread: everything is recorded for it. */
static void *joiner_main(void *arg) {
        struct joiner *j = arg;
        pthread_barrier_wait(j->barrier);
        if (j->prefetch) {
                uint64_t size = 0;
                j->r = pull_blob_ensure(env.pull, REG, REPO, &env.blob_digest, BLOB_SIZE, NULL, false, &j->started,
                                        &size);
                j->read_r = j->r == 0 && size != BLOB_SIZE ? -EMSGSIZE : j->r;
                return NULL;
        }
        struct download_want w = { .registry = REG, .repository = REPO, .digest = env.blob_digest, .size = -1,
                                   .finish_abandoned = true };
        struct download_hold h;
        j->r = download_join_or_start(env.pull, &w, &h);
        if (j->r < 0)
                return NULL;
        j->started = h.started;
        j->read_r = read_entry(h.entry, &j->read_len);
        if (j->read_r < 0)
                download_outcome(j->read_r, &j->o);
        download_release(&h);
        return NULL;
}

/* JOINERS threads (one of them a prefetch round) want the blob at once from
 * an upstream that takes DELAY_MS to answer its GET, and then does what
 * rule (more of the fixture's rule keys, "" for none) says; their results in js. */
static void run_joiners(struct joiner js[static JOINERS], const char *rule) {
        upstream_rules(&env.up, "[{\"path\": \"/blobs/\", \"method\": \"GET\", \"delay_ms\": %d%s%s}]", DELAY_MS,
                       rule[0] ? ", " : "", rule);
        pthread_barrier_t barrier;
        assert_int_equal(pthread_barrier_init(&barrier, NULL, JOINERS), 0);
        pthread_t th[JOINERS];
        for (size_t i = 0; i < JOINERS; i++) {
                js[i] = (struct joiner) { .barrier = &barrier, .prefetch = i == JOINERS - 1 };
                assert_int_equal(pthread_create(&th[i], NULL, joiner_main, &js[i]), 0);
        }
        /* Each joiner's waits are bounded (WAIT_MS): the joins end. */
        for (size_t i = 0; i < JOINERS; i++)
                assert_int_equal(pthread_join(th[i], NULL), 0);
        pthread_barrier_destroy(&barrier);
}

/* One download for everybody: one started it, the rest joined, all read the committed blob. */
static void test_join_one_download(void **state) {
        (void) state;
        struct joiner js[JOINERS];
        run_joiners(js, "");
        unsigned started = 0;
        for (size_t i = 0; i < JOINERS; i++) {
                if (js[i].r != 0 || js[i].read_r != 0)
                        fail_msg("joiner %zu%s: join %d (%s), read %d (%s) after %zu bytes", i,
                                 js[i].prefetch ? " (prefetch)" : "", js[i].r, strerror(-js[i].r), js[i].read_r,
                                 strerror(-js[i].read_r), js[i].read_len);
                started += js[i].started;
        }
        assert_int_equal(started, 1);
        assert_int_equal(upstream_requests("GET", "/blobs/"), 1);
        uint64_t size = 0;
        assert_int_equal(cache_stat(env.cache, &env.blob_digest, &size), 0);
        assert_int_equal(size, BLOB_SIZE);
        struct cache_stats cs;
        cache_get_stats(env.cache, &cs);
        assert_int_equal(cs.misses, 1);
        assert_int_equal(cs.joins, JOINERS - 1);
}

/* A failed download's verdict reaches every joiner: the outcome for clients,
 * the errno for prefetch. */
struct failure_case {
        const char *rule; /* the fixture's rule for the blob's GET (with the delay) */
        int error;        /* what every joiner is told */
        enum outcome_kind kind;
};

static void join_failure(const struct failure_case *fc) {
        struct joiner js[JOINERS];
        run_joiners(js, fc->rule);

        unsigned started = 0;
        for (size_t i = 0; i < JOINERS; i++) {
                started += js[i].started;
                if (js[i].prefetch) {
                        if (js[i].r != fc->error)
                                fail_msg("prefetch: %d (%s), wanted %d (%s)", js[i].r, strerror(-js[i].r), fc->error,
                                         strerror(-fc->error));
                        continue;
                }
                if (js[i].r != 0)
                        fail_msg("joiner %zu: join %d (%s)", i, js[i].r, strerror(-js[i].r));
                if (js[i].read_r != fc->error)
                        fail_msg("joiner %zu: read %d (%s), wanted %d (%s)", i, js[i].read_r, strerror(-js[i].read_r),
                                 fc->error, strerror(-fc->error));
                if (js[i].o.error != fc->error || js[i].o.kind != fc->kind)
                        fail_msg("joiner %zu: outcome %d/%d \"%s\", wanted %d/%d", i, js[i].o.kind, js[i].o.error,
                                 js[i].o.reason, fc->kind, fc->error);
        }
        /* A prefetch round that started it says nothing (it failed): at most one started. */
        assert_true(started <= 1);
        assert_int_equal(upstream_requests("GET", "/blobs/"), 1);
        assert_int_equal(cache_stat(env.cache, &env.blob_digest, &(uint64_t) { 0 }), -ENOENT);
}

static void test_join_failure_404(void **state) {
        (void) state;
        join_failure(&(struct failure_case) { "\"status\": 404", -ENOENT, OUTCOME_NOT_FOUND });
}

static void test_join_failure_500(void **state) {
        (void) state;
        join_failure(&(struct failure_case) { "\"status\": 500", -EHOSTUNREACH, OUTCOME_UNAVAILABLE });
}

static void test_join_failure_corrupt(void **state) {
        (void) state;
        join_failure(&(struct failure_case) { "\"corrupt\": true", -EBADMSG, OUTCOME_UNAVAILABLE });
}

/* The last client gone (agent.finish_abandoned_downloads false): the
 * download is cancelled long before its upstream would have sent it all,
 * and nothing is stored. */
static void test_abandoned_cancelled(void **state) {
        (void) state;
        /* One byte every 20 ms: this download would take hours. */
        upstream_rules(&env.up, "[{\"path\": \"/blobs/\", \"method\": \"GET\", \"trickle_ms\": 20}]");
        struct download_want w = { .registry = REG, .repository = REPO, .digest = env.blob_digest, .size = -1,
                                   .finish_abandoned = false };
        struct download_hold h;
        assert_int_equal(download_join_or_start(env.pull, &w, &h), 0);
        assert_true(h.started);
        /* Under way upstream: the headers (and so the size) are in. */
        uint64_t size = 0;
        assert_int_equal(cache_entry_wait_size(h.entry, WAIT_MS, &size), 0);
        assert_int_equal(size, BLOB_SIZE);
        download_release(&h);
        wait_pull_idle();
        assert_int_equal(cache_stat(env.cache, &env.blob_digest, &size), -ENOENT);
        struct cache_stats cs;
        cache_get_stats(env.cache, &cs);
        assert_int_equal(cs.committed, 0);
        assert_int_equal(cs.in_flight, 0);
}

/* ... and with finish_abandoned_downloads true it finishes into the cache. */
static void test_abandoned_finished(void **state) {
        (void) state;
        upstream_rules(&env.up, "[{\"path\": \"/blobs/\", \"method\": \"GET\", \"delay_ms\": %d}]", DELAY_MS);
        struct download_want w = { .registry = REG, .repository = REPO, .digest = env.blob_digest, .size = -1,
                                   .finish_abandoned = true };
        struct download_hold h;
        assert_int_equal(download_join_or_start(env.pull, &w, &h), 0);
        assert_true(h.started);
        download_release(&h);
        wait_pull_idle();
        uint64_t size = 0;
        assert_int_equal(cache_stat(env.cache, &env.blob_digest, &size), 0);
        assert_int_equal(size, BLOB_SIZE);
}

/* ---- tag lists ------------------------------------------------------------------------ */

/* The tags of a page (a JSON list as text, e.g. ["v1"]); the test frees it. */
static char *page_tags(const void *body, size_t size) {
        json_error_t jerr;
        json_t *page = json_loadb(body, size, 0, &jerr);
        if (!page)
                fail_msg("a tag list page that is no JSON: %.*s", (int) size, (const char *) body);
        char *tags = json_dumps(json_object_get(page, "tags"), JSON_COMPACT);
        json_decref(page);
        assert_non_null(tags);
        return tags;
}

/* Pages as upstream paginates them, each asked upstream once within its memory's time. */
static void test_tags_pages(void **state) {
        (void) state;
        upstream_put_manifest(&env.up, REPO, "v2", NULL, env.manifest, env.manifest_size);
        for (unsigned round = 0; round < 2; round++) {
                _cleanup_free_ void *body = NULL, *body2 = NULL;
                _cleanup_free_ char *next = NULL, *next2 = NULL;
                size_t size = 0;
                assert_int_equal(pull_tags_page(env.pull, REG, REPO, 1, NULL, &body, &size, &next), 0);
                _cleanup_free_ char *tags = page_tags(body, size);
                assert_string_equal(tags, "[\"v1\"]");
                assert_non_null(next);
                assert_string_equal(next, "v1");
                assert_int_equal(pull_tags_page(env.pull, REG, REPO, 1, next, &body2, &size, &next2), 0);
                _cleanup_free_ char *tags2 = page_tags(body2, size);
                assert_string_equal(tags2, "[\"v2\"]");
                assert_null(next2);
                assert_int_equal(upstream_requests("GET", "/tags/list"), 2);
        }
        void *body = NULL;
        size_t size = 0;
        char *next = NULL;
        assert_int_equal(pull_tags_page(env.pull, REG, "lib/none", 0, NULL, &body, &size, &next), -ENOENT);
        assert_int_equal(pull_tags_page(env.pull, DOWN, REPO, 0, NULL, &body, &size, &next), -EHOSTUNREACH);
        assert_int_equal(pull_tags_page(env.pull, REG, REPO, 0, "bad tag", &body, &size, &next), -EINVAL);
}

/* A client's tag list (tags_page() with a tags_access): of a private
 * repository, asked with the client's credentials and served from memory
 * only to credentials with a fresh verdict; without or with wrong ones,
 * -EACCES (the client is challenged) and never the list. */
static void tags_on(const char *reg, const char *header, int expect, enum access_how how) {
        struct client_auth ca = {};
        struct tags_access ta = { .client = &ca, .authorization = header };
        void *body = NULL;
        size_t size = 0;
        char *next = NULL;
        struct budget_hold held = {};
        int r = tags_page(env.pull, reg, REPO, 0, NULL, &ta, &body, &size, &next, &held);
        client_auth_wipe(&ca);
        if (r != expect)
                fail_msg("tags_page: %d (%s), expected %d", r, r < 0 ? strerror(-r) : "", expect);
        assert_int_equal(ta.answer.how, how);
        if (r == 0) {
                _cleanup_free_ char *tags = page_tags(body, size);
                assert_string_equal(tags, "[\"v1\"]");
        }
        free(body);
        free(next);
        budget_hold_release(&held);
}

static void tags_as(const char *header, int expect, enum access_how how) {
        tags_on(REG, header, expect, how);
}

static void test_tags_private(void **state) {
        (void) state;
        upstream_auth(&env.up, "{\"mode\": \"basic\", \"user\": \"alice\", \"password\": \"" ALICE_PW "\", "
                               "\"private\": [\"" REPO "\"]}");
        _cleanup_free_ char *b64 = unit_base64("alice:" ALICE_PW), *b64bad = unit_base64("alice:wrong");
        _cleanup_free_ char *good = NULL, *bad = NULL;
        assert_true(asprintf(&good, "Basic %s", b64) > 0);
        assert_true(asprintf(&bad, "Basic %s", b64bad) > 0);

        /* Not known private: asked anonymously, the origin's 401 makes it private. */
        tags_as(good, -EACCES, ACCESS_HOW_NONE);
        assert_true(private_repo(env.pull->private, REG, REPO));
        json_auto_t *first = upstream_log(&env.up);
        assert_null(log_header(first, 0, "authorization"));
        /* Now without credentials: challenged without asking. */
        tags_as(NULL, -EACCES, ACCESS_HOW_NONE);
        assert_int_equal(upstream_requests("GET", "/tags/list"), 1);
        /* With them: asked with them (Basic after the origin's 401), the list. */
        tags_as(good, 0, ACCESS_HOW_VERDICT_MISS);
        size_t asked = upstream_requests("GET", "/tags/list");
        /* Again: from memory, the verdict fresh. */
        tags_as(good, 0, ACCESS_HOW_VERDICT_HIT);
        assert_int_equal(upstream_requests("GET", "/tags/list"), asked);
        /* Wrong ones and none: never the remembered list. */
        tags_as(bad, -EACCES, ACCESS_HOW_VERDICT_MISS);
        assert_true(upstream_requests("GET", "/tags/list") > asked);
        tags_as(NULL, -EACCES, ACCESS_HOW_NONE);
        /* layerd's own question (prefetch) has no verdict: it asks, anonymously here, and is refused. */
        void *body = NULL;
        size_t size = 0;
        char *next = NULL;
        assert_int_equal(pull_tags_page(env.pull, REG, REPO, 0, NULL, &body, &size, &next), -ENOENT);
        /* The good ones keep their verdict. */
        asked = upstream_requests("GET", "/tags/list");
        tags_as(good, 0, ACCESS_HOW_VERDICT_HIT);
        assert_int_equal(upstream_requests("GET", "/tags/list"), asked);
        json_auto_t *log = upstream_log(&env.up);
        size_t n = json_array_size(log);
        bool sent = false;
        for (size_t i = 0; i < n; i++) {
                const char *h = log_header(log, i, "authorization");
                sent |= h && strstr(h, b64);
        }
        assert_true(sent);
}

/* A private repository's tag list with the client's credentials goes to the
 * origin alone: the mirror (the fixture asked with ?ns=) never sees it, nor
 * them; the public list goes through the mirror first, as ever. */
static void test_tags_mirror_skipped(void **state) {
        (void) state;
        upstream_put_manifest(&env.up, "pub/app", TAG, NULL, env.manifest, env.manifest_size);
        void *body = NULL;
        size_t size = 0;
        char *next = NULL;
        assert_int_equal(pull_tags_page(env.pull, MIR, "pub/app", 0, NULL, &body, &size, &next), 0);
        free(body);
        free(next);
        assert_int_equal(upstream_requests("GET", "/tags/list?ns=" MIR), 1); /* the mirror answered */
        upstream_auth(&env.up, "{\"mode\": \"basic\", \"user\": \"alice\", \"password\": \"" ALICE_PW "\", "
                               "\"private\": [\"" REPO "\"]}");
        assert_int_equal(private_mark(env.pull->private, MIR, REPO, NULL, 0), 0);
        _cleanup_free_ char *b64 = unit_base64("alice:" ALICE_PW);
        _cleanup_free_ char *good = NULL;
        assert_true(asprintf(&good, "Basic %s", b64) > 0);
        tags_on(MIR, good, 0, ACCESS_HOW_VERDICT_MISS);
        tags_on(MIR, good, 0, ACCESS_HOW_VERDICT_HIT);
        json_auto_t *log = upstream_log(&env.up);
        size_t n = json_array_size(log), origin = 0;
        for (size_t i = 0; i < n; i++) {
                const char *path = log_path(log, i);
                if (!strstr(path, "/v2/" REPO "/"))
                        continue;
                if (strstr(path, "ns="))
                        fail_msg("the mirror was asked for the private list: %s", path);
                origin++;
        }
        assert_true(origin >= 1);
}

/* ---- the HTTP front end -------------------------------------------------------------- */

struct http_result {
        long status;
        CURLcode code;
        struct fixture_buf body;
        struct fixture_buf headers;
        bool first_byte_seen;
        bool committed_at_first_byte; /* the blob was in the cache when its first byte arrived */
};

static size_t http_write(char *data, size_t size, size_t n, void *userdata) {
        struct http_result *res = userdata;
        if (!res->first_byte_seen && size * n > 0) {
                res->first_byte_seen = true;
                uint64_t sz;
                res->committed_at_first_byte = cache_stat(env.cache, &env.blob_digest, &sz) == 0;
        }
        return fixture_buf_write(data, size, n, &res->body);
}

/* method path (of the front end) with an optional Range; the caller frees with http_done(). */
static void http_do(const char *method, const char *path, const char *range, struct http_result *res) {
        *res = (struct http_result) {};
        _cleanup_free_ char *url = NULL;
        assert_true(asprintf(&url, "http://127.0.0.1:%u%s", env.port, path) > 0);
        CURL *h = curl_easy_init();
        assert_non_null(h);
        struct curl_slist *hdrs = NULL;
        _cleanup_free_ char *range_header = NULL;
        if (range) {
                assert_true(asprintf(&range_header, "Range: %s", range) > 0);
                hdrs = curl_slist_append(hdrs, range_header);
                assert_non_null(hdrs);
        }
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) WAIT_MS);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, res);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, fixture_buf_write);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &res->headers);
        if (strcmp(method, "HEAD") == 0)
                curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        else if (strcmp(method, "POST") == 0) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        }
        res->code = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(h);
}

static void http_done(struct http_result *res) {
        free(res->body.data);
        free(res->headers.data);
        *res = (struct http_result) {};
}

/* A response header line (case as sent) present, e.g. "Content-Range: bytes 0-9/10". */
static bool has_header(const struct http_result *res, const char *line) {
        return res->headers.data && strcasestr(res->headers.data, line);
}

/* GET (with an optional Range) of the blob through SLOW while its upstream
 * stalls once at STALL_AT (and is resumed after the idle timeout); corrupt:
 * the stalled part comes with wrong bytes. */
static void get_stalled(const char *range, bool corrupt, struct http_result *res) {
        upstream_rules(&env.up,
                       "[{\"path\": \"/blobs/\", \"method\": \"GET\", \"times\": 1, \"stall_after\": %d%s}]",
                       STALL_AT, corrupt ? ", \"corrupt\": true" : "");
        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "/v2/" REPO "/blobs/%s?ns=" SLOW, env.blob_ds) > 0);
        http_do("GET", path, range, res);
}

static void test_http_routes(void **state) {
        (void) state;
        struct http_result res;
        http_do("GET", "/v2/", NULL, &res);
        assert_int_equal(res.code, CURLE_OK);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.body.data, "{}");
        assert_true(has_header(&res, "Docker-Distribution-API-Version: registry/2.0"));
        http_done(&res);

        http_do("GET", "/v2/" REPO "/manifests/" TAG "?ns=elsewhere.test", NULL, &res);
        assert_int_equal(res.status, 404);
        assert_non_null(strstr(res.body.data, "\"NAME_UNKNOWN\""));
        http_done(&res);

        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "/v2/" REPO "/blobs/%s?ns=" REG, env.blob_ds) > 0);
        http_do("POST", path, NULL, &res);
        assert_int_equal(res.status, 405);
        assert_true(has_header(&res, "Allow: GET, HEAD"));
        assert_non_null(strstr(res.body.data, "\"UNSUPPORTED\""));
        http_done(&res);
        assert_int_equal(upstream_requests(NULL, "/v2/"), 0);

        /* A manifest by tag: deferred to a worker (it needs upstream), then 200. */
        http_do("HEAD", "/v2/" REPO "/manifests/" TAG "?ns=" REG, NULL, &res);
        assert_int_equal(res.code, CURLE_OK);
        assert_int_equal(res.status, 200);
        char line[DIGEST_STRING_MAX + 64];
        snprintf(line, sizeof(line), "Docker-Content-Digest: %s", env.manifest_ds);
        assert_true(has_header(&res, line));
        snprintf(line, sizeof(line), "Content-Length: %zu", env.manifest_size);
        assert_true(has_header(&res, line));
        http_done(&res);
        http_do("GET", "/v2/" REPO "/manifests/" TAG "?ns=" REG, NULL, &res);
        assert_int_equal(res.status, 200);
        assert_int_equal(res.body.len, env.manifest_size);
        assert_memory_equal(res.body.data, env.manifest, env.manifest_size);
        http_done(&res);
        http_do("GET", "/v2/" REPO "/manifests/nope?ns=" REG, NULL, &res);
        assert_int_equal(res.status, 404);
        assert_non_null(strstr(res.body.data, "\"MANIFEST_UNKNOWN\""));
        http_done(&res);
}

/* The memory budget (agent.max_inflight_memory): a manifest fetched or read
 * from the cache takes its bytes from it, for as long as the answer holds
 * them; past it the answer is "unavailable" (503) at once, saying why, with
 * no upstream request for what the cache has, and the refusal is counted. */
static void test_budget(void **state) {
        (void) state;
        struct budget *b = &env.pull->budget;
        struct manifest_query q = query_digest(&env.manifest_digest);
        struct manifest_answer a = {};
        struct outcome o;
        budget_set_limit(b, 16);
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -ENOBUFS);
        assert_int_equal(o.kind, OUTCOME_UNAVAILABLE);
        assert_string_equal(o.reason, OUTCOME_BUDGET_REASON);
        assert_int_equal(budget_held(b), 0);

        budget_set_limit(b, 1u << 20);
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), 0);
        assert_string_equal(a.cache, "miss");
        assert_true(a.held.n >= env.manifest_size);
        assert_int_equal(budget_held(b), a.held.n);
        manifest_answer_done(&a);
        assert_int_equal(budget_held(b), 0);
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), 0);
        assert_string_equal(a.cache, "hit");
        assert_int_equal(budget_held(b), env.manifest_size);
        manifest_answer_done(&a);

        /* Cached, but no room to read it: refused, upstream not asked. */
        budget_set_limit(b, env.manifest_size - 1);
        assert_int_equal(manifest_resolve(env.pull, &q, &a, &o), -ENOBUFS);
        assert_int_equal(upstream_requests(NULL, "/manifests/"), 2); /* the refused fetch and the miss */

        /* Through HTTP: 503 with the reason; a tag page and a blob stream too. */
        struct http_result res;
        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "/v2/" REPO "/manifests/%s?ns=" REG, env.manifest_ds) > 0);
        http_do("GET", path, NULL, &res);
        assert_int_equal(res.status, 503);
        assert_non_null(strstr(res.body.data, OUTCOME_BUDGET_REASON));
        http_done(&res);
        budget_set_limit(b, 8); /* less than the small tag page */
        http_do("GET", "/v2/" REPO "/tags/list?ns=" REG, NULL, &res);
        assert_int_equal(res.status, 503);
        http_done(&res);
        free(path);
        assert_true(asprintf(&path, "/v2/" REPO "/blobs/%s?ns=" REG, env.blob_ds) > 0);
        http_do("GET", path, NULL, &res);
        assert_int_equal(res.status, 503);
        assert_non_null(strstr(res.body.data, OUTCOME_BUDGET_REASON));
        http_done(&res);
        assert_int_equal(atomic_load(&env.pull->budget_refusals), 3);

        /* With room again, all is answered and all given back. */
        budget_set_limit(b, 4u << 20);
        http_do("GET", path, NULL, &res);
        assert_int_equal(res.status, 200);
        assert_int_equal(res.body.len, BLOB_SIZE);
        http_done(&res);
        http_do("GET", "/v2/" REPO "/tags/list?ns=" REG, NULL, &res);
        assert_int_equal(res.status, 200);
        http_done(&res);
        wait_pull_idle();
        /* The stream's block goes back when MHD frees the response, just after the last byte. */
        uint64_t deadline = time_deadline_ms(WAIT_MS);
        while (budget_held(b) != 0 && time_left_ms(deadline) > 0)
                nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
        assert_int_equal(budget_held(b), 0);
}

/* A blob streamed while it downloads: the upstream stalls part way (and is
 * resumed after its idle timeout), the client has bytes before the blob is
 * committed, and gets it whole and verified. */
static void test_http_blob_streamed(void **state) {
        (void) state;
        struct http_result res;
        get_stalled(NULL, false, &res);
        if (res.code != CURLE_OK)
                fail_msg("GET: %s", curl_easy_strerror(res.code));
        assert_int_equal(res.status, 200);
        assert_int_equal(res.body.len, BLOB_SIZE);
        assert_memory_equal(res.body.data, env.blob, BLOB_SIZE);
        assert_true(res.first_byte_seen);
        assert_false(res.committed_at_first_byte);
        char line[DIGEST_STRING_MAX + 64];
        snprintf(line, sizeof(line), "Docker-Content-Digest: %s", env.blob_ds);
        assert_true(has_header(&res, line));
        http_done(&res);
        wait_pull_idle();
        uint64_t size = 0;
        assert_int_equal(cache_stat(env.cache, &env.blob_digest, &size), 0);
        /* The stalled request and its resumption: still one download. */
        json_t *log = upstream_log(&env.up);
        assert_int_equal(log_count(log, "GET", "/blobs/"), 2);
        const char *range = NULL;
        for (size_t i = 0; i < json_array_size(log); i++)
                if (strstr(log_path(log, i), "/blobs/"))
                        range = log_header(log, i, "range");
        assert_non_null(range);
        assert_true(strncmp(range, "bytes=", 6) == 0);
        json_decref(log);

        /* Again: from the cache, no upstream. */
        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "/v2/" REPO "/blobs/%s?ns=" SLOW, env.blob_ds) > 0);
        http_do("GET", path, NULL, &res);
        assert_int_equal(res.status, 200);
        assert_int_equal(res.body.len, BLOB_SIZE);
        assert_true(res.committed_at_first_byte);
        http_done(&res);
        assert_int_equal(upstream_requests("GET", "/blobs/"), 2);
}

/* A Range of a blob while it downloads and once cached: both from the file
 * (a range that ends before the blob's end waits for the blob to verify). */
static void test_http_range(void **state) {
        (void) state;
        upstream_rules(&env.up, "[{\"path\": \"/blobs/\", \"method\": \"GET\", \"delay_ms\": 200}]");
        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "/v2/" REPO "/blobs/%s?ns=" REG, env.blob_ds) > 0);
        char cr[96];
        snprintf(cr, sizeof(cr), "Content-Range: bytes 300000-300999/%d", BLOB_SIZE);
        for (unsigned round = 0; round < 2; round++) {
                struct http_result res;
                http_do("GET", path, "bytes=300000-300999", &res);
                assert_int_equal(res.code, CURLE_OK);
                assert_int_equal(res.status, 206);
                assert_true(has_header(&res, cr));
                assert_int_equal(res.body.len, 1000);
                assert_memory_equal(res.body.data, env.blob + 300000, 1000);
                assert_true(res.committed_at_first_byte);
                http_done(&res);
                if (round == 0)
                        wait_pull_idle(); /* finish_abandoned_downloads: the rest goes on into the cache */
        }
        /* Past the end: 416 with the size. */
        struct http_result res;
        http_do("GET", path, "bytes=700000-", &res);
        assert_int_equal(res.status, 416);
        snprintf(cr, sizeof(cr), "Content-Range: bytes */%d", BLOB_SIZE);
        assert_true(has_header(&res, cr));
        http_done(&res);
        assert_int_equal(upstream_requests("GET", "/blobs/"), 1);
}

/* containerd's resume ("bytes=N-", to the blob's end) streams while the blob
 * downloads, as a whole body does: only the last byte waits for the digest. */
static void test_http_range_resume_streams(void **state) {
        (void) state;
        struct http_result res;
        get_stalled("bytes=1000-", false, &res);
        assert_int_equal(res.code, CURLE_OK);
        assert_int_equal(res.status, 206);
        assert_int_equal(res.body.len, BLOB_SIZE - 1000);
        assert_memory_equal(res.body.data, env.blob + 1000, BLOB_SIZE - 1000);
        assert_false(res.committed_at_first_byte);
        http_done(&res);
}

/* A range that ends before the blob's end, asked while the blob downloads
 * (the upstream stalls part way, then is resumed): no byte of it before the
 * blob verified (a SHA-256 proves nothing about a prefix), then 206 from the
 * file. */
static void test_http_range_waits_for_verification(void **state) {
        (void) state;
        struct http_result res;
        get_stalled("bytes=0-99", false, &res);
        assert_int_equal(res.code, CURLE_OK);
        assert_int_equal(res.status, 206);
        char cr[96];
        snprintf(cr, sizeof(cr), "Content-Range: bytes 0-99/%d", BLOB_SIZE);
        assert_true(has_header(&res, cr));
        assert_int_equal(res.body.len, 100);
        assert_memory_equal(res.body.data, env.blob, 100);
        if (!res.committed_at_first_byte)
                fail_msg("a range of a blob still downloading was sent before the blob verified");
        http_done(&res);
        assert_int_equal(upstream_requests("GET", "/blobs/"), 2); /* the stalled request and its resumption */
}

/* ... and when the bytes do not match the digest, the range gets 503: never
 * the upstream's wrong bytes in a complete answer. */
static void test_http_range_corrupt(void **state) {
        (void) state;
        struct http_result res;
        get_stalled("bytes=0-99", true, &res);
        assert_int_equal(res.code, CURLE_OK);
        if (res.status != 503)
                fail_msg("a range of wrong bytes was answered: HTTP %ld, %zu bytes", res.status, res.body.len);
        assert_non_null(strstr(res.body.data, "do not match the digest"));
        http_done(&res);
        wait_pull_idle();
        assert_int_equal(cache_stat(env.cache, &env.blob_digest, &(uint64_t) { 0 }), -ENOENT);
}

/* ... and a blob that does not finish within the upstream wait
 * (HEADER_WAIT_MS): 503 then, not a wait without bound. */
static void test_http_range_wait_bounded(void **state) {
        (void) state;
        /* One byte every 20 ms: this download would take hours. */
        upstream_rules(&env.up, "[{\"path\": \"/blobs/\", \"method\": \"GET\", \"trickle_ms\": 20}]");
        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "/v2/" REPO "/blobs/%s?ns=" REG, env.blob_ds) > 0);
        struct http_result res;
        uint64_t t0 = time_now_ms();
        http_do("GET", path, "bytes=0-99", &res);
        uint64_t took = time_now_ms() - t0;
        assert_int_equal(res.code, CURLE_OK);
        if (res.status != 503)
                fail_msg("a range of a blob still downloading was answered: HTTP %ld, %zu bytes", res.status,
                         res.body.len);
        assert_non_null(strstr(res.body.data, "still downloading"));
        assert_true(took >= HEADER_WAIT_MS - 1000);
        assert_true(took < HEADER_WAIT_MS + 10000);
        http_done(&res);
}

/* Wrong bytes upstream: the client, streaming while it downloads, has its
 * connection cut, never a complete body. The first part comes corrupted and
 * stalls (so the client surely has bytes before the verdict), the rest is
 * resumed: the whole does not match its digest. */
static void test_http_corrupt_cut(void **state) {
        (void) state;
        struct http_result res;
        get_stalled(NULL, true, &res);
        if (res.code == CURLE_OK)
                fail_msg("a blob with wrong bytes was answered in full: HTTP %ld, %zu bytes", res.status,
                         res.body.len);
        assert_int_equal(res.status, 200);
        assert_true(res.body.len > 0); /* bytes came before the verdict */
        assert_true(res.body.len < BLOB_SIZE);
        http_done(&res);
        wait_pull_idle();
        assert_int_equal(cache_stat(env.cache, &env.blob_digest, &(uint64_t) { 0 }), -ENOENT);
        assert_int_equal(atomic_load(&env.pull->cut_streams), 1);
}

/* ---- joining another's download (agent/http.c) ------------------------------------------ */

struct http_thread {
        const char *path;
        const char *header; /* one more request header line, or NULL */
        long status;
        struct fixture_buf body;
        CURLcode code;
};

/* A GET in a thread of its own; no cmocka assertion here: the main thread checks. */
static void *http_thread_main(void *arg) {
        struct http_thread *q = arg;
        char url[512];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", env.port, q->path);
        CURL *h = curl_easy_init();
        if (!h) {
                q->code = CURLE_OUT_OF_MEMORY;
                return NULL;
        }
        struct curl_slist *hdrs = q->header ? curl_slist_append(NULL, q->header) : NULL;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) WAIT_MS);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fixture_buf_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &q->body);
        q->code = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &q->status);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(h);
        return NULL;
}

/* Waits (bounded) until the upstream's log holds a request of method with part in its path. */
static void wait_upstream_request(const char *method, const char *part) {
        uint64_t deadline = time_deadline_ms(WAIT_MS);
        while (upstream_requests(method, part) == 0) {
                assert_true(time_left_ms(deadline) > 0);
                nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000000L }, NULL);
        }
}

static bool body_is_blob(const struct fixture_buf *b) {
        return b->len == BLOB_SIZE && memcmp(b->data, env.blob, BLOB_SIZE) == 0;
}

/* A download started anonymously for a repository that turns out private ends
 * with the origin's 401: that is its starter's answer. A public repository's
 * request that joined it meanwhile is not challenged, and its repository is
 * not recorded private: it fetches for itself. */
static void test_http_join_refusal_is_its_own(void **state) {
        (void) state;
        upstream_auth(&env.up, "{\"mode\": \"basic\", \"user\": \"alice\", \"password\": \"" ALICE_PW "\", "
                               "\"private\": [\"team/\"]}");
        upstream_rules(&env.up, "[{\"path\": \"/v2/team/a/blobs/\", \"method\": \"GET\", \"delay_ms\": %d}]", DELAY_MS);
        char path_a[256], path_p[256];
        snprintf(path_a, sizeof(path_a), "/v2/team/a/blobs/%s?ns=" REG, env.blob_ds);
        snprintf(path_p, sizeof(path_p), "/v2/pub/app/blobs/%s?ns=" REG, env.blob_ds);
        struct http_thread a = { .path = path_a };
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, http_thread_main, &a), 0);
        wait_upstream_request("GET", "/v2/team/a/blobs/"); /* the download is in flight, for its delay */

        struct http_result pub;
        http_do("GET", path_p, NULL, &pub);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(a.code, CURLE_OK);
        assert_int_equal(a.status, 401);
        assert_int_equal(pub.code, CURLE_OK);
        assert_int_equal(pub.status, 200);
        assert_true(body_is_blob(&pub.body));
        assert_false(private_repo(env.pull->private, REG, "pub/app"));
        assert_true(private_repo(env.pull->private, REG, "team/a"));
        assert_int_equal(upstream_requests("GET", "/v2/pub/app/blobs/"), 1); /* its own download */
        http_done(&pub);
        free(a.body.data);
}

/* A request whose check passed before another marked the digest private (here:
 * its origin's HEAD answered first, then the other request marked and started
 * the download) and that joins that download is checked again: the origin is
 * asked under its name whether it has the digest, says 404, and not a byte of
 * it is sent; nor later (the digest is recorded for a repository only at its
 * origin's answer with the bytes, not before asking). */
static void test_http_join_rechecks(void **state) {
        (void) state;
        upstream_auth(&env.up, "{\"mode\": \"basic\", \"user\": \"alice\", \"password\": \"" ALICE_PW "\", "
                               "\"private\": [\"team/\"]}");
        char put[256];
        snprintf(put, sizeof(put), "/_fixture/blob/%s?repos=team/a", env.blob_ds);
        upstream_expect(&env.up, "PUT", put, env.blob, BLOB_SIZE, 201);
        assert_int_equal(private_mark(env.pull->private, REG, "team/a", NULL, 0), 0);
        assert_int_equal(private_mark(env.pull->private, REG, "team/b", NULL, 0), 0);
        /* team/b's first check waits; team/a's download waits longer. */
        upstream_rules(&env.up,
                       "[{\"path\": \"/v2/team/b/blobs/\", \"method\": \"HEAD\", \"times\": 1, \"delay_ms\": %d, "
                       "\"status\": 200}, {\"path\": \"/v2/team/a/blobs/\", \"method\": \"GET\", \"delay_ms\": %d}]",
                       DELAY_MS, 2 * DELAY_MS);
        _cleanup_free_ char *b64 = unit_base64("alice:" ALICE_PW);
        char auth[256], path_a[256], path_b[256];
        snprintf(auth, sizeof(auth), "Authorization: Basic %s", b64);
        snprintf(path_a, sizeof(path_a), "/v2/team/a/blobs/%s?ns=" REG, env.blob_ds);
        snprintf(path_b, sizeof(path_b), "/v2/team/b/blobs/%s?ns=" REG, env.blob_ds);
        struct http_thread b = { .path = path_b, .header = auth }, a = { .path = path_a, .header = auth };
        pthread_t tb, ta;
        assert_int_equal(pthread_create(&tb, NULL, http_thread_main, &b), 0);
        wait_upstream_request("HEAD", "/v2/team/b/blobs/"); /* team/b's check is under way */
        assert_int_equal(pthread_create(&ta, NULL, http_thread_main, &a), 0);
        assert_int_equal(pthread_join(ta, NULL), 0);
        assert_int_equal(pthread_join(tb, NULL), 0);
        assert_int_equal(a.code, CURLE_OK);
        assert_int_equal(a.status, 200);
        assert_true(body_is_blob(&a.body));
        assert_int_equal(b.code, CURLE_OK);
        if (b.status == 200 || b.body.len >= 1000)
                fail_msg("team/b got %ld and %zu bytes of team/a's blob", b.status, b.body.len);
        assert_int_equal(b.status, 404);
        /* Asked again under its name, after the mark. */
        assert_true(upstream_requests("HEAD", "/v2/team/b/blobs/") >= 2); /* the delayed one, then 404 */
        assert_int_equal(upstream_requests("GET", "/blobs/"), 1);
        /* Nothing recorded team/b as having it: asked again, still not a byte. */
        bool here = true;
        assert_true(private_digest(env.pull->private, &env.blob_digest, REG, "team/b", &here));
        assert_false(here);
        struct http_thread again = { .path = path_b, .header = auth };
        http_thread_main(&again);
        assert_int_equal(again.code, CURLE_OK);
        assert_int_equal(again.status, 404);
        assert_true(again.body.len < 1000);
        free(a.body.data);
        free(b.body.data);
        free(again.body.data);
}

/* The Authorization header is parsed (a base64 decode and a salted SHA-256)
 * only for a request that needs it: never for a public cache hit, once for a
 * private repository's request (agent/access.c). */
static void test_http_public_hit_no_parse(void **state) {
        (void) state;
        _cleanup_free_ char *b64 = unit_base64("alice:" ALICE_PW);
        char auth[256], path[256];
        snprintf(auth, sizeof(auth), "Authorization: Basic %s", b64);
        snprintf(path, sizeof(path), "/v2/" REPO "/blobs/%s?ns=" REG, env.blob_ds);
        struct http_thread fill = { .path = path };
        http_thread_main(&fill);
        assert_int_equal(fill.status, 200);
        wait_pull_idle();
        assert_int_equal(cache_stat(env.cache, &env.blob_digest, &(uint64_t) { 0 }), 0);
        for (int i = 0; i < 3; i++) {
                struct http_thread hit = { .path = path, .header = auth };
                http_thread_main(&hit);
                assert_int_equal(hit.code, CURLE_OK);
                assert_int_equal(hit.status, 200);
                free(hit.body.data);
        }
        assert_int_equal(atomic_load(&env.pull->auth_parses), 0);
        /* The repository private: the header is read, once per request. */
        struct digest ds[1] = { env.blob_digest };
        assert_int_equal(private_mark(env.pull->private, REG, REPO, ds, 1), 0);
        struct http_thread priv = { .path = path, .header = auth };
        http_thread_main(&priv);
        assert_int_equal(priv.status, 200);
        assert_int_equal(atomic_load(&env.pull->auth_parses), 1);
        free(fill.body.data);
        free(priv.body.data);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_manifest_by_digest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_access, setup, teardown),
                cmocka_unit_test_setup_teardown(test_access_outage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_access_own_verdict, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tags_private, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tags_mirror_skipped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tag_fresh, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tag_revalidated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tag_stale, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tag_not_found, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tag_unavailable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_may_block, setup, teardown),
                cmocka_unit_test_setup_teardown(test_head_from_record, setup, teardown),
                cmocka_unit_test_setup_teardown(test_offline, setup, teardown),
                cmocka_unit_test_setup_teardown(test_manifest_ensure_refusals, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_ensure_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_ensure_private_marks_at_answer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_manifest_marked_when_served, setup, teardown),
                cmocka_unit_test_setup_teardown(test_private_upkeep, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tag_record_of_private_digest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tag_record_confirmed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_join_one_download, setup, teardown),
                cmocka_unit_test_setup_teardown(test_join_failure_404, setup, teardown),
                cmocka_unit_test_setup_teardown(test_join_failure_500, setup, teardown),
                cmocka_unit_test_setup_teardown(test_join_failure_corrupt, setup, teardown),
                cmocka_unit_test_setup_teardown(test_abandoned_cancelled, setup, teardown),
                cmocka_unit_test_setup_teardown(test_abandoned_finished, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tags_pages, setup, teardown),
                cmocka_unit_test_setup_teardown(test_http_routes, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_budget, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_blob_streamed, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_range, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_range_resume_streams, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_range_waits_for_verification, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_range_corrupt, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_range_wait_bounded, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_corrupt_cut, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_join_refusal_is_its_own, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_join_rechecks, setup_http, teardown),
                cmocka_unit_test_setup_teardown(test_http_public_hit_no_parse, setup_http, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
