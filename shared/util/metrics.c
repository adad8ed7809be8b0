/*
 * metrics: registry of counter and gauge families, Prometheus text format 0.0.4.
 *
 * A family owns a singly linked list of series (struct metric), each with its label
 * set pre-rendered and escaped at creation, so rendering only appends text and reading
 * a value never allocates. Lookups by name and labels are linear: they happen at
 * module start-up, not on the hot path.
 */
#define LOG_MODULE "metrics"
#include "util/metrics.h"
#include "util/mem.h"
#include "util/slab.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "util/log.h"

#define MAX_LABEL_PAIRS 8

struct family {
    char *name;
    char *help;
    enum metric_type type;
    struct metric *first, *last;  /* series in creation order */
    struct family *next;
};

struct metrics {
    struct family *first, *last;  /* families in creation order */
    double start_time;            /* process_start_time_seconds */
};

struct metrics *
metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void
metrics_free(struct metrics *reg)
{
    if (!reg)
        return;
    for (struct family *f = reg->first, *fn; f; f = fn) {
        fn = f->next;
        for (struct metric *m = f->first, *mn; m; m = mn) {
            mn = m->next;
            free(m->labels);
            free(m);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    free(reg);
}

static bool
valid_metric_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool
valid_label_name(const char *s)
{
    if (!s || !*s || strncmp(s, "__", 2) == 0)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* Appends <s> to the growing string <*buf>; label values escape \ " and newline. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void
sb_putc(struct sbuf *sb, char c)
{
    if (sb->oom)
        return;
    if (sb->len + 2 > sb->cap) {
        size_t ncap = sb->cap ? sb->cap * 2 : 64;
        char *np = realloc(sb->p, ncap);
        if (!np) {
            sb->oom = true;
            return;
        }
        sb->p = np;
        sb->cap = ncap;
    }
    sb->p[sb->len++] = c;
    sb->p[sb->len] = '\0';
}

static void
sb_puts(struct sbuf *sb, const char *s)
{
    for (; *s; s++)
        sb_putc(sb, *s);
}

/* Text format 0.0.4: label values escape backslash, double quote and line feed. */
static void
sb_put_label_value(struct sbuf *sb, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            sb_puts(sb, "\\\\");
        else if (*s == '"')
            sb_puts(sb, "\\\"");
        else if (*s == '\n')
            sb_puts(sb, "\\n");
        else
            sb_putc(sb, *s);
    }
}

/* Renders name/value pairs from <ap> into 'k="v",...'; NULL on a bad name or OOM. */
static char *
render_labels(const char *metric, va_list ap)
{
    struct sbuf sb = {0};
    const char *names[MAX_LABEL_PAIRS];
    size_t n = 0;

    sb_puts(&sb, "");
    sb_putc(&sb, 'x');   /* allocate, then reset: an empty label set is "" */
    sb.len = 0;
    if (sb.p)
        sb.p[0] = '\0';
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        if (!v || n == MAX_LABEL_PAIRS || !valid_label_name(k)) {
            log_err("metric %s: invalid label '%s' (or missing value, or more than %d labels)",
                    metric, k, MAX_LABEL_PAIRS);
            free(sb.p);
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(names[i], k) == 0) {
                log_err("metric %s: label '%s' given twice", metric, k);
                free(sb.p);
                return NULL;
            }
        names[n++] = k;
        if (sb.len > 0)
            sb_putc(&sb, ',');
        sb_puts(&sb, k);
        sb_puts(&sb, "=\"");
        sb_put_label_value(&sb, v);
        sb_putc(&sb, '"');
    }
    if (sb.oom) {
        free(sb.p);
        return NULL;
    }
    return sb.p;
}

static struct family *
family_get(struct metrics *reg, enum metric_type type, const char *name, const char *help)
{
    struct family *f;

    if (!valid_metric_name(name)) {
        log_err("invalid metric name '%s'", name ? name : "(null)");
        return NULL;
    }
    for (f = reg->first; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            if (f->type != type) {
                log_err("metric %s registered twice with different types", name);
                return NULL;
            }
            return f;
        }
    }
    f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->type = type;
    if (!f->name || !f->help) {
        free(f->name);
        free(f->help);
        free(f);
        return NULL;
    }
    if (reg->last)
        reg->last->next = f;
    else
        reg->first = f;
    reg->last = f;
    return f;
}

