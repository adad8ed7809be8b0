/*
 * test_script: the script language end to end — compile, run against a mock
 * host that records every action, and the limits that keep hostile scripts
 * harmless. The mock host stands in for the application chain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>

#include "script/scr.h"

/* ---- mock host --------------------------------------------------------- */

struct mock {
    bool is_request;
    const char *method, *ruri;
    int status;
    const char *hname[16], *hval[16];
    int nhdr;
    const char *body, *ctype;
    struct scr_endpoint eps[8];
    int neps;
    int64_t now;
    bool dispatch_ok;
    bool refuse;                  /* actions return -1 */
    char acts[4096];              /* "Action(args);" per action */
    char logs[8192];              /* "<level>:<text>\n" per Log() */
    int endpoint_calls;
};

static void app(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
app(char *buf, size_t size, const char *fmt, ...)
{
    size_t n = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, size - n, fmt, ap);
    va_end(ap);
}

static bool m_is_request(void *arg) { return ((struct mock *)arg)->is_request; }
static const char *m_method(void *arg) { return ((struct mock *)arg)->method; }
static const char *m_ruri(void *arg) { return ((struct mock *)arg)->ruri; }
static int m_status(void *arg) { return ((struct mock *)arg)->status; }
static const char *m_body(void *arg) { return ((struct mock *)arg)->body; }
static const char *m_ctype(void *arg) { return ((struct mock *)arg)->ctype; }
static int64_t m_now(void *arg) { return ((struct mock *)arg)->now; }

static const char *
m_header(void *arg, const char *name, size_t idx)
{
    struct mock *m = arg;
    for (int i = 0; i < m->nhdr; i++) {
        if (strcasecmp(m->hname[i], name) == 0 && idx-- == 0)
            return m->hval[i];
    }
    return NULL;
}

static int
m_endpoints(void *arg, const char *aor, scr_endpoint_cb *cb, void *cb_arg)
{
    struct mock *m = arg;
    m->endpoint_calls++;
    if (strcmp(aor, "bob@example.com") != 0)
        return 0;
    for (int i = 0; i < m->neps; i++) {
        if (cb(cb_arg, &m->eps[i]) != 0)
            break;
    }
    return 0;
}

static int
m_proxy(void *arg, const char *uri)
{
    struct mock *m = arg;
    app(m->acts, sizeof(m->acts), "ProxyRequest(%s);", uri ? uri : "-");
    return m->refuse ? -1 : 0;
}

static int
m_respond(void *arg, int code, const char *reason, const char *headers)
{
    struct mock *m = arg;
    app(m->acts, sizeof(m->acts), "Respond(%d,%s,%s);", code, reason, headers ? headers : "-");
    return m->refuse ? -1 : 0;
}

static int
m_redirect(void *arg, const char *contact)
{
    struct mock *m = arg;
    app(m->acts, sizeof(m->acts), "Redirect(%s);", contact);
    return m->refuse ? -1 : 0;
}

static int
m_add_header(void *arg, const char *n, const char *v)
{
    struct mock *m = arg;
    app(m->acts, sizeof(m->acts), "AddHeader(%s,%s);", n, v);
    return m->refuse ? -1 : 0;
}

static int
m_set_header(void *arg, const char *n, const char *v)
{
    struct mock *m = arg;
    app(m->acts, sizeof(m->acts), "SetHeader(%s,%s);", n, v);
    return m->refuse ? -1 : 0;
}

static int
m_remove_header(void *arg, const char *n)
{
    struct mock *m = arg;
    app(m->acts, sizeof(m->acts), "RemoveHeader(%s);", n);
    return m->refuse ? -1 : 0;
}

static int
m_add_route(void *arg, const char *uri)
{
    struct mock *m = arg;
    app(m->acts, sizeof(m->acts), "AddRoute(%s);", uri);
    return m->refuse ? -1 : 0;
}

static int
m_set_to_epid(void *arg, const char *epid)
{
    struct mock *m = arg;
    app(m->acts, sizeof(m->acts), "SetToEpid(%s);", epid);
    return m->refuse ? -1 : 0;
}

static bool
m_dispatch(void *arg, const char *handler)
{
    struct mock *m = arg;
    app(m->acts, sizeof(m->acts), "Dispatch(%s);", handler);
    return m->dispatch_ok;
}

static void
m_log(void *arg, int level, const char *text)
{
    struct mock *m = arg;
    app(m->logs, sizeof(m->logs), "%d:%s\n", level, text);
}

static struct scr_host
host_of(struct mock *m)
{
    struct scr_host h = {
        .is_request = m_is_request, .method = m_method, .request_uri = m_ruri,
        .status_code = m_status, .header = m_header, .body = m_body,
        .content_type = m_ctype, .endpoints = m_endpoints, .now = m_now,
        .proxy_request = m_proxy, .respond = m_respond, .redirect = m_redirect,
        .add_header = m_add_header, .set_header = m_set_header,
        .remove_header = m_remove_header, .add_route = m_add_route,
        .set_to_epid = m_set_to_epid, .dispatch = m_dispatch, .log = m_log, .arg = m,
    };
    return h;
}

/* An INVITE to bob with a few headers; 2024-01-03 (Wednesday) 14:30:00 UTC. */
static void
mock_invite(struct mock *m)
{
    memset(m, 0, sizeof(*m));
    m->is_request = true;
    m->method = "INVITE";
    m->ruri = "sip:bob@example.com;transport=tls";
    m->hname[0] = "From";
    m->hval[0] = "\"Alice A\" <sip:alice@example.com:5061;maddr=10.0.0.1>;tag=abc123";
    m->hname[1] = "To";
    m->hval[1] = "<sip:bob@example.com>";
    m->hname[2] = "Via";
    m->hval[2] = "SIP/2.0/TLS 10.0.0.1;branch=z9hG4bK1";
    m->hname[3] = "Via";
    m->hval[3] = "SIP/2.0/TLS 10.0.0.2;branch=z9hG4bK2";
    m->hname[4] = "Subject";
    m->hval[4] = "Lunch";
    m->nhdr = 5;
    m->body = "v=0\r\n";
    m->ctype = "application/sdp";
    m->now = 1704292200;
    m->dispatch_ok = true;
}

