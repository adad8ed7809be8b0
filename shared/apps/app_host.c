#define LOG_MODULE "apps"
#include "apps/app_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

#define HOST_MAX_STRS 256     /* strings a run may make the host allocate (typed headers...) */
#define HOST_MAX_EPS 64       /* endpoints remembered for ProxyRequest(contact) */
#define HOST_MAX_ROUTES 2048  /* bytes of the AddRoute set */

struct host_ep {
    const char *contact;      /* borrowed from the location service (stable during the handler) */
    const char *path;
    uint64_t conn_id;
};

/* Everything one run of the chain on one message needs; lives on the caller's stack. */
struct hctx {
    const struct app_env *env;
    struct app_chain *chain;  /* for the dispatching application's manifest (critical) */
    struct px_req *req;
    struct sip_msg *msg;      /* the request, or the response being relayed */
    bool request;
    const char *app;          /* application running now (for Log) */
    char *strs[HOST_MAX_STRS];
    unsigned nstr;
    char *ruri;               /* cached Request-URI string */
    char ctype[256];
    struct host_ep eps[HOST_MAX_EPS];
    unsigned neps;
    char routes[HOST_MAX_ROUTES];
    unsigned ntargets;
};

/* Keeps an osip-allocated string until the run ends. NULL (and frees it) when full. */
static const char *
keep(struct hctx *h, char *s)
{
    if (s == NULL)
        return NULL;
    if (h->nstr >= HOST_MAX_STRS) {
        osip_free(s);
        return NULL;
    }
    h->strs[h->nstr++] = s;
    return s;
}

static void
hctx_release(struct hctx *h)
{
    for (unsigned i = 0; i < h->nstr; i++)
        osip_free(h->strs[i]);
    h->nstr = 0;
}

/* ------------------------------------------------------------------ getters */

static bool
h_is_request(void *arg)
{
    struct hctx *h = arg;
    return h->request;
}

static const char *
h_method(void *arg)
{
    struct hctx *h = arg;
    return h->request ? sip_msg_method_str(h->msg) : NULL;
}

static const char *
h_request_uri(void *arg)
{
    struct hctx *h = arg;

    if (!h->request)
        return NULL;
    if (h->ruri == NULL)
        h->ruri = (char *)keep(h, sip_uri_str(sip_msg_ruri(h->msg)));
    return h->ruri;
}

static int
h_status_code(void *arg)
{
    struct hctx *h = arg;
    return h->request ? 0 : h->msg->status;
}

#define TO_STR(fn, type)                                                                               \
    static char *fn##_s(void *p)                                                                       \
    {                                                                                                  \
        char *s = NULL;                                                                                \
        return fn((type *)p, &s) == 0 ? s : NULL;                                                      \
    }
TO_STR(osip_from_to_str, osip_from_t)
TO_STR(osip_to_to_str, osip_to_t)
TO_STR(osip_call_id_to_str, osip_call_id_t)
TO_STR(osip_cseq_to_str, osip_cseq_t)
TO_STR(osip_via_to_str, osip_via_t)
TO_STR(osip_contact_to_str, osip_contact_t)
TO_STR(osip_route_to_str, osip_route_t)
TO_STR(osip_record_route_to_str, osip_record_route_t)
TO_STR(osip_content_type_to_str, osip_content_type_t)
TO_STR(osip_content_length_to_str, osip_content_length_t)
TO_STR(osip_allow_to_str, osip_allow_t)
TO_STR(osip_accept_to_str, osip_accept_t)
TO_STR(osip_authorization_to_str, osip_authorization_t)
TO_STR(osip_proxy_authorization_to_str, osip_proxy_authorization_t)
TO_STR(osip_www_authenticate_to_str, osip_www_authenticate_t)
TO_STR(osip_proxy_authenticate_to_str, osip_proxy_authenticate_t)
TO_STR(osip_mime_version_to_str, osip_mime_version_t)

/* Headers osip parses into fields: read through them, never modified by scripts. */
enum typed_kind {
    T_SINGLE = 0,   /* one field */
    T_LIST,         /* an osip_list_t */
    T_NOREAD,       /* typed, not readable here (null), not modifiable */
};

struct typed {
    const char *name, *compact;
    enum typed_kind kind;
    size_t off;                     /* offset of the field / list in osip_message_t */
    char *(*str)(void *);
};

