#![allow(missing_docs)]
//! Hostile peers over real sockets: oversized and overlong request heads,
//! a message cut into a million one-byte fragments, a flood of Pings; and
//! in memory on the paused clock (its write timeout), a peer that never
//! reads while the server sends. Each test is bounded in
//! time; where memory is at stake the process RSS growth is asserted
//! (against the configured limits, generously: tests of one binary may run
//! in parallel threads), never a wall-clock duration.
//!
//! Beyond protocol.rs (frame and message limits, the 2^62 header),
//! server.rs (malformed requests, handshake timeout) and lifecycle.rs
//! (write timeout, a Ping flood from a peer that never reads).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use common::*;
use silverback::proto::frame::{decode_header, Decoded};
use silverback::{testing, CloseCode, Config, ErrorKind, Message, OpCode, Role, Timeout, Upgrader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Bound on the tests that move megabytes through a debug build.
const LONG: Duration = Duration::from_secs(120);

const MIB: u64 = 1 << 20;

// ----- memory ------------------------------------------------------------------

/// The resident set size of this process, in bytes (VmRSS of
/// /proc/self/status).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Samples [`rss`] in a thread every few milliseconds, from its start
/// until [`stop`](Self::stop): the peak growth over the starting value.
struct RssWatch {
    start: u64,
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start() -> Self {
        let start = rss();
        let peak = Arc::new(AtomicU64::new(start));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (peak.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self {
            start,
            peak,
            done,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns (start, peak) in bytes.
    fn stop(mut self) -> (u64, u64) {
        self.done.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let peak = self.peak.load(Ordering::Relaxed).max(rss());
        (self.start, peak)
    }

    /// Stops and asserts the peak growth stayed under `bound` bytes.
    fn assert_growth_below(self, bound: u64, what: &str) {
        let (start, peak) = self.stop();
        let growth = peak.saturating_sub(start);
        eprintln!(
            "{what}: rss {:.1} MiB -> peak {:.1} MiB (growth {:.1} MiB, bound {:.1} MiB)",
            start as f64 / MIB as f64,
            peak as f64 / MIB as f64,
            growth as f64 / MIB as f64,
            bound as f64 / MIB as f64
        );
        assert!(
            growth < bound,
            "{what}: RSS grew by {growth} bytes (from {start} to {peak}), bound {bound}"
        );
    }
}

// ----- raw frames ----------------------------------------------------------------

/// A masked client frame with a payload of at most 125 bytes, appended to
/// `out` (no allocation per frame: the fragment and flood tests build
/// millions of them).
fn push_small_frame(out: &mut Vec<u8>, first: u8, payload: &[u8]) {
    assert!(payload.len() <= 125);
    out.push(first);
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// Reads the server's (unmasked) frames from one half of a socket.
struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(rd: R, buf: BytesMut) -> Self {
        Self { rd, buf }
    }

    /// The next frame: (fin, opcode, payload).
    async fn next(&mut self) -> (bool, OpCode, Vec<u8>) {
        loop {
            if let Decoded::Header(h, n) = decode_header(&self.buf).expect("valid frame header") {
                assert!(h.mask.is_none(), "the server masked a frame");
                let len = usize::try_from(h.payload_len).unwrap();
                if self.buf.len() >= n + len {
                    self.buf.advance(n);
                    return (h.fin, h.opcode, self.buf.split_to(len).to_vec());
                }
            }
            self.buf.reserve(64 * 1024);
            let got = self.rd.read_buf(&mut self.buf).await.expect("reading");
            assert!(got > 0, "end of stream before a complete frame");
        }
    }
}

// ----- request heads ---------------------------------------------------------------

/// `request` (a whole head) to an upgrading server: refused with 431, a
/// one-line body, then the connection is closed.
async fn assert_431(request: Vec<u8>, what: &str) {
    let (addr, server) =
        spawn_accept(|stream| async move { Upgrader::new().upgrade(stream).await.map(drop) }).await;
    let mut c = RawPeer::connect(addr).await;
    c.write(&request).await;
    let (resp, body) = within(c.read_http_response()).await;
    assert_eq!(resp.status(), 431, "{what}: {resp:?} {body:?}");
    assert!(
        body.ends_with('\n') && body.lines().count() == 1,
        "{what}: {body:?}"
    );
    assert_eq!(
        resp.headers()
            .get("connection")
            .map(|v| v.to_str().unwrap()),
        Some("close"),
        "{what}: {resp:?}"
    );
    // Closed: the end of the stream.
    within(c.expect_eof()).await;
    let err = within(server).await.unwrap().unwrap_err();
    match err.kind() {
        ErrorKind::Rejected(r) => assert_eq!(r.status, 431, "{what}"),
        other => panic!("{what}: expected Rejected(431), got {other:?}"),
    }
}

fn head_with(extra: &[(String, String)]) -> Vec<u8> {
    let extra: Vec<(&str, &str)> = extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    upgrade_request("example.com", &extra)
}

#[tokio::test]
async fn request_head_over_16_kib_gets_431() {
    // 24 headers of 1000 bytes: under the header count, over the size.
    let big: Vec<(String, String)> = (0..24)
        .map(|i| (format!("X-Filler-{i}"), "f".repeat(1000)))
        .collect();
    let head = head_with(&big);
    assert!(head.len() > 16 * 1024);
    assert_431(head, "24 KiB head").await;

    // A single header line longer than the limit.
    let one = vec![("X-Long".to_owned(), "l".repeat(20 * 1024))];
    assert_431(head_with(&one), "one 20 KiB header").await;
}

#[tokio::test]
async fn head_that_never_ends_gets_431_not_unbounded_buffering() {
    // Headers keep coming, no blank line: the server stops reading at the
    // limit and answers, it does not wait for the end of the head. The
    // client writes 1 MiB of it from another task while reading the answer.
    let (addr, server) =
        spawn_accept(|stream| async move { Upgrader::new().upgrade(stream).await.map(drop) }).await;
    let c = RawPeer::connect(addr).await;
    let RawPeer {
        stream, mut buf, ..
    } = c;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut head = b"GET /ws HTTP/1.1\r\nHost: example.com\r\n".to_vec();
        while head.len() < MIB as usize {
            head.extend_from_slice(
                format!("X-More-{}: {}\r\n", head.len(), "m".repeat(50)).as_bytes(),
            );
        }
        // The server may close (or reset) before all of it is written.
        let _ = wr.write_all(&head).await;
        wr
    });
    let err = within(server).await.unwrap().unwrap_err();
    match err.kind() {
        ErrorKind::Rejected(r) => assert_eq!(r.status, 431),
        other => panic!("expected Rejected(431), got {other:?}"),
    }
    // The answer arrived (or the reset did, if the server closed with
    // unread input): either way, the connection is over.
    let mut got = Vec::new();
    let end = within(async {
        loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => got.extend_from_slice(&buf.split()),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 431 ") || end.is_err(),
        "answer {text:?}, end {end:?}"
    );
    drop(within(writer).await.unwrap());
}

#[tokio::test]
async fn more_than_64_headers_get_431() {
    let many: Vec<(String, String)> = (0..70)
        .map(|i| (format!("X-H{i}"), "v".to_owned()))
        .collect();
    let head = head_with(&many);
    assert!(head.len() < 4096, "small in bytes, many in count");
    assert_431(head, "75 headers").await;
}

// ----- fragments -------------------------------------------------------------------

#[tokio::test]
async fn a_mebibyte_in_one_byte_fragments_is_echoed_as_one_message() {
    const N: usize = 1 << 20;
    const BATCH: usize = 64 * 1024;
    // Default limits: 64 MiB messages, 16 MiB frames.
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let peer = RawPeer::handshake(addr_of(&url)).await;
    let RawPeer { stream, buf, .. } = peer;
    let (rd, mut wr) = stream.into_split();
    let expected: Vec<u8> = (0..N).map(|i| (i * 31 % 251) as u8).collect();

    let watch = RssWatch::start();
    let data = expected.clone();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH * 7);
        for (i, b) in data.iter().enumerate() {
            let first = match i {
                0 => 0x02,
                i if i == N - 1 => 0x80,
                _ => 0x00,
            };
            push_small_frame(&mut batch, first, &[*b]);
            if batch.len() >= BATCH * 7 {
                wr.write_all(&batch).await.unwrap();
                batch.clear();
            }
        }
        wr.write_all(&batch).await.unwrap();
        wr
    });
    let mut frames = FrameReader::new(rd, buf);
    let mut echo = Vec::with_capacity(N);
    let mut opcodes = Vec::new();
    tokio::time::timeout(LONG, async {
        loop {
            let (fin, opcode, payload) = frames.next().await;
            opcodes.push(opcode);
            echo.extend_from_slice(&payload);
            if fin {
                break;
            }
        }
    })
    .await
    .expect("echo of the fragmented message");
    let mut wr = within(writer).await.unwrap();
    // Bound: the message and its echo a few times over, plus slack for the
    // runtime and for tests running in parallel; not a byte per fragment
    // of bookkeeping (a million small buffers would be far over it).
    watch.assert_growth_below(4 * N as u64 + 64 * MIB, "1 MiB in 1-byte fragments");

    assert_eq!(
        opcodes[0],
        OpCode::Binary,
        "the echo starts a binary message"
    );
    assert!(
        opcodes[1..].iter().all(|o| *o == OpCode::Continuation),
        "one message"
    );
    assert_eq!(echo.len(), N);
    assert!(echo == expected, "the echo differs from what was sent");

    // Still a working connection: a close handshake.
    let mut close = Vec::new();
    push_small_frame(&mut close, 0x88, &close_payload(1000, ""));
    within(wr.write_all(&close)).await.unwrap();
    let (_, opcode, payload) = within(frames.next()).await;
    assert_eq!(opcode, OpCode::Close);
    assert_eq!(payload[..2], 1000u16.to_be_bytes());
    let (err, _ws) = within(server).await.unwrap();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::Normal));
}

