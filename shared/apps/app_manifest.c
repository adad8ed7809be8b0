#define LOG_MODULE "apps"
#include "apps/app_manifest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A growable output buffer for the compile text. */
struct obuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void
ob_add(struct obuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
ob_spaces(struct obuf *b, size_t n)
{
    static const char sp[] = "                                ";
    while (n > 0) {
        size_t k = n < sizeof sp - 1 ? n : sizeof sp - 1;
        ob_add(b, sp, k);
        n -= k;
    }
}

const char *
app_err_str(const struct app_err *err, char *buf, size_t len)
{
    if (err->line > 0 && err->col > 0)
        snprintf(buf, len, "%s:%d:%d: %s", err->file, err->line, err->col, err->msg);
    else if (err->line > 0)
        snprintf(buf, len, "%s:%d: %s", err->file, err->line, err->msg);
    else
        snprintf(buf, len, "%s: %s", err->file, err->msg);
    return buf;
}

static int __attribute__((format(printf, 5, 6)))
fail(struct app_err *err, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    snprintf(err->file, sizeof err->file, "%s", file ? file : "<manifest>");
    err->line = line;
    err->col = col;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static bool
is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

/* RFC 3261 §25.1 token characters. */
static bool
is_token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-.!%*_+`'~", c) != NULL);
}

static bool
is_ident(const char *s, size_t n)
{
    if (n == 0 || n > 128 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static bool
word_is(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* One header line being parsed: where it is and its value. */
struct hline {
    const char *file;
    int line;
    const char *key;
    size_t klen;
    const char *val;     /* value, blanks trimmed */
    size_t vlen;
    int vcol;            /* column of the value's first byte */
};

static int
parse_bool(const struct hline *h, bool *out, struct app_err *err)
{
    if (word_is(h->val, h->vlen, "true") || word_is(h->val, h->vlen, "yes")) {
        *out = true;
        return 0;
    }
    if (word_is(h->val, h->vlen, "false") || word_is(h->val, h->vlen, "no")) {
        *out = false;
        return 0;
    }
    return fail(err, h->file, h->line, h->vcol, "%.*s: expected true or false, got '%.*s'", (int)h->klen,
                h->key, (int)(h->vlen > 64 ? 64 : h->vlen), h->val);
}

/* Splits the value into tokens separated by commas and/or blanks; calls <fn> for each. */
typedef int token_fn(struct app_manifest *m, const struct hline *h, const char *tok, size_t n, int col,
                     struct app_err *err);

static int
each_token(struct app_manifest *m, const struct hline *h, token_fn *fn, struct app_err *err)
{
    size_t i = 0;
    int count = 0;

    while (i < h->vlen) {
        size_t start;
        while (i < h->vlen && (h->val[i] == ' ' || h->val[i] == '\t'))
            i++;
        if (i >= h->vlen)
            break;
        if (h->val[i] == ',')
            return fail(err, h->file, h->line, h->vcol + (int)i, "%.*s: empty item", (int)h->klen, h->key);
        start = i;
        while (i < h->vlen && h->val[i] != ',' && h->val[i] != ' ' && h->val[i] != '\t')
            i++;
        if (fn(m, h, h->val + start, i - start, h->vcol + (int)start, err) != 0)
            return -1;
        count++;
        while (i < h->vlen && (h->val[i] == ' ' || h->val[i] == '\t'))
            i++;
        if (i < h->vlen && h->val[i] == ',') {
            i++;
            size_t j = i;
            while (j < h->vlen && (h->val[j] == ' ' || h->val[j] == '\t'))
                j++;
            if (j >= h->vlen)
                return fail(err, h->file, h->line, h->vcol + (int)i - 1, "%.*s: trailing comma", (int)h->klen,
                            h->key);
        }
    }
    if (count == 0)
        return fail(err, h->file, h->line, h->vcol, "%.*s: empty value", (int)h->klen, h->key);
    return 0;
}

static int
method_token(struct app_manifest *m, const struct hline *h, const char *tok, size_t n, int col,
             struct app_err *err)
{
    if (n == 1 && tok[0] == '*') {
        m->all_methods = true;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_token_char(tok[i]))
            return fail(err, h->file, h->line, col + (int)i, "request-filter: invalid character in method '%.*s'",
                        (int)(n > 32 ? 32 : n), tok);
    }
    if (n >= sizeof m->methods[0])
        return fail(err, h->file, h->line, col, "request-filter: method name too long");
    if (m->nmethods >= APP_MAX_METHODS)
        return fail(err, h->file, h->line, col, "request-filter: more than %d methods", APP_MAX_METHODS);
    for (size_t i = 0; i < n; i++)
        m->methods[m->nmethods][i] = (char)((tok[i] >= 'a' && tok[i] <= 'z') ? tok[i] - 32 : tok[i]);
    m->methods[m->nmethods][n] = '\0';
    m->nmethods++;
    return 0;
}

static void
set_code(struct app_manifest *m, int code)
{
    m->responses[code / 8] |= (uint8_t)(1u << (code % 8));
    m->any_response = true;
}

static int
response_token(struct app_manifest *m, const struct hline *h, const char *tok, size_t n, int col,
               struct app_err *err)
{
    if (n == 1 && tok[0] == '*') {
        for (int c = 100; c <= 699; c++)
            set_code(m, c);
        return 0;
    }
    if (word_is(tok, n, "none"))
        return fail(err, h->file, h->line, col, "response-filter: 'none' cannot be combined with codes");
    if (n == 3 && tok[0] >= '1' && tok[0] <= '6' && (tok[1] == 'x' || tok[1] == 'X') &&
        (tok[2] == 'x' || tok[2] == 'X')) {
        int base = (tok[0] - '0') * 100;
        for (int c = base; c < base + 100; c++)
            set_code(m, c);
        return 0;
    }
    if (n == 3 && tok[0] >= '1' && tok[0] <= '6' && tok[1] >= '0' && tok[1] <= '9' && tok[2] >= '0' &&
        tok[2] <= '9') {
        set_code(m, (tok[0] - '0') * 100 + (tok[1] - '0') * 10 + (tok[2] - '0'));
        return 0;
    }
    return fail(err, h->file, h->line, col,
                "response-filter: '%.*s' is not a status code (100-699) or class (1xx-6xx)",
                (int)(n > 32 ? 32 : n), tok);
}

static bool
is_int_literal(const char *s, size_t n)
{
    size_t i = 0;
    if (n > 0 && s[0] == '-')
        i = 1;
    if (i == n || n - i > 18)
        return false;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/*
 * param.NAME: VALUE -> "   NAME= VALUE;" with NAME and the value at their columns.
 * <line> is the whole line, <kcol> the 1-based column of the key.
 */
static int
emit_param(struct obuf *ob, const struct hline *h, const char *line, int kcol, struct app_err *err)
{
    static const char *const reserved[] = {"if", "else", "foreach", "in", "return", "break", "true",
                                           "false", "null", "sipRequest", "sipResponse"};
    const char *name = h->key + 6;
    size_t nlen = h->klen - 6;
    int ncol = kcol + 6;
    const char *colon;

    if (!is_ident(name, nlen))
        return fail(err, h->file, h->line, ncol, "param.%.*s: a parameter name is a script identifier",
                    (int)(nlen > 64 ? 64 : nlen), name);
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        if (strlen(reserved[i]) == nlen && strncmp(reserved[i], name, nlen) == 0)
            return fail(err, h->file, h->line, ncol, "param.%.*s: '%.*s' is reserved", (int)nlen, name,
                        (int)nlen, name);
    }
    colon = memchr(name + nlen, ':', (size_t)(h->val - (name + nlen)));
    ob_spaces(ob, (size_t)(ncol - 1));
    ob_add(ob, name, nlen);
    ob_add(ob, name + nlen, (size_t)(colon - (name + nlen)));     /* blanks before ':' */
    ob_add(ob, "=", 1);
    ob_add(ob, colon + 1, (size_t)(h->val - (colon + 1)));         /* blanks after ':' */
    if (h->vlen >= 2 && h->val[0] == '"' && h->val[h->vlen - 1] == '"') {
        ob_add(ob, h->val, h->vlen);   /* already a script string literal */
    } else if (is_int_literal(h->val, h->vlen) || word_is(h->val, h->vlen, "true") ||
               word_is(h->val, h->vlen, "false")) {
        if (h->val[0] == 't' || h->val[0] == 'T')
            ob_add(ob, "true", 4);
        else if (h->val[0] == 'f' || h->val[0] == 'F')
            ob_add(ob, "false", 5);
        else
            ob_add(ob, h->val, h->vlen);
    } else {
        ob_add(ob, "\"", 1);
        for (size_t i = 0; i < h->vlen; i++) {
            char c = h->val[i];
            if (c == '"' || c == '\\') {
                char e[2] = {'\\', c};
                ob_add(ob, e, 2);
            } else if (c == '\t') {
                ob_add(ob, "\\t", 2);
            } else {
                ob_add(ob, &c, 1);
            }
        }
        ob_add(ob, "\"", 1);
    }
    ob_add(ob, ";", 1);
    (void)line;
    return 0;
}

enum key_id {
    K_NAME = 0,
    K_STRICT,
    K_CRITICAL,
    K_REQF,
    K_RESPF,
    K_STEPS,
    K_COUNT,
};

static const char *const key_names[K_COUNT] = {"name", "strict-route", "critical", "request-filter",
                                               "response-filter", "max-steps"};

struct app_manifest *
app_manifest_parse(const char *text, size_t len, const char *file, struct app_err *err)
{
    struct app_manifest *m = calloc(1, sizeof *m);
    struct obuf ob = {0};
    int seen[K_COUNT] = {0};
    size_t pos = 0;
    int line = 0;
    bool sep = false;

    if (file == NULL)
        file = "<manifest>";
    if (m == NULL || (m->file = strdup(file)) == NULL) {
        fail(err, file, 0, 0, "out of memory");
        goto bad;
    }
    if (len > APP_MAX_MANIFEST) {
        fail(err, file, 0, 0, "manifest is larger than %u bytes", APP_MAX_MANIFEST);
        goto bad;
    }
    while (pos < len && !sep) {
        const char *ls = text + pos, *nl = memchr(ls, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - ls) : len - pos;
        size_t i = 0, e = ll;
        struct hline h = {.file = file};
        enum key_id k;

        line++;
        pos += ll + (nl ? 1 : 0);
        if (e > 0 && ls[e - 1] == '\r')
            e--;
        for (size_t j = 0; j < e; j++) {
            unsigned char c = (unsigned char)ls[j];
            if (c == 0 || (c < 0x20 && c != '\t') || c == 0x7f) {
                fail(err, file, line, (int)j + 1, "control character 0x%02x in the header", c);
                goto bad;
            }
        }
        while (i < e && (ls[i] == ' ' || ls[i] == '\t'))
            i++;
        while (e > i && (ls[e - 1] == ' ' || ls[e - 1] == '\t'))
            e--;
        if (i == e || ls[i] == '#') {
            ob_add(&ob, "\n", 1);
            continue;
        }
        if (e - i == 3 && memcmp(ls + i, "---", 3) == 0) {
            ob_add(&ob, "\n", 1);
            sep = true;
            break;
        }
        h.line = line;
        h.key = ls + i;
        while (i < e && is_key_char(ls[i]))
            i++;
        h.klen = (size_t)(ls + i - h.key);
        if (h.klen == 0) {
            fail(err, file, line, (int)i + 1, "expected 'key: value' or '---'");
            goto bad;
        }
        while (i < e && (ls[i] == ' ' || ls[i] == '\t'))
            i++;
        if (i >= e || ls[i] != ':') {
            fail(err, file, line, (int)i + 1, "expected ':' after '%.*s'", (int)(h.klen > 64 ? 64 : h.klen),
                 h.key);
            goto bad;
        }
        i++;
        while (i < e && (ls[i] == ' ' || ls[i] == '\t'))
            i++;
        h.val = ls + i;
        h.vlen = e - i;
        h.vcol = (int)i + 1;
        if (h.klen > 6 && strncmp(h.key, "param.", 6) == 0) {
            if (h.vlen == 0) {
                fail(err, file, line, h.vcol, "%.*s: empty value", (int)h.klen, h.key);
                goto bad;
            }
            if (emit_param(&ob, &h, ls, (int)(h.key - ls) + 1, err) != 0)
                goto bad;
            ob_add(&ob, "\n", 1);
            continue;
        }
        for (k = 0; k < K_COUNT; k++)
            if (word_is(h.key, h.klen, key_names[k]))
                break;
        if (k == K_COUNT) {
            fail(err, file, line, (int)(h.key - ls) + 1,
                 "unknown key '%.*s' (expected name, strict-route, critical, request-filter, "
                 "response-filter, max-steps or param.NAME)",
                 (int)(h.klen > 64 ? 64 : h.klen), h.key);
            goto bad;
        }
        if (seen[k]) {
            fail(err, file, line, (int)(h.key - ls) + 1, "duplicate key '%s' (first on line %d)", key_names[k],
                 seen[k]);
            goto bad;
        }
        seen[k] = line;
        if (h.vlen == 0 && k != K_RESPF) {
            fail(err, file, line, h.vcol, "%s: empty value", key_names[k]);
            goto bad;
        }
        switch (k) {
        case K_NAME:
            if (h.vlen >= APP_MAX_NAME) {
                fail(err, file, line, h.vcol, "name: longer than %d bytes", APP_MAX_NAME - 1);
                goto bad;
            }
            for (size_t j = 0; j < h.vlen; j++) {
                if (!is_key_char(h.val[j])) {
                    fail(err, file, line, h.vcol + (int)j, "name: only letters, digits, '-', '_' and '.'");
                    goto bad;
                }
            }
            memcpy(m->name, h.val, h.vlen);
            m->name[h.vlen] = '\0';
            break;
        case K_STRICT:
            if (parse_bool(&h, &m->strict_route, err) != 0)
                goto bad;
            break;
        case K_CRITICAL:
            if (parse_bool(&h, &m->critical, err) != 0)
                goto bad;
            break;
        case K_REQF:
            if (each_token(m, &h, method_token, err) != 0)
                goto bad;
            break;
        case K_RESPF:
            if (h.vlen == 0 || word_is(h.val, h.vlen, "none"))
                break;
            if (each_token(m, &h, response_token, err) != 0)
                goto bad;
            break;
        case K_STEPS: {
            long long v = 0;
            for (size_t j = 0; j < h.vlen; j++) {
                if (h.val[j] < '0' || h.val[j] > '9' || v > 100000000) {
                    fail(err, file, line, h.vcol + (int)j, "max-steps: expected a number 1..10000000");
                    goto bad;
                }
                v = v * 10 + (h.val[j] - '0');
            }
            if (v < 1 || v > 10000000) {
                fail(err, file, line, h.vcol, "max-steps: %lld is outside 1..10000000", v);
                goto bad;
            }
            m->max_steps = (uint32_t)v;
            break;
        }
        case K_COUNT:
            break;
        }
        ob_add(&ob, "\n", 1);
    }
    if (!sep) {
        fail(err, file, line + 1, 1, "missing the '---' line between the header and the script");
        goto bad;
    }
    if (!seen[K_NAME]) {
        fail(err, file, line, 1, "the header has no 'name'");
        goto bad;
    }
    if (!seen[K_REQF]) {
        fail(err, file, line, 1, "the header has no 'request-filter'");
        goto bad;
    }
    m->script_line = line + 1;
    ob_add(&ob, text + pos, len - pos);
    if (ob.oom || ob.p == NULL) {
        fail(err, file, 0, 0, "out of memory");
        goto bad;
    }
    m->script = ob.p;
    m->script_len = ob.len;
    return m;
bad:
    free(ob.p);
    app_manifest_free(m);
    return NULL;
}

struct app_manifest *
app_manifest_load(const char *path, struct app_err *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    struct app_manifest *m = NULL;

    if (f == NULL) {
        fail(err, path, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    buf = malloc(APP_MAX_MANIFEST + 1);
    if (buf == NULL) {
        fail(err, path, 0, 0, "out of memory");
        goto out;
    }
    n = fread(buf, 1, APP_MAX_MANIFEST + 1, f);
    if (ferror(f)) {
        fail(err, path, 0, 0, "cannot read: %s", strerror(errno));
        goto out;
    }
    m = app_manifest_parse(buf, n, path, err);
out:
    free(buf);
    fclose(f);
    return m;
}

void
app_manifest_free(struct app_manifest *m)
{
    if (m == NULL)
        return;
    free(m->file);
    free(m->script);
    free(m);
}

bool
app_manifest_wants_request(const struct app_manifest *m, const char *method)
{
    if (m->all_methods)
        return true;
    if (method == NULL)
        return false;
    for (unsigned i = 0; i < m->nmethods; i++)
        if (strcasecmp(m->methods[i], method) == 0)
            return true;
    return false;
}

bool
app_manifest_wants_response(const struct app_manifest *m, int code)
{
    if (!m->any_response || code < 100 || code > 699)
        return false;
    return (m->responses[code / 8] >> (code % 8)) & 1u;
}