static struct scr_program *
compile_ok(const char *src)
{
    struct scr_err err;
    struct scr_program *p = scr_compile(src, strlen(src), "t.scr", &err);
    if (!p)
        fail_msg("compile failed: %s:%d:%d: %s", err.file, err.line, err.col, err.msg);
    return p;
}

static enum scr_outcome
run_src(struct mock *m, const char *src, struct scr_run_result *res)
{
    struct scr_program *p = compile_ok(src);
    struct scr_host h = host_of(m);
    enum scr_outcome o = scr_run(p, &h, res);
    scr_program_free(p);
    return o;
}

/* Runs <src> against the default INVITE and checks what Log() printed. */
static void
expect_log(const char *src, const char *want)
{
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    enum scr_outcome o = run_src(&m, src, &res);
    if (o != SCR_PASS)
        fail_msg("outcome %s: %s", scr_outcome_name(o), res.msg);
    assert_string_equal(m.logs, want);
}

static void
expect_compile_error(const char *src, int line, int col, const char *msg_part)
{
    struct scr_err err;
    struct scr_program *p = scr_compile(src, strlen(src), "bad.scr", &err);
    if (p) {
        scr_program_free(p);
        fail_msg("compiled but should not: %s", src);
    }
    if (err.line != line || err.col != col || !strstr(err.msg, msg_part))
        fail_msg("got %s:%d:%d: %s; want %d:%d: ...%s...", err.file, err.line, err.col, err.msg,
                 line, col, msg_part);
    assert_string_equal(err.file, "bad.scr");
}

static void
expect_runtime_error(const char *src, const char *msg_part)
{
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    enum scr_outcome o = run_src(&m, src, &res);
    assert_int_equal(o, SCR_ERROR);
    assert_int_equal(res.outcome, SCR_ERROR);
    if (!strstr(res.msg, msg_part))
        fail_msg("runtime error '%s' lacks '%s'", res.msg, msg_part);
}

/* ---- lexer and parser -------------------------------------------------- */

static void
test_scr_lexes_literals_escapes_and_comments(void **state)
{
    expect_log("// line comment\n"
               "/* block\n comment */ s = \"a\\\"b\\\\c\\td\";\n"
               "Log(\"info\", s, \"|\", Length(s), \"|\", \"x\\ny\");\n"
               "Log(3, 9223372036854775807, \" \", -42, \" \", true, \" \", false, \" \", null);",
               "2:a\"b\\c\td|7|x y\n"
               "3:9223372036854775807 -42 true false \n");
}

static void
test_scr_operators_follow_precedence(void **state)
{
    expect_log("Log(\"info\", 1 + 2 * 3, \",\", (1 + 2) * 3, \",\", 7 % 3, \",\", -7 / 2, \",\","
               " 10 - 4 - 3, \",\", 2 * -3);",
               "2:7,9,1,-3,3,-6\n");
    expect_log("Log(\"info\", 1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3, !true || false, 1 == 1 != false,"
               " \"abc\" < \"abd\", \"SIP\" == \"sip\", \"a\" != \"b\", null == null, 1 == \"1\");",
               "2:truefalsetruetruetruetruetruefalse\n");
    expect_log("Log(\"info\", \"n=\" + 5, \"/\", 5 + \"x\", \"/\", \"a\" + null + true);",
               "2:n=5/5x/atrue\n");
}

static void
test_scr_logic_short_circuits(void **state)
{
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    assert_int_equal(run_src(&m, "a = false && Dispatch(\"x\"); b = true || Dispatch(\"y\");"
                                 "Log(\"info\", a, b, 0 || \"s\", \"\" && 1);", &res), SCR_PASS);
    assert_string_equal(m.acts, "");
    assert_string_equal(m.logs, "2:falsetruetruefalse\n");
}

static void
test_scr_truthiness_in_conditions(void **state)
{
    expect_log("if (GetHeader(\"Subject\")) { Log(\"info\", \"s\"); }"
               "if (GetHeader(\"Nope\")) { Log(\"info\", \"n\"); }"
               "if (0) { Log(\"info\", \"0\"); } if (\"\") { Log(\"info\", \"e\"); }"
               "if (Split(\"a\", \",\")) { Log(\"info\", \"l\"); }",
               "2:s\n2:l\n");
}

/* ---- control flow ------------------------------------------------------ */

static void
test_scr_if_else_if_chain_picks_one_branch(void **state)
{
    const char *src = "x = ToInt(GetHeader(\"X\"));\n"
                      "if (x == 1) { Log(\"info\", \"one\"); }\n"
                      "else if (x == 2) { Log(\"info\", \"two\"); }\n"
                      "else if (x == 3) Log(\"info\", \"three\");\n"
                      "else { Log(\"info\", \"other\"); }\n"
                      "Log(\"info\", \"end\");";
    const char *want[] = { "2:other\n2:end\n", "2:one\n2:end\n", "2:two\n2:end\n",
                           "2:three\n2:end\n" };
    const char *vals[] = { "9", "1", "2", "3" };
    for (int i = 0; i < 4; i++) {
        struct mock m;
        struct scr_run_result res;
        mock_invite(&m);
        m.hname[m.nhdr] = "X";
        m.hval[m.nhdr++] = vals[i];
        assert_int_equal(run_src(&m, src, &res), SCR_PASS);
        assert_string_equal(m.logs, want[i]);
    }
}

