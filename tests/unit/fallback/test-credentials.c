/* SPDX-License-Identifier: Apache-2.0 */
/* docker config.json credentials: the key spellings docker, podman and
 * Kubernetes write, Docker Hub's several names, and errors that never quote
 * a secret. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fallback/credentials.h"

#define SECRET "s3cr3t-Pa55w0rd"

/* No message in errors holds any of the secrets (NULL-terminated list). */
static void assert_no_secret(const struct error_list *errors, const char *const *secrets) {
        for (size_t i = 0; i < errors->n; i++)
                for (const char *const *s = secrets; *s; s++)
                        if (strstr(errors->items[i].message, *s))
                                fail_msg("error \"%s\" quotes a secret", errors->items[i].message);
}

/* Parses json for host; expects success and returns the entry (or NULL). */
static struct credentials *parse_ok(const char *json, const char *host) {
        struct error_list errors;
        error_list_init(&errors, "config.json");
        struct credentials *c = (struct credentials *) 0x1;
        int r = credentials_parse(json, strlen(json), host, &c, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                fail_msg("credentials_parse: %s", strerror(-r));
        }
        assert_int_equal(errors.n, 0);
        return c;
}

/* Parses json for host; expects -EINVAL with one error containing `needle`
 * and quoting none of the secrets. */
static void parse_bad(const char *json, const char *host, const char *needle, const char *const *secrets) {
        struct error_list errors;
        error_list_init(&errors, "config.json");
        struct credentials *c = (struct credentials *) 0x1;
        assert_int_equal(credentials_parse(json, strlen(json), host, &c, &errors), -EINVAL);
        assert_ptr_equal(c, (struct credentials *) 0x1); /* ret_* untouched on failure */
        assert_int_equal(errors.n, 1);
        if (!strstr(errors.items[0].message, needle))
                fail_msg("error \"%s\" does not mention \"%s\"", errors.items[0].message, needle);
        assert_no_secret(&errors, secrets);
}

static void test_auth_base64(void **state) {
        (void) state;
        _cleanup_free_ char *auth = unit_base64("alice:" SECRET);
        _cleanup_free_ char *json = NULL;
        assert_true(asprintf(&json, "{\"auths\": {\"registry.example.com\": {\"auth\": \"%s\"}}}", auth) > 0);
        struct credentials *c = parse_ok(json, "registry.example.com");
        assert_non_null(c);
        assert_string_equal(c->user, "alice");
        assert_string_equal(c->password, SECRET);
        credentials_free(c);

        /* The password is everything after the first colon (docker splits the same way). */
        _cleanup_free_ char *auth2 = unit_base64("bob:pa:ss:word");
        _cleanup_free_ char *json2 = NULL;
        assert_true(asprintf(&json2, "{\"auths\": {\"r.example\": {\"auth\": \"%s\"}}}", auth2) > 0);
        c = parse_ok(json2, "r.example");
        assert_string_equal(c->user, "bob");
        assert_string_equal(c->password, "pa:ss:word");
        credentials_free(c);

        /* auth wins over username/password when both are there. */
        _cleanup_free_ char *json3 = NULL;
        assert_true(asprintf(&json3,
                             "{\"auths\": {\"r.example\": {\"auth\": \"%s\", \"username\": \"x\", \"password\": \"y\"}}}",
                             auth) > 0);
        c = parse_ok(json3, "r.example");
        assert_string_equal(c->user, "alice");
        assert_string_equal(c->password, SECRET);
        credentials_free(c);
}

static void test_username_password(void **state) {
        (void) state;
        struct credentials *c = parse_ok("{\"auths\": {\"r.example:5000\": {\"username\": \"carol\", \"password\": \""
                                         SECRET "\", \"email\": \"c@example.com\"}}, \"credsStore\": \"desktop\"}",
                                         "r.example:5000");
        assert_non_null(c);
        assert_string_equal(c->user, "carol");
        assert_string_equal(c->password, SECRET);
        credentials_free(c);

        /* An empty "auth" is not a value: the username/password pair is used. */
        c = parse_ok("{\"auths\": {\"r.example\": {\"auth\": \"\", \"username\": \"dave\", \"password\": \"pw\"}}}",
                     "r.example");
        assert_string_equal(c->user, "dave");
        assert_string_equal(c->password, "pw");
        credentials_free(c);
}

