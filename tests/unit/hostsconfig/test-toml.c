/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for hostsconfig/toml.c: each item of the subset stated in
 * toml.h, the redefinition rules, errors with their positions, and the caps. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostsconfig/toml.h"

static struct toml_table *parse_ok(const char *text) {
        struct toml_table *t = NULL;
        struct error_list errors;
        int r = toml_parse("t.toml", text, strlen(text), &t, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                fprintf(stderr, "in:\n%s\n", text);
        }
        assert_int_equal(r, 0);
        assert_non_null(t);
        assert_int_equal(errors.n, 0);
        return t;
}

/* Parses text that must fail with one error at line:col whose message holds want. */
static void parse_fails_n(const char *text, size_t size, unsigned line, unsigned col, const char *want) {
        struct toml_table *t = NULL;
        struct error_list errors;
        int r = toml_parse("t.toml", text, size, &t, &errors);
        if (r >= 0 || errors.n != 1 || errors.items[0].line != line || errors.items[0].column != col ||
            !strstr(errors.items[0].message, want)) {
                fprintf(stderr, "input:\n%.*s\nr=%d, want %u:%u \"%s\", got:\n", (int) size, text, r, line, col, want);
                error_list_print(&errors, stderr);
                fail();
        }
        assert_int_equal(r, -EINVAL);
        assert_null(t);
}

static void parse_fails(const char *text, unsigned line, unsigned col, const char *want) {
        parse_fails_n(text, strlen(text), line, col, want);
}

static const struct toml_value *get(const struct toml_table *t, const char *dotted) {
        char buf[256];
        const char *parts[16];
        size_t n = 0;
        snprintf(buf, sizeof(buf), "%s", dotted);
        for (char *s = buf, *save = NULL, *tok; (tok = strtok_r(s, "/", &save)); s = NULL)
                parts[n++] = tok;
        return toml_get_path(t, parts, n);
}

static const char *get_string(const struct toml_table *t, const char *path) {
        const struct toml_value *v = get(t, path);
        assert_non_null(v);
        assert_int_equal(v->type, TOML_STRING);
        return v->string;
}

static int64_t get_int(const struct toml_table *t, const char *path) {
        const struct toml_value *v = get(t, path);
        assert_non_null(v);
        assert_int_equal(v->type, TOML_INTEGER);
        return v->integer;
}

static void test_comments_blank_lines(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("# a comment\n\n   \t\n  # indented comment\r\nkey = 1 # after a value\n\n");
        assert_int_equal(t->n, 1);
        assert_int_equal(get_int(t, "key"), 1);
        assert_int_equal(get(t, "key")->line, 5);
        assert_int_equal(get(t, "key")->column, 7);
        toml_table_free(t);

        t = parse_ok("");
        assert_int_equal(t->n, 0);
        toml_table_free(t);
        t = parse_ok("a = 'x'"); /* no final newline */
        assert_string_equal(get_string(t, "a"), "x");
        toml_table_free(t);
}

static void test_table_headers(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                                        "config_path = \"/etc/containerd/certs.d\"\n"
                                        "[ plugins . 'io.containerd.cri.v1.images' . registry ]\n"
                                        "config_path = '/x'\n"
                                        "[plugins.\"\"]\n"
                                        "empty = true\n"
                                        "[a-b_C.1]\n");
        assert_string_equal(get_string(t, "plugins/io.containerd.grpc.v1.cri/registry/config_path"),
                            "/etc/containerd/certs.d");
        assert_int_equal(get(t, "plugins/io.containerd.grpc.v1.cri/registry/config_path")->line, 2);
        assert_string_equal(get_string(t, "plugins/io.containerd.cri.v1.images/registry/config_path"), "/x");
        const struct toml_value *empty = toml_table_get(toml_table_get(t, "plugins")->table, "");
        assert_non_null(empty);
        assert_true(toml_table_get(empty->table, "empty")->boolean);
        assert_int_equal(get(t, "a-b_C/1")->type, TOML_TABLE);
        /* The table's position is its header's. */
        assert_int_equal(get(t, "plugins/io.containerd.grpc.v1.cri/registry")->line, 1);
        toml_table_free(t);

        /* A parent made implicitly may get its own header later, once. */
        t = parse_ok("[a.b]\nx = 1\n[a]\ny = 2\n");
        assert_int_equal(get_int(t, "a/b/x"), 1);
        assert_int_equal(get_int(t, "a/y"), 2);
        toml_table_free(t);
}

