/*
 * edge_policy: the access edge's stage (design.md §1-2, docs/internals/pool.md).
 *
 * The edge sits in the perimeter. px_trust makes every connection accepted from outside
 * a client (Route/Record-Route stripped, throttled); this stage then decides where each
 * request goes, and the answer is always "a front-end" or "an outside user":
 *  - from outside (client class): authenticates nothing; REGISTER gets our Path with a
 *    flow token (RFC 5626 §5.1, "ob"), dialog-creating requests our Record-Route (two
 *    entries, outside and inside address, RFC 5658, when they differ) with the same
 *    token; in-dialog requests are accepted only when their top Route is ours with a
 *    valid flow token naming the very connection (UDP: address) they arrive on (we
 *    Record-Routed the dialog for this flow), else 403; OPTIONS to the edge itself (a keep-alive
 *    ping) is answered 200. Everything goes to a front-end over MTLS;
 *  - front-end fail-over: each front-end is probed with OPTIONS every probe interval
 *    and marked down after a timeout or transport error (also when a request to it came
 *    back 408/504 from the transport); requests go to the first front-end that is up, in
 *    the configured order (all down: the first one);
 *  - from a front-end (server class): the flow token in the user part of the first Route
 *    (ours, popped by px) names the outside connection; the request is sent on it (NAT:
 *    the connection the client opened; UDP: its source address, rport). Flow gone: 430
 *    Flow Failed (RFC 5626 §5.3). Without a token the Request-URI is used;
 *  - topology hiding (design §1 "never reveals internal addresses"): a Record-Route list
 *    going out to an outside user (in a response to its dialog-creating request, or in a
 *    dialog-creating request to it) is cut down to our outside entry; every other entry
 *    (front-end, home servers, our inside entry) is sealed, AES-256-GCM under the
 *    per-process key with the flow token as associated data, into its "th" URI parameter.
 *    The user's in-dialog requests carry that entry back as their Route: the hidden route
 *    set is opened and pushed (a "th" that does not open: 403); a response from the user
 *    carrying it has its Record-Route restored before it goes in (else 502). Responses the
 *    user gets carry only its own Via (ours is popped). Not hidden: the Via list of
 *    requests the pool sends the user, and 2xx retransmissions relayed statelessly
 *    (px late responses, no hook) keep the full Record-Route.
 * Nothing is sent to an internal address except the front-ends.
 *
 * Loop thread only. px is borrowed.
 */
#ifndef PARLEY_EDGE_POLICY_H
#define PARLEY_EDGE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/px.h"

struct event_base;
struct edge_policy;

struct edge_policy_opts {
    struct px *px;                  /* borrowed */
    const char *const *frontends;   /* SIP URIs of the front-ends, in order of preference */
    size_t nfrontends;
    const char *outside_uri;        /* our address for outside users, "sip:203.0.113.5:5061;transport=tls" */
    const char *inside_uri;         /* our address for the pool (front-ends connect there) */
    unsigned probe_interval_ms;     /* OPTIONS to each front-end; 0 = no probing */
    unsigned down_hold_ms;          /* a front-end marked down stays so this long without a probe */
};

/* NULL on bad options (logged) or allocation failure. */
struct edge_policy *edge_policy_new(struct event_base *base, const struct edge_policy_opts *opts);
void edge_policy_free(struct edge_policy *ep);

/* The px request handler (px_request_fn) with <arg> = the policy. */
enum px_verdict edge_policy_handle(struct px_req *req, void *arg);

/* The px ACK hook (px_ack_fn, px_set_ack_hook) with <arg> = the policy: an outside
 * user's ACK for a 2xx carrying our hidden route set ("th") gets it back. */
bool edge_policy_ack(struct sip_msg *ack, const struct tp_rx *rx, void *arg);

/* The px receive hook for responses (px_rx_response_fn, px_set_rx_response_hook) with
 * <arg> = the policy: a response from an outside user gets the Via list and Record-Route
 * the edge hid back (dropped when they do not open); a dialog-forming response from the
 * pool going out gets its Record-Route hidden. Also for 2xx forwarded statelessly. */
bool edge_policy_rx_response(struct sip_msg *resp, const struct tp_rx *rx, void *arg);

struct edge_policy_stats {
    uint64_t inbound;               /* outside requests forwarded to a front-end */
    uint64_t outbound;              /* pool requests sent to an outside user */
    uint64_t flow_failed;           /* 430: the outside connection had gone */
    uint64_t refused;               /* 403 (in-dialog request for a dialog not ours) */
    uint64_t failovers;             /* front-ends marked down */
    uint64_t hidden;                /* Record-Route lists hidden (topology hiding) */
    uint64_t vias_hidden;           /* Via lists of requests going out sealed (topology hiding) */
};
void edge_policy_stats_get(const struct edge_policy *ep, struct edge_policy_stats *out);
/* How many front-ends are up now. */
size_t edge_policy_frontends_up(const struct edge_policy *ep);

/*
 * Flow tokens: "<proto><conn_id hex>.<address hex>.<mac>", the MAC (HMAC-SHA-256, 64
 * bits) under a per-process random key, so an outside user cannot name another's flow.
 * edge_flow_token: 0 or -1 (<out> too small). edge_flow_parse: 0 and the flow, or -1
 * for anything not made by edge_flow_token with the same key.
 */
struct edge_flow {
    enum tp_proto proto;
    uint64_t conn_id;               /* stream connection, 0 for UDP */
    struct tp_addr addr;            /* the peer address (UDP destination) */
};
int edge_flow_token(const unsigned char key[32], const struct edge_flow *f, char *out, size_t outlen);
int edge_flow_parse(const unsigned char key[32], const char *token, struct edge_flow *out);

/*
 * Topology hiding: <plain> (at most EDGE_TH_MAX bytes) sealed with AES-256-GCM under
 * <key>, <aad> as associated data, into <out> as base64url (IV, ciphertext, tag), or
 * opened back. The IV is synthetic (an HMAC of <aad> and <plain>): the same input seals
 * to the same blob. 0, or -1 (too long, <out> too small, forged or damaged blob).
 */
#define EDGE_TH_MAX 1500
#define EDGE_TH_PARAM "th"
int edge_th_seal(const unsigned char key[32], const char *aad, const char *plain, char *out, size_t outlen);
int edge_th_open(const unsigned char key[32], const char *aad, const char *blob, char *out, size_t outlen);

/* The user part of the URI of the first Route header line of the raw message <buf,len>
 * into <out>: 0, or -1 when there is no Route or its URI has no user part. */
int edge_raw_first_route_user(const char *buf, size_t len, char *out, size_t outlen);

/* Calls <fn>(<uri>, <arg>) for each Route URI of the raw message <buf,len>, in order
 * (name-addr form, <...> contents; at most 32). <uri> is valid during the call only.
 * Returns the number of URIs seen. */
typedef void edge_route_fn(const char *uri, void *arg);
int edge_raw_routes(const char *buf, size_t len, edge_route_fn *fn, void *arg);

#endif
