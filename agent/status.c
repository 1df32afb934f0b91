/* SPDX-License-Identifier: Apache-2.0 */
/* `layerd status` (agent/status.h), written by the agent for its admin API. */
#include "agent/status.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "agent/admin.h"
#include "agent/agent.h"
#include "agent/prefetch.h"
#include "agent/pull-internal.h"
#include "cache/cache.h"
#include "common/json.h"
#include "common/time.h"

struct endpoints {
        FILE *out;
        bool json;
        unsigned n;
        const char *last_registry;
};

static void endpoint_line(const struct fallback_endpoint_stats *s, void *userdata) {
        struct endpoints *e = userdata;
        char reason[AGENT_LAST_ERROR_MAX];
        int64_t when = 0;
        bool failed = agent_upstream_last_error(s->endpoint, reason, sizeof(reason), &when);
        int64_t ago = failed ? (int64_t) time(NULL) - when : 0;
        const char *state = fallback_breaker_state_to_string(s->state);
        if (e->json) {
                fputs(e->n++ ? ",{\"registry\":" : "{\"registry\":", e->out);
                json_write_string(e->out, s->registry);
                fputs(",\"endpoint\":", e->out);
                json_write_string(e->out, s->endpoint);
                fprintf(e->out,
                        ",\"breaker\":\"%s\",\"consecutive_failures\":%u,\"requests\":%" PRIu64 ",\"ok\":%" PRIu64
                        ",\"not_found\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"last_error\":",
                        state, s->consecutive_failures, s->requests, s->ok, s->not_found, s->failures);
                if (failed) {
                        json_write_string(e->out, reason);
                        fprintf(e->out, ",\"last_error_seconds_ago\":%" PRId64 "}", ago);
                } else
                        fputs("null,\"last_error_seconds_ago\":null}", e->out);
                return;
        }
        bool first = !e->last_registry || strcmp(e->last_registry, s->registry) != 0;
        e->last_registry = s->registry; /* fn runs under the client's lock: the string stays */
        fprintf(e->out, "  %-20s %s\n", first ? s->registry : "", s->endpoint);
        fprintf(e->out, "  %-20s   breaker %s, %u consecutive failures; requests %" PRIu64 ": %" PRIu64 " ok, %" PRIu64
                        " not found, %" PRIu64 " failed\n",
                "", state, s->consecutive_failures, s->requests, s->ok, s->not_found, s->failures);
        if (failed)
                fprintf(e->out, "  %-20s   last error %" PRId64 " s ago: %s\n", "", ago, reason);
        e->n++;
}

/* A size for the eye: "1.2 GiB" (format_size() keeps exact units for specs). */
static void human_size(uint64_t bytes, char *buf, size_t size) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double) bytes;
        size_t u = 0;
        while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
                v /= 1024.0;
                u++;
        }
        snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void duration_text(uint64_t s, char *buf, size_t size) {
        if (s >= 86400)
                snprintf(buf, size, "%" PRIu64 "d %02" PRIu64 "h%02" PRIu64 "m", s / 86400, s / 3600 % 24, s / 60 % 60);
        else
                snprintf(buf, size, "%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", s / 3600, s / 60 % 60, s % 60);
}

