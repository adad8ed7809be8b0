#define LOG_MODULE "lists"
#include "us_lists.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "util/hash.h"
#include "util/log.h"

#define NBUCKETS 1024
#define KV_NS "lists"
#define MAX_CONTACTS 1000
#define MAX_GROUPS 100
#define MAX_ACL 1000
#define MAX_OPS 2000
#define XML_OPTS (XML_PARSE_NONET | XML_PARSE_NOWARNING | XML_PARSE_NOERROR | XML_PARSE_NOCDATA)

struct entry {
    char *key;                /* contact "bob@example.com", group id, acl "bob@example.com"/"example.org" */
    char *name;               /* display name / group name */
    char *groups;             /* contact: space-separated group ids */
    bool block;               /* acl */
};

struct vec {
    struct entry *v;
    size_t n, cap;
};

struct ulist {
    struct ulist *hnext;
    char *owner;
    long long version;
    struct vec contacts, groups, acl;
};

struct us_lists {
    struct store *st;
    struct us_subs *subs;
    struct ulist *tab[NBUCKETS];
};

/* ------------------------------------------------------------------ helpers */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t
hash(const char *s)
{
    return hash_fnv1a32_str(HASH_FNV32_BASIS, s) % NBUCKETS;
}

static void
entry_clear(struct entry *e)
{
    free(e->key);
    free(e->name);
    free(e->groups);
    memset(e, 0, sizeof *e);
}

static void
vec_clear(struct vec *v)
{
    for (size_t i = 0; i < v->n; i++)
        entry_clear(&v->v[i]);
    free(v->v);
    memset(v, 0, sizeof *v);
}

static struct entry *
vec_find(const struct vec *v, const char *key)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcasecmp(v->v[i].key, key) == 0)
            return &v->v[i];
    return NULL;
}

static char *
dup_or_null(const char *s)
{
    return s && s[0] ? strdup(s) : NULL;
}

/* Sets (adds or replaces) an entry by key; 0 or -1 (out of memory / over <max>). */
static int
vec_set(struct vec *v, const char *key, const char *name, const char *groups, bool block, size_t max)
{
    struct entry *e = vec_find(v, key), ne;

    memset(&ne, 0, sizeof ne);
    if ((ne.key = strdup(key)) == NULL)
        return -1;
    ne.name = dup_or_null(name);
    ne.groups = dup_or_null(groups);
    ne.block = block;
    if ((name && name[0] && !ne.name) || (groups && groups[0] && !ne.groups)) {
        entry_clear(&ne);
        return -1;
    }
    if (e) {
        entry_clear(e);
        *e = ne;
        return 0;
    }
    if (v->n >= max) {
        entry_clear(&ne);
        return -1;
    }
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        struct entry *nv = realloc(v->v, cap * sizeof *nv);
        if (nv == NULL) {
            entry_clear(&ne);
            return -1;
        }
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = ne;
    return 0;
}

static void
vec_del(struct vec *v, const char *key)
{
    struct entry *e = vec_find(v, key);

    if (e == NULL)
        return;
    entry_clear(e);
    *e = v->v[--v->n];
}

static int
vec_copy(struct vec *dst, const struct vec *src)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < src->n; i++)
        if (vec_set(dst, src->v[i].key, src->v[i].name, src->v[i].groups, src->v[i].block, SIZE_MAX) != 0)
            return -1;
    return 0;
}

/* "sip:Bob@Example.com;x" -> "bob@example.com" into <out>; -1 when not user@host. */
static int
norm_uri(const char *in, char *out, size_t outlen)
{
    size_t n;

    if (in == NULL)
        return -1;
    if (strncasecmp(in, "sip:", 4) == 0)
        in += 4;
    else if (strncasecmp(in, "sips:", 5) == 0)
        in += 5;
    n = strcspn(in, ";?> ");
    if (n == 0 || n >= outlen || memchr(in, '@', n) == NULL || in[0] == '@' || in[n - 1] == '@')
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)((in[i] >= 'A' && in[i] <= 'Z') ? in[i] + 32 : in[i]);
    out[n] = '\0';
    return 0;
}

