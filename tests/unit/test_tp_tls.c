/*
 * Unit tests for the TLS transport: two or three struct tp on one event loop talking
 * over 127.0.0.1 with ephemeral ports, a throwaway PKI made once by tests/lib/certs.sh
 * in a temporary directory, every wait bounded by a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "transport/tp.h"

#ifndef PARLEY_CERTS_SH
#error "PARLEY_CERTS_SH must name tests/lib/certs.sh"
#endif

#define MAX_RX 16
#define MAX_OPEN 8

#define REQ(body)                                                                              \
    "MESSAGE sip:bob@pool.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK77\r\n"     \
    "Content-Length: " #body "\r\n\r\n"

static char g_pki[256];   /* directory with the test PKI */

struct rx_rec {
    char buf[1024];
    size_t len;
    uint64_t conn_id;
    enum tp_proto proto;
    struct tp_addr src;
};

/* What the tp_conn_open_fn saw. */
struct open_rec {
    uint64_t conn_id;
    bool has_cert, server_auth;
    char subject[128];   /* "" when NULL */
    bool subject_null;
};

struct side {
    struct tp *tp;
    struct rx_rec rx[MAX_RX];
    int nrx;
    char fail_buf[1024];
    size_t fail_len;
    enum tp_proto fail_proto;
    int nfail;
    struct open_rec open[MAX_OPEN];
    int nopen;
    bool refuse;   /* the open hook closes every new connection */
};

struct fx {
    struct event_base *base;
    struct event *tick;
    struct side a, b, c;
    char dir[256];   /* per-test scratch directory (copies of cert files) */
};

/* ---- helpers ------------------------------------------------------------------- */

static void
pki_path(char *out, size_t outlen, const char *name, const char *suffix)
{
    snprintf(out, outlen, "%s/%s%s", g_pki, name, suffix);
}

static int
rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];

    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

static void
copy_file(const char *from, const char *to)
{
    char buf[8192];
    FILE *in = fopen(from, "rb"), *out;
    size_t n;

    assert_non_null(in);
    out = fopen(to, "wb");
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

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
    s->fail_proto = proto;
    s->nfail++;
}

