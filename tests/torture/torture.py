#!/usr/bin/env python3
"""Send the RFC 4475 / RFC 5118 torture messages to a running SIP server and
check each answer against tests/data/sip/torture/MANIFEST.tsv.

Modes
  udp       each message as one datagram
  tcp       each message as one write on a fresh connection
  tcp1      each message written one byte at a time on a fresh connection
  pipeline  several valid, framed, non-INVITE requests in one TCP write
  all       udp, tcp, tcp1 and pipeline

After every message an OPTIONS probe (UDP, to the server itself) checks that
the server is still alive; a message passes only if its answer matches the
manifest AND the probe is answered.

Via substitution (UDP only): a UDP response goes to the sent-by of the top Via
(RFC 3261 18.2.2), and the torture messages name hosts in 192.0.2.0/24. In UDP
mode the driver therefore replaces the host[:port] of the top Via's sent-by with
its own socket address; every other byte is sent as stored. Over TCP the
response comes back on the connection, so TCP modes send the file unchanged.
Responses (stray SIP/2.0 messages) are never rewritten.

Standard library only. Every wait is bounded (--wait per message).
The last line printed is "N passed, M failed"; exit status 1 on any failure.
"""

import argparse
import os
import random
import re
import select
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MANIFEST = os.path.join(HERE, '..', 'data', 'sip', 'torture', 'MANIFEST.tsv')
MAX_READ = 65536


# ------------------------------------------------------------------ waiting

def wait_io(rlist, wlist, timeout):
    """select.select() for any descriptor number (poll(2)): the limits checks hold
    thousands of sockets, beyond select's FD_SETSIZE. Returns (readable, writable);
    an error or hang-up counts as readable (the next recv reports it)."""
    p = select.poll()
    objs = {}
    for o in rlist:
        objs[o.fileno()] = o
        p.register(o, select.POLLIN)
    for o in wlist:
        objs[o.fileno()] = o
        p.register(o, (select.POLLIN if o in rlist else 0) | select.POLLOUT)
    r, w = [], []
    for fd, ev in p.poll(max(0.0, timeout) * 1000.0):
        o = objs[fd]
        if ev & (select.POLLIN | select.POLLERR | select.POLLHUP) and o in rlist:
            r.append(o)
        if ev & (select.POLLOUT | select.POLLERR | select.POLLHUP) and o in wlist:
            w.append(o)
    return r, w


# ---------------------------------------------------------------- manifest

class Case:
    def __init__(self, fields, base):
        (self.file, self.section, self.cls, self.expect_udp, self.expect_tcp,
         self.source, self.rationale) = fields
        self.name = self.file[:-4] if self.file.endswith('.sip') else self.file
        with open(os.path.join(base, self.file), 'rb') as f:
            self.data = f.read()

    @property
    def is_request(self):
        return not self.data.startswith(b'SIP/')


# Binaries under test; the manifest states the home server's answers, the others'
# differences are in tests/torture/expect-<kind>.tsv.
KINDS = ('homeserver', 'frontend', 'edge')
VALID_TOKENS = re.compile(r'^(\d{3}|ok|any|drop)$')


def load_manifest(path):
    base = os.path.dirname(os.path.abspath(path))
    cases = []
    errors = []
    with open(path, encoding='utf-8') as f:
        header = None
        for lineno, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line or line.startswith('#'):
                continue
            fields = line.split('\t')
            if header is None:
                header = fields
                if header[:5] != ['file', 'section', 'class', 'expect_udp', 'expect_tcp']:
                    errors.append('%s:%d: unexpected header %r' % (path, lineno, header))
                continue
            if len(fields) != 7:
                errors.append('%s:%d: %d fields, want 7' % (path, lineno, len(fields)))
                continue
            for exp in fields[3:5]:
                for tok in exp.split('|'):
                    if not VALID_TOKENS.match(tok):
                        errors.append('%s:%d: bad expectation %r' % (path, lineno, tok))
            if fields[2] not in ('valid', 'invalid', 'semantic', 'response'):
                errors.append('%s:%d: bad class %r' % (path, lineno, fields[2]))
            try:
                cases.append(Case(fields, base))
            except OSError as e:
                errors.append('%s:%d: %s' % (path, lineno, e))
    return cases, errors


