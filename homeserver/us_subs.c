#define LOG_MODULE "subs"
#include "us_subs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

#define NBUCKETS 4096
#define KV_NS "sub"

struct sub {
    struct us_sub pub;        /* first: packages see this part */
    struct us_subs *ss;
    struct sub *inext;        /* by id */
    struct sub *rnext;        /* by resource */
    const struct us_pkg *pkg;
    char *call_id;
    char *remote_tag;
    char *local_uri;          /* To URI of the SUBSCRIBE */
    char *remote_uri;         /* From URI */
    char *remote_target;      /* Contact */
    char *route_set;          /* Record-Route, "<a>,<b>" */
    char *local_contact;
    uint32_t cseq;            /* last CSeq we used */
    uint32_t remote_cseq;
    uint64_t conn_id;
    struct px_uac *inflight;  /* the NOTIFY being sent */
    bool dirty;               /* state changed while one was in flight */
    bool terminated;          /* the last NOTIFY said terminated; freed when it is answered */
    bool fetch;               /* Expires: 0 on creation (RFC 6665 §4.4.3): observers never see it */
    const char *reason;       /* of termination: "timeout", "deactivated", "noresource" */
};

struct us_subs {
    struct event_base *base;
    struct px *px;
    struct store *st;
    struct us_subs_opts opts;
    struct us_pkg pkgs[8];
    unsigned npkgs;
    struct sub *by_id[NBUCKETS];
    struct sub *by_res[NBUCKETS];
    struct event *sweep;
    struct us_subs_stats stats;
    struct us_subs_observer obs[8];
    unsigned nobs;
};

static uint32_t
hash(const char *s)
{
    return hash_fnv1a32_str_lower(HASH_FNV32_BASIS, s) % NBUCKETS;
}

static const struct us_pkg *
find_pkg(struct us_subs *ss, const char *name)
{
    for (unsigned i = 0; i < ss->npkgs; i++)
        if (strcasecmp(ss->pkgs[i].name, name) == 0)
            return &ss->pkgs[i];
    return NULL;
}

static void
observe(struct us_subs *ss, struct sub *s, enum us_sub_event ev, const char *reason)
{
    if (s->fetch)
        return;
    for (unsigned i = 0; i < ss->nobs; i++)
        if (ss->obs[i].sub_event)
            ss->obs[i].sub_event(ss->obs[i].arg, &s->pub, ev, reason);
}

/* The Event header value of <pkg>'s NOTIFYs. */
static const char *
pkg_event(const struct us_pkg *pkg)
{
    return pkg->event ? pkg->event : pkg->name;
}

static struct sub *
find_sub(struct us_subs *ss, const char *id)
{
    for (struct sub *s = ss->by_id[hash(id)]; s; s = s->inext)
        if (strcmp(s->pub.id, id) == 0)
            return s;
    return NULL;
}

static void
link_sub(struct us_subs *ss, struct sub *s)
{
    uint32_t hi = hash(s->pub.id), hr = hash(s->pub.resource);

    s->inext = ss->by_id[hi];
    ss->by_id[hi] = s;
    s->rnext = ss->by_res[hr];
    ss->by_res[hr] = s;
    ss->stats.active++;
}

static void
unlink_sub(struct us_subs *ss, struct sub *s)
{
    struct sub **pp;

    for (pp = &ss->by_id[hash(s->pub.id)]; *pp; pp = &(*pp)->inext)
        if (*pp == s) {
            *pp = s->inext;
            break;
        }
    for (pp = &ss->by_res[hash(s->pub.resource)]; *pp; pp = &(*pp)->rnext)
        if (*pp == s) {
            *pp = s->rnext;
            break;
        }
    ss->stats.active--;
}

static void
sub_free(struct sub *s)
{
    if (s == NULL)
        return;
    px_uac_cancel(s->inflight);
    free(s->pub.id);
    free(s->pub.event);
    free(s->pub.resource);
    free(s->pub.watcher);
    free(s->call_id);
    free(s->remote_tag);
    free(s->local_uri);
    free(s->remote_uri);
    free(s->remote_target);
    free(s->route_set);
    free(s->local_contact);
    free(s);
}

/* ------------------------------------------------------------------ persistence */

