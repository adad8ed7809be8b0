/*
 * scr_lex: tokens of the script language (docs/script-language.md §2).
 * Line and column are 1-based; the column counts bytes. Errors longjmp out
 * through scr_cc_error(), so callers never see a bad token.
 */
#include <stdlib.h>
#include <string.h>

#include "script/scr_int.h"

static const struct {
    const char *word;
    enum scr_tok_type t;
} keywords[] = {
    { "if", T_IF }, { "else", T_ELSE }, { "foreach", T_FOREACH }, { "in", T_IN },
    { "return", T_RETURN }, { "break", T_BREAK }, { "true", T_TRUE },
    { "false", T_FALSE }, { "null", T_NULL },
};

#define MAX_IDENT 128

void
scr_lex_init(struct scr_lex *lx, struct scr_cc *cc, const char *src, size_t len)
{
    memset(lx, 0, sizeof(*lx));
    lx->cur = src;
    lx->end = src + len;
    lx->line_start = src;
    lx->line = 1;
    lx->cc = cc;
}

void
scr_lex_free(struct scr_lex *lx)
{
    free(lx->sbuf);
    lx->sbuf = NULL;
    lx->scap = 0;
}

const char *
scr_tok_name(enum scr_tok_type t)
{
    static const char *const names[] = {
        [T_EOF] = "end of script", [T_IDENT] = "identifier", [T_INT] = "integer",
        [T_STR] = "string", [T_LPAREN] = "'('", [T_RPAREN] = "')'", [T_LBRACE] = "'{'",
        [T_RBRACE] = "'}'", [T_COMMA] = "','", [T_SEMI] = "';'", [T_DOT] = "'.'",
        [T_ASSIGN] = "'='", [T_EQ] = "'=='", [T_NE] = "'!='", [T_LT] = "'<'",
        [T_LE] = "'<='", [T_GT] = "'>'", [T_GE] = "'>='", [T_AND] = "'&&'", [T_OR] = "'||'",
        [T_NOT] = "'!'", [T_PLUS] = "'+'", [T_MINUS] = "'-'", [T_STAR] = "'*'",
        [T_SLASH] = "'/'", [T_PERCENT] = "'%'", [T_IF] = "'if'", [T_ELSE] = "'else'",
        [T_FOREACH] = "'foreach'", [T_IN] = "'in'", [T_RETURN] = "'return'",
        [T_BREAK] = "'break'", [T_TRUE] = "'true'", [T_FALSE] = "'false'",
        [T_NULL] = "'null'",
    };
    if ((size_t)t < sizeof(names) / sizeof(names[0]) && names[t])
        return names[t];
    return "token";
}

static int
col_of(const struct scr_lex *lx, const char *p)
{
    return (int)(p - lx->line_start) + 1;
}

/* Skips blanks and comments from <p>; updates line bookkeeping when <lx> is writable. */
static const char *
skip_space(const struct scr_lex *lx, const char *p, int *line, const char **line_start)
{
    const char *end = lx->end;

    while (p < end) {
        if (*p == '\n') {
            (*line)++;
            *line_start = ++p;
        } else if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\f' || *p == '\v') {
            p++;
        } else if (*p == '/' && p + 1 < end && p[1] == '/') {
            while (p < end && *p != '\n')
                p++;
        } else if (*p == '/' && p + 1 < end && p[1] == '*') {
            const char *start = p;
            int sline = *line;
            const char *sls = *line_start;
            p += 2;
            for (;;) {
                if (p + 1 >= end) {
                    scr_cc_error(lx->cc, sline, (int)(start - sls) + 1,
                                 "unterminated /* comment");
                }
                if (*p == '*' && p[1] == '/') {
                    p += 2;
                    break;
                }
                if (*p == '\n') {
                    (*line)++;
                    *line_start = p + 1;
                }
                p++;
            }
        } else {
            break;
        }
    }
    return p;
}

bool
scr_lex_next_is_assign(const struct scr_lex *lx)
{
    int line = lx->line;
    const char *ls = lx->line_start;
    const char *p = skip_space(lx, lx->cur, &line, &ls);

    return p < lx->end && *p == '=' && !(p + 1 < lx->end && p[1] == '=');
}

static void
sbuf_put(struct scr_lex *lx, size_t *n, char c, int line, int col)
{
    if (*n >= SCR_MAX_LITERAL && c != '\0')    /* the terminating NUL is not content */
        scr_cc_error(lx->cc, line, col, "string literal longer than %u bytes", SCR_MAX_LITERAL);
    if (*n + 1 >= lx->scap) {
        size_t cap = lx->scap ? lx->scap * 2 : 256;
        char *nb = realloc(lx->sbuf, cap);
        if (!nb)
            scr_cc_error(lx->cc, line, col, "out of memory");
        lx->sbuf = nb;
        lx->scap = cap;
    }
    lx->sbuf[(*n)++] = c;
}

