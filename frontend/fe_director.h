/*
 * fe_director: the front-end's director stage (design.md §1-2, docs/internals/pool.md).
 *
 * Holds no registrations. For each request it decides where the user's home server is
 * and either answers or forwards:
 *  - REGISTER from an inside client, redirect mode (default): digest authentication,
 *    then 302 Moved Temporarily with Contact
 *    <sip:<home host>:<port>;transport=<t>;maddr=<home host>>; unknown user 404,
 *    disabled 403, home server not announced 480;
 *  - REGISTER from an inside client, proxy mode (listener or User-Agent pattern, for
 *    clients that do not follow a 3xx to REGISTER, e.g. baresip): forwarded to the home
 *    server with our Path (RFC 3327) after digest authentication here;
 *  - requests from the edge (an MTLS peer whose certificate subject is a directory server
 *    of role edge), REGISTER included: forwarded to the home server of the Request-URI
 *    user (REGISTER: the To user) with our Path on REGISTER; px Record-Routes the rest;
 *    a remaining Route must name a directory server, anything else is refused (no relay);
 *  - other requests from inside clients: to the callee's home server;
 *  - requests from other pool servers, and any request with a remaining Route: the
 *    protocol stack (Route / maddr / Request-URI).
 * Authentication (design §1 "runs User Services authentication"): the front-end runs
 * us_auth on every request of inside clients and of the edge (the edge authenticates
 * nothing, and the home servers trust the front-end's MTLS connection, so they do not
 * challenge what it forwards); us_auth is created with check_trusted because the edge's
 * connection is itself a trusted one. In-dialog requests from the edge are not
 * challenged: the edge admits them only on the flow their dialog was created for.
 *
 * Loop thread only. px, dir and auth are borrowed and outlive the director.
 */
#ifndef PARLEY_FE_DIRECTOR_H
#define PARLEY_FE_DIRECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "directory/dir.h"
#include "proxy/px.h"
#include "us_auth.h"

struct fe_director;

struct fe_director_opts {
    struct px *px;                  /* borrowed */
    struct dir *dir;                /* borrowed */
    struct us_auth *auth;           /* borrowed, made with check_trusted; NULL = none */
    const char *domain;             /* our SIP domain */
    const char *self_uri;           /* our address for Path, "sip:127.0.0.1:5080;transport=tcp" */
    bool proxy_register;            /* true: every inside REGISTER is proxied (register-mode proxy) */
    const char *const *proxy_listen;/* listener specs whose REGISTERs are proxied */
    size_t nproxy_listen;
    const char *const *proxy_ua;    /* fnmatch(3) patterns on User-Agent: proxied */
    size_t nproxy_ua;
};

/* NULL on bad options (logged: an unparsable proxy listener spec) or allocation failure. */
struct fe_director *fe_director_new(const struct fe_director_opts *opts);
void fe_director_free(struct fe_director *fd);

/* The px request handler (px_request_fn) with <arg> = the director. */
enum px_verdict fe_director_handle(struct px_req *req, void *arg);

struct fe_director_stats {
    uint64_t redirects;             /* 302 to a home server */
    uint64_t proxied_registers;     /* inside REGISTERs proxied (proxy mode) */
    uint64_t from_edge;             /* requests from the edge forwarded to a home server */
    uint64_t to_home;               /* inside requests forwarded to the callee's home server */
    uint64_t refused;               /* 403/404/480 answered by the director */
};
void fe_director_stats_get(const struct fe_director *fd, struct fe_director_stats *out);

/*
 * Helpers (exposed for tests). <address> is a server's announced SIP URI,
 * "sip:127.0.0.1:5070;transport=udp".
 *  fe_redirect_contact: "<sip:127.0.0.1:5070;transport=udp;maddr=127.0.0.1>"
 *  fe_route_uri:        "<sip:127.0.0.1:5070;transport=udp;lr>"
 * 0, or -1 when <address> is not a usable SIP URI or <out> is too small.
 */
int fe_redirect_contact(const char *address, char *out, size_t outlen);
int fe_route_uri(const char *address, char *out, size_t outlen);
/* Does <ua> match one of the fnmatch patterns (case-insensitive)? */
bool fe_ua_matches(const char *const *patterns, size_t n, const char *ua);

#endif
