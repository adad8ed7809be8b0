/*
 * cfg_ini: a small state-machine lexer and a recursive-descent-per-line parser for the
 * config file (grammar in cfg_ini.h).
 */
#include "util/cfg_ini.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum tok_kind {
    TOK_EOF = 0,
    TOK_NL,
    TOK_LBRACK,
    TOK_RBRACK,
    TOK_EQ,
    TOK_IDENT,
    TOK_VALUE,
    TOK_OTHER,             /* any other character; the parser reports it */
};

struct token {
    enum tok_kind kind;
    int line, col;         /* where the token starts */
};

struct lexer {
    const char *p, *end;
    int line, col;         /* position of *p */
    bool value_mode;       /* the next token is a value (after '=') */
    char *buf;             /* text of the last IDENT/VALUE, NUL-terminated */
    size_t len, cap;
    char why[160];         /* lexical error message */
    int err_line, err_col;
};

enum lex_state {
    S_START = 0,
    S_COMMENT,
    S_IDENT,
    S_VAL_START,
    S_BARE,
    S_QUOTED,
    S_ESC,
    S_HEX,
};

static bool
is_ident_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

static bool
is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static int
peek(const struct lexer *lx)
{
    return lx->p < lx->end ? (unsigned char)*lx->p : -1;
}

