/*
 * dir_cache: the in-memory directory (hash tables of users, servers, routes decoded from
 * etcd values) and its on-disk copy (own sqlite file, WAL) that lets a server restarted
 * during an etcd outage still know its users.
 *
 * Used by dir.c on the loop thread only; no locking. Exposed in a header so the unit
 * tests can drive it without etcd.
 */
#ifndef PARLEY_DIRECTORY_DIR_CACHE_H
#define PARLEY_DIRECTORY_DIR_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "directory/dir_json.h"

/* ---- string-keyed hash table (owns copies of the keys and the values) ---------------- */

struct dir_map;
typedef void dir_map_free_fn(void *val);
/* Return false to stop the iteration. The map must not be modified during it. */
typedef bool dir_map_iter_fn(const char *key, void *val, void *arg);

/* <free_fn> releases values (NULL = leave them). NULL on allocation failure. */
struct dir_map *dir_map_new(dir_map_free_fn *free_fn);
void dir_map_free(struct dir_map *m);
void *dir_map_get(const struct dir_map *m, const char *key);
/* Inserts or replaces (the old value is freed). -1 on allocation failure (<val> is then
 * not owned by the map). */
int dir_map_put(struct dir_map *m, const char *key, void *val);
/* Removes <key> and returns its value without freeing it; NULL if absent. */
void *dir_map_take(struct dir_map *m, const char *key);
/* Removes and frees; false if absent. */
bool dir_map_del(struct dir_map *m, const char *key);
size_t dir_map_count(const struct dir_map *m);
void dir_map_foreach(const struct dir_map *m, dir_map_iter_fn *fn, void *arg);

/* ---- change notifications ------------------------------------------------------------ */

/* <obj> NULL means removed. <obj> stays valid until the next change to the cache. */
typedef void dir_user_cb(const char *aor, const struct dir_user *u, void *arg);
typedef void dir_server_cb(const char *name, const struct dir_server *s, void *arg);
typedef void dir_route_cb(const char *name, const struct dir_route *r, void *arg);
/* The raw value of DIR_KEY_APPS_ORDER changed; <value> NULL = the key was removed. */
typedef void dir_apps_order_cb(const char *value, void *arg);

struct dir_notify {
    dir_user_cb *user;
    dir_server_cb *server;
    dir_route_cb *route;
    void *arg;
    dir_apps_order_cb *apps_order;   /* with its own argument (set after dir_new) */
    void *apps_order_arg;
};

/* ---- the cache ------------------------------------------------------------------------ */

enum dir_kind {
    DIR_KIND_OTHER = 0,   /* outside the schema: ignored */
    DIR_KIND_USER,
    DIR_KIND_SERVER,
    DIR_KIND_ROUTE,
    DIR_KIND_SCHEMA,
    DIR_KIND_APPS_ORDER,
};

/* Classifies an etcd key; <name> gets the part after the prefix. */
enum dir_kind dir_key_kind(const char *key, const char **name);

struct dir_cache {
    struct dir_map *users;    /* aor -> struct dir_user */
    struct dir_map *servers;  /* name -> struct dir_server */
    struct dir_map *routes;   /* name -> struct dir_route */
    char *schema;             /* value of /parley/schema, NULL if absent */
    char *apps_order;         /* raw value of /parley/apps/order, NULL if absent */
    int64_t revision;         /* etcd revision the content reflects */
    unsigned long rejected;   /* values refused by the decoders (logged) */
};

struct dir_cache *dir_cache_new(void);
void dir_cache_free(struct dir_cache *c);

/*
 * Applies a PUT of <key> = <value>/<len> at <mod_revision>. A value that fails to decode
 * is rejected (logged, counted) and removes any previous entry for the key. <n> (may be
 * NULL) is told about additions, changes and removals; an identical value is not a
 * change. Returns 0, or -1 on allocation failure.
 */
int dir_cache_put(struct dir_cache *c, const char *key, const char *value, size_t len,
                  int64_t mod_revision, const struct dir_notify *n);
/* Applies a DELETE of <key>. */
void dir_cache_delete(struct dir_cache *c, const char *key, const struct dir_notify *n);
/* Moves the content of <fresh> into <c> (a full reload), telling <n> about every
 * difference. <fresh> is freed. */
void dir_cache_replace(struct dir_cache *c, struct dir_cache *fresh,
                       const struct dir_notify *n);

/* ---- on-disk copy ---------------------------------------------------------------------- */

struct dir_disk;

/* Opens or creates the sqlite file <path> (WAL, synchronous=NORMAL). NULL on error
 * (logged). */
struct dir_disk *dir_disk_open(const char *path);
void dir_disk_close(struct dir_disk *d);
/* Loads every stored key into <c> (no notifications) and sets c->revision. Returns the
 * number of keys, -1 on error. */
long dir_disk_load(struct dir_disk *d, struct dir_cache *c);
/* Replaces the stored content with <kvs> at <revision>, in one transaction. */
int dir_disk_replace(struct dir_disk *d, const struct dir_kv *kvs, size_t n, int64_t revision);
/* Applies watch events in one transaction and records <revision>. */
int dir_disk_apply(struct dir_disk *d, const struct dir_event *ev, size_t n, int64_t revision);

#endif
