//! The API a gorilla or axum user reaches for, over in-memory connections
//! (`silverback::testing`, or a handshake over `tokio::io::duplex`), on
//! tokio's paused clock so that a stuck test fails at once instead of
//! hanging:
//! - control frames seen by the application: ping and pong hooks,
//!   answering pings by hand with `auto_pong` off, unsolicited pongs;
//! - how `recv` and the `Stream` report the end of a connection;
//! - `send_with` and its `Compression`, negotiated or not;
//! - the upgrade request seen from the split halves.
#![allow(missing_docs)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FusedStream;
use futures_util::StreamExt;
use silverback::testing::{self, RawPeer};
use silverback::{
    Authorized, CloseCode, Compression, Config, DeflateConfig, Dialer, ErrorKind, Message, OpCode,
    Role, Upgrader, WebSocket,
};
use tokio::io::DuplexStream;

/// Bounds a step (virtual time: a stuck step fails at once).
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("step did not complete")
}

/// No keepalive pings of our own in the way.
fn config() -> Config {
    Config::default().ping_interval(None)
}

/// The payloads a hook was called with.
type Seen = Arc<Mutex<Vec<Bytes>>>;

/// A hook that records the payloads it gets.
fn recorder() -> (Seen, impl FnMut(&[u8]) + Send + 'static) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |p: &[u8]| {
        sink.lock().unwrap().push(Bytes::copy_from_slice(p))
    })
}

async fn expect_frame(peer: &mut RawPeer, opcode: OpCode, payload: &[u8]) {
    let f = within(peer.read_frame()).await.unwrap().expect("a frame");
    assert_eq!((f.opcode, &f.payload[..]), (opcode, payload));
}

#[tokio::test(start_paused = true)]
async fn ping_hook_sees_pings_answered_automatically() {
    let (mut ws, mut peer) = testing::raw_peer(Role::Server, config());
    let (pings, hook) = recorder();
    ws.on_ping(hook);
    peer.send_frame(OpCode::Ping, b"one").await.unwrap();
    peer.send_frame(OpCode::Ping, b"").await.unwrap();
    peer.send_frame(OpCode::Text, b"data").await.unwrap();

    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("data"));
    assert_eq!(*pings.lock().unwrap(), [&b"one"[..], b""]);
    // auto_pong (the default): both answered (the Pongs leave with the
    // next flush: write coalescing).
    within(ws.flush()).await.unwrap();
    expect_frame(&mut peer, OpCode::Pong, b"one").await;
    expect_frame(&mut peer, OpCode::Pong, b"").await;
}

#[tokio::test(start_paused = true)]
async fn without_auto_pong_the_application_answers() {
    let (mut ws, mut peer) = testing::raw_peer(Role::Server, config().auto_pong(false));
    let (pings, hook) = recorder();
    ws.on_ping(hook);
    peer.send_frame(OpCode::Ping, b"are you there")
        .await
        .unwrap();
    peer.send_frame(OpCode::Text, b"data").await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("data"));
    assert_eq!(*pings.lock().unwrap(), [&b"are you there"[..]]);

    // Nothing was sent for the Ping: the first frame out is our own Pong.
    within(ws.pong(b"yes, manually")).await.unwrap();
    expect_frame(&mut peer, OpCode::Pong, b"yes, manually").await;

    // The connection still closes normally.
    peer.send_close(CloseCode::Normal, "").await.unwrap();
    assert!(within(ws.recv()).await.unwrap_err().is_closed());
    let echo = within(peer.read_frame()).await.unwrap().unwrap();
    assert_eq!(echo.opcode, OpCode::Close);
}

