/*
 * us_admin: the administrator's side of the contact and allow/block lists, on the home
 * server's admin HTTP endpoint (admin_http.h; the bearer token applies). parleyctl
 * `contacts` and `acl` use it (docs/parleyctl.md).
 *
 *   GET  /api/contacts?user=U   {"user","version","groups":[{"id","name"}],
 *                                "contacts":[{"contact","name","groups":[{"id","name"}]}]}
 *   POST /api/contacts?user=U   {"version"?: N, "ops": [op, ...]} (or one op object):
 *        {"op":"add","contact":"bob@example.com","name"?:"Bob","groups"?:["Friends"]}
 *        {"op":"remove","contact":C}            404 when C is not in the list
 *        {"op":"group-add","group":NAME}        new group, id = smallest free number
 *        {"op":"group-rename","group":G,"name":NEW}
 *        {"op":"group-remove","group":G}        also leaves every contact's groups
 *      A group G is named by its id or its (case-insensitive) name.
 *   GET  /api/acl?user=U        {"user","version","entries":[{"entry","type":"user|domain",
 *                                "action":"allow|block"}]}
 *   POST /api/acl?user=U        {"version"?: N, "ops":[{"op":"allow|block|remove","entry":E}]}
 *      E is "user@host" (a "sip:" prefix is accepted) or a domain.
 *
 * A POST is applied as one SERVICE would be (us_lists_edit): atomically, the version grows
 * by one, the list's subscribers get a NOTIFY and a block applies to existing presence
 * subscriptions at once. It answers 200 with the new list (the GET shape), or
 * {"error": "..."} with 400 (malformed), 404 (unknown user domain, contact, group or
 * entry), 409 (stale "version", group name taken, ambiguous group), 403 (a limit), 500.
 * Loop thread only.
 */
#ifndef PARLEY_HS_US_ADMIN_H
#define PARLEY_HS_US_ADMIN_H

#include "proxy/px.h"
#include "util/admin_http.h"

struct us_lists;

/*
 * Adds the routes above to <a> for the lists <l>; users must be in a domain <px> serves.
 * <l> and <px> are borrowed and must outlive <a>. One home server per process (the
 * routes share one static context). Returns 0 or -1; <a> or <l> NULL: nothing, 0.
 */
int us_admin_register(struct admin_http *a, struct us_lists *l, struct px *px);

#endif
