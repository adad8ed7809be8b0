#define LOG_MODULE "director"
#include "fe_director.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/px_trust.h"
#include "util/log.h"

struct fe_director {
    struct px *px;
    struct dir *dir;
    struct us_auth *auth;
    char *domain;
    char *path;                     /* "<self_uri;lr>" */
    bool proxy_register;
    struct tp_addr *proxy_addr;     /* listeners in proxy mode */
    enum tp_proto *proxy_proto;
    size_t nproxy_addr;
    char **proxy_ua;
    size_t nproxy_ua;
    struct fe_director_stats stats;
};

/* ------------------------------------------------------------------ helpers */

/* Parses <address>: host, port (default 5060/5061), transport (NULL when absent). */
static int
parse_address(const char *address, osip_uri_t **out)
{
    osip_uri_t *u = NULL;

    if (address == NULL || osip_uri_init(&u) != 0)
        return -1;
    if (osip_uri_parse(u, address) != 0 || u->host == NULL || u->host[0] == '\0') {
        osip_uri_free(u);
        return -1;
    }
    *out = u;
    return 0;
}

static int
format_hop(const char *address, const char *extra, char *out, size_t outlen)
{
    osip_uri_t *u = NULL;
    const char *transport;
    bool sips;
    int n;

    if (parse_address(address, &u) != 0)
        return -1;
    transport = sip_uri_param(u, "transport");
    sips = u->scheme && strcasecmp(u->scheme, "sips") == 0;
    n = snprintf(out, outlen, "<%s:%s:%u%s%s;%s%s>", sips ? "sips" : "sip", u->host,
                 (unsigned)sip_uri_port(u, sips ? 5061 : 5060), transport ? ";transport=" : "",
                 transport ? transport : "", extra, strcmp(extra, "maddr=") == 0 ? u->host : "");
    osip_uri_free(u);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int
fe_redirect_contact(const char *address, char *out, size_t outlen)
{
    /* design §1: the client re-sends its REGISTER there; maddr names the home host. */
    return format_hop(address, "maddr=", out, outlen);
}

int
fe_route_uri(const char *address, char *out, size_t outlen)
{
    return format_hop(address, "lr", out, outlen);   /* RFC 3261 §16.12: a loose route */
}

bool
fe_ua_matches(const char *const *patterns, size_t n, const char *ua)
{
    if (ua == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (fnmatch(patterns[i], ua, FNM_CASEFOLD) == 0)
            return true;
    return false;
}

/* The directory server behind the request's connection: an MTLS peer with a verified
 * serverAuth certificate whose subject the directory lists (design §2 "server" class). */
static const struct dir_server *
peer_server(struct fe_director *fd, struct px_req *req)
{
    struct tp_conn *conn;
    const char *subject;

    if (px_req_class(req) != TP_CLASS_SERVER)
        return NULL;   /* px_trust: a verified serverAuth MTLS peer listed in the directory */
    conn = tp_conn_get(px_tp(fd->px), px_req_conn_id(req));
    if (conn == NULL || !tp_conn_peer_has_cert(conn) || !tp_conn_peer_server_auth(conn))
        return NULL;
    subject = tp_conn_peer_subject(conn);
    if (subject == NULL || subject[0] == '\0')
        return NULL;
    return dir_server_find_by_subject(fd->dir, subject);
}

struct addr_match {
    const osip_uri_t *u;
    bool found;
};

static bool
match_server(const struct dir_server *s, void *arg)
{
    struct addr_match *m = arg;
    osip_uri_t *a = NULL;

    if (parse_address(s->address, &a) != 0)
        return true;
    if (strcasecmp(a->host, m->u->host) == 0 && sip_uri_port(a, 5060) == sip_uri_port(m->u, 5060))
        m->found = true;
    osip_uri_free(a);
    return !m->found;
}

/* Is <u> the address of a server in the directory? (no relay into the network) */
static bool
is_pool_server(struct fe_director *fd, const osip_uri_t *u)
{
    struct addr_match m = {u, false};

    if (u == NULL || u->host == NULL)
        return false;
    dir_server_foreach(fd->dir, match_server, &m);
    return m.found;
}

/*
 * The route set of a client's in-dialog request, from the received bytes (px_trust
 * stripped it from the message): every Route URI that is not ours, in order, into
 * <uris> (malloc'd). Returns the count.
 */
static int
raw_routes(struct fe_director *fd, const char *buf, size_t len, char **uris, int max)
{
    const char *p = buf, *end = buf + len, *eol, *v, *lt, *gt;
    int n = 0;

    while (p < end && n < max && (eol = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        p = eol + 1;
        if (p < end && (*p == '\r' || *p == '\n'))
            break;   /* end of headers */
        if ((size_t)(end - p) < 6 || strncasecmp(p, "route", 5) != 0)
            continue;
        for (v = p + 5; v < end && (*v == ' ' || *v == '\t'); v++)
            ;
        if (v >= end || *v != ':')
            continue;
        if ((eol = memchr(v, '\n', (size_t)(end - v))) == NULL)
            eol = end;
        for (lt = v; n < max && (lt = memchr(lt, '<', (size_t)(eol - lt))) != NULL; lt = gt + 1) {
            osip_uri_t *u = NULL;
            char uri[512];
            bool ours = false;
            if ((gt = memchr(lt, '>', (size_t)(eol - lt))) == NULL || (size_t)(gt - lt - 1) >= sizeof uri)
                break;
            memcpy(uri, lt + 1, (size_t)(gt - lt - 1));
            uri[gt - lt - 1] = '\0';
            if (osip_uri_init(&u) == 0 && osip_uri_parse(u, uri) == 0 && u->host)
                ours = px_is_us(fd->px, u->host, sip_uri_port(u, 5060)) ||
                       px_is_us(fd->px, u->host, sip_uri_port(u, 5061));
            osip_uri_free(u);
            if (!ours && (uris[n] = strdup(uri)) != NULL)
                n++;
        }
    }
    return n;
}

/*
 * A client's in-dialog request in a dialog we Record-Routed (px_trust: dialog_via_us):
 * the rest of its route set is put back, provided its first hop is a pool server, so the
 * request follows the dialog's path (home server, edge) instead of going straight to the
 * remote target. 0, or -1 when it was refused (403 sent).
 */
static int
restore_dialog_routes(struct fe_director *fd, struct px_req *req)
{
    const struct tp_rx *rx = px_req_rx(req);
    struct px_trust_req *tr = px_req_trust(req);
    char *uris[16];
    int n, rc = 0;

    if (rx == NULL || tr == NULL || !tr->dialog_via_us)
        return 0;
    n = raw_routes(fd, rx->buf, rx->len, uris, 16);
    sip_msg_remove_routes(px_req_msg(req));   /* px_trust kept the pool servers' among them */
    if (n > 0) {
        osip_uri_t *first = NULL;
        bool ok = osip_uri_init(&first) == 0 && osip_uri_parse(first, uris[0]) == 0 && is_pool_server(fd, first);
        osip_uri_free(first);
        if (!ok) {
            fd->stats.refused++;
            px_reply(req, 403, "Route Not Allowed");
            rc = -1;
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        if (rc == 0)
            sip_msg_push_route(px_req_msg(req), uris[i]);
        free(uris[i]);
    }
    return rc;
}

/* RFC 3327 §5.1: our Path goes on top of those already present. */
static int
push_path(struct fe_director *fd, struct sip_msg *msg)
{
    char *old[32];
    const char *v;
    int n = 0, rc = -1;

    for (int i = 0; n < 32 && (v = sip_msg_header(msg, "path", i)) != NULL; i++)
        if ((old[n] = strdup(v)) != NULL)
            n++;
    sip_msg_remove_header(msg, "Path");
    if (sip_msg_add_header(msg, "Path", fd->path) != 0)
        goto out;
    rc = 0;
    for (int i = 0; i < n; i++)
        if (sip_msg_add_header(msg, "Path", old[i]) != 0)
            rc = -1;
out:
    for (int i = 0; i < n; i++)
        free(old[i]);
    return rc;
}

/* The user record for the AOR of <u> in our domain, or an answer (404/403/480). Sets
 * <*home> to the user's announced home server. */
static const struct dir_user *
lookup_home(struct fe_director *fd, struct px_req *req, const osip_uri_t *u, const struct dir_server **home)
{
    const struct dir_user *user;
    char aor[512];

    *home = NULL;
    if (u == NULL || u->host == NULL || u->username == NULL || !px_is_our_domain(fd->px, u->host)) {
        fd->stats.refused++;
        px_reply(req, 403, "Not A User Of This Domain");
        return NULL;
    }
    if (sip_uri_aor(u, aor, sizeof aor) == NULL || (user = dir_user_get(fd->dir, aor)) == NULL) {
        fd->stats.refused++;
        px_reply(req, 404, "Unknown User");
        return NULL;
    }
    if (!user->enabled) {
        fd->stats.refused++;
        px_reply(req, 403, "User Disabled");
        return NULL;
    }
    *home = dir_server_get(fd->dir, user->home);
    if (*home == NULL || (*home)->role != DIR_ROLE_HOMESERVER) {
        fd->stats.refused++;
        px_reply(req, 480, "Home Server Not Available");
        return NULL;
    }
    return user;
}

/* Forwards <req> to <home>: same Request-URI, a loose Route to the home server. */
static enum px_verdict
forward_home(struct fe_director *fd, struct px_req *req, const struct dir_server *home)
{
    struct px_target t = {0};
    char route[512];
    char *ruri = sip_uri_str(sip_msg_ruri(px_req_msg(req)));
    int rc;

    if (ruri == NULL || fe_route_uri(home->address, route, sizeof route) != 0) {
        free(ruri);
        log_warn("home server %s announces an unusable address '%s'", home->name, home->address);
        px_reply(req, 480, "Home Server Unreachable");
        return PX_ANSWERED;
    }
    t.uri = ruri;
    t.route_set = route;
    t.q = 1000;
    rc = px_add_target(req, &t);
    free(ruri);
    if (rc != 0) {
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    return PX_FORWARD;
}

static void
redirect(struct fe_director *fd, struct px_req *req, const struct dir_server *home)
{
    struct sip_msg *resp;
    char contact[512];

    if (fe_redirect_contact(home->address, contact, sizeof contact) != 0) {
        log_warn("home server %s announces an unusable address '%s'", home->name, home->address);
        px_reply(req, 480, "Home Server Unreachable");
        return;
    }
    resp = px_reply_build(req, 302, "Moved Temporarily");
    if (resp == NULL)
        return;
    sip_msg_add_header(resp, "Contact", contact);
    fd->stats.redirects++;
    px_reply_msg(req, resp);
    sip_msg_free(resp);
}

/* Is an inside REGISTER to be proxied (listener or User-Agent pattern)? */
static bool
proxy_mode(struct fe_director *fd, struct px_req *req)
{
    const struct tp_rx *rx = px_req_rx(req);

    if (fd->proxy_register)
        return true;
    if (rx && rx->lis) {
        const struct tp_addr *la = tp_listener_addr(rx->lis);
        for (size_t i = 0; i < fd->nproxy_addr; i++)
            if (fd->proxy_proto[i] == tp_listener_proto(rx->lis) && tp_addr_equal(&fd->proxy_addr[i], la))
                return true;
    }
    return fe_ua_matches((const char *const *)fd->proxy_ua, fd->nproxy_ua,
                         sip_msg_header(px_req_msg(req), "user-agent", 0));
}

/* ------------------------------------------------------------------ the stage */

static enum px_verdict
from_edge(struct fe_director *fd, struct px_req *req)
{
    struct sip_msg *msg = px_req_msg(req);
    const struct dir_server *home;
    osip_uri_t *u;

    /* The edge authenticates nothing and the home servers trust our MTLS connection: the
     * outside user is authenticated here (design §1, us_auth with check_trusted). In-dialog
     * requests are not: the edge passes them only on the flow the dialog was set up for
     * (its Record-Route flow token), and that dialog's initial request was authenticated. */
    if (fd->auth && (sip_msg_to_tag(msg) == NULL || msg->method == SIP_REGISTER) &&
        !us_auth_stage(fd->auth, req, NULL))
        return PX_ANSWERED;

    if (px_req_has_route(req)) {
        /* In-dialog: the rest of the route set must name pool servers (design §2). */
        if (!is_pool_server(fd, sip_msg_route_uri(msg, 0))) {
            fd->stats.refused++;
            px_reply(req, 403, "Route Not Allowed");
            return PX_ANSWERED;
        }
        fd->stats.from_edge++;
        return PX_ROUTE;
    }
    if (sip_msg_to_tag(msg) != NULL && msg->method != SIP_REGISTER) {
        /* In-dialog from an outside user: the edge let it through only for a dialog it
         * Record-Routed, and px_trust stripped the route set the user sent, so the
         * Request-URI (the remote target) is the destination. */
        fd->stats.from_edge++;
        return PX_ROUTE;
    }
    u = msg->method == SIP_REGISTER ? (msg->osip->to ? msg->osip->to->url : NULL) : sip_msg_ruri(msg);
    if (lookup_home(fd, req, u, &home) == NULL)
        return PX_ANSWERED;
    if (msg->method == SIP_REGISTER && push_path(fd, msg) != 0) {
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    fd->stats.from_edge++;
    return forward_home(fd, req, home);
}

static enum px_verdict
inside_register(struct fe_director *fd, struct px_req *req)
{
    struct sip_msg *msg = px_req_msg(req);
    const struct dir_server *home;
    osip_uri_t *to = msg->osip->to ? msg->osip->to->url : NULL;
    bool proxy = proxy_mode(fd, req);

    /* The front-end authenticates, as the home server would (design §1); a proxied REGISTER
     * reaches the home server over a trusted connection, which skips its own challenge. */
    if (fd->auth && !us_auth_stage(fd->auth, req, NULL))
        return PX_ANSWERED;
    if (lookup_home(fd, req, to, &home) == NULL)
        return PX_ANSWERED;
    if (!proxy) {
        redirect(fd, req, home);
        return PX_ANSWERED;
    }
    if (push_path(fd, msg) != 0) {
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    fd->stats.proxied_registers++;
    return forward_home(fd, req, home);
}

enum px_verdict
fe_director_handle(struct px_req *req, void *arg)
{
    struct fe_director *fd = arg;
    struct sip_msg *msg = px_req_msg(req);
    const struct dir_server *peer = peer_server(fd, req);
    const struct dir_server *home;
    osip_uri_t *ru = sip_msg_ruri(msg);

    if (msg->method == SIP_OPTIONS && ru && ru->username == NULL && !px_req_has_route(req)) {
        px_reply(req, 200, NULL);   /* a keep-alive ping or the edge's probe */
        return PX_ANSWERED;
    }

    if (peer != NULL && peer->role == DIR_ROLE_EDGE)
        return from_edge(fd, req);
    if (peer != NULL || (px_req_has_route(req) && px_req_is_trusted(req)))
        return PX_ROUTE;   /* a pool server, or a loose-routed request over a trusted link */
    if (msg->method == SIP_REGISTER)
        return inside_register(fd, req);
    if (sip_msg_to_tag(msg) != NULL) {
        /* In-dialog (ACK and CANCEL never reach here): authenticated like the rest, then
         * along the dialog's route set. */
        if (fd->auth && !us_auth_stage(fd->auth, req, NULL))
            return PX_ANSWERED;
        return restore_dialog_routes(fd, req) == 0 ? PX_ROUTE : PX_ANSWERED;
    }
    if (fd->auth && !us_auth_stage(fd->auth, req, NULL))
        return PX_ANSWERED;
    if (lookup_home(fd, req, ru, &home) == NULL)
        return PX_ANSWERED;
    fd->stats.to_home++;
    return forward_home(fd, req, home);
}

/* ------------------------------------------------------------------ lifecycle */

struct fe_director *
fe_director_new(const struct fe_director_opts *opts)
{
    struct fe_director *fd = calloc(1, sizeof *fd);
    char path[512], err[256];

    if (fd == NULL)
        return NULL;
    fd->px = opts->px;
    fd->dir = opts->dir;
    fd->auth = opts->auth;
    fd->proxy_register = opts->proxy_register;
    fd->domain = strdup(opts->domain);
    if (fd->domain == NULL || fe_route_uri(opts->self_uri, path, sizeof path) != 0 ||
        (fd->path = strdup(path)) == NULL) {
        log_err("cannot make a Path of our address '%s'", opts->self_uri ? opts->self_uri : "");
        goto fail;
    }
    if (opts->nproxy_listen > 0) {
        fd->proxy_addr = calloc(opts->nproxy_listen, sizeof *fd->proxy_addr);
        fd->proxy_proto = calloc(opts->nproxy_listen, sizeof *fd->proxy_proto);
        if (fd->proxy_addr == NULL || fd->proxy_proto == NULL)
            goto fail;
        for (size_t i = 0; i < opts->nproxy_listen; i++) {
            if (tp_parse_listen_spec(opts->proxy_listen[i], &fd->proxy_proto[i], &fd->proxy_addr[i], err,
                                     sizeof err) != 0) {
                log_err("--register-proxy-listen %s: %s", opts->proxy_listen[i], err);
                goto fail;
            }
            fd->nproxy_addr++;
        }
    }
    if (opts->nproxy_ua > 0) {
        fd->proxy_ua = calloc(opts->nproxy_ua, sizeof *fd->proxy_ua);
        if (fd->proxy_ua == NULL)
            goto fail;
        for (size_t i = 0; i < opts->nproxy_ua; i++) {
            if ((fd->proxy_ua[i] = strdup(opts->proxy_ua[i])) == NULL)
                goto fail;
            fd->nproxy_ua++;
        }
    }
    return fd;
fail:
    fe_director_free(fd);
    return NULL;
}

void
fe_director_free(struct fe_director *fd)
{
    if (fd == NULL)
        return;
    for (size_t i = 0; i < fd->nproxy_ua; i++)
        free(fd->proxy_ua[i]);
    free(fd->proxy_ua);
    free(fd->proxy_addr);
    free(fd->proxy_proto);
    free(fd->domain);
    free(fd->path);
    free(fd);
}

void
fe_director_stats_get(const struct fe_director *fd, struct fe_director_stats *out)
{
    *out = fd->stats;
}
