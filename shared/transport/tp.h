/*
 * tp: SIP transports on libevent — UDP, TCP and TLS (mutual TLS between pool
 * servers, RFC 3261 §26.2.1 / RFC 5630) listeners and connections. Bytes in, bytes
 * out; transport never parses SIP beyond the framing of streams (Content-Length) and
 * never calls upward except through the receive, failure and connection-open
 * callbacks.
 *
 * One struct tp per event loop. Connections are named by a 64-bit id that is never
 * reused, so upper layers keep ids, not pointers (a connection may close at any
 * time); tp_conn_get() turns an id back into a connection or NULL.
 *
 * Threading: everything runs on the loop thread of <base>.
 */
#ifndef PARLEY_TRANSPORT_TP_H
#define PARLEY_TRANSPORT_TP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct tp;
struct tp_conn;
struct tp_listener;

enum tp_proto {
    TP_UDP = 0,
    TP_TCP,
    TP_TLS,
};

/* Connection classes (design §2). Transport stores the class; the proxy layer sets it. */
enum tp_class {
    TP_CLASS_CLIENT = 0,
    TP_CLASS_SERVER,
    TP_CLASS_TRUSTED,
};

struct tp_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Limits fed from configuration; every buffer fed from the network is capped. */
struct tp_limits {
    size_t max_msg_size;          /* default 65536: larger stream message -> connection closed */
    unsigned idle_timeout_s;      /* default 300: stream connection with no traffic is closed */
    unsigned connect_timeout_ms;  /* default 2000: outgoing TCP/TLS connect */
    unsigned max_conns;           /* default 10000: accepted connections beyond this are refused */
    size_t max_outbuf;            /* default 1 MiB queued for one connection, then it is closed */
    bool reuse_port;              /* default false: listeners bind with SO_REUSEPORT, so several
                                   * processes (workers, docs/internals/workers.md) share one
                                   * address; the kernel spreads UDP sources and TCP connections
                                   * over them by 4-tuple hash. Every socket on the address must
                                   * set it (and belong to the same user). */
};

/* One received message (UDP datagram or one framed message of a stream). */
struct tp_rx {
    const char *buf;              /* not NUL-terminated; valid only during the callback */
    size_t len;
    enum tp_proto proto;
    struct tp_listener *lis;      /* listener it arrived on (for UDP: the socket) */
    uint64_t conn_id;             /* stream connection id; 0 for UDP */
    struct tp_addr src;           /* peer address */
    struct tp_addr local;         /* our address (listener's bound address) */
};

/* Called for each received message. */
typedef void tp_recv_fn(struct tp_rx *rx, void *arg);

/*
 * Called once when a stream connection is established, before any message of it is
 * delivered or any queued message is written: TCP when accepted or connected, TLS
 * after a successful handshake (so the tp_conn_peer_* accessors are filled in).
 * The proxy layer classifies the connection here (tp_conn_set_class). It may call
 * tp_conn_close(); it must not call tp_free().
 */
typedef void tp_conn_open_fn(struct tp_conn *conn, void *arg);

/*
 * Called (later, from the loop) when a message given to tp_send() could not be
 * delivered: the outgoing connection failed or closed before it was written.
 * <buf,len> is the undelivered message (valid during the callback only); the upper
 * layer finds its transaction by the message's own top Via branch.
 */
typedef void tp_fail_fn(const char *buf, size_t len, const struct tp_addr *dst, enum tp_proto proto,
                        void *arg);

/* Where to send. */
struct tp_dest {
    enum tp_proto proto;
    struct tp_addr addr;          /* destination; ignored when conn_id names a live connection */
    uint64_t conn_id;             /* 0 = none; else send on this connection if it is still open */
    const char *tls_name;         /* TLS: name to verify the peer against; NULL = use address */
};

void tp_limits_default(struct tp_limits *lim);

/*
 * TLS configuration (PEM files). One set per struct tp, used both by TLS listeners
 * and by outgoing TLS connections (pool servers present the same certificate either
 * way, so it needs both serverAuth and clientAuth EKUs; OpenSSL refuses a client cert
 * whose EKU lacks clientAuth and a server cert whose EKU lacks serverAuth).
 */