/* A domain name: letters, digits, '-', '.'; lowercased into <out>. */
static int
norm_domain(const char *in, char *out, size_t outlen)
{
    size_t n = in ? strlen(in) : 0;

    if (n == 0 || n >= outlen)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return -1;
        out[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    out[n] = '\0';
    return 0;
}

/* ------------------------------------------------------------------ SERVICE parsing */

void
us_service_clear(struct us_service *svc)
{
    if (svc == NULL)
        return;
    for (size_t i = 0; i < svc->nops; i++) {
        free(svc->ops[i].key);
        free(svc->ops[i].name);
        free(svc->ops[i].groups);
    }
    free(svc->ops);
    memset(svc, 0, sizeof *svc);
}

static char *
prop(xmlNode *n, const char *name)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    char *s = v ? strdup((const char *)v) : NULL;

    xmlFree(v);
    return s;
}

/* Parses one operation element into <op>; 0 or -1 with <err>. */
static int
parse_op(xmlNode *c, struct us_op *op, char *err, size_t errlen)
{
    const char *el = (const char *)c->name;
    char key[512];
    char *v = NULL;
    int rc = -1;

    memset(op, 0, sizeof *op);
    if (strcmp(el, "set-contact") == 0 || strcmp(el, "delete-contact") == 0) {
        op->kind = el[0] == 's' ? US_OP_CONTACT_SET : US_OP_CONTACT_DEL;
        v = prop(c, "uri");
        if (norm_uri(v, key, sizeof key) != 0) {
            set_err(err, errlen, "<%s> needs uri=\"sip:user@host\"", el);
            goto out;
        }
        if (op->kind == US_OP_CONTACT_SET) {
            op->name = prop(c, "name");
            op->groups = prop(c, "groups");
        }
    } else if (strcmp(el, "set-group") == 0 || strcmp(el, "delete-group") == 0) {
        op->kind = el[0] == 's' ? US_OP_GROUP_SET : US_OP_GROUP_DEL;
        v = prop(c, "id");
        if (v == NULL || v[0] == '\0' || strlen(v) > 64 || strpbrk(v, " \t\r\n")) {
            set_err(err, errlen, "<%s> needs an id without spaces", el);
            goto out;
        }
        snprintf(key, sizeof key, "%s", v);
        if (op->kind == US_OP_GROUP_SET)
            op->name = prop(c, "name");
    } else if (strcmp(el, "allow") == 0 || strcmp(el, "block") == 0 || strcmp(el, "clear") == 0) {
        char *user = prop(c, "user"), *dom = prop(c, "domain");
        int r = -1;
        op->kind = el[0] == 'c' ? US_OP_ACL_DEL : US_OP_ACL_SET;
        op->block = el[0] == 'b';
        if (user && !dom)
            r = norm_uri(user, key, sizeof key);
        else if (dom && !user)
            r = norm_domain(dom, key, sizeof key);
        free(user);
        free(dom);
        if (r != 0) {
            set_err(err, errlen, "<%s> needs one of user=\"user@host\" or domain=\"host\"", el);
            goto out;
        }
    } else {
        set_err(err, errlen, "unknown operation <%s>", el);
        goto out;
    }
    if ((op->key = strdup(key)) == NULL) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(v);
    if (rc != 0) {
        free(op->name);
        free(op->groups);
        memset(op, 0, sizeof *op);
    }
    return rc;
}

