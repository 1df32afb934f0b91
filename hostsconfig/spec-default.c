/* SPDX-License-Identifier: Apache-2.0 */
/* The compiled-in spec `layerd serve` runs on when given none: loopback only,
 * the big public registries each straight to its origin. Kept as YAML and run
 * through the same parser, so the default can never disagree with the schema. */
#include <errno.h>
#include <string.h>

#include "common/macro.h"
#include "hostsconfig/spec.h"

const char spec_default_yaml[] =
        "version: 1\n"
        "agent:\n"
        "  listen: 127.0.0.1:5080\n"
        "  cache_max_size: 10GiB\n"
        "  default_registry: docker.io\n"
        "registries:\n"
        "  docker.io: {}\n"
        "  ghcr.io: {}\n"
        "  quay.io: {}\n"
        "  registry.k8s.io: {}\n"
        "  gcr.io: {}\n";

int spec_load_default(const char *cache_dir, struct spec **ret, struct error_list *errors) {
        int r = spec_parse("<builtin>", spec_default_yaml, strlen(spec_default_yaml), cache_dir, ret, errors);
        if (r == 0)
                (*ret)->format = SPEC_FORMAT_BUILTIN;
        return r;
}
