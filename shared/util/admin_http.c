/*
 * admin_http: operator endpoint on libevent evhttp. All requests go through one
 * generic callback that authenticates, finds the route (exact, else longest prefix)
 * and replies; the built-in paths are ordinary routes registered at start.
 */
#define LOG_MODULE "admin"
#include "util/admin_http.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "util/log.h"
#include "util/metrics.h"

#define ADMIN_MAX_BODY    (64 * 1024)
#define ADMIN_MAX_HEADERS (16 * 1024)
#define ADMIN_TIMEOUT_S   30

enum {
    M_GET = 1,     /* GET and HEAD */
    M_POST = 2,
};

struct route {
    char *path;             /* prefix routes are stored without the trailing slash */
    bool prefix;
    int method;             /* M_GET or M_POST */
    admin_route_fn *fn;
    void *arg;
};

struct health {
    char *name;
    admin_health_fn *fn;
    void *arg;
};

struct admin_http {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    int port;
    char *token;            /* NULL = no auth */
    struct metrics *reg;
    struct cfg *cfg;
    struct route *routes;
    size_t nroutes;
    struct health *checks;
    size_t nchecks;
};

struct admin_req {
    struct evhttp_request *req;
    char *path;             /* decoded path */
    struct evkeyvalq query;
    char *body;             /* NUL-terminated copy of the body, or NULL */
    size_t body_len;
    char content_type[128];
};

/* ---------------------------------------------------------------- request accessors */

const char *
admin_req_path(const struct admin_req *req)
{
    return req->path;
}

const char *
admin_req_method(const struct admin_req *req)
{
    switch (evhttp_request_get_command(req->req)) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_POST: return "POST";
    default: return "OTHER";
    }
}

const char *
admin_req_query(const struct admin_req *req, const char *key)
{
    return evhttp_find_header(&req->query, key);
}

const char *
admin_req_body(const struct admin_req *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body ? req->body : "";
}

const char *
admin_req_header(const struct admin_req *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(req->req), name);
}

void
admin_req_set_content_type(struct admin_req *req, const char *type)
{
    snprintf(req->content_type, sizeof req->content_type, "%s", type);
}

struct evhttp_request *
admin_req_raw(struct admin_req *req)
{
    return req->req;
}

void
admin_json_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            evbuffer_add_printf(out, "\\%c", c);
        else if (c == '\n')
            evbuffer_add(out, "\\n", 2);
        else if (c == '\r')
            evbuffer_add(out, "\\r", 2);
        else if (c == '\t')
            evbuffer_add(out, "\\t", 2);
        else if (c < 0x20 || c == 0x7f)
            evbuffer_add_printf(out, "\\u%04x", c);
        else
            evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

/* ---------------------------------------------------------------- built-in routes */

