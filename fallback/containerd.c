/* SPDX-License-Identifier: Apache-2.0 */
/* containerd's version, asked of its gRPC socket with libcurl alone: gRPC is
 * HTTP/2 with a 5-byte frame around each protobuf message and the status in
 * trailers (grpc/doc/PROTOCOL-HTTP2.md), and containerd's socket speaks
 * HTTP/2 without TLS or upgrade ("prior knowledge"). The request is
 * VersionService.Version with an empty message; the answer is decoded by
 * hand, since pulling in a protobuf runtime for two string fields would cost
 * more than these lines. */
#include "fallback/containerd.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/macro.h"
#include "fallback/fallback.h"

#define GRPC_FRAME_HEADER 5
#define GRPC_MESSAGE_PREVIEW 96 /* of a grpc-message in a reason */
#define CONTENT_TYPE_PREVIEW 64 /* of a Content-Type, to compare and to quote in a reason */
#define PROTO_GROUP_DEPTH_MAX 8 /* nested groups skipped at most (a deprecated wire type) */
#define VERSION_URL "http://localhost/containerd.services.version.v1.Version/Version"

static void set_reason(char *reason, size_t size, const char *fmt, ...) _printf_(3, 4);
static void set_reason(char *reason, size_t size, const char *fmt, ...) {
        va_list ap;
        if (!reason || size == 0)
                return;
        va_start(ap, fmt);
        /* Reasons end up in key="value" log fields and may quote the peer. */
        log_vquotef(reason, size, fmt, ap);
        va_end(ap);
}

/* ---- protobuf (protobuf.dev/programming-guides/encoding) ----------------------- */

enum wire {
        WIRE_VARINT = 0,
        WIRE_I64 = 1,
        WIRE_LEN = 2,
        WIRE_SGROUP = 3,
        WIRE_EGROUP = 4,
        WIRE_I32 = 5,
};

/* A base-128 varint of at most 10 bytes at *p (advanced); false if truncated or too long. */
static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
        uint64_t v = 0;
        for (unsigned i = 0; i < 10; i++) {
                if (*p >= end)
                        return false;
                uint8_t b = *(*p)++;
                if (i == 9 && b > 1)
                        return false; /* more than 64 bits */
                v |= (uint64_t) (b & 0x7f) << (7 * i);
                if (!(b & 0x80)) {
                        *ret = v;
                        return true;
                }
        }
        return false;
}

/* A tag: field number (1 .. 2^29-1) and wire type. */
static bool tag(const uint8_t **p, const uint8_t *end, uint64_t *ret_field, unsigned *ret_wire) {
        uint64_t t;
        if (!varint(p, end, &t) || (t >> 3) == 0 || (t >> 3) > 0x1fffffff)
                return false;
        *ret_field = t >> 3;
        *ret_wire = (unsigned) (t & 7);
        return true;
}

/* The length of a LEN field at *p (advanced past the length), checked against end. */
static bool length(const uint8_t **p, const uint8_t *end, size_t *ret) {
        uint64_t n;
        if (!varint(p, end, &n) || n > (uint64_t) (end - *p))
                return false;
        *ret = (size_t) n;
        return true;
}

/* Skips the value of a field of the given wire type; a group up to its end tag. */
static bool skip(const uint8_t **p, const uint8_t *end, uint64_t field, unsigned wire, unsigned depth) {
        uint64_t v;
        size_t n;
        switch (wire) {
        case WIRE_VARINT:
                return varint(p, end, &v);
        case WIRE_I64:
        case WIRE_I32:
                n = wire == WIRE_I64 ? 8 : 4;
                if ((size_t) (end - *p) < n)
                        return false;
                *p += n;
                return true;
        case WIRE_LEN:
                if (!length(p, end, &n))
                        return false;
                *p += n;
                return true;
        case WIRE_SGROUP:
                if (depth >= PROTO_GROUP_DEPTH_MAX)
                        return false;
                for (;;) {
                        uint64_t f;
                        unsigned w;
                        if (!tag(p, end, &f, &w))
                                return false;
                        if (w == WIRE_EGROUP)
                                return f == field;
                        if (!skip(p, end, f, w, depth + 1))
                                return false;
                }
        default:
                return false; /* an end-group without its start, or wire types 6 and 7 */
        }
}

static bool version_char_ok(uint8_t c) {
        return c > 0x20 && c < 0x7f && c != '"' && c != '\\';
}

