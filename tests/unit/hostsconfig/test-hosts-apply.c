/* SPDX-License-Identifier: Apache-2.0 */
/* hosts_apply(): what it writes, what it leaves alone (same inode, same
 * mtime), what --dry-run and --prune do, and that every problem it can see
 * beforehand is reported with nothing changed. Each test works in a fresh
 * mkdtemp directory under /tmp, removed at the end. The tests run as root, so
 * nothing here relies on permissions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostsconfig/hosts.h"

#define MANAGED(text) HOSTS_MANAGED_MARKER ": test\n" text
#define OLD_TIME 1000000000 /* 2001-09-09: an mtime no write of today can produce */

static char sentinel_storage;
#define REPORT_SENTINEL ((struct hosts_report *) &sentinel_storage)

/* ---- fixture and file helpers ------------------------------------------------------- */

struct fixture {
        char *dir; /* the mkdtemp directory */
        char *out; /* dir/certs.d: the output directory, absent at the start */
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        f->dir = strdup("/tmp/layerd-test-hosts-apply-XXXXXX");
        if (!f->dir || !mkdtemp(f->dir) || asprintf(&f->out, "%s/certs.d", f->dir) < 0) {
                free(f->dir);
                free(f);
                return -1;
        }
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        int r = unit_rm_rf(f->dir) < 0 ? -1 : 0;
        free(f->out);
        free(f->dir);
        free(f);
        return r;
}

/* out/name; caller frees. */
static char *at(const struct fixture *f, const char *name) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", f->out, name) > 0);
        return p;
}

static void make_dir(const struct fixture *f, const char *name) {
        char *p = at(f, name);
        assert_int_equal(mkdir(p, 0755), 0);
        free(p);
}

static void put(const struct fixture *f, const char *name, const char *text) {
        char *p = at(f, name);
        FILE *fp = fopen(p, "we");
        assert_non_null(fp);
        assert_int_equal(fputs(text, fp) >= 0, 1);
        assert_int_equal(fclose(fp), 0);
        free(p);
}

/* A file's text (NULL when absent), read without the code under test; caller frees. */
static char *get(const struct fixture *f, const char *name) {
        char *p = at(f, name);
        FILE *fp = fopen(p, "re");
        free(p);
        if (!fp)
                return NULL;
        char *out = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&out, &size);
        assert_non_null(m);
        int c;
        while ((c = fgetc(fp)) != EOF)
                fputc(c, m);
        fclose(fp);
        assert_int_equal(fclose(m), 0);
        return out;
}

static void assert_file(const struct fixture *f, const char *name, const char *text) {
        char *got = get(f, name);
        if (!got)
                fail_msg("%s is missing", name);
        assert_string_equal(got, text);
        free(got);
}

static bool exists(const struct fixture *f, const char *name) {
        char *p = at(f, name);
        struct stat st;
        bool r = lstat(p, &st) == 0;
        free(p);
        return r;
}

static struct stat stat_of(const struct fixture *f, const char *name) {
        char *p = at(f, name);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        free(p);
        return st;
}

/* Puts a file's mtime far in the past, so that any rewrite would show. */
static void age(const struct fixture *f, const char *name) {
        char *p = at(f, name);
        const struct timespec ts[2] = { { OLD_TIME, 0 }, { OLD_TIME, 0 } };
        assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
        free(p);
}

static void assert_same_file(const struct stat *a, const struct stat *b) {
        assert_int_equal(a->st_dev, b->st_dev);
        assert_int_equal(a->st_ino, b->st_ino);
        assert_int_equal(a->st_size, b->st_size);
        assert_int_equal(a->st_mtim.tv_sec, b->st_mtim.tv_sec);
        assert_int_equal(a->st_mtim.tv_nsec, b->st_mtim.tv_nsec);
}

/* Every path under the fixture directory with its inode, mtime, size and
 * content, sorted: equal snapshots mean nothing was created, removed or written. */
static char *snap_lines[256];
static size_t n_snap_lines;

static int snap_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) ftw;
        char *line = NULL;
        int r = asprintf(&line, "%s %c ino=%ju mtime=%jd.%09ld size=%jd mode=%o", path, flag == FTW_F ? 'f' : 'd',
                         (uintmax_t) st->st_ino, (intmax_t) st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
                         (intmax_t) st->st_size, (unsigned) st->st_mode);
        if (r < 0 || n_snap_lines >= sizeof(snap_lines) / sizeof(snap_lines[0]))
                return -1;
        snap_lines[n_snap_lines++] = line;
        return 0;
}

