/* Unit tests for shared/directory: value decoding, base64, watch line splitting, the
 * gateway answer parsers, the hash table and the cache (with its sqlite copy). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "directory/dir.h"
#include "directory/dir_cache.h"
#include "directory/dir_etcd.h"
#include "directory/dir_json.h"
#include "util/log.h"

#define MD5 "0123456789abcdef0123456789abcdef"
#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const char good_user[] =
    "{\"enabled\":true,\"home\":\"home1\",\"display\":\"Alice Example\","
    "\"ha1_md5\":\"" MD5 "\",\"ha1_sha256\":\"" SHA "\",\"realm\":\"example.com\"}";

static int
quiet(void **state)
{
    log_set_level(LOG_ERR);
    return 0;
}

/* ---- users ---------------------------------------------------------------------------- */

static void
test_user_decode_reads_every_field(void **state)
{
    char err[128] = "";
    struct dir_user *u = dir_user_decode("alice@example.com", good_user, strlen(good_user), err,
                                         sizeof err);

    assert_non_null(u);
    assert_string_equal(u->aor, "alice@example.com");
    assert_string_equal(u->user, "alice");
    assert_string_equal(u->domain, "example.com");
    assert_true(u->enabled);
    assert_string_equal(u->home, "home1");
    assert_string_equal(u->display, "Alice Example");
    assert_string_equal(u->ha1_md5, MD5);
    assert_string_equal(u->ha1_sha256, SHA);
    assert_string_equal(u->realm, "example.com");
    assert_string_equal(u->raw, good_user);
    dir_user_free(u);
}

static void
test_user_decode_lowercases_key_and_defaults_optional_fields(void **state)
{
    const char *v = "{\"enabled\":false,\"home\":\"h\",\"ha1_md5\":\"0123456789ABCDEF0123456789abcdef\","
                    "\"realm\":\"r\",\"future_field\":[1,2]}";
    char err[128];
    struct dir_user *u = dir_user_decode("Bob@Example.COM", v, strlen(v), err, sizeof err);

    assert_non_null(u);
    assert_string_equal(u->aor, "bob@example.com");
    assert_false(u->enabled);
    assert_string_equal(u->display, "");
    assert_null(u->ha1_sha256);
    assert_string_equal(u->ha1_md5, MD5);
    dir_user_free(u);
}

static void
test_user_decode_rejects_bad_values(void **state)
{
    static const struct {
        const char *key, *json, *why;
    } bad[] = {
        {"a@b", "", "bad JSON"},
        {"a@b", "{", "bad JSON"},
        {"a@b", "[]", "not a JSON object"},
        {"a@b", "\"x\"", "JSON"},
        {"a@b", "{\"home\":\"h\",\"ha1_md5\":\"" MD5 "\",\"realm\":\"r\"}", "\"enabled\""},
        {"a@b", "{\"enabled\":1,\"home\":\"h\",\"ha1_md5\":\"" MD5 "\",\"realm\":\"r\"}", "enabled"},
        {"a@b", "{\"enabled\":true,\"ha1_md5\":\"" MD5 "\",\"realm\":\"r\"}", "\"home\""},
        {"a@b", "{\"enabled\":true,\"home\":\"\",\"ha1_md5\":\"" MD5 "\",\"realm\":\"r\"}", "home"},
        {"a@b", "{\"enabled\":true,\"home\":7,\"ha1_md5\":\"" MD5 "\",\"realm\":\"r\"}", "home"},
        {"a@b", "{\"enabled\":true,\"home\":\"h\",\"realm\":\"r\"}", "ha1_md5"},
        {"a@b", "{\"enabled\":true,\"home\":\"h\",\"ha1_md5\":\"xyz\",\"realm\":\"r\"}", "32 hex"},
        {"a@b", "{\"enabled\":true,\"home\":\"h\",\"ha1_md5\":\"" MD5 "\",\"ha1_sha256\":\"" MD5
                "\",\"realm\":\"r\"}", "64 hex"},
        {"a@b", "{\"enabled\":true,\"home\":\"h\",\"ha1_md5\":\"" MD5 "\"}", "realm"},
        {"a@b", "{\"enabled\":true,\"enabled\":false,\"home\":\"h\",\"ha1_md5\":\"" MD5
                "\",\"realm\":\"r\"}", "bad JSON"},
        {"a@b", "{\"enabled\":true,\"home\":\"h\\u0000x\",\"ha1_md5\":\"" MD5 "\",\"realm\":\"r\"}", "NUL"},
        {"a@b", "{\"enabled\":true,\"home\":\"h\\nx\",\"ha1_md5\":\"" MD5 "\",\"realm\":\"r\"}", "control"},
        {"ab", good_user, "user@domain"},
        {"@b", good_user, "user@domain"},
        {"a@", good_user, "user@domain"},
        {"a@b@c", good_user, "user@domain"},
        {"a b@c", good_user, "bad character"},
        {"", good_user, "empty"},
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[160] = "";
        struct dir_user *u = dir_user_decode(bad[i].key, bad[i].json, strlen(bad[i].json), err,
                                             sizeof err);
        if (u != NULL)
            fail_msg("case %zu accepted: %s", i, bad[i].json);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, bad[i].why);
    }
}

