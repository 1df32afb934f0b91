/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's side of fallback/: the spec's mirrored registries turned into
 * endpoint chains, and fallback's events turned into log lines. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/log.h"
#include "common/macro.h"

/* Each endpoint's last failure, for `layerd status`: a fixed table (the
 * spec's endpoints are few; past it, the oldest entry is reused). */
#define LAST_ERRORS_MAX 64
static struct {
        pthread_mutex_t lock;
        struct {
                char endpoint[AGENT_ENDPOINT_TEXT_MAX], reason[AGENT_LAST_ERROR_MAX];
                int64_t when_s;
        } e[LAST_ERRORS_MAX];
} last_errors = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void last_error_record(const char *endpoint, const char *reason) {
        if (!endpoint || !reason)
                return;
        pthread_mutex_lock(&last_errors.lock);
        size_t slot = 0;
        for (size_t i = 0; i < LAST_ERRORS_MAX; i++) {
                if (strcmp(last_errors.e[i].endpoint, endpoint) == 0 || last_errors.e[i].endpoint[0] == '\0') {
                        slot = i;
                        break;
                }
                if (last_errors.e[i].when_s < last_errors.e[slot].when_s)
                        slot = i;
        }
        snprintf(last_errors.e[slot].endpoint, sizeof(last_errors.e[slot].endpoint), "%s", endpoint);
        snprintf(last_errors.e[slot].reason, sizeof(last_errors.e[slot].reason), "%s", reason);
        last_errors.e[slot].when_s = (int64_t) time(NULL);
        pthread_mutex_unlock(&last_errors.lock);
}

bool agent_upstream_last_error(const char *endpoint, char *buf, size_t size, int64_t *ret_when_s) {
        bool found = false;
        pthread_mutex_lock(&last_errors.lock);
        for (size_t i = 0; i < LAST_ERRORS_MAX && !found; i++)
                if (last_errors.e[i].endpoint[0] && strcmp(last_errors.e[i].endpoint, endpoint) == 0) {
                        snprintf(buf, size, "%s", last_errors.e[i].reason);
                        *ret_when_s = last_errors.e[i].when_s;
                        found = true;
                }
        pthread_mutex_unlock(&last_errors.lock);
        return found;
}

static void on_event(const struct fallback_event *ev, void *userdata) {
        (void) userdata;
        if ((ev->type == FALLBACK_EVENT_FAILOVER && !ev->answered) || ev->type == FALLBACK_EVENT_BREAKER_OPEN)
                last_error_record(ev->endpoint, ev->reason);
        switch (ev->type) {
        case FALLBACK_EVENT_FAILOVER:
                /* A mirror without the content is routine; a failing one is worth a warning. */
                if (ev->answered && !ev->last)
                        log_info("not on this endpoint, trying the next: ns=%s repo=%s ref=%s endpoint=%s reason=\"%s\"",
                                 ev->registry, ev->repository, ev->reference, ev->endpoint, ev->reason);
                else
                        log_warning("upstream failed, %s: ns=%s repo=%s ref=%s endpoint=%s reason=\"%s\"",
                                    ev->last ? "no endpoint left" : "trying the next endpoint", ev->registry,
                                    ev->repository, ev->reference, ev->endpoint, ev->reason);
                break;
        case FALLBACK_EVENT_BREAKER_OPEN:
                log_warning("circuit open: ns=%s endpoint=%s backoff_ms=%" PRIu64 " reason=\"%s\"", ev->registry,
                            ev->endpoint, ev->backoff_ms, ev->reason);
                break;
        case FALLBACK_EVENT_BREAKER_HALF_OPEN:
                log_info("circuit half-open, probing: ns=%s endpoint=%s", ev->registry, ev->endpoint);
                break;
        case FALLBACK_EVENT_BREAKER_CLOSED:
                log_notice("circuit closed: ns=%s endpoint=%s", ev->registry, ev->endpoint);
                break;
        case FALLBACK_EVENT_RESUME:
                log_info("resuming download: ns=%s repo=%s digest=%s endpoint=%s offset=%" PRIu64, ev->registry,
                         ev->repository, ev->reference, ev->endpoint, ev->offset);
                break;
        case FALLBACK_EVENT_RATELIMIT:
                /* Docker Hub's budget: worth a notice when a tenth or less is left. */
                agent_log(ev->ratelimit_limit > 0 && ev->ratelimit_remaining * 10 <= ev->ratelimit_limit ? LOG_NOTICE
                                                                                                       : LOG_DEBUG,
                          "pull rate limit: ns=%s endpoint=%s remaining=%" PRId64 " limit=%" PRId64, ev->registry,
                          ev->endpoint, ev->ratelimit_remaining, ev->ratelimit_limit);
                break;
        case FALLBACK_EVENT_CREDENTIALS_UPDATED:
                log_notice("credentials updated: ns=%s endpoint=%s reason=\"%s\"", ev->registry, ev->endpoint,
                           ev->reason);
                break;
        case FALLBACK_EVENT_CREDENTIALS_FAILED:
                log_warning("credentials not refreshed: ns=%s endpoint=%s reason=\"%s\"", ev->registry, ev->endpoint,
                            ev->reason);
                break;
        default:
                break;
        }
}

