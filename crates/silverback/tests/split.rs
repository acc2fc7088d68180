//! Split halves used from two tasks: concurrent send and receive, closing
//! from the writer while the reader is parked, reunite.
#![allow(missing_docs)]

mod common;

use std::future::{poll_fn, Future};
use std::task::Poll;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use silverback::{testing, CloseCode, Config, Dialer, Message, OpCode, Role, Upgrader};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_and_writer_in_two_tasks() {
    const N: usize = 200;
    let (url, server) = spawn_server(Upgrader::new(), |ws| async move {
        let (mut rx, mut tx) = ws.split();
        let writer = tokio::spawn(async move {
            for i in 0..N {
                tx.send(Message::text(format!("s{i}"))).await.unwrap();
            }
            tx
        });
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let err = loop {
                match rx.recv().await {
                    Ok(m) => {
                        assert_eq!(m, Message::text(format!("c{got}")));
                        got += 1;
                    }
                    Err(e) => break e,
                }
            };
            (got, err, rx)
        });
        let tx = writer.await.unwrap();
        let (got, err, rx) = reader.await.unwrap();
        assert!(err.is_closed(), "{err:?}");
        let ws = rx.reunite(tx);
        assert!(ws.is_closed());
        got
    })
    .await;

    let (ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    let (mut rx, mut tx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            tx.send(Message::text(format!("c{i}"))).await.unwrap();
        }
        tx
    });
    for i in 0..N {
        assert_eq!(
            within(rx.recv()).await.unwrap(),
            Message::text(format!("s{i}"))
        );
    }
    let mut tx = within(sender).await.unwrap();
    // Close from the writer while the reader is parked in recv.
    let reader = tokio::spawn(async move { (rx.recv().await, rx) });
    within(tx.close(CloseCode::Normal, "")).await.unwrap();
    let (res, _rx) = within(reader).await.unwrap();
    let err = res.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(within(server).await.unwrap(), N);
}

