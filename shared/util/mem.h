/*
 * mem: the process heap as the allocator sees it, and giving freed memory back.
 *
 * A burst of traffic leaves the heap with many free chunks (finished transactions,
 * parsed messages) between long-lived ones (registrations); glibc keeps those pages
 * resident until malloc_trim() returns them. mem_trim() does so when the free part
 * of the heap is large, so a server's resident size follows what it really holds.
 * Without glibc both are no-ops that report 0.
 */
#ifndef PARLEY_UTIL_MEM_H
#define PARLEY_UTIL_MEM_H

#include <stdbool.h>
#include <stddef.h>

struct mem_heap {
    size_t in_use;       /* bytes in allocated chunks */
    size_t free;         /* bytes in free chunks kept by the allocator */
    size_t mapped;       /* bytes in chunks served by mmap */
};

/* Fills <h>; false when the allocator cannot tell. */
bool mem_heap_get(struct mem_heap *h);

/*
 * Returns free heap pages to the system when the allocator holds more than
 * <min_free> free bytes and at least a quarter of the heap is free. Cost: a few
 * milliseconds on a large fragmented heap; call it from a timer, not per message.
 * True when it trimmed.
 */
bool mem_trim(size_t min_free);

/*
 * The process's housekeeping timer: every <interval_ms>, mem_trim(<min_free>). One per
 * process, started by its main (home server, front-end and each worker, edge). NULL on
 * allocation failure (then nothing is trimmed; the server still runs).
 */
struct event_base;
struct mem_housekeeper;
struct mem_housekeeper *mem_housekeeper_new(struct event_base *base, unsigned interval_ms, size_t min_free);
void mem_housekeeper_free(struct mem_housekeeper *h);

#endif
