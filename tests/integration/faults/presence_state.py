#!/usr/bin/env python3
"""Stored presence state for the kill -9 test: N watchers subscribe to TARGET's presence
and one user stores a contact list (SERVICE), using tests/integration/presence/sipua.py.
Prints "ready" when every SUBSCRIBE got 200 and the list is stored, then keeps answering
NOTIFYs for SECONDS (so no subscription ends because its watcher went away).

  presence_state.py SERVER_PORT TARGET_USER N SECONDS
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "presence"))
from sipua import UA  # noqa: E402

DOMAIN = "example.com"
LISTS_NS = "urn:parley:params:xml:ns:contacts"


def main():
    port, target, n, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    uas = []
    for i in range(n):
        w = UA("watcher%d" % i, DOMAIN, port)
        w.register()
        r = w.subscribe("%s@%s" % (target, DOMAIN))
        assert r.status == 200, "SUBSCRIBE watcher%d: %d" % (i, r.status)
        uas.append(w)
    owner = uas[0]
    doc = ('<?xml version="1.0"?><service xmlns="%s" version="0">'
           '<set-group id="1" name="Friends"/><set-contact uri="sip:%s@%s" name="T" groups="1"/>'
           '</service>' % (LISTS_NS, target, DOMAIN))
    r = owner.service(doc)
    assert r.status == 200, "SERVICE: %d %s" % (r.status, r.body if hasattr(r, "body") else "")
    print("ready", flush=True)
    end = time.time() + seconds
    while time.time() < end:
        for w in uas:
            w.drain(0.05)


if __name__ == "__main__":
    main()
