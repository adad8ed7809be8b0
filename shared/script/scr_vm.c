/*
 * scr_vm: the interpreter. A switch-dispatched stack machine over the program's
 * instructions; the value stack, the variables and the first arena chunk live
 * on the C stack of scr_run(), so a typical run allocates nothing. Every
 * instruction costs one step; built-ins that loop charge extra steps. Memory
 * made during a run (strings, lists, records) comes from a bump arena capped
 * at max_mem and released in one go when the run ends.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "script/scr_int.h"

#define STACK_LIMIT   512         /* must match scr_compile.c */
#define FIRST_CHUNK   4096        /* arena bytes on the C stack */
#define CHUNK_MIN     (32u * 1024u)
#define ALIGN16(n)    (((n) + 15u) & ~(size_t)15u)

const char *
scr_outcome_name(enum scr_outcome o)
{
    switch (o) {
    case SCR_PASS: return "pass";
    case SCR_PROXIED: return "proxied";
    case SCR_RESPONDED: return "responded";
    case SCR_REDIRECTED: return "redirected";
    case SCR_DISPATCHED: return "dispatched";
    case SCR_ERROR: return "error";
    }
    return "?";
}

const char *
scr_type_name(uint32_t t)
{
    switch (t) {
    case V_NULL: return "null";
    case V_BOOL: return "boolean";
    case V_INT: return "integer";
    case V_STR: return "string";
    case V_LIST: return "list";
    case V_REC: return "endpoint";
    }
    return "?";
}

struct scr_val
scr_v_cstr(const char *s)
{
    struct scr_val v;
    if (!s)
        return scr_v_null();
    size_t n = strlen(s);
    v.t = V_STR;
    v.len = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    v.u.s = s;
    return v;
}

int
scr_vm_error(struct scr_vm *vm, const char *fmt, ...)
{
    struct scr_run_result *out = vm->out;
    va_list ap;
    char why[200];

    if (out->msg[0])              /* first error wins */
        return -1;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    out->line = vm->pc < vm->p->ncode ? (int)vm->p->lines[vm->pc] : 0;
    snprintf(out->msg, sizeof(out->msg), "%.100s:%d: %.140s", vm->p->file, out->line, why);
    return -1;
}

void *
scr_vm_alloc(struct scr_vm *vm, size_t n)
{
    n = ALIGN16(n ? n : 1);
    if (n > vm->max_mem || vm->mem + n > vm->max_mem) {
        scr_vm_error(vm, "memory limit of %zu bytes per run exceeded", vm->max_mem);
        return NULL;
    }
    if ((size_t)(vm->end - vm->cur) < n) {
        size_t hdr = ALIGN16(sizeof(struct scr_chunk));
        size_t size = n + hdr > CHUNK_MIN ? n + hdr : CHUNK_MIN;
        struct scr_chunk *c = malloc(size);
        if (!c) {
            scr_vm_error(vm, "out of memory");
            return NULL;
        }
        c->next = vm->chunks;
        vm->chunks = c;
        vm->cur = (char *)c + hdr;
        vm->end = (char *)c + size;
    }
    void *p = vm->cur;
    vm->cur += n;
    vm->mem += n;
    return p;
}

int
scr_vm_charge(struct scr_vm *vm, uint32_t n)
{
    if (n > vm->max_steps - vm->steps) {
        vm->steps = vm->max_steps;
        return scr_vm_error(vm, "step budget of %u exceeded", vm->max_steps);
    }
    vm->steps += n;
    return 0;
}

int
scr_vm_str(struct scr_vm *vm, const char *s, size_t n, struct scr_val *out)
{
    if (n > SCR_MAX_STRING)
        return scr_vm_error(vm, "string of %zu bytes exceeds the limit of %u", n, SCR_MAX_STRING);
    char *d = scr_vm_alloc(vm, n + 1);
    if (!d)
        return -1;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    out->t = V_STR;
    out->len = (uint32_t)n;
    out->u.s = d;
    return 0;
}

