/*
 * slab: a small-object allocator for long-lived data (registrations), kept apart
 * from the malloc heap.
 *
 * Why: a burst of REGISTERs interleaves each new binding with the request's
 * transient allocations (parsed message, transaction). When the transients are
 * freed the heap is a sieve: the bindings pin every page, malloc_trim() can give
 * nothing back, and the resident size stays at several times what the bindings
 * hold. Objects from here live in 64 KiB slabs mapped with mmap(), one size class
 * per slab, so long-lived data stays dense and the heap can be trimmed.
 *
 * Objects of up to SLAB_MAX_OBJ bytes come from slabs; larger ones from malloc().
 * The caller passes the size again on free (it knows it: a struct, or strlen + 1).
 * A slab with no live object is unmapped when its class has another with room.
 * Not thread-safe: one thread (the event loop) uses it. Built with a sanitizer,
 * everything goes to malloc() so that ASan still sees every object.
 */
#ifndef PARLEY_UTIL_SLAB_H
#define PARLEY_UTIL_SLAB_H

#include <stdbool.h>
#include <stddef.h>

#define SLAB_MAX_OBJ 512

/* <n> bytes (not zeroed), or NULL. */
void *slab_alloc(size_t n);
/* <n> zeroed bytes, or NULL. */
void *slab_calloc(size_t n);
/* Frees <p> (NULL allowed) of the size it was allocated with. */
void slab_free(void *p, size_t n);

/* A copy of <s> (NULL gives NULL), freed with slab_free_str(). */
char *slab_strdup(const char *s);
void slab_free_str(char *s);

struct slab_stats {
    size_t slabs;          /* slabs mapped */
    size_t mapped;         /* bytes mapped for slabs */
    size_t live;           /* objects in use (slab-allocated ones) */
    size_t used;           /* bytes of those objects (their class size) */
};
void slab_stats_get(struct slab_stats *out);
/* True in sanitizer builds, where every object comes from malloc() (no slabs, no counts). */
bool slab_passthrough(void);

#endif
