/*
 * tp_tcp: stream transports on bufferevents — TCP and TLS. Everything here is
 * independent of the byte pipe except stream_bev_new(), the one place that creates a
 * bufferevent (TLS: tp_tls_bev_new() in tp_tls.c), and the few TLS-only steps around
 * the handshake: peer identity, the handshake timeout of accepted connections, and the
 * copies kept until a TLS 1.3 server has accepted our certificate.
 *
 * Framing: RFC 3261 §18.3 via tp_frame_scan(); keep-alives RFC 5626 §4.4.1.
 * Connection reuse (RFC 3261 §18.2.2 / RFC 5923 spirit): accepted and outgoing
 * connections share one (proto, peer) table, so a request to a peer that already
 * has a connection open to us goes down that connection.
 */
#define LOG_MODULE "tp"
#include "transport/tp_int.h"

#include "transport/tp_frame.h"
#include "util/clock.h"
#include "util/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#define TP_LISTEN_BACKLOG 1024
/* How long a listener stops accepting after running out of descriptors. */
#define TP_ACCEPT_PAUSE_MS 100

static void stream_read_cb(struct bufferevent *bev, void *arg);
static void stream_write_cb(struct bufferevent *bev, void *arg);
static void stream_event_cb(struct bufferevent *bev, short what, void *arg);

/*
 * The only place a stream's byte pipe is created. <fd> is an accepted socket, or
 * -1 for an outgoing connection (bufferevent_socket_connect creates the socket).
 * TLS: bufferevent_openssl_socket_new(..., BUFFEREVENT_SSL_CONNECTING/ACCEPTING, ...),
 * verifying the server against <tls_name> (or its address) when connecting.
 */
static struct bufferevent *
stream_bev_new(struct tp_conn *conn, evutil_socket_t fd, bool connecting, const char *tls_name)
{
    if (conn->proto == TP_TLS)
        return tp_tls_bev_new(conn, fd, connecting, tls_name);
    if (conn->proto != TP_TCP)
        return NULL;
    return bufferevent_socket_new(conn->tp->base, fd, BEV_OPT_CLOSE_ON_FREE);
}

/* Grace after a TLS handshake during which written messages are kept (see tp_int.h). */
static uint64_t
confirm_grace_ms(const struct tp *tp)
{
    return tp->lim.connect_timeout_ms > 0 ? tp->lim.connect_timeout_ms : 2000;
}

/* The peer has accepted us: drop the copies kept since the handshake. */
static void
conn_confirm(struct tp_conn *conn)
{
    struct tp_qmsg *q;

    conn->unconfirmed = false;
    while ((q = conn->sent_head) != NULL) {
        conn->sent_head = q->next;
        free(q);
    }
    conn->sent_tail = NULL;
    conn->sent_bytes = 0;
}

/* Keeps a copy of a message written while unconfirmed. Past max_outbuf of copies the
 * connection is taken as confirmed instead (the copies are a courtesy, not a queue). */
static void
sent_keep(struct tp_conn *conn, const char *buf, size_t len)
{
    struct tp_qmsg *q;

    if (!conn->unconfirmed)
        return;
    if (conn->sent_bytes + len > conn->tp->lim.max_outbuf ||
        (q = malloc(sizeof *q + len)) == NULL) {
        conn_confirm(conn);
        return;
    }
    q->next = NULL;
    q->len = len;
    memcpy(q->data, buf, len);
    if (conn->sent_tail != NULL)
        conn->sent_tail->next = q;
    else
        conn->sent_head = q;
    conn->sent_tail = q;
    conn->sent_bytes += len;
}

static void
timer_arm_ms(struct tp_conn *conn, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    event_add(conn->timer, &tv);
}

static void
timer_arm_idle(struct tp_conn *conn)
{
    if (conn->tp->lim.idle_timeout_s > 0)
        timer_arm_ms(conn, (uint64_t)conn->tp->lim.idle_timeout_s * 1000u);
    else
        event_del(conn->timer);
}