static void
test_scr_foreach_break_and_return(void **state)
{
    expect_log("n = 0;\n"
               "foreach (v in GetHeaders(\"Via\")) { n = n + 1; Log(\"info\", v); }\n"
               "foreach (p in Split(\"a,b,c,d\", \",\")) { if (p == \"c\") { break; } Log(\"debug\", p); }\n"
               "foreach (p in GetHeaders(\"Nope\")) { Log(\"info\", \"never\"); }\n"
               "foreach (p in null) { Log(\"info\", \"never\"); }\n"
               "Log(\"info\", n, \" \", p);\n"
               "return;\n"
               "Log(\"info\", \"unreachable\");",
               "2:SIP/2.0/TLS 10.0.0.1;branch=z9hG4bK1\n2:SIP/2.0/TLS 10.0.0.2;branch=z9hG4bK2\n"
               "3:a\n3:b\n2:2 c\n");
    /* break leaves only the inner loop */
    expect_log("foreach (a in Split(\"1,2\", \",\")) { foreach (b in Split(\"x,y\", \",\")) {"
               " if (b == \"y\") { break; } Log(\"info\", a, b); } }",
               "2:1x\n2:2x\n");
    expect_runtime_error("foreach (c in \"abc\") { }", "foreach needs a list, got string");
}

/* ---- built-ins --------------------------------------------------------- */

static void
test_scr_string_builtins(void **state)
{
    expect_log("Log(\"info\", Contains(\"Hello World\", \"world\"), Contains(\"abc\", \"x\"),"
               " Contains(null, \"a\"), StartsWith(\"sip:bob\", \"SIP:\"), StartsWith(\"a\", \"ab\"),"
               " EndsWith(\"bob@Example.com\", \"example.COM\"), EndsWith(\"a\", \"ba\"));",
               "2:truefalsefalsetruefalsetruefalse\n");
    expect_log("Log(\"info\", Lower(\"AbC\"), Upper(\"aBc\"), \"|\", Lower(null), \"|\","
               " Length(\"hello\"), Length(Split(\"a;b;c\", \";\")), Length(null), \"|\");"
               "Log(\"info\", Substring(\"hello world\", 6), \"|\", Substring(\"hello\", 1, 3), \"|\","
               " Substring(\"abc\", 5), \"|\", Substring(\"abc\", 1, 99), \"|\","
               " IndexOf(\"hello\", \"LL\"), IndexOf(\"hello\", \"z\"), IndexOf(null, \"a\"));",
               "2:abcABC||530|\n2:world|ell||bc|2-1-1\n");
    expect_log("l = Split(\"a,,b\", \",\"); Log(\"info\", Length(l));"
               " foreach (x in l) { Log(\"info\", \"[\", x, \"]\"); }"
               " foreach (x in Split(\"one<>two\", \"<>\")) { Log(\"info\", x); }"
               " Log(\"info\", Length(Split(null, \",\")));",
               "2:3\n2:[a]\n2:[]\n2:[b]\n2:one\n2:two\n2:0\n");
    expect_log("Log(\"info\", ToInt(\"42\") + 1, \" \", ToInt(\" -7 \"), \" \", ToInt(\"x1\") == null,"
               " \" \", ToInt(\"99999999999999999999\") == null, \" \", ToInt(true), \" \","
               " ToInt(null) == null, \" \", ToString(12) + ToString(true) + ToString(null), \" \","
               " ToInt(\"-9223372036854775808\"));",
               "2:43 -7 true true 1 true 12true -9223372036854775808\n");
    expect_runtime_error("Split(\"a\", \"\");", "separator must be a non-empty string");
    expect_runtime_error("Substring(\"a\", -1);", "negative start");
    expect_runtime_error("Length(1);", "needs a string or list");
}

static void
test_scr_time_builtins(void **state)
{
    /* 1704292200 = Wednesday 2024-01-03 14:30:00 UTC */
    setenv("TZ", "UTC", 1);
    tzset();
    expect_log("Log(\"info\", Now(), \" \", Hour(), \":\", Minute(), \" \", DayOfWeek(), \" \","
               " Hour(-300), \" \", Hour(600), \" \", DayOfWeek(600), \" \", Minute(45));",
               "2:1704292200 14:30 3 9 0 4 15\n");
    expect_log("Log(\"info\", IsBusinessHours(9, 17), IsBusinessHours(9, 14),"
               " IsBusinessHours(9, 17, 600), IsBusinessHours(0, 24, -900));",
               "2:truefalsefalsetrue\n");
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    m.now = 1704551400;   /* Saturday 2024-01-06 14:30 UTC */
    assert_int_equal(run_src(&m, "Log(\"info\", IsBusinessHours(0, 24), DayOfWeek());", &res),
                     SCR_PASS);
    assert_string_equal(m.logs, "2:false6\n");
    expect_runtime_error("Hour(5000);", "offset 5000 minutes out of range");
    expect_runtime_error("IsBusinessHours(9, 25);", "hours must be 0-24");
}

static void
test_scr_message_getters(void **state)
{
    expect_log("Log(\"info\", sipRequest, sipResponse, \" \", sipRequest.Method, \" \","
               " sipRequest.RequestUri, \" \", sipResponse.StatusCode == null);\n"
               "f = GetHeader(\"from\");\n"
               "Log(\"info\", GetUri(f), \" \", GetUserAtHost(GetUri(f)), \" \","
               " GetUriParameter(GetUri(f), \"MADDR\"), \" \", GetParameter(f, \"tag\"), \" \","
               " GetParameter(f, \"maddr\") == null);\n"
               "Log(\"info\", GetUserAtHost(sipRequest.RequestUri), \" \","
               " GetUriParameter(sipRequest.RequestUri, \"transport\"), \" \","
               " GetUri(GetHeader(\"To\")), \" \", GetHeader(\"Nope\") == null);\n"
               "Log(\"info\", ContentType(), \" \", Length(GetBody()), \" \","
               " Length(GetHeaders(\"VIA\")));\n"
               "Log(\"info\", GetUserAtHost(\"sips:[::1]:5061;lr\"), \" \","
               " GetUserAtHost(\"<sip:carol@h.example:5060?Subject=x>\"), \" \","
               " GetUri(\"sip:a@b;tag=1\"), \" \", GetParameter(\"sip:a@b;tag=1;x\", \"x\") == \"\","
               " \" \", GetUriParameter(\"<sip:a@b;lr;user=phone>;tag=9\", \"user\"), \" \","
               " GetParameter(\"\\\"x;tag=no\\\" <sip:a@b;tag=no>;tag=yes\", \"tag\"));",
               "2:truefalse INVITE sip:bob@example.com;transport=tls true\n"
               "2:sip:alice@example.com:5061;maddr=10.0.0.1 alice@example.com 10.0.0.1 abc123 true\n"
               "2:bob@example.com tls sip:bob@example.com true\n"
               "2:application/sdp 5 2\n"
               "2:[::1] carol@h.example sip:a@b true phone yes\n");
}

