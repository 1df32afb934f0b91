/* SPDX-License-Identifier: Apache-2.0 */
/* Golden tests of every renderer: each spec renders, per format, to exactly the
 * files under tests/golden/render/<case>/<format>/ (a rendered name such as
 * "docker.io/hosts.toml" is a path there), no more and no fewer; rendering is
 * deterministic; and the notes say what a format leaves out. The meaning of
 * the golden files is checked independently by tests/golden/render/check.py.
 * Run from the repository root; LAYERD_UPDATE_GOLDEN=1 rewrites the golden
 * files after an intended change (then review the diff). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fsutil.h"
#include "hostsconfig/hosts.h"

#define CACHE "/var/lib/layerd"
#define AGENT "http://127.0.0.1:5080"
#define GOLDEN "tests/golden/render"
#define RENDER_YAML GOLDEN "/render.yaml"

/* ---- helpers -------------------------------------------------------------------- */

static char *slurp(const char *path) {
        char *data = NULL;
        size_t size = 0;
        int r = read_file_bounded(path, SPEC_FILE_MAX, &data, &size);
        if (r < 0)
                fail_msg("cannot read %s: %s (run from the repository root)", path, strerror(-r));
        return data;
}

/* The YAML text of path with its hosts.containerd_version value replaced. */
static char *with_version(const char *text, const char *version) {
        static const char key[] = "containerd_version: \"";
        const char *p = strstr(text, key);
        assert_non_null(p);
        p += strlen(key);
        const char *end = strchr(p, '"');
        assert_non_null(end);
        char *out = NULL;
        assert_true(asprintf(&out, "%.*s%s%s", (int) (p - text), text, version, end) > 0);
        return out;
}

static struct spec *load(const char *path, const char *version) {
        char *text = slurp(path);
        if (version) {
                char *edited = with_version(text, version);
                free(text);
                text = edited;
        }
        struct spec *s = NULL;
        struct error_list errors;
        int r = spec_parse(path, text, strlen(text), CACHE, &s, &errors);
        if (r != 0) {
                error_list_print(&errors, stderr);
                fail_msg("%s does not parse", path);
        }
        if (version)
                assert_string_equal(s->hosts.containerd_version, version);
        free(text);
        return s;
}

static struct hosts_output *render(const struct spec *s, enum hosts_format format, struct error_list *notes) {
        struct hosts_output *o = NULL;
        assert_int_equal(hosts_render(s, format, AGENT, &o, notes), 0);
        assert_non_null(o);
        assert_int_equal(o->format, format);
        return o;
}

static void print_notes(const struct error_list *notes) {
        fprintf(stderr, "notes (%zu):\n", error_list_count(notes));
        for (size_t i = 0; i < notes->n; i++)
                fprintf(stderr, "  \"%s\"\n", notes->items[i].message);
}

static void assert_note(const struct error_list *notes, const char *message) {
        for (size_t i = 0; i < notes->n; i++)
                if (strcmp(notes->items[i].message, message) == 0)
                        return;
        print_notes(notes);
        fail_msg("no note \"%s\"", message);
}

static void assert_note_count(const struct error_list *notes, size_t n) {
        if (error_list_count(notes) != n) {
                print_notes(notes);
                fail_msg("%zu notes, expected %zu", error_list_count(notes), n);
        }
        assert_int_equal(notes->dropped, 0);
}

/* Regular files under a golden directory, counted by nftw(). */
static size_t n_golden_files;

static int count_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) path, (void) st, (void) ftw;
        if (flag == FTW_F)
                n_golden_files++;
        return 0;
}

static void write_golden(const char *path, const struct hosts_file *f) {
        char *dir = strdup(path);
        assert_non_null(dir);
        *strrchr(dir, '/') = '\0';
        assert_int_equal(mkdir_p(dir, 0755), 0);
        assert_int_equal(write_file_atomic(path, f->content, f->size, 0644), 0);
        free(dir);
}

/* Compares o byte for byte with GOLDEN/<name>/<format>/, which must hold exactly o's files. */
static void check_golden(const struct hosts_output *o, const char *name) {
        char *dir = NULL;
        assert_true(asprintf(&dir, "%s/%s/%s", GOLDEN, name, hosts_format_to_string(o->format)) > 0);
        bool update = getenv("LAYERD_UPDATE_GOLDEN") != NULL;
        if (update) {
                /* Start from nothing, so a file the renderer no longer writes goes too. */
                struct stat st;
                if (stat(dir, &st) == 0)
                        assert_int_equal(unit_rm_rf(dir), 0);
        }
        for (size_t i = 0; i < o->n_files; i++) {
                const struct hosts_file *f = &o->files[i];
                /* Names stay inside the output directory. */
                assert_true(f->name[0] != '/' && strstr(f->name, "..") == NULL);
                assert_int_equal(strlen(f->content), f->size);
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(o->files[j].name, f->name);
                char *path = NULL;
                assert_true(asprintf(&path, "%s/%s", dir, f->name) > 0);
                if (update)
                        write_golden(path, f);
                char *want = slurp(path);
                if (strlen(want) != f->size || memcmp(want, f->content, f->size) != 0) {
                        fprintf(stderr, "--- %s\n+++ rendered\n%s", path, f->content);
                        fail_msg("rendered %s differs from %s", f->name, path);
                }
                free(want);
                free(path);
        }
        n_golden_files = 0;
        assert_int_equal(nftw(dir, count_one, 16, FTW_PHYS), 0);
        if (n_golden_files != o->n_files)
                fail_msg("%s holds %zu files, the renderer wrote %zu: remove the stale ones", dir, n_golden_files,
                         o->n_files);
        free(dir);
}

static void assert_same_output(const struct hosts_output *a, const struct hosts_output *b) {
        assert_int_equal(a->format, b->format);
        assert_int_equal(a->n_files, b->n_files);
        for (size_t i = 0; i < a->n_files; i++) {
                assert_string_equal(a->files[i].name, b->files[i].name);
                assert_int_equal(a->files[i].size, b->files[i].size);
                assert_memory_equal(a->files[i].content, b->files[i].content, a->files[i].size);
        }
}

