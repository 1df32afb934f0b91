/* SPDX-License-Identifier: Apache-2.0 */
/* What all renderers share: the output set, in-memory files, TOML strings. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "hostsconfig/render-internal.h"

static const char *const format_names[_HOSTS_FORMAT_MAX] = {
        [HOSTS_FORMAT_CONTAINERD] = "containerd",
        [HOSTS_FORMAT_DOCKER] = "docker",
        [HOSTS_FORMAT_TALOS] = "talos",
        [HOSTS_FORMAT_REGISTRIES_CONF] = "registries-conf",
        [HOSTS_FORMAT_TALOS_LEGACY] = "talos-legacy",
};

int hosts_format_from_string(const char *s) {
        for (size_t i = 0; i < _HOSTS_FORMAT_MAX; i++)
                if (strcmp(s, format_names[i]) == 0)
                        return (int) i;
        return -EINVAL;
}

const char *hosts_format_to_string(enum hosts_format f) {
        return f < _HOSTS_FORMAT_MAX ? format_names[f] : NULL;
}

struct hosts_output *hosts_output_free(struct hosts_output *o) {
        if (!o)
                return NULL;
        for (size_t i = 0; i < o->n_files; i++) {
                free(o->files[i].name);
                free(o->files[i].content);
        }
        free(o->files);
        free(o);
        return NULL;
}

/* stdio's write hook (fopencookie): appends to the capped buffer. After
 * one failure every later write fails too, so no file is kept with a hole. */
static ssize_t render_buf_write(void *cookie, const char *data, size_t size) {
        struct render_buf *b = cookie;
        int r = b->error < 0 ? b->error : buf_append(&b->buf, data, size);
        if (r < 0) {
                b->error = r;
                errno = -r;
                return 0; /* fopencookie(3): 0 on error, never negative */
        }
        return (ssize_t) size;
}

int render_buf_open(struct render_buf *b) {
        /* Larger than hosts_apply() would read back: refused while rendering, whole. */
        *b = (struct render_buf) { .buf = BUF_INIT(HOSTS_FILE_MAX) };
        b->f = fopencookie(b, "w", (cookie_io_functions_t) { .write = render_buf_write });
        return b->f ? 0 : -ENOMEM;
}

void render_buf_discard(struct render_buf *b) {
        if (b->f)
                fclose(b->f);
        buf_free(&b->buf);
        *b = (struct render_buf) {};
}

int render_buf_finish(struct render_buf *b, struct hosts_output *o, const char *name) {
        bool failed = ferror(b->f) != 0;
        if (fclose(b->f) != 0) /* flushes the last bytes into buf */
                failed = true;
        b->f = NULL;
        int r = b->error < 0 ? b->error : failed ? -ENOMEM : 0;
        if (r >= 0)
                r = ARRAY_RESERVE(o->files, &o->cap_files, o->n_files + 1, 4, SIZE_MAX);
        _cleanup_free_ char *n = r >= 0 ? strdup(name) : NULL;
        size_t size = 0;
        char *content = n ? buf_take(&b->buf, &size) : NULL;
        render_buf_discard(b);
        if (!content)
                return r < 0 ? r : -ENOMEM;
        o->files[o->n_files++] = (struct hosts_file) { .name = TAKE_PTR(n), .content = content, .size = size };
        return 0;
}

void toml_string(FILE *f, const char *s) {
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                switch (*p) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\b':
                        fputs("\\b", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\f':
                        fputs("\\f", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                default:
                        /* Other control characters must be escaped; UTF-8 passes as is. */
                        if (*p < 0x20 || *p == 0x7f)
                                fprintf(f, "\\u%04X", *p);
                        else
                                fputc(*p, f);
                }
        }
        fputc('"', f);
}

void toml_key(FILE *f, const char *s) {
        bool bare = *s != '\0';
        for (const char *p = s; *p && bare; p++)
                bare = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                       *p == '-';
        if (bare)
                fputs(s, f);
        else
                toml_string(f, s);
}

const char *url_without_scheme(const char *url) {
        const char *p = strstr(url, "://");
        return p ? p + 3 : url;
}

bool url_is_http(const char *url) {
        return strncmp(url, "http://", 7) == 0;
}

const char *url_path(const char *url) {
        const char *rest = url_without_scheme(url);
        const char *slash = strchr(rest, '/');
        return slash ? slash : rest + strlen(rest);
}

const struct spec_endpoint *registry_origin_endpoint(const struct spec_registry *r) {
        for (size_t i = 0; i < r->n_endpoints; i++)
                if (r->endpoints[i].is_origin)
                        return &r->endpoints[i];
        return NULL;
}

int registry_origin_is_implied(const struct spec_registry *r) {
        if (!r->origin)
                return 1;
        _cleanup_free_ char *implied = spec_default_origin(r->host);
        if (!implied)
                return -ENOMEM;
        return strcmp(implied, r->origin) == 0;
}

char *hosts_agent_url(const char *listen_host, unsigned listen_port) {
        char *s = NULL;
        const char *host = listen_host;
        /* A wildcard listener is reached on loopback by a runtime on the same node. */
        if (strcmp(host, "0.0.0.0") == 0)
                host = "127.0.0.1";
        else if (strcmp(host, "::") == 0)
                host = "::1";
        bool v6 = strchr(host, ':') != NULL;
        if (asprintf(&s, "http://%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", listen_port) < 0)
                return NULL;
        return s;
}

int hosts_render(const struct spec *s, enum hosts_format format, const char *agent_url, struct hosts_output **ret,
                 struct error_list *notes) {
        static int (*const renderers[_HOSTS_FORMAT_MAX])(const struct spec *, const char *, struct hosts_output *,
                                                        struct error_list *) = {
                [HOSTS_FORMAT_CONTAINERD] = render_containerd,
                [HOSTS_FORMAT_DOCKER] = render_docker,
                [HOSTS_FORMAT_TALOS] = render_talos,
                [HOSTS_FORMAT_REGISTRIES_CONF] = render_registries_conf,
                [HOSTS_FORMAT_TALOS_LEGACY] = render_talos_legacy,
        };
        if (format >= _HOSTS_FORMAT_MAX)
                return -EINVAL;
        error_list_init(notes, hosts_format_to_string(format));
        struct hosts_output *o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        o->format = format;
        int r = renderers[format](s, agent_url, o, notes);
        if (r < 0) {
                hosts_output_free(o);
                return r;
        }
        *ret = o;
        return 0;
}
