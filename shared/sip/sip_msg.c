#define LOG_MODULE "sip"
#include "sip/sip_msg.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "sip/sip_raw.h"
#include "util/hash.h"
#include "util/log.h"

/* ------------------------------------------------------------------ init */

__attribute__((format(printf, 4, 0))) static void
osip_trace_cb(const char *file, int line, osip_trace_level_t lvl, const char *fmt, va_list ap)
{
    char buf[512];

    if (!log_enabled(LOG_DEBUG))
        return;
    vsnprintf(buf, sizeof buf, fmt, ap);
    log_debug("osip %s:%d: %s", file, line, buf);
}

static uint64_t rng_state;
static void char_class_init(void);

void
sip_init(void)
{
    static bool done;

    if (done)
        return;
    done = true;
    parser_init();
    char_class_init();
    /* Route osip's ERROR/WARNING lines to our logger instead of stdout (dependencies.md §2.1). */
    osip_trace_initialize_func(OSIP_WARNING, osip_trace_cb);
    if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state)
        rng_state = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&rng_state;
    rng_state |= 1;
}

void
sip_limits_default(struct sip_limits *lim)
{
    lim->max_msg_size = 65536;
    lim->max_headers = 256;
    lim->partial_responses = false;
}

/* xorshift64*: fast, good enough for branches and tags (not for secrets). */
static uint64_t
rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* ------------------------------------------------------------------ methods */

static const char *const method_names[] = {
    [SIP_UNKNOWN] = "UNKNOWN", [SIP_INVITE] = "INVITE",       [SIP_ACK] = "ACK",
    [SIP_BYE] = "BYE",         [SIP_CANCEL] = "CANCEL",       [SIP_REGISTER] = "REGISTER",
    [SIP_OPTIONS] = "OPTIONS", [SIP_MESSAGE] = "MESSAGE",     [SIP_INFO] = "INFO",
    [SIP_SUBSCRIBE] = "SUBSCRIBE", [SIP_NOTIFY] = "NOTIFY",   [SIP_PUBLISH] = "PUBLISH",
    [SIP_SERVICE] = "SERVICE", [SIP_PRACK] = "PRACK",         [SIP_UPDATE] = "UPDATE",
    [SIP_REFER] = "REFER",
};

enum sip_method
sip_method_from_str(const char *s)
{
    if (s == NULL)
        return SIP_UNKNOWN;
    /* Methods are case-sensitive (RFC 3261 §7.1). */
    for (unsigned i = 1; i < sizeof method_names / sizeof method_names[0]; i++)
        if (strcmp(s, method_names[i]) == 0)
            return (enum sip_method)i;
    return SIP_UNKNOWN;
}

const char *
sip_method_name(enum sip_method m)
{
    if ((unsigned)m >= sizeof method_names / sizeof method_names[0])
        return "UNKNOWN";
    return method_names[m];
}

const char *
sip_msg_method_str(const struct sip_msg *msg)
{
    if (msg->request)
        return msg->osip->sip_method;
    return msg->osip->cseq ? msg->osip->cseq->method : "";
}

/* ------------------------------------------------------------------ parse */

__attribute__((format(printf, 3, 4))) static void
set_err(struct sip_error *err, int status, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    err->status = status;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof err->reason, fmt, ap);
    va_end(ap);
}

/* Case-insensitive match of a header name at <p> (length <n>) against long/compact forms. */
static bool
hname_is(const char *p, size_t n, const char *longname, char compact)
{
    /* Called for every header line against several names: reject on the first
     * character before measuring anything (<longname> is lower case; for a token
     * character, c | 0x20 lowers a letter and never turns a non-letter into one). */
    if (n == 0)
        return false;
    if (n == 1)
        return compact && ((unsigned char)p[0] | 0x20) == (unsigned char)compact;
    if (((unsigned char)p[0] | 0x20) != (unsigned char)longname[0])
        return false;
    return strlen(longname) == n && strncasecmp(p, longname, n) == 0;
}

/*
 * Scans the header block before osip sees it: counts header lines, finds the end of
 * the headers and the Content-Length value. Returns 0, or -1 with <err> set.
 * <*msg_len> = headers + declared body (UDP extra bytes are discarded, RFC 3261 §18.3);
 * <*head_len> = start line + header section (up to and including the empty line).
 */
static int
prescan(const char *buf, size_t len, const struct sip_limits *lim, struct sip_error *err,
        size_t *msg_len, size_t *head_len)
{
    size_t i = 0, hdr_end = 0;
    unsigned lines = 0;
    long long clen = -1;
    bool first = true;

    while (i < len) {
        const char *line = buf + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t l;

        if (nl == NULL)
            break;
        l = (size_t)(nl - line);
        if (l > 0 && line[l - 1] == '\r')
            l--;
        i = (size_t)(nl - buf) + 1;
        if (l == 0) {
            hdr_end = i;
            break;
        }
        if (first) {
            first = false;
            continue;
        }
        if (line[0] == ' ' || line[0] == '\t')
            continue;   /* folded continuation */
        if (++lines > lim->max_headers) {
            set_err(err, 400, "Too Many Headers");
            return -1;
        }
        const char *colon = memchr(line, ':', l);
        if (colon == NULL)
            continue;   /* osip rejects it; reported below */
        size_t nlen = (size_t)(colon - line);
        while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
            nlen--;
        if (hname_is(line, nlen, "content-length", 'l')) {
            const char *v = colon + 1, *end = line + l;
            long long val = 0;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            if (v == end) {
                set_err(err, 400, "Bad Content-Length");
                return -1;
            }
            for (; v < end && isdigit((unsigned char)*v); v++) {
                val = val * 10 + (*v - '0');
                if (val > (long long)lim->max_msg_size) {
                    set_err(err, 413, "Message Too Large");
                    return -1;
                }
            }
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            if (v != end) {
                set_err(err, 400, "Bad Content-Length");
                return -1;
            }
            if (clen >= 0 && clen != val) {
                set_err(err, 400, "Conflicting Content-Length");
                return -1;
            }
            clen = val;
        }
    }
    if (first) {
        set_err(err, 0, "empty message");
        return -1;
    }
    if (hdr_end == 0) {
        /* No blank line: acceptable over UDP for a message without a body. */
        if (clen > 0) {
            set_err(err, 400, "Missing Header Terminator");
            return -1;
        }
        *msg_len = len;
        *head_len = len;
        return 0;
    }
    *head_len = hdr_end;
    if (clen < 0)
        clen = (long long)(len - hdr_end);   /* UDP without Content-Length: rest of datagram */
    if ((size_t)clen > len - hdr_end) {
        set_err(err, 400, "Content-Length Larger Than Body");
        return -1;
    }
    *msg_len = hdr_end + (size_t)clen;
    return 0;
}

