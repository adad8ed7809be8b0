/* Unit tests for tp_frame_scan (RFC 3261 §18.3 framing, RFC 5626 §4.4.1 keep-alives). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "transport/tp_frame.h"

#define MSG_HDR "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK1\r\n"

struct frame_case {
    const char *name;
    const char *in;
    size_t max;
    enum tp_frame_result want;
    size_t want_skip;
    size_t want_len;   /* SIZE_MAX = whole input */
};

static const struct frame_case cases[] = {
    {"complete message, no body", MSG_HDR "Content-Length: 0\r\n\r\n", 65536, TP_FRAME_MESSAGE, 0,
     SIZE_MAX},
    {"complete message with body", MSG_HDR "Content-Length: 5\r\n\r\nhello", 65536,
     TP_FRAME_MESSAGE, 0, SIZE_MAX},
    {"partial headers", MSG_HDR "Content-Len", 65536, TP_FRAME_NEED_MORE, 0, 0},
    {"headers end, partial CRLFCRLF", MSG_HDR "Content-Length: 0\r\n\r", 65536, TP_FRAME_NEED_MORE,
     0, 0},
    {"partial body", MSG_HDR "Content-Length: 10\r\n\r\nhello", 65536, TP_FRAME_NEED_MORE, 0, 0},
    {"compact l", MSG_HDR "l: 3\r\n\r\nabc", 65536, TP_FRAME_MESSAGE, 0, SIZE_MAX},
    {"compact L upper case", MSG_HDR "L:3\r\n\r\nabc", 65536, TP_FRAME_MESSAGE, 0, SIZE_MAX},
    {"name case-insensitive", MSG_HDR "content-LENGTH: 2\r\n\r\nab", 65536, TP_FRAME_MESSAGE, 0,
     SIZE_MAX},
    {"whitespace around value", MSG_HDR "Content-Length:   \t4 \t\r\n\r\nabcd", 65536,
     TP_FRAME_MESSAGE, 0, SIZE_MAX},
    {"whitespace before colon", MSG_HDR "Content-Length \t: 1\r\n\r\nx", 65536, TP_FRAME_MESSAGE, 0,
     SIZE_MAX},
    {"folded value", MSG_HDR "Content-Length:\r\n 2\r\n\r\nab", 65536, TP_FRAME_MESSAGE, 0,
     SIZE_MAX},
    {"missing content-length", MSG_HDR "Max-Forwards: 70\r\n\r\n", 65536, TP_FRAME_ERROR, 0, 0},
    {"negative content-length", MSG_HDR "Content-Length: -1\r\n\r\n", 65536, TP_FRAME_ERROR, 0, 0},
    {"garbage content-length", MSG_HDR "Content-Length: 12abc\r\n\r\n", 65536, TP_FRAME_ERROR, 0, 0},
    {"empty content-length", MSG_HDR "Content-Length: \r\n\r\n", 65536, TP_FRAME_ERROR, 0, 0},
    {"two content-lengths that differ", MSG_HDR "Content-Length: 1\r\nl: 2\r\n\r\nab", 65536,
     TP_FRAME_ERROR, 0, 0},
    {"huge content-length", MSG_HDR "Content-Length: 99999999999999999999999999\r\n\r\n", 65536,
     TP_FRAME_TOO_BIG, 0, 0},
    {"declared size over max", MSG_HDR "Content-Length: 200\r\n\r\n", 256, TP_FRAME_TOO_BIG, 0, 0},
    {"headers without end over max", MSG_HDR "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 64,
     TP_FRAME_TOO_BIG, 0, 0},
    {"header name only mentions length", MSG_HDR "X-Content-Length: 5\r\n\r\n", 65536,
     TP_FRAME_ERROR, 0, 0},
    {"ping", "\r\n\r\n", 65536, TP_FRAME_PING, 4, 0},
    {"ping then message", "\r\n\r\n" MSG_HDR "l: 0\r\n\r\n", 65536, TP_FRAME_PING, 4, 0},
    {"partial ping", "\r\n\r", 65536, TP_FRAME_NEED_MORE, 0, 0},
    {"lone CRLF waits (may be a ping)", "\r\n", 65536, TP_FRAME_NEED_MORE, 0, 0},
    {"pong before a message", "\r\nSIP/2.0 200 OK\r\nl: 0\r\n\r\n", 65536, TP_FRAME_PONG, 2, 0},
    {"empty buffer", "", 65536, TP_FRAME_NEED_MORE, 0, 0},
};