static void test_array_of_tables(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("[[proxy.plugins]]\nname = \"a\"\n[proxy.plugins.opts]\nx = 1\n"
                                        "[[proxy.plugins]]\nname = \"b\"\n");
        const struct toml_value *v = get(t, "proxy/plugins");
        assert_non_null(v);
        assert_int_equal(v->type, TOML_ARRAY);
        assert_true(v->array->of_tables);
        assert_int_equal(v->array->n, 2);
        assert_string_equal(toml_table_get(v->array->items[0].table, "name")->string, "a");
        assert_int_equal(get_int(v->array->items[0].table, "opts/x"), 1);
        assert_string_equal(toml_table_get(v->array->items[1].table, "name")->string, "b");
        assert_null(toml_table_get(v->array->items[1].table, "opts"));
        toml_table_free(t);

        parse_fails("a = [1]\n[[a]]\n", 2, 1, "cannot define a table at a: it is an array");
        parse_fails("[a]\n[[a]]\n", 2, 1, "[[a]]: it is already a table");
        parse_fails("[[a]]\n[a]\n", 2, 1, "already an array of tables");
}

static void test_dotted_keys(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("a.b = 1\na . \"c.d\" . 'e' = 2\n[x]\ny.z = true\n[x.y.w]\nq = 1\n");
        assert_int_equal(get_int(t, "a/b"), 1);
        assert_int_equal(get_int(t, "a/c.d/e"), 2);
        assert_true(get(t, "x/y/z")->boolean);
        assert_int_equal(get_int(t, "x/y/w/q"), 1); /* a header may add a sub-table to a dotted table */
        toml_table_free(t);

        parse_fails("a.b = 1\na.b = 2\n", 2, 1, "duplicate key a.b (first defined at line 1)");
        parse_fails("a = 1\na.b = 2\n", 2, 1, "cannot add keys to a: it is a integer");
        parse_fails("a.b = 1\n[a]\n", 2, 1, "table [a] defined twice (first by dotted keys");
        parse_fails("[x]\na.b = 1\n[x.a]\n", 3, 1, "defined twice");
        /* Dotted keys cannot reach into tables that headers made (TOML 1.0). */
        parse_fails("[a.b.c]\nz = 9\n[a]\nb.c.t = 1\n", 4, 1, "cannot add keys to a.b with dotted keys: it was defined implicitly");
        parse_fails("[a.b]\n[a]\nb.t = 1\n", 3, 1, "it was defined by a table header");
}

static void test_strings(void **state) {
        (void) state;
        struct toml_table *t = parse_ok(
                "basic = \"q\\\" b\\\\ n\\n t\\t b\\b f\\f r\\r u\\u00e9 U\\U0001F600 \\u20AC\"\n"
                "literal = 'C:\\Users\\x \"quoted\"'\n"
                "ml = \"\"\"\nline1\nline2\\\n     joined \\\n\n   too\"\"\"\n"
                "ml_quotes = \"\"\"a \"\"quote\"\" b\"\"\"\"\"\n"
                "mll = '''\n\\no escape\n  kept'''\n"
                "mll_quotes = ''''one'''' \n"
                "crlf = \"\"\"\r\nx\r\ny\"\"\"\r\n"
                "utf8 = \"é€😀\"\n"
                "empty = \"\"\n"
                "empty_literal = ''\n");
        assert_string_equal(get_string(t, "basic"), "q\" b\\ n\n t\t b\b f\f r\r u\xc3\xa9 U\xf0\x9f\x98\x80 \xe2\x82\xac");
        assert_string_equal(get_string(t, "literal"), "C:\\Users\\x \"quoted\"");
        assert_string_equal(get_string(t, "ml"), "line1\nline2joined too");
        assert_string_equal(get_string(t, "ml_quotes"), "a \"\"quote\"\" b\"\"");
        assert_string_equal(get_string(t, "mll"), "\\no escape\n  kept");
        assert_string_equal(get_string(t, "mll_quotes"), "'one'");
        assert_string_equal(get_string(t, "crlf"), "x\ny");
        assert_string_equal(get_string(t, "utf8"), "é€😀");
        assert_string_equal(get_string(t, "empty"), "");
        assert_string_equal(get_string(t, "empty_literal"), "");
        /* Lines count inside multi-line strings. */
        assert_int_equal(get(t, "ml_quotes")->line, 9);
        assert_int_equal(get(t, "utf8")->line, 17);
        toml_table_free(t);

        parse_fails("a = \"x\\qy\"\n", 1, 7, "invalid escape sequence");
        parse_fails("a = \"\\u12\"\n", 1, 6, "\\u needs 4 hexadecimal digits");
        parse_fails("a = \"\\uD800\"\n", 1, 6, "not a Unicode scalar value");
        parse_fails("a = \"\\U00110000\"\n", 1, 6, "not a Unicode scalar value");
        parse_fails("a = \"\\u0000\"\n", 1, 6, "NUL character");
        parse_fails("a = \"abc\nb = 1\n", 1, 9, "unterminated string");
        parse_fails("a = 'abc\n", 1, 9, "unterminated string");
        parse_fails("a = \"\"\"abc\n\n", 1, 5, "unterminated string");
        parse_fails("a = '''abc", 1, 5, "unterminated string");
        parse_fails("\"\"\"k\"\"\" = 1\n", 1, 1, "a multi-line string cannot be a key");
        parse_fails("a = \"\"\"x\"\"\"\"\"\"\n", 1, 14, "expected the end of the line after a value");
}

