/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/fsutil.c, each in a fresh mkdtemp directory under
 * /tmp. The tests run as root, so failures are forced with paths whose parent
 * is a regular file or a directory that is missing, never with permissions. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/macro.h"

static char sentinel_storage;
#define SENTINEL_PTR (&sentinel_storage)
#define SIZE_SENTINEL ((size_t) 0x5e471e1)

struct fixture {
        char *dir;
        int cwd_fd; /* where to go back to, for the tests that chdir */
        mode_t umask;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        f->dir = strdup("/tmp/layerd-test-fsutil-XXXXXX");
        f->cwd_fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (!f->dir || !mkdtemp(f->dir) || f->cwd_fd < 0) {
                free(f->dir);
                free(f);
                return -1;
        }
        /* Fixed, so the modes mkdir_p creates are known. */
        f->umask = umask(022);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        int r = fchdir(f->cwd_fd);
        close(f->cwd_fd);
        umask(f->umask);
        if (unit_rm_rf(f->dir) < 0)
                r = -1;
        free(f->dir);
        free(f);
        return r;
}

/* dir/name; caller frees. */
static char *at(const struct fixture *f, const char *name) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", f->dir, name) > 0);
        return p;
}

static void write_plain(const char *path, const char *data, size_t size) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, size, f), size);
        assert_int_equal(fclose(f), 0);
}

/* A file's bytes, read without fsutil; caller frees. */
static char *read_plain(const char *path, size_t *ret_size) {
        char *out = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&out, &size);
        assert_non_null(m);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        char chunk[4096];
        for (;;) {
                size_t n = fread(chunk, 1, sizeof(chunk), f);
                if (n == 0)
                        break;
                assert_int_equal(fwrite(chunk, 1, n, m), n);
        }
        assert_false(ferror(f));
        assert_int_equal(fclose(f), 0);
        assert_int_equal(fclose(m), 0);
        *ret_size = size;
        return out;
}

static int cmp_str(const void *x, const void *y) {
        return strcmp(*(char *const *) x, *(char *const *) y);
}

/* The names in a directory, sorted and joined by spaces, so a test can assert
 * that no temporary file was left behind; caller frees. */
static char *list_dir(const char *path) {
        DIR *d = opendir(path);
        assert_non_null(d);
        char *names[64];
        size_t n = 0;
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de)
                        break;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                assert_true(n < ELEMENTSOF(names));
                names[n] = strdup(de->d_name);
                assert_non_null(names[n]);
                n++;
        }
        assert_int_equal(errno, 0);
        closedir(d);
        qsort(names, n, sizeof(names[0]), cmp_str);
        char *out = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&out, &size);
        assert_non_null(m);
        for (size_t i = 0; i < n; i++) {
                assert_true(fprintf(m, i ? " %s" : "%s", names[i]) > 0);
                free(names[i]);
        }
        assert_int_equal(fclose(m), 0);
        return out;
}

#define ASSERT_LISTING(dir, want)                                              \
        do {                                                                   \
                _cleanup_free_ char *l_ = list_dir(dir);                       \
                assert_string_equal(l_, (want));                               \
        } while (0)

#define ASSERT_CONTENT(path, want, want_size)                                  \
        do {                                                                   \
                size_t s_;                                                     \
                _cleanup_free_ char *c_ = read_plain((path), &s_);             \
                assert_int_equal(s_, (want_size));                             \
                assert_memory_equal(c_, (want), (want_size));                  \
        } while (0)

static void assert_dir_mode(const char *path, mode_t mode) {
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, mode);
}

/* ---- mkdir_p ------------------------------------------------------------------ */

static void test_mkdir_p_nested(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *a = at(f, "a"), *ab = at(f, "a/b"), *abc = at(f, "a/b/c");
        assert_int_equal(mkdir_p(abc, 0750), 0);
        /* Missing parents get the mode too. */
        assert_dir_mode(a, 0750);
        assert_dir_mode(ab, 0750);
        assert_dir_mode(abc, 0750);

        /* A trailing slash and doubled slashes are fine. */
        _cleanup_free_ char *t = at(f, "t/u/"), *d = at(f, "d//e"), *de = at(f, "d/e");
        assert_int_equal(mkdir_p(t, 0700), 0);
        _cleanup_free_ char *tu = at(f, "t/u");
        assert_dir_mode(tu, 0700);
        assert_int_equal(mkdir_p(d, 0755), 0);
        assert_dir_mode(de, 0755);

        /* Relative to the working directory. */
        assert_int_equal(chdir(f->dir), 0);
        assert_int_equal(mkdir_p("r/s", 0711), 0);
        assert_dir_mode("r/s", 0711);
        ASSERT_LISTING(f->dir, "a d r t");
}