struct tp_tls_opts {
    const char *cert_file;        /* our certificate chain; NULL = none (outgoing only, no mTLS) */
    const char *key_file;         /* its private key; NULL = in cert_file */
    const char *ca_file;          /* CAs that peers' certificates must chain to */
    bool require_client_cert;     /* listeners fail a handshake without a client cert */
    bool verify_peer;             /* verify peers against ca_file (both roles); false = no
                                   * verification and no peer identity (tests, lab only) */
};

/*
 * Raises the soft RLIMIT_NOFILE to the hard limit (each accepted connection is a
 * descriptor; distributions start processes at a soft 1024) and logs the limit; warns
 * when it is below <max_conns> plus headroom. tp_new() calls it once per process.
 * Returns 0, or -1 when the limit cannot be read.
 */
int tp_raise_fd_limit(unsigned max_conns);

/* Creates the transport set on <base>. <lim> is copied; NULL = defaults.
 * The first call in a process also calls tp_raise_fd_limit(lim->max_conns). */
struct tp *tp_new(struct event_base *base, const struct tp_limits *lim, tp_recv_fn *recv_cb,
                  tp_fail_fn *fail_cb, void *arg);
/* Closes every listener and connection and frees <tp>. Accepts NULL. */
void tp_free(struct tp *tp);

/*
 * Loads the TLS configuration: TLS 1.2 and 1.3 only, ECDHE+AEAD suites for 1.2, no
 * compression, no renegotiation, no session resumption. Listeners request a client
 * certificate (a presented one must verify; none is fine unless require_client_cert);
 * outgoing connections present ours and verify the server against dst->tls_name or
 * the address (SNI is sent for names). <opts> strings are copied. May be called again
 * to replace the configuration (like tp_tls_reload). Returns 0, or -1 with a message
 * in <err> (size <errlen>) and the previous configuration still in use.
 */
int tp_tls_configure(struct tp *tp, const struct tp_tls_opts *opts, char *err, size_t errlen);
/*
 * Re-reads the files of the current configuration into a new TLS context used by new
 * connections; open connections keep the context they were made with (no drops).
 * Returns 0, or -1 with <err> filled and the old context kept (also when TLS was never
 * configured).
 */
int tp_tls_reload(struct tp *tp, char *err, size_t errlen);
/* True once tp_tls_configure() succeeded. */
bool tp_tls_enabled(const struct tp *tp);

/* Sets (or clears, with NULL) the connection-established hook. */
void tp_set_conn_open_fn(struct tp *tp, tp_conn_open_fn *fn, void *arg);

/*
 * Parses "udp:127.0.0.1:5060", "tcp:[::1]:5060", "tls:0.0.0.0:5061" into proto and
 * address. Returns 0, or -1 with a message in <err> (size <errlen>).
 */
int tp_parse_listen_spec(const char *spec, enum tp_proto *proto, struct tp_addr *addr, char *err,
                         size_t errlen);

/*
 * Opens a listener (UDP socket with large buffers, or TCP/TLS listening socket).
 * Port 0 binds an ephemeral port; tp_listener_addr() tells which. TLS needs
 * tp_tls_configure() with a certificate first. Returns the listener or NULL (and
 * logs why).
 */
struct tp_listener *tp_listen(struct tp *tp, enum tp_proto proto, const struct tp_addr *addr);
const struct tp_addr *tp_listener_addr(const struct tp_listener *lis);
enum tp_proto tp_listener_proto(const struct tp_listener *lis);
/* Per-listener class given to connections accepted on it (default client). */
void tp_listener_set_class(struct tp_listener *lis, enum tp_class cls);
/* Stops accepting (SIGTERM path); existing connections stay. */
void tp_stop_listening(struct tp *tp);

/* First listener of <proto> (for building our own Via/Record-Route). NULL if none. */
struct tp_listener *tp_listener_first(struct tp *tp, enum tp_proto proto);

