/*
 * store_schema: versioned schema migrations, applied in order at open.
 *
 * The table schema_version holds one row per applied migration. A migration is
 * one SQL script run in its own IMMEDIATE transaction together with the insert of
 * its version row, so a crash mid-migration leaves the previous version intact.
 * Migrations are append-only: never edit a released one, add the next.
 */
#define LOG_MODULE "store"
#include "store/store_int.h"
#include "util/log.h"

#include <stdio.h>
#include <time.h>

struct migration {
    int version;
    const char *sql;
};

static const struct migration migrations[] = {
    {1,
     /* Registration bindings (RFC 3261 §10.3, RFC 5626 §6, RFC 3327 §5.3). A
      * binding is unique by (aor, contact) and, when it carries a +sip.instance,
      * also by (aor, instance, reg_id). */
     "CREATE TABLE reg_binding ("
     "  id            INTEGER PRIMARY KEY,"
     "  aor           TEXT NOT NULL,"
     "  contact       TEXT NOT NULL,"
     "  instance      TEXT,"
     "  reg_id        INTEGER NOT NULL DEFAULT 0,"
     "  epid          TEXT NOT NULL,"
     "  path          TEXT,"
     "  call_id       TEXT NOT NULL,"
     "  cseq          INTEGER NOT NULL,"
     "  expires_at    INTEGER NOT NULL,"
     "  q             INTEGER NOT NULL DEFAULT 1000 CHECK (q BETWEEN 0 AND 1000),"
     "  received      TEXT,"
     "  user_agent    TEXT,"
     "  registered_at INTEGER NOT NULL"
     ");"
     "CREATE UNIQUE INDEX reg_binding_contact ON reg_binding(aor, contact);"
     "CREATE UNIQUE INDEX reg_binding_instance ON reg_binding(aor, instance, reg_id)"
     "  WHERE instance IS NOT NULL;"
     "CREATE INDEX reg_binding_expires ON reg_binding(expires_at);"
     /* Generic durable key-value rows for later modules (presence, lists, ...). */
     "CREATE TABLE kv ("
     "  ns         TEXT NOT NULL,"
     "  key        TEXT NOT NULL,"
     "  value      BLOB NOT NULL,"
     "  updated_at INTEGER NOT NULL,"
     "  PRIMARY KEY (ns, key)"
     ") WITHOUT ROWID;"},
};

#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])

int
store_schema_version_latest(void)
{
    return migrations[N_MIGRATIONS - 1].version;
}

static int
exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
}

/* Current version, 0 for a fresh database. */
static int
current_version(sqlite3 *db, int *out, char *err, size_t errlen)
{
    sqlite3_stmt *stmt = NULL;
    int rc = -1;

    if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1, &stmt,
                           NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_step(stmt) != SQLITE_ROW)
        goto fail;
    *out = sqlite3_column_int(stmt, 0);
    rc = 0;
    goto out;
fail:
    snprintf(err, errlen, "reading schema version: %s", sqlite3_errmsg(db));
out:
    sqlite3_finalize(stmt);
    return rc;
}

static int
apply(sqlite3 *db, const struct migration *m, char *err, size_t errlen)
{
    char ins[128];
    char why[256];

    if (exec_sql(db, "BEGIN IMMEDIATE", why, sizeof why) != 0)
        goto fail;
    if (exec_sql(db, m->sql, why, sizeof why) != 0)
        goto rollback;
    snprintf(ins, sizeof ins, "INSERT INTO schema_version(version, applied_at) VALUES (%d, %lld)",
             m->version, (long long)time(NULL));
    if (exec_sql(db, ins, why, sizeof why) != 0)
        goto rollback;
    if (exec_sql(db, "COMMIT", why, sizeof why) != 0)
        goto rollback;
    log_info("schema migrated to version %d", m->version);
    return 0;
rollback:
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
fail:
    snprintf(err, errlen, "schema migration %d: %s", m->version, why);
    return -1;
}

int
store_schema_migrate(sqlite3 *db, char *err, size_t errlen)
{
    int version = 0;

    if (exec_sql(db,
                 "CREATE TABLE IF NOT EXISTS schema_version ("
                 "  version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                 err, errlen) != 0)
        return -1;
    if (current_version(db, &version, err, errlen) != 0)
        return -1;
    if (version > store_schema_version_latest()) {
        snprintf(err, errlen, "database schema version %d is newer than this binary (%d)", version,
                 store_schema_version_latest());
        return -1;
    }
    for (int i = 0; i < N_MIGRATIONS; i++) {
        if (migrations[i].version <= version)
            continue;
        if (apply(db, &migrations[i], err, errlen) != 0)
            return -1;
    }
    return 0;
}