static void test_integers_floats_booleans(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("a = 42\nb = -17\nc = +3\nd = 1_000_000\ne = 0\nf = -0\n"
                                        "g = 0xdead_BEEF\nh = 0o755\ni = 0b1101\n"
                                        "max = 9223372036854775807\nmin = -9223372036854775808\n"
                                        "p = 0.02\nq = -1.5e3\nr = 6.626e-34\ns = 1E+2\nu = 1_0.2_5\n"
                                        "pinf = inf\nninf = -inf\nnan1 = nan\nnan2 = +nan\n"
                                        "yes = true\nno = false\n");
        assert_int_equal(get_int(t, "a"), 42);
        assert_int_equal(get_int(t, "b"), -17);
        assert_int_equal(get_int(t, "c"), 3);
        assert_int_equal(get_int(t, "d"), 1000000);
        assert_int_equal(get_int(t, "e"), 0);
        assert_int_equal(get_int(t, "f"), 0);
        assert_int_equal(get_int(t, "g"), 0xdeadbeef);
        assert_int_equal(get_int(t, "h"), 0755);
        assert_int_equal(get_int(t, "i"), 13);
        assert_true(get_int(t, "max") == INT64_MAX);
        assert_true(get_int(t, "min") == INT64_MIN);
        assert_int_equal(get(t, "p")->type, TOML_FLOAT);
        assert_true(get(t, "p")->real == 0.02);
        assert_true(get(t, "q")->real == -1500.0);
        assert_true(get(t, "r")->real == 6.626e-34);
        assert_true(get(t, "s")->real == 100.0);
        assert_true(get(t, "u")->real == 10.25);
        assert_true(isinf(get(t, "pinf")->real) && get(t, "pinf")->real > 0);
        assert_true(isinf(get(t, "ninf")->real) && get(t, "ninf")->real < 0);
        assert_true(isnan(get(t, "nan1")->real) && isnan(get(t, "nan2")->real));
        assert_int_equal(get(t, "yes")->type, TOML_BOOLEAN);
        assert_true(get(t, "yes")->boolean);
        assert_false(get(t, "no")->boolean);
        toml_table_free(t);

        /* A number ending the data, with no NUL after it (ASan sees an over-read). */
        static const char *const ends[] = { "a = 1234", "a = 12", "a = 1979-05-27", "a = 0x1F", "a = true" };
        for (size_t i = 0; i < ELEMENTSOF(ends); i++) {
                size_t n = strlen(ends[i]);
                char *exact = malloc(n);
                assert_non_null(exact);
                memcpy(exact, ends[i], n);
                struct error_list errors;
                int r = toml_parse("t.toml", exact, n, &t, &errors);
                assert_int_equal(r, i == 2 ? -EINVAL : 0);
                t = toml_table_free(t);
                free(exact);
        }

        parse_fails("a = 9223372036854775808\n", 1, 5, "out of the 64-bit range");
        parse_fails("a = -9223372036854775809\n", 1, 5, "out of the 64-bit range");
        parse_fails("a = 0x1_0000_0000_0000_0000\n", 1, 5, "out of the 64-bit range");
        parse_fails("a = 012\n", 1, 5, "leading zeros");
        parse_fails("a = 1__0\n", 1, 5, "invalid number");
        parse_fails("a = _1\n", 1, 5, "invalid value");
        parse_fails("a = 1_\n", 1, 5, "invalid number");
        parse_fails("a = -0x10\n", 1, 5, "a sign is not allowed");
        parse_fails("a = 0xg\n", 1, 5, "invalid hexadecimal integer");
        parse_fails("a = 1.\n", 1, 5, "digits after its decimal point");
        parse_fails("a = 1e\n", 1, 5, "digits in its exponent");
        parse_fails("a = .5\n", 1, 5, "invalid value");
        parse_fails("a = 1e999\n", 1, 5, "float out of range");
        parse_fails("a = truex\n", 1, 5, "invalid value");
        parse_fails("a = True\n", 1, 5, "invalid value");
        parse_fails("a = \n", 1, 5, "expected a value, found the end of the line");
}

