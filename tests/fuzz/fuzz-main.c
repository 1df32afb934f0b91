/* SPDX-License-Identifier: Apache-2.0 */
/* Replays fuzz inputs through a target without libFuzzer (systemd's
 * fuzz-main.c habit): `make check` runs every corpus file under gcc+ASan, so
 * each input that once found a bug stays a regression test. Arguments are
 * files or directories of files. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
        FILE *f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (!m) {
                fclose(f);
                return -1;
        }
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                fwrite(chunk, 1, n, m);
        int bad = ferror(f);
        fclose(f);
        fclose(m);
        if (bad) {
                free(buf);
                return -1;
        }
        /* A copy of exactly len bytes, so ASan catches any read past the end. */
        uint8_t *exact = malloc(len ? len : 1);
        if (!exact) {
                free(buf);
                return -1;
        }
        memcpy(exact, buf, len);
        free(buf);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        return 0;
}

static int compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int main(int argc, char **argv) {
        size_t done = 0;
        int failed = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        failed = 1;
                        continue;
                }
                if (!S_ISDIR(st.st_mode)) {
                        failed |= run_file(argv[i]) < 0;
                        done++;
                        continue;
                }
                struct dirent **names;
                int n = scandir(argv[i], &names, NULL, NULL);
                if (n < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        failed = 1;
                        continue;
                }
                qsort(names, (size_t) n, sizeof(*names), compare);
                for (int j = 0; j < n; j++) {
                        char path[4096];
                        if (names[j]->d_name[0] != '.') {
                                snprintf(path, sizeof(path), "%s/%s", argv[i], names[j]->d_name);
                                failed |= run_file(path) < 0;
                                done++;
                        }
                        free(names[j]);
                }
                free(names);
        }
        printf("%zu inputs replayed\n", done);
        return failed || done == 0;
}
