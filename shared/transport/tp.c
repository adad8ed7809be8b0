/*
 * tp: the transport set of one event loop — listeners, the connection tables
 * (id -> conn and (proto, peer) -> conn, both O(1)), deferred freeing of
 * connections (style rule 15), deferred failure reports, send dispatch, stats and
 * the address helpers.
 */
#define LOG_MODULE "tp"
#include "transport/tp_int.h"

#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <event2/bufferevent.h>

#define TP_INITIAL_BUCKETS 64

void
tp_limits_default(struct tp_limits *lim)
{
    lim->max_msg_size = 65536;
    lim->idle_timeout_s = 300;
    lim->connect_timeout_ms = 2000;
    lim->max_conns = 10000;
    lim->max_outbuf = 1024 * 1024;
    lim->reuse_port = false;
}

int
tp_sock_reuse_port(struct tp *tp, int fd, const char *where)
{
    int one = 1;

    if (!tp->lim.reuse_port)
        return 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        log_err("listen %s: SO_REUSEPORT: %s", where, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- descriptor limit -------------------------------------------------------------- */

/* Descriptors kept beyond max_conns for listeners, the store, logs, etcd and admin HTTP. */
#define TP_FD_HEADROOM 256

int
tp_raise_fd_limit(unsigned max_conns)
{
    struct rlimit rl;
    rlim_t was;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    was = rl.rlim_cur;
    if (rl.rlim_cur != RLIM_INFINITY && (rl.rlim_max == RLIM_INFINITY || rl.rlim_cur < rl.rlim_max)) {
        struct rlimit want = rl;
        /* the kernel refuses RLIM_INFINITY for RLIMIT_NOFILE: ask for what max_conns needs */
        want.rlim_cur = rl.rlim_max != RLIM_INFINITY ? rl.rlim_max
                                                     : (rlim_t)max_conns + TP_FD_HEADROOM;
        if (want.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = want.rlim_cur;
        else if (want.rlim_cur > rl.rlim_cur)
            log_warn("cannot raise the descriptor limit from %llu to %llu: %s",
                     (unsigned long long)rl.rlim_cur, (unsigned long long)want.rlim_cur,
                     strerror(errno));
    }
    if (rl.rlim_cur == was)
        log_info("descriptor limit %llu (hard %llu)", (unsigned long long)rl.rlim_cur,
                 (unsigned long long)rl.rlim_max);
    else
        log_info("descriptor limit raised from %llu to %llu (hard limit)", (unsigned long long)was,
                 (unsigned long long)rl.rlim_cur);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max_conns + TP_FD_HEADROOM)
        log_warn("max-connections %u needs about %u descriptors, the limit is %llu: beyond it "
                 "new connections wait in the backlog (raise LimitNOFILE / ulimit -Hn)",
                 max_conns, max_conns + TP_FD_HEADROOM, (unsigned long long)rl.rlim_cur);
    return 0;
}

/* ---- deferred work: reaper and failure reports ------------------------------------ */

static void
reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp *tp = arg;
    struct tp_conn *conn = tp->dead;

    tp->dead = NULL;
    while (conn != NULL) {
        struct tp_conn *next = conn->dead_next;
        tp_conn_destroy(conn);
        conn = next;
    }
}

static void
fail_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp *tp = arg;
    struct tp_failed *f = tp->fhead;

    /* detach first: the callback may send and queue new failures */
    tp->fhead = tp->ftail = NULL;
    while (f != NULL) {
        struct tp_failed *next = f->next;
        if (tp->fail_cb != NULL)
            tp->fail_cb(f->data, f->len, &f->dst, f->proto, tp->arg);
        free(f);
        f = next;
    }
}

void
tp_fail_queue(struct tp *tp, const char *buf, size_t len, const struct tp_addr *dst,
              enum tp_proto proto)
{
    struct tp_failed *f = malloc(sizeof *f + len);

