#include "sip/sip_raw.h"
#include "util/sbuf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ index */

static enum sip_raw_kind
line_kind(const char *p, size_t n)
{
    size_t k = 0;

    while (k < n && p[k] != ':' && p[k] != ' ' && p[k] != '\t')
        k++;
    if ((k == 1 && (p[0] == 'v' || p[0] == 'V')) || (k == 3 && strncasecmp(p, "via", 3) == 0))
        return SIP_RAW_VIA;
    if (k == 5 && strncasecmp(p, "route", 5) == 0)
        return SIP_RAW_ROUTE;
    if (k == 12 && strncasecmp(p, "max-forwards", 12) == 0)
        return SIP_RAW_MAXFWD;
    if ((k == 1 && (p[0] == 'f' || p[0] == 'F')) || (k == 4 && strncasecmp(p, "from", 4) == 0))
        return SIP_RAW_FROM;
    if ((k == 1 && (p[0] == 't' || p[0] == 'T')) || (k == 2 && strncasecmp(p, "to", 2) == 0))
        return SIP_RAW_TO;
    if ((k == 1 && (p[0] == 'i' || p[0] == 'I')) || (k == 7 && strncasecmp(p, "call-id", 7) == 0))
        return SIP_RAW_CALLID;
    if (k == 4 && strncasecmp(p, "cseq", 4) == 0)
        return SIP_RAW_CSEQ;
    return SIP_RAW_OTHER;
}

int
sip_raw_index(struct sip_msg *msg, const char *buf, size_t len)
{
    unsigned count = 0, i = 0;
    struct sip_raw *raw;
    const char *p, *end = buf + len;
    bool clean = true;

    /* Count lines of the header section first, to size one allocation. */
    for (p = buf; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break;
        count++;
        if (nl == p || (nl == p + 1 && p[0] == '\r'))
            break;
        p = nl + 1;
    }
    raw = malloc(sizeof *raw + count * sizeof raw->lines[0] + len + 1);
    if (raw == NULL)
        return -1;
    raw->buf = (char *)&raw->lines[count];
    memcpy(raw->buf, buf, len);
    raw->buf[len] = '\0';
    raw->len = len;
    raw->nlines = 0;
    raw->start_end = 0;
    raw->body = (unsigned)len;
    for (p = raw->buf, end = raw->buf + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n;
        if (nl == NULL) {
            clean = false;   /* no blank line */
            break;
        }
        n = (size_t)(nl - p);
        if (n == 0 || p[n - 1] != '\r')
            clean = false;   /* bare LF */
        if (n == 0 || (n == 1 && p[0] == '\r')) {
            raw->body = (unsigned)(nl + 1 - raw->buf);
            break;
        }
        if (i == 0) {
            raw->start_end = (unsigned)(nl + 1 - raw->buf);
        } else if (p[0] == ' ' || p[0] == '\t') {
            clean = false;   /* folded */
        } else {
            struct sip_raw_line *l = &raw->lines[raw->nlines++];
            l->start = (unsigned)(p - raw->buf);
            l->end = (unsigned)(nl + 1 - raw->buf);
            l->kind = (unsigned char)line_kind(p, n);
        }
        i++;
        p = nl + 1;
    }
    raw->clean = clean && raw->start_end > 0;
    msg->raw = raw;
    return 0;
}

void
sip_raw_free(struct sip_raw *raw)
{
    free(raw);
}

void
sip_msg_touch(struct sip_msg *msg)
{
    msg->dirty |= SIP_DIRTY_OTHER;
}

bool
sip_msg_raw_usable(const struct sip_msg *msg)
{
    return msg->raw != NULL && msg->raw->clean && !(msg->dirty & SIP_DIRTY_OTHER);
}

/* ------------------------------------------------------------------ output buffer */