#define OFF(f) offsetof(osip_message_t, f)
static const struct typed typed_headers[] = {
    {"from", "f", T_SINGLE, OFF(from), osip_from_to_str_s},
    {"to", "t", T_SINGLE, OFF(to), osip_to_to_str_s},
    {"call-id", "i", T_SINGLE, OFF(call_id), osip_call_id_to_str_s},
    {"cseq", NULL, T_SINGLE, OFF(cseq), osip_cseq_to_str_s},
    {"via", "v", T_LIST, OFF(vias), osip_via_to_str_s},
    {"contact", "m", T_LIST, OFF(contacts), osip_contact_to_str_s},
    {"route", NULL, T_LIST, OFF(routes), osip_route_to_str_s},
    {"record-route", NULL, T_LIST, OFF(record_routes), osip_record_route_to_str_s},
    {"content-type", "c", T_SINGLE, OFF(content_type), osip_content_type_to_str_s},
    {"content-length", "l", T_SINGLE, OFF(content_length), osip_content_length_to_str_s},
    {"allow", NULL, T_LIST, OFF(allows), osip_allow_to_str_s},
    {"accept", NULL, T_LIST, OFF(accepts), osip_accept_to_str_s},
    {"authorization", NULL, T_LIST, OFF(authorizations), osip_authorization_to_str_s},
    {"proxy-authorization", NULL, T_LIST, OFF(proxy_authorizations), osip_proxy_authorization_to_str_s},
    {"www-authenticate", NULL, T_LIST, OFF(www_authenticates), osip_www_authenticate_to_str_s},
    {"proxy-authenticate", NULL, T_LIST, OFF(proxy_authenticates), osip_proxy_authenticate_to_str_s},
    {"mime-version", NULL, T_SINGLE, OFF(mime_version), osip_mime_version_to_str_s},
    {"accept-encoding", NULL, T_NOREAD, 0, NULL},
    {"accept-language", NULL, T_NOREAD, 0, NULL},
    {"alert-info", NULL, T_NOREAD, 0, NULL},
    {"authentication-info", NULL, T_NOREAD, 0, NULL},
    {"proxy-authentication-info", NULL, T_NOREAD, 0, NULL},
    {"call-info", NULL, T_NOREAD, 0, NULL},
    {"error-info", NULL, T_NOREAD, 0, NULL},
    {"content-encoding", "e", T_NOREAD, 0, NULL},
    {"max-forwards", NULL, T_NOREAD, 0, NULL},   /* untyped, but loop safety: read-only */
};

static const struct typed *
typed_find(const char *name)
{
    for (size_t i = 0; i < sizeof typed_headers / sizeof typed_headers[0]; i++) {
        const struct typed *t = &typed_headers[i];
        if (strcasecmp(name, t->name) == 0 || (t->compact && strcasecmp(name, t->compact) == 0))
            return t;
    }
    return NULL;
}

static const char *
h_header(void *arg, const char *name, size_t idx)
{
    struct hctx *h = arg;
    const struct typed *t = typed_find(name);
    void *field;

    if (t == NULL || strcasecmp(t->name, "max-forwards") == 0)
        return idx > 4096 ? NULL : sip_msg_header(h->msg, name, (int)idx);
    if (t->kind == T_NOREAD)
        return NULL;
    if (t->kind == T_SINGLE) {
        field = *(void **)((char *)h->msg->osip + t->off);
        if (idx > 0 || field == NULL)
            return NULL;
    } else {
        osip_list_t *l = (osip_list_t *)((char *)h->msg->osip + t->off);
        if (idx >= (size_t)osip_list_size(l))
            return NULL;
        field = osip_list_get(l, (int)idx);
        if (field == NULL)
            return NULL;
    }
    return keep(h, t->str(field));
}

static const char *
h_body(void *arg)
{
    struct hctx *h = arg;
    size_t len = 0;
    return sip_msg_body(h->msg, &len);
}

static const char *
h_content_type(void *arg)
{
    struct hctx *h = arg;
    return sip_msg_content_type(h->msg, h->ctype, sizeof h->ctype);
}

struct ep_walk {
    struct hctx *h;
    scr_endpoint_cb *cb;
    void *cb_arg;
};