/* Renders s in format, checks it against the golden files of case name and
 * that a second rendering is identical; returns the output and its notes. */
static struct hosts_output *golden(const struct spec *s, enum hosts_format format, const char *name,
                                   struct error_list *notes) {
        struct hosts_output *o = render(s, format, notes);
        check_golden(o, name);
        struct error_list notes2;
        struct hosts_output *again = render(s, format, &notes2);
        assert_same_output(o, again);
        assert_int_equal(error_list_count(&notes2), error_list_count(notes));
        for (size_t i = 0; i < notes->n; i++)
                assert_string_equal(notes2.items[i].message, notes->items[i].message);
        hosts_output_free(again);
        return o;
}

static void assert_names(const struct hosts_output *o, size_t n, const char *const *names) {
        assert_int_equal(o->n_files, n);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(o->files[i].name, names[i]);
}

#define ASSERT_NAMES(o, ...)                                                                                   \
        assert_names(o, sizeof((const char *[]) { __VA_ARGS__ }) / sizeof(const char *),                   \
                     (const char *const[]) { __VA_ARGS__ })

static bool contains(const struct hosts_output *o, size_t i, const char *text) {
        assert_true(i < o->n_files);
        return strstr(o->files[i].content, text) != NULL;
}

/* ---- docs/example-spec.yaml ------------------------------------------------------------ */

static void test_example_spec(void **state) {
        (void) state;
        struct spec *s = load("docs/example-spec.yaml", NULL);
        struct error_list notes;

        struct hosts_output *o = golden(s, HOSTS_FORMAT_CONTAINERD, "example-spec", &notes);
        ASSERT_NAMES(o, "docker.io/hosts.toml", "ghcr.io/hosts.toml", "registry.k8s.io/hosts.toml", "quay.io/hosts.toml",
                     "registry.example.com:5000/hosts.toml", "registry.lab.example.com/hosts.toml");
        assert_note_count(&notes, 1);
        assert_note(&notes, "docker.io: credentials_file of https://harbor.mgmt.example.com/v2/proxy-docker.io is for "
                            "layerd only: containerd's hosts.toml has no place for credentials");
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_DOCKER, "example-spec", &notes);
        ASSERT_NAMES(o, "daemon.json");
        assert_note_count(&notes, 7);
        assert_note(&notes, "ghcr.io: not rendered: Docker's registry-mirrors apply to docker.io only");
        assert_note(&notes, "docker.io: https://harbor.mgmt.example.com/v2/proxy-docker.io left out: Docker mirrors "
                            "cannot have a path");
        assert_note(&notes, "docker.io: https://zot.mgmt.example.com:5000: TLS settings and headers are not rendered "
                            "(Docker reads certificates from /etc/docker/certs.d)");
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_TALOS, "example-spec", &notes);
        ASSERT_NAMES(o, "talos-registries.yaml");
        assert_note_count(&notes, 9);
        assert_note(&notes, "docker.io: credentials of https://harbor.mgmt.example.com/v2/proxy-docker.io are for layerd "
                            "only: Talos's RegistryAuthConfig would hold the secret itself in the machine config");
        assert_note(&notes, "ghcr.io: https://zot.mgmt.example.com:5000 gets the TLS settings of "
                            "https://zot.mgmt.example.com:5000: Talos has one RegistryTLSConfig per host");
        assert_note(&notes, "registry.example.com:5000: client certificate of https://mirror-a.example.com not rendered: "
                            "Talos's clientIdentity takes the private key itself, and layerd does not copy private keys "
                            "into rendered files");
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_TALOS_LEGACY, "example-spec", &notes);
        ASSERT_NAMES(o, "talos-registries.yaml");
        assert_note_count(&notes, 5);
        assert_note(&notes, "docker.io: https://harbor.mgmt.example.com/v2/proxy-docker.io left out: Talos has one "
                            "overridePath per registry, and layerd needs it off");
        assert_note(&notes, "registry.example.com:5000: https://mirror-b.example.com: TLS settings and headers are not "
                            "rendered (Talos takes certificate contents in machine.registries.config)");
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_REGISTRIES_CONF, "example-spec", &notes);
        ASSERT_NAMES(o, "registries.conf");
        assert_note_count(&notes, 5);
        /* layerd first for every registry it mirrors, by the registry's namespace. */
        assert_true(contains(o, 0, "prefix = \"ghcr.io\"\nlocation = \"ghcr.io\"\n\n[[registry.mirror]]\n"
                                   "location = \"127.0.0.1:5080/ghcr.io\"\ninsecure = true\n"));
        assert_true(contains(o, 0, "\n[[registry.mirror]]\nlocation = \"127.0.0.1:5080/registry.example.com_5000\"\n"));
        assert_note(&notes, "registry.example.com:5000: fallback_to_origin is false, but CRI-O and podman always try "
                            "the location last");
        hosts_output_free(o);
        spec_free(s);
}

/* ---- docs/example-helm-values.yaml ------------------------------------------------------- */

static void test_example_helm(void **state) {
        (void) state;
        struct spec *s = load("docs/example-helm-values.yaml", NULL);
        struct error_list notes;

        struct hosts_output *o = golden(s, HOSTS_FORMAT_CONTAINERD, "example-helm-values", &notes);
        ASSERT_NAMES(o, "docker.io/hosts.toml", "ghcr.io/hosts.toml", "registry.k8s.io/hosts.toml", "quay.io/hosts.toml",
                     "registry.lab.example.com/hosts.toml");
        assert_note_count(&notes, 0);
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_DOCKER, "example-helm-values", &notes);
        ASSERT_NAMES(o, "daemon.json");
        assert_note_count(&notes, 5);
        assert_note(&notes, "registry.lab.example.com: not rendered: Docker's registry-mirrors apply to docker.io only");
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_TALOS, "example-helm-values", &notes);
        ASSERT_NAMES(o, "talos-registries.yaml");
        assert_note_count(&notes, 0);
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_TALOS_LEGACY, "example-helm-values", &notes);
        ASSERT_NAMES(o, "talos-registries.yaml");
        assert_note_count(&notes, 1);
        assert_note(&notes, "docker.io: https://harbor.mgmt.example.com/v2/proxy-docker.io left out: Talos has one "
                            "overridePath per registry, and layerd needs it off");
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_REGISTRIES_CONF, "example-helm-values", &notes);
        ASSERT_NAMES(o, "registries.conf");
        assert_note_count(&notes, 0);
        hosts_output_free(o);
        spec_free(s);
}