static int
healthz_route(struct admin_req *req, struct evbuffer *out, void *arg)
{
    struct admin_http *a = arg;
    char reason[256];
    bool ok = true;

    admin_req_set_content_type(req, "text/plain; charset=utf-8");
    for (size_t i = 0; i < a->nchecks; i++) {
        reason[0] = '\0';
        if (a->checks[i].fn(a->checks[i].arg, reason, sizeof reason))
            continue;
        ok = false;
        reason[sizeof reason - 1] = '\0';
        for (char *p = reason; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        evbuffer_add_printf(out, "%s: %s\n", a->checks[i].name, reason[0] ? reason : "failing");
    }
    if (ok) {
        evbuffer_add(out, "ok\n", 3);
        return 200;
    }
    return 503;
}

static int
metrics_route(struct admin_req *req, struct evbuffer *out, void *arg)
{
    struct admin_http *a = arg;

    if (!a->reg) {
        evbuffer_add_printf(out, "{\"error\":\"no metrics registry\"}");
        return 404;
    }
    admin_req_set_content_type(req, METRICS_CONTENT_TYPE);
    return metrics_render(a->reg, out) == 0 ? 200 : 500;
}

static int
config_route(struct admin_req *req, struct evbuffer *out, void *arg)
{
    struct admin_http *a = arg;

    if (!a->cfg) {
        evbuffer_add_printf(out, "{\"error\":\"no configuration\"}");
        return 404;
    }
    return cfg_dump_json(a->cfg, out) == 0 ? 200 : 500;
}

static void
json_names(struct evbuffer *out, const char *const *names, size_t n)
{
    evbuffer_add(out, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            evbuffer_add(out, ",", 1);
        admin_json_str(out, names[i]);
    }
    evbuffer_add(out, "]", 1);
}

static int
reload_route(struct admin_req *req, struct evbuffer *out, void *arg)
{
    struct admin_http *a = arg;
    struct cfg_error err;
    const char *const *names;
    size_t n;

    if (!a->cfg) {
        evbuffer_add_printf(out, "{\"error\":\"no configuration\"}");
        return 404;
    }
    if (cfg_reload(a->cfg, &err) < 0) {
        log_warn("reload refused: %s", err.msg);
        evbuffer_add_printf(out, "{\"error\":");
        admin_json_str(out, err.msg);
        evbuffer_add(out, "}", 1);
        return 400;
    }
    evbuffer_add_printf(out, "{\"changed\":");
    names = cfg_reload_changed(a->cfg, &n);
    json_names(out, names, n);
    evbuffer_add_printf(out, ",\"ignored\":");
    names = cfg_reload_ignored(a->cfg, &n);
    json_names(out, names, n);
    evbuffer_add(out, "}", 1);
    return 200;
}

/* ---------------------------------------------------------------- dispatch */

static bool
token_ok(const struct admin_http *a, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    size_t tlen, glen;
    unsigned char diff = 0;

    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    tlen = strlen(a->token);
    glen = strlen(h);
    while (glen > 0 && (h[glen - 1] == ' ' || h[glen - 1] == '\t'))
        glen--;
    /* constant time over the token length */
    for (size_t i = 0; i < tlen; i++)
        diff |= (unsigned char)(a->token[i] ^ (i < glen ? h[i] : 0));
    return diff == 0 && glen == tlen;
}

/* Finds the route for <path>/<method>; *path_known tells 405 from 404. */
static const struct route *
route_find(const struct admin_http *a, const char *path, int method, bool *path_known,
           int *allowed)
{
    const struct route *best = NULL;
    size_t best_len = 0;
    bool exact_found = false;

    *path_known = false;
    *allowed = 0;
    for (size_t i = 0; i < a->nroutes; i++) {
        const struct route *r = &a->routes[i];
        if (!r->prefix && strcmp(r->path, path) == 0) {
            *path_known = true;
            exact_found = true;
            *allowed |= r->method;
            if (r->method == method)
                best = r;
        }
    }
    if (exact_found)
        return best;
    for (size_t i = 0; i < a->nroutes; i++) {
        const struct route *r = &a->routes[i];
        size_t len = strlen(r->path);
        if (!r->prefix || strncmp(r->path, path, len) != 0 ||
            (path[len] != '\0' && path[len] != '/'))
            continue;
        if (len < best_len)
            continue;
        if (len > best_len) {
            best_len = len;
            *allowed = 0;
            best = NULL;
        }
        *path_known = true;
        *allowed |= r->method;
        if (r->method == method)
            best = r;
    }
    return best;
}

static void
send_simple(struct evhttp_request *req, int status, const char *json_error)
{
    struct evbuffer *out = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (out) {
        evbuffer_add_printf(out, "{\"error\":");
        admin_json_str(out, json_error);
        evbuffer_add(out, "}\n", 2);
    }
    evhttp_send_reply(req, status, NULL, out);
    evbuffer_free(out);
}

static void
admin_request_cb(struct evhttp_request *evreq, void *arg)
{
    struct admin_http *a = arg;
    struct admin_req req = {.req = evreq};
    struct evbuffer *out = NULL;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(evreq);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(evreq);
    int method, allowed, status;
    bool path_known;
    const struct route *r;

    TAILQ_INIT(&req.query);
    if (!raw_path || !raw_path[0])
        raw_path = "/";
    size_t path_len = 0;
    req.path = evhttp_uridecode(raw_path, 0, &path_len);
    if (!req.path || strlen(req.path) != path_len) {   /* "%00" in the path */
        send_simple(evreq, 400, "bad path");
        goto out;
    }
    if (query && evhttp_parse_query_str(query, &req.query) != 0) {
        send_simple(evreq, 400, "bad query string");
        goto out;
    }
    if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)
        method = M_GET;
    else if (cmd == EVHTTP_REQ_POST)
        method = M_POST;
    else
        method = 0;

    if (a->token && strcmp(req.path, "/healthz") != 0 && !token_ok(a, evreq)) {
        evhttp_add_header(evhttp_request_get_output_headers(evreq), "WWW-Authenticate",
                          "Bearer realm=\"parley-admin\"");
        send_simple(evreq, 401, "missing or wrong bearer token");
        goto out;
    }
    r = route_find(a, req.path, method, &path_known, &allowed);
    if (!r) {
        if (!path_known) {
            send_simple(evreq, 404, "no such path");
        } else {
            const char *allow = allowed == (M_GET | M_POST) ? "GET, HEAD, POST"
                                : allowed == M_POST         ? "POST"
                                                            : "GET, HEAD";
            evhttp_add_header(evhttp_request_get_output_headers(evreq), "Allow", allow);
            send_simple(evreq, 405, "method not allowed");
        }
        goto out;
    }
    if (method == M_POST) {
        struct evbuffer *in = evhttp_request_get_input_buffer(evreq);
        size_t len = in ? evbuffer_get_length(in) : 0;
        req.body = malloc(len + 1);
        if (!req.body) {
            send_simple(evreq, 500, "out of memory");
            goto out;
        }
        if (len > 0)
            evbuffer_copyout(in, req.body, len);
        req.body[len] = '\0';
        req.body_len = len;
    }
    snprintf(req.content_type, sizeof req.content_type, "application/json");
    out = evbuffer_new();
    if (!out) {
        send_simple(evreq, 500, "out of memory");
        goto out;
    }
    status = r->fn(&req, out, r->arg);
    if (status < 100 || status > 599) {
        log_err("admin route %s returned invalid status %d", r->path, status);
        evbuffer_drain(out, evbuffer_get_length(out));
        send_simple(evreq, 500, "internal error");
        goto out;
    }
    evhttp_add_header(evhttp_request_get_output_headers(evreq), "Content-Type", req.content_type);
    evhttp_add_header(evhttp_request_get_output_headers(evreq), "Cache-Control", "no-store");
    evhttp_send_reply(evreq, status, NULL, out);
out:
    if (out)
        evbuffer_free(out);
    evhttp_clear_headers(&req.query);
    free(req.path);
    free(req.body);
}

