/*
 * parleyctl server list / registrations: the servers announced in
 * /parley/servers/<name> (under leases) and a user's registrations, fetched from
 * its home server's admin endpoint (GET <admin>/api/registrations?aor=USER).
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

static const char s_list[] = "parleyctl server list";
static const char s_regs[] = "parleyctl registrations USER@DOMAIN";

struct list_state {
    json_t *all;
};

static int
list_cb(void *arg, const char *key, const char *val, int64_t lease)
{
    struct list_state *st = arg;
    json_t *rec = json_loads(val, 0, NULL);
    json_t *o = json_pack("{s:s}", "name", key + strlen(CTL_SERVERS_PREFIX));

    if (o == NULL) {
        json_decref(rec);
        return -1;
    }
    if (json_is_object(rec))
        json_object_update(o, rec);
    else
        fprintf(stderr, "parleyctl: warning: record %s is not a JSON object\n", key);
    json_decref(rec);
    json_object_set_new(o, "lease", json_integer(lease));
    return json_array_append_new(st->all, o);
}

static int
cmd_list(struct ctl *ctl, int argc, char **argv)
{
    struct list_state st;
    json_t *o;
    size_t i;
    int rc;

    PARSE_OPTS(ctl, argc, argv, NULL, NULL, 0, 0, NULL, s_list);
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;
    st.all = json_array();
    if (st.all == NULL)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    if (ctl_etcd_range_each(&ctl->etcd, CTL_SERVERS_PREFIX, 1000, list_cb, &st) != 0) {
        json_decref(st.all);
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    }
    /* TTL left on each server's lease (a dead server disappears when it reaches 0) */
    json_array_foreach(st.all, i, o) {
        json_int_t lease = json_integer_value(json_object_get(o, "lease"));
        int64_t ttl = -1;

        if (lease != 0) {
            ttl = ctl_etcd_lease_ttl(&ctl->etcd, lease);
            if (ttl == -2) {
                json_decref(st.all);
                return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
            }
        }
        json_object_set_new(o, "ttl", lease != 0 ? json_integer(ttl) : json_null());
    }
    if (ctl->json) {
        ctl_print_json(st.all);
    } else if (json_array_size(st.all) == 0) {
        fprintf(stderr, "parleyctl: no servers\n");
    } else {
        printf("%-20s %-11s %-40s %s\n", "NAME", "ROLE", "ADDRESS", "TTL");
        json_array_foreach(st.all, i, o) {
            const char *role = json_string_value(json_object_get(o, "role"));
            const char *addr = json_string_value(json_object_get(o, "address"));
            json_t *ttl = json_object_get(o, "ttl");
            char t[32];

            if (json_is_integer(ttl) && json_integer_value(ttl) >= 0)
                snprintf(t, sizeof(t), "%llds", (long long)json_integer_value(ttl));
            else
                snprintf(t, sizeof(t), "%s", json_is_null(ttl) ? "static" : "expired");
            printf("%-20s %-11s %-40s %s\n", json_string_value(json_object_get(o, "name")),
                   role ? role : "?", addr ? addr : "?", t);
        }
    }
    json_decref(st.all);
    return CTL_OK;
}

/* <row>.<key> as text (a number too), "-" when unset */
static const char *
reg_field(const json_t *row, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(row, key);
    const char *s = json_string_value(v);

    if (s == NULL && json_is_integer(v)) {
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
        s = buf;
    }
    return s ? s : "-";
}

static void
print_regs_table(const json_t *j)
{
    const json_t *arr = json_is_array(j) ? j : json_object_get(j, "registrations");
    static const struct ctl_col cols[] = {
        {"CONTACT", 50, "contact", reg_field},   {"EXPIRES", 8, "expires", reg_field},
        {"EPID", 12, "epid", reg_field},         {"INSTANCE", 40, "instance", reg_field},
        {"USER-AGENT", 0, "user_agent", reg_field}};

    if (!json_is_array(arr)) {
        ctl_print_json(j);   /* unknown shape: show it as it came */
        return;
    }
    if (json_array_size(arr) == 0) {
        printf("no registrations\n");
        return;
    }
    ctl_print_table(arr, cols, sizeof(cols) / sizeof(cols[0]));
}

int
ctl_cmd_registrations(struct ctl *ctl, int argc, char **argv)
{
    const char *pos[1];
    char user[260], err[256];
    char *home = NULL, *admin = NULL, *url = NULL;
    struct ctl_http_answer ans = {0};
    int rc;

    PARSE_OPTS(ctl, argc, argv, NULL, pos, 1, 1, NULL, s_regs);
    if (ctl_normalize_user(pos[0], user, sizeof(user)) != 0)
        return ctl_fail(CTL_USAGE, "invalid user '%s' (want user@domain)", pos[0]);
    if ((rc = ctl_user_admin(ctl, user, "user", &home, &admin)) != CTL_OK)
        return rc;
    rc = CTL_RUNTIME;
    if ((url = ctl_admin_url(admin, "api/registrations", "aor", user)) == NULL) {
        ctl_fail(CTL_RUNTIME, "out of memory");
        goto out;
    }
    switch (ctl_http(url, NULL, NULL, NULL, CTL_ADMIN_BODY_MAX, &ans, err, sizeof err)) {
    case CTL_HTTP_OK:
        break;
    case CTL_HTTP_UNREACHABLE:
        ctl_fail(CTL_RUNTIME, "cannot reach the admin endpoint of home server %s (%s): %s", home, url, err);
        goto out;
    default:
        ctl_fail(CTL_RUNTIME, "%s", err);
        goto out;
    }
    if (ans.status != 200) {
        ctl_fail(CTL_RUNTIME, "%s answered HTTP %ld%s%.200s", url, ans.status, ans.len ? ": " : "",
                 ans.len ? ans.body : "");
        goto out;
    }
    if (ans.json == NULL) {
        ctl_fail(CTL_RUNTIME, "%s did not answer JSON", url);
        goto out;
    }
    if (ctl->json)
        ctl_print_json(ans.json);
    else
        print_regs_table(ans.json);
    rc = CTL_OK;
out:
    ctl_http_answer_free(&ans);
    free(url);
    free(home);
    free(admin);
    return rc;
}

int
ctl_cmd_server(struct ctl *ctl, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : NULL;

    if (sub == NULL)
        return ctl_fail(CTL_USAGE, "missing server command\nusage: %s", s_list);
    if (strcmp(sub, "list") == 0)
        return cmd_list(ctl, argc - 1, argv + 1);
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        printf("usage:\n  %s\n  %s\n", s_list, s_regs);
        return CTL_OK;
    }
    return ctl_fail(CTL_USAGE, "unknown server command '%s'\nusage: %s", sub, s_list);
}
