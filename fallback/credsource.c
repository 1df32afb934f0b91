/* SPDX-License-Identifier: Apache-2.0 */
/* Where an endpoint's credentials come from, and when they are looked at
 * again: a credentials file re-read when it changes (a Kubernetes Secret
 * volume swaps a symlink to update it; a stat a second at most tells), a
 * credential helper run again when its answer's lifetime is over. A source
 * keeps the last good credentials when a new read or run fails, and says so
 * once through an event. When the credentials change, the endpoint's tokens
 * (got with the old ones) are dropped. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/filestamp.h"
#include "common/macro.h"
#include "common/time.h"
#include "fallback/credhelper.h"
#include "fallback/fallback-internal.h"

#define CREDSOURCE_STAT_INTERVAL_MS 1000
#define CREDSOURCE_HELPER_RETRY_MS 10000 /* a failed helper is not run again sooner */
#define CREDSOURCE_GRANT_WAIT_MS 30000 /* a request without a deadline waits this long for another's grant */

struct credsource {
        /* Taken alone: nothing else is locked under it, nor it under another lock. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        char *file;   /* credentials_file, or NULL */
        char *helper; /* credential_helper's command, or NULL */
        uint64_t lifetime_ms, timeout_ms;
        struct credentials *creds; /* the last good ones; NULL: none (yet) */
        struct file_stamp stamp;   /* file: as it was when creds were read */
        bool busy;                 /* one thread re-reads the file or runs the helper */
        bool granting;             /* one thread trades the identity token (fallback_creds_grant_begin()) */
        /* The identity token as the file or helper gave it, when the realm has
         * since rotated it (creds hold the newer one); NULL: not rotated. */
        char *rotated_from;
        bool failing;              /* the last look failed and was reported */
        uint64_t fresh_until;      /* helper: creds' lifetime ends (CLOCK_MONOTONIC ms) */
        uint64_t retry_at;         /* helper: after a failure, not run again before */
};

struct credsource *fallback_credsource_free(struct credsource *cs) {
        if (!cs)
                return NULL;
        credentials_free(cs->creds);
        secret_free(cs->rotated_from);
        free(cs->file);
        free(cs->helper);
        pthread_mutex_destroy(&cs->lock);
        pthread_cond_destroy(&cs->cond);
        free(cs);
        return NULL;
}

int fallback_credsource_new(const struct fallback_endpoint_config *c, struct credentials *creds,
                            const struct file_stamp *stamp, struct credsource **ret) {
        struct credsource *cs = calloc(1, sizeof(*cs));
        if (!cs) {
                credentials_free(creds);
                return -ENOMEM;
        }
        pthread_mutex_init(&cs->lock, NULL);
        time_cond_init(&cs->cond);
        cs->creds = creds;
        if (stamp)
                cs->stamp = *stamp;
        cs->lifetime_ms = c->credential_helper_lifetime_ms ? c->credential_helper_lifetime_ms
                                                           : FALLBACK_CREDENTIAL_HELPER_LIFETIME_MS;
        cs->timeout_ms = c->credential_helper_timeout_ms ? c->credential_helper_timeout_ms
                                                         : FALLBACK_CREDENTIAL_HELPER_TIMEOUT_MS;
        if ((c->credentials_file && !(cs->file = strdup(c->credentials_file))) ||
            (c->credential_helper && !(cs->helper = strdup(c->credential_helper)))) {
                fallback_credsource_free(cs);
                return -ENOMEM;
        }
        *ret = cs;
        return 0;
}

/* fresh, just read from the file or the helper (or at a reload), gives back
 * the identity token `from` that the realm has since rotated to `to`: it is
 * the same credentials, not new ones. The realm refuses `from` now (it
 * rotated it away), so `to` stays in use; only a token the source did not
 * give before is taken as new. Returns whether fresh was changed (-ENOMEM
 * leaves it as it is: the next grant is refused, a 401, and the event says so). */
static bool keep_rotated(struct credentials *fresh, const char *from, const char *to) {
        if (!fresh || !fresh->identity_token || !from || !to || strcmp(fresh->identity_token, from) != 0)
                return false;
        char *copy = strdup(to);
        if (!copy)
                return false;
        secret_free(fresh->identity_token);
        fresh->identity_token = copy;
        return true;
}

