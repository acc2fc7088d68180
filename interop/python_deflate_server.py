#!/usr/bin/env python3
"""Interop echo server with permessage-deflate: Python `websockets`, for
silverback's client (Dialer with compression) to talk to.

Usage: .peers/venv/bin/python interop/python_deflate_server.py [PORT]

Listens on 127.0.0.1:PORT (default 0: a free port) and prints
"listening on ws://127.0.0.1:PORT" once ready. Accepts permessage-deflate
with websockets' defaults (compression="deflate": server_max_window_bits=12,
client_max_window_bits=12 when the client allows it, memLevel 5; it agrees
to every no_context_takeover and window size the client asks for). For each
connection it prints "connection: negotiated <Sec-WebSocket-Extensions of
its response>", then echoes every message (text as text, binary as binary)
until the client closes. No message size limit. Exits by itself after
LIFETIME seconds (the tests kill it long before).

Install the peer first with scripts/install-peers.sh (websockets 15.0.1 in
.peers/venv).
"""

import asyncio
import os
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

# peer_common.py sits next to this script (see its docstring); it is not
# compiled into a __pycache__ in the checkout.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer_common import announce_listening, serve_for  # noqa: E402

LIFETIME = 300.0  # seconds


async def echo(ws):
    header = ws.response.headers.get("Sec-WebSocket-Extensions")
    print(f"connection: negotiated {header}", flush=True)
    try:
        async for msg in ws:
            await ws.send(msg)
    except ConnectionClosed:
        pass


async def main(port):
    async with serve(echo, "127.0.0.1", port, compression="deflate", max_size=None, ping_interval=None) as server:
        announce_listening(server)
        await serve_for(server, LIFETIME)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    asyncio.run(main(port))
