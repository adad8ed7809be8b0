/*
 * ctl_etcd: a blocking etcd v3 client over the JSON gateway (libcurl easy API),
 * for parleyctl only. Keys and values are base64 on the wire
 * (dependencies.md §3.1); callers see plain bytes.
 *
 * Endpoints are tried in order; on a connection failure the next one is tried
 * and, once one answers, it stays the current one. Only failures to connect fail
 * over: a request that reached etcd is never re-sent, so a txn is applied at most
 * once. Every function that can fail fills e->err with a one-line reason.
 */
#ifndef PARLEY_CTL_ETCD_H
#define PARLEY_CTL_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#define CTL_ETCD_MAX_URLS 8

struct ctl_etcd {
    CURL *curl;                         /* one handle, so the connection is reused */
    char *urls[CTL_ETCD_MAX_URLS];      /* "http://host:port" without trailing slash */
    size_t n_urls;
    size_t cur;                         /* endpoint that answered last */
    char err[512];
    char *resp;                         /* response body being received */
    size_t resp_len, resp_cap;
};

/* Splits the comma-separated <urls>. Returns 0, or -1 (bad list, e->err set). */
int ctl_etcd_init(struct ctl_etcd *e, const char *urls);
void ctl_etcd_cleanup(struct ctl_etcd *e);

/*
 * POSTs <body> (borrowed) to <path> ("/v3/kv/range"). Returns the decoded JSON
 * answer (caller owns it) or NULL with e->err (unreachable, HTTP/gRPC error, bad JSON).
 */
json_t *ctl_etcd_call(struct ctl_etcd *e, const char *path, json_t *body);

/* base64 helpers on the wire format. ctl_b64 returns a malloc'ed string or NULL. */
char *ctl_b64(const void *data, size_t len);
/* Decodes the JSON string <j> into a malloc'ed NUL-terminated buffer; NULL if invalid. */
char *ctl_unb64(const json_t *j, size_t *len);

/* Returns 0 found (*val malloc'ed, NUL-terminated), 1 absent, -1 error. */
int ctl_etcd_get(struct ctl_etcd *e, const char *key, char **val, int64_t *mod_rev);
/* Create-if-absent txn (compare create_revision = 0). 0 created, 1 exists, -1 error. */
int ctl_etcd_create(struct ctl_etcd *e, const char *key, const char *val);
/* Put only if the key's mod_revision is still <mod_rev>. 0 done, 1 changed/gone, -1 error. */
int ctl_etcd_cas(struct ctl_etcd *e, const char *key, const char *val, int64_t mod_rev);
/* 0 deleted, 1 absent, -1 error. */
int ctl_etcd_delete(struct ctl_etcd *e, const char *key);

/*
 * Calls <cb> for every key under <prefix> in key order, fetching <page> keys per
 * request. <cb> gets the key and value (NUL-terminated, borrowed for the call)
 * and the lease id (0 = none); it returns 0 to go on, -1 to stop with an error.
 * Returns 0 or -1.
 */
typedef int ctl_etcd_kv_fn(void *arg, const char *key, const char *val, int64_t lease);
int ctl_etcd_range_each(struct ctl_etcd *e, const char *prefix, size_t page, ctl_etcd_kv_fn *cb,
                        void *arg);

/* Seconds left on <lease>; -1 if it has expired, -2 on error. */
int64_t ctl_etcd_lease_ttl(struct ctl_etcd *e, int64_t lease);

/* A JSON int64 that etcd may send as a string or a number; <def> if absent. */
int64_t ctl_json_i64(const json_t *obj, const char *field, int64_t def);

#endif
