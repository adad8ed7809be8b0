/* dir: directory cache synced from etcd, with announcement (see dir.h). */
#define LOG_MODULE "dir"
#include "directory/dir.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "directory/dir_etcd.h"
#include "util/clock.h"
#include "util/log.h"

struct dir {
    struct event_base *base;
    struct dir_etcd *etcd;          /* NULL: cache only */
    struct dir_cache *cache;
    struct dir_disk *disk;          /* NULL: no disk copy */
    struct dir_notify notify;

    /* announcement */
    char *name, *address, *cert_subject, *admin;
    enum dir_role role;
    unsigned ttl_s;
    int64_t lease;                  /* 0 = none granted */
    bool announced;

    /* sync state machine */
    struct dir_etcd_watch *watch;   /* live watch, NULL while (re)syncing */
    bool watch_created;
    bool syncing;                   /* a full range is in flight */
    struct dir_cache *fresh;        /* the cache being loaded, page by page */
    struct dir_kv *fresh_kvs;       /* copies of the pages' keys, for the disk copy */
    size_t fresh_n, fresh_cap;
    int64_t fresh_rev;              /* the revision every page is read at */
    unsigned sync_page;             /* keys per page */
    struct event *sync_timer;       /* back-off before the next sync attempt */
    unsigned backoff_ms;
    struct event *hb_timer;         /* keep-alive / reachability, persistent */
    bool hb_inflight;

    bool ready, up, stopping;
    uint64_t last_ok_ms;            /* 0 = never */
    struct dir_stats stats;
    void (*done)(void *arg);
    void *done_arg;
};

static void sync_start(struct dir *d);

static char *
dup_opt(const char *s)
{
    return strdup(s ? s : "");
}

static void
mark_ok(struct dir *d)
{
    d->last_ok_ms = clock_mono_ms();
}

static void
set_up(struct dir *d, bool up)
{
    if (d->up != up)
        log_info("etcd %s (%s)", up ? "reachable" : "unreachable", dir_etcd_endpoint(d->etcd));
    d->up = up;
}

static void
schedule_sync(struct dir *d)
{
    struct timeval tv;

    if (d->stopping || d->syncing || evtimer_pending(d->sync_timer, NULL))
        return;
    d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : DIR_SYNC_BACKOFF_MIN_MS;
    if (d->backoff_ms > DIR_SYNC_BACKOFF_MAX_MS)
        d->backoff_ms = DIR_SYNC_BACKOFF_MAX_MS;
    tv.tv_sec = d->backoff_ms / 1000;
    tv.tv_usec = (d->backoff_ms % 1000) * 1000;
    evtimer_add(d->sync_timer, &tv);
}

/* etcd is gone (or stale): stop trusting the watch and go through a full re-sync. */
static void
lost_etcd(struct dir *d)
{
    set_up(d, false);
    if (d->watch) {
        dir_etcd_watch_cancel(d->watch);
        d->watch = NULL;
        d->watch_created = false;
    }
    schedule_sync(d);
}

/* ---- watch ----------------------------------------------------------------------------- */

static void
apply_events(struct dir *d, const struct dir_watch_msg *m)
{
    int64_t rev = d->cache->revision;
    size_t applied = 0;

    for (size_t i = 0; i < m->n_events; i++) {
        const struct dir_event *ev = &m->events[i];
        /* an event at or below the loaded revision is already in the cache */
        if (ev->kv.mod_revision != 0 && ev->kv.mod_revision <= d->cache->revision)
            continue;
        if (ev->is_delete)
            dir_cache_delete(d->cache, ev->kv.key, &d->notify);
        else if (dir_cache_put(d->cache, ev->kv.key, ev->kv.value, ev->kv.value_len,
                               ev->kv.mod_revision, &d->notify) != 0)
            log_err("directory: out of memory applying %s", ev->kv.key);
        if (ev->kv.mod_revision > rev)
            rev = ev->kv.mod_revision;
        applied++;
    }
    if (m->revision > rev)
        rev = m->revision;
    d->cache->revision = rev;
    d->stats.events += applied;
    if (d->disk && applied > 0)
        dir_disk_apply(d->disk, m->events, m->n_events, rev);
}

