/*
 * app_host: the application chain on a live request — the struct scr_host of
 * script/scr.h implemented over a px_req and its sip_msg, and the glue that turns a
 * walk of the chain into a proxy verdict (design §4; docs/internals/apps.md).
 *
 * What each script function does to the message:
 *   GetHeader/GetHeaders   any header; typed ones (From, To, Via, Contact, Route, ...)
 *                          are serialized by osip
 *   AddHeader/SetHeader/RemoveHeader   untyped headers only: the headers osip parses
 *                          into fields (From, To, Call-ID, CSeq, Via, Contact, Route,
 *                          Record-Route, Content-*, Accept*, Allow, Authorization...)
 *                          and Max-Forwards are refused (a runtime error)
 *   ProxyRequest([uri])    adds a forwarding target (px_add_target) with the route set
 *                          built by AddRoute; to a contact returned by Endpoints() in
 *                          this run, also its registration flow and Path (once).
 *                          Several calls fork. Without <uri>: the Request-URI, so the
 *                          protocol stack routes it (Route, maddr, host).
 *   Respond(code, reason[, headers])   a final response (px_reply_msg)
 *   Redirect(contact)      302 Moved Temporarily with that Contact
 *   AddRoute(uri[,uri..])  Route entries pushed on top of the route set before
 *                          forwarding (the last AddRoute ends on top)
 *   SetToEpid(epid)        sets To;epid= on the request
 *   Endpoints(user@host)   the bindings of a user homed here, from <bindings>
 *   Dispatch(handler)      hands the request to an agent (app_env.dispatch; agent_server.h);
 *                          false when none is registered or its queue is full
 * On a response only the header functions, the getters and Log() apply.
 */
#ifndef PARLEY_APPS_APP_HOST_H
#define PARLEY_APPS_APP_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "apps/app_chain.h"
#include "proxy/px.h"

/* One registered endpoint as the role reports it (strings borrowed for the call). */
struct app_binding {
    const char *epid;
    const char *contact;
    const char *path;             /* comma-joined Path URIs, or NULL */
    const char *activity;         /* RPID activity, or NULL */
    int64_t availability;
    int64_t present_since;        /* unix seconds */
    uint64_t conn_id;             /* flow it registered on, 0 = none */
};

typedef int app_binding_cb(void *cb_arg, const struct app_binding *b);
/*
 * The role's location service: calls <cb> for each live binding of <aor>
 * ("user@domain", lower case). Returns 0 (also when there is none) or -1.
 */
typedef int app_bindings_fn(void *arg, const char *aor, app_binding_cb *cb, void *cb_arg);

/* What the host needs from the server; borrowed, must outlive every request. */
struct app_env {
    struct px *px;
    const char *domain;           /* our SIP domain: Endpoints() answers for it only */
    app_bindings_fn *bindings;
    void *bindings_arg;
    /* Dispatch(handler): hands <req> to the agent registered for <handler>; <critical> =
     * the dispatching application is critical. True when queued (the agent answers),
     * false when there is no agent or its queue is full. NULL = no agents. */
    bool (*dispatch)(void *arg, struct px_req *req, const char *handler, bool critical);
    void *dispatch_arg;
};

/*
 * Is <req> strict-routed (design §2): a Route left after §16.4 pre-processing, a
 * maddr in the Request-URI that is not us, or a tel: / user=phone URI?
 */
bool app_host_is_strict(const struct app_env *env, struct px_req *req);

/*
 * Walks <chain> (borrowed; a reference is taken if responses must come back through
 * it) for <req>. Returns true with <*v> = PX_FORWARD (an application proxied) or
 * PX_ANSWERED (it responded or redirected); false when the chain passed the request
 * on (also for the methods that stop at User Services: REGISTER, SUBSCRIBE, PUBLISH,
 * SERVICE, and for CANCEL/ACK): the caller routes it as without a chain.
 */
bool app_host_handle(struct app_chain *chain, const struct app_env *env, struct px_req *req,
                     enum px_verdict *v);

#endif