static int cmp_str(const void *x, const void *y) {
        return strcmp(*(char *const *) x, *(char *const *) y);
}

static char *snapshot(const struct fixture *f) {
        n_snap_lines = 0;
        assert_int_equal(nftw(f->dir, snap_one, 16, FTW_PHYS), 0);
        qsort(snap_lines, n_snap_lines, sizeof(snap_lines[0]), cmp_str);
        char *out = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&out, &size);
        assert_non_null(m);
        for (size_t i = 0; i < n_snap_lines; i++) {
                fprintf(m, "%s\n", snap_lines[i]);
                free(snap_lines[i]);
        }
        assert_int_equal(fclose(m), 0);
        return out;
}

/* No temporary file of an atomic write is left anywhere. */
static bool has_temp_files(const struct fixture *f) {
        char *s = snapshot(f);
        bool r = strstr(s, ".layerd-") != NULL;
        free(s);
        return r;
}

/* ---- outputs ----------------------------------------------------------------------- */

/* An output of n files given as name, content pairs. */
static struct hosts_output *output(enum hosts_format format, size_t n, const char *const *pairs) {
        struct hosts_output *o = calloc(1, sizeof(*o));
        assert_non_null(o);
        o->format = format;
        o->files = calloc(n, sizeof(*o->files));
        assert_non_null(o->files);
        o->n_files = n;
        for (size_t i = 0; i < n; i++) {
                o->files[i].name = strdup(pairs[2 * i]);
                o->files[i].content = strdup(pairs[2 * i + 1]);
                assert_non_null(o->files[i].name);
                assert_non_null(o->files[i].content);
                o->files[i].size = strlen(pairs[2 * i + 1]);
        }
        return o;
}

#define OUTPUT(format, ...)                                                                                     \
        output(format, sizeof((const char *[]) { __VA_ARGS__ }) / sizeof(const char *) / 2,                 \
               (const char *const[]) { __VA_ARGS__ })

#define DOCKER_V1 MANAGED("server = \"https://registry-1.docker.io\"\n")
#define DOCKER_V2 MANAGED("server = \"https://registry-1.docker.io\"\n\n[host.\"http://127.0.0.1:5080\"]\n")
#define QUAY_V1 MANAGED("server = \"https://quay.io\"\n")
#define LOCAL_V1 MANAGED("server = \"https://registry.example.com:5000\"\n")

static struct hosts_output *three(const char *docker) {
        return OUTPUT(HOSTS_FORMAT_CONTAINERD, "docker.io/hosts.toml", docker, "quay.io/hosts.toml", QUAY_V1,
                      "registry.example.com:5000/hosts.toml", LOCAL_V1);
}

static struct hosts_report *apply_ok(const struct hosts_output *o, const char *dir, unsigned flags) {
        struct hosts_report *rep = REPORT_SENTINEL;
        struct error_list errors;
        int r = hosts_apply(o, dir, flags, &rep, &errors);
        if (r != 0) {
                error_list_print(&errors, stderr);
                fail_msg("hosts_apply: %s", strerror(-r));
        }
        assert_non_null(rep);
        assert_ptr_not_equal(rep, REPORT_SENTINEL);
        assert_int_equal(error_list_count(&errors), 0);
        return rep;
}

/* Applying o fails with want, leaves the tree as it was and reports first as the first error. */
static void apply_fails(const struct fixture *f, const struct hosts_output *o, const char *dir, unsigned flags,
                        int want, size_t n_errors, const char *first) {
        struct hosts_report *rep = REPORT_SENTINEL;
        struct error_list errors;
        char *before = snapshot(f);
        int r = hosts_apply(o, dir, flags, &rep, &errors);
        char *after = snapshot(f);
        if (r != want) {
                error_list_print(&errors, stderr);
                fail_msg("hosts_apply returned %d, expected %d", r, want);
        }
        assert_ptr_equal(rep, REPORT_SENTINEL);
        assert_string_equal(after, before);
        char buf[ERROR_MESSAGE_MAX + ERROR_SOURCE_MAX];
        assert_true(errors.n > 0);
        error_list_format(&errors, 0, buf, sizeof(buf));
        if (strcmp(buf, first) != 0 || error_list_count(&errors) != n_errors) {
                error_list_print(&errors, stderr);
                fail_msg("expected %zu error(s), first \"%s\"", n_errors, first);
        }
        free(before);
        free(after);
}

