/*
 * parleyctl route ...: pool-wide static routes in /parley/routes/<name>
 * (design.md §2 protocol stack step 3, "TreatAllConnectionsAsServer").
 */
#include <arpa/inet.h>
#include <ctype.h>
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

static const char r_add[] = "parleyctl route add NAME --match tel|domain:NAME|prefix:DIGITS "
                            "--next-hop URI [--treat-as-server] [--allow-from IP[/LEN],...]";
static const char r_remove[] = "parleyctl route remove NAME";
static const char r_list[] = "parleyctl route list";

/* "tel" | "domain:<host>" | "prefix:<digits>" */
static bool
valid_match(const char *m)
{
    if (strcmp(m, "tel") == 0)
        return true;
    if (strncmp(m, "domain:", 7) == 0) {
        const char *d = m + 7;

        if (*d == '\0' || strlen(d) > 253)
            return false;
        for (; *d; d++)
            if (!isalnum((unsigned char)*d) && *d != '.' && *d != '-')
                return false;
        return true;
    }
    if (strncmp(m, "prefix:", 7) == 0) {
        const char *d = m + 7;

        if (*d == '+')
            d++;
        if (*d == '\0' || strlen(d) > 32)
            return false;
        for (; *d; d++)
            if (!isdigit((unsigned char)*d))
                return false;
        return true;
    }
    return false;
}

static bool
valid_next_hop(const char *u)
{
    if (strncmp(u, "sip:", 4) != 0 && strncmp(u, "sips:", 5) != 0)
        return false;
    if (u[strncmp(u, "sip:", 4) == 0 ? 4 : 5] == '\0')
        return false;
    for (; *u; u++)
        if ((unsigned char)*u <= 0x20 || *u == 0x7f || *u == '"' || *u == '<' || *u == '>')
            return false;
    return true;
}

/* One IPv4/IPv6 address, optionally with a /prefix-length. */
static bool
valid_ip(const char *s)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    unsigned char addr[16];
    int maxlen;

    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1)
        maxlen = 32;
    else if (inet_pton(AF_INET6, buf, addr) == 1)
        maxlen = 128;
    else
        return false;
    if (slash != NULL) {
        char *end;
        long len = strtol(slash + 1, &end, 10);

        if (slash[1] == '\0' || *end != '\0' || len < 0 || len > maxlen)
            return false;
    }
    return true;
}

static int
cmd_add(struct ctl *ctl, int argc, char **argv)
{
    const char *pos[1], *match = NULL, *hop = NULL, *allow = NULL;
    bool server = false;
    const struct ctl_opt opts[] = {
        {"match", &match, NULL},
        {"next-hop", &hop, NULL},
        {"allow-from", &allow, NULL},
        {"treat-as-server", NULL, &server},
        {NULL, NULL, NULL},
    };
    char key[sizeof(CTL_ROUTES_PREFIX) + 64];
    json_t *rec = NULL, *list = NULL;
    char *val = NULL, *copy = NULL;
    int rc, r;

    PARSE_OPTS(ctl, argc, argv, opts, pos, 1, 1, NULL, r_add);
    if (!ctl_valid_name(pos[0]))
        return ctl_fail(CTL_USAGE, "invalid route name '%s' ([A-Za-z0-9._-], 1..64)", pos[0]);
    if (match == NULL || hop == NULL)
        return ctl_fail(CTL_USAGE, "--match and --next-hop are required\nusage: %s", r_add);
    if (!valid_match(match))
        return ctl_fail(CTL_USAGE, "invalid --match '%s' (tel, domain:NAME or prefix:DIGITS)",
                        match);
    if (!valid_next_hop(hop))
        return ctl_fail(CTL_USAGE, "invalid --next-hop '%s' (want a sip: or sips: URI)", hop);
    list = json_array();
    if (list == NULL)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    if (allow != NULL) {
        char *save = NULL, *tok;

        copy = strdup(allow);
        if (copy == NULL) {
            rc = ctl_fail(CTL_RUNTIME, "out of memory");
            goto out;
        }
        for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (!valid_ip(tok)) {
                rc = ctl_fail(CTL_USAGE, "invalid address '%s' in --allow-from", tok);
                goto out;
            }
            json_array_append_new(list, json_string(tok));
        }
        if (json_array_size(list) == 0) {
            rc = ctl_fail(CTL_USAGE, "empty --allow-from");
            goto out;
        }
    }
    if ((rc = ctl_open(ctl)) != CTL_OK)
        goto out;
    rc = CTL_RUNTIME;
    rec = json_pack("{s:s,s:s,s:b,s:O}", "match", match, "next_hop", hop, "treat_as_server",
                    server, "allow_from", list);
    val = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (val == NULL) {
        ctl_fail(CTL_RUNTIME, "out of memory");
        goto out;
    }
    snprintf(key, sizeof(key), "%s%s", CTL_ROUTES_PREFIX, pos[0]);
    r = ctl_etcd_create(&ctl->etcd, key, val);
    if (r < 0) {
        ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
        goto out;
    }
    if (r == 1) {
        ctl_fail(CTL_RUNTIME, "route %s already exists (remove it first)", pos[0]);
        goto out;
    }
    if (ctl->json) {
        json_t *o = json_pack("{s:b,s:s,s:s}", "ok", 1, "route", pos[0], "action", "added");

        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("route %s added\n", pos[0]);
    }
    rc = CTL_OK;
