/*
 * Unit tests of shared/apps: manifest parsing (good and bad files, exact
 * file:line:col), chain files, and the chain walk (filters, strict routing,
 * pass-through, runtime errors, responses in reverse order) against a mock host.
 * The shipped manifests (routing.am and the examples) must load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include "apps/app_chain.h"
#include "apps/app_manifest.h"

/* ------------------------------------------------------------------ helpers */

static struct app_manifest *
parse(const char *text, struct app_err *err)
{
    memset(err, 0, sizeof *err);
    return app_manifest_parse(text, strlen(text), "t.am", err);
}

static void
expect_error(const char *text, int line, int col, const char *needle)
{
    struct app_err err;
    char buf[600];
    struct app_manifest *m = parse(text, &err);

    if (m != NULL)
        fail_msg("parsed, expected an error at %d:%d (%s)", line, col, needle);
    app_err_str(&err, buf, sizeof buf);
    if (err.line != line || err.col != col || strstr(err.msg, needle) == NULL)
        fail_msg("got '%s', expected t.am:%d:%d containing '%s'", buf, line, col, needle);
}

/* A chain from manifest texts; fails the test on an error. */
static struct app_chain *
chain_of(const char *const *texts, size_t n)
{
    struct app_chain *c = app_chain_new();
    char file[32];

    assert_non_null(c);
    for (size_t i = 0; i < n; i++) {
        struct app_err err;
        struct app_manifest *m;
        char buf[600];
        snprintf(file, sizeof file, "app%zu.am", i);
        m = app_manifest_parse(texts[i], strlen(texts[i]), file, &err);
        if (m == NULL)
            fail_msg("%s", app_err_str(&err, buf, sizeof buf));
        if (app_chain_add(c, m, &err) != 0)
            fail_msg("%s", app_err_str(&err, buf, sizeof buf));
    }
    return c;
}

/* The mock message: a request (method, R-URI, headers) or a response (code). */
struct mock {
    bool request;
    const char *method;
    const char *ruri;
    int code;
    const char *hdr_name[8], *hdr_val[8];
    int nhdr;
    char log[2048];           /* "app:text|" per Log() and per action */
    const char *app;
};

static void __attribute__((format(printf, 2, 3)))
mock_note(struct mock *m, const char *fmt, ...)
{
    va_list ap;
    size_t n = strlen(m->log);
    va_start(ap, fmt);
    vsnprintf(m->log + n, sizeof m->log - n, fmt, ap);
    va_end(ap);
}

static bool m_is_request(void *arg) { return ((struct mock *)arg)->request; }
static const char *m_method(void *arg) { struct mock *m = arg; return m->request ? m->method : NULL; }
static const char *m_ruri(void *arg) { struct mock *m = arg; return m->request ? m->ruri : NULL; }
static int m_status(void *arg) { return ((struct mock *)arg)->code; }

static const char *
m_header(void *arg, const char *name, size_t idx)
{
    struct mock *m = arg;
    size_t k = 0;
    for (int i = 0; i < m->nhdr; i++) {
        if (strcasecmp(m->hdr_name[i], name) == 0 && k++ == idx)
            return m->hdr_val[i];
    }
    return NULL;
}

static int
m_proxy(void *arg, const char *uri)
{
    struct mock *m = arg;
    mock_note(m, "%s:proxy(%s)|", m->app, uri ? uri : "-");
    return 0;
}

static int
m_respond(void *arg, int code, const char *reason, const char *h)
{
    struct mock *m = arg;
    mock_note(m, "%s:respond(%d)|", m->app, code);
    return 0;
}

static int
m_add_header(void *arg, const char *name, const char *value)
{
    struct mock *m = arg;
    mock_note(m, "%s:add(%s)|", m->app, name);
    return 0;
}

static void
m_log(void *arg, int level, const char *text)
{
    struct mock *m = arg;
    mock_note(m, "%s:%s|", m->app, text);
}

static void
m_current(void *arg, const char *app)
{
    ((struct mock *)arg)->app = app;
}