/* ---- servers and routes ----------------------------------------------------------------- */

static void
test_server_decode_reads_fields_and_rejects_bad_roles(void **state)
{
    const char *v = "{\"role\":\"homeserver\",\"address\":\"sip:127.0.0.1:5070;transport=tcp\","
                    "\"cert_subject\":\"home1.pool.example\",\"admin\":\"http://127.0.0.1:8071\"}";
    char err[128] = "";
    struct dir_server *s = dir_server_decode("home1", v, strlen(v), err, sizeof err);

    assert_non_null(s);
    assert_string_equal(s->name, "home1");
    assert_int_equal(s->role, DIR_ROLE_HOMESERVER);
    assert_string_equal(s->address, "sip:127.0.0.1:5070;transport=tcp");
    assert_string_equal(s->cert_subject, "home1.pool.example");
    assert_string_equal(s->admin, "http://127.0.0.1:8071");
    dir_server_free(s);

    v = "{\"role\":\"edge\",\"address\":\"sips:10.0.0.1:5061\"}";
    s = dir_server_decode("e", v, strlen(v), err, sizeof err);
    assert_non_null(s);
    assert_int_equal(s->role, DIR_ROLE_EDGE);
    assert_string_equal(s->cert_subject, "");
    dir_server_free(s);

    v = "{\"role\":\"router\",\"address\":\"sip:x\"}";
    assert_null(dir_server_decode("e", v, strlen(v), err, sizeof err));
    assert_non_null(strstr(err, "role"));
    v = "{\"role\":\"edge\",\"address\":\"http://x\"}";
    assert_null(dir_server_decode("e", v, strlen(v), err, sizeof err));
    v = "{\"role\":\"edge\"}";
    assert_null(dir_server_decode("e", v, strlen(v), err, sizeof err));
    assert_non_null(strstr(err, "address"));
    v = "{\"role\":\"edge\",\"address\":\"sip:x\",\"cert_subject\":5}";
    assert_null(dir_server_decode("e", v, strlen(v), err, sizeof err));
    v = "{\"role\":\"edge\",\"address\":\"sip:x\"}";
    assert_null(dir_server_decode("a/b", v, strlen(v), err, sizeof err));
}

