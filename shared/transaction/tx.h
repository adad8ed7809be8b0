/*
 * tx: RFC 3261 §17 transactions — our own, hashed by branch for O(1) matching
 * (libosip2's FSM scans lists; dependencies.md §2.7).
 *
 * Server transactions are created here for every new request except ACK and handed
 * up through tx_handlers.request. Client transactions are created by the proxy with
 * tx_client_send(); their responses, timeouts and transport errors come back through
 * the per-transaction tx_client_fn.
 *
 * Lifetime: a transaction is reference counted. The table holds one reference until
 * the transaction terminates; an owner (the proxy context) that keeps a pointer takes
 * its own with tx_ref() and drops it with tx_unref(). Timers are owned by the
 * transaction (style rule 16) and named as in RFC 3261 (A..K).
 *
 * A server transaction lives at most <max_lifetime_ms> (design §2: 32 s) without a
 * final response; every provisional response it sends restarts that clock (so a
 * 100 Trying from an application extends it). On expiry tx_handlers.server_timeout
 * is called, and the owner must answer (408) or let it be answered for it.
 *
 * Threading: the loop thread of the event_base only.
 */
#ifndef PARLEY_TRANSACTION_TX_H
#define PARLEY_TRANSACTION_TX_H

#include <stdbool.h>
#include <stdint.h>

#include "sip/sip_msg.h"
#include "transport/tp.h"

struct event_base;
struct tx;
struct tx_layer;

enum tx_state {
    TX_TRYING = 0,     /* non-INVITE, before any response */
    TX_CALLING,        /* client INVITE, before any response */
    TX_PROCEEDING,     /* a provisional response was sent/received */
    TX_COMPLETED,      /* final response; absorbing retransmissions */
    TX_CONFIRMED,      /* server INVITE: ACK received (Timer I) */
    TX_ACCEPTED,       /* INVITE 2xx (RFC 6026 §7.1/§8.4): 2xx retransmissions pass through */
    TX_TERMINATED,
};

struct tx_opts {
    unsigned t1_ms;              /* 500 */
    unsigned t2_ms;              /* 4000 */
    unsigned t4_ms;              /* 5000 */
    unsigned max_lifetime_ms;    /* 32000: server tx without a final response */
    unsigned timer_c_ms;         /* 180000: proxy INVITE client tx after a provisional (RFC 3261 §16.8) */
};

/* Upcalls from the transaction layer to the core. */
struct tx_handlers {
    /* A new request (not ACK) created server transaction <stx>; tx_request(stx) is the message. */
    void (*request)(struct tx *stx, const struct tp_rx *rx, void *arg);
    /* An ACK that matched no INVITE server transaction (ACK for a 2xx): takes ownership of <ack>. */
    void (*ack)(struct sip_msg *ack, const struct tp_rx *rx, void *arg);
    /* A response that matched no client transaction: takes ownership of <resp>. */
    void (*stray_response)(struct sip_msg *resp, const struct tp_rx *rx, void *arg);
    /* A server transaction's lifetime expired without a final response. */
    void (*server_timeout)(struct tx *stx, void *arg);
};

/*
 * Client transaction events. <resp> is borrowed for the call (NULL for a timeout or
 * transport error, then <code> is 408 or 503). Called for every provisional and final
 * response, and for 2xx retransmissions in the Accepted state.
 */
typedef void tx_client_fn(struct tx *ctx, struct sip_msg *resp, int code, void *arg);

void tx_opts_default(struct tx_opts *opts);

struct tx_layer *tx_layer_new(struct event_base *base, struct tp *tp, const struct tx_opts *opts,
                              const struct tx_handlers *h, void *arg);
void tx_layer_free(struct tx_layer *txl);

/* Entry point for every received, parsed message. Takes ownership of <msg>. */
void tx_receive(struct tx_layer *txl, struct sip_msg *msg, const struct tp_rx *rx);
/*
 * Entry for messages transport gave back undelivered (tp_fail_fn): finds the client
 * transaction by the message's own branch and fails it with 503.
 */
void tx_transport_failed(struct tx_layer *txl, const char *buf, size_t len);

void tx_ref(struct tx *tx);
void tx_unref(struct tx *tx);

struct sip_msg *tx_request(const struct tx *tx);
enum tx_state tx_state(const struct tx *tx);
bool tx_is_invite(const struct tx *tx);
bool tx_is_server(const struct tx *tx);
/* Status of the last response sent (server) or received (client); 0 if none. */
int tx_last_status(const struct tx *tx);
/* The owner's pointer (the proxy context). */
void tx_set_owner(struct tx *tx, void *owner);
void *tx_owner(const struct tx *tx);
/* Where responses of a server transaction go (also: the connection it arrived on). */
const struct tp_dest *tx_reply_dest(const struct tx *stx);
struct tx_layer *tx_layer_of(const struct tx *tx);

