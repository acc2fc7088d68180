//! Upgrading inside a hyper 1.x server (`upgrade_hyper`).
#![cfg(feature = "hyper")]
#![allow(missing_docs)]

mod common;

use common::hyper_server::spawn_hyper;
use common::*;
use silverback::{CloseCode, Dialer, Message, OpCode, Upgrader};

#[tokio::test]
async fn hyper_upgrade_and_echo_with_our_dialer() {
    let (addr, mut upgraded) = spawn_hyper(Upgrader::new().subprotocols(["b", "a"])).await;
    let server = tokio::spawn(async move {
        let ws = upgraded.recv().await.unwrap().unwrap();
        assert_eq!(ws.protocol(), Some("b"));
        echo(ws).await.0
    });
    let (mut ws, resp) = within(
        Dialer::new()
            .subprotocols(["a", "b"])
            .connect(&format!("ws://{addr}/ws")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(ws.protocol(), Some("b"));
    for len in [0, 125, 126, 65536] {
        let msg = Message::binary(vec![0xab; len]);
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap(), msg);
    }
    within(ws.close(CloseCode::from(4000), "bye"))
        .await
        .unwrap();
    let err = within(server).await.unwrap();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), Some(CloseCode::Other(4000)));
}

#[tokio::test]
async fn hyper_keeps_eager_bytes_sent_with_the_request() {
    let (addr, mut upgraded) = spawn_hyper(Upgrader::new()).await;
    let mut c = RawPeer::connect(addr).await;
    let mut bytes = upgrade_request(&addr.to_string(), &[]);
    bytes.extend(client_frame(OpCode::Text, true, b"eager"));
    bytes.extend(client_frame(OpCode::Binary, true, &[5; 200]));
    // Request and frames in one write.
    c.write(&bytes).await;
    let resp = c.read_response_head().await;
    assert_eq!(resp.status(), 101);
    let mut ws = within(upgraded.recv()).await.unwrap().unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("eager"));
    assert_eq!(
        within(ws.recv()).await.unwrap(),
        Message::binary(vec![5; 200])
    );
    // The connection works both ways afterwards.
    within(ws.send(Message::text("reply"))).await.unwrap();
    let f = c.read_frame().await;
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OpCode::Text, &b"reply"[..])
    );
    c.send(OpCode::Close, true, &close_payload(1000, "")).await;
    assert!(within(ws.recv()).await.unwrap_err().is_closed());
    assert_eq!(c.read_close().await.close_code(), Some(1000));
}

/// Sends `request` to the hyper server and reads the refusal.
async fn refused(
    upgrader: Upgrader,
    extra: &[(&str, &str)],
    version: &str,
) -> (u16, silverback::proto::http::HeaderMap, String) {
    let (addr, _upgraded) = spawn_hyper(upgrader).await;
    let mut c = RawPeer::connect(addr).await;
    let req = String::from_utf8(upgrade_request(&addr.to_string(), extra))
        .unwrap()
        .replace(
            "Sec-WebSocket-Version: 13",
            &format!("Sec-WebSocket-Version: {version}"),
        );
    c.write(req.as_bytes()).await;
    let (resp, body) = c.read_http_response().await;
    assert!(
        body.ends_with('\n') && body.lines().count() == 1,
        "{body:?}"
    );
    (resp.status().as_u16(), resp.headers().clone(), body)
}

#[tokio::test]
async fn hyper_refuses_cross_origin_with_403() {
    let (status, _, _) = refused(Upgrader::new(), &[("Origin", "http://evil.example")], "13").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn hyper_accepts_cross_origin_with_a_permissive_check() {
    let (addr, mut upgraded) = spawn_hyper(Upgrader::new().check_origin(|_| true)).await;
    let dialer = Dialer::new().header("Origin", "http://evil.example");
    let (mut ws, _) = within(dialer.connect(&format!("ws://{addr}/ws")))
        .await
        .unwrap();
    let mut sws = within(upgraded.recv()).await.unwrap().unwrap();
    within(sws.send(Message::text("hi"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("hi"));
    let server = tokio::spawn(async move { sws.recv().await });
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert!(within(server).await.unwrap().unwrap_err().is_closed());
}

#[tokio::test]
async fn hyper_refuses_version_8_with_426() {
    let (status, headers, _) = refused(Upgrader::new(), &[], "8").await;
    assert_eq!(status, 426);
    assert_eq!(headers["sec-websocket-version"], "13");
}

#[tokio::test]
async fn hyper_refuses_post_with_405() {
    let (addr, _upgraded) = spawn_hyper(Upgrader::new()).await;
    let mut c = RawPeer::connect(addr).await;
    let req = String::from_utf8(upgrade_request(
        &addr.to_string(),
        &[("Content-Length", "0")],
    ))
    .unwrap()
    .replace("GET ", "POST ");
    c.write(req.as_bytes()).await;
    let (resp, body) = c.read_http_response().await;
    assert_eq!(resp.status(), 405);
    assert_eq!(body.lines().count(), 1);
}

#[tokio::test]
async fn hyper_upgrade_with_split_halves() {
    let (addr, mut upgraded) = spawn_hyper(Upgrader::new()).await;
    let (mut ws, _) = within(Dialer::new().connect(&format!("ws://{addr}/ws")))
        .await
        .unwrap();
    let sws = within(upgraded.recv()).await.unwrap().unwrap();
    let (mut rx, mut tx) = sws.split();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        loop {
            match rx.recv().await {
                Ok(_) => n += 1,
                Err(e) => return (n, e),
            }
        }
    });
    for i in 0..50 {
        within(ws.send(Message::text(format!("{i}"))))
            .await
            .unwrap();
    }
    within(tx.send(Message::text("from writer"))).await.unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap(),
        Message::text("from writer")
    );
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    let (n, err) = within(reader).await.unwrap();
    assert_eq!(n, 50);
    assert!(err.is_closed());
}

#[tokio::test]
async fn hyper_server_close_reaches_a_raw_client() {
    let (addr, mut upgraded) = spawn_hyper(Upgrader::new()).await;
    let mut c = RawPeer::connect(addr).await;
    c.write(&upgrade_request(&addr.to_string(), &[])).await;
    assert_eq!(c.read_response_head().await.status(), 101);
    let mut ws = within(upgraded.recv()).await.unwrap().unwrap();
    let server = tokio::spawn(async move { ws.close(CloseCode::GoingAway, "bye").await });
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1001), "bye")
    );
    c.send(OpCode::Close, true, &close_payload(1001, "")).await;
    // The server closes TCP through hyper's Upgraded.
    c.expect_eof().await;
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn hyper_protocol_error_gets_close_then_eof() {
    let (addr, mut upgraded) = spawn_hyper(Upgrader::new()).await;
    let mut c = RawPeer::connect(addr).await;
    c.write(&upgrade_request(&addr.to_string(), &[])).await;
    assert_eq!(c.read_response_head().await.status(), 101);
    let ws = within(upgraded.recv()).await.unwrap().unwrap();
    let server = tokio::spawn(echo(ws));
    c.write(&server_frame(OpCode::Text, true, b"unmasked"))
        .await;
    assert_eq!(c.read_close().await.close_code(), Some(1002));
    c.expect_eof().await;
    let (err, _ws) = within(server).await.unwrap();
    assert!(err.is_protocol());
    assert_eq!(err.close_code(), Some(CloseCode::ProtocolError));
}
