/* SPDX-License-Identifier: Apache-2.0 */
/* `layerd serve`: the process around the pull API (agent/http.c, pull.c): the
 * cache, the upstream client, the HTTP daemon, signals, reloads, hosts
 * files and the service manager. */
#include "agent/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/admin.h"
#include "agent/admit.h"
#include "agent/agent.h"
#include "agent/doctor.h"
#include "agent/log.h"
#include "agent/metrics-listen.h"
#include "agent/notify.h"
#include "agent/prefetch.h"
#include "agent/http.h"
#include "agent/pull.h"
#include "agent/specwatch.h"
#include "cache/cache.h"
#include "common/macro.h"
#include "common/parse.h"
#include "common/time.h"

/* A few event-loop threads serve every connection; requests that wait for
 * an upstream get a thread of their own while they wait (agent/http.c).
 * Connections are accepted, counted and cut by agent/admit.c; MHD's
 * inactivity timeout stays for connections in a request (a client that stops
 * reading its blob). */
#define SERVE_POOL_MIN 2
#define SERVE_POOL_MAX 8
#define MHD_MESSAGE_MAX 1024 /* a libmicrohttpd message kept for its log line */
#define SERVE_CONNECTION_TIMEOUT_S 60
#define SERVE_THREAD_STACK (512 * 1024)
/* Request line and headers (up to about 7.5 KiB; more gets 431, like
 * nginx's 8 KiB per line) and the response's headers: a pull's are under 1 KiB.
 * MHD clears it per request, so it is resident: 256 connections, 2 MiB. */
#define SERVE_MEMORY_PER_CONNECTION (8 * 1024)
#define SERVE_STOP_GRACE_MS 10000

static void on_panic(void *cls, const char *file, unsigned line, const char *reason) {
        (void) cls;
        /* MHD calls this for internal inconsistencies only; it must not return. */
        log_line(LOG_CRIT, "libmicrohttpd failure at %s:%u: %s", file, line, reason ? reason : "");
        abort();
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[MHD_MESSAGE_MAX];
        (void) cls;
        vsnprintf(buf, sizeof(buf), fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        /* A peer gone while its head was read: every connection admission cut
         * (agent/admit.c) ends so, a slowloris crowd would flood the log. */
        if (strncmp(buf, "Connection socket is closed when reading request", 48) == 0)
                log_debug("libmicrohttpd: %s", buf);
        else
                log_warning("libmicrohttpd: %s", buf);
}

static int resolve_listen(const char *host, uint16_t port, struct sockaddr_storage *ret, socklen_t *ret_len) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE };
        struct addrinfo *res = NULL;
        char port_text[PORT_TEXT_MAX];
        snprintf(port_text, sizeof(port_text), "%u", port);
        int r = getaddrinfo(host, port_text, &hints, &res);
        if (r != 0) {
                log_error("cannot resolve listen address host=\"%s\": %s", host, gai_strerror(r));
                return -EADDRNOTAVAIL;
        }
        memcpy(ret, res->ai_addr, res->ai_addrlen);
        *ret_len = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
}

/* A listening socket for addr, as MHD made it: address reuse, IPv6 only for
 * an IPv6 address, a backlog of backlog. Returns it or -errno. */
static int open_listener(const struct sockaddr_storage *addr, socklen_t addr_len, int backlog) {
        _cleanup_close_ int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int on = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
            (addr->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0) ||
            bind(fd, (const struct sockaddr *) addr, addr_len) < 0 || listen(fd, backlog) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* What MHD's callbacks need: the pull core (agent/http.c) and admission.
 * Static: MHD's threads may outlive serve_run() when a stop gives up on them. */
static struct {
        struct pull *pull;
        struct admit *admit;
} front;

/* The access handler's first call for a request (its head is in) ends the
 * head or idle deadline, unless a body is to follow: layerd takes none, and
 * one trickled in would otherwise hold the connection without a deadline. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
        (void) cls;
        if (!*req_cls) {
                const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                if ((!length || strcmp(length, "0") == 0) &&
                    !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
                        admit_request_begin(front.admit, admit_connection_fd(conn));
        }
        return http_handle(front.pull, conn, url, method, version, upload_data, upload_data_size, req_cls);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe) {
        (void) cls;
        http_completed(front.pull, conn, req_cls, toe);
        admit_request_end(front.admit, admit_connection_fd(conn), time_now_ms());
}

static void signal_set(sigset_t *mask) {
        sigemptyset(mask);
        sigaddset(mask, SIGTERM);
        sigaddset(mask, SIGINT);
        sigaddset(mask, SIGHUP);
}

int serve_block_signals(void) {
        sigset_t mask;
        signal_set(&mask);
        /* A closed peer must be a write error, not the end of the process;
         * likewise a file-size limit (EFBIG: the cache streams through). */
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || signal(SIGXFSZ, SIG_IGN) == SIG_ERR)
                return -errno;
        int r = pthread_sigmask(SIG_BLOCK, &mask, NULL);
        return r == 0 ? 0 : -r;
}

