#define LOG_MODULE "edge"
#include "edge_policy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "proxy/px_trust.h"
#include "sip/sip_raw.h"
#include "util/log.h"

struct edge_fe {
    struct edge_policy *ep;
    char *uri;                      /* as configured */
    char *route;                    /* "<uri;lr>" */
    char host[256];
    uint16_t port;
    enum tp_proto proto;
    bool up;
    uint64_t down_until_ms;         /* monotonic; 0 = not held down */
    struct px_uac *probe;           /* OPTIONS in flight, or NULL */
    uint64_t probe_sent_ms;         /* monotonic, when <probe> went out */
    struct evdns_getaddrinfo_request *dnsreq;   /* name lookup in flight, or NULL */
    bool resolving;
    unsigned probe_seq;
};

struct edge_self {
    char host[256];
    uint16_t port;
    const char *transport;          /* "tls", "tcp", "udp" */
};

struct edge_policy {
    struct px *px;
    struct event_base *base;
    unsigned char key[32];
    struct edge_fe *fe;
    size_t nfe;
    struct edge_self out, in;       /* our outside and inside addresses */
    bool same;                      /* out == in: one Record-Route entry */
    unsigned probe_ms, hold_ms;
    struct event *probe_timer;
    struct edge_policy_stats stats;
};

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static enum tp_proto
uri_proto(const osip_uri_t *u)
{
    const char *t = sip_uri_param(u, "transport");

    if ((u->scheme && strcasecmp(u->scheme, "sips") == 0) || (t && strcasecmp(t, "tls") == 0))
        return TP_TLS;
    if (t && strcasecmp(t, "tcp") == 0)
        return TP_TCP;
    return TP_UDP;
}

static const char *
proto_param(enum tp_proto p)
{
    return p == TP_TLS ? "tls" : p == TP_TCP ? "tcp" : "udp";
}

/* host, port and proto of a SIP URI text. 0 or -1. */
static int
parse_hostport(const char *text, char *host, size_t hostlen, uint16_t *port, enum tp_proto *proto)
{
    osip_uri_t *u = NULL;
    int rc = -1;

    if (text == NULL || osip_uri_init(&u) != 0)
        return -1;
    if (osip_uri_parse(u, text) == 0 && u->host && u->host[0]) {
        *proto = uri_proto(u);
        *port = sip_uri_port(u, *proto == TP_TLS ? 5061 : 5060);
        snprintf(host, hostlen, "%s", u->host);
        rc = 0;
    }
    osip_uri_free(u);
    return rc;
}

/* ------------------------------------------------------------------ flow tokens */

static void
flow_mac(const unsigned char key[32], const char *text, size_t len, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;

    HMAC(EVP_sha256(), key, 32, (const unsigned char *)text, len, md, &mdlen);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int
edge_flow_token(const unsigned char key[32], const struct edge_flow *f, char *out, size_t outlen)
{
    char body[200], mac[17], hex[2 * sizeof f->addr.ss + 1];
    const unsigned char *a = (const unsigned char *)&f->addr.ss;
    int n;

    if (f->addr.len > sizeof f->addr.ss)
        return -1;
    for (socklen_t i = 0; i < f->addr.len; i++)
        snprintf(hex + 2 * i, 3, "%02x", a[i]);
    hex[2 * f->addr.len] = '\0';
    n = snprintf(body, sizeof body, "%c%" PRIx64 ".%s", proto_param(f->proto)[1], f->conn_id, hex);
    if (n < 0 || (size_t)n >= sizeof body)
        return -1;
    flow_mac(key, body, (size_t)n, mac);
    n = snprintf(out, outlen, "%s.%s", body, mac);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int
edge_flow_parse(const unsigned char key[32], const char *token, struct edge_flow *out)
{
    const char *dot1, *dot2;
    char mac[17], *end;
    size_t hexlen;

    memset(out, 0, sizeof *out);
    if (token == NULL || (dot1 = strchr(token, '.')) == NULL || (dot2 = strchr(dot1 + 1, '.')) == NULL)
        return -1;
    if (strlen(dot2 + 1) != 16 || dot2 - token > 190)
        return -1;
    flow_mac(key, token, (size_t)(dot2 - token), mac);
    if (CRYPTO_memcmp(mac, dot2 + 1, 16) != 0)
        return -1;
    switch (token[0]) {
    case 'l': out->proto = TP_TLS; break;   /* "tls"[1] */
    case 'c': out->proto = TP_TCP; break;   /* "tcp"[1] */
    case 'd': out->proto = TP_UDP; break;   /* "udp"[1] */
    default: return -1;
    }
    out->conn_id = strtoull(token + 1, &end, 16);
    if (end != dot1)
        return -1;
    hexlen = (size_t)(dot2 - dot1 - 1);
    if (hexlen % 2 != 0 || hexlen / 2 > sizeof out->addr.ss)
        return -1;
    for (size_t i = 0; i < hexlen / 2; i++) {
        unsigned v;
        if (sscanf(dot1 + 1 + 2 * i, "%2x", &v) != 1)
            return -1;
        ((unsigned char *)&out->addr.ss)[i] = (unsigned char)v;
    }
    out->addr.len = (socklen_t)(hexlen / 2);
    return 0;
}

int
edge_raw_first_route_user(const char *buf, size_t len, char *out, size_t outlen)
{
    const char *p = buf, *end = buf + len, *eol, *v, *at, *u;

    /* header lines start after a CRLF; the first line is the start line */
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            return -1;
        p = eol + 1;
        if (p < end && (*p == '\r' || *p == '\n'))
            return -1;   /* end of headers */
        if ((size_t)(end - p) < 6 || strncasecmp(p, "route", 5) != 0)
            continue;
        v = p + 5;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        if (v >= end || *v != ':')
            continue;
        eol = memchr(v, '\n', (size_t)(end - v));
        if (eol == NULL)
            eol = end;
        u = memchr(v, '<', (size_t)(eol - v));
        u = u ? u + 1 : v + 1;
        while (u < eol && (*u == ' ' || *u == '\t'))
            u++;
        if ((size_t)(eol - u) > 4 && strncasecmp(u, "sip:", 4) == 0)
            u += 4;
        else if ((size_t)(eol - u) > 5 && strncasecmp(u, "sips:", 5) == 0)
            u += 5;
        else
            return -1;
        for (at = u; at < eol && *at != '@' && *at != '>' && *at != ';' && *at != ','; at++)
            ;
        if (at >= eol || *at != '@' || at == u || (size_t)(at - u) >= outlen)
            return -1;
        memcpy(out, u, (size_t)(at - u));
        out[at - u] = '\0';
        return 0;
    }
    return -1;
}

int
edge_raw_routes(const char *buf, size_t len, edge_route_fn *fn, void *arg)
{
    const char *p = buf, *end = buf + len, *eol, *v;
    char uri[512];
    int n = 0;

    while (p < end && n < 32) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            break;
        p = eol + 1;
        if (p < end && (*p == '\r' || *p == '\n'))
            break;   /* end of headers */
        if ((size_t)(end - p) < 6 || strncasecmp(p, "route", 5) != 0)
            continue;
        v = p + 5;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        if (v >= end || *v != ':')
            continue;
        eol = memchr(v, '\n', (size_t)(end - v));
        if (eol == NULL)
            eol = end;
        /* each <uri> of the line (Route is name-addr only: RFC 3261 §25.1) */
        for (const char *lt = v; n < 32 && (lt = memchr(lt, '<', (size_t)(eol - lt))) != NULL;) {
            const char *gt = memchr(lt, '>', (size_t)(eol - lt));
            if (gt == NULL || (size_t)(gt - lt - 1) >= sizeof uri)
                break;
            memcpy(uri, lt + 1, (size_t)(gt - lt - 1));
            uri[gt - lt - 1] = '\0';
            fn(uri, arg);
            n++;
            lt = gt + 1;
        }
    }
    return n;
}

