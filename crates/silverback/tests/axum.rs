//! `silverback::axum::WebSocketUpgrade` in a real `axum::Router` served by
//! `axum::serve`, driven by our `Dialer` over HTTP/1.1 (the upgrader's
//! settings, refusals, shutdown) and by hyper's HTTP/2 client sending
//! extended CONNECTs by hand (many WebSockets on one connection). The interop runs (Python `websockets` on
//! HTTP/1.1, Python `h2` speaking RFC 8441 on HTTP/2) are in the CLI's
//! tests (`crates/cli/tests/axum_interop.rs`), with the other peers.
#![cfg(feature = "axum")]
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use common::axum_app::spawn_app;
use common::within;
use silverback::http::Version;
use silverback::{CloseCode, DeflateConfig, Dialer, Message, Shutdown, Upgrader};

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

/// Opens a WebSocket on `conn` with an extended CONNECT (RFC 8441) made
/// by hand with hyper's HTTP/2 client; gives the response head and the
/// client side of the WebSocket.
async fn h2_open(
    conn: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    addr: std::net::SocketAddr,
    extra: &[(&str, &str)],
) -> (
    silverback::http::response::Parts,
    Option<silverback::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>>,
) {
    let mut req = silverback::http::Request::connect(format!("http://{addr}/ws"))
        .header("sec-websocket-version", "13");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let mut req = req.body(http_body_util::Empty::new()).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let resp = within(conn.send_request(req)).await.unwrap();
    let ok = resp.status() == 200;
    let (parts, body) = resp.into_parts();
    if !ok {
        return (parts, None);
    }
    let resp = silverback::http::Response::from_parts(parts.clone(), body);
    let upgraded = within(hyper::upgrade::on(resp)).await.unwrap();
    let ws = silverback::WebSocket::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        silverback::Role::Client,
        silverback::Config::default(),
        &[],
    );
    (parts, Some(ws))
}

#[tokio::test]
async fn axum_http2_many_websockets_on_one_connection_with_hypers_client() {
    let (addr, mut seen) = spawn_app(Upgrader::new().subprotocols(["chat"]), Shutdown::new()).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut conn, driver) = within(hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    ))
    .await
    .unwrap();
    tokio::spawn(driver);

    // Refusals first, on the same connection: cross-origin, no version.
    let (head, ws) = h2_open(&mut conn, addr, &[("origin", "http://evil.example")]).await;
    assert_eq!(head.status, 403);
    assert!(ws.is_none());
    assert!(head.headers.get("connection").is_none());

    let mut sockets = Vec::new();
    for _ in 0..10 {
        let (head, ws) = h2_open(&mut conn, addr, &[("sec-websocket-protocol", "chat")]).await;
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["sec-websocket-protocol"], "chat");
        assert!(head.headers.get("sec-websocket-accept").is_none());
        assert!(head.headers.get("content-length").is_none());
        sockets.push(ws.unwrap());
    }
    // Interleaved: everything sent on every stream before anything is read.
    for (i, ws) in sockets.iter_mut().enumerate() {
        within(ws.send(Message::text(format!("hello {i}"))))
            .await
            .unwrap();
        within(ws.send(Message::binary(vec![i as u8; 100_000])))
            .await
            .unwrap();
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(
            within(ws.recv()).await.unwrap(),
            Message::text(format!("hello {i}"))
        );
        assert_eq!(
            within(ws.recv()).await.unwrap(),
            Message::binary(vec![i as u8; 100_000])
        );
    }
    for ws in &mut sockets {
        within(ws.close(CloseCode::Normal, "done")).await.unwrap();
    }
    for _ in 0..10 {
        let s = within(seen.recv()).await.unwrap();
        assert_eq!(s.version, Version::HTTP_2);
        assert_eq!(s.protocol.as_deref(), Some("chat"));
        let end = s.end.expect("ended");
        assert!(end.is_clean(), "{end:?}");
    }
}
