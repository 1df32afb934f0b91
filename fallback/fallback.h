/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The upstream client: for each registry an ordered chain of endpoints
 * (central caches first, the origin last), walked until one gives a good
 * answer. Built on libcurl; knows nothing of the cache or of HTTP serving.
 *
 * - Failover: a connect/DNS/TLS error, a connect timeout, no response headers
 *   within the response timeout, a stall (no byte for the idle timeout), a
 *   5xx, a 429, a wrong digest, and a 401/403/404 from a mirror move on to the
 *   next endpoint. The last endpoint's answer is final (a 404 stays a 404),
 *   except that a 429 is never passed on (it becomes 503: containerd retries a
 *   429 on the same host with no backoff).
 * - Circuit breakers: after `breaker_failures` consecutive failures an endpoint
 *   is skipped for a backoff (exponential, jittered, capped), then one probe
 *   request decides, by its response head: a 2xx head closes the breaker at
 *   once (a body that trickles for minutes keeps no other request out), a
 *   failure before it opens the breaker again. When every endpoint of a chain
 *   is open the fetch fails at once (status 503) instead of paying timeouts.
 * - Blobs stream into a struct sink; a body that breaks after k bytes goes on
 *   with "Range: bytes=k-" from the same or the next endpoint (an endpoint
 *   that ignores Range and answers 200 has its first k bytes skipped). The
 *   sink's owner verifies the digest (the bytes may come from two endpoints).
 * - Manifests are read whole (at most FALLBACK_MANIFEST_MAX) and verified:
 *   by digest against the reference, by tag against the endpoint's
 *   Docker-Content-Digest when it sends one. The memory a manifest or tag
 *   page takes while it comes is taken from the request's budget first
 *   (the announced Content-Length at once, else as it grows); past it the
 *   fetch ends at once with -ENOBUFS (no endpoint is blamed).
 * - Auth: the distribution token flow (anonymous or with credentials from a
 *   docker config.json, re-read when it changes, or from a docker credential
 *   helper), tokens cached per endpoint and scope until expiry, one refresh on a
 *   401; an identity token traded at the realm as an OAuth2 refresh token; Basic. Credentials go only to the endpoint's own host and
 *   its token realm; redirects to another host (blob CDNs) carry no
 *   Authorization, no client certificate and none of the spec's headers (the
 *   endpoint's CA file, trust and no secret, applies to them as well).
 * - Pass-through: a request may carry its client's credentials
 *   (fallback_request.client_auth); they go to the chain's origin alone
 *   (mirrors are skipped for it) and to the origin's token realm, and the
 *   tokens got with them are cached under the key the caller names them by. An origin's
 *   401/403 is told apart from a mirror's and from no answer
 *   (fallback_response.auth_refused).
 *
 * A struct fallback is thread-safe: any number of threads may fetch at once
 * and reconfigure it; connections, DNS and TLS sessions are shared between
 * them. Lock order (fallback-internal.h): fb->lock, then an endpoint's token lock;
 * never the other way round. The module never logs: state changes reach the
 * caller through on_event. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/budget.h"
#include "common/digest.h"
#include "common/error.h"
#include "common/sink.h"

#define FALLBACK_MANIFEST_MAX (4u * 1024 * 1024) /* as distribution's own limit */
#define FALLBACK_TOKEN_MAX (64u * 1024)          /* a token endpoint's answer */
#define FALLBACK_REDIRECTS_MAX 5
#define FALLBACK_CREDENTIAL_HELPER_LIFETIME_MS (10u * 60 * 1000)
#define FALLBACK_CREDENTIAL_HELPER_TIMEOUT_MS (5u * 1000)
#define FALLBACK_ERROR_MAX 256 /* fallback_response.error, NUL included */
#define FALLBACK_ACCEPT_DEFAULT                                                                    \
        "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, " \
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"

struct fallback;

struct fallback_header {
        const char *name;
        const char *value;
};

