/*
 * parley-frontend: the front-end director (design.md §1-2, docs/internals/pool.md).
 *
 * Stages, as wired here: transport -> parse -> transaction -> proxy checks (Max-Forwards,
 * loops, Proxy-Require, Route pre-processing) -> director (fe_director.h: digest
 * authentication of inside REGISTERs, 302 to the home server or proxying, requests from
 * the edge straight to the home server) -> protocol stack. Holds no registrations.
 * Announces itself in the directory (role frontend) under a lease.
 */
#define LOG_MODULE "frontend"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "directory/dir.h"
#include "fe_director.h"
#include "proxy/px.h"
#include "proxy/px_trust.h"
#include "us_auth.h"
#include "util/admin_http.h"
#include "util/cfg.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/metrics.h"
#include "util/workers.h"

#ifndef PARLEY_VERSION
#define PARLEY_VERSION "0.1.0"
#endif

struct fe_settings {
    struct cfg_list listen;
    char *domain;
    char *data_dir;
    char *advertise;
    char *announce;
    char *cert_subject;
    char *admin;
    char *admin_token;
    char *etcd;
    char *server_name;
    long long lease_ttl_ms;
    char *auth;
    long long nonce_lifetime_ms;
    bool auth_sha256;
    char *register_mode;
    struct cfg_list proxy_listen;
    struct cfg_list proxy_ua;
    long long max_msg_size;
    long long idle_timeout_ms;
    long long max_conns;
    long long shutdown_grace_ms;
    long long workers;
};

#define ROW(n, t, d, lo, hi, rl, req, h, f) {n, t, d, lo, hi, rl, req, h, offsetof(struct fe_settings, f)}
static const struct cfg_opt fe_rows[] = {
    ROW("listen", CFG_LIST, "udp:127.0.0.1:5080,tcp:127.0.0.1:5080", 0, 0, false, true,
        "SIP listener, proto:host:port (udp, tcp, tls: the edge and pool servers use MTLS); repeatable",
        listen),
    ROW("domain", CFG_STR, NULL, 0, 0, false, true, "the SIP domain of the pool, e.g. example.com", domain),
    ROW("data-dir", CFG_STR, NULL, 0, 0, false, true,
        "directory of the directory's disk copy (directory.db; created if absent)", data_dir),
    ROW("advertise", CFG_STR, NULL, 0, 0, false, false,
        "host name or address put in Via, Record-Route and Path (default: the listener's address)",
        advertise),
    ROW("announce", CFG_STR, NULL, 0, 0, false, false,
        "SIP URI announced in the directory and used in Path, e.g. sip:fe1.example.com:5081;transport=tls "
        "(default: the first listener)", announce),
    ROW("cert-subject", CFG_STR, NULL, 0, 0, false, false,
        "subject (CN) of this server's TLS certificate, announced in the directory", cert_subject),
    ROW("admin", CFG_STR, "127.0.0.1:0", 0, 0, false, false,
        "admin HTTP endpoint address (/healthz, /metrics, /config); empty = off", admin),
    ROW("admin-token", CFG_STR, NULL, 0, 0, false, false, "bearer token required by the admin endpoint",
        admin_token),
    ROW("etcd", CFG_STR, NULL, 0, 0, false, true, "etcd client URLs of the directory, comma-separated", etcd),
    ROW("server-name", CFG_STR, NULL, 0, 0, false, true,
        "this server's name in the directory (/parley/servers/<name>)", server_name),
    ROW("lease-ttl", CFG_DURATION_MS, "10s", 1000, 3600000, false, false,
        "TTL of this server's announcement in the directory", lease_ttl_ms),
    ROW("auth", CFG_STR, "all", 0, 0, false, false,
        "digest authentication of inside clients and of outside users (through the edge): off, "
        "register (REGISTER only) or all (every request but ACK and CANCEL)", auth),
    ROW("nonce-lifetime", CFG_DURATION_MS, "5m", 1000, 86400000, false, false,
        "age after which a digest nonce is stale", nonce_lifetime_ms),
    ROW("auth-sha256", CFG_BOOL, "true", 0, 0, false, false,
        "challenge with SHA-256 before MD5 (RFC 8760); false for MD5-only clients (sipp 3.6)", auth_sha256),
    ROW("register-mode", CFG_STR, "redirect", 0, 0, false, false,
        "inside REGISTERs: redirect (302 to the home server, maddr=) or proxy (forwarded with Path)",
        register_mode),
    ROW("register-proxy-listen", CFG_LIST, NULL, 0, 0, false, false,
        "listener (proto:host:port, as in --listen) whose REGISTERs are proxied, not redirected; repeatable",
        proxy_listen),
    ROW("register-proxy-user-agent", CFG_LIST, NULL, 0, 0, false, false,
        "User-Agent pattern (fnmatch, case-insensitive, e.g. 'baresip*') whose REGISTERs are proxied; "
        "repeatable", proxy_ua),
    ROW("max-message-size", CFG_SIZE, "64k", 1024, 1048576, false, false, "largest SIP message accepted",
        max_msg_size),
    ROW("idle-timeout", CFG_DURATION_MS, "300s", 1000, 86400000, false, false,
        "stream connections without traffic are closed after this", idle_timeout_ms),
    ROW("max-connections", CFG_INT, "10000", 1, 1000000, false, false, "accepted stream connections",
        max_conns),
    ROW("shutdown-grace", CFG_DURATION_MS, "2s", 0, 60000, false, false,
        "on SIGTERM, how long transactions in flight may finish", shutdown_grace_ms),
    ROW("workers", CFG_INT, "1", 0, 64, false, false,
        "worker processes sharing the listeners (SO_REUSEPORT); 0 = one per CPU. Worker 0 announces "
        "the server and serves the admin endpoint; worker k serves it on the admin port + k "
        "(docs/internals/workers.md)", workers),
};

