/* Unit tests for util/metrics: exact Prometheus text output, labels, callbacks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "util/log.h"
#include "util/metrics.h"

/* Renders <reg> into a malloc'd NUL-terminated string. */
static char *
render(struct metrics *reg)
{
    struct evbuffer *out = evbuffer_new();
    size_t len;
    char *s;

    assert_int_equal(metrics_render(reg, out), 0);
    len = evbuffer_get_length(out);
    s = malloc(len + 1);
    evbuffer_remove(out, s, len);
    s[len] = '\0';
    evbuffer_free(out);
    return s;
}

static double
fixed_fn(void *arg)
{
    return *(double *)arg;
}

static void
test_counter_and_gauge_exact_text(void **state)
{
    struct metrics *reg = metrics_new();
    struct metric *c = metrics_counter(reg, "parley_msgs_total", "Messages seen.");
    struct metric *g = metrics_gauge(reg, "parley_conns", "Open connections.");
    char *text;

    metrics_counter_inc(c);
    metrics_counter_add(c, 41);
    metrics_gauge_set(g, 10);
    metrics_gauge_add(g, -13);
    text = render(reg);
    assert_string_equal(text, "# HELP parley_msgs_total Messages seen.\n"
                              "# TYPE parley_msgs_total counter\n"
                              "parley_msgs_total 42\n"
                              "# HELP parley_conns Open connections.\n"
                              "# TYPE parley_conns gauge\n"
                              "parley_conns -3\n");
    assert_int_equal(metrics_counter_value(c), 42);
    assert_int_equal(metrics_gauge_value(g), -3);
    free(text);
    metrics_free(reg);
    (void)state;
}

static void
test_labelled_counters_share_one_family(void **state)
{
    struct metrics *reg = metrics_new();
    struct metric *inv = metrics_counter_labels(reg, "parley_sip_requests_total",
                                                "SIP requests received.", "method", "INVITE");
    struct metric *reg_m = metrics_counter_labels(reg, "parley_sip_requests_total",
                                                  "SIP requests received.", "method", "REGISTER");
    struct metric *two = metrics_counter_labels(reg, "parley_replies_total", "Replies.", "code",
                                                "200", "transport", "tls");
    char *text;

    assert_non_null(inv);
    assert_ptr_not_equal(inv, reg_m);
    /* asking again returns the same series */
    assert_ptr_equal(metrics_counter_labels(reg, "parley_sip_requests_total", "x", "method",
                                            "INVITE"),
                     inv);
    metrics_counter_add(inv, 3);
    metrics_counter_inc(reg_m);
    metrics_counter_add_atomic(two, 7);
    text = render(reg);
    assert_string_equal(text,
                        "# HELP parley_sip_requests_total SIP requests received.\n"
                        "# TYPE parley_sip_requests_total counter\n"
                        "parley_sip_requests_total{method=\"INVITE\"} 3\n"
                        "parley_sip_requests_total{method=\"REGISTER\"} 1\n"
                        "# HELP parley_replies_total Replies.\n"
                        "# TYPE parley_replies_total counter\n"
                        "parley_replies_total{code=\"200\",transport=\"tls\"} 7\n");
    free(text);
    metrics_free(reg);
    (void)state;
}

static void
test_label_values_and_help_are_escaped(void **state)
{
    struct metrics *reg = metrics_new();
    struct metric *m = metrics_gauge_labels(reg, "odd", "Help with \\ and\nnewline \"q\".",
                                            "v", "a\\b\"c\nd");
    char *text;

    metrics_gauge_set(m, 1);
    text = render(reg);
    assert_string_equal(text, "# HELP odd Help with \\\\ and\\nnewline \"q\".\n"
                              "# TYPE odd gauge\n"
                              "odd{v=\"a\\\\b\\\"c\\nd\"} 1\n");
    free(text);
    metrics_free(reg);
    (void)state;
}

