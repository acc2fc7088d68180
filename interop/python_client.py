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
import sys

from websockets.asyncio.client import connect

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
TIMEOUT = 20.0  # seconds, per step


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def describe(data):
    if isinstance(data, str):
        return f"text of {len(data.encode())} bytes"
    return f"binary of {len(data)} bytes"


async def expect_echo(ws, sent, expected, what):
    got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    check(type(got) is type(expected), f"{what}: sent {describe(expected)}, got back {describe(got)}")
    if got != expected:
        at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        raise CheckFailed(
            f"{what}: echo differs from offset {at} ({describe(expected)} sent, {describe(got)} received)"
        )


def text_payload(n):
    # ASCII so that the byte length is exactly n.
    return "".join(chr(ord("a") + i % 26) for i in range(n))


def binary_payload(n):
    # All byte values, including the ones invalid in UTF-8.
    return bytes(i % 256 for i in range(n))


async def run(url):
    # max_size=None: the 1 MiB echo exceeds the default limit.
    # ping_interval=None: no keepalive pings of our own besides the checked one.
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(url, max_size=None, ping_interval=None, close_timeout=TIMEOUT)
    try:
        for n in SIZES:
            msg = text_payload(n)
            await asyncio.wait_for(ws.send(msg), TIMEOUT)
            await expect_echo(ws, msg, msg, f"text echo of {n} bytes")
            print(f"ok: text echo, {n} bytes")
        for n in SIZES:
            msg = binary_payload(n)
            await asyncio.wait_for(ws.send(msg), TIMEOUT)
            await expect_echo(ws, msg, msg, f"binary echo of {n} bytes")
            print(f"ok: binary echo, {n} bytes")

        fragments = ["Hello, ", "", "fragmented ", "world ", "é" * 100]
        await asyncio.wait_for(ws.send(fragments), TIMEOUT)
        await expect_echo(ws, fragments, "".join(fragments), "fragmented text")
        print(f"ok: fragmented text ({len(fragments)} fragments)")

        # "€" is E2 82 AC: split one code point over three frames.
        utf8 = "price: 5€, done".encode()
        cut = utf8.index(b"\xe2")
        split = [utf8[: cut + 1], utf8[cut + 1 : cut + 2], utf8[cut + 2 :]]
        await asyncio.wait_for(ws.send(split, text=True), TIMEOUT)
        await expect_echo(ws, split, utf8.decode(), "fragmented text split inside a code point")
        print("ok: fragmented text, code point split across frames")

        chunks = [binary_payload(1000), b"", binary_payload(70000), b"\x00\xff"]
        await asyncio.wait_for(ws.send(chunks), TIMEOUT)
        await expect_echo(ws, chunks, b"".join(chunks), "fragmented binary")
        print(f"ok: fragmented binary ({len(chunks)} fragments)")

        pong_waiter = await asyncio.wait_for(ws.ping(b"silverback?"), TIMEOUT)
        latency = await asyncio.wait_for(pong_waiter, TIMEOUT)
        print(f"ok: ping answered ({latency * 1000:.1f} ms)")

        # The protocol handles the pong when the connection reads it, so a
        # message after the ping also proves the connection is still sane.
        await asyncio.wait_for(ws.send("after ping"), TIMEOUT)
        await expect_echo(ws, "after ping", "after ping", "echo after ping")
    except BaseException:
        # Keep the first failure: drop the connection without a handshake.
        ws.transport.abort()
        raise

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


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} ws://HOST:PORT/PATH", file=sys.stderr)
        return 2
    url = sys.argv[1]
    try:
        asyncio.run(run(url))
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # connection errors, timeouts, protocol errors
        print(f"FAIL: {type(e).__name__}: {e!r}", file=sys.stderr)
        return 1
    print("python websockets interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
