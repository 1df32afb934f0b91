/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Helpers the unit tests share. Include after <cmocka.h>. */

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The process whose pid a script wrote into path (a background child it left) no longer
 * exists, not even as a zombie. */
static inline void unit_assert_gone(const char *path) {
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        long pid = 0;
        assert_int_equal(fscanf(f, "%ld", &pid), 1);
        fclose(f);
        assert_true(pid > 1);
        assert_int_equal(kill((pid_t) pid, 0), -1);
        assert_int_equal(errno, ESRCH);
}

/* No child of this process is left, running or a zombie. */
static inline void unit_assert_no_child(void) {
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
}

/* A string of n copies of c; the test frees it. */
static inline char *unit_repeat(char c, size_t n) {
        char *s = malloc(n + 1);
        assert_non_null(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

/* n bytes that no mistake reproduces by accident (xorshift64 from a fixed
 * seed: the same bytes every run); the test frees them. */
static inline unsigned char *unit_pseudo_random(size_t n) {
        unsigned char *b = malloc(n ? n : 1);
        assert_non_null(b);
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b[i] = (unsigned char) (x >> 24);
        }
        return b;
}

static inline int unit_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

/* Removes dir and everything under it, never following links (rm -rf). */
static inline int unit_rm_rf(const char *dir) {
        return nftw(dir, unit_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Standard base64 with padding (docker config.json "auth" fields), written
 * here so the tests do not share the decoder's code. The test frees it. */
static inline char *unit_base64(const char *s) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t len = strlen(s), n = 0;
        char *out = malloc((len + 2) / 3 * 4 + 1);
        assert_non_null(out);
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t) (unsigned char) s[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t) (unsigned char) s[i + 1] << 8;
                if (i + 2 < len)
                        v |= (uint32_t) (unsigned char) s[i + 2];
                out[n++] = alphabet[(v >> 18) & 63];
                out[n++] = alphabet[(v >> 12) & 63];
                out[n++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
                out[n++] = i + 2 < len ? alphabet[v & 63] : '=';
        }
        out[n] = '\0';
        return out;
}