#[tokio::test(start_paused = true)]
async fn pong_hook_sees_answers_and_unsolicited_pongs() {
    let (mut ws, mut peer) = testing::raw_peer(Role::Client, config());
    let (pongs, hook) = recorder();
    ws.on_pong(hook);

    let answered = within(ws.ping(b"p1")).await.unwrap();
    expect_frame(&mut peer, OpCode::Ping, b"p1").await;
    peer.send_frame(OpCode::Pong, b"p1").await.unwrap();
    peer.send_frame(OpCode::Pong, b"heartbeat").await.unwrap();
    peer.send_frame(OpCode::Binary, b"data").await.unwrap();

    assert_eq!(within(ws.recv()).await.unwrap(), Message::binary("data"));
    within(answered).await.unwrap();
    assert_eq!(*pongs.lock().unwrap(), [&b"p1"[..], b"heartbeat"]);
}

#[tokio::test(start_paused = true)]
async fn hooks_can_be_replaced() {
    let (mut ws, mut peer) = testing::raw_peer(Role::Server, config());
    let (first, hook) = recorder();
    ws.on_ping(hook);
    let (second, hook) = recorder();
    ws.on_ping(hook);
    peer.send_frame(OpCode::Ping, b"x").await.unwrap();
    peer.send_frame(OpCode::Text, b"data").await.unwrap();
    within(ws.recv()).await.unwrap();
    assert!(first.lock().unwrap().is_empty());
    assert_eq!(second.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn pings_after_our_close_are_neither_answered_nor_reported() {
    let (mut ws, mut peer) = testing::raw_peer(Role::Server, config());
    let (pings, hook) = recorder();
    ws.on_ping(hook);
    let closing = tokio::spawn(async move {
        let res = ws.close(CloseCode::Normal, "bye").await;
        (res, ws)
    });
    let close = within(peer.read_frame()).await.unwrap().unwrap();
    assert_eq!(close.opcode, OpCode::Close);
    peer.send_frame(OpCode::Ping, b"late").await.unwrap();
    peer.send_close(CloseCode::Normal, "").await.unwrap();

    let (res, ws) = within(closing).await.unwrap();
    res.unwrap();
    assert!(ws.is_closed());
    assert!(pings.lock().unwrap().is_empty());
    // No Pong: the server closed TCP right after the handshake.
    assert!(within(peer.read_frame()).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn split_reader_hooks_and_writer_pong() {
    let (ws, mut peer) = testing::raw_peer(Role::Server, config().auto_pong(false));
    let (mut reader, mut writer) = ws.split();
    let (to_answer, mut answers) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    reader.on_ping(move |p| {
        let _ = to_answer.send(p.to_vec());
    });
    let (pongs, hook) = recorder();
    reader.on_pong(hook);
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            match reader.recv().await {
                Ok(m) => got.push(m),
                Err(e) => return (got, e),
            }
        }
    });

    peer.send_frame(OpCode::Ping, b"from peer").await.unwrap();
    peer.send_frame(OpCode::Pong, b"unsolicited").await.unwrap();
    // The writer task answers what the reader's hook reported.
    let payload = within(answers.recv()).await.unwrap();
    within(writer.pong(&payload)).await.unwrap();
    expect_frame(&mut peer, OpCode::Pong, b"from peer").await;

    peer.send_close(CloseCode::GoingAway, "").await.unwrap();
    let (got, err) = within(reading).await.unwrap();
    assert!(got.is_empty());
    assert_eq!(err.close_code(), Some(CloseCode::GoingAway));
    assert_eq!(*pongs.lock().unwrap(), [&b"unsolicited"[..]]);
    // After the end, a pong is refused like any send.
    assert!(writer.pong(b"too late").await.unwrap_err().is_closed());
}

// ----- recv and Stream at the end ---------------------------------------

#[tokio::test(start_paused = true)]
async fn clean_close_recv_is_err_closed_stream_is_none() {
    for via_stream in [false, true] {
        let (mut ws, mut peer) = testing::raw_peer(Role::Server, config());
        peer.send_frame(OpCode::Text, b"last").await.unwrap();
        peer.send_close(CloseCode::GoingAway, "tab closed")
            .await
            .unwrap();
        if via_stream {
            let msg = within(ws.next()).await.unwrap().unwrap();
            assert_eq!(msg, Message::text("last"));
            assert!(!ws.is_terminated());
            assert!(within(ws.next()).await.is_none());
            assert!(ws.is_terminated());
            // Fused: still `None`.
            assert!(within(ws.next()).await.is_none());
        } else {
            assert_eq!(within(ws.recv()).await.unwrap(), Message::text("last"));
            let err = within(ws.recv()).await.unwrap_err();
            assert!(err.is_closed());
            assert!(!err.is_unexpected_close(&[CloseCode::GoingAway]));
            let frame = err.close_frame().unwrap();
            assert_eq!(
                (frame.code, frame.reason.as_str()),
                (CloseCode::GoingAway, "tab closed")
            );
            assert!(ws.is_terminated());
        }
        // Either way: the end was reported once; `end()` keeps the peer's
        // code, and `recv` now reports misuse.
        let end = ws.end().unwrap();
        assert!(end.is_clean());
        assert_eq!(
            (end.close_code(), end.reason()),
            (CloseCode::GoingAway, "tab closed")
        );
        let again = within(ws.recv()).await.unwrap_err();
        assert!(
            matches!(again.kind(), ErrorKind::AlreadyClosed),
            "{again:?}"
        );
        // The Close was echoed.
        let echo = within(peer.read_frame()).await.unwrap().unwrap();
        assert_eq!(echo.close_frame().unwrap().code, CloseCode::GoingAway);
    }
}

#[tokio::test(start_paused = true)]
async fn abnormal_end_recv_is_err_stream_is_err_then_none() {
    for via_stream in [false, true] {
        let (mut ws, peer) = testing::raw_peer(Role::Client, config());
        drop(peer); // vanished without a Close
        let err = if via_stream {
            let err = within(ws.next()).await.unwrap().unwrap_err();
            assert!(ws.is_terminated());
            assert!(within(ws.next()).await.is_none());
            err
        } else {
            within(ws.recv()).await.unwrap_err()
        };
        assert!(!err.is_closed());
        assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
        assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
        assert_eq!(ws.end().unwrap().close_code(), CloseCode::Abnormal);
    }
}

#[tokio::test(start_paused = true)]
async fn split_reader_stream_ends_like_the_connection() {
    let (ws, mut peer) = testing::raw_peer(Role::Server, config());
    let (mut reader, writer) = ws.split();
    peer.send_frame(OpCode::Binary, b"x").await.unwrap();
    peer.send_close(CloseCode::Normal, "").await.unwrap();
    assert_eq!(
        within(reader.next()).await.unwrap().unwrap(),
        Message::binary("x")
    );
    assert!(within(reader.next()).await.is_none());
    assert!(reader.is_terminated());
    assert!(reader.is_closed() && writer.is_closed());
    assert_eq!(writer.end().unwrap().close_code(), CloseCode::Normal);
    assert!(within(reader.recv()).await.unwrap_err().is_closed());
}

// ----- send_with ----------------------------------------------------------

/// A server and a client of ours, after a real handshake in memory.
async fn handshake(
    upgrader: Upgrader,
    dialer: Dialer,
    url: &str,
) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (c, s) = tokio::io::duplex(testing::DEFAULT_BUFFER_SIZE);
    let server = tokio::spawn(async move { upgrader.upgrade(s).await });
    let (client, _) = within(dialer.handshake(c, url)).await.unwrap();
    let server = within(server).await.unwrap().unwrap();
    (client, server)
}