static void
test_route_decode_reads_patterns(void **state)
{
    const char *v = "{\"match\":\"prefix:+4930\",\"next_hop\":\"sip:gw.example:5060\","
                    "\"treat_as_server\":true,\"allow_from\":[\"127.0.0.1\",\"10.0.0.2\"]}";
    char err[128] = "";
    struct dir_route *r = dir_route_decode("pstn", v, strlen(v), err, sizeof err);

    assert_non_null(r);
    assert_int_equal(r->kind, DIR_MATCH_PREFIX);
    assert_string_equal(r->match_arg, "+4930");
    assert_string_equal(r->next_hop, "sip:gw.example:5060");
    assert_true(r->treat_as_server);
    assert_int_equal(r->n_allow_from, 2);
    assert_string_equal(r->allow_from[1], "10.0.0.2");
    dir_route_free(r);

    v = "{\"match\":\"tel\",\"next_hop\":\"sip:gw\"}";
    r = dir_route_decode("t", v, strlen(v), err, sizeof err);
    assert_non_null(r);
    assert_int_equal(r->kind, DIR_MATCH_TEL);
    assert_false(r->treat_as_server);
    assert_int_equal(r->n_allow_from, 0);
    dir_route_free(r);

    v = "{\"match\":\"domain:Partner.Example\",\"next_hop\":\"sip:gw\"}";
    r = dir_route_decode("d", v, strlen(v), err, sizeof err);
    assert_non_null(r);
    assert_int_equal(r->kind, DIR_MATCH_DOMAIN);
    assert_string_equal(r->match_arg, "partner.example");
    dir_route_free(r);

    static const char *const bad[] = {
        "{\"match\":\"prefix:\",\"next_hop\":\"sip:gw\"}",
        "{\"match\":\"prefix:12a\",\"next_hop\":\"sip:gw\"}",
        "{\"match\":\"domain:\",\"next_hop\":\"sip:gw\"}",
        "{\"match\":\"telephone\",\"next_hop\":\"sip:gw\"}",
        "{\"match\":\"tel\"}",
        "{\"match\":\"tel\",\"next_hop\":\"gw\"}",
        "{\"match\":\"tel\",\"next_hop\":\"sip:gw\",\"treat_as_server\":\"yes\"}",
        "{\"match\":\"tel\",\"next_hop\":\"sip:gw\",\"allow_from\":\"127.0.0.1\"}",
        "{\"match\":\"tel\",\"next_hop\":\"sip:gw\",\"allow_from\":[1]}",
        "{\"next_hop\":\"sip:gw\"}",
        "nope",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = dir_route_decode("x", bad[i], strlen(bad[i]), err, sizeof err);
        if (r != NULL)
            fail_msg("route case %zu accepted", i);
    }
}

/* ---- base64 ------------------------------------------------------------------------------ */

static void
test_b64_round_trips_every_padding(void **state)
{
    unsigned char data[64];
    static const struct {
        const char *plain, *enc;
    } known[] = {
        {"", ""}, {"a", "YQ=="}, {"ab", "YWI="}, {"abc", "YWJj"}, {"abcd", "YWJjZA=="},
        {"/parley/", "L3BhcmxleS8="},
    };

    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 37 + 1);
    data[5] = 0;
    for (size_t len = 0; len <= sizeof data; len++) {
        char *enc = dir_b64_encode(data, len), *dec = NULL;
        size_t n = 99;
        assert_non_null(enc);
        assert_int_equal(strlen(enc), 4 * ((len + 2) / 3));
        assert_int_equal(dir_b64_decode(enc, strlen(enc), &dec, &n), 0);
        assert_int_equal(n, len);       /* the EVP_DecodeBlock padding trap */
        assert_memory_equal(dec, data, len);
        free(enc);
        free(dec);
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        char *enc = dir_b64_encode(known[i].plain, strlen(known[i].plain)), *dec;
        size_t n;
        assert_string_equal(enc, known[i].enc);
        assert_int_equal(dir_b64_decode(known[i].enc, strlen(known[i].enc), &dec, &n), 0);
        assert_int_equal(n, strlen(known[i].plain));
        assert_string_equal(dec, known[i].plain);
        free(enc);
        free(dec);
    }
}

static void
test_b64_decode_rejects_malformed(void **state)
{
    static const char *const bad[] = {"Y", "YQ=", "YQ=a", "Y===", "=YQ=", "YQ!=", "YW Jj",
                                      "YWJj\n", "YQ==YQ=="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = (char *)1;
        size_t n;
        if (dir_b64_decode(bad[i], strlen(bad[i]), &out, &n) == 0)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_null(out);
    }
}