static int
ep_cb(void *arg, const struct app_binding *b)
{
    struct ep_walk *w = arg;
    struct scr_endpoint e = {
        .epid = b->epid,
        .contact = b->contact,
        .activity = b->activity,
        .path = b->path && b->path[0] ? b->path : NULL,
        .availability = b->availability,
        .present_since = b->present_since,
    };

    if (w->h->neps < HOST_MAX_EPS && b->contact) {
        struct host_ep *he = &w->h->eps[w->h->neps++];
        he->contact = b->contact;
        he->path = e.path;
        he->conn_id = b->conn_id;
    }
    return w->cb(w->cb_arg, &e);
}

static int
h_endpoints(void *arg, const char *user_at_host, scr_endpoint_cb *cb, void *cb_arg)
{
    struct hctx *h = arg;
    const struct app_env *env = h->env;
    const char *at = strrchr(user_at_host, '@');
    struct ep_walk w = {h, cb, cb_arg};
    char aor[512];

    if (at == NULL || at == user_at_host || env->bindings == NULL || env->domain == NULL)
        return 0;   /* no user: nobody */
    if (!px_is_our_domain(env->px, at + 1) && !px_is_us(env->px, at + 1, 0))
        return 0;   /* not homed here */
    if ((size_t)(at - user_at_host) + strlen(env->domain) + 2 > sizeof aor)
        return 0;
    snprintf(aor, sizeof aor, "%.*s@%s", (int)(at - user_at_host), user_at_host, env->domain);
    for (char *c = aor; *c; c++)
        *c = (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c);
    return env->bindings(env->bindings_arg, aor, ep_cb, &w);
}

/* ------------------------------------------------------------------ actions */

static bool
valid_uri(const char *s)
{
    osip_uri_t *u = NULL;
    bool ok = osip_uri_init(&u) == 0 && osip_uri_parse(u, s) == 0 && u->scheme != NULL;

    osip_uri_free(u);
    return ok;
}

static int
h_proxy_request(void *arg, const char *uri)
{
    struct hctx *h = arg;
    struct px_target t = {0};
    char set[HOST_MAX_ROUTES + 1024];

    if (!h->request)
        return -1;
    if (uri == NULL) {
        uri = h_request_uri(h);
        if (uri == NULL)
            return -1;
    } else if (!valid_uri(uri)) {
        return -1;
    }
    snprintf(set, sizeof set, "%s", h->routes);
    for (unsigned i = 0; i < h->neps; i++) {
        if (strcmp(h->eps[i].contact, uri) != 0)
            continue;
        t.conn_id = h->eps[i].conn_id;
        /* The registration's Path (RFC 3327 §5.3), unless AddRoute already put it there. */
        if (h->eps[i].path && strstr(h->routes, h->eps[i].path) == NULL) {
            size_t n = strlen(set);
            snprintf(set + n, sizeof set - n, "%s%s", n ? "," : "", h->eps[i].path);
        }
        break;
    }
    t.uri = uri;
    t.route_set = set[0] ? set : NULL;
    t.q = 1000;   /* every ProxyRequest of one run forks in parallel */
    if (px_add_target(h->req, &t) != 0)
        return -1;
    h->ntargets++;
    return 0;
}

/* Adds "Name: value" lines (separated by CRLF or LF) to <resp>. */
static int
add_header_lines(struct sip_msg *resp, const char *lines)
{
    char *copy = strdup(lines), *p, *line;
    int rc = -1;

    if (copy == NULL)
        return -1;
    p = copy;
    while ((line = strsep(&p, "\n")) != NULL) {
        char *colon, *v, *e = line + strlen(line);
        if (e > line && e[-1] == '\r')
            *--e = '\0';
        if (*line == '\0')
            continue;
        colon = strchr(line, ':');
        if (colon == NULL || colon == line)
            goto out;
        for (char *c = line; c < colon; c++) {
            if (*c <= ' ' || *c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *c))
                goto out;
        }
        *colon = '\0';
        if (typed_find(line) != NULL)
            goto out;   /* From/To/Via/Contact... belong to the response builder */
        v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (sip_msg_add_header(resp, line, v) != 0)
            goto out;
    }
    rc = 0;
out:
    free(copy);
    return rc;
}

static int
h_respond(void *arg, int code, const char *reason, const char *headers)
{
    struct hctx *h = arg;
    struct sip_msg *resp;
    int rc = -1;

    if (!h->request || (resp = px_reply_build(h->req, code, reason)) == NULL)
        return -1;
    if (headers && add_header_lines(resp, headers) != 0)
        goto out;
    rc = px_reply_msg(h->req, resp);
out:
    sip_msg_free(resp);
    return rc;
}