static const struct hosts_change *change(const struct hosts_report *rep, const char *name) {
        for (size_t i = 0; i < rep->n_changes; i++)
                if (strcmp(rep->changes[i].name, name) == 0)
                        return &rep->changes[i];
        fail_msg("no change for %s", name);
        return NULL;
}

static void assert_counts(const struct hosts_report *rep, size_t written, size_t unchanged, size_t pruned) {
        assert_int_equal(rep->count[HOSTS_WRITTEN], written);
        assert_int_equal(rep->count[HOSTS_UNCHANGED], unchanged);
        assert_int_equal(rep->count[HOSTS_PRUNED], pruned);
        assert_int_equal(rep->n_changes, written + unchanged + pruned);
}

/* ---- writing ------------------------------------------------------------------------ */

static void test_first_apply_writes_all(void **state) {
        struct fixture *f = *state;
        struct hosts_output *o = three(DOCKER_V1);
        struct hosts_report *rep = apply_ok(o, f->out, 0);

        assert_counts(rep, 3, 0, 0);
        for (size_t i = 0; i < o->n_files; i++) {
                /* In output order, each new: nothing was there before. */
                const struct hosts_change *c = &rep->changes[i];
                assert_string_equal(c->name, o->files[i].name);
                assert_int_equal(c->kind, HOSTS_WRITTEN);
                assert_null(c->old_content);
                assert_int_equal(c->old_size, 0);
                assert_false(c->was_unmanaged);
                assert_file(f, o->files[i].name, o->files[i].content);
                struct stat st = stat_of(f, o->files[i].name);
                assert_int_equal(st.st_mode & 07777, 0644);
                assert_true(S_ISREG(st.st_mode));
        }
        assert_false(has_temp_files(f));
        hosts_report_free(rep);
        hosts_output_free(o);
}

static void test_missing_parents_are_created(void **state) {
        struct fixture *f = *state;
        char *deep = NULL;
        assert_true(asprintf(&deep, "%s/a/b/c", f->out) > 0);
        struct hosts_output *o = three(DOCKER_V1);
        struct hosts_report *rep = apply_ok(o, deep, 0);
        assert_counts(rep, 3, 0, 0);
        assert_file(f, "a/b/c/quay.io/hosts.toml", QUAY_V1);
        hosts_report_free(rep);
        hosts_output_free(o);
        free(deep);
}

static void test_second_apply_writes_nothing(void **state) {
        struct fixture *f = *state;
        struct hosts_output *o = three(DOCKER_V1);
        hosts_report_free(apply_ok(o, f->out, 0));
        struct stat before[3];
        for (size_t i = 0; i < 3; i++) {
                age(f, o->files[i].name);
                before[i] = stat_of(f, o->files[i].name);
        }
        char *snap = snapshot(f);

        struct hosts_report *rep = apply_ok(o, f->out, 0);
        assert_counts(rep, 0, 3, 0);
        for (size_t i = 0; i < 3; i++) {
                const struct hosts_change *c = &rep->changes[i];
                assert_int_equal(c->kind, HOSTS_UNCHANGED);
                assert_int_equal(c->old_size, o->files[i].size);
                assert_string_equal(c->old_content, o->files[i].content);
                assert_false(c->was_unmanaged);
                struct stat now = stat_of(f, o->files[i].name);
                assert_same_file(&before[i], &now);
        }
        char *snap2 = snapshot(f);
        assert_string_equal(snap2, snap);
        free(snap);
        free(snap2);
        hosts_report_free(rep);
        hosts_output_free(o);
}

