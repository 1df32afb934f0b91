/* SPDX-License-Identifier: Apache-2.0 */
/* `layerd fetch`: one or more requests through the spec's endpoint chains,
 * the way the agent makes them on a cache miss, from the command line. For
 * operators ("does this node reach its mirrors, and which one answers?")
 * and for the integration tests of fallback/. Nothing is cached. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/log.h"
#include "common/digest.h"
#include "common/fsutil.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/reference.h"
#include "common/time.h"

static const char usage_fetch[] =
        "Usage: layerd fetch [--spec FILE] [--head] [--blob DIGEST] [--accept TYPES] [--output FILE]\n"
        "                    [--log-level LEVEL] REFERENCE...\n"
        "\n"
        "Fetch manifests (or a blob) through the spec's endpoint chains, as the agent\n"
        "does on a cache miss, and print one line per request: status, the endpoint that\n"
        "answered, digest, media type, size, requests made and milliseconds taken.\n"
        "Every byte is verified against its digest. Nothing is cached. Requests run in\n"
        "order in one process, so circuit breakers carry over from one to the next.\n"
        "\n"
        "  REFERENCE          registry/repository:tag or ...@digest (docker.io names as usual)\n"
        "  --spec FILE        the cluster spec (default: the built-in one)\n"
        "  --head             HEAD requests: no body\n"
        "  --blob DIGEST      fetch this blob from each REFERENCE's repository instead\n"
        "  --accept TYPES     the manifest Accept header (default: OCI and Docker, index and image)\n"
        "  --output FILE      write the (last) body to FILE\n"
        "  --log-level LEVEL  err, warning, notice, info (default) or debug; logs go to stderr\n"
        "  -h, --help         show this help\n"
        "\n"
        "Exit status: 0 every request answered 200 and verified, 1 otherwise, 2 usage or\n"
        "configuration error.\n";

struct blob_out {
        int fd;
        struct digester *h;
};

static int out_write(void *userdata, const void *data, size_t size) {
        struct blob_out *o = userdata;
        int r = digester_update(o->h, data, size);
        if (r >= 0 && o->fd >= 0)
                r = write_all(o->fd, data, size);
        return r;
}

static int fetch_one(struct fallback *fb, const char *arg, bool head, const char *blob, const char *accept,
                     const char *output) {
        struct reference ref = {};
        const char *why = NULL;
        int r = reference_parse(arg, true, &ref, &why);
        if (r < 0) {
                fprintf(stderr, "layerd fetch: \"%s\": %s\n", arg, why ? why : strerror(-r));
                return 2;
        }
        struct digest want = {};
        if (blob && digest_parse(blob, &want) < 0) {
                reference_done(&ref);
                fprintf(stderr, "layerd fetch: --blob: not a digest: \"%s\"\n", blob);
                return 2;
        }
        _cleanup_close_ int fd = -1;
        if (output && !head) {
                fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd < 0) {
                        fprintf(stderr, "layerd fetch: %s: %m\n", output);
                        reference_done(&ref);
                        return 1;
                }
        }
        struct blob_out bo = { .fd = fd };
        if (blob && digester_new(want.algorithm, &bo.h) < 0) {
                reference_done(&ref);
                return 1;
        }
        struct sink sink = { .userdata = &bo, .write = out_write };
        struct fallback_request req = {
                .registry = ref.domain,
                .repository = ref.path,
                .kind = blob ? FALLBACK_BLOB : FALLBACK_MANIFEST,
                .reference = blob ? blob : ref.digest ? ref.digest : ref.tag,
                .head = head,
                .accept = accept,
                .sink = blob && !head ? &sink : NULL,
        };
        struct fallback_response resp;
        uint64_t t0 = time_now_ms();
        r = fallback_fetch(fb, &req, &resp);
        uint64_t ms = time_now_ms() - t0;
        int ret = 1;
        const char *verified = "-";
        if (r >= 0 && resp.status == 200 && blob && !head) {
                struct digest got;
                bool same = digester_final(bo.h, &got) >= 0 && digest_equal(&got, &want);
                verified = same ? "yes" : "NO";
                ret = same ? 0 : 1;
        } else if (r >= 0 && resp.status == 200) {
                verified = head ? "-" : "yes"; /* fallback_fetch verified the manifest */
                ret = 0;
                if (fd >= 0 && resp.body && write_all(fd, resp.body, (size_t) resp.size) < 0) {
                        fprintf(stderr, "layerd fetch: %s: %m\n", output);
                        ret = 1;
                }
        }
        char d[DIGEST_STRING_MAX] = "-";
        if (resp.has_digest)
                digest_to_string(&resp.digest, d);
        if (r == -ENOENT) {
                printf("%s status=- error=\"registry %s is not mirrored by the spec\"\n", arg, ref.domain);
                fprintf(stderr, "layerd fetch: registry %s is not mirrored by the spec (no request was made)\n",
                        ref.domain);
        }
        else if (r < 0)
                printf("%s status=- error=\"%s\"\n", arg, strerror(-r));
        else
                printf("%s status=%d endpoint=%s digest=%s media_type=%s size=%" PRId64 " verified=%s requests=%u ms=%" PRIu64
                       "%s%s%s\n",
                       arg, resp.status, resp.endpoint ? resp.endpoint : "-", d, resp.media_type ? resp.media_type : "-",
                       resp.size, verified, resp.attempts, ms, resp.status != 200 ? " error=\"" : "",
                       resp.status != 200 ? resp.error : "", resp.status != 200 ? "\"" : "");
        fflush(stdout);
        fallback_response_done(&resp);
        digester_free(bo.h);
        reference_done(&ref);
        return r == -ENOENT ? 2 : ret;
}

int agent_cmd_fetch(int argc, char **argv) {
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' },   { "head", no_argument, NULL, 'H' },
                { "blob", required_argument, NULL, 'b' },   { "accept", required_argument, NULL, 'a' },
                { "output", required_argument, NULL, 'o' }, { "log-level", required_argument, NULL, 'L' },
                { "help", no_argument, NULL, 'h' },         {},
        };
        const char *spec_path = NULL, *blob = NULL, *accept = NULL, *output = NULL;
        bool head = false;
        int c, r;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        spec_path = optarg;
                        break;
                case 'H':
                        head = true;
                        break;
                case 'b':
                        blob = optarg;
                        break;
                case 'a':
                        accept = optarg;
                        break;
                case 'o':
                        output = optarg;
                        break;
                case 'L':
                        if (!agent_log_level_option("fetch", optarg))
                                return 2;
                        break;
                case 'h':
                        fputs(usage_fetch, stdout);
                        return 0;
                default:
                        fputs(usage_fetch, stderr);
                        return 2;
                }
        }
        if (optind == argc) {
                fputs(usage_fetch, stderr);
                return 2;
        }
        _cleanup_(spec_freep) struct spec *spec = NULL;
        struct error_list errors;
        r = agent_load_spec(spec_path, &spec, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                return r == -ENOMEM ? 1 : 2;
        }
        _cleanup_(fallback_freep) struct fallback *fb = NULL;
        error_list_init(&errors, spec->source);
        r = agent_fallback_new(spec, &fb, &errors);
        if (r < 0) {
                error_list_print(&errors, stderr);
                return r == -EINVAL ? 2 : 1;
        }
        int status = 0;
        for (int i = optind; i < argc; i++) {
                int k = fetch_one(fb, argv[i], head, blob, accept, output);
                if (k > status)
                        status = k;
        }
        return status;
}
