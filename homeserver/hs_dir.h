/*
 * hs_dir: the home server's glue to the directory (design.md §5,
 * docs/internals/directory.md).
 *
 *  - opens the directory (etcd + disk copy <data_dir>/directory.db) and announces this
 *    server under /parley/servers/<name> (role homeserver) with a lease;
 *  - REGISTER policy: a user unknown to the directory gets 404, a disabled one 403, a
 *    user homed on another server 301 with that server's address (Contact carries
 *    maddr=, as the front-end's 302 does), or 480 when that server is not announced;
 *  - follows user changes: a user removed, disabled or moved to another home loses its
 *    bindings here (location table and store), so calls to it stop at once;
 *  - /healthz "directory" (ready = a cache from etcd or from disk; an etcd outage alone
 *    is not unhealthy, the server keeps serving from its cache) and /metrics.
 *
 * Loop thread only.
 */
#ifndef PARLEY_HS_HS_DIR_H
#define PARLEY_HS_HS_DIR_H

#include <stdbool.h>

#include "directory/dir.h"
#include "proxy/px.h"
#include "store/store.h"
#include "us_location.h"

struct admin_http;
struct event_base;
struct metrics;
struct hs_dir;

struct hs_dir_opts {
    const char *endpoints;       /* etcd client URLs, CSV (non-empty) */
    const char *data_dir;        /* the disk copy goes to <data_dir>/directory.db */
    const char *name;            /* this server's name (non-empty) */
    const char *address;         /* announced SIP URI, "sip:127.0.0.1:5060;transport=udp" */
    const char *admin;           /* announced admin URL or NULL */
    const char *cert_subject;    /* announced TLS certificate subject (px_trust server class) or NULL */
    unsigned lease_ttl_s;        /* 0 = DIR_DEFAULT_LEASE_TTL_S */
    const char *domain;          /* our SIP domain */
    struct us_location *loc;     /* bindings to drop (borrowed) */
    struct store *st;            /* where they are stored (borrowed) */
};

/* Opens the directory and starts syncing/announcing. Strings are copied. NULL on error
 * (logged). */
struct hs_dir *hs_dir_new(struct event_base *base, const struct hs_dir_opts *opts);
/* Frees without revoking the lease (it expires after its TTL). Accepts NULL. */
void hs_dir_free(struct hs_dir *hd);
/* Clean stop: revokes the lease (the announcement disappears now), running <base> until
 * that is done (bounded, ~3 s), then frees. Accepts NULL. */
void hs_dir_shutdown(struct hs_dir *hd, struct event_base *base);

struct dir *hs_dir_dir(struct hs_dir *hd);

/*
 * REGISTER policy for the AOR in To (see above). Returns PX_ROUTE when the registrar
 * may handle it, PX_ANSWERED when it answered (404/403/301/480).
 */
enum px_verdict hs_dir_check_register(struct hs_dir *hd, struct px_req *req);

/*
 * Home servers route to each other (design §1, as LCS did): a request for <aor> (the
 * Request-URI's user, in our domain) whose user the directory homes on another server
 * is proxied straight to that server's announced SIP address (its MTLS listener in a
 * pool), Request-URI unchanged, with a loose Route to it; px Record-Routes dialogs as
 * for any other (RFC 5658 double entry when the transports differ). The receiving home
 * server classes the connection as server (its certificate subject is in the
 * directory) and routes to the user's endpoints. Returns true with <*v> when it
 * forwarded (PX_FORWARD) or answered (480: that server is not announced, or announces
 * an unusable address); false when the user is unknown, disabled, homed here, or <hd>
 * is NULL: the caller handles it locally.
 */
bool hs_dir_route_home(struct hs_dir *hd, struct px_req *req, const char *aor, enum px_verdict *v);

/* Adds the "directory" health check and the directory series to /metrics. Either may
 * be NULL. */
void hs_dir_register_admin(struct hs_dir *hd, struct admin_http *admin, struct metrics *m);

/* "sip:<host>:<port>;transport=<proto>" of a listener spec "proto:host:port" (the
 * announced address), with <host> replaced by <advertise> when set. 0 or -1. */
int hs_dir_listener_uri(const char *spec, const char *advertise, char *out, size_t outlen);

#endif
