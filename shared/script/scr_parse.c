/*
 * scr_parse: recursive-descent parser that emits bytecode as it goes (one pass,
 * no AST). Grammar and precedence: docs/script-language.md §3-4.
 *
 * Recursion is bounded: every nested block, parenthesis, call argument list and
 * unary operator counts against SCR_MAX_DEPTH, and "else if" chains are parsed
 * in a loop, so hostile nesting ends in a compile error, not a stack overflow.
 * Forward jumps (if/else ends, breaks) are chained through their own operand
 * and patched once the target is known, as Lua does, so no list is allocated.
 */
#include <string.h>

#include "script/scr_int.h"

#define NO_CHAIN UINT32_MAX

enum ek {                         /* what an expression turned out to be */
    EK_OTHER = 0,
    EK_CALL,                      /* a bare call: valid as a statement */
};

static enum ek parse_expr(struct scr_cc *cc);
static void parse_stmt(struct scr_cc *cc);

static struct scr_tok *
tok(struct scr_cc *cc)
{
    return &cc->lx.tok;
}

static void
next(struct scr_cc *cc)
{
    scr_lex_next(&cc->lx);
}

static _Noreturn void
unexpected(struct scr_cc *cc, const char *wanted)
{
    struct scr_tok *t = tok(cc);
    if (t->t == T_IDENT)
        scr_cc_error(cc, t->line, t->col, "expected %s, found '%.*s'", wanted, (int)t->len, t->p);
    scr_cc_error(cc, t->line, t->col, "expected %s, found %s", wanted, scr_tok_name(t->t));
}

static void
expect(struct scr_cc *cc, enum scr_tok_type t, const char *wanted)
{
    if (tok(cc)->t != t)
        unexpected(cc, wanted);
    next(cc);
}

static void
enter(struct scr_cc *cc)
{
    if (++cc->depth > SCR_MAX_DEPTH)
        scr_cc_error(cc, tok(cc)->line, tok(cc)->col, "nesting deeper than %d levels",
                     SCR_MAX_DEPTH);
}

static void
leave(struct scr_cc *cc)
{
    cc->depth--;
}

static void
chain_add(struct scr_cc *cc, uint32_t *chain, uint32_t jmp)
{
    scr_patch(cc, jmp, *chain);
    *chain = jmp;
}

static void
chain_patch(struct scr_cc *cc, uint32_t chain, uint32_t target)
{
    while (chain != NO_CHAIN) {
        uint32_t prev = cc->p->code[chain].b;
        scr_patch(cc, chain, target);
        chain = prev;
    }
}

static bool
tok_is(const struct scr_tok *t, const char *word)
{
    return t->t == T_IDENT && t->len == strlen(word) && memcmp(t->p, word, t->len) == 0;
}

/* ---- expressions ------------------------------------------------------- */

static void
parse_call(struct scr_cc *cc, struct scr_tok name)
{
    int fn = scr_builtin_find(name.p, name.len);
    int argc = 0;

    if (fn < 0)
        scr_cc_error(cc, name.line, name.col, "unknown function '%.*s'", (int)name.len, name.p);
    enter(cc);
    next(cc);                                   /* '(' */
    if (tok(cc)->t != T_RPAREN) {
        for (;;) {
            if (argc == SCR_MAX_ARGS)
                scr_cc_error(cc, tok(cc)->line, tok(cc)->col,
                             "too many arguments (limit %d)", SCR_MAX_ARGS);
            parse_expr(cc);
            argc++;
            if (tok(cc)->t != T_COMMA)
                break;
            next(cc);
        }
    }
    expect(cc, T_RPAREN, "',' or ')'");
    leave(cc);

    const struct scr_builtin *b = &scr_builtins[fn];
    if (argc < b->min || argc > b->max) {
        if (b->min == b->max)
            scr_cc_error(cc, name.line, name.col, "%s() takes %d argument%s, got %d", b->name,
                         b->min, b->min == 1 ? "" : "s", argc);
        else if (b->max == SCR_MAX_ARGS)
            scr_cc_error(cc, name.line, name.col, "%s() takes at least %d arguments, got %d",
                         b->name, b->min, argc);
        else
            scr_cc_error(cc, name.line, name.col, "%s() takes %d to %d arguments, got %d",
                         b->name, b->min, b->max, argc);
    }
    scr_emit(cc, OP_CALL, (uint16_t)fn, (uint32_t)argc, name.line);
}

