/*
 * store: connection set-up, statement cache, the operation queue and the group
 * commit. The per-table operations live in store_reg.c and store_kv.c, the schema
 * in store_schema.c.
 *
 * Group commit: the first operation queued after a flush schedules <flush_ev>
 * (event_active for flush_ms == 0, so it runs after the callbacks already active
 * in this loop turn; a timer otherwise). store_flush() runs the whole queue in one
 * BEGIN IMMEDIATE..COMMIT and only then calls the completion callbacks, so a
 * callback that sees rc 0 knows the row is in the WAL (synchronous=NORMAL: durable
 * against a process crash, not necessarily against power loss).
 */
#define LOG_MODULE "store"
#include "store/store_int.h"
#include "util/clock.h"
#include "util/log.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Bound on flush rounds at close when done callbacks keep queueing new work. */
#define CLOSE_MAX_ROUNDS 64

static const char *const stmt_sql[SQL_COUNT] = {
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_REG_UPSERT] =
        "INSERT INTO reg_binding(aor, contact, instance, reg_id, epid, path, call_id, cseq,"
        " expires_at, q, received, user_agent, registered_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        " ON CONFLICT(aor, contact) DO UPDATE SET instance = excluded.instance,"
        " reg_id = excluded.reg_id, epid = excluded.epid, path = excluded.path,"
        " call_id = excluded.call_id, cseq = excluded.cseq, expires_at = excluded.expires_at,"
        " q = excluded.q, received = excluded.received, user_agent = excluded.user_agent,"
        " registered_at = excluded.registered_at",
    [SQL_REG_DEL_INSTANCE] = "DELETE FROM reg_binding"
                             " WHERE aor = ?1 AND instance = ?2 AND reg_id = ?3 AND contact <> ?4",
    [SQL_REG_DEL] = "DELETE FROM reg_binding WHERE aor = ?1 AND contact = ?2",
    [SQL_REG_DEL_AOR] = "DELETE FROM reg_binding WHERE aor = ?1",
    [SQL_REG_PURGE] = "DELETE FROM reg_binding WHERE expires_at <= ?1",
    [SQL_REG_LOAD] = "SELECT aor, contact, instance, reg_id, epid, path, call_id, cseq,"
                     " expires_at, q, received, user_agent, registered_at"
                     " FROM reg_binding ORDER BY aor, id",
    [SQL_KV_PUT] = "INSERT INTO kv(ns, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)"
                   " ON CONFLICT(ns, key) DO UPDATE SET value = excluded.value,"
                   " updated_at = excluded.updated_at",
    [SQL_KV_DEL] = "DELETE FROM kv WHERE ns = ?1 AND key = ?2",
    [SQL_KV_LOAD] = "SELECT key, value FROM kv WHERE ns = ?1 ORDER BY key",
};

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

sqlite3_stmt *
store_stmt(struct store *st, enum store_stmt_id id)
{
    if (st->stmt[id])
        return st->stmt[id];
    if (sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[id],
                           NULL) != SQLITE_OK) {
        snprintf(st->errbuf, sizeof st->errbuf, "prepare: %s", sqlite3_errmsg(st->db));
        st->stmt[id] = NULL;
        return NULL;
    }
    return st->stmt[id];
}

