#define LOG_MODULE "hs-dir"
#include "hs_dir.h"

#include <event2/buffer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "util/admin_http.h"
#include "util/log.h"
#include "util/metrics.h"

struct hs_dir {
    struct dir *dir;
    char *name;
    char *domain;
    struct us_location *loc;
    struct store *st;
    unsigned long dropped_users;   /* users whose bindings were dropped by a directory change */
    unsigned long redirects;       /* 301 to another home server */
    unsigned long routed_home;     /* requests proxied to the user's home server (hs_dir_route_home) */
    bool shutdown_done;
};

/* Removes every binding of <aor> from memory and from the store. */
static void
drop_bindings(struct hs_dir *hd, const char *aor, const char *why)
{
    struct us_aor *a = us_loc_find(hd->loc, aor);
    unsigned n = 0;

    if (a == NULL)
        return;
    while (a->bindings) {
        us_loc_binding_remove(hd->loc, a, a->bindings);
        n++;
    }
    us_loc_release(hd->loc, a);
    if (store_reg_del_aor(hd->st, aor, NULL, NULL) != 0)
        log_warn("%s: cannot queue the removal of its stored bindings", aor);
    hd->dropped_users++;
    log_info("%s %s: dropped %u binding(s)", aor, why, n);
}

/* Directory watch: a user removed, disabled, or moved away loses its registrations. */
static void
on_user(const char *aor, const struct dir_user *u, void *arg)
{
    struct hs_dir *hd = arg;

    if (u == NULL)
        drop_bindings(hd, aor, "removed from the directory");
    else if (!u->enabled)
        drop_bindings(hd, aor, "disabled");
    else if (strcasecmp(u->home, hd->name) != 0)
        drop_bindings(hd, aor, "moved to another home server");
}

struct hs_dir *
hs_dir_new(struct event_base *base, const struct hs_dir_opts *opts)
{
    struct hs_dir *hd = calloc(1, sizeof *hd);
    struct dir_opts dopts;
    char path[4096];

    if (hd == NULL)
        return NULL;
    hd->name = strdup(opts->name);
    hd->domain = strdup(opts->domain);
    hd->loc = opts->loc;
    hd->st = opts->st;
    if (hd->name == NULL || hd->domain == NULL)
        goto fail;
    if ((size_t)snprintf(path, sizeof path, "%s/directory.db", opts->data_dir) >= sizeof path) {
        log_err("data dir path too long");
        goto fail;
    }
    memset(&dopts, 0, sizeof dopts);
    dopts.endpoints = opts->endpoints;
    dopts.cache_path = path;
    dopts.name = opts->name;
    dopts.role = DIR_ROLE_HOMESERVER;
    dopts.address = opts->address;
    dopts.admin = opts->admin;
    dopts.cert_subject = opts->cert_subject;
    dopts.lease_ttl_s = opts->lease_ttl_s;
    dopts.on_user = on_user;
    dopts.cb_arg = hd;
    hd->dir = dir_new(base, &dopts);
    if (hd->dir == NULL) {
        log_err("cannot open the directory (etcd %s)", opts->endpoints);
        goto fail;
    }
    log_info("directory: etcd %s, %zu users in the cache%s, announcing %s at %s", opts->endpoints,
             dir_user_count(hd->dir), dir_is_ready(hd->dir) ? " (from disk)" : "", opts->name,
             opts->address);
    return hd;
fail:
    hs_dir_free(hd);
    return NULL;
}

void
hs_dir_free(struct hs_dir *hd)
{
    if (hd == NULL)
        return;
    dir_free(hd->dir);
    free(hd->name);
    free(hd->domain);
    free(hd);
}

static void
shutdown_done(void *arg)
{
    struct hs_dir *hd = arg;

    hd->shutdown_done = true;
}

/* Wakes the loop regularly while hs_dir_shutdown waits for the revoke. */
static void
shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

void
hs_dir_shutdown(struct hs_dir *hd, struct event_base *base)
{
    struct timeval tick = {0, 50000};
    struct event *ev;
    int i;

    if (hd == NULL)
        return;
    if (hd->dir && dir_shutdown(hd->dir, shutdown_done, hd) == 0) {
        /* The revoke runs on the loop: turn it until done (dir bounds it to ~3 s). */
        ev = event_new(base, -1, EV_PERSIST, shutdown_tick, hd);
        if (ev)
            event_add(ev, &tick);
        for (i = 0; i < 100 && !hd->shutdown_done; i++)
            event_base_loop(base, EVLOOP_ONCE);
        if (ev)
            event_free(ev);
        log_info("directory: lease %s", hd->shutdown_done ? "revoked" : "left to expire");
    }
    hs_dir_free(hd);
}

