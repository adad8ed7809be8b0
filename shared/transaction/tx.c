#define LOG_MODULE "tx"
#include "transaction/tx.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "sip/sip_raw.h"
#include "util/hash.h"
#include "util/log.h"

struct tx {
    struct tx_layer *txl;
    struct tx *hnext;            /* hash chain */
    uint32_t hash;
    bool in_table;
    char *key;
    bool server;
    bool invite;
    bool reliable;
    bool stateless;              /* server: forgotten once its final answer is sent (§8.2.7) */
    bool cancel_pending;         /* client INVITE: CANCEL asked for before any provisional */
    bool cancel_sent;
    bool final_sent;             /* server: a final response went out */
    enum tx_state state;
    unsigned refs;
    struct sip_msg *req;         /* owned */
    char *buf;                   /* client: serialized request; server: last response sent */
    size_t len;
    char *ack_buf;               /* client INVITE: ACK for a non-2xx final (resent on retransmits) */
    size_t ack_len;
    int last_status;
    struct tp_dest dest;
    unsigned retx_ms;            /* current retransmit interval (Timers A, E, G) */
    struct event ev_retx;        /* Timer A / E / G */
    struct event ev_timeout;     /* Timer B / F / H / J / K / D / I / L / M / C, and lifetime */
    tx_client_fn *cb;
    void *cb_arg;
    void *owner;
};

struct tx_layer {
    struct event_base *base;
    struct tp *tp;
    struct tx_opts opts;
    struct tx_handlers h;
    void *arg;
    struct tx **buckets;
    size_t nbuckets;             /* power of two */
    size_t count;
    struct tx_stats stats;
};

void
tx_opts_default(struct tx_opts *opts)
{
    opts->t1_ms = 500;
    opts->t2_ms = 4000;
    opts->t4_ms = 5000;
    opts->max_lifetime_ms = 32000;
    opts->timer_c_ms = 180000;
}

/* ------------------------------------------------------------------ table */

static uint32_t
hash_str(const char *s)
{
    return hash_fnv1a32_str(HASH_FNV32_BASIS, s);
}

static int
table_grow(struct tx_layer *txl)
{
    size_t n = txl->nbuckets * 2;
    struct tx **nb = calloc(n, sizeof *nb);

    if (nb == NULL)
        return -1;
    for (size_t i = 0; i < txl->nbuckets; i++) {
        struct tx *t = txl->buckets[i], *next;
        for (; t; t = next) {
            next = t->hnext;
            t->hnext = nb[t->hash & (n - 1)];
            nb[t->hash & (n - 1)] = t;
        }
    }
    free(txl->buckets);
    txl->buckets = nb;
    txl->nbuckets = n;
    return 0;
}

static void
table_add(struct tx_layer *txl, struct tx *tx)
{
    size_t b;

    if (txl->count >= txl->nbuckets)
        table_grow(txl);
    tx->hash = hash_str(tx->key);
    b = tx->hash & (txl->nbuckets - 1);
    tx->hnext = txl->buckets[b];
    txl->buckets[b] = tx;
    tx->in_table = true;
    txl->count++;
}

static struct tx *
table_find(struct tx_layer *txl, const char *key)
{
    uint32_t h = hash_str(key);

    for (struct tx *t = txl->buckets[h & (txl->nbuckets - 1)]; t; t = t->hnext)
        if (t->hash == h && strcmp(t->key, key) == 0)
            return t;
    return NULL;
}

static void
table_remove(struct tx_layer *txl, struct tx *tx)
{
    struct tx **pp;

    if (!tx->in_table)
        return;
    for (pp = &txl->buckets[tx->hash & (txl->nbuckets - 1)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == tx) {
            *pp = tx->hnext;
            break;
        }
    }
    tx->in_table = false;
    txl->count--;
}

/* ------------------------------------------------------------------ keys */

static bool
is_3261_branch(const char *b)
{
    return b != NULL && strncmp(b, "z9hG4bK", 7) == 0;
}

/*
 * RFC 3261 §17.2.3: a server transaction is matched by branch, sent-by and method
 * (ACK matches INVITE). Requests without the magic cookie fall back to the RFC 2543
 * fields (§17.2.3 last paragraph).
 */
/* Appends s (at most the room left, keeping a NUL) to buf of size cap at *len. */
static void
key_put(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);

    if (n > cap - 1 - *len)
        n = cap - 1 - *len;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

