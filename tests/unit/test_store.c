/*
 * Unit tests for shared/store: bindings and kv round trips, upsert rules, group
 * commit (one transaction per loop turn, callbacks strictly after COMMIT),
 * durability across close and across SIGKILL, commit failure handling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char db_path[96];
    struct event_base *base;
    struct store *st;
};

static struct store *
open_store(struct fixture *fx, unsigned flush_ms)
{
    struct store_opts opts = {.data_dir = fx->dir, .flush_ms = flush_ms};
    char err[256] = "";
    struct store *st = store_open(fx->base, &opts, err, sizeof err);

    if (!st)
        print_error("store_open: %s\n", err);
    return st;
}

static int
setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);

    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/parley-store-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->db_path, sizeof fx->db_path, "%s/parley.db", fx->dir);
    fx->base = event_base_new();
    fx->st = open_store(fx, 0);
    if (!fx->base || !fx->st)
        return -1;
    *state = fx;
    return 0;
}

static void
rm_dir(const char *dir)
{
    static const char *const names[] = {"parley.db", "parley.db-wal", "parley.db-shm",
                                        "parley.db-journal"};
    char p[128];

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (unlink(p) != 0 && errno == EISDIR)
            rmdir(p);
    }
    rmdir(dir);
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;

    store_close(fx->st);
    event_base_free(fx->base);
    rm_dir(fx->dir);
    free(fx);
    return 0;
}

/* Runs the loop until nothing is pending (the store's flush event included). */
static void
run_loop(struct fixture *fx)
{
    event_base_dispatch(fx->base);
}

/* ---- helpers ---------------------------------------------------------- */

struct done_log {
    int n;
    int n_ok;
    int n_fail;
    int last_rc;
};

static void
done_cb(int rc, void *arg)
{
    struct done_log *dl = arg;

    dl->n++;
    dl->last_rc = rc;
    if (rc == 0)
        dl->n_ok++;
    else
        dl->n_fail++;
}

static struct store_binding
binding(const char *aor, const char *contact)
{
    struct store_binding b = {
        .aor = aor,
        .contact = contact,
        .epid = "ep1",
        .call_id = "cid@host",
        .cseq = 1,
        .expires_at = 2000000000,
        .q = 1000,
        .registered_at = 1700000000,
    };
    return b;
}

#define MAX_ROWS 2048

struct row {
    char aor[64], contact[128], instance[96], epid[32], path[128], call_id[64];
    char received[64], user_agent[64];
    bool has_instance, has_path, has_received, has_ua;
    int reg_id, q;
    uint32_t cseq;
    int64_t expires_at, registered_at;
};

struct rows {
    int n;
    struct row r[MAX_ROWS];
};

static void
copy_opt(char *dst, size_t n, bool *has, const char *s)
{
    *has = s != NULL;
    snprintf(dst, n, "%s", s ? s : "");
}

static void
collect_cb(const struct store_binding *b, void *arg)
{
    struct rows *rows = arg;
    struct row *r;
    bool dummy;

    if (rows->n >= MAX_ROWS)
        return;
    r = &rows->r[rows->n++];
    copy_opt(r->aor, sizeof r->aor, &dummy, b->aor);
    copy_opt(r->contact, sizeof r->contact, &dummy, b->contact);
    copy_opt(r->instance, sizeof r->instance, &r->has_instance, b->instance);
    copy_opt(r->epid, sizeof r->epid, &dummy, b->epid);
    copy_opt(r->path, sizeof r->path, &r->has_path, b->path);
    copy_opt(r->call_id, sizeof r->call_id, &dummy, b->call_id);
    copy_opt(r->received, sizeof r->received, &r->has_received, b->received);
    copy_opt(r->user_agent, sizeof r->user_agent, &r->has_ua, b->user_agent);
    r->reg_id = b->reg_id;
    r->q = b->q;
    r->cseq = b->cseq;
    r->expires_at = b->expires_at;
    r->registered_at = b->registered_at;
}

static struct rows *
load_all(struct store *st)
{
    struct rows *rows = calloc(1, sizeof *rows);

    assert_non_null(rows);
    assert_int_equal(store_reg_load(st, collect_cb, rows), 0);
    return rows;
}

/* ---- tests ------------------------------------------------------------ */