static void
on_watch(const struct dir_watch_msg *m, void *arg)
{
    struct dir *d = arg;

    switch (m->kind) {
    case DIR_WATCH_CREATED:
        d->watch_created = true;
        set_up(d, true);
        mark_ok(d);
        break;
    case DIR_WATCH_EVENTS:
        apply_events(d, m);
        mark_ok(d);
        break;
    case DIR_WATCH_PROGRESS:
        mark_ok(d);
        break;
    case DIR_WATCH_CANCELED:
        /* compacted (or canceled for another reason): reload, then watch again */
        if (m->compact_revision > 0)
            d->stats.compactions++;
        dir_etcd_watch_cancel(d->watch);
        d->watch = NULL;
        d->watch_created = false;
        sync_start(d);
        break;
    case DIR_WATCH_DOWN:
    case DIR_WATCH_ERROR:
        lost_etcd(d);
        break;
    }
}

static void
watch_from(struct dir *d, int64_t rev)
{
    if (d->watch)
        dir_etcd_watch_cancel(d->watch);
    d->watch_created = false;
    d->watch = dir_etcd_watch(d->etcd, DIR_PREFIX, rev, on_watch, d);
    if (d->watch == NULL) {
        log_err("directory: cannot create the watch");
        schedule_sync(d);
    }
}

/* ---- full sync -------------------------------------------------------------------------- */

/*
 * The directory is read in pages of DIR_SYNC_PAGE keys (dir_opts.sync_page), all at
 * the revision of the
 * first page, so that a pool of 100k users loads in bounded answers (each within the
 * gateway timeout) and still as one consistent snapshot.
 */
#define DIR_SYNC_PAGE 2000

static void
sync_reset(struct dir *d)
{
    if (d->fresh)
        dir_cache_free(d->fresh);
    d->fresh = NULL;
    for (size_t i = 0; i < d->fresh_n; i++)
        dir_kv_clear(&d->fresh_kvs[i]);
    free(d->fresh_kvs);
    d->fresh_kvs = NULL;
    d->fresh_n = d->fresh_cap = 0;
    d->fresh_rev = 0;
}

static int
keep_kv(struct dir *d, const struct dir_kv *kv)
{
    struct dir_kv *c;

    if (d->fresh_n == d->fresh_cap) {
        size_t cap = d->fresh_cap ? d->fresh_cap * 2 : 256;
        struct dir_kv *n = realloc(d->fresh_kvs, cap * sizeof *n);
        if (n == NULL)
            return -1;
        d->fresh_kvs = n;
        d->fresh_cap = cap;
    }
    c = &d->fresh_kvs[d->fresh_n];
    *c = *kv;
    c->key = malloc(kv->key_len + 1);
    c->value = malloc(kv->value_len + 1);
    if (c->key == NULL || c->value == NULL) {
        free(c->key);
        free(c->value);
        return -1;
    }
    memcpy(c->key, kv->key, kv->key_len + 1);
    memcpy(c->value, kv->value, kv->value_len + 1);
    d->fresh_n++;
    return 0;
}

static int sync_page(struct dir *d, const char *start, size_t start_len);

static void
on_range(int rc, const struct dir_resp *resp, void *arg)
{
    struct dir *d = arg;

    if (d->stopping) {
        d->syncing = false;
        sync_reset(d);
        return;
    }
    if (rc != 0) {
        d->syncing = false;
        sync_reset(d);
        log_warn("directory: sync from etcd failed (%s), serving %zu users from cache",
                 resp->http_status ? (resp->error ? resp->error : "HTTP error") : "unreachable",
                 dir_map_count(d->cache->users));
        lost_etcd(d);
        return;
    }
    if (d->fresh == NULL) {
        /* the first page: its revision pins the rest */
        if ((d->fresh = dir_cache_new()) == NULL)
            goto oom;
        d->fresh_rev = resp->revision;
    }
    for (size_t i = 0; i < resp->n_kvs; i++) {
        const struct dir_kv *kv = &resp->kvs[i];
        if (dir_cache_put(d->fresh, kv->key, kv->value, kv->value_len, kv->mod_revision, NULL) != 0 ||
            (d->disk && keep_kv(d, kv) != 0))
            goto oom;
    }
    if (resp->more && resp->n_kvs > 0) {
        /* the next page starts just after the last key: that key + a NUL byte */
        const struct dir_kv *last = &resp->kvs[resp->n_kvs - 1];
        char *next = malloc(last->key_len + 1);
        int r;
        if (next == NULL)
            goto oom;
        memcpy(next, last->key, last->key_len);
        next[last->key_len] = '\0';
        r = sync_page(d, next, last->key_len + 1);
        free(next);
        if (r != 0) {
            d->syncing = false;
            sync_reset(d);
            schedule_sync(d);
        }
        return;
    }
    d->syncing = false;
    d->fresh->revision = d->fresh_rev;
    dir_cache_replace(d->cache, d->fresh, &d->notify);
    d->fresh = NULL;
    if (d->disk)
        dir_disk_replace(d->disk, d->fresh_kvs, d->fresh_n, d->fresh_rev);
    sync_reset(d);
    d->stats.syncs++;
    d->ready = true;
    d->backoff_ms = 0;
    set_up(d, true);
    mark_ok(d);
    log_info("directory: synced %zu users, %zu servers, %zu routes at revision %lld",
             dir_map_count(d->cache->users), dir_map_count(d->cache->servers),
             dir_map_count(d->cache->routes), (long long)d->cache->revision);
    /* dependencies.md §3.3: range, then watch from header.revision + 1 */
    watch_from(d, d->cache->revision + 1);
    return;
oom:
    d->syncing = false;
    sync_reset(d);
    log_err("directory: out of memory loading the directory");
    schedule_sync(d);
}

