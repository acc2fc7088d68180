//! permessage-deflate costs, measured (a benchmark, not run in CI).
//!
//! ```text
//! cargo run --release -p silverback --example deflate_bench -- [codec] [memory] [backends] [--conns N] [--messages N]
//! ```
//!
//! With no section named, all three run:
//!
//! - `codec`: a stream of 16 KiB JSON-like messages through
//!   [`PerMessageDeflate`] (server compresses, client inflates), in each
//!   memory mode: Dedicated with context takeover, Dedicated without,
//!   Shared. Reports the compression ratio (wire bytes / original bytes)
//!   and throughput in MB/s of original data, for compression and for
//!   decompression (best of 3 runs).
//! - `memory`: the RSS cost of an idle compressed connection on the
//!   server. A child process (this example with `--serve MODE`) runs an
//!   echo server; this process opens `--conns` connections (default 1000)
//!   with compression offered, exchanges one 16 KiB message on each, and
//!   keeps them open and answering pings. The child's VmRSS
//!   (/proc/PID/status) is read before (after 20 warm-up connections),
//!   after the exchange, and after the server's keepalive has run its
//!   idle-memory release (ping interval 2 s). Modes: no compression (the
//!   baseline), dedicated, dedicated without context takeover, shared.
//! - `backends`: flate2 with the zlib-rs backend (what silverback uses; it
//!   is needed for window bits) against miniz_oxide (flate2's default
//!   backend) used directly: raw deflate, level 6, 15-bit window, on the
//!   same messages; one-shot per message (fresh state, as without context
//!   takeover) both ways, and streaming with a sync flush per message (as
//!   with context takeover) both ways.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use silverback::proto::extension::deflate::{
    client_accept, client_offer, server_negotiate, PerMessageDeflate,
};
use silverback::proto::extension::Extension;
use silverback::proto::frame::RSV1;
use silverback::{Config, DeflateConfig, Dialer, Message, OpCode, Role, Upgrader};

const MESSAGE_SIZE: usize = 16 * 1024;
/// The keepalive interval of the memory test's server: idle connections
/// release what they can rebuild when it fires.
const IDLE_RELEASE: Duration = Duration::from_secs(2);
const WARMUP_CONNS: usize = 20;

// ----- data -------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: [&str; 48] = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "order",
    "invoice",
    "shipped",
    "pending",
    "refund",
    "customer",
    "warehouse",
    "berlin",
    "paris",
    "tokyo",
    "lagos",
    "lima",
    "quantity",
    "price",
    "discount",
    "express",
    "standard",
    "gift",
    "wrap",
    "note",
    "urgent",
    "backorder",
];

/// A JSON-like message of exactly [`MESSAGE_SIZE`] bytes: an array of
/// order records with varying numbers, names, timestamps and free text,
/// roughly what an API or a game server streams.
fn json_message(rng: &mut Rng) -> Vec<u8> {
    let mut s = String::with_capacity(MESSAGE_SIZE + 512);
    s.push_str("{\"type\":\"orders\",\"items\":[");
    while s.len() < MESSAGE_SIZE {
        let id = rng.below(10_000_000);
        let user = rng.below(100_000);
        let words: Vec<&str> = (0..3 + rng.below(6))
            .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
            .collect();
        s.push_str(&format!(
            "{{\"id\":{id},\"user\":\"user_{user}\",\"email\":\"user_{user}@example.com\",\
             \"ts\":\"2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"amount\":{}.{:02},\
             \"currency\":\"{}\",\"status\":\"{}\",\"tags\":[\"{}\",\"{}\"],\"note\":\"{}\"}},",
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1000),
            rng.below(5000),
            rng.below(100),
            ["EUR", "USD", "JPY", "NGN"][rng.below(4) as usize],
            WORDS[26 + rng.below(6) as usize],
            WORDS[rng.below(26) as usize],
            WORDS[rng.below(26) as usize],
            words.join(" "),
        ));
    }
    s.truncate(MESSAGE_SIZE);
    s.into_bytes()
}

fn messages(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n).map(|_| json_message(&mut rng)).collect()
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

// ----- codec --------------------------------------------------------------------

fn modes() -> Vec<(&'static str, DeflateConfig)> {
    vec![
        ("dedicated, context takeover", DeflateConfig::default()),
        (
            "dedicated, no context takeover",
            DeflateConfig {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..DeflateConfig::default()
            },
        ),
        ("shared (no context takeover)", DeflateConfig::shared()),
    ]
}

