/*
 * store_reg: registration bindings (RFC 3261 §10, RFC 5626, RFC 3327) on top of
 * the group commit of store.c. Writes are validated here, at queue time, so that a
 * batch fails only for reasons outside the caller's control (disk, I/O).
 */
#define LOG_MODULE "store"
#include "store/store_int.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>

static bool
nonempty(const char *s)
{
    return s && s[0];
}

/* Runs inside the batch transaction. RFC 5626 §6: a binding with the same
 * (aor, instance, reg-id) but another Contact is the same flow re-registered, so
 * it is replaced; otherwise upsert by (aor, contact) (RFC 3261 §10.3 step 7). */
static int
exec_put(struct store *st, struct store_op *op)
{
    const struct store_binding *b = &op->u.b;
    sqlite3_stmt *stmt;

    if (b->instance) {
        if (!(stmt = store_stmt(st, SQL_REG_DEL_INSTANCE)))
            return -1;
        store_bind_text(stmt, 1, b->aor);
        store_bind_text(stmt, 2, b->instance);
        sqlite3_bind_int(stmt, 3, b->reg_id);
        store_bind_text(stmt, 4, b->contact);
        if (store_stmt_run(st, stmt) != 0)
            return -1;
    }
    if (!(stmt = store_stmt(st, SQL_REG_UPSERT)))
        return -1;
    store_bind_text(stmt, 1, b->aor);
    store_bind_text(stmt, 2, b->contact);
    store_bind_text(stmt, 3, b->instance);
    sqlite3_bind_int(stmt, 4, b->reg_id);
    store_bind_text(stmt, 5, b->epid);
    store_bind_text(stmt, 6, b->path);
    store_bind_text(stmt, 7, b->call_id);
    sqlite3_bind_int64(stmt, 8, (sqlite3_int64)b->cseq);
    sqlite3_bind_int64(stmt, 9, b->expires_at);
    sqlite3_bind_int(stmt, 10, b->q);
    store_bind_text(stmt, 11, b->received);
    store_bind_text(stmt, 12, b->user_agent);
    sqlite3_bind_int64(stmt, 13, b->registered_at);
    return store_stmt_run(st, stmt);
}

int
store_reg_put(struct store *st, const struct store_binding *b, store_done_fn *done, void *arg)
{
    const char *strs[8];
    struct store_op *op;
    size_t need = 0;
    char *cur;

    if (!st || !b || !nonempty(b->aor) || !nonempty(b->contact) || !nonempty(b->epid) ||
        !b->call_id || b->q < 0 || b->q > 1000 || (b->instance && !b->instance[0]))
        return -1;
    strs[0] = b->aor, strs[1] = b->contact, strs[2] = b->instance, strs[3] = b->epid;
    strs[4] = b->path, strs[5] = b->call_id, strs[6] = b->received, strs[7] = b->user_agent;
    for (int i = 0; i < 8; i++) {
        size_t n = store_str_size(strs[i]);
        if (!store_len_ok(st, n))
            return -1;
        need += n;
    }
    if (!(op = store_op_new(need)))
        return -1;
    cur = op->data;
    op->exec = exec_put;
    op->done = done;
    op->arg = arg;
    op->u.b = *b;
    op->u.b.aor = store_op_str(&cur, b->aor);
    op->u.b.contact = store_op_str(&cur, b->contact);
    op->u.b.instance = store_op_str(&cur, b->instance);
    op->u.b.epid = store_op_str(&cur, b->epid);
    op->u.b.path = store_op_str(&cur, b->path);
    op->u.b.call_id = store_op_str(&cur, b->call_id);
    op->u.b.received = store_op_str(&cur, b->received);
    op->u.b.user_agent = store_op_str(&cur, b->user_agent);
    return store_enqueue(st, op);
}

