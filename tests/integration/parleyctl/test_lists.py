#!/usr/bin/env python3
"""parleyctl contacts / acl against a real etcd and a real parley-homeserver.

Usage: test_lists.py CASE   (CTL_BIN = parleyctl, HS_BIN = parley-homeserver)
Each case starts etcd (tests/lib/etcd.sh), adds alice, bob and carol with parleyctl (home
"home1"), starts the home server with the directory (--server-name home1, --auth off, an
admin token) so that it announces its admin endpoint in /parley/servers/home1, runs, and
stops both by PID, also on failure (the logs are then printed and kept).

Cases:
  contacts  group-add / add --name --group / list (table and --json) / group-rename / remove
            round trip; alice's own subscription to vnd-parley-contacts gets a NOTIFY after
            every parleyctl change with the new version; a SIP SERVICE then continues from
            the admin's version (shared versioning, stale -> 409)
  acl       parleyctl acl block bob: bob's existing presence subscription gets a closed NOTIFY
            at once and his MESSAGE to alice gets 403; allow restores; domain entries; list
  errors    bad input -> exit 2 with one line "parleyctl: ..." and nothing sent; unknown
            user / missing token / entry not in the list -> exit 1; the admin endpoint's
            own checks (400 on bad JSON, 404 for a foreign domain, 401 without the token)
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "presence"))
from sipua import UA, free_port  # noqa: E402

DOMAIN = "example.com"
TOKEN = "t0ken-for-tests"
ETCD_SH = os.path.join(ROOT, "tests", "lib", "etcd.sh")
LISTS_NS = "urn:parley:params:xml:ns:contacts"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok   - %s" % what)


class Pool:
    """etcd + one home server (home1) + parleyctl, all on 127.0.0.1."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.etcd_st = os.path.join(tmp, "etcd")
        self.etcd = None
        self.proc = None
        self.log = None
        self.port = free_port()
        self.admin_port = free_port()

    def start(self):
        self.etcd = subprocess.run(["bash", ETCD_SH, "start", self.etcd_st], capture_output=True, text=True,
                                   timeout=60).stdout.strip()
        if not self.etcd.startswith("http"):
            raise AssertionError("etcd did not start")
        for u in ("alice", "bob", "carol"):
            r = self.ctl("user", "add", "%s@%s" % (u, DOMAIN), "--password", "secret-" + u, "--home", "home1")
            if r.returncode != 0:
                raise AssertionError("user add %s: %s" % (u, r.stderr))
        self.log = open(os.path.join(self.tmp, "homeserver.log"), "ab")
        self.proc = subprocess.Popen(
            [os.environ["HS_BIN"], "--listen", "udp:127.0.0.1:%d" % self.port, "--domain", DOMAIN,
             "--data-dir", os.path.join(self.tmp, "data"), "--admin", "127.0.0.1:%d" % self.admin_port,
             "--admin-token", TOKEN, "--etcd", self.etcd, "--server-name", "home1", "--auth", "off",
             "--min-expires", "1", "--log-level", "debug"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("homeserver exited with %d" % self.proc.returncode)
            r = self.ctl("--json", "server", "list")
            if r.returncode == 0 and any(s.get("name") == "home1" and s.get("admin")
                                         for s in json.loads(r.stdout or "[]")):
                if self.http("GET", "/healthz", auth=False)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("home server not announced/healthy")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log:
            self.log.close()
            self.log = None
        subprocess.run(["bash", ETCD_SH, "stop", self.etcd_st], capture_output=True, timeout=30)
        with open(os.path.join(self.tmp, "homeserver.log"), errors="replace") as f:
            text = f.read()
        if "Sanitizer" in text or "runtime error:" in text:
            raise AssertionError("sanitizer report in homeserver.log")

    def ctl(self, *args, token=TOKEN):
        env = dict(os.environ, PARLEY_ETCD=self.etcd or "")
        env.pop("PARLEY_ADMIN_TOKEN", None)
        if token:
            env["PARLEY_ADMIN_TOKEN"] = token
        return subprocess.run([os.environ["CTL_BIN"]] + list(args), capture_output=True, text=True, env=env,
                              timeout=30)

    def http(self, method, path, body=None, auth=True):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path), data=body, method=method)
        if auth:
            req.add_header("Authorization", "Bearer " + TOKEN)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def ok(r, what):
    check(r.returncode == 0, "%s (exit %d, stderr %r)" % (what, r.returncode, r.stderr.strip()))
    return r


def version(n):
    m = re.search(r'<contacts[^>]* version="(\d+)"', n.body)
    return int(m.group(1)) if m else -1


def pumped(ua, fn):
    """Runs fn() while <ua> answers what it receives (a MESSAGE forwarded to it gets 200)."""
    stop = threading.Event()

    def run():
        while not stop.is_set():
            ua._pump(0.05)
    t = threading.Thread(target=run)
    t.start()
    try:
        return fn()
    finally:
        stop.set()
        t.join()


