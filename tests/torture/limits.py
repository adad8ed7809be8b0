#!/usr/bin/env python3
"""Resource-limit checks against a running SIP server (parley-homeserver).

Each check sends something hostile, then an OPTIONS probe over UDP must still be
answered (the server is alive and serving):

  headers-udp      10,000 header lines in one datagram      -> 400 or 413
  headers-tcp      10,000 header lines on TCP, < 64 KiB      -> 400/413 or connection closed
  headers-tcp-big  10,000 long header lines on TCP (320 KiB) -> 413 or connection closed
  body-10m         10 MB body on TCP                         -> connection closed, RSS growth bounded
  idle-conns       5,000 idle TCP connections (--idle-conns): all held by the server, RSS
                   growth under IDLE_BYTES_PER_CONN per connection, and meanwhile another
                   user REGISTERs over UDP (200) and gets a MESSAGE over a new TCP
                   connection delivered (200 end to end)    -> all hold
  over-max         --max-conns connections open, then 100 more: each of those is closed by
                   the server at once, none of the first; after some close, a new TCP
                   connection is served again              -> all hold
  fd-exhaust       (only with --fd-limit, a server started with a low descriptor limit) that
                   limit + 100 connections: the server does not spin on accept (CPU < 50 %),
                   serves UDP, and accepts the waiting ones once 200 close -> all hold
  garbage-tcp      1 MiB of random bytes on TCP              -> connection closed
  garbage-crlf     random bytes containing CRLFCRLF on TCP   -> connection closed
  garbage-udp      random datagrams                          -> no answer needed, alive

Every wait is bounded (--wait, and a per-check deadline). Standard library only.
The last line printed is "N passed, M failed"; exit status 1 on any failure.

  tests/torture/limits.py --udp 127.0.0.1:5060 --tcp 127.0.0.1:5060 [--pid PID] [--max-conns N] [--only a,b]
"""

import argparse
import os
import random
import resource
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torture  # noqa: E402  (probe and response parsing)


def parse_addr(s):
    host, _, port = s.rpartition(':')
    return host, int(port)


def rss_kb(pid):
    """Resident set size of <pid> in KiB, or None when /proc is not readable."""
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


# Bound on the server's RSS growth per idle TCP connection (bytes): its connection
# record, libevent bufferevent with empty buffers and idle timer, table slots; the
# socket buffers are kernel memory, not RSS.
IDLE_BYTES_PER_CONN = 8192


def count_tcp_conns(pid, port):
    """Established TCP connections on local <port> held by process <pid> (/proc)."""
    inodes = set()
    try:
        for fd in os.listdir('/proc/%d/fd' % pid):
            try:
                link = os.readlink('/proc/%d/fd/%s' % (pid, fd))
            except OSError:
                continue
            if link.startswith('socket:['):
                inodes.add(link[8:-1])
    except OSError:
        return 0
    n = 0
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if (fields[3] == '01' and int(fields[1].rsplit(':', 1)[1], 16) == port
                            and fields[9] in inodes):
                        n += 1
        except OSError:
            continue
    return n


