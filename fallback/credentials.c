/* SPDX-License-Identifier: Apache-2.0 */
#include "fallback/credentials.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base64.h"
#include "common/fsutil.h"
#include "common/macro.h"

struct credentials *credentials_free(struct credentials *c) {
        if (!c)
                return NULL;
        secret_free(c->user);
        secret_free(c->password);
        secret_free(c->identity_token);
        free(c);
        return NULL;
}

static bool dup_field(const char *from, char **to) {
        return !from || (*to = strdup(from));
}

struct credentials *credentials_dup(const struct credentials *c) {
        if (!c)
                return NULL;
        struct credentials *d = calloc(1, sizeof(*d));
        if (!d || !dup_field(c->user, &d->user) || !dup_field(c->password, &d->password) ||
            !dup_field(c->identity_token, &d->identity_token))
                return credentials_free(d);
        return d;
}

static bool field_equal(const char *a, const char *b) {
        return a == b || (a && b && strcmp(a, b) == 0);
}

bool credentials_equal(const struct credentials *a, const struct credentials *b) {
        if (!a || !b)
                return a == b;
        return field_equal(a->user, b->user) && field_equal(a->password, b->password) &&
               field_equal(a->identity_token, b->identity_token);
}

bool credentials_is_docker_hub(const char *h, size_t len) {
        static const char *const names[] = { "docker.io", "index.docker.io", "registry-1.docker.io" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strlen(names[i]) == len && strncasecmp(h, names[i], len) == 0)
                        return true;
        return false;
}

/* "https://Host:5000/v1/" -> compares "Host:5000" with host. */
static bool key_matches(const char *key, const char *host) {
        const char *k = key;
        if (strncasecmp(k, "https://", 8) == 0)
                k += 8;
        else if (strncasecmp(k, "http://", 7) == 0)
                k += 7;
        size_t len = strcspn(k, "/");
        if (strlen(host) == len && strncasecmp(k, host, len) == 0)
                return true;
        return credentials_is_docker_hub(k, len) && credentials_is_docker_hub(host, strlen(host));
}

static int from_entry(json_t *entry, const char *key, struct credentials **ret, struct error_list *errors) {
        _cleanup_(credentials_freep) struct credentials *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        const char *auth = json_string_value(json_object_get(entry, "auth"));
        const char *user = json_string_value(json_object_get(entry, "username"));
        const char *password = json_string_value(json_object_get(entry, "password"));
        const char *idtoken = json_string_value(json_object_get(entry, "identitytoken"));
        if (json_object_get(entry, "identitytoken") && (!idtoken || !idtoken[0])) {
                error_list_add(errors, 0, 0, "auths.\"%s\".identitytoken: not a non-empty string", key);
                return -EINVAL;
        }
        if (auth && auth[0]) {
                _cleanup_free_ char *plain = NULL;
                size_t size;
                int r = base64_decode(auth, &plain, &size);
                if (r == -ENOMEM)
                        return r;
                char *colon = r < 0 ? NULL : memchr(plain, ':', size);
                if (!colon || strlen(plain) != size) {
                        if (plain)
                                explicit_bzero(plain, size);
                        error_list_add(errors, 0, 0, "auths.\"%s\".auth: not base64 of \"user:password\"", key);
                        return -EINVAL;
                }
                *colon = '\0';
                c->user = strdup(plain);
                /* With an identity token, docker login stores "user:" (no password). */
                c->password = idtoken ? NULL : strdup(colon + 1);
                explicit_bzero(plain, size);
                if (!c->user || (!idtoken && !c->password))
                        return -ENOMEM;
        } else if (idtoken) {
                if (user && !(c->user = strdup(user)))
                        return -ENOMEM;
        } else if (user && password) {
                c->user = strdup(user);
                c->password = strdup(password);
        } else {
                error_list_add(errors, 0, 0, "auths.\"%s\": no auth, username and password, or identitytoken", key);
                return -EINVAL;
        }
        if (idtoken) {
                if (!(c->identity_token = strdup(idtoken)))
                        return -ENOMEM;
                if (c->user && !c->user[0]) {
                        free(c->user);
                        c->user = NULL;
                }
                *ret = TAKE_PTR(c);
                return 0;
        }
        if (!c->user || !c->password)
                return -ENOMEM;
        if (!c->user[0]) {
                error_list_add(errors, 0, 0, "auths.\"%s\": empty user name", key);
                return -EINVAL;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int credentials_parse(const char *data, size_t size, const char *host, struct credentials **ret,
                      struct error_list *errors) {
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *root = json_loadb(data, size, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                /* Only the position: jansson's text quotes the input ("near '...'"), which may be a secret. */
                error_list_add(errors, (unsigned) (jerr.line > 0 ? jerr.line : 0),
                               (unsigned) (jerr.column > 0 ? jerr.column : 0), "not valid JSON");
                return -EINVAL;
        }
        json_t *auths = json_object_get(root, "auths");
        if (!json_is_object(root) || !json_is_object(auths)) {
                error_list_add(errors, 0, 0, "no \"auths\" object (docker config.json format expected)");
                return -EINVAL;
        }
        const char *key;
        json_t *entry;
        json_object_foreach(auths, key, entry) {
                if (!key_matches(key, host))
                        continue;
                if (!json_is_object(entry)) {
                        error_list_add(errors, 0, 0, "auths.\"%s\": not an object", key);
                        return -EINVAL;
                }
                return from_entry(entry, key, ret, errors);
        }
        *ret = NULL;
        return 0;
}

int credentials_load(const char *file, const char *host, struct credentials **ret, struct error_list *errors) {
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        int r = read_file_bounded(file, CREDENTIALS_FILE_MAX, &data, &size);
        if (r < 0) {
                error_list_add(errors, 0, 0, "%s: %s", file, r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
                return r;
        }
        r = credentials_parse(data, size, host, ret, errors);
        explicit_bzero(data, size);
        return r;
}
