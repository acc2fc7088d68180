#!/usr/bin/env python3
"""Interop: a Python `websockets` client sees silverback's graceful shutdown.

Usage: .peers/venv/bin/python interop/python_shutdown.py ws://127.0.0.1:PORT/ws

Install the peer first with scripts/install-peers.sh (websockets 15.0.1 in
.peers/venv). Connects, checks one echo (so the server tracks the
connection), prints "ready", then waits for the server to close (the test
sends it SIGTERM): the server's Close must carry 1001 "server shutting
down", the client must have answered it (a clean closing handshake started
by the server), and the connection must end. Exit status 0 with "all checks
passed"; on failure, 1 with a "FAIL: ..." line on stderr. Every wait is
bounded (TIMEOUT).
"""

import asyncio
import os
import sys

from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

# peer_common.py sits next to this script (see its docstring); it is not
# compiled into a __pycache__ in the checkout.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer_common import CheckFailed, check, client_main, open_connection  # noqa: E402

TIMEOUT = 20.0  # seconds, per step


async def run(url):
    ws = await open_connection(url, TIMEOUT, ping_interval=None)
    await asyncio.wait_for(ws.send("before shutdown"), TIMEOUT)
    got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    check(got == "before shutdown", f"echo: got {got!r}")
    print("ok: echo before the shutdown")
    print("ready", flush=True)

    # Now the server gets SIGTERM: recv ends with the server's Close.
    try:
        msg = await asyncio.wait_for(ws.recv(), TIMEOUT)
        raise CheckFailed(f"expected the server's Close, got a message {msg!r}")
    except ConnectionClosedOK:
        pass
    except ConnectionClosedError as e:
        raise CheckFailed(f"connection closed with an error instead of 1001: {e!r}")
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)

    rcvd = ws.protocol.close_rcvd
    check(rcvd is not None, f"no Close frame received from the server (close_code={ws.close_code})")
    check(rcvd.code == 1001, f"server's Close has code {rcvd.code}, expected 1001")
    check(rcvd.reason == "server shutting down", f"server's Close has reason {rcvd.reason!r}")
    check(ws.protocol.close_sent is not None, "the client did not answer the server's Close")
    check(
        ws.protocol.close_rcvd_then_sent is True,
        "the client's Close went out before the server's arrived (expected the server to start)",
    )
    check(ws.close_code == 1001, f"ws.close_code is {ws.close_code}, expected 1001")
    print(f"ok: server closed with 1001 {rcvd.reason!r}, answered")


if __name__ == "__main__":
    sys.exit(client_main(run, "python websockets shutdown: all checks passed"))
