#!/usr/bin/env python3
"""SIP peers for the connection-trust tests (tests/integration/trust/run.sh). Loopback only,
every socket operation bounded by a timeout.

  tls PORT ADMIN_URL CA CERT|- KEY|- [DOMAIN]
      TLS connection presenting CERT (or none), a MESSAGE to nobody@DOMAIN on it; prints
      "<status> <class>" (class from ADMIN_URL/api/connections while the connection is open)
      or "refused" when the server refused the handshake / closed without an answer.
  udp_sink IP PORT SECONDS OUTFILE
      binds IP:PORT (UDP and TCP) and writes every datagram/connection it gets to OUTFILE.
  send PROTO PORT SRC_IP EXTRA_HEADERS RURI
      one MESSAGE over udp/tcp from SRC_IP, EXTRA_HEADERS ('|' separated lines, or -);
      prints the final status.
  throttle PORT DOMAIN N
      registers bob (contact = a UAS that answers MESSAGE after 1 s), then sends N MESSAGEs
      to bob on ONE TCP connection at once; prints the final statuses in arrival order, one
      per line ("503 retry-after=<v>" for a 503), then one more MESSAGE after those ("again 200").
  gateway HS_PORT GW_PORT DOMAIN USER PASSWORD
      USER registers with MD5 digest (contact = a UAS answering 200); a MESSAGE from
      "+15551234@pstn" to USER is sent to GW_PORT from 127.0.0.1, then from 127.0.0.2;
      prints "allowed <status> delivered=<0|1>" and "other <status> delivered=<0|1>".
"""
import hashlib, json, random, re, socket, ssl, sys, threading, time, urllib.request

TIMEOUT = 5


def rnd():
    return "%x" % random.getrandbits(48)


def message(proto, lhost, lport, ruri, to, frm="sip:tester@example.com", extra="", body="hello",
            method="MESSAGE", cseq=1, callid=None):
    extra_lines = "".join(h + "\r\n" for h in extra)
    return ("%s %s SIP/2.0\r\nVia: SIP/2.0/%s %s:%d;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"
            "From: <%s>;tag=%s\r\nTo: <%s>\r\nCall-ID: %s@trust\r\nCSeq: %d %s\r\n%s"
            "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s") % (
        method, ruri, proto, lhost, lport, rnd(), frm, rnd(), to, callid or rnd(), cseq, method,
        extra_lines, len(body), body)


def read_stream_msg(sock, buf):
    """One SIP message from a stream (Content-Length framing); returns (msg, rest) or (None, buf)."""
    while True:
        if b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            m = re.search(rb"^(?:Content-Length|l)\s*:\s*(\d+)", head, re.M | re.I)
            n = int(m.group(1)) if m else 0
            if len(rest) >= n:
                return (head + b"\r\n\r\n" + rest[:n]).decode(errors="replace"), rest[n:]
        data = sock.recv(65535)
        if not data:
            return None, buf
        buf += data


def status(msg):
    return int(msg.split(" ", 2)[1])


def header(msg, name):
    m = re.search(r"^%s\s*:\s*(.*?)\r?$" % re.escape(name), msg, re.M | re.I)
    return m.group(1).strip() if m else None


def reply_to(req, code, reason="OK", totag="uas1"):
    """A response to <req> (text): Vias, From, To (+tag), Call-ID, CSeq copied."""
    vias = re.findall(r"^(?:Via|v)\s*:.*?\r?$", req, re.M | re.I)
    lines = ["SIP/2.0 %d %s" % (code, reason)] + [v.rstrip("\r") for v in vias]
    for h in ("From", "Call-ID", "CSeq"):
        lines.append("%s: %s" % (h, header(req, h)))
    to = header(req, "To")
    if ";tag=" not in to:
        to += ";tag=" + totag
    lines.append("To: " + to)
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


def final_udp(s):
    while True:
        data, _ = s.recvfrom(65535)
        msg = data.decode(errors="replace")
        if msg.startswith("SIP/2.0") and status(msg) >= 200:
            return msg


# ------------------------------------------------------------------ tls

def cmd_tls(port, admin, ca, cert, key, domain="example.com"):
    port = int(port)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False
    if cert != "-":
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        lport = s.getsockname()[1]
        s.sendall(message("TLS", "127.0.0.1", lport, "sip:nobody@%s" % domain,
                          "sip:nobody@%s" % domain).encode())
        while True:
            msg, _ = read_stream_msg(s, b"")
            if msg is None:
                print("refused")
                return
            if status(msg) >= 200:
                break
    except (ssl.SSLError, ConnectionError, socket.timeout, OSError):
        print("refused")
        return
    cls = "unknown"
    with urllib.request.urlopen(admin + "/api/connections", timeout=TIMEOUT) as r:
        for c in json.load(r)["connections"]:
            if c["peer"] == "127.0.0.1:%d" % lport:
                cls = c["class"]
    print(status(msg), cls)
    s.close()


# ------------------------------------------------------------------ sink

def cmd_udp_sink(ip, port, seconds, outfile):
    port, seconds = int(port), float(seconds)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((ip, port))
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((ip, port))
    t.listen(8)
    u.settimeout(0.1)
    t.settimeout(0.1)
    with open(outfile, "w") as f:
        f.write("")
    end = time.time() + seconds
    while time.time() < end:
        for sock in (u, t):
            try:
                if sock is u:
                    data, src = u.recvfrom(65535)
                else:
                    c, src = t.accept()
                    data = b"<tcp connection>"
                    c.close()
            except socket.timeout:
                continue
            with open(outfile, "a") as f:
                f.write("%s %s\n" % (src, data[:80]))


# ------------------------------------------------------------------ send