static void
on_open(struct tp_conn *conn, void *arg)
{
    struct side *s = arg;
    const char *subj = tp_conn_peer_subject(conn);

    assert_true(tp_conn_is_established(conn));
    if (s->nopen < MAX_OPEN) {
        struct open_rec *o = &s->open[s->nopen];
        o->conn_id = tp_conn_id(conn);
        o->has_cert = tp_conn_peer_has_cert(conn);
        o->server_auth = tp_conn_peer_server_auth(conn);
        o->subject_null = subj == NULL;
        snprintf(o->subject, sizeof o->subject, "%s", subj ? subj : "");
    }
    s->nopen++;
    if (s->refuse)
        tp_conn_close(s->tp, conn, true);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static int
group_setup(void **state)
{
    char cmd[600];

    signal(SIGPIPE, SIG_IGN);   /* as the servers do: a peer may reset while we write */
    snprintf(g_pki, sizeof g_pki, "/tmp/parley-tls-pki-XXXXXX");
    if (mkdtemp(g_pki) == NULL)
        return -1;
    snprintf(cmd, sizeof cmd, "bash '%s' '%s' >/dev/null", PARLEY_CERTS_SH, g_pki);
    if (system(cmd) != 0) {
        fprintf(stderr, "certs.sh failed\n");
        rm_tree(g_pki);
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    return rm_tree(g_pki);
}

static int
setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    struct timeval tv = {0, 5000};

    fx->base = event_base_new();
    fx->tick = event_new(fx->base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(fx->tick, &tv);   /* wakes the loop so raw-socket predicates are polled */
    snprintf(fx->dir, sizeof fx->dir, "/tmp/parley-tls-t-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;

    tp_free(fx->a.tp);
    tp_free(fx->b.tp);
    tp_free(fx->c.tp);
    event_free(fx->tick);
    event_base_free(fx->base);
    rm_tree(fx->dir);
    free(fx);
    return 0;
}

/*
 * A transport with TLS: <cert> names a PKI certificate ("home1" ...), NULL = none;
 * <cert_path>/<key_path> override it with explicit files.
 */
static struct tp *
side_tls_files(struct fx *fx, struct side *s, const struct tp_limits *lim, const char *cert_path,
               const char *key_path, bool require)
{
    struct tp_tls_opts o;
    char ca[300], err[512];

    s->tp = tp_new(fx->base, lim, on_recv, on_fail, s);
    assert_non_null(s->tp);
    tp_set_conn_open_fn(s->tp, on_open, s);
    pki_path(ca, sizeof ca, "ca", ".pem");
    memset(&o, 0, sizeof o);
    o.cert_file = cert_path;
    o.key_file = key_path;
    o.ca_file = ca;
    o.verify_peer = true;
    o.require_client_cert = require;
    if (tp_tls_configure(s->tp, &o, err, sizeof err) != 0)
        fail_msg("tp_tls_configure: %s", err);
    assert_true(tp_tls_enabled(s->tp));
    return s->tp;
}

static struct tp *
side_tls_lim(struct fx *fx, struct side *s, const struct tp_limits *lim, const char *cert,
             bool require)
{
    char c[300], k[300];

    if (cert == NULL)
        return side_tls_files(fx, s, lim, NULL, NULL, require);
    pki_path(c, sizeof c, cert, ".pem");
    pki_path(k, sizeof k, cert, ".key.pem");
    return side_tls_files(fx, s, lim, c, k, require);
}

static struct tp *
side_tls(struct fx *fx, struct side *s, const char *cert, bool require)
{
    return side_tls_lim(fx, s, NULL, cert, require);
}

static struct tp_listener *
listen_tls(struct side *s)
{
    struct tp_addr a;
    struct tp_listener *lis;

    assert_int_equal(tp_addr_from_ip(&a, "127.0.0.1", 0), 0);
    lis = tp_listen(s->tp, TP_TLS, &a);
    assert_non_null(lis);
    assert_int_equal(tp_listener_proto(lis), TP_TLS);
    assert_int_not_equal(tp_addr_port(tp_listener_addr(lis)), 0);
    return lis;
}

static struct tp_dest
dest_to(const struct tp_addr *addr, uint64_t conn_id, const char *tls_name)
{
    struct tp_dest d;

    memset(&d, 0, sizeof d);
    d.proto = TP_TLS;
    if (addr != NULL)
        d.addr = *addr;
    d.conn_id = conn_id;
    d.tls_name = tls_name;
    return d;
}

typedef bool pred_fn(struct fx *fx, void *arg);

static long
ms_since(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Runs the loop until <pred> holds or <ms> pass. Returns the predicate's last value. */
static bool
run_until(struct fx *fx, pred_fn *pred, void *arg, unsigned ms)
{
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (pred(fx, arg))
            return true;
        if (ms_since(&t0) > (long)ms)
            return false;
        event_base_loop(fx->base, EVLOOP_ONCE);
    }
}

static void
run_for(struct fx *fx, unsigned ms)
{
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        event_base_loop(fx->base, EVLOOP_ONCE);
    while (ms_since(&t0) < (long)ms);
}

static bool
has_rx(struct fx *fx, void *arg)
{
    return ((struct side *)arg)->nrx > 0;
}

static bool
has_2rx(struct fx *fx, void *arg)
{
    return ((struct side *)arg)->nrx >= 2;
}

static bool
has_3rx(struct fx *fx, void *arg)
{
    return ((struct side *)arg)->nrx >= 3;
}

struct nwait {
    struct side *s;
    int n;
};

static bool
has_n_rx(struct fx *fx, void *arg)
{
    struct nwait *w = arg;
    return w->s->nrx >= w->n;
}

static bool
has_fail(struct fx *fx, void *arg)
{
    return ((struct side *)arg)->nfail > 0;
}

static bool
no_conns(struct fx *fx, void *arg)
{
    return tp_stats(((struct side *)arg)->tp)->conns_open == 0;
}

static bool
has_pong(struct fx *fx, void *arg)
{
    return tp_stats(((struct side *)arg)->tp)->keepalive_pongs > 0;
}

/* Sends <req> from <from> to <lis> and expects it refused: reported to the tp_fail_fn,
 * never delivered to <to>. */
static void
expect_refused(struct fx *fx, struct side *from, struct side *to, struct tp_listener *lis,
               const char *tls_name)
{
    const char *req = REQ(4) "nope";
    struct tp_dest d = dest_to(tp_listener_addr(lis), 0, tls_name);
    int nfail = from->nfail, nrx = to->nrx;

    assert_int_equal(tp_send(from->tp, &d, req, strlen(req)), 0);
    assert_int_equal(from->nfail, nfail);   /* never re-entrant from tp_send */
    assert_true(run_until(fx, has_fail, from, 4000));
    run_for(fx, 50);
    assert_int_equal(from->nfail, nfail + 1);
    assert_int_equal(from->fail_len, strlen(req));
    assert_memory_equal(from->fail_buf, req, strlen(req));
    assert_int_equal(from->fail_proto, TP_TLS);
    assert_int_equal(to->nrx, nrx);
}

/* ---- the happy path --------------------------------------------------------------- */

static void
test_tp_tls_mutual_tls_exchange_both_ways(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    struct tp_dest d;
    struct tp_conn *conn;
    const char *req = REQ(2) "hi", *resp = "SIP/2.0 200 OK\r\nl: 0\r\n\r\n";
    const char *m1 = REQ(3) "one", *m2 = REQ(5) "two!!";
    char both[512];
    uint64_t srv_conn;

    side_tls(fx, &fx->a, "home1", false);
    side_tls(fx, &fx->b, "fe1", false);
    lb = listen_tls(&fx->b);
    assert_ptr_equal(tp_listener_first(fx->b.tp, TP_TLS), lb);

    d = dest_to(tp_listener_addr(lb), 0, "fe1.pool.test");
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_rx, &fx->b, 3000));
    assert_int_equal(fx->b.rx[0].len, strlen(req));
    assert_memory_equal(fx->b.rx[0].buf, req, strlen(req));
    assert_int_equal(fx->b.rx[0].proto, TP_TLS);
    srv_conn = fx->b.rx[0].conn_id;

    /* the server saw a pool server: verified cert, serverAuth, CN home1.pool.test,
     * before the message was delivered */
    assert_int_equal(fx->b.nopen, 1);
    assert_int_equal(fx->b.open[0].conn_id, srv_conn);
    assert_true(fx->b.open[0].has_cert);
    assert_true(fx->b.open[0].server_auth);
    assert_string_equal(fx->b.open[0].subject, "home1.pool.test");
    conn = tp_conn_get(fx->b.tp, srv_conn);
    assert_non_null(conn);
    assert_int_equal(tp_conn_proto(conn), TP_TLS);
    assert_true(tp_conn_peer_has_cert(conn));
    assert_true(tp_conn_peer_server_auth(conn));
    assert_string_equal(tp_conn_peer_subject(conn), "home1.pool.test");
    assert_true(tp_conn_peer_name_matches(conn, "home1.pool.test"));
    assert_true(tp_conn_peer_name_matches(conn, "HOME1.pool.test"));
    assert_true(tp_conn_peer_name_matches(conn, "localhost"));
    assert_true(tp_conn_peer_name_matches(conn, "127.0.0.1"));
    assert_false(tp_conn_peer_name_matches(conn, "fe1.pool.test"));
    assert_false(tp_conn_peer_name_matches(conn, "127.0.0.2"));
    assert_false(tp_conn_peer_name_matches(conn, ""));
    assert_false(tp_conn_peer_name_matches(conn, NULL));

    /* and the client saw the server it dialled */
    assert_int_equal(fx->a.nopen, 1);
    assert_true(fx->a.open[0].has_cert);
    assert_true(fx->a.open[0].server_auth);
    assert_string_equal(fx->a.open[0].subject, "fe1.pool.test");

    /* response on the accepted connection, by id */
    d = dest_to(NULL, srv_conn, NULL);
    assert_int_equal(tp_send(fx->b.tp, &d, resp, strlen(resp)), 0);
    assert_true(run_until(fx, has_rx, &fx->a, 3000));
    assert_int_equal(fx->a.rx[0].len, strlen(resp));
    assert_memory_equal(fx->a.rx[0].buf, resp, strlen(resp));
    assert_int_equal(fx->a.rx[0].proto, TP_TLS);

    /* b to a's source address, no id: reuses the accepted connection (a name that
     * a's certificate carries is fine too) */
    d = dest_to(&fx->b.rx[0].src, 0, "home1.pool.test");
    assert_int_equal(tp_send(fx->b.tp, &d, resp, strlen(resp)), 0);
    assert_true(run_until(fx, has_2rx, &fx->a, 3000));
    assert_int_equal(fx->a.rx[1].conn_id, fx->a.rx[0].conn_id);
    assert_int_equal(tp_stats(fx->b.tp)->conns_open, 1);

    /* framing is the TCP framing: two messages in one write, then a keep-alive ping */
    snprintf(both, sizeof both, "%s%s", m1, m2);
    d = dest_to(tp_listener_addr(lb), 0, "fe1.pool.test");
    assert_int_equal(tp_send(fx->a.tp, &d, both, strlen(both)), 0);
    assert_true(run_until(fx, has_3rx, &fx->b, 3000));
    assert_int_equal(fx->b.rx[1].len, strlen(m1));
    assert_memory_equal(fx->b.rx[1].buf, m1, strlen(m1));
    assert_int_equal(fx->b.rx[2].len, strlen(m2));
    assert_memory_equal(fx->b.rx[2].buf, m2, strlen(m2));
    assert_int_equal(fx->b.rx[2].conn_id, srv_conn);
    assert_int_equal(tp_send(fx->a.tp, &d, "\r\n\r\n", 4), 0);
    assert_true(run_until(fx, has_pong, &fx->b, 3000));
    run_for(fx, 30);
    assert_int_equal(fx->b.nrx, 3);
    assert_int_equal(tp_stats(fx->b.tp)->conns_accepted, 1);
    assert_int_equal(tp_stats(fx->a.tp)->conns_open, 1);
    assert_int_equal(fx->a.nopen, 1);
    assert_int_equal(fx->a.nfail, 0);

    /* a closes; b sees it go (close_notify, then EOF) */
    tp_conn_close(fx->a.tp, tp_conn_get(fx->a.tp, fx->a.rx[0].conn_id), true);
    assert_true(run_until(fx, no_conns, &fx->b, 3000));
    assert_null(tp_conn_get(fx->b.tp, srv_conn));
    assert_int_equal(tp_stats(fx->a.tp)->tls_handshake_fail, 0);
    assert_int_equal(tp_stats(fx->b.tp)->tls_handshake_fail, 0);
}

/* ---- who the server sees ------------------------------------------------------------ */

static void
client_connects(struct fx *fx, const char *cert, bool expect_cert, bool expect_server_auth,
                const char *expect_subject)
{
    struct tp_listener *lb;
    struct tp_dest d;
    const char *req = REQ(5) "hello";

    side_tls(fx, &fx->b, "home1", false);
    side_tls(fx, &fx->c, cert, false);
    lb = listen_tls(&fx->b);
    d = dest_to(tp_listener_addr(lb), 0, "home1.pool.test");
    assert_int_equal(tp_send(fx->c.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_rx, &fx->b, 3000));
    assert_memory_equal(fx->b.rx[0].buf, req, strlen(req));
    assert_int_equal(fx->b.nopen, 1);
    assert_int_equal(fx->b.open[0].has_cert, expect_cert);
    assert_int_equal(fx->b.open[0].server_auth, expect_server_auth);
    if (expect_subject == NULL) {
        assert_true(fx->b.open[0].subject_null);
    } else {
        assert_false(fx->b.open[0].subject_null);
        assert_string_equal(fx->b.open[0].subject, expect_subject);
    }
    /* the client verified the server either way */
    assert_int_equal(fx->c.nopen, 1);
    assert_string_equal(fx->c.open[0].subject, "home1.pool.test");
    run_for(fx, 30);
    assert_int_equal(fx->c.nfail, 0);
}

static void
test_tp_tls_client_auth_only_cert_is_not_a_server(void **state)
{
    client_connects(*state, "client", true, false, "alice-device");
}

static void
test_tp_tls_client_without_cert_is_accepted(void **state)
{
    client_connects(*state, NULL, false, false, NULL);
}

static void
test_tp_tls_cert_without_eku_is_not_server_auth(void **state)
{
    client_connects(*state, "noeku", true, false, "noeku.pool.test");
}

static void
test_tp_tls_require_client_cert_refuses_certless_client(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    struct tp_dest d;
    const char *req = REQ(2) "ok";

    side_tls(fx, &fx->b, "home1", true);
    side_tls(fx, &fx->c, NULL, false);
    lb = listen_tls(&fx->b);
    /* TLS 1.3: the client's handshake is done before the server refuses; the message
     * written meanwhile is still reported as failed */
    expect_refused(fx, &fx->c, &fx->b, lb, "home1.pool.test");
    assert_int_equal(fx->c.nopen, 1);   /* the client did finish its side */
    assert_int_equal(fx->b.nopen, 0);
    assert_int_equal(tp_stats(fx->b.tp)->tls_handshake_fail, 1);
    /* with a certificate it passes */
    side_tls(fx, &fx->a, "client", false);
    d = dest_to(tp_listener_addr(lb), 0, "home1.pool.test");
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_rx, &fx->b, 3000));
    assert_int_equal(fx->b.nopen, 1);
    assert_true(fx->b.open[0].has_cert);
    assert_string_equal(fx->b.open[0].subject, "alice-device");
    run_for(fx, 30);
    assert_int_equal(fx->a.nfail, 0);
}

