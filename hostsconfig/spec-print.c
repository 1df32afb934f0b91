/* SPDX-License-Identifier: Apache-2.0 */
/* The normalised model as layerd-form YAML, through libyaml's emitter so that
 * quoting is always right. Parsing the output yields an equal model. */
#include <errno.h>
#include <string.h>
#include <yaml.h>

#include "common/parse.h"
#include "hostsconfig/spec.h"

#define LISTEN_TEXT_MAX 300 /* "[host]:port", NUL included */

/* Every helper returns false once the emitter failed; callers chain them with &&. */
struct out {
        yaml_emitter_t e;
};

static bool looks_typed(const char *s) {
        /* Our parser reads every scalar as text except plain nulls, but quote
         * anything another YAML reader would turn into a bool, number or null. */
        static const char *const words[] = { "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false",
                                             "False", "FALSE", "yes", "no", "on", "off", "y", "n" };
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (strcasecmp(s, words[i]) == 0)
                        return true;
        return s[strspn(s, "0123456789.+-eE_xXoO")] == '\0';
}

static bool scalar(struct out *o, const char *s) {
        yaml_event_t ev;
        yaml_scalar_style_t style = looks_typed(s) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE;
        if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *) s, (int) strlen(s), 1, 1, style))
                return false;
        return yaml_emitter_emit(&o->e, &ev);
}

/* A value our parser reads as a number, size or duration: never quoted. */
static bool raw(struct out *o, const char *s) {
        yaml_event_t ev;
        if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *) s, (int) strlen(s), 1, 1,
                                          YAML_PLAIN_SCALAR_STYLE))
                return false;
        return yaml_emitter_emit(&o->e, &ev);
}

static bool start_map(struct out *o, bool flow) {
        yaml_event_t ev;
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, flow ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE))
                return false;
        return yaml_emitter_emit(&o->e, &ev);
}

static bool end_map(struct out *o) {
        yaml_event_t ev;
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(&o->e, &ev);
}

static bool start_seq(struct out *o, bool flow) {
        yaml_event_t ev;
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE))
                return false;
        return yaml_emitter_emit(&o->e, &ev);
}

static bool end_seq(struct out *o) {
        yaml_event_t ev;
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(&o->e, &ev);
}

static bool kv(struct out *o, const char *k, const char *v) {
        return scalar(o, k) && scalar(o, v);
}

static bool kv_raw(struct out *o, const char *k, const char *v) {
        return scalar(o, k) && raw(o, v);
}

static bool kv_bool(struct out *o, const char *k, bool v) {
        return kv_raw(o, k, v ? "true" : "false");
}

static bool kv_size(struct out *o, const char *k, uint64_t v) {
        char buf[32];
        format_size(v, buf, sizeof(buf));
        return kv_raw(o, k, buf);
}

static bool kv_duration(struct out *o, const char *k, uint64_t v) {
        char buf[64];
        format_duration_ms(v, buf, sizeof(buf));
        return kv_raw(o, k, buf);
}

static bool kv_percent(struct out *o, const char *k, unsigned v) {
        char buf[16];
        snprintf(buf, sizeof(buf), "%u%%", v);
        return kv_raw(o, k, buf);
}

static bool kv_uint(struct out *o, const char *k, uint64_t v) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v);
        return kv_raw(o, k, buf);
}

static bool strv(struct out *o, const char *k, char *const *v, size_t n, bool flow) {
        if (n == 0)
                return true;
        if (!scalar(o, k) || !start_seq(o, flow))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!scalar(o, v[i]))
                        return false;
        return end_seq(o);
}

