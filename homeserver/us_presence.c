#define LOG_MODULE "presence"
#include "us_presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "us_pidf.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

#define NBUCKETS 1024
#define KV_NS "pub"
#define PIDF_CTYPE "application/pidf+xml"
#define EVENT "presence"

/* One publication (RFC 3903 §6: event state identified by its entity-tag). */
struct pub {
    struct pub *next;
    char etag[40];
    char *doc;
    size_t len;
    int64_t expires_at;
    int64_t updated;          /* when the document last changed (newest first in the composition) */
    char *source;             /* "udp:1.2.3.4:5060": the flow it came from (matches a binding's) */
};

struct presentity {
    struct presentity *hnext;
    char *aor;
    struct pub *pubs;
    unsigned npubs;
};

struct us_presence {
    struct us_presence_opts opts;
    struct store *st;
    struct us_subs *subs;
    struct us_location *loc;
    struct us_lists *lists;
    struct presentity *tab[NBUCKETS];
    struct event *sweep;
    uint64_t etag_seq;
};

static uint32_t
hash(const char *s)
{
    return hash_fnv1a32_str(HASH_FNV32_BASIS, s) % NBUCKETS;
}

static struct presentity *
find(struct us_presence *pa, const char *aor, bool create)
{
    uint32_t h = hash(aor);
    struct presentity *p;

    for (p = pa->tab[h]; p; p = p->hnext)
        if (strcmp(p->aor, aor) == 0)
            return p;
    if (!create || (p = calloc(1, sizeof *p)) == NULL)
        return NULL;
    if ((p->aor = strdup(aor)) == NULL) {
        free(p);
        return NULL;
    }
    p->hnext = pa->tab[h];
    pa->tab[h] = p;
    return p;
}

static void
pub_free(struct pub *b)
{
    if (b) {
        free(b->doc);
        free(b->source);
        free(b);
    }
}

static struct pub *
find_pub(struct presentity *p, const char *etag)
{
    for (struct pub *b = p ? p->pubs : NULL; b; b = b->next)
        if (strcmp(b->etag, etag) == 0)
            return b;
    return NULL;
}

static void
unlink_pub(struct presentity *p, struct pub *b)
{
    for (struct pub **pp = &p->pubs; *pp; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            p->npubs--;
            return;
        }
}

static void
store_key(char *out, size_t outlen, const char *aor, const char *etag)
{
    snprintf(out, outlen, "%s %s", aor, etag);
}

static void
unpersist(struct us_presence *pa, const char *aor, const char *etag, store_done_fn *done, void *arg)
{
    char key[600];

    store_key(key, sizeof key, aor, etag);
    if (store_kv_del(pa->st, KV_NS, key, done, arg) != 0 && done)
        done(-1, arg);
}

/* Value: "v1\0<expires_at>\0<updated>\0<source>\0<document>". */
static void
persist(struct us_presence *pa, const char *aor, const struct pub *b, store_done_fn *done, void *arg)
{
    char key[600], head[256];
    size_t hl;
    char *val;

    store_key(key, sizeof key, aor, b->etag);
    hl = (size_t)snprintf(head, sizeof head, "v1%c%lld%c%lld%c%s%c", 0, (long long)b->expires_at, 0,
                          (long long)b->updated, 0, b->source ? b->source : "", 0);
    if (hl >= sizeof head || (val = malloc(hl + b->len)) == NULL) {
        if (done)
            done(-1, arg);
        return;
    }
    memcpy(val, head, hl);
    memcpy(val + hl, b->doc, b->len);
    if (store_kv_put(pa->st, KV_NS, key, val, hl + b->len, done, arg) != 0 && done)
        done(-1, arg);
    free(val);
}

/* ------------------------------------------------------------------ composition */

static int
cmp_updated(const void *a, const void *b)
{
    const struct pub *x = *(const struct pub *const *)a, *y = *(const struct pub *const *)b;

    return x->updated < y->updated ? 1 : x->updated > y->updated ? -1 : 0;
}