/* Value: NUL-separated fields, "v2" first (format version; "v1" lacks created_at). */
static void
persist(struct us_subs *ss, struct sub *s, store_done_fn *done, void *arg)
{
    char buf[8192], num[5][32];
    const char *f[16];
    size_t n = 0, len = 0;

    snprintf(num[0], sizeof num[0], "%u", s->cseq);
    snprintf(num[1], sizeof num[1], "%u", s->remote_cseq);
    snprintf(num[2], sizeof num[2], "%lld", (long long)s->pub.expires_at);
    snprintf(num[3], sizeof num[3], "%llu", (unsigned long long)s->conn_id);
    snprintf(num[4], sizeof num[4], "%lld", (long long)s->pub.created_at);
    f[n++] = "v2";
    f[n++] = s->pub.event;
    f[n++] = s->pub.resource;
    f[n++] = s->pub.watcher;
    f[n++] = s->call_id;
    f[n++] = s->remote_tag;
    f[n++] = s->local_uri;
    f[n++] = s->remote_uri;
    f[n++] = s->remote_target;
    f[n++] = s->route_set ? s->route_set : "";
    f[n++] = s->local_contact ? s->local_contact : "";
    f[n++] = num[0];
    f[n++] = num[1];
    f[n++] = num[2];
    f[n++] = num[4];
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(f[i]) + 1;
        if (len + l > sizeof buf) {
            if (done)
                done(-1, arg);
            return;
        }
        memcpy(buf + len, f[i], l);
        len += l;
    }
    if (store_kv_put(ss->st, KV_NS, s->pub.id, buf, len, done, arg) != 0 && done)
        done(-1, arg);
}

static void
unpersist(struct us_subs *ss, struct sub *s)
{
    store_kv_del(ss->st, KV_NS, s->pub.id, NULL, NULL);
}

/* ------------------------------------------------------------------ NOTIFY */

static void send_notify(struct us_subs *ss, struct sub *s);

static void
remove_sub(struct us_subs *ss, struct sub *s)
{
    unlink_sub(ss, s);
    ss->stats.terminated++;
    sub_free(s);
}

/* RFC 6665 §4.2.2: which failed NOTIFYs end the subscription. */
static bool
notify_kills(int code)
{
    if (code == 481 || code == 408 || code >= 600)
        return true;
    if (code >= 400 && code < 500)
        return code != 401 && code != 407 && code != 491;
    return false;
}

static void
notify_done(int code, struct sip_msg *resp, void *arg)
{
    struct sub *s = arg;
    struct us_subs *ss = s->ss;

    s->inflight = NULL;
    if (code >= 200 && code < 300)
        ss->stats.notify_ok++;
    else
        ss->stats.notify_failed++;
    if (s->terminated) {
        remove_sub(ss, s);
        return;
    }
    /* A transport failure (503 without a response) counts as no response. */
    if (notify_kills(code) || (code == 503 && resp == NULL)) {
        log_info("subscription %s of %s to %s ended: NOTIFY got %d", s->pub.id, s->pub.watcher,
                 s->pub.resource, code);
        s->terminated = true;   /* observers' us_subs_foreach() no longer sees it */
        observe(ss, s, US_SUB_TERMINATED, "deactivated");
        unpersist(ss, s);
        remove_sub(ss, s);
        return;
    }
    if (s->dirty) {
        s->dirty = false;
        send_notify(ss, s);
    }
}

