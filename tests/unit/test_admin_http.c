/*
 * Unit tests for util/admin_http: a server on an ephemeral loopback port, fetched with
 * libevent's evhttp client on the same loop (every fetch bounded by a 5 s timer).
 */
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
#include <event2/event.h>
#include <event2/http.h>

#include "util/admin_http.h"
#include "util/cfg.h"
#include "util/log.h"
#include "util/metrics.h"

struct resp {
    int code;               /* 0 = no reply */
    char *body;
    char *ctype;
    char *www_auth;
    char *allow;
    bool done;
};

struct fixture {
    struct event_base *base;
    struct metrics *reg;
    struct admin_http *a;
    bool store_ok;
};

static char *
dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void
resp_free(struct resp *r)
{
    free(r->body);
    free(r->ctype);
    free(r->www_auth);
    free(r->allow);
    memset(r, 0, sizeof *r);
}

static void
resp_cb(struct evhttp_request *req, void *arg)
{
    struct resp *r = arg;

    r->done = true;
    if (!req)
        return;
    r->code = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    r->body = malloc(len + 1);
    evbuffer_remove(in, r->body, len);
    r->body[len] = '\0';
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    r->ctype = dup_or_null(evhttp_find_header(h, "Content-Type"));
    r->www_auth = dup_or_null(evhttp_find_header(h, "WWW-Authenticate"));
    r->allow = dup_or_null(evhttp_find_header(h, "Allow"));
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

/* One request; returns the reply (code 0 on timeout or connection failure). */
static struct resp
fetch(struct fixture *fx, enum evhttp_cmd_type cmd, const char *path, const char *auth,
      const char *body)
{
    struct resp r = {0};
    bool timed_out = false;
    struct timeval tv = {5, 0};
    struct evhttp_connection *conn =
        evhttp_connection_base_new(fx->base, NULL, "127.0.0.1",
                                   (ev_uint16_t)admin_http_port(fx->a));
    struct evhttp_request *req = evhttp_request_new(resp_cb, &r);
    struct event *timer = evtimer_new(fx->base, timeout_cb, &timed_out);

    assert_non_null(conn);
    assert_non_null(req);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    if (auth)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Authorization", auth);
    if (body)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    assert_int_equal(evhttp_make_request(conn, req, cmd, path), 0);
    evtimer_add(timer, &tv);
    while (!r.done && !timed_out)
        event_base_loop(fx->base, EVLOOP_ONCE);
    event_free(timer);
    evhttp_connection_free(conn);
    return r;
}

static bool
store_check(void *arg, char *reason, size_t reason_len)
{
    struct fixture *fx = arg;

    if (!fx->store_ok)
        snprintf(reason, reason_len, "database is locked");
    return fx->store_ok;
}

static bool
silent_check(void *arg, char *reason, size_t reason_len)
{
    return *(bool *)arg;
}

static int
setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);

    log_set_level(LOG_ERR);
    fx->base = event_base_new();
    fx->reg = metrics_new();
    fx->store_ok = true;
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;

    admin_http_free(fx->a);
    metrics_free(fx->reg);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

static void
start(struct fixture *fx, const char *token, struct cfg *cfg)
{
    fx->a = admin_http_start(fx->base, "127.0.0.1:0", token, fx->reg, cfg);
    assert_non_null(fx->a);
    assert_true(admin_http_port(fx->a) > 0);
}