/// The writer closes while the reader is parked in recv; the peer sends
/// messages after receiving our Close and before answering it: the reader
/// gets all of them, then the closed error; close returns Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_close_lets_the_reader_see_every_message() {
    let (parked_tx, parked_rx) = oneshot::channel();
    let (url, server) = spawn_server(Upgrader::new(), |ws| async move {
        let (mut rx, mut tx) = ws.split();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut parked = Some(parked_tx);
            let err = loop {
                let next = rx.recv();
                tokio::pin!(next);
                // Tell the test once the reader is really waiting.
                if let Some(p) = parked.take() {
                    let pending =
                        poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx).is_pending())).await;
                    assert!(pending);
                    p.send(()).unwrap();
                }
                match next.await {
                    Ok(m) => got.push(m),
                    Err(e) => break e,
                }
            };
            (got, err)
        });
        parked_rx.await.unwrap();
        let closed = tx.close(CloseCode::from(4000), "writer").await;
        let (got, err) = reader.await.unwrap();
        (closed, got, err)
    })
    .await;

    let mut c = RawPeer::handshake(addr_of(&url)).await;
    let close = c.read_close().await;
    assert_eq!(close.close_code(), Some(4000));
    assert_eq!(close.close_reason(), "writer");
    // Messages sent after the server's Close arrived, then our Close: in
    // one write and in several.
    let mut bytes = Vec::new();
    for i in 0..10 {
        bytes.extend(client_frame(
            OpCode::Text,
            true,
            format!("late {i}").as_bytes(),
        ));
    }
    c.write(&bytes).await;
    c.send(OpCode::Binary, true, &[9; 70_000]).await;
    c.send(OpCode::Close, true, &close_payload(4000, "")).await;
    c.expect_eof().await;

    let (closed, got, err) = within(server).await.unwrap();
    closed.unwrap();
    let mut want: Vec<_> = (0..10)
        .map(|i| Message::text(format!("late {i}")))
        .collect();
    want.push(Message::binary(vec![9; 70_000]));
    assert_eq!(got, want);
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::Other(4000)));
    assert!(matches!(
        err.kind(),
        silverback::ErrorKind::Closed { by_us: true, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_close_with_our_client_as_peer() {
    // Our client sends 100 messages then reads; the server's writer closes
    // concurrently: the server's reader gets all 100.
    let (ready_tx, ready_rx) = oneshot::channel();
    let (url, server) = spawn_server(Upgrader::new(), |ws| async move {
        let (mut rx, mut tx) = ws.split();
        let reader = tokio::spawn(async move {
            let mut n = 0;
            let err = loop {
                match rx.recv().await {
                    Ok(_) => n += 1,
                    Err(e) => break e,
                }
            };
            (n, err)
        });
        ready_rx.await.unwrap();
        let closed = tx.close(CloseCode::Normal, "").await;
        (closed, reader.await.unwrap())
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    for i in 0..100 {
        within(ws.send(Message::text(format!("{i}"))))
            .await
            .unwrap();
    }
    ready_tx.send(()).unwrap();
    let err = within(ws.recv()).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    let (closed, (n, err)) = within(server).await.unwrap();
    closed.unwrap();
    assert_eq!(n, 100);
    assert!(err.is_closed());
}

#[tokio::test]
async fn writer_closes_alone_after_the_reader_is_dropped() {
    let (url, server) = spawn_server(Upgrader::new(), |ws| async move {
        let (rx, mut tx) = ws.split();
        tx.send(Message::text("hello")).await.unwrap();
        drop(rx);
        tx.close(CloseCode::Normal, "").await
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("hello"));
    let err = within(ws.recv()).await.unwrap_err();
    assert!(err.is_closed());
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn reunite_gives_back_a_working_websocket() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let (ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    let (mut rx, mut tx) = ws.split();
    within(tx.send(Message::text("split"))).await.unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), Message::text("split"));
    assert!(rx.is_pair_of(&tx));
    let mut ws = rx.reunite(tx);
    within(ws.send(Message::text("whole"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("whole"));
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert!(within(server).await.unwrap().0.is_closed());
}

#[tokio::test]
async fn halves_as_stream_and_sink() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let (ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    let (mut rx, mut tx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..20 {
            tx.feed(Message::binary(vec![i; 10])).await.unwrap();
        }
        tx.flush().await.unwrap();
        tx
    });
    for i in 0..20 {
        assert_eq!(
            within(rx.next()).await.unwrap().unwrap(),
            Message::binary(vec![i; 10])
        );
    }
    let mut tx = within(sender).await.unwrap();
    let reader = tokio::spawn(async move { rx.next().await.is_none() });
    within(SinkExt::close(&mut tx)).await.unwrap();
    assert!(
        within(reader).await.unwrap(),
        "the stream ends after a clean close"
    );
    assert!(within(server).await.unwrap().0.is_closed());
}

/// The writer's flush is blocked on a full socket while the reader, woken
/// by incoming messages, also tries to write out the queued output (it does
/// so before waiting for input). The writer must still be woken when the
/// socket drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_writer_is_woken_when_the_reader_also_wrote() {
    const BIG: usize = 1 << 20;
    const COUNT: usize = 32;
    let (blocked_tx, blocked_rx) = oneshot::channel();
    let (got_tx, mut got_rx) = mpsc::unbounded_channel();
    let (addr, server) = spawn_accept(move |stream| async move {
        let tap = Tap::new(stream);
        let blocked = tap.write_blocked.clone();
        let ws = Upgrader::new().upgrade(tap).await.unwrap();
        let (mut rx, mut tx) = ws.split();
        let writer = tokio::spawn(async move {
            for i in 0..COUNT {
                tx.send(Message::binary(vec![i as u8; BIG])).await.unwrap();
            }
            tx
        });
        // Wait until a write would block (the client is not reading yet).
        blocked.notified().await;
        blocked_tx.send(()).unwrap();
        let reader = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(m) => got_tx.send(m).unwrap(),
                    Err(e) => return (e, rx),
                }
            }
        });
        let tx = writer.await.unwrap();
        let (err, rx) = reader.await.unwrap();
        (err, rx.reunite(tx))
    })
    .await;

    let mut c = RawPeer::handshake(addr).await;
    within(blocked_rx).await.unwrap();
    // While the writer is blocked: messages for the reader.
    for i in 0..10 {
        c.send(OpCode::Text, true, format!("small {i}").as_bytes())
            .await;
    }
    for i in 0..10 {
        assert_eq!(
            within(got_rx.recv()).await.unwrap(),
            Message::text(format!("small {i}"))
        );
    }
    // Now drain everything the writer sends.
    for i in 0..COUNT {
        let f = c.read_frame().await;
        assert_eq!(f.opcode, OpCode::Binary);
        assert_eq!(f.payload.len(), BIG);
        assert!(f.payload.iter().all(|&b| b == i as u8));
    }
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    c.expect_eof().await;
    let (err, ws) = within(server).await.unwrap();
    assert!(err.is_closed(), "{err:?}");
    assert!(ws.is_closed());
}

/// The writer cannot count on the reader to flush for it: while the reader
/// task holds on to a message (more input still buffered behind it), a
/// message from the writer must still go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_send_is_not_held_back_by_input_the_reader_has_not_taken() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (url, server) = spawn_server(Upgrader::new(), |ws| async move {
        let (mut rx, mut tx) = ws.split();
        let (got_first_tx, got_first_rx) = oneshot::channel();
        let reader = tokio::spawn(async move {
            let first = rx.recv().await.unwrap();
            got_first_tx.send(()).unwrap();
            // Busy with the first message; the second is buffered.
            release_rx.await.unwrap();
            let second = rx.recv().await.unwrap();
            let end = rx.recv().await.unwrap_err();
            (first, second, end)
        });
        got_first_rx.await.unwrap();
        tx.send(Message::text("from writer")).await.unwrap();
        (reader.await.unwrap(), tx)
    })
    .await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    let mut bytes = client_frame(OpCode::Text, true, b"first");
    bytes.extend(client_frame(OpCode::Text, true, b"second"));
    c.write(&bytes).await;
    let f = c.read_frame().await;
    assert_eq!(f.payload, b"from writer");
    release_tx.send(()).unwrap();
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    c.expect_eof().await;
    let ((first, second, end), _tx) = within(server).await.unwrap();
    assert_eq!(first, Message::text("first"));
    assert_eq!(second, Message::text("second"));
    assert!(end.is_closed());
}