/* ---- tests/golden/helm-nested.yaml: containerRegistries beside localRegistryCache ---------- */

static void test_helm_nested(void **state) {
        (void) state;
        struct spec *s = load("tests/golden/helm-nested.yaml", NULL);
        struct error_list notes;

        /* Zot first for registry.example.com; oci.example.net's endpoint is its origin: the server, once. */
        struct hosts_output *o = golden(s, HOSTS_FORMAT_CONTAINERD, "helm-nested", &notes);
        ASSERT_NAMES(o, "registry.example.com/hosts.toml", "oci.example.net/hosts.toml");
        assert_note_count(&notes, 0);
        assert_non_null(strstr(o->files[0].content, "[host.\"https://zot.mgmt.example.com\"]"));
        assert_null(strstr(o->files[1].content, "[host.\"https://oci.example.net\"]"));
        hosts_output_free(o);
        spec_free(s);
}

/* ---- tests/golden/talos-tls.yaml: Talos's RegistryTLSConfig documents -------------------------- */

/* text with every "@GOLDEN@" replaced by value. */
static char *replace_all(const char *text, const char *value) {
        static const char key[] = "@GOLDEN@";
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        assert_non_null(f);
        for (const char *p = text, *q; *p; p = q + strlen(key)) {
                q = strstr(p, key);
                if (!q) {
                        fputs(p, f);
                        break;
                }
                fprintf(f, "%.*s%s", (int) (q - p), p, value);
        }
        assert_int_equal(fclose(f), 0);
        return out;
}

static void test_talos_tls(void **state) {
        (void) state;
        char *dir = realpath("tests/golden", NULL);
        assert_non_null(dir);
        char *raw = slurp("tests/golden/talos-tls.yaml");
        char *text = replace_all(raw, dir);
        struct spec *s = NULL;
        struct error_list errors, notes;
        int r = spec_parse("tests/golden/talos-tls.yaml", text, strlen(text), CACHE, &s, &errors);
        if (r != 0)
                error_list_print(&errors, stderr);
        assert_int_equal(r, 0);

        struct hosts_output *o = golden(s, HOSTS_FORMAT_TALOS, "talos-tls", &notes);
        ASSERT_NAMES(o, "talos-registries.yaml");
        /* The CA's contents, as a block: PEM lines unchanged. */
        assert_true(contains(o, 0, "\nkind: RegistryTLSConfig\nname: \"mirror.example.com\"\nca: |\n"
                                   "  -----BEGIN CERTIFICATE-----\n"));
        assert_true(contains(o, 0, "\nkind: RegistryTLSConfig\nname: \"skip.example.com:8443\"\n"
                                   "insecureSkipVerify: true\n"));
        assert_false(contains(o, 0, "bad.example.com\""));
        assert_false(contains(o, 0, "clientIdentity"));
        char *bad = NULL;
        assert_true(asprintf(&bad, "docker.io: ca_file %s/certs/not-a-cert.pem not rendered: no PEM certificate in it "
                                   "(Talos takes the certificate itself: render where the file is, or add ca to the "
                                   "RegistryTLSConfig for bad.example.com)", dir) > 0);
        assert_note_count(&notes, 4);
        assert_note(&notes, bad);
        assert_note(&notes, "docker.io: client certificate of https://[fd00::1]:8443 not rendered: Talos's clientIdentity "
                            "takes the private key itself, and layerd does not copy private keys into rendered files");
        assert_note(&notes, "ghcr.io: https://mirror.example.com/ghcr gets the TLS settings of https://mirror.example.com: "
                            "Talos has one RegistryTLSConfig per host");
        assert_note(&notes, "ghcr.io: https://skip.example.com:8443/ghcr: own TLS settings not rendered: Talos has one "
                            "RegistryTLSConfig per host, and those of https://skip.example.com:8443 apply");
        hosts_output_free(o);

        /* The older patch still takes none of it. */
        o = render(s, HOSTS_FORMAT_TALOS_LEGACY, &notes);
        assert_false(contains(o, 0, "BEGIN CERTIFICATE"));
        hosts_output_free(o);
        free(bad);
        spec_free(s);
        free(text);
        free(raw);
        free(dir);
}

/* ---- tests/golden/render/render.yaml: every field, every escape ------------------------------ */

#define RENDER_FILES                                                                                                  \
        "docker.io/hosts.toml", "quay.io/hosts.toml", "registry.example.com:5000/hosts.toml",                         \
                "registry.lab.example.com/hosts.toml", "[fd00::1]:5000/hosts.toml", "_default/hosts.toml",             \
                "null/hosts.toml"

/* The index of render.yaml's files in the containerd output. */
enum {
        R_DOCKER,
        R_QUAY,
        R_AIRGAP,
        R_LAB,
        R_IPV6,
        R_DEFAULT,
        R_NULL,
};

static struct hosts_output *render_containerd_version(const char *version) {
        char name[64];
        struct error_list notes;
        struct spec *s = load(RENDER_YAML, version);
        snprintf(name, sizeof(name), "render-%s", version);
        struct hosts_output *o = golden(s, HOSTS_FORMAT_CONTAINERD, name, &notes);
        ASSERT_NAMES(o, RENDER_FILES);
        assert_note_count(&notes, 1);
        assert_note(&notes, "docker.io: credentials_file of https://harbor.example.com/v2/proxy-docker.io is for layerd "
                            "only: containerd's hosts.toml has no place for credentials");
        spec_free(s);
        return o;
}