char *
us_presence_document(struct us_presence *pa, const char *aor, const char *watcher, size_t *len)
{
    struct presentity *p = find(pa, aor, false);
    struct us_aor *a = us_loc_find(pa->loc, aor);
    int64_t now = clock_wall_s();
    struct us_pidf_part parts[64];
    struct pub *sorted[32];
    size_t n = 0, ns = 0;
    unsigned live = 0;
    char entity[600];

    snprintf(entity, sizeof entity, "sip:%s", aor);
    for (struct us_binding *b = a ? a->bindings : NULL; b; b = b->next)
        if (b->expires_at > now)
            live++;
    /* Offline: no endpoint registered, or the watcher is blocked (design §3). */
    if (live == 0 || (watcher && pa->lists && us_lists_blocks(pa->lists, aor, watcher)))
        return us_pidf_offline(entity, len);
    for (struct pub *b = p ? p->pubs : NULL; b && ns < 32; b = b->next)
        if (b->expires_at > now)
            sorted[ns++] = b;
    qsort(sorted, ns, sizeof sorted[0], cmp_updated);
    for (size_t i = 0; i < ns; i++) {
        parts[n].doc = sorted[i]->doc;
        parts[n].len = sorted[i]->len;
        parts[n].tuple_id = NULL;
        parts[n].contact = NULL;
        n++;
    }
    /* Endpoints that published nothing (matched by the flow they registered from). */
    for (struct us_binding *b = a->bindings; b && n < 64; b = b->next) {
        bool covered = false;
        if (b->expires_at <= now)
            continue;
        for (size_t i = 0; i < ns && !covered; i++)
            covered = b->received && sorted[i]->source && strcmp(b->received, sorted[i]->source) == 0;
        if (covered)
            continue;
        parts[n].doc = NULL;
        parts[n].len = 0;
        parts[n].tuple_id = b->epid;
        parts[n].contact = b->contact;
        n++;
    }
    return us_pidf_compose(entity, parts, n, len);
}

static int
pkg_body(void *arg, const struct us_sub *s, char **body, size_t *len)
{
    struct us_presence *pa = arg;

    *body = us_presence_document(pa, s->resource, s->watcher, len);
    return *body ? 0 : -1;
}

static int
pkg_authorize(void *arg, const char *resource, const char *watcher)
{
    struct us_presence *pa = arg;

    if (pa->lists && us_lists_blocks(pa->lists, resource, watcher))
        return 403;   /* design §3: a blocked user cannot watch */
    return 0;
}

void
us_presence_bindings_changed(const char *aor, void *arg)
{
    struct us_presence *pa = arg;

    us_subs_changed(pa->subs, EVENT, aor);
}

/* ------------------------------------------------------------------ expiry */

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct us_presence *pa = arg;
    int64_t now = clock_wall_s();

    (void)fd;
    (void)what;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        for (struct presentity *p = pa->tab[i]; p; p = p->hnext) {
            bool changed = false;
            for (struct pub *b = p->pubs, *next; b; b = next) {
                next = b->next;
                if (b->expires_at > now)
                    continue;
                unpersist(pa, p->aor, b->etag, NULL, NULL);
                unlink_pub(p, b);
                pub_free(b);
                changed = true;
            }
            if (changed)
                us_subs_changed(pa->subs, EVENT, p->aor);   /* RFC 3903 §6 step 3: expired state */
        }
    }
}

/* ------------------------------------------------------------------ PUBLISH */

struct pending {
    struct us_presence *pa;
    struct px_req *req;
    char *aor;
    char etag[40];            /* the new entity-tag, "" for a removal */
    long long expires;
    bool failed;
    unsigned waiting;
};

static void
publish_done(int rc, void *arg)
{
    struct pending *w = arg;

    if (rc != 0)
        w->failed = true;
    if (--w->waiting > 0)
        return;
    if (w->failed) {
        px_reply(w->req, 500, "Publication Not Stored");
    } else {
        struct sip_msg *resp = px_reply_build(w->req, 200, NULL);
        char v[32];
        if (resp) {
            if (w->etag[0])
                sip_msg_add_header(resp, "SIP-ETag", w->etag);   /* RFC 3903 §11.3.1 */
            snprintf(v, sizeof v, "%lld", w->expires);
            sip_msg_add_header(resp, "Expires", v);
            px_reply_msg(w->req, resp);
            sip_msg_free(resp);
        }
    }
    us_subs_changed(w->pa->subs, EVENT, w->aor);
    px_req_unref(w->req);
    free(w->aor);
    free(w);
}

static void
new_etag(struct us_presence *pa, char *out, size_t outlen)
{
    char rnd[48];

    sip_make_branch(rnd, sizeof rnd);   /* random + counter */
    snprintf(out, outlen, "%.20s%llx", rnd + 7, (unsigned long long)++pa->etag_seq);
}

static bool
ctype_is(const struct sip_msg *msg, const char *want)
{
    char ct[128];
    const char *c = sip_msg_content_type(msg, ct, sizeof ct);
    size_t n = strlen(want);

    return c && strncasecmp(c, want, n) == 0 && (c[n] == '\0' || c[n] == ';' || c[n] == ' ');
}