/// The writer's close times out (the peer never answers, and keeps its
/// end open): the reader, parked in recv or in the Stream's next, is woken
/// and told, at the very instant of the timeout (in memory, on the paused
/// clock: a reader left parked would only wake at its keepalive, 20 s
/// later).
#[tokio::test(start_paused = true)]
async fn writer_close_timeout_wakes_the_parked_reader() {
    const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
    for use_stream in [false, true] {
        let config = Config::default().close_timeout(CLOSE_TIMEOUT);
        let (ws, mut peer) = testing::raw_peer(Role::Server, config);
        let (mut rx, mut tx) = ws.split();
        let (parked_tx, parked_rx) = oneshot::channel();
        let reader = tokio::spawn(async move {
            let res = if use_stream {
                let next = rx.next();
                tokio::pin!(next);
                let pending = poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx).is_pending())).await;
                assert!(pending);
                parked_tx.send(()).unwrap();
                next.await.expect("an error, not the end of the stream")
            } else {
                let next = rx.recv();
                tokio::pin!(next);
                let pending = poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx).is_pending())).await;
                assert!(pending);
                parked_tx.send(()).unwrap();
                next.await
            };
            (res.unwrap_err(), Instant::now())
        });
        within(parked_rx).await.unwrap();
        let start = Instant::now();
        let closed = within(tx.close(CloseCode::Normal, "")).await;
        assert_eq!(start.elapsed(), CLOSE_TIMEOUT);
        assert!(closed.unwrap_err().is_timeout());
        let (reader_err, woken) = within(reader).await.unwrap();
        assert!(
            reader_err.is_timeout(),
            "stream: {use_stream}: {reader_err:?}"
        );
        assert_eq!(woken - start, CLOSE_TIMEOUT, "stream: {use_stream}");
        // The Close, never answered, then the end of stream.
        let close = peer.read_frame().await.unwrap().unwrap();
        assert_eq!(close.opcode, OpCode::Close);
        assert!(peer.read_frame().await.unwrap().is_none());
    }
}