static void
advance(struct lexer *lx)
{
    if (lx->p >= lx->end)
        return;
    if (*lx->p == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    lx->p++;
}

static int
buf_put(struct lexer *lx, char c)
{
    if (lx->len + 1 >= lx->cap) {
        size_t ncap = lx->cap ? lx->cap * 2 : 128;
        char *nb = realloc(lx->buf, ncap);
        if (!nb)
            return -1;
        lx->buf = nb;
        lx->cap = ncap;
    }
    lx->buf[lx->len++] = c;
    lx->buf[lx->len] = '\0';
    return 0;
}

static int
lex_fail(struct lexer *lx, int line, int col, const char *why)
{
    snprintf(lx->why, sizeof lx->why, "%s", why);
    lx->err_line = line;
    lx->err_col = col;
    return -1;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Produces the next token into <t>; IDENT/VALUE text is in lx->buf. Returns 0 or -1. */
static int
lex_next(struct lexer *lx, struct token *t)
{
    enum lex_state st = lx->value_mode ? S_VAL_START : S_START;
    size_t trim_len = 0;     /* S_BARE: length without trailing blanks */
    int hex_acc = 0, hex_n = 0;
    char msg[64];

    lx->len = 0;
    if (buf_put(lx, 'x') != 0)   /* make sure buf exists */
        return lex_fail(lx, lx->line, lx->col, "out of memory");
    lx->len = 0;
    lx->buf[0] = '\0';

    for (;;) {
        int c = peek(lx);

        if (c == 0)
            return lex_fail(lx, lx->line, lx->col, "NUL byte in file");
        switch (st) {
        case S_START:
            t->line = lx->line;
            t->col = lx->col;
            if (is_blank(c)) {
                advance(lx);
            } else if (c == -1) {
                t->kind = TOK_EOF;
                return 0;
            } else if (c == '\n') {
                advance(lx);
                t->kind = TOK_NL;
                return 0;
            } else if (c == '#' || c == ';') {
                st = S_COMMENT;
            } else if (c == '[' || c == ']' || c == '=') {
                advance(lx);
                t->kind = c == '[' ? TOK_LBRACK : c == ']' ? TOK_RBRACK : TOK_EQ;
                return 0;
            } else if (is_ident_char(c)) {
                st = S_IDENT;
            } else {
                if (buf_put(lx, (char)c) != 0)
                    return lex_fail(lx, lx->line, lx->col, "out of memory");
                advance(lx);
                t->kind = TOK_OTHER;
                return 0;
            }
            break;
        case S_COMMENT:
            if (c == -1 || c == '\n')
                st = S_START;
            else
                advance(lx);
            break;
        case S_IDENT:
            if (c != -1 && is_ident_char(c)) {
                if (buf_put(lx, (char)c) != 0)
                    return lex_fail(lx, lx->line, lx->col, "out of memory");
                advance(lx);
            } else {
                t->kind = TOK_IDENT;
                return 0;
            }
            break;
        case S_VAL_START:
            t->line = lx->line;
            t->col = lx->col;
            if (c != -1 && is_blank(c)) {
                advance(lx);
            } else if (c == '"') {
                advance(lx);
                st = S_QUOTED;
            } else if (c == -1 || c == '\n' || c == '#' || c == ';') {
                lx->value_mode = false;   /* empty value; the comment/newline follows */
                t->kind = TOK_VALUE;
                return 0;
            } else {
                st = S_BARE;
            }
            break;
        case S_BARE:
            if (c == -1 || c == '\n' ||
                ((c == '#' || c == ';') && lx->len > 0 && is_blank(lx->buf[lx->len - 1]))) {
                lx->len = trim_len;
                lx->buf[lx->len] = '\0';
                lx->value_mode = false;
                t->kind = TOK_VALUE;
                return 0;
            }
            if (buf_put(lx, (char)c) != 0)
                return lex_fail(lx, lx->line, lx->col, "out of memory");
            if (!is_blank(c))
                trim_len = lx->len;
            advance(lx);
            break;
        case S_QUOTED:
            if (c == -1 || c == '\n')
                return lex_fail(lx, t->line, t->col, "unterminated string");
            advance(lx);
            if (c == '"') {
                lx->value_mode = false;
                t->kind = TOK_VALUE;
                return 0;
            }
            if (c == '\\') {
                st = S_ESC;
            } else if (buf_put(lx, (char)c) != 0) {
                return lex_fail(lx, lx->line, lx->col, "out of memory");
            }
            break;
        case S_ESC: {
            char out;
            if (c == -1 || c == '\n')
                return lex_fail(lx, t->line, t->col, "unterminated string");
            switch (c) {
            case '\\': out = '\\'; break;
            case '"': out = '"'; break;
            case 'n': out = '\n'; break;
            case 't': out = '\t'; break;
            case 'r': out = '\r'; break;
            case 'x':
                advance(lx);
                st = S_HEX;
                hex_acc = 0;
                hex_n = 0;
                continue;
            default:
                if (c >= 0x21 && c < 0x7f)
                    snprintf(msg, sizeof msg, "invalid escape '\\%c'", c);
                else
                    snprintf(msg, sizeof msg, "invalid escape");
                return lex_fail(lx, lx->line, lx->col - 1, msg);
            }
            if (buf_put(lx, out) != 0)
                return lex_fail(lx, lx->line, lx->col, "out of memory");
            advance(lx);
            st = S_QUOTED;
            break;
        }
        case S_HEX: {
            int h = c == -1 ? -1 : hexval(c);
            if (h < 0)
                return lex_fail(lx, lx->line, lx->col, "\\x needs two hex digits");
            hex_acc = hex_acc * 16 + h;
            advance(lx);
            if (++hex_n == 2) {
                if (hex_acc == 0)
                    return lex_fail(lx, lx->line, lx->col - 4, "\\x00 is not allowed");
                if (buf_put(lx, (char)hex_acc) != 0)
                    return lex_fail(lx, lx->line, lx->col, "out of memory");
                st = S_QUOTED;
            }
            break;
        }
        }
    }
}

static const char *tok_name(enum tok_kind k);

/* Describes token <k> for messages; <text> is the lexer buffer (for TOK_OTHER). */
static const char *
tok_desc(enum tok_kind k, const char *text, char *buf, size_t len)
{
    unsigned char c = (unsigned char)text[0];

    if (k != TOK_OTHER)
        return tok_name(k);
    if (c >= 0x21 && c < 0x7f)
        snprintf(buf, len, "'%c'", c);
    else
        snprintf(buf, len, "byte 0x%02x", (unsigned)c);
    return buf;
}

static const char *
tok_name(enum tok_kind k)
{
    switch (k) {
    case TOK_OTHER: return "a character";
    case TOK_EOF: return "end of file";
    case TOK_NL: return "end of line";
    case TOK_LBRACK: return "'['";
    case TOK_RBRACK: return "']'";
    case TOK_EQ: return "'='";
    case TOK_IDENT: return "a name";
    case TOK_VALUE: return "a value";
    }
    return "?";
}

static int
syntax_err(struct cfg_error *err, const char *fname, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Sets err->msg to "<fname>:<line>: <fmt...>" (truncated to fit). */
static int
syntax_err(struct cfg_error *err, const char *fname, int line, int col, const char *fmt, ...)
{
    char what[sizeof err->msg];
    va_list ap;
    int n;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    n = snprintf(err->msg, sizeof err->msg, "%s:%d: ", fname, line);
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof err->msg) {
        size_t room = sizeof err->msg - (size_t)n - 1;
        size_t wl = strlen(what);
        if (wl > room)
            wl = room;
        memcpy(err->msg + n, what, wl);
        err->msg[(size_t)n + wl] = '\0';
    }
    err->line = line;
    err->col = col;
    return -1;
}

int
cfg_ini_parse(const char *fname, const char *text, size_t len, cfg_ini_fn *fn, void *arg,
              struct cfg_error *err)
{
    struct lexer lx = {.p = text, .end = text + len, .line = 1, .col = 1};
    struct token t;
    char *section = NULL, *key = NULL;
    char tdesc[32];
    int rc = -1;

#define NEXT()                                                                         \
    do {                                                                               \
        if (lex_next(&lx, &t) != 0) {                                                  \
            syntax_err(err, fname, lx.err_line, lx.err_col, "%s", lx.why);             \
            goto out;                                                                  \
        }                                                                              \
    } while (0)

    if (len > CFG_INI_MAX_SIZE) {
        snprintf(err->msg, sizeof err->msg, "%s: file is larger than %d bytes", fname,
                 CFG_INI_MAX_SIZE);
        err->line = err->col = 0;
        return -1;
    }
    for (;;) {
        NEXT();
        if (t.kind == TOK_EOF)
            break;
        if (t.kind == TOK_NL)
            continue;
        if (t.kind == TOK_LBRACK) {
            int line = t.line, col = t.col;
            NEXT();
            if (t.kind != TOK_IDENT) {
                syntax_err(err, fname, t.line, t.col, "expected a section name, found %s",
                           tok_desc(t.kind, lx.buf, tdesc, sizeof tdesc));
                goto out;
            }
            free(section);
            section = strdup(lx.buf);
            if (!section) {
                syntax_err(err, fname, t.line, t.col, "%s", "out of memory");
                goto out;
            }
            NEXT();
            if (t.kind != TOK_RBRACK) {
                syntax_err(err, fname, t.line, t.col, "expected ']', found %s",
                           tok_desc(t.kind, lx.buf, tdesc, sizeof tdesc));
                goto out;
            }
            NEXT();
            if (t.kind != TOK_NL && t.kind != TOK_EOF) {
                syntax_err(err, fname, t.line, t.col, "unexpected %s after section header",
                           t.kind == TOK_IDENT || t.kind == TOK_OTHER ? "text" : tok_desc(t.kind, lx.buf, tdesc, sizeof tdesc));
                goto out;
            }
            err->msg[0] = '\0';
            if (fn(arg, section, NULL, NULL, line, col, err) != 0) {
                syntax_err(err, fname, line, col, "%s", err->msg);
                goto out;
            }
            if (t.kind == TOK_EOF)
                break;
            continue;
        }
        if (t.kind != TOK_IDENT) {
            syntax_err(err, fname, t.line, t.col, "expected a setting name, found %s",
                       tok_desc(t.kind, lx.buf, tdesc, sizeof tdesc));
            goto out;
        }
        int line = t.line, col = t.col;
        free(key);
        key = strdup(lx.buf);
        if (!key) {
            syntax_err(err, fname, t.line, t.col, "%s", "out of memory");
            goto out;
        }
        NEXT();
        if (t.kind != TOK_EQ) {
            syntax_err(err, fname, t.line, t.col, "expected '=' after '%s', found %s", key,
                       tok_desc(t.kind, lx.buf, tdesc, sizeof tdesc));
            goto out;
        }
        lx.value_mode = true;
        NEXT();
        /* lex_next in value mode always yields TOK_VALUE */
        err->msg[0] = '\0';
        if (fn(arg, section, key, lx.buf, line, col, err) != 0) {
            syntax_err(err, fname, line, col, "%s", err->msg);
            goto out;
        }
        NEXT();
        if (t.kind != TOK_NL && t.kind != TOK_EOF) {
            syntax_err(err, fname, t.line, t.col, "unexpected %s after the value",
                       t.kind == TOK_IDENT || t.kind == TOK_OTHER ? "text" : tok_desc(t.kind, lx.buf, tdesc, sizeof tdesc));
            goto out;
        }
        if (t.kind == TOK_EOF)
            break;
    }
    rc = 0;
out:
#undef NEXT
    free(section);
    free(key);
    free(lx.buf);
    return rc;
}
