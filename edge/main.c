/*
 * parley-edge: the access edge (design.md §1-2, docs/internals/pool.md).
 *
 * Stages, as wired here: transport -> parse -> transaction -> proxy checks and px_trust
 * (every outside connection is a client: Route/Record-Route stripped, throttled) ->
 * edge policy (edge_policy.h: Path/Record-Route with flow tokens, everything to a
 * front-end over MTLS with fail-over; pool requests back to the outside user on its
 * flow) -> protocol stack. Authenticates nothing (the pool does, end to end).
 * Announces itself in the directory (role edge, cert subject) so the front-ends know
 * its MTLS connections as the edge.
 */
#define LOG_MODULE "edge"

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
#include "edge_policy.h"
#include "proxy/px.h"
#include "proxy/px_trust.h"
#include "util/admin_http.h"
#include "util/cfg.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/metrics.h"

#ifndef PARLEY_VERSION
#define PARLEY_VERSION "0.1.0"
#endif

struct edge_settings {
    struct cfg_list listen;
    char *inside_listen;
    char *advertise;
    char *inside_advertise;
    struct cfg_list frontend;
    long long probe_interval_ms;
    long long down_hold_ms;
    char *data_dir;
    char *admin;
    char *admin_token;
    char *etcd;
    char *server_name;
    char *cert_subject;
    long long lease_ttl_ms;
    long long max_msg_size;
    long long idle_timeout_ms;
    long long max_conns;
    long long shutdown_grace_ms;
};

#define ROW(n, t, d, lo, hi, rl, req, h, f) {n, t, d, lo, hi, rl, req, h, offsetof(struct edge_settings, f)}
static const struct cfg_opt edge_rows[] = {
    ROW("listen", CFG_LIST, "tls:127.0.0.1:5061", 0, 0, false, true,
        "listener for outside users, proto:host:port (tls; tcp and udp optional); repeatable", listen),
    ROW("inside-listen", CFG_STR, NULL, 0, 0, false, false,
        "listener facing the pool (tls:host:port; the front-ends connect there with MTLS); default: the "
        "first TLS --listen", inside_listen),
    ROW("advertise", CFG_STR, NULL, 0, 0, false, false,
        "public host name or address of the edge, put in Via and Record-Route towards outside users",
        advertise),
    ROW("inside-advertise", CFG_STR, NULL, 0, 0, false, false,
        "host name or address of the inside listener, put in Path and Record-Route towards the pool",
        inside_advertise),
    ROW("frontend", CFG_LIST, NULL, 0, 0, false, true,
        "a front-end's SIP URI, e.g. sip:fe1.example.com:5081;transport=tls; repeatable, in order of "
        "preference (fail-over to the next)", frontend),
    ROW("probe-interval", CFG_DURATION_MS, "5s", 0, 3600000, false, false,
        "OPTIONS to each front-end this often (0 = no probing)", probe_interval_ms),
    ROW("down-hold", CFG_DURATION_MS, "10s", 0, 3600000, false, false,
        "a front-end marked down is not probed again before this", down_hold_ms),
    ROW("data-dir", CFG_STR, NULL, 0, 0, false, true, "directory of the directory's disk copy", data_dir),
    ROW("admin", CFG_STR, "127.0.0.1:0", 0, 0, false, false,
        "admin HTTP endpoint address (/healthz, /metrics, /config); empty = off", admin),
    ROW("admin-token", CFG_STR, NULL, 0, 0, false, false, "bearer token required by the admin endpoint",
        admin_token),
    ROW("etcd", CFG_STR, NULL, 0, 0, false, true,
        "etcd client URLs of the directory (the edge announces itself; front-ends are known by it)", etcd),
    ROW("server-name", CFG_STR, NULL, 0, 0, false, true, "this server's name in the directory", server_name),
    ROW("cert-subject", CFG_STR, NULL, 0, 0, false, true,
        "subject (CN) of this edge's TLS certificate, announced so the front-ends trust it", cert_subject),
    ROW("lease-ttl", CFG_DURATION_MS, "10s", 1000, 3600000, false, false,
        "TTL of this server's announcement in the directory", lease_ttl_ms),
    ROW("max-message-size", CFG_SIZE, "64k", 1024, 1048576, false, false, "largest SIP message accepted",
        max_msg_size),
    ROW("idle-timeout", CFG_DURATION_MS, "300s", 1000, 86400000, false, false,
        "stream connections without traffic are closed after this", idle_timeout_ms),
    ROW("max-connections", CFG_INT, "10000", 1, 1000000, false, false, "accepted stream connections",
        max_conns),
    ROW("shutdown-grace", CFG_DURATION_MS, "2s", 0, 60000, false, false,
        "on SIGTERM, how long transactions in flight may finish", shutdown_grace_ms),
};

