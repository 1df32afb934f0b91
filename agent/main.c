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

#include "agent/admin.h"
#include "agent/agent.h"
#include "agent/doctor.h"
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
        "  hosts          write containerd hosts.toml files (and other runtimes' configs)\n"
        "  cache          look after the blob cache: stats, ls, verify, gc, check\n"
        "  fetch          fetch a manifest or blob through the spec's endpoint chains\n"
        "  prefetch       fetch the spec's prefetch list into the cache, in the foreground\n"
        "  status         the running agent on one screen (through its admin socket)\n"
        "  doctor         check that this node's pulls go through layerd (containerd's config, hosts files)\n"
        "  check-config   validate a cluster spec and print its normalised form\n"
        "  version        print the version\n"
        "\n"
        "Run 'layerd COMMAND --help' for a command's options.\n"
        "Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.\n";

static const char usage_serve[] =
        "Usage: layerd serve [--spec FILE] [--listen HOST:PORT] [--cache-dir DIR] [--write-hosts DIR]\n"
        "                    [--metrics-listen ADDR:PORT] [--containerd-socket PATH]\n"
        "                    [--containerd-config FILE] [--log-level LEVEL] [--no-watch]\n"
        "                    [--admin-socket PATH]\n"
        "\n"
        "Serve the OCI distribution pull API. Without --spec, a built-in spec is used:\n"
        "listen on 127.0.0.1:5080 and mirror docker.io, ghcr.io, quay.io, registry.k8s.io\n"
        "and gcr.io straight from their origins. Options override the spec.\n"
        "\n"
        "  --spec FILE          cluster spec (layerd form or Helm values), see docs/spec.md\n"
        "  --listen HOST:PORT   address to listen on (e.g. 127.0.0.1:5080, [::1]:5080)\n"
        "  --cache-dir DIR      absolute path of the cache directory\n"
        "  --metrics-listen ADDR:PORT\n"
        "                       also serve /metrics, /healthz and /readyz (and nothing\n"
        "                       else) on ADDR:PORT, e.g. 0.0.0.0:9580 or the node's\n"
        "                       address; an IPv6 address may come without brackets\n"
        "                       ($(HOST_IP):9580 on Kubernetes). Overrides\n"
        "                       agent.metrics_listen\n"
        "  --write-hosts DIR    write containerd hosts.toml files under DIR at start-up and\n"
        "                       after each SIGHUP (which also reloads the spec)\n"
        "  --containerd-socket PATH\n"
        "                       with --write-hosts: containerd's socket, asked for its\n"
        "                       version when hosts.containerd_version is auto (default\n"
        "                       " AGENT_CONTAINERD_SOCKET_DEFAULT "; then `containerd --version`,\n"
        "                       then the containerd 1.6 rules)\n"
        "  --admin-socket PATH  the admin API's unix socket (default: agent.admin_socket,\n"
        "                       else CACHE_DIR/admin.sock); '' for none\n"
        "  --log-level LEVEL    err, warning, notice, info (default) or debug\n"
        "  --no-watch           reload the spec on SIGHUP only (by default also when the\n"
        "                       --spec file's content changes, e.g. a ConfigMap update)\n"
        "  -h, --help           show this help\n";