static void
key_put_uint(char *buf, size_t cap, size_t *len, unsigned v)
{
    char d[16];
    size_t i = sizeof d - 1;

    d[i] = '\0';
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    key_put(buf, cap, len, d + i);
}

static char *
server_key(const struct sip_msg *msg, enum sip_method as_method)
{
    struct sip_via_info v;
    char buf[1024], cid[256];
    size_t n = 0;
    const char *m = as_method == SIP_UNKNOWN ? sip_msg_method_str(msg) : sip_method_name(as_method);

    sip_msg_via_info(msg, 0, &v);
    if (is_3261_branch(v.branch)) {
        /* "S|branch|host:port|method", without snprintf (this runs for every message) */
        key_put(buf, sizeof buf, &n, "S|");
        key_put(buf, sizeof buf, &n, v.branch);
        key_put(buf, sizeof buf, &n, "|");
        key_put(buf, sizeof buf, &n, v.host ? v.host : "");
        key_put(buf, sizeof buf, &n, ":");
        key_put_uint(buf, sizeof buf, &n, v.port);
        key_put(buf, sizeof buf, &n, "|");
        key_put(buf, sizeof buf, &n, m);
    } else
        snprintf(buf, sizeof buf, "S2|%s|%s|%u|%s:%u|%s", sip_msg_call_id(msg, cid, sizeof cid),
                 sip_msg_from_tag(msg) ? sip_msg_from_tag(msg) : "", msg->cseq, v.host ? v.host : "",
                 v.port, m);
    return strdup(buf);
}

static char *
client_key(const char *branch, const char *method)
{
    char buf[512];
    size_t n = 0;

    key_put(buf, sizeof buf, &n, "C|");
    key_put(buf, sizeof buf, &n, branch ? branch : "");
    key_put(buf, sizeof buf, &n, "|");
    key_put(buf, sizeof buf, &n, method);
    return strdup(buf);
}

/* ------------------------------------------------------------------ lifecycle */

static void retx_cb(evutil_socket_t fd, short what, void *arg);
static void timeout_cb(evutil_socket_t fd, short what, void *arg);

static struct tx *
tx_alloc(struct tx_layer *txl, bool server, struct sip_msg *req)
{
    struct tx *tx = calloc(1, sizeof *tx);

    if (tx == NULL)
        return NULL;
    tx->txl = txl;
    tx->server = server;
    tx->req = req;
    tx->invite = req && req->method == SIP_INVITE;
    tx->refs = 1;   /* the table's */
    event_assign(&tx->ev_retx, txl->base, -1, 0, retx_cb, tx);
    event_assign(&tx->ev_timeout, txl->base, -1, 0, timeout_cb, tx);
    if (server)
        txl->stats.live_server++;
    else
        txl->stats.live_client++;
    return tx;
}

static void
tx_free(struct tx *tx)
{
    event_del(&tx->ev_retx);
    event_del(&tx->ev_timeout);
    if (tx->server)
        tx->txl->stats.live_server--;
    else
        tx->txl->stats.live_client--;
    sip_msg_free(tx->req);
    free(tx->buf);
    free(tx->ack_buf);
    free(tx->key);
    free(tx);
}

void
tx_ref(struct tx *tx)
{
    tx->refs++;
}

/*
 * A server transaction that has sent its final answer and is held only by the table
 * keeps just its key and the answer's bytes (to absorb retransmissions for Timer J/H/L);
 * the parsed request is released: at 4,000 REGISTER/s, Timer J's 32 s would otherwise
 * keep ~128k parsed requests alive.
 */
static void
compact(struct tx *tx)
{
    if (tx->server && tx->final_sent && tx->refs == 1 && tx->req != NULL) {
        sip_msg_free(tx->req);
        tx->req = NULL;
    }
}

void
tx_unref(struct tx *tx)
{
    if (tx == NULL)
        return;
    if (--tx->refs == 0)
        tx_free(tx);
    else if (tx->refs == 1)
        compact(tx);
}

static void
arm(struct event *ev, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_add(ev, &tv);
}

/* Moves to Terminated: out of the table, timers stopped, the table's reference dropped. */
static void
terminate(struct tx *tx)
{
    if (tx->state == TX_TERMINATED)
        return;
    tx->state = TX_TERMINATED;
    event_del(&tx->ev_retx);
    event_del(&tx->ev_timeout);
    table_remove(tx->txl, tx);
    tx_unref(tx);
}