static void
test_store_round_trips_every_binding_field(void **state)
{
    struct fixture *fx = *state;
    struct done_log dl = {0};
    struct store_binding b = {
        .aor = "alice@example.com",
        .contact = "sip:alice@192.0.2.1:5060;transport=tcp",
        .instance = "\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"",
        .reg_id = 2,
        .epid = "a1b2c3d4",
        .path = "<sip:edge1.example.com;lr>,<sip:fe1.example.com;lr>",
        .call_id = "843817637684230@998sdasdh09",
        .cseq = 4294967295u,
        .expires_at = 1900000123,
        .q = 700,
        .received = "tcp:192.0.2.1:49152",
        .user_agent = "Parley-Test/1.0",
        .registered_at = 1800000456,
    };
    struct store_binding minimal = binding("bob@example.com", "sip:bob@192.0.2.2");
    char contact[64];
    struct rows *rows;

    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    /* the store copies: scribbling over the caller's strings changes nothing */
    snprintf(contact, sizeof contact, "sip:bob@192.0.2.2");
    minimal.contact = contact;
    assert_int_equal(store_reg_put(fx->st, &minimal, done_cb, &dl), 0);
    memset(contact, 'x', sizeof contact - 1);
    assert_int_equal(dl.n, 0);                    /* never inside the call */
    run_loop(fx);
    assert_int_equal(dl.n_ok, 2);

    rows = load_all(fx->st);
    assert_int_equal(rows->n, 2);
    assert_string_equal(rows->r[0].aor, b.aor);
    assert_string_equal(rows->r[0].contact, b.contact);
    assert_true(rows->r[0].has_instance);
    assert_string_equal(rows->r[0].instance, b.instance);
    assert_int_equal(rows->r[0].reg_id, 2);
    assert_string_equal(rows->r[0].epid, b.epid);
    assert_true(rows->r[0].has_path);
    assert_string_equal(rows->r[0].path, b.path);
    assert_string_equal(rows->r[0].call_id, b.call_id);
    assert_int_equal(rows->r[0].cseq, 4294967295u);
    assert_int_equal(rows->r[0].expires_at, 1900000123);
    assert_int_equal(rows->r[0].q, 700);
    assert_true(rows->r[0].has_received);
    assert_string_equal(rows->r[0].received, b.received);
    assert_true(rows->r[0].has_ua);
    assert_string_equal(rows->r[0].user_agent, b.user_agent);
    assert_int_equal(rows->r[0].registered_at, 1800000456);

    assert_string_equal(rows->r[1].contact, "sip:bob@192.0.2.2");
    assert_false(rows->r[1].has_instance);
    assert_false(rows->r[1].has_path);
    assert_false(rows->r[1].has_received);
    assert_false(rows->r[1].has_ua);
    free(rows);
}

static void
test_store_upserts_by_aor_and_contact(void **state)
{
    struct fixture *fx = *state;
    struct store_binding b = binding("alice@example.com", "sip:alice@192.0.2.1");
    struct done_log dl = {0};
    struct rows *rows;

    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    run_loop(fx);
    b.cseq = 2;
    b.expires_at = 2000003600;
    b.call_id = "other-call-id";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    /* same contact under another aor is another binding */
    b.aor = "bob@example.com";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    run_loop(fx);
    assert_int_equal(dl.n_ok, 3);

    rows = load_all(fx->st);
    assert_int_equal(rows->n, 2);
    assert_string_equal(rows->r[0].aor, "alice@example.com");
    assert_int_equal(rows->r[0].cseq, 2);
    assert_int_equal(rows->r[0].expires_at, 2000003600);
    assert_string_equal(rows->r[0].call_id, "other-call-id");
    assert_string_equal(rows->r[1].aor, "bob@example.com");
    free(rows);
}

