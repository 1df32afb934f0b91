/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/error.c: positions, truncation at every fixed bound,
 * the ERROR_LIST_MAX overflow count, and error_list_print's exact output. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/error.h"

/* Everything error_list_print writes to a memory stream; the caller frees. */
static char *print_to_string(const struct error_list *l, int *ret) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        assert_non_null(f);
        *ret = error_list_print(l, f);
        assert_int_equal(fclose(f), 0);
        assert_non_null(text);
        assert_int_equal(strlen(text), size);
        return text;
}

static void test_init(void **state) {
        (void) state;
        struct error_list l;
        memset(&l, 0x5a, sizeof(l)); /* garbage, as on the stack */
        error_list_init(&l, "spec.yaml");
        assert_string_equal(l.source, "spec.yaml");
        assert_int_equal(l.n, 0);
        assert_int_equal(l.dropped, 0);
        assert_int_equal(error_list_count(&l), 0);

        /* Re-initialising resets a full list. */
        for (int i = 0; i < ERROR_LIST_MAX + 3; i++)
                error_list_add(&l, 1, 1, "e%d", i);
        assert_int_equal(error_list_count(&l), ERROR_LIST_MAX + 3);
        error_list_init(&l, "other.yaml");
        assert_string_equal(l.source, "other.yaml");
        assert_int_equal(l.n, 0);
        assert_int_equal(l.dropped, 0);
        assert_int_equal(error_list_count(&l), 0);

        error_list_init(&l, "");
        assert_string_equal(l.source, "");
}

static void test_init_truncates_source(void **state) {
        (void) state;
        struct error_list l;
        char *src = unit_repeat('s', ERROR_SOURCE_MAX + 44);

        error_list_init(&l, src);
        assert_int_equal(strlen(l.source), ERROR_SOURCE_MAX - 1);
        assert_memory_equal(l.source, src, ERROR_SOURCE_MAX - 1);

        /* Exactly ERROR_SOURCE_MAX-1 bytes fit whole. */
        src[ERROR_SOURCE_MAX - 1] = '\0';
        error_list_init(&l, src);
        assert_string_equal(l.source, src);

        /* One more does not. */
        src[ERROR_SOURCE_MAX - 1] = 't';
        src[ERROR_SOURCE_MAX] = '\0';
        error_list_init(&l, src);
        assert_int_equal(strlen(l.source), ERROR_SOURCE_MAX - 1);
        assert_int_equal(l.source[ERROR_SOURCE_MAX - 2], 's');
        free(src);
}

static void test_add_and_format(void **state) {
        (void) state;
        struct error_list l;
        char buf[128];
        error_list_init(&l, "spec.yaml");

        error_list_add(&l, 3, 7, "bad %s (%d)", "thing", 42);
        assert_int_equal(l.n, 1);
        assert_int_equal(l.items[0].line, 3);
        assert_int_equal(l.items[0].column, 7);
        assert_string_equal(l.items[0].message, "bad thing (42)");
        assert_int_equal(error_list_format(&l, 0, buf, sizeof(buf)), strlen("spec.yaml:3:7: bad thing (42)"));
        assert_string_equal(buf, "spec.yaml:3:7: bad thing (42)");

        error_list_add(&l, 0, 0, "missing key \"%s\"", "registries");
        assert_int_equal(error_list_format(&l, 1, buf, sizeof(buf)), strlen("spec.yaml: missing key \"registries\""));
        assert_string_equal(buf, "spec.yaml: missing key \"registries\"");

        error_list_add(&l, UINT_MAX, UINT_MAX, "far");
        assert_int_equal(error_list_format(&l, 2, buf, sizeof(buf)), strlen("spec.yaml:4294967295:4294967295: far"));
        assert_string_equal(buf, "spec.yaml:4294967295:4294967295: far");

        error_list_add(&l, 1, 1, "%s", "");
        assert_int_equal(error_list_format(&l, 3, buf, sizeof(buf)), strlen("spec.yaml:1:1: "));
        assert_string_equal(buf, "spec.yaml:1:1: ");

        /* Format directives in arguments are not interpreted again. */
        error_list_add(&l, 2, 5, "%s", "100%s %n");
        assert_int_equal(error_list_format(&l, 4, buf, sizeof(buf)), strlen("spec.yaml:2:5: 100%s %n"));
        assert_string_equal(buf, "spec.yaml:2:5: 100%s %n");

        assert_int_equal(l.n, 5);
        assert_int_equal(l.dropped, 0);
        assert_int_equal(error_list_count(&l), 5);

        /* Earlier entries are unchanged by later ones. */
        assert_int_equal(error_list_format(&l, 0, buf, sizeof(buf)), strlen("spec.yaml:3:7: bad thing (42)"));
        assert_string_equal(buf, "spec.yaml:3:7: bad thing (42)");
}