size_t agent_endpoint_config(const struct spec_endpoint *se, struct fallback_header *hdrs,
                             struct fallback_endpoint_config *ec) {
        *ec = (struct fallback_endpoint_config) {
                .url = se->url,
                .is_origin = se->is_origin,
                .no_pull = !(se->capabilities & SPEC_CAP_PULL),
                .no_resolve = !(se->capabilities & SPEC_CAP_RESOLVE),
                .override_path = se->override_path,
                .ca_file = se->ca_file,
                .client_cert = se->client_cert,
                .client_key = se->client_key,
                .skip_verify = se->skip_verify,
                .allow_private_redirects = se->allow_private_redirects,
                .credentials_file = se->credentials_file,
                .credential_helper = se->credential_helper,
                .credential_helper_lifetime_ms = se->credential_helper_lifetime_ms,
                .credential_helper_timeout_ms = se->credential_helper_timeout_ms,
                .connect_timeout_ms = se->connect_timeout_ms,
                .response_timeout_ms = se->response_timeout_ms,
                .idle_timeout_ms = se->idle_timeout_ms,
                .headers = hdrs,
        };
        for (size_t k = 0; k < se->n_headers; k++)
                for (size_t v = 0; v < se->headers[k].n_values; v++)
                        hdrs[ec->n_headers++] = (struct fallback_header) { se->headers[k].name, se->headers[k].values[v] };
        return ec->n_headers;
}

int agent_fallback_configure(struct fallback *fb, const struct spec *s, struct error_list *errors) {
        size_t n_regs = 0;
        _cleanup_free_ struct fallback_registry_config *regs = calloc(s->n_registries + 1, sizeof(*regs));
        _cleanup_free_ struct fallback_endpoint_config *eps = NULL;
        _cleanup_free_ struct fallback_header *hdrs = NULL;
        size_t n_eps = 0, n_hdrs = 0;
        if (!regs)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_registries; i++) {
                n_eps += s->registries[i].n_endpoints;
                for (size_t j = 0; j < s->registries[i].n_endpoints; j++)
                        for (size_t k = 0; k < s->registries[i].endpoints[j].n_headers; k++)
                                n_hdrs += s->registries[i].endpoints[j].headers[k].n_values;
        }
        eps = calloc(n_eps + 1, sizeof(*eps));
        hdrs = calloc(n_hdrs + 1, sizeof(*hdrs));
        if (!eps || !hdrs)
                return -ENOMEM;

        size_t ei = 0, hi = 0;
        for (size_t i = 0; i < s->n_registries; i++) {
                const struct spec_registry *reg = &s->registries[i];
                /* Only mirrored registries: layerd must never reach a host the spec does not name. */
                if (!reg->mirror || strcmp(reg->host, SPEC_DEFAULT_REGISTRY) == 0)
                        continue;
                struct fallback_registry_config *rc = &regs[n_regs++];
                rc->host = reg->host;
                rc->endpoints = &eps[ei];
                for (size_t j = 0; j < reg->n_endpoints; j++) {
                        const struct spec_endpoint *se = &reg->endpoints[j];
                        struct fallback_endpoint_config *ec = &eps[ei++];
                        rc->n_endpoints++;
                        hi += agent_endpoint_config(se, &hdrs[hi], ec);
                }
        }
        int r = fallback_configure(fb, regs, n_regs, errors);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_regs; i++)
                for (size_t j = 0; j < regs[i].n_endpoints; j++)
                        if (regs[i].endpoints[j].skip_verify)
                                log_warning("TLS verification is OFF: ns=%s endpoint=%s (tls.insecure_skip_verify in the spec)",
                                            regs[i].host, regs[i].endpoints[j].url);
        return 0;
}

int agent_fallback_new(const struct spec *s, struct fallback **ret, struct error_list *errors) {
        _cleanup_(fallback_freep) struct fallback *fb = NULL;
        struct fallback_options o = {
                .user_agent = "layerd/" LAYERD_VERSION,
                .on_event = on_event,
        };
        int r = fallback_new(&o, &fb);
        if (r < 0)
                return r;
        r = agent_fallback_configure(fb, s, errors);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(fb);
        return 0;
}