static void test_render_containerd_1_6(void **state) {
        (void) state;
        struct hosts_output *o = render_containerd_version("1.6");
        for (size_t i = 0; i < o->n_files; i++)
                assert_false(contains(o, i, "dial_timeout"));
        /* A server-only file lists the server as a host too: 1.6 drops it otherwise. */
        assert_true(contains(o, R_LAB, "\n[host.\"http://registry.lab.example.com:5000\"]\n"));
        assert_true(contains(o, R_NULL, "\n[host.\"https://zot.example.com\"]\n"));
        assert_false(contains(o, R_NULL, "[host.\"https://null\"]"));
        hosts_output_free(o);
}

static void test_render_containerd_1_7_32(void **state) {
        (void) state;
        struct hosts_output *o = render_containerd_version("1.7.32");
        for (size_t i = 0; i < o->n_files; i++)
                assert_false(contains(o, i, "dial_timeout"));
        assert_false(contains(o, R_LAB, "[host."));
        assert_true(contains(o, R_LAB, "\nserver = \"http://registry.lab.example.com:5000\"\n"));
        hosts_output_free(o);
}

static void test_render_containerd_2_0_7(void **state) {
        (void) state;
        struct hosts_output *o = render_containerd_version("2.0.7");
        assert_false(contains(o, R_LAB, "[host."));
        /* layerd on loopback fails fast; each endpoint has its timeouts.connect. */
        assert_true(contains(o, R_DOCKER, "[host.\"http://127.0.0.1:5080\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
                                          "  dial_timeout = \"1s\"\n"));
        assert_true(contains(o, R_DOCKER, "  dial_timeout = \"2s\"\n"));
        assert_true(contains(o, R_DOCKER, "  dial_timeout = \"1s500ms\"\n"));
        assert_true(contains(o, R_QUAY, "  dial_timeout = \"1m\"\n"));
        assert_true(contains(o, R_LAB, "\ndial_timeout = \"5s\"\n"));
        hosts_output_free(o);
}

/* Just below and at the version boundaries. */
static void test_render_containerd_boundaries(void **state) {
        (void) state;
        static const struct {
                const char *version;
                bool dial_timeout, server_as_host;
        } cases[] = {
                { "1.7", false, true },    { "1.7.31", false, true }, { "1.7.32", false, false },
                { "2.0", false, false },   { "2.0.6", false, false }, { "2.0.7", true, false },
                { "2.1", true, false },    { "1.6.99", false, true },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct spec *s = load(RENDER_YAML, cases[i].version);
                struct error_list notes;
                struct hosts_output *o = render(s, HOSTS_FORMAT_CONTAINERD, &notes);
                assert_int_equal(contains(o, R_DOCKER, "dial_timeout"), cases[i].dial_timeout);
                assert_int_equal(contains(o, R_LAB, "[host."), cases[i].server_as_host);
                char comment[64];
                snprintf(comment, sizeof(comment), ", for containerd %s. ", cases[i].version);
                assert_true(contains(o, R_DOCKER, comment));
                hosts_output_free(o);
                spec_free(s);
        }
}

static void test_render_other_formats(void **state) {
        (void) state;
        struct spec *s = load(RENDER_YAML, "1.6");
        struct error_list notes;

        struct hosts_output *o = golden(s, HOSTS_FORMAT_DOCKER, "render-1.6", &notes);
        ASSERT_NAMES(o, "daemon.json");
        assert_note_count(&notes, 9);
        assert_note(&notes, "quay.io: not rendered: Docker's registry-mirrors apply to docker.io only");
        assert_note(&notes, "docker.io: https://mirror.example.com: TLS settings and headers are not rendered (Docker "
                            "reads certificates from /etc/docker/certs.d)");
        assert_note(&notes, "docker.io: https://[fd00::1]:8443: TLS settings and headers are not rendered (Docker reads "
                            "certificates from /etc/docker/certs.d)");
        assert_note(&notes, "docker.io: https://harbor.example.com/v2/proxy-docker.io left out: Docker mirrors cannot "
                            "have a path");
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_TALOS, "render-1.6", &notes);
        ASSERT_NAMES(o, "talos-registries.yaml");
        assert_note_count(&notes, 14);
        /* overridePath is per endpoint now: Harbor's proxy projects are kept, so every registry renders. */
        assert_note(&notes, "docker.io: https://mirror.example.com: headers not rendered: Talos has no field for them");
        assert_note(&notes, "docker.io: https://[fd00::1]:8443: capabilities not rendered: Talos lets every endpoint "
                            "resolve tags and pull");
        assert_note(&notes, "docker.io: credentials of https://harbor.example.com/v2/proxy-docker.io are for layerd only: "
                            "Talos's RegistryAuthConfig would hold the secret itself in the machine config");
        /* Certificates are read where layerd hosts runs; these are not there. */
        assert_note(&notes, "quay.io: ca_file /etc/layerd/certs/quay-ca.pem not rendered: No such file or directory "
                            "(Talos takes the certificate itself: render where the file is, or add ca to the "
                            "RegistryTLSConfig for quay.io)");
        assert_note(&notes, "registry.example.com:5000: client certificate of https://b.example.com:8443 not rendered: "
                            "Talos's clientIdentity takes the private key itself, and layerd does not copy private keys "
                            "into rendered files");
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_TALOS_LEGACY, "render-1.6", &notes);
        ASSERT_NAMES(o, "talos-registries.yaml");
        assert_note_count(&notes, 6);
        /* Nothing Talos can use: left out, rather than an empty endpoint list. */
        assert_note(&notes, "[fd00::1]:5000: not rendered: no endpoint Talos can use");
        assert_note(&notes, "docker.io: https://mirror.example.com: TLS settings and headers are not rendered (Talos "
                            "takes certificate contents in machine.registries.config)");
        assert_note(&notes, "[fd00::1]:5000: https://[fd00::2]:8443/v2/proxy left out: Talos has one overridePath per "
                            "registry, and layerd needs it off");
        hosts_output_free(o);

        o = golden(s, HOSTS_FORMAT_REGISTRIES_CONF, "render-1.6", &notes);
        ASSERT_NAMES(o, "registries.conf");
        assert_note_count(&notes, 6);
        assert_note(&notes, "_default: not rendered: registries.conf has no catch-all mirror");
        assert_note(&notes, "quay.io: https://backup.example.com/quay left out: registries.conf cannot put a path "
                            "before /v2");
        assert_note(&notes, "registry.example.com:5000: https://b.example.com:8443: certificates and headers are not "
                            "rendered (containers-certs.d(5) holds certificates)");
        hosts_output_free(o);
        spec_free(s);
}