struct sip_msg *tx_request(const struct tx *tx) { return tx->req; }
enum tx_state tx_state(const struct tx *tx) { return tx->state; }
bool tx_is_invite(const struct tx *tx) { return tx->invite; }
bool tx_is_server(const struct tx *tx) { return tx->server; }
int tx_last_status(const struct tx *tx) { return tx->last_status; }
void tx_set_owner(struct tx *tx, void *owner) { tx->owner = owner; }
void *tx_owner(const struct tx *tx) { return tx->owner; }
const struct tp_dest *tx_reply_dest(const struct tx *stx) { return &stx->dest; }
struct tx_layer *tx_layer_of(const struct tx *tx) { return tx->txl; }
const struct tx_stats *tx_layer_stats(const struct tx_layer *txl) { return &txl->stats; }

struct tx_layer *
tx_layer_new(struct event_base *base, struct tp *tp, const struct tx_opts *opts,
             const struct tx_handlers *h, void *arg)
{
    struct tx_layer *txl = calloc(1, sizeof *txl);

    if (txl == NULL)
        return NULL;
    txl->base = base;
    txl->tp = tp;
    if (opts)
        txl->opts = *opts;
    else
        tx_opts_default(&txl->opts);
    txl->h = *h;
    txl->arg = arg;
    txl->nbuckets = 1024;
    txl->buckets = calloc(txl->nbuckets, sizeof *txl->buckets);
    if (txl->buckets == NULL) {
        free(txl);
        return NULL;
    }
    return txl;
}

void
tx_layer_free(struct tx_layer *txl)
{
    if (txl == NULL)
        return;
    for (size_t i = 0; i < txl->nbuckets; i++) {
        struct tx *t = txl->buckets[i], *next;
        for (; t; t = next) {
            next = t->hnext;
            t->in_table = false;
            t->state = TX_TERMINATED;
            event_del(&t->ev_retx);
            event_del(&t->ev_timeout);
            t->cb = NULL;
            tx_unref(t);
        }
    }
    free(txl->buckets);
    free(txl);
}

/* ------------------------------------------------------------------ sending */

static int
send_buf(struct tx_layer *txl, const struct tp_dest *dest, const char *buf, size_t len)
{
    return tp_send(txl->tp, dest, buf, len);
}

static bool
ip_literal(const char *host)
{
    struct tp_addr a;

    return host && tp_addr_from_ip(&a, host, 1) == 0;
}

static enum tp_proto
proto_from_str(const char *s)
{
    if (s && strcasecmp(s, "TCP") == 0)
        return TP_TCP;
    if (s && strcasecmp(s, "TLS") == 0)
        return TP_TLS;
    return TP_UDP;
}

int
tx_response_dest(const struct sip_msg *resp, struct tp_dest *dest)
{
    return tx_response_dest_at(resp, 0, dest);
}

int
tx_response_dest_at(const struct sip_msg *resp, int index, struct tp_dest *dest)
{
    struct sip_via_info v;
    const char *host;
    uint16_t port;

    memset(dest, 0, sizeof *dest);
    if (sip_msg_via_info(resp, index, &v) != 0)
        return -1;
    dest->proto = proto_from_str(v.transport);
    host = v.received ? v.received : v.host;
    port = v.rport ? v.rport : (v.port ? v.port : (dest->proto == TP_TLS ? 5061 : 5060));
    if (!ip_literal(host))
        return -1;
    return tp_addr_from_ip(&dest->addr, host, port);
}

int
tx_send_bytes(struct tx_layer *txl, const char *buf, size_t len, const struct tp_dest *dest)
{
    return send_buf(txl, dest, buf, len);
}

int
tx_send_stateless(struct tx_layer *txl, struct sip_msg *msg, const struct tp_dest *dest)
{
    char *out = NULL;
    size_t len = 0;
    int rc;

    if (sip_msg_serialize(msg, &out, &len) != 0)
        return -1;
    rc = send_buf(txl, dest, out, len);
    free(out);
    return rc;
}

/* ------------------------------------------------------------------ server side */