static const char usage_hosts[] =
        "Usage: layerd hosts [--spec FILE] --dir DIR [--format FORMAT] [--listen HOST:PORT]\n"
        "                    [--containerd-socket PATH] [--dry-run] [--diff] [--prune]\n"
        "\n"
        "Render the runtimes' mirror configs from the cluster spec and write them safely\n"
        "(each file atomically; unchanged files are left alone).\n"
        "\n"
        "  --spec FILE          cluster spec; the built-in one when absent\n"
        "  --dir DIR            where to write: containerd's hosts directory (e.g.\n"
        "                       /etc/containerd/certs.d); without it, a single-file format\n"
        "                       is printed to standard output\n"
        "  --format FORMAT      containerd (default: DIR/<registry>/hosts.toml), docker\n"
        "                       (daemon.json fragment, docker.io only), talos (Talos 1.12+\n"
        "                       RegistryMirrorConfig and RegistryTLSConfig documents, one\n"
        "                       multi-document patch), talos-legacy (the machine.registries\n"
        "                       patch of older Talos) or registries-conf (CRI-O, podman)\n"
        "  --listen HOST:PORT   where layerd listens, if not the spec's agent.listen\n"
        "  --containerd-socket PATH\n"
        "                       containerd's socket, asked for its version when\n"
        "                       hosts.containerd_version is auto (default\n"
        "                       " AGENT_CONTAINERD_SOCKET_DEFAULT "; then `containerd --version`,\n"
        "                       then the containerd 1.6 rules, said in each file)\n"
        "  --dry-run            write nothing; report what would change\n"
        "  --diff               print a unified diff of each change\n"
        "  --prune              remove registry directories layerd wrote that the spec no\n"
        "                       longer names (never a file layerd did not write)\n"
        "  -h, --help           show this help\n"
        "\n"
        "Prints a summary such as \"3 written, 5 unchanged, 1 pruned\". Exit status: 0 ok,\n"
        "1 write failure, 2 usage error, bad spec or unwritable directory (nothing changed).\n";

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
        struct error_list errors;
        int r = no_options(argc, argv, usage_check, 1);
        if (r >= 0)
                return r;
        r = agent_load_spec(argv[optind], &spec, &errors);
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
        printf("layerd %s\nlibyaml %s\nlibmicrohttpd %s\n", LAYERD_VERSION, spec_yaml_version(),
               MHD_get_version());
        return EXIT_OK;
}

/* --metrics-listen: HOST:PORT as agent.metrics_listen, or an IPv6 address
 * without brackets and a port after its last colon, which the port being
 * required makes unambiguous. The DaemonSet writes $(HOST_IP):9580, and
 * status.hostIP is such an address on an IPv6 node. */
static int parse_metrics_listen(const char *s, char **ret_host, uint16_t *ret_port) {
        int r = parse_host_port(s, true, ret_host, ret_port);
        const char *colon = strrchr(s, ':');
        if (r != -EINVAL || s[0] == '[' || !colon || colon == strchr(s, ':'))
                return r;
        _cleanup_free_ char *bracketed = NULL;
        if (asprintf(&bracketed, "[%.*s]%s", (int) (colon - s), s, colon) < 0)
                return -ENOMEM;
        return parse_host_port(bracketed, true, ret_host, ret_port);
}