/// (compressed size, compress time, decompress time) for one pass.
fn codec_pass(cfg: &DeflateConfig, msgs: &[Vec<u8>]) -> (usize, Duration, Duration) {
    let offer = client_offer(cfg);
    let params = server_negotiate([offer.as_str()], cfg).expect("negotiated");
    let answer = params.to_string();
    let client_params = client_accept([answer.as_str()], cfg).unwrap().unwrap();
    let mut server = PerMessageDeflate::new(Role::Server, params, cfg);
    let mut client = PerMessageDeflate::new(Role::Client, client_params, cfg);
    let mut wire = Vec::with_capacity(msgs.len());
    let start = Instant::now();
    for m in msgs {
        let mut out = BytesMut::with_capacity(MESSAGE_SIZE / 2);
        let rsv = server.encode(OpCode::Text, m, &mut out).unwrap();
        assert_eq!(rsv, Some(RSV1));
        wire.push(out);
    }
    let compress = start.elapsed();
    let size = wire.iter().map(|w| w.len()).sum();
    let mut out = BytesMut::with_capacity(MESSAGE_SIZE);
    let start = Instant::now();
    for w in &wire {
        out.clear();
        client.decode(RSV1, w, true, &mut out, usize::MAX).unwrap();
        black_box(&out);
    }
    let decompress = start.elapsed();
    // Correctness, outside the timings.
    let mut check = PerMessageDeflate::new(Role::Client, client_params, cfg);
    for (w, m) in wire.iter().zip(msgs) {
        out.clear();
        check.decode(RSV1, w, true, &mut out, usize::MAX).unwrap();
        assert_eq!(&out[..], &m[..]);
    }
    (size, compress, decompress)
}

fn codec(count: usize) {
    let msgs = messages(count);
    let total = count * MESSAGE_SIZE;
    println!(
        "\n== codec: {count} JSON-like messages of {MESSAGE_SIZE} bytes ({:.1} MB), level 6, 15-bit windows, best of 3",
        total as f64 / 1e6
    );
    println!(
        "{:<32} {:>8} {:>16} {:>18}",
        "mode", "ratio", "compress MB/s", "decompress MB/s"
    );
    for (name, cfg) in modes() {
        let mut best = (usize::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            let (size, c, d) = codec_pass(&cfg, &msgs);
            best = (size.min(best.0), c.min(best.1), d.min(best.2));
        }
        println!(
            "{:<32} {:>8.3} {:>16.1} {:>18.1}",
            name,
            best.0 as f64 / total as f64,
            mb_per_s(total, best.1),
            mb_per_s(total, best.2)
        );
    }
}

// ----- memory ---------------------------------------------------------------------

const MEMORY_MODES: [&str; 4] = ["none", "dedicated", "dedicated-no-takeover", "shared"];

fn server_deflate(mode: &str) -> Option<DeflateConfig> {
    match mode {
        "none" => None,
        "dedicated" => Some(DeflateConfig::default()),
        "dedicated-no-takeover" => Some(DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        }),
        "shared" => Some(DeflateConfig::shared()),
        other => panic!("unknown mode {other:?}"),
    }
}

/// The child: an echo server on 127.0.0.1:0 (port printed on stdout),
/// until stdin closes.
fn serve(mode: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let config = Config::default()
            .compression(server_deflate(mode))
            .ping_interval(Some(IDLE_RELEASE));
        let upgrader = std::sync::Arc::new(Upgrader::new().config(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("port {}", listener.local_addr().unwrap().port());
        tokio::spawn(async {
            // The parent holds our stdin: its end is ours.
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
            std::process::exit(0);
        });
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let upgrader = upgrader.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = upgrader.upgrade(tcp).await else {
                    return;
                };
                while let Ok(msg) = ws.recv().await {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Opens `n` connections, one echoed message each; returns the tasks that
/// keep reading them (answering the server's pings).
async fn open_connections(
    url: &str,
    n: usize,
    compress: bool,
    msg: &Message,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut dialer = Dialer::new().no_proxy();
    if compress {
        dialer = dialer.compression(DeflateConfig::default());
    }
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut ws, _) = dialer.connect(url).await.expect("connect");
        assert_eq!(ws.compression().is_some(), compress);
        ws.send(msg.clone()).await.expect("send");
        let echo = ws.recv().await.expect("echo");
        assert!(echo == *msg);
        readers.push(tokio::spawn(
            async move { while ws.recv().await.is_ok() {} },
        ));
    }
    readers
}

async fn memory_mode(mode: &str, conns: usize, msg: &Message) -> (f64, f64) {
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new(exe)
        .args(["--serve", mode])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the server child");
    let pid = child.id().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let port: u16 = lines
        .next_line()
        .await
        .unwrap()
        .and_then(|l| l.strip_prefix("port ").and_then(|p| p.parse().ok()))
        .expect("port line");
    let url = format!("ws://127.0.0.1:{port}/");
    let compress = mode != "none";
    let warm = open_connections(&url, WARMUP_CONNS, compress, msg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_rss_kib(pid);
    let start = Instant::now();
    let readers = open_connections(&url, conns, compress, msg).await;
    let opened = start.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = vm_rss_kib(pid);
    tokio::time::sleep(IDLE_RELEASE * 2 + Duration::from_secs(1)).await;
    let idle = vm_rss_kib(pid);
    for r in readers.into_iter().chain(warm) {
        r.abort();
    }
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let per = |kib: u64| (kib as f64 - before as f64) / conns as f64;
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>16.1} {:>18.1}   ({conns} connections opened in {:.2}s)",
        mode,
        before,
        after,
        idle,
        per(after),
        per(idle),
        opened.as_secs_f64()
    );
    (per(after), per(idle))
}

fn memory(conns: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let msg = Message::text(String::from_utf8(messages(1).remove(0)).unwrap());
    println!(
        "\n== memory: server RSS per idle connection ({conns} connections, one {MESSAGE_SIZE}-byte message echoed on each)"
    );
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>16} {:>18}",
        "server mode", "base KiB", "after KiB", "idle KiB", "KiB/conn after", "KiB/conn idle"
    );
    rt.block_on(async {
        for mode in MEMORY_MODES {
            memory_mode(mode, conns, &msg).await;
        }
    });
    println!(
        "(base: after {WARMUP_CONNS} warm-up connections; after: once all echoed; idle: after the \
         server's {:?} keepalive released idle memory; RSS does not shrink when the allocator \
         keeps freed memory)",
        IDLE_RELEASE
    );
}

