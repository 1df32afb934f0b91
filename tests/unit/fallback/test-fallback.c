/* SPDX-License-Identifier: Apache-2.0 */
/* The upstream client against real peers on 127.0.0.1: the fault-injecting
 * fixture registry (tests/fixtures/upstream.py), a blackhole and a refusing
 * port. Every rule of fallback.h's contract is driven here: failover, circuit
 * breakers, Range resume, manifest verification, the token flow, redirects,
 * headers, connection reuse and reconfiguration. Behaviour is asserted (who
 * served, statuses, what the fixture saw, counters, events), never speed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"
#include "tests/unit/fallback/fixture.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/digest.h"
#include "fallback/fallback.h"

/* Endpoints that must fail do so after FAST_MS; healthy ones get SLOW_MS, so
 * that a slow client (valgrind) never turns a success into a timeout. MID_MS
 * is for an endpoint that fails first and must succeed later. */
#define FAST_MS 500
#define MID_MS 1000
#define SLOW_MS 10000
#define FETCH_DEADLINE_MS 30000

#define REG "registry.test"
#define REPO "test/app"
#define TAG "v1"
#define BLOB_SIZE 300000
#define CUT 100000 /* where broken bodies break */
#define PASSWORD "Sup3r-s3cret"
#define HEADER_VALUE "x-value-42"

static struct {
        struct upstream a, b, c;
        struct hole hole, refuse, refuse2, full;
        char tmp[64];
        unsigned char *blob;
        char blob_digest[DIGEST_STRING_MAX];
        char *manifest;
        size_t manifest_size;
        struct digest manifest_digest;
        char manifest_digest_str[DIGEST_STRING_MAX];
} env;

/* ---- events ------------------------------------------------------------------- */

struct recorded_event {
        enum fallback_event_type type;
        char registry[64], endpoint[96], reason[256];
        uint64_t backoff_ms, offset, at_ms;
        int64_t limit, remaining;
};

struct events {
        pthread_mutex_t lock;
        size_t n;
        struct recorded_event items[128];
};

#define EVENTS_INIT { .lock = PTHREAD_MUTEX_INITIALIZER }

static void on_event(const struct fallback_event *ev, void *userdata) {
        struct events *e = userdata;
        pthread_mutex_lock(&e->lock);
        if (e->n < ELEMENTSOF(e->items)) {
                struct recorded_event *r = &e->items[e->n++];
                *r = (struct recorded_event) { .type = ev->type, .backoff_ms = ev->backoff_ms, .offset = ev->offset,
                                               .at_ms = time_now_ms(), .limit = ev->ratelimit_limit,
                                               .remaining = ev->ratelimit_remaining };
                snprintf(r->registry, sizeof(r->registry), "%s", ev->registry ? ev->registry : "");
                snprintf(r->endpoint, sizeof(r->endpoint), "%s", ev->endpoint ? ev->endpoint : "");
                snprintf(r->reason, sizeof(r->reason), "%s", ev->reason ? ev->reason : "");
        }
        pthread_mutex_unlock(&e->lock);
}

/* Events of type for endpoint (NULL: any). */
static size_t events_count(struct events *e, enum fallback_event_type type, const char *endpoint) {
        size_t n = 0;
        pthread_mutex_lock(&e->lock);
        for (size_t i = 0; i < e->n; i++)
                if (e->items[i].type == type && (!endpoint || strcmp(e->items[i].endpoint, endpoint) == 0))
                        n++;
        pthread_mutex_unlock(&e->lock);
        return n;
}

/* The last event of type for endpoint; fails the test when there is none. */
static struct recorded_event events_last(struct events *e, enum fallback_event_type type, const char *endpoint) {
        struct recorded_event out = { .type = _FALLBACK_EVENT_MAX };
        pthread_mutex_lock(&e->lock);
        for (size_t i = 0; i < e->n; i++)
                if (e->items[i].type == type && (!endpoint || strcmp(e->items[i].endpoint, endpoint) == 0))
                        out = e->items[i];
        pthread_mutex_unlock(&e->lock);
        if (out.type == _FALLBACK_EVENT_MAX)
                fail_msg("no event of type %d for %s", type, endpoint ? endpoint : "any endpoint");
        return out;
}

/* ---- the client --------------------------------------------------------------------- */

static struct fallback *fb_new(struct events *ev, unsigned breaker_failures, uint64_t backoff_min_ms,
                               uint64_t backoff_max_ms) {
        struct fallback_options o = {
                .breaker_failures = breaker_failures,
                .breaker_backoff_min_ms = backoff_min_ms,
                .breaker_backoff_max_ms = backoff_max_ms,
                .user_agent = "layerd-test/1",
                .on_event = ev ? on_event : NULL,
                .userdata = ev,
        };
        struct fallback *fb = NULL;
        assert_int_equal(fallback_new(&o, &fb), 0);
        assert_non_null(fb);
        return fb;
}

static int fb_try_set(struct fallback *fb, const char *registry, const struct fallback_endpoint_config *eps, size_t n,
                      struct error_list *errors) {
        struct fallback_registry_config r = { .host = registry, .endpoints = eps, .n_endpoints = n };
        error_list_init(errors, "test");
        return fallback_configure(fb, &r, 1, errors);
}

static void fb_set(struct fallback *fb, const char *registry, const struct fallback_endpoint_config *eps, size_t n) {
        struct error_list errors;
        int r = fb_try_set(fb, registry, eps, n, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                fail_msg("fallback_configure: %s", strerror(-r));
        }
}

#define EP_AT(u, origin, ms)                                                                                 \
        ((struct fallback_endpoint_config) { .url = (u), .is_origin = (origin), .connect_timeout_ms = (ms), \
                                             .response_timeout_ms = (ms), .idle_timeout_ms = (ms) })
#define GOOD(u, origin) EP_AT(u, origin, SLOW_MS)
#define BROKEN(u, origin) EP_AT(u, origin, FAST_MS)

/* A sink that keeps what it gets; it can be told to fail. */
struct collect {
        unsigned char *data;
        size_t len;
        unsigned starts;
        int64_t total;
        size_t fail_after; /* a write that would go past this many bytes fails with fail_errno (0: never) */
        int fail_errno;
        int start_errno;   /* start() fails with this (0: never) */
};

static int collect_start(void *userdata, int64_t total) {
        struct collect *c = userdata;
        c->starts++;
        c->total = total;
        return c->start_errno;
}

static int collect_write(void *userdata, const void *data, size_t size) {
        struct collect *c = userdata;
        if (c->fail_errno && c->len + size > c->fail_after)
                return c->fail_errno;
        unsigned char *p = realloc(c->data, c->len + size);
        if (!p)
                return -ENOMEM;
        memcpy(p + c->len, data, size);
        c->data = p;
        c->len += size;
        return 0;
}

static struct sink collect_sink(struct collect *c) {
        return (struct sink) { .userdata = c, .start = collect_start, .write = collect_write };
}

/* The sink holds exactly the blob's bytes from `from` on. */
static void assert_collected(const struct collect *c, size_t from) {
        assert_int_equal(c->len, BLOB_SIZE - from);
        if (memcmp(c->data, env.blob + from, c->len) != 0)
                fail_msg("the sink's bytes differ from the blob's");
}

static int fetch(struct fallback *fb, const char *registry, const char *repo, enum fallback_kind kind, const char *ref,
                 bool head, uint64_t offset, struct sink *sink, struct fallback_response *resp) {
        struct fallback_request req = {
                .registry = registry,
                .repository = repo,
                .kind = kind,
                .reference = ref,
                .head = head,
                .offset = offset,
                .sink = sink,
                .deadline_ms = time_now_ms() + FETCH_DEADLINE_MS,
        };
        return fallback_fetch(fb, &req, resp);
}

/* A blob GET of env.blob from `offset` into c; returns fallback_fetch()'s result. */
static int fetch_blob(struct fallback *fb, uint64_t offset, struct collect *c, struct fallback_response *resp) {
        struct sink s = collect_sink(c);
        return fetch(fb, REG, REPO, FALLBACK_BLOB, env.blob_digest, false, offset, &s, resp);
}

static int fetch_manifest(struct fallback *fb, const char *ref, bool head, struct fallback_response *resp) {
        return fetch(fb, REG, REPO, FALLBACK_MANIFEST, ref, head, 0, NULL, resp);
}

static void assert_served(const struct fallback_response *resp, const char *endpoint) {
        if (resp->status != 200)
                fail_msg("status %d (%s), wanted 200 from %s", resp->status, resp->error, endpoint);
        assert_non_null(resp->endpoint);
        assert_string_equal(resp->endpoint, endpoint);
}

/* The manifest GET answer is env.manifest, verified. */
static void assert_manifest(const struct fallback_response *resp) {
        assert_true(resp->has_digest);
        assert_true(digest_equal(&resp->digest, &env.manifest_digest));
        assert_int_equal(resp->size, env.manifest_size);
        assert_non_null(resp->body);
        assert_memory_equal(resp->body, env.manifest, env.manifest_size);
}

struct ep_stats {
        bool found;
        enum fallback_breaker_state state;
        unsigned consecutive_failures;
        uint64_t requests, ok, failures, not_found, bytes, opens, resumes, token_fetches;
        int64_t rl_limit, rl_remaining;
};

struct stats_query {
        const char *url;
        struct ep_stats out;
        size_t n;
        char order[8][96];
};

static void stats_cb(const struct fallback_endpoint_stats *s, void *userdata) {
        struct stats_query *q = userdata;
        if (q->n < ELEMENTSOF(q->order))
                snprintf(q->order[q->n], sizeof(q->order[q->n]), "%s", s->endpoint);
        q->n++;
        if (q->url && strcmp(s->endpoint, q->url) == 0)
                q->out = (struct ep_stats) {
                        .found = true,
                        .state = s->state,
                        .consecutive_failures = s->consecutive_failures,
                        .requests = s->requests,
                        .ok = s->ok,
                        .failures = s->failures,
                        .not_found = s->not_found,
                        .bytes = s->bytes,
                        .opens = s->breaker_opens,
                        .resumes = s->resumes,
                        .token_fetches = s->token_fetches,
                        .rl_limit = s->ratelimit_limit,
                        .rl_remaining = s->ratelimit_remaining,
                };
}

static struct ep_stats stats_of(struct fallback *fb, const char *url) {
        struct stats_query q = { .url = url };
        fallback_foreach_endpoint(fb, stats_cb, &q);
        if (!q.out.found)
                fail_msg("endpoint %s is not configured", url);
        return q.out;
}

static void assert_state(struct fallback *fb, const char *url, enum fallback_breaker_state want) {
        struct ep_stats s = stats_of(fb, url);
        if (s.state != want)
                fail_msg("breaker of %s is %s, wanted %s", url, fallback_breaker_state_to_string(s.state),
                         fallback_breaker_state_to_string(want));
}

static void assert_contains(const char *haystack, const char *needle) {
        if (!haystack || !strstr(haystack, needle))
                fail_msg("\"%s\" does not contain \"%s\"", haystack ? haystack : "(null)", needle);
}

/* Writes a docker config.json into the temporary directory; returns its path (caller frees). */
static char *write_config(const char *name, const char *fmt, ...) _printf_(2, 3);
static char *write_config(const char *name, const char *fmt, ...) {
        char *path = NULL;
        assert_true(asprintf(&path, "%s/%s", env.tmp, name) > 0);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        assert_int_equal(fclose(f), 0);
        return path;
}

/* A config.json giving user:password for fixture u. */
static char *write_credentials(const char *name, const struct upstream *u, const char *user, const char *password) {
        _cleanup_free_ char *pair = NULL;
        assert_true(asprintf(&pair, "%s:%s", user, password) > 0);
        _cleanup_free_ char *auth = unit_base64(pair);
        return write_config(name, "{\"auths\": {\"%s\": {\"auth\": \"%s\"}}}\n", u->url, auth);
}

/* ---- set-up -------------------------------------------------------------------- */

/* What every test starts from: A and B hold the blob and the manifest
 * (REPO:TAG), C holds nothing; no rules, no auth, empty logs. */
static int reset_peers(void **state) {
        (void) state;
        const struct upstream *ups[] = { &env.a, &env.b, &env.c };
        for (size_t i = 0; i < ELEMENTSOF(ups); i++)
                upstream_reset(ups[i]);
        for (size_t i = 0; i < 2; i++) {
                upstream_put_blob(ups[i], env.blob_digest, env.blob, BLOB_SIZE);
                upstream_put_manifest(ups[i], REPO, TAG, NULL, env.manifest, env.manifest_size);
        }
        hole_drain(&env.hole);
        return 0;
}

static int group_setup(void **state) {
        (void) state;
        assert_int_equal(fallback_global_init(), 0);
        snprintf(env.tmp, sizeof(env.tmp), "/tmp/layerd-test-fallback-XXXXXX");
        assert_non_null(mkdtemp(env.tmp));

        env.blob = unit_pseudo_random(BLOB_SIZE);
        struct digest d;
        assert_int_equal(digest_buffer(DIGEST_SHA256, env.blob, BLOB_SIZE, &d), 0);
        digest_to_string(&d, env.blob_digest);
        env.manifest = fixture_manifest(env.blob_digest, BLOB_SIZE, &env.manifest_size, &env.manifest_digest);
        digest_to_string(&env.manifest_digest, env.manifest_digest_str);

        upstream_spawn(&env.a);
        upstream_spawn(&env.b);
        upstream_spawn(&env.c);
        upstream_wait_ready(&env.a);
        upstream_wait_ready(&env.b);
        upstream_wait_ready(&env.c);
        hole_open(&env.hole, true);
        hole_open(&env.refuse, false);
        hole_open(&env.refuse2, false);
        hole_open_full(&env.full);
        return 0;
}

static int group_teardown(void **state) {
        (void) state;
        upstream_stop(&env.a);
        upstream_stop(&env.b);
        upstream_stop(&env.c);
        hole_close(&env.hole);
        hole_close(&env.refuse);
        hole_close(&env.refuse2);
        hole_close(&env.full);
        unit_rm_rf(env.tmp);
        free(env.blob);
        free(env.manifest);
        fallback_global_done();
        return 0;
}

/* ---- one origin ---------------------------------------------------------------------- */

