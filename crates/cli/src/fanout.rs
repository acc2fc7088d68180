//! `silverback bench --mode fanout` and `--mode rooms`: pub/sub fan-out.
//!
//! The protocol is the raw one of `silverback serve --pubsub` (and of the
//! fan-out peers in `bench/`): a client connecting to `URL?topic=NAME` is
//! subscribed to NAME; every data message it sends is published unchanged
//! to every subscriber of the topic, the sender included.
//!
//! - `fanout`: one publisher and `--subscribers` N subscribers on one
//!   topic. The publisher gets its own messages back too: it counts them
//!   (`publisher_echoes`) and, without `--rate`, uses them as its flow
//!   control (at most `--pipeline` messages published and not yet echoed).
//! - `rooms`: `--rooms` R topics of `--members` M connections each; every
//!   member publishes (at `--rate` each) and receives its room's messages,
//!   its own included.
//!
//! Every data message is binary, `--size` bytes: the publisher's id (u32),
//! its sequence number (u64) and the send time (u64 ns since the
//! generator's start), little-endian, then filler. Each receiver tracks
//! every publisher it hears: duplicates and out-of-order arrivals as they
//! come (a 128-message window), losses at the end (published minus
//! received once). Latency is publish-to-delivery of the messages sent in
//! the measured window; deliveries/s counts those received in it.
//!
//! With `--socketio` the same runs speak Socket.IO to a Socket.IO server
//! (`bench/node/socketio_fanout.mjs`): each connection answers the
//! Engine.IO open packet `0{...}` with `40` (connect to `/`), answers
//! pings `2` with `3`, publishes `42["m","PAYLOAD"]` (text: the 20-byte
//! header in hex, then filler up to `--size` characters) and counts the
//! `42[...]` it receives; the server joins it to the room of its `topic`
//! query parameter and broadcasts each `m` to that room.
//!
//! Setup: all connections are opened (at most `--connect-concurrency` at
//! once), then a warm-up message is published (and re-published every
//! 250 ms) on each topic until every connection has received one, so all
//! are subscribed; then publishing starts, `--warmup` seconds pass, and
//! `--duration` seconds are measured. After the publishers stop, the
//! receivers get up to `--drain` seconds to catch up.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use serde::Serialize;
use silverback::proto::frame::{decode_header, encode_header, Decoded, FrameHeader, OpCode};
use silverback::proto::mask::apply_mask;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, Semaphore};

use crate::bench::{dial, progress, target, BenchArgs, Mode};

/// Publisher id of the warm-up messages (their sequence number is the room).
const WARM_ID: u32 = u32::MAX;
/// Bytes of the message header: publisher id, sequence number, send time.
const HEADER: usize = 20;
/// Duplicates are told from late arrivals over this many sequence numbers.
const WINDOW: u64 = 128;

/// The result of a fan-out or rooms run.
#[derive(Debug, Default, Serialize)]
pub struct FanoutReport {
    mode: &'static str,
    url: String,
    /// Connections that receive and count deliveries.
    subscribers: usize,
    /// Connections that publish.
    publishers: usize,
    rooms: usize,
    members: usize,
    size: usize,
    /// Messages per second per publisher (`None`: as fast as the own
    /// echoes allow, `pipeline` in flight).
    rate: Option<f64>,
    pipeline: usize,
    connections: usize,
    connect_secs: f64,
    warmup_wait_secs: f64,
    seconds: f64,
    /// Messages published in the measured window, and per second.
    published: u64,
    publishes_per_sec: f64,
    /// Messages delivered to subscribers in the measured window.
    deliveries: u64,
    deliveries_per_sec: f64,
    /// Over the whole run (after the warm-up): what the subscribers should
    /// have got, and what they got once.
    expected_total: u64,
    received_total: u64,
    /// Publish-to-delivery latency of the messages sent in the window.
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    lost: u64,
    lost_max: u64,
    subscribers_with_loss: usize,
    duplicated: u64,
    duplicated_max: u64,
    out_of_order: u64,
    out_of_order_max: u64,
    /// Fan-out: messages the publisher got back (it is subscribed too).
    publisher_echoes: u64,
    /// Malformed or unexpected messages, connections closed early.
    errors: u64,
    /// The load generator's own CPU time (utime+stime) in the window.
    client_cpu_secs: f64,
    client_cpu_pct: f64,
    client_cpu_us_per_delivery: Option<f64>,
    /// The server's CPU time in the window (with `--server-pid`).
    server_cpu_secs: Option<f64>,
    server_cpu_pct: Option<f64>,
    server_cpu_us_per_delivery: Option<f64>,
}

