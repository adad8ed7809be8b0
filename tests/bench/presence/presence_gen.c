/*
 * presence_gen: load generator for the presence fan-out benchmark (tests/bench/presence,
 * docs/benchmarks.md "Presence fan-out"). Raw SIP text over UDP on 127.0.0.1, no SIP
 * library: one process, poll() over a few sockets, requests paced and windowed, every
 * incoming request (NOTIFY) answered 200 at once.
 *
 * Phases, each bounded in time:
 *   provision  USERS SERVICE requests (or --no-provision): user i's contact list holds
 *              users i+1 .. i+CONTACTS (mod USERS), so every user has CONTACTS watchers
 *   register   USERS REGISTERs
 *   subscribe  USERS x CONTACTS SUBSCRIBEs (Event: presence), paced at --sub-rate,
 *              each answered by 200 and an initial NOTIFY; memory of --pid before/after
 *   publish    one PUBLISH per user (activity "away", note "bench-pub"), paced at
 *              --pub-rate; the NOTIFYs that carry it are counted, first to last
 * Prints one line "key=value ..." per phase and a JSON summary on stdout.
 *
 *   presence_gen --server 127.0.0.1:16300 --users 10000 --contacts 50 [--pid HS_PID]
 *                [--sockets 16] [--window 2000] [--sub-rate 5000] [--pub-rate 2000]
 *                [--domain example.com] [--phase-timeout 900] [--notify-backlog 500] [--kamailio]
 * --notify-backlog: a PUBLISH is sent only while fewer NOTIFYs than this are still owed
 * (closed loop: the server's sustainable rate, not a retransmission storm at T1).
 * --kamailio: the peer (Kamailio presence) gets no SERVICE; its subscriptions are
 * accepted without lists and it wants a Contact in PUBLISH-less REGISTER only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOCKS 64
#define MAX_PKT 65536
#define RETX_MS 2000
#define MAX_TRIES 4

struct slot {
    char *text;               /* the request, kept for retransmission; NULL = free */
    size_t len;
    int sock;
    double sent_at;
    int tries;
    unsigned gen;
    long target;              /* SUBSCRIBE: the watched user, else -1 */
};

