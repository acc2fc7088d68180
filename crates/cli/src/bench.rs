//! `silverback bench`: a load generator built for cost per message.
//!
//! Frames are encoded (and masked) once and written many times; several
//! messages are kept in flight per connection (`--pipeline`); every echo is
//! checked byte for byte. Modes: `echo` (throughput and round-trip
//! latency), `connect` (a storm of handshake + clean close), `idle` (hold
//! connections open and report the server's RSS per connection), and the
//! pub/sub modes `fanout` and `rooms` (in `fanout.rs`).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{Buf, BytesMut};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use silverback::proto::frame::{decode_header, encode_header, Decoded, FrameHeader, OpCode};
use silverback::proto::handshake::client::{
    build_request, generate_key, parse_response, validate_response, write_request,
};
use silverback::proto::handshake::HeadLimits;
use silverback::proto::mask::apply_mask;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Echo throughput and round-trip latency.
    Echo,
    /// Handshake + clean close per connection, as fast as possible.
    Connect,
    /// Hold connections open; report the server's RSS per connection.
    Idle,
    /// Pub/sub: one publisher, `--subscribers` N on one topic.
    Fanout,
    /// Pub/sub: `--rooms` R topics × `--members` M, every member publishing.
    Rooms,
}

/// Options of `silverback bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server URL (`ws://` only: the generator measures the WebSocket path).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Fanout: also connect subscribers to this URL (repeatable; spread
    /// round-robin with --url, which keeps the publisher): other nodes of
    /// a cluster sharing topics through Redis.
    #[arg(long, value_name = "URL")]
    pub spread_url: Vec<String>,
    /// Fanout/rooms: speak Socket.IO (Engine.IO v4 over WebSocket) to a
    /// Socket.IO server (bench/node/socketio_fanout.mjs): --url is its
    /// `ws://HOST:PORT/socket.io/?EIO=4&transport=websocket`; messages
    /// are `42["m","<hex header + filler>"]` text.
    #[arg(long)]
    pub socketio: bool,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Connections (echo: in parallel; connect: concurrent dialers; idle:
    /// how many to hold).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Payload bytes per message [default: 16; fanout, rooms: 64].
    #[arg(long)]
    pub size: Option<usize>,
    /// Messages in flight per connection (fanout, rooms without --rate:
    /// per publisher, counted until its own copy comes back).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Fanout: subscriber connections (besides the publisher).
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Fanout, rooms: messages per second per publisher (default: as fast
    /// as the publisher's own copies come back, see --pipeline).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Rooms: how many topics (`room-0`, `room-1`, ...).
    #[arg(long, default_value_t = 1000)]
    pub rooms: usize,
    /// Rooms: connections per room, each a publisher and a subscriber.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Fanout: the topic (`?topic=NAME` added to --url).
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Fanout, rooms: handshakes in progress at once during setup.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Fanout, rooms: seconds the subscribers get to catch up after the
    /// publishers stop (before what is missing counts as lost).
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Seconds measured (after the warmup).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Send text messages (default).
    #[arg(long, conflicts_with = "binary")]
    pub text: bool,
    /// Send binary messages.
    #[arg(long)]
    pub binary: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The server's process id: idle mode reads its RSS; fanout and rooms
    /// its CPU time (/proc/PID/stat) over the measured window.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Connect: milliseconds each connection stays open (silent) before
    /// its Close (a client that speaks after a pause: `serve` parks it
    /// first, after --park-new-after).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub linger_ms: u64,
    /// Idle, fanout, rooms: how many 127.0.0.x source addresses to spread
    /// connections over (for more than ~28k connections).
    #[arg(long, default_value_t = 1)]
    pub source_addrs: u8,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Echo, connect: open the WebSockets with silverback's Dialer over
    /// HTTP/2 (RFC 8441), all multiplexed over one pooled HTTP/2
    /// connection (h2c for ws://, ALPN h2 for wss://). A wss:// URL without
    /// it uses the Dialer over HTTP/1.1 (one TLS connection each).
    #[arg(long)]
    pub http2: bool,
    /// wss://: accept any certificate (a bench server's self-signed one).
    #[arg(long)]
    pub insecure: bool,
    /// Echo, connect: go through silverback's Dialer over HTTP/1.1 too
    /// (what `--http2` and wss:// do), the baseline for `--http2` on ws://.
    #[arg(long)]
    pub dialer: bool,
}

/// The result, printed as text or JSON.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub(crate) mode: &'static str,
    pub(crate) url: String,
    pub(crate) conns: usize,
    pub(crate) size: usize,
    pub(crate) pipeline: usize,
    pub(crate) seconds: f64,
    pub(crate) messages: u64,
    pub(crate) msgs_per_sec: f64,
    pub(crate) mb_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
    pub(crate) handshakes: u64,
    pub(crate) handshakes_per_sec: f64,
    pub(crate) clean_close_ratio: f64,
    pub(crate) idle_connections: usize,
    pub(crate) server_rss_per_conn_bytes: Option<f64>,
    pub(crate) errors: u64,
    /// `--http2`/wss:// runs: the transport, `h2` or `http/1.1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) transport: Option<&'static str>,
    /// Server CPU seconds (utime + stime) over the measured window
    /// (`--server-pid`; `--http2`/wss:// runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu_secs: Option<f64>,
    /// Server CPU per message (echo) or per WebSocket opened and closed
    /// (connect), in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu_us_per_op: Option<f64>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    if matches!(args.mode, Mode::Fanout | Mode::Rooms) {
        let report = rt.block_on(crate::fanout::run(&args))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            crate::fanout::print_report(&report);
        }
        return Ok(());
    }
    if crate::bench_h2::applies(&args) {
        let report = rt.block_on(crate::bench_h2::run(&args))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_report(&report);
        }
        return Ok(());
    }
    let report = rt.block_on(async {
        match args.mode {
            Mode::Echo => echo(&args).await,
            Mode::Connect => storm(&args).await,
            Mode::Idle => idle(&args).await,
            Mode::Fanout | Mode::Rooms => unreachable!("handled above"),
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Report) {
    if let Some(transport) = r.transport {
        println!("over {transport}");
    }
    if let (Some(cpu), Some(per_op)) = (r.server_cpu_secs, r.server_cpu_us_per_op) {
        println!("server CPU {cpu:.2}s: {per_op:.1} us per operation");
    }
    match r.mode {
        "echo" => {
            println!(
                "{} conns x {} B, pipeline {}: {:.0} msg/s, {:.1} MB/s over {:.1}s ({} messages, {} errors)",
                r.conns, r.size, r.pipeline, r.msgs_per_sec, r.mb_per_sec, r.seconds, r.messages, r.errors
            );
            println!(
                "round trip: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
                r.p50_us, r.p99_us, r.p999_us, r.max_us
            );
        }
        "connect" => println!(
            "{} handshakes in {:.1}s: {:.0}/s, clean closes {:.1}% ({} errors)",
            r.handshakes,
            r.seconds,
            r.handshakes_per_sec,
            r.clean_close_ratio * 100.0,
            r.errors
        ),
        _ => match r.server_rss_per_conn_bytes {
            Some(b) => println!(
                "{} idle connections: server RSS {:.0} bytes ({:.2} KiB) per connection",
                r.idle_connections,
                b,
                b / 1024.0
            ),
            None => println!(
                "{} idle connections held (no --server-pid: RSS not measured)",
                r.idle_connections
            ),
        },
    }
}

pub(crate) struct Target {
    host: String,
    port: u16,
    url: String,
}

pub(crate) fn target(url: &str) -> anyhow::Result<Target> {
    let uri: http::Uri = url.parse().context("--url")?;
    if uri.scheme_str() != Some("ws") {
        bail!("bench measures ws:// URLs only");
    }
    let host = uri.host().context("--url has no host")?;
    Ok(Target {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: uri.port_u16().unwrap_or(80),
        url: url.to_owned(),
    })
}

/// Connects (from `source`, if given) and runs the client handshake by
/// hand: returns the stream and any bytes read past the response.
pub(crate) async fn dial(
    t: &Target,
    source: Option<IpAddr>,
) -> anyhow::Result<(TcpStream, BytesMut)> {
    let addr: SocketAddr = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await?
        .next()
        .context("no address")?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let key = generate_key();
    let uri: http::Uri = t.url.parse()?;
    let req = build_request(&uri, &key, &[], &[])?;
    let mut out = Vec::new();
    write_request(&req, &mut out);
    tcp.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(512);
    loop {
        if let Some((resp, len)) = parse_response(&buf, HeadLimits::default())? {
            validate_response(&resp, &key, &[])?;
            buf.advance(len);
            return Ok((tcp, buf));
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            bail!("server closed during the handshake");
        }
    }
}

/// A masked client frame, encoded once.
fn encode_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let key: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    encode_header(
        &mut out,
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
    out.to_vec()
}

const CLOSE_1000: [u8; 2] = [0x03, 0xe8];

#[derive(Default)]
struct ConnStats {
    messages: u64,
    bytes: u64,
    errors: u64,
    hist: Option<Histogram<u64>>,
}

async fn echo(args: &BenchArgs) -> anyhow::Result<Report> {
    let t = target(&args.url)?;
    let size = args.size.unwrap_or(16);
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let opcode = if args.binary {
        OpCode::Binary
    } else {
        OpCode::Text
    };
    let frame = encode_frame(opcode, &payload);
    let warmup = Duration::try_from_secs_f64(args.warmup)?;
    let duration = Duration::try_from_secs_f64(args.duration)?;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let bar = progress(args, warmup + duration);
    let mut tasks = Vec::new();
    for _ in 0..args.conns.max(1) {
        let (tcp, rest) = dial(&t, None).await?;
        let frame = frame.clone();
        let payload = payload.clone();
        let pipeline = args.pipeline.max(1);
        tasks.push(tokio::spawn(async move {
            echo_conn(tcp, rest, &frame, &payload, pipeline, measure_from, end).await
        }));
    }
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let elapsed = start.elapsed();
                bar.set_position(elapsed.as_millis() as u64);
                if elapsed >= warmup + duration {
                    break;
                }
            }
        })
    };
    let mut total = ConnStats {
        hist: Some(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ..Default::default()
    };
    for task in tasks {
        let s = task.await??;
        total.messages += s.messages;
        total.bytes += s.bytes;
        total.errors += s.errors;
        if let (Some(h), Some(part)) = (total.hist.as_mut(), s.hist.as_ref()) {
            h.add(part)?;
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    let secs = duration.as_secs_f64();
    let h = total.hist.expect("histogram");
    Ok(Report {
        mode: "echo",
        url: args.url.clone(),
        conns: args.conns,
        size,
        pipeline: args.pipeline,
        seconds: secs,
        messages: total.messages,
        msgs_per_sec: total.messages as f64 / secs,
        mb_per_sec: total.bytes as f64 / secs / 1e6,
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
        p999_us: h.value_at_quantile(0.999) as f64 / 1e3,
        max_us: h.max() as f64 / 1e3,
        errors: total.errors,
        ..Default::default()
    })
}

async fn echo_conn(
    mut tcp: TcpStream,
    mut buf: BytesMut,
    frame: &[u8],
    payload: &[u8],
    pipeline: usize,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<ConnStats> {
    let mut stats = ConnStats {
        hist: Some(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ..Default::default()
    };
    let hist = stats.hist.as_mut().expect("histogram");
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
    let mut out = Vec::with_capacity(frame.len() * pipeline);
    let now = Instant::now();
    for _ in 0..pipeline {
        out.extend_from_slice(frame);
        in_flight.push_back(now);
    }
    tcp.write_all(&out).await?;
    buf.reserve(64 * 1024);
    let mut stopping = false;
    loop {
        if tcp.read_buf(&mut buf).await? == 0 {
            bail!("server closed the connection");
        }
        out.clear();
        let now = Instant::now();
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
                OpCode::Text | OpCode::Binary => {
                    if !h.fin || &buf[hlen..hlen + len] != payload {
                        stats.errors += 1;
                    }
                    buf.advance(hlen + len);
                    let sent = in_flight.pop_front().context("unsolicited message")?;
                    if sent >= measure_from && now <= end {
                        stats.messages += 1;
                        stats.bytes += len as u64;
                        let _ = hist.record((now - sent).as_nanos().max(1) as u64);
                    }
                    if now < end {
                        out.extend_from_slice(frame);
                        in_flight.push_back(now);
                    } else {
                        stopping = true;
                    }
                }
                OpCode::Ping => {
                    // Answer keepalive pings (masked pong, same payload).
                    let pong = encode_frame(OpCode::Pong, &buf[hlen..hlen + len]);
                    buf.advance(hlen + len);
                    out.extend_from_slice(&pong);
                }
                OpCode::Close => bail!("server closed the connection"),
                _ => buf.advance(hlen + len),
            }
        }
        if !out.is_empty() {
            tcp.write_all(&out).await?;
        }
        if stopping && in_flight.is_empty() {
            break;
        }
    }
    // Clean close: our Close, the server's echo, the server's TCP close.
    tcp.write_all(&encode_frame(OpCode::Close, &CLOSE_1000))
        .await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tcp.read_buf(&mut buf).await.unwrap_or(0) > 0 {
            buf.clear();
        }
    })
    .await;
    Ok(stats)
}

