/* Unit tests: the agent protocol codec (shared/agent/agent_proto.c, docs/agent-protocol.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/agent_proto.h"

static const char SIP[] = "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n"
                          "Content-Length: 2\r\n\r\nhi";

static size_t
encode(struct agent_buf *b, const struct agent_msg *m)
{
    size_t before = b->len;
    assert_int_equal(agent_encode(b, m), 0);
    return b->len - before;
}

static void
test_request_round_trips(void **state)
{
    struct agent_buf b = {0};
    struct agent_msg m = {0}, d;
    const char *why = NULL;
    size_t n;

    m.type = AGENT_REQUEST;
    m.id = 0x1122334455667788ull;
    m.app = "msglog";
    m.sip = SIP;
    m.sip_len = sizeof SIP - 1;
    n = encode(&b, &m);
    assert_int_equal(agent_frame_check(b.p, b.len), (long)n);
    assert_int_equal(agent_decode(b.p, n, &d, &why), 0);
    assert_int_equal(d.type, AGENT_REQUEST);
    assert_true(d.id == m.id);
    assert_string_equal(d.app, "msglog");
    assert_int_equal(d.sip_len, sizeof SIP - 1);
    assert_memory_equal(d.sip, SIP, sizeof SIP - 1);
    agent_buf_free(&b);
}

static void
test_fork_with_edits_round_trips(void **state)
{
    struct agent_buf b = {0};
    struct agent_msg m = {0}, d;
    size_t n;

    m.type = AGENT_FORK;
    m.id = 7;
    m.flags = AGENT_F_RESPONSES;
    m.uri[m.nuri++] = "sip:a@x";
    m.uri[m.nuri++] = "sip:b@y";
    m.add[m.nadd++] = "X-Agent: yes";
    m.remove[m.nremove++] = "Subject";
    n = encode(&b, &m);
    assert_int_equal(agent_decode(b.p, n, &d, NULL), 0);
    assert_int_equal(d.nuri, 2);
    assert_string_equal(d.uri[1], "sip:b@y");
    assert_int_equal(d.nadd, 1);
    assert_string_equal(d.add[0], "X-Agent: yes");
    assert_string_equal(d.remove[0], "Subject");
    assert_true(d.flags == AGENT_F_RESPONSES);
    agent_buf_free(&b);
}

static void
test_every_type_round_trips_in_one_stream(void **state)
{
    static const int types[] = {AGENT_HELLO, AGENT_WELCOME, AGENT_REGISTER, AGENT_REGISTERED, AGENT_ERROR,
                                AGENT_RESPONSE, AGENT_EVENT, AGENT_PROXY, AGENT_PROXY_RESPONSE, AGENT_RESPOND,
                                AGENT_TRYING};
    struct agent_buf b = {0};
    size_t off = 0;

    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct agent_msg m = {0};
        m.type = (enum agent_type)types[i];
        m.id = i + 1;
        m.status = 200;
        m.event = AGENT_EV_TIMEOUT;
        m.app = "a";
        m.sip = "SIP/2.0 200 OK\r\n\r\n";
        m.sip_len = strlen(m.sip);
        encode(&b, &m);
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct agent_msg d;
        long n = agent_frame_check(b.p + off, b.len - off);
        assert_true(n > 0);
        assert_int_equal(agent_decode(b.p + off, (size_t)n, &d, NULL), 0);
        assert_int_equal(d.type, types[i]);
        assert_string_equal(agent_type_name(d.type), agent_type_name(types[i]));
        off += (size_t)n;
    }
    assert_int_equal(off, b.len);
    agent_buf_free(&b);
}

static void
test_truncated_frames_need_more_bytes(void **state)
{
    struct agent_buf b = {0};
    struct agent_msg m = {0}, d;
    size_t n;

    m.type = AGENT_RESPOND;
    m.id = 3;
    m.status = 486;
    m.reason = "Busy Here";
    n = encode(&b, &m);
    for (size_t cut = 0; cut < n; cut++) {
        assert_int_equal(agent_frame_check(b.p, cut), 0);
        assert_int_equal(agent_decode(b.p, cut, &d, NULL), -1);
    }
    agent_buf_free(&b);
}

static void
test_garbage_and_oversize_headers_are_refused(void **state)
{
    unsigned char hdr[8] = {'P', 'A', AGENT_PROTO_VERSION, AGENT_REQUEST, 0, 0, 0, 0};
    const char *why = NULL;
    struct agent_msg d;

    assert_int_equal(agent_frame_check("GET / HTTP/1.1\r\n", 16), -1);
    assert_int_equal(agent_frame_check("PX", 2), -1);
    hdr[2] = 99;
    assert_int_equal(agent_frame_check(hdr, 8), -1);   /* unknown version */
    hdr[2] = AGENT_PROTO_VERSION;
    hdr[4] = 0xff;                                      /* 4 GiB payload */
    assert_int_equal(agent_frame_check(hdr, 8), -1);
    hdr[4] = 0;
    hdr[3] = 77;                                        /* unknown type, empty payload */
    assert_int_equal(agent_frame_check(hdr, 8), 8);
    assert_int_equal(agent_decode(hdr, 8, &d, &why), -1);
    assert_non_null(why);
    hdr[3] = AGENT_REQUEST;                             /* no id, no sip */
    assert_int_equal(agent_decode(hdr, 8, &d, &why), -1);
}

