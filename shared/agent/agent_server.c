#define LOG_MODULE "agents"
#include "agent/agent_server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "agent/agent_proto.h"
#include "util/cfg.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

#define PEND_BUCKETS 4096
#define MAX_HELD 16           /* responses held for one request (provisionals + final) */

/*
 * Round-trip histogram (µs), log-linear: values below RTT_SUB exactly, above that
 * RTT_SUB buckets per power of two (resolution 1/RTT_SUB, about 6 %), up to 2^40 µs.
 */
#define RTT_SUB_BITS 4
#define RTT_SUB (1u << RTT_SUB_BITS)
#define RTT_MAX_EXP 40
#define RTT_BUCKETS (RTT_SUB + (RTT_MAX_EXP - RTT_SUB_BITS + 1) * RTT_SUB)

struct rtt_hist {
    uint64_t bucket[RTT_BUCKETS];
    uint64_t count;
    uint64_t sum_us;
};

struct agent_server;
struct rtt_quantile {         /* the argument of one quantile series */
    struct agent_server *srv;
    double q;
};

struct agent_settings {
    char *socket;
    char *secret;
    char *tcp;
    long long queue;
    long long stall_ms;
};

/* Static: cfg_free() writes into it after the module is gone (one server per process). */
static struct agent_settings agent_set;

#define ROW(n, t, d, lo, hi, h, f) {n, t, d, lo, hi, false, false, h, offsetof(struct agent_settings, f)}
static const struct cfg_opt agent_rows[] = {
    ROW("agent-socket", CFG_STR, NULL, 0, 0,
        "Unix domain socket agents connect to (docs/agent-protocol.md); empty = agents off", socket),
    ROW("agent-secret", CFG_STR, NULL, 0, 0,
        "shared secret an agent must present in HELLO (required with --agent-tcp)", secret),
    ROW("agent-tcp", CFG_STR, NULL, 0, 0,
        "also accept agents over TCP on this loopback address, host:port (needs --agent-secret)", tcp),
    ROW("agent-queue", CFG_INT, "1000", 1, 1000000,
        "requests dispatched to one agent and not yet acted upon; Dispatch() fails when full", queue),
    ROW("agent-stall-timeout", CFG_DURATION_MS, "5m", 100, 86400000,
        "an agent whose queue stays full this long is disconnected (a critical one stops the server)",
        stall_ms),
};

enum pend_state {
    P_WAIT = 0,     /* sent to the agent, no action yet (counts in its queue) */
    P_PROXIED,      /* forwarded; the agent wants the responses */
    P_DONE,         /* finished, waiting for the reaper */
};

struct held {
    char *buf;
    size_t len;
    struct held *next;
};

struct agent_conn;

/*
 * One dispatched request. Owned by the server (hash by id, list per connection); holds
 * a px_req reference until the reaper frees it. <hooked>: our response hook is set on
 * the request (cleared by the hook's release).
 */
struct pend {
    uint64_t id;
    struct agent_server *srv;
    struct agent_conn *conn;      /* NULL once finished */
    struct px_req *req;
    enum pend_state state;
    bool critical;
    bool want_resp;
    bool hooked;
    bool counted;                 /* in conn->outstanding */
    struct held *held, **held_tail;
    unsigned nheld;
    struct pend *hnext;           /* hash chain */
    struct pend *cprev, *cnext;   /* connection list */
    struct pend *dnext;           /* reaper list */
    uint64_t sent_us;             /* when the REQUEST frame was queued (monotonic µs) */
    bool timed;                   /* its round trip is in the histogram */
};

/*
 * One agent connection. Registered for <app> after HELLO + REGISTER. <outstanding> =
 * requests in P_WAIT; <full_since> = when it reached the queue size (0 = not full).
 */
struct agent_conn {
    struct agent_server *srv;
    struct bufferevent *bev;
    uint64_t num;
    bool hello, registered, critical;
    char app[64];
    unsigned outstanding;
    int64_t full_since;
    struct pend *pends;
    struct agent_conn *prev, *next;
};

struct agent_server {
    struct event_base *base;
    struct px *px;
    struct evconnlistener *lis_unix, *lis_tcp;
    char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct event *stall_timer, *reaper;
    struct agent_conn *conns;
    struct pend *buckets[PEND_BUCKETS];
    struct pend *dead;
    uint64_t next_id, next_conn;
    bool shutting_down, freeing;
    struct agent_server_stats stats;
    struct rtt_hist rtt;
    struct rtt_quantile rtt_q[3];
};

