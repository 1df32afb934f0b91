/* SPDX-License-Identifier: Apache-2.0 */
#include "common/json.h"

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *p) {
        unsigned char c = p[0];
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range */
        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                if (c == 0xe0)
                        lo = 0xa0;
                else if (c == 0xed)
                        hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                if (c == 0xf0)
                        lo = 0x90;
                else if (c == 0xf4)
                        hi = 0x8f;
        } else
                return 0;
        if (p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if (p[i] < 0x80 || p[i] > 0xbf)
                        return 0;
        return n;
}

void json_write_string(FILE *f, const char *s) {
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20)
                        fprintf(f, "\\u%04x", *p);
                else if (*p < 0x80)
                        fputc(*p, f);
                else {
                        /* A NUL ends the string before any byte past it is read. */
                        size_t n = utf8_sequence(p);
                        if (n == 0) {
                                fputs("\\ufffd", f); /* not UTF-8 (a cut reason, a client's bytes) */
                                p++;
                                continue;
                        }
                        fwrite(p, 1, n, f);
                        p += n;
                        continue;
                }
                p++;
        }
        fputc('"', f);
}