/* ---- refusals ------------------------------------------------------------------------ */

static void
test_tp_tls_expired_server_cert_is_refused(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;

    side_tls(fx, &fx->a, "home1", false);
    side_tls(fx, &fx->b, "expired", false);
    lb = listen_tls(&fx->b);
    expect_refused(fx, &fx->a, &fx->b, lb, NULL);
    assert_int_equal(fx->a.nopen, 0);
    assert_int_equal(fx->b.nopen, 0);
    assert_int_equal(tp_stats(fx->a.tp)->tls_handshake_fail, 1);
    assert_true(run_until(fx, no_conns, &fx->a, 3000));
}

static void
test_tp_tls_wrong_ca_server_cert_is_refused(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;

    side_tls(fx, &fx->a, "home1", false);
    side_tls(fx, &fx->b, "wrongca", false);
    lb = listen_tls(&fx->b);
    expect_refused(fx, &fx->a, &fx->b, lb, "home1.pool.test");
    assert_int_equal(fx->a.nopen, 0);
    assert_int_equal(tp_stats(fx->a.tp)->tls_handshake_fail, 1);
}

static void
test_tp_tls_expired_client_cert_is_refused(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;

    side_tls(fx, &fx->b, "home1", false);
    side_tls(fx, &fx->c, "expired", false);
    lb = listen_tls(&fx->b);
    expect_refused(fx, &fx->c, &fx->b, lb, "home1.pool.test");
    assert_int_equal(fx->b.nopen, 0);
    assert_int_equal(tp_stats(fx->b.tp)->tls_handshake_fail, 1);
    assert_int_equal(tp_stats(fx->b.tp)->conns_open, 0);
}

