#!/usr/bin/env python3
"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT) spoken by hand with the
`h2` package (installed in .peers/venv by scripts/install-peers.sh): an
independent client for silverback's HTTP/2 server side. Cleartext prior-knowledge
h2c only.

Usage: .peers/venv/bin/python interop/h2_ws_client.py HOST:PORT SCENARIO [options]

Scenarios (all on ONE HTTP/2 connection):
  echo      --streams N --close MODE: open N WebSockets, echo text and binary
            messages on every one (sent on all streams before any is read),
            then end them: MODE `client` (Close 1000 from us), or `mixed`
            (stream i: i%4 == 0 client Close 1000, 1 server Close (we send
            invalid UTF-8: the server closes with 1007), 2 RST_STREAM CANCEL
            from us, 3 still open when the whole connection is dropped); the
            streams not yet ended must still echo after each kind of end.
  bad       refusals: CONNECT without :protocol (400), a wrong :protocol
            (501), no Sec-WebSocket-Version (426), DATA on a stream we reset,
            DATA on a WebSocket stream closed cleanly, each leaving a
            WebSocket opened before them working.
  limit     --streams N: opens N+1 WebSockets at once, ignoring the server's
            SETTINGS_MAX_CONCURRENT_STREAMS (N): one is refused (RST_STREAM
            REFUSED_STREAM), the other N echo.
  get       GET / (the page, 200) and GET /nope (404) over HTTP/2, then a
            WebSocket on the same connection.
  shutdown  --streams N: opens N WebSockets, echoes once on each, prints
            READY, then waits for the server's Close 1001 on every stream and
            answers it.
