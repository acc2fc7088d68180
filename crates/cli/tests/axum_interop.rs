#![allow(missing_docs)]
//! `silverback::axum::WebSocketUpgrade` in a real `axum::Router` served by
//! `axum::serve`, driven by independent clients: Python `websockets` on
//! HTTP/1.1 (`interop/python_client.py`), and on HTTP/2 (prior-knowledge
//! h2c, extended CONNECT) Python's `h2` package speaking RFC 8441 by hand
//! (`interop/h2_ws_client.py`). The peers come from
//! `scripts/install-peers.sh`; a missing one fails the test.

#[path = "../../silverback/tests/common/axum_app.rs"]
mod axum_app;
mod common;

use std::process::Stdio;
use std::time::Duration;

use axum_app::spawn_app;
use common::repo_root;
use silverback::http::Version;
use silverback::{CloseCode, DeflateConfig, Shutdown, Upgrader};
use tokio::process::Command;

const INSTALL_HINT: &str = "run scripts/install-peers.sh";

/// Awaits `f` for at most 10 s.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("step did not complete within 10 s")
}

/// Runs an interop script with the peers' Python, bounded; gives its
/// status and output.
async fn python(script: &str, args: &[&str]) -> (bool, String) {
    let root = repo_root();
    let py = root.join(".peers/venv/bin/python");
    assert!(py.is_file(), "{} not found; {INSTALL_HINT}", py.display());
    let run = Command::new(&py)
        .arg(root.join("interop").join(script))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", py.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn axum_http1_with_python_websockets() {
    let (addr, mut seen) = spawn_app(Upgrader::new(), Shutdown::new()).await;
    let (ok, out) = python("python_client.py", &[&format!("ws://{addr}/ws")]).await;
    assert!(ok, "python websockets client failed:\n{out}");
    let s = within(seen.recv()).await.unwrap();
    assert_eq!(s.version, Version::HTTP_11);
    assert_eq!(s.protocol, None);
    assert_eq!(s.end.unwrap().close_code(), CloseCode::Other(4000));
}

#[tokio::test]
async fn axum_http2_extended_connect_with_python_h2() {
    let upgrader = Upgrader::new().compression(DeflateConfig::default());
    let (addr, mut seen) = spawn_app(upgrader, Shutdown::new()).await;
    let streams = 8;
    let (ok, out) = python(
        "h2_ws_client.py",
        &[
            &addr.to_string(),
            "echo",
            "--streams",
            &streams.to_string(),
            "--close",
            "mixed",
        ],
    )
    .await;
    assert!(ok, "h2 client failed:\n{out}");
    assert!(
        out.contains("ok: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1"),
        "{out}"
    );
    let mut codes = Vec::new();
    for _ in 0..streams {
        let s = within(seen.recv()).await.unwrap();
        assert_eq!(s.version, Version::HTTP_2);
        assert!(!s.compressed, "compression without an offer");
        codes.push(u16::from(s.end.expect("ended").close_code()));
    }
    codes.sort_unstable();
    // 2 closed by the client, 2 by the server (1007), 4 vanished (reset
    // or connection dropped).
    assert_eq!(codes, [1000, 1000, 1006, 1006, 1006, 1006, 1007, 1007]);
}

#[tokio::test]
async fn axum_http2_refusals_with_python_h2() {
    let (addr, _seen) = spawn_app(Upgrader::new(), Shutdown::new()).await;
    // A plain CONNECT has no path: axum's router answers 404 before any
    // handler (`silverback serve` answers 400, see the CLI's h2 tests).
    let (ok, out) = python(
        "h2_ws_client.py",
        &[&addr.to_string(), "bad", "--plain-connect-status", "404"],
    )
    .await;
    assert!(ok, "h2 client failed:\n{out}");
}