static void
mock_io(struct mock *m, struct scr_host *h, struct app_chain_io *io)
{
    memset(h, 0, sizeof *h);
    h->is_request = m_is_request;
    h->method = m_method;
    h->request_uri = m_ruri;
    h->status_code = m_status;
    h->header = m_header;
    h->proxy_request = m_proxy;
    h->respond = m_respond;
    h->add_header = m_add_header;
    h->log = m_log;
    h->arg = m;
    io->host = h;
    io->current = m_current;
}

static void
mock_request(struct mock *m, const char *method)
{
    memset(m, 0, sizeof *m);
    m->request = true;
    m->method = method;
    m->ruri = "sip:bob@example.com";
}

/* ------------------------------------------------------------------ manifests */

static void
test_manifest_parses_every_key(void **state)
{
    struct app_err err;
    struct app_manifest *m = parse("# comment\n"
                                   "name: my-app.v2\n"
                                   "strict-route: true\n"
                                   "critical: yes\n"
                                   "request-filter: invite, MESSAGE ,OPTIONS\n"
                                   "response-filter: 1xx, 486\n"
                                   "max-steps: 5000\n"
                                   "param.vm: sip:vm@example.com\n"
                                   "---\n"
                                   "Log(\"info\", vm);\n",
                                   &err);

    assert_non_null(m);
    assert_string_equal(m->name, "my-app.v2");
    assert_true(m->strict_route);
    assert_true(m->critical);
    assert_false(m->all_methods);
    assert_int_equal(m->nmethods, 3);
    assert_true(app_manifest_wants_request(m, "INVITE"));
    assert_true(app_manifest_wants_request(m, "message"));
    assert_false(app_manifest_wants_request(m, "BYE"));
    assert_true(app_manifest_wants_response(m, 180));
    assert_true(app_manifest_wants_response(m, 100));
    assert_true(app_manifest_wants_response(m, 486));
    assert_false(app_manifest_wants_response(m, 200));
    assert_false(app_manifest_wants_response(m, 487));
    assert_int_equal(m->max_steps, 5000);
    assert_int_equal(m->script_line, 10);
    /* header lines blanked, the param rewritten at its columns: line numbers are the file's */
    assert_string_equal(m->script, "\n\n\n\n\n\n\n      vm= \"sip:vm@example.com\";\n\nLog(\"info\", vm);\n");
    app_manifest_free(m);
}

static void
test_manifest_defaults_and_wildcards(void **state)
{
    struct app_err err;
    struct app_manifest *m = parse("name: a\r\nrequest-filter: *\r\n---\r\n", &err);

    assert_non_null(m);
    assert_false(m->strict_route);
    assert_false(m->critical);
    assert_true(m->all_methods);
    assert_true(app_manifest_wants_request(m, "FOO"));
    assert_false(m->any_response);
    assert_false(app_manifest_wants_response(m, 200));
    app_manifest_free(m);
    m = parse("name: a\nrequest-filter: INVITE\nresponse-filter: *\n---\n", &err);
    assert_non_null(m);
    assert_true(app_manifest_wants_response(m, 699));
    assert_false(app_manifest_wants_response(m, 700));
    app_manifest_free(m);
    m = parse("name: a\nrequest-filter: INVITE\nresponse-filter: none\n---\n", &err);
    assert_non_null(m);
    assert_false(m->any_response);
    app_manifest_free(m);
}

