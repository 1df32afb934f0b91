/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The cluster spec: one YAML file describing the whole mirror setup, parsed
 * with libyaml into the typed model below. Two input forms map onto the same
 * model: layerd's own (docs/spec.md) and the Helm values block that cluster
 * operators already write (global.components.containerd.localRegistryCache and
 * containerRegistries). Parsing is all-or-nothing: a spec with any error yields
 * no model, and every error carries file:line:col and the key path.
 *
 * The model is plain immutable data: consumers (agent, renderers, fallback
 * chains) read the fields directly and never write them. Every default is
 * filled in, so nothing downstream needs to know the defaults. Thread-safe to
 * read from any number of threads once returned. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"

#define SPEC_FILE_MAX (1024 * 1024) /* bytes of YAML read at most */
#define SPEC_REGISTRIES_MAX 256
#define SPEC_ENDPOINTS_MAX 16
#define SPEC_HEADERS_MAX 32
#define SPEC_HEADER_VALUES_MAX 16
#define SPEC_PREFETCH_MAX 1024
#define SPEC_PLATFORMS_MAX 16

#define SPEC_DEFAULT_PORT 5080
#define SPEC_DEFAULT_CACHE_MAX_SIZE (10ULL << 30)
#define SPEC_DEFAULT_FINISH_ABANDONED_DOWNLOADS true
/* Upstream work in flight (docs/spec.md says how they were measured). */
#define SPEC_DEFAULT_MAX_DOWNLOADS 32
#define SPEC_DEFAULT_MAX_UPSTREAM_WAITS 128
#define SPEC_DEFAULT_MAX_ABANDONED_DOWNLOADS 8
#define SPEC_DEFAULT_ABANDONED_DOWNLOAD_TIMEOUT_MS (10ULL * 60 * 1000)
#define SPEC_MAX_DOWNLOADS_MAX 1024
#define SPEC_MAX_UPSTREAM_WAITS_MAX 4096
/* Client connections held open at once: about 9 KiB each when idle, so the
 * default stays near 37 MiB (docs/agent.md, Admission). */
#define SPEC_DEFAULT_MAX_CONNECTIONS 4096
#define SPEC_MAX_CONNECTIONS_MIN 16
#define SPEC_MAX_CONNECTIONS_MAX 65536
#define SPEC_CACHE_MAX_AGE_MAX_MS (3650ULL * 86400 * 1000) /* agent.cache_max_age: 10 years */
/* What in-flight requests may hold in memory together: with the agent's ~15 MiB
 * at rest it keeps the DaemonSet's 128 MiB limit (and 200 clients of the
 * largest manifest under 48 MiB) whatever clients and upstreams do. */
#define SPEC_DEFAULT_MAX_INFLIGHT_MEMORY (24ULL << 20)
#define SPEC_MIN_MAX_INFLIGHT_MEMORY (8ULL << 20) /* the largest manifest (4 MiB) and a stream fit */
#define SPEC_DEFAULT_CONNECT_TIMEOUT_MS 5000        /* the origin's: across the internet */
#define SPEC_DEFAULT_MIRROR_CONNECT_TIMEOUT_MS 1000 /* any other endpoint's: a cache on the LAN */
#define SPEC_DEFAULT_RESPONSE_TIMEOUT_MS 10000
#define SPEC_DEFAULT_IDLE_TIMEOUT_MS 30000
#define SPEC_DEFAULT_CREDENTIAL_HELPER_LIFETIME_MS (10ULL * 60 * 1000)
#define SPEC_DEFAULT_CREDENTIAL_HELPER_TIMEOUT_MS 5000
#define SPEC_DEFAULT_TAG_TTL_MS (5ULL * 60 * 1000)
#define SPEC_DEFAULT_AUTH_VERDICT_TTL_MS (60ULL * 1000)
#define SPEC_DEFAULT_AUTH_OUTAGE_GRACE_MS (60ULL * 60 * 1000)
#define SPEC_DEFAULT_PREFETCH_INTERVAL_MS (6ULL * 3600 * 1000)
#define SPEC_DEFAULT_PREFETCH_CONCURRENCY 2
#define SPEC_PREFETCH_CONCURRENCY_MAX 64
#define SPEC_DEFAULT_PREFETCH_WAIT_READY_TIMEOUT_MS (10ULL * 60 * 1000)