/* ------------------------------------------------------------------ helpers */

static uint64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static unsigned
rtt_index(uint64_t us)
{
    unsigned e;

    if (us < RTT_SUB)
        return (unsigned)us;
    e = 63u - (unsigned)__builtin_clzll(us);   /* us >= RTT_SUB: e >= RTT_SUB_BITS */
    if (e > RTT_MAX_EXP)
        return RTT_BUCKETS - 1;
    return RTT_SUB + (e - RTT_SUB_BITS) * RTT_SUB + (unsigned)((us >> (e - RTT_SUB_BITS)) & (RTT_SUB - 1));
}

/* The middle of bucket <i>, µs. */
static double
rtt_value(unsigned i)
{
    unsigned e, sub;
    double lo, width;

    if (i < RTT_SUB)
        return (double)i;
    e = (i - RTT_SUB) / RTT_SUB + RTT_SUB_BITS;
    sub = (i - RTT_SUB) % RTT_SUB;
    width = (double)(1ull << (e - RTT_SUB_BITS));
    lo = (double)(RTT_SUB + sub) * width;
    return lo + (width - 1) / 2;
}

/* The agent acted on <p> (its first PROXY, FORK or RESPOND): one round trip. */
static void
rtt_note(struct pend *p)
{
    struct rtt_hist *h = &p->srv->rtt;
    uint64_t us;

    if (p->timed)
        return;
    p->timed = true;
    us = mono_us() - p->sent_us;
    h->bucket[rtt_index(us)]++;
    h->count++;
    h->sum_us += us;
}

static struct pend *
pend_find(struct agent_server *srv, uint64_t id)
{
    for (struct pend *p = srv->buckets[id % PEND_BUCKETS]; p; p = p->hnext)
        if (p->id == id)
            return p;
    return NULL;
}

static void
pend_unhash(struct pend *p)
{
    struct pend **pp = &p->srv->buckets[p->id % PEND_BUCKETS];

    while (*pp && *pp != p)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = p->hnext;
}

static void
uncount(struct pend *p)
{
    struct agent_conn *conn = p->conn;

    if (!p->counted || conn == NULL)
        return;
    p->counted = false;
    conn->outstanding--;
    if (conn->outstanding < (unsigned)agent_set.queue)
        conn->full_since = 0;
}

/* Finishes <p>: off the hash and its connection; the reaper drops the request. */
static void
pend_done(struct pend *p)
{
    struct agent_conn *conn = p->conn;

    if (p->state == P_DONE)
        return;
    uncount(p);
    p->state = P_DONE;
    pend_unhash(p);
    if (conn) {
        if (p->cprev)
            p->cprev->cnext = p->cnext;
        else
            conn->pends = p->cnext;
        if (p->cnext)
            p->cnext->cprev = p->cprev;
        p->conn = NULL;
    }
    p->dnext = p->srv->dead;
    p->srv->dead = p;
    event_active(p->srv->reaper, EV_TIMEOUT, 0);
}

static void
hook_release(void *arg)
{
    struct pend *p = arg;
    p->hooked = false;
}

static void
reap(struct agent_server *srv)
{
    while (srv->dead) {
        struct pend *p = srv->dead;
        srv->dead = p->dnext;
        if (p->hooked)
            px_req_on_response(p->req, NULL, NULL, NULL);   /* calls hook_release */
        while (p->held) {
            struct held *h = p->held;
            p->held = h->next;
            free(h->buf);
            free(h);
        }
        px_req_unref(p->req);
        free(p);
    }
}

static void
reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    reap(arg);
}

/* Queues one frame to <conn>. 0 or -1 (not encodable: logged). */
static int
conn_send(struct agent_conn *conn, const struct agent_msg *m)
{
    struct agent_buf b = {0};
    int rc = -1;

    if (agent_encode(&b, m) != 0) {
        log_warn("agent %llu: cannot encode %s (too large?)", (unsigned long long)conn->num,
                 agent_type_name(m->type));
        goto out;
    }
    rc = bufferevent_write(conn->bev, b.p, b.len);
out:
    agent_buf_free(&b);
    return rc;
}

static void
send_event(struct agent_conn *conn, uint64_t id, enum agent_event ev, const char *reason)
{
    struct agent_msg m;

    if (conn == NULL)
        return;
    memset(&m, 0, sizeof m);
    m.type = AGENT_EVENT;
    m.id = id;
    m.event = ev;
    m.reason = reason;
    conn_send(conn, &m);
}