/* One endpoint, as the spec describes it (borrowed; copied by fallback_configure). */
struct fallback_endpoint_config {
        const char *url;              /* canonical scheme://host[:port][/path] */
        bool is_origin;               /* mirrors get "?ns=<registry>" appended, as containerd does */
        bool no_pull;                 /* not asked for content by digest (containerd's "pull" capability off) */
        bool no_resolve;              /* not asked to resolve tags (containerd's "resolve" capability off) */
        bool override_path;           /* url is the API root: no "/v2" appended */
        const char *ca_file, *client_cert, *client_key; /* NULL: none */
        bool skip_verify;
        /* Redirects and the token realm may lead to loopback, link-local and private
         * addresses of any class; without it only to public ones and the endpoint's own class. */
        bool allow_private_redirects;
        const char *credentials_file; /* docker config.json, re-read when it changes; NULL: anonymous */
        /* A docker credential helper (absolute path), run as `<it> get` for this endpoint's host, its
         * answer kept for the lifetime; NULL: none. Not together with credentials_file. */
        const char *credential_helper;
        uint64_t credential_helper_lifetime_ms; /* 0: FALLBACK_CREDENTIAL_HELPER_LIFETIME_MS */
        uint64_t credential_helper_timeout_ms;  /* 0: FALLBACK_CREDENTIAL_HELPER_TIMEOUT_MS */
        uint64_t connect_timeout_ms, response_timeout_ms, idle_timeout_ms;
        const struct fallback_header *headers; /* sent to this endpoint's host only */
        size_t n_headers;
};

struct fallback_registry_config {
        const char *host; /* the name clients use: "docker.io", "127.0.0.1:5000" */
        const struct fallback_endpoint_config *endpoints;
        size_t n_endpoints;
};

enum fallback_event_type {
        FALLBACK_EVENT_FAILOVER,     /* an endpoint failed for a request; the next is tried */
        FALLBACK_EVENT_BREAKER_OPEN, /* skipped for backoff_ms */
        FALLBACK_EVENT_BREAKER_HALF_OPEN, /* the backoff ran out: one probe goes through */
        FALLBACK_EVENT_BREAKER_CLOSED, /* a probe succeeded */
        FALLBACK_EVENT_RESUME,       /* a broken body goes on with a Range request */
        FALLBACK_EVENT_RATELIMIT,    /* the endpoint reported its pull budget (ratelimit-remaining) */
        /* An endpoint's credentials file was read again after it changed, or its helper gave new
         * credentials (reason: the file or helper, and what changed); its tokens were dropped. */
        FALLBACK_EVENT_CREDENTIALS_UPDATED,
        /* Reading the changed file or running the helper failed (reason says why, never a secret);
         * the last good credentials stay in use. A file's failure is told once until it is good again. */
        FALLBACK_EVENT_CREDENTIALS_FAILED,
        _FALLBACK_EVENT_MAX,
};

struct fallback_event {
        enum fallback_event_type type;
        const char *registry, *repository, *reference; /* the request (NULL for breaker events) */
        const char *endpoint;   /* URL, never with credentials */
        const char *reason;     /* why, in a few words: "connect: Connection refused", "HTTP 503" */
        bool answered;          /* FAILOVER: the endpoint answered (a mirror's 404, 401, 403), it did not fail */
        bool last;              /* FAILOVER: it was the chain's last endpoint: nothing is left to try */
        uint64_t backoff_ms;    /* BREAKER_OPEN */
        uint64_t offset;        /* RESUME: bytes already delivered */
        int64_t ratelimit_limit, ratelimit_remaining; /* RATELIMIT */
};

struct fallback_options {
        unsigned breaker_failures;        /* consecutive failures that open a breaker; 0: default 1 */
        uint64_t breaker_backoff_min_ms;  /* 0: default 1 s */
        uint64_t breaker_backoff_max_ms;  /* 0: default 60 s */
        unsigned attempts_max;            /* requests per fetch across the chain; 0: default 2 per endpoint + 2 */
        const char *user_agent;           /* NULL: "layerd" */
        /* Called from fetching threads, without locks held; must be thread-safe. */
        void (*on_event)(const struct fallback_event *ev, void *userdata);
        void *userdata;
};

/* Once per process before any thread runs (libcurl's global set-up; jansson's
 * frees made to wipe what they free, since what it parses may be a secret). */
int fallback_global_init(void);
void fallback_global_done(void);

/* A client with no registries yet. Returns 0, -ENOMEM, or -EIO if libcurl cannot be set up. */
int fallback_new(const struct fallback_options *o, struct fallback **ret);

/* Waits for no one: call it when no fetch runs any more. Accepts NULL. */
struct fallback *fallback_free(struct fallback *fb);

