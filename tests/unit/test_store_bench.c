/*
 * Throughput probe for the store's group commit (not a test: prints, asserts
 * nothing). Queues <total> store_reg_put() calls, <batch> per loop turn, the way
 * a busy registrar would, and reports puts/s (counted when their done callback
 * reports the commit) and commit latencies. Usage: test_store_bench [total] [batch]
 */
#include "store/store.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct bench {
    struct store *st;
    struct event *turn_ev;
    long total, batch, queued, done, failed;
    int pass;                    /* 0: inserts of new bindings, 1: upserts of the same ones */
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
done_cb(int rc, void *arg)
{
    struct bench *bn = arg;

    bn->done++;
    if (rc != 0)
        bn->failed++;
}

/* One loop turn of registrar work: <batch> puts, then yield to the loop. */
static void
turn_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bench *bn = arg;
    char aor[64], contact[96];

    for (long i = 0; i < bn->batch && bn->queued < bn->total; i++, bn->queued++) {
        struct store_binding b = {
            .aor = aor,
            .contact = contact,
            .instance = "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>",
            .reg_id = 1,
            .epid = "0123456789",
            .path = "<sip:edge1.example.com;lr>",
            .call_id = "a84b4c76e66710@pc33.example.com",
            .cseq = (uint32_t)(bn->pass + 1),
            .expires_at = 2000000000,
            .q = 1000,
            .received = "tcp:192.0.2.1:49152",
            .user_agent = "Parley-Bench/1.0",
            .registered_at = 1700000000,
        };
        snprintf(aor, sizeof aor, "user%07ld@example.com", bn->queued);
        snprintf(contact, sizeof contact, "sip:user%07ld@192.0.2.1:5060;transport=tcp",
                 bn->queued);
        if (store_reg_put(bn->st, &b, done_cb, bn) != 0) {
            fprintf(stderr, "store_reg_put failed\n");
            exit(1);
        }
    }
    if (bn->queued < bn->total)
        event_active(bn->turn_ev, EV_TIMEOUT, 1);
}

int
main(int argc, char **argv)
{
    struct bench bn = {.total = 100000, .batch = 500};
    char dir[] = "/tmp/parley-store-bench-XXXXXX", err[256], p[128];
    struct event_base *base = event_base_new();
    struct store_opts opts = {.data_dir = dir};

    if (argc > 1)
        bn.total = strtol(argv[1], NULL, 10);
    if (argc > 2)
        bn.batch = strtol(argv[2], NULL, 10);
    if (!base || !mkdtemp(dir) || bn.total <= 0 || bn.batch <= 0)
        return 1;
    if (!(bn.st = store_open(base, &opts, err, sizeof err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    bn.turn_ev = event_new(base, -1, 0, turn_cb, &bn);
    for (bn.pass = 0; bn.pass < 2; bn.pass++) {
        double t0, dt;
        const struct store_stats *ss = store_stats(bn.st);
        uint64_t c0 = ss->commits;

        bn.queued = bn.done = bn.failed = 0;
        t0 = now_s();
        event_active(bn.turn_ev, EV_TIMEOUT, 1);
        event_base_dispatch(base);
        dt = now_s() - t0;
        printf("%s: %ld puts, batch %ld: %.3f s, %.0f puts/s committed, %llu commits, "
               "last commit %llu us, max commit %llu us, %ld failed\n",
               bn.pass == 0 ? "insert" : "upsert", bn.done, bn.batch, dt, (double)bn.done / dt,
               (unsigned long long)(ss->commits - c0), (unsigned long long)ss->last_commit_us,
               (unsigned long long)ss->max_commit_us, bn.failed);
    }
    event_free(bn.turn_ev);
    store_close(bn.st);
    event_base_free(base);
    for (const char *const *n = (const char *const[]){"parley.db", "parley.db-wal",
                                                      "parley.db-shm", NULL};
         *n; n++) {
        snprintf(p, sizeof p, "%s/%s", dir, *n);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}
