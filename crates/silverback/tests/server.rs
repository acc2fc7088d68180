//! The server's opening handshake on a raw TCP stream: upgrade, refusals
//! (read as raw HTTP), routing with `Incoming`, eager bytes, timeouts.
#![allow(missing_docs)]

mod common;

use common::*;
use silverback::proto::http::{Response, StatusCode};
use std::time::Duration;

use silverback::{CloseCode, Dialer, Error, ErrorKind, Message, OpCode, Upgrader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Sends `request` to a server running `upgrader.upgrade`; returns what the
/// server's upgrade returned and the raw response.
async fn exchange(
    upgrader: Upgrader,
    request: Vec<u8>,
) -> (Result<(), Error>, Response<()>, String) {
    let (addr, server) = spawn_accept(move |stream| async move {
        let mut ws = upgrader.upgrade(stream).await?;
        // Accepted: finish cleanly when the client closes.
        match ws.recv().await {
            Err(e) if e.is_closed() => Ok(()),
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    let mut c = RawPeer::connect(addr).await;
    c.write(&request).await;
    let resp = c.read_response_head().await;
    let body = if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        c.send(OpCode::Close, true, &close_payload(1000, "")).await;
        assert_eq!(c.read_close().await.close_code(), Some(1000));
        String::new()
    } else {
        let len: usize = resp.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        String::from_utf8(c.read_bytes(len).await).unwrap()
    };
    // Either way the server closes the connection.
    c.expect_eof().await;
    (within(server).await.unwrap(), resp, body)
}

fn assert_refused(res: &Result<(), Error>, status: u16) {
    let err = res.as_ref().expect_err("the upgrade should be refused");
    assert!(err.is_handshake(), "{err:?}");
    match err.kind() {
        ErrorKind::Rejected(r) => assert_eq!(r.status, status),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

/// A refusal's body is one line of text.
fn assert_one_line(body: &str) {
    assert!(body.ends_with('\n'), "{body:?}");
    assert_eq!(body.lines().count(), 1, "{body:?}");
    assert!(!body.trim().is_empty());
}

fn request(method: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("{method} /ws HTTP/1.1\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

const HOST: (&str, &str) = ("Host", "example.com");
const UPGRADE: (&str, &str) = ("Upgrade", "websocket");
const CONNECTION: (&str, &str) = ("Connection", "Upgrade");
const VERSION: (&str, &str) = ("Sec-WebSocket-Version", "13");
const SKEY: (&str, &str) = ("Sec-WebSocket-Key", KEY);

#[tokio::test]
async fn post_is_refused_with_405() {
    let req = request(
        "POST",
        &[
            HOST,
            UPGRADE,
            CONNECTION,
            VERSION,
            SKEY,
            ("Content-Length", "0"),
        ],
    );
    let (res, resp, body) = exchange(Upgrader::new(), req).await;
    assert_refused(&res, 405);
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    assert_one_line(&body);
}

#[tokio::test]
async fn missing_or_bad_key_is_refused_with_400() {
    for key in [None, Some("not base64!"), Some("c2hvcnQ="), Some("")] {
        let mut h = vec![HOST, UPGRADE, CONNECTION, VERSION];
        if let Some(k) = key {
            h.push(("Sec-WebSocket-Key", k));
        }
        let (res, resp, body) = exchange(Upgrader::new(), request("GET", &h)).await;
        assert_refused(&res, 400);
        assert_eq!(resp.status(), 400, "key {key:?}");
        assert_one_line(&body);
    }
}

#[tokio::test]
async fn version_8_is_refused_with_426() {
    let req = request(
        "GET",
        &[
            HOST,
            UPGRADE,
            CONNECTION,
            ("Sec-WebSocket-Version", "8"),
            SKEY,
        ],
    );
    let (res, resp, body) = exchange(Upgrader::new(), req).await;
    assert_refused(&res, 426);
    assert_eq!(resp.status(), 426);
    assert_eq!(resp.headers()["sec-websocket-version"], "13");
    assert_one_line(&body);
}

#[tokio::test]
async fn cross_origin_is_refused_with_403_by_default() {
    let req = request(
        "GET",
        &[
            HOST,
            UPGRADE,
            CONNECTION,
            VERSION,
            SKEY,
            ("Origin", "http://evil.example"),
        ],
    );
    let (res, resp, body) = exchange(Upgrader::new(), req).await;
    assert_refused(&res, 403);
    assert_eq!(resp.status(), 403);
    assert_one_line(&body);
}

#[tokio::test]
async fn origin_checks_that_accept() {
    // A custom policy that accepts any origin.
    let evil = ("Origin", "http://evil.example");
    let req = request("GET", &[HOST, UPGRADE, CONNECTION, VERSION, SKEY, evil]);
    let (res, resp, _) = exchange(Upgrader::new().check_origin(|_| true), req).await;
    assert_eq!(resp.status(), 101);
    res.unwrap();

    // No Origin header: not a browser, accepted by default.
    let req = request("GET", &[HOST, UPGRADE, CONNECTION, VERSION, SKEY]);
    let (res, resp, _) = exchange(Upgrader::new(), req).await;
    assert_eq!(resp.status(), 101);
    res.unwrap();

    // Same origin as Host (any case): accepted by default.
    let req = request(
        "GET",
        &[
            HOST,
            UPGRADE,
            CONNECTION,
            VERSION,
            SKEY,
            ("Origin", "https://Example.COM"),
        ],
    );
    let (res, resp, _) = exchange(Upgrader::new(), req).await;
    assert_eq!(resp.status(), 101);
    res.unwrap();

    // The policy sees the request head.
    let strict = Upgrader::new().check_origin(|head| head.origin() == Some("http://ok.example"));
    let req = request(
        "GET",
        &[
            HOST,
            UPGRADE,
            CONNECTION,
            VERSION,
            SKEY,
            ("Origin", "http://ok.example"),
        ],
    );
    let (res, resp, _) = exchange(strict.clone(), req).await;
    assert_eq!(resp.status(), 101);
    res.unwrap();
    let req = request("GET", &[HOST, UPGRADE, CONNECTION, VERSION, SKEY]);
    let (res, resp, _) = exchange(strict, req).await;
    assert_refused(&res, 403);
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn dialer_reports_a_refusal_as_a_handshake_error() {
    let (addr, server) =
        spawn_accept(|stream| async move { Upgrader::new().upgrade(stream).await.map(drop) }).await;
    let url = format!("ws://{addr}/ws");
    let err = within(
        Dialer::new()
            .header("Origin", "http://evil.example")
            .connect(&url),
    )
    .await
    .unwrap_err();
    assert!(err.is_handshake(), "{err:?}");
    let resp = err.http_response().expect("the refusal's HTTP response");
    assert_eq!(resp.status(), 403, "{err:?}");
    assert!(
        String::from_utf8_lossy(resp.body()).contains("cross-origin"),
        "{err:?}"
    );
    assert_refused(&within(server).await.unwrap(), 403);
}

#[tokio::test]
async fn incoming_routes_then_responds_404() {
    let upgrader = Upgrader::new();
    let (addr, server) = spawn_accept(move |stream| async move {
        let incoming = upgrader.read_request(stream).await.unwrap();
        assert_eq!(incoming.request().uri().path(), "/nope");
        assert!(incoming.is_upgrade());
        let resp = Response::builder().status(404).body("not found\n").unwrap();
        incoming.respond(resp).await.unwrap();
    })
    .await;
    let mut c = RawPeer::connect(addr).await;
    let mut req = upgrade_request(&addr.to_string(), &[]);
    req.splice(4..7, b"/nope".iter().copied());
    c.write(&req).await;
    let (resp, body) = c.read_http_response().await;
    assert_eq!(resp.status(), 404);
    assert_eq!(body, "not found\n");
    c.expect_eof().await;
    within(server).await.unwrap();
}

#[tokio::test]
async fn incoming_routes_then_upgrades() {
    let upgrader = Upgrader::new();
    let (addr, server) = spawn_accept(move |stream| async move {
        let incoming = upgrader.read_request(stream).await.unwrap();
        assert_eq!(incoming.request().uri().path(), "/ws");
        let ws = incoming.upgrade(&upgrader).await.unwrap();
        echo(ws).await
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&format!("ws://{addr}/ws")))
        .await
        .unwrap();
    ws.send(Message::text("routed")).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("routed"));
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert!(within(server).await.unwrap().0.is_closed());
}

#[tokio::test]
async fn eager_frame_in_the_same_write_as_the_request() {
    let (url, server) =
        spawn_server(Upgrader::new(), |mut ws| async move { ws.recv().await }).await;
    let addr = addr_of(&url);
    let mut c = RawPeer::connect(addr).await;
    let mut bytes = upgrade_request(&addr.to_string(), &[]);
    bytes.extend(client_frame(OpCode::Text, true, b"eager"));
    // Request and frame in one write.
    c.write(&bytes).await;
    assert_eq!(c.read_response_head().await.status(), 101);
    assert_eq!(
        within(server).await.unwrap().unwrap(),
        Message::text("eager")
    );
}

#[tokio::test]
async fn eager_bytes_are_kept_by_incoming_too() {
    let upgrader = Upgrader::new();
    let (addr, server) = spawn_accept(move |stream| async move {
        let incoming = upgrader.read_request(stream).await.unwrap();
        let mut ws = incoming.upgrade(&upgrader).await.unwrap();
        let a = ws.recv().await.unwrap();
        let b = ws.recv().await.unwrap();
        (a, b)
    })
    .await;
    let mut c = RawPeer::connect(addr).await;
    let mut bytes = upgrade_request(&addr.to_string(), &[]);
    bytes.extend(client_frame(OpCode::Text, true, b"one"));
    bytes.extend(client_frame(OpCode::Binary, true, &[2; 300]));
    c.write(&bytes).await;
    assert_eq!(c.read_response_head().await.status(), 101);
    let (a, b) = within(server).await.unwrap();
    assert_eq!(a, Message::text("one"));
    assert_eq!(b, Message::binary(vec![2; 300]));
}

/// Half a request head, then nothing: the upgrade fails with a handshake
/// timeout exactly `handshake_timeout` after it began, without a
/// response, and the server lets go of the transport (in memory, on the
/// paused clock).
#[tokio::test(start_paused = true)]
async fn handshake_timeout_on_a_half_request() {
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(4);
    let (ours, mut client) = tokio::io::duplex(64 * 1024);
    let upgrader = Upgrader::new().handshake_timeout(HANDSHAKE_TIMEOUT);
    let start = Instant::now();
    let server = tokio::spawn(async move { upgrader.upgrade(ours).await.map(drop) });
    within(client.write_all(b"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgr"))
        .await
        .unwrap();
    let err = within(server).await.unwrap().unwrap_err();
    assert_eq!(start.elapsed(), HANDSHAKE_TIMEOUT);
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.is_handshake(), "{err:?}");
    // The server gave up on the connection, without a response.
    assert_eq!(within(client.read(&mut [0; 1])).await.unwrap(), 0);
}

#[tokio::test]
async fn malformed_request_is_refused_with_400() {
    let (addr, server) =
        spawn_accept(|stream| async move { Upgrader::new().upgrade(stream).await.map(drop) }).await;
    let mut c = RawPeer::connect(addr).await;
    c.write(b"GET /ws HTTP/1.1\r\nHost example.com\r\n\r\n")
        .await;
    let (resp, body) = c.read_http_response().await;
    assert_eq!(resp.status(), 400);
    assert_one_line(&body);
    c.expect_eof().await;
    assert_refused(&within(server).await.unwrap(), 400);
}