struct edge {
    struct mem_housekeeper *housekeeper;   /* heap trimmed every 5 s */
    struct event_base *base;
    struct edge_settings set;
    struct cfg *cfg;
    struct px *px;
    struct px_trust_settings trust_set;
    struct px_trust *trust;
    struct dir *dir;
    struct edge_policy *ep;
    struct metrics *metrics;
    struct admin_http *admin;
    struct event *sig_term, *sig_int, *sig_hup;
    bool stopping;
    bool dir_done;
};

/* "sip:<host>:<port>;transport=<proto>" of a listener spec, host replaced by <adv>. */
static int
listener_uri(const char *spec, const char *adv, char *out, size_t outlen)
{
    const char *c1 = strchr(spec, ':'), *c2 = strrchr(spec, ':');
    int n;

    if (c1 == NULL || c2 == c1 || c1 - spec > 3)
        return -1;
    if (adv && adv[0])
        n = snprintf(out, outlen, "sip:%s:%s;transport=%.*s", adv, c2 + 1, (int)(c1 - spec), spec);
    else
        n = snprintf(out, outlen, "sip:%.*s:%s;transport=%.*s", (int)(c2 - c1 - 1), c1 + 1, c2 + 1,
                     (int)(c1 - spec), spec);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static const char *
first_tls(const struct edge_settings *s)
{
    for (size_t i = 0; i < s->listen.n; i++)
        if (strncasecmp(s->listen.v[i], "tls:", 4) == 0)
            return s->listen.v[i];
    return NULL;
}

static int
check_settings(struct cfg *cfg, void *arg, struct cfg_error *err)
{
    struct edge *e = arg;

    if (e->set.inside_listen && e->set.inside_listen[0] && strncasecmp(e->set.inside_listen, "tls:", 4) != 0) {
        cfg_error_set(err, "--inside-listen must be a tls: listener (the pool side is MTLS)");
        return -1;
    }
    if ((e->set.inside_listen == NULL || e->set.inside_listen[0] == '\0') && first_tls(&e->set) == NULL) {
        cfg_error_set(err, "no TLS listener: give a tls: --listen or --inside-listen");
        return -1;
    }
    if (e->trust_set.tls_cert == NULL || e->trust_set.tls_cert[0] == '\0') {
        cfg_error_set(err, "--tls-cert is required (outside users connect with TLS, front-ends with MTLS)");
        return -1;
    }
    return 0;
}

static bool
health_ready(void *arg, char *reason, size_t len)
{
    struct edge *e = arg;

    if (e->stopping) {
        snprintf(reason, len, "shutting down");
        return false;
    }
    if (edge_policy_frontends_up(e->ep) == 0) {
        snprintf(reason, len, "no front-end answers");
        return false;
    }
    return true;
}

#define STAT_FN(name, expr)                                                                            \
    static double name(void *arg)                                                                      \
    {                                                                                                  \
        struct edge *e = arg;                                                                          \
        struct edge_policy_stats ds;                                                                   \
        edge_policy_stats_get(e->ep, &ds);                                                             \
        (void)ds;                                                                                      \
        return (double)(expr);                                                                         \
    }
STAT_FN(m_rx_requests, px_stats(e->px)->rx_requests)
STAT_FN(m_forwarded, px_stats(e->px)->forwarded)
STAT_FN(m_parse_errors, px_stats(e->px)->parse_errors)
STAT_FN(m_conns, tp_stats(px_tp(e->px))->conns_open)
STAT_FN(m_inbound, ds.inbound)
STAT_FN(m_outbound, ds.outbound)
STAT_FN(m_flow_failed, ds.flow_failed)
STAT_FN(m_refused, ds.refused)
STAT_FN(m_failovers, ds.failovers)
STAT_FN(m_hidden, ds.hidden)
STAT_FN(m_vias_hidden, ds.vias_hidden)
STAT_FN(m_fe_up, edge_policy_frontends_up(e->ep))

static void
register_metrics(struct edge *e)
{
    struct metrics *m = e->metrics;

    metrics_add_process(m);
    metrics_counter_fn(m, "parley_sip_requests_received_total", "SIP requests received", m_rx_requests, e);
    metrics_counter_fn(m, "parley_sip_parse_errors_total", "messages refused by the parser", m_parse_errors, e);
    metrics_counter_fn(m, "parley_proxy_forwarded_total", "requests forwarded statefully", m_forwarded, e);
    metrics_gauge_fn(m, "parley_transport_connections", "open stream connections", m_conns, e);
    metrics_counter_fn(m, "parley_edge_inbound_total", "outside requests forwarded to a front-end", m_inbound, e);
    metrics_counter_fn(m, "parley_edge_outbound_total", "pool requests sent to an outside user", m_outbound, e);
    metrics_counter_fn(m, "parley_edge_flow_failed_total", "430 Flow Failed sent", m_flow_failed, e);
    metrics_counter_fn(m, "parley_edge_refused_total",
                       "in-dialog requests and responses refused (not our dialog, hidden entries that do not open)",
                       m_refused, e);
    metrics_counter_fn(m, "parley_edge_rr_hidden_total", "Record-Route lists hidden (topology hiding)", m_hidden, e);
    metrics_counter_fn(m, "parley_edge_via_hidden_total", "Via lists of requests going out sealed (topology hiding)",
                       m_vias_hidden, e);
    metrics_counter_fn(m, "parley_edge_frontend_failovers_total", "front-ends marked down", m_failovers, e);
    metrics_gauge_fn(m, "parley_edge_frontends_up", "front-ends answering", m_fe_up, e);
}

static void
exit_cb(evutil_socket_t fd, short what, void *arg)
{
    struct edge *e = arg;

    event_base_loopexit(e->base, NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct edge *e = arg;
    struct timeval tv;

    if (sig == SIGHUP) {
        struct cfg_error err;
        char m[256];
        if (cfg_reload(e->cfg, &err) < 0)
            log_err("reload failed: %s", err.msg);
        if (px_trust_reload_tls(e->trust, m, sizeof m) != 0)
            log_err("TLS reload failed: %s", m);
        return;
    }
    if (e->stopping) {
        event_base_loopexit(e->base, NULL);
        return;
    }
    e->stopping = true;
    log_info("shutting down (grace %lld ms)", e->set.shutdown_grace_ms);
    px_shutdown(e->px);
    tp_stop_listening(px_tp(e->px));
    tv.tv_sec = e->set.shutdown_grace_ms / 1000;
    tv.tv_usec = (e->set.shutdown_grace_ms % 1000) * 1000;
    event_base_once(e->base, -1, EV_TIMEOUT, exit_cb, e, &tv);
}

static void
dir_done(void *arg)
{
    struct edge *e = arg;

    e->dir_done = true;
}

static enum px_verdict
edge_handle(struct px_req *req, void *arg)
{
    struct edge *e = arg;

    if (e->ep == NULL) {
        px_reply(req, 503, "Starting");
        return PX_ANSWERED;
    }
    return edge_policy_handle(req, e->ep);
}

static int
start(struct edge *e)
{
    struct px_opts po;
    struct dir_opts dopts;
    struct edge_policy_opts eo;
    char outside[300], inside[300], admin[300], path[4096], err[256];
    const char *inside_spec = e->set.inside_listen && e->set.inside_listen[0] ? e->set.inside_listen : first_tls(&e->set);

    if (mkdir(e->set.data_dir, 0750) != 0 && errno != EEXIST) {
        log_err("cannot create data dir %s", e->set.data_dir);
        return -1;
    }
    px_opts_default(&po);
    po.advertise = e->set.advertise;
    po.record_route = false;   /* edge_policy Record-Routes with flow tokens */
    po.sip.max_msg_size = (size_t)e->set.max_msg_size;
    po.tp.max_msg_size = (size_t)e->set.max_msg_size;
    po.tp.idle_timeout_s = (unsigned)(e->set.idle_timeout_ms / 1000);
    po.tp.max_conns = (unsigned)e->set.max_conns;
    e->px = px_new(e->base, &po, edge_handle, e);
    if (e->px == NULL)
        return -1;
    e->trust = px_trust_new(e->px, &e->trust_set, err, sizeof err);
    if (e->trust == NULL) {
        log_err("trust: %s", err);
        return -1;
    }
    for (size_t i = 0; i < e->set.listen.n; i++) {
        if (px_listen(e->px, e->set.listen.v[i]) != 0)
            return -1;
        log_info("listening on %s (outside)", e->set.listen.v[i]);
    }
    if (e->set.inside_listen && e->set.inside_listen[0]) {
        if (px_listen(e->px, e->set.inside_listen) != 0)
            return -1;
        log_info("listening on %s (inside)", e->set.inside_listen);
    }
    if (px_trust_listen(e->trust, err, sizeof err) != 0) {
        log_err("%s", err);
        return -1;
    }
    if (listener_uri(first_tls(&e->set) ? first_tls(&e->set) : e->set.listen.v[0], e->set.advertise, outside,
                     sizeof outside) != 0 ||
        listener_uri(inside_spec, e->set.inside_advertise && e->set.inside_advertise[0] ? e->set.inside_advertise
                                                                                       : e->set.advertise,
                     inside, sizeof inside) != 0) {
        log_err("cannot make SIP URIs of the listeners");
        return -1;
    }
    e->metrics = metrics_new();
    px_trust_register_admin(e->trust, NULL, e->metrics);
    if (e->set.admin && e->set.admin[0]) {
        e->admin = admin_http_start(e->base, e->set.admin, e->set.admin_token, e->metrics, e->cfg);
        if (e->admin == NULL)
            return -1;
        admin_http_add_health(e->admin, "frontends", health_ready, e);
        px_trust_register_admin(e->trust, e->admin, NULL);
    }
    admin[0] = '\0';
    if (e->admin)
        snprintf(admin, sizeof admin, "http://127.0.0.1:%d", admin_http_port(e->admin));
    snprintf(path, sizeof path, "%s/directory.db", e->set.data_dir);
    memset(&dopts, 0, sizeof dopts);
    dopts.endpoints = e->set.etcd;
    dopts.cache_path = path;
    dopts.name = e->set.server_name;
    dopts.role = DIR_ROLE_EDGE;
    dopts.address = inside;
    dopts.cert_subject = e->set.cert_subject;
    dopts.admin = admin[0] ? admin : NULL;
    dopts.lease_ttl_s = (unsigned)((e->set.lease_ttl_ms + 999) / 1000);
    if ((e->dir = dir_new(e->base, &dopts)) == NULL) {
        log_err("cannot open the directory (etcd %s)", e->set.etcd);
        return -1;
    }
    px_trust_set_dir(e->trust, e->dir);
    memset(&eo, 0, sizeof eo);
    eo.px = e->px;
    eo.frontends = (const char *const *)e->set.frontend.v;
    eo.nfrontends = e->set.frontend.n;
    eo.outside_uri = outside;
    eo.inside_uri = inside;
    eo.probe_interval_ms = (unsigned)e->set.probe_interval_ms;
    eo.down_hold_ms = (unsigned)e->set.down_hold_ms;
    if ((e->ep = edge_policy_new(e->base, &eo)) == NULL)
        return -1;
    px_set_ack_hook(e->px, edge_policy_ack, e->ep);   /* hidden route sets of ACKs (topology hiding) */
    px_set_rx_response_hook(e->px, edge_policy_rx_response, e->ep);   /* hidden Via / Record-Route */
    log_info("outside address %s, inside address %s, %zu front-end(s)", outside, inside, e->set.frontend.n);
    return 0;
}

int
main(int argc, char **argv)
{
    struct edge e;
    struct cfg_error cerr;
    int rc, status = 1;

    memset(&e, 0, sizeof e);
    signal(SIGPIPE, SIG_IGN);
    e.cfg = cfg_new("parley-edge", PARLEY_VERSION);
    cfg_set_description(e.cfg,
                        "Parley access edge: accepts outside users over TLS, treats every connection as "
                        "an untrusted client, and forwards everything to the front-ends over MTLS.");
    cfg_register_log(e.cfg);
    cfg_register(e.cfg, "edge", edge_rows, sizeof edge_rows / sizeof edge_rows[0], &e.set);
    px_trust_cfg_register(e.cfg, &e.trust_set);
    cfg_add_check(e.cfg, check_settings, &e);
    rc = cfg_load(e.cfg, argc, argv, &cerr);
    if (rc == CFG_EXIT) {
        cfg_free(e.cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "parley-edge: %s\n", cerr.msg);
        cfg_free(e.cfg);
        return 2;
    }
    e.base = event_base_new();
    if (e.base == NULL || start(&e) != 0)
        goto out;
    register_metrics(&e);
    e.sig_term = evsignal_new(e.base, SIGTERM, signal_cb, &e);
    e.sig_int = evsignal_new(e.base, SIGINT, signal_cb, &e);
    e.sig_hup = evsignal_new(e.base, SIGHUP, signal_cb, &e);
    event_add(e.sig_term, NULL);
    event_add(e.sig_int, NULL);
    event_add(e.sig_hup, NULL);
    /* what a burst of transactions left free in the heap goes back to the system
     * (glibc keeps it resident otherwise): trimmed when over 4 MiB and a quarter */
    e.housekeeper = mem_housekeeper_new(e.base, 5000, 4u << 20);
    log_info("parley-edge %s (%s) ready", PARLEY_VERSION, e.set.server_name);
    event_base_dispatch(e.base);
    status = 0;
    if (e.dir && dir_shutdown(e.dir, dir_done, &e) == 0) {
        for (int i = 0; i < 300 && !e.dir_done; i++) {
            event_base_loop(e.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            usleep(10000);
        }
    }
    log_info("stopped");
out:
    if (e.sig_term)
        event_free(e.sig_term);
    if (e.sig_int)
        event_free(e.sig_int);
    if (e.sig_hup)
        event_free(e.sig_hup);
    admin_http_free(e.admin);
    edge_policy_free(e.ep);
    if (e.trust)
        px_trust_set_dir(e.trust, NULL);
    px_trust_free(e.trust);
    px_free(e.px);
    dir_free(e.dir);
    metrics_free(e.metrics);
    mem_housekeeper_free(e.housekeeper);
    if (e.base)
        event_base_free(e.base);
    cfg_free(e.cfg);
    return status;
}
