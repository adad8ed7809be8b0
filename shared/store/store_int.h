/*
 * store_int: what the store's .c files share and nobody else sees: the
 * connection, the queue of pending operations and the statement cache.
 *
 * Invariants: <queue_head>..<queue_tail> hold the operations not yet flushed, in
 * call order; <flush_scheduled> is true iff <flush_ev> is pending or active for
 * them. Statements in <stmt> are prepared lazily and always left reset with their
 * bindings cleared after use (stmt_done()).
 */
#ifndef PARLEY_STORE_STORE_INT_H
#define PARLEY_STORE_STORE_INT_H

#include "store/store.h"

#include <sqlite3.h>
#include <string.h>

/* Cached statements, one per connection; SQL text in store.c stmt_sql[]. */
enum store_stmt_id {
    SQL_BEGIN = 0,
    SQL_COMMIT,
    SQL_ROLLBACK,
    SQL_REG_UPSERT,
    SQL_REG_DEL_INSTANCE,
    SQL_REG_DEL,
    SQL_REG_DEL_AOR,
    SQL_REG_PURGE,
    SQL_REG_LOAD,
    SQL_KV_PUT,
    SQL_KV_DEL,
    SQL_KV_LOAD,
    SQL_COUNT,
};

struct store_op;
/* Runs one queued operation inside the open transaction: 0, or -1 (batch fails). */
typedef int store_exec_fn(struct store *st, struct store_op *op);

/* One queued write. Strings point into <data> (one allocation per operation). */
struct store_op {
    struct store_op *next;
    store_exec_fn *exec;
    store_done_fn *done;
    void *arg;
    union {
        struct store_binding b;                 /* reg put */
        struct { const char *aor, *contact; } del; /* reg del (contact NULL: whole aor) */
        int64_t now;                            /* reg purge */
        struct { const char *ns, *key; const void *val; size_t len; } kv;
    } u;
    char data[];
};

struct store {
    struct event_base *base;      /* borrowed */
    struct event *flush_ev;       /* deferred group commit */
    sqlite3 *db;
    char *path;                   /* <data_dir>/parley.db */
    unsigned flush_ms;
    unsigned commit_interval_ms;
    uint64_t last_commit_ms;      /* monotonic, end of the last flush; 0 = none yet */
    sqlite3_stmt *stmt[SQL_COUNT];
    struct store_op *queue_head, *queue_tail;
    bool flush_scheduled;
    bool flushing;                /* inside store_flush(): done callbacks may run */
    bool close_requested;         /* store_close() called from a done callback */
    bool closing;                 /* inside store_destroy(): final flushes */
    bool rejecting;               /* closing and out of flush rounds: writes fail */
    bool healthy;
    uint64_t last_fail_log_ms;    /* rate limit for commit-failure lines */
    uint64_t fail_unlogged;       /* failures not logged since the last line */
    struct store_stats stats;
    char errbuf[256];             /* sqlite message of the last failed step */
};

/* Returns the cached statement <id>, preparing it on first use; NULL on error
 * (logged). */
sqlite3_stmt *store_stmt(struct store *st, enum store_stmt_id id);
/* Resets <stmt> and clears its bindings, ready for the next use. */
void store_stmt_done(sqlite3_stmt *stmt);
/* Steps a write statement to completion; 0 on SQLITE_DONE, -1 otherwise.
 * The statement is reset either way. */
int store_stmt_run(struct store *st, sqlite3_stmt *stmt);
/* Appends <op> to the queue and schedules the flush; takes ownership of <op>.
 * Returns 0, or -1 (op freed, its callback not called) when the store is closing
 * and no longer accepts work. */
int store_enqueue(struct store *st, struct store_op *op);
/* Allocates a zeroed op with <data_len> bytes of string space; NULL if out of memory. */
struct store_op *store_op_new(size_t data_len);
/* Copies <s> (NULL allowed) to *<cur> and advances it; returns the copy or NULL. */
const char *store_op_str(char **cur, const char *s);
/* true if a string/blob of <len> bytes fits sqlite's length limit. */
bool store_len_ok(const struct store *st, size_t len);
/* Bytes store_op_str() needs for <s>. */
static inline size_t
store_str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}
/* Binds a C string or NULL (SQL NULL) to parameter <idx>; SQLITE_STATIC because
 * the text lives in the op until the statement is reset. */
int store_bind_text(sqlite3_stmt *stmt, int idx, const char *s);

/* store_schema.c: creates or upgrades the schema; 0 or -1 with <err> filled. */
int store_schema_migrate(sqlite3 *db, char *err, size_t errlen);
/* The highest schema version this binary knows. */
int store_schema_version_latest(void);

#endif
