/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The agent's logging front: a process-wide threshold (set once at start-up)
 * over common/log's line writer. Only agent/ logs; modules report errors. */

#include <stdbool.h>

#include "common/error.h"
#include "common/log.h"

void agent_log_set_max_level(int level);

/* A command's --log-level=NAME: sets the threshold; false (after saying so
 * on stderr, as "layerd COMMAND: --log-level: ...") for an unknown name. */
bool agent_log_level_option(const char *command, const char *name);
int agent_log_max_level(void);

#define agent_log(level, ...)                                                   \
        do {                                                                    \
                if ((level) <= agent_log_max_level())                           \
                        log_line((level), __VA_ARGS__);                         \
        } while (0)

#define log_error(...) agent_log(LOG_ERR, __VA_ARGS__)
#define log_warning(...) agent_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) agent_log(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) agent_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) agent_log(LOG_DEBUG, __VA_ARGS__)

/* Logs every error of l as "what: file:line:col: message", one line each. */
void agent_log_errors(int level, const char *what, const struct error_list *l);
