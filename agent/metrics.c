/* SPDX-License-Identifier: Apache-2.0 */
/* The counters of the pull core, the cache and the chains, as Prometheus
 * text (served at /metrics by http.c) and as the service manager's STATUS=
 * line. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "agent/pull-internal.h"
#include "common/time.h"

#define ENDPOINT_LABELS_MAX 640 /* registry="host",endpoint="url", NUL included */

const unsigned pull_status_slots[STATUS_SLOTS] = { 200, 206, 400, 404, 405, 416, 500, 503, 0 };

static const char *const route_names[_ROUTE_MAX] = {
        [ROUTE_V2] = "v2",         [ROUTE_MANIFEST] = "manifest", [ROUTE_BLOB] = "blob",       [ROUTE_TAGS] = "tags",
        [ROUTE_REFERRERS] = "referrers",
        [ROUTE_METRICS] = "metrics", [ROUTE_HEALTH] = "health",   [ROUTE_OTHER] = "other",
};

/* The endpoints' families, each written whole after its TYPE line: the text
 * format wants a family's samples in one group, and the endpoints are walked
 * once (under fallback's lock). */
enum endpoint_family {
        EF_REQUESTS,
        EF_HTTP_REQUESTS,
        EF_BYTES,
        EF_RESUMES,
        EF_TOKEN_FETCHES,
        EF_BREAKER_OPENS,
        EF_BREAKER_STATE,
        EF_RATELIMIT,
        _EF_MAX,
};

static const char *const endpoint_family_names[_EF_MAX][2] = {
        [EF_REQUESTS] = { "layerd_upstream_requests_total", "counter" },
        [EF_HTTP_REQUESTS] = { "layerd_upstream_http_requests_total", "counter" },
        [EF_BYTES] = { "layerd_upstream_bytes_total", "counter" },
        [EF_RESUMES] = { "layerd_upstream_resumes_total", "counter" },
        [EF_TOKEN_FETCHES] = { "layerd_upstream_token_fetches_total", "counter" },
        [EF_BREAKER_OPENS] = { "layerd_upstream_breaker_opens_total", "counter" },
        [EF_BREAKER_STATE] = { "layerd_upstream_breaker_state", "gauge" },
        [EF_RATELIMIT] = { "layerd_upstream_ratelimit_remaining", "gauge" },
};

struct endpoint_text {
        FILE *f[_EF_MAX];
        char *data[_EF_MAX];
        size_t len[_EF_MAX];
};

static void endpoint_metrics(const struct fallback_endpoint_stats *s, void *userdata) {
        FILE **f = ((struct endpoint_text *) userdata)->f;
        /* Registry hosts and canonical URLs hold no quotes or backslashes (validated by the spec). */
        char labels[ENDPOINT_LABELS_MAX];
        snprintf(labels, sizeof(labels), "registry=\"%s\",endpoint=\"%s\"", s->registry, s->endpoint);
        fprintf(f[EF_REQUESTS], "layerd_upstream_requests_total{%s,outcome=\"ok\"} %" PRIu64 "\n", labels, s->ok);
        fprintf(f[EF_REQUESTS], "layerd_upstream_requests_total{%s,outcome=\"not_found\"} %" PRIu64 "\n", labels,
                s->not_found);
        fprintf(f[EF_REQUESTS], "layerd_upstream_requests_total{%s,outcome=\"failed\"} %" PRIu64 "\n", labels,
                s->failures);
        fprintf(f[EF_HTTP_REQUESTS], "layerd_upstream_http_requests_total{%s} %" PRIu64 "\n", labels, s->requests);
        fprintf(f[EF_BYTES], "layerd_upstream_bytes_total{%s} %" PRIu64 "\n", labels, s->bytes);
        fprintf(f[EF_RESUMES], "layerd_upstream_resumes_total{%s} %" PRIu64 "\n", labels, s->resumes);
        fprintf(f[EF_TOKEN_FETCHES], "layerd_upstream_token_fetches_total{%s} %" PRIu64 "\n", labels,
                s->token_fetches);
        fprintf(f[EF_BREAKER_OPENS], "layerd_upstream_breaker_opens_total{%s} %" PRIu64 "\n", labels,
                s->breaker_opens);
        for (int st = 0; st < _FALLBACK_BREAKER_STATE_MAX; st++)
                fprintf(f[EF_BREAKER_STATE], "layerd_upstream_breaker_state{%s,state=\"%s\"} %d\n", labels,
                        fallback_breaker_state_to_string(st), s->state == (enum fallback_breaker_state) st);
        if (s->ratelimit_remaining >= 0)
                fprintf(f[EF_RATELIMIT], "layerd_upstream_ratelimit_remaining{%s} %" PRId64 "\n", labels,
                        s->ratelimit_remaining);
}

