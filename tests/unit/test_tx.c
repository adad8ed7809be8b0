/*
 * Unit tests for transaction/tx (RFC 3261 §17, RFC 6026): a real event_base and a
 * real struct tp on 127.0.0.1 ephemeral ports, and a small fake peer (a raw UDP or TCP
 * socket on the same loop) that sends requests/responses and records what it gets.
 * Timers are made fast with tx_opts (T1 = 10 ms, T2 = 80, T4 = 100, lifetime 300 ms,
 * Timer C 500 ms); every wait is bounded by a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "sip/sip_msg.h"
#include "transaction/tx.h"
#include "transport/tp.h"

#define T1 10
#define T2 80
#define T4 100
#define LIFETIME 300
#define TIMER_C 500

#define MAX_PEER_RX 256
#define MAX_CB 64

struct peer_msg {
    char buf[2048];
    size_t len;
    uint64_t at_ms;
};

struct fx {
    struct event_base *base;
    struct event *tick;
    struct tp *tp;
    struct tp_listener *udp, *tcp;
    uint16_t udp_port, tcp_port;
    struct tx_layer *txl;
    struct tx_opts opts;

    int peer;                       /* fake peer socket (UDP unless peer_tcp) */
    bool peer_tcp;
    uint16_t peer_port;
    struct event *peer_ev;
    struct peer_msg prx[MAX_PEER_RX];
    int nprx;

    /* upcalls */
    struct tx *stx[16];             /* server transactions (we hold a ref) */
    int nreq;
    struct sip_msg *acks[8];
    int nack;
    struct sip_msg *strays[8];
    int nstray;
    int ntimeout;
    uint64_t timeout_at;
    bool answer_in_timeout;         /* server_timeout answers 504 itself */

    /* client callback */
    int cb_code[MAX_CB];
    bool cb_null[MAX_CB];
    int ncb;
};

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs the loop until <cond> holds or <ms> pass; yields the last value of <cond>. */
#define RUN_UNTIL(fx, cond, ms)                                                                \
    ({                                                                                         \
        uint64_t t0_ = now_ms();                                                               \
        bool ok_;                                                                              \
        while (!(ok_ = (cond)) && now_ms() - t0_ < (uint64_t)(ms))                             \
            event_base_loop((fx)->base, EVLOOP_ONCE);                                          \
        ok_;                                                                                   \
    })

static void
run_for(struct fx *fx, unsigned ms)
{
    uint64_t t0 = now_ms();

    while (now_ms() - t0 < ms)
        event_base_loop(fx->base, EVLOOP_ONCE);
}

/* ------------------------------------------------------------------ plumbing */

static void
on_recv(struct tp_rx *rx, void *arg)
{
    struct fx *fx = arg;
    struct sip_error err;
    struct sip_msg *msg = sip_msg_parse(rx->buf, rx->len, NULL, &err);

    if (msg == NULL)
        return;
    tx_receive(fx->txl, msg, rx);
}

static void
on_fail(const char *buf, size_t len, const struct tp_addr *dst, enum tp_proto proto, void *arg)
{
    struct fx *fx = arg;

    tx_transport_failed(fx->txl, buf, len);
}

static void
h_request(struct tx *stx, const struct tp_rx *rx, void *arg)
{
    struct fx *fx = arg;

    if (fx->nreq < (int)(sizeof fx->stx / sizeof fx->stx[0])) {
        tx_ref(stx);
        fx->stx[fx->nreq] = stx;
    }
    fx->nreq++;
}

static void
h_ack(struct sip_msg *ack, const struct tp_rx *rx, void *arg)
{
    struct fx *fx = arg;

    if (fx->nack < (int)(sizeof fx->acks / sizeof fx->acks[0]))
        fx->acks[fx->nack++] = ack;
    else
        sip_msg_free(ack);
}

static void
h_stray(struct sip_msg *resp, const struct tp_rx *rx, void *arg)
{
    struct fx *fx = arg;

    if (fx->nstray < (int)(sizeof fx->strays / sizeof fx->strays[0]))
        fx->strays[fx->nstray++] = resp;
    else
        sip_msg_free(resp);
}

static void
h_timeout(struct tx *stx, void *arg)
{
    struct fx *fx = arg;

    fx->ntimeout++;
    fx->timeout_at = now_ms();
    if (fx->answer_in_timeout)
        assert_int_equal(tx_reply_code(stx, 504, "Owner Gave Up"), 0);
}

static void
client_cb(struct tx *ctx, struct sip_msg *resp, int code, void *arg)
{
    struct fx *fx = arg;

    if (fx->ncb < MAX_CB) {
        fx->cb_code[fx->ncb] = code;
        fx->cb_null[fx->ncb] = resp == NULL;
        if (resp)
            assert_int_equal(resp->status, code);
    }
    fx->ncb++;
}