static void test_blob_get(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.received, BLOB_SIZE);
        assert_int_equal(resp.size, BLOB_SIZE);
        assert_int_equal(resp.attempts, 1);
        assert_true(resp.has_digest);
        char s[DIGEST_STRING_MAX];
        assert_string_equal(digest_to_string(&resp.digest, s), env.blob_digest);
        assert_null(resp.body);
        assert_collected(&c, 0);
        assert_int_equal(c.starts, 1);
        assert_int_equal(c.total, BLOB_SIZE);
        fallback_response_done(&resp);
        free(c.data);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 1);
        assert_string_equal(log_method(log, 0), "GET");
        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "/v2/" REPO "/blobs/%s", env.blob_digest) > 0);
        assert_string_equal(log_path(log, 0), path); /* the origin: no ?ns= */
        assert_null(log_header(log, 0, "range"));
        assert_null(log_header(log, 0, "authorization"));
        assert_string_equal(log_header(log, 0, "user-agent"), "layerd-test/1");

        struct ep_stats st = stats_of(fb, env.a.url);
        assert_int_equal(st.requests, 1);
        assert_int_equal(st.ok, 1);
        assert_int_equal(st.failures, 0);
        assert_int_equal(st.bytes, BLOB_SIZE);
        assert_int_equal(st.state, FALLBACK_BREAKER_CLOSED);
        assert_int_equal(st.rl_limit, -1);
        assert_int_equal(ev.n, 0); /* nothing worth an event */
}

static void test_blob_head(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);

        struct fallback_response resp;
        assert_int_equal(fetch(fb, REG, REPO, FALLBACK_BLOB, env.blob_digest, true, 0, NULL, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.size, BLOB_SIZE);
        assert_true(resp.has_digest);
        char s[DIGEST_STRING_MAX];
        assert_string_equal(digest_to_string(&resp.digest, s), env.blob_digest);
        assert_int_equal(resp.received, 0);
        fallback_response_done(&resp);

        /* A blob the origin does not have: its 404 is the answer. */
        static const char other[] = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert_int_equal(fetch(fb, REG, REPO, FALLBACK_BLOB, other, true, 0, NULL, &resp), 0);
        assert_int_equal(resp.status, 404);
        fallback_response_done(&resp);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 2);
        assert_string_equal(log_method(log, 0), "HEAD");
        assert_string_equal(log_method(log, 1), "HEAD");
}

/* A blob whose Docker-Content-Digest names another blob is not that blob. */
static void test_blob_digest_claims(void **state) {
        (void) state;
        static const char other[] = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        for (int head = 0; head <= 1; head++) {
                struct events ev = EVENTS_INIT;
                _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
                struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
                fb_set(fb, REG, eps, 2);
                upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"digest_header\": \"%s\"}]", other);

                struct collect c = { 0 };
                struct sink s = collect_sink(&c);
                struct fallback_response resp;
                assert_int_equal(fetch(fb, REG, REPO, FALLBACK_BLOB, env.blob_digest, head, 0, head ? NULL : &s, &resp),
                                 0);
                assert_served(&resp, env.b.url);
                assert_int_equal(resp.size, BLOB_SIZE);
                fallback_response_done(&resp);
                assert_contains(events_last(&ev, FALLBACK_EVENT_FAILOVER, env.a.url).reason, "Docker-Content-Digest");
                if (!head) {
                        /* Not a byte of A's went into the sink: B was asked for all of it. */
                        assert_collected(&c, 0);
                        assert_int_equal(c.starts, 1);
                        json_auto_t *log = upstream_log(&env.b);
                        assert_int_equal(json_array_size(log), 1);
                        assert_null(log_header(log, 0, "range"));
                }
                free(c.data);
                upstream_reset(&env.b);
                upstream_put_blob(&env.b, env.blob_digest, env.blob, BLOB_SIZE);
        }
}

static void test_manifest_get(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        struct fallback_response resp;
        /* By digest. */
        assert_int_equal(fetch_manifest(fb, env.manifest_digest_str, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        assert_string_equal(resp.media_type, "application/vnd.oci.image.manifest.v1+json");
        fallback_response_done(&resp);

        /* By tag: the Content-Type is the media type. (The fixture files the
         * body under its digest again, with this type.) */
        static const char docker_type[] = "application/vnd.docker.distribution.manifest.v2+json";
        upstream_put_manifest(&env.a, REPO, "docker", docker_type, env.manifest, env.manifest_size);
        assert_int_equal(fetch_manifest(fb, "docker", false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        assert_string_equal(resp.media_type, docker_type);
        fallback_response_done(&resp);

        /* A generic Content-Type: the body's mediaType says what it is. */
        upstream_put_manifest(&env.a, REPO, "generic", "application/json", env.manifest, env.manifest_size);
        assert_int_equal(fetch_manifest(fb, "generic", false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        assert_string_equal(resp.media_type, "application/vnd.oci.image.manifest.v1+json");
        fallback_response_done(&resp);

        /* The Accept header: the default, or the request's own. */
        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST,
                                        .reference = TAG, .accept = "application/vnd.oci.image.index.v1+json" };
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 4);
        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "/v2/" REPO "/manifests/%s", env.manifest_digest_str) > 0);
        assert_string_equal(log_path(log, 0), path);
        assert_string_equal(log_header(log, 0, "accept"), FALLBACK_ACCEPT_DEFAULT);
        assert_string_equal(log_path(log, 1), "/v2/" REPO "/manifests/docker");
        assert_string_equal(log_header(log, 3, "accept"), "application/vnd.oci.image.index.v1+json");
}

static void test_manifest_head(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, true, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_true(resp.has_digest);
        assert_true(digest_equal(&resp.digest, &env.manifest_digest)); /* from Docker-Content-Digest */
        assert_int_equal(resp.size, env.manifest_size);
        assert_string_equal(resp.media_type, "application/vnd.oci.image.manifest.v1+json");
        assert_null(resp.body);
        fallback_response_done(&resp);

        assert_int_equal(fetch_manifest(fb, env.manifest_digest_str, true, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_true(digest_equal(&resp.digest, &env.manifest_digest));
        assert_int_equal(resp.size, env.manifest_size);
        fallback_response_done(&resp);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 2);
        assert_int_equal(log_count(log, "HEAD", "/manifests/"), 2);
}

static void test_manifest_head_without_digest(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"method\": \"HEAD\", \"digest_header\": null}]");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, true, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_true(resp.has_digest);
        assert_true(digest_equal(&resp.digest, &env.manifest_digest)); /* computed from the GET's body */
        assert_int_equal(resp.size, env.manifest_size);
        assert_string_equal(resp.media_type, "application/vnd.oci.image.manifest.v1+json");
        assert_int_equal(resp.attempts, 2);
        fallback_response_done(&resp);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 2);
        assert_string_equal(log_method(log, 0), "HEAD");
        assert_string_equal(log_method(log, 1), "GET");
}

/* ---- failover ------------------------------------------------------------------------ */

static void test_failover_refused(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { BROKEN(env.refuse.url, false), GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 2);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.attempts, 2);
        assert_collected(&c, 0);
        fallback_response_done(&resp);
        free(c.data);

        struct recorded_event e = events_last(&ev, FALLBACK_EVENT_FAILOVER, env.refuse.url);
        assert_string_equal(e.registry, REG);
        assert_true(e.reason[0] != '\0');
        struct ep_stats st = stats_of(fb, env.refuse.url);
        assert_int_equal(st.failures, 1);
        assert_int_equal(st.ok, 0);
}

static void test_failover_blackhole(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { BROKEN(env.hole.url, false), GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 2);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        fallback_response_done(&resp);

        assert_int_equal(hole_drain(&env.hole), 1); /* it was tried, and given up on */
        struct recorded_event e = events_last(&ev, FALLBACK_EVENT_FAILOVER, env.hole.url);
        assert_contains(e.reason, "no response");
}

/* A connect that neither succeeds nor is refused: the connect timeout. */
static void test_failover_connect_timeout(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.full.url, false), GOOD(env.a.url, true) };
        eps[0].connect_timeout_ms = FAST_MS; /* only the connect timeout is short */
        fb_set(fb, REG, eps, 2);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        assert_contains(events_last(&ev, FALLBACK_EVENT_FAILOVER, env.full.url).reason, "connect timeout");
        assert_int_equal(stats_of(fb, env.full.url).failures, 1);
}

/* 5xx and 429 are failures: the next endpoint serves, the breaker counts them. */
static void test_failover_5xx_429(void **state) {
        (void) state;
        static const int statuses[] = { 500, 502, 503, 429 };
        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                struct events ev = EVENTS_INIT;
                _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
                struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
                fb_set(fb, REG, eps, 2);
                upstream_reset(&env.a);
                upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"status\": %d}]", statuses[i]);

                struct collect c = { 0 };
                struct fallback_response resp;
                assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
                assert_served(&resp, env.b.url);
                assert_collected(&c, 0);
                fallback_response_done(&resp);
                free(c.data);

                char want[16];
                snprintf(want, sizeof(want), "HTTP %d", statuses[i]);
                assert_contains(events_last(&ev, FALLBACK_EVENT_FAILOVER, env.a.url).reason, want);
                struct ep_stats st = stats_of(fb, env.a.url);
                assert_int_equal(st.failures, 1);
                assert_int_equal(st.state, FALLBACK_BREAKER_OPEN);
                json_auto_t *log = upstream_log(&env.a);
                assert_int_equal(json_array_size(log), 1);
                assert_int_equal(log_status(log, 0), statuses[i]);
        }

        /* A 429's Retry-After is a floor for the backoff (capped by the maximum). */
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 1, 100, 45000);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"status\": 429, \"headers\": {\"Retry-After\": \"30\"}}]");
        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.b.url);
        fallback_response_done(&resp);
        assert_int_equal(events_last(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.a.url).backoff_ms, 30000);
}

/* A mirror's 401, 403 and 404 mean "not here": the next endpoint is asked,
 * and the mirror is not blamed for it. */
static void test_failover_mirror_answers(void **state) {
        (void) state;
        static const int statuses[] = { 404, 401, 403 };
        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                struct events ev = EVENTS_INIT;
                _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
                struct fallback_endpoint_config eps[] = { GOOD(env.c.url, false), GOOD(env.a.url, true) };
                fb_set(fb, REG, eps, 2);
                upstream_reset(&env.c);
                if (statuses[i] != 404) /* C has no content: a 404 of its own */
                        upstream_rules(&env.c, "[{\"path\": \"/v2/\", \"status\": %d}]", statuses[i]);

                struct fallback_response resp;
                assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
                assert_served(&resp, env.a.url);
                assert_manifest(&resp);
                fallback_response_done(&resp);

                char want[16];
                snprintf(want, sizeof(want), "HTTP %d", statuses[i]);
                assert_contains(events_last(&ev, FALLBACK_EVENT_FAILOVER, env.c.url).reason, want);
                struct ep_stats st = stats_of(fb, env.c.url);
                assert_int_equal(st.failures, 0);
                assert_int_equal(st.not_found, 1);
                assert_int_equal(st.state, FALLBACK_BREAKER_CLOSED);
                assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_OPEN, NULL), 0);
                json_auto_t *log = upstream_log(&env.c);
                assert_int_equal(json_array_size(log), 1);
        }
}

static void test_failover_hang(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { BROKEN(env.a.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"hang\": true}]");

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.b.url);
        assert_collected(&c, 0);
        fallback_response_done(&resp);
        free(c.data);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 1);
        assert_int_equal(log_status(log, 0), -1); /* never answered */
        assert_int_equal(stats_of(fb, env.a.url).failures, 1);
}

/* The last endpoint's answer is final: a 404 (or 401, 403) stays one. */
static void test_last_endpoint_answers(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.c.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, "missing", false, &resp), 0);
        assert_int_equal(resp.status, 404);
        assert_non_null(resp.endpoint);
        assert_string_equal(resp.endpoint, env.b.url);
        assert_contains(resp.error, "404");
        assert_null(resp.body);
        assert_int_equal(resp.attempts, 2);
        fallback_response_done(&resp);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_FAILOVER, env.c.url), 1);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_FAILOVER, env.b.url), 0);
        assert_int_equal(stats_of(fb, env.b.url).not_found, 1);

        static const int statuses[] = { 401, 403 };
        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                upstream_rules(&env.b, "[{\"path\": \"/v2/\", \"status\": %d}]", statuses[i]);
                assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
                assert_int_equal(resp.status, statuses[i]);
                assert_string_equal(resp.endpoint, env.b.url);
                fallback_response_done(&resp);
        }
        assert_int_equal(stats_of(fb, env.b.url).state, FALLBACK_BREAKER_CLOSED);

        /* A 5xx from the last one is no answer: the fetch fails with a 5xx and says why. */
        upstream_rules(&env.b, "[{\"path\": \"/v2/\", \"status\": 500}]");
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_in_range(resp.status, 500, 599);
        assert_contains(resp.error, "HTTP 500");
        fallback_response_done(&resp);
}

/* A 429 is never passed on: containerd would retry it at once on the same host. */
static void test_last_429_is_503(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.c.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.b, "[{\"path\": \"/v2/\", \"status\": 429, \"headers\": {\"Retry-After\": \"1\"}}]");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_null(resp.endpoint);
        assert_contains(resp.error, "429");
        fallback_response_done(&resp);

        /* The only endpoint, too. */
        _cleanup_(fallback_freep) struct fallback *fb2 = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config one[] = { GOOD(env.b.url, true) };
        fb_set(fb2, REG, one, 1);
        assert_int_equal(fetch_manifest(fb2, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 503);
        fallback_response_done(&resp);
}

static void test_all_down(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { BROKEN(env.refuse.url, false), BROKEN(env.refuse2.url, true) };
        fb_set(fb, REG, eps, 2);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_null(resp.endpoint);
        assert_true(resp.error[0] != '\0');
        assert_int_equal(resp.attempts, 2);
        assert_int_equal(resp.received, 0);
        assert_int_equal(c.len, 0);
        assert_int_equal(c.starts, 0);
        fallback_response_done(&resp);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_FAILOVER, NULL), 2);
}

/* ---- request URLs ---------------------------------------------------------------------- */

/* Mirrors learn the registry from "?ns=" (as containerd sends it); the origin does not get it. */
static void test_mirror_ns(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.c.url, false), GOOD(env.a.url, true) };
        fb_set(fb, "reg.example:5000", eps, 2);

        struct fallback_response resp;
        assert_int_equal(fetch(fb, "reg.example:5000", REPO, FALLBACK_MANIFEST, TAG, false, 0, NULL, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);

        json_auto_t *mirror = upstream_log(&env.c);
        assert_int_equal(json_array_size(mirror), 1);
        assert_string_equal(log_path(mirror, 0), "/v2/" REPO "/manifests/" TAG "?ns=reg.example%3A5000");
        json_auto_t *origin = upstream_log(&env.a);
        assert_int_equal(json_array_size(origin), 1);
        assert_string_equal(log_path(origin, 0), "/v2/" REPO "/manifests/" TAG);
}

/* A tag list page through the chain: a mirror without the repository (404)
 * passes it on, n and last go along (with ?ns= for mirrors), the next page's
 * "last" comes from the Link header. */
