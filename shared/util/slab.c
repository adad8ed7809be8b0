#include "util/slab.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define SLAB_PASSTHROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define SLAB_PASSTHROUGH 1
#endif
#endif

#define SLAB_SIZE ((size_t)64 * 1024)
#define SLAB_HDR 64                       /* header, rounded up: objects stay 16-aligned */

/* Size classes: 16..256 by 16, then 320, 384, 448, 512. */
#define NCLASSES 20

struct slab {
    struct slab *next, *prev;             /* the class's list of slabs with room */
    void *free;                           /* freed objects, linked through their first word */
    unsigned bump;                        /* offset of the next never-used object */
    unsigned live;
    unsigned cls;
    bool listed;
};

#ifndef SLAB_PASSTHROUGH
static struct {
    struct slab *avail;                   /* slabs with room */
} classes[NCLASSES];
#endif
static struct slab_stats stats;

#ifndef SLAB_PASSTHROUGH
static unsigned
class_of(size_t n)
{
    if (n <= 256)
        return n == 0 ? 0 : (unsigned)((n - 1) / 16);
    return 16 + (unsigned)((n - 257) / 64);
}

static size_t
class_size(unsigned cls)
{
    return cls < 16 ? (size_t)(cls + 1) * 16 : 256 + (size_t)(cls - 15) * 64;
}

static void
list_add(struct slab *s)
{
    s->prev = NULL;
    s->next = classes[s->cls].avail;
    if (s->next)
        s->next->prev = s;
    classes[s->cls].avail = s;
    s->listed = true;
}

static void
list_del(struct slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        classes[s->cls].avail = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    s->listed = false;
}

/* A SLAB_SIZE-aligned mapping, so that an object finds its slab by masking. */
static struct slab *
slab_new(unsigned cls)
{
    size_t len = 2 * SLAB_SIZE;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uintptr_t start;
    struct slab *s;

    if (p == MAP_FAILED)
        return NULL;
    start = ((uintptr_t)p + SLAB_SIZE - 1) & ~(uintptr_t)(SLAB_SIZE - 1);
    if (start > (uintptr_t)p)
        munmap(p, start - (uintptr_t)p);
    if ((uintptr_t)p + len > start + SLAB_SIZE)
        munmap((char *)start + SLAB_SIZE, (uintptr_t)p + len - (start + SLAB_SIZE));
    s = (struct slab *)start;
    memset(s, 0, sizeof *s);
    s->cls = cls;
    s->bump = SLAB_HDR;
    list_add(s);
    stats.slabs++;
    stats.mapped += SLAB_SIZE;
    return s;
}

#endif /* !SLAB_PASSTHROUGH */

void *
slab_alloc(size_t n)
{
#ifdef SLAB_PASSTHROUGH
    return malloc(n ? n : 1);
#else
    unsigned cls;
    size_t sz;
    struct slab *s;
    void *obj;

    if (n > SLAB_MAX_OBJ)
        return malloc(n);
    cls = class_of(n);
    sz = class_size(cls);
    s = classes[cls].avail;
    if (s == NULL && (s = slab_new(cls)) == NULL)
        return NULL;
    if (s->free) {
        obj = s->free;
        s->free = *(void **)obj;
    } else {
        obj = (char *)s + s->bump;
        s->bump += (unsigned)sz;
    }
    s->live++;
    if (s->free == NULL && s->bump + sz > SLAB_SIZE)
        list_del(s);   /* full */
    stats.live++;
    stats.used += sz;
    return obj;
#endif
}

void *
slab_calloc(size_t n)
{
    void *p = slab_alloc(n);

    if (p)
        memset(p, 0, n);
    return p;
}

void
slab_free(void *p, size_t n)
{
#ifdef SLAB_PASSTHROUGH
    (void)n;
    free(p);
#else
    struct slab *s;
    size_t sz;

    if (p == NULL)
        return;
    if (n > SLAB_MAX_OBJ) {
        free(p);
        return;
    }
    s = (struct slab *)((uintptr_t)p & ~(uintptr_t)(SLAB_SIZE - 1));
    sz = class_size(s->cls);
    *(void **)p = s->free;
    s->free = p;
    s->live--;
    stats.live--;
    stats.used -= sz;
    if (!s->listed)
        list_add(s);
    if (s->live == 0 && (s->next || s->prev)) {
        /* Empty, and the class has another slab with room: give it back. */
        list_del(s);
        munmap(s, SLAB_SIZE);
        stats.slabs--;
        stats.mapped -= SLAB_SIZE;
    }
#endif
}

char *
slab_strdup(const char *s)
{
    size_t n;
    char *d;

    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    if ((d = slab_alloc(n)) != NULL)
        memcpy(d, s, n);
    return d;
}

void
slab_free_str(char *s)
{
    if (s)
        slab_free(s, strlen(s) + 1);
}

void
slab_stats_get(struct slab_stats *out)
{
    *out = stats;
}

bool
slab_passthrough(void)
{
#ifdef SLAB_PASSTHROUGH
    return true;
#else
    return false;
#endif
}
