//! Messages over a real connection: echo at frame-length boundaries,
//! fragments, subprotocols, pings, Stream/Sink, write coalescing.
#![allow(missing_docs)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use silverback::{CloseCode, Config, Dialer, Message, OpCode, Upgrader};
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

/// Payload sizes around the 7-bit / 16-bit / 64-bit length forms.
const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 1 << 20];

fn text_of(len: usize) -> String {
    // Multi-byte characters too, cut to exactly `len` bytes of ASCII tail.
    let mut s = "héllo wörld ".repeat(len / 14 + 1);
    while s.len() > len {
        s.pop();
    }
    while s.len() < len {
        s.push('x');
    }
    s
}

#[tokio::test]
async fn echo_text_and_binary_at_boundary_sizes() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let (mut ws, resp) = within(Dialer::new().connect(&url)).await.unwrap();
    assert_eq!(resp.status(), 101);
    for len in SIZES {
        let text = Message::text(text_of(len));
        assert_eq!(text.len(), len);
        within(ws.send(text.clone())).await.unwrap();
        assert_eq!(
            within(ws.recv()).await.unwrap(),
            text,
            "text of {len} bytes"
        );

        let bin = Message::binary((0..len).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
        within(ws.send(bin.clone())).await.unwrap();
        assert_eq!(
            within(ws.recv()).await.unwrap(),
            bin,
            "binary of {len} bytes"
        );
    }
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    let (err, _ws) = within(server).await.unwrap();
    assert!(err.is_closed(), "{err}");
    assert_eq!(err.close_code(), Some(CloseCode::Normal));
}

#[tokio::test]
async fn fragmented_message_is_received_whole() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();

    within(ws.send_fragment(OpCode::Text, "hé".as_bytes(), false))
        .await
        .unwrap();
    // A Ping between fragments is allowed; its Pong is consumed by recv.
    within(ws.ping(b"between")).await.unwrap();
    // The fragment boundary splits a multi-byte character.
    within(ws.send_fragment(OpCode::Continuation, &"llo wö".as_bytes()[..6], false))
        .await
        .unwrap();
    within(ws.send_fragment(OpCode::Continuation, &"llo wörld".as_bytes()[6..], true))
        .await
        .unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap(),
        Message::text("héllo wörld")
    );

    within(ws.send_fragment(OpCode::Binary, &[1, 2], false))
        .await
        .unwrap();
    within(ws.send_fragment(OpCode::Continuation, &[], false))
        .await
        .unwrap();
    within(ws.send_fragment(OpCode::Continuation, &[3], true))
        .await
        .unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap(),
        Message::binary(vec![1, 2, 3])
    );

    // A whole message may not interrupt a fragmented one (refused locally).
    within(ws.send_fragment(OpCode::Text, b"a", false))
        .await
        .unwrap();
    let err = within(ws.send(Message::text("b"))).await.unwrap_err();
    assert!(
        matches!(err.kind(), silverback::ErrorKind::InvalidSend(_)),
        "{err:?}"
    );
    within(ws.send_fragment(OpCode::Continuation, b"c", true))
        .await
        .unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("ac"));

    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert!(within(server).await.unwrap().0.is_closed());
}

#[tokio::test]
async fn subprotocol_follows_the_server_preference() {
    let (url, server) = spawn_server(Upgrader::new().subprotocols(["b", "a"]), |ws| async move {
        let p = ws.protocol().map(str::to_owned);
        (p, echo(ws).await)
    })
    .await;
    let (mut ws, resp) = within(Dialer::new().subprotocols(["a", "b"]).connect(&url))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("b"));
    assert_eq!(resp.headers()["sec-websocket-protocol"], "b");
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    let (p, _) = within(server).await.unwrap();
    assert_eq!(p.as_deref(), Some("b"));
}

#[tokio::test]
async fn no_common_subprotocol_means_none() {
    let (url, server) = spawn_server(Upgrader::new().subprotocols(["x"]), |ws| async move {
        let p = ws.protocol().map(str::to_owned);
        (p, echo(ws).await)
    })
    .await;
    let (mut ws, resp) = within(Dialer::new().subprotocols(["a", "b"]).connect(&url))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), None);
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert_eq!(within(server).await.unwrap().0, None);
}

#[tokio::test]
async fn ping_is_answered_with_pong_while_server_is_in_recv() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    c.send(OpCode::Ping, true, b"abc").await;
    let pong = c.read_frame().await;
    assert_eq!(
        pong,
        Frame {
            fin: true,
            opcode: OpCode::Pong,
            masked: false,
            payload: b"abc".to_vec()
        }
    );
    // Empty ping too, then the connection still echoes.
    c.send(OpCode::Ping, true, b"").await;
    assert_eq!(c.read_frame().await.opcode, OpCode::Pong);
    c.send(OpCode::Text, true, b"still here").await;
    let f = c.read_frame().await;
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OpCode::Text, &b"still here"[..])
    );
    // An unsolicited Pong is ignored.
    c.send(OpCode::Pong, true, b"x").await;
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    c.expect_eof().await;
    assert!(within(server).await.unwrap().0.is_closed());
}

