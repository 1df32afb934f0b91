/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the image reference and digest string validators. Besides
 * "no crash, no leak", it checks what callers rely on: a parsed digest prints
 * back to exactly its input; a parsed reference prints to a string that parses
 * again to itself (normalisation is idempotent) and every part of it passes its
 * own validator; the validators agree with the parser in both directions; and
 * a registry's namespace path component names that registry alone. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/parse.h"
#include "common/reference.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                               \
        do {                                                                    \
                fprintf(stderr, __VA_ARGS__);                                   \
                fputc('\n', stderr);                                            \
                abort();                                                        \
        } while (0)

static bool streq_null(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

static void check_digest(const char *s) {
        /* Failure leaves the output alone: output parameters are written only on success. */
        struct digest d, sentinel;
        memset(&sentinel, 0xa5, sizeof(sentinel));
        d = sentinel;
        int r = digest_parse(s, &d);
        bool valid = reference_digest_is_valid(s);
        if (valid != (r == 0))
                FAIL("reference_digest_is_valid(\"%s\") = %d but digest_parse() = %d", s, valid, r);
        if (r < 0) {
                if (r != -EINVAL || memcmp(&d, &sentinel, sizeof(d)) != 0)
                        FAIL("digest_parse(\"%s\") failed with %d or wrote its output", s, r);
                return;
        }
        char buf[DIGEST_STRING_MAX], hex[DIGEST_HEX_MAX];
        if (strcmp(digest_to_string(&d, buf), s) != 0)
                FAIL("digest \"%s\" prints as \"%s\"", s, buf);
        const char *name = digest_algorithm_name(d.algorithm);
        if (!name || strlen(s) != strlen(name) + 1 + 2 * digest_size(d.algorithm))
                FAIL("digest \"%s\": algorithm %d does not fit its length", s, (int) d.algorithm);
        if (strcmp(digest_hex(&d, hex), s + strlen(name) + 1) != 0)
                FAIL("digest \"%s\" has hex \"%s\"", s, hex);
        /* A second parse of the printed form gives the same value. */
        struct digest again;
        if (digest_parse(buf, &again) < 0 || !digest_equal(&d, &again))
                FAIL("printed digest \"%s\" does not parse to the same value", buf);
}

/* Every part of a parsed reference passes its own validator, and the name fits. */
static void check_parts(const char *input, const struct reference *r, bool want_tag) {
        if (!r->domain || !r->path)
                FAIL("\"%s\": parsed without domain or path", input);

        char *host = NULL;
        uint16_t port;
        if (parse_host_port(r->domain, false, &host, &port) < 0)
                FAIL("\"%s\": domain \"%s\" is not a valid host[:port]", input, r->domain);
        free(host);
        if (strchr(r->domain, '/'))
                FAIL("\"%s\": domain \"%s\" holds a '/'", input, r->domain);

        if (!reference_path_is_valid(r->path))
                FAIL("\"%s\": path \"%s\" is not valid", input, r->path);
        if (strlen(r->domain) + 1 + strlen(r->path) > REFERENCE_NAME_MAX)
                FAIL("\"%s\": name \"%s/%s\" is longer than %d", input, r->domain, r->path, REFERENCE_NAME_MAX);
        /* Docker Hub is always spelt "docker.io", and its official images under "library/". */
        if (strcmp(r->domain, "index.docker.io") == 0 ||
            (strcmp(r->domain, "docker.io") == 0 && !strchr(r->path, '/')))
                FAIL("\"%s\": Docker Hub name \"%s/%s\" is not normalised", input, r->domain, r->path);

        if (r->tag && !reference_tag_is_valid(r->tag))
                FAIL("\"%s\": tag \"%s\" is not valid", input, r->tag);
        if (r->digest && !reference_digest_is_valid(r->digest))
                FAIL("\"%s\": digest \"%s\" is not valid", input, r->digest);
        if (want_tag && !r->tag && !r->digest)
                FAIL("\"%s\": reference with neither tag nor digest", input);
        if (!want_tag && (r->tag || r->digest))
                FAIL("\"%s\": repository with a tag or digest", input);
}

static void check_reference(const char *s, bool want_tag) {
        struct reference r, sentinel;
        memset(&sentinel, 0xa5, sizeof(sentinel));
        r = sentinel;
        const char *reason = NULL;
        int rc = reference_parse(s, want_tag, &r, &reason);
        if (rc < 0) {
                if (memcmp(&r, &sentinel, sizeof(r)) != 0)
                        FAIL("reference_parse(\"%s\", %d) failed but wrote its output", s, want_tag);
                if (rc == -ENOMEM)
                        return;
                if (rc != -EINVAL || !reason)
                        FAIL("reference_parse(\"%s\", %d) failed with %d, reason %s", s, want_tag, rc,
                             reason ? reason : "(none)");
                return;
        }
        check_parts(s, &r, want_tag);

        char *out = reference_to_string(&r);
        if (!out)
                abort();
        struct reference again;
        reason = NULL;
        if (reference_parse(out, want_tag, &again, &reason) < 0)
                FAIL("\"%s\" prints as \"%s\", which does not parse: %s", s, out, reason ? reason : "?");
        check_parts(out, &again, want_tag);
        char *out2 = reference_to_string(&again);
        if (!out2)
                abort();
        if (strcmp(out, out2) != 0 || !streq_null(r.domain, again.domain) || !streq_null(r.path, again.path) ||
            !streq_null(r.tag, again.tag) || !streq_null(r.digest, again.digest))
                FAIL("\"%s\" prints as \"%s\", which prints as \"%s\"", s, out, out2);

        /* A repository name is also a reference, tagged "latest". */
        if (!want_tag) {
                struct reference tagged;
                if (reference_parse(s, true, &tagged, NULL) < 0)
                        FAIL("repository \"%s\" does not parse as a reference", s);
                if (!streq_null(r.domain, tagged.domain) || !streq_null(r.path, tagged.path) ||
                    !streq_null(tagged.tag, "latest") || tagged.digest)
                        FAIL("repository \"%s\" parses differently as a reference", s);
                reference_done(&tagged);
        }
        free(out2);
        free(out);
        reference_done(&again);
        reference_done(&r);
}

/* Whatever a validator accepts, the parser accepts in that place, unchanged. */
static void check_validators(const char *s) {
        struct reference r;
        char *composed = NULL;

        bool path_ok = reference_path_is_valid(s);
        /* Upper-case letters or anything outside the grammar fail at once; so does a name of 256. */
        if (path_ok && (strlen(s) > REFERENCE_NAME_MAX || s[strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-/")]))
                FAIL("path \"%s\" passes reference_path_is_valid", s);
        if (path_ok && strlen("registry.example/") + strlen(s) <= REFERENCE_NAME_MAX) {
                if (asprintf(&composed, "registry.example/%s", s) < 0)
                        abort();
                if (reference_parse(composed, false, &r, NULL) < 0)
                        FAIL("valid path \"%s\" is refused in \"%s\"", s, composed);
                if (strcmp(r.domain, "registry.example") != 0 || strcmp(r.path, s) != 0)
                        FAIL("valid path \"%s\" is changed in \"%s\"", s, composed);
                reference_done(&r);
                free(composed);
        }

        bool tag_ok = reference_tag_is_valid(s);
        if (tag_ok && strlen(s) > 128)
                FAIL("tag \"%s\" longer than 128 passes reference_tag_is_valid", s);
        if (tag_ok) {
                if (asprintf(&composed, "a/b:%s", s) < 0)
                        abort();
                if (reference_parse(composed, true, &r, NULL) < 0)
                        FAIL("valid tag \"%s\" is refused in \"%s\"", s, composed);
                if (!streq_null(r.tag, s))
                        FAIL("valid tag \"%s\" is changed in \"%s\"", s, composed);
                reference_done(&r);
                free(composed);
        }

        if (reference_digest_is_valid(s)) {
                if (asprintf(&composed, "a/b@%s", s) < 0)
                        abort();
                if (reference_parse(composed, true, &r, NULL) < 0)
                        FAIL("valid digest \"%s\" is refused in \"%s\"", s, composed);
                if (r.tag || !streq_null(r.digest, s))
                        FAIL("valid digest \"%s\" is changed in \"%s\"", s, composed);
                reference_done(&r);
                free(composed);
        }
}

/* A registry's namespace (reference_registry_namespace) is one valid path
 * component that decodes to the same registry (so no two registries share
 * one: the '_' count tells host, host:port, IPv6 and IPv6:port apart), and
 * there is one exactly when reference_parse() reads the name as a registry. */
static void check_namespace(const char *s) {
        char ns[REFERENCE_NAME_MAX + 1];
        int r = reference_registry_namespace(s, ns, sizeof(ns));
        char *host = NULL;
        uint16_t port = 0;
        int hr = parse_host_port(s, false, &host, &port);
        if (r < 0) {
                if (r != -EINVAL && r != -ENAMETOOLONG && r != -ENOMEM)
                        FAIL("namespace of \"%s\": %d", s, r);
                if (r == -EINVAL && hr == 0 && (port || strchr(host, '.') || strcmp(host, "localhost") == 0))
                        FAIL("registry \"%s\" has no namespace", s);
                free(host);
                return;
        }
        if (hr < 0)
                FAIL("\"%s\" is no host[:port] but has namespace \"%s\"", s, ns);
        if (strchr(ns, '/') || !reference_path_is_valid(ns))
                FAIL("namespace \"%s\" of \"%s\" is no path component", ns, s);
        size_t underscores = 0;
        for (const char *p = ns; *p; p++)
                underscores += *p == '_';
        char decoded[REFERENCE_NAME_MAX + 8];
        const char *last = strrchr(ns, '_');
        if (underscores == 0)
                snprintf(decoded, sizeof(decoded), "%s", ns);
        else if (underscores == 1)
                snprintf(decoded, sizeof(decoded), "%.*s:%s", (int) (last - ns), ns, last + 1);
        else if (underscores == 7 || underscores == 8) {
                size_t n = 0;
                decoded[n++] = '[';
                size_t groups = 0;
                for (const char *p = ns; *p && n < sizeof(decoded) - 8; p++) {
                        if (*p == '_' && ++groups == 8)
                                break;
                        decoded[n++] = *p == '_' ? ':' : *p;
                }
                decoded[n++] = ']';
                decoded[n] = '\0';
                if (underscores == 8)
                        snprintf(decoded + n, sizeof(decoded) - n, ":%s", last + 1);
        } else
                FAIL("namespace \"%s\" of \"%s\" has %zu '_'", ns, s, underscores);
        char *host2 = NULL;
        uint16_t port2 = 0;
        if (parse_host_port(decoded, false, &host2, &port2) < 0 || strcmp(host, host2) != 0 || port != port2)
                FAIL("namespace \"%s\" of \"%s\" decodes to \"%s\"", ns, s, decoded);
        free(host2);
        /* "<registry>/x" names the registry itself, never a Docker Hub path. */
        char ref[REFERENCE_NAME_MAX + 8];
        struct reference parsed;
        if (strlen(s) < 200) {
                snprintf(ref, sizeof(ref), "%s/x", s);
                if (reference_parse(ref, false, &parsed, NULL) == 0) {
                        if (strcmp(parsed.domain, "docker.io") == 0 && strcmp(host, "docker.io") != 0 &&
                            strcmp(host, "index.docker.io") != 0)
                                FAIL("registry \"%s\" with namespace \"%s\" is Docker Hub's path", s, ns);
                        reference_done(&parsed);
                }
        }
        free(host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* References are short; nothing is learnt from megabytes of them. */
        if (size > 4096)
                return 0;
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';

        check_digest(s);
        check_reference(s, true);
        check_reference(s, false);
        check_validators(s);
        check_namespace(s);

        free(s);
        return 0;
}
