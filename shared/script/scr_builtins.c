/*
 * scr_builtins: the functions a script may call (docs/script-language.md §6-8).
 * Three kinds: message getters (through struct scr_host), actions (host
 * callbacks, with the "never touch To" rule and the one-terminal-action rule
 * enforced here) and pure helpers computed inside the module. Arity is checked
 * at compile time from the table at the end; types are checked here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "script/scr_int.h"

#define LOG_TEXT_MAX 1024

typedef struct scr_val val;

/* ---- argument helpers -------------------------------------------------- */

static int
want_str(struct scr_vm *vm, const char *fn, int i, const val *a)
{
    if (a->t == V_STR)
        return 0;
    return scr_vm_error(vm, "%s(): argument %d must be a string, got %s", fn, i + 1,
                        scr_type_name(a->t));
}

/* String or null (null yields false); an integer is converted. */
static int
opt_str(struct scr_vm *vm, const char *fn, int i, const val *a, val *out, bool *is_null)
{
    *is_null = a->t == V_NULL;
    if (*is_null)
        return 0;
    if (a->t == V_INT || a->t == V_BOOL)
        return scr_vm_tostr(vm, a, out);
    if (want_str(vm, fn, i, a) != 0)
        return -1;
    *out = *a;
    return 0;
}

static int
want_int(struct scr_vm *vm, const char *fn, int i, const val *a)
{
    if (a->t == V_INT)
        return 0;
    return scr_vm_error(vm, "%s(): argument %d must be an integer, got %s", fn, i + 1,
                        scr_type_name(a->t));
}

static int
lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive search of <n> in <h>; returns the offset or -1. */
static int64_t
find_ci(const char *h, size_t hl, const char *n, size_t nl)
{
    if (nl == 0)
        return 0;
    if (nl > hl)
        return -1;
    for (size_t i = 0; i + nl <= hl; i++) {
        if (lower((unsigned char)h[i]) == lower((unsigned char)n[0]) &&
            strncasecmp(h + i, n, nl) == 0)
            return (int64_t)i;
    }
    return -1;
}

static int
new_list(struct scr_vm *vm, uint32_t n, struct scr_list **out)
{
    struct scr_list *l = scr_vm_alloc(vm, sizeof(*l) + sizeof(val) * (size_t)n);
    if (!l)
        return -1;
    l->n = n;
    *out = l;
    return 0;
}

/* ---- pure string helpers ----------------------------------------------- */

static int
f_contains(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s, t;
    bool ns, nt;
    if (opt_str(vm, "Contains", 0, &a[0], &s, &ns) || opt_str(vm, "Contains", 1, &a[1], &t, &nt))
        return -1;
    *ret = scr_v_bool(!ns && !nt && find_ci(s.u.s, s.len, t.u.s, t.len) >= 0);
    return 0;
}

static int
f_startswith(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s, t;
    bool ns, nt;
    if (opt_str(vm, "StartsWith", 0, &a[0], &s, &ns) ||
        opt_str(vm, "StartsWith", 1, &a[1], &t, &nt))
        return -1;
    *ret = scr_v_bool(!ns && !nt && t.len <= s.len && strncasecmp(s.u.s, t.u.s, t.len) == 0);
    return 0;
}

static int
f_endswith(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s, t;
    bool ns, nt;
    if (opt_str(vm, "EndsWith", 0, &a[0], &s, &ns) || opt_str(vm, "EndsWith", 1, &a[1], &t, &nt))
        return -1;
    *ret = scr_v_bool(!ns && !nt && t.len <= s.len &&
                      strncasecmp(s.u.s + s.len - t.len, t.u.s, t.len) == 0);
    return 0;
}

static int
f_indexof(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s, t;
    bool ns, nt;
    if (opt_str(vm, "IndexOf", 0, &a[0], &s, &ns) || opt_str(vm, "IndexOf", 1, &a[1], &t, &nt))
        return -1;
    *ret = scr_v_int(ns || nt ? -1 : find_ci(s.u.s, s.len, t.u.s, t.len));
    return 0;
}