static void
test_store_upserts_by_instance_and_reg_id(void **state)
{
    struct fixture *fx = *state;
    struct store_binding b = binding("alice@example.com", "sip:alice@192.0.2.1:5060");
    struct done_log dl = {0};
    struct rows *rows;

    b.instance = "<urn:uuid:1>";
    b.reg_id = 1;
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    run_loop(fx);
    /* RFC 5626 §6: same instance and reg-id over a new flow replaces the binding */
    b.contact = "sip:alice@198.51.100.7:6000";
    b.cseq = 7;
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    run_loop(fx);
    rows = load_all(fx->st);
    assert_int_equal(rows->n, 1);
    assert_string_equal(rows->r[0].contact, "sip:alice@198.51.100.7:6000");
    assert_int_equal(rows->r[0].cseq, 7);
    free(rows);

    /* another reg-id of the same instance is a second flow: kept side by side */
    b.reg_id = 2;
    b.contact = "sip:alice@203.0.113.9:7000";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    /* the same instance under another aor does not touch alice */
    b.aor = "carol@example.com";
    b.reg_id = 1;
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    /* a replacement and an upsert of both keys within one batch */
    b.aor = "alice@example.com";
    b.reg_id = 1;
    b.contact = "sip:alice@198.51.100.8:6001";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    run_loop(fx);
    assert_int_equal(dl.n_ok, 5);

    rows = load_all(fx->st);
    assert_int_equal(rows->n, 3);
    int alice = 0, carol = 0;
    for (int i = 0; i < rows->n; i++) {
        if (strcmp(rows->r[i].aor, "alice@example.com") == 0) {
            alice++;
            if (rows->r[i].reg_id == 1)
                assert_string_equal(rows->r[i].contact, "sip:alice@198.51.100.8:6001");
            else
                assert_string_equal(rows->r[i].contact, "sip:alice@203.0.113.9:7000");
        } else {
            carol++;
        }
    }
    assert_int_equal(alice, 2);
    assert_int_equal(carol, 1);
    free(rows);
}

static void
test_store_deletes_one_binding_and_whole_aor(void **state)
{
    struct fixture *fx = *state;
    struct done_log dl = {0};
    struct store_binding b;
    struct rows *rows;
    char contact[64];

    for (int i = 0; i < 3; i++) {
        snprintf(contact, sizeof contact, "sip:alice@192.0.2.%d", i + 1);
        b = binding("alice@example.com", contact);
        assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
        b.aor = "bob@example.com";
        assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    }
    run_loop(fx);
    assert_int_equal(store_reg_del(fx->st, "alice@example.com", "sip:alice@192.0.2.2", done_cb,
                                   &dl),
                     0);
    /* deleting what is not there is a success */
    assert_int_equal(store_reg_del(fx->st, "alice@example.com", "sip:nobody@192.0.2.9", done_cb,
                                   &dl),
                     0);
    assert_int_equal(store_reg_del_aor(fx->st, "bob@example.com", done_cb, &dl), 0);
    run_loop(fx);
    assert_int_equal(dl.n_ok, 9);
    assert_int_equal(dl.n_fail, 0);

    rows = load_all(fx->st);
    assert_int_equal(rows->n, 2);
    assert_string_equal(rows->r[0].contact, "sip:alice@192.0.2.1");
    assert_string_equal(rows->r[1].contact, "sip:alice@192.0.2.3");
    free(rows);
}

static void
test_store_purges_expired_bindings(void **state)
{
    struct fixture *fx = *state;
    struct done_log dl = {0};
    struct store_binding b;
    struct rows *rows;
    char contact[64];

    for (int i = 0; i < 10; i++) {
        snprintf(contact, sizeof contact, "sip:u%d@192.0.2.1", i);
        b = binding("alice@example.com", contact);
        b.expires_at = 1000 + i;                  /* 1000 .. 1009 */
        assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    }
    run_loop(fx);
    assert_int_equal(store_reg_purge_expired(fx->st, 1004, done_cb, &dl), 0);
    run_loop(fx);
    assert_int_equal(dl.n_ok, 11);
    rows = load_all(fx->st);
    assert_int_equal(rows->n, 5);                 /* expires_at <= now is gone */
    for (int i = 0; i < rows->n; i++)
        assert_true(rows->r[i].expires_at > 1004);
    free(rows);
}

/* ---- group commit ---------------------------------------------------- */

struct batch_check {
    struct store *st;
    int n;
    int out_of_order;
    int not_committed;
    int failed;
};

struct batch_item {
    struct batch_check *bc;
    int idx;
};

static void
batch_done_cb(int rc, void *arg)
{
    struct batch_item *it = arg;
    struct batch_check *bc = it->bc;

    if (rc != 0)
        bc->failed++;
    if (it->idx != bc->n)
        bc->out_of_order++;
    if (store_stats(bc->st)->commits != 1)       /* the commit happened before us */
        bc->not_committed++;
    bc->n++;
}