static void
peer_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fx *fx = arg;

    for (;;) {
        char buf[2048];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0)
            return;
        if (fx->nprx < MAX_PEER_RX) {
            struct peer_msg *m = &fx->prx[fx->nprx++];
            memcpy(m->buf, buf, (size_t)n);
            m->len = (size_t)n;
            m->buf[n < (ssize_t)sizeof m->buf ? n : (ssize_t)sizeof m->buf - 1] = '\0';
            m->at_ms = now_ms();
        }
    }
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
    struct tp_addr a;
    struct tx_handlers h = {h_request, h_ack, h_stray, h_timeout};

    sip_init();
    fx->base = event_base_new();
    fx->tick = event_new(fx->base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(fx->tick, &tv);
    fx->tp = tp_new(fx->base, NULL, on_recv, on_fail, fx);
    assert_non_null(fx->tp);
    assert_int_equal(tp_addr_from_ip(&a, "127.0.0.1", 0), 0);
    fx->udp = tp_listen(fx->tp, TP_UDP, &a);
    fx->tcp = tp_listen(fx->tp, TP_TCP, &a);
    assert_non_null(fx->udp);
    assert_non_null(fx->tcp);
    fx->udp_port = tp_addr_port(tp_listener_addr(fx->udp));
    fx->tcp_port = tp_addr_port(tp_listener_addr(fx->tcp));
    tx_opts_default(&fx->opts);
    fx->opts.t1_ms = T1;
    fx->opts.t2_ms = T2;
    fx->opts.t4_ms = T4;
    fx->opts.max_lifetime_ms = LIFETIME;
    fx->opts.timer_c_ms = TIMER_C;
    fx->txl = tx_layer_new(fx->base, fx->tp, &fx->opts, &h, fx);
    assert_non_null(fx->txl);
    fx->peer = -1;
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;
    int n = fx->nreq < 16 ? fx->nreq : 16;

    /* our references first: tx_free reads the layer's counters */
    for (int i = 0; i < n; i++)
        tx_unref(fx->stx[i]);
    for (int i = 0; i < fx->nack; i++)
        sip_msg_free(fx->acks[i]);
    for (int i = 0; i < fx->nstray; i++)
        sip_msg_free(fx->strays[i]);
    tx_layer_free(fx->txl);
    tp_free(fx->tp);
    if (fx->peer_ev)
        event_free(fx->peer_ev);
    if (fx->peer >= 0)
        close(fx->peer);
    event_free(fx->tick);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

static void
peer_watch(struct fx *fx)
{
    fx->peer_ev = event_new(fx->base, fx->peer, EV_READ | EV_PERSIST, peer_read_cb, fx);
    event_add(fx->peer_ev, NULL);
}

/* A UDP peer socket on 127.0.0.1. */
static void
peer_udp(struct fx *fx)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t sl = sizeof sin;

    fx->peer = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fx->peer >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fx->peer, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fx->peer, (struct sockaddr *)&sin, &sl), 0);
    fx->peer_port = ntohs(sin.sin_port);
    peer_watch(fx);
}

/* A TCP peer connected to our TCP listener. */
static void
peer_tcp(struct fx *fx)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t sl = sizeof sin;

    fx->peer = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fx->peer >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(fx->tcp_port);
    assert_int_equal(connect(fx->peer, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fx->peer, (struct sockaddr *)&sin, &sl), 0);
    fx->peer_port = ntohs(sin.sin_port);
    fx->peer_tcp = true;
    peer_watch(fx);
}

static void
peer_send(struct fx *fx, const char *text)
{
    size_t len = strlen(text);

    if (fx->peer_tcp) {
        assert_int_equal(send(fx->peer, text, len, 0), (ssize_t)len);
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sin.sin_port = htons(fx->udp_port);
        assert_int_equal(sendto(fx->peer, text, len, 0, (struct sockaddr *)&sin, sizeof sin),
                         (ssize_t)len);
    }
}

/* Where the peer listens, as a tp_dest for client transactions. */
static struct tp_dest
peer_dest(struct fx *fx)
{
    struct tp_dest d;

    memset(&d, 0, sizeof d);
    d.proto = TP_UDP;
    assert_int_equal(tp_addr_from_ip(&d.addr, "127.0.0.1", fx->peer_port), 0);
    return d;
}

/* How many messages the peer got whose text starts with <prefix>. */
static int
peer_count(const struct fx *fx, const char *prefix)
{
    int n = 0;

    for (int i = 0; i < fx->nprx; i++)
        if (strncmp(fx->prx[i].buf, prefix, strlen(prefix)) == 0)
            n++;
    return n;
}

/* The last message the peer got starting with <prefix>, or NULL. */
static const struct peer_msg *
peer_last(const struct fx *fx, const char *prefix)
{
    for (int i = fx->nprx - 1; i >= 0; i--)
        if (strncmp(fx->prx[i].buf, prefix, strlen(prefix)) == 0)
            return &fx->prx[i];
    return NULL;
}