static void test_tags_list(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.c.url, false), GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_put_manifest(&env.a, REPO, "v2", NULL, env.manifest, env.manifest_size);
        upstream_put_manifest(&env.a, REPO, "v3", NULL, env.manifest, env.manifest_size);

        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_TAGS, .tags_n = 2 };
        struct fallback_response resp;
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_non_null(resp.body);
        assert_memory_equal(resp.body, "{\"name\": \"" REPO "\", \"tags\": [\"v1\", \"v2\"]}", (size_t) resp.size);
        assert_string_equal(resp.next_last, "v2");
        fallback_response_done(&resp);

        req.tags_last = "v2";
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        assert_int_equal(resp.status, 200);
        char **tags = NULL;
        size_t n = 0;
        assert_int_equal(fallback_tags_parse(resp.body, (size_t) resp.size, &tags, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(tags[0], "v3");
        fallback_strv_free(tags, n);
        assert_null(resp.next_last);
        fallback_response_done(&resp);

        json_auto_t *mirror = upstream_log(&env.c);
        assert_int_equal(json_array_size(mirror), 2);
        assert_string_equal(log_path(mirror, 0), "/v2/" REPO "/tags/list?n=2&ns=" REG);
        assert_string_equal(log_path(mirror, 1), "/v2/" REPO "/tags/list?n=2&last=v2&ns=" REG);
        json_auto_t *origin = upstream_log(&env.a);
        assert_string_equal(log_path(origin, 1), "/v2/" REPO "/tags/list?n=2&last=v2");

        /* Not a valid request: a reference, a HEAD, a "last" that is no tag. */
        req.tags_last = "a b";
        assert_int_equal(fallback_fetch(fb, &req, &resp), -EINVAL);
        fallback_response_done(&resp);
        req.tags_last = NULL;
        req.head = true;
        assert_int_equal(fallback_fetch(fb, &req, &resp), -EINVAL);
        fallback_response_done(&resp);
        req.head = false;
        req.reference = TAG;
        assert_int_equal(fallback_fetch(fb, &req, &resp), -EINVAL);
        fallback_response_done(&resp);
}

/* The referrers index (OCI 1.1): by the subject's digest, through the chain
 * like a tag (a mirror gets ?ns=, its 404 moves on), asking for an OCI index;
 * a registry without the API answers 404, which is final at the origin. */
static void test_referrers(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.c.url, false), GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 2);
        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_REFERRERS,
                                        .reference = env.manifest_digest_str };
        struct fallback_response resp;
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        assert_int_equal(resp.status, 404);
        assert_false(resp.has_next);
        fallback_response_done(&resp);
        json_auto_t *mirror = upstream_log(&env.c);
        assert_int_equal(json_array_size(mirror), 1);
        char want[256];
        snprintf(want, sizeof(want), "/v2/" REPO "/referrers/%s?ns=" REG, env.manifest_digest_str);
        assert_string_equal(log_path(mirror, 0), want);
        assert_string_equal(log_header(mirror, 0, "accept"), FALLBACK_REFERRERS_MEDIA_TYPE);
        json_auto_t *origin = upstream_log(&env.a);
        snprintf(want, sizeof(want), "/v2/" REPO "/referrers/%s", env.manifest_digest_str);
        assert_string_equal(log_path(origin, json_array_size(origin) - 1), want);

        /* A tag, a HEAD or an offset is no referrers request. */
        static const char *const refs[] = { TAG, NULL };
        for (size_t i = 0; i < ELEMENTSOF(refs); i++) {
                req.reference = refs[i];
                assert_int_equal(fallback_fetch(fb, &req, &resp), -EINVAL);
                fallback_response_done(&resp);
        }
        req.reference = env.manifest_digest_str;
        req.head = true;
        assert_int_equal(fallback_fetch(fb, &req, &resp), -EINVAL);
        fallback_response_done(&resp);
        req.head = false;
        req.offset = 1;
        assert_int_equal(fallback_fetch(fb, &req, &resp), -EINVAL);
        fallback_response_done(&resp);
}

/* containerd's capabilities: an endpoint without "resolve" is never asked
 * for a tag, one without "pull" never for content by digest. */
static void test_capabilities(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.b.url, false), GOOD(env.a.url, true) };
        eps[0].no_resolve = true;
        fb_set(fb, REG, eps, 2);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url); /* B has the tag, but may not resolve it */
        fallback_response_done(&resp);
        struct collect c = { 0 };
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.b.url); /* content by digest: B may */
        fallback_response_done(&resp);
        assert_collected(&c, 0);
        free(c.data);
        json_auto_t *b = upstream_log(&env.b);
        assert_int_equal(json_array_size(b), 1);

        eps[0].no_resolve = false;
        eps[0].no_pull = true;
        fb_set(fb, REG, eps, 2);
        struct collect c2 = { 0 };
        assert_int_equal(fetch_blob(fb, 0, &c2, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        assert_collected(&c2, 0);
        free(c2.data);
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.b.url);
        fallback_response_done(&resp);
        json_auto_t *b2 = upstream_log(&env.b);
        assert_int_equal(json_array_size(b2), 2); /* the blob before, the tag now; not the second blob */
}

/* Docker Hub's one-component names live under library/. */
static void test_docker_hub_library(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.c.url, false), GOOD(env.a.url, true) };
        fb_set(fb, "docker.io", eps, 2);
        upstream_put_manifest(&env.a, "library/nginx", "latest", NULL, env.manifest, env.manifest_size);
        upstream_put_manifest(&env.a, "bitnami/nginx", "latest", NULL, env.manifest, env.manifest_size);

        struct fallback_response resp;
        assert_int_equal(fetch(fb, "docker.io", "nginx", FALLBACK_MANIFEST, "latest", false, 0, NULL, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        fallback_response_done(&resp);
        assert_int_equal(fetch(fb, "docker.io", "bitnami/nginx", FALLBACK_MANIFEST, "latest", false, 0, NULL, &resp),
                         0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);

        json_auto_t *mirror = upstream_log(&env.c);
        assert_int_equal(json_array_size(mirror), 2);
        assert_string_equal(log_path(mirror, 0), "/v2/library/nginx/manifests/latest?ns=docker.io");
        assert_string_equal(log_path(mirror, 1), "/v2/bitnami/nginx/manifests/latest?ns=docker.io");
        json_auto_t *origin = upstream_log(&env.a);
        assert_int_equal(json_array_size(origin), 2);
        assert_string_equal(log_path(origin, 0), "/v2/library/nginx/manifests/latest");
        assert_string_equal(log_path(origin, 1), "/v2/bitnami/nginx/manifests/latest");
}

/* ---- manifest verification -------------------------------------------------------------- */

static void test_manifest_corrupt_by_digest(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"corrupt\": true}]");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, env.manifest_digest_str, false, &resp), 0);
        assert_served(&resp, env.b.url);
        assert_manifest(&resp);
        fallback_response_done(&resp);
        assert_contains(events_last(&ev, FALLBACK_EVENT_FAILOVER, env.a.url).reason, "digest mismatch");
        assert_int_equal(stats_of(fb, env.a.url).failures, 1);

        /* The only endpoint: no answer at all rather than wrong bytes. */
        _cleanup_(fallback_freep) struct fallback *fb2 = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config one[] = { GOOD(env.a.url, true) };
        fb_set(fb2, REG, one, 1);
        assert_int_equal(fetch_manifest(fb2, env.manifest_digest_str, false, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_null(resp.body);
        assert_contains(resp.error, "digest mismatch");
        fallback_response_done(&resp);
}

static void test_manifest_tag_digest_mismatch(void **state) {
        (void) state;
        static const char *const claims[] = {
                "sha256:1111111111111111111111111111111111111111111111111111111111111111", /* another manifest's */
                "sha256:NOT-A-DIGEST",                                                       /* garbage */
        };
        for (size_t i = 0; i < ELEMENTSOF(claims); i++) {
                struct events ev = EVENTS_INIT;
                _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
                struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
                fb_set(fb, REG, eps, 2);
                upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"digest_header\": \"%s\"}]", claims[i]);

                struct fallback_response resp;
                assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
                assert_served(&resp, env.b.url);
                assert_manifest(&resp);
                fallback_response_done(&resp);
                assert_int_equal(events_count(&ev, FALLBACK_EVENT_FAILOVER, env.a.url), 1);
                assert_int_equal(stats_of(fb, env.a.url).failures, 1);

                /* A HEAD by tag takes the endpoint's word, so a garbage one must fail over too. */
                if (i == 1) {
                        assert_int_equal(fetch_manifest(fb, TAG, true, &resp), 0);
                        assert_served(&resp, env.b.url);
                        assert_true(digest_equal(&resp.digest, &env.manifest_digest));
                        fallback_response_done(&resp);
                }
        }
}

/* A tag's manifest sent with neither Docker-Content-Digest nor Content-Length
 * ends with the connection, so a body cut short looks complete: its digest
 * would be recorded as the tag. Only a body that parses whole is taken; a cut
 * one is the endpoint's failure (the next endpoint, or 503). */
static void test_manifest_tag_cut_without_digest(void **state) {
        (void) state;
        static const char cut[] = "[{\"path\": \"/manifests/" TAG "$\", \"digest_header\": null, "
                                  "\"content_length\": null, \"close_after\": 60}]";
        for (int head = 0; head <= 1; head++) {
                struct events ev = EVENTS_INIT;
                _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
                struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
                fb_set(fb, REG, eps, 2);
                upstream_rules(&env.a, "%s", cut);

                struct fallback_response resp;
                assert_int_equal(fetch_manifest(fb, TAG, head, &resp), 0);
                assert_served(&resp, env.b.url);
                assert_true(digest_equal(&resp.digest, &env.manifest_digest));
                fallback_response_done(&resp);
                assert_int_equal(events_count(&ev, FALLBACK_EVENT_FAILOVER, env.a.url), 1);
                assert_int_equal(stats_of(fb, env.a.url).failures, 1);
                assert_contains(events_last(&ev, FALLBACK_EVENT_FAILOVER, env.a.url).reason, "not a whole manifest");
        }

        /* The only endpoint: no answer at all rather than a cut one. */
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config one[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, one, 1);
        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, true, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_false(resp.has_digest);
        assert_null(resp.body);
        assert_contains(resp.error, "not a whole manifest");
        fallback_response_done(&resp);

        /* The same answer not cut is taken: neither header is required (a
         * fresh client: the failure above opened the endpoint's breaker). */
        _cleanup_(fallback_freep) struct fallback *fresh = fb_new(NULL, 0, 0, 0);
        fb_set(fresh, REG, one, 1);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/" TAG "$\", \"digest_header\": null, "
                               "\"content_length\": null}]");
        assert_int_equal(fetch_manifest(fresh, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        fallback_response_done(&resp);
}

static void test_manifest_size_limit(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        static const char type[] = "application/vnd.oci.image.index.v1+json";
        _cleanup_free_ char *big = unit_repeat('x', FALLBACK_MANIFEST_MAX + 1);
        upstream_put_manifest(&env.a, REPO, "big", type, big, FALLBACK_MANIFEST_MAX + 1);
        upstream_put_manifest(&env.a, REPO, "max", type, big, FALLBACK_MANIFEST_MAX);

        /* Exactly at the limit is fine. */
        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, "max", false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.size, FALLBACK_MANIFEST_MAX);
        assert_memory_equal(resp.body, big, FALLBACK_MANIFEST_MAX);
        fallback_response_done(&resp);

        /* One byte more is a failure of the endpoint (a registry's own limit). */
        assert_int_equal(fetch_manifest(fb, "big", false, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_null(resp.body);
        assert_contains(resp.error, "larger");
        fallback_response_done(&resp);
        assert_int_equal(stats_of(fb, env.a.url).failures, 1);
}

/* A manifest's and a tag page's memory come from the request's budget: the
 * announced length at once, else as it grows; past it the fetch ends with
 * -ENOBUFS, blaming no endpoint; the response's hold goes with the body. */
static void test_manifest_budget(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        static const char type[] = "application/vnd.oci.image.index.v1+json";
        _cleanup_free_ char *big = unit_repeat('x', FALLBACK_MANIFEST_MAX);
        upstream_put_manifest(&env.a, REPO, "max", type, big, FALLBACK_MANIFEST_MAX);
        struct budget budget;
        budget_init(&budget, 6u << 20);
        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST,
                                        .reference = "max", .budget = &budget };

        /* Announced: one reservation of it all (and the NUL). */
        struct fallback_response held, resp;
        assert_int_equal(fallback_fetch(fb, &req, &held), 0);
        assert_int_equal(held.status, 200);
        assert_int_equal(held.size, FALLBACK_MANIFEST_MAX);
        assert_int_equal(held.held.n, FALLBACK_MANIFEST_MAX + 1);
        assert_int_equal(budget_held(&budget), FALLBACK_MANIFEST_MAX + 1);

        /* No room for another: refused, nothing held, the endpoint not blamed. */
        assert_int_equal(fallback_fetch(fb, &req, &resp), -ENOBUFS);
        assert_null(resp.body);
        fallback_response_done(&resp);
        assert_int_equal(budget_held(&budget), FALLBACK_MANIFEST_MAX + 1);
        assert_int_equal(stats_of(fb, env.a.url).failures, 0);
        assert_int_equal(budget_refused(&budget), 1);

        /* Given back with the response. */
        fallback_response_done(&held);
        assert_int_equal(budget_held(&budget), 0);

        /* Unannounced (no Content-Length): taken as it grows, and refused as soon as it does not fit. */
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"content_length\": null}]");
        budget_set_limit(&budget, 1u << 20);
        assert_int_equal(fallback_fetch(fb, &req, &resp), -ENOBUFS);
        fallback_response_done(&resp);
        assert_int_equal(budget_held(&budget), 0);
        req.reference = env.manifest_digest_str; /* small: fits */
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        assert_manifest(&resp);
        assert_true(resp.held.n > (uint64_t) resp.size && resp.held.n <= 64 * 1024 + 1);
        fallback_response_done(&resp);
        assert_int_equal(budget_held(&budget), 0);

        /* Tag pages too. */
        upstream_rules(&env.a, "[]");
        budget_set_limit(&budget, 8);
        struct fallback_request tags = { .registry = REG, .repository = REPO, .kind = FALLBACK_TAGS,
                                         .budget = &budget };
        assert_int_equal(fallback_fetch(fb, &tags, &resp), -ENOBUFS);
        fallback_response_done(&resp);
        budget_set_limit(&budget, 1u << 20);
        assert_int_equal(fallback_fetch(fb, &tags, &resp), 0);
        assert_int_equal(resp.status, 200);
        assert_int_equal(resp.held.n, (uint64_t) resp.size + 1);
        fallback_response_done(&resp);
        assert_int_equal(budget_held(&budget), 0);
        assert_int_equal(stats_of(fb, env.a.url).failures, 0);
}