/* ---------------------------------------------------------------- registration */

static int
route_add(struct admin_http *a, const char *path, int method, admin_route_fn *fn, void *arg)
{
    size_t len;
    bool prefix;
    char *p;

    if (!a || !path || path[0] != '/' || !fn)
        return -1;
    len = strlen(path);
    prefix = len > 1 && path[len - 1] == '/';
    if (!(p = strndup(path, prefix ? len - 1 : len)))
        return -1;
    for (size_t i = 0; i < a->nroutes; i++) {
        struct route *r = &a->routes[i];
        if (r->prefix == prefix && r->method == method && strcmp(r->path, p) == 0) {
            free(p);
            r->fn = fn;
            r->arg = arg;
            return 0;
        }
    }
    struct route *nr = realloc(a->routes, (a->nroutes + 1) * sizeof *nr);
    if (!nr) {
        free(p);
        return -1;
    }
    a->routes = nr;
    a->routes[a->nroutes++] = (struct route){
        .path = p, .prefix = prefix, .method = method, .fn = fn, .arg = arg};
    return 0;
}

int
admin_http_add_route(struct admin_http *a, const char *path, admin_route_fn *fn, void *arg)
{
    return route_add(a, path, M_GET, fn, arg);
}

int
admin_http_add_action(struct admin_http *a, const char *path, admin_route_fn *fn, void *arg)
{
    return route_add(a, path, M_POST, fn, arg);
}

int
admin_http_add_health(struct admin_http *a, const char *name, admin_health_fn *fn, void *arg)
{
    struct health *nc;
    char *n;

    if (!a || !name || !fn)
        return -1;
    if (!(n = strdup(name)))
        return -1;
    nc = realloc(a->checks, (a->nchecks + 1) * sizeof *nc);
    if (!nc) {
        free(n);
        return -1;
    }
    a->checks = nc;
    a->checks[a->nchecks++] = (struct health){.name = n, .fn = fn, .arg = arg};
    return 0;
}

