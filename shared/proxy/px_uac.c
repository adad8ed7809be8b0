/*
 * px_uac: requests originated by this server (a home server's NOTIFYs, RFC 6665 §4.2.2),
 * sent on client transactions of the proxy's transaction layer.
 */
#define LOG_MODULE "proxy"
#include "proxy/px.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/util.h>

#include "util/log.h"

struct px_uac {
    struct px *px;
    struct tx *tx;            /* our reference, once sent */
    px_uac_fn *cb;            /* NULL once cancelled */
    void *arg;
    /* waiting for DNS: */
    char *buf;
    size_t len;
    char branch[96];
    enum sip_method method;
    struct tp_dest dest;
    uint16_t port;
    bool resolving;
    bool starting;            /* inside evdns_getaddrinfo(): its callback may run at once */
    bool failed;              /* ... and failed there (reported as a NULL handle) */
};

static void
uac_free(struct px_uac *u)
{
    if (u->tx) {
        tx_client_detach(u->tx);
        tx_unref(u->tx);
    }
    free(u->buf);
    free(u);
}

static void
uac_tx_cb(struct tx *ctx, struct sip_msg *resp, int code, void *arg)
{
    struct px_uac *u = arg;
    px_uac_fn *cb = u->cb;

    (void)ctx;
    if (code < 200)
        return;   /* provisionals: the final answer decides */
    if (cb)
        cb(code, resp, u->arg);
    uac_free(u);
}

static int
uac_start(struct px_uac *u)
{
    char *buf = u->buf;

    u->buf = NULL;
    u->tx = tx_client_send_bytes(px_txl(u->px), buf, u->len, u->branch, u->method, &u->dest, uac_tx_cb, u);
    return u->tx ? 0 : -1;
}

struct px_uac *
px_send_request(struct px *px, char *bytes, size_t len, const char *branch, enum sip_method m,
                const struct tp_dest *dest, px_uac_fn *cb, void *arg)
{
    struct px_uac *u;

    if (px == NULL || bytes == NULL || branch == NULL || dest == NULL || (u = calloc(1, sizeof *u)) == NULL) {
        free(bytes);
        return NULL;
    }
    u->px = px;
    u->cb = cb;
    u->arg = arg;
    u->buf = bytes;
    u->len = len;
    u->method = m;
    u->dest = *dest;
    snprintf(u->branch, sizeof u->branch, "%s", branch);
    if (uac_start(u) != 0) {
        free(u);
        return NULL;
    }
    return u;
}

void
px_uac_cancel(struct px_uac *u)
{
    if (u == NULL)
        return;
    u->cb = NULL;
    if (!u->resolving)
        uac_free(u);   /* the transaction keeps running without an owner */
}

static void
uac_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct px_uac *u = arg;

    u->resolving = false;
    if (result == EVUTIL_EAI_CANCEL || u->cb == NULL) {
        /* px_free() cancels lookups after the transaction layer is gone: touch nothing. */
        if (res)
            evutil_freeaddrinfo(res);
        uac_free(u);
        return;
    }
    if (result != 0 || res == NULL) {
        px_uac_fn *cb = u->cb;
        if (u->starting) {
            if (res)
                evutil_freeaddrinfo(res);
            u->failed = true;
            return;
        }
        log_info("request %s: cannot resolve the next hop: %s", u->branch, evutil_gai_strerror(result));
        if (res)
            evutil_freeaddrinfo(res);
        cb(503, NULL, u->arg);
        uac_free(u);
        return;
    }
    memcpy(&u->dest.addr.ss, res->ai_addr, res->ai_addrlen);
    u->dest.addr.len = (socklen_t)res->ai_addrlen;
    if (u->dest.addr.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&u->dest.addr.ss)->sin_port = htons(u->port);
    else
        ((struct sockaddr_in6 *)&u->dest.addr.ss)->sin6_port = htons(u->port);
    evutil_freeaddrinfo(res);
    if (uac_start(u) != 0) {
        px_uac_fn *cb = u->cb;
        if (u->starting) {
            u->failed = true;
            return;
        }
        cb(503, NULL, u->arg);
        uac_free(u);
    }
}

/* "<a>,<b;lr>" -> the <i>th URI without brackets into <out>; -1 past the end. */
static int
route_at(const char *set, int i, char *out, size_t outlen)
{
    const char *p = set;

    for (int k = 0; p && *p; k++) {
        const char *s, *e;
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        if (*p == '<') {
            s = p + 1;
            e = strchr(s, '>');
            if (e == NULL)
                return -1;
            p = e + 1;
        } else {
            s = p;
            e = strchr(s, ',');
            if (e == NULL)
                e = s + strlen(s);
            p = e;
        }
        if (k == i) {
            if ((size_t)(e - s) >= outlen)
                return -1;
            memcpy(out, s, (size_t)(e - s));
            out[e - s] = '\0';
            return 0;
        }
    }
    return -1;
}

static enum tp_proto
uri_transport(const osip_uri_t *u)
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