Prints "ok: ..." lines, then "PASS"; on failure "FAIL: ..." and exit 1.
Every network wait is bounded (TIMEOUT).
"""

import argparse
import os
import socket
import struct
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

TIMEOUT = 20.0


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Stream:
    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.headers = {}
        self.buf = bytearray()
        self.ended = False
        self.reset = None


class Client:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.authority = addr
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        cfg = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        # python-h2 takes a GOAWAY for the end of everything; RFC 9113
        # section 6.8 lets the streams it does not cut off run to their end
        # (a server shutting down gracefully). Keep the connection open.
        machine = h2.connection.H2ConnectionStateMachine
        machine._transitions[(h2.connection.ConnectionState.CLIENT_OPEN,
                              h2.connection.ConnectionInputs.RECV_GOAWAY)] = (
            None, h2.connection.ConnectionState.CLIENT_OPEN)
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        # A large connection window: many streams echo at once.
        self.conn.increment_flow_control_window(16 << 20)
        self.flush()
        self.streams = {}
        self.remote_settings = None
        self.goaway = None
        self.wait(lambda: self.remote_settings is not None, "the server's SETTINGS")

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise Failure("timed out waiting for the server")
        if not data:
            raise Failure("the server closed the connection")
        for ev in self.conn.receive_data(data):
            st = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self.remote_settings = {int(k): v.new_value for k, v in ev.changed_settings.items()}
            elif isinstance(ev, h2.events.ResponseReceived):
                hdrs = dict(ev.headers)
                st.status = int(hdrs[":status"])
                st.headers = hdrs
            elif isinstance(ev, h2.events.DataReceived):
                if st is not None:
                    st.buf += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                st.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if st is not None:
                    st.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (ev.error_code, ev.last_stream_id)
        self.flush()

    def wait(self, cond, what):
        while not cond():
            if self.goaway is not None and self.goaway[0] != h2.errors.ErrorCodes.NO_ERROR:
                raise Failure(f"GOAWAY {self.goaway} while waiting for {what}")
            self.pump()

    # ----- streams --------------------------------------------------------

    def request(self, headers, end_stream=False):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = Stream(sid)
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        self.flush()
        return self.streams[sid]

    def connect_headers(self, path, protocol="websocket", version="13", extra=()):
        h = [(":method", "CONNECT")]
        if protocol is not None:
            h.append((":protocol", protocol))
        h += [(":scheme", "http"), (":path", path), (":authority", self.authority)]
        if version is not None:
            h.append(("sec-websocket-version", version))
        return h + list(extra)

    def open_ws(self, path, **kw):
        return self.request(self.connect_headers(path, **kw))

    def wait_response(self, st):
        self.wait(lambda: st.status is not None or st.reset is not None, f"response on {st.sid}")

    def send_data(self, st, data, end_stream=False):
        data = bytes(data)
        while True:
            window = min(self.conn.local_flow_control_window(st.sid), self.conn.max_outbound_frame_size)
            if window <= 0 and data:
                self.pump()
                continue
            chunk, data = data[:window], data[window:]
            self.conn.send_data(st.sid, chunk, end_stream=end_stream and not data)
            self.flush()
            if not data:
                return

    def send_frame(self, st, opcode, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.send_data(st, head + mask + masked)

    def recv_frame(self, st):
        """(opcode, payload) of the next whole frame from the server."""
        while True:
            f = parse_frame(st.buf)
            if f is not None:
                opcode, payload, used = f
                del st.buf[:used]
                return opcode, payload
            check(st.reset is None, f"stream {st.sid} reset ({st.reset}) while reading")
            check(not st.ended, f"stream {st.sid} ended while reading")
            self.pump()

    def echo(self, st, opcode, payload):
        self.send_frame(st, opcode, payload)
        self.expect(st, opcode, payload)

    def expect(self, st, opcode, payload):
        op, got = self.recv_frame(st)
        check(op == opcode and got == payload,
              f"stream {st.sid}: echo differs (opcode {op}, {len(got)} bytes, expected {opcode}, {len(payload)})")

    def client_close(self, st, code=1000):
        self.send_frame(st, 0x8, struct.pack("!H", code) + b"bye")
        op, payload = self.recv_frame(st)
        check(op == 0x8, f"stream {st.sid}: expected the Close echo, got opcode {op}")
        check(struct.unpack("!H", payload[:2])[0] == code, f"stream {st.sid}: Close code {payload[:2]!r}")
        # The server ends the stream (its END_STREAM is its TCP close), we end ours.
        self.wait(lambda: st.ended, f"END_STREAM on {st.sid}")
        self.end_ours(st)

    def end_ours(self, st):
        """Ends our side of a stream the server has ended, unless the server
        also reset it with NO_ERROR: done reading, it need not wait for our
        END_STREAM (RFC 9113 section 8.1)."""
        check(st.reset in (None, h2.errors.ErrorCodes.NO_ERROR),
              f"stream {st.sid} reset with {st.reset} after a clean close")
        try:
            self.conn.end_stream(st.sid)
            self.flush()
        except h2.exceptions.StreamClosedError:
            check(st.reset == h2.errors.ErrorCodes.NO_ERROR, f"stream {st.sid} closed under us")

    def answer_server_close(self, st, expected_code, failed=False):
        """Reads the server's Close and answers it. `failed`: the server
        failed the connection (a protocol error), so it may drop the stream
        (RST_STREAM, its TCP reset) right after its Close, not waiting for
        ours."""
        op, payload = self.recv_frame(st)
        check(op == 0x8, f"stream {st.sid}: expected a Close from the server, got opcode {op}")
        code = struct.unpack("!H", payload[:2])[0]
        check(code == expected_code, f"stream {st.sid}: server Close code {code}, expected {expected_code}")
        if failed:
            self.wait(lambda: st.ended or st.reset is not None, f"the end of {st.sid}")
            return
        self.send_frame(st, 0x8, payload[:2])
        self.wait(lambda: st.ended, f"END_STREAM on {st.sid}")
        self.end_ours(st)

    def reset(self, st):
        self.conn.reset_stream(st.sid, h2.errors.ErrorCodes.CANCEL)
        self.flush()

    def raw_data_frame(self, sid, payload):
        """A DATA frame written past the h2 state machine (which would refuse it)."""
        self.sock.sendall(struct.pack("!I", len(payload))[1:] + bytes([0x0, 0x0]) + struct.pack("!I", sid) + payload)


def parse_frame(buf):
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    if b1 & 0x80:
        raise Failure("the server masked a frame")
    n = b1 & 0x7F
    i = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack("!H", buf[2:4])[0]
        i = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack("!Q", buf[2:10])[0]
        i = 10
    if len(buf) < i + n:
        return None
    if not b0 & 0x80 or b0 & 0x70:
        raise Failure(f"unexpected frame header {b0:#x} (fragmented or RSV bits set)")
    return b0 & 0x0F, bytes(buf[i:i + n]), i + n


SIZES = [0, 1, 125, 126, 65535, 70000]


def open_all(c, path, n):
    streams = [c.open_ws(path) for _ in range(n)]
    for st in streams:
        c.wait_response(st)
        check(st.reset is None, f"stream {st.sid} reset ({st.reset}) instead of 200")
        check(st.status == 200, f"stream {st.sid}: status {st.status}, expected 200")
        check("sec-websocket-accept" not in st.headers, "a Sec-WebSocket-Accept over HTTP/2")
        check("content-length" not in st.headers, "a content-length on the 200")
    return streams


def echo_all(c, streams, sizes):
    """Text and binary on every stream, all sent before any is read."""
    sent = []
    for k, st in enumerate(streams):
        text = f"hello {st.sid} h\u00e9llo \u20ac".encode()
        c.send_frame(st, 0x1, text)
        sent.append((st, 0x1, text))
        for n in sizes if k < 2 else sizes[:4]:
            data = bytes((st.sid + j) & 0xFF for j in range(n))
            c.send_frame(st, 0x2, data)
            sent.append((st, 0x2, data))
    for st, op, payload in sent:
        c.expect(st, op, payload)


def scenario_echo(c, args):
    streams = open_all(c, args.path, args.streams)
    print(f"ok: {len(streams)} WebSockets open on one HTTP/2 connection")
    echo_all(c, streams, SIZES)
    print(f"ok: echo on {len(streams)} streams")
    if args.close == "client":
        for st in streams:
            c.client_close(st)
        print(f"ok: {len(streams)} closed by the client (1000)")
        return
    groups = {m: [st for i, st in enumerate(streams) if i % 4 == m] for m in range(4)}
    survivors = lambda done: [st for m in range(4) if m > done for st in groups[m]]  # noqa: E731
    for st in groups[0]:
        c.client_close(st)
    echo_all(c, survivors(0), [3])
    print(f"ok: {len(groups[0])} closed by the client (1000), the others still echo")
    for st in groups[1]:
        c.send_frame(st, 0x1, b"\xff\xfe invalid utf-8")
    for st in groups[1]:
        c.answer_server_close(st, 1007, failed=True)
    echo_all(c, survivors(1), [3])
    print(f"ok: {len(groups[1])} closed by the server (1007), the others still echo")
    for st in groups[2]:
        c.reset(st)
    echo_all(c, survivors(2), [3])
    print(f"ok: {len(groups[2])} reset by the client (RST_STREAM), the others still echo")
    c.sock.close()
    print(f"ok: connection dropped with {len(groups[3])} WebSockets open")


def scenario_bad(c, args):
    good = open_all(c, args.path, 1)[0]
    c.echo(good, 0x1, b"before")
    # A plain CONNECT (a tunnel request): :method and :authority only.
    st = c.request([(":method", "CONNECT"), (":authority", c.authority)])
    c.wait_response(st)
    want = args.plain_connect_status
    check(st.status == want, f"CONNECT without :protocol: status {st.status} reset {st.reset}, expected {want}")
    print(f"ok: CONNECT without :protocol refused with {want}")
    st = c.open_ws(args.path, protocol="webtransport")
    c.wait_response(st)
    check(st.status == 501, f"wrong :protocol: status {st.status} reset {st.reset}, expected 501")
    print("ok: :protocol webtransport refused with 501")
    st = c.open_ws(args.path, version=None)
    c.wait_response(st)
    check(st.status == 426, f"no Sec-WebSocket-Version: status {st.status}, expected 426")
    check(st.headers.get("sec-websocket-version") == "13", "426 without Sec-WebSocket-Version: 13")
    print("ok: no Sec-WebSocket-Version refused with 426")
    victim = open_all(c, args.path, 1)[0]
    c.echo(victim, 0x1, b"victim")
    c.reset(victim)
    c.raw_data_frame(victim.sid, b"\x81\x80\x00\x00\x00\x00")
    c.echo(good, 0x1, b"after")
    check(c.goaway is None, f"GOAWAY {c.goaway}")
    print("ok: DATA on a reset stream ignored, the other WebSocket still echoes")
    done = open_all(c, args.path, 1)[0]
    c.echo(done, 0x2, b"done")
    c.client_close(done)
    c.raw_data_frame(done.sid, b"\x81\x80\x00\x00\x00\x00")
    c.echo(good, 0x1, b"after closed")
    check(c.goaway is None, f"GOAWAY {c.goaway}")
    print("ok: DATA on a cleanly closed stream ignored, the other WebSocket still echoes")
    c.client_close(good)
    print("ok: the first WebSocket closes cleanly")


def scenario_limit(c, args):
    limit = c.remote_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
    check(limit == args.streams, f"server MAX_CONCURRENT_STREAMS {limit}, expected {args.streams}")
    # Lift our own side's check: the server must refuse the extra stream.
    c.conn.remote_settings._settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = [1 << 20]
    streams = [c.open_ws(args.path) for _ in range(args.streams + 1)]
    for st in streams:
        c.wait_response(st)
    refused = [st for st in streams if st.reset is not None]
    check(len(refused) == 1, f"{len(refused)} streams refused, expected 1")
    check(refused[0].reset == h2.errors.ErrorCodes.REFUSED_STREAM, f"reset with {refused[0].reset}")
    print(f"ok: stream {args.streams + 1} refused with REFUSED_STREAM")
    ok = [st for st in streams if st.reset is None]
    check(all(st.status == 200 for st in ok), "a stream under the limit was not accepted")
    echo_all(c, ok, [0, 100])
    for st in ok:
        c.client_close(st)
    print(f"ok: the {len(ok)} others echo and close")


def scenario_get(c, args):
    for path, want in (("/", 200), ("/nope", 404)):
        st = c.request([(":method", "GET"), (":scheme", "http"), (":path", path),
                        (":authority", c.authority)], end_stream=True)
        c.wait(lambda: st.ended or st.reset is not None, f"GET {path}")
        check(st.status == want, f"GET {path}: status {st.status}, expected {want}")
        if want == 200:
            check(b"<html" in bytes(st.buf).lower(), f"GET {path}: not a page: {bytes(st.buf[:80])!r}")
        print(f"ok: GET {path} over HTTP/2: {want}")
    ws = open_all(c, args.path, 1)[0]
    c.echo(ws, 0x1, b"after the page")
    c.client_close(ws)
    print("ok: a WebSocket on the same connection after the page")


def scenario_shutdown(c, args):
    streams = open_all(c, args.path, args.streams)
    echo_all(c, streams, [10])
    print(f"ok: {len(streams)} WebSockets open and echoing")
    print("READY", flush=True)
    for st in streams:
        c.answer_server_close(st, 1001)
    print(f"ok: {len(streams)} closed by the server with 1001")
    if c.goaway is not None:
        check(c.goaway[0] == h2.errors.ErrorCodes.NO_ERROR, f"GOAWAY {c.goaway}")
        print("ok: GOAWAY NO_ERROR, the open streams completed")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("scenario", choices=["echo", "bad", "limit", "get", "shutdown"])
    p.add_argument("--path", default="/ws")
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--close", choices=["client", "mixed"], default="client")
    p.add_argument("--plain-connect-status", type=int, default=400,
                   help="bad: the status expected for a CONNECT without :protocol")
    args = p.parse_args()
    try:
        c = Client(args.addr)
        check(c.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1,
              f"the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL: {c.remote_settings}")
        print("ok: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1")
        globals()["scenario_" + args.scenario](c, args)
    except (Failure, OSError, h2.exceptions.ProtocolError) as e:
        print(f"FAIL: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    print("PASS", flush=True)


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    main()
