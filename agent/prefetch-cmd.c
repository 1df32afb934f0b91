/* SPDX-License-Identifier: Apache-2.0 */
/* `layerd prefetch` (a round in the foreground, for node-image builds) and
 * `layerd cache check` (is everything a node needs in its cache, verified:
 * the check an air-gapped site runs before it cuts the link). Both own the
 * cache while they run (one process at a time), or ask the agent that owns it
 * to run the same functions (agent/admin.h), and use the same rounds as the
 * agent (agent/prefetch.c). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/admin.h"
#include "agent/agent.h"
#include "agent/log.h"
#include "agent/prefetch.h"
#include "common/buf.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/reference.h"
#include "common/time.h"

static const char usage_prefetch[] =
        "Usage: layerd prefetch [--spec FILE] [--cache-dir DIR] [--once] [--admin-socket PATH]\n"
        "                       [--log-level LEVEL]\n"
        "\n"
        "Fetch the spec's prefetch list into the cache in the foreground, through the\n"
        "spec's endpoint chains, with a progress line per image and a summary table at\n"
        "the end: for pre-loading images while building a node image. Without --once,\n"
        "a round runs every prefetch.interval until interrupted. What the list names is\n"
        "recorded in CACHE_DIR/prefetch.pins, so `layerd serve` keeps it from eviction.\n"
        "While an agent serves the cache, --once asks it for a round now (through its\n"
        "admin socket; its spec's list applies) and prints the same table.\n"
        "\n"
        "  --spec FILE        the cluster spec (default: the built-in one)\n"
        "  --cache-dir DIR    the cache directory (default: the spec's agent.cache_dir)\n"
        "  --once             one round, then exit\n"
        "  --admin-socket PATH  the running agent's admin socket (default: the spec's\n"
        "                     agent.admin_socket, else CACHE_DIR/admin.sock; '' = never ask)\n"
        "  --log-level LEVEL  err, warning (default), notice, info or debug; logs go to stderr\n"
        "  -h, --help         show this help\n"
        "\n"
        "Exit status: 0 every image complete, 1 otherwise, 2 usage or configuration error.\n";

/* What the summary table says of an image. */
#define ROW_RESULT_MAX 300 /* "FAILED: " and the reason */

struct row {
        char image[PREFETCH_IMAGE_NAME_MAX];
        char platforms[PREFETCH_PLATFORMS_TEXT_MAX];
        unsigned blobs, done, fetched;
        uint64_t bytes, fetched_bytes, ms;
        char result[ROW_RESULT_MAX];
};

struct progress {
        bool tty, check;
        FILE *out, *err;
        struct row *rows;
        size_t n, cap;
        int oom;
};

static void image_name(const struct prefetch_image_report *r, char *buf, size_t size) {
        bool digest = strchr(r->reference, ':') != NULL;
        snprintf(buf, size, "%s/%s%s%s", r->registry, r->repository, digest ? "@" : ":", r->reference);
}

static void human_rate(uint64_t bytes, uint64_t ms, char *buf, size_t size) {
        double mib = (double) bytes / (1024.0 * 1024.0);
        snprintf(buf, size, "%.1f MiB/s", ms ? mib * 1000.0 / (double) ms : 0.0);
}

