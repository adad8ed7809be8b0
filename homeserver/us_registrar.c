#define LOG_MODULE "registrar"
#include "us_registrar.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/sbuf.h"

struct us_registrar {
    struct event_base *base;
    struct us_registrar_opts opts;
    struct us_location *loc;
    struct store *st;
    struct event *purge_ev;
    us_registrar_change_fn *change_fn;   /* us_registrar_on_change() */
    void *change_arg;
};

/* A REGISTER waiting for its store commits. */
struct pending_reg {
    struct us_registrar *reg;
    struct px_req *req;
    char *aor;
    unsigned waiting;
    bool failed;
};

/* One Contact of the request, validated before anything is changed. */
struct reg_contact {
    char *uri;
    const char *instance;
    int reg_id;
    long long expires;
    int q;
    struct us_binding *existing;
};

void
us_registrar_on_change(struct us_registrar *reg, us_registrar_change_fn *fn, void *arg)
{
    reg->change_fn = fn;
    reg->change_arg = arg;
}

static void
expired_cb(const char *aor, const struct us_binding *b, void *arg)
{
    struct us_registrar *reg = arg;

    (void)b;
    if (reg->change_fn)
        reg->change_fn(aor, reg->change_arg);
}

static void
purge_cb(evutil_socket_t fd, short what, void *arg)
{
    struct us_registrar *reg = arg;
    int64_t now = clock_wall_s();
    size_t n = us_loc_purge(reg->loc, now, expired_cb, reg);

    if (n > 0) {
        log_debug("purged %zu expired bindings", n);
        store_reg_purge_expired(reg->st, now, NULL, NULL);
    }
}

struct us_registrar *
us_registrar_new(struct event_base *base, const struct us_registrar_opts *opts, struct us_location *loc,
                 struct store *st)
{
    struct us_registrar *reg = calloc(1, sizeof *reg);
    struct timeval tv = {5, 0};

    if (reg == NULL)
        return NULL;
    reg->base = base;
    reg->opts = *opts;
    reg->loc = loc;
    reg->st = st;
    reg->purge_ev = event_new(base, -1, EV_PERSIST, purge_cb, reg);
    event_add(reg->purge_ev, &tv);
    return reg;
}

void
us_registrar_set_opts(struct us_registrar *reg, const struct us_registrar_opts *opts)
{
    if (reg && opts)
        reg->opts = *opts;
}

void
us_registrar_free(struct us_registrar *reg)
{
    if (reg == NULL)
        return;
    if (reg->purge_ev)
        event_free(reg->purge_ev);
    free(reg);
}

static void
load_cb(const struct store_binding *sb, void *arg)
{
    struct us_registrar *reg = arg;
    struct us_aor *a;
    struct us_binding *b;

    if (sb->expires_at <= clock_wall_s())
        return;
    a = us_loc_get(reg->loc, sb->aor);
    if (a == NULL || (b = us_loc_binding_add(reg->loc, a)) == NULL)
        return;
    us_loc_set_str(&b->contact, sb->contact);
    us_loc_set_str(&b->instance, sb->instance);
    b->reg_id = sb->reg_id;
    us_loc_set_str(&b->epid, sb->epid);
    us_loc_set_str(&b->path, sb->path);
    us_loc_set_str(&b->call_id, sb->call_id);
    b->cseq = sb->cseq;
    b->expires_at = sb->expires_at;
    b->q = sb->q;
    us_loc_set_str(&b->received, sb->received);
    us_loc_set_str(&b->user_agent, sb->user_agent);
    b->registered_at = sb->registered_at;
}

long
us_registrar_load(struct us_registrar *reg)
{
    if (store_reg_load(reg->st, load_cb, reg) != 0)
        return -1;
    return (long)us_loc_binding_count(reg->loc);
}

/* ------------------------------------------------------------------ helpers */

static long long
parse_delta(const char *s, long long def)
{
    long long v = 0;

    if (s == NULL)
        return def;
    while (*s == ' ')
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    for (; isdigit((unsigned char)*s); s++) {
        v = v * 10 + (*s - '0');
        if (v > 0xffffffffLL)
            v = 0xffffffffLL;   /* RFC 3261 §20.19: larger values are capped */
    }
    return v;
}

