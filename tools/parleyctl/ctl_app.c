/*
 * parleyctl app order / show / reload: the pool-wide order of the home servers'
 * application chain (design §4).
 *
 * The order is one etcd key, /parley/apps/order, holding a JSON list of application
 * names. Every home server follows it through its directory watch: the applications it
 * names run first, in that order, the others of a server's chain file after them;
 * names a server has no manifest for are skipped there (and logged). No key = each
 * server's chain file order. `show` prints the key and, for every announced home server
 * with an admin endpoint, the order it runs now (GET <admin>/api/apps); `reload` makes
 * them re-read their chain files (POST <admin>/api/apps/reload, as SIGHUP does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define PARSE_OPTS(...)                                                                      \
    do {                                                                                     \
        int prc_ = ctl_parse_opts(__VA_ARGS__);                                              \
        if (prc_ != CTL_OK)                                                                  \
            return prc_ < 0 ? CTL_OK : prc_;                                                 \
    } while (0)

#define APPS_ORDER_KEY "/parley/apps/order"
#define APP_NAME_MAX 63          /* bytes of an application name (manifest `name:`) */
#define APP_ORDER_MAX 64         /* applications in one chain (APP_MAX_APPS) */
#define ADMIN_BODY_MAX (1024u * 1024)

static const char s_order[] = "parleyctl app order NAME[,NAME...] | --clear";
static const char s_show[] = "parleyctl app show [--server NAME] [--admin-token T]";
static const char s_reload[] = "parleyctl app reload [--server NAME] [--admin-token T]";

/* Manifest name syntax (app_manifest.c): letters, digits, '-', '_', '.'. */
static bool
valid_app_name(const char *s, size_t n)
{
    if (n == 0 || n > APP_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* "a,b,c" (one or more arguments, each possibly comma-separated) -> JSON list; CTL_OK or usage. */
static int
parse_names(const char *const *args, size_t nargs, json_t **out)
{
    json_t *list = json_array();

    if (list == NULL)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    for (size_t a = 0; a < nargs; a++) {
        const char *p = args[a];
        for (;;) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            size_t i;
            json_t *v;
            if (!valid_app_name(p, n)) {
                json_decref(list);
                return ctl_fail(CTL_USAGE, "invalid application name '%.*s' (letters, digits, '-', '_', '.'; "
                                           "1 to %d bytes)", (int)(n > 80 ? 80 : n), p, APP_NAME_MAX);
            }
            json_array_foreach(list, i, v) {
                if (strlen(json_string_value(v)) == n && strncmp(json_string_value(v), p, n) == 0) {
                    json_decref(list);
                    return ctl_fail(CTL_USAGE, "application '%.*s' named twice", (int)n, p);
                }
            }
            if (json_array_size(list) >= APP_ORDER_MAX) {
                json_decref(list);
                return ctl_fail(CTL_USAGE, "more than %d applications", APP_ORDER_MAX);
            }
            if (json_array_append_new(list, json_stringn(p, n)) != 0) {
                json_decref(list);
                return ctl_fail(CTL_RUNTIME, "out of memory");
            }
            if (e == NULL)
                break;
            p = e + 1;
        }
    }
    *out = list;
    return CTL_OK;
}

/* Writes <val> at <key> whatever was there (create, or compare-and-swap on the revision read). */
static int
put_value(struct ctl *ctl, const char *key, const char *val)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        char *old = NULL;
        int64_t mod = 0;
        int r = ctl_etcd_get(&ctl->etcd, key, &old, &mod);
        free(old);
        if (r < 0)
            return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
        r = r == 1 ? ctl_etcd_create(&ctl->etcd, key, val) : ctl_etcd_cas(&ctl->etcd, key, val, mod);
        if (r < 0)
            return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
        if (r == 0)
            return CTL_OK;
        /* someone changed it between our read and write: read again */
    }
    return ctl_fail(CTL_RUNTIME, "%s keeps changing under us; try again", key);
}