/* Writes containerd's hosts files for spec; logs the outcome. */
static int write_hosts(const struct serve_config *cfg, const struct spec *spec, const char *agent_url) {
        _cleanup_(hosts_report_freep) struct hosts_report *rep = NULL;
        struct error_list notes, errors;
        int r = agent_write_hosts(spec, agent_url, HOSTS_FORMAT_CONTAINERD, cfg->write_hosts_dir, HOSTS_APPLY_PRUNE,
                                  NULL, &rep, &notes, &errors);
        for (size_t i = 0; i < notes.n; i++)
                log_notice("hosts: %s", notes.items[i].message);
        if (r < 0) {
                agent_log_errors(LOG_ERR, "cannot write hosts files", &errors);
                return r;
        }
        log_info("hosts files dir=\"%s\" written=%zu unchanged=%zu pruned=%zu", cfg->write_hosts_dir,
                 rep->count[HOSTS_WRITTEN], rep->count[HOSTS_UNCHANGED], rep->count[HOSTS_PRUNED]);
        return 0;
}

/* SIGHUP: a new spec replaces the old only when it is valid whole (its
 * credentials files included). Returns the spec now in force (borrowed: the
 * pull state keeps it alive until the next reload); *applied says whether it is the new one. */
static const struct spec *reload(const struct serve_config *cfg, const struct spec *cur, const char *agent_url,
                                 struct cache *cache, const char *cache_dir, struct fallback *fb, struct pull *pull,
                                 bool *applied) {
        _cleanup_(spec_freep) struct spec *fresh = NULL;
        struct error_list errors;
        int r = agent_load_spec(cfg->spec_path, &fresh, &errors);
        /* Before the spec is shared; asked again, as containerd may have been upgraded meanwhile. */
        if (r >= 0 && cfg->write_hosts_dir)
                r = agent_resolve_spec_version(fresh, cfg->containerd_socket, NULL);
        if (r >= 0) {
                error_list_init(&errors, fresh->source);
                r = agent_fallback_configure(fb, fresh, &errors);
        }
        if (r < 0) {
                agent_log_errors(LOG_ERR, "reload rejected, keeping the current spec", &errors);
                if (errors.n == 0)
                        log_error("reload rejected, keeping the current spec: %s", strerror(-r));
                *applied = false;
                return cur;
        }
        if (!cfg->listen_host && (strcmp(fresh->agent.listen_host, cur->agent.listen_host) != 0 ||
                                  fresh->agent.listen_port != cur->agent.listen_port))
                log_warning("reload: agent.listen changed; it takes effect at the next start");
        if (!cfg->metrics_host && (!fresh->agent.metrics_host != !cur->agent.metrics_host ||
                                   (fresh->agent.metrics_host &&
                                    (strcmp(fresh->agent.metrics_host, cur->agent.metrics_host) != 0 ||
                                     fresh->agent.metrics_port != cur->agent.metrics_port))))
                log_warning("reload: agent.metrics_listen changed; it takes effect at the next start");
        if (!cfg->cache_dir && strcmp(fresh->agent.cache_dir, cur->agent.cache_dir) != 0)
                log_warning("reload: agent.cache_dir changed; it takes effect at the next start");
        const struct spec *now = fresh;
        *applied = true;
        pull_set_spec(pull, TAKE_PTR(fresh)); /* requests in flight keep the old one until they end */
        r = agent_cache_apply_limits(now, cache_dir, cache, NULL);
        if (r < 0)
                log_warning("reload: cannot apply the cache limits dir=\"%s\": %s", cache_dir, strerror(-r));
        log_info("reloaded spec=\"%s\" registries=%zu", now->source, now->n_registries);
        if (cfg->write_hosts_dir)
                (void) write_hosts(cfg, now, agent_url);
        return now;
}