static int
h_redirect(void *arg, const char *contact)
{
    struct hctx *h = arg;
    struct sip_msg *resp;
    char buf[1024];
    int rc = -1;

    if (!h->request)
        return -1;
    if (strchr(contact, '<') == NULL) {
        if (!valid_uri(contact))
            return -1;
        snprintf(buf, sizeof buf, "<%s>", contact);
        contact = buf;
    }
    if ((resp = px_reply_build(h->req, 302, "Moved Temporarily")) == NULL)
        return -1;
    if (osip_message_set_contact(resp->osip, contact) != 0)
        goto out;
    rc = px_reply_msg(h->req, resp);
out:
    sip_msg_free(resp);
    return rc;
}

static int
h_add_header(void *arg, const char *name, const char *value)
{
    struct hctx *h = arg;
    return typed_find(name) ? -1 : sip_msg_add_header(h->msg, name, value);
}

static int
h_set_header(void *arg, const char *name, const char *value)
{
    struct hctx *h = arg;

    if (typed_find(name))
        return -1;
    sip_msg_remove_header(h->msg, name);
    return sip_msg_add_header(h->msg, name, value);
}

static int
h_remove_header(void *arg, const char *name)
{
    struct hctx *h = arg;

    if (typed_find(name))
        return -1;
    sip_msg_remove_header(h->msg, name);
    return 0;
}

static int
h_add_route(void *arg, const char *uris)
{
    struct hctx *h = arg;
    char *copy, *p, *tok, tmp[HOST_MAX_ROUTES];
    int rc = -1;

    if (!h->request || uris[0] == '\0')
        return -1;
    if ((copy = strdup(uris)) == NULL)
        return -1;
    /* Every item must be a URI (optionally in <>). */
    for (p = copy; (tok = strsep(&p, ",")) != NULL;) {
        char *e;
        while (*tok == ' ' || *tok == '<')
            tok++;
        e = tok + strlen(tok);
        while (e > tok && (e[-1] == ' ' || e[-1] == '>'))
            *--e = '\0';
        if (!valid_uri(tok))
            goto out;
    }
    /* Pushed on top: the newest AddRoute comes first in the set. */
    if ((size_t)snprintf(tmp, sizeof tmp, "%s%s%s", uris, h->routes[0] ? "," : "", h->routes) >= sizeof tmp)
        goto out;
    memcpy(h->routes, tmp, sizeof h->routes);
    rc = 0;
out:
    free(copy);
    return rc;
}

static int
h_set_to_epid(void *arg, const char *epid)
{
    struct hctx *h = arg;
    osip_to_t *to = h->msg->osip->to;
    osip_generic_param_t *p = NULL;
    char *v;

    if (!h->request || to == NULL || epid[0] == '\0')
        return -1;
    for (const char *c = epid; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr("-.!%*_+`'~", *c)))
            return -1;   /* RFC 3261 §25.1: a generic-param value token */
    }
    if ((v = osip_strdup(epid)) == NULL)
        return -1;
    if (osip_to_param_get_byname(to, "epid", &p) == 0 && p) {
        osip_free(p->gvalue);
        p->gvalue = v;
    } else if (osip_to_param_add(to, osip_strdup("epid"), v) != 0) {
        osip_free(v);
        return -1;
    }
    osip_message_force_update(h->msg->osip);
    return 0;
}

static bool
h_dispatch(void *arg, const char *handler)
{
    struct hctx *h = arg;
    bool critical = false;

    if (!h->request || h->env->dispatch == NULL)
        return false;
    for (size_t i = 0; h->chain && h->app && i < app_chain_count(h->chain); i++) {
        const struct app_manifest *m = app_chain_manifest(h->chain, i);
        if (strcmp(m->name, h->app) == 0)
            critical = m->critical;
    }
    return h->env->dispatch(h->env->dispatch_arg, h->req, handler, critical);
}

static void
h_log(void *arg, int level, const char *text)
{
    struct hctx *h = arg;

    if (level < LOG_ERR || level > LOG_DEBUG)
        level = LOG_INFO;
    if (log_enabled((enum log_level)level))
        log_write((enum log_level)level, h->app ? h->app : "apps", "%s", text);
}