def load_overrides(path, cases):
    """Applies a per-binary expectation file (tests/torture/expect-<kind>.tsv: file,
    expect_udp, expect_tcp, rationale) to <cases>. Returns a list of errors."""
    errors = []
    by_file = {c.file: c for c in cases}
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line or line.startswith('#'):
                continue
            fields = line.split('\t')
            if fields[0] == 'file':
                continue
            if len(fields) != 4:
                errors.append('%s:%d: %d fields, want 4' % (path, lineno, len(fields)))
                continue
            c = by_file.get(fields[0])
            if c is None:
                errors.append('%s:%d: %s is not in the manifest' % (path, lineno, fields[0]))
                continue
            for exp in fields[1:3]:
                for tok in exp.split('|'):
                    if not VALID_TOKENS.match(tok):
                        errors.append('%s:%d: bad expectation %r' % (path, lineno, tok))
            c.expect_udp, c.expect_tcp, c.rationale = fields[1], fields[2], fields[3]
    return errors


def check_expect(expect, status):
    """status: int final code, 0 = only provisional responses, None = nothing."""
    for tok in expect.split('|'):
        if tok == 'drop' and status is None:
            return True
        if tok == 'any' and status is not None:
            return True
        if tok == 'ok' and status is not None and status != 400:
            return True
        if tok.isdigit() and status == int(tok):
            return True
    return False


# ------------------------------------------------------- message handling

def header_end(buf):
    i = buf.find(b'\r\n\r\n')
    return -1 if i < 0 else i + 4


_HDR = re.compile(rb'^([A-Za-z0-9!%*_+`\'~.-]+)[ \t]*:[ \t]*(.*)$')


def headers_of(head):
    """Unfold and split a header section (bytes, CRLF lines). Returns a list
    of (lowercase name, value) and tolerates garbage."""
    lines = head.split(b'\r\n')[1:]
    out = []
    for ln in lines:
        if ln[:1] in (b' ', b'\t') and out:
            out[-1] = (out[-1][0], out[-1][1] + b' ' + ln.strip())
            continue
        m = _HDR.match(ln)
        if m:
            out.append((m.group(1).lower(), m.group(2).strip()))
    return out


def header(hdrs, *names):
    for n, v in hdrs:
        if n in names:
            return v
    return None


def call_id_of(data):
    end = header_end(data)
    head = data[:end if end > 0 else len(data)]
    v = header(headers_of(head), b'call-id', b'i')
    return v


_VIA_SENTBY = re.compile(
    rb'(SIP\s*/\s*[0-9.]+\s*/\s*[A-Za-z0-9]+\s+)(\[[0-9A-Fa-f:.]+\]|[^\s;:,]+)(\s*:\s*\d+)?')


def substitute_via(data, host, port):
    """Replace host[:port] in the top Via's sent-by (see module docstring)."""
    end = header_end(data)
    lim = end if end > 0 else len(data)
    m = re.search(rb'\r\n(via|v)[ \t]*:', data[:lim], re.IGNORECASE)
    if not m:
        return data
    s = _VIA_SENTBY.search(data, m.end(), lim)
    if not s:
        return data
    repl = ('%s:%d' % (host, port)).encode()
    return data[:s.start(2)] + repl + data[s.end(3) if s.group(3) else s.end(2):]


def parse_response(buf):
    """(status, call-id, total length) for one response at the start of buf,
    or None if incomplete. Only responses are expected from the server."""
    end = header_end(buf)
    if end < 0:
        return None
    head = buf[:end]
    m = re.match(rb'SIP/2\.0 (\d{3})', head)
    hdrs = headers_of(head)
    cl = header(hdrs, b'content-length', b'l')
    try:
        n = int(cl) if cl is not None else 0
    except ValueError:
        n = 0
    if len(buf) < end + n:
        return None
    status = int(m.group(1)) if m else -1
    return status, header(hdrs, b'call-id', b'i'), end + n


# ------------------------------------------------------------ transports

