/*
 * cfg: the one configuration table (design §6, style.md rule 18).
 *
 * Each module declares its settings once, as a static array of struct cfg_opt rows
 * pointing (by offset) into its own settings struct. A program registers the tables
 * with cfg_register() and calls cfg_load(), which fills every settings struct from,
 * in increasing precedence:
 *
 *     default  <  config file  <  environment  <  command-line flag
 *
 * A row named "max-forwards" is set by the flag --max-forwards, the environment
 * variable PARLEY_MAX_FORWARDS and the file key max-forwards. The same table yields
 * --help, --help-markdown (docs/configuration.md), the admin /config dump and reload.
 * Row names are unique across all tables of one struct cfg.
 *
 * Value syntax (flags, env, file and defaults alike):
 *   CFG_STR          any text                                     -> char * (owned by cfg)
 *   CFG_INT          decimal, optional sign, or 0x hex            -> long long
 *   CFG_BOOL         true/false, yes/no, on/off, 1/0              -> bool
 *                    (a flag alone, "--foo", means true; "--no-foo" means false)
 *   CFG_LIST         repeatable string: repeat the flag or the file key; in the env
 *                    and in a default, items are separated by commas
 *                                                                 -> struct cfg_list
 *   CFG_DURATION_MS  "500ms", "2s", "5m", "1h", "1d"; a bare number is ms -> long long ms
 *   CFG_SIZE         "512", "64k", "1m", "2g" (powers of 1024; a trailing "b"/"B"
 *                    is accepted: "64kb")                         -> long long bytes
 * For CFG_LIST the highest-precedence source that sets the row replaces the lower
 * ones (no merging).
 *
 * Config file format (see docs/internals/util.md for the grammar):
 *     # comment                ; comment
 *     [section]                optional; a key under it must belong to that section
 *     key = value              bare value: runs to end of line, trailing blanks dropped
 *     key = "quoted \"value\"\n"   escapes: \\ \" \n \t \r \xHH
 *     listen = udp:0.0.0.0:5060    a CFG_LIST key may repeat; other keys may not
 *
 * Threading: a struct cfg belongs to the main loop thread. Settings structs are
 * written only by cfg_load() and cfg_reload(); a reload replaces reloadable string
 * values (the old char * is freed), so do not keep such a pointer across loop turns.
 */
#ifndef PARLEY_UTIL_CFG_H
#define PARLEY_UTIL_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct evbuffer;

enum cfg_type {
    CFG_STR = 0,
    CFG_INT,
    CFG_BOOL,
    CFG_LIST,        /* repeatable string, e.g. --listen */
    CFG_DURATION_MS,
    CFG_SIZE,
};

/* One setting. Rows live in static const arrays owned by the declaring module. */
struct cfg_opt {
    const char *name;        /* "listen", "data-dir": flag --name, env PARLEY_NAME, file key */
    enum cfg_type type;
    const char *def;         /* default as text (same syntax as the env), NULL = none */
    long long min, max;      /* bounds for INT/DURATION_MS/SIZE, inclusive; 0,0 = unbounded */
    bool reloadable;         /* cfg_reload() may change it on a running process */
    bool required;           /* must end up set (STR non-empty, LIST non-empty) */
    const char *help;        /* one line, shown by --help and in the reference */
    size_t offset;           /* offsetof(struct my_settings, field) */
};

/* Storage for CFG_LIST: <v> has <n> strdup'd items, owned by the cfg. */
struct cfg_list {
    char **v;
    size_t n;
};

/* Filled by loaders on failure: a message a person reads, with where and why. */
struct cfg_error {
    char msg[512];           /* "parley.conf:12: unknown setting 'lisen'",
                                "--max-forwards-limit: 999 is above the maximum 255" */
    int line;                /* config file line (1-based), 0 when not from the file */
    int col;                 /* config file column (1-based), 0 when unknown */
};

/* Return values of cfg_load() besides -1. */
#define CFG_RUN  0           /* settings loaded: run the program */
#define CFG_EXIT 1           /* --help/--help-markdown/--version/--check-config handled:
                                exit(0) */

struct cfg;

/*
 * Creates an empty configuration for program <prog> (shown by --help) at version
 * <version> (shown by --version). Returns NULL on allocation failure. Free with
 * cfg_free(), which also frees every string and list it stored in settings structs.
 */
struct cfg *cfg_new(const char *prog, const char *version);
void cfg_free(struct cfg *cfg);