/* sipRequest / sipResponse and their properties. */
static void
parse_host(struct scr_cc *cc, struct scr_tok name)
{
    bool req = tok_is(&name, "sipRequest");

    next(cc);
    if (tok(cc)->t != T_DOT) {
        scr_emit(cc, OP_HOST, req ? HV_IS_REQUEST : HV_IS_RESPONSE, 0, name.line);
        return;
    }
    next(cc);
    struct scr_tok prop = *tok(cc);
    if (prop.t != T_IDENT)
        unexpected(cc, "a property name");
    enum scr_hostval hv;
    if (req && tok_is(&prop, "Method"))
        hv = HV_METHOD;
    else if (req && tok_is(&prop, "RequestUri"))
        hv = HV_REQUEST_URI;
    else if (!req && tok_is(&prop, "StatusCode"))
        hv = HV_STATUS_CODE;
    else if (!req && tok_is(&prop, "StatusClass"))
        hv = HV_STATUS_CLASS;
    else
        scr_cc_error(cc, prop.line, prop.col, "unknown property '%.*s.%.*s' (%s)",
                     (int)name.len, name.p, (int)prop.len, prop.p,
                     req ? "sipRequest has Method, RequestUri"
                         : "sipResponse has StatusCode, StatusClass");
    scr_emit(cc, OP_HOST, (uint16_t)hv, 0, name.line);
    next(cc);
}

static enum ek
parse_primary(struct scr_cc *cc)
{
    struct scr_tok t = *tok(cc);

    switch (t.t) {
    case T_INT:
        scr_emit(cc, OP_CONST, 0, scr_const_int(cc, t.ival, t.line, t.col), t.line);
        next(cc);
        return EK_OTHER;
    case T_STR:
        /* intern before next(): the decoded text lives in the lexer buffer */
        scr_emit(cc, OP_CONST, 0, scr_const_str(cc, t.sval, t.slen, t.line, t.col), t.line);
        next(cc);
        return EK_OTHER;
    case T_TRUE:
    case T_FALSE:
        scr_emit(cc, OP_CONST, 0, scr_const_bool(cc, t.t == T_TRUE, t.line, t.col), t.line);
        next(cc);
        return EK_OTHER;
    case T_NULL:
        scr_emit(cc, OP_NULL, 0, 0, t.line);
        next(cc);
        return EK_OTHER;
    case T_LPAREN:
        enter(cc);
        next(cc);
        parse_expr(cc);
        expect(cc, T_RPAREN, "')'");
        leave(cc);
        return EK_OTHER;
    case T_IDENT:
        if (tok_is(&t, "sipRequest") || tok_is(&t, "sipResponse")) {
            parse_host(cc, t);
            return EK_OTHER;
        }
        next(cc);
        if (tok(cc)->t == T_LPAREN) {
            parse_call(cc, t);
            return EK_CALL;
        }
        uint32_t slot = scr_var(cc, t.p, t.len, false, t.line, t.col);
        if (slot == UINT32_MAX) {
            if (scr_builtin_find(t.p, t.len) >= 0)
                scr_cc_error(cc, t.line, t.col, "function '%.*s' used without '()'",
                             (int)t.len, t.p);
            scr_cc_error(cc, t.line, t.col, "unknown variable '%.*s' (assign it before use)",
                         (int)t.len, t.p);
        }
        scr_emit(cc, OP_LOAD, 0, slot, t.line);
        return EK_OTHER;
    default:
        unexpected(cc, "an expression");
    }
}

static enum ek
parse_postfix(struct scr_cc *cc)
{
    enum ek k = parse_primary(cc);

    while (tok(cc)->t == T_DOT) {
        next(cc);
        struct scr_tok f = *tok(cc);
        if (f.t != T_IDENT)
            unexpected(cc, "a field name");
        int id = -1;
        for (int i = 0; i < F__COUNT; i++) {
            if (tok_is(&f, scr_field_names[i]))
                id = i;
        }
        if (id < 0)
            scr_cc_error(cc, f.line, f.col,
                         "unknown field '%.*s' (endpoint fields: epid, contact, availability, "
                         "activity, present_since, path)", (int)f.len, f.p);
        scr_emit(cc, OP_FIELD, (uint16_t)id, 0, f.line);
        next(cc);
        k = EK_OTHER;
    }
    return k;
}