/* Finds or creates the series of <f> with pre-rendered <labels> (ownership taken). */
static struct metric *
series_get(struct family *f, char *labels, metrics_value_fn *fn, void *arg)
{
    struct metric *m;

    for (m = f->first; m; m = m->next) {
        if (strcmp(m->labels, labels) == 0) {
            free(labels);
            if (fn && (m->fn != fn || m->fn_arg != arg)) {
                log_err("metric %s{%s} registered twice with different callbacks", f->name,
                        m->labels);
                return NULL;
            }
            return m;
        }
    }
    m = calloc(1, sizeof *m);
    if (!m) {
        free(labels);
        return NULL;
    }
    m->labels = labels;
    m->fn = fn;
    m->fn_arg = arg;
    if (f->last)
        f->last->next = m;
    else
        f->first = m;
    f->last = m;
    return m;
}

static struct metric *
series_v(struct metrics *reg, enum metric_type type, const char *name, const char *help,
         metrics_value_fn *fn, void *arg, va_list ap)
{
    struct family *f;
    char *labels;

    if (!reg)
        return NULL;
    if (!(f = family_get(reg, type, name, help)))
        return NULL;
    if (!(labels = render_labels(name, ap)))
        return NULL;
    return series_get(f, labels, fn, arg);
}

static struct metric *
series(struct metrics *reg, enum metric_type type, const char *name, const char *help,
       metrics_value_fn *fn, void *arg, ...)
{
    va_list ap;
    struct metric *m;

    va_start(ap, arg);
    m = series_v(reg, type, name, help, fn, arg, ap);
    va_end(ap);
    return m;
}

struct metric *
metrics_counter(struct metrics *reg, const char *name, const char *help)
{
    return series(reg, METRIC_COUNTER, name, help, NULL, NULL, (const char *)NULL);
}

struct metric *
metrics_gauge(struct metrics *reg, const char *name, const char *help)
{
    return series(reg, METRIC_GAUGE, name, help, NULL, NULL, (const char *)NULL);
}

struct metric *
metrics_series_labels(struct metrics *reg, enum metric_type type, const char *name,
                      const char *help, ...)
{
    va_list ap;
    struct metric *m;

    va_start(ap, help);
    m = series_v(reg, type, name, help, NULL, NULL, ap);
    va_end(ap);
    return m;
}

struct metric *
metrics_gauge_fn(struct metrics *reg, const char *name, const char *help, metrics_value_fn *fn,
                 void *arg)
{
    if (!fn)
        return NULL;
    return series(reg, METRIC_GAUGE, name, help, fn, arg, (const char *)NULL);
}

struct metric *
metrics_counter_fn(struct metrics *reg, const char *name, const char *help,
                   metrics_value_fn *fn, void *arg)
{
    if (!fn)
        return NULL;
    return series(reg, METRIC_COUNTER, name, help, fn, arg, (const char *)NULL);
}

struct metric *
metrics_series_fn_labels(struct metrics *reg, enum metric_type type, const char *name,
                         const char *help, metrics_value_fn *fn, void *arg, ...)
{
    va_list ap;
    struct metric *m;

    if (!fn)
        return NULL;
    va_start(ap, arg);
    m = series_v(reg, type, name, help, fn, arg, ap);
    va_end(ap);
    return m;
}

/* ---------------------------------------------------------------- rendering */

/* HELP text escapes backslash and line feed (format 0.0.4). */
static void
put_help(struct evbuffer *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            evbuffer_add(out, "\\\\", 2);
        else if (*s == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, s, 1);
    }
}