/* A change of the spec file on disk is a SIGHUP to this thread (agent/specwatch.h):
 * one reload path. NULL when not watching; a failure to start is logged and
 * leaves SIGHUP as the way to reload. */
static struct spec_watch *start_spec_watch(const struct serve_config *cfg) {
        struct spec_watch *w = NULL;
        if (!cfg->spec_path || cfg->no_watch)
                return NULL;
        int r = spec_watch_start(cfg->spec_path, cfg->spec_seen, pthread_self(), &w);
        if (r < 0)
                log_warning("cannot watch the spec path=\"%s\": %s; reload it with SIGHUP", cfg->spec_path,
                            strerror(-r));
        return w;
}

/* Every connection, download and cached blob being sent costs a descriptor:
 * the soft limit (often 1024) goes up to the hard one at start, as nginx's
 * worker_rlimit_nofile does. Returns the limit in force. */
static uint64_t raise_nofile(void) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return 0;
        if (rl.rlim_cur < rl.rlim_max) {
                struct rlimit want = { .rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max };
                if (setrlimit(RLIMIT_NOFILE, &want) == 0)
                        rl = want;
                else
                        log_warning("cannot raise the open-file limit from %llu to %llu: %s",
                                    (unsigned long long) rl.rlim_cur, (unsigned long long) rl.rlim_max,
                                    strerror(errno));
        }
        return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t) rl.rlim_cur;
}

/* The first step of a stop: no connection is taken any more. Our listening
 * socket closes, so what waits in its backlog is reset at once (the client
 * tries its next host); systemd's stays open in systemd, and its backlog
 * waits for the next start. */
static void stop_accepting(struct admit *admit, int listen_fd) {
        admit_listen_stop(admit);
        close(listen_fd);
}

/* The metrics listener, when the spec or the command line asks for one. It
 * failing to start is logged and serving goes on: pulls matter more than
 * their metrics, and a node whose metrics port is taken must not lose its
 * mirror (Prometheus shows the target down). */
static struct metrics_listener *start_metrics(const char *host, uint16_t port, struct pull *pull) {
        struct sockaddr_storage addr;
        socklen_t addr_len;
        struct metrics_listener *m = NULL;
        int r = resolve_listen(host, port, &addr, &addr_len);
        if (r >= 0)
                r = open_listener(&addr, addr_len, METRICS_LISTEN_BACKLOG);
        if (r >= 0)
                r = metrics_listen_start(pull, r, &m);
        if (r < 0) {
                log_error("cannot start the metrics listener address=%s port=%u, serving without it: %s", host, port,
                          strerror(-r));
                return NULL;
        }
        log_info("metrics listener address=%s port=%u connections=%u", host, port, METRICS_LISTEN_CONNECTIONS);
        return m;
}

/* agent.max_inflight_memory bounds the bytes requests hold; what the process
 * keeps resident must follow them down again. glibc's dynamic mmap threshold
 * rises to the largest block freed (a 4 MiB manifest), after which such blocks
 * come from per-thread arenas that are seldom given back: 200 requests of a
 * 4 MiB manifest within a 32 MiB budget peaked at 100 MiB resident, 54 MiB
 * with a fixed threshold and two arenas. Bodies are few and large, the rest
 * is small: the fixed threshold costs nothing measurable. */
static void tune_malloc(void) {
        (void) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        (void) mallopt(M_ARENA_MAX, 2);
}

/* The admin API (agent/admin.h), on the socket the command line or the spec
 * names; without it the agent serves on (pulls matter more), and says so. */
static struct admin *start_admin(const struct serve_config *cfg, const struct spec *spec,
                                 const struct admin_target *t) {
        char path[SPEC_ADMIN_SOCKET_PATH_MAX + 1];
        struct admin *a = NULL;
        int r = admin_socket_path(spec, t->cache_dir, cfg->admin_socket, path, sizeof(path));
        if (r == 0)
                return NULL;
        if (r > 0)
                r = admin_start(path, t, &a);
        if (r < 0) {
                log_error("no admin API: cannot serve socket=\"%s\": %s", r == -ENAMETOOLONG ? "" : path,
                          r == -EADDRINUSE ? "another agent answers on it"
                          : r == -EEXIST   ? "a file that is not a socket is there"
                                           : strerror(-r));
                return NULL;
        }
        log_info("admin API socket=\"%s\"", path);
        return a;
}