static void
test_tp_tls_wrong_ca_client_cert_is_refused(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;

    side_tls(fx, &fx->b, "home1", false);
    side_tls(fx, &fx->c, "wrongca", false);
    lb = listen_tls(&fx->b);
    expect_refused(fx, &fx->c, &fx->b, lb, "home1.pool.test");
    assert_int_equal(fx->b.nopen, 0);
    assert_int_equal(tp_stats(fx->b.tp)->tls_handshake_fail, 1);
}

static void
test_tp_tls_wrong_name_is_refused_and_not_reused(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    struct tp_dest d;
    const char *req = REQ(2) "ok";

    side_tls(fx, &fx->a, "home1", false);
    side_tls(fx, &fx->b, "fe1", false);
    lb = listen_tls(&fx->b);
    expect_refused(fx, &fx->a, &fx->b, lb, "home1.pool.test");
    expect_refused(fx, &fx->a, &fx->b, lb, "wrong.pool.test");

    /* the right name works ... */
    d = dest_to(tp_listener_addr(lb), 0, "fe1.pool.test");
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_rx, &fx->b, 3000));
    assert_int_equal(tp_stats(fx->a.tp)->conns_open, 1);
    /* ... and its connection is not borrowed for a name it was not verified for */
    expect_refused(fx, &fx->a, &fx->b, lb, "home1.pool.test");
    assert_int_equal(fx->b.nrx, 1);
    assert_int_equal(fx->a.nfail, 3);
    /* the address and the DNS SAN "localhost" each get their own verified connection */
    d = dest_to(tp_listener_addr(lb), 0, NULL);
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    d = dest_to(tp_listener_addr(lb), 0, "localhost");
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_3rx, &fx->b, 3000));
    assert_int_equal(tp_stats(fx->a.tp)->conns_open, 3);
    assert_int_equal(fx->a.nfail, 3);
}

