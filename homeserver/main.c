/*
 * parley-homeserver: User Services (registrar; presence, contact lists and the
 * application chain come in their own modules) over the shared proxy core.
 *
 * Stages, as wired here (design §2): transport -> parse -> transaction -> proxy
 * checks (Max-Forwards, loops, Proxy-Require, Route pre-processing) -> User Services
 * (REGISTER; requests to local users resolved through the location table) ->
 * protocol stack (Route / maddr / Request-URI).
 */
#define LOG_MODULE "homeserver"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "hs_dir.h"
#include "hs_apps.h"
#include "hs_archive.h"
#include "agent/agent_server.h"
#include "proxy/px.h"
#include "proxy/px_trust.h"
#include "store/store.h"
#include "us_admin.h"
#include "us_auth.h"
#include "us_flood.h"
#include "us_location.h"
#include "us_registrar.h"
#include "us_services.h"
#include "util/admin_http.h"
#include "util/cfg.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/metrics.h"

#ifndef PARLEY_VERSION
#define PARLEY_VERSION "0.1.0"
#endif

struct hs_settings {
    struct cfg_list listen;
    char *domain;
    char *data_dir;
    char *advertise;
    char *admin;
    char *admin_token;
    long long min_expires;
    long long max_expires;
    long long default_expires;
    long long max_contacts;
    long long max_msg_size;
    long long max_headers;
    long long t1_ms;
    long long tx_lifetime_ms;
    long long idle_timeout_ms;
    long long max_conns;
    long long shutdown_grace_ms;
    long long store_commit_interval_ms;
    bool record_route;
    char *etcd;
    char *server_name;
    char *cert_subject;
    char *auth;
    long long nonce_lifetime_ms;
    long long lease_ttl_ms;
    bool auth_sha256;
};

#define ROW(n, t, d, lo, hi, rl, req, h, f) {n, t, d, lo, hi, rl, req, h, offsetof(struct hs_settings, f)}
static const struct cfg_opt hs_rows[] = {
    ROW("listen", CFG_LIST, "udp:127.0.0.1:5060,tcp:127.0.0.1:5060", 0, 0, false, true,
        "SIP listener, proto:host:port (udp, tcp, tls with --tls-cert); repeatable", listen),
    ROW("domain", CFG_STR, NULL, 0, 0, false, true, "the SIP domain this server serves, e.g. example.com",
        domain),
    ROW("data-dir", CFG_STR, NULL, 0, 0, false, true, "directory of the sqlite store (created if absent)",
        data_dir),
    ROW("advertise", CFG_STR, NULL, 0, 0, false, false,
        "host name or address put in Via and Record-Route (default: the listener's address)", advertise),
    ROW("admin", CFG_STR, "127.0.0.1:0", 0, 0, false, false,
        "admin HTTP endpoint address (/healthz, /metrics, /config, /api/...); empty = off", admin),
    ROW("admin-token", CFG_STR, NULL, 0, 0, false, false, "bearer token required by the admin endpoint",
        admin_token),
    ROW("min-expires", CFG_INT, "60", 1, 86400, true, false,
        "shortest registration interval accepted (else 423)", min_expires),
    ROW("max-expires", CFG_INT, "7200", 1, 604800, true, false, "longer registrations are shortened to this",
        max_expires),
    ROW("default-expires", CFG_INT, "3600", 1, 604800, true, false,
        "registration interval when the REGISTER names none", default_expires),
    ROW("max-contacts", CFG_INT, "32", 1, 1024, true, false, "bindings per address of record", max_contacts),
    ROW("max-message-size", CFG_SIZE, "64k", 1024, 1048576, false, false,
        "largest SIP message accepted (bigger: 413 or connection closed)", max_msg_size),
    ROW("max-headers", CFG_INT, "256", 16, 4096, false, false, "most header lines in one message",
        max_headers),
    ROW("timer-t1", CFG_DURATION_MS, "500ms", 50, 10000, false, false, "RFC 3261 T1 (retransmission base)",
        t1_ms),
    ROW("transaction-lifetime", CFG_DURATION_MS, "32s", 1000, 600000, false, false,
        "longest a server transaction waits for a final answer (a provisional restarts it)",
        tx_lifetime_ms),
    ROW("idle-timeout", CFG_DURATION_MS, "300s", 1000, 86400000, false, false,
        "stream connections without traffic are closed after this", idle_timeout_ms),
    ROW("max-connections", CFG_INT, "10000", 1, 1000000, false, false, "accepted stream connections",
        max_conns),
    ROW("shutdown-grace", CFG_DURATION_MS, "2s", 0, 60000, false, false,
        "on SIGTERM, how long transactions in flight may finish", shutdown_grace_ms),
    ROW("store-commit-interval", CFG_DURATION_MS, "5ms", 0, 1000, false, false,
        "least time between two commits of the sqlite store: under load, the writes of that "
        "interval share one commit (each still answered only once stored); an idle store commits "
        "at once; 0 = a commit per event-loop turn", store_commit_interval_ms),
    ROW("record-route", CFG_BOOL, "true", 0, 0, false, false,
        "Record-Route dialog-creating requests (keep the home server in the dialog)", record_route),
    ROW("etcd", CFG_STR, NULL, 0, 0, false, false,
        "etcd client URLs of the directory, comma-separated; empty = no directory (every user of "
        "--domain is accepted, no authentication)", etcd),
    ROW("server-name", CFG_STR, NULL, 0, 0, false, false,
        "this server's name in the directory (/parley/servers/<name>); required with --etcd", server_name),
    ROW("cert-subject", CFG_STR, NULL, 0, 0, false, false,
        "subject (CN) of this server's TLS certificate, announced in the directory so that pool servers "
        "classify its MTLS connections as server", cert_subject),
    ROW("auth", CFG_STR, NULL, 0, 0, false, false,
        "digest authentication of clients: off, register (REGISTER only) or all; default all with "
        "--etcd, else off", auth),
    ROW("nonce-lifetime", CFG_DURATION_MS, "5m", 1000, 86400000, false, false,
        "age after which a digest nonce is stale (the client is re-challenged with stale=true)",
        nonce_lifetime_ms),
    ROW("lease-ttl", CFG_DURATION_MS, "10s", 1000, 3600000, false, false,
        "TTL of this server's announcement in the directory (a dead server vanishes after it)",
        lease_ttl_ms),
    ROW("auth-sha256", CFG_BOOL, "true", 0, 0, false, false,
        "challenge with SHA-256 before MD5 (RFC 8760); false for clients that read only the first "
        "challenge and know only MD5 (e.g. sipp 3.6)", auth_sha256),
};