/* Headers an agent may neither add nor remove (transaction identity and routing). */
static bool
forbidden_header(const char *name, size_t n, bool allow_contact)
{
    static const char *const names[] = {"to", "t", "from", "f", "call-id", "i", "cseq", "via", "v",
                                        "max-forwards", "content-length", "l", "route", "record-route",
                                        "content-type", "c", "contact", "m"};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i]) == n && strncasecmp(name, names[i], n) == 0)
            return !(allow_contact && (names[i][0] == 'm' || strcmp(names[i], "contact") == 0));
    }
    return false;
}

static bool
token_ok(const char *s, size_t n)
{
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", s[i]))
            return false;
    return true;
}

/*
 * Applies the header edits of <m> to <msg>: removals first, then additions
 * ("Name: value"). <allow_contact>: a 3xx RESPOND may set Contact. 0 or -1 (refused).
 */
static int
apply_edits(struct sip_msg *msg, const struct agent_msg *m, bool allow_contact)
{
    for (unsigned i = 0; i < m->nremove; i++) {
        size_t n = strlen(m->remove[i]);
        if (!token_ok(m->remove[i], n) || forbidden_header(m->remove[i], n, false))
            return -1;
        sip_msg_remove_header(msg, m->remove[i]);
    }
    for (unsigned i = 0; i < m->nadd; i++) {
        const char *line = m->add[i], *colon = strchr(line, ':'), *v;
        char name[129];
        size_t n;

        if (colon == NULL)
            return -1;
        n = (size_t)(colon - line);
        if (!token_ok(line, n) || forbidden_header(line, n, allow_contact))
            return -1;
        if (strpbrk(colon, "\r\n") != NULL)
            return -1;   /* no header injection */
        memcpy(name, line, n);
        name[n] = '\0';
        v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strcasecmp(name, "contact") == 0 || strcasecmp(name, "m") == 0) {
            if (osip_message_set_contact(msg->osip, v) != 0)
                return -1;
            osip_message_force_update(msg->osip);
        } else if (sip_msg_add_header(msg, name, v) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ responses */

/* Sends the oldest held response of <p>, edited by <m> (may be NULL). */
static void
release_held(struct pend *p, const struct agent_msg *m)
{
    struct held *h = p->held;
    struct sip_limits lim;
    struct sip_error err;
    struct sip_msg *resp;

    if (h == NULL)
        return;
    p->held = h->next;
    if (p->held == NULL)
        p->held_tail = &p->held;
    p->nheld--;
    sip_limits_default(&lim);
    lim.max_msg_size = h->len + 1;
    lim.max_headers = 4096;
    resp = sip_msg_parse(h->buf, h->len, &lim, &err);
    if (resp == NULL) {
        log_warn("held response does not parse again (%s): 500", err.reason);
        px_reply(p->req, 500, "Agent Response Lost");
    } else {
        if (m && apply_edits(resp, m, false) != 0)
            log_info("agent: PROXY_RESPONSE edits refused (a forbidden or malformed header); sent unedited");
        px_reply_msg(p->req, resp);
        if (resp->status >= 200)
            pend_done(p);
        sip_msg_free(resp);
    }
    free(h->buf);
    free(h);
}

/*
 * The px response hook of a dispatched request. While the agent has not acted, the
 * only responses are the proxy's own (the transaction's lifetime ran out: 408).
 */
static int
on_response(struct px_req *req, struct sip_msg *resp, void *arg)
{
    struct pend *p = arg;
    struct agent_msg m;
    struct held *h;

    switch (p->state) {
    case P_WAIT:
        if (resp->status == 408) {
            p->srv->stats.timeouts++;
            send_event(p->conn, p->id, AGENT_EV_TIMEOUT, "transaction timed out: 408 sent");
        } else {
            send_event(p->conn, p->id, AGENT_EV_DROPPED, "answered without the agent");
        }
        pend_done(p);
        return 0;
    case P_PROXIED:
        if (p->conn == NULL || !p->want_resp || resp->status <= 100)
            return 0;
        if (p->nheld >= MAX_HELD || (h = calloc(1, sizeof *h)) == NULL)
            return 0;
        if (sip_msg_serialize(resp, &h->buf, &h->len) != 0) {
            free(h);
            return 0;
        }
        memset(&m, 0, sizeof m);
        m.type = AGENT_RESPONSE;
        m.id = p->id;
        m.status = (uint64_t)resp->status;
        m.sip = h->buf;
        m.sip_len = h->len;
        if (conn_send(p->conn, &m) != 0) {
            free(h->buf);
            free(h);
            return 0;
        }
        *p->held_tail = h;
        p->held_tail = &h->next;
        p->nheld++;
        return 1;   /* held: sent when the agent says PROXY_RESPONSE */
    case P_DONE:
        break;
    }
    return 0;
}

/* ------------------------------------------------------------------ connections */

static void
conn_unlink(struct agent_conn *conn)
{
    struct agent_server *srv = conn->srv;

    if (conn->prev)
        conn->prev->next = conn->next;
    else if (srv->conns == conn)
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;
}

/*
 * Closes <conn>: its waiting requests are passed on (or 503 when critical, or when the
 * server is going away), held responses are sent unchanged, other requests are let go.
 */
static void
conn_close(struct agent_conn *conn, const char *why)
{
    struct agent_server *srv = conn->srv;

    if (conn->registered)
        log_warn("agent %llu (%s) disconnected: %s", (unsigned long long)conn->num, conn->app, why);
    else
        log_info("agent %llu disconnected before registering: %s", (unsigned long long)conn->num, why);
    while (conn->pends) {
        struct pend *p = conn->pends;
        if (p->state == P_WAIT) {
            uncount(p);
            if (p->critical || srv->freeing || srv->shutting_down) {
                srv->stats.answered_503++;
                px_reply(p->req, 503, srv->freeing ? "Shutting Down" : "Agent Unavailable");
            } else {
                srv->stats.passed_on++;
                p->state = P_PROXIED;     /* the hook lets every response through */
                p->want_resp = false;
                px_req_forward(p->req);   /* to the protocol stack: routed by Request-URI */
            }
        } else {
            while (p->held && p->state != P_DONE)
                release_held(p, NULL);
        }
        pend_done(p);
    }
    if (conn->registered && srv->stats.connected)
        srv->stats.connected--;
    conn_unlink(conn);
    bufferevent_free(conn->bev);
    free(conn);
}

static void
send_error(struct agent_conn *conn, int status, const char *reason)
{
    struct agent_msg m;

    memset(&m, 0, sizeof m);
    m.type = AGENT_ERROR;
    m.status = (uint64_t)status;
    m.reason = reason;
    conn_send(conn, &m);
}

static bool
secret_ok(const char *want, const char *got)
{
    size_t n, i;
    unsigned char d = 0;

    if (want == NULL || want[0] == '\0')
        return true;
    if (got == NULL)
        return false;
    n = strlen(want);
    if (strlen(got) != n)
        return false;
    for (i = 0; i < n; i++)
        d |= (unsigned char)(want[i] ^ got[i]);
    return d == 0;
}

static bool
app_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              strchr("-_.", s[i])))
            return false;
    return true;
}