/* ---- circuit breakers ------------------------------------------------------------------- */

/* One failure opens the breaker (breaker_failures = 1): the next fetch does
 * not touch the endpoint at all while the backoff runs. */
static void test_breaker_opens(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 1, 4000, 8000);
        struct fallback_endpoint_config eps[] = { BROKEN(env.hole.url, false), GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 2);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.attempts, 2);
        fallback_response_done(&resp);
        assert_int_equal(hole_drain(&env.hole), 1);

        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.hole.url), 1);
        struct recorded_event open = events_last(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.hole.url);
        assert_in_range(open.backoff_ms, 2000, 4000); /* the minimum, jittered down by at most half */
        assert_contains(open.reason, "no response");
        struct ep_stats st = stats_of(fb, env.hole.url);
        assert_int_equal(st.state, FALLBACK_BREAKER_OPEN);
        assert_string_equal(fallback_breaker_state_to_string(st.state), "open");
        assert_int_equal(st.opens, 1);
        assert_int_equal(st.consecutive_failures, 1);
        assert_int_equal(st.requests, 1);

        /* Skipped: no connection, one request in all, and no new event. */
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.attempts, 1);
        fallback_response_done(&resp);
        assert_int_equal(hole_drain(&env.hole), 0);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_OPEN, NULL), 1);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_HALF_OPEN, NULL), 0);
        assert_int_equal(stats_of(fb, env.hole.url).requests, 1);
}

/* breaker_failures consecutive failures open it, not fewer. */
static void test_breaker_threshold(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 3, 10000, 20000);
        struct fallback_endpoint_config eps[] = { BROKEN(env.refuse.url, false), GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 2);

        struct fallback_response resp;
        for (unsigned i = 1; i <= 3; i++) {
                assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
                assert_served(&resp, env.a.url);
                assert_int_equal(resp.attempts, 2);
                fallback_response_done(&resp);
                struct ep_stats st = stats_of(fb, env.refuse.url);
                assert_int_equal(st.consecutive_failures, i);
                assert_int_equal(st.state, i < 3 ? FALLBACK_BREAKER_CLOSED : FALLBACK_BREAKER_OPEN);
                assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_OPEN, NULL), i < 3 ? 0 : 1);
        }
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_int_equal(resp.attempts, 1);
        fallback_response_done(&resp);
        assert_int_equal(stats_of(fb, env.refuse.url).requests, 3);
}

/* Sleeps until `at_ms + backoff_ms` has passed, with a margin. */
static void sleep_past(const struct recorded_event *e) {
        uint64_t until = e->at_ms + e->backoff_ms + 30, now = time_now_ms();
        if (until > now)
                fixture_sleep_ms(until - now);
}

/* After the backoff one probe goes through: a failed one re-opens with a
 * doubled backoff, a good one closes the breaker. */
/* Until n events of type for endpoint were recorded (a background probe's), bounded. */
static void wait_events(struct events *ev, enum fallback_event_type type, const char *endpoint, size_t n) {
        uint64_t deadline = time_now_ms() + 3 * MID_MS;
        while (events_count(ev, type, endpoint) < n && time_now_ms() < deadline)
                fixture_sleep_ms(10);
        assert_int_equal(events_count(ev, type, endpoint), n);
}

/* The backoff over, the request that finds the breaker half-open is served by
 * the next endpoint at once, and a HEAD of the same manifest probes the broken
 * one in the background: a dead endpoint never costs a client its timeout again. */
static void test_breaker_probe(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 1, 150, 300);
        struct fallback_endpoint_config eps[] = { EP_AT(env.a.url, false, MID_MS), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"hang\": true}]");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.b.url);
        fallback_response_done(&resp);
        struct recorded_event first = events_last(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.a.url);
        assert_in_range(first.backoff_ms, 75, 150);

        /* The probe fails: open again, for longer (the base doubles to 300);
         * the request that started it did not wait for it. */
        sleep_past(&first);
        uint64_t t0 = time_now_ms();
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_true(time_now_ms() - t0 < MID_MS / 2);
        assert_served(&resp, env.b.url);
        assert_int_equal(resp.attempts, 1);
        fallback_response_done(&resp);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_HALF_OPEN, env.a.url), 1);
        wait_events(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.a.url, 2);
        struct recorded_event second = events_last(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.a.url);
        assert_in_range(second.backoff_ms, 150, 300);
        struct ep_stats st = stats_of(fb, env.a.url);
        assert_int_equal(st.state, FALLBACK_BREAKER_OPEN);
        assert_int_equal(st.opens, 2);
        assert_int_equal(st.consecutive_failures, 2);

        /* Mended: the next probe closes it, and the request after goes there. */
        upstream_rules(&env.a, "[]");
        sleep_past(&second);
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.b.url);
        fallback_response_done(&resp);
        wait_events(&ev, FALLBACK_EVENT_BREAKER_CLOSED, env.a.url, 1);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_HALF_OPEN, env.a.url), 2);
        st = stats_of(fb, env.a.url);
        assert_int_equal(st.state, FALLBACK_BREAKER_CLOSED);
        assert_int_equal(st.consecutive_failures, 0);
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.attempts, 1);
        fallback_response_done(&resp);

        /* The first try, two probes (HEADs), the request after: nothing in between. */
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 4);
        for (size_t i = 1; i <= 2; i++)
                assert_string_equal(json_string_value(json_object_get(json_array_get(log, i), "method")), "HEAD");
        assert_string_equal(json_string_value(json_object_get(json_array_get(log, 3), "method")), "GET");
}

/* With no endpoint after it that could serve, the request probes the
 * half-open endpoint itself (waiting for it is all it can do), and a probe
 * under way never keeps fallback_free() waiting for its timeout. */
static void test_breaker_probe_last(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        struct fallback *fb = fb_new(&ev, 1, 150, 300);
        struct fallback_endpoint_config eps[] = { EP_AT(env.a.url, false, MID_MS), EP_AT(env.b.url, true, MID_MS) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"hang\": true}]");
        upstream_rules(&env.b, "[{\"path\": \"/manifests/\", \"hang\": true}]");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 503);
        fallback_response_done(&resp);
        sleep_past(&(struct recorded_event) { .at_ms = time_now_ms(), .backoff_ms = 150 });

        /* a's and b's backoffs are over: a is probed in the background (b could
         * serve), b by the request itself (nothing after it). Both fail. */
        upstream_rules(&env.b, "[]");
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.b.url);
        assert_int_equal(resp.attempts, 1);
        fallback_response_done(&resp);

        /* A probe hangs on a (MID_MS): freeing does not wait it out. */
        uint64_t t0 = time_now_ms();
        fallback_free(fb);
        assert_true(time_now_ms() - t0 < MID_MS / 2);
        upstream_rules(&env.a, "[]");
        upstream_rules(&env.b, "[]");
}

/* A tag list that finds a breaker half-open carries the probe itself (there
 * is no HEAD of a tag list, and no reference to name): it must neither crash
 * nor fail while the next endpoint serves. */
static void test_tags_list_half_open(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 1, 150, 300);
        struct fallback_endpoint_config eps[] = { BROKEN(env.refuse.url, false), GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_put_manifest(&env.a, REPO, "v2", NULL, env.manifest, env.manifest_size);

        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_TAGS };
        struct fallback_response resp;
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        struct recorded_event first = events_last(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.refuse.url);
        sleep_past(&first);
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.attempts, 2); /* the probe (refused), then the origin */
        fallback_response_done(&resp);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.refuse.url), 2);
}

/* Every endpoint open: 503 at once, without a request. */
static void test_breaker_all_open(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 1, 10000, 20000);
        struct fallback_endpoint_config eps[] = { BROKEN(env.refuse.url, false), BROKEN(env.refuse2.url, true) };
        fb_set(fb, REG, eps, 2);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_int_equal(resp.attempts, 2);
        fallback_response_done(&resp);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_OPEN, NULL), 2);

        size_t before = ev.n;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_int_equal(resp.attempts, 0);
        assert_null(resp.endpoint);
        assert_contains(resp.error, "circuit");
        fallback_response_done(&resp);
        assert_int_equal(ev.n, before);
}

struct worker {
        struct fallback *fb;
        pthread_barrier_t *barrier;
        const char *repo;
        int r, status;
        char endpoint[96];
};

static void *worker_main(void *userdata) {
        struct worker *w = userdata;
        pthread_barrier_wait(w->barrier);
        struct fallback_response resp;
        w->r = fetch(w->fb, REG, w->repo ? w->repo : REPO, FALLBACK_MANIFEST, TAG, false, 0, NULL, &resp);
        w->status = resp.status;
        snprintf(w->endpoint, sizeof(w->endpoint), "%s", resp.endpoint ? resp.endpoint : "");
        fallback_response_done(&resp);
        return NULL;
}

/* n fetches of REPO:TAG at once; every one must be served by `served_by`. */
static void run_workers(struct fallback *fb, size_t n, const char *served_by) {
        pthread_barrier_t barrier;
        pthread_t threads[16];
        struct worker w[16];
        assert_true(n <= ELEMENTSOF(threads));
        assert_int_equal(pthread_barrier_init(&barrier, NULL, (unsigned) n), 0);
        for (size_t i = 0; i < n; i++) {
                w[i] = (struct worker) { .fb = fb, .barrier = &barrier };
                assert_int_equal(pthread_create(&threads[i], NULL, worker_main, &w[i]), 0);
        }
        for (size_t i = 0; i < n; i++)
                pthread_join(threads[i], NULL);
        pthread_barrier_destroy(&barrier);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(w[i].r, 0);
                assert_int_equal(w[i].status, 200);
                assert_string_equal(w[i].endpoint, served_by);
        }
}

/* Requests already under way when the breaker opens fail in its wake: that
 * is the same outage, not a row of failed probes. The breaker opens once, at
 * the minimum backoff. */
static void test_breaker_concurrent_failures(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 1, 4000, 60000);
        struct fallback_endpoint_config eps[] = { BROKEN(env.hole.url, false), GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 2);

        run_workers(fb, 4, env.a.url);
        assert_int_equal(hole_drain(&env.hole), 4);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_FAILOVER, env.hole.url), 4);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.hole.url), 1);
        assert_in_range(events_last(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.hole.url).backoff_ms, 2000, 4000);
        struct ep_stats st = stats_of(fb, env.hole.url);
        assert_int_equal(st.opens, 1);
        assert_int_equal(st.failures, 4);
        assert_int_equal(st.state, FALLBACK_BREAKER_OPEN);
}

/* A blob download that trickles while another thread asks the same registry:
 * the sink counts what arrived (read across threads), the flag cancels it. */
struct trickled {
        struct fallback *fb;
        uint64_t received; /* __atomic */
        bool stop;         /* __atomic */
        int r;
        struct fallback_response resp;
};

static int trickled_write(void *userdata, const void *data, size_t size) {
        struct trickled *t = userdata;
        (void) data;
        __atomic_add_fetch(&t->received, size, __ATOMIC_RELEASE);
        return 0;
}

static bool trickled_cancelled(void *userdata) {
        struct trickled *t = userdata;
        return __atomic_load_n(&t->stop, __ATOMIC_ACQUIRE);
}

static void *trickled_main(void *userdata) {
        struct trickled *t = userdata;
        struct sink s = { .userdata = t, .write = trickled_write };
        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_BLOB,
                                        .reference = env.blob_digest, .sink = &s,
                                        .cancelled = trickled_cancelled, .cancel_userdata = t };
        t->r = fallback_fetch(t->fb, &req, &t->resp);
        return NULL;
}

/* The registry's only endpoint failed once; the request that finds its
 * backoff over carries the probe itself (nothing else could serve), and it is
 * a blob that trickles for minutes. Its 200 head is the verdict: the breaker
 * closes then, not when the body ends, so the registry's other requests are
 * served meanwhile instead of refused as "circuit open" (issue 16). */
static void test_breaker_probe_verdict_at_head(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 1, 150, 300);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        /* One byte every 5 ms: the blob would take 25 minutes. */
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"status\": 500, \"times\": 1},"
                               " {\"path\": \"/blobs/\", \"method\": \"GET\", \"trickle_ms\": 5, \"times\": 1}]");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 503);
        fallback_response_done(&resp);
        assert_state(fb, env.a.url, FALLBACK_BREAKER_OPEN);
        sleep_past(&(struct recorded_event) { .at_ms = time_now_ms(), .backoff_ms = 150 });

        struct trickled t = { .fb = fb };
        pthread_t thread;
        assert_int_equal(pthread_create(&thread, NULL, trickled_main, &t), 0);
        uint64_t deadline = time_now_ms() + 3 * MID_MS;
        while (__atomic_load_n(&t.received, __ATOMIC_ACQUIRE) == 0 && time_now_ms() < deadline)
                fixture_sleep_ms(10);
        uint64_t trickled = __atomic_load_n(&t.received, __ATOMIC_ACQUIRE);
        struct ep_stats during = stats_of(fb, env.a.url);

        /* While it trickles: a manifest and the same blob again. The download
         * is stopped before anything is asserted, so that a failure leaves no
         * thread behind. */
        struct fallback_response manifest, blob;
        struct collect c = { 0 };
        assert_int_equal(fetch_manifest(fb, TAG, false, &manifest), 0);
        assert_int_equal(fetch_blob(fb, 0, &c, &blob), 0);
        uint64_t trickled_after = __atomic_load_n(&t.received, __ATOMIC_ACQUIRE);
        /* The trickling client leaves: no verdict is left to give, none is taken back. */
        __atomic_store_n(&t.stop, true, __ATOMIC_RELEASE);
        assert_int_equal(pthread_join(thread, NULL), 0);

        assert_true(trickled > 0);
        assert_served(&manifest, env.a.url); /* not 503 "every endpoint is unavailable (circuit open)" */
        assert_manifest(&manifest);
        fallback_response_done(&manifest);
        assert_served(&blob, env.a.url);
        assert_collected(&c, 0);
        fallback_response_done(&blob);
        free(c.data);
        assert_true(trickled_after < BLOB_SIZE);
        assert_int_equal(during.state, FALLBACK_BREAKER_CLOSED);
        assert_int_equal(t.r, -ECANCELED);
        fallback_response_done(&t.resp);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_HALF_OPEN, env.a.url), 1);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_CLOSED, env.a.url), 1);
        assert_state(fb, env.a.url, FALLBACK_BREAKER_CLOSED);
        assert_int_equal(stats_of(fb, env.a.url).consecutive_failures, 0);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.a.url), 1);
}

