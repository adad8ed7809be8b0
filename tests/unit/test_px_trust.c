/*
 * Unit tests of px_trust's pure parts: trusted-listener specs, source allow lists,
 * static route matching and scoring, phone numbers, the per-source throttle table,
 * and the settings table with its check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "directory/dir_json.h"
#include "proxy/px_trust.h"
#include "sip/sip_msg.h"
#include "transport/tp.h"

static struct tp_addr
addr(const char *ip, uint16_t port)
{
    struct tp_addr a;

    assert_int_equal(tp_addr_from_ip(&a, ip, port), 0);
    return a;
}

static osip_uri_t *
uri(const char *text)
{
    osip_uri_t *u = NULL;

    assert_int_equal(osip_uri_init(&u), 0);
    assert_int_equal(osip_uri_parse(u, text), 0);
    return u;
}

static struct dir_route *
route(const char *json)
{
    char err[200];
    struct dir_route *r = dir_route_decode("r", json, strlen(json), err, sizeof err);

    assert_non_null(r);
    return r;
}

static void
test_trusted_listener_spec_parses_listener_and_allow_list(void **state)
{
    struct px_trusted_listener tl;
    char err[200];

    assert_int_equal(px_trusted_listener_parse("udp:127.0.0.1:5070=127.0.0.1,10.0.0.0/8, ::1", &tl, err,
                                               sizeof err), 0);
    assert_string_equal(tl.spec, "udp:127.0.0.1:5070");
    assert_int_equal(tl.proto, TP_UDP);
    assert_int_equal(tp_addr_port(&tl.addr), 5070);
    assert_int_equal(tl.n_allow, 3);
    assert_string_equal(tl.allow[1], "10.0.0.0/8");
    assert_string_equal(tl.allow[2], "::1");
    assert_int_equal(px_trusted_listener_parse("tcp:[::1]:5072=::1", &tl, err, sizeof err), 0);
    assert_int_equal(tl.proto, TP_TCP);
}

static void
test_trusted_listener_spec_refuses_bad_input(void **state)
{
    struct px_trusted_listener tl;
    char err[200];
    const char *bad[] = {
        "udp:127.0.0.1:5070",            /* no allow list */
        "udp:127.0.0.1:5070=",           /* empty allow list */
        "udp:127.0.0.1=127.0.0.1",       /* no port */
        "udp:127.0.0.1:0=127.0.0.1",     /* port 0 */
        "udp:127.0.0.1:5070=gw.example", /* a name, not an address */
        "udp:127.0.0.1:5070=10.0.0.0/33",
        "udp:127.0.0.1:5070=10.0.0.0/",
        "sctp:127.0.0.1:5070=127.0.0.1",
        "=127.0.0.1",
        "",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(px_trusted_listener_parse(bad[i], &tl, err, sizeof err), -1);
        assert_true(err[0] != '\0');
    }
}

static void
test_allow_list_matches_addresses_and_prefixes(void **state)
{
    const char *allow[] = {"192.0.2.7", "10.0.0.0/8", "2001:db8::/32", "bogus"};
    struct tp_addr a;

    a = addr("192.0.2.7", 5060);
    assert_true(px_trust_addr_allowed(allow, 4, &a));
    a = addr("192.0.2.8", 5060);
    assert_false(px_trust_addr_allowed(allow, 4, &a));
    a = addr("10.200.1.1", 1);
    assert_true(px_trust_addr_allowed(allow, 4, &a));
    a = addr("11.0.0.1", 1);
    assert_false(px_trust_addr_allowed(allow, 4, &a));
    a = addr("2001:db8:1::5", 1);
    assert_true(px_trust_addr_allowed(allow, 4, &a));
    a = addr("2001:db9::5", 1);
    assert_false(px_trust_addr_allowed(allow, 4, &a));
    /* an IPv4-mapped IPv6 source (dual-stack socket) compares as IPv4 */
    a = addr("::ffff:192.0.2.7", 1);
    assert_true(px_trust_addr_allowed(allow, 4, &a));
    /* odd prefix lengths */
    {
        const char *p25[] = {"192.0.2.128/25"};
        a = addr("192.0.2.200", 1);
        assert_true(px_trust_addr_allowed(p25, 1, &a));
        a = addr("192.0.2.127", 1);
        assert_false(px_trust_addr_allowed(p25, 1, &a));
    }
    assert_false(px_trust_addr_allowed(allow, 0, &a));
}

static void
test_phone_number_from_tel_and_user_phone(void **state)
{
    char num[64];
    osip_uri_t *u;

    u = uri("tel:+1-555-0100;phone-context=example.com");
    assert_true(px_trust_phone_number(u, num, sizeof num));
    assert_string_equal(num, "15550100");
    osip_uri_free(u);
    u = uri("sip:+44(20)7946.0000@gw.example.com;user=phone");
    assert_true(px_trust_phone_number(u, num, sizeof num));
    assert_string_equal(num, "442079460000");
    osip_uri_free(u);
    u = uri("sip:15550100@example.com");   /* digits but not user=phone */
    assert_false(px_trust_phone_number(u, num, sizeof num));
    osip_uri_free(u);
}