/* containerd_version: auto. Unresolved, the 1.6 rules with the comment line
 * saying so; resolved, byte for byte what the same version spelled out gives. */
static void test_render_containerd_auto(void **state) {
        (void) state;
        struct spec *v16 = load(RENDER_YAML, "1.6"), *v207 = load(RENDER_YAML, "2.0.7");
        struct spec *a = load(RENDER_YAML, "auto");
        assert_true(a->hosts.containerd_version_auto);
        assert_int_equal(a->hosts.containerd_version_code, 0);
        struct error_list n1, n2;

        struct hosts_output *want = render(v16, HOSTS_FORMAT_CONTAINERD, &n1);
        struct hosts_output *got = render(a, HOSTS_FORMAT_CONTAINERD, &n2);
        assert_int_equal(got->n_files, want->n_files);
        for (size_t i = 0; i < got->n_files; i++) {
                /* The same file once the note is taken out of its comment line. */
                const char *note = strstr(got->files[i].content, "for containerd 1.6 (auto: not detected). ");
                assert_non_null(note);
                assert_ptr_equal(note, strstr(got->files[i].content, "for containerd 1.6"));
                size_t at = (size_t) (note - got->files[i].content) + strlen("for containerd 1.6");
                size_t cut = strlen(" (auto: not detected)");
                assert_int_equal(got->files[i].size, want->files[i].size + cut);
                assert_memory_equal(got->files[i].content, want->files[i].content, at);
                assert_string_equal(got->files[i].content + at + cut, want->files[i].content + at);
        }
        hosts_output_free(want);
        hosts_output_free(got);

        /* Resolved (as the agent does it), then identical to the explicit version. */
        assert_int_equal(spec_set_containerd_version(a, "2.0.7"), 0);
        assert_true(a->hosts.containerd_version_auto);
        assert_string_equal(a->hosts.containerd_version, "2.0.7");
        assert_int_equal(a->hosts.containerd_version_code, 20007);
        want = render(v207, HOSTS_FORMAT_CONTAINERD, &n1);
        got = render(a, HOSTS_FORMAT_CONTAINERD, &n2);
        assert_same_output(got, want);
        assert_true(contains(got, R_DOCKER, "for containerd 2.0.7. "));
        hosts_output_free(want);
        hosts_output_free(got);

        /* A second resolution replaces the first (a reload after an upgrade goes through a fresh spec anyway). */
        assert_int_equal(spec_set_containerd_version(a, "1.6"), 0);
        assert_int_equal(a->hosts.containerd_version_code, 10600);
        want = render(v16, HOSTS_FORMAT_CONTAINERD, &n1);
        got = render(a, HOSTS_FORMAT_CONTAINERD, &n2);
        assert_same_output(got, want);
        hosts_output_free(want);
        hosts_output_free(got);

        /* An explicit version is the spec's word; not a version is refused. */
        assert_int_equal(spec_set_containerd_version(v16, "2.0.7"), -EEXIST);
        assert_string_equal(v16->hosts.containerd_version, "1.6");
        assert_int_equal(spec_set_containerd_version(a, "1.6.20~ds1"), -EINVAL);
        assert_int_equal(spec_set_containerd_version(a, "auto"), -EINVAL);
        assert_int_equal(a->hosts.containerd_version_code, 10600);
        spec_free(a);
        spec_free(v16);
        spec_free(v207);
}

/* Only containerd's files depend on hosts.containerd_version. */
static void test_render_other_formats_ignore_version(void **state) {
        (void) state;
        struct spec *base = load(RENDER_YAML, "1.6");
        static const char *const versions[] = { "1.7.32", "2.0.7" };
        for (size_t v = 0; v < 2; v++) {
                struct spec *s = load(RENDER_YAML, versions[v]);
                for (enum hosts_format f = HOSTS_FORMAT_DOCKER; f < _HOSTS_FORMAT_MAX; f++) {
                        struct error_list n1, n2;
                        struct hosts_output *a = render(base, f, &n1), *b = render(s, f, &n2);
                        assert_same_output(a, b);
                        assert_int_equal(error_list_count(&n1), error_list_count(&n2));
                        hosts_output_free(a);
                        hosts_output_free(b);
                }
                spec_free(s);
        }
        spec_free(base);
}

/* ---- behaviour the golden files show, asserted where it matters --------------------------------- */

/* layerd listed as an endpoint of a registry it mirrors is already the first
 * host: a second [host] table of the same URL would be invalid TOML, which
 * containerd ignores whole (the mirror silently off). */