/* Emits "Route: <uri>" lines for a comma-separated list (angle brackets optional). */
static void
put_route_set(struct sbuf *o, const char *set)
{
    const char *p = set;

    while (*p) {
        const char *e;
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        e = p;
        /* a comma inside <...> belongs to the URI */
        if (*p == '<') {
            e = strchr(p, '>');
            e = e ? e + 1 : p + strlen(p);
        } else {
            while (*e && *e != ',')
                e++;
        }
        sbuf_puts(o, "Route: ");
        if (*p != '<')
            sbuf_put(o, "<", 1);
        sbuf_put(o, p, (size_t)(e - p));
        if (*p != '<')
            sbuf_put(o, ">", 1);
        sbuf_put(o, "\r\n", 2);
        p = e;
    }
}

/* ------------------------------------------------------------------ fallback */

static int
forward_osip(const struct sip_msg *msg, const struct sip_fwd *f, char **out, size_t *outlen)
{
    osip_message_t *o = NULL;
    struct sip_msg m;
    char mf[8];
    int rc = -1;

    if (osip_message_clone(msg->osip, &o) != 0)
        return -1;
    memset(&m, 0, sizeof m);
    m.osip = o;
    m.request = true;
    if (f->ruri && sip_msg_set_ruri(&m, f->ruri) != 0)
        goto out;
    if (f->route_set) {
        /* push in reverse order so the first URI ends on top */
        char *copy = strdup(f->route_set), *items[32], *s, *tok;
        int n = 0;
        if (copy == NULL)
            goto out;
        for (s = copy; (tok = strsep(&s, ",")) != NULL && n < 32;) {
            while (*tok == ' ' || *tok == '<')
                tok++;
            char *e = tok + strlen(tok);
            while (e > tok && (e[-1] == ' ' || e[-1] == '>'))
                *--e = '\0';
            if (*tok)
                items[n++] = tok;
        }
        for (int i = n - 1; i >= 0; i--)
            sip_msg_push_route(&m, items[i]);
        free(copy);
    }
    if (f->record_route)
        sip_msg_push_record_route(&m, f->record_route);
    snprintf(mf, sizeof mf, "%d", f->max_forwards);
    sip_msg_set_header(&m, "Max-Forwards", mf);
    if (f->via_below && sip_msg_replace_vias(&m, f->via_below) != 0)
        goto out;
    if (sip_msg_push_via(&m, f->via) != 0)
        goto out;
    rc = sip_msg_serialize(&m, out, outlen);
out:
    osip_message_free(o);
    return rc;
}

/* ------------------------------------------------------------------ builders */

