/* SPDX-License-Identifier: Apache-2.0 */
/* The spec watcher (agent/specwatch.h). Events only say "look again": what
 * decides is the file's content, hashed, so a touch or a kubelet re-sync
 * writing the same bytes reloads nothing, and a burst of events (the
 * kubelet's new directory, its "..data_tmp" symlink renamed over "..data",
 * the old directory removed) is one look SPEC_WATCH_DEBOUNCE_MS after the last. */
#include "agent/specwatch.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/log.h"
#include "common/digest.h"
#include "common/filestamp.h"
#include "common/macro.h"
#include "common/time.h"
#include "hostsconfig/spec.h"

/* The directory's entries changing, and the directory itself going away (an
 * unmount or a removal ends the watch: IN_IGNORED follows). */
#define SPEC_WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF | \
                         IN_MOVE_SELF | IN_ONLYDIR)

struct spec_watch {
        char *path;
        char *dir;       /* dirname(path): watched, never its symlinks' targets */
        const char *base; /* basename(path), inside base_copy */
        char *base_copy;
        pthread_t target, thread;
        int stop_fd;     /* an eventfd: spec_watch_stop() writes it */
        int wake_fd;     /* an eventfd: spec_watch_reload_failed() writes it (retry_due changed) */
        int inotify_fd;  /* -1: polling only */
        int inotify_error; /* why inotify_fd is -1 (positive errno) */
        int wd;          /* the directory's watch; -1 when lost */
        bool warned;     /* polling has been logged */
        bool look_first; /* seen was given: the file may have changed since, a look at once */
        /* What the last reload read, as far as we know; taken by the
         * watcher's look() and by spec_watch_note_signal() (serve's thread). */
        pthread_mutex_t lock;
        struct spec_print seen;
        bool seen_valid;   /* false: a reload of seen was rejected, it is new again */
        uint64_t retry_ms; /* the backoff step after the last rejected reload; 0: none */
        uint64_t retry_due; /* a look at this time (CLOCK_MONOTONIC ms) for a rejected reload; 0: none */
        struct file_stamp stamp;
};

/* Reads path through a bounded buffer (a spec larger than SPEC_FILE_MAX is
 * refused by the loader anyway) and hashes it. */
void spec_watch_print(const char *path, struct spec_print *ret) {
        _cleanup_(digester_freep) struct digester *h = NULL;
        char buf[16 * 1024];
        size_t total = 0;
        *ret = (struct spec_print) { 0 };
        /* O_NONBLOCK: a FIFO put in its place must not hang the watcher. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
                ret->error = errno;
                return;
        }
        if (!S_ISREG(st.st_mode)) {
                ret->error = EINVAL;
                return;
        }
        int r = digester_new(DIGEST_SHA256, &h);
        for (;;) {
                if (r < 0) {
                        ret->error = -r;
                        return;
                }
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        ret->error = errno;
                        return;
                }
                if (n == 0)
                        break;
                total += (size_t) n;
                if (total > SPEC_FILE_MAX) {
                        ret->error = EFBIG;
                        return;
                }
                r = digester_update(h, buf, (size_t) n);
        }
        r = digester_final(h, &ret->digest);
        if (r < 0)
                ret->error = -r;
}

static bool spec_print_equal(const struct spec_print *a, const struct spec_print *b) {
        return a->error == b->error && (a->error != 0 || digest_equal(&a->digest, &b->digest));
}

/* The debounced look: a reload when the content changed (or became
 * unreadable, or readable again: the reload then says why or takes it). */
static void look(struct spec_watch *w) {
        struct spec_print now;
        spec_watch_print(w->path, &now);
        pthread_mutex_lock(&w->lock);
        bool equal = spec_print_equal(&now, &w->seen);
        bool retry = equal && !w->seen_valid;
        w->seen = now;
        w->seen_valid = true;
        pthread_mutex_unlock(&w->lock);
        if (retry) {
                log_info("spec reloaded again after a rejected reload path=\"%s\"", w->path);
                (void) pthread_kill(w->target, SIGHUP);
                return;
        }
        if (equal) {
                log_debug("spec unchanged on disk path=\"%s\"", w->path);
                return;
        }
        log_info("spec changed on disk path=\"%s\", reloading", w->path);
        (void) pthread_kill(w->target, SIGHUP);
}

/* (Re)adds the directory's watch; on failure the stat() every
 * SPEC_WATCH_POLL_MS carries on alone, said once. */
static void watch_dir(struct spec_watch *w) {
        if (w->inotify_fd >= 0) {
                w->wd = inotify_add_watch(w->inotify_fd, w->dir, SPEC_WATCH_MASK);
                if (w->wd >= 0) {
                        if (w->warned)
                                log_info("spec watch restored dir=\"%s\"", w->dir);
                        w->warned = false;
                        return;
                }
        }
        if (!w->warned)
                log_warning("cannot watch the spec's directory dir=\"%s\": %s; checking the spec every %d s instead",
                            w->dir, strerror(w->inotify_fd >= 0 ? errno : w->inotify_error), SPEC_WATCH_POLL_MS / 1000);
        w->warned = true;
}

/* Drains the inotify queue; true when something concerns the spec: an
 * entry of its name or of the kubelet's ("..data", its timestamped
 * directories), the directory itself, or events lost to an overflow. */
static bool drain(struct spec_watch *w) {
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        bool hit = false;
        for (;;) {
                ssize_t n = read(w->inotify_fd, buf, sizeof(buf));
                if (n <= 0)
                        return hit; /* EAGAIN: drained */
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *e = (const struct inotify_event *) p;
                        p += sizeof(*e) + e->len;
                        if (e->mask & IN_Q_OVERFLOW)
                                hit = true;
                        else if (e->wd == w->wd && (e->mask & (IN_MOVE_SELF | IN_DELETE_SELF))) {
                                /* The watch follows the inode: moved away, it would report the
                                 * old directory's entries, not the path's. Re-added at the next stat. */
                                (void) inotify_rm_watch(w->inotify_fd, w->wd);
                                w->wd = -1;
                                hit = true;
                        }
                        else if (e->mask & IN_IGNORED) {
                                if (e->wd == w->wd) {
                                        w->wd = -1; /* directory gone or unmounted: re-added at the next stat */
                                        hit = true;
                                }
                        } else if (e->len == 0 || strcmp(e->name, w->base) == 0 || strncmp(e->name, "..", 2) == 0)
                                hit = true;
                }
        }
}

