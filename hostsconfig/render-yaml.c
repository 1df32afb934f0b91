/* SPDX-License-Identifier: Apache-2.0 */
/* The event calls of libyaml's emitter, folded so that renderers read like the YAML they write. */
#include <errno.h>
#include <string.h>

#include "hostsconfig/render-internal.h"
#include "hostsconfig/render-yaml.h"

int render_yaml_open(struct render_yaml *m, FILE *f) {
        yaml_event_t ev;
        *m = (struct render_yaml) { .ok = true };
        if (!yaml_emitter_initialize(&m->e))
                return -ENOMEM;
        yaml_emitter_set_output_file(&m->e, f);
        yaml_emitter_set_unicode(&m->e, 1);
        yaml_emitter_set_width(&m->e, -1);
        m->ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&m->e, &ev);
        return 0;
}

void render_yaml_document(struct render_yaml *m, bool start) {
        yaml_event_t ev;
        /* libyaml writes "---" before every document but the first by itself. */
        if (m->ok)
                m->ok = (start ? yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1)
                               : yaml_document_end_event_initialize(&ev, 1)) &&
                        yaml_emitter_emit(&m->e, &ev);
}

void render_yaml_scalar(struct render_yaml *m, const char *s, yaml_scalar_style_t style) {
        yaml_event_t ev;
        if (m->ok)
                m->ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *) s, (int) strlen(s), 1, 1, style) &&
                        yaml_emitter_emit(&m->e, &ev);
}

void render_yaml_pair(struct render_yaml *m, const char *key, const char *value) {
        render_yaml_scalar(m, key, YAML_ANY_SCALAR_STYLE);
        render_yaml_scalar(m, value, YAML_ANY_SCALAR_STYLE);
}

void render_yaml_map(struct render_yaml *m, bool start) {
        yaml_event_t ev;
        if (m->ok)
                m->ok = (start ? yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE)
                               : yaml_mapping_end_event_initialize(&ev)) &&
                        yaml_emitter_emit(&m->e, &ev);
}

void render_yaml_seq(struct render_yaml *m, bool start) {
        yaml_event_t ev;
        if (m->ok)
                m->ok = (start ? yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE)
                               : yaml_sequence_end_event_initialize(&ev)) &&
                        yaml_emitter_emit(&m->e, &ev);
}

int render_yaml_close(struct render_yaml *m) {
        yaml_event_t ev;
        if (m->ok)
                m->ok = yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&m->e, &ev) &&
                        yaml_emitter_flush(&m->e);
        yaml_emitter_delete(&m->e);
        return m->ok ? 0 : -ENOMEM;
}

int render_yaml_file(struct hosts_output *o, const char *name, const char *comment,
                     int (*emit)(struct render_yaml *m, void *userdata), void *userdata) {
        struct render_buf b;
        struct render_yaml m;
        int r = render_buf_open(&b);
        if (r < 0)
                return r;
        fprintf(b.f, "%s: %s\n", HOSTS_MANAGED_MARKER, comment);
        r = render_yaml_open(&m, b.f);
        if (r < 0) {
                render_buf_discard(&b);
                return r;
        }
        r = emit(&m, userdata);
        int k = render_yaml_close(&m);
        if (r < 0 || k < 0) {
                render_buf_discard(&b);
                return r < 0 ? r : k;
        }
        return render_buf_finish(&b, o, name);
}
