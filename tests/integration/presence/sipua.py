"""A small SIP user agent over UDP for the presence tests (python3 stdlib only).

It registers, subscribes, publishes and sends SERVICE/MESSAGE requests, and answers
every request it receives (NOTIFY) with 200 OK, keeping them for the test to inspect.
Everything runs on 127.0.0.1 and every wait is bounded.
"""
import random
import re
import socket
import time


def free_port(kind=None):
    """A port free for both UDP and TCP on 127.0.0.1. The TCP bind (without SO_REUSEADDR)
    also fails on a port held in TIME-WAIT by an earlier test's client connection, which
    the server's own listener could not take either."""
    for _ in range(200):
        # below the kernel's ephemeral range (32768-60999): no client socket of another
        # test takes it between this check and the server's bind
        p = random.randint(20000, 32767)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind(("127.0.0.1", p))
            t.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise AssertionError("no free port")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def rnd(n=10):
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


class Msg:
    def __init__(self, raw):
        self.raw = raw
        head, _, body = raw.partition("\r\n\r\n")
        lines = head.split("\r\n")
        self.first = lines[0]
        self.headers = []
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.headers.append((k.strip().lower(), v.strip()))
        self.body = body
        self.is_request = not self.first.startswith("SIP/2.0")
        self.status = 0 if self.is_request else int(self.first.split()[1])
        self.method = self.first.split()[0] if self.is_request else self.hdr("cseq").split()[1]

    def hdr(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def tag(self, name):
        m = re.search(r";\s*tag=([^;>\s]+)", self.hdr(name, ""))
        return m.group(1) if m else None


class UA:
    def __init__(self, user, domain, server_port):
        self.user, self.domain, self.server = user, domain, ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.aor = "%s@%s" % (user, domain)
        self.contact = "sip:%s@127.0.0.1:%d" % (user, self.port)
        self.cseq = 1
        self.inbox = []            # requests received (NOTIFYs), in order
        self.answer_code = 200     # what incoming requests get

    def close(self):
        self.sock.close()

    def _send(self, text):
        self.sock.sendto(text.encode(), self.server)

    def _pump(self, timeout):
        """Receives one message (answering requests); returns it or None."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, src = self.sock.recvfrom(65535)
        except socket.timeout:
            return None
        m = Msg(data.decode(errors="replace"))
        if m.is_request:
            resp = "SIP/2.0 %d OK\r\n" % self.answer_code
            for k in ("via", "from", "to", "call-id", "cseq"):
                for v in m.all(k):
                    resp += "%s: %s\r\n" % (k.title(), v)
            resp += "Content-Length: 0\r\n\r\n"
            self.sock.sendto(resp.encode(), src)
            if m.method != "ACK":
                self.inbox.append(m)
        return m

    def request(self, method, ruri=None, headers=None, body=None, ctype=None, call_id=None,
                from_tag=None, to_tag=None, to_uri=None, timeout=5.0):
        ruri = ruri or "sip:%s" % self.aor
        branch = "z9hG4bK" + rnd(16)
        call_id = call_id or rnd(20)
        from_tag = from_tag or rnd(8)
        cseq = self.cseq
        self.cseq += 1
        to_uri = to_uri or ruri
        lines = ["%s %s SIP/2.0" % (method, ruri),
                 "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport" % (self.port, branch),
                 "Max-Forwards: 70",
                 "From: <sip:%s>;tag=%s" % (self.aor, from_tag),
                 "To: <%s>%s" % (to_uri, ";tag=" + to_tag if to_tag else ""),
                 "Call-ID: %s" % call_id,
                 "CSeq: %d %s" % (cseq, method),
                 "Contact: <%s>" % self.contact]
        lines += list(headers or [])
        body = body or ""
        if body:
            lines.append("Content-Type: %s" % ctype)
        lines.append("Content-Length: %d" % len(body.encode()))
        text = "\r\n".join(lines) + "\r\n\r\n" + body
        self._send(text)
        deadline = time.time() + timeout
        last = time.time()
        while time.time() < deadline:
            m = self._pump(min(0.5, deadline - time.time()))
            if m is None:
                if time.time() - last > 0.5:
                    self._send(text)   # UDP retransmission (Timer E, roughly)
                    last = time.time()
                continue
            if not m.is_request and branch in (m.hdr("via") or "") and m.status >= 200:
                m.call_id, m.from_tag = call_id, from_tag
                return m
        raise AssertionError("%s: no final response to %s %s" % (self.user, method, ruri))

    def register(self, expires=600):
        r = self.request("REGISTER", "sip:%s" % self.domain, ["Expires: %d" % expires],
                         to_uri="sip:%s" % self.aor)
        assert r.status == 200, "REGISTER got %d" % r.status
        return r

    def subscribe(self, target, event="presence", expires=600, dialog=None, extra=None):
        hdrs = ["Event: %s" % event, "Expires: %d" % expires] + list(extra or [])
        if dialog:
            return self.request("SUBSCRIBE", dialog["target"], hdrs, call_id=dialog["call_id"],
                                from_tag=dialog["from_tag"], to_tag=dialog["to_tag"],
                                to_uri="sip:%s" % target)
        r = self.request("SUBSCRIBE", "sip:%s" % target, hdrs)
        if r.status == 200:
            r.dialog = {"call_id": r.call_id, "from_tag": r.from_tag, "to_tag": r.tag("to"),
                        "target": re.search(r"<([^>]+)>", r.hdr("contact")).group(1)}
        return r

    def publish(self, doc, etag=None, expires=600, ctype="application/pidf+xml"):
        hdrs = ["Event: presence", "Expires: %d" % expires]
        if etag:
            hdrs.append("SIP-If-Match: %s" % etag)
        return self.request("PUBLISH", "sip:%s" % self.aor, hdrs, body=doc, ctype=ctype)

    def service(self, xml, ctype="application/vnd-parley-service+xml"):
        return self.request("SERVICE", "sip:%s" % self.aor, [], body=xml, ctype=ctype)

    def message(self, target, text="hi"):
        return self.request("MESSAGE", "sip:%s" % target, [], body=text, ctype="text/plain")

    def wait_notify(self, pred, timeout=5.0, what="NOTIFY"):
        """Waits for a received NOTIFY satisfying pred (looks at ones already received first)."""
        deadline = time.time() + timeout
        seen = 0
        while True:
            while seen < len(self.inbox):
                m = self.inbox[seen]
                seen += 1
                if m.method == "NOTIFY" and pred(m):
                    del self.inbox[:seen]
                    return m
            if time.time() >= deadline:
                raise AssertionError("%s: no %s within %.0fs (got %d other requests)"
                                     % (self.user, what, timeout, seen))
            self._pump(min(0.2, deadline - time.time()))

    def drain(self, t=0.3):
        end = time.time() + t
        while time.time() < end:
            self._pump(end - time.time())
        self.inbox.clear()


def pidf(entity, basic="open", activity=None, note=None, tuple_id="t1"):
    person = ""
    if activity:
        person = ('<dm:person id="p1"><rpid:activities><rpid:%s/></rpid:activities></dm:person>' % activity)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
            'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
            'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:%s">'
            '<tuple id="%s"><status><basic>%s</basic></status>%s</tuple>%s</presence>'
            % (entity, tuple_id, basic, "<note>%s</note>" % note if note else "", person))


def multipart(ctype, body):
    """Splits a multipart/related body (RFC 2046 §5.1, RFC 2387) into its Content-Type
    parameters and its parts [(headers dict, body)]; asserts the framing."""
    params = {}
    for p in ctype.split(";")[1:]:
        k, _, v = p.strip().partition("=")
        params[k.lower()] = v.strip('"')
    b = params["boundary"]
    assert body.startswith("--" + b + "\r\n"), "body must open with the boundary"
    end = "\r\n--" + b + "--"
    trimmed = body.rstrip("\r\n")
    assert trimmed.endswith(end), "body must close with the boundary"
    inner = trimmed[len("--" + b + "\r\n"):-len(end)]
    parts = []
    for chunk in inner.split("\r\n--" + b + "\r\n"):
        head, sep, pbody = chunk.partition("\r\n\r\n")
        assert sep, "a part without a header/body separator"
        hdrs = {}
        for line in head.split("\r\n"):
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        parts.append((hdrs, pbody))
    return params, parts
