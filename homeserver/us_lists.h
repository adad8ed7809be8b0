/*
 * us_lists: each user's contact list, groups and allow/block list (design §3), kept in
 * memory and durable in the store (kv namespace "lists", one document per user).
 *
 * Managed with SERVICE requests whose body is an application/vnd-parley-service+xml
 * document (docs/contact-list.md): a batch of contact, group and acl operations applied
 * atomically against the list version the client last saw (stale -> 409 with the
 * current version). Read with a subscription to the user's own list, event package
 * "vnd-parley-contacts" (NOTIFY with the whole list on every change). Allow/block
 * entries name a user ("bob@example.com") or a domain ("example.org"); a user entry
 * beats a domain entry and "allow" beats "block" at the same level.
 */
#ifndef PARLEY_HS_US_LISTS_H
#define PARLEY_HS_US_LISTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/px.h"
#include "store/store.h"
#include "us_subs.h"

#define US_LISTS_EVENT "vnd-parley-contacts"
#define US_LISTS_CTYPE "application/vnd-parley-contacts+xml"
#define US_SERVICE_CTYPE "application/vnd-parley-service+xml"
#define US_LISTS_NS "urn:parley:params:xml:ns:contacts"

struct us_lists;

/* ----------------------------------------------------------------- SERVICE documents */

enum us_op_kind {
    US_OP_CONTACT_SET = 0,       /* add or replace a contact (by uri) */
    US_OP_CONTACT_DEL,
    US_OP_GROUP_SET,             /* add or rename a group (by id) */
    US_OP_GROUP_DEL,             /* also removes the group from every contact */
    US_OP_ACL_SET,               /* allow or block a user or domain */
    US_OP_ACL_DEL,
};

struct us_op {
    enum us_op_kind kind;
    char *key;                   /* contact uri "bob@example.com" / group id / acl user-or-domain */
    char *name;                  /* display name / group name, or NULL */
    char *groups;                /* contact: space-separated group ids, or NULL */
    bool block;                  /* acl: block (true) or allow */
};

struct us_service {
    long long version;           /* the version the client edits; -1 = absent (then 409) */
    struct us_op *ops;
    size_t nops;
};

/*
 * Parses a SERVICE body (untrusted). Fills <out> (free with us_service_clear()).
 * Returns 0, or -1 with a reason for a 400 in <err>.
 */
int us_service_parse(const char *xml, size_t len, struct us_service *out, char *err, size_t errlen);
void us_service_clear(struct us_service *svc);

/* ----------------------------------------------------------------- the lists */

/* Registers the "vnd-parley-contacts" package with <subs>; ACL changes NOTIFY the
 * owner's "presence" watchers too. */
struct us_lists *us_lists_new(struct store *st, struct us_subs *subs);
void us_lists_free(struct us_lists *l);
/* Loads every stored list. Returns how many, or -1. */
long us_lists_load(struct us_lists *l);
/* Handles a SERVICE for <owner> (our user; only the owner may edit: else 403). */
enum px_verdict us_lists_service(struct us_lists *l, struct px_req *req, const char *owner);
/* Does <owner> block <who> ("user@domain")? */
bool us_lists_blocks(const struct us_lists *l, const char *owner, const char *who);
/* The list document of <owner> (application/vnd-parley-contacts+xml), malloc'd. */
char *us_lists_document(const struct us_lists *l, const char *owner, size_t *len);
/* The list version of <owner> (0 for a user without a list). */
long long us_lists_version(const struct us_lists *l, const char *owner);
/* Calls <fn> for each contact of <owner> in list order: <uri> "bob@example.com", <name>
 * its display name or NULL. The strings are borrowed for the call. */
void us_lists_foreach_contact(const struct us_lists *l, const char *owner,
                              void (*fn)(const char *uri, const char *name, void *arg), void *arg);

/* ----------------------------------------------------------------- administration */

/* One entry of a list as the set-operation that would create it (us_lists_foreach). */
typedef void us_lists_entry_fn(const struct us_op *op, void *arg);

/*
 * Calls <fn> for every entry of <owner>'s list: US_OP_GROUP_SET (key = group id, name),
 * US_OP_CONTACT_SET (key = "user@host", name, groups) and US_OP_ACL_SET (key =
 * "user@host" or "domain", block), in stored order. <op> and its strings are borrowed
 * and stay valid until the list next changes. Nothing is called for an empty list.
 */
void us_lists_foreach(const struct us_lists *l, const char *owner, us_lists_entry_fn *fn, void *arg);

/*
 * Applies <svc> to <owner>'s list exactly as an accepted SERVICE does (the same apply,
 * store and notification path): atomically, version + 1, stored, then a NOTIFY to the
 * subscribers of the list and, when the allow/block list changed, to <owner>'s presence
 * watchers (a block applies to existing subscriptions at once). <svc->version> -1 skips
 * the version check. Returns 0 when applied (the store write is queued; a failed commit
 * is logged and the store turns unhealthy), else a SIP-style status with <reason>:
 * 409 stale version, 400 bad operation (unknown group, own address), 403 a limit, 500.
 * <svc> is borrowed.
 */
int us_lists_edit(struct us_lists *l, const char *owner, const struct us_service *svc, char *reason,
                  size_t rlen);

/* The normalisations SERVICE applies to its attributes: "sip:Bob@Example.com;x" ->
 * "bob@example.com" (a user), "Example.ORG" -> "example.org" (a domain: letters, digits,
 * '-' and '.'). 0, or -1 when <in> is not one. */
int us_lists_norm_user(const char *in, char *out, size_t outlen);
int us_lists_norm_domain(const char *in, char *out, size_t outlen);

#endif