enum spec_format {
        SPEC_FORMAT_LAYERD, /* layerd's own schema */
        SPEC_FORMAT_HELM,   /* Helm values: localRegistryCache + containerRegistries */
        SPEC_FORMAT_BUILTIN, /* the compiled-in default (layerd schema) */
        _SPEC_FORMAT_MAX,
};

enum spec_capability {
        SPEC_CAP_PULL = 1u << 0,
        SPEC_CAP_RESOLVE = 1u << 1,
};

struct spec_header {
        char *name;     /* as written; validated as an HTTP token */
        char **values;  /* one or more; no CR, LF or NUL */
        size_t n_values;
};

struct spec_endpoint {
        char *url;            /* canonical: scheme://host[:port][/path], no trailing '/' */
        bool is_origin;       /* this is the registry's origin (listed or implied) */
        unsigned capabilities; /* SPEC_CAP_* bits, never 0 */
        bool override_path;   /* url's path is the API root (no "/v2" appended), as in containerd */
        char *ca_file;        /* absolute paths or NULL */
        char *client_cert;
        char *client_key;     /* NULL: the key is in client_cert's file (or there is no client cert) */
        bool skip_verify;
        bool allow_private_redirects; /* its redirects and token realm may lead to loopback, link-local or
                                       * private addresses (by default only to public ones and its own class) */
        char *credentials_file; /* docker config.json "auths" format; read by fallback/, never printed beyond its path */
        char *credential_helper; /* a docker credential helper's absolute path (credential_helper.command); not with credentials_file */
        uint64_t credential_helper_lifetime_ms; /* its answer is used this long (SPEC_DEFAULT_CREDENTIAL_HELPER_LIFETIME_MS) */
        uint64_t credential_helper_timeout_ms;  /* it is killed past this (SPEC_DEFAULT_CREDENTIAL_HELPER_TIMEOUT_MS) */
        uint64_t connect_timeout_ms; /* default: SPEC_DEFAULT_CONNECT_TIMEOUT_MS for the origin, else
                                      * SPEC_DEFAULT_MIRROR_CONNECT_TIMEOUT_MS */
        uint64_t response_timeout_ms; /* request sent, no response headers for this long: the endpoint failed */
        uint64_t idle_timeout_ms; /* no byte for this long: the endpoint failed */
        struct spec_header *headers;
        size_t n_headers;
        unsigned line; /* where it is defined; 0 for an implied origin */
};

/* The registry key for containerd's catch-all hosts directory: its endpoints
 * apply to every registry that has no entry of its own. It is never mirrored
 * by layerd (that would make it an open proxy) and has no origin. */
#define SPEC_DEFAULT_REGISTRY "_default"

struct spec_registry {
        char *host;         /* "docker.io", "registry.example.com:5000": the name clients use, lower case; or "_default" */
        bool mirror;        /* served by layerd; false: only rendered into runtime configs */
        char *origin;       /* canonical origin URL ("https://registry-1.docker.io" for docker.io); NULL for _default */
        struct spec_endpoint *endpoints; /* in order of preference; the origin is among them unless fallback_to_origin is false */
        size_t n_endpoints;
        uint64_t tag_ttl_ms; /* a tag -> digest mapping from upstream is trusted this long, then revalidated
                              * (0: every time); served stale when every endpoint fails. Unused for _default */
        bool auth_passthrough;        /* a 401 from the origin is passed to the client as a Basic challenge,
                                       * and its credentials are used toward the origin (docs/spec.md) */
        uint64_t auth_verdict_ttl_ms; /* the origin's "yes" to a client's credentials for a repository, trusted this long */
        uint64_t auth_outage_grace_ms; /* ...and this long while the origin is down */
};

struct spec_prefetch_entry {
        char *image;       /* normalised reference "domain/path:tag" or "...@digest"; NULL for a repository entry */
        char *repository;  /* normalised "domain/path"; NULL for an image entry */
        char *tag_regex;   /* POSIX extended regex over tags, or NULL */
        char *tag_semver;  /* semver range such as ">=1.2 <2", or NULL */
        unsigned newest;   /* keep the newest N matching tags; 0 = all */
        char **platforms;  /* "os/arch[/variant]"; n_platforms 0 = the section's default */
        size_t n_platforms;
        char *registry;    /* host of the registry it belongs to (a key of registries) */
};

