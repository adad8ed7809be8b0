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
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import xml.etree.ElementTree as ET  # noqa: E402

from sipua import UA, multipart, pidf, check, free_port  # noqa: E402

DOMAIN = "example.com"
LISTS_NS = "urn:parley:params:xml:ns:contacts"
WINFO_NS = "{urn:ietf:params:xml:ns:watcherinfo}"
RLMI_NS = "{urn:ietf:params:xml:ns:rlmi}"
PIDF_NS = "{urn:ietf:params:xml:ns:pidf}"


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


# ------------------------------------------------------------------ watcher info (RFC 3857/3858)

def winfo(n):
    """(version, {watcher uri: (status, event, id)}) of a watcherinfo NOTIFY."""
    check(n.hdr("content-type") == "application/watcherinfo+xml", "winfo type %s" % n.hdr("content-type"))
    root = ET.fromstring(n.body)
    check(root.tag == WINFO_NS + "watcherinfo" and root.get("state") == "full", "winfo root: %s" % n.body)
    wl = root.find(WINFO_NS + "watcher-list")
    check(wl is not None and wl.get("resource") == "sip:alice@" + DOMAIN and wl.get("package") == "presence",
          "watcher-list: %s" % n.body)
    ws = {}
    for w in wl.findall(WINFO_NS + "watcher"):
        check(w.get("id") and w.get("duration-subscribed") is not None, "watcher attributes: %s" % n.body)
        ws[w.text] = (w.get("status"), w.get("event"), w.get("id"))
    return int(root.get("version")), ws


def case_winfo(srv):
    """alice watches her watchers: bob subscribes -> active, blocked -> rejected, unsubscribes
    -> terminated; only alice may subscribe; survives kill -9."""
    alice, bob, carol = (UA(u, DOMAIN, srv.port) for u in ("alice", "bob", "carol"))
    alice.register()
    bob_uri = "sip:bob@" + DOMAIN
    r = alice.subscribe("alice@" + DOMAIN, event="presence.winfo")
    check(r.status == 200, "winfo SUBSCRIBE %d" % r.status)
    v0, ws = winfo(alice.wait_notify(lambda m: True, what="initial winfo"))
    check(v0 == 0 and ws == {}, "no watchers yet: %d %s" % (v0, ws))
    r = bob.subscribe("alice@" + DOMAIN)
    check(r.status == 200, "bob's SUBSCRIBE %d" % r.status)
    bob_dialog = r.dialog
    v, ws = winfo(alice.wait_notify(lambda m: bob_uri in m.body, what="winfo naming bob"))
    check(ws[bob_uri][:2] == ("active", "subscribe") and v == v0 + 1, "bob active: %d %s" % (v, ws))
    # a block shows as rejected at once (bob himself sees alice closed)
    r = alice.service(list_doc('<block user="%s"/>' % bob_uri, 0))
    check(r.status == 200, "block %d" % r.status)
    v2, ws = winfo(alice.wait_notify(lambda m: "rejected" in m.body, what="winfo after the block"))
    check(ws[bob_uri][:2] == ("terminated", "rejected") and v2 > v, "blocked bob: %s" % (ws,))
    r = alice.service(list_doc('<clear user="%s"/>' % bob_uri, 1))
    check(r.status == 200, "unblock %d" % r.status)
    v3, ws = winfo(alice.wait_notify(lambda m: "rejected" not in m.body, what="winfo after the unblock"))
    check(ws[bob_uri][0] == "active" and v3 > v2, "unblocked bob: %s" % (ws,))
    # someone else's watcher info: 403
    r = bob.subscribe("alice@" + DOMAIN, event="presence.winfo")
    check(r.status == 403, "bob's winfo SUBSCRIBE to alice: %d" % r.status)
    # kill -9: the winfo subscription resumes, versions go on, new watchers are reported
    alice.drain()
    srv.kill9()
    srv.start()
    v4, ws = winfo(alice.wait_notify(lambda m: True, timeout=5, what="winfo after restart"))
    check(v4 > v3 and ws[bob_uri][0] == "active", "after restart: %d %s" % (v4, ws))
    check(carol.subscribe("alice@" + DOMAIN).status == 200, "carol subscribes")
    v5, ws = winfo(alice.wait_notify(lambda m: "sip:carol@" in m.body, what="winfo naming carol"))
    check(v5 == v4 + 1 and ws["sip:carol@" + DOMAIN][0] == "active", "carol: %d %s" % (v5, ws))
    # bob unsubscribes: terminated
    r = bob.subscribe("alice@" + DOMAIN, expires=0, dialog=bob_dialog)
    check(r.status == 200, "unsubscribe %d" % r.status)
    v6, ws = winfo(alice.wait_notify(lambda m: "terminated" in m.body, what="winfo: bob terminated"))
    check(ws[bob_uri][:2] == ("terminated", "timeout") and ws["sip:carol@" + DOMAIN][0] == "active" and v6 > v5,
          "bob ended: %s" % (ws,))
    # a watcher whose subscription expires: terminated/timeout without anyone asking
    dave = UA("dave", DOMAIN, srv.port)
    check(dave.subscribe("alice@" + DOMAIN, expires=2).status == 200, "dave subscribes shortly")
    alice.wait_notify(lambda m: "sip:dave@" in m.body, what="winfo naming dave")
    v7, ws = winfo(alice.wait_notify(lambda m: re.search(r'status="terminated"[^>]*>sip:dave@', m.body)
                                     is not None, timeout=6, what="winfo: dave expired"))
    check(ws["sip:dave@" + DOMAIN][:2] == ("terminated", "timeout"), "dave expired: %s" % (ws,))


