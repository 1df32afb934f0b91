/* SPDX-License-Identifier: Apache-2.0 */
/* A client that pulls one image the way containerd does, for the cluster rows
 * of `make bench`: sixteen containerds would not fit on the bench machine
 * beside sixteen layerds, and `ctr content fetch` is what they would do.
 *
 *   cpull PORT REPO TAG NS
 *
 * As containerd's resolver does: HEAD /v2/REPO/manifests/TAG?ns=NS with its
 * Accept header (and the ?ns= it adds for a mirror host) for the digest, GET
 * of the manifest by that digest, then GET /v2/REPO/blobs/DIGEST?ns=NS of the
 * config and the layers it names, three at a time (containerd's default
 * max_concurrent_downloads), each worker on a keep-alive connection of its
 * own, every body byte received (64 KiB recv()s) and counted against the
 * descriptor's size. Digests are not computed: layerd verifies them, and
 * SHA-256 of every node's copy would take the bench machine's two cores from
 * the servers being measured. No retries: a failed blob counts as failed.
 *
 * Prints "RESULT ms=T manifest_ms=M blobs=N bytes=B failed=F" (T from the
 * first connect() to the last byte of the last blob) and exits 0 when every
 * blob came whole; 1 otherwise, with the reasons on stderr; 2 on a usage
 * error. Every receive and send is bounded (IO_TIMEOUT_S). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "client.h"

#define WORKERS 3                        /* containerd's max_concurrent_downloads */
#define BLOBS_MAX 128                    /* descriptors taken from one manifest */
#define MANIFEST_MAX (4 * 1024 * 1024)   /* layerd's own manifest limit */
#define HEAD_MAX (64 * 1024)             /* a response head must fit */
#define RECV_BUF (64 * 1024)
#define ARG_MAX_LEN 512
#define IO_TIMEOUT_S 120
#define ACCEPT "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, " \
               "application/vnd.docker.distribution.manifest.v2+json, " \
               "application/vnd.docker.distribution.manifest.list.v2+json, */*"

struct blob {
        char digest[80];
        uint64_t size;
};

/* One keep-alive connection and what of the next response it has read ahead. */
struct conn {
        int fd;
        size_t have;
        char buf[HEAD_MAX + RECV_BUF + 1];
};

static uint16_t port;
static const char *repo, *ns;
static struct blob blobs[BLOBS_MAX];
static size_t n_blobs;
static atomic_size_t next_blob;
static atomic_uint_fast64_t total_bytes;
static atomic_uint failed;

static void conn_close(struct conn *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->have = 0;
}