    tp->stats.send_fail++;
    if (f == NULL) {
        log_err("out of memory reporting a failed message of %zu bytes", len);
        return;
    }
    f->next = NULL;
    f->dst = *dst;
    f->proto = proto;
    f->len = len;
    memcpy(f->data, buf, len);
    if (tp->ftail != NULL)
        tp->ftail->next = f;
    else
        tp->fhead = f;
    tp->ftail = f;
    event_active(tp->fail_ev, EV_TIMEOUT, 0);
}

void
tp_deliver(struct tp *tp, struct tp_rx *rx)
{
    tp->stats.rx_msgs++;
    tp->stats.rx_bytes += rx->len;
    if (tp->recv_cb != NULL)
        tp->recv_cb(rx, tp->arg);
}

/* ---- lifecycle -------------------------------------------------------------------- */

struct tp *
tp_new(struct event_base *base, const struct tp_limits *lim, tp_recv_fn *recv_cb,
       tp_fail_fn *fail_cb_fn, void *arg)
{
    static bool fd_limit_done;   /* once per process: the limit is per process */
    struct tp *tp = calloc(1, sizeof *tp);

    if (tp == NULL)
        goto err;
    tp->base = base;
    if (lim != NULL)
        tp->lim = *lim;
    else
        tp_limits_default(&tp->lim);
    if (tp->lim.max_msg_size == 0)
        tp->lim.max_msg_size = 65536;
    if (!fd_limit_done) {
        fd_limit_done = true;
        tp_raise_fd_limit(tp->lim.max_conns);
    }
    tp->recv_cb = recv_cb;
    tp->fail_cb = fail_cb_fn;
    tp->arg = arg;
    tp->next_id = 1;
    tp->nbuckets = TP_INITIAL_BUCKETS;
    tp->by_id = calloc(tp->nbuckets, sizeof *tp->by_id);
    tp->by_peer = calloc(tp->nbuckets, sizeof *tp->by_peer);
    tp->reaper = event_new(base, -1, 0, reaper_cb, tp);
    tp->fail_ev = event_new(base, -1, 0, fail_cb, tp);
    if (tp->by_id == NULL || tp->by_peer == NULL || tp->reaper == NULL || tp->fail_ev == NULL)
        goto err;
    return tp;
err:
    log_err("tp_new: out of memory");
    tp_free(tp);
    return NULL;
}

void
tp_free(struct tp *tp)
{
    struct tp_failed *f;

    if (tp == NULL)
        return;
    while (tp->listeners != NULL) {
        struct tp_listener *lis = tp->listeners;
        tp->listeners = lis->next;
        if (lis->proto == TP_UDP)
            tp_udp_close(lis);
        else
            tp_stream_stop(lis);
        free(lis);
    }
    for (size_t i = 0; tp->by_id != NULL && i < tp->nbuckets; i++) {
        struct tp_conn *conn = tp->by_id[i];
        while (conn != NULL) {
            struct tp_conn *next = conn->id_next;
            tp_conn_destroy(conn);
            conn = next;
        }
    }
    while (tp->dead != NULL) {
        struct tp_conn *conn = tp->dead;
        tp->dead = conn->dead_next;
        tp_conn_destroy(conn);
    }
    /* undelivered failure reports die with the transport: there is no loop to run them */
    while ((f = tp->fhead) != NULL) {
        tp->fhead = f->next;
        free(f);
    }
    if (tp->reaper != NULL)
        event_free(tp->reaper);
    if (tp->fail_ev != NULL)
        event_free(tp->fail_ev);
    free(tp->by_id);
    free(tp->by_peer);
    free(tp->udp_buf);
    tp_tls_cleanup(tp);
    free(tp);
}

/* ---- connection tables ------------------------------------------------------------ */

static size_t
hash_id(uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17);
}