static int
cmd_order(struct ctl *ctl, int argc, char **argv)
{
    const char *pos[APP_ORDER_MAX];
    size_t npos = 0;
    bool clear = false;
    struct ctl_opt opts[] = {{"clear", NULL, &clear}, {NULL, NULL, NULL}};
    json_t *list = NULL;
    char *val = NULL;
    int rc;

    PARSE_OPTS(ctl, argc, argv, opts, pos, 0, APP_ORDER_MAX, &npos, s_order);
    if (clear == (npos > 0))
        return ctl_fail(CTL_USAGE, "give the application names or --clear (usage: %s)", s_order);
    if (!clear && (rc = parse_names(pos, npos, &list)) != CTL_OK)
        return rc;
    if ((rc = ctl_open(ctl)) != CTL_OK)
        goto out;
    if (clear) {
        if (ctl_etcd_delete(&ctl->etcd, APPS_ORDER_KEY) < 0) {
            rc = ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
            goto out;
        }
        if (!ctl->json)
            printf("pool order cleared: every home server uses its chain file's order\n");
        goto out;
    }
    if ((val = json_dumps(list, JSON_COMPACT)) == NULL) {
        rc = ctl_fail(CTL_RUNTIME, "out of memory");
        goto out;
    }
    if ((rc = put_value(ctl, APPS_ORDER_KEY, val)) != CTL_OK)
        goto out;
    if (ctl->json) {
        json_t *o = json_pack("{s:O}", "order", list);
        if (o)
            ctl_print_json(o);
        json_decref(o);
    } else {
        printf("pool order set: %s\n", val);
    }
out:
    free(val);
    json_decref(list);
    return rc;
}

/* ---- the home servers' admin endpoints ---------------------------------------------- */

/* GET or POST <admin><path>; the JSON answer in *out (NULL + message in <err> on failure). */
static void
admin_call(const char *admin, const char *path, bool post, const char *token, json_t **out, char *err,
           size_t errlen)
{
    struct ctl_http_answer ans;
    char *url = ctl_admin_url(admin, path, NULL, NULL);
    char why[160];   /* libcurl's words: short */

    *out = NULL;
    err[0] = '\0';
    if (url == NULL) {
        snprintf(err, errlen, "out of memory");
        return;
    }
    switch (ctl_http(url, post ? "" : NULL, NULL, token, ADMIN_BODY_MAX, &ans, why, sizeof why)) {
    case CTL_HTTP_OK:
        break;
    case CTL_HTTP_UNREACHABLE:
        snprintf(err, errlen, "cannot reach %.300s: %s", url, why);
        free(url);
        return;
    default:
        snprintf(err, errlen, "%s", why);
        free(url);
        return;
    }
    if (ans.status != 200) {
        const char *msg = json_string_value(json_object_get(ans.json, "error"));

        snprintf(err, errlen, "%.300s answered HTTP %ld%s%.150s", url, ans.status, msg || ans.len ? ": " : "",
                 msg ? msg : ans.len ? ans.body : "");
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    } else if (ans.json == NULL) {
        snprintf(err, errlen, "%.300s did not answer JSON", url);
    } else {
        *out = ans.json;
        ans.json = NULL;
    }
    ctl_http_answer_free(&ans);
    free(url);
}

struct servers {
    json_t *list;               /* [{"name":..., "admin":...}] of home servers */
    const char *only;           /* --server */
};

static int
server_cb(void *arg, const char *key, const char *val, int64_t lease)
{
    struct servers *s = arg;
    const char *name = key + strlen(CTL_SERVERS_PREFIX);
    json_t *rec = json_loads(val, 0, NULL);
    const char *role = json_string_value(json_object_get(rec, "role"));
    const char *admin = json_string_value(json_object_get(rec, "admin"));
    int rc = 0;

    (void)lease;
    if ((s->only == NULL || strcmp(s->only, name) == 0) && role && strcmp(role, "homeserver") == 0)
        rc = json_array_append_new(s->list, json_pack("{s:s,s:s?}", "name", name, "admin", admin));
    json_decref(rec);
    return rc;
}

/* The home servers (all, or --server NAME) as [{"name","admin"}]; CTL_OK or an exit code. */
static int
home_servers(struct ctl *ctl, const char *only, json_t **out)
{
    struct servers s = {json_array(), only};

    if (s.list == NULL)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    if (ctl_etcd_range_each(&ctl->etcd, CTL_SERVERS_PREFIX, 1000, server_cb, &s) != 0) {
        json_decref(s.list);
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    }
    if (only && json_array_size(s.list) == 0) {
        json_decref(s.list);
        return ctl_fail(CTL_RUNTIME, "no home server named '%s' is announced", only);
    }
    *out = s.list;
    return CTL_OK;
}

static void
print_names(const json_t *list)
{
    size_t i;
    json_t *v;

    if (!json_is_array(list) || json_array_size(list) == 0) {
        printf("(none)");
        return;
    }
    json_array_foreach(list, i, v) printf("%s%s", i ? ", " : "", json_string_value(v) ? json_string_value(v) : "?");
}

