/*
 * dir_etcd: asynchronous etcd v3 client over the JSON gateway (/v3/...), driven by
 * libcurl's multi interface on a libevent loop. Nothing here blocks the loop.
 *
 * Endpoints: a comma-separated list of base URLs ("http://127.0.0.1:2379,http://h2:2379";
 * a bare "host:port" gets "http://"). A request that fails to connect or times out is
 * retried once on each other endpoint in turn; the endpoint that answered is remembered
 * and tried first next time. A retried write may have been applied by the first
 * endpoint (the gateway gives no idempotency key): put and delete are idempotent,
 * a create-if-absent txn then reports "not succeeded" with the value we wrote.
 *
 * Callbacks: every operation that returns 0 calls its callback exactly once, always
 * later from the loop (never from inside the call), unless dir_etcd_free() runs first,
 * in which case it is never called. Unary calls time out after DIR_ETCD_TIMEOUT_MS.
 * dir_etcd_free() must not be called from inside one of its own callbacks.
 */
#ifndef PARLEY_DIRECTORY_DIR_ETCD_H
#define PARLEY_DIRECTORY_DIR_ETCD_H

#include <stdbool.h>
#include <stdint.h>

#include "directory/dir_json.h"

struct event_base;
struct dir_etcd;
struct dir_etcd_watch;

#define DIR_ETCD_TIMEOUT_MS 3000
/* Watch reconnect back-off: first retry after this, doubling up to the max. */
#define DIR_ETCD_BACKOFF_MIN_MS 500
#define DIR_ETCD_BACKOFF_MAX_MS 10000

/*
 * Result of a unary call. <rc> is 0 when etcd answered HTTP 200 with a parsable body,
 * -1 otherwise: then resp->http_status is 0 if no endpoint answered (connection error,
 * timeout) or the HTTP status, and resp->code/error carry etcd's error if it sent one
 * (e.g. 404 code 5 "requested lease not found"). <resp> is borrowed for the call.
 */
typedef void dir_etcd_cb(int rc, const struct dir_resp *resp, void *arg);

/* Creates a client on <base>. NULL if <endpoints_csv> has no usable endpoint. */
struct dir_etcd *dir_etcd_new(struct event_base *base, const char *endpoints_csv);
/* Aborts every request and watch (no callbacks), frees everything. Accepts NULL. */
void dir_etcd_free(struct dir_etcd *e);
/* The endpoint tried first (the last one that answered). */
const char *dir_etcd_endpoint(const struct dir_etcd *e);

/* Range over <key>, or over every key starting with <key> when <prefix>. */
int dir_etcd_range(struct dir_etcd *e, const char *key, bool prefix, dir_etcd_cb *cb,
                   void *arg);
/*
 * One page of a prefix range: at most <limit> keys from <start>/<start_len> (inclusive)
 * up to the end of <prefix>, read at <revision> (0 = the current one). resp->more
 * tells whether keys remain; the next page starts after the last key returned.
 */
int dir_etcd_range_page(struct dir_etcd *e, const char *prefix, const char *start, size_t start_len,
                        long limit, int64_t revision, dir_etcd_cb *cb, void *arg);
/* Put <value>/<len> at <key>, attached to <lease> when non-zero. */
int dir_etcd_put(struct dir_etcd *e, const char *key, const char *value, size_t len,
                 int64_t lease, dir_etcd_cb *cb, void *arg);
/* Delete <key>, or every key under the prefix <key>. resp->deleted = how many. */
int dir_etcd_delete(struct dir_etcd *e, const char *key, bool prefix, dir_etcd_cb *cb,
                    void *arg);
/* Compare-and-swap create: put only if <key> does not exist (create_revision == 0).
 * resp->succeeded tells; on failure resp->kvs[0] is the current value. */
int dir_etcd_create(struct dir_etcd *e, const char *key, const char *value, size_t len,
                    int64_t lease, dir_etcd_cb *cb, void *arg);
/* Lease grant: resp->lease_id, resp->ttl. */
int dir_etcd_lease_grant(struct dir_etcd *e, int64_t ttl_s, dir_etcd_cb *cb, void *arg);
/* One keepalive: resp->ttl is the renewed TTL, 0 when the lease no longer exists. */
int dir_etcd_lease_keepalive(struct dir_etcd *e, int64_t id, dir_etcd_cb *cb, void *arg);
/* Revoke: the lease's keys are deleted (watchers see DELETE). */
int dir_etcd_lease_revoke(struct dir_etcd *e, int64_t id, dir_etcd_cb *cb, void *arg);

/*
 * Watch callback. <msg> is borrowed for the call. Kinds (dir_json.h):
 *  CREATED  the stream is (re)established;
 *  EVENTS   changes in revision order;
 *  CANCELED etcd canceled the watch, compact_revision > 0 when <start_revision> was
 *           compacted away: the caller must reload (range) and start a new watch. The
 *           watch is dead; release it with dir_etcd_watch_cancel();
 *  DOWN     the stream dropped (etcd unreachable, connection reset, error object): the
 *           watch reconnects by itself with back-off and resumes from the last revision
 *           seen + 1. The caller may instead cancel it.
 * dir_etcd_watch_cancel() may be called from inside the callback.
 */
typedef void dir_etcd_watch_cb(const struct dir_watch_msg *msg, void *arg);

/* Watches every key under <prefix> from <start_revision> (0 = from now). NULL on
 * allocation failure. */
struct dir_etcd_watch *dir_etcd_watch(struct dir_etcd *e, const char *prefix,
                                      int64_t start_revision, dir_etcd_watch_cb *cb,
                                      void *arg);
/* Stops and frees the watch; its callback is not called again. Accepts NULL. */
void dir_etcd_watch_cancel(struct dir_etcd_watch *w);
/* The revision the watch will resume from if it reconnects. */
int64_t dir_etcd_watch_next_revision(const struct dir_etcd_watch *w);

/* range_end for a prefix: copy with the last byte incremented (etcd convention). Returns
 * malloc'd, NULL for an empty prefix or allocation failure. Exposed for tests. */
char *dir_etcd_prefix_end(const char *prefix, size_t *out_len);

#endif