int
us_service_parse(const char *xml, size_t len, struct us_service *out, char *err, size_t errlen)
{
    xmlDoc *doc = NULL;
    xmlNode *root;
    xmlChar *ver = NULL;
    size_t n = 0;
    int rc = -1;

    memset(out, 0, sizeof *out);
    out->version = -1;
    if (xml == NULL || len == 0 || len > 1024 * 1024) {
        set_err(err, errlen, "empty or oversized document");
        return -1;
    }
    doc = xmlReadMemory(xml, (int)len, "service.xml", NULL, XML_OPTS);
    if (doc == NULL) {
        set_err(err, errlen, "malformed XML");
        return -1;
    }
    root = xmlDocGetRootElement(doc);
    if (root == NULL || strcmp((const char *)root->name, "service") != 0 || root->ns == NULL ||
        strcmp((const char *)root->ns->href, US_LISTS_NS) != 0) {
        set_err(err, errlen, "root element is not <service> of %s", US_LISTS_NS);
        goto out;
    }
    if ((ver = xmlGetProp(root, (const xmlChar *)"version")) != NULL) {
        char *end;
        long long v = strtoll((const char *)ver, &end, 10);
        if (end == (char *)ver || *end != '\0' || v < 0) {
            set_err(err, errlen, "version is not a number");
            goto out;
        }
        out->version = v;
    }
    for (xmlNode *c = root->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            n++;
    if (n > MAX_OPS) {
        set_err(err, errlen, "more than %d operations", MAX_OPS);
        goto out;
    }
    if (n && (out->ops = calloc(n, sizeof *out->ops)) == NULL) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    for (xmlNode *c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (c->ns == NULL || strcmp((const char *)c->ns->href, US_LISTS_NS) != 0) {
            set_err(err, errlen, "<%s> is not in %s", (const char *)c->name, US_LISTS_NS);
            goto out;
        }
        if (parse_op(c, &out->ops[out->nops], err, errlen) != 0)
            goto out;
        out->nops++;
    }
    rc = 0;
out:
    xmlFree(ver);
    xmlFreeDoc(doc);
    if (rc != 0)
        us_service_clear(out);
    if (rc != 0)
        out->version = -1;
    return rc;
}

/* ------------------------------------------------------------------ lists */

static struct ulist *
find(const struct us_lists *l, const char *owner)
{
    for (struct ulist *u = l->tab[hash(owner)]; u; u = u->hnext)
        if (strcmp(u->owner, owner) == 0)
            return u;
    return NULL;
}

static void
ulist_free(struct ulist *u)
{
    if (u == NULL)
        return;
    vec_clear(&u->contacts);
    vec_clear(&u->groups);
    vec_clear(&u->acl);
    free(u->owner);
    free(u);
}

static struct ulist *
ulist_new(const char *owner)
{
    struct ulist *u = calloc(1, sizeof *u);

    if (u && (u->owner = strdup(owner)) == NULL) {
        free(u);
        return NULL;
    }
    return u;
}

static void
insert(struct us_lists *l, struct ulist *u)
{
    uint32_t h = hash(u->owner);

    u->hnext = l->tab[h];
    l->tab[h] = u;
}

static void
replace(struct us_lists *l, struct ulist *old, struct ulist *nu)
{
    for (struct ulist **pp = &l->tab[hash(old->owner)]; *pp; pp = &(*pp)->hnext)
        if (*pp == old) {
            nu->hnext = old->hnext;
            *pp = nu;
            ulist_free(old);
            return;
        }
}

bool
us_lists_blocks(const struct us_lists *l, const char *owner, const char *who)
{
    const struct ulist *u = l && owner && who ? find(l, owner) : NULL;
    const struct entry *e;
    const char *at;

    if (u == NULL)
        return false;
    if ((e = vec_find(&u->acl, who)) != NULL)
        return e->block;   /* a user entry decides */
    at = strchr(who, '@');
    if (at && (e = vec_find(&u->acl, at + 1)) != NULL)
        return e->block;
    return false;
}

long long
us_lists_version(const struct us_lists *l, const char *owner)
{
    const struct ulist *u = find(l, owner);

    return u ? u->version : 0;
}

void
us_lists_foreach_contact(const struct us_lists *l, const char *owner,
                         void (*fn)(const char *uri, const char *name, void *arg), void *arg)
{
    const struct ulist *u = l && owner ? find(l, owner) : NULL;

    for (size_t i = 0; u && i < u->contacts.n; i++)
        fn(u->contacts.v[i].key, u->contacts.v[i].name, arg);
}

static void
add_entries(xmlNode *root, const struct vec *v, const char *kind)
{
    for (size_t i = 0; i < v->n; i++) {
        const struct entry *e = &v->v[i];
        xmlNode *n;
        if (strcmp(kind, "acl") == 0) {
            n = xmlNewChild(root, NULL, (const xmlChar *)(e->block ? "block" : "allow"), NULL);
            xmlSetProp(n, (const xmlChar *)(strchr(e->key, '@') ? "user" : "domain"), (const xmlChar *)e->key);
        } else if (strcmp(kind, "group") == 0) {
            n = xmlNewChild(root, NULL, (const xmlChar *)"group", NULL);
            xmlSetProp(n, (const xmlChar *)"id", (const xmlChar *)e->key);
            if (e->name)
                xmlSetProp(n, (const xmlChar *)"name", (const xmlChar *)e->name);
        } else {
            char uri[600];
            n = xmlNewChild(root, NULL, (const xmlChar *)"contact", NULL);
            snprintf(uri, sizeof uri, "sip:%s", e->key);
            xmlSetProp(n, (const xmlChar *)"uri", (const xmlChar *)uri);
            if (e->name)
                xmlSetProp(n, (const xmlChar *)"name", (const xmlChar *)e->name);
            if (e->groups)
                xmlSetProp(n, (const xmlChar *)"groups", (const xmlChar *)e->groups);
        }
    }
}

char *
us_lists_document(const struct us_lists *l, const char *owner, size_t *len)
{
    const struct ulist *u = find(l, owner);
    xmlDoc *doc = xmlNewDoc((const xmlChar *)"1.0");
    xmlNode *root;
    xmlChar *mem = NULL;
    int size = 0;
    char buf[600], *res = NULL;

    if (doc == NULL || (root = xmlNewNode(NULL, (const xmlChar *)"contacts")) == NULL)
        goto out;
    xmlDocSetRootElement(doc, root);
    xmlSetNs(root, xmlNewNs(root, (const xmlChar *)US_LISTS_NS, NULL));
    snprintf(buf, sizeof buf, "sip:%s", owner);
    xmlSetProp(root, (const xmlChar *)"owner", (const xmlChar *)buf);
    snprintf(buf, sizeof buf, "%lld", u ? u->version : 0);
    xmlSetProp(root, (const xmlChar *)"version", (const xmlChar *)buf);
    if (u) {
        add_entries(root, &u->groups, "group");
        add_entries(root, &u->contacts, "contact");
        add_entries(root, &u->acl, "acl");
    }
    xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
    if (mem == NULL || size <= 0 || (res = malloc((size_t)size + 1)) == NULL)
        goto out;
    memcpy(res, mem, (size_t)size);
    res[size] = '\0';
    if (len)
        *len = (size_t)size;
out:
    xmlFree(mem);
    xmlFreeDoc(doc);
    return res;
}

/* ------------------------------------------------------------------ persistence */

struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void
sb_add(struct sbuf *b, const char *s)
{
    size_t l = strlen(s ? s : "") + 1;

    if (b->oom)
        return;
    if (b->n + l > b->cap) {
        size_t cap = (b->cap + l) * 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s ? s : "", l);
    b->n += l;
}

/* Value: "v1\0<version>\0" then records "C\0key\0name\0groups\0", "G\0id\0name\0", "A\0key\0b|a\0". */
static void
persist(struct us_lists *l, const struct ulist *u, store_done_fn *done, void *arg)
{
    struct sbuf b = {0};
    char v[32];

    snprintf(v, sizeof v, "%lld", u->version);
    sb_add(&b, "v1");
    sb_add(&b, v);
    for (size_t i = 0; i < u->contacts.n; i++) {
        sb_add(&b, "C");
        sb_add(&b, u->contacts.v[i].key);
        sb_add(&b, u->contacts.v[i].name);
        sb_add(&b, u->contacts.v[i].groups);
    }
    for (size_t i = 0; i < u->groups.n; i++) {
        sb_add(&b, "G");
        sb_add(&b, u->groups.v[i].key);
        sb_add(&b, u->groups.v[i].name);
    }
    for (size_t i = 0; i < u->acl.n; i++) {
        sb_add(&b, "A");
        sb_add(&b, u->acl.v[i].key);
        sb_add(&b, u->acl.v[i].block ? "b" : "a");
    }
    if (b.oom || store_kv_put(l->st, KV_NS, u->owner, b.p, b.n, done, arg) != 0) {
        if (done)
            done(-1, arg);
    }
    free(b.p);
}

static const char *
next_field(const char **cur, const char *end)
{
    const char *s = *cur, *z;

    if (s >= end || (z = memchr(s, '\0', (size_t)(end - s))) == NULL)
        return NULL;
    *cur = z + 1;
    return s;
}

static void
load_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct us_lists *l = arg;
    const char *cur = value, *end = (const char *)value + len, *t, *a, *b, *c;
    struct ulist *u = ulist_new(key);

    if (u == NULL)
        return;
    if ((t = next_field(&cur, end)) == NULL || strcmp(t, "v1") != 0 || (a = next_field(&cur, end)) == NULL)
        goto bad;
    u->version = strtoll(a, NULL, 10);
    while ((t = next_field(&cur, end)) != NULL) {
        if ((a = next_field(&cur, end)) == NULL || (b = next_field(&cur, end)) == NULL)
            goto bad;
        if (strcmp(t, "C") == 0) {
            if ((c = next_field(&cur, end)) == NULL || vec_set(&u->contacts, a, b, c, false, SIZE_MAX) != 0)
                goto bad;
        } else if (strcmp(t, "G") == 0) {
            if (vec_set(&u->groups, a, b, NULL, false, SIZE_MAX) != 0)
                goto bad;
        } else if (strcmp(t, "A") == 0) {
            if (vec_set(&u->acl, a, NULL, NULL, b[0] == 'b', SIZE_MAX) != 0)
                goto bad;
        } else {
            goto bad;
        }
    }
    if (find(l, key)) {
        ulist_free(u);
        return;
    }
    insert(l, u);
    return;
bad:
    log_warn("stored list of %s is malformed: ignored", key);
    ulist_free(u);
}