static int
sync_page(struct dir *d, const char *start, size_t start_len)
{
    return dir_etcd_range_page(d->etcd, DIR_PREFIX, start, start_len, (long)d->sync_page, d->fresh_rev, on_range,
                               d);
}

static void
sync_start(struct dir *d)
{
    if (d->syncing || d->stopping)
        return;
    evtimer_del(d->sync_timer);
    d->syncing = true;
    sync_reset(d);
    if (sync_page(d, DIR_PREFIX, strlen(DIR_PREFIX)) != 0) {
        d->syncing = false;
        schedule_sync(d);
    }
}

static void
on_sync_timer(evutil_socket_t fd, short what, void *arg)
{
    sync_start(arg);
}

/* ---- announcement and heartbeat ----------------------------------------------------------- */

static char *
server_json(struct dir *d)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "role", dir_role_name(d->role), "address",
                          d->address, "cert_subject", d->cert_subject, "admin", d->admin);
    char *s;

    if (o == NULL)
        return NULL;
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* A failed exchange: no answer = etcd unreachable; an etcd error leaves `up` alone. */
static void
hb_failed(struct dir *d, const struct dir_resp *resp)
{
    if (resp->http_status == 0)
        lost_etcd(d);
}

/* A successful exchange: etcd is reachable again; if we were waiting out a back-off,
 * re-sync now instead. */
static void
hb_ok(struct dir *d)
{
    set_up(d, true);
    if (d->watch && d->watch_created)
        mark_ok(d);
    if (d->watch == NULL && !d->syncing) {
        d->backoff_ms = 0;
        sync_start(d);
    }
}

static void announce(struct dir *d);

static void
on_put(int rc, const struct dir_resp *resp, void *arg)
{
    struct dir *d = arg;

    d->hb_inflight = false;
    if (d->stopping)
        return;
    if (rc == 0) {
        if (!d->announced)
            log_info("directory: announced %s%s as %s", DIR_PREFIX_SERVERS, d->name,
                     dir_role_name(d->role));
        d->announced = true;
        hb_ok(d);
        return;
    }
    if (resp->code == 5)            /* NOT_FOUND: "requested lease not found" */
        d->lease = 0;
    d->announced = false;
    hb_failed(d, resp);
}

static void
on_grant(int rc, const struct dir_resp *resp, void *arg)
{
    struct dir *d = arg;

    d->hb_inflight = false;
    if (d->stopping)
        return;
    if (rc != 0 || resp->lease_id == 0) {
        hb_failed(d, resp);
        return;
    }
    d->lease = resp->lease_id;
    announce(d);
}

static void
announce(struct dir *d)
{
    char key[512], *val;

    snprintf(key, sizeof key, "%s%s", DIR_PREFIX_SERVERS, d->name);
    val = server_json(d);
    if (val == NULL)
        return;
    d->hb_inflight = true;
    if (dir_etcd_put(d->etcd, key, val, strlen(val), d->lease, on_put, d) != 0)
        d->hb_inflight = false;
    free(val);
}

static void
grant(struct dir *d)
{
    d->hb_inflight = true;
    if (dir_etcd_lease_grant(d->etcd, d->ttl_s, on_grant, d) != 0)
        d->hb_inflight = false;
}

static void
on_keepalive(int rc, const struct dir_resp *resp, void *arg)
{
    struct dir *d = arg;

    d->hb_inflight = false;
    if (d->stopping)
        return;
    if (rc == 0 && resp->ttl > 0) {
        hb_ok(d);
        if (!d->announced)
            announce(d);
        return;
    }
    if (rc == 0 || resp->code == 5) {
        /* the lease expired (etcd answers without TTL): grant a new one and re-put */
        log_warn("directory: lease of %s lost, announcing again", d->name);
        d->lease = 0;
        d->announced = false;
        d->stats.reannounces++;
        if (rc == 0)
            hb_ok(d);
        grant(d);
        return;
    }
    hb_failed(d, resp);
}

