/* SPDX-License-Identifier: Apache-2.0 */
/* `layerd cache stats|ls|verify|gc|check|rm|refresh`: looking after the store. The
 * store has one owner at a time: while an agent runs, the command asks it
 * through its admin socket (agent/admin.h), which runs the same functions as
 * below and answers with their output; else the command opens the store
 * itself, and refuses when an agent without an admin socket holds it (a
 * clear error, never two writers). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "agent/admin-wire.h"
#include "agent/admin.h"
#include "agent/agent.h"
#include "agent/prefetch.h"
#include "cache/cache.h"
#include "common/buf.h"
#include "common/macro.h"
#include "common/parse.h"

static const char usage_cache[] =
        "Usage: layerd cache COMMAND [--spec FILE | --cache-dir DIR] [--admin-socket PATH]\n"
        "       layerd cache check [--spec FILE] [--cache-dir DIR] [--platform P]... [IMAGE...]\n"
        "       layerd cache rm|refresh [--spec FILE] [--cache-dir DIR] IMAGE...\n"
        "\n"
        "Look after the blob cache. While an agent serves it, the agent runs the command\n"
        "(through its admin socket) and its spec applies; else the command opens it.\n"
        "\n"
        "Commands:\n"
        "  stats    counts and bytes\n"
        "  ls       every blob, least recently used first: digest, size, pinned (the\n"
        "           prefetch list's, from CACHE_DIR/prefetch.pins)\n"
        "  verify   re-hash every blob; move any that does not match its digest to\n"
        "           quarantine/ (exit 1 when one was found)\n"
        "  gc       evict down to the spec's agent.cache_max_size, cache_min_free and cache_max_age\n"
        "           (never the prefetch list's pinned blobs)\n"
        "  rm IMAGE...       drop the images' tag records (registry/repository:tag, or\n"
        "           @digest) and every blob of theirs no other recorded image needs and\n"
        "           no pin holds, worked out from the manifests in the cache\n"
        "  refresh IMAGE...  revalidate the images' tags with their upstreams now (needs\n"
        "           the running agent)\n"
        "  check    whether every blob of IMAGE... (default: the spec's prefetch list)\n"
        "           is in the cache and matches its digest, per image and platform,\n"
        "           without asking any upstream (exit 1 when anything is missing);\n"
        "           tags resolve through the tags the node recorded\n"
        "\n"
        "  --spec FILE       the cluster spec naming the cache (agent.cache_dir); the\n"
        "                    built-in spec when neither option is given\n"
        "  --cache-dir DIR   the cache directory itself\n"
        "  --admin-socket PATH  the running agent's admin socket (default: the spec's\n"
        "                    agent.admin_socket, else CACHE_DIR/admin.sock; '' = never ask)\n"
        "  --platform P      check: this platform (os/arch[/variant]; repeatable); default\n"
        "                    prefetch.platforms, else the node's own\n"
        "  -h, --help        show this help\n"
        "\n"
        "Exit status: 0 ok, 1 failure (or quarantined blobs), 2 usage or configuration error.\n";

static int print_blob(const struct digest *d, uint64_t size, bool pinned, void *userdata) {
        char s[DIGEST_STRING_MAX];
        return fprintf(userdata, "%s %" PRIu64 "%s\n", digest_to_string(d, s), size, pinned ? " pinned" : "") < 0 ? -EIO
                                                                                                                 : 0;
}

static void print_bad(const struct digest *want, const struct digest *got, void *userdata) {
        char a[DIGEST_STRING_MAX], b[DIGEST_STRING_MAX];
        fprintf(userdata, "quarantined %s: its content is %s\n", digest_to_string(want, a), digest_to_string(got, b));
}

int agent_cache_command(struct cache *cache, const char *dir, const struct spec *spec, const char *what, FILE *out,
                        FILE *err) {
        int r = cache_wait_ready(cache, -1);
        if (r < 0) {
                fprintf(err, "%s: cannot read the store: %s\n", dir, strerror(-r));
                return 1;
        }
        if (strcmp(what, "ls") == 0) {
                r = cache_foreach_blob(cache, print_blob, out);
        } else if (strcmp(what, "verify") == 0) {
                uint64_t checked, bad;
                r = cache_verify(cache, print_bad, out, &checked, &bad);
                if (r == 0) {
                        fprintf(out, "%" PRIu64 " checked, %" PRIu64 " quarantined\n", checked, bad);
                        if (bad > 0)
                                return fflush(out) == 0 ? 1 : 1; /* like fsck: something was wrong */
                }
        } else if (strcmp(what, "gc") == 0) {
                /* Counted from the stats (the background pass may do some of
                 * it), from before the limits are set: a running agent's count
                 * since its start is not this command's. */
                struct cache_stats before, st;
                cache_get_stats(cache, &before);
                uint64_t max = 0;
                if (spec)
                        r = agent_cache_apply_limits(spec, dir, cache, &max);
                else
                        max = cache_max_bytes(cache); /* the agent's: its last reload set them */
                if (r == 0)
                        (void) cache_evict_now(cache);
                cache_get_stats(cache, &st);
                char limit[32];
                format_size(max, limit, sizeof(limit));
                if (r == 0)
                        fprintf(out,
                                "%" PRIu64 " evicted (%" PRIu64 " bytes); %" PRIu64 " blobs, %" PRIu64
                                " bytes left; limit %s\n",
                                st.evictions - before.evictions, st.evicted_bytes - before.evicted_bytes, st.blobs,
                                st.bytes, limit);
        } else {
                struct cache_stats st;
                cache_get_stats(cache, &st);
                struct statvfs sv;
                fprintf(out, "blobs %" PRIu64 "\nbytes %" PRIu64 "\npartials_removed %" PRIu64 "\n", st.blobs, st.bytes,
                        st.partials_removed);
                if (statvfs(dir, &sv) == 0)
                        fprintf(out, "filesystem_bytes %" PRIu64 "\nfilesystem_free_bytes %" PRIu64 "\n",
                                (uint64_t) sv.f_blocks * sv.f_frsize, (uint64_t) sv.f_bavail * sv.f_frsize);
        }
        if (r < 0) {
                fprintf(err, "%s: %s\n", dir, strerror(-r));
                return 1;
        }
        return fflush(out) == 0 ? 0 : 1;
}