long
us_lists_load(struct us_lists *l)
{
    long n = 0;

    if (store_kv_load(l->st, KV_NS, load_cb, l) != 0)
        return -1;
    for (unsigned i = 0; i < NBUCKETS; i++)
        for (struct ulist *u = l->tab[i]; u; u = u->hnext)
            n++;
    return n;
}

/* ------------------------------------------------------------------ SERVICE */

/* Every group id named by <groups> exists in <u>? */
static bool
groups_exist(const struct ulist *u, const char *groups)
{
    char buf[1024], *p, *tok;

    if (groups == NULL)
        return true;
    snprintf(buf, sizeof buf, "%s", groups);
    for (p = buf; (tok = strsep(&p, " \t")) != NULL;)
        if (tok[0] && vec_find(&u->groups, tok) == NULL)
            return false;
    return true;
}

/* Removes group <id> from every contact's group list. */
static void
drop_group(struct ulist *u, const char *id)
{
    for (size_t i = 0; i < u->contacts.n; i++) {
        struct entry *e = &u->contacts.v[i];
        char out[1024] = "", buf[1024], *p, *tok;
        if (e->groups == NULL)
            continue;
        snprintf(buf, sizeof buf, "%s", e->groups);
        for (p = buf; (tok = strsep(&p, " \t")) != NULL;)
            if (tok[0] && strcmp(tok, id) != 0)
                snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", out[0] ? " " : "", tok);
        free(e->groups);
        e->groups = dup_or_null(out);
    }
}