static void
reply_with(struct px_req *req, int code, const char *reason, const char *name, const char *value)
{
    struct sip_msg *resp = px_reply_build(req, code, reason);

    if (resp == NULL)
        return;
    sip_msg_add_header(resp, name, value);
    px_reply_msg(req, resp);
    sip_msg_free(resp);
}

enum px_verdict
us_presence_publish(struct us_presence *pa, struct px_req *req, const char *aor)
{
    struct sip_msg *msg = px_req_msg(req);
    const char *ev = sip_msg_header(msg, "event", 0), *ifm = sip_msg_header(msg, "sip-if-match", 0);
    const char *body, *xv;
    char from[512], err[200], reason[256], srcs[80], src[100];
    size_t blen = 0;
    long long expires = pa->opts.default_expires;
    struct presentity *p;
    struct pub *b = NULL;
    struct pending *w;
    char *end;

    if (ev == NULL)
        ev = sip_msg_header(msg, "o", 0);
    if (ev == NULL || strncasecmp(ev, EVENT, strlen(EVENT)) != 0 ||
        (ev[strlen(EVENT)] != '\0' && ev[strlen(EVENT)] != ';' && ev[strlen(EVENT)] != ' ')) {
        reply_with(req, 489, NULL, "Allow-Events", EVENT);   /* RFC 3903 §6 step 2 */
        return PX_ANSWERED;
    }
    /* Only the user publishes its own state (authenticated as From when auth is on). */
    if (msg->osip->from == NULL || sip_uri_aor(msg->osip->from->url, from, sizeof from) == NULL ||
        strcasecmp(from, aor) != 0) {
        px_reply(req, 403, "Publishing For Another User");
        return PX_ANSWERED;
    }
    if ((xv = sip_msg_header(msg, "expires", 0)) != NULL) {
        expires = strtoll(xv, &end, 10);
        if (end == xv || expires < 0) {
            px_reply(req, 400, "Bad Expires");
            return PX_ANSWERED;
        }
    }
    if (expires > 0 && expires < pa->opts.min_expires) {
        char v[32];
        snprintf(v, sizeof v, "%lld", pa->opts.min_expires);
        reply_with(req, 423, NULL, "Min-Expires", v);   /* RFC 3903 §6 step 5 */
        return PX_ANSWERED;
    }
    if (expires > pa->opts.max_expires)
        expires = pa->opts.max_expires;
    body = sip_msg_body(msg, &blen);
    if (body && blen == 0)
        body = NULL;
    if (body) {
        if (!ctype_is(msg, PIDF_CTYPE)) {
            reply_with(req, 415, NULL, "Accept", PIDF_CTYPE);   /* RFC 3903 §6 step 3 */
            return PX_ANSWERED;
        }
        if (us_pidf_parse(body, blen, NULL, err, sizeof err) != 0) {
            snprintf(reason, sizeof reason, "Bad PIDF: %.200s", err);
            for (char *c = reason; *c; c++)
                if (*c == '\r' || *c == '\n')
                    *c = ' ';
            px_reply(req, 400, reason);
            return PX_ANSWERED;
        }
    }
    p = find(pa, aor, ifm == NULL);
    if (ifm) {
        /* RFC 3903 §6 step 4: refresh, modify or remove state named by its entity-tag. */
        while (*ifm == ' ')
            ifm++;
        if ((b = find_pub(p, ifm)) == NULL || b->expires_at <= clock_wall_s()) {
            px_reply(req, 412, NULL);
            return PX_ANSWERED;
        }
    } else if (body == NULL) {
        px_reply(req, 400, "Initial PUBLISH Without Body");
        return PX_ANSWERED;
    } else if (expires == 0) {
        px_reply(req, 400, "Initial PUBLISH With Expires 0");
        return PX_ANSWERED;
    }
    if (p == NULL) {
        px_reply(req, 500, "Out Of Memory");
        return PX_ANSWERED;
    }
    if (b == NULL && p->npubs >= pa->opts.max_pubs) {
        px_reply(req, 503, "Too Many Publications");
        return PX_ANSWERED;
    }
    if ((w = calloc(1, sizeof *w)) == NULL || (w->aor = strdup(aor)) == NULL) {
        free(w);
        px_reply(req, 500, "Out Of Memory");
        return PX_ANSWERED;
    }
    w->pa = pa;
    w->req = req;
    w->expires = expires;
    w->waiting = 1;   /* held until every store op is queued */
    px_req_ref(req);
    if (b && expires == 0) {
        /* Removal. */
        w->waiting++;
        unpersist(pa, aor, b->etag, publish_done, w);
        unlink_pub(p, b);
        pub_free(b);
        publish_done(0, w);
        return PX_SUSPENDED;
    }
    if (b) {
        w->waiting++;
        unpersist(pa, aor, b->etag, publish_done, w);   /* RFC 3903 §6 step 7: a new entity-tag */
        if (body) {
            char *doc = malloc(blen + 1);
            if (doc == NULL) {
                w->failed = true;
            } else {
                memcpy(doc, body, blen);
                doc[blen] = '\0';
                free(b->doc);
                b->doc = doc;
                b->len = blen;
                b->updated = clock_wall_s();
            }
        }
    } else {
        if ((b = calloc(1, sizeof *b)) == NULL || (b->doc = malloc(blen + 1)) == NULL) {
            free(b);
            w->failed = true;
            publish_done(0, w);
            return PX_SUSPENDED;
        }
        memcpy(b->doc, body, blen);
        b->doc[blen] = '\0';
        b->len = blen;
        b->updated = clock_wall_s();
        b->next = p->pubs;
        p->pubs = b;
        p->npubs++;
    }
    snprintf(src, sizeof src, "%s:%s",
             px_req_proto(req) == TP_UDP ? "udp" : px_req_proto(req) == TP_TCP ? "tcp" : "tls",
             tp_addr_str(px_req_src(req), srcs, sizeof srcs));
    free(b->source);
    b->source = strdup(src);
    new_etag(pa, b->etag, sizeof b->etag);
    b->expires_at = clock_wall_s() + expires;
    snprintf(w->etag, sizeof w->etag, "%s", b->etag);
    w->waiting++;
    persist(pa, aor, b, publish_done, w);
    publish_done(0, w);
    return PX_SUSPENDED;
}