static void
lex_string(struct scr_lex *lx, struct scr_tok *tk)
{
    const char *p = lx->cur + 1;
    size_t n = 0;

    for (;;) {
        if (p >= lx->end || *p == '\n')
            scr_cc_error(lx->cc, tk->line, tk->col, "unterminated string literal");
        if (*p == '"')
            break;
        if (*p == '\\') {
            char c;
            if (p + 1 >= lx->end)
                scr_cc_error(lx->cc, tk->line, tk->col, "unterminated string literal");
            switch (p[1]) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            default:
                scr_cc_error(lx->cc, tk->line, col_of(lx, p),
                             "unknown escape '\\%c' (use \\\" \\\\ \\n \\t \\r)",
                             (p[1] >= 0x20 && p[1] < 0x7f) ? p[1] : '?');
            }
            sbuf_put(lx, &n, c, tk->line, tk->col);
            p += 2;
            continue;
        }
        if (*p == '\0')
            scr_cc_error(lx->cc, tk->line, col_of(lx, p), "NUL byte in string literal");
        sbuf_put(lx, &n, *p, tk->line, tk->col);
        p++;
    }
    sbuf_put(lx, &n, '\0', tk->line, tk->col);
    tk->t = T_STR;
    tk->sval = lx->sbuf;
    tk->slen = n - 1;
    lx->cur = p + 1;
}

static void
lex_int(struct scr_lex *lx, struct scr_tok *tk)
{
    const char *p = lx->cur;
    uint64_t v = 0;

    while (p < lx->end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (uint64_t)INT64_MAX / 10 || v * 10 + d > (uint64_t)INT64_MAX)
            scr_cc_error(lx->cc, tk->line, tk->col, "integer literal out of range");
        v = v * 10 + d;
        p++;
    }
    if (p < lx->end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'))
        scr_cc_error(lx->cc, tk->line, tk->col, "malformed number");
    tk->t = T_INT;
    tk->ival = (int64_t)v;
    lx->cur = p;
}

static bool
is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool
is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

void
scr_lex_next(struct scr_lex *lx)
{
    struct scr_tok *tk = &lx->tok;
    const char *p;

    lx->cur = skip_space(lx, lx->cur, &lx->line, &lx->line_start);
    p = lx->cur;
    memset(tk, 0, sizeof(*tk));
    tk->line = lx->line;
    tk->col = col_of(lx, p);
    tk->p = p;
    if (p >= lx->end) {
        tk->t = T_EOF;
        return;
    }
    char c = *p;
    char c1 = p + 1 < lx->end ? p[1] : '\0';

    if (is_ident_start(c)) {
        const char *q = p;
        while (q < lx->end && is_ident_char(*q))
            q++;
        if (q - p > MAX_IDENT)
            scr_cc_error(lx->cc, tk->line, tk->col, "identifier longer than %d characters",
                         MAX_IDENT);
        tk->t = T_IDENT;
        tk->len = (size_t)(q - p);
        for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
            if (strlen(keywords[i].word) == tk->len && memcmp(keywords[i].word, p, tk->len) == 0) {
                tk->t = keywords[i].t;
                break;
            }
        }
        lx->cur = q;
        return;
    }
    if (c >= '0' && c <= '9') {
        lex_int(lx, tk);
        tk->len = (size_t)(lx->cur - p);
        return;
    }
    if (c == '"') {
        lex_string(lx, tk);
        tk->len = (size_t)(lx->cur - p);
        return;
    }

    size_t n = 1;
    switch (c) {
    case '(': tk->t = T_LPAREN; break;
    case ')': tk->t = T_RPAREN; break;
    case '{': tk->t = T_LBRACE; break;
    case '}': tk->t = T_RBRACE; break;
    case ',': tk->t = T_COMMA; break;
    case ';': tk->t = T_SEMI; break;
    case '.': tk->t = T_DOT; break;
    case '+': tk->t = T_PLUS; break;
    case '-': tk->t = T_MINUS; break;
    case '*': tk->t = T_STAR; break;
    case '/': tk->t = T_SLASH; break;
    case '%': tk->t = T_PERCENT; break;
    case '=':
        if (c1 == '=') { tk->t = T_EQ; n = 2; } else tk->t = T_ASSIGN;
        break;
    case '!':
        if (c1 == '=') { tk->t = T_NE; n = 2; } else tk->t = T_NOT;
        break;
    case '<':
        if (c1 == '=') { tk->t = T_LE; n = 2; } else tk->t = T_LT;
        break;
    case '>':
        if (c1 == '=') { tk->t = T_GE; n = 2; } else tk->t = T_GT;
        break;
    case '&':
        if (c1 != '&')
            scr_cc_error(lx->cc, tk->line, tk->col, "unexpected '&' (did you mean '&&'?)");
        tk->t = T_AND;
        n = 2;
        break;
    case '|':
        if (c1 != '|')
            scr_cc_error(lx->cc, tk->line, tk->col, "unexpected '|' (did you mean '||'?)");
        tk->t = T_OR;
        n = 2;
        break;
    default:
        if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
            scr_cc_error(lx->cc, tk->line, tk->col, "unexpected character '%c'", c);
        scr_cc_error(lx->cc, tk->line, tk->col, "unexpected byte 0x%02x",
                     (unsigned)(unsigned char)c);
    }
    tk->len = n;
    lx->cur = p + n;
}