static struct agent_conn *
find_app(struct agent_server *srv, const char *app)
{
    for (struct agent_conn *c = srv->conns; c; c = c->next)
        if (c->registered && strcmp(c->app, app) == 0)
            return c;
    return NULL;
}

/* Acts on one decoded frame. Returns 0, or -1 to close the connection (<why> set). */
static int
on_frame(struct agent_conn *conn, const struct agent_msg *m, const char **why)
{
    struct agent_server *srv = conn->srv;
    struct agent_msg out;
    struct pend *p;

    memset(&out, 0, sizeof out);
    if (!conn->hello) {
        if (m->type != AGENT_HELLO) {
            *why = "first frame is not HELLO";
            return -1;
        }
        if (m->proto_version != AGENT_PROTO_VERSION) {
            send_error(conn, 505, "protocol version not supported");
            *why = "protocol version not supported";
            return -1;
        }
        if (!secret_ok(agent_set.secret, m->secret)) {
            send_error(conn, 403, "bad secret");
            *why = "bad secret";
            return -1;
        }
        conn->hello = true;
        out.type = AGENT_WELCOME;
        out.proto_version = AGENT_PROTO_VERSION;
        return conn_send(conn, &out);
    }
    if (!conn->registered) {
        if (m->type != AGENT_REGISTER) {
            *why = "expected REGISTER";
            return -1;
        }
        if (!app_name_ok(m->app)) {
            send_error(conn, 400, "bad application name");
            *why = "bad application name";
            return -1;
        }
        if (find_app(srv, m->app)) {
            send_error(conn, 409, "an agent is already registered for this application");
            *why = "application already registered";
            return -1;
        }
        snprintf(conn->app, sizeof conn->app, "%s", m->app);
        conn->registered = true;
        srv->stats.connected++;
        log_info("agent %llu registered for application %s", (unsigned long long)conn->num, conn->app);
        out.type = AGENT_REGISTERED;
        out.app = conn->app;
        out.queue = (uint64_t)agent_set.queue;
        return conn_send(conn, &out);
    }
    switch (m->type) {
    case AGENT_PROXY:
    case AGENT_FORK:
    case AGENT_RESPOND:
    case AGENT_TRYING:
    case AGENT_PROXY_RESPONSE:
        break;
    default:
        *why = "frame type not allowed from an agent";
        return -1;
    }
    p = pend_find(srv, m->id);
    if (p == NULL || p->conn != conn) {
        log_debug("agent %s: %s for request %llu that is gone", conn->app, agent_type_name(m->type),
                  (unsigned long long)m->id);
        return 0;   /* a race with a timeout or CANCEL: not an error */
    }
    switch (m->type) {
    case AGENT_TRYING:
        px_reply(p->req, 100, NULL);   /* restarts the transaction's lifetime (tx.h) */
        return 0;
    case AGENT_RESPOND: {
        struct sip_msg *resp;
        if (p->state != P_WAIT || m->status < 200)
            return 0;
        rtt_note(p);
        resp = px_reply_build(p->req, (int)m->status, m->reason);
        if (resp == NULL) {
            px_reply(p->req, 500, NULL);
        } else {
            if (apply_edits(resp, m, m->status >= 300 && m->status < 400) != 0) {
                log_info("agent %s: RESPOND headers refused (forbidden or malformed): 500", conn->app);
                sip_msg_free(resp);
                px_reply(p->req, 500, "Agent Error");
            } else {
                px_reply_msg(p->req, resp);
                sip_msg_free(resp);
            }
        }
        pend_done(p);
        return 0;
    }
    case AGENT_PROXY:
    case AGENT_FORK: {
        struct sip_msg *msg = px_req_msg(p->req);
        unsigned added = 0;
        if (p->state != P_WAIT)
            return 0;
        rtt_note(p);
        if (apply_edits(msg, m, false) != 0) {
            log_info("agent %s: %s header edits refused (forbidden or malformed): 500", conn->app,
                     agent_type_name(m->type));
            px_reply(p->req, 500, "Agent Error");
            pend_done(p);
            return 0;
        }
        for (unsigned i = 0; i < m->nuri; i++) {
            struct px_target t = {.uri = m->uri[i], .q = 1000};
            osip_uri_t *u = NULL;
            bool ok = osip_uri_init(&u) == 0 && osip_uri_parse(u, m->uri[i]) == 0 && u->scheme;
            osip_uri_free(u);
            if (ok && px_add_target(p->req, &t) == 0)
                added++;
        }
        if (m->nuri > 0 && added == 0) {
            px_reply(p->req, 500, "Agent Error: No Valid Target");
            pend_done(p);
            return 0;
        }
        uncount(p);
        p->want_resp = (m->flags & AGENT_F_RESPONSES) != 0;
        p->state = P_PROXIED;
        px_req_forward(p->req);
        if (!p->want_resp)
            pend_done(p);   /* the reaper unhooks it; until then the hook lets responses through */
        return 0;
    }
    case AGENT_PROXY_RESPONSE:
        if (p->state == P_PROXIED)
            release_held(p, m);
        return 0;
    default:
        return 0;
    }
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct agent_conn *conn = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    for (;;) {
        size_t avail = evbuffer_get_length(in);
        unsigned char *hdr;
        long n;
        struct agent_msg m;
        const char *why = "bad frame";

        if (avail == 0)
            return;
        hdr = evbuffer_pullup(in, avail < AGENT_HDR_LEN ? (ssize_t)avail : AGENT_HDR_LEN);
        n = agent_frame_check(hdr, avail < AGENT_HDR_LEN ? avail : AGENT_HDR_LEN);
        if (n == 0 && avail >= AGENT_HDR_LEN) {
            uint32_t plen = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 | (uint32_t)hdr[6] << 8 | hdr[7];
            if (avail < AGENT_HDR_LEN + (size_t)plen)
                return;   /* wait for the rest */
            n = (long)(AGENT_HDR_LEN + plen);
        } else if (n == 0) {
            return;
        }
        if (n < 0) {
            conn->srv->stats.protocol_errors++;
            conn_close(conn, "garbage (bad frame header)");
            return;
        }
        hdr = evbuffer_pullup(in, n);
        if (hdr == NULL || agent_decode(hdr, (size_t)n, &m, &why) != 0) {
            conn->srv->stats.protocol_errors++;
            conn_close(conn, why);
            return;
        }
        if (on_frame(conn, &m, &why) != 0) {
            if (conn->registered || conn->hello)
                conn->srv->stats.protocol_errors++;
            conn_close(conn, why);
            return;
        }
        evbuffer_drain(in, (size_t)n);
    }
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct agent_conn *conn = arg;

    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_close(conn, (what & BEV_EVENT_EOF) ? "connection closed" : "connection error");
}

