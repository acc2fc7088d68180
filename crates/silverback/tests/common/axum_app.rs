//! An axum echo app upgrading with `silverback::axum::WebSocketUpgrade`,
//! shared by this crate's `tests/axum.rs` and the CLI's interop tests
//! (`crates/cli/tests/axum_interop.rs` and `h2.rs`, which include this
//! file by path).
#![allow(dead_code)]

use axum::routing::any;
use axum::{Extension, Router};
use silverback::axum::WebSocketUpgrade;
use silverback::http::Version;
use silverback::{Shutdown, Upgrader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the server side saw of one WebSocket.
#[derive(Debug)]
pub struct Seen {
    pub version: Version,
    pub protocol: Option<String>,
    pub compressed: bool,
    pub end: Option<silverback::End>,
}

/// An echo route on `/ws` (and a page on `/`) with `upgrader` and
/// `shutdown` as router extensions; each WebSocket's record is sent on the
/// channel when it ends.
pub fn echo_router(
    upgrader: Upgrader,
    shutdown: Shutdown,
) -> (Router, mpsc::UnboundedReceiver<Seen>) {
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
    (app, rx)
}

/// [`echo_router`] served by `axum::serve` on 127.0.0.1:0.
pub async fn spawn_app(
    upgrader: Upgrader,
    shutdown: Shutdown,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (app, rx) = echo_router(upgrader, shutdown);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}