static void
test_route_scores_prefer_longest_prefix_then_domain_then_tel(void **state)
{
    struct dir_route *tel = route("{\"match\":\"tel\",\"next_hop\":\"sip:gw0.example\"}");
    struct dir_route *p1 = route("{\"match\":\"prefix:1\",\"next_hop\":\"sip:gw1.example\"}");
    struct dir_route *p1555 = route("{\"match\":\"prefix:+1555\",\"next_hop\":\"sip:gw2.example\"}");
    struct dir_route *dom = route("{\"match\":\"domain:partner.example\",\"next_hop\":\"sip:gw3.example\"}");
    osip_uri_t *num = uri("tel:+1-555-0100");
    osip_uri_t *other = uri("tel:+4930123");
    osip_uri_t *partner = uri("sip:bob@Partner.Example");
    osip_uri_t *plain = uri("sip:bob@example.com");

    assert_int_equal(px_trust_route_score(tel, num), 1);
    assert_true(px_trust_route_score(p1555, num) > px_trust_route_score(p1, num));
    assert_true(px_trust_route_score(p1, num) > px_trust_route_score(dom, partner));
    assert_true(px_trust_route_score(dom, partner) > px_trust_route_score(tel, num));
    assert_int_equal(px_trust_route_score(p1555, other), -1);
    assert_int_equal(px_trust_route_score(tel, other), 1);
    assert_int_equal(px_trust_route_score(dom, plain), -1);
    assert_int_equal(px_trust_route_score(tel, plain), -1);
    assert_int_equal(px_trust_route_score(p1, partner), -1);   /* not a phone number */
    assert_int_equal(px_trust_route_score(NULL, plain), -1);
    osip_uri_free(num);
    osip_uri_free(other);
    osip_uri_free(partner);
    osip_uri_free(plain);
    dir_route_free(tel);
    dir_route_free(p1);
    dir_route_free(p1555);
    dir_route_free(dom);
}

static void
test_throttle_counts_per_source_and_forgets_at_zero(void **state)
{
    struct px_throttle *th = px_throttle_new(2);
    struct tp_addr a = addr("192.0.2.1", 5060), b = addr("192.0.2.1", 5061), c = addr("::1", 5060);

    assert_non_null(th);
    for (int i = 0; i < 10; i++)
        assert_true(px_throttle_acquire(th, &a, 10));
    assert_false(px_throttle_acquire(th, &a, 10));   /* the 11th */
    assert_int_equal(px_throttle_count(th, &a), 10);
    assert_true(px_throttle_acquire(th, &b, 10));    /* another port: another source */
    assert_int_equal(px_throttle_sources(th), 2);
    assert_false(px_throttle_acquire(th, &c, 10));   /* table full (max 2 sources) */
    px_throttle_release(th, &b);
    assert_int_equal(px_throttle_sources(th), 1);
    assert_true(px_throttle_acquire(th, &c, 10));
    px_throttle_release(th, &a);
    assert_true(px_throttle_acquire(th, &a, 10));    /* a slot given back is usable again */
    for (int i = 0; i < 10; i++)
        px_throttle_release(th, &a);
    assert_int_equal(px_throttle_count(th, &a), 0);
    px_throttle_release(th, &a);                     /* unknown source: no-op */
    assert_int_equal(px_throttle_sources(th), 1);
    px_throttle_free(th);
    px_throttle_free(NULL);
}

static int
load(struct px_trust_settings *s, struct cfg **out, int argc, char **argv, struct cfg_error *err)
{
    struct cfg *cfg = cfg_new("t", "0");

    memset(s, 0, sizeof *s);
    assert_int_equal(px_trust_cfg_register(cfg, s), 0);
    *out = cfg;
    return cfg_load(cfg, argc, argv, err);
}

static void
test_settings_defaults_and_checks(void **state)
{
    struct px_trust_settings s;
    struct cfg *cfg;
    struct cfg_error err;
    char *ok[] = {"t", "--trusted-listener", "udp:127.0.0.1:5070=127.0.0.1", "--trusted-listener",
                  "tcp:127.0.0.1:5070=10.0.0.0/8", "--max-client-transactions", "3"};
    char *bad_spec[] = {"t", "--trusted-listener", "udp:127.0.0.1:5070"};
    char *no_ca[] = {"t", "--tls-cert", "/x.pem"};
    char *tls_lis[] = {"t", "--trusted-listener", "tls:127.0.0.1:5071=127.0.0.1"};

    assert_int_equal(load(&s, &cfg, 1, ok, &err), CFG_RUN);
    assert_int_equal(s.max_client_tx, 10);
    assert_int_equal(s.retry_after_s, 5);
    cfg_free(cfg);
    assert_int_equal(load(&s, &cfg, 7, ok, &err), CFG_RUN);
    assert_int_equal(s.trusted_listener.n, 2);
    assert_int_equal(s.max_client_tx, 3);
    cfg_free(cfg);
    assert_int_equal(load(&s, &cfg, 3, bad_spec, &err), -1);
    assert_non_null(strstr(err.msg, "trusted-listener"));
    cfg_free(cfg);
    assert_int_equal(load(&s, &cfg, 3, no_ca, &err), -1);
    assert_non_null(strstr(err.msg, "tls-ca"));
    cfg_free(cfg);
    assert_int_equal(load(&s, &cfg, 3, tls_lis, &err), -1);
    assert_non_null(strstr(err.msg, "tls-cert"));
    cfg_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trusted_listener_spec_parses_listener_and_allow_list),
        cmocka_unit_test(test_trusted_listener_spec_refuses_bad_input),
        cmocka_unit_test(test_allow_list_matches_addresses_and_prefixes),
        cmocka_unit_test(test_phone_number_from_tel_and_user_phone),
        cmocka_unit_test(test_route_scores_prefer_longest_prefix_then_domain_then_tel),
        cmocka_unit_test(test_throttle_counts_per_source_and_forgets_at_zero),
        cmocka_unit_test(test_settings_defaults_and_checks),
    };

    sip_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
