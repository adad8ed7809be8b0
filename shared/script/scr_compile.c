/*
 * scr_compile: the code generator behind the parser — instruction emission with
 * stack-depth accounting, interned constants, variable slots — and the public
 * scr_compile()/scr_program_free() entry points.
 *
 * Errors: scr_cc_error() fills the caller's struct scr_err and longjmps back to
 * scr_compile(), which frees everything hanging off the compile context. This
 * is the one place the module uses longjmp (a recursive-descent parser would
 * otherwise test a return code after every token); nothing between the setjmp
 * and the longjmp owns memory that is not reachable from the context.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script/scr_int.h"
#include "util/hash.h"

#define STACK_LIMIT 512           /* value stack slots a run may need (scr_vm.c) */

const char *const scr_field_names[F__COUNT] = {
    [F_EPID] = "epid", [F_CONTACT] = "contact", [F_AVAILABILITY] = "availability",
    [F_ACTIVITY] = "activity", [F_PRESENT_SINCE] = "present_since", [F_PATH] = "path",
};

_Noreturn void
scr_cc_error(struct scr_cc *cc, int line, int col, const char *fmt, ...)
{
    if (cc->err) {
        va_list ap;
        snprintf(cc->err->file, sizeof(cc->err->file), "%s", cc->file ? cc->file : "<script>");
        cc->err->line = line;
        cc->err->col = col;
        va_start(ap, fmt);
        vsnprintf(cc->err->msg, sizeof(cc->err->msg), fmt, ap);
        va_end(ap);
    }
    longjmp(cc->jb, 1);
}

static uint32_t
hash_bytes(const void *data, size_t len)
{
    return hash_fnv1a32(HASH_FNV32_BASIS, data, len);
}

/* ---- symbol tables (open addressing, keys compared by the caller) ------ */

static void
symtab_grow(struct scr_cc *cc, struct scr_symtab *t, int line, int col)
{
    uint32_t cap = t->cap ? t->cap * 2 : 64;
    struct scr_sym *v = malloc(sizeof(*v) * cap);
    if (!v)
        scr_cc_error(cc, line, col, "out of memory");
    for (uint32_t i = 0; i < cap; i++)
        v[i].idx = UINT32_MAX;
    for (uint32_t i = 0; i < t->cap; i++) {
        if (t->v[i].idx == UINT32_MAX)
            continue;
        uint32_t j = t->v[i].hash & (cap - 1);
        while (v[j].idx != UINT32_MAX)
            j = (j + 1) & (cap - 1);
        v[j] = t->v[i];
    }
    free(t->v);
    t->v = v;
    t->cap = cap;
}

/* Finds the slot for <hash> where <eq> says the key matches, or the empty slot to fill. */
static struct scr_sym *
symtab_find(struct scr_symtab *t, uint32_t hash, bool (*eq)(struct scr_cc *, uint32_t, const void *,
                                                            size_t),
            struct scr_cc *cc, const void *key, size_t len)
{
    uint32_t j = hash & (t->cap - 1);
    for (;;) {
        struct scr_sym *s = &t->v[j];
        if (s->idx == UINT32_MAX)
            return s;
        if (s->hash == hash && eq(cc, s->idx, key, len))
            return s;
        j = (j + 1) & (t->cap - 1);
    }
}

static bool
eq_str(struct scr_cc *cc, uint32_t idx, const void *key, size_t len)
{
    const struct scr_val *v = &cc->p->consts[idx];
    return v->t == V_STR && v->len == len && memcmp(v->u.s, key, len) == 0;
}

static bool
eq_int(struct scr_cc *cc, uint32_t idx, const void *key, size_t len)
{
    const struct scr_val *v = &cc->p->consts[idx];
    return v->t == V_INT && v->u.i == *(const int64_t *)key;
}

static bool
eq_var(struct scr_cc *cc, uint32_t idx, const void *key, size_t len)
{
    return strlen(cc->names[idx]) == len && memcmp(cc->names[idx], key, len) == 0;
}

/* ---- emission ---------------------------------------------------------- */