static void
test_prefix_end_increments_last_byte(void **state)
{
    size_t n;
    char *e = dir_etcd_prefix_end("/parley/", &n);

    assert_string_equal(e, "/parley0");
    assert_int_equal(n, 8);
    free(e);
    e = dir_etcd_prefix_end("a\xff", &n);
    assert_string_equal(e, "b");
    free(e);
    assert_null(dir_etcd_prefix_end("", &n));
}

/* ---- line splitter ---------------------------------------------------------------------- */

struct lines {
    char got[16][64];
    int n;
    int stop_after;
};

static int
collect(void *arg, char *line, size_t len)
{
    struct lines *l = arg;

    assert_int_equal(strlen(line), len);
    if (l->n < 16)
        snprintf(l->got[l->n], sizeof l->got[0], "%s", line);
    l->n++;
    return (l->stop_after && l->n >= l->stop_after) ? -1 : 0;
}

static void
test_linebuf_splits_at_every_chunk_boundary(void **state)
{
    const char stream[] = "{\"a\":1}\n{\"b\":22}\n\n{\"c\":333}\npartial";

    /* every way of cutting the stream into three chunks gives the same lines */
    for (size_t i = 0; i <= sizeof stream - 1; i++) {
        for (size_t j = i; j <= sizeof stream - 1; j++) {
            struct dir_linebuf lb;
            struct lines l = {.n = 0};
            dir_linebuf_init(&lb, 1024);
            assert_int_equal(dir_linebuf_feed(&lb, stream, i, collect, &l), 0);
            assert_int_equal(dir_linebuf_feed(&lb, stream + i, j - i, collect, &l), 0);
            assert_int_equal(dir_linebuf_feed(&lb, stream + j, sizeof stream - 1 - j, collect, &l), 0);
            assert_int_equal(l.n, 3);
            assert_string_equal(l.got[0], "{\"a\":1}");
            assert_string_equal(l.got[1], "{\"b\":22}");
            assert_string_equal(l.got[2], "{\"c\":333}");
            assert_int_equal(lb.n, strlen("partial"));
            dir_linebuf_free(&lb);
        }
    }
}

