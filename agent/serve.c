/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP front end. For now it answers the API version check (the pull API
 * arrives with the cache and fallback modules): GET /v2/ is what skopeo and
 * podman ping first, and anything else gets a fast, well-formed 404 so that
 * containerd moves on to its next host instead of waiting. */
#include "agent/serve.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/log.h"
#include "agent/notify.h"
#include "cache/cache.h"
#include "common/macro.h"

#define SERVE_CONNECTION_LIMIT 1024
#define SERVE_CONNECTION_TIMEOUT_S 30
#define SERVE_THREADS 4

/* Distribution spec error bodies: {"errors":[{"code":...,"message":...}]}. */
static const char body_ok[] = "{}";
static const char body_not_found[] =
        "{\"errors\":[{\"code\":\"NOT_FOUND\",\"message\":\"not served by this layerd yet\"}]}";
static const char body_unsupported[] =
        "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"layerd is a read-only mirror\"}]}";

/* For HEAD, MHD sends the headers of this response (Content-Length included) and no body. */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *body) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), (void *) body,
                                                                    MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        enum MHD_Result ok = MHD_add_response_header(resp, "Content-Type", "application/json") &&
                                             MHD_add_response_header(resp, "Docker-Distribution-API-Version",
                                                                     "registry/2.0")
                                     ? MHD_YES
                                     : MHD_NO;
        if (ok == MHD_YES)
                ok = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
        (void) cls;
        (void) version;
        (void) upload_data;
        (void) req_cls;
        bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
        unsigned status;
        const char *body;

        /* No request takes a body; refuse one instead of buffering it. */
        if (*upload_data_size != 0)
                return MHD_NO;
        if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
                status = MHD_HTTP_METHOD_NOT_ALLOWED;
                body = body_unsupported;
        } else if (strcmp(url, "/v2/") == 0 || strcmp(url, "/v2") == 0) {
                status = MHD_HTTP_OK;
                body = body_ok;
        } else {
                status = MHD_HTTP_NOT_FOUND;
                body = body_not_found;
        }
        const char *ns = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ns");
        log_debug("request method=%s path=\"%.512s\" ns=\"%.256s\" status=%u", method, url, ns ? ns : "", status);
        return respond(conn, status, body);
}

static void on_panic(void *cls, const char *file, unsigned line, const char *reason) {
        (void) cls;
        /* MHD calls this for internal inconsistencies only; it must not return. */
        log_line(LOG_CRIT, "libmicrohttpd failure at %s:%u: %s", file, line, reason ? reason : "");
        abort();
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[1024];
        (void) cls;
        vsnprintf(buf, sizeof(buf), fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        log_warning("libmicrohttpd: %s", buf);
}

static int resolve_listen(const char *host, uint16_t port, struct sockaddr_storage *ret, socklen_t *ret_len) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE };
        struct addrinfo *res = NULL;
        char port_text[8];
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

static void signal_set(sigset_t *mask) {
        sigemptyset(mask);
        sigaddset(mask, SIGTERM);
        sigaddset(mask, SIGINT);
        sigaddset(mask, SIGHUP);
}