/* Every endpoint's families to f; nothing of them when out of memory. */
static void endpoints_write(struct pull *p, FILE *f) {
        struct endpoint_text t = {};
        bool ok = true;
        for (int i = 0; i < _EF_MAX; i++)
                ok = ok && (t.f[i] = open_memstream(&t.data[i], &t.len[i]));
        if (ok)
                fallback_foreach_endpoint(p->fb, endpoint_metrics, &t);
        for (int i = 0; i < _EF_MAX; i++)
                ok = t.f[i] && fclose(t.f[i]) == 0 && ok;
        for (int i = 0; ok && i < _EF_MAX; i++)
                if (t.len[i]) {
                        fprintf(f, "# TYPE %s %s\n", endpoint_family_names[i][0], endpoint_family_names[i][1]);
                        fwrite(t.data[i], 1, t.len[i], f);
                }
        for (int i = 0; i < _EF_MAX; i++)
                free(t.data[i]);
}

void metrics_write(struct pull *p, FILE *f) {
        fputs("# HELP layerd_requests_total HTTP requests answered, by route and status.\n"
              "# TYPE layerd_requests_total counter\n", f);
        for (int r = 0; r < _ROUTE_MAX; r++)
                for (size_t s = 0; s < STATUS_SLOTS; s++) {
                        uint64_t v = atomic_load(&p->requests[r][s]);
                        if (v == 0)
                                continue;
                        if (pull_status_slots[s])
                                fprintf(f, "layerd_requests_total{route=\"%s\",status=\"%u\"} %" PRIu64 "\n",
                                        route_names[r], pull_status_slots[s], v);
                        else
                                fprintf(f, "layerd_requests_total{route=\"%s\",status=\"other\"} %" PRIu64 "\n",
                                        route_names[r], v);
                }
        struct cache_stats cs;
        cache_get_stats(p->cache, &cs);
        fprintf(f,
                "# TYPE layerd_cache_hits_total counter\nlayerd_cache_hits_total %" PRIu64 "\n"
                "# TYPE layerd_cache_misses_total counter\nlayerd_cache_misses_total %" PRIu64 "\n"
                "# TYPE layerd_cache_joins_total counter\nlayerd_cache_joins_total %" PRIu64 "\n"
                "# TYPE layerd_cache_bytes_written_total counter\nlayerd_cache_bytes_written_total %" PRIu64 "\n"
                "# TYPE layerd_cache_evictions_total counter\nlayerd_cache_evictions_total %" PRIu64 "\n"
                "# TYPE layerd_cache_evicted_bytes_total counter\nlayerd_cache_evicted_bytes_total %" PRIu64 "\n"
                "# TYPE layerd_cache_verify_failures_total counter\nlayerd_cache_verify_failures_total %" PRIu64 "\n"
                "# TYPE layerd_cache_blobs gauge\nlayerd_cache_blobs %" PRIu64 "\n"
                "# TYPE layerd_cache_bytes gauge\nlayerd_cache_bytes %" PRIu64 "\n"
                "# TYPE layerd_cache_pinned gauge\nlayerd_cache_pinned %" PRIu64 "\n"
                "# TYPE layerd_downloads_in_flight gauge\nlayerd_downloads_in_flight %" PRIu64 "\n"
                "# TYPE layerd_served_bytes_total counter\nlayerd_served_bytes_total %" PRIu64 "\n"
                "# TYPE layerd_stale_serves_total counter\nlayerd_stale_serves_total %" PRIu64 "\n"
                "# TYPE layerd_cut_streams_total counter\nlayerd_cut_streams_total %" PRIu64 "\n"
                "# TYPE layerd_stream_throughs_total counter\nlayerd_stream_throughs_total %" PRIu64 "\n",
                cs.hits, cs.misses, cs.joins, cs.bytes_written, cs.evictions, cs.evicted_bytes,
                cs.mismatched, cs.blobs, cs.bytes, cs.pinned,
                cs.in_flight, (uint64_t) atomic_load(&p->bytes_served), (uint64_t) atomic_load(&p->stale_serves),
                (uint64_t) atomic_load(&p->cut_streams), cs.unstored);
        static const char *const evict_reasons[_CACHE_EVICT_REASON_MAX] = {
                [CACHE_EVICT_SIZE] = "size", [CACHE_EVICT_FREE] = "free_space", [CACHE_EVICT_AGE] = "age" };
        fputs("# HELP layerd_cache_evictions_by_reason_total Blobs evicted, by the bound that evicted them.\n"
              "# TYPE layerd_cache_evictions_by_reason_total counter\n", f);
        for (int i = 0; i < _CACHE_EVICT_REASON_MAX; i++)
                fprintf(f, "layerd_cache_evictions_by_reason_total{reason=\"%s\"} %" PRIu64 "\n", evict_reasons[i],
                        cs.evicted_by[i]);
        const struct bounds *b = &p->bounds;
        fprintf(f,
                "# HELP layerd_downloads_running Blob downloads running (agent.max_downloads).\n"
                "# TYPE layerd_downloads_running gauge\nlayerd_downloads_running %u\n"
                "# HELP layerd_downloads_abandoned Downloads running that no client wants any more.\n"
                "# TYPE layerd_downloads_abandoned gauge\nlayerd_downloads_abandoned %u\n"
                "# HELP layerd_upstream_waits Requests waiting for an upstream (agent.max_upstream_waits).\n"
                "# TYPE layerd_upstream_waits gauge\nlayerd_upstream_waits %u\n"
                "# HELP layerd_cache_tmp_bytes Bytes of downloads in progress, counted against cache_max_size.\n"
                "# TYPE layerd_cache_tmp_bytes gauge\nlayerd_cache_tmp_bytes %" PRIu64 "\n"
                "# TYPE layerd_cache_tmp_refused_total counter\nlayerd_cache_tmp_refused_total %" PRIu64 "\n"
                "# HELP layerd_refused_total Work refused or cancelled by a cap, by the cap's spec key.\n"
                "# TYPE layerd_refused_total counter\n",
                (unsigned) atomic_load(&b->downloads), (unsigned) atomic_load(&b->abandoned),
                (unsigned) atomic_load(&b->waits), cs.tmp_bytes, cs.tmp_refused);
        for (int c = 0; c < _BOUNDS_CAP_MAX; c++)
                fprintf(f, "layerd_refused_total{cap=\"%s\"} %" PRIu64 "\n", bounds_cap_to_string(c),
                        (uint64_t) atomic_load(&b->refused[c]));
        fprintf(f,
                "# HELP layerd_inflight_memory_bytes Bytes in-flight requests hold in memory (bodies, stream buffers).\n"
                "# TYPE layerd_inflight_memory_bytes gauge\nlayerd_inflight_memory_bytes %" PRIu64 "\n"
                "# HELP layerd_inflight_memory_limit_bytes agent.max_inflight_memory.\n"
                "# TYPE layerd_inflight_memory_limit_bytes gauge\nlayerd_inflight_memory_limit_bytes %" PRIu64 "\n"
                "# HELP layerd_inflight_memory_refused_total Requests answered 503 for want of that memory.\n"
                "# TYPE layerd_inflight_memory_refused_total counter\nlayerd_inflight_memory_refused_total %" PRIu64
                "\n",
                budget_held(&p->budget), budget_limit(&p->budget), (uint64_t) atomic_load(&p->budget_refusals));
        /* Pass-through of clients' credentials: counts only, never a credential or its hash. */
        fprintf(f,
                "# HELP layerd_auth_passthrough_total Requests whose client's credentials went to the origin.\n"
                "# TYPE layerd_auth_passthrough_total counter\nlayerd_auth_passthrough_total %" PRIu64 "\n"
                "# HELP layerd_auth_challenges_total 401 answers with a Basic challenge.\n"
                "# TYPE layerd_auth_challenges_total counter\nlayerd_auth_challenges_total %" PRIu64 "\n"
                "# HELP layerd_auth_verdicts_total Private-repository requests by whether the origin's verdict on "
                "the credentials was fresh (hit) or asked again (miss).\n"
                "# TYPE layerd_auth_verdicts_total counter\n"
                "layerd_auth_verdicts_total{result=\"hit\"} %" PRIu64 "\n"
                "layerd_auth_verdicts_total{result=\"miss\"} %" PRIu64 "\n"
                "# HELP layerd_auth_refusals_total The origin's 401/403 answers (credentials needed or refused).\n"
                "# TYPE layerd_auth_refusals_total counter\nlayerd_auth_refusals_total %" PRIu64 "\n"
                "# HELP layerd_auth_outage_serves_total Private content served while the origin was down "
                "(auth_outage_grace).\n"
                "# TYPE layerd_auth_outage_serves_total counter\nlayerd_auth_outage_serves_total %" PRIu64 "\n"
                "# HELP layerd_auth_confirms_total Private digests asked under another repository's name.\n"
                "# TYPE layerd_auth_confirms_total counter\nlayerd_auth_confirms_total %" PRIu64 "\n"
                "# HELP layerd_private_entries Private repositories and digests recorded.\n"
                "# TYPE layerd_private_entries gauge\nlayerd_private_entries %zu\n"
                "# HELP layerd_private_lost Cached blobs recorded private to an unknown repository at start-up, "
                "the private-content table having been deleted (0: it was not).\n"
                "# TYPE layerd_private_lost gauge\nlayerd_private_lost %" PRIu64 "\n"
                "# HELP layerd_private_prunes_total Prunes of the private-content table while serving.\n"
                "# TYPE layerd_private_prunes_total counter\nlayerd_private_prunes_total %" PRIu64 "\n"
                "# HELP layerd_private_pruned_total Entries those prunes dropped (digests no longer cached).\n"
                "# TYPE layerd_private_pruned_total counter\nlayerd_private_pruned_total %" PRIu64 "\n",
                (uint64_t) atomic_load(&p->auth_uses[ACCESS_USE_PASSTHROUGH]),
                (uint64_t) atomic_load(&p->auth_uses[ACCESS_USE_CHALLENGE]),
                (uint64_t) atomic_load(&p->auth_hows[ACCESS_HOW_VERDICT_HIT]),
                (uint64_t) atomic_load(&p->auth_hows[ACCESS_HOW_VERDICT_MISS]),
                (uint64_t) atomic_load(&p->auth_refusals),
                (uint64_t) atomic_load(&p->auth_hows[ACCESS_HOW_GRACE]),
                (uint64_t) atomic_load(&p->auth_hows[ACCESS_HOW_CONFIRMED]), private_count(p->private), p->private_lost,
                (uint64_t) atomic_load(&p->private_prunes), (uint64_t) atomic_load(&p->private_pruned));
        struct statvfs sv;
        if (statvfs(p->cache_dir, &sv) == 0)
                fprintf(f,
                        "# TYPE layerd_cache_fs_free_bytes gauge\nlayerd_cache_fs_free_bytes %" PRIu64 "\n"
                        "# TYPE layerd_cache_fs_size_bytes gauge\nlayerd_cache_fs_size_bytes %" PRIu64 "\n",
                        (uint64_t) sv.f_bavail * sv.f_frsize, (uint64_t) sv.f_blocks * sv.f_frsize);
        reqmetrics_write(&p->reqmetrics, f);
        endpoints_write(p, f);
        for (size_t i = 0; i < ELEMENTSOF(p->metrics_hooks); i++)
                if (p->metrics_hooks[i].fn)
                        p->metrics_hooks[i].fn(f, p->metrics_hooks[i].userdata);
}

