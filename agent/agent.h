/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the agent's subcommands share. */

#include <stdbool.h>
#include <stdio.h>

#include "common/error.h"
#include "fallback/fallback.h"
#include "hostsconfig/hosts.h"
#include "hostsconfig/spec.h"

/* Loads the spec at path, or the built-in one when path is NULL, with the
 * per-user default cache directory. Returns 0, -ENOMEM, or -errno/-EINVAL with
 * the reasons in errors. */
int agent_load_spec(const char *path, struct spec **ret, struct error_list *errors);

/* Renders s for format and applies it to dir (hosts_apply flags). With
 * diff_out, a unified diff of every change goes there. Returns 0 with the
 * report, or -errno with the reasons in errors; notes gets what the format left out. */
int agent_write_hosts(const struct spec *s, const char *agent_url, enum hosts_format format, const char *dir,
                      unsigned flags, FILE *diff_out, struct hosts_report **ret, struct error_list *notes,
                      struct error_list *errors);

/* `layerd cache COMMAND`; returns the exit status. */
int agent_cmd_cache(int argc, char **argv);

/* The cache's bounds in bytes: agent.cache_max_size (a percentage is taken of
 * the file system holding dir) and agent.cache_min_free. Returns 0 or -errno. */
int agent_cache_limits(const struct spec *s, const char *dir, uint64_t *ret_max, uint64_t *ret_min_free);

/* The spec's mirrored registries (never _default, never mirror: false) as
 * fallback chains (tags resolved only where "resolve" is allowed, content
 * pulled only where "pull" is). A bad credentials file
 * is an error in errors and nothing changes. */
int agent_fallback_configure(struct fallback *fb, const struct spec *s, struct error_list *errors);

/* A fallback client for s whose events are logged. */
int agent_fallback_new(const struct spec *s, struct fallback **ret, struct error_list *errors);

/* `layerd prefetch`; returns the exit status. */
int agent_cmd_prefetch(int argc, char **argv);

/* `layerd cache check`: images (or, with none, the spec's prefetch list) in
 * the open cache, offline, on the given platforms (none: the list's, else
 * the node's own). Takes spec over. Returns the exit status: 0 every blob
 * present and verified, 1 not, 2 usage. */
struct cache;
int agent_cache_check(struct cache *cache, const char *dir, struct spec *spec, char **images, size_t n_images,
                      char **platforms, size_t n_platforms);

/* `layerd fetch`; returns the exit status. */
int agent_cmd_fetch(int argc, char **argv);
