/*
 * tp_udp: UDP listeners. One non-blocking socket per listener, with 4 MiB kernel
 * buffers, read in batches of up to TP_UDP_BATCH datagrams per wakeup with
 * recvmmsg(). The same socket sends (RFC 3261 §18.1.1: responses and requests go
 * out from the port we listen on, so NATs and Via "rport" work).
 */
#define LOG_MODULE "tp"
#include "transport/tp_int.h"

#include "util/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/util.h>

/* Largest UDP payload is 65507 bytes; a slot never needs more than 64 KiB. */
static size_t
udp_slot(const struct tp *tp)
{
    return tp->lim.max_msg_size < 65536 ? tp->lim.max_msg_size : 65536;
}

/* A datagram of CR/LF only is a keep-alive some clients send over UDP; not a message. */
static bool
is_crlf_only(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\r' && buf[i] != '\n')
            return false;
    }
    return true;
}

static void
udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_listener *lis = arg;
    struct tp *tp = lis->tp;
    struct mmsghdr msgs[TP_UDP_BATCH];
    struct iovec iov[TP_UDP_BATCH];
    struct sockaddr_storage from[TP_UDP_BATCH];
    size_t slot = udp_slot(tp);
    int n;

    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < TP_UDP_BATCH; i++) {
        iov[i].iov_base = tp->udp_buf + (size_t)i * slot;
        iov[i].iov_len = slot;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    n = recvmmsg(fd, msgs, TP_UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            log_peer(LOG_WARN, "udp recvmmsg: %s", strerror(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        struct tp_rx rx;
        size_t len = msgs[i].msg_len;

        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            char peer[64];
            struct tp_addr src;
            memcpy(&src.ss, &from[i], sizeof src.ss);
            src.len = msgs[i].msg_hdr.msg_namelen;
            tp->stats.rx_oversize++;
            log_peer(LOG_DEBUG, "udp datagram from %s larger than %zu bytes dropped",
                     tp_addr_str(&src, peer, sizeof peer), slot);
            continue;
        }
        if (len == 0 || is_crlf_only(iov[i].iov_base, len))
            continue;
        memset(&rx, 0, sizeof rx);
        rx.buf = iov[i].iov_base;
        rx.len = len;
        rx.proto = TP_UDP;
        rx.lis = lis;
        rx.conn_id = 0;
        memcpy(&rx.src.ss, &from[i], sizeof rx.src.ss);
        rx.src.len = msgs[i].msg_hdr.msg_namelen;
        rx.local = lis->addr;
        tp_deliver(tp, &rx);
    }
}

static void
set_bufsize(int fd, int opt, const char *name)
{
    int size = TP_UDP_SOCKBUF;

    /* the kernel caps this at net.core.[rw]mem_max; not fatal */
    if (setsockopt(fd, SOL_SOCKET, opt, &size, sizeof size) != 0)
        log_warn("udp %s %d: %s", name, size, strerror(errno));
}

struct tp_listener *
tp_udp_listen(struct tp *tp, const struct tp_addr *addr)
{
    struct tp_listener *lis = NULL;
    char where[64];
    int fd = -1, one = 1;

    tp_addr_str(addr, where, sizeof where);
    if (tp->udp_buf == NULL) {
        tp->udp_buf = malloc(TP_UDP_BATCH * udp_slot(tp));
        if (tp->udp_buf == NULL) {
            log_err("udp listen %s: out of memory for receive buffers", where);
            goto err;
        }
    }
    fd = socket(addr->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_err("udp listen %s: socket: %s", where, strerror(errno));
        goto err;
    }
    if (addr->ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        log_warn("udp listen %s: IPV6_V6ONLY: %s", where, strerror(errno));
    set_bufsize(fd, SO_RCVBUF, "SO_RCVBUF");
    set_bufsize(fd, SO_SNDBUF, "SO_SNDBUF");
    if (tp_sock_reuse_port(tp, fd, where) != 0)
        goto err;
    if (bind(fd, (const struct sockaddr *)&addr->ss, tp_addr_socklen(addr)) != 0) {
        log_err("udp listen %s: bind: %s", where, strerror(errno));
        goto err;
    }
    lis = calloc(1, sizeof *lis);
    if (lis == NULL) {
        log_err("udp listen %s: out of memory", where);
        goto err;
    }
    lis->tp = tp;
    lis->proto = TP_UDP;
    lis->cls = TP_CLASS_CLIENT;
    lis->fd = fd;
    lis->addr.len = sizeof lis->addr.ss;
    if (getsockname(fd, (struct sockaddr *)&lis->addr.ss, &lis->addr.len) != 0) {
        log_err("udp listen %s: getsockname: %s", where, strerror(errno));
        goto err;
    }
    lis->ev = event_new(tp->base, fd, EV_READ | EV_PERSIST, udp_read_cb, lis);
    if (lis->ev == NULL || event_add(lis->ev, NULL) != 0) {
        log_err("udp listen %s: cannot add read event", where);
        goto err;
    }
    log_info("listening on udp %s", tp_addr_str(&lis->addr, where, sizeof where));
    return lis;
err:
    if (lis != NULL && lis->ev != NULL)
        event_free(lis->ev);
    free(lis);
    if (fd >= 0)
        close(fd);
    return NULL;
}

void
tp_udp_close(struct tp_listener *lis)
{
    if (lis->ev != NULL) {
        event_free(lis->ev);
        lis->ev = NULL;
    }
    if (lis->fd >= 0) {
        close(lis->fd);
        lis->fd = -1;
    }
}

int
tp_udp_send(struct tp *tp, const struct tp_addr *dst, const char *buf, size_t len)
{
    struct tp_listener *lis;
    char where[64];
    ssize_t n;

    for (lis = tp->listeners; lis != NULL; lis = lis->next) {
        if (lis->proto == TP_UDP && lis->fd >= 0 && lis->addr.ss.ss_family == dst->ss.ss_family)
            break;
    }
    if (lis == NULL) {
        log_peer(LOG_WARN, "udp send to %s: no UDP listener of that address family",
                 tp_addr_str(dst, where, sizeof where));
        tp->stats.send_fail++;
        return -1;
    }
    n = sendto(lis->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&dst->ss,
               tp_addr_socklen(dst));
    if (n < 0 || (size_t)n != len) {
        log_peer(LOG_WARN, "udp send of %zu bytes to %s: %s", len,
                 tp_addr_str(dst, where, sizeof where), n < 0 ? strerror(errno) : "short write");
        tp->stats.send_fail++;
        return -1;
    }
    tp->stats.tx_msgs++;
    tp->stats.tx_bytes += len;
    return 0;
}
