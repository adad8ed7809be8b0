/*
 * Unit tests for homeserver/us_location: the in-memory AOR -> bindings table.
 * add/find/remove/purge, (instance, reg-id) keyed vs contact keyed lookup, counts,
 * and growth past the initial 4096 buckets (rehash) keeping every entry findable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "us_location.h"

static struct us_binding *
add(struct us_location *loc, const char *aor, const char *contact, const char *instance, int reg_id,
    int64_t expires_at)
{
    struct us_aor *a = us_loc_get(loc, aor);
    struct us_binding *b;

    assert_non_null(a);
    b = us_loc_binding_add(loc, a);
    assert_non_null(b);
    assert_int_equal(us_loc_set_str(&b->contact, contact), 0);
    assert_int_equal(us_loc_set_str(&b->instance, instance), 0);
    b->reg_id = reg_id;
    b->expires_at = expires_at;
    b->q = 1000;
    return b;
}

static void
test_us_loc_get_find_release(void **state)
{
    struct us_location *loc = us_loc_new();
    struct us_aor *a;

    assert_non_null(loc);
    assert_int_equal(us_loc_aor_count(loc), 0);
    assert_int_equal(us_loc_binding_count(loc), 0);
    assert_null(us_loc_find(loc, "alice@example.com"));
    a = us_loc_get(loc, "alice@example.com");
    assert_non_null(a);
    assert_string_equal(a->aor, "alice@example.com");
    assert_ptr_equal(us_loc_get(loc, "alice@example.com"), a);
    assert_ptr_equal(us_loc_find(loc, "alice@example.com"), a);
    assert_null(us_loc_find(loc, "Alice@example.com"));   /* callers lowercase the AOR */
    assert_int_equal(us_loc_aor_count(loc), 1);
    assert_int_equal(a->count, 0);

    /* release keeps an AOR that still has bindings */
    add(loc, "alice@example.com", "sip:alice@192.0.2.1", NULL, 0, 100);
    us_loc_release(loc, a);
    assert_ptr_equal(us_loc_find(loc, "alice@example.com"), a);
    us_loc_binding_remove(loc, a, a->bindings);
    assert_int_equal(a->count, 0);
    assert_int_equal(us_loc_binding_count(loc), 0);
    us_loc_release(loc, a);
    assert_null(us_loc_find(loc, "alice@example.com"));
    assert_int_equal(us_loc_aor_count(loc), 0);
    us_loc_free(loc);
    us_loc_free(NULL);
}

static void
test_us_loc_binding_lookup_by_contact_and_by_instance(void **state)
{
    struct us_location *loc = us_loc_new();
    struct us_binding *plain, *inst1, *inst2, *b;
    struct us_aor *a;

    plain = add(loc, "bob@example.com", "sip:bob@192.0.2.1:5060", NULL, 0, 100);
    inst1 = add(loc, "bob@example.com", "sip:bob@192.0.2.2:5060;transport=tcp", "urn:uuid:1", 1, 100);
    inst2 = add(loc, "bob@example.com", "sip:bob@192.0.2.3:5060;transport=tcp", "urn:uuid:1", 2, 100);
    a = us_loc_find(loc, "bob@example.com");
    assert_int_equal(a->count, 3);
    assert_int_equal(us_loc_binding_count(loc), 3);
    assert_int_equal(us_loc_aor_count(loc), 1);

    /* contact keyed */
    assert_ptr_equal(us_loc_binding_find(a, "sip:bob@192.0.2.1:5060", NULL, 0), plain);
    assert_null(us_loc_binding_find(a, "sip:bob@192.0.2.9:5060", NULL, 0));
    /* (instance, reg-id) keyed: a new flow (new contact) of the same instance is the same binding */
    assert_ptr_equal(us_loc_binding_find(a, "sip:bob@198.51.100.1:7000", "urn:uuid:1", 1), inst1);
    assert_ptr_equal(us_loc_binding_find(a, "sip:bob@198.51.100.1:7000", "urn:uuid:1", 2), inst2);
    assert_null(us_loc_binding_find(a, "sip:bob@198.51.100.1:7000", "urn:uuid:1", 3));
    assert_null(us_loc_binding_find(a, "sip:bob@198.51.100.1:7000", "urn:uuid:2", 1));
    /* a contact-keyed binding that later sends an instance is the same binding */
    assert_ptr_equal(us_loc_binding_find(a, "sip:bob@192.0.2.1:5060", "urn:uuid:new", 1), plain);
    /* without an instance, an instance binding is still found by its contact */
    assert_ptr_equal(us_loc_binding_find(a, "sip:bob@192.0.2.3:5060;transport=tcp", NULL, 0), inst2);

    /* remove the middle one */
    us_loc_binding_remove(loc, a, inst1);
    assert_int_equal(a->count, 2);
    assert_int_equal(us_loc_binding_count(loc), 2);
    assert_null(us_loc_binding_find(a, "sip:x@y", "urn:uuid:1", 1));
    b = us_loc_binding_find(a, "sip:x@y", "urn:uuid:1", 2);
    assert_ptr_equal(b, inst2);
    /* removing a binding that is not in the list changes nothing */
    {
        struct us_aor *other = us_loc_get(loc, "other@example.com");
        struct us_binding *ob = add(loc, "other@example.com", "sip:o@h", NULL, 0, 100);
        us_loc_binding_remove(loc, a, ob);
        assert_int_equal(us_loc_binding_count(loc), 3);
        assert_int_equal(other->count, 1);
    }
    us_loc_free(loc);
}

