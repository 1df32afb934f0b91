/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared by the renderers (render-*.c); not part of the module's interface. */

#include <stdio.h>

#include "common/buf.h"
#include "hostsconfig/hosts.h"

/* The most URLs a renderer lists for one registry: layerd itself, every
 * listed endpoint, and the origin the parser may append after them. */
#define RENDER_URLS_MAX (1 + SPEC_ENDPOINTS_MAX + 1)

/* A file being rendered into memory: renderers write to f with stdio (and
 * libyaml's emitter, json_write_string), the bytes land in buf, which holds
 * at most HOSTS_FILE_MAX. f refers to the struct: it must not move while open. */
struct render_buf {
        FILE *f;
        struct buf buf;
        int error; /* the first write into buf that failed (-EFBIG, -ENOMEM); 0 */
};

int render_buf_open(struct render_buf *b);
/* Closes the stream and appends the file to o under name (taking the bytes);
 * -EFBIG when it grew past HOSTS_FILE_MAX, -ENOMEM. Either way b is discarded. */
int render_buf_finish(struct render_buf *b, struct hosts_output *o, const char *name);
void render_buf_discard(struct render_buf *b);

/* A TOML basic string, quotes included, every character escaped as TOML 1.0 requires. */
void toml_string(FILE *f, const char *s);
/* A TOML key: bare when it may be ([A-Za-z0-9_-]+), else a basic string. */
void toml_key(FILE *f, const char *s);

/* The endpoint URL split for runtimes that want "host[:port][/path]" without a scheme. */
const char *url_without_scheme(const char *url);
bool url_is_http(const char *url);
/* Path part of a canonical URL ("" or "/a/b"). */
const char *url_path(const char *url);
/* The origin of a registry: the endpoint marked is_origin, or NULL. */
const struct spec_endpoint *registry_origin_endpoint(const struct spec_registry *r);
/* 1 when r's origin is the one its name implies (or r has none), so that a
 * runtime falling back to the name reaches it; 0 for a custom `origin`, which
 * a runtime knowing only the name never reaches by itself; -ENOMEM. */
int registry_origin_is_implied(const struct spec_registry *r);

int render_containerd(const struct spec *s, const char *agent_url, struct hosts_output *o, struct error_list *notes);
int render_docker(const struct spec *s, const char *agent_url, struct hosts_output *o, struct error_list *notes);
int render_talos(const struct spec *s, const char *agent_url, struct hosts_output *o, struct error_list *notes);
int render_talos_legacy(const struct spec *s, const char *agent_url, struct hosts_output *o, struct error_list *notes);
int render_registries_conf(const struct spec *s, const char *agent_url, struct hosts_output *o,
                           struct error_list *notes);