/* Replaces the registries (all-or-nothing). Credentials files are read here
 * (and again on use when they change); a missing or malformed one is an error
 * in errors, and -EINVAL returned with the old configuration kept. Credential
 * helpers are first run on use. Breaker state, tokens and counters of an
 * endpoint URL that stays are kept. Fetches in flight finish with the old one. */
int fallback_configure(struct fallback *fb, const struct fallback_registry_config *r, size_t n,
                       struct error_list *errors);

enum fallback_kind {
        FALLBACK_MANIFEST,
        FALLBACK_BLOB,
        FALLBACK_TAGS, /* GET /v2/<name>/tags/list: one page, like a tag resolution ("resolve" capability) */
        /* GET /v2/<name>/referrers/<digest> (OCI distribution 1.1): the first page of the index of
         * what refers to a manifest, unfiltered; it changes like a tag ("resolve" capability) */
        FALLBACK_REFERRERS,
        _FALLBACK_KIND_MAX,
};

#define FALLBACK_CLIENT_KEY_SIZE 32

/* A client's own registry credentials, passed through (borrowed; their owner wipes them). */
struct fallback_client_auth {
        const char *user;
        const char *password;
        /* FALLBACK_CLIENT_KEY_SIZE bytes that name the credentials without holding them (the
         * caller's salted hash of both, made once per request): the tokens got with them are
         * cached under it. Equal for equal credentials, distinct for others. Required. */
        const uint8_t *key;
};

struct fallback_request {
        const char *registry;   /* a configured host */
        const char *repository; /* "library/nginx"; Docker Hub's single names get "library/" */
        enum fallback_kind kind;
        const char *reference;  /* manifests: tag or digest; blobs, referrers: digest; tags: NULL */
        unsigned tags_n;        /* tags: the page size asked for ("?n="); 0: the registry's default */
        const char *tags_last;  /* tags: the page starts after this tag ("&last="); NULL: the first page */
        bool head;
        const char *accept;     /* manifests: the Accept value to send; NULL: FALLBACK_ACCEPT_DEFAULT */
        uint64_t offset;        /* blobs: bytes the sink already holds; the download starts there */
        struct sink *sink;      /* blob GET: where the bytes go */
        uint64_t deadline_ms;   /* CLOCK_MONOTONIC ms after which no new attempt starts; 0: none */
        struct budget *budget;  /* manifests and tags: what their bodies may take in memory; NULL: no bound */
        /* Polled (every ~100 ms and between attempts): true ends the fetch at
         * once with -ECANCELED (shutdown, or nobody wants the bytes any more). */
        bool (*cancelled)(void *userdata);
        void *cancel_userdata;
        /* Set: the request goes to the chain's origin endpoint alone (mirrors are
         * skipped, whatever credentials they have), with these credentials instead of
         * the endpoint's own, for Basic and toward the origin's token realm. Tokens got
         * with them are cached under their key and the scope: never handed to a
         * request with other credentials or none. */
        const struct fallback_client_auth *client_auth;
};

struct fallback_response {
        int status;            /* 200 (206 is reported as 200); the last endpoint's 4xx answer
                                * (404, 401, 403...; never 429 or 416); or 503 when no endpoint
                                * gave an answer (failures, 5xx, 429, all breakers open) */
        char *endpoint;        /* the endpoint that answered (URL), or NULL */
        char *media_type;      /* Content-Type of a manifest */
        bool has_digest;
        struct digest digest;  /* a manifest's (verified on GET), a blob's as the upstream claims it */
        int64_t size;          /* the object's whole size; -1 unknown */
        void *body;            /* manifest GET: the verified bytes (malloc'd, size bytes); tags, referrers:
                                * the JSON page, unverified (the caller parses it strictly) */
        struct budget_hold held; /* what body takes of req->budget: whoever takes body over takes this too */
        char *next_last;       /* tags: the "last" of the next page (from Link rel="next"), NULL on the last page */
        bool has_next;         /* referrers: the registry paginated the index (a Link header came) */
        uint64_t received;     /* blob GET: bytes written into the sink */
        unsigned attempts;     /* HTTP requests made (token requests excluded) */
        bool auth_refused;     /* the origin endpoint answered 401 or 403 (with the token realm's
                                * refusal): credentials are needed, or the ones sent were refused */
        char error[FALLBACK_ERROR_MAX]; /* for logs when status != 200: the last endpoint's failure */
};