static void
test_scr_response_accessors(void **state)
{
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    m.is_request = false;
    m.status = 486;
    assert_int_equal(run_src(&m, "Log(\"info\", sipRequest, sipResponse, \" \","
                                 " sipResponse.StatusCode, \" \", sipResponse.StatusClass, \" \","
                                 " sipRequest.Method == null);", &res), SCR_PASS);
    assert_string_equal(m.logs, "2:falsetrue 486 4 true\n");
    mock_invite(&m);
    m.is_request = false;
    m.status = 200;
    assert_int_equal(run_src(&m, "ProxyRequest();", &res), SCR_ERROR);
    assert_non_null(strstr(res.msg, "ProxyRequest() on a response"));
}

static void
test_scr_endpoint_records_expose_fields(void **state)
{
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    m.eps[0] = (struct scr_endpoint){ .epid = "e1", .contact = "sip:bob@10.0.0.5",
                                      .availability = 3500, .activity = "busy",
                                      .present_since = 1000, .path = "<sip:edge;lr>" };
    m.eps[1] = (struct scr_endpoint){ .epid = "e2", .contact = "sip:bob@10.0.0.6" };
    m.neps = 2;
    assert_int_equal(run_src(&m, "foreach (e in Endpoints(\"bob@example.com\")) {"
                                 " Log(\"info\", e.epid, \",\", e.contact, \",\", e.availability,"
                                 " \",\", e.activity, \",\", e.present_since, \",\", e.path,"
                                 " \",\", e.path == null); }"
                                 " Log(\"info\", Length(Endpoints(\"nobody@example.com\")));",
                         &res), SCR_PASS);
    assert_string_equal(m.logs, "2:e1,sip:bob@10.0.0.5,3500,busy,1000,<sip:edge;lr>,false\n"
                                "2:e2,sip:bob@10.0.0.6,0,,0,,true\n2:0\n");
    expect_runtime_error("x = GetHeader(\"To\"); y = x.epid;", "'.epid' on string");
}

static int
many_endpoints(void *arg, const char *aor, scr_endpoint_cb *cb, void *cb_arg)
{
    static const struct scr_endpoint ep = { .epid = "x", .availability = 1 };
    if (strcmp(aor, "fail@example.com") == 0)
        return -1;
    for (int i = 0; i < 5000; i++) {
        if (cb(cb_arg, &ep) != 0)
            return -1;             /* a host may pass the stop on as -1 */
    }
    return 0;
}

static void
test_scr_endpoints_are_capped_and_failures_reported(void **state)
{
    struct mock m;
    struct scr_run_result res;
    struct scr_program *p = compile_ok("Log(\"info\", Length(Endpoints(\"bob@example.com\")));"
                                       " x = Endpoints(\"fail@example.com\");");
    mock_invite(&m);
    struct scr_host h = host_of(&m);
    h.endpoints = many_endpoints;
    assert_int_equal(scr_run(p, &h, &res), SCR_ERROR);
    assert_string_equal(m.logs, "2:1024\n");
    assert_non_null(strstr(res.msg, "Endpoints(): lookup failed for 'fail@example.com'"));
    scr_program_free(p);
}

/* ---- actions ----------------------------------------------------------- */

static void
expect_action(const char *src, enum scr_outcome want, const char *acts)
{
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    enum scr_outcome o = run_src(&m, src, &res);
    if (o != want)
        fail_msg("%s: outcome %s (%s), want %s", src, scr_outcome_name(o), res.msg,
                 scr_outcome_name(want));
    assert_string_equal(m.acts, acts);
}

static void
test_scr_actions_reach_the_host(void **state)
{
    expect_action("ProxyRequest();", SCR_PROXIED, "ProxyRequest(-);");
    expect_action("ProxyRequest(\"sip:vm@example.com\");", SCR_PROXIED,
                  "ProxyRequest(sip:vm@example.com);");
    expect_action("Respond(404, \"Not Here\");", SCR_RESPONDED, "Respond(404,Not Here,-);");
    expect_action("Respond(503, \"Busy\", \"Retry-After: 30\");", SCR_RESPONDED,
                  "Respond(503,Busy,Retry-After: 30);");
    expect_action("Redirect(\"sip:vm@example.com\");", SCR_REDIRECTED,
                  "Redirect(sip:vm@example.com);");
    expect_action("AddHeader(\"X-App\", \"1\"); SetHeader(\"Subject\", \"hi\");"
                  " RemoveHeader(\"X-Old\"); AddRoute(\"<sip:gw;lr>\"); SetToEpid(\"abc\");",
                  SCR_PASS,
                  "AddHeader(X-App,1);SetHeader(Subject,hi);RemoveHeader(X-Old);"
                  "AddRoute(<sip:gw;lr>);SetToEpid(abc);");
    expect_action("if (Dispatch(\"logger\")) { Log(\"info\", \"ok\"); }", SCR_DISPATCHED,
                  "Dispatch(logger);");

    /* Dispatch false: the script answers 503 itself (design §4) */
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    m.dispatch_ok = false;
    assert_int_equal(run_src(&m, "if (!Dispatch(\"scan\")) { Respond(503, \"Overloaded\"); }",
                             &res), SCR_RESPONDED);
    assert_string_equal(m.acts, "Dispatch(scan);Respond(503,Overloaded,-);");

    /* a host refusal is a runtime error */
    mock_invite(&m);
    m.refuse = true;
    assert_int_equal(run_src(&m, "AddRoute(\"<sip:x;lr>\");", &res), SCR_ERROR);
    assert_non_null(strstr(res.msg, "AddRoute() refused"));
}