static void test_key_forms(void **state) {
        (void) state;
        static const char *const json =
                "{\"auths\": {"
                "\"plain.example\": {\"username\": \"u1\", \"password\": \"p1\"},"
                "\"https://v1.example/v1/\": {\"username\": \"u2\", \"password\": \"p2\"},"
                "\"http://port.example:5000\": {\"username\": \"u3\", \"password\": \"p3\"},"
                "\"HTTPS://Upper.Example\": {\"username\": \"u4\", \"password\": \"p4\"},"
                "\"port.example\": {\"username\": \"u5\", \"password\": \"p5\"}"
                "}}";
        static const struct {
                const char *host, *user;
        } cases[] = {
                { "plain.example", "u1" },
                { "v1.example", "u2" },
                { "port.example:5000", "u3" },
                { "upper.example", "u4" },
                { "port.example", "u5" }, /* not the :5000 entry */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct credentials *c = parse_ok(json, cases[i].host);
                assert_non_null(c);
                assert_string_equal(c->user, cases[i].user);
                credentials_free(c);
        }
        /* A prefix or a longer name is another host; a port is part of the name. */
        static const char *const others[] = { "plain.example.evil", "plain.exampl", "v1.example:443", "port.example:5001",
                                              "docker.io" };
        for (size_t i = 0; i < ELEMENTSOF(others); i++)
                assert_null(parse_ok(json, others[i]));
}

static void test_docker_hub_aliases(void **state) {
        (void) state;
        static const char *const json =
                "{\"auths\": {\"https://index.docker.io/v1/\": {\"username\": \"hubuser\", \"password\": \"" SECRET "\"}}}";
        static const char *const hosts[] = { "docker.io", "registry-1.docker.io", "index.docker.io" };
        for (size_t i = 0; i < ELEMENTSOF(hosts); i++) {
                struct credentials *c = parse_ok(json, hosts[i]);
                assert_non_null(c);
                assert_string_equal(c->user, "hubuser");
                assert_string_equal(c->password, SECRET);
                credentials_free(c);
        }
        assert_null(parse_ok(json, "ghcr.io"));
        assert_null(parse_ok(json, "docker.io.example"));

        /* And the other way round: a "docker.io" key serves registry-1.docker.io. */
        struct credentials *c = parse_ok("{\"auths\": {\"docker.io\": {\"username\": \"h2\", \"password\": \"p\"}}}",
                                         "registry-1.docker.io");
        assert_non_null(c);
        assert_string_equal(c->user, "h2");
        credentials_free(c);
}

static void test_no_entry(void **state) {
        (void) state;
        assert_null(parse_ok("{\"auths\": {}}", "r.example"));
        assert_null(parse_ok("{\"auths\": {\"other.example\": {\"username\": \"u\", \"password\": \"p\"}}}",
                             "r.example"));
        /* A broken entry for another host is not this host's business. */
        assert_null(parse_ok("{\"auths\": {\"other.example\": {\"identitytoken\": \"x\"}}}", "r.example"));
}

static void test_malformed(void **state) {
        (void) state;
        static const char *const secrets[] = { SECRET, NULL };
        /* jansson's own message quotes the text near the error: it must not reach ours. */
        parse_bad("{\"auths\": {\"r.example\": {\"username\": \"u\", \"password\": \"" SECRET "\"}", "r.example",
                  "not valid JSON", secrets);
        parse_bad("{\"auths\": {\"r.example\": {\"password\": \"" SECRET "\" \"username\": \"u\"}}}", "r.example",
                  "not valid JSON", secrets);
        parse_bad("", "r.example", "not valid JSON", secrets);
        parse_bad("{\"credsStore\": \"desktop\"}", "r.example", "auths", secrets);
        parse_bad("[]", "r.example", "auths", secrets);
        parse_bad("{\"auths\": [\"r.example\"]}", "r.example", "auths", secrets);
        parse_bad("{\"auths\": {\"r.example\": \"" SECRET "\"}}", "r.example", "not an object", secrets);
        /* Duplicate keys are ambiguous: refused. */
        parse_bad("{\"auths\": {\"r.example\": {\"username\": \"u\", \"password\": \"" SECRET "\"},"
                  "\"r.example\": {\"username\": \"v\", \"password\": \"w\"}}}",
                  "r.example", "not valid JSON", secrets);

        /* The position is given. */
        struct error_list errors;
        error_list_init(&errors, "config.json");
        struct credentials *c = NULL;
        const char *bad = "{\n  \"auths\": {\n    \"r.example\": x\n  }\n}";
        assert_int_equal(credentials_parse(bad, strlen(bad), "r.example", &c, &errors), -EINVAL);
        assert_int_equal(errors.n, 1);
        assert_int_equal(errors.items[0].line, 3);
        assert_true(errors.items[0].column > 0);
}