// ----- backends ---------------------------------------------------------------------

fn backends(count: usize) {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    use miniz_oxide::deflate::core::{
        compress as mz_compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
        TDEFLStatus,
    };
    use miniz_oxide::inflate::core::inflate_flags::{
        TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    };
    use miniz_oxide::inflate::core::{decompress as mz_decompress, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;

    let msgs = messages(count);
    let total = count * MESSAGE_SIZE;
    let best_of_3 = |f: &mut dyn FnMut() -> (usize, Duration)| {
        (0..3)
            .map(|_| f())
            .fold((0, Duration::MAX), |b, r| (r.0, b.1.min(r.1)))
    };
    let report = |name: &str, size: usize, c: Duration, d: Duration| {
        println!(
            "{:<34} {:>8.3} {:>16.1} {:>18.1}",
            name,
            size as f64 / total as f64,
            mb_per_s(total, c),
            mb_per_s(total, d)
        );
    };
    println!(
        "\n== backends: raw deflate, level 6, 15-bit window, {count} messages of {MESSAGE_SIZE} bytes, best of 3"
    );
    println!(
        "{:<34} {:>8} {:>16} {:>18}",
        "backend / mode", "ratio", "compress MB/s", "decompress MB/s"
    );

    // --- one-shot per message (fresh state) ---
    let mut z_wire: Vec<Vec<u8>> = Vec::new();
    let (z_size, z_c) = best_of_3(&mut || {
        let mut c = Compress::new(Compression::new(6), false);
        z_wire.clear();
        let start = Instant::now();
        for m in &msgs {
            c.reset();
            let mut out = Vec::with_capacity(MESSAGE_SIZE);
            c.compress_vec(m, &mut out, FlushCompress::Finish).unwrap();
            z_wire.push(out);
        }
        (z_wire.iter().map(Vec::len).sum(), start.elapsed())
    });
    let (_, z_d) = best_of_3(&mut || {
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(MESSAGE_SIZE + 1024);
        let start = Instant::now();
        for w in &z_wire {
            d.reset(false);
            out.clear();
            d.decompress_vec(w, &mut out, FlushDecompress::Finish)
                .unwrap();
            assert_eq!(out.len(), MESSAGE_SIZE);
            black_box(&out);
        }
        (0, start.elapsed())
    });
    report("zlib-rs (flate2), one-shot", z_size, z_c, z_d);

    let flags = create_comp_flags_from_zip_params(6, -15, 0);
    let mut m_wire: Vec<Vec<u8>> = Vec::new();
    let (m_size, m_c) = best_of_3(&mut || {
        let mut c = Box::new(CompressorOxide::new(flags));
        m_wire.clear();
        let start = Instant::now();
        for m in &msgs {
            c.reset();
            let mut out = vec![0u8; MESSAGE_SIZE + 1024];
            let (status, _, n) = mz_compress(&mut c, m, &mut out, TDEFLFlush::Finish);
            assert_eq!(status, TDEFLStatus::Done);
            out.truncate(n);
            m_wire.push(out);
        }
        (m_wire.iter().map(Vec::len).sum(), start.elapsed())
    });
    let (_, m_d) = best_of_3(&mut || {
        let mut d = Box::new(DecompressorOxide::new());
        let mut out = vec![0u8; MESSAGE_SIZE];
        let start = Instant::now();
        for w in &m_wire {
            d.init();
            let (status, _, n) = mz_decompress(
                &mut d,
                w,
                &mut out,
                0,
                TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
            );
            assert_eq!((status, n), (TINFLStatus::Done, MESSAGE_SIZE));
            black_box(&out);
        }
        (0, start.elapsed())
    });
    report("miniz_oxide, one-shot", m_size, m_c, m_d);
    // Each decodes the other's output.
    let mut d = Decompress::new(false);
    for (w, m) in m_wire.iter().zip(&msgs).take(50) {
        d.reset(false);
        let mut out = Vec::with_capacity(MESSAGE_SIZE);
        d.decompress_vec(w, &mut out, FlushDecompress::Finish)
            .unwrap();
        assert_eq!(&out, m);
    }
    for (w, m) in z_wire.iter().zip(&msgs).take(50) {
        assert_eq!(&miniz_oxide::inflate::decompress_to_vec(w).unwrap(), m);
    }

    // --- streaming, a sync flush per message (context takeover) ---
    let (zs_size, zs_c) = best_of_3(&mut || {
        let mut c = Compress::new(Compression::new(6), false);
        z_wire.clear();
        let start = Instant::now();
        for m in &msgs {
            let mut out = Vec::with_capacity(MESSAGE_SIZE);
            let before = c.total_in();
            while ((c.total_in() - before) as usize) < m.len() || out.is_empty() {
                let done = (c.total_in() - before) as usize;
                out.reserve(MESSAGE_SIZE);
                c.compress_vec(&m[done..], &mut out, FlushCompress::Sync)
                    .unwrap();
            }
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
            z_wire.push(out);
        }
        (z_wire.iter().map(Vec::len).sum(), start.elapsed())
    });
    let (_, zs_d) = best_of_3(&mut || {
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(MESSAGE_SIZE + 1024);
        let start = Instant::now();
        for w in &z_wire {
            out.clear();
            d.decompress_vec(w, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out.len(), MESSAGE_SIZE);
        }
        (0, start.elapsed())
    });
    report("zlib-rs (flate2), sync flush", zs_size, zs_c, zs_d);

    let (ms_size, ms_c) = best_of_3(&mut || {
        let mut c = Box::new(CompressorOxide::new(flags));
        m_wire.clear();
        let start = Instant::now();
        for m in &msgs {
            let mut out = vec![0u8; MESSAGE_SIZE + 1024];
            let (status, used, n) = mz_compress(&mut c, m, &mut out, TDEFLFlush::Sync);
            assert_eq!((status, used), (TDEFLStatus::Okay, m.len()));
            out.truncate(n);
            m_wire.push(out);
        }
        (m_wire.iter().map(Vec::len).sum(), start.elapsed())
    });
    let (_, ms_d) = best_of_3(&mut || {
        // A wrapping 64 KiB output window (streaming inflate keeps the last
        // 32 KiB as its dictionary), copied out per message.
        let mut d = Box::new(DecompressorOxide::new());
        let mut window = vec![0u8; 64 * 1024];
        let mut pos = 0usize;
        let mut out = Vec::with_capacity(MESSAGE_SIZE);
        let start = Instant::now();
        for w in &m_wire {
            out.clear();
            let mut input = &w[..];
            loop {
                let (status, used, n) =
                    mz_decompress(&mut d, input, &mut window, pos, TINFL_FLAG_HAS_MORE_INPUT);
                out.extend_from_slice(&window[pos..pos + n]);
                pos = (pos + n) & (window.len() - 1);
                input = &input[used..];
                match status {
                    TINFLStatus::HasMoreOutput => continue,
                    TINFLStatus::NeedsMoreInput if input.is_empty() => break,
                    TINFLStatus::NeedsMoreInput => continue,
                    other => panic!("miniz_oxide inflate: {other:?}"),
                }
            }
            assert_eq!(out.len(), MESSAGE_SIZE);
        }
        (0, start.elapsed())
    });
    report("miniz_oxide, sync flush", ms_size, ms_c, ms_d);
}

// ----- main ------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(args.get(i + 1).map_or("dedicated", String::as_str));
        return;
    }
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let conns = value("--conns", 1000);
    let count = value("--messages", 2000);
    let sections: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["codec", "memory", "backends"].contains(a))
        .collect();
    let all = sections.is_empty();
    if cfg!(debug_assertions) {
        println!("(debug build: run with --release for meaningful numbers)");
    }
    if all || sections.contains(&"codec") {
        codec(count);
    }
    if all || sections.contains(&"backends") {
        backends(count);
    }
    if all || sections.contains(&"memory") {
        memory(conns);
    }
}