static void
test_scr_one_terminal_action_per_message(void **state)
{
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    assert_int_equal(run_src(&m, "Respond(486, \"Busy Here\");\nProxyRequest();", &res),
                     SCR_ERROR);
    assert_int_equal(res.acted, SCR_RESPONDED);
    assert_int_equal(res.line, 2);
    assert_string_equal(res.msg,
                        "t.scr:2: ProxyRequest() after Respond(): the message is already handled");
    assert_string_equal(m.acts, "Respond(486,Busy Here,-);");
    expect_runtime_error("Redirect(\"sip:a@b\"); AddHeader(\"X\", \"y\");", "already handled");
    expect_runtime_error("Respond(180, \"Ringing\");", "not a final response");
    expect_runtime_error("Respond(\"404\", \"x\");", "argument 1 must be an integer");
}

static void
test_scr_to_header_cannot_be_modified(void **state)
{
    const char *srcs[] = {
        "SetHeader(\"To\", \"<sip:eve@evil>\");", "SetHeader(\"to\", \"x\");",
        "AddHeader(\"TO\", \"x\");", "RemoveHeader(\"t\");", "RemoveHeader(\"T\");",
    };
    for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
        struct mock m;
        struct scr_run_result res;
        mock_invite(&m);
        assert_int_equal(run_src(&m, srcs[i], &res), SCR_ERROR);
        assert_non_null(strstr(res.msg, "the To header may not be modified"));
        assert_string_equal(m.acts, "");
    }
    /* header injection through names or values */
    expect_runtime_error("AddHeader(\"X\", \"a\\r\\nTo: <sip:eve@evil>\");", "CR or LF");
    expect_runtime_error("AddHeader(\"X: y\", \"a\");", "invalid header name");
    expect_runtime_error("SetHeader(\"\", \"a\");", "empty header name");
    /* "Topic" is not To */
    expect_action("AddHeader(\"Topic\", \"x\");", SCR_PASS, "AddHeader(Topic,x);");
}

static void
test_scr_host_without_callbacks(void **state)
{
    struct scr_host h = { 0 };
    struct scr_run_result res;
    struct scr_program *p = compile_ok("Log(\"info\", GetHeader(\"From\") == null, sipRequest);"
                                       " x = Length(Endpoints(\"a@b\")); ProxyRequest();");
    assert_int_equal(scr_run(p, &h, &res), SCR_ERROR);
    assert_non_null(strstr(res.msg, "ProxyRequest() is not available here"));
    assert_int_equal(scr_run(p, NULL, &res), SCR_ERROR);
    scr_program_free(p);
}

/* ---- compile errors ---------------------------------------------------- */

static void
test_scr_compile_errors_carry_line_and_column(void **state)
{
    expect_compile_error("x = ;", 1, 5, "expected an expression, found ';'");
    expect_compile_error("x = 1;\n\n    Foo(1);", 3, 5, "unknown function 'Foo'");
    expect_compile_error("if (sipRequest) {\n  Respond(404);\n}", 2, 3,
                         "Respond() takes 2 to 3 arguments, got 1");
    expect_compile_error("ProxyRequest(1, 2);", 1, 1, "takes 0 to 1 arguments, got 2");
    expect_compile_error("GetBody(1);", 1, 1, "GetBody() takes 0 arguments, got 1");
    expect_compile_error("Log(\"info\");", 1, 1, "at least 2 arguments");
    expect_compile_error("a = 1;\nb = \"abc\n", 2, 5, "unterminated string literal");
    expect_compile_error("Log(\"info\", y);", 1, 13, "unknown variable 'y'");
    expect_compile_error("x = 1;\nbreak;", 2, 1, "'break' outside foreach");
    expect_compile_error("1 + 2;", 1, 1, "statement has no effect");
    expect_compile_error("foreach (e in Endpoints(\"a\")) {\n\tLog(\"info\", e.name);\n}", 2, 16,
                         "unknown field 'name'");
    expect_compile_error("x = sipRequest.Foo;", 1, 16, "unknown property 'sipRequest.Foo'");
    expect_compile_error("if (1) { Log(\"info\", 1);", 1, 25, "expected '}'");
    expect_compile_error("/* never closed", 1, 1, "unterminated /* comment");
    expect_compile_error("x = 1 & 2;", 1, 7, "did you mean '&&'");
    expect_compile_error("x = 99999999999999999999;", 1, 5, "integer literal out of range");
    expect_compile_error("x = \"\\q\";", 1, 6, "unknown escape");
    expect_compile_error("Length = 1;", 1, 1, "cannot assign to 'Length'");
    expect_compile_error("sipRequest = 1;", 1, 1, "cannot assign to 'sipRequest'");
    expect_compile_error("x = Length;", 1, 5, "used without '()'");
    expect_compile_error("x = 1 $ 2;", 1, 7, "unexpected character '$'");
    expect_compile_error("x = 1\ny = 2;", 2, 1, "expected ';', found 'y'");
    expect_compile_error("if x { }", 1, 4, "expected '(' after 'if'");

    /* NULL err is allowed */
    assert_null(scr_compile("x = ;", 5, NULL, NULL));
}

/* ---- hostile scripts --------------------------------------------------- */

