/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `layerd doctor`: a node preflight. Each check says ok, warn or fail, and
 * for anything but ok the fix in one sentence. The checks look at what
 * decides whether the kubelet's pulls ever reach layerd (containerd's config,
 * its version, the hosts files), at layerd itself and its endpoints, and at
 * the cache's file system. */

#include <stdbool.h>
#include <stddef.h>

#include "hostsconfig/spec.h"

struct agent_containerd_version;

#define DOCTOR_DEFAULT_CONTAINERD_CONFIG "/etc/containerd/config.toml"
#define DOCTOR_DEFAULT_HOSTS_DIR "/etc/containerd/certs.d"
#define DOCTOR_NAME_MAX 96
#define DOCTOR_TEXT_MAX 512

enum doctor_status {
        DOCTOR_OK,
        DOCTOR_WARN,
        DOCTOR_FAIL,
        _DOCTOR_STATUS_MAX,
};

struct doctor_check {
        char name[DOCTOR_NAME_MAX];     /* "containerd.config_path", "endpoint.docker.io.0" */
        enum doctor_status status;
        char message[DOCTOR_TEXT_MAX];  /* what was found */
        char fix[DOCTOR_TEXT_MAX];      /* one sentence; empty for ok */
};

struct doctor_report {
        struct doctor_check *checks;
        size_t n, allocated;
        size_t count[_DOCTOR_STATUS_MAX];
        bool oom;          /* a check could not be made or kept */
        bool last_dropped; /* the last add() was dropped: its fix() goes nowhere */
};

struct doctor_options {
        const char *containerd_config; /* containerd's config.toml */
        const char *hosts_dir;         /* where layerd's hosts files are (or should be) */
        const char *containerd_socket; /* asked for containerd's version; NULL: not asked */
        const char *agent_url;         /* where containerd reaches layerd ("http://127.0.0.1:5080") */
        const char *cache_dir;         /* the cache directory in use */
        const struct agent_containerd_version *version; /* the node's containerd, detected; NULL: not asked */
        bool offline;                  /* no endpoint is contacted */
        bool skip_hosts_files;         /* the hosts files are not compared (serve without --write-hosts: its
                                        * spec's containerd version was not resolved, the files' was) */
        bool local_only;               /* serve's start-up: no network, no containerd binary, no socket, and
                                        * layerd itself is not asked (it is the caller) */
};

/* Runs every check that o allows against spec s (its containerd version
 * already resolved when it says auto, see agent_resolve_spec_version()).
 * Returns 0 with the results in *ret (caller frees with doctor_report_done()),
 * or -ENOMEM. */
int doctor_run(const struct spec *s, const struct doctor_options *o, struct doctor_report *ret);
void doctor_report_done(struct doctor_report *r);

/* `layerd serve`'s start-up line: the local-only checks, summarised in one
 * log line (warnings only; nothing here stops layerd from serving). */
void doctor_log_summary(const struct spec *s, const struct doctor_options *o);

/* `layerd doctor`; returns the exit status (0 nothing failed, 1 something did, 2 usage). */
int agent_cmd_doctor(int argc, char **argv);