static int conn_open(struct conn *c) {
        c->have = 0;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
        int one = 1;
        (void) setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (connect(c->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                conn_close(c);
                return r;
        }
        return 0;
}

/* One request of PATH on C (opened first when it is not). GET: the body into
 * BODY (up to BODY_CAP bytes) or, with BODY NULL, received and dropped, its
 * length in *ret_len. HEAD: no body; the Docker-Content-Digest header into
 * DIGEST (DIGEST_CAP bytes) when DIGEST is given. 0 on a 200 with
 * Content-Length bytes; -EPROTO (and why on stderr) otherwise, and then C is
 * closed. */
static int request(struct conn *c, bool head, const char *path, const char *accept, char *body, size_t body_cap,
                   uint64_t *ret_len, char *digest, size_t digest_cap) {
        char req[2 * ARG_MAX_LEN + 512];
        int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUser-Agent: containerd/cpull\r\n"
                                           "Accept: %s\r\n\r\n", head ? "HEAD" : "GET", path, (unsigned) port, accept);
        int r;
        if (n < 0 || (size_t) n >= sizeof(req))
                return -EINVAL;
        /* A kept-alive connection the server closed meanwhile: one new one, as Go's transport does. */
        for (int attempt = 0;; attempt++) {
                bool fresh = c->fd < 0;
                if (fresh && (r = conn_open(c)) < 0) {
                        fprintf(stderr, "cpull: connect to port %u: %s\n", (unsigned) port, strerror(-r));
                        return r;
                }
                r = client_send_all(c->fd, req, (size_t) n);
                char *end = NULL;
                c->buf[c->have] = '\0';
                while (r == 0 && !(end = strstr(c->buf, "\r\n\r\n"))) {
                        if (c->have >= HEAD_MAX) {
                                r = -E2BIG;
                                break;
                        }
                        ssize_t k = recv(c->fd, c->buf + c->have, HEAD_MAX - c->have, 0);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                r = k < 0 ? -errno : -ECONNRESET;
                                break;
                        }
                        c->have += (size_t) k;
                        c->buf[c->have] = '\0';
                }
                if (r == -ECONNRESET && c->have == 0 && !fresh && attempt == 0) {
                        conn_close(c);
                        continue;
                }
                if (r < 0) {
                        fprintf(stderr, "cpull: %s: no response head: %s\n", path, strerror(-r));
                        conn_close(c);
                        return -EPROTO;
                }
                size_t head_len = (size_t) (end + 4 - c->buf);
                end[2] = '\0'; /* the last header keeps its CRLF, for client_header() */
                int status;
                int64_t want;
                if (!client_head(c->buf, &status, &want) || status != 200 || want < 0) {
                        fprintf(stderr, "cpull: %s: %.*s\n", path, (int) strcspn(c->buf, "\r\n"), c->buf);
                        conn_close(c);
                        return -EPROTO;
                }
                const char *conn_hdr = client_header(c->buf, "connection:");
                bool close_after = conn_hdr && strncasecmp(conn_hdr, "close", 5) == 0;
                if (head) {
                        const char *d = client_header(c->buf, "docker-content-digest:");
                        size_t dl = d ? strcspn(d, " \t\r\n") : 0;
                        if (digest && (dl == 0 || dl >= digest_cap)) {
                                fprintf(stderr, "cpull: %s: no Docker-Content-Digest\n", path);
                                conn_close(c);
                                return -EPROTO;
                        }
                        if (digest) {
                                memcpy(digest, d, dl);
                                digest[dl] = '\0';
                        }
                        memmove(c->buf, c->buf + head_len, c->have - head_len);
                        c->have -= head_len;
                        if (close_after)
                                conn_close(c);
                        *ret_len = 0;
                        return 0;
                }
                if (body && (uint64_t) want > body_cap) {
                        fprintf(stderr, "cpull: %s: %" PRId64 " bytes, more than %zu\n", path, want, body_cap);
                        conn_close(c);
                        return -EPROTO;
                }
                /* What came with the head is body (and perhaps, never here, the next response). */
                uint64_t got = c->have - head_len;
                if (got > (uint64_t) want)
                        got = (uint64_t) want;
                if (body)
                        memcpy(body, c->buf + head_len, got);
                size_t extra = c->have - head_len - got;
                memmove(c->buf, c->buf + head_len + got, extra);
                c->have = extra;
                while (got < (uint64_t) want) {
                        size_t room = RECV_BUF;
                        if ((uint64_t) want - got < room)
                                room = (size_t) ((uint64_t) want - got);
                        ssize_t k = recv(c->fd, body ? body + got : c->buf + c->have, room, 0);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                fprintf(stderr, "cpull: %s: %" PRIu64 " of %" PRId64 " body bytes: %s\n", path, got, want,
                                        k < 0 ? strerror(errno) : "connection closed");
                                conn_close(c);
                                return -EPROTO;
                        }
                        got += (uint64_t) k;
                }
                if (close_after)
                        conn_close(c);
                *ret_len = got;
                return 0;
        }
}

/* The descriptors of an image manifest: every "digest" with the "size" of its
 * own object (mkimage.py's descriptors carry no nested objects). Config first,
 * as the manifest lists it. False when it names none or is an index. */
static bool parse_manifest(const char *m) {
        if (!strstr(m, "\"layers\"")) {
                fprintf(stderr, "cpull: the manifest has no layers (an index?)\n");
                return false;
        }
        for (const char *p = strstr(m, "\"digest\""); p; p = strstr(p + 8, "\"digest\"")) {
                if (n_blobs == BLOBS_MAX)
                        return false;
                const char *q = strchr(p + 8, '"'), *open = p, *close = strchr(p, '}');
                while (open > m && *open != '{')
                        open--;
                if (!q || !close)
                        return false;
                size_t len = strcspn(q + 1, "\"");
                if (len == 0 || len >= sizeof(blobs[0].digest))
                        return false;
                struct blob *b = &blobs[n_blobs];
                memcpy(b->digest, q + 1, len);
                b->digest[len] = '\0';
                const char *s = NULL;
                for (const char *x = open; x && x < close; x = strstr(x + 1, "\"size\""))
                        if (strncmp(x, "\"size\"", 6) == 0)
                                s = x;
                if (!s || s >= close)
                        return false;
                s += 6 + strspn(s + 6, " \t:");
                char digits[21];
                size_t nd = strspn(s, "0123456789");
                if (nd == 0 || nd >= sizeof(digits))
                        return false;
                memcpy(digits, s, nd);
                digits[nd] = '\0';
                if (!client_parse_u64(digits, INT64_MAX, &b->size))
                        return false;
                n_blobs++;
        }
        return n_blobs > 0;
}

