/* SPDX-License-Identifier: Apache-2.0 */
#include "common/filestamp.h"

#include <errno.h>
#include <string.h>

static bool ts_equal(const struct timespec *a, const struct timespec *b) {
        return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

bool file_stamp_update(struct file_stamp *s, const char *path, uint64_t now_ms) {
        struct stat st;
        struct file_stamp n = { .known = true, .checked_ms = now_ms };
        if (stat(path, &st) < 0)
                n.error = errno;
        else {
                n.dev = st.st_dev;
                n.ino = st.st_ino;
                n.size = st.st_size;
                n.mtime = st.st_mtim;
                n.ctime = st.st_ctim;
        }
        bool changed = !s->known || s->error != n.error ||
                       (!n.error && (s->dev != n.dev || s->ino != n.ino || s->size != n.size ||
                                     !ts_equal(&s->mtime, &n.mtime) || !ts_equal(&s->ctime, &n.ctime)));
        *s = n;
        return changed;
}

bool file_stamp_due(const struct file_stamp *s, uint64_t now_ms, uint64_t interval_ms) {
        return !s->known || now_ms < s->checked_ms || now_ms - s->checked_ms >= interval_ms;
}