static void
on_probe(int rc, const struct dir_resp *resp, void *arg)
{
    struct dir *d = arg;

    d->hb_inflight = false;
    if (d->stopping)
        return;
    if (rc == 0)
        hb_ok(d);
    else
        hb_failed(d, resp);
}

static void
on_hb_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dir *d = arg;

    if (d->hb_inflight || d->stopping)
        return;
    if (d->name == NULL) {
        d->hb_inflight = true;
        if (dir_etcd_range(d->etcd, DIR_KEY_SCHEMA, false, on_probe, d) != 0)
            d->hb_inflight = false;
    } else if (d->lease == 0) {
        grant(d);
    } else {
        d->hb_inflight = true;
        if (dir_etcd_lease_keepalive(d->etcd, d->lease, on_keepalive, d) != 0)
            d->hb_inflight = false;
    }
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

struct dir *
dir_new(struct event_base *base, const struct dir_opts *opts)
{
    struct dir *d = calloc(1, sizeof *d);

    if (d == NULL)
        return NULL;
    d->base = base;
    d->sync_page = opts->sync_page ? opts->sync_page : DIR_SYNC_PAGE;
    d->notify.user = opts->on_user;
    d->notify.server = opts->on_server;
    d->notify.route = opts->on_route;
    d->notify.arg = opts->cb_arg;
    d->cache = dir_cache_new();
    if (d->cache == NULL)
        goto bad;
    if (opts->cache_path && *opts->cache_path) {
        d->disk = dir_disk_open(opts->cache_path);
        if (d->disk != NULL) {
            long n = dir_disk_load(d->disk, d->cache);
            if (n >= 0)
                log_info("directory: %ld keys from %s (revision %lld)", n, opts->cache_path,
                         (long long)d->cache->revision);
            if (n >= 0 && d->cache->revision > 0)
                d->ready = true;
        }
    }
    if (opts->endpoints == NULL || *opts->endpoints == '\0') {
        d->ready = true;
        return d;
    }
    d->etcd = dir_etcd_new(base, opts->endpoints);
    if (d->etcd == NULL) {
        log_err("directory: no usable etcd endpoint in \"%s\"", opts->endpoints);
        goto bad;
    }
    d->ttl_s = opts->lease_ttl_s ? opts->lease_ttl_s : DIR_DEFAULT_LEASE_TTL_S;
    if (opts->name && *opts->name) {
        d->name = strdup(opts->name);
        d->role = opts->role;
        d->address = dup_opt(opts->address);
        d->cert_subject = dup_opt(opts->cert_subject);
        d->admin = dup_opt(opts->admin);
        if (!d->name || !d->address || !d->cert_subject || !d->admin)
            goto bad;
    }
    d->sync_timer = evtimer_new(base, on_sync_timer, d);
    d->hb_timer = event_new(base, -1, EV_PERSIST, on_hb_timer, d);
    if (d->sync_timer == NULL || d->hb_timer == NULL)
        goto bad;
    {
        unsigned ms = d->name ? d->ttl_s * 1000 / 3 : DIR_HEARTBEAT_MS;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        event_add(d->hb_timer, &tv);
    }
    sync_start(d);
    if (d->name)
        grant(d);
    return d;
bad:
    dir_free(d);
    return NULL;
}

void
dir_free(struct dir *d)
{
    if (d == NULL)
        return;
    dir_etcd_free(d->etcd);         /* drops the watch and pending calls, no callbacks */
    sync_reset(d);                  /* a sync aborted between pages */
    if (d->sync_timer)
        event_free(d->sync_timer);
    if (d->hb_timer)
        event_free(d->hb_timer);
    dir_cache_free(d->cache);
    dir_disk_close(d->disk);
    free(d->name);
    free(d->address);
    free(d->cert_subject);
    free(d->admin);
    free(d);
}

static void
on_revoke(int rc, const struct dir_resp *resp, void *arg)
{
    struct dir *d = arg;

    if (rc == 0)
        log_info("directory: %s withdrawn", d->name);
    d->lease = 0;
    d->announced = false;
    if (d->done)
        d->done(d->done_arg);
}

static void
on_done_later(evutil_socket_t fd, short what, void *arg)
{
    struct dir *d = arg;

    if (d->done)
        d->done(d->done_arg);
}