/* Connect timeout while connecting; afterwards, closes a connection idle for
 * idle_timeout_s (no byte read or queued in either direction). */
static void
stream_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_conn *conn = arg;
    struct tp *tp = conn->tp;
    uint64_t now, idle_ms;

    if (conn->closing)
        return;
    if (!conn->connected) {
        if (conn->proto == TP_TLS)
            tp->stats.tls_handshake_fail++;
        tp_conn_kill(conn, conn->outgoing ? "connect timeout" : "TLS handshake timeout");
        return;
    }
    now = clock_mono_ms();
    if (conn->unconfirmed && now >= conn->confirm_at_ms)
        conn_confirm(conn);
    if (tp->lim.idle_timeout_s == 0) {
        if (conn->unconfirmed)
            timer_arm_ms(conn, conn->confirm_at_ms - now);
        return;
    }
    idle_ms = (uint64_t)tp->lim.idle_timeout_s * 1000u;
    if (now - conn->last_active_ms >= idle_ms) {
        tp->stats.conns_idle_closed++;
        tp_conn_kill(conn, "idle timeout");
        return;
    }
    idle_ms -= now - conn->last_active_ms;
    if (conn->unconfirmed && conn->confirm_at_ms - now < idle_ms)
        idle_ms = conn->confirm_at_ms - now;
    timer_arm_ms(conn, idle_ms);
}

/*
 * TCP_NODELAY: a SIP message is written whole, at once; Nagle's algorithm would hold the
 * next answer on a connection until the peer acknowledged the previous one (a delayed
 * ACK: milliseconds per message on a busy flow, seen as p50 9 ms for REGISTER over TLS).
 */