static void test_changed_file_only_is_rewritten(void **state) {
        struct fixture *f = *state;
        struct hosts_output *o1 = three(DOCKER_V1), *o2 = three(DOCKER_V2);
        hosts_report_free(apply_ok(o1, f->out, 0));
        struct stat before[3];
        for (size_t i = 0; i < 3; i++) {
                age(f, o1->files[i].name);
                before[i] = stat_of(f, o1->files[i].name);
        }

        struct hosts_report *rep = apply_ok(o2, f->out, 0);
        assert_counts(rep, 1, 2, 0);
        const struct hosts_change *c = change(rep, "docker.io/hosts.toml");
        assert_int_equal(c->kind, HOSTS_WRITTEN);
        assert_string_equal(c->old_content, DOCKER_V1);
        assert_int_equal(c->old_size, strlen(DOCKER_V1));
        assert_false(c->was_unmanaged);
        assert_file(f, "docker.io/hosts.toml", DOCKER_V2);
        /* Replaced by rename: a new inode with a new mtime. */
        struct stat now = stat_of(f, "docker.io/hosts.toml");
        assert_int_not_equal(now.st_ino, before[0].st_ino);
        assert_int_not_equal(now.st_mtim.tv_sec, OLD_TIME);
        for (size_t i = 1; i < 3; i++) {
                assert_int_equal(rep->changes[i].kind, HOSTS_UNCHANGED);
                now = stat_of(f, o1->files[i].name);
                assert_same_file(&before[i], &now);
        }
        assert_false(has_temp_files(f));
        hosts_report_free(rep);
        hosts_output_free(o1);
        hosts_output_free(o2);
}

static void test_flat_file(void **state) {
        struct fixture *f = *state;
        static const char json[] = "{\n  \"registry-mirrors\": [\"http://127.0.0.1:5080\"]\n}\n";
        struct hosts_output *o = OUTPUT(HOSTS_FORMAT_DOCKER, "daemon.json", json);
        struct hosts_report *rep = apply_ok(o, f->out, HOSTS_APPLY_PRUNE);
        assert_counts(rep, 1, 0, 0);
        assert_file(f, "daemon.json", json);
        hosts_report_free(rep);

        /* daemon.json carries no marker (JSON has no comments): left as it is,
         * it was not replaced, so it is not reported as an unmanaged file replaced. */
        rep = apply_ok(o, f->out, 0);
        assert_counts(rep, 0, 1, 0);
        assert_false(rep->changes[0].was_unmanaged);
        hosts_report_free(rep);
        hosts_output_free(o);
}

static void test_was_unmanaged(void **state) {
        struct fixture *f = *state;
        static const char hand[] = "server = \"https://registry-1.docker.io\"\n# written by hand\n";
        /* The marker counts only at the very start of the file. */
        static const char mention[] = "# " HOSTS_MANAGED_MARKER " is mentioned, not the first line\n";
        static const char stale[] = MANAGED("server = \"https://quay.io\"\n# outdated\n");
        assert_int_equal(mkdir(f->out, 0755), 0);
        make_dir(f, "docker.io");
        put(f, "docker.io/hosts.toml", hand);
        make_dir(f, "quay.io");
        put(f, "quay.io/hosts.toml", stale);
        make_dir(f, "registry.example.com:5000");
        put(f, "registry.example.com:5000/hosts.toml", mention);
        struct hosts_output *o = three(DOCKER_V1);

        struct hosts_report *rep = apply_ok(o, f->out, 0);
        assert_counts(rep, 3, 0, 0);
        assert_true(rep->changes[0].was_unmanaged);
        assert_string_equal(rep->changes[0].old_content, hand);
        assert_int_equal(rep->changes[0].old_size, strlen(hand));
        assert_false(rep->changes[1].was_unmanaged);
        assert_string_equal(rep->changes[1].old_content, stale);
        assert_true(rep->changes[2].was_unmanaged);
        assert_string_equal(rep->changes[2].old_content, mention);
        for (size_t i = 0; i < 3; i++)
                assert_file(f, o->files[i].name, o->files[i].content);
        hosts_report_free(rep);

        rep = apply_ok(o, f->out, 0);
        assert_counts(rep, 0, 3, 0);
        for (size_t i = 0; i < 3; i++)
                assert_false(rep->changes[i].was_unmanaged);
        hosts_report_free(rep);
        hosts_output_free(o);
}

/* ---- dry run ------------------------------------------------------------------------- */

static void test_dry_run_creates_nothing(void **state) {
        struct fixture *f = *state;
        struct hosts_output *o = three(DOCKER_V1);
        char *before = snapshot(f);
        struct hosts_report *rep = apply_ok(o, f->out, HOSTS_APPLY_DRY_RUN | HOSTS_APPLY_PRUNE);
        char *after = snapshot(f);
        assert_counts(rep, 3, 0, 0);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(rep->changes[i].kind, HOSTS_WRITTEN);
        assert_string_equal(after, before);
        assert_false(exists(f, ""));
        free(before);
        free(after);
        hosts_report_free(rep);
        hosts_output_free(o);
}