/* ------------------------------------------------------------------ front-ends */

static struct edge_fe *
pick_frontend(struct edge_policy *ep)
{
    for (size_t i = 0; i < ep->nfe; i++)
        if (ep->fe[i].up)
            return &ep->fe[i];
    return ep->nfe ? &ep->fe[0] : NULL;   /* all down: try the first (a probe may be late) */
}

static void
mark(struct edge_fe *f, bool up, const char *why)
{
    if (f->up && !up) {
        f->ep->stats.failovers++;
        f->down_until_ms = now_ms() + f->ep->hold_ms;
        log_warn("front-end %s is down (%s)", f->uri, why);
    } else if (!f->up && up) {
        log_info("front-end %s is up", f->uri);
    }
    f->up = up;
}

static void
probe_cb(int code, struct sip_msg *resp, void *arg)
{
    struct edge_fe *f = arg;

    f->probe = NULL;
    /* Any answer from the front-end itself means it is alive (a made-up 408/503 is not). */
    mark(f, resp != NULL, resp ? "" : code == 408 ? "probe timed out" : "probe not delivered");
}

static void
send_probe(struct edge_fe *f, const struct tp_addr *addr)
{
    struct edge_policy *ep = f->ep;
    struct tp_dest dest;
    char host[256], branch[64], buf[1024];
    uint16_t port;
    int n;

    if (px_local_hostport(ep->px, f->proto, host, sizeof host, &port) != 0)
        return;
    sip_make_branch(branch, sizeof branch);
    n = snprintf(buf, sizeof buf,
                 "OPTIONS sip:%s:%u;transport=%s SIP/2.0\r\n"
                 "Via: SIP/2.0/%s %s:%u;branch=%s;rport\r\n"
                 "Max-Forwards: 1\r\n"
                 "From: <sip:edge@%s>;tag=probe%u\r\n"
                 "To: <sip:%s:%u>\r\n"
                 "Call-ID: %s-probe-%u@%s\r\n"
                 "CSeq: %u OPTIONS\r\n"
                 "Content-Length: 0\r\n\r\n",
                 f->host, f->port, proto_param(f->proto), tp_proto_name(f->proto), host, port, branch, host,
                 f->probe_seq, f->host, f->port, branch, f->probe_seq, host, f->probe_seq + 1);
    f->probe_seq++;
    if (n < 0 || (size_t)n >= sizeof buf)
        return;
    memset(&dest, 0, sizeof dest);
    dest.proto = f->proto;
    dest.addr = *addr;
    dest.tls_name = tp_addr_from_ip(&(struct tp_addr){0}, f->host, f->port) == 0 ? NULL : f->host;
    {
        char *bytes = strdup(buf);
        if (bytes == NULL)
            return;
        f->probe = px_send_request(ep->px, bytes, (size_t)n, branch, SIP_OPTIONS, &dest, probe_cb, f);
        f->probe_sent_ms = now_ms();
    }
}

static void
probe_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct edge_fe *f = arg;
    struct tp_addr a;

    if (result == EVUTIL_EAI_CANCEL) {   /* edge_policy_free: <f> is going away */
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    f->resolving = false;
    f->dnsreq = NULL;
    if (result != 0 || res == NULL) {
        mark(f, false, "name does not resolve");
    } else {
        memset(&a, 0, sizeof a);
        memcpy(&a.ss, res->ai_addr, res->ai_addrlen);
        a.len = (socklen_t)res->ai_addrlen;
        if (a.ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&a.ss)->sin_port = htons(f->port);
        else
            ((struct sockaddr_in6 *)&a.ss)->sin6_port = htons(f->port);
        send_probe(f, &a);
    }
    if (res)
        evutil_freeaddrinfo(res);
}

