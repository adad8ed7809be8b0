/*
 * dir_etcd: etcd v3 JSON gateway over libcurl multi on libevent (see dir_etcd.h and
 * docs/internals/directory.md; the glue follows dependencies.md §3.4).
 *
 * Requests never go to curl_multi_add_handle() directly: they are queued and added from
 * a "kick" event on the loop, because an add from inside a libcurl callback fails with
 * CURLM_RECURSIVE_API_CALL and the request would silently never start. Watches that are
 * cancelled from inside a callback are freed the same way.
 */
#define LOG_MODULE "dir"
#include "directory/dir_etcd.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* A range of every user of a large pool is big; refuse more than this in one answer. */
#define MAX_BODY (512u * 1024u * 1024u)
#define MAX_WATCH_LINE (16u * 1024u * 1024u)

enum req_kind {
    REQ_UNARY = 0,
    REQ_WATCH,
};

/* One HTTP request. Unary requests are freed after their callback; a watch owns one
 * request at a time, re-created on each reconnect. */
struct req {
    enum req_kind kind;
    struct dir_etcd *e;
    CURL *easy;
    char *path;             /* "/v3/kv/range" */
    char *body;             /* JSON request body */
    char *resp;             /* unary: response bytes */
    size_t resp_n, resp_cap;
    bool too_big;
    size_t ep;              /* endpoint index of this attempt */
    size_t attempts;        /* endpoints tried */
    bool queued;            /* on e->addq */
    bool in_multi;
    dir_etcd_cb *cb;
    void *arg;
    struct dir_etcd_watch *w; /* REQ_WATCH: owner */
    struct req *next_q;     /* e->addq */
    struct req *prev, *next; /* e->reqs: every live request */
};

struct dir_etcd_watch {
    struct dir_etcd *e;
    char *prefix;
    int64_t next_rev;       /* resume point: last seen revision + 1 (0 = from now) */
    dir_etcd_watch_cb *cb;
    void *arg;
    struct req *req;        /* current stream, NULL while waiting to reconnect */
    struct dir_linebuf lines;
    struct event *retry;    /* reconnect timer */
    unsigned backoff_ms;
    bool dead;              /* canceled by etcd: no reconnect, no more callbacks */
    bool cancelled;         /* by the caller: to be freed by the kick */
    bool was_down;
    struct dir_etcd_watch *prev, *next;
};

struct dir_etcd {
    struct event_base *base;
    CURLM *multi;
    struct event *curl_timer;
    struct event *kick;     /* deferred adds and frees */
    char **eps;
    size_t n_eps;
    size_t cur;             /* endpoint that answered last */
    int in_curl;            /* depth of libcurl calls on the stack */
    struct req *addq, *addq_tail;
    struct req *reqs;
    struct dir_etcd_watch *watches;
};

static void drain_done(struct dir_etcd *e);
static void watch_connect(struct dir_etcd_watch *w);
static void req_free(struct req *r);

static int curl_refs;

/* ---- loop glue (dependencies.md §3.4) -------------------------------------------- */

struct sock {
    struct dir_etcd *e;
    struct event *ev;
};

static void
on_sock(evutil_socket_t fd, short what, void *arg)
{
    struct dir_etcd *e = arg;
    int running, f = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
                     ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    e->in_curl++;
    curl_multi_socket_action(e->multi, fd, f, &running);
    e->in_curl--;
    drain_done(e);
}