/* A frame built by hand: header + fields. */
static size_t
raw_frame(unsigned char *out, int type, const unsigned char *fields, size_t flen)
{
    out[0] = 'P';
    out[1] = 'A';
    out[2] = AGENT_PROTO_VERSION;
    out[3] = (unsigned char)type;
    out[4] = (unsigned char)(flen >> 24);
    out[5] = (unsigned char)(flen >> 16);
    out[6] = (unsigned char)(flen >> 8);
    out[7] = (unsigned char)flen;
    memcpy(out + 8, fields, flen);
    return 8 + flen;
}

static void
test_bad_fields_are_refused(void **state)
{
    unsigned char f[64], buf[128];
    struct agent_msg d;
    size_t n;

    /* REGISTER with an app string missing its NUL */
    memcpy(f, "\x03\x00\x00\x00\x03" "abc", 8);
    n = raw_frame(buf, AGENT_REGISTER, f, 8);
    assert_int_equal(agent_decode(buf, n, &d, NULL), -1);
    /* a field longer than the frame */
    memcpy(f, "\x03\x00\x00\x00\x09" "ab\0", 8);
    n = raw_frame(buf, AGENT_REGISTER, f, 8);
    assert_int_equal(agent_decode(buf, n, &d, NULL), -1);
    /* a NUL inside a string */
    memcpy(f, "\x03\x00\x00\x00\x03" "a\0\0", 8);
    n = raw_frame(buf, AGENT_REGISTER, f, 8);
    assert_int_equal(agent_decode(buf, n, &d, NULL), -1);
    /* an integer that is not 8 bytes */
    memcpy(f, "\x04\x00\x00\x00\x02" "\x01\x02", 7);
    n = raw_frame(buf, AGENT_TRYING, f, 7);
    assert_int_equal(agent_decode(buf, n, &d, NULL), -1);
    /* id 0 */
    memcpy(f, "\x04\x00\x00\x00\x08" "\0\0\0\0\0\0\0\0", 13);
    n = raw_frame(buf, AGENT_TRYING, f, 13);
    assert_int_equal(agent_decode(buf, n, &d, NULL), -1);
    /* an unknown tag is skipped */
    memcpy(f, "\x1e\x00\x00\x00\x01" "z" "\x04\x00\x00\x00\x08" "\0\0\0\0\0\0\0\x05", 19);
    n = raw_frame(buf, AGENT_TRYING, f, 19);
    assert_int_equal(agent_decode(buf, n, &d, NULL), 0);
    assert_true(d.id == 5);
}

static void
test_respond_status_out_of_range_is_refused(void **state)
{
    struct agent_buf b = {0};
    struct agent_msg m = {0}, d;
    size_t n;

    m.type = AGENT_RESPOND;
    m.id = 1;
    m.status = 99;
    n = encode(&b, &m);
    assert_int_equal(agent_decode(b.p, n, &d, NULL), -1);
    agent_buf_free(&b);
}

static void
test_oversize_and_too_many_items_are_not_encoded(void **state)
{
    struct agent_buf b = {0};
    struct agent_msg m = {0};
    char *big = malloc(AGENT_MAX_FRAME + 10);

    assert_non_null(big);
    memset(big, 'x', AGENT_MAX_FRAME + 9);
    big[AGENT_MAX_FRAME + 9] = '\0';
    m.type = AGENT_REQUEST;
    m.id = 1;
    m.sip = big;
    m.sip_len = AGENT_MAX_FRAME + 9;
    assert_int_equal(agent_encode(&b, &m), -1);
    assert_int_equal(b.len, 0);
    m.type = AGENT_RESPOND;
    m.status = 200;
    m.reason = big;   /* over AGENT_MAX_STR */
    assert_int_equal(agent_encode(&b, &m), -1);
    m.reason = NULL;
    m.nadd = AGENT_MAX_ITEMS + 1;
    assert_int_equal(agent_encode(&b, &m), -1);
    assert_int_equal(b.len, 0);
    /* the buffer still works afterwards */
    m.nadd = 0;
    assert_int_equal(agent_encode(&b, &m), 0);
    free(big);
    agent_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_round_trips),
        cmocka_unit_test(test_fork_with_edits_round_trips),
        cmocka_unit_test(test_every_type_round_trips_in_one_stream),
        cmocka_unit_test(test_truncated_frames_need_more_bytes),
        cmocka_unit_test(test_garbage_and_oversize_headers_are_refused),
        cmocka_unit_test(test_bad_fields_are_refused),
        cmocka_unit_test(test_respond_status_out_of_range_is_refused),
        cmocka_unit_test(test_oversize_and_too_many_items_are_not_encoded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
