/*
 * Integration test of shared/directory against a real etcd (started by run.sh through
 * tests/lib/etcd.sh). Steps are sequential; each waits on a condition with a deadline
 * while the libevent loop runs. Environment: ETCD_ENDPOINT, ETCD_SH, ETCD_STATE, WORK_DIR.
 *
 *   dir_it                               the test
 *   dir_it announce <endpoint> <name>    helper process: announces <name> (TTL 2 s) until
 *                                        killed, used to check that a dead server vanishes
 */
#include <event2/event.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "directory/dir.h"
#include "directory/dir_etcd.h"
#include "util/clock.h"
#include "util/log.h"

#define MD5 "0123456789abcdef0123456789abcdef"
#define USER_JSON(home)                                                                    \
    "{\"enabled\":true,\"home\":\"" home "\",\"display\":\"X\",\"ha1_md5\":\"" MD5 "\","   \
    "\"realm\":\"example.com\"}"

static struct event_base *base;
static const char *ep, *etcd_sh, *etcd_state, *work;
static pid_t child = -1;

static void
kill_child(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = -1;
    }
}

static void __attribute__((noreturn, format(printf, 1, 2)))
fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "FAIL: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);                    /* atexit kills the helper; run.sh's trap stops etcd */
}

static void
step(const char *what)
{
    fprintf(stderr, "== %s\n", what);
}

/* Runs the loop for about <ms>. */
static void
spin(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

#define WAIT_FOR(cond, ms)                                                                 \
    do {                                                                                   \
        uint64_t end_ = clock_mono_ms() + (ms);                                            \
        while (!(cond)) {                                                                  \
            if (clock_mono_ms() > end_)                                                    \
                fail("line %d: timed out after %d ms waiting for %s", __LINE__, (ms), #cond); \
            spin(20);                                                                      \
        }                                                                                  \
    } while (0)

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond))                                                                       \
            fail("line %d: %s", __LINE__, #cond);                                          \
    } while (0)

/* Runs a shell command (etcdctl, curl, etcd.sh); the loop is not needed meanwhile. */
static void __attribute__((format(printf, 1, 2)))
sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    rc = system(cmd);
    if (rc != 0)
        fail("command failed (%d): %s", rc, cmd);
}

static void
put(const char *key, const char *value)
{
    sh("ETCDCTL_API=3 etcdctl --endpoints=%s put '%s' '%s' >/dev/null", ep, key, value);
}

static void
del(const char *key)
{
    sh("ETCDCTL_API=3 etcdctl --endpoints=%s del '%s' >/dev/null", ep, key);
}

static int user_changes, user_removals, server_changes, server_removals;

static void
on_user(const char *aor, const struct dir_user *u, void *arg)
{
    if (u)
        user_changes++;
    else
        user_removals++;
}

static void
on_server(const char *name, const struct dir_server *s, void *arg)
{
    if (s)
        server_changes++;
    else
        server_removals++;
}

/* ---- raw client watch, to check reconnect-and-resume ---------------------------------- */

static int w_created, w_down, w_events;
static bool w_saw_dave;

static void
on_raw_watch(const struct dir_watch_msg *m, void *arg)
{
    if (m->kind == DIR_WATCH_CREATED)
        w_created++;
    else if (m->kind == DIR_WATCH_DOWN)
        w_down++;
    else if (m->kind == DIR_WATCH_EVENTS) {
        w_events += (int)m->n_events;
        for (size_t i = 0; i < m->n_events; i++)
            if (strcmp(m->events[i].kv.key, "/parley/users/dave@example.com") == 0)
                w_saw_dave = true;
    }
}

static int compacted;
static int64_t compact_rev;

static void
on_old_watch(const struct dir_watch_msg *m, void *arg)
{
    if (m->kind == DIR_WATCH_CANCELED && m->compact_revision > 0) {
        compacted++;
        compact_rev = m->compact_revision;
    }
}

struct op {
    bool done;
    int rc;
    struct dir_resp copy;   /* only scalar fields are kept */
};

static void
on_op(int rc, const struct dir_resp *resp, void *arg)
{
    struct op *o = arg;

    o->done = true;
    o->rc = rc;
    o->copy.revision = resp->revision;
    o->copy.succeeded = resp->succeeded;
    o->copy.n_kvs = resp->n_kvs;
    o->copy.code = resp->code;
    o->copy.http_status = resp->http_status;
    o->copy.lease_id = resp->lease_id;
    o->copy.ttl = resp->ttl;
}