static void
set_nodelay(evutil_socket_t fd)
{
    int one = 1;

    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Sets up the bufferevent callbacks and timer of a new connection. 0 or -1. */
static int
conn_setup(struct tp_conn *conn, evutil_socket_t fd, bool connecting, const char *tls_name)
{
    struct tp *tp = conn->tp;

    set_nodelay(fd);
    conn->bev = stream_bev_new(conn, fd, connecting, tls_name);
    if (conn->bev == NULL) {
        /* a failed openssl bufferevent has already closed <fd> through its BIO */
        if (fd >= 0 && conn->proto != TP_TLS)
            evutil_closesocket(fd);
        return -1;
    }
    conn->timer = evtimer_new(tp->base, stream_timer_cb, conn);
    if (conn->timer == NULL)
        return -1;
    bufferevent_setcb(conn->bev, stream_read_cb, stream_write_cb, stream_event_cb, conn);
    bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
    return 0;
}

/* ---- output bookkeeping for failure reports ---------------------------------------- */

/* Drops records of writes the kernel has taken (they are no longer in <outlen>). */
static void
outrec_prune(struct tp_conn *conn, size_t outlen)
{
    while (conn->out_count > 0 && conn->out_sum - conn->out_lens[conn->out_first].len >= outlen) {
        conn->out_sum -= conn->out_lens[conn->out_first].len;
        conn->out_first = (conn->out_first + 1) % conn->out_cap;
        conn->out_count--;
    }
}

static int
outrec_push(struct tp_conn *conn, size_t len, bool is_msg)
{
    if (!conn->outgoing)
        return 0;
    outrec_prune(conn, evbuffer_get_length(bufferevent_get_output(conn->bev)));
    if (conn->out_count == conn->out_cap) {
        size_t ncap = conn->out_cap ? conn->out_cap * 2 : 8;
        struct tp_outrec *n = malloc(ncap * sizeof *n);
        if (n == NULL)
            return -1;
        for (size_t i = 0; i < conn->out_count; i++)
            n[i] = conn->out_lens[(conn->out_first + i) % conn->out_cap];
        free(conn->out_lens);
        conn->out_lens = n;
        conn->out_cap = ncap;
        conn->out_first = 0;
    }
    conn->out_lens[(conn->out_first + conn->out_count) % conn->out_cap] =
        (struct tp_outrec){.len = len, .is_msg = is_msg};
    conn->out_count++;
    conn->out_sum += len;
    return 0;
}

void
tp_stream_collect_unsent(struct tp_conn *conn)
{
    struct tp *tp = conn->tp;
    struct tp_qmsg *q;

    /* never connected: every queued message failed */
    while ((q = conn->qhead) != NULL) {
        conn->qhead = q->next;
        tp_fail_queue(tp, q->data, q->len, &conn->peer, conn->proto);
        free(q);
    }
    conn->qtail = NULL;
    conn->qbytes = 0;

    /* TLS, peer failed before confirming (a fatal alert, a reset): everything written
     * since the handshake may have been refused with our certificate; the copies
     * include what is still buffered. Closed by us instead: the usual rule below. */
    if (conn->unconfirmed && !conn->peer_gone)
        conn_confirm(conn);
    if (conn->unconfirmed) {
        while ((q = conn->sent_head) != NULL) {
            conn->sent_head = q->next;
            tp_fail_queue(tp, q->data, q->len, &conn->peer, conn->proto);
            free(q);
        }
        conn->sent_tail = NULL;
        conn->sent_bytes = 0;
        conn->unconfirmed = false;
        goto out;
    }

    /* connected: whole messages still in the output buffer never left */
    if (conn->bev != NULL && conn->out_count > 0) {
        struct evbuffer *out = bufferevent_get_output(conn->bev);
        size_t outlen = evbuffer_get_length(out), acc = 0, first, off;
        const char *data;

        outrec_prune(conn, outlen);
        first = conn->out_count;
        while (first > 0) {
            size_t l = conn->out_lens[(conn->out_first + first - 1) % conn->out_cap].len;
            if (acc + l > outlen)
                break;
            acc += l;
            first--;
        }
        if (acc == 0)
            goto out;
        data = (const char *)evbuffer_pullup(out, -1);
        if (data == NULL)
            goto out;
        off = outlen - acc;
        for (size_t i = first; i < conn->out_count; i++) {
            struct tp_outrec *r = &conn->out_lens[(conn->out_first + i) % conn->out_cap];
            if (r->is_msg)
                tp_fail_queue(tp, data + off, r->len, &conn->peer, conn->proto);
            off += r->len;
        }
    }
out:
    conn->out_count = 0;
    conn->out_sum = 0;
}

/* ---- callbacks ------------------------------------------------------------------- */

static void
stream_read_cb(struct bufferevent *bev, void *arg)
{
    struct tp_conn *conn = arg;
    struct tp *tp = conn->tp;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in), off = 0, skip, mlen;
    const char *buf;

    if (conn->closing || conn->close_after_write || len == 0)
        return;
    if (conn->unconfirmed)
        conn_confirm(conn);   /* the peer talks to us: it accepted the handshake */
    conn->last_active_ms = clock_mono_ms();
    buf = (const char *)evbuffer_pullup(in, -1);
    if (buf == NULL) {
        tp_conn_kill(conn, "out of memory reading");
        return;
    }
    while (off < len && !conn->closing && !conn->close_after_write) {
        struct tp_rx rx;

        switch (tp_frame_scan(buf + off, len - off, tp->lim.max_msg_size, &skip, &mlen)) {
        case TP_FRAME_NEED_MORE:
            goto done;
        case TP_FRAME_PING:
            /* RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong */
            if (outrec_push(conn, 2, false) == 0 && bufferevent_write(bev, "\r\n", 2) == 0)
                tp->stats.keepalive_pongs++;
            off += skip;
            break;
        case TP_FRAME_PONG:
            off += skip;
            break;
        case TP_FRAME_MESSAGE:
            memset(&rx, 0, sizeof rx);
            rx.buf = buf + off + skip;
            rx.len = mlen;
            rx.proto = conn->proto;
            rx.lis = conn->lis;
            rx.conn_id = conn->id;
            rx.src = conn->peer;
            rx.local = conn->local;
            off += skip + mlen;
            tp_deliver(tp, &rx);
            break;
        case TP_FRAME_TOO_BIG:
            tp->stats.rx_oversize++;
            log_peer(LOG_DEBUG, "conn=%llu: message larger than %zu bytes",
                     (unsigned long long)conn->id, tp->lim.max_msg_size);
            tp_conn_kill(conn, "message too big");
            return;
        case TP_FRAME_ERROR:
            tp->stats.rx_bad_frame++;
            log_peer(LOG_DEBUG, "conn=%llu: unframeable message (bad or missing Content-Length)",
                     (unsigned long long)conn->id);
            tp_conn_kill(conn, "bad framing");
            return;
        }
    }
done:
    if (!conn->closing)
        evbuffer_drain(in, off);
}

