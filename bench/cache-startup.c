/* SPDX-License-Identifier: Apache-2.0 */
/* Start-up benchmark of the cache (issue 4: "start-up with 100,000 cached
 * blobs well under a second — measure it"): fills a fresh cache directory
 * with N blobs, then times cache_open() on it, with the page cache warm and,
 * where the kernel lets us drop it, cold. A program of its own rather than a
 * unit test, so that no test depends on how fast the machine is.
 *
 *   cache-startup DIR [N [RUNS]]      N blobs (default 100000), RUNS timed opens (default 5)
 *
 * DIR must be empty or absent. Prints a small table on stdout; exits non-zero
 * only when the store cannot be built or opened, or when cache_open() counts
 * other than what was written — never because of the timings, and never
 * because the caches could not be dropped. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "common/fsutil.h"
#include "common/digest.h"
#include "common/error.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/time.h"

#define BLOBS_DEFAULT 100000
#define BLOBS_MAX 10000000
#define RUNS_DEFAULT 5
#define RUNS_MAX 100
#define BLOB_MIN 1024 /* each blob is 1..4 KiB: the walk costs per file, not per byte */
#define BLOB_MAX 4096
#define TARGET_MS 1000.0 /* "well under a second" */

static double ms(uint64_t ns) {
        return (double) ns / 1e6;
}

/* Resident set size now, in KiB, from /proc/self/statm; 0 when unreadable. */
static uint64_t rss_now_kib(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/statm", "re");
        unsigned long size, resident;
        if (!f || fscanf(f, "%lu %lu", &size, &resident) != 2)
                return 0;
        return (uint64_t) resident * (uint64_t) sysconf(_SC_PAGESIZE) / 1024;
}

static uint64_t rss_peak_kib(void) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return (uint64_t) ru.ru_maxrss; /* KiB on Linux */
}

/* One timed cache_open() (until blobs can be served) and the time until its
 * background index is complete; the stats are read then, before the close. */
static int open_once(const char *root, uint64_t *ret_ns, uint64_t *ret_index_ns, struct cache_stats *ret_stats,
                     uint64_t *ret_rss_kib) {
        struct error_list errors;
        struct cache *c = NULL;
        uint64_t t0 = time_now_ns();
        int r = cache_open(root, &c, &errors);
        uint64_t t1 = time_now_ns();
        if (r < 0) {
                error_list_print(&errors, stderr);
                return r;
        }
        r = cache_wait_ready(c, -1);
        uint64_t t2 = time_now_ns();
        if (r < 0) {
                cache_close(c);
                return r;
        }
        if (ret_index_ns)
                *ret_index_ns = t2 - t0;
        cache_get_stats(c, ret_stats);
        if (ret_rss_kib)
                *ret_rss_kib = rss_now_kib();
        cache_close(c);
        *ret_ns = t1 - t0;
        return 0;
}

/* Writes "3" to drop_caches after a sync (dirty pages cannot be dropped).
 * Needs root and a writable /proc/sys, which a container often lacks. */
static int drop_caches(void) {
        sync();
        _cleanup_close_ int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (write(fd, "3\n", 2) != 2)
                return -errno;
        return 0;
}

/* Puts n blobs into ROOT/blobs/sha256/<2 hex>/<hex>, named by the sha256 of
 * the decimal index. Their content is NOT what the name says: cache_open()
 * counts blobs by name and size and never re-hashes (nothing enters blobs/
 * unverified), so hashing KiBs per blob here would only slow the set-up.
 * The data is synced at the end so that write-back does not run during the
 * timed opens and so that a later drop_caches can drop it. */