static void test_report_bad(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 1, 10000, 20000);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);

        fallback_report_bad(fb, REG, env.a.url, "served bytes that do not match the digest");
        fallback_report_bad(fb, REG, "http://127.0.0.1:1", "not configured: ignored");
        fallback_report_bad(fb, "other.test", env.a.url, "another registry: ignored");
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_BREAKER_OPEN, NULL), 1);
        assert_contains(events_last(&ev, FALLBACK_EVENT_BREAKER_OPEN, env.a.url).reason, "do not match");
        assert_state(fb, env.a.url, FALLBACK_BREAKER_OPEN);
        assert_state(fb, env.b.url, FALLBACK_BREAKER_CLOSED);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.b.url);
        fallback_response_done(&resp);
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 0);
}

/* ---- resume ---------------------------------------------------------------------------- */

/* The connection breaks after CUT bytes: the same endpoint goes on from there. */
static void test_resume_same_endpoint(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"close_after\": %d, \"times\": 1}]", CUT);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.received, BLOB_SIZE);
        assert_int_equal(resp.size, BLOB_SIZE);
        assert_int_equal(resp.attempts, 2);
        assert_collected(&c, 0);
        assert_int_equal(c.total, BLOB_SIZE);
        fallback_response_done(&resp);
        free(c.data);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 2);
        assert_null(log_header(log, 0, "range"));
        char range[32];
        snprintf(range, sizeof(range), "bytes=%d-", CUT);
        assert_string_equal(log_header(log, 1, "range"), range);
        assert_int_equal(log_status(log, 1), 206);
        json_auto_t *other = upstream_log(&env.b);
        assert_int_equal(json_array_size(other), 0);

        struct recorded_event e = events_last(&ev, FALLBACK_EVENT_RESUME, env.a.url);
        assert_int_equal(e.offset, CUT);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_FAILOVER, NULL), 0);
        struct ep_stats st = stats_of(fb, env.a.url);
        assert_int_equal(st.resumes, 1);
        assert_int_equal(st.bytes, BLOB_SIZE);
        assert_int_equal(st.state, FALLBACK_BREAKER_CLOSED);
}

/* An endpoint that ignores Range answers 200 with the whole blob: the bytes
 * the sink already has are skipped. */
static void test_resume_ignore_range(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_rules(&env.a,
                       "[{\"path\": \"/blobs/\", \"close_after\": %d, \"times\": 1},"
                       " {\"path\": \"/blobs/\", \"ignore_range\": true}]",
                       CUT);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.received, BLOB_SIZE);
        assert_int_equal(resp.size, BLOB_SIZE);
        assert_collected(&c, 0);
        fallback_response_done(&resp);
        free(c.data);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 2);
        assert_non_null(log_header(log, 1, "range"));
        assert_int_equal(log_status(log, 1), 200);
}

/* A body that stalls: the next endpoint goes on with a Range request. */
static void test_resume_after_stall(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { BROKEN(env.a.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"stall_after\": %d}]", CUT);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.b.url);
        assert_int_equal(resp.received, BLOB_SIZE);
        assert_collected(&c, 0);
        assert_true(c.starts >= 1);
        assert_int_equal(c.total, BLOB_SIZE);
        fallback_response_done(&resp);
        free(c.data);

        json_auto_t *la = upstream_log(&env.a);
        assert_int_equal(json_array_size(la), 1);
        assert_null(log_header(la, 0, "range"));
        json_auto_t *lb = upstream_log(&env.b);
        assert_int_equal(json_array_size(lb), 1);
        char range[32];
        snprintf(range, sizeof(range), "bytes=%d-", CUT);
        assert_string_equal(log_header(lb, 0, "range"), range);
        assert_int_equal(log_status(lb, 0), 206);

        assert_contains(events_last(&ev, FALLBACK_EVENT_FAILOVER, env.a.url).reason, "stalled");
        assert_int_equal(events_last(&ev, FALLBACK_EVENT_RESUME, env.b.url).offset, CUT);
        assert_int_equal(stats_of(fb, env.a.url).bytes, CUT);
}

/* request.offset: the sink already has that much; the first request asks for the rest. */
static void test_resume_offset(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, CUT, &c, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.received, BLOB_SIZE - CUT);
        assert_int_equal(resp.size, BLOB_SIZE);
        assert_int_equal(resp.attempts, 1);
        assert_collected(&c, CUT);
        assert_int_equal(c.total, BLOB_SIZE);
        fallback_response_done(&resp);
        free(c.data);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 1);
        char range[32];
        snprintf(range, sizeof(range), "bytes=%d-", CUT);
        assert_string_equal(log_header(log, 0, "range"), range);

        /* The same against an endpoint that ignores Range. */
        upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"ignore_range\": true}]");
        c = (struct collect) { 0 };
        assert_int_equal(fetch_blob(fb, CUT, &c, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.received, BLOB_SIZE - CUT);
        assert_collected(&c, CUT);
        fallback_response_done(&resp);
        free(c.data);
}

/* A 206 that starts elsewhere than asked is not the rest of the blob. */
static void test_resume_bad_content_range(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"headers\": {\"Content-Range\": \"bytes 0-%d/%d\"}}]",
                       BLOB_SIZE - CUT - 1, BLOB_SIZE);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, CUT, &c, &resp), 0);
        assert_served(&resp, env.b.url);
        assert_collected(&c, CUT);
        fallback_response_done(&resp);
        free(c.data);
        assert_contains(events_last(&ev, FALLBACK_EVENT_FAILOVER, env.a.url).reason, "Content-Range");
        assert_int_equal(stats_of(fb, env.a.url).failures, 1);

        /* Alone, it fails the fetch, and the sink got nothing. */
        _cleanup_(fallback_freep) struct fallback *fb2 = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config one[] = { GOOD(env.a.url, true) };
        fb_set(fb2, REG, one, 1);
        c = (struct collect) { 0 };
        assert_int_equal(fetch_blob(fb2, CUT, &c, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_int_equal(c.len, 0);
        assert_int_equal(c.starts, 0);
        fallback_response_done(&resp);
        free(c.data);
}

/* The sink refuses (disk full): the whole fetch ends with its errno, and no
 * other endpoint is bothered. */
static void test_sink_error(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);

        struct collect c = { .fail_after = CUT, .fail_errno = -ENOSPC };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), -ENOSPC);
        assert_true(c.len <= CUT);
        assert_int_equal(resp.received, c.len);
        fallback_response_done(&resp);
        free(c.data);

        /* start() may refuse too. */
        c = (struct collect) { .start_errno = -EDQUOT };
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), -EDQUOT);
        assert_int_equal(c.len, 0);
        fallback_response_done(&resp);

        json_auto_t *log = upstream_log(&env.b);
        assert_int_equal(json_array_size(log), 0);
        assert_int_equal(events_count(&ev, FALLBACK_EVENT_FAILOVER, NULL), 0);
        struct ep_stats st = stats_of(fb, env.a.url);
        assert_int_equal(st.failures, 0); /* the endpoint did nothing wrong */
        assert_int_equal(st.state, FALLBACK_BREAKER_CLOSED);
}

/* ---- auth -------------------------------------------------------------------------------- */

static size_t count_token_requests(const struct upstream *u) {
        json_auto_t *log = upstream_log(u);
        return log_count(log, "GET", "/token");
}

static void test_bearer_anonymous(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_auth(&env.a, "{\"mode\": \"bearer\"}");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        assert_int_equal(resp.attempts, 2); /* the token request is not counted */
        fallback_response_done(&resp);

        struct collect c = { 0 };
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0); /* same repository: the same token */
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.attempts, 1);
        assert_collected(&c, 0);
        fallback_response_done(&resp);
        free(c.data);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 4);
        assert_int_equal(log_status(log, 0), 401);
        assert_null(log_header(log, 0, "authorization"));
        assert_string_equal(log_method(log, 1), "GET");
        assert_contains(log_path(log, 1), "/token?");
        assert_contains(log_path(log, 1), "service=fixture");
        assert_contains(log_path(log, 1), "scope=");
        assert_null(log_header(log, 1, "authorization")); /* anonymous */
        assert_int_equal(log_status(log, 1), 200);
        assert_int_equal(log_status(log, 2), 200);
        assert_contains(log_header(log, 2, "authorization"), "Bearer ");
        assert_int_equal(log_status(log, 3), 200);
        assert_string_equal(log_header(log, 3, "authorization"), log_header(log, 2, "authorization"));
        assert_int_equal(log_count(log, NULL, "/token"), 1);
        assert_int_equal(stats_of(fb, env.a.url).token_fetches, 1);

        /* Another repository is another scope: another token. */
        upstream_put_manifest(&env.a, "test/other", TAG, NULL, env.manifest, env.manifest_size);
        assert_int_equal(fetch(fb, REG, "test/other", FALLBACK_MANIFEST, TAG, false, 0, NULL, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        assert_int_equal(count_token_requests(&env.a), 2);
}

static void test_bearer_credentials(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"alice\", \"password\": \"" PASSWORD "\"}");
        _cleanup_free_ char *good = write_credentials("good.json", &env.a, "alice", PASSWORD);
        _cleanup_free_ char *bad = write_credentials("bad.json", &env.a, "alice", "wrong-" PASSWORD);

        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        eps[0].credentials_file = good;
        fb_set(fb, REG, eps, 1);
        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        fallback_response_done(&resp);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 3);
        _cleanup_free_ char *basic = unit_base64("alice:" PASSWORD);
        _cleanup_free_ char *want = NULL;
        assert_true(asprintf(&want, "Basic %s", basic) > 0);
        assert_string_equal(log_header(log, 1, "authorization"), want); /* only the token endpoint gets them */
        assert_null(log_header(log, 0, "authorization"));
        assert_contains(log_header(log, 2, "authorization"), "Bearer ");

        /* A wrong password: the origin's answer is a 401, and the password is nowhere in it. */
        _cleanup_(fallback_freep) struct fallback *fb2 = fb_new(NULL, 0, 0, 0);
        eps[0].credentials_file = bad;
        fb_set(fb2, REG, eps, 1);
        assert_int_equal(fetch_manifest(fb2, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 401);
        assert_null(strstr(resp.error, PASSWORD));
        assert_null(resp.body);
        fallback_response_done(&resp);
        assert_state(fb2, env.a.url, FALLBACK_BREAKER_CLOSED); /* an answer, not an outage */

        /* No credentials at all, where the token endpoint wants some: 401 too. */
        _cleanup_(fallback_freep) struct fallback *fb3 = fb_new(NULL, 0, 0, 0);
        eps[0].credentials_file = NULL;
        fb_set(fb3, REG, eps, 1);
        assert_int_equal(fetch_manifest(fb3, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 401);
        fallback_response_done(&resp);
}

/* A token the registry no longer takes is fetched again, once. */
static void test_bearer_refresh(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_auth(&env.a, "{\"mode\": \"bearer\"}");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        upstream_expire_tokens(&env.a);
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        fallback_response_done(&resp);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 6);
        assert_int_equal(log_status(log, 3), 401);
        assert_string_equal(log_header(log, 3, "authorization"), log_header(log, 2, "authorization"));
        assert_contains(log_path(log, 4), "/token");
        assert_int_equal(log_status(log, 5), 200);
        assert_contains(log_header(log, 5, "authorization"), "Bearer ");
        assert_string_not_equal(log_header(log, 5, "authorization"), log_header(log, 2, "authorization"));
        assert_int_equal(log_count(log, NULL, "/token"), 2);

        /* Tokens that are dead on arrival: one refresh, then the 401 is the answer (no loop). */
        upstream_reset(&env.a);
        upstream_put_manifest(&env.a, REPO, TAG, NULL, env.manifest, env.manifest_size);
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"token_ttl\": 0}");
        _cleanup_(fallback_freep) struct fallback *fb2 = fb_new(NULL, 0, 0, 0);
        fb_set(fb2, REG, eps, 1);
        assert_int_equal(fetch_manifest(fb2, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 401);
        fallback_response_done(&resp);
        json_auto_t *log2 = upstream_log(&env.a);
        assert_int_equal(log_count(log2, NULL, "/token"), 1);
        assert_int_equal(log_count(log2, NULL, "/manifests/"), 2);
}

/* expires_in is optional (60 s by the spec); "access_token" is OAuth's name for "token". */
static void test_token_answer_forms(void **state) {
        (void) state;
        static const char *const auths[] = {
                "{\"mode\": \"bearer\", \"token_ttl\": null}",
                "{\"mode\": \"bearer\", \"token_field\": \"access_token\"}",
                "{\"mode\": \"bearer\", \"token_field\": \"access_token\", \"issued_at\": false, \"token_ttl\": 3600}",
        };
        for (size_t i = 0; i < ELEMENTSOF(auths); i++) {
                _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
                struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
                fb_set(fb, REG, eps, 1);
                upstream_reset(&env.a);
                upstream_put_manifest(&env.a, REPO, TAG, NULL, env.manifest, env.manifest_size);
                upstream_auth(&env.a, "%s", auths[i]);

                struct fallback_response resp;
                for (int k = 0; k < 2; k++) {
                        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
                        assert_served(&resp, env.a.url);
                        assert_manifest(&resp);
                        fallback_response_done(&resp);
                }
                assert_int_equal(count_token_requests(&env.a), 1); /* cached for the second */
        }
}

static void test_basic_auth(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"basic\", \"user\": \"bob\", \"password\": \"" PASSWORD "\"}");
        _cleanup_free_ char *creds = write_credentials("basic.json", &env.a, "bob", PASSWORD);
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        eps[0].credentials_file = creds;
        fb_set(fb, REG, eps, 1);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        fallback_response_done(&resp);
        struct collect c = { 0 };
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.attempts, 1); /* sent up front once the endpoint asked for Basic */
        assert_collected(&c, 0);
        fallback_response_done(&resp);
        free(c.data);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 3);
        _cleanup_free_ char *basic = unit_base64("bob:" PASSWORD);
        _cleanup_free_ char *want = NULL;
        assert_true(asprintf(&want, "Basic %s", basic) > 0);
        assert_int_equal(log_status(log, 0), 401);
        assert_null(log_header(log, 0, "authorization"));
        assert_string_equal(log_header(log, 1, "authorization"), want);
        assert_string_equal(log_header(log, 2, "authorization"), want);
        assert_int_equal(log_count(log, NULL, "/token"), 0);

        /* Without credentials the 401 is the answer. */
        _cleanup_(fallback_freep) struct fallback *fb2 = fb_new(NULL, 0, 0, 0);
        eps[0].credentials_file = NULL;
        fb_set(fb2, REG, eps, 1);
        assert_int_equal(fetch_manifest(fb2, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 401);
        fallback_response_done(&resp);
}