static void
stream_write_cb(struct bufferevent *bev, void *arg)
{
    struct tp_conn *conn = arg;

    if (conn->closing)
        return;
    if (conn->close_after_write && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        tp_conn_kill(conn, "closed after output drained");
}

static void
on_connected(struct tp_conn *conn)
{
    struct tp *tp = conn->tp;
    struct tp_qmsg *q;
    evutil_socket_t fd = bufferevent_getfd(conn->bev);

    conn->connected = true;
    conn->last_active_ms = clock_mono_ms();
    if (conn->outgoing) {
        conn->local.len = sizeof conn->local.ss;
        if (fd < 0 || getsockname(fd, (struct sockaddr *)&conn->local.ss, &conn->local.len) != 0)
            memset(&conn->local, 0, sizeof conn->local);
    }
    if (conn->proto == TP_TLS) {
        if (tp_tls_capture_peer(conn) != 0) {
            tp_conn_kill(conn, "out of memory reading the peer certificate");
            return;
        }
        if (conn->outgoing) {
            conn->unconfirmed = true;
            conn->confirm_at_ms = conn->last_active_ms + confirm_grace_ms(tp);
        }
    }
    timer_arm_idle(conn);
    if (conn->unconfirmed &&
        (tp->lim.idle_timeout_s == 0 || confirm_grace_ms(tp) < tp->lim.idle_timeout_s * 1000ull))
        timer_arm_ms(conn, confirm_grace_ms(tp));
    if (tp->open_cb != NULL) {
        tp->open_cb(conn, tp->open_arg);
        if (conn->closing)
            return;   /* refused by the owner; queued messages were reported */
    }
    while ((q = conn->qhead) != NULL) {
        if (outrec_push(conn, q->len, true) != 0 || bufferevent_write(conn->bev, q->data, q->len) != 0) {
            tp_conn_kill(conn, "out of memory flushing queue");   /* reports the rest */
            return;
        }
        sent_keep(conn, q->data, q->len);
        conn->qhead = q->next;
        conn->qbytes -= q->len;
        tp->stats.tx_msgs++;
        tp->stats.tx_bytes += q->len;
        free(q);
    }
    conn->qtail = NULL;
    if (conn->close_after_write && evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0)
        tp_conn_kill(conn, "closed after output drained");
}

static void
stream_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct tp_conn *conn = arg;

    if (conn->closing)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        on_connected(conn);
        return;
    }
    conn->peer_gone = true;
    /* A TLS 1.3 server that refuses our certificate says so with a fatal alert (an
     * error here); a clean close or plain EOF means what we wrote was taken. */
    if (conn->unconfirmed && !(what & BEV_EVENT_ERROR))
        conn_confirm(conn);
    if (conn->proto == TP_TLS && (!conn->connected || (what & BEV_EVENT_ERROR))) {
        char why[256], peer[64];
        int err = EVUTIL_SOCKET_ERROR();

        if (!tp_tls_error_str(conn, why, sizeof why) && err != 0)
            snprintf(why, sizeof why, "%s", evutil_socket_error_to_string(err));
        if (!conn->connected) {
            conn->tp->stats.tls_handshake_fail++;
            /* ours failing to reach a peer is the operator's business; strangers
             * failing to reach us are routine */
            log_peer(conn->outgoing ? LOG_WARN : LOG_INFO,
                     "conn=%llu TLS handshake with %s failed: %s", (unsigned long long)conn->id,
                     tp_addr_str(&conn->peer, peer, sizeof peer), why);
        }
        tp_conn_kill(conn, why);
        return;
    }
    if (what & BEV_EVENT_EOF)
        tp_conn_kill(conn, "peer closed");
    else if (what & BEV_EVENT_ERROR)
        tp_conn_kill(conn, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    else
        tp_conn_kill(conn, "stream event");
}

