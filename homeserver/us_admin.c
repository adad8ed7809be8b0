#define LOG_MODULE "admin"
#include "us_admin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "us_lists.h"
#include "util/log.h"

#define MAX_OPS 2000          /* as many as one SERVICE may carry (us_lists.c) */
#define MAX_NAME 256          /* display name of a contact */
#define MAX_GROUP_NAME 128

/* The routes' shared context (us_admin.h: one home server per process). */
struct us_admin {
    struct us_lists *l;
    struct px *px;
};

static struct us_admin g_admin;

/* ------------------------------------------------------------------ helpers */

static int reply_error(struct evbuffer *out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes {"error":"<fmt>"} and returns <status>. */
static int
reply_error(struct evbuffer *out, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    evbuffer_add_printf(out, "{\"error\":");
    admin_json_str(out, msg);
    evbuffer_add_printf(out, "}\n");
    return status;
}

/* Printable text of at most <max> bytes (no control characters); <min> bytes at least. */
static bool
valid_text(const char *s, size_t min, size_t max)
{
    size_t n = 0;

    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] == 0x7f)
            return false;
    return n >= min && n <= max;
}

/* The "user" query parameter, normalised into <user>; 0, or an HTTP status written to <out>. */
static int
query_user(struct admin_req *r, struct evbuffer *out, char *user, size_t len)
{
    const char *q = admin_req_query(r, "user");

    if (q == NULL)
        return reply_error(out, 400, "user parameter required (user@domain)");
    if (us_lists_norm_user(q, user, len) != 0)
        return reply_error(out, 400, "invalid user '%.200s' (want user@domain)", q);
    if (g_admin.px && !px_is_our_domain(g_admin.px, strchr(user, '@') + 1))
        return reply_error(out, 404, "domain of %.200s is not served here", user);
    return 0;
}

/* ------------------------------------------------------------------ snapshot of a list */

struct snap {
    struct us_op *v;          /* borrowed from the list (us_lists_foreach) */
    size_t n, cap;
    bool oom;
};

static void
snap_cb(const struct us_op *op, void *arg)
{
    struct snap *s = arg;

    if (s->oom)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        struct us_op *nv = realloc(s->v, cap * sizeof *nv);
        if (nv == NULL) {
            s->oom = true;
            return;
        }
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = *op;
}

static int
op_cmp(const void *a, const void *b)
{
    const struct us_op *x = a, *y = b;

    if (x->kind != y->kind)
        return (int)x->kind - (int)y->kind;
    return strcasecmp(x->key, y->key);
}

/* The entries of <owner>'s list, sorted by kind then key; -1 out of memory. */
static int
snap_take(struct snap *s, const char *owner)
{
    memset(s, 0, sizeof *s);
    us_lists_foreach(g_admin.l, owner, snap_cb, s);
    if (s->oom) {
        free(s->v);
        memset(s, 0, sizeof *s);
        return -1;
    }
    if (s->n)
        qsort(s->v, s->n, sizeof *s->v, op_cmp);
    return 0;
}

static const struct us_op *
snap_find(const struct snap *s, enum us_op_kind kind, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].kind == kind && strcasecmp(s->v[i].key, key) == 0)
            return &s->v[i];
    return NULL;
}

/* ------------------------------------------------------------------ GET */

static json_t *
group_json(const struct snap *s, const char *id)
{
    const struct us_op *g = snap_find(s, US_OP_GROUP_SET, id);

    return json_pack("{s:s,s:s}", "id", id, "name", g && g->name ? g->name : id);
}