static void test_agent_listed_as_endpoint(void **state) {
        (void) state;
        static const char yaml[] = "registries:\n"
                                   "  docker.io:\n"
                                   "    endpoints: [http://127.0.0.1:5080, https://zot.example.com]\n"
                                   "  quay.io:\n"
                                   "    mirror: false\n"
                                   "    endpoints: [http://127.0.0.1:5080]\n";
        struct spec *s = NULL;
        struct error_list errors, notes;
        assert_int_equal(spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors), 0);
        struct hosts_output *o = render(s, HOSTS_FORMAT_CONTAINERD, &notes);
        const char *t = o->files[0].content;
        const char *first = strstr(t, "[host.\"http://127.0.0.1:5080\"]");
        assert_non_null(first);
        assert_null(strstr(first + 1, "[host.\"http://127.0.0.1:5080\"]"));
        assert_non_null(strstr(first, "[host.\"https://zot.example.com\"]"));
        /* Not mirrored: layerd is not added, so the listed endpoint is the one host. */
        assert_non_null(strstr(o->files[1].content, "\n[host.\"http://127.0.0.1:5080\"]\n"));
        assert_note_count(&notes, 1);
        assert_note(&notes, "docker.io: http://127.0.0.1:5080 left out: it is layerd itself, already the first host");
        hosts_output_free(o);
        o = render(s, HOSTS_FORMAT_TALOS, &notes);
        assert_true(contains(o, 0, "name: \"docker.io\"\nendpoints:\n- url: http://127.0.0.1:5080\n"
                                   "- url: https://zot.example.com\n---\n"));
        assert_true(contains(o, 0, "name: \"quay.io\"\nendpoints:\n- url: http://127.0.0.1:5080\n"));
        assert_note_count(&notes, 1);
        assert_note(&notes, "docker.io: http://127.0.0.1:5080 left out: it is layerd itself, already the first endpoint");
        hosts_output_free(o);
        spec_free(s);
}

static void test_most_endpoints(void **state) {
        (void) state;
        /* 16 listed endpoints, a custom origin appended after them, and layerd:
         * 18 URLs for one registry, all of them listed. */
        char yaml[2048];
        size_t len = (size_t) snprintf(yaml, sizeof(yaml), "registries:\n  docker.io:\n    origin: http://hub.example.com\n"
                                                           "    endpoints:\n");
        for (int i = 0; i < SPEC_ENDPOINTS_MAX; i++)
                len += (size_t) snprintf(yaml + len, sizeof(yaml) - len, "      - http://m%d.example.com\n", i);
        assert_true(len < sizeof(yaml));
        struct spec *s = NULL;
        struct error_list errors, notes;
        assert_int_equal(spec_parse("spec.yaml", yaml, len, CACHE, &s, &errors), 0);
        assert_int_equal(s->registries[0].n_endpoints, SPEC_ENDPOINTS_MAX + 1);

        struct hosts_output *o = render(s, HOSTS_FORMAT_DOCKER, &notes);
        assert_non_null(strstr(o->files[0].content, "\"http://m15.example.com\", \"http://hub.example.com\"]"));
        assert_non_null(strstr(o->files[0].content, "\"m15.example.com\", \"hub.example.com\"]"));
        hosts_output_free(o);
        o = render(s, HOSTS_FORMAT_TALOS, &notes);
        assert_non_null(strstr(o->files[0].content, "- url: http://m15.example.com\n- url: http://hub.example.com\n"
                                                    "skipFallback: true\n"));
        hosts_output_free(o);
        o = render(s, HOSTS_FORMAT_TALOS_LEGACY, &notes);
        assert_non_null(strstr(o->files[0].content, "- http://m15.example.com\n        - http://hub.example.com\n"));
        hosts_output_free(o);
        spec_free(s);
}

static void test_origin_capabilities(void **state) {
        (void) state;
        /* An origin narrowed to pull must not get containerd's default (pull, resolve, push). */
        static const char yaml[] = "registries:\n  docker.io:\n    endpoints:\n      - https://zot.example.com\n"
                                   "      - {url: https://registry-1.docker.io, capabilities: [pull]}\n"
                                   "  quay.io: {}\n";
        struct spec *s = NULL;
        struct error_list errors, notes;
        assert_int_equal(spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors), 0);
        struct hosts_output *o = render(s, HOSTS_FORMAT_CONTAINERD, &notes);
        assert_non_null(strstr(o->files[0].content, "\nserver = \"https://registry-1.docker.io\"\ncapabilities = [\"pull\"]\n"));
        /* The default origin keeps containerd's defaults, push included. */
        assert_non_null(strstr(o->files[1].content, "\nserver = \"https://quay.io\"\n\n"));
        hosts_output_free(o);
        spec_free(s);
}

static void test_default_registry_not_docker(void **state) {
        (void) state;
        static const char yaml[] = "agent: {default_registry: quay.io}\n"
                                   "registries:\n"
                                   "  docker.io:\n"
                                   "    endpoints: [https://zot.example.com]\n"
                                   "  quay.io:\n";
        struct spec *s = NULL;
        struct error_list errors, notes;
        assert_int_equal(spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors), 0);

        struct hosts_output *o = render(s, HOSTS_FORMAT_DOCKER, &notes);
        assert_string_equal(o->files[0].content, "{\n  \"registry-mirrors\": [\"https://zot.example.com\"]\n}\n");
        assert_note_count(&notes, 2);
        assert_note(&notes, "docker.io: layerd left out: Docker sends no ns= and layerd's default_registry is not "
                            "docker.io");
        hosts_output_free(o);

        o = render(s, HOSTS_FORMAT_REGISTRIES_CONF, &notes);
        /* Every registry by its namespace, whichever is the default. */
        assert_true(contains(o, 0, "prefix = \"quay.io\"\nlocation = \"quay.io\"\n\n[[registry.mirror]]\n"
                                   "location = \"127.0.0.1:5080/quay.io\"\ninsecure = true\n"));
        assert_true(contains(o, 0, "prefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\n"
                                   "location = \"127.0.0.1:5080/docker.io\"\ninsecure = true\n\n[[registry.mirror]]\n"
                                   "location = \"zot.example.com\"\n"));
        assert_note_count(&notes, 0);
        hosts_output_free(o);
        spec_free(s);
}

/* A custom origin is where the registry is: a runtime that falls back to the
 * registry's name by itself would miss it, so it is listed (Docker, Talos,
 * which then skips its own fallback) or made the location (registries.conf). */