static void *watch_thread(void *arg) {
        struct spec_watch *w = arg;
        /* A look pending at this time (CLOCK_MONOTONIC ms); 0: none. */
        uint64_t due = w->look_first ? time_now_ms() : 0;
        for (;;) {
                uint64_t now = time_now_ms();
                uint64_t interval = w->wd >= 0 ? SPEC_WATCH_STAT_MS : SPEC_WATCH_POLL_MS;
                uint64_t next = w->stamp.checked_ms + interval;
                if (due && due < next)
                        next = due;
                pthread_mutex_lock(&w->lock);
                uint64_t retry_due = w->retry_due;
                pthread_mutex_unlock(&w->lock);
                if (retry_due && retry_due < next)
                        next = retry_due;
                int timeout = next > now ? (int) (next - now) : 0;
                struct pollfd fds[3] = {
                        { .fd = w->stop_fd, .events = POLLIN },
                        { .fd = w->wd >= 0 ? w->inotify_fd : -1, .events = POLLIN },
                        { .fd = w->wake_fd, .events = POLLIN },
                };
                int r = poll(fds, 3, timeout);
                if (r < 0 && errno != EINTR) {
                        log_warning("spec watch stopped path=\"%s\": %s; reload it with SIGHUP", w->path,
                                    strerror(errno));
                        break;
                }
                if (fds[0].revents)
                        break;
                now = time_now_ms();
                if (fds[2].revents & POLLIN) {
                        uint64_t n;
                        (void) !read(w->wake_fd, &n, sizeof(n)); /* retry_due is read at the top */
                }
                if ((fds[1].revents & POLLIN) && drain(w))
                        due = now + SPEC_WATCH_DEBOUNCE_MS;
                if (file_stamp_due(&w->stamp, now, interval)) {
                        if (w->wd < 0)
                                watch_dir(w);
                        /* A metadata change is only a reason to look: the content decides. */
                        if (file_stamp_update(&w->stamp, w->path, now) && !due)
                                due = now + SPEC_WATCH_DEBOUNCE_MS;
                }
                if (due && now >= due) {
                        /* Still changing (a writer rewriting it in place, seen by the
                         * stat() alone): a half-written spec could parse. */
                        if (file_stamp_update(&w->stamp, w->path, now)) {
                                due = now + SPEC_WATCH_DEBOUNCE_MS;
                                continue;
                        }
                        due = 0;
                        look(w);
                }
                if (retry_due && now >= retry_due) {
                        pthread_mutex_lock(&w->lock);
                        if (w->retry_due == retry_due)
                                w->retry_due = 0;
                        pthread_mutex_unlock(&w->lock);
                        look(w); /* the content is unseen: a SIGHUP, unless a look since took it */
                }
        }
        return NULL;
}

