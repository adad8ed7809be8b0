/* dir_json: directory value and etcd gateway decoding (see dir_json.h). */
#define LOG_MODULE "dir"
#include "directory/dir_json.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static const char *const role_names[] = {"homeserver", "frontend", "edge"};

const char *
dir_role_name(enum dir_role role)
{
    if ((unsigned)role < sizeof role_names / sizeof role_names[0])
        return role_names[role];
    return "?";
}

int
dir_role_parse(const char *s, enum dir_role *out)
{
    for (unsigned i = 0; i < sizeof role_names / sizeof role_names[0]; i++) {
        if (strcmp(s, role_names[i]) == 0) {
            *out = (enum dir_role)i;
            return 0;
        }
    }
    return -1;
}

char *
dir_lower(char *s)
{
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

static void __attribute__((format(printf, 3, 4)))
seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- base64 ---------------------------------------------------------------- */

char *
dir_b64_encode(const void *data, size_t len)
{
    size_t outlen = 4 * ((len + 2) / 3) + 1;
    char *out;

    if (len > (size_t)INT32_MAX / 2)
        return NULL;
    out = malloc(outlen);
    if (out == NULL)
        return NULL;
    /* EVP_EncodeBlock pads and writes no newlines (dependencies.md §3.4) */
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

static bool
b64_char(unsigned char c)
{
    return isalnum(c) || c == '+' || c == '/';
}

int
dir_b64_decode(const char *in, size_t in_len, char **out, size_t *out_len)
{
    size_t pad = 0;
    unsigned char *buf;
    int n;

    *out = NULL;
    *out_len = 0;
    if (in_len % 4 != 0 || in_len > (size_t)INT32_MAX / 2)
        return -1;
    /* EVP_DecodeBlock skips leading/trailing whitespace and accepts '=' only at the
     * end; check the alphabet ourselves so the padding count below is exact. */
    for (size_t i = 0; i < in_len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '=') {
            if (i < in_len - 2)
                return -1;
            pad++;
        } else if (!b64_char(c) || pad > 0) {
            return -1;
        }
    }
    buf = malloc(in_len / 4 * 3 + 1);
    if (buf == NULL)
        return -1;
    if (in_len == 0) {
        buf[0] = '\0';
        *out = (char *)buf;
        return 0;
    }
    n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)in_len);
    if (n < 0 || (size_t)n < pad) {
        free(buf);
        return -1;
    }
    /* EVP_DecodeBlock counts '=' padding as output bytes: "YQ==" gives 3 for "a" */
    n -= (int)pad;
    buf[n] = '\0';
    *out = (char *)buf;
    *out_len = (size_t)n;
    return 0;
}

/* ---- line splitter ----------------------------------------------------------- */

void
dir_linebuf_init(struct dir_linebuf *lb, size_t max)
{
    memset(lb, 0, sizeof *lb);
    lb->max = max;
}

void
dir_linebuf_reset(struct dir_linebuf *lb)
{
    lb->n = 0;
    lb->skipping = false;
}

void
dir_linebuf_free(struct dir_linebuf *lb)
{
    free(lb->p);
    lb->p = NULL;
    lb->n = lb->cap = 0;
}

static int
lb_append(struct dir_linebuf *lb, const char *data, size_t len)
{
    if (lb->skipping)
        return 0;
    if (lb->n + len > lb->max) {
        lb->overflows++;
        lb->n = 0;
        lb->skipping = true;
        return 0;
    }
    if (lb->n + len + 1 > lb->cap) {
        size_t cap = lb->cap ? lb->cap : (lb->max < 1024 ? lb->max + 1 : 1024);
        char *p;
        while (cap < lb->n + len + 1)
            cap *= 2;
        p = realloc(lb->p, cap);
        if (p == NULL)
            return -1;
        lb->p = p;
        lb->cap = cap;
    }
    memcpy(lb->p + lb->n, data, len);
    lb->n += len;
    lb->p[lb->n] = '\0';
    return 0;
}

