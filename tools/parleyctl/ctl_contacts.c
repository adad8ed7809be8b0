/*
 * parleyctl contacts: a user's contact list and groups, edited through the admin
 * endpoint of the user's home server (GET/POST <admin>/api/contacts?user=USER,
 * homeserver/us_admin.h; ctl_admin_call, ctl_admin.c).
 * A change goes the same way as a SIP SERVICE: new version, NOTIFY to the list's
 * subscribers.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl.h"

#define MAX_GROUPS_ARG 100     /* --group at most this many times (a list has at most 100) */

static const char s_contacts[] =
    "parleyctl contacts USER@DOMAIN list\n"
    "       parleyctl contacts USER@DOMAIN add CONTACT [--name NAME] [--group G ...]\n"
    "       parleyctl contacts USER@DOMAIN remove CONTACT\n"
    "       parleyctl contacts USER@DOMAIN group-add G\n"
    "       parleyctl contacts USER@DOMAIN group-rename OLD NEW\n"
    "       parleyctl contacts USER@DOMAIN group-remove G\n"
    "  (CONTACT = user@domain; a group is named by its name or id;\n"
    "   --admin-token T or PARLEY_ADMIN_TOKEN for an endpoint with a token)";

/* ------------------------------------------------------------------ contacts */

/* "sip:Bob@Example.com" or "bob@example.com" -> "bob@example.com"; 0 or -1. */
static int
norm_contact(const char *in, char *out, size_t len)
{
    if (strncasecmp(in, "sip:", 4) == 0)
        in += 4;
    return ctl_normalize_user(in, out, len);
}

static bool
valid_group(const char *g)
{
    return g[0] != '\0' && ctl_valid_text(g, 128);
}

/* The names of the groups in <row>.<key> ([{"id","name"}]), comma-separated, into <buf>. */
static const char *
group_names(const json_t *row, const char *key, char *buf, size_t len)
{
    const json_t *arr = json_object_get(row, key);
    size_t i;
    json_t *g;

    buf[0] = '\0';
    json_array_foreach(arr, i, g) {
        const char *n = json_string_value(json_object_get(g, "name"));

        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? ", " : "", n ? n : "?");
    }
    return buf[0] ? buf : "-";
}

/* <row>.<key>, "-" when unset or empty */
static const char *
or_dash(const json_t *row, const char *key, char *buf, size_t len)
{
    const char *n = json_string_value(json_object_get(row, key));

    (void)buf;
    (void)len;
    return n && *n ? n : "-";
}

static void
print_list(const char *user, const json_t *j)
{
    static const struct ctl_col gcols[] = {{"ID", 6, "id", NULL}, {"GROUP", 0, "name", NULL}};
    static const struct ctl_col ccols[] = {
        {"CONTACT", 40, "contact", NULL}, {"NAME", 24, "name", or_dash}, {"GROUPS", 0, "groups", group_names}};
    const json_t *groups = json_object_get(j, "groups"), *contacts = json_object_get(j, "contacts");

    printf("%s: version %lld, %zu contact(s), %zu group(s)\n", user,
           (long long)json_integer_value(json_object_get(j, "version")), json_array_size(contacts),
           json_array_size(groups));
    if (json_array_size(groups))
        ctl_print_table(groups, gcols, 2);
    if (json_array_size(contacts))
        ctl_print_table(contacts, ccols, 3);
}

