/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The one place that talks to the service manager (sd_notify, socket
 * activation); harmless no-ops when not started by systemd. */

#include <stdint.h>

#define NOTIFY_STATUS_MAX 256 /* the STATUS= text `systemctl status` shows, NUL included */

void notify_ready(const char *status);
void notify_status(const char *status);
void notify_stopping(void);

/* WatchdogSec= as microseconds, or 0 when no watchdog is asked for. */
uint64_t notify_watchdog_usec(void);
void notify_watchdog(void);

/* The listening socket systemd passed (socket activation), or -ENOENT when
 * none was (listen on our own), or -ENOTSOCK when it is not a listening
 * stream socket. */
int notify_listen_fd(void);