static bool endpoint(struct out *o, const struct spec_endpoint *e) {
        if (!start_map(o, false) || !kv(o, "url", e->url) || !scalar(o, "capabilities") || !start_seq(o, true))
                return false;
        if ((e->capabilities & SPEC_CAP_PULL) && !scalar(o, "pull"))
                return false;
        if ((e->capabilities & SPEC_CAP_RESOLVE) && !scalar(o, "resolve"))
                return false;
        if (!end_seq(o) || !kv_bool(o, "override_path", e->override_path))
                return false;
        if (e->ca_file || e->client_cert || e->skip_verify) {
                if (!scalar(o, "tls") || !start_map(o, false))
                        return false;
                if (e->ca_file && !kv(o, "ca_file", e->ca_file))
                        return false;
                if (e->client_cert && !kv(o, "client_cert", e->client_cert))
                        return false;
                if (e->client_key && !kv(o, "client_key", e->client_key))
                        return false;
                if (!kv_bool(o, "insecure_skip_verify", e->skip_verify) || !end_map(o))
                        return false;
        }
        if (e->n_headers > 0) {
                if (!scalar(o, "headers") || !start_map(o, false))
                        return false;
                for (size_t i = 0; i < e->n_headers; i++) {
                        const struct spec_header *h = &e->headers[i];
                        if (h->n_values == 1 ? !kv(o, h->name, h->values[0]) : !strv(o, h->name, h->values, h->n_values, false))
                                return false;
                }
                if (!end_map(o))
                        return false;
        }
        if (e->credentials_file && !kv(o, "credentials_file", e->credentials_file))
                return false;
        if (e->credential_helper &&
            !(scalar(o, "credential_helper") && start_map(o, true) && kv(o, "command", e->credential_helper) &&
              kv_duration(o, "lifetime", e->credential_helper_lifetime_ms) &&
              kv_duration(o, "timeout", e->credential_helper_timeout_ms) && end_map(o)))
                return false;
        /* Printed only when set: the default keeps check-config's output as it was. */
        if (e->allow_private_redirects && !kv_bool(o, "allow_private_redirects", true))
                return false;
        return scalar(o, "timeouts") && start_map(o, true) && kv_duration(o, "connect", e->connect_timeout_ms) &&
               kv_duration(o, "response", e->response_timeout_ms) && kv_duration(o, "idle", e->idle_timeout_ms) &&
               end_map(o) && end_map(o);
}

static bool registry(struct out *o, const struct spec_registry *r) {
        bool fallback = false;
        for (size_t i = 0; i < r->n_endpoints; i++)
                fallback = fallback || r->endpoints[i].is_origin;
        if (!scalar(o, r->host) || !start_map(o, false) || !kv_bool(o, "mirror", r->mirror))
                return false;
        /* _default has no origin of its own, and no tags: layerd never serves it. */
        if (r->origin && (!kv(o, "origin", r->origin) || !kv_bool(o, "fallback_to_origin", fallback) ||
                          !kv_duration(o, "tag_ttl", r->tag_ttl_ms)))
                return false;
        /* Printed only when not the default: check-config's output stays as it was. */
        if (r->origin && ((!r->auth_passthrough && !kv_bool(o, "auth_passthrough", false)) ||
                          (r->auth_verdict_ttl_ms != SPEC_DEFAULT_AUTH_VERDICT_TTL_MS &&
                           !kv_duration(o, "auth_verdict_ttl", r->auth_verdict_ttl_ms)) ||
                          (r->auth_outage_grace_ms != SPEC_DEFAULT_AUTH_OUTAGE_GRACE_MS &&
                           !kv_duration(o, "auth_outage_grace", r->auth_outage_grace_ms))))
                return false;
        if (!scalar(o, "endpoints") || !start_seq(o, false))
                return false;
        for (size_t i = 0; i < r->n_endpoints; i++)
                if (!endpoint(o, &r->endpoints[i]))
                        return false;
        return end_seq(o) && end_map(o);
}

static bool prefetch_entry(struct out *o, const struct spec_prefetch_entry *e) {
        if (!start_map(o, false))
                return false;
        if (e->image && !kv(o, "image", e->image))
                return false;
        if (e->repository) {
                if (!kv(o, "repository", e->repository))
                        return false;
                if (e->tag_regex || e->tag_semver || e->newest) {
                        if (!scalar(o, "tags") || !start_map(o, false))
                                return false;
                        if (e->tag_regex && !kv(o, "regex", e->tag_regex))
                                return false;
                        if (e->tag_semver && !kv(o, "semver", e->tag_semver))
                                return false;
                        if (e->newest && !kv_uint(o, "newest", e->newest))
                                return false;
                        if (!end_map(o))
                                return false;
                }
        }
        return strv(o, "platforms", e->platforms, e->n_platforms, true) && end_map(o);
}