static void
probe_all(evutil_socket_t fd, short what, void *arg)
{
    struct edge_policy *ep = arg;
    uint64_t now = now_ms();

    for (size_t i = 0; i < ep->nfe; i++) {
        struct edge_fe *f = &ep->fe[i];
        struct tp_addr a;
        /* A probe unanswered for two intervals (at least 2 s): the front-end is down. A
         * front-end killed while a probe was in flight never answers, and the connection
         * the probe went on may close without failing it: Timer F (32 s) is too late. */
        if (f->probe && now - f->probe_sent_ms > (ep->probe_ms * 2 > 2000 ? ep->probe_ms * 2 : 2000)) {
            px_uac_cancel(f->probe);
            f->probe = NULL;
            mark(f, false, "probe unanswered");
        }
        if (f->probe || f->resolving || (!f->up && now < f->down_until_ms && f->down_until_ms != 0))
            continue;
        if (tp_addr_from_ip(&a, f->host, f->port) == 0) {
            send_probe(f, &a);
        } else {
            struct evutil_addrinfo hints;
            memset(&hints, 0, sizeof hints);
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            f->resolving = true;
            struct evdns_getaddrinfo_request *rq =
                evdns_getaddrinfo(px_dns(ep->px), f->host, NULL, &hints, probe_dns_cb, f);
            if (f->resolving)
                f->dnsreq = rq;   /* else answered at once (cached or failed): the callback ran */
        }
    }
}

/* Response hook of requests sent to a front-end: a transport failure marks it down. (The
 * Record-Route of what goes back out is hidden as it arrives: edge_policy_rx_response.) */
struct fwd_ctx {
    struct edge_fe *fe;
};

static int
fwd_response(struct px_req *req, struct sip_msg *resp, void *arg)
{
    struct fwd_ctx *c = arg;
    const char *reason = resp->osip ? osip_message_get_reason_phrase(resp->osip) : NULL;

    if (resp->status == 504 && reason && strcmp(reason, "Next Hop Unreachable") == 0)
        mark(c->fe, false, "request not delivered");
    (void)req;
    return 0;
}

/* ------------------------------------------------------------------ the stage */

static bool
is_dialog_creating(const struct sip_msg *msg)
{
    return (msg->method == SIP_INVITE || msg->method == SIP_SUBSCRIBE || msg->method == SIP_REFER) &&
           sip_msg_to_tag(msg) == NULL;
}