int serve_block_signals(void) {
        sigset_t mask;
        signal_set(&mask);
        /* A closed peer must be a write error, not the end of the process. */
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
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

/* SIGHUP: a new spec replaces the old only when it is valid whole. */
static void reload(const struct serve_config *cfg, struct spec **spec, const char *agent_url, struct cache *cache,
                   const char *cache_dir) {
        _cleanup_(spec_freep) struct spec *fresh = NULL;
        struct error_list errors;
        int r = agent_load_spec(cfg->spec_path, &fresh, &errors);
        if (r < 0) {
                agent_log_errors(LOG_ERR, "reload rejected, keeping the current spec", &errors);
                if (errors.n == 0)
                        log_error("reload rejected, keeping the current spec: %s", strerror(-r));
                return;
        }
        /* Nothing reads the spec from the request threads yet, so a plain swap
         * is safe; once routes use it this needs a reference-counted handover. */
        if (!cfg->listen_host && (strcmp(fresh->agent.listen_host, (*spec)->agent.listen_host) != 0 ||
                                  fresh->agent.listen_port != (*spec)->agent.listen_port))
                log_warning("reload: agent.listen changed; it takes effect at the next start");
        if (!cfg->cache_dir && strcmp(fresh->agent.cache_dir, (*spec)->agent.cache_dir) != 0)
                log_warning("reload: agent.cache_dir changed; it takes effect at the next start");
        spec_free(*spec);
        *spec = TAKE_PTR(fresh);
        uint64_t max = 0, min_free = 0;
        r = agent_cache_limits(*spec, cache_dir, &max, &min_free);
        if (r == 0)
                r = cache_set_limits(cache, max, min_free);
        if (r < 0)
                log_warning("reload: cannot apply the cache limits dir=\"%s\": %s", cache_dir, strerror(-r));
        log_info("reloaded spec=\"%s\" registries=%zu", (*spec)->source, (*spec)->n_registries);
        if (cfg->write_hosts_dir)
                (void) write_hosts(cfg, *spec, agent_url);
}

int serve_run(const struct serve_config *cfg, struct spec **spec) {
        struct sockaddr_storage addr;
        socklen_t addr_len;
        sigset_t mask;
        int r;
        const char *listen_host = cfg->listen_host ? cfg->listen_host : (*spec)->agent.listen_host;
        uint16_t listen_port = cfg->listen_host ? cfg->listen_port : (*spec)->agent.listen_port;
        _cleanup_free_ char *cache_dir = strdup(cfg->cache_dir ? cfg->cache_dir : (*spec)->agent.cache_dir);
        _cleanup_free_ char *agent_url = hosts_agent_url(listen_host, listen_port);
        _cleanup_free_ char *host_copy = strdup(listen_host);
        if (!cache_dir || !agent_url || !host_copy)
                return -ENOMEM;
        listen_host = host_copy; /* the spec may be replaced by a reload */

        /* The store is served from at once; its index builds in the background. */
        _cleanup_(cache_closep) struct cache *cache = NULL;
        struct error_list cache_errors;
        r = cache_open(cache_dir, &cache, &cache_errors);
        if (r < 0) {
                agent_log_errors(LOG_ERR, "cannot open the cache", &cache_errors);
                return r;
        }
        uint64_t max = 0, min_free = 0;
        r = agent_cache_limits(*spec, cache_dir, &max, &min_free);
        if (r == 0)
                r = cache_set_limits(cache, max, min_free);
        if (r < 0) {
                log_error("cannot start cache eviction dir=\"%s\": %s", cache_dir, strerror(-r));
                return r;
        }
        r = resolve_listen(listen_host, listen_port, &addr, &addr_len);
        if (r < 0)
                return r;

        /* serve_block_signals() blocked these; MHD's threads inherit the mask,
         * so only the sigwait() below ever sees them. */
        signal_set(&mask);

        MHD_set_panic_func(on_panic, NULL);
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
        if (addr.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        errno = 0;
        struct MHD_Daemon *d = MHD_start_daemon(
                /* The logger goes first, or MHD logs the options before it on its own. */
                flags, listen_port, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned) SERVE_THREADS,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) SERVE_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned) SERVE_CONNECTION_TIMEOUT_S, MHD_OPTION_END);
        if (!d) {
                int e = errno ? errno : EADDRINUSE;
                log_error("cannot listen address=%s port=%u: %s", listen_host, listen_port, strerror(e));
                /* A start-up failure, never SERVE_CONFIG_ERROR. */
                return e == EINVAL ? -EADDRNOTAVAIL : -e;
        }
        log_info("listening address=%s port=%u cache_dir=\"%s\" registries=%zu spec=\"%s\"", listen_host,
                 listen_port, cache_dir, (*spec)->n_registries, (*spec)->source);
        /* Hosts files after the listener: containerd may use them at once. */
        if (cfg->write_hosts_dir) {
                r = write_hosts(cfg, *spec, agent_url);
                if (r < 0) {
                        MHD_stop_daemon(d);
                        /* Refused before writing: a configuration problem. Failing
                         * part way, or out of memory: a runtime failure. */
                        return r == -EIO || r == -ENOMEM ? r : SERVE_CONFIG_ERROR;
                }
        }
        notify_ready("serving");

        for (;;) {
                int sig;
                if (sigwait(&mask, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        reload(cfg, spec, agent_url, cache, cache_dir);
                        continue;
                }
                log_info("stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
                break;
        }
        notify_stopping();
        MHD_stop_daemon(d);
        return 0;
}