/* ---------------------------------------------------------------- start/stop */

/* Splits <listen> into host and port; bare port means loopback. Returns 0 or -1. */
static int
parse_listen(const char *listen, char *host, size_t hostlen, int *port)
{
    const char *colon, *pstr;
    size_t hlen;
    char *end;
    long p;

    if (!listen || !*listen)
        listen = "127.0.0.1:8080";
    if (listen[0] == '[') {
        const char *rb = strchr(listen, ']');
        if (!rb || rb[1] != ':')
            return -1;
        hlen = (size_t)(rb - listen - 1);
        if (hlen == 0 || hlen >= hostlen)
            return -1;
        memcpy(host, listen + 1, hlen);
        host[hlen] = '\0';
        pstr = rb + 2;
    } else if ((colon = strrchr(listen, ':'))) {
        if (strchr(listen, ':') != colon)
            return -1;   /* unbracketed IPv6 */
        hlen = (size_t)(colon - listen);
        if (hlen >= hostlen)
            return -1;
        memcpy(host, listen, hlen);
        host[hlen] = '\0';
        if (hlen == 0)
            snprintf(host, hostlen, "127.0.0.1");
        pstr = colon + 1;
    } else {
        snprintf(host, hostlen, "127.0.0.1");
        pstr = listen;
    }
    if (!*pstr)
        return -1;
    p = strtol(pstr, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

struct admin_http *
admin_http_start(struct event_base *base, const char *listen, const char *bearer_token,
                 struct metrics *reg, struct cfg *cfg)
{
    struct admin_http *a = NULL;
    char host[256];
    int port;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;

    if (parse_listen(listen, host, sizeof host, &port) != 0) {
        log_err("admin listen address '%s' is not host:port", listen ? listen : "");
        return NULL;
    }
    if (!(a = calloc(1, sizeof *a)))
        return NULL;
    a->reg = reg;
    a->cfg = cfg;
    if (bearer_token && bearer_token[0] && !(a->token = strdup(bearer_token)))
        goto fail;
    if (!(a->http = evhttp_new(base)))
        goto fail;
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
    evhttp_set_gencb(a->http, admin_request_cb, a);
    if (route_add(a, "/healthz", M_GET, healthz_route, a) != 0 ||
        route_add(a, "/metrics", M_GET, metrics_route, a) != 0 ||
        route_add(a, "/config", M_GET, config_route, a) != 0 ||
        route_add(a, "/api/reload", M_POST, reload_route, a) != 0)
        goto fail;
    if (!(a->sock = evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)port))) {
        log_err("admin endpoint cannot bind %s port %d", host, port);
        goto fail;
    }
    if (getsockname(evhttp_bound_socket_get_fd(a->sock), (struct sockaddr *)&ss, &sslen) != 0)
        goto fail;
    if (ss.ss_family == AF_INET)
        a->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
        a->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    log_info("admin endpoint on %s port %d%s", host, a->port, a->token ? " (token required)" : "");
    return a;
fail:
    admin_http_free(a);
    return NULL;
}

int
admin_http_port(const struct admin_http *a)
{
    return a ? a->port : -1;
}

void
admin_http_free(struct admin_http *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    for (size_t i = 0; i < a->nroutes; i++)
        free(a->routes[i].path);
    free(a->routes);
    for (size_t i = 0; i < a->nchecks; i++)
        free(a->checks[i].name);
    free(a->checks);
    free(a->token);
    free(a);
}

/* ---------------------------------------------------------------- settings table */

const struct cfg_opt admin_http_cfg_rows[] = {
    {.name = "admin-listen", .type = CFG_STR, .def = "127.0.0.1:8080",
     .help = "host:port of the admin HTTP endpoint (/healthz, /metrics, /config); port 0 picks "
             "a free port",
     .offset = offsetof(struct admin_http_settings, listen)},
    {.name = "admin-token", .type = CFG_STR, .def = NULL,
     .help = "bearer token required on every admin path except /healthz (unset = no auth)",
     .offset = offsetof(struct admin_http_settings, token)},
};
const size_t admin_http_cfg_nrows = sizeof admin_http_cfg_rows / sizeof admin_http_cfg_rows[0];