/* ---- listening ------------------------------------------------------------------- */

static void
accept_cb(struct evconnlistener *el, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct tp_listener *lis = arg;
    struct tp *tp = lis->tp;
    struct tp_conn *conn;
    struct tp_addr peer;
    char where[64];

    memset(&peer, 0, sizeof peer);
    if (salen > 0 && (size_t)salen <= sizeof peer.ss)
        memcpy(&peer.ss, sa, (size_t)salen);
    peer.len = (socklen_t)salen;
    if (tp->nconns >= tp->lim.max_conns) {
        tp->stats.conns_refused++;
        log_peer(LOG_WARN, "refusing %s connection from %s: %u connections open (max_conns)",
                 tp_proto_name(lis->proto), tp_addr_str(&peer, where, sizeof where),
                 (unsigned)tp->nconns);
        evutil_closesocket(fd);
        return;
    }
    conn = tp_conn_new(tp, lis->proto, &peer, lis);
    if (conn == NULL) {
        evutil_closesocket(fd);
        return;
    }
    conn->connected = lis->proto != TP_TLS;   /* TLS: once the handshake is done */
    conn->local.len = sizeof conn->local.ss;
    if (getsockname(fd, (struct sockaddr *)&conn->local.ss, &conn->local.len) != 0)
        conn->local = lis->addr;
    if (conn_setup(conn, fd, false, NULL) != 0) {
        log_err("accept from %s: cannot set up the connection",
                tp_addr_str(&peer, where, sizeof where));
        tp_conn_destroy(conn);
        return;
    }
    tp_conn_insert(tp, conn);
    tp->stats.conns_accepted++;
    log_debug("conn=%llu %s accepted from %s", (unsigned long long)conn->id,
              tp_proto_name(conn->proto), tp_addr_str(&peer, where, sizeof where));
    if (!conn->connected) {
        /* the handshake must finish within the connect timeout */
        if (tp->lim.connect_timeout_ms > 0)
            timer_arm_ms(conn, tp->lim.connect_timeout_ms);
        else
            timer_arm_idle(conn);
        return;
    }
    timer_arm_idle(conn);
    if (tp->open_cb != NULL)
        tp->open_cb(conn, tp->open_arg);
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_listener *lis = arg;

    if (lis->el != NULL)
        evconnlistener_enable(lis->el);
}

static void
accept_error_cb(struct evconnlistener *el, void *arg)
{
    struct tp_listener *lis = arg;
    int err = EVUTIL_SOCKET_ERROR();

    log_peer(LOG_WARN, "accept: %s", evutil_socket_error_to_string(err));
    /*
     * Out of descriptors: the pending connection stays in the backlog and the listening
     * socket stays readable, so retrying at once would spin the loop. Stop accepting
     * for TP_ACCEPT_PAUSE_MS (open connections are served meanwhile), then retry.
     */
    if ((err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) && lis->pause_ev != NULL) {
        const struct timeval tv = {0, TP_ACCEPT_PAUSE_MS * 1000};
        evconnlistener_disable(el);
        evtimer_add(lis->pause_ev, &tv);
    }
}