static void *worker(void *arg) {
        (void) arg;
        struct conn *c = malloc(sizeof(*c));
        if (!c) {
                atomic_fetch_add(&failed, 1);
                return NULL;
        }
        c->fd = -1;
        c->have = 0;
        for (size_t i; (i = atomic_fetch_add(&next_blob, 1)) < n_blobs;) {
                char path[2 * ARG_MAX_LEN + 128];
                uint64_t len = 0;
                snprintf(path, sizeof(path), "/v2/%s/blobs/%s?ns=%s", repo, blobs[i].digest, ns);
                if (request(c, false, path, "*/*", NULL, 0, &len, NULL, 0) < 0) {
                        atomic_fetch_add(&failed, 1);
                        continue;
                }
                if (len != blobs[i].size) {
                        fprintf(stderr, "cpull: %s: %" PRIu64 " bytes, the manifest says %" PRIu64 "\n", blobs[i].digest,
                                len, blobs[i].size);
                        atomic_fetch_add(&failed, 1);
                }
                atomic_fetch_add(&total_bytes, len);
        }
        conn_close(c);
        free(c);
        return NULL;
}

int main(int argc, char **argv) {
        uint64_t p;
        if (argc != 5 || !client_parse_u64(argv[1], 65535, &p) || p == 0 || strlen(argv[2]) > ARG_MAX_LEN ||
            strlen(argv[3]) > ARG_MAX_LEN || strlen(argv[4]) > ARG_MAX_LEN) {
                fprintf(stderr, "usage: cpull PORT REPO TAG NS\n");
                return 2;
        }
        port = (uint16_t) p;
        repo = argv[2];
        ns = argv[4];
        struct conn *c = malloc(sizeof(*c));
        char *manifest = malloc(MANIFEST_MAX + 1);
        char path[3 * ARG_MAX_LEN + 64], digest[sizeof(blobs[0].digest)];
        uint64_t len = 0, t0 = client_now_ns(), t_manifest = 0;
        bool ok = c && manifest;
        if (!ok)
                fprintf(stderr, "cpull: out of memory\n");
        else {
                c->fd = -1;
                c->have = 0;
                snprintf(path, sizeof(path), "/v2/%s/manifests/%s?ns=%s", repo, argv[3], ns);
                ok = request(c, true, path, ACCEPT, NULL, 0, &len, digest, sizeof(digest)) == 0;
        }
        if (ok) {
                snprintf(path, sizeof(path), "/v2/%s/manifests/%s?ns=%s", repo, digest, ns);
                ok = request(c, false, path, ACCEPT, manifest, MANIFEST_MAX, &len, NULL, 0) == 0;
        }
        if (ok) {
                manifest[len] = '\0';
                t_manifest = client_now_ns();
                ok = parse_manifest(manifest);
                if (!ok)
                        fprintf(stderr, "cpull: cannot read the manifest's descriptors\n");
        }
        if (c)
                conn_close(c); /* each worker has a connection of its own */
        free(c);
        free(manifest);
        if (!ok)
                return 1;
        pthread_t th[WORKERS];
        size_t started = 0;
        for (; started < WORKERS; started++)
                if (pthread_create(&th[started], NULL, worker, NULL) != 0)
                        break;
        if (started == 0) {
                fprintf(stderr, "cpull: no worker thread\n");
                return 1;
        }
        for (size_t i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        uint64_t t1 = client_now_ns();
        unsigned f = atomic_load(&failed);
        printf("RESULT ms=%.1f manifest_ms=%.1f blobs=%zu bytes=%" PRIu64 " failed=%u\n", (double) (t1 - t0) / 1e6,
               (double) (t_manifest - t0) / 1e6, n_blobs, (uint64_t) atomic_load(&total_bytes), f);
        return f ? 1 : 0;
}