static bool shut;

static void
on_shut(void *arg)
{
    shut = true;
}

static int
announce_main(const char *endpoint, const char *name)
{
    struct dir_opts o = {.endpoints = endpoint, .name = name, .role = DIR_ROLE_HOMESERVER,
                         .address = "sip:127.0.0.1:5999;transport=tcp",
                         .cert_subject = "home9.pool.example", .lease_ttl_s = 2};
    struct event_base *b;
    struct dir *d;

    prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive the test */
    b = event_base_new();
    d = dir_new(b, &o);
    if (d == NULL)
        return 1;
    event_base_dispatch(b);
    return 0;
}

int
main(int argc, char **argv)
{
    char db[1024], db2[1024];
    struct dir *a, *b;
    struct dir_etcd *raw;
    struct dir_etcd_watch *rw;
    struct dir_stats st, st2;
    const struct dir_server *srv;

    if (argc == 4 && strcmp(argv[1], "announce") == 0)
        return announce_main(argv[2], argv[3]);
    ep = getenv("ETCD_ENDPOINT");
    etcd_sh = getenv("ETCD_SH");
    etcd_state = getenv("ETCD_STATE");
    work = getenv("WORK_DIR");
    if (!ep || !etcd_sh || !etcd_state || !work) {
        fprintf(stderr, "run through run.sh (needs ETCD_ENDPOINT ETCD_SH ETCD_STATE WORK_DIR)\n");
        return 2;
    }
    atexit(kill_child);
    signal(SIGPIPE, SIG_IGN);
    log_set_level(getenv("DIR_IT_DEBUG") ? LOG_DEBUG : LOG_WARN);
    base = event_base_new();
    snprintf(db, sizeof db, "%s/a-directory.db", work);
    snprintf(db2, sizeof db2, "%s/b-directory.db", work);

    step("initial load");
    put("/parley/schema", "1");
    put("/parley/users/alice@example.com", USER_JSON("home1"));
    put("/parley/users/bob@example.com", USER_JSON("home1"));
    put("/parley/routes/pstn", "{\"match\":\"tel\",\"next_hop\":\"sip:127.0.0.1:5080\"}");
    struct dir_opts oa = {.endpoints = ep, .cache_path = db, .name = "fe1",
                          .role = DIR_ROLE_FRONTEND, .address = "sip:127.0.0.1:5060;transport=tcp",
                          .cert_subject = "fe1.pool.example", .admin = "http://127.0.0.1:8070",
                          .lease_ttl_s = 2, .on_user = on_user, .on_server = on_server};
    a = dir_new(base, &oa);
    CHECK(a != NULL);
    WAIT_FOR(dir_is_ready(a), 5000);
    CHECK(dir_etcd_up(a));
    CHECK(dir_user_get(a, "alice@example.com") != NULL);
    CHECK(strcmp(dir_user_get(a, "sip:Bob@Example.com")->home, "home1") == 0);
    CHECK(dir_user_get(a, "carol@example.com") == NULL);
    CHECK(dir_cache_age_s(a) >= 0 && dir_cache_age_s(a) < 5);

    step("a sync in pages of one key loads the same snapshot (and its disk copy)");
    {
        char db3[600];
        struct dir *pg, *pg2;
        snprintf(db3, sizeof db3, "%s/p-directory.db", work);
        struct dir_opts op = {.endpoints = ep, .cache_path = db3, .sync_page = 1};
        pg = dir_new(base, &op);
        CHECK(pg != NULL);
        WAIT_FOR(dir_is_ready(pg), 5000);
        CHECK(dir_user_get(pg, "alice@example.com") != NULL);
        CHECK(dir_user_get(pg, "bob@example.com") != NULL);
        dir_free(pg);
        /* the disk copy written after the last page has everything */
        struct dir_opts od = {.cache_path = db3};
        pg2 = dir_new(base, &od);
        CHECK(pg2 != NULL);
        CHECK(dir_user_get(pg2, "alice@example.com") != NULL && dir_user_get(pg2, "bob@example.com") != NULL);
        dir_free(pg2);
    }

    step("user added after the sync arrives by the watch");
    put("/parley/users/carol@example.com", USER_JSON("home2"));
    WAIT_FOR(dir_user_get(a, "carol@example.com") != NULL, 5000);
    CHECK(strcmp(dir_user_get(a, "carol@example.com")->home, "home2") == 0);
    put("/parley/users/carol@example.com", USER_JSON("home3"));
    WAIT_FOR(strcmp(dir_user_get(a, "carol@example.com")->home, "home3") == 0, 5000);

    step("deleted user disappears; a bad value is rejected");
    del("/parley/users/bob@example.com");
    WAIT_FOR(dir_user_get(a, "bob@example.com") == NULL, 5000);
    CHECK(user_removals >= 1);
    dir_stats_get(a, &st);
    put("/parley/users/mallory@example.com", "{not json");
    WAIT_FOR((dir_stats_get(a, &st2), st2.rejected > st.rejected), 5000);
    CHECK(dir_user_get(a, "mallory@example.com") == NULL);

    step("own announcement, kept alive past its 2 s TTL");
    WAIT_FOR(dir_is_announced(a) && dir_server_get(a, "fe1") != NULL, 5000);
    srv = dir_server_get(a, "fe1");
    CHECK(srv->role == DIR_ROLE_FRONTEND);
    CHECK(strcmp(srv->admin, "http://127.0.0.1:8070") == 0);
    spin(3000);
    CHECK(dir_server_get(a, "fe1") != NULL);

    step("another server's announcement appears, and vanishes once it stops");
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        execl("/proc/self/exe", "dir_it", "announce", ep, "home9", (char *)NULL);
        _exit(127);
    }
    WAIT_FOR(dir_server_get(a, "home9") != NULL, 5000);
    CHECK(dir_server_find_by_subject(a, "HOME9.pool.example") == dir_server_get(a, "home9"));
    CHECK(dir_server_find_by_subject(a, "nobody.example") == NULL);
    kill_child();
    WAIT_FOR(dir_server_get(a, "home9") == NULL, 8000);
    CHECK(server_removals >= 1);
    CHECK(dir_server_get(a, "fe1") != NULL);

    step("client: put/range/create/delete");
    raw = dir_etcd_new(base, "http://127.0.0.1:1, 127.0.0.1:2 ,"); /* dead ones first */
    CHECK(raw != NULL);
    {
        char eps[512];
        snprintf(eps, sizeof eps, "http://127.0.0.1:1,%s", ep);
        dir_etcd_free(raw);
        raw = dir_etcd_new(base, eps);
    }
    struct op o1 = {0}, o2 = {0}, o3 = {0};
    CHECK(dir_etcd_create(raw, "/test/cas", "v1", 2, 0, on_op, &o1) == 0);
    WAIT_FOR(o1.done, 8000);            /* fails over from the dead endpoint */
    CHECK(o1.rc == 0 && o1.copy.succeeded);
    CHECK(strstr(dir_etcd_endpoint(raw), ep + 7) != NULL);
    CHECK(dir_etcd_create(raw, "/test/cas", "v2", 2, 0, on_op, &o2) == 0);
    WAIT_FOR(o2.done, 5000);
    CHECK(o2.rc == 0 && !o2.copy.succeeded && o2.copy.n_kvs == 1);
    CHECK(dir_etcd_delete(raw, "/test/", true, on_op, &o3) == 0);
    WAIT_FOR(o3.done, 5000);
    CHECK(o3.rc == 0);
    struct op o4 = {0};
    CHECK(dir_etcd_lease_keepalive(raw, 12345, on_op, &o4) == 0);
    WAIT_FOR(o4.done, 5000);
    CHECK(o4.copy.ttl == 0);            /* unknown lease: answered without TTL */

    step("compaction: a watch from a compacted revision is canceled, the dir reloads");
    for (int i = 0; i < 3; i++)
        put("/parley/users/carol@example.com", i % 2 ? USER_JSON("home3") : USER_JSON("home4"));
    WAIT_FOR(strcmp(dir_user_get(a, "carol@example.com")->home, "home4") == 0, 5000);
    dir_stats_get(a, &st);
    sh("curl -fsS -m 5 -X POST %s/v3/kv/compaction -d '{\"revision\":\"%lld\",\"physical\":true}'"
       " >/dev/null", ep, (long long)st.revision);
    rw = dir_etcd_watch(raw, "/parley/", 2, on_old_watch, NULL);
    CHECK(rw != NULL);
    WAIT_FOR(compacted == 1, 5000);
    CHECK(compact_rev >= st.revision);
    dir_etcd_watch_cancel(rw);
    CHECK(dir_watch_restart(a, 2) == 0);
    WAIT_FOR((dir_stats_get(a, &st2), st2.compactions == 1 && st2.syncs > st.syncs), 5000);
    WAIT_FOR(dir_user_get(a, "alice@example.com") != NULL, 1000);
    put("/parley/users/erin@example.com", USER_JSON("home1"));
    WAIT_FOR(dir_user_get(a, "erin@example.com") != NULL, 5000);  /* watching again */

    step("etcd stopped: lookups keep answering from the cache");
    rw = dir_etcd_watch(raw, "/parley/users/", 0, on_raw_watch, NULL);
    WAIT_FOR(w_created == 1, 5000);
    sh("bash %s stop %s", etcd_sh, etcd_state);
    WAIT_FOR(!dir_etcd_up(a), 8000);
    CHECK(dir_user_get(a, "alice@example.com") != NULL);
    CHECK(dir_user_get(a, "erin@example.com") != NULL);
    CHECK(dir_is_ready(a));
    WAIT_FOR(w_down >= 1, 5000);

    step("a new dir started during the outage loads its users from the disk copy");
    sh("cp %s %s && (cp %s-wal %s-wal 2>/dev/null; true)", db, db2, db, db2);
    struct dir_opts ob = {.endpoints = ep, .cache_path = db2};
    b = dir_new(base, &ob);
    CHECK(b != NULL);
    CHECK(dir_is_ready(b));
    CHECK(!dir_etcd_up(b));
    CHECK(dir_user_get(b, "alice@example.com") != NULL);
    CHECK(dir_user_get(b, "erin@example.com") != NULL);
    CHECK(dir_user_get(b, "bob@example.com") == NULL);
    CHECK(dir_server_get(b, "fe1") != NULL);
    spin(1500);
    CHECK(dir_user_get(b, "alice@example.com") != NULL);

    step("etcd back: a user added meanwhile appears after the re-sync");
    dir_stats_get(a, &st);
    sh("bash %s start %s >/dev/null", etcd_sh, etcd_state);
    put("/parley/users/dave@example.com", USER_JSON("home2"));
    CHECK(dir_user_get(a, "dave@example.com") == NULL);
    WAIT_FOR(dir_user_get(a, "dave@example.com") != NULL, 15000);
    WAIT_FOR(dir_etcd_up(a), 5000);
    dir_stats_get(a, &st2);
    CHECK(st2.syncs > st.syncs);
    WAIT_FOR(dir_user_get(b, "dave@example.com") != NULL && dir_etcd_up(b), 15000);
    WAIT_FOR(dir_is_announced(a) && dir_server_get(b, "fe1") != NULL, 10000);
    /* the raw watch reconnected by itself and resumed without losing the put */
    WAIT_FOR(w_saw_dave && w_created >= 2, 15000);
    dir_etcd_watch_cancel(rw);

    step("etcd frozen (SIGSTOP): detected by the heartbeat, lookups answer, recovers");
    sh("bash %s pause %s", etcd_sh, etcd_state);
    WAIT_FOR(!dir_etcd_up(a), 10000);
    CHECK(dir_user_get(a, "dave@example.com") != NULL);
    sh("bash %s resume %s", etcd_sh, etcd_state);
    WAIT_FOR(dir_etcd_up(a) && dir_is_announced(a), 20000);
    put("/parley/users/frank@example.com", USER_JSON("home1"));
    WAIT_FOR(dir_user_get(a, "frank@example.com") != NULL, 15000);

    step("clean shutdown revokes the announcement");
    CHECK(dir_shutdown(a, on_shut, NULL) == 0);
    WAIT_FOR(shut, 5000);
    WAIT_FOR(dir_server_get(b, "fe1") == NULL, 5000);
    dir_free(a);
    dir_free(b);
    dir_etcd_free(raw);
    event_base_free(base);
    fprintf(stderr, "PASS\n");
    return 0;
}
