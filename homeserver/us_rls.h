/*
 * us_rls: the contact list as a resource list (RFC 4662) — one subscription brings the
 * presence of every contact of a user, in multipart/related NOTIFYs (RFC 2387) whose
 * root is an RLMI document (application/rlmi+xml, RFC 4662 §5) and whose other parts
 * are one application/pidf+xml document per contact.
 *
 * The list URI of user alice@example.com is sip:alice;list=contacts@example.com (the
 * user part carries ";list=contacts"; docs/presence.md). Only its owner may subscribe
 * (else 403), with Event: presence (else 489) and Supported: eventlist (else 421 with
 * Require: eventlist); the 200 carries Require: eventlist. The resources are the
 * contacts of the user's list (us_lists), in list order, with the display name as
 * <name>. For a contact homed here the part is the composed presence as the owner may
 * see it (us_presence_document(): a contact who blocks the owner appears closed); a
 * contact homed elsewhere (another domain, or with a directory another home server)
 * gets <instance state="pending"> and no part: this server does not subscribe
 * onwards.
 *
 * The first NOTIFY, a refresh's NOTIFY, the one after a restart and the one after the
 * contact list changed carry the full state (fullState="true"); a presence change of
 * contacts sends a partial one (fullState="false") with only those resources. The RLMI
 * version is the number of NOTIFYs sent before on the subscription (RFC 4662 §5.2).
 * The subscriptions are us_subs subscriptions of package "rls:presence" (durable,
 * resumed after a restart). Loop thread only.
 */
#ifndef PARLEY_HS_US_RLS_H
#define PARLEY_HS_US_RLS_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/px.h"
#include "us_lists.h"
#include "us_presence.h"
#include "us_subs.h"

#define US_RLS_PKG "rls:presence"
#define US_RLS_LIST_PARAM ";list=contacts"
#define US_RLMI_CTYPE "application/rlmi+xml"
#define US_RLMI_NS "urn:ietf:params:xml:ns:rlmi"

struct us_rls;

/* Is <user> (contact "bob@example.com") homed on this server? */
typedef bool us_rls_home_fn(const char *user, void *arg);

/* Registers the "rls:presence" package and an observer with <subs>; <lists>, <pa> are
 * borrowed. NULL on error. */
struct us_rls *us_rls_new(struct us_subs *subs, struct us_lists *lists, struct us_presence *pa);
void us_rls_free(struct us_rls *r);
/* Who is homed here: <fn> (NULL = every user of the owner's domain). */
void us_rls_set_home_fn(struct us_rls *r, us_rls_home_fn *fn, void *arg);

/* If <aor> is a list URI's AOR ("alice;list=contacts@example.com"), writes its owner
 * ("alice@example.com") to <owner> and returns true. */
bool us_rls_list_owner(const char *aor, char *owner, size_t ownerlen);

/* Handles a request to the list URI of <owner>: SUBSCRIBE as described above; any other
 * method gets 405 with Allow: SUBSCRIBE. */
enum px_verdict us_rls_handle(struct us_rls *r, struct px_req *req, const char *owner);

/* The multipart/related body of <owner>'s list (all resources, fullState="true",
 * version <version>) as <watcher> (the owner) sees it: malloc'd <*body>/<*len> and
 * Content-Type <*ctype>. 0 or -1. For tests and the admin API. */
int us_rls_document(struct us_rls *r, const char *owner, unsigned version, char **body, size_t *len,
                    char **ctype);

#endif
