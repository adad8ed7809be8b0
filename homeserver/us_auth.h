/*
 * us_auth: the authentication stage of User Services (design.md §3, docs/internals/auth.md).
 *
 * Digest authentication (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760) of requests from
 * client connections against the directory cache (users looked up as user@realm, where
 * the digest username is the user part and the realm is our domain):
 *   - REGISTER is challenged with 401 / WWW-Authenticate; with mode "all" every other
 *     request (ACK and CANCEL never) with 407 / Proxy-Authenticate;
 *   - two challenges, SHA-256 first, then MD5 (RFC 8760 §2.4), each with its own nonce
 *     (stateless, signed with a per-process secret bound to the server name);
 *   - expired nonce with a right response: stale=true (RFC 2617 §3.2.1);
 *   - unknown user: 404 for REGISTER, 403 otherwise; disabled user: 403;
 *   - wrong password: a new challenge; the third consecutive failure of one user from
 *     one source address within a minute, and any attempt while that lasts: 403;
 *   - the digest uri must be the Request-URI (RFC 2617 §3.2.2.5, else 400), and the
 *     authenticated user must be the To (REGISTER) or the From (other requests) (403).
 * Requests from trusted connections (px_req_is_trusted) are exempt.
 *
 * Loop thread only. The directory is borrowed and must outlive the stage.
 */
#ifndef PARLEY_HS_US_AUTH_H
#define PARLEY_HS_US_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "directory/dir.h"
#include "proxy/px.h"

struct metrics;
struct us_auth;

enum us_auth_mode {
    US_AUTH_OFF = 0,       /* no authentication */
    US_AUTH_REGISTER,      /* REGISTER only */
    US_AUTH_ALL,           /* every request but ACK and CANCEL */
};

/* "off", "register", "all" -> <out>. 0 or -1. */
int us_auth_mode_parse(const char *s, enum us_auth_mode *out);

struct us_auth_opts {
    enum us_auth_mode mode;
    const char *realm;            /* our domain: the realm we challenge with */
    const char *server_name;      /* bound into our nonces (a nonce of another server is BAD) */
    uint64_t nonce_lifetime_s;    /* 300 */
    unsigned max_failures;        /* consecutive wrong responses before 403 (3) */
    unsigned failure_window_s;    /* within this many seconds (60) */
    bool offer_sha256;            /* challenge with SHA-256 before MD5 (true) */
    struct dir *dir;              /* user records (borrowed) */
    struct px *px;                /* our addresses, for the digest uri check (borrowed) */
    /* Called for each failed authentication (wrong response, unknown user) with the
     * request's source address, e.g. us_flood_auth_failed_cb; may be NULL. */
    void (*on_failure)(const struct tp_addr *src, void *arg);
    void *on_failure_arg;
    /* Authenticate requests from trusted connections too (the front-end does, for what the
     * edge relays: the edge's MTLS connection is trusted but its users are not). */
    bool check_trusted;
};

/* Creates the stage; registers its counters in <m> (may be NULL). Strings are copied.
 * NULL on allocation or random-generator failure. */
struct us_auth *us_auth_new(const struct us_auth_opts *opts, struct metrics *m);
/* Wipes the nonce secret and frees. Accepts NULL. */
void us_auth_free(struct us_auth *ua);

/*
 * Runs the stage on <req>. Returns true when the request may go on (authenticated, or
 * not subject to authentication); false when the stage answered it (401/407 challenge,
 * 400, 403, 404). When <identity> is not NULL and the request was authenticated, it
 * receives "user@realm" (valid until the next call); else "".
 */
bool us_auth_stage(struct us_auth *ua, struct px_req *req, const char **identity);

struct us_auth_stats {
    uint64_t ok;                /* requests authenticated */
    uint64_t challenges;        /* 401/407 sent */
    uint64_t failures;          /* 400/403/404 sent by the stage */
};
void us_auth_stats_get(const struct us_auth *ua, struct us_auth_stats *out);

#endif