static void test_mkdir_p_existing(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *abc = at(f, "a/b/c"), *ab = at(f, "a/b"), *abcd = at(f, "a/b/c/d");
        assert_int_equal(mkdir_p(f->dir, 0700), 0);
        assert_int_equal(mkdir_p(abc, 0750), 0);
        assert_int_equal(mkdir_p(abc, 0700), 0);
        assert_int_equal(mkdir_p(ab, 0700), 0);
        /* Existing directories keep their mode. */
        assert_dir_mode(abc, 0750);
        /* Below an existing one. */
        assert_int_equal(mkdir_p(abcd, 0700), 0);
        assert_dir_mode(abcd, 0700);
        assert_int_equal(mkdir_p("/", 0700), 0);
        /* A symlink to a directory is a directory. */
        _cleanup_free_ char *link = at(f, "link"), *below = at(f, "link/e"), *real = at(f, "a/b/e");
        assert_int_equal(symlink(ab, link), 0);
        assert_int_equal(mkdir_p(link, 0700), 0);
        assert_int_equal(mkdir_p(below, 0700), 0);
        assert_dir_mode(real, 0700);
}

static void test_mkdir_p_not_dir(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *file = at(f, "file"), *sub = at(f, "file/sub"), *deep = at(f, "file/sub/deeper");
        write_plain(file, "x", 1);
        assert_int_equal(mkdir_p(file, 0700), -ENOTDIR);
        assert_int_equal(mkdir_p(sub, 0700), -ENOTDIR);
        assert_int_equal(mkdir_p(deep, 0700), -ENOTDIR);
        ASSERT_CONTENT(file, "x", 1);
        ASSERT_LISTING(f->dir, "file");
}

static void test_mkdir_p_empty(void **state) {
        struct fixture *f = *state;
        assert_int_equal(chdir(f->dir), 0);
        assert_int_equal(mkdir_p("", 0700), -EINVAL);
        ASSERT_LISTING(f->dir, "");
}

/* ---- write_file_atomic ---------------------------------------------------------- */

static void assert_file(const char *path, mode_t mode, const char *data, size_t size) {
        struct stat st;
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, mode);
        ASSERT_CONTENT(path, data, size);
}

static void test_write_new(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *p = at(f, "hosts.toml");
        const char data[] = "server = \"https://registry-1.docker.io\"\n\0binary\n";
        assert_int_equal(write_file_atomic(p, data, sizeof(data), 0640), 0);
        assert_file(p, 0640, data, sizeof(data));
        ASSERT_LISTING(f->dir, "hosts.toml");

        /* The mode is set exactly: neither the umask nor mkstemp's 0600 applies. */
        umask(077);
        _cleanup_free_ char *q = at(f, "open");
        assert_int_equal(write_file_atomic(q, "q", 1, 0644), 0);
        assert_file(q, 0644, "q", 1);

        /* Empty. */
        _cleanup_free_ char *e = at(f, "empty");
        assert_int_equal(write_file_atomic(e, NULL, 0, 0600), 0);
        assert_file(e, 0600, "", 0);

        /* A name without a directory: the working directory. */
        assert_int_equal(chdir(f->dir), 0);
        assert_int_equal(write_file_atomic("rel", "rel\n", 4, 0444), 0);
        assert_file("rel", 0444, "rel\n", 4);
        ASSERT_LISTING(f->dir, "empty hosts.toml open rel");
}

