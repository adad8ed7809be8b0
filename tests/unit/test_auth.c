/*
 * Unit tests for shared/auth: parser, digest vectors (RFC 2617 §3.5, RFC 7616
 * §3.9.1), nonces, nonce-count replay table, challenge text and auth_verify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/auth_digest.h"
#include "auth/auth_nonce.h"
#include "auth/auth_parse.h"

#define RFC2617_HDR                                                                          \
    "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", "                             \
    "nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, "     \
    "nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", "     \
    "opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""

static int
parse(const char *s, struct auth_credentials *c)
{
    return auth_parse_credentials(s, strlen(s), c);
}

/* ---- digest vectors ---- */

static void
test_auth_rfc2617_md5_vector(void **state)
{
    char ha1[AUTH_HEX_SIZE], resp[AUTH_HEX_SIZE];

    (void)state;
    /* RFC 2617 §3.5 */
    assert_int_equal(auth_ha1(AUTH_ALG_MD5, "Mufasa", "testrealm@host.com", "Circle Of Life", ha1,
                              sizeof(ha1)),
                     0);
    assert_string_equal(ha1, "939e7578ed9e3c518a452acee763bce9");
    assert_int_equal(auth_compute_response(AUTH_ALG_MD5, ha1, "GET", "/dir/index.html",
                                           "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001",
                                           "0a4f113b", "auth", resp, sizeof(resp)),
                     0);
    assert_string_equal(resp, "6629fae49393a05397450978507c4ef1");
}