/* A manifest fetch carrying a client's credentials (pass-through). */
static int fetch_manifest_as(struct fallback *fb, const char *user, const char *password,
                             struct fallback_response *resp) {
        struct digest key;
        struct fallback_client_auth ca = user ? fixture_client_auth(user, password, &key)
                                              : (struct fallback_client_auth) { 0 };
        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST,
                                        .reference = TAG, .deadline_ms = time_now_ms() + FETCH_DEADLINE_MS,
                                        .client_auth = user ? &ca : NULL };
        return fallback_fetch(fb, &req, resp);
}

/* A client's credentials go to the origin and its token realm only, never to a
 * mirror (which is skipped, its own credentials file notwithstanding); a token
 * got with them serves them alone; the origin's 401 is told apart (auth_refused). */
static void test_client_auth(void **state) {
        (void) state;
        const char *auth = "{\"mode\": \"bearer\", \"user\": \"alice\", \"password\": \"" PASSWORD "\"}";
        upstream_auth(&env.a, "%s", auth);
        upstream_auth(&env.b, "%s", auth);
        _cleanup_free_ char *mirror_creds = write_credentials("mirror.json", &env.a, "alice", PASSWORD);
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
        eps[0].credentials_file = mirror_creds;
        fb_set(fb, REG, eps, 2);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest_as(fb, "alice", PASSWORD, &resp), 0);
        assert_served(&resp, env.b.url);
        assert_manifest(&resp);
        assert_false(resp.auth_refused);
        fallback_response_done(&resp);
        json_auto_t *la = upstream_log(&env.a);
        assert_int_equal(json_array_size(la), 0); /* the mirror never saw the request */
        json_auto_t *lb = upstream_log(&env.b);
        _cleanup_free_ char *basic = unit_base64("alice:" PASSWORD);
        _cleanup_free_ char *want = NULL;
        assert_true(asprintf(&want, "Basic %s", basic) > 0);
        assert_int_equal(log_count(lb, "GET", "/token"), 1);
        assert_string_equal(log_header(lb, 1, "authorization"), want);

        /* Wrong credentials: a token of their own is asked for (the good one is not
         * theirs), refused: 401, told apart as the origin's. */
        assert_int_equal(fetch_manifest_as(fb, "alice", "wrong-" PASSWORD, &resp), 0);
        assert_int_equal(resp.status, 401);
        assert_true(resp.auth_refused);
        assert_null(resp.body);
        assert_null(strstr(resp.error, PASSWORD));
        fallback_response_done(&resp);
        assert_int_equal(count_token_requests(&env.b), 2);

        /* No client credentials: the chain as before (the mirror with its own
         * credentials serves); the client's token is not used. */
        assert_int_equal(fetch_manifest_as(fb, NULL, NULL, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        assert_int_equal(count_token_requests(&env.b), 2);

        /* The good credentials again: their cached token, no new token request. */
        assert_int_equal(fetch_manifest_as(fb, "alice", PASSWORD, &resp), 0);
        assert_served(&resp, env.b.url);
        fallback_response_done(&resp);
        assert_int_equal(count_token_requests(&env.b), 2);

        /* A mirror's 401 with nothing after it is no origin's answer; the origin's own is. */
        _cleanup_(fallback_freep) struct fallback *fb2 = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config only_origin[] = { GOOD(env.b.url, true) };
        fb_set(fb2, REG, only_origin, 1);
        assert_int_equal(fetch_manifest_as(fb2, NULL, NULL, &resp), 0);
        assert_int_equal(resp.status, 401);
        assert_true(resp.auth_refused);
        fallback_response_done(&resp);
        _cleanup_(fallback_freep) struct fallback *fb3 = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config only_mirror[] = { GOOD(env.a.url, false) };
        fb_set(fb3, REG, only_mirror, 1);
        assert_int_equal(fetch_manifest_as(fb3, NULL, NULL, &resp), 0);
        assert_int_equal(resp.status, 401);
        assert_false(resp.auth_refused);
        fallback_response_done(&resp);
}

/* Eight fetches need the same token at once: one token request. */
static void test_token_single_flight(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_auth(&env.a, "{\"mode\": \"bearer\"}");
        /* A slow token endpoint, so that all of them are waiting for it together. */
        upstream_rules(&env.a, "[{\"path\": \"^/token$\", \"delay_ms\": 300}]");

        run_workers(fb, 8, env.a.url);
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(log_count(log, NULL, "/token"), 1);
        size_t served = 0;
        for (size_t i = 0; i < json_array_size(log); i++)
                if (strstr(log_path(log, i), "/manifests/") && log_status(log, i) == 200)
                        served++;
        assert_int_equal(served, 8);
        assert_int_equal(stats_of(fb, env.a.url).token_fetches, 1);
}

struct scope_worker {
        struct fallback *fb;
        int first, step, n;
        const struct fallback_client_auth *client_auth; /* NULL: the endpoint's own */
        unsigned bad;
        char error[400];
};

/* HEADs of scope/r<first>, scope/r<first+step>, ... below n; each must be a 404. */
static void *scope_worker_main(void *userdata) {
        struct scope_worker *w = userdata;
        for (int i = w->first; i < w->n; i += w->step) {
                char repo[32];
                snprintf(repo, sizeof(repo), "scope/r%d", i);
                struct fallback_response resp;
                struct fallback_request req = { .registry = REG, .repository = repo, .kind = FALLBACK_MANIFEST,
                                                .reference = TAG, .head = true, .client_auth = w->client_auth,
                                                .deadline_ms = time_now_ms() + FETCH_DEADLINE_MS };
                int r = fallback_fetch(w->fb, &req, &resp);
                if (r != 0 || resp.status != 404) {
                        w->bad++;
                        snprintf(w->error, sizeof(w->error), "%s: %d, status %d (%.250s)", repo, r, resp.status,
                                 resp.error);
                }
                fallback_response_done(&resp);
        }
        return NULL;
}

/* More scopes than the per-endpoint token cache holds (256,
 * TOKENS_PER_ENDPOINT_MAX in fallback/token.c): old tokens make room, and the one a
 * fetch just got is never the one to go. */
/* HEADs of scope/r0 ... scope/r<n - 1>, eight at a time (each token costs the fixture a
 * delayed-ACK round trip), with client_auth (NULL: none); each must be a 404. */
static void fetch_scopes(struct fallback *fb, int n, const struct fallback_client_auth *client_auth) {
        enum { THREADS = 8 };
        pthread_t threads[THREADS];
        struct scope_worker w[THREADS];
        for (int i = 0; i < THREADS; i++) {
                w[i] = (struct scope_worker) { .fb = fb, .first = i, .step = THREADS, .n = n,
                                               .client_auth = client_auth };
                assert_int_equal(pthread_create(&threads[i], NULL, scope_worker_main, &w[i]), 0);
        }
        for (int i = 0; i < THREADS; i++)
                pthread_join(threads[i], NULL);
        for (int i = 0; i < THREADS; i++)
                if (w[i].bad)
                        fail_msg("%u fetches failed, e.g. %s", w[i].bad, w[i].error);
}

static void test_token_cache_full(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_auth(&env.a, "{\"mode\": \"bearer\"}");

        enum { SCOPES = 258 };
        fetch_scopes(fb, SCOPES, NULL);
        assert_int_equal(count_token_requests(&env.a), SCOPES); /* one each: none was lost while in use */

        /* One more scope, with the cache full: its token is kept and used again. */
        struct fallback_response resp;
        for (int k = 0; k < 2; k++) {
                assert_int_equal(fetch(fb, REG, "scope/newest", FALLBACK_MANIFEST, TAG, true, 0, NULL, &resp), 0);
                assert_int_equal(resp.status, 404);
                assert_int_equal(resp.attempts, k == 0 ? 2 : 1);
                fallback_response_done(&resp);
        }
        assert_int_equal(count_token_requests(&env.a), SCOPES + 1);
        assert_int_equal(stats_of(fb, env.a.url).token_fetches, SCOPES + 1);
}

/* Tokens got with clients' credentials have a bound of their own: however many of them come
 * after it, the endpoint's own token stays cached. */
static void test_client_tokens_bound(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_auth(&env.a, "{\"mode\": \"bearer\"}"); /* a token for anyone, with credentials or none */

        struct fallback_response resp;
        assert_int_equal(fetch(fb, REG, "scope/own", FALLBACK_MANIFEST, TAG, true, 0, NULL, &resp), 0);
        assert_int_equal(resp.status, 404);
        fallback_response_done(&resp);
        /* More clients' tokens than the endpoint keeps of either kind (256). */
        enum { SCOPES = 257 };
        struct digest key;
        struct fallback_client_auth ca = fixture_client_auth("carol", PASSWORD, &key);
        fetch_scopes(fb, SCOPES, &ca);
        assert_int_equal(count_token_requests(&env.a), 1 + SCOPES);

        assert_int_equal(fetch(fb, REG, "scope/own", FALLBACK_MANIFEST, TAG, true, 0, NULL, &resp), 0);
        assert_int_equal(resp.status, 404);
        assert_int_equal(resp.attempts, 1); /* its token sent up front */
        fallback_response_done(&resp);
        assert_int_equal(count_token_requests(&env.a), 1 + SCOPES);
}

/* ---- redirects and headers ----------------------------------------------------------------- */

/* A blob redirected to another host (a CDN): no credentials, no spec headers there. */
static void test_redirect_to_other_host(void **state) {
        (void) state;
        static const struct fallback_header headers[] = { { "X-Layerd-Test", HEADER_VALUE } };
        static const char *const modes[] = { "bearer", "basic" };
        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                upstream_reset(&env.a);
                upstream_reset(&env.b);
                upstream_put_manifest(&env.a, REPO, TAG, NULL, env.manifest, env.manifest_size);
                upstream_put_blob(&env.b, env.blob_digest, env.blob, BLOB_SIZE);
                upstream_auth(&env.a, "{\"mode\": \"%s\", \"user\": \"carol\", \"password\": \"" PASSWORD "\"}",
                              modes[i]);
                upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"redirect\": \"%s\"}]", env.b.url);
                _cleanup_free_ char *creds = write_credentials("redirect.json", &env.a, "carol", PASSWORD);

                _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
                struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
                eps[0].credentials_file = creds;
                eps[0].headers = headers;
                eps[0].n_headers = ELEMENTSOF(headers);
                fb_set(fb, REG, eps, 1);

                /* The manifest first: the client learns the endpoint's auth (and caches a token). */
                struct fallback_response resp;
                assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
                assert_served(&resp, env.a.url);
                fallback_response_done(&resp);

                struct collect c = { 0 };
                assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
                assert_served(&resp, env.a.url); /* the endpoint answered, through its redirect */
                assert_collected(&c, 0);
                fallback_response_done(&resp);
                free(c.data);

                json_auto_t *la = upstream_log(&env.a);
                size_t last = json_array_size(la) - 1;
                assert_contains(log_path(la, last), "/blobs/");
                assert_int_equal(log_status(la, last), 307);
                assert_non_null(log_header(la, last, "authorization"));
                assert_string_equal(log_header(la, last, "x-layerd-test"), HEADER_VALUE);

                json_auto_t *lb = upstream_log(&env.b);
                assert_int_equal(json_array_size(lb), 1);
                assert_int_equal(log_status(lb, 0), 200);
                assert_null(log_header(lb, 0, "authorization"));
                assert_null(log_header(lb, 0, "x-layerd-test"));
        }
}

static void test_redirect_loop(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"redirect\": \"%s\"}]", env.a.url);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_contains(resp.error, "redirects");
        assert_int_equal(c.len, 0);
        fallback_response_done(&resp);
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), FALLBACK_REDIRECTS_MAX + 1);
}

static void test_custom_headers(void **state) {
        (void) state;
        static const struct fallback_header headers[] = {
                { "X-Layerd-Test", HEADER_VALUE },
                { "X-Second", "two words" },
        };
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
        eps[0].headers = headers;
        eps[0].n_headers = ELEMENTSOF(headers);
        fb_set(fb, REG, eps, 2);
        upstream_reset(&env.a); /* A has nothing: B is asked too */

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.b.url);
        fallback_response_done(&resp);
        struct collect c = { 0 };
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.b.url);
        fallback_response_done(&resp);
        free(c.data);

        json_auto_t *la = upstream_log(&env.a);
        assert_int_equal(json_array_size(la), 2);
        for (size_t i = 0; i < 2; i++) {
                assert_string_equal(log_header(la, i, "x-layerd-test"), HEADER_VALUE);
                assert_string_equal(log_header(la, i, "x-second"), "two words");
        }
        json_auto_t *lb = upstream_log(&env.b); /* another endpoint's headers are not B's */
        assert_int_equal(json_array_size(lb), 2);
        for (size_t i = 0; i < 2; i++)
                assert_null(log_header(lb, i, "x-layerd-test"));
}

static void test_connection_reuse(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        struct collect c = { 0 };
        assert_int_equal(fetch_blob(fb, 0, &c, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        free(c.data);
        assert_int_equal(fetch_manifest(fb, TAG, true, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);

        assert_int_equal(upstream_connections(&env.a), 1);
}

static void test_ratelimit(void **state) {
        (void) state;
        struct events ev = EVENTS_INIT;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"headers\": {\"ratelimit-limit\": \"100;w=21600\", "
                               "\"ratelimit-remaining\": \"76;w=21600\"}}]");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, true, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        struct recorded_event e = events_last(&ev, FALLBACK_EVENT_RATELIMIT, env.a.url);
        assert_int_equal(e.limit, 100);
        assert_int_equal(e.remaining, 76);
        struct ep_stats st = stats_of(fb, env.a.url);
        assert_int_equal(st.rl_limit, 100);
        assert_int_equal(st.rl_remaining, 76);
}

/* No new attempt once the deadline has passed, nor beyond attempts_max;
 * the error says which. */
static void test_deadline_and_attempts_max(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST,
                                        .reference = TAG, .deadline_ms = time_now_ms() - 1 };
        struct fallback_response resp;
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_int_equal(resp.attempts, 0);
        assert_contains(resp.error, "gave up");
        assert_null(strstr(resp.error, "circuit"));
        fallback_response_done(&resp);
        assert_state(fb, env.a.url, FALLBACK_BREAKER_CLOSED);
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 0);

        struct fallback_options o = { .attempts_max = 1 };
        _cleanup_(fallback_freep) struct fallback *fb2 = NULL;
        assert_int_equal(fallback_new(&o, &fb2), 0);
        struct fallback_endpoint_config two[] = { BROKEN(env.refuse.url, false), GOOD(env.a.url, true) };
        fb_set(fb2, REG, two, 2);
        assert_int_equal(fetch_manifest(fb2, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_int_equal(resp.attempts, 1);
        assert_contains(resp.error, "gave up after 1");
        fallback_response_done(&resp);
        json_auto_t *log2 = upstream_log(&env.a);
        assert_int_equal(json_array_size(log2), 0);
}

/* override_path: the URL is the API root, nothing is appended. */
static void test_override_path(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        char root[96];
        snprintf(root, sizeof(root), "%s/v2", env.a.url);
        struct fallback_endpoint_config eps[] = { GOOD(root, false) };
        eps[0].override_path = true;
        fb_set(fb, REG, eps, 1);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, root);
        assert_manifest(&resp);
        fallback_response_done(&resp);
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 1);
        assert_string_equal(log_path(log, 0), "/v2/" REPO "/manifests/" TAG "?ns=" REG);
}

