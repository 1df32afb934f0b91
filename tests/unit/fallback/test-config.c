/* SPDX-License-Identifier: Apache-2.0 */
/* fallback_new() at early boot: the kernel's entropy pool is not ready yet, so
 * a non-blocking getrandom() fails with EAGAIN. The client is built anyway,
 * at once (it holds no salt: a client's credentials come keyed by the caller),
 * never -EIO. getrandom() is replaced here: the library objects are linked
 * into this program, so their calls reach this definition. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fallback/fallback.h"

static bool pool_not_ready;
static unsigned nonblocking_calls, blocking_calls;

ssize_t getrandom(void *buf, size_t len, unsigned flags) {
        if (flags & GRND_NONBLOCK)
                nonblocking_calls++;
        else
                blocking_calls++;
        if (pool_not_ready && (flags & GRND_NONBLOCK)) {
                errno = EAGAIN;
                return -1;
        }
        return syscall(SYS_getrandom, buf, len, flags);
}

static void test_new_before_entropy(void **state) {
        (void) state;
        pool_not_ready = true;
        nonblocking_calls = blocking_calls = 0;
        struct fallback *fb = NULL;
        assert_int_equal(fallback_new(NULL, &fb), 0);
        assert_non_null(fb);
        assert_int_equal(blocking_calls, 0); /* nothing waited for the pool */
        fallback_free(fb);
        pool_not_ready = false;
}

static void test_new(void **state) {
        (void) state;
        struct fallback *fb = NULL;
        assert_int_equal(fallback_new(NULL, &fb), 0);
        assert_non_null(fb);
        fallback_free(fb);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_new),
                cmocka_unit_test(test_new_before_entropy),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