static int
stack_effect(enum scr_op op, uint32_t b)
{
    switch (op) {
    case OP_CONST: case OP_NULL: case OP_LOAD: case OP_HOST: case OP_NEXT:
        return 1;
    case OP_STORE: case OP_POP: case OP_JF: case OP_ITER: case OP_AND: case OP_OR:
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD:
    case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE:
        return -1;
    case OP_CALL:
        return 1 - (int)b;
    default:
        return 0;
    }
}

uint32_t
scr_emit(struct scr_cc *cc, enum scr_op op, uint16_t a, uint32_t b, int line)
{
    struct scr_program *p = cc->p;

    if (p->ncode >= SCR_MAX_CODE)
        scr_cc_error(cc, line, 1, "script too large (more than %u instructions)", SCR_MAX_CODE);
    if (p->ncode == p->capcode) {
        uint32_t cap = p->capcode ? p->capcode * 2 : 128;
        struct scr_ins *code = realloc(p->code, sizeof(*code) * cap);
        if (!code)
            scr_cc_error(cc, line, 1, "out of memory");
        p->code = code;
        uint32_t *lines = realloc(p->lines, sizeof(*lines) * cap);
        if (!lines)
            scr_cc_error(cc, line, 1, "out of memory");
        p->lines = lines;
        p->capcode = cap;
    }
    p->code[p->ncode] = (struct scr_ins){ .op = (uint16_t)op, .a = a, .b = b };
    p->lines[p->ncode] = (uint32_t)line;
    cc->sp += stack_effect(op, b);
    if (cc->sp > (int)p->max_stack) {
        if (cc->sp > STACK_LIMIT)
            scr_cc_error(cc, line, 1, "expression too complex (value stack over %d)",
                         STACK_LIMIT);
        p->max_stack = (uint32_t)cc->sp;
    }
    return p->ncode++;
}

void
scr_patch(struct scr_cc *cc, uint32_t at, uint32_t target)
{
    cc->p->code[at].b = target;
}

static uint32_t
const_add(struct scr_cc *cc, struct scr_val v, int line, int col)
{
    struct scr_program *p = cc->p;

    if (p->nconsts >= SCR_MAX_CONSTS)
        scr_cc_error(cc, line, col, "too many constants (limit %u)", SCR_MAX_CONSTS);
    if (p->nconsts == p->capconsts) {
        uint32_t cap = p->capconsts ? p->capconsts * 2 : 32;
        struct scr_val *c = realloc(p->consts, sizeof(*c) * cap);
        if (!c)
            scr_cc_error(cc, line, col, "out of memory");
        p->consts = c;
        char **b = realloc(p->blobs, sizeof(*b) * cap);
        if (!b)
            scr_cc_error(cc, line, col, "out of memory");
        p->blobs = b;
        p->capconsts = cap;
    }
    p->blobs[p->nconsts] = NULL;
    p->consts[p->nconsts] = v;
    return p->nconsts++;
}

uint32_t
scr_const_str(struct scr_cc *cc, const char *s, size_t len, int line, int col)
{
    struct scr_symtab *t = &cc->strs;
    uint32_t h = hash_bytes(s, len);

    if (t->n * 2 >= t->cap)
        symtab_grow(cc, t, line, col);
    struct scr_sym *e = symtab_find(t, h, eq_str, cc, s, len);
    if (e->idx != UINT32_MAX)
        return e->idx;

    char *copy = malloc(len + 1);
    if (!copy)
        scr_cc_error(cc, line, col, "out of memory");
    memcpy(copy, s, len);
    copy[len] = '\0';
    struct scr_val v = { .t = V_STR, .len = (uint32_t)len, .u.s = copy };
    uint32_t idx;
    /* const_add may longjmp: keep <copy> reachable first via a temporary slot */
    if (cc->p->nconsts >= SCR_MAX_CONSTS) {
        free(copy);
        scr_cc_error(cc, line, col, "too many constants (limit %u)", SCR_MAX_CONSTS);
    }
    if (cc->p->nconsts == cc->p->capconsts) {
        /* grow now so const_add cannot fail after we own <copy> */
        uint32_t cap = cc->p->capconsts ? cc->p->capconsts * 2 : 32;
        struct scr_val *c = realloc(cc->p->consts, sizeof(*c) * cap);
        char **b = c ? realloc(cc->p->blobs, sizeof(*b) * cap) : NULL;
        if (c)
            cc->p->consts = c;
        if (!c || !b) {
            free(copy);
            scr_cc_error(cc, line, col, "out of memory");
        }
        cc->p->blobs = b;
        cc->p->capconsts = cap;
    }
    idx = const_add(cc, v, line, col);
    cc->p->blobs[idx] = copy;
    e->hash = h;
    e->idx = idx;
    t->n++;
    return idx;
}