static void test_write_replaces(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *p = at(f, "config.toml"), *old = at(f, "old-link");
        const char *before = "a much longer old content\nthat spans two lines\n";
        assert_int_equal(write_file_atomic(p, before, strlen(before), 0600), 0);
        /* A hard link keeps the old inode: replacing must not write into it. */
        assert_int_equal(link(p, old), 0);
        assert_int_equal(write_file_atomic(p, "new\n", 4, 0644), 0);
        assert_file(p, 0644, "new\n", 4);
        assert_file(old, 0600, before, strlen(before));
        struct stat sp, so;
        assert_int_equal(stat(p, &sp), 0);
        assert_int_equal(stat(old, &so), 0);
        assert_int_not_equal(sp.st_ino, so.st_ino);
        assert_int_equal(so.st_nlink, 1);
        ASSERT_LISTING(f->dir, "config.toml old-link");

        /* Many times over: still one file, no leftovers. */
        for (int i = 0; i < 20; i++) {
                char buf[32];
                int n = snprintf(buf, sizeof(buf), "round %d\n", i);
                assert_int_equal(write_file_atomic(p, buf, (size_t) n, 0600), 0);
                assert_file(p, 0600, buf, (size_t) n);
        }
        ASSERT_LISTING(f->dir, "config.toml old-link");
}

static void test_write_fails_before_temp(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *file = at(f, "file"), *under = at(f, "file/x"), *missing = at(f, "missing/x");
        write_plain(file, "keep", 4);
        /* The parent is a regular file. */
        assert_int_equal(write_file_atomic(under, "data", 4, 0644), -ENOTDIR);
        /* The parent does not exist. */
        assert_int_equal(write_file_atomic(missing, "data", 4, 0644), -ENOENT);
        assert_file(file, 0644, "keep", 4);
        ASSERT_LISTING(f->dir, "file");
}

static void test_write_fails_rename(void **state) {
        struct fixture *f = *state;
        /* The target is a non-empty directory: the temporary file is written,
         * the rename fails, and the temporary file must go. */
        _cleanup_free_ char *d = at(f, "target"), *inside = at(f, "target/keep");
        assert_int_equal(mkdir(d, 0755), 0);
        write_plain(inside, "keep", 4);
        assert_int_equal(write_file_atomic(d, "data", 4, 0644), -EISDIR);
        assert_dir_mode(d, 0755);
        ASSERT_CONTENT(inside, "keep", 4);
        ASSERT_LISTING(f->dir, "target");
        ASSERT_LISTING(d, "keep");
}

static void test_write_fails_writing(void **state) {
        struct fixture *f = *state;
        /* RLIMIT_FSIZE makes write() fail with EFBIG part-way (SIGXFSZ
         * ignored): the old file must survive whole, the temporary go. */
        _cleanup_free_ char *p = at(f, "config");
        write_plain(p, "old\n", 4);
        assert_int_equal(chmod(p, 0640), 0);
        _cleanup_free_ char *big = malloc(3 * 4096);
        assert_non_null(big);
        memset(big, 'z', 3 * 4096);

        struct rlimit saved, lim;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
        lim = (struct rlimit) { .rlim_cur = 4096, .rlim_max = saved.rlim_max };
        void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
        assert_true(old_handler != SIG_ERR);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        int r = write_file_atomic(p, big, 3 * 4096, 0644);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
        assert_true(signal(SIGXFSZ, old_handler) != SIG_ERR);

        assert_int_equal(r, -EFBIG);
        assert_file(p, 0640, "old\n", 4);
        ASSERT_LISTING(f->dir, "config");
}

/* ---- read_file_bounded ---------------------------------------------------------- */

#define READ_OK(path, max, want, want_size)                                           \
        do {                                                                          \
                char *b_ = SENTINEL_PTR;                                              \
                size_t s_ = SIZE_SENTINEL;                                            \
                assert_int_equal(read_file_bounded((path), (max), &b_, &s_), 0);      \
                assert_ptr_not_equal(b_, SENTINEL_PTR);                               \
                assert_int_equal(s_, (want_size));                                   \
                assert_memory_equal(b_, (want), (want_size));                         \
                assert_int_equal(b_[s_], '\0');                                       \
                free(b_);                                                             \
        } while (0)

