/* us_flood: token buckets per source address, bans after failed authentications, LRU bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "us_flood.h"

static struct tp_addr
addr(const char *ip, uint16_t port)
{
    struct tp_addr a;

    assert_int_equal(tp_addr_from_ip(&a, ip, port), 0);
    return a;
}

static struct us_flood *
flood(unsigned reg_rate, unsigned req_rate, unsigned burst, unsigned ban_failures, unsigned ban_s, unsigned max)
{
    struct us_flood *fl = us_flood_new(NULL);
    struct us_flood_opts o = {reg_rate, req_rate, burst, ban_failures, ban_s, max};

    assert_non_null(fl);
    assert_int_equal(us_flood_set_opts(fl, &o), 0);
    return fl;
}

static void
all_off_passes_everything_and_tracks_nothing(void **state)
{
    struct us_flood *fl = us_flood_new(NULL);
    struct tp_addr a = addr("192.0.2.1", 5060);
    struct us_flood_stats st;

    (void)state;
    for (int i = 0; i < 10000; i++)
        assert_int_equal(us_flood_admit(fl, &a, true, 1000, NULL), US_FLOOD_PASS);
    us_flood_stats_get(fl, &st);
    assert_int_equal(st.addresses, 0);
    us_flood_free(fl);
}

static void
register_bucket_allows_burst_then_refuses_with_retry_after(void **state)
{
    struct us_flood *fl = flood(2, 0, 3, 1, 0, 100);
    struct tp_addr a = addr("192.0.2.1", 5060);
    struct us_flood_stats st;
    unsigned retry = 0;

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(us_flood_admit(fl, &a, true, 1000, NULL), US_FLOOD_PASS);
    assert_int_equal(us_flood_admit(fl, &a, true, 1000, &retry), US_FLOOD_REGISTER_RATE);
    assert_int_equal(retry, 1);   /* 0 tokens at 2/s: back in 0.5 s, rounded up */
    /* other methods are not limited by the REGISTER bucket */
    assert_int_equal(us_flood_admit(fl, &a, false, 1000, NULL), US_FLOOD_PASS);
    /* 500 ms later one token is back, not two */
    assert_int_equal(us_flood_admit(fl, &a, true, 1500, NULL), US_FLOOD_PASS);
    assert_int_equal(us_flood_admit(fl, &a, true, 1500, NULL), US_FLOOD_REGISTER_RATE);
    /* a long pause refills only up to the burst */
    for (int i = 0; i < 3; i++)
        assert_int_equal(us_flood_admit(fl, &a, true, 100000, NULL), US_FLOOD_PASS);
    assert_int_equal(us_flood_admit(fl, &a, true, 100000, NULL), US_FLOOD_REGISTER_RATE);
    us_flood_stats_get(fl, &st);
    assert_int_equal(st.rejected[US_FLOOD_REGISTER_RATE], 3);
    us_flood_free(fl);
}

static void
request_bucket_is_per_address_not_per_port(void **state)
{
    struct us_flood *fl = flood(0, 1, 2, 1, 0, 100);
    struct tp_addr a1 = addr("192.0.2.1", 5060), a2 = addr("192.0.2.1", 40000);
    struct tp_addr b = addr("192.0.2.2", 5060);
    unsigned retry = 0;

    (void)state;
    assert_int_equal(us_flood_admit(fl, &a1, false, 0, NULL), US_FLOOD_PASS);
    assert_int_equal(us_flood_admit(fl, &a2, false, 0, NULL), US_FLOOD_PASS);
    assert_int_equal(us_flood_admit(fl, &a1, true, 0, &retry), US_FLOOD_REQUEST_RATE);
    assert_int_equal(retry, 1);
    assert_int_equal(us_flood_admit(fl, &b, false, 0, NULL), US_FLOOD_PASS);
    us_flood_free(fl);
}

static void
ipv4_mapped_ipv6_is_the_ipv4_address(void **state)
{
    struct us_flood *fl = flood(0, 1, 1, 1, 0, 100);
    struct tp_addr v4 = addr("192.0.2.7", 5060), mapped = addr("::ffff:192.0.2.7", 5060);
    struct tp_addr v6 = addr("2001:db8::7", 5060);

    (void)state;
    assert_int_equal(us_flood_admit(fl, &v4, false, 0, NULL), US_FLOOD_PASS);
    assert_int_equal(us_flood_admit(fl, &mapped, false, 0, NULL), US_FLOOD_REQUEST_RATE);
    assert_int_equal(us_flood_admit(fl, &v6, false, 0, NULL), US_FLOOD_PASS);
    us_flood_free(fl);
}

