/*
 * auth_digest: the digest computations, the challenge, and the verification that
 * ties parse + nonce + nonce-count + response together (RFC 3261 §22,
 * RFC 2617 §3.2, RFC 7616 §3.4, RFC 8760 §2 for SHA-256).
 *
 * Typical server use (User Services, design.md §3):
 *   - no or bad credentials: send two challenges, SHA-256 first, then MD5
 *     (RFC 8760 §2.4), each built by auth_build_challenge with a fresh nonce;
 *   - credentials: auth_parse_credentials, look the user up by username@realm,
 *     pick its HA1 for c->algorithm, then auth_verify.
 */
#ifndef PARLEY_AUTH_DIGEST_H
#define PARLEY_AUTH_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth_nonce.h"
#include "auth/auth_parse.h"

/* Hex digest size including the NUL, large enough for every algorithm. */
#define AUTH_HEX_SIZE 65

/* Hex characters of a digest: 32 (MD5) or 64 (SHA-256). */
size_t auth_hex_len(enum auth_algorithm alg);

/*
 * HA1 = H(username ":" realm ":" password) as lowercase hex (RFC 2617 §3.2.2.2,
 * RFC 7616 §3.4.2) into <out> (at least AUTH_HEX_SIZE bytes). Returns 0 or -1.
 */
int auth_ha1(enum auth_algorithm alg, const char *user, const char *realm, const char *password,
             char *out, size_t out_size);

/*
 * request-digest (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1) as lowercase hex into <out>:
 *   qop = "auth":  H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))
 *   qop = NULL:    H(HA1 ":" nonce ":" H(method ":" uri))     (RFC 2069 compatibility)
 * <nc> and <cnonce> are ignored when <qop> is NULL. Any other qop is refused (-1).
 * Returns 0 or -1.
 */
int auth_compute_response(enum auth_algorithm alg, const char *ha1_hex, const char *method,
                          const char *uri, const char *nonce, const char *nc, const char *cnonce,
                          const char *qop, char *out, size_t out_size);

/* Compares two NUL-terminated strings in time independent of where they differ. */
bool auth_equal_ct(const char *a, const char *b);

/*
 * Builds a WWW-Authenticate / Proxy-Authenticate value (RFC 3261 §22.1,
 * RFC 2617 §3.2.1) into <out>:
 *   Digest realm="<realm>", nonce="<nonce>"[, opaque="<opaque>"], algorithm=<alg>,
 *   qop="auth"[, stale=true]
 * <opaque> may be NULL. Quotes and backslashes in the strings are escaped; CR, LF
 * and other control characters are refused. Returns 0, or -1 if a string is
 * unusable or <out_size> is too small.
 */
int auth_build_challenge(const char *realm, const char *nonce, enum auth_algorithm alg,
                         bool stale, const char *opaque, char *out, size_t out_size);

/* Server-side state and policy auth_verify needs. Borrowed for the call. */
struct auth_verify_params {
    const char *realm;                 /* the realm we challenge with */
    const struct auth_secret *secret;  /* signs our nonces */
    uint64_t now_s;                    /* wall clock, seconds */
    uint64_t nonce_lifetime_s;         /* e.g. 300 */
    struct auth_nc_table *nc_table;    /* replay protection for qop=auth; may be NULL (off) */
    bool allow_no_qop;                 /* accept RFC 2069 responses (no qop, no nc) */
};

enum auth_verdict {
    AUTH_OK = 0,            /* authenticated */
    AUTH_STALE,             /* right password, expired or forgotten nonce: re-challenge stale=true */
    AUTH_BAD_NONCE,         /* not our nonce: re-challenge */
    AUTH_REPLAY,            /* nc not increasing: refuse (re-challenge) */
    AUTH_WRONG_RESPONSE,    /* wrong password (or user): re-challenge / 403 after retries */
    AUTH_INVALID,           /* realm mismatch, bad ha1, qop policy: 400 or re-challenge */
};

/*
 * Verifies parsed credentials <c> of a request with <method>, using the stored
 * <ha1_hex> for c->algorithm. Checks, in order: realm, uri, qop policy, HA1 shape,
 * the nonce MAC, the response (constant time), nonce expiry, then nc replay (only
 * with qop=auth; recorded only when the response is right). <reason>, if not
 * NULL, receives a static one-line explanation. Returns an enum auth_verdict.
 * The caller may in addition compare c->uri with the Request-URI (RFC 2617 §3.2.2.5).
 */
enum auth_verdict auth_verify(const struct auth_credentials *c, const char *method,
                              const char *ha1_hex, const struct auth_verify_params *p,
                              const char **reason);

#endif