static void
server_dest(struct tx *tx, const struct tp_rx *rx)
{
    struct sip_via_info v;

    memset(&tx->dest, 0, sizeof tx->dest);
    tx->dest.proto = rx->proto;
    tx->dest.conn_id = rx->conn_id;
    tx->dest.addr = rx->src;
    sip_msg_via_info(tx->req, 0, &v);
    /* RFC 3261 §18.2.2 / RFC 3581 §4: rport -> source address and port; else the source
     * address (our received=) with the sent-by port. */
    if (rx->proto == TP_UDP && !v.has_rport) {
        uint16_t port = htons(v.port ? v.port : 5060);
        if (tx->dest.addr.ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&tx->dest.addr.ss)->sin_port = port;
        else if (tx->dest.addr.ss.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&tx->dest.addr.ss)->sin6_port = port;
    }
}

static void
start_lifetime(struct tx *tx)
{
    arm(&tx->ev_timeout, tx->txl->opts.max_lifetime_ms);
}

static void
resend_last(struct tx *tx)
{
    if (tx->buf) {
        tx->txl->stats.retransmits_sent++;
        send_buf(tx->txl, &tx->dest, tx->buf, tx->len);
    }
}

int
tx_reply(struct tx *stx, struct sip_msg *resp)
{
    char *out = NULL;
    size_t len = 0;

    if (!stx->server || stx->final_sent || stx->state == TX_TERMINATED)
        return -1;
    if (sip_msg_serialize(resp, &out, &len) != 0)
        return -1;
    return tx_reply_bytes(stx, resp->status, out, len);
}

uint64_t
tx_layer_count_state(const struct tx_layer *txl, bool server, enum tx_state state)
{
    uint64_t n = 0;

    for (size_t i = 0; i < txl->nbuckets; i++)
        for (const struct tx *t = txl->buckets[i]; t; t = t->hnext)
            if (t->server == server && t->state == state)
                n++;
    return n;
}

int
tx_reply_bytes(struct tx *stx, int code, char *out, size_t len)
{
    struct tx_layer *txl = stx->txl;

    if (code >= 100 && code < 700 && !stx->final_sent && stx->state != TX_TERMINATED)
        txl->stats.replies_by_class[code / 100]++;

    if (!stx->server || stx->final_sent || stx->state == TX_TERMINATED) {
        free(out);
        return -1;
    }
    free(stx->buf);
    stx->buf = out;
    stx->len = len;
    stx->last_status = code;
    send_buf(txl, &stx->dest, out, len);
    if (code < 200) {
        if (stx->state == TX_TRYING)
            stx->state = TX_PROCEEDING;
        start_lifetime(stx);   /* a provisional extends the transaction (design §2) */
        return 0;
    }
    stx->final_sent = true;
    event_del(&stx->ev_timeout);
    if (stx->stateless) {
        /* RFC 3261 §8.2.7: answered as a stateless UAS; a retransmission of the
         * request is a new transaction and gets a new answer. */
        terminate(stx);
        return 0;
    }
    if (stx->invite) {
        if (code < 300) {
            /* RFC 6026 §8.7: Accepted; Timer L = 64*T1 absorbs retransmitted INVITEs. */
            stx->state = TX_ACCEPTED;
            arm(&stx->ev_timeout, 64 * txl->opts.t1_ms);
        } else {
            stx->state = TX_COMPLETED;
            if (!stx->reliable) {
                stx->retx_ms = txl->opts.t1_ms;   /* Timer G */
                arm(&stx->ev_retx, stx->retx_ms);
            }
            arm(&stx->ev_timeout, 64 * txl->opts.t1_ms);   /* Timer H */
        }
    } else {
        stx->state = TX_COMPLETED;
        /* Timer J: 64*T1 for unreliable transports, zero for reliable (RFC 3261 §17.2.2). */
        if (stx->reliable)
            terminate(stx);
        else
            arm(&stx->ev_timeout, 64 * txl->opts.t1_ms);
    }
    return 0;
}

struct sip_msg *
tx_reply_build(struct tx *stx, int code, const char *reason)
{
    char tag[24];

    if (stx->req == NULL)
        return NULL;   /* compacted: the final answer went out long ago */

    sip_make_tag(stx->req, tag, sizeof tag);
    return sip_reply_new(stx->req, code, reason, tag);
}

int
tx_reply_extra(struct tx *stx, int code, const char *reason, const char *extra)
{
    char tag[24], *out = NULL;
    size_t len = 0;

    if (!stx->server || stx->final_sent || stx->state == TX_TERMINATED || stx->req == NULL)
        return -1;
    sip_make_tag(stx->req, tag, sizeof tag);
    if (sip_reply_bytes(stx->req, code, reason, tag, extra, &out, &len) != 0)
        return -1;
    return tx_reply_bytes(stx, code, out, len);
}