static void
accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct agent_server *srv = arg;
    struct agent_conn *conn;

    if (srv->shutting_down || (conn = calloc(1, sizeof *conn)) == NULL) {
        evutil_closesocket(fd);
        return;
    }
    conn->srv = srv;
    conn->num = ++srv->next_conn;
    conn->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (conn->bev == NULL) {
        evutil_closesocket(fd);
        free(conn);
        return;
    }
    /* A frame is at most AGENT_MAX_FRAME: never buffer more than two of them unread. */
    bufferevent_setwatermark(conn->bev, EV_READ, 0, 2 * (AGENT_HDR_LEN + AGENT_MAX_FRAME));
    bufferevent_setcb(conn->bev, read_cb, NULL, event_cb, conn);
    bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;
    log_debug("agent %llu connected", (unsigned long long)conn->num);
}

/* Disconnects agents whose queue stayed full for the stall timeout. */
static void
stall_cb(evutil_socket_t fd, short what, void *arg)
{
    struct agent_server *srv = arg;
    int64_t now = clock_mono_ms();
    struct agent_conn *c = srv->conns, *next;

    for (; c; c = next) {
        next = c->next;
        if (c->full_since == 0 || now - c->full_since < agent_set.stall_ms)
            continue;
        srv->stats.stalled++;
        log_err("agent %llu (%s) left its queue full (%u requests) for %lld ms: disconnected%s",
                (unsigned long long)c->num, c->app, c->outstanding, agent_set.stall_ms,
                c->critical ? "; its application is critical: shutting the server down" : "");
        if (c->critical) {
            conn_close(c, "stalled (critical application)");
            kill(getpid(), SIGTERM);   /* the clean SIGTERM path of the role */
        } else {
            conn_close(c, "stalled");
        }
    }
}

