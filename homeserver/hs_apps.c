#define LOG_MODULE "apps"
#include "hs_apps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "apps/app_chain.h"
#include "agent/agent_server.h"
#include "apps/app_host.h"
#include "directory/dir.h"
#include "us_location.h"
#include "us_presence.h"
#include "util/admin_http.h"
#include "util/cfg.h"
#include "util/clock.h"
#include "util/log.h"

#ifndef PARLEY_APPS_INSTALL_DIR
#define PARLEY_APPS_INSTALL_DIR "/usr/local/share/parley/apps"
#endif
#ifndef PARLEY_APPS_SOURCE_DIR
#define PARLEY_APPS_SOURCE_DIR ""
#endif

/* An endpoint that published nothing (or no presence agent): registered = online. */
#define HS_DEFAULT_AVAILABILITY US_AVAIL_ONLINE
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
    struct us_presence *pres;     /* NULL: registration data only */
    struct dir *dir;              /* pool order source, or NULL */
    char path[1024];              /* chain file in use */
    char **order;                 /* pool order (names), NULL = unset */
    size_t norder;
    char missing[512];            /* pool-order names no manifest here has, ", "-joined */
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
        if (a->pres && b->received) {
            struct us_endpoint_state st;
            if (us_presence_endpoint_state(a->pres, aor, b->received, &st) == 1) {
                ab.activity = st.activity;
                ab.availability = st.availability;
                /* in this state since it last changed, but not before it registered */
                ab.present_since = st.since > b->registered_at ? st.since : b->registered_at;
            }
        }
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
    log_info("application chain %s: %s%s", a->path, app_chain_count(a->chain) ? names : "(empty)",
             a->order ? " (pool order)" : "");
}

/* Loads the chain file <path> and applies the pool order. NULL with <e> filled. */
static struct app_chain *
load(struct hs_apps *a, const char *path, struct app_err *e)
{
    struct app_chain *c = app_chain_load(path, e);
    size_t n = 0;

    a->missing[0] = '\0';
    if (c == NULL || a->order == NULL)
        return c;
    app_chain_reorder(c, (const char *const *)a->order, a->norder);   /* just loaded: not shared */
    for (size_t i = 0; i < a->norder; i++) {
        bool here = false;
        for (size_t j = 0; j < app_chain_count(c) && !here; j++)
            here = strcmp(app_chain_manifest(c, j)->name, a->order[i]) == 0;
        if (here)
            continue;
        log_warn("pool order names application '%s', which the chain %s does not have: skipped",
                 a->order[i], path);
        if (n < sizeof a->missing)
            n += (size_t)snprintf(a->missing + n, sizeof a->missing - n, "%s%s", n ? ", " : "", a->order[i]);
    }
    return c;
}

static void
order_clear(struct hs_apps *a)
{
    for (size_t i = 0; i < a->norder; i++)
        free(a->order[i]);
    free(a->order);
    a->order = NULL;
    a->norder = 0;
}

/*
 * Parses the value of /parley/apps/order: a JSON list of application names (manifest
 * name syntax), at most APP_MAX_APPS, no duplicates. NULL, "", [] = unset. Returns 0 with
 * the new order in <a>, or -1 (logged; <a>'s order is then unset: the chain file's).
 */
