/* SPDX-License-Identifier: Apache-2.0 */
#include "common/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void log_linev(int level, const char *fmt, va_list ap) {
        char buf[LOG_LINE_MAX];
        int n = snprintf(buf, sizeof(buf), "<%d>", level & LOG_PRIMASK);
        int m = vsnprintf(buf + n, sizeof(buf) - (size_t) n, fmt, ap);
        size_t len;
        if (m < 0) {
                len = (size_t) n;
        } else if ((size_t) m >= sizeof(buf) - (size_t) n - 1) {
                /* Leave room for "...\n" so a cut line is visible as cut. */
                len = sizeof(buf) - 5;
                memcpy(buf + len, "...", 3);
                len += 3;
        } else {
                len = (size_t) n + (size_t) m;
        }
        /* One event, one line: a control character from anything a peer sent
         * (a newline in a header, say) can never start a forged line. */
        for (size_t i = (size_t) n; i < len; i++)
                if ((unsigned char) buf[i] < 0x20 || buf[i] == 0x7f)
                        buf[i] = '?';
        buf[len++] = '\n';
        /* Best effort: nothing sensible is left to do when stderr is gone. */
        for (size_t off = 0; off < len;) {
                ssize_t w = write(STDERR_FILENO, buf + off, len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        break;
                off += (size_t) w;
        }
}

void log_line(int level, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_linev(level, fmt, ap);
        va_end(ap);
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {
                [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",
                [LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcmp(s, names[i]) == 0)
                        return (int) i;
        return -EINVAL;
}

static char quote_char(char c) {
        if (c == '"')
                return '\''; /* keeps the sense of a quoted word in a reason */
        if (c == '\\' || (unsigned char) c < 0x20 || (unsigned char) c >= 0x7f)
                return '?';
        return c;
}

/* Ends a cut string in "..." so a reader sees it was cut. */
static void mark_cut(char *dst, size_t size) {
        if (size >= 4)
                memcpy(dst + size - 4, "...", 3);
}

char *log_quote(char *dst, size_t size, const char *src) {
        if (size == 0)
                return dst;
        size_t i = 0;
        /* Byte for byte, forward: dst == src is safe. */
        for (; src[i] && i + 1 < size; i++)
                dst[i] = quote_char(src[i]);
        bool cut = src[i] != '\0';
        dst[i] = '\0';
        if (cut)
                mark_cut(dst, size);
        return dst;
}

char *log_vquotef(char *dst, size_t size, const char *fmt, va_list ap) {
        if (size == 0)
                return dst;
        int n = vsnprintf(dst, size, fmt, ap);
        if (n < 0) {
                dst[0] = '\0';
                return dst;
        }
        log_quote(dst, size, dst);
        if ((size_t) n >= size)
                mark_cut(dst, size);
        return dst;
}

char *log_quotef(char *dst, size_t size, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_vquotef(dst, size, fmt, ap);
        va_end(ap);
        return dst;
}