static char *
repeat(const char *head, const char *unit, size_t n, const char *mid, const char *tail_unit,
       const char *tail)
{
    size_t len = strlen(head) + n * (strlen(unit) + strlen(tail_unit)) + strlen(mid) +
                 strlen(tail) + 1;
    char *s = malloc(len), *p = s;
    assert_non_null(s);
    p += sprintf(p, "%s", head);
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s", unit);
    p += sprintf(p, "%s", mid);
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s", tail_unit);
    sprintf(p, "%s", tail);
    return s;
}

static void
expect_compile_fails(const char *src, size_t len, const char *msg_part)
{
    struct scr_err err;
    struct scr_program *p = scr_compile(src, len, "h.scr", &err);
    if (p) {
        scr_program_free(p);
        fail_msg("hostile script compiled");
    }
    if (!strstr(err.msg, msg_part))
        fail_msg("error '%s' lacks '%s'", err.msg, msg_part);
}

static void
test_scr_hostile_nesting_is_a_compile_error(void **state)
{
    char *s = repeat("x = ", "(", 10000, "1", ")", ";");
    expect_compile_fails(s, strlen(s), "nesting deeper than 64 levels");
    free(s);
    s = repeat("", "if (true) {", 10000, "", "}", "");
    expect_compile_fails(s, strlen(s), "nesting deeper than 64 levels");
    free(s);
    s = repeat("x = ", "!", 10000, "true", "", ";");
    expect_compile_fails(s, strlen(s), "nesting deeper than 64 levels");
    free(s);
    s = repeat("x = ", "ToString(", 10000, "1", ")", ";");
    expect_compile_fails(s, strlen(s), "nesting deeper than 64 levels");
    free(s);
    s = repeat("", "foreach (x in null) { ", 10000, "", "}", "");
    expect_compile_fails(s, strlen(s), "nesting deeper than 64 levels");
    free(s);
    s = repeat("", "{", 10000, "", "}", "");
    expect_compile_fails(s, strlen(s), "nesting deeper than 64 levels");
    free(s);

    /* 60 levels is fine */
    s = repeat("x = ", "(", 60, "1", ")", "; Log(\"info\", x);");
    expect_log(s, "2:1\n");
    free(s);

    /* a 10,000-long else-if chain is flat, not nested: it compiles and runs */
    s = repeat("x = 9999;", "if (x == 0) { } else ", 10000, "{ Log(\"info\", \"last\"); }", "",
               "");
    expect_log(s, "2:last\n");
    free(s);
}

static void
test_scr_hostile_sizes_are_compile_errors(void **state)
{
    size_t big = 2u * 1024u * 1024u;
    char *s = malloc(big);
    assert_non_null(s);
    memset(s, ' ', big);
    expect_compile_fails(s, big, "script too large");
    free(s);

    /* a literal over 64 KiB */
    size_t n = SCR_MAX_LITERAL + 10;
    s = malloc(n + 64);
    assert_non_null(s);
    memcpy(s, "x = \"", 5);
    memset(s + 5, 'a', n);
    memcpy(s + 5 + n, "\";", 3);
    expect_compile_fails(s, strlen(s), "string literal longer than 65536 bytes");
    /* exactly 64 KiB is allowed */
    static const char tail[] = "\"; Log(\"info\", Length(x));";
    memcpy(s + 5 + SCR_MAX_LITERAL, tail, sizeof(tail));
    expect_log(s, "2:65536\n");
    free(s);

    /* too many variables */
    s = malloc(20 * 2000);
    assert_non_null(s);
    s[0] = '\0';
    for (int i = 0; i < 2000; i++)
        sprintf(s + strlen(s), "v%d = 1;", i);
    expect_compile_fails(s, strlen(s), "too many variables");
    free(s);

    /* too many constants */
    s = malloc(20 * 70000);
    assert_non_null(s);
    char *p = s;
    p += sprintf(p, "x = 0");
    for (int i = 1; i <= 70000; i++)
        p += sprintf(p, " + %d", i);
    sprintf(p, ";");
    expect_compile_fails(s, strlen(s), "too many constants");
    free(s);

    /* NUL bytes and binary junk */
    static const char junk[] = { 'x', ' ', '=', ' ', '"', 'a', '\0', 'b', '"', ';' };
    expect_compile_fails(junk, sizeof(junk), "NUL byte");
    static const char junk2[] = { 'x', '\x01', '\xff' };
    expect_compile_fails(junk2, sizeof(junk2), "unexpected byte 0x01");
}

static void
test_scr_step_budget_stops_nested_loops(void **state)
{
    struct mock m;
    struct scr_run_result res;
    /* 1,000 x 1,000 iterations: far over the 100k default */
    char buf[8192];
    strcpy(buf, "s = \"a");
    for (int i = 0; i < 999; i++)
        strcat(buf, ",a");
    strcat(buf, "\";\nl = Split(s, \",\");\nn = 0;\n"
                "foreach (x in l) {\n  foreach (y in l) {\n    n = n + 1;\n  }\n}\n"
                "Respond(200, \"done\");");
    mock_invite(&m);
    assert_int_equal(run_src(&m, buf, &res), SCR_ERROR);
    assert_non_null(strstr(res.msg, "step budget of 100000 exceeded"));
    assert_int_equal(res.steps, 100000);
    assert_string_equal(m.acts, "");

    /* the same with the Split inside the loops: stopped by steps or memory, never runs away */
    strcpy(buf, "s = \"a");
    for (int i = 0; i < 999; i++)
        strcat(buf, ",a");
    strcat(buf, "\";\nforeach (x in Split(s, \",\")) {\n  foreach (y in Split(s, \",\")) {"
                " z = y + x; }\n}");
    mock_invite(&m);
    assert_int_equal(run_src(&m, buf, &res), SCR_ERROR);
    assert_true(strstr(res.msg, "step budget") || strstr(res.msg, "memory limit"));

    /* a program-specific budget */
    struct scr_program *p = compile_ok("n = 0; foreach (x in Split(\"a,b,c,d,e,f\", \",\")) {"
                                       " n = n + 1; }");
    struct scr_host h = host_of(&m);
    assert_int_equal(scr_run(p, &h, &res), SCR_PASS);
    uint32_t need = res.steps;
    scr_program_set_limits(p, need - 1, 0);
    assert_int_equal(scr_run(p, &h, &res), SCR_ERROR);
    scr_program_set_limits(p, need, 0);
    assert_int_equal(scr_run(p, &h, &res), SCR_PASS);
    scr_program_free(p);
}

