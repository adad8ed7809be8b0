/*
 * us_services: User Services beyond the registrar, wired together for main.c — the
 * subscriptions (us_subs), the presence agent (us_presence), the contact and
 * allow/block lists (us_lists) — and the enforcement of the block list.
 */
#ifndef PARLEY_HS_US_SERVICES_H
#define PARLEY_HS_US_SERVICES_H

#include <stdbool.h>

#include "proxy/px.h"
#include "store/store.h"
#include "us_location.h"
#include "us_registrar.h"

struct event_base;
struct us_lists;
struct us_services;

struct us_services_opts {
    long long min_expires;       /* shortest SUBSCRIBE/PUBLISH interval (else 423) */
    long long max_expires;       /* longer ones are shortened */
};

/* Creates the modules, loads their stored state and resumes the stored subscriptions
 * (their NOTIFYs go out: call after the listeners are open). Observes <reg>. NULL on error. */
struct us_services *us_services_start(struct event_base *base, struct px *px, struct store *st,
                                      struct us_location *loc, struct us_registrar *reg,
                                      const struct us_services_opts *opts);
/* Accepts NULL. Call before px_free(). */
void us_services_free(struct us_services *svc);
/* The presence agent (us_presence.h), for the routing application; NULL with <svc> NULL. */
struct us_presence *us_services_presence(const struct us_services *svc);

/*
 * For a request to our user <aor>: SUBSCRIBE, PUBLISH and SERVICE are handled here
 * (design §3: they never reach the application chain); INVITE, MESSAGE and the like from
 * a user <aor> blocks get 403. Returns true with <*v> set when it answered or suspended
 * the request, false to let routing continue.
 */
bool us_services_handle(struct us_services *svc, struct px_req *req, const char *aor,
                        enum px_verdict *v);

/* Who is homed on this server, for the resource lists: <fn>(<user>, <arg>) (us_rls.h;
 * the default is every user of the list owner's domain). */
void us_services_set_home_fn(struct us_services *svc, bool (*fn)(const char *user, void *arg), void *arg);

/* The contact and allow/block lists (for the admin endpoint, us_admin.h); NULL for NULL. */
struct us_lists *us_services_lists(const struct us_services *svc);

#endif
