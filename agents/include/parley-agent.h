/*
 * libparley-agent: the C client library for Parley agents (out-of-process
 * applications of the home server; design §4, docs/agent-protocol.md).
 *
 * An agent connects to the home server's agent socket, says HELLO (protocol version,
 * shared secret), REGISTERs an application name, then receives the requests that the
 * application chain's scripts Dispatch() to that name and answers each with one of:
 *   pagent_proxy()    forward it (optionally to another URI, with header edits)
 *   pagent_fork()     forward it to several URIs in parallel
 *   pagent_respond()  answer it (a final status, reason, extra headers)
 *   pagent_trying()   send 100 Trying: the transaction lives 32 s past the last one
 * and, for requests proxied with PAGENT_WANT_RESPONSES, pagent_proxy_response() for
 * each response. An agent cannot create requests; To, From, Call-ID, CSeq, Via, Route,
 * Record-Route, Contact (except on a 3xx), Content-* and Max-Forwards cannot be edited.
 *
 * Two ways to run it:
 *   - blocking: pagent_run() reads, calls the callbacks, and reconnects after a server
 *     restart until pagent_stop() (safe from a signal handler);
 *   - inside your own loop (libevent, poll...): pagent_connect(), watch pagent_fd() for
 *     reading, call pagent_dispatch() when it is readable; on -1 reconnect yourself.
 * Actions name the request by its id, so a request may be answered after its callback
 * returned (from the same thread). The library is not thread-safe: one thread per agent.
 * Return values: 0 / -1 (pagent_error() says why), pointers or NULL.
 */
#ifndef PARLEY_AGENT_H
#define PARLEY_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PAGENT_WANT_RESPONSES 1u   /* pagent_proxy/fork flag: deliver the responses */

enum pagent_event {
    PAGENT_EV_TIMEOUT = 1,     /* the transaction timed out (the caller got 408) */
    PAGENT_EV_DROPPED = 2,     /* the request was answered without the agent */
    PAGENT_EV_SHUTDOWN = 3,    /* the server is shutting down (id 0) */
    PAGENT_EV_DISCONNECTED = 100, /* local: the connection to the server was lost (id 0) */
};

struct pagent;
struct pagent_msg;

typedef void pagent_msg_cb(struct pagent *a, const struct pagent_msg *msg, void *arg);
typedef void pagent_event_cb(struct pagent *a, uint64_t id, int event, const char *reason, void *arg);

struct pagent_opts {
    const char *socket_path;      /* Unix socket of the server (--agent-socket) */
    const char *tcp;              /* else "127.0.0.1:port" (--agent-tcp) */
    const char *secret;           /* --agent-secret, or NULL */
    const char *app;              /* application name to register (required) */
    unsigned reconnect_ms;        /* pagent_run(): first wait before reconnecting (default 200,
                                     doubling up to 5 s); 0 = default */
    bool no_reconnect;            /* pagent_run() returns -1 when the connection is lost */
    pagent_msg_cb *on_request;    /* a dispatched request (required) */
    pagent_msg_cb *on_response;   /* a response of a request proxied with PAGENT_WANT_RESPONSES */
    pagent_event_cb *on_event;    /* timeout / dropped / shutdown / disconnected; may be NULL */
    void *arg;
};

/* Header edits: <add> lines "Name: value", <remove> header names. Either may be empty. */
struct pagent_edit {
    const char *const *add;
    unsigned nadd;
    const char *const *remove;
    unsigned nremove;
};

/* A new, unconnected agent (<o> is copied, strings too). NULL on bad options / no memory. */
struct pagent *pagent_new(const struct pagent_opts *o);
/* Connects, HELLO, REGISTER (blocking handshake, 5 s at most). 0 or -1. */
int pagent_connect(struct pagent *a);
/* The socket to watch for reading (-1 when not connected). */
int pagent_fd(const struct pagent *a);
/*
 * Reads what is available without blocking and calls the callbacks for each complete
 * frame. 0, or -1 when the connection is lost or the server sent garbage (closed then).
 */
int pagent_dispatch(struct pagent *a);
/* Blocking loop with automatic reconnect (see above). 0 after pagent_stop(), or -1. */
int pagent_run(struct pagent *a);
/* Makes pagent_run() return (async-signal-safe). */
void pagent_stop(struct pagent *a);
bool pagent_connected(const struct pagent *a);
/* The queue size the server granted at REGISTER. */
uint64_t pagent_queue_size(const struct pagent *a);
/* Why the last call failed. */
const char *pagent_error(const struct pagent *a);
void pagent_free(struct pagent *a);

/* ---- messages (borrowed: valid during the callback only) ---- */
uint64_t pagent_msg_id(const struct pagent_msg *m);
const char *pagent_msg_app(const struct pagent_msg *m);
/* "INVITE", "MESSAGE"... for a request; NULL for a response. */
const char *pagent_msg_method(const struct pagent_msg *m);
/* The Request-URI (requests), or NULL. */
const char *pagent_msg_ruri(const struct pagent_msg *m);
/* The status code (responses), 0 for a request. */
int pagent_msg_status(const struct pagent_msg *m);
/* The <idx>th header called <name> (case-insensitive; compact forms too), or NULL. */
const char *pagent_msg_header(const struct pagent_msg *m, const char *name, unsigned idx);
/* Number of header lines, and the <i>th name/value (for iteration). */
unsigned pagent_msg_header_count(const struct pagent_msg *m);
const char *pagent_msg_header_at(const struct pagent_msg *m, unsigned i, const char **value);
/* The body (NUL-terminated) and its length in <*len> (may be NULL). */
const char *pagent_msg_body(const struct pagent_msg *m, size_t *len);
/* The whole message as received. */
const char *pagent_msg_raw(const struct pagent_msg *m, size_t *len);

/* ---- actions on a request <id> ---- */
int pagent_proxy(struct pagent *a, uint64_t id, const char *uri, const struct pagent_edit *e, unsigned flags);
int pagent_fork(struct pagent *a, uint64_t id, const char *const *uris, unsigned n, const struct pagent_edit *e,
                unsigned flags);
/* <headers>: "Name: value" lines (a 3xx may carry Contact). */
int pagent_respond(struct pagent *a, uint64_t id, int status, const char *reason, const char *const *headers,
                   unsigned nheaders);
int pagent_trying(struct pagent *a, uint64_t id);
/* Sends the oldest held response of request <id> on, with <e> applied (may be NULL). */
int pagent_proxy_response(struct pagent *a, uint64_t id, const struct pagent_edit *e);

#ifdef __cplusplus
}
#endif

#endif
