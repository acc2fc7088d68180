//! The Dialer over HTTP/2 against another implementation of RFC 8441:
//! axum 0.8's own `WebSocketUpgrade` (tokio-tungstenite inside), served by
//! `axum::serve` (HTTP/1.1 and h2c on one port, extended CONNECT on).
#![cfg(feature = "http2")]
#![allow(missing_docs)]

mod common;

use axum::extract::ws::{Message as AxumMessage, WebSocket as AxumWebSocket, WebSocketUpgrade};
use axum::routing::any;
use axum::Router;
use common::within;
use silverback::http::{StatusCode, Version};
use silverback::{CloseCode, Dialer, H2Pool, Http2, Message};
use tokio::net::TcpListener;

/// Echoes data messages; after the peer's Close, reads on so that
/// tungstenite flushes its Close reply, until the end.
async fn echo(mut socket: AxumWebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if matches!(msg, AxumMessage::Close(_)) {
            continue;
        }
        if socket.send(msg).await.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn dialer_over_h2c_to_axums_websocket_upgrade() {
    let app = Router::new().route(
        "/ws",
        any(|ws: WebSocketUpgrade| async move { ws.protocols(["chat"]).on_upgrade(echo) }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("ws://{addr}/ws");

    let pool = H2Pool::new();
    let dialer = Dialer::new()
        .no_proxy()
        .http2(Http2::Require)
        .subprotocols(["chat"])
        .http2_pool(pool.clone());
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let (ws, resp) = within(dialer.connect(&url)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), Version::HTTP_2);
        assert!(ws.get_ref().is_http2());
        assert_eq!(ws.protocol(), Some("chat"));
        sockets.push(ws);
    }
    assert_eq!(pool.connections(), 1);
    for (i, ws) in sockets.iter_mut().enumerate() {
        for n in [0usize, 125, 126, 65536, 200_000] {
            let text = Message::text("x".repeat(n + i));
            within(ws.send(text.clone())).await.unwrap();
            assert_eq!(within(ws.recv()).await.unwrap(), text);
            let binary = Message::binary(vec![i as u8; n]);
            within(ws.send(binary.clone())).await.unwrap();
            assert_eq!(within(ws.recv()).await.unwrap(), binary);
        }
    }
    for mut ws in sockets {
        within(ws.close(CloseCode::Normal, "done")).await.unwrap();
    }
    // The same route over HTTP/1.1.
    let (mut ws, resp) = within(Dialer::new().no_proxy().connect(&url))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(!ws.get_ref().is_http2());
    within(ws.send(Message::text("h1"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("h1"));
    within(ws.close(CloseCode::Normal, "done")).await.unwrap();
    server.abort();
}
