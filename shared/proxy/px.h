/*
 * px: the proxy core — receive path, RFC 3261 §16 stateful proxying and the protocol
 * stack (where a request goes next, design §2).
 *
 * One struct px per event loop ties transport, parsing and transactions together:
 *   tp (bytes) -> px_receive -> sip_msg_parse -> tx_receive -> px request handling:
 *   §16.3 checks (Max-Forwards 483, loop 482, Proxy-Require 420), §16.4 Route
 *   pre-processing, CANCEL (§16.10), then the role's handler (User Services on a home
 *   server), then forwarding: one client transaction per target, forking in parallel
 *   within a q-value group and in sequence between groups (highest q first), best
 *   response per §16.7, Record-Route on dialog-creating requests.
 *
 * The role handler gets a struct px_req and either answers it (px_reply*), returns
 * targets (px_add_target), lets the stack route it by Route/Request-URI, or suspends
 * it (takes a reference with px_req_ref and answers later, e.g. after a store commit).
 */
#ifndef PARLEY_PROXY_PX_H
#define PARLEY_PROXY_PX_H

#include <stdbool.h>
#include <stdint.h>

#include "sip/sip_msg.h"
#include "transaction/tx.h"
#include "transport/tp.h"
#include "util/log.h"

struct event_base;
struct px;
struct px_req;

enum px_verdict {
    PX_ROUTE = 0,    /* let the protocol stack route it (Route, maddr, Request-URI) */
    PX_ANSWERED,     /* the handler sent a final response */
    PX_FORWARD,      /* the handler added targets with px_add_target() */
    PX_SUSPENDED,    /* the handler took a reference and will answer later */
};

typedef enum px_verdict px_request_fn(struct px_req *req, void *arg);

struct px_opts {
    const char *advertise;       /* host for Via/Record-Route; NULL = the listener's address */
    const char *domain;          /* the SIP domain served (home server) or NULL */
    bool record_route;           /* Record-Route dialog-creating requests (default true) */
    unsigned max_branches;       /* per request (default 16) */
    struct sip_limits sip;
    struct tp_limits tp;
    struct tx_opts tx;
};

struct px_stats {
    uint64_t rx_requests, rx_responses, parse_errors, dropped;
    uint64_t replies_483, replies_482, replies_420, replies_404, replies_408, replies_504;
    uint64_t forwarded, stateless_forwarded, cancels;
    uint64_t rx_by_method[SIP_REFER + 1];   /* requests received, by enum sip_method (ACK included) */
    uint64_t rx_resp_by_class[7];           /* responses received, by status / 100 */
};

/* One target of a request (a registered contact, a static route's gateway, ...). */
struct px_target {
    const char *uri;             /* new Request-URI */
    const char *route_set;       /* comma-separated Route URIs to push (a Path), or NULL */
    uint64_t conn_id;            /* send on this connection if still open (registration flow) */
    int q;                       /* 0..1000, higher first */
    bool client_supplied;        /* the destination is what a client asked for (its Request-URI),
                                  * not a User Services / static route target: it must pass
                                  * destination authorization (px_trust.h, design §2 step 3) */
};

void px_opts_default(struct px_opts *opts);

struct px *px_new(struct event_base *base, const struct px_opts *opts, px_request_fn *handler,
                  void *arg);
void px_free(struct px *px);
struct tp *px_tp(struct px *px);
struct tx_layer *px_txl(struct px *px);
const struct px_stats *px_stats(const struct px *px);
/* Opens a listener from a spec "udp:127.0.0.1:5060". 0 or -1 (logged). */
int px_listen(struct px *px, const char *spec);
/* Stops accepting new requests (SIGTERM): new requests get 503 from then on. */
void px_shutdown(struct px *px);

/* Is <host>:<port> one of our own addresses (a listener or the advertised name)? */
bool px_is_us(const struct px *px, const char *host, uint16_t port);
/* Is <host> our domain (case-insensitive)? */
bool px_is_our_domain(const struct px *px, const char *host);