static void
test_tp_tls_server_only_cert_serves_but_cannot_dial(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb, *la;
    struct tp_dest d;
    const char *req = REQ(2) "ok";

    /* as a server: fine (the client checks serverAuth) */
    side_tls(fx, &fx->a, "home1", false);
    side_tls(fx, &fx->b, "serveronly", false);
    lb = listen_tls(&fx->b);
    d = dest_to(tp_listener_addr(lb), 0, "serveronly.pool.test");
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_rx, &fx->b, 3000));
    assert_true(fx->a.open[0].server_auth);
    assert_string_equal(fx->a.open[0].subject, "serveronly.pool.test");

    /* as a client: OpenSSL refuses a client certificate whose EKU lacks clientAuth */
    la = listen_tls(&fx->a);
    expect_refused(fx, &fx->b, &fx->a, la, "home1.pool.test");
    assert_int_equal(tp_stats(fx->a.tp)->tls_handshake_fail, 1);
}

/* ---- reload -------------------------------------------------------------------------- */

static void
test_tp_tls_reload_keeps_open_conns_and_serves_new_cert(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    struct tp_dest d;
    char cert[300], key[300], src[300], err[512];
    const char *req = REQ(2) "hi", *resp = "SIP/2.0 200 OK\r\nl: 0\r\n\r\n";
    uint64_t old_conn;
    FILE *f;

    /* b serves copies of fe1's files, so that they can be replaced under it */
    snprintf(cert, sizeof cert, "%s/b.pem", fx->dir);
    snprintf(key, sizeof key, "%s/b.key.pem", fx->dir);
    pki_path(src, sizeof src, "fe1", ".pem");
    copy_file(src, cert);
    pki_path(src, sizeof src, "fe1", ".key.pem");
    copy_file(src, key);
    side_tls(fx, &fx->a, "home1", false);
    side_tls_files(fx, &fx->b, NULL, cert, key, false);
    lb = listen_tls(&fx->b);

    d = dest_to(tp_listener_addr(lb), 0, NULL);   /* verified against 127.0.0.1 */
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_rx, &fx->b, 3000));
    assert_string_equal(fx->a.open[0].subject, "fe1.pool.test");
    old_conn = fx->b.rx[0].conn_id;

    /* new certificate on disk, reload */
    pki_path(src, sizeof src, "home1", ".pem");
    copy_file(src, cert);
    pki_path(src, sizeof src, "home1", ".key.pem");
    copy_file(src, key);
    assert_int_equal(tp_tls_reload(fx->b.tp, err, sizeof err), 0);

    /* the open connection carries on, both ways */
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_2rx, &fx->b, 3000));
    assert_int_equal(fx->b.rx[1].conn_id, old_conn);
    d = dest_to(NULL, old_conn, NULL);
    assert_int_equal(tp_send(fx->b.tp, &d, resp, strlen(resp)), 0);
    assert_true(run_until(fx, has_rx, &fx->a, 3000));
    assert_int_equal(fx->a.nopen, 1);

    /* a new connection gets the new certificate */
    side_tls(fx, &fx->c, "client", false);
    d = dest_to(tp_listener_addr(lb), 0, "home1.pool.test");
    assert_int_equal(tp_send(fx->c.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_3rx, &fx->b, 3000));
    assert_int_equal(fx->c.nopen, 1);
    assert_string_equal(fx->c.open[0].subject, "home1.pool.test");
    assert_int_not_equal(fx->b.rx[2].conn_id, old_conn);

    /* a broken file: reload fails with a reason, the last good context stays */
    f = fopen(cert, "w");
    assert_non_null(f);
    fputs("not a certificate\n", f);
    fclose(f);
    assert_int_equal(tp_tls_reload(fx->b.tp, err, sizeof err), -1);
    assert_non_null(strstr(err, cert));
    tp_conn_close(fx->c.tp, tp_conn_get(fx->c.tp, fx->c.open[0].conn_id), true);
    d = dest_to(tp_listener_addr(lb), 0, "home1.pool.test");
    assert_int_equal(tp_send(fx->c.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_n_rx, &(struct nwait){&fx->b, 4}, 3000));
    assert_int_equal(fx->b.nrx, 4);
    assert_int_equal(fx->c.nopen, 2);
    assert_string_equal(fx->c.open[1].subject, "home1.pool.test");
    assert_int_equal(fx->a.nfail + fx->c.nfail, 0);
}

