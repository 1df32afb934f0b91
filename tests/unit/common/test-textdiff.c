/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/textdiff.c. Hand-written cases, where only one
 * alignment is minimal, must match GNU diff -u byte for byte (and the text
 * written here, which GNU diff also has to agree with). Random small files
 * are compared with GNU diff too, and every diff is also applied to its input
 * by an applier below that checks header counts, context lines and hunk shape,
 * and that the result is the other input. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/textdiff.h"

#define HEADERS "--- a/f\n+++ b/f\n"
#define NO_NEWLINE "\\ No newline at end of file"

/* ---- running both diffs ---------------------------------------------------- */

/* text_diff_unified into memory; checks the two header lines (or that nothing
 * was written when it returns 0) and returns what follows them; caller frees. */
static char *diff_ours(const char *a, size_t a_size, const char *b, size_t b_size, int *ret_r) {
        char *out = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&out, &size);
        assert_non_null(f);
        *ret_r = text_diff_unified(a, a_size, b, b_size, "a/f", "b/f", f);
        assert_int_equal(fclose(f), 0);
        if (*ret_r != 1) {
                assert_int_equal(size, 0);
                return out;
        }
        size_t h = strlen(HEADERS);
        assert_true(size >= h);
        assert_memory_equal(out, HEADERS, h);
        memmove(out, out + h, size - h + 1);
        return out;
}

static void write_file(const char *path, const char *data, size_t size) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, size, f), size);
        assert_int_equal(fclose(f), 0);
}

/* GNU diff -u of a and b, written to dir/a and dir/b, without its two header
 * lines (they carry timestamps); *ret_status is diff's exit status. */
static char *diff_gnu(const char *dir, const char *a, size_t a_size, const char *b, size_t b_size,
                      int *ret_status) {
        _cleanup_free_ char *pa = NULL, *pb = NULL, *cmd = NULL;
        assert_true(asprintf(&pa, "%s/a", dir) > 0);
        assert_true(asprintf(&pb, "%s/b", dir) > 0);
        assert_true(asprintf(&cmd, "LC_ALL=C /usr/bin/diff -u '%s' '%s'", pa, pb) > 0);
        write_file(pa, a, a_size);
        write_file(pb, b, b_size);

        char *out = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&out, &size);
        assert_non_null(m);
        FILE *p = popen(cmd, "re");
        assert_non_null(p);
        char chunk[4096];
        for (;;) {
                size_t n = fread(chunk, 1, sizeof(chunk), p);
                if (n == 0)
                        break;
                assert_int_equal(fwrite(chunk, 1, n, m), n);
        }
        int st = pclose(p);
        assert_int_equal(fclose(m), 0);
        assert_true(WIFEXITED(st));
        *ret_status = WEXITSTATUS(st);
        if (*ret_status != 1)
                return out;
        assert_true(strncmp(out, "--- ", 4) == 0);
        char *second = strchr(out, '\n');
        assert_non_null(second);
        assert_true(strncmp(second + 1, "+++ ", 4) == 0);
        char *body = strchr(second + 1, '\n');
        assert_non_null(body);
        body++;
        memmove(out, body, size - (size_t) (body - out) + 1);
        return out;
}

/* Both diffs of a and b must be exactly want, "" meaning "no difference".
 * GNU diff is checked first, so a failure there is a wrong expectation here.
 * A macro so that cmocka reports the case's line. */
#define CHECK_DIFF(dir, a, b, want)                                                     \
        do {                                                                            \
                const char *a_ = (a), *b_ = (b), *w_ = (want);                          \
                int r_ = -1, st_ = -1;                                                  \
                _cleanup_free_ char *g_ = diff_gnu((dir), a_, strlen(a_), b_, strlen(b_), &st_); \
                _cleanup_free_ char *o_ = diff_ours(a_, strlen(a_), b_, strlen(b_), &r_); \
                assert_int_equal(st_, *w_ ? 1 : 0);                                     \
                assert_string_equal(g_, w_);                                            \
                assert_int_equal(r_, *w_ ? 1 : 0);                                      \
                assert_string_equal(o_, w_);                                            \
        } while (0)

/* Lines "1".."n", each ended by '\n', where the lines listed (0-terminated)
 * read "<k> changed" instead; caller frees. */