/// One connection: handshake, Close 1000, wait for the echo and TCP close.
/// `Ok(true)` if the close was clean.
async fn one_storm_conn(t: &Target, linger: Duration) -> anyhow::Result<bool> {
    let (mut tcp, mut buf) = dial(t, None).await?;
    if !linger.is_zero() {
        tokio::time::sleep(linger).await;
    }
    tcp.write_all(&encode_frame(OpCode::Close, &CLOSE_1000))
        .await?;
    let mut saw_close = false;
    loop {
        if let Ok(Decoded::Header(h, n)) = decode_header(&buf) {
            if buf.len() >= n + h.payload_len as usize {
                saw_close |= h.opcode == OpCode::Close;
                buf.advance(n + h.payload_len as usize);
                continue;
            }
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Ok(saw_close);
        }
    }
}

async fn storm(args: &BenchArgs) -> anyhow::Result<Report> {
    let t = std::sync::Arc::new(target(&args.url)?);
    let duration = Duration::try_from_secs_f64(args.duration)?;
    let end = Instant::now() + duration;
    let bar = progress(args, duration);
    let linger = Duration::from_millis(args.linger_ms);
    let mut tasks = Vec::new();
    for _ in 0..args.conns.max(1) {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut clean, mut errors) = (0u64, 0u64, 0u64);
            while Instant::now() < end {
                let conn = one_storm_conn(&t, linger);
                match tokio::time::timeout(Duration::from_secs(5) + linger, conn).await {
                    Ok(Ok(c)) => {
                        ok += 1;
                        clean += u64::from(c);
                    }
                    _ => errors += 1,
                }
            }
            (ok, clean, errors)
        }));
    }
    let (ok, clean, errors) = sum_counts(tasks).await?;
    bar.finish_and_clear();
    let secs = duration.as_secs_f64();
    Ok(connect_report(args, secs, ok, clean, errors))
}