int
dir_linebuf_feed(struct dir_linebuf *lb, const char *data, size_t len, dir_line_fn *fn,
                 void *arg)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;

        if (lb_append(lb, data, take) != 0)
            return -1;
        if (nl == NULL)
            return 0;
        data += take + 1;
        len -= take + 1;
        if (lb->skipping) {
            lb->skipping = false;       /* the oversize line ends here */
            continue;
        }
        if (lb->n == 0 || lb->p == NULL)
            continue;                   /* empty line */
        lb->p[lb->n] = '\0';
        {
            size_t n = lb->n;
            lb->n = 0;                  /* before the callback: it may reset/feed again */
            if (fn(arg, lb->p, n) != 0)
                return -1;
        }
    }
    return 0;
}

/* ---- JSON helpers ---------------------------------------------------------- */

/* int64 fields come back as JSON strings ("revision":"12"); accept numbers too. */
static int
get_i64(json_t *obj, const char *name, int64_t *out)
{
    json_t *v = json_object_get(obj, name);
    const char *s;
    char *end;
    long long n;

    *out = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    s = json_string_value(v);
    if (*s == '\0')
        return -1;
    errno = 0;
    n = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (int64_t)n;
    return 0;
}

static int
get_b64(json_t *obj, const char *name, char **out, size_t *out_len)
{
    json_t *v = json_object_get(obj, name);

    if (v == NULL || json_is_null(v)) {
        *out = strdup("");
        *out_len = 0;
        return *out ? 0 : -1;
    }
    if (!json_is_string(v))
        return -1;
    return dir_b64_decode(json_string_value(v), json_string_length(v), out, out_len);
}

static int
kv_parse(json_t *o, struct dir_kv *kv)
{
    memset(kv, 0, sizeof *kv);
    if (!json_is_object(o))
        return -1;
    if (get_b64(o, "key", &kv->key, &kv->key_len) != 0 || kv->key_len == 0)
        goto bad;
    if (get_b64(o, "value", &kv->value, &kv->value_len) != 0)
        goto bad;
    if (get_i64(o, "create_revision", &kv->create_revision) != 0 ||
        get_i64(o, "mod_revision", &kv->mod_revision) != 0 ||
        get_i64(o, "version", &kv->version) != 0 || get_i64(o, "lease", &kv->lease) != 0)
        goto bad;
    return 0;
bad:
    dir_kv_clear(kv);
    return -1;
}

void
dir_kv_clear(struct dir_kv *kv)
{
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof *kv);
}

static int
kvs_parse(json_t *arr, struct dir_kv **out, size_t *n_out)
{
    size_t n, i;
    struct dir_kv *kvs;

    *out = NULL;
    *n_out = 0;
    if (arr == NULL)
        return 0;
    if (!json_is_array(arr))
        return -1;
    n = json_array_size(arr);
    if (n == 0)
        return 0;
    kvs = calloc(n, sizeof *kvs);
    if (kvs == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        if (kv_parse(json_array_get(arr, i), &kvs[i]) != 0) {
            while (i-- > 0)
                dir_kv_clear(&kvs[i]);
            free(kvs);
            return -1;
        }
    }
    *out = kvs;
    *n_out = n;
    return 0;
}

static json_t *
load(const char *s, size_t len)
{
    json_error_t jerr;
    /* JSON_REJECT_DUPLICATES: a value with two "home" fields is ambiguous, refuse it */
    return json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
}

/* ---- responses ----------------------------------------------------------------- */

void
dir_resp_clear(struct dir_resp *r)
{
    for (size_t i = 0; i < r->n_kvs; i++)
        dir_kv_clear(&r->kvs[i]);
    free(r->kvs);
    free(r->error);
    memset(r, 0, sizeof *r);
}

