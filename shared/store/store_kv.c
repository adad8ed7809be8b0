/*
 * store_kv: a generic durable (namespace, key) -> blob table under the same group
 * commit as the registrations, for modules that keep small documents (presence,
 * contact lists, subscriptions) until they get tables of their own.
 */
#define LOG_MODULE "store"
#include "store/store_int.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool
name_ok(const struct store *st, const char *s)
{
    return s && s[0] && store_len_ok(st, strlen(s) + 1);
}

static int
exec_put(struct store *st, struct store_op *op)
{
    sqlite3_stmt *stmt = store_stmt(st, SQL_KV_PUT);

    if (!stmt)
        return -1;
    store_bind_text(stmt, 1, op->u.kv.ns);
    store_bind_text(stmt, 2, op->u.kv.key);
    /* val is never NULL (it points into the op), so an empty value binds X'', not NULL */
    sqlite3_bind_blob64(stmt, 3, op->u.kv.val, (sqlite3_uint64)op->u.kv.len, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, (sqlite3_int64)time(NULL));
    return store_stmt_run(st, stmt);
}

int
store_kv_put(struct store *st, const char *ns, const char *key, const void *value, size_t len,
             store_done_fn *done, void *arg)
{
    struct store_op *op;
    size_t nn, nk;
    char *cur;

    if (!st || !name_ok(st, ns) || !name_ok(st, key) || (!value && len) ||
        !store_len_ok(st, len))
        return -1;
    nn = strlen(ns) + 1;
    nk = strlen(key) + 1;
    /* +1: the value is followed by a NUL, so an empty value is a non-NULL pointer */
    if (!(op = store_op_new(nn + nk + len + 1)))
        return -1;
    cur = op->data;
    op->exec = exec_put;
    op->done = done;
    op->arg = arg;
    op->u.kv.ns = store_op_str(&cur, ns);
    op->u.kv.key = store_op_str(&cur, key);
    if (len)
        memcpy(cur, value, len);
    op->u.kv.val = cur;
    op->u.kv.len = len;
    return store_enqueue(st, op);
}

static int
exec_del(struct store *st, struct store_op *op)
{
    sqlite3_stmt *stmt = store_stmt(st, SQL_KV_DEL);

    if (!stmt)
        return -1;
    store_bind_text(stmt, 1, op->u.kv.ns);
    store_bind_text(stmt, 2, op->u.kv.key);
    return store_stmt_run(st, stmt);
}

int
store_kv_del(struct store *st, const char *ns, const char *key, store_done_fn *done, void *arg)
{
    struct store_op *op;
    char *cur;

    if (!st || !name_ok(st, ns) || !name_ok(st, key))
        return -1;
    if (!(op = store_op_new(strlen(ns) + strlen(key) + 2)))
        return -1;
    cur = op->data;
    op->exec = exec_del;
    op->done = done;
    op->arg = arg;
    op->u.kv.ns = store_op_str(&cur, ns);
    op->u.kv.key = store_op_str(&cur, key);
    return store_enqueue(st, op);
}

int
store_kv_load(struct store *st, const char *ns, store_kv_fn *cb, void *arg)
{
    sqlite3_stmt *stmt;
    int src, rc = -1;

    if (!st || !cb || !name_ok(st, ns))
        return -1;
    if (!(stmt = store_stmt(st, SQL_KV_LOAD))) {
        log_err("loading kv %s: %s", ns, st->errbuf);
        return -1;
    }
    if (sqlite3_stmt_busy(stmt)) {
        log_err("store_kv_load called from its own callback");
        return -1;
    }
    store_bind_text(stmt, 1, ns);
    while ((src = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(stmt, 0);
        const void *val = sqlite3_column_blob(stmt, 1);
        size_t len = (size_t)sqlite3_column_bytes(stmt, 1);

        if (!key)
            continue;
        cb(key, val ? val : "", val ? len : 0, arg);
    }
    if (src != SQLITE_DONE)
        log_err("loading kv %s: %s", ns, sqlite3_errmsg(st->db));
    else
        rc = 0;
    store_stmt_done(stmt);
    return rc;
}