/*
 * Sends one whole message. UDP: sendto from the first UDP listener of the
 * destination's address family. Streams: on dst->conn_id if it is open, else on an
 * open connection to dst->addr with the same proto (connection reuse), else a new
 * connection is opened and the message queued until it is up. Returns 0 when sent or
 * queued, -1 on an immediate failure (no socket of that kind, queue full, bad address,
 * TLS not configured). A later failure of a queued message is reported through the
 * tp_fail_fn; for TLS that includes a failed handshake or certificate check, and a
 * refusal of our certificate that a TLS 1.3 server sends just after the handshake
 * (messages written in the first connect_timeout_ms are kept until the peer sends
 * something). TLS reuses an open connection only if it was verified for the same
 * name (outgoing) or its peer certificate matches dst->tls_name (accepted).
 */
int tp_send(struct tp *tp, const struct tp_dest *dst, const char *buf, size_t len);

/* Connection lookups by id; NULL when the connection has closed. */
struct tp_conn *tp_conn_get(struct tp *tp, uint64_t conn_id);
uint64_t tp_conn_id(const struct tp_conn *conn);
enum tp_proto tp_conn_proto(const struct tp_conn *conn);
const struct tp_addr *tp_conn_peer(const struct tp_conn *conn);
enum tp_class tp_conn_class(const struct tp_conn *conn);
void tp_conn_set_class(struct tp_conn *conn, enum tp_class cls);
/* Outstanding server transactions on this connection (the proxy layer counts them). */
unsigned *tp_conn_pending(struct tp_conn *conn);
/* Closes the connection after its queued output is written (or at once if <now>). */
void tp_conn_close(struct tp *tp, struct tp_conn *conn, bool now);
/* True once the connection is usable (TCP connected, TLS handshake done). */
bool tp_conn_is_established(const struct tp_conn *conn);

/*
 * Peer identity of a TLS connection, known after the handshake (false/NULL before, for
 * TCP, and when verify_peer is off). Only a certificate that verified against ca_file
 * counts.
 * - has_cert: the peer presented a verified certificate.
 * - server_auth: its extendedKeyUsage lists serverAuth. A certificate WITHOUT the EKU
 *   extension does not count (OpenSSL would report "any usage") — design §2 classes.
 * - subject: its subject CN (valid while the connection lives), NULL if none.
 * - name_matches: <name> matches a SAN dNSName (wildcards in the leftmost label
 *   only), or the CN when there is no DNS SAN; an IP literal matches a SAN iPAddress.
 */
bool tp_conn_peer_has_cert(const struct tp_conn *conn);
bool tp_conn_peer_server_auth(const struct tp_conn *conn);
const char *tp_conn_peer_subject(const struct tp_conn *conn);
bool tp_conn_peer_name_matches(const struct tp_conn *conn, const char *name);

/* Counters for /metrics. */
struct tp_stats {
    uint64_t rx_msgs, tx_msgs, rx_bytes, tx_bytes;
    uint64_t rx_oversize, rx_bad_frame, send_fail, keepalive_pongs;
    uint64_t conns_open, conns_accepted, conns_refused, conns_idle_closed;
    uint64_t tls_handshake_fail;  /* TLS handshakes that failed (either role) */
};
const struct tp_stats *tp_stats(const struct tp *tp);

/* Address helpers. */
/* Formats "1.2.3.4:5060" or "[::1]:5060"; returns <out>. */
char *tp_addr_str(const struct tp_addr *a, char *out, size_t outlen);
/* Host part only, without brackets. */
char *tp_addr_host(const struct tp_addr *a, char *out, size_t outlen);
uint16_t tp_addr_port(const struct tp_addr *a);
/* Builds an address from a numeric host (IPv4 or IPv6, brackets allowed) and port. 0 or -1. */
int tp_addr_from_ip(struct tp_addr *a, const char *host, uint16_t port);
bool tp_addr_equal(const struct tp_addr *a, const struct tp_addr *b);
const char *tp_proto_name(enum tp_proto proto);   /* "UDP" "TCP" "TLS" */

#endif
