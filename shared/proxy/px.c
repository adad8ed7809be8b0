#define LOG_MODULE "proxy"
#include "proxy/px.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "proxy/px_trust.h"
#include "sip/sip_raw.h"
#include "util/hash.h"
#include "util/log.h"

struct px {
    struct event_base *base;
    struct px_opts opts;
    char *advertise;
    char *domain;
    struct tp *tp;
    struct tx_layer *txl;
    struct evdns_base *dns;
    px_request_fn *handler;
    void *arg;
    struct px_stats stats;
    bool shutting_down;
    /* Our listeners' addresses as text, for px_is_us() on every request (no inet_ntop). */
    struct px_self {
        enum tp_proto proto;
        char host[64];        /* without brackets */
        char sent_by[72];     /* brackets for IPv6 */
        uint16_t port;
    } self[8];
    unsigned nself;
    struct px_req *live;      /* every px_req alive, for px_free() */
    struct px_trust *trust;   /* connection classes, stripping, throttling (px_trust.h) */
    px_final_fn *final_fn;    /* px_set_final_observer() (archiving), or NULL */
    void *final_arg;
    px_ack_fn *ack_fn;        /* px_set_ack_hook() (the edge), or NULL */
    void *ack_arg;
    px_rx_response_fn *rx_resp_fn;   /* px_set_rx_response_hook() (the edge), or NULL */
    void *rx_resp_arg;
};

struct px_branch {
    struct px_req *req;
    struct tx *ctx;
    char *uri;
    char *route_set;
    uint64_t conn_id;
    int q;
    int status;               /* final status; 0 while pending */
    bool started;
    bool done;
    bool got_response;
    bool client_dest;         /* px_target.client_supplied: destination authorization applies */
};

struct px_req {
    struct px *px;
    unsigned refs;
    struct tx *stx;
    struct sip_msg *msg;      /* borrowed from stx */
    const struct tp_rx *rx;   /* during the handler call only */
    struct tp_addr src;
    struct tp_addr local;
    enum tp_proto proto;
    uint64_t conn_id;
    struct tp_listener *lis;
    bool has_route;
    char loophash[17];
    struct px_branch *br;
    unsigned nbr;
    unsigned next;            /* first branch not started (branches sorted by q) */
    unsigned pending;
    struct sip_msg *best;
    int best_code;
    bool final_sent;
    bool cancelled;
    bool forwarding;          /* holds a reference while branches decide the answer */
    bool rr_in_pushed;        /* our incoming-side Record-Route is in msg (RFC 5658, start_branch) */
    struct px_req *live_next, *live_prev;
    px_response_fn *resp_fn;  /* px_req_on_response() hook, or NULL */
    void *resp_arg;
    px_release_fn *resp_release;
    struct px_trust_req trust;   /* class, throttle slot (px_trust.h) */
    char *via_below;          /* px_req_hide_vias(): the Via list forwarded below ours, or NULL */
};

void
px_opts_default(struct px_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->record_route = true;
    opts->max_branches = 16;
    sip_limits_default(&opts->sip);
    tp_limits_default(&opts->tp);
    tx_opts_default(&opts->tx);
}

struct tp *px_tp(struct px *px) { return px->tp; }
struct tx_layer *px_txl(struct px *px) { return px->txl; }
const struct px_stats *px_stats(const struct px *px) { return &px->stats; }
struct sip_msg *px_req_msg(const struct px_req *req) { return req->msg; }
struct tx *px_req_tx(const struct px_req *req) { return req->stx; }
const struct tp_rx *px_req_rx(const struct px_req *req) { return req->rx; }
bool px_req_is_trusted(const struct px_req *req) { return req->trust.cls != TP_CLASS_CLIENT; }
enum tp_class px_req_class(const struct px_req *req) { return req->trust.cls; }
struct px_trust_req *px_req_trust(struct px_req *req) { return &req->trust; }
void px_set_trust(struct px *px, struct px_trust *t) { px->trust = t; }
void
px_set_final_observer(struct px *px, px_final_fn *fn, void *arg)
{
    px->final_fn = fn;
    px->final_arg = arg;
}
void
px_set_ack_hook(struct px *px, px_ack_fn *fn, void *arg)
{
    px->ack_fn = fn;
    px->ack_arg = arg;
}

void
px_set_rx_response_hook(struct px *px, px_rx_response_fn *fn, void *arg)
{
    px->rx_resp_fn = fn;
    px->rx_resp_arg = arg;
}

enum tp_class
px_rx_class(struct px *px, const struct tp_rx *rx)
{
    return px->trust ? px_trust_rx_class(px->trust, rx) : TP_CLASS_CLIENT;
}

int
px_req_hide_vias(struct px_req *req, const char *value)
{
    char *v = value ? strdup(value) : NULL;

    if (value && v == NULL)
        return -1;
    free(req->via_below);
    req->via_below = v;
    return 0;
}
uint64_t px_req_conn_id(const struct px_req *req) { return req->conn_id; }
const struct tp_addr *px_req_src(const struct px_req *req) { return &req->src; }
enum tp_proto px_req_proto(const struct px_req *req) { return req->proto; }
bool px_req_has_route(const struct px_req *req) { return req->has_route; }

/* ------------------------------------------------------------------ identity */

bool
px_is_our_domain(const struct px *px, const char *host)
{
    return host && px->domain && strcasecmp(host, px->domain) == 0;
}

bool
px_is_us(const struct px *px, const char *host, uint16_t port)
{
    char h[64];

    if (host == NULL)
        return false;
    if (host[0] == '[') {
        size_t n = strlen(host);
        snprintf(h, sizeof h, "%.*s", (int)(n > 2 ? n - 2 : 0), host + 1);
        host = h;
    }
    for (unsigned i = 0; i < px->nself; i++) {
        if (port != 0 && port != px->self[i].port)
            continue;
        if (strcasecmp(host, px->self[i].host) == 0)
            return true;
        if (px->advertise && strcasecmp(host, px->advertise) == 0)
            return true;
    }
    return false;
}

/* Our sent-by for <proto>: the advertised host (or the listener's) and its port. */
static int
our_hostport(struct px *px, enum tp_proto proto, char *host, size_t hostlen, uint16_t *port)
{
    const struct px_self *self = NULL;

    for (unsigned i = 0; i < px->nself && self == NULL; i++)
        if (px->self[i].proto == proto)
            self = &px->self[i];
    for (unsigned i = 0; i < px->nself && self == NULL; i++)
        if (px->self[i].proto == TP_UDP || px->self[i].proto == TP_TCP)
            self = &px->self[i];
    if (self == NULL)
        return -1;
    snprintf(host, hostlen, "%s", px->advertise ? px->advertise : self->sent_by);
    *port = self->port;
    return 0;
}