static void
test_callback_gauges_are_evaluated_at_scrape(void **state)
{
    struct metrics *reg = metrics_new();
    double v = 1.5, w = 3, inf = INFINITY, nan_v = NAN;
    char *text;

    assert_non_null(metrics_gauge_fn(reg, "g_fn", "A callback.", fixed_fn, &v));
    assert_non_null(metrics_counter_fn(reg, "c_fn_total", "A callback counter.", fixed_fn, &w));
    assert_non_null(metrics_gauge_fn_labels(reg, "g_lab", "Labelled.", fixed_fn, &inf, "k", "x"));
    assert_non_null(metrics_gauge_fn_labels(reg, "g_lab", "Labelled.", fixed_fn, &nan_v, "k", "y"));
    text = render(reg);
    assert_string_equal(text, "# HELP g_fn A callback.\n"
                              "# TYPE g_fn gauge\n"
                              "g_fn 1.5\n"
                              "# HELP c_fn_total A callback counter.\n"
                              "# TYPE c_fn_total counter\n"
                              "c_fn_total 3\n"
                              "# HELP g_lab Labelled.\n"
                              "# TYPE g_lab gauge\n"
                              "g_lab{k=\"x\"} +Inf\n"
                              "g_lab{k=\"y\"} NaN\n");
    free(text);
    v = 0.1;
    text = render(reg);
    assert_non_null(strstr(text, "g_fn 0.1\n"));
    free(text);
    metrics_free(reg);
    (void)state;
}

static void
test_bad_names_and_type_conflicts_give_null(void **state)
{
    struct metrics *reg = metrics_new();

    assert_null(metrics_counter(reg, "9starts_with_digit", "x"));
    assert_null(metrics_counter(reg, "has-dash", "x"));
    assert_null(metrics_counter(reg, "", "x"));
    assert_null(metrics_counter_labels(reg, "ok_total", "x", "bad-label", "v"));
    assert_null(metrics_counter_labels(reg, "ok_total", "x", "__reserved", "v"));
    assert_null(metrics_counter_labels(reg, "ok_total", "x", "a", "1", "a", "2"));
    assert_non_null(metrics_counter(reg, "dual", "x"));
    assert_null(metrics_gauge(reg, "dual", "x"));
    /* NULL registry and NULL series are harmless */
    assert_null(metrics_counter(NULL, "x_total", "x"));
    metrics_counter_inc(NULL);
    metrics_gauge_set(NULL, 3);
    /* a family whose only series failed is not rendered */
    char *text = render(reg);
    assert_string_equal(text, "# HELP dual x\n# TYPE dual counter\ndual 0\n");
    free(text);
    metrics_free(reg);
    metrics_free(NULL);
    (void)state;
}

static void
test_process_metrics_are_present_and_sane(void **state)
{
    struct metrics *reg = metrics_new();
    char *text, *p;
    double rss;

    assert_int_equal(metrics_add_process(reg), 0);
    text = render(reg);
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(text, "# TYPE process_resident_memory_bytes gauge\n"));
    assert_non_null(strstr(text, "# TYPE process_open_fds gauge\n"));
    assert_non_null(strstr(text, "# TYPE process_start_time_seconds gauge\n"));
    p = strstr(text, "\nprocess_resident_memory_bytes ");
    assert_non_null(p);
    rss = strtod(p + strlen("\nprocess_resident_memory_bytes "), NULL);
    assert_true(rss > 100000.0);          /* a running process has some RSS */
    p = strstr(text, "\nprocess_start_time_seconds ");
    assert_non_null(p);
    assert_true(strtod(p + strlen("\nprocess_start_time_seconds "), NULL) > 1.6e9);
    p = strstr(text, "\nprocess_open_fds ");
    assert_non_null(p);
    assert_true(strtod(p + strlen("\nprocess_open_fds "), NULL) >= 3);
    free(text);
    metrics_free(reg);
    (void)state;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge_exact_text),
        cmocka_unit_test(test_labelled_counters_share_one_family),
        cmocka_unit_test(test_label_values_and_help_are_escaped),
        cmocka_unit_test(test_callback_gauges_are_evaluated_at_scrape),
        cmocka_unit_test(test_bad_names_and_type_conflicts_give_null),
        cmocka_unit_test(test_process_metrics_are_present_and_sane),
    };

    log_set_level(LOG_ERR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
