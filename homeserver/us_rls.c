#define LOG_MODULE "rls"
#include "us_rls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "util/hash.h"
#include "util/log.h"

#define NBUCKETS 1024
#define PRESENCE "presence"
#define PIDF_CTYPE "application/pidf+xml"

/*
 * Who must hear of a contact's change: for every owner with at least one list
 * subscription (a struct rowner), its contacts are indexed (struct member: contact ->
 * owners). Owners without a list subscription cost nothing. Each list subscription
 * (struct rsub) collects the contacts that changed since its last NOTIFY.
 */
struct rowner {
    struct rowner *hnext;
    char *owner;                  /* "alice@example.com" */
    char *list;                   /* "alice;list=contacts@example.com": the subscriptions' resource */
    unsigned nsubs;
    char **contacts;              /* indexed under members */
    size_t ncontacts;
};

struct member {
    struct member *hnext;
    char *contact;                /* "bob@example.com" */
    struct rowner **owners;
    size_t n, cap;
};

struct rsub {
    struct rsub *hnext;
    char *id;                     /* the us_sub id */
    struct rowner *o;
    char **pending;               /* contacts changed since the last NOTIFY */
    size_t npending, cap;
    bool full;                    /* the next NOTIFY carries the full state */
};

struct us_rls {
    struct us_subs *subs;
    struct us_lists *lists;
    struct us_presence *pa;
    us_rls_home_fn *home;
    void *home_arg;
    struct rowner *owners[NBUCKETS];
    struct member *members[NBUCKETS];
    struct rsub *rsubs[NBUCKETS];
    uint64_t boundary_seq;
};

static uint32_t
hash(const char *s)
{
    return hash_fnv1a32_str_lower(HASH_FNV32_BASIS, s);
}

/* ------------------------------------------------------------------ list URIs */

bool
us_rls_list_owner(const char *aor, char *owner, size_t ownerlen)
{
    const char *at = aor ? strrchr(aor, '@') : NULL;
    size_t pl = strlen(US_RLS_LIST_PARAM), ul;

    if (at == NULL || (ul = (size_t)(at - aor)) <= pl || strncasecmp(at - pl, US_RLS_LIST_PARAM, pl) != 0)
        return false;
    if ((size_t)snprintf(owner, ownerlen, "%.*s%s", (int)(ul - pl), aor, at) >= ownerlen)
        return false;
    return strchr(owner, ';') == NULL;   /* exactly one parameter, the list one */
}

/* "alice@example.com" -> "alice;list=contacts@example.com" */
static char *
list_aor(const char *owner)
{
    const char *at = strrchr(owner, '@');
    size_t n;
    char *s;

    if (at == NULL)
        return NULL;
    n = strlen(owner) + strlen(US_RLS_LIST_PARAM) + 1;
    if ((s = malloc(n)) != NULL)
        snprintf(s, n, "%.*s%s%s", (int)(at - owner), owner, US_RLS_LIST_PARAM, at);
    return s;
}

/* ------------------------------------------------------------------ index */

static struct rowner *
find_owner(struct us_rls *r, const char *owner)
{
    for (struct rowner *o = r->owners[hash(owner) % NBUCKETS]; o; o = o->hnext)
        if (strcasecmp(o->owner, owner) == 0)
            return o;
    return NULL;
}

static struct member *
find_member(struct us_rls *r, const char *contact, bool create)
{
    uint32_t h = hash(contact) % NBUCKETS;
    struct member *m;

    for (m = r->members[h]; m; m = m->hnext)
        if (strcasecmp(m->contact, contact) == 0)
            return m;
    if (!create || (m = calloc(1, sizeof *m)) == NULL)
        return NULL;
    if ((m->contact = strdup(contact)) == NULL) {
        free(m);
        return NULL;
    }
    m->hnext = r->members[h];
    r->members[h] = m;
    return m;
}

static void
member_drop_owner(struct us_rls *r, const char *contact, const struct rowner *o)
{
    uint32_t h = hash(contact) % NBUCKETS;

    for (struct member **pp = &r->members[h]; *pp; pp = &(*pp)->hnext) {
        struct member *m = *pp;
        if (strcasecmp(m->contact, contact) != 0)
            continue;
        for (size_t i = 0; i < m->n; i++)
            if (m->owners[i] == o) {
                m->owners[i] = m->owners[--m->n];
                break;
            }
        if (m->n == 0) {
            *pp = m->hnext;
            free(m->owners);
            free(m->contact);
            free(m);
        }
        return;
    }
}

