/*
 * Unit tests for tp: real sockets on 127.0.0.1 with ephemeral ports, one event loop,
 * every wait bounded by a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "transport/tp.h"

#define MAX_RX 16

#define REQ(body)                                                                              \
    "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK77\r\n"    \
    "Content-Length: " #body "\r\n\r\n"

struct rx_rec {
    char buf[1024];
    size_t len;
    uint64_t conn_id;
    enum tp_proto proto;
    struct tp_addr src;
};

struct side {
    struct tp *tp;
    struct rx_rec rx[MAX_RX];
    int nrx;
    char fail_buf[1024];
    size_t fail_len;
    struct tp_addr fail_dst;
    enum tp_proto fail_proto;
    int nfail;
};

struct fx {
    struct event_base *base;
    struct event *tick;
    struct side a, b;
    int raw;                 /* raw client socket or -1 */
    char raw_in[1024];
    size_t raw_len;
    bool raw_eof;
};

static void
on_recv(struct tp_rx *rx, void *arg)
{
    struct side *s = arg;

    if (s->nrx < MAX_RX) {
        struct rx_rec *r = &s->rx[s->nrx];
        r->len = rx->len < sizeof r->buf ? rx->len : sizeof r->buf;
        memcpy(r->buf, rx->buf, r->len);
        r->conn_id = rx->conn_id;
        r->proto = rx->proto;
        r->src = rx->src;
    }
    s->nrx++;
}

static void
on_fail(const char *buf, size_t len, const struct tp_addr *dst, enum tp_proto proto, void *arg)
{
    struct side *s = arg;

    s->fail_len = len < sizeof s->fail_buf ? len : sizeof s->fail_buf;
    memcpy(s->fail_buf, buf, s->fail_len);
    s->fail_dst = *dst;
    s->fail_proto = proto;
    s->nfail++;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static int
setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    struct timeval tv = {0, 5000};

    fx->base = event_base_new();
    fx->tick = event_new(fx->base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(fx->tick, &tv);   /* wakes the loop so raw-socket predicates are polled */
    fx->raw = -1;
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;

    if (fx->raw >= 0)
        close(fx->raw);
    tp_free(fx->a.tp);
    tp_free(fx->b.tp);
    event_free(fx->tick);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

static struct tp *
side_new(struct fx *fx, struct side *s, const struct tp_limits *lim)
{
    s->tp = tp_new(fx->base, lim, on_recv, on_fail, s);
    assert_non_null(s->tp);
    return s->tp;
}

static struct tp_listener *
listen_on(struct side *s, enum tp_proto proto)
{
    struct tp_addr a;
    struct tp_listener *lis;

    assert_int_equal(tp_addr_from_ip(&a, "127.0.0.1", 0), 0);
    lis = tp_listen(s->tp, proto, &a);
    assert_non_null(lis);
    assert_int_not_equal(tp_addr_port(tp_listener_addr(lis)), 0);
    return lis;
}

static struct tp_listener *
listen_on_tp(struct tp *tp, enum tp_proto proto)
{
    struct tp_addr a;
    struct tp_listener *lis;

    assert_int_equal(tp_addr_from_ip(&a, "127.0.0.1", 0), 0);
    lis = tp_listen(tp, proto, &a);
    assert_non_null(lis);
    return lis;
}

/* Reads whatever the raw socket has (non-blocking). */
static void
raw_poll(struct fx *fx)
{
    ssize_t n;

    if (fx->raw < 0 || fx->raw_eof)
        return;
    n = recv(fx->raw, fx->raw_in + fx->raw_len, sizeof fx->raw_in - fx->raw_len, MSG_DONTWAIT);
    if (n > 0)
        fx->raw_len += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        fx->raw_eof = true;
}

typedef bool pred_fn(struct fx *fx, void *arg);

/* Runs the loop until <pred> holds or <ms> pass. Returns the predicate's last value. */
static bool
run_until(struct fx *fx, pred_fn *pred, void *arg, unsigned ms)
{
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        raw_poll(fx);
        if (pred(fx, arg))
            return true;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > (long)ms)
            return false;
        event_base_loop(fx->base, EVLOOP_ONCE);
    }
}

static void
run_for(struct fx *fx, unsigned ms)
{
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        event_base_loop(fx->base, EVLOOP_ONCE);
        raw_poll(fx);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < (long)ms);
}

