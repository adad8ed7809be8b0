/*
 * sbuf: a byte string built in a stack buffer and copied once, at its exact size, into
 * the heap by sbuf_finish(): a message of a few hundred bytes then costs one small
 * malloc, not a realloc grown and shrunk (glibc serves those from its slow path), and
 * no FILE (open_memstream allocates and clears 8 KiB per call). Larger output moves to
 * the heap as it grows. An allocation failure is remembered (fail) and reported by
 * sbuf_finish(). Declare with SBUF_INIT(b); release with sbuf_free() or sbuf_finish().
 */
#ifndef PARLEY_UTIL_SBUF_H
#define PARLEY_UTIL_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
    char *p;                  /* NUL-terminated */
    size_t n, cap;
    bool fail;
    char stk[2048];
};

#define SBUF_INIT(b)              \
    do {                          \
        (b).p = (b).stk;          \
        (b).n = 0;                \
        (b).cap = sizeof (b).stk; \
        (b).fail = false;         \
        (b).stk[0] = '\0';        \
    } while (0)

void sbuf_put(struct sbuf *b, const char *s, size_t n);
void sbuf_puts(struct sbuf *b, const char *s);
/* "name: value\r\n" */
void sbuf_line(struct sbuf *b, const char *name, const char *value);
/* <v> in decimal */
void sbuf_putll(struct sbuf *b, long long v);
void sbuf_free(struct sbuf *b);
/* The string into a malloc'd <*out> (free()), its length in <*outlen> (may be NULL);
 * <b> is left empty. 0, or -1 after an allocation failure (then <b> is freed). */
int sbuf_finish(struct sbuf *b, char **out, size_t *outlen);

#endif
