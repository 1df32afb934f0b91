/* SPDX-License-Identifier: Apache-2.0 */
/* The admin API's reply parsed for the command line (agent/admin-wire.h). */
#include "agent/admin-wire.h"

#include <errno.h>
#include <string.h>

#include "common/macro.h"
#include "common/parse.h"

/* A decimal number of at most max, the whole of [s, s + n). */
static int parse_number(const char *s, size_t n, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;
        if (n == 0 || n > 20)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                if (v > (max - (uint64_t) (s[i] - '0')) / 10)
                        return -EBADMSG;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

static bool header_is(const char *line, size_t name_len, const char *name) {
        return strlen(name) == name_len && strncasecmp(line, name, name_len) == 0;
}

int admin_reply_parse(const char *data, size_t size, struct admin_reply *ret) {
        const char *end = memmem(data, size < ADMIN_REPLY_HEAD_MAX ? size : ADMIN_REPLY_HEAD_MAX, "\r\n\r\n", 4);
        if (!end)
                return -EBADMSG;
        size_t head_len = (size_t) (end - data) + 2; /* through the last header's CRLF */
        /* "HTTP/1.1 200 OK": the version, a three-digit status, a reason. */
        if (head_len < 14 || (memcmp(data, "HTTP/1.1 ", 9) != 0 && memcmp(data, "HTTP/1.0 ", 9) != 0))
                return -EBADMSG;
        uint64_t status;
        if (parse_number(data + 9, 3, 999, &status) < 0 || status < 100 || (data[12] != ' ' && data[12] != '\r'))
                return -EBADMSG;
        int64_t content_length = -1, exit_status = -1, out_len = -1;
        const char *p = memchr(data, '\n', head_len);
        if (p[-1] != '\r')
                return -EBADMSG;
        p++;
        while (p < data + head_len) {
                const char *eol = memchr(p, '\n', (size_t) (data + head_len - p));
                if (!eol || eol == p || eol[-1] != '\r')
                        return -EBADMSG;
                size_t line_len = (size_t) (eol - 1 - p);
                const char *colon = memchr(p, ':', line_len);
                if (!colon || colon == p)
                        return -EBADMSG;
                size_t name_len = (size_t) (colon - p);
                const char *v = colon + 1, *v_end = eol - 1;
                while (v < v_end && (*v == ' ' || *v == '\t'))
                        v++;
                while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
                        v_end--;
                int64_t *dst = header_is(p, name_len, "Content-Length")     ? &content_length
                               : header_is(p, name_len, ADMIN_EXIT_HEADER)   ? &exit_status
                               : header_is(p, name_len, ADMIN_STDOUT_HEADER) ? &out_len
                                                                             : NULL;
                if (dst) {
                        uint64_t x;
                        if (*dst >= 0 || parse_number(v, (size_t) (v_end - v), dst == &exit_status ? 255 : ADMIN_REPLY_BODY_MAX,
                                                      &x) < 0)
                                return -EBADMSG; /* repeated, or not a number in range */
                        *dst = (int64_t) x;
                }
                p = eol + 1;
        }
        const char *body = end + 4;
        size_t body_len = size - (size_t) (body - data);
        if (body_len > ADMIN_REPLY_BODY_MAX || (content_length >= 0 && (uint64_t) content_length != body_len) ||
            (out_len >= 0 && (uint64_t) out_len > body_len))
                return -EBADMSG;
        size_t o = out_len >= 0 ? (size_t) out_len : body_len;
        *ret = (struct admin_reply) { .status = (unsigned) status, .exit_status = (int) exit_status, .out = body,
                                      .out_len = o, .err = body + o, .err_len = body_len - o };
        return 0;
}

static int append_encoded(struct buf *b, const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '.' || c == '_' || c == '~';
                int r = keep ? buf_append_char(b, (char) c) : buf_printf(b, "%%%c%c", hex[c >> 4], hex[c & 15]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int admin_query_append(struct buf *b, const char *key, const char *value) {
        int r = buf_append_char(b, b->len > 0 && memchr(buf_str(b), '?', b->len) ? '&' : '?');
        if (r >= 0)
                r = append_encoded(b, key);
        if (r >= 0)
                r = buf_append_char(b, '=');
        if (r >= 0)
                r = append_encoded(b, value);
        return r;
}