static void
test_auth_rfc7616_sha256_and_md5_vectors(void **state)
{
    char ha1[AUTH_HEX_SIZE], resp[AUTH_HEX_SIZE];
    const char *nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const char *cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    (void)state;
    /* RFC 7616 §3.9.1 */
    assert_int_equal(auth_ha1(AUTH_ALG_SHA256, "Mufasa", "http-auth@example.org", "Circle of Life",
                              ha1, sizeof(ha1)),
                     0);
    assert_int_equal(auth_compute_response(AUTH_ALG_SHA256, ha1, "GET", "/dir/index.html", nonce,
                                           "00000001", cnonce, "auth", resp, sizeof(resp)),
                     0);
    assert_string_equal(resp, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    assert_int_equal(auth_ha1(AUTH_ALG_MD5, "Mufasa", "http-auth@example.org", "Circle of Life",
                              ha1, sizeof(ha1)),
                     0);
    assert_int_equal(auth_compute_response(AUTH_ALG_MD5, ha1, "GET", "/dir/index.html", nonce,
                                           "00000001", cnonce, "auth", resp, sizeof(resp)),
                     0);
    assert_string_equal(resp, "8ca523f5e9506fed4657c9700eebdbec");
}

static void
test_auth_no_qop_response_is_rfc2069(void **state)
{
    char resp[AUTH_HEX_SIZE];

    (void)state;
    assert_int_equal(auth_compute_response(AUTH_ALG_MD5, "939e7578ed9e3c518a452acee763bce9", "GET",
                                           "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                                           NULL, NULL, NULL, resp, sizeof(resp)),
                     0);
    assert_string_equal(resp, "670fd8c2df070c60b045671b8b24ff02");
    /* qop other than auth, and a too small buffer, are refused */
    assert_int_equal(auth_compute_response(AUTH_ALG_MD5, "x", "GET", "u", "n", "00000001", "c",
                                           "auth-int", resp, sizeof(resp)),
                     -1);
    assert_int_equal(auth_compute_response(AUTH_ALG_SHA256, "x", "GET", "u", "n", NULL, NULL, NULL,
                                           resp, 33),
                     -1);
}

static void
test_auth_equal_ct(void **state)
{
    (void)state;
    assert_true(auth_equal_ct("abc", "abc"));
    assert_false(auth_equal_ct("abc", "abd"));
    assert_false(auth_equal_ct("abc", "abcd"));
    assert_true(auth_equal_ct("", ""));
}

/* ---- parser ---- */

static void
test_auth_parse_rfc2617_example(void **state)
{
    struct auth_credentials c;

    (void)state;
    assert_int_equal(parse(RFC2617_HDR, &c), 0);
    assert_string_equal(c.username, "Mufasa");
    assert_string_equal(c.realm, "testrealm@host.com");
    assert_string_equal(c.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
    assert_string_equal(c.uri, "/dir/index.html");
    assert_string_equal(c.response, "6629fae49393a05397450978507c4ef1");
    assert_string_equal(c.cnonce, "0a4f113b");
    assert_string_equal(c.opaque, "5ccc069c403ebaf9f0171e9517f40e41");
    assert_string_equal(c.nc_str, "00000001");
    assert_int_equal(c.nc, 1);
    assert_true(c.qop_auth);
    assert_true(c.has_opaque);
    assert_false(c.has_algorithm);
    assert_int_equal(c.algorithm, AUTH_ALG_MD5);
    assert_null(c.err);
}

static void
test_auth_parse_quoted_commas_escapes_and_whitespace(void **state)
{
    struct auth_credentials c;
    const char *h = "  dIgEsT\t uSeRnAmE = \"a,b\\\"c\\\\d\" ,, realm=\"r, x\",\r\n nonce=n1 ,"
                    "uri=\"sip:bob@example.com;transport=tcp\",response="
                    "\"753927FA0E85D155564E2E272A28D1802CA10DAF4496794697CF8DB5856CB6C1\","
                    " algorithm=sha-256 , qop=\"auth\", nc=0000000a, cnonce=\"c\", foo=\"bar,baz\","
                    " x-ext=tok,  ";

    (void)state;
    assert_int_equal(parse(h, &c), 0);
    assert_string_equal(c.username, "a,b\"c\\d");
    assert_string_equal(c.realm, "r, x");
    assert_string_equal(c.nonce, "n1");
    assert_string_equal(c.uri, "sip:bob@example.com;transport=tcp");
    assert_string_equal(c.response,
                        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    assert_int_equal(c.algorithm, AUTH_ALG_SHA256);
    assert_int_equal(c.nc, 10);
    assert_true(c.qop_auth);
}

static void
test_auth_parse_no_qop_is_accepted(void **state)
{
    struct auth_credentials c;

    (void)state;
    assert_int_equal(parse("Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"sip:r\","
                           "response=\"670fd8c2df070c60b045671b8b24ff02\",algorithm=MD5",
                           &c),
                     0);
    assert_false(c.qop_auth);
    assert_false(c.has_nc);
    assert_true(c.has_algorithm);
}

struct bad_case {
    const char *hdr;
    const char *why;    /* substring expected in c.err */
};

static void
test_auth_parse_rejects_bad_input(void **state)
{
    static const struct bad_case cases[] = {
        {"", "scheme"},
        {"Basic dXNlcjpwYXNz", "not Digest"},
        {"Digestusername=\"u\"", "not Digest"},
        {"Digest realm=\"r\",nonce=\"n\",uri=\"u\",response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "missing username"},
        {"Digest username=\"u\",nonce=\"n\",uri=\"u\",response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "missing realm"},
        {"Digest username=\"u\",realm=\"r\",uri=\"u\",response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "missing nonce"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "missing uri"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\"", "missing response"},
        {"Digest username=\"u\",username=\"v\",realm=\"r\",nonce=\"n\",uri=\"u\","
         "response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "duplicate"},
        {"Digest username=\"u\",realm=\"r\",NONCE=\"n\",nonce=\"m\",uri=\"u\","
         "response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "duplicate"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\","
         "response=\"670fd8c2df070c60b045671b8b24ff02\",algorithm=MD5-sess",
         "session"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\","
         "response=\"670fd8c2df070c60b045671b8b24ff02\",algorithm=SHA-256-sess",
         "session"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\","
         "response=\"670fd8c2df070c60b045671b8b24ff02\",algorithm=SHA-512-256",
         "unsupported algorithm"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\","
         "response=\"670fd8c2df070c60b045671b8b24ff02\",algorithm=SHA-256",
         "wrong length"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\","
         "response=\"670fd8c2df070c60b045671b8b24ffzz\"",
         "hexadecimal"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\",qop=auth-int,nc=00000001,"
         "cnonce=\"c\",response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "qop"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\",qop=auth,"
         "response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "without nc"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\",nc=00000001,"
         "response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "nc without qop"},
        {"Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\",qop=auth,nc=1,cnonce=\"c\","
         "response=\"670fd8c2df070c60b045671b8b24ff02\"",
         "8 hex"},
        {"Digest username=\"u", "unterminated"},
        {"Digest username=\"u\\", "unterminated"},
        {"Digest username", "without '='"},
        {"Digest username=", "missing parameter value"},
        {"Digest username=\"u\" realm=\"r\"", "expected ','"},
        {"Digest username=\"a\rb\"", "control"},
        {"Digest username=\"a\\\nb\"", "control"},
        {"Digest =\"u\"", "parameter name"},
        {"Digest username=@", "invalid character"},
        {"Digest \x01", "parameter name"},
    };
    struct auth_credentials c;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse(cases[i].hdr, &c);

        if (rc != -1 || c.err == NULL || strstr(c.err, cases[i].why) == NULL)
            fail_msg("case %zu <%s>: rc=%d err=%s (want %s)", i, cases[i].hdr, rc,
                     c.err ? c.err : "(null)", cases[i].why);
        assert_string_equal(c.username, "");   /* nothing half-filled after failure */
    }
}

static void
test_auth_parse_bounds_fields_and_embedded_nul(void **state)
{
    struct auth_credentials c;
    char hdr[2048];
    char big[300];

    (void)state;
    memset(big, 'a', 257);
    big[257] = '\0';
    snprintf(hdr, sizeof(hdr), "Digest username=\"%s\"", big);
    assert_int_equal(parse(hdr, &c), -1);
    assert_non_null(strstr(c.err, "too long"));
    snprintf(hdr, sizeof(hdr), "Digest username=%s", big);
    assert_int_equal(parse(hdr, &c), -1);
    assert_non_null(strstr(c.err, "too long"));

    /* exactly 256 bytes fits */
    big[256] = '\0';
    snprintf(hdr, sizeof(hdr),
             "Digest username=\"%s\",realm=\"r\",nonce=\"n\",uri=\"u\","
             "response=\"670fd8c2df070c60b045671b8b24ff02\"",
             big);
    assert_int_equal(parse(hdr, &c), 0);
    assert_int_equal(strlen(c.username), 256);

    /* a NUL inside the given length is refused, not truncated */
    {
        static const char withnul[] = "Digest username=\"a\0b\",realm=\"r\"";

        assert_int_equal(auth_parse_credentials(withnul, sizeof(withnul) - 1, &c), -1);
    }
    /* the length bounds the read: the same text cut short is incomplete */
    assert_int_equal(auth_parse_credentials(RFC2617_HDR, 20, &c), -1);
    assert_int_equal(auth_parse_credentials(NULL, 0, &c), -1);
}

/* ---- nonces ---- */

static void
make_secret(struct auth_secret *s, const char *id, unsigned char fill)
{
    unsigned char key[32];

    memset(key, fill, sizeof(key));
    assert_int_equal(auth_secret_init(s, key, sizeof(key), id), 0);
}

static void
test_auth_nonce_ok_stale_tampered_and_foreign(void **state)
{
    struct auth_secret a, b, a_other_id;
    char n[AUTH_NONCE_SIZE], n2[AUTH_NONCE_SIZE];
    uint64_t issued = 0;

    (void)state;
    make_secret(&a, "home1", 1);
    make_secret(&b, "home2", 2);
    make_secret(&a_other_id, "home2", 1);
    assert_int_equal(auth_nonce_make(&a, 1000, n, sizeof(n)), 0);
    assert_int_equal(strlen(n), AUTH_NONCE_LEN);
    assert_null(strpbrk(n, "+/=\""));     /* base64url, no padding, safe in a quoted-string */
    assert_int_equal(auth_nonce_make(&a, 1000, n2, sizeof(n2)), 0);
    assert_string_not_equal(n, n2);       /* random part */

    assert_int_equal(auth_nonce_check(&a, n, 1000, 300, &issued), AUTH_NONCE_OK);
    assert_int_equal(issued, 1000);
    assert_int_equal(auth_nonce_check(&a, n, 1300, 300, NULL), AUTH_NONCE_OK);
    assert_int_equal(auth_nonce_check(&a, n, 1301, 300, NULL), AUTH_NONCE_STALE);
    assert_int_equal(auth_nonce_check(&a, n, 999, 300, NULL), AUTH_NONCE_STALE);
    assert_int_equal(auth_nonce_check(&b, n, 1000, 300, NULL), AUTH_NONCE_BAD);
    assert_int_equal(auth_nonce_check(&a_other_id, n, 1000, 300, NULL), AUTH_NONCE_BAD);

    /* flip each character: never OK */
    for (size_t i = 0; i < AUTH_NONCE_LEN; i++) {
        char t[AUTH_NONCE_SIZE];

        memcpy(t, n, sizeof(t));
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_equal(auth_nonce_check(&a, t, 1000, 300, NULL), AUTH_NONCE_BAD);
    }
    assert_int_equal(auth_nonce_check(&a, "", 1000, 300, NULL), AUTH_NONCE_BAD);
    assert_int_equal(auth_nonce_check(&a, "dcd98b7102dd2f0e8b11d0f600bfb0c093", 1000, 300, NULL),
                     AUTH_NONCE_BAD);
    n2[AUTH_NONCE_LEN - 1] = '\0';
    assert_int_equal(auth_nonce_check(&a, n2, 1000, 300, NULL), AUTH_NONCE_BAD);
    assert_int_equal(auth_nonce_make(&a, 1000, n2, AUTH_NONCE_LEN), -1);
    auth_secret_wipe(&a);
}

/* The nonce's MAC is HMAC-SHA256 (RFC 2104) of timestamp || unique part || server id, as
 * OpenSSL's HMAC() computes it - also for keys of 16 and 64 bytes - and the unique parts
 * of a thousand nonces differ. */
static void
test_auth_nonce_mac_is_hmac_sha256(void **state)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t lens[] = {16, 32, 64};

    (void)state;
    for (size_t k = 0; k < 3; k++) {
        unsigned char key[64], raw[57], buf[8 + 16 + 16], mac[EVP_MAX_MD_SIZE];
        unsigned int mlen = 0;
        struct auth_secret s;
        char n[AUTH_NONCE_SIZE];
        uint32_t acc = 0;
        int bits = 0;
        size_t o = 0;

        for (size_t i = 0; i < sizeof key; i++)
            key[i] = (unsigned char)(i * 7 + k);
        assert_int_equal(auth_secret_init(&s, key, lens[k], "home7"), 0);
        assert_int_equal(auth_nonce_make(&s, 123456, n, sizeof n), 0);
        for (size_t i = 0; i < AUTH_NONCE_LEN; i++) {
            acc = acc << 6 | (uint32_t)(strchr(b64, n[i]) - b64);
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                raw[o++] = (unsigned char)(acc >> bits);
            }
            acc &= (1u << bits) - 1;
        }
        assert_int_equal(o, 56);
        memcpy(buf, raw, 24);
        memcpy(buf + 24, "home7", 5);
        assert_non_null(HMAC(EVP_sha256(), key, (int)lens[k], buf, 29, mac, &mlen));
        assert_int_equal(mlen, 32);
        assert_memory_equal(raw + 24, mac, 32);
        assert_int_equal(raw[7], (unsigned char)(123456 & 0xff));
    }
    {
        static char seen[1000][AUTH_NONCE_SIZE];
        struct auth_secret s;
        make_secret(&s, "home1", 3);
        for (int i = 0; i < 1000; i++) {
            assert_int_equal(auth_nonce_make(&s, 1000, seen[i], sizeof seen[i]), 0);
            for (int j = 0; j < i; j++)
                assert_string_not_equal(seen[i], seen[j]);
        }
    }
}

static void
test_auth_secret_init_rejects_short_key(void **state)
{
    struct auth_secret s;

    (void)state;
    assert_int_equal(auth_secret_init(&s, "short", 5, "x"), -1);
    assert_int_equal(auth_secret_generate(&s, "home1"), 0);
    assert_int_equal(s.key_len, 32);
    assert_string_equal(s.server_id, "home1");
}

/* ---- nonce-count table ---- */

static void
test_auth_nc_strictly_increasing(void **state)
{
    struct auth_nc_table *t = auth_nc_table_new(4, 300);

    (void)state;
    assert_non_null(t);
    assert_int_equal(auth_nc_table_check(t, "n1", 100, 1, 100), AUTH_NC_OK);
    assert_int_equal(auth_nc_table_check(t, "n1", 100, 1, 100), AUTH_NC_REPLAY);
    assert_int_equal(auth_nc_table_check(t, "n1", 100, 2, 100), AUTH_NC_OK);
    assert_int_equal(auth_nc_table_check(t, "n1", 100, 5, 100), AUTH_NC_OK);
    assert_int_equal(auth_nc_table_check(t, "n1", 100, 3, 100), AUTH_NC_REPLAY);
    assert_int_equal(auth_nc_table_check(t, "n2", 100, 0, 100), AUTH_NC_REPLAY);
    assert_int_equal(auth_nc_table_check(t, "n2", 100, 1, 100), AUTH_NC_OK);
    assert_int_equal(auth_nc_table_count(t), 2);
    auth_nc_table_free(t);
}

static void
test_auth_nc_eviction_is_bounded_and_safe(void **state)
{
    struct auth_nc_table *t = auth_nc_table_new(3, 300);
    char name[16];

    (void)state;
    /* n0 issued at 100, n1 at 101, n2 at 102 */
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        assert_int_equal(auth_nc_table_check(t, name, 100 + (uint64_t)i, 1, 110), AUTH_NC_OK);
    }
    /* touch n0 so n1 is the least recently used */
    assert_int_equal(auth_nc_table_check(t, "n0", 100, 2, 110), AUTH_NC_OK);
    /* n3 evicts n1 (still valid): floor becomes 102 */
    assert_int_equal(auth_nc_table_check(t, "n3", 105, 1, 110), AUTH_NC_OK);
    assert_int_equal(auth_nc_table_count(t), 3);
    /* replaying n1 after it was forgotten is not accepted */
    assert_int_equal(auth_nc_table_check(t, "n1", 101, 1, 110), AUTH_NC_UNKNOWN);
    /* n0 is still remembered */
    assert_int_equal(auth_nc_table_check(t, "n0", 100, 2, 110), AUTH_NC_REPLAY);
    auth_nc_table_free(t);

    /* expired entries are evicted without raising the floor */
    t = auth_nc_table_new(1, 10);
    assert_int_equal(auth_nc_table_check(t, "old", 100, 1, 100), AUTH_NC_OK);
    assert_int_equal(auth_nc_table_check(t, "new", 50, 1, 200), AUTH_NC_OK);
    assert_int_equal(auth_nc_table_count(t), 1);
    auth_nc_table_free(t);
    assert_null(auth_nc_table_new(0, 10));
}

/* ---- challenge ---- */

static void
test_auth_challenge_exact_text(void **state)
{
    char out[512];

    (void)state;
    assert_int_equal(auth_build_challenge("example.com", "abc", AUTH_ALG_SHA256, false, NULL, out,
                                          sizeof(out)),
                     0);
    assert_string_equal(out,
                        "Digest realm=\"example.com\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\"");
    assert_int_equal(auth_build_challenge("example.com", "abc", AUTH_ALG_MD5, true, "op", out,
                                          sizeof(out)),
                     0);
    assert_string_equal(out, "Digest realm=\"example.com\", nonce=\"abc\", opaque=\"op\", "
                             "algorithm=MD5, qop=\"auth\", stale=true");
    assert_int_equal(auth_build_challenge("a\"b\\c", "n", AUTH_ALG_MD5, false, NULL, out,
                                          sizeof(out)),
                     0);
    assert_string_equal(out, "Digest realm=\"a\\\"b\\\\c\", nonce=\"n\", algorithm=MD5, qop=\"auth\"");
    assert_int_equal(auth_build_challenge("bad\r\nX: y", "n", AUTH_ALG_MD5, false, NULL, out,
                                          sizeof(out)),
                     -1);
    /* too small: fails cleanly, for every size */
    for (size_t sz = 1; sz < 60; sz++)
        assert_int_equal(auth_build_challenge("example.com", "abc", AUTH_ALG_SHA256, false, NULL,
                                              out, sz),
                         -1);
}

static void
test_auth_challenge_round_trips_through_parser(void **state)
{
    char out[512];
    struct auth_credentials c;

    (void)state;
    /* a challenge is not credentials, but its params must be parseable by the same grammar */
    assert_int_equal(auth_build_challenge("ex\"am", "nn", AUTH_ALG_SHA256, true, NULL, out,
                                          sizeof(out)),
                     0);
    assert_int_equal(parse(out, &c), -1);
    assert_string_equal(c.err, "missing username");
}

/* ---- verify ---- */

struct client {
    char hdr[1024];
    char resp[AUTH_HEX_SIZE];
};

/* Builds what a client would send for <nonce> with <password>. */
static void
client_answer(struct client *cl, enum auth_algorithm alg, const char *nonce, const char *password,
              const char *nc)
{
    char ha1[AUTH_HEX_SIZE];

    assert_int_equal(auth_ha1(alg, "alice", "example.com", password, ha1, sizeof(ha1)), 0);
    assert_int_equal(auth_compute_response(alg, ha1, "REGISTER", "sip:example.com", nonce, nc,
                                           "0a4f113b", nc ? "auth" : NULL, cl->resp,
                                           sizeof(cl->resp)),
                     0);
    if (nc != NULL)
        snprintf(cl->hdr, sizeof(cl->hdr),
                 "Digest username=\"alice\", realm=\"example.com\", nonce=\"%s\", "
                 "uri=\"sip:example.com\", response=\"%s\", algorithm=%s, cnonce=\"0a4f113b\", "
                 "qop=auth, nc=%s",
                 nonce, cl->resp, auth_algorithm_name(alg), nc);
    else
        snprintf(cl->hdr, sizeof(cl->hdr),
                 "Digest username=\"alice\", realm=\"example.com\", nonce=\"%s\", "
                 "uri=\"sip:example.com\", response=\"%s\", algorithm=%s",
                 nonce, cl->resp, auth_algorithm_name(alg));
}

static enum auth_verdict
server_verify(const char *hdr, enum auth_algorithm alg, const struct auth_verify_params *p,
              const char **why)
{
    struct auth_credentials c;
    char ha1[AUTH_HEX_SIZE];

    assert_int_equal(parse(hdr, &c), 0);
    assert_int_equal(c.algorithm, alg);
    assert_int_equal(auth_ha1(alg, "alice", "example.com", "secret", ha1, sizeof(ha1)), 0);
    return auth_verify(&c, "REGISTER", ha1, p, why);
}

static void
test_auth_verify_flow(void **state)
{
    struct auth_secret s, other;
    struct auth_nc_table *t = auth_nc_table_new(16, 300);
    struct auth_verify_params p = {
        .realm = "example.com", .now_s = 5000, .nonce_lifetime_s = 300, .nc_table = t,
    };
    char nonce[AUTH_NONCE_SIZE], foreign[AUTH_NONCE_SIZE];
    struct client cl;
    const char *why = NULL;

    (void)state;
    make_secret(&s, "home1", 7);
    make_secret(&other, "home2", 8);
    p.secret = &s;
    assert_int_equal(auth_nonce_make(&s, 5000, nonce, sizeof(nonce)), 0);
    assert_int_equal(auth_nonce_make(&other, 5000, foreign, sizeof(foreign)), 0);

    for (int a = 0; a < 2; a++) {
        enum auth_algorithm alg = a ? AUTH_ALG_SHA256 : AUTH_ALG_MD5;

        assert_int_equal(auth_nonce_make(&s, 5000, nonce, sizeof(nonce)), 0);
        client_answer(&cl, alg, nonce, "secret", "00000001");
        assert_int_equal(server_verify(cl.hdr, alg, &p, &why), AUTH_OK);
        assert_string_equal(why, "ok");
        /* the same request again: replay */
        assert_int_equal(server_verify(cl.hdr, alg, &p, &why), AUTH_REPLAY);
        client_answer(&cl, alg, nonce, "secret", "00000002");
        assert_int_equal(server_verify(cl.hdr, alg, &p, NULL), AUTH_OK);
        /* wrong password */
        client_answer(&cl, alg, nonce, "wrong", "00000003");
        assert_int_equal(server_verify(cl.hdr, alg, &p, &why), AUTH_WRONG_RESPONSE);
        /* ... which did not burn nc 3 */
        client_answer(&cl, alg, nonce, "secret", "00000003");
        assert_int_equal(server_verify(cl.hdr, alg, &p, NULL), AUTH_OK);
        /* another server's nonce */
        client_answer(&cl, alg, foreign, "secret", "00000001");
        assert_int_equal(server_verify(cl.hdr, alg, &p, &why), AUTH_BAD_NONCE);
        /* expired: right password gives STALE, wrong gives WRONG_RESPONSE */
        p.now_s = 5301;
        client_answer(&cl, alg, nonce, "secret", "00000004");
        assert_int_equal(server_verify(cl.hdr, alg, &p, NULL), AUTH_STALE);
        client_answer(&cl, alg, nonce, "wrong", "00000004");
        assert_int_equal(server_verify(cl.hdr, alg, &p, NULL), AUTH_WRONG_RESPONSE);
        p.now_s = 5000;
        /* no qop (RFC 2069): only when allowed */
        client_answer(&cl, alg, nonce, "secret", NULL);
        assert_int_equal(server_verify(cl.hdr, alg, &p, &why), AUTH_INVALID);
        p.allow_no_qop = true;
        assert_int_equal(server_verify(cl.hdr, alg, &p, NULL), AUTH_OK);
        p.allow_no_qop = false;
    }

    /* realm mismatch, ha1 of the wrong algorithm */
    {
        struct auth_credentials c;

        client_answer(&cl, AUTH_ALG_SHA256, nonce, "secret", "00000009");
        assert_int_equal(parse(cl.hdr, &c), 0);
        p.realm = "other.com";
        assert_int_equal(auth_verify(&c, "REGISTER", "939e7578ed9e3c518a452acee763bce9", &p, &why),
                         AUTH_INVALID);
        assert_string_equal(why, "realm does not match");
        p.realm = "example.com";
        assert_int_equal(auth_verify(&c, "REGISTER", "939e7578ed9e3c518a452acee763bce9", &p, &why),
                         AUTH_INVALID);
        /* a different method changes HA2 */
        {
            char ha1[AUTH_HEX_SIZE];

            assert_int_equal(auth_ha1(AUTH_ALG_SHA256, "alice", "example.com", "secret", ha1,
                                      sizeof(ha1)),
                             0);
            assert_int_equal(auth_verify(&c, "INVITE", ha1, &p, NULL), AUTH_WRONG_RESPONSE);
            assert_int_equal(auth_verify(&c, "REGISTER", ha1, &p, NULL), AUTH_OK);
        }
    }
    auth_nc_table_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_rfc2617_md5_vector),
        cmocka_unit_test(test_auth_rfc7616_sha256_and_md5_vectors),
        cmocka_unit_test(test_auth_no_qop_response_is_rfc2069),
        cmocka_unit_test(test_auth_equal_ct),
        cmocka_unit_test(test_auth_parse_rfc2617_example),
        cmocka_unit_test(test_auth_parse_quoted_commas_escapes_and_whitespace),
        cmocka_unit_test(test_auth_parse_no_qop_is_accepted),
        cmocka_unit_test(test_auth_parse_rejects_bad_input),
        cmocka_unit_test(test_auth_parse_bounds_fields_and_embedded_nul),
        cmocka_unit_test(test_auth_nonce_ok_stale_tampered_and_foreign),
        cmocka_unit_test(test_auth_secret_init_rejects_short_key),
        cmocka_unit_test(test_auth_nonce_mac_is_hmac_sha256),
        cmocka_unit_test(test_auth_nc_strictly_increasing),
        cmocka_unit_test(test_auth_nc_eviction_is_bounded_and_safe),
        cmocka_unit_test(test_auth_challenge_exact_text),
        cmocka_unit_test(test_auth_challenge_round_trips_through_parser),
        cmocka_unit_test(test_auth_verify_flow),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