struct hs {
    struct mem_housekeeper *housekeeper;   /* heap trimmed every 5 s */
    struct event_base *base;
    struct hs_settings set;
    struct cfg *cfg;
    struct px *px;
    struct store *st;
    struct us_location *loc;
    struct us_registrar *reg;
    struct metrics *metrics;
    struct admin_http *admin;
    struct hs_apps *apps;        /* the application chain (hs_apps.h) */
    struct agent_server *agents; /* out-of-process applications (agent_server.h) */
    struct hs_archive *archive;  /* archiving stage (hs_archive.h) */
    struct hs_dir *dir;          /* NULL without --etcd */
    struct px_trust_settings trust_set;
    struct px_trust *trust;      /* connection classes, TLS, throttling (px_trust.h) */
    struct us_auth *auth;        /* NULL when authentication is off */
    struct us_flood *flood;      /* flood protection (us_flood.h) */
    struct us_services *svc;     /* presence, subscriptions, lists (us_services.h) */
    struct event *sig_term, *sig_int, *sig_hup;
    bool stopping;
};

/* ------------------------------------------------------------------ routing */

/* A request for one of our users: its bindings (or the one its To;epid names) are the targets. */
static enum px_verdict
route_local_user(struct hs *hs, struct px_req *req, const char *aor)
{
    struct sip_msg *msg = px_req_msg(req);
    struct us_aor *a = us_loc_find(hs->loc, aor);
    int64_t now = clock_wall_s();
    const char *epid = NULL;
    int n = 0;
    osip_generic_param_t *p = NULL;

    if (msg->osip->to && osip_generic_param_get_byname(&msg->osip->to->gen_params, "epid", &p) == 0 && p)
        epid = p->gvalue;
    if (a == NULL) {
        px_reply(req, 404, "Not Found");
        return PX_ANSWERED;
    }
    for (struct us_binding *b = a->bindings; b; b = b->next) {
        struct px_target t = {0};
        if (b->expires_at <= now)
            continue;
        if (epid && (b->epid == NULL || strcmp(b->epid, epid) != 0))
            continue;
        t.uri = b->contact;
        t.route_set = b->path;
        t.conn_id = b->conn_id;
        t.q = b->q;
        if (px_add_target(req, &t) == 0)
            n++;
    }
    if (n == 0) {
        /* Registered, but no binding is usable (expired, or not the endpoint asked for). */
        px_reply(req, 480, "Temporarily Unavailable");
        return PX_ANSWERED;
    }
    return PX_FORWARD;
}

/* us_rls: is <user> homed here? A user of our domains; with a directory, its home must be
 * this server (a contact homed elsewhere is listed as pending, docs/presence.md). */
static bool
rls_home_is_here(const char *user, void *arg)
{
    struct hs *hs = arg;
    const struct dir_user *u;
    const char *at = strrchr(user, '@');

    if (at == NULL || !px_is_our_domain(hs->px, at + 1))
        return false;
    if (hs->dir == NULL)
        return true;
    u = dir_user_get(hs_dir_dir(hs->dir), user);
    return u && u->enabled && u->home && hs->set.server_name && strcasecmp(u->home, hs->set.server_name) == 0;
}

