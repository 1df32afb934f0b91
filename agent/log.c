/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/log.h"

#include <stdatomic.h>
#include <stdio.h>

/* Written at start-up and read by every worker thread. */
static atomic_int max_level = LOG_INFO;

void agent_log_set_max_level(int level) {
        atomic_store_explicit(&max_level, level, memory_order_relaxed);
}

bool agent_log_level_option(const char *command, const char *name) {
        int level = log_level_from_string(name);
        if (level < 0) {
                fprintf(stderr, "layerd %s: --log-level: unknown level \"%s\"\n", command, name);
                return false;
        }
        agent_log_set_max_level(level);
        return true;
}

int agent_log_max_level(void) {
        return atomic_load_explicit(&max_level, memory_order_relaxed);
}

void agent_log_errors(int level, const char *what, const struct error_list *l) {
        char buf[ERROR_SOURCE_MAX + ERROR_MESSAGE_MAX + 32];
        for (size_t i = 0; i < l->n; i++) {
                error_list_format(l, i, buf, sizeof(buf));
                agent_log(level, "%s: %s", what, buf);
        }
        if (l->dropped > 0)
                agent_log(level, "%s: %s: %zu more errors not shown", what, l->source, l->dropped);
}