static char *seq(unsigned n, ...) {
        char *out = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&out, &size);
        assert_non_null(f);
        for (unsigned i = 1; i <= n; i++) {
                bool changed = false;
                va_list ap;
                va_start(ap, n);
                for (unsigned k = va_arg(ap, unsigned); k != 0; k = va_arg(ap, unsigned))
                        changed = changed || k == i;
                va_end(ap);
                assert_true(fprintf(f, changed ? "%u changed\n" : "%u\n", i) > 0);
        }
        assert_int_equal(fclose(f), 0);
        return out;
}

/* ---- an independent checker: split, LCS, apply ----------------------------- */

struct tline {
        const char *s;
        size_t len;
        bool nl;
};

static struct tline *tsplit(const char *t, size_t size, size_t *ret_n) {
        struct tline *v = calloc(size + 1, sizeof(*v));
        assert_non_null(v);
        size_t n = 0, start = 0;
        for (size_t i = 0; i < size; i++)
                if (t[i] == '\n') {
                        v[n++] = (struct tline) { t + start, i - start, true };
                        start = i + 1;
                }
        if (start < size)
                v[n++] = (struct tline) { t + start, size - start, false };
        *ret_n = n;
        return v;
}

static bool tline_eq(const struct tline *x, const char *s, size_t len, bool nl) {
        return x->len == len && x->nl == nl && memcmp(x->s, s, len) == 0;
}

static size_t lcs_len(const struct tline *a, size_t n, const struct tline *b, size_t m) {
        _cleanup_free_ size_t *prev = calloc(m + 1, sizeof(size_t));
        _cleanup_free_ size_t *cur = calloc(m + 1, sizeof(size_t));
        assert_non_null(prev);
        assert_non_null(cur);
        for (size_t i = 1; i <= n; i++) {
                for (size_t j = 1; j <= m; j++)
                        if (tline_eq(&a[i - 1], b[j - 1].s, b[j - 1].len, b[j - 1].nl))
                                cur[j] = prev[j - 1] + 1;
                        else
                                cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
                size_t *t = prev;
                prev = cur;
                cur = t;
        }
        return prev[m];
}

/* "l" or "l,c" as diff -u writes a range: a count of 1 is never written. */
static void parse_range(const char **p, const char *end, size_t *ret_start, size_t *ret_count) {
        char *e;
        assert_true(*p < end && isdigit((unsigned char) **p));
        errno = 0;
        unsigned long long v = strtoull(*p, &e, 10);
        assert_int_equal(errno, 0);
        *ret_start = v;
        *ret_count = 1;
        if (e < end && *e == ',') {
                assert_true(e + 1 < end && isdigit((unsigned char) e[1]));
                v = strtoull(e + 1, &e, 10);
                assert_int_equal(errno, 0);
                assert_int_not_equal(v, 1);
                *ret_count = v;
        }
        *p = e;
}

static void parse_header(const struct tline *l, size_t *as, size_t *ac, size_t *bs, size_t *bc) {
        const char *p = l->s, *end = l->s + l->len;
        assert_true(l->nl && l->len > 4 && memcmp(p, "@@ -", 4) == 0);
        p += 4;
        parse_range(&p, end, as, ac);
        assert_true(end - p > 2 && memcmp(p, " +", 2) == 0);
        p += 2;
        parse_range(&p, end, bs, bc);
        assert_true(end - p == 3 && memcmp(p, " @@", 3) == 0);
        /* An empty range names the line before it, so 0 only for an empty count. */
        assert_true(*ac == 0 || *as > 0);
        assert_true(*bc == 0 || *bs > 0);
}

static void emit(FILE *f, const char *s, size_t len, bool nl) {
        assert_int_equal(fwrite(s, 1, len, f), len);
        if (nl)
                assert_int_equal(fputc('\n', f), '\n');
}

/* Applies diff (hunks, as text_diff_unified writes them after its headers) to
 * a and checks that the result is b. On the way checks each header's start
 * and counts against its lines, context and deleted lines against a, and the
 * shape of diff -u hunks: TEXTDIFF_CONTEXT lines of context at each end unless
 * the file ends first, and a new hunk only where more than twice that many
 * unchanged lines separate two changes. Returns the number of changed lines. */