/* ------------------------------------------------------------------ raw checks */

/*
 * What osip accepts too liberally or refuses with no useful status is checked on the
 * raw bytes first: the request line (RFC 3261 §7.1, §25.1), header names, NUL bytes,
 * single-valued headers (§7.3.1), quotes and angle brackets in name-addr headers (§20).
 */

/* Character classes as one table lookup per byte (these run over every header). */
enum { CC_TOKEN = 1, CC_URI = 2 };
static unsigned char char_class[256];

static void
char_class_init(void)
{
    for (int c = 1; c < 256; c++) {
        bool alnum = c < 0x80 && isalnum(c);
        if (alnum || (c < 0x80 && strchr("-.!%*_+`'~", c) != NULL))
            char_class[c] |= CC_TOKEN;   /* token (RFC 3261 §25.1) */
        if (alnum || (c < 0x80 && strchr("-_.!~*'();/?:@&=+$,%[]", c) != NULL))
            char_class[c] |= CC_URI;     /* unreserved / reserved / escaped / brackets (RFC 2732) */
    }
}

static inline bool
is_token_char(unsigned char c)
{
    return (char_class[c] & CC_TOKEN) != 0;
}

static inline bool
is_uri_char(unsigned char c)
{
    return (char_class[c] & CC_URI) != 0;
}

/* Every '%' starts an escape of two hex digits (RFC 3261 §25.1 escaped). */
static bool
escapes_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%')
            continue;
        if (n - i < 3 || !isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]))
            return false;
        i += 2;
    }
    return true;
}

/* hostport = host [":" port], host = hostname / IPv4address / "[" IPv6address "]" (§25.1). */
static bool
hostport_ok(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    unsigned long port = 0;

    if (n == 0)
        return false;
    if (s[0] == '[') {
        bool colon = false;
        for (i = 1; i < n && s[i] != ']'; i++) {
            if (s[i] == ':')
                colon = true;
            else if (!isxdigit((unsigned char)s[i]) && s[i] != '.')
                return false;
        }
        if (i >= n || i == 1 || !colon)
            return false;
        i++;
    } else {
        /* '_' is not in the grammar but common in real host names: tolerated. */
        while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' || s[i] == '_'))
            i++;
        if (i == 0)
            return false;
    }
    if (i == n)
        return true;
    if (s[i] != ':')
        return false;
    for (i++; i < n && isdigit((unsigned char)s[i]); i++) {
        if (++digits > 5)
            return false;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    return digits > 0 && i == n && port <= 65535;
}

/*
 * The Request-URI: 0 when acceptable, else the status it deserves with <*why>:
 * 400 when malformed, 416 when the scheme is not sip, sips or tel (RFC 3261 §16.3
 * step 2, §8.2.2.1; RFC 4475 §3.3.2, §3.3.3).
 */
static int
check_ruri(const char *u, size_t n, const char **why)
{
    size_t i = 1, slen;
    const char *rest, *host, *at, *end;

    if (n == 0 || !isalpha((unsigned char)u[0])) {
        *why = "Bad Request-URI";
        return 400;
    }
    while (i < n && (isalnum((unsigned char)u[i]) || u[i] == '+' || u[i] == '-' || u[i] == '.'))
        i++;
    if (i >= n || u[i] != ':') {
        *why = "Bad Request-URI Scheme";
        return 400;
    }
    slen = i;
    for (size_t k = 0; k < n; k++) {
        if (u[k] == ' ' || u[k] == '\t') {
            *why = "Whitespace In Request-URI";   /* RFC 4475 §3.1.2.8 */
            return 400;
        }
        if (!is_uri_char((unsigned char)u[k])) {
            *why = "Bad Character In Request-URI";
            return 400;
        }
    }
    if (!escapes_ok(u, n)) {
        *why = "Bad Escape In Request-URI";
        return 400;
    }
    rest = u + slen + 1;
    end = u + n;
    if ((slen == 3 && strncasecmp(u, "sip", 3) == 0) || (slen == 4 && strncasecmp(u, "sips", 4) == 0)) {
        at = memchr(rest, '@', (size_t)(end - rest));
        if (at == rest) {
            *why = "Empty User In Request-URI";
            return 400;
        }
        host = at ? at + 1 : rest;
        const char *hp_end = host;
        while (hp_end < end && *hp_end != ';' && *hp_end != '?')
            hp_end++;
        if (!hostport_ok(host, (size_t)(hp_end - host))) {
            *why = "Bad Host In Request-URI";   /* e.g. IPv6 without brackets, RFC 5118 §4.2 */
            return 400;
        }
        if (memchr(hp_end, '?', (size_t)(end - hp_end)) != NULL) {
            *why = "Headers Not Allowed In Request-URI";   /* RFC 3261 §19.1.1 table 1 */
            return 400;
        }
        return 0;
    }
    if (slen == 3 && strncasecmp(u, "tel", 3) == 0)
        return rest < end ? 0 : (*why = "Bad Request-URI", 400);
    *why = "Unsupported URI Scheme";
    return 416;
}

/* Request-Line = Method SP Request-URI SP SIP-Version CRLF (RFC 3261 §7.1, §25.1). */
static int
check_request_line(const char *line, size_t l, struct sip_error *err)
{
    const char *sp1 = memchr(line, ' ', l), *sp2 = line + l, *v, *why = NULL;
    size_t vn;
    int st;

    while (sp2 > line && sp2[-1] != ' ')
        sp2--;
    if (sp1 == NULL || sp2 - 1 == sp1) {
        set_err(err, 400, "Bad Request-Line");
        return -1;
    }
    sp2--;
    /* SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT, case-insensitive (§7.1). */
    v = sp2 + 1;
    vn = (size_t)(line + l - v);
    {
        size_t i = 4, d1 = 0, d2 = 0;
        bool ok = vn > 4 && strncasecmp(v, "SIP/", 4) == 0;
        for (; ok && i < vn && isdigit((unsigned char)v[i]); i++)
            d1++;
        ok = ok && d1 > 0 && i < vn && v[i] == '.';
        for (i++; ok && i < vn && isdigit((unsigned char)v[i]); i++)
            d2++;
        if (!ok || d2 == 0 || i != vn) {
            set_err(err, 400, "Bad SIP-Version");   /* also trailing whitespace, RFC 4475 §3.1.2.10 */
            return -1;
        }
        if (vn != 7 || memcmp(v + 4, "2.0", 3) != 0) {
            set_err(err, 505, "Version Not Supported");   /* RFC 3261 §21.5.7, RFC 4475 §3.1.2.16 */
            return -1;
        }
    }
    for (const char *p = line; p < sp1; p++) {
        if (!is_token_char((unsigned char)*p)) {
            set_err(err, 400, "Bad Method");
            return -1;
        }
    }
    if (sp1 == line) {
        set_err(err, 400, "Bad Request-Line");
        return -1;
    }
    if (sp1[1] == ' ' || sp2[-1] == ' ') {
        set_err(err, 400, "Extra Whitespace In Request-Line");   /* RFC 4475 §3.1.2.9 */
        return -1;
    }
    st = check_ruri(sp1 + 1, (size_t)(sp2 - sp1 - 1), &why);
    if (st != 0) {
        set_err(err, st, "%s", why);
        return -1;
    }
    return 0;
}

/*
 * A From/To/Contact/Route-like value (<v,n>, folding CRLFs included): quotes and
 * angle brackets balance, and an addr-spec (no "<>") carries no URI headers
 * (RFC 3261 §20: a URI with "?", "," or ";" needs name-addr form; RFC 4475 §3.1.2.13).
 * <list>: comma-separated elements (Contact, Route). NULL if fine, else a reason.
 */
static const char *
check_addr_value(const char *v, size_t n, bool list)
{
    bool inq = false, angle_seen = false, in_params = false, uri_headers = false;
    int depth = 0;

    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? v[i] : ',';

        if (inq) {
            if (i >= n)
                return "Unterminated Quoted String";   /* RFC 4475 §3.1.2.6 */
            if (c == '\\' && i + 1 < n)
                i++;   /* quoted-pair */
            else if (c == '"')
                inq = false;
            continue;
        }
        switch (c) {
        case '"':
            if (depth == 0)
                inq = true;
            break;
        case '<':
            if (depth > 0 || angle_seen)
                return "Unbalanced Angle Brackets";
            depth++;
            angle_seen = true;
            break;
        case '>':
            if (depth == 0)
                return "Unbalanced Angle Brackets";
            depth--;
            break;
        case ';':
            if (depth == 0)
                in_params = true;
            break;
        case '?':
            if (depth == 0 && !angle_seen && !in_params)
                uri_headers = true;
            break;
        case ',':
            if (depth > 0 || (!list && i < n))
                break;
            if (!angle_seen && uri_headers)
                return "URI With Headers Needs Angle Brackets";
            angle_seen = in_params = uri_headers = false;
            break;
        default:
            break;
        }
    }
    return depth == 0 ? NULL : "Unbalanced Angle Brackets";
}

