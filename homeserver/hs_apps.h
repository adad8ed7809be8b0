/*
 * hs_apps: the application chain of the home server (design §4) wired to its
 * settings, its location table and SIGHUP. The chain itself lives in shared/apps
 * (app_chain.h, app_host.h); this file adds what only the home server knows: where
 * the chain file is (--app-chain), the bindings of the users homed here
 * (us_location), and presence defaults until the presence agent exists
 * (availability 3000 "online", activity "unknown", present since registration).
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
void hs_apps_free(struct hs_apps *a);

#endif
