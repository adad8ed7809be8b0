/* Unit tests for util/cfg: precedence, types, file syntax, errors, reload, help. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "util/cfg.h"
#include "util/cfg_ini.h"
#include "util/log.h"

struct settings {
    char *name;
    long long count;
    bool flag;
    struct cfg_list listen;
    long long timeout;
    long long size;
    char *api_token;
    char *nodef;
};

static const struct cfg_opt rows[] = {
    {.name = "name", .type = CFG_STR, .def = "dflt", .reloadable = true, .help = "a name",
     .offset = offsetof(struct settings, name)},
    {.name = "count", .type = CFG_INT, .def = "5", .min = 1, .max = 255,
     .help = "how many | pipes", .offset = offsetof(struct settings, count)},
    {.name = "flag", .type = CFG_BOOL, .def = "false", .reloadable = true, .help = "a switch",
     .offset = offsetof(struct settings, flag)},
    {.name = "listen", .type = CFG_LIST, .def = "a, b", .help = "addresses",
     .offset = offsetof(struct settings, listen)},
    {.name = "timeout", .type = CFG_DURATION_MS, .def = "2s", .min = 100, .max = 60000,
     .reloadable = true, .help = "a timeout", .offset = offsetof(struct settings, timeout)},
    {.name = "size", .type = CFG_SIZE, .def = "64k", .help = "a size",
     .offset = offsetof(struct settings, size)},
    {.name = "api-token", .type = CFG_STR, .help = "secret",
     .offset = offsetof(struct settings, api_token)},
    {.name = "nodef", .type = CFG_STR, .help = "no default",
     .offset = offsetof(struct settings, nodef)},
};
#define NROWS (sizeof rows / sizeof rows[0])

static const char *const env_vars[] = {
    "PARLEY_NAME",    "PARLEY_COUNT",     "PARLEY_FLAG",  "PARLEY_LISTEN", "PARLEY_TIMEOUT",
    "PARLEY_SIZE",    "PARLEY_API_TOKEN", "PARLEY_NODEF", "PARLEY_CONFIG", "PARLEY_LOG_LEVEL",
    "PARLEY_LOG_JSON",
};

struct fixture {
    struct cfg *cfg;
    struct settings st;
    char path[64];     /* temp config file, "" when none */
    char *out;         /* captured --help etc. output */
    size_t outlen;
    FILE *outf;
};

static int
setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);

    for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
        unsetenv(env_vars[i]);
    log_set_level(LOG_ERR);
    fx->cfg = cfg_new("parley-test", "1.2.3");
    assert_non_null(fx->cfg);
    assert_int_equal(cfg_register(fx->cfg, "core", rows, NROWS, &fx->st), 0);
    fx->outf = open_memstream(&fx->out, &fx->outlen);
    cfg_set_output(fx->cfg, fx->outf);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;

    cfg_free(fx->cfg);
    if (fx->path[0])
        unlink(fx->path);
    fclose(fx->outf);
    free(fx->out);
    free(fx);
    for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
        unsetenv(env_vars[i]);
    return 0;
}