static bool
side_has_rx(struct fx *fx, void *arg)
{
    struct side *s = arg;
    return s->nrx > 0;
}

static bool
any_side_has_rx(struct fx *fx, void *arg)
{
    (void)arg;
    return fx->a.nrx > 0 || fx->b.nrx > 0;
}

static bool
side_has_2rx(struct fx *fx, void *arg)
{
    struct side *s = arg;
    return s->nrx >= 2;
}

static bool
side_has_fail(struct fx *fx, void *arg)
{
    struct side *s = arg;
    return s->nfail > 0;
}

static bool
raw_eof(struct fx *fx, void *arg)
{
    return fx->raw_eof;
}

static bool
raw_has_bytes(struct fx *fx, void *arg)
{
    return fx->raw_len >= *(size_t *)arg;
}

static bool
no_conns(struct fx *fx, void *arg)
{
    struct side *s = arg;
    return tp_stats(s->tp)->conns_open == 0;
}

static int
raw_connect(struct fx *fx, const struct tp_listener *lis)
{
    const struct tp_addr *a = tp_listener_addr(lis);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)&a->ss, sizeof(struct sockaddr_in)), 0);
    fx->raw = fd;
    fx->raw_len = 0;
    fx->raw_eof = false;
    return fd;
}

static void
raw_write(struct fx *fx, const char *buf, size_t len)
{
    assert_int_equal(send(fx->raw, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static struct tp_dest
dest_to(enum tp_proto proto, const struct tp_addr *addr, uint64_t conn_id)
{
    struct tp_dest d;

    memset(&d, 0, sizeof d);
    d.proto = proto;
    if (addr != NULL)
        d.addr = *addr;
    d.conn_id = conn_id;
    return d;
}

/* ---- UDP ------------------------------------------------------------------------ */

static void
test_tp_udp_send_and_receive_between_two_listeners(void **state)
{
    struct fx *fx = *state;
    struct tp_limits lim;
    struct tp_listener *la, *lb;
    struct tp_dest d;
    struct tp_addr v6;
    const char *m1 = "OPTIONS sip:b SIP/2.0\r\n\r\n", *m2 = "SIP/2.0 200 OK\r\n\r\n";
    char big[300];
    int fd;

    tp_limits_default(&lim);
    lim.max_msg_size = 256;
    side_new(fx, &fx->a, NULL);
    side_new(fx, &fx->b, &lim);
    la = listen_on(&fx->a, TP_UDP);
    lb = listen_on(&fx->b, TP_UDP);
    assert_ptr_equal(tp_listener_first(fx->a.tp, TP_UDP), la);
    assert_null(tp_listener_first(fx->a.tp, TP_TCP));

    d = dest_to(TP_UDP, tp_listener_addr(lb), 0);
    assert_int_equal(tp_send(fx->a.tp, &d, m1, strlen(m1)), 0);
    assert_true(run_until(fx, side_has_rx, &fx->b, 2000));
    assert_int_equal(fx->b.rx[0].len, strlen(m1));
    assert_memory_equal(fx->b.rx[0].buf, m1, strlen(m1));
    assert_int_equal(fx->b.rx[0].proto, TP_UDP);
    assert_int_equal(fx->b.rx[0].conn_id, 0);
    assert_true(tp_addr_equal(&fx->b.rx[0].src, tp_listener_addr(la)));

    /* answer to the source address: goes out of b's socket, arrives at a's */
    d = dest_to(TP_UDP, &fx->b.rx[0].src, 0);
    assert_int_equal(tp_send(fx->b.tp, &d, m2, strlen(m2)), 0);
    assert_true(run_until(fx, side_has_rx, &fx->a, 2000));
    assert_memory_equal(fx->a.rx[0].buf, m2, strlen(m2));
    assert_true(tp_addr_equal(&fx->a.rx[0].src, tp_listener_addr(lb)));

    /* an oversize datagram is dropped and counted */
    memset(big, 'x', sizeof big);
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(sendto(fd, big, sizeof big, 0, (const struct sockaddr *)&tp_listener_addr(lb)->ss,
                            sizeof(struct sockaddr_in)),
                     (ssize_t)sizeof big);
    close(fd);
    run_for(fx, 50);
    assert_int_equal(tp_stats(fx->b.tp)->rx_oversize, 1);
    assert_int_equal(fx->b.nrx, 1);

    /* no IPv6 UDP listener: immediate failure */
    assert_int_equal(tp_addr_from_ip(&v6, "::1", 5060), 0);
    d = dest_to(TP_UDP, &v6, 0);
    assert_int_equal(tp_send(fx->a.tp, &d, m1, strlen(m1)), -1);

    assert_int_equal(tp_stats(fx->a.tp)->tx_msgs, 1);
    assert_int_equal(tp_stats(fx->b.tp)->rx_msgs, 1);
    assert_int_equal(tp_stats(fx->b.tp)->rx_bytes, strlen(m1));
}

/* ---- TCP ------------------------------------------------------------------------ */

static void
test_tp_tcp_request_and_response_on_same_conn(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    struct tp_dest d;
    const char *req = REQ(2) "hi", *resp = "SIP/2.0 200 OK\r\nl: 0\r\n\r\n";
    uint64_t srv_conn;
    struct tp_conn *conn;

    side_new(fx, &fx->a, NULL);
    side_new(fx, &fx->b, NULL);
    lb = listen_on(&fx->b, TP_TCP);

    d = dest_to(TP_TCP, tp_listener_addr(lb), 0);
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, side_has_rx, &fx->b, 2000));
    assert_int_equal(fx->b.rx[0].len, strlen(req));
    assert_memory_equal(fx->b.rx[0].buf, req, strlen(req));
    assert_int_equal(fx->b.rx[0].proto, TP_TCP);
    srv_conn = fx->b.rx[0].conn_id;
    assert_true(srv_conn != 0);
    conn = tp_conn_get(fx->b.tp, srv_conn);
    assert_non_null(conn);
    assert_int_equal(tp_conn_id(conn), srv_conn);
    assert_int_equal(tp_conn_proto(conn), TP_TCP);
    assert_true(tp_addr_equal(tp_conn_peer(conn), &fx->b.rx[0].src));
    assert_int_equal(tp_conn_class(conn), TP_CLASS_CLIENT);
    tp_conn_set_class(conn, TP_CLASS_SERVER);
    assert_int_equal(tp_conn_class(conn), TP_CLASS_SERVER);
    (*tp_conn_pending(conn))++;
    assert_int_equal(*tp_conn_pending(conn), 1);
    assert_int_equal(tp_stats(fx->b.tp)->conns_accepted, 1);

    /* response on the accepted connection, by id */
    d = dest_to(TP_TCP, NULL, srv_conn);
    assert_int_equal(tp_send(fx->b.tp, &d, resp, strlen(resp)), 0);
    assert_true(run_until(fx, side_has_rx, &fx->a, 2000));
    assert_memory_equal(fx->a.rx[0].buf, resp, strlen(resp));
    assert_non_null(tp_conn_get(fx->a.tp, fx->a.rx[0].conn_id));

    /* a second request reuses a's connection: same server conn, no new accept */
    d = dest_to(TP_TCP, tp_listener_addr(lb), 0);
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, side_has_2rx, &fx->b, 2000));
    assert_int_equal(fx->b.rx[1].conn_id, srv_conn);
    assert_int_equal(tp_stats(fx->b.tp)->conns_accepted, 1);
    assert_int_equal(tp_stats(fx->a.tp)->conns_open, 1);

    /* b sends to a's address without an id: reuses the accepted connection */
    d = dest_to(TP_TCP, &fx->b.rx[0].src, 0);
    assert_int_equal(tp_send(fx->b.tp, &d, resp, strlen(resp)), 0);
    assert_true(run_until(fx, side_has_2rx, &fx->a, 2000));
    assert_int_equal(tp_stats(fx->b.tp)->conns_open, 1);
    assert_int_equal(fx->a.rx[1].conn_id, fx->a.rx[0].conn_id);

    /* a closes: b sees the connection go, and its id is never found again */
    tp_conn_close(fx->a.tp, tp_conn_get(fx->a.tp, fx->a.rx[0].conn_id), true);
    assert_null(tp_conn_get(fx->a.tp, fx->a.rx[0].conn_id));
    assert_true(run_until(fx, no_conns, &fx->b, 2000));
    assert_null(tp_conn_get(fx->b.tp, srv_conn));
    assert_int_equal(fx->a.nfail, 0);
}

