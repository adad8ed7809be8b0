#!/usr/bin/env python3
"""Small SIP/TCP helpers for the fault tests (standard library only, 127.0.0.1 only).

  sipclient.py burst HOST:PORT N [--method M] [--auth-unknown] [--user U]
      sends N requests over UDP as fast as possible from one socket, waits up to 3 s for
      the answers and prints one JSON object: {"codes": {"200": n, ...}, "retry_after": [..]};
      flood protection's 503s count as "503 Rate Limited" / "503 Banned", and retry_after
      lists their Retry-After values. --auth-unknown adds digest credentials of an
      unknown user (a failed authentication for the server).
  sipclient.py idle HOST:PORT N SECONDS
      opens N TCP connections and keeps them open and silent; prints "open <n>" once
      they are established (n may be lower if the server refused some), then sleeps.
  sipclient.py silent PORT SECONDS
      listens on 127.0.0.1:PORT (TCP), accepts everything, reads and never answers.
"""
import json
import random
import select
import socket
import sys
import time


def request(method, user, domain, port, lport, i, auth_unknown):
    branch = "z9hG4bK%08x%d" % (random.getrandbits(32), i)
    ruri = "sip:%s" % domain if method == "REGISTER" else "sip:%s@%s" % (user, domain)
    hdrs = [
        "%s %s SIP/2.0" % (method, ruri),
        "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport" % (lport, branch),
        "Max-Forwards: 70",
        "From: <sip:%s@%s>;tag=f%d" % (user, domain, i),
        "To: <sip:%s@%s>" % (user, domain),
        "Call-ID: flood-%d-%d@127.0.0.1" % (lport, i),
        "CSeq: %d %s" % (i + 1, method),
        "Contact: <sip:%s@127.0.0.1:%d>" % (user, lport),
        "Expires: 600",
    ]
    if auth_unknown:
        hdrs.append('Authorization: Digest username="nobody%d", realm="%s", nonce="bm9uY2U", '
                    'uri="sip:%s", response="%s", algorithm=MD5' % (i, domain, domain, "0" * 32))
    hdrs.append("Content-Length: 0")
    return ("\r\n".join(hdrs) + "\r\n\r\n").encode()


def burst(args):
    host, port = args[0].rsplit(":", 1)
    n = int(args[1])
    method, user, auth_unknown = "REGISTER", "flooder", False
    rest = args[2:]
    while rest:
        a = rest.pop(0)
        if a == "--method":
            method = rest.pop(0)
        elif a == "--user":
            user = rest.pop(0)
        elif a == "--auth-unknown":
            auth_unknown = True
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    lport = s.getsockname()[1]
    for i in range(n):
        s.sendto(request(method, user, "example.com", int(port), lport, i, auth_unknown), (host, int(port)))
    codes, retry, seen = {}, [], set()
    deadline = time.time() + 3
    while time.time() < deadline and len(seen) < n:
        r, _, _ = select.select([s], [], [], 0.2)
        if not r:
            continue
        data = s.recv(65535).decode(errors="replace")
        lines = data.split("\r\n")
        code = lines[0].split(" ")[1]
        if code == "100":
            continue
        cseq = next((l for l in lines if l.lower().startswith("cseq:")), "")
        if cseq in seen:
            continue   # a retransmission of a final answer
        seen.add(cseq)
        reason = lines[0].split(" ", 2)[2] if lines[0].count(" ") >= 2 else ""
        if code == "503" and reason in ("Rate Limited", "Banned"):
            code = "503 " + reason   # flood protection's answers, told apart from other 503s
        codes[code] = codes.get(code, 0) + 1
        for l in lines:
            if code.startswith("503 ") and l.lower().startswith("retry-after:"):
                retry.append(int(l.split(":", 1)[1].strip().split(";")[0].split(" ")[0]))
    print(json.dumps({"codes": codes, "retry_after": retry}))


def idle(args):
    host, port = args[0].rsplit(":", 1)
    n, hold = int(args[1]), float(args[2])
    socks = []
    for _ in range(n):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            c.settimeout(2)
            c.connect((host, int(port)))
            socks.append(c)
        except OSError:
            c.close()
    print("open %d" % len(socks), flush=True)
    time.sleep(hold)


def silent(args):
    port, hold = int(args[0]), float(args[1])
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    conns = [ls]
    end = time.time() + hold
    while time.time() < end:
        r, _, _ = select.select(conns, [], [], 0.2)
        for c in r:
            if c is ls:
                conns.append(ls.accept()[0])
            elif not c.recv(65536):
                conns.remove(c)
                c.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    {"burst": burst, "idle": idle, "silent": silent}[sys.argv[1]](sys.argv[2:])