int
px_local_hostport(struct px *px, enum tp_proto proto, char *host, size_t hostlen, uint16_t *port)
{
    return our_hostport(px, proto, host, hostlen, port);
}

struct evdns_base *px_dns(struct px *px) { return px->dns; }

static void
add_self(struct px *px, struct tp_listener *lis)
{
    struct px_self *s;
    const struct tp_addr *a = tp_listener_addr(lis);

    if (px->nself >= sizeof px->self / sizeof px->self[0])
        return;
    s = &px->self[px->nself++];
    s->proto = tp_listener_proto(lis);
    tp_addr_host(a, s->host, sizeof s->host);
    if (a->ss.ss_family == AF_INET6) {
        s->sent_by[0] = '[';
        memcpy(s->sent_by + 1, s->host, strlen(s->host));
        memcpy(s->sent_by + 1 + strlen(s->host), "]", 2);
    } else {
        memcpy(s->sent_by, s->host, strlen(s->host) + 1);
    }
    s->port = tp_addr_port(a);
}

/* ------------------------------------------------------------------ requests */

static void
req_free(struct px_req *r)
{
    if (r->px->trust)
        px_trust_req_done(r->px->trust, r);   /* the client's throttle slot */
    if (r->live_prev)
        r->live_prev->live_next = r->live_next;
    else if (r->px->live == r)
        r->px->live = r->live_next;
    if (r->live_next)
        r->live_next->live_prev = r->live_prev;
    for (unsigned i = 0; i < r->nbr; i++) {
        if (r->br[i].ctx) {
            tx_client_detach(r->br[i].ctx);
            tx_unref(r->br[i].ctx);
        }
        free(r->br[i].uri);
        free(r->br[i].route_set);
    }
    free(r->br);
    free(r->via_below);
    sip_msg_free(r->best);
    if (r->resp_release)
        r->resp_release(r->resp_arg);
    if (r->stx) {
        if (tx_owner(r->stx) == r)
            tx_set_owner(r->stx, NULL);
        tx_unref(r->stx);
    }
    free(r);
}

void px_req_ref(struct px_req *req) { req->refs++; }

void
px_req_unref(struct px_req *req)
{
    if (req && --req->refs == 0)
        req_free(req);
}

int
px_reply_msg(struct px_req *req, struct sip_msg *resp)
{
    int rc = tx_reply(req->stx, resp);

    if (rc == 0 && resp->status >= 200 && !req->final_sent) {
        req->final_sent = true;
        if (req->px->final_fn)
            req->px->final_fn(req, resp->status, req->px->final_arg);
    }
    return rc;
}

struct sip_msg *
px_reply_build(struct px_req *req, int code, const char *reason)
{
    return tx_reply_build(req->stx, code, reason);
}

