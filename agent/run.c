/* SPDX-License-Identifier: Apache-2.0 */
/* Running a helper program (containerd --version, containerd config dump)
 * with its output bounded and its run time bounded: a wedged or chatty
 * program never holds layerd up. No shell: argv goes to execvp as it is. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/macro.h"
#include "common/time.h"

#define RUN_SLICE_MS 100 /* how often a running child is looked at */
#define RUN_REAP_MS 1000  /* how long a killed child is waited for */

extern char **environ;

int agent_run(char *const argv[], uint64_t timeout_ms, size_t max, char **ret_out, size_t *ret_size, int *ret_status) {
        int out[2];
        if (pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, def;
        int r = posix_spawn_file_actions_init(&fa);
        if (r != 0) {
                close(out[0]);
                close(out[1]);
                return -r;
        }
        r = posix_spawnattr_init(&attr);
        if (r != 0) {
                posix_spawn_file_actions_destroy(&fa);
                close(out[0]);
                close(out[1]);
                return -r;
        }
        /* serve blocks SIGTERM/SIGHUP for sigwait() and ignores SIGPIPE: the
         * child gets neither (a mask and an ignored disposition survive exec). */
        sigemptyset(&none);
        sigemptyset(&def);
        sigaddset(&def, SIGPIPE);
        sigaddset(&def, SIGXFSZ);
        /* stdout into the pipe, stdin and stderr to /dev/null: the caller
         * reads one answer, never a prompt or a progress report. */
        r = posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
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
        pid_t pid = -1;
        if (r == 0)
                r = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        close(out[1]);
        if (r != 0) {
                close(out[0]);
                return -r;
        }

        _cleanup_free_ char *buf = malloc(max + 1);
        size_t size = 0;
        int rc = buf ? 0 : -ENOMEM;
        int status = 0;
        bool reaped = false;
        uint64_t deadline = time_now_ms() + timeout_ms;
        /* Read in slices, looking at the child between them: one that exited
         * has said all it will say, even if a grandchild it left behind still
         * holds the pipe open. */
        while (rc == 0) {
                int left = time_left_ms(deadline);
                if (left == 0) {
                        rc = -ETIMEDOUT;
                        break;
                }
                if (!reaped && waitpid(pid, &status, WNOHANG) == pid)
                        reaped = true;
                struct pollfd p = { .fd = out[0], .events = POLLIN };
                int n = poll(&p, 1, reaped ? 0 : left > 0 && left < RUN_SLICE_MS ? left : RUN_SLICE_MS);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        rc = -errno;
                        break;
                }
                if (n == 0) {
                        if (reaped)
                                break; /* exited, and nothing more is buffered */
                        continue;
                }
                char chunk[4096];
                ssize_t got = read(out[0], chunk, sizeof(chunk));
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        rc = -errno;
                        break;
                }
                if (got == 0)
                        break;
                if ((size_t) got > max - size) {
                        rc = -EFBIG;
                        break;
                }
                memcpy(buf + size, chunk, (size_t) got);
                size += (size_t) got;
        }
        close(out[0]);
        if (rc < 0 && !reaped)
                (void) kill(-pid, SIGKILL);
        /* A program that closed its output but goes on is bounded by the same
         * deadline; one killed is waited for a little, and otherwise left to
         * the kernel (a process stuck in the D state must not hold us). */
        uint64_t reap_deadline = (rc < 0 ? time_now_ms() : deadline) + RUN_REAP_MS;
        while (!reaped) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR)
                        return rc < 0 ? rc : -errno;
                if (w == 0 && rc == 0 && time_now_ms() >= deadline) {
                        (void) kill(-pid, SIGKILL);
                        rc = -ETIMEDOUT;
                        reap_deadline = time_now_ms() + RUN_REAP_MS;
                } else if (w == 0 && time_now_ms() >= reap_deadline) {
                        break;
                } else if (w == 0) {
                        struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };
                        nanosleep(&ts, NULL);
                }
        }
        if (rc < 0)
                return rc;
        buf[size] = '\0';
        *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        *ret_size = size;
        *ret_out = TAKE_PTR(buf);
        return 0;
}
