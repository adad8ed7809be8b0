/* libparley-agent: client side of docs/agent-protocol.md (see parley-agent.h). */
#include "parley-agent.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_proto.h"

#define MAX_HEADERS 256

struct pagent_msg {
    uint64_t id;
    const char *app;
    int status;
    char *copy;                   /* the message, split into NUL-terminated pieces */
    const char *raw;
    size_t raw_len;
    const char *method, *ruri;
    unsigned nhdr;
    const char *hname[MAX_HEADERS], *hvalue[MAX_HEADERS];
    const char *body;
    size_t body_len;
};

struct pagent {
    struct pagent_opts o;
    char *socket_path, *tcp, *secret, *app;
    int fd;
    uint64_t queue;
    char *in;                     /* read buffer */
    size_t in_len, in_cap;
    volatile sig_atomic_t stop;
    char err[256];
};

static void set_err(struct pagent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_err(struct pagent *a, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(a->err, sizeof a->err, fmt, ap);
    va_end(ap);
}

static char *
dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

struct pagent *
pagent_new(const struct pagent_opts *o)
{
    struct pagent *a;

    if (o == NULL || o->app == NULL || o->on_request == NULL || (o->socket_path == NULL && o->tcp == NULL))
        return NULL;
    if ((a = calloc(1, sizeof *a)) == NULL)
        return NULL;
    a->o = *o;
    a->socket_path = dup_or_null(o->socket_path);
    a->tcp = dup_or_null(o->tcp);
    a->secret = dup_or_null(o->secret);
    a->app = strdup(o->app);
    a->fd = -1;
    if (a->app == NULL) {
        pagent_free(a);
        return NULL;
    }
    return a;
}

static void
disconnect(struct pagent *a)
{
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
    a->in_len = 0;
}

void
pagent_free(struct pagent *a)
{
    if (a == NULL)
        return;
    disconnect(a);
    free(a->socket_path);
    free(a->tcp);
    free(a->secret);
    free(a->app);
    free(a->in);
    free(a);
}

int pagent_fd(const struct pagent *a) { return a->fd; }
bool pagent_connected(const struct pagent *a) { return a->fd >= 0; }
uint64_t pagent_queue_size(const struct pagent *a) { return a->queue; }
const char *pagent_error(const struct pagent *a) { return a->err; }
void pagent_stop(struct pagent *a) { a->stop = 1; }

/* Writes all of <b> (blocking). */
static int
write_all(struct pagent *a, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(a->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {a->fd, POLLOUT, 0};
            poll(&pf, 1, 1000);
            continue;
        }
        if (w <= 0) {
            set_err(a, "send: %s", strerror(errno));
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int
send_msg(struct pagent *a, const struct agent_msg *m)
{
    struct agent_buf b = {0};
    int rc = -1;

    if (a->fd < 0) {
        set_err(a, "not connected");
        return -1;
    }
    if (agent_encode(&b, m) != 0) {
        set_err(a, "cannot encode %s (too large or too many items)", agent_type_name(m->type));
        goto out;
    }
    rc = write_all(a, b.p, b.len);
out:
    agent_buf_free(&b);
    return rc;
}

/* Reads into the buffer: <block_ms> < 0 = do not wait. 1 = got bytes, 0 = none, -1 = closed/error. */
static int
fill(struct pagent *a, int block_ms)
{
    ssize_t r;

    if (a->in_cap - a->in_len < 65536) {
        size_t max = 4 * (AGENT_HDR_LEN + (size_t)AGENT_MAX_FRAME);
        size_t cap = a->in_cap ? a->in_cap * 2 : 131072;
        char *p;
        if (cap > max)
            cap = max;
        if (cap <= a->in_cap && a->in_len >= a->in_cap) {
            set_err(a, "read buffer full");
            return -1;
        }
        if (cap <= a->in_cap)
            goto read;
        if ((p = realloc(a->in, cap)) == NULL) {
            set_err(a, "out of memory");
            return -1;
        }
        a->in = p;
        a->in_cap = cap;
    }
read:
    if (block_ms >= 0) {
        struct pollfd pf = {a->fd, POLLIN, 0};
        int n = poll(&pf, 1, block_ms);
        if (n <= 0)
            return 0;
    }
    r = recv(a->fd, a->in + a->in_len, a->in_cap - a->in_len, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (r <= 0) {
        set_err(a, r == 0 ? "the server closed the connection" : "recv: %s", strerror(errno));
        return -1;
    }
    a->in_len += (size_t)r;
    return 1;
}

/* The next complete frame in the buffer: its length, 0 if incomplete, -1 garbage. */
static long
next_frame(struct pagent *a, struct agent_msg *m)
{
    long n = agent_frame_check(a->in, a->in_len);
    const char *why = NULL;

    if (n <= 0) {
        if (n < 0)
            set_err(a, "garbage from the server");
        return n;
    }
    if (agent_decode(a->in, (size_t)n, m, &why) != 0) {
        set_err(a, "bad frame from the server: %s", why);
        return -1;
    }
    return n;
}

static void
consume(struct pagent *a, long n)
{
    memmove(a->in, a->in + n, a->in_len - (size_t)n);
    a->in_len -= (size_t)n;
}

/* Waits (at most <ms>) for one frame of <type>; an ERROR frame fails. */
static int
expect(struct pagent *a, enum agent_type type, struct agent_msg *m, int ms)
{
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long n = next_frame(a, m);
        if (n < 0)
            return -1;
        if (n > 0) {
            if (m->type == AGENT_ERROR) {
                set_err(a, "server refused: %llu %s", (unsigned long long)m->status, m->reason ? m->reason : "");
                return -1;
            }
            if (m->type != type) {
                set_err(a, "unexpected %s during the handshake", agent_type_name(m->type));
                return -1;
            }
            return (int)n;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > ms) {
            set_err(a, "handshake timed out");
            return -1;
        }
        if (fill(a, 100) < 0)
            return -1;
    }
}

static int
open_socket(struct pagent *a)
{
    if (a->socket_path) {
        struct sockaddr_un sun;
        int fd;
        if (strlen(a->socket_path) >= sizeof sun.sun_path) {
            set_err(a, "socket path too long");
            return -1;
        }
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path, a->socket_path, strlen(a->socket_path) + 1);
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
            set_err(a, "socket: %s", strerror(errno));
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
            set_err(a, "connect %s: %s", a->socket_path, strerror(errno));
            close(fd);
            return -1;
        }
        return fd;
    } else {
        char host[256];
        const char *colon = strrchr(a->tcp, ':');
        struct addrinfo hints, *res = NULL;
        int fd = -1;
        if (colon == NULL || (size_t)(colon - a->tcp) >= sizeof host) {
            set_err(a, "tcp address is not host:port");
            return -1;
        }
        memcpy(host, a->tcp, (size_t)(colon - a->tcp));
        host[colon - a->tcp] = '\0';
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL) {
            set_err(a, "bad tcp address %s", a->tcp);
            return -1;
        }
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
            set_err(a, "connect %s: %s", a->tcp, strerror(errno));
            close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
        return fd;
    }
}

