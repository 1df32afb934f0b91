/* SPDX-License-Identifier: Apache-2.0 */
/* What the bench's HTTP/1.1 clients (bigread, hload, abuse, cpull) share: a
 * clock, a blocking send, a strict number parser and the few fields of a
 * response head they read. All static inline: each client stays one file that
 * links nothing of layerd's. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* Sends all N bytes at P on the blocking socket FD (no SIGPIPE): 0, or -errno. */
static inline int client_send_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Monotonic time in nanoseconds. */
static inline uint64_t client_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* Monotonic time in microseconds. */
static inline uint64_t client_now_us(void) {
        return client_now_ns() / 1000u;
}

/* Parses S, decimal digits only, into *ret when it is at most MAX; false otherwise. */
static inline bool client_parse_u64(const char *s, uint64_t max, uint64_t *ret) {
        char *end;
        if (!s || *s < '0' || *s > '9')
                return false;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v > max)
                return false;
        *ret = v;
        return true;
}

/* The status of a response head ("HTTP/1.x NNN ..."), or -1 when it does not begin like one. */
static inline int client_head_status(const char *head) {
        if (strncmp(head, "HTTP/1.", 7) != 0 || !head[7] || head[8] != ' ')
                return -1;
        const char *st = head + 9;
        if (st[0] < '1' || st[0] > '5' || st[1] < '0' || st[1] > '9' || st[2] < '0' || st[2] > '9')
                return -1;
        return (st[0] - '0') * 100 + (st[1] - '0') * 10 + (st[2] - '0');
}

/* The value of header NAME (given with its colon: "content-length:") in a
 * NUL-terminated response head of CRLF lines: a pointer into HEAD past the
 * colon and blanks, which runs to the line's CRLF; NULL when absent. */
static inline const char *client_header(const char *head, const char *name) {
        size_t len = strlen(name);
        for (const char *l = strstr(head, "\r\n"); l && l[2] && l[2] != '\r'; l = strstr(l + 2, "\r\n"))
                if (strncasecmp(l + 2, name, len) == 0)
                        return l + 2 + len + strspn(l + 2 + len, " \t");
        return NULL;
}

/* The Content-Length of a response head as client_header() reads it: the
 * value, -1 when there is none, -2 when it is not a number. */
static inline int64_t client_content_length(const char *head);

/* Reads a NUL-terminated response head: its status and Content-Length (-1 when
 * none) into *ret_status and *ret_length; false when it is not a response head,
 * its length is not a number, or it is chunked (no server of the bench chunks
 * what its clients ask for). */
static inline bool client_head(const char *head, int *ret_status, int64_t *ret_length) {
        int status = client_head_status(head);
        int64_t length = client_content_length(head);
        if (status < 0 || length == -2 || client_header(head, "transfer-encoding:"))
                return false;
        *ret_status = status;
        *ret_length = length;
        return true;
}

static inline int64_t client_content_length(const char *head) {
        const char *h = client_header(head, "content-length:");
        if (!h)
                return -1;
        size_t n = strspn(h, "0123456789");
        char digits[20];
        uint64_t v;
        if (n == 0 || n >= sizeof(digits))
                return -2;
        memcpy(digits, h, n);
        digits[n] = '\0';
        return client_parse_u64(digits, INT64_MAX, &v) ? (int64_t) v : -2;
}
