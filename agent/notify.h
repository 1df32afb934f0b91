/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The one place that talks to the service manager (sd_notify); harmless
 * no-ops when not started by systemd (NOTIFY_SOCKET unset). */

void notify_ready(const char *status);
void notify_stopping(void);
