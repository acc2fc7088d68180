//! Control frames seen by the application: ping and pong hooks, answering
//! pings by hand with `auto_pong` off, unsolicited pongs; over in-memory
//! connections (`silverback::testing`), on tokio's paused clock so that a
//! stuck test fails at once instead of hanging.
#![allow(missing_docs)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use silverback::testing::{self, RawPeer};
use silverback::{CloseCode, Config, Message, OpCode, Role};

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

/// A hook that records the payloads it gets.
fn recorder() -> (Arc<Mutex<Vec<Bytes>>>, impl FnMut(&[u8]) + Send + 'static) {
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
    peer.send_frame(OpCode::Ping, b"are you there").await.unwrap();
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