static void
failed_authentications_ban_for_the_ban_time(void **state)
{
    struct us_flood *fl = flood(0, 0, 1, 3, 10, 100);
    struct tp_addr a = addr("198.51.100.9", 5060), other = addr("198.51.100.10", 5060);
    struct us_flood_stats st;
    unsigned retry = 0;

    (void)state;
    us_flood_auth_failed_at(fl, &a, 1000);
    us_flood_auth_failed_at(fl, &a, 2000);
    assert_int_equal(us_flood_admit(fl, &a, true, 2500, NULL), US_FLOOD_PASS);
    us_flood_auth_failed_at(fl, &a, 3000);   /* the third within 10 s: banned until 13 s */
    assert_int_equal(us_flood_admit(fl, &a, false, 3000, &retry), US_FLOOD_BANNED);
    assert_int_equal(retry, 10);
    assert_int_equal(us_flood_admit(fl, &a, true, 12500, &retry), US_FLOOD_BANNED);
    assert_int_equal(retry, 1);
    assert_int_equal(us_flood_admit(fl, &other, true, 5000, NULL), US_FLOOD_PASS);
    assert_int_equal(us_flood_admit(fl, &a, true, 13000, NULL), US_FLOOD_PASS);
    /* the count starts again after a ban */
    us_flood_auth_failed_at(fl, &a, 14000);
    assert_int_equal(us_flood_admit(fl, &a, true, 14000, NULL), US_FLOOD_PASS);
    us_flood_stats_get(fl, &st);
    assert_int_equal(st.bans, 1);
    assert_int_equal(st.rejected[US_FLOOD_BANNED], 2);
    us_flood_free(fl);
}

static void
failures_outside_the_window_do_not_add_up(void **state)
{
    struct us_flood *fl = flood(0, 0, 1, 2, 5, 100);
    struct tp_addr a = addr("198.51.100.9", 5060);

    (void)state;
    us_flood_auth_failed_at(fl, &a, 0);
    us_flood_auth_failed_at(fl, &a, 6000);   /* window of 5 s passed: a new count */
    assert_int_equal(us_flood_admit(fl, &a, true, 6000, NULL), US_FLOOD_PASS);
    us_flood_auth_failed_at(fl, &a, 7000);
    assert_int_equal(us_flood_admit(fl, &a, true, 7000, NULL), US_FLOOD_BANNED);
    us_flood_free(fl);
}

static void
table_is_bounded_and_forgets_the_least_recently_seen(void **state)
{
    struct us_flood *fl = flood(0, 1, 1, 1, 0, 4);
    struct us_flood_stats st;
    char ip[32];

    (void)state;
    for (int i = 0; i < 1000; i++) {
        struct tp_addr a;
        snprintf(ip, sizeof ip, "10.0.%d.%d", i / 256, i % 256);
        a = addr(ip, 5060);
        assert_int_equal(us_flood_admit(fl, &a, false, 0, NULL), US_FLOOD_PASS);
    }
    us_flood_stats_get(fl, &st);
    assert_int_equal(st.addresses, 4);
    assert_int_equal(st.evictions, 996);
    {
        struct tp_addr recent = addr("10.0.3.231", 5060);   /* i = 999: still tracked, bucket empty */
        struct tp_addr old = addr("10.0.0.0", 5060);        /* i = 0: forgotten, a full bucket again */
        assert_int_equal(us_flood_admit(fl, &recent, false, 0, NULL), US_FLOOD_REQUEST_RATE);
        assert_int_equal(us_flood_admit(fl, &old, false, 0, NULL), US_FLOOD_PASS);
    }
    /* shrinking the table evicts at once */
    {
        struct us_flood_opts o = {0, 1, 1, 1, 0, 2};
        assert_int_equal(us_flood_set_opts(fl, &o), 0);
        us_flood_stats_get(fl, &st);
        assert_int_equal(st.addresses, 2);
    }
    us_flood_free(fl);
}

static void
invalid_options_are_refused(void **state)
{
    struct us_flood *fl = us_flood_new(NULL);
    struct us_flood_opts zero_burst = {1, 1, 0, 1, 0, 10}, zero_max = {1, 1, 1, 1, 0, 0};

    (void)state;
    assert_int_equal(us_flood_set_opts(fl, &zero_burst), -1);
    assert_int_equal(us_flood_set_opts(fl, &zero_max), -1);
    us_flood_free(fl);
    us_flood_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(all_off_passes_everything_and_tracks_nothing),
        cmocka_unit_test(register_bucket_allows_burst_then_refuses_with_retry_after),
        cmocka_unit_test(request_bucket_is_per_address_not_per_port),
        cmocka_unit_test(ipv4_mapped_ipv6_is_the_ipv4_address),
        cmocka_unit_test(failed_authentications_ban_for_the_ban_time),
        cmocka_unit_test(failures_outside_the_window_do_not_add_up),
        cmocka_unit_test(table_is_bounded_and_forgets_the_least_recently_seen),
        cmocka_unit_test(invalid_options_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