static void
test_manifest_errors_name_line_and_column(void **state)
{
    expect_error("name: a\nrequest-filter: INVITE\n", 3, 1, "missing the '---'");
    expect_error("name: a\n---\n", 2, 1, "no 'request-filter'");
    expect_error("request-filter: INVITE\n---\n", 2, 1, "no 'name'");
    expect_error("name: a\n  colour: red\n---\n", 2, 3, "unknown key 'colour'");
    expect_error("name: a\nname: b\n---\n", 2, 1, "duplicate key 'name' (first on line 1)");
    expect_error("name a\n---\n", 1, 6, "expected ':' after 'name'");
    expect_error("name: a\n: x\n---\n", 2, 1, "expected 'key: value'");
    expect_error("name: a\nstrict-route: maybe\n---\n", 2, 15, "expected true or false");
    expect_error("name: a b\n---\n", 1, 8, "name: only letters");
    expect_error("name: a\nrequest-filter: INVITE, MES(SAGE\n---\n", 2, 28, "invalid character");
    expect_error("name: a\nrequest-filter: INVITE,,BYE\n---\n", 2, 24, "empty item");
    expect_error("name: a\nrequest-filter: INVITE,\n---\n", 2, 23, "trailing comma");
    expect_error("name: a\nrequest-filter: INVITE\nresponse-filter: 2xx, 7xx\n---\n", 3, 23, "'7xx' is not");
    expect_error("name: a\nrequest-filter: INVITE\nresponse-filter: 200, none\n---\n", 3, 23, "'none' cannot");
    expect_error("name: a\nrequest-filter: INVITE\nmax-steps: 0\n---\n", 3, 12, "outside 1..10000000");
    expect_error("name: a\nrequest-filter: INVITE\nmax-steps: 12x\n---\n", 3, 14, "expected a number");
    expect_error("name: a\nrequest-filter: INVITE\nparam.1x: 3\n---\n", 3, 7, "script identifier");
    expect_error("name: a\nrequest-filter: INVITE\nparam.null: 3\n---\n", 3, 7, "reserved");
    expect_error("name: a\nrequest-filter: INVITE\nparam.x:\n---\n", 3, 9, "empty value");
    expect_error("name: a\x01\n---\n", 1, 8, "control character");
}

static void
test_manifest_script_errors_point_into_the_file(void **state)
{
    struct app_chain *c = app_chain_new();
    struct app_err err;
    const char *text = "name: a\n"
                       "request-filter: INVITE\n"
                       "---\n"
                       "x = 1;\n"
                       "   Proxyrequest();\n";
    struct app_manifest *m = app_manifest_parse(text, strlen(text), "dir/a.am", &err);
    char buf[600];

    assert_non_null(m);
    assert_int_equal(app_chain_add(c, m, &err), -1);   /* takes <m> either way */
    app_err_str(&err, buf, sizeof buf);
    assert_string_equal(err.file, "dir/a.am");
    assert_int_equal(err.line, 5);
    assert_int_equal(err.col, 4);
    assert_non_null(strstr(err.msg, "Proxyrequest"));
    assert_int_equal(strncmp(buf, "dir/a.am:5:4: ", 14), 0);
    /* a quoted param value is a script literal: a bad escape is reported at its column */
    text = "name: b\nrequest-filter: *\nparam.s: \"a\\qb\"\n---\n";
    m = app_manifest_parse(text, strlen(text), "b.am", &err);
    assert_non_null(m);
    assert_int_equal(app_chain_add(c, m, &err), -1);
    assert_int_equal(err.line, 3);
    assert_int_equal(err.col, 12);   /* the backslash */
    app_chain_unref(c);
}

static void
test_manifest_rejects_huge_input(void **state)
{
    size_t n = APP_MAX_MANIFEST + 10;
    char *big = malloc(n);
    struct app_err err;

    assert_non_null(big);
    memset(big, '\n', n);
    assert_null(app_manifest_parse(big, n, "big.am", &err));
    assert_non_null(strstr(err.msg, "larger than"));
    free(big);
    assert_null(app_manifest_load("/nonexistent/x.am", &err));
    assert_non_null(strstr(err.msg, "cannot open"));
}

/* ------------------------------------------------------------------ chain files */

static char tmpdir[64];

