/*
 * cfg: configuration tables -> defaults, file, env, flags; help, reference, reload, dump.
 *
 * Every row keeps its current value in <row->cur> (owned here); the module's settings
 * struct holds aliases of it (the char * and the cfg_list arrays belong to the cfg).
 * Loading and reloading both compute a complete fresh set of values with resolve()
 * and then commit them, so a failed load or reload never leaves half-applied state.
 */
#define LOG_MODULE "cfg"
#include "util/cfg.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "util/cfg_ini.h"
#include "util/log.h"

enum src {
    SRC_UNSET = 0,
    SRC_DEFAULT,
    SRC_FILE,
    SRC_ENV,
    SRC_FLAG,
};

static const char *const src_names[] = {"unset", "default", "file", "env", "flag"};

/* A typed value; which member is meaningful depends on the row type. */
struct val {
    enum src src;
    char *s;                 /* CFG_STR */
    long long i;             /* CFG_INT, CFG_DURATION_MS, CFG_SIZE */
    bool b;                  /* CFG_BOOL */
    struct cfg_list l;       /* CFG_LIST */
    int file_line;           /* line that set it in the file (duplicate detection) */
};

struct row {
    const struct cfg_opt *opt;
    const char *section;
    void *settings;
    struct val cur;          /* committed value, aliased by the settings struct */
    char **flags;            /* raw texts of this row's flags, in argv order */
    size_t nflags;
};

struct check {
    cfg_check_fn *fn;
    void *arg;
};

/* Storage behind cfg_register_log(). */
struct log_settings {
    char *level;
    bool json;
};

struct cfg {
    char *prog;
    char *version;
    const char *desc;
    FILE *out;               /* NULL = stdout */
    struct row *rows;
    size_t nrows, caprows;
    const char **sections;   /* registered section names, borrowed */
    size_t nsections;
    struct check *checks;
    size_t nchecks;
    char *file;              /* config file path, NULL = none */
    bool loaded;
    const char **changed;    /* row names, borrowed from the tables */
    size_t nchanged;
    const char **ignored;
    size_t nignored;
    struct log_settings log;
    bool log_registered;
};

/* ---------------------------------------------------------------- errors */

