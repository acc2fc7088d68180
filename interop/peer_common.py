"""Shared parts of the Python interop peers (python_*.py in this directory):
the check helpers of the clients, their payload generators and echo check,
their command line and exit status, and the servers' startup and exit
boilerplate.

The scripts are run as `.peers/venv/bin/python interop/SCRIPT.py`, so
Python puts interop/ first on sys.path and `import peer_common` finds this
file; each script also puts its own directory there itself, in case it is
run with -P or PYTHONSAFEPATH. Needs the peer's websockets (15.0.1 in
.peers/venv, installed by scripts/install-peers.sh).
"""

import asyncio
import contextlib
import os
import sys

from websockets.asyncio.client import connect

# The frame length encodings' boundaries (7-bit, 16-bit, 64-bit lengths).
SIZES = [0, 125, 126, 65535, 65536, 1 << 20]

# ----- clients ----------------------------------------------------------------


class CheckFailed(Exception):
    """A failed check: reported as "FAIL: <message>"."""


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def describe(data):
    if isinstance(data, str):
        return f"text of {len(data.encode())} bytes"
    return f"binary of {len(data)} bytes"


def text_payload(n):
    # ASCII so that the byte length is exactly n.
    return "".join(chr(ord("a") + i % 26) for i in range(n))


def binary_payload(n):
    # All byte values, including the ones invalid in UTF-8.
    return bytes(i % 256 for i in range(n))


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


async def open_connection(url, timeout, **options):
    """connect(url, **options) with the opening handshake bounded by timeout
    (and close_timeout=timeout)."""
    async with asyncio.timeout(timeout):
        return await connect(url, close_timeout=timeout, **options)


async def expect_echo(ws, expected, what, timeout):
    """Receives the next message (within timeout); it must equal expected,
    text or binary alike."""
    got = await asyncio.wait_for(ws.recv(), timeout)
    check(type(got) is type(expected), f"{what}: sent {describe(expected)}, got back {describe(got)}")
    if got != expected:
        at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        raise CheckFailed(f"{what}: echo differs from offset {at} ({describe(expected)} sent, {describe(got)} received)")


@contextlib.contextmanager
def abort_on_failure(ws):
    """Keeps the first failure: on any exception, drops the connection
    without a closing handshake."""
    try:
        yield
    except BaseException:
        ws.transport.abort()
        raise


def client_main(run, passed):
    """A client script's entry point: checks the command line (one argument,
    the URL; else usage on stderr, 2), runs run(url), prints passed and
    returns 0; on failure prints "FAIL: ..." on stderr and returns 1."""
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
    print(passed)
    return 0


# ----- servers ----------------------------------------------------------------


def announce_listening(server):
    """Prints the line the tests wait for (crates/cli/tests/common:
    parse_listening_line): `listening on ws://127.0.0.1:PORT`."""
    port = server.sockets[0].getsockname()[1]
    print(f"listening on ws://127.0.0.1:{port}", flush=True)


async def orphan_watch():
    """Ends the server if the test that started it is gone (killed without
    a chance to stop us)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1)
    os._exit(0)


async def serve_for(server, lifetime):
    """Serves until lifetime seconds have passed."""
    try:
        await asyncio.wait_for(server.serve_forever(), lifetime)
    except asyncio.TimeoutError:
        pass