def cmd_send(proto, port, src_ip, extra, ruri):
    port = int(port)
    extra = [] if extra == "-" else extra.split("|")
    to = re.sub(r";.*$", "", ruri)
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src_ip, 0))
        s.settimeout(TIMEOUT)
        s.sendto(message("UDP", src_ip, s.getsockname()[1], ruri, to, extra=extra).encode(),
                 ("127.0.0.1", port))
        print(status(final_udp(s)))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src_ip, 0))
        s.settimeout(TIMEOUT)
        s.connect(("127.0.0.1", port))
        s.sendall(message("TCP", src_ip, s.getsockname()[1], ruri, to, extra=extra).encode())
        buf = b""
        while True:
            msg, buf = read_stream_msg(s, buf)
            if msg is None or status(msg) >= 200:
                break
        print(status(msg) if msg else "closed")


# ------------------------------------------------------------------ a UAS

class Uas(threading.Thread):
    """UDP UAS on 127.0.0.1: answers every request with 200 after <delay> seconds."""

    def __init__(self, delay=0.0):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.delay = delay
        self.received = 0
        self.stop = False
        self.pending = []
        self.lock = threading.Lock()
        self.inbox = []          # responses addressed to this socket (REGISTER answers)

    def run(self):
        while not self.stop:
            now = time.time()
            for due, req, src in [p for p in self.pending if p[0] <= now]:
                self.sock.sendto(reply_to(req, 200).encode(), src)
                self.pending.remove((due, req, src))
            try:
                data, src = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            msg = data.decode(errors="replace")
            if msg.startswith("SIP/2.0"):
                with self.lock:
                    self.inbox.append(msg)
                continue
            if msg.startswith("ACK"):
                continue
            self.received += 1
            self.pending.append((time.time() + self.delay, msg, src))

    def request(self, text, dst, want_final=True):
        """Sends <text> from the UAS socket and waits for its final response."""
        with self.lock:
            self.inbox.clear()
        self.sock.sendto(text.encode(), dst)
        end = time.time() + TIMEOUT
        while time.time() < end:
            with self.lock:
                for m in self.inbox:
                    if status(m) >= 200:
                        return m
            time.sleep(0.01)
        raise SystemExit("no answer to " + text.split(" ", 1)[0])


def register(uas, port, user, domain, password=None):
    callid = rnd()
    ruri = "sip:%s" % domain
    def req(cseq, auth=""):
        return ("REGISTER %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=r%s\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\n"
                "CSeq: %d REGISTER\r\nContact: <sip:%s@127.0.0.1:%d>\r\nExpires: 600\r\n%s"
                "Content-Length: 0\r\n\r\n") % (ruri, uas.port, rnd(), user, domain, callid, user, domain,
                                                callid, cseq, user, uas.port, auth)
    resp = uas.request(req(1), ("127.0.0.1", port))
    if status(resp) == 401 and password:
        chal = header(resp, "WWW-Authenticate")
        realm = re.search(r'realm="([^"]*)"', chal).group(1)
        nonce = re.search(r'nonce="([^"]*)"', chal).group(1)
        H = lambda x: hashlib.md5(x.encode()).hexdigest()
        cnonce, nc = rnd(), "00000001"
        ha1 = H("%s:%s:%s" % (user, realm, password))
        ha2 = H("REGISTER:%s" % ruri)
        response = H(":".join([ha1, nonce, nc, cnonce, "auth", ha2]))
        auth = ('Authorization: Digest username="%s", realm="%s", nonce="%s", uri="%s", '
                'response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="%s"\r\n') % (
            user, realm, nonce, ruri, response, nc, cnonce)
        resp = uas.request(req(2, auth), ("127.0.0.1", port))
    if status(resp) != 200:
        raise SystemExit("REGISTER %s -> %d" % (user, status(resp)))


# ------------------------------------------------------------------ throttle

def cmd_throttle(port, domain, n):
    port, n = int(port), int(n)
    uas = Uas(delay=1.0)
    uas.start()
    register(uas, port, "bob", domain)
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    lport = s.getsockname()[1]
    target = "sip:bob@%s" % domain
    s.sendall(b"".join(message("TCP", "127.0.0.1", lport, target, target).encode() for _ in range(n)))
    buf, got = b"", []
    while len(got) < n:
        msg, buf = read_stream_msg(s, buf)
        if msg is None:
            break
        if status(msg) >= 200:
            code = status(msg)
            got.append("503 retry-after=%s" % header(msg, "Retry-After") if code == 503 else str(code))
    print("\n".join(got))
    s.sendall(message("TCP", "127.0.0.1", lport, target, target).encode())
    while True:
        msg, buf = read_stream_msg(s, buf)
        if msg is None or status(msg) >= 200:
            break
    print("again", status(msg) if msg else "closed")
    uas.stop = True


# ------------------------------------------------------------------ gateway

def cmd_gateway(hs_port, gw_port, domain, user, password):
    hs_port, gw_port = int(hs_port), int(gw_port)
    uas = Uas()
    uas.start()
    register(uas, hs_port, user, domain, password)
    target = "sip:%s@%s" % (user, domain)
    for label, ip in (("allowed", "127.0.0.1"), ("other", "127.0.0.2")):
        before = uas.received
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, 0))
        s.settimeout(TIMEOUT)
        s.sendto(message("UDP", ip, s.getsockname()[1], target, target, frm="sip:+15551234@pstn.test").encode(),
                 ("127.0.0.1", gw_port))
        code = status(final_udp(s))
        print(label, code, "delivered=%d" % (uas.received - before))
    uas.stop = True


if __name__ == "__main__":
    cmds = {"tls": cmd_tls, "udp_sink": cmd_udp_sink, "send": cmd_send, "throttle": cmd_throttle,
            "gateway": cmd_gateway}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])