int status_write(const struct admin_target *t, bool json, FILE *out) {
        struct pull *p = t->pull;
        uint64_t uptime_s = (time_now_ms() - t->started_ms) / 1000;
        struct cache_stats cs;
        cache_get_stats(t->cache, &cs);
        void *token = NULL;
        const struct spec *s = pull_spec_acquire(p, &token);
        uint64_t max = 0, min_free = 0, fs_free = 0;
        (void) agent_cache_limits(s, t->cache_dir, &max, &min_free);
        size_t listed = s->prefetch.n_entries;
        pull_spec_release(p, token);
        struct statvfs sv;
        if (statvfs(t->cache_dir, &sv) == 0)
                fs_free = (uint64_t) sv.f_bavail * sv.f_frsize;
        unsigned downloads = (unsigned) atomic_load(&p->bounds.downloads);
        unsigned waits = (unsigned) atomic_load(&p->bounds.waits);
        uint64_t lookups = cs.hits + cs.misses + cs.joins;
        double ratio = lookups ? (double) cs.hits / (double) lookups : 0.0;
        struct prefetch_status ps = {};
        if (t->pf)
                prefetch_status(t->pf, &ps);
        int64_t now_s = (int64_t) time(NULL);
        uint64_t now_ms = time_now_ms();
        int64_t next_s = ps.next_round_ms > now_ms ? (int64_t) ((ps.next_round_ms - now_ms + 999) / 1000)
                                                   : ps.next_round_ms ? 0 : -1;
        struct endpoints e = { .out = out, .json = json };
        if (json) {
                fputs("{\"version\":", out);
                json_write_string(out, t->version);
                fprintf(out, ",\"uptime_seconds\":%" PRIu64 ",\"started\":%" PRId64 ",\"cache\":{\"dir\":", uptime_s,
                        t->started_s);
                json_write_string(out, t->cache_dir);
                fprintf(out,
                        ",\"ready\":%s,\"blobs\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"max_bytes\":%" PRIu64
                        ",\"min_free_bytes\":%" PRIu64 ",\"filesystem_free_bytes\":%" PRIu64 ",\"pinned\":%" PRIu64
                        ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64 ",\"joins\":%" PRIu64 ",\"hit_ratio\":",
                        cs.ready ? "true" : "false", cs.blobs, cs.bytes, max, min_free, fs_free, cs.pinned, cs.hits,
                        cs.misses, cs.joins);
                if (lookups)
                        fprintf(out, "%.4f", ratio);
                else
                        fputs("null", out);
                fprintf(out,
                        ",\"evictions\":%" PRIu64 "},\"downloads_in_flight\":%u,\"cache_writes_in_flight\":%" PRIu64
                        ",\"upstream_waits\":%u,\"prefetch\":{\"listed\":%zu,\"rounds\":%" PRIu64
                        ",\"running\":%s,\"round_images_done\":%u,\"round_images\":%u,\"next_round_seconds\":",
                        cs.evictions, downloads, cs.in_flight, waits, listed, ps.rounds, ps.running ? "true" : "false",
                        ps.round_done, ps.round_images);
                if (next_s >= 0)
                        fprintf(out, "%" PRId64, next_s);
                else
                        fputs("null", out);
                fputs(",\"last_round\":", out);
                if (ps.have_last)
                        fprintf(out,
                                "{\"images\":%u,\"ok\":%u,\"failed\":%u,\"entries_failed\":%u,\"blobs_fetched\":%" PRIu64
                                ",\"bytes_fetched\":%" PRIu64 ",\"seconds\":%.1f,\"ended_seconds_ago\":%" PRId64 "}",
                                ps.last.images, ps.last.images_ok, ps.last.images_failed, ps.last.entries_failed,
                                ps.last.blobs_fetched, ps.last.bytes_fetched, (double) ps.last.ms / 1000.0,
                                now_s - ps.last_end_s);
                else
                        fputs("null", out);
                fputs("},\"endpoints\":[", out);
                fallback_foreach_endpoint(p->fb, endpoint_line, &e);
                fputs("]}\n", out);
                return 0;
        }
        char up[48], used[32], lim[32], minf[32], fsf[32];
        duration_text(uptime_s, up, sizeof(up));
        human_size(cs.bytes, used, sizeof(used));
        human_size(max, lim, sizeof(lim));
        human_size(min_free, minf, sizeof(minf));
        human_size(fs_free, fsf, sizeof(fsf));
        fprintf(out, "layerd %s, up %s\n", t->version, up);
        fprintf(out, "cache       %s%s\n", t->cache_dir, cs.ready ? "" : " (still counting what is on disk)");
        fprintf(out, "  use       %" PRIu64 " blobs, %s of %s (%.0f%%); %" PRIu64 " pinned\n", cs.blobs, used, lim,
                max ? 100.0 * (double) cs.bytes / (double) max : 0.0, cs.pinned);
        fprintf(out, "  free      %s on its file system, %s kept free\n", fsf, minf);
        if (lookups)
                fprintf(out, "  hits      %.1f%% (%" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64 " joined)\n",
                        100.0 * ratio, cs.hits, cs.misses, cs.joins);
        else
                fputs("  hits      - (no blob asked for yet)\n", out);
        fprintf(out, "downloads   %u in flight, %u requests waiting for an upstream\n", downloads, waits);
        fprintf(out, "prefetch    %zu entries listed, %" PRIu64 " rounds", listed, ps.rounds);
        if (ps.running && ps.round_images)
                fprintf(out, ", one running: %u of %u images done", ps.round_done, ps.round_images);
        else if (ps.running)
                fputs(", one running", out);
        if (next_s >= 0 && listed > 0)
                fprintf(out, ", next in %" PRId64 " s", next_s);
        fputc('\n', out);
        if (ps.have_last)
                fprintf(out, "  last      %u images: %u ok, %u failed; %u entries unresolved; %" PRIu64
                             " blobs fetched in %.1f s, ended %" PRId64 " s ago\n",
                        ps.last.images, ps.last.images_ok, ps.last.images_failed, ps.last.entries_failed,
                        ps.last.blobs_fetched, (double) ps.last.ms / 1000.0, now_s - ps.last_end_s);
        fputs("endpoints\n", out);
        fallback_foreach_endpoint(p->fb, endpoint_line, &e);
        if (e.n == 0)
                fputs("  (none: no registry is mirrored)\n", out);
        return 0;
}
