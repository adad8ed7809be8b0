/*
 * metrics: a registry of counters and gauges rendered in the Prometheus text
 * exposition format 0.0.4 for the admin /metrics endpoint (design §6).
 *
 * A module creates its series once at start-up and keeps the struct metric *:
 *
 *     st->m_invite = metrics_counter_labels(reg, "parley_sip_requests_total",
 *                                           "SIP requests received", "method", "INVITE");
 *     ...
 *     metrics_counter_inc(st->m_invite);          (hot path: one add on a uint64)
 *
 * Series with the same name form one family (one HELP/TYPE block); all series of a
 * family must have the same type. Asking again for an existing name+labels returns the
 * same struct metric. Constructors return NULL on an invalid name, a type conflict or
 * allocation failure (logged); the update functions accept NULL and do nothing, so a
 * module may run without a registry (reg == NULL also gives NULL).
 *
 * Threading: updates are plain (non-atomic) stores, for the loop thread that owns the
 * module. A worker thread uses metrics_counter_add_atomic(). Rendering happens on the
 * loop thread. Metrics live until metrics_free().
 */
#ifndef PARLEY_UTIL_METRICS_H
#define PARLEY_UTIL_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct metrics;

enum metric_type {
    METRIC_COUNTER = 0,
    METRIC_GAUGE,
};

/* Evaluated at scrape time for callback series. */
typedef double metrics_value_fn(void *arg);

/*
 * One series (a family name + one set of label values). Modules touch only the value
 * through the inline functions below; the other fields belong to metrics.c.
 */
struct metric {
    union {
        uint64_t count;          /* METRIC_COUNTER */
        int64_t level;           /* METRIC_GAUGE */
    } v;
    metrics_value_fn *fn;        /* non-NULL: value computed at scrape time */
    void *fn_arg;
    char *labels;                /* rendered 'k="v",k2="v2"' (escaped), "" when none */
    struct metric *next;         /* next series of the same family */
};

/* Creates an empty registry. Returns NULL on allocation failure. */
struct metrics *metrics_new(void);
/* Frees the registry and every series in it (NULL is accepted). */
void metrics_free(struct metrics *reg);

/*
 * Unlabelled series. <name> must match [a-zA-Z_:][a-zA-Z0-9_:]*; counters should end
 * in "_total". <help> is copied.
 */
struct metric *metrics_counter(struct metrics *reg, const char *name, const char *help);
struct metric *metrics_gauge(struct metrics *reg, const char *name, const char *help);

/*
 * Labelled series: after <help> come label name/value pairs (at most 8), e.g.
 *     metrics_counter_labels(reg, "parley_sip_requests_total", "help", "method", "INVITE")
 * Label names match [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__"; values are any
 * text (escaped on output). The macros add the terminating NULL.
 */
#define metrics_counter_labels(reg, name, help, ...) \
    metrics_series_labels((reg), METRIC_COUNTER, (name), (help), __VA_ARGS__, (const char *)NULL)
#define metrics_gauge_labels(reg, name, help, ...) \
    metrics_series_labels((reg), METRIC_GAUGE, (name), (help), __VA_ARGS__, (const char *)NULL)
struct metric *metrics_series_labels(struct metrics *reg, enum metric_type type, const char *name,
                                     const char *help, ...);

/*
 * Callback series: <fn>(<arg>) gives the value at each scrape (e.g. queue length, process
 * RSS). A counter callback must never decrease. The _labels forms take pairs as above.
 */
struct metric *metrics_gauge_fn(struct metrics *reg, const char *name, const char *help,
                                metrics_value_fn *fn, void *arg);
struct metric *metrics_counter_fn(struct metrics *reg, const char *name, const char *help,
                                  metrics_value_fn *fn, void *arg);
#define metrics_gauge_fn_labels(reg, name, help, fn, arg, ...) \
    metrics_series_fn_labels((reg), METRIC_GAUGE, (name), (help), (fn), (arg), __VA_ARGS__, \
                             (const char *)NULL)
struct metric *metrics_series_fn_labels(struct metrics *reg, enum metric_type type,
                                        const char *name, const char *help,
                                        metrics_value_fn *fn, void *arg, ...);

/*
 * Built-in process metrics: process_resident_memory_bytes (/proc/self/statm),
 * process_virtual_memory_bytes, process_cpu_seconds_total (getrusage),
 * process_open_fds (/proc/self/fd), process_start_time_seconds. Returns 0 or -1.
 */
int metrics_add_process(struct metrics *reg);

/* Hot path. */
static inline void
metrics_counter_add(struct metric *m, uint64_t n)
{
    if (m)
        m->v.count += n;
}

static inline void
metrics_counter_inc(struct metric *m)
{
    if (m)
        m->v.count++;
}

/* For threads other than the loop thread. */
static inline void
metrics_counter_add_atomic(struct metric *m, uint64_t n)
{
    if (m)
        __atomic_fetch_add(&m->v.count, n, __ATOMIC_RELAXED);
}

static inline void
metrics_gauge_set(struct metric *m, int64_t value)
{
    if (m)
        m->v.level = value;
}

static inline void
metrics_gauge_add(struct metric *m, int64_t delta)
{
    if (m)
        m->v.level += delta;
}

/* Current value of a stored (non-callback) series, for tests and the admin API. */
static inline uint64_t
metrics_counter_value(const struct metric *m)
{
    return m ? m->v.count : 0;
}

static inline int64_t
metrics_gauge_value(const struct metric *m)
{
    return m ? m->v.level : 0;
}

/*
 * Appends the whole registry in Prometheus text format 0.0.4 to <out>: families in
 * creation order, each "# HELP" and "# TYPE" once, then its series in creation order.
 * A family with no series is skipped. Returns 0, or -1 on allocation failure.
 */
int metrics_render(struct metrics *reg, struct evbuffer *out);

/* Content-Type of metrics_render() output. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