static void
write_file(const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
test_chain_file_loads_in_order_and_reports_errors(void **state)
{
    struct app_chain *c;
    struct app_err err;
    char path[256], buf[600];

    snprintf(tmpdir, sizeof tmpdir, "/tmp/parley-apps-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    write_file("a.am", "name: a\nrequest-filter: *\n---\n");
    write_file("b.am", "name: b\nrequest-filter: *\n---\nif (x) {}\n");
    write_file("c.am", "name: a\nrequest-filter: *\n---\n");
    write_file("ok.conf", "# comment\n\n  a.am  \n");
    write_file("missing.conf", "a.am\n  nope.am\n");
    write_file("bad.conf", "a.am\nb.am\n");
    write_file("dup.conf", "a.am\nc.am\n");

    snprintf(path, sizeof path, "%s/ok.conf", tmpdir);
    c = app_chain_load(path, &err);
    assert_non_null(c);
    assert_int_equal(app_chain_count(c), 1);
    assert_string_equal(app_chain_manifest(c, 0)->name, "a");
    app_chain_unref(c);

    snprintf(path, sizeof path, "%s/missing.conf", tmpdir);
    assert_null(app_chain_load(path, &err));
    assert_int_equal(err.line, 2);
    assert_int_equal(err.col, 3);
    assert_non_null(strstr(err.msg, "nope.am: cannot open"));

    snprintf(path, sizeof path, "%s/bad.conf", tmpdir);
    assert_null(app_chain_load(path, &err));
    app_err_str(&err, buf, sizeof buf);
    assert_non_null(strstr(buf, "/b.am:4:5: "));   /* the script's own line:col */

    snprintf(path, sizeof path, "%s/dup.conf", tmpdir);
    assert_null(app_chain_load(path, &err));
    assert_non_null(strstr(err.msg, "already in the chain"));

    assert_null(app_chain_load("/nonexistent/chain.conf", &err));
    assert_non_null(strstr(err.msg, "cannot open the chain file"));
    for (const char *f = "a.am\0b.am\0c.am\0ok.conf\0missing.conf\0bad.conf\0dup.conf\0"; *f; f += strlen(f) + 1) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, f);
        unlink(path);
    }
    rmdir(tmpdir);
}

/* The pool order (`parleyctl app order`): named apps first, in that order; the rest follow. */
static void
test_chain_reorder_puts_named_apps_first(void **state)
{
    static const char *const order[] = {"c", "nope", "a"};
    struct app_chain *c = app_chain_new();
    struct app_err err;
    const char *names[] = {"a", "b", "c", "d"};

    for (size_t i = 0; i < 4; i++) {
        char text[128];
        struct app_manifest *m;
        snprintf(text, sizeof text, "name: %s\nrequest-filter: *\nresponse-filter: %s\n---\n", names[i],
                 i == 0 ? "2xx" : "none");
        m = app_manifest_parse(text, strlen(text), "t.am", &err);
        assert_non_null(m);
        assert_int_equal(app_chain_add(c, m, &err), 0);
    }
    assert_int_equal(app_chain_reorder(c, order, 3), 0);
    assert_string_equal(app_chain_manifest(c, 0)->name, "c");
    assert_string_equal(app_chain_manifest(c, 1)->name, "a");
    assert_string_equal(app_chain_manifest(c, 2)->name, "b");
    assert_string_equal(app_chain_manifest(c, 3)->name, "d");
    assert_true(app_chain_seen_wants_responses(c, 1u << 1));    /* a's response filter moved along */
    assert_false(app_chain_seen_wants_responses(c, 1u << 0));
    assert_int_equal(app_chain_reorder(c, NULL, 0), 0);         /* no order: unchanged */
    assert_string_equal(app_chain_manifest(c, 0)->name, "c");
    app_chain_ref(c);                                            /* shared: refused */
    assert_int_equal(app_chain_reorder(c, order + 2, 1), -1);
    assert_string_equal(app_chain_manifest(c, 0)->name, "c");
    app_chain_unref(c);
    app_chain_unref(c);
}

