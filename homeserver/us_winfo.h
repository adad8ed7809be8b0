/*
 * us_winfo: the "presence.winfo" event package (RFC 3857) — who watches a user's
 * presence, as application/watcherinfo+xml documents (RFC 3858). This is the user's
 * subscription list of design §3.
 *
 * Only the owner may subscribe to its own watcher information (else 403). Every NOTIFY
 * carries the full state (state="full", version = NOTIFYs sent before it on that
 * subscription, so it counts up per subscription and survives restarts like the CSeq):
 * one <watcher> per "presence" subscription to the owner, with its id (the
 * subscription's dialog tag), status and event, duration-subscribed and expiration, and
 * the watcher's URI as content:
 *
 *   active     event="subscribe"   a live subscription
 *   terminated event="rejected"    a live subscription of a watcher the owner blocks (the
 *                                  watcher sees the owner offline, design §3)
 *   terminated event="timeout"     expired or unsubscribed; "deactivated" when its NOTIFY
 *                                  failed. Ended watchers are listed for 60 s after the
 *                                  end (not persisted), then dropped.
 *
 * There is no authorization step, so "pending" never occurs. A NOTIFY goes out when a
 * watcher subscribes, ends, or is blocked or unblocked. The winfo subscriptions
 * themselves are us_subs subscriptions (durable, resumed after a restart).
 * Loop thread only.
 */
#ifndef PARLEY_HS_US_WINFO_H
#define PARLEY_HS_US_WINFO_H

#include <stddef.h>

#include "us_lists.h"
#include "us_subs.h"

#define US_WINFO_EVENT "presence.winfo"
#define US_WINFO_CTYPE "application/watcherinfo+xml"
#define US_WINFO_NS "urn:ietf:params:xml:ns:watcherinfo"

struct us_winfo;

/* Registers the package and an observer with <subs>. <lists> (may be NULL) is borrowed:
 * blocked watchers are shown as rejected. NULL on error. */
struct us_winfo *us_winfo_new(struct us_subs *subs, struct us_lists *lists);
void us_winfo_free(struct us_winfo *w);

/* The watcherinfo document of <owner>'s presence watchers (RFC 3858 §4), version
 * <version>, malloc'd (<*len> bytes), or NULL. */
char *us_winfo_document(struct us_winfo *w, const char *owner, unsigned version, size_t *len);

#endif