struct fe {
    struct mem_housekeeper *housekeeper;   /* heap trimmed every 5 s */
    struct event_base *base;
    struct fe_settings set;
    struct cfg *cfg;
    struct px *px;
    struct px_trust_settings trust_set;
    struct px_trust *trust;      /* TLS, connection classes, throttling (px_trust.h) */
    struct dir *dir;
    struct us_auth *auth;
    struct fe_director *fd;
    struct metrics *metrics;
    struct admin_http *admin;
    struct event *sig_term, *sig_int, *sig_hup;
    bool stopping;
    bool dir_done;
    unsigned worker;             /* this worker's index, 0 .. nworkers-1 */
    unsigned nworkers;           /* 1 = a single process, no supervisor */
};

static int
check_settings(struct cfg *cfg, void *arg, struct cfg_error *err)
{
    struct fe *fe = arg;
    enum us_auth_mode mode;

    if (us_auth_mode_parse(fe->set.auth, &mode) != 0) {
        cfg_error_set(err, "--auth: '%s' is not off, register or all", fe->set.auth);
        return -1;
    }
    if (strcmp(fe->set.register_mode, "redirect") != 0 && strcmp(fe->set.register_mode, "proxy") != 0) {
        cfg_error_set(err, "--register-mode: '%s' is not redirect or proxy", fe->set.register_mode);
        return -1;
    }
    return 0;
}