/* Walks the chain for req. Returns 0 whenever an answer was reached (look at
 * ret->status: a 404 is an answer), -ENOENT for an unknown registry,
 * -EINVAL for a bad request, a negative errno from the sink, or -ENOMEM.
 * ret must be released with fallback_response_done() whatever is returned. */
int fallback_fetch(struct fallback *fb, const struct fallback_request *req, struct fallback_response *ret);

/* Frees what r holds and gives its body's share of the budget back. */
void fallback_response_done(struct fallback_response *r);

/* Counts the endpoint (by URL) as failed, e.g. after the cache found that
 * the bytes it served do not match their digest. */
void fallback_report_bad(struct fallback *fb, const char *registry, const char *endpoint, const char *reason);

enum fallback_breaker_state {
        FALLBACK_BREAKER_CLOSED,
        FALLBACK_BREAKER_OPEN,
        FALLBACK_BREAKER_HALF_OPEN,
        _FALLBACK_BREAKER_STATE_MAX,
};

const char *fallback_breaker_state_to_string(enum fallback_breaker_state s);

struct fallback_endpoint_stats {
        const char *registry, *endpoint;
        enum fallback_breaker_state state;
        unsigned consecutive_failures;
        uint64_t requests, ok, failures, not_found; /* HTTP requests and their outcomes */
        uint64_t bytes;                             /* body bytes received */
        uint64_t breaker_opens, resumes, token_fetches;
        int64_t ratelimit_limit, ratelimit_remaining; /* -1: never reported */
};

/* Calls fn for every configured endpoint, in chain order, under the
 * client's lock: fn must be quick and must not call back into fb. */
void fallback_foreach_endpoint(struct fallback *fb,
                               void (*fn)(const struct fallback_endpoint_stats *s, void *userdata),
                               void *userdata);

static inline void fallback_freep(struct fallback **fb) {
        fallback_free(*fb);
}

#define FALLBACK_TAGS_MAX 10000 /* tags of one repository taken at most, over all pages */

/* The "tags" of a tags/list page ({"name": ..., "tags": [...]}; "tags" may be
 * null). Entries that are not strings are skipped. Returns 0 with a malloc'd
 * array of malloc'd strings (free with fallback_strv_free()), -EBADMSG when
 * body is not such a page, -ENOMEM. */
int fallback_tags_parse(const void *body, size_t size, char ***ret_tags, size_t *ret_n);

/* The "last" query parameter of a Link header's rel="next" URL
 * ("</v2/x/tags/list?n=100&last=v1.2>; rel=\"next\""), percent-decoded, or
 * -ENOENT when there is no next link or it has no "last"; -ENOMEM. */
int fallback_link_next_last(const char *link, char **ret_last);

void fallback_strv_free(char **v, size_t n);

/* What a manifest refers to, from its JSON. */
struct fallback_descriptor {
        char *media_type;   /* may be NULL */
        struct digest digest; /* validated with the distribution grammar (sha256/sha512 only) */
        int64_t size;       /* -1: absent */
        char *platform;     /* index children: "os/arch[/variant]", NULL without a platform */
};

struct fallback_manifest_refs {
        bool is_index;      /* an OCI index or a Docker manifest list: children are manifests */
        struct fallback_descriptor config; /* image manifests: the config (has_config) */
        bool has_config;
        struct fallback_descriptor *items; /* index: the manifests; image: the layers */
        size_t n_items;
};

/* Parses a manifest or index (at most FALLBACK_MANIFEST_MAX bytes) into the
 * descriptors it refers to. Every digest must be a valid sha256/sha512
 * digest: -EBADMSG otherwise (and for anything not a manifest); -ENOMEM.
 * ret is written only on success; release with fallback_manifest_refs_done(). */
int fallback_manifest_refs(const void *body, size_t size, struct fallback_manifest_refs *ret);
void fallback_manifest_refs_done(struct fallback_manifest_refs *r);

/* The media type of a manifest, from its JSON (mediaType, or what an OCI
 * manifest without one is); NULL when body is not a manifest. Caller frees. */
char *fallback_manifest_media_type(const void *body, size_t size);

/* ---- one-shot checks (for `layerd doctor` and start-up) ------------------------------- */