static void test_custom_origin(void **state) {
        (void) state;
        static const char yaml[] = "registries:\n"
                                   "  docker.io:\n"
                                   "    origin: https://mirror.gcr.io\n"
                                   "    endpoints: [https://zot.example.com]\n"
                                   "  quay.io:\n"
                                   "    origin: https://quay-proxy.example.com/quay\n"
                                   "  registry.k8s.io:\n"
                                   "    origin: https://REGISTRY.k8s.io:443/\n"
                                   "  ghcr.io:\n"
                                   "    endpoints:\n"
                                   "      - {url: https://harbor.example.com/v2x, override_path: true}\n"
                                   "      - {url: https://harbor.example.com/v2, override_path: true}\n";
        struct spec *s = NULL;
        struct error_list errors, notes;
        assert_int_equal(spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors), 0);

        struct hosts_output *o = render(s, HOSTS_FORMAT_CONTAINERD, &notes);
        assert_true(contains(o, 0, "\nserver = \"https://mirror.gcr.io\"\n"));
        assert_true(contains(o, 1, "\nserver = \"https://quay-proxy.example.com/quay\"\n"));
        hosts_output_free(o);

        o = render(s, HOSTS_FORMAT_DOCKER, &notes);
        assert_string_equal(o->files[0].content, "{\n  \"registry-mirrors\": [\"http://127.0.0.1:5080\", "
                                                 "\"https://zot.example.com\", \"https://mirror.gcr.io\"]\n}\n");
        assert_note_count(&notes, 4);
        assert_note(&notes, "docker.io: the origin https://mirror.gcr.io is listed as a mirror, and Docker falls back "
                            "to Docker Hub after it");
        hosts_output_free(o);

        o = render(s, HOSTS_FORMAT_TALOS, &notes);
        assert_true(contains(o, 0, "\nname: \"docker.io\"\nendpoints:\n- url: http://127.0.0.1:5080\n"
                                   "- url: https://zot.example.com\n- url: https://mirror.gcr.io\nskipFallback: true\n"));
        assert_true(contains(o, 0, "\nname: \"quay.io\"\nendpoints:\n- url: http://127.0.0.1:5080\n"
                                   "- url: https://quay-proxy.example.com/quay\nskipFallback: true\n"));
        assert_true(contains(o, 0, "\nname: \"registry.k8s.io\"\nendpoints:\n- url: http://127.0.0.1:5080\n---\n"));
        /* Both of Harbor's paths kept, each with its overridePath. */
        assert_true(contains(o, 0, "\nname: \"ghcr.io\"\nendpoints:\n- url: http://127.0.0.1:5080\n"
                                   "- url: https://harbor.example.com/v2x\n  overridePath: true\n"
                                   "- url: https://harbor.example.com/v2\n  overridePath: true\n"));
        assert_note_count(&notes, 0);
        hosts_output_free(o);

        o = render(s, HOSTS_FORMAT_TALOS_LEGACY, &notes);
        assert_true(contains(o, 0, "\n      \"docker.io\":\n        endpoints:\n        - http://127.0.0.1:5080\n"
                                   "        - https://zot.example.com\n        - https://mirror.gcr.io\n"
                                   "        skipFallback: true\n"));
        assert_true(contains(o, 0, "\n      \"quay.io\":\n        endpoints:\n        - http://127.0.0.1:5080\n"
                                   "        - https://quay-proxy.example.com/quay\n        skipFallback: true\n"));
        /* An origin written out that equals the implied one changes nothing. */
        assert_true(contains(o, 0, "\n      \"registry.k8s.io\":\n        endpoints:\n        - http://127.0.0.1:5080\n"
                                   "      \"ghcr.io\":\n"));
        assert_note_count(&notes, 2);
        hosts_output_free(o);

        o = render(s, HOSTS_FORMAT_REGISTRIES_CONF, &notes);
        assert_true(contains(o, 0, "prefix = \"docker.io\"\nlocation = \"mirror.gcr.io\"\n\n"));
        assert_true(contains(o, 0, "prefix = \"quay.io\"\nlocation = \"quay.io\"\n\n"));
        assert_true(contains(o, 0, "prefix = \"registry.k8s.io\"\nlocation = \"registry.k8s.io\"\n\n"));
        /* /v2x is not the /v2 root: the namespace cannot be cut off there. */
        assert_true(contains(o, 0, "prefix = \"ghcr.io\"\nlocation = \"ghcr.io\"\n\n[[registry.mirror]]\n"
                                   "location = \"127.0.0.1:5080/ghcr.io\"\ninsecure = true\n\n[[registry.mirror]]\n"
                                   "location = \"harbor.example.com\"\n"));
        assert_false(contains(o, 0, "harbor.example.comx"));
        assert_note_count(&notes, 2);
        assert_note(&notes, "quay.io: origin https://quay-proxy.example.com/quay left out: registries.conf cannot put a "
                            "path before /v2");
        assert_note(&notes, "ghcr.io: https://harbor.example.com/v2x left out: registries.conf cannot put a path "
                            "before /v2");
        hosts_output_free(o);
        spec_free(s);
}

/* registries.conf: layerd first for every registry it mirrors, at the
 * registry's namespaced path (a port and an IPv6 address written as a path
 * component allows), never for one it does not mirror, and not for a name
 * clients read as a Docker Hub namespace. */
static void test_registries_conf_namespaces(void **state) {
        (void) state;
        static const char yaml[] = "agent: {listen: \"[::1]:5080\"}\n"
                                   "registries:\n"
                                   "  \"[fd00::1]:5000\":\n"
                                   "  localhost:5000:\n"
                                   "  registry:\n"
                                   "  quay.io: {mirror: false}\n";
        struct spec *s = NULL;
        struct error_list errors, notes;
        assert_int_equal(spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors), 0);
        struct hosts_output *o = NULL;
        assert_int_equal(hosts_render(s, HOSTS_FORMAT_REGISTRIES_CONF, "http://[::1]:5080", &o, &notes), 0);
        assert_true(contains(o, 0, "prefix = \"[fd00::1]:5000\"\nlocation = \"[fd00::1]:5000\"\n\n[[registry.mirror]]\n"
                                   "location = \"[::1]:5080/fd00_0_0_0_0_0_0_1_5000\"\ninsecure = true\n"));
        assert_true(contains(o, 0, "prefix = \"localhost:5000\"\nlocation = \"localhost:5000\"\n\n[[registry.mirror]]\n"
                                   "location = \"[::1]:5080/localhost_5000\"\ninsecure = true\n"));
        assert_true(contains(o, 0, "prefix = \"registry\"\nlocation = \"registry\"\n\n[[registry]]\n"));
        assert_true(contains(o, 0, "prefix = \"quay.io\"\nlocation = \"quay.io\"\n"));
        assert_false(contains(o, 0, "/quay.io\""));
        assert_note_count(&notes, 1);
        assert_note(&notes, "registry: layerd left out: no namespaced path for a name without a dot or port (clients "
                            "read \"registry/...\" as Docker Hub's)");
        hosts_output_free(o);
        spec_free(s);
}