/* ------------------------------------------------------------------ public */

struct agent_server *
agent_server_new(struct cfg *cfg)
{
    struct agent_server *srv = calloc(1, sizeof *srv);

    if (srv == NULL)
        return NULL;
    if (cfg_register(cfg, "agents", agent_rows, sizeof agent_rows / sizeof agent_rows[0], &agent_set) != 0) {
        free(srv);
        return NULL;
    }
    return srv;
}

static int
listen_unix(struct agent_server *srv, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun;

    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(err, errlen, "--agent-socket %s: path too long", path);
        return -1;
    }
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "--agent-socket %s: cannot remove the old socket: %s", path, strerror(errno));
        return -1;
    }
    srv->lis_unix = evconnlistener_new_bind(srv->base, accept_cb, srv,
                                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 64,
                                            (struct sockaddr *)&sun, (int)sizeof sun);
    if (srv->lis_unix == NULL) {
        snprintf(err, errlen, "--agent-socket %s: %s", path, strerror(errno));
        return -1;
    }
    chmod(path, 0660);
    snprintf(srv->sock_path, sizeof srv->sock_path, "%s", path);
    return 0;
}

static int
listen_tcp(struct agent_server *srv, const char *spec, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int sslen = (int)sizeof ss;

    if (agent_set.secret == NULL || agent_set.secret[0] == '\0') {
        snprintf(err, errlen, "--agent-tcp needs --agent-secret");
        return -1;
    }
    memset(&ss, 0, sizeof ss);
    if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(err, errlen, "--agent-tcp %s: not host:port", spec);
        return -1;
    }
    if (!((ss.ss_family == AF_INET &&
           (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127) ||
          (ss.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr)))) {
        snprintf(err, errlen, "--agent-tcp %s: only a loopback address is allowed", spec);
        return -1;
    }
    srv->lis_tcp = evconnlistener_new_bind(srv->base, accept_cb, srv,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
                                           64, (struct sockaddr *)&ss, sslen);
    if (srv->lis_tcp == NULL) {
        snprintf(err, errlen, "--agent-tcp %s: %s", spec, strerror(errno));
        return -1;
    }
    return 0;
}

