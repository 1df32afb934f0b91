/* SPDX-License-Identifier: Apache-2.0 */
#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

void error_list_init(struct error_list *l, const char *source) {
        l->n = 0;
        l->dropped = 0;
        snprintf(l->source, sizeof(l->source), "%s", source ? source : "");
}

void error_list_add(struct error_list *l, unsigned line, unsigned column, const char *fmt, ...) {
        if (l->n >= ERROR_LIST_MAX) {
                l->dropped++;
                return;
        }
        struct error *e = &l->items[l->n++];
        e->line = line;
        e->column = column;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof(e->message), fmt, ap);
        va_end(ap);
}

size_t error_list_count(const struct error_list *l) {
        return l->n + l->dropped;
}

int error_list_format(const struct error_list *l, size_t i, char *buf, size_t size) {
        if (i >= l->n)
                return -EINVAL;
        const struct error *e = &l->items[i];
        if (e->line > 0)
                return snprintf(buf, size, "%s:%u:%u: %s", l->source, e->line, e->column, e->message);
        return snprintf(buf, size, "%s: %s", l->source, e->message);
}

int error_list_print(const struct error_list *l, FILE *f) {
        char buf[ERROR_SOURCE_MAX + ERROR_MESSAGE_MAX + 32];
        for (size_t i = 0; i < l->n; i++) {
                error_list_format(l, i, buf, sizeof(buf));
                if (fprintf(f, "%s\n", buf) < 0)
                        return -EIO;
        }
        if (l->dropped > 0 && fprintf(f, "%s: %zu more errors not shown\n", l->source, l->dropped) < 0)
                return -EIO;
        return 0;
}

static bool error_before(const struct error *a, const struct error *b) {
        /* Errors without a position sort after all positioned ones. */
        if (a->line == 0 || b->line == 0)
                return a->line != 0 && b->line == 0;
        return a->line < b->line || (a->line == b->line && a->column < b->column);
}

void error_list_sort(struct error_list *l) {
        /* Insertion sort: stable, in place, and n <= ERROR_LIST_MAX. */
        for (size_t i = 1; i < l->n; i++) {
                struct error e = l->items[i];
                size_t j = i;
                for (; j > 0 && error_before(&e, &l->items[j - 1]); j--)
                        l->items[j] = l->items[j - 1];
                l->items[j] = e;
        }
}
