/* SPDX-License-Identifier: Apache-2.0 */
/* Which containerd runs on this node, for hosts.containerd_version: auto.
 * The socket is asked first: it is the containerd that reads the hosts files
 * (a binary on PATH may be another version, or absent in layerd's own
 * container). `containerd --version` is the fallback for a containerd that
 * is installed but not (yet) running, e.g. when hosts files are written
 * before it starts. Neither: the 1.6 rules, which every later containerd
 * reads too, and a warning that says so. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/log.h"
#include "common/macro.h"

#define BINARY_OUTPUT_MAX 4096 /* "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>\n" */

extern char **environ;

static const char *const source_names[_AGENT_CONTAINERD_SOURCE_MAX] = {
        [AGENT_CONTAINERD_SOCKET] = "socket",
        [AGENT_CONTAINERD_BINARY] = "binary",
        [AGENT_CONTAINERD_NONE] = "none",
};

const char *agent_containerd_source_to_string(enum agent_containerd_source s) {
        return s >= 0 && s < _AGENT_CONTAINERD_SOURCE_MAX ? source_names[s] : "unknown";
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void close_fdp(int *fd) {
        if (*fd >= 0)
                close(*fd);
}

/* Runs `containerd --version` (PATH lookup, no shell) with stdin and stderr
 * on /dev/null; up to BINARY_OUTPUT_MAX bytes of its stdout into out (NUL
 * terminated). Returns 0 when it exited 0 within the timeout, else -errno
 * with a reason. */
static int run_binary(char *out, size_t size, char *reason, size_t reason_size) {
        char *const argv[] = { (char *) "containerd", (char *) "--version", NULL };
        _cleanup_(close_fdp) int rd = -1, null = -1;
        int pipefd[2];
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, def;
        pid_t pid;
        int r;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        rd = pipefd[0];
        null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0) {
                r = -errno;
                close(pipefd[1]);
                return r;
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        /* serve blocks SIGTERM/SIGHUP for sigwait() and ignores SIGPIPE: the
         * child gets neither (a mask and an ignored disposition survive exec). */
        sigemptyset(&none);
        sigemptyset(&def);
        sigaddset(&def, SIGPIPE);
        sigaddset(&def, SIGXFSZ);
        r = posix_spawn_file_actions_adddup2(&fa, null, STDIN_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, null, STDERR_FILENO);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &def);
        /* A group of its own: a wrapper script's children are killed with it on a timeout. */
        if (r == 0)
                r = posix_spawnattr_setpgroup(&attr, 0);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                            POSIX_SPAWN_SETPGROUP);
        if (r == 0)
                r = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        close(pipefd[1]);
        if (r != 0) {
                snprintf(reason, reason_size, r == ENOENT ? "containerd not found on PATH" : "cannot run containerd: %s",
                         strerror(r));
                return -r;
        }

        /* Read until EOF, the cap, or the deadline; the child is reaped whatever happens. */
        size_t len = 0;
        bool timed_out = false;
        uint64_t deadline = now_ms() + AGENT_CONTAINERD_BINARY_TIMEOUT_MS;
        for (;;) {
                uint64_t now = now_ms();
                if (now >= deadline) {
                        timed_out = true;
                        break;
                }
                struct pollfd p = { .fd = rd, .events = POLLIN };
                int n = poll(&p, 1, (int) (deadline - now));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        timed_out = n == 0;
                        break;
                }
                if (len + 1 >= size)
                        break; /* enough: the version is in the first line */
                ssize_t got = read(rd, out + len, size - 1 - len);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        break;
                len += (size_t) got;
        }
        out[len] = '\0';
        /* A child still writing gets EPIPE rather than a full pipe to wait on. */
        close(rd);
        rd = -1;
        int status = 0;
        if (timed_out)
                kill(-pid, SIGKILL);
        else {
                /* Output complete (EOF or the cap): give it the rest of the time to exit. */
                while (waitpid(pid, &status, WNOHANG) == 0) {
                        if (now_ms() >= deadline) {
                                timed_out = true;
                                kill(-pid, SIGKILL);
                                break;
                        }
                        struct timespec ts = { .tv_nsec = 10 * 1000000 };
                        nanosleep(&ts, NULL);
                }
                if (!timed_out) {
                        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                                snprintf(reason, reason_size, "containerd --version failed (status 0x%x)",
                                         (unsigned) status);
                                return -EPROTO;
                        }
                        return 0;
                }
        }
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        snprintf(reason, reason_size, "containerd --version gave no answer within %d ms",
                 AGENT_CONTAINERD_BINARY_TIMEOUT_MS);
        return -ETIMEDOUT;
}

/* Takes a version as containerd reported it into ret; false (with a reason) if it is not one. */
static bool take(struct agent_containerd_version *ret, enum agent_containerd_source source, const char *reported,
                 char *reason, size_t reason_size) {
        char v[SPEC_CONTAINERD_VERSION_MAX];
        unsigned code;
        if (spec_containerd_version_normalize(reported, v, &code) < 0) {
                snprintf(reason, reason_size, "no version in \"%.64s\"", reported);
                return false;
        }
        ret->source = source;
        memcpy(ret->version, v, sizeof(v));
        ret->code = code;
        /* The first line only, for a log field. */
        snprintf(ret->reported, sizeof(ret->reported), "%.*s", (int) strcspn(reported, "\r\n"), reported);
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
        char out[BINARY_OUTPUT_MAX];
        r = run_binary(out, sizeof(out), v.binary_reason, sizeof(v.binary_reason));
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