/* The round's hook: a progress line (rewritten in place on a terminal) and the row. */
static void on_image(const struct prefetch_image_report *r, bool done, void *userdata) {
        struct progress *pg = userdata;
        char name[PREFETCH_IMAGE_NAME_MAX], rate[32];
        image_name(r, name, sizeof(name));
        uint64_t ms = time_now_ms() - r->started_ms;
        human_rate(r->bytes_fetched, done ? r->ms : ms, rate, sizeof(rate));
        if (!done) {
                if (pg->tty)
                        fprintf(pg->err, "\r\033[K[%u/%u] %s  layers %u/%u  %.1f MiB  %s", r->index, r->count, name,
                                r->blobs_done, r->blobs, (double) r->bytes_done / (1024.0 * 1024.0), rate);
                return;
        }
        fprintf(pg->err, "%s[%u/%u] %s %s  layers %u/%u  %.1f MiB  %s  %s%s%s\n", pg->tty ? "\r\033[K" : "", r->index,
                r->count, name, r->platforms[0] ? r->platforms : "-", r->blobs_done, r->blobs,
                (double) r->bytes_done / (1024.0 * 1024.0), rate, r->error ? "FAILED: " : "ok",
                r->error ? r->reason : "", r->stale ? " (stale tag: no upstream answered)" : "");
        if (ARRAY_RESERVE(pg->rows, &pg->cap, pg->n + 1, 16, SIZE_MAX) < 0) {
                pg->oom = -ENOMEM;
                return;
        }
        struct row *w = &pg->rows[pg->n++];
        *w = (struct row) { .blobs = r->blobs, .done = r->blobs_done, .fetched = r->blobs_fetched,
                            .bytes = r->bytes_done, .fetched_bytes = r->bytes_fetched, .ms = r->ms };
        snprintf(w->image, sizeof(w->image), "%s", name);
        snprintf(w->platforms, sizeof(w->platforms), "%s", r->platforms[0] ? r->platforms : "-");
        snprintf(w->result, sizeof(w->result), "%s%s", r->error ? "FAILED: " : "ok", r->error ? r->reason : "");
}

static void print_table(const struct progress *pg, const struct prefetch_round_stats *st) {
        FILE *out = pg->out;
        int wi = 5;
        for (size_t i = 0; i < pg->n; i++)
                if ((int) strlen(pg->rows[i].image) > wi)
                        wi = (int) strlen(pg->rows[i].image);
        fprintf(out, "%-*s  %-24s %9s %8s %12s %9s %12s  %s\n", wi, "IMAGE", "PLATFORMS", "BLOBS", "FETCHED", "BYTES",
               "SECONDS", "RATE", "RESULT");
        for (size_t i = 0; i < pg->n; i++) {
                const struct row *w = &pg->rows[i];
                char blobs[32], rate[32];
                snprintf(blobs, sizeof(blobs), "%u/%u", w->done, w->blobs);
                human_rate(w->fetched_bytes, w->ms, rate, sizeof(rate));
                fprintf(out, "%-*s  %-24s %9s %8u %12" PRIu64 " %9.1f %12s  %s\n", wi, w->image, w->platforms, blobs,
                       w->fetched, w->bytes, (double) w->ms / 1000.0, rate, w->result);
        }
        char rate[32];
        human_rate(st->bytes_fetched, st->ms, rate, sizeof(rate));
        fprintf(out, "%u images: %u ok, %u failed; %u entries unresolved; %" PRIu64 " blobs (%" PRIu64
               " bytes) fetched in %.1f s, %s\n",
               st->images, st->images_ok, st->images_failed, st->entries_failed, st->blobs_fetched, st->bytes_fetched,
               (double) st->ms / 1000.0, rate);
}

int agent_prefetch_report(int (*round)(void *cls, const struct prefetch_hooks *h, struct prefetch_round_stats *st),
                          void *cls, bool tty, FILE *out, FILE *err) {
        struct progress pg = { .tty = tty, .out = out, .err = err };
        struct prefetch_hooks hooks = { .image = on_image, .userdata = &pg };
        struct prefetch_round_stats st = {};
        int r = round(cls, &hooks, &st);
        if (r == -ENODATA) {
                fprintf(err, "layerd prefetch: the spec has no prefetch.images\n");
                return 2;
        }
        print_table(&pg, &st);
        free(pg.rows);
        return fflush(out) == 0 && r >= 0 && !pg.oom ? 0 : 1;
}

/* The command line's round: the pull state and rate limit it made. */
struct local_round {
        struct pull *pull;
        struct ratelimit *limit;
        struct prefetch_pins *pins;
};

static int local_round(void *cls, const struct prefetch_hooks *h, struct prefetch_round_stats *st) {
        struct local_round *lr = cls;
        void *token = NULL;
        const struct spec *s = pull_spec_acquire(lr->pull, &token);
        int r = s->prefetch.n_entries == 0 ? -ENODATA
                                           : prefetch_round(lr->pull, &s->prefetch, false, lr->limit, lr->pins, h, NULL, st);
        pull_spec_release(lr->pull, token);
        return r;
}