def cpu_seconds(pid):
    """User + system CPU time of <pid> in seconds (/proc/PID/stat)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def answer_200(req):
    """A 200 to request bytes <req>: its Via, From, To (tagged), Call-ID and CSeq."""
    end = torture.header_end(req)
    head = req[:end if end > 0 else len(req)]
    out = [b'SIP/2.0 200 OK']
    for ln in head.split(b'\r\n')[1:]:
        name = ln.split(b':', 1)[0].strip().lower()
        if name in (b'via', b'v', b'from', b'f', b'call-id', b'i', b'cseq'):
            out.append(ln)
        elif name in (b'to', b't'):
            out.append(ln if b';tag=' in ln else ln + b';tag=limits')
    return b'\r\n'.join(out) + b'\r\nContent-Length: 0\r\n\r\n'


def request(method, ruri, via_host, via_port, proto, cid, extra=b'', body=b'', clen=None):
    """A well-formed request with <extra> header lines before Content-Length."""
    head = ('%s %s SIP/2.0\r\n'
            'Via: SIP/2.0/%s %s:%d;branch=z9hG4bK%s;rport\r\n'
            'Max-Forwards: 70\r\n'
            'To: <%s>\r\n'
            'From: <sip:limits@example.com>;tag=l%d\r\n'
            'Call-ID: %s\r\n'
            'CSeq: 1 %s\r\n' % (method, ruri, proto, via_host, via_port, cid.replace('@', '.'),
                                ruri, random.randint(1, 1 << 30), cid, method)).encode()
    n = len(body) if clen is None else clen
    return head + extra + b'Content-Length: %d\r\n\r\n' % n + body


class Limits:
    def __init__(self, args):
        self.udp = parse_addr(args.udp)
        self.tcp = parse_addr(args.tcp)
        self.wait = args.wait
        self.pid = args.pid
        self.verbose = args.verbose
        self.drv = torture.Driver(self.udp, self.tcp, args.wait, 0, args.verbose)
        self.rng = random.Random(4475)
        self.ruri = 'sip:%s:%d' % self.udp
        self.idle_n = args.idle_conns
        self.max_conns = args.max_conns
        self.fd_limit = args.fd_limit

    def log(self, *a):
        if self.verbose:
            print(*a, file=sys.stderr)

    def cid(self, name):
        return 'limits-%s-%d-%d@127.0.0.1' % (name, os.getpid(), self.rng.randint(0, 1 << 30))

    # ---- helpers
    def udp_exchange(self, build):
        """Sends build(local_port) as one datagram; returns the final status or None."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(('127.0.0.1', 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            data, cid = build(s.getsockname()[1])
            s.sendto(data, self.udp)
            return self.drv._collect_udp(s, cid.encode())
        finally:
            s.close()

    def tcp_stream(self, chunks, deadline):
        """Writes <chunks> (an iterable of bytes) on a new connection while reading.
        Returns (responses as list of status codes, closed_by_server, bytes_written)."""
        c = socket.create_connection(self.tcp, timeout=self.wait)
        statuses, buf, closed, written = [], b'', False, 0
        try:
            c.setblocking(False)
            it = iter(chunks)
            pending = b''
            done_writing = False
            while time.monotonic() < deadline:
                if not pending and not done_writing:
                    pending = next(it, None)
                    if pending is None:
                        done_writing, pending = True, b''
                wl = [c] if pending else []
                r, w = torture.wait_io([c], wl, max(0.0, min(0.5, deadline - time.monotonic())))
                if r:
                    try:
                        chunk = c.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        chunk = None
                    except OSError:
                        closed = True
                        break
                    if chunk == b'':
                        closed = True
                        break
                    if chunk:
                        buf += chunk
                        while True:
                            p = torture.parse_response(buf)
                            if not p:
                                break
                            statuses.append(p[0])
                            buf = buf[p[2]:]
                if w and pending:
                    try:
                        n = c.send(pending)
                        written += n
                        pending = pending[n:]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        closed = True   # reset by the server while we were writing
                        break
                if done_writing and statuses and statuses[-1] >= 200 and not r:
                    break
            return statuses, closed, written
        finally:
            c.close()

    # ---- checks: each returns (ok, detail)
    def headers_udp(self):
        extra = b''.join(b'h%d:v\r\n' % (i % 10) for i in range(10000))
        cid = self.cid('hudp')

        def build(port):
            return request('OPTIONS', self.ruri, '127.0.0.1', port, 'UDP', cid, extra), cid
        st = self.udp_exchange(build)
        return st in (400, 413), 'got %s, want 400|413' % torture.fmt(st)

    def headers_tcp(self):
        extra = b''.join(b'h%d:v\r\n' % (i % 10) for i in range(10000))
        msg = request('OPTIONS', self.ruri, '127.0.0.1', 5060, 'TCP', self.cid('htcp'), extra)
        sts, closed, _ = self.tcp_stream([msg], time.monotonic() + self.wait * 2)
        ok = (sts and sts[0] in (400, 413)) or (not sts and closed)
        return ok, 'got %s closed=%s (%d bytes), want 400|413 or close' % (sts, closed, len(msg))

    def headers_tcp_big(self):
        extra = b''.join(b'X-Torture-Header-%05d: some value\r\n' % i for i in range(10000))
        msg = request('OPTIONS', self.ruri, '127.0.0.1', 5060, 'TCP', self.cid('hbig'), extra)
        chunks = (msg[i:i + 16384] for i in range(0, len(msg), 16384))
        sts, closed, written = self.tcp_stream(chunks, time.monotonic() + self.wait * 3)
        ok = (sts and sts[0] == 413) or (not sts and closed)
        return ok, 'got %s closed=%s after %d of %d bytes, want 413 or close' % (
            sts, closed, written, len(msg))

    def body_10m(self):
        size = 10 * 1024 * 1024
        before = rss_kb(self.pid) if self.pid else None
        head = request('MESSAGE', self.ruri, '127.0.0.1', 5060, 'TCP', self.cid('body'),
                       b'Content-Type: text/plain\r\n', b'', clen=size)
        block = b'x' * 65536

        def chunks():
            yield head
            for _ in range(size // len(block)):
                yield block
        t0 = time.monotonic()
        sts, closed, written = self.tcp_stream(chunks(), t0 + self.wait * 5)
        after = rss_kb(self.pid) if self.pid else None
        grow = (after - before) if before is not None and after is not None else None
        ok = closed and (not sts or sts[0] == 413) and (grow is None or grow < 8 * 1024)
        return ok, 'closed=%s after %d bytes in %.1fs, got %s, RSS growth %s KiB (limit 8192)' % (
            closed, written, time.monotonic() - t0, sts, grow)

    # ---- idle connections
    def _raise_nofile(self, want):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    def _open_idle(self, n, conns, seconds):
        """Appends up to n fresh TCP connections to conns (each connect bounded);
        returns an error text or None."""
        deadline = time.monotonic() + seconds
        for _ in range(n):
            if time.monotonic() > deadline:
                return 'only %d connections in %d s' % (len(conns), seconds)
            c = socket.create_connection(self.tcp, timeout=self.wait)
            conns.append(c)
        return None

    @staticmethod
    def _closed_by_peer(conns, wait):
        """How many of conns the server closed (EOF or reset) within <wait> seconds."""
        closed = set()
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            live = [c for c in conns if c.fileno() not in closed]
            if left <= 0 or not live:
                break
            r, _ = torture.wait_io(live, [], min(left, 0.2))
            for c in r:
                try:
                    if c.recv(1, socket.MSG_PEEK) == b'':
                        closed.add(c.fileno())
                except OSError:
                    closed.add(c.fileno())
        return len(closed)

    def _served(self):
        """Another user is served: REGISTER over UDP (contact = our own UDP socket)
        answered 200, then a MESSAGE to that AOR over a new TCP connection is delivered
        to the contact (we answer it 200) and the sender gets that 200.
        Returns (ok, detail)."""
        user = 'idle%d' % self.rng.randint(0, 1 << 30)
        uas = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            uas.bind(('127.0.0.1', 0))
            uport = uas.getsockname()[1]
            rcid = self.cid('reg')
            aor = 'sip:%s@example.com' % user
            reg = request('REGISTER', 'sip:example.com', '127.0.0.1', uport, 'UDP', rcid,
                          b'Contact: <sip:%s@127.0.0.1:%d>\r\nExpires: 300\r\n' % (
                              user.encode(), uport)).replace(
                b'To: <sip:example.com>', b'To: <' + aor.encode() + b'>')
            uas.sendto(reg, self.udp)
            st = self.drv._collect_udp(uas, rcid.encode())
            if st != 200:
                return False, 'REGISTER over UDP: got %s, want 200' % torture.fmt(st)
            msg = request('MESSAGE', aor, '127.0.0.1', 5060, 'TCP', self.cid('msg'),
                          b'Content-Type: text/plain\r\n', b'still served')
            c = socket.create_connection(self.tcp, timeout=self.wait)
            try:
                c.sendall(msg)
                delivered = False
                deadline = time.monotonic() + self.wait * 2
                buf = b''
                status = None
                c.setblocking(False)
                while time.monotonic() < deadline and status is None:
                    r, _ = torture.wait_io([uas, c], [], 0.2)
                    if uas in r:
                        data, src = uas.recvfrom(65536)
                        if data.startswith(b'MESSAGE ') and b'still served' in data:
                            delivered = True
                            uas.sendto(answer_200(data), src)
                    if c in r:
                        chunk = c.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                        while True:
                            p = torture.parse_response(buf)
                            if not p:
                                break
                            buf = buf[p[2]:]
                            if p[0] >= 200:
                                status = p[0]
            finally:
                c.close()
            ok = delivered and status == 200
            return ok, 'REGISTER 200 over UDP, MESSAGE over TCP %s, sender got %s' % (
                'delivered' if delivered else 'NOT delivered', torture.fmt(status))
        finally:
            uas.close()

    def idle_conns(self):
        n = self.idle_n
        have = self._raise_nofile(n + 512)
        if have < n + 64:
            return False, 'descriptor limit %d too low for %d connections (ulimit -n)' % (have, n)
        conns = []
        before = rss_kb(self.pid) if self.pid else None
        try:
            err = self._open_idle(n, conns, 60)
            if err:
                return False, err
            # the server accepts asynchronously: wait (bounded) until it holds them all
            deadline = time.monotonic() + 10
            while self.pid and time.monotonic() < deadline and self.server_conns() < n:
                time.sleep(0.1)
            held = self.server_conns() if self.pid else None
            after = rss_kb(self.pid) if self.pid else None
            served, sdetail = self._served()
            udp_ok = self.drv.probe()
            dead = self._closed_by_peer(conns, 0.2)
            per = ((after - before) * 1024.0 / n) if before is not None and after is not None else None
            mem_ok = per is None or per < IDLE_BYTES_PER_CONN
            ok = dead == 0 and served and udp_ok and mem_ok and (held is None or held >= n)
            return ok, ('%d connections open (server holds %s), %d closed by server; RSS +%s KiB '
                        '= %s bytes/connection (bound %d); %s; UDP OPTIONS %s' % (
                            len(conns), held, dead,
                            (after - before) if per is not None else '?',
                            '%.0f' % per if per is not None else '?', IDLE_BYTES_PER_CONN,
                            sdetail, 'answered' if udp_ok else 'NOT answered'))
        except OSError as e:
            return False, 'after %d connections: %s' % (len(conns), e)
        finally:
            for c in conns:
                c.close()

    def over_max(self):
        """With the server's --max-connections (self.max_conns) reached, further
        connections are closed at once by the server; those below it stay open; the
        server keeps serving, and accepts again once connections are gone."""
        if not self.max_conns or not self.pid:
            return False, 'needs --max-conns and --pid'
        extra = 100
        have = self._raise_nofile(self.max_conns + extra + 512)
        if have < self.max_conns + extra + 64:
            return False, 'descriptor limit %d too low (ulimit -n)' % have
        base, over = [], []
        try:
            # wait (bounded) for the previous checks' connections to be gone (slow on a
            # loaded machine: the server closes what its peers left half-written)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.server_conns() > 0:
                time.sleep(0.1)
            before = self.server_conns()
            if before:
                return False, '%d connections of the previous checks still open after 30 s' % before
            err = self._open_idle(self.max_conns, base, 60)
            if err:
                return False, err
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.server_conns() < self.max_conns:
                time.sleep(0.1)
            held = self.server_conns()
            err = self._open_idle(extra, over, 20)
            if err:
                return False, err
            refused = self._closed_by_peer(over, 3)
            dropped = self._closed_by_peer(base, 0.2)
            udp_ok = self.drv.probe()
            for c in base[:extra]:
                c.close()
            del base[:extra]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.server_conns() > self.max_conns - extra:
                time.sleep(0.1)
            msg = request('OPTIONS', self.ruri, '127.0.0.1', 5060, 'TCP', self.cid('again'))
            sts, _, _ = self.tcp_stream([msg], time.monotonic() + self.wait * 2)
            again = bool(sts) and sts[-1] == 200
            ok = held == self.max_conns and refused == extra and dropped == 0 and udp_ok and again
            return ok, ('max %d: server held %s, %d of %d more closed by the server, %d of the first '
                        'closed, UDP OPTIONS %s, after freeing %d: TCP OPTIONS %s' % (
                            self.max_conns, held, refused, extra, dropped,
                            'answered' if udp_ok else 'NOT answered', extra, sts))
        except OSError as e:
            return False, 'after %d+%d connections: %s' % (len(base), len(over), e)
        finally:
            for c in base + over:
                c.close()

    def fd_exhaust(self):
        """The server runs out of descriptors (its limit is --fd-limit, far below its
        max-connections): connections beyond wait in the backlog; the server must not spin
        on the failing accept (CPU time bounded), keeps serving UDP, and accepts the
        waiting connections once descriptors are free again."""
        if not self.fd_limit or not self.pid:
            return False, 'needs --fd-limit and --pid'
        n = self.fd_limit + 100
        self._raise_nofile(n + 512)
        conns = []
        try:
            err = self._open_idle(n, conns, 30)
            if err:
                return False, err
            deadline = time.monotonic() + 5
            held = 0
            while time.monotonic() < deadline:
                held = self.server_conns()
                if held >= self.fd_limit - 64:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            cpu0, t0 = cpu_seconds(self.pid), time.monotonic()
            time.sleep(2.0)
            cpu = cpu_seconds(self.pid) - cpu0
            wall = time.monotonic() - t0
            udp_ok = self.drv.probe()
            # free descriptors: the connections waiting in the backlog get accepted
            for c in conns[:200]:
                c.close()
            del conns[:200]
            want = len(conns)
            deadline = time.monotonic() + 10
            after = 0
            while time.monotonic() < deadline:
                after = self.server_conns()
                if after >= want:
                    break
                time.sleep(0.1)
            for c in conns:
                c.close()
            conns = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.server_conns() > 0:
                time.sleep(0.1)
            msg = request('OPTIONS', self.ruri, '127.0.0.1', 5060, 'TCP', self.cid('fds'))
            sts, _, _ = self.tcp_stream([msg], time.monotonic() + self.wait * 2)
            again = bool(sts) and sts[-1] == 200
            ok = held < n and cpu < 0.5 * wall and udp_ok and after >= want and again
            return ok, ('limit %d descriptors, %d connections: server held %d, CPU %.2f s in %.1f s '
                        'while out of descriptors (bound 50%%), UDP OPTIONS %s, after freeing 200 it '
                        'held %d of %d, then TCP OPTIONS %s' % (
                            self.fd_limit, n, held, cpu, wall,
                            'answered' if udp_ok else 'NOT answered', after, want, sts))
        except OSError as e:
            return False, 'after %d connections: %s' % (len(conns), e)
        finally:
            for c in conns:
                c.close()

    def server_conns(self):
        """TCP connections the server process holds (established, from /proc)."""
        return count_tcp_conns(self.pid, self.tcp[1])

    def garbage_tcp(self):
        data = bytes(self.rng.getrandbits(8) for _ in range(1 << 20)).replace(b'\r\n\r\n', b'xxxx')
        chunks = (data[i:i + 32768] for i in range(0, len(data), 32768))
        sts, closed, written = self.tcp_stream(chunks, time.monotonic() + self.wait * 3)
        return closed and not sts, 'closed=%s after %d bytes, responses %s' % (closed, written, sts)

    def garbage_crlf(self):
        data = bytes(self.rng.getrandbits(8) for _ in range(4096)) + b'\r\n\r\n' + \
            bytes(self.rng.getrandbits(8) for _ in range(4096))
        sts, closed, written = self.tcp_stream([data], time.monotonic() + self.wait * 2)
        return closed and not sts, 'closed=%s after %d bytes, responses %s' % (closed, written, sts)

    def garbage_udp(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for n in (1, 7, 100, 1500, 9000, 60000):
                s.sendto(bytes(self.rng.getrandbits(8) for _ in range(n)), self.udp)
            s.sendto(b'OPTIONS sip:x SIP/2.0\r\n\r\n', self.udp)
            s.sendto(b'\r\n\r\n', self.udp)
        finally:
            s.close()
        return True, 'sent 8 datagrams'


CHECKS = ['headers_udp', 'headers_tcp', 'headers_tcp_big', 'body_10m', 'idle_conns',
          'garbage_tcp', 'garbage_crlf', 'garbage_udp', 'over_max', 'fd_exhaust']


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--udp', required=True, help='server UDP address host:port')
    ap.add_argument('--tcp', required=True, help='server TCP address host:port')
    ap.add_argument('--pid', type=int, help='server PID (memory growth check via /proc)')
    ap.add_argument('--wait', type=float, default=3.0, help='seconds per exchange (default 3)')
    ap.add_argument('--idle-conns', type=int, default=5000,
                    help='idle TCP connections opened by idle-conns (default 5000)')
    ap.add_argument('--fd-limit', type=int, default=0,
                    help="the server's descriptor limit (fd-exhaust needs it)")
    ap.add_argument('--max-conns', type=int, default=0,
                    help="the server's --max-connections (over-max needs it)")
    ap.add_argument('--only', help='comma-separated check names (%s)' % ', '.join(CHECKS))
    ap.add_argument('-v', '--verbose', action='store_true')
    args = ap.parse_args()
    lim = Limits(args)
    names = [c for c in CHECKS if c != 'fd_exhaust' or args.fd_limit]
    if args.only:
        names = [n.replace('-', '_') for n in args.only.split(',')]
    if not lim.drv.probe(timeout=max(args.wait, 5)):
        print('FAIL server does not answer OPTIONS at %s:%d' % lim.udp)
        print('0 passed, 1 failed')
        return 1
    passed = failed = 0
    for name in names:
        fn = getattr(lim, name, None)
        if fn is None or name not in CHECKS:
            print('FAIL %-16s unknown check' % name)
            failed += 1
            continue
        t0 = time.monotonic()
        try:
            ok, detail = fn()
        except OSError as e:
            ok, detail = False, 'socket error: %s' % e
        alive = lim.drv.probe(timeout=max(args.wait, 5))
        ok = ok and alive
        print('%s %-16s %s%s (%.1fs)' % ('ok  ' if ok else 'FAIL', name.replace('_', '-'), detail,
                                         '' if alive else '; server no longer answers OPTIONS',
                                         time.monotonic() - t0))
        if ok:
            passed += 1
        else:
            failed += 1
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