static void test_dry_run_reports_changes(void **state) {
        struct fixture *f = *state;
        struct hosts_output *o1 = three(DOCKER_V1), *o2 = three(DOCKER_V2);
        hosts_report_free(apply_ok(o1, f->out, 0));
        make_dir(f, "gone.example.com");
        put(f, "gone.example.com/hosts.toml", MANAGED("server = \"https://gone.example.com\"\n"));
        for (size_t i = 0; i < 3; i++)
                age(f, o1->files[i].name);
        char *before = snapshot(f);

        struct hosts_report *rep = apply_ok(o2, f->out, HOSTS_APPLY_DRY_RUN | HOSTS_APPLY_PRUNE);
        char *after = snapshot(f);
        assert_counts(rep, 1, 2, 1);
        const struct hosts_change *c = change(rep, "docker.io/hosts.toml");
        assert_int_equal(c->kind, HOSTS_WRITTEN);
        assert_string_equal(c->old_content, DOCKER_V1);
        c = change(rep, "gone.example.com/hosts.toml");
        assert_int_equal(c->kind, HOSTS_PRUNED);
        assert_string_equal(c->old_content, MANAGED("server = \"https://gone.example.com\"\n"));
        assert_string_equal(after, before);
        free(before);
        free(after);
        hosts_report_free(rep);
        hosts_output_free(o1);
        hosts_output_free(o2);
}

/* ---- prune -------------------------------------------------------------------------- */

#define GONE MANAGED("server = \"https://gone.example.com\"\n")
#define KEEP MANAGED("server = \"https://keep.example.com\"\n")
#define PREFIX MANAGED("server = \"https://docker\"\n")
#define HAND "server = \"https://hand.example.com\"\n"
#define HIDDEN MANAGED("server = \"https://hidden\"\n")

/* A hosts directory as a node has it: layerd's files, hand-written ones, other files. */
static void populate(const struct fixture *f) {
        assert_int_equal(mkdir(f->out, 0755), 0);
        make_dir(f, "gone.example.com"); /* managed, only hosts.toml: file and directory go */
        put(f, "gone.example.com/hosts.toml", GONE);
        make_dir(f, "keep.example.com"); /* managed, with a certificate: only hosts.toml goes */
        put(f, "keep.example.com/hosts.toml", KEEP);
        put(f, "keep.example.com/ca.crt", "certificate\n");
        make_dir(f, "docker"); /* a prefix of docker.io, still not named by the output */
        put(f, "docker/hosts.toml", PREFIX);
        make_dir(f, "hand.example.com"); /* not layerd's */
        put(f, "hand.example.com/hosts.toml", HAND);
        make_dir(f, "empty.example.com"); /* no hosts.toml */
        make_dir(f, ".hidden");
        put(f, ".hidden/hosts.toml", HIDDEN);
        put(f, "stray.txt", MANAGED("a file, not a registry directory\n"));
}

static void test_prune(void **state) {
        struct fixture *f = *state;
        populate(f);
        struct hosts_output *o = three(DOCKER_V1);
        struct hosts_report *rep = apply_ok(o, f->out, HOSTS_APPLY_PRUNE);

        assert_counts(rep, 3, 0, 3);
        /* After the output's files, in name order. */
        assert_string_equal(rep->changes[3].name, "docker/hosts.toml");
        assert_string_equal(rep->changes[4].name, "gone.example.com/hosts.toml");
        assert_string_equal(rep->changes[5].name, "keep.example.com/hosts.toml");
        for (size_t i = 3; i < 6; i++) {
                assert_int_equal(rep->changes[i].kind, HOSTS_PRUNED);
                assert_false(rep->changes[i].was_unmanaged);
        }
        assert_string_equal(rep->changes[3].old_content, PREFIX);
        assert_int_equal(rep->changes[3].old_size, strlen(PREFIX));
        assert_string_equal(rep->changes[4].old_content, GONE);
        assert_string_equal(rep->changes[5].old_content, KEEP);

        assert_false(exists(f, "gone.example.com"));
        assert_false(exists(f, "docker"));
        assert_false(exists(f, "keep.example.com/hosts.toml"));
        assert_file(f, "keep.example.com/ca.crt", "certificate\n");
        assert_file(f, "hand.example.com/hosts.toml", HAND);
        assert_true(exists(f, "empty.example.com"));
        assert_file(f, ".hidden/hosts.toml", HIDDEN);
        assert_file(f, "stray.txt", MANAGED("a file, not a registry directory\n"));
        assert_file(f, "docker.io/hosts.toml", DOCKER_V1);
        assert_false(has_temp_files(f));
        hosts_report_free(rep);

        /* Nothing left to prune. */
        rep = apply_ok(o, f->out, HOSTS_APPLY_PRUNE);
        assert_counts(rep, 0, 3, 0);
        hosts_report_free(rep);
        hosts_output_free(o);
}