/* Sends the current state (RFC 6665 §4.2.2; Subscription-State §8.2.3). */
static void
send_notify(struct us_subs *ss, struct sub *s)
{
    struct px_dialog d;
    char hdr[512];
    char *body = NULL, *ctype = NULL;
    size_t blen = 0;
    int64_t left = s->pub.expires_at - clock_wall_s();

    if (s->inflight) {
        s->dirty = true;
        return;
    }
    s->pub.seq = s->cseq;   /* CSeq counts our NOTIFYs (it starts at 0) */
    if ((s->pkg->body_ct ? s->pkg->body_ct(s->pkg->arg, &s->pub, &body, &blen, &ctype)
                         : s->pkg->body(s->pkg->arg, &s->pub, &body, &blen)) != 0) {
        free(body);
        body = NULL;
        blen = 0;
    }
    if (s->terminated)
        snprintf(hdr, sizeof hdr, "Event: %s\r\nSubscription-State: terminated;reason=%s\r\n",
                 pkg_event(s->pkg), s->reason ? s->reason : "timeout");
    else
        snprintf(hdr, sizeof hdr, "Event: %s\r\nSubscription-State: active;expires=%lld\r\n", pkg_event(s->pkg),
                 (long long)(left > 0 ? left : 0));
    s->cseq++;
    if (!s->terminated)
        persist(ss, s, NULL, NULL);   /* the CSeq must not go back after a restart */
    memset(&d, 0, sizeof d);
    d.call_id = s->call_id;
    d.local_uri = s->local_uri;
    d.local_tag = s->pub.id;
    d.remote_uri = s->remote_uri;
    d.remote_tag = s->remote_tag;
    d.remote_target = s->remote_target;
    d.route_set = s->route_set && s->route_set[0] ? s->route_set : NULL;
    d.local_contact = s->local_contact && s->local_contact[0] ? s->local_contact : NULL;
    d.cseq = s->cseq;
    d.conn_id = s->conn_id;
    s->inflight = px_send_in_dialog(ss->px, &d, SIP_NOTIFY, hdr, body ? (ctype ? ctype : s->pkg->ctype) : NULL,
                                    body, blen, notify_done, s);
    free(body);
    free(ctype);
    ss->stats.notify_sent++;
    if (s->inflight == NULL) {
        log_info("subscription %s: cannot send NOTIFY to %s", s->pub.id, s->remote_target);
        if (s->terminated)
            remove_sub(ss, s);
    }
}

/* Ends <s> with a final NOTIFY; it is freed when that NOTIFY is answered. */
static void
terminate(struct us_subs *ss, struct sub *s, const char *reason)
{
    if (s->terminated)
        return;
    s->terminated = true;
    s->reason = reason;
    observe(ss, s, US_SUB_TERMINATED, reason);
    unpersist(ss, s);
    if (s->inflight) {   /* the last word must be "terminated": replace the pending one */
        px_uac_cancel(s->inflight);
        s->inflight = NULL;
    }
    s->dirty = false;
    send_notify(ss, s);
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct us_subs *ss = arg;
    int64_t now = clock_wall_s();

    (void)fd;
    (void)what;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        for (struct sub *s = ss->by_id[i], *next; s; s = next) {
            next = s->inext;   /* terminate() may free s when the NOTIFY cannot be sent */
            if (!s->terminated && s->pub.expires_at <= now)
                terminate(ss, s, "timeout");
        }
    }
}

/* ------------------------------------------------------------------ API */

struct us_subs *
us_subs_new(struct event_base *base, struct px *px, struct store *st, const struct us_subs_opts *opts)
{
    struct us_subs *ss = calloc(1, sizeof *ss);
    struct timeval tv = {1, 0};

    if (ss == NULL)
        return NULL;
    ss->base = base;
    ss->px = px;
    ss->st = st;
    ss->opts = *opts;
    ss->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, ss);
    if (ss->sweep == NULL) {
        free(ss);
        return NULL;
    }
    event_add(ss->sweep, &tv);
    return ss;
}

void
us_subs_free(struct us_subs *ss)
{
    if (ss == NULL)
        return;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        for (struct sub *s = ss->by_id[i], *next; s; s = next) {
            next = s->inext;
            sub_free(s);
        }
    }
    event_free(ss->sweep);
    free(ss);
}

int
us_subs_observe(struct us_subs *ss, const struct us_subs_observer *ob)
{
    if (ss == NULL || ob == NULL || ss->nobs >= sizeof ss->obs / sizeof ss->obs[0])
        return -1;
    ss->obs[ss->nobs++] = *ob;
    return 0;
}

int
us_subs_add_pkg(struct us_subs *ss, const struct us_pkg *pkg)
{
    if (ss == NULL || pkg == NULL || pkg->name == NULL || pkg->body == NULL ||
        ss->npkgs >= sizeof ss->pkgs / sizeof ss->pkgs[0])
        return -1;
    ss->pkgs[ss->npkgs++] = *pkg;
    return 0;
}