static void test_format_empty_source(void **state) {
        (void) state;
        struct error_list l;
        char buf[64];
        error_list_init(&l, "");
        error_list_add(&l, 2, 3, "x");
        error_list_add(&l, 0, 0, "y");
        assert_int_equal(error_list_format(&l, 0, buf, sizeof(buf)), 7);
        assert_string_equal(buf, ":2:3: x");
        assert_int_equal(error_list_format(&l, 1, buf, sizeof(buf)), 3);
        assert_string_equal(buf, ": y");
}

static void test_format_bad_index(void **state) {
        (void) state;
        struct error_list l;
        char buf[16];
        error_list_init(&l, "f");

        memset(buf, 'X', sizeof(buf));
        assert_int_equal(error_list_format(&l, 0, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(buf[0], 'X');

        error_list_add(&l, 1, 1, "a");
        assert_int_equal(error_list_format(&l, 0, buf, sizeof(buf)), 8);
        assert_int_equal(error_list_format(&l, 1, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(error_list_format(&l, ERROR_LIST_MAX, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(error_list_format(&l, SIZE_MAX, buf, sizeof(buf)), -EINVAL);
        assert_string_equal(buf, "f:1:1: a");
}

static void test_format_truncation(void **state) {
        (void) state;
        struct error_list l;
        char buf[32];
        error_list_init(&l, "spec.yaml");
        error_list_add(&l, 3, 7, "bad thing");

        memset(buf, 'X', sizeof(buf));
        assert_int_equal(error_list_format(&l, 0, buf, 10), 24);
        assert_string_equal(buf, "spec.yaml");
        assert_int_equal(buf[10], 'X');

        memset(buf, 'X', sizeof(buf));
        assert_int_equal(error_list_format(&l, 0, buf, 1), 24);
        assert_int_equal(buf[0], '\0');
        assert_int_equal(buf[1], 'X');

        /* Exactly enough room. */
        memset(buf, 'X', sizeof(buf));
        assert_int_equal(error_list_format(&l, 0, buf, 25), 24);
        assert_string_equal(buf, "spec.yaml:3:7: bad thing");
        assert_int_equal(buf[25], 'X');

        assert_int_equal(error_list_format(&l, 0, NULL, 0), 24);
}

static void test_message_truncation(void **state) {
        (void) state;
        struct error_list l;
        error_list_init(&l, "f");

        char *m = unit_repeat('m', ERROR_MESSAGE_MAX - 1);
        error_list_add(&l, 1, 1, "%s", m);
        assert_string_equal(l.items[0].message, m);
        free(m);

        m = unit_repeat('m', ERROR_MESSAGE_MAX);
        error_list_add(&l, 1, 1, "%s", m);
        assert_int_equal(strlen(l.items[1].message), ERROR_MESSAGE_MAX - 1);
        assert_memory_equal(l.items[1].message, m, ERROR_MESSAGE_MAX - 1);
        free(m);

        /* Truncation through the format, not only through a %s argument. */
        m = unit_repeat('z', 4 * ERROR_MESSAGE_MAX);
        error_list_add(&l, 1, 1, "%d:%s", 12345, m);
        assert_int_equal(strlen(l.items[2].message), ERROR_MESSAGE_MAX - 1);
        assert_memory_equal(l.items[2].message, "12345:zzz", 9);
        assert_int_equal(l.items[2].message[ERROR_MESSAGE_MAX - 2], 'z');
        free(m);

        assert_int_equal(l.n, 3);
        assert_int_equal(l.dropped, 0);
        /* "f:1:1: " + 511 bytes. */
        assert_int_equal(error_list_format(&l, 2, NULL, 0), 7 + ERROR_MESSAGE_MAX - 1);
}

static void test_overflow_counted(void **state) {
        (void) state;
        struct error_list l;
        char buf[64];
        error_list_init(&l, "f");

        for (int i = 0; i < ERROR_LIST_MAX; i++)
                error_list_add(&l, (unsigned) i + 1, 2, "error %d", i);
        assert_int_equal(l.n, ERROR_LIST_MAX);
        assert_int_equal(l.dropped, 0);
        assert_int_equal(error_list_count(&l), ERROR_LIST_MAX);

        error_list_add(&l, 99, 99, "first dropped");
        assert_int_equal(l.n, ERROR_LIST_MAX);
        assert_int_equal(l.dropped, 1);
        assert_int_equal(error_list_count(&l), ERROR_LIST_MAX + 1);

        for (int i = 0; i < 4; i++)
                error_list_add(&l, 99, 99, "dropped %d", i);
        assert_int_equal(l.n, ERROR_LIST_MAX);
        assert_int_equal(l.dropped, 5);
        assert_int_equal(error_list_count(&l), ERROR_LIST_MAX + 5);

        /* The stored errors are the first ones, untouched by the dropped ones. */
        assert_int_equal(error_list_format(&l, ERROR_LIST_MAX - 1, buf, sizeof(buf)), strlen("f:20:2: error 19"));
        assert_string_equal(buf, "f:20:2: error 19");
        assert_int_equal(error_list_format(&l, 0, buf, sizeof(buf)), strlen("f:1:2: error 0"));
        assert_string_equal(buf, "f:1:2: error 0");
        assert_int_equal(error_list_format(&l, ERROR_LIST_MAX, buf, sizeof(buf)), -EINVAL);
}

/* Checks items[i] is line:column with message m. */
#define ITEM(l, i, ln, col, m)                                          \
        do {                                                            \
                assert_int_equal((l)->items[i].line, (ln));             \
                assert_int_equal((l)->items[i].column, (col));          \
                assert_string_equal((l)->items[i].message, (m));        \
        } while (0)

static void test_sort(void **state) {
        (void) state;
        struct error_list l;
        memset(&l, 0, sizeof(l)); /* the whole struct is compared below, padding included */
        error_list_init(&l, "f");
        error_list_add(&l, 3, 1, "c");
        error_list_add(&l, 0, 0, "n1");
        error_list_add(&l, 1, 5, "b");
        error_list_add(&l, 10, 1, "z"); /* 10 after 9: numeric, not textual, order */
        error_list_add(&l, 1, 2, "a");
        error_list_add(&l, 3, 1, "c2");
        error_list_add(&l, 0, 0, "n2");
        error_list_add(&l, 2, 9, "x");
        error_list_add(&l, 9, 1, "y");
        error_list_add(&l, 2, 0, "w"); /* column 0 sorts before column 1 of its line */
        error_list_sort(&l);

        assert_int_equal(l.n, 10);
        assert_int_equal(l.dropped, 0);
        ITEM(&l, 0, 1, 2, "a");
        ITEM(&l, 1, 1, 5, "b");
        ITEM(&l, 2, 2, 0, "w");
        ITEM(&l, 3, 2, 9, "x");
        ITEM(&l, 4, 3, 1, "c");  /* equal positions keep their order */
        ITEM(&l, 5, 3, 1, "c2");
        ITEM(&l, 6, 9, 1, "y");
        ITEM(&l, 7, 10, 1, "z");
        ITEM(&l, 8, 0, 0, "n1"); /* no position: last, in their order */
        ITEM(&l, 9, 0, 0, "n2");

        /* Sorting a sorted list changes nothing. */
        struct error_list copy = l;
        error_list_sort(&l);
        assert_memory_equal(&copy, &l, sizeof(l));
}

static void test_sort_edges(void **state) {
        (void) state;
        struct error_list l;

        error_list_init(&l, "f");
        error_list_sort(&l);
        assert_int_equal(l.n, 0);

        error_list_add(&l, 7, 7, "only");
        error_list_sort(&l);
        assert_int_equal(l.n, 1);
        ITEM(&l, 0, 7, 7, "only");

        /* Only unpositioned errors: order kept. */
        error_list_init(&l, "f");
        error_list_add(&l, 0, 0, "p");
        error_list_add(&l, 0, 0, "q");
        error_list_add(&l, 0, 0, "r");
        error_list_sort(&l);
        ITEM(&l, 0, 0, 0, "p");
        ITEM(&l, 1, 0, 0, "q");
        ITEM(&l, 2, 0, 0, "r");

        /* A full list in reverse order, with dropped errors that stay counted. */
        error_list_init(&l, "f");
        for (int i = ERROR_LIST_MAX; i > 0; i--)
                error_list_add(&l, (unsigned) i, UINT_MAX, "e%d", i);
        error_list_add(&l, 1, 1, "dropped");
        error_list_add(&l, 1, 1, "dropped");
        error_list_sort(&l);
        assert_int_equal(l.n, ERROR_LIST_MAX);
        assert_int_equal(l.dropped, 2);
        char m[16];
        for (int i = 0; i < ERROR_LIST_MAX; i++) {
                snprintf(m, sizeof(m), "e%d", i + 1);
                ITEM(&l, i, (unsigned) i + 1, UINT_MAX, m);
        }

        /* Extreme positions. */
        error_list_init(&l, "f");
        error_list_add(&l, UINT_MAX, UINT_MAX, "last");
        error_list_add(&l, 0, 0, "none");
        error_list_add(&l, 1, 0, "first");
        error_list_add(&l, UINT_MAX, 0, "late");
        error_list_sort(&l);
        ITEM(&l, 0, 1, 0, "first");
        ITEM(&l, 1, UINT_MAX, 0, "late");
        ITEM(&l, 2, UINT_MAX, UINT_MAX, "last");
        ITEM(&l, 3, 0, 0, "none");
}

/* Sorted errors print top to bottom, the dropped line still last. */
static void test_sort_then_print(void **state) {
        (void) state;
        struct error_list l;
        int r = 1;
        error_list_init(&l, "s.yaml");
        error_list_add(&l, 0, 0, "no position");
        error_list_add(&l, 4, 2, "second");
        error_list_add(&l, 2, 8, "first");
        error_list_sort(&l);
        char *out = print_to_string(&l, &r);
        assert_int_equal(r, 0);
        assert_string_equal(out, "s.yaml:2:8: first\ns.yaml:4:2: second\ns.yaml: no position\n");
        free(out);
}

static void test_print(void **state) {
        (void) state;
        struct error_list l;
        int r = 1;
        error_list_init(&l, "spec.yaml");

        char *out = print_to_string(&l, &r);
        assert_int_equal(r, 0);
        assert_string_equal(out, "");
        free(out);

        error_list_add(&l, 3, 7, "bad %s", "thing");
        error_list_add(&l, 0, 0, "missing key");
        error_list_add(&l, 12, 1, "duplicate \"%s\"", "docker.io");
        r = 1;
        out = print_to_string(&l, &r);
        assert_int_equal(r, 0);
        assert_string_equal(out,
                            "spec.yaml:3:7: bad thing\n"
                            "spec.yaml: missing key\n"
                            "spec.yaml:12:1: duplicate \"docker.io\"\n");
        free(out);
}

static void test_print_full_without_dropped(void **state) {
        (void) state;
        struct error_list l;
        char want[2048] = "";
        size_t off = 0;
        int r = 1;
        error_list_init(&l, "f");
        for (int i = 0; i < ERROR_LIST_MAX; i++) {
                error_list_add(&l, (unsigned) i + 1, 1, "e%d", i);
                off += (size_t) snprintf(want + off, sizeof(want) - off, "f:%d:1: e%d\n", i + 1, i);
        }
        char *out = print_to_string(&l, &r);
        assert_int_equal(r, 0);
        assert_string_equal(out, want);
        assert_null(strstr(out, "not shown"));
        free(out);
}

static void test_print_dropped(void **state) {
        (void) state;
        struct error_list l;
        char want[2048] = "";
        size_t off = 0;
        int r = 1;
        error_list_init(&l, "spec.yaml");
        for (int i = 0; i < ERROR_LIST_MAX; i++) {
                error_list_add(&l, (unsigned) i + 1, 1, "e%d", i);
                off += (size_t) snprintf(want + off, sizeof(want) - off, "spec.yaml:%d:1: e%d\n", i + 1, i);
        }

        error_list_add(&l, 50, 1, "never shown");
        char expect[sizeof(want) + 64];
        snprintf(expect, sizeof(expect), "%sspec.yaml: 1 more errors not shown\n", want);
        char *out = print_to_string(&l, &r);
        assert_int_equal(r, 0);
        assert_string_equal(out, expect);
        assert_null(strstr(out, "never shown"));
        free(out);

        for (int i = 0; i < 122; i++)
                error_list_add(&l, 0, 0, "more");
        snprintf(expect, sizeof(expect), "%sspec.yaml: 123 more errors not shown\n", want);
        r = 1;
        out = print_to_string(&l, &r);
        assert_int_equal(r, 0);
        assert_string_equal(out, expect);
        free(out);
}

/* The longest possible line is printed whole: no hidden truncation in print. */
static void test_print_longest_line(void **state) {
        (void) state;
        struct error_list l;
        int r = 1;
        char *src = unit_repeat('s', ERROR_SOURCE_MAX - 1);
        char *msg = unit_repeat('m', ERROR_MESSAGE_MAX - 1);
        error_list_init(&l, src);
        error_list_add(&l, UINT_MAX, UINT_MAX, "%s", msg);

        char *want = NULL;
        assert_true(asprintf(&want, "%s:4294967295:4294967295: %s\n", src, msg) > 0);
        char *out = print_to_string(&l, &r);
        assert_int_equal(r, 0);
        assert_int_equal(strlen(out), (ERROR_SOURCE_MAX - 1) + 1 + 10 + 1 + 10 + 2 + (ERROR_MESSAGE_MAX - 1) + 1);
        assert_string_equal(out, want);
        free(out);
        free(want);
        free(src);
        free(msg);
}

/* A stream that accepts `budget` bytes and then fails every write. */
struct budget {
        size_t budget;
        size_t written;
};

static ssize_t budget_write(void *cookie, const char *data, size_t size) {
        struct budget *b = cookie;
        (void) data;
        if (size > b->budget - b->written) {
                errno = ENOSPC;
                return -1;
        }
        b->written += size;
        return (ssize_t) size;
}

static FILE *budget_open(struct budget *b) {
        FILE *f = fopencookie(b, "w", (cookie_io_functions_t) { .write = budget_write });
        assert_non_null(f);
        /* Unbuffered, so that a failed write surfaces in the fprintf that made it. */
        assert_int_equal(setvbuf(f, NULL, _IONBF, 0), 0);
        return f;
}

static void test_print_write_error(void **state) {
        (void) state;
        struct error_list l;
        int r;
        error_list_init(&l, "f");
        for (int i = 0; i < ERROR_LIST_MAX + 2; i++)
                error_list_add(&l, 1, 1, "e%d", i);
        /* Each stored line is "f:1:1: eN\n"; the twenty of them take 9*10 + 11*10 bytes. */
        const size_t stored_bytes = 10 * 10 + 10 * 11;

        /* The first line fails. */
        struct budget b = { .budget = 0 };
        FILE *f = budget_open(&b);
        r = error_list_print(&l, f);
        assert_true(r == -EIO || r == -ENOSPC);
        fclose(f);

        /* A stored line in the middle fails. */
        b = (struct budget) { .budget = 35 };
        f = budget_open(&b);
        r = error_list_print(&l, f);
        assert_true(r == -EIO || r == -ENOSPC);
        fclose(f);

        /* Every stored line fits; only the "more errors" line fails. */
        b = (struct budget) { .budget = stored_bytes };
        f = budget_open(&b);
        r = error_list_print(&l, f);
        assert_true(r == -EIO || r == -ENOSPC);
        assert_int_equal(b.written, stored_bytes);
        fclose(f);

        /* Without dropped errors there is no later write to report the failure. */
        struct error_list few;
        error_list_init(&few, "f");
        error_list_add(&few, 1, 1, "a");
        error_list_add(&few, 2, 1, "b");
        b = (struct budget) { .budget = 3 };
        f = budget_open(&b);
        r = error_list_print(&few, f);
        assert_true(r == -EIO || r == -ENOSPC);
        fclose(f);
        b = (struct budget) { .budget = strlen("f:1:1: a\n") };
        f = budget_open(&b);
        r = error_list_print(&few, f);
        assert_true(r == -EIO || r == -ENOSPC);
        fclose(f);

        /* With room for everything, the same stream succeeds. */
        b = (struct budget) { .budget = stored_bytes + strlen("f: 2 more errors not shown\n") };
        f = budget_open(&b);
        assert_int_equal(error_list_print(&l, f), 0);
        assert_int_equal(b.written, b.budget);
        assert_int_equal(fclose(f), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_init),
                cmocka_unit_test(test_init_truncates_source),
                cmocka_unit_test(test_add_and_format),
                cmocka_unit_test(test_format_empty_source),
                cmocka_unit_test(test_format_bad_index),
                cmocka_unit_test(test_format_truncation),
                cmocka_unit_test(test_message_truncation),
                cmocka_unit_test(test_overflow_counted),
                cmocka_unit_test(test_sort),
                cmocka_unit_test(test_sort_edges),
                cmocka_unit_test(test_sort_then_print),
                cmocka_unit_test(test_print),
                cmocka_unit_test(test_print_full_without_dropped),
                cmocka_unit_test(test_print_dropped),
                cmocka_unit_test(test_print_longest_line),
                cmocka_unit_test(test_print_write_error),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