/* Copies the value of header <name> (first occurrence, "Name: ") from <text>. */
static const char *
hdr(const char *text, const char *name, char *out, size_t outlen)
{
    char key[64];
    const char *p, *e;

    snprintf(key, sizeof key, "\r\n%s: ", name);
    p = strstr(text, key);
    if (p == NULL)
        return NULL;
    p += strlen(key);
    e = strstr(p, "\r\n");
    snprintf(out, outlen, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
    return out;
}

/* ------------------------------------------------------------------ messages */

/* A request from the peer (Via sent-by = the peer's own address, with rport). */
static void
peer_request(struct fx *fx, const char *method, const char *branch, unsigned cseq,
             const char *cseq_method, const char *to_tag)
{
    char text[1024];

    snprintf(text, sizeof text,
             "%s sip:bob@127.0.0.1 SIP/2.0\r\n"
             "Via: SIP/2.0/%s 127.0.0.1:%u;branch=%s;rport\r\n"
             "Max-Forwards: 70\r\n"
             "From: <sip:alice@example.com>;tag=peer1\r\n"
             "To: <sip:bob@example.com>%s%s\r\n"
             "Call-ID: call-%s@test\r\n"
             "CSeq: %u %s\r\n"
             "Content-Length: 0\r\n\r\n",
             method, fx->peer_tcp ? "TCP" : "UDP", fx->peer_port, branch, to_tag ? ";tag=" : "",
             to_tag ? to_tag : "", "1", cseq, cseq_method ? cseq_method : method);
    peer_send(fx, text);
}

/* A request we send as a client (top Via = our listener, fresh branch). */
static struct sip_msg *
client_request(struct fx *fx, const char *method, const char *branch, unsigned cseq)
{
    char text[1024];
    struct sip_error err;
    struct sip_msg *msg;

    snprintf(text, sizeof text,
             "%s sip:bob@127.0.0.1:%u SIP/2.0\r\n"
             "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s;rport\r\n"
             "Max-Forwards: 70\r\n"
             "Route: <sip:127.0.0.1:%u;lr>\r\n"
             "From: <sip:alice@example.com>;tag=uac1\r\n"
             "To: <sip:bob@example.com>\r\n"
             "Call-ID: client-%s@test\r\n"
             "CSeq: %u %s\r\n"
             "Content-Length: 0\r\n\r\n",
             method, fx->peer_port, fx->udp_port, branch, fx->peer_port, branch, cseq, method);
    msg = sip_msg_parse(text, strlen(text), NULL, &err);
    assert_non_null(msg);
    return msg;
}

/* The peer answers the request <req_text> it received with <code>. */
static void
peer_respond(struct fx *fx, const char *req_text, int code, const char *reason, const char *to_tag)
{
    char text[2048], via[256], from[256], to[256], cid[256], cseq[64];

    assert_non_null(hdr(req_text, "Via", via, sizeof via));
    assert_non_null(hdr(req_text, "From", from, sizeof from));
    assert_non_null(hdr(req_text, "To", to, sizeof to));
    assert_non_null(hdr(req_text, "Call-ID", cid, sizeof cid));
    assert_non_null(hdr(req_text, "CSeq", cseq, sizeof cseq));
    snprintf(text, sizeof text,
             "SIP/2.0 %d %s\r\nVia: %s\r\nFrom: %s\r\nTo: %s%s%s\r\nCall-ID: %s\r\nCSeq: %s\r\n"
             "Content-Length: 0\r\n\r\n",
             code, reason, via, from, to, to_tag ? ";tag=" : "", to_tag ? to_tag : "", cid, cseq);
    peer_send(fx, text);
}

/* ------------------------------------------------------------------ server non-INVITE */

static void
test_tx_server_non_invite_absorbs_retransmissions_and_resends_final(void **state)
{
    struct fx *fx = *state;
    struct tx *stx;
    const struct peer_msg *first, *second;

    peer_udp(fx);
    peer_request(fx, "MESSAGE", "z9hG4bKsni1", 1, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    stx = fx->stx[0];
    assert_true(tx_is_server(stx));
    assert_false(tx_is_invite(stx));
    assert_int_equal(tx_state(stx), TX_TRYING);
    assert_int_equal(tx_request(stx)->method, SIP_MESSAGE);
    assert_int_equal(tx_reply_dest(stx)->proto, TP_UDP);
    assert_int_equal(tp_addr_port(&tx_reply_dest(stx)->addr), fx->peer_port);

    /* a retransmission before any response: absorbed, nothing sent */
    peer_request(fx, "MESSAGE", "z9hG4bKsni1", 1, NULL, NULL);
    assert_true(RUN_UNTIL(fx, tx_layer_stats(fx->txl)->retransmits_absorbed >= 1, 1000));
    assert_int_equal(fx->nreq, 1);
    assert_int_equal(fx->nprx, 0);

    /* final response; a retransmission gets the same bytes again */
    assert_int_equal(tx_reply_code(stx, 200, NULL), 0);
    assert_int_equal(tx_state(stx), TX_COMPLETED);
    assert_int_equal(tx_last_status(stx), 200);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 200 OK") == 1, 1000));
    assert_int_equal(tx_reply_code(stx, 202, NULL), -1);   /* a final already went out */
    peer_request(fx, "MESSAGE", "z9hG4bKsni1", 1, NULL, NULL);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 200 OK") == 2, 1000));
    assert_int_equal(fx->nreq, 1);
    first = &fx->prx[0];
    second = peer_last(fx, "SIP/2.0 200 OK");
    assert_int_equal(first->len, second->len);
    assert_memory_equal(first->buf, second->buf, first->len);

    /* Timer J (64*T1 on UDP) ends it; a late copy is then a new request */
    assert_true(RUN_UNTIL(fx, tx_state(stx) == TX_TERMINATED, 64 * T1 + 1000));
    peer_request(fx, "MESSAGE", "z9hG4bKsni1", 1, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 2, 1000));
}

static void
test_tx_server_non_invite_provisional_is_resent_on_retransmission(void **state)
{
    struct fx *fx = *state;
    struct tx *stx;

    peer_udp(fx);
    peer_request(fx, "OPTIONS", "z9hG4bKsni2", 7, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    stx = fx->stx[0];
    assert_int_equal(tx_reply_code(stx, 100, NULL), 0);
    assert_int_equal(tx_state(stx), TX_PROCEEDING);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 100 ") == 1, 1000));
    /* a 100 carries no To tag (RFC 3261 §8.2.6.2) */
    {
        char to[256];
        assert_non_null(hdr(fx->prx[0].buf, "To", to, sizeof to));
        assert_null(strstr(to, "tag="));
    }
    peer_request(fx, "OPTIONS", "z9hG4bKsni2", 7, NULL, NULL);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 100 ") == 2, 1000));
    assert_int_equal(tx_reply_code(stx, 404, NULL), 0);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 404 ") == 1, 1000));
    assert_int_equal(fx->nreq, 1);
}

static void
test_tx_server_non_invite_over_tcp_ends_at_the_final(void **state)
{
    struct fx *fx = *state;
    struct tx *stx;

    peer_tcp(fx);
    peer_request(fx, "MESSAGE", "z9hG4bKtcp1", 3, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    stx = fx->stx[0];
    assert_int_equal(tx_reply_dest(stx)->proto, TP_TCP);
    assert_int_not_equal(tx_reply_dest(stx)->conn_id, 0);
    assert_int_equal(tx_reply_code(stx, 200, NULL), 0);
    /* Timer J is zero on a reliable transport (RFC 3261 §17.2.2) */
    assert_int_equal(tx_state(stx), TX_TERMINATED);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 200 OK") == 1, 1000));
    run_for(fx, 3 * T1);
    assert_int_equal(fx->nprx, 1);
}

/* ------------------------------------------------------------------ server INVITE */

static void
test_tx_server_invite_error_is_retransmitted_until_ack(void **state)
{
    struct fx *fx = *state;
    struct tx *stx;
    char to[256], *tag;
    int sent;

    peer_udp(fx);
    peer_request(fx, "INVITE", "z9hG4bKsi1", 10, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    stx = fx->stx[0];
    assert_true(tx_is_invite(stx));
    assert_int_equal(tx_state(stx), TX_PROCEEDING);
    assert_int_equal(tx_reply_code(stx, 486, NULL), 0);
    assert_int_equal(tx_state(stx), TX_COMPLETED);
    /* Timer G: T1, 2T1, 4T1 ... */
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 486 ") >= 4, 64 * T1));
    assert_true(tx_layer_stats(fx->txl)->retransmits_sent >= 3);

    /* the ACK (same branch, To with our tag) confirms it and stops Timer G */
    assert_non_null(hdr(fx->prx[0].buf, "To", to, sizeof to));
    tag = strstr(to, ";tag=");
    assert_non_null(tag);
    peer_request(fx, "ACK", "z9hG4bKsi1", 10, NULL, tag + 5);
    assert_true(RUN_UNTIL(fx, tx_state(stx) != TX_COMPLETED, 1000));
    assert_int_equal(tx_state(stx), TX_CONFIRMED);
    sent = peer_count(fx, "SIP/2.0 486 ");
    assert_int_equal(fx->nack, 0);   /* absorbed by the transaction */
    assert_int_equal(fx->nreq, 1);
    /* Timer I (T4) ends it; no more 486 */
    assert_true(RUN_UNTIL(fx, tx_state(stx) == TX_TERMINATED, T4 + 500));
    run_for(fx, 2 * T2);
    assert_int_equal(peer_count(fx, "SIP/2.0 486 "), sent);
}

static void
test_tx_server_invite_timer_h_ends_it_without_ack(void **state)
{
    struct fx *fx = *state;
    struct tx *stx;
    uint64_t t0;
    int sent;

    peer_udp(fx);
    peer_request(fx, "INVITE", "z9hG4bKsi2", 11, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    stx = fx->stx[0];
    t0 = now_ms();
    assert_int_equal(tx_reply_code(stx, 603, NULL), 0);
    assert_true(RUN_UNTIL(fx, tx_state(stx) == TX_TERMINATED, 64 * T1 + 1000));
    assert_true(now_ms() - t0 >= 64 * T1 - 5);
    run_for(fx, 5 * T1);   /* let the peer read what was already in flight */
    sent = peer_count(fx, "SIP/2.0 603 ");
    /* 10, 20, 40, 80, 80, ... (capped at T2) within 640 ms: about 10 copies */
    assert_true(sent >= 4);
    assert_true(sent <= 14);
    run_for(fx, 2 * T2);
    assert_int_equal(peer_count(fx, "SIP/2.0 603 "), sent);
}

static void
test_tx_server_invite_2xx_is_accepted_and_ack_goes_up(void **state)
{
    struct fx *fx = *state;
    struct tx *stx;
    char to[256], *tag;

    peer_udp(fx);
    peer_request(fx, "INVITE", "z9hG4bKsi3", 12, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    stx = fx->stx[0];
    assert_int_equal(tx_reply_code(stx, 180, NULL), 0);
    assert_int_equal(tx_state(stx), TX_PROCEEDING);
    assert_int_equal(tx_reply_code(stx, 200, NULL), 0);
    assert_int_equal(tx_state(stx), TX_ACCEPTED);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 200 ") == 1, 1000));
    /* a retransmitted INVITE is absorbed: the 2xx is the TU's to retransmit (RFC 6026) */
    peer_request(fx, "INVITE", "z9hG4bKsi3", 12, NULL, NULL);
    run_for(fx, 5 * T1);
    assert_int_equal(peer_count(fx, "SIP/2.0 200 "), 1);
    assert_int_equal(fx->nreq, 1);

    /* the ACK for the 2xx has its own branch: it goes to handlers.ack */
    assert_non_null(hdr(peer_last(fx, "SIP/2.0 200 ")->buf, "To", to, sizeof to));
    tag = strstr(to, ";tag=");
    assert_non_null(tag);
    peer_request(fx, "ACK", "z9hG4bKsi3ack", 12, NULL, tag + 5);
    assert_true(RUN_UNTIL(fx, fx->nack == 1, 1000));
    assert_int_equal(fx->acks[0]->method, SIP_ACK);
    assert_string_equal(fx->acks[0]->branch, "z9hG4bKsi3ack");
    assert_int_equal(fx->nreq, 1);

    /* Timer L (64*T1) ends the Accepted state */
    assert_true(RUN_UNTIL(fx, tx_state(stx) == TX_TERMINATED, 64 * T1 + 1000));
}

static void
test_tx_server_lifetime_expiry_calls_timeout_and_sends_408(void **state)
{
    struct fx *fx = *state;
    struct tx *stx;
    uint64_t t0;

    peer_udp(fx);
    peer_request(fx, "INVITE", "z9hG4bKlife1", 13, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    t0 = now_ms();
    stx = fx->stx[0];
    assert_true(RUN_UNTIL(fx, fx->ntimeout == 1, LIFETIME + 1000));
    assert_true(fx->timeout_at - t0 >= LIFETIME / 2);   /* loose: t0 is taken after the handler ran */
    assert_int_equal(tx_last_status(stx), 408);
    assert_int_equal(tx_state(stx), TX_COMPLETED);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 408 ") >= 1, 1000));
    assert_int_equal(tx_layer_stats(fx->txl)->timeouts, 1);
}

static void
test_tx_server_timeout_handler_may_answer_itself(void **state)
{
    struct fx *fx = *state;

    fx->answer_in_timeout = true;
    peer_udp(fx);
    peer_request(fx, "MESSAGE", "z9hG4bKlife2", 14, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 504 Owner Gave Up") == 1, LIFETIME + 1000));
    run_for(fx, 3 * T1);
    assert_int_equal(peer_count(fx, "SIP/2.0 408 "), 0);
    assert_int_equal(tx_last_status(fx->stx[0]), 504);
}

static void
test_tx_server_provisional_restarts_the_lifetime(void **state)
{
    struct fx *fx = *state;
    struct tx *stx;
    uint64_t t0;

    peer_udp(fx);
    peer_request(fx, "INVITE", "z9hG4bKlife3", 15, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    t0 = now_ms();
    stx = fx->stx[0];
    run_for(fx, LIFETIME * 2 / 3);
    assert_int_equal(fx->ntimeout, 0);
    assert_int_equal(tx_reply_code(stx, 183, "Session Progress"), 0);
    /* past the original deadline: still alive */
    run_for(fx, LIFETIME * 2 / 3);
    assert_int_equal(fx->ntimeout, 0);
    assert_int_equal(tx_state(stx), TX_PROCEEDING);
    assert_true(RUN_UNTIL(fx, fx->ntimeout == 1, LIFETIME + 1000));
    assert_true(fx->timeout_at - t0 >= LIFETIME);   /* restarted: later than the first deadline */
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 408 ") >= 1, 1000));
}

/* ------------------------------------------------------------------ client non-INVITE */

static void
test_tx_client_non_invite_retransmits_until_a_final(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;
    int copies;

    peer_udp(fx);
    d = peer_dest(fx);
    ctx = tx_client_send(fx->txl, client_request(fx, "MESSAGE", "z9hG4bKcn1", 20), &d, client_cb, fx);
    assert_non_null(ctx);
    assert_false(tx_is_server(ctx));
    assert_int_equal(tx_state(ctx), TX_TRYING);
    /* Timer E: T1, 2T1, 4T1 ... */
    assert_true(RUN_UNTIL(fx, peer_count(fx, "MESSAGE ") >= 4, 64 * T1));
    assert_int_equal(fx->ncb, 0);
    /* every copy is the same request */
    assert_int_equal(fx->prx[0].len, fx->prx[1].len);
    assert_memory_equal(fx->prx[0].buf, fx->prx[1].buf, fx->prx[0].len);

    peer_respond(fx, fx->prx[0].buf, 200, "OK", "uas1");
    assert_true(RUN_UNTIL(fx, fx->ncb == 1, 1000));
    assert_int_equal(fx->cb_code[0], 200);
    assert_false(fx->cb_null[0]);
    assert_int_equal(tx_state(ctx), TX_COMPLETED);
    assert_int_equal(tx_last_status(ctx), 200);
    copies = peer_count(fx, "MESSAGE ");
    /* a retransmitted final is absorbed (Timer K) */
    peer_respond(fx, fx->prx[0].buf, 200, "OK", "uas1");
    run_for(fx, 3 * T1);
    assert_int_equal(fx->ncb, 1);
    assert_int_equal(peer_count(fx, "MESSAGE "), copies);
    assert_true(RUN_UNTIL(fx, tx_state(ctx) == TX_TERMINATED, T4 + 1000));
    tx_unref(ctx);
}

static void
test_tx_client_non_invite_provisional_then_final(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;
    int before;

    peer_udp(fx);
    d = peer_dest(fx);
    ctx = tx_client_send(fx->txl, client_request(fx, "OPTIONS", "z9hG4bKcn2", 21), &d, client_cb, fx);
    assert_non_null(ctx);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "OPTIONS ") >= 1, 1000));
    peer_respond(fx, fx->prx[0].buf, 100, "Trying", NULL);
    assert_true(RUN_UNTIL(fx, fx->ncb == 1, 1000));
    assert_int_equal(fx->cb_code[0], 100);
    assert_int_equal(tx_state(ctx), TX_PROCEEDING);
    /* in Proceeding, Timer E fires every T2 */
    before = peer_count(fx, "OPTIONS ");
    assert_true(RUN_UNTIL(fx, peer_count(fx, "OPTIONS ") >= before + 2, 3 * T2 + 200));
    peer_respond(fx, fx->prx[0].buf, 404, "Not Found", "uas2");
    assert_true(RUN_UNTIL(fx, fx->ncb == 2, 1000));
    assert_int_equal(fx->cb_code[1], 404);
    assert_int_equal(tx_state(ctx), TX_COMPLETED);
    tx_unref(ctx);
}

static void
test_tx_client_timer_f_reports_408(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;
    uint64_t t0 = now_ms();
    int copies;

    peer_udp(fx);
    d = peer_dest(fx);
    ctx = tx_client_send(fx->txl, client_request(fx, "MESSAGE", "z9hG4bKcn3", 22), &d, client_cb, fx);
    assert_non_null(ctx);
    assert_true(RUN_UNTIL(fx, fx->ncb == 1, 64 * T1 + 1000));
    assert_true(now_ms() - t0 >= 64 * T1 - 5);
    assert_int_equal(fx->cb_code[0], 408);
    assert_true(fx->cb_null[0]);
    assert_int_equal(tx_state(ctx), TX_TERMINATED);
    assert_int_equal(tx_last_status(ctx), 408);
    run_for(fx, 5 * T1);   /* let the peer read what was already in flight */
    copies = peer_count(fx, "MESSAGE ");
    assert_true(copies >= 4 && copies <= 14);
    run_for(fx, 2 * T2);
    assert_int_equal(peer_count(fx, "MESSAGE "), copies);
    assert_int_equal(fx->ncb, 1);
    /* a late response matches nothing */
    peer_respond(fx, fx->prx[0].buf, 200, "OK", "late");
    assert_true(RUN_UNTIL(fx, fx->nstray == 1, 1000));
    tx_unref(ctx);
}

/* ------------------------------------------------------------------ client INVITE */

static void
test_tx_client_invite_error_gets_an_ack_from_the_tx(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;
    int copies;
    const struct peer_msg *ack;
    char v[256], inv_via[256];

    peer_udp(fx);
    d = peer_dest(fx);
    ctx = tx_client_send(fx->txl, client_request(fx, "INVITE", "z9hG4bKci1", 30), &d, client_cb, fx);
    assert_non_null(ctx);
    assert_true(tx_is_invite(ctx));
    assert_int_equal(tx_state(ctx), TX_CALLING);
    /* Timer A */
    assert_true(RUN_UNTIL(fx, peer_count(fx, "INVITE ") >= 3, 64 * T1));
    /* a provisional stops the retransmissions */
    peer_respond(fx, fx->prx[0].buf, 180, "Ringing", "uas3");
    assert_true(RUN_UNTIL(fx, fx->ncb == 1, 1000));
    assert_int_equal(fx->cb_code[0], 180);
    assert_int_equal(tx_state(ctx), TX_PROCEEDING);
    copies = peer_count(fx, "INVITE ");
    run_for(fx, 2 * T2);
    assert_int_equal(peer_count(fx, "INVITE "), copies);

    /* non-2xx final: the transaction ACKs it (RFC 3261 §17.1.1.3) */
    peer_respond(fx, fx->prx[0].buf, 486, "Busy Here", "uas3");
    assert_true(RUN_UNTIL(fx, fx->ncb == 2 && peer_count(fx, "ACK ") == 1, 1000));
    assert_int_equal(fx->cb_code[1], 486);
    assert_int_equal(tx_state(ctx), TX_COMPLETED);
    ack = peer_last(fx, "ACK ");
    assert_true(strncmp(ack->buf, "ACK sip:bob@127.0.0.1:", 22) == 0);
    assert_non_null(hdr(fx->prx[0].buf, "Via", inv_via, sizeof inv_via));
    assert_non_null(hdr(ack->buf, "Via", v, sizeof v));
    assert_string_equal(v, inv_via);   /* same top Via, same branch */
    assert_non_null(strstr(v, "branch=z9hG4bKci1"));
    assert_non_null(hdr(ack->buf, "To", v, sizeof v));
    assert_non_null(strstr(v, "tag=uas3"));
    assert_non_null(hdr(ack->buf, "CSeq", v, sizeof v));
    assert_string_equal(v, "30 ACK");
    assert_non_null(hdr(ack->buf, "Call-ID", v, sizeof v));
    assert_string_equal(v, "client-z9hG4bKci1@test");
    assert_non_null(hdr(ack->buf, "Route", v, sizeof v));   /* the INVITE's route set */

    /* a retransmitted final gets the ACK again, not another callback */
    peer_respond(fx, fx->prx[0].buf, 486, "Busy Here", "uas3");
    assert_true(RUN_UNTIL(fx, peer_count(fx, "ACK ") == 2, 1000));
    assert_int_equal(fx->ncb, 2);
    assert_memory_equal(peer_last(fx, "ACK ")->buf, ack->buf, ack->len);
    tx_unref(ctx);
}

static void
test_tx_client_invite_2xx_and_its_retransmission_go_up(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;

    peer_udp(fx);
    d = peer_dest(fx);
    ctx = tx_client_send(fx->txl, client_request(fx, "INVITE", "z9hG4bKci2", 31), &d, client_cb, fx);
    assert_non_null(ctx);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "INVITE ") >= 1, 1000));
    peer_respond(fx, fx->prx[0].buf, 200, "OK", "uas4");
    assert_true(RUN_UNTIL(fx, fx->ncb == 1, 1000));
    assert_int_equal(fx->cb_code[0], 200);
    assert_int_equal(tx_state(ctx), TX_ACCEPTED);
    /* RFC 6026 §7.2: 2xx retransmissions are passed up too; the tx sends no ACK */
    peer_respond(fx, fx->prx[0].buf, 200, "OK", "uas4");
    assert_true(RUN_UNTIL(fx, fx->ncb == 2, 1000));
    assert_int_equal(fx->cb_code[1], 200);
    assert_false(fx->cb_null[1]);
    assert_int_equal(peer_count(fx, "ACK "), 0);
    /* Timer M (64*T1) */
    assert_true(RUN_UNTIL(fx, tx_state(ctx) == TX_TERMINATED, 64 * T1 + 1000));
    tx_unref(ctx);
}

static void
test_tx_client_cancel_waits_for_a_provisional(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;
    const struct peer_msg *c;
    char v[256];
    int cancels;

    peer_udp(fx);
    d = peer_dest(fx);
    ctx = tx_client_send(fx->txl, client_request(fx, "INVITE", "z9hG4bKci3", 32), &d, client_cb, fx);
    assert_non_null(ctx);
    tx_client_cancel(ctx);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "INVITE ") >= 3, 64 * T1));
    assert_int_equal(peer_count(fx, "CANCEL "), 0);   /* RFC 3261 §9.1: not before a 1xx */

    peer_respond(fx, fx->prx[0].buf, 100, "Trying", NULL);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "CANCEL ") >= 1, 1000));
    c = peer_last(fx, "CANCEL ");
    assert_true(strncmp(c->buf, "CANCEL sip:bob@127.0.0.1:", 25) == 0);
    assert_non_null(hdr(c->buf, "Via", v, sizeof v));
    assert_non_null(strstr(v, "branch=z9hG4bKci3"));
    assert_non_null(hdr(c->buf, "CSeq", v, sizeof v));
    assert_string_equal(v, "32 CANCEL");
    assert_non_null(hdr(c->buf, "Call-ID", v, sizeof v));
    assert_string_equal(v, "client-z9hG4bKci3@test");
    assert_non_null(hdr(c->buf, "To", v, sizeof v));
    assert_null(strstr(v, "tag="));

    /* the CANCEL is its own non-INVITE client transaction: answer it, then the INVITE */
    peer_respond(fx, c->buf, 200, "OK", "uas5");
    run_for(fx, 3 * T1);
    cancels = peer_count(fx, "CANCEL ");
    tx_client_cancel(ctx);   /* idempotent */
    run_for(fx, 3 * T1);
    assert_int_equal(peer_count(fx, "CANCEL "), cancels);
    peer_respond(fx, fx->prx[0].buf, 487, "Request Terminated", "uas5");
    assert_true(RUN_UNTIL(fx, fx->ncb >= 2 && peer_count(fx, "ACK ") == 1, 1000));
    assert_int_equal(fx->cb_code[0], 100);
    assert_int_equal(fx->cb_code[fx->ncb - 1], 487);
    tx_unref(ctx);
}