/// Sums the `(handshakes, clean closes, errors)` counts of the connect
/// loops.
pub(crate) async fn sum_counts(
    tasks: Vec<tokio::task::JoinHandle<(u64, u64, u64)>>,
) -> anyhow::Result<(u64, u64, u64)> {
    let (mut ok, mut clean, mut errors) = (0, 0, 0);
    for task in tasks {
        let (o, c, e) = task.await?;
        ok += o;
        clean += c;
        errors += e;
    }
    Ok((ok, clean, errors))
}

/// The report of a `connect` run: `ok` handshakes in `secs`, `clean` of
/// them closed cleanly.
pub(crate) fn connect_report(
    args: &BenchArgs,
    secs: f64,
    ok: u64,
    clean: u64,
    errors: u64,
) -> Report {
    Report {
        mode: "connect",
        url: args.url.clone(),
        conns: args.conns,
        seconds: secs,
        handshakes: ok,
        handshakes_per_sec: ok as f64 / secs,
        clean_close_ratio: if ok == 0 {
            0.0
        } else {
            clean as f64 / ok as f64
        },
        errors,
        ..Default::default()
    }
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

async fn idle(args: &BenchArgs) -> anyhow::Result<Report> {
    let t = target(&args.url)?;
    let before = args.server_pid.map(rss_bytes).transpose()?;
    let mut conns = Vec::with_capacity(args.conns);
    let bar = progress(args, Duration::from_millis(args.conns as u64));
    for i in 0..args.conns {
        let source = if args.source_addrs > 1 {
            Some(IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                1 + (i % args.source_addrs as usize) as u8,
            )))
        } else {
            None
        };
        conns.push(
            dial(&t, source)
                .await
                .with_context(|| format!("connection {i}"))?,
        );
        bar.set_position(i as u64);
    }
    bar.finish_and_clear();
    // Let the server settle (its tasks reach their idle wait).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = args.server_pid.map(rss_bytes).transpose()?;
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => Some((a.saturating_sub(b)) as f64 / args.conns.max(1) as f64),
        _ => None,
    };
    Ok(Report {
        mode: "idle",
        url: args.url.clone(),
        conns: args.conns,
        idle_connections: conns.len(),
        server_rss_per_conn_bytes: per_conn,
        ..Default::default()
    })
}

pub(crate) fn progress(args: &BenchArgs, total: Duration) -> ProgressBar {
    if args.no_progress || args.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent}%")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
