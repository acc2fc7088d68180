//! `silverback bench --http2` (and any `wss://` URL): the `echo` and
//! `connect` modes through the library's [`Dialer`], to compare WebSockets
//! over HTTP/2 (RFC 8441, every socket a stream of one pooled connection)
//! with HTTP/1.1 (a TCP, and TLS, connection each), with the server's CPU
//! time per message or per WebSocket (`--server-pid`).
//!
//! The raw generator of `bench.rs` speaks HTTP/1.1 over plain TCP only;
//! both sides of a comparison made here go through the same client code.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use silverback::{CloseCode, Dialer, H2Pool, Http2, Message};

use crate::bench::{connect_report, progress, sum_counts, BenchArgs, Mode, Report};

/// Whether this module runs the benchmark.
pub(crate) fn applies(args: &BenchArgs) -> bool {
    matches!(args.mode, Mode::Echo | Mode::Connect)
        && (args.http2 || args.dialer || args.url.starts_with("wss://"))
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let dialer = dialer(args)?;
    // One WebSocket first: it opens the pooled HTTP/2 connection (what
    // `connect` measures is opening WebSockets on an existing one) and
    // tells which transport the server took.
    let (mut ws, _) = dialer.connect(&args.url).await.context("first WebSocket")?;
    let transport = if ws.get_ref().is_http2() {
        "h2"
    } else {
        "http/1.1"
    };
    ws.close(CloseCode::Normal, "").await?;
    let mut report = match args.mode {
        Mode::Echo => echo(args, Arc::new(dialer)).await?,
        Mode::Connect => connect(args, Arc::new(dialer)).await?,
        _ => bail!("--http2 and wss:// measure the echo and connect modes"),
    };
    report.transport = Some(transport);
    Ok(report)
}

fn dialer(args: &BenchArgs) -> anyhow::Result<Dialer> {
    let mut dialer = Dialer::new().no_proxy();
    if args.http2 {
        dialer = dialer.http2(Http2::Require).http2_pool(H2Pool::new());
    }
    if args.insecure {
        dialer = dialer.tls(
            silverback::tls::TlsConfig::builder()
                .danger_accept_invalid_certs()
                .build()?,
        );
    }
    Ok(dialer)
}

/// The server's CPU seconds, if its pid was given.
fn server_cpu(args: &BenchArgs) -> anyhow::Result<Option<f64>> {
    args.server_pid
        .map(|pid| crate::fanout::cpu_secs(&pid.to_string()))
        .transpose()
}

/// WebSockets opened and closed (handshake + clean close each), as fast
/// as `--conns` concurrent loops go.
async fn connect(args: &BenchArgs, dialer: Arc<Dialer>) -> anyhow::Result<Report> {
    let duration = Duration::try_from_secs_f64(args.duration)?;
    let bar = progress(args, duration);
    let cpu_before = server_cpu(args)?;
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..args.conns.max(1) {
        let dialer = dialer.clone();
        let url = args.url.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut clean, mut errors) = (0u64, 0u64, 0u64);
            while Instant::now() < end {
                let once = async {
                    let (mut ws, _) = dialer.connect(&url).await?;
                    ws.close(CloseCode::Normal, "").await
                };
                match tokio::time::timeout(Duration::from_secs(5), once).await {
                    Ok(Ok(())) => {
                        ok += 1;
                        clean += 1;
                    }
                    Ok(Err(e)) if e.is_closed() => ok += 1,
                    _ => errors += 1,
                }
            }
            (ok, clean, errors)
        }));
    }
    let (ok, clean, errors) = sum_counts(tasks).await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = match (cpu_before, server_cpu(args)?) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    bar.finish_and_clear();
    Ok(Report {
        server_cpu_secs: cpu,
        server_cpu_us_per_op: cpu.map(|c| c * 1e6 / ok.max(1) as f64),
        ..connect_report(args, secs, ok, clean, errors)
    })
}

/// Echo round trips on `--conns` WebSockets (`--pipeline` in flight on
/// each), every echo checked.
async fn echo(args: &BenchArgs, dialer: Arc<Dialer>) -> anyhow::Result<Report> {
    let size = args.size.unwrap_or(16);
    let msg = if args.binary {
        Message::binary((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    } else {
        Message::text(
            (0..size)
                .map(|i| (b'a' + (i % 26) as u8) as char)
                .collect::<String>(),
        )
    };
    let warmup = Duration::try_from_secs_f64(args.warmup)?;
    let duration = Duration::try_from_secs_f64(args.duration)?;
    let mut sockets = Vec::new();
    for i in 0..args.conns.max(1) {
        let (ws, _) = dialer
            .connect(&args.url)
            .await
            .with_context(|| format!("WebSocket {i}"))?;
        sockets.push(ws);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let bar = progress(args, warmup + duration);
    let pipeline = args.pipeline.max(1);
    let mut tasks = Vec::new();
    for mut ws in sockets {
        let msg = msg.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut messages, mut errors) = (0u64, 0u64);
            let mut in_flight = VecDeque::with_capacity(pipeline);
            for _ in 0..pipeline {
                ws.send(msg.clone()).await?;
                in_flight.push_back(Instant::now());
            }
            while let Some(sent) = in_flight.pop_front() {
                let back = ws.recv().await?;
                let now = Instant::now();
                if back != msg {
                    errors += 1;
                }
                if sent >= measure_from && now <= end {
                    messages += 1;
                    let _ = hist.record((now - sent).as_nanos().max(1) as u64);
                }
                if now < end {
                    ws.send(msg.clone()).await?;
                    in_flight.push_back(now);
                }
            }
            let _ = ws.close(CloseCode::Normal, "").await;
            anyhow::Ok((messages, errors, hist))
        }));
    }
    // The server's CPU over the measured window only.
    let cpu_window = {
        let pid = args.server_pid;
        tokio::spawn(async move {
            let read = || pid.and_then(|p| crate::fanout::cpu_secs(&p.to_string()).ok());
            tokio::time::sleep_until(measure_from.into()).await;
            let before = read();
            tokio::time::sleep_until(end.into()).await;
            before.zip(read()).map(|(a, b)| b - a)
        })
    };
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut messages, mut errors) = (0u64, 0u64);
    for task in tasks {
        let (m, e, h) = task.await??;
        messages += m;
        errors += e;
        hist.add(&h)?;
    }
    let cpu = cpu_window.await?;
    bar.finish_and_clear();
    let secs = duration.as_secs_f64();
    Ok(Report {
        mode: "echo",
        url: args.url.clone(),
        conns: args.conns,
        size,
        pipeline,
        seconds: secs,
        messages,
        msgs_per_sec: messages as f64 / secs,
        mb_per_sec: (messages * size as u64) as f64 / secs / 1e6,
        p50_us: hist.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1e3,
        p999_us: hist.value_at_quantile(0.999) as f64 / 1e3,
        max_us: hist.max() as f64 / 1e3,
        errors,
        server_cpu_secs: cpu,
        server_cpu_us_per_op: cpu.map(|c| c * 1e6 / messages.max(1) as f64),
        ..Default::default()
    })
}