int
us_subs_add_pkg_observer(struct us_subs *ss, const struct us_pkg *pkg, const struct us_subs_observer *ob,
                         void *arg)
{
    struct us_pkg p = *pkg;
    struct us_subs_observer o = *ob;

    p.arg = arg;
    o.arg = arg;
    return us_subs_add_pkg(ss, &p) != 0 || us_subs_observe(ss, &o) != 0 ? -1 : 0;
}

const struct us_subs_stats *
us_subs_stats(const struct us_subs *ss)
{
    return &ss->stats;
}

void
us_subs_foreach(struct us_subs *ss, const char *event, const char *resource,
                void (*fn)(const struct us_sub *s, void *arg), void *arg)
{
    for (struct sub *s = ss->by_res[hash(resource)], *next; s; s = next) {
        next = s->rnext;
        if (!s->terminated && strcasecmp(s->pub.resource, resource) == 0 &&
            (event == NULL || strcasecmp(s->pub.event, event) == 0))
            fn(&s->pub, arg);
    }
}

void
us_subs_changed(struct us_subs *ss, const char *event, const char *resource)
{
    if (ss == NULL || resource == NULL)
        return;
    for (struct sub *s = ss->by_res[hash(resource)], *next; s; s = next) {
        next = s->rnext;   /* send_notify() never frees an active subscription */
        if (!s->terminated && strcasecmp(s->pub.resource, resource) == 0 &&
            (event == NULL || strcasecmp(s->pub.event, event) == 0))
            send_notify(ss, s);
    }
    if (event == NULL)
        return;
    for (unsigned i = 0; i < ss->nobs; i++)
        if (ss->obs[i].changed)
            ss->obs[i].changed(ss->obs[i].arg, event, resource);
}

/* Next NUL-separated field of a stored value, or NULL past the end. */
static const char *
field(const char **cur, const char *end)
{
    const char *s = *cur, *z;

    if (s >= end || (z = memchr(s, '\0', (size_t)(end - s))) == NULL)
        return NULL;
    *cur = z + 1;
    return s;
}

static char *
dup_or_null(const char *s)
{
    return s && s[0] ? strdup(s) : NULL;
}

static void
load_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct us_subs *ss = arg;
    const char *cur = value, *end = (const char *)value + len;
    const char *f[15];
    struct sub *s;
    int nf;

    nf = len >= 3 && memcmp(value, "v1", 3) == 0 ? 14 : 15;
    for (int i = 0; i < nf; i++)
        if ((f[i] = field(&cur, end)) == NULL) {
            log_warn("stored subscription %s is malformed: dropped", key);
            store_kv_del(ss->st, KV_NS, key, NULL, NULL);
            return;
        }
    if ((strcmp(f[0], "v1") != 0 && strcmp(f[0], "v2") != 0) || find_pkg(ss, f[1]) == NULL || find_sub(ss, key)) {
        store_kv_del(ss->st, KV_NS, key, NULL, NULL);
        return;
    }
    if ((s = calloc(1, sizeof *s)) == NULL)
        return;
    s->ss = ss;
    s->pkg = find_pkg(ss, f[1]);
    s->pub.id = strdup(key);
    s->pub.event = strdup(f[1]);
    s->pub.resource = strdup(f[2]);
    s->pub.watcher = strdup(f[3]);
    s->call_id = strdup(f[4]);
    s->remote_tag = strdup(f[5]);
    s->local_uri = strdup(f[6]);
    s->remote_uri = strdup(f[7]);
    s->remote_target = strdup(f[8]);
    s->route_set = dup_or_null(f[9]);
    s->local_contact = dup_or_null(f[10]);
    s->cseq = (uint32_t)strtoul(f[11], NULL, 10);
    s->remote_cseq = (uint32_t)strtoul(f[12], NULL, 10);
    s->pub.expires_at = strtoll(f[13], NULL, 10);
    s->pub.created_at = nf > 14 ? strtoll(f[14], NULL, 10) : clock_wall_s();
    if (!s->pub.id || !s->pub.event || !s->pub.resource || !s->pub.watcher || !s->call_id || !s->remote_tag ||
        !s->local_uri || !s->remote_uri || !s->remote_target) {
        sub_free(s);
        return;
    }
    link_sub(ss, s);
}

