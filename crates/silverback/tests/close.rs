//! The closing handshake in every direction and for both roles, and
//! abnormal ends. Close timeouts are tested in memory on the paused clock
//! (lifecycle.rs, `timers`).
#![allow(missing_docs)]

mod common;

use common::*;
use silverback::{CloseCode, Dialer, Error, ErrorKind, Message, OpCode, Upgrader};
use tokio::io::AsyncWriteExt;

fn assert_send_refused(err: &Error) {
    assert!(
        matches!(err.kind(), ErrorKind::Closing | ErrorKind::AlreadyClosed),
        "expected Closing or AlreadyClosed, got {err:?}"
    );
}

#[tokio::test]
async fn client_closes_with_code_and_reason() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    within(ws.send(Message::text("before"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("before"));
    within(ws.close(CloseCode::from(4000), "bye"))
        .await
        .unwrap();
    assert!(ws.is_closed());

    let (err, mut sws) = within(server).await.unwrap();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::Other(4000)));
    let frame = err.close_frame().unwrap();
    assert_eq!(frame.code, CloseCode::Other(4000));
    assert_eq!(&*frame.reason, "bye");
    assert!(matches!(err.kind(), ErrorKind::Closed { by_us: false, .. }));
    assert!(sws.is_closed());

    // The server side after the end: recv and send fail, close is a no-op.
    let again = within(sws.recv()).await.unwrap_err();
    assert!(
        matches!(again.kind(), ErrorKind::AlreadyClosed),
        "{again:?}"
    );
    assert_send_refused(&within(sws.send(Message::text("late"))).await.unwrap_err());
    within(sws.close(CloseCode::Normal, "")).await.unwrap();

    // The client side after its close.
    assert_send_refused(&within(ws.send(Message::text("late"))).await.unwrap_err());
    within(ws.close(CloseCode::Normal, "again")).await.unwrap();
    assert!(within(ws.recv()).await.unwrap_err().is_closed());
}

