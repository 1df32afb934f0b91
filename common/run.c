/* SPDX-License-Identifier: Apache-2.0 */
/* Running a program with its output bounded and its run time bounded (the
 * agent's containerd probes, fallback's credential helpers). No shell: argv
 * goes to exec as it is. */
#include "common/run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/time.h"

#define RUN_SLICE_MS 100 /* how often a running child is looked at */
#define RUN_REAP_MS 1000  /* how long a killed child is waited for */

extern char **environ;

static int spawn_child(const struct run_options *o, int out, int in, pid_t *ret_pid) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, def;
        int r = posix_spawn_file_actions_init(&fa);
        if (r != 0)
                return -r;
        r = posix_spawnattr_init(&attr);
        if (r != 0) {
                posix_spawn_file_actions_destroy(&fa);
                return -r;
        }
        /* serve blocks SIGTERM/SIGHUP for sigwait() and ignores SIGPIPE: the
         * child gets neither (a mask and an ignored disposition survive exec). */
        sigemptyset(&none);
        sigemptyset(&def);
        sigaddset(&def, SIGPIPE);
        sigaddset(&def, SIGXFSZ);
        /* stdout into the pipe, stderr to /dev/null (never read: it may echo
         * a secret), stdin the input or /dev/null: the caller reads one
         * answer, never a prompt or a progress report. */
        r = posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
        if (r == 0)
                r = in >= 0 ? posix_spawn_file_actions_adddup2(&fa, in, STDIN_FILENO)
                            : posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        /* Nothing else of ours, even a descriptor someone forgot to mark close-on-exec. */
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
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
                r = posix_spawnp(ret_pid, o->argv[0], &fa, &attr, o->argv, o->envp ? o->envp : environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        return -r;
}

/* The input, written at once (it fits the socket's buffer) and the socket
 * shut: the child reads it and then end of file. A socket rather than a
 * pipe: send() with MSG_NOSIGNAL raises no SIGPIPE in a caller that did not
 * ignore it, when the child exits without reading. */
static int give_input(int fd, const struct run_options *o) {
        for (size_t done = 0; done < o->input_size;) {
                ssize_t n = send(fd, (const char *) o->input + done, o->input_size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
                        break; /* the child closed its end: it reads no input */
                if (n < 0)
                        return errno == EAGAIN ? -ENOBUFS : -errno; /* it did not fit after all: never half an input */
                done += (size_t) n;
        }
        (void) shutdown(fd, SHUT_WR);
        return 0;
}

/* Whether the child has exited, left a zombie (WNOWAIT): its pid, and so its
 * group's id, cannot be taken by another process until it is reaped, so the
 * group can still be killed safely. An error counts as exited (then reaped below). */
static bool leader_exited(pid_t pid) {
        siginfo_t si = { 0 };
        int r;
        do
                r = waitid(P_PID, (id_t) pid, &si, WEXITED | WNOHANG | WNOWAIT);
        while (r < 0 && errno == EINTR);
        return r < 0 || si.si_pid == pid;
}

static void sleep_a_little(void) {
        struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
}

/* Kills pid's whole group and reaps the leader (its status into *status) and
 * every other member that is a child of ours (one left behind by a wrapper
 * script is, where we are PID 1 or a subreaper), each waited for until
 * reap_deadline at most: a process stuck in the D state must not hold us.
 * Returns whether the leader was reaped. */
static bool kill_and_reap(pid_t pid, int *status, uint64_t reap_deadline) {
        (void) kill(-pid, SIGKILL);
        bool reaped = false;
        for (;;) {
                pid_t w = waitpid(pid, status, WNOHANG);
                if (w == pid) {
                        reaped = true;
                        break;
                }
                if ((w < 0 && errno != EINTR) || (w == 0 && time_now_ms() >= reap_deadline))
                        break;
                if (w == 0)
                        sleep_a_little();
        }
        for (;;) {
                pid_t w = waitpid(-pid, NULL, WNOHANG);
                if (w > 0 || (w < 0 && errno == EINTR))
                        continue;
                if (w < 0 || time_now_ms() >= reap_deadline)
                        break; /* ECHILD: none left */
                sleep_a_little();
        }
        return reaped;
}

int run_program(const struct run_options *o, char **ret_out, size_t *ret_size, int *ret_status) {
        if (o->input && o->input_size > RUN_INPUT_MAX)
                return -E2BIG;
        int out[2], in[2] = { -1, -1 };
        if (pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        if (o->input && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0) {
                int e = -errno;
                close(out[0]);
                close(out[1]);
                return e;
        }
        pid_t pid = -1;
        int r = spawn_child(o, out[1], in[1], &pid);
        close(out[1]);
        if (in[1] >= 0)
                close(in[1]);
        if (r == 0 && in[0] >= 0)
                r = give_input(in[0], o);
        if (in[0] >= 0)
                close(in[0]);
        if (r < 0 && pid > 0)
                (void) kill(-pid, SIGKILL); /* then reaped below */
        else if (r < 0) {
                close(out[0]);
                return r;
        }

        size_t max = o->max;
        _cleanup_free_ char *buf = malloc(max + 1);
        size_t size = 0;
        int rc = r < 0 ? r : buf ? 0 : -ENOMEM;
        int status = 0;
        bool exited = false;
        uint64_t deadline = time_now_ms() + o->timeout_ms;
        char chunk[4096];
        /* Read in slices, looking at the child between them: one that exited
         * has said all it will say, even if a grandchild it left behind still
         * holds the pipe open. */
        while (rc == 0) {
                int left = time_left_ms(deadline);
                if (left == 0) {
                        rc = -ETIMEDOUT;
                        break;
                }
                if (o->cancelled && o->cancelled(o->cancel_userdata)) {
                        rc = -ECANCELED;
                        break;
                }
                if (!exited)
                        exited = leader_exited(pid);
                struct pollfd p = { .fd = out[0], .events = POLLIN };
                int n = poll(&p, 1, exited ? 0 : left > 0 && left < RUN_SLICE_MS ? left : RUN_SLICE_MS);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        rc = -errno;
                        break;
                }
                if (n == 0) {
                        if (exited)
                                break; /* exited, and nothing more is buffered */
                        continue;
                }
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
        explicit_bzero(chunk, sizeof(chunk));
        close(out[0]);
        /* A program that closed its output but goes on is bounded by the same deadline. */
        while (rc == 0 && !exited) {
                if (time_now_ms() >= deadline) {
                        rc = -ETIMEDOUT;
                        break;
                }
                if (o->cancelled && o->cancelled(o->cancel_userdata)) {
                        rc = -ECANCELED;
                        break;
                }
                sleep_a_little();
                exited = leader_exited(pid);
        }
        /* The group is killed whether the leader exited or not: what a wrapper
         * script started and left behind goes with it, and is reaped when it
         * is ours to reap (else it would stay a zombie under a PID 1 layerd). */
        bool reaped = kill_and_reap(pid, &status, time_now_ms() + RUN_REAP_MS);
        if (rc == 0 && !reaped)
                rc = -ECHILD;
        if (rc < 0) {
                if (buf)
                        explicit_bzero(buf, size);
                return rc;
        }
        buf[size] = '\0';
        *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        *ret_size = size;
        *ret_out = TAKE_PTR(buf);
        return 0;
}