void
px_req_log(const struct px_req *req, enum log_level lvl, bool peer, const char *module, const char *fmt, ...)
{
    char msg[1024], cid[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sip_msg_call_id(req->msg, cid, sizeof cid);
    if (peer)
        log_write_peer(lvl, module, "conn=%llu call-id=%s tx=%s %s: %s", (unsigned long long)req->conn_id, cid,
                       req->msg->branch ? req->msg->branch : "-", sip_msg_method_str(req->msg), msg);
    else
        log_write(lvl, module, "conn=%llu call-id=%s tx=%s %s: %s", (unsigned long long)req->conn_id, cid,
                  req->msg->branch ? req->msg->branch : "-", sip_msg_method_str(req->msg), msg);
}

int
px_reply(struct px_req *req, int code, const char *reason)
{
    return px_reply_extra(req, code, reason, NULL);
}

int
px_reply_stateless(struct px_req *req, int code, const char *reason, const char *extra)
{
    tx_set_stateless(req->stx);
    return px_reply_extra(req, code, reason, extra);
}

int
px_reply_extra(struct px_req *req, int code, const char *reason, const char *extra)
{
    int rc;

    if (code >= 400 && !req->final_sent)
        px_log_peer(req, LOG_INFO, "answered %d %s", code, reason ? reason : "");
    rc = tx_reply_extra(req->stx, code, reason, extra);
    if (rc == 0 && code >= 200 && !req->final_sent) {
        req->final_sent = true;
        if (req->px->final_fn)
            req->px->final_fn(req, code, req->px->final_arg);
    }
    switch (code) {
    case 404: req->px->stats.replies_404++; break;
    case 408: req->px->stats.replies_408++; break;
    case 504: req->px->stats.replies_504++; break;
    default: break;
    }
    return rc;
}

int
px_add_target(struct px_req *req, const struct px_target *t)
{
    struct px_branch *b;

    if (req->nbr >= req->px->opts.max_branches)
        return -1;
    b = realloc(req->br, (req->nbr + 1) * sizeof *req->br);
    if (b == NULL)
        return -1;
    req->br = b;
    b = &req->br[req->nbr];
    memset(b, 0, sizeof *b);
    b->req = req;
    b->uri = strdup(t->uri);
    b->route_set = t->route_set ? strdup(t->route_set) : NULL;
    b->conn_id = t->conn_id;
    b->q = t->q;
    b->client_dest = t->client_supplied;
    if (b->uri == NULL)
        return -1;
    req->nbr++;
    return 0;
}

void
px_req_on_response(struct px_req *req, px_response_fn *fn, void *arg, px_release_fn *release)
{
    if (req->resp_release)
        req->resp_release(req->resp_arg);
    req->resp_fn = fn;
    req->resp_arg = arg;
    req->resp_release = release;
}

/* Sends <resp> upstream through the response hook (which may answer instead). */
static int
relay_msg(struct px_req *r, struct sip_msg *resp)
{
    if (r->resp_fn && r->resp_fn(r, resp, r->resp_arg) != 0)
        return 0;
    return px_reply_msg(r, resp);
}

/* A response the proxy makes up itself, through the hook when there is one. */
static int
relay_code(struct px_req *r, int code, const char *reason)
{
    struct sip_msg *resp;
    int rc;

    if (r->resp_fn == NULL)
        return px_reply(r, code, reason);
    if ((resp = px_reply_build(r, code, reason)) == NULL)
        return -1;
    rc = relay_msg(r, resp);
    sip_msg_free(resp);
    return rc;
}

/* ------------------------------------------------------------------ loop detection */

/* RFC 3261 §16.6 step 8 / §16.3 step 4: a hash of what identifies the request here. */
static void
loop_hash(const struct sip_msg *msg, char out[17])
{
    uint64_t h = HASH_FNV64_SEED;
    char cid[256];
    char *ruri = sip_uri_str(sip_msg_ruri(msg));
    const char *parts[6];

    parts[0] = ruri ? ruri : "";
    parts[1] = sip_msg_from_tag(msg) ? sip_msg_from_tag(msg) : "";
    parts[2] = sip_msg_to_tag(msg) ? sip_msg_to_tag(msg) : "";
    parts[3] = sip_msg_call_id(msg, cid, sizeof cid);
    parts[4] = sip_msg_header(msg, "proxy-require", 0) ? sip_msg_header(msg, "proxy-require", 0) : "";
    parts[5] = "";
    for (int i = 0; i < 6; i++)
        h = hash_fnv1a64_step(hash_fnv1a64_str(h, parts[i]), '|');
    /* §16.6 step 8: the Route set too, so that a spiral (the same in-dialog request through
     * us twice, e.g. front-end -> home server -> front-end -> edge) is not taken for a loop */
    for (int i = 0, n = sip_msg_route_count(msg); i < n; i++) {
        char *r = sip_uri_str(sip_msg_route_uri(msg, i));
        h = hash_fnv1a64_step(hash_fnv1a64_str(h, r ? r : ""), ',');
        free(r);
    }
    h ^= msg->cseq;
    free(ruri);
    sip_hex64(out, h);
}

static bool
is_loop(struct px *px, const struct sip_msg *msg, const char *hash)
{
    int n = sip_msg_via_count(msg);
    char prefix[32];

    sip_strjoin(prefix, sizeof prefix, "z9hG4bKpl", hash, ".", (const char *)NULL);
    for (int i = 0; i < n; i++) {
        struct sip_via_info v;
        if (sip_msg_via_info(msg, i, &v) != 0)
            continue;
        if (v.branch && strncmp(v.branch, prefix, strlen(prefix)) == 0 &&
            px_is_us(px, v.host, v.port ? v.port : 5060))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------ next hop */

struct hop {
    char host[256];
    uint16_t port;
    enum tp_proto proto;
};

static enum tp_proto
uri_proto(const osip_uri_t *u)
{
    const char *t = sip_uri_param(u, "transport");

    if (u->scheme && strcasecmp(u->scheme, "sips") == 0)
        return TP_TLS;
    if (t && strcasecmp(t, "tcp") == 0)
        return TP_TCP;
    if (t && strcasecmp(t, "tls") == 0)
        return TP_TLS;
    return TP_UDP;
}

/*
 * RFC 3261 §16.6 steps 6-7 and §16.12: applies strict routing if the top Route has no
 * ;lr, then picks the destination from the top Route, else the Request-URI (maddr first).
 */
static int
next_hop(struct sip_msg *msg, struct hop *hop)
{
    osip_uri_t *u = sip_msg_route_uri(msg, 0);
    const char *maddr;

    if (u && !sip_uri_has_param(u, "lr")) {
        /* Strict router: its URI becomes the R-URI, the old R-URI goes last in Route. */
        char *old = sip_uri_str(sip_msg_ruri(msg));
        char *nr = sip_uri_str(u);
        int rc = -1;
        if (old && nr && sip_msg_pop_route(msg) == 0 && sip_msg_set_ruri(msg, nr) == 0) {
            osip_route_t *r = NULL;
            char buf[1024];
            snprintf(buf, sizeof buf, "<%s>", old);
            if (osip_route_init(&r) == 0 && osip_route_parse(r, buf) == 0) {
                osip_list_add(&msg->osip->routes, r, -1);
                rc = 0;
            } else if (r) {
                osip_route_free(r);
            }
        }
        free(old);
        free(nr);
        if (rc != 0)
            return -1;
        u = NULL;
    }
    if (u == NULL)
        u = sip_msg_ruri(msg);
    if (u == NULL || u->host == NULL)
        return -1;
    if (u->scheme && strcasecmp(u->scheme, "tel") == 0)
        return -1;   /* a tel: URI needs a static route (connection trust issue) */
    maddr = sip_uri_param(u, "maddr");
    snprintf(hop->host, sizeof hop->host, "%s", maddr && *maddr ? maddr : u->host);
    hop->proto = uri_proto(u);
    hop->port = sip_uri_port(u, hop->proto == TP_TLS ? 5061 : 5060);
    return 0;
}

/* ------------------------------------------------------------------ forwarding */

static void branch_cb(struct tx *ctx, struct sip_msg *resp, int code, void *arg);
static void start_next_group(struct px_req *r);
static void branch_done(struct px_req *r, struct px_branch *b, int code, struct sip_msg *resp);

struct dns_wait {
    struct px_req *r;
    unsigned idx;
    char *buf;
    size_t len;
    char branch[96];
    struct hop hop;
};

/* Sends the bytes of branch <idx> on a new client transaction (takes <buf>). */
static void
send_branch(struct px_req *r, unsigned idx, char *buf, size_t len, const char *branch,
            const struct tp_dest *dest)
{
    struct px_branch *b = &r->br[idx];

    b->ctx = tx_client_send_bytes(r->px->txl, buf, len, branch, r->msg->method, dest, branch_cb, b);
    if (b->ctx == NULL) {
        branch_done(r, b, 500, NULL);
        return;
    }
    r->px->stats.forwarded++;
}

static void
dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct dns_wait *w = arg;
    struct px_req *r = w->r;
    struct tp_dest dest;

    memset(&dest, 0, sizeof dest);
    if (result == 0 && res != NULL) {
        memcpy(&dest.addr.ss, res->ai_addr, res->ai_addrlen);
        dest.addr.len = (socklen_t)res->ai_addrlen;
        if (dest.addr.ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&dest.addr.ss)->sin_port = htons(w->hop.port);
        else
            ((struct sockaddr_in6 *)&dest.addr.ss)->sin6_port = htons(w->hop.port);
        dest.proto = w->hop.proto;
        dest.conn_id = r->br[w->idx].conn_id;
        dest.tls_name = NULL;
        send_branch(r, w->idx, w->buf, w->len, w->branch, &dest);
    } else {
        px_log(r, LOG_INFO, "cannot resolve %s: %s", w->hop.host, evutil_gai_strerror(result));
        free(w->buf);
        branch_done(r, &r->br[w->idx], 504, NULL);
    }
    if (res)
        evutil_freeaddrinfo(res);
    px_req_unref(r);
    free(w);
}

static bool
is_dialog_creating(const struct sip_msg *msg)
{
    return (msg->method == SIP_INVITE || msg->method == SIP_SUBSCRIBE || msg->method == SIP_REFER) &&
           sip_msg_to_tag(msg) == NULL;
}

/* The destination of a URI (RFC 3263 without NAPTR/SRV: maddr, host, port, transport). */
static int
uri_hop(const osip_uri_t *u, struct hop *hop)
{
    const char *maddr;

    if (u == NULL || u->host == NULL)
        return -1;
    if (u->scheme && strcasecmp(u->scheme, "tel") == 0)
        return -1;   /* a tel: URI needs a static route (connection trust issue) */
    maddr = sip_uri_param(u, "maddr");
    snprintf(hop->host, sizeof hop->host, "%s", maddr && *maddr ? maddr : u->host);
    hop->proto = uri_proto(u);
    hop->port = sip_uri_port(u, hop->proto == TP_TLS ? 5061 : 5060);
    return 0;
}

/* First URI of a comma-separated route set, without angle brackets, into <out>. */
static const char *
first_route(const char *set, char *out, size_t outlen)
{
    const char *p = set, *e;

    while (*p == ' ' || *p == ',')
        p++;
    if (*p == '<') {
        p++;
        e = strchr(p, '>');
    } else {
        e = strchr(p, ',');
    }
    if (e == NULL)
        e = p + strlen(p);
    snprintf(out, outlen, "%.*s", (int)(e - p), p);
    return out;
}

/*
 * The slow path, for a strict router (a Route without ;lr, RFC 3261 §16.12.1.2): clone
 * the request, rewrite it with osip and serialize.
 */
static int
build_strict(struct px_req *r, struct px_branch *b, const struct sip_fwd *f, struct hop *hop, char **out,
             size_t *len)
{
    osip_message_t *o = NULL;
    struct sip_msg *m;
    char mf[8];
    int rc = -1;

    if (osip_message_clone(r->msg->osip, &o) != 0 || (m = calloc(1, sizeof *m)) == NULL) {
        osip_message_free(o);
        return -1;
    }
    m->osip = o;
    m->request = true;
    m->method = r->msg->method;
    if (f->ruri && sip_msg_set_ruri(m, f->ruri) != 0)
        goto out;
    if (f->route_set) {
        char *copy = strdup(f->route_set), *items[32], *p, *tok;
        int n = 0;
        for (p = copy; copy && (tok = strsep(&p, ",")) != NULL && n < 32;) {
            while (*tok == ' ' || *tok == '<')
                tok++;
            char *e = tok + strlen(tok);
            while (e > tok && (e[-1] == ' ' || e[-1] == '>'))
                *--e = '\0';
            if (*tok)
                items[n++] = tok;
        }
        for (int i = n - 1; i >= 0; i--)
            sip_msg_push_route(m, items[i]);
        free(copy);
    }
    if (f->record_route)
        sip_msg_push_record_route(m, f->record_route);
    snprintf(mf, sizeof mf, "%d", f->max_forwards);
    sip_msg_set_header(m, "Max-Forwards", mf);
    if (f->via_below && sip_msg_replace_vias(m, f->via_below) != 0)
        goto out;
    if (next_hop(m, hop) != 0 || sip_msg_push_via(m, f->via) != 0)
        goto out;
    rc = sip_msg_serialize(m, out, len);
out:
    sip_msg_free(m);
    (void)b;
    return rc;
}

static void
start_branch(struct px_req *r, unsigned idx)
{
    struct px *px = r->px;
    struct px_branch *b = &r->br[idx];
    struct sip_fwd f;
    struct hop hop;
    struct tp_dest dest;
    char host[128], via[512], branch[96], rr[256], rr_out[256], first[512];
    uint16_t port;
    int mf;
    char *out = NULL, *cur;
    size_t len = 0;
    osip_uri_t *dst = NULL, *tmp = NULL;
    bool strict = false;

    b->started = true;
    r->pending++;
    memset(&f, 0, sizeof f);
    /* §16.6 step 2: the Request-URI of this target (unchanged when it is the same). */
    cur = sip_uri_str(sip_msg_ruri(r->msg));
    f.ruri = (cur && strcmp(cur, b->uri) == 0) ? NULL : b->uri;
    /* §16.6 step 3: Max-Forwards. */
    mf = sip_msg_max_forwards(r->msg);
    f.max_forwards = mf > 0 ? mf - 1 : 0;
    /* The registration path of the target (RFC 3327) goes first in the route set. */
    f.route_set = b->route_set;
    /* §16.6 step 4: Record-Route, on the transport the request came in on. */
    if (px->opts.record_route && is_dialog_creating(r->msg)) {
        char h[128];
        uint16_t p;
        if (our_hostport(px, r->proto, h, sizeof h, &p) == 0) {
            char ps[12];
            sip_strjoin(rr, sizeof rr, "sip:", h, ":", sip_utoa(ps, p), ";transport=",
                        r->proto == TP_TCP ? "tcp" : r->proto == TP_TLS ? "tls" : "udp", ";lr", (const char *)NULL);
            f.record_route = rr;
        }
    }
    /* §16.6 steps 6-7: the next hop is the top Route, else the Request-URI. */
    if (b->route_set) {
        if (osip_uri_init(&tmp) == 0 && osip_uri_parse(tmp, first_route(b->route_set, first, sizeof first)) == 0)
            dst = tmp;
    } else if (sip_msg_route_count(r->msg) > 0) {
        dst = sip_msg_route_uri(r->msg, 0);
    } else if (f.ruri == NULL) {
        dst = sip_msg_ruri(r->msg);
    } else if (osip_uri_init(&tmp) == 0 && osip_uri_parse(tmp, b->uri) == 0) {
        dst = tmp;
    }
    if (dst != NULL && (b->route_set || sip_msg_route_count(r->msg) > 0) && !sip_uri_has_param(dst, "lr"))
        strict = true;
    if (dst == NULL || (!strict && uri_hop(dst, &hop) != 0)) {
        osip_uri_free(tmp);
        free(cur);
        branch_done(r, b, 404, NULL);
        return;
    }
    /* RFC 5658 §4: leaving on another transport (a UDP client's INVITE to a TLS peer), we
     * Record-Route twice: the incoming side's address below (pushed into the request once,
     * for every branch) and the outgoing side's on top, so in-dialog requests from either
     * side reach us on the transport that side used. */
    if (f.record_route && !strict && hop.proto != r->proto) {
        char h[128];
        uint16_t p;
        if (our_hostport(px, hop.proto, h, sizeof h, &p) == 0) {
            snprintf(rr_out, sizeof rr_out, "sip:%s:%u;transport=%s;lr", h, p,
                     hop.proto == TP_TCP ? "tcp" : hop.proto == TP_TLS ? "tls" : "udp");
            if (strcmp(rr_out, rr) != 0 &&
                (r->rr_in_pushed || sip_msg_push_record_route(r->msg, rr) == 0)) {
                r->rr_in_pushed = true;
                f.record_route = rr_out;
            }
        }
    } else if (f.record_route && r->rr_in_pushed) {
        f.record_route = NULL;   /* this transport's entry is already in the request */
    }
    /* §16.6 step 8: our Via, with a branch carrying the loop-detection hash. */
    if (our_hostport(px, strict ? TP_UDP : hop.proto, host, sizeof host, &port) != 0) {
        osip_uri_free(tmp);
        free(cur);
        branch_done(r, b, 500, NULL);
        return;
    }
    {
        char rnd[48];
        sip_make_branch(rnd, sizeof rnd);
        sip_strjoin(branch, sizeof branch, "z9hG4bKpl", r->loophash, ".", rnd + 7, (const char *)NULL);
    }
    {
        char ps[12];
        sip_strjoin(via, sizeof via, "SIP/2.0/", tp_proto_name(strict ? TP_UDP : hop.proto), " ", host, ":",
                    sip_utoa(ps, port), ";branch=", branch, ";rport", (const char *)NULL);
    }
    f.via = via;
    f.via_below = r->via_below;
    if (strict) {
        if (build_strict(r, b, &f, &hop, &out, &len) != 0)
            out = NULL;
    } else if (sip_msg_forward_bytes(r->msg, &f, &out, &len) != 0) {
        out = NULL;
    }
    osip_uri_free(tmp);
    free(cur);
    if (out == NULL) {
        branch_done(r, b, 500, NULL);
        return;
    }
    if (b->client_dest && px->trust && !px_trust_dest_allowed(px->trust, r, hop.host, hop.port)) {
        free(out);   /* design §2 step 3: no open relay */
        branch_done(r, b, 403, NULL);
        return;
    }
    memset(&dest, 0, sizeof dest);
    dest.proto = hop.proto;
    dest.conn_id = b->conn_id;
    if (tp_addr_from_ip(&dest.addr, hop.host, hop.port) == 0) {
        if (px_is_us(px, hop.host, hop.port) && b->conn_id == 0) {
            /* Nothing here for it and nowhere else to go: not a loop to ourselves. */
            free(out);
            branch_done(r, b, 404, NULL);
            return;
        }
        px_log(r, LOG_DEBUG, "branch %u -> %s:%u (%zu bytes)", idx, hop.host, hop.port, len);
        send_branch(r, idx, out, len, branch, &dest);
        return;
    }
    /* A host name: resolve with evdns (cached), then send. */
    {
        struct dns_wait *w = calloc(1, sizeof *w);
        struct evutil_addrinfo hints;
        if (w == NULL) {
            free(out);
            branch_done(r, b, 500, NULL);
            return;
        }
        w->r = r;
        w->idx = idx;
        w->buf = out;
        w->len = len;
        snprintf(w->branch, sizeof w->branch, "%s", branch);
        w->hop = hop;
        px_req_ref(r);
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = hop.proto == TP_UDP ? SOCK_DGRAM : SOCK_STREAM;
        evdns_getaddrinfo(px->dns, hop.host, NULL, &hints, dns_cb, w);
    }
}

static void
start_next_group(struct px_req *r)
{
    unsigned first = r->next;

    if (first >= r->nbr)
        return;
    px_req_ref(r);
    while (r->next < r->nbr && r->br[r->next].q == r->br[first].q && !r->final_sent) {
        unsigned i = r->next++;
        start_branch(r, i);
    }
    px_req_unref(r);
}

static int
q_desc(const void *a, const void *b)
{
    const struct px_branch *x = a, *y = b;

    return y->q - x->q;
}

static void
start_forwarding(struct px_req *r)
{
    if (r->nbr == 0) {
        px_reply(r, 404, NULL);
        return;
    }
    qsort(r->br, r->nbr, sizeof *r->br, q_desc);
    for (unsigned i = 0; i < r->nbr; i++)
        r->br[i].req = r;   /* fix back pointers after the sort */
    r->forwarding = true;
    px_req_ref(r);           /* dropped by release_branches() once the answer is sent */
    start_next_group(r);
}

/* 2xx retransmissions and late responses after the request's final answer (RFC 6026). */
static void
late_cb(struct tx *ctx, struct sip_msg *resp, int code, void *arg)
{
    struct px *px = arg;
    struct tp_dest dest;
    char *out = NULL;
    size_t len = 0;

    if (resp == NULL || code < 200 || code >= 300)
        return;
    if (tx_response_dest_at(resp, 1, &dest) != 0 || sip_msg_response_forward_bytes(resp, &out, &len) != 0) {
        log_debug("late %d response not forwarded: no usable Via below ours", code);
        return;
    }
    px->stats.stateless_forwarded++;
    if (log_enabled(LOG_DEBUG)) {
        char to[80];
        log_debug("late %d response forwarded statelessly to %s %s", code, tp_proto_name(dest.proto),
                  tp_addr_str(&dest.addr, to, sizeof to));
    }
    tx_send_bytes(px->txl, out, len, &dest);
    free(out);
}

/* Forwards a response upstream on the request's server transaction (§16.7 step 9). */
static int
forward_response(struct px_req *r, struct sip_msg *resp)
{
    char *out = NULL;
    size_t len = 0;
    int code = resp->status;

    if (sip_msg_via_count(resp) < 2)
        return -1;   /* nothing to forward it along: only our own Via */
    if (sip_msg_response_forward_bytes(resp, &out, &len) != 0)
        return -1;
    if (tx_reply_bytes(r->stx, code, out, len) != 0)
        return -1;
    if (code >= 200 && !r->final_sent) {
        r->final_sent = true;
        if (r->px->final_fn)
            r->px->final_fn(r, code, r->px->final_arg);
    }
    return 0;
}

static void
cancel_pending(struct px_req *r)
{
    for (unsigned i = 0; i < r->nbr; i++)
        if (r->br[i].ctx && !r->br[i].done)
            tx_client_cancel(r->br[i].ctx);
    r->next = r->nbr;   /* start no further groups */
}

/* After the final response: branches hand their late 2xx to the stateless path. */
static void
release_branches(struct px_req *r)
{
    for (unsigned i = 0; i < r->nbr; i++) {
        if (r->br[i].ctx) {
            tx_client_rebind(r->br[i].ctx, late_cb, r->px);
            tx_unref(r->br[i].ctx);
            r->br[i].ctx = NULL;
        }
    }
    if (r->forwarding) {
        r->forwarding = false;
        px_req_unref(r);   /* callers hold their own reference */
    }
}

static int
class_rank(int code)
{
    /* §16.7 step 6: 6xx first, then the lowest class; 503 is turned into 500 when sent. */
    if (code >= 600)
        return 0;
    return code / 100;   /* 3 < 4 < 5 */
}

static void
send_best(struct px_req *r)
{
    if (r->final_sent)
        return;
    if (r->best) {
        if (r->best->status == 503) {
            /* §16.7 step 6: a proxy does not forward 503, it sends 500. */
            relay_code(r, 500, "Next Hop Unavailable");
        } else if (sip_msg_via_count(r->best) < 2) {
            /* A response that carried only our Via (a broken next hop): answer with its code. */
            relay_code(r, r->best->status, NULL);
        } else if (sip_msg_pop_via(r->best) == 0) {
            relay_msg(r, r->best);
        } else {
            relay_code(r, 500, NULL);
        }
    } else {
        int code = r->best_code ? r->best_code : 408;
        relay_code(r, code, code == 504 ? "Next Hop Unreachable" : NULL);
    }
    release_branches(r);
}

static void
branch_done(struct px_req *r, struct px_branch *b, int code, struct sip_msg *resp)
{
    if (b->done)
        return;
    b->done = true;
    b->status = code;
    r->pending--;
    if (!r->final_sent && code >= 300) {
        bool better = r->best_code == 0 || class_rank(code) < class_rank(r->best_code);
        if (better) {
            sip_msg_free(r->best);
            r->best = NULL;
            r->best_code = code;
            if (resp) {
                osip_message_t *o = NULL;
                sip_msg_ensure_full(resp);   /* e.g. WWW-Authenticate of a 401 goes upstream */
                if (osip_message_clone(resp->osip, &o) == 0 && (r->best = calloc(1, sizeof *r->best))) {
                    r->best->osip = o;
                    r->best->status = resp->status;
                    r->best->method = resp->method;
                    r->best->cseq = resp->cseq;
                } else {
                    osip_message_free(o);
                }
            }
        }
        if (code >= 600)
            cancel_pending(r);   /* §16.7 step 5 */
    }
    if (r->pending == 0 && !r->final_sent) {
        if (r->next < r->nbr && !r->cancelled && r->best_code < 600)
            start_next_group(r);
        if (r->pending == 0 && !r->final_sent)
            send_best(r);
    }
}

static void
branch_cb(struct tx *ctx, struct sip_msg *resp, int code, void *arg)
{
    struct px_branch *b = arg;
    struct px_req *r = b->req;

    px_req_ref(r);
    if (resp == NULL) {
        /* Timeout (408) or transport error (next hop unreachable: 504, design §2). */
        branch_done(r, b, code == 503 ? 504 : 408, NULL);
        goto out;
    }
    b->got_response = true;
    if (r->resp_fn != NULL)
        sip_msg_ensure_full(resp);   /* applications may read any header */
    if (code < 300 && sip_msg_via_count(resp) < 2)
        goto out;   /* nothing to forward it along: only our own Via */
    if (code < 200) {
        /* §16.7 step 5: forward provisionals (not 100) */
        if (code > 100 && !r->final_sent && r->resp_fn == NULL) {
            forward_response(r, resp);
        } else if (code > 100 && !r->final_sent && sip_msg_pop_via(resp) == 0) {
            relay_msg(r, resp);
            if (r->final_sent) {  /* the response hook answered instead */
                cancel_pending(r);
                release_branches(r);
            }
        }
        goto out;
    }
    if (code < 300) {
        if (!r->final_sent) {
            if (r->resp_fn == NULL)
                forward_response(r, resp);
            else if (sip_msg_pop_via(resp) == 0)
                relay_msg(r, resp);
            cancel_pending(r);   /* §16.7 step 10 */
        } else {
            late_cb(ctx, resp, code, r->px);   /* a second 2xx: forwarded statelessly */
        }
        b->done = true;
        r->pending--;
        release_branches(r);
        goto out;
    }
    branch_done(r, b, code, resp);
out:
    px_req_unref(r);
}

/* ------------------------------------------------------------------ CANCEL */

static void
handle_cancel(struct px_req *r)
{
    struct tx *inv = tx_find_cancelled(r->px->txl, r->stx);
    struct px_req *ir;

    r->px->stats.cancels++;
    if (inv == NULL || tx_state(inv) == TX_TERMINATED) {
        px_reply(r, 481, NULL);   /* §9.2: no matching transaction */
        return;
    }
    px_reply(r, 200, NULL);
    ir = tx_owner(inv);
    if (ir == NULL || ir->final_sent)
        return;
    ir->cancelled = true;
    px_req_ref(ir);
    cancel_pending(ir);
    /* A branch that never answered cannot be cancelled yet (§9.1): answer 487 now. */
    bool any_response = false;
    for (unsigned i = 0; i < ir->nbr; i++)
        any_response = any_response || ir->br[i].got_response;
    if (!any_response || ir->nbr == 0) {
        px_reply(ir, 487, NULL);
        release_branches(ir);
    }
    px_req_unref(ir);
}

/* ------------------------------------------------------------------ upcalls */

static bool
route_is_us(struct px *px, osip_uri_t *u)
{
    return u && u->host && px_is_us(px, u->host, sip_uri_port(u, uri_proto(u) == TP_TLS ? 5061 : 5060));
}

/* RFC 3261 §16.4: strict-router fix-up and removal of our own Route entries. */
static void
preprocess_routes(struct px *px, struct sip_msg *msg)
{
    osip_uri_t *ru = sip_msg_ruri(msg);
    int n = sip_msg_route_count(msg);

    if (n > 0 && ru && ru->username == NULL && route_is_us(px, ru)) {
        osip_uri_t *last = sip_msg_route_uri(msg, n - 1);
        char *s = sip_uri_str(last);
        if (s && sip_msg_set_ruri(msg, s) == 0) {
            osip_route_t *r = osip_list_get(&msg->osip->routes, n - 1);
            osip_list_remove(&msg->osip->routes, n - 1);
            osip_route_free(r);
            osip_message_force_update(msg->osip);
        }
        free(s);
    }
    while (sip_msg_route_count(msg) > 0 && route_is_us(px, sip_msg_route_uri(msg, 0)))
        sip_msg_pop_route(msg);
}

static void
on_request(struct tx *stx, const struct tp_rx *rx, void *arg)
{
    struct px *px = arg;
    struct sip_msg *msg = tx_request(stx);
    struct px_req *r = calloc(1, sizeof *r);
    enum px_verdict v;
    const char *preq;

    px->stats.rx_requests++;
    if (r == NULL) {
        tx_reply_code(stx, 500, NULL);
        return;
    }
    r->px = px;
    r->refs = 1;
    r->live_next = px->live;
    if (px->live)
        px->live->live_prev = r;
    px->live = r;
    r->stx = stx;
    tx_ref(stx);
    tx_set_owner(stx, r);
    r->msg = msg;
    r->rx = rx;
    r->src = rx->src;
    r->local = rx->local;
    r->proto = rx->proto;
    r->conn_id = rx->conn_id;
    r->lis = rx->lis;
    if (px->trust && px_trust_on_request(px->trust, r) != 0)
        goto out;   /* throttled: answered 503 */
    if (px->shutting_down) {
        px_reply(r, 503, "Shutting Down");
        goto out;
    }
    if (msg->method == SIP_CANCEL) {
        handle_cancel(r);
        goto out;
    }
    /* §16.3 step 3: Max-Forwards. An OPTIONS may be answered by the element itself (§11):
     * only one without a user part (a ping of a server); for a user it is 483 (RFC 4475
     * §3.3.11), before authentication (step 6) could challenge it and then forward it. */
    if (sip_msg_max_forwards(msg) == 0 &&
        (msg->method != SIP_OPTIONS || sip_msg_ruri(msg) == NULL || sip_msg_ruri(msg)->username != NULL)) {
        px->stats.replies_483++;
        px_reply(r, 483, NULL);
        goto out;
    }
    /* §16.3 step 4: loop detection. */
    loop_hash(msg, r->loophash);
    if (is_loop(px, msg, r->loophash)) {
        px->stats.replies_482++;
        px_reply(r, 482, NULL);
        goto out;
    }
    /* §16.3 step 5: Proxy-Require — we support no extension that needs it. */
    if ((preq = sip_msg_header(msg, "proxy-require", 0)) != NULL) {
        struct sip_msg *resp = px_reply_build(r, 420, NULL);
        px->stats.replies_420++;
        if (resp) {
            sip_msg_add_header(resp, "Unsupported", preq);
            px_reply_msg(r, resp);
            sip_msg_free(resp);
        }
        goto out;
    }
    preprocess_routes(px, msg);
    r->has_route = sip_msg_route_count(msg) > 0;
    if (msg->method == SIP_INVITE)
        tx_reply_code(stx, 100, NULL);   /* §16.2: a stateful proxy answers INVITE with 100 at once */
    if (log_enabled(LOG_DEBUG)) {
        char src[80];
        px_log(r, LOG_DEBUG, "from %s (%s)", tp_addr_str(&r->src, src, sizeof src), tp_proto_name(r->proto));
    }
    v = px->handler ? px->handler(r, px->arg) : PX_ROUTE;
    r->rx = NULL;
    switch (v) {
    case PX_ANSWERED:
    case PX_SUSPENDED:
        break;
    case PX_FORWARD:
        start_forwarding(r);
        break;
    case PX_ROUTE: {
        struct px_target t = {0};
        char *u;
        if (px->trust) {   /* static routes, client-supplied destinations (px_trust.h) */
            if (px_trust_route(px->trust, r) == 0)
                start_forwarding(r);
            break;
        }
        u = sip_uri_str(sip_msg_ruri(msg));
        if (u == NULL) {
            px_reply(r, 400, "Bad Request-URI");
            break;
        }
        t.uri = u;
        t.q = 1000;
        px_add_target(r, &t);
        free(u);
        start_forwarding(r);
        break;
    }
    }
out:
    r->rx = NULL;
    px_req_unref(r);
}

static void
on_server_timeout(struct tx *stx, void *arg)
{
    struct px_req *r = tx_owner(stx);

    if (r == NULL || r->final_sent)
        return;
    px_req_ref(r);
    cancel_pending(r);
    relay_code(r, 408, NULL);   /* through the response hook: a held request's agent learns of it */
    release_branches(r);
    px_req_unref(r);
}

void
px_req_forward(struct px_req *r)
{
    struct px_target t = {0};
    char *u;

    if (r->final_sent || r->forwarding)
        return;
    if (r->nbr > 0) {
        start_forwarding(r);
        return;
    }
    if (r->px->trust) {   /* as PX_ROUTE in on_request() */
        if (px_trust_route(r->px->trust, r) == 0)
            start_forwarding(r);
        return;
    }
    if ((u = sip_uri_str(sip_msg_ruri(r->msg))) == NULL) {
        px_reply(r, 400, "Bad Request-URI");
        return;
    }
    t.uri = u;
    t.q = 1000;
    px_add_target(r, &t);
    free(u);
    start_forwarding(r);
}

/* ACK for a 2xx (no transaction): forwarded statelessly along its route (§16.11). */
static void
on_ack(struct sip_msg *ack, const struct tp_rx *rx, void *arg)
{
    struct px *px = arg;
    struct hop hop;
    struct tp_dest dest;
    struct sip_fwd f;
    char host[128], via[512];
    uint16_t port;
    int mf = sip_msg_max_forwards(ack);
    char *out = NULL;
    size_t len = 0;
    osip_uri_t *u;

    if (px->trust && !px_trust_ack_allowed(px->trust, ack, rx))
        goto drop;   /* a client's ACK not routed through a dialog of ours */
    if (px->ack_fn && !px->ack_fn(ack, rx, px->ack_arg))
        goto drop;
    preprocess_routes(px, ack);
    u = sip_msg_route_count(ack) > 0 ? sip_msg_route_uri(ack, 0) : sip_msg_ruri(ack);
    if (mf <= 0 || u == NULL || (sip_msg_route_count(ack) > 0 && !sip_uri_has_param(u, "lr")) ||
        uri_hop(u, &hop) != 0 || px_is_us(px, hop.host, hop.port))
        goto drop;
    memset(&dest, 0, sizeof dest);
    if (tp_addr_from_ip(&dest.addr, hop.host, hop.port) != 0)
        goto drop;   /* stateless forwarding does not wait for DNS */
    dest.proto = hop.proto;
    if (our_hostport(px, hop.proto, host, sizeof host, &port) != 0)
        goto drop;
    /* §16.11: a stateless branch is a function of the incoming one. */
    {
        uint64_t h = hash_fnv1a64_str(HASH_FNV64_SEED, ack->branch ? ack->branch : "");
        snprintf(via, sizeof via, "SIP/2.0/%s %s:%u;branch=z9hG4bKsl%016llx", tp_proto_name(hop.proto),
                 host, port, (unsigned long long)h);
    }
    memset(&f, 0, sizeof f);
    f.via = via;
    f.max_forwards = mf - 1;
    if (sip_msg_forward_bytes(ack, &f, &out, &len) == 0) {
        px->stats.stateless_forwarded++;
        tx_send_bytes(px->txl, out, len, &dest);
        free(out);
    }
drop:
    sip_msg_free(ack);
}

/* A response matching no transaction: ours if the top Via is us; forward per next Via. */
static void
on_stray_response(struct sip_msg *resp, const struct tp_rx *rx, void *arg)
{
    struct px *px = arg;
    struct sip_via_info v;
    struct tp_dest dest;

    px->stats.rx_responses++;
    if (sip_msg_via_info(resp, 0, &v) == 0 && px_is_us(px, v.host, v.port ? v.port : 5060) &&
        sip_msg_via_count(resp) > 1 && tx_response_dest_at(resp, 1, &dest) == 0) {
        char *out = NULL;
        size_t len = 0;
        if (sip_msg_response_forward_bytes(resp, &out, &len) == 0) {
            px->stats.stateless_forwarded++;
            tx_send_bytes(px->txl, out, len, &dest);
            free(out);
        }
    } else {
        px->stats.dropped++;
    }
    sip_msg_free(resp);
}

/* ------------------------------------------------------------------ receive */

static void
on_receive(struct tp_rx *rx, void *arg)
{
    struct px *px = arg;
    struct sip_error err;
    struct sip_msg *msg = sip_msg_parse(rx->buf, rx->len, &px->opts.sip, &err);

    if (msg == NULL) {
        px->stats.parse_errors++;
        if (err.status > 0) {
            size_t outlen = 0;
            char *out = sip_reply_raw(rx->buf, rx->len, err.status, err.reason, &outlen);
            if (out) {
                struct tp_dest dest;
                memset(&dest, 0, sizeof dest);
                dest.proto = rx->proto;
                dest.conn_id = rx->conn_id;
                dest.addr = rx->src;
                tp_send(px->tp, &dest, out, outlen);
                free(out);
            }
        }
        {
            char src[80];
            log_peer(LOG_INFO, "refused message from %s: %d %s", tp_addr_str(&rx->src, src, sizeof src),
                     err.status, err.reason);
        }
        return;
    }
    if (msg->request)
        px->stats.rx_by_method[msg->method <= SIP_REFER ? msg->method : SIP_UNKNOWN]++;
    else
        px->stats.rx_resp_by_class[msg->status / 100 <= 6 ? msg->status / 100 : 0]++;
    if (msg->request) {
        char host[64];
        tp_addr_host(&rx->src, host, sizeof host);
        sip_msg_fix_via(msg, host, tp_addr_port(&rx->src));
    } else {
        px->stats.rx_responses++;
        if (px->rx_resp_fn && !px->rx_resp_fn(msg, rx, px->rx_resp_arg)) {
            px->stats.dropped++;
            sip_msg_free(msg);
            return;
        }
    }
    tx_receive(px->txl, msg, rx);
}

static void
on_send_fail(const char *buf, size_t len, const struct tp_addr *dst, enum tp_proto proto, void *arg)
{
    struct px *px = arg;

    tx_transport_failed(px->txl, buf, len);
}

struct px *
px_new(struct event_base *base, const struct px_opts *opts, px_request_fn *handler, void *arg)
{
    struct px *px = calloc(1, sizeof *px);
    struct tx_handlers h = {
        .request = on_request,
        .ack = on_ack,
        .stray_response = on_stray_response,
        .server_timeout = on_server_timeout,
    };

    if (px == NULL)
        return NULL;
    sip_init();
    px->base = base;
    if (opts)
        px->opts = *opts;
    else
        px_opts_default(&px->opts);
    px->opts.sip.partial_responses = true;   /* responses are forwarded from their bytes */
    px->advertise = px->opts.advertise ? strdup(px->opts.advertise) : NULL;
    px->domain = px->opts.domain ? strdup(px->opts.domain) : NULL;
    px->handler = handler;
    px->arg = arg;
    px->tp = tp_new(base, &px->opts.tp, on_receive, on_send_fail, px);
    px->txl = px->tp ? tx_layer_new(base, px->tp, &px->opts.tx, &h, px) : NULL;
    px->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (px->txl == NULL) {
        px_free(px);
        return NULL;
    }
    return px;
}

void
px_free(struct px *px)
{
    if (px == NULL)
        return;
    /*
     * A request still forwarding holds its transactions and itself (a cycle the
     * transaction table cannot break): release it before the table goes.
     */
    for (struct px_req *r = px->live, *next; r; r = next) {
        next = r->live_next;
        for (unsigned i = 0; i < r->nbr; i++) {
            if (r->br[i].ctx) {
                tx_client_detach(r->br[i].ctx);
                tx_unref(r->br[i].ctx);
                r->br[i].ctx = NULL;
            }
        }
        if (r->forwarding) {
            r->forwarding = false;
            px_req_unref(r);
        }
    }
    tx_layer_free(px->txl);
    tp_free(px->tp);
    if (px->dns)
        evdns_base_free(px->dns, 1);
    free(px->advertise);
    free(px->domain);
    free(px);
}

int
px_listen(struct px *px, const char *spec)
{
    enum tp_proto proto;
    struct tp_addr addr;
    char err[256];

    if (tp_parse_listen_spec(spec, &proto, &addr, err, sizeof err) != 0) {
        log_err("--listen %s: %s", spec, err);
        return -1;
    }
    {
        struct tp_listener *lis = tp_listen(px->tp, proto, &addr);
        if (lis == NULL)
            return -1;
        add_self(px, lis);
        return 0;
    }
}

void
px_shutdown(struct px *px)
{
    px->shutting_down = true;
}
