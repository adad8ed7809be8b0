/*
 * log: levelled logging to stderr, one line per event.
 *
 * log_err/log_warn/log_info/log_debug(fmt, ...) add the module (set per file with
 * LOG_MODULE before including this header) and the level. Lines provoked by peers
 * (bad input) go through log_peer(), which is rate limited so a flood cannot fill
 * the disk. log_set_json(true) switches to JSON lines for containers.
 */
#ifndef PARLEY_UTIL_LOG_H
#define PARLEY_UTIL_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_ERR = 0,
    LOG_WARN,
    LOG_INFO,
    LOG_DEBUG,
};

#ifndef LOG_MODULE
#define LOG_MODULE "parley"
#endif

extern enum log_level log_current_level;

/* Parses "err", "warn", "info", "debug"; returns -1 on an unknown name. */
int log_level_parse(const char *name, enum log_level *out);
void log_set_level(enum log_level lvl);
void log_set_json(bool on);
/* Max lines per second for log_peer() (default 20); the rest are counted and summarised. */
void log_set_peer_rate(unsigned per_second);

void log_write(enum log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Rate-limited variant for messages caused by remote input. */
void log_write_peer(enum log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_enabled(lvl) ((lvl) <= log_current_level)
#define log_err(...)   log_write(LOG_ERR, LOG_MODULE, __VA_ARGS__)
#define log_warn(...)  do { if (log_enabled(LOG_WARN)) log_write(LOG_WARN, LOG_MODULE, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_enabled(LOG_INFO)) log_write(LOG_INFO, LOG_MODULE, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, LOG_MODULE, __VA_ARGS__); } while (0)
#define log_peer(lvl, ...) do { if (log_enabled(lvl)) log_write_peer(lvl, LOG_MODULE, __VA_ARGS__); } while (0)

#endif
