/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The pull API's request paths and ns parameter, parsed and validated: which
 * route a request takes, for which repository, reference and registry, or the
 * distribution-spec error it gets. Pure (no I/O, no libmicrohttpd, no spec),
 * so that it is unit tested and fuzzed on its own; HEAD and GET route alike. */

#include <stdbool.h>
#include <stddef.h>

#include "common/digest.h"
#include "common/reference.h"

#define ROUTE_URL_MAX 1024      /* a longer path is no route */
#define ROUTE_REFERENCE_MAX 160 /* a tag (128), a digest as sent (135) or "tags/list" */

/* What a request asks for; also the route label of the request metrics. */
enum route {
        ROUTE_V2,       /* /v2/ or /v2: the API version check */
        ROUTE_MANIFEST, /* /v2/<name>/manifests/<tag or digest> */
        ROUTE_BLOB,     /* /v2/<name>/blobs/<digest> */
        ROUTE_TAGS,     /* /v2/<name>/tags/list */
        ROUTE_REFERRERS, /* /v2/<name>/referrers/<digest> (OCI distribution 1.1) */
        ROUTE_METRICS,  /* /metrics */
        ROUTE_HEALTH,   /* /healthz, /readyz */
        ROUTE_OTHER,    /* anything else */
        _ROUTE_MAX,
};

/* A distribution spec error answer: {"errors":[{"code":code,"message":message}]}. */
struct route_error {
        unsigned status;     /* 400 or 404 */
        const char *code;    /* "NOT_FOUND", "NAME_INVALID", "MANIFEST_INVALID", "DIGEST_INVALID" */
        const char *message; /* fixed text: needs no escaping */
};

struct route_match {
        enum route kind;
        bool ready;                          /* ROUTE_HEALTH: /readyz (false: /healthz) */
        char name[REFERENCE_NAME_MAX + 1];   /* the repository as in the path; "" until it validated */
        char reference[ROUTE_REFERENCE_MAX]; /* tag, digest as sent, or "tags/list"; "" until it validated */
        bool by_digest;                      /* reference is a digest, parsed into digest */
        struct digest digest;
        const char *registry; /* ns, or default_registry without one (borrowed); NULL: neither */
        struct route_error error;
};

/* Routes url (the decoded path, without the query) with the request's ns
 * parameter (NULL or "" when absent: default_registry, which may be NULL,
 * stands in). Always fills *ret as far as parsing got, so that a refused
 * request is logged with what validated. Returns 0; -ENOENT (no such route)
 * or -EINVAL (bad name, reference or ns) with ret->error the answer to give. */
int route_parse(const char *url, const char *ns, const char *default_registry, struct route_match *ret);

/* Namespaced mirror paths, for a request that came without ns (podman and
 * CRI-O with a registries.conf mirror location "layerd/<namespace>"): when
 * r's name has two components or more and lookup(first component, ctx)
 * names a registry (the spec's mirrored registry whose
 * reference_registry_namespace() it is), r becomes a request for that
 * registry's repository: the first component leaves r->name, and
 * r->registry is lookup's answer (borrowed). Returns whether it did;
 * otherwise r is unchanged. Only for ROUTE_MANIFEST, ROUTE_BLOB, ROUTE_TAGS. */
bool route_namespace(struct route_match *r, const char *(*lookup)(const char *component, void *ctx), void *ctx);

/* The repository to ask registry host for: r->name, with Docker Hub's
 * "library/" before a single-component name (containerd sends it; skopeo may
 * not). Returns 0, or -ENAMETOOLONG when it does not fit size bytes. */
int route_repository(const struct route_match *r, const char *host, char *buf, size_t size);
