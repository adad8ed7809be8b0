/*
 * admin_http: the operator's HTTP endpoint of every binary (design §6), on libevent's
 * evhttp in the main loop.
 *
 * Built-in paths:
 *   GET  /healthz      200 "ok\n" when every health check passes, else 503 with one line
 *                      per failing check ("store: database is locked\n"). Never needs
 *                      the token (orchestrators probe it).
 *   GET  /metrics      metrics_render() of <reg> (404 when <reg> is NULL)
 *   GET  /config       cfg_dump_json() of <cfg> (404 when <cfg> is NULL)
 *   POST /api/reload   cfg_reload(): 200 {"changed":[...],"ignored":[...]} or
 *                      400 {"error":"..."}; 404 when <cfg> is NULL. A route added with
 *                      the same path and method replaces it.
 * Modules add JSON routes with admin_http_add_route() (GET/HEAD) and admin_http_add_action()
 * (POST). With a bearer token configured every path except /healthz needs
 * "Authorization: Bearer <token>", else 401 with WWW-Authenticate: Bearer.
 * Unknown paths give 404, a known path with the wrong method 405 (with Allow).
 *
 * Everything runs on the loop of <base>; handlers are synchronous and must be short
 * (style.md rule 15).
 */
#ifndef PARLEY_UTIL_ADMIN_HTTP_H
#define PARLEY_UTIL_ADMIN_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "util/cfg.h"

struct event_base;
struct evbuffer;
struct evhttp_request;
struct metrics;
struct admin_http;

/* A request as seen by a route handler; valid only during the handler call. */
struct admin_req;

/* Path of the request without the query string ("/api/registrations/alice"). */
const char *admin_req_path(const struct admin_req *req);
/* "GET", "HEAD" or "POST". */
const char *admin_req_method(const struct admin_req *req);
/* Decoded value of query parameter <key>, or NULL when absent (borrowed). */
const char *admin_req_query(const struct admin_req *req, const char *key);
/* Request body (POST), NUL-terminated copy, <*len> set when non-NULL. Bodies are
 * capped at 64 KiB (larger requests get 413 before the handler runs). */
const char *admin_req_body(const struct admin_req *req, size_t *len);
/* Value of request header <name> (case-insensitive), or NULL. */
const char *admin_req_header(const struct admin_req *req, const char *name);
/* Overrides the reply Content-Type (default "application/json"). <type> is copied. */
void admin_req_set_content_type(struct admin_req *req, const char *type);
/* The underlying libevent request, for anything not covered above. */
struct evhttp_request *admin_req_raw(struct admin_req *req);

/*
 * Route handler: writes the reply body into <out> and returns the HTTP status to send
 * (200, 400, 404, ...). A status outside 100..599 is answered as 500.
 */
typedef int admin_route_fn(struct admin_req *req, struct evbuffer *out, void *arg);

/*
 * Health check: return true when healthy. When unhealthy, may write a short reason
 * into <reason>[<reason_len>] (pre-set to "").
 */
typedef bool admin_health_fn(void *arg, char *reason, size_t reason_len);

/*
 * Binds <listen> ("127.0.0.1:8080", "[::1]:9090", "0.0.0.0:8080"; a bare port
 * "8080" or ":8080" means 127.0.0.1; port 0 = ephemeral, see admin_http_port()) and
 * starts serving on <base>. <bearer_token> (copied) may be NULL or "" for no auth.
 * <reg> and <cfg> are borrowed (either may be NULL) and must outlive the server.
 * Returns NULL (logged) when the address does not parse or cannot be bound.
 */
struct admin_http *admin_http_start(struct event_base *base, const char *listen,
                                    const char *bearer_token, struct metrics *reg,
                                    struct cfg *cfg);

/* The bound TCP port (useful with port 0). */
int admin_http_port(const struct admin_http *a);

/* Stops listening, drops open admin connections and frees <a>; NULL is accepted. */
void admin_http_free(struct admin_http *a);

/*
 * Registers health check <name> (copied). /healthz is 200 only when all pass.
 * Returns 0 or -1.
 */
int admin_http_add_health(struct admin_http *a, const char *name, admin_health_fn *fn,
                          void *arg);

/*
 * Adds a GET (and HEAD) route at exact <path>, or at every path under a prefix when
 * <path> ends in a slash: "/api/registrations/" matches "/api/registrations/x" and
 * "/api/registrations". Exact routes win over prefixes, longer prefixes over shorter.
 * admin_http_add_action() is the same for POST. <path> is copied. Returns 0 or -1.
 */
int admin_http_add_route(struct admin_http *a, const char *path, admin_route_fn *fn, void *arg);
int admin_http_add_action(struct admin_http *a, const char *path, admin_route_fn *fn, void *arg);

/* Appends <s> as a JSON string literal (with quotes and escapes) to <out>. */
void admin_json_str(struct evbuffer *out, const char *s);

/*
 * Settings of the admin endpoint as a cfg table, for every binary:
 *   admin-listen (default "127.0.0.1:8080"), admin-token (default none).
 * Register with cfg_register(cfg, "admin", admin_http_cfg_rows, admin_http_cfg_nrows, &s)
 * and pass s.listen / s.token to admin_http_start().
 */
struct admin_http_settings {
    char *listen;
    char *token;
};
extern const struct cfg_opt admin_http_cfg_rows[];
extern const size_t admin_http_cfg_nrows;

#endif