static void test_no_prune_without_flag(void **state) {
        struct fixture *f = *state;
        populate(f);
        struct hosts_output *o = three(DOCKER_V1);
        struct hosts_report *rep = apply_ok(o, f->out, 0);
        assert_counts(rep, 3, 0, 0);
        assert_file(f, "gone.example.com/hosts.toml", GONE);
        assert_file(f, "docker/hosts.toml", PREFIX);
        hosts_report_free(rep);
        hosts_output_free(o);
}

/* Only containerd's format has registry directories to prune. */
static void test_no_prune_for_flat_formats(void **state) {
        struct fixture *f = *state;
        populate(f);
        struct hosts_output *o = OUTPUT(HOSTS_FORMAT_REGISTRIES_CONF, "registries.conf", MANAGED("\n"));
        struct hosts_report *rep = apply_ok(o, f->out, HOSTS_APPLY_PRUNE);
        assert_counts(rep, 1, 0, 0);
        assert_file(f, "gone.example.com/hosts.toml", GONE);
        hosts_report_free(rep);
        hosts_output_free(o);
}

/* The renderer and apply together, as `layerd hosts --prune` runs them: a
 * registry dropped from the spec loses its directory, the others stay put. */
static void test_rendered_spec(void **state) {
        struct fixture *f = *state;
        static const char before_yaml[] = "registries:\n  docker.io:\n  quay.io:\n    endpoints: [https://zot.example.com]\n";
        static const char after_yaml[] = "registries:\n  docker.io:\n";
        struct spec *s1 = NULL, *s2 = NULL;
        struct error_list errors, notes;
        struct hosts_output *o1 = NULL, *o2 = NULL;
        assert_int_equal(spec_parse("before.yaml", before_yaml, strlen(before_yaml), "/var/lib/layerd", &s1, &errors), 0);
        assert_int_equal(spec_parse("after.yaml", after_yaml, strlen(after_yaml), "/var/lib/layerd", &s2, &errors), 0);
        assert_int_equal(hosts_render(s1, HOSTS_FORMAT_CONTAINERD, "http://127.0.0.1:5080", &o1, &notes), 0);
        assert_int_equal(hosts_render(s2, HOSTS_FORMAT_CONTAINERD, "http://127.0.0.1:5080", &o2, &notes), 0);

        struct hosts_report *rep = apply_ok(o1, f->out, HOSTS_APPLY_PRUNE);
        assert_counts(rep, 2, 0, 0);
        hosts_report_free(rep);
        age(f, "docker.io/hosts.toml");
        struct stat docker = stat_of(f, "docker.io/hosts.toml");
        char *quay = get(f, "quay.io/hosts.toml");

        rep = apply_ok(o2, f->out, HOSTS_APPLY_PRUNE);
        assert_counts(rep, 0, 1, 1);
        assert_int_equal(change(rep, "docker.io/hosts.toml")->kind, HOSTS_UNCHANGED);
        const struct hosts_change *c = change(rep, "quay.io/hosts.toml");
        assert_int_equal(c->kind, HOSTS_PRUNED);
        assert_string_equal(c->old_content, quay);
        assert_false(exists(f, "quay.io"));
        struct stat now = stat_of(f, "docker.io/hosts.toml");
        assert_same_file(&docker, &now);
        free(quay);
        hosts_report_free(rep);
        hosts_output_free(o1);
        hosts_output_free(o2);
        spec_free(s1);
        spec_free(s2);
}

/* ---- problems found before anything is written --------------------------------------- */

