#define LOG_MODULE "trust"
#include "proxy/px_trust.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "directory/dir.h"
#include "sip/sip_raw.h"
#include "util/admin_http.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/metrics.h"

/* ------------------------------------------------------------------ settings */

#define ROW(n, t, d, lo, hi, rl, h, f) {n, t, d, lo, hi, rl, false, h, offsetof(struct px_trust_settings, f)}
static const struct cfg_opt trust_rows[] = {
    ROW("tls-cert", CFG_STR, NULL, 0, 0, false,
        "PEM certificate chain of this server (serverAuth+clientAuth EKUs for mutual TLS); "
        "set = TLS configured, tls: listeners work; SIGHUP re-reads it", tls_cert),
    ROW("tls-key", CFG_STR, NULL, 0, 0, false, "PEM private key of --tls-cert (default: in the same file)",
        tls_key),
    ROW("tls-ca", CFG_STR, NULL, 0, 0, false,
        "PEM CAs that peers' certificates must chain to (required with --tls-cert)", tls_ca),
    ROW("max-client-transactions", CFG_INT, "10", 1, 100000, true,
        "outstanding server transactions per client connection (UDP: per source address); "
        "more get 503 with Retry-After", max_client_tx),
    ROW("throttle-retry-after", CFG_INT, "5", 1, 3600, true,
        "Retry-After (seconds) of the 503 sent to a throttled client", retry_after_s),
    ROW("trusted-listener", CFG_LIST, NULL, 0, 0, false,
        "extra listener whose connections from the listed source addresses are class trusted "
        "(PSTN gateways without MTLS): proto:host:port=addr1,addr2 (addr or addr/prefix); repeatable",
        trusted_listener),
};
#undef ROW

static int
trust_check(struct cfg *cfg, void *arg, struct cfg_error *err)
{
    struct px_trust_settings *s = arg;
    struct px_trusted_listener tl;
    char why[200];

    for (size_t i = 0; i < s->trusted_listener.n; i++) {
        if (px_trusted_listener_parse(s->trusted_listener.v[i], &tl, why, sizeof why) != 0) {
            cfg_error_set(err, "--trusted-listener %s: %s", s->trusted_listener.v[i], why);
            return -1;
        }
        if (tl.proto == TP_TLS && (s->tls_cert == NULL || s->tls_cert[0] == '\0')) {
            cfg_error_set(err, "--trusted-listener %s: a tls listener needs --tls-cert",
                          s->trusted_listener.v[i]);
            return -1;
        }
    }
    if (s->tls_cert && s->tls_cert[0] && (s->tls_ca == NULL || s->tls_ca[0] == '\0')) {
        cfg_error_set(err, "--tls-cert needs --tls-ca (peers' certificates are always verified)");
        return -1;
    }
    if ((s->tls_key && s->tls_key[0]) && (s->tls_cert == NULL || s->tls_cert[0] == '\0')) {
        cfg_error_set(err, "--tls-key without --tls-cert");
        return -1;
    }
    return 0;
}

int
px_trust_cfg_register(struct cfg *cfg, struct px_trust_settings *s)
{
    if (cfg_register(cfg, "trust", trust_rows, sizeof trust_rows / sizeof trust_rows[0], s) != 0)
        return -1;
    return cfg_add_check(cfg, trust_check, s);
}

/* ------------------------------------------------------------------ addresses */

static void
unbracket(const char *host, char *out, size_t outlen)
{
    size_t n = strlen(host);

    if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
        snprintf(out, outlen, "%.*s", (int)(n - 2), host + 1);
    else
        snprintf(out, outlen, "%s", host);
}

/* Is <text> an IPv4 or IPv6 literal (brackets allowed)? */
static bool
is_ip_literal(const char *text)
{
    char h[256];
    unsigned char buf[16];

    unbracket(text, h, sizeof h);
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* Parses "10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8" into family, bytes and prefix bits. */
static int
parse_allow(const char *text, int *family, unsigned char addr[16], unsigned *bits)
{
    char h[64];
    const char *slash = strchr(text, '/');
    long b;
    char *end;

    snprintf(h, sizeof h, "%.*s", slash ? (int)(slash - text) : (int)strlen(text), text);
    if (inet_pton(AF_INET, h, addr) == 1) {
        *family = AF_INET;
        *bits = 32;
    } else if (inet_pton(AF_INET6, h, addr) == 1) {
        *family = AF_INET6;
        *bits = 128;
    } else {
        return -1;
    }
    if (slash) {
        b = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || b < 0 || b > (long)*bits)
            return -1;
        *bits = (unsigned)b;
    }
    return 0;
}