static void
test_tp_tcp_one_byte_writes_are_reassembled(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    const char *req = REQ(5) "hello";
    size_t len = strlen(req);

    side_new(fx, &fx->b, NULL);
    lb = listen_on(&fx->b, TP_TCP);
    raw_connect(fx, lb);
    for (size_t i = 0; i < len; i++) {
        raw_write(fx, req + i, 1);
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
        if (i % 16 == 0)
            run_for(fx, 1);
        if (i + 1 < len)
            assert_int_equal(fx->b.nrx, 0);
    }
    assert_true(run_until(fx, side_has_rx, &fx->b, 2000));
    run_for(fx, 20);
    assert_int_equal(fx->b.nrx, 1);
    assert_int_equal(fx->b.rx[0].len, len);
    assert_memory_equal(fx->b.rx[0].buf, req, len);
}

static void
test_tp_tcp_two_messages_in_one_write_are_two(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    const char *m1 = REQ(3) "one", *m2 = REQ(5) "two!!";
    char both[512];

    side_new(fx, &fx->b, NULL);
    lb = listen_on(&fx->b, TP_TCP);
    raw_connect(fx, lb);
    snprintf(both, sizeof both, "%s%s", m1, m2);
    raw_write(fx, both, strlen(both));
    assert_true(run_until(fx, side_has_2rx, &fx->b, 2000));
    run_for(fx, 20);
    assert_int_equal(fx->b.nrx, 2);
    assert_int_equal(fx->b.rx[0].len, strlen(m1));
    assert_memory_equal(fx->b.rx[0].buf, m1, strlen(m1));
    assert_int_equal(fx->b.rx[1].len, strlen(m2));
    assert_memory_equal(fx->b.rx[1].buf, m2, strlen(m2));
    assert_int_equal(fx->b.rx[0].conn_id, fx->b.rx[1].conn_id);
}