static int populate(const char *root, uint64_t n, uint64_t *ret_bytes) {
        static unsigned char data[BLOB_MAX];
        bool made[256] = { false };
        uint64_t bytes = 0;
        int r;

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (unsigned char) (i * 31 + 7);

        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/blobs/sha256", root) < 0)
                return -ENOMEM;
        _cleanup_close_ int dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return -errno;

        for (uint64_t i = 0; i < n; i++) {
                char name[32], hex[DIGEST_HEX_MAX], rel[3 + DIGEST_HEX_MAX];
                struct digest d;
                snprintf(name, sizeof(name), "%" PRIu64, i);
                r = digest_buffer(DIGEST_SHA256, name, strlen(name), &d);
                if (r < 0)
                        return r;
                digest_hex(&d, hex);
                unsigned sub = d.bytes[0]; /* the directory's two hex digits */
                snprintf(rel, sizeof(rel), "%.2s", hex);
                if (!made[sub]) {
                        if (mkdirat(dir_fd, rel, 0755) < 0 && errno != EEXIST)
                                return -errno;
                        made[sub] = true;
                }
                snprintf(rel, sizeof(rel), "%.2s/%s", hex, hex);
                size_t size = BLOB_MIN + (size_t) (i % (BLOB_MAX - BLOB_MIN + 1));
                _cleanup_close_ int fd =
                        openat(dir_fd, rel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
                if (fd < 0)
                        return -errno;
                r = write_all(fd, data, size);
                if (r < 0)
                        return r;
                if (close(TAKE_FD(fd)) < 0)
                        return -errno;
                bytes += size;
        }
        if (syncfs(dir_fd) < 0)
                return -errno;
        *ret_bytes = bytes;
        return 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return (x > y) - (x < y);
}

static void print_row(const char *label, uint64_t *ns, unsigned runs) {
        qsort(ns, runs, sizeof(ns[0]), cmp_u64);
        double median = runs % 2 ? ms(ns[runs / 2]) : (ms(ns[runs / 2 - 1]) + ms(ns[runs / 2])) / 2;
        printf("  %-22s %4u %10.1f %10.1f %10.1f\n", label, runs, ms(ns[0]), median, ms(ns[runs - 1]));
}

static bool stats_match(const struct cache_stats *st, uint64_t n, uint64_t bytes) {
        if (st->blobs == n && st->bytes == bytes)
                return true;
        fprintf(stderr, "cache-startup: cache_open() counted %" PRIu64 " blobs, %" PRIu64 " bytes; wrote %" PRIu64
                        " blobs, %" PRIu64 " bytes\n", st->blobs, st->bytes, n, bytes);
        return false;
}

int main(int argc, char **argv) {
        uint64_t n = BLOBS_DEFAULT, runs = RUNS_DEFAULT, bytes = 0;
        struct cache_stats st;
        uint64_t t, rss_before, rss_open = 0;
        int r;

        if (argc < 2 || argc > 4 || (argc > 2 && parse_uint(argv[2], BLOBS_MAX, &n) < 0) ||
            (argc > 3 && (parse_uint(argv[3], RUNS_MAX, &runs) < 0 || runs == 0))) {
                fprintf(stderr, "usage: %s DIR [N (<= %d, default %d) [RUNS (1..%d, default %d)]]\n", argv[0],
                        BLOBS_MAX, BLOBS_DEFAULT, RUNS_MAX, RUNS_DEFAULT);
                return EXIT_FAILURE;
        }
        const char *root = argv[1];

        /* An empty store first: cache_open() lays out VERSION, lock, blobs/ and tmp/ itself. */
        r = open_once(root, &t, NULL, &st, NULL);
        if (r < 0) {
                fprintf(stderr, "cache-startup: cannot create a cache in \"%s\": %s\n", root, strerror(-r));
                return EXIT_FAILURE;
        }
        if (st.blobs != 0) {
                fprintf(stderr, "cache-startup: \"%s\" already holds blobs; give an empty directory\n", root);
                return EXIT_FAILURE;
        }
        printf("cache-startup: cache_open() on %" PRIu64 " sha256 blobs of %d..%d bytes in %s\n", n, BLOB_MIN,
               BLOB_MAX, root);

        t = time_now_ns();
        r = populate(root, n, &bytes);
        if (r < 0) {
                fprintf(stderr, "cache-startup: cannot write the blobs: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        printf("  set-up: %" PRIu64 " blobs, %.1f MiB written and synced in %.1f s\n", n,
               (double) bytes / (1024.0 * 1024.0), ms(time_now_ns() - t) / 1000.0);

        /* An untimed first open warms dentries and inodes and shows what an open cache keeps resident. */
        rss_before = rss_now_kib();
        r = open_once(root, &t, NULL, &st, &rss_open);
        if (r < 0) {
                fprintf(stderr, "cache-startup: cache_open: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        if (!stats_match(&st, n, bytes))
                return EXIT_FAILURE;

        uint64_t warm[RUNS_MAX], cold[RUNS_MAX], warm_index[RUNS_MAX], cold_index[RUNS_MAX];
        for (unsigned i = 0; i < runs; i++) {
                r = open_once(root, &warm[i], &warm_index[i], &st, NULL);
                if (r < 0) {
                        fprintf(stderr, "cache-startup: cache_open: %s\n", strerror(-r));
                        return EXIT_FAILURE;
                }
                if (!stats_match(&st, n, bytes))
                        return EXIT_FAILURE;
        }

        int dropped = drop_caches();
        if (dropped >= 0)
                for (unsigned i = 0; i < runs; i++) {
                        if (i > 0) {
                                dropped = drop_caches();
                                if (dropped < 0)
                                        break;
                        }
                        r = open_once(root, &cold[i], &cold_index[i], &st, NULL);
                        if (r < 0) {
                                fprintf(stderr, "cache-startup: cache_open: %s\n", strerror(-r));
                                return EXIT_FAILURE;
                        }
                        if (!stats_match(&st, n, bytes))
                                return EXIT_FAILURE;
                }

        printf("\n  %-22s %4s %10s %10s %10s\n", "cache_open() to", "runs", "min ms", "median ms", "max ms");
        print_row("serving, warm", warm, (unsigned) runs);
        print_row("index built, warm", warm_index, (unsigned) runs);
        if (dropped >= 0) {
                print_row("serving, cold", cold, (unsigned) runs);
                print_row("index built, cold", cold_index, (unsigned) runs);
        } else {
                printf("  %-22s   not measured: writing /proc/sys/vm/drop_caches failed: %s\n", "caches dropped",
                       strerror(-dropped));
        }
        printf("\n  counted by cache_open(): %" PRIu64 " blobs, %" PRIu64 " bytes (as written)\n", st.blobs,
               st.bytes);
        printf("  resident while open: %+.1f MiB over %.1f MiB before the first open; peak RSS %.1f MiB\n",
               ((double) rss_open - (double) rss_before) / 1024.0, (double) rss_before / 1024.0,
               (double) rss_peak_kib() / 1024.0);
        qsort(warm, runs, sizeof(warm[0]), cmp_u64);
        printf("  target: well under %.0f ms with 100,000 blobs; slowest warm open here %.1f ms\n", TARGET_MS,
               ms(warm[runs - 1]));
        return EXIT_SUCCESS;
}