#define FALLBACK_CONTAINERD_TIMEOUT_MS 2000

/* Asks containerd's gRPC socket for its version
 * (containerd.services.version.v1.Version/Version, HTTP/2 without TLS over
 * the unix socket), within timeout_ms (0: FALLBACK_CONTAINERD_TIMEOUT_MS).
 * Returns 0 with *ret_version (malloc'd, as containerd says it: "1.6.20~ds1",
 * "v2.0.7"); on failure a negative errno and a one-line reason: -ENOENT (no
 * socket), -EACCES, -ENOTSOCK, -ECONNREFUSED (nobody listens), -ETIMEDOUT,
 * -EPROTO (an answer that is not containerd's: HTTP status, content-type,
 * grpc-status, frame or protobuf), -EPROTONOSUPPORT (libcurl without HTTP/2),
 * -ENOMEM. Thread-safe. */
int fallback_containerd_version(const char *socket_path, uint64_t timeout_ms, char **ret_version, char *reason,
                                size_t reason_size);

#define FALLBACK_PROBE_REASON_MAX 192
#define FALLBACK_PROBE_URL_MAX 512

struct fallback_probe_result {
        int status;           /* HTTP status of the answer; 0 when none arrived */
        uint64_t elapsed_ms;  /* from the start to the answer's headers, or to the failure */
        char url[FALLBACK_PROBE_URL_MAX]; /* what was asked (never with credentials; cut if longer) */
        char reason[FALLBACK_PROBE_REASON_MAX]; /* "" for a 2xx; "auth required" for a 401, "HTTP 404";
                                                 * the failure ("connect: Connection refused") otherwise */
};

/* One GET of endpoint e's API root (/v2/, or the URL itself with
 * override_path; "?ns=<registry>" for a mirror, as fetches send it), with its
 * TLS settings, headers and connect/response timeouts, and without
 * credentials: a 401 means reachable ("auth required"). Returns 0 when an
 * HTTP answer arrived (any status: ret->status says which), else the
 * failure as http_perform() has it (-ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH,
 * -EPROTO for TLS, ...), -EINVAL for a URL that is not one, -ENOMEM.
 * *ret is filled in whatever is returned. Thread-safe; needs
 * fallback_global_init(). registry may be NULL (no ns). */
int fallback_probe(const struct fallback_endpoint_config *e, const char *registry, struct fallback_probe_result *ret);

/* As fallback_probe(), for the one path given (absolute, e.g. "/readyz") under
 * e's URL, without "/v2" or ns: a health route of a server of ours. */
int fallback_probe_path(const struct fallback_endpoint_config *e, const char *path, struct fallback_probe_result *ret);

/* ---- the OCI 1.1 referrers index ------------------------------------------------------- */

#define FALLBACK_REFERRERS_MAX 4096 /* descriptors in one referrers index */
#define FALLBACK_REFERRERS_MEDIA_TYPE "application/vnd.oci.image.index.v1+json"

/* One manifest that refers to the subject, as the index describes it. */
struct fallback_referrer {
        struct digest digest; /* validated (sha256/sha512) */
        int64_t size;
        char *media_type;     /* never NULL */
        char *artifact_type;  /* NULL when the descriptor has none */
};

struct fallback_referrers {
        struct fallback_referrer *items;
        size_t n;
};

/* Parses a referrers answer (distribution spec 1.1, "Listing Referrers"):
 * an OCI image index (schemaVersion 2, mediaType said, at most
 * FALLBACK_MANIFEST_MAX bytes) whose "manifests" (at most
 * FALLBACK_REFERRERS_MAX) each have a mediaType, a valid digest and a size.
 * Returns 0 with *ret (release with fallback_referrers_done()), -EBADMSG for
 * anything else, -ENOMEM. ret is written only on success. */
int fallback_referrers_parse(const void *body, size_t size, struct fallback_referrers *ret);
void fallback_referrers_done(struct fallback_referrers *r);

/* The index body (one fallback_referrers_parse() accepts) with only the
 * descriptors whose artifactType is artifact_type: the same document
 * otherwise, written anew (malloc'd, *ret_size bytes, no NUL counted).
 * Returns 0, -EBADMSG, -ENOMEM. */
int fallback_referrers_filter(const void *body, size_t size, const char *artifact_type, char **ret_body,
                              size_t *ret_size);