class Driver:
    def __init__(self, udp, tcp, wait, byte_delay, verbose):
        self.udp = udp
        self.tcp = tcp
        self.wait = wait
        self.byte_delay = byte_delay
        self.verbose = verbose
        self.seq = random.randint(1, 1 << 20)

    def log(self, *a):
        if self.verbose:
            print(*a, file=sys.stderr)

    # ---- probe
    def probe(self, timeout=None):
        """OPTIONS to the server itself over UDP; True if any final answer."""
        timeout = self.wait if timeout is None else timeout
        self.seq += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(('127.0.0.1', 0))
            lport = s.getsockname()[1]
            cid = 'probe-%d-%d@127.0.0.1' % (os.getpid(), self.seq)
            msg = ('OPTIONS sip:%s:%d SIP/2.0\r\n'
                   'Via: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bKprobe%d\r\n'
                   'Max-Forwards: 70\r\n'
                   'To: <sip:%s:%d>\r\n'
                   'From: <sip:torture@example.com>;tag=p%d\r\n'
                   'Call-ID: %s\r\n'
                   'CSeq: %d OPTIONS\r\n'
                   'Content-Length: 0\r\n\r\n' % (
                       self.udp[0], self.udp[1], lport, self.seq, self.udp[0],
                       self.udp[1], self.seq, cid, self.seq)).encode()
            deadline = time.monotonic() + timeout
            resend = 0.0
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now >= resend:
                    s.sendto(msg, self.udp)
                    resend = now + 0.5
                r, _ = wait_io([s], [], min(deadline, resend) - now)
                if not r:
                    continue
                data = s.recv(MAX_READ)
                p = parse_response(data)
                if p and p[0] >= 200 and p[1] == cid.encode():
                    return True
        finally:
            s.close()

    # ---- udp
    def send_udp(self, case):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(('127.0.0.1', 0))
            data = case.data
            if case.is_request:
                data = substitute_via(data, '127.0.0.1', s.getsockname()[1])
            s.sendto(data, self.udp)
            return self._collect_udp(s, call_id_of(case.data))
        finally:
            s.close()

    def _collect_udp(self, s, cid):
        deadline = time.monotonic() + self.wait
        prov = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return 0 if prov else None
            r, _ = wait_io([s], [], left)
            if not r:
                continue
            try:
                data = s.recv(MAX_READ)
            except OSError:
                continue
            p = parse_response(data)
            if not p:
                continue
            status, rcid, _ = p
            if cid is not None and rcid is not None and rcid != cid:
                continue
            if 100 <= status < 200:
                prov = True
                continue
            return status

    # ---- tcp
    def _connect(self):
        c = socket.create_connection(self.tcp, timeout=self.wait)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    def _write(self, c, data, one_byte):
        if not one_byte:
            c.sendall(data)
            return
        for i in range(len(data)):
            c.sendall(data[i:i + 1])
            if self.byte_delay:
                time.sleep(self.byte_delay)

    def _collect_tcp(self, c, want, deadline):
        """Read responses until every Call-ID in want (dict cid -> status) has a
        final status or the deadline passes. want[None] matches anything."""
        buf = b''
        c.setblocking(False)
        while True:
            while True:
                p = parse_response(buf)
                if not p:
                    break
                status, rcid, n = p
                buf = buf[n:]
                key = rcid if rcid in want else (None if None in want else rcid)
                if key not in want:
                    continue
                if 100 <= status < 200:
                    if want[key] is None:
                        want[key] = 0
                    continue
                if not want[key]:
                    want[key] = status
            if all(v not in (None, 0) for v in want.values()):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            r, _ = wait_io([c], [], left)
            if not r:
                continue
            try:
                chunk = c.recv(MAX_READ)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            if not chunk:
                return          # peer closed
            buf += chunk

    def send_tcp(self, case, one_byte=False):
        c = self._connect()
        try:
            deadline = time.monotonic() + self.wait
            try:
                self._write(c, case.data, one_byte)
            except OSError as e:
                self.log('  write failed: %s' % e)   # server closed early
            deadline = max(deadline, time.monotonic() + self.wait)
            cid = call_id_of(case.data)
            want = {cid: None}
            self._collect_tcp(c, want, deadline)
            return want[cid]
        finally:
            c.close()

    def send_pipeline(self, cases):
        c = self._connect()
        try:
            data = b''.join(x.data for x in cases)
            want = {call_id_of(x.data): None for x in cases}
            try:
                c.sendall(data)
            except OSError as e:
                self.log('  write failed: %s' % e)
            self._collect_tcp(c, want, time.monotonic() + self.wait * 2)
            return want
        finally:
            c.close()


def fmt(status):
    return 'nothing' if status is None else ('1xx only' if status == 0 else str(status))


