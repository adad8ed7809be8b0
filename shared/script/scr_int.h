/*
 * scr_int: types shared by the script module's files (lexer, parser/compiler,
 * VM, built-ins). Not part of the public contract: include "script/scr.h".
 */
#ifndef PARLEY_SCRIPT_SCR_INT_H
#define PARLEY_SCRIPT_SCR_INT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "script/scr.h"

/* ---- values ------------------------------------------------------------ */

enum scr_vtype {
    V_NULL = 0,
    V_BOOL,
    V_INT,
    V_STR,
    V_LIST,
    V_REC,                        /* an endpoint record (struct scr_endpoint) */
};

struct scr_list;

/*
 * A value is 16 bytes and copied freely. Strings are always NUL-terminated and
 * <len> is their length; they point at a program constant, at host memory
 * (borrowed for the run) or into the run arena, never owned by the value.
 */
struct scr_val {
    uint32_t t;                   /* enum scr_vtype */
    uint32_t len;                 /* V_STR: bytes, excluding the NUL */
    union {
        int64_t i;                /* V_INT; V_BOOL as 0/1 */
        const char *s;
        const struct scr_list *l;
        const struct scr_endpoint *r;
    } u;
};

struct scr_list {
    uint32_t n;
    struct scr_val v[];
};

/* ---- bytecode ---------------------------------------------------------- */

enum scr_op {
    OP_CONST = 0,                 /* push consts[b] */
    OP_NULL,                      /* push null */
    OP_LOAD,                      /* push vars[b] */
    OP_STORE,                     /* vars[b] = pop */
    OP_POP,
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE,
    OP_NOT, OP_NEG,
    OP_JMP,                       /* pc = b */
    OP_JF,                        /* pop; if falsy pc = b */
    OP_AND,                       /* top falsy: top = false, pc = b; else pop */
    OP_OR,                        /* top truthy: top = true, pc = b; else pop */
    OP_BOOL,                      /* top = truthy(top) */
    OP_CALL,                      /* builtin a with b args on the stack -> 1 result */
    OP_FIELD,                     /* top = top.<field a> */
    OP_HOST,                      /* push message accessor a (enum scr_hostval) */
    OP_ITER,                      /* vars[b] = list(pop), vars[b+1] = 0 */
    OP_NEXT,                      /* vars[a] has more: push next; else pc = b */
    OP_RET,
    OP__COUNT,
};

/* 8 bytes; <a> and <b> are operands as documented on enum scr_op. */
struct scr_ins {
    uint16_t op;
    uint16_t a;
    uint32_t b;
};

enum scr_hostval {
    HV_IS_REQUEST = 0,
    HV_IS_RESPONSE,
    HV_METHOD,
    HV_REQUEST_URI,
    HV_STATUS_CODE,
    HV_STATUS_CLASS,
};

enum scr_field {
    F_EPID = 0,
    F_CONTACT,
    F_AVAILABILITY,
    F_ACTIVITY,
    F_PRESENT_SINCE,
    F_PATH,
    F__COUNT,
};

extern const char *const scr_field_names[F__COUNT];

/* Immutable after compile (except the limits, set before sharing). */
struct scr_program {
    struct scr_ins *code;
    uint32_t *lines;              /* source line of each instruction */
    uint32_t ncode, capcode;
    struct scr_val *consts;       /* strings point into blobs owned here */
    char **blobs;                 /* one malloc per string constant */
    uint32_t nconsts, capconsts;
    uint32_t nvars;               /* slots a run needs (variables + loop state) */
    uint32_t max_stack;           /* deepest value stack the code reaches */
    uint32_t max_steps;
    size_t max_mem;
    char file[256];
};

/* ---- lexer ------------------------------------------------------------- */

enum scr_tok_type {
    T_EOF = 0,
    T_IDENT, T_INT, T_STR,
    T_LPAREN, T_RPAREN, T_LBRACE, T_RBRACE, T_COMMA, T_SEMI, T_DOT,
    T_ASSIGN, T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE,
    T_AND, T_OR, T_NOT, T_PLUS, T_MINUS, T_STAR, T_SLASH, T_PERCENT,
    T_IF, T_ELSE, T_FOREACH, T_IN, T_RETURN, T_BREAK, T_TRUE, T_FALSE, T_NULL,
};

struct scr_tok {
    enum scr_tok_type t;
    int line, col;
    const char *p;                /* start in the source */
    size_t len;                   /* bytes in the source */
    int64_t ival;                 /* T_INT */
    const char *sval;             /* T_STR: decoded, valid until the next token */
    size_t slen;
};

struct scr_cc;

struct scr_lex {
    const char *cur, *end;
    const char *line_start;
    int line;
    struct scr_tok tok;           /* current token */
    char *sbuf;                   /* decoded string literal */
    size_t scap;
    struct scr_cc *cc;            /* for errors */
};