bool fallback_credsource_take_over(struct credsource *old, struct credsource *new) {
        if (!old || !new)
                return old != new;
        pthread_mutex_lock(&old->lock);
        struct credentials *had = credentials_dup(old->creds);
        char *from = old->rotated_from ? strdup(old->rotated_from) : NULL;
        bool oom = (old->creds && !had) || (old->rotated_from && !from);
        uint64_t fresh_until = old->fresh_until;
        bool same_helper = old->helper && new->helper && strcmp(old->helper, new->helper) == 0;
        pthread_mutex_unlock(&old->lock);
        pthread_mutex_lock(&new->lock);
        /* The same helper's answer is as good as before the reload: not asked again for it. */
        if (same_helper && !new->creds && had) {
                new->creds = credentials_dup(had);
                new->fresh_until = new->creds ? fresh_until : 0;
        }
        /* A reload that reads the original token again keeps the rotated one;
         * a source that holds the rotated token (kept so, or the same helper's
         * answer taken over) remembers what it was rotated from. */
        (void) keep_rotated(new->creds, from, had ? had->identity_token : NULL);
        if (from && had && !new->rotated_from && new->creds && new->creds->identity_token && had->identity_token &&
            strcmp(new->creds->identity_token, had->identity_token) == 0)
                new->rotated_from = TAKE_PTR(from);
        bool differ = oom || !credentials_equal(had, new->creds);
        pthread_mutex_unlock(&new->lock);
        credentials_free(had);
        secret_free(from);
        return differ;
}

void fallback_creds_event(struct fetch *f, const struct ep *e, enum fallback_event_type type, struct event_buf *evb,
                          const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(evb->reason, sizeof(evb->reason), fmt, ap);
        va_end(ap);
        evb->ev = (struct fallback_event) { .type = type, .registry = f->reg->host, .endpoint = e->url,
                                            .reason = evb->reason };
        evb->set = true;
}

/* What a fresh look found (fresh: NULL with why set when it failed) becomes
 * the source's state; under cs->lock. Returns whether the credentials changed. */
static bool take_locked(struct fetch *f, const struct ep *e, struct credentials *fresh, const char *what,
                        const char *why, struct event_buf *evb) {
        struct credsource *cs = e->cs;
        if (!fresh) {
                if (!cs->failing)
                        fallback_creds_event(f, e, FALLBACK_EVENT_CREDENTIALS_FAILED, evb, "%s: %s; %s", what, why,
                                             cs->creds ? "the last good credentials stay in use" : "none to use");
                cs->failing = true;
                return false;
        }
        if (!keep_rotated(fresh, cs->rotated_from, cs->creds ? cs->creds->identity_token : NULL)) {
                /* New credentials from the file or helper: nothing rotated yet. */
                cs->rotated_from = secret_free(cs->rotated_from);
        }
        bool changed = !credentials_equal(cs->creds, fresh);
        if (changed || cs->failing)
                fallback_creds_event(f, e, FALLBACK_EVENT_CREDENTIALS_UPDATED, evb, "%s: %s", what,
                                     changed ? "new credentials in use" : "readable again, the credentials are the same");
        cs->failing = false;
        credentials_free(cs->creds);
        cs->creds = fresh;
        return changed;
}