static void
test_tp_tcp_connect_to_closed_port_reports_failure(void **state)
{
    struct fx *fx = *state;
    struct tp_addr closed;
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    struct tp_dest d;
    const char *req = REQ(0), *req2 = REQ(1) "x";
    int fd;

    /* a port nobody listens on: bind, learn the number, close */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    close(fd);
    assert_int_equal(tp_addr_from_ip(&closed, "127.0.0.1", ntohs(sin.sin_port)), 0);

    side_new(fx, &fx->a, NULL);
    d = dest_to(TP_TCP, &closed, 0);
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_int_equal(tp_send(fx->a.tp, &d, req2, strlen(req2)), 0);   /* queued on the same */
    assert_int_equal(fx->a.nfail, 0);   /* never re-entrant from tp_send */
    assert_true(run_until(fx, side_has_fail, &fx->a, 3000));
    run_for(fx, 20);
    assert_int_equal(fx->a.nfail, 2);
    assert_int_equal(fx->a.fail_len, strlen(req2));   /* the last one reported */
    assert_memory_equal(fx->a.fail_buf, req2, strlen(req2));
    assert_int_equal(fx->a.fail_proto, TP_TCP);
    assert_true(tp_addr_equal(&fx->a.fail_dst, &closed));
    assert_int_equal(tp_stats(fx->a.tp)->send_fail, 2);
    assert_int_equal(tp_stats(fx->a.tp)->conns_open, 0);
}

static void
test_tp_tcp_keepalive_ping_is_answered(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    const char *req = REQ(0);
    size_t want = 2;

    side_new(fx, &fx->b, NULL);
    lb = listen_on(&fx->b, TP_TCP);
    raw_connect(fx, lb);
    raw_write(fx, "\r\n\r\n", 4);
    assert_true(run_until(fx, raw_has_bytes, &want, 2000));
    assert_int_equal(fx->raw_len, 2);
    assert_memory_equal(fx->raw_in, "\r\n", 2);
    assert_int_equal(tp_stats(fx->b.tp)->keepalive_pongs, 1);
    /* the connection stays usable; a lone CRLF (pong) before a message is skipped */
    raw_write(fx, "\r\n", 2);
    raw_write(fx, req, strlen(req));
    assert_true(run_until(fx, side_has_rx, &fx->b, 2000));
    assert_int_equal(fx->b.rx[0].len, strlen(req));
    assert_int_equal(tp_stats(fx->b.tp)->keepalive_pongs, 1);
    assert_false(fx->raw_eof);
}