/* ---- protocol versions and timers ------------------------------------------------------ */

/*
 * A raw OpenSSL client limited to <max_version>, driven non-blocking next to the loop.
 * Returns 1 when the handshake completed, else 0 with the first OpenSSL error in <e>.
 */
static int
raw_handshake(struct fx *fx, const struct tp_listener *lis, int max_version, unsigned long *e,
              char *version, size_t vlen)
{
    const struct tp_addr *a = tp_listener_addr(lis);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl;
    struct timespec t0;
    int fd, rc = 0;

    assert_non_null(ctx);
    SSL_CTX_set_security_level(ctx, 0);   /* let this client even try TLS 1.0/1.1 */
    assert_int_equal(SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0"), 1);
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)&a->ss, sizeof(struct sockaddr_in)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    *e = 0;
    ERR_clear_error();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (ms_since(&t0) < 3000) {
        int r = SSL_connect(ssl), err;

        if (r == 1) {
            rc = 1;
            snprintf(version, vlen, "%s", SSL_get_version(ssl));
            break;
        }
        err = SSL_get_error(ssl, r);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            *e = ERR_peek_error();
            break;
        }
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return rc;
}

static void
test_tp_tls_refuses_tls11_accepts_tls12(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    unsigned long e;
    char version[32] = "";

    side_tls(fx, &fx->b, "home1", false);
    lb = listen_tls(&fx->b);
    assert_int_equal(raw_handshake(fx, lb, TLS1_1_VERSION, &e, version, sizeof version), 0);
    /* the server said no (alert protocol_version), not our own client */
    assert_int_equal(ERR_GET_REASON(e), SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
    run_for(fx, 30);
    assert_int_equal(tp_stats(fx->b.tp)->tls_handshake_fail, 1);
    assert_int_equal(fx->b.nopen, 0);

    assert_int_equal(raw_handshake(fx, lb, TLS1_2_VERSION, &e, version, sizeof version), 1);
    assert_string_equal(version, "TLSv1.2");
    assert_int_equal(raw_handshake(fx, lb, TLS1_3_VERSION, &e, version, sizeof version), 1);
    assert_string_equal(version, "TLSv1.3");
    run_for(fx, 30);
    assert_int_equal(fx->b.nopen, 2);
    assert_false(fx->b.open[0].has_cert);   /* no client certificate */
}

static void
test_tp_tls_handshake_and_idle_timeouts(void **state)
{
    struct fx *fx = *state;
    struct tp_limits lim;
    struct tp_listener *lb;
    struct tp_dest d;
    const char *req = REQ(2) "hi";
    const struct tp_addr *a;
    struct timespec t0;
    char c;
    ssize_t n = -1;
    int fd;

    tp_limits_default(&lim);
    lim.connect_timeout_ms = 300;
    lim.idle_timeout_s = 1;
    side_tls_lim(fx, &fx->b, &lim, "home1", false);
    lb = listen_tls(&fx->b);

    /* a TCP connection that never starts the handshake is dropped after connect_timeout_ms */
    a = tp_listener_addr(lb);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)&a->ss, sizeof(struct sockaddr_in)), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (ms_since(&t0) < 3000) {
        event_base_loop(fx->base, EVLOOP_ONCE);
        n = recv(fd, &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            break;
    }
    close(fd);
    assert_int_equal(n, 0);
    assert_true(ms_since(&t0) >= 250);
    assert_int_equal(tp_stats(fx->b.tp)->tls_handshake_fail, 1);

    /* an established TLS connection without traffic is closed after idle_timeout_s */
    side_tls(fx, &fx->a, "home1", false);
    d = dest_to(a, 0, NULL);
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_rx, &fx->b, 3000));
    assert_int_equal(tp_stats(fx->a.tp)->conns_open, 1);
    assert_true(run_until(fx, no_conns, &fx->a, 4000));
    assert_int_equal(tp_stats(fx->b.tp)->conns_idle_closed, 1);
    /* closed cleanly (close_notify) while a's message was unconfirmed: still delivered */
    assert_int_equal(fx->a.nfail, 0);
}