static void err_vset(struct cfg_error *err, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
err_vset(struct cfg_error *err, int line, const char *fmt, va_list ap)
{
    if (!err)
        return;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    err->line = line;
    err->col = 0;
}

void
cfg_error_set(struct cfg_error *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    err_vset(err, 0, fmt, ap);
    va_end(ap);
}

static int
fail(struct cfg_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
fail(struct cfg_error *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    err_vset(err, 0, fmt, ap);
    va_end(ap);
    return -1;
}

static int
why_set(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
why_set(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    if (why && whylen > 0) {
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---------------------------------------------------------------- scalar parsers */

static const char *
skip_blank(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Parses the leading integer of <text>; *end points after it. */
static int
parse_ll_prefix(const char *text, long long *out, const char **end, char *why, size_t whylen)
{
    const char *s = skip_blank(text);
    char *e;
    int base = 10;
    const char *digits = s;

    if (*digits == '-' || *digits == '+')
        digits++;
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'))
        base = 16;
    if (!(isdigit((unsigned char)*digits)))
        return why_set(why, whylen, "'%s' is not a number", text);
    errno = 0;
    long long v = strtoll(s, &e, base);
    if (errno == ERANGE)
        return why_set(why, whylen, "'%s' is out of range", text);
    if (e == s)
        return why_set(why, whylen, "'%s' is not a number", text);
    *out = v;
    *end = e;
    return 0;
}

int
cfg_parse_int(const char *text, long long *out, char *why, size_t whylen)
{
    const char *end;
    long long v;

    if (parse_ll_prefix(text, &v, &end, why, whylen) != 0)
        return -1;
    if (*skip_blank(end) != '\0')
        return why_set(why, whylen, "'%s' is not a number", text);
    *out = v;
    return 0;
}

int
cfg_parse_bool(const char *text, bool *out, char *why, size_t whylen)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return why_set(why, whylen, "'%s' is not a boolean (use true/false, yes/no, on/off, 1/0)",
                   text);
}

struct unit {
    const char *name;
    long long mult;
};

static int
parse_with_units(const char *text, const struct unit *units, size_t nunits, const char *kind,
                 long long *out, char *why, size_t whylen)
{
    const char *end;
    long long v;

    if (parse_ll_prefix(text, &v, &end, why, whylen) != 0)
        return why_set(why, whylen, "'%s' is not a %s", text, kind);
    if (v < 0)
        return why_set(why, whylen, "'%s': a %s cannot be negative", text, kind);
    end = skip_blank(end);
    /* the unit runs to the end, trailing blanks allowed */
    size_t ulen = strlen(end);
    while (ulen > 0 && (end[ulen - 1] == ' ' || end[ulen - 1] == '\t'))
        ulen--;
    for (size_t i = 0; i < nunits; i++) {
        if (strlen(units[i].name) == ulen && strncasecmp(end, units[i].name, ulen) == 0) {
            if (units[i].mult > 1 && v > LLONG_MAX / units[i].mult)
                return why_set(why, whylen, "'%s' is out of range", text);
            *out = v * units[i].mult;
            return 0;
        }
    }
    return why_set(why, whylen, "'%s' is not a %s", text, kind);
}

static const struct unit duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

static const struct unit size_units[] = {
    {"", 1},
    {"b", 1},
    {"k", 1LL << 10},
    {"kb", 1LL << 10},
    {"kib", 1LL << 10},
    {"m", 1LL << 20},
    {"mb", 1LL << 20},
    {"mib", 1LL << 20},
    {"g", 1LL << 30},
    {"gb", 1LL << 30},
    {"gib", 1LL << 30},
    {"t", 1LL << 40},
    {"tb", 1LL << 40},
    {"tib", 1LL << 40},
};

int
cfg_parse_duration_ms(const char *text, long long *out, char *why, size_t whylen)
{
    return parse_with_units(text, duration_units, sizeof duration_units / sizeof duration_units[0],
                            "duration (e.g. 500ms, 2s, 5m)", out, why, whylen);
}

int
cfg_parse_size(const char *text, long long *out, char *why, size_t whylen)
{
    return parse_with_units(text, size_units, sizeof size_units / sizeof size_units[0],
                            "size (e.g. 512, 64k, 1m)", out, why, whylen);
}

/* Formats <v> of row type <type> the way a person would write it ("2s", "64k"). */
static void
fmt_typed(enum cfg_type type, long long v, char *buf, size_t len)
{
    if (type == CFG_DURATION_MS && v != 0) {
        static const struct unit u[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000},
                                        {"s", 1000}};
        for (size_t i = 0; i < 4; i++)
            if (v % u[i].mult == 0) {
                snprintf(buf, len, "%lld%s", v / u[i].mult, u[i].name);
                return;
            }
        snprintf(buf, len, "%lldms", v);
        return;
    }
    if (type == CFG_DURATION_MS) {
        snprintf(buf, len, "0ms");
        return;
    }
    if (type == CFG_SIZE && v != 0) {
        static const struct unit u[] = {{"t", 1LL << 40}, {"g", 1LL << 30}, {"m", 1LL << 20},
                                        {"k", 1LL << 10}};
        for (size_t i = 0; i < 4; i++)
            if (v % u[i].mult == 0) {
                snprintf(buf, len, "%lld%s", v / u[i].mult, u[i].name);
                return;
            }
    }
    snprintf(buf, len, "%lld", v);
}

static bool
is_numeric(enum cfg_type t)
{
    return t == CFG_INT || t == CFG_DURATION_MS || t == CFG_SIZE;
}

static bool
has_bounds(const struct cfg_opt *o)
{
    return is_numeric(o->type) && (o->min != 0 || o->max != 0);
}

/* ---------------------------------------------------------------- values */

static void
list_clear(struct cfg_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int
list_append(struct cfg_list *l, const char *item)
{
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    l->v = nv;
    if (!(l->v[l->n] = strdup(item)))
        return -1;
    l->n++;
    return 0;
}

/* Items separated by commas, blanks around items dropped, empty items skipped. */
static int
list_set_csv(struct cfg_list *l, const char *text)
{
    const char *p = text;

    list_clear(l);
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0) {
            char *item = strndup(p, n);
            if (!item || list_append(l, item) != 0) {
                free(item);
                return -1;
            }
            free(item);
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

static void
val_clear(struct val *v)
{
    free(v->s);
    list_clear(&v->l);
    memset(v, 0, sizeof *v);
}

static bool
val_equal(enum cfg_type t, const struct val *a, const struct val *b)
{
    switch (t) {
    case CFG_STR:
        if (!a->s || !b->s)
            return a->s == b->s;
        return strcmp(a->s, b->s) == 0;
    case CFG_BOOL:
        return a->b == b->b;
    case CFG_LIST:
        if (a->l.n != b->l.n)
            return false;
        for (size_t i = 0; i < a->l.n; i++)
            if (strcmp(a->l.v[i], b->l.v[i]) != 0)
                return false;
        return true;
    default:
        return a->i == b->i;
    }
}

/*
 * Parses scalar <text> for row <o> into <v> (replacing its value). For CFG_LIST the
 * text is comma-separated (env, default). Returns 0 or -1 with <why>.
 */
static int
val_parse(const struct cfg_opt *o, const char *text, struct val *v, char *why, size_t whylen)
{
    long long n = 0;
    char lo[32], hi[32];
    int rc;

    switch (o->type) {
    case CFG_STR: {
        char *s = strdup(text);
        if (!s)
            return why_set(why, whylen, "out of memory");
        free(v->s);
        v->s = s;
        return 0;
    }
    case CFG_BOOL:
        return cfg_parse_bool(text, &v->b, why, whylen);
    case CFG_LIST:
        if (list_set_csv(&v->l, text) != 0)
            return why_set(why, whylen, "out of memory");
        return 0;
    case CFG_INT:
        rc = cfg_parse_int(text, &n, why, whylen);
        break;
    case CFG_DURATION_MS:
        rc = cfg_parse_duration_ms(text, &n, why, whylen);
        break;
    case CFG_SIZE:
        rc = cfg_parse_size(text, &n, why, whylen);
        break;
    default:
        return why_set(why, whylen, "unknown setting type %d", (int)o->type);
    }
    if (rc != 0)
        return -1;
    if (has_bounds(o)) {
        fmt_typed(o->type, o->min, lo, sizeof lo);
        fmt_typed(o->type, o->max, hi, sizeof hi);
        if (n > o->max)
            return why_set(why, whylen, "%s is above the maximum %s", text, hi);
        if (n < o->min)
            return why_set(why, whylen, "%s is below the minimum %s", text, lo);
    }
    v->i = n;
    return 0;
}

/* Stores the committed value of <r> into its settings struct. */
static void
row_publish(struct row *r)
{
    char *field = (char *)r->settings + r->opt->offset;

    switch (r->opt->type) {
    case CFG_STR:
        memcpy(field, &r->cur.s, sizeof r->cur.s);
        break;
    case CFG_BOOL:
        memcpy(field, &r->cur.b, sizeof r->cur.b);
        break;
    case CFG_LIST:
        memcpy(field, &r->cur.l, sizeof r->cur.l);
        break;
    default:
        memcpy(field, &r->cur.i, sizeof r->cur.i);
        break;
    }
}

/* ---------------------------------------------------------------- lookup */

static struct row *
find_row(const struct cfg *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nrows; i++)
        if (strcmp(cfg->rows[i].opt->name, name) == 0)
            return &cfg->rows[i];
    return NULL;
}

static bool
section_known(const struct cfg *cfg, const char *section)
{
    for (size_t i = 0; i < cfg->nsections; i++)
        if (strcmp(cfg->sections[i], section) == 0)
            return true;
    return false;
}

/* Levenshtein distance, capped for long names (used for "did you mean"). */
static size_t
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t prev[65], cur[65];

    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            cur[j] = del < ins ? del : ins;
            if (sub < cur[j])
                cur[j] = sub;
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

/* " (did you mean 'listen'?)" or "" */
static void
suggest(const struct cfg *cfg, const char *name, const char *prefix, char *buf, size_t len)
{
    size_t best = 3;
    const char *best_name = NULL;

    buf[0] = '\0';
    for (size_t i = 0; i < cfg->nrows; i++) {
        size_t d = edit_distance(name, cfg->rows[i].opt->name);
        if (d < best) {
            best = d;
            best_name = cfg->rows[i].opt->name;
        }
    }
    if (best_name)
        snprintf(buf, len, " (did you mean '%s%s'?)", prefix, best_name);
}

static void
env_name(const char *name, char *buf, size_t len)
{
    size_t j = 0;

    j = (size_t)snprintf(buf, len, "PARLEY_");
    for (const char *p = name; *p && j + 1 < len; p++)
        buf[j++] = *p == '-' || *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    buf[j] = '\0';
}

/* ---------------------------------------------------------------- life cycle */

struct cfg *
cfg_new(const char *prog, const char *version)
{
    struct cfg *cfg = calloc(1, sizeof *cfg);

    if (!cfg)
        return NULL;
    cfg->prog = strdup(prog ? prog : "parley");
    cfg->version = strdup(version ? version : "unknown");
    if (!cfg->prog || !cfg->version) {
        cfg_free(cfg);
        return NULL;
    }
    return cfg;
}

void
cfg_free(struct cfg *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nrows; i++) {
        struct row *r = &cfg->rows[i];
        val_clear(&r->cur);
        row_publish(r);   /* leave no dangling pointers in the settings */
        for (size_t j = 0; j < r->nflags; j++)
            free(r->flags[j]);
        free(r->flags);
    }
    free(cfg->rows);
    free(cfg->sections);
    free(cfg->checks);
    free(cfg->file);
    free(cfg->changed);
    free(cfg->ignored);
    free(cfg->prog);
    free(cfg->version);
    free(cfg);
}

void
cfg_set_description(struct cfg *cfg, const char *text)
{
    cfg->desc = text;
}

void
cfg_set_output(struct cfg *cfg, FILE *out)
{
    cfg->out = out;
}

static FILE *
out_of(const struct cfg *cfg)
{
    return cfg->out ? cfg->out : stdout;
}

static bool
valid_name(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '_'))
            return false;
    return true;
}

static bool
is_builtin_flag(const char *name)
{
    static const char *const builtins[] = {"config", "help", "help-markdown", "version",
                                           "check-config"};
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(name, builtins[i]) == 0)
            return true;
    return false;
}

int
cfg_register(struct cfg *cfg, const char *section, const struct cfg_opt *rows, size_t n,
             void *settings)
{
    char why[256];
    size_t first = cfg->nrows;

    if (cfg->loaded) {
        log_err("cfg_register(%s) after cfg_load()", section);
        return -1;
    }
    if (!valid_name(section) || !settings) {
        log_err("cfg_register: invalid section name or NULL settings");
        return -1;
    }
    if (cfg->nrows + n > cfg->caprows) {
        size_t ncap = cfg->caprows * 2 + n + 8;
        struct row *nr = realloc(cfg->rows, ncap * sizeof *nr);
        if (!nr)
            return -1;
        cfg->rows = nr;
        cfg->caprows = ncap;
    }
    for (size_t i = 0; i < n; i++) {
        const struct cfg_opt *o = &rows[i];
        if (!valid_name(o->name) || is_builtin_flag(o->name) || find_row(cfg, o->name)) {
            log_err("cfg_register(%s): setting name '%s' is invalid or already used", section,
                    o->name ? o->name : "(null)");
            goto undo;
        }
        if ((unsigned)o->type > CFG_SIZE) {
            log_err("cfg_register(%s): setting '%s' has an unknown type", section, o->name);
            goto undo;
        }
        if (has_bounds(o) && o->min > o->max) {
            log_err("cfg_register(%s): setting '%s' has min > max", section, o->name);
            goto undo;
        }
        struct row *r = &cfg->rows[cfg->nrows];
        memset(r, 0, sizeof *r);
        r->opt = o;
        r->section = section;
        r->settings = settings;
        cfg->nrows++;
        if (o->def && val_parse(o, o->def, &r->cur, why, sizeof why) != 0) {
            log_err("cfg_register(%s): default of '%s': %s", section, o->name, why);
            goto undo;
        }
        if (o->def)
            r->cur.src = SRC_DEFAULT;
        row_publish(r);
    }
    if (!section_known(cfg, section)) {
        const char **ns = realloc(cfg->sections, (cfg->nsections + 1) * sizeof *ns);
        if (!ns)
            goto undo;
        cfg->sections = ns;
        cfg->sections[cfg->nsections++] = section;
    }
    return 0;
undo:
    while (cfg->nrows > first) {
        struct row *r = &cfg->rows[--cfg->nrows];
        val_clear(&r->cur);
        row_publish(r);
    }
    return -1;
}

int
cfg_add_check(struct cfg *cfg, cfg_check_fn *fn, void *arg)
{
    struct check *nc = realloc(cfg->checks, (cfg->nchecks + 1) * sizeof *nc);

    if (!nc)
        return -1;
    cfg->checks = nc;
    cfg->checks[cfg->nchecks].fn = fn;
    cfg->checks[cfg->nchecks].arg = arg;
    cfg->nchecks++;
    return 0;
}

static int
run_checks(struct cfg *cfg, struct cfg_error *err)
{
    for (size_t i = 0; i < cfg->nchecks; i++) {
        err->msg[0] = '\0';
        err->line = err->col = 0;
        if (cfg->checks[i].fn(cfg, cfg->checks[i].arg, err) != 0) {
            if (err->msg[0] == '\0')
                cfg_error_set(err, "configuration check failed");
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- resolve */

struct file_ctx {
    struct cfg *cfg;
    struct val *vals;
};

static int
file_pair_cb(void *arg, const char *section, const char *key, const char *value, int line,
             int col, struct cfg_error *err)
{
    struct file_ctx *fc = arg;
    char why[400], hint[96];

    if (!key) {
        if (!section_known(fc->cfg, section))
            return fail(err, "unknown section [%s]", section);
        return 0;
    }
    struct row *r = find_row(fc->cfg, key);
    if (!r) {
        suggest(fc->cfg, key, "", hint, sizeof hint);
        return fail(err, "unknown setting '%s'%s", key, hint);
    }
    if (section && strcmp(section, r->section) != 0)
        return fail(err, "setting '%s' belongs in section [%s], not [%s]", key, r->section,
                    section);
    struct val *v = &fc->vals[r - fc->cfg->rows];
    if (r->opt->type == CFG_LIST) {
        if (v->src != SRC_FILE)
            list_clear(&v->l);
        if (list_append(&v->l, value) != 0)
            return fail(err, "out of memory");
    } else {
        if (v->src == SRC_FILE)
            return fail(err, "duplicate setting '%s' (first set on line %d)", key, v->file_line);
        if (val_parse(r->opt, value, v, why, sizeof why) != 0)
            return fail(err, "%s: %s", key, why);
    }
    v->src = SRC_FILE;
    v->file_line = line;
    return 0;
}

static int
read_file(const char *path, char **text, size_t *len, struct cfg_error *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n;
    int rc = -1;

    if (!f)
        return fail(err, "%s: cannot open: %s", path, strerror(errno));
    buf = malloc(CFG_INI_MAX_SIZE + 1);
    if (!buf) {
        fail(err, "%s: out of memory", path);
        goto out;
    }
    n = fread(buf, 1, CFG_INI_MAX_SIZE + 1, f);
    if (ferror(f)) {
        fail(err, "%s: read error: %s", path, strerror(errno));
        goto out;
    }
    if (n > CFG_INI_MAX_SIZE) {
        fail(err, "%s: file is larger than %d bytes", path, CFG_INI_MAX_SIZE);
        goto out;
    }
    *text = buf;
    *len = n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

static void
vals_free(struct val *vals, size_t n)
{
    if (!vals)
        return;
    for (size_t i = 0; i < n; i++)
        val_clear(&vals[i]);
    free(vals);
}

/*
 * Computes every row's value from default, file, env and flags into a fresh array
 * (returned in <*out>, one per row). Returns 0 or -1 with <err>.
 */
static int
resolve(struct cfg *cfg, struct val **out, struct cfg_error *err)
{
    struct val *vals = calloc(cfg->nrows ? cfg->nrows : 1, sizeof *vals);
    char why[400], env[128];
    char *text = NULL;
    size_t len = 0;
    int rc = -1;

    if (!vals)
        return fail(err, "out of memory");
    for (size_t i = 0; i < cfg->nrows; i++) {
        const struct cfg_opt *o = cfg->rows[i].opt;
        if (o->def) {
            if (val_parse(o, o->def, &vals[i], why, sizeof why) != 0) {
                fail(err, "default of '%s': %s", o->name, why);
                goto out;
            }
            vals[i].src = SRC_DEFAULT;
        }
    }
    if (cfg->file) {
        struct file_ctx fc = {.cfg = cfg, .vals = vals};
        if (read_file(cfg->file, &text, &len, err) != 0)
            goto out;
        if (cfg_ini_parse(cfg->file, text, len, file_pair_cb, &fc, err) != 0)
            goto out;
    }
    for (size_t i = 0; i < cfg->nrows; i++) {
        const struct cfg_opt *o = cfg->rows[i].opt;
        env_name(o->name, env, sizeof env);
        const char *e = getenv(env);
        if (!e)
            continue;
        if (val_parse(o, e, &vals[i], why, sizeof why) != 0) {
            fail(err, "%s: %s", env, why);
            goto out;
        }
        vals[i].src = SRC_ENV;
    }
    for (size_t i = 0; i < cfg->nrows; i++) {
        struct row *r = &cfg->rows[i];
        if (r->nflags == 0)
            continue;
        if (r->opt->type == CFG_LIST) {
            list_clear(&vals[i].l);
            for (size_t j = 0; j < r->nflags; j++)
                if (list_append(&vals[i].l, r->flags[j]) != 0) {
                    fail(err, "out of memory");
                    goto out;
                }
        } else {
            /* a repeated scalar flag: the last one wins, as with most tools */
            if (val_parse(r->opt, r->flags[r->nflags - 1], &vals[i], why, sizeof why) != 0) {
                fail(err, "--%s: %s", r->opt->name, why);
                goto out;
            }
        }
        vals[i].src = SRC_FLAG;
    }
    for (size_t i = 0; i < cfg->nrows; i++) {
        const struct cfg_opt *o = cfg->rows[i].opt;
        bool missing = (o->type == CFG_STR && (!vals[i].s || !vals[i].s[0])) ||
                       (o->type == CFG_LIST && vals[i].l.n == 0) || vals[i].src == SRC_UNSET;
        if (o->required && missing) {
            env_name(o->name, env, sizeof env);
            fail(err, "missing required setting '%s' (flag --%s, env %s or '%s' in the "
                      "config file)", o->name, o->name, env, o->name);
            goto out;
        }
    }
    *out = vals;
    vals = NULL;
    rc = 0;
out:
    free(text);
    vals_free(vals, cfg->nrows);
    return rc;
}

/* ---------------------------------------------------------------- load */

static int
add_flag(struct row *r, const char *value)
{
    char **nf = realloc(r->flags, (r->nflags + 1) * sizeof *nf);

    if (!nf)
        return -1;
    r->flags = nf;
    if (!(r->flags[r->nflags] = strdup(value)))
        return -1;
    r->nflags++;
    return 0;
}

static int
parse_argv(struct cfg *cfg, int argc, char **argv, bool *check_only, struct cfg_error *err)
{
    char hint[96];
    const char *config = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            if (i + 1 < argc)
                return fail(err, "unexpected argument '%s'", argv[i + 1]);
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return fail(err, "unexpected argument '%s' (settings are given as --name value)",
                        a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        char fname[128];
        if (nlen >= sizeof fname)
            return fail(err, "unknown flag '%.60s...'", a);
        memcpy(fname, name, nlen);
        fname[nlen] = '\0';

        if (strcmp(fname, "check-config") == 0) {
            if (eq)
                return fail(err, "--check-config takes no value");
            *check_only = true;
            continue;
        }
        if (strcmp(fname, "config") == 0) {
            if (eq)
                config = eq + 1;
            else if (i + 1 < argc)
                config = argv[++i];
            else
                return fail(err, "--config: missing value");
            continue;
        }
        struct row *r = find_row(cfg, fname);
        const char *value;
        if (!r && strncmp(fname, "no-", 3) == 0) {
            r = find_row(cfg, fname + 3);
            if (r && r->opt->type == CFG_BOOL) {
                if (eq)
                    return fail(err, "--%s takes no value", fname);
                if (add_flag(r, "false") != 0)
                    return fail(err, "out of memory");
                continue;
            }
            if (r)
                return fail(err, "--%s: only boolean settings have a --no- form", fname);
        }
        if (!r) {
            suggest(cfg, fname, "--", hint, sizeof hint);
            return fail(err, "unknown flag '--%s'%s", fname, hint);
        }
        if (r->opt->type == CFG_BOOL)
            value = eq ? eq + 1 : "true";
        else if (eq)
            value = eq + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return fail(err, "--%s: missing value", fname);
        if (add_flag(r, value) != 0)
            return fail(err, "out of memory");
    }
    if (!config)
        config = getenv("PARLEY_CONFIG");
    if (config && config[0]) {
        if (!(cfg->file = strdup(config)))
            return fail(err, "out of memory");
    }
    return 0;
}

static void
commit_all(struct cfg *cfg, struct val *vals)
{
    for (size_t i = 0; i < cfg->nrows; i++) {
        val_clear(&cfg->rows[i].cur);
        cfg->rows[i].cur = vals[i];
        memset(&vals[i], 0, sizeof vals[i]);
        row_publish(&cfg->rows[i]);
    }
}

int
cfg_load(struct cfg *cfg, int argc, char **argv, struct cfg_error *err)
{
    struct val *vals = NULL;
    bool check_only = false;
    int rc = -1;

    memset(err, 0, sizeof *err);
    if (cfg->loaded)
        return fail(err, "cfg_load called twice");
    cfg->loaded = true;
    /* informational flags win over everything, even over bad flags */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cfg_print_help(cfg, out_of(cfg));
            return CFG_EXIT;
        }
        if (strcmp(argv[i], "--help-markdown") == 0) {
            cfg_print_markdown(cfg, out_of(cfg));
            return CFG_EXIT;
        }
        if (strcmp(argv[i], "--version") == 0) {
            fprintf(out_of(cfg), "%s %s\n", cfg->prog, cfg->version);
            return CFG_EXIT;
        }
    }
    if (parse_argv(cfg, argc, argv, &check_only, err) != 0)
        goto out;
    if (resolve(cfg, &vals, err) != 0)
        goto out;
    commit_all(cfg, vals);
    if (run_checks(cfg, err) != 0)
        goto out;
    if (check_only) {
        fprintf(out_of(cfg), "configuration ok\n");
        rc = CFG_EXIT;
        goto out;
    }
    rc = CFG_RUN;
out:
    vals_free(vals, cfg->nrows);
    return rc;
}

/* ---------------------------------------------------------------- reload */

int
cfg_reload(struct cfg *cfg, struct cfg_error *err)
{
    struct val *vals = NULL, *saved = NULL;
    const char **changed = NULL, **ignored = NULL;
    size_t nchanged = 0, nignored = 0;
    int rc = -1;

    memset(err, 0, sizeof *err);
    if (!cfg->loaded)
        return fail(err, "cfg_reload before cfg_load");
    if (resolve(cfg, &vals, err) != 0)
        goto out;
    saved = calloc(cfg->nrows ? cfg->nrows : 1, sizeof *saved);
    changed = calloc(cfg->nrows ? cfg->nrows : 1, sizeof *changed);
    ignored = calloc(cfg->nrows ? cfg->nrows : 1, sizeof *ignored);
    if (!saved || !changed || !ignored) {
        fail(err, "out of memory");
        goto out;
    }
    bool *swapped = calloc(cfg->nrows ? cfg->nrows : 1, sizeof *swapped);
    if (!swapped) {
        fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cfg->nrows; i++) {
        struct row *r = &cfg->rows[i];
        if (val_equal(r->opt->type, &r->cur, &vals[i])) {
            r->cur.src = vals[i].src;
            continue;
        }
        if (!r->opt->reloadable) {
            ignored[nignored++] = r->opt->name;
            continue;
        }
        saved[i] = r->cur;
        r->cur = vals[i];
        memset(&vals[i], 0, sizeof vals[i]);
        swapped[i] = true;
        row_publish(r);
        changed[nchanged++] = r->opt->name;
    }
    if (run_checks(cfg, err) != 0) {
        for (size_t i = 0; i < cfg->nrows; i++) {
            if (!swapped[i])
                continue;
            val_clear(&cfg->rows[i].cur);
            cfg->rows[i].cur = saved[i];
            memset(&saved[i], 0, sizeof saved[i]);
            row_publish(&cfg->rows[i]);
        }
        free(swapped);
        goto out;
    }
    free(swapped);
    for (size_t i = 0; i < nignored; i++)
        log_warn("setting '%s' changed but is not reloadable: restart to apply it", ignored[i]);
    for (size_t i = 0; i < nchanged; i++)
        log_info("setting '%s' reloaded", changed[i]);
    free(cfg->changed);
    free(cfg->ignored);
    cfg->changed = changed;
    cfg->nchanged = nchanged;
    cfg->ignored = ignored;
    cfg->nignored = nignored;
    changed = ignored = NULL;
    rc = (int)nchanged;
out:
    vals_free(vals, cfg->nrows);
    vals_free(saved, cfg->nrows);
    free(changed);
    free(ignored);
    return rc;
}

const char *const *
cfg_reload_changed(const struct cfg *cfg, size_t *n)
{
    *n = cfg->nchanged;
    return cfg->changed;
}

const char *const *
cfg_reload_ignored(const struct cfg *cfg, size_t *n)
{
    *n = cfg->nignored;
    return cfg->ignored;
}

const char *
cfg_source(const struct cfg *cfg, const char *name)
{
    const struct row *r = find_row(cfg, name);

    return r ? src_names[r->cur.src] : NULL;
}

const char *
cfg_file(const struct cfg *cfg)
{
    return cfg->file;
}

/* ---------------------------------------------------------------- output */

static bool
is_secret(const char *name)
{
    return strstr(name, "password") || strstr(name, "token") || strstr(name, "secret");
}

static void
json_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            evbuffer_add_printf(out, "\\%c", c);
        else if (c == '\n')
            evbuffer_add(out, "\\n", 2);
        else if (c < 0x20 || c == 0x7f)
            evbuffer_add_printf(out, "\\u%04x", c);
        else
            evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

int
cfg_dump_json(struct cfg *cfg, struct evbuffer *out)
{
    evbuffer_add(out, "{", 1);
    for (size_t i = 0; i < cfg->nrows; i++) {
        const struct row *r = &cfg->rows[i];
        const struct cfg_opt *o = r->opt;
        if (i > 0)
            evbuffer_add(out, ",", 1);
        json_str(out, o->name);
        evbuffer_add_printf(out, ":{\"section\":");
        json_str(out, r->section);
        evbuffer_add_printf(out, ",\"type\":\"%s\",\"value\":",
                            o->type == CFG_STR    ? "string"
                            : o->type == CFG_INT  ? "int"
                            : o->type == CFG_BOOL ? "bool"
                            : o->type == CFG_LIST ? "list"
                            : o->type == CFG_SIZE ? "size"
                                                  : "duration_ms");
        bool set = r->cur.src != SRC_UNSET;
        if (is_secret(o->name) && o->type != CFG_BOOL) {
            bool nonempty = (o->type == CFG_STR && r->cur.s && r->cur.s[0]) ||
                            (o->type == CFG_LIST && r->cur.l.n > 0) ||
                            (is_numeric(o->type) && set);
            evbuffer_add_printf(out, "%s", nonempty ? "\"(set)\"" : "null");
        } else if (!set) {
            evbuffer_add_printf(out, "null");
        } else {
            switch (o->type) {
            case CFG_STR:
                if (r->cur.s)
                    json_str(out, r->cur.s);
                else
                    evbuffer_add_printf(out, "null");
                break;
            case CFG_BOOL:
                evbuffer_add_printf(out, "%s", r->cur.b ? "true" : "false");
                break;
            case CFG_LIST:
                evbuffer_add(out, "[", 1);
                for (size_t j = 0; j < r->cur.l.n; j++) {
                    if (j > 0)
                        evbuffer_add(out, ",", 1);
                    json_str(out, r->cur.l.v[j]);
                }
                evbuffer_add(out, "]", 1);
                break;
            default:
                evbuffer_add_printf(out, "%lld", r->cur.i);
                break;
            }
        }
        evbuffer_add_printf(out, ",\"source\":\"%s\",\"reloadable\":%s}", src_names[r->cur.src],
                            o->reloadable ? "true" : "false");
    }
    if (evbuffer_add(out, "}", 1) != 0)
        return -1;
    return 0;
}

static const char *
type_word(enum cfg_type t)
{
    switch (t) {
    case CFG_STR: return "TEXT";
    case CFG_INT: return "N";
    case CFG_BOOL: return "[=BOOL]";
    case CFG_LIST: return "ITEM";
    case CFG_DURATION_MS: return "DURATION";
    case CFG_SIZE: return "SIZE";
    }
    return "?";
}

static const char *
type_md(enum cfg_type t)
{
    switch (t) {
    case CFG_STR: return "string";
    case CFG_INT: return "integer";
    case CFG_BOOL: return "boolean";
    case CFG_LIST: return "list (repeatable)";
    case CFG_DURATION_MS: return "duration";
    case CFG_SIZE: return "size";
    }
    return "?";
}

static void
range_text(const struct cfg_opt *o, char *buf, size_t len)
{
    char lo[32], hi[32];

    buf[0] = '\0';
    if (!has_bounds(o))
        return;
    fmt_typed(o->type, o->min, lo, sizeof lo);
    fmt_typed(o->type, o->max, hi, sizeof hi);
    snprintf(buf, len, "%s..%s", lo, hi);
}

void
cfg_print_help(struct cfg *cfg, FILE *out)
{
    char env[128], range[80];

    fprintf(out, "Usage: %s [--config FILE] [--name value ...]\n", cfg->prog);
    if (cfg->desc)
        fprintf(out, "\n%s\n", cfg->desc);
    fprintf(out, "\nEach setting is read from, in increasing precedence: its default, the config\n"
                 "file, the environment variable PARLEY_<NAME>, the flag --name.\n\n");
    fprintf(out, "General:\n"
                 "  --config FILE      config file (env PARLEY_CONFIG)\n"
                 "  --check-config     validate the configuration, exit 0 (ok) or 2 (bad)\n"
                 "  --help             this text\n"
                 "  --help-markdown    the configuration reference as a markdown table\n"
                 "  --version          print the version\n");
    for (size_t s = 0; s < cfg->nsections; s++) {
        fprintf(out, "\n[%s]\n", cfg->sections[s]);
        for (size_t i = 0; i < cfg->nrows; i++) {
            const struct row *r = &cfg->rows[i];
            const struct cfg_opt *o = r->opt;
            if (strcmp(r->section, cfg->sections[s]) != 0)
                continue;
            env_name(o->name, env, sizeof env);
            range_text(o, range, sizeof range);
            fprintf(out, "  --%s%s%s\n      %s\n      env %s", o->name,
                    o->type == CFG_BOOL ? "" : " ", type_word(o->type),
                    o->help ? o->help : "", env);
            if (o->def)
                fprintf(out, "; default %s", o->def[0] ? o->def : "\"\"");
            if (range[0])
                fprintf(out, "; range %s", range);
            if (o->type == CFG_LIST)
                fprintf(out, "; repeatable");
            if (o->required)
                fprintf(out, "; required");
            if (o->reloadable)
                fprintf(out, "; reloadable");
            fputc('\n', out);
        }
    }
}

/* Markdown table cell: escapes '|' and turns newlines into spaces. */
static void
md_cell(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
}

void
cfg_print_markdown(struct cfg *cfg, FILE *out)
{
    char env[128], range[80];

    fprintf(out, "# %s configuration reference\n\n", cfg->prog);
    fprintf(out, "Generated by `%s --help-markdown` (%s); do not edit by hand.\n\n", cfg->prog,
            cfg->version);
    fprintf(out, "Each setting is read from, in increasing precedence: its default, the config "
                 "file (`--config FILE` or `PARLEY_CONFIG`), the environment variable, the "
                 "flag. Durations take `ms`, `s`, `m`, `h`, `d` (a bare number is ms); sizes "
                 "take `k`, `m`, `g` (powers of 1024). Lists repeat the flag or the file key; "
                 "in the environment their items are separated by commas. Reloadable settings "
                 "change on `POST /api/reload` of the admin endpoint.\n");
    for (size_t s = 0; s < cfg->nsections; s++) {
        fprintf(out, "\n## [%s]\n\n", cfg->sections[s]);
        fprintf(out, "| Setting | Environment | Type | Default | Range | Reloadable | "
                     "Description |\n");
        fprintf(out, "|---|---|---|---|---|---|---|\n");
        for (size_t i = 0; i < cfg->nrows; i++) {
            const struct row *r = &cfg->rows[i];
            const struct cfg_opt *o = r->opt;
            if (strcmp(r->section, cfg->sections[s]) != 0)
                continue;
            env_name(o->name, env, sizeof env);
            range_text(o, range, sizeof range);
            fprintf(out, "| `--%s` | `%s` | %s | ", o->name, env, type_md(o->type));
            if (o->def) {
                fputc('`', out);
                md_cell(out, o->def);
                fputc('`', out);
            } else {
                fputs(o->required ? "(required)" : "(none)", out);
            }
            fprintf(out, " | %s | %s | ", range, o->reloadable ? "yes" : "no");
            md_cell(out, o->help);
            fputs(" |\n", out);
        }
    }
}

/* ---------------------------------------------------------------- log rows */

static const struct cfg_opt log_rows[] = {
    {.name = "log-level", .type = CFG_STR, .def = "info", .reloadable = true,
     .help = "log level: err, warn, info or debug", .offset = offsetof(struct log_settings, level)},
    {.name = "log-json", .type = CFG_BOOL, .def = "false", .reloadable = true,
     .help = "write log lines as JSON objects (for log collectors)",
     .offset = offsetof(struct log_settings, json)},
};

static int
log_check(struct cfg *cfg, void *arg, struct cfg_error *err)
{
    struct log_settings *ls = arg;
    enum log_level lvl;

    if (!ls->level || log_level_parse(ls->level, &lvl) != 0) {
        cfg_error_set(err, "log-level: '%s' is not one of err, warn, info, debug",
                      ls->level ? ls->level : "");
        return -1;
    }
    log_set_level(lvl);
    log_set_json(ls->json);
    return 0;
}

int
cfg_register_log(struct cfg *cfg)
{
    if (cfg->log_registered)
        return 0;
    if (cfg_register(cfg, "log", log_rows, sizeof log_rows / sizeof log_rows[0], &cfg->log) != 0)
        return -1;
    if (cfg_add_check(cfg, log_check, &cfg->log) != 0)
        return -1;
    cfg->log_registered = true;
    return 0;
}