static size_t apply_hunks(const char *a, size_t a_size, const char *b, size_t b_size, const char *diff) {
        size_t n, nd, changes = 0;
        _cleanup_free_ struct tline *al = tsplit(a, a_size, &n);
        _cleanup_free_ struct tline *dl = tsplit(diff, strlen(diff), &nd);
        char *out = NULL;
        size_t out_size = 0;
        FILE *f = open_memstream(&out, &out_size);
        assert_non_null(f);

        size_t ai = 0, bo = 0, k = 0, prev_end = SIZE_MAX;
        while (k < nd) {
                size_t as, ac, bs, bc;
                parse_header(&dl[k++], &as, &ac, &bs, &bc);
                size_t a_first = ac ? as - 1 : as, b_first = bc ? bs - 1 : bs;
                assert_true(a_first >= ai && a_first <= n);
                for (; ai < a_first; ai++, bo++)
                        emit(f, al[ai].s, al[ai].len, al[ai].nl);
                assert_int_equal(bo, b_first);

                size_t a_cnt = 0, b_cnt = 0, run = 0, lead = SIZE_MAX, first = 0, last_end = 0;
                while (k < nd && !(dl[k].len >= 2 && memcmp(dl[k].s, "@@", 2) == 0)) {
                        const struct tline *l = &dl[k++];
                        assert_true(l->nl && l->len >= 1);
                        bool nl = true;
                        if (k < nd && tline_eq(&dl[k], NO_NEWLINE, strlen(NO_NEWLINE), true)) {
                                nl = false;
                                k++;
                        }
                        char tag = l->s[0];
                        const char *s = l->s + 1;
                        size_t len = l->len - 1;
                        if (tag == ' ') {
                                assert_true(ai < n);
                                assert_true(tline_eq(&al[ai], s, len, nl));
                                emit(f, s, len, nl);
                                ai++, bo++, a_cnt++, b_cnt++, run++;
                                continue;
                        }
                        if (lead == SIZE_MAX) {
                                lead = run;
                                first = ai;
                        } else
                                assert_true(run <= 2 * TEXTDIFF_CONTEXT);
                        run = 0;
                        changes++;
                        if (tag == '-') {
                                assert_true(ai < n);
                                assert_true(tline_eq(&al[ai], s, len, nl));
                                ai++, a_cnt++;
                        } else {
                                assert_int_equal(tag, '+');
                                emit(f, s, len, nl);
                                bo++, b_cnt++;
                        }
                        last_end = ai;
                }
                assert_int_equal(a_cnt, ac);
                assert_int_equal(b_cnt, bc);
                assert_true(lead != SIZE_MAX); /* a hunk holds a change */
                assert_int_equal(lead, first < TEXTDIFF_CONTEXT ? first : TEXTDIFF_CONTEXT);
                assert_int_equal(run, n - last_end < TEXTDIFF_CONTEXT ? n - last_end : TEXTDIFF_CONTEXT);
                if (prev_end != SIZE_MAX)
                        assert_true(first - prev_end > 2 * TEXTDIFF_CONTEXT);
                prev_end = last_end;
        }
        for (; ai < n; ai++)
                emit(f, al[ai].s, al[ai].len, al[ai].nl);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(out_size, b_size);
        assert_memory_equal(out, b, b_size);
        free(out);
        return changes;
}

/* ---- fixtures ------------------------------------------------------------------ */

static int setup(void **state) {
        char *dir = strdup("/tmp/layerd-test-textdiff-XXXXXX");
        if (!dir || !mkdtemp(dir)) {
                free(dir);
                return -1;
        }
        *state = dir;
        return 0;
}

static int teardown(void **state) {
        char *dir = *state;
        int r = unit_rm_rf(dir);
        free(dir);
        return r;
}

/* ---- hand-written cases -------------------------------------------------------- */

static void test_identical(void **state) {
        const char *dir = *state;
        CHECK_DIFF(dir, "", "", "");
        CHECK_DIFF(dir, "x\n", "x\n", "");
        CHECK_DIFF(dir, "x\ny", "x\ny", "");
        _cleanup_free_ char *s = seq(50, 0);
        CHECK_DIFF(dir, s, s, "");
}