int containerd_version_decode(const void *frame, size_t size, char **ret_version, char *reason, size_t reason_size) {
        const uint8_t *b = frame;
        if (size < GRPC_FRAME_HEADER) {
                set_reason(reason, reason_size, "answer of %zu bytes: no gRPC frame", size);
                return -EPROTO;
        }
        if (b[0] != 0) {
                /* We never offered grpc-accept-encoding: a compressed answer is not ours to read. */
                set_reason(reason, reason_size, "compressed gRPC message (flag %u)", b[0]);
                return -EPROTO;
        }
        uint32_t len = (uint32_t) b[1] << 24 | (uint32_t) b[2] << 16 | (uint32_t) b[3] << 8 | b[4];
        if (len > CONTAINERD_MESSAGE_MAX) {
                set_reason(reason, reason_size, "gRPC message of %" PRIu32 " bytes (at most %u)", len,
                           CONTAINERD_MESSAGE_MAX);
                return -EPROTO;
        }
        if (len != size - GRPC_FRAME_HEADER) {
                set_reason(reason, reason_size, "gRPC frame says %" PRIu32 " bytes, %zu follow", len,
                           size - GRPC_FRAME_HEADER);
                return -EPROTO;
        }
        const uint8_t *p = b + GRPC_FRAME_HEADER, *end = p + len, *version = NULL;
        size_t version_len = 0;
        while (p < end) {
                uint64_t field;
                unsigned wire;
                if (!tag(&p, end, &field, &wire)) {
                        set_reason(reason, reason_size, "malformed protobuf: bad tag at byte %zu", (size_t) (p - b));
                        return -EPROTO;
                }
                if (field != 1) {
                        if (!skip(&p, end, field, wire, 0)) {
                                set_reason(reason, reason_size, "malformed protobuf: field %" PRIu64 " wire type %u",
                                           field, wire);
                                return -EPROTO;
                        }
                        continue;
                }
                if (wire != WIRE_LEN || !length(&p, end, &version_len)) {
                        set_reason(reason, reason_size, "malformed protobuf: version field (wire type %u)", wire);
                        return -EPROTO;
                }
                version = p; /* the last one wins, as protobuf has it for a repeated scalar */
                p += version_len;
        }
        if (!version || version_len == 0) {
                set_reason(reason, reason_size, "no version in the answer");
                return -EPROTO;
        }
        if (version_len > CONTAINERD_VERSION_MAX) {
                set_reason(reason, reason_size, "version of %zu bytes (at most %d)", version_len, CONTAINERD_VERSION_MAX);
                return -EPROTO;
        }
        for (size_t i = 0; i < version_len; i++)
                if (!version_char_ok(version[i])) {
                        set_reason(reason, reason_size, "version with byte 0x%02x", version[i]);
                        return -EPROTO;
                }
        char *v = strndup((const char *) version, version_len);
        if (!v)
                return -ENOMEM;
        *ret_version = v;
        return 0;
}

/* ---- the exchange -------------------------------------------------------------- */

struct answer {
        uint8_t body[GRPC_FRAME_HEADER + CONTAINERD_MESSAGE_MAX];
        size_t len;
        bool too_big;
        bool has_content_type;
        char content_type[CONTENT_TYPE_PREVIEW];
        int grpc_status; /* -1: none seen (headers or trailers) */
        char grpc_message[GRPC_MESSAGE_PREVIEW];
};

/* "Name: value\r\n" -> value (trimmed) into out, when the name matches. */
static bool header_value(const char *line, size_t len, const char *name, char *out, size_t size) {
        size_t n = strlen(name);
        if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
                return false;
        const char *v = line + n + 1, *e = line + len;
        while (v < e && (*v == ' ' || *v == '\t'))
                v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
        size_t l = (size_t) (e - v) < size - 1 ? (size_t) (e - v) : size - 1;
        memcpy(out, v, l);
        out[l] = '\0';
        return true;
}

/* libcurl hands HTTP/2 trailers to the header callback too: grpc-status
 * normally arrives there, after the body. */
static size_t on_header(char *data, size_t size, size_t n, void *userdata) {
        struct answer *a = userdata;
        size_t len = size * n;
        char v[16];
        if (header_value(data, len, "content-type", a->content_type, sizeof(a->content_type)))
                a->has_content_type = true;
        else if (header_value(data, len, "grpc-message", a->grpc_message, sizeof(a->grpc_message)))
                ;
        else if (header_value(data, len, "grpc-status", v, sizeof(v))) {
                char *end = NULL;
                errno = 0;
                long s = strtol(v, &end, 10);
                a->grpc_status = errno == 0 && end != v && *end == '\0' && s >= 0 && s <= 1000 ? (int) s : 1000;
        }
        return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        struct answer *a = userdata;
        size_t len = size * n;
        if (len > sizeof(a->body) - a->len) {
                a->too_big = true;
                return CURL_WRITEFUNC_ERROR;
        }
        memcpy(a->body + a->len, data, len);
        a->len += len;
        return len;
}

static bool is_grpc_content_type(const char *t) {
        /* application/grpc, application/grpc+proto, with parameters or not. */
        size_t n = strlen("application/grpc");
        return strncasecmp(t, "application/grpc", n) == 0 && (t[n] == '\0' || t[n] == '+' || t[n] == ';');
}

