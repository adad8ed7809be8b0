#define LOG_MODULE "services"
#include "us_services.h"

#include <stdlib.h>
#include <string.h>

#include "us_lists.h"
#include "us_presence.h"
#include "us_rls.h"
#include "us_subs.h"
#include "us_winfo.h"
#include "util/log.h"

struct us_services {
    struct us_subs *subs;
    struct us_lists *lists;
    struct us_presence *pres;
    struct us_registrar *reg;
    struct us_winfo *winfo;
    struct us_rls *rls;
};

struct us_presence *
us_services_presence(const struct us_services *svc)
{
    return svc ? svc->pres : NULL;
}

void
us_services_free(struct us_services *svc)
{
    if (svc == NULL)
        return;
    if (svc->reg)
        us_registrar_on_change(svc->reg, NULL, NULL);
    us_subs_free(svc->subs);   /* first: pending NOTIFYs read the others */
    us_presence_free(svc->pres);
    us_winfo_free(svc->winfo);
    us_rls_free(svc->rls);
    us_lists_free(svc->lists);
    free(svc);
}

struct us_services *
us_services_start(struct event_base *base, struct px *px, struct store *st, struct us_location *loc,
                  struct us_registrar *reg, const struct us_services_opts *opts)
{
    struct us_services *svc = calloc(1, sizeof *svc);
    struct us_subs_opts so = {opts->min_expires, opts->max_expires, 3600, 1000000};
    struct us_presence_opts po = {opts->min_expires, opts->max_expires, 3600, 16};
    long nl, np, ns;

    if (svc == NULL)
        return NULL;
    if ((svc->subs = us_subs_new(base, px, st, &so)) == NULL ||
        (svc->lists = us_lists_new(st, svc->subs)) == NULL ||
        (svc->pres = us_presence_new(base, &po, st, svc->subs, loc, svc->lists)) == NULL ||
        (svc->winfo = us_winfo_new(svc->subs, svc->lists)) == NULL ||
        (svc->rls = us_rls_new(svc->subs, svc->lists, svc->pres)) == NULL)
        goto fail;
    if ((nl = us_lists_load(svc->lists)) < 0 || (np = us_presence_load(svc->pres)) < 0 ||
        (ns = us_subs_load(svc->subs)) < 0) {
        log_err("cannot load presence, lists or subscriptions from the store");
        goto fail;
    }
    log_info("loaded %ld lists, %ld publications, %ld subscriptions", nl, np, ns);
    svc->reg = reg;
    us_registrar_on_change(reg, us_presence_bindings_changed, svc->pres);
    return svc;
fail:
    us_services_free(svc);
    return NULL;
}

void
us_services_set_home_fn(struct us_services *svc, bool (*fn)(const char *user, void *arg), void *arg)
{
    if (svc)
        us_rls_set_home_fn(svc->rls, fn, arg);
}

bool
us_services_handle(struct us_services *svc, struct px_req *req, const char *aor, enum px_verdict *v)
{
    struct sip_msg *msg = px_req_msg(req);
    char from[512];

    if (svc == NULL)
        return false;
    if (us_rls_list_owner(aor, from, sizeof from)) {
        if (msg->method == SIP_ACK || msg->method == SIP_CANCEL)
            return false;
        *v = us_rls_handle(svc->rls, req, from);   /* the contact list as a resource list */
        return true;
    }
    switch (msg->method) {
    case SIP_SUBSCRIBE:
        *v = us_subs_handle(svc->subs, req, aor);
        return true;
    case SIP_PUBLISH:
        *v = us_presence_publish(svc->pres, req, aor);
        return true;
    case SIP_SERVICE:
        *v = us_lists_service(svc->lists, req, aor);
        return true;
    case SIP_ACK:
    case SIP_CANCEL:
        return false;
    default:
        break;
    }
    /* Design §3: a blocked user cannot call, message or watch the owner. */
    if (msg->osip->from && sip_uri_aor(msg->osip->from->url, from, sizeof from) &&
        us_lists_blocks(svc->lists, aor, from)) {
        px_reply(req, 403, "Forbidden");
        *v = PX_ANSWERED;
        return true;
    }
    return false;
}

struct us_lists *
us_services_lists(const struct us_services *svc)
{
    return svc ? svc->lists : NULL;
}
