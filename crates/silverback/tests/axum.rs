//! `silverback::axum::WebSocketUpgrade` in a real `axum::Router` served by
//! `axum::serve`: on HTTP/1.1 driven by our `Dialer` and by Python
//! `websockets`, on HTTP/2 (prior-knowledge h2c, extended CONNECT) by
//! Python's `h2` package speaking RFC 8441 by hand
//! (`interop/h2_ws_client.py`). The Python peers come from
//! `scripts/install-peers.sh`; a missing one fails the test.
#![cfg(feature = "axum")]
#![allow(missing_docs)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::routing::any;
use axum::{Extension, Router};
use common::within;
use silverback::axum::WebSocketUpgrade;
use silverback::http::Version;
use silverback::{CloseCode, DeflateConfig, Dialer, Message, Shutdown, Upgrader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;

const INSTALL_HINT: &str = "run scripts/install-peers.sh";

/// What the server side saw of one WebSocket.
#[derive(Debug)]
struct Seen {
    version: Version,
    protocol: Option<String>,
    compressed: bool,
    end: Option<silverback::End>,
}

/// An echo route on `/ws` (and a page on `/`), served by `axum::serve`
/// with `upgrader` and `shutdown` as router extensions; each WebSocket's
/// record is sent on the channel when it ends.
async fn spawn_app(
    upgrader: Upgrader,
    shutdown: Shutdown,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/", axum::routing::get(|| async { "page" }))
        .route(
            "/ws",
            any(move |upgrade: WebSocketUpgrade| {
                let tx = tx.clone();
                async move {
                    let version = upgrade.http_version();
                    upgrade.on_upgrade(move |mut ws| async move {
                        assert_eq!(ws.http_version(), version);
                        let end = loop {
                            match ws.recv().await {
                                Ok(msg) => {
                                    if ws.send(msg).await.is_err() {
                                        break ws.end();
                                    }
                                }
                                Err(_) => break ws.end(),
                            }
                        };
                        let _ = tx.send(Seen {
                            version: ws.http_version(),
                            protocol: ws.protocol().map(str::to_owned),
                            compressed: ws.compression().is_some(),
                            end,
                        });
                    })
                }
            }),
        )
        .layer(Extension(upgrader))
        .layer(Extension(shutdown));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
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
async fn axum_http1_with_our_dialer_subprotocol_and_compression() {
    let upgrader = Upgrader::new()
        .subprotocols(["chat.v2", "chat.v1"])
        .compression(DeflateConfig::default());
    let (addr, mut seen) = spawn_app(upgrader, Shutdown::new()).await;
    let (mut ws, resp) = within(
        Dialer::new()
            .subprotocols(["chat.v1", "chat.v2"])
            .compression(DeflateConfig::default())
            .connect(&format!("ws://{addr}/ws")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(ws.protocol(), Some("chat.v2"));
    assert!(ws.compression().is_some());
    for msg in [
        Message::text("hello axum"),
        Message::binary(vec![7u8; 70_000]),
        Message::text("x".repeat(100_000)),
    ] {
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap(), msg);
    }
    within(ws.close(CloseCode::Normal, "bye")).await.unwrap();
    let s = within(seen.recv()).await.unwrap();
    assert_eq!(s.version, Version::HTTP_11);
    assert_eq!(s.protocol.as_deref(), Some("chat.v2"));
    assert!(s.compressed);
    let end = s.end.expect("ended");
    assert!(end.is_clean(), "{end:?}");
    assert_eq!(end.close_code(), CloseCode::Normal);
}

#[tokio::test]
async fn axum_refusals_are_silverbacks() {
    let (addr, _seen) = spawn_app(Upgrader::new(), Shutdown::new()).await;
    // Cross-origin: 403 with the reason.
    let err = within(
        Dialer::new()
            .header("origin", "http://evil.example")
            .connect(&format!("ws://{addr}/ws")),
    )
    .await
    .unwrap_err();
    let resp = err.http_response().expect("an HTTP refusal");
    assert_eq!(resp.status(), 403);
    assert!(
        String::from_utf8_lossy(resp.body()).contains("cross-origin"),
        "{resp:?}"
    );
    // Not a WebSocket request: 426 with `Upgrade: websocket`, by hand.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    within(tcp.read_to_string(&mut out)).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 426"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("upgrade: websocket"),
        "{out}"
    );
    assert!(out.ends_with("expected Upgrade: websocket\n"), "{out}");
}

#[tokio::test]
async fn axum_shutdown_extension_closes_with_going_away() {
    let shutdown = Shutdown::new();
    let (addr, mut seen) = spawn_app(Upgrader::new(), shutdown.clone()).await;
    let (mut ws, _) = within(Dialer::new().connect(&format!("ws://{addr}/ws")))
        .await
        .unwrap();
    within(ws.send(Message::text("ping"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("ping"));
    assert_eq!(shutdown.active(), 1);
    // The client reads (and so answers the Close) while the server drains.
    let client = tokio::spawn(async move { within(ws.recv()).await.unwrap_err() });
    let report = within(shutdown.shutdown(Duration::from_secs(5))).await;
    assert_eq!(report.closed_cleanly, 1, "{report}");
    let err = within(client).await.unwrap();
    assert_eq!(err.close_code(), Some(CloseCode::GoingAway), "{err}");
    let s = within(seen.recv()).await.unwrap();
    assert_eq!(s.end.unwrap().close_code(), CloseCode::GoingAway);
}

#[tokio::test]
async fn axum_http1_with_python_websockets() {
    let (addr, mut seen) = spawn_app(Upgrader::new(), Shutdown::new()).await;
    let (ok, out) = python("python_client.py", &[&format!("ws://{addr}/ws")]).await;
    assert!(ok, "python websockets client failed:\n{out}");
    let s = within(seen.recv()).await.unwrap();
    assert_eq!(s.version, Version::HTTP_11);
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
