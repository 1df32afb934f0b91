/* SPDX-License-Identifier: Apache-2.0 */
/* The TOML subset of toml.h: a hand-written recursive-descent parser over the
 * whole buffer. Recursion happens only for arrays and inline tables and is
 * bounded by TOML_DEPTH_MAX; tables reached through headers and dotted keys
 * are walked iteratively. The first error ends the parse (TOML documents are
 * small and one precise position helps more than a cascade). */
#include "hostsconfig/toml.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/macro.h"
#include "hostsconfig/toml-internal.h"

#define TOML_NUMBER_MAX 128 /* bytes of a number token; the longest sane float fits many times */

struct parser {
        const char *data;
        size_t size;
        size_t pos;
        unsigned line;     /* of pos, 1-based */
        size_t line_start; /* offset of the first byte of pos's line */
        size_t col_pos;    /* column cache: the column of col_pos on the current line is col */
        unsigned col;
        struct error_list *errors;
        char table[TOML_KEY_PATH_MAX]; /* the current [header]'s key, for messages about keys below it */
};

/* ---- positions and errors ------------------------------------------------------ */

/* Columns count characters: skip UTF-8 continuation bytes. pos only moves
 * forward, so the cache keeps this linear over a long line. */
static unsigned column_here(struct parser *p) {
        if (p->col_pos < p->line_start || p->col_pos > p->pos) {
                p->col_pos = p->line_start;
                p->col = 1;
        }
        for (; p->col_pos < p->pos; p->col_pos++)
                if (((unsigned char) p->data[p->col_pos] & 0xC0) != 0x80)
                        p->col++;
        return p->col;
}

struct mark {
        unsigned line, column;
};

static struct mark mark_here(struct parser *p) {
        return (struct mark) { .line = p->line, .column = column_here(p) };
}