struct tp_listener *
tp_stream_listen(struct tp *tp, enum tp_proto proto, const struct tp_addr *addr)
{
    struct tp_listener *lis = NULL;
    char where[64];
    int fd = -1, one = 1;

    tp_addr_str(addr, where, sizeof where);
    if (proto == TP_TLS && (tp->tls_ctx == NULL || tp->tls_opts.cert_file == NULL)) {
        log_err("tls listen %s: TLS needs a certificate and key first (tp_tls_configure)", where);
        return NULL;
    }
    fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_err("tcp listen %s: socket: %s", where, strerror(errno));
        goto err;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        log_warn("tcp listen %s: SO_REUSEADDR: %s", where, strerror(errno));
    if (addr->ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        log_warn("tcp listen %s: IPV6_V6ONLY: %s", where, strerror(errno));
    if (tp_sock_reuse_port(tp, fd, where) != 0)
        goto err;
    if (bind(fd, (const struct sockaddr *)&addr->ss, tp_addr_socklen(addr)) != 0) {
        log_err("tcp listen %s: bind: %s", where, strerror(errno));
        goto err;
    }
    lis = calloc(1, sizeof *lis);
    if (lis == NULL) {
        log_err("tcp listen %s: out of memory", where);
        goto err;
    }
    lis->tp = tp;
    lis->proto = proto;
    lis->cls = TP_CLASS_CLIENT;
    lis->fd = -1;
    lis->addr.len = sizeof lis->addr.ss;
    if (getsockname(fd, (struct sockaddr *)&lis->addr.ss, &lis->addr.len) != 0) {
        log_err("tcp listen %s: getsockname: %s", where, strerror(errno));
        goto err;
    }
    lis->el = evconnlistener_new(tp->base, accept_cb, lis, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                 TP_LISTEN_BACKLOG, fd);
    if (lis->el == NULL) {
        log_err("tcp listen %s: listen: %s", where, strerror(errno));
        goto err;
    }
    evconnlistener_set_error_cb(lis->el, accept_error_cb);
    lis->pause_ev = evtimer_new(tp->base, accept_resume_cb, lis);
    if (lis->pause_ev == NULL) {
        log_err("tcp listen %s: out of memory", where);
        evconnlistener_free(lis->el);
        free(lis);
        return NULL;
    }
    log_info("listening on %s %s", proto == TP_TLS ? "tls" : "tcp",
             tp_addr_str(&lis->addr, where, sizeof where));
    return lis;
err:
    free(lis);
    if (fd >= 0)
        close(fd);
    return NULL;
}

void
tp_stream_stop(struct tp_listener *lis)
{
    if (lis->el != NULL) {
        evconnlistener_free(lis->el);
        lis->el = NULL;
    }
    if (lis->pause_ev != NULL) {
        event_free(lis->pause_ev);
        lis->pause_ev = NULL;
    }
}

/* ---- sending --------------------------------------------------------------------- */

int
tp_stream_conn_send(struct tp_conn *conn, const char *buf, size_t len)
{
    struct tp *tp = conn->tp;
    struct evbuffer *out;

    if (conn->closing || conn->close_after_write) {
        tp->stats.send_fail++;
        return -1;
    }
    if (!conn->connected) {
        struct tp_qmsg *q;
        if (conn->qbytes + len > tp->lim.max_outbuf) {
            tp->stats.send_fail++;
            tp_conn_kill(conn, "queue over max_outbuf while connecting");
            return -1;
        }
        q = malloc(sizeof *q + len);
        if (q == NULL) {
            tp->stats.send_fail++;
            return -1;
        }
        q->next = NULL;
        q->len = len;
        memcpy(q->data, buf, len);
        if (conn->qtail != NULL)
            conn->qtail->next = q;
        else
            conn->qhead = q;
        conn->qtail = q;
        conn->qbytes += len;
        return 0;
    }
    out = bufferevent_get_output(conn->bev);
    if (evbuffer_get_length(out) + len > tp->lim.max_outbuf) {
        tp->stats.send_fail++;
        tp_conn_kill(conn, "output over max_outbuf");
        return -1;
    }
    if (outrec_push(conn, len, true) != 0) {
        tp->stats.send_fail++;
        return -1;
    }
    if (bufferevent_write(conn->bev, buf, len) != 0) {
        if (conn->outgoing) {
            conn->out_count--;   /* undo the record pushed above */
            conn->out_sum -= len;
        }
        tp->stats.send_fail++;
        return -1;
    }
    sent_keep(conn, buf, len);
    conn->last_active_ms = clock_mono_ms();
    tp->stats.tx_msgs++;
    tp->stats.tx_bytes += len;
    return 0;
}

void
tp_stream_conn_close_soft(struct tp_conn *conn)
{
    conn->close_after_write = true;
    if (conn->bev != NULL)
        bufferevent_disable(conn->bev, EV_READ);
    if (conn->connected && evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0)
        tp_conn_kill(conn, "closed by owner");
}

int
tp_stream_send(struct tp *tp, const struct tp_dest *dst, const char *buf, size_t len)
{
    struct tp_conn *conn;
    char where[64];

    conn = tp_conn_find_peer(tp, dst->proto, &dst->addr, dst->tls_name);
    /* A Via that says TCP from a peer we hold a TLS connection with (a client behind a TLS
     * relay): what goes to that address goes on that connection (RFC 3261 §18.2.2), as a
     * stateless response must. Never the other way: TLS is not downgraded to TCP. */
    if (conn == NULL && dst->proto == TP_TCP)
        conn = tp_conn_find_peer(tp, TP_TLS, &dst->addr, NULL);
    if (conn != NULL)
        return tp_stream_conn_send(conn, buf, len);

    tp_addr_str(&dst->addr, where, sizeof where);
    if (dst->proto == TP_TLS && tp->tls_ctx == NULL) {
        log_warn("tp_send: TLS is not configured, message of %zu bytes to %s refused", len, where);
        goto fail;
    }
    if (tp_addr_socklen(&dst->addr) == 0) {
        log_warn("tp_send: destination has no IPv4/IPv6 address");
        goto fail;
    }
    if (tp->nconns >= tp->lim.max_conns) {
        log_peer(LOG_WARN, "%s connect to %s refused: %u connections open (max_conns)",
                 tp_proto_name(dst->proto), where, (unsigned)tp->nconns);
        goto fail;
    }
    conn = tp_conn_new(tp, dst->proto, &dst->addr, NULL);
    if (conn == NULL)
        goto fail;
    if (conn_setup(conn, -1, true, dst->tls_name) != 0) {
        log_err("%s connect to %s: cannot create connection", tp_proto_name(dst->proto), where);
        tp_conn_destroy(conn);
        goto fail;
    }
    /* Queue before connecting: an immediate refusal is reported by libevent from the
     * loop, and then this message must be among those handed to the tp_fail_fn. */
    if (tp_stream_conn_send(conn, buf, len) != 0) {
        tp_conn_destroy(conn);
        return -1;
    }
    tp_conn_insert(tp, conn);
    if (tp->lim.connect_timeout_ms > 0)
        timer_arm_ms(conn, tp->lim.connect_timeout_ms);
    if (bufferevent_socket_connect(conn->bev, (struct sockaddr *)&conn->peer.ss,
                                   (int)tp_addr_socklen(&conn->peer)) != 0) {
        if (conn->closing)
            return 0;   /* already failed; the message is reported through tp_fail_fn */
        log_peer(LOG_WARN, "%s connect to %s: %s", tp_proto_name(dst->proto), where,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        while (conn->qhead != NULL) {   /* refused at once: report by return value only */
            struct tp_qmsg *q = conn->qhead;
            conn->qhead = q->next;
            free(q);
        }
        conn->qtail = NULL;
        conn->qbytes = 0;
        tp_conn_kill(conn, "connect failed");
        goto fail;
    }
    set_nodelay(bufferevent_getfd(conn->bev));
    log_debug("conn=%llu %s connecting to %s", (unsigned long long)conn->id,
              tp_proto_name(conn->proto), where);
    return 0;
fail:
    tp->stats.send_fail++;
    return -1;
}
