/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Human-readable errors with a source position, collected by parsers so that
 * one run reports every problem in a file (OpenBSD httpd/h2o style
 * "file:line:col: path: message"). Plain data; no allocation. */

#include <stdio.h>

#include "common/macro.h"

#define ERROR_MESSAGE_MAX 512
#define ERROR_SOURCE_MAX 256
#define ERROR_LIST_MAX 20

struct error {
        unsigned line;   /* 1-based; 0 when the error has no position */
        unsigned column; /* 1-based; 0 when the error has no position */
        char message[ERROR_MESSAGE_MAX];
};

struct error_list {
        char source[ERROR_SOURCE_MAX]; /* file name shown in front of each error */
        size_t n;                      /* errors stored in items[] */
        size_t dropped;                /* errors beyond ERROR_LIST_MAX, counted only */
        struct error items[ERROR_LIST_MAX];
};

/* Resets the list and sets the source name (truncated to fit). */
void error_list_init(struct error_list *l, const char *source);

/* Appends an error at line:column (0:0 for none); counts it in dropped when full.
 * The message is truncated to ERROR_MESSAGE_MAX-1 bytes. */
void error_list_add(struct error_list *l, unsigned line, unsigned column, const char *fmt, ...)
        _printf_(4, 5);

/* Orders the stored errors by line and column (stable; errors without a
 * position last), so a file's problems read top to bottom. */
void error_list_sort(struct error_list *l);

/* Total number of errors seen, stored or dropped. */
size_t error_list_count(const struct error_list *l);

/* Formats error i as "source:line:col: message" (or "source: message") into buf;
 * returns the length snprintf would have written, or -EINVAL for a bad index. */
int error_list_format(const struct error_list *l, size_t i, char *buf, size_t size);

/* Writes every stored error, one per line, and a line for dropped ones; returns -errno on a write error. */
int error_list_print(const struct error_list *l, FILE *f);