/*
 * The header section <buf, n> (start line first). Sets <*escaped_nul> when a NUL
 * appears as a quoted-pair (legal, RFC 4475 §3.1.1.1 intmeth); any other NUL is a 400.
 */
static int
check_headers(const char *buf, size_t n, struct sip_error *err, bool *escaped_nul)
{
    static const struct {
        const char *name, *shown;
        char compact;
    } single[] = {{"call-id", "Call-ID", 'i'},          {"from", "From", 'f'},
                  {"to", "To", 't'},                    {"cseq", "CSeq", 0},
                  {"max-forwards", "Max-Forwards", 0}, {"content-type", "Content-Type", 'c'}};
    unsigned counts[sizeof single / sizeof single[0]] = {0};
    size_t i;
    const char *nl;

    *escaped_nul = false;
    for (i = 0; i < n; i++) {
        if (buf[i] != '\0')
            continue;
        if (i > 0 && buf[i - 1] == '\\') {
            *escaped_nul = true;
            continue;
        }
        set_err(err, 400, "NUL Byte In Header");
        return -1;
    }
    nl = memchr(buf, '\n', n);
    i = nl ? (size_t)(nl - buf) + 1 : n;
    if (i < n && (buf[i] == ' ' || buf[i] == '\t')) {
        set_err(err, 400, "Bad Header Folding");
        return -1;
    }
    while (i < n) {
        const char *line = buf + i, *colon, *val, *vend;
        size_t l, nlen, j = i;

        /* One header: its line plus continuation lines. */
        for (;;) {
            const char *e = memchr(buf + j, '\n', n - j);
            j = e ? (size_t)(e - buf) + 1 : n;
            if (j >= n || (buf[j] != ' ' && buf[j] != '\t'))
                break;
        }
        l = j - i;
        i = j;
        vend = line + l;
        while (vend > line && (vend[-1] == '\r' || vend[-1] == '\n'))
            vend--;
        if (vend == line)
            break;   /* the empty line */
        colon = memchr(line, ':', (size_t)(vend - line));
        if (colon == NULL) {
            set_err(err, 400, "Header Without Colon");
            return -1;
        }
        nlen = (size_t)(colon - line);
        while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
            nlen--;
        if (nlen == 0) {
            set_err(err, 400, "Bad Header Name");
            return -1;
        }
        for (size_t k = 0; k < nlen; k++) {
            if (!is_token_char((unsigned char)line[k])) {
                set_err(err, 400, "Bad Header Name");
                return -1;
            }
        }
        for (size_t k = 0; k < sizeof single / sizeof single[0]; k++) {
            if (hname_is(line, nlen, single[k].name, single[k].compact) && ++counts[k] > 1) {
                /* RFC 3261 §7.3.1; RFC 4475 §3.3.8 */
                set_err(err, 400, "Multiple %s Header Fields", single[k].shown);
                return -1;
            }
        }
        val = colon + 1;
        bool is_list = hname_is(line, nlen, "contact", 'm') || hname_is(line, nlen, "route", 0) ||
                       hname_is(line, nlen, "record-route", 0) || hname_is(line, nlen, "reply-to", 0);
        if (is_list || hname_is(line, nlen, "from", 'f') || hname_is(line, nlen, "to", 't')) {
            const char *why = check_addr_value(val, (size_t)(vend - val), is_list);
            if (why) {
                set_err(err, 400, "%s in %.*s", why, (int)(nlen < 20 ? nlen : 20), line);
                return -1;
            }
        }
    }
    return 0;
}