def basics(n):
    return re.findall(r"<basic>(\w+)</basic>", n.body)


# ------------------------------------------------------------------ cases

def case_contacts(pool):
    alice = UA("alice", DOMAIN, pool.port)
    alice.register()
    r = alice.subscribe("alice@" + DOMAIN, event="vnd-parley-contacts")
    check(r.status == 200, "alice subscribes to her own list")
    n = alice.wait_notify(lambda m: True, what="initial list NOTIFY")
    check(version(n) == 0, "initial list is version 0")

    out = ok(pool.ctl("contacts", "alice@example.com", "group-add", "Friends"), "contacts group-add Friends")
    check("version 1" in out.stdout, "group-add reports version 1: %r" % out.stdout)
    n = alice.wait_notify(lambda m: version(m) == 1, what="NOTIFY after group-add")
    check('name="Friends"' in n.body, "NOTIFY carries the group")

    ok(pool.ctl("contacts", "Alice@Example.com", "add", "sip:Bob@Example.com", "--name", "Bob <B> & Co",
                "--group", "Friends"), "contacts add bob --name --group")
    n = alice.wait_notify(lambda m: version(m) == 2, what="NOTIFY after add")
    check('uri="sip:bob@example.com"' in n.body and 'groups="1"' in n.body and "Bob &lt;B&gt; &amp; Co" in n.body,
          "NOTIFY carries bob with his name (escaped) and group: %s" % n.body)
    ok(pool.ctl("contacts", "alice@example.com", "add", "carol@example.com"), "contacts add carol (no name)")
    alice.wait_notify(lambda m: version(m) == 3, what="NOTIFY after second add")

    r = ok(pool.ctl("--json", "contacts", "alice@example.com", "list"), "contacts list --json")
    j = json.loads(r.stdout)
    check(j["version"] == 3 and j["user"] == "alice@example.com", "list: user and version 3")
    check(j["groups"] == [{"id": "1", "name": "Friends"}], "list: groups %r" % j["groups"])
    byc = {c["contact"]: c for c in j["contacts"]}
    check(sorted(byc) == ["bob@example.com", "carol@example.com"], "list: two contacts")
    check(byc["bob@example.com"]["name"] == "Bob <B> & Co" and
          byc["bob@example.com"]["groups"] == [{"id": "1", "name": "Friends"}], "list: bob's name and group")
    r = ok(pool.ctl("contacts", "alice@example.com", "list"), "contacts list (table)")
    check("bob@example.com" in r.stdout and "Friends" in r.stdout and "version 3" in r.stdout,
          "table shows bob, the group and the version")

    ok(pool.ctl("contacts", "alice@example.com", "group-rename", "Friends", "Close friends"), "group-rename")
    alice.wait_notify(lambda m: version(m) == 4 and 'name="Close friends"' in m.body, what="NOTIFY after rename")
    r = ok(pool.ctl("--json", "contacts", "alice@example.com", "list"), "list after rename")
    j = json.loads(r.stdout)
    check([c["groups"] for c in j["contacts"] if c["contact"] == "bob@example.com"] ==
          [[{"id": "1", "name": "Close friends"}]], "bob stays in the renamed group")
    r = pool.ctl("contacts", "alice@example.com", "group-add", "close FRIENDS")
    check(r.returncode == 1 and "exists" in r.stderr, "group-add of an existing name -> exit 1 (%r)" % r.stderr)

    ok(pool.ctl("contacts", "alice@example.com", "remove", "bob@example.com"), "contacts remove bob")
    n = alice.wait_notify(lambda m: version(m) == 5, what="NOTIFY after remove")
    check("bob@example.com" not in n.body and "carol@example.com" in n.body, "bob gone, carol kept")
    r = pool.ctl("contacts", "alice@example.com", "remove", "bob@example.com")
    check(r.returncode == 1 and "not in the contact list" in r.stderr, "removing again -> exit 1")
    ok(pool.ctl("contacts", "alice@example.com", "group-remove", "1"), "group-remove by id")
    alice.wait_notify(lambda m: version(m) == 6 and "<group" not in m.body, what="NOTIFY after group-remove")

    # the SIP side continues from the administrator's version: same versioning
    doc = ('<?xml version="1.0"?><service xmlns="%s" version="%d"><set-contact uri="sip:dave@example.com"/>'
           '</service>')
    r = alice.service(doc % (LISTS_NS, 5))
    check(r.status == 409, "SERVICE with the version before the admin's change -> 409")
    r = alice.service(doc % (LISTS_NS, 6))
    check(r.status == 200 and r.hdr("x-parley-list-version") == "7", "SERVICE at version 6 -> 200, version 7")
    r = ok(pool.ctl("--json", "contacts", "alice@example.com", "list"), "list after SERVICE")
    check(sorted(c["contact"] for c in json.loads(r.stdout)["contacts"]) == ["carol@example.com", "dave@example.com"],
          "parleyctl sees the SERVICE change")