static void
test_tp_tcp_oversize_message_closes_conn(void **state)
{
    struct fx *fx = *state;
    struct tp_limits lim;
    struct tp_listener *lb;
    const char *req = REQ(1000);

    tp_limits_default(&lim);
    lim.max_msg_size = 256;
    side_new(fx, &fx->b, &lim);
    lb = listen_on(&fx->b, TP_TCP);
    raw_connect(fx, lb);
    raw_write(fx, req, strlen(req));
    assert_true(run_until(fx, raw_eof, NULL, 2000));
    assert_int_equal(tp_stats(fx->b.tp)->rx_oversize, 1);
    assert_int_equal(fx->b.nrx, 0);
    assert_true(run_until(fx, no_conns, &fx->b, 2000));
}

static void
test_tp_tcp_missing_content_length_closes_conn(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    const char *req = "MESSAGE sip:bob@example.com SIP/2.0\r\nMax-Forwards: 70\r\n\r\n";

    side_new(fx, &fx->b, NULL);
    lb = listen_on(&fx->b, TP_TCP);
    raw_connect(fx, lb);
    raw_write(fx, req, strlen(req));
    assert_true(run_until(fx, raw_eof, NULL, 2000));
    assert_int_equal(tp_stats(fx->b.tp)->rx_bad_frame, 1);
    assert_int_equal(fx->b.nrx, 0);
}

static void
test_tp_tcp_idle_timeout_closes(void **state)
{
    struct fx *fx = *state;
    struct tp_limits lim;
    struct tp_listener *lb;

    tp_limits_default(&lim);
    lim.idle_timeout_s = 1;
    side_new(fx, &fx->b, &lim);
    lb = listen_on(&fx->b, TP_TCP);
    raw_connect(fx, lb);
    run_for(fx, 300);
    assert_false(fx->raw_eof);
    assert_true(run_until(fx, raw_eof, NULL, 4000));
    assert_int_equal(tp_stats(fx->b.tp)->conns_idle_closed, 1);
    assert_true(run_until(fx, no_conns, &fx->b, 2000));
}

static void
test_tp_tcp_max_conns_refuses(void **state)
{
    struct fx *fx = *state;
    struct tp_limits lim;
    struct tp_listener *lb;
    int first;

    tp_limits_default(&lim);
    lim.max_conns = 1;
    side_new(fx, &fx->b, &lim);
    lb = listen_on(&fx->b, TP_TCP);
    first = raw_connect(fx, lb);
    run_for(fx, 50);
    assert_int_equal(tp_stats(fx->b.tp)->conns_open, 1);
    raw_connect(fx, lb);   /* the second */
    assert_true(run_until(fx, raw_eof, NULL, 2000));
    assert_int_equal(tp_stats(fx->b.tp)->conns_refused, 1);
    assert_int_equal(tp_stats(fx->b.tp)->conns_open, 1);
    close(first);
}

static void
test_tp_tcp_close_after_write_flushes_first(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    struct tp_dest d;
    const char *req = REQ(0), *resp = "SIP/2.0 200 OK\r\nl: 0\r\n\r\n";

    side_new(fx, &fx->b, NULL);
    lb = listen_on(&fx->b, TP_TCP);
    raw_connect(fx, lb);
    raw_write(fx, req, strlen(req));
    assert_true(run_until(fx, side_has_rx, &fx->b, 2000));
    d = dest_to(TP_TCP, NULL, fx->b.rx[0].conn_id);
    assert_int_equal(tp_send(fx->b.tp, &d, resp, strlen(resp)), 0);
    tp_conn_close(fx->b.tp, tp_conn_get(fx->b.tp, fx->b.rx[0].conn_id), false);
    assert_int_equal(tp_send(fx->b.tp, &d, resp, strlen(resp)), -1);   /* closing: refused */
    assert_true(run_until(fx, raw_eof, NULL, 2000));
    assert_int_equal(fx->raw_len, strlen(resp));
    assert_memory_equal(fx->raw_in, resp, strlen(resp));
}