/* "sip:<host>:<port>;transport=<proto>" of a listener spec, host replaced by <advertise>. */
static int
listener_uri(const char *spec, const char *advertise, char *out, size_t outlen)
{
    const char *c1 = strchr(spec, ':'), *c2 = strrchr(spec, ':');
    int n;

    if (c1 == NULL || c2 == c1 || c1 - spec > 3)
        return -1;
    if (advertise && advertise[0])
        n = snprintf(out, outlen, "sip:%s:%s;transport=%.*s", advertise, c2 + 1, (int)(c1 - spec), spec);
    else
        n = snprintf(out, outlen, "sip:%.*s:%s;transport=%.*s", (int)(c2 - c1 - 1), c1 + 1, c2 + 1,
                     (int)(c1 - spec), spec);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* ------------------------------------------------------------------ admin */

static bool
health_ready(void *arg, char *reason, size_t len)
{
    struct fe *fe = arg;

    if (fe->stopping) {
        snprintf(reason, len, "shutting down");
        return false;
    }
    if (!dir_is_ready(fe->dir)) {
        snprintf(reason, len, "no directory copy yet (etcd %s)", dir_etcd_up(fe->dir) ? "up" : "unreachable");
        return false;
    }
    return true;
}

#define STAT_FN(name, expr)                                                                            \
    static double name(void *arg)                                                                      \
    {                                                                                                  \
        struct fe *fe = arg;                                                                           \
        struct fe_director_stats ds;                                                                   \
        fe_director_stats_get(fe->fd, &ds);                                                            \
        (void)ds;                                                                                      \
        return (double)(expr);                                                                         \
    }
STAT_FN(m_rx_requests, px_stats(fe->px)->rx_requests)
STAT_FN(m_forwarded, px_stats(fe->px)->forwarded)
STAT_FN(m_parse_errors, px_stats(fe->px)->parse_errors)
STAT_FN(m_conns, tp_stats(px_tp(fe->px))->conns_open)
STAT_FN(m_redirects, ds.redirects)
STAT_FN(m_proxied, ds.proxied_registers)
STAT_FN(m_from_edge, ds.from_edge)
STAT_FN(m_to_home, ds.to_home)
STAT_FN(m_refused, ds.refused)
STAT_FN(m_dir_users, dir_user_count(fe->dir))
STAT_FN(m_dir_up, dir_etcd_up(fe->dir) ? 1 : 0)
STAT_FN(m_worker, fe->worker)

static void
register_metrics(struct fe *fe)
{
    struct metrics *m = fe->metrics;

    metrics_add_process(m);
    metrics_counter_fn(m, "parley_sip_requests_received_total", "SIP requests received", m_rx_requests, fe);
    metrics_counter_fn(m, "parley_sip_parse_errors_total", "messages refused by the parser", m_parse_errors, fe);
    metrics_counter_fn(m, "parley_proxy_forwarded_total", "requests forwarded statefully", m_forwarded, fe);
    metrics_gauge_fn(m, "parley_transport_connections", "open stream connections", m_conns, fe);
    metrics_counter_fn(m, "parley_director_redirects_total", "inside REGISTERs answered 302", m_redirects, fe);
    metrics_counter_fn(m, "parley_director_proxied_registers_total", "inside REGISTERs proxied", m_proxied, fe);
    metrics_counter_fn(m, "parley_director_from_edge_total", "edge requests forwarded to a home server",
                       m_from_edge, fe);
    metrics_counter_fn(m, "parley_director_to_home_total", "inside requests forwarded to a home server",
                       m_to_home, fe);
    metrics_counter_fn(m, "parley_director_refused_total", "requests refused (403/404/480)", m_refused, fe);
    metrics_gauge_fn(m, "parley_directory_users", "users in the directory cache", m_dir_users, fe);
    metrics_gauge_fn(m, "parley_worker_index", "index of the worker process serving this endpoint "
                     "(metrics are per worker)", m_worker, fe);
    metrics_gauge_fn(m, "parley_directory_etcd_up", "1 when the last etcd exchange succeeded", m_dir_up, fe);
}

/* ------------------------------------------------------------------ signals */

static void
exit_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fe *fe = arg;

    event_base_loopexit(fe->base, NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct fe *fe = arg;
    struct timeval tv;

    if (sig == SIGHUP) {
        struct cfg_error err;
        char e[256];
        if (cfg_reload(fe->cfg, &err) < 0)
            log_err("reload failed: %s", err.msg);
        if (px_trust_reload_tls(fe->trust, e, sizeof e) != 0)
            log_err("TLS reload failed: %s", e);
        return;
    }
    if (fe->stopping) {
        event_base_loopexit(fe->base, NULL);
        return;
    }
    fe->stopping = true;
    log_info("shutting down (grace %lld ms)", fe->set.shutdown_grace_ms);
    px_shutdown(fe->px);
    tp_stop_listening(px_tp(fe->px));
    tv.tv_sec = fe->set.shutdown_grace_ms / 1000;
    tv.tv_usec = (fe->set.shutdown_grace_ms % 1000) * 1000;
    event_base_once(fe->base, -1, EV_TIMEOUT, exit_cb, fe, &tv);
}

static void
dir_done(void *arg)
{
    struct fe *fe = arg;

    fe->dir_done = true;
}

/* ------------------------------------------------------------------ main */

/*
 * The admin address of worker <idx>: <admin> itself for worker 0 (and for every worker
 * when its port is 0, each then binding its own ephemeral port); else the port plus
 * <idx>, so with --admin 127.0.0.1:9100 and two workers, worker 1 answers on 9101.
 */
static int
admin_listen_for_worker(const char *admin, unsigned idx, char *out, size_t outlen)
{
    const char *colon = strrchr(admin, ':');
    const char *port_s = colon ? colon + 1 : admin;
    char *end;
    long port;
    int n;

    if (idx == 0) {
        n = snprintf(out, outlen, "%s", admin);
        return n < 0 || (size_t)n >= outlen ? -1 : 0;
    }
    if (colon && strchr(colon, ']') != NULL)
        return -1;   /* "[::1]" without a port */
    errno = 0;
    port = strtol(port_s, &end, 10);
    if (errno != 0 || end == port_s || *end != '\0' || port < 0 || port > 65535)
        return -1;
    if (port != 0)
        port += idx;
    if (port > 65535)
        return -1;
    n = snprintf(out, outlen, "%.*s%s%ld", colon ? (int)(colon - admin) : 0, admin, colon ? ":" : "", port);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* The director is created after px (it needs px's addresses): px calls through here. */
static enum px_verdict
fe_handle(struct px_req *req, void *arg)
{
    struct fe *fe = arg;

    if (fe->fd == NULL) {
        px_reply(req, 503, "Starting");
        return PX_ANSWERED;
    }
    return fe_director_handle(req, fe->fd);
}

static int
start(struct fe *fe)
{
    struct px_opts po;
    struct dir_opts dopts;
    struct us_auth_opts aopts;
    struct fe_director_opts fo;
    char address[300], admin[300], path[4096], err[256];

    if (mkdir(fe->set.data_dir, 0750) != 0 && errno != EEXIST) {
        log_err("cannot create data dir %s", fe->set.data_dir);
        return -1;
    }
    px_opts_default(&po);
    po.domain = fe->set.domain;
    po.advertise = fe->set.advertise;
    po.record_route = true;   /* edge dialogs come back through us */
    po.sip.max_msg_size = (size_t)fe->set.max_msg_size;
    po.tp.max_msg_size = (size_t)fe->set.max_msg_size;
    po.tp.idle_timeout_s = (unsigned)(fe->set.idle_timeout_ms / 1000);
    po.tp.max_conns = (unsigned)fe->set.max_conns;
    po.tp.reuse_port = fe->nworkers > 1;   /* the workers share every listener address */
    fe->px = px_new(fe->base, &po, fe_handle, fe);
    if (fe->px == NULL)
        return -1;
    fe->trust = px_trust_new(fe->px, &fe->trust_set, err, sizeof err);
    if (fe->trust == NULL) {
        log_err("trust: %s", err);
        return -1;
    }
    for (size_t i = 0; i < fe->set.listen.n; i++) {
        if (px_listen(fe->px, fe->set.listen.v[i]) != 0)
            return -1;
        log_info("listening on %s", fe->set.listen.v[i]);
    }
    if (px_trust_listen(fe->trust, err, sizeof err) != 0) {
        log_err("%s", err);
        return -1;
    }
    fe->metrics = metrics_new();
    px_trust_register_admin(fe->trust, NULL, fe->metrics);
    if (fe->set.admin && fe->set.admin[0]) {
        char alisten[300];
        if (admin_listen_for_worker(fe->set.admin, fe->worker, alisten, sizeof alisten) != 0) {
            log_err("--admin '%s': no port to offset for worker %u", fe->set.admin, fe->worker);
            return -1;
        }
        fe->admin = admin_http_start(fe->base, alisten, fe->set.admin_token, fe->metrics, fe->cfg);
        if (fe->admin == NULL)
            return -1;
        admin_http_add_health(fe->admin, "directory", health_ready, fe);
        px_trust_register_admin(fe->trust, fe->admin, NULL);
    }
    /* The directory: users and servers, and our announcement (role frontend). */
    if (fe->set.announce && fe->set.announce[0])
        snprintf(address, sizeof address, "%s", fe->set.announce);
    else if (listener_uri(fe->set.listen.v[0], fe->set.advertise, address, sizeof address) != 0) {
        log_err("cannot make a SIP URI of the listener %s", fe->set.listen.v[0]);
        return -1;
    }
    admin[0] = '\0';
    if (fe->admin)
        snprintf(admin, sizeof admin, "http://%s:%d", fe->set.advertise && fe->set.advertise[0] ?
                 fe->set.advertise : "127.0.0.1", admin_http_port(fe->admin));
    /* each worker keeps its own disk copy (one sqlite writer per file) */
    if (fe->worker == 0)
        snprintf(path, sizeof path, "%s/directory.db", fe->set.data_dir);
    else
        snprintf(path, sizeof path, "%s/directory-w%u.db", fe->set.data_dir, fe->worker);
    memset(&dopts, 0, sizeof dopts);
    dopts.endpoints = fe->set.etcd;
    dopts.cache_path = path;
    dopts.name = fe->worker == 0 ? fe->set.server_name : NULL;   /* worker 0 announces the server */
    dopts.role = DIR_ROLE_FRONTEND;
    dopts.address = address;
    dopts.cert_subject = fe->set.cert_subject;
    dopts.admin = admin[0] ? admin : NULL;
    dopts.lease_ttl_s = (unsigned)((fe->set.lease_ttl_ms + 999) / 1000);
    fe->dir = dir_new(fe->base, &dopts);
    if (fe->dir == NULL) {
        log_err("cannot open the directory (etcd %s)", fe->set.etcd);
        return -1;
    }
    px_trust_set_dir(fe->trust, fe->dir);
    memset(&aopts, 0, sizeof aopts);
    us_auth_mode_parse(fe->set.auth, &aopts.mode);
    if (aopts.mode != US_AUTH_OFF) {
        aopts.realm = fe->set.domain;
        aopts.server_name = fe->set.server_name;
        aopts.nonce_lifetime_s = (uint64_t)(fe->set.nonce_lifetime_ms / 1000);
        aopts.offer_sha256 = fe->set.auth_sha256;
        aopts.dir = fe->dir;
        aopts.px = fe->px;
        aopts.check_trusted = true;   /* the edge's connection is trusted, its users are not */
        if ((fe->auth = us_auth_new(&aopts, fe->metrics)) == NULL)
            return -1;
    }
    memset(&fo, 0, sizeof fo);
    fo.px = fe->px;
    fo.dir = fe->dir;
    fo.auth = fe->auth;
    fo.domain = fe->set.domain;
    fo.self_uri = address;
    fo.proxy_register = strcmp(fe->set.register_mode, "proxy") == 0;
    fo.proxy_listen = (const char *const *)fe->set.proxy_listen.v;
    fo.nproxy_listen = fe->set.proxy_listen.n;
    fo.proxy_ua = (const char *const *)fe->set.proxy_ua.v;
    fo.nproxy_ua = fe->set.proxy_ua.n;
    if ((fe->fd = fe_director_new(&fo)) == NULL)
        return -1;
    return 0;
}

/* One worker (or the whole server when --workers 1): its own event loop and everything on it. */
static int
run_worker(unsigned idx, void *arg)
{
    struct fe *fe = arg;
    int status = 1;

    fe->worker = idx;
    fe->base = event_base_new();
    if (fe->base == NULL || start(fe) != 0)
        goto out;
    register_metrics(fe);
    fe->sig_term = evsignal_new(fe->base, SIGTERM, signal_cb, fe);
    fe->sig_int = evsignal_new(fe->base, SIGINT, signal_cb, fe);
    fe->sig_hup = evsignal_new(fe->base, SIGHUP, signal_cb, fe);
    event_add(fe->sig_term, NULL);
    event_add(fe->sig_int, NULL);
    event_add(fe->sig_hup, NULL);
    /* what a burst of transactions left free in the heap goes back to the system
     * (glibc keeps it resident otherwise): trimmed when over 4 MiB and a quarter */
    fe->housekeeper = mem_housekeeper_new(fe->base, 5000, 4u << 20);
    if (fe->nworkers > 1)
        log_info("parley-frontend %s (%s) worker %u/%u (pid %ld) directing domain %s", PARLEY_VERSION,
                 fe->set.server_name, idx, fe->nworkers, (long)getpid(), fe->set.domain);
    else
        log_info("parley-frontend %s (%s) directing domain %s", PARLEY_VERSION, fe->set.server_name,
                 fe->set.domain);
    event_base_dispatch(fe->base);
    status = 0;
    if (fe->dir && dir_shutdown(fe->dir, dir_done, fe) == 0) {
        /* revoke the announcement's lease (bounded by dir to ~3 s) */
        for (int i = 0; i < 300 && !fe->dir_done; i++) {
            event_base_loop(fe->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            usleep(10000);
        }
    }
    log_info("stopped");
out:
    if (fe->sig_term)
        event_free(fe->sig_term);
    if (fe->sig_int)
        event_free(fe->sig_int);
    if (fe->sig_hup)
        event_free(fe->sig_hup);
    admin_http_free(fe->admin);
    fe_director_free(fe->fd);
    us_auth_free(fe->auth);
    if (fe->trust)
        px_trust_set_dir(fe->trust, NULL);
    px_trust_free(fe->trust);
    px_free(fe->px);
    dir_free(fe->dir);
    metrics_free(fe->metrics);
    mem_housekeeper_free(fe->housekeeper);
    if (fe->base)
        event_base_free(fe->base);
    if (fe->nworkers > 1)
        cfg_free(fe->cfg);   /* the worker's copy; the supervisor frees its own */
    return status;
}

int
main(int argc, char **argv)
{
    struct fe fe;
    struct cfg_error cerr;
    struct workers_opts wo;
    int rc, status;

    memset(&fe, 0, sizeof fe);
    signal(SIGPIPE, SIG_IGN);
    fe.cfg = cfg_new("parley-frontend", PARLEY_VERSION);
    cfg_set_description(fe.cfg,
                        "Parley front-end (director): sends inside users to their home server (302 with "
                        "maddr=, or proxied REGISTER) and forwards requests from the edge to the home "
                        "server of the user. Holds no registrations.");
    cfg_register_log(fe.cfg);
    cfg_register(fe.cfg, "frontend", fe_rows, sizeof fe_rows / sizeof fe_rows[0], &fe.set);
    px_trust_cfg_register(fe.cfg, &fe.trust_set);
    cfg_add_check(fe.cfg, check_settings, &fe);
    rc = cfg_load(fe.cfg, argc, argv, &cerr);
    if (rc == CFG_EXIT) {
        cfg_free(fe.cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "parley-frontend: %s\n", cerr.msg);
        cfg_free(fe.cfg);
        return 2;
    }
    fe.nworkers = workers_count((unsigned)fe.set.workers);
    if (fe.nworkers == 1) {
        status = run_worker(0, &fe);
    } else {
        /* the supervisor opens nothing: every worker builds its loop, sockets, TLS,
         * directory client and admin endpoint after the fork (util/workers.h) */
        log_info("parley-frontend %s (%s): %u workers", PARLEY_VERSION, fe.set.server_name, fe.nworkers);
        memset(&wo, 0, sizeof wo);
        wo.n = fe.nworkers;
        wo.run = run_worker;
        wo.arg = &fe;
        wo.stop_timeout_ms = (unsigned)fe.set.shutdown_grace_ms + 5000;   /* grace + lease revoke */
        status = workers_run(&wo) == 0 ? 0 : 1;
    }
    cfg_free(fe.cfg);
    return status;
}
