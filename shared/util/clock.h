/* clock: monotonic and wall time helpers. */
#ifndef PARLEY_UTIL_CLOCK_H
#define PARLEY_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on the monotonic clock. */
static inline uint64_t
clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Seconds since the epoch (wall clock), for stored expiry times. */
static inline int64_t
clock_wall_s(void)
{
    return (int64_t)time(NULL);
}

#endif