static void
test_store_group_commits_1000_puts_in_one_transaction(void **state)
{
    struct fixture *fx = *state;
    struct batch_check bc = {.st = fx->st};
    struct batch_item *items = calloc(1000, sizeof *items);
    const struct store_stats *ss = store_stats(fx->st);
    char aor[64];
    struct rows *rows;

    assert_non_null(items);
    assert_int_equal(ss->commits, 0);
    for (int i = 0; i < 1000; i++) {
        struct store_binding b;
        snprintf(aor, sizeof aor, "user%04d@example.com", i);
        b = binding(aor, "sip:u@192.0.2.1");
        items[i].bc = &bc;
        items[i].idx = i;
        assert_int_equal(store_reg_put(fx->st, &b, batch_done_cb, &items[i]), 0);
    }
    assert_int_equal(bc.n, 0);
    assert_int_equal(ss->ops, 1000);
    run_loop(fx);
    assert_int_equal(ss->commits, 1);             /* ONE transaction */
    assert_int_equal(ss->commit_fail, 0);
    assert_int_equal(bc.n, 1000);
    assert_int_equal(bc.failed, 0);
    assert_int_equal(bc.out_of_order, 0);
    assert_int_equal(bc.not_committed, 0);
    assert_true(ss->max_commit_us >= ss->last_commit_us);
    assert_true(store_healthy(fx->st));
    rows = load_all(fx->st);
    assert_int_equal(rows->n, 1000);
    free(rows);
    free(items);
}

struct visible_check {
    sqlite3 *other;                               /* a second, independent connection */
    const char *aor, *contact;
    int calls;
    int visible;
};

static int
count_rows(sqlite3 *db, const char *aor, const char *contact)
{
    sqlite3_stmt *stmt = NULL;
    int n = -1;

    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM reg_binding WHERE aor = ?1 AND contact = ?2",
                           -1, &stmt, NULL) == SQLITE_OK) {
        sqlite3_bind_text(stmt, 1, aor, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, contact, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            n = sqlite3_column_int(stmt, 0);
    }
    sqlite3_finalize(stmt);
    return n;
}

static void
visible_done_cb(int rc, void *arg)
{
    struct visible_check *vc = arg;

    vc->calls++;
    if (rc == 0 && count_rows(vc->other, vc->aor, vc->contact) == 1)
        vc->visible++;
}