static void test_datetimes_rejected(void **state) {
        (void) state;
        parse_fails("a = 1979-05-27T07:32:00Z\n", 1, 5, "dates and times are not supported");
        parse_fails("a = 1979-05-27\n", 1, 5, "dates and times are not supported");
        parse_fails("a = 1979-05-27 07:32:00\n", 1, 5, "dates and times are not supported");
        parse_fails("a = 07:32:00\n", 1, 5, "dates and times are not supported");
}

static void test_arrays(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("a = []\n"
                                        "b = [ 1, 2, 3, ]\n"
                                        "c = [\n  \"x\", # first\n  # a whole comment line\n\n  'y',\n]\n"
                                        "d = [[1, 2], [\"mixed\", 1.5, true, [[]]], {k = 'v'}]\n");
        assert_int_equal(get(t, "a")->array->n, 0);
        assert_false(get(t, "a")->array->of_tables);
        const struct toml_array *b = get(t, "b")->array;
        assert_int_equal(b->n, 3);
        assert_int_equal(b->items[2].integer, 3);
        const struct toml_array *c = get(t, "c")->array;
        assert_int_equal(c->n, 2);
        assert_string_equal(c->items[0].string, "x");
        assert_string_equal(c->items[1].string, "y");
        assert_int_equal(c->items[1].line, 7);
        const struct toml_array *d = get(t, "d")->array;
        assert_int_equal(d->n, 3);
        assert_int_equal(d->items[0].array->items[1].integer, 2);
        assert_string_equal(d->items[1].array->items[0].string, "mixed");
        assert_int_equal(d->items[1].array->items[3].array->items[0].array->n, 0);
        assert_string_equal(toml_table_get(d->items[2].table, "k")->string, "v");
        assert_int_equal(get(t, "d")->line, 9);
        toml_table_free(t);

        parse_fails("a = [1 2]\n", 1, 8, "expected ',' or ']' in an array");
        parse_fails("a = [,]\n", 1, 6, "invalid value");
        parse_fails("a = [1,\n2,\n", 1, 5, "unterminated array");
        parse_fails("a = [1] 2\n", 1, 9, "expected the end of the line after a value");
}

static void test_inline_tables(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("auth = { username = \"u\", password = 'p', n.x = 1 }\nempty = {}\n"
                                        "nested = { a = { b = [ { c = 1 } ] } }\n");
        assert_string_equal(get_string(t, "auth/username"), "u");
        assert_string_equal(get_string(t, "auth/password"), "p");
        assert_int_equal(get_int(t, "auth/n/x"), 1);
        assert_int_equal(get(t, "auth")->table->origin, TOML_TABLE_INLINE);
        assert_int_equal(get(t, "empty")->table->n, 0);
        assert_int_equal(get_int(get(t, "nested/a")->table->pairs[0].value.array->items[0].table, "c"), 1);
        toml_table_free(t);

        parse_fails("a = { b = 1, }\n", 1, 14, "a trailing comma is not allowed");
        parse_fails("a = { b = 1,\n c = 2 }\n", 1, 13, "must close on its line");
        parse_fails("a = { b = 1 c = 2 }\n", 1, 13, "expected ',' or '}'");
        parse_fails("a = { b = 1, b = 2 }\n", 1, 14, "duplicate key b");
        /* Sealed once closed. */
        parse_fails("a = { b = 1 }\n[a]\n", 2, 1, "it was defined as an inline table");
        parse_fails("a = { b = 1 }\na.c = 2\n", 2, 1, "cannot add keys to a with dotted keys: it was defined as an inline table");
        parse_fails("a = { b = { c = 1 } }\n[a.b.d]\n", 2, 1, "inline table");
}

