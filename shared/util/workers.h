/*
 * workers: run one server as several worker processes under a supervising parent
 * (docs/internals/workers.md). The parent forks <n> workers, each of which builds its
 * own event loop, listeners (SO_REUSEPORT, tp_limits.reuse_port), TLS contexts,
 * directory client and admin endpoint after the fork, so no event_base, OpenSSL or
 * libcurl state crosses a fork. The parent opens no sockets and runs no event loop.
 *
 * Supervision: a worker that dies (signal, or any exit not asked for) is started again
 * in the same slot, at most once per restart_delay_ms; SIGHUP is forwarded to every
 * worker; SIGTERM/SIGINT are forwarded to every worker, which then drain and exit, and
 * workers still alive after stop_timeout_ms get SIGKILL. Workers get SIGTERM when the
 * parent dies (PR_SET_PDEATHSIG), so a killed parent leaves no orphans.
 *
 * Linux only (fork, sigtimedwait, prctl). Not thread-safe: call from the main thread
 * of a process with no other threads.
 */
#ifndef PARLEY_UTIL_WORKERS_H
#define PARLEY_UTIL_WORKERS_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * The body of worker <idx> (0 .. n-1), run in the child after the fork with the
 * parent's signal mask and dispositions reset. Its return value is the child's exit
 * status. It handles SIGTERM (drain, return), SIGINT and SIGHUP itself.
 */
typedef int workers_fn(unsigned idx, void *arg);

struct workers_opts {
    unsigned n;                   /* workers; 0 = one per online CPU (workers_count) */
    workers_fn *run;
    void *arg;
    unsigned restart_delay_ms;    /* default (0) 1000: least time between two starts of a slot */
    unsigned stop_timeout_ms;     /* default (0) 10000: SIGKILL after this once stopping */
};

/* <n>, or the number of online CPUs when <n> is 0 (at least 1). */
unsigned workers_count(unsigned n);

/*
 * Forks the workers and supervises them until all have exited after SIGTERM/SIGINT
 * (returns 0), or a worker's first start failed — it exited with a non-zero status
 * before being asked to stop, before any restart in its slot — in which case the others
 * are stopped and 1 is returned (a configuration error, such as a taken port, fails
 * the whole server as it would with one process). Returns -1 when the first fork
 * fails. Never returns in a worker: the child calls exit() with run()'s value.
 */
int workers_run(const struct workers_opts *opts);

#endif