static int
sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *sockp)
{
    struct dir_etcd *e = userp;
    struct event *ev = sockp;
    short kind;

    if (what == CURL_POLL_REMOVE) {
        if (ev != NULL) {
            event_free(ev);
            curl_multi_assign(e->multi, s, NULL);
        }
        return 0;
    }
    kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
           ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (ev != NULL) {
        event_del(ev);
        event_assign(ev, e->base, s, kind, on_sock, e);
    } else {
        ev = event_new(e->base, s, kind, on_sock, e);
        if (ev == NULL)
            return -1;
        curl_multi_assign(e->multi, s, ev);
    }
    event_add(ev, NULL);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 deletes the timer, 0 fires on the next loop pass. */
static int
timer_cb(CURLM *multi, long ms, void *userp)
{
    struct dir_etcd *e = userp;

    if (ms < 0) {
        evtimer_del(e->curl_timer);
    } else {
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(e->curl_timer, &tv);
    }
    return 0;
}

static void
on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dir_etcd *e = arg;
    int running;

    e->in_curl++;
    curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    e->in_curl--;
    drain_done(e);
}

/* ---- request plumbing ----------------------------------------------------------- */

static size_t
unary_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct req *r = arg;
    size_t n = size * nmemb;

    if (r->resp_n + n > MAX_BODY) {
        r->too_big = true;
        return 0;                       /* aborts the transfer */
    }
    if (r->resp_n + n + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 4096;
        char *p;
        while (cap < r->resp_n + n + 1)
            cap *= 2;
        p = realloc(r->resp, cap);
        if (p == NULL)
            return 0;
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_n, data, n);
    r->resp_n += n;
    r->resp[r->resp_n] = '\0';
    return n;
}

static int watch_line(void *arg, char *line, size_t len);

static size_t
watch_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct req *r = arg;
    struct dir_etcd_watch *w = r->w;
    size_t n = size * nmemb;
    long status = 0;

    if (w == NULL || w->cancelled || w->dead)
        return 0;                       /* stop the stream */
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return unary_write(data, size, nmemb, arg); /* an error body, logged on completion */
    if (dir_linebuf_feed(&w->lines, data, n, watch_line, w) != 0)
        return 0;
    return (w->cancelled || w->dead) ? 0 : n;
}

static void
kick(struct dir_etcd *e)
{
    event_active(e->kick, EV_TIMEOUT, 0);
}

static void
enqueue(struct req *r)
{
    struct dir_etcd *e = r->e;

    r->queued = true;
    r->next_q = NULL;
    if (e->addq_tail)
        e->addq_tail->next_q = r;
    else
        e->addq = r;
    e->addq_tail = r;
    kick(e);
}

/* Prepares the easy handle for the attempt on endpoint r->ep and queues it. */
static int
req_start(struct req *r)
{
    struct dir_etcd *e = r->e;
    char url[1024];

    if (r->easy == NULL) {
        r->easy = curl_easy_init();
        if (r->easy == NULL)
            return -1;
    } else {
        curl_easy_reset(r->easy);
    }
    r->resp_n = 0;
    r->too_big = false;
    snprintf(url, sizeof url, "%s%s", e->eps[r->ep], r->path);
    curl_easy_setopt(r->easy, CURLOPT_URL, url);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)DIR_ETCD_TIMEOUT_MS);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    if (r->kind == REQ_WATCH) {
        /* no CURLOPT_TIMEOUT: the stream never ends (dependencies.md §3.4) */
        curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, watch_write);
        curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPIDLE, 10L);
        curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPINTVL, 5L);
    } else {
        curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, unary_write);
        curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)DIR_ETCD_TIMEOUT_MS);
    }
    enqueue(r);
    return 0;
}

static void watch_ended(struct dir_etcd_watch *w, CURLcode cc, long status);
static void unary_done(struct req *r, CURLcode cc, long status);

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct dir_etcd *e = arg;
    struct dir_etcd_watch *w, *wn;

    while (e->addq != NULL) {
        struct req *r = e->addq;
        CURLMcode mc;

        e->addq = r->next_q;
        if (e->addq == NULL)
            e->addq_tail = NULL;
        r->queued = false;
        mc = curl_multi_add_handle(e->multi, r->easy);
        if (mc != CURLM_OK) {
            /* keep the promise of exactly one callback: fail it like a dead endpoint */
            log_err("etcd: curl_multi_add_handle: %s", curl_multi_strerror(mc));
            if (r->kind == REQ_WATCH)
                watch_ended(r->w, CURLE_FAILED_INIT, 0);
            else
                unary_done(r, CURLE_FAILED_INIT, 0);
            continue;
        }
        r->in_multi = true;
    }
    for (w = e->watches; w != NULL; w = wn) {
        wn = w->next;
        if (w->cancelled)
            dir_etcd_watch_cancel(w);
    }
}