static size_t
hash_peer(enum tp_proto proto, const struct tp_addr *a)
{
    uint64_t h = HASH_FNV64_SEED ^ (uint64_t)proto;
    const unsigned char *p = NULL;
    size_t n = 0;

    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;
        p = (const unsigned char *)&s->sin_addr;
        n = sizeof s->sin_addr;
    } else if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->ss;
        p = (const unsigned char *)&s->sin6_addr;
        n = sizeof s->sin6_addr;
    }
    h = hash_fnv1a64(h, p, n);
    h = hash_fnv1a64_step(h, tp_addr_port(a));
    return (size_t)(h ^ (h >> 29));
}

static void
tables_link(struct tp *tp, struct tp_conn *conn)
{
    size_t mask = tp->nbuckets - 1;
    size_t bi = hash_id(conn->id) & mask, bp = hash_peer(conn->proto, &conn->peer) & mask;

    conn->id_next = tp->by_id[bi];
    tp->by_id[bi] = conn;
    conn->peer_next = tp->by_peer[bp];
    tp->by_peer[bp] = conn;
}

/* Doubles the tables when they average more than one connection a bucket. */
static void
tables_grow(struct tp *tp)
{
    size_t old_n = tp->nbuckets;
    struct tp_conn **old_id = tp->by_id;
    struct tp_conn **nid = calloc(old_n * 2, sizeof *nid);
    struct tp_conn **npeer = calloc(old_n * 2, sizeof *npeer);

    if (nid == NULL || npeer == NULL) {   /* keep the old, longer chains */
        free(nid);
        free(npeer);
        return;
    }
    free(tp->by_peer);
    tp->by_id = nid;
    tp->by_peer = npeer;
    tp->nbuckets = old_n * 2;
    for (size_t i = 0; i < old_n; i++) {
        struct tp_conn *conn = old_id[i];
        while (conn != NULL) {
            struct tp_conn *next = conn->id_next;
            tables_link(tp, conn);
            conn = next;
        }
    }
    free(old_id);
}

void
tp_conn_insert(struct tp *tp, struct tp_conn *conn)
{
    if (tp->nconns >= tp->nbuckets)
        tables_grow(tp);
    tables_link(tp, conn);
    tp->nconns++;
    tp->stats.conns_open++;
}

static void
tables_unlink(struct tp *tp, struct tp_conn *conn)
{
    size_t mask = tp->nbuckets - 1;
    struct tp_conn **pp;

    for (pp = &tp->by_id[hash_id(conn->id) & mask]; *pp != NULL; pp = &(*pp)->id_next) {
        if (*pp == conn) {
            *pp = conn->id_next;
            break;
        }
    }
    for (pp = &tp->by_peer[hash_peer(conn->proto, &conn->peer) & mask]; *pp != NULL;
         pp = &(*pp)->peer_next) {
        if (*pp == conn) {
            *pp = conn->peer_next;
            break;
        }
    }
    conn->id_next = conn->peer_next = NULL;
    tp->nconns--;
    tp->stats.conns_open--;
}

struct tp_conn *
tp_conn_get(struct tp *tp, uint64_t conn_id)
{
    struct tp_conn *conn;

    if (tp == NULL || conn_id == 0)
        return NULL;
    for (conn = tp->by_id[hash_id(conn_id) & (tp->nbuckets - 1)]; conn != NULL;
         conn = conn->id_next) {
        if (conn->id == conn_id)
            return conn;
    }
    return NULL;
}

/* A live connection to <peer> over <proto> that may carry a new message (for TLS, one
 * that was verified for <tls_name>, see tp_tls_conn_fits). */
struct tp_conn *
tp_conn_find_peer(struct tp *tp, enum tp_proto proto, const struct tp_addr *peer,
                  const char *tls_name)
{
    struct tp_conn *conn;

    for (conn = tp->by_peer[hash_peer(proto, peer) & (tp->nbuckets - 1)]; conn != NULL;
         conn = conn->peer_next) {
        if (conn->proto == proto && !conn->close_after_write && tp_addr_equal(&conn->peer, peer) &&
            (proto != TP_TLS || tp_tls_conn_fits(conn, tls_name)))
            return conn;
    }
    return NULL;
}