struct spec_prefetch {
        uint64_t interval_ms;
        unsigned concurrency;
        uint64_t bandwidth_bps;   /* bytes per second; 0 = unlimited */
        bool wait_ready;          /* /readyz says 503 until the first round after start finished... */
        uint64_t wait_ready_timeout_ms; /* ...or this long after start, whichever comes first */
        bool referrers;           /* each image's referrers (signatures, SBOMs) fetched with it */
        char **platforms;         /* default platforms; none = the node's own */
        size_t n_platforms;
        struct spec_prefetch_entry *entries;
        size_t n_entries;
};

struct spec_agent {
        char *listen_host;      /* "127.0.0.1", "::1", "localhost" */
        uint16_t listen_port;
        char *cache_dir;        /* absolute */
        uint64_t cache_max_bytes;    /* the cache's size limit; 0 when given as a percentage */
        unsigned cache_max_percent;  /* 1..100: the limit as a share of the cache's file system; 0: bytes */
        uint64_t cache_min_free_bytes; /* free space to leave on that file system; 0: none */
        uint64_t cache_max_age_ms;     /* a blob not served this long is evicted; 0: none */
        bool finish_abandoned_downloads; /* true: a blob download whose clients all went away is still
                                          * completed into the cache; false: it is cancelled */
        unsigned max_downloads;          /* blob downloads running at once; past it a client gets 503 */
        unsigned max_upstream_waits;     /* requests waiting for an upstream (each a thread) at once */
        unsigned max_abandoned_downloads; /* downloads finishing with no client at once; past it, cancelled */
        uint64_t abandoned_download_timeout_ms; /* an abandoned download not done in this is cancelled */
        uint64_t max_inflight_memory; /* bytes in-flight requests may hold in memory together; past it, 503 */
        unsigned max_connections;     /* client connections held open at once (also bounded by open files) */
        char *metrics_host;           /* agent.metrics_listen: "0.0.0.0", "::", an address or a name; NULL: none */
        uint16_t metrics_port;
        char *default_registry; /* a mirrored registry's host, or NULL: requests without ns are refused */
        char *admin_socket;     /* the admin API's unix socket: absolute, "" = none, NULL = <cache_dir>/admin.sock */
};

#define SPEC_ADMIN_SOCKET_PATH_MAX 107 /* sockaddr_un's sun_path, its NUL excluded */

/* What the runtime mirror configs are rendered for. */
struct spec_hosts {
        char *containerd_version;      /* "1.6", "1.7.32", "2.1": the oldest containerd on the nodes;
                                        * "auto" until spec_set_containerd_version() resolves it */
        bool containerd_version_auto;  /* the spec said "auto" (spec_print() says so again) */
        unsigned containerd_version_code; /* major * 10000 + minor * 100 + patch, for comparisons;
                                           * 0 while auto is unresolved (renderers then use the 1.6 rules) */
};

#define SPEC_CONTAINERD_VERSION_AUTO "auto"
#define SPEC_DEFAULT_CONTAINERD_VERSION SPEC_CONTAINERD_VERSION_AUTO
/* What an unresolved "auto" is rendered for: the oldest containerd layerd
 * supports, whose rules every later one reads too. */
#define SPEC_CONTAINERD_VERSION_FALLBACK "1.6"
#define SPEC_CONTAINERD_VERSION_FALLBACK_CODE 10600
#define SPEC_CONTAINERD_VERSION_MAX 16 /* "99.99.99" and its NUL, with room */

struct spec {
        char *source;           /* file name the spec came from ("<builtin>" for the default) */
        enum spec_format format;
        struct spec_agent agent;
        struct spec_registry *registries; /* in file order */
        size_t n_registries;
        struct spec_prefetch prefetch;
        struct spec_hosts hosts;
};

/* Parses YAML text (either form, detected from the top-level keys). On success
 * *ret owns a new model; on failure returns -EINVAL with every problem in errors
 * (-ENOMEM on allocation failure). source names the input in errors;
 * default_cache_dir (absolute) is used when the spec names none. */