/* What a libcurl failure means for the caller. */
static int map_failure(CURL *h, CURLcode c, const char *errbuf, const char *socket_path, char *reason,
                       size_t reason_size) {
        long os_errno = 0;
        const char *what = errbuf[0] ? errbuf : curl_easy_strerror(c);
        curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
        switch (c) {
        case CURLE_COULDNT_CONNECT:
                if (os_errno == ENOENT || os_errno == EACCES || os_errno == EPERM) {
                        set_reason(reason, reason_size, "%s: %s", socket_path, strerror((int) os_errno));
                        return os_errno == ENOENT ? -ENOENT : -EACCES;
                }
                set_reason(reason, reason_size, "%s: connection refused (is containerd running?)", socket_path);
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                set_reason(reason, reason_size, "%s: no answer in time: %s", socket_path, what);
                return -ETIMEDOUT;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_NOT_BUILT_IN:
                set_reason(reason, reason_size, "libcurl cannot speak HTTP/2 over a unix socket: %s", what);
                return -EPROTONOSUPPORT;
        default:
                set_reason(reason, reason_size, "%s: not a gRPC answer: %s", socket_path, what);
                return -EPROTO;
        }
}

int fallback_containerd_version(const char *socket_path, uint64_t timeout_ms, char **ret_version, char *reason,
                                size_t reason_size) {
        static const uint8_t request[GRPC_FRAME_HEADER] = { 0 }; /* uncompressed, empty VersionRequest */
        char errbuf[CURL_ERROR_SIZE] = "";
        struct stat st;
        int r;

        if (!socket_path || !ret_version)
                return -EINVAL;
        if (timeout_ms == 0)
                timeout_ms = FALLBACK_CONTAINERD_TIMEOUT_MS;
        /* Said before libcurl would, and plainer: the usual case on a node without containerd. */
        if (stat(socket_path, &st) < 0) {
                r = -errno;
                set_reason(reason, reason_size, "%s: %s", socket_path, strerror(-r));
                return r;
        }
        if (!S_ISSOCK(st.st_mode)) {
                set_reason(reason, reason_size, "%s: not a socket", socket_path);
                return -ENOTSOCK;
        }

        struct answer *a = calloc(1, sizeof(*a));
        CURL *h = curl_easy_init();
        struct curl_slist *hdrs = NULL, *l;
        if (!a || !h) {
                r = -ENOMEM;
                goto out;
        }
        a->grpc_status = -1;
        /* Trailers must be asked for, or a gRPC server may refuse the call. */
        static const char *const lines[] = { "Content-Type: application/grpc", "TE: trailers", "Expect:" };
        for (size_t i = 0; i < ELEMENTSOF(lines); i++) {
                l = curl_slist_append(hdrs, lines[i]);
                if (!l) {
                        r = -ENOMEM;
                        goto out;
                }
                hdrs = l;
        }
        bool ok = true;
#define SET(opt, val) ok = ok && curl_easy_setopt(h, opt, val) == CURLE_OK
        SET(CURLOPT_URL, VERSION_URL);
        SET(CURLOPT_UNIX_SOCKET_PATH, socket_path);
        SET(CURLOPT_PROXY, ""); /* a unix socket is never reached through an http_proxy */
        SET(CURLOPT_PROTOCOLS_STR, "http");
        SET(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDS, (const char *) request);
        SET(CURLOPT_POSTFIELDSIZE, (long) sizeof(request));
        SET(CURLOPT_HTTPHEADER, hdrs);
        SET(CURLOPT_USERAGENT, "layerd");
        SET(CURLOPT_CONNECTTIMEOUT_MS, (long) timeout_ms);
        SET(CURLOPT_TIMEOUT_MS, (long) timeout_ms);
        SET(CURLOPT_ERRORBUFFER, errbuf);
        SET(CURLOPT_HEADERFUNCTION, on_header);
        SET(CURLOPT_HEADERDATA, a);
        SET(CURLOPT_WRITEFUNCTION, on_write);
        SET(CURLOPT_WRITEDATA, a);
#undef SET
        if (!ok) {
                r = -ENOMEM;
                goto out;
        }
        CURLcode c = curl_easy_perform(h);
        if (c != CURLE_OK && a->too_big) {
                set_reason(reason, reason_size, "%s: answer over %zu bytes", socket_path, sizeof(a->body));
                r = -EPROTO;
                goto out;
        }
        if (c != CURLE_OK) {
                r = map_failure(h, c, errbuf, socket_path, reason, reason_size);
                goto out;
        }
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        r = -EPROTO;
        if (status != 200)
                set_reason(reason, reason_size, "%s: HTTP %ld", socket_path, status);
        else if (a->grpc_status < 0)
                set_reason(reason, reason_size, "%s: no grpc-status", socket_path);
        else if (a->grpc_status != 0)
                /* e.g. 12 (UNIMPLEMENTED): a gRPC server, but not containerd. */
                set_reason(reason, reason_size, "%s: grpc-status %d: %s", socket_path, a->grpc_status,
                           a->grpc_message[0] ? a->grpc_message : "(no message)");
        else if (!a->has_content_type || !is_grpc_content_type(a->content_type))
                set_reason(reason, reason_size, "%s: content-type \"%s\", not application/grpc", socket_path,
                           a->has_content_type ? a->content_type : "");
        else
                r = containerd_version_decode(a->body, a->len, ret_version, reason, reason_size);
out:
        curl_slist_free_all(hdrs);
        if (h)
                curl_easy_cleanup(h);
        free(a);
        return r;
}