static int
self_uri(const struct edge_self *s, const char *token, const char *extra, char *out, size_t outlen)
{
    bool v6 = strchr(s->host, ':') != NULL;
    int n = snprintf(out, outlen, "sip:%s%s%s%s%s:%u;transport=%s;lr%s", token ? token : "", token ? "@" : "",
                     v6 ? "[" : "", s->host, v6 ? "]" : "", s->port, s->transport, extra);

    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Record-Route (RFC 3261 §16.6 step 4; RFC 5658 double entry): <first> is pushed first,
 * <top> on top of it. */
static int
record_route(struct edge_policy *ep, struct sip_msg *msg, const char *token, const struct edge_self *first,
             const struct edge_self *top)
{
    char uri[512];

    if (self_uri(first, token, "", uri, sizeof uri) != 0 || sip_msg_push_record_route(msg, uri) != 0)
        return -1;
    if (ep->same)
        return 0;
    if (self_uri(top, token, "", uri, sizeof uri) != 0 || sip_msg_push_record_route(msg, uri) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ topology hiding */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t
b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    uint32_t v;

    for (size_t i = 0; i < n; i += 3) {
        v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = b64url[v >> 18 & 63];
        out[o++] = b64url[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = b64url[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
    return o;
}

/* -1 on a character outside the alphabet or an impossible length. */
static long
b64_decode(const char *in, size_t n, unsigned char *out, size_t outlen)
{
    uint32_t v = 0;
    unsigned bits = 0;
    size_t o = 0;

    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *c = memchr(b64url, in[i], 64);
        if (c == NULL || in[i] == '\0')
            return -1;
        v = v << 6 | (uint32_t)(c - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outlen)
                return -1;
            out[o++] = (unsigned char)(v >> bits & 0xff);
        }
    }
    /* the spare bits of the last character must be zero: one text per blob (canonical),
     * so a changed character never opens */
    if ((v & ((1u << bits) - 1)) != 0)
        return -1;
    return (long)o;
}

#define TH_IV 12
#define TH_TAG 16

int
edge_th_seal(const unsigned char key[32], const char *aad, const char *plain, char *out, size_t outlen)
{
    unsigned char buf[TH_IV + EDGE_TH_MAX + TH_TAG];
    size_t n = strlen(plain);
    EVP_CIPHER_CTX *c = NULL;
    int len = 0, rc = -1;

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (n > EDGE_TH_MAX || outlen < (TH_IV + n + TH_TAG + 2) / 3 * 4 + 1)
        return -1;
    /* A synthetic IV (the SIV idea): an HMAC of the associated data and the plain text, so
     * the same entries seal the same way - a retransmitted 2xx carries the same Record-Route
     * as the first, as its UAC expects - and the GCM nonce repeats only with its input. */
    {
        size_t al = strlen(aad);
        unsigned char in[sizeof "parley-th-iv" + 256 + 1 + EDGE_TH_MAX];
        if (al > 256)
            return -1;
        memcpy(in, "parley-th-iv", sizeof "parley-th-iv");
        memcpy(in + sizeof "parley-th-iv", aad, al);
        in[sizeof "parley-th-iv" + al] = '\0';
        memcpy(in + sizeof "parley-th-iv" + al + 1, plain, n);
        if (HMAC(EVP_sha256(), key, 32, in, sizeof "parley-th-iv" + al + 1 + n, md, &mdlen) == NULL || mdlen < TH_IV)
            return -1;
        memcpy(buf, md, TH_IV);
    }
    if ((c = EVP_CIPHER_CTX_new()) == NULL || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, buf) != 1 ||
        EVP_EncryptUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_EncryptUpdate(c, buf + TH_IV, &len, (const unsigned char *)plain, (int)n) != 1 ||
        EVP_EncryptFinal_ex(c, buf + TH_IV + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TH_TAG, buf + TH_IV + n) != 1)
        goto out;
    b64_encode(buf, TH_IV + n + TH_TAG, out);
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int
edge_th_open(const unsigned char key[32], const char *aad, const char *blob, char *out, size_t outlen)
{
    unsigned char buf[TH_IV + EDGE_TH_MAX + TH_TAG];
    long n = b64_decode(blob, strlen(blob), buf, sizeof buf);
    EVP_CIPHER_CTX *c = NULL;
    int len = 0, rc = -1;
    size_t plen;

    if (n < TH_IV + TH_TAG || (size_t)n - TH_IV - TH_TAG >= outlen)
        return -1;
    plen = (size_t)n - TH_IV - TH_TAG;
    if ((c = EVP_CIPHER_CTX_new()) == NULL || EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, buf) != 1 ||
        EVP_DecryptUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_DecryptUpdate(c, (unsigned char *)out, &len, buf + TH_IV, (int)plen) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TH_TAG, buf + TH_IV + plen) != 1 ||
        EVP_DecryptFinal_ex(c, (unsigned char *)out + len, &len) != 1)
        goto out;
    out[plen] = '\0';
    rc = memchr(out, '\0', plen) == NULL ? 0 : -1;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

static bool
uri_is_self(const osip_uri_t *u, const struct edge_self *s)
{
    return u && u->host && strcasecmp(u->host, s->host) == 0 &&
           sip_uri_port(u, strcmp(s->transport, "tls") == 0 ? 5061 : 5060) == s->port;
}

static bool
uri_is_ours(struct edge_policy *ep, const osip_uri_t *u)
{
    return u && u->host && px_is_us(ep->px, u->host, sip_uri_port(u, uri_proto(u) == TP_TLS ? 5061 : 5060));
}

/* Replaces the Record-Route list of <msg> by the single URI <uri> (no length limit). */
static int
set_single_rr(struct sip_msg *msg, const char *uri)
{
    osip_record_route_t *r = NULL;
    osip_uri_t *u = NULL;

    if (osip_record_route_init(&r) != 0)
        return -1;
    if (osip_uri_init(&u) != 0 || osip_uri_parse(u, uri) != 0) {
        osip_uri_free(u);
        osip_record_route_free(r);
        return -1;
    }
    r->url = u;
    sip_msg_remove_record_routes(msg);
    osip_list_add(&msg->osip->record_routes, r, 0);
    osip_message_force_update(msg->osip);
    sip_msg_touch(msg);
    return 0;
}

/*
 * Topology hiding of a Record-Route list about to go out to an outside user (a response
 * to its dialog-creating request, or a dialog-creating request to it). Every entry but
 * our outside one — the front-end's, the home servers', our own inside entry — is
 * encrypted (AES-256-GCM under the per-process key, the flow token as associated data)
 * into the "th" parameter of our outside entry, which is all the user sees. The list is
 * kept in the order the user's route set will have it (RFC 3261 §12.1: reversed for a
 * UAC, as is for a UAS), our own entries as "~". 0 (also when there is nothing of ours
 * in the list), -1 on error (the caller must not send the list as it is).
 */
static int
hide_rr(struct edge_policy *ep, struct sip_msg *msg)
{
    int n = osip_list_size(&msg->osip->record_routes), idx = -1;
    char plain[EDGE_TH_MAX + 1], blob[(TH_IV + EDGE_TH_MAX + TH_TAG + 2) / 3 * 4 + 1], token[256];
    char *uri = NULL;
    size_t used = 0, urilen;
    int rc = -1;

    for (int i = 0; i < n && idx < 0; i++) {
        osip_record_route_t *r = osip_list_get(&msg->osip->record_routes, i);
        if (r && uri_is_self(r->url, &ep->out) && r->url->username && !sip_uri_has_param(r->url, EDGE_TH_PARAM))
            idx = i;
    }
    if (idx < 0)
        return 0;
    snprintf(token, sizeof token, "%s", ((osip_record_route_t *)osip_list_get(&msg->osip->record_routes, idx))->url->username);
    plain[0] = '\0';
    /* route order: the entries above ours reversed (the user is the UAC), then those below */
    for (int k = 0; k < n - 1; k++) {
        int i = k < idx ? idx - 1 - k : k + 1;
        osip_record_route_t *r = osip_list_get(&msg->osip->record_routes, i);
        char *s = r && r->url ? sip_uri_str(r->url) : NULL;
        const char *item = s == NULL ? NULL : uri_is_ours(ep, r->url) ? "~" : s;
        size_t l = item ? strlen(item) : 0;
        if (item == NULL || used + l + 2 > sizeof plain) {
            free(s);
            log_warn("Record-Route too long to hide (%d entries)", n);
            return -1;
        }
        used += (size_t)snprintf(plain + used, sizeof plain - used, "%s%s", used ? " " : "", item);
        free(s);
    }
    if (edge_th_seal(ep->key, token, plain, blob, sizeof blob) != 0)
        return -1;
    urilen = strlen(blob) + strlen(token) + 300;
    if ((uri = malloc(urilen)) == NULL)
        return -1;
    {
        char extra[sizeof blob + 8];
        snprintf(extra, sizeof extra, ";%s=%s", EDGE_TH_PARAM, blob);
        if (self_uri(&ep->out, token, extra, uri, urilen) == 0 && set_single_rr(msg, uri) == 0)
            rc = 0;
    }
    free(uri);
    ep->stats.hidden++;
    return rc;
}

/*
 * Opens the "th" parameter of our outside URI <u> (a Route or Record-Route entry that
 * came back from an outside user) into <plain> (the hidden entries, route order, "~" for
 * ours, space-separated) and <token> (its flow token). 1 when <u> carries none, 0 when
 * opened, -1 when it does not open (forged, another process's key, damaged).
 */
static int
open_th(struct edge_policy *ep, const osip_uri_t *u, char *plain, size_t plainlen, char *token, size_t toklen)
{
    const char *blob = sip_uri_param(u, EDGE_TH_PARAM);

    if (blob == NULL)
        return 1;
    if (u->username == NULL || strlen(u->username) >= toklen)
        return -1;
    snprintf(token, toklen, "%s", u->username);
    return edge_th_open(ep->key, token, blob, plain, plainlen);
}

/*
 * A response coming in from an outside user (to a dialog-creating request we sent it with
 * a hidden Record-Route): its Record-Route gets the hidden entries back, so the inside
 * caller's route set is the real one. 0, or -1 when the entry does not open.
 */
static int
restore_rr(struct edge_policy *ep, struct sip_msg *msg)
{
    int n = osip_list_size(&msg->osip->record_routes);
    char plain[EDGE_TH_MAX + 1], token[256], uri[600];

    for (int i = 0; i < n; i++) {
        osip_record_route_t *r = osip_list_get(&msg->osip->record_routes, i);
        int rc;
        if (r == NULL || !uri_is_self(r->url, &ep->out))
            continue;
        rc = open_th(ep, r->url, plain, sizeof plain, token, sizeof token);
        if (rc == 1)
            continue;
        if (rc != 0)
            return -1;
        /* ours without th, then the hidden entries after it (the user was the UAS: route
         * order is Record-Route order) */
        if (self_uri(&ep->out, token, "", uri, sizeof uri) != 0)
            return -1;
        {
            osip_uri_t *nu = NULL;
            if (osip_uri_init(&nu) != 0 || osip_uri_parse(nu, uri) != 0) {
                osip_uri_free(nu);
                return -1;
            }
            osip_uri_free(r->url);
            r->url = nu;
        }
        int at = i + 1;
        for (char *save = NULL, *item = strtok_r(plain, " ", &save); item; item = strtok_r(NULL, " ", &save)) {
            osip_record_route_t *nr = NULL;
            osip_uri_t *nu = NULL;
            if (strcmp(item, "~") == 0) {
                if (self_uri(&ep->in, token, "", uri, sizeof uri) != 0)
                    return -1;
                item = uri;
            }
            if (osip_record_route_init(&nr) != 0 || osip_uri_init(&nu) != 0 || osip_uri_parse(nu, item) != 0) {
                osip_uri_free(nu);
                osip_record_route_free(nr);
                return -1;
            }
            nr->url = nu;
            osip_list_add(&msg->osip->record_routes, nr, at++);
        }
        osip_message_force_update(msg->osip);
        sip_msg_touch(msg);
        return 0;
    }
    return 0;
}

/*
 * Topology hiding of Via (a request going out to an outside user): its whole Via list -
 * the front-end's, the home servers', the inside caller's - sealed like the Record-Route
 * (AES-256-GCM, associated data EDGE_VIA_AAD) into the "th" parameter of one Via naming
 * our outside address, forwarded below our own. The answer copies it back
 * (RFC 3261 §8.2.6.2), and edge_policy_rx_response opens it into the original list. The
 * entries are joined by '\n', which no header value holds. 0 or -1 (too long to hide).
 */
#define EDGE_VIA_AAD "via"

static const char *
transport_upper(const char *t)
{
    return strcmp(t, "tls") == 0 ? "TLS" : strcmp(t, "tcp") == 0 ? "TCP" : "UDP";
}

static int
seal_vias(struct edge_policy *ep, const struct sip_msg *msg, char *out, size_t outlen)
{
    int n = osip_list_size(&msg->osip->vias);
    char plain[EDGE_TH_MAX + 1], blob[(TH_IV + EDGE_TH_MAX + TH_TAG + 2) / 3 * 4 + 1];
    size_t used = 0;
    bool v6 = strchr(ep->out.host, ':') != NULL;

    if (n <= 0)
        return -1;
    for (int i = 0; i < n; i++) {
        char *v = NULL;
        size_t l;
        if (osip_via_to_str(osip_list_get(&msg->osip->vias, i), &v) != 0)
            return -1;
        l = strlen(v);
        if (used + l + 2 > sizeof plain) {
            osip_free(v);
            log_warn("Via list too long to hide (%d entries)", n);
            return -1;
        }
        if (used)
            plain[used++] = '\n';
        memcpy(plain + used, v, l);
        used += l;
        plain[used] = '\0';
        osip_free(v);
    }
    if (edge_th_seal(ep->key, EDGE_VIA_AAD, plain, blob, sizeof blob) != 0)
        return -1;
    n = snprintf(out, outlen, "SIP/2.0/%s %s%s%s:%u;branch=z9hG4bKth%.16s;%s=%s", transport_upper(ep->out.transport),
                 v6 ? "[" : "", ep->out.host, v6 ? "]" : "", ep->out.port, blob, EDGE_TH_PARAM, blob);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Size of a sealed Via value (seal_vias). */
#define EDGE_VIA_MAX ((TH_IV + EDGE_TH_MAX + TH_TAG + 2) / 3 * 4 + 400)

bool
edge_policy_ack(struct sip_msg *ack, const struct tp_rx *rx, void *arg)
{
    struct edge_policy *ep = arg;
    char plain[EDGE_TH_MAX + 1], token[256];
    int n = sip_msg_route_count(ack), rc = 1;
    char *items[32], *save = NULL;
    int k = 0;

    for (int i = 0; i < n && rc == 1; i++) {
        osip_uri_t *u = sip_msg_route_uri(ack, i);
        if (u && uri_is_self(u, &ep->out))
            rc = open_th(ep, u, plain, sizeof plain, token, sizeof token);
    }
    if (rc == 1) {
        /* no hidden route set: px routes it as it is; one from the pool going out to an
         * outside user (2xx ACK, no transaction) gets its Via list hidden */
        char via[EDGE_VIA_MAX];
        if (px_rx_class(ep->px, rx) == TP_CLASS_CLIENT)
            return true;
        if (seal_vias(ep, ack, via, sizeof via) != 0 || sip_msg_replace_vias(ack, via) != 0)
            return false;
        ep->stats.vias_hidden++;
        return true;
    }
    if (rc < 0) {
        ep->stats.refused++;
        return false;   /* forged or stale */
    }
    (void)rx;
    sip_msg_remove_routes(ack);
    for (char *it = strtok_r(plain, " ", &save); it && k < 32; it = strtok_r(NULL, " ", &save))
        if (strcmp(it, "~") != 0)
            items[k++] = it;
    for (int i = k - 1; i >= 0; i--)
        if (sip_msg_push_route(ack, items[i]) != 0)
            return false;
    return true;
}

/*
 * A response from an outside user: the Via below ours must be the one seal_vias made (we
 * send outside users nothing else that gets answered), and becomes the list it hides, so
 * the response goes back along the pool as it came - also a 2xx retransmission forwarded
 * statelessly. 0, or -1 (no sealed Via, or one that does not open: dropped).
 */
static int
restore_vias(struct edge_policy *ep, struct sip_msg *resp)
{
    osip_via_t *v;
    osip_generic_param_t *p = NULL;
    char plain[EDGE_TH_MAX + 1], *items[32], *save = NULL;
    int k = 0;

    if (sip_msg_via_count(resp) < 2)
        return 0;   /* only our Via: a response to a request of the edge's own (CANCEL ...) */
    v = osip_list_get(&resp->osip->vias, 1);
    if (v == NULL || osip_via_param_get_byname(v, EDGE_TH_PARAM, &p) != 0 || p == NULL || p->gvalue == NULL ||
        edge_th_open(ep->key, EDGE_VIA_AAD, p->gvalue, plain, sizeof plain) != 0)
        return -1;
    for (char *it = strtok_r(plain, "\n", &save); it; it = strtok_r(NULL, "\n", &save)) {
        if (k == 32)
            return -1;
        items[k++] = it;
    }
    return k > 0 && sip_msg_splice_via(resp, 1, (const char *const *)items, k) == 0 ? 0 : -1;
}

static bool
dialog_forming(const struct sip_msg *resp)
{
    return resp->status > 100 && resp->status < 300 &&
           (resp->method == SIP_INVITE || resp->method == SIP_SUBSCRIBE || resp->method == SIP_REFER ||
            resp->method == SIP_NOTIFY);
}

/* <rx> came from one of our front-ends' listening addresses (a connection the edge opened
 * to it): the pool, even before the directory lists it again (a restarted front-end whose
 * new announcement has not reached us yet, so its connection is not classed server). */
static bool
from_frontend(const struct edge_policy *ep, const struct tp_rx *rx)
{
    for (size_t i = 0; i < ep->nfe; i++) {
        struct tp_addr a;
        if (tp_addr_from_ip(&a, ep->fe[i].host, ep->fe[i].port) == 0 && tp_addr_equal(&a, &rx->src))
            return true;
    }
    return false;
}

bool
edge_policy_rx_response(struct sip_msg *resp, const struct tp_rx *rx, void *arg)
{
    struct edge_policy *ep = arg;
    enum tp_class cls = px_rx_class(ep->px, rx);
    char src[80];

    if (cls == TP_CLASS_CLIENT && !from_frontend(ep, rx)) {
        /* from an outside user: our hidden Via list and Record-Route entries back */
        if (sip_msg_ensure_full(resp) != 0 || restore_vias(ep, resp) != 0 ||
            (osip_list_size(&resp->osip->record_routes) > 0 && restore_rr(ep, resp) != 0)) {
            ep->stats.refused++;
            log_peer(LOG_INFO, "dropped a %d response from %s: no hidden Via or Record-Route of ours opens",
                     resp->status, tp_addr_str(&rx->src, src, sizeof src));
            return false;
        }
        return true;
    }
    /* from the pool, going out: the Record-Route of a dialog-forming response hidden */
    if (!dialog_forming(resp))
        return true;
    if (sip_msg_ensure_full(resp) != 0)
        return false;
    if (osip_list_size(&resp->osip->record_routes) > 0 && hide_rr(ep, resp) != 0) {
        log_warn("dropped a %d response: its Record-Route cannot be hidden", resp->status);
        return false;   /* never the internal list */
    }
    return true;
}

struct route_keep {
    struct edge_policy *ep;
    char *uris[32];                 /* the entries that are not ours */
    int n;
    char *ours[4];                  /* our own entries (one may carry "th") */
    int nours;
};

/* Keeps the Route URIs that are not ours (the route set after the edge's own entries). */
static void
keep_route(const char *uri, void *arg)
{
    struct route_keep *k = arg;
    osip_uri_t *u = NULL;
    bool ours = false;

    if (osip_uri_init(&u) != 0)
        return;
    if (osip_uri_parse(u, uri) == 0 && u->host)
        ours = px_is_us(k->ep->px, u->host, sip_uri_port(u, uri_proto(u) == TP_TLS ? 5061 : 5060));
    osip_uri_free(u);
    if (!ours && k->n < 32 && (k->uris[k->n] = strdup(uri)) != NULL)
        k->n++;
    else if (ours && k->nours < 4 && (k->ours[k->nours] = strdup(uri)) != NULL)
        k->nours++;
}

/*
 * px_trust stripped the route set of the outside user's in-dialog request; the part after
 * our own entries (front-end, home server: what the dialog's Record-Route set up) is put
 * back. With topology hiding (the usual case) it comes out of the "th" parameter of our
 * entry, which only we can open; a route set without one (a dialog set up before hiding
 * existed) keeps its entries after ours, checked by the front-end (they must be pool
 * servers). 0, or -1 when a "th" does not open (the request is refused).
 */
static int
restore_routes(struct edge_policy *ep, struct px_req *req)
{
    const struct tp_rx *rx = px_req_rx(req);
    struct sip_msg *msg = px_req_msg(req);
    struct route_keep k;
    char plain[EDGE_TH_MAX + 1], token[256];
    int rc = 0, th = 1;

    memset(&k, 0, sizeof k);
    k.ep = ep;
    if (rx == NULL)
        return 0;
    edge_raw_routes(rx->buf, rx->len, keep_route, &k);
    sip_msg_remove_routes(msg);   /* what px_trust kept is among k.uris */
    for (int i = 0; i < k.nours && th == 1; i++) {
        osip_uri_t *u = NULL;
        if (osip_uri_init(&u) == 0 && osip_uri_parse(u, k.ours[i]) == 0)
            th = open_th(ep, u, plain, sizeof plain, token, sizeof token);
        osip_uri_free(u);
    }
    if (th == 0) {
        /* the hidden route set, in order; our own entries ("~") are passed already */
        char *items[32], *save = NULL;
        int n = 0;
        for (char *it = strtok_r(plain, " ", &save); it && n < 32; it = strtok_r(NULL, " ", &save))
            if (strcmp(it, "~") != 0)
                items[n++] = it;
        for (int i = n - 1; i >= 0; i--)
            if (sip_msg_push_route(msg, items[i]) != 0)
                rc = -1;
    } else if (th < 0) {
        rc = -1;
    } else {
        for (int i = k.n - 1; i >= 0; i--)
            if (sip_msg_push_route(msg, k.uris[i]) != 0)
                rc = -1;
    }
    for (int i = 0; i < k.n; i++)
        free(k.uris[i]);
    for (int i = 0; i < k.nours; i++)
        free(k.ours[i]);
    return rc;
}

static enum px_verdict
from_outside(struct edge_policy *ep, struct px_req *req)
{
    struct sip_msg *msg = px_req_msg(req);
    osip_uri_t *ru = sip_msg_ruri(msg);
    struct edge_flow flow;
    struct edge_fe *fe;
    struct px_target t = {0};
    struct fwd_ctx *c;
    char token[256], uri[512];
    char *ruri;
    int rc;

    if (ru && ru->username == NULL && ru->host &&
        px_is_us(ep->px, ru->host, sip_uri_port(ru, uri_proto(ru) == TP_TLS ? 5061 : 5060)) &&
        msg->method == SIP_OPTIONS) {
        px_reply(req, 200, NULL);   /* a keep-alive ping to the edge itself */
        return PX_ANSWERED;
    }
    memset(&flow, 0, sizeof flow);
    flow.proto = px_req_proto(req);
    flow.conn_id = px_req_conn_id(req);
    flow.addr = *px_req_src(req);
    if (edge_flow_token(ep->key, &flow, token, sizeof token) != 0) {
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    if (msg->method == SIP_REGISTER) {
        /* RFC 3327: our Path, the only one (an outside user may not name hops inside). */
        sip_msg_remove_header(msg, "Path");
        if (self_uri(&ep->in, token, ";ob", uri, sizeof uri) != 0) {
            px_reply(req, 500, NULL);
            return PX_ANSWERED;
        }
        {
            char path[520];
            snprintf(path, sizeof path, "<%s>", uri);
            if (sip_msg_add_header(msg, "Path", path) != 0) {
                px_reply(req, 500, NULL);
                return PX_ANSWERED;
            }
        }
    } else if (sip_msg_to_tag(msg) != NULL) {
        /* In-dialog: only in a dialog we Record-Routed for THIS flow: the top Route (px_trust
         * stripped it from the message, the received bytes still have it) must carry a flow
         * token of ours naming the connection (UDP: the address) it arrived on. */
        struct px_trust_req *tr = px_req_trust(req);
        const struct tp_rx *rx = px_req_rx(req);
        char rtok[256];
        struct edge_flow rf;
        if (tr == NULL || !tr->dialog_via_us || rx == NULL ||
            edge_raw_first_route_user(rx->buf, rx->len, rtok, sizeof rtok) != 0 ||
            edge_flow_parse(ep->key, rtok, &rf) != 0 || rf.proto != flow.proto ||
            (flow.proto == TP_UDP ? !tp_addr_equal(&rf.addr, &flow.addr) : rf.conn_id != flow.conn_id)) {
            ep->stats.refused++;
            px_reply(req, 403, "Not A Dialog Of This Edge");
            return PX_ANSWERED;
        }
        if (restore_routes(ep, req) != 0) {
            ep->stats.refused++;
            px_reply(req, 403, "Not A Dialog Of This Edge");
            return PX_ANSWERED;
        }
    } else if (is_dialog_creating(msg) && record_route(ep, msg, token, &ep->out, &ep->in) != 0) {
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    fe = pick_frontend(ep);
    ruri = sip_uri_str(ru);
    if (fe == NULL || ruri == NULL) {
        free(ruri);
        px_reply(req, fe ? 400 : 503, fe ? "Bad Request-URI" : "No Front-End");
        return PX_ANSWERED;
    }
    t.uri = ruri;
    t.route_set = fe->route;
    t.q = 1000;
    rc = px_add_target(req, &t);
    free(ruri);
    if (rc != 0) {
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    if ((c = calloc(1, sizeof *c)) != NULL) {
        c->fe = fe;
        px_req_on_response(req, fwd_response, c, free);
    }
    ep->stats.inbound++;
    return PX_FORWARD;
}

static enum px_verdict
from_inside(struct edge_policy *ep, struct px_req *req)
{
    struct sip_msg *msg = px_req_msg(req);
    const struct tp_rx *rx = px_req_rx(req);
    osip_uri_t *ru = sip_msg_ruri(msg);
    struct edge_flow flow;
    struct px_target t = {0};
    char token[256], route[512], host[64];
    char *ruri;
    int rc;

    if (rx == NULL || edge_raw_first_route_user(rx->buf, rx->len, token, sizeof token) != 0 ||
        edge_flow_parse(ep->key, token, &flow) != 0) {
        /* No flow of ours: the Request-URI (an outside address) or the remaining Route. */
        ep->stats.outbound++;
        return PX_ROUTE;
    }
    if (flow.proto != TP_UDP && tp_conn_get(px_tp(ep->px), flow.conn_id) == NULL) {
        ep->stats.flow_failed++;
        px_reply(req, 430, "Flow Failed");   /* RFC 5626 §5.3: the client's flow is gone */
        return PX_ANSWERED;
    }
    /* The pool's credentials (digest for our realm, consumed inside) are no business of
     * the outside user, and their uri names the inside user's home server. */
    if (osip_list_size(&msg->osip->proxy_authorizations) > 0) {
        osip_proxy_authorization_t *pa;
        while ((pa = osip_list_get(&msg->osip->proxy_authorizations, 0)) != NULL) {
            osip_list_remove(&msg->osip->proxy_authorizations, 0);
            osip_proxy_authorization_free(pa);
        }
        osip_message_force_update(msg->osip);
        sip_msg_touch(msg);   /* forwarded from osip, not from the received bytes */
    }
    if (is_dialog_creating(msg) && (record_route(ep, msg, token, &ep->in, &ep->out) != 0 || hide_rr(ep, msg) != 0)) {
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    {
        char via[EDGE_VIA_MAX];
        if (seal_vias(ep, msg, via, sizeof via) != 0 || px_req_hide_vias(req, via) != 0) {
            px_reply(req, 500, "Via List Cannot Be Hidden");
            return PX_ANSWERED;
        }
        ep->stats.vias_hidden++;
    }
    if ((ruri = sip_uri_str(ru)) == NULL) {
        px_reply(req, 400, "Bad Request-URI");
        return PX_ANSWERED;
    }
    t.uri = ruri;
    t.conn_id = flow.conn_id;
    t.q = 1000;
    /* The hop px derives from the Request-URI must be the flow (its transport; for UDP its
     * source address, rport): else a Route to the flow's address is pushed. */
    tp_addr_host(&flow.addr, host, sizeof host);
    if (ru == NULL || ru->host == NULL || uri_proto(ru) != flow.proto ||
        (flow.proto == TP_UDP && (strcmp(ru->host, host) != 0 || sip_uri_port(ru, 5060) != tp_addr_port(&flow.addr)))) {
        bool v6 = strchr(host, ':') != NULL;
        snprintf(route, sizeof route, "<sip:%s%s%s:%u;transport=%s;lr>", v6 ? "[" : "", host, v6 ? "]" : "",
                 tp_addr_port(&flow.addr), proto_param(flow.proto));
        t.route_set = route;
    }
    rc = px_add_target(req, &t);
    free(ruri);
    if (rc != 0) {
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    ep->stats.outbound++;   /* the answers' Via and Record-Route: edge_policy_rx_response */
    return PX_FORWARD;
}

enum px_verdict
edge_policy_handle(struct px_req *req, void *arg)
{
    struct edge_policy *ep = arg;

    /* px_trust: server = an MTLS peer listed in the directory (a front-end); all else client */
    if (px_req_class(req) == TP_CLASS_SERVER || px_req_class(req) == TP_CLASS_TRUSTED)
        return from_inside(ep, req);
    return from_outside(ep, req);
}

/* ------------------------------------------------------------------ lifecycle */

static int
parse_self(const char *uri, struct edge_self *s)
{
    enum tp_proto p;

    if (parse_hostport(uri, s->host, sizeof s->host, &s->port, &p) != 0)
        return -1;
    s->transport = proto_param(p);
    return 0;
}

struct edge_policy *
edge_policy_new(struct event_base *base, const struct edge_policy_opts *opts)
{
    struct edge_policy *ep = calloc(1, sizeof *ep);
    char route[600];

    if (ep == NULL)
        return NULL;
    ep->px = opts->px;
    ep->base = base;
    ep->probe_ms = opts->probe_interval_ms;
    ep->hold_ms = opts->down_hold_ms;
    if (RAND_bytes(ep->key, sizeof ep->key) != 1) {
        log_err("no random bytes for the flow-token key");
        goto fail;
    }
    if (parse_self(opts->outside_uri, &ep->out) != 0 || parse_self(opts->inside_uri, &ep->in) != 0) {
        log_err("cannot parse our addresses '%s' / '%s'", opts->outside_uri ? opts->outside_uri : "",
                opts->inside_uri ? opts->inside_uri : "");
        goto fail;
    }
    ep->same = strcasecmp(ep->out.host, ep->in.host) == 0 && ep->out.port == ep->in.port &&
               strcmp(ep->out.transport, ep->in.transport) == 0;
    if (opts->nfrontends == 0) {
        log_err("no front-end configured (--frontend)");
        goto fail;
    }
    if ((ep->fe = calloc(opts->nfrontends, sizeof *ep->fe)) == NULL)
        goto fail;
    for (size_t i = 0; i < opts->nfrontends; i++) {
        struct edge_fe *f = &ep->fe[ep->nfe];
        f->ep = ep;
        if (parse_hostport(opts->frontends[i], f->host, sizeof f->host, &f->port, &f->proto) != 0) {
            log_err("--frontend %s: not a SIP URI with a host", opts->frontends[i]);
            goto fail;
        }
        snprintf(route, sizeof route, "<sip:%s%s%s:%u;transport=%s;lr>", strchr(f->host, ':') ? "[" : "", f->host,
                 strchr(f->host, ':') ? "]" : "", f->port, proto_param(f->proto));
        f->uri = strdup(opts->frontends[i]);
        f->route = strdup(route);
        f->up = true;   /* until a probe or a request says otherwise */
        ep->nfe++;
        if (f->uri == NULL || f->route == NULL)
            goto fail;
    }
    if (ep->probe_ms > 0) {
        struct timeval tv = {ep->probe_ms / 1000, (ep->probe_ms % 1000) * 1000};
        ep->probe_timer = event_new(base, -1, EV_PERSIST, probe_all, ep);
        if (ep->probe_timer == NULL || event_add(ep->probe_timer, &tv) != 0)
            goto fail;
    }
    return ep;
fail:
    edge_policy_free(ep);
    return NULL;
}

void
edge_policy_free(struct edge_policy *ep)
{
    if (ep == NULL)
        return;
    if (ep->probe_timer)
        event_free(ep->probe_timer);
    for (size_t i = 0; i < ep->nfe; i++) {
        if (ep->fe[i].dnsreq)
            evdns_getaddrinfo_cancel(ep->fe[i].dnsreq);
        px_uac_cancel(ep->fe[i].probe);
        free(ep->fe[i].uri);
        free(ep->fe[i].route);
    }
    free(ep->fe);
    OPENSSL_cleanse(ep->key, sizeof ep->key);
    free(ep);
}

void
edge_policy_stats_get(const struct edge_policy *ep, struct edge_policy_stats *out)
{
    *out = ep->stats;
}

size_t
edge_policy_frontends_up(const struct edge_policy *ep)
{
    size_t n = 0;

    for (size_t i = 0; i < ep->nfe; i++)
        n += ep->fe[i].up;
    return n;
}