static void
test_tp_tls_without_verification_there_is_no_identity(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    struct tp_tls_opts o;
    struct tp_dest d;
    char cert[300], key[300], err[512];
    const char *req = REQ(2) "hi";

    /* a lab client that verifies nothing reaches even a wrong-CA server ... */
    side_tls(fx, &fx->b, "wrongca", false);
    lb = listen_tls(&fx->b);
    fx->a.tp = tp_new(fx->base, NULL, on_recv, on_fail, &fx->a);
    assert_non_null(fx->a.tp);
    tp_set_conn_open_fn(fx->a.tp, on_open, &fx->a);
    pki_path(cert, sizeof cert, "home1", ".pem");
    pki_path(key, sizeof key, "home1", ".key.pem");
    memset(&o, 0, sizeof o);
    o.cert_file = cert;
    o.key_file = key;
    o.verify_peer = false;
    assert_int_equal(tp_tls_configure(fx->a.tp, &o, err, sizeof err), 0);
    d = dest_to(tp_listener_addr(lb), 0, "not.the.name");
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_rx, &fx->b, 3000));
    /* ... but an unverified certificate is no identity */
    assert_int_equal(fx->a.nopen, 1);
    assert_false(fx->a.open[0].has_cert);
    assert_false(fx->a.open[0].server_auth);
    assert_true(fx->a.open[0].subject_null);
    /* b verifies as usual: a's certificate chains to the CA b trusts */
    assert_int_equal(fx->b.nopen, 1);
    assert_true(fx->b.open[0].has_cert);
    assert_string_equal(fx->b.open[0].subject, "home1.pool.test");
}

static void
test_tp_tcp_conns_call_the_open_hook(void **state)
{
    struct fx *fx = *state;
    struct tp_listener *lb;
    struct tp_addr addr;
    struct tp_dest d;
    const char *req = REQ(2) "hi";

    fx->a.tp = tp_new(fx->base, NULL, on_recv, on_fail, &fx->a);
    fx->b.tp = tp_new(fx->base, NULL, on_recv, on_fail, &fx->b);
    assert_non_null(fx->a.tp);
    assert_non_null(fx->b.tp);
    tp_set_conn_open_fn(fx->a.tp, on_open, &fx->a);
    tp_set_conn_open_fn(fx->b.tp, on_open, &fx->b);
    assert_int_equal(tp_addr_from_ip(&addr, "127.0.0.1", 0), 0);
    lb = tp_listen(fx->b.tp, TP_TCP, &addr);
    assert_non_null(lb);
    memset(&d, 0, sizeof d);
    d.proto = TP_TCP;
    d.addr = *tp_listener_addr(lb);
    assert_int_equal(tp_send(fx->a.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, has_rx, &fx->b, 3000));
    assert_int_equal(fx->a.nopen, 1);
    assert_int_equal(fx->b.nopen, 1);
    assert_int_equal(fx->b.open[0].conn_id, fx->b.rx[0].conn_id);
    assert_false(fx->b.open[0].has_cert);
    assert_true(fx->b.open[0].subject_null);
    assert_false(tp_conn_peer_has_cert(tp_conn_get(fx->b.tp, fx->b.rx[0].conn_id)));

    /* a hook may refuse a connection: closed before anything of it is delivered */
    fx->b.refuse = true;
    fx->c.tp = tp_new(fx->base, NULL, on_recv, on_fail, &fx->c);
    assert_non_null(fx->c.tp);
    assert_int_equal(tp_send(fx->c.tp, &d, req, strlen(req)), 0);
    assert_true(run_until(fx, no_conns, &fx->c, 3000));
    assert_int_equal(fx->b.nopen, 2);
    assert_int_equal(fx->b.nrx, 1);
    assert_int_equal(tp_stats(fx->b.tp)->conns_open, 1);   /* a's only */
}