int serve_run(const struct serve_config *cfg, struct spec **spec_owned) {
        uint64_t started_ms = time_now_ms();
        int64_t started_s = (int64_t) time(NULL);
        struct sockaddr_storage addr;
        socklen_t addr_len;
        sigset_t mask;
        int r;
        const struct spec *spec = *spec_owned;
        const char *listen_host = cfg->listen_host ? cfg->listen_host : spec->agent.listen_host;
        uint16_t listen_port = cfg->listen_host ? cfg->listen_port : spec->agent.listen_port;
        _cleanup_free_ char *cache_dir = strdup(cfg->cache_dir ? cfg->cache_dir : spec->agent.cache_dir);
        _cleanup_free_ char *agent_url = hosts_agent_url(listen_host, listen_port);
        _cleanup_free_ char *host_copy = strdup(listen_host);
        if (!cache_dir || !agent_url || !host_copy)
                return -ENOMEM;
        listen_host = host_copy; /* the spec may be replaced by a reload */
        uint64_t nofile = raise_nofile();
        tune_malloc();

        /* The store is served from at once; its index builds in the background. */
        _cleanup_(cache_closep) struct cache *cache = NULL;
        struct error_list cache_errors;
        r = cache_open(cache_dir, &cache, &cache_errors);
        if (r < 0) {
                agent_log_errors(LOG_ERR, "cannot open the cache", &cache_errors);
                return r;
        }
        /* The prefetch list's pins first: eviction must not take a boot image before the first round. */
        _cleanup_(prefetch_pins_freep) struct prefetch_pins *pins = NULL;
        r = prefetch_pins_load(cache, cache_dir, &pins);
        if (r < 0) {
                log_error("cannot read the prefetch pins dir=\"%s\": %s", cache_dir, strerror(-r));
                return r;
        }
        agent_cache_log_evictions(cache);
        r = agent_cache_apply_limits(spec, cache_dir, cache, NULL);
        if (r < 0) {
                log_error("cannot start cache eviction dir=\"%s\": %s", cache_dir, strerror(-r));
                return r;
        }
        _cleanup_(fallback_freep) struct fallback *fb = NULL;
        struct error_list fb_errors;
        error_list_init(&fb_errors, spec->source);
        r = agent_fallback_new(spec, &fb, &fb_errors);
        if (r < 0) {
                agent_log_errors(LOG_ERR, "cannot set up the upstreams", &fb_errors);
                return r == -EINVAL ? SERVE_CONFIG_ERROR : r;
        }
        struct pull *pull = NULL;
        r = pull_new(cache, cache_dir, fb, *spec_owned, &pull);
        if (r < 0)
                return r;
        *spec_owned = NULL; /* the pull state owns it now; spec stays valid until a reload */
        struct prefetch *pf = NULL;
        r = prefetch_new(pull, TAKE_PTR(pins), &pf);
        if (r < 0) {
                pull_free(pull);
                return r;
        }
        /* Socket activation: systemd holds the port; containerd's requests
         * queue in its backlog while layerd (re)starts. */
        int listen_fd = notify_listen_fd();
        bool socket_activated = listen_fd >= 0;
        if (listen_fd == -ENOTSOCK) {
                log_error("socket activation passed something that is not a listening TCP socket");
                prefetch_free(pf);
                pull_free(pull);
                return SERVE_CONFIG_ERROR;
        }
        if (listen_fd < 0) {
                r = resolve_listen(listen_host, listen_port, &addr, &addr_len);
                if (r >= 0) {
                        r = open_listener(&addr, addr_len, SOMAXCONN); /* the kernel's largest */
                        if (r < 0)
                                log_error("cannot listen address=%s port=%u: %s", listen_host, listen_port,
                                          strerror(-r));
                }
                if (r < 0) {
                        prefetch_free(pf);
                        pull_free(pull);
                        return r == -EINVAL ? -EADDRNOTAVAIL : r; /* a start-up failure, never SERVE_CONFIG_ERROR */
                }
                listen_fd = r;
        }

        /* serve_block_signals() blocked these; MHD's threads inherit the mask,
         * so only the sigwait() below ever sees them. */
        signal_set(&mask);

        struct admit_limits limits = admit_limits_for(nofile, spec->agent.max_connections);
        struct admit *admit = NULL;
        r = admit_new(&limits, NULL, NULL, &admit);
        if (r < 0) {
                close(listen_fd);
                prefetch_free(pf);
                pull_free(pull);
                return r;
        }
        front.pull = pull;
        front.admit = admit;
        pull_set_metrics_hook(pull, PULL_METRICS_ADMISSION, admit_metrics, admit);

        MHD_set_panic_func(on_panic, NULL);
        /* No listen socket for MHD: admit.c accepts and hands connections over.
         * poll(), not MHD's epoll: libmicrohttpd 0.9.75's edge-triggered epoll
         * lost keep-alive requests of connections added by MHD_add_connection()
         * under a burst (256 clients at once: in every other run all of them
         * stalled, their next request unread, until more connections came;
         * tests/integration/test-overload-admission.sh, section 3). */
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned pool = cpus < SERVE_POOL_MIN ? SERVE_POOL_MIN : cpus > SERVE_POOL_MAX ? SERVE_POOL_MAX : (unsigned) cpus;
        /* Admission keeps the count; MHD's limit (split evenly between its
         * threads) is a backstop above it, never reached. */
        unsigned mhd_limit = 2 * (limits.capacity + limits.cut_slack) + pool;
        errno = 0;
        struct MHD_Daemon *d = MHD_start_daemon(
                /* The logger goes first, or MHD logs the options before it on its own. */
                flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
                admit_notify_connection, admit, MHD_OPTION_CONNECTION_LIMIT, mhd_limit, MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned) SERVE_CONNECTION_TIMEOUT_S, MHD_OPTION_THREAD_STACK_SIZE, (size_t) SERVE_THREAD_STACK,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) SERVE_MEMORY_PER_CONNECTION, MHD_OPTION_THREAD_POOL_SIZE,
                pool, MHD_OPTION_END);
        r = d ? admit_listen_start(admit, listen_fd, d) : -(errno ? errno : ENOMEM);
        if (r < 0) {
                log_error("cannot serve address=%s port=%u: %s", listen_host, listen_port, strerror(-r));
                if (d)
                        MHD_stop_daemon(d);
                pull_set_metrics_hook(pull, PULL_METRICS_ADMISSION, NULL, NULL);
                admit_free(admit);
                close(listen_fd);
                prefetch_free(pf);
                pull_free(pull);
                return r == -EINVAL ? -EADDRNOTAVAIL : r; /* a start-up failure, never SERVE_CONFIG_ERROR */
        }
        log_info("listening address=%s port=%u cache_dir=\"%s\" registries=%zu open_files=%" PRIu64
                 " connections=%u spec=\"%s\"%s",
                 listen_host, listen_port, cache_dir, spec->n_registries, nofile, limits.capacity, spec->source,
                 socket_activated ? " socket=systemd (the address is the unit's ListenStream=)" : "");
        /* Hosts files after the listener: containerd may use them at once. */
        if (cfg->write_hosts_dir) {
                r = write_hosts(cfg, spec, agent_url);
                if (r < 0) {
                        /* Requests may be under way already (socket activation):
                         * the same order as a SIGTERM's, and nothing freed that
                         * a thread still inside libcurl may use. */
                        stop_accepting(admit, listen_fd);
                        if (pull_shutdown(pull, SERVE_STOP_GRACE_MS) < 0) {
                                (void) TAKE_PTR(fb);
                                (void) TAKE_PTR(cache);
                                return r == -EIO || r == -ENOMEM ? r : SERVE_CONFIG_ERROR;
                        }
                        MHD_stop_daemon(d);
                        pull_set_metrics_hook(pull, PULL_METRICS_ADMISSION, NULL, NULL);
                        admit_free(admit);
                        (void) pull_shutdown(pull, SERVE_STOP_GRACE_MS);
                        prefetch_free(pf);
                        pull_free(pull);
                        /* Refused before writing: a configuration problem. Failing
                         * part way, or out of memory: a runtime failure. */
                        return r == -EIO || r == -ENOMEM ? r : SERVE_CONFIG_ERROR;
                }
        }
        /* What would keep containerd's pulls from reaching us, said once:
         * the checks of layerd doctor that need no network and no binary. */
        struct doctor_options dopt = {
                .containerd_config = cfg->containerd_config ? cfg->containerd_config : DOCTOR_DEFAULT_CONTAINERD_CONFIG,
                .hosts_dir = cfg->write_hosts_dir ? cfg->write_hosts_dir : DOCTOR_DEFAULT_HOSTS_DIR,
                .agent_url = agent_url,
                .cache_dir = cache_dir,
                .skip_hosts_files = !cfg->write_hosts_dir,
        };
        doctor_log_summary(spec, &dopt);
        /* READY once listening with the cache open: blobs on disk are served
         * at once (the index that counts them completes in the background). */
        r = prefetch_run(pf);
        if (r < 0)
                log_error("cannot start the prefetch worker: %s", strerror(-r));
        const char *metrics_host = cfg->metrics_host ? cfg->metrics_host : spec->agent.metrics_host;
        struct metrics_listener *metrics =
                metrics_host ? start_metrics(metrics_host, cfg->metrics_host ? cfg->metrics_port
                                                                              : spec->agent.metrics_port, pull)
                             : NULL;
        struct admin_target admin_target = { .cache = cache, .cache_dir = cache_dir, .pull = pull, .pf = pf,
                                             .version = cfg->version ? cfg->version : "", .started_ms = started_ms,
                                             .started_s = started_s };
        struct admin *admin = start_admin(cfg, spec, &admin_target);
        notify_ready("serving");
        struct spec_watch *watch = start_spec_watch(cfg);

        /* Between signals: the watchdog (at half its period) and a STATUS= line. */
        uint64_t wd_usec = notify_watchdog_usec();
        uint64_t tick_ms = wd_usec ? wd_usec / 2000 : 10000;
        if (tick_ms == 0)
                tick_ms = 1;
        if (tick_ms > 10000)
                tick_ms = 10000;
        for (;;) {
                struct timespec tick = { .tv_sec = (time_t) (tick_ms / 1000), .tv_nsec = (long) (tick_ms % 1000) * 1000000 };
                siginfo_t info;
                int sig = sigtimedwait(&mask, &info, &tick);
                if (sig < 0) {
                        char status[NOTIFY_STATUS_MAX];
                        if (wd_usec)
                                notify_watchdog();
                        pull_status(pull, status, sizeof(status));
                        notify_status(status);
                        pull_private_upkeep(pull, time_now_ms());
                        continue;
                }
                if (sig == SIGHUP) {
                        spec_watch_note_signal(watch, &info);
                        bool applied;
                        spec = reload(cfg, spec, agent_url, cache, cache_dir, fb, pull, &applied);
                        /* Rejected: looked at again later, as what was missing (a
                         * credentials file) may come without the spec changing. */
                        if (applied)
                                spec_watch_reload_applied(watch);
                        else
                                spec_watch_reload_failed(watch);
                        prefetch_kick(pf); /* the list may have changed: a round now */
                        continue;
                }
                log_info("stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
                break;
        }
        watch = spec_watch_stop(watch);
        notify_stopping();
        metrics = metrics_listen_stop(metrics);
        stop_accepting(admit, listen_fd);
        /* Downloads stop first (their readers are cut at once), then the
         * connections end and MHD joins their threads; the prefetch worker
         * ends at its next step, and so does an operator's round (the admin API,
         * stopped before anything it uses goes). */
        prefetch_stop(pf);
        admin = admin_stop(admin);
        r = pull_shutdown(pull, SERVE_STOP_GRACE_MS);
        if (r < 0) {
                /* A thread still inside libcurl, or a connection still
                 * suspended: the process is ending anyway; stop and free
                 * nothing they may still use (the cache's lock goes with the process). */
                log_warning("stopping with downloads still running");
                (void) TAKE_PTR(fb);
                (void) TAKE_PTR(cache);
                return 0;
        }
        MHD_stop_daemon(d);
        pull_set_metrics_hook(pull, PULL_METRICS_ADMISSION, NULL, NULL);
        admit_free(admit); /* after MHD: its threads report closed connections to it */
        /* Stream-throughs a closing connection started after the first wait end now. */
        if (pull_shutdown(pull, SERVE_STOP_GRACE_MS) < 0) {
                log_warning("stopping with stream-throughs still running");
                (void) TAKE_PTR(fb);
                (void) TAKE_PTR(cache);
                return 0;
        }
        prefetch_free(pf);
        pull_free(pull);
        return 0;
}