#[tokio::test(start_paused = true)]
async fn send_with_each_compression_choice() {
    // A threshold above the message size: only `Always` compresses it.
    let deflate = DeflateConfig {
        threshold: 1024,
        ..DeflateConfig::default()
    };
    let with_deflate = config().compression(Some(deflate));
    let (mut client, server) = handshake(
        Upgrader::new().config(with_deflate),
        Dialer::new().config(with_deflate),
        "ws://in-memory/",
    )
    .await;
    assert!(client.compression().is_some());
    // Read the client's frames raw on the server's transport.
    let mut peer = RawPeer::new(into_io(server), Role::Server);
    let text = "abc".repeat(20);
    for (choice, rsv1) in [
        (Compression::Auto, false),
        (Compression::Always, true),
        (Compression::Never, false),
    ] {
        within(client.send_with(Message::text(text.clone()), choice))
            .await
            .unwrap();
        let f = within(peer.read_frame()).await.unwrap().unwrap();
        assert_eq!(f.rsv & 0x40 != 0, rsv1, "{choice:?}");
    }
    // A large, compressible one: `Auto` compresses it, `Never` does not.
    let big = "abc".repeat(1000);
    for (choice, rsv1) in [(Compression::Auto, true), (Compression::Never, false)] {
        within(client.send_with(Message::text(big.clone()), choice))
            .await
            .unwrap();
        let f = within(peer.read_frame()).await.unwrap().unwrap();
        assert_eq!(f.rsv & 0x40 != 0, rsv1, "{choice:?}");
    }
}

