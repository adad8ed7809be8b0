#include "util/mem.h"
#include <stdlib.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

bool
mem_heap_get(struct mem_heap *h)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();

    h->in_use = mi.uordblks;
    h->free = mi.fordblks;
    h->mapped = mi.hblkhd;
    return true;
#else
    h->in_use = h->free = h->mapped = 0;
    return false;
#endif
}

bool
mem_trim(size_t min_free)
{
    struct mem_heap h;

    if (!mem_heap_get(&h) || h.free < min_free || h.free < (h.in_use + h.free) / 4)
        return false;
#ifdef __GLIBC__
    malloc_trim(0);
    return true;
#else
    return false;
#endif
}
