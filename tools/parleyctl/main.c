/*
 * parleyctl: the administrator's command line over the directory (etcd) and the
 * servers' admin endpoints. Reference: docs/parleyctl.md.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ctl.h"

#define DEFAULT_ETCD "http://127.0.0.1:2379"

static const char usage_top[] =
    "usage: parleyctl [--etcd URL[,URL...]] [--json] COMMAND ...\n"
    "\n"
    "Users:\n"
    "  user add USER@DOMAIN (--password P | --password-stdin) --home NAME\n"
    "           [--display TEXT] [--realm REALM] [--disabled]\n"
    "  user remove USER@DOMAIN\n"
    "  user enable|disable USER@DOMAIN\n"
    "  user passwd USER@DOMAIN (--password P | --password-stdin)\n"
    "  user move USER@DOMAIN --home NAME [--force]\n"
    "  user show USER@DOMAIN\n"
    "  user list [--domain D] [--home H]\n"
    "  user import FILE.csv        (user@domain,password,home[,display])\n"
    "Static routes:\n"
    "  route add NAME --match tel|domain:D|prefix:DIGITS --next-hop URI\n"
    "            [--treat-as-server] [--allow-from IP,...]\n"
    "  route remove NAME\n"
    "  route list\n"
    "Applications (the home servers' chain, design §4):\n"
    "  app order NAME[,NAME...] | --clear   pool-wide chain order (/parley/apps/order)\n"
    "  app show [--server NAME]             pool order and each home server's chain\n"
    "  app reload [--server NAME]           home servers re-read their chain files\n"
    "Servers:\n"
    "  server list\n"
    "  registrations USER@DOMAIN\n"
    "Contact lists and allow/block lists (through the user's home server):\n"
    "  contacts USER@DOMAIN list | add CONTACT [--name N] [--group G ...] | remove CONTACT\n"
    "  contacts USER@DOMAIN group-add G | group-rename OLD NEW | group-remove G\n"
    "  acl USER@DOMAIN list | allow ENTRY | block ENTRY | remove ENTRY\n"
    "\n"
    "Global options: --etcd URL[,URL...] (or PARLEY_ETCD; default " DEFAULT_ETCD "),\n"
    "  --json (machine-readable output), --help (also after any command).\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 usage or bad input.\n";

int
ctl_fail(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("parleyctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

void
ctl_print_json(const json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

void
ctl_print_table(const json_t *rows, const struct ctl_col *cols, size_t ncols)
{
    size_t i;
    json_t *r;
    char buf[2048];

    for (size_t c = 0; c < ncols; c++)
        printf("%s%-*s", c ? " " : "", c + 1 < ncols ? cols[c].width : 0, cols[c].title);
    fputc('\n', stdout);
    json_array_foreach(rows, i, r) {
        for (size_t c = 0; c < ncols; c++) {
            const char *s = cols[c].text ? cols[c].text(r, cols[c].key, buf, sizeof buf)
                                         : json_string_value(json_object_get(r, cols[c].key));

            printf("%s%-*s", c ? " " : "", c + 1 < ncols ? cols[c].width : 0, s);
        }
        fputc('\n', stdout);
    }
}

int
ctl_open(struct ctl *ctl)
{
    char *val = NULL;
    int r, rc = CTL_RUNTIME;

    if (ctl->etcd_open)
        return CTL_OK;
    if (ctl_etcd_init(&ctl->etcd, ctl->etcd_urls) != 0)
        return ctl_fail(CTL_USAGE, "%s", ctl->etcd.err);
    ctl->etcd_open = true;
    r = ctl_etcd_get(&ctl->etcd, CTL_SCHEMA_KEY, &val, NULL);
    if (r < 0) {
        ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
        goto out;
    }
    if (r == 1) {
        /* first use of this etcd: write the schema version, unless someone just did */
        r = ctl_etcd_create(&ctl->etcd, CTL_SCHEMA_KEY, CTL_SCHEMA_VERSION);
        if (r < 0) {
            ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
            goto out;
        }
        if (r == 1 && ctl_etcd_get(&ctl->etcd, CTL_SCHEMA_KEY, &val, NULL) != 0) {
            ctl_fail(CTL_RUNTIME, "cannot read %s: %s", CTL_SCHEMA_KEY, ctl->etcd.err);
            goto out;
        }
    }
    if (val != NULL && strcmp(val, CTL_SCHEMA_VERSION) != 0) {
        ctl_fail(CTL_RUNTIME,
                 "etcd holds parley schema version \"%s\"; this parleyctl only knows version %s",
                 val, CTL_SCHEMA_VERSION);
        goto out;
    }
    rc = CTL_OK;
out:
    free(val);
    return rc;
}