static int cmd_serve(int argc, char **argv) {
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' },      { "listen", required_argument, NULL, 'l' },
                { "cache-dir", required_argument, NULL, 'c' }, { "log-level", required_argument, NULL, 'L' },
                { "write-hosts", required_argument, NULL, 'w' }, { "help", no_argument, NULL, 'h' },
                { "containerd-socket", required_argument, NULL, 'S' },
                { "containerd-config", required_argument, NULL, 'C' },
                { "metrics-listen", required_argument, NULL, 'M' },
                { "no-watch", no_argument, NULL, 'W' },
                { "admin-socket", required_argument, NULL, 'a' },
                {},
        };
        _cleanup_(spec_freep) struct spec *spec = NULL;
        _cleanup_free_ char *listen_host = NULL, *metrics_host = NULL;
        struct serve_config cfg = { .containerd_socket = AGENT_CONTAINERD_SOCKET_DEFAULT, .version = LAYERD_VERSION,
                                    .containerd_config = DOCTOR_DEFAULT_CONTAINERD_CONFIG };
        struct error_list errors;
        int c, r;

        r = serve_block_signals();
        if (r < 0) {
                fprintf(stderr, "layerd serve: cannot set up signals: %s\n", strerror(-r));
                return EXIT_RUNTIME;
        }
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        cfg.spec_path = optarg;
                        break;
                case 'l':
                        listen_host = mfree(listen_host); /* the last --listen wins */
                        r = parse_host_port(optarg, true, &listen_host, &cfg.listen_port);
                        if (r < 0) {
                                fprintf(stderr, "layerd serve: --listen: not a HOST:PORT address: \"%s\"\n", optarg);
                                return EXIT_USAGE;
                        }
                        cfg.listen_host = listen_host;
                        break;
                case 'M':
                        metrics_host = mfree(metrics_host);
                        r = parse_metrics_listen(optarg, &metrics_host, &cfg.metrics_port);
                        if (r < 0) {
                                fprintf(stderr, "layerd serve: --metrics-listen: not an ADDR:PORT address: \"%s\"\n",
                                        optarg);
                                return EXIT_USAGE;
                        }
                        cfg.metrics_host = metrics_host;
                        break;
                case 'c':
                        if (optarg[0] != '/') {
                                fprintf(stderr, "layerd serve: --cache-dir: not an absolute path: \"%s\"\n", optarg);
                                return EXIT_USAGE;
                        }
                        cfg.cache_dir = optarg;
                        break;
                case 'w':
                        cfg.write_hosts_dir = optarg;
                        break;
                case 'S':
                        cfg.containerd_socket = optarg;
                        break;
                case 'C':
                        cfg.containerd_config = optarg;
                        break;
                case 'W':
                        cfg.no_watch = true;
                        break;
                case 'a':
                        if (optarg[0] != '\0' && (optarg[0] != '/' || strlen(optarg) > SPEC_ADMIN_SOCKET_PATH_MAX)) {
                                fprintf(stderr, "layerd serve: --admin-socket: not an absolute path of at most %d "
                                                "bytes, or '': \"%s\"\n", SPEC_ADMIN_SOCKET_PATH_MAX, optarg);
                                return EXIT_USAGE;
                        }
                        cfg.admin_socket = optarg;
                        break;
                case 'L':
                        if (!agent_log_level_option("serve", optarg))
                                return EXIT_USAGE;
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
        /* Hashed before loading: a change meanwhile is one reload too many, never one lost. */
        struct spec_print seen;
        if (cfg.spec_path) {
                spec_watch_print(cfg.spec_path, &seen);
                cfg.spec_seen = &seen;
        }
        r = agent_load_spec(cfg.spec_path, &spec, &errors);
        if (r == -ENOMEM) {
                log_error("out of memory loading the spec");
                return EXIT_RUNTIME;
        }
        if (r < 0)
                return report_errors(&errors);
        /* Only hosts files depend on the version: no detection without them. */
        if (cfg.write_hosts_dir && agent_resolve_spec_version(spec, cfg.containerd_socket, NULL) < 0) {
                log_error("out of memory detecting containerd's version");
                return EXIT_RUNTIME;
        }
        r = serve_run(&cfg, &spec);
        if (r == SERVE_CONFIG_ERROR)
                return EXIT_USAGE;
        return r < 0 ? EXIT_RUNTIME : EXIT_OK;
}