struct tp_conn *
tp_conn_new(struct tp *tp, enum tp_proto proto, const struct tp_addr *peer,
            struct tp_listener *lis)
{
    struct tp_conn *conn = calloc(1, sizeof *conn);

    if (conn == NULL)
        return NULL;
    conn->tp = tp;
    conn->id = tp->next_id++;
    conn->proto = proto;
    conn->cls = lis != NULL ? lis->cls : TP_CLASS_CLIENT;
    conn->peer = *peer;
    conn->lis = lis;
    conn->outgoing = lis == NULL;
    conn->last_active_ms = clock_mono_ms();
    return conn;
}

void
tp_conn_destroy(struct tp_conn *conn)
{
    struct tp_qmsg *q;

    if (conn == NULL)
        return;
    tp_tls_conn_close(conn);
    if (conn->bev != NULL)
        bufferevent_free(conn->bev);
    if (conn->timer != NULL)
        event_free(conn->timer);
    while ((q = conn->qhead) != NULL) {
        conn->qhead = q->next;
        free(q);
    }
    free(conn->out_lens);
    tp_tls_conn_free(conn);
    free(conn);
}

void
tp_conn_kill(struct tp_conn *conn, const char *why)
{
    struct tp *tp = conn->tp;
    char peer[64];

    if (conn->closing)
        return;
    log_debug("conn=%llu %s %s closed: %s", (unsigned long long)conn->id,
              tp_proto_name(conn->proto), tp_addr_str(&conn->peer, peer, sizeof peer), why);
    conn->closing = true;
    tables_unlink(tp, conn);
    if (conn->bev != NULL) {
        bufferevent_disable(conn->bev, EV_READ | EV_WRITE);
        bufferevent_setcb(conn->bev, NULL, NULL, NULL, NULL);
    }
    if (conn->timer != NULL)
        event_del(conn->timer);
    if (conn->outgoing || conn->qhead != NULL)   /* accepted TLS may queue in its handshake */
        tp_stream_collect_unsent(conn);
    conn->dead_next = tp->dead;
    tp->dead = conn;
    event_active(tp->reaper, EV_TIMEOUT, 0);
}

uint64_t tp_conn_id(const struct tp_conn *conn) { return conn->id; }
enum tp_proto tp_conn_proto(const struct tp_conn *conn) { return conn->proto; }
const struct tp_addr *tp_conn_peer(const struct tp_conn *conn) { return &conn->peer; }
enum tp_class tp_conn_class(const struct tp_conn *conn) { return conn->cls; }
void tp_conn_set_class(struct tp_conn *conn, enum tp_class cls) { conn->cls = cls; }
unsigned *tp_conn_pending(struct tp_conn *conn) { return &conn->pending; }
bool
tp_conn_is_established(const struct tp_conn *conn)
{
    return conn->connected && !conn->closing;
}

void
tp_set_conn_open_fn(struct tp *tp, tp_conn_open_fn *fn, void *arg)
{
    tp->open_cb = fn;
    tp->open_arg = arg;
}

void
tp_conn_close(struct tp *tp, struct tp_conn *conn, bool now)
{
    if (conn == NULL || conn->closing)
        return;
    if (now)
        tp_conn_kill(conn, "closed by owner");
    else
        tp_stream_conn_close_soft(conn);
}

/* ---- listeners -------------------------------------------------------------------- */

struct tp_listener *
tp_listen(struct tp *tp, enum tp_proto proto, const struct tp_addr *addr)
{
    struct tp_listener *lis, **pp;

    switch (proto) {
    case TP_UDP:
        lis = tp_udp_listen(tp, addr);
        break;
    case TP_TCP:
    case TP_TLS:
        lis = tp_stream_listen(tp, proto, addr);
        break;
    default:
        log_err("tp_listen: unknown protocol %d", (int)proto);
        return NULL;
    }
    if (lis == NULL)
        return NULL;
    for (pp = &tp->listeners; *pp != NULL; pp = &(*pp)->next)
        ;
    *pp = lis;
    return lis;
}