long
us_subs_load(struct us_subs *ss)
{
    long n = 0;
    int64_t now = clock_wall_s();

    if (store_kv_load(ss->st, KV_NS, load_cb, ss) != 0)
        return -1;
    /* Watchers resume: expired ones get their final NOTIFY, the others the current state. */
    for (unsigned i = 0; i < NBUCKETS; i++) {
        for (struct sub *s = ss->by_id[i], *next; s; s = next) {
            next = s->inext;
            n++;
            if (s->pub.expires_at <= now) {
                terminate(ss, s, "timeout");
            } else {
                observe(ss, s, US_SUB_ACTIVE, "loaded");
                send_notify(ss, s);
            }
        }
    }
    return n;
}

/* ------------------------------------------------------------------ SUBSCRIBE */

struct pending {
    struct us_subs *ss;
    struct px_req *req;
    char *id;                 /* the subscription, or NULL for a fetch */
    long long expires;
};

static void
reply_ok(struct px_req *req, long long expires, const char *contact, const struct us_pkg *pkg)
{
    struct sip_msg *resp = px_reply_build(req, 200, NULL);
    char v[32];

    if (resp == NULL)
        return;
    snprintf(v, sizeof v, "%lld", expires);
    sip_msg_add_header(resp, "Expires", v);
    if (pkg->eventlist)
        sip_msg_add_header(resp, "Require", "eventlist");   /* RFC 4662 §4.3 */
    if (contact) {
        char c[600];
        snprintf(c, sizeof c, "<%s>", contact);
        osip_message_set_contact(resp->osip, c);
    }
    px_reply_msg(req, resp);
    sip_msg_free(resp);
}

static void
created_done(int rc, void *arg)
{
    struct pending *p = arg;
    struct sub *s = find_sub(p->ss, p->id);

    if (rc != 0 || s == NULL) {
        px_reply(p->req, 500, "Subscription Not Stored");
        if (s) {
            unlink_sub(p->ss, s);
            sub_free(s);
        }
    } else {
        reply_ok(p->req, p->expires, s->local_contact, s->pkg);
        observe(p->ss, s, US_SUB_ACTIVE, "subscribe");
        send_notify(p->ss, s);   /* RFC 6665 §4.2.1.1: the NOTIFY right after the 200 */
    }
    px_req_unref(p->req);
    free(p->id);
    free(p);
}

static long long
header_expires(const struct sip_msg *msg, long long def)
{
    const char *v = sip_msg_header(msg, "expires", 0);
    char *end;
    long long n;

    if (v == NULL)
        return def;
    n = strtoll(v, &end, 10);
    if (end == v || n < 0)
        return -1;
    return n;
}

/* Event: header value without parameters into <out>; NULL when absent. */
static const char *
event_name(const struct sip_msg *msg, char *out, size_t outlen)
{
    const char *v = sip_msg_header(msg, "event", 0);
    size_t n;

    if (v == NULL)
        v = sip_msg_header(msg, "o", 0);   /* compact form (RFC 6665 §8.2.1) */
    if (v == NULL)
        return NULL;
    while (*v == ' ')
        v++;
    n = strcspn(v, "; \t");
    if (n == 0 || n >= outlen)
        return NULL;
    memcpy(out, v, n);
    out[n] = '\0';
    return out;
}

static void
reply_489(struct us_subs *ss, struct px_req *req)
{
    struct sip_msg *resp = px_reply_build(req, 489, NULL);
    char allow[256] = "";

    if (resp == NULL)
        return;
    for (unsigned i = 0; i < ss->npkgs; i++)
        if (ss->pkgs[i].event == NULL)
            snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s", allow[0] ? ", " : "",
                     ss->pkgs[i].name);
    sip_msg_add_header(resp, "Allow-Events", allow);   /* RFC 6665 §8.2.2 */
    px_reply_msg(req, resp);
    sip_msg_free(resp);
}

