#!/usr/bin/env python3
"""Presence, subscriptions and lists of parley-homeserver, end to end over UDP.

Usage: presence_test.py CASE   (HS_BIN = the parley-homeserver binary)
Each case starts its own home server on loopback (free ports, a temporary data
directory), waits for /healthz, runs, and stops the server by PID, also on failure.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sipua import UA, pidf  # noqa: E402

DOMAIN = "example.com"
LISTS_NS = "urn:parley:params:xml:ns:contacts"


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.admin = free_port()
        self.data = os.path.join(tmp, "data")
        self.proc = None
        self.log = None

    def start(self):
        self.log = open(os.path.join(self.tmp, "homeserver.log"), "ab")
        self.proc = subprocess.Popen(
            [os.environ["HS_BIN"], "--listen", "udp:127.0.0.1:%d" % self.port, "--domain", DOMAIN,
             "--data-dir", self.data, "--admin", "127.0.0.1:%d" % self.admin, "--log-level", "debug",
             "--min-expires", "1"],
            stdout=self.log, stderr=subprocess.STDOUT)
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

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill9()
        if self.log:
            self.log.close()
            self.log = None
        with open(os.path.join(self.tmp, "homeserver.log"), errors="replace") as f:
            text = f.read()
        # sanitizer builds: a report from the server fails the test
        if "Sanitizer" in text or "runtime error:" in text:
            raise AssertionError("sanitizer report in homeserver.log")


def basics(n):
    return re.findall(r"<basic>(\w+)</basic>", n.body)


def activity(n):
    m = re.search(r"<rpid:activities>\s*<rpid:(\w+)", n.body)
    return m.group(1) if m else None


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def list_doc(ops, version):
    return ('<?xml version="1.0"?><service xmlns="%s" version="%d">%s</service>' % (LISTS_NS, version, ops))


# ------------------------------------------------------------------ cases

def case_publish(srv):
    """alice publishes away -> bob's NOTIFY says away; a second endpoint joins the composition;
    refresh/modify/remove by entity-tag; expiry of a subscription and unsubscribe."""
    alice, alice2, bob = UA("alice", DOMAIN, srv.port), UA("alice", DOMAIN, srv.port), UA("bob", DOMAIN, srv.port)
    bob.register()
    r = bob.subscribe("alice@" + DOMAIN)
    check(r.status == 200, "SUBSCRIBE got %d" % r.status)
    check(r.hdr("expires") == "600", "Expires %s" % r.hdr("expires"))
    n = bob.wait_notify(lambda m: True, what="initial NOTIFY")
    check("active" in n.hdr("subscription-state"), "initial state %s" % n.hdr("subscription-state"))
    check(n.hdr("content-type") == "application/pidf+xml", "content type %s" % n.hdr("content-type"))
    check(basics(n) == ["closed"], "unregistered alice must be closed: %s" % basics(n))
    alice.register()
    n = bob.wait_notify(lambda m: basics(m) == ["open"], what="open after REGISTER")
    r = alice.publish(pidf("alice@" + DOMAIN, "open", "away", "gone for lunch"))
    check(r.status == 200 and r.hdr("sip-etag"), "PUBLISH got %d etag %s" % (r.status, r.hdr("sip-etag")))
    etag = r.hdr("sip-etag")
    n = bob.wait_notify(lambda m: activity(m) == "away", what="away")
    check("gone for lunch" in n.body, "note missing")
    check(len(basics(n)) == 1, "one endpoint, published: %s" % basics(n))
    alice2.register()
    n = bob.wait_notify(lambda m: len(basics(m)) == 2, what="two endpoints")
    check(activity(n) == "away" and alice2.contact in n.body, "composition: %s" % n.body)
    # refresh without body: new etag, same state
    r = alice.publish(None, etag=etag)
    check(r.status == 200 and r.hdr("sip-etag") != etag, "refresh %d" % r.status)
    r2 = alice.publish(None, etag=etag)
    check(r2.status == 412, "old etag must be 412, got %d" % r2.status)
    etag = r.hdr("sip-etag")
    r = alice.publish(pidf("alice@" + DOMAIN, "open", "busy"), etag=etag)
    check(r.status == 200, "modify %d" % r.status)
    bob.wait_notify(lambda m: activity(m) == "busy", what="busy")
    r = alice.publish(None, etag=r.hdr("sip-etag"), expires=0)
    check(r.status == 200, "remove %d" % r.status)
    n = bob.wait_notify(lambda m: activity(m) is None, what="after removal")
    check(len(basics(n)) == 2, "two registered endpoints remain: %s" % basics(n))
    # alice unregisters both: offline
    alice.register(0)
    alice2.register(0)
    bob.wait_notify(lambda m: basics(m) == ["closed"], what="closed after unregister")
    # refresh within the dialog, then unsubscribe -> terminated NOTIFY
    r2 = bob.subscribe("alice@" + DOMAIN, expires=300, dialog=r_dialog(bob, srv))
    check(r2.status == 200, "refresh SUBSCRIBE %d" % r2.status)
    bob.wait_notify(lambda m: "expires=" in m.hdr("subscription-state"), what="NOTIFY after refresh")
    r2 = bob.subscribe("alice@" + DOMAIN, expires=0, dialog=r_dialog(bob, srv))
    check(r2.status == 200, "unsubscribe %d" % r2.status)
    bob.wait_notify(lambda m: m.hdr("subscription-state").startswith("terminated"), what="terminated")
    r2 = bob.subscribe("alice@" + DOMAIN, expires=300, dialog=r_dialog(bob, srv))
    check(r2.status == 481, "SUBSCRIBE in a finished dialog: %d" % r2.status)
    # expiry: a short subscription ends by itself with a terminated NOTIFY
    r = bob.subscribe("alice@" + DOMAIN, expires=2)
    check(r.status == 200, "short SUBSCRIBE %d" % r.status)
    bob.wait_notify(lambda m: m.hdr("subscription-state").startswith("active"), what="active")
    n = bob.wait_notify(lambda m: m.hdr("subscription-state").startswith("terminated"), timeout=6,
                        what="terminated on expiry")
    check("timeout" in n.hdr("subscription-state"), n.hdr("subscription-state"))


DIALOGS = {}


def r_dialog(ua, srv):
    return DIALOGS[ua.user]


def case_errors(srv):
    """489 unknown package, 415 wrong type, 400 bad XML, 412 unknown etag, 403 publishing for another."""
    alice = UA("alice", DOMAIN, srv.port)
    r = alice.subscribe("bob@" + DOMAIN, event="weather")
    check(r.status == 489 and "presence" in (r.hdr("allow-events") or ""), "unknown event: %d" % r.status)
    r = alice.request("SUBSCRIBE", "sip:bob@" + DOMAIN, ["Expires: 60"])
    check(r.status == 489, "no Event: %d" % r.status)
    r = alice.publish(pidf("alice@" + DOMAIN), ctype="text/plain")
    check(r.status == 415, "wrong content type: %d" % r.status)
    r = alice.publish("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple>")
    check(r.status == 400, "bad XML: %d" % r.status)
    r = alice.publish("<presence xmlns='urn:other' entity='sip:a@b'/>")
    check(r.status == 400, "not PIDF: %d" % r.status)
    r = alice.publish(None, etag="nosuchetag")
    check(r.status == 412, "unknown etag: %d" % r.status)
    r = alice.request("PUBLISH", "sip:bob@" + DOMAIN, ["Event: presence", "Expires: 60"],
                      body=pidf("bob@" + DOMAIN), ctype="application/pidf+xml")
    check(r.status == 403, "publishing for bob: %d" % r.status)
    r = alice.request("PUBLISH", "sip:alice@" + DOMAIN, ["Event: dialog"], body="x", ctype="text/plain")
    check(r.status == 489, "PUBLISH of an unknown package: %d" % r.status)
    r = alice.service("<service/>", ctype="text/plain")
    check(r.status == 415, "SERVICE with a wrong type: %d" % r.status)
    r = alice.service("<notxml")
    check(r.status == 400, "SERVICE with bad XML: %d" % r.status)
    r = alice.subscribe("bob@" + DOMAIN, event="vnd-parley-contacts")
    check(r.status == 403, "someone else's list: %d" % r.status)


def case_block(srv):
    """alice blocks bob: bob's existing subscription shows closed at once, his MESSAGE and a new
    SUBSCRIBE get 403; carol (not blocked) still sees alice; unblock restores."""
    alice, bob, carol = (UA(u, DOMAIN, srv.port) for u in ("alice", "bob", "carol"))
    alice.register()
    bob.register()
    r = alice.publish(pidf("alice@" + DOMAIN, "open", "away"))
    check(r.status == 200, "publish %d" % r.status)
    check(bob.subscribe("alice@" + DOMAIN).status == 200, "bob subscribes")
    check(carol.subscribe("alice@" + DOMAIN).status == 200, "carol subscribes")
    bob.wait_notify(lambda m: activity(m) == "away", what="bob sees away")
    carol.wait_notify(lambda m: activity(m) == "away", what="carol sees away")
    r = alice.service(list_doc('<block user="sip:bob@%s"/>' % DOMAIN, 0))
    check(r.status == 200, "block: %d %s" % (r.status, r.first))
    n = bob.wait_notify(lambda m: True, what="bob's NOTIFY after the block")
    check(basics(n) == ["closed"] and activity(n) is None, "blocked watcher sees: %s" % n.body)
    r = bob.message("alice@" + DOMAIN)
    check(r.status == 403, "blocked MESSAGE got %d" % r.status)
    r = bob.subscribe("alice@" + DOMAIN)
    check(r.status == 403, "blocked SUBSCRIBE got %d" % r.status)
    alice.publish(pidf("alice@" + DOMAIN, "open", "busy"), etag=None)
    carol.wait_notify(lambda m: activity(m) == "busy", what="carol sees busy")
    n = bob.wait_notify(lambda m: True, what="bob's NOTIFY after alice's change")
    check(basics(n) == ["closed"], "still closed to bob")
    # a domain block, with a user allow overriding it
    r = alice.service(list_doc('<block domain="%s"/><allow user="sip:carol@%s"/><clear user="sip:bob@%s"/>'
                               % (DOMAIN, DOMAIN, DOMAIN), 1))
    check(r.status == 200, "domain block %d" % r.status)
    check(bob.message("alice@" + DOMAIN).status == 403, "bob blocked by domain")
    r = alice.service(list_doc('<clear domain="%s"/>' % DOMAIN, 2))
    check(r.status == 200, "unblock %d" % r.status)
    bob.wait_notify(lambda m: "open" in basics(m), what="bob sees alice again")
    alice.register(0)   # nobody to answer a forwarded MESSAGE: the registrar's answer shows it passed
    r = bob.message("alice@" + DOMAIN)
    check(r.status in (404, 480), "unblocked MESSAGE got %d" % r.status)


def case_lists(srv):
    """Contact list and groups via SERVICE, read back by a subscription; stale version -> 409."""
    alice = UA("alice", DOMAIN, srv.port)
    alice.register()
    r = alice.subscribe("alice@" + DOMAIN, event="vnd-parley-contacts")
    check(r.status == 200, "subscribe own list %d" % r.status)
    n = alice.wait_notify(lambda m: True, what="initial list")
    check(n.hdr("content-type") == "application/vnd-parley-contacts+xml", n.hdr("content-type"))
    check('version="0"' in n.body, "empty list version 0: %s" % n.body)
    r = alice.service(list_doc('<set-group id="1" name="Friends"/>'
                               '<set-contact uri="sip:bob@%s" name="Bob" groups="1"/>'
                               '<set-contact uri="sip:carol@%s" name="Carol &amp; Co"/>' % (DOMAIN, DOMAIN), 0))
    check(r.status == 200 and r.hdr("x-parley-list-version") == "1", "edit: %d" % r.status)
    n = alice.wait_notify(lambda m: 'version="1"' in m.body, what="list v1")
    check('uri="sip:bob@example.com"' in n.body and 'groups="1"' in n.body and 'name="Friends"' in n.body,
          n.body)
    check("Carol &amp; Co" in n.body, "escaping: " + n.body)
    r = alice.service(list_doc('<delete-contact uri="sip:carol@%s"/>' % DOMAIN, 0))
    check(r.status == 409 and r.hdr("x-parley-list-version") == "1", "stale version: %d" % r.status)
    r = alice.service(list_doc('<set-contact uri="sip:dave@%s" groups="9"/>' % DOMAIN, 1))
    check(r.status == 400, "unknown group: %d" % r.status)
    r = alice.service(list_doc('<delete-contact uri="sip:carol@%s"/><delete-group id="1"/>' % DOMAIN, 1))
    check(r.status == 200, "delete: %d" % r.status)
    n = alice.wait_notify(lambda m: 'version="2"' in m.body, what="list v2")
    check("carol" not in n.body and 'groups=' not in n.body and "bob@" in n.body, n.body)


def case_restart(srv):
    """kill -9 and restart: subscriptions, publications and lists are back and NOTIFYs resume."""
    alice, bob = UA("alice", DOMAIN, srv.port), UA("bob", DOMAIN, srv.port)
    alice.register()
    bob.register()
    r = alice.publish(pidf("alice@" + DOMAIN, "open", "away"))
    check(r.status == 200, "publish %d" % r.status)
    etag = r.hdr("sip-etag")
    r = bob.subscribe("alice@" + DOMAIN)
    check(r.status == 200, "subscribe %d" % r.status)
    dialog = r.dialog
    r = alice.subscribe("alice@" + DOMAIN, event="vnd-parley-contacts")
    check(r.status == 200, "list subscribe %d" % r.status)
    r = alice.service(list_doc('<set-contact uri="sip:bob@%s" name="Bob"/><block user="sip:mallory@%s"/>'
                               % (DOMAIN, DOMAIN), 0))
    check(r.status == 200, "service %d" % r.status)
    bob.wait_notify(lambda m: activity(m) == "away", what="away before the crash")
    alice.wait_notify(lambda m: 'version="1"' in m.body, what="list before the crash")
    bob.drain()
    alice.drain()
    srv.kill9()
    srv.start()
    # NOTIFYs resume at start with the stored state
    n = bob.wait_notify(lambda m: True, timeout=5, what="NOTIFY after restart")
    check(activity(n) == "away" and "active" in n.hdr("subscription-state"), "after restart: %s" % n.body)
    n = alice.wait_notify(lambda m: True, timeout=5, what="list NOTIFY after restart")
    check('version="1"' in n.body and "bob@" in n.body, n.body)
    # the publication's entity-tag is still known, the subscription's dialog too
    r = alice.publish(pidf("alice@" + DOMAIN, "open", "busy"), etag=etag)
    check(r.status == 200, "modify by the old etag after restart: %d" % r.status)
    bob.wait_notify(lambda m: activity(m) == "busy", what="busy after restart")
    dialog["target"] = dialog["target"]
    r = bob.subscribe("alice@" + DOMAIN, expires=300, dialog=dialog)
    check(r.status == 200, "refresh after restart: %d" % r.status)
    mallory = UA("mallory", DOMAIN, srv.port)
    check(mallory.message("alice@" + DOMAIN).status == 403, "block list survived")
    r = alice.service(list_doc("", 0))
    check(r.status == 409, "version survived: %d" % r.status)


def main():
    case = sys.argv[1] if len(sys.argv) > 1 else "publish"
    fn = globals().get("case_" + case)
    if fn is None:
        print("unknown case %s" % case)
        return 2
    tmp = tempfile.mkdtemp(prefix="presence-")
    srv = Server(tmp)
    ok = False
    try:
        srv.start()
        if case == "publish":
            # the in-dialog tests use bob's dialog: remember it at subscription time
            orig = UA.subscribe

            def sub(self, target, event="presence", expires=600, dialog=None):
                r = orig(self, target, event, expires, dialog)
                if dialog is None and r.status == 200 and event == "presence":
                    DIALOGS[self.user] = r.dialog
                return r
            UA.subscribe = sub
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
                    sys.stderr.write("---- homeserver.log (last 80 lines) ----\n")
                    sys.stderr.write("".join(f.readlines()[-80:]))
            sys.stderr.write("logs kept in %s\n" % tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