static void
test_store_calls_done_only_after_commit_is_visible(void **state)
{
    struct fixture *fx = *state;
    struct visible_check vc = {.aor = "alice@example.com", .contact = "sip:alice@192.0.2.1"};
    struct store_binding b = binding(vc.aor, vc.contact);
    struct event_base *base = fx->base;

    assert_int_equal(sqlite3_open_v2(fx->db_path, &vc.other, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(vc.other, 2000);
    assert_int_equal(store_reg_put(fx->st, &b, visible_done_cb, &vc), 0);
    /* queued only: nothing is written until the loop runs */
    assert_int_equal(count_rows(vc.other, vc.aor, vc.contact), 0);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(vc.calls, 1);
    assert_int_equal(vc.visible, 1);
    sqlite3_close(vc.other);
}

struct requeue {
    struct store *st;
    int calls;
    int second_rc;
};

static void
requeue_second_cb(int rc, void *arg)
{
    struct requeue *rq = arg;

    rq->second_rc = rc;
    rq->calls++;
}

static void
requeue_cb(int rc, void *arg)
{
    struct requeue *rq = arg;
    struct store_binding b = binding("bob@example.com", "sip:bob@192.0.2.2");

    rq->calls++;
    /* work queued from a callback goes to the next batch */
    assert_int_equal(store_reg_put(rq->st, &b, requeue_second_cb, rq), 0);
}

static void
test_store_callback_may_queue_into_next_batch(void **state)
{
    struct fixture *fx = *state;
    struct requeue rq = {.st = fx->st, .second_rc = 99};
    struct store_binding b = binding("alice@example.com", "sip:alice@192.0.2.1");

    assert_int_equal(store_reg_put(fx->st, &b, requeue_cb, &rq), 0);
    run_loop(fx);
    assert_int_equal(rq.calls, 2);
    assert_int_equal(rq.second_rc, 0);
    assert_int_equal(store_stats(fx->st)->commits, 2);
}

static void
test_store_flush_ms_delays_the_commit(void **state)
{
    struct fixture *fx = *state;
    struct store_binding b = binding("alice@example.com", "sip:alice@192.0.2.1");
    struct done_log dl = {0};
    struct timespec t0, t1;
    long ms;

    store_close(fx->st);
    fx->st = open_store(fx, 50);
    assert_non_null(fx->st);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(dl.n, 0);                    /* not at the end of this turn */
    b.contact = "sip:alice@192.0.2.2";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    run_loop(fx);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_int_equal(dl.n_ok, 2);
    assert_int_equal(store_stats(fx->st)->commits, 1);
    assert_true(ms >= 45);
}

/* commit_interval_ms: an idle store commits at once; writes within the interval after a
 * commit wait for the next one and share it. */
static void
test_store_commit_interval_groups_writes(void **state)
{
    struct fixture *fx = *state;
    struct store_binding b = binding("alice@example.com", "sip:alice@192.0.2.1");
    struct store_opts opts = {.data_dir = fx->dir, .commit_interval_ms = 200};
    struct done_log dl = {0};
    struct timespec t0, t1;
    char err[256];
    long ms;

    store_close(fx->st);
    fx->st = store_open(fx->base, &opts, err, sizeof err);
    assert_non_null(fx->st);
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(dl.n_ok, 1);                 /* idle: committed at the end of the turn */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    b.contact = "sip:alice@192.0.2.2";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(dl.n, 1);                    /* within the interval: waits */
    b.contact = "sip:alice@192.0.2.3";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    run_loop(fx);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_int_equal(dl.n_ok, 3);
    assert_int_equal(store_stats(fx->st)->commits, 2);   /* the last two shared one */
    assert_true(ms >= 150);
}

static void
test_store_close_flushes_and_reopen_keeps_data(void **state)
{
    struct fixture *fx = *state;
    struct done_log dl = {0};
    struct rows *rows;
    char contact[64];

    for (int i = 0; i < 20; i++) {
        struct store_binding b;
        snprintf(contact, sizeof contact, "sip:alice@192.0.2.%d", i);
        b = binding("alice@example.com", contact);
        assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    }
    assert_int_equal(store_kv_put(fx->st, "presence", "alice@example.com", "<pidf/>", 7,
                                  done_cb, &dl),
                     0);
    /* no loop run: close must flush synchronously and call back */
    store_close(fx->st);
    fx->st = NULL;
    assert_int_equal(dl.n_ok, 21);
    /* the loop must not hold a dangling flush event */
    assert_int_equal(event_base_loop(fx->base, EVLOOP_NONBLOCK), 1);

    fx->st = open_store(fx, 0);
    assert_non_null(fx->st);
    rows = load_all(fx->st);
    assert_int_equal(rows->n, 20);
    free(rows);
}

static void
close_in_cb(int rc, void *arg)
{
    struct fixture *fx = arg;

    store_close(fx->st);                          /* deferred until the batch is done */
    fx->st = NULL;
}

static void
test_store_close_from_done_callback_is_safe(void **state)
{
    struct fixture *fx = *state;
    struct store_binding b = binding("alice@example.com", "sip:alice@192.0.2.1");
    struct done_log dl = {0};

    assert_int_equal(store_reg_put(fx->st, &b, close_in_cb, fx), 0);
    b.contact = "sip:alice@192.0.2.2";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), 0);
    run_loop(fx);
    assert_null(fx->st);
    assert_int_equal(dl.n_ok, 1);                 /* the rest of the batch still reported */
}

/* ---- kill -9 --------------------------------------------------------- */

struct child_ctx {
    int remaining;
    int failed;
};

static void
child_done_cb(int rc, void *arg)
{
    struct child_ctx *cc = arg;

    if (rc != 0)
        cc->failed++;
    cc->remaining--;
}