struct dir *
hs_dir_dir(struct hs_dir *hd)
{
    return hd->dir;
}

/* ------------------------------------------------------------------ REGISTER policy */

/* 301 to <s>: Contact <sip:<domain>:<port>;transport=<t>;maddr=<host>> (design §1, as
 * the front-end's 302). */
static void
redirect_to(struct hs_dir *hd, struct px_req *req, const struct dir_server *s)
{
    osip_uri_t *u = NULL;
    struct sip_msg *resp;
    char contact[512];
    const char *transport;

    if (osip_uri_init(&u) != 0 || osip_uri_parse(u, s->address) != 0 || u->host == NULL) {
        log_warn("server %s announces an unusable address '%s'", s->name, s->address);
        osip_uri_free(u);
        px_reply(req, 480, "Home Server Unreachable");
        return;
    }
    transport = sip_uri_param(u, "transport");
    snprintf(contact, sizeof contact, "<%s:%s:%u%s%s;maddr=%s>", u->scheme ? u->scheme : "sip", hd->domain,
             (unsigned)sip_uri_port(u, 5060), transport ? ";transport=" : "", transport ? transport : "",
             u->host);
    osip_uri_free(u);
    resp = px_reply_build(req, 301, NULL);
    if (resp == NULL)
        return;
    sip_msg_add_header(resp, "Contact", contact);
    hd->redirects++;
    px_reply_msg(req, resp);
    sip_msg_free(resp);
}

enum px_verdict
hs_dir_check_register(struct hs_dir *hd, struct px_req *req)
{
    struct sip_msg *msg = px_req_msg(req);
    osip_uri_t *to = msg->osip->to ? msg->osip->to->url : NULL;
    const struct dir_user *u;
    const struct dir_server *s;
    char aor[512];

    if (sip_uri_aor(to, aor, sizeof aor) == NULL)
        return PX_ROUTE;   /* the registrar answers 400 */
    u = dir_user_get(hd->dir, aor);
    if (u == NULL) {
        px_reply(req, 404, "Unknown User");
        return PX_ANSWERED;
    }
    if (!u->enabled) {
        px_reply(req, 403, "User Disabled");
        return PX_ANSWERED;
    }
    if (strcasecmp(u->home, hd->name) == 0)
        return PX_ROUTE;
    s = dir_server_get(hd->dir, u->home);
    if (s == NULL || s->role != DIR_ROLE_HOMESERVER) {
        px_reply(req, 480, "Home Server Not Available");
        return PX_ANSWERED;
    }
    redirect_to(hd, req, s);
    return PX_ANSWERED;
}

/* ------------------------------------------------------------------ routing to other home servers */

/* "<sip:host:port;transport=t;lr>" of an announced address "sip:host:port;transport=t". */
static int
home_route_uri(const char *address, char *out, size_t outlen)
{
    osip_uri_t *u = NULL;
    const char *transport;
    bool v6;
    int n = -1;

    if (address == NULL || osip_uri_init(&u) != 0)
        return -1;
    if (osip_uri_parse(u, address) == 0 && u->host && u->host[0]) {
        transport = sip_uri_param(u, "transport");
        v6 = strchr(u->host, ':') != NULL && u->host[0] != '[';
        n = snprintf(out, outlen, "<%s:%s%s%s:%u%s%s;lr>", u->scheme ? u->scheme : "sip", v6 ? "[" : "", u->host,
                     v6 ? "]" : "", (unsigned)sip_uri_port(u, transport && strcasecmp(transport, "tls") == 0 ? 5061 : 5060),
                     transport ? ";transport=" : "", transport ? transport : "");
        n = n < 0 || (size_t)n >= outlen ? -1 : 0;
    }
    osip_uri_free(u);
    return n;
}

