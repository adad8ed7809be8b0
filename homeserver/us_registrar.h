/*
 * us_registrar: the registrar of User Services (RFC 3261 §10, RFC 3327 Path,
 * RFC 5626 +sip.instance/reg-id). Bindings live in the location table and are made
 * durable in the store: a 200 goes out only after the store committed the change
 * (group commit, one transaction per loop turn).
 */
#ifndef PARLEY_HS_US_REGISTRAR_H
#define PARLEY_HS_US_REGISTRAR_H

#include <stdint.h>

#include "proxy/px.h"
#include "store/store.h"
#include "us_location.h"

struct event_base;
struct us_registrar;

struct us_registrar_opts {
    long long min_expires;       /* 60: shorter non-zero intervals get 423 */
    long long max_expires;       /* 7200: longer are shortened */
    long long default_expires;   /* 3600 */
    long long max_contacts;      /* 32 per AOR */
};

struct us_registrar *us_registrar_new(struct event_base *base, const struct us_registrar_opts *opts,
                                      struct us_location *loc, struct store *st);
void us_registrar_free(struct us_registrar *reg);
/* Replaces the limits (configuration reload); applies to REGISTERs handled from now on. */
void us_registrar_set_opts(struct us_registrar *reg, const struct us_registrar_opts *opts);
/* Loads the stored bindings into the location table (at start). Returns the count or -1. */
long us_registrar_load(struct us_registrar *reg);
/*
 * Observer of binding changes (the presence agent): <fn>(<aor>, <arg>) runs after a
 * REGISTER for <aor> changed its bindings and the change was committed, and when bindings
 * of <aor> expired. One observer; NULL removes it.
 */
typedef void us_registrar_change_fn(const char *aor, void *arg);
void us_registrar_on_change(struct us_registrar *reg, us_registrar_change_fn *fn, void *arg);
/* Handles a REGISTER addressed to our domain. */
enum px_verdict us_registrar_handle(struct us_registrar *reg, struct px_req *req, const char *domain);

#endif