static void
test_shipped_manifests_load(void **state)
{
    static const char *const files[] = {"routing.am", "examples/content_filter.am", "examples/after_hours.am",
                                        "examples/logger.am"};
    struct app_err err;
    char path[512], buf[600];
    struct app_chain *c;

    snprintf(path, sizeof path, "%s/chain.conf", APPS_DIR);
    c = app_chain_load(path, &err);
    if (c == NULL)
        fail_msg("%s", app_err_str(&err, buf, sizeof buf));
    assert_string_equal(app_chain_manifest(c, app_chain_count(c) - 1)->name, "routing");
    app_chain_unref(c);
    c = app_chain_new();
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct app_manifest *m;
        snprintf(path, sizeof path, "%s/%s", APPS_DIR, files[i]);
        m = app_manifest_load(path, &err);
        if (m == NULL || app_chain_add(c, m, &err) != 0)
            fail_msg("%s", app_err_str(&err, buf, sizeof buf));
    }
    app_chain_unref(c);
}

/* ------------------------------------------------------------------ chain walk */

static void
test_chain_passes_until_an_app_acts(void **state)
{
    const char *apps[] = {
        "name: first\nrequest-filter: *\n---\nLog(\"info\", \"saw \", sipRequest.Method);\n",
        "name: invites\nrequest-filter: INVITE\n---\nProxyRequest(\"sip:x@h\");\n",
        "name: last\nrequest-filter: *\n---\nRespond(404, \"Nope\");\n",
    };
    struct app_chain *c = chain_of(apps, 3);
    struct mock m;
    struct scr_host h;
    struct app_chain_io io;
    struct app_chain_run run;

    mock_request(&m, "INVITE");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(c, "INVITE", false, &io, &run), SCR_PROXIED);
    assert_int_equal(run.by, 1);
    assert_int_equal(run.seen, 0x3);
    assert_string_equal(m.log, "first:saw INVITE|invites:proxy(sip:x@h)|");

    mock_request(&m, "MESSAGE");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(c, "MESSAGE", false, &io, &run), SCR_RESPONDED);
    assert_int_equal(run.by, 2);
    assert_int_equal(run.seen, 0x5);   /* the INVITE-only app was skipped */
    assert_string_equal(m.log, "first:saw MESSAGE|last:respond(404)|");
    assert_int_equal(app_chain_stats(c, 0)->passed, 2);
    assert_int_equal(app_chain_stats(c, 1)->proxied, 1);
    assert_int_equal(app_chain_stats(c, 2)->answered, 1);
    app_chain_unref(c);
}

static void
test_chain_nobody_acts_passes(void **state)
{
    const char *apps[] = {"name: a\nrequest-filter: *\n---\nAddHeader(\"X-A\", \"1\");\n",
                          "name: b\nrequest-filter: *\n---\nif (sipRequest.Method == \"BYE\") { Respond(403, \"x\"); }\n"};
    struct app_chain *c = chain_of(apps, 2);
    struct mock m;
    struct scr_host h;
    struct app_chain_io io;
    struct app_chain_run run;

    mock_request(&m, "OPTIONS");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(c, "OPTIONS", false, &io, &run), SCR_PASS);
    assert_int_equal(run.by, -1);
    assert_int_equal(run.seen, 0x3);
    assert_string_equal(m.log, "a:add(X-A)|");
    app_chain_unref(c);
}

static void
test_chain_strict_routed_requests_reach_strict_apps_only(void **state)
{
    const char *apps[] = {
        "name: logger\nstrict-route: true\nrequest-filter: *\n---\nLog(\"info\", \"log\");\n",
        "name: routing\nstrict-route: false\nrequest-filter: *\n---\nProxyRequest();\n",
    };
    struct app_chain *c = chain_of(apps, 2);
    struct mock m;
    struct scr_host h;
    struct app_chain_io io;
    struct app_chain_run run;

    mock_request(&m, "BYE");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(c, "BYE", true, &io, &run), SCR_PASS);
    assert_int_equal(run.seen, 0x1);
    assert_string_equal(m.log, "logger:log|");

    mock_request(&m, "INVITE");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(c, "INVITE", false, &io, &run), SCR_PROXIED);
    assert_string_equal(m.log, "logger:log|routing:proxy(-)|");
    app_chain_unref(c);
}