static struct req *
req_new(struct dir_etcd *e, enum req_kind kind, const char *path, char *body)
{
    struct req *r = calloc(1, sizeof *r);

    if (r == NULL || body == NULL) {
        free(r);
        free(body);
        return NULL;
    }
    r->kind = kind;
    r->e = e;
    r->path = strdup(path);
    r->body = body;
    r->ep = e->cur;
    if (r->path == NULL) {
        free(r->body);
        free(r);
        return NULL;
    }
    r->next = e->reqs;
    if (e->reqs)
        e->reqs->prev = r;
    e->reqs = r;
    return r;
}

static void
req_free(struct req *r)
{
    struct dir_etcd *e;

    if (r == NULL)
        return;
    e = r->e;
    if (r->queued) {
        struct req **pp = &e->addq;
        e->addq_tail = NULL;
        while (*pp) {
            if (*pp == r)
                *pp = r->next_q;
            else
                e->addq_tail = *pp, pp = &(*pp)->next_q;
        }
        if (e->addq == NULL)
            e->addq_tail = NULL;
    }
    if (r->in_multi)
        curl_multi_remove_handle(e->multi, r->easy);
    if (r->easy)
        curl_easy_cleanup(r->easy);
    if (r->prev)
        r->prev->next = r->next;
    else
        e->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r->path);
    free(r->body);
    free(r->resp);
    free(r);
}

static bool
is_conn_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return true;
    default:
        return false;
    }
}

static void
unary_done(struct req *r, CURLcode cc, long status)
{
    struct dir_etcd *e = r->e;
    struct dir_resp resp;
    int rc = -1;

    if (cc != CURLE_OK && is_conn_error(cc) && r->attempts + 1 < e->n_eps) {
        /* failover: same request on the next endpoint */
        log_warn("etcd: %s%s: %s; trying the next endpoint", e->eps[r->ep], r->path,
                 curl_easy_strerror(cc));
        curl_multi_remove_handle(e->multi, r->easy);
        r->in_multi = false;
        r->attempts++;
        r->ep = (r->ep + 1) % e->n_eps;
        if (req_start(r) == 0)
            return;
    }
    memset(&resp, 0, sizeof resp);
    if (cc == CURLE_OK) {
        e->cur = r->ep;                 /* remember the endpoint that answered */
        if (dir_resp_parse(r->resp ? r->resp : "", r->resp_n, &resp) != 0) {
            dir_resp_clear(&resp);
            log_warn("etcd: %s: unparsable answer (HTTP %ld)", r->path, status);
        } else if (status == 200 && resp.error == NULL) {
            rc = 0;
        } else {
            log_debug("etcd: %s: HTTP %ld code %d %s", r->path, status, resp.code,
                      resp.error ? resp.error : "");
        }
        resp.http_status = status;
    } else {
        log_debug("etcd: %s%s: %s", e->eps[r->ep], r->path,
                  r->too_big ? "answer too large" : curl_easy_strerror(cc));
    }
    if (r->cb)
        r->cb(rc, &resp, r->arg);
    dir_resp_clear(&resp);
    req_free(r);
}

static void
drain_done(struct dir_etcd *e)
{
    CURLMsg *m;
    int left;

    if (e->in_curl > 0)
        return;
    while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
        struct req *r = NULL;
        long status = 0;
        CURLcode cc;

        if (m->msg != CURLMSG_DONE)
            continue;
        cc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        if (r == NULL)
            continue;
        if (r->kind == REQ_WATCH)
            watch_ended(r->w, cc, status);
        else
            unary_done(r, cc, status);
    }
}