bool
hs_dir_route_home(struct hs_dir *hd, struct px_req *req, const char *aor, enum px_verdict *v)
{
    const struct dir_user *u;
    const struct dir_server *s;
    struct px_target t = {0};
    char route[512];
    char *ruri;
    int rc;

    if (hd == NULL || aor == NULL || (u = dir_user_get(hd->dir, aor)) == NULL || !u->enabled ||
        u->home == NULL || strcasecmp(u->home, hd->name) == 0)
        return false;
    *v = PX_ANSWERED;
    s = dir_server_get(hd->dir, u->home);
    if (s == NULL || s->role != DIR_ROLE_HOMESERVER) {
        px_reply(req, 480, "Home Server Not Available");
        return true;
    }
    if (home_route_uri(s->address, route, sizeof route) != 0) {
        log_warn("home server %s announces an unusable address '%s'", s->name, s->address);
        px_reply(req, 480, "Home Server Unreachable");
        return true;
    }
    if ((ruri = sip_uri_str(sip_msg_ruri(px_req_msg(req)))) == NULL) {
        px_reply(req, 400, "Bad Request-URI");
        return true;
    }
    t.uri = ruri;
    t.route_set = route;   /* a directory address, not the client's choice: no relay check */
    t.q = 1000;
    rc = px_add_target(req, &t);
    free(ruri);
    if (rc != 0) {
        px_reply(req, 500, NULL);
        return true;
    }
    hd->routed_home++;
    px_log(req, LOG_DEBUG, "%s is homed on %s: proxied to %s", aor, s->name, route);
    *v = PX_FORWARD;
    return true;
}

/* ------------------------------------------------------------------ admin */

static bool
health_directory(void *arg, char *reason, size_t len)
{
    struct hs_dir *hd = arg;

    if (!dir_is_ready(hd->dir)) {
        snprintf(reason, len, "no directory copy yet (etcd %s, nothing on disk)",
                 dir_etcd_up(hd->dir) ? "up" : "unreachable");
        return false;
    }
    return true;
}

#define DIR_FN(fname, expr)                                                                            \
    static double fname(void *arg)                                                                     \
    {                                                                                                  \
        struct hs_dir *hd = arg;                                                                       \
        struct dir_stats ds;                                                                           \
        dir_stats_get(hd->dir, &ds);                                                                   \
        (void)ds;                                                                                      \
        return (double)(expr);                                                                         \
    }
DIR_FN(m_age, dir_cache_age_s(hd->dir))
DIR_FN(m_up, dir_etcd_up(hd->dir) ? 1 : 0)
DIR_FN(m_ready, dir_is_ready(hd->dir) ? 1 : 0)
DIR_FN(m_announced, dir_is_announced(hd->dir) ? 1 : 0)
DIR_FN(m_users, dir_user_count(hd->dir))
DIR_FN(m_syncs, ds.syncs)
DIR_FN(m_events, ds.events)
DIR_FN(m_rejected, ds.rejected)
DIR_FN(m_revision, ds.revision)
DIR_FN(m_dropped, hd->dropped_users)
DIR_FN(m_redirects, hd->redirects)
DIR_FN(m_routed_home, hd->routed_home)

/* JSON views of the directory cache for the admin endpoint (what this server trusts). */
struct json_iter {
    struct evbuffer *out;
    bool first;
};

static bool
server_json(const struct dir_server *sv, void *arg)
{
    struct json_iter *it = arg;

    evbuffer_add_printf(it->out, "%s{\"name\":", it->first ? "" : ",");
    admin_json_str(it->out, sv->name);
    evbuffer_add_printf(it->out, ",\"role\":");
    admin_json_str(it->out, dir_role_name(sv->role));
    evbuffer_add_printf(it->out, ",\"address\":");
    admin_json_str(it->out, sv->address ? sv->address : "");
    evbuffer_add_printf(it->out, ",\"cert_subject\":");
    admin_json_str(it->out, sv->cert_subject ? sv->cert_subject : "");
    evbuffer_add_printf(it->out, ",\"admin\":");
    admin_json_str(it->out, sv->admin ? sv->admin : "");
    evbuffer_add_printf(it->out, "}");
    it->first = false;
    return true;
}