const struct tp_addr *tp_listener_addr(const struct tp_listener *lis) { return &lis->addr; }
enum tp_proto tp_listener_proto(const struct tp_listener *lis) { return lis->proto; }
void tp_listener_set_class(struct tp_listener *lis, enum tp_class cls) { lis->cls = cls; }

void
tp_stop_listening(struct tp *tp)
{
    for (struct tp_listener *lis = tp->listeners; lis != NULL; lis = lis->next) {
        if (lis->proto != TP_UDP)
            tp_stream_stop(lis);
    }
}

struct tp_listener *
tp_listener_first(struct tp *tp, enum tp_proto proto)
{
    for (struct tp_listener *lis = tp->listeners; lis != NULL; lis = lis->next) {
        if (lis->proto == proto)
            return lis;
    }
    return NULL;
}

/* ---- send ------------------------------------------------------------------------- */

int
tp_send(struct tp *tp, const struct tp_dest *dst, const char *buf, size_t len)
{
    struct tp_conn *conn;

    if (tp == NULL || dst == NULL || buf == NULL || len == 0)
        return -1;
    if (dst->proto != TP_UDP && dst->conn_id != 0) {
        conn = tp_conn_get(tp, dst->conn_id);
        if (conn != NULL && !conn->close_after_write)
            return tp_stream_conn_send(conn, buf, len);
    }
    switch (dst->proto) {
    case TP_UDP:
        return tp_udp_send(tp, &dst->addr, buf, len);
    case TP_TCP:
    case TP_TLS:
        return tp_stream_send(tp, dst, buf, len);
    }
    tp->stats.send_fail++;
    return -1;
}

const struct tp_stats *tp_stats(const struct tp *tp) { return &tp->stats; }

/* ---- addresses -------------------------------------------------------------------- */

const char *
tp_proto_name(enum tp_proto proto)
{
    switch (proto) {
    case TP_UDP:
        return "UDP";
    case TP_TCP:
        return "TCP";
    case TP_TLS:
        return "TLS";
    }
    return "?";
}

uint16_t
tp_addr_port(const struct tp_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}

char *
tp_addr_host(const struct tp_addr *a, char *out, size_t outlen)
{
    const void *src = NULL;

    if (outlen == 0)
        return out;
    out[0] = '\0';
    if (a->ss.ss_family == AF_INET && outlen >= INET_ADDRSTRLEN) {
        /* dotted quad by hand: glibc's inet_ntop formats IPv4 with sprintf, and this runs
         * several times per message (Via received=, transaction destination) */
        const unsigned char *b = (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
        char *o = out;
        for (int i = 0; i < 4; i++) {
            unsigned v = b[i];
            if (v >= 100)
                *o++ = (char)('0' + v / 100);
            if (v >= 10)
                *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
            *o++ = i < 3 ? '.' : '\0';
        }
        return out;
    }
    if (a->ss.ss_family == AF_INET)
        src = &((const struct sockaddr_in *)&a->ss)->sin_addr;
    else if (a->ss.ss_family == AF_INET6)
        src = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    if (src == NULL || inet_ntop(a->ss.ss_family, src, out, (socklen_t)outlen) == NULL)
        snprintf(out, outlen, "?");
    return out;
}

char *
tp_addr_str(const struct tp_addr *a, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];

    tp_addr_host(a, host, sizeof host);
    if (a->ss.ss_family == AF_INET6)
        snprintf(out, outlen, "[%s]:%u", host, (unsigned)tp_addr_port(a));
    else
        snprintf(out, outlen, "%s:%u", host, (unsigned)tp_addr_port(a));
    return out;
}

int
tp_addr_from_ip(struct tp_addr *a, const char *host, uint16_t port)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n;

    if (host == NULL)
        return -1;
    n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, host, n);
    buf[n] = '\0';
    memset(a, 0, sizeof *a);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
    if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        a->len = sizeof *s4;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        a->len = sizeof *s6;
        return 0;
    }
    memset(a, 0, sizeof *a);
    return -1;
}

