#!/usr/bin/env python3
"""REGISTER with SHA-256 digest (RFC 8760) over UDP: checks that the 401 offers SHA-256
first and MD5 second, answers the SHA-256 challenge, and prints the final status code.
usage: digest_register.py SERVER_PORT USER DOMAIN PASSWORD [ALGORITHM]"""
import hashlib, random, re, socket, sys

port, user, domain, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
alg = sys.argv[5] if len(sys.argv) > 5 else "SHA-256"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(3)
lport = s.getsockname()[1]
callid = "%x@py" % random.getrandbits(64)
ruri = "sip:%s" % domain

def register(cseq, auth=None):
    msg = ("REGISTER %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%x;rport\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=py1\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\n"
           "CSeq: %d REGISTER\r\nContact: <sip:%s@127.0.0.1:%d>\r\nExpires: 600\r\n%s"
           "Content-Length: 0\r\n\r\n") % (ruri, lport, random.getrandbits(48), user, domain, user, domain,
                                           callid, cseq, user, lport, auth or "")
    s.sendto(msg.encode(), ("127.0.0.1", port))
    while True:
        data = s.recv(65535).decode()
        code = int(data.split(" ", 2)[1])
        if code >= 200:
            return code, data

code, resp = register(1)
if code != 401:
    sys.exit("expected 401, got %d" % code)
chals = re.findall(r"^WWW-Authenticate:\s*(.*)$", resp, re.M | re.I)
algs = [re.search(r"algorithm=([A-Za-z0-9-]+)", c).group(1) for c in chals]
if algs != ["SHA-256", "MD5"]:
    sys.exit("challenges offer %s, want SHA-256 then MD5" % algs)
chal = chals[algs.index(alg)]
realm = re.search(r'realm="([^"]*)"', chal).group(1)
nonce = re.search(r'nonce="([^"]*)"', chal).group(1)
H = (lambda x: hashlib.sha256(x.encode()).hexdigest()) if alg == "SHA-256" else \
    (lambda x: hashlib.md5(x.encode()).hexdigest())
cnonce, nc = "%x" % random.getrandbits(32), "00000001"
ha1 = H("%s:%s:%s" % (user, realm, password))
ha2 = H("REGISTER:%s" % ruri)
response = H(":".join([ha1, nonce, nc, cnonce, "auth", ha2]))
auth = ('Authorization: Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", '
        'algorithm=%s, qop=auth, nc=%s, cnonce="%s"\r\n') % (user, realm, nonce, ruri, response, alg, nc, cnonce)
code, resp = register(2, auth)
print(code)
