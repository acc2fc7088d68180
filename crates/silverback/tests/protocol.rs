//! Protocol violations over a socket: the peer always gets a Close frame
//! with the right code before the TCP connection closes, and `recv`
//! reports the error.
#![allow(missing_docs)]

mod common;

use common::*;
use silverback::{CloseCode, Message, OpCode, Upgrader};

/// Runs an echo server with `upgrader`, has a raw client send `bytes` in
/// one write after the handshake, and checks: the client receives any
/// `echoes` first, then a Close with `code`, then end of stream (while the
/// server still holds its WebSocket); the server's recv failed with a
/// protocol error carrying `code`.
async fn violation(upgrader: Upgrader, bytes: Vec<u8>, echoes: &[&[u8]], code: CloseCode) {
    let (url, server) = spawn_echo(upgrader).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    c.write(&bytes).await;
    for e in echoes {
        assert_eq!(c.read_frame().await.payload, *e);
    }
    let close = c.read_close().await;
    assert!(!close.masked);
    assert_eq!(
        close.close_code(),
        Some(u16::from(code)),
        "{close:?} {}",
        close.close_reason()
    );
    c.expect_eof().await;
    let (err, ws) = within(server).await.unwrap();
    assert!(err.is_protocol(), "{err:?}");
    assert_eq!(err.close_code(), Some(code));
    assert!(err.is_unexpected_close(&[CloseCode::Normal]));
    assert!(!err.is_closed());
    assert!(ws.is_closed());
}

#[tokio::test]
async fn unmasked_frame_gets_1002() {
    let bytes = server_frame(OpCode::Text, true, b"not masked");
    violation(Upgrader::new(), bytes, &[], CloseCode::ProtocolError).await;
}

#[tokio::test]
async fn invalid_utf8_gets_1007() {
    let mut bytes = client_frame(OpCode::Text, true, b"fine");
    bytes.extend(client_frame(OpCode::Text, true, b"bad \xff\xfe"));
    violation(
        Upgrader::new(),
        bytes,
        &[b"fine"],
        CloseCode::InvalidPayload,
    )
    .await;
}

#[tokio::test]
async fn invalid_utf8_across_fragments_gets_1007() {
    let mut bytes = client_frame(OpCode::Text, false, b"ok \xe2\x82");
    // A truncated euro sign followed by ASCII.
    bytes.extend(client_frame(OpCode::Continuation, true, b"x"));
    violation(Upgrader::new(), bytes, &[], CloseCode::InvalidPayload).await;
}

#[tokio::test]
async fn reserved_bits_and_opcodes_get_1002() {
    let mut rsv = client_frame(OpCode::Text, true, b"x");
    rsv[0] |= 0x40;
    violation(Upgrader::new(), rsv, &[], CloseCode::ProtocolError).await;

    let mut op = client_frame(OpCode::Binary, true, b"x");
    op[0] = (op[0] & 0xf0) | 0x3;
    violation(Upgrader::new(), op, &[], CloseCode::ProtocolError).await;

    let cont = client_frame(OpCode::Continuation, true, b"x");
    violation(Upgrader::new(), cont, &[], CloseCode::ProtocolError).await;

    let ping = client_frame(OpCode::Ping, false, b"x");
    violation(Upgrader::new(), ping, &[], CloseCode::ProtocolError).await;
}

#[tokio::test]
async fn oversized_frame_gets_1009_from_its_header_alone() {
    let (url, server) = spawn_echo(Upgrader::new().max_frame_size(1024)).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    // Only the header of a 2000-byte frame: no payload is ever sent.
    c.write(&client_header(OpCode::Binary, true, 2000)).await;
    let close = c.read_close().await;
    assert_eq!(close.close_code(), Some(1009));
    c.expect_eof().await;
    let (err, _ws) = within(server).await.unwrap();
    assert!(err.is_protocol(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::MessageTooBig));
}

#[tokio::test]
async fn huge_declared_length_gets_1009_without_allocating_it() {
    // 2^62 bytes claimed: refused from the header (no attempt to reserve it).
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    c.write(&client_header(OpCode::Binary, true, 1 << 62)).await;
    assert_eq!(c.read_close().await.close_code(), Some(1009));
    c.expect_eof().await;
    let (err, _ws) = within(server).await.unwrap();
    assert_eq!(err.close_code(), Some(CloseCode::MessageTooBig));
}

#[tokio::test]
async fn frame_at_the_limit_is_accepted() {
    let (url, server) =
        spawn_echo(Upgrader::new().max_frame_size(1024).max_message_size(1024)).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    c.send(OpCode::Binary, true, &[7; 1024]).await;
    assert_eq!(c.read_frame().await.payload, vec![7; 1024]);
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    c.expect_eof().await;
    assert!(within(server).await.unwrap().0.is_closed());
}

#[tokio::test]
async fn oversized_message_via_fragments_gets_1009() {
    let mut bytes = client_frame(OpCode::Text, false, &[b'a'; 600]);
    bytes.extend(client_frame(OpCode::Continuation, true, &[b'b'; 600]));
    violation(
        Upgrader::new().max_message_size(1024),
        bytes,
        &[],
        CloseCode::MessageTooBig,
    )
    .await;
}

#[tokio::test]
async fn oversized_message_header_of_second_fragment_is_enough() {
    let (url, server) = spawn_echo(Upgrader::new().max_message_size(1024)).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    let mut bytes = client_frame(OpCode::Binary, false, &[1; 1000]);
    // The second fragment's header alone pushes the message over the limit.
    bytes.extend(client_header(OpCode::Continuation, true, 100));
    c.write(&bytes).await;
    assert_eq!(c.read_close().await.close_code(), Some(1009));
    c.expect_eof().await;
    let (err, _ws) = within(server).await.unwrap();
    assert_eq!(err.close_code(), Some(CloseCode::MessageTooBig));
}

#[tokio::test]
async fn invalid_close_payloads_get_1002() {
    // One byte, a code that may not be sent, a non-UTF-8 reason.
    for payload in [vec![3], close_payload(1005, ""), close_payload(999, ""), {
        let mut p = close_payload(1000, "");
        p.push(0xff);
        p
    }] {
        let bytes = client_frame(OpCode::Close, true, &payload);
        violation(Upgrader::new(), bytes, &[], CloseCode::ProtocolError).await;
    }
}

#[tokio::test]
async fn client_refuses_a_masked_frame_from_the_server() {
    let (url, server) = spawn_raw_server(Vec::new(), |mut s| async move {
        s.write(&client_frame(OpCode::Text, true, b"masked")).await;
        let close = s.read_close().await;
        // The client masks what it sends, its Close included.
        assert!(close.masked);
        s.expect_eof().await;
        close.close_code()
    })
    .await;
    let (mut ws, _) = within(silverback::Dialer::new().connect(&url))
        .await
        .unwrap();
    let err = within(ws.recv()).await.unwrap_err();
    assert!(err.is_protocol(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::ProtocolError));
    // The client closed TCP itself (a failed connection is not kept open).
    assert_eq!(within(server).await.unwrap(), Some(1002));
    assert!(ws.is_closed());
    // Later calls report the end without hanging.
    assert!(within(ws.recv()).await.unwrap_err().is_closed());
    assert!(within(ws.send(Message::text("x"))).await.is_err());
}