void
tx_set_stateless(struct tx *stx)
{
    if (stx->server && !stx->invite)
        stx->stateless = true;
}

int
tx_reply_code(struct tx *stx, int code, const char *reason)
{
    return tx_reply_extra(stx, code, reason, NULL);
}

struct tx *
tx_find_cancelled(struct tx_layer *txl, const struct tx *cancel_stx)
{
    char *key = server_key(cancel_stx->req, SIP_INVITE);
    struct tx *t = key ? table_find(txl, key) : NULL;

    free(key);
    return t;
}

static void
server_receive(struct tx_layer *txl, struct sip_msg *msg, const struct tp_rx *rx)
{
    bool is_ack = msg->method == SIP_ACK;
    char *key = server_key(msg, is_ack ? SIP_INVITE : SIP_UNKNOWN);
    struct tx *tx;

    if (key == NULL) {
        sip_msg_free(msg);
        return;
    }
    tx = table_find(txl, key);
    if (tx != NULL) {
        free(key);
        txl->stats.retransmits_absorbed++;
        if (is_ack) {
            /* ACK for a non-2xx final: Completed -> Confirmed, Timer I (RFC 3261 §17.2.1). */
            if (tx->state == TX_COMPLETED) {
                tx->state = TX_CONFIRMED;
                event_del(&tx->ev_retx);
                if (tx->reliable) {
                    terminate(tx);
                } else {
                    arm(&tx->ev_timeout, txl->opts.t4_ms);
                }
            } else if (tx->state == TX_ACCEPTED) {
                /* An RFC 2543 ACK for a 2xx matches by fields: it is end-to-end, pass it on. */
                txl->h.ack(msg, rx, txl->arg);
                return;
            }
        } else if (tx->state == TX_PROCEEDING || tx->state == TX_COMPLETED) {
            resend_last(tx);   /* a retransmitted request gets the last response again */
        }
        sip_msg_free(msg);
        return;
    }
    if (is_ack) {
        free(key);
        txl->h.ack(msg, rx, txl->arg);
        return;
    }
    tx = tx_alloc(txl, true, msg);
    if (tx == NULL) {
        free(key);
        sip_msg_free(msg);
        return;
    }
    tx->key = key;
    tx->reliable = rx->proto != TP_UDP;
    tx->state = tx->invite ? TX_PROCEEDING : TX_TRYING;
    server_dest(tx, rx);
    table_add(txl, tx);
    txl->stats.server_created++;
    start_lifetime(tx);
    tx_ref(tx);   /* keep it alive through the upcall */
    txl->h.request(tx, rx, txl->arg);
    tx_unref(tx);
}

/* ------------------------------------------------------------------ client side */

static void
client_notify(struct tx *tx, struct sip_msg *resp, int code)
{
    if (tx->cb)
        tx->cb(tx, resp, code, tx->cb_arg);
}

static void
client_fail(struct tx *tx, int code)
{
    tx->last_status = code;
    tx_ref(tx);
    terminate(tx);
    client_notify(tx, NULL, code);
    tx_unref(tx);
}

static struct tx *client_start(struct tx *tx, const struct tp_dest *dest, tx_client_fn *cb, void *arg);

struct tx *
tx_client_send(struct tx_layer *txl, struct sip_msg *req, const struct tp_dest *dest, tx_client_fn *cb,
               void *arg)
{
    struct tx *tx;
    char *out = NULL;
    size_t len = 0;

    if (req->branch == NULL) {
        sip_msg_free(req);
        return NULL;
    }
    tx = tx_alloc(txl, false, req);
    if (tx == NULL) {
        sip_msg_free(req);
        return NULL;
    }
    tx->key = client_key(req->branch, sip_msg_method_str(req));
    if (tx->key == NULL || sip_msg_serialize(req, &out, &len) != 0) {
        tx_free(tx);
        return NULL;
    }
    tx->buf = out;
    tx->len = len;
    return client_start(tx, dest, cb, arg);
}

