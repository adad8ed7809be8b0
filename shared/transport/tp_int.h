/*
 * tp_int: types shared by tp.c, tp_udp.c, tp_tcp.c and tp_tls.c. Not for use outside
 * shared/transport/ (the public contract is tp.h).
 *
 * Ownership: struct tp owns its listeners, its connections (live ones in the two
 * hash tables, closing ones on the dead list until the reaper frees them) and the
 * queue of undelivered messages waiting for the tp_fail_fn.
 */
#ifndef PARLEY_TRANSPORT_TP_INT_H
#define PARLEY_TRANSPORT_TP_INT_H

#include "transport/tp.h"

#include <event2/event.h>
#include <netinet/in.h>

struct bufferevent;
struct evconnlistener;
struct ssl_ctx_st;                       /* OpenSSL SSL_CTX, only tp_tls.c sees inside */
struct x509_st;                          /* OpenSSL X509 */

#define TP_UDP_BATCH 32                  /* datagrams per recvmmsg() wakeup */
#define TP_UDP_SOCKBUF (4 * 1024 * 1024) /* SO_RCVBUF / SO_SNDBUF */

struct tp_listener {
    struct tp *tp;
    enum tp_proto proto;
    enum tp_class cls;              /* given to connections accepted here */
    struct tp_addr addr;            /* bound address (real port after bind) */
    int fd;                         /* UDP socket; -1 for streams (owned by el) */
    struct event *ev;               /* UDP read event */
    struct evconnlistener *el;      /* TCP/TLS accept; NULL once stopped */
    struct event *pause_ev;         /* TCP/TLS: re-enables accepting after EMFILE/ENFILE */
    struct tp_listener *next;
};

/* A message copied while an outgoing connection is being set up. */
struct tp_qmsg {
    struct tp_qmsg *next;
    size_t len;
    char data[];
};

/* A message whose delivery failed, waiting for the deferred tp_fail_fn call. */
struct tp_failed {
    struct tp_failed *next;
    struct tp_addr dst;
    enum tp_proto proto;
    size_t len;
    char data[];
};

/* One write to a connected stream's output buffer: a message or a keep-alive pong. */
struct tp_outrec {
    size_t len;
    bool is_msg;
};

/*
 * A stream connection. Invariants: a live connection (closing == false) is in
 * both tables (by id and by peer); once closing it is in neither, sits on
 * tp->dead, has its callbacks disabled and is freed by the reaper only, so a
 * pointer held on a callback stack stays valid until the loop runs again.
 * While connecting (outgoing, connected == false) output waits in qhead..qtail;
 * afterwards it goes straight to the bufferevent and out_lens remembers the
 * lengths of messages possibly still in its output buffer, so their bytes can be
 * handed to the tp_fail_fn if the connection dies first.
 * TLS: connected means "handshake done" (accepted ones too, so an accepted TLS
 * connection waits in the connect timeout until then). An outgoing TLS connection
 * stays `unconfirmed` after the handshake until the peer sends a byte or
 * confirm_at_ms passes; meanwhile whole copies of what it wrote sit in
 * sent_head..sent_tail, because a TLS 1.3 server refuses our certificate only after
 * our side has finished the handshake and written.
 */
struct tp_conn {
    struct tp *tp;
    uint64_t id;
    enum tp_proto proto;
    enum tp_class cls;
    struct tp_addr peer;
    struct tp_addr local;
    struct tp_listener *lis;        /* accepted on; NULL for outgoing */
    struct bufferevent *bev;
    struct event *timer;            /* connect timeout, then idle timeout */
    uint64_t last_active_ms;
    unsigned pending;               /* proxy layer's outstanding server tx count */
    bool outgoing;
    bool connected;
    bool closing;                   /* on the dead list, waiting for the reaper */
    bool close_after_write;         /* tp_conn_close(now = false) was called */

    struct tp_qmsg *qhead, *qtail;  /* queued while connecting */
    size_t qbytes;

    struct tp_outrec *out_lens;     /* ring of recent writes (outgoing only) */
    size_t out_cap, out_first, out_count, out_sum;

    /* TLS only */
    char *tls_name;                 /* outgoing: name the server was verified against */
    struct x509_st *peer_cert;      /* verified peer certificate (own reference) or NULL */
    char *peer_cn;                  /* its subject CN or NULL */
    bool peer_server_auth;          /* EKU extension present and lists serverAuth */
    bool peer_gone;                 /* EOF/error seen: no close_notify on close */
    bool unconfirmed;               /* see above */
    uint64_t confirm_at_ms;
    struct tp_qmsg *sent_head, *sent_tail;
    size_t sent_bytes;

    struct tp_conn *id_next;        /* chain in tp->by_id */
    struct tp_conn *peer_next;      /* chain in tp->by_peer */
    struct tp_conn *dead_next;      /* chain in tp->dead */
};

