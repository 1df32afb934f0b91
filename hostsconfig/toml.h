/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A parser for the subset of TOML 1.0 that containerd's config.toml files use
 * (Debian 12 packages no C TOML library). Internal to hostsconfig/; the
 * containerd-config analysis is its only user. It reads the whole document
 * into a small tree and stops at the first error, which carries line:column.
 *
 * The subset, all of it tested in tests/unit/hostsconfig/test-toml.c:
 *  - comments (`#` to the end of the line), blank lines, LF or CRLF line ends;
 *    the document must be UTF-8 without NUL or other control characters
 *    outside strings (tab is fine);
 *  - `[table]` and `[[array.of.tables]]` headers whose key parts are bare
 *    (A-Za-z0-9_-), "basic" or 'literal' quoted, joined by dots with optional
 *    blanks around them: [plugins."io.containerd.grpc.v1.cri".registry];
 *  - `key = value` with the same dotted keys (`a.b = 1` defines table a);
 *  - values: basic strings with TOML escapes (\b \t \n \f \r \" \\ \uXXXX
 *    \UXXXXXXXX), literal strings, multi-line basic strings (a backslash at a
 *    line's end joins lines) and multi-line literal strings; integers (decimal
 *    with `_` between digits, 0x hex, 0o octal, 0b binary; 64-bit signed);
 *    floats (fraction and/or exponent, inf, nan); booleans; arrays (multi-line,
 *    trailing comma, comments inside, nested, mixed types); inline tables
 *    `{ a = 1, b = "x" }` (one line, no trailing comma, sealed once closed);
 *  - TOML's redefinition rules: a key set twice, a table header given twice,
 *    a [header] for a table that dotted keys or an inline table defined, or
 *    dotted keys reaching into a table that a header defined, is an error.
 * Not supported, each a clear error: offset and local date-times, dates and
 * times (containerd's files carry durations as strings: "10s"), and strings or
 * keys containing NUL (\u0000), which a C string cannot hold.
 *
 * Hard caps (errors, never truncation): TOML_FILE_MAX bytes of input,
 * TOML_DEPTH_MAX levels of tables and arrays, TOML_STRING_MAX bytes per string
 * or key, TOML_TABLE_KEYS_MAX keys per table. The parser recurses only into
 * arrays and inline tables, bounded by TOML_DEPTH_MAX, and so does the free.
 * Columns count UTF-8 characters, from 1. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/macro.h"

#define TOML_FILE_MAX (1024 * 1024)
#define TOML_DEPTH_MAX 64
#define TOML_STRING_MAX (64 * 1024)
#define TOML_TABLE_KEYS_MAX 4096

enum toml_type {
        TOML_STRING,
        TOML_INTEGER,
        TOML_FLOAT,
        TOML_BOOLEAN,
        TOML_ARRAY,
        TOML_TABLE,
        _TOML_TYPE_MAX,
};

struct toml_array;
struct toml_table;

struct toml_value {
        enum toml_type type;
        unsigned line;   /* where the value (for a table: its header or first key) starts, 1-based */
        unsigned column;
        union {
                char *string; /* NUL-terminated UTF-8, no NUL inside */
                int64_t integer;
                double real;
                bool boolean;
                struct toml_array *array;
                struct toml_table *table;
        };
};

struct toml_array {
        struct toml_value *items;
        size_t n, cap; /* items used, allocated */
        bool of_tables; /* built by [[header]]s: every item is a TOML_TABLE */
        unsigned depth; /* containers above it; the root table is at 0 */
};

struct toml_pair {
        char *key; /* one key part, unquoted */
        struct toml_value value;
};

enum toml_table_origin {
        TOML_TABLE_IMPLICIT, /* created as a parent of a [header] */
        TOML_TABLE_HEADER,   /* defined by its own [header] or [[header]] */
        TOML_TABLE_DOTTED,   /* created by dotted keys (`a.b = 1`) */
        TOML_TABLE_INLINE,   /* an inline table { ... } */
        _TOML_TABLE_ORIGIN_MAX,
};

struct toml_table {
        struct toml_pair *pairs; /* in the order of the document */
        size_t n, cap;           /* pairs used, allocated */
        enum toml_table_origin origin;
        unsigned depth; /* containers above it; the root table is at 0 */
};

/* Parses size bytes of data as TOML into a tree (caller frees with
 * toml_table_free()); on failure returns -EINVAL (syntax or a cap, with one
 * error at line:column in errors, which is reset with source as its name) or
 * -ENOMEM, and writes nothing to ret. */
int toml_parse(const char *source, const char *data, size_t size, struct toml_table **ret, struct error_list *errors);

/* Frees a tree from toml_parse() and everything in it; accepts NULL, returns NULL. */
struct toml_table *toml_table_free(struct toml_table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct toml_table *, toml_table_free);

/* The value of key directly in t (no dots are interpreted), or NULL. Borrowed from t. */
const struct toml_value *toml_table_get(const struct toml_table *t, const char *key);

/* Follows n key parts from t through nested tables; the value at the end, or
 * NULL when a part is missing or a table is expected where another type is. */
const struct toml_value *toml_get_path(const struct toml_table *t, const char *const *parts, size_t n);

/* The name of a type for messages ("string", "integer", ...). */
const char *toml_type_to_string(enum toml_type type);
