#!/usr/bin/env python3
"""Interop client: Python `websockets` (asyncio API) against silverback's echo server.

Usage: .peers/venv/bin/python interop/python_client.py ws://127.0.0.1:PORT/ws

Install the peer first with scripts/install-peers.sh (websockets 15.0.1 in
.peers/venv). Checks, in order, on one connection:
  * echo of text and binary messages of 0, 125, 126, 65535, 65536 and
    1048576 bytes (the frame length encodings' boundaries);
  * echo of fragmented messages (text, text with a code point split across
    frames, binary), which must come back joined;
  * a ping is answered (the pong waiter resolves);
  * a close from the client with 4000 "interop done": the server's Close
    must echo code 4000.
Exit status 0 on success; on failure, 1 with a "FAIL: ..." line on stderr.
Every network wait is bounded (see TIMEOUT).
"""

import asyncio
import os
import sys

# peer_common.py sits next to this script (see its docstring); it is not
# compiled into a __pycache__ in the checkout.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer_common import abort_on_failure, check, client_main, expect_echo, open_connection  # noqa: E402
from peer_common import SIZES, binary_payload, text_payload  # noqa: E402

TIMEOUT = 20.0  # seconds, per step


async def run(url):
    # max_size=None: the 1 MiB echo exceeds the default limit.
    # ping_interval=None: no keepalive pings of our own besides the checked one.
    ws = await open_connection(url, TIMEOUT, max_size=None, ping_interval=None)
    with abort_on_failure(ws):
        for n in SIZES:
            msg = text_payload(n)
            await asyncio.wait_for(ws.send(msg), TIMEOUT)
            await expect_echo(ws, msg, f"text echo of {n} bytes", TIMEOUT)
            print(f"ok: text echo, {n} bytes")
        for n in SIZES:
            msg = binary_payload(n)
            await asyncio.wait_for(ws.send(msg), TIMEOUT)
            await expect_echo(ws, msg, f"binary echo of {n} bytes", TIMEOUT)
            print(f"ok: binary echo, {n} bytes")

        fragments = ["Hello, ", "", "fragmented ", "world ", "é" * 100]
        await asyncio.wait_for(ws.send(fragments), TIMEOUT)
        await expect_echo(ws, "".join(fragments), "fragmented text", TIMEOUT)
        print(f"ok: fragmented text ({len(fragments)} fragments)")

        # "€" is E2 82 AC: split one code point over three frames.
        utf8 = "price: 5€, done".encode()
        cut = utf8.index(b"\xe2")
        split = [utf8[: cut + 1], utf8[cut + 1 : cut + 2], utf8[cut + 2 :]]
        await asyncio.wait_for(ws.send(split, text=True), TIMEOUT)
        await expect_echo(ws, utf8.decode(), "fragmented text split inside a code point", TIMEOUT)
        print("ok: fragmented text, code point split across frames")

        chunks = [binary_payload(1000), b"", binary_payload(70000), b"\x00\xff"]
        await asyncio.wait_for(ws.send(chunks), TIMEOUT)
        await expect_echo(ws, b"".join(chunks), "fragmented binary", TIMEOUT)
        print(f"ok: fragmented binary ({len(chunks)} fragments)")

        pong_waiter = await asyncio.wait_for(ws.ping(b"silverback?"), TIMEOUT)
        latency = await asyncio.wait_for(pong_waiter, TIMEOUT)
        print(f"ok: ping answered ({latency * 1000:.1f} ms)")

        # The protocol handles the pong when the connection reads it, so a
        # message after the ping also proves the connection is still sane.
        await asyncio.wait_for(ws.send("after ping"), TIMEOUT)
        await expect_echo(ws, "after ping", "echo after ping", TIMEOUT)

    # close() waits for the server's Close and the end of TCP; bounded by
    # close_timeout (then it aborts, and the checks below fail).
    await asyncio.wait_for(ws.close(4000, "interop done"), 2 * TIMEOUT)

    # websockets 15: the Close frames live on the Sans-I/O protocol object;
    # ws.close_code / ws.close_reason mirror close_rcvd once CLOSED.
    rcvd = ws.protocol.close_rcvd
    check(rcvd is not None, f"no Close frame received from the server (close_code={ws.close_code})")
    check(rcvd.code == 4000, f"server's Close has code {rcvd.code}, expected 4000 echoed")
    check(ws.close_code == 4000, f"ws.close_code is {ws.close_code}, expected 4000")
    check(
        ws.protocol.close_rcvd_then_sent is False,
        "the server sent its Close before ours (expected it to answer our Close)",
    )
    print(f"ok: close 4000 echoed (reason {rcvd.reason!r})")


if __name__ == "__main__":
    sys.exit(client_main(run, "python websockets interop: all checks passed"))