/* ------------------------------------------------------------------ life cycle */

static void
load_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct us_presence *pa = arg;
    const char *cur = value, *end = (const char *)value + len, *f[4];
    const char *sp = strchr(key, ' ');
    char aor[512];
    struct presentity *p;
    struct pub *b;

    for (int i = 0; i < 4; i++) {
        const char *z = cur < end ? memchr(cur, '\0', (size_t)(end - cur)) : NULL;
        if (z == NULL || sp == NULL)
            goto bad;
        f[i] = cur;
        cur = z + 1;
    }
    if (strcmp(f[0], "v1") != 0 || (size_t)(sp - key) >= sizeof aor || strlen(sp + 1) >= sizeof b->etag)
        goto bad;
    snprintf(aor, sizeof aor, "%.*s", (int)(sp - key), key);
    if (strtoll(f[1], NULL, 10) <= clock_wall_s()) {
        store_kv_del(pa->st, KV_NS, key, NULL, NULL);   /* expired while we were down */
        return;
    }
    if ((p = find(pa, aor, true)) == NULL || (b = calloc(1, sizeof *b)) == NULL)
        return;
    b->len = (size_t)(end - cur);
    if ((b->doc = malloc(b->len + 1)) == NULL) {
        free(b);
        return;
    }
    memcpy(b->doc, cur, b->len);
    b->doc[b->len] = '\0';
    snprintf(b->etag, sizeof b->etag, "%s", sp + 1);
    b->expires_at = strtoll(f[1], NULL, 10);
    b->updated = strtoll(f[2], NULL, 10);
    b->source = f[3][0] ? strdup(f[3]) : NULL;
    b->next = p->pubs;
    p->pubs = b;
    p->npubs++;
    return;
bad:
    log_warn("stored publication %s is malformed: dropped", key);
    store_kv_del(pa->st, KV_NS, key, NULL, NULL);
}

long
us_presence_load(struct us_presence *pa)
{
    long n = 0;

    if (store_kv_load(pa->st, KV_NS, load_cb, pa) != 0)
        return -1;
    for (unsigned i = 0; i < NBUCKETS; i++)
        for (struct presentity *p = pa->tab[i]; p; p = p->hnext)
            n += p->npubs;
    return n;
}

struct us_presence *
us_presence_new(struct event_base *base, const struct us_presence_opts *opts, struct store *st,
                struct us_subs *subs, struct us_location *loc, struct us_lists *lists)
{
    struct us_presence *pa = calloc(1, sizeof *pa);
    struct timeval tv = {1, 0};
    struct us_pkg pkg = {
        .name = EVENT,
        .ctype = PIDF_CTYPE,
        .authorize = pkg_authorize,
        .body = pkg_body,
    };

    if (pa == NULL)
        return NULL;
    us_pidf_init();
    pa->opts = *opts;
    pa->st = st;
    pa->subs = subs;
    pa->loc = loc;
    pa->lists = lists;
    pkg.arg = pa;
    pa->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, pa);
    if (pa->sweep == NULL || us_subs_add_pkg(subs, &pkg) != 0) {
        us_presence_free(pa);
        return NULL;
    }
    event_add(pa->sweep, &tv);
    return pa;
}