int metrics_text(struct pull *p, char **ret_data, size_t *ret_size) {
        char *data = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&data, &len);
        if (!f)
                return -ENOMEM;
        metrics_write(p, f);
        if (fclose(f) != 0) {
                free(data);
                return -ENOMEM;
        }
        *ret_data = data;
        *ret_size = len;
        return 0;
}

const char *metrics_not_ready(struct pull *p) {
        struct cache_stats cs;
        cache_get_stats(p->cache, &cs);
        /* Serving works before the index is complete; "ready" means every count is true. */
        if (!cs.ready)
                return "indexing the cache\n";
        /* prefetch.wait_ready: boot images first (bounded by prefetch.wait_ready_timeout). */
        uint64_t gate = atomic_load(&p->ready_gate_until_ms);
        if (gate && time_now_ms() < gate)
                return "prefetching\n";
        return NULL;
}

void pull_status(struct pull *p, char *buf, size_t size) {
        struct cache_stats cs;
        cache_get_stats(p->cache, &cs);
        snprintf(buf, size, "serving: %" PRIu64 " blobs cached, %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
                 " downloading, %" PRIu64 " stale serves",
                 cs.blobs, cs.hits, cs.misses, cs.in_flight, (uint64_t) atomic_load(&p->stale_serves));
}