static int
change_case(struct scr_vm *vm, const char *fn, val *a, val *ret, bool up)
{
    val s;
    bool ns;
    if (opt_str(vm, fn, 0, &a[0], &s, &ns))
        return -1;
    if (ns) {
        *ret = scr_v_null();
        return 0;
    }
    if (scr_vm_str(vm, s.u.s, s.len, ret) != 0)
        return -1;
    char *d = (char *)ret->u.s;
    for (uint32_t i = 0; i < ret->len; i++) {
        if (up && d[i] >= 'a' && d[i] <= 'z')
            d[i] = (char)(d[i] - 32);
        else if (!up && d[i] >= 'A' && d[i] <= 'Z')
            d[i] = (char)(d[i] + 32);
    }
    return 0;
}

static int
f_lower(struct scr_vm *vm, val *a, int argc, val *ret)
{
    return change_case(vm, "Lower", a, ret, false);
}

static int
f_upper(struct scr_vm *vm, val *a, int argc, val *ret)
{
    return change_case(vm, "Upper", a, ret, true);
}

/* Split(s, sep): pieces between occurrences of <sep> (case-sensitive, not trimmed). */
static int
f_split(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s, sep;
    bool ns, nsep;
    struct scr_list *l;

    if (opt_str(vm, "Split", 0, &a[0], &s, &ns) || opt_str(vm, "Split", 1, &a[1], &sep, &nsep))
        return -1;
    if (nsep || sep.len == 0)
        return scr_vm_error(vm, "Split(): separator must be a non-empty string");
    if (ns) {
        if (new_list(vm, 0, &l) != 0)
            return -1;
        ret->t = V_LIST;
        ret->u.l = l;
        return 0;
    }
    uint32_t n = 1;
    for (const char *p = s.u.s; (p = strstr(p, sep.u.s)) != NULL; p += sep.len)
        n++;
    if (scr_vm_charge(vm, n) != 0 || new_list(vm, n, &l) != 0)
        return -1;
    /* one copy of the text with separators cut by NULs; the pieces point into it */
    val copy;
    if (scr_vm_str(vm, s.u.s, s.len, &copy) != 0)
        return -1;
    char *p = (char *)copy.u.s;
    for (uint32_t i = 0; i < n; i++) {
        char *e = i + 1 < n ? strstr(p, sep.u.s) : p + strlen(p);
        *e = '\0';
        l->v[i] = (val){ .t = V_STR, .len = (uint32_t)(e - p), .u.s = p };
        p = e + sep.len;
    }
    ret->t = V_LIST;
    ret->u.l = l;
    return 0;
}

static int
f_length(struct scr_vm *vm, val *a, int argc, val *ret)
{
    switch (a[0].t) {
    case V_STR: *ret = scr_v_int(a[0].len); return 0;
    case V_LIST: *ret = scr_v_int(a[0].u.l->n); return 0;
    case V_NULL: *ret = scr_v_int(0); return 0;
    default:
        return scr_vm_error(vm, "Length(): needs a string or list, got %s",
                            scr_type_name(a[0].t));
    }
}

/* Substring(s, start[, count]): byte offsets; clamped at the end of <s>. */
static int
f_substring(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s;
    bool ns;
    if (opt_str(vm, "Substring", 0, &a[0], &s, &ns) || want_int(vm, "Substring", 1, &a[1]))
        return -1;
    if (argc == 3 && want_int(vm, "Substring", 2, &a[2]))
        return -1;
    int64_t start = a[1].u.i, count = argc == 3 ? a[2].u.i : INT64_MAX;
    if (start < 0 || count < 0)
        return scr_vm_error(vm, "Substring(): negative start or length");
    if (ns) {
        *ret = scr_v_null();
        return 0;
    }
    if (start > (int64_t)s.len)
        start = s.len;
    if (count > (int64_t)s.len - start)
        count = (int64_t)s.len - start;
    if (start + count == (int64_t)s.len) {   /* a tail keeps its NUL: share it */
        *ret = (val){ .t = V_STR, .len = (uint32_t)count, .u.s = s.u.s + start };
        return 0;
    }
    return scr_vm_str(vm, s.u.s + start, (size_t)count, ret);
}