static void
test_healthz_flips_to_503_when_a_check_fails(void **state)
{
    struct fixture *fx = *state;
    bool other_ok = true;
    struct resp r;

    start(fx, NULL, NULL);
    assert_int_equal(admin_http_add_health(fx->a, "store", store_check, fx), 0);
    assert_int_equal(admin_http_add_health(fx->a, "etcd", silent_check, &other_ok), 0);
    r = fetch(fx, EVHTTP_REQ_GET, "/healthz", NULL, NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "ok\n");
    assert_string_equal(r.ctype, "text/plain; charset=utf-8");
    resp_free(&r);

    fx->store_ok = false;
    r = fetch(fx, EVHTTP_REQ_GET, "/healthz", NULL, NULL);
    assert_int_equal(r.code, 503);
    assert_string_equal(r.body, "store: database is locked\n");
    resp_free(&r);

    other_ok = false;
    r = fetch(fx, EVHTTP_REQ_GET, "/healthz", NULL, NULL);
    assert_int_equal(r.code, 503);
    assert_string_equal(r.body, "store: database is locked\netcd: failing\n");
    resp_free(&r);

    fx->store_ok = other_ok = true;
    r = fetch(fx, EVHTTP_REQ_GET, "/healthz", NULL, NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
}

static void
test_metrics_endpoint_serves_the_registry(void **state)
{
    struct fixture *fx = *state;
    struct resp r;
    struct metric *m = metrics_counter_labels(fx->reg, "parley_sip_requests_total",
                                              "SIP requests.", "method", "INVITE");

    metrics_counter_add(m, 5);
    start(fx, NULL, NULL);
    r = fetch(fx, EVHTTP_REQ_GET, "/metrics", NULL, NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.ctype, METRICS_CONTENT_TYPE);
    assert_string_equal(r.body, "# HELP parley_sip_requests_total SIP requests.\n"
                                "# TYPE parley_sip_requests_total counter\n"
                                "parley_sip_requests_total{method=\"INVITE\"} 5\n");
    resp_free(&r);
}

static void
test_token_required_except_healthz(void **state)
{
    struct fixture *fx = *state;
    struct resp r;

    start(fx, "s3cret", NULL);
    r = fetch(fx, EVHTTP_REQ_GET, "/metrics", NULL, NULL);
    assert_int_equal(r.code, 401);
    assert_string_equal(r.www_auth, "Bearer realm=\"parley-admin\"");
    resp_free(&r);
    r = fetch(fx, EVHTTP_REQ_GET, "/metrics", "Bearer wrong", NULL);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    r = fetch(fx, EVHTTP_REQ_GET, "/metrics", "Bearer s3cre", NULL);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    r = fetch(fx, EVHTTP_REQ_GET, "/metrics", "Basic s3cret", NULL);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    r = fetch(fx, EVHTTP_REQ_GET, "/nonexistent", NULL, NULL);   /* no path probing */
    assert_int_equal(r.code, 401);
    resp_free(&r);
    r = fetch(fx, EVHTTP_REQ_GET, "/metrics", "Bearer s3cret", NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = fetch(fx, EVHTTP_REQ_GET, "/healthz", NULL, NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
}

static int
echo_route(struct admin_req *req, struct evbuffer *out, void *arg)
{
    const char *name = admin_req_query(req, "name");

    if (!name) {
        evbuffer_add_printf(out, "{\"error\":\"name missing\"}");
        return 400;
    }
    evbuffer_add_printf(out, "{\"tag\":\"%s\",\"path\":", (const char *)arg);
    admin_json_str(out, admin_req_path(req));
    evbuffer_add_printf(out, ",\"name\":");
    admin_json_str(out, name);
    evbuffer_add_printf(out, "}");
    return 200;
}

static int
action_route(struct admin_req *req, struct evbuffer *out, void *arg)
{
    size_t len;
    const char *body = admin_req_body(req, &len);

    (*(int *)arg)++;
    admin_req_set_content_type(req, "text/plain");
    evbuffer_add_printf(out, "%s %zu %s", admin_req_method(req), len, body);
    return 202;
}

static int
bad_status_route(struct admin_req *req, struct evbuffer *out, void *arg)
{
    evbuffer_add_printf(out, "partial");
    return 42;
}

static void
test_custom_routes_actions_and_errors(void **state)
{
    struct fixture *fx = *state;
    struct resp r;
    int actions = 0;

    start(fx, NULL, NULL);
    assert_int_equal(admin_http_add_route(fx->a, "/api/echo", echo_route, "exact"), 0);
    assert_int_equal(admin_http_add_route(fx->a, "/api/regs/", echo_route, "prefix"), 0);
    assert_int_equal(admin_http_add_action(fx->a, "/api/kick", action_route, &actions), 0);
    assert_int_equal(admin_http_add_route(fx->a, "/api/bad", bad_status_route, NULL), 0);
    assert_int_equal(admin_http_add_route(fx->a, "no-slash", echo_route, NULL), -1);

    r = fetch(fx, EVHTTP_REQ_GET, "/api/echo?name=a%20b%22&x=1", NULL, NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.ctype, "application/json");
    assert_string_equal(r.body, "{\"tag\":\"exact\",\"path\":\"/api/echo\",\"name\":\"a b\\\"\"}");
    resp_free(&r);

    r = fetch(fx, EVHTTP_REQ_GET, "/api/echo", NULL, NULL);
    assert_int_equal(r.code, 400);
    resp_free(&r);

    r = fetch(fx, EVHTTP_REQ_GET, "/api/regs/alice%40example.com?name=n", NULL, NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "{\"tag\":\"prefix\",\"path\":\"/api/regs/alice@example.com\","
                                "\"name\":\"n\"}");
    resp_free(&r);
    r = fetch(fx, EVHTTP_REQ_GET, "/api/regs?name=all", NULL, NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = fetch(fx, EVHTTP_REQ_GET, "/api/regsx", NULL, NULL);
    assert_int_equal(r.code, 404);
    assert_string_equal(r.body, "{\"error\":\"no such path\"}\n");
    resp_free(&r);

    r = fetch(fx, EVHTTP_REQ_POST, "/api/kick", NULL, "{\"who\":1}");
    assert_int_equal(r.code, 202);
    assert_string_equal(r.body, "POST 9 {\"who\":1}");
    assert_string_equal(r.ctype, "text/plain");
    assert_int_equal(actions, 1);
    resp_free(&r);

    r = fetch(fx, EVHTTP_REQ_GET, "/api/kick", NULL, NULL);
    assert_int_equal(r.code, 405);
    assert_string_equal(r.allow, "POST");
    assert_int_equal(actions, 1);
    resp_free(&r);

    r = fetch(fx, EVHTTP_REQ_POST, "/metrics", NULL, "");
    assert_int_equal(r.code, 405);
    assert_string_equal(r.allow, "GET, HEAD");
    resp_free(&r);

    r = fetch(fx, EVHTTP_REQ_GET, "/api/bad", NULL, NULL);
    assert_int_equal(r.code, 500);
    assert_string_equal(r.body, "{\"error\":\"internal error\"}\n");
    resp_free(&r);

    r = fetch(fx, EVHTTP_REQ_GET, "/api/%00x", NULL, NULL);
    assert_int_equal(r.code, 400);
    resp_free(&r);

    r = fetch(fx, EVHTTP_REQ_GET, "/config", NULL, NULL);   /* no cfg given */
    assert_int_equal(r.code, 404);
    resp_free(&r);
}

struct app_settings {
    char *greeting;
    long long workers;
};

static const struct cfg_opt app_rows[] = {
    {.name = "greeting", .type = CFG_STR, .def = "hello", .reloadable = true, .help = "x",
     .offset = offsetof(struct app_settings, greeting)},
    {.name = "workers", .type = CFG_INT, .def = "2", .help = "y",
     .offset = offsetof(struct app_settings, workers)},
};

static void
test_config_dump_and_reload(void **state)
{
    struct fixture *fx = *state;
    struct app_settings st = {0};
    struct admin_http_settings as = {0};
    struct cfg_error err;
    struct resp r;
    struct cfg *cfg = cfg_new("t", "1");
    char *argv[] = {"t", "--admin-token", "tok", NULL};

    unsetenv("PARLEY_GREETING");
    unsetenv("PARLEY_WORKERS");
    unsetenv("PARLEY_CONFIG");
    assert_int_equal(cfg_register(cfg, "app", app_rows, 2, &st), 0);
    assert_int_equal(cfg_register(cfg, "admin", admin_http_cfg_rows, admin_http_cfg_nrows, &as), 0);
    assert_int_equal(cfg_load(cfg, 3, argv, &err), CFG_RUN);
    assert_string_equal(as.listen, "127.0.0.1:8080");
    start(fx, as.token, cfg);

    r = fetch(fx, EVHTTP_REQ_GET, "/config", "Bearer tok", NULL);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "\"greeting\":{\"section\":\"app\",\"type\":\"string\","
                                   "\"value\":\"hello\""));
    assert_non_null(strstr(r.body, "\"admin-token\":{\"section\":\"admin\",\"type\":\"string\","
                                   "\"value\":\"(set)\""));
    assert_null(strstr(r.body, "tok\""));
    resp_free(&r);

    setenv("PARLEY_GREETING", "bonjour", 1);
    setenv("PARLEY_WORKERS", "8", 1);
    r = fetch(fx, EVHTTP_REQ_POST, "/api/reload", "Bearer tok", "");
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "{\"changed\":[\"greeting\"],\"ignored\":[\"workers\"]}");
    assert_string_equal(st.greeting, "bonjour");
    assert_int_equal(st.workers, 2);
    resp_free(&r);

    setenv("PARLEY_WORKERS", "lots", 1);
    r = fetch(fx, EVHTTP_REQ_POST, "/api/reload", "Bearer tok", "");
    assert_int_equal(r.code, 400);
    assert_string_equal(r.body, "{\"error\":\"PARLEY_WORKERS: 'lots' is not a number\"}");
    resp_free(&r);

    unsetenv("PARLEY_GREETING");
    unsetenv("PARLEY_WORKERS");
    admin_http_free(fx->a);
    fx->a = NULL;
    cfg_free(cfg);
}

static void
test_start_rejects_bad_addresses(void **state)
{
    struct fixture *fx = *state;
    struct admin_http *b;

    assert_null(admin_http_start(fx->base, "127.0.0.1:99999", NULL, NULL, NULL));
    assert_null(admin_http_start(fx->base, "127.0.0.1:", NULL, NULL, NULL));
    assert_null(admin_http_start(fx->base, "::1:80", NULL, NULL, NULL));
    assert_null(admin_http_start(fx->base, "[::1", NULL, NULL, NULL));
    assert_null(admin_http_start(fx->base, "127.0.0.1:http", NULL, NULL, NULL));
    /* a bare port means loopback; a busy port fails */
    fx->a = admin_http_start(fx->base, "0", NULL, NULL, NULL);
    assert_non_null(fx->a);
    char busy[32];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", admin_http_port(fx->a));
    b = admin_http_start(fx->base, busy, NULL, NULL, NULL);
    assert_null(b);
    struct resp r = fetch(fx, EVHTTP_REQ_GET, "/metrics", NULL, NULL);
    assert_int_equal(r.code, 404);   /* no registry */
    resp_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_healthz_flips_to_503_when_a_check_fails),
        T(test_metrics_endpoint_serves_the_registry),
        T(test_token_required_except_healthz),
        T(test_custom_routes_actions_and_errors),
        T(test_config_dump_and_reload),
        T(test_start_rejects_bad_addresses),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