static void
test_us_loc_set_str_copies_and_clears(void **state)
{
    char *f = NULL;
    char src[] = "value";

    assert_int_equal(us_loc_set_str(&f, src), 0);
    src[0] = 'X';
    assert_string_equal(f, "value");
    assert_int_equal(us_loc_set_str(&f, "other"), 0);
    assert_string_equal(f, "other");
    assert_int_equal(us_loc_set_str(&f, NULL), 0);
    assert_null(f);
}

struct purged {
    int n;
    char aor[8][64];
    char contact[8][64];
};

static void
on_expired(const char *aor, const struct us_binding *b, void *arg)
{
    struct purged *p = arg;

    if (p->n < 8) {
        snprintf(p->aor[p->n], sizeof p->aor[0], "%s", aor);
        snprintf(p->contact[p->n], sizeof p->contact[0], "%s", b->contact);
    }
    p->n++;
}

static void
test_us_loc_purge_removes_expired_and_empty_aors(void **state)
{
    struct us_location *loc = us_loc_new();
    struct purged p = {0};
    struct us_aor *a;

    add(loc, "a@x", "sip:a1@h", NULL, 0, 100);    /* expired at 100 */
    add(loc, "a@x", "sip:a2@h", NULL, 0, 200);
    add(loc, "b@x", "sip:b1@h", NULL, 0, 99);
    add(loc, "c@x", "sip:c1@h", NULL, 0, 1000);
    assert_int_equal(us_loc_binding_count(loc), 4);
    assert_int_equal(us_loc_aor_count(loc), 3);

    assert_int_equal(us_loc_purge(loc, 100, on_expired, &p), 2);   /* expires_at <= now */
    assert_int_equal(p.n, 2);
    for (int i = 0; i < 2; i++) {
        bool a1 = strcmp(p.aor[i], "a@x") == 0 && strcmp(p.contact[i], "sip:a1@h") == 0;
        bool b1 = strcmp(p.aor[i], "b@x") == 0 && strcmp(p.contact[i], "sip:b1@h") == 0;
        assert_true(a1 || b1);
    }
    assert_int_equal(us_loc_binding_count(loc), 2);
    assert_int_equal(us_loc_aor_count(loc), 2);
    assert_null(us_loc_find(loc, "b@x"));          /* emptied AOR released */
    a = us_loc_find(loc, "a@x");
    assert_non_null(a);
    assert_int_equal(a->count, 1);
    assert_string_equal(a->bindings->contact, "sip:a2@h");

    /* nothing more at the same time; a NULL callback is fine */
    assert_int_equal(us_loc_purge(loc, 100, NULL, NULL), 0);
    assert_int_equal(us_loc_purge(loc, 5000, NULL, NULL), 2);
    assert_int_equal(us_loc_binding_count(loc), 0);
    assert_int_equal(us_loc_aor_count(loc), 0);
    us_loc_free(loc);
}

static void
test_us_loc_growth_past_4096_aors_keeps_every_entry(void **state)
{
    enum { N = 20000 };
    struct us_location *loc = us_loc_new();
    char aor[64], contact[64];

    for (int i = 0; i < N; i++) {
        snprintf(aor, sizeof aor, "user%d@example.com", i);
        snprintf(contact, sizeof contact, "sip:user%d@192.0.2.%d", i, i % 250);
        add(loc, aor, contact, (i % 3) ? NULL : "urn:uuid:x", i % 3 ? 0 : 1, i % 2 ? 10 : 1000);
    }
    assert_int_equal(us_loc_aor_count(loc), N);
    assert_int_equal(us_loc_binding_count(loc), N);
    for (int i = 0; i < N; i++) {
        struct us_aor *a;
        snprintf(aor, sizeof aor, "user%d@example.com", i);
        snprintf(contact, sizeof contact, "sip:user%d@192.0.2.%d", i, i % 250);
        a = us_loc_find(loc, aor);
        if (a == NULL)
            fail_msg("lost %s after growth", aor);
        assert_ptr_equal(us_loc_get(loc, aor), a);
        assert_non_null(us_loc_binding_find(a, contact, NULL, 0));
    }
    assert_int_equal(us_loc_aor_count(loc), N);

    /* purge the odd half (expires 10) and check the rest after the rehashes */
    assert_int_equal(us_loc_purge(loc, 10, NULL, NULL), N / 2);
    assert_int_equal(us_loc_aor_count(loc), N / 2);
    assert_int_equal(us_loc_binding_count(loc), N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(aor, sizeof aor, "user%d@example.com", i);
        if (i % 2)
            assert_null(us_loc_find(loc, aor));
        else
            assert_non_null(us_loc_find(loc, aor));
    }
    us_loc_free(loc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_us_loc_get_find_release),
        cmocka_unit_test(test_us_loc_binding_lookup_by_contact_and_by_instance),
        cmocka_unit_test(test_us_loc_set_str_copies_and_clears),
        cmocka_unit_test(test_us_loc_purge_removes_expired_and_empty_aors),
        cmocka_unit_test(test_us_loc_growth_past_4096_aors_keeps_every_entry),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