static enum px_verdict
answer_options(struct px_req *req)
{
    struct sip_msg *resp = px_reply_build(req, 200, NULL);

    if (resp == NULL)
        return PX_ANSWERED;
    sip_msg_add_header(resp, "Allow",
                       "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, REGISTER, UPDATE, PRACK, REFER, NOTIFY");
    sip_msg_add_header(resp, "Accept", "application/sdp, text/plain");
    sip_msg_add_header(resp, "Supported", "path");
    px_reply_msg(req, resp);
    sip_msg_free(resp);
    return PX_ANSWERED;
}

static enum px_verdict
hs_handle(struct px_req *req, void *arg)
{
    struct hs *hs = arg;
    struct sip_msg *msg = px_req_msg(req);
    osip_uri_t *ru = sip_msg_ruri(msg);
    bool ours;
    char aor[512];
    enum px_verdict v;

    if (!us_flood_check(hs->flood, req))
        return PX_ANSWERED;   /* over a rate limit or banned: 503 (us_flood.h) */
    if (hs->auth && !us_auth_stage(hs->auth, req, NULL))
        return PX_ANSWERED;   /* challenged or refused (us_auth.h) */
    if (!hs_archive_request(hs->archive, req))
        return PX_ANSWERED;   /* archive queue full with --archive-critical: 503 (hs_archive.h) */
    /* Strict-routed requests (a Route remains, or a phone number) go to the protocol stack
     * (design §2): static routes decide where a number goes. */
    if (px_req_has_route(req) || sip_uri_is_phone(ru))
        return hs_apps_run(hs->apps, req, &v) ? v : PX_ROUTE;   /* strict-route apps only */
    ours = ru && ru->host &&
           (px_is_our_domain(hs->px, ru->host) || px_is_us(hs->px, ru->host, sip_uri_port(ru, 5060)));
    if (msg->method == SIP_REGISTER) {
        if (!ours) {
            px_reply(req, 403, "Domain Not Served Here");
            return PX_ANSWERED;
        }
        if (hs->dir && hs_dir_check_register(hs->dir, req) != PX_ROUTE)
            return PX_ANSWERED;   /* unknown, disabled, or homed elsewhere (hs_dir.h) */
        return us_registrar_handle(hs->reg, req, hs->set.domain);
    }
    if (!ours)
        return hs_apps_run(hs->apps, req, &v) ? v : PX_ROUTE;
    if (ru->username == NULL) {
        if (msg->method == SIP_OPTIONS)
            return answer_options(req);
        px_reply(req, 404, "No User In Request-URI");
        return PX_ANSWERED;
    }
    if (sip_msg_max_forwards(msg) == 0) {
        px_reply(req, 483, NULL);   /* an OPTIONS for a user, with no hops left */
        return PX_ANSWERED;
    }
    /* user@domain: the host may be one of our addresses; the AOR is always in our domain. */
    snprintf(aor, sizeof aor, "%s@%s", ru->username, hs->set.domain);
    for (char *c = aor; *c; c++)
        *c = (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c);
    if ((msg->method == SIP_SUBSCRIBE || msg->method == SIP_PUBLISH || msg->method == SIP_SERVICE) &&
        hs_dir_route_home(hs->dir, req, aor, &v))
        return v;   /* User Services of a user homed elsewhere: that home server's (hs_dir.h) */
    if (us_services_handle(hs->svc, req, aor, &v))
        return v;   /* SUBSCRIBE, PUBLISH, SERVICE; blocked senders (us_services.h) */
    if (hs_apps_run(hs->apps, req, &v))
        return v;   /* an application (routing.am by default) proxied or answered it */
    if (hs_dir_route_home(hs->dir, req, aor, &v))
        return v;   /* homed on another server: straight there over MTLS (hs_dir.h) */
    return route_local_user(hs, req, aor);   /* built-in routing: no chain, or the chain passed */
}

/* ------------------------------------------------------------------ admin */

static bool
health_store(void *arg, char *reason, size_t len)
{
    struct hs *hs = arg;

    if (!store_healthy(hs->st)) {
        snprintf(reason, len, "last commit failed");
        return false;
    }
    return true;
}

static bool
health_listeners(void *arg, char *reason, size_t len)
{
    struct hs *hs = arg;

    if (tp_listener_first(px_tp(hs->px), TP_UDP) == NULL && tp_listener_first(px_tp(hs->px), TP_TCP) == NULL) {
        snprintf(reason, len, "no listener");
        return false;
    }
    if (hs->stopping) {
        snprintf(reason, len, "shutting down");
        return false;
    }
    return true;
}