/// Per-publisher state of one receiver.
#[derive(Default, Clone, Copy)]
struct Track {
    /// One past the highest sequence number seen.
    next: u64,
    /// Bit k: sequence number `next - 1 - k` seen.
    seen: u128,
    /// Distinct sequence numbers seen.
    unique: u64,
}

/// What one arrival was, for its publisher's sequence.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Higher than any before (gaps are counted as lost at the end).
    InOrder,
    /// Lower than one already seen, and not seen before.
    Late,
    /// Seen before (within the last `WINDOW` sequence numbers).
    Duplicate,
}

impl Track {
    fn observe(&mut self, seq: u64) -> Seen {
        let seen = if seq >= self.next {
            let shift = seq - self.next + 1;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            } | 1;
            self.next = seq + 1;
            Seen::InOrder
        } else {
            let k = self.next - 1 - seq;
            if k < WINDOW {
                if self.seen & (1 << k) != 0 {
                    return Seen::Duplicate;
                }
                self.seen |= 1 << k;
            }
            Seen::Late
        };
        self.unique += 1;
        seen
    }
}

/// One connection, shared by its reader task, its writer task and the
/// report.
struct Conn {
    id: u32,
    room: usize,
    publishes: bool,
    /// Counts deliveries (all but the fan-out publisher).
    subscriber: bool,
    tracks: RefCell<Vec<Track>>,
    deliveries: Cell<u64>,
    duplicated: Cell<u64>,
    out_of_order: Cell<u64>,
    errors: Cell<u64>,
    own_echoes: Cell<u64>,
    warmed: Cell<bool>,
    sent: Cell<u64>,
    echoed: Notify,
    /// Pongs owed to the server (written by whoever writes next).
    pongs: RefCell<Vec<u8>>,
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    Warmup,
    Run,
    Stop,
}

struct Shared {
    base: Instant,
    size: usize,
    members: usize,
    /// Socket.IO framing (`--socketio`).
    socketio: bool,
    fanout: bool,
    phase: Cell<Phase>,
    phase_changed: Notify,
    /// Signalled on each warm-up arrival, and on each delivery once
    /// publishing stopped (what the setup and drain waits look at).
    progress: Notify,
    /// The measured window, ns since `base` (u64::MAX: not yet).
    from_ns: Cell<u64>,
    to_ns: Cell<u64>,
    hist: RefCell<Histogram<u64>>,
    warmed: Cell<usize>,
    room_warmed: Vec<Cell<usize>>,
    window_deliveries: Cell<u64>,
    received_total: Cell<u64>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
    fn set_phase(&self, p: Phase) {
        self.phase.set(p);
        self.phase_changed.notify_waiters();
    }
    /// Waits until `done()` holds, woken by `progress`; `false` if
    /// `deadline` passed first.
    async fn wait_progress(&self, deadline: Instant, done: impl Fn() -> bool) -> bool {
        while !done() {
            // Single-threaded: nothing runs between the check and the first
            // poll of `notified`, so no signal is lost.
            let progressed = self.progress.notified();
            if tokio::time::timeout_at(deadline.into(), progressed)
                .await
                .is_err()
            {
                return done();
            }
        }
        true
    }
    async fn wait_phase(&self, p: Phase) {
        loop {
            let changed = self.phase_changed.notified();
            if self.phase.get() == p || self.phase.get() == Phase::Stop {
                return;
            }
            changed.await;
        }
    }
}