/* The request being handled. */
struct sip_msg *px_req_msg(const struct px_req *req);
struct tx *px_req_tx(const struct px_req *req);
const struct tp_rx *px_req_rx(const struct px_req *req);   /* valid during the handler call only */
uint64_t px_req_conn_id(const struct px_req *req);
const struct tp_addr *px_req_src(const struct px_req *req);
enum tp_proto px_req_proto(const struct px_req *req);
/* true when a Route remained after §16.4 pre-processing (design §2: strict-routed). */
bool px_req_has_route(const struct px_req *req);
/* true when the request came over a trusted connection (design §2 "server" class: MTLS
 * peer listed in the directory, or a trusted listener/static route). Trusted requests are
 * already authenticated, so User Services does not challenge them. Set by px_trust
 * (px_trust.h); always false when no trust layer is attached. */
bool px_req_is_trusted(const struct px_req *req);
/* The class of the connection/source the request came from (TP_CLASS_CLIENT by default). */
enum tp_class px_req_class(const struct px_req *req);
/* The trust layer's state of <req> (struct px_trust_req, px_trust.h). */
struct px_trust_req *px_req_trust(struct px_req *req);
/* Attaches the trust layer (px_trust_new does it; NULL detaches). */
struct px_trust;
void px_set_trust(struct px *px, struct px_trust *t);
void px_req_ref(struct px_req *req);
void px_req_unref(struct px_req *req);

/*
 * Logs one line about <req> with its context first — "conn=<id> call-id=<id>
 * tx=<branch> <METHOD>: ..." — so every line of one request can be found (style rule
 * 17). <peer> lines (provoked by remote input) go through the rate limiter.
 */
