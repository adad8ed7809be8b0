/*
 * app_chain: the ordered list of applications of a home server (design §4) and the
 * rules by which a message walks it. Knows nothing about the proxy: the message is
 * reached through a struct scr_host (app_host.h implements it over a px_req; the unit
 * tests use a mock), so the semantics are tested on their own.
 *
 * Requests: the applications are tried in order. An application runs when its
 * request filter selects the method and, for a strict-routed request, when its
 * manifest says `strict-route: true`. A run that proxies, responds, redirects or
 * dispatches ends the walk; a run that does none of these passes the request to the
 * next application; a runtime error is logged and also passes it on (actions taken
 * before the error stand, and a terminal one ends the walk). Nobody acting = the
 * chain passes: the caller's fallback routes it.
 *
 * Responses go back through the applications that ran for the request and whose
 * response filter selects the code, in reverse order.
 *
 * Life: a chain is immutable once loaded and reference counted: the server holds one
 * reference for the current chain and each request in flight that needs responses
 * holds another, so a reload (SIGHUP) swaps the chain while old transactions finish
 * on the old one. Loop thread only (the counts are not atomic).
 */
#ifndef PARLEY_APPS_APP_CHAIN_H
#define PARLEY_APPS_APP_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "apps/app_manifest.h"
#include "script/scr.h"

#define APP_MAX_APPS 64   /* applications in one chain (a bit each in app_chain_run.seen) */

struct app_chain;

/* Counters per application (loop thread). */
struct app_stats {
    uint64_t runs, passed, proxied, answered, errors, responses;
};

/* What the walk of one request did. */
struct app_chain_run {
    enum scr_outcome outcome;     /* SCR_PASS when nobody acted, else the terminal action */
    int by;                       /* index of the application that acted, -1 if none */
    uint64_t seen;                /* bit i: application i ran for this request */
    unsigned errors;              /* runtime errors met on the way */
};

/*
 * How the chain reaches the message: <host> is used for every run; <current> (may be
 * NULL) is told the name of the application about to run (e.g. to prefix its Log()).
 */
struct app_chain_io {
    const struct scr_host *host;
    void (*current)(void *arg, const char *app_name);
};

/* An empty chain (refs = 1). NULL on allocation failure. */
struct app_chain *app_chain_new(void);
/*
 * Compiles <m> and appends it. Takes ownership of <m> (freed on failure too).
 * Returns 0, or -1 with <err> filled ("file:line:col" of the script error, or a
 * duplicate name, or more than APP_MAX_APPS applications).
 */
int app_chain_add(struct app_chain *c, struct app_manifest *m, struct app_err *err);
/*
 * Reads a chain file: one manifest path per line (relative paths are relative to
 * the chain file's folder), '#' comments and blank lines ignored. Returns a chain
 * (refs = 1) or NULL with <err> filled: the chain file's line for a missing
 * manifest, the manifest's own file:line:col for a parse or compile error.
 */
struct app_chain *app_chain_load(const char *path, struct app_err *err);

/*
 * Puts the applications named in <names> (the pool-wide order, `parleyctl app order`)
 * first, in that order; the others follow in their current order. Names not in <c> are
 * skipped (the caller reports them). Only for a chain nobody else holds (refs == 1,
 * just loaded): returns 0, or -1 when it is shared (unchanged).
 */
int app_chain_reorder(struct app_chain *c, const char *const *names, size_t n);

void app_chain_ref(struct app_chain *c);
/* Drops a reference; the last one frees the chain. Accepts NULL. */
void app_chain_unref(struct app_chain *c);

size_t app_chain_count(const struct app_chain *c);
const struct app_manifest *app_chain_manifest(const struct app_chain *c, size_t i);
const struct app_stats *app_chain_stats(const struct app_chain *c, size_t i);
/* Does any application of <c> have a response filter? (else no response hook is needed) */
bool app_chain_wants_responses(const struct app_chain *c);

/*
 * Walks <c> for a request with <method>; <strict> = strict-routed (design §2).
 * Fills <out> and returns out->outcome.
 */
enum scr_outcome app_chain_request(struct app_chain *c, const char *method, bool strict,
                                   const struct app_chain_io *io, struct app_chain_run *out);
/*
 * Runs the response with status <code> through the applications in <seen> that
 * select it, last first. Returns how many ran.
 */
unsigned app_chain_response(struct app_chain *c, uint64_t seen, int code, const struct app_chain_io *io);
/* Does some application in <seen> select any response at all? */
bool app_chain_seen_wants_responses(const struct app_chain *c, uint64_t seen);

#endif
