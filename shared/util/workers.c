/*
 * workers: a pre-forking supervisor (workers.h). The parent blocks the signals it
 * handles and takes them with sigtimedwait(), so there are no handlers and no races
 * between a SIGCHLD and the bookkeeping of restarts.
 */
#define LOG_MODULE "workers"

#include "util/workers.h"

#include "util/log.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS_MAX 256

struct slot {
    pid_t pid;                    /* 0 = not running */
    uint64_t started_ms;          /* monotonic time of the last start */
    uint64_t restart_at_ms;       /* when not running and not stopping: start again then */
    unsigned starts;
};

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

unsigned
workers_count(unsigned n)
{
    long c;

    if (n > 0)
        return n > WORKERS_MAX ? WORKERS_MAX : n;
    c = sysconf(_SC_NPROCESSORS_ONLN);
    if (c < 1)
        return 1;
    return c > WORKERS_MAX ? WORKERS_MAX : (unsigned)c;
}

static void
child_signals_reset(const sigset_t *oldmask)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigprocmask(SIG_SETMASK, oldmask, NULL);
}

/* Starts slot <idx>. 0, or -1 when fork fails (logged). */
static int
start_slot(const struct workers_opts *o, struct slot *s, unsigned idx, pid_t parent,
           const sigset_t *oldmask)
{
    pid_t pid = fork();

    if (pid < 0) {
        log_err("cannot start worker %u: fork: %s", idx, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        child_signals_reset(oldmask);
        /* SIGTERM when the parent goes; and it may already have gone */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(1);
        exit(o->run(idx, o->arg));
    }
    s->pid = pid;
    s->started_ms = now_ms();
    s->starts++;
    log_info("worker %u started (pid %ld)", idx, (long)pid);
    return 0;
}

static void
signal_all(struct slot *slots, unsigned n, int sig)
{
    for (unsigned i = 0; i < n; i++)
        if (slots[i].pid > 0)
            kill(slots[i].pid, sig);
}

static unsigned
running(const struct slot *slots, unsigned n)
{
    unsigned r = 0;

    for (unsigned i = 0; i < n; i++)
        r += slots[i].pid > 0;
    return r;
}

int
workers_run(const struct workers_opts *opts)
{
    struct workers_opts o = *opts;
    struct slot *slots;
    sigset_t set, oldmask;
    pid_t self = getpid();
    bool stopping = false;
    uint64_t kill_at = 0;
    int rc = 0;

    o.n = workers_count(o.n);
    if (o.restart_delay_ms == 0)
        o.restart_delay_ms = 1000;
    if (o.stop_timeout_ms == 0)
        o.stop_timeout_ms = 10000;
    slots = calloc(o.n, sizeof *slots);
    if (slots == NULL) {
        log_err("workers: out of memory");
        return -1;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &oldmask);

    for (unsigned i = 0; i < o.n; i++) {
        if (start_slot(&o, &slots[i], i, self, &oldmask) != 0) {
            if (i == 0) {
                rc = -1;
                goto out;
            }
            slots[i].restart_at_ms = now_ms() + o.restart_delay_ms;
        }
    }
    log_info("supervising %u workers", o.n);

    while (!stopping || running(slots, o.n) > 0) {
        uint64_t now = now_ms(), wake = now + 1000;
        struct timespec ts;
        siginfo_t si;
        int sig;
        pid_t pid;
        int status;

        if (stopping && kill_at <= wake)
            wake = kill_at;
        for (unsigned i = 0; i < o.n && !stopping; i++)
            if (slots[i].pid == 0 && slots[i].restart_at_ms < wake)
                wake = slots[i].restart_at_ms;
        ts.tv_sec = (time_t)((wake > now ? wake - now : 0) / 1000);
        ts.tv_nsec = (long)((wake > now ? wake - now : 0) % 1000) * 1000000;
        sig = sigtimedwait(&set, &si, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping)
                log_info("stopping %u workers", running(slots, o.n));
            stopping = true;
            kill_at = now_ms() + o.stop_timeout_ms;
            signal_all(slots, o.n, sig);
        } else if (sig == SIGHUP) {
            log_info("reload: forwarding SIGHUP to the workers");
            signal_all(slots, o.n, SIGHUP);
        }
        /* reap, whatever woke us (SIGCHLDs coalesce) */
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (unsigned i = 0; i < o.n; i++) {
                struct slot *s = &slots[i];
                if (s->pid != pid)
                    continue;
                s->pid = 0;
                if (stopping)
                    break;
                if (WIFSIGNALED(status))
                    log_warn("worker %u (pid %ld) killed by signal %d; restarting", i, (long)pid,
                             WTERMSIG(status));
                else if (WEXITSTATUS(status) != 0 && s->starts == 1) {
                    log_err("worker %u (pid %ld) failed to start (exit %d); stopping", i, (long)pid,
                            WEXITSTATUS(status));
                    rc = 1;
                    stopping = true;
                    kill_at = now_ms() + o.stop_timeout_ms;
                    signal_all(slots, o.n, SIGTERM);
                    break;
                } else
                    log_warn("worker %u (pid %ld) exited (status %d); restarting", i, (long)pid,
                             WEXITSTATUS(status));
                s->restart_at_ms = s->started_ms + o.restart_delay_ms;
                break;
            }
        }
        now = now_ms();
        if (stopping) {
            if (now >= kill_at && running(slots, o.n) > 0) {
                log_warn("%u workers still running after %u ms; killing them", running(slots, o.n),
                         o.stop_timeout_ms);
                signal_all(slots, o.n, SIGKILL);
                kill_at = now + 1000;
            }
            continue;
        }
        for (unsigned i = 0; i < o.n; i++)
            if (slots[i].pid == 0 && slots[i].restart_at_ms <= now &&
                start_slot(&o, &slots[i], i, self, &oldmask) != 0)
                slots[i].restart_at_ms = now + o.restart_delay_ms;
    }
    log_info("all workers stopped");
out:
    if (rc == -1) {
        signal_all(slots, o.n, SIGKILL);
        while (waitpid(-1, NULL, 0) > 0)
            ;
    }
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    free(slots);
    return rc;
}