uint32_t
scr_const_int(struct scr_cc *cc, int64_t v, int line, int col)
{
    struct scr_symtab *t = &cc->ints;
    uint32_t h = hash_bytes(&v, sizeof(v));

    if (t->n * 2 >= t->cap)
        symtab_grow(cc, t, line, col);
    struct scr_sym *e = symtab_find(t, h, eq_int, cc, &v, sizeof(v));
    if (e->idx != UINT32_MAX)
        return e->idx;
    uint32_t idx = const_add(cc, scr_v_int(v), line, col);
    e->hash = h;
    e->idx = idx;
    t->n++;
    return idx;
}

uint32_t
scr_const_bool(struct scr_cc *cc, bool v, int line, int col)
{
    if (cc->bool_idx[v] == UINT32_MAX)
        cc->bool_idx[v] = const_add(cc, scr_v_bool(v), line, col);
    return cc->bool_idx[v];
}

static uint32_t
slot_new(struct scr_cc *cc, const char *name, size_t len, int line, int col)
{
    if (cc->p->nvars >= SCR_MAX_VARS)
        scr_cc_error(cc, line, col, "too many variables (limit %u)", SCR_MAX_VARS);
    if (cc->nnames == 0 || (cc->nnames & (cc->nnames - 1)) == 0) {
        size_t cap = cc->nnames ? (size_t)cc->nnames * 2 : 16;
        char **n = realloc(cc->names, sizeof(*n) * cap);
        if (!n)
            scr_cc_error(cc, line, col, "out of memory");
        cc->names = n;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        scr_cc_error(cc, line, col, "out of memory");
    memcpy(copy, name, len);
    copy[len] = '\0';
    cc->names[cc->nnames++] = copy;
    return cc->p->nvars++;
}

uint32_t
scr_var(struct scr_cc *cc, const char *name, size_t len, bool create, int line, int col)
{
    struct scr_symtab *t = &cc->vars;
    uint32_t h = hash_bytes(name, len);

    if (t->n * 2 >= t->cap)
        symtab_grow(cc, t, line, col);
    struct scr_sym *e = symtab_find(t, h, eq_var, cc, name, len);
    if (e->idx != UINT32_MAX)
        return e->idx;
    if (!create)
        return UINT32_MAX;
    uint32_t idx = slot_new(cc, name, len, line, col);
    e->hash = h;
    e->idx = idx;
    t->n++;
    return idx;
}

uint32_t
scr_hidden_slots(struct scr_cc *cc, uint32_t n, int line, int col)
{
    uint32_t first = cc->p->nvars;
    for (uint32_t i = 0; i < n; i++)
        slot_new(cc, "", 0, line, col);   /* "" never matches a real name */
    return first;
}

/* ---- public entry points ----------------------------------------------- */

void
scr_program_free(struct scr_program *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < p->nconsts; i++)
        free(p->blobs[i]);
    free(p->blobs);
    free(p->consts);
    free(p->code);
    free(p->lines);
    free(p);
}

void
scr_program_set_limits(struct scr_program *p, uint32_t max_steps, size_t max_mem)
{
    p->max_steps = max_steps ? max_steps : SCR_DEFAULT_STEPS;
    p->max_mem = max_mem ? max_mem : SCR_DEFAULT_MEMORY;
}

static void
cc_release(struct scr_cc *cc)
{
    scr_lex_free(&cc->lx);
    free(cc->vars.v);
    free(cc->strs.v);
    free(cc->ints.v);
    for (uint32_t i = 0; i < cc->nnames; i++)
        free(cc->names[i]);
    free(cc->names);
}