/// The transport of a connection, to read its peer's frames raw.
fn into_io(mut ws: WebSocket<DuplexStream>) -> DuplexStream {
    std::mem::replace(ws.get_mut(), tokio::io::duplex(1).0)
}

#[tokio::test(start_paused = true)]
async fn send_with_without_negotiated_compression_sends_as_is() {
    let (mut ws, mut peer) = testing::raw_peer(Role::Client, config());
    assert!(ws.compression().is_none());
    within(ws.send_with(Message::text("plain"), Compression::Always))
        .await
        .unwrap();
    let f = within(peer.read_frame()).await.unwrap().unwrap();
    assert_eq!(
        (f.rsv, f.opcode, &f.payload[..]),
        (0, OpCode::Text, &b"plain"[..])
    );
}

// ----- the upgrade request from the split halves ---------------------------

#[derive(Debug, PartialEq)]
struct User(&'static str);

#[tokio::test(start_paused = true)]
async fn split_halves_see_the_upgrade_request() {
    let upgrader = Upgrader::new()
        .config(config())
        .keep_request_headers(true)
        .authorize(|_req| async { Ok(Authorized::new(User("ada"))) });
    let dialer = Dialer::new().config(config()).header("x-client", "test");
    let (_client, server) = handshake(upgrader, dialer, "ws://in-memory/chat?room=rust").await;

    let (reader, writer) = server.split();
    for (path, query, user, header) in [
        (
            reader.request_path(),
            reader.request_query(),
            reader.identity::<User>(),
            reader.request_headers().map(|h| &h["x-client"]),
        ),
        (
            writer.request_path(),
            writer.request_query(),
            writer.identity::<User>(),
            writer.request_headers().map(|h| &h["x-client"]),
        ),
    ] {
        assert_eq!(path, Some("/chat"));
        assert_eq!(query, Some("room=rust"));
        assert_eq!(user, Some(&User("ada")));
        assert_eq!(header.unwrap(), "test");
    }
    assert_eq!(reader.request_target().unwrap().as_str(), "/chat?room=rust");
    assert!(writer.identity::<String>().is_none());
    let shared = writer.identity_arc().unwrap().clone();
    assert_eq!(shared.downcast_ref::<User>(), Some(&User("ada")));

    // Reunited, the connection has it back.
    let ws = reader.reunite(writer);
    assert_eq!(ws.request_path(), Some("/chat"));
    assert_eq!(ws.identity::<User>(), Some(&User("ada")));
}

#[tokio::test(start_paused = true)]
async fn client_halves_have_no_upgrade_request() {
    let (client, _server) = testing::pair(config(), config());
    let (reader, writer) = client.split();
    assert!(reader.request_target().is_none() && writer.request_path().is_none());
    assert!(reader.identity_arc().is_none() && writer.request_headers().is_none());
}