# ------------------------------------------------------------------ resource list (RFC 4662)

LIST_URI = "alice;list=contacts@" + DOMAIN


def rls_notify(n):
    """Parses an RLS NOTIFY: (rlmi root, {resource uri: (instance attrs, name, pidf root or None)})."""
    check(n.hdr("event") == "presence", "Event %s" % n.hdr("event"))
    ct = n.hdr("content-type")
    check(ct.startswith("multipart/related"), "content type %s" % ct)
    params, parts = multipart(ct, n.body)
    check(params.get("type") == "application/rlmi+xml", "type parameter: %s" % ct)
    root_hdrs, root_body = parts[0]
    check(root_hdrs.get("content-id") == params.get("start"), "start %s vs %s" % (params.get("start"), root_hdrs))
    check(root_hdrs["content-type"].startswith("application/rlmi+xml"), root_hdrs["content-type"])
    by_cid = {}
    for h, b in parts[1:]:
        check(h["content-type"].startswith("application/pidf+xml"), h["content-type"])
        by_cid[h["content-id"].strip("<>")] = ET.fromstring(b)
    rlmi = ET.fromstring(root_body)
    check(rlmi.tag == RLMI_NS + "list" and rlmi.get("uri") == "sip:" + LIST_URI, "rlmi: %s" % root_body)
    res = {}
    for r in rlmi.findall(RLMI_NS + "resource"):
        inst = r.find(RLMI_NS + "instance")
        check(inst is not None and inst.get("id") and inst.get("state"), "instance: %s" % root_body)
        doc = by_cid.pop(inst.get("cid"), None) if inst.get("cid") else None
        check(inst.get("cid") is None or doc is not None, "cid %s has no part" % inst.get("cid"))
        nm = r.find(RLMI_NS + "name")
        res[r.get("uri")] = (dict(inst.attrib), nm.text if nm is not None else None, doc)
    check(not by_cid, "parts no resource names: %s" % list(by_cid))
    return rlmi, res


def pidf_state(doc):
    """(basic statuses, first RPID activity) of a PIDF element tree."""
    basics_ = [b.text for b in doc.iter(PIDF_NS + "basic")]
    act = None
    for a in doc.iter("{urn:ietf:params:xml:ns:pidf:rpid}activities"):
        kids = list(a)
        if kids:
            act = kids[0].tag.split("}")[1]
            break
    return basics_, act


