/*
 * us_presence: the presence agent of the home server (design §3) — the event state
 * compositor for the users homed here.
 *
 * PUBLISH (RFC 3903) stores PIDF documents (RFC 3863, RPID RFC 4480) per user, each
 * under its entity-tag (SIP-ETag / SIP-If-Match: refresh, modify, remove with
 * Expires: 0) until it expires. The "presence" event package (RFC 3856) serves the
 * composed view to subscribers through us_subs: every live publication's tuples plus
 * one open tuple per registered endpoint that published nothing; a user without any
 * live binding is offline (one closed tuple), and so is everyone to a watcher the
 * user blocks (us_lists). Publications are durable (store kv namespace "pub"): the 200
 * is sent after the commit, and they are back after a restart.
 */
#ifndef PARLEY_HS_US_PRESENCE_H
#define PARLEY_HS_US_PRESENCE_H

#include <stdint.h>

#include "proxy/px.h"
#include "store/store.h"
#include "us_lists.h"
#include "us_location.h"
#include "us_subs.h"

struct event_base;
struct us_presence;

struct us_presence_opts {
    long long min_expires;       /* 60: shorter non-zero intervals get 423 */
    long long max_expires;       /* 7200 */
    long long default_expires;   /* 3600 (RFC 3903 §4: the publisher should say) */
    unsigned max_pubs;           /* publications per user (beyond: 503) */
};

/* Registers the "presence" package with <subs>. <loc>, <lists> (may be NULL) are borrowed. */
struct us_presence *us_presence_new(struct event_base *base, const struct us_presence_opts *opts,
                                    struct store *st, struct us_subs *subs, struct us_location *loc,
                                    struct us_lists *lists);
void us_presence_free(struct us_presence *pa);
/* Loads the stored, unexpired publications. Returns how many, or -1. */
long us_presence_load(struct us_presence *pa);
/* Handles a PUBLISH for <aor> (our user). */
enum px_verdict us_presence_publish(struct us_presence *pa, struct px_req *req, const char *aor);
/* The registrar changed the bindings of <aor>: watchers get the new composition.
 * Signature fits us_registrar_on_change(). */
void us_presence_bindings_changed(const char *aor, void *arg);
/* The composed document of <aor> as <watcher> (NULL = no blocking) sees it; malloc'd. */
char *us_presence_document(struct us_presence *pa, const char *aor, const char *watcher, size_t *len);

/*
 * Presence of one registered endpoint, for the routing application (hs_apps, design §4).
 * Availability: higher is more available (the script's Endpoints() contract):
 *   3000 online (open, no activity saying otherwise; also an endpoint that published
 *        nothing), 2000 busy (RPID busy, on-the-phone, meeting, appointment, ...),
 *   1000 away (RPID away, vacation, sleeping, meal, ...), 0 offline (every tuple closed).
 */
#define US_AVAIL_ONLINE 3000
#define US_AVAIL_BUSY 2000
#define US_AVAIL_AWAY 1000
#define US_AVAIL_OFFLINE 0

struct us_endpoint_state {
    int availability;            /* US_AVAIL_* */
    const char *activity;        /* first RPID activity of the document (RFC 4480 name, static;
                                  * "other" for one not in RFC 4480), else "unknown" */
    int64_t since;               /* unix seconds: when the document last changed */
};

/*
 * The state an endpoint of <aor> published: publications are matched to a binding by
 * the flow they came from, <received> = us_binding.received ("udp:1.2.3.4:5060"); of
 * several live ones from that flow the newest counts. Read-only; loop thread. Returns 1
 * with <st> filled, 0 when the endpoint published nothing live (<st> untouched).
 */
int us_presence_endpoint_state(struct us_presence *pa, const char *aor, const char *received,
                               struct us_endpoint_state *st);

#endif