int
agent_server_start(struct agent_server *srv, struct event_base *base, struct px *px, char *err, size_t errlen)
{
    struct timeval tv;
    long long tick;

    srv->base = base;
    srv->px = px;
    if (!agent_server_enabled(srv))
        return 0;
    srv->reaper = event_new(base, -1, 0, reaper_cb, srv);
    srv->stall_timer = event_new(base, -1, EV_PERSIST, stall_cb, srv);
    if (srv->reaper == NULL || srv->stall_timer == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (agent_set.socket && agent_set.socket[0] && listen_unix(srv, agent_set.socket, err, errlen) != 0)
        return -1;
    if (agent_set.tcp && agent_set.tcp[0] && listen_tcp(srv, agent_set.tcp, err, errlen) != 0)
        return -1;
    tick = agent_set.stall_ms / 4;
    if (tick > 1000)
        tick = 1000;
    if (tick < 25)
        tick = 25;
    tv.tv_sec = tick / 1000;
    tv.tv_usec = (tick % 1000) * 1000;
    event_add(srv->stall_timer, &tv);
    log_info("agents: listening on %s%s%s (queue %lld, stall timeout %lld ms)",
             srv->sock_path[0] ? srv->sock_path : "", srv->lis_tcp ? " tcp:" : "",
             srv->lis_tcp ? agent_set.tcp : "", agent_set.queue, agent_set.stall_ms);
    return 0;
}

bool
agent_server_enabled(const struct agent_server *srv)
{
    return srv != NULL && ((agent_set.socket && agent_set.socket[0]) || (agent_set.tcp && agent_set.tcp[0]));
}

bool
agent_server_dispatch(struct agent_server *srv, struct px_req *req, const char *app, bool critical)
{
    struct agent_conn *conn;
    struct agent_msg m;
    struct pend *p;
    char *bytes = NULL;
    size_t len = 0;

    if (srv == NULL || srv->reaper == NULL || srv->shutting_down || app == NULL)
        return false;
    conn = find_app(srv, app);
    if (conn == NULL) {
        srv->stats.queue_full++;
        srv->stats.no_agent++;
        return false;
    }
    if (critical)
        conn->critical = true;
    if (conn->outstanding >= (unsigned)agent_set.queue) {
        srv->stats.queue_full++;
        if (conn->full_since == 0)
            conn->full_since = clock_mono_ms();
        return false;
    }
    if (sip_msg_serialize(px_req_msg(req), &bytes, &len) != 0 || (p = calloc(1, sizeof *p)) == NULL) {
        free(bytes);
        return false;
    }
    p->id = ++srv->next_id;
    p->srv = srv;
    p->req = req;
    p->critical = critical || conn->critical;
    p->held_tail = &p->held;
    p->sent_us = mono_us();
    memset(&m, 0, sizeof m);
    m.type = AGENT_REQUEST;
    m.id = p->id;
    m.app = app;
    m.sip = bytes;
    m.sip_len = len;
    if (conn_send(conn, &m) != 0) {
        free(bytes);
        free(p);
        return false;
    }
    free(bytes);
    px_req_ref(req);
    p->conn = conn;
    p->counted = true;
    conn->outstanding++;
    if (conn->outstanding >= (unsigned)agent_set.queue && conn->full_since == 0)
        conn->full_since = clock_mono_ms();
    p->cnext = conn->pends;
    if (conn->pends)
        conn->pends->cprev = p;
    conn->pends = p;
    p->hnext = srv->buckets[p->id % PEND_BUCKETS];
    srv->buckets[p->id % PEND_BUCKETS] = p;
    p->hooked = true;
    px_req_on_response(req, on_response, p, hook_release);
    srv->stats.dispatched++;
    return true;
}

void
agent_server_shutdown(struct agent_server *srv)
{
    if (srv == NULL || srv->shutting_down)
        return;
    srv->shutting_down = true;
    for (struct agent_conn *c = srv->conns; c; c = c->next)
        if (c->registered)
            send_event(c, 0, AGENT_EV_SHUTDOWN, "server shutting down");
    if (srv->lis_unix)
        evconnlistener_disable(srv->lis_unix);
    if (srv->lis_tcp)
        evconnlistener_disable(srv->lis_tcp);
}

const struct agent_server_stats *
agent_server_stats(const struct agent_server *srv)
{
    return &srv->stats;
}

#define STAT_FN(f)                                                                                     \
    static double m_##f(void *arg)                                                                     \
    {                                                                                                  \
        struct agent_server *srv = arg;                                                                \
        return (double)srv->stats.f;                                                                   \
    }
STAT_FN(dispatched)
STAT_FN(queue_full)
STAT_FN(stalled)
STAT_FN(protocol_errors)
STAT_FN(timeouts)
STAT_FN(passed_on)
STAT_FN(answered_503)
STAT_FN(connected)

double
agent_server_rtt_quantile(const struct agent_server *srv, double q)
{
    const struct rtt_hist *h = &srv->rtt;
    uint64_t rank, seen = 0;

    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    rank = (uint64_t)(q * (double)h->count + 0.999999);   /* nearest-rank, 1-based */
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < RTT_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank)
            return rtt_value(i) / 1e6;
    }
    return rtt_value(RTT_BUCKETS - 1) / 1e6;
}