#define READ_FAIL(path, max, err)                                                     \
        do {                                                                          \
                char *b_ = SENTINEL_PTR;                                              \
                size_t s_ = SIZE_SENTINEL;                                            \
                assert_int_equal(read_file_bounded((path), (max), &b_, &s_), (err));  \
                assert_ptr_equal(b_, SENTINEL_PTR);                                   \
                assert_int_equal(s_, SIZE_SENTINEL);                                  \
        } while (0)

static void test_read_content(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *p = at(f, "spec.yaml");
        const char data[] = "a: 1\n\0b: 2\n"; /* a NUL inside counts too */
        write_plain(p, data, sizeof(data) - 1);
        READ_OK(p, 4096, data, sizeof(data) - 1);

        _cleanup_free_ char *e = at(f, "empty");
        write_plain(e, "", 0);
        READ_OK(e, 0, "", 0);
        READ_OK(e, 10, "", 0);

        /* More than one read()'s worth. */
        const size_t n = 300000;
        _cleanup_free_ char *big = malloc(n);
        assert_non_null(big);
        for (size_t i = 0; i < n; i++)
                big[i] = (char) ('a' + i % 26);
        _cleanup_free_ char *bp = at(f, "big");
        write_plain(bp, big, n);
        READ_OK(bp, n, big, n);
        READ_OK(bp, 2 * n, big, n);
        READ_FAIL(bp, n - 1, -EFBIG);
}

static void test_read_bounds(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *p = at(f, "f");
        write_plain(p, "0123456789", 10);
        READ_OK(p, 10, "0123456789", 10);
        READ_OK(p, 11, "0123456789", 10);
        READ_FAIL(p, 9, -EFBIG);
        READ_FAIL(p, 0, -EFBIG);
        _cleanup_free_ char *one = at(f, "one");
        write_plain(one, "x", 1);
        READ_OK(one, 1, "x", 1);
        READ_FAIL(one, 0, -EFBIG);
}

static void test_read_errors(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *missing = at(f, "missing"), *file = at(f, "file"), *under = at(f, "file/x");
        READ_FAIL(missing, 100, -ENOENT);
        write_plain(file, "x", 1);
        READ_FAIL(under, 100, -ENOTDIR);
        /* Not regular files. */
        READ_FAIL(f->dir, 100, -EINVAL);
        READ_FAIL("/dev/null", 100, -EINVAL);
        /* A max that would wrap max + 1. */
        READ_FAIL(file, SIZE_MAX, -EINVAL);
}

/* ---- fsync_dir_of ---------------------------------------------------------------- */

static void test_fsync_dir_of(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *nested = at(f, "a/b/c"), *in_nested = at(f, "a/b/c/file"),
                            *file = at(f, "file"), *under = at(f, "file/x"), *missing = at(f, "nope/x");
        assert_int_equal(mkdir_p(nested, 0755), 0);
        write_plain(file, "x", 1);

        /* The file itself need not exist: only its directory is opened. */
        assert_int_equal(fsync_dir_of(in_nested), 0);
        assert_int_equal(fsync_dir_of(file), 0);
        assert_int_equal(fsync_dir_of("/x"), 0);
        assert_int_equal(fsync_dir_of("/"), 0);
        /* That directory must be the parent: a file is not one, nor is a missing name. */
        assert_int_equal(fsync_dir_of(under), -ENOTDIR);
        assert_int_equal(fsync_dir_of(missing), -ENOENT);

        /* No slash: the working directory. */
        assert_int_equal(chdir(f->dir), 0);
        assert_int_equal(fsync_dir_of("file"), 0);
        assert_int_equal(fsync_dir_of("not-there"), 0);
        assert_int_equal(fsync_dir_of("a/b"), 0);
        assert_int_equal(fsync_dir_of("file/x"), -ENOTDIR);
}

int main(void) {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_mkdir_p_nested),
                T(test_mkdir_p_existing),
                T(test_mkdir_p_not_dir),
                T(test_mkdir_p_empty),
                T(test_write_new),
                T(test_write_replaces),
                T(test_write_fails_before_temp),
                T(test_write_fails_rename),
                T(test_write_fails_writing),
                T(test_read_content),
                T(test_read_bounds),
                T(test_read_errors),
                T(test_fsync_dir_of),
        };
#undef T
        return cmocka_run_group_tests(tests, NULL, NULL);
}