/* Applies <svc> to a copy of <cur> (may be NULL); returns the new list or NULL with <code>/<reason>. */
static struct ulist *
apply(const struct ulist *cur, const char *owner, const struct us_service *svc, bool *acl_changed, int *code,
      char *reason, size_t rlen)
{
    struct ulist *u = ulist_new(owner);

    *code = 500;
    snprintf(reason, rlen, "Out Of Memory");
    if (u == NULL)
        return NULL;
    if (cur) {
        u->version = cur->version;
        if (vec_copy(&u->contacts, &cur->contacts) != 0 || vec_copy(&u->groups, &cur->groups) != 0 ||
            vec_copy(&u->acl, &cur->acl) != 0)
            goto fail;
    }
    for (size_t i = 0; i < svc->nops; i++) {
        const struct us_op *op = &svc->ops[i];
        switch (op->kind) {
        case US_OP_CONTACT_SET:
            if (!groups_exist(u, op->groups)) {
                *code = 400;
                snprintf(reason, rlen, "Unknown Group For %.200s", op->key);
                goto fail;
            }
            if (strcasecmp(op->key, owner) == 0) {
                *code = 400;
                snprintf(reason, rlen, "Own Address In Contact List");
                goto fail;
            }
            if (vec_set(&u->contacts, op->key, op->name, op->groups, false, MAX_CONTACTS) != 0) {
                *code = 403;
                snprintf(reason, rlen, "Contact List Full");
                goto fail;
            }
            break;
        case US_OP_CONTACT_DEL:
            vec_del(&u->contacts, op->key);
            break;
        case US_OP_GROUP_SET:
            if (vec_set(&u->groups, op->key, op->name, NULL, false, MAX_GROUPS) != 0) {
                *code = 403;
                snprintf(reason, rlen, "Too Many Groups");
                goto fail;
            }
            break;
        case US_OP_GROUP_DEL:
            vec_del(&u->groups, op->key);
            drop_group(u, op->key);
            break;
        case US_OP_ACL_SET:
            if (vec_set(&u->acl, op->key, NULL, NULL, op->block, MAX_ACL) != 0) {
                *code = 403;
                snprintf(reason, rlen, "Allow/Block List Full");
                goto fail;
            }
            *acl_changed = true;
            break;
        case US_OP_ACL_DEL:
            vec_del(&u->acl, op->key);
            *acl_changed = true;
            break;
        }
    }
    u->version++;
    return u;
fail:
    ulist_free(u);
    return NULL;
}

