/*
 * hs_archive: the archiving stage of the home server (design §4 "Archiving";
 * docs/internals/agents.md). Records every MESSAGE (from, to, time, Call-ID, body) and
 * every call setup (an INVITE answered 2xx) and teardown (BYE) to a sqlite database of
 * its own (<data-dir>/archive.db, WAL), separate from the server's store.
 *
 * The loop never waits for the disk: records go on a bounded queue (--archive-queue)
 * that a worker thread drains in batches, one transaction per batch. A database locked
 * by another process is retried (the queue fills meanwhile), not given up. When the
 * archive cannot keep up, /metrics says so (parley_archive_behind 1,
 * parley_archive_queue_full_total, parley_archive_queue_depth against
 * parley_archive_queue_limit) and the log has one line per episode; with
 * --archive-critical a MESSAGE that cannot be queued is answered 503 instead of being
 * delivered unrecorded (setup/teardown records of calls are counted as lost: a call
 * is not refused).
 *
 * Life: hs_archive_new() before cfg_load() (settings, section "archive"),
 * hs_archive_start() once the proxy exists (opens the DB, starts the worker, installs
 * the px final-answer observer), hs_archive_free() at exit (drains the queue, joins).
 * hs_archive_request() on the loop thread only.
 */
#ifndef PARLEY_HS_ARCHIVE_H
#define PARLEY_HS_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/px.h"

struct cfg;
struct metrics;
struct hs_archive;

struct hs_archive_stats {
    uint64_t queued;              /* records accepted on the queue */
    uint64_t written;             /* records committed */
    uint64_t queue_full;          /* records that found the queue full */
    uint64_t refused;             /* MESSAGEs answered 503 (--archive-critical) */
    uint64_t lost;                /* records not written (queue full, not critical; or a DB error) */
    uint64_t batches;             /* transactions committed */
};

/* Allocates the module and registers its settings with <cfg> (NULL on no memory). */
struct hs_archive *hs_archive_new(struct cfg *cfg);
/*
 * With --archive on: opens <data_dir>/<--archive-file>, creates the tables, starts the
 * worker and observes final answers of <px>. 0 (also when off) or -1 with <err>.
 */
int hs_archive_start(struct hs_archive *a, struct px *px, const char *data_dir, char *err, size_t errlen);
bool hs_archive_enabled(const struct hs_archive *a);
/*
 * The stage: queues a record for a MESSAGE or BYE. Returns true to go on; false when
 * <req> was answered (503: queue full with --archive-critical). <a> may be NULL.
 */
bool hs_archive_request(struct hs_archive *a, struct px_req *req);
/* Snapshot of the counters (any thread). */
void hs_archive_get_stats(struct hs_archive *a, struct hs_archive_stats *out);
/* Adds the parley_archive_* series to <m>. */
void hs_archive_metrics(struct hs_archive *a, struct metrics *m);
/* Writes what is queued, stops the worker, closes the DB, frees. Accepts NULL. */
void hs_archive_free(struct hs_archive *a);

#endif
