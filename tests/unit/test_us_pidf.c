/*
 * test_us_pidf: PIDF parsing and composition (us_pidf.c, RFC 3863 / 4480) and the
 * SERVICE document parser of the lists (us_lists.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "us_lists.h"
#include "us_pidf.h"

#define AWAY                                                                                       \
    "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' "                        \
    "xmlns:dm='urn:ietf:params:xml:ns:pidf:data-model' xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid' " \
    "entity='sip:alice@example.com'><tuple id='t1'><status><basic>open</basic></status>"          \
    "<contact>sip:alice@10.0.0.1</contact><note>lunch</note></tuple>"                              \
    "<dm:person id='p1'><rpid:activities><rpid:away/></rpid:activities></dm:person></presence>"

static void
test_pidf_parse_reads_basic_activity_and_note(void **state)
{
    struct us_pidf_info info;
    char err[128];

    (void)state;
    assert_int_equal(us_pidf_parse(AWAY, strlen(AWAY), &info, err, sizeof err), 0);
    assert_string_equal(info.entity, "sip:alice@example.com");
    assert_int_equal(info.tuples, 1);
    assert_int_equal(info.open, 1);
    assert_string_equal(info.activity, "away");
    assert_string_equal(info.note, "lunch");
}

static void
test_pidf_parse_refuses_malformed_documents(void **state)
{
    static const char *bad[] = {
        "",
        "<presence",
        "<presence xmlns='urn:other' entity='sip:a@b'/>",
        "<presence xmlns='urn:ietf:params:xml:ns:pidf'/>",                               /* no entity */
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple><status/></tuple></presence>",
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple id='x'/></presence>",
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple id='x'><status>"
        "<basic>maybe</basic></status></tuple></presence>",
        "<?xml version='1.0'?><!DOCTYPE p [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='&e;'/>",
    };
    char err[128];

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(us_pidf_parse(bad[i], strlen(bad[i]), NULL, err, sizeof err), -1);
        assert_true(err[0] != '\0');
    }
}

static void
test_pidf_compose_merges_publications_and_endpoints(void **state)
{
    struct us_pidf_part parts[3] = {
        {AWAY, strlen(AWAY), NULL, NULL},
        {AWAY, strlen(AWAY), NULL, NULL},            /* same tuple id: renamed */
        {NULL, 0, "ep2", "sip:alice@10.0.0.2"},      /* registered, published nothing */
    };
    struct us_pidf_info info;
    size_t len = 0;
    char *doc = us_pidf_compose("sip:alice@example.com", parts, 3, &len);

    (void)state;
    assert_non_null(doc);
    assert_int_equal(strlen(doc), len);
    assert_int_equal(us_pidf_parse(doc, len, &info, NULL, 0), 0);
    assert_int_equal(info.tuples, 3);
    assert_int_equal(info.open, 3);
    assert_string_equal(info.activity, "away");
    assert_non_null(strstr(doc, "id=\"t1-1\""));
    assert_non_null(strstr(doc, "sip:alice@10.0.0.2"));
    /* one person element only (the first part's) */
    assert_null(strstr(strstr(doc, "person") + 1, "<dm:person"));
    free(doc);
}

static void
test_pidf_offline_is_one_closed_tuple(void **state)
{
    struct us_pidf_info info;
    size_t len = 0;
    char *doc = us_pidf_offline("sip:bob@example.com", &len);

    (void)state;
    assert_non_null(doc);
    assert_int_equal(us_pidf_parse(doc, len, &info, NULL, 0), 0);
    assert_int_equal(info.tuples, 1);
    assert_int_equal(info.open, 0);
    assert_string_equal(info.activity, "");
    assert_string_equal(info.entity, "sip:bob@example.com");
    free(doc);
}

static void
test_pidf_compose_escapes_entity(void **state)
{
    size_t len = 0;
    char *doc = us_pidf_offline("sip:a&b@example.com", &len);

    (void)state;
    assert_non_null(doc);
    assert_non_null(strstr(doc, "a&amp;b"));
    free(doc);
}

static void
test_service_parse_reads_operations(void **state)
{
    static const char xml[] =
        "<service xmlns='urn:parley:params:xml:ns:contacts' version='4'>"
        "<set-group id='1' name='Friends'/>"
        "<set-contact uri='sip:Bob@Example.COM;transport=tcp' name='Bob' groups='1'/>"
        "<delete-contact uri='carol@example.com'/>"
        "<block domain='Evil.org'/><allow user='sip:dave@evil.org'/><clear user='eve@x.org'/>"
        "</service>";
    struct us_service svc;
    char err[128];

    (void)state;
    assert_int_equal(us_service_parse(xml, strlen(xml), &svc, err, sizeof err), 0);
    assert_int_equal(svc.version, 4);
    assert_int_equal(svc.nops, 6);
    assert_int_equal(svc.ops[0].kind, US_OP_GROUP_SET);
    assert_string_equal(svc.ops[0].name, "Friends");
    assert_int_equal(svc.ops[1].kind, US_OP_CONTACT_SET);
    assert_string_equal(svc.ops[1].key, "bob@example.com");
    assert_string_equal(svc.ops[1].groups, "1");
    assert_int_equal(svc.ops[2].kind, US_OP_CONTACT_DEL);
    assert_int_equal(svc.ops[3].kind, US_OP_ACL_SET);
    assert_true(svc.ops[3].block);
    assert_string_equal(svc.ops[3].key, "evil.org");
    assert_false(svc.ops[4].block);
    assert_string_equal(svc.ops[4].key, "dave@evil.org");
    assert_int_equal(svc.ops[5].kind, US_OP_ACL_DEL);
    us_service_clear(&svc);
}

static void
test_service_parse_refuses_bad_documents(void **state)
{
    static const char *bad[] = {
        "<service",
        "<service version='1'/>",                                                       /* no namespace */
        "<service xmlns='urn:parley:params:xml:ns:contacts' version='x'/>",
        "<service xmlns='urn:parley:params:xml:ns:contacts'><launch/></service>",
        "<service xmlns='urn:parley:params:xml:ns:contacts'><set-contact uri='nobody'/></service>",
        "<service xmlns='urn:parley:params:xml:ns:contacts'><block/></service>",
        "<service xmlns='urn:parley:params:xml:ns:contacts'><block user='a@b' domain='b'/></service>",
        "<service xmlns='urn:parley:params:xml:ns:contacts'><block domain='a b'/></service>",
        "<service xmlns='urn:parley:params:xml:ns:contacts'><set-group id='has space'/></service>",
    };
    struct us_service svc;
    char err[128];

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(us_service_parse(bad[i], strlen(bad[i]), &svc, err, sizeof err), -1);
        assert_true(err[0] != '\0');
        assert_int_equal(svc.nops, 0);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pidf_parse_reads_basic_activity_and_note),
        cmocka_unit_test(test_pidf_parse_refuses_malformed_documents),
        cmocka_unit_test(test_pidf_compose_merges_publications_and_endpoints),
        cmocka_unit_test(test_pidf_offline_is_one_closed_tuple),
        cmocka_unit_test(test_pidf_compose_escapes_entity),
        cmocka_unit_test(test_service_parse_reads_operations),
        cmocka_unit_test(test_service_parse_refuses_bad_documents),
    };

    us_pidf_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