struct pending {
    struct us_lists *l;
    struct px_req *req;
    char *owner;
    bool acl_changed;
};

static void
reply_doc(struct us_lists *l, struct px_req *req, int code, const char *reason, const char *owner)
{
    struct sip_msg *resp = px_reply_build(req, code, reason);
    size_t len = 0;
    char *doc = us_lists_document(l, owner, &len), v[32];

    if (resp == NULL) {
        free(doc);
        return;
    }
    snprintf(v, sizeof v, "%lld", us_lists_version(l, owner));
    sip_msg_add_header(resp, "X-Parley-List-Version", v);
    if (doc)
        sip_msg_set_body(resp, US_LISTS_CTYPE, doc, len);
    px_reply_msg(req, resp);
    sip_msg_free(resp);
    free(doc);
}

static void
service_done(int rc, void *arg)
{
    struct pending *p = arg;

    if (rc != 0)
        px_reply(p->req, 500, "List Not Stored");
    else
        reply_doc(p->l, p->req, 200, NULL, p->owner);
    us_subs_changed(p->l->subs, US_LISTS_EVENT, p->owner);
    if (p->acl_changed)
        us_subs_changed(p->l->subs, "presence", p->owner);   /* design §3: applies at once */
    px_req_unref(p->req);
    free(p->owner);
    free(p);
}

enum px_verdict
us_lists_service(struct us_lists *l, struct px_req *req, const char *owner)
{
    struct sip_msg *msg = px_req_msg(req);
    char from[512], ct[128], err[200], reason[256];
    const char *body, *c;
    size_t blen = 0;
    struct us_service svc;
    struct ulist *cur, *nu;
    struct pending *p;
    bool acl = false;
    int code;

    if (msg->osip->from == NULL || sip_uri_aor(msg->osip->from->url, from, sizeof from) == NULL ||
        strcasecmp(from, owner) != 0) {
        px_reply(req, 403, "Only The Owner Edits Its Lists");
        return PX_ANSWERED;
    }
    body = sip_msg_body(msg, &blen);
    c = sip_msg_content_type(msg, ct, sizeof ct);
    if (body == NULL || blen == 0 || c == NULL || strncasecmp(c, US_SERVICE_CTYPE, strlen(US_SERVICE_CTYPE)) != 0) {
        struct sip_msg *resp = px_reply_build(req, 415, NULL);
        if (resp) {
            sip_msg_add_header(resp, "Accept", US_SERVICE_CTYPE);
            px_reply_msg(req, resp);
            sip_msg_free(resp);
        }
        return PX_ANSWERED;
    }
    if (us_service_parse(body, blen, &svc, err, sizeof err) != 0) {
        snprintf(reason, sizeof reason, "Bad Service Document: %.200s", err);
        px_reply(req, 400, reason);
        return PX_ANSWERED;
    }
    cur = find(l, owner);
    if (svc.version != (cur ? cur->version : 0)) {
        us_service_clear(&svc);
        reply_doc(l, req, 409, "Stale List Version", owner);   /* the client re-reads and retries */
        return PX_ANSWERED;
    }
    nu = apply(cur, owner, &svc, &acl, &code, reason, sizeof reason);
    us_service_clear(&svc);
    if (nu == NULL) {
        px_reply(req, code, reason);
        return PX_ANSWERED;
    }
    if ((p = calloc(1, sizeof *p)) == NULL || (p->owner = strdup(owner)) == NULL) {
        free(p);
        ulist_free(nu);
        px_reply(req, 500, "Out Of Memory");
        return PX_ANSWERED;
    }
    if (cur)
        replace(l, cur, nu);
    else
        insert(l, nu);
    p->l = l;
    p->req = req;
    p->acl_changed = acl;
    px_req_ref(req);
    persist(l, nu, service_done, p);   /* the 200 waits for the commit */
    return PX_SUSPENDED;
}