static void test_empty(void **state) {
        const char *dir = *state;
        CHECK_DIFF(dir, "", "x\ny\n", "@@ -0,0 +1,2 @@\n+x\n+y\n");
        CHECK_DIFF(dir, "x\ny\n", "", "@@ -1,2 +0,0 @@\n-x\n-y\n");
        CHECK_DIFF(dir, "", "x\n", "@@ -0,0 +1 @@\n+x\n");
        CHECK_DIFF(dir, "x\n", "", "@@ -1 +0,0 @@\n-x\n");
        CHECK_DIFF(dir, "", "x", "@@ -0,0 +1 @@\n+x\n" NO_NEWLINE "\n");
        CHECK_DIFF(dir, "x", "", "@@ -1 +0,0 @@\n-x\n" NO_NEWLINE "\n");
        CHECK_DIFF(dir, "", "\n", "@@ -0,0 +1 @@\n+\n");
}

static void test_one_line(void **state) {
        const char *dir = *state;
        CHECK_DIFF(dir, "a\n", "b\n", "@@ -1 +1 @@\n-a\n+b\n");
        CHECK_DIFF(dir, "a\n", "a\nb\n", "@@ -1 +1,2 @@\n a\n+b\n");
        CHECK_DIFF(dir, "a\nb\n", "b\n", "@@ -1,2 +1 @@\n-a\n b\n");
}

static void test_change_start_middle_end(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *a = seq(10, 0), *b1 = seq(10, 1, 0), *b5 = seq(10, 5, 0),
                            *b10 = seq(10, 10, 0);
        CHECK_DIFF(dir, a, b1, "@@ -1,4 +1,4 @@\n-1\n+1 changed\n 2\n 3\n 4\n");
        CHECK_DIFF(dir, a, b5, "@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+5 changed\n 6\n 7\n 8\n");
        CHECK_DIFF(dir, a, b10, "@@ -7,4 +7,4 @@\n 7\n 8\n 9\n-10\n+10 changed\n");
        /* Two lines from either end: the context stops at the file's edge. */
        _cleanup_free_ char *b2 = seq(10, 2, 0), *b9 = seq(10, 9, 0);
        CHECK_DIFF(dir, a, b2, "@@ -1,5 +1,5 @@\n 1\n-2\n+2 changed\n 3\n 4\n 5\n");
        CHECK_DIFF(dir, a, b9, "@@ -6,5 +6,5 @@\n 6\n 7\n 8\n-9\n+9 changed\n 10\n");
}

