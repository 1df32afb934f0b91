/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/notify.h"

#include <string.h>
#include <systemd/sd-daemon.h>

#include "agent/log.h"

void notify_ready(const char *status) {
        int r = sd_notifyf(0, "READY=1\nSTATUS=%s", status);
        if (r < 0)
                log_warning("sd_notify READY failed: %s", strerror(-r));
}

void notify_stopping(void) {
        (void) sd_notify(0, "STOPPING=1");
}
