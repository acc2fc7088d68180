//! Load for `scripts/soak.sh`: keeps CONNECTIONS WebSocket connections to a
//! running `silverback serve` exchanging messages for SECONDS, and prints a
//! summary of what happened.
//!
//! ```text
//! soak URL CONNECTIONS SECONDS [INTERVAL_MS]
//! ```
//!
//! Each connection sends a message every INTERVAL_MS (default 1000, with
//! jitter) and checks that the echo is byte-identical; sizes cycle through
//! 16 B .. 64 KiB, text and binary; every tenth exchange is a Ping that
//! must be answered. Half of the connections offer permessage-deflate.
//! After a random 30..300 exchanges a connection closes with 1000 and
//! dials again (churn: leaks per connection show up as growth). Exits 1 if
//! any exchange failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use silverback::{CloseCode, DeflateConfig, Dialer, Message};
use tokio::sync::Semaphore;

/// Connections dialed at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Bound on every step (connect, one echo, one pong, close).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Message sizes, cycled through.
const SIZES: [usize; 8] = [16, 125, 126, 1000, 4096, 16 << 10, 200, 64 << 10];

#[derive(Default)]
struct Counters {
    connects: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    pings: AtomicU64,
    closes: AtomicU64,
    errors: AtomicU64,
}

/// A small xorshift generator: deterministic per connection, no locking.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn payload(rng: &mut Rng, size: usize, text: bool) -> Message {
    if text {
        let s: String = (0..size)
            .map(|_| char::from(b'a' + rng.below(26) as u8))
            .collect();
        Message::text(s)
    } else {
        // Half compressible (repeated pattern), half noise.
        let noisy = rng.below(2) == 0;
        let v: Vec<u8> = (0..size)
            .map(|i| {
                if noisy {
                    rng.next() as u8
                } else {
                    (i % 251) as u8
                }
            })
            .collect();
        Message::binary(v)
    }
}

async fn step<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

async fn session(
    id: usize,
    url: &str,
    deadline: Instant,
    interval: Duration,
    permits: &Semaphore,
    c: &Counters,
    rng: &mut Rng,
) -> Result<(), String> {
    let dialer = if id.is_multiple_of(2) {
        Dialer::new().compression(DeflateConfig::default())
    } else {
        Dialer::new()
    };
    let (mut ws, _) = {
        let _permit = permits.acquire().await.expect("semaphore open");
        step("connect", dialer.connect(url)).await?
    };
    c.connects.fetch_add(1, Ordering::Relaxed);
    let exchanges = 30 + rng.below(270);
    for n in 0..exchanges {
        if Instant::now() >= deadline {
            break;
        }
        let jitter = interval.mul_f64(0.5 + (rng.below(1000) as f64) / 1000.0);
        tokio::time::sleep(jitter.min(deadline.saturating_duration_since(Instant::now()))).await;
        if n % 10 == 9 {
            let pong = step("ping", ws.ping(b"soak")).await?;
            tokio::select! {
                r = pong => { r.map_err(|e| format!("pong: {e}"))?; }
                m = ws.recv() => return Err(format!("message instead of pong: {m:?}")),
                _ = tokio::time::sleep(STEP_TIMEOUT) => return Err("pong: timed out".into()),
            }
            c.pings.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let size = SIZES[(rng.below(SIZES.len() as u64)) as usize];
        let text = rng.below(2) == 0;
        let msg = payload(rng, size, text);
        step("send", ws.send(msg.clone())).await?;
        let echo = step("recv", ws.recv()).await?;
        if echo != msg {
            return Err(format!("echo of {size} bytes differs"));
        }
        c.messages.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(size as u64, Ordering::Relaxed);
    }
    step("close", ws.close(CloseCode::Normal, "soak done")).await?;
    c.closes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, n, secs, interval_ms) = match args.as_slice() {
        [_, url, n, secs] => (url.clone(), n.parse::<usize>()?, secs.parse::<u64>()?, 1000),
        [_, url, n, secs, ms] => (
            url.clone(),
            n.parse::<usize>()?,
            secs.parse::<u64>()?,
            ms.parse::<u64>()?,
        ),
        _ => {
            eprintln!("usage: soak URL CONNECTIONS SECONDS [INTERVAL_MS]");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let interval = Duration::from_millis(interval_ms);
    let counters = Arc::new(Counters::default());
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (err_tx, mut err_rx) = tokio::sync::mpsc::unbounded_channel::<String>();

    let mut tasks = Vec::with_capacity(n);
    for id in 0..n {
        let (url, c, permits, err_tx) = (
            url.clone(),
            counters.clone(),
            permits.clone(),
            err_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0x2545_f491));
            while Instant::now() < deadline {
                if let Err(e) = session(id, &url, deadline, interval, &permits, &c, &mut rng).await
                {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    let _ = err_tx.send(format!("connection {id}: {e}"));
                    // Back off a little before dialing again.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    drop(err_tx);

    let c = counters.clone();
    let reporter = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tick.tick().await;
            println!(
                "load: t={:>4}s connects={} messages={} pings={} closes={} errors={}",
                start.elapsed().as_secs(),
                c.connects.load(Ordering::Relaxed),
                c.messages.load(Ordering::Relaxed),
                c.pings.load(Ordering::Relaxed),
                c.closes.load(Ordering::Relaxed),
                c.errors.load(Ordering::Relaxed),
            );
        }
    });
    let mut shown = 0;
    let errs = tokio::spawn(async move {
        while let Some(e) = err_rx.recv().await {
            if shown < 20 {
                eprintln!("load: error: {e}");
            }
            shown += 1;
        }
    });
    for t in tasks {
        t.await?;
    }
    reporter.abort();
    errs.await?;
    let c = &counters;
    let elapsed = start.elapsed().as_secs_f64();
    let messages = c.messages.load(Ordering::Relaxed);
    println!(
        "load: done in {elapsed:.1}s: {} connects, {messages} echoes ({:.0}/s, {:.1} MiB), {} pings, {} clean closes, {} errors",
        c.connects.load(Ordering::Relaxed),
        messages as f64 / elapsed,
        c.bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        c.pings.load(Ordering::Relaxed),
        c.closes.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed),
    );
    if c.errors.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
    Ok(())
}
