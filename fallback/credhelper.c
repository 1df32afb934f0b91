/* SPDX-License-Identifier: Apache-2.0 */
/* A docker credential helper asked for one registry's credentials. The
 * protocol is docker-credential-helpers' (client/client.go): the action as
 * the only argument, the server URL on stdin, the credentials as JSON on
 * stdout, a non-zero exit with a message on stdout when there are none. */
#include "fallback/credhelper.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/run.h"
#include "fallback/credentials.h"

const char *credhelper_server_url(const char *host) {
        /* What docker sends for Docker Hub. */
        return credentials_is_docker_hub(host, strlen(host)) ? "https://index.docker.io/v1/" : host;
}

static bool usable(const char *s) {
        return s && s[0] && !strpbrk(s, "\r\n");
}

int credhelper_parse(const char *data, size_t size, struct credentials **ret, char *reason, size_t rsize) {
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *root = json_loadb(data, size, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(root)) {
                /* Never jansson's text: it quotes the input, which may be a secret. */
                snprintf(reason, rsize, "answer is not a JSON object");
                return -EBADMSG;
        }
        const char *user = json_string_value(json_object_get(root, "Username"));
        const char *secret = json_string_value(json_object_get(root, "Secret"));
        if (!usable(user) || !usable(secret)) {
                snprintf(reason, rsize, "answer has no usable Username and Secret");
                return -EBADMSG;
        }
        _cleanup_(credentials_freep) struct credentials *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (strcmp(user, CREDHELPER_TOKEN_USER) == 0) {
                if (!(c->identity_token = strdup(secret)))
                        return -ENOMEM;
        } else if (!(c->user = strdup(user)) || !(c->password = strdup(secret)))
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

int credhelper_get(const char *command, const char *host, uint64_t timeout_ms, bool (*cancelled)(void *userdata),
                   void *userdata, struct credentials **ret, char *reason, size_t rsize) {
        /* A clean environment: nothing of layerd's (its own settings, a
         * proxy's credentials) leaks into a program that only names a secret. */
        static char *const envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/", NULL };
        char *argv[] = { (char *) command, "get", NULL };
        const char *server = credhelper_server_url(host);
        struct run_options o = {
                .argv = argv,
                .envp = envp,
                .input = server,
                .input_size = strlen(server),
                .timeout_ms = timeout_ms,
                .max = CREDHELPER_OUTPUT_MAX,
                .cancelled = cancelled,
                .cancel_userdata = userdata,
        };
        char *out = NULL;
        size_t size = 0;
        int status = 0;
        int r = run_program(&o, &out, &size, &status);
        if (r == -ECANCELED)
                snprintf(reason, rsize, "cancelled");
        else if (r == -ETIMEDOUT)
                snprintf(reason, rsize, "credential helper killed after %llu ms", (unsigned long long) timeout_ms);
        else if (r == -EFBIG)
                snprintf(reason, rsize, "credential helper wrote more than %u bytes", CREDHELPER_OUTPUT_MAX);
        else if (r < 0)
                snprintf(reason, rsize, "credential helper cannot run: %s", strerror(-r));
        else if (status != 0) {
                /* Its message ("credentials not found in native keychain") is not
                 * repeated: a helper's output is not ours to log. */
                snprintf(reason, rsize, "credential helper exited with status %d", status);
                r = -ENOKEY;
        } else
                r = credhelper_parse(out, size, ret, reason, rsize);
        if (out) {
                explicit_bzero(out, size);
                free(out);
        }
        return r;
}
