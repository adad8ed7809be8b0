/*
 * parleyctl user ...: SIP users in /parley/users/<user@domain> (docs/parleyctl.md).
 *
 * HA1 (RFC 2617 §3.2.2.2, RFC 7616 §3.4.2) is computed here with the digest
 * username = the local part of the user ("alice" for alice@example.com) and the
 * realm = the domain unless --realm says otherwise. The servers never see passwords.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth_digest.h"
#include "ctl.h"

#define USER_MAX 256
#define KEY_MAX (sizeof(CTL_USERS_PREFIX) + USER_MAX)
#define PASSWORD_MAX 1024
#define DISPLAY_MAX 256
#define IMPORT_BATCH 128          /* etcd --max-txn-ops default */
#define IMPORT_FILE_MAX (1024L * 1024 * 1024)

#define PARSE_OPTS(...)                                                                      \
    do {                                                                                     \
        int prc_ = ctl_parse_opts(__VA_ARGS__);                                              \
        if (prc_ != CTL_OK)                                                                  \
            return prc_ < 0 ? CTL_OK : prc_;                                                 \
    } while (0)

static const char u_add[] = "parleyctl user add USER@DOMAIN (--password P | --password-stdin) "
                            "--home NAME [--display TEXT] [--realm REALM] [--disabled]";
static const char u_remove[] = "parleyctl user remove USER@DOMAIN";
static const char u_enable[] = "parleyctl user enable USER@DOMAIN";
static const char u_disable[] = "parleyctl user disable USER@DOMAIN";
static const char u_passwd[] =
    "parleyctl user passwd USER@DOMAIN (--password P | --password-stdin)";
static const char u_move[] = "parleyctl user move USER@DOMAIN --home NAME [--force]";
static const char u_show[] = "parleyctl user show USER@DOMAIN";
static const char u_list[] = "parleyctl user list [--domain D] [--home H]";
static const char u_import[] =
    "parleyctl user import FILE.csv   (rows: user@domain,password,home[,display])";

static void
user_key(const char *user, char *key, size_t size)
{
    snprintf(key, size, "%s%s", CTL_USERS_PREFIX, user);
}

/* Validated, lowercased user into <out>, or CTL_USAGE. */
static int
arg_user(const char *in, char *out)
{
    if (ctl_normalize_user(in, out, USER_MAX + 1) != 0)
        return ctl_fail(CTL_USAGE, "invalid user '%s' (want user@domain)", in);
    return CTL_OK;
}

static bool
valid_password(const char *p)
{
    size_t n = strlen(p);

    if (n == 0 || n > PASSWORD_MAX)
        return false;
    return strchr(p, '\n') == NULL && strchr(p, '\r') == NULL;
}

/* Gets the password from --password or one line of stdin. */
static int
get_password(const char *opt, bool from_stdin, char *buf, size_t size)
{
    size_t n;

    if ((opt != NULL) == from_stdin)
        return ctl_fail(CTL_USAGE, "give exactly one of --password or --password-stdin");
    if (opt != NULL) {
        if (strlen(opt) + 1 > size || !valid_password(opt))
            return ctl_fail(CTL_USAGE, "invalid password (1..%d bytes, no line breaks)",
                            PASSWORD_MAX);
        memcpy(buf, opt, strlen(opt) + 1);
        return CTL_OK;
    }
    if (fgets(buf, (int)size, stdin) == NULL)
        return ctl_fail(CTL_USAGE, "no password on stdin");
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (!valid_password(buf))
        return ctl_fail(CTL_USAGE, "invalid password on stdin (1..%d bytes)", PASSWORD_MAX);
    return CTL_OK;
}

/* Sets ha1_md5 / ha1_sha256 of <rec> for <user> (lowercased user@domain) in <realm>. */
static int
set_ha1(json_t *rec, const char *user, const char *realm, const char *password)
{
    char local[USER_MAX + 1];
    char md5[AUTH_HEX_SIZE], sha[AUTH_HEX_SIZE];
    const char *at = strchr(user, '@');
    size_t n = (size_t)(at - user);

    memcpy(local, user, n);
    local[n] = '\0';
    if (auth_ha1(AUTH_ALG_MD5, local, realm, password, md5, sizeof(md5)) != 0 ||
        auth_ha1(AUTH_ALG_SHA256, local, realm, password, sha, sizeof(sha)) != 0)
        return -1;
    if (json_object_set_new(rec, "ha1_md5", json_string(md5)) != 0 ||
        json_object_set_new(rec, "ha1_sha256", json_string(sha)) != 0)
        return -1;
    return 0;
}