static enum ek
parse_unary(struct scr_cc *cc)
{
    struct scr_tok t = *tok(cc);

    if (t.t != T_NOT && t.t != T_MINUS)
        return parse_postfix(cc);
    enter(cc);
    next(cc);
    if (t.t == T_MINUS && tok(cc)->t == T_INT) {
        /* fold "-<literal>" so constants stay constants */
        struct scr_tok n = *tok(cc);
        scr_emit(cc, OP_CONST, 0, scr_const_int(cc, -n.ival, n.line, n.col), n.line);
        next(cc);
        /* a postfix '.field' on an int would be a type error anyway; keep it simple */
    } else {
        parse_unary(cc);
        scr_emit(cc, t.t == T_NOT ? OP_NOT : OP_NEG, 0, 0, t.line);
    }
    leave(cc);
    return EK_OTHER;
}

/* Binary levels, lowest precedence first. */
static const struct {
    enum scr_tok_type tok[4];
    enum scr_op op[4];
} levels[] = {
    { { T_EQ, T_NE }, { OP_EQ, OP_NE } },
    { { T_LT, T_LE, T_GT, T_GE }, { OP_LT, OP_LE, OP_GT, OP_GE } },
    { { T_PLUS, T_MINUS }, { OP_ADD, OP_SUB } },
    { { T_STAR, T_SLASH, T_PERCENT }, { OP_MUL, OP_DIV, OP_MOD } },
};
#define NLEVELS ((int)(sizeof(levels) / sizeof(levels[0])))

static enum ek
parse_binary(struct scr_cc *cc, int level)
{
    if (level == NLEVELS)
        return parse_unary(cc);
    enum ek k = parse_binary(cc, level + 1);
    for (;;) {
        enum scr_tok_type t = tok(cc)->t;
        int i;
        for (i = 0; i < 4; i++) {
            if (levels[level].tok[i] == t && t != T_EOF)
                break;
        }
        if (i == 4)
            return k;
        int line = tok(cc)->line;
        next(cc);
        parse_binary(cc, level + 1);
        scr_emit(cc, levels[level].op[i], 0, 0, line);
        k = EK_OTHER;
    }
}

static enum ek
parse_and(struct scr_cc *cc)
{
    enum ek k = parse_binary(cc, 0);
    while (tok(cc)->t == T_AND) {
        int line = tok(cc)->line;
        next(cc);
        uint32_t j = scr_emit(cc, OP_AND, 0, 0, line);
        parse_binary(cc, 0);
        scr_emit(cc, OP_BOOL, 0, 0, line);
        scr_patch(cc, j, cc->p->ncode);
        k = EK_OTHER;
    }
    return k;
}

static enum ek
parse_expr(struct scr_cc *cc)
{
    enum ek k = parse_and(cc);
    while (tok(cc)->t == T_OR) {
        int line = tok(cc)->line;
        next(cc);
        uint32_t j = scr_emit(cc, OP_OR, 0, 0, line);
        parse_and(cc);
        scr_emit(cc, OP_BOOL, 0, 0, line);
        scr_patch(cc, j, cc->p->ncode);
        k = EK_OTHER;
    }
    return k;
}

/* ---- statements -------------------------------------------------------- */

static void
parse_block(struct scr_cc *cc)
{
    enter(cc);
    if (tok(cc)->t == T_LBRACE) {
        next(cc);
        while (tok(cc)->t != T_RBRACE) {
            if (tok(cc)->t == T_EOF)
                unexpected(cc, "'}'");
            parse_stmt(cc);
        }
        next(cc);
    } else {
        parse_stmt(cc);
    }
    leave(cc);
}

static void
parse_cond(struct scr_cc *cc)
{
    expect(cc, T_LPAREN, "'(' after 'if'");
    parse_expr(cc);
    expect(cc, T_RPAREN, "')'");
}

