/* SPDX-License-Identifier: Apache-2.0 */
/* Who may read what of a private repository. The cache is keyed by digest
 * and shared by every client; a registry's origin is the only judge of who
 * may read a repository. So:
 * - a repository the origin answered 401/403 for (agent/private.h, kept on
 *   disk) is served only to a request whose credentials the origin accepted
 *   for it within auth_verdict_ttl (agent/verdict.h, in memory); an older or
 *   missing verdict is asked again with a HEAD of the requested object, with
 *   the requester's credentials; without credentials the client is challenged
 *   (containerd then sends the pull's: docs/agent.md); a tag list is judged
 *   the same way, its own GET being the question (agent/tags.c);
 * - a digest fetched for a private repository is served under repository R
 *   only when it was fetched for R, or the origin confirms R has it (a HEAD
 *   under R's name, with the requester's credentials where R needs them):
 *   `GET /v2/<public>/blobs/<private digest>` asks the origin, which says 404;
 * - while the origin cannot answer (no answer, 5xx, breaker open), credentials
 *   it accepted within auth_outage_grace still read what it accepted them for;
 * - without auth_passthrough the credentials are layerd's own (the endpoint's
 *   identity), and their verdict is kept the same way: one HEAD per
 *   auth_verdict_ttl, not one per request. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "agent/log.h"
#include "agent/pull-internal.h"
#include "common/time.h"

static const char *const use_names[_ACCESS_USE_MAX] = {
        [ACCESS_USE_NONE] = "-", [ACCESS_USE_PASSTHROUGH] = "passthrough", [ACCESS_USE_CHALLENGE] = "challenge",
};
static const char *const how_names[_ACCESS_HOW_MAX] = {
        [ACCESS_HOW_NONE] = "-",
        [ACCESS_HOW_VERDICT_HIT] = "verdict-hit",
        [ACCESS_HOW_VERDICT_MISS] = "verdict-miss",
        [ACCESS_HOW_CONFIRMED] = "confirmed",
        [ACCESS_HOW_GRACE] = "grace",
};

const char *access_use_to_string(enum access_use u) {
        return u >= 0 && u < _ACCESS_USE_MAX ? use_names[u] : "-";
}

const char *access_how_to_string(enum access_how h) {
        return h >= 0 && h < _ACCESS_HOW_MAX ? how_names[h] : "-";
}

const struct fallback_client_auth *access_client_view(const struct client_auth *c, struct fallback_client_auth *buf) {
        if (!c || !c->set)
                return NULL;
        *buf = (struct fallback_client_auth) { .user = c->user, .password = c->password, .key = c->key };
        return buf;
}

/* registry/repository needs credentials: noted in memory, recorded on disk
 * with the first content stored for it. */
static void note_private(struct pull *p, const char *registry, const char *repository) {
        atomic_fetch_add(&p->auth_refusals, 1);
        if (!private_repo(p->private, registry, repository)) {
                private_note(p->private, registry, repository, time_now_ms());
                log_notice("private repository: the origin asks for credentials ns=%s repo=%s "
                           "auth=passthrough", registry, repository);
        }
}

void access_refused(struct pull *p, const char *registry, const char *repository, const struct client_auth *client) {
        if (client && client->set) {
                struct verdict_key k;
                verdict_key(client->key, registry, repository, &k);
                verdict_forget(&p->verdicts, &k);
        }
        note_private(p, registry, repository);
}

/* One HEAD of q's object on the origin, with the answer's credentials. */
static int ask_origin(struct pull *p, const struct access_query *q, const struct access_answer *a,
                      struct fallback_response *fr) {
        struct fallback_request req = pull_upstream_request(p, q->reg->host, q->repository, q->kind, q->reference,
                                                            true);
        struct fallback_client_auth view;
        req.client_auth = a->with_client ? access_client_view(q->client, &view) : NULL;
        return fallback_fetch(p->fb, &req, fr);
}

