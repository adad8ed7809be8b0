/*
 * us_subs: the notifier side of SIP-specific event notification (RFC 6665) for the
 * users homed here — subscription dialogs, their refresh, expiry and termination, and
 * the NOTIFYs that carry each event package's state.
 *
 * Event packages (presence, the user's contact list, ...) register a struct us_pkg: an
 * authorization hook for new subscriptions and a body builder giving the current state
 * of a resource as one watcher may see it. A package calls us_subs_changed() when the
 * state of a resource changed; every subscription to it gets a NOTIFY. At most one
 * NOTIFY per subscription is in flight (RFC 6665 §4.2.2 lets a notifier throttle): a
 * change while one is pending sends the latest state once the first is answered.
 *
 * Durability: a subscription is in the store (kv namespace "sub") before its 200 OK
 * is sent, and with every CSeq it uses; us_subs_load() brings them back at start and
 * sends each one a NOTIFY with the current state, so watchers resume after a crash.
 * Loop thread only.
 */
#ifndef PARLEY_HS_US_SUBS_H
#define PARLEY_HS_US_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/px.h"
#include "store/store.h"

struct event_base;
struct us_subs;

/* One subscription, as event packages see it (read-only for them). */
struct us_sub {
    char *id;                 /* our tag in the dialog; unique */
    char *event;              /* package name, "presence" */
    char *resource;           /* "alice@example.com": the watched user */
    char *watcher;            /* "bob@example.com": From of the SUBSCRIBE */
    int64_t expires_at;       /* unix seconds */
    int64_t created_at;       /* unix seconds: when the watcher subscribed (survives restarts) */
    uint32_t seq;             /* NOTIFYs sent before the one being built: 0 for the first (the
                                 version of RFC 3858 §4.2 / RFC 4662 §5.2 documents) */
};

struct us_pkg {
    const char *name;         /* Event package, "presence" */
    const char *ctype;        /* Content-Type of its NOTIFY bodies, "application/pidf+xml" */
    /* 0 to accept a new subscription of <watcher> to <resource>, else the SIP status to
     * refuse it with (403, 404). May be NULL (everyone accepted). */
    int (*authorize)(void *arg, const char *resource, const char *watcher);
    /* The state of <s->resource> as <s->watcher> may see it: malloc'd <*body>, <*len>.
     * 0 or -1 (the NOTIFY then goes without a body). */
    int (*body)(void *arg, const struct us_sub *s, char **body, size_t *len);
    void *arg;
    /* Optional. The Event header value when it differs from <name> ("presence" for the
     * resource-list package "rls:presence"). A package with an <event> is never chosen by
     * the Event header of a SUBSCRIBE: only by us_subs_handle_pkg(). */
    const char *event;
    /* Optional. RFC 4662 §4.3: its 200s carry "Require: eventlist". */
    bool eventlist;
    /* Optional, replaces <body>'s Content-Type: sets a malloc'd <*ctype> for this NOTIFY
     * (multipart bodies, whose type names a boundary). NULL leaves <ctype>. */
    int (*body_ct)(void *arg, const struct us_sub *s, char **body, size_t *len, char **ctype);
};

/* What happened to a subscription (us_subs_observe()). */
enum us_sub_event {
    US_SUB_ACTIVE = 0,        /* created and stored (reason "subscribe"), or loaded at start
                                 ("loaded"); its first NOTIFY follows */
    US_SUB_REFRESHED,         /* a SUBSCRIBE refreshed it */
    US_SUB_TERMINATED,        /* ended ("timeout": expired or unsubscribed, "deactivated": its
                                 NOTIFY failed); the final NOTIFY (if any) follows */
};

/*
 * An observer of every subscription and every state change (us_winfo watches the
 * "presence" subscriptions, us_rls the presence of list members). Both callbacks may be
 * NULL and may call us_subs_changed() (never for the event they were called with).
 */
struct us_subs_observer {
    void (*sub_event)(void *arg, const struct us_sub *s, enum us_sub_event ev, const char *reason);
    /* us_subs_changed(<event>, <resource>) was called (after the direct NOTIFYs). */
    void (*changed)(void *arg, const char *event, const char *resource);
    void *arg;
};

struct us_subs_opts {
    long long min_expires;    /* 60: shorter non-zero intervals get 423 */
    long long max_expires;    /* 7200: longer are shortened */
    long long default_expires;/* 3600 (RFC 3856 §6.4 for presence) */
    size_t max_subs;          /* in total; beyond: 503 */
};

struct us_subs *us_subs_new(struct event_base *base, struct px *px, struct store *st,
                            const struct us_subs_opts *opts);
/* Cancels pending NOTIFYs (no terminated NOTIFY: the subscriptions stay in the store). */
void us_subs_free(struct us_subs *ss);
/* Registers a package (the struct is copied; its strings must outlive <ss>). 0 or -1. */
int us_subs_add_pkg(struct us_subs *ss, const struct us_pkg *pkg);
/* Adds an observer (copied; at most 8). 0 or -1. */
int us_subs_observe(struct us_subs *ss, const struct us_subs_observer *ob);
/* Both of the above, with <arg> as the <arg> of <pkg> and of <ob>: for a package that
 * builds on other subscriptions (us_winfo, us_rls). 0 or -1. */
int us_subs_add_pkg_observer(struct us_subs *ss, const struct us_pkg *pkg, const struct us_subs_observer *ob,
                             void *arg);
/* Loads the stored subscriptions (after the packages were added and their state
 * loaded) and sends each one a NOTIFY. Returns how many, or -1. */
long us_subs_load(struct us_subs *ss);

/*
 * Handles a SUBSCRIBE for <resource> (our user, "user@domain"): a new subscription
 * (authorized by its package), a refresh, or an unsubscribe (Expires: 0), then the
 * NOTIFY (RFC 6665 §4.2.1.1: right after the 200). 489 for an unknown package, 481
 * for an unknown dialog, 423 below min-expires, 400 without a Contact.
 */
enum px_verdict us_subs_handle(struct us_subs *ss, struct px_req *req, const char *resource);
/* Same, with package <pkg> (by name) whatever the Event header says (the caller checked
 * it): the resource-list URI (us_rls). 500 if there is no such package. */
enum px_verdict us_subs_handle_pkg(struct us_subs *ss, struct px_req *req, const char *resource,
                                   const char *pkg);

/* The state of <resource> in package <event> changed: NOTIFY every subscription to it. */
void us_subs_changed(struct us_subs *ss, const char *event, const char *resource);
/* Calls <fn> for every active subscription of package <event> (NULL: any) to <resource>. */
void us_subs_foreach(struct us_subs *ss, const char *event, const char *resource,
                     void (*fn)(const struct us_sub *s, void *arg), void *arg);

struct us_subs_stats {
    uint64_t active, notify_sent, notify_ok, notify_failed, created, terminated;
};
const struct us_subs_stats *us_subs_stats(const struct us_subs *ss);

#endif
