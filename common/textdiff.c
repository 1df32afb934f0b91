/* SPDX-License-Identifier: Apache-2.0 */
/* A longest-common-subsequence line diff: quadratic, which is right for the
 * few-kilobyte files it is used on, and bounded by TEXTDIFF_MAX_CELLS. */
#include "common/textdiff.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"

struct line {
        const char *s;
        size_t len;     /* without the '\n' */
        bool newline;   /* ended by '\n' */
};

static int split(const char *t, size_t size, struct line **ret, size_t *ret_n) {
        size_t n = 0;
        for (size_t i = 0; i < size; i++)
                n += t[i] == '\n';
        if (size > 0 && t[size - 1] != '\n')
                n++;
        struct line *v = calloc(n ? n : 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        size_t k = 0, start = 0;
        for (size_t i = 0; i <= size && k < n; i++)
                if (i == size || t[i] == '\n') {
                        v[k++] = (struct line) { t + start, i - start, i < size };
                        start = i + 1;
                }
        *ret = v;
        *ret_n = n;
        return 0;
}

static bool line_eq(const struct line *x, const struct line *y) {
        return x->len == y->len && x->newline == y->newline && memcmp(x->s, y->s, x->len) == 0;
}

enum op { OP_SAME, OP_DEL, OP_ADD };

struct edit {
        enum op op;
        size_t ai, bi; /* line index in a (SAME, DEL) and b (SAME, ADD) */
};

static int emit_line(FILE *out, char tag, const struct line *l) {
        if (fprintf(out, "%c%.*s\n", tag, (int) l->len, l->s) < 0)
                return -EIO;
        if (!l->newline && fputs("\\ No newline at end of file\n", out) < 0)
                return -EIO;
        return 0;
}

/* A hunk range as diff -u writes it: the count is left out when it is 1
 * (GNU diff's print_unidiff_number_range), so "@@ -3 +3 @@", never "-3,1". */
static int emit_range(FILE *out, size_t start, size_t len) {
        int r = len == 1 ? fprintf(out, "%zu", start) : fprintf(out, "%zu,%zu", start, len);
        return r < 0 ? -EIO : 0;
}

/* Writes edits [from, to) as one hunk. */
static int emit_hunk(FILE *out, const struct edit *e, size_t from, size_t to, const struct line *a,
                     const struct line *b) {
        size_t a_start = SIZE_MAX, b_start = SIZE_MAX, a_len = 0, b_len = 0;
        for (size_t i = from; i < to; i++) {
                if (e[i].op != OP_ADD) {
                        if (a_start == SIZE_MAX)
                                a_start = e[i].ai;
                        a_len++;
                }
                if (e[i].op != OP_DEL) {
                        if (b_start == SIZE_MAX)
                                b_start = e[i].bi;
                        b_len++;
                }
        }
        /* An empty side is shown at the line before it (diff -u's convention). */
        size_t as = a_len ? a_start + 1 : (e[from].op == OP_ADD ? e[from].ai : 0);
        size_t bs = b_len ? b_start + 1 : (e[from].op == OP_DEL ? e[from].bi : 0);
        if (fputs("@@ -", out) < 0 || emit_range(out, as, a_len) < 0 || fputs(" +", out) < 0 ||
            emit_range(out, bs, b_len) < 0 || fputs(" @@\n", out) < 0)
                return -EIO;
        for (size_t i = from; i < to; i++) {
                int r = e[i].op == OP_SAME ? emit_line(out, ' ', &a[e[i].ai])
                        : e[i].op == OP_DEL ? emit_line(out, '-', &a[e[i].ai])
                                            : emit_line(out, '+', &b[e[i].bi]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int text_diff_unified(const char *ta, size_t a_size, const char *tb, size_t b_size, const char *label_a,
                      const char *label_b, FILE *out) {
        _cleanup_free_ struct line *a = NULL, *b = NULL;
        _cleanup_free_ uint32_t *lcs = NULL;
        _cleanup_free_ struct edit *e = NULL;
        size_t n, m, ne = 0;

        if (a_size == b_size && (a_size == 0 || memcmp(ta, tb, a_size) == 0))
                return 0;
        if (split(ta, a_size, &a, &n) < 0 || split(tb, b_size, &b, &m) < 0)
                return -ENOMEM;
        e = calloc(n + m + 1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        /* lcs[i*(m+1)+j]: length of the LCS of a[i..] and b[j..]. Too big a
         * table means the files have little to share: replace them whole. */
        bool whole = (n + 1) > TEXTDIFF_MAX_CELLS / (m + 1);
        if (!whole) {
                lcs = calloc((n + 1) * (m + 1), sizeof(*lcs));
                if (!lcs)
                        return -ENOMEM;
                for (size_t i = n; i-- > 0;)
                        for (size_t j = m; j-- > 0;) {
                                uint32_t *cell = &lcs[i * (m + 1) + j];
                                if (line_eq(&a[i], &b[j]))
                                        *cell = lcs[(i + 1) * (m + 1) + j + 1] + 1;
                                else {
                                        uint32_t down = lcs[(i + 1) * (m + 1) + j], right = lcs[i * (m + 1) + j + 1];
                                        *cell = down >= right ? down : right;
                                }
                        }
        }
        size_t i = 0, j = 0;
        while (i < n || j < m) {
                if (!whole && i < n && j < m && line_eq(&a[i], &b[j]))
                        e[ne++] = (struct edit) { OP_SAME, i++, j++ };
                else if (i < n && (j == m || whole || lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1]))
                        e[ne++] = (struct edit) { OP_DEL, i++, j };
                else
                        e[ne++] = (struct edit) { OP_ADD, i, j++ };
        }

        if (fprintf(out, "--- %s\n+++ %s\n", label_a, label_b) < 0)
                return -EIO;
        /* Hunks: each change with TEXTDIFF_CONTEXT lines around it; changes
         * closer than twice that share a hunk. */
        size_t k = 0;
        while (k < ne) {
                while (k < ne && e[k].op == OP_SAME)
                        k++;
                if (k == ne)
                        break;
                size_t from = k > TEXTDIFF_CONTEXT ? k - TEXTDIFF_CONTEXT : 0, to = k;
                for (;;) {
                        while (to < ne && e[to].op != OP_SAME)
                                to++;
                        size_t same = 0;
                        while (to + same < ne && e[to + same].op == OP_SAME)
                                same++;
                        if (to + same == ne || same > 2 * TEXTDIFF_CONTEXT) {
                                to += same < TEXTDIFF_CONTEXT ? same : TEXTDIFF_CONTEXT;
                                break;
                        }
                        to += same;
                }
                int r = emit_hunk(out, e, from, to, a, b);
                if (r < 0)
                        return r;
                k = to;
        }
        return 1;
}
