/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/filestamp.c: what counts as a change of a file seen
 * through a path, a Kubernetes Secret volume's symlink swap above all. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/filestamp.h"

struct fixture {
        char dir[64];
        char path[128]; /* dir/config.json -> ..data/config.json */
};

static void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

/* A new directory dir/..NAME holding config.json with text, and ..data swapped to it by a rename. */
static void secret_version(const struct fixture *f, const char *name, const char *text) {
        char d[160], file[200], tmp[160], data[160];
        snprintf(d, sizeof(d), "%s/..%s", f->dir, name);
        assert_int_equal(mkdir(d, 0700), 0);
        snprintf(file, sizeof(file), "%s/config.json", d);
        write_text(file, text);
        snprintf(tmp, sizeof(tmp), "%s/..data_tmp", f->dir);
        snprintf(data, sizeof(data), "%s/..data", f->dir);
        char target[64];
        snprintf(target, sizeof(target), "..%s", name);
        assert_int_equal(symlink(target, tmp), 0);
        assert_int_equal(rename(tmp, data), 0);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/layerd-test-filestamp-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/config.json", f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        nftw(f->dir, unit_remove_one, 8, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

static void test_symlink_swap(void **state) {
        struct fixture *f = *state;
        secret_version(f, "v1", "{\"auths\": {}}");
        assert_int_equal(symlink("..data/config.json", f->path), 0);
        struct file_stamp s = { 0 };
        assert_true(file_stamp_update(&s, f->path, 1));  /* the first look */
        assert_false(file_stamp_update(&s, f->path, 2)); /* nothing happened */
        assert_int_equal(s.checked_ms, 2);
        /* Same size, same content even: a new file behind the link all the same. */
        secret_version(f, "v2", "{\"auths\": {}}");
        assert_true(file_stamp_update(&s, f->path, 3));
        assert_false(file_stamp_update(&s, f->path, 4));
}

static void test_rename_and_append(void **state) {
        struct fixture *f = *state;
        write_text(f->path, "one");
        struct file_stamp s = { 0 };
        assert_true(file_stamp_update(&s, f->path, 0));
        char tmp[200];
        snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
        write_text(tmp, "two");
        assert_int_equal(rename(tmp, f->path), 0); /* a crash-safe replacement */
        assert_true(file_stamp_update(&s, f->path, 0));
        int fd = open(f->path, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "!", 1), 1); /* in place, but longer */
        close(fd);
        assert_true(file_stamp_update(&s, f->path, 0));
        assert_false(file_stamp_update(&s, f->path, 0));
}

static void test_gone_and_back(void **state) {
        struct fixture *f = *state;
        struct file_stamp s = { 0 };
        assert_true(file_stamp_update(&s, f->path, 0)); /* the first look, at nothing */
        assert_int_equal(s.error, ENOENT);
        assert_false(file_stamp_update(&s, f->path, 0)); /* still nothing: no change */
        write_text(f->path, "here");
        assert_true(file_stamp_update(&s, f->path, 0));
        assert_int_equal(s.error, 0);
        assert_int_equal(unlink(f->path), 0);
        assert_true(file_stamp_update(&s, f->path, 0));
        assert_int_equal(s.error, ENOENT);
        /* A dangling symlink is a missing file too. */
        assert_int_equal(symlink("..data/config.json", f->path), 0);
        assert_false(file_stamp_update(&s, f->path, 0));
}

static void test_due(void **state) {
        (void) state;
        struct file_stamp s = { 0 };
        assert_true(file_stamp_due(&s, 5, 1000)); /* never looked */
        s.known = true;
        s.checked_ms = 10000;
        assert_false(file_stamp_due(&s, 10999, 1000));
        assert_true(file_stamp_due(&s, 11000, 1000));
        assert_true(file_stamp_due(&s, 50, 1000)); /* a clock that went back is not trusted */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_symlink_swap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rename_and_append, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gone_and_back, setup, teardown),
                cmocka_unit_test(test_due),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
