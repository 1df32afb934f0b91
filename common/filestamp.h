/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* "Has this file changed since I last looked?", cheaply: one stat() that
 * follows symlinks, so a Kubernetes Secret or ConfigMap volume, which is
 * updated by pointing its "..data" symlink at a new directory, reads as a
 * change of the file seen through it. For files re-read on use
 * (credentials, and a spec reloaded when it changes). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

struct file_stamp {
        bool known;             /* looked at least once */
        int error;              /* 0, or the stat's errno (positive) at the last look */
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime, ctime;
        uint64_t checked_ms;    /* CLOCK_MONOTONIC ms of the last look (file_stamp_due()) */
};

/* Stats path and compares the result with *s, which it then records: true
 * when anything differs (device, inode, size, mtime, ctime; or the stat
 * failed where it had not, or failed differently, or now works again) and
 * on the first look. A file rewritten in place within the file system's
 * timestamp granularity with the same size is not seen; a replacement (a
 * rename or a symlink swap, how such files are updated) always is. */
bool file_stamp_update(struct file_stamp *s, const char *path, uint64_t now_ms);

/* Whether at least interval_ms have passed since the last look (or there was none). */
bool file_stamp_due(const struct file_stamp *s, uint64_t now_ms, uint64_t interval_ms);
