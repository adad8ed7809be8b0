#!/usr/bin/env python3
"""tls_flow.py: the TLS flow of an outside SIP phone, for sipp builds without TLS.

It keeps ONE TLS connection to the edge (bound to source port --bind-port, so the
phone's Contact 127.0.0.1:<bind-port>;transport=tls names it), as a phone behind NAT
keeps its flow (RFC 5626), and bridges it to plain TCP for sipp:
  - sipp UACs connect to --listen; their messages go up the flow; responses coming
    down the flow go to the UAC connection that spoke last;
  - requests coming down the flow in a call a UAC connection started (same Call-ID, e.g.
    the callee's BYE) go to that UAC; other requests go to a sipp UAS listening on TCP
    --uas (connected on first use); its responses go up the flow.
SIP stream framing by Content-Length. CRLF keep-alives (RFC 5626 §4.4.1) are answered.
Stops when the flow closes, or on SIGTERM. Loopback test tool only.
"""
import argparse
import asyncio
import re
import signal
import socket
import ssl
import sys

CL = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", re.I | re.M)
CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)


def call_id(msg):
    m = CALL_ID.search(msg)
    return m.group(1) if m else None


async def read_msg(reader, pong=None):
    """One framed SIP message, or None at EOF. Leading CRLFs are keep-alives."""
    while True:
        head = await reader.readuntil(b"\r\n")
        if head == b"\r\n":
            # "\r\n\r\n" ping: answer "\r\n" (pong)
            nxt = await reader.readexactly(2)
            if nxt == b"\r\n" and pong is not None:
                pong.write(b"\r\n")
            continue
        rest = await reader.readuntil(b"\r\n\r\n")
        hdr = head + rest
        m = CL.search(hdr)
        n = int(m.group(1)) if m else 0
        body = await reader.readexactly(n) if n else b""
        return hdr + body


class Flow:
    def __init__(self, args):
        self.args = args
        self.up_w = None
        self.client_w = None
        self.uas_w = None
        self.calls = {}   # Call-ID -> the UAC connection that started it
        self.done = asyncio.Event()

    async def pump_client(self, reader, writer):
        try:
            while True:
                msg = await read_msg(reader)
                self.client_w = writer
                if not msg.startswith(b"SIP/2.0") and call_id(msg):
                    self.calls[call_id(msg)] = writer
                self.up_w.write(msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if self.client_w is writer:
                self.client_w = None
            self.calls = {k: w for k, w in self.calls.items() if w is not writer}
            writer.close()

    async def pump_uas(self, reader):
        try:
            while True:
                self.up_w.write(await read_msg(reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.uas_w = None

    async def to_uas(self, msg):
        if self.uas_w is None:
            r, w = await asyncio.open_connection("127.0.0.1", self.args.uas)
            self.uas_w = w
            asyncio.ensure_future(self.pump_uas(r))
        self.uas_w.write(msg)

    async def pump_up(self, reader):
        try:
            while True:
                msg = await read_msg(reader, pong=self.up_w)
                if msg.startswith(b"SIP/2.0"):
                    if self.client_w is not None:
                        self.client_w.write(msg)
                elif call_id(msg) in self.calls:
                    self.calls[call_id(msg)].write(msg)
                elif self.args.uas:
                    await self.to_uas(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            print(f"tls_flow: flow closed: {e!r}", file=sys.stderr)
        self.done.set()

    async def run(self):
        a = self.args
        ctx = ssl.create_default_context(cafile=a.ca)
        ctx.check_hostname = False   # the edge is addressed by IP; the chain is verified
        host, port = a.upstream.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((a.bind_host, a.bind_port))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        r, w = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="")
        self.up_w = w
        server = await asyncio.start_server(self.pump_client, "127.0.0.1", a.listen)
        print("ready", flush=True)
        asyncio.ensure_future(self.pump_up(r))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.done.set)
        await self.done.wait()
        server.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--bind-port", type=int, required=True)
    p.add_argument("--bind-host", default="127.0.0.1", help="source address of the flow to the edge")
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--uas", type=int, default=0)
    asyncio.run(Flow(p.parse_args()).run())


if __name__ == "__main__":
    main()