def pipeline_ok(case):
    """Requests with valid framing whose answer should come promptly."""
    if not case.is_request or case.name == 'dblreq':
        return False
    if case.expect_tcp != 'ok' or case.data.startswith(b'INVITE'):
        return False
    cid = call_id_of(case.data)
    end = header_end(case.data)
    if cid is None or end < 0:
        return False
    hdrs = headers_of(case.data[:end])
    cl = header(hdrs, b'content-length', b'l')
    return cl is not None and cl.isdigit() and end + int(cl) == len(case.data)


_BRANCH = re.compile(rb'branch\s*=\s*([^;,\s]+)', re.IGNORECASE)


def txn_key(case):
    """RFC 3261 17.2.3 server-transaction key of a request sent as stored (TCP):
    top Via branch, sent-by and method. Two messages with the same key in flight
    at once are one transaction to the server (the second a retransmission)."""
    end = header_end(case.data)
    hdrs = headers_of(case.data[:end if end > 0 else len(case.data)])
    via = header(hdrs, b'via', b'v') or b''
    b = _BRANCH.search(via)
    s = _VIA_SENTBY.search(via)
    return (b.group(1) if b else None,
            (s.group(2) + (s.group(3) or b'').replace(b' ', b'')) if s else None,
            case.data.split(b' ', 1)[0])


def pipeline_groups(batch, size=4):
    """Groups of up to <size> cases with distinct transaction keys and distinct Call-IDs
    (the answers of a group are told apart by Call-ID: RFC 5118's messages share one),
    in order."""
    groups = []
    for c in batch:
        k = txn_key(c)
        cid = call_id_of(c.data)
        for g in groups:
            if len(g) < size and all(txn_key(x) != k and call_id_of(x.data) != cid for x in g):
                g.append(c)
                break
        else:
            groups.append([c])
    return groups


def run(args, cases):
    udp = parse_addr(args.udp) if args.udp else None
    tcp = parse_addr(args.tcp) if args.tcp else None
    modes = ['udp', 'tcp', 'tcp1', 'pipeline'] if args.mode == 'all' else [args.mode]
    if udp is None:
        print('--udp is required (the probe is sent over UDP)', file=sys.stderr)
        return 2
    if any(m != 'udp' for m in modes) and tcp is None:
        print('--tcp is required for mode %s' % args.mode, file=sys.stderr)
        return 2
    d = Driver(udp, tcp, args.wait, args.byte_delay, args.verbose)
    if args.only:
        cases = [c for c in cases if c.name in args.only.split(',')]
    if not d.probe(timeout=max(args.wait, 5)):
        print('FAIL server does not answer OPTIONS at %s:%d' % udp)
        print('0 passed, 1 failed')
        return 1
    passed = failed = 0
    for mode in modes:
        if mode == 'pipeline':
            batch = [c for c in cases if pipeline_ok(c)]
            for group in pipeline_groups(batch):
                got = d.send_pipeline(group)
                alive = d.probe()
                for c in group:
                    st = got.get(call_id_of(c.data))
                    ok = alive and st is not None and st != 400 and st != 0
                    tag = 'ok  ' if ok else 'FAIL'
                    print('%s pipeline %-28s got %-8s want final!=400%s' % (
                        tag, c.name, fmt(st), '' if alive else ' (server dead)'))
                    passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
            continue
        for c in cases:
            expect = c.expect_udp if mode == 'udp' else c.expect_tcp
            try:
                if mode == 'udp':
                    st = d.send_udp(c)
                else:
                    st = d.send_tcp(c, one_byte=(mode == 'tcp1'))
            except OSError as e:
                print('FAIL %-8s %-28s socket error: %s' % (mode, c.name, e))
                failed += 1
                continue
            alive = d.probe()
            ok = alive and check_expect(expect, st)
            print('%s %-8s %-28s got %-8s want %s%s' % (
                'ok  ' if ok else 'FAIL', mode, c.name, fmt(st), expect,
                '' if alive else ' (server no longer answers OPTIONS)'))
            if ok:
                passed += 1
            else:
                failed += 1
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


def parse_addr(s):
    host, _, port = s.rpartition(':')
    return host, int(port)