#[tokio::test]
async fn server_closes_and_client_recv_reports_the_code() {
    let (url, server) = spawn_server(Upgrader::new(), |mut ws| async move {
        let first = ws.recv().await.unwrap();
        ws.send(first).await.unwrap();
        let res = ws.close(CloseCode::GoingAway, "shutting down").await;
        // Sends after the close fail without panicking; close again is fine.
        let late = ws.send(Message::text("late")).await.unwrap_err();
        let again = ws.close(CloseCode::Normal, "").await;
        (res, late, again)
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    within(ws.send(Message::text("hi"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("hi"));
    let err = within(ws.recv()).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::GoingAway));
    assert_eq!(&*err.close_frame().unwrap().reason, "shutting down");
    assert!(!err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
    assert!(ws.is_closed());
    assert_send_refused(&within(ws.send(Message::text("x"))).await.unwrap_err());
    within(ws.close(CloseCode::Normal, "")).await.unwrap();

    let (res, late, again) = within(server).await.unwrap();
    res.unwrap();
    assert_send_refused(&late);
    again.unwrap();
}

#[tokio::test]
async fn server_close_seen_by_raw_client() {
    let (url, server) = spawn_server(Upgrader::new(), |mut ws| async move {
        let res = ws.close(CloseCode::from(4001), "srv").await;
        (res, ws)
    })
    .await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    let close = c.read_close().await;
    assert!(!close.masked);
    assert_eq!(close.close_code(), Some(4001));
    assert_eq!(close.close_reason(), "srv");
    c.send(OpCode::Close, true, &close_payload(4001, "")).await;
    // The server closes TCP once the handshake is complete.
    c.expect_eof().await;
    let (res, ws) = within(server).await.unwrap();
    res.unwrap();
    assert!(ws.is_closed());
}

#[tokio::test]
async fn empty_close_gets_1000_echoed() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    c.write(&client_frame(OpCode::Close, true, b"")).await;
    // Exactly: FIN+Close, unmasked, 2 bytes, 1000.
    assert_eq!(c.read_bytes(4).await, [0x88, 0x02, 0x03, 0xe8]);
    c.expect_eof().await;
    let (err, _ws) = within(server).await.unwrap();
    assert!(err.is_closed());
    assert_eq!(err.close_code(), Some(CloseCode::NoStatusReceived));
    assert!(err.close_frame().is_none());
}

#[tokio::test]
async fn close_echo_keeps_the_code_and_drops_the_reason() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    c.send(OpCode::Close, true, &close_payload(1001, "tab closed"))
        .await;
    assert_eq!(c.read_bytes(4).await, [0x88, 0x02, 0x03, 0xe9]);
    c.expect_eof().await;
    let (err, _ws) = within(server).await.unwrap();
    assert_eq!(err.close_code(), Some(CloseCode::GoingAway));
    assert_eq!(&*err.close_frame().unwrap().reason, "tab closed");
}

#[tokio::test]
async fn messages_before_close_are_delivered() {
    let (url, server) = spawn_server(Upgrader::new(), |mut ws| async move {
        let mut got = Vec::new();
        let err = loop {
            match ws.recv().await {
                Ok(m) => got.push(m),
                Err(e) => break e,
            }
        };
        (got, err)
    })
    .await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    let mut bytes = Vec::new();
    for i in 0..5 {
        bytes.extend(client_frame(OpCode::Text, true, format!("{i}").as_bytes()));
    }
    bytes.extend(client_frame(OpCode::Close, true, &close_payload(1000, "")));
    c.write(&bytes).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    c.expect_eof().await;
    let (got, err) = within(server).await.unwrap();
    assert_eq!(
        got,
        (0..5)
            .map(|i| Message::text(format!("{i}")))
            .collect::<Vec<_>>()
    );
    assert!(err.is_closed());
}

#[tokio::test]
async fn dropped_tcp_is_an_abnormal_close() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    c.send(OpCode::Text, true, b"x").await;
    assert_eq!(c.read_frame().await.payload, b"x");
    drop(c);
    let (err, ws) = within(server).await.unwrap();
    assert!(!err.is_closed(), "{err:?}");
    assert!(matches!(err.kind(), ErrorKind::Abnormal(_)), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
    assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
    assert!(ws.is_closed());
}

#[tokio::test]
async fn dropped_tcp_mid_message_is_an_abnormal_close() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    // Half a frame, then the TCP connection goes away.
    let f = client_frame(OpCode::Binary, true, &[1; 100]);
    c.write(&f[..50]).await;
    drop(c);
    let (err, _ws) = within(server).await.unwrap();
    assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
    assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
}

#[tokio::test]
async fn client_sees_abnormal_close_when_server_drops_tcp() {
    let (url, server) = spawn_raw_server(Vec::new(), |s| async move { drop(s) }).await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    within(server).await.unwrap();
    let err = within(ws.recv()).await.unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::Abnormal), "{err:?}");
    assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
}

#[tokio::test]
async fn client_answers_server_close_and_waits_for_server_tcp_close() {
    let (url, server) = spawn_raw_server(
        server_frame(OpCode::Close, true, &close_payload(1001, "bye")),
        |mut s| async move {
            let echo = s.read_close().await;
            assert!(echo.masked);
            // The server closes TCP first; then the client does.
            s.stream.shutdown().await.unwrap();
            s.expect_eof().await;
            echo.close_code()
        },
    )
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    let err = within(ws.recv()).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::GoingAway));
    assert!(matches!(err.kind(), ErrorKind::Closed { by_us: false, .. }));
    assert_eq!(within(server).await.unwrap(), Some(1001));
}