static void
test_linebuf_drops_oversize_lines_and_honours_stop(void **state)
{
    struct dir_linebuf lb;
    struct lines l = {.n = 0};
    char big[100];

    memset(big, 'x', sizeof big);
    dir_linebuf_init(&lb, 16);
    assert_int_equal(dir_linebuf_feed(&lb, "ok1\n", 4, collect, &l), 0);
    assert_int_equal(dir_linebuf_feed(&lb, big, sizeof big, collect, &l), 0);
    assert_int_equal(dir_linebuf_feed(&lb, big, 10, collect, &l), 0);
    assert_int_equal(dir_linebuf_feed(&lb, "\nok2\n", 5, collect, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.got[1], "ok2");
    assert_int_equal(lb.overflows, 1);
    assert_true(lb.cap <= 32);

    l.n = 0;
    l.stop_after = 1;
    assert_int_equal(dir_linebuf_feed(&lb, "a\nb\nc\n", 6, collect, &l), -1);
    assert_int_equal(l.n, 1);
    dir_linebuf_free(&lb);
}

/* ---- gateway answers ---------------------------------------------------------------------- */

static void
test_resp_parse_range_and_lease_answers(void **state)
{
    const char *range =
        "{\"header\":{\"cluster_id\":\"1\",\"revision\":\"12\"},\"kvs\":[{\"key\":\"L3BhcmxleS9zY2hlbWE=\","
        "\"create_revision\":\"2\",\"mod_revision\":\"3\",\"version\":\"2\",\"value\":\"MQ==\"}],"
        "\"count\":\"1\"}";
    const char *ka = "{\"result\":{\"header\":{\"revision\":\"1\"},\"ID\":\"2228897034904007174\",\"TTL\":\"5\"}}\n";
    const char *ka_gone = "{\"result\":{\"header\":{\"revision\":\"1\"},\"ID\":\"7\"}}";
    const char *err = "{\"error\":\"etcdserver: requested lease not found\",\"code\":5,"
                      "\"message\":\"etcdserver: requested lease not found\"}";
    const char *txn_fail = "{\"header\":{\"revision\":\"9\"},\"responses\":[{\"response_range\":"
                           "{\"header\":{},\"kvs\":[{\"key\":\"YQ==\",\"value\":\"Yg==\"}],\"count\":\"1\"}}]}";
    struct dir_resp r;

    assert_int_equal(dir_resp_parse(range, strlen(range), &r), 0);
    assert_int_equal(r.revision, 12);
    assert_int_equal(r.n_kvs, 1);
    assert_string_equal(r.kvs[0].key, "/parley/schema");
    assert_string_equal(r.kvs[0].value, "1");
    assert_int_equal(r.kvs[0].mod_revision, 3);
    assert_int_equal(r.count, 1);
    dir_resp_clear(&r);

    assert_int_equal(dir_resp_parse(ka, strlen(ka), &r), 0);
    assert_int_equal(r.lease_id, 2228897034904007174LL);
    assert_int_equal(r.ttl, 5);
    dir_resp_clear(&r);
    assert_int_equal(dir_resp_parse(ka_gone, strlen(ka_gone), &r), 0);
    assert_int_equal(r.ttl, 0);
    dir_resp_clear(&r);

    assert_int_equal(dir_resp_parse(err, strlen(err), &r), 0);
    assert_int_equal(r.code, 5);
    assert_non_null(strstr(r.error, "lease not found"));
    dir_resp_clear(&r);

    assert_int_equal(dir_resp_parse(txn_fail, strlen(txn_fail), &r), 0);
    assert_false(r.succeeded);
    assert_int_equal(r.n_kvs, 1);
    assert_string_equal(r.kvs[0].value, "b");
    dir_resp_clear(&r);

    assert_int_equal(dir_resp_parse("{\"header\":{\"revision\":\"x\"}}", 28, &r), -1);
    dir_resp_clear(&r);
    assert_int_equal(dir_resp_parse("{\"kvs\":[{\"key\":\"!!\"}]}", 22, &r), -1);
    dir_resp_clear(&r);
    assert_int_equal(dir_resp_parse("[1]", 3, &r), -1);
    dir_resp_clear(&r);
}

static void
test_watch_msg_parse_kinds(void **state)
{
    const char *created = "{\"result\":{\"header\":{\"revision\":\"13\"},\"created\":true}}";
    const char *events =
        "{\"result\":{\"header\":{\"revision\":\"15\"},\"events\":[{\"kv\":{\"key\":\"YQ==\","
        "\"create_revision\":\"14\",\"mod_revision\":\"14\",\"version\":\"1\",\"value\":\"eA==\"}},"
        "{\"type\":\"DELETE\",\"kv\":{\"key\":\"Yg==\",\"mod_revision\":\"15\"}}]}}";
    const char *canceled = "{\"result\":{\"header\":{\"revision\":\"20\"},\"canceled\":true,"
                           "\"compact_revision\":\"15\"}}";
    const char *error = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"unavailable\"}}";
    struct dir_watch_msg m;

    assert_int_equal(dir_watch_msg_parse(created, strlen(created), &m), 0);
    assert_int_equal(m.kind, DIR_WATCH_CREATED);
    assert_int_equal(m.revision, 13);
    dir_watch_msg_clear(&m);

    assert_int_equal(dir_watch_msg_parse(events, strlen(events), &m), 0);
    assert_int_equal(m.kind, DIR_WATCH_EVENTS);
    assert_int_equal(m.n_events, 2);
    assert_false(m.events[0].is_delete);
    assert_string_equal(m.events[0].kv.key, "a");
    assert_string_equal(m.events[0].kv.value, "x");
    assert_true(m.events[1].is_delete);
    assert_string_equal(m.events[1].kv.key, "b");
    assert_string_equal(m.events[1].kv.value, "");
    assert_int_equal(m.events[1].kv.mod_revision, 15);
    dir_watch_msg_clear(&m);

    assert_int_equal(dir_watch_msg_parse(canceled, strlen(canceled), &m), 0);
    assert_int_equal(m.kind, DIR_WATCH_CANCELED);
    assert_int_equal(m.compact_revision, 15);
    dir_watch_msg_clear(&m);

    assert_int_equal(dir_watch_msg_parse(error, strlen(error), &m), 0);
    assert_int_equal(m.kind, DIR_WATCH_ERROR);
    assert_string_equal(m.reason, "unavailable");
    dir_watch_msg_clear(&m);

    static const char *const bad[] = {
        "", "{", "[]", "{\"result\":{\"events\":{}}}", "{\"result\":{\"events\":[1]}}",
        "{\"result\":{\"events\":[{\"type\":\"MOVE\",\"kv\":{\"key\":\"YQ==\"}}]}}",
        "{\"result\":{\"events\":[{\"kv\":{\"key\":\"\"}}]}}",
        "{\"result\":{\"events\":[{\"kv\":{\"key\":\"YQ==\"}},{\"kv\":{}}]}}",
        "{\"something\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dir_watch_msg_parse(bad[i], strlen(bad[i]), &m) == 0)
            fail_msg("watch case %zu accepted", i);
        dir_watch_msg_clear(&m);
    }
}

/* ---- hash table and cache ------------------------------------------------------------------ */

static int freed;

static void
count_free(void *p)
{
    freed++;
    free(p);
}

static bool
count_iter(const char *key, void *val, void *arg)
{
    (*(int *)arg)++;
    return true;
}

static void
test_map_put_get_replace_delete_grow(void **state)
{
    struct dir_map *m = dir_map_new(count_free);
    char key[32];
    int n = 0;

    freed = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "user%d@example.com", i);
        assert_int_equal(dir_map_put(m, key, strdup(key)), 0);
    }
    assert_int_equal(dir_map_count(m), 5000);
    assert_string_equal(dir_map_get(m, "user4242@example.com"), "user4242@example.com");
    assert_null(dir_map_get(m, "nobody@example.com"));
    assert_int_equal(dir_map_put(m, "user1@example.com", strdup("v2")), 0);
    assert_int_equal(freed, 1);
    assert_int_equal(dir_map_count(m), 5000);
    assert_string_equal(dir_map_get(m, "user1@example.com"), "v2");
    assert_true(dir_map_del(m, "user2@example.com"));
    assert_false(dir_map_del(m, "user2@example.com"));
    assert_int_equal(freed, 2);
    char *v = dir_map_take(m, "user3@example.com");
    assert_string_equal(v, "user3@example.com");
    free(v);
    assert_int_equal(dir_map_count(m), 4998);
    dir_map_foreach(m, count_iter, &n);
    assert_int_equal(n, 4998);
    dir_map_free(m);
    assert_int_equal(freed, 2 + 4998);
}

