#![allow(missing_docs)]
//! `silverback serve` as a user sees it: the listening line, routing (the
//! WebSocket path, the demo page, 404), the upgrade refusals (403, 405, 426),
//! SIGINT, and idle connections parked and woken.

mod common;

use common::{
    client_frame, http_exchange, plain_request, read_frame, run_bounded, upgrade_request,
    wait_for_lines, Frame, Server, EXIT_TIMEOUT, IO_TIMEOUT, SAMPLE_ACCEPT,
};
use silverback::{CloseCode, Dialer, Message};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

#[tokio::test]
async fn listening_line_honours_addr_and_path() {
    let server = Server::start(&["--path", "/echo"]).await;
    assert!(
        server.addr.ip().is_loopback(),
        "listening on {}",
        server.addr
    );
    assert_ne!(
        server.addr.port(),
        0,
        "port 0 must be resolved to the bound port"
    );
    assert_eq!(server.path, "/echo");
    assert_eq!(
        server.ws_url,
        format!("ws://127.0.0.1:{}/echo", server.addr.port())
    );

    // An explicit port is used as given: take one the kernel just handed
    // out, free it, and ask the server for it.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe bind");
        probe.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let server = Server::spawn(&["--addr", &addr, "--path", "/a/b"]).await;
    assert_eq!(server.ws_url, format!("ws://{addr}/a/b"));
    assert_eq!(server.addr.port(), port);
}

#[tokio::test]
async fn upgrade_on_configured_path_with_raw_handshake() {
    let server = Server::start(&["--path", "/echo"]).await;
    let host = server.addr.to_string();

    let (resp, mut stream, mut pending) =
        http_exchange(server.addr, &upgrade_request("GET", "/echo", &host, &[])).await;
    assert_eq!(resp.status, 101, "upgrade on /echo: {resp:?}");
    assert_eq!(resp.header("sec-websocket-accept"), Some(SAMPLE_ACCEPT));
    assert!(resp
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(resp
        .header("connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")));
    assert_eq!(resp.header("sec-websocket-protocol"), None);

    // Echo of a text and a 300-byte binary message (16-bit length), a ping,
    // then the closing handshake, all with hand-made frames.
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    stream
        .write_all(&client_frame(TEXT, b"Hello", mask))
        .await
        .unwrap();
    let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    stream
        .write_all(&client_frame(BINARY, &big, mask))
        .await
        .unwrap();
    stream
        .write_all(&client_frame(PING, b"hi", mask))
        .await
        .unwrap();
    let expected = [
        Frame {
            fin: true,
            opcode: TEXT,
            payload: b"Hello".to_vec(),
        },
        Frame {
            fin: true,
            opcode: BINARY,
            payload: big,
        },
        Frame {
            fin: true,
            opcode: PONG,
            payload: b"hi".to_vec(),
        },
    ];
    for want in expected {
        assert_eq!(read_frame(&mut stream, &mut pending).await, want);
    }
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"done");
    stream
        .write_all(&client_frame(CLOSE, &close, mask))
        .await
        .unwrap();
    let answer = read_frame(&mut stream, &mut pending).await;
    assert_eq!(
        answer.opcode, CLOSE,
        "expected the Close echoed, got {answer:?}"
    );
    assert_eq!(
        &answer.payload[..2],
        &4000u16.to_be_bytes(),
        "close code echoed"
    );
    // Then the server closes TCP.
    let mut rest = Vec::new();
    let eof = timeout(
        IO_TIMEOUT,
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest),
    )
    .await;
    assert!(
        matches!(eof, Ok(Ok(_))),
        "server did not close TCP after the Close: {eof:?}"
    );
    assert!(
        rest.is_empty() && pending.is_empty(),
        "bytes after the Close"
    );

    // The default path is not served when another one is configured.
    let (resp, _, _) = http_exchange(server.addr, &upgrade_request("GET", "/ws", &host, &[])).await;
    assert_eq!(
        resp.status, 404,
        "upgrade on /ws with --path /echo: {resp:?}"
    );
}

