#include "us_location.h"

#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/slab.h"

struct us_location {
    struct us_aor **buckets;
    size_t nbuckets;          /* power of two */
    size_t aors;
    size_t bindings;
};

static uint32_t
hash_str(const char *s)
{
    return hash_fnv1a32_str(HASH_FNV32_BASIS, s);
}

struct us_location *
us_loc_new(void)
{
    struct us_location *loc = calloc(1, sizeof *loc);

    if (loc == NULL)
        return NULL;
    loc->nbuckets = 4096;
    loc->buckets = calloc(loc->nbuckets, sizeof *loc->buckets);
    if (loc->buckets == NULL) {
        free(loc);
        return NULL;
    }
    return loc;
}

static void
binding_free(struct us_binding *b)
{
    slab_free_str(b->contact);
    slab_free_str(b->instance);
    slab_free_str(b->epid);
    slab_free_str(b->path);
    slab_free_str(b->call_id);
    slab_free_str(b->received);
    slab_free_str(b->user_agent);
    slab_free(b, sizeof *b);
}

void
us_loc_free(struct us_location *loc)
{
    if (loc == NULL)
        return;
    for (size_t i = 0; i < loc->nbuckets; i++) {
        struct us_aor *a = loc->buckets[i], *an;
        for (; a; a = an) {
            an = a->hnext;
            for (struct us_binding *b = a->bindings, *bn; b; b = bn) {
                bn = b->next;
                binding_free(b);
            }
            slab_free_str(a->aor);
            slab_free(a, sizeof *a);
        }
    }
    free(loc->buckets);
    free(loc);
}

static void
grow(struct us_location *loc)
{
    size_t n = loc->nbuckets * 2;
    struct us_aor **nb = calloc(n, sizeof *nb);

    if (nb == NULL)
        return;
    for (size_t i = 0; i < loc->nbuckets; i++) {
        for (struct us_aor *a = loc->buckets[i], *an; a; a = an) {
            an = a->hnext;
            a->hnext = nb[a->hash & (n - 1)];
            nb[a->hash & (n - 1)] = a;
        }
    }
    free(loc->buckets);
    loc->buckets = nb;
    loc->nbuckets = n;
}

struct us_aor *
us_loc_find(struct us_location *loc, const char *aor)
{
    uint32_t h = hash_str(aor);

    for (struct us_aor *a = loc->buckets[h & (loc->nbuckets - 1)]; a; a = a->hnext)
        if (a->hash == h && strcmp(a->aor, aor) == 0)
            return a;
    return NULL;
}

struct us_aor *
us_loc_get(struct us_location *loc, const char *aor)
{
    struct us_aor *a = us_loc_find(loc, aor);
    size_t b;

    if (a)
        return a;
    if (loc->aors >= loc->nbuckets)
        grow(loc);
    a = slab_calloc(sizeof *a);
    if (a == NULL || (a->aor = slab_strdup(aor)) == NULL) {
        slab_free(a, sizeof *a);
        return NULL;
    }
    a->hash = hash_str(aor);
    b = a->hash & (loc->nbuckets - 1);
    a->hnext = loc->buckets[b];
    loc->buckets[b] = a;
    loc->aors++;
    return a;
}

void
us_loc_release(struct us_location *loc, struct us_aor *a)
{
    struct us_aor **pp;

    if (a->bindings != NULL)
        return;
    for (pp = &loc->buckets[a->hash & (loc->nbuckets - 1)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == a) {
            *pp = a->hnext;
            loc->aors--;
            slab_free_str(a->aor);
            slab_free(a, sizeof *a);
            return;
        }
    }
}

struct us_binding *
us_loc_binding_find(struct us_aor *a, const char *contact, const char *instance, int reg_id)
{
    for (struct us_binding *b = a->bindings; b; b = b->next) {
        if (instance) {
            if (b->instance && strcmp(b->instance, instance) == 0 && b->reg_id == reg_id)
                return b;
        } else if (b->instance == NULL && strcmp(b->contact, contact) == 0) {
            return b;
        }
    }
    /* A binding keyed by contact that later sends an instance is the same binding. */
    for (struct us_binding *b = a->bindings; b; b = b->next)
        if (strcmp(b->contact, contact) == 0)
            return b;
    return NULL;
}

struct us_binding *
us_loc_binding_add(struct us_location *loc, struct us_aor *a)
{
    struct us_binding *b = slab_calloc(sizeof *b);

    if (b == NULL)
        return NULL;
    b->next = a->bindings;
    a->bindings = b;
    a->count++;
    loc->bindings++;
    return b;
}

void
us_loc_binding_remove(struct us_location *loc, struct us_aor *a, struct us_binding *b)
{
    for (struct us_binding **pp = &a->bindings; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            a->count--;
            loc->bindings--;
            binding_free(b);
            return;
        }
    }
}

int
us_loc_set_str(char **field, const char *v)
{
    char *n = NULL;

    if (v && (n = slab_strdup(v)) == NULL)
        return -1;
    slab_free_str(*field);
    *field = n;
    return 0;
}

size_t
us_loc_purge(struct us_location *loc, int64_t now, us_loc_expired_fn *cb, void *arg)
{
    size_t n = 0;

    for (size_t i = 0; i < loc->nbuckets; i++) {
        struct us_aor *a = loc->buckets[i], *an;
        for (; a; a = an) {
            an = a->hnext;
            for (struct us_binding *b = a->bindings, *bn; b; b = bn) {
                bn = b->next;
                if (b->expires_at <= now) {
                    if (cb)
                        cb(a->aor, b, arg);
                    us_loc_binding_remove(loc, a, b);
                    n++;
                }
            }
            us_loc_release(loc, a);
        }
    }
    return n;
}

size_t us_loc_aor_count(const struct us_location *loc) { return loc->aors; }
size_t us_loc_binding_count(const struct us_location *loc) { return loc->bindings; }