struct seen {
    int users, removed, servers, routes;
    char last[64];
};

static void
on_user(const char *aor, const struct dir_user *u, void *arg)
{
    struct seen *s = arg;

    if (u)
        s->users++;
    else
        s->removed++;
    snprintf(s->last, sizeof s->last, "%s", aor);
}

static void
on_server(const char *name, const struct dir_server *sv, void *arg)
{
    ((struct seen *)arg)->servers++;
}

static void
on_route(const char *name, const struct dir_route *r, void *arg)
{
    ((struct seen *)arg)->routes++;
}

static void
test_cache_put_delete_reject_and_notify(void **state)
{
    struct seen s = {0};
    struct dir_notify n = {.user = on_user, .server = on_server, .route = on_route, .arg = &s};
    struct dir_cache *c = dir_cache_new();
    const char *srv = "{\"role\":\"frontend\",\"address\":\"sip:127.0.0.1:5060\"}";

    assert_int_equal(dir_cache_put(c, "/parley/users/Alice@Example.com", good_user,
                                   strlen(good_user), 5, &n), 0);
    assert_int_equal(s.users, 1);
    assert_string_equal(s.last, "alice@example.com");
    const struct dir_user *u = dir_map_get(c->users, "alice@example.com");
    assert_non_null(u);
    assert_int_equal(u->mod_revision, 5);
    /* identical value: no change */
    dir_cache_put(c, "/parley/users/alice@example.com", good_user, strlen(good_user), 6, &n);
    assert_int_equal(s.users, 1);
    /* a bad value replaces a good one: the entry is removed, counted, no crash */
    dir_cache_put(c, "/parley/users/alice@example.com", "{bad", 4, 7, &n);
    assert_int_equal(s.removed, 1);
    assert_null(dir_map_get(c->users, "alice@example.com"));
    assert_int_equal(c->rejected, 1);
    dir_cache_put(c, "/parley/users/alice@example.com", good_user, strlen(good_user), 8, &n);
    dir_cache_delete(c, "/parley/users/alice@example.com", &n);
    assert_int_equal(s.removed, 2);
    dir_cache_delete(c, "/parley/users/alice@example.com", &n);
    assert_int_equal(s.removed, 2);

    dir_cache_put(c, "/parley/servers/fe1", srv, strlen(srv), 9, &n);
    assert_int_equal(s.servers, 1);
    dir_cache_put(c, "/parley/other/x", "y", 1, 9, &n);
    dir_cache_put(c, "/parley/schema", "1", 1, 9, &n);
    assert_string_equal(c->schema, "1");

    /* full reload: one user added, the server gone, one route added */
    struct dir_cache *fresh = dir_cache_new();
    const char *rt = "{\"match\":\"tel\",\"next_hop\":\"sip:gw\"}";
    dir_cache_put(fresh, "/parley/users/bob@example.com", good_user, strlen(good_user), 10, NULL);
    dir_cache_put(fresh, "/parley/routes/pstn", rt, strlen(rt), 10, NULL);
    fresh->revision = 10;
    memset(&s, 0, sizeof s);
    dir_cache_replace(c, fresh, &n);
    assert_int_equal(s.users, 1);
    assert_int_equal(s.servers, 1);     /* the removal */
    assert_int_equal(s.routes, 1);
    assert_int_equal(c->revision, 10);
    assert_null(dir_map_get(c->servers, "fe1"));
    assert_non_null(dir_map_get(c->users, "bob@example.com"));
    dir_cache_free(c);
}