def case_acl(pool):
    alice, bob, carol = (UA(u, DOMAIN, pool.port) for u in ("alice", "bob", "carol"))
    alice.register()
    bob.register()
    check(bob.subscribe("alice@" + DOMAIN).status == 200, "bob subscribes to alice's presence")
    check(carol.subscribe("alice@" + DOMAIN).status == 200, "carol subscribes to alice's presence")
    bob.wait_notify(lambda m: "open" in basics(m), what="bob sees alice open")
    carol.wait_notify(lambda m: "open" in basics(m), what="carol sees alice open")
    r = pumped(alice, lambda: bob.message("alice@" + DOMAIN))
    check(r.status == 200, "before the block bob's MESSAGE reaches alice (got %d)" % r.status)

    r = ok(pool.ctl("acl", "alice@example.com", "block", "sip:Bob@example.com"), "acl block bob")
    check("blocked bob@example.com" in r.stdout, "acl block output: %r" % r.stdout)
    n = bob.wait_notify(lambda m: True, what="bob's NOTIFY after the block")
    check(basics(n) == ["closed"], "blocked watcher sees alice closed at once: %s" % basics(n))
    r = bob.message("alice@" + DOMAIN)
    check(r.status == 403, "bob's MESSAGE to alice -> 403 (got %d)" % r.status)
    r = bob.subscribe("alice@" + DOMAIN)
    check(r.status == 403, "bob's new SUBSCRIBE -> 403 (got %d)" % r.status)
    r = pumped(alice, lambda: carol.message("alice@" + DOMAIN))
    check(r.status == 200, "carol's MESSAGE still reaches alice (got %d)" % r.status)

    r = ok(pool.ctl("--json", "acl", "alice@example.com", "list"), "acl list --json")
    j = json.loads(r.stdout)
    check(j["entries"] == [{"entry": "bob@example.com", "type": "user", "action": "block"}],
          "acl list: %r" % j["entries"])

    ok(pool.ctl("acl", "alice@example.com", "allow", "bob@example.com"), "acl allow bob")
    bob.wait_notify(lambda m: "open" in basics(m), what="bob sees alice again after allow")
    r = pumped(alice, lambda: bob.message("alice@" + DOMAIN, "x"))
    check(r.status == 200, "allowed: bob's MESSAGE reaches alice again (got %d)" % r.status)

    ok(pool.ctl("acl", "alice@example.com", "remove", "bob@example.com"), "acl remove bob")
    ok(pool.ctl("acl", "alice@example.com", "block", "Example.com"), "acl block a whole domain")
    bob.wait_notify(lambda m: basics(m) == ["closed"], what="bob closed by the domain block")
    carol.wait_notify(lambda m: basics(m) == ["closed"], what="carol closed by the domain block")
    ok(pool.ctl("acl", "alice@example.com", "allow", "carol@example.com"), "acl allow carol over the domain")
    carol.wait_notify(lambda m: "open" in basics(m), what="carol open again (user entry beats domain)")
    check(bob.message("alice@" + DOMAIN).status == 403, "bob still blocked by the domain")
    r = ok(pool.ctl("acl", "alice@example.com", "list"), "acl list (table)")
    check("domain  example.com" in r.stdout and "allow  user    carol@example.com" in r.stdout,
          "table: %r" % r.stdout)
    r = pool.ctl("acl", "alice@example.com", "remove", "nobody@example.com")
    check(r.returncode == 1 and "not in the allow/block list" in r.stderr, "remove of an absent entry -> 1")