enum access_verdict access_check(struct pull *p, const struct access_query *q, struct access_answer *a,
                                 struct outcome *o) {
        *a = (struct access_answer) { .how = ACCESS_HOW_NONE, .age = -1 };
        outcome_set(o, 0, NULL);
        /* Without pass-through, what was recorded private stays so (it may have been
         * fetched with a client's credentials before): only the origin's answer to
         * layerd's own request (anonymous, or the endpoint's credentials) opens it. */
        bool passthrough = q->reg->auth_passthrough;
        const char *host = q->reg->host;
        bool priv = private_repo(p->private, host, q->repository);
        bool here = false;
        bool dpriv = q->digest && private_digest(p->private, q->digest, host, q->repository, &here);
        if (!priv && (!dpriv || here))
                return ACCESS_ALLOW; /* public, as far as the origin said */
        a->private_repo = priv;
        a->elsewhere = dpriv && !here;
        /* Parsed only here: a public request (nearly all of them) never pays for
         * the base64 decode and the salted hash. Without pass-through the
         * client's credentials are not even read. */
        if (passthrough && !q->client->set && q->authorization) {
                atomic_fetch_add(&p->auth_parses, 1);
                (void) client_auth_parse(q->authorization, p->auth_salt, sizeof(p->auth_salt), q->client);
        }
        bool creds = passthrough && q->client->set;
        /* Toward a repository not known private, no credentials: it is asked anonymously
         * (a 401 then makes it private, and the client is challenged). */
        a->with_client = creds && priv;
        if (priv && !creds && passthrough) {
                outcome_set(o, -ENOENT, "the repository needs credentials");
                return ACCESS_CHALLENGE;
        }
        /* Whose verdict: the client's credentials', or without pass-through layerd's own. */
        if (creds || !passthrough) {
                verdict_key(creds ? q->client->key : p->own_key, host, q->repository, &a->key);
                a->has_key = true;
        }
        a->now_ms = time_now_ms();
        a->age = a->has_key ? verdict_age(&p->verdicts, &a->key, a->now_ms) : -1;
        if (priv && a->age >= 0 && (uint64_t) a->age < q->reg->auth_verdict_ttl_ms && !a->elsewhere) {
                a->how = ACCESS_HOW_VERDICT_HIT;
                return ACCESS_ALLOW;
        }
        if (!q->may_block)
                return ACCESS_WOULD_BLOCK;
        a->how = priv ? ACCESS_HOW_VERDICT_MISS : ACCESS_HOW_CONFIRMED;
        if (q->kind == FALLBACK_TAGS)
                return ACCESS_ASK;

        struct fallback_response fr;
        int r = ask_origin(p, q, a, &fr);
        enum access_verdict v = access_judge(p, q, a, r, &fr, o);
        fallback_response_done(&fr);
        return v;
}

enum access_verdict access_judge(struct pull *p, const struct access_query *q, struct access_answer *a, int r,
                                 const struct fallback_response *fr, struct outcome *o) {
        bool passthrough = q->reg->auth_passthrough;
        const char *host = q->reg->host;
        int status = r < 0 ? 503 : fr->status;
        bool refused = r >= 0 && fr->auth_refused;
        char why[FALLBACK_ERROR_MAX];
        snprintf(why, sizeof(why), "%s", r < 0 ? strerror(-r) : fr->error);
        if (r == -ECANCELED || r == -ENOBUFS) { /* shutdown, or our own memory budget: not the origin's word */
                outcome_set(o, r, r == -ENOBUFS ? OUTCOME_BUDGET_REASON : NULL);
                return ACCESS_UNAVAILABLE;
        }
        if (status == 200) {
                if (a->has_key && a->private_repo)
                        verdict_accept(&p->verdicts, &a->key, a->now_ms);
                if (a->elsewhere) {
                        /* The origin says R has it: R's name may serve it from now on. */
                        int k = private_confirm(p->private, host, q->repository, q->digest);
                        if (k < 0) {
                                outcome_set(o, k, "cannot record the origin's answer: %s", strerror(-k));
                                return ACCESS_UNAVAILABLE;
                        }
                }
                return ACCESS_ALLOW;
        }
        if (refused && a->has_key)
                verdict_forget(&p->verdicts, &a->key);
        if (refused && !passthrough) {
                outcome_set(o, -ENOENT, "the origin asks for credentials (auth_passthrough is off)");
                return ACCESS_NOT_FOUND;
        }
        if (refused) {
                note_private(p, host, q->repository);
                outcome_set(o, -ENOENT, q->client->set ? "the origin refused the credentials"
                                                       : "the repository needs credentials");
                return ACCESS_CHALLENGE;
        }
        if (status != 503) {
                outcome_set(o, -ENOENT, "the origin answered %d for this repository", status);
                return ACCESS_NOT_FOUND;
        }
        /* The origin is down: outage protection, for credentials it accepted lately. */
        if (a->private_repo && a->age >= 0 && (uint64_t) a->age < q->reg->auth_outage_grace_ms && !a->elsewhere) {
                a->how = ACCESS_HOW_GRACE;
                uint64_t held;
                if (throttle_pass(&p->grace_log, host, q->repository, a->now_ms, &held))
                        log_warning("origin unreachable, serving cached private content within auth_outage_grace "
                                    "verdict_age_s=%" PRId64 ": ns=%s repo=%s ref=%s auth=%s "
                                    "reason=\"%s\" suppressed=%" PRIu64,
                                    a->age / 1000, host, q->repository, q->reference,
                                    passthrough ? "passthrough" : "own", why, held);
                return ACCESS_ALLOW;
        }
        outcome_set(o, -EHOSTUNREACH, "the origin must confirm access and is unreachable: %s", why);
        return ACCESS_UNAVAILABLE;
}