static int
parse_q(const char *s)
{
    double d;
    char *end;

    if (s == NULL)
        return 1000;
    d = strtod(s, &end);
    if (end == s || d < 0 || d > 1)
        return -1;
    return (int)(d * 1000 + 0.5);
}

static char *
strip_angle(const char *v)
{
    size_t n;

    if (v == NULL)
        return NULL;
    if (*v == '"')
        v++;
    if (*v == '<')
        v++;
    n = strlen(v);
    while (n > 0 && (v[n - 1] == '>' || v[n - 1] == '"'))
        n--;
    return strndup(v, n);
}

/* epid: From;epid= when the client sends one (LCS style), else derived from the binding key. */
static void
make_epid(const struct sip_msg *msg, const struct reg_contact *c, char *out, size_t outlen)
{
    osip_generic_param_t *p = NULL;
    const char *key = c->instance ? c->instance : c->uri;
    uint64_t h;

    if (msg->osip->from && osip_generic_param_get_byname(&msg->osip->from->gen_params, "epid", &p) == 0 && p &&
        p->gvalue && strlen(p->gvalue) < outlen) {
        snprintf(out, outlen, "%s", p->gvalue);
        return;
    }
    h = hash_fnv1a64_str(HASH_FNV64_SEED, key);
    snprintf(out, outlen, "%08llx", (unsigned long long)(h & 0xffffffffULL));
}

static bool
has_option(const struct sip_msg *msg, const char *hname, const char *tag)
{
    const char *v;

    for (int i = 0; (v = sip_msg_header(msg, hname, i)) != NULL; i++) {
        char *copy = strdup(v), *p = copy, *t;
        bool found = false;
        while (copy && (t = strsep(&p, ",")) != NULL) {
            while (*t == ' ')
                t++;
            size_t n = strlen(t);
            while (n > 0 && t[n - 1] == ' ')
                t[--n] = '\0';
            if (strcasecmp(t, tag) == 0)
                found = true;
        }
        free(copy);
        if (found)
            return true;
    }
    return false;
}

/* RFC 3261 §8.2.2.3: every Require tag must be one we support. */
static const char *
unsupported_require(const struct sip_msg *msg, char *out, size_t outlen)
{
    static const char *const supported[] = {"path", "outbound", "gruu"};
    const char *v;

    out[0] = '\0';
    for (int i = 0; (v = sip_msg_header(msg, "require", i)) != NULL; i++) {
        char *copy = strdup(v), *p = copy, *t;
        while (copy && (t = strsep(&p, ",")) != NULL) {
            bool ok = false;
            while (*t == ' ')
                t++;
            size_t n = strlen(t);
            while (n > 0 && t[n - 1] == ' ')
                t[--n] = '\0';
            if (*t == '\0')
                continue;
            for (unsigned k = 0; k < sizeof supported / sizeof supported[0]; k++)
                ok = ok || strcasecmp(t, supported[k]) == 0;
            if (!ok)
                snprintf(out + strlen(out), outlen - strlen(out), "%s%s", out[0] ? ", " : "", t);
        }
        free(copy);
    }
    return out[0] ? out : NULL;
}

