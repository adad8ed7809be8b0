/*
 * auth_parse: digest credentials parser (RFC 3261 §25.1 "credentials",
 * RFC 2617 §3.2.2, RFC 7616 §3.4). See auth_parse.h for the contract.
 */
#include "auth/auth_parse.h"

#include <string.h>

/* Whole header values longer than this are refused before looking at them. */
#define AUTH_HVALUE_MAX 8192

/* Bits of the parameters we know, to refuse duplicates. */
enum {
    F_USERNAME = 1u << 0,
    F_REALM = 1u << 1,
    F_NONCE = 1u << 2,
    F_URI = 1u << 3,
    F_RESPONSE = 1u << 4,
    F_ALGORITHM = 1u << 5,
    F_CNONCE = 1u << 6,
    F_OPAQUE = 1u << 7,
    F_QOP = 1u << 8,
    F_NC = 1u << 9,
};

struct cursor {
    const unsigned char *p;
    const unsigned char *end;
};

/* RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~") */
static bool
is_token_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-.!%*_+`'~", c) != NULL;
}

static bool
is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static bool
is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned
hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10u;
    return c - 'A' + 10u;
}

/*
 * Length of a line fold at <p> (CRLF or LF followed by SP/HTAB), 0 if none.
 * RFC 3261 §25.1: LWS = [*WSP CRLF] 1*WSP. A bare LF is accepted too.
 */
static size_t
fold_len(const struct cursor *cur)
{
    const unsigned char *p = cur->p;
    size_t n = 0;

    if (p < cur->end && *p == '\r') {
        p++;
        n++;
    }
    if (p < cur->end && *p == '\n') {
        p++;
        n++;
    } else {
        return 0;
    }
    if (p < cur->end && is_wsp(*p))
        return n;
    return 0;
}

/* Skips linear white space; returns true if any was skipped. */
static bool
skip_lws(struct cursor *cur)
{
    const unsigned char *start = cur->p;

    for (;;) {
        size_t f;

        if (cur->p < cur->end && is_wsp(*cur->p)) {
            cur->p++;
            continue;
        }
        f = fold_len(cur);
        if (f == 0)
            break;
        cur->p += f;
    }
    return cur->p != start;
}

static bool
ieq(const unsigned char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);

    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = a[i], y = (unsigned char)b[i];

        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

static size_t
read_token(struct cursor *cur)
{
    const unsigned char *start = cur->p;

    while (cur->p < cur->end && is_token_char(*cur->p))
        cur->p++;
    return (size_t)(cur->p - start);
}

/*
 * Reads a token or a quoted-string value into <buf> (capacity AUTH_FIELD_MAX + 1),
 * unescaping quoted-pairs (RFC 3261 §25.1 quoted-pair). Control characters other
 * than HTAB (and a CRLF fold, which becomes the following white space) are refused,
 * so the result never holds a NUL or a bare CR/LF. Returns 0 or -1 with *err.
 */
static int
read_value(struct cursor *cur, char *buf, bool *quoted, const char **err)
{
    size_t n = 0;

    *quoted = false;
    if (cur->p >= cur->end) {
        *err = "missing parameter value";
        return -1;
    }
    if (*cur->p != '"') {
        size_t tl;
        const unsigned char *start = cur->p;

        tl = read_token(cur);
        if (tl == 0) {
            *err = "invalid character in parameter value";
            return -1;
        }
        if (tl > AUTH_FIELD_MAX) {
            *err = "parameter value too long";
            return -1;
        }
        memcpy(buf, start, tl);
        buf[tl] = '\0';
        return 0;
    }
    *quoted = true;
    cur->p++;
    for (;;) {
        unsigned char c;
        size_t f;

        if (cur->p >= cur->end) {
            *err = "unterminated quoted string";
            return -1;
        }
        c = *cur->p;
        if (c == '"') {
            cur->p++;
            break;
        }
        if (c == '\\') {
            if (cur->end - cur->p < 2) {
                *err = "unterminated quoted string";
                return -1;
            }
            c = cur->p[1];
            /* quoted-pair excludes CR and LF; we also refuse NUL and other controls */
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                *err = "control character in quoted string";
                return -1;
            }
            cur->p += 2;
        } else if ((f = fold_len(cur)) != 0) {
            cur->p += f;
            continue;       /* the WSP after the fold is copied by the next pass */
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            *err = "control character in quoted string";
            return -1;
        } else {
            cur->p++;
        }
        if (n >= AUTH_FIELD_MAX) {
            *err = "parameter value too long";
            return -1;
        }
        buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return 0;
}

static int
set_algorithm(struct auth_credentials *out, const char *v, const char **err)
{
    size_t n = strlen(v);

    if (ieq((const unsigned char *)v, n, "MD5")) {
        out->algorithm = AUTH_ALG_MD5;
    } else if (ieq((const unsigned char *)v, n, "SHA-256")) {
        out->algorithm = AUTH_ALG_SHA256;
    } else if (ieq((const unsigned char *)v, n, "MD5-sess") ||
               ieq((const unsigned char *)v, n, "SHA-256-sess")) {
        *err = "unsupported algorithm (session variants are not supported)";
        return -1;
    } else {
        *err = "unsupported algorithm";
        return -1;
    }
    out->has_algorithm = true;
    return 0;
}

static int
set_nc(struct auth_credentials *out, const char *v, const char **err)
{
    uint32_t nc = 0;

    /* RFC 2617 §3.2.2: nonce-count = "nc" "=" 8LHEX */
    if (strlen(v) != 8) {
        *err = "nc must be 8 hex digits";
        return -1;
    }
    for (size_t i = 0; i < 8; i++) {
        if (!is_hex((unsigned char)v[i])) {
            *err = "nc must be 8 hex digits";
            return -1;
        }
        nc = (nc << 4) | hex_val((unsigned char)v[i]);
    }
    memcpy(out->nc_str, v, 9);
    out->nc = nc;
    out->has_nc = true;
    return 0;
}

static int
set_response(struct auth_credentials *out, const char *v, const char **err)
{
    size_t n = strlen(v);

    for (size_t i = 0; i < n; i++) {
        char c = v[i];

        if (!is_hex((unsigned char)c)) {
            *err = "response is not hexadecimal";
            return -1;
        }
        out->response[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    out->response[n] = '\0';
    return 0;
}

/* Stores one parameter. <name> is not NUL-terminated. */
static int
store_param(struct auth_credentials *out, unsigned *seen, const unsigned char *name,
            size_t nlen, const char *v, const char **err)
{
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {
        {"username", F_USERNAME}, {"realm", F_REALM},       {"nonce", F_NONCE},
        {"uri", F_URI},           {"response", F_RESPONSE}, {"algorithm", F_ALGORITHM},
        {"cnonce", F_CNONCE},     {"opaque", F_OPAQUE},     {"qop", F_QOP},
        {"nc", F_NC},
    };
    unsigned bit = 0;

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (ieq(name, nlen, known[i].name)) {
            bit = known[i].bit;
            break;
        }
    }
    if (bit == 0)
        return 0;   /* auth-param: unknown extension, ignored (RFC 3261 §25.1) */
    if (*seen & bit) {
        *err = "duplicate parameter";
        return -1;
    }
    *seen |= bit;

    switch (bit) {
    case F_USERNAME:
        memcpy(out->username, v, strlen(v) + 1);
        break;
    case F_REALM:
        memcpy(out->realm, v, strlen(v) + 1);
        break;
    case F_NONCE:
        memcpy(out->nonce, v, strlen(v) + 1);
        break;
    case F_URI:
        memcpy(out->uri, v, strlen(v) + 1);
        break;
    case F_RESPONSE:
        return set_response(out, v, err);
    case F_ALGORITHM:
        return set_algorithm(out, v, err);
    case F_CNONCE:
        memcpy(out->cnonce, v, strlen(v) + 1);
        out->has_cnonce = true;
        break;
    case F_OPAQUE:
        memcpy(out->opaque, v, strlen(v) + 1);
        out->has_opaque = true;
        break;
    case F_QOP:
        /* RFC 2617 §3.2.2: message-qop = "qop" "=" qop-value; only "auth" is offered */
        if (!ieq((const unsigned char *)v, strlen(v), "auth")) {
            *err = "unsupported qop (only auth)";
            return -1;
        }
        out->qop_auth = true;
        break;
    case F_NC:
        return set_nc(out, v, err);
    default:
        break;
    }
    return 0;
}

/* Checks what only the whole set can tell. */
static int
check_complete(const struct auth_credentials *out, unsigned seen, const char **err)
{
    size_t want;

    if (!(seen & F_USERNAME) || out->username[0] == '\0') {
        *err = "missing username";
        return -1;
    }
    if (!(seen & F_REALM)) {
        *err = "missing realm";
        return -1;
    }
    if (!(seen & F_NONCE) || out->nonce[0] == '\0') {
        *err = "missing nonce";
        return -1;
    }
    if (!(seen & F_URI) || out->uri[0] == '\0') {
        *err = "missing uri";
        return -1;
    }
    if (!(seen & F_RESPONSE)) {
        *err = "missing response";
        return -1;
    }
    want = out->algorithm == AUTH_ALG_SHA256 ? 64 : 32;
    if (strlen(out->response) != want) {
        *err = "response has the wrong length for the algorithm";
        return -1;
    }
    /* RFC 2617 §3.2.2: cnonce and nc MUST be sent with qop, MUST NOT without */
    if (out->qop_auth && (!out->has_nc || !out->has_cnonce || out->cnonce[0] == '\0')) {
        *err = "qop=auth without nc or cnonce";
        return -1;
    }
    if (!out->qop_auth && out->has_nc) {
        *err = "nc without qop";
        return -1;
    }
    return 0;
}

int
auth_parse_credentials(const char *hvalue, size_t len, struct auth_credentials *out)
{
    struct cursor cur;
    const unsigned char *scheme;
    size_t slen;
    unsigned seen = 0;
    char val[AUTH_FIELD_MAX + 1];
    const char *err = NULL;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    out->algorithm = AUTH_ALG_MD5;
    if (hvalue == NULL) {
        err = "empty header value";
        goto out;
    }
    if (len > AUTH_HVALUE_MAX) {
        err = "header value too long";
        goto out;
    }
    cur.p = (const unsigned char *)hvalue;
    cur.end = cur.p + len;

    skip_lws(&cur);
    scheme = cur.p;
    slen = read_token(&cur);
    if (slen == 0) {
        err = "missing authentication scheme";
        goto out;
    }
    if (!ieq(scheme, slen, "Digest")) {
        err = "authentication scheme is not Digest";
        goto out;
    }
    if (!skip_lws(&cur) && cur.p < cur.end) {
        err = "missing white space after Digest";
        goto out;
    }

    for (;;) {
        const unsigned char *name;
        size_t nlen;
        bool quoted;

        /* #rule: empty elements and white space around commas are allowed */
        for (;;) {
            skip_lws(&cur);
            if (cur.p < cur.end && *cur.p == ',') {
                cur.p++;
                continue;
            }
            break;
        }
        if (cur.p >= cur.end)
            break;

        name = cur.p;
        nlen = read_token(&cur);
        if (nlen == 0) {
            err = "invalid character where a parameter name was expected";
            goto out;
        }
        skip_lws(&cur);
        if (cur.p >= cur.end || *cur.p != '=') {
            err = "parameter without '='";
            goto out;
        }
        cur.p++;
        skip_lws(&cur);
        if (read_value(&cur, val, &quoted, &err) != 0)
            goto out;
        if (store_param(out, &seen, name, nlen, val, &err) != 0)
            goto out;
        skip_lws(&cur);
        if (cur.p < cur.end && *cur.p != ',') {
            err = "expected ',' between parameters";
            goto out;
        }
    }
    if (check_complete(out, seen, &err) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        out->err = err != NULL ? err : "malformed credentials";
    }
    return rc;
}

const char *
auth_algorithm_name(enum auth_algorithm alg)
{
    return alg == AUTH_ALG_SHA256 ? "SHA-256" : "MD5";
}