static bool document(struct out *o, const struct spec *s) {
        char listen[LISTEN_TEXT_MAX];
        bool v6 = strchr(s->agent.listen_host, ':') != NULL;
        snprintf(listen, sizeof(listen), "%s%s%s:%u", v6 ? "[" : "", s->agent.listen_host, v6 ? "]" : "",
                 s->agent.listen_port);
        if (!start_map(o, false) || !kv_raw(o, "version", "1") || !scalar(o, "agent") || !start_map(o, false) ||
            !kv(o, "listen", listen) || !kv(o, "cache_dir", s->agent.cache_dir) ||
            !(s->agent.cache_max_percent ? kv_percent(o, "cache_max_size", s->agent.cache_max_percent)
                                         : kv_size(o, "cache_max_size", s->agent.cache_max_bytes)) ||
            !kv_size(o, "cache_min_free", s->agent.cache_min_free_bytes) ||
            (s->agent.cache_max_age_ms && !kv_duration(o, "cache_max_age", s->agent.cache_max_age_ms)) ||
            !kv_bool(o, "finish_abandoned_downloads", s->agent.finish_abandoned_downloads) ||
            !kv_uint(o, "max_downloads", s->agent.max_downloads) ||
            !kv_uint(o, "max_upstream_waits", s->agent.max_upstream_waits) ||
            !kv_uint(o, "max_abandoned_downloads", s->agent.max_abandoned_downloads) ||
            !kv_duration(o, "abandoned_download_timeout", s->agent.abandoned_download_timeout_ms) ||
            !kv_size(o, "max_inflight_memory", s->agent.max_inflight_memory) ||
            !kv_uint(o, "max_connections", s->agent.max_connections))
                return false;
        if (s->agent.metrics_host) {
                char metrics[LISTEN_TEXT_MAX];
                bool m6 = strchr(s->agent.metrics_host, ':') != NULL;
                snprintf(metrics, sizeof(metrics), "%s%s%s:%u", m6 ? "[" : "", s->agent.metrics_host, m6 ? "]" : "",
                         s->agent.metrics_port);
                if (!kv(o, "metrics_listen", metrics))
                        return false;
        }
        if (s->agent.default_registry ? !kv(o, "default_registry", s->agent.default_registry)
                                      : !kv_raw(o, "default_registry", "null"))
                return false;
        if (s->agent.admin_socket && !kv(o, "admin_socket", s->agent.admin_socket))
                return false;
        if (!end_map(o) || !scalar(o, "registries") || !start_map(o, false))
                return false;
        for (size_t i = 0; i < s->n_registries; i++)
                if (!registry(o, &s->registries[i]))
                        return false;
        const struct spec_prefetch *p = &s->prefetch;
        if (!end_map(o) || !scalar(o, "prefetch") || !start_map(o, false) ||
            !kv_duration(o, "interval", p->interval_ms) || !kv_uint(o, "concurrency", p->concurrency) ||
            !kv_size(o, "bandwidth", p->bandwidth_bps) || !kv_bool(o, "wait_ready", p->wait_ready) ||
            !kv_duration(o, "wait_ready_timeout", p->wait_ready_timeout_ms) ||
            !kv_bool(o, "referrers", p->referrers) ||
            !strv(o, "platforms", p->platforms, p->n_platforms, true))
                return false;
        if (p->n_entries > 0) {
                if (!scalar(o, "images") || !start_seq(o, false))
                        return false;
                for (size_t i = 0; i < p->n_entries; i++)
                        if (!prefetch_entry(o, &p->entries[i]))
                                return false;
                if (!end_seq(o))
                        return false;
        }
        return end_map(o) && scalar(o, "hosts") && start_map(o, false) &&
               kv(o, "containerd_version",
                  s->hosts.containerd_version_auto ? SPEC_CONTAINERD_VERSION_AUTO : s->hosts.containerd_version) && end_map(o) && end_map(o);
}

int spec_print(const struct spec *s, FILE *f) {
        struct out o;
        yaml_event_t ev;
        bool ok;

        if (!yaml_emitter_initialize(&o.e))
                return -ENOMEM;
        yaml_emitter_set_output_file(&o.e, f);
        yaml_emitter_set_unicode(&o.e, 1);
        yaml_emitter_set_width(&o.e, -1);
        ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&o.e, &ev) &&
             yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&o.e, &ev) &&
             document(&o, s) && yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&o.e, &ev) &&
             yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&o.e, &ev) && yaml_emitter_flush(&o.e);
        yaml_emitter_delete(&o.e);
        /* Flush here: a full disk shows up only when the buffer is written. */
        if (!ok || fflush(f) != 0 || ferror(f))
                return -EIO;
        return 0;
}
