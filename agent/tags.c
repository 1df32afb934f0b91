/* SPDX-License-Identifier: Apache-2.0 */
/* Tag lists: one page of GET /v2/<name>/tags/list through the chain, as the
 * registry paginates it, remembered for a while (TAGS_TTL_MS) so that a burst
 * of the same question (containerd, crictl, the prefetch worker) costs one
 * upstream request. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/pull-internal.h"
#include "common/macro.h"
#include "common/reference.h"
#include "common/time.h"

#define TAGS_CACHE_PAGE_MAX (256 * 1024) /* bigger tag list pages are passed on, not remembered */
#define TAGS_TTL_MS 30000                /* how long a tag list page is served from memory */

void tags_cache_free(struct pull *p) {
        for (size_t i = 0; i < TAGS_CACHE_SLOTS; i++) {
                free(p->tags_cache[i].body);
                free(p->tags_cache[i].next_last);
        }
}

static void tags_key(char *key, size_t size, const char *registry, const char *repository, unsigned n,
                     const char *last) {
        snprintf(key, size, "%s\n%s\n%u\n%s", registry, repository, n, last ? last : "");
}

/* What an access verdict other than ACCESS_ALLOW means for tags_page()'s caller. */
static int refusal(enum access_verdict v, const struct outcome *o) {
        return v == ACCESS_CHALLENGE    ? -EACCES
               : v == ACCESS_NOT_FOUND ? -ENOENT
               : o->error < 0          ? o->error
                                       : -EHOSTUNREACH;
}

/* The slot's page for key, copied (with its share of the budget), if it is
 * fresh and may go to this request (a private repository's only with
 * private_ok): 0, -ENOENT (none), -ENOMEM, -ENOBUFS. */
static int slot_copy(struct pull *p, struct tags_slot *slot, const char *key, bool private_ok, void **ret_body,
                     size_t *ret_size, char **ret_next, struct budget_hold *held) {
        int r = -ENOENT;
        pthread_mutex_lock(&p->tags_lock);
        if (strcmp(slot->key, key) == 0 && time_now_ms() - slot->at_ms < TAGS_TTL_MS &&
            (!slot->private_repo || private_ok) &&
            (r = budget_hold_reserve(held, &p->budget, slot->size ? slot->size : 1)) == 0) {
                void *body = malloc(slot->size ? slot->size : 1);
                char *next = slot->next_last ? strdup(slot->next_last) : NULL;
                if (body && (next || !slot->next_last)) {
                        memcpy(body, slot->body, slot->size);
                        *ret_body = body;
                        *ret_size = slot->size;
                        *ret_next = next;
                } else {
                        free(body);
                        free(next);
                        r = -ENOMEM;
                }
        }
        pthread_mutex_unlock(&p->tags_lock);
        return r;
}

