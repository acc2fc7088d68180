//! `silverback::axum::WebSocketUpgrade` in a real `axum::Router` served by
//! `axum::serve`, driven by our `Dialer` over HTTP/1.1: the upgrader's
//! settings, refusals, shutdown. The interop runs (Python `websockets` on
//! HTTP/1.1, Python `h2` speaking RFC 8441 on HTTP/2) are in the CLI's
//! tests (`crates/cli/tests/axum_interop.rs`), with the other peers.
#![cfg(feature = "axum")]
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use axum::routing::any;
use axum::{Extension, Router};
use common::within;
use silverback::axum::WebSocketUpgrade;
use silverback::http::Version;
use silverback::{CloseCode, DeflateConfig, Dialer, Message, Shutdown, Upgrader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

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
