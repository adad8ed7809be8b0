/*
 * parleyctl acl: a user's allow/block list, edited through the admin endpoint of the
 * user's home server (GET/POST <admin>/api/acl?user=USER, homeserver/us_admin.h). An
 * entry is a user (user@domain) or a whole domain, as in the SIP SERVICE document
 * (docs/contact-list.md); a block applies at once, to existing subscriptions too.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl.h"

static const char s_acl[] =
    "parleyctl acl USER@DOMAIN list\n"
    "       parleyctl acl USER@DOMAIN allow|block|remove ENTRY\n"
    "  (ENTRY = user@domain or a domain; --admin-token T or PARLEY_ADMIN_TOKEN for an\n"
    "   endpoint with a token)";

/* user@domain (a "sip:" prefix is accepted) or a domain name, lowercased; 0 or -1. */
static int
norm_entry(const char *in, char *out, size_t len)
{
    size_t n;

    if (strncasecmp(in, "sip:", 4) == 0)
        in += 4;
    if (strchr(in, '@'))
        return ctl_normalize_user(in, out, len);
    n = strlen(in);
    if (n == 0 || n > 253 || n + 1 > len || in[0] == '.' || in[0] == '-' || in[n - 1] == '.')
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];

        if (!isalnum(c) && c != '.' && c != '-')
            return -1;
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    return 0;
}

static void
print_acl(const char *user, const json_t *j)
{
    static const struct ctl_col cols[] = {
        {"ACTION", 6, "action", NULL}, {"TYPE", 7, "type", NULL}, {"ENTRY", 0, "entry", NULL}};
    const json_t *entries = json_object_get(j, "entries");

    printf("%s: version %lld, %zu entr%s\n", user, (long long)json_integer_value(json_object_get(j, "version")),
           json_array_size(entries), json_array_size(entries) == 1 ? "y" : "ies");
    if (json_array_size(entries) == 0)
        return;
    ctl_print_table(entries, cols, 3);
}

int
ctl_cmd_acl(struct ctl *ctl, int argc, char **argv)
{
    const char *pos[3] = {0}, *token = NULL, *sub;
    struct ctl_opt opts[] = {{"admin-token", &token, NULL}, {NULL, NULL, NULL}};
    char user[260], entry[260];
    size_t np = 0;
    json_t *body, *res = NULL;
    int rc;

    rc = ctl_parse_opts(ctl, argc, argv, opts, pos, 2, 3, &np, s_acl);
    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    if (ctl_normalize_user(pos[0], user, sizeof(user)) != 0)
        return ctl_fail(CTL_USAGE, "invalid user '%s' (want user@domain)", pos[0]);
    if (token == NULL)
        token = getenv("PARLEY_ADMIN_TOKEN");
    sub = pos[1];
    if (strcmp(sub, "list") == 0) {
        if (np != 2)
            return ctl_fail(CTL_USAGE, "unexpected argument '%s'\nusage: %s", pos[2], s_acl);
        if ((rc = ctl_admin_call(ctl, user, token, "GET", "/api/acl", NULL, &res)) != CTL_OK)
            return rc;
        if (ctl->json)
            ctl_print_json(res);
        else
            print_acl(user, res);
        json_decref(res);
        return CTL_OK;
    }
    if (strcmp(sub, "allow") != 0 && strcmp(sub, "block") != 0 && strcmp(sub, "remove") != 0)
        return ctl_fail(CTL_USAGE, "unknown acl command '%s'\nusage: %s", sub, s_acl);
    if (np != 3)
        return ctl_fail(CTL_USAGE, "missing ENTRY\nusage: %s", s_acl);
    if (norm_entry(pos[2], entry, sizeof(entry)) != 0)
        return ctl_fail(CTL_USAGE, "invalid entry '%s' (want user@domain or a domain)", pos[2]);
    body = json_pack("{s:[{s:s,s:s}]}", "ops", "op", sub, "entry", entry);
    if (body == NULL)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    rc = ctl_admin_call(ctl, user, token, "POST", "/api/acl", body, &res);
    json_decref(body);
    if (rc != CTL_OK)
        return rc;
    if (ctl->json)
        ctl_print_json(res);
    else
        printf("%s: %s %s (list version %lld)\n", user,
               sub[0] == 'r' ? "removed" : sub[0] == 'a' ? "allowed" : "blocked", entry,
               (long long)json_integer_value(json_object_get(res, "version")));
    json_decref(res);
    return CTL_OK;
}