struct px_uac *
px_send_in_dialog(struct px *px, const struct px_dialog *d, enum sip_method m, const char *headers,
                  const char *ctype, const char *body, size_t blen, px_uac_fn *cb, void *arg)
{
    struct evbuffer *eb = NULL;
    osip_uri_t *hop = NULL, *lr = NULL;
    char first[1024], r[1024], host[128], branch[64];
    const char *ruri, *maddr, *name = sip_method_name(m);
    bool strict = false;
    int nroutes = 0;
    uint16_t port, myport;
    enum tp_proto proto;
    struct tp_dest dest;
    struct px_uac *u = NULL;
    char *bytes = NULL;
    size_t len;

    if (px == NULL || d == NULL || d->call_id == NULL || d->local_uri == NULL || d->local_tag == NULL ||
        d->remote_uri == NULL || d->remote_target == NULL || name == NULL)
        return NULL;
    /* RFC 3261 §12.2.1.1: the route set decides the Request-URI and the next hop. */
    if (d->route_set && route_at(d->route_set, 0, first, sizeof first) == 0) {
        while (route_at(d->route_set, nroutes, r, sizeof r) == 0)
            nroutes++;
        if (osip_uri_init(&lr) != 0 || osip_uri_parse(lr, first) != 0)
            goto out;
        strict = !sip_uri_has_param(lr, "lr");
    }
    ruri = strict ? first : d->remote_target;
    if (osip_uri_init(&hop) != 0 || osip_uri_parse(hop, nroutes > 0 ? first : d->remote_target) != 0 ||
        hop->host == NULL)
        goto out;
    proto = uri_transport(hop);
    maddr = sip_uri_param(hop, "maddr");
    port = sip_uri_port(hop, proto == TP_TLS ? 5061 : 5060);
    if (px_local_hostport(px, proto, host, sizeof host, &myport) != 0)
        goto out;
    sip_make_branch(branch, sizeof branch);
    if ((eb = evbuffer_new()) == NULL)
        goto out;
    evbuffer_add_printf(eb, "%s %s SIP/2.0\r\nVia: SIP/2.0/%s %s:%u;branch=%s;rport\r\nMax-Forwards: 70\r\n", name,
                        ruri, tp_proto_name(proto), host, myport, branch);
    for (int i = strict ? 1 : 0; i < nroutes; i++) {
        route_at(d->route_set, i, r, sizeof r);
        evbuffer_add_printf(eb, "Route: <%s>\r\n", r);
    }
    if (strict)
        evbuffer_add_printf(eb, "Route: <%s>\r\n", d->remote_target);   /* §12.2.1.1 */
    evbuffer_add_printf(eb, "From: <%s>;tag=%s\r\nTo: <%s>", d->local_uri, d->local_tag, d->remote_uri);
    if (d->remote_tag && d->remote_tag[0])
        evbuffer_add_printf(eb, ";tag=%s", d->remote_tag);
    evbuffer_add_printf(eb, "\r\nCall-ID: %s\r\nCSeq: %u %s\r\n", d->call_id, d->cseq, name);
    if (d->local_contact)
        evbuffer_add_printf(eb, "Contact: <%s>\r\n", d->local_contact);
    if (headers)
        evbuffer_add(eb, headers, strlen(headers));
    if (ctype && body)
        evbuffer_add_printf(eb, "Content-Type: %s\r\n", ctype);
    evbuffer_add_printf(eb, "Content-Length: %zu\r\n\r\n", ctype && body ? blen : 0);
    if (ctype && body && blen)
        evbuffer_add(eb, body, blen);
    len = evbuffer_get_length(eb);
    if ((bytes = malloc(len + 1)) == NULL)
        goto out;
    evbuffer_remove(eb, bytes, len);
    bytes[len] = '\0';

    memset(&dest, 0, sizeof dest);
    dest.proto = proto;
    dest.conn_id = d->conn_id;
    snprintf(host, sizeof host, "%s", maddr && *maddr ? maddr : hop->host);
    if (host[0] == '[') {   /* IPv6 reference */
        size_t n = strlen(host);
        memmove(host, host + 1, n);
        if (n >= 2 && host[n - 2] == ']')
            host[n - 2] = '\0';
    }
    if (tp_addr_from_ip(&dest.addr, host, port) == 0) {
        u = px_send_request(px, bytes, len, branch, m, &dest, cb, arg);
        bytes = NULL;
        goto out;
    }
    /* A host name: resolve first (evdns, cached), then send. */
    if ((u = calloc(1, sizeof *u)) == NULL || px_dns(px) == NULL) {
        free(u);
        u = NULL;
        goto out;
    }
    u->px = px;
    u->cb = cb;
    u->arg = arg;
    u->buf = bytes;
    u->len = len;
    u->method = m;
    u->dest = dest;
    u->port = port;
    u->resolving = true;
    snprintf(u->branch, sizeof u->branch, "%s", branch);
    bytes = NULL;
    {
        struct evutil_addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = proto == TP_UDP ? SOCK_DGRAM : SOCK_STREAM;
        /* The callback may run at once (hosts file, cache): failures there are returned
         * as NULL, never called back re-entrantly. */
        u->starting = true;
        evdns_getaddrinfo(px_dns(px), host, NULL, &hints, uac_dns_cb, u);
        u->starting = false;
        if (u->failed) {
            uac_free(u);
            u = NULL;
        }
    }
out:
    free(bytes);
    if (eb)
        evbuffer_free(eb);
    osip_uri_free(hop);
    osip_uri_free(lr);
    return u;
}