static void test_file_where_registry_dir_goes(void **state) {
        struct fixture *f = *state;
        assert_int_equal(mkdir(f->out, 0755), 0);
        put(f, "docker.io", "a file\n");
        struct hosts_output *o = three(DOCKER_V1);
        char *first = NULL;
        assert_true(asprintf(&first, "%s: docker.io: exists and is not a directory", f->out) > 0);
        apply_fails(f, o, f->out, HOSTS_APPLY_PRUNE, -ENOTDIR, 1, first);
        assert_false(exists(f, "quay.io"));
        assert_file(f, "docker.io", "a file\n");
        free(first);
        hosts_output_free(o);
}

static void test_file_where_output_dir_goes(void **state) {
        struct fixture *f = *state;
        FILE *fp = fopen(f->out, "we");
        assert_non_null(fp);
        fclose(fp);
        struct hosts_output *o = three(DOCKER_V1);
        char *first = NULL;
        assert_true(asprintf(&first, "%s: exists and is not a directory", f->out) > 0);
        /* One problem, said once: the registry directories under it would only repeat it. */
        apply_fails(f, o, f->out, 0, -ENOTDIR, 1, first);
        free(first);

        /* Below a regular file: the path cannot be created. */
        char *below = NULL;
        assert_true(asprintf(&below, "%s/sub", f->out) > 0);
        assert_true(asprintf(&first, "%s: Not a directory", below) > 0);
        apply_fails(f, o, below, 0, -ENOTDIR, 1, first);
        free(first);
        free(below);
        hosts_output_free(o);
}

static void test_dir_where_file_goes(void **state) {
        struct fixture *f = *state;
        assert_int_equal(mkdir(f->out, 0755), 0);
        make_dir(f, "quay.io");
        make_dir(f, "quay.io/hosts.toml");
        struct hosts_output *o = three(DOCKER_V1);
        char *first = NULL;
        assert_true(asprintf(&first, "%s: quay.io/hosts.toml: cannot read the current file: not a regular file",
                             f->out) > 0);
        apply_fails(f, o, f->out, 0, -EINVAL, 1, first);
        /* Not even the file before it in the output was written. */
        assert_false(exists(f, "docker.io"));
        free(first);
        hosts_output_free(o);
}

static void test_every_problem_is_reported(void **state) {
        struct fixture *f = *state;
        assert_int_equal(mkdir(f->out, 0755), 0);
        put(f, "docker.io", "a file\n");
        make_dir(f, "registry.example.com:5000");
        make_dir(f, "registry.example.com:5000/hosts.toml");
        struct hosts_output *o = three(DOCKER_V1);
        char *first = NULL;
        assert_true(asprintf(&first, "%s: docker.io: exists and is not a directory", f->out) > 0);
        apply_fails(f, o, f->out, HOSTS_APPLY_DRY_RUN, -ENOTDIR, 2, first);
        free(first);
        hosts_output_free(o);
}

/* A failure while writing: each file is whole, the others are written, errors name the failed one. */
static void test_write_failure(void **state) {
        struct fixture *f = *state;
        /* Name fits NAME_MAX, its temporary file ".NAME.layerd-XXXXXX" does not. */
        char long_name[251];
        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        struct hosts_output *o = OUTPUT(HOSTS_FORMAT_DOCKER, "daemon.json", "{}\n", long_name, "{}\n");
        struct hosts_report *rep = REPORT_SENTINEL;
        struct error_list errors;
        assert_int_equal(hosts_apply(o, f->out, 0, &rep, &errors), -EIO);
        assert_ptr_equal(rep, REPORT_SENTINEL);
        assert_int_equal(error_list_count(&errors), 1);
        char want[ERROR_MESSAGE_MAX];
        snprintf(want, sizeof(want), "%s: File name too long", long_name);
        assert_string_equal(errors.items[0].message, want);
        assert_file(f, "daemon.json", "{}\n");
        assert_false(exists(f, long_name));
        assert_false(has_temp_files(f));
        hosts_output_free(o);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_first_apply_writes_all, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_parents_are_created, setup, teardown),
                cmocka_unit_test_setup_teardown(test_second_apply_writes_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_changed_file_only_is_rewritten, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flat_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_was_unmanaged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dry_run_creates_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dry_run_reports_changes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_prune_without_flag, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_prune_for_flat_formats, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rendered_spec, setup, teardown),
                cmocka_unit_test_setup_teardown(test_file_where_registry_dir_goes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_file_where_output_dir_goes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dir_where_file_goes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_problem_is_reported, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
