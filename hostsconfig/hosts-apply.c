/* SPDX-License-Identifier: Apache-2.0 */
/* Putting rendered files on disk: check everything first, then write each
 * changed file atomically, then prune. containerd reads a hosts directory on
 * every pull, so a reader must only ever see a whole old or a whole new file. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/macro.h"
#include "hostsconfig/hosts.h"

struct hosts_report *hosts_report_free(struct hosts_report *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_changes; i++) {
                free(r->changes[i].name);
                free(r->changes[i].old_content);
        }
        free(r->changes);
        free(r);
        return NULL;
}

static struct hosts_change *add_change(struct hosts_report *r, const char *name, enum hosts_change_kind kind) {
        if (ARRAY_RESERVE(r->changes, &r->cap_changes, r->n_changes + 1, 16, SIZE_MAX) < 0)
                return NULL;
        struct hosts_change *c = &r->changes[r->n_changes];
        *c = (struct hosts_change) { .name = strdup(name), .kind = kind };
        if (!c->name)
                return NULL;
        r->n_changes++;
        return c;
}

static bool is_managed(const char *content) {
        return strncmp(content, HOSTS_MANAGED_MARKER, strlen(HOSTS_MANAGED_MARKER)) == 0;
}

/* Checks that path is absent or a directory we can write into. A registry
 * directory (follow false) must not be a symbolic link: writing or pruning
 * through one would touch files outside the hosts directory. */
static int check_dir(const char *path, const char *shown, bool follow, struct error_list *errors) {
        /* shown NULL: the error list's source already names it. */
        const char *sep = shown ? ": " : "";
        shown = shown ? shown : "";
        struct stat st;
        if ((follow ? stat(path, &st) : lstat(path, &st)) < 0) {
                if (errno == ENOENT)
                        return 0;
                int e = errno;
                error_list_add(errors, 0, 0, "%s%s%s", shown, sep, strerror(e));
                return -e;
        }
        if (S_ISLNK(st.st_mode)) {
                error_list_add(errors, 0, 0, "%s%sis a symbolic link; refusing to write through it", shown, sep);
                return -ELOOP;
        }
        if (!S_ISDIR(st.st_mode)) {
                error_list_add(errors, 0, 0, "%s%sexists and is not a directory", shown, sep);
                return -ENOTDIR;
        }
        if (access(path, W_OK | X_OK) < 0) {
                int e = errno;
                error_list_add(errors, 0, 0, "%s%snot writable: %s", shown, sep, strerror(e));
                return -e;
        }
        return 0;
}

/* The output directory: when it does not exist yet, its nearest existing
 * ancestor must be a directory we can create it in. */
static int check_top(const char *dir, struct error_list *errors) {
        struct stat st;
        int r = check_dir(dir, NULL, true, errors);
        if (r < 0 || stat(dir, &st) == 0)
                return r;
        _cleanup_free_ char *p = strdup(dir);
        if (!p)
                return -ENOMEM;
        for (;;) {
                char *slash = strrchr(p, '/');
                if (!slash) /* relative: the current directory is the ancestor */
                        return check_dir(".", ".", true, errors);
                if (slash == p) {
                        p[1] = '\0';
                        return check_dir(p, p, true, errors);
                }
                *slash = '\0';
                if (stat(p, &st) == 0)
                        return check_dir(p, p, true, errors);
                if (errno != ENOENT) {
                        int e = errno;
                        error_list_add(errors, 0, 0, "%s: %s", p, strerror(e));
                        return -e;
                }
        }
}

/* Reads the current content of a target (NULL when absent). */
static int read_old(const char *path, const char *name, char **ret, size_t *ret_size, struct error_list *errors) {
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
                error_list_add(errors, 0, 0, "%s: is a symbolic link; refusing to replace it", name);
                return -ELOOP;
        }
        int r = read_file_bounded(path, HOSTS_FILE_MAX, ret, ret_size);
        if (r == -ENOENT) {
                *ret = NULL;
                *ret_size = 0;
                return 0;
        }
        if (r < 0)
                error_list_add(errors, 0, 0, "%s: cannot read the current file: %s", name,
                               r == -EINVAL ? "not a regular file" : strerror(-r));
        return r;
}

/* Managed registry directories of dir that the output no longer names. */
static int find_prunable(const struct hosts_output *o, const char *dir, struct hosts_report *rep,
                         struct error_list *errors) {
        struct dirent **ents = NULL;
        int n = scandir(dir, &ents, NULL, alphasort);
        if (n < 0)
                return errno == ENOENT ? 0 : -errno;
        int rc = 0;
        for (int i = 0; i < n; i++) {
                const char *d = ents[i]->d_name;
                bool keep = d[0] == '.';
                for (size_t j = 0; !keep && j < o->n_files; j++) {
                        size_t len = strlen(d);
                        keep = strncmp(o->files[j].name, d, len) == 0 && o->files[j].name[len] == '/';
                }
                _cleanup_free_ char *name = NULL, *path = NULL, *sub = NULL, *content = NULL;
                size_t size;
                struct stat st_dir, st_file;
                if (keep) {
                        free(ents[i]);
                        continue;
                }
                if (asprintf(&name, "%s/hosts.toml", d) < 0 || asprintf(&path, "%s/%s", dir, name) < 0 ||
                    asprintf(&sub, "%s/%s", dir, d) < 0) {
                        rc = -ENOMEM;
                        free(ents[i]);
                        continue;
                }
                /* Only a real directory holding a regular file that we wrote:
                 * never through a symbolic link, never someone else's file. */
                if (lstat(sub, &st_dir) == 0 && S_ISDIR(st_dir.st_mode) && lstat(path, &st_file) == 0 &&
                    S_ISREG(st_file.st_mode) && read_file_bounded(path, HOSTS_FILE_MAX, &content, &size) == 0 &&
                    is_managed(content)) {
                        int r = check_dir(sub, d, false, errors);
                        struct hosts_change *c = r < 0 ? NULL : add_change(rep, name, HOSTS_PRUNED);
                        if (r < 0)
                                rc = rc ? rc : r;
                        else if (!c)
                                rc = -ENOMEM;
                        else {
                                c->old_content = TAKE_PTR(content);
                                c->old_size = size;
                        }
                }
                free(ents[i]);
        }
        free(ents);
        return rc;
}

