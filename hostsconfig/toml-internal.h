/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared by the TOML parser (toml.c) and its tree (toml-tree.c); not for
 * other files: they use toml.h. */

#include <stdbool.h>
#include <stddef.h>

#include "common/macro.h"
#include "hostsconfig/toml.h"

/* Frees what v owns (not v itself) and leaves it owning nothing. */
void toml_value_done(struct toml_value *v);
/* Frees a and its items; accepts NULL; returns NULL. */
struct toml_array *toml_array_free(struct toml_array *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct toml_array *, toml_array_free);

/* A dotted key path as shown in messages ("a.b.c"), NUL included; cut if longer. */
#define TOML_KEY_PATH_MAX 512

/* Arrays of pairs and items start with this many slots and double
 * (array_reserve), so a long array costs a logarithmic number of reallocations. */
#define TOML_SLOTS_MIN 16

/* The pair of t whose key is key, or NULL. */
struct toml_pair *toml_table_find(const struct toml_table *t, const char *key);
/* Appends *v (taken: v owns nothing afterwards) to a; -ENOMEM leaves *v with the caller. */
int toml_array_append(struct toml_array *a, struct toml_value *v);