static void
test_chain_runtime_error_passes_to_next_app(void **state)
{
    const char *apps[] = {
        "name: broken\nrequest-filter: *\n---\nx = 1 / 0;\nRespond(500, \"never\");\n",
        "name: after-act\nrequest-filter: MESSAGE\n---\nProxyRequest(\"sip:a@b\");\nx = 1 / 0;\n",
        "name: next\nrequest-filter: *\n---\nRespond(486, \"Busy\");\n",
    };
    struct app_chain *c = chain_of(apps, 3);
    struct mock m;
    struct scr_host h;
    struct app_chain_io io;
    struct app_chain_run run;

    mock_request(&m, "INVITE");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(c, "INVITE", false, &io, &run), SCR_RESPONDED);
    assert_int_equal(run.errors, 1);
    assert_int_equal(run.by, 2);
    assert_string_equal(m.log, "next:respond(486)|");
    assert_int_equal(app_chain_stats(c, 0)->errors, 1);

    /* an action taken before the error stands and ends the walk */
    mock_request(&m, "MESSAGE");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(c, "MESSAGE", false, &io, &run), SCR_PROXIED);
    assert_int_equal(run.by, 1);
    assert_int_equal(run.errors, 2);
    assert_string_equal(m.log, "after-act:proxy(sip:a@b)|");
    app_chain_unref(c);
}

static void
test_chain_forks_with_repeated_proxy_request(void **state)
{
    const char *apps[] = {"name: fork\nrequest-filter: *\n---\n"
                          "foreach (c in Split(\"sip:a@x,sip:b@y\", \",\")) { ProxyRequest(c); }\n"};
    struct app_chain *c = chain_of(apps, 1);
    struct mock m;
    struct scr_host h;
    struct app_chain_io io;
    struct app_chain_run run;

    mock_request(&m, "INVITE");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(c, "INVITE", false, &io, &run), SCR_PROXIED);
    assert_int_equal(run.errors, 0);
    assert_string_equal(m.log, "fork:proxy(sip:a@x)|fork:proxy(sip:b@y)|");
    app_chain_unref(c);
}

static void
test_chain_responses_go_back_in_reverse_order(void **state)
{
    const char *apps[] = {
        "name: a\nrequest-filter: *\nresponse-filter: *\n---\n"
        "if (sipResponse) { Log(\"info\", \"a saw \", sipResponse.StatusCode); }\n",
        "name: b\nrequest-filter: *\nresponse-filter: 486\n---\n"
        "if (sipResponse) { Log(\"info\", \"b saw \", sipResponse.StatusCode); }\n",
        "name: c\nrequest-filter: INVITE\nresponse-filter: 4xx\n---\n"
        "if (sipResponse) { Log(\"info\", \"c saw \", sipResponse.StatusCode); }\n",
        "name: d\nrequest-filter: *\n---\nif (sipRequest) { ProxyRequest(); }\n",
    };
    struct app_chain *c = chain_of(apps, 4);
    struct mock m;
    struct scr_host h;
    struct app_chain_io io;
    struct app_chain_run run;

    assert_true(app_chain_wants_responses(c));
    mock_request(&m, "MESSAGE");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(c, "MESSAGE", false, &io, &run), SCR_PROXIED);
    assert_int_equal(run.seen, 0xb);   /* c skipped: INVITE only */
    assert_true(app_chain_seen_wants_responses(c, run.seen));
    assert_false(app_chain_seen_wants_responses(c, 0x8));

    memset(&m, 0, sizeof m);
    m.code = 486;
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_response(c, run.seen, 486, &io), 2);
    assert_string_equal(m.log, "b:b saw 486|a:a saw 486|");

    memset(&m, 0, sizeof m);
    m.code = 200;
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_response(c, run.seen, 200, &io), 1);
    assert_string_equal(m.log, "a:a saw 200|");

    memset(&m, 0, sizeof m);
    m.code = 480;
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_response(c, 0xf, 480, &io), 2);   /* c and a, last first */
    assert_string_equal(m.log, "c:c saw 480|a:a saw 480|");
    app_chain_unref(c);
}

