//! The client role against a raw server: handshake, masking, pings, eager
//! bytes after the 101, handshake failures.
#![allow(missing_docs)]

mod common;

use common::*;
use std::time::Duration;

use silverback::{CloseCode, Config, Dialer, ErrorKind, Message, OpCode};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

#[tokio::test]
async fn request_headers_and_masked_frames() {
    let (url, server) = spawn_accept(|stream| async move {
        let mut s = RawPeer::new(stream);
        let req = s.read_request_head().await;
        let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
            silverback::proto::handshake::accept_key(&key)
        );
        s.write(resp.as_bytes()).await;
        let mut frames = Vec::new();
        for _ in 0..3 {
            frames.push(s.read_frame().await);
        }
        s.write(&server_frame(OpCode::Close, true, &close_payload(1000, "")))
            .await;
        let echo = s.read_close().await;
        // The server closes first.
        drop(s);
        (req, frames, echo)
    })
    .await;
    let url = format!("ws://{url}/chat?room=1");
    let dialer = Dialer::new()
        .subprotocols(["chat", "superchat"])
        .header("Origin", "http://example.com")
        .header("Authorization", "Bearer t");
    let (mut ws, resp) = within(dialer.connect(&url)).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(ws.protocol(), Some("chat"));
    within(ws.send(Message::text("one"))).await.unwrap();
    within(ws.send(Message::binary(vec![0u8; 300])))
        .await
        .unwrap();
    within(ws.ping(b"p")).await.unwrap();
    let err = within(ws.recv()).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::Normal));

    let (req, frames, echo) = within(server).await.unwrap();
    assert_eq!(req.uri(), "/chat?room=1");
    assert_eq!(req.headers()["upgrade"], "websocket");
    assert_eq!(req.headers()["sec-websocket-version"], "13");
    assert_eq!(req.headers()["sec-websocket-protocol"], "chat, superchat");
    assert_eq!(req.headers()["origin"], "http://example.com");
    assert_eq!(req.headers()["authorization"], "Bearer t");
    assert!(frames.iter().all(|f| f.masked && f.fin));
    assert_eq!(
        (frames[0].opcode, frames[0].payload.as_slice()),
        (OpCode::Text, &b"one"[..])
    );
    assert_eq!(
        (frames[1].opcode, frames[1].payload.len()),
        (OpCode::Binary, 300)
    );
    assert_eq!(
        (frames[2].opcode, frames[2].payload.as_slice()),
        (OpCode::Ping, &b"p"[..])
    );
    assert!(echo.masked);
    assert_eq!(echo.close_code(), Some(1000));
}

#[tokio::test]
async fn frames_sent_with_the_101_are_received() {
    let mut after = server_frame(OpCode::Text, true, b"welcome");
    after.extend(server_frame(OpCode::Binary, true, &[1, 2, 3]));
    let (url, server) = spawn_raw_server(after, |mut s| async move {
        assert_eq!(s.read_close().await.close_code(), Some(1000));
        s.write(&server_frame(OpCode::Close, true, &close_payload(1000, "")))
            .await;
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("welcome"));
    assert_eq!(
        within(ws.recv()).await.unwrap(),
        Message::binary(vec![1, 2, 3])
    );
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    within(server).await.unwrap();
}

#[tokio::test]
async fn client_answers_server_ping_with_masked_pong() {
    let (url, server) = spawn_raw_server(Vec::new(), |mut s| async move {
        s.write(&server_frame(OpCode::Ping, true, b"abc")).await;
        let pong = s.read_frame().await;
        s.write(&server_frame(OpCode::Close, true, &close_payload(1000, "")))
            .await;
        let _ = s.read_close().await;
        pong
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    let err = within(ws.recv()).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    let pong = within(server).await.unwrap();
    assert_eq!(pong.opcode, OpCode::Pong);
    assert!(pong.masked);
    assert_eq!(pong.payload, b"abc");
}

#[tokio::test]
async fn bad_accept_is_a_handshake_error() {
    let (addr, _server) = spawn_accept(|stream| async move {
        let mut s = RawPeer::new(stream);
        s.read_request_head().await;
        s.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
        )
        .await;
        s
    })
    .await;
    let err = within(Dialer::new().connect(&format!("ws://{addr}/")))
        .await
        .unwrap_err();
    assert!(err.is_handshake(), "{err:?}");
    assert!(matches!(err.kind(), ErrorKind::Handshake(_)), "{err:?}");
}

#[tokio::test]
async fn unoffered_subprotocol_is_a_handshake_error() {
    let (addr, _server) = spawn_accept(|stream| async move {
        let mut s = RawPeer::new(stream);
        let req = s.read_request_head().await;
        let accept =
            silverback::proto::handshake::accept_key(req.headers()["sec-websocket-key"].as_bytes());
        s.write(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: other\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        s
    })
    .await;
    let err = within(
        Dialer::new()
            .subprotocols(["chat"])
            .connect(&format!("ws://{addr}/")),
    )
    .await
    .unwrap_err();
    assert!(err.is_handshake(), "{err:?}");
}

/// A server that reads the request and never answers: the handshake fails
/// with a handshake timeout exactly `handshake_timeout` later, and the
/// client gives up the transport (in memory, on the paused clock).
#[tokio::test(start_paused = true)]
async fn silent_server_is_a_handshake_timeout() {
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(4);
    let (ours, mut server) = tokio::io::duplex(64 * 1024);
    let dialer = Dialer::new().config(Config::default().handshake_timeout(HANDSHAKE_TIMEOUT));
    let start = Instant::now();
    let client = tokio::spawn(async move {
        dialer
            .handshake(ours, "ws://example.com/chat")
            .await
            .map(drop)
    });
    // The whole request head arrives; it is never answered.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(within(server.read_buf(&mut head)).await.unwrap() > 0);
    }
    assert!(head.starts_with(b"GET /chat HTTP/1.1\r\n"));
    let err = within(client).await.unwrap().unwrap_err();
    assert_eq!(start.elapsed(), HANDSHAKE_TIMEOUT);
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.is_handshake(), "{err:?}");
    // The client let go of the transport.
    assert_eq!(within(server.read(&mut [0; 1])).await.unwrap(), 0);
}

#[tokio::test]
async fn invalid_urls_are_refused() {
    for url in ["http://127.0.0.1:1/", "not a url", "ws:///path"] {
        let err = within(Dialer::new().connect(url)).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidUrl(_)),
            "{url}: {err:?}"
        );
    }
}