void
us_presence_free(struct us_presence *pa)
{
    if (pa == NULL)
        return;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        for (struct presentity *p = pa->tab[i], *pn; p; p = pn) {
            pn = p->hnext;
            for (struct pub *b = p->pubs, *bn; b; b = bn) {
                bn = b->next;
                pub_free(b);
            }
            free(p->aor);
            free(p);
        }
    }
    if (pa->sweep)
        event_free(pa->sweep);
    free(pa);
}

/* ------------------------------------------------------------------ routing (hs_apps) */

/*
 * RFC 4480 §3.2 activities and the availability each one implies (design §4). Every name
 * the routing sees is one of these literals, so it lives as long as the process.
 */
static const struct {
    const char *name;
    int availability;
} activities[] = {
    {"away", US_AVAIL_AWAY}, {"vacation", US_AVAIL_AWAY}, {"holiday", US_AVAIL_AWAY},
    {"sleeping", US_AVAIL_AWAY}, {"meal", US_AVAIL_AWAY}, {"breakfast", US_AVAIL_AWAY},
    {"lunch", US_AVAIL_AWAY}, {"dinner", US_AVAIL_AWAY}, {"shopping", US_AVAIL_AWAY},
    {"permanent-absence", US_AVAIL_AWAY},
    {"busy", US_AVAIL_BUSY}, {"on-the-phone", US_AVAIL_BUSY}, {"meeting", US_AVAIL_BUSY},
    {"appointment", US_AVAIL_BUSY}, {"in-transit", US_AVAIL_BUSY}, {"travel", US_AVAIL_BUSY},
    {"presentation", US_AVAIL_BUSY}, {"performance", US_AVAIL_BUSY}, {"steering", US_AVAIL_BUSY},
    {"spectator", US_AVAIL_BUSY}, {"playing", US_AVAIL_BUSY}, {"worship", US_AVAIL_BUSY},
    {"working", US_AVAIL_ONLINE}, {"looking-for-work", US_AVAIL_ONLINE}, {"tv", US_AVAIL_ONLINE},
    {"other", US_AVAIL_ONLINE}, {"unknown", US_AVAIL_ONLINE},
};

/* Index in activities[] of RPID element <name> ("" = none: "unknown"; not listed: "other"). */
static size_t
activity_index(const char *name)
{
    size_t n = sizeof activities / sizeof activities[0];

    if (name[0] == '\0')
        return n - 1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(activities[i].name, name) == 0)
            return i;
    return n - 2;
}

/*
 * Parsed facts of recent publications by entity-tag: every change of a document gets a
 * new entity-tag (RFC 3903 §6 step 7), so an entry never goes stale, and the message
 * path parses each document once rather than on every request. Loop thread only.
 */
struct state_memo {
    char etag[40];
    int availability;
    size_t activity;             /* index in activities[] */
};
static struct state_memo state_memo[128];

int
us_presence_endpoint_state(struct us_presence *pa, const char *aor, const char *received,
                           struct us_endpoint_state *st)
{
    struct presentity *p;
    struct pub *best = NULL;
    struct state_memo *m;
    int64_t now = clock_wall_s();

    if (pa == NULL || aor == NULL || received == NULL || (p = find(pa, aor, false)) == NULL)
        return 0;
    for (struct pub *b = p->pubs; b; b = b->next)
        if (b->expires_at > now && b->source && strcmp(b->source, received) == 0 &&
            (best == NULL || b->updated > best->updated))
            best = b;
    if (best == NULL)
        return 0;
    m = &state_memo[hash(best->etag) % (sizeof state_memo / sizeof state_memo[0])];
    if (strcmp(m->etag, best->etag) != 0) {
        struct us_pidf_info info;
        char err[200];
        if (us_pidf_parse(best->doc, best->len, &info, err, sizeof err) != 0)
            return 0;   /* accepted when published; cannot happen short of memory */
        snprintf(m->etag, sizeof m->etag, "%s", best->etag);
        m->activity = activity_index(info.activity);
        /* RFC 3863 §4.1.4: closed = not reachable through this tuple; a document of only
         * closed tuples says the endpoint is offline whatever its activity. */
        m->availability = info.tuples > 0 && info.open == 0 ? US_AVAIL_OFFLINE
                                                              : activities[m->activity].availability;
    }
    st->availability = m->availability;
    st->activity = activities[m->activity].name;
    st->since = best->updated;
    return 1;
}