/* A token realm on another host over plain http: the credentials stay home. */
static void test_token_realm_elsewhere(void **state) {
        (void) state;
        char realm[96];
        snprintf(realm, sizeof(realm), "%s/token", env.b.url);
        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"realm\": \"%s\"}", realm);
        upstream_auth(&env.b, "{\"mode\": \"bearer\", \"user\": \"dan\", \"password\": \"" PASSWORD "\"}");
        _cleanup_free_ char *creds = write_credentials("realm.json", &env.a, "dan", PASSWORD);
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        eps[0].credentials_file = creds;
        fb_set(fb, REG, eps, 1);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_int_equal(resp.status, 401);
        fallback_response_done(&resp);
        json_auto_t *lb = upstream_log(&env.b);
        assert_int_equal(log_count(lb, "GET", "/token"), 1);
        assert_null(log_header(lb, 0, "authorization"));
}

struct slow_fetch {
        struct fallback *fb;
        int r, status;
        char endpoint[96];
};

static void *slow_fetch_main(void *userdata) {
        struct slow_fetch *s = userdata;
        struct fallback_response resp;
        s->r = fetch(s->fb, REG, REPO, FALLBACK_MANIFEST, TAG, false, 0, NULL, &resp);
        s->status = resp.status;
        snprintf(s->endpoint, sizeof(s->endpoint), "%s", resp.endpoint ? resp.endpoint : "");
        fallback_response_done(&resp);
        return NULL;
}

/* A fetch in flight finishes with the configuration it started with. */
static void test_reconfigure_during_fetch(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"delay_ms\": 400}]");

        struct slow_fetch s = { .fb = fb };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, slow_fetch_main, &s), 0);
        /* Wait (bounded) until the request is at the fixture. */
        for (int i = 0; i < 500; i++) {
                json_auto_t *log = upstream_log(&env.a);
                if (json_array_size(log) > 0)
                        break;
                fixture_sleep_ms(10);
        }
        struct fallback_endpoint_config eps2[] = { GOOD(env.b.url, true) };
        fb_set(fb, REG, eps2, 1);
        fb_set(fb, "other.test", eps2, 1);
        pthread_join(t, NULL);
        assert_int_equal(s.r, 0);
        assert_int_equal(s.status, 200);
        assert_string_equal(s.endpoint, env.a.url);

        struct fallback_response resp;
        assert_int_equal(fetch(fb, "other.test", REPO, FALLBACK_MANIFEST, TAG, false, 0, NULL, &resp), 0);
        assert_served(&resp, env.b.url);
        fallback_response_done(&resp);
        assert_int_equal(fetch(fb, REG, REPO, FALLBACK_MANIFEST, TAG, false, 0, NULL, &resp), -ENOENT);
        fallback_response_done(&resp);
}

/* Every endpoint's problem is reported against that endpoint, even when
 * there are more problems than the error list holds. */
static void test_configure_many_errors(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        enum { N = ERROR_LIST_MAX + 3 };
        struct fallback_endpoint_config eps[N];
        char urls[N][64], files[N][96];
        for (int i = 0; i < N; i++) {
                snprintf(urls[i], sizeof(urls[i]), "http://127.0.0.1:%d", 20000 + i);
                snprintf(files[i], sizeof(files[i]), "%s/missing-%d.json", env.tmp, i);
                eps[i] = GOOD(urls[i], i == N - 1);
                eps[i].credentials_file = files[i];
        }
        eps[1].url = "not a url";
        struct error_list errors;
        assert_int_equal(fb_try_set(fb, REG, eps, N, &errors), -EINVAL);
        assert_int_equal(errors.n, ERROR_LIST_MAX);
        assert_int_equal(error_list_count(&errors), N);
        assert_contains(errors.items[1].message, "not a URL");
        for (size_t i = 0; i < errors.n; i++) {
                if (i == 1)
                        continue;
                assert_contains(errors.items[i].message, urls[i]);
                assert_contains(errors.items[i].message, files[i]);
                /* and no other endpoint's name glued on */
                assert_null(strstr(errors.items[i].message + strlen("registry " REG ": endpoint ") + 1,
                                   "registry " REG));
        }
}

/* ---- configuration and requests ------------------------------------------------------------ */

static void test_unknown_registry(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_response resp;
        assert_int_equal(fetch(fb, REG, REPO, FALLBACK_MANIFEST, TAG, false, 0, NULL, &resp), -ENOENT);
        fallback_response_done(&resp);

        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        assert_int_equal(fetch(fb, "other.test", REPO, FALLBACK_MANIFEST, TAG, false, 0, NULL, &resp), -ENOENT);
        assert_contains(resp.error, "other.test");
        assert_int_equal(resp.attempts, 0);
        fallback_response_done(&resp);
        /* Registry names are host names: case does not matter. */
        assert_int_equal(fetch(fb, "Registry.TEST", REPO, FALLBACK_MANIFEST, TAG, false, 0, NULL, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
}

/* Breaker state and counters belong to the endpoint URL: they survive a
 * reconfiguration that keeps it, and not one that drops it. */
static void test_reconfigure_keeps_state(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 1, 10000, 20000);
        struct fallback_endpoint_config eps[] = { BROKEN(env.refuse.url, false), GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 2);
        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);
        assert_state(fb, env.refuse.url, FALLBACK_BREAKER_OPEN);

        struct fallback_endpoint_config eps2[] = { BROKEN(env.refuse.url, false), GOOD(env.c.url, false),
                                                   GOOD(env.b.url, true) };
        fb_set(fb, REG, eps2, 3);
        struct ep_stats st = stats_of(fb, env.refuse.url);
        assert_int_equal(st.state, FALLBACK_BREAKER_OPEN);
        assert_int_equal(st.requests, 1);
        assert_int_equal(st.failures, 1);
        assert_int_equal(st.opens, 1);
        struct stats_query q = { 0 };
        fallback_foreach_endpoint(fb, stats_cb, &q);
        assert_int_equal(q.n, 3);
        assert_string_equal(q.order[0], env.refuse.url);
        assert_string_equal(q.order[1], env.c.url);
        assert_string_equal(q.order[2], env.b.url);

        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.b.url);
        assert_int_equal(resp.attempts, 2); /* C's 404, then B: the open one was skipped */
        fallback_response_done(&resp);

        /* Dropped, then back: a fresh start. */
        struct fallback_endpoint_config eps3[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps3, 1);
        fb_set(fb, REG, eps, 2);
        st = stats_of(fb, env.refuse.url);
        assert_int_equal(st.state, FALLBACK_BREAKER_CLOSED);
        assert_int_equal(st.requests, 0);
}

static bool errors_mention(const struct error_list *errors, const char *a, const char *b) {
        for (size_t i = 0; i < errors->n; i++)
                if (strstr(errors->items[i].message, a) && (!b || strstr(errors->items[i].message, b)))
                        return true;
        return false;
}

static void test_reconfigure_bad_credentials(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config old[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, old, 1);

        _cleanup_free_ char *missing = NULL;
        assert_true(asprintf(&missing, "%s/does-not-exist.json", env.tmp) > 0);
        _cleanup_free_ char *other = write_credentials("other-host.json", &env.c, "u", PASSWORD);
        _cleanup_free_ char *broken =
                write_config("broken.json", "{\"auths\": {\"%s\": {\"password\": \"%s\"", env.b.url, PASSWORD);
        const char *files[] = { missing, other, broken };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                struct fallback_endpoint_config eps[] = { GOOD(env.c.url, false), GOOD(env.b.url, true) };
                eps[1].credentials_file = files[i];
                struct error_list errors;
                assert_int_equal(fb_try_set(fb, REG, eps, 2, &errors), -EINVAL);
                if (!errors_mention(&errors, env.b.url, files[i])) {
                        error_list_print(&errors, stderr);
                        fail_msg("no error names endpoint %s and file %s", env.b.url, files[i]);
                }
                for (size_t k = 0; k < errors.n; k++)
                        assert_null(strstr(errors.items[k].message, PASSWORD));

                /* The old configuration is still the one in use. */
                struct stats_query q = { 0 };
                fallback_foreach_endpoint(fb, stats_cb, &q);
                assert_int_equal(q.n, 1);
                assert_string_equal(q.order[0], env.a.url);
                struct fallback_response resp;
                assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
                assert_served(&resp, env.a.url);
                fallback_response_done(&resp);
        }
        json_auto_t *lb = upstream_log(&env.b);
        assert_int_equal(json_array_size(lb), 0);
}

/* Requests that cannot be right fail before anything is sent. */
static void test_bad_requests(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        struct collect c = { 0 };
        struct sink s = collect_sink(&c);
        struct sink no_write = { .userdata = &c };
        static const char short_digest[] = "sha256:abc";
        static const char upper_digest[] = "sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000";
        const struct fallback_request reqs[] = {
                { .registry = REG, .repository = "../x", .kind = FALLBACK_MANIFEST, .reference = TAG },
                { .registry = REG, .repository = "test/../app", .kind = FALLBACK_BLOB, .reference = env.blob_digest,
                  .sink = &s },
                { .registry = REG, .repository = "Test/App", .kind = FALLBACK_MANIFEST, .reference = TAG },
                { .registry = REG, .repository = "", .kind = FALLBACK_MANIFEST, .reference = TAG },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_BLOB, .reference = short_digest, .sink = &s },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_BLOB, .reference = upper_digest, .sink = &s },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_BLOB, .reference = TAG, .sink = &s },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_BLOB, .reference = env.blob_digest },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_BLOB, .reference = env.blob_digest,
                  .sink = &no_write },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST, .reference = "bad tag" },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST, .reference = "../../etc" },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST, .reference = TAG, .offset = 10 },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST, .reference = TAG,
                  .accept = "text/plain\r\nX-Injected: 1" },
                { .registry = NULL, .repository = REPO, .kind = FALLBACK_MANIFEST, .reference = TAG },
                { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST, .reference = NULL },
                { .registry = REG, .repository = REPO, .kind = _FALLBACK_KIND_MAX, .reference = TAG },
        };
        for (size_t i = 0; i < ELEMENTSOF(reqs); i++) {
                struct fallback_response resp;
                int r = fallback_fetch(fb, &reqs[i], &resp);
                if (r != -EINVAL)
                        fail_msg("request %zu: %d (%s), wanted -EINVAL", i, r, strerror(-r));
                assert_int_equal(resp.attempts, 0);
                assert_null(resp.endpoint);
                fallback_response_done(&resp);
        }
        assert_int_equal(c.len, 0);
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 0);
}

/* ---- answers that end early, or not at all --------------------------------------------------- */

/* fallback_request.cancelled: true from at_ms on (0: never), or once flag is set. */
struct canceller {
        uint64_t at_ms;
        bool flag; /* __atomic: set by the test's thread, read by the fetching one */
};

static bool canceller_check(void *userdata) {
        struct canceller *c = userdata;
        return __atomic_load_n(&c->flag, __ATOMIC_ACQUIRE) || (c->at_ms && time_now_ms() >= c->at_ms);
}

struct cancel_fetch {
        struct fallback *fb;
        struct canceller cancel;
        int r;
        uint64_t took_ms;
        char error[256];
};

/* A manifest GET by tag that w->cancel may cancel. */
static void *cancel_fetch_main(void *userdata) {
        struct cancel_fetch *w = userdata;
        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST,
                                        .reference = TAG, .deadline_ms = time_now_ms() + FETCH_DEADLINE_MS,
                                        .cancelled = canceller_check, .cancel_userdata = &w->cancel };
        struct fallback_response resp;
        uint64_t t0 = time_now_ms();
        w->r = fallback_fetch(w->fb, &req, &resp);
        w->took_ms = time_now_ms() - t0;
        snprintf(w->error, sizeof(w->error), "%s", resp.error);
        fallback_response_done(&resp);
        return NULL;
}

static void assert_unblamed(struct fallback *fb, const char *url) {
        struct ep_stats st = stats_of(fb, url);
        if (st.state != FALLBACK_BREAKER_CLOSED || st.failures != 0 || st.consecutive_failures != 0)
                fail_msg("%s was blamed: breaker %s, %" PRIu64 " failures", url,
                         fallback_breaker_state_to_string(st.state), st.failures);
}

/* A fetch cancelled while the token realm hangs ends at once with
 * -ECANCELED and blames nobody (the endpoint did nothing wrong); so does one
 * cancelled while it waits for another fetch's token. */
static void test_cancel_during_token_fetch(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_auth(&env.a, "{\"mode\": \"bearer\"}");
        upstream_rules(&env.a, "[{\"path\": \"^/token$\", \"hang\": true}]");

        struct cancel_fetch w = { .fb = fb, .cancel.at_ms = time_now_ms() + 300 };
        cancel_fetch_main(&w);
        if (w.r != -ECANCELED)
                fail_msg("fetch returned %d (%s), wanted -ECANCELED", w.r, w.error);
        if (w.took_ms > 2000)
                fail_msg("cancelled after 300 ms, the fetch took %" PRIu64 " ms", w.took_ms);
        assert_unblamed(fb, env.a.url);
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(log_count(log, "GET", "/token"), 1);

        /* One fetch asks the realm (and is cancelled only when the test says
         * so); another waits for that token and is cancelled meanwhile. */
        struct cancel_fetch asker = { .fb = fb };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, cancel_fetch_main, &asker), 0);
        for (int i = 0; i < 500; i++) {
                json_auto_t *l = upstream_log(&env.a);
                if (log_count(l, "GET", "/token") == 2)
                        break;
                fixture_sleep_ms(10);
        }
        struct cancel_fetch waiter = { .fb = fb, .cancel.at_ms = time_now_ms() + 300 };
        cancel_fetch_main(&waiter);
        __atomic_store_n(&asker.cancel.flag, true, __ATOMIC_RELEASE);
        pthread_join(t, NULL);
        if (waiter.r != -ECANCELED || waiter.took_ms > 1500)
                fail_msg("the waiting fetch returned %d (%s) after %" PRIu64 " ms, wanted -ECANCELED after ~300 ms",
                         waiter.r, waiter.error, waiter.took_ms);
        assert_int_equal(asker.r, -ECANCELED);
        assert_unblamed(fb, env.a.url);
        json_auto_t *log2 = upstream_log(&env.a);
        assert_int_equal(log_count(log2, "GET", "/token"), 2); /* the waiter asked nobody */

        /* Nothing was held against the endpoint: the next fetch goes there and succeeds. */
        upstream_rules(&env.a, "[]");
        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        fallback_response_done(&resp);
}