static void
test_scr_runtime_errors_are_reported_not_fatal(void **state)
{
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    assert_int_equal(run_src(&m, "x = 1;\ny = 0;\nz = x / y;\nProxyRequest();", &res), SCR_ERROR);
    assert_string_equal(res.msg, "t.scr:3: division by zero");
    assert_int_equal(res.line, 3);
    assert_int_equal(res.acted, SCR_PASS);
    assert_string_equal(m.acts, "");
    expect_runtime_error("x = 5 % 0;", "division by zero");
    expect_runtime_error("x = 9223372036854775807 + 1;", "integer overflow");
    expect_runtime_error("x = -9223372036854775807 - 2;", "integer overflow");
    expect_runtime_error("x = 4611686018427387904 * 2;", "integer overflow");
    expect_runtime_error("x = \"a\" - 1;", "'-' needs integers");
    expect_runtime_error("x = 1 < \"a\";", "cannot order");
    expect_runtime_error("x = true + 1;", "cannot add");
    expect_runtime_error("x = -\"a\";", "unary '-' needs an integer");
}

static void
test_scr_memory_per_run_is_capped(void **state)
{
    /* doubling a string: the 64 KiB string cap or the 1 MiB run cap stops it */
    expect_runtime_error("s = \"0123456789abcdef\"; foreach (i in Split(\"a,a,a,a,a,a,a,a,a,a,a,a,"
                         "a,a,a,a,a,a,a,a\", \",\")) { s = s + s; }",
                         "exceeds the limit of 65536");
    /* many 60 KiB strings: the run cap */
    struct mock m;
    struct scr_run_result res;
    mock_invite(&m);
    struct scr_program *p = compile_ok(
        "b = \"0123456789abcdef\"; b = b + b; b = b + b; b = b + b; b = b + b; b = b + b;"
        " b = b + b; b = b + b; b = b + b; b = b + b; b = b + b; b = b + b;"
        " n = 0; foreach (i in Split(\"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,"
        "23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40\", \",\")) { c = b + i; n = n + 1; }");
    struct scr_host h = host_of(&m);
    assert_int_equal(scr_run(p, &h, &res), SCR_ERROR);
    if (!strstr(res.msg, "memory limit of 1048576 bytes per run exceeded"))
        fail_msg("%s", res.msg);
    assert_true(res.mem <= SCR_DEFAULT_MEMORY);
    scr_program_free(p);
}

/* ---- the routing script ------------------------------------------------ */

/*
 * The shape of homeserver/apps/routing.am (design §4): leave strict-routed and
 * already-targeted requests alone, then pick the best endpoint by availability,
 * then activity ("active" > none > "away"), then the longest present.
 */
static const char routing_src[] =
    "// routing: pick the best endpoint of the callee\n"
    "if (!sipRequest) { return; }\n"
    "if (GetHeader(\"Route\") != null) { return; }\n"
    "if (GetParameter(GetHeader(\"To\"), \"epid\") != null) { return; }\n"
    "uri = sipRequest.RequestUri;\n"
    "if (GetUriParameter(uri, \"maddr\") != null || GetUriParameter(uri, \"user\") == \"phone\") {\n"
    "    return;\n"
    "}\n"
    "best = null;\n"
    "best_rank = -1;\n"
    "foreach (e in Endpoints(GetUserAtHost(uri))) {\n"
    "    rank = 1;\n"
    "    if (e.activity == \"active\") { rank = 2; }\n"
    "    else if (e.activity == \"away\") { rank = 0; }\n"
    "    better = best == null || e.availability > best.availability;\n"
    "    if (!better && e.availability == best.availability) {\n"
    "        better = rank > best_rank ||\n"
    "                 (rank == best_rank && e.present_since < best.present_since);\n"
    "    }\n"
    "    if (better) { best = e; best_rank = rank; }\n"
    "}\n"
    "if (best == null) { return; }\n"
    "SetToEpid(best.epid);\n"
    "if (best.path != null) { AddRoute(best.path); }\n"
    "ProxyRequest();\n";

static void
mock_endpoints(struct mock *m)
{
    m->eps[0] = (struct scr_endpoint){ .epid = "a1", .contact = "sip:bob@10.0.0.1",
                                       .availability = 3000, .activity = "active",
                                       .present_since = 100, .path = "<sip:edge1;lr>" };
    m->eps[1] = (struct scr_endpoint){ .epid = "d4", .contact = "sip:bob@10.0.0.4",
                                       .availability = 3500, .activity = "active",
                                       .present_since = 400, .path = "<sip:edge4;lr>" };
    m->eps[2] = (struct scr_endpoint){ .epid = "c3", .contact = "sip:bob@10.0.0.3",
                                       .availability = 3500, .activity = "active",
                                       .present_since = 900, .path = "<sip:edge3;lr>" };
    m->eps[3] = (struct scr_endpoint){ .epid = "b2", .contact = "sip:bob@10.0.0.2",
                                       .availability = 3500, .activity = NULL,
                                       .present_since = 50, .path = "<sip:edge2;lr>" };
    m->eps[4] = (struct scr_endpoint){ .epid = "e5", .contact = "sip:bob@10.0.0.5",
                                       .availability = 3500, .activity = "away",
                                       .present_since = 10, .path = NULL };
    m->neps = 5;
}