#[tokio::test]
async fn library_client_echo_on_configured_path() {
    let server = Server::start(&["--path", "/echo"]).await;
    let (mut ws, resp) = timeout(IO_TIMEOUT, Dialer::new().connect(&server.ws_url))
        .await
        .expect("connect timed out")
        .expect("connect");
    assert_eq!(resp.status(), 101);
    for msg in [
        Message::text(""),
        Message::text("héllo"),
        Message::binary(vec![0u8, 255, 1, 2]),
        Message::binary(vec![7u8; 70_000]),
    ] {
        ws.send(msg.clone()).await.expect("send");
        let got = timeout(IO_TIMEOUT, ws.recv())
            .await
            .expect("recv timed out")
            .expect("recv");
        assert_eq!(got, msg);
    }
    timeout(IO_TIMEOUT, ws.close(CloseCode::Other(4000), "bye"))
        .await
        .expect("close timed out")
        .expect("clean closing handshake");

    let err = timeout(IO_TIMEOUT, Dialer::new().connect(&server.ws_url_for("/ws")))
        .await
        .expect("connect timed out")
        .expect_err("/ws is not the WebSocket path");
    assert!(err.is_handshake(), "expected a handshake error, got {err}");
}

#[tokio::test]
async fn demo_page_at_root() {
    let server = Server::start(&["--path", "/echo"]).await;
    let (resp, _, _) = http_exchange(
        server.addr,
        &plain_request("GET", "/", &server.addr.to_string()),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.header("content-type")
            .is_some_and(|v| v.starts_with("text/html")),
        "{resp:?}"
    );
    let body = resp.body_text();
    assert!(body.contains("silverback"), "demo page: {body}");
    assert!(
        body.contains("\"/echo\""),
        "the demo page must use the configured path: {body}"
    );
    assert!(
        !body.contains("__WS_PATH__"),
        "placeholder left in the page"
    );
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = Server::start(&[]).await;
    let host = server.addr.to_string();
    for path in ["/nope", "/ws/", "/index.html"] {
        let (resp, _, _) = http_exchange(server.addr, &plain_request("GET", path, &host)).await;
        assert_eq!(resp.status, 404, "GET {path}: {resp:?}");
    }
    // An upgrade request elsewhere than the WebSocket path, / included.
    for path in ["/nope", "/"] {
        let (resp, _, _) =
            http_exchange(server.addr, &upgrade_request("GET", path, &host, &[])).await;
        assert_eq!(resp.status, 404, "upgrade on {path}: {resp:?}");
    }
}

#[tokio::test]
async fn cross_origin_refused_by_default() {
    let server = Server::start(&[]).await;
    let host = server.addr.to_string();
    let evil = upgrade_request("GET", "/ws", &host, &["Origin: http://evil.example"]);
    let (resp, _, _) = http_exchange(server.addr, &evil).await;
    assert_eq!(resp.status, 403, "cross-origin upgrade: {resp:?}");

    // Same origin, and no Origin at all (not a browser), are accepted.
    let same = format!("Origin: http://{host}");
    let (resp, _, _) =
        http_exchange(server.addr, &upgrade_request("GET", "/ws", &host, &[&same])).await;
    assert_eq!(resp.status, 101, "same-origin upgrade: {resp:?}");
    let (resp, _, _) = http_exchange(server.addr, &upgrade_request("GET", "/ws", &host, &[])).await;
    assert_eq!(resp.status, 101, "upgrade without Origin: {resp:?}");
}

#[tokio::test]
async fn any_origin_accepts_cross_origin() {
    let server = Server::start(&["--any-origin"]).await;
    let host = server.addr.to_string();
    let evil = upgrade_request("GET", "/ws", &host, &["Origin: http://evil.example"]);
    let (resp, _, _) = http_exchange(server.addr, &evil).await;
    assert_eq!(
        resp.status, 101,
        "cross-origin upgrade with --any-origin: {resp:?}"
    );
    assert_eq!(resp.header("sec-websocket-accept"), Some(SAMPLE_ACCEPT));

    // And the connection works: the library's client with that Origin.
    let (mut ws, _) = timeout(
        IO_TIMEOUT,
        Dialer::new()
            .header("origin", "http://evil.example")
            .connect(&server.ws_url),
    )
    .await
    .expect("connect timed out")
    .expect("cross-origin connect with --any-origin");
    ws.send(Message::text("from elsewhere")).await.unwrap();
    let got = timeout(IO_TIMEOUT, ws.recv())
        .await
        .expect("recv timed out")
        .unwrap();
    assert_eq!(got, Message::text("from elsewhere"));
    timeout(IO_TIMEOUT, ws.close(CloseCode::Normal, ""))
        .await
        .expect("close timed out")
        .unwrap();
}

#[tokio::test]
async fn non_get_on_ws_path_is_405() {
    let server = Server::start(&[]).await;
    let host = server.addr.to_string();
    for method in ["POST", "PUT", "DELETE"] {
        let (resp, _, _) =
            http_exchange(server.addr, &upgrade_request(method, "/ws", &host, &[])).await;
        assert_eq!(resp.status, 405, "{method} /ws: {resp:?}");
        assert_eq!(resp.header("allow"), Some("GET"), "{method} /ws: {resp:?}");
    }
}