static void test_redefinitions(void **state) {
        (void) state;
        parse_fails("a = 1\na = 2\n", 2, 1, "duplicate key a (first defined at line 1)");
        parse_fails("a = 1\n\"a\" = 2\n", 2, 1, "duplicate key a");
        parse_fails("[t]\nx = 1\n[t]\n", 3, 1, "table [t] defined twice (first by a table header, line 1)");
        parse_fails("[t.u]\n[t.u]\n", 2, 1, "table [t.u] defined twice");
        parse_fails("[t]\nu = 1\n[t.u]\n", 3, 1, "cannot define a table at t.u: it is an integer (line 2)");
        parse_fails("[t]\nu = 1\n[t.u.v]\n", 3, 1, "cannot define a table at t.u: it is an integer");
        parse_fails("[t.\"io.x\"]\n[t.'io.x']\n", 2, 1, "table [t.\"io.x\"] defined twice");
        parse_fails("[t]\nx = 1\n[t . x]\n", 3, 1, "it is an integer");
        parse_fails("[t.\"a b\"]\nx.y = 1\nx.y = 2\n", 3, 1, "duplicate key t.\"a b\".x.y (first defined at line 2)");
}

static void test_syntax_errors(void **state) {
        (void) state;
        parse_fails("key\n", 1, 4, "expected '=' after a key");
        parse_fails("= 1\n", 1, 1, "expected a key");
        parse_fails("a.= 1\n", 1, 3, "expected a key");
        parse_fails("a b = 1\n", 1, 3, "expected '=' after a key");
        parse_fails("k/y = 1\n", 1, 2, "expected '=' after a key");
        parse_fails("[a\n", 1, 3, "expected ']' to close a table header");
        parse_fails("[[a]\n", 1, 4, "expected ']]'");
        parse_fails("[]\n", 1, 2, "expected a key");
        parse_fails("[a] b = 1\n", 1, 5, "expected the end of the line after a table header");
        parse_fails("a = 1\n  é = 2\n", 2, 3, "expected a key");
        /* Columns count characters, not bytes. */
        parse_fails("\"é€\" = 1 x\n", 1, 10, "expected the end of the line");
        parse_fails_n("a = 1\nb = \"\0\"\n", 12, 2, 6, "a NUL byte in the document");
        parse_fails("a = 1\rb = 2\n", 1, 6, "a carriage return not followed by a line feed");
        parse_fails("a = \"\x01\"\n", 1, 6, "a control character");
        parse_fails("# \x7f\n", 1, 3, "a control character");
        parse_fails("a = \"\xc3\"\n", 1, 6, "invalid UTF-8");
        parse_fails("a = \"\xc0\xaf\"\n", 1, 6, "invalid UTF-8");      /* overlong */
        parse_fails("a = \"\xed\xa0\x80\"\n", 1, 6, "invalid UTF-8");  /* surrogate */
        parse_fails("a = \"\xf4\x90\x80\x80\"\n", 1, 6, "invalid UTF-8"); /* past U+10FFFF */
}