static char order_seen[64];
static int order_calls;

static void
on_order(const char *value, void *arg)
{
    (void)arg;
    order_calls++;
    snprintf(order_seen, sizeof order_seen, "%s", value ? value : "(unset)");
}

/* /parley/apps/order: its own slot and callback, changes only (design §4, parleyctl app order) */
static void
test_cache_apps_order_notifies_changes(void **state)
{
    struct dir_notify n = {0};
    struct dir_cache *c = dir_cache_new(), *fresh;
    const char *v1 = "[\"logger\",\"routing\"]", *v2 = "[\"routing\"]";
    const char *name;

    n.apps_order = on_order;
    order_calls = 0;
    assert_int_equal(dir_key_kind("/parley/apps/order", &name), DIR_KIND_APPS_ORDER);
    assert_int_equal(dir_key_kind("/parley/apps/orderx", &name), DIR_KIND_OTHER);
    assert_int_equal(dir_cache_put(c, "/parley/apps/order", v1, strlen(v1), 3, &n), 0);
    assert_int_equal(order_calls, 1);
    assert_string_equal(order_seen, v1);
    dir_cache_put(c, "/parley/apps/order", v1, strlen(v1), 4, &n);   /* same value: no change */
    assert_int_equal(order_calls, 1);
    dir_cache_delete(c, "/parley/apps/order", &n);
    assert_int_equal(order_calls, 2);
    assert_string_equal(order_seen, "(unset)");
    assert_null(c->apps_order);
    dir_cache_delete(c, "/parley/apps/order", &n);                   /* absent: nothing */
    assert_int_equal(order_calls, 2);
    /* a full reload tells about a difference only */
    fresh = dir_cache_new();
    dir_cache_put(fresh, "/parley/apps/order", v2, strlen(v2), 5, NULL);
    dir_cache_replace(c, fresh, &n);
    assert_int_equal(order_calls, 3);
    assert_string_equal(c->apps_order, v2);
    fresh = dir_cache_new();
    dir_cache_put(fresh, "/parley/apps/order", v2, strlen(v2), 6, NULL);
    dir_cache_replace(c, fresh, &n);
    assert_int_equal(order_calls, 3);
    dir_cache_free(c);
}