static void test_insert_delete(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *a = seq(10, 0);
        CHECK_DIFF(dir, a, "1\n2\n3\n4\n5\nnew\n6\n7\n8\n9\n10\n",
                   "@@ -3,6 +3,7 @@\n 3\n 4\n 5\n+new\n 6\n 7\n 8\n");
        CHECK_DIFF(dir, a, "1\n2\n3\n4\n6\n7\n8\n9\n10\n", "@@ -2,7 +2,6 @@\n 2\n 3\n 4\n-5\n 6\n 7\n 8\n");
        CHECK_DIFF(dir, a, "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "@@ -1,3 +1,4 @@\n+0\n 1\n 2\n 3\n");
        CHECK_DIFF(dir, a, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n", "@@ -8,3 +8,4 @@\n 8\n 9\n 10\n+11\n");
        CHECK_DIFF(dir, a, "1\n2\n3\n4\n5\n6\n7\n8\n9\n", "@@ -7,4 +7,3 @@\n 7\n 8\n 9\n-10\n");
}

static void test_hunk_merging(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *a = seq(20, 0), *b6 = seq(20, 3, 10, 0), *b7 = seq(20, 3, 11, 0);
        /* Six unchanged lines (4..9) between the changes: one hunk. */
        CHECK_DIFF(dir, a, b6,
                   "@@ -1,13 +1,13 @@\n 1\n 2\n-3\n+3 changed\n 4\n 5\n 6\n 7\n 8\n 9\n"
                   "-10\n+10 changed\n 11\n 12\n 13\n");
        /* Seven (4..10): two hunks. */
        CHECK_DIFF(dir, a, b7,
                   "@@ -1,6 +1,6 @@\n 1\n 2\n-3\n+3 changed\n 4\n 5\n 6\n"
                   "@@ -8,7 +8,7 @@\n 8\n 9\n 10\n-11\n+11 changed\n 12\n 13\n 14\n");
        /* Three hunks, the middle one with two changes close together. */
        _cleanup_free_ char *big = seq(40, 0), *b3 = seq(40, 2, 15, 18, 38, 0);
        CHECK_DIFF(dir, big, b3,
                   "@@ -1,5 +1,5 @@\n 1\n-2\n+2 changed\n 3\n 4\n 5\n"
                   "@@ -12,10 +12,10 @@\n 12\n 13\n 14\n-15\n+15 changed\n 16\n 17\n-18\n+18 changed\n"
                   " 19\n 20\n 21\n"
                   "@@ -35,6 +35,6 @@\n 35\n 36\n 37\n-38\n+38 changed\n 39\n 40\n");
}

static void test_no_newline(void **state) {
        const char *dir = *state;
        CHECK_DIFF(dir, "1\n2\n3\n", "1\n2\n3", "@@ -1,3 +1,3 @@\n 1\n 2\n-3\n+3\n" NO_NEWLINE "\n");
        CHECK_DIFF(dir, "1\n2\n3", "1\n2\n3\n", "@@ -1,3 +1,3 @@\n 1\n 2\n-3\n" NO_NEWLINE "\n+3\n");
        CHECK_DIFF(dir, "1\nx", "1\ny", "@@ -1,2 +1,2 @@\n 1\n-x\n" NO_NEWLINE "\n+y\n" NO_NEWLINE "\n");
        /* Unchanged last line without a newline, as context. */
        CHECK_DIFF(dir, "1\n2\n3", "x\n2\n3", "@@ -1,3 +1,3 @@\n-1\n+x\n 2\n 3\n" NO_NEWLINE "\n");
        /* ... and out of reach of the context: no marker. */
        CHECK_DIFF(dir, "1\n2\n3\n4\n5\n6", "x\n2\n3\n4\n5\n6", "@@ -1,4 +1,4 @@\n-1\n+x\n 2\n 3\n 4\n");
        /* A line appended after a last line that had no newline. */
        CHECK_DIFF(dir, "1\n2", "1\n2\n3\n", "@@ -1,2 +1,3 @@\n 1\n-2\n" NO_NEWLINE "\n+2\n+3\n");
}

/* ---- random small files ---------------------------------------------------------- */

static uint64_t rnd(uint64_t *s) {
        /* splitmix64 */
        uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static const char *const words[] = { "a", "b", "c", "" };

static void random_line(uint64_t *s, FILE *f) {
        assert_true(fputs(words[rnd(s) % ELEMENTSOF(words)], f) >= 0);
        assert_int_equal(fputc('\n', f), '\n');
}

/* Either independent texts of up to 8 lines, or a text of up to 40 lines and
 * a few random edits of it (which gives runs of equal lines, so several
 * hunks); either side loses its final newline now and then. */
static void random_pair(uint64_t *s, char **ret_a, size_t *ret_an, char **ret_b, size_t *ret_bn) {
        char *a = NULL, *b = NULL;
        size_t an = 0, bn = 0;
        FILE *fa = open_memstream(&a, &an), *fb = open_memstream(&b, &bn);
        assert_non_null(fa);
        assert_non_null(fb);
        if (rnd(s) % 2) {
                for (uint64_t i = 0, n = rnd(s) % 9; i < n; i++)
                        random_line(s, fa);
                for (uint64_t i = 0, n = rnd(s) % 9; i < n; i++)
                        random_line(s, fb);
        } else {
                for (uint64_t i = 0, n = rnd(s) % 41; i < n; i++) {
                        const char *w = words[rnd(s) % ELEMENTSOF(words)];
                        assert_true(fprintf(fa, "%s\n", w) >= 0);
                        switch (rnd(s) % 12) {
                        case 0: /* deleted */
                                break;
                        case 1: /* replaced */
                                random_line(s, fb);
                                break;
                        case 2: /* something inserted */
                                random_line(s, fb);
                                assert_true(fprintf(fb, "%s\n", w) >= 0);
                                break;
                        default:
                                assert_true(fprintf(fb, "%s\n", w) >= 0);
                        }
                }
        }
        assert_int_equal(fclose(fa), 0);
        assert_int_equal(fclose(fb), 0);
        if (an > 0 && rnd(s) % 5 == 0)
                a[--an] = '\0';
        if (bn > 0 && rnd(s) % 5 == 0)
                b[--bn] = '\0';
        *ret_a = a, *ret_an = an, *ret_b = b, *ret_bn = bn;
}

static char *read_all(const char *path, size_t *ret_size) {
        char *out = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&out, &size);
        assert_non_null(m);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        char chunk[4096];
        for (;;) {
                size_t n = fread(chunk, 1, sizeof(chunk), f);
                if (n == 0)
                        break;
                assert_int_equal(fwrite(chunk, 1, n, m), n);
        }
        assert_false(ferror(f));
        assert_int_equal(fclose(f), 0);
        assert_int_equal(fclose(m), 0);
        *ret_size = size;
        return out;
}

/* GNU patch applies diff (with our headers put back) to dir/a, which
 * diff_gnu() wrote, without fuzz; the result must be b. */
static void check_patch(const char *dir, const char *diff, const char *b, size_t b_size) {
        _cleanup_free_ char *pp = NULL, *po = NULL, *pa = NULL, *text = NULL, *cmd = NULL, *got = NULL;
        assert_true(asprintf(&pp, "%s/p", dir) > 0);
        assert_true(asprintf(&po, "%s/out", dir) > 0);
        assert_true(asprintf(&pa, "%s/a", dir) > 0);
        assert_true(asprintf(&text, HEADERS "%s", diff) > 0);
        write_file(pp, text, strlen(text));
        (void) unlink(po);
        assert_true(asprintf(&cmd,
                             "/usr/bin/patch --batch --silent --fuzz=0 --no-backup-if-mismatch "
                             "--reject-file=- -o '%s' '%s' < '%s'",
                             po, pa, pp) > 0);
        int st = system(cmd);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        size_t size;
        got = read_all(po, &size);
        assert_int_equal(size, b_size);
        assert_memory_equal(got, b, b_size);
}

/* Our LCS takes the first of several equally long alignments (it matches
 * equal lines as early as it can, and deletes before it adds), where GNU
 * diff's Myers search and its boundary shifting may take another: with this
 * tiny alphabet about a quarter of the cases differ from GNU's text, each
 * as short. So random cases check what a diff must guarantee instead: it is
 * minimal (against an LCS computed here), hunks are well formed and apply to
 * a giving b (the applier above, and GNU patch without fuzz). GNU diff's own
 * output must pass the same applier with the same count, which checks the
 * checker. */
static void test_random(void **state) {
        const char *dir = *state;
        uint64_t seed = UINT64_C(0x6c61796572640001);
        unsigned exact = 0;
        for (unsigned iter = 0; iter < 400; iter++) {
                _cleanup_free_ char *a = NULL, *b = NULL;
                size_t an, bn;
                random_pair(&seed, &a, &an, &b, &bn);
                bool same = an == bn && memcmp(a, b, an) == 0;
                int r = -1, st = -1;
                _cleanup_free_ char *ours = diff_ours(a, an, b, bn, &r);
                _cleanup_free_ char *gnu = diff_gnu(dir, a, an, b, bn, &st);
                assert_int_equal(r, same ? 0 : 1);
                assert_int_equal(st, same ? 0 : 1);
                if (same) {
                        assert_string_equal(ours, "");
                        continue;
                }

                size_t n, m;
                _cleanup_free_ struct tline *al = tsplit(a, an, &n);
                _cleanup_free_ struct tline *bl = tsplit(b, bn, &m);
                size_t changes = apply_hunks(a, an, b, bn, ours);
                assert_int_equal(changes, n + m - 2 * lcs_len(al, n, bl, m));
                assert_int_equal(apply_hunks(a, an, b, bn, gnu), changes);
                check_patch(dir, ours, b, bn);
                exact += strcmp(ours, gnu) == 0;
        }
        /* Most cases have one minimal alignment or the same first choice. */
        assert_true(exact >= 200);
}

/* ---- errors and limits --------------------------------------------------------- */

static void test_dev_full(void **state) {
        (void) state;
        FILE *f = fopen("/dev/full", "we");
        assert_non_null(f);
        assert_int_equal(setvbuf(f, NULL, _IONBF, 0), 0);
        assert_int_equal(text_diff_unified("a\n", 2, "b\n", 2, "x", "y", f), -EIO);
        /* Equal texts write nothing, so nothing can fail. */
        assert_int_equal(text_diff_unified("a\n", 2, "a\n", 2, "x", "y", f), 0);
        fclose(f);
}

/* A stream that takes `left` bytes, then fails. */
static ssize_t limited_write(void *cookie, const char *buf, size_t size) {
        (void) buf;
        size_t *left = cookie;
        if (*left == 0) {
                errno = ENOSPC;
                return 0;
        }
        size_t n = size < *left ? size : *left;
        *left -= n;
        return (ssize_t) n;
}

static void test_write_error_anywhere(void **state) {
        (void) state;
        /* Context, deletions, additions and both "no newline" markers. */
        const char *a = "1\n2\n3\n4\nx", *b = "1\n2\nnew\n3\n4\ny";
        int r;
        _cleanup_free_ char *full = diff_ours(a, strlen(a), b, strlen(b), &r);
        assert_int_equal(r, 1);
        size_t len = strlen(HEADERS) + strlen(full);
        for (size_t limit = 0; limit <= len; limit++) {
                size_t left = limit;
                FILE *f = fopencookie(&left, "w", (cookie_io_functions_t) { .write = limited_write });
                assert_non_null(f);
                assert_int_equal(setvbuf(f, NULL, _IONBF, 0), 0);
                r = text_diff_unified(a, strlen(a), b, strlen(b), "a/f", "b/f", f);
                fclose(f);
                if (limit < len) {
                        assert_int_equal(r, -EIO);
                        assert_int_equal(left, 0);
                } else {
                        assert_int_equal(r, 1);
                        assert_int_equal(left, 0);
                }
        }
}

/* n lines "line <i>", i from 0, with line `changed` (0-based) altered. */
static char *numbered(size_t n, size_t changed) {
        char *out = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&out, &size);
        assert_non_null(f);
        for (size_t i = 0; i < n; i++)
                assert_true(fprintf(f, i == changed ? "line %zu changed\n" : "line %zu\n", i) > 0);
        assert_int_equal(fclose(f), 0);
        return out;
}

static void test_max_cells(void **state) {
        (void) state;
        int r;
        /* 2048 * 2048 cells for 2047-line files: exactly the limit, a real diff. */
        _cleanup_free_ char *a1 = numbered(2047, SIZE_MAX), *b1 = numbered(2047, 1000);
        _cleanup_free_ char *d1 = diff_ours(a1, strlen(a1), b1, strlen(b1), &r);
        assert_int_equal(r, 1);
        assert_string_equal(d1, "@@ -998,7 +998,7 @@\n line 997\n line 998\n line 999\n-line 1000\n"
                                "+line 1000 changed\n line 1001\n line 1002\n line 1003\n");

        /* One line more on each side is over it: everything is replaced. */
        const size_t n = 2048;
        _cleanup_free_ char *a2 = numbered(n, SIZE_MAX), *b2 = numbered(n, 1000);
        _cleanup_free_ char *d2 = diff_ours(a2, strlen(a2), b2, strlen(b2), &r);
        assert_int_equal(r, 1);
        char *want = NULL;
        size_t want_size = 0;
        FILE *f = open_memstream(&want, &want_size);
        assert_non_null(f);
        fprintf(f, "@@ -1,%zu +1,%zu @@\n", n, n);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "-line %zu\n", i);
        for (size_t i = 0; i < n; i++)
                fprintf(f, i == 1000 ? "+line %zu changed\n" : "+line %zu\n", i);
        assert_int_equal(fclose(f), 0);
        assert_string_equal(d2, want);
        free(want);
        assert_int_equal(apply_hunks(a2, strlen(a2), b2, strlen(b2), d2), 2 * n);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_identical),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_one_line),
                cmocka_unit_test(test_change_start_middle_end),
                cmocka_unit_test(test_insert_delete),
                cmocka_unit_test(test_hunk_merging),
                cmocka_unit_test(test_no_newline),
                cmocka_unit_test(test_random),
                cmocka_unit_test(test_dev_full),
                cmocka_unit_test(test_write_error_anywhere),
                cmocka_unit_test(test_max_cells),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