static int apply_change(const struct hosts_output *o, const char *dir, const struct hosts_change *c,
                        struct error_list *errors) {
        _cleanup_free_ char *path = NULL, *sub = NULL;
        if (asprintf(&path, "%s/%s", dir, c->name) < 0)
                return -ENOMEM;
        const char *slash = strrchr(c->name, '/');
        if (slash && asprintf(&sub, "%s/%.*s", dir, (int) (slash - c->name), c->name) < 0)
                return -ENOMEM;
        int r = 0;
        if (c->kind == HOSTS_WRITTEN) {
                const struct hosts_file *f = NULL;
                for (size_t i = 0; i < o->n_files && !f; i++)
                        if (strcmp(o->files[i].name, c->name) == 0)
                                f = &o->files[i];
                if (!f)
                        return -EINVAL;
                if (sub && access(sub, F_OK) < 0) {
                        r = mkdir(sub, 0755) < 0 ? -errno : fsync_dir_of(sub);
                }
                if (r == 0)
                        r = write_file_atomic(path, f->content, f->size, 0644);
        } else if (c->kind == HOSTS_PRUNED) {
                /* Only the file we wrote; the directory goes only if that left it empty. */
                r = unlink(path) < 0 ? -errno : fsync_dir_of(path);
                if (r == 0 && sub && rmdir(sub) == 0)
                        r = fsync_dir_of(sub);
        }
        if (r < 0)
                error_list_add(errors, 0, 0, "%s: %s", c->name, strerror(-r));
        return r;
}

int hosts_apply(const struct hosts_output *o, const char *dir, unsigned flags, struct hosts_report **ret,
                struct error_list *errors) {
        _cleanup_(hosts_report_freep) struct hosts_report *rep = calloc(1, sizeof(*rep));
        int rc = 0;

        error_list_init(errors, dir);
        if (!rep)
                return -ENOMEM;
        /* Phase 1: look at everything, change nothing. */
        rc = check_top(dir, errors);
        if (rc < 0)
                return rc; /* every target below it would only repeat the problem */
        for (size_t i = 0; i < o->n_files; i++) {
                const struct hosts_file *f = &o->files[i];
                _cleanup_free_ char *path = NULL, *sub = NULL, *old = NULL;
                size_t old_size = 0;
                if (asprintf(&path, "%s/%s", dir, f->name) < 0)
                        return -ENOMEM;
                const char *slash = strrchr(f->name, '/');
                if (slash) {
                        if (asprintf(&sub, "%s/%.*s", dir, (int) (slash - f->name), f->name) < 0)
                                return -ENOMEM;
                        int r = check_dir(sub, sub + strlen(dir) + 1, false, errors);
                        if (r < 0) {
                                rc = rc ? rc : r;
                                continue;
                        }
                }
                int r = read_old(path, f->name, &old, &old_size, errors);
                if (r < 0) {
                        rc = rc ? rc : r;
                        continue;
                }
                bool same = old && old_size == f->size && memcmp(old, f->content, f->size) == 0;
                struct hosts_change *c = add_change(rep, f->name, same ? HOSTS_UNCHANGED : HOSTS_WRITTEN);
                if (!c)
                        return -ENOMEM;
                /* Only a replacement replaces: an unchanged file without the
                 * marker (daemon.json never has one) is left as it is. */
                c->was_unmanaged = !same && old && !is_managed(old);
                c->old_size = old_size;
                c->old_content = TAKE_PTR(old);
        }
        if ((flags & HOSTS_APPLY_PRUNE) && o->format == HOSTS_FORMAT_CONTAINERD) {
                int r = find_prunable(o, dir, rep, errors);
                rc = rc ? rc : r;
        }
        if (rc < 0)
                return rc;

        /* Phase 2: write. */
        if (!(flags & HOSTS_APPLY_DRY_RUN)) {
                int r = mkdir_p(dir, 0755);
                if (r < 0) {
                        error_list_add(errors, 0, 0, "cannot create: %s", strerror(-r));
                        return -EIO;
                }
                for (size_t i = 0; i < rep->n_changes; i++) {
                        if (rep->changes[i].kind == HOSTS_UNCHANGED)
                                continue;
                        r = apply_change(o, dir, &rep->changes[i], errors);
                        rc = rc ? rc : r;
                }
                /* Every file that was written is whole; errors name the ones that were not. */
                if (rc < 0)
                        return -EIO;
        }
        for (size_t i = 0; i < rep->n_changes; i++)
                rep->count[rep->changes[i].kind]++;
        *ret = TAKE_PTR(rep);
        return 0;
}