static void
test_disk_copy_survives_reopen(void **state)
{
    char path[] = "/tmp/parley-test-dir-XXXXXX";
    char db[600];
    int fd = mkstemp(path);
    struct dir_kv kvs[2] = {
        {.key = "/parley/users/carol@example.com", .value = (char *)good_user, .mod_revision = 3},
        {.key = "/parley/users/dave@example.com", .value = (char *)good_user, .mod_revision = 4},
    };
    struct dir_event ev = {.is_delete = true, .kv = {.key = "/parley/users/carol@example.com"}};

    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    snprintf(db, sizeof db, "%s.db", path);
    for (int i = 0; i < 2; i++) {
        kvs[i].key_len = strlen(kvs[i].key);
        kvs[i].value_len = strlen(good_user);
    }
    ev.kv.key_len = strlen(ev.kv.key);

    struct dir_disk *d = dir_disk_open(db);
    assert_non_null(d);
    assert_int_equal(dir_disk_replace(d, kvs, 2, 4), 0);
    assert_int_equal(dir_disk_apply(d, &ev, 1, 5), 0);
    dir_disk_close(d);

    /* a new process (dir_new without etcd) finds dave but not carol */
    struct dir_opts o = {.cache_path = db};
    struct dir *dir = dir_new(NULL, &o);
    assert_non_null(dir);
    assert_true(dir_is_ready(dir));
    assert_false(dir_etcd_up(dir));
    assert_non_null(dir_user_get(dir, "sip:Dave@Example.com;transport=tcp"));
    assert_non_null(dir_user_get(dir, "dave@example.com"));
    assert_null(dir_user_get(dir, "carol@example.com"));
    assert_int_equal(dir_user_count(dir), 1);
    struct dir_stats st;
    dir_stats_get(dir, &st);
    assert_int_equal(st.revision, 5);
    dir_free(dir);
    unlink(db);
    snprintf(db, sizeof db, "%s.db-wal", path);
    unlink(db);
    snprintf(db, sizeof db, "%s.db-shm", path);
    unlink(db);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_decode_reads_every_field),
        cmocka_unit_test(test_user_decode_lowercases_key_and_defaults_optional_fields),
        cmocka_unit_test(test_user_decode_rejects_bad_values),
        cmocka_unit_test(test_server_decode_reads_fields_and_rejects_bad_roles),
        cmocka_unit_test(test_route_decode_reads_patterns),
        cmocka_unit_test(test_b64_round_trips_every_padding),
        cmocka_unit_test(test_b64_decode_rejects_malformed),
        cmocka_unit_test(test_prefix_end_increments_last_byte),
        cmocka_unit_test(test_linebuf_splits_at_every_chunk_boundary),
        cmocka_unit_test(test_linebuf_drops_oversize_lines_and_honours_stop),
        cmocka_unit_test(test_resp_parse_range_and_lease_answers),
        cmocka_unit_test(test_watch_msg_parse_kinds),
        cmocka_unit_test(test_map_put_get_replace_delete_grow),
        cmocka_unit_test(test_cache_put_delete_reject_and_notify),
        cmocka_unit_test(test_cache_apps_order_notifies_changes),
        cmocka_unit_test(test_disk_copy_survives_reopen),
    };
    return cmocka_run_group_tests(tests, quiet, NULL);
}
