/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `layerd serve` re-reads its spec when the file changes on disk: a thread
 * watches the directory the spec's path is in (inotify; a Kubernetes
 * ConfigMap volume updates the file by swapping the directory's "..data"
 * symlink, which a watch on the resolved target would miss), and when the
 * file's bytes differ from the last seen, asks for the reload SIGHUP does. */

#include <pthread.h>
#include <signal.h>

#include "common/digest.h"

#define SPEC_WATCH_DEBOUNCE_MS 300 /* after the last event: an editor's or the kubelet's steps are one change */
#define SPEC_WATCH_STAT_MS 5000    /* a stat() as well, for changes inotify does not report (NFS, overlays) */
#define SPEC_WATCH_POLL_MS 2000    /* the stat() alone, when no inotify watch can be had */
#define SPEC_WATCH_RETRY_MS 5000   /* a rejected reload looked at again after this, doubling... */
#define SPEC_WATCH_RETRY_MAX_MS 60000 /* ...up to this, until one is applied */

struct spec_watch;

/* What the spec file held at one moment: its digest, or why it could not be read. */
struct spec_print {
        int error; /* 0, or a positive errno */
        struct digest digest;
};

/* Reads and hashes the file at path (bounded by SPEC_FILE_MAX); never fails:
 * a failure is recorded in ret->error. */
void spec_watch_print(const char *path, struct spec_print *ret);

/* Starts watching path (copied) and sends SIGHUP to thread target (which
 * must block it, as serve_block_signals() does) after each change of the
 * file's content; a change of its metadata alone (a touch, identical bytes
 * written again) sends nothing. seen is what the spec in force was loaded
 * from (taken before loading it, so a change during start-up is reloaded,
 * never lost); NULL: the file's current bytes count as seen. When
 * inotify cannot be had (no instance or watch left: fs.inotify limits), it
 * stats the file every SPEC_WATCH_POLL_MS instead and logs that once.
 * Returns 0 or -errno (no thread). */
int spec_watch_start(const char *path, const struct spec_print *seen, pthread_t target, struct spec_watch **ret);

/* For a SIGHUP about to be acted on (info as sigtimedwait() gave it): when it
 * came from elsewhere (kill -HUP, systemctl reload), the file's content now
 * counts as seen, so an edit followed by a SIGHUP is one reload, not two.
 * Call it before reloading. Accepts NULL w. */
void spec_watch_note_signal(struct spec_watch *w, const siginfo_t *info);

/* The reload just asked for was rejected (e.g. a credentials_file not there
 * yet: a Secret volume may update seconds after the ConfigMap): the file's
 * content counts as not seen, and it is looked at again after a backoff
 * (SPEC_WATCH_RETRY_MS doubling to SPEC_WATCH_RETRY_MAX_MS), a SIGHUP then
 * reloading it whether it changed or not. Accepts NULL w. */
void spec_watch_reload_failed(struct spec_watch *w);

/* The reload was applied: the backoff starts again from SPEC_WATCH_RETRY_MS. Accepts NULL w. */
void spec_watch_reload_applied(struct spec_watch *w);

/* Stops the thread and frees w; accepts NULL; returns NULL. */
struct spec_watch *spec_watch_stop(struct spec_watch *w);
