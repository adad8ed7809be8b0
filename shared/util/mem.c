#include "util/mem.h"
#include <stdlib.h>

#include <event2/event.h>

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

struct mem_housekeeper {
    struct event *ev;
    size_t min_free;
};

static void
housekeeping_cb(evutil_socket_t fd, short what, void *arg)
{
    struct mem_housekeeper *h = arg;

    (void)fd;
    (void)what;
    mem_trim(h->min_free);
}

struct mem_housekeeper *
mem_housekeeper_new(struct event_base *base, unsigned interval_ms, size_t min_free)
{
    struct mem_housekeeper *h = calloc(1, sizeof *h);
    struct timeval tv = {interval_ms / 1000, (interval_ms % 1000) * 1000};

    if (h == NULL)
        return NULL;
    h->min_free = min_free;
    if ((h->ev = event_new(base, -1, EV_PERSIST, housekeeping_cb, h)) == NULL || event_add(h->ev, &tv) != 0) {
        mem_housekeeper_free(h);
        return NULL;
    }
    return h;
}

void
mem_housekeeper_free(struct mem_housekeeper *h)
{
    if (h == NULL)
        return;
    if (h->ev)
        event_free(h->ev);
    free(h);
}
