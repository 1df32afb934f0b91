/* SPDX-License-Identifier: Apache-2.0 */
/* layerd: the node-local registry mirror agent. Subcommand dispatch, option
 * parsing and exit codes; this is the only file that decides an error is
 * fatal. Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. */
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "agent/log.h"
#include "agent/serve.h"
#include "common/error.h"
#include "common/parse.h"
#include "hostsconfig/spec.h"

#ifndef LAYERD_VERSION
#define LAYERD_VERSION "0.0.0-dev"
#endif

enum {
        EXIT_OK = 0,
        EXIT_RUNTIME = 1,
        EXIT_USAGE = 2,
};

static const char usage_main[] =
        "Usage: layerd COMMAND [OPTIONS]\n"
        "\n"
        "A node-local registry mirror agent for containerd.\n"
        "\n"
        "Commands:\n"
        "  serve          serve the OCI pull API on loopback (default spec built in)\n"
        "  check-config   validate a cluster spec and print its normalised form\n"
        "  version        print the version\n"
        "\n"
        "Run 'layerd COMMAND --help' for a command's options.\n"
        "Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.\n";

static const char usage_serve[] =
        "Usage: layerd serve [--spec FILE] [--listen HOST:PORT] [--cache-dir DIR] [--log-level LEVEL]\n"
        "\n"
        "Serve the OCI distribution pull API. Without --spec, a built-in spec is used:\n"
        "listen on 127.0.0.1:5080 and mirror docker.io, ghcr.io, quay.io, registry.k8s.io\n"
        "and gcr.io straight from their origins. Options override the spec.\n"
        "\n"
        "  --spec FILE          cluster spec (layerd form or Helm values), see docs/spec.md\n"
        "  --listen HOST:PORT   address to listen on (e.g. 127.0.0.1:5080, [::1]:5080)\n"
        "  --cache-dir DIR      absolute path of the cache directory\n"
        "  --log-level LEVEL    err, warning, notice, info (default) or debug\n"
        "  -h, --help           show this help\n";

static const char usage_check[] =
        "Usage: layerd check-config FILE\n"
        "\n"
        "Validate a cluster spec (layerd form or Helm values) and print the normalised\n"
        "model with every default spelled out. Errors are printed as FILE:LINE:COL: key: message.\n"
        "Exit status: 0 valid, 2 invalid or unreadable.\n"
        "\n"
        "  -h, --help   show this help\n";

static const char usage_version[] =
        "Usage: layerd version\n"
        "\n"
        "Print layerd's version and the versions of the libraries it runs on.\n"
        "\n"
        "  -h, --help   show this help\n";

/* The per-user default cache: root gets the system location, anyone else a
 * directory of their own (XDG base directory spec), so `make run` works unprivileged. */
static char *default_cache_dir(void) {
        char *s = NULL;
        if (geteuid() == 0)
                return strdup("/var/lib/layerd");
        const char *xdg = getenv("XDG_CACHE_HOME");
        if (xdg && xdg[0] == '/') {
                if (asprintf(&s, "%s/layerd", xdg) < 0)
                        return NULL;
                return s;
        }
        const char *home = getenv("HOME");
        if (home && home[0] == '/') {
                if (asprintf(&s, "%s/.cache/layerd", home) < 0)
                        return NULL;
                return s;
        }
        if (asprintf(&s, "/tmp/layerd-%u", (unsigned) geteuid()) < 0)
                return NULL;
        return s;
}

/* Parses only --help for commands without other options; returns -1 to go on,
 * or an exit code. */
static int no_options(int argc, char **argv, const char *usage, int want_args) {
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' }, {} };
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (c == 'h') {
                        fputs(usage, stdout);
                        return EXIT_OK;
                }
                fputs(usage, stderr);
                return EXIT_USAGE;
        }
        if (argc - optind != want_args) {
                fprintf(stderr, "layerd: %s\n", argc - optind < want_args ? "missing argument" : "too many arguments");
                fputs(usage, stderr);
                return EXIT_USAGE;
        }
        return -1;
}

static int report_errors(const struct error_list *errors) {
        (void) error_list_print(errors, stderr);
        size_t n = error_list_count(errors);
        fprintf(stderr, "%zu error%s\n", n, n == 1 ? "" : "s");
        return EXIT_USAGE;
}

