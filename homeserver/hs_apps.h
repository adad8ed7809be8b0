/*
 * hs_apps: the application chain of the home server (design §4) wired to its
 * settings, its location table and SIGHUP. The chain itself lives in shared/apps
 * (app_chain.h, app_host.h); this file adds what only the home server knows: where
 * the chain file is (--app-chain), the bindings of the users homed here
 * (us_location) with what each endpoint published (us_presence: availability,
 * RPID activity, since when; an endpoint that published nothing is "online",
 * availability 3000, activity "unknown", present since it registered), and the
 * pool-wide order of the chain (etcd /parley/apps/order, `parleyctl app order`).
 *
 * Pool order: a JSON list of application names. When set, the applications it names
 * come first in that order, the others of the chain file follow in the file's order;
 * names no manifest here has are logged and skipped. Unset or empty = the chain
 * file's order. A change re-reads the chain file (like a reload).
 *
 * Admin endpoint: GET /api/apps (chain file, pool order, effective order, counters per
 * application), POST /api/apps/reload (re-reads the chain file; 400 with the error
 * when it does not compile, the old chain stays).
 *
 * Life: hs_apps_new() before cfg_load() (registers the settings), hs_apps_start()
 * once px and the location table exist, hs_apps_reload() on SIGHUP,
 * hs_apps_free() at exit. Loop thread only.
 */
#ifndef PARLEY_HS_APPS_H
#define PARLEY_HS_APPS_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/px.h"

struct cfg;
struct us_location;
struct hs_apps;

/* Allocates the module and registers its settings (section "apps") with <cfg>. */
struct hs_apps *hs_apps_new(struct cfg *cfg);
/*
 * Loads the chain named by --app-chain. Returns 0 (also when the chain is off), or
 * -1 with "file:line:col: why" in <err>: the server must refuse to start (exit 2).
 */
int hs_apps_start(struct hs_apps *a, struct px *px, const char *domain, struct us_location *loc, char *err,
                  size_t errlen);
/*
 * Runs the chain for <req>. True with <*v> when an application proxied or answered;
 * false when there is no chain or it passed the request on (the caller routes it:
 * route_local_user for our users, the protocol stack otherwise). <a> may be NULL.
 */
bool hs_apps_run(struct hs_apps *a, struct px_req *req, enum px_verdict *v);
/*
 * SIGHUP: re-reads the chain file (the --app-chain setting may have changed too). On
 * an error the old chain stays and the error is logged. Requests in flight finish
 * on the chain they started on.
 */
void hs_apps_reload(struct hs_apps *a);
/* Routes the scripts' Dispatch() to <srv> (agent_server.h); NULL = no agents. */
struct agent_server;
void hs_apps_set_agents(struct hs_apps *a, struct agent_server *srv);
/* Endpoints() reports what endpoints published to <pa> (NULL = registration data only). */
struct us_presence;
void hs_apps_set_presence(struct hs_apps *a, struct us_presence *pa);
/* Follows the pool order in <d> (NULL = none): applies the current value now and every
 * change. hs_apps_free() does not touch <d> (it may be freed first: no callback after). */
struct dir;
void hs_apps_set_dir(struct hs_apps *a, struct dir *d);
/* Adds GET /api/apps and POST /api/apps/reload to <admin> (may be NULL). */
struct admin_http;
void hs_apps_register_admin(struct hs_apps *a, struct admin_http *admin);
void hs_apps_free(struct hs_apps *a);

#endif