/* The file, if it changed since it was read: read again (outside the lock). */
static bool look_at_file(struct fetch *f, const struct ep *e, struct event_buf *evb) {
        struct credsource *cs = e->cs;
        uint64_t now = time_now_ms();
        pthread_mutex_lock(&cs->lock);
        bool due = !cs->busy && file_stamp_due(&cs->stamp, now, CREDSOURCE_STAT_INTERVAL_MS);
        struct file_stamp stamp = cs->stamp;
        if (due)
                cs->busy = true;
        pthread_mutex_unlock(&cs->lock);
        if (!due)
                return false;

        struct credentials *fresh = NULL;
        char why[EVENT_REASON_MAX] = "";
        struct file_stamp before = stamp;
        bool looked = file_stamp_update(&stamp, cs->file, now);
        if (looked) {
                struct error_list errors;
                error_list_init(&errors, "");
                int r = credentials_load(cs->file, e->host, &fresh, &errors);
                /* A read that failed for a reason of its own (EMFILE under load,
                 * ENOMEM, EACCES for a moment), not for what the file says: the
                 * change is not taken as seen, and is read again a second later. */
                if (r < 0 && r != -EINVAL && r != -EFBIG) {
                        before.checked_ms = now;
                        stamp = before;
                }
                if (r >= 0 && !fresh)
                        snprintf(why, sizeof(why), "no credentials for %s", e->host);
                else if (r < 0 && errors.n > 0 && errors.items[0].line > 0)
                        snprintf(why, sizeof(why), "%u:%u: %.200s", errors.items[0].line, errors.items[0].column,
                                 errors.items[0].message);
                else if (r < 0 && errors.n > 0) {
                        /* A read error names the file, which the event names already. */
                        const char *m = errors.items[0].message;
                        size_t len = strlen(cs->file);
                        if (strncmp(m, cs->file, len) == 0 && strncmp(m + len, ": ", 2) == 0)
                                m += len + 2;
                        snprintf(why, sizeof(why), "%.200s", m);
                } else if (r < 0)
                        snprintf(why, sizeof(why), "%s", strerror(-r));
        }
        bool changed = false;
        pthread_mutex_lock(&cs->lock);
        cs->stamp = stamp;
        cs->busy = false;
        if (looked)
                changed = take_locked(f, e, fresh, cs->file, why, evb);
        pthread_mutex_unlock(&cs->lock);
        return changed;
}

/* Waits under cs->lock while *flag is set (another thread's helper run or
 * grant), bounded by f's deadline, cap_ms from now and its cancellation.
 * 0 once the flag is clear, -ETIMEDOUT or -ECANCELED. */
