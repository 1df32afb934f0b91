/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* libyaml's emitter for the renderers that write YAML (the Talos formats);
 * not part of the module's interface. Each call does nothing once one has
 * failed, so a renderer emits a whole structure and checks once at the end. */

#include <stdbool.h>
#include <stdio.h>
#include <yaml.h>

#include "hostsconfig/hosts.h"

struct render_yaml {
        yaml_emitter_t e;
        bool ok;
};

/* Starts a stream written to f (UTF-8, no line folding). Returns 0 or -ENOMEM. */
int render_yaml_open(struct render_yaml *m, FILE *f);
/* Starts (start true) or ends a document; the first one has no "---", each later one has. */
void render_yaml_document(struct render_yaml *m, bool start);
/* A scalar in style (YAML_ANY_SCALAR_STYLE lets libyaml choose one that reads back as s). */
void render_yaml_scalar(struct render_yaml *m, const char *s, yaml_scalar_style_t style);
/* A key and its scalar value, both in libyaml's choice of style. */
void render_yaml_pair(struct render_yaml *m, const char *key, const char *value);
void render_yaml_map(struct render_yaml *m, bool start);
void render_yaml_seq(struct render_yaml *m, bool start);
/* Ends the stream, flushes and frees the emitter. Returns 0, or -ENOMEM when any step failed. */
int render_yaml_close(struct render_yaml *m);

/* Appends a YAML file called name to o: the managed marker and comment on
 * its first line, then the stream emit() writes (its documents included).
 * Returns 0, emit()'s error, -ENOMEM or -EFBIG; o is unchanged on error. */
int render_yaml_file(struct hosts_output *o, const char *name, const char *comment,
                     int (*emit)(struct render_yaml *m, void *userdata), void *userdata);