static struct {
    const char *domain;
    struct sockaddr_in server;
    int nsock, fds[MAX_SOCKS], ports[MAX_SOCKS];
    long users, contacts;
    size_t window;
    long notify_backlog;      /* publish phase: at most this many NOTIFYs owed by the server */
    double sub_rate, pub_rate, reg_rate, svc_rate, phase_timeout;
    int pid;
    bool kamailio, provision;
    struct slot *slots;
    long *watchers;           /* per user: SUBSCRIBEs to it answered 2xx */
    long cur_target, owed;    /* owed: NOTIFYs due for the PUBLISHes sent */
    size_t nfree, *freelist;
    size_t outstanding;
    /* per phase */
    long ok, fail, timeouts, retx, codes[7];
    /* NOTIFYs */
    long notifies, notify_marked, notify_terminated, notify_dups;   /* distinct; dups = retransmitted */
    double first_marked, last_marked, last_notify;
} G;

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("presence_gen: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ------------------------------------------------------------------ process figures */

/* <pid> and its children (Kamailio's workers share its memory): up to <max> PIDs. */
static int
family(int pid, int *pids, int max)
{
    char path[64], buf[512];
    int n = 0;

    DIR *d = opendir("/proc");
    struct dirent *de;

    pids[n++] = pid;
    while (d && (de = readdir(d)) != NULL && n < max) {
        FILE *f;
        char *rp;
        int ppid = 0, p = atoi(de->d_name);
        if (p <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/stat", p);
        if (p == pid || (f = fopen(path, "r")) == NULL)
            continue;
        size_t r = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[r] = '\0';
        if ((rp = strrchr(buf, ')')) != NULL && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == pid)
            pids[n++] = p;
    }
    if (d)
        closedir(d);
    return n;
}

static int fam[256], nfam;

/* Rss and Pss of the server (<pid> and its children) in kB (smaps_rollup); -1 when unreadable. */
static void
mem_of(int pid, long *rss, long *pss)
{
    char path[64], line[256];
    FILE *f;

    *rss = *pss = -1;
    if (pid <= 0)
        return;
    if (nfam == 0)
        nfam = family(pid, fam, 256);
    *rss = *pss = 0;
    for (int i = 0; i < nfam; i++) {
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", fam[i]);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "Rss:", 4) == 0)
                *rss += strtol(line + 4, NULL, 10);
            else if (strncmp(line, "Pss:", 4) == 0)
                *pss += strtol(line + 4, NULL, 10);
        }
        fclose(f);
    }
}

/* utime + stime of the server's processes in seconds; -1 when unreadable. */
static double
cpu_of(int pid)
{
    char path[64], buf[2048], *p;
    double total = 0;

    if (pid <= 0)
        return -1;
    if (nfam == 0)
        nfam = family(pid, fam, 256);
    for (int i = 0; i < nfam; i++) {
        unsigned long ut = 0, st = 0;
        FILE *f;
        size_t n;
        snprintf(path, sizeof path, "/proc/%d/stat", fam[i]);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* after ") ": state(3) ... utime is field 14, stime 15 */
        if ((p = strrchr(buf, ')')) == NULL ||
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
            continue;
        total += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    return total;
}

/* ------------------------------------------------------------------ sending */

static size_t
slot_get(void)
{
    return G.freelist[--G.nfree];
}

static void
slot_put(size_t i)
{
    free(G.slots[i].text);
    G.slots[i].text = NULL;
    G.slots[i].gen++;
    G.freelist[G.nfree++] = i;
    G.outstanding--;
}

static void
send_raw(int sock, const char *text, size_t len, const struct sockaddr_in *to)
{
    for (int i = 0; i < 50; i++) {
        if (sendto(G.fds[sock], text, len, 0, (const struct sockaddr *)to, sizeof *to) >= 0)
            return;
        if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR)
            return;
        usleep(200);   /* socket buffer full: let the kernel drain it */
    }
}

/*
 * Sends a request of user <user>. <fmt> has the request line and the headers after Via
 * (without Content-Length), then the body as <body> (may be NULL).
 */
static void
send_req(long user, const char *body, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
send_req(long user, const char *body, const char *fmt, ...)
{
    char head[4096], *text;
    size_t i = slot_get(), blen = body ? strlen(body) : 0;
    int sock = (int)(user % G.nsock), n, hl;
    va_list ap;
    const char *eol;

    va_start(ap, fmt);
    hl = vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    if (hl < 0 || (size_t)hl >= sizeof head)
        die("request too long");
    /* insert Via after the request line */
    eol = strstr(head, "\r\n");
    text = malloc((size_t)hl + blen + 256);
    if (text == NULL)
        die("out of memory");
    n = sprintf(text, "%.*s\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-b-%zu-%u;rport%s"
                      "Content-Length: %zu\r\n\r\n%s",
                (int)(eol - head), head, G.ports[sock], i, G.slots[i].gen, eol, blen, body ? body : "");
    G.slots[i].text = text;
    G.slots[i].len = (size_t)n;
    G.slots[i].sock = sock;
    G.slots[i].sent_at = now();
    G.slots[i].tries = 1;
    G.slots[i].target = G.cur_target;
    G.outstanding++;
    send_raw(sock, text, (size_t)n, &G.server);
}

static void
retransmit(void)
{
    double t = now();

    for (size_t i = 0; i < G.window; i++) {
        struct slot *s = &G.slots[i];
        if (s->text == NULL || t - s->sent_at < RETX_MS / 1000.0 * s->tries)
            continue;
        if (s->tries >= MAX_TRIES) {
            G.timeouts++;
            slot_put(i);
            continue;
        }
        s->tries++;
        G.retx++;
        send_raw(s->sock, s->text, s->len, &G.server);
    }
}

/* ------------------------------------------------------------------ receiving */

/* ------------------------------------------------------------------ NOTIFY dedup */

/* The server retransmits a NOTIFY whose 200 it has not read within T1 (RFC 3261 §17.1.2.2):
 * distinct NOTIFYs are counted by (Call-ID, CSeq), kept as 64-bit hashes (open addressing). */
static uint64_t *seen;
static size_t seen_cap, seen_n;

static const char *
hdr_value(const char *msg, const char *end, const char *name, const char *compact, size_t *len)
{
    for (const char *p = strstr(msg, "\r\n"); p && p + 2 < end; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2, *v = NULL;
        size_t nl = strlen(name);
        if (line[0] == '\r')
            return NULL;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':')
            v = line + nl + 1;
        else if (strncasecmp(line, compact, 1) == 0 && line[1] == ':')
            v = line + 2;
        if (v) {
            while (*v == ' ' || *v == '\t')
                v++;
            *len = strcspn(v, "\r");
            return v;
        }
    }
    return NULL;
}

/* true the first time (Call-ID, CSeq) of <msg> is seen */
static bool
first_time(const char *msg, size_t len)
{
    size_t cl = 0, sl = 0;
    const char *c = hdr_value(msg, msg + len, "call-id", "i", &cl);
    const char *q = hdr_value(msg, msg + len, "cseq", "\x01", &sl);
    uint64_t h = 1469598103934665603ull;

    if (c == NULL || q == NULL)
        return true;
    for (size_t i = 0; i < cl; i++)
        h = (h ^ (unsigned char)c[i]) * 1099511628211ull;
    h = (h ^ ' ') * 1099511628211ull;
    for (size_t i = 0; i < sl; i++)
        h = (h ^ (unsigned char)q[i]) * 1099511628211ull;
    if (h == 0)
        h = 1;
    if (seen_n * 2 >= seen_cap) {   /* grow and rehash */
        size_t ncap = seen_cap ? seen_cap * 2 : 1u << 20;
        uint64_t *nt = calloc(ncap, sizeof *nt);
        if (nt == NULL)
            die("out of memory");
        for (size_t i = 0; i < seen_cap; i++)
            if (seen[i])
                for (size_t j = seen[i] & (ncap - 1);; j = (j + 1) & (ncap - 1))
                    if (nt[j] == 0) {
                        nt[j] = seen[i];
                        break;
                    }
        free(seen);
        seen = nt;
        seen_cap = ncap;
    }
    for (size_t j = h & (seen_cap - 1);; j = (j + 1) & (seen_cap - 1)) {
        if (seen[j] == h)
            return false;
        if (seen[j] == 0) {
            seen[j] = h;
            seen_n++;
            return true;
        }
    }
}

/* Copies the header lines named <names> (with compact forms) of <msg> into <out>. */
static size_t
copy_headers(const char *msg, const char *end, char *out, size_t cap)
{
    static const char *const names[] = {"via:", "v:", "from:", "f:", "to:", "t:", "call-id:", "i:", "cseq:"};
    const char *p = strstr(msg, "\r\n");
    size_t n = 0;

    while (p && p + 2 < end) {
        const char *line = p + 2, *le = strstr(line, "\r\n");
        if (le == NULL || le == line)
            break;   /* end of headers */
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            size_t nl = strlen(names[k]);
            if (strncasecmp(line, names[k], nl) == 0 ||
                (strncasecmp(line, names[k], nl - 1) == 0 && (line[nl - 1] == ' ' || line[nl - 1] == '\t'))) {
                if (n + (size_t)(le - line) + 2 < cap) {
                    memcpy(out + n, line, (size_t)(le - line) + 2);
                    n += (size_t)(le - line) + 2;
                }
                break;
            }
        }
        p = le;
    }
    return n;
}

static void
on_request(int sock, char *msg, size_t len, const struct sockaddr_in *from)
{
    char resp[8192];
    size_t n;
    double t = now();

    if (strncmp(msg, "NOTIFY ", 7) == 0 && !first_time(msg, len)) {
        G.notify_dups++;
    } else if (strncmp(msg, "NOTIFY ", 7) == 0) {
        G.notifies++;
        G.last_notify = t;
        if (memmem(msg, len, "bench-pub", 9)) {
            if (G.notify_marked++ == 0)
                G.first_marked = t;
            G.last_marked = t;
        }
        if (memmem(msg, len, "terminated", 10))
            G.notify_terminated++;
    }
    if (strncmp(msg, "ACK ", 4) == 0)
        return;
    n = (size_t)snprintf(resp, sizeof resp, "SIP/2.0 200 OK\r\n");
    n += copy_headers(msg, msg + len, resp + n, sizeof resp - n - 64);
    n += (size_t)snprintf(resp + n, sizeof resp - n, "Content-Length: 0\r\n\r\n");
    send_raw(sock, resp, n, from);
}

static void
on_response(char *msg)
{
    char *b = strstr(msg, "branch=z9hG4bK-b-");
    size_t i;
    unsigned gen;
    int code = atoi(msg + 8);

    if (b == NULL || sscanf(b + 17, "%zu-%u", &i, &gen) != 2 || i >= G.window)
        return;
    if (G.slots[i].text == NULL || G.slots[i].gen != gen || code < 200)
        return;
    if (code >= 200 && code < 300) {
        G.ok++;
        if (G.slots[i].target >= 0)
            G.watchers[G.slots[i].target]++;
    }
    else
        G.fail++;
    if (code / 100 < 7)
        G.codes[code / 100]++;
    if (code >= 300 && G.fail <= 5)
        fprintf(stderr, "presence_gen: answer %.60s\n", msg);
    slot_put(i);
}

static void
pump(int timeout_ms)
{
    struct pollfd pfd[MAX_SOCKS];
    static char buf[MAX_PKT + 1];

    for (int i = 0; i < G.nsock; i++) {
        pfd[i].fd = G.fds[i];
        pfd[i].events = POLLIN;
    }
    if (poll(pfd, (nfds_t)G.nsock, timeout_ms) <= 0)
        return;
    for (int i = 0; i < G.nsock; i++) {
        if (!(pfd[i].revents & POLLIN))
            continue;
        for (int k = 0; k < 256; k++) {   /* drain, bounded for fairness */
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(G.fds[i], buf, MAX_PKT, 0, (struct sockaddr *)&from, &fl);
            if (n <= 0)
                break;
            buf[n] = '\0';
            if (strncmp(buf, "SIP/2.0 ", 8) == 0)
                on_response(buf);
            else
                on_request(i, buf, (size_t)n, &from);
        }
    }
}

/* ------------------------------------------------------------------ phases */

typedef void produce_fn(long k);
static void produce_publish(long u);

static void
phase_reset(void)
{
    G.ok = G.fail = G.timeouts = G.retx = 0;
    memset(G.codes, 0, sizeof G.codes);
}

/* Sends <total> requests made by <fn>, at most <rate> per second and <window> at once,
 * then waits for their answers and for NOTIFYs to go quiet for <quiet> s. */
static double
run_phase(const char *name, long total, double rate, produce_fn *fn, double quiet)
{
    double t0 = now(), last_retx = t0, t_sent = 0;
    long sent = 0;

    phase_reset();
    while (now() - t0 < G.phase_timeout) {
        double t = now();
        long allowed = rate > 0 ? (long)((t - t0) * rate) + 1 : total;
        while (sent < total && sent < allowed && G.outstanding < G.window &&
               (fn != produce_publish || G.owed - G.notify_marked < G.notify_backlog)) {
            fn(sent++);
            if ((sent & 63) == 0)
                pump(0);
        }
        if (sent == total && t_sent == 0)
            t_sent = now();
        pump(sent < total ? 1 : 20);
        if (now() - last_retx > 0.25) {
            retransmit();
            last_retx = now();
        }
        if (sent == total && G.outstanding == 0 && now() - G.last_notify >= quiet)
            break;
    }
    double el = now() - t0;
    fprintf(stdout, "phase=%s requests=%ld ok=%ld failed=%ld timeouts=%ld retransmissions=%ld "
                    "send_s=%.2f total_s=%.2f rate=%.0f/s notifies=%ld\n",
            name, sent, G.ok, G.fail, G.timeouts, G.retx, t_sent ? t_sent - t0 : el, el,
            t_sent ? (double)sent / (t_sent - t0) : 0.0, G.notifies);
    fflush(stdout);
    if (sent < total || G.outstanding)
        fprintf(stderr, "presence_gen: phase %s hit the time limit (%ld of %ld sent, %zu outstanding)\n", name,
                sent, total, G.outstanding);
    return el;
}

static long
contact_of(long user, long k)
{
    return (user + 1 + k) % G.users;
}

static void
produce_service(long u)
{
    static char *body;
    size_t cap = (size_t)G.contacts * 80 + 256, n;

    if (body == NULL && (body = malloc(cap)) == NULL)
        die("out of memory");
    n = (size_t)sprintf(body, "<service xmlns=\"urn:parley:params:xml:ns:contacts\" version=\"0\">");
    for (long k = 0; k < G.contacts; k++)
        n += (size_t)sprintf(body + n, "<set-contact uri=\"sip:u%ld@%s\"/>", contact_of(u, k), G.domain);
    sprintf(body + n, "</service>");
    send_req(u, body,
             "SERVICE sip:u%ld@%s SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:u%ld@%s>;tag=sv%ld\r\n"
             "To: <sip:u%ld@%s>\r\nCall-ID: sv%ld@bench\r\nCSeq: 1 SERVICE\r\n"
             "Content-Type: application/vnd-parley-service+xml\r\n",
             u, G.domain, u, G.domain, u, u, G.domain, u);
}

static void
produce_register(long u)
{
    send_req(u, NULL,
             "REGISTER sip:%s SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:u%ld@%s>;tag=rg%ld\r\n"
             "To: <sip:u%ld@%s>\r\nCall-ID: rg%ld@bench\r\nCSeq: 1 REGISTER\r\n"
             "Contact: <sip:u%ld@127.0.0.1:%d>\r\nExpires: 7200\r\n",
             G.domain, u, G.domain, u, u, G.domain, u, u, G.ports[u % G.nsock]);
}

static void
produce_subscribe(long k)
{
    long u = k / G.contacts, t = contact_of(u, k % G.contacts);

    G.cur_target = t;
    send_req(u, NULL,
             "SUBSCRIBE sip:u%ld@%s SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:u%ld@%s>;tag=sb%ld\r\n"
             "To: <sip:u%ld@%s>\r\nCall-ID: sb%ld@bench\r\nCSeq: 1 SUBSCRIBE\r\n"
             "Contact: <sip:u%ld@127.0.0.1:%d>\r\nEvent: presence\r\nAccept: application/pidf+xml\r\n"
             "Expires: 7200\r\n",
             t, G.domain, u, G.domain, k, t, G.domain, k, u, G.ports[u % G.nsock]);
    G.cur_target = -1;
}

static void
produce_publish(long u)
{
    char body[1024];

    G.owed += G.watchers[u];
    snprintf(body, sizeof body,
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" "
             "xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" "
             "entity=\"sip:u%ld@%s\"><tuple id=\"t%ld\"><status><basic>open</basic></status>"
             "<note>bench-pub</note></tuple><dm:person id=\"p%ld\"><rpid:activities><rpid:away/>"
             "</rpid:activities></dm:person></presence>",
             u, G.domain, u, u);
    send_req(u, body,
             "PUBLISH sip:u%ld@%s SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:u%ld@%s>;tag=pb%ld\r\n"
             "To: <sip:u%ld@%s>\r\nCall-ID: pb%ld@bench\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\n"
             "Expires: 7200\r\nContent-Type: application/pidf+xml\r\n",
             u, G.domain, u, G.domain, u, u, G.domain, u);
}

/* ------------------------------------------------------------------ main */

static void
open_sockets(void)
{
    for (int i = 0; i < G.nsock; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t al = sizeof a;
        int sz = 16 * 1024 * 1024;
        int fd = socket(AF_INET, SOCK_DGRAM, 0);

        if (fd < 0)
            die("socket: %s", strerror(errno));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &al) != 0)
            die("bind: %s", strerror(errno));
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) != 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) != 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        G.fds[i] = fd;
        G.ports[i] = ntohs(a.sin_port);
    }
}