static void
test_tx_client_invite_timer_c_cancels_and_reports_408(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;
    uint64_t t0;

    peer_udp(fx);
    d = peer_dest(fx);
    ctx = tx_client_send(fx->txl, client_request(fx, "INVITE", "z9hG4bKci4", 33), &d, client_cb, fx);
    assert_non_null(ctx);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "INVITE ") >= 1, 1000));
    peer_respond(fx, fx->prx[0].buf, 180, "Ringing", "uas6");
    assert_true(RUN_UNTIL(fx, fx->ncb == 1, 1000));
    t0 = now_ms();
    assert_true(RUN_UNTIL(fx, fx->ncb == 2, TIMER_C + 1000));
    assert_true(now_ms() - t0 >= TIMER_C / 2);   /* loose: t0 is taken when the test noticed the 180 */
    assert_int_equal(fx->cb_code[1], 408);
    assert_true(fx->cb_null[1]);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "CANCEL ") >= 1, 1000));
    tx_unref(ctx);
}

#ifdef PARLEY_KNOWN_BUG_TIMER_C_NO_ACK
/*
 * RFC 3261 §16.8 / §17.1.1.3: when Timer C fires after a provisional, the proxy CANCELs
 * the branch; the UAS then answers the INVITE with 487, which the INVITE client
 * transaction must ACK. tx.c terminates the transaction at Timer C, so the 487 matches
 * nothing, goes to stray_response and is never ACKed (the UAS retransmits it for 32 s).
 */