static bool
all_digits(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/*
 * The part of a response a proxy reads: start line, Via, From, To, Call-ID, CSeq and
 * Contact lines (with their folded continuations), no body. Returns a malloc'd copy.
 */
static char *
reduce_response(const char *buf, size_t len, size_t *outlen)
{
    char *out = malloc(len + 3);
    size_t n = 0, i = 0;
    bool first = true, keep = false;

    if (out == NULL)
        return NULL;
    while (i < len) {
        const char *line = buf + i, *nl = memchr(line, '\n', len - i);
        size_t l = nl ? (size_t)(nl + 1 - line) : len - i;
        size_t t = l;

        i += l;
        while (t > 0 && (line[t - 1] == '\n' || line[t - 1] == '\r'))
            t--;
        if (t == 0)
            break;
        if (first) {
            first = false;
            keep = true;
        } else if (line[0] == ' ' || line[0] == '\t') {
            /* a continuation: kept with its header */
        } else {
            const char *colon = memchr(line, ':', t);
            size_t nlen = colon ? (size_t)(colon - line) : 0;
            while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
                nlen--;
            keep = colon && (hname_is(line, nlen, "via", 'v') || hname_is(line, nlen, "from", 'f') ||
                             hname_is(line, nlen, "to", 't') || hname_is(line, nlen, "call-id", 'i') ||
                             hname_is(line, nlen, "cseq", 0) || hname_is(line, nlen, "contact", 'm'));
        }
        if (keep) {
            memcpy(out + n, line, l);
            n += l;
        }
    }
    memcpy(out + n, "\r\n", 2);
    n += 2;
    *outlen = n;
    return out;
}

int
sip_msg_ensure_full(struct sip_msg *msg)
{
    osip_message_t *m = NULL;
    osip_via_t *via;
    osip_generic_param_t *br = NULL;

    if (!msg->partial)
        return 0;
    if (msg->raw == NULL || osip_message_init(&m) != 0)
        return -1;
    if (osip_message_parse(m, msg->raw->buf, msg->raw->len) != 0) {
        osip_message_free(m);
        return -1;
    }
    osip_message_free(msg->osip);
    msg->osip = m;
    msg->partial = false;
    msg->dirty = 0;
    msg->branch = NULL;
    via = osip_list_get(&m->vias, 0);
    if (via && osip_via_param_get_byname(via, "branch", &br) == 0 && br && br->gvalue)
        msg->branch = br->gvalue;
    return 0;
}

struct sip_msg *
sip_msg_parse(const char *buf, size_t len, const struct sip_limits *lim, struct sip_error *err)
{
    size_t plen = 0;
    bool partial = false;
    struct sip_limits deflim;
    struct sip_msg *msg = NULL;
    osip_message_t *m = NULL;
    size_t mlen = 0, hlen = 0;
    bool is_request, escaped_nul = false;
    char *copy = NULL;
    osip_via_t *via = NULL;
    osip_generic_param_t *br = NULL;

    if (char_class['a'] == 0)
        char_class_init();   /* callers that skipped sip_init() */
    if (lim == NULL) {
        sip_limits_default(&deflim);
        lim = &deflim;
    }
    if (err) {
        err->status = 0;
        err->reason[0] = '\0';
    }
    if (len > lim->max_msg_size) {
        set_err(err, 413, "Message Too Large");
        goto fail;
    }
    if (prescan(buf, len, lim, err, &mlen, &hlen) != 0)
        goto fail;
    is_request = !(len >= 4 && memcmp(buf, "SIP/", 4) == 0);
    if (is_request) {
        const char *eol = memchr(buf, '\n', hlen);
        size_t l = eol ? (size_t)(eol - buf) : hlen;
        if (l > 0 && buf[l - 1] == '\r')
            l--;
        if (check_request_line(buf, l, err) != 0)
            goto fail;
    }
    if (check_headers(buf, hlen, err, &escaped_nul) != 0)
        goto fail;
    if (escaped_nul) {
        /*
         * osip keeps header values as C strings, so a NUL cannot pass through it. It is
         * legal only as a quoted-pair ("\<NUL>" in a quoted string): replaced by "?"
         * in our copy, the value otherwise unchanged.
         */
        copy = malloc(mlen);
        if (copy == NULL) {
            set_err(err, 500, "Out Of Memory");
            goto fail;
        }
        memcpy(copy, buf, mlen);
        for (size_t k = 1; k < hlen && k < mlen; k++)
            if (copy[k] == '\0' && copy[k - 1] == '\\')
                copy[k] = '?';
    }
    if (!is_request && lim->partial_responses && copy == NULL) {
        /* A proxy reads a handful of headers of a response and forwards its bytes. */
        copy = reduce_response(buf, mlen, &plen);
        partial = copy != NULL;
    }
    if (osip_message_init(&m) != 0) {
        set_err(err, 500, "Out Of Memory");
        goto fail;
    }
    if (osip_message_parse(m, copy ? copy : buf, partial ? plen : mlen) != 0) {
        set_err(err, 400, "Malformed Message");
        goto fail;
    }
    free(copy);
    copy = NULL;
    msg = calloc(1, sizeof *msg);
    if (msg == NULL) {
        set_err(err, 500, "Out Of Memory");
        goto fail;
    }
    msg->partial = partial;
    msg->osip = m;
    msg->request = MSG_IS_REQUEST(m);
    if (osip_list_size(&m->vias) < 1) {
        set_err(err, msg->request ? 400 : 0, "Missing Via");
        goto fail;
    }
    if (m->from == NULL || m->from->url == NULL) {
        set_err(err, 400, "Missing From");
        goto fail;
    }
    if (m->to == NULL || m->to->url == NULL) {
        set_err(err, 400, "Missing To");
        goto fail;
    }
    if (m->call_id == NULL || m->call_id->number == NULL) {
        set_err(err, 400, "Missing Call-ID");
        goto fail;
    }
    if (m->cseq == NULL || !all_digits(m->cseq->number) || m->cseq->method == NULL) {
        set_err(err, 400, "Missing or Bad CSeq");
        goto fail;
    }
    if (strlen(m->cseq->number) > 10 || strtoull(m->cseq->number, NULL, 10) > 0x7fffffffULL) {
        set_err(err, 400, "CSeq Number Too Large");   /* RFC 3261 §8.1.1.5: < 2**31 */
        goto fail;
    }
    msg->cseq = (uint32_t)strtoul(m->cseq->number, NULL, 10);
    if (msg->request) {
        if (m->sip_version == NULL || strcasecmp(m->sip_version, "SIP/2.0") != 0) {
            set_err(err, 505, "Version Not Supported");
            goto fail;
        }
        if (m->req_uri == NULL || m->req_uri->scheme == NULL) {
            set_err(err, 400, "Bad Request-URI");
            goto fail;
        }
        if (strcasecmp(m->req_uri->scheme, "sip") != 0 && strcasecmp(m->req_uri->scheme, "sips") != 0 &&
            strcasecmp(m->req_uri->scheme, "tel") != 0) {
            set_err(err, 416, "Unsupported URI Scheme");
            goto fail;
        }
        msg->method = sip_method_from_str(m->sip_method);
        if (strcmp(m->cseq->method, m->sip_method) != 0) {
            set_err(err, 400, "CSeq Method Does Not Match Request Method");
            goto fail;
        }
        if (sip_msg_max_forwards(msg) < 0) {
            set_err(err, 400, "Bad Max-Forwards");
            goto fail;
        }
    } else {
        if (m->status_code < 100 || m->status_code > 699) {
            set_err(err, 0, "Bad Status Code");
            goto fail;
        }
        msg->status = m->status_code;
        msg->method = sip_method_from_str(m->cseq->method);
    }
    via = osip_list_get(&m->vias, 0);
    if (via && osip_via_param_get_byname(via, "branch", &br) == 0 && br && br->gvalue)
        msg->branch = br->gvalue;
    sip_raw_index(msg, buf, mlen);   /* on failure msg->raw stays NULL: osip serializes */
    return msg;

fail:
    /* A malformed response is discarded, never answered (RFC 3261 §18.1.2, §16.7). */
    if (err && len >= 4 && memcmp(buf, "SIP/", 4) == 0)
        err->status = 0;
    free(copy);
    if (msg) {
        msg->osip = NULL;
        free(msg);
    }
    if (m)
        osip_message_free(m);
    return NULL;
}

void
sip_msg_free(struct sip_msg *msg)
{
    if (msg == NULL)
        return;
    osip_message_free(msg->osip);
    sip_raw_free(msg->raw);
    free(msg);
}

int
sip_msg_serialize(struct sip_msg *msg, char **out, size_t *outlen)
{
    osip_message_force_update(msg->osip);
    if (osip_message_to_str(msg->osip, out, outlen) != 0) {
        *out = NULL;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ headers */

const char *
sip_msg_header(const struct sip_msg *msg, const char *name, int index)
{
    osip_header_t *h = NULL;
    int pos = 0;

    for (int n = 0;; n++) {
        pos = osip_message_header_get_byname(msg->osip, name, pos, &h);
        if (pos < 0 || h == NULL)
            return NULL;
        if (n == index)
            return h->hvalue ? h->hvalue : "";
        pos++;
    }
}

int
sip_msg_header_count(const struct sip_msg *msg, const char *name)
{
    osip_header_t *h = NULL;
    int pos = 0, n = 0;

    while ((pos = osip_message_header_get_byname(msg->osip, name, pos, &h)) >= 0) {
        n++;
        pos++;
    }
    return n;
}

int
sip_msg_add_header(struct sip_msg *msg, const char *name, const char *value)
{
    msg->dirty |= strcasecmp(name, "max-forwards") == 0 ? SIP_DIRTY_MAXFWD : SIP_DIRTY_OTHER;
    return osip_message_set_header(msg->osip, name, value) == 0 ? 0 : -1;
}

void
sip_msg_remove_header(struct sip_msg *msg, const char *name)
{
    msg->dirty |= strcasecmp(name, "max-forwards") == 0 ? SIP_DIRTY_MAXFWD : SIP_DIRTY_OTHER;
    osip_header_t *h = NULL;
    int pos;

    while ((pos = osip_message_header_get_byname(msg->osip, name, 0, &h)) >= 0) {
        osip_list_remove(&msg->osip->headers, pos);
        osip_header_free(h);
    }
    osip_message_force_update(msg->osip);
}

int
sip_msg_set_header(struct sip_msg *msg, const char *name, const char *value)
{
    msg->dirty |= strcasecmp(name, "max-forwards") == 0 ? SIP_DIRTY_MAXFWD : SIP_DIRTY_OTHER;
    osip_header_t *h = NULL;

    if (osip_message_header_get_byname(msg->osip, name, 0, &h) >= 0 && h) {
        char *v = osip_strdup(value);
        if (v == NULL)
            return -1;
        osip_free(h->hvalue);
        h->hvalue = v;
        osip_message_force_update(msg->osip);
        return 0;
    }
    return sip_msg_add_header(msg, name, value);
}

const char *
sip_msg_call_id(const struct sip_msg *msg, char *out, size_t outlen)
{
    osip_call_id_t *c = msg->osip->call_id;

    if (c == NULL || c->number == NULL) {
        if (outlen > 0)
            out[0] = '\0';
        return out;
    }
    if (outlen == 0)
        return out;
    if (c->host)
        sip_strjoin(out, outlen, c->number, "@", c->host, (const char *)NULL);
    else
        sip_strjoin(out, outlen, c->number, (const char *)NULL);
    return out;
}

static const char *
gen_param(osip_list_t *params, const char *name)
{
    osip_generic_param_t *p = NULL;

    if (osip_generic_param_get_byname(params, (char *)name, &p) == 0 && p)
        return p->gvalue ? p->gvalue : "";
    return NULL;
}

const char *
sip_msg_from_tag(const struct sip_msg *msg)
{
    return msg->osip->from ? gen_param(&msg->osip->from->gen_params, "tag") : NULL;
}

const char *
sip_msg_to_tag(const struct sip_msg *msg)
{
    return msg->osip->to ? gen_param(&msg->osip->to->gen_params, "tag") : NULL;
}

int
sip_msg_set_to_tag(struct sip_msg *msg, const char *tag)
{
    msg->dirty |= SIP_DIRTY_OTHER;
    if (msg->osip->to == NULL)
        return -1;
    osip_to_set_tag(msg->osip->to, osip_strdup(tag));
    osip_message_force_update(msg->osip);
    return 0;
}

int
sip_msg_max_forwards(const struct sip_msg *msg)
{
    const char *v = sip_msg_header(msg, "max-forwards", 0);
    long n = 0;

    if (v == NULL)
        return 70;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!isdigit((unsigned char)*v))
        return -1;
    for (; isdigit((unsigned char)*v); v++) {
        n = n * 10 + (*v - '0');
        if (n > 255)
            return -1;
    }
    while (*v == ' ' || *v == '\t')
        v++;
    return *v == '\0' ? (int)n : -1;
}

int
sip_msg_set_max_forwards(struct sip_msg *msg, int value)
{
    char buf[8];

    snprintf(buf, sizeof buf, "%d", value);
    return sip_msg_set_header(msg, "Max-Forwards", buf);
}

const char *
sip_msg_body(const struct sip_msg *msg, size_t *len)
{
    osip_body_t *b = NULL;

    if (osip_message_get_body(msg->osip, 0, &b) < 0 || b == NULL || b->body == NULL) {
        *len = 0;
        return NULL;
    }
    *len = b->length;
    return b->body;
}

const char *
sip_msg_content_type(const struct sip_msg *msg, char *out, size_t outlen)
{
    osip_content_type_t *ct = msg->osip->content_type;

    if (ct == NULL || ct->type == NULL)
        return NULL;
    snprintf(out, outlen, "%s/%s", ct->type, ct->subtype ? ct->subtype : "");
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return out;
}

int
sip_msg_set_body(struct sip_msg *msg, const char *type, const char *body, size_t len)
{
    msg->dirty |= SIP_DIRTY_OTHER;
    osip_body_t *b;
    char clen[24];

    while ((b = osip_list_get(&msg->osip->bodies, 0)) != NULL) {
        osip_list_remove(&msg->osip->bodies, 0);
        osip_body_free(b);
    }
    osip_content_type_free(msg->osip->content_type);
    msg->osip->content_type = NULL;
    osip_content_length_free(msg->osip->content_length);
    msg->osip->content_length = NULL;
    if (body && len > 0) {
        if (osip_message_set_body(msg->osip, body, len) != 0)
            return -1;
        if (type && osip_message_set_content_type(msg->osip, type) != 0)
            return -1;
    }
    snprintf(clen, sizeof clen, "%zu", body ? len : 0);
    osip_message_set_content_length(msg->osip, clen);
    osip_message_force_update(msg->osip);
    return 0;
}

/* ------------------------------------------------------------------ Via */

int
sip_msg_via_count(const struct sip_msg *msg)
{
    return osip_list_size(&msg->osip->vias);
}

int
sip_msg_push_via(struct sip_msg *msg, const char *value)
{
    msg->dirty |= SIP_DIRTY_VIA;
    osip_via_t *v = NULL;

    if (osip_via_init(&v) != 0)
        return -1;
    if (osip_via_parse(v, value) != 0) {
        osip_via_free(v);
        return -1;
    }
    osip_list_add(&msg->osip->vias, v, 0);
    osip_message_force_update(msg->osip);
    return 0;
}

/* The branch of the top Via, after an edit of the list. */
static void
reset_branch(struct sip_msg *msg)
{
    osip_via_t *v = osip_list_get(&msg->osip->vias, 0);
    osip_generic_param_t *br = NULL;

    msg->branch = NULL;
    if (v && osip_via_param_get_byname(v, "branch", &br) == 0 && br)
        msg->branch = br->gvalue;
}

int
sip_msg_pop_via(struct sip_msg *msg)
{
    msg->dirty |= SIP_DIRTY_VIA;
    osip_via_t *v = osip_list_get(&msg->osip->vias, 0);

    if (v == NULL)
        return -1;
    osip_list_remove(&msg->osip->vias, 0);
    osip_via_free(v);
    osip_message_force_update(msg->osip);
    reset_branch(msg);
    return 0;
}

int
sip_msg_replace_vias(struct sip_msg *msg, const char *value)
{
    osip_via_t *v = NULL, *old;

    if (osip_via_init(&v) != 0)
        return -1;
    if (osip_via_parse(v, value) != 0) {
        osip_via_free(v);
        return -1;
    }
    while ((old = osip_list_get(&msg->osip->vias, 0)) != NULL) {
        osip_list_remove(&msg->osip->vias, 0);
        osip_via_free(old);
    }
    osip_list_add(&msg->osip->vias, v, 0);
    msg->dirty |= SIP_DIRTY_VIA;
    osip_message_force_update(msg->osip);
    reset_branch(msg);
    return 0;
}

int
sip_msg_splice_via(struct sip_msg *msg, int index, const char *const *values, int n)
{
    osip_via_t *nv[32], *old = osip_list_get(&msg->osip->vias, index);
    int k;

    if (old == NULL || n < 1 || n > 32)
        return -1;
    for (k = 0; k < n; k++) {
        if (osip_via_init(&nv[k]) != 0)
            break;
        if (osip_via_parse(nv[k], values[k]) != 0) {
            osip_via_free(nv[k]);
            break;
        }
    }
    if (k < n) {
        while (k-- > 0)
            osip_via_free(nv[k]);
        return -1;
    }
    osip_list_remove(&msg->osip->vias, index);
    osip_via_free(old);
    for (k = 0; k < n; k++)
        osip_list_add(&msg->osip->vias, nv[k], index + k);
    msg->dirty |= SIP_DIRTY_VIA;
    osip_message_force_update(msg->osip);
    reset_branch(msg);
    return 0;
}

void
sip_msg_fix_via(struct sip_msg *msg, const char *src_ip, uint16_t src_port)
{
    osip_via_t *v = osip_list_get(&msg->osip->vias, 0);
    osip_generic_param_t *rp = NULL, *rc = NULL;
    bool has_rport;

    if (v == NULL)
        return;
    has_rport = osip_via_param_get_byname(v, "rport", &rp) == 0 && rp != NULL;
    /* RFC 3261 §18.2.1: received when the host differs; RFC 3581 §4: always with rport. */
    if (has_rport || v->host == NULL || strcmp(v->host, src_ip) != 0) {
        msg->dirty |= SIP_DIRTY_VIA;
        if (osip_via_param_get_byname(v, "received", &rc) == 0 && rc) {
            osip_free(rc->gvalue);
            rc->gvalue = osip_strdup(src_ip);
        } else {
            osip_via_set_received(v, osip_strdup(src_ip));
        }
    }
    if (has_rport) {
        char port[8];
        msg->dirty |= SIP_DIRTY_VIA;
        snprintf(port, sizeof port, "%u", src_port);
        osip_free(rp->gvalue);
        rp->gvalue = osip_strdup(port);
    }
    osip_message_force_update(msg->osip);
}

static uint16_t
parse_port(const char *s)
{
    unsigned long p;
    char *end;

    if (s == NULL || *s == '\0')
        return 0;
    p = strtoul(s, &end, 10);
    if (*end != '\0' || p == 0 || p > 65535)
        return 0;
    return (uint16_t)p;
}

int
sip_msg_via_info(const struct sip_msg *msg, int index, struct sip_via_info *out)
{
    osip_via_t *v = osip_list_get(&msg->osip->vias, index);
    osip_generic_param_t *p = NULL;

    memset(out, 0, sizeof *out);
    if (v == NULL)
        return -1;
    out->transport = v->protocol;
    out->host = v->host;
    out->port = parse_port(v->port);
    if (osip_via_param_get_byname(v, "received", &p) == 0 && p)
        out->received = p->gvalue;
    p = NULL;
    if (osip_via_param_get_byname(v, "rport", &p) == 0 && p) {
        out->has_rport = true;
        out->rport = parse_port(p->gvalue);
    }
    p = NULL;
    if (osip_via_param_get_byname(v, "branch", &p) == 0 && p)
        out->branch = p->gvalue;
    return 0;
}

/* ------------------------------------------------------------------ Route */

int
sip_msg_route_count(const struct sip_msg *msg)
{
    return osip_list_size(&msg->osip->routes);
}

osip_uri_t *
sip_msg_route_uri(const struct sip_msg *msg, int index)
{
    osip_route_t *r = osip_list_get(&msg->osip->routes, index);

    return r ? r->url : NULL;
}

int
sip_msg_pop_route(struct sip_msg *msg)
{
    msg->dirty |= SIP_DIRTY_ROUTE;
    osip_route_t *r = osip_list_get(&msg->osip->routes, 0);

    if (r == NULL)
        return -1;
    osip_list_remove(&msg->osip->routes, 0);
    osip_route_free(r);
    osip_message_force_update(msg->osip);
    return 0;
}

void
sip_msg_remove_routes(struct sip_msg *msg)
{
    while (sip_msg_pop_route(msg) == 0)
        ;
}

void
sip_msg_remove_record_routes(struct sip_msg *msg)
{
    msg->dirty |= SIP_DIRTY_OTHER;
    osip_record_route_t *r;

    while ((r = osip_list_get(&msg->osip->record_routes, 0)) != NULL) {
        osip_list_remove(&msg->osip->record_routes, 0);
        osip_record_route_free(r);
    }
    osip_message_force_update(msg->osip);
}

int
sip_msg_push_route(struct sip_msg *msg, const char *uri)
{
    msg->dirty |= SIP_DIRTY_ROUTE;
    osip_route_t *r = NULL;
    char buf[1024];

    snprintf(buf, sizeof buf, "<%s>", uri);
    if (osip_route_init(&r) != 0)
        return -1;
    if (osip_route_parse(r, buf) != 0) {
        osip_route_free(r);
        return -1;
    }
    osip_list_add(&msg->osip->routes, r, 0);
    osip_message_force_update(msg->osip);
    return 0;
}

int
sip_msg_push_record_route(struct sip_msg *msg, const char *uri)
{
    msg->dirty |= SIP_DIRTY_OTHER;
    osip_record_route_t *r = NULL;
    char buf[1024];

    snprintf(buf, sizeof buf, "<%s>", uri);
    if (osip_record_route_init(&r) != 0)
        return -1;
    if (osip_record_route_parse(r, buf) != 0) {
        osip_record_route_free(r);
        return -1;
    }
    osip_list_add(&msg->osip->record_routes, r, 0);
    osip_message_force_update(msg->osip);
    return 0;
}

/* ------------------------------------------------------------------ R-URI, Contact */

osip_uri_t *
sip_msg_ruri(const struct sip_msg *msg)
{
    return msg->osip->req_uri;
}

int
sip_msg_set_ruri(struct sip_msg *msg, const char *uri)
{
    msg->dirty |= SIP_DIRTY_RURI;
    osip_uri_t *u = NULL;

    if (osip_uri_init(&u) != 0)
        return -1;
    if (osip_uri_parse(u, uri) != 0) {
        osip_uri_free(u);
        return -1;
    }
    osip_uri_free(msg->osip->req_uri);
    msg->osip->req_uri = u;
    osip_message_force_update(msg->osip);
    return 0;
}

int
sip_msg_contact_count(const struct sip_msg *msg)
{
    return osip_list_size(&msg->osip->contacts);
}

osip_contact_t *
sip_msg_contact(const struct sip_msg *msg, int index)
{
    return osip_list_get(&msg->osip->contacts, index);
}

bool
sip_msg_contact_is_star(const struct sip_msg *msg)
{
    osip_contact_t *c = sip_msg_contact(msg, 0);

    /* osip parses "Contact: *" as a contact with displayname "*" and no url. */
    return c != NULL && c->url == NULL && c->displayname && strcmp(c->displayname, "*") == 0;
}

const char *
sip_contact_param(const osip_contact_t *ct, const char *name)
{
    return gen_param((osip_list_t *)&ct->gen_params, name);
}

/* ------------------------------------------------------------------ URIs */

const char *
sip_uri_param(const osip_uri_t *uri, const char *name)
{
    osip_uri_param_t *p = NULL;

    if (uri == NULL)
        return NULL;
    if (osip_uri_param_get_byname((osip_list_t *)&uri->url_params, (char *)name, &p) == 0 && p)
        return p->gvalue ? p->gvalue : "";
    return NULL;
}

bool
sip_uri_has_param(const osip_uri_t *uri, const char *name)
{
    return sip_uri_param(uri, name) != NULL;
}

int
sip_uri_remove_param(osip_uri_t *uri, const char *name)
{
    int n = osip_list_size(&uri->url_params);

    for (int i = 0; i < n; i++) {
        osip_uri_param_t *p = osip_list_get(&uri->url_params, i);
        if (p && p->gname && strcasecmp(p->gname, name) == 0) {
            osip_list_remove(&uri->url_params, i);
            osip_uri_param_free(p);
            return 0;
        }
    }
    return -1;
}

int
sip_uri_set_param(osip_uri_t *uri, const char *name, const char *value)
{
    sip_uri_remove_param(uri, name);
    return osip_uri_param_add(&uri->url_params, osip_strdup(name), value ? osip_strdup(value) : NULL) == 0
               ? 0
               : -1;
}

uint16_t
sip_uri_port(const osip_uri_t *uri, uint16_t def)
{
    uint16_t p = uri ? parse_port(uri->port) : 0;

    return p ? p : def;
}

const char *
sip_uri_aor(const osip_uri_t *uri, char *out, size_t outlen)
{
    if (uri == NULL || uri->username == NULL || uri->host == NULL)
        return NULL;
    if (outlen == 0)
        return NULL;
    sip_strjoin(out, outlen, uri->username, "@", uri->host, (const char *)NULL);
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return out;
}

char *
sip_uri_str(const osip_uri_t *uri)
{
    char *s = NULL;

    if (uri == NULL || osip_uri_to_str(uri, &s) != 0)
        return NULL;
    return s;
}

bool
sip_uri_is_phone(const osip_uri_t *uri)
{
    const char *up;

    if (uri == NULL || uri->scheme == NULL)
        return false;
    if (strcasecmp(uri->scheme, "tel") == 0)
        return true;
    up = sip_uri_param(uri, "user");
    return up && strcasecmp(up, "phone") == 0;
}

/* ------------------------------------------------------------------ replies */

struct sip_msg *
sip_reply_new(const struct sip_msg *req, int code, const char *reason, const char *to_tag)
{
    osip_message_t *r = NULL;
    struct sip_msg *msg;
    const osip_message_t *q = req->osip;

    if (osip_message_init(&r) != 0)
        return NULL;
    osip_message_set_version(r, osip_strdup("SIP/2.0"));
    osip_message_set_status_code(r, code);
    if (reason == NULL)
        reason = osip_message_get_reason(code);
    osip_message_set_reason_phrase(r, osip_strdup(reason ? reason : "Unknown"));
    if (osip_list_clone(&q->vias, &r->vias, (int (*)(void *, void **))osip_via_clone) != 0 ||
        osip_from_clone(q->from, &r->from) != 0 || osip_to_clone(q->to, &r->to) != 0 ||
        osip_call_id_clone(q->call_id, &r->call_id) != 0 || osip_cseq_clone(q->cseq, &r->cseq) != 0) {
        osip_message_free(r);
        return NULL;
    }
    if (code > 100 && to_tag && sip_msg_to_tag(req) == NULL)
        osip_to_set_tag(r->to, osip_strdup(to_tag));
    osip_message_set_content_length(r, "0");
    msg = calloc(1, sizeof *msg);
    if (msg == NULL) {
        osip_message_free(r);
        return NULL;
    }
    msg->osip = r;
    msg->request = false;
    msg->status = code;
    msg->method = req->method;
    msg->cseq = req->cseq;
    msg->branch = req->branch;   /* borrowed from req; only for the caller's convenience */
    {
        osip_via_t *v = osip_list_get(&r->vias, 0);
        osip_generic_param_t *br = NULL;
        if (v && osip_via_param_get_byname(v, "branch", &br) == 0 && br)
            msg->branch = br->gvalue;
    }
    return msg;
}

char *
sip_reply_raw(const char *buf, size_t len, int code, const char *reason, size_t *outlen)
{
    size_t cap = len + 256, n = 0, i = 0;
    char *out;
    bool have_via = false, first = true, copying = false;

    if (len >= 4 && memcmp(buf, "ACK ", 4) == 0)
        return NULL;   /* never answer an ACK */
    if (len >= 4 && memcmp(buf, "SIP/", 4) == 0)
        return NULL;   /* a response: never answered */
    out = malloc(cap);
    if (out == NULL)
        return NULL;
    n = (size_t)snprintf(out, cap, "SIP/2.0 %d %s\r\n", code, reason);
    while (i < len) {
        const char *line = buf + i, *nl = memchr(line, '\n', len - i);
        size_t l = nl ? (size_t)(nl - line) : len - i;
        size_t raw = l;

        i += l + (nl ? 1 : 0);
        if (l > 0 && line[l - 1] == '\r')
            l--;
        if (l == 0)
            break;
        (void)raw;
        if (first) {
            first = false;
            continue;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            if (copying && n + l + 2 < cap) {
                memcpy(out + n, line, l);
                n += l;
                out[n++] = '\r';
                out[n++] = '\n';
            }
            continue;
        }
        const char *colon = memchr(line, ':', l);
        copying = false;
        if (colon == NULL)
            continue;
        size_t nlen = (size_t)(colon - line);
        while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
            nlen--;
        bool is_via = hname_is(line, nlen, "via", 'v');
        bool is_to = hname_is(line, nlen, "to", 't');
        if (is_via || is_to || hname_is(line, nlen, "from", 'f') ||
            hname_is(line, nlen, "call-id", 'i') || hname_is(line, nlen, "cseq", 0)) {
            if (n + l + 40 >= cap)
                break;
            memcpy(out + n, line, l);
            n += l;
            if (is_to && memmem(line, l, ";tag=", 5) == NULL) {
                /* RFC 3261 §8.2.6.2: add a To tag; derived from the bytes so it is stable. */
                uint64_t h = hash_fnv1a64(HASH_FNV64_SEED, buf, len);
                n += (size_t)snprintf(out + n, cap - n, ";tag=%016llx", (unsigned long long)h);
            }
            out[n++] = '\r';
            out[n++] = '\n';
            copying = true;
            if (is_via)
                have_via = true;
        }
    }
    if (!have_via) {
        free(out);
        return NULL;
    }
    if (n + 40 >= cap) {
        free(out);
        return NULL;
    }
    n += (size_t)snprintf(out + n, cap - n, "Content-Length: 0\r\n\r\n");
    *outlen = n;
    return out;
}

void
sip_make_tag(const struct sip_msg *req, char *out, size_t outlen)
{
    uint64_t h = HASH_FNV64_SEED;
    const char *parts[3];
    char cid[256];

    parts[0] = req->branch ? req->branch : "";
    parts[1] = sip_msg_call_id(req, cid, sizeof cid);
    parts[2] = sip_msg_from_tag(req) ? sip_msg_from_tag(req) : "";
    for (int p = 0; p < 3; p++)
        h = hash_fnv1a64_str(h, parts[p]);
    h ^= (uint64_t)req->cseq;
    snprintf(out, outlen, "%016llx", (unsigned long long)h);
}

void
sip_make_branch(char *out, size_t outlen)
{
    static uint32_t counter;
    char hex[17], cnt[9];
    uint32_t c = ++counter;
    size_t i = sizeof cnt - 1;

    /* "z9hG4bK%016llx%x" */
    sip_hex64(hex, rng_next());
    cnt[i] = '\0';
    do {
        cnt[--i] = "0123456789abcdef"[c & 15];
        c >>= 4;
    } while (c > 0);
    if (outlen > 0)
        sip_strjoin(out, outlen, "z9hG4bK", hex, cnt + i, (const char *)NULL);
}

size_t
sip_strjoin(char *out, size_t outlen, ...)
{
    va_list ap;
    const char *s;
    size_t n = 0;

    if (outlen == 0)
        return 0;
    va_start(ap, outlen);
    while ((s = va_arg(ap, const char *)) != NULL) {
        size_t l = strlen(s);
        if (l > outlen - 1 - n)
            l = outlen - 1 - n;
        memcpy(out + n, s, l);
        n += l;
    }
    va_end(ap);
    out[n] = '\0';
    return n;
}

void
sip_hex64(char out[17], uint64_t v)
{
    for (int i = 15; i >= 0; i--) {
        out[i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    }
    out[16] = '\0';
}

char *
sip_utoa(char *out, unsigned v)
{
    char d[12];
    size_t i = sizeof d - 1;

    d[i] = '\0';
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    memcpy(out, d + i, sizeof d - i);
    return out;
}
