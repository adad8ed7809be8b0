/*
 * dir: the directory every Parley server uses (design.md §5, docs/internals/directory.md).
 *
 * It keeps an in-memory copy of etcd's /parley/ tree (users, servers, static routes),
 * follows changes with a watch, keeps a copy on disk (own sqlite file) so a restart
 * during an etcd outage still knows its users, and announces this server under
 * /parley/servers/<name> with a lease kept alive every TTL/3.
 *
 * Lifecycle: dir_new() loads the disk cache synchronously (startup only), then on the
 * loop: range /parley/ from etcd, replace the cache, write it to disk in one
 * transaction, watch from revision+1. While etcd is unreachable lookups keep answering
 * from the cache; the directory retries with back-off (0.5 s doubling to 10 s), then
 * re-syncs fully and watches again. dir_shutdown() revokes the lease; dir_free() frees.
 *
 * Threading: the loop thread only. Lookups touch only memory (hash tables), never etcd
 * or sqlite, so they are fit for the message path.
 */
#ifndef PARLEY_DIRECTORY_DIR_H
#define PARLEY_DIRECTORY_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "directory/dir_cache.h"
#include "directory/dir_json.h"

struct event_base;
struct dir;

#define DIR_DEFAULT_LEASE_TTL_S 10
#define DIR_SYNC_BACKOFF_MIN_MS 500
#define DIR_SYNC_BACKOFF_MAX_MS 10000
/* Reachability check period when this server announces nothing. */
#define DIR_HEARTBEAT_MS 3000

struct dir_opts {
    const char *endpoints;     /* etcd endpoints (CSV); NULL or "" = no etcd, cache only */
    const char *cache_path;    /* sqlite file for the disk copy, e.g. <data_dir>/directory.db;
                                * NULL = no disk copy */
    /* announcement of this server; <name> NULL or "" = announce nothing */
    const char *name;
    enum dir_role role;
    const char *address;       /* "sip:127.0.0.1:5070;transport=tcp" */
    const char *cert_subject;  /* may be NULL */
    const char *admin;         /* may be NULL */
    unsigned lease_ttl_s;      /* 0 = DIR_DEFAULT_LEASE_TTL_S; keep-alive every TTL/3 */
    unsigned sync_page;        /* keys per range page of a full sync; 0 = 2000 */
    /* change callbacks (each may be NULL), called on the loop after the cache changed;
     * the object is NULL for a removal and is valid until the next change. The initial
     * load from disk does not call them; the first etcd sync reports what differs. */
    dir_user_cb *on_user;
    dir_server_cb *on_server;
    dir_route_cb *on_route;
    void *cb_arg;
};

/* Creates the directory and starts syncing. Strings in <opts> are copied. Returns NULL
 * on allocation failure or bad endpoints. A disk cache that cannot be opened is logged
 * and the directory runs without it. */
struct dir *dir_new(struct event_base *base, const struct dir_opts *opts);
/* Frees everything at once (no lease revoke: the announcement expires after its TTL).
 * Accepts NULL. Not from inside a dir callback. */
void dir_free(struct dir *d);
/* Clean stop: stops syncing and watching, revokes the lease (so the announcement
 * disappears now), then calls <done>(<arg>) from the loop (at most ~3 s later). The
 * caller then calls dir_free(). */
int dir_shutdown(struct dir *d, void (*done)(void *arg), void *arg);

/* Lookups (memory only). <aor> is "user@domain" or a "sip:"/"sips:" URI, any case;
 * URI parameters are ignored. NULL when unknown. Pointers are valid until the next
 * change callback / loop iteration: copy what must outlive the current callback. */
const struct dir_user *dir_user_get(struct dir *d, const char *aor);
const struct dir_server *dir_server_get(struct dir *d, const char *name);
/* The server whose cert_subject equals <subject> (case-insensitive); NULL if none. */
const struct dir_server *dir_server_find_by_subject(struct dir *d, const char *subject);
size_t dir_user_count(struct dir *d);

/* Iteration; <fn> returns false to stop. The cache must not change during it. */
typedef bool dir_server_iter_fn(const struct dir_server *s, void *arg);
typedef bool dir_route_iter_fn(const struct dir_route *r, void *arg);
void dir_server_foreach(struct dir *d, dir_server_iter_fn *fn, void *arg);
void dir_route_foreach(struct dir *d, dir_route_iter_fn *fn, void *arg);

/* The raw value of /parley/apps/order (DIR_KEY_APPS_ORDER), NULL when unset. Valid until
 * the next change callback. */
const char *dir_apps_order(struct dir *d);
/* <cb> (NULL = none) is called on the loop whenever that value changes (NULL = removed);
 * the initial load from disk does not call it (read dir_apps_order()). */
void dir_set_apps_order_cb(struct dir *d, dir_apps_order_cb *cb, void *arg);

/* True once the cache holds a usable copy: synced from etcd, loaded from a disk copy
 * that was synced before, or (no etcd configured) at once. */
bool dir_is_ready(struct dir *d);
/* Seconds since the last successful sync, watch message, or heartbeat with a live
 * watch (for /metrics); -1 if never synced with etcd in this process. */
double dir_cache_age_s(struct dir *d);
/* True when the last etcd exchange succeeded. */
bool dir_etcd_up(struct dir *d);
/* True while this server's announcement is in etcd under a live lease. */
bool dir_is_announced(struct dir *d);

struct dir_stats {
    unsigned long syncs;        /* full loads from etcd */
    unsigned long compactions;  /* watches canceled by compaction (each forced a reload) */
    unsigned long events;       /* watch events applied */
    unsigned long rejected;     /* values refused by the decoders */
    unsigned long reannounces;  /* lease re-grants after the lease was lost */
    int64_t revision;           /* etcd revision the cache reflects */
};
void dir_stats_get(struct dir *d, struct dir_stats *out);

/* Forces a full re-sync now (admin tooling). -1 without etcd. */
int dir_resync(struct dir *d);
/* Restarts the watch from <revision> (tests and tooling; a compacted revision makes etcd
 * cancel the watch and the directory reload). -1 without etcd. */
int dir_watch_restart(struct dir *d, int64_t revision);

#endif
