/* SPDX-License-Identifier: Apache-2.0 */
/* Who may read what of a private repository. The cache is keyed by digest
 * and shared by every client; a registry's origin is the only judge of who
 * may read a repository. So:
 * - a repository the origin answered 401/403 for (agent/private.h, kept on
 *   disk) is served only to a request whose credentials the origin accepted
 *   for it within auth_verdict_ttl (agent/verdict.h, in memory); an older or
 *   missing verdict is asked again with a HEAD of the requested object, with
 *   the requester's credentials; without credentials the client is challenged
 *   (containerd then sends the pull's: docs/agent.md);
 * - a digest fetched for a private repository is served under repository R
 *   only when it was fetched for R, or the origin confirms R has it (a HEAD
 *   under R's name, with the requester's credentials where R needs them):
 *   `GET /v2/<public>/blobs/<private digest>` asks the origin, which says 404;
 * - while the origin cannot answer (no answer, 5xx, breaker open), credentials
 *   it accepted within auth_outage_grace still read what it accepted them for. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "agent/log.h"
#include "agent/pull-internal.h"
#include "common/time.h"

void access_refused(struct pull *p, const char *registry, const char *repository, const struct client_auth *client) {
        atomic_fetch_add(&p->auth_refusals, 1);
        if (client && client->set)
                verdict_forget(&p->verdicts, client->key, registry, repository);
        /* Noted in memory: recorded on disk with the first content stored for it. */
        if (!private_repo(p->private, registry, repository)) {
                private_note(p->private, registry, repository, time_now_ms());
                log_notice("private repository: the origin asks for credentials ns=%s repo=%s "
                           "auth=passthrough", registry, repository);
        }
}

/* One HEAD of q's object on the origin, with the answer's credentials. */
static int ask_origin(struct pull *p, const struct access_query *q, const struct access_answer *a,
                      struct fallback_response *fr) {
        struct fallback_request req = pull_upstream_request(p, q->reg->host, q->repository, q->kind, q->reference,
                                                            true);
        req.client_auth = a->client_auth;
        return fallback_fetch(p->fb, &req, fr);
}

enum access_verdict access_check(struct pull *p, const struct access_query *q, struct access_answer *a,
                                 struct outcome *o) {
        *a = (struct access_answer) { .how = "-" };
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
        bool creds = passthrough && q->client->set;
        /* Toward a repository not known private, no credentials: it is asked anonymously
         * (a 401 then makes it private, and the client is challenged). */
        if (creds && priv) {
                a->ca = (struct fallback_client_auth) { .user = q->client->user, .password = q->client->password,
                                                        .key = q->client->key };
                a->client_auth = &a->ca;
        }
        if (priv && !creds && passthrough) {
                outcome_set(o, -ENOENT, "the repository needs credentials");
                return ACCESS_CHALLENGE;
        }
        uint64_t now = time_now_ms();
        int64_t age = creds ? verdict_age(&p->verdicts, q->client->key, host, q->repository, now) : -1;
        if (priv && age >= 0 && (uint64_t) age < q->reg->auth_verdict_ttl_ms && (!dpriv || here)) {
                a->how = "verdict-hit";
                return ACCESS_ALLOW;
        }
        if (!q->may_block)
                return ACCESS_WOULD_BLOCK;
        a->how = priv ? "verdict-miss" : "confirmed";

        struct fallback_response fr;
        int r = ask_origin(p, q, a, &fr);
        int status = r < 0 ? 503 : fr.status;
        bool refused = r >= 0 && fr.auth_refused;
        char why[FALLBACK_ERROR_MAX];
        snprintf(why, sizeof(why), "%s", r < 0 ? strerror(-r) : fr.error);
        fallback_response_done(&fr);
        if (r == -ECANCELED || r == -ENOBUFS) { /* shutdown, or our own memory budget: not the origin's word */
                outcome_set(o, r, r == -ENOBUFS ? OUTCOME_BUDGET_REASON : NULL);
                return ACCESS_UNAVAILABLE;
        }
        if (status == 200) {
                if (creds && priv)
                        verdict_accept(&p->verdicts, q->client->key, host, q->repository, now);
                if (dpriv && !here) {
                        /* The origin says R has it: R's name may serve it from now on. */
                        int k = private_confirm(p->private, host, q->repository, q->digest);
                        if (k < 0) {
                                outcome_set(o, k, "cannot record the origin's answer: %s", strerror(-k));
                                return ACCESS_UNAVAILABLE;
                        }
                }
                return ACCESS_ALLOW;
        }
        if (refused && !passthrough) {
                outcome_set(o, -ENOENT, "the origin asks for credentials (auth_passthrough is off)");
                return ACCESS_NOT_FOUND;
        }
        if (refused) {
                access_refused(p, host, q->repository, q->client);
                outcome_set(o, -ENOENT, creds ? "the origin refused the credentials" : "the repository needs credentials");
                return ACCESS_CHALLENGE;
        }
        if (status != 503) {
                outcome_set(o, -ENOENT, "the origin answered %d for this repository", status);
                return ACCESS_NOT_FOUND;
        }
        /* The origin is down: outage protection, for credentials it accepted lately. */
        if (priv && age >= 0 && (uint64_t) age < q->reg->auth_outage_grace_ms && (!dpriv || here)) {
                a->how = "grace";
                uint64_t held;
                if (throttle_pass(&p->grace_log, host, q->repository, now, &held))
                        log_warning("origin unreachable, serving cached private content within auth_outage_grace "
                                    "verdict_age_s=%" PRId64 ": ns=%s repo=%s ref=%s auth=passthrough "
                                    "reason=\"%s\" suppressed=%" PRIu64,
                                    age / 1000, host, q->repository, q->reference, why, held);
                return ACCESS_ALLOW;
        }
        outcome_set(o, -EHOSTUNREACH, "the origin must confirm access and is unreachable: %s", why);
        return ACCESS_UNAVAILABLE;
}