out:
    free(copy);
    free(val);
    json_decref(rec);
    json_decref(list);
    return rc;
}

static int
cmd_remove(struct ctl *ctl, int argc, char **argv)
{
    const char *pos[1];
    char key[sizeof(CTL_ROUTES_PREFIX) + 64];
    int rc, r;

    PARSE_OPTS(ctl, argc, argv, NULL, pos, 1, 1, NULL, r_remove);
    if (!ctl_valid_name(pos[0]))
        return ctl_fail(CTL_USAGE, "invalid route name '%s'", pos[0]);
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;
    snprintf(key, sizeof(key), "%s%s", CTL_ROUTES_PREFIX, pos[0]);
    r = ctl_etcd_delete(&ctl->etcd, key);
    if (r < 0)
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    if (r == 1)
        return ctl_fail(CTL_RUNTIME, "no such route %s", pos[0]);
    if (ctl->json) {
        json_t *o = json_pack("{s:b,s:s,s:s}", "ok", 1, "route", pos[0], "action", "removed");

        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("route %s removed\n", pos[0]);
    }
    return CTL_OK;
}

struct list_state {
    json_t *all;
};

static int
list_cb(void *arg, const char *key, const char *val, int64_t lease)
{
    struct list_state *st = arg;
    json_t *rec = json_loads(val, 0, NULL);
    json_t *o;

    (void)lease;
    if (!json_is_object(rec)) {
        fprintf(stderr, "parleyctl: warning: record %s is not a JSON object; skipped\n", key);
        json_decref(rec);
        return 0;
    }
    o = json_pack("{s:s}", "name", key + strlen(CTL_ROUTES_PREFIX));
    if (o == NULL) {
        json_decref(rec);
        return -1;
    }
    json_object_update(o, rec);
    json_decref(rec);
    return json_array_append_new(st->all, o);
}

static int
cmd_list(struct ctl *ctl, int argc, char **argv)
{
    struct list_state st;
    size_t i;
    json_t *o;
    int rc;

    PARSE_OPTS(ctl, argc, argv, NULL, NULL, 0, 0, NULL, r_list);
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;
    st.all = json_array();
    if (st.all == NULL)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    if (ctl_etcd_range_each(&ctl->etcd, CTL_ROUTES_PREFIX, 1000, list_cb, &st) != 0) {
        json_decref(st.all);
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    }
    if (ctl->json) {
        ctl_print_json(st.all);
    } else if (json_array_size(st.all) == 0) {
        fprintf(stderr, "parleyctl: no routes\n");
    } else {
        printf("%-20s %-24s %-40s %-6s %s\n", "NAME", "MATCH", "NEXT-HOP", "SERVER", "ALLOW-FROM");
        json_array_foreach(st.all, i, o) {
            const char *m = json_string_value(json_object_get(o, "match"));
            const char *h = json_string_value(json_object_get(o, "next_hop"));
            json_t *af = json_object_get(o, "allow_from"), *ip;
            size_t j;

            printf("%-20s %-24s %-40s %-6s ", json_string_value(json_object_get(o, "name")),
                   m ? m : "?", h ? h : "?",
                   json_is_true(json_object_get(o, "treat_as_server")) ? "yes" : "no");
            if (json_array_size(af) == 0)
                fputs("-", stdout);
            json_array_foreach(af, j, ip) {
                printf("%s%s", j ? "," : "", json_string_value(ip) ? json_string_value(ip) : "?");
            }
            fputc('\n', stdout);
        }
    }
    json_decref(st.all);
    return CTL_OK;
}

int
ctl_cmd_route(struct ctl *ctl, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : NULL;

    if (sub == NULL)
        return ctl_fail(CTL_USAGE, "missing route command\nusage: parleyctl route add|remove|list");
    argc--;
    argv++;
    if (strcmp(sub, "add") == 0)
        return cmd_add(ctl, argc, argv);
    if (strcmp(sub, "remove") == 0)
        return cmd_remove(ctl, argc, argv);
    if (strcmp(sub, "list") == 0)
        return cmd_list(ctl, argc, argv);
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        printf("usage:\n  %s\n  %s\n  %s\n", r_add, r_remove, r_list);
        return CTL_OK;
    }
    return ctl_fail(CTL_USAGE, "unknown route command '%s'\nusage: parleyctl route add|remove|list",
                    sub);
}