int
ctl_cmd_contacts(struct ctl *ctl, int argc, char **argv)
{
    const char *pos[4] = {0}, *name = NULL, *token = NULL, *groups[MAX_GROUPS_ARG];
    struct ctl_opt opts[] = {{"name", &name, NULL}, {"admin-token", &token, NULL}, {NULL, NULL, NULL}};
    char **rest = NULL;
    char user[260], contact[260], done[600];
    size_t np = 0, ng = 0;
    int nrest = 0, rc;
    json_t *op = NULL, *res = NULL;
    const char *sub;

    /* --group may repeat: take those out, the rest goes to the common parser */
    if ((rest = calloc((size_t)argc + 1, sizeof *rest)) == NULL)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    for (int i = 0; i < argc; i++) {
        const char *g = NULL;

        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                rest[nrest++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--group") == 0) {
            if (i + 1 >= argc) {
                free(rest);
                return ctl_fail(CTL_USAGE, "option --group needs a value\nusage: %s", s_contacts);
            }
            g = argv[++i];
        } else if (strncmp(argv[i], "--group=", 8) == 0) {
            g = argv[i] + 8;
        }
        if (g == NULL) {
            rest[nrest++] = argv[i];
            continue;
        }
        if (ng == MAX_GROUPS_ARG) {
            free(rest);
            return ctl_fail(CTL_USAGE, "more than %d --group options", MAX_GROUPS_ARG);
        }
        groups[ng++] = g;
    }
    rc = ctl_parse_opts(ctl, nrest, rest, opts, pos, 0, 4, &np, s_contacts);
    free(rest);
    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    if (np < 2)
        return ctl_fail(CTL_USAGE, "missing argument\nusage: %s", s_contacts);
    if (ctl_normalize_user(pos[0], user, sizeof(user)) != 0)
        return ctl_fail(CTL_USAGE, "invalid user '%s' (want user@domain)", pos[0]);
    if (token == NULL)
        token = getenv("PARLEY_ADMIN_TOKEN");
    sub = pos[1];
    if ((strcmp(sub, "add") != 0) && (name != NULL || ng != 0))
        return ctl_fail(CTL_USAGE, "--name and --group go with 'add' only");
    if (strcmp(sub, "list") == 0) {
        if (np != 2)
            return ctl_fail(CTL_USAGE, "unexpected argument '%s'\nusage: %s", pos[2], s_contacts);
        if ((rc = ctl_admin_call(ctl, user, token, "GET", "/api/contacts", NULL, &res)) != CTL_OK)
            return rc;
        if (ctl->json)
            ctl_print_json(res);
        else
            print_list(user, res);
        json_decref(res);
        return CTL_OK;
    }
    if (strcmp(sub, "add") == 0 || strcmp(sub, "remove") == 0) {
        if (np != 3)
            return ctl_fail(CTL_USAGE, np < 3 ? "missing CONTACT\nusage: %s" : "too many arguments\nusage: %s",
                            s_contacts);
        if (norm_contact(pos[2], contact, sizeof(contact)) != 0)
            return ctl_fail(CTL_USAGE, "invalid contact '%s' (want user@domain)", pos[2]);
        if (strcmp(contact, user) == 0)
            return ctl_fail(CTL_USAGE, "%s cannot be in its own contact list", user);
        if (name && !ctl_valid_text(name, 256))
            return ctl_fail(CTL_USAGE, "invalid --name (printable, at most 256 bytes)");
        op = json_pack("{s:s,s:s}", "op", sub, "contact", contact);
        if (op && name)
            json_object_set_new(op, "name", json_string(name));
        if (op && ng) {
            json_t *ga = json_array();

            for (size_t i = 0; i < ng; i++) {
                if (!valid_group(groups[i])) {
                    json_decref(ga);
                    json_decref(op);
                    return ctl_fail(CTL_USAGE, "invalid group '%s' (printable, 1 to 128 bytes)", groups[i]);
                }
                json_array_append_new(ga, json_string(groups[i]));
            }
            json_object_set_new(op, "groups", ga);
        }
        snprintf(done, sizeof(done), "%s %s", sub[0] == 'a' ? "added" : "removed", contact);
    } else if (strcmp(sub, "group-add") == 0 || strcmp(sub, "group-remove") == 0) {
        if (np != 3)
            return ctl_fail(CTL_USAGE, np < 3 ? "missing group\nusage: %s" : "too many arguments\nusage: %s",
                            s_contacts);
        if (!valid_group(pos[2]))
            return ctl_fail(CTL_USAGE, "invalid group '%s' (printable, 1 to 128 bytes)", pos[2]);
        op = json_pack("{s:s,s:s}", "op", sub, "group", pos[2]);
        snprintf(done, sizeof(done), "%s group %.200s", strcmp(sub, "group-add") == 0 ? "added" : "removed",
                 pos[2]);
    } else if (strcmp(sub, "group-rename") == 0) {
        if (np != 4)
            return ctl_fail(CTL_USAGE, "group-rename needs OLD and NEW\nusage: %s", s_contacts);
        if (!valid_group(pos[2]) || !valid_group(pos[3]))
            return ctl_fail(CTL_USAGE, "invalid group name (printable, 1 to 128 bytes)");
        op = json_pack("{s:s,s:s,s:s}", "op", sub, "group", pos[2], "name", pos[3]);
        snprintf(done, sizeof(done), "renamed group %.200s to %.200s", pos[2], pos[3]);
    } else {
        return ctl_fail(CTL_USAGE, "unknown contacts command '%s'\nusage: %s", sub, s_contacts);
    }
    if (op == NULL)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    {
        json_t *body = json_pack("{s:[o]}", "ops", op);

        if (body == NULL)
            return ctl_fail(CTL_RUNTIME, "out of memory");
        rc = ctl_admin_call(ctl, user, token, "POST", "/api/contacts", body, &res);
        json_decref(body);
    }
    if (rc != CTL_OK)
        return rc;
    if (ctl->json)
        ctl_print_json(res);
    else
        printf("%s: %s (list version %lld)\n", user, done,
               (long long)json_integer_value(json_object_get(res, "version")));
    json_decref(res);
    return CTL_OK;
}