static void test_no_docker_io(void **state) {
        (void) state;
        static const char yaml[] = "registries: {quay.io: }\n";
        struct spec *s = NULL;
        struct error_list errors, notes;
        assert_int_equal(spec_parse("spec.yaml", yaml, strlen(yaml), CACHE, &s, &errors), 0);
        struct hosts_output *o = render(s, HOSTS_FORMAT_DOCKER, &notes);
        assert_string_equal(o->files[0].content, "{\n  \"registry-mirrors\": []\n}\n");
        assert_note_count(&notes, 2);
        assert_note(&notes, "docker.io is not in the spec: no mirrors to render");
        hosts_output_free(o);
        spec_free(s);
}

/* ---- the small public helpers ------------------------------------------------------------------ */

static void test_formats(void **state) {
        (void) state;
        static const char *const names[] = { "containerd", "docker", "talos", "registries-conf", "talos-legacy" };
        for (int i = 0; i < _HOSTS_FORMAT_MAX; i++) {
                assert_int_equal(hosts_format_from_string(names[i]), i);
                assert_string_equal(hosts_format_to_string((enum hosts_format) i), names[i]);
        }
        assert_int_equal(hosts_format_from_string("Containerd"), -EINVAL);
        assert_int_equal(hosts_format_from_string(""), -EINVAL);
        assert_null(hosts_format_to_string(_HOSTS_FORMAT_MAX));

        struct spec *s = NULL;
        struct error_list errors, notes;
        struct hosts_output *o = (struct hosts_output *) 0x1;
        assert_int_equal(spec_load_default(CACHE, &s, &errors), 0);
        assert_int_equal(hosts_render(s, _HOSTS_FORMAT_MAX, AGENT, &o, &notes), -EINVAL);
        assert_ptr_equal(o, (struct hosts_output *) 0x1);
        spec_free(s);
        assert_null(hosts_output_free(NULL));
}

static void test_agent_url(void **state) {
        (void) state;
        static const struct {
                const char *host;
                unsigned port;
                const char *url;
        } cases[] = {
                { "127.0.0.1", 5080, "http://127.0.0.1:5080" }, { "0.0.0.0", 6000, "http://127.0.0.1:6000" },
                { "::", 5080, "http://[::1]:5080" },            { "::1", 1, "http://[::1]:1" },
                { "localhost", 65535, "http://localhost:65535" }, { "10.1.2.3", 80, "http://10.1.2.3:80" },
                { "fd00::5", 5080, "http://[fd00::5]:5080" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *u = hosts_agent_url(cases[i].host, cases[i].port);
                assert_non_null(u);
                assert_string_equal(u, cases[i].url);
                free(u);
        }
}

/* A file past HOSTS_FILE_MAX is refused whole, while it is being rendered:
 * 32 headers of 16 aliased 4000-byte values make 2 MiB of hosts.toml from a
 * few kilobytes of YAML. */
static void test_file_too_big(void **state) {
        (void) state;
        char value[4001];
        memset(value, 'v', sizeof(value) - 1);
        value[sizeof(value) - 1] = '\0';
        char *yaml = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&yaml, &len);
        assert_non_null(f);
        fprintf(f, "version: 1\nregistries:\n  docker.io:\n    endpoints:\n"
                   "      - url: https://mirror.example.com\n        headers:\n");
        for (int h = 0; h < SPEC_HEADERS_MAX; h++) {
                fprintf(f, "          X-H%d: [", h);
                for (int i = 0; i < SPEC_HEADER_VALUES_MAX; i++)
                        fprintf(f, "%s%s%s", i ? ", " : "", h || i ? "*v" : "&v ", h || i ? "" : value);
                fprintf(f, "]\n");
        }
        assert_int_equal(fclose(f), 0);
        struct spec *s = NULL;
        struct error_list errors, notes;
        int r = spec_parse("big.yaml", yaml, len, CACHE, &s, &errors);
        free(yaml);
        if (r != 0)
                error_list_print(&errors, stderr);
        assert_int_equal(r, 0);
        struct hosts_output *o = (struct hosts_output *) 0x1;
        assert_int_equal(hosts_render(s, HOSTS_FORMAT_CONTAINERD, AGENT, &o, &notes), -EFBIG);
        assert_ptr_equal(o, (struct hosts_output *) 0x1);
        spec_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_example_spec),
                cmocka_unit_test(test_example_helm),
                cmocka_unit_test(test_helm_nested),
                cmocka_unit_test(test_talos_tls),
                cmocka_unit_test(test_render_containerd_1_6),
                cmocka_unit_test(test_render_containerd_1_7_32),
                cmocka_unit_test(test_render_containerd_2_0_7),
                cmocka_unit_test(test_render_containerd_boundaries),
                cmocka_unit_test(test_render_other_formats),
                cmocka_unit_test(test_render_containerd_auto),
                cmocka_unit_test(test_render_other_formats_ignore_version),
                cmocka_unit_test(test_agent_listed_as_endpoint),
                cmocka_unit_test(test_most_endpoints),
                cmocka_unit_test(test_origin_capabilities),
                cmocka_unit_test(test_default_registry_not_docker),
                cmocka_unit_test(test_custom_origin),
                cmocka_unit_test(test_registries_conf_namespaces),
                cmocka_unit_test(test_no_docker_io),
                cmocka_unit_test(test_formats),
                cmocka_unit_test(test_agent_url),
                cmocka_unit_test(test_file_too_big),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