def self_test(cases, errors):
    """Check the manifest and the files, and the driver's own helpers."""
    passed = failed = 0

    def check(cond, what):
        nonlocal passed, failed
        if cond:
            passed += 1
        else:
            failed += 1
            print('FAIL ' + what)
    for e in errors:
        check(False, e)
    check(len(cases) == 61, 'manifest has %d messages, want 61 (49 RFC 4475 + 12 RFC 5118)' % len(cases))
    names = [c.name for c in cases]
    check(len(set(names)) == len(names), 'duplicate file in manifest')
    for c in cases:
        check(len(c.data) > 0, c.name + ': empty file')
        if not c.is_request:
            check(c.expect_udp == 'drop' and c.expect_tcp == 'drop',
                  c.name + ': responses must be expected to be dropped')
            continue
        check(b'\r\n' in c.data, c.name + ': no CRLF line ends')
        sub = substitute_via(c.data, '127.0.0.1', 40000)
        if re.search(rb'(?im)^(via|v)[ \t]*:', c.data):
            check(b'127.0.0.1:40000' in sub, c.name + ': Via sent-by not substituted')
            check(len(sub) - len(c.data) < 40, c.name + ': substitution changed too much')
    # helper unit checks
    check(check_expect('400|drop', None) and check_expect('400|drop', 400) and
          not check_expect('400|drop', 404), 'check_expect alternatives')
    check(check_expect('ok', 404) and not check_expect('ok', 400) and
          check_expect('ok', 0) and not check_expect('ok', None), 'check_expect ok')
    r = parse_response(b'SIP/2.0 404 Not Found\r\ni: abc\r\nl: 3\r\n\r\nxyzSIP/2.0')
    check(r == (404, b'abc', 42), 'parse_response compact forms: %r' % (r,))
    check(parse_response(b'SIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nab') is None,
          'parse_response waits for the body')
    groups = pipeline_groups([c for c in cases if pipeline_ok(c)])
    check(all(len({txn_key(x) for x in g}) == len(g) for g in groups),
          'pipeline groups hold distinct transactions')
    check(all(len({call_id_of(x.data) for x in g}) == len(g) for g in groups),
          'pipeline groups hold distinct Call-IDs')
    check(sum(len(g) for g in groups) == len([c for c in cases if pipeline_ok(c)]),
          'pipeline groups keep every case')
    w = [c for c in cases if c.name == 'wsinv']
    if w:
        s = substitute_via(w[0].data, '127.0.0.1', 5)
        check(b'\r\n    127.0.0.1:5;branch=390skdjuw' in s, 'wsinv folded Via substituted')
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--udp', help='server UDP address host:port')
    ap.add_argument('--tcp', help='server TCP address host:port')
    ap.add_argument('--mode', default='all', choices=['all', 'udp', 'tcp', 'tcp1', 'pipeline'])
    ap.add_argument('--manifest', default=DEFAULT_MANIFEST)
    ap.add_argument('--kind', default='homeserver', choices=KINDS,
                    help='binary under test: its expect-<kind>.tsv overrides the manifest')
    ap.add_argument('--wait', type=float, default=2.0, help='seconds to wait per message (default 2)')
    ap.add_argument('--byte-delay', type=float, default=0.0002,
                    help='pause between bytes in tcp1 mode (default 0.0002 s)')
    ap.add_argument('--only', help='comma-separated message names to run')
    ap.add_argument('--self-test', action='store_true', help='check manifest and files, no server')
    ap.add_argument('--probe-only', action='store_true',
                    help='send one OPTIONS probe; exit 0 if answered (readiness check)')
    ap.add_argument('-v', '--verbose', action='store_true')
    args = ap.parse_args()
    if args.probe_only:
        if not args.udp:
            ap.error('--probe-only needs --udp')
        return 0 if Driver(parse_addr(args.udp), None, args.wait, 0, False).probe() else 1
    cases, errors = load_manifest(args.manifest)
    if args.self_test:
        rc = self_test(cases, errors)
        for kind in KINDS[1:]:
            kc, ke = load_manifest(args.manifest)
            ke += load_overrides(os.path.join(HERE, 'expect-%s.tsv' % kind), kc)
            for e in ke:
                print('FAIL %s: %s' % (kind, e))
            rc = rc or (1 if ke else 0)
        return rc
    if args.kind != 'homeserver':
        errors += load_overrides(os.path.join(HERE, 'expect-%s.tsv' % args.kind), cases)
    if errors:
        for e in errors:
            print('FAIL ' + e)
        print('0 passed, %d failed' % len(errors))
        return 1
    return run(args, cases)


if __name__ == '__main__':
    sys.exit(main())
