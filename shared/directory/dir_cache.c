/* dir_cache: in-memory directory and its sqlite copy (see dir_cache.h). */
#define LOG_MODULE "dir"
#include "directory/dir_cache.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/log.h"

/* ---- hash table --------------------------------------------------------------------- */

struct map_ent {
    char *key;
    void *val;
    uint64_t hash;
    struct map_ent *next;
};

struct dir_map {
    struct map_ent **slots;
    size_t n_slots;           /* power of two */
    size_t count;
    dir_map_free_fn *free_fn;
};

/* FNV-1a, 64 bit */
static uint64_t
hash_str(const char *s)
{
    return hash_fnv1a64_str(HASH_FNV64_BASIS, s);
}

struct dir_map *
dir_map_new(dir_map_free_fn *free_fn)
{
    struct dir_map *m = calloc(1, sizeof *m);

    if (m == NULL)
        return NULL;
    m->n_slots = 64;
    m->slots = calloc(m->n_slots, sizeof *m->slots);
    if (m->slots == NULL) {
        free(m);
        return NULL;
    }
    m->free_fn = free_fn;
    return m;
}

void
dir_map_free(struct dir_map *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_slots; i++) {
        struct map_ent *e = m->slots[i], *n;
        for (; e; e = n) {
            n = e->next;
            if (m->free_fn)
                m->free_fn(e->val);
            free(e->key);
            free(e);
        }
    }
    free(m->slots);
    free(m);
}

static struct map_ent **
find(const struct dir_map *m, const char *key, uint64_t h)
{
    struct map_ent **pp = &m->slots[h & (m->n_slots - 1)];

    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
            return pp;
    return pp;
}

void *
dir_map_get(const struct dir_map *m, const char *key)
{
    struct map_ent **pp = find(m, key, hash_str(key));

    return *pp ? (*pp)->val : NULL;
}