struct tx *
tx_client_send_bytes(struct tx_layer *txl, char *buf, size_t len, const char *branch, enum sip_method method,
                     const struct tp_dest *dest, tx_client_fn *cb, void *arg)
{
    struct tx *tx = calloc(1, sizeof *tx);

    if (tx == NULL || branch == NULL) {
        free(tx);
        free(buf);
        return NULL;
    }
    tx->txl = txl;
    tx->refs = 1;
    tx->invite = method == SIP_INVITE;
    event_assign(&tx->ev_retx, txl->base, -1, 0, retx_cb, tx);
    event_assign(&tx->ev_timeout, txl->base, -1, 0, timeout_cb, tx);
    txl->stats.live_client++;
    tx->buf = buf;
    tx->len = len;
    if (method == SIP_UNKNOWN) {
        /* An extension method (RFC 3261 §8.1.1.7: CSeq names the request line's method)
         * has no enum name: key on the request line's own token, as responses carry it. */
        const char *sp = memchr(buf, ' ', len);
        char m[128];
        size_t n = sp ? (size_t)(sp - buf) : 0;
        if (n > 0 && n < sizeof m) {
            memcpy(m, buf, n);
            m[n] = '\0';
            tx->key = client_key(branch, m);
        }
    } else {
        tx->key = client_key(branch, sip_method_name(method));
    }
    if (tx->key == NULL) {
        tx_free(tx);
        return NULL;
    }
    return client_start(tx, dest, cb, arg);
}

/* The request of a client transaction sent as bytes, parsed when first needed. */
static struct sip_msg *
client_req(struct tx *tx)
{
    if (tx->req == NULL)
        tx->req = sip_msg_parse(tx->buf, tx->len, NULL, NULL);
    return tx->req;
}

static struct tx *
client_start(struct tx *tx, const struct tp_dest *dest, tx_client_fn *cb, void *arg)
{
    struct tx_layer *txl = tx->txl;
    const char *out = tx->buf;
    size_t len = tx->len;

    tx->dest = *dest;
    tx->reliable = dest->proto != TP_UDP;
    tx->cb = cb;
    tx->cb_arg = arg;
    tx->state = tx->invite ? TX_CALLING : TX_TRYING;
    table_add(txl, tx);
    txl->stats.client_created++;
    tx_ref(tx);   /* the caller's */
    if (!tx->reliable) {
        tx->retx_ms = txl->opts.t1_ms;   /* Timer A / E */
        arm(&tx->ev_retx, tx->retx_ms);
    }
    arm(&tx->ev_timeout, 64 * txl->opts.t1_ms);   /* Timer B / F */
    if (send_buf(txl, dest, out, len) != 0) {
        /* Immediate transport failure: report it from the loop, not re-entrantly. */
        event_del(&tx->ev_retx);
        tx->txl->stats.transport_errors++;
        arm(&tx->ev_timeout, 0);
        tx->last_status = -503;
    }
    return tx;
}

/* RFC 3261 §17.1.1.3: the ACK for a non-2xx final response, built from the request. */
static void
build_ack(struct tx *tx, const struct sip_msg *resp)
{
    osip_message_t *a = NULL, *q;

    if (client_req(tx) == NULL)
        return;
    q = tx->req->osip;
    struct sip_msg tmp;
    osip_via_t *v = osip_list_get(&q->vias, 0), *vc = NULL;
    char *out = NULL;
    size_t len = 0;

    if (osip_message_init(&a) != 0)
        return;
    osip_message_set_method(a, osip_strdup("ACK"));
    osip_message_set_version(a, osip_strdup("SIP/2.0"));
    osip_uri_clone(q->req_uri, &a->req_uri);
    if (v && osip_via_clone(v, &vc) == 0)
        osip_list_add(&a->vias, vc, 0);
    osip_from_clone(q->from, &a->from);
    osip_to_clone(resp->osip->to, &a->to);
    osip_call_id_clone(q->call_id, &a->call_id);
    osip_cseq_clone(q->cseq, &a->cseq);
    if (a->cseq) {
        osip_free(a->cseq->method);
        a->cseq->method = osip_strdup("ACK");
    }
    osip_list_clone(&q->routes, &a->routes, (int (*)(void *, void **))osip_route_clone);
    osip_message_set_header(a, "Max-Forwards", "70");
    osip_message_set_content_length(a, "0");
    memset(&tmp, 0, sizeof tmp);
    tmp.osip = a;
    if (sip_msg_serialize(&tmp, &out, &len) == 0) {
        free(tx->ack_buf);
        tx->ack_buf = out;
        tx->ack_len = len;
    }
    osip_message_free(a);
}

