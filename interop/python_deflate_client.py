#!/usr/bin/env python3
"""Interop client with permessage-deflate: Python `websockets` against an echo
server (silverback serve, compression on by default).

Usage: .peers/venv/bin/python interop/python_deflate_client.py ws://127.0.0.1:PORT/ws

Install the peer first with scripts/install-peers.sh (websockets 15.0.1 in
.peers/venv). On one connection, offering permessage-deflate (the default
offer of websockets: "permessage-deflate; client_max_window_bits"):
  * prints "negotiated: <Sec-WebSocket-Extensions of the response>" and
    "extension: <websockets' view of the agreed parameters>", and fails
    unless permessage-deflate was agreed;
  * echo of text and binary messages of 0, 125, 126, 65535, 65536 and
    1048576 bytes, each highly compressible (JSON-like) and random
    (incompressible; random text is random letters);
  * echo of a fragmented compressed message (websockets compresses each
    fragment, RSV1 on the first only);
  * a close with 1000.
Prints "sent: N bytes in M messages" (payload bytes, before compression) so
that the caller can compare with what went over the wire, then the success
line. Exit status 0 on success; on failure, 1 with a "FAIL: ..." line on
stderr. Every network wait is bounded (see TIMEOUT).
"""

import asyncio
import os
import random
import sys

# peer_common.py sits next to this script (see its docstring); it is not
# compiled into a __pycache__ in the checkout.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer_common import abort_on_failure, check, client_main, expect_echo, open_connection  # noqa: E402
from peer_common import SIZES, json_like, random_binary, random_text  # noqa: E402

TIMEOUT = 30.0  # seconds, per step


async def run(url):
    rng = random.Random(1234)
    # compression="deflate" is the default; spelled out for clarity.
    ws = await open_connection(url, TIMEOUT, compression="deflate", max_size=None, ping_interval=None)
    sent_bytes = 0
    sent_messages = 0
    with abort_on_failure(ws):
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        print(f"negotiated: {header}")
        names = [e.name for e in ws.protocol.extensions]
        print(f"extension: {', '.join(repr(e) for e in ws.protocol.extensions)}")
        check(header is not None and header.startswith("permessage-deflate"), f"no permessage-deflate in the response: {header!r}")
        check(names == ["permessage-deflate"], f"extensions in use: {names}")

        for n in SIZES:
            for kind, msg in [
                ("compressible text", json_like(n)),
                ("random text", random_text(n, rng)),
                ("compressible binary", json_like(n).encode()),
                ("random binary", random_binary(n, rng)),
            ]:
                await asyncio.wait_for(ws.send(msg), TIMEOUT)
                sent_bytes += n
                sent_messages += 1
                await expect_echo(ws, msg, f"{kind} echo of {n} bytes", TIMEOUT)
                print(f"ok: {kind} echo, {n} bytes")

        fragments = [json_like(10000), "", json_like(70000), "é" * 1000]
        await asyncio.wait_for(ws.send(fragments), TIMEOUT)
        joined = "".join(fragments)
        sent_bytes += len(joined.encode())
        sent_messages += 1
        await expect_echo(ws, joined, "fragmented compressed text", TIMEOUT)
        print(f"ok: fragmented compressed text ({len(fragments)} fragments)")

    await asyncio.wait_for(ws.close(1000, "deflate interop done"), 2 * TIMEOUT)
    rcvd = ws.protocol.close_rcvd
    check(rcvd is not None and rcvd.code == 1000, f"server's Close: {rcvd!r}")
    print("ok: close 1000 echoed")
    print(f"sent: {sent_bytes} bytes in {sent_messages} messages")


if __name__ == "__main__":
    sys.exit(client_main(run, "python websockets deflate interop: all checks passed"))