/// utime + stime of a process (`self` or a pid), in seconds.
pub(crate) fn cpu_secs(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(") ").context("bad /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    // /proc reports USER_HZ ticks, 100 per second on Linux.
    Ok(ticks as f64 / 100.0)
}

/// Appends one published message: a masked binary frame holding
/// `payload`, or with `socketio` the text frame `42["m","HEX…"]` (the
/// header in hex, then the filler).
fn push_msg(out: &mut BytesMut, key: [u8; 4], payload: &[u8], socketio: bool) {
    if !socketio {
        return push_frame(out, key, OpCode::Binary, payload);
    }
    let mut text = Vec::with_capacity(payload.len() + HEADER + 16);
    text.extend_from_slice(SIO_EVENT);
    for b in &payload[..HEADER] {
        text.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    text.extend_from_slice(&payload[HEADER..]);
    text.extend_from_slice(br#""]"#);
    push_frame(out, key, OpCode::Text, &text);
}

/// The prefix of a Socket.IO `m` event (then the header in hex).
const SIO_EVENT: &[u8] = br#"42["m",""#;

/// The header of a Socket.IO `m` event's payload, from its hex.
fn sio_header(packet: &[u8]) -> Option<[u8; HEADER]> {
    let hex = packet.strip_prefix(SIO_EVENT)?.get(..HEADER * 2)?;
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut head = [0u8; HEADER];
    for (i, h) in head.iter_mut().enumerate() {
        *h = (digit(hex[2 * i])? << 4) | digit(hex[2 * i + 1])?;
    }
    Some(head)
}

/// Appends one masked frame.
fn push_frame(out: &mut BytesMut, key: [u8; 4], opcode: OpCode, payload: &[u8]) {
    encode_header(
        out,
        &FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(key),
            payload_len: payload.len() as u64,
        },
    );
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key);
}

fn stamp(payload: &mut [u8], id: u32, seq: u64, ts: u64) {
    payload[0..4].copy_from_slice(&id.to_le_bytes());
    payload[4..12].copy_from_slice(&seq.to_le_bytes());
    payload[12..20].copy_from_slice(&ts.to_le_bytes());
}

fn topic_url(url: &str, topic: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}topic={topic}")
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<FanoutReport> {
    let local = tokio::task::LocalSet::new();
    local.run_until(run_local(args)).await
}

async fn run_local(args: &BenchArgs) -> anyhow::Result<FanoutReport> {
    let fanout = args.mode == Mode::Fanout;
    let size = args.size.unwrap_or(64);
    if size < HEADER {
        bail!("--size must be at least {HEADER} bytes (publisher id, sequence number, timestamp)");
    }
    let (rooms, members) = if fanout {
        (1, args.subscribers + 1)
    } else {
        (args.rooms.max(1), args.members.max(1))
    };
    let total = rooms * members;
    if total > u32::MAX as usize - 1 {
        bail!("too many connections");
    }
    if let Some(r) = args.rate {
        if !(r > 0.0 && r.is_finite()) {
            bail!("--rate must be a positive number of messages per second");
        }
    }
    let warmup = Duration::try_from_secs_f64(args.warmup)?;
    let duration = Duration::try_from_secs_f64(args.duration)?;
    let shared = Rc::new(Shared {
        base: Instant::now(),
        size,
        members,
        socketio: args.socketio,
        fanout,
        phase: Cell::new(Phase::Connect),
        phase_changed: Notify::new(),
        progress: Notify::new(),
        from_ns: Cell::new(u64::MAX),
        to_ns: Cell::new(u64::MAX),
        hist: RefCell::new(Histogram::new_with_bounds(1_000, 600_000_000_000, 3)?),
        warmed: Cell::new(0),
        room_warmed: (0..rooms).map(|_| Cell::new(0)).collect(),
        window_deliveries: Cell::new(0),
        received_total: Cell::new(0),
    });
    let conns: Vec<Rc<Conn>> = (0..total)
        .map(|i| {
            Rc::new(Conn {
                id: i as u32,
                room: i / members,
                publishes: !fanout || i == 0,
                subscriber: !fanout || i != 0,
                tracks: RefCell::new(vec![Track::default(); if fanout { 1 } else { members }]),
                deliveries: Cell::new(0),
                duplicated: Cell::new(0),
                out_of_order: Cell::new(0),
                errors: Cell::new(0),
                own_echoes: Cell::new(0),
                warmed: Cell::new(false),
                sent: Cell::new(0),
                echoed: Notify::new(),
                pongs: RefCell::new(Vec::new()),
                writer: tokio::sync::Mutex::new(None),
            })
        })
        .collect();

    // Connect, at most --connect-concurrency at once; each connection's
    // reader starts as soon as it is open.
    let t0 = Instant::now();
    let bar = progress(args, Duration::from_millis(total as u64));
    let gate = Rc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut dials = Vec::with_capacity(total);
    let mut tasks = Vec::with_capacity(total * 2);
    let mut publishers = Vec::new();
    for (i, conn) in conns.iter().enumerate() {
        // Subscribers spread over --url and each --spread-url.
        let url = match i % (1 + args.spread_url.len()) {
            _ if conn.publishes => &args.url,
            0 => &args.url,
            k => &args.spread_url[k - 1],
        };
        let target = target(&topic_url(
            url,
            &if fanout {
                args.topic.clone()
            } else {
                format!("room-{}", conn.room)
            },
        ))?;
        let source = (args.source_addrs > 1).then(|| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                1 + (i % args.source_addrs as usize) as u8,
            ))
        });
        let gate = gate.clone();
        let (conn, shared, bar) = (conn.clone(), shared.clone(), bar.clone());
        dials.push(tokio::task::spawn_local(async move {
            let _permit = gate.acquire().await?;
            let (tcp, rest) = tokio::time::timeout(Duration::from_secs(30), dial(&target, source))
                .await
                .context("handshake timed out")??;
            let (rd, wr) = tcp.into_split();
            *conn.writer.lock().await = Some(wr);
            bar.inc(1);
            Ok::<_, anyhow::Error>(tokio::task::spawn_local(async move {
                if let Err(e) = read_loop(rd, rest, &conn, &shared).await {
                    conn.errors.set(conn.errors.get() + 1);
                    tracing::debug!("connection {}: {e:#}", conn.id);
                }
            }))
        }));
    }
    for (i, d) in dials.into_iter().enumerate() {
        tasks.push(d.await?.with_context(|| format!("connection {i}"))?);
    }
    bar.finish_and_clear();
    let connect_secs = t0.elapsed().as_secs_f64();

    // Warm up: publishers start; warm-up messages until all are subscribed.
    shared.set_phase(Phase::Warmup);
    let rate = args.rate;
    let pipeline = args.pipeline.max(1) as u64;
    for conn in conns.iter().filter(|c| c.publishes) {
        let (conn, shared) = (conn.clone(), shared.clone());
        publishers.push(tokio::task::spawn_local(async move {
            if let Err(e) = write_loop(&conn, &shared, rate, pipeline).await {
                conn.errors.set(conn.errors.get() + 1);
                tracing::debug!("publisher {}: {e:#}", conn.id);
            }
        }));
    }
    let t1 = Instant::now();
    let warm_limit = Duration::from_secs(30) + Duration::from_millis(total as u64 * 2);
    if !shared
        .wait_progress(t1 + warm_limit, || shared.warmed.get() >= total)
        .await
    {
        bail!(
            "only {} of {total} connections got a warm-up message in {:.0}s: not all subscribed?",
            shared.warmed.get(),
            warm_limit.as_secs_f64()
        );
    }
    let warmup_wait_secs = t1.elapsed().as_secs_f64();

    // Run: publish; measure after --warmup for --duration.
    let run_start = shared.now_ns();
    let from = run_start + warmup.as_nanos() as u64;
    let to = from + duration.as_nanos() as u64;
    shared.from_ns.set(from);
    shared.to_ns.set(to);
    shared.set_phase(Phase::Run);
    let server_pid = args.server_pid.map(|p| p.to_string());
    let sent_total = || conns.iter().map(|c| c.sent.get()).sum::<u64>();
    tokio::time::sleep_until((shared.base + Duration::from_nanos(from)).into()).await;
    let (c0, s0, p0) = (
        cpu_secs("self")?,
        server_pid.as_deref().map(cpu_secs).transpose()?,
        sent_total(),
    );
    tokio::time::sleep_until((shared.base + Duration::from_nanos(to)).into()).await;
    let (c1, s1, p1) = (
        cpu_secs("self")?,
        server_pid.as_deref().map(cpu_secs).transpose()?,
        sent_total(),
    );
    shared.set_phase(Phase::Stop);

    // Drain: until every subscriber has every message, or --drain passes.
    let expected = || -> u64 {
        conns
            .iter()
            .filter(|c| c.publishes)
            .map(|c| {
                c.sent.get()
                    * if fanout {
                        args.subscribers as u64
                    } else {
                        members as u64
                    }
            })
            .sum()
    };
    let drain_end = Instant::now() + Duration::try_from_secs_f64(args.drain)?;
    // The publishers see Stop and end (a write in progress completes):
    // then `sent` is final.
    for p in publishers {
        let abort = p.abort_handle();
        if tokio::time::timeout_at(drain_end.into(), p).await.is_err() {
            abort.abort();
        }
    }
    shared
        .wait_progress(drain_end, || shared.received_total.get() >= expected())
        .await;
    for t in &tasks {
        t.abort();
    }

    // The report.
    let mut r = FanoutReport {
        mode: if fanout { "fanout" } else { "rooms" },
        url: args.url.clone(),
        subscribers: conns.iter().filter(|c| c.subscriber).count(),
        publishers: conns.iter().filter(|c| c.publishes).count(),
        rooms,
        members: if fanout { 0 } else { members },
        size,
        rate,
        pipeline: pipeline as usize,
        connections: total,
        connect_secs,
        warmup_wait_secs,
        seconds: duration.as_secs_f64(),
        published: p1 - p0,
        publishes_per_sec: (p1 - p0) as f64 / duration.as_secs_f64(),
        deliveries: shared.window_deliveries.get(),
        deliveries_per_sec: shared.window_deliveries.get() as f64 / duration.as_secs_f64(),
        expected_total: expected(),
        received_total: shared.received_total.get(),
        ..Default::default()
    };
    {
        let h = shared.hist.borrow();
        if !h.is_empty() {
            r.p50_us = h.value_at_quantile(0.5) as f64 / 1e3;
            r.p99_us = h.value_at_quantile(0.99) as f64 / 1e3;
            r.p999_us = h.value_at_quantile(0.999) as f64 / 1e3;
            r.max_us = h.max() as f64 / 1e3;
        }
    }
    for c in &conns {
        r.errors += c.errors.get();
        r.publisher_echoes += if c.subscriber { 0 } else { c.own_echoes.get() };
        if !c.subscriber {
            continue;
        }
        let tracks = c.tracks.borrow();
        let lost: u64 = tracks
            .iter()
            .enumerate()
            .map(|(slot, t)| {
                let publisher = if fanout { 0 } else { c.room * members + slot };
                conns[publisher].sent.get().saturating_sub(t.unique)
            })
            .sum();
        r.lost += lost;
        r.lost_max = r.lost_max.max(lost);
        r.subscribers_with_loss += usize::from(lost > 0);
        r.duplicated += c.duplicated.get();
        r.duplicated_max = r.duplicated_max.max(c.duplicated.get());
        r.out_of_order += c.out_of_order.get();
        r.out_of_order_max = r.out_of_order_max.max(c.out_of_order.get());
    }
    let secs = duration.as_secs_f64();
    let per_delivery = |cpu: f64| (r.deliveries > 0).then(|| cpu * 1e6 / r.deliveries as f64);
    r.client_cpu_secs = c1 - c0;
    r.client_cpu_pct = 100.0 * (c1 - c0) / secs;
    r.client_cpu_us_per_delivery = per_delivery(c1 - c0);
    if let (Some(s0), Some(s1)) = (s0, s1) {
        r.server_cpu_secs = Some(s1 - s0);
        r.server_cpu_pct = Some(100.0 * (s1 - s0) / secs);
        r.server_cpu_us_per_delivery = per_delivery(s1 - s0);
    }
    Ok(r)
}