/// The reader half is dropped while the writer waits in close for the
/// reader to see the peer's Close: the writer takes over the reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_dropped_during_writer_close() {
    let (drop_tx, drop_rx) = oneshot::channel::<()>();
    let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
    let (url, server) = spawn_server(Upgrader::new(), |ws| async move {
        let (rx, mut tx) = ws.split();
        tokio::spawn(async move {
            drop_rx.await.unwrap();
            drop(rx);
            dropped_tx.send(()).unwrap();
        });
        tx.close(CloseCode::Normal, "").await
    })
    .await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    drop_tx.send(()).unwrap();
    within(dropped_rx).await.unwrap();
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    c.expect_eof().await;
    within(server).await.unwrap().unwrap();
}

/// With permessage-deflate (both memory modes), a reader half inflates
/// whole and fragmented messages outside the connection's lock (deferred
/// decoding) while the writer half sends: every message arrives intact,
/// the compression context carries across messages, a bad compressed
/// message still fails the connection with 1007, and reunited halves
/// decode as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_half_inflates_compressed_messages() {
    use silverback::{DeflateConfig, MemoryMode};
    for memory in [MemoryMode::Shared, MemoryMode::Dedicated] {
        let deflate = DeflateConfig {
            memory,
            ..DeflateConfig::default()
        };
        let (server, mut client) = common::pair(
            Upgrader::new().compression(deflate),
            Dialer::new().compression(deflate),
        )
        .await;
        assert!(server.compression().is_some());
        let (mut reader, mut writer) = server.split();
        let text = "compressible text, ".repeat(20_000);
        let echo = tokio::spawn(async move {
            let mut n = 0;
            while let Ok(msg) = reader.recv().await {
                writer.send(msg).await.unwrap();
                n += 1;
            }
            (n, reader, writer)
        });
        for _ in 0..3 {
            within(client.send(Message::text(text.clone())))
                .await
                .unwrap();
        }
        // Fragmented (the client's fragments bypass compression, so this
        // one is not compressed: the ordinary path, mixed in).
        within(client.send_fragment(OpCode::Text, b"frag", false))
            .await
            .unwrap();
        within(client.send_fragment(OpCode::Continuation, b"ment", true))
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(
                within(client.recv()).await.unwrap(),
                Message::text(text.clone())
            );
        }
        assert_eq!(
            within(client.recv()).await.unwrap(),
            Message::text("fragment")
        );
        let sent = client.stats().bytes_out as usize;
        assert!(sent < text.len(), "{memory:?}: compressed ({sent} bytes)");
        within(client.close(CloseCode::Normal, "")).await.unwrap();
        let (n, reader, writer) = within(echo).await.unwrap();
        assert_eq!(n, 4, "{memory:?}");
        let ws = reader.reunite(writer);
        assert!(ws.is_closed());
    }
}

/// A compressed message that does not inflate: the reader half (decoding
/// outside the lock) fails the connection with 1007, as the whole socket
/// would.
#[tokio::test]
async fn reader_half_fails_a_bad_compressed_message_with_1007() {
    use silverback::DeflateConfig;
    let (addr, server) = spawn_accept(|s| async move {
        Upgrader::new()
            .compression(DeflateConfig::default())
            .upgrade(s)
            .await
    })
    .await;
    let mut peer = RawPeer::connect(addr).await;
    let ext = [("Sec-WebSocket-Extensions", "permessage-deflate")];
    peer.write(&upgrade_request(&addr.to_string(), &ext)).await;
    assert_eq!(peer.read_response_head().await.status(), 101);
    let ws = within(server).await.unwrap().unwrap();
    assert!(ws.compression().is_some());
    let (mut reader, _writer) = ws.split();
    // RSV1 set (compressed), a payload that is not deflate data.
    let mut frame = client_frame(OpCode::Binary, true, &[0xff, 0xff, 0xff, 0xff]);
    frame[0] |= 0x40;
    peer.write(&frame).await;
    let err = within(reader.recv()).await.unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::InvalidPayload), "{err:?}");
    let close = peer.read_close().await;
    assert_eq!(
        u16::from_be_bytes([close.payload[0], close.payload[1]]),
        1007
    );
}