static void
test_tp_tls_without_configuration_is_refused(void **state)
{
    struct fx *fx = *state;
    struct tp_addr a;
    struct tp_dest d;

    side_new(fx, &fx->a, NULL);
    assert_int_equal(tp_addr_from_ip(&a, "127.0.0.1", 5061), 0);
    d = dest_to(TP_TLS, &a, 0);
    assert_int_equal(tp_send(fx->a.tp, &d, "x", 1), -1);
    assert_null(tp_listen(fx->a.tp, TP_TLS, &a));
}

/* ---- addresses and listen specs -------------------------------------------------- */

static void
test_tp_parse_listen_spec(void **state)
{
    struct spec_case {
        const char *spec;
        int rc;
        enum tp_proto proto;
        const char *str;
    } cases[] = {
        {"udp:127.0.0.1:5060", 0, TP_UDP, "127.0.0.1:5060"},
        {"tcp:[::1]:5070", 0, TP_TCP, "[::1]:5070"},
        {"tls:0.0.0.0:5061", 0, TP_TLS, "0.0.0.0:5061"},
        {"UDP:10.1.2.3", 0, TP_UDP, "10.1.2.3:5060"},
        {"tcp:[::]", 0, TP_TCP, "[::]:5060"},
        {"tls:127.0.0.1", 0, TP_TLS, "127.0.0.1:5061"},
        {"tcp:127.0.0.1:0", 0, TP_TCP, "127.0.0.1:0"},
        {"sctp:127.0.0.1:5060", -1, TP_UDP, NULL},
        {"127.0.0.1:5060", -1, TP_UDP, NULL},
        {"udp:", -1, TP_UDP, NULL},
        {"udp:host.example.com:5060", -1, TP_UDP, NULL},
        {"udp:127.0.0.1:99999", -1, TP_UDP, NULL},
        {"udp:127.0.0.1:-1", -1, TP_UDP, NULL},
        {"udp:127.0.0.1:50x", -1, TP_UDP, NULL},
        {"tcp:::1:5060", -1, TP_UDP, NULL},
        {"tcp:[::1:5060", -1, TP_UDP, NULL},
        {"tcp:[::1]x", -1, TP_UDP, NULL},
        {"", -1, TP_UDP, NULL},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum tp_proto proto = TP_UDP;
        struct tp_addr a;
        char err[160], s[64];
        int rc = tp_parse_listen_spec(cases[i].spec, &proto, &a, err, sizeof err);

        print_message("spec '%s' -> %d %s\n", cases[i].spec, rc, rc ? err : "");
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_int_equal(proto, cases[i].proto);
            assert_string_equal(tp_addr_str(&a, s, sizeof s), cases[i].str);
        } else {
            assert_true(strlen(err) > 10);
        }
    }
    assert_int_equal(tp_parse_listen_spec(NULL, NULL, NULL, NULL, 0), -1);
}

static void
test_tp_addr_helpers(void **state)
{
    struct tp_addr a, b, c;
    char s[64];

    assert_int_equal(tp_addr_from_ip(&a, "[2001:db8::1]", 5060), 0);
    assert_string_equal(tp_addr_str(&a, s, sizeof s), "[2001:db8::1]:5060");
    assert_string_equal(tp_addr_host(&a, s, sizeof s), "2001:db8::1");
    assert_int_equal(tp_addr_port(&a), 5060);
    assert_int_equal(tp_addr_from_ip(&b, "2001:db8::1", 5060), 0);
    assert_true(tp_addr_equal(&a, &b));
    assert_int_equal(tp_addr_from_ip(&c, "2001:db8::1", 5061), 0);
    assert_false(tp_addr_equal(&a, &c));
    assert_int_equal(tp_addr_from_ip(&c, "192.0.2.7", 5060), 0);
    assert_false(tp_addr_equal(&a, &c));
    assert_string_equal(tp_addr_host(&c, s, sizeof s), "192.0.2.7");
    assert_int_equal(tp_addr_from_ip(&c, "example.com", 5060), -1);
    assert_int_equal(tp_addr_from_ip(&c, "", 5060), -1);
    assert_int_equal(tp_addr_from_ip(&c, "[]", 5060), -1);
    assert_string_equal(tp_proto_name(TP_UDP), "UDP");
    assert_string_equal(tp_proto_name(TP_TCP), "TCP");
    assert_string_equal(tp_proto_name(TP_TLS), "TLS");
}

