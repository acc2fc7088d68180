//! Load for `scripts/shutdown-drain.sh`: opens many WebSocket connections
//! to a running `silverback serve`, sends the server SIGTERM, and reports
//! how the connections ended, as the clients saw it.
//!
//! ```text
//! drain_load URL CONNECTIONS SERVER_PID
//! ```
//!
//! Each connection checks one echo (so that the server tracks it), then
//! waits in `recv` for the server's Close. Once all are open, `kill -TERM
//! SERVER_PID` is run; the drain time is from just before the signal to
//! the last connection's end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use silverback::{Dialer, ErrorKind, Message};
use tokio::sync::Semaphore;

/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Bound on every step (connect, echo, the wait for the Close).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, n, pid] = args.as_slice() else {
        eprintln!("usage: drain_load URL CONNECTIONS SERVER_PID");
        std::process::exit(2);
    };
    let n: usize = n.parse()?;

    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut opening = Vec::with_capacity(n);
    for i in 0..n {
        let (url, permits) = (url.clone(), permits.clone());
        opening.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let (mut ws, _) = tokio::time::timeout(STEP_TIMEOUT, Dialer::new().connect(&url))
                .await
                .map_err(|_| format!("connection {i}: connect timed out"))?
                .map_err(|e| format!("connection {i}: connect: {e}"))?;
            let hello = Message::text(format!("hello {i}"));
            ws.send(hello.clone())
                .await
                .map_err(|e| format!("connection {i}: send: {e}"))?;
            match tokio::time::timeout(STEP_TIMEOUT, ws.recv()).await {
                Ok(Ok(m)) if m == hello => Ok(ws),
                other => Err(format!("connection {i}: no echo: {other:?}")),
            }
        }));
    }
    let mut open = Vec::with_capacity(n);
    for task in opening {
        open.push(task.await?.map_err(|e| e.to_string())?);
    }
    println!(
        "clients: {} connections open and echoing in {:.3}s",
        open.len(),
        start.elapsed().as_secs_f64()
    );

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for mut ws in open {
        let tx = tx.clone();
        tokio::spawn(async move {
            let end = match tokio::time::timeout(STEP_TIMEOUT, ws.recv()).await {
                Err(_) => "no close within the step timeout".to_owned(),
                Ok(Ok(m)) => format!("unexpected message {m:?}"),
                Ok(Err(e)) => match (e.kind(), e.close_frame()) {
                    (ErrorKind::Closed { by_us: false, .. }, Some(f)) => {
                        format!("closed by the server with {} {:?}", f.code, &*f.reason)
                    }
                    _ => format!("{e}"),
                },
            };
            let _ = tx.send((end, Instant::now()));
        });
    }
    drop(tx);

    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", pid])
        .status()?;
    if !status.success() {
        return Err(format!("kill -TERM {pid}: {status}").into());
    }
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let mut last = signalled;
    while let Some((end, at)) = rx.recv().await {
        *ends.entry(end).or_default() += 1;
        last = last.max(at);
    }
    let total: usize = ends.values().sum();
    let going_away = ends
        .get("closed by the server with 1001 \"server shutting down\"")
        .copied()
        .unwrap_or(0);
    println!(
        "clients: drain took {:.3}s from SIGTERM to the last close",
        (last - signalled).as_secs_f64()
    );
    println!("clients: {going_away} of {total} closed with 1001 \"server shutting down\"");
    for (end, count) in &ends {
        println!("clients:   {count:>6}  {end}");
    }
    if going_away != n {
        std::process::exit(1);
    }
    Ok(())
}
