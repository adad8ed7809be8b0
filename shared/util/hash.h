/* FNV-1a (Fowler/Noll/Vo), 32 and 64 bit: the one definition of the hash that table
 * lookups, tags, branches and fingerprints are built on.
 *
 * Every helper takes the running hash first, so that a caller starts from the seed it has
 * always used and can chain strings, bytes and separators:
 *
 *     h = hash_fnv1a64_str(HASH_FNV64_SEED, a);
 *     h = hash_fnv1a64_step(h, '|');
 *
 * Values must not change: some reach the wire (To tags, stateless branches, epids, loop
 * hashes) or are compared between processes. */
#ifndef PARLEY_UTIL_HASH_H
#define PARLEY_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV32_PRIME 16777619u
#define HASH_FNV32_BASIS 2166136261u            /* the standard 32-bit offset basis */

#define HASH_FNV64_PRIME 1099511628211ULL
#define HASH_FNV64_BASIS 14695981039346656037ULL /* the standard 64-bit offset basis */
/* The seed Parley's 64-bit hashes have always started from: the standard basis without its
 * last digit. Tags, branches, epids and loop hashes derived from it are seen by peers and by
 * the other servers of the pool, so it stays as it is: do not "fix" it to HASH_FNV64_BASIS. */
#define HASH_FNV64_SEED 1469598103934665603ULL

/* ASCII only, independent of the locale (not tolower()). */
static inline unsigned char
hash_ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* ------------------------------------------------------------------ 32 bit */

/* One round: v is xor-ed in whole (a byte, or a word such as another hash). */
static inline uint32_t
hash_fnv1a32_step(uint32_t h, uint32_t v)
{
    return (h ^ v) * HASH_FNV32_PRIME;
}

static inline uint32_t
hash_fnv1a32(uint32_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++)
        h = hash_fnv1a32_step(h, p[i]);
    return h;
}

static inline uint32_t
hash_fnv1a32_str(uint32_t h, const char *s)
{
    for (; *s; s++)
        h = hash_fnv1a32_step(h, (unsigned char)*s);
    return h;
}

/* As if the string were in lower case (ASCII): for case-insensitive keys. */
static inline uint32_t
hash_fnv1a32_str_lower(uint32_t h, const char *s)
{
    for (; *s; s++)
        h = hash_fnv1a32_step(h, hash_ascii_lower((unsigned char)*s));
    return h;
}

/* ------------------------------------------------------------------ 64 bit */

static inline uint64_t
hash_fnv1a64_step(uint64_t h, uint64_t v)
{
    return (h ^ v) * HASH_FNV64_PRIME;
}

static inline uint64_t
hash_fnv1a64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++)
        h = hash_fnv1a64_step(h, p[i]);
    return h;
}

static inline uint64_t
hash_fnv1a64_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = hash_fnv1a64_step(h, (unsigned char)*s);
    return h;
}

static inline uint64_t
hash_fnv1a64_str_lower(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = hash_fnv1a64_step(h, hash_ascii_lower((unsigned char)*s));
    return h;
}

#endif