/* tp_raise_fd_limit lifts the soft descriptor limit to the hard one (once per process). */
static void
test_tp_raise_fd_limit_to_hard(void **state)
{
    struct rlimit orig, low, now;

    (void)state;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &orig), 0);
    if (orig.rlim_max == RLIM_INFINITY || orig.rlim_max <= 256)
        skip();
    low = orig;
    low.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    assert_int_equal(tp_raise_fd_limit(100), 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
    assert_true(now.rlim_cur == orig.rlim_max);
    /* a max_conns above the limit only warns */
    assert_int_equal(tp_raise_fd_limit((unsigned)orig.rlim_max * 2), 0);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &orig), 0);
}

/* SO_REUSEPORT (tp_limits.reuse_port): a second listener on a bound address succeeds
 * only when both sockets set the flag; a datagram to the shared address reaches one. */
static void
test_tp_reuse_port_lets_two_listeners_share_an_address(void **state)
{
    struct fx *fx = *state;
    struct tp_limits lim;
    enum tp_proto protos[] = {TP_UDP, TP_TCP};

    tp_limits_default(&lim);
    assert_false(lim.reuse_port);
    for (size_t i = 0; i < sizeof protos / sizeof protos[0]; i++) {
        struct tp *plain, *shared1, *shared2;
        struct tp_listener *l1, *l2;
        struct tp_addr at;

        plain = tp_new(fx->base, NULL, on_recv, on_fail, &fx->b);
        lim.reuse_port = true;
        shared1 = tp_new(fx->base, &lim, on_recv, on_fail, &fx->a);
        shared2 = tp_new(fx->base, &lim, on_recv, on_fail, &fx->b);
        assert_non_null(plain);
        assert_non_null(shared1);
        assert_non_null(shared2);

        l1 = listen_on_tp(shared1, protos[i]);
        at = *tp_listener_addr(l1);
        /* with the flag on both: the second bind succeeds, same port */
        l2 = tp_listen(shared2, protos[i], &at);
        assert_non_null(l2);
        assert_int_equal(tp_addr_port(tp_listener_addr(l2)), tp_addr_port(&at));
        /* without it, the bind fails: the address is taken */
        assert_null(tp_listen(plain, protos[i], &at));
        tp_free(plain);

        if (protos[i] == TP_UDP) {
            /* one datagram to the shared port arrives exactly once */
            int fd = socket(AF_INET, SOCK_DGRAM, 0);
            const char *m = "OPTIONS sip:x SIP/2.0\r\n\r\n";
            fx->a.nrx = fx->b.nrx = 0;
            assert_true(fd >= 0);
            assert_int_equal(sendto(fd, m, strlen(m), 0, (const struct sockaddr *)&at.ss, at.len),
                             (ssize_t)strlen(m));
            assert_true(run_until(fx, any_side_has_rx, NULL, 2000));
            run_for(fx, 50);
            assert_int_equal(fx->a.nrx + fx->b.nrx, 1);
            close(fd);
        }
        tp_free(shared1);
        tp_free(shared2);
        lim.reuse_port = false;
    }
    /* plain listeners with the flag off are still exclusive (the default) */
    {
        struct tp *p1 = tp_new(fx->base, NULL, on_recv, on_fail, &fx->a);
        struct tp *p2 = tp_new(fx->base, NULL, on_recv, on_fail, &fx->b);
        struct tp_listener *l1 = listen_on_tp(p1, TP_UDP);
        assert_null(tp_listen(p2, TP_UDP, tp_listener_addr(l1)));
        tp_free(p1);
        tp_free(p2);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tp_udp_send_and_receive_between_two_listeners, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_request_and_response_on_same_conn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_one_byte_writes_are_reassembled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_two_messages_in_one_write_are_two, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_connect_to_closed_port_reports_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_keepalive_ping_is_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_oversize_message_closes_conn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_missing_content_length_closes_conn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_idle_timeout_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_max_conns_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_close_after_write_flushes_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_without_configuration_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_reuse_port_lets_two_listeners_share_an_address, setup,
                                        teardown),
        cmocka_unit_test(test_tp_parse_listen_spec),
        cmocka_unit_test(test_tp_addr_helpers),
        cmocka_unit_test(test_tp_raise_fd_limit_to_hard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