static void test_bad_auth(void **state) {
        (void) state;
        _cleanup_free_ char *no_colon = unit_base64("alice" SECRET);
        _cleanup_free_ char *empty_user = unit_base64(":" SECRET);
        /* "alice:pw" is YWxpY2U6cHc=; each of these is a broken spelling of it. */
        static const char *const bad_b64[] = {
                "YWxpY2U6cH!=",  /* not in the alphabet */
                "YWxpY2U6cHc",   /* unpadded */
                "YWxp Y2U6cHc=", /* whitespace */
                "YWxp=2U6cHc=",  /* padding in the middle */
                "YWxpY2U6cHc==", /* too much padding */
        };
        const char *const secrets[] = { SECRET, no_colon, empty_user, "YWxpY2U6cH", "Y2U6cHc", NULL };
        for (size_t i = 0; i < ELEMENTSOF(bad_b64); i++) {
                _cleanup_free_ char *json = NULL;
                assert_true(asprintf(&json, "{\"auths\": {\"r.example\": {\"auth\": \"%s\"}}}", bad_b64[i]) > 0);
                parse_bad(json, "r.example", "not base64 of \"user:password\"", secrets);
        }
        _cleanup_free_ char *json = NULL;
        assert_true(asprintf(&json, "{\"auths\": {\"r.example\": {\"auth\": \"%s\"}}}", no_colon) > 0);
        parse_bad(json, "r.example", "not base64 of \"user:password\"", secrets);

        _cleanup_free_ char *json2 = NULL;
        assert_true(asprintf(&json2, "{\"auths\": {\"r.example\": {\"auth\": \"%s\"}}}", empty_user) > 0);
        parse_bad(json2, "r.example", "empty user name", secrets);

        /* An embedded NUL would cut the user name short: refused. */
        parse_bad("{\"auths\": {\"r.example\": {\"auth\": \"YQBiOmM=\"}}}", "r.example", "not base64", secrets);

        /* Half a pair is no pair. */
        parse_bad("{\"auths\": {\"r.example\": {\"username\": \"u\"}}}", "r.example", "no auth", secrets);
        parse_bad("{\"auths\": {\"r.example\": {\"password\": \"" SECRET "\"}}}", "r.example", "no auth", secrets);
        parse_bad("{\"auths\": {\"r.example\": {\"username\": 1, \"password\": \"" SECRET "\"}}}", "r.example",
                  "no auth", secrets);
        parse_bad("{\"auths\": {\"r.example\": {\"username\": \"\", \"password\": \"" SECRET "\"}}}", "r.example",
                  "empty user name", secrets);
}

/* An identity token (an OAuth2 refresh token, fallback/token.c trades it) is
 * taken with its user name, if any, and no password. */
static void test_identitytoken(void **state) {
        (void) state;
        /* As `az acr login` writes it: no user at all. */
        struct credentials *c = parse_ok("{\"auths\": {\"myregistry.azurecr.io\": {\"auth\": \"\", "
                                         "\"identitytoken\": \"eyJhbGciOiJSUzI1NiJ9.refresh-" SECRET "\"}}}",
                                         "myregistry.azurecr.io");
        assert_non_null(c);
        assert_null(c->user);
        assert_null(c->password);
        assert_string_equal(c->identity_token, "eyJhbGciOiJSUzI1NiJ9.refresh-" SECRET);
        assert_false(credentials_have_password(c));
        credentials_free(c);

        /* As docker login stores it: "auth" is base64 of "user:" (no password). */
        c = parse_ok("{\"auths\": {\"r.example\": {\"auth\": \"dXNlcjo=\", \"identitytoken\": \"tok-" SECRET "\"}}}",
                     "r.example");
        assert_non_null(c);
        assert_string_equal(c->user, "user");
        assert_null(c->password);
        assert_string_equal(c->identity_token, "tok-" SECRET);
        credentials_free(c);

        /* With a username key, and a password that an identity token overrides. */
        c = parse_ok("{\"auths\": {\"r.example\": {\"username\": \"u\", \"password\": \"p\", "
                     "\"identitytoken\": \"tok\"}}}",
                     "r.example");
        assert_string_equal(c->user, "u");
        assert_null(c->password);
        assert_string_equal(c->identity_token, "tok");
        credentials_free(c);

        static const char *const secrets[] = { SECRET, NULL };
        parse_bad("{\"auths\": {\"r.example\": {\"identitytoken\": \"\"}}}", "r.example", "identitytoken", secrets);
        parse_bad("{\"auths\": {\"r.example\": {\"identitytoken\": 7, \"auth\": \"dXNlcjo=\"}}}", "r.example",
                  "identitytoken", secrets);
}