/* Go's ParseFloat syntax: NaN, +Inf, -Inf, shortest round-tripping decimal. */
static void
put_double(struct evbuffer *out, double v)
{
    char buf[64];

    if (isnan(v)) {
        evbuffer_add(out, "NaN", 3);
        return;
    }
    if (isinf(v)) {
        evbuffer_add_printf(out, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        evbuffer_add_printf(out, "%.0f", v);
        return;
    }
    snprintf(buf, sizeof buf, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof buf, "%.17g", v);
    evbuffer_add_printf(out, "%s", buf);
}

int
metrics_render(struct metrics *reg, struct evbuffer *out)
{
    if (!reg)
        return 0;
    for (struct family *f = reg->first; f; f = f->next) {
        if (!f->first)
            continue;
        evbuffer_add_printf(out, "# HELP %s ", f->name);
        put_help(out, f->help);
        evbuffer_add_printf(out, "\n# TYPE %s %s\n", f->name,
                            f->type == METRIC_COUNTER ? "counter" : "gauge");
        for (struct metric *m = f->first; m; m = m->next) {
            evbuffer_add_printf(out, "%s", f->name);
            if (m->labels[0])
                evbuffer_add_printf(out, "{%s}", m->labels);
            evbuffer_add(out, " ", 1);
            if (m->fn)
                put_double(out, m->fn(m->fn_arg));
            else if (f->type == METRIC_COUNTER)
                evbuffer_add_printf(out, "%llu", (unsigned long long)m->v.count);
            else
                evbuffer_add_printf(out, "%lld", (long long)m->v.level);
            if (evbuffer_add(out, "\n", 1) != 0)
                return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- process metrics */

/* Field <idx> (0 = size, 1 = resident) of /proc/self/statm, in bytes; NaN if unreadable. */
static double
statm_bytes(int idx)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    int n;

    if (!f)
        return NAN;
    n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (n != 2)
        return NAN;
    return (double)(idx == 0 ? size : resident) * (double)sysconf(_SC_PAGESIZE);
}

static double
rss_fn(void *arg)
{
    return statm_bytes(1);
}

static double
vsize_fn(void *arg)
{
    return statm_bytes(0);
}

static double
heap_fn(void *arg)
{
    struct mem_heap h;

    if (!mem_heap_get(&h))
        return NAN;
    return (double)(arg ? h.free : h.in_use);
}

static double
slab_fn(void *arg)
{
    struct slab_stats st;

    slab_stats_get(&st);
    return (double)(arg ? st.used : st.mapped);
}

static double
cpu_fn(void *arg)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return NAN;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double
open_fds_fn(void *arg)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    double n = 0;

    if (!d)
        return NAN;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;   /* the descriptor of the directory stream itself */
}

static double
start_time_fn(void *arg)
{
    return *(const double *)arg;
}

/* Process start in seconds since the epoch: /proc/self/stat starttime + /proc/stat btime. */
static double
process_start_time(void)
{
    char buf[1024];
    FILE *f;
    size_t n;
    double btime = -1, ticks = -1;

    if ((f = fopen("/proc/stat", "r"))) {
        while (fgets(buf, sizeof buf, f))
            if (strncmp(buf, "btime ", 6) == 0) {
                btime = strtod(buf + 6, NULL);
                break;
            }
        fclose(f);
    }
    if ((f = fopen("/proc/self/stat", "r"))) {
        n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        /* fields after the ")" closing comm: state is field 3, starttime field 22 */
        char *p = strrchr(buf, ')');
        int field = 2;
        while (p && *p && field < 22) {
            p = strchr(p + 1, ' ');
            if (p)
                field++;
        }
        if (p && field == 22)
            ticks = strtod(p + 1, NULL);
    }
    if (btime < 0 || ticks < 0)
        return (double)time(NULL);
    return btime + ticks / (double)sysconf(_SC_CLK_TCK);
}

int
metrics_add_process(struct metrics *reg)
{
    if (!reg)
        return -1;
    reg->start_time = process_start_time();
    if (!metrics_counter_fn(reg, "process_cpu_seconds_total",
                            "Total user and system CPU time spent in seconds.", cpu_fn, NULL) ||
        !metrics_gauge_fn(reg, "process_resident_memory_bytes", "Resident memory size in bytes.",
                          rss_fn, NULL) ||
        !metrics_gauge_fn(reg, "parley_heap_in_use_bytes", "Bytes in allocated heap chunks (malloc).",
                          heap_fn, NULL) ||
        !metrics_gauge_fn(reg, "parley_heap_free_bytes",
                          "Free bytes the allocator keeps resident (returned by the periodic trim).",
                          heap_fn, (void *)1) ||
        !metrics_gauge_fn(reg, "parley_slab_mapped_bytes",
                          "Bytes mapped for long-lived small objects (registrations).", slab_fn, NULL) ||
        !metrics_gauge_fn(reg, "parley_slab_used_bytes", "Bytes of those slabs in use.", slab_fn,
                          (void *)1) ||
        !metrics_gauge_fn(reg, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
                          vsize_fn, NULL) ||
        !metrics_gauge_fn(reg, "process_open_fds", "Number of open file descriptors.",
                          open_fds_fn, NULL) ||
        !metrics_gauge_fn(reg, "process_start_time_seconds",
                          "Start time of the process since unix epoch in seconds.", start_time_fn,
                          &reg->start_time))
        return -1;
    return 0;
}