static void
h_current(void *arg, const char *app)
{
    struct hctx *h = arg;
    h->app = app;
}

static const struct scr_host host_template = {
    .is_request = h_is_request,
    .method = h_method,
    .request_uri = h_request_uri,
    .status_code = h_status_code,
    .header = h_header,
    .body = h_body,
    .content_type = h_content_type,
    .endpoints = h_endpoints,
    .now = NULL,
    .proxy_request = h_proxy_request,
    .respond = h_respond,
    .redirect = h_redirect,
    .add_header = h_add_header,
    .set_header = h_set_header,
    .remove_header = h_remove_header,
    .add_route = h_add_route,
    .set_to_epid = h_set_to_epid,
    .dispatch = h_dispatch,
    .log = h_log,
};

/* ------------------------------------------------------------------ responses */

/* Kept by a request whose responses go back through the chain. */
struct resp_rec {
    struct app_chain *chain;      /* a reference: in-flight requests finish on their chain */
    const struct app_env *env;
    uint64_t seen;
};

static int
on_response(struct px_req *req, struct sip_msg *resp, void *arg)
{
    struct resp_rec *rec = arg;
    struct hctx h;
    struct scr_host host = host_template;
    struct app_chain_io io = {&host, h_current};

    memset(&h, 0, sizeof h);
    h.env = rec->env;
    h.req = req;
    h.msg = resp;
    h.request = false;
    host.arg = &h;
    app_chain_response(rec->chain, rec->seen, resp->status, &io);
    hctx_release(&h);
    return 0;   /* scripts cannot replace a response (Respond() is request-only) */
}

static void
resp_rec_free(void *arg)
{
    struct resp_rec *rec = arg;

    app_chain_unref(rec->chain);
    free(rec);
}

/* ------------------------------------------------------------------ entry */

bool
app_host_is_strict(const struct app_env *env, struct px_req *req)
{
    osip_uri_t *ru;
    const char *maddr;

    if (px_req_has_route(req))
        return true;
    ru = sip_msg_ruri(px_req_msg(req));
    if (ru == NULL)
        return false;
    if (sip_uri_is_phone(ru))
        return true;
    maddr = sip_uri_param(ru, "maddr");
    return maddr && *maddr && !px_is_us(env->px, maddr, 0);
}

bool
app_host_handle(struct app_chain *chain, const struct app_env *env, struct px_req *req, enum px_verdict *v)
{
    struct sip_msg *msg = px_req_msg(req);
    struct hctx h;
    struct scr_host host = host_template;
    struct app_chain_io io = {&host, h_current};
    struct app_chain_run run;
    bool done = false;

    if (chain == NULL || app_chain_count(chain) == 0)
        return false;
    switch (msg->method) {
    case SIP_REGISTER:
    case SIP_SUBSCRIBE:
    case SIP_PUBLISH:
    case SIP_SERVICE:
    case SIP_CANCEL:
    case SIP_ACK:
        return false;   /* design §3: these stop at User Services (or at the proxy core) */
    default:
        break;
    }
    h.env = env;
    h.chain = chain;
    h.req = req;
    h.msg = msg;
    h.request = true;
    h.app = NULL;
    h.nstr = 0;
    h.ruri = NULL;
    h.neps = 0;
    h.routes[0] = '\0';
    h.ntargets = 0;
    host.arg = &h;
    app_chain_request(chain, sip_msg_method_str(msg), app_host_is_strict(env, req), &io, &run);
    switch (run.outcome) {
    case SCR_PROXIED:
        if (h.ntargets > 0) {
            *v = PX_FORWARD;
            done = true;
        }
        break;
    case SCR_RESPONDED:
    case SCR_REDIRECTED:
    case SCR_DISPATCHED:
        *v = PX_ANSWERED;
        done = true;
        break;
    default:
        break;
    }
    /* Responses come back through the applications that ran, also when the chain passed
     * and the fallback forwards the request. */
    if ((run.outcome == SCR_PROXIED || run.outcome == SCR_PASS) && app_chain_seen_wants_responses(chain, run.seen)) {
        struct resp_rec *rec = malloc(sizeof *rec);
        if (rec) {
            rec->chain = chain;
            rec->env = env;
            rec->seen = run.seen;
            app_chain_ref(chain);
            px_req_on_response(req, on_response, rec, resp_rec_free);
        }
    }
    hctx_release(&h);
    return done;
}
