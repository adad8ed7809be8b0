/*
 * px_trust: connection trust for the proxy layer (design §2 "Connection classes" and
 * "Protocol stack" step 3, docs/internals/proxy.md).
 *
 *  - TLS settings (tls-cert/-key/-ca) and SIGHUP reload of the certificates;
 *  - classes: a connection is `server` when its TLS peer certificate verified, lists the
 *    serverAuth EKU and names (CN or SAN dNSName) an internal server of the directory;
 *    `trusted` when it arrives on a trusted listener from one of that listener's allowed
 *    source addresses, or from an allow_from address of a static route marked
 *    treat_as_server; `client` otherwise. Stream connections are classified when they
 *    open (server) or at their first message (trusted); UDP per message;
 *  - client requests: Route and Record-Route removed before anything else; at most
 *    max-client-transactions server transactions outstanding per connection (UDP: per
 *    source address), the next ones get 503 with Retry-After;
 *  - destination authorization: a request forwarded to where the CLIENT said (its
 *    Request-URI) may go only to this server's own names and addresses, its domain, the
 *    pool's servers, or through a static route — never to another IP address or host
 *    (no open relay): 403 instead;
 *  - static routes (the directory's /parley/routes/ keys): "tel", "domain:<name>",
 *    "prefix:<digits>"; a phone number with no route gets 404.
 *
 * One struct px_trust per struct px (px_set_trust). Loop thread only.
 */
#ifndef PARLEY_PROXY_PX_TRUST_H
#define PARLEY_PROXY_PX_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/px.h"
#include "transport/tp.h"
#include "util/cfg.h"

struct admin_http;
struct dir;
struct dir_route;
struct metrics;
struct px_trust;

/* Per-request trust state, embedded in struct px_req (px_req_trust). Zero = client. */
struct px_trust_req {
    enum tp_class cls;           /* class of the connection / source the request came from */
    bool counted;                /* holds one slot of the client's outstanding-transaction limit */
    bool dialog_via_us;          /* client in-dialog request whose top Route was ours (we
                                  * Record-Routed the dialog): its Request-URI is the remote
                                  * target the dialog was set up with, allowed as destination */
};

/* Settings (one cfg table, reusable by every role binary). Strings owned by the cfg. */
struct px_trust_settings {
    char *tls_cert;              /* PEM certificate chain; set = TLS configured */
    char *tls_key;               /* its key (default: in tls_cert) */
    char *tls_ca;                /* CAs peers' certificates must chain to */
    long long max_client_tx;     /* outstanding server transactions per client connection */
    long long retry_after_s;     /* Retry-After of the 503 for a throttled client */
    struct cfg_list trusted_listener; /* "proto:host:port=allow1,allow2" */
};

/* Registers the rows (section "trust") storing into <s> and a check that validates
 * the trusted-listener specs and the TLS file combination. 0 or -1. */
int px_trust_cfg_register(struct cfg *cfg, struct px_trust_settings *s);

/*
 * Creates the trust layer of <px>: configures TLS when <set>->tls_cert is set, installs
 * the connection-open hook and attaches itself (px_set_trust). <set> is borrowed and
 * read live (max_client_tx is reloadable). Returns NULL with <err> filled.
 */
struct px_trust *px_trust_new(struct px *px, const struct px_trust_settings *set, char *err,
                              size_t errlen);
/* Detaches from the px (hooks removed) and frees. Accepts NULL. */
void px_trust_free(struct px_trust *t);
/* Opens the trusted listeners (each is its own listener: do not repeat it in --listen).
 * 0, or -1 with <err>. */
int px_trust_listen(struct px_trust *t, char *err, size_t errlen);
/* The directory for server subjects and static routes (borrowed; NULL = none: no server
 * class, no static routes). May be set after px_trust_new. */
void px_trust_set_dir(struct px_trust *t, struct dir *d);
/* SIGHUP: re-reads the certificate files (open connections keep theirs). 0 = reloaded or
 * TLS not configured; -1 with <err> and the old certificates kept. */
