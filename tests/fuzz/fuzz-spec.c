/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the cluster spec parser (both forms) and the renderers fed
 * from it. Besides "no crash, no leak", it checks the round-trip property:
 * whatever parses prints to a spec that parses again and prints identically;
 * and every renderer is deterministic on it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostsconfig/hosts.h"
#include "hostsconfig/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *print(const struct spec *s, size_t *len) {
        char *out = NULL;
        FILE *f = open_memstream(&out, len);
        if (!f)
                abort();
        if (spec_print(s, f) < 0)
                abort();
        fclose(f);
        return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct spec *s = NULL, *again = NULL;
        struct error_list errors;
        char buf[1024];

        if (spec_parse("fuzz.yaml", (const char *) data, size, "/var/lib/layerd", &s, &errors) < 0) {
                /* Every stored error must format. */
                for (size_t i = 0; i < errors.n; i++)
                        if (error_list_format(&errors, i, buf, sizeof(buf)) < 0)
                                abort();
                return 0;
        }
        size_t len1, len2;
        char *out1 = print(s, &len1);
        if (spec_parse("printed.yaml", out1, len1, "/elsewhere", &again, &errors) < 0) {
                fprintf(stderr, "printed spec does not parse:\n%s\n", out1);
                error_list_print(&errors, stderr);
                abort();
        }
        char *out2 = print(again, &len2);
        if (len1 != len2 || memcmp(out1, out2, len1) != 0) {
                fprintf(stderr, "round trip differs:\n%s\n---\n%s\n", out1, out2);
                abort();
        }
        for (int f = 0; f < _HOSTS_FORMAT_MAX; f++) {
                struct hosts_output *a = NULL, *b = NULL;
                struct error_list notes;
                if (hosts_render(s, (enum hosts_format) f, "http://127.0.0.1:5080", &a, &notes) < 0 ||
                    hosts_render(again, (enum hosts_format) f, "http://127.0.0.1:5080", &b, &notes) < 0)
                        abort();
                /* The printed spec renders to the very same files. */
                if (a->n_files != b->n_files)
                        abort();
                for (size_t i = 0; i < a->n_files; i++)
                        if (strcmp(a->files[i].name, b->files[i].name) != 0 || a->files[i].size != b->files[i].size ||
                            memcmp(a->files[i].content, b->files[i].content, a->files[i].size) != 0)
                                abort();
                hosts_output_free(a);
                hosts_output_free(b);
        }
        free(out1);
        free(out2);
        spec_free(again);
        spec_free(s);
        return 0;
}
