/* SPDX-License-Identifier: Apache-2.0 */
#include "common/fsutil.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "common/macro.h"

static int mkdir_one(const char *path, mode_t mode) {
        if (mkdir(path, mode) == 0)
                return 0;
        int e = errno;
        struct stat st;
        if (e == EEXIST) {
                if (stat(path, &st) < 0)
                        return -errno;
                return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
        }
        return -e;
}

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        if (p[0] == '\0')
                return -EINVAL;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                int r = mkdir_one(p, mode);
                *s = '/';
                if (r < 0)
                        return r;
        }
        return mkdir_one(p, mode);
}