/*
 * Sends <resp> on server transaction <stx> and advances its state. <resp> is borrowed
 * (serialized here). A provisional response restarts the lifetime clock. Returns 0 or -1
 * (after a final response was already sent).
 */
int tx_reply(struct tx *stx, struct sip_msg *resp);
/* The same with a response already serialized (takes ownership of malloc'd <buf>). */
int tx_reply_bytes(struct tx *stx, int code, char *buf, size_t len);
/* Builds and sends a response with no extra headers. <reason> NULL = standard phrase. */
int tx_reply_code(struct tx *stx, int code, const char *reason);
/*
 * Makes non-INVITE server transaction <stx> stateless (RFC 3261 §8.2.7): once its final
 * answer is sent it leaves the table at once instead of absorbing retransmissions for
 * Timer J. For answers that are cheap to repeat and not worth 32 s of memory, such as
 * digest challenges. No effect on INVITE transactions (their ACK must find them).
 */
void tx_set_stateless(struct tx *stx);
/* The same with <extra> header lines ("Name: value\r\n"..., or NULL) and no body. */
int tx_reply_extra(struct tx *stx, int code, const char *reason, const char *extra);
/* The same, and returns the built response so the caller could add headers first: */
struct sip_msg *tx_reply_build(struct tx *stx, int code, const char *reason);

/*
 * Finds the INVITE server transaction a CANCEL server transaction refers to
 * (RFC 3261 §9.2: same branch and sent-by). NULL if none.
 */
struct tx *tx_find_cancelled(struct tx_layer *txl, const struct tx *cancel_stx);

/*
 * Starts a client transaction: takes ownership of <req> (whose top Via must carry a
 * fresh branch), serializes and sends it to <dest>, and runs Timers A/B or E/F.
 * Returns the transaction (with one reference for the caller) or NULL.
 */
struct tx *tx_client_send(struct tx_layer *txl, struct sip_msg *req, const struct tp_dest *dest,
                          tx_client_fn *cb, void *arg);
/*
 * The same with a message already serialized: takes ownership of <buf> (malloc'd,
 * <len> bytes) whose top Via carries <branch>; <method> is its method. The request is
 * parsed again only if an ACK or CANCEL has to be built from it.
 */
struct tx *tx_client_send_bytes(struct tx_layer *txl, char *buf, size_t len, const char *branch,
                                enum sip_method method, const struct tp_dest *dest, tx_client_fn *cb,
                                void *arg);
/*
 * RFC 3261 §9.1: cancels a pending INVITE client transaction — sends CANCEL once a
 * provisional response has arrived (right away if one has), with its own client
 * transaction whose result is ignored. Idempotent.
 */
void tx_client_cancel(struct tx *ctx);
/* The owner no longer wants events from <ctx> (it keeps running its timers). */
void tx_client_detach(struct tx *ctx);
/* Hands the events of <ctx> to another callback (e.g. stateless 2xx forwarding). */
void tx_client_rebind(struct tx *ctx, tx_client_fn *cb, void *arg);

/* Sends a message outside any transaction (ACK for 2xx, stateless responses). */
int tx_send_stateless(struct tx_layer *txl, struct sip_msg *msg, const struct tp_dest *dest);
/* Computes where a response goes from its top Via (RFC 3261 §18.2.2, RFC 3581 §4). */
int tx_response_dest(const struct sip_msg *resp, struct tp_dest *dest);
/* The same from the Via at <index> (1 = the next hop upstream of a proxy, before popping its own). */
int tx_response_dest_at(const struct sip_msg *resp, int index, struct tp_dest *dest);
/* Sends bytes outside any transaction. */
int tx_send_bytes(struct tx_layer *txl, const char *buf, size_t len, const struct tp_dest *dest);

struct tx_stats {
    uint64_t server_created, client_created, retransmits_absorbed, retransmits_sent;
    uint64_t timeouts, transport_errors, live_server, live_client;
    uint64_t replies_by_class[7];   /* responses sent by server transactions, by status / 100 */
};
/* Live transactions in <state> (server or client side): a walk of the table, for /metrics. */
uint64_t tx_layer_count_state(const struct tx_layer *txl, bool server, enum tx_state state);
const struct tx_stats *tx_layer_stats(const struct tx_layer *txl);

#endif