static void
unindex(struct us_rls *r, struct rowner *o)
{
    for (size_t i = 0; i < o->ncontacts; i++) {
        member_drop_owner(r, o->contacts[i], o);
        free(o->contacts[i]);
    }
    free(o->contacts);
    o->contacts = NULL;
    o->ncontacts = 0;
}

struct collect {
    char **v;
    size_t n, cap;
    char **names;                 /* parallel to v when wanted, else NULL */
    bool want_names;
    bool failed;
};

static void
collect_cb(const char *uri, const char *name, void *arg)
{
    struct collect *c = arg;

    if (c->failed)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        char **v = realloc(c->v, cap * sizeof *v), **nm = NULL;
        if (v == NULL) {
            c->failed = true;
            return;
        }
        c->v = v;
        if (c->want_names) {
            if ((nm = realloc(c->names, cap * sizeof *nm)) == NULL) {
                c->failed = true;
                return;
            }
            c->names = nm;
        }
        c->cap = cap;
    }
    if ((c->v[c->n] = strdup(uri)) == NULL) {
        c->failed = true;
        return;
    }
    if (c->want_names)
        c->names[c->n] = name ? strdup(name) : NULL;
    c->n++;
}

static void
collect_clear(struct collect *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i]);
        if (c->names)
            free(c->names[i]);
    }
    free(c->v);
    free(c->names);
    memset(c, 0, sizeof *c);
}

/* (Re)reads <o>'s contacts into the index. */
static void
reindex(struct us_rls *r, struct rowner *o)
{
    struct collect c = {0};

    unindex(r, o);
    us_lists_foreach_contact(r->lists, o->owner, collect_cb, &c);
    for (size_t i = 0; i < c.n; i++) {
        struct member *m = find_member(r, c.v[i], true);
        if (m == NULL)
            continue;
        if (m->n == m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 4;
            struct rowner **v = realloc(m->owners, cap * sizeof *v);
            if (v == NULL)
                continue;
            m->owners = v;
            m->cap = cap;
        }
        m->owners[m->n++] = o;
    }
    o->contacts = c.v;   /* every one was indexed (or its member could not be made: dropped quietly) */
    o->ncontacts = c.n;
    c.v = NULL;
    c.n = 0;
    collect_clear(&c);
}

static struct rsub *
find_rsub(struct us_rls *r, const char *id)
{
    for (struct rsub *s = r->rsubs[hash(id) % NBUCKETS]; s; s = s->hnext)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static void
rsub_free(struct rsub *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->npending; i++)
        free(s->pending[i]);
    free(s->pending);
    free(s->id);
    free(s);
}

static void
rowner_free(struct us_rls *r, struct rowner *o)
{
    for (struct rowner **pp = &r->owners[hash(o->owner) % NBUCKETS]; *pp; pp = &(*pp)->hnext)
        if (*pp == o) {
            *pp = o->hnext;
            break;
        }
    unindex(r, o);
    free(o->owner);
    free(o->list);
    free(o);
}

static void
add_pending(struct rsub *s, const char *contact)
{
    char *c;

    for (size_t i = 0; i < s->npending; i++)
        if (strcasecmp(s->pending[i], contact) == 0)
            return;
    if (s->npending == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **v = realloc(s->pending, cap * sizeof *v);
        if (v == NULL) {
            s->full = true;   /* cannot say which: say everything */
            return;
        }
        s->pending = v;
        s->cap = cap;
    }
    if ((c = strdup(contact)) == NULL) {
        s->full = true;
        return;
    }
    s->pending[s->npending++] = c;
}

/* ------------------------------------------------------------------ documents */

static bool
homed_here(struct us_rls *r, const char *owner, const char *contact)
{
    const char *oa = strrchr(owner, '@'), *ca = strrchr(contact, '@');

    if (r->home)
        return r->home(contact, r->home_arg);
    return oa && ca && strcasecmp(oa, ca) == 0;
}