int spec_parse(const char *source, const char *data, size_t size, const char *default_cache_dir,
               struct spec **ret, struct error_list *errors);

/* Reads and parses a file of at most SPEC_FILE_MAX bytes; I/O errors are
 * reported in errors too (without a position) and returned as -errno. */
int spec_load_file(const char *path, const char *default_cache_dir, struct spec **ret, struct error_list *errors);

/* The version of the YAML library the parser runs on ("0.2.5"), for
 * `layerd version`; a static string. */
const char *spec_yaml_version(void);

/* The compiled-in default: loopback listener, cache under cache_dir, and
 * docker.io, ghcr.io, quay.io, registry.k8s.io, gcr.io mirrored straight to
 * their origins. cache_dir is the caller's choice (it depends on the user). */
int spec_load_default(const char *cache_dir, struct spec **ret, struct error_list *errors);

/* The YAML text of the compiled-in default (its cache_dir comes from spec_load_default()). */
extern const char spec_default_yaml[];

/* Writes the normalised model as a layerd-form spec with every default spelled
 * out; parsing that output yields an equal model. Returns 0 or -EIO. */
int spec_print(const struct spec *s, FILE *f);

/* Fills in what "auto" stands for: version ("MAJOR.MINOR[.PATCH]", as
 * spec_containerd_version_normalize() writes it) becomes containerd_version
 * and its code; containerd_version_auto stays true. The one write into a
 * model: call it right after loading, before the spec is shared with another
 * thread. Returns 0, -EEXIST when the spec names a version of its own (it
 * stays), -EINVAL for a version that is not one, -ENOMEM. */
int spec_set_containerd_version(struct spec *s, const char *version);

/* A containerd version as containerd spells it ("1.6.20~ds1", "v2.0.7",
 * "1.7.24-0ubuntu1", "2.1.0-rc.1", or the whole line of `containerd
 * --version`: "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>")
 * as "MAJOR.MINOR.PATCH" (a prerelease or packaging suffix dropped, a missing
 * patch 0) and its code. The first whitespace-separated word that starts
 * with a version is taken. Returns 0, or -EINVAL when there is none or a part
 * is over 99 (the code's room). Pure; ret written only on success. */
int spec_containerd_version_normalize(const char *text, char ret[SPEC_CONTAINERD_VERSION_MAX], unsigned *ret_code);

/* The code the renderers use: the spec's version's, or 1.6's while "auto" is unresolved. */
unsigned spec_containerd_version_code(const struct spec *s);

/* Frees the model; accepts NULL; returns NULL. */
struct spec *spec_free(struct spec *s);

/* Looks a registry up by host, case-insensitively; NULL when absent. */
const struct spec_registry *spec_find_registry(const struct spec *s, const char *host);

/* The mirrored registry (not _default) whose namespace component
 * (reference_registry_namespace()) is exactly component; NULL when none is. */
const struct spec_registry *spec_find_registry_namespace(const struct spec *s, const char *component);

/* The origin URL layerd assumes for a registry host: docker.io's API lives at
 * registry-1.docker.io; every other registry at https://<host>. Caller frees. */
char *spec_default_origin(const char *host);

/* The tags of a registry's list (in any order, any number; invalid and
 * duplicate ones are ignored) that prefetch entry e keeps: those matching its
 * regex and its semver range, the newest e->newest of them (0: all). Versions
 * order by semver precedence, highest first, before tags that are not
 * versions (reverse lexical order). Returns 0 with *ret_idx (malloc'd,
 * indices into tags, newest first) and *ret_n, or -ENOMEM; -EINVAL if the
 * regex does not compile. */
int spec_prefetch_select_tags(const struct spec_prefetch_entry *e, char *const *tags, size_t n, size_t **ret_idx,
                              size_t *ret_n);

/* Whether an image index entry's platform ("os/arch[/variant]", have) serves
 * a platform of the spec (want), as containerd's default matcher has it:
 * arm64 is arm64/v8, arm is arm/v7; want without a variant takes any. */
bool spec_platform_match(const char *want, const char *have);

static inline void spec_freep(struct spec **s) {
        spec_free(*s);
}