int agent_cmd_cache(int argc, char **argv) {
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' },
                { "cache-dir", required_argument, NULL, 'c' },
                { "platform", required_argument, NULL, 'p' },
                { "admin-socket", required_argument, NULL, 'a' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(spec_freep) struct spec *spec = NULL;
        _cleanup_(cache_closep) struct cache *cache = NULL;
        const char *spec_path = NULL, *dir = NULL, *admin_socket = NULL;
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
                case 'a':
                        admin_socket = optarg;
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
        bool takes_images = argc - optind >= 1 && (strcmp(argv[optind], "check") == 0 ||
                                                    strcmp(argv[optind], "rm") == 0 ||
                                                    strcmp(argv[optind], "refresh") == 0);
        if (argc - optind < 1 || (argc - optind != 1 && !takes_images)) {
                fputs(usage_cache, stderr);
                return 2;
        }
        const char *what = argv[optind];
        if (strcmp(what, "stats") != 0 && strcmp(what, "ls") != 0 && strcmp(what, "verify") != 0 &&
            strcmp(what, "gc") != 0 && !takes_images) {
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
        const char *dir_given = dir; /* the agent asked must serve this one */
        if (!dir)
                dir = spec->agent.cache_dir;
        char sock[SPEC_ADMIN_SOCKET_PATH_MAX + 1];
        int have_sock = admin_socket_path(spec, dir, admin_socket, sock, sizeof(sock));
        if (have_sock < 0) {
                fprintf(stderr, "layerd cache: the admin socket's path is too long\n");
                return 2;
        }
        /* A running agent answers for its cache; else the cache is opened here (its lock
         * refuses while an agent without an admin socket holds it). */
        _cleanup_buf_ struct buf target = BUF_INIT(ADMIN_REQUEST_MEMORY / 2);
        bool query = strcmp(what, "stats") == 0 || strcmp(what, "ls") == 0;
        r = buf_printf(&target, "/v1/cache/%s", what);
        for (int i = optind + 1; r >= 0 && i < argc; i++)
                r = admin_query_append(&target, "image", argv[i]);
        for (size_t i = 0; r >= 0 && i < n_platforms; i++)
                r = admin_query_append(&target, "platform", platforms[i]);
        if (r >= 0)
                r = admin_query_append(&target, "format", "text");
        if (r < 0) {
                fprintf(stderr, "layerd cache: too many or too long arguments\n");
                return 2;
        }
        int status = admin_remote_dir(have_sock > 0 ? sock : NULL, query ? "GET" : "POST", buf_str(&target), dir_given,
                                      "layerd cache");
        if (status != ADMIN_NO_AGENT)
                return status;
        char **images = argv + optind + 1;
        size_t n_images = (size_t) (argc - optind - 1);
        if (strcmp(what, "refresh") == 0)
                return agent_cache_refresh(NULL, images, n_images, stdout, stderr);
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
        if (strcmp(what, "rm") == 0)
                return agent_cache_rm(cache, images, n_images, stdout, stderr);
        if (strcmp(what, "check") != 0)
                return agent_cache_command(cache, dir, spec, what, stdout, stderr);
        struct pull *pull = NULL;
        r = pull_new(cache, dir, NULL, TAKE_PTR(spec), &pull);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", dir, strerror(-r));
                return 1;
        }
        status = agent_cache_check(pull, images, n_images, platforms, n_platforms, stdout, stderr);
        pull_free(pull);
        return status;
}