/* if (c) A else if (d) B else C — the else-if chain is a loop, not recursion. */
static void
parse_if(struct scr_cc *cc)
{
    uint32_t ends = NO_CHAIN;

    for (;;) {
        int line = tok(cc)->line;
        next(cc);                               /* 'if' */
        parse_cond(cc);
        uint32_t jf = scr_emit(cc, OP_JF, 0, 0, line);
        parse_block(cc);
        if (tok(cc)->t != T_ELSE) {
            scr_patch(cc, jf, cc->p->ncode);
            break;
        }
        chain_add(cc, &ends, scr_emit(cc, OP_JMP, 0, 0, tok(cc)->line));
        scr_patch(cc, jf, cc->p->ncode);
        next(cc);                               /* 'else' */
        if (tok(cc)->t == T_IF)
            continue;
        parse_block(cc);
        break;
    }
    chain_patch(cc, ends, cc->p->ncode);
}

static void
parse_foreach(struct scr_cc *cc)
{
    struct scr_loop loop = { .up = cc->loop, .break_chain = NO_CHAIN };
    int line = tok(cc)->line;

    next(cc);                                   /* 'foreach' */
    expect(cc, T_LPAREN, "'(' after 'foreach'");
    struct scr_tok var = *tok(cc);
    if (var.t != T_IDENT)
        unexpected(cc, "a loop variable");
    if (tok_is(&var, "sipRequest") || tok_is(&var, "sipResponse") ||
        scr_builtin_find(var.p, var.len) >= 0)
        scr_cc_error(cc, var.line, var.col, "'%.*s' cannot be a variable", (int)var.len, var.p);
    uint32_t slot = scr_var(cc, var.p, var.len, true, var.line, var.col);
    next(cc);
    expect(cc, T_IN, "'in'");
    parse_expr(cc);
    expect(cc, T_RPAREN, "')'");

    uint32_t state = scr_hidden_slots(cc, 2, line, 1);
    scr_emit(cc, OP_ITER, 0, state, line);
    uint32_t top = scr_emit(cc, OP_NEXT, (uint16_t)state, 0, line);
    scr_emit(cc, OP_STORE, 0, slot, line);
    cc->loop = &loop;
    parse_block(cc);
    cc->loop = loop.up;
    scr_emit(cc, OP_JMP, 0, top, line);
    scr_patch(cc, top, cc->p->ncode);
    chain_patch(cc, loop.break_chain, cc->p->ncode);
}

static void
parse_stmt(struct scr_cc *cc)
{
    struct scr_tok t = *tok(cc);

    switch (t.t) {
    case T_IF:
        parse_if(cc);
        return;
    case T_FOREACH:
        parse_foreach(cc);
        return;
    case T_RETURN:
        next(cc);
        expect(cc, T_SEMI, "';' after 'return'");
        scr_emit(cc, OP_RET, 0, 0, t.line);
        return;
    case T_BREAK:
        if (!cc->loop)
            scr_cc_error(cc, t.line, t.col, "'break' outside foreach");
        next(cc);
        expect(cc, T_SEMI, "';' after 'break'");
        chain_add(cc, &cc->loop->break_chain, scr_emit(cc, OP_JMP, 0, 0, t.line));
        return;
    case T_LBRACE:
        parse_block(cc);
        return;
    case T_IDENT:
        if (scr_lex_next_is_assign(&cc->lx)) {
            if (tok_is(&t, "sipRequest") || tok_is(&t, "sipResponse") ||
                scr_builtin_find(t.p, t.len) >= 0)
                scr_cc_error(cc, t.line, t.col, "cannot assign to '%.*s'", (int)t.len, t.p);
            next(cc);                           /* name */
            next(cc);                           /* '=' */
            /* the variable exists from here on: "x = x + 1" on first use reads null */
            uint32_t slot = scr_var(cc, t.p, t.len, true, t.line, t.col);
            parse_expr(cc);
            expect(cc, T_SEMI, "';'");
            scr_emit(cc, OP_STORE, 0, slot, t.line);
            return;
        }
        break;
    default:
        break;
    }
    if (parse_expr(cc) != EK_CALL)
        scr_cc_error(cc, t.line, t.col, "statement has no effect (expected a call or assignment)");
    expect(cc, T_SEMI, "';'");
    scr_emit(cc, OP_POP, 0, 0, t.line);
}

void
scr_parse_program(struct scr_cc *cc)
{
    next(cc);
    while (tok(cc)->t != T_EOF)
        parse_stmt(cc);
}