static void
test_chain_refcount_keeps_old_chain_alive(void **state)
{
    const char *apps[] = {"name: a\nrequest-filter: *\n---\nProxyRequest();\n"};
    struct app_chain *old = chain_of(apps, 1);
    struct mock m;
    struct scr_host h;
    struct app_chain_io io;
    struct app_chain_run run;

    app_chain_ref(old);          /* a request in flight */
    app_chain_unref(old);        /* the server swapped in a new chain */
    mock_request(&m, "INVITE");
    mock_io(&m, &h, &io);
    assert_int_equal(app_chain_request(old, "INVITE", false, &io, &run), SCR_PROXIED);
    app_chain_unref(old);        /* the request finished: freed (checked under ASan) */
    app_chain_unref(NULL);
}

/* The routing script itself, against endpoints served by the mock. */
struct ep_mock {
    struct mock m;
    struct scr_endpoint eps[4];
    int neps;
    char actions[512];
};

static int
e_endpoints(void *arg, const char *who, scr_endpoint_cb *cb, void *cb_arg)
{
    struct ep_mock *e = arg;
    if (strcmp(who, "bob@example.com") != 0)
        return 0;
    for (int i = 0; i < e->neps; i++)
        if (cb(cb_arg, &e->eps[i]) != 0)
            break;
    return 0;
}

static int64_t e_now(void *arg) { return 1000000; }

static int
e_proxy(void *arg, const char *uri)
{
    struct ep_mock *e = arg;
    size_t n = strlen(e->actions);
    snprintf(e->actions + n, sizeof e->actions - n, "proxy(%s)", uri ? uri : "-");
    return 0;
}

static int
e_route(void *arg, const char *uri)
{
    struct ep_mock *e = arg;
    size_t n = strlen(e->actions);
    snprintf(e->actions + n, sizeof e->actions - n, "route(%s)", uri);
    return 0;
}

static int
e_epid(void *arg, const char *epid)
{
    struct ep_mock *e = arg;
    size_t n = strlen(e->actions);
    snprintf(e->actions + n, sizeof e->actions - n, "epid(%s)", epid);
    return 0;
}

static const char *
e_header(void *arg, const char *name, size_t idx)
{
    struct ep_mock *e = arg;
    return m_header(&e->m, name, idx);
}

static void
run_routing(struct ep_mock *e, const char *to)
{
    char path[512], buf[600];
    struct app_err err;
    struct app_chain *c = app_chain_new();
    struct app_manifest *mf;
    struct scr_host h;
    struct app_chain_io io = {&h, NULL};
    struct app_chain_run run;

    snprintf(path, sizeof path, "%s/routing.am", APPS_DIR);
    mf = app_manifest_load(path, &err);
    if (mf == NULL || app_chain_add(c, mf, &err) != 0)
        fail_msg("%s", app_err_str(&err, buf, sizeof buf));
    e->m.request = true;
    e->m.method = "INVITE";
    e->m.ruri = "sip:bob@example.com";
    e->m.hdr_name[0] = "To";
    e->m.hdr_val[0] = to;
    e->m.nhdr = 1;
    memset(&h, 0, sizeof h);
    h.is_request = m_is_request;
    h.method = m_method;
    h.request_uri = m_ruri;
    h.header = e_header;
    h.endpoints = e_endpoints;
    h.now = e_now;
    h.proxy_request = e_proxy;
    h.add_route = e_route;
    h.set_to_epid = e_epid;
    h.arg = e;
    app_chain_request(c, "INVITE", false, &io, &run);
    assert_int_equal(run.errors, 0);
    app_chain_unref(c);
}

