/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Scope-bound cleanup helpers in the style of systemd's alloc-util.h:
 * a local declared _cleanup_free_ is freed when it goes out of scope, and
 * TAKE_PTR() hands ownership on by returning the pointer and clearing it. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define TAKE_PTR(p)                                                             \
        ({                                                                      \
                __typeof__(p) _p_ = (p);                                        \
                (p) = NULL;                                                     \
                _p_;                                                            \
        })

#define TAKE_FD(fd)                                                             \
        ({                                                                      \
                int _fd_ = (fd);                                                \
                (fd) = -1;                                                      \
                _fd_;                                                           \
        })

/* free() that returns NULL, for "p = mfree(p)". */
static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

/* Wipes the string s (a secret: a password, a token) and frees it; returns NULL; accepts NULL. */
static inline char *secret_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
        return NULL;
}

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Define a cleanup function for a type whose destructor returns NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                 \
        static inline void func##p(type *p) {                                   \
                if (*p)                                                         \
                        func(*p);                                               \
        }
