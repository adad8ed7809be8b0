#define LOG_MODULE "archive"
#include "hs_archive.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "util/cfg.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

#define ARCHIVE_BATCH 512               /* records per transaction at most */
#define ARCHIVE_BUSY_SLEEP_US 20000     /* between attempts on a locked database */
#define ARCHIVE_STOP_RETRY_MS 10000     /* a locked database at exit: retried this long */

struct archive_settings {
    bool on;
    bool critical;
    long long queue;
    char *file;
};

/* Static: cfg_free() writes into it after the module is gone (one server per process). */
static struct archive_settings arch_set;

#define ROW(n, t, d, lo, hi, h, f) {n, t, d, lo, hi, false, false, h, offsetof(struct archive_settings, f)}
static const struct cfg_opt arch_rows[] = {
    ROW("archive", CFG_BOOL, "false", 0, 0,
        "archive every MESSAGE and call setup/teardown to a sqlite database in the data dir", on),
    ROW("archive-critical", CFG_BOOL, "false", 0, 0,
        "when the archive queue is full, answer new MESSAGEs 503 instead of losing records", critical),
    ROW("archive-queue", CFG_INT, "10000", 1, 10000000, "records waiting for the archive writer at most",
        queue),
    ROW("archive-file", CFG_STR, "archive.db", 0, 0, "archive database file name (in --data-dir)", file),
};

enum rec_kind {
    REC_MESSAGE = 0,
    REC_CALL_SETUP,
    REC_CALL_TEARDOWN,
};

struct rec {
    enum rec_kind kind;
    int64_t ts_ms;                /* wall clock */
    int status;
    char *from, *to, *call_id, *body;
    size_t body_len;
    struct rec *next;
};

struct hs_archive {
    sqlite3 *db;
    pthread_t worker;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct rec *head, **tail;     /* the queue (mu) */
    size_t count;                 /* records on the queue (mu) */
    bool stop;                    /* (mu; read atomically by the writer while it retries) */
    bool behind;                  /* the queue filled up and has not drained to half yet (mu) */
    struct hs_archive_stats st;   /* updated with __atomic */
};

static void
stat_add(uint64_t *c, uint64_t n)
{
    __atomic_add_fetch(c, n, __ATOMIC_RELAXED);
}

static void
rec_free(struct rec *r)
{
    if (r == NULL)
        return;
    free(r->from);
    free(r->to);
    free(r->call_id);
    free(r->body);
    free(r);
}