int
sip_msg_forward_bytes(const struct sip_msg *msg, const struct sip_fwd *f, char **out, size_t *outlen)
{
    const struct sip_raw *raw = msg->raw;
    struct sbuf o;
    char mf[32];

    if (!sip_msg_raw_usable(msg) || !msg->request)
        return forward_osip(msg, f, out, outlen);
    SBUF_INIT(o);
    /* Start line */
    if (f->ruri == NULL && !(msg->dirty & SIP_DIRTY_RURI)) {
        sbuf_put(&o, raw->buf, raw->start_end);
    } else {
        char *u = NULL;
        const char *ruri = f->ruri;
        if (ruri == NULL) {
            if (osip_uri_to_str(msg->osip->req_uri, &u) != 0) {
                sbuf_free(&o);
                return -1;
            }
            ruri = u;
        }
        sbuf_puts(&o, msg->osip->sip_method);
        sbuf_put(&o, " ", 1);
        sbuf_puts(&o, ruri);
        sbuf_put(&o, " SIP/2.0\r\n", 10);
        osip_free(u);
    }
    /* Our Via, then the received Via list (regenerated if it was edited, e.g. received=) */
    sbuf_line(&o, "Via", f->via);
    if (f->via_below) {
        sbuf_line(&o, "Via", f->via_below);
    } else if (msg->dirty & SIP_DIRTY_VIA) {
        int n = osip_list_size(&msg->osip->vias);
        for (int i = 0; i < n; i++) {
            char *v = NULL;
            if (osip_via_to_str(osip_list_get(&msg->osip->vias, i), &v) == 0) {
                sbuf_line(&o, "Via", v);
                osip_free(v);
            } else {
                o.fail = true;
            }
        }
    } else {
        for (unsigned i = 0; i < raw->nlines; i++)
            if (raw->lines[i].kind == SIP_RAW_VIA)
                sbuf_put(&o, raw->buf + raw->lines[i].start, raw->lines[i].end - raw->lines[i].start);
    }
    if (f->record_route) {
        sbuf_puts(&o, "Record-Route: <");
        sbuf_puts(&o, f->record_route);
        sbuf_put(&o, ">\r\n", 3);
    }
    /* Route: the pushed set first, then the message's own (as pre-processed) */
    if (f->route_set)
        put_route_set(&o, f->route_set);
    if (msg->dirty & SIP_DIRTY_ROUTE) {
        int n = osip_list_size(&msg->osip->routes);
        for (int i = 0; i < n; i++) {
            char *v = NULL;
            if (osip_route_to_str(osip_list_get(&msg->osip->routes, i), &v) == 0) {
                sbuf_line(&o, "Route", v);
                osip_free(v);
            } else {
                o.fail = true;
            }
        }
    } else {
        for (unsigned i = 0; i < raw->nlines; i++)
            if (raw->lines[i].kind == SIP_RAW_ROUTE)
                sbuf_put(&o, raw->buf + raw->lines[i].start, raw->lines[i].end - raw->lines[i].start);
    }
    {
        /* "Max-Forwards: N" without snprintf (every forwarded request) */
        unsigned v = f->max_forwards > 0 ? (unsigned)f->max_forwards : 0;
        size_t i = sizeof mf - 1;
        mf[i] = '\0';
        do {
            mf[--i] = (char)('0' + v % 10);
            v /= 10;
        } while (v > 0 && i > 0);
        sbuf_puts(&o, "Max-Forwards: ");
        sbuf_puts(&o, mf + i);
        sbuf_put(&o, "\r\n", 2);
    }
    /* Everything else as received, then the blank line and the body */
    for (unsigned i = 0; i < raw->nlines; i++)
        if (raw->lines[i].kind != SIP_RAW_VIA && raw->lines[i].kind != SIP_RAW_ROUTE &&
            raw->lines[i].kind != SIP_RAW_MAXFWD)
            sbuf_put(&o, raw->buf + raw->lines[i].start, raw->lines[i].end - raw->lines[i].start);
    sbuf_put(&o, "\r\n", 2);
    if (raw->body < raw->len)
        sbuf_put(&o, raw->buf + raw->body, raw->len - raw->body);
    return sbuf_finish(&o, out, outlen);
}

/* Offset of the first top-level comma in a header value (outside quotes and <>), or 0. */
static size_t
first_comma(const char *v, size_t n)
{
    bool q = false;
    int angle = 0;

    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (q) {
            if (c == '\\' && i + 1 < n)
                i++;
            else if (c == '"')
                q = false;
        } else if (c == '"') {
            q = true;
        } else if (c == '<') {
            angle++;
        } else if (c == '>' && angle > 0) {
            angle--;
        } else if (c == ',' && angle == 0) {
            return i;
        }
    }
    return 0;
}

int
sip_msg_response_forward_bytes(struct sip_msg *resp, char **out, size_t *outlen)
{
    const struct sip_raw *raw = resp->raw;
    struct sbuf o;
    bool cut = false;

    if (!sip_msg_raw_usable(resp) || (resp->dirty & (SIP_DIRTY_VIA | SIP_DIRTY_ROUTE)) || resp->request) {
        if (sip_msg_pop_via(resp) != 0)
            return -1;
        return sip_msg_serialize(resp, out, outlen);
    }
    SBUF_INIT(o);
    sbuf_put(&o, raw->buf, raw->start_end);
    for (unsigned i = 0; i < raw->nlines; i++) {
        const struct sip_raw_line *l = &raw->lines[i];
        const char *s = raw->buf + l->start;
        size_t n = l->end - l->start;
        if (l->kind == SIP_RAW_VIA && !cut) {
            /* RFC 3261 §16.7 step 9: remove the topmost Via value (ours). */
            const char *colon = memchr(s, ':', n);
            size_t voff, vlen, c;
            cut = true;
            if (colon == NULL) {
                sbuf_free(&o);
                return -1;
            }
            voff = (size_t)(colon + 1 - s);
            vlen = n - voff - 2;   /* without CRLF */
            c = first_comma(s + voff, vlen);
            if (c == 0)
                continue;   /* the whole line was our Via */
            {
                const char *rest = s + voff + c + 1;
                size_t rn = vlen - c - 1;
                while (rn > 0 && (*rest == ' ' || *rest == '\t')) {
                    rest++;
                    rn--;
                }
                sbuf_puts(&o, "Via: ");
                sbuf_put(&o, rest, rn);
                sbuf_put(&o, "\r\n", 2);
            }
            continue;
        }
        sbuf_put(&o, s, n);
    }
    sbuf_put(&o, "\r\n", 2);
    if (raw->body < raw->len)
        sbuf_put(&o, raw->buf + raw->body, raw->len - raw->body);
    return sbuf_finish(&o, out, outlen);
}

