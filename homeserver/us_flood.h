/*
 * us_flood: flood protection of the home server, the first User Services stage
 * (like Kamailio's pike + a fail2ban for digest authentication).
 *
 * Per source address (the IP, the port ignored - a client may use many ports):
 *   - a token bucket for REGISTER (flood-register-rate per second) and one for every
 *     request (flood-request-rate per second), each holding at most flood-burst tokens;
 *     a request that finds its bucket empty is answered 503 Service Unavailable with a
 *     Retry-After of the seconds until a token is back (RFC 3261 §21.5.4, §20.33);
 *   - flood-ban-failures failed digest authentications (reported by the auth stage
 *     through us_flood_auth_failed()) within flood-ban-time ban the address for
 *     flood-ban-time: every request from it gets 503 with Retry-After = the rest of the ban.
 * ACK is never limited (it has no answer and belongs to a transaction or dialog already
 * admitted); CANCEL does not reach this stage (the proxy core answers it). Requests from
 * trusted connections (px_req_is_trusted: server and trusted classes) are exempt.
 *
 * No silent drop: by the time a request reaches the stage its server transaction exists,
 * so an answer costs no more than a drop, and the transaction absorbs retransmissions.
 * Bulk floods below the parser are bounded by the transport (max-connections,
 * max-message-size, idle-timeout).
 *
 * Memory is bounded: at most flood-max-addresses entries, least recently seen evicted
 * first (an evicted address starts again with a full bucket and no failures).
 * A rate of 0 turns that limit off; flood-ban-time 0 turns bans off. Everything is off
 * by default because connection classes are not wired yet (px_req_is_trusted is always
 * false), so a front-end's aggregated traffic would be limited as one client.
 *
 * Loop thread only.
 */
#ifndef PARLEY_HS_US_FLOOD_H
#define PARLEY_HS_US_FLOOD_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/px.h"
#include "transport/tp.h"

struct cfg;
struct metrics;
struct us_flood;

struct us_flood_opts {
    unsigned register_rate;       /* REGISTERs per second per address; 0 = unlimited */
    unsigned request_rate;        /* requests per second per address; 0 = unlimited */
    unsigned burst;               /* bucket size (tokens) of both buckets, >= 1 */
    unsigned ban_failures;        /* failed authentications that ban an address, >= 1 */
    unsigned ban_time_s;          /* ban length and failure window; 0 = no bans */
    unsigned max_addresses;       /* addresses tracked at most (LRU), >= 1 */
};

enum us_flood_verdict {
    US_FLOOD_PASS = 0,
    US_FLOOD_REGISTER_RATE,       /* REGISTER bucket empty */
    US_FLOOD_REQUEST_RATE,        /* request bucket empty */
    US_FLOOD_BANNED,              /* the address is banned */
};

struct us_flood_stats {
    uint64_t rejected[4];         /* by verdict (index 0 unused) */
    uint64_t bans;                /* bans started */
    uint64_t evictions;           /* entries recycled because the table was full */
    uint64_t addresses;           /* entries in use */
};

/*
 * Creates the stage. With <cfg>, registers the rows flood-* (section "flood",
 * reloadable) and applies them after each load/reload; call before cfg_load().
 * Without <cfg> the options are all off until us_flood_set_opts(). NULL on failure.
 */
struct us_flood *us_flood_new(struct cfg *cfg);
void us_flood_free(struct us_flood *fl);
/* Replaces the options (the table is kept; shrinking it evicts). 0, or -1 when invalid. */
int us_flood_set_opts(struct us_flood *fl, const struct us_flood_opts *opts);
/* Registers parley_flood_* series in <m>. 0 or -1. */
int us_flood_add_metrics(struct us_flood *fl, struct metrics *m);

/*
 * The stage: true when <req> may go on; false when it was answered 503 with Retry-After.
 */
bool us_flood_check(struct us_flood *fl, struct px_req *req);

/*
 * The decision without a request (unit tests, and us_flood_check underneath): takes a
 * token for a request from <src> at monotonic time <now_ms>. On a refusal, <*retry_s>
 * (may be NULL) gets the seconds to put in Retry-After (>= 1).
 */
enum us_flood_verdict us_flood_admit(struct us_flood *fl, const struct tp_addr *src, bool is_register,
                                     int64_t now_ms, unsigned *retry_s);

/* A failed digest authentication from <src> (wrong password, unknown user). */
void us_flood_auth_failed(struct us_flood *fl, const struct tp_addr *src);
void us_flood_auth_failed_at(struct us_flood *fl, const struct tp_addr *src, int64_t now_ms);
/* The same, in the shape of us_auth_opts.on_failure (<arg> is the struct us_flood). */
void us_flood_auth_failed_cb(const struct tp_addr *src, void *arg);

void us_flood_stats_get(const struct us_flood *fl, struct us_flood_stats *out);

#endif
