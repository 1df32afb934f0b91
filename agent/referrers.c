/* SPDX-License-Identifier: Apache-2.0 */
/* The OCI 1.1 referrers index of a manifest (GET /v2/<name>/referrers/<digest>):
 * what signature and SBOM tooling (cosign, notation, oras) asks to find what
 * refers to an image. The index changes upstream as artifacts are attached,
 * like a tag, so it follows the tag policy (manifest.c): the registry's
 * tag_ttl, then asked again, and the last one fetched when every upstream
 * fails; verification through the node's mirror keeps working during an
 * outage. The index is stored as content (by its sha256) with a record of
 * which subject it belongs to; the manifests it lists are fetched by digest
 * through the manifests route like any other. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/pull-internal.h"
#include "common/macro.h"
#include "common/reference.h"

void referrers_answer_done(struct referrers_answer *a) {
        free(a->body);
        budget_hold_release(&a->held);
        *a = (struct referrers_answer) { .cache = "-" };
}

/* The index a record names, from the cache. */
static int from_record(struct pull *p, const struct cache_tag *t, struct referrers_answer *a) {
        struct manifest_answer m = { .fd = -1 };
        int r = manifest_cached(p, &t->digest, FALLBACK_REFERRERS_MEDIA_TYPE, false, &m);
        if (r < 0)
                return r;
        a->body = TAKE_PTR(m.body);
        a->size = (size_t) m.size;
        a->held = budget_hold_take(&m.held);
        manifest_answer_done(&m);
        return 0;
}

static int ask_upstream(struct pull *p, const struct referrers_query *q, struct referrers_answer *a,
                        struct outcome *o, int *ret_fetched) {
        char ds[DIGEST_STRING_MAX];
        struct fallback_request req = pull_upstream_request(p, q->registry, q->repository, FALLBACK_REFERRERS,
                                                            digest_to_string(&q->subject, ds), false);
        struct fallback_client_auth view;
        req.client_auth = access_client_view(q->client, &view);
        struct fallback_response fr;
        int fetched = fallback_fetch(p->fb, &req, &fr);
        *ret_fetched = fetched;
        int r = outcome_from_upstream(o, fetched, &fr);
        if (fr.endpoint)
                snprintf(a->endpoint, sizeof(a->endpoint), "%s", fr.endpoint);
        if (r == -ENOENT && fr.status == 404)
                /* The spec's answer of a registry without the API; clients then use the tag schema. */
                outcome_set(o, -ENOENT, "the registry does not implement the referrers API (upstream answered 404)");
        o->auth_refused = r == -ENOENT && fr.auth_refused;
        struct fallback_referrers refs;
        if (r == 0 && fallback_referrers_parse(fr.body, fr.size > 0 ? (size_t) fr.size : 0, &refs) == 0)
                fallback_referrers_done(&refs);
        else if (r == 0)
                r = outcome_set(o, -EHOSTUNREACH, "upstream sent no referrers index");
        if (r < 0) {
                fallback_response_done(&fr);
                return r;
        }
        struct cache_tag now = { .size = (uint64_t) fr.size, .fetched_at = (int64_t) time(NULL) };
        snprintf(now.media_type, sizeof(now.media_type), "%s", FALLBACK_REFERRERS_MEDIA_TYPE);
        r = digest_buffer(DIGEST_SHA256, fr.body, (size_t) fr.size, &now.digest);
        if (r < 0) {
                fallback_response_done(&fr);
                return outcome_set(o, r, NULL);
        }
        /* A paginated index is only its first page: never recorded as the whole. */
        a->cache = fr.has_next ? "uncached" : "miss";
        if (!fr.has_next) {
                struct manifest_query mq = { .registry = q->registry, .repository = q->repository,
                                             .private_repo = q->private_repo };
                manifest_store(p, &mq, &now.digest, fr.body, now.size);
                (void) cache_referrers_put(p->cache, q->registry, q->repository, &q->subject, &now);
        }
        a->size = (size_t) fr.size;
        a->body = TAKE_PTR(fr.body);
        a->held = budget_hold_take(&fr.held);
        fallback_response_done(&fr);
        return outcome_set(o, 0, NULL);
}

int referrers_resolve(struct pull *p, const struct referrers_query *q, struct referrers_answer *a, struct outcome *o) {
        *a = (struct referrers_answer) { .cache = "-" };
        struct cache_tag known;
        bool have = cache_referrers_get(p->cache, q->registry, q->repository, &q->subject, &known) == 0;
        if (have && manifest_record_is_fresh(&known, q->tag_ttl_ms)) {
                int c = from_record(p, &known, a);
                if (c == 0) {
                        a->cache = "hit";
                        return outcome_set(o, 0, NULL);
                }
                if (c == -ENOBUFS)
                        return outcome_set(o, c, OUTCOME_BUDGET_REASON);
        }
        if (!q->may_block)
                return -EWOULDBLOCK;
        int fetched = 0;
        int r = ask_upstream(p, q, a, o, &fetched);
        if (r == 0)
                return 0;
        a->cache = "miss";
        if (!have || !manifest_record_may_stand(o, fetched) || from_record(p, &known, a) < 0)
                return r;
        a->cache = "stale";
        a->stale = true;
        char ds[DIGEST_STRING_MAX], name[DIGEST_STRING_MAX + 16];
        snprintf(name, sizeof(name), "subject=%s", digest_to_string(&q->subject, ds));
        manifest_record_stale_served(p, "referrers index", q->registry, q->repository, name, &known, o);
        return outcome_set(o, 0, NULL);
}

int pull_referrers_ensure(struct pull *p, const char *registry, const char *repository, const struct digest *subject,
                          void **ret_body, size_t *ret_size) {
        if (!reference_path_is_valid(repository))
                return -EINVAL;
        struct spec_ref *sr = spec_ref_get(p);
        const struct spec_registry *reg = pull_registry(sr->spec, registry, false);
        struct referrers_answer a = { .cache = "-" };
        struct outcome o;
        int r = -ENXIO;
        if (reg) {
                /* Prefetch with the endpoint's own credentials: recorded private like a client's fetch. */
                struct referrers_query q = { .registry = reg->host, .repository = repository, .subject = *subject,
                                             .tag_ttl_ms = reg->tag_ttl_ms, .may_block = true,
                                             .private_repo = private_repo(p->private, reg->host, repository) };
                r = referrers_resolve(p, &q, &a, &o);
        }
        spec_ref_put(p, sr);
        if (r < 0)
                return r;
        /* The in-process API's index is the caller's: the budget is given back as it is handed over. */
        budget_hold_release(&a.held);
        *ret_size = a.size;
        *ret_body = TAKE_PTR(a.body);
        referrers_answer_done(&a);
        return 0;
}