bool
tp_addr_equal(const struct tp_addr *a, const struct tp_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->ss;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

int
tp_parse_listen_spec(const char *spec, enum tp_proto *proto, struct tp_addr *addr, char *err,
                     size_t errlen)
{
    const char *colon, *host, *port_s = NULL;
    char hbuf[INET6_ADDRSTRLEN + 2];
    size_t plen, hlen;
    unsigned long port;
    int rc = -1;

    if (err == NULL)
        errlen = 0;   /* snprintf(NULL, 0, ...) is valid: errors are then only returned */
    else if (errlen > 0)
        err[0] = '\0';
    if (spec == NULL || spec[0] == '\0') {
        snprintf(err, errlen, "empty listen address (want proto:host[:port], e.g. udp:0.0.0.0:5060)");
        goto out;
    }
    colon = strchr(spec, ':');
    if (colon == NULL) {
        snprintf(err, errlen, "listen address '%s' has no protocol (want udp:, tcp: or tls:)", spec);
        goto out;
    }
    plen = (size_t)(colon - spec);
    if (plen == 3 && strncasecmp(spec, "udp", 3) == 0)
        *proto = TP_UDP;
    else if (plen == 3 && strncasecmp(spec, "tcp", 3) == 0)
        *proto = TP_TCP;
    else if (plen == 3 && strncasecmp(spec, "tls", 3) == 0)
        *proto = TP_TLS;
    else {
        snprintf(err, errlen, "listen address '%s': unknown protocol '%.*s' (want udp, tcp or tls)",
                 spec, (int)plen, spec);
        goto out;
    }
    host = colon + 1;
    if (host[0] == '[') {
        const char *rb = strchr(host, ']');
        if (rb == NULL) {
            snprintf(err, errlen, "listen address '%s': missing ']' after IPv6 address", spec);
            goto out;
        }
        hlen = (size_t)(rb - host) + 1;
        if (rb[1] == ':')
            port_s = rb + 2;
        else if (rb[1] != '\0') {
            snprintf(err, errlen, "listen address '%s': unexpected '%s' after ']'", spec, rb + 1);
            goto out;
        }
    } else {
        const char *c = strchr(host, ':');
        if (c != NULL && strchr(c + 1, ':') != NULL) {
            snprintf(err, errlen, "listen address '%s': put an IPv6 address in brackets, "
                     "e.g. tcp:[::1]:5060", spec);
            goto out;
        }
        hlen = c != NULL ? (size_t)(c - host) : strlen(host);
        if (c != NULL)
            port_s = c + 1;
    }
    if (hlen == 0 || hlen >= sizeof hbuf) {
        snprintf(err, errlen, "listen address '%s': missing or overlong host", spec);
        goto out;
    }
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = '\0';
    if (port_s == NULL) {
        port = *proto == TP_TLS ? 5061 : 5060;   /* RFC 3261 §19.1.2 defaults */
    } else {
        char *end;
        if (port_s[0] < '0' || port_s[0] > '9') {
            snprintf(err, errlen, "listen address '%s': port '%s' is not a number", spec, port_s);
            goto out;
        }
        errno = 0;
        port = strtoul(port_s, &end, 10);
        if (*end != '\0') {
            snprintf(err, errlen, "listen address '%s': port '%s' is not a number", spec, port_s);
            goto out;
        }
        if (errno != 0 || port > 65535) {
            snprintf(err, errlen, "listen address '%s': port '%s' is not in 0..65535", spec, port_s);
            goto out;
        }
    }
    if (tp_addr_from_ip(addr, hbuf, (uint16_t)port) != 0) {
        snprintf(err, errlen, "listen address '%s': '%s' is not a numeric IPv4 or IPv6 address",
                 spec, hbuf);
        goto out;
    }
    rc = 0;
out:
    return rc;
}
