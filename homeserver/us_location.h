/*
 * us_location: the in-memory location service of the home server — address of
 * record -> bindings (RFC 3261 §10). The registrar owns it and keeps it in step with
 * the store (which makes it durable); request routing reads it.
 *
 * One hash table of AORs; each AOR holds a short list of bindings. All strings are
 * owned by the binding and set only with us_loc_set_str(). Entries, bindings and
 * their strings come from the slab allocator (util/slab.h), apart from the malloc
 * heap that transactions churn. Loop thread only.
 */
#ifndef PARLEY_HS_US_LOCATION_H
#define PARLEY_HS_US_LOCATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/tp.h"

struct us_binding {
    struct us_binding *next;
    char *contact;            /* Contact URI as registered */
    char *instance;           /* +sip.instance or NULL */
    int reg_id;
    char *epid;               /* endpoint id (design §3) */
    char *path;               /* comma-joined Path URIs or NULL */
    char *call_id;
    uint32_t cseq;
    int64_t expires_at;       /* unix seconds */
    int q;                    /* 0..1000 */
    char *received;           /* "udp:1.2.3.4:5060" or NULL */
    char *user_agent;
    int64_t registered_at;
    uint64_t conn_id;         /* stream flow it registered on (0 = none / unknown) */
};

struct us_aor {
    struct us_aor *hnext;
    uint32_t hash;
    char *aor;
    struct us_binding *bindings;
    unsigned count;
};

struct us_location;

struct us_location *us_loc_new(void);
void us_loc_free(struct us_location *loc);

struct us_aor *us_loc_find(struct us_location *loc, const char *aor);
struct us_aor *us_loc_get(struct us_location *loc, const char *aor);   /* creates when absent */
/* Removes the AOR entry when it has no bindings left. */
void us_loc_release(struct us_location *loc, struct us_aor *a);

/* By (instance, reg_id) when <instance> is set, else by contact URI. */
struct us_binding *us_loc_binding_find(struct us_aor *a, const char *contact, const char *instance,
                                       int reg_id);
/* Adds an empty binding to <a>; the caller fills it. */
struct us_binding *us_loc_binding_add(struct us_location *loc, struct us_aor *a);
void us_loc_binding_remove(struct us_location *loc, struct us_aor *a, struct us_binding *b);
/* Replaces a string field: frees the old value, copies <v> (NULL allowed). */
int us_loc_set_str(char **field, const char *v);

/* Calls <cb> for every binding expired at <now>, then removes it. Returns how many. */
typedef void us_loc_expired_fn(const char *aor, const struct us_binding *b, void *arg);
size_t us_loc_purge(struct us_location *loc, int64_t now, us_loc_expired_fn *cb, void *arg);

size_t us_loc_aor_count(const struct us_location *loc);
size_t us_loc_binding_count(const struct us_location *loc);

#endif
