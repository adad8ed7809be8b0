#include "util/sbuf.h"

#include <stdlib.h>
#include <string.h>

void
sbuf_free(struct sbuf *b)
{
    if (b->p != b->stk)
        free(b->p);
    b->p = b->stk;
    b->n = 0;
    b->cap = sizeof b->stk;
    b->stk[0] = '\0';
}

void
sbuf_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->fail)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap * 2;
        char *np;
        while (cap < b->n + n + 1)
            cap *= 2;
        if (b->p == b->stk) {
            np = malloc(cap);
            if (np != NULL)
                memcpy(np, b->stk, b->n);
        } else {
            np = realloc(b->p, cap);
        }
        if (np == NULL) {
            b->fail = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void
sbuf_puts(struct sbuf *b, const char *s)
{
    sbuf_put(b, s, strlen(s));
}

void
sbuf_line(struct sbuf *b, const char *name, const char *value)
{
    sbuf_puts(b, name);
    sbuf_put(b, ": ", 2);
    sbuf_puts(b, value);
    sbuf_put(b, "\r\n", 2);
}

void
sbuf_putll(struct sbuf *b, long long v)
{
    char d[24];
    size_t i = sizeof d;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do {
        d[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        d[--i] = '-';
    sbuf_put(b, d + i, sizeof d - i);
}

int
sbuf_finish(struct sbuf *b, char **out, size_t *outlen)
{
    char *np;

    if (b->fail) {
        sbuf_free(b);
        b->fail = false;
        return -1;
    }
    /* Exact size: a server transaction keeps its answer's bytes for 32 s (Timer J). */
    if (b->p == b->stk) {
        if ((np = malloc(b->n + 1)) == NULL)
            return -1;
        memcpy(np, b->stk, b->n + 1);
    } else {
        np = b->p;
        if (b->cap > b->n + 1) {
            char *shrunk = realloc(b->p, b->n + 1);
            if (shrunk != NULL)
                np = shrunk;
        }
    }
    *out = np;
    if (outlen)
        *outlen = b->n;
    b->p = b->stk;
    b->n = 0;
    b->cap = sizeof b->stk;
    b->stk[0] = '\0';
    return 0;
}