static int
api_registrations(struct admin_req *r, struct evbuffer *out, void *arg)
{
    struct hs *hs = arg;
    const char *aor = admin_req_query(r, "aor");
    struct us_aor *a;
    int64_t now = clock_wall_s();
    bool first = true;

    admin_req_set_content_type(r, "application/json");
    if (aor == NULL) {
        evbuffer_add_printf(out, "{\"error\":\"aor parameter required\"}\n");
        return 400;
    }
    a = us_loc_find(hs->loc, aor);
    evbuffer_add_printf(out, "{\"aor\":");
    admin_json_str(out, aor);
    evbuffer_add_printf(out, ",\"bindings\":[");
    for (struct us_binding *b = a ? a->bindings : NULL; b; b = b->next) {
        if (b->expires_at <= now)
            continue;
        evbuffer_add_printf(out, "%s{\"contact\":", first ? "" : ",");
        admin_json_str(out, b->contact);
        evbuffer_add_printf(out, ",\"epid\":");
        admin_json_str(out, b->epid ? b->epid : "");
        evbuffer_add_printf(out, ",\"expires\":%lld,\"q\":%d,\"received\":", (long long)(b->expires_at - now),
                            b->q);
        admin_json_str(out, b->received ? b->received : "");
        evbuffer_add_printf(out, ",\"path\":");
        admin_json_str(out, b->path ? b->path : "");
        evbuffer_add_printf(out, ",\"instance\":");
        admin_json_str(out, b->instance ? b->instance : "");
        evbuffer_add_printf(out, ",\"user_agent\":");
        admin_json_str(out, b->user_agent ? b->user_agent : "");
        evbuffer_add_printf(out, "}");
        first = false;
    }
    evbuffer_add_printf(out, "]}\n");
    return 200;
}

#define STAT_FN(name, expr)                                                                            \
    static double name(void *arg)                                                                      \
    {                                                                                                  \
        struct hs *hs = arg;                                                                           \
        return (double)(expr);                                                                         \
    }
STAT_FN(m_rx_requests, px_stats(hs->px)->rx_requests)
STAT_FN(m_rx_responses, px_stats(hs->px)->rx_responses)
STAT_FN(m_parse_errors, px_stats(hs->px)->parse_errors)
STAT_FN(m_forwarded, px_stats(hs->px)->forwarded)
STAT_FN(m_stateless, px_stats(hs->px)->stateless_forwarded)
STAT_FN(m_483, px_stats(hs->px)->replies_483)
STAT_FN(m_482, px_stats(hs->px)->replies_482)
STAT_FN(m_404, px_stats(hs->px)->replies_404)
STAT_FN(m_408, px_stats(hs->px)->replies_408)
STAT_FN(m_504, px_stats(hs->px)->replies_504)
STAT_FN(m_tx_server, tx_layer_stats(px_txl(hs->px))->live_server)
STAT_FN(m_tx_client, tx_layer_stats(px_txl(hs->px))->live_client)
STAT_FN(m_tx_timeouts, tx_layer_stats(px_txl(hs->px))->timeouts)
STAT_FN(m_tx_retx, tx_layer_stats(px_txl(hs->px))->retransmits_sent)
STAT_FN(m_tp_rx, tp_stats(px_tp(hs->px))->rx_msgs)
STAT_FN(m_tp_tx, tp_stats(px_tp(hs->px))->tx_msgs)
STAT_FN(m_tp_conns, tp_stats(px_tp(hs->px))->conns_open)
STAT_FN(m_tp_oversize, tp_stats(px_tp(hs->px))->rx_oversize)
STAT_FN(m_aors, us_loc_aor_count(hs->loc))
STAT_FN(m_bindings, us_loc_binding_count(hs->loc))
STAT_FN(m_commits, store_stats(hs->st)->commits)
STAT_FN(m_commit_fail, store_stats(hs->st)->commit_fail)
STAT_FN(m_commit_us, store_stats(hs->st)->last_commit_us)

/* A counter kept by another module, read at scrape time. */
static double
m_u64(void *arg)
{
    return (double)*(const uint64_t *)arg;
}

struct state_gauge {
    struct hs *hs;
    bool server;
    enum tx_state state;
};

static double
m_tx_state(void *arg)
{
    const struct state_gauge *g = arg;

    return (double)tx_layer_count_state(px_txl(g->hs->px), g->server, g->state);
}