static void
send_cancel(struct tx *tx)
{
    osip_message_t *c = NULL, *q;
    osip_via_t *v, *vc = NULL;
    struct sip_msg *msg;
    struct tx *ctx;

    if (tx->cancel_sent)
        return;
    tx->cancel_sent = true;
    if (client_req(tx) == NULL)
        return;
    q = tx->req->osip;
    v = osip_list_get(&q->vias, 0);
    if (osip_message_init(&c) != 0)
        return;
    /* RFC 3261 §9.1: same R-URI, Call-ID, To, From, CSeq number, top Via and Route. */
    osip_message_set_method(c, osip_strdup("CANCEL"));
    osip_message_set_version(c, osip_strdup("SIP/2.0"));
    osip_uri_clone(q->req_uri, &c->req_uri);
    if (v && osip_via_clone(v, &vc) == 0)
        osip_list_add(&c->vias, vc, 0);
    osip_from_clone(q->from, &c->from);
    osip_to_clone(q->to, &c->to);
    osip_call_id_clone(q->call_id, &c->call_id);
    osip_cseq_clone(q->cseq, &c->cseq);
    if (c->cseq) {
        osip_free(c->cseq->method);
        c->cseq->method = osip_strdup("CANCEL");
    }
    osip_list_clone(&q->routes, &c->routes, (int (*)(void *, void **))osip_route_clone);
    osip_message_set_header(c, "Max-Forwards", "70");
    osip_message_set_content_length(c, "0");
    msg = calloc(1, sizeof *msg);
    if (msg == NULL) {
        osip_message_free(c);
        return;
    }
    msg->osip = c;
    msg->request = true;
    msg->method = SIP_CANCEL;
    msg->cseq = tx->req->cseq;
    msg->branch = NULL;
    {
        osip_generic_param_t *br = NULL;
        if (vc && osip_via_param_get_byname(vc, "branch", &br) == 0 && br)
            msg->branch = br->gvalue;
    }
    ctx = tx_client_send(tx->txl, msg, &tx->dest, NULL, NULL);
    if (ctx)
        tx_unref(ctx);   /* fire and forget: its result is not needed */
}

void
tx_client_cancel(struct tx *ctx)
{
    if (ctx->server || !ctx->invite || ctx->state == TX_TERMINATED)
        return;
    if (ctx->state == TX_PROCEEDING)
        send_cancel(ctx);
    else if (ctx->state == TX_CALLING)
        ctx->cancel_pending = true;   /* RFC 3261 §9.1: wait for a provisional */
}

void
tx_client_detach(struct tx *ctx)
{
    ctx->cb = NULL;
    ctx->cb_arg = NULL;
}

void
tx_client_rebind(struct tx *ctx, tx_client_fn *cb, void *arg)
{
    ctx->cb = cb;
    ctx->cb_arg = arg;
}

static void
client_receive(struct tx_layer *txl, struct sip_msg *resp, const struct tp_rx *rx)
{
    char *key = client_key(resp->branch, sip_msg_method_str(resp));
    struct tx *tx = key ? table_find(txl, key) : NULL;
    int code = resp->status;

    if (tx == NULL) {
        log_debug("response %d matches no client transaction (%s)", code, key ? key : "");
        free(key);
        txl->h.stray_response(resp, rx, txl->arg);
        return;
    }
    free(key);
    tx_ref(tx);
    switch (tx->state) {
    case TX_CALLING:
    case TX_TRYING:
    case TX_PROCEEDING:
        event_del(&tx->ev_retx);
        if (code < 200) {
            bool first = tx->state != TX_PROCEEDING;
            tx->state = TX_PROCEEDING;
            if (tx->invite) {
                /* Timer B stops; the proxy's Timer C (RFC 3261 §16.8) runs from each provisional. */
                arm(&tx->ev_timeout, txl->opts.timer_c_ms);
                if (first && tx->cancel_pending)
                    send_cancel(tx);
            } else if (!tx->reliable) {
                tx->retx_ms = txl->opts.t2_ms;   /* Timer E fires at T2 in Proceeding */
                arm(&tx->ev_retx, tx->retx_ms);
            }
            tx->last_status = code;
            client_notify(tx, resp, code);
            break;
        }
        tx->last_status = code;
        if (tx->invite && code < 300) {
            tx->state = TX_ACCEPTED;   /* RFC 6026 §7.2, Timer M */
            arm(&tx->ev_timeout, 64 * txl->opts.t1_ms);
        } else if (tx->invite) {
            tx->state = TX_COMPLETED;
            build_ack(tx, resp);
            if (tx->ack_buf)
                send_buf(txl, &tx->dest, tx->ack_buf, tx->ack_len);
            if (tx->reliable) {
                terminate(tx);
            } else {
                arm(&tx->ev_timeout, 32000);   /* Timer D */
            }
        } else {
            tx->state = TX_COMPLETED;
            if (tx->reliable)
                terminate(tx);
            else
                arm(&tx->ev_timeout, txl->opts.t4_ms);   /* Timer K */
        }
        client_notify(tx, resp, code);
        break;
    case TX_ACCEPTED:
        if (code >= 200 && code < 300)
            client_notify(tx, resp, code);   /* 2xx retransmission: forwarded upstream */
        break;
    case TX_COMPLETED:
        txl->stats.retransmits_absorbed++;
        if (tx->invite && tx->ack_buf)
            send_buf(txl, &tx->dest, tx->ack_buf, tx->ack_len);
        break;
    default:
        break;
    }
    tx_unref(tx);
    sip_msg_free(resp);
}

