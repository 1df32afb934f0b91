/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/notify.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include "agent/log.h"

void notify_ready(const char *status) {
        int r = sd_notifyf(0, "READY=1\nSTATUS=%s", status);
        if (r < 0)
                log_warning("sd_notify READY failed: %s", strerror(-r));
}

void notify_status(const char *status) {
        (void) sd_notifyf(0, "STATUS=%s", status);
}

void notify_stopping(void) {
        (void) sd_notify(0, "STOPPING=1");
}

uint64_t notify_watchdog_usec(void) {
        uint64_t usec = 0;
        return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

void notify_watchdog(void) {
        (void) sd_notify(0, "WATCHDOG=1");
}

int notify_listen_fd(void) {
        int n = sd_listen_fds(1);
        if (n < 0)
                return n;
        if (n == 0)
                return -ENOENT;
        if (n > 1) {
                log_warning("socket activation passed %d sockets; using the first", n);
        }
        if (sd_is_socket(SD_LISTEN_FDS_START, 0, SOCK_STREAM, 1) <= 0)
                return -ENOTSOCK;
        return SD_LISTEN_FDS_START;
}