int
dir_resp_parse(const char *body, size_t len, struct dir_resp *out)
{
    json_t *root, *o, *v;
    int rc = -1;

    memset(out, 0, sizeof *out);
    root = load(body, len);
    if (root == NULL || !json_is_object(root))
        goto out;
    o = root;
    v = json_object_get(root, "result");
    if (json_is_object(v))
        o = v;
    v = json_object_get(o, "error");
    if (v != NULL) {
        json_t *c = json_object_get(o, "code");
        const char *msg = json_is_string(v) ? json_string_value(v) : "error";
        json_t *m = json_object_get(o, "message");
        if (json_is_string(m))
            msg = json_string_value(m);
        out->error = strdup(msg);
        out->code = json_is_integer(c) ? (int)json_integer_value(c) : 2;
        rc = 0;
        goto out;
    }
    v = json_object_get(o, "header");
    if (v != NULL && (!json_is_object(v) || get_i64(v, "revision", &out->revision) != 0))
        goto out;
    if (kvs_parse(json_object_get(o, "kvs"), &out->kvs, &out->n_kvs) != 0)
        goto out;
    if (get_i64(o, "count", &out->count) != 0 || get_i64(o, "deleted", &out->deleted) != 0 ||
        get_i64(o, "ID", &out->lease_id) != 0 || get_i64(o, "TTL", &out->ttl) != 0)
        goto out;
    v = json_object_get(o, "succeeded");
    out->succeeded = json_is_true(v);
    out->more = json_is_true(json_object_get(o, "more"));
    /* txn: the compare failed, responses[0].response_range has the current owner */
    v = json_object_get(o, "responses");
    if (json_is_array(v) && out->kvs == NULL) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            json_t *rr = json_object_get(e, "response_range");
            if (json_is_object(rr)) {
                if (kvs_parse(json_object_get(rr, "kvs"), &out->kvs, &out->n_kvs) != 0)
                    goto out;
                break;
            }
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ---- watch lines --------------------------------------------------------------- */

void
dir_watch_msg_clear(struct dir_watch_msg *m)
{
    for (size_t i = 0; i < m->n_events; i++)
        dir_kv_clear(&m->events[i].kv);
    free(m->events);
    free(m->reason);
    memset(m, 0, sizeof *m);
}

int
dir_watch_msg_parse(const char *line, size_t len, struct dir_watch_msg *out)
{
    json_t *root, *o, *v;
    int rc = -1;

    memset(out, 0, sizeof *out);
    root = load(line, len);
    if (root == NULL || !json_is_object(root))
        goto out;
    o = json_object_get(root, "result");
    if (!json_is_object(o)) {
        v = json_object_get(root, "error");
        if (v != NULL) {
            json_t *m = json_is_object(v) ? json_object_get(v, "message") : v;
            out->kind = DIR_WATCH_ERROR;
            out->reason = strdup(json_is_string(m) ? json_string_value(m) : "error");
            rc = 0;
        }
        goto out;
    }
    v = json_object_get(o, "header");
    if (v != NULL && (!json_is_object(v) || get_i64(v, "revision", &out->revision) != 0))
        goto out;
    if (json_is_true(json_object_get(o, "canceled"))) {
        json_t *r = json_object_get(o, "cancel_reason");
        out->kind = DIR_WATCH_CANCELED;
        if (get_i64(o, "compact_revision", &out->compact_revision) != 0)
            goto out;
        if (json_is_string(r))
            out->reason = strdup(json_string_value(r));
        rc = 0;
        goto out;
    }
    v = json_object_get(o, "events");
    if (v != NULL) {
        size_t i, n;
        json_t *e;
        if (!json_is_array(v))
            goto out;
        n = json_array_size(v);
        out->kind = DIR_WATCH_EVENTS;
        if (n > 0) {
            out->events = calloc(n, sizeof *out->events);
            if (out->events == NULL)
                goto out;
        }
        json_array_foreach(v, i, e) {
            json_t *t;
            if (!json_is_object(e))
                goto out;
            t = json_object_get(e, "type");
            /* a PUT has no "type" (default enum value omitted); DELETE is "DELETE" or 1 */
            if (t == NULL || (json_is_string(t) && strcmp(json_string_value(t), "PUT") == 0) ||
                (json_is_integer(t) && json_integer_value(t) == 0))
                out->events[i].is_delete = false;
            else if ((json_is_string(t) && strcmp(json_string_value(t), "DELETE") == 0) ||
                     (json_is_integer(t) && json_integer_value(t) == 1))
                out->events[i].is_delete = true;
            else
                goto out;
            if (kv_parse(json_object_get(e, "kv"), &out->events[i].kv) != 0)
                goto out;
            out->n_events = i + 1;
        }
        rc = 0;
        goto out;
    }
    out->kind = json_is_true(json_object_get(o, "created")) ? DIR_WATCH_CREATED
                                                             : DIR_WATCH_PROGRESS;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ---- directory values ------------------------------------------------------------ */

/* Required string field: present, a string, non-empty, no control characters. */
static const char *
req_str(json_t *o, const char *name, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, name);
    const char *s;

    if (v == NULL) {
        seterr(err, errlen, "missing field \"%s\"", name);
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        seterr(err, errlen, "field \"%s\" must be a non-empty string", name);
        return NULL;
    }
    s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        seterr(err, errlen, "field \"%s\" contains NUL", name);
        return NULL;
    }
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20) {
            seterr(err, errlen, "field \"%s\" contains a control character", name);
            return NULL;
        }
    }
    return s;
}