def case_errors(pool):
    bad = [
        ("contacts",),
        ("contacts", "alice@example.com"),
        ("contacts", "not-a-user", "list"),
        ("contacts", "alice@example.com", "frobnicate"),
        ("contacts", "alice@example.com", "add"),
        ("contacts", "alice@example.com", "add", "no-at-sign"),
        ("contacts", "alice@example.com", "add", "bob@bad domain"),
        ("contacts", "alice@example.com", "add", "alice@example.com"),
        ("contacts", "alice@example.com", "add", "bob@example.com", "--group", ""),
        ("contacts", "alice@example.com", "add", "bob@example.com", "--name", "a\tb"),
        ("contacts", "alice@example.com", "add", "bob@example.com", "--group"),
        ("contacts", "alice@example.com", "remove", "bob@example.com", "--name", "x"),
        ("contacts", "alice@example.com", "list", "extra"),
        ("contacts", "alice@example.com", "group-rename", "only-one"),
        ("contacts", "alice@example.com", "group-add", "x" * 129),
        ("contacts", "alice@example.com", "list", "--bogus"),
        ("acl", "alice@example.com"),
        ("acl", "alice@example.com", "block"),
        ("acl", "alice@example.com", "deny", "bob@example.com"),
        ("acl", "alice@example.com", "block", "bad_domain!"),
        ("acl", "alice@example.com", "block", "bob@"),
        ("acl", "alice@example.com", "list", "extra"),
    ]
    for args in bad:
        r = pool.ctl(*args)
        first = r.stderr.splitlines()[0] if r.stderr else ""
        check(r.returncode == 2 and first.startswith("parleyctl: "),
              "%s -> exit 2 (%d, %r)" % (" ".join(args), r.returncode, first))
    r = pool.ctl("--json", "contacts", "alice@example.com", "list")
    check(r.returncode == 0 and json.loads(r.stdout)["version"] == 0, "nothing was changed by bad input")

    r = pool.ctl("contacts", "nobody@example.com", "list")
    check(r.returncode == 1 and "no such user" in r.stderr, "unknown user -> exit 1 (%r)" % r.stderr.strip())
    r = pool.ctl("contacts", "alice@example.com", "list", token=None)
    check(r.returncode == 1 and "token" in r.stderr, "no token -> exit 1 (%r)" % r.stderr.strip())
    r = pool.ctl("acl", "alice@example.com", "list", "--admin-token", "wrong", token=None)
    check(r.returncode == 1 and "refused" in r.stderr, "wrong token -> exit 1 (%r)" % r.stderr.strip())
    r = pool.ctl("contacts", "alice@example.com", "add", "bob@example.com", "--group", "NoSuchGroup")
    check(r.returncode == 1 and "no group" in r.stderr, "unknown group -> exit 1 (%r)" % r.stderr.strip())
    r = pool.ctl("contacts", "alice@example.com", "--help")
    check(r.returncode == 0 and "group-rename" in r.stdout, "contacts --help -> 0")
    r = pool.ctl("--help")
    check(r.returncode == 0 and "acl USER@DOMAIN" in r.stdout, "top-level help lists acl")

    # the endpoint's own checks
    st, body = pool.http("POST", "/api/contacts?user=alice@example.com", b"{not json")
    check(st == 400 and "error" in json.loads(body), "bad JSON -> 400")
    st, body = pool.http("POST", "/api/acl?user=alice@example.com", b'{"ops":[{"op":"block","entry":"a b"}]}')
    check(st == 400, "bad entry -> 400")
    st, body = pool.http("POST", "/api/contacts?user=alice@example.com", b'{"version":7,"op":"group-add","group":"G"}')
    check(st == 409 and "Stale" in json.loads(body)["error"], "stale version -> 409")
    st, body = pool.http("POST", "/api/contacts?user=alice@example.com",
                         b'{"ops":[{"op":"group-add","group":"G"},{"op":"add","contact":"bob@example.com",'
                         b'"groups":["G"]},{"op":"add","contact":"x@example.com","groups":["nope"]}]}')
    check(st == 404, "a batch with one bad operation -> 404")
    st, body = pool.http("GET", "/api/contacts?user=alice@example.com")
    check(st == 200 and json.loads(body)["version"] == 0, "... and is not applied at all (atomic)")
    st, body = pool.http("POST", "/api/contacts?user=alice@example.com",
                         b'{"version":0,"ops":[{"op":"group-add","group":"G"},{"op":"add","contact":"bob@example.com",'
                         b'"groups":["G"]}]}')
    check(st == 200 and json.loads(body)["version"] == 1, "a batch at the current version -> one version step")
    st, body = pool.http("GET", "/api/contacts?user=alice@other.org")
    check(st == 404, "a user of a domain not served here -> 404")
    st, body = pool.http("GET", "/api/contacts")
    check(st == 400, "no user -> 400")
    st, body = pool.http("GET", "/api/acl?user=alice@example.com", auth=False)
    check(st == 401, "no bearer token -> 401")


def main():
    case = sys.argv[1] if len(sys.argv) > 1 else "contacts"
    fn = globals().get("case_" + case)
    if fn is None:
        print("unknown case %s" % case)
        return 2
    tmp = tempfile.mkdtemp(prefix="parleyctl-lists-")
    pool = Pool(tmp)
    ok_ = False
    try:
        pool.start()
        fn(pool)
        ok_ = True
        print("%s: ok" % case)
    finally:
        pool.stop()
        if ok_:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log = os.path.join(tmp, "homeserver.log")
            if os.path.exists(log):
                with open(log, errors="replace") as f:
                    sys.stdout.write("--- homeserver.log (last 60 lines)\n" + "".join(f.readlines()[-60:]))
            print("--- kept %s" % tmp)
    return 0 if ok_ else 1


if __name__ == "__main__":
    sys.exit(main())
