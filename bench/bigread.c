/* SPDX-License-Identifier: Apache-2.0 */
/* A large-buffer HTTP client for the blob throughput rows of `make bench`:
 * one GET over plain HTTP/1.1 to 127.0.0.1, the body received with recv(2)
 * into a 1 MiB buffer and thrown away, so that the client costs as little as
 * possible and the server is what is measured (curl, the other client, hands
 * its body on in 16 KiB pieces).
 *
 *   bigread PORT PATH [BUFFER_KIB]
 *
 * Prints "bytes=N seconds=S mb_s=R last_byte_ms=L" (MB = 10^6 bytes, timed
 * from connect() to the last byte; L: how long the last byte came after all
 * the others, which shows a server holding it back) and exits 0 when the
 * status is 200 and exactly
 * Content-Length body bytes arrived; 1 otherwise, with the reason on stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define BUFFER_KIB_DEFAULT 1024
#define BUFFER_KIB_MAX (64 * 1024)
#define HEADER_MAX (64 * 1024) /* the response head must fit in the buffer's first read(s) */
#define PATH_MAX_LEN 4096

int main(int argc, char **argv) {
        uint64_t port = 0, kib = BUFFER_KIB_DEFAULT;
        if (argc < 3 || argc > 4 || !client_parse_u64(argv[1], 65535, &port) || port == 0 || argv[2][0] != '/' ||
            strlen(argv[2]) > PATH_MAX_LEN || (argc == 4 && (!client_parse_u64(argv[3], BUFFER_KIB_MAX, &kib) || kib < 64))) {
                fprintf(stderr, "usage: bigread PORT PATH [BUFFER_KIB (64..%d, default %d)]\n", BUFFER_KIB_MAX,
                        BUFFER_KIB_DEFAULT);
                return 2;
        }
        size_t cap = (size_t) kib * 1024;
        char *buf = malloc(cap + 1);
        if (!buf) {
                fprintf(stderr, "bigread: out of memory\n");
                return 1;
        }
        char req[PATH_MAX_LEN + 128];
        int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%" PRIu64 "\r\nUser-Agent: bigread\r\n"
                                           "Accept: */*\r\nConnection: close\r\n\r\n", argv[2], port);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                fprintf(stderr, "bigread: socket: %s\n", strerror(errno));
                return 1;
        }
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        uint64_t t0 = client_now_ns();
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                fprintf(stderr, "bigread: connect to port %" PRIu64 ": %s\n", port, strerror(errno));
                return 1;
        }
        int r = client_send_all(fd, req, (size_t) n);
        if (r < 0) {
                fprintf(stderr, "bigread: send: %s\n", strerror(-r));
                return 1;
        }
        /* The head: read until the blank line; whatever follows it is body. */
        size_t have = 0;
        char *end = NULL;
        while (!end) {
                if (have >= HEADER_MAX || have >= cap) {
                        fprintf(stderr, "bigread: response head longer than %d bytes\n", HEADER_MAX);
                        return 1;
                }
                ssize_t k = recv(fd, buf + have, cap - have, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        fprintf(stderr, "bigread: connection ended in the response head\n");
                        return 1;
                }
                have += (size_t) k;
                buf[have] = '\0';
                end = strstr(buf, "\r\n\r\n");
        }
        end[2] = '\0'; /* keep the last header's CRLF for client_content_length() */
        if (strncmp(buf, "HTTP/1.1 200", 12) != 0 && strncmp(buf, "HTTP/1.0 200", 12) != 0) {
                fprintf(stderr, "bigread: %.*s\n", (int) strcspn(buf, "\r\n"), buf);
                return 1;
        }
        int64_t want = client_content_length(buf);
        if (want < 0) {
                fprintf(stderr, "bigread: no Content-Length in the response\n");
                return 1;
        }
        uint64_t got = have - (size_t) (end + 4 - buf);
        uint64_t t_almost = got + 1 >= (uint64_t) want ? client_now_ns() : 0;
        for (;;) {
                ssize_t k = recv(fd, buf, cap, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        fprintf(stderr, "bigread: recv: %s\n", strerror(errno));
                        return 1;
                }
                if (k == 0)
                        break;
                got += (uint64_t) k;
                if (!t_almost && got + 1 >= (uint64_t) want)
                        t_almost = client_now_ns();
                if (got >= (uint64_t) want)
                        break;
        }
        uint64_t t1 = client_now_ns(), dt = t1 - t0;
        close(fd);
        free(buf);
        if (got != (uint64_t) want) {
                fprintf(stderr, "bigread: %" PRIu64 " body bytes, Content-Length %" PRId64 "\n", got, want);
                return 1;
        }
        double s = (double) dt / 1e9;
        printf("bytes=%" PRIu64 " seconds=%.4f mb_s=%.1f last_byte_ms=%.1f\n", got, s, s > 0 ? (double) got / 1e6 / s : 0.0,
               t_almost ? (double) (t1 - t_almost) / 1e6 : 0.0);
        return 0;
}