_printf_(3, 4) static int fail_at(struct parser *p, struct mark m, const char *fmt, ...) {
        char msg[ERROR_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        error_list_add(p->errors, m.line, m.column, "%s", msg);
        return -EINVAL;
}

#define fail_here(p, ...) fail_at((p), mark_here(p), __VA_ARGS__)

/* A key path for messages, quoting the parts that are not bare keys, after prefix (NULL or ""). */
static void format_key(char *buf, size_t size, const char *prefix, char *const *parts, size_t n) {
        int r = snprintf(buf, size, "%s", prefix ? prefix : "");
        size_t len = r > 0 ? (size_t) r : 0;
        for (size_t i = 0; i < n && len < size; i++) {
                bool bare = parts[i][0] != '\0' && strspn(parts[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                                     "0123456789_-") == strlen(parts[i]);
                r = snprintf(buf + len, size - len, bare ? "%s%s" : "%s\"%s\"", len > 0 ? "." : "", parts[i]);
                if (r < 0)
                        return;
                len += (size_t) r;
        }
}

/* ---- the document's bytes -------------------------------------------------------- */

/* TOML documents are UTF-8 and hold no control character but tab and line
 * ends (in comments and strings as much as anywhere). Checking once up front
 * lets everything after treat the buffer as clean text. */
static int check_text(struct parser *p) {
        const unsigned char *s = (const unsigned char *) p->data;
        size_t i = 0;
        while (i < p->size) {
                unsigned c = s[i];
                size_t len = 1;
                unsigned cp = c;
                const char *bad = NULL;
                if (c == '\n') {
                        p->line++;
                        p->line_start = i + 1;
                } else if (c == '\r') {
                        if (i + 1 >= p->size || s[i + 1] != '\n')
                                bad = "a carriage return not followed by a line feed";
                } else if (c == '\0')
                        bad = "a NUL byte";
                else if ((c < 0x20 && c != '\t') || c == 0x7F)
                        bad = "a control character";
                else if (c >= 0x80) {
                        if (c >= 0xC2 && c <= 0xDF)
                                len = 2, cp = c & 0x1F;
                        else if (c >= 0xE0 && c <= 0xEF)
                                len = 3, cp = c & 0x0F;
                        else if (c >= 0xF0 && c <= 0xF4)
                                len = 4, cp = c & 0x07;
                        else
                                bad = "invalid UTF-8";
                        if (!bad && i + len > p->size)
                                bad = "invalid UTF-8";
                        for (size_t k = 1; !bad && k < len; k++) {
                                if ((s[i + k] & 0xC0) != 0x80)
                                        bad = "invalid UTF-8";
                                cp = (cp << 6) | (s[i + k] & 0x3F);
                        }
                        /* Overlong forms, surrogates and code points past U+10FFFF. */
                        if (!bad && ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
                                     (cp >= 0xD800 && cp <= 0xDFFF)))
                                bad = "invalid UTF-8";
                }
                if (bad) {
                        p->pos = i;
                        return fail_here(p, "%s in the document", bad);
                }
                i += len;
        }
        p->pos = 0;
        p->line = 1;
        p->line_start = 0;
        p->col_pos = 0;
        p->col = 1;
        return 0;
}

static char peek_at(const struct parser *p, size_t ahead) {
        return p->pos + ahead < p->size ? p->data[p->pos + ahead] : '\0';
}

static char peek(const struct parser *p) {
        return peek_at(p, 0);
}

static bool at_eof(const struct parser *p) {
        return p->pos >= p->size;
}

static bool at_newline(const struct parser *p) {
        /* check_text() guarantees a CR is followed by LF. */
        return peek(p) == '\n' || peek(p) == '\r';
}

static void skip_newline(struct parser *p) {
        p->pos += peek(p) == '\r' ? 2 : 1;
        p->line++;
        p->line_start = p->pos;
}

static void skip_blanks(struct parser *p) {
        while (peek(p) == ' ' || peek(p) == '\t')
                p->pos++;
}

static void skip_comment(struct parser *p) {
        if (peek(p) != '#')
                return;
        while (!at_eof(p) && !at_newline(p))
                p->pos++;
}

/* Blanks, comments and line ends, as arrays allow between their items. */
static void skip_space(struct parser *p) {
        for (;;) {
                skip_blanks(p);
                skip_comment(p);
                if (!at_newline(p))
                        return;
                skip_newline(p);
        }
}

/* What may end a line that holds a header or a key/value pair. */
static int expect_line_end(struct parser *p, const char *after) {
        skip_blanks(p);
        skip_comment(p);
        if (at_eof(p))
                return 0;
        if (!at_newline(p))
                return fail_here(p, "expected the end of the line after %s", after);
        skip_newline(p);
        return 0;
}

/* ---- strings --------------------------------------------------------------------- */

/* Appends to a string being parsed; one longer than TOML_STRING_MAX is refused where it started. */
static int sbuf_add(struct parser *p, struct buf *b, const char *data, size_t n, struct mark start) {
        int r = buf_append(b, data, n);
        if (r == -EFBIG)
                return fail_at(p, start, "a string or key longer than %d bytes", TOML_STRING_MAX);
        return r;
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* One escape sequence of a basic string; pos is at the backslash. */
static int parse_escape(struct parser *p, struct buf *b, struct mark start) {
        struct mark m = mark_here(p);
        char c = peek_at(p, 1);
        const char *simple = NULL;
        switch (c) {
        case 'b': simple = "\b"; break;
        case 't': simple = "\t"; break;
        case 'n': simple = "\n"; break;
        case 'f': simple = "\f"; break;
        case 'r': simple = "\r"; break;
        case '"': simple = "\""; break;
        case '\\': simple = "\\"; break;
        case 'u':
        case 'U':
                break;
        default:
                return fail_at(p, m, "invalid escape sequence in a string (TOML knows \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX)");
        }
        if (simple) {
                p->pos += 2;
                return sbuf_add(p, b, simple, 1, start);
        }
        unsigned digits = c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (unsigned i = 0; i < digits; i++) {
                int v = hex_value(peek_at(p, 2 + i));
                if (v < 0)
                        return fail_at(p, m, "\\%c needs %u hexadecimal digits", c, digits);
                cp = (cp << 4) | (uint32_t) v;
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return fail_at(p, m, "\\%c escape of U+%X, which is not a Unicode scalar value", c, cp);
        if (cp == 0)
                return fail_at(p, m, "a NUL character (\\u0000) in a string is not supported");
        char out[4];
        size_t n;
        if (cp < 0x80)
                out[0] = (char) cp, n = 1;
        else if (cp < 0x800)
                out[0] = (char) (0xC0 | (cp >> 6)), out[1] = (char) (0x80 | (cp & 0x3F)), n = 2;
        else if (cp < 0x10000)
                out[0] = (char) (0xE0 | (cp >> 12)), out[1] = (char) (0x80 | ((cp >> 6) & 0x3F)),
                out[2] = (char) (0x80 | (cp & 0x3F)), n = 3;
        else
                out[0] = (char) (0xF0 | (cp >> 18)), out[1] = (char) (0x80 | ((cp >> 12) & 0x3F)),
                out[2] = (char) (0x80 | ((cp >> 6) & 0x3F)), out[3] = (char) (0x80 | (cp & 0x3F)), n = 4;
        p->pos += 2 + digits;
        return sbuf_add(p, b, out, n, start);
}

/* A string of any of the four kinds; pos is at its first quote. */
static int parse_string(struct parser *p, bool allow_multiline, char **ret) {
        struct mark start = mark_here(p);
        char q = peek(p);
        bool literal = q == '\'';
        bool multi = peek_at(p, 1) == q && peek_at(p, 2) == q;
        struct buf b = BUF_INIT(TOML_STRING_MAX);
        int r = 0;

        if (multi && !allow_multiline)
                return fail_here(p, "a multi-line string cannot be a key");
        p->pos += multi ? 3 : 1;
        /* TOML trims a line end right after the opening delimiter. */
        if (multi && at_newline(p))
                skip_newline(p);
        for (;;) {
                if (at_eof(p)) {
                        r = fail_at(p, start, "unterminated string");
                        goto fail;
                }
                char c = peek(p);
                if (c == q && (!multi || (peek_at(p, 1) == q && peek_at(p, 2) == q))) {
                        size_t run = 1;
                        if (multi) {
                                /* Up to two quotes may stand right before the closing delimiter. */
                                while (run < 5 && peek_at(p, run) == q)
                                        run++;
                                r = sbuf_add(p, &b, p->data + p->pos, run - 3, start);
                                if (r < 0)
                                        goto fail;
                        }
                        p->pos += run;
                        break;
                }
                if (at_newline(p)) {
                        if (!multi) {
                                r = fail_here(p, "unterminated string (a line end inside a one-line string)");
                                goto fail;
                        }
                        skip_newline(p);
                        r = sbuf_add(p, &b, "\n", 1, start);
                } else if (c == '\\' && !literal) {
                        if (multi) {
                                /* A backslash ending a line joins it with the next non-blank text. */
                                size_t save = p->pos++;
                                skip_blanks(p);
                                if (at_newline(p)) {
                                        while (at_newline(p) || peek(p) == ' ' || peek(p) == '\t') {
                                                if (at_newline(p))
                                                        skip_newline(p);
                                                else
                                                        p->pos++;
                                        }
                                        continue;
                                }
                                p->pos = save;
                        }
                        r = parse_escape(p, &b, start);
                } else {
                        r = sbuf_add(p, &b, &c, 1, start);
                        p->pos++;
                }
                if (r < 0)
                        goto fail;
        }
        char *s = buf_take(&b, NULL);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
fail:
        buf_free(&b);
        return r;
}

/* ---- keys ------------------------------------------------------------------------- */

struct key {
        char *parts[TOML_DEPTH_MAX];
        size_t n;
        struct mark mark;
};

static void key_done(struct key *k) {
        for (size_t i = 0; i < k->n; i++)
                free(k->parts[i]);
        k->n = 0;
}

static bool is_bare_key_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* A dotted key; on failure k holds nothing. */
static int parse_key(struct parser *p, struct key *k) {
        int r;
        k->n = 0;
        k->mark = mark_here(p);
        for (;;) {
                char *part = NULL;
                char c = peek(p);
                if (k->n >= TOML_DEPTH_MAX) {
                        key_done(k);
                        return fail_here(p, "a key of more than %d parts", TOML_DEPTH_MAX);
                }
                if (c == '"' || c == '\'') {
                        r = parse_string(p, false, &part);
                        if (r < 0) {
                                key_done(k);
                                return r;
                        }
                } else {
                        size_t start = p->pos;
                        while (is_bare_key_char(peek(p)))
                                p->pos++;
                        if (p->pos == start) {
                                key_done(k);
                                if (at_eof(p) || at_newline(p))
                                        return fail_here(p, "expected a key, found the end of the line");
                                return fail_here(p, "expected a key (bare keys are A-Za-z0-9_-; quote others), found '%c'",
                                                 c);
                        }
                        if (p->pos - start > TOML_STRING_MAX) {
                                key_done(k);
                                return fail_at(p, k->mark, "a key longer than %d bytes", TOML_STRING_MAX);
                        }
                        part = strndup(p->data + start, p->pos - start);
                        if (!part) {
                                key_done(k);
                                return -ENOMEM;
                        }
                }
                k->parts[k->n++] = part;
                skip_blanks(p);
                if (peek(p) != '.')
                        return 0;
                p->pos++;
                skip_blanks(p);
        }
}

/* "key =" and the blanks after it: the start of every key/value pair, at
 * the top level and in an inline table. */
static int parse_key_equals(struct parser *p, struct key *k) {
        int r = parse_key(p, k);
        if (r < 0)
                return r;
        if (peek(p) != '=') {
                key_done(k);
                return fail_here(p, "expected '=' after a key");
        }
        p->pos++;
        skip_blanks(p);
        return 0;
}

/* ---- building the tree ------------------------------------------------------------ */

/* Takes key and *v (on success and failure alike); returns the stored value. */
static int table_add(struct parser *p, struct toml_table *t, char *key, struct toml_value *v, struct mark m,
                     struct toml_value **ret) {
        if (t->n >= TOML_TABLE_KEYS_MAX) {
                free(key);
                toml_value_done(v);
                return fail_at(p, m, "a table with more than %d keys", TOML_TABLE_KEYS_MAX);
        }
        int r = ARRAY_RESERVE(t->pairs, &t->cap, t->n + 1, TOML_SLOTS_MIN, TOML_TABLE_KEYS_MAX);
        if (r < 0) {
                free(key);
                toml_value_done(v);
                return r;
        }
        t->pairs[t->n] = (struct toml_pair) { .key = key, .value = *v };
        v->type = TOML_BOOLEAN;
        *ret = &t->pairs[t->n++].value;
        return 0;
}

static int table_new(struct parser *p, enum toml_table_origin origin, unsigned depth, struct mark m,
                     struct toml_table **ret) {
        if (depth > TOML_DEPTH_MAX)
                return fail_at(p, m, "tables and arrays nested more than %d deep", TOML_DEPTH_MAX);
        struct toml_table *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->origin = origin;
        t->depth = depth;
        *ret = t;
        return 0;
}

/* Adds a new table named key (borrowed) to parent. */
static int table_add_table(struct parser *p, struct toml_table *parent, const char *key,
                           enum toml_table_origin origin, struct mark m, struct toml_table **ret) {
        struct toml_table *t = NULL;
        struct toml_value *stored;
        int r = table_new(p, origin, parent->depth + 1, m, &t);
        if (r < 0)
                return r;
        char *k = strdup(key);
        struct toml_value v = { .type = TOML_TABLE, .line = m.line, .column = m.column, .table = t };
        if (!k) {
                toml_value_done(&v);
                return -ENOMEM;
        }
        r = table_add(p, parent, k, &v, m, &stored);
        if (r < 0)
                return r;
        *ret = t;
        return 0;
}

static const char *origin_phrase(enum toml_table_origin o) {
        switch (o) {
        case TOML_TABLE_HEADER:
                return "by a table header";
        case TOML_TABLE_DOTTED:
                return "by dotted keys";
        case TOML_TABLE_INLINE:
                return "as an inline table";
        default:
                return "implicitly";
        }
}

/* Stores value *v (taken) at the dotted key k below t: the parts before the
 * last may only name tables that dotted keys created (TOML 1.0: dotted keys
 * cannot reach into a table a header or an inline table defined). */
static int table_set(struct parser *p, struct toml_table *t, const char *prefix, struct key *k, struct toml_value *v) {
        char path[TOML_KEY_PATH_MAX];
        int r;
        for (size_t i = 0; i + 1 < k->n; i++) {
                struct toml_pair *pair = toml_table_find(t, k->parts[i]);
                if (!pair) {
                        r = table_add_table(p, t, k->parts[i], TOML_TABLE_DOTTED, k->mark, &t);
                        if (r < 0) {
                                toml_value_done(v);
                                return r;
                        }
                        continue;
                }
                if (pair->value.type != TOML_TABLE || pair->value.table->origin != TOML_TABLE_DOTTED) {
                        format_key(path, sizeof(path), prefix, k->parts, i + 1);
                        toml_value_done(v);
                        if (pair->value.type != TOML_TABLE)
                                return fail_at(p, k->mark, "cannot add keys to %s: it is a %s (line %u)", path,
                                               toml_type_to_string(pair->value.type), pair->value.line);
                        return fail_at(p, k->mark, "cannot add keys to %s with dotted keys: it was defined %s (line %u)",
                                       path, origin_phrase(pair->value.table->origin), pair->value.line);
                }
                t = pair->value.table;
        }
        const char *last = k->parts[k->n - 1];
        struct toml_pair *pair = toml_table_find(t, last);
        if (pair) {
                format_key(path, sizeof(path), prefix, k->parts, k->n);
                toml_value_done(v);
                return fail_at(p, k->mark, "duplicate key %s (first defined at line %u)", path, pair->value.line);
        }
        char *key = strdup(last);
        if (!key) {
                toml_value_done(v);
                return -ENOMEM;
        }
        struct toml_value *stored;
        return table_add(p, t, key, v, k->mark, &stored);
}

/* ---- values ----------------------------------------------------------------------- */

static int parse_value(struct parser *p, unsigned depth, struct toml_value *ret);

static bool is_token_char(char c) {
        return is_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

/* Digits of base with single underscores between them; advances *s. */
static bool scan_digits(const char **s, const char *end, int base, char *out, size_t *out_n) {
        const char *q = *s;
        bool any = false;
        while (q < end) {
                int v = hex_value(*q);
                if (v >= 0 && v < base) {
                        out[(*out_n)++] = *q;
                        any = true;
                        q++;
                } else if (*q == '_' && any && q + 1 < end && hex_value(q[1]) >= 0 && hex_value(q[1]) < base)
                        q++;
                else
                        break;
        }
        *s = q;
        return any;
}

static int parse_number(struct parser *p, struct toml_value *ret) {
        struct mark m = mark_here(p);
        size_t start = p->pos;
        while (is_token_char(peek(p)))
                p->pos++;
        const char *s = p->data + start, *end = p->data + p->pos;
        size_t len = p->pos - start;

        /* 1979-05-27, 07:32:00, 1979-05-27T07:32:00Z: dates and times begin
         * with four digits and '-' or two digits and ':'. */
        size_t digits = 0;
        while (digits < len && s[digits] >= '0' && s[digits] <= '9') /* data has no NUL at its end: no strspn */
                digits++;
        if ((digits == 4 && len >= 5 && s[4] == '-') || (digits == 2 && len >= 3 && s[2] == ':'))
                return fail_at(p, m, "dates and times are not supported (containerd's config has none)");
        if (len > TOML_NUMBER_MAX)
                return fail_at(p, m, "a number longer than %d characters", TOML_NUMBER_MAX);

        char clean[TOML_NUMBER_MAX + 1];
        size_t n = 0;
        const char *q = s;
        bool negative = false, has_sign = false;
        if (*q == '+' || *q == '-') {
                negative = *q == '-';
                has_sign = true;
                clean[n++] = *q++;
        }
        if (end - q == 3 && (memcmp(q, "inf", 3) == 0 || memcmp(q, "nan", 3) == 0)) {
                *ret = (struct toml_value) { .type = TOML_FLOAT, .line = m.line, .column = m.column };
                ret->real = q[0] == 'i' ? (negative ? -INFINITY : INFINITY) : (negative ? -NAN : NAN);
                return 0;
        }
        if (end - q > 2 && q[0] == '0' && (q[1] == 'x' || q[1] == 'o' || q[1] == 'b')) {
                int base = q[1] == 'x' ? 16 : q[1] == 'o' ? 8 : 2;
                if (has_sign)
                        return fail_at(p, m, "a sign is not allowed on a hexadecimal, octal or binary integer");
                q += 2;
                n = 0;
                if (!scan_digits(&q, end, base, clean, &n) || q != end)
                        return fail_at(p, m, "invalid %s integer", base == 16 ? "hexadecimal" : base == 8 ? "octal" : "binary");
                uint64_t u = 0;
                for (size_t i = 0; i < n; i++) {
                        unsigned d = (unsigned) hex_value(clean[i]);
                        if (u > (UINT64_MAX - d) / (unsigned) base)
                                return fail_at(p, m, "integer out of the 64-bit range");
                        u = u * (unsigned) base + d;
                }
                if (u > INT64_MAX)
                        return fail_at(p, m, "integer out of the 64-bit range");
                *ret = (struct toml_value) { .type = TOML_INTEGER, .line = m.line, .column = m.column, .integer = (int64_t) u };
                return 0;
        }

        const char *int_start = q;
        size_t int_n = n;
        if (!scan_digits(&q, end, 10, clean, &n))
                return fail_at(p, m, "invalid value (expected a string, number, boolean, array or inline table)");
        if (n - int_n > 1 && *int_start == '0')
                return fail_at(p, m, "leading zeros are not allowed in a decimal number");
        bool is_float = false;
        if (q < end && *q == '.') {
                clean[n++] = *q++;
                if (!scan_digits(&q, end, 10, clean, &n))
                        return fail_at(p, m, "a float needs digits after its decimal point");
                is_float = true;
        }
        if (q < end && (*q == 'e' || *q == 'E')) {
                clean[n++] = *q++;
                if (q < end && (*q == '+' || *q == '-'))
                        clean[n++] = *q++;
                if (!scan_digits(&q, end, 10, clean, &n))
                        return fail_at(p, m, "a float needs digits in its exponent");
                is_float = true;
        }
        if (q != end)
                return fail_at(p, m, "invalid number");
        clean[n] = '\0';

        *ret = (struct toml_value) { .line = m.line, .column = m.column };
        if (is_float) {
                char *e;
                errno = 0;
                double d = strtod(clean, &e);
                if (*e != '\0' || (errno == ERANGE && isinf(d)))
                        return fail_at(p, m, "float out of range");
                ret->type = TOML_FLOAT;
                ret->real = d;
                return 0;
        }
        uint64_t u = 0;
        for (size_t i = has_sign ? 1 : 0; i < n; i++) {
                unsigned d = (unsigned) (clean[i] - '0');
                if (u > (UINT64_MAX - d) / 10)
                        return fail_at(p, m, "integer out of the 64-bit range");
                u = u * 10 + d;
        }
        if (u > (uint64_t) INT64_MAX + (negative ? 1 : 0))
                return fail_at(p, m, "integer out of the 64-bit range");
        ret->type = TOML_INTEGER;
        ret->integer = negative ? (int64_t) (0 - u) : (int64_t) u;
        return 0;
}

static int parse_array(struct parser *p, unsigned depth, struct toml_value *ret) {
        struct mark m = mark_here(p);
        if (depth > TOML_DEPTH_MAX)
                return fail_at(p, m, "tables and arrays nested more than %d deep", TOML_DEPTH_MAX);
        _cleanup_(toml_array_freep) struct toml_array *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->depth = depth;
        p->pos++; /* [ */
        for (;;) {
                skip_space(p);
                if (peek(p) == ']')
                        break;
                if (at_eof(p))
                        return fail_at(p, m, "unterminated array");
                struct toml_value v;
                int r = parse_value(p, depth + 1, &v);
                if (r < 0)
                        return r;
                r = toml_array_append(a, &v);
                if (r < 0) {
                        toml_value_done(&v);
                        return r;
                }
                skip_space(p);
                if (peek(p) == ',') {
                        p->pos++;
                        continue;
                }
                if (peek(p) == ']')
                        break;
                if (at_eof(p))
                        return fail_at(p, m, "unterminated array");
                return fail_here(p, "expected ',' or ']' in an array");
        }
        p->pos++; /* ] */
        *ret = (struct toml_value) { .type = TOML_ARRAY, .line = m.line, .column = m.column, .array = TAKE_PTR(a) };
        return 0;
}

static int parse_inline_table(struct parser *p, unsigned depth, struct toml_value *ret) {
        struct mark m = mark_here(p);
        _cleanup_(toml_table_freep) struct toml_table *t = NULL;
        int r = table_new(p, TOML_TABLE_DOTTED, depth, m, &t);
        if (r < 0)
                return r;
        p->pos++; /* { */
        skip_blanks(p);
        if (peek(p) == '}')
                p->pos++;
        else
                for (;;) {
                        skip_blanks(p);
                        if (at_eof(p) || at_newline(p))
                                return fail_here(p, "an inline table must close on its line");
                        struct key k;
                        r = parse_key_equals(p, &k);
                        if (r < 0)
                                return r;
                        struct toml_value v;
                        r = parse_value(p, depth + (unsigned) k.n, &v);
                        if (r >= 0)
                                r = table_set(p, t, NULL, &k, &v);
                        key_done(&k);
                        if (r < 0)
                                return r;
                        skip_blanks(p);
                        if (peek(p) == ',') {
                                p->pos++;
                                skip_blanks(p);
                                if (peek(p) == '}')
                                        return fail_here(p, "a trailing comma is not allowed in an inline table");
                                continue;
                        }
                        if (peek(p) == '}') {
                                p->pos++;
                                break;
                        }
                        if (at_eof(p) || at_newline(p))
                                return fail_here(p, "an inline table must close on its line");
                        return fail_here(p, "expected ',' or '}' in an inline table");
                }
        /* Sealed: nothing may add to it or to the tables its dotted keys made. */
        t->origin = TOML_TABLE_INLINE;
        *ret = (struct toml_value) { .type = TOML_TABLE, .line = m.line, .column = m.column, .table = TAKE_PTR(t) };
        return 0;
}

/* depth: the nesting level an array or inline table value would have. */
static int parse_value(struct parser *p, unsigned depth, struct toml_value *ret) {
        struct mark m = mark_here(p);
        char c = peek(p);
        int r;

        switch (c) {
        case '"':
        case '\'': {
                char *s = NULL;
                r = parse_string(p, true, &s);
                if (r < 0)
                        return r;
                *ret = (struct toml_value) { .type = TOML_STRING, .line = m.line, .column = m.column, .string = s };
                return 0;
        }
        case '[':
                return parse_array(p, depth, ret);
        case '{':
                return parse_inline_table(p, depth, ret);
        case 't':
        case 'f': {
                const char *word = c == 't' ? "true" : "false";
                size_t n = strlen(word);
                if (p->size - p->pos >= n && memcmp(p->data + p->pos, word, n) == 0 &&
                    !is_token_char(peek_at(p, n))) {
                        p->pos += n;
                        *ret = (struct toml_value) { .type = TOML_BOOLEAN, .line = m.line, .column = m.column,
                                                     .boolean = c == 't' };
                        return 0;
                }
                break;
        }
        default:
                if ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == 'i' || c == 'n')
                        return parse_number(p, ret);
                break;
        }
        if (at_eof(p) || at_newline(p))
                return fail_here(p, "expected a value, found the end of the line");
        return fail_here(p, "invalid value (expected a string, number, boolean, array or inline table)");
}

/* ---- lines ------------------------------------------------------------------------ */

/* [a.b] or [[a.b]]: the table that the following key/value lines fill. */
static int parse_header(struct parser *p, struct toml_table *root, struct toml_table **current) {
        struct mark m = mark_here(p);
        bool aot = peek_at(p, 1) == '[';
        char path[TOML_KEY_PATH_MAX];
        struct key k;
        int r;

        p->pos += aot ? 2 : 1;
        skip_blanks(p);
        r = parse_key(p, &k);
        if (r < 0)
                return r;
        if (peek(p) != ']' || (aot && peek_at(p, 1) != ']')) {
                key_done(&k);
                return fail_here(p, aot ? "expected ']]' to close an array of tables header" : "expected ']' to close a table header");
        }
        p->pos += aot ? 2 : 1;
        format_key(path, sizeof(path), NULL, k.parts, k.n);

        struct toml_table *t = root;
        for (size_t i = 0; i < k.n; i++) {
                bool last = i + 1 == k.n;
                struct toml_pair *pair = toml_table_find(t, k.parts[i]);
                if (!pair) {
                        if (last && aot) {
                                struct toml_array *a = calloc(1, sizeof(*a));
                                struct toml_value v = { .type = TOML_ARRAY, .line = m.line, .column = m.column, .array = a };
                                struct toml_value *stored;
                                char *key = strdup(k.parts[i]);
                                if (!a || !key) {
                                        free(a);
                                        free(key);
                                        r = -ENOMEM;
                                        goto out;
                                }
                                a->of_tables = true;
                                a->depth = t->depth + 1;
                                r = table_add(p, t, key, &v, m, &stored);
                                if (r < 0)
                                        goto out;
                                pair = &t->pairs[t->n - 1];
                        } else {
                                r = table_add_table(p, t, k.parts[i], last ? TOML_TABLE_HEADER : TOML_TABLE_IMPLICIT, m, &t);
                                if (r < 0)
                                        goto out;
                                continue;
                        }
                }
                struct toml_value *v = &pair->value;
                if (v->type == TOML_TABLE) {
                        struct toml_table *tt = v->table;
                        if (tt->origin == TOML_TABLE_INLINE) {
                                r = fail_at(p, m, "cannot extend %s: it was defined as an inline table (line %u)", path, v->line);
                                goto out;
                        }
                        if (last) {
                                if (aot) {
                                        r = fail_at(p, m, "[[%s]]: it is already a table (line %u)", path, v->line);
                                        goto out;
                                }
                                if (tt->origin != TOML_TABLE_IMPLICIT) {
                                        r = fail_at(p, m, "table [%s] defined twice (first %s, line %u)", path,
                                                    origin_phrase(tt->origin), v->line);
                                        goto out;
                                }
                                tt->origin = TOML_TABLE_HEADER;
                                v->line = m.line;
                                v->column = m.column;
                        }
                        t = tt;
                } else if (v->type == TOML_ARRAY && v->array->of_tables) {
                        if (last && !aot) {
                                r = fail_at(p, m, "table [%s]: it is already an array of tables (line %u)", path, v->line);
                                goto out;
                        }
                        if (last) {
                                struct toml_table *nt = NULL;
                                r = table_new(p, TOML_TABLE_HEADER, v->array->depth + 1, m, &nt);
                                if (r < 0)
                                        goto out;
                                struct toml_value nv = { .type = TOML_TABLE, .line = m.line, .column = m.column, .table = nt };
                                r = toml_array_append(v->array, &nv);
                                if (r < 0) {
                                        toml_value_done(&nv);
                                        goto out;
                                }
                        }
                        /* Headers below an array of tables go into its latest table. */
                        t = v->array->items[v->array->n - 1].table;
                } else {
                        format_key(path, sizeof(path), NULL, k.parts, i + 1);
                        r = fail_at(p, m, "cannot define a table at %s: it is a%s %s (line %u)", path,
                                    v->type == TOML_INTEGER || v->type == TOML_ARRAY ? "n" : "",
                                    toml_type_to_string(v->type), v->line);
                        goto out;
                }
        }
        *current = t;
        snprintf(p->table, sizeof(p->table), "%s", path);
        r = expect_line_end(p, "a table header");
out:
        key_done(&k);
        return r;
}

static int parse_key_value(struct parser *p, struct toml_table *current) {
        struct key k;
        int r = parse_key_equals(p, &k);
        if (r < 0)
                return r;
        struct toml_value v;
        r = parse_value(p, current->depth + (unsigned) k.n, &v);
        if (r >= 0)
                r = table_set(p, current, p->table, &k, &v);
        key_done(&k);
        if (r < 0)
                return r;
        return expect_line_end(p, "a value");
}

int toml_parse(const char *source, const char *data, size_t size, struct toml_table **ret, struct error_list *errors) {
        struct parser p = { .data = data, .size = size, .line = 1, .col = 1, .errors = errors };
        _cleanup_(toml_table_freep) struct toml_table *root = NULL;
        int r;

        error_list_init(errors, source);
        if (size > TOML_FILE_MAX) {
                error_list_add(errors, 0, 0, "larger than %d bytes", TOML_FILE_MAX);
                return -EINVAL;
        }
        r = check_text(&p);
        if (r < 0)
                return r;
        root = calloc(1, sizeof(*root));
        if (!root)
                return -ENOMEM;
        root->origin = TOML_TABLE_HEADER;

        struct toml_table *current = root;
        for (;;) {
                skip_blanks(&p);
                if (at_eof(&p))
                        break;
                char c = peek(&p);
                if (c == '#')
                        skip_comment(&p);
                else if (at_newline(&p))
                        skip_newline(&p);
                else if (c == '[')
                        r = parse_header(&p, root, &current);
                else
                        r = parse_key_value(&p, current);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(root);
        return 0;
}