/* The Date header value, formatted once per second. */
static const char *
date_now(void)
{
    static char date[64];
    static time_t last;
    time_t t = time(NULL);
    struct tm tm;

    if (t != last) {
        gmtime_r(&t, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = t;
    }
    return date;
}

/*
 * The 200 OK: every current binding with its remaining time (RFC 3261 §10.3 step 8),
 * built from the request's bytes (sip_reply_bytes) with the Contact, Path and Date
 * lines appended: no osip message on this path.
 */
static void
reply_bindings(struct us_registrar *reg, struct px_req *req, const char *aor)
{
    struct sip_msg *msg = px_req_msg(req);
    struct us_aor *a = us_loc_find(reg->loc, aor);
    int64_t now = clock_wall_s();
    struct sbuf b;
    const char *pv;

    SBUF_INIT(b);
    if (a) {
        for (struct us_binding *bd = a->bindings; bd; bd = bd->next) {
            long long left = bd->expires_at - now;
            if (left <= 0)
                continue;
            sbuf_puts(&b, "Contact: <");
            sbuf_puts(&b, bd->contact);
            sbuf_puts(&b, ">;expires=");
            sbuf_putll(&b, left);
            if (bd->instance) {
                sbuf_puts(&b, ";+sip.instance=\"");
                sbuf_puts(&b, bd->instance);
                sbuf_put(&b, "\"", 1);
                if (bd->reg_id) {
                    sbuf_puts(&b, ";reg-id=");
                    sbuf_putll(&b, bd->reg_id);
                }
            }
            if (bd->q != 1000) {
                char frac[4] = {(char)('0' + bd->q % 1000 / 100), (char)('0' + bd->q % 100 / 10),
                                (char)('0' + bd->q % 10), '\0'};
                sbuf_puts(&b, ";q=");
                sbuf_putll(&b, bd->q / 1000);
                sbuf_put(&b, ".", 1);
                sbuf_puts(&b, frac);
            }
            sbuf_put(&b, "\r\n", 2);
        }
    }
    /* RFC 3327 §5.3: the Path is echoed when the UA supports it. */
    if (has_option(msg, "supported", "path")) {
        for (int i = 0; (pv = sip_msg_header(msg, "path", i)) != NULL; i++)
            sbuf_line(&b, "Path", pv);
        sbuf_puts(&b, "Supported: path\r\n");
    }
    sbuf_line(&b, "Date", date_now());
    if (b.fail)
        px_reply(req, 500, NULL);
    else
        px_reply_extra(req, 200, NULL, b.p);
    sbuf_free(&b);
}

static void
commit_done(int rc, void *arg)
{
    struct pending_reg *p = arg;

    if (rc != 0)
        p->failed = true;
    if (--p->waiting > 0)
        return;
    if (p->failed)
        px_reply(p->req, 500, "Registration Not Stored");
    else
        reply_bindings(p->reg, p->req, p->aor);
    if (!p->failed && p->reg->change_fn)
        p->reg->change_fn(p->aor, p->reg->change_arg);
    px_req_unref(p->req);
    free(p->aor);
    free(p);
}

static int
persist(struct us_registrar *reg, struct pending_reg *p, const char *aor, const struct us_binding *b)
{
    struct store_binding sb = {
        .aor = aor,
        .contact = b->contact,
        .instance = b->instance,
        .reg_id = b->reg_id,
        .epid = b->epid,
        .path = b->path,
        .call_id = b->call_id,
        .cseq = b->cseq,
        .expires_at = b->expires_at,
        .q = b->q,
        .received = b->received,
        .user_agent = b->user_agent,
        .registered_at = b->registered_at,
    };

    p->waiting++;
    if (store_reg_put(reg->st, &sb, commit_done, p) != 0) {
        p->waiting--;
        p->failed = true;
        return -1;
    }
    return 0;
}

static void
free_contacts(struct reg_contact *cs, int n)
{
    for (int i = 0; i < n; i++)
        free(cs[i].uri);
    free(cs);
}

/* ------------------------------------------------------------------ REGISTER */

enum px_verdict
us_registrar_handle(struct us_registrar *reg, struct px_req *req, const char *domain)
{
    struct sip_msg *msg = px_req_msg(req);
    osip_uri_t *to = msg->osip->to ? msg->osip->to->url : NULL;
    char aor[512], callid[256], unsup[256], received[128], srcs[80];
    const char *hexp = sip_msg_header(msg, "expires", 0);
    long long hdr_expires;
    int ncontacts = sip_msg_contact_count(msg);
    struct reg_contact *cs = NULL;
    struct us_aor *a;
    struct pending_reg *p;
    int64_t now = clock_wall_s();
    const char *ua = sip_msg_header(msg, "user-agent", 0);
    char *path = NULL;

    if (sip_uri_aor(to, aor, sizeof aor) == NULL) {
        px_reply(req, 400, "Missing User In To");
        return PX_ANSWERED;
    }
    if (domain && (to->host == NULL || strcasecmp(to->host, domain) != 0)) {
        px_reply(req, 403, "Domain Not Served Here");
        return PX_ANSWERED;
    }
    if (unsupported_require(msg, unsup, sizeof unsup)) {
        struct sip_msg *resp = px_reply_build(req, 420, NULL);
        if (resp) {
            sip_msg_add_header(resp, "Unsupported", unsup);
            px_reply_msg(req, resp);
            sip_msg_free(resp);
        }
        return PX_ANSWERED;
    }
    hdr_expires = parse_delta(hexp, reg->opts.default_expires);
    if (hdr_expires < 0) {
        px_reply(req, 400, "Bad Expires");
        return PX_ANSWERED;
    }
    sip_msg_call_id(msg, callid, sizeof callid);

    /* Contact: * (RFC 3261 §10.3 step 6): only with Expires: 0 and alone. */
    if (sip_msg_contact_is_star(msg)) {
        if (ncontacts != 1 || hexp == NULL || hdr_expires != 0) {
            px_reply(req, 400, "Invalid Wildcard Contact");
            return PX_ANSWERED;
        }
        a = us_loc_find(reg->loc, aor);
        if (a) {
            for (struct us_binding *b = a->bindings; b; b = b->next) {
                if (b->call_id && strcmp(b->call_id, callid) == 0 && msg->cseq <= b->cseq) {
                    px_reply(req, 500, "Out Of Order Request");
                    return PX_ANSWERED;
                }
            }
            while (a->bindings)
                us_loc_binding_remove(reg->loc, a, a->bindings);
            us_loc_release(reg->loc, a);
        }
        p = calloc(1, sizeof *p);
        if (p == NULL || (p->aor = strdup(aor)) == NULL) {
            free(p);
            px_reply(req, 500, NULL);
            return PX_ANSWERED;
        }
        p->reg = reg;
        p->req = req;
        px_req_ref(req);
        p->waiting = 1;
        if (store_reg_del_aor(reg->st, aor, commit_done, p) != 0) {
            p->waiting = 0;
            p->waiting = 1;
            commit_done(-1, p);
        }
        return PX_SUSPENDED;
    }

    /* Pass 1: validate every Contact before changing anything. */
    if (ncontacts > 0 && (cs = calloc((size_t)ncontacts, sizeof *cs)) == NULL) {
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    a = us_loc_find(reg->loc, aor);
    for (int i = 0; i < ncontacts; i++) {
        osip_contact_t *ct = sip_msg_contact(msg, i);
        struct reg_contact *c = &cs[i];
        const char *rid;

        if (ct == NULL || ct->url == NULL || (c->uri = sip_uri_str(ct->url)) == NULL) {
            free_contacts(cs, ncontacts);
            px_reply(req, 400, "Bad Contact");
            return PX_ANSWERED;
        }
        c->expires = parse_delta(sip_contact_param(ct, "expires"), hdr_expires);
        c->q = parse_q(sip_contact_param(ct, "q"));
        if (c->expires < 0 || c->q < 0) {
            free_contacts(cs, ncontacts);
            px_reply(req, 400, c->q < 0 ? "Bad q-value" : "Bad Contact Expires");
            return PX_ANSWERED;
        }
        c->instance = sip_contact_param(ct, "+sip.instance");
        rid = sip_contact_param(ct, "reg-id");
        c->reg_id = rid ? atoi(rid) : 0;
        if (c->expires > 0 && c->expires < reg->opts.min_expires) {
            /* RFC 3261 §10.3 step 7: 423 with Min-Expires. */
            struct sip_msg *resp = px_reply_build(req, 423, NULL);
            char mv[24];
            free_contacts(cs, ncontacts);
            snprintf(mv, sizeof mv, "%lld", reg->opts.min_expires);
            if (resp) {
                sip_msg_add_header(resp, "Min-Expires", mv);
                px_reply_msg(req, resp);
                sip_msg_free(resp);
            }
            return PX_ANSWERED;
        }
        if (c->expires > reg->opts.max_expires)
            c->expires = reg->opts.max_expires;
        if (a) {
            char *inst = c->instance ? strip_angle(c->instance) : NULL;
            c->existing = us_loc_binding_find(a, c->uri, inst, c->reg_id);
            free(inst);
            /* Same Call-ID with an older or equal CSeq: out of order (§10.3 step 7). */
            if (c->existing && c->existing->call_id && strcmp(c->existing->call_id, callid) == 0 &&
                msg->cseq <= c->existing->cseq) {
                free_contacts(cs, ncontacts);
                px_reply(req, 500, "Out Of Order Request");
                return PX_ANSWERED;
            }
        }
    }
    if (ncontacts == 0) {
        reply_bindings(reg, req, aor);   /* a query */
        return PX_ANSWERED;
    }

    /* Pass 2: apply, then persist; the 200 waits for the commit. */
    p = calloc(1, sizeof *p);
    if (p == NULL || (p->aor = strdup(aor)) == NULL) {
        free(p);
        free_contacts(cs, ncontacts);
        px_reply(req, 500, NULL);
        return PX_ANSWERED;
    }
    p->reg = reg;
    p->req = req;
    px_req_ref(req);
    p->waiting = 1;   /* held until every op is queued */
    snprintf(received, sizeof received, "%s:%s",
             px_req_proto(req) == TP_UDP ? "udp" : px_req_proto(req) == TP_TCP ? "tcp" : "tls",
             tp_addr_str(px_req_src(req), srcs, sizeof srcs));
    if (has_option(msg, "supported", "path") || sip_msg_header(msg, "path", 0)) {
        /* RFC 3327: the Path values, in order, become the route set towards this binding. */
        size_t len = 0;
        const char *pv;
        for (int i = 0; (pv = sip_msg_header(msg, "path", i)) != NULL; i++)
            len += strlen(pv) + 1;
        if (len > 0 && (path = calloc(1, len + 1)) != NULL)
            for (int i = 0; (pv = sip_msg_header(msg, "path", i)) != NULL; i++)
                snprintf(path + strlen(path), len + 1 - strlen(path), "%s%s", i ? "," : "", pv);
    }
    a = us_loc_get(reg->loc, aor);
    for (int i = 0; i < ncontacts && a; i++) {
        struct reg_contact *c = &cs[i];
        struct us_binding *b = c->existing;
        char epid[64];

        if (c->expires == 0) {
            if (b) {
                p->waiting++;
                if (store_reg_del(reg->st, aor, b->contact, commit_done, p) != 0) {
                    p->waiting--;
                    p->failed = true;
                }
                us_loc_binding_remove(reg->loc, a, b);
                /* Another Contact of this request may point at the removed binding. */
                for (int k = i + 1; k < ncontacts; k++)
                    if (cs[k].existing == b)
                        cs[k].existing = NULL;
            }
            continue;
        }
        if (b == NULL) {
            if (a->count >= reg->opts.max_contacts) {
                p->failed = true;
                continue;
            }
            b = us_loc_binding_add(reg->loc, a);
            if (b == NULL) {
                p->failed = true;
                continue;
            }
            b->registered_at = now;
            c->existing = b;
        } else if (strcmp(b->contact, c->uri) != 0) {
            /* Same instance, new contact URI: replace the stored row. */
            p->waiting++;
            if (store_reg_del(reg->st, aor, b->contact, commit_done, p) != 0) {
                p->waiting--;
                p->failed = true;
            }
        }
        make_epid(msg, c, epid, sizeof epid);
        us_loc_set_str(&b->contact, c->uri);
        {
            char *inst = c->instance ? strip_angle(c->instance) : NULL;
            us_loc_set_str(&b->instance, inst);
            free(inst);
        }
        b->reg_id = c->reg_id;
        if (b->epid == NULL)
            us_loc_set_str(&b->epid, epid);
        us_loc_set_str(&b->path, path);
        us_loc_set_str(&b->call_id, callid);
        b->cseq = msg->cseq;
        b->expires_at = now + c->expires;
        b->q = c->q;
        us_loc_set_str(&b->received, received);
        us_loc_set_str(&b->user_agent, ua);
        b->conn_id = px_req_conn_id(req);
        persist(reg, p, aor, b);
    }
    if (a)
        us_loc_release(reg->loc, a);
    free(path);
    free_contacts(cs, ncontacts);
    if (p->failed && p->waiting == 1) {
        /* nothing queued and something failed */
    }
    commit_done(p->failed ? -1 : 0, p);   /* drop the hold */
    return PX_SUSPENDED;
}
