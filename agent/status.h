/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `layerd status`: the running agent on one screen (version and uptime, the
 * cache against its bounds, hit ratio, downloads in flight, prefetch, each
 * endpoint's breaker and last error), as text or JSON. */

#include <stdbool.h>
#include <stdio.h>

struct admin_target;

/* Writes the agent's status to out, as a JSON object when json, else as
 * text. Returns the exit status (0). */
int status_write(const struct admin_target *t, bool json, FILE *out);