static int cmd_check_config(int argc, char **argv) {
        _cleanup_(spec_freep) struct spec *spec = NULL;
        _cleanup_free_ char *cache_dir = NULL;
        struct error_list errors;
        int r = no_options(argc, argv, usage_check, 1);
        if (r >= 0)
                return r;
        cache_dir = default_cache_dir();
        if (!cache_dir)
                return EXIT_RUNTIME;
        r = spec_load_file(argv[optind], cache_dir, &spec, &errors);
        if (r == -ENOMEM) {
                fprintf(stderr, "layerd: out of memory\n");
                return EXIT_RUNTIME;
        }
        if (r < 0)
                return report_errors(&errors);
        if (printf("# %s: valid (%s form), normalised\n", argv[optind],
                   spec->format == SPEC_FORMAT_HELM ? "Helm values" : "layerd") < 0 ||
            spec_print(spec, stdout) < 0 || fflush(stdout) != 0) {
                fprintf(stderr, "layerd: cannot write to standard output\n");
                return EXIT_RUNTIME;
        }
        return EXIT_OK;
}

static int cmd_version(int argc, char **argv) {
        int r = no_options(argc, argv, usage_version, 0);
        if (r >= 0)
                return r;
        printf("layerd %s\nlibyaml %s\nlibmicrohttpd %s\n", LAYERD_VERSION, yaml_get_version_string(),
               MHD_get_version());
        return EXIT_OK;
}

static int cmd_serve(int argc, char **argv) {
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' },      { "listen", required_argument, NULL, 'l' },
                { "cache-dir", required_argument, NULL, 'c' }, { "log-level", required_argument, NULL, 'L' },
                { "help", no_argument, NULL, 'h' },            {},
        };
        _cleanup_(spec_freep) struct spec *spec = NULL;
        _cleanup_free_ char *default_dir = NULL, *listen_host = NULL;
        const char *spec_path = NULL, *listen = NULL, *cache_dir = NULL;
        uint16_t listen_port = 0;
        struct error_list errors;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        spec_path = optarg;
                        break;
                case 'l':
                        listen = optarg;
                        break;
                case 'c':
                        cache_dir = optarg;
                        break;
                case 'L':
                        r = log_level_from_string(optarg);
                        if (r < 0) {
                                fprintf(stderr, "layerd serve: --log-level: unknown level \"%s\"\n", optarg);
                                return EXIT_USAGE;
                        }
                        agent_log_set_max_level(r);
                        break;
                case 'h':
                        fputs(usage_serve, stdout);
                        return EXIT_OK;
                default:
                        fputs(usage_serve, stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind != argc) {
                fprintf(stderr, "layerd serve: unexpected argument \"%s\"\n", argv[optind]);
                return EXIT_USAGE;
        }
        if (listen) {
                r = parse_host_port(listen, true, &listen_host, &listen_port);
                if (r < 0) {
                        fprintf(stderr, "layerd serve: --listen: not a HOST:PORT address: \"%s\"\n", listen);
                        return EXIT_USAGE;
                }
        }
        if (cache_dir && cache_dir[0] != '/') {
                fprintf(stderr, "layerd serve: --cache-dir: not an absolute path: \"%s\"\n", cache_dir);
                return EXIT_USAGE;
        }
        default_dir = default_cache_dir();
        if (!default_dir)
                return EXIT_RUNTIME;
        r = spec_path ? spec_load_file(spec_path, default_dir, &spec, &errors)
                      : spec_load_default(default_dir, &spec, &errors);
        if (r == -ENOMEM) {
                log_error("out of memory loading the spec");
                return EXIT_RUNTIME;
        }
        if (r < 0)
                return report_errors(&errors);

        struct serve_config cfg = {
                .spec = spec,
                .listen_host = listen_host ? listen_host : spec->agent.listen_host,
                .listen_port = listen_host ? listen_port : spec->agent.listen_port,
                .cache_dir = cache_dir ? cache_dir : spec->agent.cache_dir,
        };
        r = serve_run(&cfg);
        return r < 0 ? EXIT_RUNTIME : EXIT_OK;
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                int (*run)(int argc, char **argv);
        } commands[] = {
                { "serve", cmd_serve },
                { "check-config", cmd_check_config },
                { "version", cmd_version },
        };

        if (argc < 2) {
                fputs(usage_main, stderr);
                return EXIT_USAGE;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
                fputs(usage_main, stdout);
                return EXIT_OK;
        }
        if (strcmp(argv[1], "--version") == 0)
                return cmd_version(1, argv);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        /* getopt sees the command as argv[0]. */
                        return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "layerd: unknown command \"%s\"\n\n", argv[1]);
        fputs(usage_main, stderr);
        return EXIT_USAGE;
}