static int
f_toint(struct scr_vm *vm, val *a, int argc, val *ret)
{
    *ret = scr_v_null();
    if (a[0].t == V_INT || a[0].t == V_BOOL) {
        *ret = scr_v_int(a[0].u.i);
        return 0;
    }
    if (a[0].t != V_STR)
        return a[0].t == V_NULL ? 0
                                : scr_vm_error(vm, "ToInt(): cannot convert %s",
                                               scr_type_name(a[0].t));
    const char *p = a[0].u.s, *e = p + a[0].len;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    bool neg = false;
    if (p < e && (*p == '-' || *p == '+'))
        neg = *p++ == '-';
    if (p == e)
        return 0;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        unsigned d = (unsigned)(*p - '0');
        if (v > (lim - d) / 10)
            return 0;              /* out of range: null, like any non-number */
        v = v * 10 + d;
    }
    *ret = scr_v_int(neg ? (int64_t)(0 - v) : (int64_t)v);
    return 0;
}

static int
f_tostring(struct scr_vm *vm, val *a, int argc, val *ret)
{
    return scr_vm_tostr(vm, &a[0], ret);
}

/* ---- URI and header-parameter helpers (RFC 3261 §20, §25.1) ------------- */

/* Skips a quoted display name starting at <p> (a '"'); returns the byte after it. */
static const char *
skip_quoted(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\' && p + 1 < e)
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return e;
}

/* Finds "<...>" outside quotes in [p, e). Returns true and the inside bounds. */
static bool
find_angle(const char *p, const char *e, const char **in, const char **in_end)
{
    while (p < e) {
        if (*p == '"') {
            p = skip_quoted(p, e);
            continue;
        }
        if (*p == '<') {
            const char *q = memchr(p + 1, '>', (size_t)(e - p - 1));
            if (!q)
                return false;
            *in = p + 1;
            *in_end = q;
            return true;
        }
        p++;
    }
    return false;
}

static void
trim(const char **p, const char **e)
{
    while (*p < *e && (**p == ' ' || **p == '\t'))
        (*p)++;
    while (*e > *p && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r' ||
                       (*e)[-1] == '\n'))
        (*e)--;
}

/* GetUri(headerValue): the URI of a name-addr or addr-spec, without header params. */
static int
f_geturi(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s;
    bool ns;
    if (opt_str(vm, "GetUri", 0, &a[0], &s, &ns))
        return -1;
    *ret = scr_v_null();
    if (ns)
        return 0;
    const char *p = s.u.s, *e = p + s.len, *in, *in_end;
    if (find_angle(p, e, &in, &in_end)) {
        p = in;
        e = in_end;
    } else {
        /* addr-spec: params after ';' belong to the header (RFC 3261 §20) */
        const char *semi = memchr(p, ';', s.len);
        if (semi)
            e = semi;
    }
    trim(&p, &e);
    if (p == e)
        return 0;
    return scr_vm_str(vm, p, (size_t)(e - p), ret);
}

