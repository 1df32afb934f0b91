/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/log.h"

#include <stdatomic.h>

/* Written at start-up and read by every worker thread. */
static atomic_int max_level = LOG_INFO;

void agent_log_set_max_level(int level) {
        atomic_store_explicit(&max_level, level, memory_order_relaxed);
}

int agent_log_max_level(void) {
        return atomic_load_explicit(&max_level, memory_order_relaxed);
}