/* One-paragraph description printed by --help under the usage line (borrowed). */
void cfg_set_description(struct cfg *cfg, const char *text);

/* Where --help, --help-markdown, --version and --check-config write (default stdout). */
void cfg_set_output(struct cfg *cfg, FILE *out);

/*
 * Adds table <rows>[<n>] under <section>, storing values into <settings>. <rows>,
 * <section> and <settings> are borrowed and must outlive the cfg. Returns 0, or -1
 * (logged) when a name is duplicated or invalid, a default does not parse, or this is
 * called after cfg_load().
 */
int cfg_register(struct cfg *cfg, const char *section, const struct cfg_opt *rows, size_t n,
                 void *settings);

/*
 * Check run after cfg_load() (and by --check-config) and after cfg_reload() has
 * applied its changes: return 0 if the settings are acceptable, else fill <err>
 * (cfg_error_set) and return -1. A failing check makes cfg_load() fail and makes
 * cfg_reload() roll back. Also the place to apply reloaded values (e.g. a log level).
 */
typedef int cfg_check_fn(struct cfg *cfg, void *arg, struct cfg_error *err);
int cfg_add_check(struct cfg *cfg, cfg_check_fn *fn, void *arg);

/*
 * Applies defaults, then the config file (--config FILE, else env PARLEY_CONFIG; none
 * if neither is given), then the environment, then the flags in <argv> (argv[0] is the
 * program name; "--name value" and "--name=value" are both accepted; "--" ends flags).
 * Handles --help, --help-markdown, --version and --check-config by printing to the
 * output stream and returning CFG_EXIT (--check-config prints "configuration ok";
 * if invalid it returns -1 like any error). Returns CFG_RUN when the program should
 * run, or -1 with <err> filled: the caller prints err->msg and exits with status 2.
 * <argv> is copied; it may be freed afterwards. Call once.
 */
int cfg_load(struct cfg *cfg, int argc, char **argv, struct cfg_error *err);

/*
 * Re-reads the config file and the environment (flags from cfg_load() still win) and
 * applies ONLY reloadable rows. Non-reloadable rows whose value would change are
 * logged as warnings and left alone. Returns the number of rows changed (>= 0), or -1
 * with <err> filled when the file or a check is bad; then nothing is changed.
 */
int cfg_reload(struct cfg *cfg, struct cfg_error *err);

/*
 * Names of rows changed (or ignored because not reloadable) by the last cfg_reload().
 * Returns an array of <*n> names, valid until the next reload or cfg_free().
 */
const char *const *cfg_reload_changed(const struct cfg *cfg, size_t *n);
const char *const *cfg_reload_ignored(const struct cfg *cfg, size_t *n);

/* Where the current value of row <name> came from: "default", "file", "env", "flag",
 * "unset" (no default, never set), or NULL for an unknown name. */
const char *cfg_source(const struct cfg *cfg, const char *name);

/* The config file in use (borrowed), or NULL when none. */
const char *cfg_file(const struct cfg *cfg);

/*
 * Appends the settings as one JSON object to <out>, for the admin /config endpoint:
 * {"<name>": {"section": "...", "value": <typed>, "source": "...", "reloadable": b}, ...}
 * Rows whose name contains "password", "token" or "secret" show "(set)" (or null when
 * unset) instead of the value. Returns 0, or -1 on allocation failure.
 */
int cfg_dump_json(struct cfg *cfg, struct evbuffer *out);

/* The generated texts, also reachable through --help and --help-markdown. */
void cfg_print_help(struct cfg *cfg, FILE *out);
void cfg_print_markdown(struct cfg *cfg, FILE *out);

/* printf into err->msg (for check functions). <line>/<col> are cleared. */
void cfg_error_set(struct cfg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Parsers shared by the loader, exported for modules and tests. Each returns 0, or -1
 * with a message (without the "where" prefix) in <why>[<whylen>].
 */
int cfg_parse_int(const char *text, long long *out, char *why, size_t whylen);
int cfg_parse_bool(const char *text, bool *out, char *why, size_t whylen);
int cfg_parse_duration_ms(const char *text, long long *out, char *why, size_t whylen);
int cfg_parse_size(const char *text, long long *out, char *why, size_t whylen);

/*
 * The common logging rows, for every binary: log-level (err|warn|info|debug,
 * reloadable) and log-json (bool). cfg_register_log() registers them under section
 * "log" with a check that validates and applies them (log_set_level/log_set_json)
 * after load and after each reload.
 */
int cfg_register_log(struct cfg *cfg);

#endif