static double
m_rtt_quantile(void *arg)
{
    struct rtt_quantile *rq = arg;
    return agent_server_rtt_quantile(rq->srv, rq->q);
}

static double
m_rtt_count(void *arg)
{
    struct agent_server *srv = arg;
    return (double)srv->rtt.count;
}

static double
m_rtt_sum(void *arg)
{
    struct agent_server *srv = arg;
    return (double)srv->rtt.sum_us / 1e6;
}

void
agent_server_metrics(struct agent_server *srv, struct metrics *m)
{
    if (srv == NULL || m == NULL)
        return;
    metrics_counter_fn(m, "parley_agent_dispatched_total", "requests handed to agents", m_dispatched, srv);
    metrics_counter_fn(m, "parley_agent_dispatch_refused_total",
                       "Dispatch() refused: no agent for the name or its queue full", m_queue_full, srv);
    metrics_counter_fn(m, "parley_agent_stalled_total", "agents disconnected for a full queue", m_stalled, srv);
    metrics_counter_fn(m, "parley_agent_protocol_errors_total", "agents disconnected for a bad frame",
                       m_protocol_errors, srv);
    metrics_counter_fn(m, "parley_agent_timeouts_total", "held transactions that timed out (408)", m_timeouts,
                       srv);
    metrics_counter_fn(m, "parley_agent_passed_on_total", "requests passed on after their agent left",
                       m_passed_on, srv);
    metrics_counter_fn(m, "parley_agent_answered_503_total", "requests answered 503 after their agent left",
                       m_answered_503, srv);
    metrics_gauge_fn(m, "parley_agents_connected", "registered agents", m_connected, srv);
    {
        static const char *const qname[3] = {"0.5", "0.9", "0.99"};
        static const double qval[3] = {0.5, 0.9, 0.99};
        for (unsigned i = 0; i < 3; i++) {
            srv->rtt_q[i].srv = srv;
            srv->rtt_q[i].q = qval[i];
            metrics_gauge_fn_labels(m, "parley_agent_round_trip_seconds",
                                    "time from Dispatch() to the agent's action on the request, quantile "
                                    "over the server's life (histogram, 6 % resolution)",
                                    m_rtt_quantile, &srv->rtt_q[i], "quantile", qname[i]);
        }
    }
    metrics_counter_fn(m, "parley_agent_round_trips_total", "requests an agent acted on (round trips measured)",
                       m_rtt_count, srv);
    metrics_counter_fn(m, "parley_agent_round_trip_seconds_total", "sum of the measured round trips",
                       m_rtt_sum, srv);
}

void
agent_server_free(struct agent_server *srv)
{
    if (srv == NULL)
        return;
    srv->freeing = true;
    while (srv->conns)
        conn_close(srv->conns, "server stopping");
    reap(srv);
    if (srv->lis_unix)
        evconnlistener_free(srv->lis_unix);
    if (srv->lis_tcp)
        evconnlistener_free(srv->lis_tcp);
    if (srv->sock_path[0])
        unlink(srv->sock_path);
    if (srv->stall_timer)
        event_free(srv->stall_timer);
    if (srv->reaper)
        event_free(srv->reaper);
    free(srv);
}
