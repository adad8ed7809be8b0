#!/usr/bin/env python3
"""TLS load generator (the installed sipp has no TLS): fixed rate, bounded duration.

  tls_load.py MODE PORT CA CERT KEY RATE SECONDS [CALLEE_PREFIX N_CALLEES]
MODE: reg_l1   REGISTERs on one TLS connection
      reg_ln   one new TLS connection (full handshake) per REGISTER
      call_l1  INVITE / 200 / ACK / BYE / 200 on one TLS connection, callees
               CALLEE_PREFIX0..N-1@example.com (registered elsewhere, answering 200)
Prints "ok=<n> failed=<n> elapsed=<s> send_s=<s> cpu_s=<s> p50_ms=<ms> p99_ms=<ms>"; a
call/registration not completed 3 s after the last one was sent counts as failed. send_s is
the time taken to send every request (the offered rate is total / send_s: a generator that
cannot keep up stretches it), cpu_s this process's CPU time (its own cost per operation;
tests/bench/tls.sh derives the generator's ceiling from it), p50/p99 the response time of
REGISTER (request -> 200) or INVITE (INVITE -> 200).
"""
import os, re, select, socket, ssl, sys, threading, time

mode, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rate, secs = int(sys.argv[6]), float(sys.argv[7])
prefix = sys.argv[8] if len(sys.argv) > 8 else "c"
ncallees = int(sys.argv[9]) if len(sys.argv) > 9 else 100
total = int(rate * secs)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.check_hostname = False
ctx.load_cert_chain(cert, key)


def connect():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
    return s


def register(lport, i):
    return ("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bKr%d;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:u%d@example.com>;tag=t%d\r\nTo: <sip:u%d@example.com>\r\n"
            "Call-ID: r%d@load\r\nCSeq: 1 REGISTER\r\nContact: <sip:u%d@127.0.0.1:9;transport=udp>\r\n"
            "Expires: 3600\r\nContent-Length: 0\r\n\r\n") % (lport, i, i % 1000, i, i % 1000, i, i % 1000)


CONTENT_LENGTH = re.compile(rb"^Content-Length\s*:\s*(\d+)", re.M | re.I)


def frames(buf):
    """the complete messages at the start of buf (their headers, decoded) and the rest;
    linear in len(buf): a backlog of answers must not cost quadratic time"""
    out, pos, end = [], 0, len(buf)
    while True:
        e = buf.find(b"\r\n\r\n", pos)
        if e < 0:
            break
        head = buf[pos:e]
        m = CONTENT_LENGTH.search(head)
        n = int(m.group(1)) if m else 0
        if e + 4 + n > end:
            break
        out.append(head.decode(errors="replace"))
        pos = e + 4 + n
    return out, buf[pos:]


def hdr(msg, name):
    m = re.search(r"^%s\s*:\s*(.*?)\r?$" % name, msg, re.M | re.I)
    return m.group(1).strip() if m else ""


def cpu_s():
    t = os.times()
    return t.user + t.system


def pctl(vals, q):
    if not vals:
        return -1
    vals.sort()
    return vals[min(len(vals) - 1, int(round(q * (len(vals) - 1))))]


def report(ok, failed, start, send_s, lat):
    print("ok=%d failed=%d elapsed=%.1f send_s=%.2f cpu_s=%.2f p50_ms=%.1f p99_ms=%.1f" % (
        ok, failed, time.time() - start, send_s, cpu_s(), pctl(lat, 0.5) * 1e3, pctl(lat, 0.99) * 1e3))


