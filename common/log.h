/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One line per event on stderr with the sd-daemon level prefix ("<6>"), so
 * journald and `kubectl logs` both read the level. Filtering by level is the
 * caller's business (agent/ keeps the process-wide threshold); modules never log. */

#include <stdarg.h>
#include <stddef.h>
#include <syslog.h>

#include "common/macro.h"

#define LOG_LINE_MAX 4096

/* Writes "<level>message\n" to fd 2 in one write(2), so lines from threads never
 * interleave; a message longer than LOG_LINE_MAX is cut and ends in "...".
 * Control characters in the message become '?': one event is one line. */
void log_line(int level, const char *fmt, ...) _printf_(2, 3);
void log_linev(int level, const char *fmt, va_list ap) _printf_(2, 0);

/* Copies src into dst (size bytes, NUL included) fit to stand inside a
 * quoted log field (key="value") or a JSON string: printable ASCII is kept,
 * '"' becomes '\'', and '\\', control bytes and bytes outside ASCII become
 * '?'. A src that does not fit is cut and ends in "...". dst may be src.
 * Returns dst. */
char *log_quote(char *dst, size_t size, const char *src);

/* log_quote() of a formatted message: formats into dst, then quotes it in place. */
char *log_quotef(char *dst, size_t size, const char *fmt, ...) _printf_(3, 4);
char *log_vquotef(char *dst, size_t size, const char *fmt, va_list ap) _printf_(3, 0);

/* Maps "emerg".."debug" (syslog names) to a level; returns -EINVAL for anything else. */
int log_level_from_string(const char *s);