void
tx_transport_failed(struct tx_layer *txl, const char *buf, size_t len)
{
    struct sip_msg *msg = sip_msg_parse(buf, len, NULL, NULL);
    char *key;
    struct tx *tx;

    if (msg == NULL)
        return;
    if (!msg->request) {
        sip_msg_free(msg);
        return;
    }
    key = client_key(msg->branch, sip_msg_method_str(msg));
    tx = key ? table_find(txl, key) : NULL;
    free(key);
    sip_msg_free(msg);
    if (tx && !tx->server && (tx->state == TX_CALLING || tx->state == TX_TRYING ||
                              tx->state == TX_PROCEEDING)) {
        txl->stats.transport_errors++;
        client_fail(tx, 503);   /* RFC 3261 §8.1.3.1: a transport error is a 503 */
    }
}

/* ------------------------------------------------------------------ timers */

static void
retx_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tx *tx = arg;
    struct tx_layer *txl = tx->txl;

    if (tx->state == TX_TERMINATED)
        return;
    if (tx->server) {
        /* Timer G: retransmit the final response, doubling up to T2. */
        if (tx->state != TX_COMPLETED)
            return;
        resend_last(tx);
        tx->retx_ms = tx->retx_ms * 2 < txl->opts.t2_ms ? tx->retx_ms * 2 : txl->opts.t2_ms;
        arm(&tx->ev_retx, tx->retx_ms);
        return;
    }
    if (tx->state != TX_CALLING && tx->state != TX_TRYING && tx->state != TX_PROCEEDING)
        return;
    txl->stats.retransmits_sent++;
    send_buf(txl, &tx->dest, tx->buf, tx->len);
    if (tx->invite) {
        tx->retx_ms *= 2;   /* Timer A doubles without a cap */
    } else {
        tx->retx_ms = tx->state == TX_PROCEEDING ? txl->opts.t2_ms
                      : (tx->retx_ms * 2 < txl->opts.t2_ms ? tx->retx_ms * 2 : txl->opts.t2_ms);
    }
    arm(&tx->ev_retx, tx->retx_ms);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tx *tx = arg;
    struct tx_layer *txl = tx->txl;

    switch (tx->state) {
    case TX_TERMINATED:
        return;
    case TX_TRYING:
    case TX_CALLING:
    case TX_PROCEEDING:
        if (tx->server) {
            /* The lifetime without a final response ran out (design §2: 32 s). */
            txl->stats.timeouts++;
            tx_ref(tx);
            if (txl->h.server_timeout)
                txl->h.server_timeout(tx, txl->arg);
            if (!tx->final_sent)
                tx_reply_code(tx, 408, NULL);
            tx_unref(tx);
            return;
        }
        if (tx->last_status == -503) {
            client_fail(tx, 503);
            return;
        }
        /* Timer B / F, or Timer C in Proceeding: the next hop never answered. */
        txl->stats.timeouts++;
        if (tx->invite && tx->state == TX_PROCEEDING)
            send_cancel(tx);
        client_fail(tx, 408);
        return;
    default:
        /* Timers D, H, I, J, K, L, M: the end of the transaction. */
        terminate(tx);
        return;
    }
}

/* ------------------------------------------------------------------ entry */

void
tx_receive(struct tx_layer *txl, struct sip_msg *msg, const struct tp_rx *rx)
{
    if (msg->request)
        server_receive(txl, msg, rx);
    else
        client_receive(txl, msg, rx);
}