/* A short stable instance id for <contact> (RFC 4662 §5.2: unique within the resource). */
static void
instance_id(const char *contact, char *out, size_t outlen)
{
    snprintf(out, outlen, "i%08x", hash(contact));
}

struct part {
    char cid[128];
    char *doc;
    size_t len;
};

static void
append(char **buf, size_t *len, size_t *cap, const char *s, size_t n, bool *failed)
{
    if (*failed)
        return;
    if (*len + n + 1 > *cap) {
        size_t nc = (*len + n + 1) * 2;
        char *b = realloc(*buf, nc);
        if (b == NULL) {
            *failed = true;
            return;
        }
        *buf = b;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void
append_s(char **buf, size_t *len, size_t *cap, const char *s, bool *failed)
{
    append(buf, len, cap, s, strlen(s), failed);
}

/*
 * Builds the NOTIFY body for <owner>'s list: the resources named in <only> (NULL = all,
 * fullState="true"). <list_uri> names the list. RFC 4662 §5 (RLMI) and §6.1 (the
 * multipart/related packaging, root first, start= its Content-ID).
 */
static int
build(struct us_rls *r, const char *owner, const char *list_uri, unsigned version, char *const *only, size_t nonly,
      char **body, size_t *blen, char **ctype)
{
    struct collect c = {.want_names = true};
    struct part *parts = NULL;
    size_t nparts = 0;
    xmlDoc *doc = NULL;
    xmlNode *root;
    xmlNs *ns;
    xmlChar *mem = NULL;
    int size = 0;
    char *out = NULL, ver[16], boundary[64], root_cid[128], ct[400];
    const char *dom = strrchr(owner, '@');
    size_t len = 0, cap = 0;
    bool failed = false;
    int rc = -1;

    *body = NULL;
    *ctype = NULL;
    us_lists_foreach_contact(r->lists, owner, collect_cb, &c);
    if (c.failed || (c.n && (parts = calloc(c.n, sizeof *parts)) == NULL))
        goto out;
    if ((doc = xmlNewDoc((const xmlChar *)"1.0")) == NULL ||
        (root = xmlNewNode(NULL, (const xmlChar *)"list")) == NULL)
        goto out;
    xmlDocSetRootElement(doc, root);
    ns = xmlNewNs(root, (const xmlChar *)US_RLMI_NS, NULL);
    xmlSetNs(root, ns);
    snprintf(ver, sizeof ver, "%u", version);
    xmlSetProp(root, (const xmlChar *)"uri", (const xmlChar *)list_uri);
    xmlSetProp(root, (const xmlChar *)"version", (const xmlChar *)ver);
    xmlSetProp(root, (const xmlChar *)"fullState", (const xmlChar *)(only ? "false" : "true"));
    for (size_t i = 0; i < c.n; i++) {
        char uri[600], iid[16];
        xmlNode *res, *inst;
        bool wanted = only == NULL;

        for (size_t k = 0; k < nonly && !wanted; k++)
            wanted = strcasecmp(only[k], c.v[i]) == 0;
        if (!wanted)
            continue;
        snprintf(uri, sizeof uri, "sip:%s", c.v[i]);
        instance_id(c.v[i], iid, sizeof iid);
        if ((res = xmlNewChild(root, ns, (const xmlChar *)"resource", NULL)) == NULL)
            goto out;
        xmlSetProp(res, (const xmlChar *)"uri", (const xmlChar *)uri);
        if (c.names[i])
            xmlNewTextChild(res, ns, (const xmlChar *)"name", (const xmlChar *)c.names[i]);
        if ((inst = xmlNewChild(res, ns, (const xmlChar *)"instance", NULL)) == NULL)
            goto out;
        xmlSetProp(inst, (const xmlChar *)"id", (const xmlChar *)iid);
        if (!homed_here(r, owner, c.v[i])) {
            /* Not ours to compose: no back-end subscription, no part. */
            xmlSetProp(inst, (const xmlChar *)"state", (const xmlChar *)"pending");
            continue;
        }
        struct part *p = &parts[nparts];
        if ((p->doc = us_presence_document(r->pa, c.v[i], owner, &p->len)) == NULL)
            goto out;
        /* unique in the body even if two instance ids collided: the position is in it */
        snprintf(p->cid, sizeof p->cid, "%s.%u.%zu%s", iid, version, i, dom ? dom : "@parley");
        nparts++;
        xmlSetProp(inst, (const xmlChar *)"state", (const xmlChar *)"active");
        xmlSetProp(inst, (const xmlChar *)"cid", (const xmlChar *)p->cid);
    }
    xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
    if (mem == NULL || size <= 0)
        goto out;
    /* A boundary that occurs in no part (RFC 2046 §5.1.1); parts are user-published XML. */
    for (int attempt = 0;; attempt++) {
        bool clash = false;
        char rnd[48];
        sip_make_branch(rnd, sizeof rnd);   /* "z9hG4bK" + random: not guessable by a publisher */
        snprintf(boundary, sizeof boundary, "parley-rls-%llx-%.16s", (unsigned long long)++r->boundary_seq, rnd + 7);
        clash = strstr((const char *)mem, boundary) != NULL;
        for (size_t i = 0; i < nparts && !clash; i++)
            clash = strstr(parts[i].doc, boundary) != NULL;
        if (!clash)
            break;
        if (attempt > 8)
            goto out;
    }
    snprintf(root_cid, sizeof root_cid, "rlmi.%u%s", version, dom ? dom : "@parley");
    append_s(&out, &len, &cap, "--", &failed);
    append_s(&out, &len, &cap, boundary, &failed);
    append_s(&out, &len, &cap, "\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <", &failed);
    append_s(&out, &len, &cap, root_cid, &failed);
    append_s(&out, &len, &cap, ">\r\nContent-Type: " US_RLMI_CTYPE ";charset=\"UTF-8\"\r\n\r\n", &failed);
    append(&out, &len, &cap, (const char *)mem, (size_t)size, &failed);
    for (size_t i = 0; i < nparts; i++) {
        append_s(&out, &len, &cap, "\r\n--", &failed);
        append_s(&out, &len, &cap, boundary, &failed);
        append_s(&out, &len, &cap, "\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <", &failed);
        append_s(&out, &len, &cap, parts[i].cid, &failed);
        append_s(&out, &len, &cap, ">\r\nContent-Type: " PIDF_CTYPE ";charset=\"UTF-8\"\r\n\r\n", &failed);
        append(&out, &len, &cap, parts[i].doc, parts[i].len, &failed);
    }
    append_s(&out, &len, &cap, "\r\n--", &failed);
    append_s(&out, &len, &cap, boundary, &failed);
    append_s(&out, &len, &cap, "--\r\n", &failed);
    if (failed)
        goto out;
    snprintf(ct, sizeof ct, "multipart/related;type=\"" US_RLMI_CTYPE "\";start=\"<%s>\";boundary=\"%s\"", root_cid,
             boundary);
    if ((*ctype = strdup(ct)) == NULL)
        goto out;
    *body = out;
    *blen = len;
    out = NULL;
    rc = 0;
out:
    free(out);
    xmlFree(mem);
    xmlFreeDoc(doc);
    for (size_t i = 0; i < nparts; i++)
        free(parts[i].doc);
    free(parts);
    collect_clear(&c);
    return rc;
}

int
us_rls_document(struct us_rls *r, const char *owner, unsigned version, char **body, size_t *len, char **ctype)
{
    char *la = list_aor(owner), uri[600];
    int rc;

    if (la == NULL)
        return -1;
    snprintf(uri, sizeof uri, "sip:%s", la);
    rc = build(r, owner, uri, version, NULL, 0, body, len, ctype);
    free(la);
    return rc;
}

/* ------------------------------------------------------------------ package */

static int
pkg_authorize(void *arg, const char *resource, const char *watcher)
{
    char owner[512];

    (void)arg;
    if (!us_rls_list_owner(resource, owner, sizeof owner))
        return 404;
    return strcasecmp(owner, watcher) == 0 ? 0 : 403;   /* one's own list only */
}

static int
pkg_body(void *arg, const struct us_sub *s, char **body, size_t *len)
{
    (void)arg;
    (void)s;
    *body = NULL;
    *len = 0;
    return -1;   /* body_ct is used */
}

static int
pkg_body_ct(void *arg, const struct us_sub *s, char **body, size_t *len, char **ctype)
{
    struct us_rls *r = arg;
    struct rsub *rs = find_rsub(r, s->id);
    char owner[512], uri[600];
    bool full = rs == NULL || rs->full || rs->npending == 0 || s->seq == 0;
    int rc;

    if (!us_rls_list_owner(s->resource, owner, sizeof owner))
        return -1;
    snprintf(uri, sizeof uri, "sip:%s", s->resource);
    rc = build(r, owner, uri, s->seq, full ? NULL : rs->pending, full ? 0 : rs->npending, body, len, ctype);
    if (rc == 0 && rs) {
        for (size_t i = 0; i < rs->npending; i++)
            free(rs->pending[i]);
        rs->npending = 0;
        rs->full = false;
    }
    return rc;
}

struct mark {
    struct us_rls *r;
    const char *contact;          /* NULL: the whole list changed */
};

static void
mark_cb(const struct us_sub *s, void *arg)
{
    struct mark *m = arg;
    struct rsub *rs = find_rsub(m->r, s->id);

    if (rs == NULL)
        return;
    if (m->contact)
        add_pending(rs, m->contact);
    else
        rs->full = true;
}

static void
on_changed(void *arg, const char *event, const char *resource)
{
    struct us_rls *r = arg;

    if (strcasecmp(event, PRESENCE) == 0) {
        /* A contact's presence: a partial NOTIFY to every list that holds it. Copy the
         * owners first: NOTIFYs never change the index, but keep the loop obviously safe. */
        struct member *mb = find_member(r, resource, false);
        struct rowner **owners;
        size_t n;

        if (mb == NULL || mb->n == 0 || (owners = malloc(mb->n * sizeof *owners)) == NULL)
            return;
        n = mb->n;
        memcpy(owners, mb->owners, n * sizeof *owners);
        for (size_t i = 0; i < n; i++) {
            struct mark m = {r, resource};
            us_subs_foreach(r->subs, US_RLS_PKG, owners[i]->list, mark_cb, &m);
            us_subs_changed(r->subs, US_RLS_PKG, owners[i]->list);
        }
        free(owners);
    } else if (strcasecmp(event, US_LISTS_EVENT) == 0) {
        /* The owner's list changed: new resources, a full-state NOTIFY. */
        struct rowner *o = find_owner(r, resource);
        struct mark m = {r, NULL};

        if (o == NULL)
            return;
        reindex(r, o);
        us_subs_foreach(r->subs, US_RLS_PKG, o->list, mark_cb, &m);
        us_subs_changed(r->subs, US_RLS_PKG, o->list);
    }
}

static void
on_sub_event(void *arg, const struct us_sub *s, enum us_sub_event ev, const char *reason)
{
    struct us_rls *r = arg;
    char owner[512];
    struct rowner *o;
    struct rsub *rs;
    uint32_t h;

    (void)reason;
    if (strcmp(s->event, US_RLS_PKG) != 0 || !us_rls_list_owner(s->resource, owner, sizeof owner))
        return;
    if (ev == US_SUB_ACTIVE) {
        if (find_rsub(r, s->id))
            return;
        if ((o = find_owner(r, owner)) == NULL) {
            if ((o = calloc(1, sizeof *o)) == NULL)
                return;
            o->owner = strdup(owner);
            o->list = strdup(s->resource);
            if (o->owner == NULL || o->list == NULL) {
                free(o->owner);
                free(o->list);
                free(o);
                return;
            }
            h = hash(owner) % NBUCKETS;
            o->hnext = r->owners[h];
            r->owners[h] = o;
            reindex(r, o);
        }
        if ((rs = calloc(1, sizeof *rs)) == NULL || (rs->id = strdup(s->id)) == NULL) {
            free(rs);
            if (o->nsubs == 0)
                rowner_free(r, o);
            return;
        }
        rs->o = o;
        rs->full = true;
        h = hash(s->id) % NBUCKETS;
        rs->hnext = r->rsubs[h];
        r->rsubs[h] = rs;
        o->nsubs++;
    } else if (ev == US_SUB_TERMINATED) {
        h = hash(s->id) % NBUCKETS;
        for (struct rsub **pp = &r->rsubs[h]; *pp; pp = &(*pp)->hnext) {
            if (strcmp((*pp)->id, s->id) != 0)
                continue;
            rs = *pp;
            *pp = rs->hnext;
            o = rs->o;
            rsub_free(rs);
            if (--o->nsubs == 0)
                rowner_free(r, o);
            return;
        }
    }
}

/* ------------------------------------------------------------------ SUBSCRIBE */

/* Does a Supported header (or its compact form k) name <tag>? RFC 3261 §20.37. */
static bool
supports(const struct sip_msg *msg, const char *tag)
{
    const char *names[] = {"supported", "k"};
    size_t tl = strlen(tag);

    for (int n = 0; n < 2; n++) {
        const char *v;
        for (int i = 0; (v = sip_msg_header(msg, names[n], i)) != NULL; i++) {
            while (*v) {
                size_t len;
                while (*v == ' ' || *v == '\t' || *v == ',')
                    v++;
                len = strcspn(v, " \t,");
                if (len == tl && strncasecmp(v, tag, tl) == 0)
                    return true;
                v += len;
            }
        }
    }
    return false;
}

static bool
event_is_presence(const struct sip_msg *msg)
{
    const char *v = sip_msg_header(msg, "event", 0);
    size_t n = strlen(PRESENCE);

    if (v == NULL)
        v = sip_msg_header(msg, "o", 0);
    if (v == NULL)
        return false;
    while (*v == ' ')
        v++;
    return strncasecmp(v, PRESENCE, n) == 0 && (v[n] == '\0' || v[n] == ';' || v[n] == ' ');
}

static void
reply_hdr(struct px_req *req, int code, const char *reason, const char *name, const char *value)
{
    struct sip_msg *resp = px_reply_build(req, code, reason);

    if (resp == NULL)
        return;
    sip_msg_add_header(resp, name, value);
    px_reply_msg(req, resp);
    sip_msg_free(resp);
}

enum px_verdict
us_rls_handle(struct us_rls *r, struct px_req *req, const char *owner)
{
    struct sip_msg *msg = px_req_msg(req);
    char *la;
    enum px_verdict v;

    if (msg->method != SIP_SUBSCRIBE) {
        reply_hdr(req, 405, NULL, "Allow", "SUBSCRIBE");
        return PX_ANSWERED;
    }
    if (!event_is_presence(msg)) {
        reply_hdr(req, 489, NULL, "Allow-Events", PRESENCE);   /* RFC 6665 §8.2.2 */
        return PX_ANSWERED;
    }
    /* RFC 4662 §4.2 / RFC 3261 §8.2.2.3: a list needs a subscriber that understands lists.
     * In-dialog refreshes are let through without it (the dialog already agreed). */
    if (sip_msg_to_tag(msg) == NULL && !supports(msg, "eventlist")) {
        reply_hdr(req, 421, NULL, "Require", "eventlist");
        return PX_ANSWERED;
    }
    if ((la = list_aor(owner)) == NULL) {
        px_reply(req, 404, NULL);
        return PX_ANSWERED;
    }
    v = us_subs_handle_pkg(r->subs, req, la, US_RLS_PKG);
    free(la);
    return v;
}

/* ------------------------------------------------------------------ life cycle */

struct us_rls *
us_rls_new(struct us_subs *subs, struct us_lists *lists, struct us_presence *pa)
{
    struct us_rls *r = calloc(1, sizeof *r);
    struct us_pkg pkg = {
        .name = US_RLS_PKG,
        .ctype = US_RLMI_CTYPE,
        .authorize = pkg_authorize,
        .body = pkg_body,
        .event = PRESENCE,
        .eventlist = true,
        .body_ct = pkg_body_ct,
    };
    struct us_subs_observer ob = {.sub_event = on_sub_event, .changed = on_changed};

    if (r == NULL)
        return NULL;
    xmlInitParser();
    r->subs = subs;
    r->lists = lists;
    r->pa = pa;
    if (us_subs_add_pkg_observer(subs, &pkg, &ob, r) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void
us_rls_set_home_fn(struct us_rls *r, us_rls_home_fn *fn, void *arg)
{
    if (r) {
        r->home = fn;
        r->home_arg = arg;
    }
}

void
us_rls_free(struct us_rls *r)
{
    if (r == NULL)
        return;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        for (struct rsub *s = r->rsubs[i], *n; s; s = n) {
            n = s->hnext;
            rsub_free(s);
        }
        while (r->owners[i])
            rowner_free(r, r->owners[i]);
    }
    free(r);
}