static const char *const SCHEMA =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS messages ("
    "  id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, from_uri TEXT, to_uri TEXT,"
    "  call_id TEXT, body BLOB);"
    "CREATE TABLE IF NOT EXISTS calls ("
    "  id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, event TEXT NOT NULL, status INTEGER,"
    "  from_uri TEXT, to_uri TEXT, call_id TEXT);"
    "CREATE INDEX IF NOT EXISTS calls_call_id ON calls(call_id);";

/* A write that failed only because another connection holds the database: retried. */
static bool
busy_rc(int rc)
{
    rc &= 0xff;   /* primary code of an extended result */
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/*
 * Writes <batch> in one transaction. 0 = committed; 1 = the database is busy (locked
 * by another connection, after the busy timeout): nothing written, try again; -1 = an
 * error (logged): nothing written.
 */
static int
write_batch_once(struct hs_archive *a, struct rec *batch, sqlite3_stmt *msg_st, sqlite3_stmt *call_st)
{
    int rc;

    if ((rc = sqlite3_exec(a->db, "BEGIN", NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    for (struct rec *r = batch; r; r = r->next) {
        sqlite3_stmt *st = r->kind == REC_MESSAGE ? msg_st : call_st;
        int i = 1;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, i++, r->ts_ms);
        if (r->kind != REC_MESSAGE) {
            sqlite3_bind_text(st, i++, r->kind == REC_CALL_SETUP ? "setup" : "teardown", -1, SQLITE_STATIC);
            sqlite3_bind_int(st, i++, r->status);
        }
        sqlite3_bind_text(st, i++, r->from, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, i++, r->to, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, i++, r->call_id, -1, SQLITE_STATIC);
        if (r->kind == REC_MESSAGE)
            sqlite3_bind_blob(st, i++, r->body ? r->body : "", (int)r->body_len, SQLITE_STATIC);
        if ((rc = sqlite3_step(st)) != SQLITE_DONE) {
            sqlite3_reset(st);
            goto rollback;
        }
    }
    sqlite3_reset(msg_st);
    sqlite3_reset(call_st);
    if ((rc = sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        goto rollback;
    return 0;
rollback:
    sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
fail:
    if (busy_rc(rc))
        return 1;
    log_err("archive write failed: %s", sqlite3_errmsg(a->db));
    return -1;
}

/*
 * Writes <batch> (<n> records), retrying while the database is busy: the queue fills
 * meanwhile, which is what --archive-critical is for. Once the server is stopping, a
 * busy database is retried for ARCHIVE_STOP_RETRY_MS at most. Returns how many were written.
 */
static size_t
write_batch(struct hs_archive *a, struct rec *batch, size_t n, sqlite3_stmt *msg_st, sqlite3_stmt *call_st)
{
    int64_t give_up = 0;
    bool warned = false;

    for (;;) {
        int rc = write_batch_once(a, batch, msg_st, call_st);
        if (rc == 0) {
            stat_add(&a->st.batches, 1);
            if (warned)
                log_warn("the archive database is writable again");
            return n;
        }
        if (rc < 0)
            break;
        if (!warned) {
            log_warn("the archive database is locked by another process; retrying");
            warned = true;
        }
        if (__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
            int64_t now = (int64_t)clock_mono_ms();
            if (give_up == 0)
                give_up = now + ARCHIVE_STOP_RETRY_MS;
            else if (now >= give_up)
                break;
        }
        usleep(ARCHIVE_BUSY_SLEEP_US);
    }
    log_err("%zu archive records lost", n);
    stat_add(&a->st.lost, n);
    return 0;
}

static void *
worker_main(void *arg)
{
    struct hs_archive *a = arg;
    sqlite3_stmt *msg_st = NULL, *call_st = NULL;

    if (sqlite3_prepare_v2(a->db,
                           "INSERT INTO messages(ts_ms, from_uri, to_uri, call_id, body) VALUES(?,?,?,?,?)", -1,
                           &msg_st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(a->db,
                           "INSERT INTO calls(ts_ms, event, status, from_uri, to_uri, call_id) "
                           "VALUES(?,?,?,?,?,?)",
                           -1, &call_st, NULL) != SQLITE_OK) {
        log_err("archive: %s", sqlite3_errmsg(a->db));
    }
    for (;;) {
        struct rec *batch = NULL, **bt = &batch;
        size_t n = 0;
        bool stop, caught_up;

        pthread_mutex_lock(&a->mu);
        while (a->head == NULL && !a->stop)
            pthread_cond_wait(&a->cv, &a->mu);
        while (a->head && n < ARCHIVE_BATCH) {
            struct rec *r = a->head;
            a->head = r->next;
            r->next = NULL;
            *bt = r;
            bt = &r->next;
            n++;
        }
        if (a->head == NULL)
            a->tail = &a->head;
        a->count -= n;
        stop = a->stop && a->head == NULL;
        caught_up = a->behind && a->count <= (size_t)arch_set.queue / 2;
        if (caught_up)
            a->behind = false;
        pthread_mutex_unlock(&a->mu);
        if (caught_up)
            log_info("caught up (the archive queue drained to half)");
        if (batch) {
            size_t w = msg_st && call_st ? write_batch(a, batch, n, msg_st, call_st) : 0;
            if (!(msg_st && call_st))
                stat_add(&a->st.lost, n);
            stat_add(&a->st.written, w);
            while (batch) {
                struct rec *r = batch;
                batch = r->next;
                rec_free(r);
            }
        }
        if (stop)
            break;
    }
    sqlite3_finalize(msg_st);
    sqlite3_finalize(call_st);
    return NULL;
}

/*
 * Queues <r> (takes it). false when the queue is full (<r> freed). The first refusal
 * of an episode is logged; the writer ends the episode when the queue has drained to half.
 */
static bool
enqueue(struct hs_archive *a, struct rec *r)
{
    bool ok, log_full = false;

    pthread_mutex_lock(&a->mu);
    ok = a->count < (size_t)arch_set.queue;
    if (ok) {
        *a->tail = r;
        a->tail = &r->next;
        a->count++;
        pthread_cond_signal(&a->cv);
    } else if (!a->behind) {
        a->behind = true;
        log_full = true;
    }
    pthread_mutex_unlock(&a->mu);
    if (ok) {
        stat_add(&a->st.queued, 1);
    } else {
        stat_add(&a->st.queue_full, 1);
        rec_free(r);
    }
    if (log_full)
        log_warn("cannot keep up: the archive queue is full (%lld records); %s", arch_set.queue,
                 arch_set.critical ? "new MESSAGEs are answered 503 (--archive-critical)" : "records are lost");
    return ok;
}

static char *
uri_of(osip_from_t *f)
{
    char *s, *out;

    if (f == NULL || f->url == NULL || (s = sip_uri_str(f->url)) == NULL)
        return NULL;
    out = strdup(s);
    osip_free(s);
    return out;
}

static struct rec *
rec_new(enum rec_kind kind, struct sip_msg *msg, int status)
{
    struct rec *r = calloc(1, sizeof *r);
    struct timeval tv;
    char cid[512];

    if (r == NULL)
        return NULL;
    gettimeofday(&tv, NULL);
    r->kind = kind;
    r->ts_ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    r->status = status;
    r->from = uri_of(msg->osip->from);
    r->to = uri_of(msg->osip->to);
    r->call_id = strdup(sip_msg_call_id(msg, cid, sizeof cid));
    if (kind == REC_MESSAGE) {
        size_t len = 0;
        const char *b = sip_msg_body(msg, &len);
        if (b && len) {
            r->body = malloc(len);
            if (r->body) {
                memcpy(r->body, b, len);
                r->body_len = len;
            }
        }
    }
    return r;
}

/* px final-answer observer: an INVITE answered 2xx is a call setup. */
static void
on_final(struct px_req *req, int code, void *arg)
{
    struct hs_archive *a = arg;
    struct sip_msg *msg = px_req_msg(req);
    struct rec *r;

    if (msg == NULL || msg->method != SIP_INVITE || code < 200 || code >= 300)
        return;
    if ((r = rec_new(REC_CALL_SETUP, msg, code)) == NULL || !enqueue(a, r))
        stat_add(&a->st.lost, 1);
}

bool
hs_archive_request(struct hs_archive *a, struct px_req *req)
{
    struct sip_msg *msg = px_req_msg(req);
    struct rec *r;

    if (a == NULL || !a->running)
        return true;
    if (msg->method != SIP_MESSAGE && msg->method != SIP_BYE)
        return true;
    r = rec_new(msg->method == SIP_MESSAGE ? REC_MESSAGE : REC_CALL_TEARDOWN, msg, 0);
    if (r != NULL && enqueue(a, r))
        return true;
    if (msg->method == SIP_MESSAGE && arch_set.critical) {
        stat_add(&a->st.refused, 1);
        px_reply(req, 503, "Archive Unavailable");
        return false;
    }
    stat_add(&a->st.lost, 1);
    return true;
}

struct hs_archive *
hs_archive_new(struct cfg *cfg)
{
    struct hs_archive *a = calloc(1, sizeof *a);

    if (a == NULL)
        return NULL;
    if (cfg_register(cfg, "archive", arch_rows, sizeof arch_rows / sizeof arch_rows[0], &arch_set) != 0) {
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->tail = &a->head;
    return a;
}

bool
hs_archive_enabled(const struct hs_archive *a)
{
    return a != NULL && a->running;
}

int
hs_archive_start(struct hs_archive *a, struct px *px, const char *data_dir, char *err, size_t errlen)
{
    char path[1024];
    char *msg = NULL;

    if (a == NULL || !arch_set.on)
        return 0;
    if (arch_set.file == NULL || arch_set.file[0] == '\0' || strchr(arch_set.file, '/') != NULL) {
        snprintf(err, errlen, "--archive-file must be a plain file name");
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", data_dir, arch_set.file);
    if (sqlite3_open_v2(path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "archive %s: %s", path, a->db ? sqlite3_errmsg(a->db) : "cannot open");
        return -1;
    }
    sqlite3_busy_timeout(a->db, 100);   /* then write_batch() retries: never gives up while running */
    if (sqlite3_exec(a->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "archive %s: %s", path, msg ? msg : "schema");
        sqlite3_free(msg);
        return -1;
    }
    if (pthread_create(&a->worker, NULL, worker_main, a) != 0) {
        snprintf(err, errlen, "archive: cannot start the writer thread");
        return -1;
    }
    a->running = true;
    px_set_final_observer(px, on_final, a);
    log_info("archiving to %s (queue %lld%s)", path, arch_set.queue, arch_set.critical ? ", critical" : "");
    return 0;
}

void
hs_archive_get_stats(struct hs_archive *a, struct hs_archive_stats *out)
{
    out->queued = __atomic_load_n(&a->st.queued, __ATOMIC_RELAXED);
    out->written = __atomic_load_n(&a->st.written, __ATOMIC_RELAXED);
    out->queue_full = __atomic_load_n(&a->st.queue_full, __ATOMIC_RELAXED);
    out->refused = __atomic_load_n(&a->st.refused, __ATOMIC_RELAXED);
    out->lost = __atomic_load_n(&a->st.lost, __ATOMIC_RELAXED);
    out->batches = __atomic_load_n(&a->st.batches, __ATOMIC_RELAXED);
}

#define STAT_FN(f)                                                                                     \
    static double m_##f(void *arg)                                                                     \
    {                                                                                                  \
        struct hs_archive *a = arg;                                                                    \
        return (double)__atomic_load_n(&a->st.f, __ATOMIC_RELAXED);                                    \
    }
STAT_FN(queued)
STAT_FN(written)
STAT_FN(queue_full)
STAT_FN(refused)
STAT_FN(lost)

static double
m_behind(void *arg)
{
    struct hs_archive *a = arg;
    bool b;

    pthread_mutex_lock(&a->mu);
    b = a->behind;
    pthread_mutex_unlock(&a->mu);
    return b ? 1 : 0;
}

static double
m_limit(void *arg)
{
    (void)arg;
    return (double)arch_set.queue;
}

static double
m_depth(void *arg)
{
    struct hs_archive *a = arg;
    size_t n;

    pthread_mutex_lock(&a->mu);
    n = a->count;
    pthread_mutex_unlock(&a->mu);
    return (double)n;
}

void
hs_archive_metrics(struct hs_archive *a, struct metrics *m)
{
    if (a == NULL || !a->running || m == NULL)
        return;
    metrics_counter_fn(m, "parley_archive_queued_total", "records queued for the archive", m_queued, a);
    metrics_counter_fn(m, "parley_archive_written_total", "records committed to the archive", m_written, a);
    metrics_counter_fn(m, "parley_archive_queue_full_total", "records that found the archive queue full",
                       m_queue_full, a);
    metrics_counter_fn(m, "parley_archive_refused_total", "MESSAGEs answered 503 (archive critical, queue full)",
                       m_refused, a);
    metrics_counter_fn(m, "parley_archive_lost_total", "records not archived", m_lost, a);
    metrics_gauge_fn(m, "parley_archive_queue_depth", "records waiting for the archive writer", m_depth, a);
    metrics_gauge_fn(m, "parley_archive_queue_limit", "records the archive queue holds at most (--archive-queue)",
                     m_limit, a);
    metrics_gauge_fn(m, "parley_archive_behind",
                     "1 while the archive cannot keep up (its queue filled and has not drained to half)", m_behind,
                     a);
}

void
hs_archive_free(struct hs_archive *a)
{
    if (a == NULL)
        return;
    if (a->running) {
        pthread_mutex_lock(&a->mu);
        __atomic_store_n(&a->stop, true, __ATOMIC_RELAXED);
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->worker, NULL);
    }
    while (a->head) {
        struct rec *r = a->head;
        a->head = r->next;
        rec_free(r);
    }
    sqlite3_close(a->db);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}