static void
grow(struct dir_map *m)
{
    size_t n = m->n_slots * 2;
    struct map_ent **slots = calloc(n, sizeof *slots);

    if (slots == NULL)
        return;                 /* keep working with longer chains */
    for (size_t i = 0; i < m->n_slots; i++) {
        struct map_ent *e = m->slots[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n;
}

int
dir_map_put(struct dir_map *m, const char *key, void *val)
{
    uint64_t h = hash_str(key);
    struct map_ent **pp = find(m, key, h), *e;

    if (*pp) {
        if (m->free_fn && (*pp)->val != val)
            m->free_fn((*pp)->val);
        (*pp)->val = val;
        return 0;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return -1;
    e->key = strdup(key);
    if (e->key == NULL) {
        free(e);
        return -1;
    }
    e->val = val;
    e->hash = h;
    *pp = e;
    if (++m->count > m->n_slots)
        grow(m);
    return 0;
}

void *
dir_map_take(struct dir_map *m, const char *key)
{
    struct map_ent **pp = find(m, key, hash_str(key)), *e = *pp;
    void *val;

    if (e == NULL)
        return NULL;
    *pp = e->next;
    val = e->val;
    free(e->key);
    free(e);
    m->count--;
    return val;
}

bool
dir_map_del(struct dir_map *m, const char *key)
{
    struct map_ent **pp = find(m, key, hash_str(key)), *e = *pp;

    if (e == NULL)
        return false;
    *pp = e->next;
    if (m->free_fn)
        m->free_fn(e->val);
    free(e->key);
    free(e);
    m->count--;
    return true;
}

size_t
dir_map_count(const struct dir_map *m)
{
    return m->count;
}

void
dir_map_foreach(const struct dir_map *m, dir_map_iter_fn *fn, void *arg)
{
    for (size_t i = 0; i < m->n_slots; i++)
        for (struct map_ent *e = m->slots[i]; e; e = e->next)
            if (!fn(e->key, e->val, arg))
                return;
}

/* ---- cache ----------------------------------------------------------------------------- */

enum dir_kind
dir_key_kind(const char *key, const char **name)
{
    static const struct {
        const char *prefix;
        enum dir_kind kind;
    } kinds[] = {
        {DIR_PREFIX_USERS, DIR_KIND_USER},
        {DIR_PREFIX_SERVERS, DIR_KIND_SERVER},
        {DIR_PREFIX_ROUTES, DIR_KIND_ROUTE},
    };

    *name = key;
    if (strcmp(key, DIR_KEY_SCHEMA) == 0)
        return DIR_KIND_SCHEMA;
    if (strcmp(key, DIR_KEY_APPS_ORDER) == 0)
        return DIR_KIND_APPS_ORDER;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(key, kinds[i].prefix, n) == 0 && key[n] != '\0') {
            *name = key + n;
            return kinds[i].kind;
        }
    }
    return DIR_KIND_OTHER;
}

static void
user_free_v(void *p)
{
    dir_user_free(p);
}

static void
server_free_v(void *p)
{
    dir_server_free(p);
}

static void
route_free_v(void *p)
{
    dir_route_free(p);
}

struct dir_cache *
dir_cache_new(void)
{
    struct dir_cache *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    c->users = dir_map_new(user_free_v);
    c->servers = dir_map_new(server_free_v);
    c->routes = dir_map_new(route_free_v);
    if (!c->users || !c->servers || !c->routes) {
        dir_cache_free(c);
        return NULL;
    }
    return c;
}

void
dir_cache_free(struct dir_cache *c)
{
    if (c == NULL)
        return;
    dir_map_free(c->users);
    dir_map_free(c->servers);
    dir_map_free(c->routes);
    free(c->schema);
    free(c->apps_order);
    free(c);
}

static void
notify_apps_order(const struct dir_notify *n, const char *value)
{
    if (n != NULL && n->apps_order)
        n->apps_order(value, n->apps_order_arg);
}

/* Is <a> the same optional string as <b>? */
static bool
same_opt(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Same value as what the map holds? (an identical re-put is not a change) */
static bool
same_raw(const char *old_raw, const char *raw)
{
    return old_raw != NULL && raw != NULL && strcmp(old_raw, raw) == 0;
}

static void
notify(const struct dir_notify *n, enum dir_kind kind, const char *name, const void *obj)
{
    if (n == NULL)
        return;
    if (kind == DIR_KIND_USER && n->user)
        n->user(name, obj, n->arg);
    else if (kind == DIR_KIND_SERVER && n->server)
        n->server(name, obj, n->arg);
    else if (kind == DIR_KIND_ROUTE && n->route)
        n->route(name, obj, n->arg);
}

static struct dir_map *
map_of(struct dir_cache *c, enum dir_kind kind)
{
    switch (kind) {
    case DIR_KIND_USER:
        return c->users;
    case DIR_KIND_SERVER:
        return c->servers;
    case DIR_KIND_ROUTE:
        return c->routes;
    default:
        return NULL;
    }
}

static const char *
raw_of(enum dir_kind kind, const void *obj)
{
    if (obj == NULL)
        return NULL;
    switch (kind) {
    case DIR_KIND_USER:
        return ((const struct dir_user *)obj)->raw;
    case DIR_KIND_SERVER:
        return ((const struct dir_server *)obj)->raw;
    case DIR_KIND_ROUTE:
        return ((const struct dir_route *)obj)->raw;
    default:
        return NULL;
    }
}

static void
remove_key(struct dir_cache *c, enum dir_kind kind, const char *name, const struct dir_notify *n)
{
    struct dir_map *m = map_of(c, kind);

    if (m != NULL && dir_map_del(m, name))
        notify(n, kind, name, NULL);
}

int
dir_cache_put(struct dir_cache *c, const char *key, const char *value, size_t len,
              int64_t mod_revision, const struct dir_notify *n)
{
    const char *name;
    enum dir_kind kind = dir_key_kind(key, &name);
    char lname[512], err[160] = "";
    struct dir_map *m = map_of(c, kind);
    void *obj = NULL;

    if (kind == DIR_KIND_OTHER)
        return 0;
    if (kind == DIR_KIND_SCHEMA) {
        char *s = strndup(value, len);
        if (s == NULL)
            return -1;
        free(c->schema);
        c->schema = s;
        if (strcmp(s, "1") != 0 && strcmp(s, "\"1\"") != 0)
            log_warn("directory schema is %.32s, this server knows \"1\"", s);
        return 0;
    }
    if (kind == DIR_KIND_APPS_ORDER) {
        char *s;
        if (c->apps_order && strlen(c->apps_order) == len && memcmp(c->apps_order, value, len) == 0)
            return 0;
        if ((s = strndup(value, len)) == NULL)
            return -1;
        free(c->apps_order);
        c->apps_order = s;
        notify_apps_order(n, s);
        return 0;
    }
    if (kind == DIR_KIND_USER) {
        /* the map key is the lowercase AoR whatever case the etcd key used */
        if (strlen(name) >= sizeof lname) {
            c->rejected++;
            log_peer(LOG_WARN, "directory: %.80s...: key too long, rejected", key);
            return 0;
        }
        memcpy(lname, name, strlen(name) + 1);
        name = dir_lower(lname);
    }
    if (same_raw(raw_of(kind, dir_map_get(m, name)), value) && len == strlen(value))
        return 0;
    if (kind == DIR_KIND_USER) {
        struct dir_user *u = dir_user_decode(name, value, len, err, sizeof err);
        if (u)
            u->mod_revision = mod_revision;
        obj = u;
    } else if (kind == DIR_KIND_SERVER) {
        struct dir_server *s = dir_server_decode(name, value, len, err, sizeof err);
        if (s)
            s->mod_revision = mod_revision;
        obj = s;
    } else {
        struct dir_route *r = dir_route_decode(name, value, len, err, sizeof err);
        if (r)
            r->mod_revision = mod_revision;
        obj = r;
    }
    if (obj == NULL) {
        c->rejected++;
        log_peer(LOG_WARN, "directory: %s rejected: %s", key, err);
        remove_key(c, kind, name, n);
        return 0;
    }
    if (dir_map_put(m, name, obj) != 0) {
        if (kind == DIR_KIND_USER)
            dir_user_free(obj);
        else if (kind == DIR_KIND_SERVER)
            dir_server_free(obj);
        else
            dir_route_free(obj);
        return -1;
    }
    notify(n, kind, name, obj);
    return 0;
}

void
dir_cache_delete(struct dir_cache *c, const char *key, const struct dir_notify *n)
{
    const char *name;
    enum dir_kind kind = dir_key_kind(key, &name);
    char lname[512];

    if (kind == DIR_KIND_SCHEMA) {
        free(c->schema);
        c->schema = NULL;
        return;
    }
    if (kind == DIR_KIND_APPS_ORDER) {
        if (c->apps_order != NULL) {
            free(c->apps_order);
            c->apps_order = NULL;
            notify_apps_order(n, NULL);
        }
        return;
    }
    if (kind == DIR_KIND_USER) {
        if (strlen(name) >= sizeof lname)
            return;
        memcpy(lname, name, strlen(name) + 1);
        name = dir_lower(lname);
    }
    remove_key(c, kind, name, n);
}

struct diff_ctx {
    struct dir_map *other;
    enum dir_kind kind;
    const struct dir_notify *n;
    bool removals;    /* pass 1: old keys missing from fresh; pass 2: new/changed */
};

static bool
diff_one(const char *key, void *val, void *arg)
{
    struct diff_ctx *d = arg;
    void *o = dir_map_get(d->other, key);

    if (d->removals) {
        if (o == NULL)
            notify(d->n, d->kind, key, NULL);
    } else if (o == NULL || !same_raw(raw_of(d->kind, o), raw_of(d->kind, val))) {
        notify(d->n, d->kind, key, val);
    }
    return true;
}

void
dir_cache_replace(struct dir_cache *c, struct dir_cache *fresh, const struct dir_notify *n)
{
    enum dir_kind kinds[] = {DIR_KIND_USER, DIR_KIND_SERVER, DIR_KIND_ROUTE};
    struct dir_map *old[3];
    char *old_order = c->apps_order;

    /* swap first so callbacks that look things up see the new content */
    old[0] = c->users;
    old[1] = c->servers;
    old[2] = c->routes;
    c->users = fresh->users;
    c->servers = fresh->servers;
    c->routes = fresh->routes;
    free(c->schema);
    c->schema = fresh->schema;
    c->revision = fresh->revision;
    c->rejected += fresh->rejected;
    fresh->users = old[0];
    fresh->servers = old[1];
    fresh->routes = old[2];
    fresh->schema = NULL;
    c->apps_order = fresh->apps_order;
    fresh->apps_order = NULL;
    if (n != NULL) {
        for (int i = 0; i < 3; i++) {
            struct diff_ctx d = {map_of(c, kinds[i]), kinds[i], n, true};
            dir_map_foreach(old[i], diff_one, &d);
            d.other = old[i];
            d.removals = false;
            dir_map_foreach(map_of(c, kinds[i]), diff_one, &d);
        }
        if (!same_opt(old_order, c->apps_order))
            notify_apps_order(n, c->apps_order);
    }
    free(old_order);
    dir_cache_free(fresh);
}

/* ---- disk ------------------------------------------------------------------------------- */

struct dir_disk {
    sqlite3 *db;
    char *path;
};

static int
exec(struct dir_disk *d, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(d->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_err("directory cache %s: %s: %s", d->path, sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

struct dir_disk *
dir_disk_open(const char *path)
{
    struct dir_disk *d = calloc(1, sizeof *d);

    if (d == NULL)
        return NULL;
    d->path = strdup(path);
    if (d->path == NULL)
        goto bad;
    if (sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        log_err("directory cache %s: %s", path, d->db ? sqlite3_errmsg(d->db) : "open failed");
        goto bad;
    }
    sqlite3_busy_timeout(d->db, 2000);
    /* dependencies.md §5: WAL is persistent, synchronous is per connection */
    if (exec(d, "PRAGMA journal_mode=WAL") != 0 || exec(d, "PRAGMA synchronous=NORMAL") != 0 ||
        exec(d, "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL,"
                " mod_revision INTEGER NOT NULL)") != 0 ||
        exec(d, "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)") != 0)
        goto bad;
    return d;
bad:
    dir_disk_close(d);
    return NULL;
}

void
dir_disk_close(struct dir_disk *d)
{
    if (d == NULL)
        return;
    sqlite3_close(d->db);
    free(d->path);
    free(d);
}

long
dir_disk_load(struct dir_disk *d, struct dir_cache *c)
{
    sqlite3_stmt *st = NULL;
    long n = -1, count = 0;
    int rc;

    if (sqlite3_prepare_v2(d->db, "SELECT key, value, mod_revision FROM kv", -1, &st, NULL) !=
        SQLITE_OK)
        goto out;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        const char *val = (const char *)sqlite3_column_blob(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        char *v = strndup(val ? val : "", (size_t)len);
        if (key == NULL || v == NULL) {
            free(v);
            continue;
        }
        if (dir_cache_put(c, key, v, strlen(v), sqlite3_column_int64(st, 2), NULL) != 0) {
            free(v);
            goto out;
        }
        free(v);
        count++;
    }
    if (rc != SQLITE_DONE)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT v FROM meta WHERE k='revision'", -1, &st, NULL) !=
        SQLITE_OK)
        goto out;
    if (sqlite3_step(st) == SQLITE_ROW)
        c->revision = sqlite3_column_int64(st, 0);
    n = count;
out:
    if (n < 0)
        log_err("directory cache %s: load: %s", d->path, sqlite3_errmsg(d->db));
    sqlite3_finalize(st);
    return n;
}

static int
set_revision(struct dir_disk *d, int64_t revision)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;

    if (sqlite3_prepare_v2(d->db, "INSERT OR REPLACE INTO meta (k, v) VALUES ('revision', ?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, revision);
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

int
dir_disk_replace(struct dir_disk *d, const struct dir_kv *kvs, size_t n, int64_t revision)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;

    if (exec(d, "BEGIN") != 0)
        return -1;
    if (exec(d, "DELETE FROM kv") != 0)
        goto out;
    if (sqlite3_prepare_v2(d->db, "INSERT OR REPLACE INTO kv (key, value, mod_revision)"
                           " VALUES (?, ?, ?)", -1, &st, NULL) != SQLITE_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(st, 1, kvs[i].key, (int)kvs[i].key_len, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, kvs[i].value, (int)kvs[i].value_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, kvs[i].mod_revision);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto out;
        sqlite3_reset(st);
    }
    if (set_revision(d, revision) != 0)
        goto out;
    rc = 0;
out:
    sqlite3_finalize(st);
    if (rc == 0)
        rc = exec(d, "COMMIT");
    if (rc != 0) {
        log_err("directory cache %s: write: %s", d->path, sqlite3_errmsg(d->db));
        exec(d, "ROLLBACK");
    }
    return rc;
}

int
dir_disk_apply(struct dir_disk *d, const struct dir_event *ev, size_t n, int64_t revision)
{
    sqlite3_stmt *put = NULL, *del = NULL;
    int rc = -1;

    if (exec(d, "BEGIN") != 0)
        return -1;
    if (sqlite3_prepare_v2(d->db, "INSERT OR REPLACE INTO kv (key, value, mod_revision)"
                           " VALUES (?, ?, ?)", -1, &put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(d->db, "DELETE FROM kv WHERE key = ?", -1, &del, NULL) != SQLITE_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const struct dir_kv *kv = &ev[i].kv;
        sqlite3_stmt *st = ev[i].is_delete ? del : put;
        sqlite3_bind_text(st, 1, kv->key, (int)kv->key_len, SQLITE_STATIC);
        if (!ev[i].is_delete) {
            sqlite3_bind_blob(st, 2, kv->value, (int)kv->value_len, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, kv->mod_revision);
        }
        if (sqlite3_step(st) != SQLITE_DONE)
            goto out;
        sqlite3_reset(st);
    }
    if (set_revision(d, revision) != 0)
        goto out;
    rc = 0;
out:
    sqlite3_finalize(put);
    sqlite3_finalize(del);
    if (rc == 0)
        rc = exec(d, "COMMIT");
    if (rc != 0) {
        log_err("directory cache %s: write: %s", d->path, sqlite3_errmsg(d->db));
        exec(d, "ROLLBACK");
    }
    return rc;
}
