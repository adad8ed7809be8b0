#!/usr/bin/env python3
"""A small SIP UAC over UDP for the agent tests (standard library only, 127.0.0.1 only).

  uac.py one HOST:PORT METHOD RURI [TIMEOUT]
      sends one request, absorbs provisionals, ACKs a non-2xx INVITE final answer, and
      prints "final <code>" (or "final none" when nothing came within TIMEOUT seconds)
      and "provisional <code>..." lines; exit 0.
  uac.py many HOST:PORT METHOD RURI N [TIMEOUT]
      sends N requests at once from one socket and prints a JSON object of the final codes.
"""
import json, random, socket, sys, time

def build(method, ruri, lport, i):
    branch = "z9hG4bK%08x%d" % (random.getrandbits(32), i)
    body = "hello %d" % i if method == "MESSAGE" else ""
    ctype = "Content-Type: text/plain\r\n" if body else ""
    cid = "agt-%d-%d-%08x@127.0.0.1" % (lport, i, random.getrandbits(32))
    msg = ("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\nMax-Forwards: 70\r\n"
           "From: <sip:alice@example.com>;tag=a%d\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: 1 %s\r\n"
           "Contact: <sip:alice@127.0.0.1:%d>\r\n%sContent-Length: %d\r\n\r\n%s"
           % (method, ruri, lport, branch, i, ruri, cid, method, lport, ctype, len(body), body))
    return msg, cid

def parse(data):
    text = data.decode("utf-8", "replace")
    first, _, rest = text.partition("\r\n")
    if not first.startswith("SIP/2.0 "):
        return None, None, text
    hdr = {}
    for line in rest.split("\r\n"):
        if not line:
            break
        k, _, v = line.partition(":")
        hdr.setdefault(k.strip().lower(), v.strip())
    return int(first.split()[1]), hdr, text

def ack_for(orig, code, hdr, ruri, lport):
    via = [l for l in orig.split("\r\n") if l.startswith("Via:")][0]
    return ("ACK %s SIP/2.0\r\n%s\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\n"
            "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n" % (ruri, via, hdr.get("from"), hdr.get("to"),
                                                          hdr.get("call-id")))

def main():
    mode, hp, method, ruri = sys.argv[1:5]
    host, port = hp.rsplit(":", 1)
    dst = (host, int(port))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    lport = s.getsockname()[1]
    if mode == "one":
        timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 10
        msg, cid = build(method, ruri, lport, 0)
        s.sendto(msg.encode(), dst)
        end = time.time() + timeout
        while time.time() < end:
            s.settimeout(max(0.05, end - time.time()))
            try:
                data = s.recv(65535)
            except socket.timeout:
                break
            code, hdr, _ = parse(data)
            if code is None:
                continue
            if code < 200:
                print("provisional %d" % code, flush=True)
                continue
            if method == "INVITE" and code >= 300:
                s.sendto(ack_for(msg, code, hdr, ruri, lport).encode(), dst)
            print("final %d" % code)
            for k in ("x-agent", "warning", "contact"):
                if k in hdr:
                    print("header %s: %s" % (k, hdr[k]))
            return
        print("final none")
        return
    n = int(sys.argv[5])
    timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 10
    pending = {}
    for i in range(n):
        msg, cid = build(method, ruri, lport, i)
        pending[cid] = msg
        s.sendto(msg.encode(), dst)
    codes = {}
    end = time.time() + timeout
    while pending and time.time() < end:
        s.settimeout(max(0.05, end - time.time()))
        try:
            data = s.recv(65535)
        except socket.timeout:
            break
        code, hdr, _ = parse(data)
        if code is None or code < 200:
            continue
        cid = hdr.get("call-id") or hdr.get("i")
        if cid in pending:
            del pending[cid]
            codes[str(code)] = codes.get(str(code), 0) + 1
    codes["none"] = len(pending)
    print(json.dumps(codes))

main()