int agent_cmd_prefetch(int argc, char **argv) {
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' }, { "cache-dir", required_argument, NULL, 'c' },
                { "once", no_argument, NULL, 'o' },       { "log-level", required_argument, NULL, 'L' },
                { "admin-socket", required_argument, NULL, 'a' },
                { "help", no_argument, NULL, 'h' },       {},
        };
        const char *spec_path = NULL, *dir_arg = NULL, *admin_socket = NULL;
        bool once = false;
        int c, r;
        agent_log_set_max_level(LOG_WARNING); /* the progress lines are the output */
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        spec_path = optarg;
                        break;
                case 'c':
                        dir_arg = optarg;
                        break;
                case 'o':
                        once = true;
                        break;
                case 'a':
                        admin_socket = optarg;
                        break;
                case 'L':
                        if (!agent_log_level_option("prefetch", optarg))
                                return 2;
                        break;
                case 'h':
                        fputs(usage_prefetch, stdout);
                        return 0;
                default:
                        fputs(usage_prefetch, stderr);
                        return 2;
                }
        }
        if (optind != argc) {
                fprintf(stderr, "layerd prefetch: unexpected argument \"%s\"\n", argv[optind]);
                return 2;
        }
        _cleanup_(spec_freep) struct spec *spec = NULL;
        struct error_list errors;
        r = agent_load_spec(spec_path, &spec, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                return r == -ENOMEM ? 1 : 2;
        }
        _cleanup_free_ char *dir = strdup(dir_arg ? dir_arg : spec->agent.cache_dir);
        if (!dir)
                return 1;
        /* A running agent runs the round (its spec's list, its pins, its rate limit). */
        char sock[SPEC_ADMIN_SOCKET_PATH_MAX + 1];
        int have_sock = admin_socket_path(spec, dir, admin_socket, sock, sizeof(sock));
        if (have_sock < 0) {
                fprintf(stderr, "layerd prefetch: the admin socket's path is too long\n");
                return 2;
        }
        if (have_sock > 0 && !once && admin_remote(sock, "GET", "/v1/ping", "layerd prefetch") != ADMIN_NO_AGENT) {
                fprintf(stderr, "layerd prefetch: an agent serves this cache and runs a round every prefetch.interval; "
                                "--once asks it for one now\n");
                return 2;
        }
        if (have_sock > 0 && once) {
                int status = admin_remote(sock, "POST", "/v1/prefetch?format=text", "layerd prefetch");
                if (status != ADMIN_NO_AGENT)
                        return status;
        }
        if (spec->prefetch.n_entries == 0) {
                fprintf(stderr, "layerd prefetch: the spec has no prefetch.images\n");
                return 2;
        }
        _cleanup_(cache_closep) struct cache *cache = NULL;
        _cleanup_(fallback_freep) struct fallback *fb = NULL;
        _cleanup_(prefetch_pins_freep) struct prefetch_pins *pins = NULL;
        r = cache_open(dir, &cache, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                return 1;
        }
        r = prefetch_pins_load(cache, dir, &pins);
        agent_cache_log_evictions(cache);
        if (r >= 0)
                r = agent_cache_apply_limits(spec, dir, cache, NULL);
        if (r < 0) {
                fprintf(stderr, "layerd prefetch: %s: %s\n", dir, strerror(-r));
                return 1;
        }
        error_list_init(&errors, spec->source);
        r = agent_fallback_new(spec, &fb, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                return r == -EINVAL ? 2 : 1;
        }
        uint64_t interval = spec->prefetch.interval_ms;
        struct ratelimit limit;
        ratelimit_init(&limit, spec->prefetch.bandwidth_bps);
        struct pull *pull = NULL;
        r = pull_new(cache, dir, fb, spec, &pull);
        if (r < 0) {
                ratelimit_done(&limit);
                return 1;
        }
        spec = NULL; /* the pull state's now */
        int status = 0;
        struct local_round lr = { .pull = pull, .limit = &limit, .pins = pins };
        for (;;) {
                status = agent_prefetch_report(local_round, &lr, isatty(STDERR_FILENO), stdout, stderr);
                if (once)
                        break;
                struct timespec ts = { .tv_sec = (time_t) (interval / 1000), .tv_nsec = (long) (interval % 1000) * 1000000 };
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
        }
        (void) pull_shutdown(pull, 10000);
        pull_free(pull);
        ratelimit_done(&limit);
        return status;
}