/* Copies and comparisons: what tells a changed file from a touched one. */
static void test_dup_equal(void **state) {
        (void) state;
        struct credentials *a = parse_ok("{\"auths\": {\"r.example\": {\"username\": \"u\", \"password\": \"" SECRET "\"}}}",
                                         "r.example");
        struct credentials *b = credentials_dup(a);
        assert_non_null(b);
        assert_ptr_not_equal(a->password, b->password);
        assert_true(credentials_equal(a, b));
        assert_true(credentials_equal(NULL, NULL));
        assert_false(credentials_equal(a, NULL));
        b->password[0] = 'S';
        assert_false(credentials_equal(a, b));
        struct credentials *t = parse_ok("{\"auths\": {\"r.example\": {\"identitytoken\": \"x\"}}}", "r.example");
        struct credentials *t2 = credentials_dup(t);
        assert_true(credentials_equal(t, t2));
        assert_false(credentials_equal(a, t));
        assert_null(credentials_dup(NULL));
        credentials_free(a);
        credentials_free(b);
        credentials_free(t);
        credentials_free(t2);
}

static void test_load(void **state) {
        (void) state;
        char dir[] = "/tmp/layerd-test-credentials-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *path = NULL;
        assert_true(asprintf(&path, "%s/config.json", dir) > 0);

        /* Missing file: -ENOENT, and the file named. */
        struct error_list errors;
        error_list_init(&errors, "test");
        struct credentials *c = (struct credentials *) 0x1;
        assert_int_equal(credentials_load(path, "r.example", &c, &errors), -ENOENT);
        assert_ptr_equal(c, (struct credentials *) 0x1);
        assert_int_equal(errors.n, 1);
        assert_non_null(strstr(errors.items[0].message, path));

        FILE *f = fopen(path, "we");
        assert_non_null(f);
        _cleanup_free_ char *auth = unit_base64("erin:" SECRET);
        fprintf(f, "{\"auths\": {\"https://r.example:8443/v2/\": {\"auth\": \"%s\"}}}\n", auth);
        assert_int_equal(fclose(f), 0);
        error_list_init(&errors, "test");
        c = NULL;
        assert_int_equal(credentials_load(path, "r.example:8443", &c, &errors), 0);
        assert_non_null(c);
        assert_string_equal(c->user, "erin");
        assert_string_equal(c->password, SECRET);
        c = credentials_free(c);
        assert_null(c);
        assert_int_equal(credentials_load(path, "r.example", &c, &errors), 0);
        assert_null(c);
        assert_int_equal(errors.n, 0);

        /* Malformed on disk: the error is the parser's, still without the secret. */
        f = fopen(path, "we");
        assert_non_null(f);
        fprintf(f, "{\"auths\": {\"r.example\": {\"password\": \"%s\"", SECRET);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(credentials_load(path, "r.example", &c, &errors), -EINVAL);
        assert_true(errors.n >= 1);
        static const char *const secrets[] = { SECRET, NULL };
        assert_no_secret(&errors, secrets);

        /* Larger than CREDENTIALS_FILE_MAX: refused before parsing. */
        f = fopen(path, "we");
        assert_non_null(f);
        for (size_t i = 0; i < CREDENTIALS_FILE_MAX / 64 + 1; i++)
                fputs("                                                               \n", f);
        assert_int_equal(fclose(f), 0);
        error_list_init(&errors, "test");
        assert_int_equal(credentials_load(path, "r.example", &c, &errors), -EFBIG);
        assert_int_equal(errors.n, 1);

        assert_null(credentials_free(NULL));
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_auth_base64),
                cmocka_unit_test(test_username_password),
                cmocka_unit_test(test_key_forms),
                cmocka_unit_test(test_docker_hub_aliases),
                cmocka_unit_test(test_no_entry),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_bad_auth),
                cmocka_unit_test(test_identitytoken),
                cmocka_unit_test(test_dup_equal),
                cmocka_unit_test(test_load),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