/// Writes the pongs owed and `out` (either may be empty).
async fn write_out(conn: &Conn, out: &mut BytesMut) -> anyhow::Result<()> {
    let pongs = std::mem::take(&mut *conn.pongs.borrow_mut());
    if pongs.is_empty() && out.is_empty() {
        return Ok(());
    }
    let mut guard = conn.writer.lock().await;
    let wr = guard.as_mut().context("not connected")?;
    if !pongs.is_empty() {
        wr.write_all(&pongs).await?;
    }
    if !out.is_empty() {
        wr.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    conn: &Conn,
    shared: &Shared,
) -> anyhow::Result<()> {
    // What came with the handshake's response (a Socket.IO server's
    // open packet) is handled before reading more.
    let mut pending = !buf.is_empty();
    buf.reserve(4096);
    loop {
        if !std::mem::take(&mut pending) && rd.read_buf(&mut buf).await? == 0 {
            bail!("server closed the connection");
        }
        let now = shared.now_ns();
        let mut pong = false;
        loop {
            let (h, hlen) = match decode_header(&buf) {
                Ok(Decoded::Header(h, n)) => (h, n),
                Ok(Decoded::Incomplete(_)) => break,
                Err(e) => bail!("bad frame from server: {e:?}"),
            };
            let len = h.payload_len as usize;
            if buf.len() < hlen + len {
                buf.reserve(hlen + len - buf.len());
                break;
            }
            match h.opcode {
                OpCode::Text if shared.socketio => {
                    let packet = &buf[hlen..hlen + len];
                    if let Some(head) = sio_header(packet) {
                        on_message(conn, shared, &head, now);
                    } else {
                        // Engine.IO open → connect to `/`; ping → pong.
                        let answer: &[u8] = match packet {
                            [b'0', ..] => b"40",
                            [b'2'] => b"3",
                            [b'4', b'0', ..] => b"",
                            [b'4', b'4', ..] => bail!("Socket.IO connect refused"),
                            [b'1', ..] => bail!("Engine.IO close"),
                            _ => {
                                conn.errors.set(conn.errors.get() + 1);
                                b""
                            }
                        };
                        if !answer.is_empty() {
                            let mut frame = BytesMut::new();
                            push_frame(&mut frame, [0; 4], OpCode::Text, answer);
                            conn.pongs.borrow_mut().extend_from_slice(&frame);
                            pong = true;
                        }
                    }
                }
                OpCode::Text | OpCode::Binary => {
                    if !h.fin || len != shared.size {
                        conn.errors.set(conn.errors.get() + 1);
                    }
                    if len >= HEADER {
                        on_message(conn, shared, &buf[hlen..hlen + HEADER], now);
                    }
                }
                OpCode::Ping => {
                    let mut pongs = conn.pongs.borrow_mut();
                    let mut frame = BytesMut::new();
                    encode_header(
                        &mut frame,
                        &FrameHeader {
                            fin: true,
                            rsv: 0,
                            opcode: OpCode::Pong,
                            mask: Some([0; 4]),
                            payload_len: len as u64,
                        },
                    );
                    pongs.extend_from_slice(&frame);
                    pongs.extend_from_slice(&buf[hlen..hlen + len]);
                    pong = true;
                }
                OpCode::Close => bail!("server closed the connection"),
                _ => {}
            }
            buf.advance(hlen + len);
        }
        // A publisher's writer sends the pongs with its next messages.
        if pong && !(conn.publishes && shared.phase.get() == Phase::Run) {
            write_out(conn, &mut BytesMut::new()).await?;
        }
    }
}

fn on_message(conn: &Conn, shared: &Shared, head: &[u8], now: u64) {
    let id = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
    let ts = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
    if id == WARM_ID {
        if !conn.warmed.replace(true) {
            shared.warmed.set(shared.warmed.get() + 1);
            shared.progress.notify_waiters();
            let room = &shared.room_warmed[conn.room];
            room.set(room.get() + 1);
        }
        return;
    }
    if id == conn.id {
        conn.own_echoes.set(conn.own_echoes.get() + 1);
        conn.echoed.notify_one();
        if !conn.subscriber {
            return;
        }
    }
    let slot = if shared.fanout {
        (id == 0).then_some(0)
    } else {
        let id = id as usize;
        (id / shared.members == conn.room).then_some(id % shared.members)
    };
    let Some(slot) = slot else {
        conn.errors.set(conn.errors.get() + 1);
        return;
    };
    match conn.tracks.borrow_mut()[slot].observe(seq) {
        Seen::InOrder => {}
        Seen::Late => conn.out_of_order.set(conn.out_of_order.get() + 1),
        Seen::Duplicate => {
            conn.duplicated.set(conn.duplicated.get() + 1);
            return;
        }
    }
    shared.received_total.set(shared.received_total.get() + 1);
    if shared.phase.get() == Phase::Stop {
        shared.progress.notify_waiters();
    }
    conn.deliveries.set(conn.deliveries.get() + 1);
    if now >= shared.from_ns.get() && now <= shared.to_ns.get() {
        shared
            .window_deliveries
            .set(shared.window_deliveries.get() + 1);
    }
    if ts >= shared.from_ns.get() && ts <= shared.to_ns.get() {
        let _ = shared
            .hist
            .borrow_mut()
            .record(now.saturating_sub(ts).max(1_000));
    }
}

async fn write_loop(
    conn: &Conn,
    shared: &Shared,
    rate: Option<f64>,
    pipeline: u64,
) -> anyhow::Result<()> {
    let key: [u8; 4] = rand::random();
    let mut payload: Vec<u8> = (0..shared.size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut out = BytesMut::with_capacity(4096);
    // Warm-up: the room's first member (the fan-out publisher) publishes
    // warm-up messages until the whole room has one.
    if (conn.id as usize).is_multiple_of(shared.members) {
        while shared.room_warmed[conn.room].get() < shared.members
            && shared.phase.get() == Phase::Warmup
        {
            stamp(&mut payload, WARM_ID, conn.room as u64, 0);
            push_msg(&mut out, key, &payload, shared.socketio);
            write_out(conn, &mut out).await?;
            let changed = shared.phase_changed.notified();
            let _ = tokio::time::timeout(Duration::from_millis(250), changed).await;
        }
    }
    shared.wait_phase(Phase::Run).await;
    match rate {
        Some(rate) => {
            // Ticks of 1/rate (at least 1 ms; at high rates a tick sends
            // all that is due), started at a random phase.
            let period = Duration::from_secs_f64((1.0 / rate).clamp(0.001, 1.0));
            let start = tokio::time::Instant::now() + period.mul_f64(rand::random::<f64>());
            let mut tick = tokio::time::interval_at(start, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if shared.phase.get() != Phase::Run {
                    break;
                }
                let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1)
                    .saturating_sub(conn.sent.get());
                let now = shared.now_ns();
                for _ in 0..due.min(10_000) {
                    stamp(&mut payload, conn.id, conn.sent.get(), now);
                    push_msg(&mut out, key, &payload, shared.socketio);
                    conn.sent.set(conn.sent.get() + 1);
                }
                write_out(conn, &mut out).await?;
            }
        }
        None => loop {
            // As fast as the own echoes come back, `pipeline` in flight.
            while conn.sent.get() >= conn.own_echoes.get() + pipeline
                && shared.phase.get() == Phase::Run
            {
                conn.echoed.notified().await;
            }
            if shared.phase.get() != Phase::Run {
                break;
            }
            let now = shared.now_ns();
            while conn.sent.get() < conn.own_echoes.get() + pipeline {
                stamp(&mut payload, conn.id, conn.sent.get(), now);
                push_msg(&mut out, key, &payload, shared.socketio);
                conn.sent.set(conn.sent.get() + 1);
            }
            write_out(conn, &mut out).await?;
        },
    }
    Ok(())
}

pub fn print_report(r: &FanoutReport) {
    let rate = match r.rate {
        Some(x) => format!("{x} msg/s per publisher"),
        None => format!("max rate ({} in flight)", r.pipeline),
    };
    if r.mode == "fanout" {
        println!(
            "fan-out: 1 publisher -> {} subscribers, {} B, {rate}, {:.1}s measured",
            r.subscribers, r.size, r.seconds
        );
    } else {
        println!(
            "rooms: {} rooms x {} members, {} B, {rate}, {:.1}s measured",
            r.rooms, r.members, r.size, r.seconds
        );
    }
    println!(
        "setup: {} connections in {:.2}s, all subscribed after {:.2}s",
        r.connections, r.connect_secs, r.warmup_wait_secs
    );
    println!(
        "published {:.0}/s, delivered {:.0}/s ({} deliveries)",
        r.publishes_per_sec, r.deliveries_per_sec, r.deliveries
    );
    println!(
        "publish to delivery: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        r.p50_us, r.p99_us, r.p999_us, r.max_us
    );
    println!(
        "lost {} (max {} per subscriber, {} subscribers lost some), duplicated {} (max {}), out of order {} (max {}), errors {}",
        r.lost,
        r.lost_max,
        r.subscribers_with_loss,
        r.duplicated,
        r.duplicated_max,
        r.out_of_order,
        r.out_of_order_max,
        r.errors
    );
    if r.mode == "fanout" {
        println!("publisher's own echoes: {}", r.publisher_echoes);
    }
    let per = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3} us"));
    println!(
        "load generator CPU: {:.2}s ({:.0}% of a core), {} per delivery",
        r.client_cpu_secs,
        r.client_cpu_pct,
        per(r.client_cpu_us_per_delivery)
    );
    if let (Some(s), Some(p)) = (r.server_cpu_secs, r.server_cpu_pct) {
        println!(
            "server CPU: {s:.2}s ({p:.0}% of a core), {} per delivery",
            per(r.server_cpu_us_per_delivery)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_tells_gaps_late_arrivals_and_duplicates() {
        let mut t = Track::default();
        assert_eq!(t.observe(0), Seen::InOrder);
        assert_eq!(t.observe(1), Seen::InOrder);
        assert_eq!(t.observe(4), Seen::InOrder); // 2 and 3 missing
        assert_eq!(t.observe(2), Seen::Late);
        assert_eq!(t.observe(2), Seen::Duplicate);
        assert_eq!(t.observe(4), Seen::Duplicate);
        assert_eq!(t.observe(1000), Seen::InOrder); // the window moves on
        assert_eq!(t.observe(3), Seen::Late); // too old to tell: counted once
        assert_eq!(t.observe(1000), Seen::Duplicate);
        assert_eq!(t.unique, 6);
        assert_eq!(t.next, 1001);
    }

    #[test]
    fn socketio_events_carry_the_header_in_hex() {
        let mut payload: Vec<u8> = (0..64).map(|i| b'a' + (i % 26) as u8).collect();
        stamp(&mut payload, 7, 42, 123_456_789);
        let mut out = BytesMut::new();
        push_msg(&mut out, [0; 4], &payload, true);
        let Ok(Decoded::Header(h, n)) = decode_header(&out) else {
            panic!("a frame")
        };
        assert_eq!(h.opcode, OpCode::Text);
        let text = &out[n..];
        assert!(text.starts_with(br#"42["m",""#) && text.ends_with(br#""]"#));
        assert_eq!(sio_header(text).unwrap()[..], payload[..HEADER]);
        assert_eq!(sio_header(br#"42["m","zz"]"#), None);
        assert_eq!(sio_header(b"40{}"), None);
    }

    #[test]
    fn topic_is_added_to_the_query() {
        assert_eq!(topic_url("ws://h/ws", "a"), "ws://h/ws?topic=a");
        assert_eq!(topic_url("ws://h/ws?x=1", "a"), "ws://h/ws?x=1&topic=a");
    }
}
