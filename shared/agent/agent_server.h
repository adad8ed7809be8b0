/*
 * agent_server: the home server's side of the agent protocol (design §4;
 * docs/internals/agents.md, docs/agent-protocol.md).
 *
 * Agents are separate processes that connect over a Unix domain socket (or TCP on
 * loopback), say HELLO (protocol version, shared secret) and REGISTER an application
 * name. A script's Dispatch(name) hands the request to the agent registered for that
 * name (agent_server_dispatch): the request is suspended (a px_req reference) and sent
 * as a REQUEST frame; the agent answers with PROXY, FORK, RESPOND, TRYING (a 100 that
 * restarts the 32 s transaction clock), and PROXY_RESPONSE for the responses it asked
 * for. It cannot create new requests.
 *
 * Flow control: every agent has a bounded queue (--agent-queue) of requests sent and
 * not yet acted upon. Dispatch() fails (returns false) while it is full. An agent whose
 * queue stays full for --agent-stall-timeout is disconnected and logged; if it served
 * a `critical` application the server shuts down cleanly (SIGTERM to itself).
 *
 * When an agent goes away, its requests that it had not acted on are passed on to the
 * protocol stack (routed by Request-URI), or answered 503 when its application is
 * critical; responses it was holding are sent on unchanged. A transaction that times
 * out while held (the caller gets 408) is reported to the agent as EVENT timeout.
 *
 * Life: agent_server_new() before cfg_load() (registers the settings, section
 * "agents"), agent_server_start() once the proxy exists (no socket configured = off),
 * agent_server_shutdown() on SIGTERM (EVENT shutdown to every agent),
 * agent_server_free() at exit, before px_free(). Loop thread only.
 */
#ifndef PARLEY_AGENT_AGENT_SERVER_H
#define PARLEY_AGENT_AGENT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/px.h"

struct cfg;
struct event_base;
struct metrics;
struct agent_server;

struct agent_server_stats {
    uint64_t dispatched;          /* REQUEST frames sent */
    uint64_t queue_full;          /* Dispatch() refused: queue full or no agent */
    uint64_t no_agent;            /* of which: nobody registered for the name */
    uint64_t stalled;             /* agents disconnected for a full queue */
    uint64_t protocol_errors;     /* agents disconnected for a bad frame */
    uint64_t timeouts;            /* held transactions that timed out (408) */
    uint64_t passed_on;           /* requests passed on after their agent left */
    uint64_t answered_503;        /* requests answered 503 after their (critical) agent left */
    uint64_t connected;           /* agents connected now (gauge) */
};

/* Allocates the module and registers its settings with <cfg> (NULL on no memory). */
struct agent_server *agent_server_new(struct cfg *cfg);
/*
 * Opens the listening socket(s) named by the settings; <px> is borrowed and must
 * outlive the server. Returns 0 (also when agents are off) or -1 with <err> filled.
 */
int agent_server_start(struct agent_server *srv, struct event_base *base, struct px *px, char *err,
                       size_t errlen);
/* Are agents configured (a listening socket)? */
bool agent_server_enabled(const struct agent_server *srv);
/*
 * Hands <req> to the agent registered for application <app>. <critical>: the
 * dispatching application is critical (the agent's loss then stops the server and
 * its requests get 503). Returns true when the request was queued (the caller
 * returns PX_SUSPENDED/PX_ANSWERED and must not answer it), false when there is no
 * such agent or its queue is full.
 */
bool agent_server_dispatch(struct agent_server *srv, struct px_req *req, const char *app, bool critical);
/* SIGTERM: tells every agent (EVENT shutdown) and stops accepting new agents. */
void agent_server_shutdown(struct agent_server *srv);
const struct agent_server_stats *agent_server_stats(const struct agent_server *srv);
/*
 * Round trip of dispatched requests: from the REQUEST frame queued (Dispatch()) to the
 * agent's first PROXY, FORK or RESPOND for it (TRYING does not count), measured on the
 * loop thread with the monotonic clock. Quantile <q> (0..1) over the server's life, in
 * seconds (log-linear histogram, about 6 % resolution); 0 when nothing was measured.
 * Exported as parley_agent_round_trip_seconds{quantile="0.5"|"0.9"|"0.99"}.
 */
double agent_server_rtt_quantile(const struct agent_server *srv, double q);
/* Adds the parley_agent_* series to <m>. */
void agent_server_metrics(struct agent_server *srv, struct metrics *m);
/* Closes every agent connection (requests as on a disconnect) and frees. Accepts NULL. */
void agent_server_free(struct agent_server *srv);

#endif
