/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's helper programs (containerd --version, containerd config dump):
 * common/run.c with stdin on /dev/null and the agent's environment. */
#include "agent/agent.h"
#include "common/run.h"

int agent_run(char *const argv[], uint64_t timeout_ms, size_t max, char **ret_out, size_t *ret_size, int *ret_status) {
        struct run_options o = { .argv = argv, .timeout_ms = timeout_ms, .max = max };
        return run_program(&o, ret_out, ret_size, ret_status);
}