int
pagent_connect(struct pagent *a)
{
    struct agent_msg m;
    long n;

    disconnect(a);
    if ((a->fd = open_socket(a)) < 0)
        return -1;
    memset(&m, 0, sizeof m);
    m.type = AGENT_HELLO;
    m.proto_version = AGENT_PROTO_VERSION;
    m.secret = a->secret;
    if (send_msg(a, &m) != 0 || (n = expect(a, AGENT_WELCOME, &m, 5000)) < 0)
        goto fail;
    consume(a, n);
    memset(&m, 0, sizeof m);
    m.type = AGENT_REGISTER;
    m.app = a->app;
    if (send_msg(a, &m) != 0 || (n = expect(a, AGENT_REGISTERED, &m, 5000)) < 0)
        goto fail;
    a->queue = m.queue;
    consume(a, n);
    return 0;
fail:
    disconnect(a);
    return -1;
}

/* Splits the SIP text of <m> into a request/response line, headers and body. */
static int
parse_sip(struct pagent_msg *pm, const char *sip, size_t len)
{
    char *p, *end, *line, *eol;

    if ((pm->copy = malloc(len + 1)) == NULL)
        return -1;
    memcpy(pm->copy, sip, len);
    pm->copy[len] = '\0';
    p = pm->copy;
    end = p + len;
    /* first line */
    if ((eol = strstr(p, "\r\n")) == NULL)
        return -1;
    *eol = '\0';
    if (strncmp(p, "SIP/2.0 ", 8) == 0) {
        char *ep;
        long code = strtol(p + 8, &ep, 10);
        pm->status = (int)code;
        if (code < 100 || code > 699 || ep != p + 11)
            return -1;
    } else {
        char *sp1 = strchr(p, ' '), *sp2;
        if (sp1 == NULL || (sp2 = strchr(sp1 + 1, ' ')) == NULL)
            return -1;
        *sp1 = '\0';
        *sp2 = '\0';
        pm->method = p;
        pm->ruri = sp1 + 1;
    }
    p = eol + 2;
    /* headers, unfolding continuation lines in place (RFC 3261 §7.3.1) */
    while (p < end) {
        char *colon, *v, *e;
        if (p[0] == '\r' && p[1] == '\n') {
            p += 2;
            break;
        }
        line = p;
        for (eol = p;; eol++) {
            eol = strstr(eol, "\r\n");
            if (eol == NULL)
                return -1;
            if (eol[2] == ' ' || eol[2] == '\t') {
                eol[0] = ' ';
                eol[1] = ' ';
                continue;
            }
            break;
        }
        *eol = '\0';
        p = eol + 2;
        if ((colon = strchr(line, ':')) == NULL || pm->nhdr >= MAX_HEADERS)
            continue;
        e = colon;
        while (e > line && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *e = '\0';
        v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        pm->hname[pm->nhdr] = line;
        pm->hvalue[pm->nhdr] = v;
        pm->nhdr++;
    }
    pm->body = p <= end ? p : end;
    pm->body_len = (size_t)(end - pm->body);
    return 0;
}

static void
deliver(struct pagent *a, const struct agent_msg *m)
{
    struct pagent_msg pm;

    switch (m->type) {
    case AGENT_REQUEST:
    case AGENT_RESPONSE:
        memset(&pm, 0, sizeof pm);
        pm.id = m->id;
        pm.app = m->app ? m->app : a->app;
        pm.raw = m->sip;
        pm.raw_len = m->sip_len;
        if (parse_sip(&pm, m->sip, m->sip_len) == 0) {
            if (m->type == AGENT_REQUEST && pm.method)
                a->o.on_request(a, &pm, a->o.arg);
            else if (m->type == AGENT_RESPONSE && pm.status && a->o.on_response)
                a->o.on_response(a, &pm, a->o.arg);
            else if (m->type == AGENT_RESPONSE)
                pagent_proxy_response(a, m->id, NULL);   /* nobody to ask: send it on */
        } else if (m->type == AGENT_REQUEST) {
            pagent_proxy(a, m->id, NULL, NULL, 0);   /* unreadable here: pass it on unchanged */
        } else {
            pagent_proxy_response(a, m->id, NULL);
        }
        free(pm.copy);
        break;
    case AGENT_EVENT:
        if (a->o.on_event)
            a->o.on_event(a, m->id, (int)m->event, m->reason, a->o.arg);
        break;
    default:
        break;   /* WELCOME/REGISTERED again, ERROR (the server closes next) */
    }
}

int
pagent_dispatch(struct pagent *a)
{
    int rc;

    if (a->fd < 0) {
        set_err(a, "not connected");
        return -1;
    }
    do {
        struct agent_msg m;
        long n;
        rc = fill(a, -1);
        while (rc >= 0 && (n = next_frame(a, &m)) != 0) {
            if (n < 0) {
                rc = -1;
                break;
            }
            deliver(a, &m);
            if (a->fd < 0)
                return -1;
            consume(a, n);
        }
    } while (rc > 0);
    if (rc < 0) {
        disconnect(a);
        if (a->o.on_event)
            a->o.on_event(a, 0, PAGENT_EV_DISCONNECTED, a->err, a->o.arg);
        return -1;
    }
    return 0;
}

int
pagent_run(struct pagent *a)
{
    unsigned wait = a->o.reconnect_ms ? a->o.reconnect_ms : 200;

    while (!a->stop) {
        if (a->fd < 0) {
            if (pagent_connect(a) != 0) {
                if (a->o.no_reconnect)
                    return -1;
                for (unsigned slept = 0; slept < wait && !a->stop; slept += 50)
                    usleep(50000);
                wait = wait * 2 > 5000 ? 5000 : wait * 2;
                continue;
            }
            wait = a->o.reconnect_ms ? a->o.reconnect_ms : 200;
        }
        {
            struct pollfd pf = {a->fd, POLLIN, 0};
            int n = poll(&pf, 1, 200);
            if (n < 0 && errno != EINTR)
                return -1;
            if (n > 0 && pagent_dispatch(a) != 0 && a->o.no_reconnect)
                return -1;
        }
    }
    return 0;
}

/* ---- messages */

uint64_t pagent_msg_id(const struct pagent_msg *m) { return m->id; }
const char *pagent_msg_app(const struct pagent_msg *m) { return m->app; }
const char *pagent_msg_method(const struct pagent_msg *m) { return m->method; }
const char *pagent_msg_ruri(const struct pagent_msg *m) { return m->ruri; }
int pagent_msg_status(const struct pagent_msg *m) { return m->status; }
unsigned pagent_msg_header_count(const struct pagent_msg *m) { return m->nhdr; }

const char *
pagent_msg_header_at(const struct pagent_msg *m, unsigned i, const char **value)
{
    if (i >= m->nhdr)
        return NULL;
    if (value)
        *value = m->hvalue[i];
    return m->hname[i];
}

/* RFC 3261 §7.3.3 compact forms. */
static const char *
long_name(const char *n)
{
    static const char *const map[][2] = {{"i", "call-id"}, {"m", "contact"}, {"e", "content-encoding"},
                                         {"l", "content-length"}, {"c", "content-type"}, {"f", "from"},
                                         {"s", "subject"}, {"k", "supported"}, {"t", "to"}, {"v", "via"}};

    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(n, map[i][0]) == 0)
            return map[i][1];
    return n;
}

