/*
 * tp_frame: finds message boundaries in a stream buffer (RFC 3261 §18.3) and
 * recognises CRLF keep-alives (RFC 5626 §4.4.1). Pure: no allocation, no state.
 */
#include "transport/tp_frame.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define CRLFCRLF "\r\n\r\n"

static bool
is_lws(char c)
{
    return c == ' ' || c == '\t';
}

static char
lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive compare of <name,len> against the lowercase literal <lit>. */
static bool
name_is(const char *name, size_t len, const char *lit)
{
    size_t n = strlen(lit);

    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (lower(name[i]) != lit[i])
            return false;
    }
    return true;
}

/*
 * Parses a Content-Length value: LWS, decimal digits, LWS, nothing else.
 * Values above <max> are clamped to max + 1 so the caller reports TOO_BIG
 * without overflowing. Returns 0 or -1 (empty, sign, garbage).
 */
static int
parse_cl(const char *v, size_t len, size_t max, size_t *out)
{
    size_t i = 0, n = 0;
    bool any = false;

    while (i < len && is_lws(v[i]))
        i++;
    while (i < len && v[i] >= '0' && v[i] <= '9') {
        if (n <= max)
            n = n * 10 + (size_t)(v[i] - '0');
        any = true;
        i++;
    }
    while (i < len && is_lws(v[i]))
        i++;
    if (!any || i != len)
        return -1;
    *out = n > max ? max + 1 : n;
    return 0;
}

/*
 * Looks for Content-Length (or compact "l", RFC 3261 §7.3.3) in the header section
 * <hdr, len> (start line included, final CRLFCRLF excluded). Header folding
 * (RFC 3261 §7.3.1) is honoured for the value. Two differing values are an error
 * (a framing ambiguity a peer could use to smuggle a message).
 * Returns 1 found, 0 absent, -1 malformed.
 */
static int
find_content_length(const char *hdr, size_t len, size_t max, size_t *cl)
{
    const char *p = memchr(hdr, '\n', len);   /* skip the start line */
    const char *end = hdr + len;
    int found = 0;

    if (p == NULL)
        return 0;
    p++;
    while (p < end) {
        const char *eol = p, *colon, *vend;
        size_t name_len, v;

        /* one logical header line: continue over CRLF + LWS (folding) */
        for (;;) {
            const char *nl = memchr(eol, '\n', (size_t)(end - eol));
            if (nl == NULL) {
                eol = end;
                break;
            }
            eol = nl + 1;
            if (eol >= end || !is_lws(*eol))
                break;
        }
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon != NULL) {
            const char *ne = colon;
            while (ne > p && is_lws(ne[-1]))
                ne--;
            name_len = (size_t)(ne - p);
            if (name_is(p, name_len, "content-length") || name_is(p, name_len, "l")) {
                char buf[64];
                size_t bl = 0;
                vend = eol;
                /* copy the value without CR/LF so folding reads as LWS */
                for (const char *q = colon + 1; q < vend; q++) {
                    char c = (*q == '\r' || *q == '\n') ? ' ' : *q;
                    if (bl == sizeof buf)
                        return -1;   /* no sane Content-Length is this long */
                    buf[bl++] = c;
                }
                if (parse_cl(buf, bl, max, &v) != 0)
                    return -1;
                if (found && v != *cl)
                    return -1;
                *cl = v;
                found = 1;
            }
        }
        p = eol;
    }
    return found;
}

enum tp_frame_result
tp_frame_scan(const char *buf, size_t len, size_t max, size_t *skip, size_t *msg_len)
{
    const char *hend;
    size_t window, hdr_len, cl = 0, total;
    int rc;

    *skip = 0;
    *msg_len = 0;
    if (len == 0)
        return TP_FRAME_NEED_MORE;

    /* RFC 5626 §4.4.1: CRLFCRLF is a ping, a single CRLF is a pong. A partial
     * "\r\n\r" may still become a ping, so wait for more. */
    if (buf[0] == '\r') {
        size_t n = len < 4 ? len : 4;
        if (memcmp(buf, CRLFCRLF, n) == 0) {
            if (len < 4)
                return TP_FRAME_NEED_MORE;
            *skip = 4;
            return TP_FRAME_PING;
        }
        if (len >= 2 && buf[1] == '\n') {
            *skip = 2;
            return TP_FRAME_PONG;
        }
    }

    window = len < max ? len : max;
    hend = window >= 4 ? memmem(buf, window, CRLFCRLF, 4) : NULL;
    if (hend == NULL)
        return len >= max ? TP_FRAME_TOO_BIG : TP_FRAME_NEED_MORE;
    hdr_len = (size_t)(hend - buf) + 4;

    rc = find_content_length(buf, hdr_len - 4, max, &cl);
    if (rc <= 0)
        return TP_FRAME_ERROR;   /* RFC 3261 §18.3: mandatory on streams */
    if (cl > max || hdr_len + cl > max)
        return TP_FRAME_TOO_BIG;
    total = hdr_len + cl;
    if (len < total)
        return TP_FRAME_NEED_MORE;
    *msg_len = total;
    return TP_FRAME_MESSAGE;
}
