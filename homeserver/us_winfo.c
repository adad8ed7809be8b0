#define LOG_MODULE "winfo"
#include "us_winfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

#define NBUCKETS 1024
#define PRESENCE "presence"
#define ENDED_TTL_S 60            /* how long an ended watcher stays in the documents */
#define MAX_ENDED 64              /* per owner; the oldest goes first */

/* A watcher whose subscription ended (RFC 3857 §3.1: terminated, with the event). */
struct ended {
    struct ended *next;
    char *id;
    char *watcher;
    const char *event;            /* "timeout", "deactivated" (static strings) */
    int64_t created_at, ended_at;
};

/* Per owner with watcher-info state worth keeping. */
struct owner {
    struct owner *hnext;
    char *aor;
    struct ended *ended;          /* newest first */
    unsigned nended;
    uint32_t blocked_fp;          /* fingerprint of who is blocked when the last document was built */
    bool have_fp;
};

struct us_winfo {
    struct us_subs *subs;
    struct us_lists *lists;
    struct owner *tab[NBUCKETS];
};

static uint32_t
hash(const char *s)
{
    return hash_fnv1a32_str_lower(HASH_FNV32_BASIS, s);
}

static struct owner *
find_owner(struct us_winfo *w, const char *aor, bool create)
{
    uint32_t h = hash(aor) % NBUCKETS;
    struct owner *o;

    for (o = w->tab[h]; o; o = o->hnext)
        if (strcasecmp(o->aor, aor) == 0)
            return o;
    if (!create || (o = calloc(1, sizeof *o)) == NULL)
        return NULL;
    if ((o->aor = strdup(aor)) == NULL) {
        free(o);
        return NULL;
    }
    o->hnext = w->tab[h];
    w->tab[h] = o;
    return o;
}

static void
ended_free(struct ended *e)
{
    if (e) {
        free(e->id);
        free(e->watcher);
        free(e);
    }
}

/* Drops ended watchers older than the TTL, and beyond MAX_ENDED. */
static void
prune(struct owner *o, int64_t now)
{
    unsigned n = 0;

    for (struct ended **pp = &o->ended; *pp;) {
        struct ended *e = *pp;
        if (e->ended_at + ENDED_TTL_S <= now || n >= MAX_ENDED) {
            *pp = e->next;
            ended_free(e);
            o->nended--;
            continue;
        }
        n++;
        pp = &e->next;
    }
}

/* ------------------------------------------------------------------ the document */

struct walk {
    struct us_winfo *w;
    const char *owner;
    xmlNode *list;                /* NULL: only the fingerprint */
    xmlNs *ns;
    int64_t now;
    uint32_t fp;
};

static void
set_num(xmlNode *n, const char *name, long long v)
{
    char b[32];

    snprintf(b, sizeof b, "%lld", v < 0 ? 0 : v);
    xmlSetProp(n, (const xmlChar *)name, (const xmlChar *)b);
}

static xmlNode *
add_watcher(struct walk *k, const char *id, const char *watcher, const char *status, const char *event)
{
    char uri[600];
    xmlNode *n;

    snprintf(uri, sizeof uri, "sip:%s", watcher);
    n = xmlNewTextChild(k->list, k->ns, (const xmlChar *)"watcher", (const xmlChar *)uri);
    if (n == NULL)
        return NULL;
    xmlSetProp(n, (const xmlChar *)"id", (const xmlChar *)id);
    xmlSetProp(n, (const xmlChar *)"status", (const xmlChar *)status);
    xmlSetProp(n, (const xmlChar *)"event", (const xmlChar *)event);
    return n;
}

static void
walk_cb(const struct us_sub *s, void *arg)
{
    struct walk *k = arg;
    bool blocked = k->w->lists && us_lists_blocks(k->w->lists, k->owner, s->watcher);
    xmlNode *n;

    k->fp = hash_fnv1a32_step(k->fp, hash(s->id));
    k->fp = hash_fnv1a32_step(k->fp, blocked ? 0x5bu : 0xa4u);
    if (k->list == NULL)
        return;
    /* RFC 3858 §4.4: a blocked watcher's authorization is rejected (it sees the owner
     * offline, design §3, so nothing is revealed to it). */
    n = add_watcher(k, s->id, s->watcher, blocked ? "terminated" : "active", blocked ? "rejected" : "subscribe");
    if (n == NULL)
        return;
    set_num(n, "duration-subscribed", (long long)(k->now - s->created_at));
    if (!blocked)
        set_num(n, "expiration", (long long)(s->expires_at - k->now));
}

static uint32_t
blocked_fingerprint(struct us_winfo *w, const char *owner)
{
    struct walk k = {.w = w, .owner = owner, .fp = HASH_FNV32_BASIS};

    us_subs_foreach(w->subs, PRESENCE, owner, walk_cb, &k);
    return k.fp;
}

