#!/usr/bin/env python3
"""Sends one INVITE with an RFC 5547 file-transfer offer (file name argv[3], Subject: ft)
to argv[1] (host:port), Request-URI argv[2]; prints "final <code>"."""
import random, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
ruri, name = sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); lp = s.getsockname()[1]
sdp = ("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=message 7654 TCP/MSRP *\r\na=sendonly\r\na=accept-types:message/cpim\r\n"
       "a=file-selector:name:\"%s\" type:application/octet-stream size:1024 hash:sha-1:12:34\r\n"
       "a=path:msrp://127.0.0.1:7654/x;tcp\r\n" % name)
br = "z9hG4bK%08x" % random.getrandbits(32)
msg = ("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\nMax-Forwards: 70\r\n"
       "From: <sip:alice@example.com>;tag=ft1\r\nTo: <%s>\r\nCall-ID: ft-%s@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
       "Subject: ft\r\nContact: <sip:alice@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\n"
       "Content-Length: %d\r\n\r\n%s" % (ruri, lp, br, ruri, br, lp, len(sdp), sdp))
s.sendto(msg.encode(), (host, int(port)))
end = time.time() + 5
while time.time() < end:
    s.settimeout(max(0.05, end - time.time()))
    try:
        d = s.recv(65535).decode("utf-8", "replace")
    except socket.timeout:
        break
    code = int(d.split()[1])
    if code >= 200:
        print("final %d" % code)
        sys.exit(0)
print("final none")