/* Child side: never returns. Exit codes tell the parent what went wrong. */
static void
child_put_500_then_wait(const char *dir, int wfd)
{
    struct store_opts opts = {.data_dir = dir};
    struct child_ctx cc = {.remaining = 500};
    struct event_base *base = event_base_new();
    char err[256], aor[64];
    struct store *st;

    if (!base || !(st = store_open(base, &opts, err, sizeof err)))
        _exit(2);
    /* in several loop turns, as the registrar would */
    for (int turn = 0; turn < 5; turn++) {
        for (int i = 0; i < 100; i++) {
            struct store_binding b;
            snprintf(aor, sizeof aor, "user%03d@example.com", turn * 100 + i);
            b = binding(aor, "sip:u@192.0.2.1");
            if (store_reg_put(st, &b, child_done_cb, &cc) != 0)
                _exit(3);
        }
        event_base_loop(base, EVLOOP_ONCE);
    }
    while (cc.remaining > 0)
        event_base_loop(base, EVLOOP_ONCE);
    if (cc.failed)
        _exit(4);
    if (write(wfd, "k", 1) != 1)
        _exit(5);
    for (;;)
        pause();                                  /* store still open: killed here */
}

static void
test_store_keeps_every_acknowledged_binding_after_kill_9(void **state)
{
    struct fixture *fx = *state;
    struct pollfd pfd;
    struct rows *rows;
    int fds[2], status = 0;
    char c = 0;
    pid_t pid;
    int got;

    store_close(fx->st);                          /* the child is the only writer */
    fx->st = NULL;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_put_500_then_wait(fx->dir, fds[1]);
    }
    close(fds[1]);
    pfd.fd = fds[0];
    pfd.events = POLLIN;
    got = poll(&pfd, 1, 20000) == 1 && read(fds[0], &c, 1) == 1;
    kill(pid, SIGKILL);                           /* also on failure: never leave it behind */
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(fds[0]);
    if (!got)
        print_error("child exit status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    assert_true(got);
    assert_int_equal(c, 'k');
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    fx->st = open_store(fx, 0);
    assert_non_null(fx->st);
    rows = load_all(fx->st);
    assert_int_equal(rows->n, 500);
    free(rows);
}

/* ---- failures -------------------------------------------------------- */

static void
test_store_commit_failure_fails_callbacks_and_recovers(void **state)
{
    struct fixture *fx = *state;
    struct store_binding b = binding("alice@example.com", "sip:alice@192.0.2.1");
    struct done_log ok = {0}, bad = {0}, again = {0};
    struct rlimit old, tiny;
    void (*old_xfsz)(int);
    struct rows *rows;
    char contact[64];

    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &ok), 0);
    run_loop(fx);
    assert_int_equal(ok.n_ok, 1);

    /* A file-size limit makes every write to the database files fail with EFBIG,
     * like a full disk, and unlike chmod it also stops root. */
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    old_xfsz = signal(SIGXFSZ, SIG_IGN);
    tiny = old;
    tiny.rlim_cur = 1;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
    for (int i = 0; i < 10; i++) {
        snprintf(contact, sizeof contact, "sip:bad%d@192.0.2.1", i);
        b.contact = contact;
        assert_int_equal(store_reg_put(fx->st, &b, done_cb, &bad), 0);
    }
    run_loop(fx);
    /* a second failing batch is counted (its log line is rate limited) */
    assert_int_equal(store_kv_put(fx->st, "ns", "k", "v", 1, done_cb, &bad), 0);
    run_loop(fx);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_xfsz);

    assert_int_equal(bad.n, 11);
    assert_int_equal(bad.n_fail, 11);
    assert_false(store_healthy(fx->st));
    assert_int_equal(store_stats(fx->st)->commit_fail, 2);

    /* the next batch succeeds again and the store reports healthy */
    b.contact = "sip:alice@192.0.2.99";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &again), 0);
    run_loop(fx);
    assert_int_equal(again.n_ok, 1);
    assert_true(store_healthy(fx->st));
    rows = load_all(fx->st);
    assert_int_equal(rows->n, 2);                 /* none of the failed batch */
    free(rows);
}