static int
exec_del(struct store *st, struct store_op *op)
{
    sqlite3_stmt *stmt = store_stmt(st, op->u.del.contact ? SQL_REG_DEL : SQL_REG_DEL_AOR);

    if (!stmt)
        return -1;
    store_bind_text(stmt, 1, op->u.del.aor);
    if (op->u.del.contact)
        store_bind_text(stmt, 2, op->u.del.contact);
    return store_stmt_run(st, stmt);
}

/* <contact> NULL: every binding of <aor>. */
static int
queue_del(struct store *st, const char *aor, const char *contact, store_done_fn *done, void *arg)
{
    struct store_op *op;
    char *cur;
    size_t na = store_str_size(aor), nc = store_str_size(contact);

    if (!store_len_ok(st, na) || !store_len_ok(st, nc) || !(op = store_op_new(na + nc)))
        return -1;
    cur = op->data;
    op->exec = exec_del;
    op->done = done;
    op->arg = arg;
    op->u.del.aor = store_op_str(&cur, aor);
    op->u.del.contact = store_op_str(&cur, contact);
    return store_enqueue(st, op);
}

int
store_reg_del(struct store *st, const char *aor, const char *contact, store_done_fn *done,
              void *arg)
{
    if (!st || !nonempty(aor) || !nonempty(contact))
        return -1;
    return queue_del(st, aor, contact, done, arg);
}

int
store_reg_del_aor(struct store *st, const char *aor, store_done_fn *done, void *arg)
{
    if (!st || !nonempty(aor))
        return -1;
    return queue_del(st, aor, NULL, done, arg);
}

static int
exec_purge(struct store *st, struct store_op *op)
{
    sqlite3_stmt *stmt = store_stmt(st, SQL_REG_PURGE);

    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, op->u.now);
    return store_stmt_run(st, stmt);
}

int
store_reg_purge_expired(struct store *st, int64_t now, store_done_fn *done, void *arg)
{
    struct store_op *op;

    if (!st || !(op = store_op_new(0)))
        return -1;
    op->exec = exec_purge;
    op->done = done;
    op->arg = arg;
    op->u.now = now;
    return store_enqueue(st, op);
}

static const char *
col_text(sqlite3_stmt *stmt, int i)
{
    return (const char *)sqlite3_column_text(stmt, i);   /* NULL for SQL NULL */
}

int
store_reg_load(struct store *st, store_binding_fn *cb, void *arg)
{
    struct store_binding b;
    sqlite3_stmt *stmt;
    int src, rc = -1;

    if (!st || !cb)
        return -1;
    if (!(stmt = store_stmt(st, SQL_REG_LOAD))) {
        log_err("loading bindings: %s", st->errbuf);
        return -1;
    }
    if (sqlite3_stmt_busy(stmt)) {
        log_err("store_reg_load called from its own callback");
        return -1;
    }
    while ((src = sqlite3_step(stmt)) == SQLITE_ROW) {
        memset(&b, 0, sizeof b);
        b.aor = col_text(stmt, 0);
        b.contact = col_text(stmt, 1);
        b.instance = col_text(stmt, 2);
        b.reg_id = sqlite3_column_int(stmt, 3);
        b.epid = col_text(stmt, 4);
        b.path = col_text(stmt, 5);
        b.call_id = col_text(stmt, 6);
        b.cseq = (uint32_t)sqlite3_column_int64(stmt, 7);
        b.expires_at = sqlite3_column_int64(stmt, 8);
        b.q = sqlite3_column_int(stmt, 9);
        b.received = col_text(stmt, 10);
        b.user_agent = col_text(stmt, 11);
        b.registered_at = sqlite3_column_int64(stmt, 12);
        if (!b.aor || !b.contact || !b.epid || !b.call_id)
            continue;   /* NOT NULL in the schema; only a foreign writer could break it */
        cb(&b, arg);
    }
    if (src != SQLITE_DONE)
        log_err("loading bindings: %s", sqlite3_errmsg(st->db));
    else
        rc = 0;
    store_stmt_done(stmt);
    return rc;
}
