/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Running a program with its run time and its output bounded: a wedged or
 * chatty program never holds the caller up. No shell: argv goes to exec as
 * it is. Safe in a multi-threaded process (posix_spawn). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RUN_INPUT_MAX (16u * 1024) /* what fits a socket's buffer at once: written before the child reads */

struct run_options {
        char *const *argv;  /* argv[0] is found on PATH unless it holds a '/' */
        char *const *envp;  /* the child's whole environment; NULL: the caller's */
        const void *input;  /* written to the child's stdin, which is then closed; NULL: /dev/null */
        size_t input_size;  /* at most RUN_INPUT_MAX */
        uint64_t timeout_ms;
        size_t max;         /* output bytes taken at most */
        /* Asked every 100 ms while the program runs; true: it is killed (-ECANCELED). NULL: never. */
        bool (*cancelled)(void *userdata);
        void *cancel_userdata;
};

/* Runs o->argv in a process group of its own, with stderr on /dev/null, no
 * signal blocked or ignored and no other descriptor of the caller's, and
 * returns its standard output (NUL-terminated, at most o->max bytes; the
 * caller frees, and wipes it when it may hold a secret) and exit status
 * (128 + signal when killed). Its whole group is killed (SIGKILL) when the
 * program exits, runs past o->timeout_ms (-ETIMEDOUT) or writes more than
 * o->max (-EFBIG) or is cancelled (-ECANCELED): nothing it started is left running. The program is
 * reaped, and so is every other member of the group that is the caller's
 * child (all of them where the caller is PID 1 or a subreaper), each waited
 * for a second at most. Returns 0, or -errno (-ENOENT: no such program;
 * -E2BIG: input too large; -ENOBUFS: the input did not fit at once). */
int run_program(const struct run_options *o, char **ret_out, size_t *ret_size, int *ret_status);