static void
test_tx_client_timer_c_still_acks_the_487(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;

    peer_udp(fx);
    d = peer_dest(fx);
    ctx = tx_client_send(fx->txl, client_request(fx, "INVITE", "z9hG4bKci5", 34), &d, client_cb, fx);
    assert_non_null(ctx);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "INVITE ") >= 1, 1000));
    peer_respond(fx, fx->prx[0].buf, 180, "Ringing", "uas7");
    assert_true(RUN_UNTIL(fx, peer_count(fx, "CANCEL ") >= 1, TIMER_C + 1000));
    peer_respond(fx, peer_last(fx, "CANCEL ")->buf, 200, "OK", "uas7");
    peer_respond(fx, fx->prx[0].buf, 487, "Request Terminated", "uas7");
    assert_true(RUN_UNTIL(fx, peer_count(fx, "ACK ") == 1, 1000));
    assert_int_equal(fx->nstray, 0);
    tx_unref(ctx);
}
#endif

static void
test_tx_client_immediate_send_failure_is_reported_from_the_loop(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;

    /* UDP to an IPv6 address: we have no IPv6 socket, tp_send fails at once */
    memset(&d, 0, sizeof d);
    d.proto = TP_UDP;
    assert_int_equal(tp_addr_from_ip(&d.addr, "::1", 5060), 0);
    fx->peer_port = 5060;
    ctx = tx_client_send(fx->txl, client_request(fx, "MESSAGE", "z9hG4bKtf2", 41), &d, client_cb, fx);
    assert_non_null(ctx);
    assert_int_equal(fx->ncb, 0);   /* not re-entrantly from tx_client_send */
    assert_true(RUN_UNTIL(fx, fx->ncb == 1, 1000));
    assert_int_equal(fx->cb_code[0], 503);
    assert_true(fx->cb_null[0]);
    assert_int_equal(tx_state(ctx), TX_TERMINATED);
    tx_unref(ctx);
}