static void
test_scr_routing_script_picks_the_best_endpoint(void **state)
{
    struct mock m;
    struct scr_run_result res;
    struct scr_program *p = compile_ok(routing_src);
    struct scr_host h;

    /* availability ties between d4, c3, b2, e5; active beats none and away; d4 present longer */
    mock_invite(&m);
    mock_endpoints(&m);
    h = host_of(&m);
    assert_int_equal(scr_run(p, &h, &res), SCR_PROXIED);
    assert_string_equal(m.acts, "SetToEpid(d4);AddRoute(<sip:edge4;lr>);ProxyRequest(-);");

    /* without the active ones, "no activity" beats "away" despite e5 being present longer */
    mock_invite(&m);
    mock_endpoints(&m);
    m.eps[1].availability = m.eps[2].availability = 100;
    h = host_of(&m);
    assert_int_equal(scr_run(p, &h, &res), SCR_PROXIED);
    assert_string_equal(m.acts, "SetToEpid(b2);AddRoute(<sip:edge2;lr>);ProxyRequest(-);");

    /* e5 alone: no path, so no route */
    mock_invite(&m);
    mock_endpoints(&m);
    m.eps[0] = m.eps[4];
    m.neps = 1;
    h = host_of(&m);
    assert_int_equal(scr_run(p, &h, &res), SCR_PROXIED);
    assert_string_equal(m.acts, "SetToEpid(e5);ProxyRequest(-);");

    /* not registered: pass on */
    mock_invite(&m);
    h = host_of(&m);
    assert_int_equal(scr_run(p, &h, &res), SCR_PASS);
    assert_string_equal(m.acts, "");

    /* an epid in To, a maddr or user=phone: untouched */
    const char *ruris[] = { "sip:bob@example.com;maddr=10.1.1.1", "sip:+15551234@gw;user=phone" };
    for (int i = 0; i < 2; i++) {
        mock_invite(&m);
        mock_endpoints(&m);
        m.ruri = ruris[i];
        h = host_of(&m);
        assert_int_equal(scr_run(p, &h, &res), SCR_PASS);
        assert_string_equal(m.acts, "");
    }
    mock_invite(&m);
    mock_endpoints(&m);
    m.hval[1] = "<sip:bob@example.com>;epid=c3";
    h = host_of(&m);
    assert_int_equal(scr_run(p, &h, &res), SCR_PASS);
    assert_int_equal(m.endpoint_calls, 0);

    /* responses are ignored */
    mock_invite(&m);
    mock_endpoints(&m);
    m.is_request = false;
    m.status = 180;
    h = host_of(&m);
    assert_int_equal(scr_run(p, &h, &res), SCR_PASS);

    scr_program_free(p);
}

static void
test_scr_routing_script_runs_fast(void **state)
{
    struct mock m;
    struct scr_run_result res;
    struct scr_program *p = compile_ok(routing_src);
    const int runs = 20000;
    struct timespec t0, t1;

    mock_invite(&m);
    mock_endpoints(&m);
    struct scr_host h = host_of(&m);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < runs; i++) {
        m.acts[0] = '\0';
        if (scr_run(p, &h, &res) != SCR_PROXIED)
            fail_msg("run %d: %s", i, res.msg);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3)
                / runs;
    print_message("routing script: %.2f us/run, %u steps, %zu bytes\n", us, res.steps, res.mem);
    /* generous bound so sanitizer and loaded CI builds pass; a release build is ~1-2 us */
    assert_true(us < 200.0);
    scr_program_free(p);
}

static void
test_scr_program_dump_lists_instructions(void **state)
{
    struct scr_program *p = compile_ok("if (sipRequest) { Respond(404, \"Not Found\"); }");
    char buf[2048];
    size_t need = scr_program_dump(p, buf, sizeof(buf));
    assert_true(need > 1 && need <= sizeof(buf));
    assert_non_null(strstr(buf, "call   Respond/2"));
    assert_non_null(strstr(buf, "\"Not Found\""));
    char small[8];
    assert_int_equal(scr_program_dump(p, small, sizeof(small)), need);
    scr_program_free(p);
    assert_string_equal(scr_outcome_name(SCR_DISPATCHED), "dispatched");
    scr_program_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scr_lexes_literals_escapes_and_comments),
        cmocka_unit_test(test_scr_operators_follow_precedence),
        cmocka_unit_test(test_scr_logic_short_circuits),
        cmocka_unit_test(test_scr_truthiness_in_conditions),
        cmocka_unit_test(test_scr_if_else_if_chain_picks_one_branch),
        cmocka_unit_test(test_scr_foreach_break_and_return),
        cmocka_unit_test(test_scr_string_builtins),
        cmocka_unit_test(test_scr_time_builtins),
        cmocka_unit_test(test_scr_message_getters),
        cmocka_unit_test(test_scr_response_accessors),
        cmocka_unit_test(test_scr_endpoint_records_expose_fields),
        cmocka_unit_test(test_scr_endpoints_are_capped_and_failures_reported),
        cmocka_unit_test(test_scr_actions_reach_the_host),
        cmocka_unit_test(test_scr_one_terminal_action_per_message),
        cmocka_unit_test(test_scr_to_header_cannot_be_modified),
        cmocka_unit_test(test_scr_host_without_callbacks),
        cmocka_unit_test(test_scr_compile_errors_carry_line_and_column),
        cmocka_unit_test(test_scr_hostile_nesting_is_a_compile_error),
        cmocka_unit_test(test_scr_hostile_sizes_are_compile_errors),
        cmocka_unit_test(test_scr_step_budget_stops_nested_loops),
        cmocka_unit_test(test_scr_runtime_errors_are_reported_not_fatal),
        cmocka_unit_test(test_scr_memory_per_run_is_capped),
        cmocka_unit_test(test_scr_routing_script_picks_the_best_endpoint),
        cmocka_unit_test(test_scr_routing_script_runs_fast),
        cmocka_unit_test(test_scr_program_dump_lists_instructions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