int px_trust_reload_tls(struct px_trust *t, char *err, size_t errlen);
/* Adds the trust series to /metrics and GET /api/connections to <admin>. Either may be NULL. */
void px_trust_register_admin(struct px_trust *t, struct admin_http *admin, struct metrics *m);

/* ---- hooks called by px.c ---------------------------------------------------------- */

/* A new request: classifies it, strips Route/Record-Route of clients, applies the
 * outstanding-transaction limit. Returns 0 to go on, 1 when it answered (503). */
int px_trust_on_request(struct px_trust *t, struct px_req *r);
/* The request is done (freed): gives its throttle slot back. */
void px_trust_req_done(struct px_trust *t, struct px_req *r);
/* PX_ROUTE: adds the target(s) — a static route's next hop, or the Request-URI (marked
 * client_supplied for a client's request). Returns 0 to forward, 1 when it answered
 * (404 for a phone number with no static route). */
int px_trust_route(struct px_trust *t, struct px_req *r);
/* May a client-supplied destination <host>:<port> be used? Ours (listener address with
 * its port, our domain or advertised name), a pool server's address or a static route's
 * next hop: yes. Counts and logs a refusal. */
bool px_trust_dest_allowed(struct px_trust *t, struct px_req *r, const char *host, uint16_t port);
/* May this ACK for a 2xx (stateless, no transaction) be forwarded? A client's ACK must
 * be loose-routed to us (its top Route ours). Called before Route pre-processing. */
bool px_trust_ack_allowed(struct px_trust *t, const struct sip_msg *ack, const struct tp_rx *rx);
/* The class of the connection or source <rx> came from (client, trusted, server). */
enum tp_class px_trust_rx_class(struct px_trust *t, const struct tp_rx *rx);

/* ---- pure helpers (exported for the unit tests) ------------------------------------ */

#define PX_TRUST_MAX_ALLOW 16

/* One trusted listener: "udp:127.0.0.1:5070=127.0.0.1,10.0.0.0/8". */
struct px_trusted_listener {
    char spec[128];              /* the listener part, for px_listen() */
    enum tp_proto proto;
    struct tp_addr addr;
    char allow[PX_TRUST_MAX_ALLOW][64];   /* addresses or CIDR prefixes */
    size_t n_allow;
};

/* Parses a trusted-listener spec. An explicit port and at least one allowed address (IP
 * or IP/prefix) are required. 0, or -1 with <err>. */
int px_trusted_listener_parse(const char *spec, struct px_trusted_listener *out, char *err,
                              size_t errlen);
/* Does <a>'s host match one of <allow>[<n>] ("10.1.2.3", "::1", "10.0.0.0/8")? */
bool px_trust_addr_allowed(const char *const *allow, size_t n, const struct tp_addr *a);
/*
 * Does static route <r> match Request-URI <u>? Returns -1 for no, else a score: a
 * longer "prefix:" beats a shorter one, any prefix beats "domain:", which beats "tel".
 */
int px_trust_route_score(const struct dir_route *r, const osip_uri_t *u);
/* The phone number of a tel: URI or a sip: URI with user=phone, visual separators and
 * the leading '+' removed, into <out>. False when <u> is not a phone URI. */
bool px_trust_phone_number(const osip_uri_t *u, char *out, size_t outlen);

/* Per-source-address counters of outstanding transactions (UDP clients). */
struct px_throttle;
/* <max_entries> bounds the table: beyond it every new source is refused. */
struct px_throttle *px_throttle_new(size_t max_entries);
void px_throttle_free(struct px_throttle *th);
/* Takes a slot for <a> if it has fewer than <limit>: true; else false. */
bool px_throttle_acquire(struct px_throttle *th, const struct tp_addr *a, unsigned limit);
/* Gives one slot of <a> back (an entry at zero is removed). */
void px_throttle_release(struct px_throttle *th, const struct tp_addr *a);
/* Outstanding count of <a>, and number of sources tracked. */
unsigned px_throttle_count(const struct px_throttle *th, const struct tp_addr *a);
size_t px_throttle_sources(const struct px_throttle *th);

#endif