static void
test_store_open_refuses_bad_paths(void **state)
{
    struct fixture *fx = *state;
    struct store_opts opts = {.data_dir = fx->dir};
    char err[256] = "";
    char sub[128];
    struct store *st;
    FILE *f;

    store_close(fx->st);
    fx->st = NULL;
    /* the database path is a directory */
    rm_dir(fx->dir);
    assert_int_equal(mkdir(fx->dir, 0700), 0);
    assert_int_equal(mkdir(fx->db_path, 0700), 0);
    st = store_open(fx->base, &opts, err, sizeof err);
    assert_null(st);
    assert_non_null(strstr(err, "parley.db"));

    /* the data dir is a regular file */
    snprintf(sub, sizeof sub, "%s/plain", fx->dir);
    f = fopen(sub, "w");
    assert_non_null(f);
    fclose(f);
    opts.data_dir = sub;
    err[0] = '\0';
    assert_null(store_open(fx->base, &opts, err, sizeof err));
    assert_non_null(strstr(err, "not a directory"));
    unlink(sub);

    /* not a database at all */
    rmdir(fx->db_path);
    f = fopen(fx->db_path, "w");
    assert_non_null(f);
    fputs("this is not an sqlite database, just text long enough to fill a header block\n", f);
    fclose(f);
    opts.data_dir = fx->dir;
    err[0] = '\0';
    assert_null(store_open(fx->base, &opts, err, sizeof err));
    assert_true(err[0] != '\0');
    unlink(fx->db_path);

    /* missing arguments */
    assert_null(store_open(NULL, &opts, err, sizeof err));
    assert_null(store_open(fx->base, NULL, err, sizeof err));
    opts.data_dir = "";
    assert_null(store_open(fx->base, &opts, err, sizeof err));
}

static void
test_store_refuses_a_newer_schema(void **state)
{
    struct fixture *fx = *state;
    char err[256] = "";
    sqlite3 *db;

    store_close(fx->st);
    fx->st = NULL;
    assert_int_equal(sqlite3_open(fx->db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO schema_version VALUES (99, 0)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    struct store_opts opts = {.data_dir = fx->dir};
    assert_null(store_open(fx->base, &opts, err, sizeof err));
    assert_non_null(strstr(err, "newer"));
}

static void
test_store_rejects_bad_input_without_callback(void **state)
{
    struct fixture *fx = *state;
    struct store_binding b = binding("alice@example.com", "sip:alice@192.0.2.1");
    struct done_log dl = {0};

    assert_int_equal(store_reg_put(NULL, &b, done_cb, &dl), -1);
    assert_int_equal(store_reg_put(fx->st, NULL, done_cb, &dl), -1);
    b.epid = NULL;
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), -1);
    b.epid = "ep";
    b.aor = "";
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), -1);
    b.aor = "alice@example.com";
    b.call_id = NULL;
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), -1);
    b.call_id = "c";
    b.q = 1001;
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), -1);
    b.q = -1;
    assert_int_equal(store_reg_put(fx->st, &b, done_cb, &dl), -1);
    assert_int_equal(store_reg_del(fx->st, NULL, "sip:x", done_cb, &dl), -1);
    assert_int_equal(store_reg_del(fx->st, "a@b", NULL, done_cb, &dl), -1);
    assert_int_equal(store_reg_del_aor(fx->st, "", done_cb, &dl), -1);
    assert_int_equal(store_reg_purge_expired(NULL, 0, done_cb, &dl), -1);
    assert_int_equal(store_kv_put(fx->st, "", "k", "v", 1, done_cb, &dl), -1);
    assert_int_equal(store_kv_put(fx->st, "ns", NULL, "v", 1, done_cb, &dl), -1);
    assert_int_equal(store_kv_put(fx->st, "ns", "k", NULL, 3, done_cb, &dl), -1);
    assert_int_equal(store_kv_del(fx->st, "ns", "", done_cb, &dl), -1);
    assert_int_equal(store_reg_load(NULL, collect_cb, NULL), -1);
    assert_int_equal(store_kv_load(fx->st, NULL, NULL, NULL), -1);
    assert_false(store_healthy(NULL));
    assert_null(store_stats(NULL));
    store_close(NULL);
    run_loop(fx);
    assert_int_equal(dl.n, 0);
    assert_int_equal(store_stats(fx->st)->ops, 0);
    /* done may be NULL */
    b.q = 0;
    assert_int_equal(store_reg_put(fx->st, &b, NULL, NULL), 0);
    run_loop(fx);
    assert_int_equal(store_stats(fx->st)->commits, 1);
}

/* ---- kv -------------------------------------------------------------- */

struct kv_rows {
    int n;
    char key[8][64];
    char val[8][64];
    size_t len[8];
};