static int
order_set(struct hs_apps *a, const char *raw)
{
    json_error_t je;
    json_t *j, *v;
    size_t i;
    int rc = -1;

    order_clear(a);
    if (raw == NULL || raw[0] == '\0')
        return 0;
    j = json_loads(raw, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_array(j) || json_array_size(j) > APP_MAX_APPS) {
        log_warn("%s: not a JSON list of at most %d application names: ignored (the chain file's order)",
                 DIR_KEY_APPS_ORDER, APP_MAX_APPS);
        goto out;
    }
    if (json_array_size(j) == 0) {
        rc = 0;
        goto out;
    }
    if ((a->order = calloc(json_array_size(j), sizeof *a->order)) == NULL)
        goto out;
    json_array_foreach(j, i, v) {
        const char *name = json_string_value(v);
        bool ok = name && name[0] && strlen(name) < APP_MAX_NAME;
        for (const char *c = name; ok && *c; c++)
            ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                 *c == '_' || *c == '.';
        for (size_t k = 0; ok && k < a->norder; k++)
            ok = strcmp(a->order[k], name) != 0;
        if (!ok) {
            log_warn("%s: entry %zu is not an application name or repeats one: ignored (the chain file's order)",
                     DIR_KEY_APPS_ORDER, i + 1);
            order_clear(a);
            goto out;
        }
        if ((a->order[a->norder] = strdup(name)) == NULL) {
            order_clear(a);
            goto out;
        }
        a->norder++;
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
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
    a->chain = load(a, a->path, &e);
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

/* The reload; 0, or -1 with the error in <msg> (the old chain stays). */
static int
reload(struct hs_apps *a, char *msg, size_t msglen)
{
    struct app_err e;
    struct app_chain *c;
    char path[sizeof a->path];

    if (resolve(apps_set.chain, path, sizeof path) != 0 || path[0] == '\0') {
        if (a->chain)
            log_info("application chain off after reload: built-in routing");
        app_chain_unref(a->chain);
        a->chain = NULL;
        a->path[0] = '\0';
        return 0;
    }
    c = load(a, path, &e);
    if (c == NULL) {
        app_err_str(&e, msg, msglen);
        log_err("application chain not reloaded, the old one stays: %s", msg);
        return -1;
    }
    app_chain_unref(a->chain);   /* requests in flight keep their own reference */
    a->chain = c;
    snprintf(a->path, sizeof a->path, "%s", path);
    describe(a);
    return 0;
}

void
hs_apps_reload(struct hs_apps *a)
{
    char msg[600];

    if (a != NULL)
        reload(a, msg, sizeof msg);
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
hs_apps_set_presence(struct hs_apps *a, struct us_presence *pa)
{
    if (a != NULL)
        a->pres = pa;
}

/* /parley/apps/order changed (NULL = removed): re-read the chain in the new order. */
static void
order_changed(const char *value, void *arg)
{
    struct hs_apps *a = arg;
    char msg[600];

    order_set(a, value);
    log_info("pool application order %s", a->order ? "changed" : "unset: the chain file's order");
    if (a->path[0])
        reload(a, msg, sizeof msg);
}

void
hs_apps_set_dir(struct hs_apps *a, struct dir *d)
{
    if (a == NULL)
        return;
    if (a->dir)
        dir_set_apps_order_cb(a->dir, NULL, NULL);
    a->dir = d;
    if (d == NULL)
        return;
    dir_set_apps_order_cb(d, order_changed, a);
    if (dir_apps_order(d) != NULL)
        order_changed(dir_apps_order(d), a);   /* from the disk copy */
}

static void
json_names(struct evbuffer *out, const char *const *names, size_t n)
{
    evbuffer_add_printf(out, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            evbuffer_add_printf(out, ",");
        admin_json_str(out, names[i]);
    }
    evbuffer_add_printf(out, "]");
}

/* GET /api/apps */
static int
api_apps(struct admin_req *req, struct evbuffer *out, void *arg)
{
    struct hs_apps *a = arg;
    size_t n = a->chain ? app_chain_count(a->chain) : 0;

    (void)req;
    evbuffer_add_printf(out, "{\"chain_file\":");
    if (a->chain)
        admin_json_str(out, a->path);
    else
        evbuffer_add_printf(out, "null");
    evbuffer_add_printf(out, ",\"pool_order\":");
    if (a->order)
        json_names(out, (const char *const *)a->order, a->norder);
    else
        evbuffer_add_printf(out, "null");
    evbuffer_add_printf(out, ",\"missing\":");
    admin_json_str(out, a->missing);
    evbuffer_add_printf(out, ",\"order\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            evbuffer_add_printf(out, ",");
        admin_json_str(out, app_chain_manifest(a->chain, i)->name);
    }
    evbuffer_add_printf(out, "],\"apps\":[");
    for (size_t i = 0; i < n; i++) {
        const struct app_manifest *m = app_chain_manifest(a->chain, i);
        const struct app_stats *st = app_chain_stats(a->chain, i);
        evbuffer_add_printf(out, "%s{\"name\":", i ? "," : "");
        admin_json_str(out, m->name);
        evbuffer_add_printf(out, ",\"file\":");
        admin_json_str(out, m->file);
        evbuffer_add_printf(out,
                            ",\"strict_route\":%s,\"critical\":%s,\"runs\":%llu,\"passed\":%llu,"
                            "\"proxied\":%llu,\"answered\":%llu,\"errors\":%llu,\"responses\":%llu}",
                            m->strict_route ? "true" : "false", m->critical ? "true" : "false",
                            (unsigned long long)st->runs, (unsigned long long)st->passed,
                            (unsigned long long)st->proxied, (unsigned long long)st->answered,
                            (unsigned long long)st->errors, (unsigned long long)st->responses);
    }
    evbuffer_add_printf(out, "]}\n");
    return 200;
}

/* POST /api/apps/reload */
static int
api_reload(struct admin_req *req, struct evbuffer *out, void *arg)
{
    struct hs_apps *a = arg;
    char msg[600];

    (void)req;
    if (reload(a, msg, sizeof msg) != 0) {
        evbuffer_add_printf(out, "{\"error\":");
        admin_json_str(out, msg);
        evbuffer_add_printf(out, "}\n");
        return 400;
    }
    return api_apps(req, out, arg);
}

void
hs_apps_register_admin(struct hs_apps *a, struct admin_http *admin)
{
    if (a == NULL || admin == NULL)
        return;
    admin_http_add_route(admin, "/api/apps", api_apps, a);
    admin_http_add_action(admin, "/api/apps/reload", api_reload, a);
}

void
hs_apps_free(struct hs_apps *a)
{
    if (a == NULL)
        return;
    order_clear(a);   /* the directory is gone already (main.c frees it first) */
    app_chain_unref(a->chain);
    free(a);
}
