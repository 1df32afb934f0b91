/* SPDX-License-Identifier: Apache-2.0 */
/* Rendering and writing runtime mirror configs, for `layerd hosts` and
 * `layerd serve --write-hosts`. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/macro.h"
#include "common/textdiff.h"

static char *default_cache_dir(void) {
        char *s = NULL;
        /* Root gets the system location, anyone else a directory of their own
         * (XDG base directory spec), so `make run` works unprivileged. Without
         * a usable home it stays the system location (which then fails
         * clearly): never a guessable /tmp path another user could own first. */
        if (geteuid() == 0)
                return strdup("/var/lib/layerd");
        const char *xdg = getenv("XDG_CACHE_HOME");
        if (xdg && xdg[0] == '/')
                return asprintf(&s, "%s/layerd", xdg) < 0 ? NULL : s;
        const char *home = getenv("HOME");
        if (home && home[0] == '/')
                return asprintf(&s, "%s/.cache/layerd", home) < 0 ? NULL : s;
        return strdup("/var/lib/layerd");
}

int agent_load_spec(const char *path, struct spec **ret, struct error_list *errors) {
        error_list_init(errors, path ? path : "<builtin>");
        _cleanup_free_ char *cache_dir = default_cache_dir();
        if (!cache_dir)
                return -ENOMEM;
        return path ? spec_load_file(path, cache_dir, ret, errors) : spec_load_default(cache_dir, ret, errors);
}

int agent_write_hosts(const struct spec *s, const char *agent_url, enum hosts_format format, const char *dir,
                      unsigned flags, FILE *diff_out, struct hosts_report **ret, struct error_list *notes,
                      struct error_list *errors) {
        _cleanup_(hosts_output_freep) struct hosts_output *o = NULL;
        _cleanup_(hosts_report_freep) struct hosts_report *rep = NULL;
        int r = hosts_render(s, format, agent_url, &o, notes);
        if (r < 0) {
                error_list_init(errors, dir);
                error_list_add(errors, 0, 0, "cannot render: %s", strerror(-r));
                return r;
        }
        r = hosts_apply(o, dir, flags, &rep, errors);
        if (r < 0)
                return r;
        for (size_t i = 0; diff_out && i < rep->n_changes; i++) {
                const struct hosts_change *c = &rep->changes[i];
                const struct hosts_file *f = NULL;
                for (size_t j = 0; j < o->n_files && !f; j++)
                        if (strcmp(o->files[j].name, c->name) == 0)
                                f = &o->files[j];
                _cleanup_free_ char *label = NULL;
                if (asprintf(&label, "%s/%s", dir, c->name) < 0)
                        return -ENOMEM;
                r = text_diff_unified(c->old_content ? c->old_content : "", c->old_size, f ? f->content : "",
                                      f ? f->size : 0, c->old_content ? label : "/dev/null", f ? label : "/dev/null",
                                      diff_out);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(rep);
        return 0;
}