/* ------------------------------------------------------------------ package */

static int
pkg_authorize(void *arg, const char *resource, const char *watcher)
{
    (void)arg;
    return strcasecmp(resource, watcher) == 0 ? 0 : 403;   /* one's own list only */
}

static int
pkg_body(void *arg, const struct us_sub *s, char **body, size_t *len)
{
    struct us_lists *l = arg;

    *body = us_lists_document(l, s->resource, len);
    return *body ? 0 : -1;
}

struct us_lists *
us_lists_new(struct store *st, struct us_subs *subs)
{
    struct us_lists *l = calloc(1, sizeof *l);
    struct us_pkg pkg = {
        .name = US_LISTS_EVENT,
        .ctype = US_LISTS_CTYPE,
        .authorize = pkg_authorize,
        .body = pkg_body,
    };

    if (l == NULL)
        return NULL;
    xmlInitParser();
    l->st = st;
    l->subs = subs;
    pkg.arg = l;
    if (subs && us_subs_add_pkg(subs, &pkg) != 0) {
        free(l);
        return NULL;
    }
    return l;
}

void
us_lists_free(struct us_lists *l)
{
    if (l == NULL)
        return;
    for (unsigned i = 0; i < NBUCKETS; i++)
        for (struct ulist *u = l->tab[i], *n; u; u = n) {
            n = u->hnext;
            ulist_free(u);
        }
    free(l);
}

/* ------------------------------------------------------------------ administration */

void
us_lists_foreach(const struct us_lists *l, const char *owner, us_lists_entry_fn *fn, void *arg)
{
    const struct ulist *u = l && owner ? find(l, owner) : NULL;
    const struct vec *vecs[3];
    const enum us_op_kind kinds[3] = {US_OP_GROUP_SET, US_OP_CONTACT_SET, US_OP_ACL_SET};

    if (u == NULL)
        return;
    vecs[0] = &u->groups;
    vecs[1] = &u->contacts;
    vecs[2] = &u->acl;
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < vecs[k]->n; i++) {
            const struct entry *e = &vecs[k]->v[i];
            struct us_op op = {kinds[k], e->key, e->name, e->groups, e->block};
            fn(&op, arg);
        }
}

struct edit_pending {
    struct us_lists *l;
    char *owner;
    bool acl_changed;
};

/* The notification half of service_done(), for changes that came without a SIP request. */
static void
edit_done(int rc, void *arg)
{
    struct edit_pending *p = arg;

    if (rc != 0)
        log_err("the list of %s was changed but not stored", p->owner);
    us_subs_changed(p->l->subs, US_LISTS_EVENT, p->owner);
    if (p->acl_changed)
        us_subs_changed(p->l->subs, "presence", p->owner);   /* design §3: applies at once */
    free(p->owner);
    free(p);
}

int
us_lists_edit(struct us_lists *l, const char *owner, const struct us_service *svc, char *reason, size_t rlen)
{
    struct ulist *cur = find(l, owner), *nu;
    struct edit_pending *p;
    bool acl = false;
    int code;

    if (svc->version >= 0 && svc->version != (cur ? cur->version : 0)) {
        snprintf(reason, rlen, "Stale List Version (current %lld)", cur ? cur->version : 0);
        return 409;
    }
    if ((nu = apply(cur, owner, svc, &acl, &code, reason, rlen)) == NULL)
        return code;
    if ((p = calloc(1, sizeof *p)) == NULL || (p->owner = strdup(owner)) == NULL) {
        free(p);
        ulist_free(nu);
        snprintf(reason, rlen, "Out Of Memory");
        return 500;
    }
    if (cur)
        replace(l, cur, nu);
    else
        insert(l, nu);
    p->l = l;
    p->acl_changed = acl;
    persist(l, nu, edit_done, p);
    return 0;
}

int
us_lists_norm_user(const char *in, char *out, size_t outlen)
{
    return norm_uri(in, out, outlen);
}

int
us_lists_norm_domain(const char *in, char *out, size_t outlen)
{
    return norm_domain(in, out, outlen);
}