static int wait_while_locked(struct credsource *cs, const bool *flag, struct fetch *f, uint64_t cap_ms) {
        uint64_t give_up = time_now_ms() + cap_ms;
        while (*flag) {
                int r = fallback_wait_slice(f, &cs->cond, &cs->lock, give_up);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool request_cancelled(void *userdata) {
        const struct fallback_request *req = userdata;
        return req->cancelled && req->cancelled(req->cancel_userdata);
}

/* The helper's answer, fresh: a cached one within its lifetime, or a new
 * run (one per endpoint at a time). While one runs, the others go on with
 * the last good answer if there is one (a hanging helper must not hold every
 * request up), else wait for it within their deadline. The run itself ends
 * at the request's deadline or cancellation too; such a cut is no verdict on
 * the helper: nothing is reported, and the next request runs it again. */
static void ask_helper(struct fetch *f, const struct ep *e, bool *ret_changed, struct event_buf *evb) {
        struct credsource *cs = e->cs;
        pthread_mutex_lock(&cs->lock);
        for (;;) {
                uint64_t now = time_now_ms();
                if ((cs->creds && now < cs->fresh_until) || (!cs->busy && now < cs->retry_at) ||
                    (cs->busy && cs->creds)) {
                        pthread_mutex_unlock(&cs->lock);
                        return;
                }
                if (!cs->busy)
                        break;
                /* Waiters give up at the run's own bound (and its reaping) at most. */
                if (wait_while_locked(cs, &cs->busy, f, cs->timeout_ms + 2000) < 0) {
                        pthread_mutex_unlock(&cs->lock);
                        return; /* with whatever there is */
                }
        }
        cs->busy = true;
        pthread_mutex_unlock(&cs->lock);

        uint64_t timeout = cs->timeout_ms, deadline = f->req->deadline_ms, now = time_now_ms();
        bool cut = deadline && (deadline <= now || deadline - now < timeout);
        if (cut)
                timeout = deadline > now ? deadline - now : 1;
        struct credentials *fresh = NULL;
        char why[CREDHELPER_REASON_MAX] = "";
        int r = credhelper_get(cs->helper, e->host, timeout, request_cancelled, (void *) f->req, &fresh, why,
                               sizeof(why));
        if (r == -ENOMEM)
                snprintf(why, sizeof(why), "out of memory");

        pthread_mutex_lock(&cs->lock);
        cs->busy = false;
        now = time_now_ms();
        /* Cut by the request, not the helper's fault: its answer is still wanted, by the next request. */
        bool verdict = r != -ECANCELED && !(cut && r == -ETIMEDOUT);
        if (verdict) {
                if (fresh) {
                        cs->fresh_until = now + cs->lifetime_ms;
                        cs->retry_at = 0;
                } else
                        cs->retry_at = now + CREDSOURCE_HELPER_RETRY_MS;
                *ret_changed = take_locked(f, e, fresh, cs->helper, why, evb);
                /* A helper that fails again later is reported again: it is run only every so often. */
                if (!fresh)
                        cs->failing = false;
        }
        pthread_cond_broadcast(&cs->cond);
        pthread_mutex_unlock(&cs->lock);
}

int fallback_creds_get(struct fetch *f, const struct ep *e, struct credentials **ret) {
        struct credsource *cs = e->cs;
        struct event_buf evb = { 0 };
        bool changed = false;
        if (!cs) {
                f->tokens_gen = fallback_tokens_gen(e->st);
                *ret = NULL;
                return 0;
        }
        if (cs->file)
                changed = look_at_file(f, e, &evb);
        else if (cs->helper)
                ask_helper(f, e, &changed, &evb);
        if (changed)
                fallback_tokens_drop(e->st);
        fallback_emit(f->fb, &evb);
        /* Taken before the copy: credentials that change after it leave a
         * newer generation behind, and the token got with this copy is not
         * kept (one that change between the two only costs a token fetch). */
        f->tokens_gen = fallback_tokens_gen(e->st);
        pthread_mutex_lock(&cs->lock);
        struct credentials *c = credentials_dup(cs->creds);
        bool oom = cs->creds && !c;
        pthread_mutex_unlock(&cs->lock);
        if (oom)
                return -ENOMEM;
        *ret = c;
        return 0;
}

int fallback_creds_grant_begin(struct fetch *f, const struct ep *e, const char *used, char **ret) {
        struct credsource *cs = e->cs;
        if (!cs) {
                *ret = strdup(used);
                return *ret ? 0 : -ENOMEM;
        }
        pthread_mutex_lock(&cs->lock);
        int r = wait_while_locked(cs, &cs->granting, f, CREDSOURCE_GRANT_WAIT_MS);
        if (r < 0) {
                pthread_mutex_unlock(&cs->lock);
                return r;
        }
        /* Read now, under the lock, not from the attempt's copy: a grant that
         * ran meanwhile may have rotated the token that copy holds away. (A
         * source that holds no identity token any more gives the copy's: the
         * attempt began with it, and the realm's answer decides.) */
        const char *current = cs->creds && cs->creds->identity_token ? cs->creds->identity_token : used;
        char *copy = strdup(current);
        if (copy)
                cs->granting = true;
        pthread_mutex_unlock(&cs->lock);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

void fallback_creds_grant_end(const struct ep *e, const char *used, const char *fresh) {
        struct credsource *cs = e->cs;
        if (!cs)
                return;
        pthread_mutex_lock(&cs->lock);
        cs->granting = false;
        /* Only if the source still holds the token that was traded: a newer
         * file or helper answer wins over what an older token brought. */
        if (fresh && strcmp(fresh, used) != 0 && cs->creds && cs->creds->identity_token &&
            strcmp(cs->creds->identity_token, used) == 0) {
                char *copy = strdup(fresh);
                /* The first rotation remembers what the file or helper gave (see keep_rotated()). */
                char *from = cs->rotated_from ? NULL : strdup(used);
                if (copy && (cs->rotated_from || from)) {
                        secret_free(cs->creds->identity_token);
                        cs->creds->identity_token = TAKE_PTR(copy);
                        if (from)
                                cs->rotated_from = TAKE_PTR(from);
                }
                secret_free(copy);
                secret_free(from);
        }
        pthread_cond_broadcast(&cs->cond);
        pthread_mutex_unlock(&cs->lock);
}