def run_l1():
    s = connect()
    s.setblocking(False)
    lport = s.getsockname()[1]
    ok = failed = sent = 0
    pending = {}          # call-id -> state
    out = b""
    buf = b""
    sent_at = {}          # call-id -> time the REGISTER / INVITE was queued
    lat = []
    start = time.time()
    send_s = 0.0
    deadline = None
    while True:
        now = time.time()
        due = min(total, int((now - start) * rate) + 1)
        while sent < due:
            i = sent
            if mode == "reg_l1":
                out += register(lport, i).encode()
                pending["r%d@load" % i] = "reg"
                sent_at["r%d@load" % i] = now
            else:
                cid = "c%d@load" % i
                callee = "%s%d@example.com" % (prefix, i % ncallees)
                sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
                out += (("INVITE sip:%s SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bKi%d;rport\r\n"
                        "Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=f%d\r\nTo: <sip:%s>\r\n"
                        "Call-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:%d;transport=tls>\r\n"
                        "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s") % (
                    callee, lport, i, i, callee, cid, lport, len(sdp), sdp)).encode()
                pending[cid] = "inv"
                sent_at[cid] = now
            sent += 1
        if sent >= total and deadline is None and not out:
            deadline = now + 3
            send_s = now - start
        if deadline and (now > deadline or not pending):
            break
        if out:
            try:
                n = s.send(out)
                out = out[n:]
            except (ssl.SSLWantWriteError, BlockingIOError):
                pass
        # sleep until the next request is due (or an answer arrives), at most 10 ms
        wait = 0.0 if out else (min(0.01, start + sent / rate - time.time()) if sent < total else 0.01)
        r, _, _ = select.select([s], [s] if out else [], [], max(0.0005, wait))
        if not r and s.pending() == 0:
            continue
        # drain everything readable (one recv returns at most one TLS record): a loop that
        # reads less than the server answers leaves the answers queued in the kernel
        data, closed = b"", False
        try:
            while len(data) < 4 * 1024 * 1024:
                d = s.recv(262144)
                if not d:
                    closed = True
                    break
                data += d
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass
        if closed and not data:
            break
        if not data:
            continue
        buf += data
        msgs, buf = frames(buf)
        for m in msgs:
            if not m.startswith("SIP/2.0"):
                continue
            code = int(m.split(" ", 2)[1])
            cid = hdr(m, "Call-ID")
            meth = hdr(m, "CSeq").split()[-1]
            if cid not in pending or code < 200:
                continue
            if meth == "REGISTER" or meth == "BYE":
                if pending[cid] == "inv":   # a BYE's answer before the INVITE's 200: not ours
                    continue
                del pending[cid]
                if code == 200:
                    ok += 1
                    if meth == "REGISTER":
                        lat.append(time.time() - sent_at.pop(cid))
                else:
                    failed += 1
            elif meth == "INVITE":
                if pending[cid] != "inv":  # a retransmitted 200: the ACK was sent already
                    continue
                if code != 200:
                    del pending[cid]
                    failed += 1
                    continue
                lat.append(time.time() - sent_at.pop(cid))
                to = hdr(m, "To")
                contact = re.search(r"<([^>]*)>", hdr(m, "Contact")).group(1)
                # the route set is the Record-Route list reversed (RFC 3261 12.1.2); a proxy
                # with two transports (Kamailio's double Record-Route) adds two entries
                rr = []
                for x in re.findall(r"^Record-Route\s*:\s*(.*?)\r?$", m, re.M | re.I):
                    rr += [y.strip() for y in re.findall(r"<[^>]*>[^,]*", x)]
                route = "".join("Route: %s\r\n" % x for x in reversed(rr))
                i = cid[1:].split("@")[0]
                base = ("%%s %s SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bK%%s%s;rport\r\n%s"
                        "Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=f%s\r\nTo: %s\r\nCall-ID: %s\r\n"
                        "CSeq: %%d %%s\r\nContent-Length: 0\r\n\r\n") % (contact, lport, i, route, i, to, cid)
                out += (base % ("ACK", "a", 1, "ACK") + base % ("BYE", "b", 2, "BYE")).encode()
                pending[cid] = "bye"
    failed += len(pending) + (total - sent)
    report(ok, failed, start, send_s or (time.time() - start), lat)


def run_ln():
    res = {"ok": 0, "failed": 0, "last": 0.0}
    lat = []
    lock = threading.Lock()
    start = time.time()
    # each thread does one handshake + REGISTER at a time: enough threads that a
    # handshake taking ~100 ms on a loaded machine does not hold the rate back
    nthreads = max(4, min(256, rate))

    def worker(k):
        i = k
        while i < total:
            due = start + i / rate
            d = due - time.time()
            if d > 0:
                time.sleep(d)
            good = False
            t0 = time.time()
            try:
                s = connect()
                s.sendall(register(s.getsockname()[1], i).encode())
                buf = b""
                while True:
                    data = s.recv(65535)
                    if not data:
                        break
                    buf += data
                    msgs, buf = frames(buf)
                    fin = [m for m in msgs if int(m.split(" ", 2)[1]) >= 200]
                    if fin:
                        good = int(fin[0].split(" ", 2)[1]) == 200
                        break
                s.close()
            except (OSError, ssl.SSLError):
                pass
            with lock:
                res["ok" if good else "failed"] += 1
                res["last"] = max(res["last"], t0 - start)
                if good:
                    lat.append(time.time() - t0)
            i += nthreads

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(secs + 30)
    report(res["ok"], res["failed"], start, res["last"], lat)


if mode in ("reg_l1", "call_l1"):
    run_l1()
elif mode == "reg_ln":
    run_ln()
else:
    sys.exit(__doc__)