/* Record-Route of the request, in order, as "<a>,<b>" (RFC 3261 §12.1.1), malloc'd or NULL. */
static char *
record_routes(const struct sip_msg *msg)
{
    osip_record_route_t *rr;
    size_t cap = 0, len = 0;
    char *out = NULL;

    for (int i = 0; (rr = osip_list_get(&msg->osip->record_routes, i)) != NULL; i++) {
        char *u = rr->url ? sip_uri_str(rr->url) : NULL;
        size_t need;
        if (u == NULL)
            continue;
        need = len + strlen(u) + 4;
        if (need > cap) {
            char *n = realloc(out, need * 2);
            if (n == NULL) {
                free(u);
                break;
            }
            out = n;
            cap = need * 2;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s<%s>", len ? "," : "", u);
        free(u);
    }
    return out;
}

static enum px_verdict
refresh(struct us_subs *ss, struct px_req *req, long long expires)
{
    struct sip_msg *msg = px_req_msg(req);
    struct sub *s = find_sub(ss, sip_msg_to_tag(msg));
    char cid[256];
    const char *ft = sip_msg_from_tag(msg);

    if (s == NULL || s->terminated || strcmp(s->call_id, sip_msg_call_id(msg, cid, sizeof cid)) != 0 || !ft ||
        strcmp(s->remote_tag, ft) != 0) {
        px_reply(req, 481, NULL);   /* RFC 6665 §4.2.1.2 */
        return PX_ANSWERED;
    }
    if (msg->cseq <= s->remote_cseq && s->remote_cseq != 0) {
        px_reply(req, 500, "CSeq Out Of Order");   /* RFC 3261 §12.2.2 */
        return PX_ANSWERED;
    }
    s->remote_cseq = msg->cseq;
    if (expires == 0) {
        reply_ok(req, 0, s->local_contact, s->pkg);
        terminate(ss, s, "timeout");   /* RFC 6665 §4.2.1.4: unsubscribe, final NOTIFY */
        return PX_ANSWERED;
    }
    s->pub.expires_at = clock_wall_s() + expires;
    if (sip_msg_contact_count(msg) > 0) {   /* §12.2.2: a target refresh */
        char *c = sip_msg_contact(msg, 0)->url ? sip_uri_str(sip_msg_contact(msg, 0)->url) : NULL;
        if (c) {
            free(s->remote_target);
            s->remote_target = c;
        }
    }
    if (px_req_conn_id(req))
        s->conn_id = px_req_conn_id(req);
    persist(ss, s, NULL, NULL);
    reply_ok(req, expires, s->local_contact, s->pkg);
    observe(ss, s, US_SUB_REFRESHED, "refresh");
    send_notify(ss, s);   /* RFC 6665 §4.2.1.2: a refresh gets a NOTIFY too */
    return PX_ANSWERED;
}

static enum px_verdict handle(struct us_subs *ss, struct px_req *req, const char *resource,
                              const struct us_pkg *pkg);

enum px_verdict
us_subs_handle(struct us_subs *ss, struct px_req *req, const char *resource)
{
    const struct us_pkg *pkg;
    char ev[64];

    if (event_name(px_req_msg(req), ev, sizeof ev) == NULL || (pkg = find_pkg(ss, ev)) == NULL || pkg->event) {
        reply_489(ss, req);   /* RFC 6665 §4.2.1.1 */
        return PX_ANSWERED;
    }
    return handle(ss, req, resource, pkg);
}

enum px_verdict
us_subs_handle_pkg(struct us_subs *ss, struct px_req *req, const char *resource, const char *pkg_name)
{
    const struct us_pkg *pkg = find_pkg(ss, pkg_name);

    if (pkg == NULL) {
        px_reply(req, 500, "No Such Event Package");
        return PX_ANSWERED;
    }
    return handle(ss, req, resource, pkg);
}

static enum px_verdict
handle(struct us_subs *ss, struct px_req *req, const char *resource, const struct us_pkg *pkg)
{
    struct sip_msg *msg = px_req_msg(req);
    char watcher[512], tag[40], cid[256], host[128];
    long long expires;
    struct sub *s = NULL;
    struct pending *p = NULL;
    osip_contact_t *ct;
    uint16_t port;

    expires = header_expires(msg, ss->opts.default_expires);
    if (expires < 0) {
        px_reply(req, 400, "Bad Expires");
        return PX_ANSWERED;
    }
    if (expires > 0 && expires < ss->opts.min_expires) {
        struct sip_msg *resp = px_reply_build(req, 423, NULL);
        char v[32];
        if (resp) {
            snprintf(v, sizeof v, "%lld", ss->opts.min_expires);
            sip_msg_add_header(resp, "Min-Expires", v);
            px_reply_msg(req, resp);
            sip_msg_free(resp);
        }
        return PX_ANSWERED;
    }
    if (expires > ss->opts.max_expires)
        expires = ss->opts.max_expires;
    if (sip_msg_to_tag(msg) != NULL)
        return refresh(ss, req, expires);

    /* A new subscription (RFC 6665 §4.2.1.1). */
    if (msg->osip->from == NULL || sip_uri_aor(msg->osip->from->url, watcher, sizeof watcher) == NULL) {
        px_reply(req, 400, "Bad From");
        return PX_ANSWERED;
    }
    if (pkg->authorize) {
        int code = pkg->authorize(pkg->arg, resource, watcher);
        if (code != 0) {
            px_reply(req, code, NULL);
            return PX_ANSWERED;
        }
    }
    ct = sip_msg_contact(msg, 0);
    if (ct == NULL || ct->url == NULL || sip_msg_from_tag(msg) == NULL) {
        px_reply(req, 400, "Missing Contact Or From Tag");
        return PX_ANSWERED;
    }
    if (ss->stats.active >= ss->opts.max_subs && expires > 0) {
        px_reply(req, 503, "Too Many Subscriptions");
        return PX_ANSWERED;
    }
    sip_make_tag(msg, tag, sizeof tag);   /* what px_reply_build() puts in To */
    if (find_sub(ss, tag)) {
        px_reply(req, 500, "Subscription Tag Collision");
        return PX_ANSWERED;
    }
    if ((s = calloc(1, sizeof *s)) == NULL)
        goto fail;
    s->ss = ss;
    s->pkg = pkg;
    s->pub.id = strdup(tag);
    s->pub.event = strdup(pkg->name);
    s->pub.resource = strdup(resource);
    s->pub.watcher = strdup(watcher);
    s->pub.expires_at = clock_wall_s() + expires;
    s->pub.created_at = clock_wall_s();
    s->call_id = strdup(sip_msg_call_id(msg, cid, sizeof cid));
    s->remote_tag = strdup(sip_msg_from_tag(msg));
    s->local_uri = msg->osip->to && msg->osip->to->url ? sip_uri_str(msg->osip->to->url) : NULL;
    s->remote_uri = sip_uri_str(msg->osip->from->url);
    s->remote_target = sip_uri_str(ct->url);
    s->route_set = record_routes(msg);
    s->cseq = 0;
    s->remote_cseq = msg->cseq;
    s->conn_id = px_req_conn_id(req);
    if (px_local_hostport(ss->px, px_req_proto(req), host, sizeof host, &port) == 0) {
        char c[400];
        const char *at = strchr(resource, '@');
        snprintf(c, sizeof c, "sip:%.*s@%s:%u;transport=%s", at ? (int)(at - resource) : 0, resource, host, port,
                 px_req_proto(req) == TP_TCP ? "tcp" : px_req_proto(req) == TP_TLS ? "tls" : "udp");
        s->local_contact = strdup(c);
    }
    if (!s->pub.id || !s->pub.event || !s->pub.resource || !s->pub.watcher || !s->call_id || !s->remote_tag ||
        !s->local_uri || !s->remote_uri || !s->remote_target || !s->local_contact)
        goto fail;
    ss->stats.created++;
    if (expires == 0) {
        /* A fetch (RFC 6665 §4.4.3): one terminated NOTIFY with the state, nothing stored. */
        s->fetch = true;
        link_sub(ss, s);
        reply_ok(req, 0, s->local_contact, s->pkg);
        terminate(ss, s, "timeout");
        return PX_ANSWERED;
    }
    link_sub(ss, s);
    if ((p = calloc(1, sizeof *p)) == NULL || (p->id = strdup(tag)) == NULL) {
        free(p);
        unlink_sub(ss, s);
        goto fail;
    }
    p->ss = ss;
    p->req = req;
    p->expires = expires;
    px_req_ref(req);
    persist(ss, s, created_done, p);   /* the 200 waits for the commit */
    return PX_SUSPENDED;
fail:
    sub_free(s);
    px_reply(req, 500, "Out Of Memory");
    return PX_ANSWERED;
}