/* `layerd cache check`: the round offline, one line per image and platform. */
static void on_check(const struct prefetch_image_report *r, bool done, void *userdata) {
        struct progress *pg = userdata;
        char name[PREFETCH_IMAGE_NAME_MAX];
        if (!done)
                return;
        image_name(r, name, sizeof(name));
        if (r->n_plat == 0) {
                fprintf(pg->out, "MISSING %s %s %s\n", name, r->platforms[0] ? r->platforms : "-", r->reason);
                pg->n++;
                return;
        }
        for (unsigned i = 0; i < r->n_plat; i++) {
                const struct prefetch_platform_report *p = &r->plat[i];
                bool ok = p->missing == 0 && p->present == p->blobs;
                fprintf(pg->out, "%-7s %s %s blobs %u/%u%s%s%s\n", ok ? "ok" : "MISSING", name, p->platform, p->present, p->blobs,
                       p->first_missing[0] ? " first_missing " : "", p->first_missing,
                       !ok && !p->first_missing[0] ? " (see below)" : "");
                pg->n += !ok;
        }
        if (r->error)
                fprintf(pg->out, "        %s: %s\n", name, r->reason);
}

int agent_cache_check(struct pull *p, char **images, size_t n_images, char **platforms, size_t n_platforms, FILE *out,
                      FILE *err) {
        void *token = NULL;
        const struct spec *spec = pull_spec_acquire(p, &token);
        struct spec_prefetch list = spec->prefetch;
        _cleanup_free_ struct spec_prefetch_entry *entries = NULL;
        char **owned = NULL;
        int r = 0, status = 0;
        if (n_images > 0) {
                entries = calloc(n_images, sizeof(*entries));
                owned = calloc(2 * n_images + 1, sizeof(char *));
                if (!entries || !owned) {
                        free(owned);
                        pull_spec_release(p, token);
                        return 1;
                }
                for (size_t i = 0; i < n_images && r >= 0; i++) {
                        struct reference ref;
                        const char *why = NULL;
                        r = reference_parse(images[i], true, &ref, &why);
                        if (r < 0) {
                                fprintf(err, "layerd cache check: \"%s\": %s\n", images[i], why ? why : strerror(-r));
                                status = 2;
                                break;
                        }
                        entries[i].image = owned[2 * i] = reference_to_string(&ref);
                        entries[i].registry = owned[2 * i + 1] = strdup(ref.domain);
                        reference_done(&ref);
                        if (!entries[i].image || !entries[i].registry)
                                r = -ENOMEM;
                }
                list.entries = entries;
                list.n_entries = n_images;
        }
        if (n_platforms > 0) {
                list.platforms = platforms;
                list.n_platforms = n_platforms;
        }
        list.concurrency = 1; /* hashing is disk-bound; one image after the other reads best */
        if (status == 0 && r >= 0 && list.n_entries == 0) {
                fprintf(err, "layerd cache check: no images given and the spec has no prefetch.images\n");
                status = 2;
        }
        if (status == 0 && r >= 0) {
                struct progress pg = { .out = out, .err = err };
                struct prefetch_hooks hooks = { .image = on_check, .userdata = &pg };
                struct prefetch_round_stats st = {};
                r = prefetch_round(p, &list, true, NULL, NULL, &hooks, NULL, &st);
                fprintf(out, "%u images checked: %u complete, %u not\n", st.images + st.entries_failed, st.images_ok,
                        st.images_failed);
                status = r < 0 ? 1 : 0;
        } else if (status == 0)
                status = 1;
        for (size_t i = 0; owned && i < 2 * n_images; i++)
                free(owned[i]);
        free(owned);
        pull_spec_release(p, token);
        return fflush(out) == 0 ? status : 1;
}