char *
us_winfo_document(struct us_winfo *w, const char *owner, unsigned version, size_t *len)
{
    xmlDoc *doc = xmlNewDoc((const xmlChar *)"1.0");
    xmlNode *root;
    struct owner *o = find_owner(w, owner, false);
    struct walk k = {.w = w, .owner = owner, .now = clock_wall_s(), .fp = HASH_FNV32_BASIS};
    char res_uri[600], ver[16];
    xmlChar *mem = NULL;
    int size = 0;
    char *out = NULL;

    if (doc == NULL || (root = xmlNewNode(NULL, (const xmlChar *)"watcherinfo")) == NULL)
        goto out;
    xmlDocSetRootElement(doc, root);
    k.ns = xmlNewNs(root, (const xmlChar *)US_WINFO_NS, NULL);
    xmlSetNs(root, k.ns);
    snprintf(ver, sizeof ver, "%u", version);
    xmlSetProp(root, (const xmlChar *)"version", (const xmlChar *)ver);   /* RFC 3858 §4.2 */
    xmlSetProp(root, (const xmlChar *)"state", (const xmlChar *)"full");
    snprintf(res_uri, sizeof res_uri, "sip:%s", owner);
    if ((k.list = xmlNewChild(root, k.ns, (const xmlChar *)"watcher-list", NULL)) == NULL)
        goto out;
    xmlSetProp(k.list, (const xmlChar *)"resource", (const xmlChar *)res_uri);
    xmlSetProp(k.list, (const xmlChar *)"package", (const xmlChar *)PRESENCE);
    us_subs_foreach(w->subs, PRESENCE, owner, walk_cb, &k);
    if (o) {
        o->blocked_fp = k.fp;
        o->have_fp = true;
        prune(o, k.now);
        for (struct ended *e = o->ended; e; e = e->next) {
            xmlNode *n = add_watcher(&k, e->id, e->watcher, "terminated", e->event);
            if (n)
                set_num(n, "duration-subscribed", (long long)(e->ended_at - e->created_at));
        }
    }
    xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
    if (mem == NULL || size <= 0 || (out = malloc((size_t)size + 1)) == NULL)
        goto out;
    memcpy(out, mem, (size_t)size);
    out[size] = '\0';
    if (len)
        *len = (size_t)size;
out:
    xmlFree(mem);
    xmlFreeDoc(doc);
    return out;
}

/* ------------------------------------------------------------------ package */

static int
pkg_authorize(void *arg, const char *resource, const char *watcher)
{
    (void)arg;
    return strcasecmp(resource, watcher) == 0 ? 0 : 403;   /* RFC 3857 §5.1: the owner only */
}

static int
pkg_body(void *arg, const struct us_sub *s, char **body, size_t *len)
{
    struct us_winfo *w = arg;

    /* The owner's record keeps the fingerprint us_winfo_document() computes (on_changed()
     * compares against it). */
    find_owner(w, s->resource, true);
    *body = us_winfo_document(w, s->resource, s->seq, len);
    return *body ? 0 : -1;
}

static void
count_cb(const struct us_sub *s, void *arg)
{
    (void)s;
    (*(unsigned *)arg)++;
}

static bool
has_winfo_subs(struct us_winfo *w, const char *owner)
{
    unsigned n = 0;

    us_subs_foreach(w->subs, US_WINFO_EVENT, owner, count_cb, &n);
    return n > 0;
}

/* A "presence" subscription began or ended: the owner's winfo subscribers hear of it. */
static void
on_sub_event(void *arg, const struct us_sub *s, enum us_sub_event ev, const char *reason)
{
    struct us_winfo *w = arg;
    struct owner *o;
    struct ended *e;

    if (strcasecmp(s->event, PRESENCE) != 0 || ev == US_SUB_REFRESHED)
        return;
    if (ev == US_SUB_ACTIVE && strcmp(reason, "loaded") == 0)
        return;   /* state from before a restart: the winfo NOTIFYs at load carry it */
    if (!has_winfo_subs(w, s->resource))
        return;
    if (ev == US_SUB_TERMINATED && (o = find_owner(w, s->resource, true)) != NULL &&
        (e = calloc(1, sizeof *e)) != NULL) {
        e->id = strdup(s->id);
        e->watcher = strdup(s->watcher);
        e->event = reason && strcmp(reason, "deactivated") == 0 ? "deactivated" : "timeout";
        e->created_at = s->created_at;
        e->ended_at = clock_wall_s();
        if (e->id == NULL || e->watcher == NULL) {
            ended_free(e);
        } else {
            e->next = o->ended;
            o->ended = e;
            o->nended++;
            prune(o, e->ended_at);
        }
    }
    us_subs_changed(w->subs, US_WINFO_EVENT, s->resource);
}

/* The presence of <resource> changed; when its block list changed who is blocked among
 * its watchers, the winfo subscribers hear of it (a PUBLISH alone changes nothing here). */
static void
on_changed(void *arg, const char *event, const char *resource)
{
    struct us_winfo *w = arg;
    struct owner *o;

    if (strcasecmp(event, PRESENCE) != 0 || (o = find_owner(w, resource, false)) == NULL || !o->have_fp)
        return;
    if (blocked_fingerprint(w, resource) != o->blocked_fp)
        us_subs_changed(w->subs, US_WINFO_EVENT, resource);
}

struct us_winfo *
us_winfo_new(struct us_subs *subs, struct us_lists *lists)
{
    struct us_winfo *w = calloc(1, sizeof *w);
    struct us_pkg pkg = {
        .name = US_WINFO_EVENT,
        .ctype = US_WINFO_CTYPE,
        .authorize = pkg_authorize,
        .body = pkg_body,
    };
    struct us_subs_observer ob = {.sub_event = on_sub_event, .changed = on_changed};

    if (w == NULL)
        return NULL;
    xmlInitParser();
    w->subs = subs;
    w->lists = lists;
    if (us_subs_add_pkg_observer(subs, &pkg, &ob, w) != 0) {
        free(w);
        return NULL;
    }
    return w;
}

void
us_winfo_free(struct us_winfo *w)
{
    if (w == NULL)
        return;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        for (struct owner *o = w->tab[i], *on; o; o = on) {
            on = o->hnext;
            for (struct ended *e = o->ended, *en; e; e = en) {
                en = e->next;
                ended_free(e);
            }
            free(o->aor);
            free(o);
        }
    }
    free(w);
}
