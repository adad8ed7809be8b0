#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_current_level = LOG_INFO;
static bool log_json;
static unsigned peer_rate = 20;
static time_t peer_window;
static unsigned peer_count;
static unsigned long peer_suppressed;

static const char *const level_names[] = {"err", "warn", "info", "debug"};

int
log_level_parse(const char *name, enum log_level *out)
{
    for (unsigned i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(name, "error") == 0) {
        *out = LOG_ERR;
        return 0;
    }
    if (strcmp(name, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

void log_set_level(enum log_level lvl) { log_current_level = lvl; }
void log_set_json(bool on) { log_json = on; }
void log_set_peer_rate(unsigned per_second) { peer_rate = per_second; }

/* JSON string escaping for the message part (control chars, quotes, backslash). */
static void
put_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void log_vwrite(enum log_level lvl, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
log_vwrite(enum log_level lvl, const char *module, const char *fmt, va_list ap)
{
    char msg[2048];
    struct timespec ts;
    struct tm tm;
    char when[32];

    vsnprintf(msg, sizeof msg, fmt, ap);
    /* Peer-provided text may hold CR/LF: keep one event per line. */
    for (char *p = msg; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    if (log_json) {
        fprintf(stderr, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"module\":", when,
                ts.tv_nsec / 1000000, level_names[lvl]);
        put_json_str(stderr, module);
        fputs(",\"msg\":", stderr);
        put_json_str(stderr, msg);
        fputs("}\n", stderr);
    } else {
        fprintf(stderr, "%s.%03ldZ %s %s: %s\n", when, ts.tv_nsec / 1000000, level_names[lvl],
                module, msg);
    }
}

void
log_write(enum log_level lvl, const char *module, const char *fmt, ...)
{
    va_list ap;

    if (!log_enabled(lvl))
        return;
    va_start(ap, fmt);
    log_vwrite(lvl, module, fmt, ap);
    va_end(ap);
}

void
log_write_peer(enum log_level lvl, const char *module, const char *fmt, ...)
{
    va_list ap;
    time_t now = time(NULL);

    if (!log_enabled(lvl))
        return;
    if (now != peer_window) {
        if (peer_suppressed > 0)
            log_write(LOG_WARN, "log", "%lu peer-caused log lines suppressed", peer_suppressed);
        peer_window = now;
        peer_count = 0;
        peer_suppressed = 0;
    }
    if (peer_count >= peer_rate) {
        peer_suppressed++;
        return;
    }
    peer_count++;
    va_start(ap, fmt);
    log_vwrite(lvl, module, fmt, ap);
    va_end(ap);
}