/* request.deadline_ms bounds a whole exchange: a body trickling in within
 * the idle timeout, or a token realm that does not answer, cannot hold the
 * caller past it. */
static void test_deadline_bounds_exchange(void **state) {
        (void) state;
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        for (int token = 0; token <= 1; token++) {
                _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
                fb_set(fb, REG, eps, 1);
                if (token) {
                        upstream_rules(&env.a, "[{\"path\": \"^/token$\", \"hang\": true}]");
                        upstream_auth(&env.a, "{\"mode\": \"bearer\"}");
                } else /* ~50 s for the whole manifest, a byte every 200 ms (the idle timeout is 10 s) */
                        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"trickle_ms\": 200}]");

                uint64_t t0 = time_now_ms();
                struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST,
                                                .reference = TAG, .deadline_ms = t0 + 1000 };
                struct fallback_response resp;
                assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
                uint64_t took = time_now_ms() - t0;
                assert_int_equal(resp.status, 503);
                assert_contains(resp.error, "deadline");
                if (token)
                        assert_contains(resp.error, "token");
                assert_null(resp.body);
                fallback_response_done(&resp);
                if (took > 3000)
                        fail_msg("a 1 s deadline, and the fetch took %" PRIu64 " ms", took);
                json_auto_t *log = upstream_log(&env.a);
                assert_int_equal(log_count(log, "GET", token ? "/token" : "/manifests/"), 1);
        }
}

/* An error answer's body is not waited for: the status is the answer, be its
 * body trickling, stalled, or more than a little. */
static void test_error_body_not_waited_for(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        static const char *const rules[] = {
                "[{\"path\": \"/manifests/missing$\", \"trickle_ms\": 200}]", /* ~14 s for the 404's JSON */
                "[{\"path\": \"/manifests/missing$\", \"stall_after\": 5}]",  /* 10 s idle timeout */
        };
        for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
                upstream_rules(&env.a, "%s", rules[i]);
                uint64_t t0 = time_now_ms();
                struct fallback_response resp;
                assert_int_equal(fetch_manifest(fb, "missing", false, &resp), 0);
                uint64_t took = time_now_ms() - t0;
                if (resp.status != 404)
                        fail_msg("rule %zu: status %d (%s), wanted 404", i, resp.status, resp.error);
                assert_string_equal(resp.endpoint, env.a.url);
                fallback_response_done(&resp);
                if (took > 2000)
                        fail_msg("rule %zu: the 404 took %" PRIu64 " ms", i, took);
        }

        /* 64 KiB of error body, stalled after 20 KB: not read on, not even
         * for as long as a short deadline (the body's time allowance is longer). */
        upstream_rules(&env.a, "[{\"path\": \"/manifests/missing$\", \"pad\": 65536, \"stall_after\": 20000}]");
        struct fallback_request req = { .registry = REG, .repository = REPO, .kind = FALLBACK_MANIFEST,
                                        .reference = "missing", .deadline_ms = time_now_ms() + 800 };
        struct fallback_response resp;
        assert_int_equal(fallback_fetch(fb, &req, &resp), 0);
        if (resp.status != 404)
                fail_msg("status %d (%s), wanted 404", resp.status, resp.error);
        fallback_response_done(&resp);
        struct ep_stats st = stats_of(fb, env.a.url);
        assert_int_equal(st.not_found, 3);
        assert_int_equal(st.failures, 0);
}

/* A 416 is a resume the endpoint cannot serve, never an answer for the
 * client; and a body whose connection ends roughly right after its last byte
 * is complete. */
static void test_416_not_final(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);

        struct collect c = { 0 };
        struct fallback_response resp;
        assert_int_equal(fetch_blob(fb, BLOB_SIZE, &c, &resp), 0);
        assert_int_equal(resp.status, 503);
        assert_null(resp.endpoint);
        assert_contains(resp.error, "HTTP 416");
        assert_int_equal(c.len, 0);
        fallback_response_done(&resp);
        free(c.data);
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 1);
        assert_int_equal(log_status(log, 0), 416); /* the fixture did answer 416 */

        /* The fixture cannot end a chunked body early; a Content-Length one
         * byte too large ends the same way for libcurl: every byte of the
         * range, then "transfer closed with 1 bytes remaining". */
        _cleanup_(fallback_freep) struct fallback *fb2 = fb_new(NULL, 0, 0, 0);
        fb_set(fb2, REG, eps, 1);
        upstream_rules(&env.a,
                       "[{\"path\": \"/blobs/\", \"headers\": {\"Content-Length\": \"%d\"}, \"close_after\": %d,"
                       " \"times\": 1}]",
                       BLOB_SIZE - CUT + 1, BLOB_SIZE - CUT);
        c = (struct collect) { 0 };
        assert_int_equal(fetch_blob(fb2, CUT, &c, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.received, BLOB_SIZE - CUT);
        assert_int_equal(resp.size, BLOB_SIZE);
        assert_int_equal(resp.attempts, 1);
        assert_collected(&c, CUT);
        fallback_response_done(&resp);
        free(c.data);
        json_auto_t *log2 = upstream_log(&env.a);
        assert_int_equal(json_array_size(log2), 2);
        assert_int_equal(log_status(log2, 1), 206);
}

/* An endpoint that took Basic and then moves on to tokens gets a token, not
 * Basic again and again (which would end in a final 401). */
static void test_basic_then_bearer(void **state) {
        (void) state;
        upstream_auth(&env.a, "{\"mode\": \"basic\", \"user\": \"bob\", \"password\": \"" PASSWORD "\"}");
        _cleanup_free_ char *creds = write_credentials("switch.json", &env.a, "bob", PASSWORD);
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        eps[0].credentials_file = creds;
        fb_set(fb, REG, eps, 1);

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        fallback_response_done(&resp);

        upstream_auth(&env.a, "{\"mode\": \"bearer\", \"user\": \"bob\", \"password\": \"" PASSWORD "\"}");
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0);
        assert_served(&resp, env.a.url);
        assert_manifest(&resp);
        assert_int_equal(resp.attempts, 2);
        fallback_response_done(&resp);
        assert_int_equal(fetch_manifest(fb, TAG, false, &resp), 0); /* the token up front, no Basic */
        assert_served(&resp, env.a.url);
        assert_int_equal(resp.attempts, 1);
        fallback_response_done(&resp);

        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 6);
        assert_contains(log_header(log, 2, "authorization"), "Basic "); /* still Basic, refused */
        assert_int_equal(log_status(log, 2), 401);
        assert_contains(log_path(log, 3), "/token");
        assert_int_equal(log_status(log, 4), 200);
        assert_contains(log_header(log, 4, "authorization"), "Bearer ");
        assert_string_equal(log_header(log, 5, "authorization"), log_header(log, 4, "authorization"));
}

/* A HEAD that one endpoint had to answer with a GET is a HEAD again on the next. */
static void test_head_stays_head(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
        fb_set(fb, REG, eps, 2);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"method\": \"HEAD\", \"digest_header\": null},"
                               " {\"path\": \"/manifests/\", \"method\": \"GET\", \"status\": 500}]");

        struct fallback_response resp;
        assert_int_equal(fetch_manifest(fb, TAG, true, &resp), 0);
        assert_served(&resp, env.b.url);
        assert_true(resp.has_digest);
        assert_true(digest_equal(&resp.digest, &env.manifest_digest));
        assert_int_equal(resp.size, env.manifest_size);
        assert_null(resp.body);
        fallback_response_done(&resp);

        json_auto_t *la = upstream_log(&env.a);
        assert_int_equal(json_array_size(la), 2);
        assert_string_equal(log_method(la, 0), "HEAD");
        assert_string_equal(log_method(la, 1), "GET");
        json_auto_t *lb = upstream_log(&env.b);
        assert_int_equal(json_array_size(lb), 1);
        assert_string_equal(log_method(lb, 0), "HEAD");
}

/* A manifest HEAD must tell the size (containerd's descriptor needs it): an
 * answer without Content-Length is asked again with GET. */
static void test_manifest_head_without_length(void **state) {
        (void) state;
        _cleanup_(fallback_freep) struct fallback *fb = fb_new(NULL, 0, 0, 0);
        struct fallback_endpoint_config eps[] = { GOOD(env.a.url, true) };
        fb_set(fb, REG, eps, 1);
        upstream_rules(&env.a, "[{\"path\": \"/manifests/\", \"method\": \"HEAD\", \"content_length\": null}]");

        const char *refs[] = { TAG, env.manifest_digest_str };
        for (size_t i = 0; i < ELEMENTSOF(refs); i++) {
                struct fallback_response resp;
                assert_int_equal(fetch_manifest(fb, refs[i], true, &resp), 0);
                assert_served(&resp, env.a.url);
                assert_int_equal(resp.size, env.manifest_size);
                assert_true(resp.has_digest);
                assert_true(digest_equal(&resp.digest, &env.manifest_digest));
                assert_int_equal(resp.attempts, 2);
                fallback_response_done(&resp);
        }
        json_auto_t *log = upstream_log(&env.a);
        assert_int_equal(json_array_size(log), 4);
        for (size_t i = 0; i < 4; i++)
                assert_string_equal(log_method(log, i), i % 2 ? "GET" : "HEAD");
        assert_null(log_header(log, 0, "range"));
}

/* Content-Range is digits only: no sign, no space, nothing after the total,
 * no total beyond int64. Such a 206 is refused (the next endpoint serves),
 * even where the bytes themselves are right. */
static void test_content_range_strict(void **state) {
        (void) state;
        char ranges[6][96];
        snprintf(ranges[0], sizeof(ranges[0]), "bytes %d-%d/ %d", CUT, BLOB_SIZE - 1, BLOB_SIZE);
        snprintf(ranges[1], sizeof(ranges[1]), "bytes +%d-%d/%d", CUT, BLOB_SIZE - 1, BLOB_SIZE);
        snprintf(ranges[2], sizeof(ranges[2]), "bytes %d-+%d/%d", CUT, BLOB_SIZE - 1, BLOB_SIZE);
        snprintf(ranges[3], sizeof(ranges[3]), "bytes  %d-%d/%d", CUT, BLOB_SIZE - 1, BLOB_SIZE);
        snprintf(ranges[4], sizeof(ranges[4]), "bytes %d-%d/%d x", CUT, BLOB_SIZE - 1, BLOB_SIZE);
        snprintf(ranges[5], sizeof(ranges[5]), "bytes %d-%d/9223372036854775808", CUT, BLOB_SIZE - 1);
        for (size_t i = 0; i < ELEMENTSOF(ranges); i++) {
                struct events ev = EVENTS_INIT;
                _cleanup_(fallback_freep) struct fallback *fb = fb_new(&ev, 0, 0, 0);
                struct fallback_endpoint_config eps[] = { GOOD(env.a.url, false), GOOD(env.b.url, true) };
                fb_set(fb, REG, eps, 2);
                upstream_reset(&env.a);
                upstream_put_blob(&env.a, env.blob_digest, env.blob, BLOB_SIZE);
                upstream_rules(&env.a, "[{\"path\": \"/blobs/\", \"headers\": {\"Content-Range\": \"%s\"}}]",
                               ranges[i]);

                struct collect c = { 0 };
                struct fallback_response resp;
                assert_int_equal(fetch_blob(fb, CUT, &c, &resp), 0);
                if (resp.status != 200 || !resp.endpoint || strcmp(resp.endpoint, env.b.url) != 0)
                        fail_msg("Content-Range \"%s\": status %d from %s, wanted 200 from %s", ranges[i],
                                 resp.status, resp.endpoint ? resp.endpoint : "nobody", env.b.url);
                assert_collected(&c, CUT);
                assert_int_equal(c.total, BLOB_SIZE);
                fallback_response_done(&resp);
                free(c.data);
                assert_contains(events_last(&ev, FALLBACK_EVENT_FAILOVER, env.a.url).reason, "Content-Range");
                json_auto_t *la = upstream_log(&env.a);
                assert_int_equal(json_array_size(la), 1);
                assert_int_equal(log_status(la, 0), 206);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup(name, reset_peers)
                T(test_blob_get),
                T(test_blob_head),
                T(test_blob_digest_claims),
                T(test_manifest_get),
                T(test_manifest_head),
                T(test_manifest_head_without_digest),
                T(test_failover_refused),
                T(test_failover_blackhole),
                T(test_failover_connect_timeout),
                T(test_failover_5xx_429),
                T(test_failover_mirror_answers),
                T(test_failover_hang),
                T(test_last_endpoint_answers),
                T(test_last_429_is_503),
                T(test_all_down),
                T(test_mirror_ns),
                T(test_tags_list),
                T(test_referrers),
                T(test_capabilities),
                T(test_docker_hub_library),
                T(test_manifest_corrupt_by_digest),
                T(test_manifest_tag_digest_mismatch),
                T(test_manifest_tag_cut_without_digest),
                T(test_manifest_size_limit),
                T(test_manifest_budget),
                T(test_breaker_opens),
                T(test_breaker_threshold),
                T(test_breaker_probe),
                T(test_breaker_probe_last),
                T(test_tags_list_half_open),
                T(test_breaker_all_open),
                T(test_breaker_concurrent_failures),
                T(test_breaker_probe_verdict_at_head),
                T(test_report_bad),
                T(test_resume_same_endpoint),
                T(test_resume_ignore_range),
                T(test_resume_after_stall),
                T(test_resume_offset),
                T(test_resume_bad_content_range),
                T(test_sink_error),
                T(test_bearer_anonymous),
                T(test_bearer_credentials),
                T(test_bearer_refresh),
                T(test_token_answer_forms),
                T(test_basic_auth),
                T(test_client_auth),
                T(test_client_tokens_bound),
                T(test_token_single_flight),
                T(test_token_cache_full),
                T(test_redirect_to_other_host),
                T(test_redirect_loop),
                T(test_custom_headers),
                T(test_connection_reuse),
                T(test_ratelimit),
                T(test_deadline_and_attempts_max),
                T(test_override_path),
                T(test_token_realm_elsewhere),
                T(test_reconfigure_during_fetch),
                T(test_configure_many_errors),
                T(test_unknown_registry),
                T(test_reconfigure_keeps_state),
                T(test_reconfigure_bad_credentials),
                T(test_bad_requests),
                T(test_cancel_during_token_fetch),
                T(test_deadline_bounds_exchange),
                T(test_error_body_not_waited_for),
                T(test_416_not_final),
                T(test_basic_then_bearer),
                T(test_head_stays_head),
                T(test_manifest_head_without_length),
                T(test_content_range_strict),
#undef T
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