static void test_caps(void **state) {
        (void) state;
        struct toml_table *t = NULL;
        struct error_list errors;

        /* File size. */
        size_t big = TOML_FILE_MAX + 1;
        char *s = malloc(big);
        assert_non_null(s);
        memset(s, '\n', big);
        assert_int_equal(toml_parse("t.toml", s, big, &t, &errors), -EINVAL);
        assert_int_equal(errors.n, 1);
        assert_non_null(strstr(errors.items[0].message, "larger than"));
        assert_int_equal(toml_parse("t.toml", s, TOML_FILE_MAX, &t, &errors), 0); /* exactly the cap is fine */
        t = toml_table_free(t);

        /* String length. */
        size_t n = (size_t) TOML_STRING_MAX + 1;
        memcpy(s, "a = '", 5);
        memset(s + 5, 'x', n);
        memcpy(s + 5 + n, "'\n", 2);
        parse_fails_n(s, 5 + n + 2, 1, 5, "longer than");
        memcpy(s + 5 + n - 1, "'\n", 2);
        assert_int_equal(toml_parse("t.toml", s, 5 + n + 1, &t, &errors), 0);
        assert_int_equal(strlen(toml_table_get(t, "a")->string), TOML_STRING_MAX);
        t = toml_table_free(t);
        memset(s, 'k', n);
        memcpy(s + n, " = 1\n", 5);
        parse_fails_n(s, n + 5, 1, 1, "a key longer than");

        /* Nesting: arrays, inline tables, headers, dotted keys. */
        size_t len = 0;
        len += (size_t) snprintf(s, 16, "a = ");
        for (int i = 0; i < TOML_DEPTH_MAX; i++)
                s[len++] = '[';
        for (int i = 0; i < TOML_DEPTH_MAX; i++)
                s[len++] = ']';
        s[len++] = '\n';
        assert_int_equal(toml_parse("t.toml", s, len, &t, &errors), 0);
        t = toml_table_free(t);
        len = 4;
        for (int i = 0; i <= TOML_DEPTH_MAX; i++)
                s[len++] = '[';
        parse_fails_n(s, len, 1, 4 + TOML_DEPTH_MAX + 1, "nested more than");
        len = 4;
        for (int i = 0; i <= TOML_DEPTH_MAX; i++)
                len += (size_t) snprintf(s + len, 16, "{a=");
        parse_fails_n(s, len, 1, 5 + 3 * TOML_DEPTH_MAX, "nested more than");
        len = 0;
        s[len++] = '[';
        for (int i = 0; i < TOML_DEPTH_MAX; i++)
                len += (size_t) snprintf(s + len, 16, "%sk", i ? "." : "");
        len += (size_t) snprintf(s + len, 16, "]\n");
        assert_int_equal(toml_parse("t.toml", s, len, &t, &errors), 0);
        t = toml_table_free(t);
        s[len - 2] = '.';
        len += (size_t) snprintf(s + len - 1, 16, "k]\n") - 1;
        parse_fails_n(s, len, 1, 2 + 2 * TOML_DEPTH_MAX, "a key of more than");
        /* Dotted keys in an inline table under a deep header add up. */
        len = 0;
        for (int i = 0; i < TOML_DEPTH_MAX / 2; i++)
                len += (size_t) snprintf(s + len, 16, "%sk", i ? "." : "");
        len += (size_t) snprintf(s + len, 64, " = { ");
        size_t at = len;
        for (int i = 0; i < TOML_DEPTH_MAX / 2 + 1; i++)
                len += (size_t) snprintf(s + len, 16, "%sk", i ? "." : "");
        len += (size_t) snprintf(s + len, 16, " = 1 }\n");
        assert_int_equal(toml_parse("t.toml", s, len, &t, &errors), 0); /* 32 + 32 tables: just fits */
        t = toml_table_free(t);
        len = at;
        for (int i = 0; i < TOML_DEPTH_MAX / 2 + 2; i++)
                len += (size_t) snprintf(s + len, 16, "%sk", i ? "." : "");
        len += (size_t) snprintf(s + len, 16, " = 1 }\n");
        parse_fails_n(s, len, 1, TOML_DEPTH_MAX + 5, "nested more than");

        /* Keys per table. */
        len = 0;
        for (int i = 0; i <= TOML_TABLE_KEYS_MAX; i++)
                len += (size_t) snprintf(s + len, 32, "k%d = 1\n", i);
        parse_fails_n(s, len, TOML_TABLE_KEYS_MAX + 1, 1, "more than");
        free(s);
}

static void test_lookup(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("a = 1\n[b]\nc = 'x'\n");
        const char *path1[] = { "a", "c" };
        assert_null(toml_get_path(t, path1, 2)); /* a is not a table */
        const char *path2[] = { "b", "d" };
        assert_null(toml_get_path(t, path2, 2));
        const char *path3[] = { "b", "c" };
        assert_string_equal(toml_get_path(t, path3, 2)->string, "x");
        assert_null(toml_table_get(NULL, "a"));
        assert_string_equal(toml_type_to_string(TOML_TABLE), "table");
        toml_table_free(t);
        assert_null(toml_table_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_comments_blank_lines),
                cmocka_unit_test(test_table_headers),
                cmocka_unit_test(test_array_of_tables),
                cmocka_unit_test(test_dotted_keys),
                cmocka_unit_test(test_strings),
                cmocka_unit_test(test_integers_floats_booleans),
                cmocka_unit_test(test_datetimes_rejected),
                cmocka_unit_test(test_arrays),
                cmocka_unit_test(test_inline_tables),
                cmocka_unit_test(test_redefinitions),
                cmocka_unit_test(test_syntax_errors),
                cmocka_unit_test(test_caps),
                cmocka_unit_test(test_lookup),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