def case_rls(srv):
    """alice's contact list as a resource list: one multipart NOTIFY with three contacts'
    presence; a change -> partial NOTIFY; 421 without eventlist; list edits; kill -9."""
    alice, bob, carol, dave = (UA(u, DOMAIN, srv.port) for u in ("alice", "bob", "carol", "dave"))
    for ua in (alice, bob, carol, dave):
        ua.register()
    check(bob.publish(pidf("bob@" + DOMAIN, "open", note="at my desk")).status == 200, "bob publishes")
    r = carol.publish(pidf("carol@" + DOMAIN, "open", "busy"))
    check(r.status == 200, "carol publishes")
    carol_etag = r.hdr("sip-etag")
    check(dave.publish(pidf("dave@" + DOMAIN, "closed")).status == 200, "dave publishes")
    r = alice.service(list_doc('<set-contact uri="sip:bob@%s" name="Bob"/><set-contact uri="sip:carol@%s"/>'
                               '<set-contact uri="sip:dave@%s" name="Dave"/>' % (DOMAIN, DOMAIN, DOMAIN), 0))
    check(r.status == 200, "contacts %d" % r.status)
    # without Supported: eventlist
    r = alice.subscribe(LIST_URI)
    check(r.status == 421 and r.hdr("require") == "eventlist", "no eventlist: %d %s" % (r.status, r.hdr("require")))
    r = bob.subscribe(LIST_URI, extra=["Supported: eventlist"])
    check(r.status == 403, "someone else's list: %d" % r.status)
    r = alice.subscribe(LIST_URI, event="weather", extra=["Supported: eventlist"])
    check(r.status == 489, "list with another package: %d" % r.status)
    r = alice.subscribe(LIST_URI, extra=["Supported: eventlist"])
    check(r.status == 200 and r.hdr("require") == "eventlist", "list SUBSCRIBE %d %s" % (r.status, r.hdr("require")))
    dialog = r.dialog
    rlmi, res = rls_notify(alice.wait_notify(lambda m: True, what="first RLS NOTIFY"))
    b, c, d = ("sip:%s@%s" % (u, DOMAIN) for u in ("bob", "carol", "dave"))
    check(rlmi.get("fullState") == "true" and rlmi.get("version") == "0", "first: %s" % rlmi.attrib)
    check(set(res) == {b, c, d}, "three resources: %s" % list(res))
    check(res[b][1] == "Bob" and res[c][1] is None and res[d][1] == "Dave", "names")
    for uri in (b, c, d):
        check(res[uri][0]["state"] == "active" and res[uri][2].get("entity") == uri, "%s: %s" % (uri, res[uri][0]))
    check(pidf_state(res[b][2]) == (["open"], None) and "at my desk" in ET.tostring(res[b][2]).decode(), "bob")
    check(pidf_state(res[c][2]) == (["open"], "busy"), "carol: %s" % (pidf_state(res[c][2]),))
    check(pidf_state(res[d][2]) == (["closed"], None), "dave: %s" % (pidf_state(res[d][2]),))
    # carol goes away: a partial NOTIFY with carol only
    r = carol.publish(pidf("carol@" + DOMAIN, "open", "away"), etag=carol_etag)
    check(r.status == 200, "carol modifies %d" % r.status)
    carol_etag = r.hdr("sip-etag")
    rlmi, res = rls_notify(alice.wait_notify(lambda m: True, what="NOTIFY after carol's change"))
    check(rlmi.get("fullState") == "false" and rlmi.get("version") == "1" and list(res) == [c],
          "partial: %s %s" % (rlmi.attrib, list(res)))
    check(pidf_state(res[c][2]) == (["open"], "away"), "carol away: %s" % (pidf_state(res[c][2]),))
    # bob blocks alice: to her, bob is offline
    r = bob.service(list_doc('<block user="sip:alice@%s"/>' % DOMAIN, 0))
    check(r.status == 200, "bob blocks alice %d" % r.status)
    rlmi, res = rls_notify(alice.wait_notify(lambda m: True, what="NOTIFY after bob's block"))
    check(list(res) == [b] and pidf_state(res[b][2]) == (["closed"], None), "bob closed to alice")
    # list edits change the resources: a full NOTIFY; a foreign contact is pending, no part
    r = alice.service(list_doc('<delete-contact uri="sip:dave@%s"/><set-contact uri="sip:erin@other.example"/>'
                               % DOMAIN, 1))
    check(r.status == 200, "list edit %d" % r.status)
    rlmi, res = rls_notify(alice.wait_notify(lambda m: True, what="NOTIFY after the list edit"))
    e = "sip:erin@other.example"
    check(rlmi.get("fullState") == "true" and set(res) == {b, c, e}, "after edit: %s" % list(res))
    check(res[e][0]["state"] == "pending" and res[e][2] is None, "foreign contact: %s" % (res[e][0],))
    # dave is no longer a member: his change sends nothing
    dave.publish(pidf("dave@" + DOMAIN, "open", "busy"))
    alice.drain(0.5)
    # kill -9 and restart: the subscription resumes with the full state, changes go on
    srv.kill9()
    srv.start()
    rlmi, res = rls_notify(alice.wait_notify(lambda m: True, timeout=5, what="RLS NOTIFY after restart"))
    check(rlmi.get("fullState") == "true" and set(res) == {b, c, e} and int(rlmi.get("version")) >= 4,
          "after restart: %s %s" % (rlmi.attrib, list(res)))
    check(pidf_state(res[c][2]) == (["open"], "away"), "carol still away")
    r = carol.publish(pidf("carol@" + DOMAIN, "open", "busy"), etag=carol_etag)
    check(r.status == 200, "carol after restart %d" % r.status)
    rlmi, res = rls_notify(alice.wait_notify(lambda m: True, what="partial after restart"))
    check(rlmi.get("fullState") == "false" and pidf_state(res[c][2]) == (["open"], "busy"), "carol busy")
    # registration is presence too: carol's last endpoint leaves -> she is closed
    carol.register(0)
    rlmi, res = rls_notify(alice.wait_notify(lambda m: True, what="NOTIFY after carol unregistered"))
    check(list(res) == [c] and pidf_state(res[c][2]) == (["closed"], None), "carol offline")
    # the dialog still refreshes (no Supported needed in-dialog), and ends with terminated
    r = alice.subscribe(LIST_URI, expires=300, dialog=dialog)
    check(r.status == 200 and r.hdr("require") == "eventlist", "refresh %d" % r.status)
    rlmi, res = rls_notify(alice.wait_notify(lambda m: True, what="NOTIFY after refresh"))
    check(rlmi.get("fullState") == "true", "refresh gives the full state")
    r = alice.subscribe(LIST_URI, expires=0, dialog=dialog)
    check(r.status == 200, "unsubscribe %d" % r.status)
    n = alice.wait_notify(lambda m: m.hdr("subscription-state").startswith("terminated"), what="terminated")
    rls_notify(n)


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
