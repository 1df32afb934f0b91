/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* WWW-Authenticate challenges (RFC 9110 section 11.6.1), as registries send
 * them for the token flow (distribution's token authentication):
 *
 *   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"
 *
 * Internal to fallback/; parsed once per 401, so simplicity beats speed. */

#include <stddef.h>

#define CHALLENGE_HEADER_MAX 8192 /* longer header values are refused */
#define CHALLENGES_MAX 8
#define CHALLENGE_PARAMS_MAX 16

struct challenge_param {
        char *name;  /* lower case (parameter names are case-insensitive) */
        char *value; /* unquoted, escapes resolved */
};

struct challenge {
        char *scheme; /* lower case: "bearer", "basic" */
        char *token68; /* the token68 form instead of parameters, or NULL */
        struct challenge_param params[CHALLENGE_PARAMS_MAX];
        size_t n_params;
};

struct challenge_list {
        struct challenge items[CHALLENGES_MAX];
        size_t n;
};

/* Parses a header value holding one or more challenges (several headers are
 * joined with ", " first, as HTTP allows). Quoted strings may hold commas and
 * escaped quotes. Returns 0 with the list (free with challenge_list_done),
 * -EINVAL for malformed input, -E2BIG beyond the limits above, -ENOMEM. */
int challenge_parse(const char *value, struct challenge_list *ret);

void challenge_list_done(struct challenge_list *l);

/* The value of a parameter of c (name case-insensitive), or NULL. */
const char *challenge_param(const struct challenge *c, const char *name);

/* The first challenge with the scheme (case-insensitive), or NULL. */
const struct challenge *challenge_find(const struct challenge_list *l, const char *scheme);
