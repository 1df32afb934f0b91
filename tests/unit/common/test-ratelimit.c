/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/ratelimit.c, on a simulated clock: the rate holds
 * from the first byte, pauses earn at most the burst, unlimited never waits. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/ratelimit.h"

#define MS UINT64_C(1000000)
#define S (1000 * MS)

/* Sends total bytes in chunks, sleeping as told; returns the simulated ns it took. */
static uint64_t transfer(struct ratelimit *rl, uint64_t *now, uint64_t total, uint64_t chunk) {
        uint64_t start = *now;
        for (uint64_t sent = 0; sent < total; sent += chunk)
                *now += ratelimit_take(rl, chunk, *now);
        return *now - start;
}

static void test_rate_holds(void **state) {
        (void) state;
        struct ratelimit rl;
        ratelimit_init(&rl, 2 << 20); /* 2 MiB/s */
        uint64_t now = 5 * S;
        /* 8 MiB in 16 KiB pieces: 4 s, give or take one chunk's time */
        uint64_t took = transfer(&rl, &now, 8 << 20, 16384);
        assert_true(took >= 4 * S - 10 * MS && took <= 4 * S + 10 * MS);
        /* 256 KiB pieces: the same rate */
        took = transfer(&rl, &now, 8 << 20, 256 << 10);
        assert_true(took >= 4 * S - 130 * MS && took <= 4 * S + 130 * MS);
        ratelimit_done(&rl);
}

static void test_pause_earns_burst_only(void **state) {
        (void) state;
        struct ratelimit rl;
        ratelimit_init(&rl, 1 << 20);
        uint64_t now = S;
        assert_int_equal(ratelimit_take(&rl, 0, now), 0);
        now += 3600 * S; /* an hour idle */
        /* the burst (16 KiB floor, > 50 ms of 1 MiB/s = 52428 B) goes at once, no more */
        assert_int_equal(ratelimit_take(&rl, 52428, now), 0);
        uint64_t w = ratelimit_take(&rl, 1 << 20, now);
        assert_true(w >= S - MS && w <= S + MS);
        ratelimit_done(&rl);
}

static void test_unlimited(void **state) {
        (void) state;
        struct ratelimit rl;
        ratelimit_init(&rl, 0);
        assert_int_equal(ratelimit_take(&rl, UINT64_C(1) << 40, 1), 0);
        ratelimit_done(&rl);
        /* a huge rate does not overflow */
        ratelimit_init(&rl, UINT64_MAX / 2);
        assert_int_equal(ratelimit_take(&rl, 1, 1), 0); /* 1 byte at that rate: well under 1 ns */
        assert_int_equal(ratelimit_take(&rl, 1, UINT64_MAX / 4), 0);
        ratelimit_done(&rl);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rate_holds),
                cmocka_unit_test(test_pause_earns_burst_only),
                cmocka_unit_test(test_unlimited),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