/* GetUserAtHost(uri): "user@host" (or "host") without scheme, port, params, headers. */
static int
f_getuserathost(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s;
    bool ns;
    if (opt_str(vm, "GetUserAtHost", 0, &a[0], &s, &ns))
        return -1;
    *ret = scr_v_null();
    if (ns)
        return 0;
    const char *p = s.u.s, *e = p + s.len, *in, *in_end;
    if (find_angle(p, e, &in, &in_end)) {
        p = in;
        e = in_end;
    }
    trim(&p, &e);
    const char *colon = memchr(p, ':', (size_t)(e - p));
    if (colon) {
        const char *q = p;
        while (q < colon && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
            q++;
        if (q == colon && q > p)                /* a scheme: sip:, sips:, tel: */
            p = colon + 1;
    }
    const char *stop = p;
    while (stop < e && *stop != ';' && *stop != '?' && *stop != '>')
        stop++;
    const char *at = memchr(p, '@', (size_t)(stop - p));
    const char *host = at ? at + 1 : p;
    const char *hend = host;
    if (hend < stop && *hend == '[') {          /* IPv6 reference */
        const char *rb = memchr(hend, ']', (size_t)(stop - hend));
        hend = rb ? rb + 1 : stop;
    } else {
        while (hend < stop && *hend != ':')
            hend++;
    }
    if (hend == p)
        return 0;
    return scr_vm_str(vm, p, (size_t)(hend - p), ret);
}

/* Looks up ";name[=value]" in the parameter list [p, e); value "" for a flag. */
static int
param_lookup(struct scr_vm *vm, const char *p, const char *e, const val *name, val *ret)
{
    *ret = scr_v_null();
    while (p < e) {
        while (p < e && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        const char *ps = p;
        while (p < e && *p != ';') {
            if (*p == '"') {
                p = skip_quoted(p, e);
                continue;
            }
            p++;
        }
        const char *pe = p, *eq = memchr(ps, '=', (size_t)(pe - ps));
        const char *ne = eq ? eq : pe;
        trim(&ps, &ne);
        if ((size_t)(ne - ps) == name->len && strncasecmp(ps, name->u.s, name->len) == 0) {
            if (!eq)
                return scr_vm_str(vm, "", 0, ret);
            const char *vs = eq + 1, *ve = pe;
            trim(&vs, &ve);
            return scr_vm_str(vm, vs, (size_t)(ve - vs), ret);
        }
    }
    return 0;
}

/* GetUriParameter(uri, name): a URI parameter, e.g. maddr, transport, user. */
static int
f_geturiparameter(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s, name;
    bool ns, nn;
    if (opt_str(vm, "GetUriParameter", 0, &a[0], &s, &ns) ||
        opt_str(vm, "GetUriParameter", 1, &a[1], &name, &nn))
        return -1;
    *ret = scr_v_null();
    if (ns || nn)
        return 0;
    const char *p = s.u.s, *e = p + s.len, *in, *in_end;
    if (find_angle(p, e, &in, &in_end)) {
        p = in;
        e = in_end;
    }
    const char *semi = memchr(p, ';', (size_t)(e - p));
    if (!semi)
        return 0;
    const char *q = memchr(semi, '?', (size_t)(e - semi));
    return param_lookup(vm, semi, q ? q : e, &name, ret);
}

/* GetParameter(headerValue, name): a header parameter, e.g. tag, epid, expires. */
static int
f_getparameter(struct scr_vm *vm, val *a, int argc, val *ret)
{
    val s, name;
    bool ns, nn;
    if (opt_str(vm, "GetParameter", 0, &a[0], &s, &ns) ||
        opt_str(vm, "GetParameter", 1, &a[1], &name, &nn))
        return -1;
    *ret = scr_v_null();
    if (ns || nn)
        return 0;
    const char *p = s.u.s, *e = p + s.len, *in, *in_end;
    if (find_angle(p, e, &in, &in_end))
        p = in_end + 1;
    const char *semi = memchr(p, ';', (size_t)(e - p));
    if (!semi)
        return 0;
    return param_lookup(vm, semi, e, &name, ret);
}

/* ---- time -------------------------------------------------------------- */

static int64_t
now_s(struct scr_vm *vm)
{
    return vm->h->now ? vm->h->now(vm->h->arg) : (int64_t)time(NULL);
}

static int
f_now(struct scr_vm *vm, val *a, int argc, val *ret)
{
    *ret = scr_v_int(now_s(vm));
    return 0;
}

/* Broken-down time: server local time, or UTC shifted by the optional offset in minutes. */
static int
tm_at(struct scr_vm *vm, const char *fn, val *a, int argc, int off_arg, struct tm *tm)
{
    time_t t = (time_t)now_s(vm);
    if (argc > off_arg) {
        if (want_int(vm, fn, off_arg, &a[off_arg]))
            return -1;
        int64_t off = a[off_arg].u.i;
        if (off < -24 * 60 || off > 24 * 60)
            return scr_vm_error(vm, "%s(): UTC offset %lld minutes out of range", fn,
                                (long long)off);
        t += (time_t)(off * 60);
        if (!gmtime_r(&t, tm))
            return scr_vm_error(vm, "%s(): time out of range", fn);
        return 0;
    }
    if (!localtime_r(&t, tm))
        return scr_vm_error(vm, "%s(): time out of range", fn);
    return 0;
}

static int
f_hour(struct scr_vm *vm, val *a, int argc, val *ret)
{
    struct tm tm;
    if (tm_at(vm, "Hour", a, argc, 0, &tm))
        return -1;
    *ret = scr_v_int(tm.tm_hour);
    return 0;
}

static int
f_minute(struct scr_vm *vm, val *a, int argc, val *ret)
{
    struct tm tm;
    if (tm_at(vm, "Minute", a, argc, 0, &tm))
        return -1;
    *ret = scr_v_int(tm.tm_min);
    return 0;
}

static int
f_dayofweek(struct scr_vm *vm, val *a, int argc, val *ret)
{
    struct tm tm;
    if (tm_at(vm, "DayOfWeek", a, argc, 0, &tm))
        return -1;
    *ret = scr_v_int(tm.tm_wday);
    return 0;
}

/* IsBusinessHours(start, end[, offset]): Monday-Friday and start <= hour < end. */
static int
f_isbusinesshours(struct scr_vm *vm, val *a, int argc, val *ret)
{
    struct tm tm;
    if (want_int(vm, "IsBusinessHours", 0, &a[0]) || want_int(vm, "IsBusinessHours", 1, &a[1]))
        return -1;
    if (a[0].u.i < 0 || a[0].u.i > 24 || a[1].u.i < 0 || a[1].u.i > 24)
        return scr_vm_error(vm, "IsBusinessHours(): hours must be 0-24");
    if (tm_at(vm, "IsBusinessHours", a, argc, 2, &tm))
        return -1;
    *ret = scr_v_bool(tm.tm_wday >= 1 && tm.tm_wday <= 5 && tm.tm_hour >= a[0].u.i &&
                      tm.tm_hour < a[1].u.i);
    return 0;
}

/* ---- message getters --------------------------------------------------- */

static int
f_getheader(struct scr_vm *vm, val *a, int argc, val *ret)
{
    if (want_str(vm, "GetHeader", 0, &a[0]))
        return -1;
    *ret = vm->h->header ? scr_v_cstr(vm->h->header(vm->h->arg, a[0].u.s, 0)) : scr_v_null();
    return 0;
}

static int
f_getheaders(struct scr_vm *vm, val *a, int argc, val *ret)
{
    const struct scr_host *h = vm->h;
    struct scr_list *l;
    uint32_t n = 0;

    if (want_str(vm, "GetHeaders", 0, &a[0]))
        return -1;
    while (h->header && n < SCR_MAX_ENDPOINTS && h->header(h->arg, a[0].u.s, n))
        n++;
    if (scr_vm_charge(vm, n) != 0 || new_list(vm, n, &l) != 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        l->v[i] = scr_v_cstr(h->header(h->arg, a[0].u.s, i));
    }
    ret->t = V_LIST;
    ret->u.l = l;
    return 0;
}

static int
f_getbody(struct scr_vm *vm, val *a, int argc, val *ret)
{
    *ret = vm->h->body ? scr_v_cstr(vm->h->body(vm->h->arg)) : scr_v_null();
    return 0;
}

static int
f_contenttype(struct scr_vm *vm, val *a, int argc, val *ret)
{
    *ret = vm->h->content_type ? scr_v_cstr(vm->h->content_type(vm->h->arg)) : scr_v_null();
    return 0;
}

struct ep_collect {
    struct scr_vm *vm;
    struct scr_endpoint *v;
    uint32_t n, cap;
    bool failed;                  /* arena exhausted: the error is set */
    bool full;                    /* SCR_MAX_ENDPOINTS kept; the rest is ignored */
};

static int
ep_cb(void *cb_arg, const struct scr_endpoint *ep)
{
    struct ep_collect *c = cb_arg;
    if (c->failed || c->full)
        return -1;
    if (c->n >= SCR_MAX_ENDPOINTS) {
        c->full = true;
        return -1;
    }
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 8;
        struct scr_endpoint *v = scr_vm_alloc(c->vm, sizeof(*v) * cap);
        if (!v) {
            c->failed = true;
            return -1;
        }
        if (c->n)
            memcpy(v, c->v, sizeof(*v) * c->n);
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = *ep;
    return 0;
}

/* Endpoints(userAtHost): list of endpoint records (empty when not registered). */
static int
f_endpoints(struct scr_vm *vm, val *a, int argc, val *ret)
{
    struct ep_collect c = { .vm = vm };
    struct scr_list *l;
    val s;
    bool ns;

    if (opt_str(vm, "Endpoints", 0, &a[0], &s, &ns))
        return -1;
    if (!ns && vm->h->endpoints) {
        if (vm->h->endpoints(vm->h->arg, s.u.s, ep_cb, &c) != 0 && !c.failed && !c.full)
            return scr_vm_error(vm, "Endpoints(): lookup failed for '%.64s'", s.u.s);
        if (c.failed)
            return -1;
    }
    if (scr_vm_charge(vm, c.n) != 0 || new_list(vm, c.n, &l) != 0)
        return -1;
    for (uint32_t i = 0; i < c.n; i++)
        l->v[i] = (val){ .t = V_REC, .u.r = &c.v[i] };
    ret->t = V_LIST;
    ret->u.l = l;
    return 0;
}

/* ---- actions ----------------------------------------------------------- */

static const char *
handled_name(enum scr_outcome o)
{
    switch (o) {
    case SCR_PROXIED: return "ProxyRequest";
    case SCR_RESPONDED: return "Respond";
    case SCR_REDIRECTED: return "Redirect";
    default: return "Dispatch";
    }
}

/* Actions change the message only until one of them has decided its fate. */
static int
not_handled(struct scr_vm *vm, const char *fn)
{
    if (vm->outcome == SCR_PASS)
        return 0;
    return scr_vm_error(vm, "%s() after %s(): the message is already handled", fn,
                        handled_name(vm->outcome));
}

static int
no_host(struct scr_vm *vm, const char *fn)
{
    return scr_vm_error(vm, "%s() is not available here", fn);
}

static int
refused(struct scr_vm *vm, const char *fn)
{
    return scr_vm_error(vm, "%s() refused by the server", fn);
}

/* A header name is a token (RFC 3261 §25.1); To is never touched (design §4). */
static int
check_header_name(struct scr_vm *vm, const char *fn, const val *name)
{
    if (want_str(vm, fn, 0, name))
        return -1;
    if (name->len == 0)
        return scr_vm_error(vm, "%s(): empty header name", fn);
    for (uint32_t i = 0; i < name->len; i++) {
        unsigned char c = (unsigned char)name->u.s[i];
        if (c <= ' ' || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c))
            return scr_vm_error(vm, "%s(): invalid header name '%.64s'", fn, name->u.s);
    }
    if (strcasecmp(name->u.s, "To") == 0 || strcasecmp(name->u.s, "t") == 0)
        return scr_vm_error(vm, "%s(): the To header may not be modified", fn);
    return 0;
}

static int
check_header_value(struct scr_vm *vm, const char *fn, const val *v)
{
    if (want_str(vm, fn, 1, v))
        return -1;
    if (memchr(v->u.s, '\r', v->len) || memchr(v->u.s, '\n', v->len))
        return scr_vm_error(vm, "%s(): header value may not contain CR or LF", fn);
    return 0;
}

static int
f_proxyrequest(struct scr_vm *vm, val *a, int argc, val *ret)
{
    const struct scr_host *h = vm->h;
    /* ProxyRequest() after ProxyRequest() adds a branch: the request forks. */
    if (vm->outcome != SCR_PROXIED && not_handled(vm, "ProxyRequest"))
        return -1;
    if (argc == 1 && want_str(vm, "ProxyRequest", 0, &a[0]))
        return -1;
    if (h->is_request && !h->is_request(h->arg))
        return scr_vm_error(vm, "ProxyRequest() on a response");
    if (!h->proxy_request)
        return no_host(vm, "ProxyRequest");
    if (h->proxy_request(h->arg, argc == 1 ? a[0].u.s : NULL) != 0)
        return refused(vm, "ProxyRequest");
    vm->outcome = SCR_PROXIED;
    return 0;
}

static int
f_respond(struct scr_vm *vm, val *a, int argc, val *ret)
{
    const struct scr_host *h = vm->h;
    if (not_handled(vm, "Respond") || want_int(vm, "Respond", 0, &a[0]) ||
        want_str(vm, "Respond", 1, &a[1]))
        return -1;
    if (argc == 3 && want_str(vm, "Respond", 2, &a[2]))
        return -1;
    if (a[0].u.i < 200 || a[0].u.i > 699)
        return scr_vm_error(vm, "Respond(): status %lld is not a final response (200-699)",
                            (long long)a[0].u.i);
    if (memchr(a[1].u.s, '\r', a[1].len) || memchr(a[1].u.s, '\n', a[1].len))
        return scr_vm_error(vm, "Respond(): reason may not contain CR or LF");
    if (h->is_request && !h->is_request(h->arg))
        return scr_vm_error(vm, "Respond() on a response");
    if (!h->respond)
        return no_host(vm, "Respond");
    if (h->respond(h->arg, (int)a[0].u.i, a[1].u.s, argc == 3 ? a[2].u.s : NULL) != 0)
        return refused(vm, "Respond");
    vm->outcome = SCR_RESPONDED;
    return 0;
}

static int
f_redirect(struct scr_vm *vm, val *a, int argc, val *ret)
{
    const struct scr_host *h = vm->h;
    if (not_handled(vm, "Redirect") || want_str(vm, "Redirect", 0, &a[0]))
        return -1;
    if (h->is_request && !h->is_request(h->arg))
        return scr_vm_error(vm, "Redirect() on a response");
    if (!h->redirect)
        return no_host(vm, "Redirect");
    if (h->redirect(h->arg, a[0].u.s) != 0)
        return refused(vm, "Redirect");
    vm->outcome = SCR_REDIRECTED;
    return 0;
}

static int
header_action(struct scr_vm *vm, const char *fn, val *a,
              int (*cb)(void *, const char *, const char *))
{
    if (not_handled(vm, fn) || check_header_name(vm, fn, &a[0]) ||
        check_header_value(vm, fn, &a[1]))
        return -1;
    if (!cb)
        return no_host(vm, fn);
    if (cb(vm->h->arg, a[0].u.s, a[1].u.s) != 0)
        return refused(vm, fn);
    return 0;
}

static int
f_addheader(struct scr_vm *vm, val *a, int argc, val *ret)
{
    return header_action(vm, "AddHeader", a, vm->h->add_header);
}

static int
f_setheader(struct scr_vm *vm, val *a, int argc, val *ret)
{
    return header_action(vm, "SetHeader", a, vm->h->set_header);
}

static int
f_removeheader(struct scr_vm *vm, val *a, int argc, val *ret)
{
    if (not_handled(vm, "RemoveHeader") || check_header_name(vm, "RemoveHeader", &a[0]))
        return -1;
    if (!vm->h->remove_header)
        return no_host(vm, "RemoveHeader");
    if (vm->h->remove_header(vm->h->arg, a[0].u.s) != 0)
        return refused(vm, "RemoveHeader");
    return 0;
}

static int
string_action(struct scr_vm *vm, const char *fn, val *a, int (*cb)(void *, const char *))
{
    if (not_handled(vm, fn) || want_str(vm, fn, 0, &a[0]))
        return -1;
    if (memchr(a[0].u.s, '\r', a[0].len) || memchr(a[0].u.s, '\n', a[0].len))
        return scr_vm_error(vm, "%s(): argument may not contain CR or LF", fn);
    if (!cb)
        return no_host(vm, fn);
    if (cb(vm->h->arg, a[0].u.s) != 0)
        return refused(vm, fn);
    return 0;
}

static int
f_addroute(struct scr_vm *vm, val *a, int argc, val *ret)
{
    return string_action(vm, "AddRoute", a, vm->h->add_route);
}

static int
f_settoepid(struct scr_vm *vm, val *a, int argc, val *ret)
{
    return string_action(vm, "SetToEpid", a, vm->h->set_to_epid);
}

static int
f_dispatch(struct scr_vm *vm, val *a, int argc, val *ret)
{
    if (not_handled(vm, "Dispatch") || want_str(vm, "Dispatch", 0, &a[0]))
        return -1;
    if (!vm->h->dispatch)
        return no_host(vm, "Dispatch");
    bool ok = vm->h->dispatch(vm->h->arg, a[0].u.s);
    if (ok)
        vm->outcome = SCR_DISPATCHED;
    *ret = scr_v_bool(ok);
    return 0;
}

/* Log(level, args...): level "err"/"warn"/"info"/"debug" or 0-3; args are concatenated. */
static int
f_log(struct scr_vm *vm, val *a, int argc, val *ret)
{
    static const char *const names[] = { "err", "warn", "info", "debug" };
    char text[LOG_TEXT_MAX];
    size_t n = 0;
    int level = -1;

    if (a[0].t == V_INT && a[0].u.i >= 0 && a[0].u.i <= 3) {
        level = (int)a[0].u.i;
    } else if (a[0].t == V_STR) {
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(a[0].u.s, names[i]) == 0)
                level = i;
        }
        if (strcasecmp(a[0].u.s, "error") == 0)
            level = 0;
        else if (strcasecmp(a[0].u.s, "warning") == 0)
            level = 1;
    }
    if (level < 0)
        return scr_vm_error(vm, "Log(): level must be \"err\", \"warn\", \"info\", \"debug\" "
                                "or 0-3");
    for (int i = 1; i < argc; i++) {
        val s;
        if (a[i].t == V_LIST || a[i].t == V_REC) {
            s = scr_v_cstr(a[i].t == V_LIST ? "[list]" : "[endpoint]");
        } else if (scr_vm_tostr(vm, &a[i], &s) != 0) {
            return -1;
        }
        size_t k = s.len < sizeof(text) - 1 - n ? s.len : sizeof(text) - 1 - n;
        memcpy(text + n, s.u.s, k);
        n += k;
    }
    text[n] = '\0';
    for (size_t i = 0; i < n; i++) {           /* one log line per call */
        if (text[i] == '\r' || text[i] == '\n')
            text[i] = ' ';
    }
    if (vm->h->log)
        vm->h->log(vm->h->arg, level, text);
    return 0;
}