/* ------------------------------------------------------------------ replies */

static int
reply_osip(const struct sip_msg *req, int code, const char *reason, const char *to_tag, const char *extra,
           char **out, size_t *outlen)
{
    struct sip_msg *r = sip_reply_new(req, code, reason, to_tag);
    int rc = -1;

    if (r == NULL)
        return -1;
    while (extra && *extra) {
        const char *colon = strchr(extra, ':'), *eol = strstr(extra, "\r\n");
        char name[128], value[1024];
        if (colon == NULL || eol == NULL || colon > eol)
            break;
        snprintf(name, sizeof name, "%.*s", (int)(colon - extra), extra);
        colon++;
        while (*colon == ' ')
            colon++;
        snprintf(value, sizeof value, "%.*s", (int)(eol - colon), colon);
        sip_msg_add_header(r, name, value);
        extra = eol + 2;
    }
    rc = sip_msg_serialize(r, out, outlen);
    sip_msg_free(r);
    return rc;
}

int
sip_reply_bytes(const struct sip_msg *req, int code, const char *reason, const char *to_tag, const char *extra,
                char **out, size_t *outlen)
{
    const struct sip_raw *raw = req->raw;
    struct sbuf o;
    char line[64];

    if (!sip_msg_raw_usable(req) || !req->request)
        return reply_osip(req, code, reason, to_tag, extra, out, outlen);
    SBUF_INIT(o);
    if (reason == NULL)
        reason = osip_message_get_reason(code);
    snprintf(line, sizeof line, "SIP/2.0 %d ", code);
    sbuf_puts(&o, line);
    sbuf_puts(&o, reason ? reason : "Unknown");
    sbuf_put(&o, "\r\n", 2);
    if (req->dirty & SIP_DIRTY_VIA) {
        int n = osip_list_size(&req->osip->vias);
        for (int i = 0; i < n; i++) {
            char *v = NULL;
            if (osip_via_to_str(osip_list_get(&req->osip->vias, i), &v) == 0) {
                sbuf_line(&o, "Via", v);
                osip_free(v);
            } else {
                o.fail = true;
            }
        }
    }
    for (unsigned i = 0; i < raw->nlines; i++) {
        const struct sip_raw_line *l = &raw->lines[i];
        const char *s = raw->buf + l->start;
        size_t n = l->end - l->start;
        switch (l->kind) {
        case SIP_RAW_VIA:
            if (!(req->dirty & SIP_DIRTY_VIA))
                sbuf_put(&o, s, n);
            break;
        case SIP_RAW_TO:
            if (code > 100 && to_tag && sip_msg_to_tag(req) == NULL) {
                sbuf_put(&o, s, n - 2);
                sbuf_puts(&o, ";tag=");
                sbuf_puts(&o, to_tag);
                sbuf_put(&o, "\r\n", 2);
            } else {
                sbuf_put(&o, s, n);
            }
            break;
        case SIP_RAW_FROM:
        case SIP_RAW_CALLID:
        case SIP_RAW_CSEQ:
            sbuf_put(&o, s, n);
            break;
        default:
            break;
        }
    }
    if (extra)
        sbuf_puts(&o, extra);
    sbuf_puts(&o, "Content-Length: 0\r\n\r\n");
    return sbuf_finish(&o, out, outlen);
}