void scr_lex_init(struct scr_lex *lx, struct scr_cc *cc, const char *src, size_t len);
void scr_lex_next(struct scr_lex *lx);                /* errors longjmp through cc */
bool scr_lex_next_is_assign(const struct scr_lex *lx); /* next token is '=' (not '==') */
void scr_lex_free(struct scr_lex *lx);
const char *scr_tok_name(enum scr_tok_type t);

/* ---- compiler ---------------------------------------------------------- */

struct scr_sym {                  /* open-addressing entry; keys compared by the owner */
    uint32_t hash;
    uint32_t idx;                 /* UINT32_MAX = empty */
};

struct scr_symtab {
    struct scr_sym *v;
    uint32_t n, cap;
};

struct scr_loop {
    struct scr_loop *up;
    uint32_t break_chain;         /* JMPs to patch to the loop end, linked through .b */
};

/* Compile context: one per scr_compile(); errors longjmp to <jb>. */
struct scr_cc {
    struct scr_lex lx;
    struct scr_program *p;
    struct scr_err *err;
    const char *file;
    jmp_buf jb;
    int depth;
    int sp;                       /* value stack depth at this point of the code */
    struct scr_symtab vars;       /* variable name -> slot */
    struct scr_symtab strs;       /* string constant -> const index */
    struct scr_symtab ints;       /* int constant -> const index */
    uint32_t bool_idx[2];         /* const index of false/true, UINT32_MAX until used */
    struct scr_loop *loop;
    char **names;                 /* variable names (owned) */
    uint32_t nnames;
};

_Noreturn void scr_cc_error(struct scr_cc *cc, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
uint32_t scr_emit(struct scr_cc *cc, enum scr_op op, uint16_t a, uint32_t b, int line);
void scr_patch(struct scr_cc *cc, uint32_t at, uint32_t target);
uint32_t scr_const_str(struct scr_cc *cc, const char *s, size_t len, int line, int col);
uint32_t scr_const_int(struct scr_cc *cc, int64_t v, int line, int col);
uint32_t scr_const_bool(struct scr_cc *cc, bool v, int line, int col);
/* Slot of variable <name>; creates it when <create>, else returns UINT32_MAX if unknown. */
uint32_t scr_var(struct scr_cc *cc, const char *name, size_t len, bool create, int line, int col);
uint32_t scr_hidden_slots(struct scr_cc *cc, uint32_t n, int line, int col);
void scr_parse_program(struct scr_cc *cc);  /* scr_parse.c */

/* ---- runtime ----------------------------------------------------------- */

struct scr_chunk {
    struct scr_chunk *next;
};

struct scr_vm {
    const struct scr_program *p;
    const struct scr_host *h;
    struct scr_run_result *out;
    char *cur, *end;              /* current arena chunk */
    struct scr_chunk *chunks;     /* malloc'd chunks, freed at the end of the run */
    size_t mem, max_mem;
    uint32_t steps, max_steps;
    uint32_t pc;                  /* instruction being executed (for error lines) */
    enum scr_outcome outcome;     /* terminal action taken so far, or SCR_PASS */
    const char *handled_by;       /* name of that action */
};

typedef int scr_builtin_fn(struct scr_vm *vm, struct scr_val *args, int argc,
                           struct scr_val *ret);

struct scr_builtin {
    const char *name;
    uint8_t min, max;             /* arity */
    scr_builtin_fn *fn;
};

extern const struct scr_builtin scr_builtins[];
extern const size_t scr_nbuiltins;
/* Index of builtin <name>, or -1. Names are case-sensitive. */
int scr_builtin_find(const char *name, size_t len);

/* Helpers for built-ins (scr_vm.c). Functions returning int give 0 or -1 with the error set. */
int scr_vm_error(struct scr_vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *scr_vm_alloc(struct scr_vm *vm, size_t n);
/* Charges <n> extra steps for work done inside a built-in (list elements, records). */
int scr_vm_charge(struct scr_vm *vm, uint32_t n);
/* Copies <n> bytes of <s> into a new arena string value. */
int scr_vm_str(struct scr_vm *vm, const char *s, size_t n, struct scr_val *out);
/* Converts any scalar to its string form (null -> ""); lists/records are errors. */
int scr_vm_tostr(struct scr_vm *vm, const struct scr_val *v, struct scr_val *out);
bool scr_truthy(const struct scr_val *v);
const char *scr_type_name(uint32_t t);

static inline struct scr_val
scr_v_int(int64_t i)
{
    struct scr_val v = { .t = V_INT, .len = 0, .u.i = i };
    return v;
}

static inline struct scr_val
scr_v_bool(bool b)
{
    struct scr_val v = { .t = V_BOOL, .len = 0, .u.i = b ? 1 : 0 };
    return v;
}

static inline struct scr_val
scr_v_null(void)
{
    struct scr_val v = { .t = V_NULL, .len = 0, .u.i = 0 };
    return v;
}

/* Borrowed host string (NULL -> null). */
struct scr_val scr_v_cstr(const char *s);

#endif
