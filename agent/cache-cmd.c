/* SPDX-License-Identifier: Apache-2.0 */
/* `layerd cache stats|ls|verify|gc`: looking after the store offline. The
 * store has one owner at a time, so these refuse to run while an agent holds
 * it (a clear error, never two writers). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "agent/agent.h"
#include "agent/prefetch.h"
#include "cache/cache.h"
#include "common/macro.h"
#include "common/parse.h"

static const char usage_cache[] =
        "Usage: layerd cache COMMAND [--spec FILE | --cache-dir DIR]\n"
        "       layerd cache check [--spec FILE] [--cache-dir DIR] [--platform P]... [IMAGE...]\n"
        "\n"
        "Look after the blob cache while no agent is using it.\n"
        "\n"
        "Commands:\n"
        "  stats    counts and bytes\n"
        "  ls       every blob, least recently used first: digest, size, pinned (the\n"
        "           prefetch list's, from CACHE_DIR/prefetch.pins)\n"
        "  verify   re-hash every blob; move any that does not match its digest to\n"
        "           quarantine/ (exit 1 when one was found)\n"
        "  gc       evict down to the spec's agent.cache_max_size, cache_min_free and cache_max_age\n"
        "           (never the prefetch list's pinned blobs)\n"
        "  check    whether every blob of IMAGE... (default: the spec's prefetch list)\n"
        "           is in the cache and matches its digest, per image and platform,\n"
        "           without asking any upstream (exit 1 when anything is missing);\n"
        "           tags resolve through the tags the node recorded\n"
        "\n"
        "  --spec FILE       the cluster spec naming the cache (agent.cache_dir); the\n"
        "                    built-in spec when neither option is given\n"
        "  --cache-dir DIR   the cache directory itself\n"
        "  --platform P      check: this platform (os/arch[/variant]; repeatable); default\n"
        "                    prefetch.platforms, else the node's own\n"
        "  -h, --help        show this help\n"
        "\n"
        "Exit status: 0 ok, 1 failure (or quarantined blobs), 2 usage or configuration error.\n";

static int print_blob(const struct digest *d, uint64_t size, bool pinned, void *userdata) {
        char s[DIGEST_STRING_MAX];
        (void) userdata;
        return printf("%s %" PRIu64 "%s\n", digest_to_string(d, s), size, pinned ? " pinned" : "") < 0 ? -EIO : 0;
}

static void print_bad(const struct digest *want, const struct digest *got, void *userdata) {
        char a[DIGEST_STRING_MAX], b[DIGEST_STRING_MAX];
        (void) userdata;
        printf("quarantined %s: its content is %s\n", digest_to_string(want, a), digest_to_string(got, b));
}

int agent_cmd_cache(int argc, char **argv) {
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' },
                { "cache-dir", required_argument, NULL, 'c' },
                { "platform", required_argument, NULL, 'p' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(spec_freep) struct spec *spec = NULL;
        _cleanup_(cache_closep) struct cache *cache = NULL;
        const char *spec_path = NULL, *dir = NULL;
        char *platforms[SPEC_PLATFORMS_MAX];
        size_t n_platforms = 0;
        struct error_list errors;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        spec_path = optarg;
                        break;
                case 'c':
                        dir = optarg;
                        break;
                case 'p':
                        if (n_platforms == SPEC_PLATFORMS_MAX || strchr(optarg, '/') == NULL) {
                                fprintf(stderr, "layerd cache: --platform: not a platform (os/arch[/variant]) or "
                                                "more than %d: \"%s\"\n", SPEC_PLATFORMS_MAX, optarg);
                                return 2;
                        }
                        platforms[n_platforms++] = optarg;
                        break;
                case 'h':
                        fputs(usage_cache, stdout);
                        return 0;
                default:
                        fputs(usage_cache, stderr);
                        return 2;
                }
        }
        if (argc - optind < 1 || (argc - optind != 1 && strcmp(argv[optind], "check") != 0)) {
                fputs(usage_cache, stderr);
                return 2;
        }
        const char *what = argv[optind];
        if (strcmp(what, "stats") != 0 && strcmp(what, "ls") != 0 && strcmp(what, "verify") != 0 &&
            strcmp(what, "gc") != 0 && strcmp(what, "check") != 0) {
                fprintf(stderr, "layerd cache: unknown command \"%s\"\n", what);
                return 2;
        }
        r = agent_load_spec(spec_path, &spec, &errors);
        if (r == -ENOMEM)
                return 1;
        if (r < 0) {
                (void) error_list_print(&errors, stderr);
                return 2;
        }
        if (!dir)
                dir = spec->agent.cache_dir;
        r = cache_open(dir, &cache, &errors);
        if (r < 0) {
                (void) error_list_print(&errors, stderr);
                return 1;
        }
        /* The prefetch list's pins (agent/prefetch.h): gc must not evict them, ls shows them. */
        _cleanup_(prefetch_pins_freep) struct prefetch_pins *pins = NULL;
        r = prefetch_pins_load(cache, dir, &pins);
        if (r < 0) {
                fprintf(stderr, "%s: cannot read the prefetch pins: %s\n", dir, strerror(-r));
                return 1;
        }
        r = cache_wait_ready(cache, -1);
        if (r < 0) {
                fprintf(stderr, "%s: cannot read the store: %s\n", dir, strerror(-r));
                return 1;
        }
        if (strcmp(what, "check") == 0)
                return agent_cache_check(cache, dir, TAKE_PTR(spec), argv + optind + 1, (size_t) (argc - optind - 1),
                                         platforms, n_platforms);
        if (strcmp(what, "ls") == 0) {
                r = cache_foreach_blob(cache, print_blob, NULL);
        } else if (strcmp(what, "verify") == 0) {
                uint64_t checked, bad;
                r = cache_verify(cache, print_bad, NULL, &checked, &bad);
                if (r == 0) {
                        printf("%" PRIu64 " checked, %" PRIu64 " quarantined\n", checked, bad);
                        if (bad > 0) {
                                (void) fflush(stdout);
                                return 1; /* like fsck: something was wrong */
                        }
                }
        } else if (strcmp(what, "gc") == 0) {
                uint64_t max = 0;
                r = agent_cache_apply_limits(spec, dir, cache, &max);
                if (r == 0)
                        (void) cache_evict_now(cache);
                /* The background pass may have done some of it: count from the stats. */
                struct cache_stats st;
                cache_get_stats(cache, &st);
                uint64_t n = st.evictions;
                char limit[32];
                format_size(max, limit, sizeof(limit));
                if (r == 0)
                        printf("%" PRIu64 " evicted (%" PRIu64 " bytes); %" PRIu64 " blobs, %" PRIu64
                               " bytes left; limit %s\n",
                               n, st.evicted_bytes, st.blobs, st.bytes, limit);
        } else {
                struct cache_stats st;
                cache_get_stats(cache, &st);
                struct statvfs sv;
                printf("blobs %" PRIu64 "\nbytes %" PRIu64 "\npartials_removed %" PRIu64 "\n", st.blobs, st.bytes,
                       st.partials_removed);
                if (statvfs(dir, &sv) == 0)
                        printf("filesystem_bytes %" PRIu64 "\nfilesystem_free_bytes %" PRIu64 "\n",
                               (uint64_t) sv.f_blocks * sv.f_frsize, (uint64_t) sv.f_bavail * sv.f_frsize);
        }
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", dir, strerror(-r));
                return 1;
        }
        return fflush(stdout) == 0 ? 0 : 1;
}