static void
test_tx_client_transport_failure_reports_503(void **state)
{
    struct fx *fx = *state;
    struct tp_dest d;
    struct tx *ctx;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t sl = sizeof sin;
    int s;
    uint16_t closed_port;

    /* a port that was just free: nothing listens there */
    s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    closed_port = ntohs(sin.sin_port);
    close(s);

    fx->peer_port = closed_port;
    memset(&d, 0, sizeof d);
    d.proto = TP_TCP;
    assert_int_equal(tp_addr_from_ip(&d.addr, "127.0.0.1", closed_port), 0);
    ctx = tx_client_send(fx->txl, client_request(fx, "MESSAGE", "z9hG4bKtf1", 40), &d, client_cb, fx);
    assert_non_null(ctx);
    assert_true(RUN_UNTIL(fx, fx->ncb == 1, 2500));
    assert_int_equal(fx->cb_code[0], 503);
    assert_true(fx->cb_null[0]);
    assert_int_equal(tx_state(ctx), TX_TERMINATED);
    assert_int_equal(tx_last_status(ctx), 503);
    assert_true(tx_layer_stats(fx->txl)->transport_errors >= 1);
    run_for(fx, 50);
    assert_int_equal(fx->ncb, 1);
    tx_unref(ctx);
}

static void
test_tx_client_send_refuses_a_request_without_branch(void **state)
{
    struct fx *fx = *state;
    const char *t = "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060\r\n"
                    "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: nb@x\r\nCSeq: 1 MESSAGE\r\n"
                    "Content-Length: 0\r\n\r\n";
    struct sip_error err;
    struct sip_msg *req = sip_msg_parse(t, strlen(t), NULL, &err);
    struct tp_dest d;

    assert_non_null(req);
    assert_null(req->branch);
    memset(&d, 0, sizeof d);
    assert_int_equal(tp_addr_from_ip(&d.addr, "127.0.0.1", 9), 0);
    assert_null(tx_client_send(fx->txl, req, &d, client_cb, fx));   /* req freed */
    assert_int_equal(tx_layer_stats(fx->txl)->live_client, 0);
}

