#!/usr/bin/env python3
"""The routing application (homeserver/apps/routing.am) follows presence, end to end over UDP.

Usage: presence_routing.py CASE   (HS_BIN = the parley-homeserver binary)
Cases:
  away     alice has two endpoints; A publishes away, B open: bob's MESSAGE and INVITE reach
           B only; then B publishes away and A available: the next ones reach A only.
  tie      both endpoints publish open (no activity): a MESSAGE forks to both.
  offline  A publishes closed, B published nothing (online by registration): B gets it.
The home server runs on loopback (free ports, a temporary data directory) and is stopped by
PID, also on failure. The endpoints are python UAs (tests/integration/presence/sipua.py):
each registers and publishes from its own socket, which is how the presence agent matches a
publication to a binding (the flow it came from).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "presence"))
from sipua import UA, pidf, check, free_port  # noqa: E402

DOMAIN = "example.com"
CHAIN = os.path.join(HERE, "..", "..", "..", "homeserver", "apps", "chain.conf")


class Server:
    def __init__(self, tmp):
        self.tmp, self.port, self.admin = tmp, free_port(), free_port(socket.SOCK_STREAM)
        self.proc = None
        self.logf = None

    def start(self):
        self.logf = open(os.path.join(self.tmp, "homeserver.log"), "ab")
        self.proc = subprocess.Popen(
            [os.environ["HS_BIN"], "--listen", "udp:127.0.0.1:%d" % self.port, "--domain", DOMAIN,
             "--data-dir", os.path.join(self.tmp, "data"), "--admin", "127.0.0.1:%d" % self.admin,
             "--log-level", os.environ.get("HS_LOG_LEVEL", "debug"), "--min-expires", "1", "--app-chain", CHAIN],
            stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("homeserver exited with %d" % self.proc.returncode)
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % self.admin, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("homeserver not healthy")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.logf:
            self.logf.close()
            self.logf = None
        with open(os.path.join(self.tmp, "homeserver.log"), errors="replace") as f:
            text = f.read()
        if "Sanitizer" in text or "runtime error:" in text:
            raise AssertionError("sanitizer report in homeserver.log")


class Pump:
    """Answers whatever reaches the endpoints while the caller waits for its own answer."""

    def __init__(self, *uas):
        self.uas, self.stop, self.threads = uas, threading.Event(), []

    def __enter__(self):
        for ua in self.uas:
            t = threading.Thread(target=self._run, args=(ua,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def _run(self, ua):
        while not self.stop.is_set():
            ua._pump(0.05)

    def __exit__(self, *exc):
        time.sleep(0.5)   # a late fork branch would have arrived by now
        self.stop.set()
        for t in self.threads:
            t.join(2)


def got(ua, method, text=None):
    """The <method> requests <ua> received (with <text> in the body), and forgets them all."""
    hits = [m for m in ua.inbox if m.method == method and (text is None or text in m.body)]
    ua.inbox.clear()
    return hits


def send(bob, a, b, method, text, answer=200):
    """bob sends <method> to alice while A and B answer <answer>; returns (A got, B got, status)."""
    a.answer_code = b.answer_code = answer
    with Pump(a, b):
        if method == "MESSAGE":
            r = bob.message("alice@" + DOMAIN, text)
        else:
            r = bob.request("INVITE", "sip:alice@" + DOMAIN, [], body="v=0\r\ns=%s\r\n" % text,
                            ctype="application/sdp")
    return len(got(a, method, text)), len(got(b, method, text)), r.status


def endpoints(srv):
    a, b = UA("alice", DOMAIN, srv.port), UA("alice", DOMAIN, srv.port)
    a.register()
    b.register()
    return a, b, UA("bob", DOMAIN, srv.port)


def publish(ua, etag, basic="open", activity=None, tid="t"):
    r = ua.publish(pidf("alice@" + DOMAIN, basic, activity, tuple_id=tid + str(ua.port)), etag=etag)
    check(r.status == 200, "PUBLISH got %d" % r.status)
    return r.hdr("sip-etag")


def case_away(srv):
    a, b, bob = endpoints(srv)
    ea = publish(a, None, "open", "away")
    eb = publish(b, None, "open")
    na, nb, st = send(bob, a, b, "MESSAGE", "m1")
    check(st == 200 and (na, nb) == (0, 1), "A away, B open: MESSAGE reached A %d, B %d times (%d)" % (na, nb, st))
    na, nb, st = send(bob, a, b, "INVITE", "i1", answer=486)
    check(st == 486 and (na, nb) == (0, 1), "A away, B open: INVITE reached A %d, B %d times (%d)" % (na, nb, st))
    # B goes away (modify by entity-tag), A comes back
    publish(b, eb, "open", "away")
    publish(a, ea, "open")
    na, nb, st = send(bob, a, b, "MESSAGE", "m2")
    check(st == 200 and (na, nb) == (1, 0), "A open, B away: MESSAGE reached A %d, B %d times (%d)" % (na, nb, st))
    na, nb, st = send(bob, a, b, "INVITE", "i2", answer=486)
    check(st == 486 and (na, nb) == (1, 0), "A open, B away: INVITE reached A %d, B %d times (%d)" % (na, nb, st))
    # busy beats away (on-the-phone is busy, RFC 4480)
    publish(a, None, "open", "on-the-phone")
    na, nb, st = send(bob, a, b, "MESSAGE", "m3")
    check((na, nb) == (1, 0), "A on-the-phone, B away: MESSAGE reached A %d, B %d times" % (na, nb))


def case_tie(srv):
    a, b, bob = endpoints(srv)
    publish(a, None, "open")
    publish(b, None, "open")
    na, nb, st = send(bob, a, b, "MESSAGE", "t1")
    check(st == 200 and (na, nb) == (1, 1), "both open: MESSAGE reached A %d, B %d times (%d)" % (na, nb, st))


def case_offline(srv):
    a, b, bob = endpoints(srv)
    publish(a, None, "closed")
    na, nb, st = send(bob, a, b, "MESSAGE", "o1")
    check(st == 200 and (na, nb) == (0, 1),
          "A closed, B registered only: MESSAGE reached A %d, B %d times (%d)" % (na, nb, st))


CASES = {"away": case_away, "tie": case_tie, "offline": case_offline}


def main():
    case = sys.argv[1] if len(sys.argv) > 1 else ""
    fn = CASES.get(case)
    if fn is None:
        sys.stderr.write("usage: presence_routing.py %s\n" % "|".join(CASES))
        return 2
    tmp = tempfile.mkdtemp(prefix="parley-apps-presence-")
    srv = Server(tmp)
    ok = False
    try:
        srv.start()
        fn(srv)
        ok = True
        print("%s: ok" % case)
    finally:
        srv.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log = os.path.join(tmp, "homeserver.log")
            if os.path.exists(log):
                with open(log, errors="replace") as f:
                    sys.stderr.write("---- homeserver.log (last 60 lines) ----\n")
                    sys.stderr.write("".join(f.readlines()[-60:]))
            sys.stderr.write("logs kept in %s\n" % tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
