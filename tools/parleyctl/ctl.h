/*
 * parleyctl internals: the state every command gets, option parsing, errors.
 *
 * Exit codes (docs/parleyctl.md): 0 done, 1 runtime failure (etcd unreachable,
 * not found, already exists, bad rows in an import), 2 usage or bad input.
 * Every error is one line on stderr, "parleyctl: <what>".
 */
#ifndef PARLEY_CTL_H
#define PARLEY_CTL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "ctl_etcd.h"

#define CTL_OK 0
#define CTL_RUNTIME 1
#define CTL_USAGE 2

/* etcd schema (docs/parleyctl.md "Schema"); others code against it */
#define CTL_SCHEMA_KEY "/parley/schema"
#define CTL_SCHEMA_VERSION "1"
#define CTL_USERS_PREFIX "/parley/users/"
#define CTL_SERVERS_PREFIX "/parley/servers/"
#define CTL_ROUTES_PREFIX "/parley/routes/"

struct ctl {
    const char *etcd_urls;      /* --etcd, PARLEY_ETCD, or the default */
    bool json;                  /* --json */
    bool etcd_open;
    struct ctl_etcd etcd;
};

/* Prints "parleyctl: <msg>" on stderr and returns <code>. */
int ctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Connects (lazily) and checks/writes /parley/schema. Returns CTL_OK or an exit code. */
int ctl_open(struct ctl *ctl);

/* One option a command accepts. Exactly one of <val> (takes an argument) or <flag>. */
struct ctl_opt {
    const char *name;           /* without the leading "--" */
    const char **val;
    bool *flag;
};

/*
 * Parses <argv> (after the command words) against <opts> plus the global
 * --etcd URL, --json and --help. Positionals go to <pos> (at most <max_pos>,
 * exactly <min_pos> required). Returns CTL_OK, CTL_USAGE (message printed), or
 * -1 when --help was asked (usage printed on stdout; the caller exits 0).
 */
int ctl_parse_opts(struct ctl *ctl, int argc, char **argv, const struct ctl_opt *opts,
                   const char **pos, size_t min_pos, size_t max_pos, size_t *n_pos,
                   const char *usage);

/* Prints <j> as indented JSON on stdout (with a newline). */
void ctl_print_json(const json_t *j);

/* Command groups; <argv>[0] is the first word after the group name. */
int ctl_cmd_app(struct ctl *ctl, int argc, char **argv);   /* ctl_app.c */
int ctl_cmd_user(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_route(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_server(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_registrations(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_contacts(struct ctl *ctl, int argc, char **argv);   /* ctl_contacts.c */
int ctl_cmd_acl(struct ctl *ctl, int argc, char **argv);        /* ctl_acl.c */

/*
 * Sends <method> ("GET"/"POST") <path>?user=<user> (path like "/api/contacts") with the
 * JSON <body> (borrowed; NULL for none) to the admin endpoint of <user>'s home server,
 * found in etcd (/parley/users/<user>.home, then /parley/servers/<home>.admin), with
 * "Authorization: Bearer <token>" when <token> is set. CTL_OK with the decoded answer
 * in <*out> (caller owns it), else the exit code after one line on stderr: CTL_USAGE for
 * a 400 (bad input), CTL_RUNTIME otherwise. ctl_contacts.c.
 */
int ctl_admin_call(struct ctl *ctl, const char *user, const char *token, const char *method,
                   const char *path, const json_t *body, json_t **out);

/* Validators shared by the commands (no side effects). */
bool ctl_valid_name(const char *s);         /* server / route / home name: [A-Za-z0-9._-]{1,64} */
bool ctl_valid_text(const char *s, size_t max);  /* printable, no control characters */
/* Lowercases and checks "user@domain" into <out>. Returns 0 or -1. */
int ctl_normalize_user(const char *in, char *out, size_t out_size);

#endif