int tags_page(struct pull *p, const char *registry, const char *repository, unsigned n, const char *last,
              struct tags_access *ta, void **ret_body, size_t *ret_size, char **ret_next_last,
              struct budget_hold *ret_held) {
        char key[TAGS_KEY_MAX];
        if (ta)
                ta->answer = (struct access_answer) { .how = ACCESS_HOW_NONE, .age = -1 };
        if ((last && !reference_tag_is_valid(last)) || !reference_path_is_valid(repository) ||
            strlen(registry) + strlen(repository) + 160 > sizeof(key))
                return -EINVAL;
        tags_key(key, sizeof(key), registry, repository, n, last);
        uint32_t h = 2166136261u;
        for (const char *c = key; *c; c++)
                h = (h ^ (unsigned char) *c) * 16777619u;
        struct tags_slot *slot = &p->tags_cache[h % TAGS_CACHE_SLOTS];
        void *body = NULL;
        char *next = NULL;
        size_t size = 0;
        _cleanup_hold_ struct budget_hold held = {};

        struct spec_ref *sr = spec_ref_get(p);
        const struct spec_registry *reg = pull_registry(sr->spec, registry, false);
        int r = reg ? 0 : -ENXIO;
        /* A client's list of a private repository is judged as its content is
         * (agent/access.c): the list's own GET is the origin's question. */
        struct access_query aq = { .reg = reg, .repository = repository, .kind = FALLBACK_TAGS,
                                   .reference = "tags/list", .client = ta ? ta->client : NULL,
                                   .authorization = ta ? ta->authorization : NULL, .may_block = true };
        enum access_verdict v = ACCESS_ALLOW;
        if (r == 0 && ta) {
                v = access_check(p, &aq, &ta->answer, &ta->outcome);
                r = v == ACCESS_ALLOW || v == ACCESS_ASK ? 0 : refusal(v, &ta->outcome);
        }
        /* Served from memory for a while: containerd, crictl and the prefetch
         * worker asking for the same list in a burst cost one upstream request.
         * A private repository's list only to credentials with a fresh verdict
         * (not to layerd's own question, ta NULL: it has none). */
        if (r == 0 && v == ACCESS_ALLOW) {
                r = slot_copy(p, slot, key, ta && ta->answer.private_repo, &body, &size, &next, &held);
                if (r != -ENOENT) {
                        spec_ref_put(p, sr);
                        goto out;
                }
                r = 0;
        }
        if (r < 0) {
                spec_ref_put(p, sr);
                goto out;
        }

        struct fallback_request req = pull_upstream_request(p, reg->host, repository, FALLBACK_TAGS, NULL, false);
        req.tags_n = n;
        req.tags_last = last;
        struct fallback_client_auth view;
        req.client_auth = ta && ta->answer.with_client ? access_client_view(ta->client, &view) : NULL;
        struct fallback_response fr;
        r = fallback_fetch(p->fb, &req, &fr);
        /* Recorded private before the origin answers with anything stored: what
         * the page is remembered as. */
        bool private_page = private_repo(p->private, reg->host, repository);
        /* Judged: the origin's question, a fetch with the client's credentials (its
         * answer renews or drops their verdict), or an anonymous one refused. */
        if (ta && (v == ACCESS_ASK || ta->answer.with_client || (r >= 0 && fr.auth_refused))) {
                v = access_judge(p, &aq, &ta->answer, r, &fr, &ta->outcome);
                if (v == ACCESS_ALLOW && ta->answer.how == ACCESS_HOW_GRACE) {
                        /* The origin is down: what is kept is served within auth_outage_grace. */
                        fallback_response_done(&fr);
                        spec_ref_put(p, sr);
                        r = slot_copy(p, slot, key, true, &body, &size, &next, &held);
                        if (r == -ENOENT)
                                r = -EHOSTUNREACH;
                        goto out;
                }
                if (v != ACCESS_ALLOW) {
                        fallback_response_done(&fr);
                        spec_ref_put(p, sr);
                        r = refusal(v, &ta->outcome);
                        goto out;
                }
        }
        spec_ref_put(p, sr);
        struct outcome o;
        r = outcome_from_upstream(&o, r, &fr);
        if (r == 0) {
                char **tags = NULL;
                size_t nt = 0;
                /* Only a well-formed page is passed on or remembered. */
                r = fallback_tags_parse(fr.body, fr.size >= 0 ? (size_t) fr.size : 0, &tags, &nt);
                fallback_strv_free(tags, nt);
                if (r == -EBADMSG)
                        r = -EHOSTUNREACH;
        } else if (r != -ENOENT && r != -ENOBUFS)
                r = -EHOSTUNREACH;
        if (r >= 0 && fr.next_last && !reference_tag_is_valid(fr.next_last)) {
                /* distribution's "last" is a tag: anything else (it goes into
                 * our own Link header) ends the list here. */
                free(fr.next_last);
                fr.next_last = NULL;
        }
        /* Small pages are remembered (64 slots of at most TAGS_CACHE_PAGE_MAX). */
        if (r >= 0 && (size_t) fr.size <= TAGS_CACHE_PAGE_MAX) {
                void *copy = malloc((size_t) fr.size ? (size_t) fr.size : 1);
                char *copy_next = fr.next_last ? strdup(fr.next_last) : NULL;
                if (copy && (copy_next || !fr.next_last)) {
                        memcpy(copy, fr.body, (size_t) fr.size);
                        pthread_mutex_lock(&p->tags_lock);
                        free(slot->body);
                        free(slot->next_last);
                        snprintf(slot->key, sizeof(slot->key), "%s", key);
                        slot->at_ms = time_now_ms();
                        slot->private_repo = private_page || (ta && ta->answer.with_client);
                        slot->body = copy;
                        slot->size = (size_t) fr.size;
                        slot->next_last = copy_next;
                        pthread_mutex_unlock(&p->tags_lock);
                } else {
                        free(copy);
                        free(copy_next);
                }
        }
        if (r >= 0) {
                size = (size_t) fr.size;
                body = TAKE_PTR(fr.body);
                held = budget_hold_take(&fr.held);
                next = TAKE_PTR(fr.next_last);
        }
        fallback_response_done(&fr);
out:
        if (r < 0) {
                free(body);
                free(next);
                return r;
        }
        *ret_body = body;
        *ret_size = size;
        *ret_next_last = next;
        *ret_held = budget_hold_take(&held);
        return 0;
}

int pull_tags_page(struct pull *p, const char *registry, const char *repository, unsigned n, const char *last,
                   void **ret_body, size_t *ret_size, char **ret_next_last) {
        /* The in-process API's pages are the caller's (prefetch reads one at a
         * time per round, bounded by prefetch.concurrency): the budget is
         * given back as the page is handed over. */
        struct budget_hold held = {};
        int r = tags_page(p, registry, repository, n, last, NULL, ret_body, ret_size, ret_next_last, &held);
        budget_hold_release(&held);
        return r;
}