static json_t *
contacts_json(const char *owner)
{
    struct snap s;
    json_t *j = NULL, *groups, *contacts;

    if (snap_take(&s, owner) != 0)
        return NULL;
    groups = json_array();
    contacts = json_array();
    for (size_t i = 0; groups && contacts && i < s.n; i++) {
        const struct us_op *e = &s.v[i];
        if (e->kind == US_OP_GROUP_SET) {
            json_array_append_new(groups, group_json(&s, e->key));
        } else if (e->kind == US_OP_CONTACT_SET) {
            json_t *cg = json_array();
            char buf[1024], *p, *tok;
            snprintf(buf, sizeof buf, "%s", e->groups ? e->groups : "");
            for (p = buf; cg && (tok = strsep(&p, " \t")) != NULL;)
                if (tok[0])
                    json_array_append_new(cg, group_json(&s, tok));
            json_array_append_new(contacts, json_pack("{s:s,s:s,s:o*}", "contact", e->key, "name",
                                                      e->name ? e->name : "", "groups", cg));
        }
    }
    if (groups && contacts)
        j = json_pack("{s:s,s:I,s:O,s:O}", "user", owner, "version",
                      (json_int_t)us_lists_version(g_admin.l, owner), "groups", groups, "contacts", contacts);
    json_decref(groups);
    json_decref(contacts);
    free(s.v);
    return j;
}

static json_t *
acl_json(const char *owner)
{
    struct snap s;
    json_t *j = NULL, *entries;

    if (snap_take(&s, owner) != 0)
        return NULL;
    entries = json_array();
    for (size_t i = 0; entries && i < s.n; i++) {
        const struct us_op *e = &s.v[i];
        if (e->kind == US_OP_ACL_SET)
            json_array_append_new(entries, json_pack("{s:s,s:s,s:s}", "entry", e->key, "type",
                                                     strchr(e->key, '@') ? "user" : "domain", "action",
                                                     e->block ? "block" : "allow"));
    }
    if (entries)
        j = json_pack("{s:s,s:I,s:O}", "user", owner, "version",
                      (json_int_t)us_lists_version(g_admin.l, owner), "entries", entries);
    json_decref(entries);
    free(s.v);
    return j;
}

/* Writes <j> (consumed) to <out>; 200, or 500 when <j> is NULL. */
static int
reply_json(struct evbuffer *out, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(j);
    if (text == NULL)
        return reply_error(out, 500, "out of memory");
    evbuffer_add_printf(out, "%s\n", text);
    free(text);
    return 200;
}

static int
get_contacts(struct admin_req *r, struct evbuffer *out, void *arg)
{
    char user[512];
    int st;

    (void)arg;
    if ((st = query_user(r, out, user, sizeof user)) != 0)
        return st;
    return reply_json(out, contacts_json(user));
}

static int
get_acl(struct admin_req *r, struct evbuffer *out, void *arg)
{
    char user[512];
    int st;

    (void)arg;
    if ((st = query_user(r, out, user, sizeof user)) != 0)
        return st;
    return reply_json(out, acl_json(user));
}

/* ------------------------------------------------------------------ POST */

/*
 * The list as the operations of one request see it: groups (by id and name) and the
 * contacts and allow/block entries present, updated by each operation before the next,
 * so that a batch may add a group and then put a contact in it.
 */
struct view_item {
    enum us_op_kind kind;     /* US_OP_GROUP_SET, US_OP_CONTACT_SET or US_OP_ACL_SET */
    char key[512];
    const char *name;         /* group name: borrowed from the list or the request */
    bool gone;
};

struct view {
    struct view_item *v;
    size_t n, cap;
};

static struct view_item *
view_add(struct view *w, enum us_op_kind kind, const char *key, const char *name)
{
    struct view_item *it;

    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        struct view_item *nv = realloc(w->v, cap * sizeof *nv);
        if (nv == NULL)
            return NULL;
        w->v = nv;
        w->cap = cap;
    }
    it = &w->v[w->n++];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    snprintf(it->key, sizeof it->key, "%s", key);
    it->name = name;
    return it;
}

static struct view_item *
view_find(struct view *w, enum us_op_kind kind, const char *key)
{
    for (size_t i = 0; i < w->n; i++)
        if (!w->v[i].gone && w->v[i].kind == kind && strcasecmp(w->v[i].key, key) == 0)
            return &w->v[i];
    return NULL;
}