/* Optional string: absent gives <dflt>; present must be a string (may be empty). */
static int
opt_str(json_t *o, const char *name, const char *dflt, const char **out, char *err,
        size_t errlen)
{
    json_t *v = json_object_get(o, name);

    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (json_string_length(v) == 0 && json_is_string(v)) {
        *out = "";
        return 0;
    }
    *out = req_str(o, name, err, errlen);
    return *out ? 0 : -1;
}

static int
opt_bool(json_t *o, const char *name, bool dflt, bool *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, name);

    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) {
        seterr(err, errlen, "field \"%s\" must be true or false", name);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static bool
is_hex(const char *s, size_t want)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n]))
            return false;
    return n == want;
}

static json_t *
load_object(const char *json, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;

    if (len > DIR_MAX_VALUE) {
        seterr(err, errlen, "value too large (%zu bytes)", len);
        return NULL;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        seterr(err, errlen, "bad JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        seterr(err, errlen, "value is not a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

static char *
dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static bool
name_ok(const char *name, char *err, size_t errlen)
{
    if (name == NULL || *name == '\0' || strlen(name) > 255) {
        seterr(err, errlen, "empty or overlong name in key");
        return false;
    }
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7f || c == '/') {
            seterr(err, errlen, "bad character in key name");
            return false;
        }
    }
    return true;
}

void
dir_user_free(struct dir_user *u)
{
    if (u == NULL)
        return;
    free(u->aor);
    free(u->user);
    free(u->domain);
    free(u->home);
    free(u->display);
    free(u->ha1_md5);
    free(u->ha1_sha256);
    free(u->realm);
    free(u->raw);
    free(u);
}

struct dir_user *
dir_user_decode(const char *key_part, const char *json, size_t len, char *err, size_t errlen)
{
    struct dir_user *u = NULL;
    json_t *o = NULL;
    const char *at, *home, *md5, *sha = NULL, *display, *realm;
    bool enabled;

    if (!name_ok(key_part, err, errlen))
        goto bad;
    at = strchr(key_part, '@');
    if (at == NULL || at == key_part || at[1] == '\0' || strchr(at + 1, '@') != NULL) {
        seterr(err, errlen, "key is not user@domain");
        goto bad;
    }
    o = load_object(json, len, err, errlen);
    if (o == NULL)
        goto bad;
    if (json_object_get(o, "enabled") == NULL) {
        seterr(err, errlen, "missing field \"enabled\"");
        goto bad;
    }
    if (opt_bool(o, "enabled", false, &enabled, err, errlen) != 0)
        goto bad;
    if ((home = req_str(o, "home", err, errlen)) == NULL)
        goto bad;
    if ((md5 = req_str(o, "ha1_md5", err, errlen)) == NULL)
        goto bad;
    if (!is_hex(md5, 32)) {
        seterr(err, errlen, "ha1_md5 is not 32 hex digits");
        goto bad;
    }
    if (json_object_get(o, "ha1_sha256") != NULL) {
        if ((sha = req_str(o, "ha1_sha256", err, errlen)) == NULL)
            goto bad;
        if (!is_hex(sha, 64)) {
            seterr(err, errlen, "ha1_sha256 is not 64 hex digits");
            goto bad;
        }
    }
    if (opt_str(o, "display", "", &display, err, errlen) != 0)
        goto bad;
    if ((realm = req_str(o, "realm", err, errlen)) == NULL)
        goto bad;

    u = calloc(1, sizeof *u);
    if (u == NULL)
        goto bad;
    u->aor = strdup(key_part);
    u->user = dupn(key_part, (size_t)(at - key_part));
    u->domain = strdup(at + 1);
    u->enabled = enabled;
    u->home = strdup(home);
    u->display = strdup(display);
    u->ha1_md5 = strdup(md5);
    u->ha1_sha256 = sha ? strdup(sha) : NULL;
    u->realm = strdup(realm);
    u->raw = dupn(json, len);
    if (!u->aor || !u->user || !u->domain || !u->home || !u->display || !u->ha1_md5 ||
        !u->realm || !u->raw || (sha && !u->ha1_sha256)) {
        seterr(err, errlen, "out of memory");
        goto bad;
    }
    /* the key is the lowercase AoR (schema); tolerate mixed case written by hand */
    dir_lower(u->aor);
    dir_lower(u->user);
    dir_lower(u->domain);
    dir_lower(u->ha1_md5);
    if (u->ha1_sha256)
        dir_lower(u->ha1_sha256);
    json_decref(o);
    return u;
bad:
    json_decref(o);
    dir_user_free(u);
    return NULL;
}

void
dir_server_free(struct dir_server *s)
{
    if (s == NULL)
        return;
    free(s->name);
    free(s->address);
    free(s->cert_subject);
    free(s->admin);
    free(s->raw);
    free(s);
}

struct dir_server *
dir_server_decode(const char *key_part, const char *json, size_t len, char *err,
                  size_t errlen)
{
    struct dir_server *s = NULL;
    json_t *o = NULL;
    const char *role, *address, *subject, *admin;
    enum dir_role r;

    if (!name_ok(key_part, err, errlen))
        goto bad;
    o = load_object(json, len, err, errlen);
    if (o == NULL)
        goto bad;
    if ((role = req_str(o, "role", err, errlen)) == NULL)
        goto bad;
    if (dir_role_parse(role, &r) != 0) {
        seterr(err, errlen, "unknown role \"%.32s\"", role);
        goto bad;
    }
    if ((address = req_str(o, "address", err, errlen)) == NULL)
        goto bad;
    if (strncmp(address, "sip:", 4) != 0 && strncmp(address, "sips:", 5) != 0) {
        seterr(err, errlen, "address is not a sip: or sips: URI");
        goto bad;
    }
    if (opt_str(o, "cert_subject", "", &subject, err, errlen) != 0 ||
        opt_str(o, "admin", "", &admin, err, errlen) != 0)
        goto bad;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        goto bad;
    s->name = strdup(key_part);
    s->role = r;
    s->address = strdup(address);
    s->cert_subject = strdup(subject);
    s->admin = strdup(admin);
    s->raw = dupn(json, len);
    if (!s->name || !s->address || !s->cert_subject || !s->admin || !s->raw) {
        seterr(err, errlen, "out of memory");
        goto bad;
    }
    json_decref(o);
    return s;
bad:
    json_decref(o);
    dir_server_free(s);
    return NULL;
}

int
dir_match_parse(const char *pattern, enum dir_match *kind, const char **arg)
{
    if (strcmp(pattern, "tel") == 0) {
        *kind = DIR_MATCH_TEL;
        *arg = "";
        return 0;
    }
    if (strncmp(pattern, "domain:", 7) == 0 && pattern[7] != '\0') {
        for (const char *p = pattern + 7; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
                return -1;
        *kind = DIR_MATCH_DOMAIN;
        *arg = pattern + 7;
        return 0;
    }
    if (strncmp(pattern, "prefix:", 7) == 0 && pattern[7] != '\0') {
        const char *p = pattern + 7;
        if (*p == '+')
            p++;
        if (*p == '\0')
            return -1;
        for (; *p; p++)
            if (!isdigit((unsigned char)*p))
                return -1;
        *kind = DIR_MATCH_PREFIX;
        *arg = pattern + 7;
        return 0;
    }
    return -1;
}

void
dir_route_free(struct dir_route *r)
{
    if (r == NULL)
        return;
    free(r->name);
    free(r->match);
    free(r->match_arg);
    free(r->next_hop);
    for (size_t i = 0; i < r->n_allow_from; i++)
        free(r->allow_from[i]);
    free(r->allow_from);
    free(r->raw);
    free(r);
}

struct dir_route *
dir_route_decode(const char *key_part, const char *json, size_t len, char *err,
                 size_t errlen)
{
    struct dir_route *r = NULL;
    json_t *o = NULL, *allow;
    const char *match, *arg, *hop;
    enum dir_match kind;
    bool tas;

    if (!name_ok(key_part, err, errlen))
        goto bad;
    o = load_object(json, len, err, errlen);
    if (o == NULL)
        goto bad;
    if ((match = req_str(o, "match", err, errlen)) == NULL)
        goto bad;
    if (dir_match_parse(match, &kind, &arg) != 0) {
        seterr(err, errlen, "bad match pattern \"%.64s\"", match);
        goto bad;
    }
    if ((hop = req_str(o, "next_hop", err, errlen)) == NULL)
        goto bad;
    if (strncmp(hop, "sip:", 4) != 0 && strncmp(hop, "sips:", 5) != 0) {
        seterr(err, errlen, "next_hop is not a sip: or sips: URI");
        goto bad;
    }
    if (opt_bool(o, "treat_as_server", false, &tas, err, errlen) != 0)
        goto bad;
    allow = json_object_get(o, "allow_from");
    if (allow != NULL && !json_is_array(allow)) {
        seterr(err, errlen, "allow_from must be an array of strings");
        goto bad;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL)
        goto bad;
    if (allow != NULL && json_array_size(allow) > 0) {
        size_t i, n = json_array_size(allow);
        json_t *e;
        r->allow_from = calloc(n, sizeof *r->allow_from);
        if (r->allow_from == NULL)
            goto oom;
        json_array_foreach(allow, i, e) {
            if (!json_is_string(e) || json_string_length(e) == 0 ||
                strlen(json_string_value(e)) != json_string_length(e)) {
                seterr(err, errlen, "allow_from must be an array of strings");
                goto bad;
            }
            r->allow_from[i] = strdup(json_string_value(e));
            if (r->allow_from[i] == NULL)
                goto oom;
            r->n_allow_from = i + 1;
        }
    }
    r->name = strdup(key_part);
    r->match = strdup(match);
    r->kind = kind;
    r->match_arg = strdup(arg);
    r->next_hop = strdup(hop);
    r->treat_as_server = tas;
    r->raw = dupn(json, len);
    if (!r->name || !r->match || !r->match_arg || !r->next_hop || !r->raw)
        goto oom;
    if (kind == DIR_MATCH_DOMAIN)
        dir_lower(r->match_arg);
    json_decref(o);
    return r;
oom:
    seterr(err, errlen, "out of memory");
bad:
    json_decref(o);
    dir_route_free(r);
    return NULL;
}