/* ------------------------------------------------------------------ matching */

static void
test_tx_find_cancelled_finds_the_invite_server_tx(void **state)
{
    struct fx *fx = *state;
    struct tx *inv, *cancel, *other;

    peer_udp(fx);
    peer_request(fx, "INVITE", "z9hG4bKfc1", 50, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    inv = fx->stx[0];
    peer_request(fx, "CANCEL", "z9hG4bKfc1", 50, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 2, 1000));
    cancel = fx->stx[1];
    assert_int_equal(tx_request(cancel)->method, SIP_CANCEL);
    assert_ptr_not_equal(cancel, inv);   /* its own server transaction */
    assert_ptr_equal(tx_find_cancelled(fx->txl, cancel), inv);
    /* a CANCEL with another branch refers to nothing */
    peer_request(fx, "CANCEL", "z9hG4bKfc2", 50, NULL, NULL);
    assert_true(RUN_UNTIL(fx, fx->nreq == 3, 1000));
    other = fx->stx[2];
    assert_null(tx_find_cancelled(fx->txl, other));
    /* the INVITE itself is not a CANCEL of anything else */
    assert_int_equal(tx_reply_code(cancel, 200, NULL), 0);
    assert_int_equal(tx_reply_code(inv, 487, NULL), 0);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 487 ") >= 1, 1000));
}