/* A group named by id, else by name. NULL with <*ambiguous> set when two names match. */
static struct view_item *
view_group(struct view *w, const char *g, bool *ambiguous)
{
    struct view_item *hit = NULL, *it = view_find(w, US_OP_GROUP_SET, g);

    *ambiguous = false;
    if (it)
        return it;
    for (size_t i = 0; i < w->n; i++) {
        it = &w->v[i];
        if (it->gone || it->kind != US_OP_GROUP_SET || it->name == NULL || strcasecmp(it->name, g) != 0)
            continue;
        if (hit) {
            *ambiguous = true;
            return NULL;
        }
        hit = it;
    }
    return hit;
}

/* Is <name> free as a group name and id (other than group <self>)? */
static bool
group_name_free(struct view *w, const char *name, const struct view_item *self)
{
    for (size_t i = 0; i < w->n; i++) {
        const struct view_item *it = &w->v[i];
        if (it == self || it->gone || it->kind != US_OP_GROUP_SET)
            continue;
        if (strcasecmp(it->key, name) == 0 || (it->name && strcasecmp(it->name, name) == 0))
            return false;
    }
    return true;
}

static const char *
jstr(const json_t *op, const char *field)
{
    return json_string_value(json_object_get(op, field));
}

struct post {
    struct view w;
    struct us_service svc;
    struct evbuffer *out;
    int status;               /* the error written to <out>, 0 while none */
};

