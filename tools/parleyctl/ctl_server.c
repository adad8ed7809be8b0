/*
 * parleyctl server list / registrations: the servers announced in
 * /parley/servers/<name> (under leases) and a user's registrations, fetched from
 * its home server's admin endpoint (GET <admin>/api/registrations?aor=USER).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ctl.h"

#define PARSE_OPTS(...)                                                                      \
    do {                                                                                     \
        int prc_ = ctl_parse_opts(__VA_ARGS__);                                              \
        if (prc_ != CTL_OK)                                                                  \
            return prc_ < 0 ? CTL_OK : prc_;                                                 \
    } while (0)

#define ADMIN_BODY_MAX (16u * 1024 * 1024)

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

struct body {
    char *p;
    size_t n;
};

static size_t
on_body(char *d, size_t sz, size_t nm, void *arg)
{
    struct body *b = arg;
    size_t n = sz * nm;
    char *np;

    if (b->n + n > ADMIN_BODY_MAX)
        return 0;
    np = realloc(b->p, b->n + n + 1);
    if (np == NULL)
        return 0;
    b->p = np;
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* Looks up <field> of a JSON record at <key>; CTL_OK with a malloc'ed *out. */
static int
get_field(struct ctl *ctl, const char *key, const char *field, const char *what, char **out)
{
    char *val = NULL;
    json_t *rec;
    const char *s;
    int r = ctl_etcd_get(&ctl->etcd, key, &val, NULL);

    *out = NULL;
    if (r < 0)
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    if (r == 1)
        return ctl_fail(CTL_RUNTIME, "no such %s", what);
    rec = json_loads(val, 0, NULL);
    free(val);
    s = json_string_value(json_object_get(rec, field));
    if (s == NULL || *s == '\0') {
        json_decref(rec);
        return ctl_fail(CTL_RUNTIME, "%s has no \"%s\"", what, field);
    }
    *out = strdup(s);
    json_decref(rec);
    return *out ? CTL_OK : ctl_fail(CTL_RUNTIME, "out of memory");
}

static void
print_regs_table(const json_t *j)
{
    const json_t *arr = json_is_array(j) ? j : json_object_get(j, "registrations");
    static const char *const cols[] = {"contact", "expires", "epid", "instance", "user_agent"};
    size_t i;
    json_t *r;

    if (!json_is_array(arr)) {
        ctl_print_json(j);   /* unknown shape: show it as it came */
        return;
    }
    if (json_array_size(arr) == 0) {
        printf("no registrations\n");
        return;
    }
    printf("%-50s %-8s %-12s %-40s %s\n", "CONTACT", "EXPIRES", "EPID", "INSTANCE", "USER-AGENT");
    json_array_foreach(arr, i, r) {
        for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) {
            json_t *v = json_object_get(r, cols[c]);
            char buf[64];
            const char *s = json_string_value(v);

            if (s == NULL && json_is_integer(v)) {
                snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
                s = buf;
            }
            printf(c == 0 ? "%-50s" : c == 1 ? " %-8s" : c == 2 ? " %-12s" : c == 3 ? " %-40s" : " %s",
                   s ? s : "-");
        }
        fputc('\n', stdout);
    }
}

int
ctl_cmd_registrations(struct ctl *ctl, int argc, char **argv)
{
    const char *pos[1];
    char user[260], key[300];
    char *home = NULL, *admin = NULL, *aor = NULL, *url = NULL;
    struct body b = {0};
    CURL *c = NULL;
    CURLcode cr;
    long status = 0;
    json_t *j = NULL;
    int rc;

    PARSE_OPTS(ctl, argc, argv, NULL, pos, 1, 1, NULL, s_regs);
    if (ctl_normalize_user(pos[0], user, sizeof(user)) != 0)
        return ctl_fail(CTL_USAGE, "invalid user '%s' (want user@domain)", pos[0]);
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;
    snprintf(key, sizeof(key), "%s%s", CTL_USERS_PREFIX, user);
    if ((rc = get_field(ctl, key, "home", "user", &home)) != CTL_OK)
        goto out;
    if (!ctl_valid_name(home)) {
        rc = ctl_fail(CTL_RUNTIME, "user %s has an invalid home '%s'", user, home);
        goto out;
    }
    snprintf(key, sizeof(key), "%s%s", CTL_SERVERS_PREFIX, home);
    {
        char what[512];

        snprintf(what, sizeof(what), "server '%s' (home of %s) in the directory", home, user);
        if ((rc = get_field(ctl, key, "admin", what, &admin)) != CTL_OK)
            goto out;
    }
    rc = CTL_RUNTIME;
    c = curl_easy_init();
    if (c == NULL) {
        ctl_fail(CTL_RUNTIME, "curl_easy_init failed");
        goto out;
    }
    aor = curl_easy_escape(c, user, 0);
    if (aor == NULL) {
        ctl_fail(CTL_RUNTIME, "out of memory");
        goto out;
    }
    {
        size_t usz = strlen(admin) + strlen(aor) + 64;

        url = malloc(usz);
        if (url == NULL) {
            ctl_fail(CTL_RUNTIME, "out of memory");
            goto out;
        }
        snprintf(url, usz, "%s%sapi/registrations?aor=%s", admin,
                 admin[strlen(admin) - 1] == '/' ? "" : "/", aor);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        ctl_fail(CTL_RUNTIME, "cannot reach the admin endpoint of home server %s (%s): %s", home,
                 url, curl_easy_strerror(cr));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        ctl_fail(CTL_RUNTIME, "%s answered HTTP %ld%s%.200s", url, status, b.n ? ": " : "",
                 b.n ? b.p : "");
        goto out;
    }
    j = json_loadb(b.p ? b.p : "", b.n, 0, NULL);
    if (j == NULL) {
        ctl_fail(CTL_RUNTIME, "%s did not answer JSON", url);
        goto out;
    }
    if (ctl->json)
        ctl_print_json(j);
    else
        print_regs_table(j);
    rc = CTL_OK;
out:
    json_decref(j);
    free(b.p);
    free(url);
    curl_free(aor);
    if (c != NULL)
        curl_easy_cleanup(c);
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