static void
write_file(struct fixture *fx, const char *text)
{
    FILE *f;

    if (!fx->path[0]) {
        snprintf(fx->path, sizeof fx->path, "/tmp/parley-cfg-XXXXXX");
        int fd = mkstemp(fx->path);
        assert_true(fd >= 0);
        close(fd);
    }
    f = fopen(fx->path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs cfg_load with a NULL-terminated list of arguments after argv[0]. */
static int
load(struct fixture *fx, struct cfg_error *err, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    const char *a;

    argv[argc++] = "parley-test";
    va_start(ap, err);
    while ((a = va_arg(ap, const char *)) && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    return cfg_load(fx->cfg, argc, argv, err);
}

static const char *
captured(struct fixture *fx)
{
    fflush(fx->outf);
    return fx->out;
}

/* ------------------------------------------------------------------ tests */

static void
test_defaults_fill_settings(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    assert_int_equal(load(fx, &err, NULL), CFG_RUN);
    assert_string_equal(fx->st.name, "dflt");
    assert_int_equal(fx->st.count, 5);
    assert_false(fx->st.flag);
    assert_int_equal(fx->st.listen.n, 2);
    assert_string_equal(fx->st.listen.v[0], "a");
    assert_string_equal(fx->st.listen.v[1], "b");
    assert_int_equal(fx->st.timeout, 2000);
    assert_int_equal(fx->st.size, 65536);
    assert_null(fx->st.api_token);
    assert_string_equal(cfg_source(fx->cfg, "name"), "default");
    assert_string_equal(cfg_source(fx->cfg, "nodef"), "unset");
    assert_null(cfg_source(fx->cfg, "nope"));
}

static const char file_all[] = "# every row from the file\n"
                               "name = fromfile\n"
                               "count = 10\n"
                               "flag = yes\n"
                               "listen = f1\n"
                               "listen = f2\n"
                               "timeout = 3s\n"
                               "size = 1m\n";

static void
test_file_overrides_default(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    write_file(fx, file_all);
    assert_int_equal(load(fx, &err, "--config", fx->path, NULL), CFG_RUN);
    assert_string_equal(fx->st.name, "fromfile");
    assert_int_equal(fx->st.count, 10);
    assert_true(fx->st.flag);
    assert_int_equal(fx->st.listen.n, 2);
    assert_string_equal(fx->st.listen.v[0], "f1");
    assert_string_equal(fx->st.listen.v[1], "f2");
    assert_int_equal(fx->st.timeout, 3000);
    assert_int_equal(fx->st.size, 1 << 20);
    assert_string_equal(cfg_source(fx->cfg, "count"), "file");
    assert_string_equal(cfg_file(fx->cfg), fx->path);
}

static void
test_env_overrides_file(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    write_file(fx, file_all);
    setenv("PARLEY_CONFIG", fx->path, 1);   /* file named by env instead of --config */
    setenv("PARLEY_NAME", "fromenv", 1);
    setenv("PARLEY_COUNT", "20", 1);
    setenv("PARLEY_FLAG", "off", 1);
    setenv("PARLEY_LISTEN", "e1, e2,e3", 1);
    setenv("PARLEY_TIMEOUT", "500ms", 1);
    setenv("PARLEY_SIZE", "2k", 1);
    assert_int_equal(load(fx, &err, NULL), CFG_RUN);
    assert_string_equal(fx->st.name, "fromenv");
    assert_int_equal(fx->st.count, 20);
    assert_false(fx->st.flag);
    assert_int_equal(fx->st.listen.n, 3);
    assert_string_equal(fx->st.listen.v[0], "e1");
    assert_string_equal(fx->st.listen.v[2], "e3");
    assert_int_equal(fx->st.timeout, 500);
    assert_int_equal(fx->st.size, 2048);
    assert_string_equal(cfg_source(fx->cfg, "listen"), "env");
}

static void
test_flag_overrides_env_and_file(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    write_file(fx, file_all);
    setenv("PARLEY_NAME", "fromenv", 1);
    setenv("PARLEY_COUNT", "20", 1);
    setenv("PARLEY_FLAG", "off", 1);
    setenv("PARLEY_LISTEN", "e1,e2", 1);
    setenv("PARLEY_TIMEOUT", "500ms", 1);
    setenv("PARLEY_SIZE", "2k", 1);
    assert_int_equal(load(fx, &err, "--config=", NULL), CFG_RUN);   /* empty: no file */
    assert_string_equal(fx->st.name, "fromenv");

    cfg_free(fx->cfg);
    fx->cfg = cfg_new("parley-test", "1");
    assert_int_equal(cfg_register(fx->cfg, "core", rows, NROWS, &fx->st), 0);
    assert_int_equal(load(fx, &err, "--config", fx->path, "--name", "fromflag", "--count=30",
                          "--flag", "--listen", "l1", "--timeout", "1m", "--size=3g", NULL),
                     CFG_RUN);
    assert_string_equal(fx->st.name, "fromflag");
    assert_int_equal(fx->st.count, 30);
    assert_true(fx->st.flag);
    assert_int_equal(fx->st.listen.n, 1);
    assert_string_equal(fx->st.listen.v[0], "l1");
    assert_int_equal(fx->st.timeout, 60000);
    assert_int_equal(fx->st.size, 3LL << 30);
    assert_string_equal(cfg_source(fx->cfg, "size"), "flag");
}

static void
test_bool_flag_forms(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    setenv("PARLEY_FLAG", "true", 1);
    assert_int_equal(load(fx, &err, "--no-flag", NULL), CFG_RUN);
    assert_false(fx->st.flag);
}

static void
test_list_flag_replaces_default_and_repeats(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    write_file(fx, "listen = x\n");
    assert_int_equal(load(fx, &err, "--config", fx->path, "--listen", "p", "--listen=q",
                          "--listen", "r", NULL),
                     CFG_RUN);
    assert_int_equal(fx->st.listen.n, 3);
    assert_string_equal(fx->st.listen.v[0], "p");
    assert_string_equal(fx->st.listen.v[1], "q");
    assert_string_equal(fx->st.listen.v[2], "r");
}

static void
test_list_file_replaces_default(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    write_file(fx, "listen = only\n");
    assert_int_equal(load(fx, &err, "--config", fx->path, NULL), CFG_RUN);
    assert_int_equal(fx->st.listen.n, 1);
    assert_string_equal(fx->st.listen.v[0], "only");
}

static void
test_duration_and_size_parsing(void **state)
{
    static const struct {
        const char *text;
        int rc;
        long long want;
    } dur[] = {
        {"500ms", 0, 500}, {"2s", 0, 2000},     {"5m", 0, 300000}, {"1h", 0, 3600000},
        {"1d", 0, 86400000}, {"250", 0, 250},   {" 3 s ", 0, 3000}, {"0x10", 0, 16},
        {"2x", -1, 0},     {"", -1, 0},         {"-1s", -1, 0},    {"s", -1, 0},
        {"99999999999999999999", -1, 0},        {"9223372036854775807d", -1, 0},
    }, size[] = {
        {"512", 0, 512}, {"64k", 0, 65536},      {"64KB", 0, 65536}, {"1m", 0, 1048576},
        {"1MiB", 0, 1048576}, {"2g", 0, 2147483648LL}, {"10b", 0, 10}, {"1t", 0, 1LL << 40},
        {"1q", -1, 0},  {"k", -1, 0},           {"-5k", -1, 0},
    };
    char why[256];
    long long v;

    for (size_t i = 0; i < sizeof dur / sizeof dur[0]; i++) {
        v = -7;
        int rc = cfg_parse_duration_ms(dur[i].text, &v, why, sizeof why);
        if (rc != dur[i].rc)
            fail_msg("duration '%s': rc %d, want %d", dur[i].text, rc, dur[i].rc);
        if (rc == 0 && v != dur[i].want)
            fail_msg("duration '%s': %lld, want %lld", dur[i].text, v, dur[i].want);
    }
    for (size_t i = 0; i < sizeof size / sizeof size[0]; i++) {
        v = -7;
        int rc = cfg_parse_size(size[i].text, &v, why, sizeof why);
        if (rc != size[i].rc)
            fail_msg("size '%s': rc %d, want %d", size[i].text, rc, size[i].rc);
        if (rc == 0 && v != size[i].want)
            fail_msg("size '%s': %lld, want %lld", size[i].text, v, size[i].want);
    }
    assert_int_equal(cfg_parse_duration_ms("2x", &v, why, sizeof why), -1);
    assert_string_equal(why, "'2x' is not a duration (e.g. 500ms, 2s, 5m)");
    bool b;
    assert_int_equal(cfg_parse_bool("maybe", &b, why, sizeof why), -1);
    assert_int_equal(cfg_parse_int("12abc", &v, why, sizeof why), -1);
    assert_string_equal(why, "'12abc' is not a number");
}

static void
test_bound_errors_name_the_source(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    assert_int_equal(load(fx, &err, "--count", "999", NULL), -1);
    assert_string_equal(err.msg, "--count: 999 is above the maximum 255");
}

static void
test_bound_error_from_env_and_duration(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    setenv("PARLEY_TIMEOUT", "50ms", 1);
    assert_int_equal(load(fx, &err, NULL), -1);
    assert_string_equal(err.msg, "PARLEY_TIMEOUT: 50ms is below the minimum 100ms");
}

static void
test_bound_error_from_file(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    write_file(fx, "\n\ncount = 0\n");
    assert_int_equal(load(fx, &err, "--config", fx->path, NULL), -1);
    char want[256];
    snprintf(want, sizeof want, "%s:3: count: 0 is below the minimum 1", fx->path);
    assert_string_equal(err.msg, want);
    assert_int_equal(err.line, 3);
}

/* A bad config file: each case gives the exact "file:line: message". */
static void
test_bad_config_file_messages(void **state)
{
    static const struct {
        const char *text;
        const char *msg;
        int line;
    } cases[] = {
        {"name = x\nlisen = y\n", "2: unknown setting 'lisen' (did you mean 'listen'?)", 2},
        {"zzzzzzzzzz = 1\n", "1: unknown setting 'zzzzzzzzzz'", 1},
        {"name = \"open\n", "1: unterminated string", 1},
        {"name \"x\"\n", "1: expected '=' after 'name', found '\"'", 1},
        {"name\n", "1: expected '=' after 'name', found end of line", 1},
        {"[core]\n[nosuch]\n", "2: unknown section [nosuch]", 2},
        {"[log]\nname = x\n", "2: setting 'name' belongs in section [core], not [log]", 2},
        {"name = a\n\nname = b\n", "3: duplicate setting 'name' (first set on line 1)", 3},
        {"name = \"bad \\q\"\n", "1: invalid escape '\\q'", 1},
        {"name = \"a\" b\n", "1: unexpected text after the value", 1},
        {"= 3\n", "1: expected a setting name, found '='", 1},
        {"[core\n", "1: expected ']', found end of line", 1},
        {"flag = maybe\n",
         "1: flag: 'maybe' is not a boolean (use true/false, yes/no, on/off, 1/0)", 1},
        {"name = \"\\x4\"\n", "1: \\x needs two hex digits", 1},
        {"count = 12 apples\n", "1: count: '12 apples' is not a number", 1},
        {"  @name = 1\n", "1: expected a setting name, found '@'", 1},
        {"name = 1 \n\x01\n", "2: expected a setting name, found byte 0x01", 2},
    };
    struct fixture *fx = *state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cfg_error err;
        struct settings st = {0};
        char want[512];
        struct cfg *cfg = cfg_new("t", "1");

        assert_int_equal(cfg_register(cfg, "core", rows, NROWS, &st), 0);
        assert_int_equal(cfg_register_log(cfg), 0);
        write_file(fx, cases[i].text);
        char *argv[] = {"t", "--config", fx->path, NULL};
        int rc = cfg_load(cfg, 3, argv, &err);
        snprintf(want, sizeof want, "%s:%s", fx->path, cases[i].msg);
        if (rc != -1 || strcmp(err.msg, want) != 0 || err.line != cases[i].line)
            fail_msg("case %zu: rc %d msg '%s' line %d, want '%s' line %d", i, rc, err.msg,
                     err.line, want, cases[i].line);
        cfg_free(cfg);
    }
}

static void
test_file_syntax_quotes_comments_sections(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    write_file(fx, "; leading comment\n"
                   "[core]\r\n"
                   "  name = \"tab\\there \\\"q\\\" #not-comment\\x41\"   # trailing comment\n"
                   "listen = sip:a#b   \n"
                   "listen = c ; d\n"
                   "api-token = s3cr3t\n"
                   "nodef =\n"
                   "[log]\n"
                   "log-level = debug\n");
    assert_int_equal(cfg_register_log(fx->cfg), 0);
    assert_int_equal(load(fx, &err, "--config", fx->path, NULL), CFG_RUN);
    assert_string_equal(fx->st.name, "tab\there \"q\" #not-commentA");
    assert_int_equal(fx->st.listen.n, 2);
    assert_string_equal(fx->st.listen.v[0], "sip:a#b");
    assert_string_equal(fx->st.listen.v[1], "c");
    assert_string_equal(fx->st.nodef, "");
    assert_int_equal(log_current_level, LOG_DEBUG);
    log_set_level(LOG_ERR);
}

static void
test_unknown_flag_and_arguments(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    assert_int_equal(load(fx, &err, "--lisen", "x", NULL), -1);
    assert_string_equal(err.msg, "unknown flag '--lisen' (did you mean '--listen'?)");
}

static void
test_flag_errors(void **state)
{
    static const struct {
        const char *args[4];
        const char *msg;
    } cases[] = {
        {{"--name", NULL}, "--name: missing value"},
        {{"positional", NULL}, "unexpected argument 'positional' (settings are given as --name value)"},
        {{"--flag=perhaps", NULL},
         "--flag: 'perhaps' is not a boolean (use true/false, yes/no, on/off, 1/0)"},
        {{"--no-flag=1", NULL}, "--no-flag takes no value"},
        {{"--no-name", NULL}, "--no-name: only boolean settings have a --no- form"},
        {{"--no-such", NULL}, "unknown flag '--no-such'"},
        {{"--size", "12q", NULL}, "--size: '12q' is not a size (e.g. 512, 64k, 1m)"},
        {{"--config", "/nonexistent/parley.conf", NULL},
         "/nonexistent/parley.conf: cannot open: No such file or directory"},
        {{"--", "x", NULL}, "unexpected argument 'x'"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cfg_error err;
        struct settings st = {0};
        struct cfg *cfg = cfg_new("t", "1");
        char *argv[6] = {"t"};
        int argc = 1;

        assert_int_equal(cfg_register(cfg, "core", rows, NROWS, &st), 0);
        for (int j = 0; cases[i].args[j]; j++)
            argv[argc++] = (char *)cases[i].args[j];
        int rc = cfg_load(cfg, argc, argv, &err);
        if (rc != -1 || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu: rc %d msg '%s', want '%s'", i, rc, err.msg, cases[i].msg);
        cfg_free(cfg);
    }
    (void)state;
}

static void
test_required_setting_missing(void **state)
{
    static const struct cfg_opt req_rows[] = {
        {.name = "domain", .type = CFG_STR, .required = true, .help = "SIP domain",
         .offset = 0},
    };
    char *domain = NULL;
    struct cfg_error err;
    struct cfg *cfg = cfg_new("t", "1");
    char *argv[] = {"t", NULL};

    assert_int_equal(cfg_register(cfg, "core", req_rows, 1, &domain), 0);
    assert_int_equal(cfg_load(cfg, 1, argv, &err), -1);
    assert_string_equal(err.msg, "missing required setting 'domain' (flag --domain, env "
                                 "PARLEY_DOMAIN or 'domain' in the config file)");
    cfg_free(cfg);
    (void)state;
}

static void
test_register_rejects_duplicates_and_bad_defaults(void **state)
{
    static const struct cfg_opt bad_def[] = {
        {.name = "other", .type = CFG_INT, .def = "ten", .offset = 0},
    };
    static const struct cfg_opt builtin[] = {
        {.name = "config", .type = CFG_STR, .offset = 0},
    };
    struct fixture *fx = *state;
    struct settings other = {0};
    long long x;

    assert_int_equal(cfg_register(fx->cfg, "more", rows, 1, &other), -1);   /* "name" again */
    assert_int_equal(cfg_register(fx->cfg, "more", bad_def, 1, &x), -1);
    assert_int_equal(cfg_register(fx->cfg, "more", builtin, 1, &x), -1);
    assert_int_equal(cfg_register(fx->cfg, "bad section", rows, 0, &x), -1);
}

static void
test_reload_applies_only_reloadable_rows(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;
    const char *const *names;
    size_t n;

    write_file(fx, "name = one\ncount = 5\ntimeout = 1s\nsize = 1k\n");
    assert_int_equal(load(fx, &err, "--config", fx->path, "--flag", NULL), CFG_RUN);
    assert_string_equal(fx->st.name, "one");

    /* name and timeout are reloadable, count and size are not; flag is pinned by --flag */
    write_file(fx, "name = two\ncount = 7\ntimeout = 4s\nsize = 1k\nflag = no\n");
    int rc = cfg_reload(fx->cfg, &err);
    assert_int_equal(rc, 2);
    assert_string_equal(fx->st.name, "two");
    assert_int_equal(fx->st.timeout, 4000);
    assert_int_equal(fx->st.count, 5);
    assert_true(fx->st.flag);
    names = cfg_reload_changed(fx->cfg, &n);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "name");
    assert_string_equal(names[1], "timeout");
    names = cfg_reload_ignored(fx->cfg, &n);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "count");

    /* env changes are picked up too */
    setenv("PARLEY_NAME", "three", 1);
    assert_int_equal(cfg_reload(fx->cfg, &err), 1);
    assert_string_equal(fx->st.name, "three");
    assert_string_equal(cfg_source(fx->cfg, "name"), "env");

    /* a broken file changes nothing */
    write_file(fx, "name = four\ntimeout = 1ms\n");
    assert_int_equal(cfg_reload(fx->cfg, &err), -1);
    char want[256];
    snprintf(want, sizeof want, "%s:2: timeout: 1ms is below the minimum 100ms", fx->path);
    assert_string_equal(err.msg, want);
    assert_string_equal(fx->st.name, "three");
    assert_int_equal(fx->st.timeout, 4000);
}

static int
reject_name_bad(struct cfg *cfg, void *arg, struct cfg_error *err)
{
    struct settings *st = arg;

    if (st->name && strcmp(st->name, "bad") == 0) {
        cfg_error_set(err, "name: 'bad' is not allowed");
        return -1;
    }
    return 0;
}

static void
test_check_failure_rolls_back_reload(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    assert_int_equal(cfg_add_check(fx->cfg, reject_name_bad, &fx->st), 0);
    write_file(fx, "name = good\ntimeout = 1s\n");
    assert_int_equal(load(fx, &err, "--config", fx->path, NULL), CFG_RUN);
    write_file(fx, "name = bad\ntimeout = 9s\n");
    assert_int_equal(cfg_reload(fx->cfg, &err), -1);
    assert_string_equal(err.msg, "name: 'bad' is not allowed");
    assert_string_equal(fx->st.name, "good");
    assert_int_equal(fx->st.timeout, 1000);
}

static void
test_log_rows_validate_level(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    assert_int_equal(cfg_register_log(fx->cfg), 0);
    assert_int_equal(load(fx, &err, "--log-level", "verbose", NULL), -1);
    assert_string_equal(err.msg, "log-level: 'verbose' is not one of err, warn, info, debug");
}

static void
test_help_markdown_lists_every_row(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;
    char needle[64];

    assert_int_equal(cfg_register_log(fx->cfg), 0);
    assert_int_equal(load(fx, &err, "--count", "bad", "--help-markdown", NULL), CFG_EXIT);
    const char *md = captured(fx);
    assert_non_null(strstr(md, "# parley-test configuration reference"));
    assert_non_null(strstr(md, "| Setting | Environment | Type | Default | Range |"));
    for (size_t i = 0; i < NROWS; i++) {
        snprintf(needle, sizeof needle, "| `--%s` |", rows[i].name);
        if (!strstr(md, needle))
            fail_msg("markdown lacks %s", needle);
    }
    assert_non_null(strstr(md, "| `--log-level` | `PARLEY_LOG_LEVEL` | string | `info` |"));
    assert_non_null(strstr(md, "| `--timeout` | `PARLEY_TIMEOUT` | duration | `2s` | 100ms..1m | yes | a timeout |"));
    assert_non_null(strstr(md, "how many \\| pipes"));
}

static void
test_help_and_version(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    assert_int_equal(load(fx, &err, "--help", NULL), CFG_EXIT);
    const char *h = captured(fx);
    assert_non_null(strstr(h, "Usage: parley-test"));
    for (size_t i = 0; i < NROWS; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "\n  --%s", rows[i].name);
        const char *p = strstr(h, needle);
        if (!p || (p[strlen(needle)] != ' ' && p[strlen(needle)] != '['))
            fail_msg("help lacks %s", needle + 1);
    }
    assert_non_null(strstr(h, "env PARLEY_TIMEOUT; default 2s; range 100ms..1m; reloadable"));
    assert_non_null(strstr(h, "\n  --flag[=BOOL]\n      a switch\n"));

    struct settings st = {0};
    struct cfg *cfg = cfg_new("prog", "9.9");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cfg_set_output(cfg, f);
    cfg_register(cfg, "core", rows, NROWS, &st);
    char *argv[] = {"prog", "--version", NULL};
    assert_int_equal(cfg_load(cfg, 2, argv, &err), CFG_EXIT);
    fclose(f);
    assert_string_equal(buf, "prog 9.9\n");
    free(buf);
    cfg_free(cfg);
}

static void
test_check_config(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;

    write_file(fx, "count = 9\n");
    assert_int_equal(load(fx, &err, "--config", fx->path, "--check-config", NULL), CFG_EXIT);
    assert_string_equal(captured(fx), "configuration ok\n");

    struct settings st = {0};
    struct cfg *cfg = cfg_new("prog", "1");
    cfg_register(cfg, "core", rows, NROWS, &st);
    write_file(fx, "count = 900\n");
    char *argv[] = {"prog", "--check-config", "--config", fx->path, NULL};
    assert_int_equal(cfg_load(cfg, 4, argv, &err), -1);
    assert_non_null(strstr(err.msg, ":1: count: 900 is above the maximum 255"));
    cfg_free(cfg);
}

static void
test_dump_json_hides_secrets(void **state)
{
    struct fixture *fx = *state;
    struct cfg_error err;
    struct evbuffer *out = evbuffer_new();

    setenv("PARLEY_API_TOKEN", "hunter2", 1);
    assert_int_equal(load(fx, &err, "--name", "a\"b", NULL), CFG_RUN);
    assert_int_equal(cfg_dump_json(fx->cfg, out), 0);
    evbuffer_add(out, "", 1);
    const char *json = (const char *)evbuffer_pullup(out, -1);
    assert_null(strstr(json, "hunter2"));
    assert_non_null(strstr(json, "\"api-token\":{\"section\":\"core\",\"type\":\"string\","
                                 "\"value\":\"(set)\",\"source\":\"env\",\"reloadable\":false}"));
    assert_non_null(strstr(json, "\"name\":{\"section\":\"core\",\"type\":\"string\","
                                 "\"value\":\"a\\\"b\",\"source\":\"flag\",\"reloadable\":true}"));
    assert_non_null(strstr(json, "\"listen\":{\"section\":\"core\",\"type\":\"list\","
                                 "\"value\":[\"a\",\"b\"],"));
    assert_non_null(strstr(json, "\"timeout\":{\"section\":\"core\",\"type\":\"duration_ms\","
                                 "\"value\":2000,"));
    assert_non_null(strstr(json, "\"nodef\":{\"section\":\"core\",\"type\":\"string\","
                                 "\"value\":null,\"source\":\"unset\""));
    assert_int_equal(json[0], '{');
    evbuffer_free(out);
}

/* The parser never crashes on junk: every prefix of a tricky file gives 0 or an error. */
static int
count_cb(void *arg, const char *section, const char *key, const char *value, int line, int col,
         struct cfg_error *err)
{
    (*(int *)arg)++;
    return 0;
}

static void
test_ini_parser_survives_truncation(void **state)
{
    static const char text[] = "[a]\nk = \"x\\x41\\n\" # c\nk2=bare value ; c\n[b ]\nk3 = \"\"\n";
    struct cfg_error err;
    int n;

    for (size_t len = 0; len <= sizeof text - 1; len++) {
        n = 0;
        (void)cfg_ini_parse("t", text, len, count_cb, &n, &err);
    }
    n = 0;
    assert_int_equal(cfg_ini_parse("t", text, sizeof text - 1, count_cb, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_int_equal(cfg_ini_parse("t", "k = a\0b", 7, count_cb, &n, &err), -1);
    assert_string_equal(err.msg, "t:1: NUL byte in file");
    (void)state;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_defaults_fill_settings),
        T(test_file_overrides_default),
        T(test_env_overrides_file),
        T(test_flag_overrides_env_and_file),
        T(test_bool_flag_forms),
        T(test_list_flag_replaces_default_and_repeats),
        T(test_list_file_replaces_default),
        T(test_duration_and_size_parsing),
        T(test_bound_errors_name_the_source),
        T(test_bound_error_from_env_and_duration),
        T(test_bound_error_from_file),
        T(test_bad_config_file_messages),
        T(test_file_syntax_quotes_comments_sections),
        T(test_unknown_flag_and_arguments),
        T(test_flag_errors),
        T(test_required_setting_missing),
        T(test_register_rejects_duplicates_and_bad_defaults),
        T(test_reload_applies_only_reloadable_rows),
        T(test_check_failure_rolls_back_reload),
        T(test_log_rows_validate_level),
        T(test_help_markdown_lists_every_row),
        T(test_help_and_version),
        T(test_check_config),
        T(test_dump_json_hides_secrets),
        T(test_ini_parser_survives_truncation),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