static struct spec_watch *spec_watch_free(struct spec_watch *w) {
        if (!w)
                return NULL;
        if (w->inotify_fd >= 0)
                close(w->inotify_fd);
        if (w->stop_fd >= 0)
                close(w->stop_fd);
        if (w->wake_fd >= 0)
                close(w->wake_fd);
        free(w->path);
        free(w->dir);
        free(w->base_copy);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
}

static inline void spec_watch_freep(struct spec_watch **w) {
        spec_watch_free(*w);
}

int spec_watch_start(const char *path, const struct spec_print *seen, pthread_t target, struct spec_watch **ret) {
        _cleanup_(spec_watch_freep) struct spec_watch *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->stop_fd = w->wake_fd = w->inotify_fd = w->wd = -1;
        pthread_mutex_init(&w->lock, NULL);
        w->target = target;
        w->path = strdup(path);
        _cleanup_free_ char *dir_copy = strdup(path);
        w->base_copy = strdup(path);
        if (!w->path || !dir_copy || !w->base_copy)
                return -ENOMEM;
        w->dir = strdup(dirname(dir_copy));
        if (!w->dir)
                return -ENOMEM;
        w->base = basename(w->base_copy);
        w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->stop_fd < 0)
                return -errno;
        w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->wake_fd < 0)
                return -errno;
        w->inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        w->inotify_error = w->inotify_fd < 0 ? errno : 0;
        watch_dir(w);
        w->look_first = seen != NULL;
        if (seen)
                w->seen = *seen;
        else
                spec_watch_print(w->path, &w->seen);
        w->seen_valid = true;
        (void) file_stamp_update(&w->stamp, w->path, time_now_ms());
        int r = pthread_create(&w->thread, NULL, watch_thread, w);
        if (r != 0)
                return -r;
        *ret = TAKE_PTR(w);
        return 0;
}

void spec_watch_note_signal(struct spec_watch *w, const siginfo_t *info) {
        /* pthread_kill() arrives as SI_TKILL from this process; kill(1),
         * systemctl reload and the like as SI_USER from another. */
        if (!w || (info->si_code == SI_TKILL && info->si_pid == getpid()))
                return;
        /* Before the reload reads the file: a change after this is seen and
         * reloaded again, never lost. */
        struct spec_print now;
        spec_watch_print(w->path, &now);
        pthread_mutex_lock(&w->lock);
        w->seen = now;
        w->seen_valid = true;
        pthread_mutex_unlock(&w->lock);
}

void spec_watch_reload_failed(struct spec_watch *w) {
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        uint64_t before = w->retry_ms;
        w->retry_ms = before ? before * 2 : SPEC_WATCH_RETRY_MS;
        if (w->retry_ms > SPEC_WATCH_RETRY_MAX_MS)
                w->retry_ms = SPEC_WATCH_RETRY_MAX_MS;
        uint64_t step = w->retry_ms;
        /* A credentials file may be what was missing: the same bytes may load later. */
        w->seen_valid = false;
        w->retry_due = time_now_ms() + step;
        pthread_mutex_unlock(&w->lock);
        uint64_t one = 1;
        (void) !write(w->wake_fd, &one, sizeof(one)); /* the counter cannot near UINT64_MAX: one a reload */
        if (step != before) /* once a step: at the cap, a line a minute would be noise */
                log_info("spec not applied, looking at it again in %" PRIu64 " s path=\"%s\"", step / 1000, w->path);
}

void spec_watch_reload_applied(struct spec_watch *w) {
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->retry_ms = 0;
        w->retry_due = 0;
        pthread_mutex_unlock(&w->lock);
}

struct spec_watch *spec_watch_stop(struct spec_watch *w) {
        if (!w)
                return NULL;
        uint64_t one = 1;
        if (write(w->stop_fd, &one, sizeof(one)) != sizeof(one)) {
                /* Not seen in practice (an eventfd takes 1 until its counter nears
                 * UINT64_MAX): the thread may still use w, so it is left to it. */
                (void) pthread_detach(w->thread);
                return NULL;
        }
        (void) pthread_join(w->thread, NULL);
        return spec_watch_free(w);
}