static void
test_routing_picks_most_available_then_active(void **state)
{
    struct ep_mock e;

    memset(&e, 0, sizeof e);
    e.eps[0] = (struct scr_endpoint){"e1", "sip:bob@10.0.0.1", "unknown", NULL, 3000, 999000};
    e.eps[1] = (struct scr_endpoint){"e2", "sip:bob@10.0.0.2", "unknown", "sip:edge;lr", 6000, 999000};
    e.eps[2] = (struct scr_endpoint){"e3", "sip:bob@10.0.0.3", "away", NULL, 6000, 999000};
    e.neps = 3;
    run_routing(&e, "<sip:bob@example.com>");
    assert_string_equal(e.actions, "route(sip:edge;lr)epid(e2)proxy(sip:bob@10.0.0.2)");

    /* same availability: present beats busy beats away */
    memset(&e, 0, sizeof e);
    e.eps[0] = (struct scr_endpoint){"e1", "sip:bob@10.0.0.1", "away", NULL, 3000, 999000};
    e.eps[1] = (struct scr_endpoint){"e2", "sip:bob@10.0.0.2", "busy", NULL, 3000, 999000};
    e.neps = 2;
    run_routing(&e, "<sip:bob@example.com>");
    assert_string_equal(e.actions, "epid(e2)proxy(sip:bob@10.0.0.2)");

    /* same availability and activity: the one present more recently (by 300 s windows) */
    memset(&e, 0, sizeof e);
    e.eps[0] = (struct scr_endpoint){"e1", "sip:bob@10.0.0.1", "unknown", NULL, 3000, 1000000 - 4000};
    e.eps[1] = (struct scr_endpoint){"e2", "sip:bob@10.0.0.2", "unknown", NULL, 3000, 1000000 - 10};
    e.neps = 2;
    run_routing(&e, "<sip:bob@example.com>");
    assert_string_equal(e.actions, "epid(e2)proxy(sip:bob@10.0.0.2)");
}

static void
test_routing_forks_on_a_tie_and_passes_otherwise(void **state)
{
    struct ep_mock e;

    memset(&e, 0, sizeof e);
    e.eps[0] = (struct scr_endpoint){"e1", "sip:bob@10.0.0.1", "unknown", NULL, 3000, 999990};
    e.eps[1] = (struct scr_endpoint){"e2", "sip:bob@10.0.0.2", "unknown", NULL, 3000, 999995};
    e.neps = 2;
    run_routing(&e, "<sip:bob@example.com>");
    assert_string_equal(e.actions, "proxy(sip:bob@10.0.0.1)proxy(sip:bob@10.0.0.2)");

    run_routing(&e, "<sip:bob@example.com>;epid=e1");   /* pinned: left to the server */
    assert_string_equal(e.actions, "proxy(sip:bob@10.0.0.1)proxy(sip:bob@10.0.0.2)");
    memset(&e, 0, sizeof e);
    run_routing(&e, "<sip:bob@example.com>");            /* not registered */
    assert_string_equal(e.actions, "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_parses_every_key),
        cmocka_unit_test(test_manifest_defaults_and_wildcards),
        cmocka_unit_test(test_manifest_errors_name_line_and_column),
        cmocka_unit_test(test_manifest_script_errors_point_into_the_file),
        cmocka_unit_test(test_manifest_rejects_huge_input),
        cmocka_unit_test(test_chain_file_loads_in_order_and_reports_errors),
        cmocka_unit_test(test_chain_reorder_puts_named_apps_first),
        cmocka_unit_test(test_shipped_manifests_load),
        cmocka_unit_test(test_chain_passes_until_an_app_acts),
        cmocka_unit_test(test_chain_nobody_acts_passes),
        cmocka_unit_test(test_chain_strict_routed_requests_reach_strict_apps_only),
        cmocka_unit_test(test_chain_runtime_error_passes_to_next_app),
        cmocka_unit_test(test_chain_forks_with_repeated_proxy_request),
        cmocka_unit_test(test_chain_responses_go_back_in_reverse_order),
        cmocka_unit_test(test_chain_refcount_keeps_old_chain_alive),
        cmocka_unit_test(test_routing_picks_most_available_then_active),
        cmocka_unit_test(test_routing_forks_on_a_tie_and_passes_otherwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