/* show and reload: one admin call per home server; exit 1 when any failed. */
static int
each_server(struct ctl *ctl, int argc, char **argv, bool reload)
{
    const char *only = NULL, *token = NULL;
    struct ctl_opt opts[] = {{"server", &only, NULL}, {"admin-token", &token, NULL}, {NULL, NULL, NULL}};
    json_t *servers = NULL, *pool = NULL, *result = NULL, *srv;
    char *raw = NULL;
    size_t i;
    int rc, failed = 0;

    PARSE_OPTS(ctl, argc, argv, opts, NULL, 0, 0, NULL, reload ? s_reload : s_show);
    if (only && !ctl_valid_name(only))
        return ctl_fail(CTL_USAGE, "invalid server name '%s'", only);
    if (token == NULL)
        token = getenv("PARLEY_ADMIN_TOKEN");
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;
    rc = ctl_etcd_get(&ctl->etcd, APPS_ORDER_KEY, &raw, NULL);
    if (rc < 0)
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    pool = rc == 0 ? json_loads(raw, 0, NULL) : json_null();
    if (pool == NULL)
        pool = json_string(raw);   /* not JSON (written by hand): show it as it is */
    free(raw);
    if ((rc = home_servers(ctl, only, &servers)) != CTL_OK)
        goto out;
    result = json_pack("{s:O,s:[]}", "pool_order", pool, "servers");
    if (result == NULL) {
        rc = ctl_fail(CTL_RUNTIME, "out of memory");
        goto out;
    }
    if (!ctl->json && !reload) {
        printf("pool order: ");
        if (json_is_null(pool))
            printf("(unset: each server's chain file order)");
        else if (json_is_array(pool))
            print_names(pool);
        else
            printf("%s (not a JSON list: ignored by the servers)", json_is_string(pool) ? json_string_value(pool) : "?");
        printf("\n");
    }
    json_array_foreach(servers, i, srv) {
        const char *name = json_string_value(json_object_get(srv, "name"));
        const char *admin = json_string_value(json_object_get(srv, "admin"));
        json_t *ans = NULL, *row;
        char err[512];

        if (admin == NULL || admin[0] == '\0')
            snprintf(err, sizeof err, "announces no admin endpoint");
        else
            admin_call(admin, reload ? "api/apps/reload" : "api/apps", reload, token, &ans, err, sizeof err);
        row = json_pack("{s:s}", "server", name);
        if (ans)
            json_object_update(row, ans);
        else
            json_object_set_new(row, "error", json_string(err));
        json_array_append_new(json_object_get(result, "servers"), row);
        if (ans == NULL)
            failed++;
        if (!ctl->json) {
            if (ans == NULL) {
                printf("%s: %s\n", name, err);
            } else {
                const char *file = json_string_value(json_object_get(ans, "chain_file"));
                const char *missing = json_string_value(json_object_get(ans, "missing"));
                printf("%s: %s", name, reload ? "reloaded, order " : "order ");
                print_names(json_object_get(ans, "order"));
                printf(" (%s%s%s%s)\n", file ? file : "no chain: built-in routing",
                       json_is_array(json_object_get(ans, "pool_order")) ? ", pool order" : "",
                       missing && missing[0] ? "; not here: " : "", missing && missing[0] ? missing : "");
            }
        }
        json_decref(ans);
    }
    if (!ctl->json && json_array_size(servers) == 0)
        printf("no home server is announced\n");
    if (ctl->json)
        ctl_print_json(result);
    rc = failed ? ctl_fail(CTL_RUNTIME, "%d home server(s) failed", failed) : CTL_OK;
out:
    json_decref(result);
    json_decref(servers);
    json_decref(pool);
    return rc;
}

int
ctl_cmd_app(struct ctl *ctl, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : NULL;

    if (sub == NULL)
        return ctl_fail(CTL_USAGE, "missing app command\nusage: %s", s_order);
    if (strcmp(sub, "order") == 0)
        return cmd_order(ctl, argc - 1, argv + 1);
    if (strcmp(sub, "show") == 0)
        return each_server(ctl, argc - 1, argv + 1, false);
    if (strcmp(sub, "reload") == 0)
        return each_server(ctl, argc - 1, argv + 1, true);
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        printf("usage:\n  %s\n  %s\n  %s\n", s_order, s_show, s_reload);
        return CTL_OK;
    }
    return ctl_fail(CTL_USAGE, "unknown app command '%s'\nusage: %s", sub, s_order);
}