int
dir_shutdown(struct dir *d, void (*done)(void *arg), void *arg)
{
    struct timeval now = {0, 0};

    d->stopping = true;
    d->done = done;
    d->done_arg = arg;
    if (d->etcd != NULL) {
        evtimer_del(d->sync_timer);
        event_del(d->hb_timer);
        if (d->watch) {
            dir_etcd_watch_cancel(d->watch);
            d->watch = NULL;
        }
        if (d->lease != 0 && dir_etcd_lease_revoke(d->etcd, d->lease, on_revoke, d) == 0)
            return 0;
    }
    return event_base_once(d->base, -1, EV_TIMEOUT, on_done_later, d, &now);
}

/* ---- lookups -------------------------------------------------------------------------------- */

const struct dir_user *
dir_user_get(struct dir *d, const char *aor)
{
    char key[512];
    size_t n = 0;

    if (aor == NULL)
        return NULL;
    if (strncasecmp(aor, "sip:", 4) == 0)
        aor += 4;
    else if (strncasecmp(aor, "sips:", 5) == 0)
        aor += 5;
    for (; aor[n] && aor[n] != ';' && aor[n] != '?' && aor[n] != '>'; n++) {
        if (n + 1 >= sizeof key)
            return NULL;
        key[n] = aor[n];
    }
    key[n] = '\0';
    return dir_map_get(d->cache->users, dir_lower(key));
}

const struct dir_server *
dir_server_get(struct dir *d, const char *name)
{
    return name ? dir_map_get(d->cache->servers, name) : NULL;
}

struct subject_find {
    const char *subject;
    const struct dir_server *found;
};

static bool
subject_match(const char *key, void *val, void *arg)
{
    struct subject_find *f = arg;
    const struct dir_server *s = val;

    if (s->cert_subject[0] != '\0' && strcasecmp(s->cert_subject, f->subject) == 0) {
        f->found = s;
        return false;
    }
    return true;
}

const struct dir_server *
dir_server_find_by_subject(struct dir *d, const char *subject)
{
    /* a linear scan: the pool has tens of servers, and this runs once per TLS handshake */
    struct subject_find f = {subject, NULL};

    if (subject == NULL || *subject == '\0')
        return NULL;
    dir_map_foreach(d->cache->servers, subject_match, &f);
    return f.found;
}

size_t
dir_user_count(struct dir *d)
{
    return dir_map_count(d->cache->users);
}

struct iter_adapter {
    dir_server_iter_fn *sfn;
    dir_route_iter_fn *rfn;
    void *arg;
};

static bool
iter_adapt(const char *key, void *val, void *arg)
{
    struct iter_adapter *a = arg;

    return a->sfn ? a->sfn(val, a->arg) : a->rfn(val, a->arg);
}

void
dir_server_foreach(struct dir *d, dir_server_iter_fn *fn, void *arg)
{
    struct iter_adapter a = {fn, NULL, arg};

    dir_map_foreach(d->cache->servers, iter_adapt, &a);
}

void
dir_route_foreach(struct dir *d, dir_route_iter_fn *fn, void *arg)
{
    struct iter_adapter a = {NULL, fn, arg};

    dir_map_foreach(d->cache->routes, iter_adapt, &a);
}

const char *
dir_apps_order(struct dir *d)
{
    return d->cache->apps_order;
}

void
dir_set_apps_order_cb(struct dir *d, dir_apps_order_cb *cb, void *arg)
{
    d->notify.apps_order = cb;
    d->notify.apps_order_arg = arg;
}

bool
dir_is_ready(struct dir *d)
{
    return d->ready;
}

double
dir_cache_age_s(struct dir *d)
{
    if (d->last_ok_ms == 0)
        return -1.0;
    return (double)(clock_mono_ms() - d->last_ok_ms) / 1000.0;
}

bool
dir_etcd_up(struct dir *d)
{
    return d->etcd != NULL && d->up;
}

bool
dir_is_announced(struct dir *d)
{
    return d->announced;
}

void
dir_stats_get(struct dir *d, struct dir_stats *out)
{
    *out = d->stats;
    out->rejected = d->cache->rejected;
    out->revision = d->cache->revision;
}

int
dir_resync(struct dir *d)
{
    if (d->etcd == NULL || d->stopping)
        return -1;
    if (d->watch) {
        dir_etcd_watch_cancel(d->watch);
        d->watch = NULL;
        d->watch_created = false;
    }
    d->backoff_ms = 0;
    sync_start(d);
    return 0;
}

int
dir_watch_restart(struct dir *d, int64_t revision)
{
    if (d->etcd == NULL || d->stopping)
        return -1;
    watch_from(d, revision);
    return 0;
}
