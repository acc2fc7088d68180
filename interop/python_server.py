#!/usr/bin/env python3
"""Interop server: Python `websockets` (asyncio API) for silverback's client.

Usage: .peers/venv/bin/python interop/python_server.py

Listens on 127.0.0.1 (port chosen by the system) and prints
`listening on ws://127.0.0.1:PORT` once ready. Then, for every connection:
  * the path /private is refused with 401, a `WWW-Authenticate` header and
    the body "go away" (process_request);
  * subprotocol "b" is chosen when the client offers it;
  * if the request has an X-Test header, its value is sent as the first
    (text) message;
  * messages are echoed as they came (text or binary), except the text
    "close-me", answered by a close with 4001 "bye from python";
  * when the connection has closed, `closed code=N reason=R` is printed,
    with the code and reason of the Close frame received from the client.
Exits when its parent process goes away. Install the peer first with
scripts/install-peers.sh (websockets 15.0.1 in .peers/venv).
"""

import asyncio
import http
import os
import sys
from urllib.parse import urlsplit

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

# peer_common.py sits next to this script (see its docstring); it is not
# compiled into a __pycache__ in the checkout.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer_common import announce_listening, orphan_watch  # noqa: E402


def process_request(connection, request):
    if urlsplit(request.path).path == "/private":
        response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "go away")
        response.headers["WWW-Authenticate"] = 'Basic realm="interop"'
        return response
    return None


def select_subprotocol(connection, subprotocols):
    return "b" if "b" in subprotocols else None


async def handler(ws):
    value = ws.request.headers.get("X-Test")
    try:
        if value is not None:
            await ws.send(value)
        async for message in ws:
            if message == "close-me":
                await ws.close(4001, "bye from python")
                break
            await ws.send(message)
    except ConnectionClosed:
        pass
    await ws.wait_closed()
    rcvd = ws.protocol.close_rcvd
    code, reason = (rcvd.code, rcvd.reason) if rcvd is not None else (1006, "")
    print(f"closed code={code} reason={reason}", flush=True)


async def main():
    async with serve(
        handler,
        "127.0.0.1",
        0,
        process_request=process_request,
        select_subprotocol=select_subprotocol,
        max_size=None,
        ping_interval=None,
        compression=None,
    ) as server:
        announce_listening(server)
        await orphan_watch()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