#[tokio::test]
async fn stream_and_sink() {
    let (url, server) = spawn_server(Upgrader::new(), |mut ws| async move {
        // Server side through Stream/Sink as well.
        let mut n = 0;
        while let Some(msg) = ws.next().await {
            ws.send(msg.unwrap()).await.unwrap();
            n += 1;
        }
        // A clean close ends the stream; it stays ended.
        assert!(ws.next().await.is_none());
        n
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    for i in 0..10 {
        within(SinkExt::send(&mut ws, Message::text(format!("m{i}"))))
            .await
            .unwrap();
    }
    for i in 0..10 {
        let m = within(ws.next()).await.unwrap().unwrap();
        assert_eq!(m, Message::text(format!("m{i}")));
    }
    // Sink::close runs the closing handshake with 1000.
    within(SinkExt::close(&mut ws)).await.unwrap();
    assert!(within(ws.next()).await.is_none());
    assert_eq!(within(server).await.unwrap(), 10);
}

#[tokio::test]
async fn stream_ends_after_peer_closes() {
    let (url, server) = spawn_server(Upgrader::new(), |mut ws| async move {
        ws.send(Message::text("one")).await.unwrap();
        ws.close(CloseCode::Normal, "done").await
    })
    .await;
    let (ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    let all: Vec<_> = within(ws.collect::<Vec<_>>()).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].as_ref().unwrap(), &Message::text("one"));
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn replies_to_one_read_leave_in_one_write() {
    let (tx, rx) = oneshot::channel();
    let (addr, server) = spawn_accept(|stream| async move {
        let tap = Tap::new(stream);
        let writes = tap.writes.clone();
        let ws = Upgrader::new().upgrade(tap).await.unwrap();
        tx.send((writes.clone(), writes.load(Ordering::SeqCst)))
            .unwrap();
        echo(ws).await
    })
    .await;
    let mut c = RawPeer::handshake(addr).await;
    let (writes, after_handshake) = within(rx).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..16 {
        batch.extend(client_frame(
            OpCode::Text,
            true,
            format!("msg {i:02}").as_bytes(),
        ));
    }
    c.write(&batch).await;
    for i in 0..16 {
        let f = c.read_frame().await;
        assert_eq!(f.opcode, OpCode::Text);
        assert_eq!(f.payload, format!("msg {i:02}").as_bytes());
    }
    // The server is back in recv, waiting: the 16 replies left in one write.
    assert_eq!(
        writes.load(Ordering::SeqCst) - after_handshake,
        1,
        "writes for 16 replies"
    );
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    c.expect_eof().await;
    let (err, _ws) = within(server).await.unwrap();
    assert!(err.is_closed());
    // Then the Close echo, in a write of its own.
    assert_eq!(writes.load(Ordering::SeqCst) - after_handshake, 2);
}

#[tokio::test]
async fn a_lone_send_is_flushed_at_once() {
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (addr, server) = spawn_accept(|stream| async move {
        let mut ws = Upgrader::new().upgrade(Tap::new(stream)).await.unwrap();
        ws.send(Message::text("lone")).await.unwrap();
        // Not calling recv until the client has seen the message.
        go_rx.await.unwrap();
        echo(ws).await.0
    })
    .await;
    let mut c = RawPeer::handshake(addr).await;
    let f = c.read_frame().await;
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OpCode::Text, &b"lone"[..])
    );
    go_tx.send(()).unwrap();
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    c.expect_eof().await;
    assert!(within(server).await.unwrap().is_closed());
}

#[tokio::test]
async fn client_ping_gets_pong_and_messages_keep_flowing() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    for i in 0..5 {
        within(ws.ping(format!("p{i}").as_bytes())).await.unwrap();
        within(ws.send(Message::text(format!("t{i}"))))
            .await
            .unwrap();
        assert_eq!(
            within(ws.recv()).await.unwrap(),
            Message::text(format!("t{i}"))
        );
    }
    // A control payload over 125 bytes is refused locally.
    let err = within(ws.ping(&[0; 126])).await.unwrap_err();
    assert!(
        matches!(err.kind(), silverback::ErrorKind::InvalidSend(_)),
        "{err:?}"
    );
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert!(within(server).await.unwrap().0.is_closed());
}

#[tokio::test]
async fn echo_with_tiny_buffers() {
    // Reads of 64 bytes and flush-on-every-send on both sides.
    let tiny = Config::default().read_buffer_size(64).write_buffer_size(1);
    let (url, server) = spawn_echo(Upgrader::new().config(tiny)).await;
    let (mut ws, _) = within(Dialer::new().config(tiny).connect(&url))
        .await
        .unwrap();
    for len in SIZES {
        let msg = Message::text(text_of(len));
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap(), msg, "{len} bytes");
    }
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert!(within(server).await.unwrap().0.is_closed());
}

#[tokio::test]
async fn write_buffer_size_bounds_the_coalescing() {
    // With write_buffer_size 1, every reply is written at once, even with
    // more input buffered: 16 replies, 16 writes.
    let (tx, rx) = oneshot::channel();
    let (addr, server) = spawn_accept(|stream| async move {
        let tap = Tap::new(stream);
        let writes = tap.writes.clone();
        let ws = Upgrader::new()
            .write_buffer_size(1)
            .upgrade(tap)
            .await
            .unwrap();
        tx.send((writes.clone(), writes.load(Ordering::SeqCst)))
            .unwrap();
        echo(ws).await
    })
    .await;
    let mut c = RawPeer::handshake(addr).await;
    let (writes, after_handshake) = within(rx).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..16 {
        batch.extend(client_frame(OpCode::Binary, true, &[i; 3]));
    }
    c.write(&batch).await;
    for i in 0..16 {
        assert_eq!(c.read_frame().await.payload, [i; 3]);
    }
    assert_eq!(writes.load(Ordering::SeqCst) - after_handshake, 16);
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    c.expect_eof().await;
    assert!(within(server).await.unwrap().0.is_closed());
}