int
scr_vm_tostr(struct scr_vm *vm, const struct scr_val *v, struct scr_val *out)
{
    char tmp[24];
    int n;

    switch (v->t) {
    case V_STR:
        *out = *v;
        return 0;
    case V_NULL:
        *out = scr_v_cstr("");
        return 0;
    case V_BOOL:
        *out = scr_v_cstr(v->u.i ? "true" : "false");
        return 0;
    case V_INT:
        n = snprintf(tmp, sizeof(tmp), "%" PRId64, v->u.i);
        return scr_vm_str(vm, tmp, (size_t)n, out);
    default:
        return scr_vm_error(vm, "cannot convert %s to string", scr_type_name(v->t));
    }
}

bool
scr_truthy(const struct scr_val *v)
{
    switch (v->t) {
    case V_BOOL: case V_INT: return v->u.i != 0;
    case V_STR: return v->len > 0;
    case V_LIST: return v->u.l->n > 0;
    case V_REC: return true;
    default: return false;
    }
}

/* ASCII case-insensitive comparison of two byte strings (like strcasecmp with lengths). */
static int
str_cmp(const struct scr_val *a, const struct scr_val *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    for (size_t i = 0; i < n; i++) {
        int ca = (unsigned char)a->u.s[i], cb = (unsigned char)b->u.s[i];
        if (ca >= 'A' && ca <= 'Z')
            ca += 32;
        if (cb >= 'A' && cb <= 'Z')
            cb += 32;
        if (ca != cb)
            return ca - cb;
    }
    return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

static bool
equal(const struct scr_val *a, const struct scr_val *b)
{
    if (a->t != b->t)
        return false;
    switch (a->t) {
    case V_NULL: return true;
    case V_BOOL: case V_INT: return a->u.i == b->u.i;
    case V_STR: return a->len == b->len && str_cmp(a, b) == 0;
    case V_LIST: return a->u.l == b->u.l;
    case V_REC: return a->u.r == b->u.r;
    }
    return false;
}

static int
op_add(struct scr_vm *vm, const struct scr_val *a, const struct scr_val *b, struct scr_val *r)
{
    if (a->t == V_INT && b->t == V_INT) {
        int64_t s;
        if (__builtin_add_overflow(a->u.i, b->u.i, &s))
            return scr_vm_error(vm, "integer overflow");
        *r = scr_v_int(s);
        return 0;
    }
    if (a->t != V_STR && b->t != V_STR)
        return scr_vm_error(vm, "cannot add %s and %s", scr_type_name(a->t),
                            scr_type_name(b->t));
    struct scr_val sa, sb;
    if (scr_vm_tostr(vm, a, &sa) != 0 || scr_vm_tostr(vm, b, &sb) != 0)
        return -1;
    size_t n = (size_t)sa.len + sb.len;
    if (n > SCR_MAX_STRING)
        return scr_vm_error(vm, "string of %zu bytes exceeds the limit of %u", n, SCR_MAX_STRING);
    char *d = scr_vm_alloc(vm, n + 1);
    if (!d)
        return -1;
    memcpy(d, sa.u.s, sa.len);
    memcpy(d + sa.len, sb.u.s, sb.len);
    d[n] = '\0';
    r->t = V_STR;
    r->len = (uint32_t)n;
    r->u.s = d;
    return 0;
}

static int
op_arith(struct scr_vm *vm, enum scr_op op, const struct scr_val *a, const struct scr_val *b,
         struct scr_val *r)
{
    static const char sym[] = { [OP_SUB] = '-', [OP_MUL] = '*', [OP_DIV] = '/', [OP_MOD] = '%' };
    int64_t x, y, z = 0;
    bool ovf = false;

    if (a->t != V_INT || b->t != V_INT)
        return scr_vm_error(vm, "'%c' needs integers, got %s and %s", sym[op],
                            scr_type_name(a->t), scr_type_name(b->t));
    x = a->u.i;
    y = b->u.i;
    switch (op) {
    case OP_SUB: ovf = __builtin_sub_overflow(x, y, &z); break;
    case OP_MUL: ovf = __builtin_mul_overflow(x, y, &z); break;
    case OP_DIV:
    case OP_MOD:
        if (y == 0)
            return scr_vm_error(vm, "division by zero");
        if (x == INT64_MIN && y == -1)
            ovf = true;
        else
            z = op == OP_DIV ? x / y : x % y;
        break;
    default:
        break;
    }
    if (ovf)
        return scr_vm_error(vm, "integer overflow");
    *r = scr_v_int(z);
    return 0;
}

static int
op_compare(struct scr_vm *vm, enum scr_op op, const struct scr_val *a, const struct scr_val *b,
           struct scr_val *r)
{
    int c;
    if (a->t == V_INT && b->t == V_INT)
        c = a->u.i < b->u.i ? -1 : a->u.i > b->u.i ? 1 : 0;
    else if (a->t == V_STR && b->t == V_STR)
        c = str_cmp(a, b);
    else
        return scr_vm_error(vm, "cannot order %s and %s", scr_type_name(a->t),
                            scr_type_name(b->t));
    switch (op) {
    case OP_LT: *r = scr_v_bool(c < 0); break;
    case OP_LE: *r = scr_v_bool(c <= 0); break;
    case OP_GT: *r = scr_v_bool(c > 0); break;
    default: *r = scr_v_bool(c >= 0); break;
    }
    return 0;
}

static int
op_field(struct scr_vm *vm, uint16_t f, struct scr_val *v)
{
    if (v->t != V_REC)
        return scr_vm_error(vm, "'.%s' on %s (fields exist on endpoints)", scr_field_names[f],
                            scr_type_name(v->t));
    const struct scr_endpoint *ep = v->u.r;
    switch (f) {
    case F_EPID: *v = scr_v_cstr(ep->epid); break;
    case F_CONTACT: *v = scr_v_cstr(ep->contact); break;
    case F_ACTIVITY: *v = scr_v_cstr(ep->activity); break;
    case F_PATH: *v = scr_v_cstr(ep->path); break;
    case F_AVAILABILITY: *v = scr_v_int(ep->availability); break;
    default: *v = scr_v_int(ep->present_since); break;
    }
    return 0;
}

static struct scr_val
host_value(struct scr_vm *vm, uint16_t which)
{
    const struct scr_host *h = vm->h;
    bool known = h->is_request != NULL;
    bool req = known && h->is_request(h->arg);

    switch (which) {
    case HV_IS_REQUEST: return scr_v_bool(req);
    case HV_IS_RESPONSE: return scr_v_bool(known && !req);
    case HV_METHOD: return req && h->method ? scr_v_cstr(h->method(h->arg)) : scr_v_null();
    case HV_REQUEST_URI:
        return req && h->request_uri ? scr_v_cstr(h->request_uri(h->arg)) : scr_v_null();
    case HV_STATUS_CODE:
        return known && !req && h->status_code ? scr_v_int(h->status_code(h->arg)) : scr_v_null();
    default:
        return known && !req && h->status_code ? scr_v_int(h->status_code(h->arg) / 100)
                                               : scr_v_null();
    }
}

enum scr_outcome
scr_run(const struct scr_program *p, const struct scr_host *host, struct scr_run_result *out)
{
    struct scr_val stack[STACK_LIMIT];
    struct scr_val vars[SCR_MAX_VARS];
    _Alignas(16) char first[FIRST_CHUNK];
    static const struct scr_host no_host;
    struct scr_vm vm = {
        .p = p, .h = host ? host : &no_host, .out = out,
        .cur = first, .end = first + sizeof(first),
        .max_mem = p->max_mem, .max_steps = p->max_steps, .outcome = SCR_PASS,
    };
    const struct scr_ins *code = p->code;
    struct scr_val *sp = stack;   /* next free slot */
    uint32_t pc = 0;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < p->nvars; i++)
        vars[i] = scr_v_null();

    for (;;) {
        const struct scr_ins *in = &code[pc];
        vm.pc = pc;
        if (++vm.steps > vm.max_steps) {
            vm.steps = vm.max_steps;
            scr_vm_error(&vm, "step budget of %u exceeded", vm.max_steps);
            goto out;
        }
        pc++;
        switch ((enum scr_op)in->op) {
        case OP_CONST:
            *sp++ = p->consts[in->b];
            break;
        case OP_NULL:
            *sp++ = scr_v_null();
            break;
        case OP_LOAD:
            *sp++ = vars[in->b];
            break;
        case OP_STORE:
            vars[in->b] = *--sp;
            break;
        case OP_POP:
            sp--;
            break;
        case OP_ADD:
            sp--;
            if (op_add(&vm, &sp[-1], &sp[0], &sp[-1]) != 0)
                goto out;
            break;
        case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD:
            sp--;
            if (op_arith(&vm, (enum scr_op)in->op, &sp[-1], &sp[0], &sp[-1]) != 0)
                goto out;
            break;
        case OP_EQ:
            sp--;
            sp[-1] = scr_v_bool(equal(&sp[-1], &sp[0]));
            break;
        case OP_NE:
            sp--;
            sp[-1] = scr_v_bool(!equal(&sp[-1], &sp[0]));
            break;
        case OP_LT: case OP_LE: case OP_GT: case OP_GE:
            sp--;
            if (op_compare(&vm, (enum scr_op)in->op, &sp[-1], &sp[0], &sp[-1]) != 0)
                goto out;
            break;
        case OP_NOT:
            sp[-1] = scr_v_bool(!scr_truthy(&sp[-1]));
            break;
        case OP_NEG:
            if (sp[-1].t != V_INT) {
                scr_vm_error(&vm, "unary '-' needs an integer, got %s", scr_type_name(sp[-1].t));
                goto out;
            }
            if (sp[-1].u.i == INT64_MIN) {
                scr_vm_error(&vm, "integer overflow");
                goto out;
            }
            sp[-1].u.i = -sp[-1].u.i;
            break;
        case OP_JMP:
            pc = in->b;
            break;
        case OP_JF:
            sp--;
            if (!scr_truthy(sp))
                pc = in->b;
            break;
        case OP_AND:
            if (!scr_truthy(&sp[-1])) {
                sp[-1] = scr_v_bool(false);
                pc = in->b;
            } else {
                sp--;
            }
            break;
        case OP_OR:
            if (scr_truthy(&sp[-1])) {
                sp[-1] = scr_v_bool(true);
                pc = in->b;
            } else {
                sp--;
            }
            break;
        case OP_BOOL:
            sp[-1] = scr_v_bool(scr_truthy(&sp[-1]));
            break;
        case OP_CALL: {
            struct scr_val ret = scr_v_null();
            sp -= in->b;
            if (scr_builtins[in->a].fn(&vm, sp, (int)in->b, &ret) != 0)
                goto out;
            *sp++ = ret;
            break;
        }
        case OP_FIELD:
            if (op_field(&vm, in->a, &sp[-1]) != 0)
                goto out;
            break;
        case OP_HOST:
            *sp++ = host_value(&vm, in->a);
            break;
        case OP_ITER:
            sp--;
            if (sp->t != V_LIST && sp->t != V_NULL) {
                scr_vm_error(&vm, "foreach needs a list, got %s", scr_type_name(sp->t));
                goto out;
            }
            vars[in->b] = *sp;
            vars[in->b + 1] = scr_v_int(0);
            break;
        case OP_NEXT: {
            const struct scr_val *l = &vars[in->a];
            struct scr_val *idx = &vars[in->a + 1];
            if (l->t != V_LIST || idx->u.i >= (int64_t)l->u.l->n) {
                pc = in->b;
                break;
            }
            *sp++ = l->u.l->v[idx->u.i++];
            break;
        }
        case OP_RET:
            rc = 0;
            goto out;
        default:
            scr_vm_error(&vm, "bad instruction %u", in->op);
            goto out;
        }
    }
out:
    out->steps = vm.steps;
    out->mem = vm.mem;
    out->acted = vm.outcome;
    out->outcome = rc == 0 ? vm.outcome : SCR_ERROR;
    if (rc != 0 && !out->msg[0])
        scr_vm_error(&vm, "runtime error");
    while (vm.chunks) {
        struct scr_chunk *c = vm.chunks;
        vm.chunks = c->next;
        free(c);
    }
    return out->outcome;
}