static void
test_tx_unmatched_ack_and_stray_response_go_to_handlers(void **state)
{
    struct fx *fx = *state;
    char text[512];

    peer_udp(fx);
    /* an ACK that matches no INVITE transaction (ACK for a 2xx) */
    peer_request(fx, "ACK", "z9hG4bKlonely", 60, NULL, "x1");
    assert_true(RUN_UNTIL(fx, fx->nack == 1, 1000));
    assert_int_equal(fx->nreq, 0);
    assert_string_equal(fx->acks[0]->branch, "z9hG4bKlonely");
    assert_int_equal(tx_layer_stats(fx->txl)->live_server, 0);

    snprintf(text, sizeof text,
             "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKnobody\r\n"
             "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray@x\r\n"
             "CSeq: 9 INVITE\r\nContent-Length: 0\r\n\r\n",
             fx->udp_port);
    peer_send(fx, text);
    assert_true(RUN_UNTIL(fx, fx->nstray == 1, 1000));
    assert_int_equal(fx->strays[0]->status, 200);
    assert_string_equal(fx->strays[0]->branch, "z9hG4bKnobody");
    assert_int_equal(fx->ncb, 0);
}

#define RFC2543_FMT                                                                            \
    "%s sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%u;rport\r\n"                    \
    "From: <sip:a@example.com>;tag=old1\r\nTo: <sip:b@example.com>%s\r\n"                       \
    "Call-ID: rfc2543@x\r\nCSeq: 70 %s\r\nContent-Length: 0\r\n\r\n"

static void
test_tx_rfc2543_request_matches_by_fields(void **state)
{
    struct fx *fx = *state;
    char text[1024];

    peer_udp(fx);
    snprintf(text, sizeof text, RFC2543_FMT, "INVITE", fx->peer_port, "", "INVITE");
    peer_send(fx, text);
    assert_true(RUN_UNTIL(fx, fx->nreq == 1, 1000));
    peer_send(fx, text);   /* retransmission: same fields */
    assert_true(RUN_UNTIL(fx, tx_layer_stats(fx->txl)->retransmits_absorbed >= 1, 1000));
    assert_int_equal(fx->nreq, 1);
    assert_int_equal(tx_reply_code(fx->stx[0], 404, NULL), 0);
    assert_true(RUN_UNTIL(fx, peer_count(fx, "SIP/2.0 404 ") >= 1, 1000));
    snprintf(text, sizeof text, RFC2543_FMT, "ACK", fx->peer_port, ";tag=whatever", "ACK");
    peer_send(fx, text);
    assert_true(RUN_UNTIL(fx, tx_state(fx->stx[0]) == TX_CONFIRMED, 1000));
    assert_int_equal(fx->nack, 0);
}

#define TX_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        TX_TEST(test_tx_server_non_invite_absorbs_retransmissions_and_resends_final),
        TX_TEST(test_tx_server_non_invite_provisional_is_resent_on_retransmission),
        TX_TEST(test_tx_server_non_invite_over_tcp_ends_at_the_final),
        TX_TEST(test_tx_server_invite_error_is_retransmitted_until_ack),
        TX_TEST(test_tx_server_invite_timer_h_ends_it_without_ack),
        TX_TEST(test_tx_server_invite_2xx_is_accepted_and_ack_goes_up),
        TX_TEST(test_tx_server_lifetime_expiry_calls_timeout_and_sends_408),
        TX_TEST(test_tx_server_timeout_handler_may_answer_itself),
        TX_TEST(test_tx_server_provisional_restarts_the_lifetime),
        TX_TEST(test_tx_client_non_invite_retransmits_until_a_final),
        TX_TEST(test_tx_client_non_invite_provisional_then_final),
        TX_TEST(test_tx_client_timer_f_reports_408),
        TX_TEST(test_tx_client_invite_error_gets_an_ack_from_the_tx),
        TX_TEST(test_tx_client_invite_2xx_and_its_retransmission_go_up),
        TX_TEST(test_tx_client_cancel_waits_for_a_provisional),
        TX_TEST(test_tx_client_invite_timer_c_cancels_and_reports_408),
#ifdef PARLEY_KNOWN_BUG_TIMER_C_NO_ACK
        TX_TEST(test_tx_client_timer_c_still_acks_the_487),
#endif
        TX_TEST(test_tx_client_immediate_send_failure_is_reported_from_the_loop),
        TX_TEST(test_tx_client_transport_failure_reports_503),
        TX_TEST(test_tx_client_send_refuses_a_request_without_branch),
        TX_TEST(test_tx_find_cancelled_finds_the_invite_server_tx),
        TX_TEST(test_tx_unmatched_ack_and_stray_response_go_to_handlers),
        TX_TEST(test_tx_rfc2543_request_matches_by_fields),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