const char *
pagent_msg_header(const struct pagent_msg *m, const char *name, unsigned idx)
{
    const char *want = long_name(name);

    for (unsigned i = 0; i < m->nhdr; i++) {
        if (strcasecmp(long_name(m->hname[i]), want) == 0 && idx-- == 0)
            return m->hvalue[i];
    }
    return NULL;
}

const char *
pagent_msg_body(const struct pagent_msg *m, size_t *len)
{
    if (len)
        *len = m->body_len;
    return m->body;
}

const char *
pagent_msg_raw(const struct pagent_msg *m, size_t *len)
{
    if (len)
        *len = m->raw_len;
    return m->raw;
}

/* ---- actions */

static int
fill_edit(struct agent_msg *m, const struct pagent_edit *e)
{
    if (e == NULL)
        return 0;
    if (e->nadd > AGENT_MAX_ITEMS || e->nremove > AGENT_MAX_ITEMS)
        return -1;
    for (unsigned i = 0; i < e->nadd; i++)
        m->add[m->nadd++] = e->add[i];
    for (unsigned i = 0; i < e->nremove; i++)
        m->remove[m->nremove++] = e->remove[i];
    return 0;
}

int
pagent_proxy(struct pagent *a, uint64_t id, const char *uri, const struct pagent_edit *e, unsigned flags)
{
    struct agent_msg m;

    memset(&m, 0, sizeof m);
    m.type = AGENT_PROXY;
    m.id = id;
    m.flags = flags;
    if (uri)
        m.uri[m.nuri++] = uri;
    if (fill_edit(&m, e) != 0) {
        set_err(a, "too many header edits");
        return -1;
    }
    return send_msg(a, &m);
}