static void
test_tp_frame_cases(void **state)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct frame_case *c = &cases[i];
        size_t len = strlen(c->in), skip = 99, mlen = 99;
        size_t want_len = c->want_len == SIZE_MAX ? len : c->want_len;
        enum tp_frame_result r = tp_frame_scan(c->in, len, c->max, &skip, &mlen);

        print_message("case: %s\n", c->name);
        assert_int_equal(r, c->want);
        assert_int_equal(skip, c->want_skip);
        assert_int_equal(mlen, want_len);
    }
}

static void
test_tp_frame_two_pipelined_messages(void **state)
{
    const char *m1 = MSG_HDR "Content-Length: 3\r\n\r\nabc";
    const char *m2 = "SIP/2.0 200 OK\r\nl: 0\r\n\r\n";
    char buf[512];
    size_t l1 = strlen(m1), l2 = strlen(m2), skip, mlen;

    memcpy(buf, m1, l1);
    memcpy(buf + l1, m2, l2);
    assert_int_equal(tp_frame_scan(buf, l1 + l2, 65536, &skip, &mlen), TP_FRAME_MESSAGE);
    assert_int_equal(skip, 0);
    assert_int_equal(mlen, l1);
    assert_memory_equal(buf + skip, m1, l1);
    assert_int_equal(tp_frame_scan(buf + l1, l2, 65536, &skip, &mlen), TP_FRAME_MESSAGE);
    assert_int_equal(mlen, l2);
}

/* Every prefix of a message is NEED_MORE; the whole of it is one MESSAGE. */
static void
test_tp_frame_every_prefix_needs_more(void **state)
{
    const char *m = MSG_HDR "Content-Length: 5\r\n\r\nhello";
    size_t len = strlen(m), skip, mlen;

    for (size_t n = 0; n < len; n++)
        assert_int_equal(tp_frame_scan(m, n, 65536, &skip, &mlen), TP_FRAME_NEED_MORE);
    assert_int_equal(tp_frame_scan(m, len, 65536, &skip, &mlen), TP_FRAME_MESSAGE);
    assert_int_equal(mlen, len);
}

/* A message of exactly <max> bytes passes; one byte less of max is TOO_BIG. */
static void
test_tp_frame_exact_max(void **state)
{
    const char *m = MSG_HDR "Content-Length: 5\r\n\r\nhello";
    size_t len = strlen(m), skip, mlen;

    assert_int_equal(tp_frame_scan(m, len, len, &skip, &mlen), TP_FRAME_MESSAGE);
    assert_int_equal(tp_frame_scan(m, len, len - 1, &skip, &mlen), TP_FRAME_TOO_BIG);
}

/* The body may contain CRLFCRLF and "Content-Length:" without confusing the scan. */
static void
test_tp_frame_body_is_opaque(void **state)
{
    const char *m = MSG_HDR "Content-Length: 24\r\n\r\nContent-Length: 9\r\n\r\nxxx";
    size_t len = strlen(m), skip, mlen;

    assert_int_equal(tp_frame_scan(m, len, 65536, &skip, &mlen), TP_FRAME_MESSAGE);
    assert_int_equal(mlen, len);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tp_frame_cases),
        cmocka_unit_test(test_tp_frame_two_pipelined_messages),
        cmocka_unit_test(test_tp_frame_every_prefix_needs_more),
        cmocka_unit_test(test_tp_frame_exact_max),
        cmocka_unit_test(test_tp_frame_body_is_opaque),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