static int
submit(struct dir_etcd *e, const char *path, char *body, dir_etcd_cb *cb, void *arg)
{
    struct req *r = req_new(e, REQ_UNARY, path, body);

    if (r == NULL)
        return -1;
    r->cb = cb;
    r->arg = arg;
    if (req_start(r) != 0) {
        req_free(r);
        return -1;
    }
    return 0;
}

/* ---- lifecycle -------------------------------------------------------------------- */

static char *
norm_endpoint(const char *s, size_t n)
{
    char *p;

    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '/'))
        n--;
    if (n == 0)
        return NULL;
    if (memmem(s, n, "://", 3) != NULL) {
        p = strndup(s, n);
    } else if ((p = malloc(n + 8)) != NULL) {
        memcpy(p, "http://", 7);
        memcpy(p + 7, s, n);
        p[n + 7] = '\0';
    }
    return p;
}

struct dir_etcd *
dir_etcd_new(struct event_base *base, const char *endpoints_csv)
{
    struct dir_etcd *e;
    const char *p;

    if (endpoints_csv == NULL)
        return NULL;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->base = base;
    for (p = endpoints_csv; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        char *ep = norm_endpoint(p, n);
        if (ep != NULL) {
            char **eps = realloc(e->eps, (e->n_eps + 1) * sizeof *eps);
            if (eps == NULL) {
                free(ep);
                goto bad;
            }
            e->eps = eps;
            e->eps[e->n_eps++] = ep;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (e->n_eps == 0)
        goto bad;
    if (curl_refs++ == 0)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    e->multi = curl_multi_init();
    e->curl_timer = evtimer_new(base, on_curl_timer, e);
    e->kick = event_new(base, -1, 0, on_kick, e);
    if (e->multi == NULL || e->curl_timer == NULL || e->kick == NULL) {
        dir_etcd_free(e);
        return NULL;
    }
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    return e;
bad:
    for (size_t i = 0; i < e->n_eps; i++)
        free(e->eps[i]);
    free(e->eps);
    free(e);
    return NULL;
}

static void watch_free(struct dir_etcd_watch *w);

void
dir_etcd_free(struct dir_etcd *e)
{
    if (e == NULL)
        return;
    while (e->watches)
        watch_free(e->watches);
    while (e->reqs)
        req_free(e->reqs);
    if (e->multi)
        curl_multi_cleanup(e->multi);   /* frees our socket events via CURL_POLL_REMOVE */
    if (e->curl_timer)
        event_free(e->curl_timer);
    if (e->kick)
        event_free(e->kick);
    for (size_t i = 0; i < e->n_eps; i++)
        free(e->eps[i]);
    free(e->eps);
    if (e->multi && --curl_refs == 0)
        curl_global_cleanup();
    free(e);
}

const char *
dir_etcd_endpoint(const struct dir_etcd *e)
{
    return e->eps[e->cur];
}

/* ---- operations ------------------------------------------------------------------- */

char *
dir_etcd_prefix_end(const char *prefix, size_t *out_len)
{
    size_t n = strlen(prefix);
    char *end;

    if (n == 0)
        return NULL;
    end = malloc(n + 1);
    if (end == NULL)
        return NULL;
    memcpy(end, prefix, n + 1);
    /* increment the last byte that is not 0xff, dropping the 0xff bytes after it */
    while (n > 0 && (unsigned char)end[n - 1] == 0xff)
        n--;
    if (n == 0) {
        /* all 0xff: every key after it, etcd's "\0" range_end */
        end[0] = '\0';
        *out_len = 1;
        return end;
    }
    end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
    end[n] = '\0';
    *out_len = n;
    return end;
}

/* Builds {"key":B64[,"range_end":B64]<extra>}; malloc'd. */
static char *
key_body(const char *key, bool prefix, const char *extra)
{
    char *k = dir_b64_encode(key, strlen(key)), *re = NULL, *body = NULL;
    size_t relen;

    if (k == NULL)
        return NULL;
    if (prefix) {
        char *end = dir_etcd_prefix_end(key, &relen);
        if (end == NULL)
            goto out;
        re = dir_b64_encode(end, relen);
        free(end);
        if (re == NULL)
            goto out;
    }
    if (asprintf(&body, "{\"key\":\"%s\"%s%s%s%s}", k, re ? ",\"range_end\":\"" : "",
                 re ? re : "", re ? "\"" : "", extra ? extra : "") < 0)
        body = NULL;
out:
    free(k);
    free(re);
    return body;
}

int
dir_etcd_range(struct dir_etcd *e, const char *key, bool prefix, dir_etcd_cb *cb, void *arg)
{
    return submit(e, "/v3/kv/range", key_body(key, prefix, NULL), cb, arg);
}

int
dir_etcd_range_page(struct dir_etcd *e, const char *prefix, const char *start, size_t start_len,
                    long limit, int64_t revision, dir_etcd_cb *cb, void *arg)
{
    char *k = dir_b64_encode(start, start_len), *re = NULL, *end = NULL, *body = NULL;
    size_t relen;

    if (k == NULL || (end = dir_etcd_prefix_end(prefix, &relen)) == NULL ||
        (re = dir_b64_encode(end, relen)) == NULL)
        goto out;
    if (asprintf(&body, "{\"key\":\"%s\",\"range_end\":\"%s\",\"limit\":%ld,\"revision\":%lld}", k, re,
                 limit, (long long)revision) < 0)
        body = NULL;
out:
    free(k);
    free(end);
    free(re);
    return submit(e, "/v3/kv/range", body, cb, arg);
}

int
dir_etcd_delete(struct dir_etcd *e, const char *key, bool prefix, dir_etcd_cb *cb,
                void *arg)
{
    return submit(e, "/v3/kv/deleterange", key_body(key, prefix, NULL), cb, arg);
}

int
dir_etcd_put(struct dir_etcd *e, const char *key, const char *value, size_t len,
             int64_t lease, dir_etcd_cb *cb, void *arg)
{
    char *v = dir_b64_encode(value, len), *extra = NULL, *body;
    char lease_s[48] = "";

    if (v == NULL)
        return -1;
    if (lease)
        snprintf(lease_s, sizeof lease_s, ",\"lease\":\"%lld\"", (long long)lease);
    if (asprintf(&extra, ",\"value\":\"%s\"%s", v, lease_s) < 0) {
        free(v);
        return -1;
    }
    free(v);
    body = key_body(key, false, extra);
    free(extra);
    return submit(e, "/v3/kv/put", body, cb, arg);
}

int
dir_etcd_create(struct dir_etcd *e, const char *key, const char *value, size_t len,
                int64_t lease, dir_etcd_cb *cb, void *arg)
{
    char *k = dir_b64_encode(key, strlen(key)), *v = dir_b64_encode(value, len);
    char lease_s[48] = "";
    char *body = NULL;

    if (k == NULL || v == NULL)
        goto out;
    if (lease)
        snprintf(lease_s, sizeof lease_s, ",\"lease\":\"%lld\"", (long long)lease);
    /* dependencies.md §3.2: create-if-absent = compare create_revision == 0 */
    if (asprintf(&body,
                 "{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\",\"result\":\"EQUAL\","
                 "\"create_revision\":\"0\"}],"
                 "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"%s}}],"
                 "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
                 k, k, v, lease_s, k) < 0)
        body = NULL;