static void
kv_collect_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct kv_rows *kr = arg;

    if (kr->n >= 8 || len > sizeof kr->val[0])
        return;
    snprintf(kr->key[kr->n], sizeof kr->key[0], "%s", key);
    memcpy(kr->val[kr->n], value, len);
    kr->len[kr->n] = len;
    kr->n++;
}

static void
test_store_kv_puts_deletes_and_loads(void **state)
{
    struct fixture *fx = *state;
    static const char bin[5] = {'a', 0, 'b', 0, 'c'};
    struct kv_rows kr = {0};
    struct done_log dl = {0};

    assert_int_equal(store_kv_put(fx->st, "presence", "alice@example.com", "open", 4, done_cb,
                                  &dl),
                     0);
    assert_int_equal(store_kv_put(fx->st, "presence", "bob@example.com", bin, sizeof bin,
                                  done_cb, &dl),
                     0);
    assert_int_equal(store_kv_put(fx->st, "presence", "carol@example.com", NULL, 0, done_cb,
                                  &dl),
                     0);
    assert_int_equal(store_kv_put(fx->st, "lists", "alice@example.com", "other-ns", 8, done_cb,
                                  &dl),
                     0);
    run_loop(fx);
    /* overwrite and delete in the next batch */
    assert_int_equal(store_kv_put(fx->st, "presence", "alice@example.com", "closed", 6, done_cb,
                                  &dl),
                     0);
    assert_int_equal(store_kv_del(fx->st, "presence", "bob@example.com", done_cb, &dl), 0);
    assert_int_equal(store_kv_del(fx->st, "presence", "nobody@example.com", done_cb, &dl), 0);
    run_loop(fx);
    assert_int_equal(dl.n_ok, 7);

    assert_int_equal(store_kv_load(fx->st, "presence", kv_collect_cb, &kr), 0);
    assert_int_equal(kr.n, 2);
    assert_string_equal(kr.key[0], "alice@example.com");
    assert_int_equal(kr.len[0], 6);
    assert_memory_equal(kr.val[0], "closed", 6);
    assert_string_equal(kr.key[1], "carol@example.com");
    assert_int_equal(kr.len[1], 0);

    /* binary values keep their NUL bytes */
    assert_int_equal(store_kv_put(fx->st, "presence", "bob@example.com", bin, sizeof bin,
                                  done_cb, &dl),
                     0);
    run_loop(fx);
    memset(&kr, 0, sizeof kr);
    assert_int_equal(store_kv_load(fx->st, "presence", kv_collect_cb, &kr), 0);
    assert_int_equal(kr.n, 3);
    assert_int_equal(kr.len[1], sizeof bin);
    assert_memory_equal(kr.val[1], bin, sizeof bin);

    memset(&kr, 0, sizeof kr);
    assert_int_equal(store_kv_load(fx->st, "lists", kv_collect_cb, &kr), 0);
    assert_int_equal(kr.n, 1);
    assert_memory_equal(kr.val[0], "other-ns", 8);
    memset(&kr, 0, sizeof kr);
    assert_int_equal(store_kv_load(fx->st, "empty-ns", kv_collect_cb, &kr), 0);
    assert_int_equal(kr.n, 0);
}

/* The connection really is in WAL mode with the documented pragmas. */
static void
test_store_database_is_wal(void **state)
{
    struct fixture *fx = *state;
    sqlite3_stmt *stmt = NULL;
    sqlite3 *db;

    assert_int_equal(sqlite3_open(fx->db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "wal");
    sqlite3_finalize(stmt);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT MAX(version) FROM schema_version", -1, &stmt,
                                        NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(stmt, 0), 1);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_round_trips_every_binding_field, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_upserts_by_aor_and_contact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_upserts_by_instance_and_reg_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_deletes_one_binding_and_whole_aor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_purges_expired_bindings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_group_commits_1000_puts_in_one_transaction,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_calls_done_only_after_commit_is_visible, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_callback_may_queue_into_next_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_flush_ms_delays_the_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_commit_interval_groups_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_close_flushes_and_reopen_keeps_data, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_close_from_done_callback_is_safe, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_keeps_every_acknowledged_binding_after_kill_9,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_commit_failure_fails_callbacks_and_recovers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_open_refuses_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_refuses_a_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_rejects_bad_input_without_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_kv_puts_deletes_and_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_database_is_wal, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