/* Messages in and out by method and status class, transactions by state. */
static void
register_message_metrics(struct hs *hs)
{
    static const char *const classes[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx"};
    static const char *const states[] = {"trying", "calling", "proceeding", "completed", "confirmed",
                                         "accepted"};
    static struct state_gauge gauges[2][6];
    struct metrics *m = hs->metrics;
    const struct px_stats *ps = px_stats(hs->px);
    const struct tx_stats *ts = tx_layer_stats(px_txl(hs->px));

    for (int i = 0; i <= SIP_REFER; i++)
        metrics_series_fn_labels(m, METRIC_COUNTER, "parley_sip_requests_in_total", "SIP requests received by method",
                                 m_u64, (void *)&ps->rx_by_method[i], "method", sip_method_name((enum sip_method)i),
                                 (const char *)NULL);
    for (int c = 1; c <= 6; c++) {
        metrics_series_fn_labels(m, METRIC_COUNTER, "parley_sip_responses_in_total",
                                 "SIP responses received by status class", m_u64, (void *)&ps->rx_resp_by_class[c],
                                 "class", classes[c], (const char *)NULL);
        metrics_series_fn_labels(m, METRIC_COUNTER, "parley_sip_responses_out_total",
                                 "SIP responses sent on server transactions by status class", m_u64,
                                 (void *)&ts->replies_by_class[c], "class", classes[c], (const char *)NULL);
    }
    for (int side = 0; side < 2; side++) {
        for (int st = 0; st < 6; st++) {
            gauges[side][st].hs = hs;
            gauges[side][st].server = side == 0;
            gauges[side][st].state = (enum tx_state)st;
            metrics_gauge_fn_labels(m, "parley_transactions_by_state", "live transactions by state", m_tx_state,
                                    &gauges[side][st], "kind", side == 0 ? "server" : "client", "state", states[st]);
        }
    }
}

static void
register_metrics(struct hs *hs)
{
    struct metrics *m = hs->metrics;

    metrics_add_process(m);
    register_message_metrics(hs);
    metrics_counter_fn(m, "parley_sip_requests_received_total", "SIP requests received", m_rx_requests, hs);
    metrics_counter_fn(m, "parley_sip_responses_received_total", "SIP responses received", m_rx_responses, hs);
    metrics_counter_fn(m, "parley_sip_parse_errors_total", "messages refused by the parser", m_parse_errors, hs);
    metrics_counter_fn(m, "parley_proxy_forwarded_total", "requests forwarded statefully", m_forwarded, hs);
    metrics_counter_fn(m, "parley_proxy_stateless_forwarded_total", "messages forwarded statelessly",
                       m_stateless, hs);
    metrics_series_fn_labels(m, METRIC_COUNTER, "parley_proxy_rejections_total", "requests refused by reason",
                             m_483, hs, "reason", "too_many_hops", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, "parley_proxy_rejections_total", "requests refused by reason",
                             m_482, hs, "reason", "loop", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, "parley_proxy_rejections_total", "requests refused by reason",
                             m_404, hs, "reason", "not_found", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, "parley_proxy_rejections_total", "requests refused by reason",
                             m_408, hs, "reason", "timeout", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, "parley_proxy_rejections_total", "requests refused by reason",
                             m_504, hs, "reason", "unreachable", (const char *)NULL);
    metrics_gauge_fn_labels(m, "parley_transactions", "live transactions", m_tx_server, hs, "kind", "server");
    metrics_gauge_fn_labels(m, "parley_transactions", "live transactions", m_tx_client, hs, "kind", "client");
    metrics_counter_fn(m, "parley_transaction_timeouts_total", "transactions timed out", m_tx_timeouts, hs);
    metrics_counter_fn(m, "parley_transaction_retransmits_total", "retransmissions sent", m_tx_retx, hs);
    metrics_counter_fn(m, "parley_transport_messages_received_total", "messages received", m_tp_rx, hs);
    metrics_counter_fn(m, "parley_transport_messages_sent_total", "messages sent", m_tp_tx, hs);
    metrics_gauge_fn(m, "parley_transport_connections", "open stream connections", m_tp_conns, hs);
    metrics_counter_fn(m, "parley_transport_oversize_total", "messages over the size limit", m_tp_oversize, hs);
    metrics_gauge_fn(m, "parley_registrar_aors", "addresses of record with bindings", m_aors, hs);
    metrics_gauge_fn(m, "parley_registrar_bindings", "registered bindings", m_bindings, hs);
    metrics_counter_fn(m, "parley_store_commits_total", "store transactions committed", m_commits, hs);
    metrics_counter_fn(m, "parley_store_commit_failures_total", "store commits that failed", m_commit_fail, hs);
    metrics_gauge_fn(m, "parley_store_last_commit_microseconds", "duration of the last commit", m_commit_us, hs);
}

/* ------------------------------------------------------------------ signals */

static void
exit_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hs *hs = arg;

    event_base_loopexit(hs->base, NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct hs *hs = arg;

    if (sig == SIGHUP) {
        struct cfg_error err;
        int n = cfg_reload(hs->cfg, &err);
        if (n < 0)
            log_err("reload failed: %s", err.msg);
        else
            log_info("configuration reloaded, %d setting(s) changed", n);
        hs_apps_reload(hs->apps);   /* a bad chain keeps the old one */
        if (hs->trust) {
            char terr[256];
            if (px_trust_reload_tls(hs->trust, terr, sizeof terr) != 0)
                log_err("TLS certificates not reloaded (old ones kept): %s", terr);
        }
        return;
    }
    if (hs->stopping) {
        event_base_loopexit(hs->base, NULL);
        return;
    }
    /* SIGTERM/SIGINT: refuse new work, let transactions in flight finish (bounded). */
    hs->stopping = true;
    log_info("shutting down (grace %lld ms)", hs->set.shutdown_grace_ms);
    agent_server_shutdown(hs->agents);   /* EVENT shutdown to every agent */
    px_shutdown(hs->px);
    tp_stop_listening(px_tp(hs->px));
    {
        struct timeval tv = {hs->set.shutdown_grace_ms / 1000, (hs->set.shutdown_grace_ms % 1000) * 1000};
        event_base_once(hs->base, -1, EV_TIMEOUT, exit_cb, hs, &tv);
    }
}

/* Apply reloadable registrar settings after a reload. */
static int
apply_settings(struct cfg *cfg, void *arg, struct cfg_error *err)
{
    struct hs *hs = arg;
    enum us_auth_mode mode = US_AUTH_OFF;
    bool etcd = hs->set.etcd && hs->set.etcd[0];

    if (etcd && (hs->set.server_name == NULL || hs->set.server_name[0] == '\0')) {
        cfg_error_set(err, "--server-name is required with --etcd");
        return -1;
    }
    if (hs->set.auth && hs->set.auth[0] && us_auth_mode_parse(hs->set.auth, &mode) != 0) {
        cfg_error_set(err, "--auth: '%s' is not off, register or all", hs->set.auth);
        return -1;
    }
    if (!etcd && hs->set.auth && hs->set.auth[0] && mode != US_AUTH_OFF) {
        cfg_error_set(err, "--auth %s needs the directory (--etcd)", hs->set.auth);
        return -1;
    }

    if (hs->set.min_expires > hs->set.max_expires) {
        cfg_error_set(err, "min-expires (%lld) is above max-expires (%lld)", hs->set.min_expires,
                      hs->set.max_expires);
        return -1;
    }
    if (hs->reg) {   /* NULL during cfg_load(): main() passes the values to us_registrar_new() */
        struct us_registrar_opts ro = {hs->set.min_expires, hs->set.max_expires, hs->set.default_expires,
                                       hs->set.max_contacts};
        us_registrar_set_opts(hs->reg, &ro);
    }
    return 0;
}

/* --etcd: the directory (announcing this server) and the authentication stage. */
static int
start_directory(struct hs *hs)
{
    struct hs_dir_opts dopts;
    struct us_auth_opts aopts;
    char address[300], admin[300];

    if (hs->set.etcd == NULL || hs->set.etcd[0] == '\0')
        return 0;
    memset(&dopts, 0, sizeof dopts);
    if (hs_dir_listener_uri(hs->set.listen.v[0], hs->set.advertise, address, sizeof address) != 0) {
        log_err("cannot make a SIP URI of the listener %s", hs->set.listen.v[0]);
        return -1;
    }
    admin[0] = '\0';
    if (hs->admin) {
        const char *colon = strrchr(hs->set.admin, ':');   /* "host:port", ":port" or "port" */
        if (colon == NULL || colon == hs->set.admin)
            snprintf(admin, sizeof admin, "http://127.0.0.1:%d", admin_http_port(hs->admin));
        else
            snprintf(admin, sizeof admin, "http://%.*s:%d", (int)(colon - hs->set.admin), hs->set.admin,
                     admin_http_port(hs->admin));
    }
    dopts.endpoints = hs->set.etcd;
    dopts.data_dir = hs->set.data_dir;
    dopts.name = hs->set.server_name;
    dopts.address = address;
    dopts.admin = admin[0] ? admin : NULL;
    dopts.cert_subject = hs->set.cert_subject;
    dopts.lease_ttl_s = (unsigned)((hs->set.lease_ttl_ms + 999) / 1000);
    dopts.domain = hs->set.domain;
    dopts.loc = hs->loc;
    dopts.st = hs->st;
    hs->dir = hs_dir_new(hs->base, &dopts);
    if (hs->dir == NULL)
        return -1;
    hs_dir_register_admin(hs->dir, hs->admin, hs->metrics);
    memset(&aopts, 0, sizeof aopts);
    aopts.mode = US_AUTH_ALL;
    if (hs->set.auth && hs->set.auth[0])
        us_auth_mode_parse(hs->set.auth, &aopts.mode);
    if (aopts.mode == US_AUTH_OFF)
        return 0;
    aopts.realm = hs->set.domain;
    aopts.server_name = hs->set.server_name;
    aopts.nonce_lifetime_s = (uint64_t)(hs->set.nonce_lifetime_ms / 1000);
    aopts.offer_sha256 = hs->set.auth_sha256;
    aopts.dir = hs_dir_dir(hs->dir);
    aopts.px = hs->px;
    aopts.on_failure = us_flood_auth_failed_cb;
    aopts.on_failure_arg = hs->flood;
    hs->auth = us_auth_new(&aopts, hs->metrics);
    if (hs->auth == NULL) {
        log_err("cannot start the authentication stage");
        return -1;
    }
    log_info("authentication: %s, realm %s", hs->set.auth && hs->set.auth[0] ? hs->set.auth : "all",
             hs->set.domain);
    return 0;
}

int
main(int argc, char **argv)
{
    struct hs hs;
    struct cfg_error cerr;
    struct px_opts po;
    struct store_opts so;
    struct us_registrar_opts ro;
    char err[256];
    int rc, status = 1;

    memset(&hs, 0, sizeof hs);
    signal(SIGPIPE, SIG_IGN);
    hs.cfg = cfg_new("parley-homeserver", PARLEY_VERSION);
    cfg_set_description(hs.cfg,
                        "Parley home server: registrar and User Services for the users homed on it, "
                        "and a transaction-stateful SIP proxy.");
    cfg_register_log(hs.cfg);
    cfg_register(hs.cfg, "homeserver", hs_rows, sizeof hs_rows / sizeof hs_rows[0], &hs.set);
    px_trust_cfg_register(hs.cfg, &hs.trust_set);
    hs.apps = hs_apps_new(hs.cfg);
    hs.agents = agent_server_new(hs.cfg);
    hs.archive = hs_archive_new(hs.cfg);
    hs.flood = us_flood_new(hs.cfg);
    cfg_add_check(hs.cfg, apply_settings, &hs);
    rc = cfg_load(hs.cfg, argc, argv, &cerr);
    if (rc == CFG_EXIT) {
        status = 0;   /* --help, --version, --check-config */
        goto out;
    }
    if (rc < 0) {
        fprintf(stderr, "parley-homeserver: %s\n", cerr.msg);
        status = 2;
        goto out;
    }
    hs.base = event_base_new();
    if (hs.base == NULL)
        goto out;
    if (mkdir(hs.set.data_dir, 0750) != 0 && errno != EEXIST) {
        log_err("cannot create data dir %s", hs.set.data_dir);
        goto out;
    }
    memset(&so, 0, sizeof so);
    so.data_dir = hs.set.data_dir;
    so.commit_interval_ms = (unsigned)hs.set.store_commit_interval_ms;
    hs.st = store_open(hs.base, &so, err, sizeof err);
    if (hs.st == NULL) {
        log_err("store: %s", err);
        goto out;
    }
    hs.loc = us_loc_new();
    ro.min_expires = hs.set.min_expires;
    ro.max_expires = hs.set.max_expires;
    ro.default_expires = hs.set.default_expires;
    ro.max_contacts = hs.set.max_contacts;
    hs.reg = us_registrar_new(hs.base, &ro, hs.loc, hs.st);
    if (hs.loc == NULL || hs.reg == NULL)
        goto out;
    {
        long n = us_registrar_load(hs.reg);
        if (n < 0) {
            log_err("cannot load registrations");
            goto out;
        }
        log_info("loaded %ld registrations from the store", n);
    }
    px_opts_default(&po);
    po.domain = hs.set.domain;
    po.advertise = hs.set.advertise;
    po.record_route = hs.set.record_route;
    po.sip.max_msg_size = (size_t)hs.set.max_msg_size;
    po.sip.max_headers = (unsigned)hs.set.max_headers;
    po.tp.max_msg_size = (size_t)hs.set.max_msg_size;
    po.tp.idle_timeout_s = (unsigned)(hs.set.idle_timeout_ms / 1000);
    po.tp.max_conns = (unsigned)hs.set.max_conns;
    po.tx.t1_ms = (unsigned)hs.set.t1_ms;
    po.tx.max_lifetime_ms = (unsigned)hs.set.tx_lifetime_ms;
    hs.px = px_new(hs.base, &po, hs_handle, &hs);
    if (hs.px == NULL)
        goto out;
    hs.trust = px_trust_new(hs.px, &hs.trust_set, err, sizeof err);
    if (hs.trust == NULL) {
        log_err("trust: %s", err);
        goto out;
    }
    if (hs.apps == NULL || hs_apps_start(hs.apps, hs.px, hs.set.domain, hs.loc, err, sizeof err) != 0) {
        log_err("application chain: %s", hs.apps ? err : "out of memory");
        status = 2;   /* a manifest or script error: refuse to start */
        goto out;
    }
    if (hs.agents == NULL || agent_server_start(hs.agents, hs.base, hs.px, err, sizeof err) != 0 ||
        hs.archive == NULL || hs_archive_start(hs.archive, hs.px, hs.set.data_dir, err, sizeof err) != 0) {
        log_err("%s", hs.agents && hs.archive ? err : "out of memory");
        status = 2;
        goto out;
    }
    hs_apps_set_agents(hs.apps, agent_server_enabled(hs.agents) ? hs.agents : NULL);
    for (size_t i = 0; i < hs.set.listen.n; i++) {
        if (px_listen(hs.px, hs.set.listen.v[i]) != 0)
            goto out;
        log_info("listening on %s", hs.set.listen.v[i]);
    }
    {
        struct us_services_opts uso = {hs.set.min_expires, hs.set.max_expires};
        if ((hs.svc = us_services_start(hs.base, hs.px, hs.st, hs.loc, hs.reg, &uso)) == NULL)
            goto out;
        us_services_set_home_fn(hs.svc, rls_home_is_here, &hs);
        hs_apps_set_presence(hs.apps, us_services_presence(hs.svc));
    }
    if (px_trust_listen(hs.trust, err, sizeof err) != 0) {
        log_err("%s", err);
        goto out;
    }
    hs.metrics = metrics_new();
    register_metrics(&hs);
    agent_server_metrics(hs.agents, hs.metrics);
    hs_archive_metrics(hs.archive, hs.metrics);
    px_trust_register_admin(hs.trust, NULL, hs.metrics);
    if (hs.flood == NULL || us_flood_add_metrics(hs.flood, hs.metrics) != 0)
        goto out;
    if (hs.set.admin && hs.set.admin[0]) {
        hs.admin = admin_http_start(hs.base, hs.set.admin, hs.set.admin_token, hs.metrics, hs.cfg);
        if (hs.admin == NULL)
            goto out;
        admin_http_add_health(hs.admin, "store", health_store, &hs);
        admin_http_add_health(hs.admin, "listeners", health_listeners, &hs);
        admin_http_add_route(hs.admin, "/api/registrations", api_registrations, &hs);
        hs_apps_register_admin(hs.apps, hs.admin);
        us_admin_register(hs.admin, us_services_lists(hs.svc), hs.px);   /* /api/contacts, /api/acl */
        px_trust_register_admin(hs.trust, hs.admin, NULL);
        log_info("admin endpoint on port %d", admin_http_port(hs.admin));
    }
    if (start_directory(&hs) != 0)
        goto out;
    hs_apps_set_dir(hs.apps, hs.dir ? hs_dir_dir(hs.dir) : NULL);
    px_trust_set_dir(hs.trust, hs.dir ? hs_dir_dir(hs.dir) : NULL);
    hs.sig_term = evsignal_new(hs.base, SIGTERM, signal_cb, &hs);
    hs.sig_int = evsignal_new(hs.base, SIGINT, signal_cb, &hs);
    hs.sig_hup = evsignal_new(hs.base, SIGHUP, signal_cb, &hs);
    event_add(hs.sig_term, NULL);
    event_add(hs.sig_int, NULL);
    event_add(hs.sig_hup, NULL);
    /* what a burst of transactions left free in the heap goes back to the system
     * (glibc keeps it resident otherwise): trimmed when over 4 MiB and a quarter */
    hs.housekeeper = mem_housekeeper_new(hs.base, 5000, 4u << 20);
    log_info("parley-homeserver %s serving domain %s", PARLEY_VERSION, hs.set.domain);
    event_base_dispatch(hs.base);
    status = 0;
    px_trust_set_dir(hs.trust, NULL);
    hs_dir_shutdown(hs.dir, hs.base);   /* revokes the announcement's lease */
    hs.dir = NULL;
    log_info("stopped");
out:
    if (hs.sig_term)
        event_free(hs.sig_term);
    if (hs.sig_int)
        event_free(hs.sig_int);
    if (hs.sig_hup)
        event_free(hs.sig_hup);
    admin_http_free(hs.admin);
    us_auth_free(hs.auth);
    us_flood_free(hs.flood);
    hs_dir_free(hs.dir);
    agent_server_free(hs.agents);   /* before px: it releases the requests it holds */
    hs_archive_free(hs.archive);    /* writes what is queued */
    px_trust_free(hs.trust);
    us_services_free(hs.svc);       /* before px: it holds client transactions */
    px_free(hs.px);
    us_registrar_free(hs.reg);
    store_close(hs.st);
    us_loc_free(hs.loc);
    hs_apps_free(hs.apps);
    metrics_free(hs.metrics);
    mem_housekeeper_free(hs.housekeeper);
    if (hs.base)
        event_base_free(hs.base);
    cfg_free(hs.cfg);
    return status;
}