void
store_stmt_done(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

int
store_stmt_run(struct store *st, sqlite3_stmt *stmt)
{
    int src = sqlite3_step(stmt);
    int rc = 0;

    if (src != SQLITE_DONE && src != SQLITE_ROW) {
        snprintf(st->errbuf, sizeof st->errbuf, "%s (%d)", sqlite3_errmsg(st->db),
                 sqlite3_extended_errcode(st->db));
        rc = -1;
    }
    store_stmt_done(stmt);
    return rc;
}

int
store_bind_text(sqlite3_stmt *stmt, int idx, const char *s)
{
    if (!s)
        return sqlite3_bind_null(stmt, idx);
    return sqlite3_bind_text(stmt, idx, s, -1, SQLITE_STATIC);
}

struct store_op *
store_op_new(size_t data_len)
{
    struct store_op *op = calloc(1, sizeof *op + data_len);

    return op;
}

const char *
store_op_str(char **cur, const char *s)
{
    char *r = *cur;
    size_t n;

    if (!s)
        return NULL;
    n = strlen(s) + 1;
    memcpy(r, s, n);
    *cur += n;
    return r;
}

bool
store_len_ok(const struct store *st, size_t len)
{
    return len < (size_t)sqlite3_limit(st->db, SQLITE_LIMIT_LENGTH, -1);
}

/* Sets up the pragmas of design §5 on a fresh connection. */
static int
setup_connection(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *stmt = NULL;
    char *msg = NULL;
    int rc = -1;

    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 5000);
    /* journal_mode answers with the mode in effect: "wal" or the old one on failure. */
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &stmt, NULL) != SQLITE_OK ||
        sqlite3_step(stmt) != SQLITE_ROW) {
        snprintf(err, errlen, "journal_mode=WAL: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (strcmp((const char *)sqlite3_column_text(stmt, 0), "wal") != 0) {
        snprintf(err, errlen, "journal_mode=WAL refused (mode is %s)",
                 (const char *)sqlite3_column_text(stmt, 0));
        goto out;
    }
    if (sqlite3_exec(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", NULL, NULL, &msg) !=
        SQLITE_OK) {
        snprintf(err, errlen, "pragmas: %s", msg ? msg : sqlite3_errmsg(db));
        goto out;
    }
    rc = 0;
out:
    sqlite3_free(msg);
    sqlite3_finalize(stmt);
    return rc;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg);

struct store *
store_open(struct event_base *base, const struct store_opts *opts, char *err, size_t errlen)
{
    struct store *st = NULL;
    struct stat sb;
    size_t plen;
    int src;

    if (!base || !opts || !opts->data_dir || !opts->data_dir[0]) {
        snprintf(err, errlen, "store_open: event base and data_dir are required");
        return NULL;
    }
    if (mkdir(opts->data_dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "data_dir %s: %s", opts->data_dir, strerror(errno));
        return NULL;
    }
    if (stat(opts->data_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "data_dir %s: not a directory", opts->data_dir);
        return NULL;
    }
    st = calloc(1, sizeof *st);
    if (!st)
        goto oom;
    st->base = base;
    st->flush_ms = opts->flush_ms;
    st->commit_interval_ms = opts->commit_interval_ms;
    st->healthy = true;
    plen = strlen(opts->data_dir) + sizeof "/parley.db";
    st->path = malloc(plen);
    if (!st->path)
        goto oom;
    snprintf(st->path, plen, "%s/parley.db", opts->data_dir);
    if (stat(st->path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", st->path);
        goto fail;
    }
    /* NOMUTEX: the connection is used from the loop thread only. */
    src = sqlite3_open_v2(st->path, &st->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", st->path,
                 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(src));
        goto fail;
    }
    if (setup_connection(st->db, err, errlen) != 0)
        goto fail;
    if (store_schema_migrate(st->db, err, errlen) != 0)
        goto fail;
    st->flush_ev = event_new(base, -1, 0, flush_cb, st);
    if (!st->flush_ev)
        goto oom;
    log_info("opened %s (schema version %d, flush_ms=%u, commit_interval_ms=%u)", st->path,
             store_schema_version_latest(), st->flush_ms, st->commit_interval_ms);
    return st;
oom:
    snprintf(err, errlen, "store_open: out of memory");
fail:
    if (st) {
        sqlite3_close_v2(st->db);
        free(st->path);
        free(st);
    }
    return NULL;
}

static void
schedule_flush(struct store *st)
{
    unsigned wait = st->flush_ms;

    if (st->flush_scheduled || st->closing)
        return;
    st->flush_scheduled = true;
    /* Commits spaced by commit_interval_ms: under load the writes of that interval share
     * one commit (its cost - WAL frames, sync - dominates a single-row write). */
    if (st->commit_interval_ms && st->last_commit_ms) {
        uint64_t now = clock_mono_ms(), due = st->last_commit_ms + st->commit_interval_ms;
        if (now < due && due - now > wait)
            wait = (unsigned)(due - now);
    }
    if (wait == 0) {
        event_active(st->flush_ev, EV_TIMEOUT, 1);
    } else {
        struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
        evtimer_add(st->flush_ev, &tv);
    }
}

int
store_enqueue(struct store *st, struct store_op *op)
{
    if (st->rejecting) {
        free(op);
        return -1;
    }
    op->next = NULL;
    if (st->queue_tail)
        st->queue_tail->next = op;
    else
        st->queue_head = op;
    st->queue_tail = op;
    st->stats.ops++;
    schedule_flush(st);
    return 0;
}

static void
note_failure(struct store *st)
{
    uint64_t now = clock_mono_ms();

    st->stats.commit_fail++;
    if (st->last_fail_log_ms && now - st->last_fail_log_ms < 1000) {
        st->fail_unlogged++;
        return;
    }
    if (st->fail_unlogged)
        log_err("commit to %s failed: %s (%llu more failures since the last line); "
                "serving from memory", st->path, st->errbuf,
                (unsigned long long)st->fail_unlogged);
    else
        log_err("commit to %s failed: %s; serving from memory", st->path, st->errbuf);
    st->last_fail_log_ms = now;
    st->fail_unlogged = 0;
}

static void store_destroy(struct store *st);

/* Runs the queued batch in one transaction, then its callbacks in order. May free
 * <st> (store_close() called from a callback): callers must not touch it after. */
static void
store_flush(struct store *st)
{
    struct store_op *batch = st->queue_head, *op, *next;
    sqlite3_stmt *stmt;
    uint64_t t0;
    int rc = -1;

    st->queue_head = st->queue_tail = NULL;
    if (st->flush_scheduled) {
        event_del(st->flush_ev);     /* flush forced by close while the timer ran */
        st->flush_scheduled = false;
    }
    if (!batch)
        return;
    t0 = now_us();
    st->errbuf[0] = '\0';
    if (!(stmt = store_stmt(st, SQL_BEGIN)) || store_stmt_run(st, stmt) != 0)
        goto out;
    for (op = batch; op; op = op->next)
        if (op->exec(st, op) != 0)
            goto out;
    if (!(stmt = store_stmt(st, SQL_COMMIT)) || store_stmt_run(st, stmt) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0 && !sqlite3_get_autocommit(st->db)) {
        /* sqlite may have rolled back already (SQLITE_FULL, IOERR): only if still open */
        char keep[sizeof st->errbuf];
        memcpy(keep, st->errbuf, sizeof keep);
        if (!(stmt = store_stmt(st, SQL_ROLLBACK)) || store_stmt_run(st, stmt) != 0)
            log_err("rollback failed: %s", st->errbuf);
        memcpy(st->errbuf, keep, sizeof keep);
    }
    st->stats.last_commit_us = now_us() - t0;
    st->last_commit_ms = clock_mono_ms();
    if (st->stats.last_commit_us > st->stats.max_commit_us)
        st->stats.max_commit_us = st->stats.last_commit_us;
    if (rc == 0) {
        st->stats.commits++;
        if (!st->healthy)
            log_info("commits to %s succeed again", st->path);
        st->healthy = true;
    } else {
        st->healthy = false;
        note_failure(st);
    }
    st->flushing = true;
    for (op = batch; op; op = next) {
        next = op->next;
        if (op->done)
            op->done(rc, op->arg);
        free(op);
    }
    st->flushing = false;
    if (st->close_requested && !st->closing)
        store_destroy(st);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct store *st = arg;

    st->flush_scheduled = false;
    store_flush(st);
}

static void
store_destroy(struct store *st)
{
    struct store_op *op, *next;
    int rounds = 0;

    st->closing = true;
    st->close_requested = false;
    while (st->queue_head && rounds++ < CLOSE_MAX_ROUNDS)
        store_flush(st);
    /* Callbacks that keep queueing forever: fail what is left rather than loop. */
    st->rejecting = true;
    for (op = st->queue_head; op; op = next) {
        next = op->next;
        if (op->done)
            op->done(-1, op->arg);
        free(op);
    }
    st->queue_head = st->queue_tail = NULL;
    if (st->flush_ev)
        event_free(st->flush_ev);
    for (int i = 0; i < SQL_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    if (sqlite3_close(st->db) != SQLITE_OK)
        log_err("closing %s: %s", st->path, sqlite3_errmsg(st->db));
    log_info("closed %s (%llu commits, %llu failed, %llu ops)", st->path,
             (unsigned long long)st->stats.commits, (unsigned long long)st->stats.commit_fail,
             (unsigned long long)st->stats.ops);
    free(st->path);
    free(st);
}

void
store_close(struct store *st)
{
    if (!st || st->closing)
        return;
    if (st->flushing) {
        /* called from a done callback: finish the batch first (store_flush frees) */
        st->close_requested = true;
        return;
    }
    store_destroy(st);
}

bool
store_healthy(const struct store *st)
{
    return st && st->healthy;
}

const struct store_stats *
store_stats(const struct store *st)
{
    return st ? &st->stats : NULL;
}