static bool
route_json(const struct dir_route *rt, void *arg)
{
    struct json_iter *it = arg;

    evbuffer_add_printf(it->out, "%s{\"name\":", it->first ? "" : ",");
    admin_json_str(it->out, rt->name);
    evbuffer_add_printf(it->out, ",\"match\":");
    admin_json_str(it->out, rt->match ? rt->match : "");
    evbuffer_add_printf(it->out, ",\"next_hop\":");
    admin_json_str(it->out, rt->next_hop ? rt->next_hop : "");
    evbuffer_add_printf(it->out, ",\"treat_as_server\":%s,\"allow_from\":[", rt->treat_as_server ? "true" : "false");
    for (size_t k = 0; k < rt->n_allow_from; k++) {
        if (k)
            evbuffer_add_printf(it->out, ",");
        admin_json_str(it->out, rt->allow_from[k]);
    }
    evbuffer_add_printf(it->out, "]}");
    it->first = false;
    return true;
}

static int
api_servers(struct admin_req *r, struct evbuffer *out, void *arg)
{
    struct hs_dir *hd = arg;
    struct json_iter it = {out, true};

    admin_req_set_content_type(r, "application/json");
    evbuffer_add_printf(out, "{\"servers\":[");
    dir_server_foreach(hd->dir, server_json, &it);
    evbuffer_add_printf(out, "]}\n");
    return 200;
}

static int
api_routes(struct admin_req *r, struct evbuffer *out, void *arg)
{
    struct hs_dir *hd = arg;
    struct json_iter it = {out, true};

    admin_req_set_content_type(r, "application/json");
    evbuffer_add_printf(out, "{\"routes\":[");
    dir_route_foreach(hd->dir, route_json, &it);
    evbuffer_add_printf(out, "]}\n");
    return 200;
}

void
hs_dir_register_admin(struct hs_dir *hd, struct admin_http *admin, struct metrics *m)
{
    if (admin) {
        admin_http_add_health(admin, "directory", health_directory, hd);
        admin_http_add_route(admin, "/api/servers", api_servers, hd);
        admin_http_add_route(admin, "/api/routes", api_routes, hd);
    }
    if (m == NULL)
        return;
    metrics_gauge_fn(m, "parley_directory_cache_age_seconds",
                     "seconds since the directory cache last heard from etcd (-1: never)", m_age, hd);
    metrics_gauge_fn(m, "parley_directory_etcd_up", "1 when the last etcd exchange succeeded", m_up, hd);
    metrics_gauge_fn(m, "parley_directory_ready", "1 when the cache holds a usable copy", m_ready, hd);
    metrics_gauge_fn(m, "parley_directory_announced", "1 while this server is announced under a lease",
                     m_announced, hd);
    metrics_gauge_fn(m, "parley_directory_users", "users in the directory cache", m_users, hd);
    metrics_counter_fn(m, "parley_directory_syncs_total", "full loads from etcd", m_syncs, hd);
    metrics_counter_fn(m, "parley_directory_events_total", "watch events applied", m_events, hd);
    metrics_counter_fn(m, "parley_directory_rejected_total", "directory values refused", m_rejected, hd);
    metrics_gauge_fn(m, "parley_directory_revision", "etcd revision the cache reflects", m_revision, hd);
    metrics_counter_fn(m, "parley_directory_users_dropped_total",
                       "users whose bindings were dropped (removed, disabled, moved)", m_dropped, hd);
    metrics_counter_fn(m, "parley_registrar_redirects_total", "REGISTERs redirected to the user's home",
                       m_redirects, hd);
    metrics_counter_fn(m, "parley_homeserver_routed_home_total",
                       "requests proxied straight to the user's home server (another home server)",
                       m_routed_home, hd);
}

int
hs_dir_listener_uri(const char *spec, const char *advertise, char *out, size_t outlen)
{
    const char *c1 = strchr(spec, ':');
    const char *c2 = strrchr(spec, ':');
    char proto[8];
    int n;

    if (c1 == NULL || c2 == c1 || (size_t)(c1 - spec) >= sizeof proto)
        return -1;
    memcpy(proto, spec, (size_t)(c1 - spec));
    proto[c1 - spec] = '\0';
    for (char *p = proto; *p; p++)
        *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    if (advertise && advertise[0])
        n = snprintf(out, outlen, "sip:%s:%s;transport=%s", advertise, c2 + 1, proto);
    else
        n = snprintf(out, outlen, "sip:%.*s:%s;transport=%s", (int)(c2 - c1 - 1), c1 + 1, c2 + 1, proto);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
