#define LOG_MODULE "apps"
#include "hs_apps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/app_chain.h"
#include "agent/agent_server.h"
#include "apps/app_host.h"
#include "us_location.h"
#include "util/cfg.h"
#include "util/clock.h"
#include "util/log.h"

#ifndef PARLEY_APPS_INSTALL_DIR
#define PARLEY_APPS_INSTALL_DIR "/usr/local/share/parley/apps"
#endif
#ifndef PARLEY_APPS_SOURCE_DIR
#define PARLEY_APPS_SOURCE_DIR ""
#endif

/* Until the presence agent publishes real values (design §3): every registered endpoint is online. */
#define HS_DEFAULT_AVAILABILITY 3000
#define HS_DEFAULT_ACTIVITY "unknown"

struct hs_apps_settings {
    char *chain;
};

/*
 * Settings live in static storage: cfg_free() writes into them after everything else
 * is gone, so they must outlive struct hs_apps (one home server per process).
 */
static struct hs_apps_settings apps_set;

static const struct cfg_opt apps_rows[] = {
    {"app-chain", CFG_STR, "default", 0, 0, true, false,
     "application chain file, one manifest (.am) per line; 'default' = the installed chain "
     "(apps/chain.conf: routing.am), 'none' = no chain (built-in routing to every binding); "
     "re-read on SIGHUP",
     offsetof(struct hs_apps_settings, chain)},
};

struct hs_apps {
    struct app_chain *chain;      /* current chain, or NULL (no chain: built-in routing) */
    struct app_env env;
    struct us_location *loc;
    char path[1024];              /* chain file in use */
};

struct hs_apps *
hs_apps_new(struct cfg *cfg)
{
    struct hs_apps *a = calloc(1, sizeof *a);

    if (a == NULL)
        return NULL;
    if (cfg_register(cfg, "apps", apps_rows, sizeof apps_rows / sizeof apps_rows[0], &apps_set) != 0) {
        free(a);
        return NULL;
    }
    return a;
}

/* The bindings of <aor> for Endpoints(), with presence defaults. */
static int
bindings(void *arg, const char *aor, app_binding_cb *cb, void *cb_arg)
{
    struct hs_apps *a = arg;
    struct us_aor *u = us_loc_find(a->loc, aor);
    int64_t now = clock_wall_s();

    for (struct us_binding *b = u ? u->bindings : NULL; b; b = b->next) {
        struct app_binding ab;
        if (b->expires_at <= now)
            continue;
        ab.epid = b->epid;
        ab.contact = b->contact;
        ab.path = b->path;
        ab.activity = HS_DEFAULT_ACTIVITY;
        ab.availability = HS_DEFAULT_AVAILABILITY;
        ab.present_since = b->registered_at;
        ab.conn_id = b->conn_id;
        if (cb(cb_arg, &ab) != 0)
            break;
    }
    return 0;
}

/*
 * Which chain file the setting names: "" for none; for "default" the installed
 * chain, else the one in the source tree (a build that is not installed).
 */
static int
resolve(const char *setting, char *out, size_t len)
{
    if (setting == NULL || setting[0] == '\0' || strcmp(setting, "none") == 0) {
        out[0] = '\0';
        return 0;
    }
    if (strcmp(setting, "default") != 0) {
        snprintf(out, len, "%s", setting);
        return 0;
    }
    snprintf(out, len, "%s/chain.conf", PARLEY_APPS_INSTALL_DIR);
    if (access(out, R_OK) == 0)
        return 0;
    if (PARLEY_APPS_SOURCE_DIR[0]) {
        snprintf(out, len, "%s/chain.conf", PARLEY_APPS_SOURCE_DIR);
        if (access(out, R_OK) == 0)
            return 0;
    }
    out[0] = '\0';
    return -1;
}

static void
describe(const struct hs_apps *a)
{
    char names[512];
    size_t n = 0;

    names[0] = '\0';
    for (size_t i = 0; i < app_chain_count(a->chain) && n < sizeof names; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "",
                              app_chain_manifest(a->chain, i)->name);
    log_info("application chain %s: %s", a->path, app_chain_count(a->chain) ? names : "(empty)");
}

int
hs_apps_start(struct hs_apps *a, struct px *px, const char *domain, struct us_location *loc, char *err,
              size_t errlen)
{
    struct app_err e;

    a->env.px = px;
    a->env.domain = domain;
    a->env.bindings = bindings;
    a->env.bindings_arg = a;
    a->loc = loc;
    if (resolve(apps_set.chain, a->path, sizeof a->path) != 0) {
        log_warn("no installed application chain (%s/chain.conf): built-in routing", PARLEY_APPS_INSTALL_DIR);
        return 0;
    }
    if (a->path[0] == '\0') {
        log_info("application chain off: built-in routing");
        return 0;
    }
    a->chain = app_chain_load(a->path, &e);
    if (a->chain == NULL) {
        app_err_str(&e, err, errlen);
        return -1;
    }
    describe(a);
    return 0;
}

bool
hs_apps_run(struct hs_apps *a, struct px_req *req, enum px_verdict *v)
{
    if (a == NULL || a->chain == NULL)
        return false;
    return app_host_handle(a->chain, &a->env, req, v);
}

void
hs_apps_reload(struct hs_apps *a)
{
    struct app_err e;
    struct app_chain *c;
    char path[sizeof a->path], msg[600];

    if (a == NULL)
        return;
    if (resolve(apps_set.chain, path, sizeof path) != 0 || path[0] == '\0') {
        if (a->chain)
            log_info("application chain off after reload: built-in routing");
        app_chain_unref(a->chain);
        a->chain = NULL;
        a->path[0] = '\0';
        return;
    }
    c = app_chain_load(path, &e);
    if (c == NULL) {
        log_err("application chain not reloaded, the old one stays: %s", app_err_str(&e, msg, sizeof msg));
        return;
    }
    app_chain_unref(a->chain);   /* requests in flight keep their own reference */
    a->chain = c;
    snprintf(a->path, sizeof a->path, "%s", path);
    describe(a);
}

static bool
dispatch(void *arg, struct px_req *req, const char *handler, bool critical)
{
    return agent_server_dispatch(arg, req, handler, critical);
}

void
hs_apps_set_agents(struct hs_apps *a, struct agent_server *srv)
{
    if (a == NULL)
        return;
    a->env.dispatch = srv ? dispatch : NULL;
    a->env.dispatch_arg = srv;
}

void
hs_apps_free(struct hs_apps *a)
{
    if (a == NULL)
        return;
    app_chain_unref(a->chain);
    free(a);
}