/* ---- table ------------------------------------------------------------- */

const struct scr_builtin scr_builtins[] = {
    /* message */
    { "GetHeader", 1, 1, f_getheader },
    { "GetHeaders", 1, 1, f_getheaders },
    { "GetUri", 1, 1, f_geturi },
    { "GetUserAtHost", 1, 1, f_getuserathost },
    { "GetUriParameter", 2, 2, f_geturiparameter },
    { "GetParameter", 2, 2, f_getparameter },
    { "GetBody", 0, 0, f_getbody },
    { "ContentType", 0, 0, f_contenttype },
    { "Endpoints", 1, 1, f_endpoints },
    /* actions */
    { "ProxyRequest", 0, 1, f_proxyrequest },
    { "Respond", 2, 3, f_respond },
    { "Redirect", 1, 1, f_redirect },
    { "AddHeader", 2, 2, f_addheader },
    { "SetHeader", 2, 2, f_setheader },
    { "RemoveHeader", 1, 1, f_removeheader },
    { "AddRoute", 1, 1, f_addroute },
    { "SetToEpid", 1, 1, f_settoepid },
    { "Dispatch", 1, 1, f_dispatch },
    { "Log", 2, SCR_MAX_ARGS, f_log },
    /* pure */
    { "Contains", 2, 2, f_contains },
    { "StartsWith", 2, 2, f_startswith },
    { "EndsWith", 2, 2, f_endswith },
    { "Lower", 1, 1, f_lower },
    { "Upper", 1, 1, f_upper },
    { "Split", 2, 2, f_split },
    { "Length", 1, 1, f_length },
    { "Substring", 2, 3, f_substring },
    { "IndexOf", 2, 2, f_indexof },
    { "ToInt", 1, 1, f_toint },
    { "ToString", 1, 1, f_tostring },
    { "Now", 0, 0, f_now },
    { "Hour", 0, 1, f_hour },
    { "Minute", 0, 1, f_minute },
    { "DayOfWeek", 0, 1, f_dayofweek },
    { "IsBusinessHours", 2, 3, f_isbusinesshours },
};

const size_t scr_nbuiltins = sizeof(scr_builtins) / sizeof(scr_builtins[0]);

int
scr_builtin_find(const char *name, size_t len)
{
    for (size_t i = 0; i < scr_nbuiltins; i++) {
        if (strlen(scr_builtins[i].name) == len && memcmp(scr_builtins[i].name, name, len) == 0)
            return (int)i;
    }
    return -1;
}