void px_req_log(const struct px_req *req, enum log_level lvl, bool peer, const char *module,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define px_log(req, lvl, ...)                                                                      \
    do {                                                                                           \
        if (log_enabled(lvl))                                                                      \
            px_req_log((req), (lvl), false, LOG_MODULE, __VA_ARGS__);                              \
    } while (0)
#define px_log_peer(req, lvl, ...)                                                                 \
    do {                                                                                           \
        if (log_enabled(lvl))                                                                      \
            px_req_log((req), (lvl), true, LOG_MODULE, __VA_ARGS__);                               \
    } while (0)

/* Answers. <resp> is borrowed. */
int px_reply(struct px_req *req, int code, const char *reason);
/* px_reply() with <extra> header lines ("Name: value\r\n"..., or NULL): built from the
 * request's bytes, without osip. */
int px_reply_extra(struct px_req *req, int code, const char *reason, const char *extra);
/* px_reply_extra() that forgets the transaction once sent (tx_set_stateless: non-INVITE only). */
int px_reply_stateless(struct px_req *req, int code, const char *reason, const char *extra);
int px_reply_msg(struct px_req *req, struct sip_msg *resp);
struct sip_msg *px_reply_build(struct px_req *req, int code, const char *reason);

/* Adds a forwarding target (copied). 0 or -1 when the branch limit is reached. */
int px_add_target(struct px_req *req, const struct px_target *t);

/*
 * Response hook (the application chain, design §4). <fn> is called for every response
 * relayed upstream for <req> - provisionals (not 100), the 2xx, and the best final
 * response, also one the proxy makes up itself (404/408/500/504 ...) - just before it
 * is sent. It may modify <resp>. It returns 0 to send <resp>, or 1 when it answered
 * <req> itself with px_reply*() instead (then <resp> is dropped). 2xx that arrive after
 * the final answer are forwarded statelessly without the hook. <release>(<arg>) (may
 * be NULL) runs when <req> is freed or the hook is replaced. One hook per request.
 */
typedef int px_response_fn(struct px_req *req, struct sip_msg *resp, void *arg);
typedef void px_release_fn(void *arg);
void px_req_on_response(struct px_req *req, px_response_fn *fn, void *arg, px_release_fn *release);
/*
 * Resumes a request a handler suspended (PX_SUSPENDED, e.g. held by an agent): forwards
 * it to the targets added with px_add_target(), or routes it as PX_ROUTE does when there
 * are none. No-op once a final response was sent or forwarding has begun.
 */
void px_req_forward(struct px_req *req);
/*
 * Observer of final answers (archiving): <fn>(<req>, <code>, <arg>) runs once per request
 * when its final response (>= 200) is sent upstream, whoever made it. Read-only: it must
 * not answer or modify <req>. One per px; NULL removes it.
 */
typedef void px_final_fn(struct px_req *req, int code, void *arg);
void px_set_final_observer(struct px *px, px_final_fn *fn, void *arg);

/*
 * ACK for a 2xx (forwarded statelessly, no transaction, §16.11): <fn>(<ack>, <rx>, <arg>)
 * runs after the trust check and before Route pre-processing, and may rewrite the ACK's
 * route set (the edge restores a hidden one); false drops the ACK. One per px; NULL
 * removes it.
 */
typedef bool px_ack_fn(struct sip_msg *ack, const struct tp_rx *rx, void *arg);
void px_set_ack_hook(struct px *px, px_ack_fn *fn, void *arg);
/*
 * Every response received, before it is matched to a transaction (so also a late 2xx
 * forwarded statelessly): <fn>(<resp>, <rx>, <arg>) may rewrite it (the edge restores the
 * Via list and Record-Route it hid, and hides those of responses going out); false drops
 * it (counted in dropped). One per px; NULL removes it.
 */
typedef bool px_rx_response_fn(struct sip_msg *resp, const struct tp_rx *rx, void *arg);
void px_set_rx_response_hook(struct px *px, px_rx_response_fn *fn, void *arg);
/* The class of the connection or source <rx> came from (px_trust; CLIENT without it). */
enum tp_class px_rx_class(struct px *px, const struct tp_rx *rx);
/*
 * Topology hiding: every branch of <req> is forwarded with the one Via value <value>
 * below ours instead of the received Via list (NULL: the received list again). The
 * request itself keeps its Via list, so the answers the proxy makes up go upstream
 * along it. 0 or -1.
 */
int px_req_hide_vias(struct px_req *req, const char *value);

/* ------------------------------------------------------------------ requests we originate
 * (px_uac.c): the home server sends NOTIFYs of its subscriptions (RFC 6665) itself. */
struct evdns_base;
struct px_uac;

/* Our sent-by for <proto> (the advertised host, else the listener's) into <host>, <port>. 0 or -1. */
int px_local_hostport(struct px *px, enum tp_proto proto, char *host, size_t hostlen, uint16_t *port);
/* The resolver of <px> (evdns on its loop). */
struct evdns_base *px_dns(struct px *px);

/*
 * Outcome of a request we originated: <code> is the final status (>= 200; 408 on timeout,
 * 503 on a transport error or when the next hop cannot be resolved), <resp> the response
 * (borrowed, NULL when none arrived). Called once; the handle is gone afterwards.
 */
typedef void px_uac_fn(int code, struct sip_msg *resp, void *arg);

/*
 * Sends request bytes on a new client transaction: takes ownership of malloc'd <bytes>
 * (<len>), whose top Via carries <branch>; <m> is its method. Returns a handle (valid
 * until <cb> ran or px_uac_cancel()) or NULL (nothing will be called; <bytes> freed).
 */
struct px_uac *px_send_request(struct px *px, char *bytes, size_t len, const char *branch,
                               enum sip_method m, const struct tp_dest *dest, px_uac_fn *cb, void *arg);

/* One dialog as seen from our side (RFC 3261 §12), for requests inside it. */
struct px_dialog {
    const char *call_id;
    const char *local_uri;        /* our From URI (the To of the dialog-creating request) */
    const char *local_tag;
    const char *remote_uri;       /* their URI (From of the dialog-creating request) */
    const char *remote_tag;
    const char *remote_target;    /* their Contact URI: the Request-URI (§12.2.1.1) */
    const char *route_set;        /* "<uri>,<uri>" in request order (Record-Route as received by a
                                     UAS), or NULL */
    const char *local_contact;    /* our Contact URI, or NULL */
    uint32_t cseq;                /* CSeq number to put in this request */
    uint64_t conn_id;             /* stream flow to prefer (0 = none) */
};

/*
 * Builds and sends a request inside dialog <d> (RFC 3261 §12.2.1.1: Request-URI = remote
 * target, Route = route set, strict router handled), with our Via (fresh branch),
 * Max-Forwards 70, the extra header lines <headers> ("Name: value\r\n"..., may be NULL)
 * and the body <body>/<blen> of type <ctype> (NULL = no body). The next hop is the first
 * route, else the remote target, resolved with the URI's maddr/host/port/transport.
 * Returns a handle as px_send_request() does, or NULL.
 */
struct px_uac *px_send_in_dialog(struct px *px, const struct px_dialog *d, enum sip_method m,
                                 const char *headers, const char *ctype, const char *body, size_t blen,
                                 px_uac_fn *cb, void *arg);
/* The owner no longer wants the outcome (the transaction finishes on its own). Accepts NULL. */
void px_uac_cancel(struct px_uac *u);

#endif