/* The only function that calls setjmp: returns 0, or -1 with cc->err filled in. */
static int
compile_body(struct scr_cc *cc, size_t len)
{
    if (setjmp(cc->jb) != 0)
        return -1;
    if (len > SCR_MAX_SOURCE)
        scr_cc_error(cc, 1, 1, "script too large (%zu bytes, limit %u)", len, SCR_MAX_SOURCE);
    scr_parse_program(cc);
    scr_emit(cc, OP_RET, 0, 0, cc->lx.tok.line);
    return 0;
}

struct scr_program *
scr_compile(const char *src, size_t len, const char *file, struct scr_err *err)
{
    struct scr_cc *cc = NULL;
    struct scr_program *p = NULL;

    if (err)
        memset(err, 0, sizeof(*err));
    cc = calloc(1, sizeof(*cc));
    p = calloc(1, sizeof(*p));
    if (!cc || !p) {
        if (err) {
            snprintf(err->file, sizeof(err->file), "%s", file ? file : "<script>");
            snprintf(err->msg, sizeof(err->msg), "out of memory");
        }
        goto fail;
    }
    cc->p = p;
    cc->err = err;
    cc->file = file;
    cc->bool_idx[0] = cc->bool_idx[1] = UINT32_MAX;
    snprintf(p->file, sizeof(p->file), "%s", file ? file : "<script>");
    scr_program_set_limits(p, 0, 0);
    scr_lex_init(&cc->lx, cc, src ? src : "", src ? len : 0);
    if (compile_body(cc, len) != 0)
        goto fail;
    cc_release(cc);
    free(cc);
    return p;
fail:
    if (cc)
        cc_release(cc);
    free(cc);
    scr_program_free(p);
    return NULL;
}

static const char *const op_names[OP__COUNT] = {
    [OP_CONST] = "const", [OP_NULL] = "null", [OP_LOAD] = "load", [OP_STORE] = "store",
    [OP_POP] = "pop", [OP_ADD] = "add", [OP_SUB] = "sub", [OP_MUL] = "mul", [OP_DIV] = "div",
    [OP_MOD] = "mod", [OP_EQ] = "eq", [OP_NE] = "ne", [OP_LT] = "lt", [OP_LE] = "le",
    [OP_GT] = "gt", [OP_GE] = "ge", [OP_NOT] = "not", [OP_NEG] = "neg", [OP_JMP] = "jmp",
    [OP_JF] = "jf", [OP_AND] = "and", [OP_OR] = "or", [OP_BOOL] = "bool", [OP_CALL] = "call",
    [OP_FIELD] = "field", [OP_HOST] = "host", [OP_ITER] = "iter", [OP_NEXT] = "next",
    [OP_RET] = "ret",
};

size_t
scr_program_dump(const struct scr_program *p, char *buf, size_t size)
{
    size_t n = 0;
    char tmp[160];

    if (size)
        buf[0] = '\0';
    for (uint32_t i = 0; i < p->ncode; i++) {
        const struct scr_ins *in = &p->code[i];
        int k;
        if (in->op == OP_CALL)
            k = snprintf(tmp, sizeof(tmp), "%4u  L%-4u %-6s %s/%u\n", i, p->lines[i], "call",
                         scr_builtins[in->a].name, in->b);
        else if (in->op == OP_CONST && p->consts[in->b].t == V_STR)
            k = snprintf(tmp, sizeof(tmp), "%4u  L%-4u %-6s \"%.40s\"\n", i, p->lines[i], "const",
                         p->consts[in->b].u.s);
        else if (in->op == OP_CONST)
            k = snprintf(tmp, sizeof(tmp), "%4u  L%-4u %-6s %" PRId64 "\n", i, p->lines[i],
                         "const", p->consts[in->b].u.i);
        else
            k = snprintf(tmp, sizeof(tmp), "%4u  L%-4u %-6s %u %u\n", i, p->lines[i],
                         in->op < OP__COUNT ? op_names[in->op] : "?", in->a, in->b);
        if (k < 0)
            continue;
        if (n + (size_t)k < size)
            memcpy(buf + n, tmp, (size_t)k + 1);
        n += (size_t)k;
    }
    return n + 1;
}