static const char *
arg(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        die("%s needs a value", argv[*i]);
    return argv[++*i];
}

int
main(int argc, char **argv)
{
    const char *server = "127.0.0.1:16300";
    long rss0, pss0, rss1, pss1, rss2, pss2;
    double cpu0, cpu1, t_pub;
    long expected;

    G.domain = "example.com";
    G.users = 10000;
    G.contacts = 50;
    G.nsock = 16;
    G.window = 2000;
    G.sub_rate = 5000;
    G.pub_rate = 2000;
    G.reg_rate = 2000;
    G.svc_rate = 1000;
    G.phase_timeout = 900;
    G.notify_backlog = 500;
    G.provision = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--server") == 0)
            server = arg(argc, argv, &i);
        else if (strcmp(a, "--users") == 0)
            G.users = atol(arg(argc, argv, &i));
        else if (strcmp(a, "--contacts") == 0)
            G.contacts = atol(arg(argc, argv, &i));
        else if (strcmp(a, "--sockets") == 0)
            G.nsock = atoi(arg(argc, argv, &i));
        else if (strcmp(a, "--window") == 0)
            G.window = (size_t)atol(arg(argc, argv, &i));
        else if (strcmp(a, "--sub-rate") == 0)
            G.sub_rate = atof(arg(argc, argv, &i));
        else if (strcmp(a, "--pub-rate") == 0)
            G.pub_rate = atof(arg(argc, argv, &i));
        else if (strcmp(a, "--notify-backlog") == 0)
            G.notify_backlog = atol(arg(argc, argv, &i));
        else if (strcmp(a, "--pid") == 0)
            G.pid = atoi(arg(argc, argv, &i));
        else if (strcmp(a, "--domain") == 0)
            G.domain = arg(argc, argv, &i);
        else if (strcmp(a, "--phase-timeout") == 0)
            G.phase_timeout = atof(arg(argc, argv, &i));
        else if (strcmp(a, "--no-provision") == 0)
            G.provision = false;
        else if (strcmp(a, "--kamailio") == 0)
            G.kamailio = true, G.provision = false;
        else
            die("unknown option %s (see the comment at the top of presence_gen.c)", a);
    }
    if (G.users < 2 || G.contacts < 1 || G.contacts >= G.users || G.nsock < 1 || G.nsock > MAX_SOCKS ||
        G.window < 1 || G.sub_rate <= 0 || G.pub_rate <= 0)
        die("bad scale: users >= 2, 1 <= contacts < users, 1..%d sockets, window >= 1, rates > 0", MAX_SOCKS);
    {
        char host[64];
        int port;
        if (sscanf(server, "%63[^:]:%d", host, &port) != 2 || inet_pton(AF_INET, host, &G.server.sin_addr) != 1)
            die("--server wants IPv4:PORT");
        G.server.sin_family = AF_INET;
        G.server.sin_port = htons((uint16_t)port);
    }
    G.slots = calloc(G.window, sizeof *G.slots);
    G.freelist = calloc(G.window, sizeof *G.freelist);
    G.watchers = calloc((size_t)G.users, sizeof *G.watchers);
    G.cur_target = -1;
    if (G.slots == NULL || G.freelist == NULL || G.watchers == NULL)
        die("out of memory");
    for (size_t i = 0; i < G.window; i++)
        G.freelist[G.nfree++] = G.window - 1 - i;
    open_sockets();
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("config users=%ld contacts=%ld subscriptions=%ld sockets=%d window=%zu sub_rate=%.0f pub_rate=%.0f "
           "notify_backlog=%ld\n",
           G.users, G.contacts, G.users * G.contacts, G.nsock, G.window, G.sub_rate, G.pub_rate, G.notify_backlog);

    if (G.provision)
        run_phase("provision", G.users, G.svc_rate, produce_service, 0.5);
    run_phase("register", G.users, G.reg_rate, produce_register, 1.0);
    mem_of(G.pid, &rss0, &pss0);
    run_phase("subscribe", G.users * G.contacts, G.sub_rate, produce_subscribe, 3.0);
    mem_of(G.pid, &rss1, &pss1);
    long sub_ok = G.ok, sub_fail = G.fail + G.timeouts;
    long initial_notifies = G.notifies;

    G.notify_marked = 0;
    expected = 0;   /* one NOTIFY per subscription that was accepted */
    for (long u = 0; u < G.users; u++)
        expected += G.watchers[u];
    cpu0 = cpu_of(G.pid);
    t_pub = now();
    run_phase("publish", G.users, G.pub_rate, produce_publish, 5.0);
    /* NOTIFYs may still trickle in (retransmissions of lost ones): wait until all marked ones came or 30 s quiet */
    while (G.notify_marked < expected && now() - G.last_marked < 30 && now() - t_pub < G.phase_timeout)
        pump(50);
    cpu1 = cpu_of(G.pid);
    mem_of(G.pid, &rss2, &pss2);
    double span = G.last_marked - G.first_marked;
    long pub_ok = G.ok;
    printf("result subscriptions_ok=%ld subscriptions_failed=%ld initial_notifies=%ld publishes_ok=%ld "
           "notifies_after_publish=%ld expected=%ld span_s=%.3f notify_rate=%.0f/s "
           "publish_to_last_notify_s=%.3f notify_retransmissions_received=%ld\n",
           sub_ok, sub_fail, initial_notifies, pub_ok, G.notify_marked, expected, span,
           span > 0 ? (double)G.notify_marked / span : 0.0, G.last_marked - t_pub, G.notify_dups);
    printf("memory rss_kb_before=%ld pss_kb_before=%ld rss_kb_after_subs=%ld pss_kb_after_subs=%ld "
           "rss_kb_after_publish=%ld pss_kb_after_publish=%ld pss_bytes_per_sub=%.0f\n",
           rss0, pss0, rss1, pss1, rss2, pss2,
           sub_ok > 0 && pss0 >= 0 ? (double)(pss1 - pss0) * 1024.0 / (double)sub_ok : -1.0);
    printf("cpu server_cpu_s_publish_phase=%.2f us_per_notify=%.1f\n", cpu1 - cpu0,
           G.notify_marked > 0 && cpu0 >= 0 ? (cpu1 - cpu0) * 1e6 / (double)G.notify_marked : -1.0);
    return G.notify_marked >= expected * 99 / 100 && sub_ok >= expected * 99 / 100 ? 0 : 3;
}