struct tp {
    struct event_base *base;
    struct tp_limits lim;
    tp_recv_fn *recv_cb;
    tp_fail_fn *fail_cb;
    void *arg;

    struct tp_listener *listeners;  /* in tp_listen() order */
    uint64_t next_id;               /* next connection id; starts at 1 */

    struct tp_conn **by_id;         /* hash: id -> conn */
    struct tp_conn **by_peer;       /* hash: (proto, peer) -> conn */
    size_t nbuckets;                /* power of two, shared by both tables */
    size_t nconns;                  /* live connections in the tables */

    struct tp_conn *dead;           /* closing, freed by reaper */
    struct event *reaper;
    struct tp_failed *fhead, *ftail;
    struct event *fail_ev;

    char *udp_buf;                  /* TP_UDP_BATCH * max_msg_size, lazily allocated */

    struct ssl_ctx_st *tls_ctx;     /* for new TLS connections; NULL = TLS not configured.
                                     * Each SSL holds its own reference, so a reload that
                                     * replaces it leaves open connections alone. */
    struct tp_tls_opts tls_opts;    /* copy; strings owned (for tp_tls_reload) */
    tp_conn_open_fn *open_cb;
    void *open_arg;
    struct tp_stats stats;
};

/* Length of the sockaddr in <a> by its family (0 for an unset address). */
static inline socklen_t
tp_addr_socklen(const struct tp_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return (socklen_t)sizeof(struct sockaddr_in);
    if (a->ss.ss_family == AF_INET6)
        return (socklen_t)sizeof(struct sockaddr_in6);
    return 0;
}

/* tp.c */
struct tp_conn *tp_conn_new(struct tp *tp, enum tp_proto proto, const struct tp_addr *peer,
                            struct tp_listener *lis);
void tp_conn_insert(struct tp *tp, struct tp_conn *conn);
/* Frees a connection that never went live (not in the tables, no callbacks pending). */
void tp_conn_destroy(struct tp_conn *conn);
/* Marks <conn> closing, hands unsent messages of an outgoing one to the fail queue,
 * schedules the reaper. Safe inside the connection's own callbacks. */
void tp_conn_kill(struct tp_conn *conn, const char *why);
struct tp_conn *tp_conn_find_peer(struct tp *tp, enum tp_proto proto, const struct tp_addr *peer,
                                  const char *tls_name);
void tp_fail_queue(struct tp *tp, const char *buf, size_t len, const struct tp_addr *dst,
                   enum tp_proto proto);
void tp_deliver(struct tp *tp, struct tp_rx *rx);

/* tp_udp.c */
/* Sets SO_REUSEPORT on a listening socket when tp->lim.reuse_port; 0, or -1 (logged). */
int tp_sock_reuse_port(struct tp *tp, int fd, const char *where);

struct tp_listener *tp_udp_listen(struct tp *tp, const struct tp_addr *addr);
void tp_udp_close(struct tp_listener *lis);
int tp_udp_send(struct tp *tp, const struct tp_addr *dst, const char *buf, size_t len);

/* tp_tcp.c (TCP and TLS streams: only bufferevent creation differs) */
struct tp_listener *tp_stream_listen(struct tp *tp, enum tp_proto proto, const struct tp_addr *addr);
void tp_stream_stop(struct tp_listener *lis);
int tp_stream_send(struct tp *tp, const struct tp_dest *dst, const char *buf, size_t len);
int tp_stream_conn_send(struct tp_conn *conn, const char *buf, size_t len);
void tp_stream_conn_close_soft(struct tp_conn *conn);
/* Appends to <conn>'s dead list failures all messages not yet written. */
void tp_stream_collect_unsent(struct tp_conn *conn);

/* tp_tls.c */
/* Frees the TLS context and the copied options (tp_free). */
void tp_tls_cleanup(struct tp *tp);
/* A TLS bufferevent for <conn> on <fd> (-1: outgoing, connect follows), or NULL. */
struct bufferevent *tp_tls_bev_new(struct tp_conn *conn, evutil_socket_t fd, bool connecting,
                                   const char *tls_name);
/* After the handshake: records the verified peer certificate. 0, or -1 (out of memory). */
int tp_tls_capture_peer(struct tp_conn *conn);
/* Why a TLS connection failed (verify result, else OpenSSL error) into <out>; false when
 * OpenSSL has no reason (the socket's errno may have one), <out> then says so. */
bool tp_tls_error_str(struct tp_conn *conn, char *out, size_t outlen);
/* Whether an open TLS connection may carry a message meant for <tls_name>. */
bool tp_tls_conn_fits(const struct tp_conn *conn, const char *tls_name);
/* Sends close_notify if the session is healthy; frees the TLS fields of <conn>. */
void tp_tls_conn_close(struct tp_conn *conn);
void tp_tls_conn_free(struct tp_conn *conn);

#endif