#[tokio::test]
async fn send_while_closing_fails_and_close_can_be_resumed() {
    use futures_util::FutureExt;
    let (url, server) = spawn_server(Upgrader::new(), |mut ws| async move {
        // Poll close once (the Close frame goes out), then give up on it.
        assert!(ws
            .close(CloseCode::Normal, "first")
            .now_or_never()
            .is_none());
        assert!(!ws.is_closed());
        let err = ws.send(Message::text("late")).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Closing), "{err:?}");
        let err = ws.ping(b"late").await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Closing), "{err:?}");
        // A second close finishes the handshake (its code is not sent).
        let res = ws.close(CloseCode::GoingAway, "second").await;
        (res, ws)
    })
    .await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1000), "first")
    );
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    c.expect_eof().await;
    let (res, ws) = within(server).await.unwrap();
    res.unwrap();
    assert!(ws.is_closed());
}

#[tokio::test]
async fn reset_tcp_is_an_abnormal_close() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let c = RawPeer::handshake(addr_of(&url)).await;
    // Zero linger: dropping the socket sends RST, not FIN.
    reset_on_drop(&c.stream);
    drop(c);
    let (err, ws) = within(server).await.unwrap();
    assert!(matches!(err.kind(), ErrorKind::Abnormal(_)), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
    assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
    assert!(ws.is_closed());
}

/// A peer that sends its Close and resets the connection at once (before
/// our echo can be written) still closed with its code: the end is
/// reported as that clean close, not as 1006.
#[tokio::test]
async fn client_sees_the_code_of_a_server_that_closes_and_resets() {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (url, server) = spawn_raw_server(Vec::new(), |mut s| async move {
        go_rx.await.unwrap();
        s.write(&server_frame(
            OpCode::Close,
            true,
            &close_payload(1001, "going"),
        ))
        .await;
        reset_on_drop(&s.stream);
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    go_tx.send(()).unwrap();
    // Close frame and reset are both on their way before the client reads.
    within(server).await.unwrap();
    let err = within(ws.recv()).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::GoingAway));
    assert_eq!(&*err.close_frame().unwrap().reason, "going");
    assert!(!err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
}

#[tokio::test]
async fn server_sees_the_code_of_a_client_that_closes_and_resets() {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (url, server) = spawn_server(Upgrader::new(), |mut ws| async move {
        go_rx.await.unwrap();
        ws.recv().await.unwrap_err()
    })
    .await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    c.send(OpCode::Close, true, &close_payload(1001, "tab closed"))
        .await;
    reset_on_drop(&c.stream);
    drop(c);
    go_tx.send(()).unwrap();
    let err = within(server).await.unwrap();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::GoingAway));
    assert!(!err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
}

#[tokio::test]
async fn close_codes_and_reasons_on_the_wire() {
    let long = "é".repeat(100); // 200 bytes: cut to 122 on a char boundary
    let (url, server) = spawn_server(Upgrader::new(), move |mut ws| async move {
        // Codes that may not be sent are refused locally; the connection stays usable.
        for code in [
            CloseCode::Abnormal,
            CloseCode::TlsHandshake,
            CloseCode::from(999),
        ] {
            let err = ws.close(code, "").await.unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::InvalidSend(_)),
                "{code}: {err:?}"
            );
        }
        ws.send(Message::text("still open")).await.unwrap();
        let res = ws.close(CloseCode::from(4999), &long).await;
        (res, ws)
    })
    .await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    let f = c.read_frame().await;
    assert_eq!(f.payload, b"still open");
    let close = c.read_close().await;
    assert_eq!(close.close_code(), Some(4999));
    assert_eq!(close.close_reason(), "é".repeat(61));
    c.send(OpCode::Close, true, &close_payload(4999, "")).await;
    c.expect_eof().await;
    within(server).await.unwrap().0.unwrap();
}

#[tokio::test]
async fn close_without_status_sends_an_empty_close() {
    let (url, server) = spawn_server(Upgrader::new(), |mut ws| async move {
        ws.close(CloseCode::NoStatusReceived, "ignored").await
    })
    .await;
    let mut c = RawPeer::handshake(addr_of(&url)).await;
    assert_eq!(c.read_bytes(2).await, [0x88, 0x00]);
    c.send(OpCode::Close, true, b"").await;
    c.expect_eof().await;
    within(server).await.unwrap().unwrap();
}