static int post_error(struct post *p, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
post_error(struct post *p, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->status = reply_error(p->out, status, "%s", msg);
    return -1;
}

/* Appends an operation for the SERVICE path; the strings are copied. 0 or -1. */
static int
push_op(struct post *p, enum us_op_kind kind, const char *key, const char *name, const char *groups,
        bool block)
{
    struct us_op *op = &p->svc.ops[p->svc.nops];

    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->block = block;
    if ((op->key = strdup(key)) == NULL || (name && (op->name = strdup(name)) == NULL) ||
        (groups && (op->groups = strdup(groups)) == NULL)) {
        free(op->key);
        free(op->name);
        memset(op, 0, sizeof *op);
        return post_error(p, 500, "out of memory");
    }
    p->svc.nops++;
    return 0;
}

static int
contact_op(struct post *p, const json_t *op, size_t idx)
{
    const char *what = jstr(op, "op"), *c = jstr(op, "contact"), *g = jstr(op, "group");
    char key[512], groups[1024] = "";
    struct view_item *it;
    bool amb;

    if (what == NULL)
        return post_error(p, 400, "operation %zu: \"op\" missing", idx);
    if (strcmp(what, "add") == 0 || strcmp(what, "remove") == 0) {
        if (us_lists_norm_user(c, key, sizeof key) != 0)
            return post_error(p, 400, "operation %zu: contact must be user@domain, not '%.200s'", idx,
                              c ? c : "");
        if (what[0] == 'r') {
            if ((it = view_find(&p->w, US_OP_CONTACT_SET, key)) == NULL)
                return post_error(p, 404, "%s is not in the contact list", key);
            it->gone = true;
            return push_op(p, US_OP_CONTACT_DEL, key, NULL, NULL, false);
        }
        const char *name = jstr(op, "name");
        const json_t *ga = json_object_get(op, "groups"), *gv;
        size_t i;
        if (name && !valid_text(name, 0, MAX_NAME))
            return post_error(p, 400, "operation %zu: name must be printable, at most %d bytes", idx, MAX_NAME);
        if (ga && !json_is_array(ga))
            return post_error(p, 400, "operation %zu: groups must be an array of group names", idx);
        json_array_foreach(ga, i, gv) {
            const char *gs = json_string_value(gv);
            if (gs == NULL)
                return post_error(p, 400, "operation %zu: groups must be an array of group names", idx);
            if ((it = view_group(&p->w, gs, &amb)) == NULL)
                return post_error(p, amb ? 409 : 404, amb ? "group name '%.200s' is ambiguous: use its id"
                                                          : "no group '%.200s'", gs);
            if (strlen(groups) + strlen(it->key) + 2 > sizeof groups)
                return post_error(p, 400, "operation %zu: too many groups", idx);
            snprintf(groups + strlen(groups), sizeof groups - strlen(groups), "%s%s", groups[0] ? " " : "",
                     it->key);
        }
        if (view_find(&p->w, US_OP_CONTACT_SET, key) == NULL && view_add(&p->w, US_OP_CONTACT_SET, key, NULL) == NULL)
            return post_error(p, 500, "out of memory");
        return push_op(p, US_OP_CONTACT_SET, key, name && name[0] ? name : NULL, groups[0] ? groups : NULL, false);
    }
    if (strcmp(what, "group-add") == 0) {
        char id[32];
        if (g == NULL || !valid_text(g, 1, MAX_GROUP_NAME))
            return post_error(p, 400, "operation %zu: group must be a printable name of 1 to %d bytes", idx,
                              MAX_GROUP_NAME);
        if (!group_name_free(&p->w, g, NULL))
            return post_error(p, 409, "group '%.200s' exists", g);
        for (unsigned n = 1;; n++) {   /* ids as the SIP clients' own: small numbers */
            snprintf(id, sizeof id, "%u", n);
            if (view_find(&p->w, US_OP_GROUP_SET, id) == NULL)
                break;
        }
        if (view_add(&p->w, US_OP_GROUP_SET, id, g) == NULL)
            return post_error(p, 500, "out of memory");
        return push_op(p, US_OP_GROUP_SET, id, g, NULL, false);
    }
    if (strcmp(what, "group-rename") == 0 || strcmp(what, "group-remove") == 0) {
        if (g == NULL || g[0] == '\0')
            return post_error(p, 400, "operation %zu: \"group\" missing", idx);
        if ((it = view_group(&p->w, g, &amb)) == NULL)
            return post_error(p, amb ? 409 : 404, amb ? "group name '%.200s' is ambiguous: use its id"
                                                      : "no group '%.200s'", g);
        if (strcmp(what, "group-remove") == 0) {
            it->gone = true;
            return push_op(p, US_OP_GROUP_DEL, it->key, NULL, NULL, false);
        }
        const char *name = jstr(op, "name");
        if (name == NULL || !valid_text(name, 1, MAX_GROUP_NAME))
            return post_error(p, 400, "operation %zu: name must be a printable name of 1 to %d bytes", idx,
                              MAX_GROUP_NAME);
        if (!group_name_free(&p->w, name, it))
            return post_error(p, 409, "group '%.200s' exists", name);
        it->name = name;
        return push_op(p, US_OP_GROUP_SET, it->key, name, NULL, false);
    }
    return post_error(p, 400, "operation %zu: unknown op '%.100s' (add, remove, group-add, group-rename, "
                              "group-remove)", idx, what);
}

static int
acl_op(struct post *p, const json_t *op, size_t idx)
{
    const char *what = jstr(op, "op"), *e = jstr(op, "entry");
    char key[512];
    struct view_item *it;
    int r;

    if (what == NULL || (strcmp(what, "allow") != 0 && strcmp(what, "block") != 0 && strcmp(what, "remove") != 0))
        return post_error(p, 400, "operation %zu: op must be allow, block or remove", idx);
    if (e == NULL)
        r = -1;
    else if (strchr(e, '@'))
        r = us_lists_norm_user(e, key, sizeof key);
    else
        r = us_lists_norm_domain(e, key, sizeof key);
    if (r != 0)
        return post_error(p, 400, "operation %zu: entry must be user@domain or a domain, not '%.200s'", idx,
                          e ? e : "");
    it = view_find(&p->w, US_OP_ACL_SET, key);
    if (what[0] == 'r') {
        if (it == NULL)
            return post_error(p, 404, "%s is not in the allow/block list", key);
        it->gone = true;
        return push_op(p, US_OP_ACL_DEL, key, NULL, NULL, false);
    }
    if (it == NULL && view_add(&p->w, US_OP_ACL_SET, key, NULL) == NULL)
        return post_error(p, 500, "out of memory");
    return push_op(p, US_OP_ACL_SET, key, NULL, NULL, what[0] == 'b');
}

static void
view_cb(const struct us_op *op, void *arg)
{
    struct post *p = arg;

    if (p->status == 0 && view_add(&p->w, op->kind, op->key, op->name) == NULL)
        post_error(p, 500, "out of memory");
}

/* POST for both lists: parses, checks against the current list, applies with us_lists_edit. */
static int
post_ops(struct admin_req *r, struct evbuffer *out, bool acl)
{
    struct post p;
    char user[512], reason[256];
    const char *body;
    size_t blen = 0, i;
    json_t *j = NULL, *ops, *op;
    json_error_t jerr;
    int st;

    memset(&p, 0, sizeof p);
    p.out = out;
    p.svc.version = -1;
    if ((st = query_user(r, out, user, sizeof user)) != 0)
        return st;
    body = admin_req_body(r, &blen);
    if (body == NULL || blen == 0)
        return reply_error(out, 400, "a JSON body {\"ops\":[...]} is required");
    if ((j = json_loadb(body, blen, 0, &jerr)) == NULL || !json_is_object(j)) {
        st = reply_error(out, 400, "body is not a JSON object%s%.200s", j ? "" : ": ", j ? "" : jerr.text);
        goto out;
    }
    if (json_object_get(j, "op")) {
        ops = json_array();   /* one operation without the "ops" wrapper */
        json_array_append(ops, j);
    } else {
        ops = json_incref(json_object_get(j, "ops"));
    }
    if (!json_is_array(ops) || json_array_size(ops) == 0 || json_array_size(ops) > MAX_OPS) {
        json_decref(ops);
        st = reply_error(out, 400, "\"ops\" must be an array of 1 to %d operations", MAX_OPS);
        goto out;
    }
    if (json_object_get(j, "version")) {
        json_int_t v = json_integer_value(json_object_get(j, "version"));
        if (!json_is_integer(json_object_get(j, "version")) || v < 0) {
            json_decref(ops);
            st = reply_error(out, 400, "\"version\" must be a non-negative integer");
            goto out;
        }
        p.svc.version = v;
    }
    if ((p.svc.ops = calloc(json_array_size(ops), sizeof *p.svc.ops)) == NULL) {
        json_decref(ops);
        st = reply_error(out, 500, "out of memory");
        goto out;
    }
    us_lists_foreach(g_admin.l, user, view_cb, &p);
    json_array_foreach(ops, i, op) {
        if (p.status)
            break;
        if (!json_is_object(op)) {
            post_error(&p, 400, "operation %zu is not an object", i);
            break;
        }
        if (acl)
            acl_op(&p, op, i);
        else
            contact_op(&p, op, i);
    }
    json_decref(ops);
    if (p.status) {
        st = p.status;
        goto out;
    }
    if ((st = us_lists_edit(g_admin.l, user, &p.svc, reason, sizeof reason)) != 0) {
        st = reply_error(out, st == 409 || st == 400 || st == 403 ? st : 500, "%s", reason);
        goto out;
    }
    log_info("admin: %zu change(s) to the %s of %s, version %lld", p.svc.nops, acl ? "allow/block list" : "contacts",
             user, us_lists_version(g_admin.l, user));
    st = reply_json(out, acl ? acl_json(user) : contacts_json(user));
out:
    json_decref(j);
    us_service_clear(&p.svc);
    free(p.w.v);
    return st;
}

static int
post_contacts(struct admin_req *r, struct evbuffer *out, void *arg)
{
    (void)arg;
    return post_ops(r, out, false);
}

static int
post_acl(struct admin_req *r, struct evbuffer *out, void *arg)
{
    (void)arg;
    return post_ops(r, out, true);
}

int
us_admin_register(struct admin_http *a, struct us_lists *l, struct px *px)
{
    if (a == NULL || l == NULL)
        return 0;
    g_admin.l = l;
    g_admin.px = px;
    if (admin_http_add_route(a, "/api/contacts", get_contacts, NULL) != 0 ||
        admin_http_add_action(a, "/api/contacts", post_contacts, NULL) != 0 ||
        admin_http_add_route(a, "/api/acl", get_acl, NULL) != 0 ||
        admin_http_add_action(a, "/api/acl", post_acl, NULL) != 0)
        return -1;
    return 0;
}