out:
    free(k);
    free(v);
    return submit(e, "/v3/kv/txn", body, cb, arg);
}

int
dir_etcd_lease_grant(struct dir_etcd *e, int64_t ttl_s, dir_etcd_cb *cb, void *arg)
{
    char *body = NULL;

    /* "TTL" and "ID" are case-sensitive: {"ttl":..} is silently ignored (§3.1) */
    if (asprintf(&body, "{\"TTL\":\"%lld\"}", (long long)ttl_s) < 0)
        body = NULL;
    return submit(e, "/v3/lease/grant", body, cb, arg);
}

int
dir_etcd_lease_keepalive(struct dir_etcd *e, int64_t id, dir_etcd_cb *cb, void *arg)
{
    char *body = NULL;

    if (asprintf(&body, "{\"ID\":\"%lld\"}", (long long)id) < 0)
        body = NULL;
    return submit(e, "/v3/lease/keepalive", body, cb, arg);
}

int
dir_etcd_lease_revoke(struct dir_etcd *e, int64_t id, dir_etcd_cb *cb, void *arg)
{
    char *body = NULL;

    if (asprintf(&body, "{\"ID\":\"%lld\"}", (long long)id) < 0)
        body = NULL;
    return submit(e, "/v3/lease/revoke", body, cb, arg);
}