/* A new user record (schema in docs/parleyctl.md). NULL on OOM. */
static json_t *
new_record(const char *user, bool enabled, const char *home, const char *display,
           const char *realm, const char *password)
{
    json_t *rec = json_object();

    if (rec == NULL)
        return NULL;
    if (json_object_set_new(rec, "enabled", json_boolean(enabled)) != 0 ||
        json_object_set_new(rec, "home", json_string(home)) != 0 ||
        json_object_set_new(rec, "display", json_string(display ? display : "")) != 0 ||
        set_ha1(rec, user, realm, password) != 0 ||
        json_object_set_new(rec, "realm", json_string(realm)) != 0) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

static char *
dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

static void
report_done(struct ctl *ctl, const char *user, const char *action)
{
    if (ctl->json) {
        json_t *o = json_pack("{s:b,s:s,s:s}", "ok", 1, "user", user, "action", action);

        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("user %s %s\n", user, action);
    }
}

static int
cmd_add(struct ctl *ctl, int argc, char **argv)
{
    const char *pos[1], *password = NULL, *home = NULL, *display = NULL, *realm = NULL;
    bool pw_stdin = false, disabled = false;
    const struct ctl_opt opts[] = {
        {"password", &password, NULL}, {"password-stdin", NULL, &pw_stdin},
        {"home", &home, NULL},         {"display", &display, NULL},
        {"realm", &realm, NULL},       {"disabled", NULL, &disabled},
        {NULL, NULL, NULL},
    };
    char user[USER_MAX + 1], key[KEY_MAX], pw[PASSWORD_MAX + 2];
    json_t *rec = NULL;
    char *val = NULL;
    int rc, r;

    PARSE_OPTS(ctl, argc, argv, opts, pos, 1, 1, NULL, u_add);
    if ((rc = arg_user(pos[0], user)) != CTL_OK)
        return rc;
    if (home == NULL)
        return ctl_fail(CTL_USAGE, "--home is required\nusage: %s", u_add);
    if (!ctl_valid_name(home))
        return ctl_fail(CTL_USAGE, "invalid home server name '%s'", home);
    if (display != NULL && !ctl_valid_text(display, DISPLAY_MAX))
        return ctl_fail(CTL_USAGE, "invalid --display (at most %d printable bytes)", DISPLAY_MAX);
    if (realm == NULL)
        realm = strchr(user, '@') + 1;
    else if (*realm == '\0' || !ctl_valid_text(realm, 128) || strchr(realm, '"'))
        return ctl_fail(CTL_USAGE, "invalid --realm");
    if ((rc = get_password(password, pw_stdin, pw, sizeof(pw))) != CTL_OK)
        return rc;
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;

    rc = CTL_RUNTIME;
    rec = new_record(user, !disabled, home, display, realm, pw);
    val = rec ? dump(rec) : NULL;
    if (val == NULL) {
        ctl_fail(CTL_RUNTIME, "out of memory");
        goto out;
    }
    user_key(user, key, sizeof(key));
    r = ctl_etcd_create(&ctl->etcd, key, val);
    if (r < 0) {
        ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
        goto out;
    }
    if (r == 1) {
        ctl_fail(CTL_RUNTIME, "user %s already exists", user);
        goto out;
    }
    report_done(ctl, user, "added");
    rc = CTL_OK;
out:
    memset(pw, 0, sizeof(pw));
    json_decref(rec);
    free(val);
    return rc;
}

/* Reads the record of <user>: CTL_OK with *rec, or an exit code (message printed). */
static int
load_user(struct ctl *ctl, const char *user, json_t **rec, int64_t *mod_rev)
{
    char key[KEY_MAX];
    char *val = NULL;
    int r;

    *rec = NULL;
    user_key(user, key, sizeof(key));
    r = ctl_etcd_get(&ctl->etcd, key, &val, mod_rev);
    if (r < 0)
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    if (r == 1)
        return ctl_fail(CTL_RUNTIME, "no such user %s", user);
    *rec = json_loads(val, 0, NULL);
    free(val);
    if (!json_is_object(*rec)) {
        json_decref(*rec);
        *rec = NULL;
        return ctl_fail(CTL_RUNTIME, "record of %s is not a JSON object", user);
    }
    return CTL_OK;
}

/* Changes one user record with compare-and-swap on its mod_revision (retried). */
typedef int user_edit_fn(json_t *rec, const char *user, void *arg);

static int
edit_user(struct ctl *ctl, const char *user, user_edit_fn *fn, void *arg)
{
    char key[KEY_MAX];

    user_key(user, key, sizeof(key));
    for (int attempt = 0; attempt < 10; attempt++) {
        json_t *rec = NULL;
        int64_t mod = 0;
        char *val;
        int rc, r;

        if ((rc = load_user(ctl, user, &rec, &mod)) != CTL_OK)
            return rc;
        if ((rc = fn(rec, user, arg)) != CTL_OK) {
            json_decref(rec);
            return rc;
        }
        val = dump(rec);
        json_decref(rec);
        if (val == NULL)
            return ctl_fail(CTL_RUNTIME, "out of memory");
        r = ctl_etcd_cas(&ctl->etcd, key, val, mod);
        free(val);
        if (r < 0)
            return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
        if (r == 0)
            return CTL_OK;
        /* changed under us: read again */
    }
    return ctl_fail(CTL_RUNTIME, "user %s keeps changing; gave up", user);
}

static int
one_user_arg(struct ctl *ctl, int argc, char **argv, const struct ctl_opt *opts,
             const char *usage, char *user)
{
    const char *pos[1];
    int rc = ctl_parse_opts(ctl, argc, argv, opts, pos, 1, 1, NULL, usage);

    if (rc != CTL_OK)
        return rc;
    if ((rc = arg_user(pos[0], user)) != CTL_OK)
        return rc;
    return ctl_open(ctl);
}

static int
cmd_remove(struct ctl *ctl, int argc, char **argv)
{
    char user[USER_MAX + 1], key[KEY_MAX];
    int rc = one_user_arg(ctl, argc, argv, NULL, u_remove, user), r;

    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    user_key(user, key, sizeof(key));
    r = ctl_etcd_delete(&ctl->etcd, key);
    if (r < 0)
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    if (r == 1)
        return ctl_fail(CTL_RUNTIME, "no such user %s", user);
    report_done(ctl, user, "removed");
    return CTL_OK;
}

static int
set_enabled(json_t *rec, const char *user, void *arg)
{
    (void)user;
    return json_object_set_new(rec, "enabled", json_boolean(*(bool *)arg)) == 0
               ? CTL_OK
               : ctl_fail(CTL_RUNTIME, "out of memory");
}

static int
cmd_enable(struct ctl *ctl, int argc, char **argv, bool on)
{
    char user[USER_MAX + 1];
    int rc = one_user_arg(ctl, argc, argv, NULL, on ? u_enable : u_disable, user);

    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    if ((rc = edit_user(ctl, user, set_enabled, &on)) != CTL_OK)
        return rc;
    report_done(ctl, user, on ? "enabled" : "disabled");
    return CTL_OK;
}

static int
set_password(json_t *rec, const char *user, void *arg)
{
    const char *realm = json_string_value(json_object_get(rec, "realm"));

    if (realm == NULL || *realm == '\0')
        realm = strchr(user, '@') + 1;
    return set_ha1(rec, user, realm, arg) == 0 ? CTL_OK : ctl_fail(CTL_RUNTIME, "out of memory");
}

static int
cmd_passwd(struct ctl *ctl, int argc, char **argv)
{
    const char *password = NULL;
    bool pw_stdin = false;
    const struct ctl_opt opts[] = {
        {"password", &password, NULL},
        {"password-stdin", NULL, &pw_stdin},
        {NULL, NULL, NULL},
    };
    const char *pos[1];
    char user[USER_MAX + 1], pw[PASSWORD_MAX + 2];
    int rc;

    PARSE_OPTS(ctl, argc, argv, opts, pos, 1, 1, NULL, u_passwd);
    if ((rc = arg_user(pos[0], user)) != CTL_OK)
        return rc;
    if ((rc = get_password(password, pw_stdin, pw, sizeof(pw))) != CTL_OK)
        return rc;
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;
    rc = edit_user(ctl, user, set_password, pw);
    memset(pw, 0, sizeof(pw));
    if (rc == CTL_OK)
        report_done(ctl, user, "password changed");
    return rc;
}

static int
set_home(json_t *rec, const char *user, void *arg)
{
    (void)user;
    return json_object_set_new(rec, "home", json_string(arg)) == 0
               ? CTL_OK
               : ctl_fail(CTL_RUNTIME, "out of memory");
}

static int
cmd_move(struct ctl *ctl, int argc, char **argv)
{
    const char *home = NULL;
    bool force = false;
    const struct ctl_opt opts[] = {
        {"home", &home, NULL},
        {"force", NULL, &force},
        {NULL, NULL, NULL},
    };
    const char *pos[1];
    char user[USER_MAX + 1];
    int rc;

    PARSE_OPTS(ctl, argc, argv, opts, pos, 1, 1, NULL, u_move);
    if ((rc = arg_user(pos[0], user)) != CTL_OK)
        return rc;
    if (home == NULL)
        return ctl_fail(CTL_USAGE, "--home is required\nusage: %s", u_move);
    if (!ctl_valid_name(home))
        return ctl_fail(CTL_USAGE, "invalid home server name '%s'", home);
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;
    if (!force) {
        char key[sizeof(CTL_SERVERS_PREFIX) + 64];
        char *val = NULL;
        json_t *srv;
        const char *role;
        int r;

        snprintf(key, sizeof(key), "%s%s", CTL_SERVERS_PREFIX, home);
        r = ctl_etcd_get(&ctl->etcd, key, &val, NULL);
        if (r < 0)
            return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
        if (r == 1)
            return ctl_fail(CTL_RUNTIME,
                            "no server '%s' in the directory (is it running? --force moves anyway)",
                            home);
        srv = json_loads(val, 0, NULL);
        free(val);
        role = json_string_value(json_object_get(srv, "role"));
        if (role == NULL || strcmp(role, "homeserver") != 0) {
            rc = ctl_fail(CTL_RUNTIME, "server '%s' has role '%s', not homeserver (--force moves anyway)",
                          home, role ? role : "?");
            json_decref(srv);
            return rc;
        }
        json_decref(srv);
    }
    if ((rc = edit_user(ctl, user, set_home, (void *)home)) != CTL_OK)
        return rc;
    report_done(ctl, user, "moved");
    return CTL_OK;
}

/* The record as shown: {"user": ..., then the stored fields}. */
static json_t *
shown(const char *user, const json_t *rec)
{
    json_t *o = json_pack("{s:s}", "user", user);

    if (o != NULL)
        json_object_update(o, (json_t *)rec);
    return o;
}

static int
cmd_show(struct ctl *ctl, int argc, char **argv)
{
    char user[USER_MAX + 1];
    json_t *rec = NULL, *o;
    int rc = one_user_arg(ctl, argc, argv, NULL, u_show, user);

    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    if ((rc = load_user(ctl, user, &rec, NULL)) != CTL_OK)
        return rc;
    if (ctl->json) {
        o = shown(user, rec);
        ctl_print_json(o);
        json_decref(o);
    } else {
        const char *k;
        json_t *v;

        printf("user:     %s\n", user);
        json_object_foreach(rec, k, v) {
            if (strncmp(k, "ha1_", 4) == 0)
                continue;   /* password equivalents: only in --json */
            if (json_is_string(v))
                printf("%-9s %s\n", k, json_string_value(v));
            else if (json_is_boolean(v))
                printf("%-9s %s\n", k, json_is_true(v) ? "yes" : "no");
            else {
                char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

                printf("%-9s %s\n", k, s ? s : "?");
                free(s);
            }
        }
    }
    json_decref(rec);
    return CTL_OK;
}

struct list_state {
    struct ctl *ctl;
    const char *domain;     /* lowercased, or NULL */
    const char *home;
    size_t n;
};

static int
list_cb(void *arg, const char *key, const char *val, int64_t lease)
{
    struct list_state *st = arg;
    const char *user = key + strlen(CTL_USERS_PREFIX);
    const char *at = strchr(user, '@');
    json_t *rec;
    const char *home, *display;

    (void)lease;
    if (st->domain != NULL && (at == NULL || strcmp(at + 1, st->domain) != 0))
        return 0;
    rec = json_loads(val, 0, NULL);
    if (!json_is_object(rec)) {
        fprintf(stderr, "parleyctl: warning: record %s is not a JSON object; skipped\n", key);
        json_decref(rec);
        return 0;
    }
    home = json_string_value(json_object_get(rec, "home"));
    if (st->home != NULL && (home == NULL || strcmp(home, st->home) != 0)) {
        json_decref(rec);
        return 0;
    }
    if (st->ctl->json) {
        json_t *o = shown(user, rec);
        char *s = o ? dump(o) : NULL;

        printf("%s\n  %s", st->n ? "," : "", s ? s : "null");
        free(s);
        json_decref(o);
    } else {
        if (st->n == 0)
            printf("%-40s %-8s %-16s %s\n", "USER", "ENABLED", "HOME", "DISPLAY");
        display = json_string_value(json_object_get(rec, "display"));
        printf("%-40s %-8s %-16s %s\n", user,
               json_is_true(json_object_get(rec, "enabled")) ? "yes" : "no", home ? home : "-",
               display ? display : "");
    }
    st->n++;
    json_decref(rec);
    return 0;
}

static int
cmd_list(struct ctl *ctl, int argc, char **argv)
{
    const char *domain = NULL, *home = NULL;
    const struct ctl_opt opts[] = {
        {"domain", &domain, NULL},
        {"home", &home, NULL},
        {NULL, NULL, NULL},
    };
    struct list_state st = {.ctl = ctl};
    char dom[USER_MAX + 1];
    int rc;

    PARSE_OPTS(ctl, argc, argv, opts, NULL, 0, 0, NULL, u_list);
    if (domain != NULL) {
        char probe[USER_MAX + 3];

        snprintf(probe, sizeof(probe), "x@%s", domain);
        if (ctl_normalize_user(probe, dom, sizeof(dom)) != 0)
            return ctl_fail(CTL_USAGE, "invalid --domain '%s'", domain);
        st.domain = dom + 2;
    }
    if (home != NULL && !ctl_valid_name(home))
        return ctl_fail(CTL_USAGE, "invalid --home '%s'", home);
    st.home = home;
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;
    if (ctl->json)
        fputs("[", stdout);
    if (ctl_etcd_range_each(&ctl->etcd, CTL_USERS_PREFIX, 2000, list_cb, &st) != 0) {
        if (ctl->json)
            fputs("\n]\n", stdout);
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    }
    if (ctl->json)
        fputs(st.n ? "\n]\n" : "]\n", stdout);
    else if (st.n == 0)
        fprintf(stderr, "parleyctl: no users\n");
    return CTL_OK;
}

/* ---- import ---- */

struct seen_set {            /* open addressing set of keys, to catch duplicate rows */
    char **keys;
    size_t *lines;
    size_t cap;              /* power of two */
};

static size_t
str_hash(const char *s)
{
    size_t h = 5381;

    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

/* Returns 0 if added, the line of the earlier row if present, (size_t)-1 on OOM. */
static size_t
seen_add(struct seen_set *s, const char *key, size_t line)
{
    size_t i = str_hash(key) & (s->cap - 1);

    while (s->keys[i] != NULL) {
        if (strcmp(s->keys[i], key) == 0)
            return s->lines[i];
        i = (i + 1) & (s->cap - 1);
    }
    s->keys[i] = strdup(key);
    if (s->keys[i] == NULL)
        return (size_t)-1;
    s->lines[i] = line;
    return 0;
}

struct row {
    size_t line;
    char key[KEY_MAX];
    char *val;
};

struct import {
    struct ctl *ctl;
    const char *file;
    struct row batch[IMPORT_BATCH];
    size_t n;
    size_t imported, failed, done_rows, total_rows;
    bool tty;
};

static void
progress(struct import *im, bool final)
{
    if (!im->tty)
        return;
    fprintf(stderr, "\rimporting: %zu/%zu rows (%zu%%)%s", im->done_rows, im->total_rows,
            im->total_rows ? im->done_rows * 100 / im->total_rows : 100, final ? "\n" : "");
}

static void row_error(struct import *im, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "parleyctl: FILE:LINE: <why>" on stderr; counts the row as failed. */
static void
row_error(struct import *im, size_t line, const char *fmt, ...)
{
    va_list ap;

    if (im->tty)
        fputs("\r\033[K", stderr);
    fprintf(stderr, "parleyctl: %s:%zu: ", im->file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    im->failed++;
}

/*
 * Writes the batch with one txn: compare create_revision = 0 on every key, put them
 * all on success, read their counts on failure. Rows whose key exists are reported
 * and dropped, then the rest is retried. Returns 0, or -1 if etcd failed.
 */
static int
flush_batch(struct import *im)
{
    struct ctl_etcd *e = &im->ctl->etcd;
    int rc = -1;

    for (int attempt = 0; im->n > 0; attempt++) {
        json_t *cmp = json_array(), *succ = json_array(), *fail = json_array();
        json_t *req = json_pack("{s:o,s:o,s:o}", "compare", cmp, "success", succ, "failure", fail);
        json_t *ans, *resps;
        size_t kept = 0, dropped = 0;

        if (req == NULL)
            goto oom;
        for (size_t i = 0; i < im->n; i++) {
            char *k = ctl_b64(im->batch[i].key, strlen(im->batch[i].key));
            char *v = ctl_b64(im->batch[i].val, strlen(im->batch[i].val));

            if (k == NULL || v == NULL ||
                json_array_append_new(cmp, json_pack("{s:s,s:s,s:s,s:s}", "key", k, "target",
                                                     "CREATE", "result", "EQUAL",
                                                     "create_revision", "0")) != 0 ||
                json_array_append_new(succ, json_pack("{s:{s:s,s:s}}", "request_put", "key", k,
                                                      "value", v)) != 0 ||
                json_array_append_new(fail, json_pack("{s:{s:s,s:b}}", "request_range", "key",
                                                      k, "count_only", 1)) != 0) {
                free(k);
                free(v);
                json_decref(req);
                goto oom;
            }
            free(k);
            free(v);
        }
        ans = ctl_etcd_call(e, "/v3/kv/txn", req);
        json_decref(req);
        if (ans == NULL) {
            ctl_fail(CTL_RUNTIME, "%s", e->err);
            goto out;
        }
        if (json_is_true(json_object_get(ans, "succeeded"))) {
            im->imported += im->n;
            for (size_t i = 0; i < im->n; i++)
                free(im->batch[i].val);
            im->n = 0;
            json_decref(ans);
            break;
        }
        resps = json_object_get(ans, "responses");
        for (size_t i = 0; i < im->n; i++) {
            json_t *rr = json_object_get(json_array_get(resps, i), "response_range");

            if (ctl_json_i64(rr, "count", 0) > 0) {
                row_error(im, im->batch[i].line, "user %s already exists; row skipped",
                          im->batch[i].key + strlen(CTL_USERS_PREFIX));
                free(im->batch[i].val);
                dropped++;
            } else {
                im->batch[kept++] = im->batch[i];
            }
        }
        im->n = kept;
        json_decref(ans);
        if (dropped == 0 && attempt >= 5) {
            ctl_fail(CTL_RUNTIME, "etcd keeps refusing a batch for no visible reason");
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
oom:
    ctl_fail(CTL_RUNTIME, "out of memory");
    return -1;
}

/*
 * Splits one CSV line in place (RFC 4180 quoting: "a,b" and "" inside quotes).
 * Returns the number of fields, or -1 on bad quoting / more than <max> fields.
 */
static int
split_csv(char *line, char **f, int max)
{
    int n = 0;
    char *p = line;

    for (;;) {
        char *w;

        if (n == max)
            return -1;
        if (*p == '"') {
            w = f[n++] = ++p;
            for (;;) {
                if (*p == '\0')
                    return -1;
                if (*p == '"') {
                    if (p[1] == '"') {
                        *w++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *w++ = *p++;
            }
            if (*p != ',' && *p != '\0')
                return -1;
            *w = '\0';
            if (*p == '\0')
                return n;
            *p++ = '\0';
            continue;
        }
        f[n++] = p;
        while (*p && *p != ',') {
            if (*p == '"')
                return -1;
            p++;
        }
        if (*p == '\0')
            return n;
        *p++ = '\0';
    }
}

static int
import_row(struct import *im, struct seen_set *seen, char *line, size_t lineno, bool *maybe_header)
{
    char *f[5];
    char user[USER_MAX + 1];
    struct row *r;
    json_t *rec;
    size_t prev;
    int nf;

    nf = split_csv(line, f, 5);
    if (*maybe_header) {
        *maybe_header = false;
        /* optional header line, e.g. "user@domain,password,home,display" */
        if (nf >= 1 && (strchr(f[0], '@') == NULL || strcasecmp(f[0], "user@domain") == 0 ||
                        (nf >= 2 && strcasecmp(f[1], "password") == 0)))
            return 0;
    }
    if (nf < 0) {
        row_error(im, lineno, "%s", "bad CSV quoting or too many columns; row skipped");
        return 0;
    }
    if (nf < 3) {
        row_error(im, lineno, "%s", "need user@domain,password,home[,display]; row skipped");
        return 0;
    }
    if (ctl_normalize_user(f[0], user, sizeof(user)) != 0) {
        row_error(im, lineno, "invalid user '%s'; row skipped", f[0]);
        return 0;
    }
    if (!valid_password(f[1])) {
        row_error(im, lineno, "%s", "invalid password (1..1024 bytes); row skipped");
        return 0;
    }
    if (!ctl_valid_name(f[2])) {
        row_error(im, lineno, "invalid home server name '%s'; row skipped", f[2]);
        return 0;
    }
    if (nf == 4 && !ctl_valid_text(f[3], DISPLAY_MAX)) {
        row_error(im, lineno, "%s", "invalid display name; row skipped");
        return 0;
    }
    prev = seen_add(seen, user, lineno);
    if (prev == (size_t)-1)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    if (prev != 0) {
        row_error(im, lineno, "same user as line %zu; row skipped", prev);
        return 0;
    }
    r = &im->batch[im->n];
    r->line = lineno;
    user_key(user, r->key, sizeof(r->key));
    rec = new_record(user, true, f[2], nf == 4 ? f[3] : "", strchr(user, '@') + 1, f[1]);
    r->val = rec ? dump(rec) : NULL;
    json_decref(rec);
    if (r->val == NULL)
        return ctl_fail(CTL_RUNTIME, "out of memory");
    im->n++;
    if (im->n == IMPORT_BATCH) {
        if (flush_batch(im) != 0)
            return CTL_RUNTIME;
        progress(im, false);
    }
    return 0;
}

static char *
read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    long sz = 0;
    int saved;

    if (fp == NULL)
        return NULL;
    if (fseek(fp, 0, SEEK_END) != 0 || (sz = ftell(fp)) < 0 || sz > IMPORT_FILE_MAX ||
        fseek(fp, 0, SEEK_SET) != 0) {
        if (sz > IMPORT_FILE_MAX)
            errno = EFBIG;
        goto out;
    }
    buf = malloc((size_t)sz + 1);
    if (buf == NULL)
        goto out;
    if (fread(buf, 1, (size_t)sz, fp) != (size_t)sz) {
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[sz] = '\0';
    *len = (size_t)sz;
out:
    saved = errno;
    fclose(fp);
    errno = saved;
    return buf;
}

static int
cmd_import(struct ctl *ctl, int argc, char **argv)
{
    const char *pos[1];
    struct import *im = NULL;
    struct seen_set seen = {0};
    struct timespec t0, t1;
    char *buf = NULL, *p, *nl;
    size_t len = 0, lineno = 0;
    bool maybe_header = true;
    int rc;

    PARSE_OPTS(ctl, argc, argv, NULL, pos, 1, 1, NULL, u_import);
    buf = read_file(pos[0], &len);
    if (buf == NULL)
        return ctl_fail(CTL_RUNTIME, "cannot read %s: %s", pos[0], strerror(errno));
    if (memchr(buf, '\0', len) != NULL) {
        free(buf);
        return ctl_fail(CTL_USAGE, "%s is not a text file", pos[0]);
    }
    if ((rc = ctl_open(ctl)) != CTL_OK) {
        free(buf);
        return rc;
    }
    rc = CTL_RUNTIME;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    im = calloc(1, sizeof(*im));
    if (im == NULL)
        goto oom;
    im->ctl = ctl;
    im->file = pos[0];
    im->tty = isatty(STDERR_FILENO) == 1;
    for (size_t i = 0; i < len; i++)
        im->total_rows += buf[i] == '\n';
    if (len > 0 && buf[len - 1] != '\n')
        im->total_rows++;
    seen.cap = 1024;
    while (seen.cap < im->total_rows * 2)
        seen.cap *= 2;
    seen.keys = calloc(seen.cap, sizeof(*seen.keys));
    seen.lines = calloc(seen.cap, sizeof(*seen.lines));
    if (seen.keys == NULL || seen.lines == NULL)
        goto oom;

    for (p = buf; p < buf + len; p = nl + 1) {
        size_t ll;

        nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (nl == NULL)
            nl = buf + len;
        *nl = '\0';
        lineno++;
        im->done_rows = lineno;
        ll = strlen(p);
        if (ll > 0 && p[ll - 1] == '\r')
            p[--ll] = '\0';
        if (ll == 0 || p[0] == '#')
            continue;
        if (import_row(im, &seen, p, lineno, &maybe_header) != 0)
            goto out;
    }
    if (flush_batch(im) != 0)
        goto out;
    im->done_rows = im->total_rows;
    progress(im, true);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    {
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

        if (ctl->json) {
            json_t *o = json_pack("{s:I,s:I,s:f}", "imported", (json_int_t)im->imported, "failed",
                                  (json_int_t)im->failed, "seconds", secs);

            ctl_print_json(o);
            json_decref(o);
        } else {
            printf("imported %zu users, %zu rows failed, in %.1f s\n", im->imported, im->failed,
                   secs);
        }
    }
    rc = im->failed ? CTL_RUNTIME : CTL_OK;
    if (im->failed)
        fprintf(stderr, "parleyctl: %zu rows of %s failed\n", im->failed, pos[0]);
    goto out;
oom:
    ctl_fail(CTL_RUNTIME, "out of memory");
out:
    if (im != NULL) {
        if (rc != CTL_OK && im->tty)
            fputc('\n', stderr);
        for (size_t i = 0; i < im->n; i++)
            free(im->batch[i].val);
    }
    for (size_t i = 0; seen.keys && i < seen.cap; i++)
        free(seen.keys[i]);
    free(seen.keys);
    free(seen.lines);
    free(im);
    free(buf);
    return rc;
}

int
ctl_cmd_user(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "parleyctl user add|remove|enable|disable|passwd|move|show|list|import ... (--help)";
    const char *sub = argc > 0 ? argv[0] : NULL;

    if (sub == NULL)
        return ctl_fail(CTL_USAGE, "missing user command\nusage: %s", usage);
    argc--;
    argv++;
    if (strcmp(sub, "add") == 0)
        return cmd_add(ctl, argc, argv);
    if (strcmp(sub, "remove") == 0)
        return cmd_remove(ctl, argc, argv);
    if (strcmp(sub, "enable") == 0)
        return cmd_enable(ctl, argc, argv, true);
    if (strcmp(sub, "disable") == 0)
        return cmd_enable(ctl, argc, argv, false);
    if (strcmp(sub, "passwd") == 0)
        return cmd_passwd(ctl, argc, argv);
    if (strcmp(sub, "move") == 0)
        return cmd_move(ctl, argc, argv);
    if (strcmp(sub, "show") == 0)
        return cmd_show(ctl, argc, argv);
    if (strcmp(sub, "list") == 0)
        return cmd_list(ctl, argc, argv);
    if (strcmp(sub, "import") == 0)
        return cmd_import(ctl, argc, argv);
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        printf("usage:\n  %s\n  %s\n  %s\n  %s\n  %s\n  %s\n  %s\n  %s\n  %s\n", u_add, u_remove,
               u_enable, u_disable, u_passwd, u_move, u_show, u_list, u_import);
        return CTL_OK;
    }
    return ctl_fail(CTL_USAGE, "unknown user command '%s'\nusage: %s", sub, usage);
}