#[tokio::test]
async fn unsupported_version_is_426() {
    let server = Server::start(&[]).await;
    let host = server.addr.to_string();
    let req = upgrade_request("GET", "/ws", &host, &["Sec-WebSocket-Version: 8"]);
    let (resp, _, _) = http_exchange(server.addr, &req).await;
    assert_eq!(resp.status, 426, "{resp:?}");
    assert_eq!(resp.header("sec-websocket-version"), Some("13"), "{resp:?}");
}

#[tokio::test]
async fn sigint_exits_with_status_0() {
    let mut server = Server::start(&[]).await;
    server.interrupt().await;
    let status = server.wait_exit().await;
    assert!(
        status.success(),
        "exit after SIGINT: {status}; stderr:\n{}",
        server.log()
    );
}

#[tokio::test]
async fn sigint_exits_with_status_0_with_an_open_connection() {
    let mut server = Server::start(&[]).await;
    let (mut ws, _) = timeout(IO_TIMEOUT, Dialer::new().connect(&server.ws_url))
        .await
        .expect("connect timed out")
        .expect("connect");
    ws.send(Message::text("ping")).await.unwrap();
    let got = timeout(IO_TIMEOUT, ws.recv())
        .await
        .expect("recv timed out")
        .unwrap();
    assert_eq!(got, Message::text("ping"));

    server.interrupt().await;
    let status = server.wait_exit().await;
    assert!(
        status.success(),
        "exit after SIGINT: {status}; stderr:\n{}",
        server.log()
    );
    // The connection does not outlive the process.
    let end = timeout(IO_TIMEOUT, ws.recv())
        .await
        .expect("recv timed out");
    assert!(
        end.is_err(),
        "connection still open after the server exited: {end:?}"
    );
}

#[tokio::test]
async fn path_without_slash_is_an_error() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_silverback"));
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--path", "ws"]);
    let finished = run_bounded(cmd, EXIT_TIMEOUT)
        .await
        .expect("running silverback");
    assert!(!finished.status.success(), "{}", finished.output());
    assert!(
        finished.stderr.contains("--path must start with '/'"),
        "{}",
        finished.output()
    );
}

/// How many connections `/stats` counts as parked.
async fn parked(server: &Server) -> serde_json::Value {
    let host = server.addr.to_string();
    let (resp, _, _) = http_exchange(server.addr, &plain_request("GET", "/stats", &host)).await;
    let stats: serde_json::Value = serde_json::from_slice(&resp.body).expect("/stats is JSON");
    stats["parked"].clone()
}

/// Echo connections idle for a while are parked (held without a task) and
/// woken by what they receive: every message is still echoed, in order,
/// and closes are still clean, whichever side a parked connection is on.
#[tokio::test]
async fn idle_echo_connections_are_parked_and_woken_by_messages() {
    // Each park is logged at debug ("parked"): the event the test waits on.
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--park-new-after",
        "0.001",
        "--park-after",
        "0.001",
    ];
    let server = Server::spawn_logging(&args, "info,silverback::serve=debug").await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (ws, _) = timeout(IO_TIMEOUT, Dialer::new().connect(&server.ws_url))
            .await
            .expect("connect timed out")
            .expect("connect");
        clients.push(ws);
    }
    // Silent since they opened: parked after --park-new-after.
    wait_for_lines(&server, "parked", 3).await;
    assert_eq!(parked(&server).await, 3);
    for (i, ws) in clients.iter_mut().enumerate() {
        for round in 0..3 {
            let msg = Message::text(format!("{i}.{round}"));
            ws.send(msg.clone()).await.expect("send");
            let got = timeout(IO_TIMEOUT, ws.recv())
                .await
                .expect("recv timed out");
            assert_eq!(got.expect("echo"), msg);
        }
        ws.send(Message::binary(vec![7u8; 100_000]))
            .await
            .expect("send");
        let got = timeout(IO_TIMEOUT, ws.recv())
            .await
            .expect("recv timed out");
        assert_eq!(got.expect("echo").len(), 100_000);
    }
    // Idle again: parked again, each at least once more.
    wait_for_lines(&server, "parked", 6).await;
    for mut ws in clients {
        timeout(IO_TIMEOUT, ws.close(CloseCode::Normal, "bye"))
            .await
            .expect("close timed out")
            .expect("a parked connection answers the Close");
    }
    // Each Close was answered by a connection woken for it.
    assert_eq!(parked(&server).await, 0);
}
