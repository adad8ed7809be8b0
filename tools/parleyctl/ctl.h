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

/* One column of ctl_print_table. */
struct ctl_col {
    const char *title;
    int width;                  /* left-aligned, padded to this (not the last column) */
    const char *key;            /* the member of a row shown here */
    /* NULL: the member's string value; else what to show for it (may use <buf>) */
    const char *(*text)(const json_t *row, const char *key, char *buf, size_t len);
};

/* Prints the titles, then one line per object of the array <rows>; columns are
 * separated by one space. main.c. */
void ctl_print_table(const json_t *rows, const struct ctl_col *cols, size_t ncols);

/* Command groups; <argv>[0] is the first word after the group name. */
int ctl_cmd_app(struct ctl *ctl, int argc, char **argv);   /* ctl_app.c */
int ctl_cmd_user(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_route(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_server(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_registrations(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_contacts(struct ctl *ctl, int argc, char **argv);   /* ctl_contacts.c */
int ctl_cmd_acl(struct ctl *ctl, int argc, char **argv);        /* ctl_acl.c */

/* ---- the servers' admin endpoints (ctl_admin.c) ---- */

#define CTL_ADMIN_BODY_MAX (16u * 1024 * 1024)   /* bytes of an answer, by default */

/* ctl_http results */
#define CTL_HTTP_OK 0
#define CTL_HTTP_SETUP 1          /* out of memory, curl_easy_init failed */
#define CTL_HTTP_UNREACHABLE 2    /* no HTTP answer (or one over <max> bytes) */

struct ctl_http_answer {
    long status;                /* HTTP status */
    char *body;                 /* the answer, NUL-terminated; NULL when empty */
    size_t len;
    json_t *json;               /* <body> decoded; NULL when not JSON */
};

/*
 * One request to <url>: a GET, or with <post> (NULL for none; may be "") a POST of it,
 * with "Content-Type: <ctype>" when <ctype> is set; "Authorization: Bearer <token>" when
 * <token> is set; an answer of at most <max> bytes. CTL_HTTP_OK with <*ans> filled (free
 * it with ctl_http_answer_free, whatever the status), else CTL_HTTP_SETUP or
 * CTL_HTTP_UNREACHABLE with the reason in <err> (libcurl's words for the latter).
 */
int ctl_http(const char *url, const char *post, const char *ctype, const char *token, size_t max,
             struct ctl_http_answer *ans, char *err, size_t errlen);
void ctl_http_answer_free(struct ctl_http_answer *ans);

/* "<admin>/<path>" (one slash between), then "?<qname>=<qval>" (URL-escaped) when
 * <qname> is set. malloc'ed; NULL when out of memory. */
char *ctl_admin_url(const char *admin, const char *path, const char *qname, const char *qval);

/* <field> (a non-empty string) of the JSON record at <key>: CTL_OK with a malloc'ed <*out>,
 * else an exit code after "no such <what>" / "<what> has no ..." or the etcd error. */
int ctl_record_field(struct ctl *ctl, const char *key, const char *field, const char *what, char **out);

/* Opens etcd and finds <user>'s home server and its admin endpoint (/parley/users/<user>.home,
 * /parley/servers/<home>.admin); <what> names the user in errors. CTL_OK with malloc'ed
 * <*home> and <*admin>, else an exit code (one line on stderr). */
int ctl_user_admin(struct ctl *ctl, const char *user, const char *what, char **home, char **admin);

/*
 * Sends <method> ("GET"/"POST") <path>?user=<user> (path like "/api/contacts") with the
 * JSON <body> (borrowed; NULL for none) to the admin endpoint of <user>'s home server,
 * found in etcd (/parley/users/<user>.home, then /parley/servers/<home>.admin), with
 * "Authorization: Bearer <token>" when <token> is set. CTL_OK with the decoded answer
 * in <*out> (caller owns it), else the exit code after one line on stderr: CTL_USAGE for
 * a 400 (bad input), CTL_RUNTIME otherwise.
 */
int ctl_admin_call(struct ctl *ctl, const char *user, const char *token, const char *method,
                   const char *path, const json_t *body, json_t **out);

/* Validators shared by the commands (no side effects). */
bool ctl_valid_name(const char *s);         /* server / route / home name: [A-Za-z0-9._-]{1,64} */
bool ctl_valid_text(const char *s, size_t max);  /* printable, no control characters */
/* Lowercases and checks "user@domain" into <out>. Returns 0 or -1. */
int ctl_normalize_user(const char *in, char *out, size_t out_size);

#endif