static bool
prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;

    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a[full] ^ b[full]) & (0xff << (8 - rest))) == 0;
}

bool
px_trust_addr_allowed(const char *const *allow, size_t n, const struct tp_addr *a)
{
    const unsigned char *mine;
    int fam = a->ss.ss_family;
    unsigned char v4mapped[4];

    if (fam == AF_INET) {
        mine = (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
    } else if (fam == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
        mine = (const unsigned char *)in6;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {   /* a dual-stack socket: compare as IPv4 */
            memcpy(v4mapped, mine + 12, 4);
            mine = v4mapped;
            fam = AF_INET;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        int f;
        unsigned char want[16];
        unsigned bits;
        if (allow[i] == NULL || parse_allow(allow[i], &f, want, &bits) != 0 || f != fam)
            continue;
        if (prefix_equal(mine, want, bits))
            return true;
    }
    return false;
}

int
px_trusted_listener_parse(const char *spec, struct px_trusted_listener *out, char *err, size_t errlen)
{
    const char *eq = strchr(spec, '=');
    char list[1024], *p, *tok;

    memset(out, 0, sizeof *out);
    if (eq == NULL || eq == spec) {
        snprintf(err, errlen, "expected proto:host:port=addr[,addr...]");
        return -1;
    }
    if ((size_t)(eq - spec) >= sizeof out->spec) {
        snprintf(err, errlen, "listener part too long");
        return -1;
    }
    memcpy(out->spec, spec, (size_t)(eq - spec));
    out->spec[eq - spec] = '\0';
    if (tp_parse_listen_spec(out->spec, &out->proto, &out->addr, err, errlen) != 0)
        return -1;
    {
        /* the port must be explicit: messages are matched by the listener's address */
        const char *last = strrchr(out->spec, ':');
        const char *rb = strrchr(out->spec, ']');
        if (last == NULL || (rb && last < rb) || last == strchr(out->spec, ':') || tp_addr_port(&out->addr) == 0) {
            snprintf(err, errlen, "an explicit, non-zero port is required");
            return -1;
        }
    }
    if (strlen(eq + 1) >= sizeof list) {
        snprintf(err, errlen, "allow list too long");
        return -1;
    }
    snprintf(list, sizeof list, "%s", eq + 1);
    for (p = list; (tok = strsep(&p, ",")) != NULL;) {
        int f;
        unsigned char a[16];
        unsigned bits;
        while (*tok == ' ')
            tok++;
        if (*tok == '\0')
            continue;
        if (parse_allow(tok, &f, a, &bits) != 0) {
            snprintf(err, errlen, "'%s' is not an IP address or address/prefix", tok);
            return -1;
        }
        if (out->n_allow >= PX_TRUST_MAX_ALLOW) {
            snprintf(err, errlen, "at most %d allowed addresses", PX_TRUST_MAX_ALLOW);
            return -1;
        }
        snprintf(out->allow[out->n_allow++], sizeof out->allow[0], "%s", tok);
    }
    if (out->n_allow == 0) {
        snprintf(err, errlen, "at least one allowed source address is required");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ static routes */

bool
px_trust_phone_number(const osip_uri_t *u, char *out, size_t outlen)
{
    const char *src = NULL;
    size_t n = 0;

    if (u == NULL || !sip_uri_is_phone(u) || outlen == 0)
        return false;
    if (strcasecmp(u->scheme, "tel") == 0) {
        /* osip keeps an unknown scheme's text in <string> ("tel:+1..." or "+1...") */
        src = u->string ? u->string : u->username;
        if (src && strncasecmp(src, "tel:", 4) == 0)
            src += 4;
    } else {
        src = u->username;
    }
    if (src == NULL)
        return false;
    if (*src == '+')
        src++;
    /* RFC 3966 §5.1.1: visual separators are not part of the number; parameters end it */
    for (; *src && *src != ';' && n + 1 < outlen; src++) {
        if (*src == '-' || *src == '.' || *src == '(' || *src == ')' || *src == ' ')
            continue;
        out[n++] = *src;
    }
    out[n] = '\0';
    return n > 0;
}

int
px_trust_route_score(const struct dir_route *r, const osip_uri_t *u)
{
    char num[64];

    if (r == NULL || u == NULL)
        return -1;
    switch (r->kind) {
    case DIR_MATCH_TEL:
        return sip_uri_is_phone(u) ? 1 : -1;
    case DIR_MATCH_DOMAIN:
        return u->host && r->match_arg && strcasecmp(u->host, r->match_arg) == 0 ? 2 : -1;
    case DIR_MATCH_PREFIX: {
        const char *d = r->match_arg ? r->match_arg : "";
        if (*d == '+')
            d++;
        if (!px_trust_phone_number(u, num, sizeof num))
            return -1;
        return strncmp(num, d, strlen(d)) == 0 ? 1000 + (int)strlen(d) : -1;
    }
    }
    return -1;
}

/* ------------------------------------------------------------------ throttle table */

struct th_ent {
    struct tp_addr a;
    unsigned n;
    struct th_ent *next;
};

#define TH_BUCKETS 4096

struct px_throttle {
    struct th_ent *b[TH_BUCKETS];
    size_t count, max;
};

static size_t
addr_hash(const struct tp_addr *a)
{
    uint64_t h;
    const unsigned char *p;
    size_t n;

    if (a->ss.ss_family == AF_INET) {
        p = (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
        n = 4;
    } else {
        p = (const unsigned char *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
        n = 16;
    }
    h = hash_fnv1a64(HASH_FNV64_SEED, p, n);
    h = hash_fnv1a64_step(h, tp_addr_port(a));
    return (size_t)(h % TH_BUCKETS);
}

struct px_throttle *
px_throttle_new(size_t max_entries)
{
    struct px_throttle *th = calloc(1, sizeof *th);

    if (th)
        th->max = max_entries;
    return th;
}

void
px_throttle_free(struct px_throttle *th)
{
    if (th == NULL)
        return;
    for (size_t i = 0; i < TH_BUCKETS; i++) {
        for (struct th_ent *e = th->b[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(th);
}

static struct th_ent **
th_find(const struct px_throttle *th, const struct tp_addr *a)
{
    struct th_ent **pp = (struct th_ent **)&th->b[addr_hash(a)];

    while (*pp && !tp_addr_equal(&(*pp)->a, a))
        pp = &(*pp)->next;
    return pp;
}

bool
px_throttle_acquire(struct px_throttle *th, const struct tp_addr *a, unsigned limit)
{
    struct th_ent **pp = th_find(th, a), *e = *pp;

    if (e == NULL) {
        if (th->count >= th->max || limit == 0 || (e = calloc(1, sizeof *e)) == NULL)
            return false;
        e->a = *a;
        *pp = e;
        th->count++;
    }
    if (e->n >= limit)
        return false;
    e->n++;
    return true;
}

void
px_throttle_release(struct px_throttle *th, const struct tp_addr *a)
{
    struct th_ent **pp = th_find(th, a), *e = *pp;

    if (e == NULL)
        return;
    if (e->n > 0)
        e->n--;
    if (e->n == 0) {
        *pp = e->next;
        free(e);
        th->count--;
    }
}

unsigned
px_throttle_count(const struct px_throttle *th, const struct tp_addr *a)
{
    struct th_ent *e = *th_find(th, a);

    return e ? e->n : 0;
}

size_t px_throttle_sources(const struct px_throttle *th) { return th->count; }

/* ------------------------------------------------------------------ the trust layer */

struct conn_seen {
    uint64_t id;
    enum tp_class cls;
};

struct px_trust_stats {
    uint64_t classified[3];      /* stream connections classified, by enum tp_class */
    uint64_t route_stripped;     /* client requests that carried Route/Record-Route */
    uint64_t throttled;
    uint64_t relay_denied;
    uint64_t no_route;
    uint64_t ack_dropped;
    uint64_t static_routed;
};

struct px_trust {
    struct px *px;
    struct tp *tp;
    const struct px_trust_settings *set;
    struct dir *dir;
    struct px_trusted_listener *tl;
    size_t ntl;
    struct px_throttle *udp;
    struct conn_seen *conns;     /* stream connections seen, pruned of dead ones lazily */
    size_t nconns, capconns;
    struct px_trust_stats st;
    char retry_after[24];
};

static const char *const class_names[] = {"client", "server", "trusted"};

static void
conn_note(struct px_trust *t, uint64_t id, enum tp_class cls)
{
    for (size_t i = 0; i < t->nconns; i++) {
        if (t->conns[i].id == id) {
            t->conns[i].cls = cls;
            return;
        }
    }
    if (t->nconns == t->capconns) {
        size_t j = 0;
        for (size_t i = 0; i < t->nconns; i++)   /* prune closed connections first */
            if (tp_conn_get(t->tp, t->conns[i].id) != NULL)
                t->conns[j++] = t->conns[i];
        t->nconns = j;
    }
    if (t->nconns == t->capconns) {
        size_t cap = t->capconns ? t->capconns * 2 : 64;
        struct conn_seen *c = realloc(t->conns, cap * sizeof *c);
        if (c == NULL)
            return;   /* only the admin view loses it */
        t->conns = c;
        t->capconns = cap;
    }
    t->conns[t->nconns].id = id;
    t->conns[t->nconns].cls = cls;
    t->nconns++;
}

/* Host part of a SIP URI text ("sip:h:p;..." / "sips:[::1]:p"), and its port (0 if none). */
static bool
uri_text_hostport(const char *uri, char *host, size_t hostlen, uint16_t *port)
{
    const char *p = uri, *e;

    if (strncasecmp(p, "sips:", 5) == 0)
        p += 5;
    else if (strncasecmp(p, "sip:", 4) == 0)
        p += 4;
    else
        return false;
    if (strchr(p, '@') && strchr(p, '@') < p + strcspn(p, ";?>"))
        p = strchr(p, '@') + 1;
    if (*p == '[') {
        e = strchr(p, ']');
        if (e == NULL)
            return false;
        snprintf(host, hostlen, "%.*s", (int)(e - p - 1), p + 1);
        e++;
    } else {
        e = p + strcspn(p, ":;?>");
        snprintf(host, hostlen, "%.*s", (int)(e - p), p);
    }
    *port = 0;
    if (*e == ':')
        *port = (uint16_t)strtoul(e + 1, NULL, 10);
    return host[0] != '\0';
}

struct subject_find {
    struct tp_conn *conn;
    bool found;
};

static bool
subject_iter(const struct dir_server *s, void *arg)
{
    struct subject_find *f = arg;

    if (s->cert_subject && s->cert_subject[0] && tp_conn_peer_name_matches(f->conn, s->cert_subject)) {
        f->found = true;
        return false;
    }
    return true;
}

/* design §2: serverAuth EKU and a subject (CN or SAN dNSName) listed in the directory. */
static bool
is_server_conn(struct px_trust *t, struct tp_conn *conn)
{
    const char *subj;
    struct subject_find f = {conn, false};

    if (t->dir == NULL || tp_conn_proto(conn) != TP_TLS || !tp_conn_peer_has_cert(conn) ||
        !tp_conn_peer_server_auth(conn))
        return false;
    subj = tp_conn_peer_subject(conn);
    if (subj && dir_server_find_by_subject(t->dir, subj) != NULL)
        return true;
    dir_server_foreach(t->dir, subject_iter, &f);   /* a SAN dNSName may be the listed one */
    return f.found;
}

struct tas_find {
    const struct tp_addr *src;
    bool found;
};

static bool
tas_iter(const struct dir_route *r, void *arg)
{
    struct tas_find *f = arg;

    if (r->treat_as_server && r->n_allow_from > 0 &&
        px_trust_addr_allowed((const char *const *)r->allow_from, r->n_allow_from, f->src)) {
        f->found = true;
        return false;
    }
    return true;
}

/* Trusted: a trusted listener's allowed source, or a treat_as_server route's allow_from. */
static bool
is_trusted_source(struct px_trust *t, enum tp_proto proto, const struct tp_addr *local,
                  const struct tp_addr *src)
{
    for (size_t i = 0; i < t->ntl; i++) {
        const char *allow[PX_TRUST_MAX_ALLOW];
        if (t->tl[i].proto != proto || !tp_addr_equal(&t->tl[i].addr, local))
            continue;
        for (size_t j = 0; j < t->tl[i].n_allow; j++)
            allow[j] = t->tl[i].allow[j];
        if (px_trust_addr_allowed(allow, t->tl[i].n_allow, src))
            return true;
    }
    if (t->dir) {
        struct tas_find f = {src, false};
        dir_route_foreach(t->dir, tas_iter, &f);
        return f.found;
    }
    return false;
}

static void
conn_open_cb(struct tp_conn *conn, void *arg)
{
    struct px_trust *t = arg;
    enum tp_class cls = TP_CLASS_CLIENT;
    char peer[80];

    if (is_server_conn(t, conn))
        cls = TP_CLASS_SERVER;
    tp_conn_set_class(conn, cls);
    t->st.classified[cls]++;
    conn_note(t, tp_conn_id(conn), cls);
    log_debug("connection %llu from %s (%s%s%s): class %s", (unsigned long long)tp_conn_id(conn),
              tp_addr_str(tp_conn_peer(conn), peer, sizeof peer), tp_proto_name(tp_conn_proto(conn)),
              tp_conn_peer_subject(conn) ? ", " : "",
              tp_conn_peer_subject(conn) ? tp_conn_peer_subject(conn) : "", class_names[cls]);
}

struct px_trust *
px_trust_new(struct px *px, const struct px_trust_settings *set, char *err, size_t errlen)
{
    struct px_trust *t = calloc(1, sizeof *t);

    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->px = px;
    t->tp = px_tp(px);
    t->set = set;
    t->udp = px_throttle_new(100000);
    if (t->udp == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (set->trusted_listener.n > 0) {
        t->tl = calloc(set->trusted_listener.n, sizeof *t->tl);
        if (t->tl == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < set->trusted_listener.n; i++) {
            char why[200];
            if (px_trusted_listener_parse(set->trusted_listener.v[i], &t->tl[i], why, sizeof why) != 0) {
                snprintf(err, errlen, "--trusted-listener %s: %s", set->trusted_listener.v[i], why);
                goto fail;
            }
        }
        t->ntl = set->trusted_listener.n;
    }
    if (set->tls_cert && set->tls_cert[0]) {
        struct tp_tls_opts o;
        memset(&o, 0, sizeof o);
        o.cert_file = set->tls_cert;
        o.key_file = set->tls_key && set->tls_key[0] ? set->tls_key : NULL;
        o.ca_file = set->tls_ca;
        o.verify_peer = true;
        o.require_client_cert = false;   /* clients may have none; servers are told by their cert */
        if (tp_tls_configure(t->tp, &o, err, errlen) != 0)
            goto fail;
    }
    tp_set_conn_open_fn(t->tp, conn_open_cb, t);
    px_set_trust(px, t);
    return t;
fail:
    px_throttle_free(t->udp);
    free(t->tl);
    free(t);
    return NULL;
}

void
px_trust_free(struct px_trust *t)
{
    if (t == NULL)
        return;
    px_set_trust(t->px, NULL);
    tp_set_conn_open_fn(t->tp, NULL, NULL);
    px_throttle_free(t->udp);
    free(t->tl);
    free(t->conns);
    free(t);
}

int
px_trust_listen(struct px_trust *t, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->ntl; i++) {
        if (px_listen(t->px, t->tl[i].spec) != 0) {
            snprintf(err, errlen, "cannot open trusted listener %s", t->tl[i].spec);
            return -1;
        }
        log_info("trusted listener %s (allowed sources: %zu)", t->tl[i].spec, t->tl[i].n_allow);
    }
    return 0;
}

void px_trust_set_dir(struct px_trust *t, struct dir *d) { t->dir = d; }

int
px_trust_reload_tls(struct px_trust *t, char *err, size_t errlen)
{
    if (!tp_tls_enabled(t->tp))
        return 0;
    return tp_tls_reload(t->tp, err, errlen);
}

/* ------------------------------------------------------------------ request hooks */

/* The throttle key of a client request: its connection, or its source address (UDP). */
static bool
throttle_acquire(struct px_trust *t, struct px_req *r)
{
    unsigned limit = (unsigned)t->set->max_client_tx;
    uint64_t id = px_req_conn_id(r);

    if (id != 0) {
        struct tp_conn *conn = tp_conn_get(t->tp, id);
        unsigned *pending = conn ? tp_conn_pending(conn) : NULL;
        if (pending == NULL)
            return true;   /* already closed: nothing to protect, the answer goes nowhere */
        if (*pending >= limit)
            return false;
        (*pending)++;
        return true;
    }
    return px_throttle_acquire(t->udp, px_req_src(r), limit);
}

void
px_trust_req_done(struct px_trust *t, struct px_req *r)
{
    struct px_trust_req *tr = px_req_trust(r);
    uint64_t id = px_req_conn_id(r);

    if (!tr->counted)
        return;
    tr->counted = false;
    if (id != 0) {
        struct tp_conn *conn = tp_conn_get(t->tp, id);
        unsigned *pending = conn ? tp_conn_pending(conn) : NULL;
        if (pending && *pending > 0)
            (*pending)--;
    } else {
        px_throttle_release(t->udp, px_req_src(r));
    }
}

static bool
top_route_is_us(struct px_trust *t, const struct sip_msg *msg)
{
    osip_uri_t *u = sip_msg_route_count(msg) > 0 ? sip_msg_route_uri(msg, 0) : NULL;
    const char *tr;
    uint16_t def = 5060;

    if (u == NULL || u->host == NULL)
        return false;
    if ((u->scheme && strcasecmp(u->scheme, "sips") == 0) ||
        ((tr = sip_uri_param(u, "transport")) != NULL && strcasecmp(tr, "tls") == 0))
        def = 5061;
    return px_is_us(t->px, u->host, sip_uri_port(u, def));
}

struct host_find {
    const char *host;
    uint16_t port;
    bool found;
};

static bool server_host_iter(const struct dir_server *s, void *arg);

/*
 * A client's in-dialog request loose-routed to us: our own entries are dropped, and of
 * the rest of its route set only the entries naming a directory server (by host and
 * port: the hops our dialog's Record-Route set up inside the pool, e.g. the callee's home
 * server) are kept, in order; anything else the client put there is removed.
 */
static void
keep_pool_routes(struct px_trust *t, struct sip_msg *msg)
{
    osip_route_t *r;
    char *text;
    struct host_find f;
    char h[256];
    int i = 0;

    while (sip_msg_route_count(msg) > 0 && top_route_is_us(t, msg))
        sip_msg_pop_route(msg);
    while ((r = osip_list_get(&msg->osip->routes, i)) != NULL) {
        text = r->url ? sip_uri_str(r->url) : NULL;
        f.found = false;
        if (t->dir && text && uri_text_hostport(text, h, sizeof h, &f.port)) {
            f.host = h;
            dir_server_foreach(t->dir, server_host_iter, &f);
        }
        free(text);
        if (f.found) {
            i++;
            continue;
        }
        osip_list_remove(&msg->osip->routes, i);
        osip_route_free(r);
        msg->dirty |= SIP_DIRTY_ROUTE;   /* the forwarding builders rewrite Route from osip */
    }
    osip_message_force_update(msg->osip);
}

static enum tp_class
classify(struct px_trust *t, const struct tp_rx *rx)
{
    struct tp_conn *conn = rx->conn_id ? tp_conn_get(t->tp, rx->conn_id) : NULL;
    enum tp_class cls = conn ? tp_conn_class(conn) : TP_CLASS_CLIENT;

    if (cls == TP_CLASS_CLIENT && is_trusted_source(t, rx->proto, &rx->local, &rx->src)) {
        cls = TP_CLASS_TRUSTED;
        if (conn) {
            tp_conn_set_class(conn, cls);
            t->st.classified[TP_CLASS_TRUSTED]++;
            conn_note(t, rx->conn_id, cls);
        }
    }
    return cls;
}

enum tp_class
px_trust_rx_class(struct px_trust *t, const struct tp_rx *rx)
{
    return classify(t, rx);
}

int
px_trust_on_request(struct px_trust *t, struct px_req *r)
{
    struct px_trust_req *tr = px_req_trust(r);
    struct sip_msg *msg = px_req_msg(r);
    const struct tp_rx *rx = px_req_rx(r);
    struct sip_msg *resp;
    char src[80];

    tr->cls = rx ? classify(t, rx) : TP_CLASS_CLIENT;
    if (tr->cls != TP_CLASS_CLIENT)
        return 0;   /* server/trusted: Route and Record-Route honoured, no limit */
    /* design §2: Route and Record-Route of a client are removed before anything else; an
     * in-dialog request loose-routed to us follows the dialog we Record-Routed. */
    if (sip_msg_route_count(msg) > 0 || sip_msg_header_count(msg, "record-route") > 0) {
        tr->dialog_via_us = sip_msg_to_tag(msg) != NULL && top_route_is_us(t, msg);
        if (!tr->dialog_via_us) {
            t->st.route_stripped++;
            log_debug("stripped Route/Record-Route of a client request from %s",
                      tp_addr_str(px_req_src(r), src, sizeof src));
        }
        if (tr->dialog_via_us)
            keep_pool_routes(t, msg);
        else
            sip_msg_remove_routes(msg);
        sip_msg_remove_record_routes(msg);
    }
    if (msg->method == SIP_CANCEL)
        return 0;   /* a CANCEL ends a transaction: never throttled */
    if (!throttle_acquire(t, r)) {
        t->st.throttled++;
        log_debug("503 to %s: %lld transactions outstanding", tp_addr_str(px_req_src(r), src, sizeof src),
                  t->set->max_client_tx);
        snprintf(t->retry_after, sizeof t->retry_after, "%lld", t->set->retry_after_s);
        resp = px_reply_build(r, 503, "Too Many Transactions");
        if (resp) {
            sip_msg_add_header(resp, "Retry-After", t->retry_after);
            px_reply_msg(r, resp);
            sip_msg_free(resp);
        }
        return 1;
    }
    tr->counted = true;
    return 0;
}

struct route_pick {
    const osip_uri_t *u;
    const struct dir_route *best;
    int score;
};

static bool
route_iter(const struct dir_route *r, void *arg)
{
    struct route_pick *p = arg;
    int s = px_trust_route_score(r, p->u);

    if (s > p->score) {
        p->score = s;
        p->best = r;
    }
    return true;
}

int
px_trust_route(struct px_trust *t, struct px_req *r)
{
    struct sip_msg *msg = px_req_msg(r);
    struct px_trust_req *tr = px_req_trust(r);
    osip_uri_t *ru = sip_msg_ruri(msg);
    struct px_target tg;
    char *uri = sip_uri_str(ru);
    int rc = 1;

    if (uri == NULL) {
        px_reply(r, 400, "Bad Request-URI");
        return 1;
    }
    memset(&tg, 0, sizeof tg);
    tg.uri = uri;
    tg.q = 1000;
    if (!px_req_has_route(r)) {
        struct route_pick p = {ru, NULL, -1};
        if (t->dir)
            dir_route_foreach(t->dir, route_iter, &p);
        if (p.best) {
            /* the static route's next hop, loose-routed: the Request-URI stays */
            char hop[600];
            snprintf(hop, sizeof hop, "%s%s", p.best->next_hop, strstr(p.best->next_hop, ";lr") ? "" : ";lr");
            tg.route_set = hop;
            t->st.static_routed++;
            log_debug("static route %s -> %s", p.best->name, p.best->next_hop);
            rc = px_add_target(r, &tg) == 0 ? 0 : (px_reply(r, 500, NULL), 1);
            goto out;
        }
        if (sip_uri_is_phone(ru)) {
            t->st.no_route++;
            px_reply(r, 404, "No Route To Number");
            goto out;
        }
    }
    tg.client_supplied = tr->cls == TP_CLASS_CLIENT && !tr->dialog_via_us;
    rc = px_add_target(r, &tg) == 0 ? 0 : (px_reply(r, 500, NULL), 1);
out:
    free(uri);
    return rc;
}


/* Same host (case-insensitive) and, when both name one, the same port. */
static bool
hostport_match(const char *uri, const struct host_find *f)
{
    char h[256];
    uint16_t p;

    if (uri == NULL || !uri_text_hostport(uri, h, sizeof h, &p) || strcasecmp(h, f->host) != 0)
        return false;
    return p == 0 || f->port == 0 || p == f->port;
}

static bool
server_host_iter(const struct dir_server *s, void *arg)
{
    struct host_find *f = arg;

    if (hostport_match(s->address, f))
        f->found = true;
    return !f->found;
}

static bool
route_host_iter(const struct dir_route *r, void *arg)
{
    struct host_find *f = arg;

    if (hostport_match(r->next_hop, f))
        f->found = true;
    return !f->found;
}

bool
px_trust_dest_allowed(struct px_trust *t, struct px_req *r, const char *host, uint16_t port)
{
    char h[256], src[80];
    struct host_find f;

    unbracket(host, h, sizeof h);
    /* ours: our own listener (with its port) or, for a name, our domain / advertised name */
    if (px_is_us(t->px, h, port))
        return true;
    if (!is_ip_literal(h) && (px_is_our_domain(t->px, h) || px_is_us(t->px, h, 0)))
        return true;
    /* a server of the pool, or a static route's next hop */
    f.host = h;
    f.port = port;
    f.found = false;
    if (t->dir) {
        dir_server_foreach(t->dir, server_host_iter, &f);
        if (!f.found)
            dir_route_foreach(t->dir, route_host_iter, &f);
    }
    if (f.found)
        return true;
    t->st.relay_denied++;
    log_info("403: client %s asked to relay to %s:%u (not ours, no static route)",
             tp_addr_str(px_req_src(r), src, sizeof src), h, port);
    return false;
}

bool
px_trust_ack_allowed(struct px_trust *t, const struct sip_msg *ack, const struct tp_rx *rx)
{
    if (classify(t, rx) != TP_CLASS_CLIENT)
        return true;
    if (top_route_is_us(t, ack))
        return true;   /* the ACK of a dialog we Record-Routed */
    t->st.ack_dropped++;
    return false;
}

/* ------------------------------------------------------------------ admin */

static double
live_conns(struct px_trust *t, enum tp_class cls)
{
    size_t j = 0, n = 0;

    for (size_t i = 0; i < t->nconns; i++) {
        struct tp_conn *c = tp_conn_get(t->tp, t->conns[i].id);
        if (c == NULL)
            continue;
        t->conns[i].cls = tp_conn_class(c);
        t->conns[j++] = t->conns[i];
        if (t->conns[i].cls == cls)
            n++;
    }
    t->nconns = j;
    return (double)n;
}

#define TRUST_FN(name, expr)                                                                           \
    static double name(void *arg)                                                                      \
    {                                                                                                  \
        struct px_trust *t = arg;                                                                      \
        return (double)(expr);                                                                         \
    }
TRUST_FN(m_cls_client, t->st.classified[TP_CLASS_CLIENT])
TRUST_FN(m_cls_server, t->st.classified[TP_CLASS_SERVER])
TRUST_FN(m_cls_trusted, t->st.classified[TP_CLASS_TRUSTED])
TRUST_FN(m_live_client, live_conns(t, TP_CLASS_CLIENT))
TRUST_FN(m_live_server, live_conns(t, TP_CLASS_SERVER))
TRUST_FN(m_live_trusted, live_conns(t, TP_CLASS_TRUSTED))
TRUST_FN(m_stripped, t->st.route_stripped)
TRUST_FN(m_throttled, t->st.throttled)
TRUST_FN(m_relay, t->st.relay_denied)
TRUST_FN(m_no_route, t->st.no_route)
TRUST_FN(m_ack, t->st.ack_dropped)
TRUST_FN(m_static, t->st.static_routed)
TRUST_FN(m_tls_fail, tp_stats(t->tp)->tls_handshake_fail)
TRUST_FN(m_udp_sources, px_throttle_sources(t->udp))

static int
api_connections(struct admin_req *req, struct evbuffer *out, void *arg)
{
    struct px_trust *t = arg;
    bool first = true;
    char peer[80];

    live_conns(t, TP_CLASS_CLIENT);   /* prunes closed ones */
    admin_req_set_content_type(req, "application/json");
    evbuffer_add_printf(out, "{\"connections\":[");
    for (size_t i = 0; i < t->nconns; i++) {
        struct tp_conn *c = tp_conn_get(t->tp, t->conns[i].id);
        const char *subj;
        if (c == NULL)
            continue;
        subj = tp_conn_peer_subject(c);
        evbuffer_add_printf(out, "%s{\"id\":%llu,\"proto\":\"%s\",\"peer\":", first ? "" : ",",
                            (unsigned long long)t->conns[i].id, tp_proto_name(tp_conn_proto(c)));
        admin_json_str(out, tp_addr_str(tp_conn_peer(c), peer, sizeof peer));
        evbuffer_add_printf(out, ",\"class\":\"%s\",\"subject\":", class_names[tp_conn_class(c)]);
        admin_json_str(out, subj ? subj : "");
        evbuffer_add_printf(out, ",\"server_auth\":%s,\"pending\":%u}",
                            tp_conn_peer_server_auth(c) ? "true" : "false", *tp_conn_pending(c));
        first = false;
    }
    evbuffer_add_printf(out, "]}\n");
    return 200;
}

void
px_trust_register_admin(struct px_trust *t, struct admin_http *admin, struct metrics *m)
{
    static const char fam_cls[] = "parley_trust_connections_classified_total";
    static const char fam_live[] = "parley_trust_connections";
    static const char fam_rej[] = "parley_proxy_rejections_total";
    static const char help_cls[] = "stream connections classified, by class (design §2)";
    static const char help_live[] = "open stream connections by class";
    static const char help_rej[] = "requests refused by reason";

    if (admin)
        admin_http_add_route(admin, "/api/connections", api_connections, t);
    if (m == NULL)
        return;
    metrics_series_fn_labels(m, METRIC_COUNTER, fam_cls, help_cls, m_cls_client, t, "class", "client", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, fam_cls, help_cls, m_cls_server, t, "class", "server", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, fam_cls, help_cls, m_cls_trusted, t, "class", "trusted", (const char *)NULL);
    metrics_gauge_fn_labels(m, fam_live, help_live, m_live_client, t, "class", "client");
    metrics_gauge_fn_labels(m, fam_live, help_live, m_live_server, t, "class", "server");
    metrics_gauge_fn_labels(m, fam_live, help_live, m_live_trusted, t, "class", "trusted");
    metrics_series_fn_labels(m, METRIC_COUNTER, fam_rej, help_rej, m_stripped, t, "reason", "route_stripped", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, fam_rej, help_rej, m_throttled, t, "reason", "throttled", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, fam_rej, help_rej, m_relay, t, "reason", "relay_denied", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, fam_rej, help_rej, m_no_route, t, "reason", "no_route", (const char *)NULL);
    metrics_series_fn_labels(m, METRIC_COUNTER, fam_rej, help_rej, m_ack, t, "reason", "ack_not_routed", (const char *)NULL);
    metrics_counter_fn(m, "parley_trust_static_routed_total", "requests sent along a static route", m_static, t);
    metrics_counter_fn(m, "parley_tls_handshake_failures_total", "TLS handshakes that failed (either role)",
                       m_tls_fail, t);
    metrics_gauge_fn(m, "parley_trust_udp_sources", "UDP sources with transactions outstanding",
                     m_udp_sources, t);
}