/* ---- watch -------------------------------------------------------------------------- */

static void
watch_deliver(struct dir_etcd_watch *w, const struct dir_watch_msg *m)
{
    if (w->cb && !w->cancelled)
        w->cb(m, w->arg);
}

static int
watch_line(void *arg, char *line, size_t len)
{
    struct dir_etcd_watch *w = arg;
    struct dir_watch_msg m;

    if (dir_watch_msg_parse(line, len, &m) != 0) {
        log_peer(LOG_WARN, "etcd watch %s: unparsable line dropped", w->prefix);
        dir_watch_msg_clear(&m);
        return 0;
    }
    switch (m.kind) {
    case DIR_WATCH_CREATED:
        w->backoff_ms = 0;
        w->was_down = false;
        if (w->next_rev == 0 && m.revision > 0)
            w->next_rev = m.revision + 1;   /* "from now": resume after the header */
        break;
    case DIR_WATCH_EVENTS:
        for (size_t i = 0; i < m.n_events; i++)
            if (m.events[i].kv.mod_revision >= w->next_rev)
                w->next_rev = m.events[i].kv.mod_revision + 1;
        break;
    case DIR_WATCH_CANCELED:
        /* the HTTP stream stays open after a cancel (§3.3): we close it */
        w->dead = true;
        log_info("etcd watch %s canceled%s%lld", w->prefix,
                 m.compact_revision ? ", compacted at " : "", (long long)m.compact_revision);
        break;
    case DIR_WATCH_ERROR:
        log_warn("etcd watch %s: %s", w->prefix, m.reason ? m.reason : "error");
        dir_watch_msg_clear(&m);
        return -1;                          /* drop the stream and reconnect */
    default:
        break;
    }
    watch_deliver(w, &m);
    dir_watch_msg_clear(&m);
    return (w->dead || w->cancelled) ? -1 : 0;
}

static void
on_watch_retry(evutil_socket_t fd, short what, void *arg)
{
    struct dir_etcd_watch *w = arg;

    if (!w->cancelled && !w->dead)
        watch_connect(w);
}

static void
watch_ended(struct dir_etcd_watch *w, CURLcode cc, long status)
{
    struct dir_etcd *e = w->e;
    struct dir_watch_msg m;
    struct timeval tv;

    size_t ep = e->cur;

    if (w->req) {
        ep = w->req->ep;
        if (status != 200 && w->req->resp_n > 0)
            log_warn("etcd watch %s: HTTP %ld: %.200s", w->prefix, status, w->req->resp);
        req_free(w->req);
        w->req = NULL;
    }
    dir_linebuf_reset(&w->lines);
    if (w->cancelled || w->dead)
        return;
    /* failover: the next attempt goes to the next endpoint unless another request has
     * meanwhile found one that answers */
    if ((is_conn_error(cc) || status != 200) && e->cur == ep)
        e->cur = (ep + 1) % e->n_eps;
    log_info("etcd watch %s dropped (%s), reconnecting from revision %lld", w->prefix,
             cc != CURLE_OK ? curl_easy_strerror(cc) : "stream ended", (long long)w->next_rev);
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : DIR_ETCD_BACKOFF_MIN_MS;
    if (w->backoff_ms > DIR_ETCD_BACKOFF_MAX_MS)
        w->backoff_ms = DIR_ETCD_BACKOFF_MAX_MS;
    tv.tv_sec = w->backoff_ms / 1000;
    tv.tv_usec = (w->backoff_ms % 1000) * 1000;
    evtimer_add(w->retry, &tv);
    memset(&m, 0, sizeof m);
    m.kind = DIR_WATCH_DOWN;
    w->was_down = true;
    watch_deliver(w, &m);
}

