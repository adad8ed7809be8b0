/*
 * auth_parse: the Authorization / Proxy-Authorization header value of SIP digest
 * authentication (RFC 3261 §22.4 and §25.1 "credentials", RFC 2617 §3.2.2,
 * RFC 7616 §3.4, RFC 8760 for SHA-256).
 *
 * Works on the header VALUE only (what follows "Authorization:"), so it does not
 * depend on libosip2. The parser is written for hostile input: every field is
 * bounded, every byte is checked, it never reads past <len> and never allocates.
 */
#ifndef PARLEY_AUTH_PARSE_H
#define PARLEY_AUTH_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest accepted value of any single field (after unescaping), in bytes. */
#define AUTH_FIELD_MAX 256

/* Digest algorithms we accept (RFC 8760 §2). The "-sess" variants are refused. */
enum auth_algorithm {
    AUTH_ALG_MD5 = 0,
    AUTH_ALG_SHA256,
};

/*
 * Parsed digest credentials. Strings are NUL-terminated copies (quoted-pairs
 * unescaped). A field the client did not send is "" and its has_* flag is false.
 * Invariants after a successful parse: username, realm, nonce, uri and response
 * are present; response is lowercase-comparable hex of the algorithm's length;
 * qop_auth implies has_nc and cnonce present.
 */
struct auth_credentials {
    char username[AUTH_FIELD_MAX + 1];
    char realm[AUTH_FIELD_MAX + 1];
    char nonce[AUTH_FIELD_MAX + 1];
    char uri[AUTH_FIELD_MAX + 1];
    char response[AUTH_FIELD_MAX + 1];
    char cnonce[AUTH_FIELD_MAX + 1];
    char opaque[AUTH_FIELD_MAX + 1];
    char nc_str[9];                 /* the 8 hex digits as sent (they enter the digest) */
    uint32_t nc;                    /* nonce-count value, valid when has_nc */
    enum auth_algorithm algorithm;  /* MD5 when the client sent no algorithm (RFC 2617 §3.2.2) */
    bool has_algorithm;
    bool has_opaque;
    bool has_cnonce;
    bool has_nc;
    bool qop_auth;                  /* qop=auth was sent; false = RFC 2069 compatibility mode */
    const char *err;                /* static reason after a failed parse, else NULL */
};

/*
 * Parses the credentials in <hvalue> (<len> bytes, need not be NUL-terminated)
 * into <out>. Accepts the "Digest" scheme (case-insensitive), quoted strings with
 * quoted-pairs, tokens, linear white space (SP, HTAB, CRLF folding) and empty list
 * elements wherever RFC 3261 §25.1 / RFC 7230 §7 allow them. Unknown parameters are
 * ignored; a parameter sent twice, an over-long field, a missing mandatory field,
 * qop other than "auth", or an algorithm other than MD5/SHA-256 makes it fail.
 * Returns 0, or -1 with out->err set to a static one-line reason.
 */
int auth_parse_credentials(const char *hvalue, size_t len, struct auth_credentials *out);

/* "MD5" / "SHA-256". */
const char *auth_algorithm_name(enum auth_algorithm alg);

#endif
