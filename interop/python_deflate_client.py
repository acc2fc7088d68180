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
import random
import sys

from websockets.asyncio.client import connect

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
TIMEOUT = 30.0  # seconds, per step


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def describe(data):
    if isinstance(data, str):
        return f"text of {len(data.encode())} bytes"
    return f"binary of {len(data)} bytes"


def json_like(n):
    """Highly compressible ASCII, exactly n bytes."""
    parts = []
    total = 0
    i = 0
    while total < n:
        p = f'{{"id":{i},"name":"item {i % 97}","tags":["a","b"],"ok":true}},'
        parts.append(p)
        total += len(p)
        i += 1
    return "".join(parts)[:n]


def random_text(n, rng):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(n))


def random_binary(n, rng):
    return rng.randbytes(n)


async def expect_echo(ws, expected, what):
    got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    check(type(got) is type(expected), f"{what}: sent {describe(expected)}, got back {describe(got)}")
    if got != expected:
        at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        raise CheckFailed(f"{what}: echo differs from offset {at} ({describe(expected)} sent, {describe(got)} received)")


async def run(url):
    rng = random.Random(1234)
    async with asyncio.timeout(TIMEOUT):
        # compression="deflate" is the default; spelled out for clarity.
        ws = await connect(url, compression="deflate", max_size=None, ping_interval=None, close_timeout=TIMEOUT)
    sent_bytes = 0
    sent_messages = 0
    try:
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
                await expect_echo(ws, msg, f"{kind} echo of {n} bytes")
                print(f"ok: {kind} echo, {n} bytes")

        fragments = [json_like(10000), "", json_like(70000), "é" * 1000]
        await asyncio.wait_for(ws.send(fragments), TIMEOUT)
        joined = "".join(fragments)
        sent_bytes += len(joined.encode())
        sent_messages += 1
        await expect_echo(ws, joined, "fragmented compressed text")
        print(f"ok: fragmented compressed text ({len(fragments)} fragments)")
    except BaseException:
        ws.transport.abort()
        raise

    await asyncio.wait_for(ws.close(1000, "deflate interop done"), 2 * TIMEOUT)
    rcvd = ws.protocol.close_rcvd
    check(rcvd is not None and rcvd.code == 1000, f"server's Close: {rcvd!r}")
    print("ok: close 1000 echoed")
    print(f"sent: {sent_bytes} bytes in {sent_messages} messages")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} ws://HOST:PORT/PATH", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(sys.argv[1]))
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # connection errors, timeouts, protocol errors
        print(f"FAIL: {type(e).__name__}: {e!r}", file=sys.stderr)
        return 1
    print("python websockets deflate interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
