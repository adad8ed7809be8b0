/*
 * store: the home server's durable state in one sqlite database (WAL), so that
 * registrations, presence documents, contact lists, allow/block lists and
 * subscriptions survive a crash (`kill -9`) and a restart (design §5).
 *
 * Group commit. Writes are queued, never executed in the caller: every write call
 * (store_reg_*, store_kv_*) copies its arguments into a queue and returns. The
 * first queued operation schedules a deferred libevent event (end of the current
 * loop turn, or at most <flush_ms> later); that event runs ALL queued operations in
 * ONE transaction and then calls each operation's completion callback in queue
 * order with rc 0 (committed, durable against a process crash) or -1 (the batch
 * rolled back). A caller must not acknowledge anything (e.g. a REGISTER 200 OK)
 * before its callback reports 0. If a commit fails, the store rolls back, logs
 * (at most once per second), counts it, reports store_healthy() == false and
 * keeps accepting operations; the next successful commit makes it healthy again.
 *
 * Threading: everything runs on the loop thread of <base>; no threads are used.
 * Completion callbacks run from the loop (or from store_close()), never from
 * inside the write call that queued them. A callback may queue new operations;
 * they go into the next batch.
 *
 * Reads (store_*_load) are synchronous and meant for start-up: they see only
 * committed data, not operations still queued.
 */
#ifndef PARLEY_STORE_STORE_H
#define PARLEY_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct event_base;

struct store_opts {
    const char *data_dir;         /* directory holding parley.db (created if missing) */
    unsigned flush_ms;            /* 0 (default) = flush at the end of the current loop turn */
    unsigned commit_interval_ms;  /* least time between two commits: what is queued meanwhile
                                     waits for the next (group commit under load; an idle store
                                     still commits at once). 0 = no spacing */
};

/* Opens (creating if needed) <data_dir>/parley.db, sets WAL, synchronous=NORMAL,
 * foreign_keys=ON, busy_timeout=5000 and applies schema migrations. Returns NULL
 * and writes a one-line reason into <err> (<errlen> bytes) on failure. <base> is
 * borrowed and must outlive the store. */
struct store *store_open(struct event_base *base, const struct store_opts *opts, char *err,
                         size_t errlen);
/* Flushes pending operations synchronously (their callbacks run), then closes.
 * Accepts NULL. */
void store_close(struct store *st);
/* false after the last commit failed (the server keeps routing from memory). */
bool store_healthy(const struct store *st);

struct store_stats {
    uint64_t commits;             /* transactions committed */
    uint64_t commit_fail;         /* transactions rolled back */
    uint64_t ops;                 /* operations queued since open */
    uint64_t last_commit_us;      /* duration of the last flush (BEGIN..COMMIT) */
    uint64_t max_commit_us;       /* longest flush since open */
};
/* Counters; the pointer stays valid until store_close(). */
const struct store_stats *store_stats(const struct store *st);

/* Completion of one queued operation: rc 0 = committed, -1 = failed. */
typedef void store_done_fn(int rc, void *arg);

/* One registration binding (RFC 3261 §10, RFC 5626, RFC 3327). Strings are
 * NUL-terminated; the store copies what it needs (callers may free after the call
 * returns). */
struct store_binding {
    const char *aor;              /* "alice@example.com" (user@domain, lowercased) */
    const char *contact;          /* Contact URI as registered, "sip:alice@1.2.3.4:5060;transport=tcp" */
    const char *instance;         /* +sip.instance value or NULL (RFC 5626 §4.1) */
    int reg_id;                   /* RFC 5626 reg-id or 0 */
    const char *epid;             /* Parley endpoint id (never NULL for a stored binding) */
    const char *path;             /* Path header values, comma-joined, or NULL (RFC 3327) */
    const char *call_id;
    uint32_t cseq;
    int64_t expires_at;           /* unix seconds */
    int q;                        /* q-value * 1000 (0..1000), default 1000 */
    const char *received;         /* flow of the REGISTER: "udp:1.2.3.4:5060" / "tcp:..."; may be NULL */
    const char *user_agent;       /* may be NULL */
    int64_t registered_at;        /* unix seconds of the first registration of this binding */
};

/* All write calls below return 0 if queued, -1 on immediate error (NULL store,
 * missing required field, out of memory); on -1 <done> is never called. <done>
 * may be NULL. */

/* Upsert by (aor, contact), or by (aor, instance, reg_id) when instance is set
 * (RFC 5626 §6: a new flow of the same instance/reg-id replaces the old binding).
 * Requires aor, contact, epid, call_id. */
int store_reg_put(struct store *st, const struct store_binding *b, store_done_fn *done,
                  void *arg);
/* Deletes one binding by (aor, contact). Deleting a missing binding is a success. */
int store_reg_del(struct store *st, const char *aor, const char *contact, store_done_fn *done,
                  void *arg);
/* Deletes all bindings of <aor> (RFC 3261 §10.2.2: Contact "*" with Expires: 0). */
int store_reg_del_aor(struct store *st, const char *aor, store_done_fn *done, void *arg);
/* Deletes bindings with expires_at <= <now> (the registrar also purges in memory). */
int store_reg_purge_expired(struct store *st, int64_t now, store_done_fn *done, void *arg);

/* Called once per row; <b> and its strings are valid during the call only. */
typedef void store_binding_fn(const struct store_binding *b, void *arg);
/* Loads every committed binding synchronously (at start). Returns 0, or -1 on a
 * database error (some rows may already have been delivered). */
int store_reg_load(struct store *st, store_binding_fn *cb, void *arg);

/*
 * Generic key-value table under the same group commit, for modules that need
 * durable state (presence documents, lists, subscriptions). A row is named by a
 * namespace <ns> ("presence") and a <key> ("alice@example.com"); the value is an
 * opaque blob of <len> bytes (may be 0). Both names are NUL-terminated, non-empty.
 */
/* Upsert; the value is copied. */
int store_kv_put(struct store *st, const char *ns, const char *key, const void *value,
                 size_t len, store_done_fn *done, void *arg);
/* Deletes one key; deleting a missing key is a success. */
int store_kv_del(struct store *st, const char *ns, const char *key, store_done_fn *done,
                 void *arg);
/* Called once per row of the namespace, in key order; <key> and <value> are valid
 * during the call only. <value> is never NULL (empty values point to "") */
typedef void store_kv_fn(const char *key, const void *value, size_t len, void *arg);
/* Iterates the committed rows of <ns> synchronously. Returns 0 or -1. */
int store_kv_load(struct store *st, const char *ns, store_kv_fn *cb, void *arg);

#endif
