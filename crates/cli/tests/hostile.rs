#![allow(missing_docs)]
//! `silverback serve` against more clients than it should take:
//! `--max-connections`.

mod common;

use std::time::Duration;

use common::{http_exchange, plain_request, upgrade_request, HttpResponse, Server, IO_TIMEOUT};
use silverback::{ClientStream, CloseCode, Dialer, Message, WebSocket};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// Opens a WebSocket to `server` and checks one echo.
async fn open(server: &Server) -> WebSocket<ClientStream> {
    let (mut ws, _) = timeout(IO_TIMEOUT, Dialer::new().connect(&server.ws_url))
        .await
        .expect("connect timed out")
        .expect("connect");
    let msg = Message::text("in");
    ws.send(msg.clone()).await.expect("send");
    let echo = timeout(IO_TIMEOUT, ws.recv())
        .await
        .expect("recv timed out")
        .expect("recv");
    assert_eq!(echo, msg);
    ws
}

/// A 503 with `Retry-After: 1`, `Connection: close` and a one-line body,
/// after which the server closes the connection.
async fn assert_busy(resp: &HttpResponse, mut stream: TcpStream, what: &str) {
    assert_eq!(resp.status, 503, "{what}: {resp:?}");
    assert_eq!(resp.header("retry-after"), Some("1"), "{what}: {resp:?}");
    assert_eq!(
        resp.header("connection").map(str::to_ascii_lowercase),
        Some("close".to_owned()),
        "{what}: {resp:?}"
    );
    let body = resp.body_text();
    assert!(
        body.ends_with('\n') && body.trim_end().lines().count() == 1 && !body.trim().is_empty(),
        "{what}: body {body:?}"
    );
    let mut rest = Vec::new();
    let n = timeout(IO_TIMEOUT, stream.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{what}: the server kept the connection open after its 503"))
        .unwrap_or(0);
    assert_eq!(n, 0, "{what}: bytes after the 503: {rest:?}");
}

#[tokio::test]
async fn max_connections_refuses_with_503_and_frees_the_slot_on_close() {
    let server = Server::start(&["--max-connections", "2"]).await;
    let host = server.addr.to_string();
    let first = open(&server).await;
    let mut second = open(&server).await;

    // The third connection, a WebSocket upgrade or a page request alike.
    let (resp, stream, _) =
        http_exchange(server.addr, &upgrade_request("GET", "/ws", &host, &[])).await;
    assert_busy(&resp, stream, "third connection (upgrade)").await;
    let (resp, stream, _) = http_exchange(server.addr, &plain_request("GET", "/", &host)).await;
    assert_busy(&resp, stream, "third connection (demo page)").await;
    let err = timeout(IO_TIMEOUT, Dialer::new().connect(&server.ws_url))
        .await
        .expect("connect timed out")
        .expect_err("a third WebSocket is refused");
    assert!(err.is_handshake(), "expected a handshake error, got {err}");

    // The two open ones are untouched.
    let msg = Message::binary(vec![9u8; 1000]);
    second.send(msg.clone()).await.expect("send");
    assert_eq!(
        timeout(IO_TIMEOUT, second.recv())
            .await
            .expect("recv timed out")
            .expect("recv"),
        msg
    );

    // One closes: its slot is released when the server's task for it ends,
    // which may be a moment after the closing handshake.
    timeout(IO_TIMEOUT, second.close(CloseCode::Normal, "done"))
        .await
        .expect("close timed out")
        .expect("clean close");
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut third = loop {
        match timeout(IO_TIMEOUT, Dialer::new().connect(&server.ws_url))
            .await
            .expect("connect timed out")
        {
            Ok((ws, _)) => break ws,
            Err(e) => {
                assert!(e.is_handshake(), "unexpected error: {e}");
                assert!(
                    Instant::now() < deadline,
                    "still refused {IO_TIMEOUT:?} after a connection closed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let msg = Message::text("third");
    third.send(msg.clone()).await.expect("send");
    assert_eq!(
        timeout(IO_TIMEOUT, third.recv())
            .await
            .expect("recv timed out")
            .expect("recv"),
        msg
    );
    // Full again.
    let (resp, stream, _) =
        http_exchange(server.addr, &upgrade_request("GET", "/ws", &host, &[])).await;
    assert_busy(&resp, stream, "over the limit again").await;
    drop(first);
}

#[tokio::test]
async fn refused_connections_do_not_hold_a_slot() {
    // Refusals (404s, 503s) end their connection and free their slot: many
    // of them in a row leave room for the one connection allowed.
    let server = Server::start(&["--max-connections", "1"]).await;
    let host = server.addr.to_string();
    for _ in 0..20 {
        let (resp, _, _) = http_exchange(server.addr, &plain_request("GET", "/nope", &host)).await;
        // 404 normally; 503 if the previous one's task has not ended yet.
        assert!(matches!(resp.status, 404 | 503), "{resp:?}");
    }
    let deadline = Instant::now() + IO_TIMEOUT;
    let ws = loop {
        match Dialer::new().connect(&server.ws_url).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                assert!(Instant::now() < deadline, "slot never freed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (resp, stream, _) =
        http_exchange(server.addr, &upgrade_request("GET", "/ws", &host, &[])).await;
    assert_busy(&resp, stream, "second connection with a limit of 1").await;
    drop(ws);
}