static void
watch_connect(struct dir_etcd_watch *w)
{
    struct dir_etcd *e = w->e;
    char *k = NULL, *re = NULL, *end = NULL, *body = NULL;
    size_t relen;
    struct req *r;

    k = dir_b64_encode(w->prefix, strlen(w->prefix));
    end = dir_etcd_prefix_end(w->prefix, &relen);
    if (k == NULL || end == NULL)
        goto fail;
    re = dir_b64_encode(end, relen);
    if (re == NULL)
        goto fail;
    if (asprintf(&body,
                 "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\","
                 "\"start_revision\":\"%lld\"}}",
                 k, re, (long long)w->next_rev) < 0) {
        body = NULL;
        goto fail;
    }
    r = req_new(e, REQ_WATCH, "/v3/watch", body);
    body = NULL;
    if (r == NULL)
        goto fail;
    r->w = w;
    w->req = r;
    dir_linebuf_reset(&w->lines);
    if (req_start(r) != 0) {
        req_free(r);
        w->req = NULL;
        goto fail;
    }
    goto out;
fail:
    {
        /* out of memory: try again later like a dropped stream */
        struct timeval tv = {1, 0};
        evtimer_add(w->retry, &tv);
    }
out:
    free(k);
    free(re);
    free(end);
    free(body);
}

struct dir_etcd_watch *
dir_etcd_watch(struct dir_etcd *e, const char *prefix, int64_t start_revision,
               dir_etcd_watch_cb *cb, void *arg)
{
    struct dir_etcd_watch *w = calloc(1, sizeof *w);

    if (w == NULL)
        return NULL;
    w->e = e;
    w->prefix = strdup(prefix);
    w->next_rev = start_revision > 0 ? start_revision : 0;
    w->cb = cb;
    w->arg = arg;
    w->retry = evtimer_new(e->base, on_watch_retry, w);
    dir_linebuf_init(&w->lines, MAX_WATCH_LINE);
    if (w->prefix == NULL || w->retry == NULL || prefix[0] == '\0') {
        if (w->retry)
            event_free(w->retry);
        free(w->prefix);
        free(w);
        return NULL;
    }
    w->next = e->watches;
    if (e->watches)
        e->watches->prev = w;
    e->watches = w;
    watch_connect(w);
    return w;
}

static void
watch_free(struct dir_etcd_watch *w)
{
    struct dir_etcd *e = w->e;

    if (w->req) {
        w->req->w = NULL;
        req_free(w->req);
    }
    event_free(w->retry);
    dir_linebuf_free(&w->lines);
    if (w->prev)
        w->prev->next = w->next;
    else
        e->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    free(w->prefix);
    free(w);
}

void
dir_etcd_watch_cancel(struct dir_etcd_watch *w)
{
    if (w == NULL)
        return;
    w->cancelled = true;
    w->cb = NULL;
    if (w->e->in_curl > 0) {
        /* inside a libcurl callback: the easy handle cannot leave the multi now */
        kick(w->e);
        return;
    }
    watch_free(w);
}

int64_t
dir_etcd_watch_next_revision(const struct dir_etcd_watch *w)
{
    return w->next_rev;
}
