/* SPDX-License-Identifier: Apache-2.0 */
/* Which containerd runs on this node, for hosts.containerd_version: auto.
 * The socket is asked first: it is the containerd that reads the hosts files
 * (a binary on PATH may be another version, or absent in layerd's own
 * container). `containerd --version` is the fallback for a containerd that
 * is installed but not (yet) running, e.g. when hosts files are written
 * before it starts. Neither: the 1.6 rules, which every later containerd
 * reads too, and a warning that says so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/log.h"
#include "common/macro.h"

#define BINARY_OUTPUT_MAX 4096 /* "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>\n" */
#define REPORTED_SHOWN_MAX 72  /* what a reason quotes of a version it could not read, NUL included */

static const char *const source_names[_AGENT_CONTAINERD_SOURCE_MAX] = {
        [AGENT_CONTAINERD_SOCKET] = "socket",
        [AGENT_CONTAINERD_BINARY] = "binary",
        [AGENT_CONTAINERD_NONE] = "none",
};

const char *agent_containerd_source_to_string(enum agent_containerd_source s) {
        return s >= 0 && s < _AGENT_CONTAINERD_SOURCE_MAX ? source_names[s] : "unknown";
}

/* Runs `containerd --version` (PATH lookup, no shell, bounded in time and
 * output) into *ret_out. Returns 0 when it exited 0, else -errno with a reason. */
static int run_binary(char **ret_out, char *reason, size_t reason_size) {
        char *const argv[] = { (char *) "containerd", (char *) "--version", NULL };
        size_t size;
        int status;
        int r = agent_run(argv, AGENT_CONTAINERD_BINARY_TIMEOUT_MS, BINARY_OUTPUT_MAX, ret_out, &size, &status);
        if (r == -ENOENT)
                snprintf(reason, reason_size, "containerd not found on PATH");
        else if (r == -ETIMEDOUT)
                snprintf(reason, reason_size, "containerd --version gave no answer within %d ms",
                         AGENT_CONTAINERD_BINARY_TIMEOUT_MS);
        else if (r < 0)
                snprintf(reason, reason_size, "cannot run containerd: %s", strerror(-r));
        else if (status != 0) {
                snprintf(reason, reason_size, "containerd --version failed (exit status %d)", status);
                *ret_out = mfree(*ret_out);
                return -EPROTO;
        }
        return r;
}

/* What a program printed, fit for a quoted log field: its first line, log_quote()d. */
static void printable(char *dst, size_t size, const char *src) {
        log_quotef(dst, size, "%.*s", (int) strcspn(src, "\r\n"), src);
}

/* Takes a version as containerd reported it into ret; false (with a reason) if it is not one. */
static bool take(struct agent_containerd_version *ret, enum agent_containerd_source source, const char *reported,
                 char *reason, size_t reason_size) {
        char v[SPEC_CONTAINERD_VERSION_MAX];
        unsigned code;
        if (spec_containerd_version_normalize(reported, v, &code) < 0) {
                char shown[REPORTED_SHOWN_MAX];
                printable(shown, sizeof(shown), reported);
                snprintf(reason, reason_size, "no version in \"%s\"", shown);
                return false;
        }
        ret->source = source;
        memcpy(ret->version, v, sizeof(v));
        ret->code = code;
        printable(ret->reported, sizeof(ret->reported), reported);
        return true;
}

int agent_containerd_version(const char *socket_path, struct agent_containerd_version *ret) {
        struct agent_containerd_version v = { .source = AGENT_CONTAINERD_NONE };
        _cleanup_free_ char *reported = NULL;
        if (!socket_path)
                socket_path = AGENT_CONTAINERD_SOCKET_DEFAULT;
        int r = fallback_containerd_version(socket_path, FALLBACK_CONTAINERD_TIMEOUT_MS, &reported, v.socket_reason,
                                            sizeof(v.socket_reason));
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && take(&v, AGENT_CONTAINERD_SOCKET, reported, v.socket_reason, sizeof(v.socket_reason))) {
                *ret = v;
                return 0;
        }
        _cleanup_free_ char *out = NULL;
        r = run_binary(&out, v.binary_reason, sizeof(v.binary_reason));
        if (r == -ENOMEM)
                return r;
        if (r >= 0)
                (void) take(&v, AGENT_CONTAINERD_BINARY, out, v.binary_reason, sizeof(v.binary_reason));
        *ret = v;
        return 0;
}

int agent_resolve_spec_version(struct spec *s, const char *socket_path, struct agent_containerd_version *ret) {
        struct agent_containerd_version v;
        if (!s->hosts.containerd_version_auto)
                return 0;
        if (!socket_path)
                socket_path = AGENT_CONTAINERD_SOCKET_DEFAULT;
        int r = agent_containerd_version(socket_path, &v);
        if (r < 0)
                return r;
        if (v.source == AGENT_CONTAINERD_NONE) {
                log_warning("containerd version not detected socket=\"%s\" socket_error=\"%s\" binary_error=\"%s\": "
                            "using the containerd %s rules (set hosts.containerd_version to choose)",
                            socket_path, v.socket_reason, v.binary_reason, SPEC_CONTAINERD_VERSION_FALLBACK);
        } else {
                r = spec_set_containerd_version(s, v.version);
                if (r < 0)
                        return r; /* -ENOMEM: the version was normalised, auto was checked */
                if (v.source == AGENT_CONTAINERD_SOCKET)
                        log_info("containerd version=%s source=socket socket=\"%s\" reported=\"%s\"", v.version,
                                 socket_path, v.reported);
                else
                        log_info("containerd version=%s source=binary reported=\"%s\" socket=\"%s\" socket_error=\"%s\"",
                                 v.version, v.reported, socket_path, v.socket_reason);
        }
        if (ret)
                *ret = v;
        return 0;
}