/* ---- configuration errors ----------------------------------------------------------- */

static void
test_tp_tls_configuration_errors(void **state)
{
    struct fx *fx = *state;
    struct tp_tls_opts o;
    struct tp_addr addr;
    struct tp_dest d;
    char ca[300], cert[300], key[300], err[512];

    pki_path(ca, sizeof ca, "ca", ".pem");
    pki_path(cert, sizeof cert, "home1", ".pem");
    pki_path(key, sizeof key, "fe1", ".key.pem");
    fx->a.tp = tp_new(fx->base, NULL, on_recv, on_fail, &fx->a);
    assert_non_null(fx->a.tp);
    assert_false(tp_tls_enabled(fx->a.tp));

    /* not configured: no listener, no send, no reload */
    assert_int_equal(tp_addr_from_ip(&addr, "127.0.0.1", 0), 0);
    assert_null(tp_listen(fx->a.tp, TP_TLS, &addr));
    d = dest_to(&addr, 0, NULL);
    assert_int_equal(tp_send(fx->a.tp, &d, "x", 1), -1);
    assert_int_equal(tp_tls_reload(fx->a.tp, err, sizeof err), -1);
    assert_non_null(strstr(err, "not configured"));

    memset(&o, 0, sizeof o);
    o.verify_peer = true;
    o.cert_file = "/nonexistent/cert.pem";
    o.ca_file = ca;
    assert_int_equal(tp_tls_configure(fx->a.tp, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/cert.pem"));
    o.cert_file = cert;
    o.key_file = key;   /* fe1's key for home1's cert */
    assert_int_equal(tp_tls_configure(fx->a.tp, &o, err, sizeof err), -1);
    print_message("mismatched key: %s\n", err);
    assert_non_null(strstr(err, key));
    assert_non_null(strstr(err, "mismatch"));
    o.key_file = NULL;   /* the key is not in the cert file */
    assert_int_equal(tp_tls_configure(fx->a.tp, &o, err, sizeof err), -1);
    o.cert_file = NULL;
    o.key_file = key;
    assert_int_equal(tp_tls_configure(fx->a.tp, &o, err, sizeof err), -1);
    o.key_file = NULL;
    o.ca_file = NULL;
    assert_int_equal(tp_tls_configure(fx->a.tp, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "CA"));
    o.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(tp_tls_configure(fx->a.tp, &o, err, sizeof err), -1);
    assert_int_equal(tp_tls_configure(fx->a.tp, NULL, err, sizeof err), -1);
    assert_int_equal(tp_tls_configure(NULL, &o, NULL, 0), -1);
    assert_false(tp_tls_enabled(fx->a.tp));

    /* client-only configuration (no certificate): sends, but cannot listen */
    o.ca_file = ca;
    assert_int_equal(tp_tls_configure(fx->a.tp, &o, err, sizeof err), 0);
    assert_true(tp_tls_enabled(fx->a.tp));
    assert_null(tp_listen(fx->a.tp, TP_TLS, &addr));
    assert_int_equal(tp_tls_reload(fx->a.tp, err, sizeof err), 0);

    /* identity accessors on a plain TCP connection / NULL are false */
    assert_false(tp_conn_peer_has_cert(NULL));
    assert_false(tp_conn_peer_server_auth(NULL));
    assert_null(tp_conn_peer_subject(NULL));
    assert_false(tp_conn_peer_name_matches(NULL, "x"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tp_tls_mutual_tls_exchange_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_client_auth_only_cert_is_not_a_server, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_client_without_cert_is_accepted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_cert_without_eku_is_not_server_auth, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_require_client_cert_refuses_certless_client,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_expired_server_cert_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_wrong_ca_server_cert_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_expired_client_cert_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_wrong_ca_client_cert_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_wrong_name_is_refused_and_not_reused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_server_only_cert_serves_but_cannot_dial, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_reload_keeps_open_conns_and_serves_new_cert,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_refuses_tls11_accepts_tls12, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_handshake_and_idle_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_without_verification_there_is_no_identity,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tcp_conns_call_the_open_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tp_tls_configuration_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