static int cmd_hosts(int argc, char **argv) {
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' },   { "dir", required_argument, NULL, 'd' },
                { "format", required_argument, NULL, 'f' }, { "listen", required_argument, NULL, 'l' },
                { "dry-run", no_argument, NULL, 'n' },      { "diff", no_argument, NULL, 'D' },
                { "prune", no_argument, NULL, 'p' },        { "help", no_argument, NULL, 'h' },
                { "containerd-socket", required_argument, NULL, 'S' },
                {},
        };
        _cleanup_(spec_freep) struct spec *spec = NULL;
        _cleanup_(hosts_report_freep) struct hosts_report *rep = NULL;
        _cleanup_free_ char *listen_host = NULL, *agent_url = NULL;
        const char *spec_path = NULL, *dir = NULL, *containerd_socket = AGENT_CONTAINERD_SOCKET_DEFAULT;
        enum hosts_format format = HOSTS_FORMAT_CONTAINERD;
        uint16_t listen_port = 0;
        unsigned flags = 0;
        bool diff = false;
        struct error_list errors, notes;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        spec_path = optarg;
                        break;
                case 'd':
                        dir = optarg;
                        break;
                case 'f':
                        r = hosts_format_from_string(optarg);
                        if (r < 0) {
                                fprintf(stderr, "layerd hosts: --format: unknown format \"%s\" "
                                                "(containerd, docker, talos, talos-legacy or registries-conf)\n", optarg);
                                return EXIT_USAGE;
                        }
                        format = (enum hosts_format) r;
                        break;
                case 'l':
                        listen_host = mfree(listen_host); /* the last --listen wins */
                        if (parse_host_port(optarg, true, &listen_host, &listen_port) < 0) {
                                fprintf(stderr, "layerd hosts: --listen: not a HOST:PORT address: \"%s\"\n", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case 'n':
                        flags |= HOSTS_APPLY_DRY_RUN;
                        break;
                case 'D':
                        diff = true;
                        break;
                case 'p':
                        flags |= HOSTS_APPLY_PRUNE;
                        break;
                case 'S':
                        containerd_socket = optarg;
                        break;
                case 'h':
                        fputs(usage_hosts, stdout);
                        return EXIT_OK;
                default:
                        fputs(usage_hosts, stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind != argc) {
                fprintf(stderr, "layerd hosts: unexpected argument \"%s\"\n", argv[optind]);
                return EXIT_USAGE;
        }
        if (!dir && (format == HOSTS_FORMAT_CONTAINERD || flags != 0 || diff)) {
                fprintf(stderr, "layerd hosts: --dir is required%s\n",
                        format == HOSTS_FORMAT_CONTAINERD ? " for the containerd format" : " with --dry-run, --diff or --prune");
                return EXIT_USAGE;
        }
        r = agent_load_spec(spec_path, &spec, &errors);
        if (r == -ENOMEM)
                return EXIT_RUNTIME;
        if (r < 0)
                return report_errors(&errors);
        /* Only containerd's files depend on the version. */
        if (format == HOSTS_FORMAT_CONTAINERD && agent_resolve_spec_version(spec, containerd_socket, NULL) < 0)
                return EXIT_RUNTIME;
        agent_url = hosts_agent_url(listen_host ? listen_host : spec->agent.listen_host,
                                    listen_host ? listen_port : spec->agent.listen_port);
        if (!agent_url)
                return EXIT_RUNTIME;

        if (!dir) {
                /* A single-file format to standard output, to merge by hand. */
                _cleanup_(hosts_output_freep) struct hosts_output *o = NULL;
                if (hosts_render(spec, format, agent_url, &o, &notes) < 0)
                        return EXIT_RUNTIME;
                for (size_t i = 0; i < notes.n; i++)
                        fprintf(stderr, "note: %s\n", notes.items[i].message);
                for (size_t i = 0; i < o->n_files; i++)
                        fwrite(o->files[i].content, 1, o->files[i].size, stdout);
                return fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME;
        }
        r = agent_write_hosts(spec, agent_url, format, dir, flags, diff ? stdout : NULL, &rep, &notes, &errors);
        for (size_t i = 0; i < notes.n; i++)
                fprintf(stderr, "note: %s\n", notes.items[i].message);
        if (r == -ENOMEM)
                return EXIT_RUNTIME;
        if (r < 0) {
                (void) error_list_print(&errors, stderr);
                /* A problem found before writing changed nothing: a usage or
                 * setup error. One met while writing is a runtime failure. */
                return r == -EIO ? EXIT_RUNTIME : EXIT_USAGE;
        }
        for (size_t i = 0; i < rep->n_changes; i++)
                if (rep->changes[i].was_unmanaged && rep->changes[i].kind == HOSTS_WRITTEN)
                        fprintf(stderr, "note: %s/%s: %s a file layerd did not write\n", dir, rep->changes[i].name,
                                (flags & HOSTS_APPLY_DRY_RUN) ? "would replace" : "replaced");
        printf("%s%zu written, %zu unchanged, %zu pruned\n", (flags & HOSTS_APPLY_DRY_RUN) ? "dry run: " : "",
               rep->count[HOSTS_WRITTEN], rep->count[HOSTS_UNCHANGED], rep->count[HOSTS_PRUNED]);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME;
}

static const char usage_status[] =
        "Usage: layerd status [--spec FILE] [--cache-dir DIR] [--admin-socket PATH] [--format text|json]\n"
        "\n"
        "The running agent on one screen: version and uptime, the cache against its\n"
        "bounds, hit ratio, downloads in flight, prefetch rounds, and each endpoint's\n"
        "circuit breaker and last error. Asked through the agent's admin socket.\n"
        "\n"
        "  --spec FILE          the cluster spec naming the socket (agent.admin_socket)\n"
        "                       or the cache (agent.cache_dir); default: the built-in one\n"
        "  --cache-dir DIR      the agent's cache directory (its socket: DIR/admin.sock)\n"
        "  --admin-socket PATH  the admin socket itself\n"
        "  --format FORMAT      text (default) or json\n"
        "  -h, --help           show this help\n"
        "\n"
        "Exit status: 0 ok, 1 no agent answers (or it failed), 2 usage or configuration error.\n";

static int cmd_status(int argc, char **argv) {
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' },         { "cache-dir", required_argument, NULL, 'c' },
                { "admin-socket", required_argument, NULL, 'a' }, { "format", required_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },               {},
        };
        const char *spec_path = NULL, *dir = NULL, *admin_socket = NULL;
        bool json = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        spec_path = optarg;
                        break;
                case 'c':
                        dir = optarg;
                        break;
                case 'a':
                        admin_socket = optarg;
                        break;
                case 'f':
                        if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
                                fprintf(stderr, "layerd status: --format: text or json, not \"%s\"\n", optarg);
                                return EXIT_USAGE;
                        }
                        json = strcmp(optarg, "json") == 0;
                        break;
                case 'h':
                        fputs(usage_status, stdout);
                        return EXIT_OK;
                default:
                        fputs(usage_status, stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind != argc) {
                fprintf(stderr, "layerd status: unexpected argument \"%s\"\n", argv[optind]);
                return EXIT_USAGE;
        }
        _cleanup_(spec_freep) struct spec *spec = NULL;
        struct error_list errors;
        int r = agent_load_spec(spec_path, &spec, &errors);
        if (r == -ENOMEM)
                return EXIT_RUNTIME;
        if (r < 0)
                return report_errors(&errors);
        char sock[SPEC_ADMIN_SOCKET_PATH_MAX + 1];
        r = admin_socket_path(spec, dir ? dir : spec->agent.cache_dir, admin_socket, sock, sizeof(sock));
        if (r <= 0) {
                fprintf(stderr, "layerd status: %s\n", r < 0 ? "the admin socket's path is too long"
                                                             : "no admin socket (agent.admin_socket is '')");
                return EXIT_USAGE;
        }
        r = admin_remote(sock, "GET", json ? "/v1/status?format=json" : "/v1/status?format=text", "layerd status");
        if (r == ADMIN_NO_AGENT) {
                fprintf(stderr, "layerd status: no agent is running: nothing answers on \"%s\"\n", sock);
                return EXIT_RUNTIME;
        }
        return r;
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                int (*run)(int argc, char **argv);
        } commands[] = {
                { "serve", cmd_serve },
                { "hosts", cmd_hosts },
                { "cache", agent_cmd_cache },
                { "fetch", agent_cmd_fetch },
                { "prefetch", agent_cmd_prefetch },
                { "status", cmd_status },
                { "doctor", agent_cmd_doctor },
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
        /* libcurl's global set-up, before any thread exists. */
        if (fallback_global_init() < 0) {
                fputs("layerd: cannot initialise libcurl\n", stderr);
                return EXIT_RUNTIME;
        }
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        /* getopt sees the command as argv[0]. */
                        return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "layerd: unknown command \"%s\"\n\n", argv[1]);
        fputs(usage_main, stderr);
        return EXIT_USAGE;
}