int
ctl_parse_opts(struct ctl *ctl, int argc, char **argv, const struct ctl_opt *opts,
               const char **pos, size_t min_pos, size_t max_pos, size_t *n_pos, const char *usage)
{
    size_t np = 0;
    bool only_pos = false;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *name, *eq;
        size_t nlen;
        const struct ctl_opt *o = NULL;
        const char *v = NULL;

        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (np == max_pos)
                return ctl_fail(CTL_USAGE, "unexpected argument '%s'\nusage: %s", a, usage);
            pos[np++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: %s\n", usage);
            return -1;
        }
        if (strncmp(a, "--", 2) != 0)
            return ctl_fail(CTL_USAGE, "unknown option '%s'\nusage: %s", a, usage);
        name = a + 2;
        eq = strchr(name, '=');
        nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (nlen == 4 && strncmp(name, "json", 4) == 0 && eq == NULL) {
            ctl->json = true;
            continue;
        }
        if (nlen == 4 && strncmp(name, "etcd", 4) == 0) {
            if (eq == NULL && i + 1 >= argc)
                return ctl_fail(CTL_USAGE, "--etcd needs a value");
            ctl->etcd_urls = eq ? eq + 1 : argv[++i];
            continue;
        }
        for (const struct ctl_opt *p = opts; p && p->name; p++) {
            if (strlen(p->name) == nlen && strncmp(p->name, name, nlen) == 0) {
                o = p;
                break;
            }
        }
        if (o == NULL)
            return ctl_fail(CTL_USAGE, "unknown option '--%.*s'\nusage: %s", (int)nlen, name,
                            usage);
        if (o->flag != NULL) {
            if (eq != NULL)
                return ctl_fail(CTL_USAGE, "option --%s takes no value", o->name);
            *o->flag = true;
            continue;
        }
        if (eq != NULL) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc)
                return ctl_fail(CTL_USAGE, "option --%s needs a value\nusage: %s", o->name,
                                usage);
            v = argv[++i];
        }
        if (*o->val != NULL)
            return ctl_fail(CTL_USAGE, "option --%s given twice", o->name);
        *o->val = v;
    }
    if (np < min_pos)
        return ctl_fail(CTL_USAGE, "missing argument\nusage: %s", usage);
    if (n_pos)
        *n_pos = np;
    return CTL_OK;
}

bool
ctl_valid_name(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];

        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return n >= 1 && n <= 64;
}

bool
ctl_valid_text(const char *s, size_t max)
{
    size_t n = 0;

    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];

        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return n <= max;
}

int
ctl_normalize_user(const char *in, char *out, size_t out_size)
{
    const char *at = strchr(in, '@');
    size_t n = strlen(in);

    /* user@domain: one '@', both sides non-empty, no spaces, slashes or controls */
    if (at == NULL || at == in || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
        n + 1 > out_size || n > 255)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c <= 0x20 || c == 0x7f || c == '/' || c == '"' || c == '\\' || c == ',' ||
            c == ':' || c == ';' || c == '<' || c == '>')
            return -1;
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    /* the domain part is a host name */
    for (const char *d = strchr(out, '@') + 1; *d; d++) {
        if (!isalnum((unsigned char)*d) && *d != '.' && *d != '-')
            return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct ctl ctl;
    const char *cmd;
    int i = 1, rc;

    memset(&ctl, 0, sizeof(ctl));
    ctl.etcd_urls = getenv("PARLEY_ETCD");
    if (ctl.etcd_urls == NULL || *ctl.etcd_urls == '\0')
        ctl.etcd_urls = DEFAULT_ETCD;

    /* global options before the command */
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--json") == 0) {
            ctl.json = true;
        } else if (strcmp(argv[i], "--etcd") == 0 && i + 1 < argc) {
            ctl.etcd_urls = argv[++i];
        } else if (strncmp(argv[i], "--etcd=", 7) == 0) {
            ctl.etcd_urls = argv[i] + 7;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_top, stdout);
            return CTL_OK;
        } else {
            return ctl_fail(CTL_USAGE, "unknown option '%s' (see parleyctl --help)", argv[i]);
        }
        i++;
    }
    if (i >= argc) {
        fputs(usage_top, stderr);
        return CTL_USAGE;
    }
    cmd = argv[i++];
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ctl_fail(CTL_RUNTIME, "curl_global_init failed");
    if (strcmp(cmd, "user") == 0)
        rc = ctl_cmd_user(&ctl, argc - i, argv + i);
    else if (strcmp(cmd, "route") == 0)
        rc = ctl_cmd_route(&ctl, argc - i, argv + i);
    else if (strcmp(cmd, "app") == 0)
        rc = ctl_cmd_app(&ctl, argc - i, argv + i);
    else if (strcmp(cmd, "server") == 0)
        rc = ctl_cmd_server(&ctl, argc - i, argv + i);
    else if (strcmp(cmd, "registrations") == 0)
        rc = ctl_cmd_registrations(&ctl, argc - i, argv + i);
    else if (strcmp(cmd, "contacts") == 0)
        rc = ctl_cmd_contacts(&ctl, argc - i, argv + i);
    else if (strcmp(cmd, "acl") == 0)
        rc = ctl_cmd_acl(&ctl, argc - i, argv + i);
    else if (strcmp(cmd, "help") == 0) {
        fputs(usage_top, stdout);
        rc = CTL_OK;
    } else
        rc = ctl_fail(CTL_USAGE, "unknown command '%s' (see parleyctl --help)", cmd);
    if (ctl.etcd_open)
        ctl_etcd_cleanup(&ctl.etcd);
    curl_global_cleanup();
    if (fflush(stdout) != 0 && rc == CTL_OK)
        rc = ctl_fail(CTL_RUNTIME, "cannot write output");
    return rc;
}