int
pagent_fork(struct pagent *a, uint64_t id, const char *const *uris, unsigned n, const struct pagent_edit *e,
            unsigned flags)
{
    struct agent_msg m;

    if (n == 0 || n > AGENT_MAX_ITEMS) {
        set_err(a, "fork needs 1..%d URIs", AGENT_MAX_ITEMS);
        return -1;
    }
    memset(&m, 0, sizeof m);
    m.type = AGENT_FORK;
    m.id = id;
    m.flags = flags;
    for (unsigned i = 0; i < n; i++)
        m.uri[m.nuri++] = uris[i];
    if (fill_edit(&m, e) != 0) {
        set_err(a, "too many header edits");
        return -1;
    }
    return send_msg(a, &m);
}

int
pagent_respond(struct pagent *a, uint64_t id, int status, const char *reason, const char *const *headers,
               unsigned nheaders)
{
    struct agent_msg m;

    if (status < 200 || status > 699 || nheaders > AGENT_MAX_ITEMS) {
        set_err(a, "respond: status must be 200..699, at most %d headers", AGENT_MAX_ITEMS);
        return -1;
    }
    memset(&m, 0, sizeof m);
    m.type = AGENT_RESPOND;
    m.id = id;
    m.status = (uint64_t)status;
    m.reason = reason;
    for (unsigned i = 0; i < nheaders; i++)
        m.add[m.nadd++] = headers[i];
    return send_msg(a, &m);
}

int
pagent_trying(struct pagent *a, uint64_t id)
{
    struct agent_msg m;

    memset(&m, 0, sizeof m);
    m.type = AGENT_TRYING;
    m.id = id;
    return send_msg(a, &m);
}

int
pagent_proxy_response(struct pagent *a, uint64_t id, const struct pagent_edit *e)
{
    struct agent_msg m;

    memset(&m, 0, sizeof m);
    m.type = AGENT_PROXY_RESPONSE;
    m.id = id;
    if (fill_edit(&m, e) != 0) {
        set_err(a, "too many header edits");
        return -1;
    }
    return send_msg(a, &m);
}