// ----- Ping flood --------------------------------------------------------------------

#[tokio::test]
async fn ping_flood_from_a_reading_peer_is_answered_pong_for_ping() {
    const PINGS: u64 = 100_000;
    const BATCH: u64 = 1000;
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let peer = RawPeer::handshake(addr_of(&url)).await;
    let RawPeer { stream, buf, .. } = peer;
    let (rd, mut wr) = stream.into_split();

    let watch = RssWatch::start();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH as usize * 14);
        for i in 0..PINGS {
            push_small_frame(&mut batch, 0x89, &i.to_be_bytes());
            if (i + 1) % BATCH == 0 {
                wr.write_all(&batch).await.unwrap();
                batch.clear();
            }
        }
        wr.write_all(&batch).await.unwrap();
        wr
    });
    // Every Ping gets its Pong, in order, with its payload.
    let mut frames = FrameReader::new(rd, buf);
    let mut pongs = 0u64;
    tokio::time::timeout(LONG, async {
        while pongs < PINGS {
            let (fin, opcode, payload) = frames.next().await;
            assert!(fin);
            assert_eq!(opcode, OpCode::Pong, "after {pongs} Pongs");
            assert_eq!(payload, pongs.to_be_bytes(), "Pong {pongs}");
            pongs += 1;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {pongs} of {PINGS} Pongs"));
    let mut wr = within(writer).await.unwrap();
    watch.assert_growth_below(64 * MIB, "100,000 Pings");
    assert_eq!(pongs, PINGS);

    // The connection still echoes.
    let mut msg = Vec::new();
    push_small_frame(&mut msg, 0x81, b"still there");
    within(wr.write_all(&msg)).await.unwrap();
    let (fin, opcode, payload) = within(frames.next()).await;
    assert_eq!(
        (fin, opcode, payload.as_slice()),
        (true, OpCode::Text, &b"still there"[..])
    );
    let mut close = Vec::new();
    push_small_frame(&mut close, 0x88, &close_payload(1000, ""));
    within(wr.write_all(&close)).await.unwrap();
    let (_, opcode, _) = within(frames.next()).await;
    assert_eq!(opcode, OpCode::Close);
    let (err, ws) = within(server).await.unwrap();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(ws.stats().messages_in, 1, "Pings are not messages");
}

// ----- a peer that never reads -----------------------------------------------------------

/// One server, two clients: the first never reads while the server sends
/// it 64 KiB messages; the second is echoed meanwhile. The sends to the
/// first fail with `Timeout::Write` once its pipe is full, exactly
/// `write_timeout` later, without holding up the second (served at once,
/// while the first's send is pending), and the server's memory stays
/// bounded by `max_write_buffer_size`. In memory, on the paused clock.
#[tokio::test(start_paused = true)]
async fn a_peer_that_never_reads_does_not_hold_up_the_others() {
    const MSG: usize = 64 * 1024;
    const MAX_WRITE_BUFFER: usize = 1 << 20;
    /// What the peer's side holds unread, like a socket's buffers.
    const PIPE: usize = 1 << 20;
    const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
    let config = Config::default()
        .write_timeout(Some(WRITE_TIMEOUT))
        .max_write_buffer_size(MAX_WRITE_BUFFER);
    let watch = RssWatch::start();
    let start = Instant::now();
    // First: the one that never reads; the server sends until it fails.
    let (mut ws, _never_reads) = testing::raw_peer_with_buffer(Role::Server, config, PIPE);
    let sender = tokio::spawn(async move {
        let msg = Message::binary(vec![0x5a; MSG]);
        let mut sent = 0u64;
        let err = loop {
            match ws.send(msg.clone()).await {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        (err, sent, ws, Instant::now())
    });
    // Then: echo.
    let (mut client, server) = testing::pair(Config::default(), config);
    let echoing = tokio::spawn(echo(server));
    for i in 0..50 {
        let msg = Message::binary(vec![i as u8; 10_000]);
        within(client.send(msg.clone())).await.unwrap();
        assert_eq!(within(client.recv()).await.unwrap(), msg);
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "the second client waited");
    assert!(
        !sender.is_finished(),
        "the second client was served while the first's send was pending"
    );
    within(client.close(CloseCode::Normal, "")).await.unwrap();

    let (err, sent, ws, failed_at) = within(sender).await.unwrap();
    assert!(
        matches!(err.kind(), ErrorKind::Timeout(Timeout::Write)),
        "{err:?}"
    );
    assert_eq!(failed_at - start, WRITE_TIMEOUT);
    assert_eq!(sent, (PIPE / (MSG + 10)) as u64, "the pipe took what fits");
    assert!(ws.is_closed());
    let (echo_end, _) = within(echoing).await.unwrap();
    assert!(echo_end.is_closed(), "{echo_end:?}");
    // The unread data sits in the library's buffer (bounded) and the
    // pipe's.
    watch.assert_growth_below(4 * MAX_WRITE_BUFFER as u64 + 64 * MIB, "never-reading peer");
}
