#![allow(missing_docs)]
//! Interop, the other way round: silverback's client (the library's
//! `Dialer`) against third-party servers, Python `websockets`
//! (`interop/python_server.py`) and Node `ws` (`interop/node_server.mjs`).
//! Each server echoes, picks subprotocol "b", sends the X-Test header's
//! value first, refuses /private with 401 "go away", and closes with 4001
//! on "close-me". The peers come from `scripts/install-peers.sh`; a missing
//! peer fails the test (never skipped).

mod common;

use common::client_side::{node_peer, python_peer, PeerServer};
use common::IO_TIMEOUT;
use silverback::{CloseCode, Dialer, ErrorKind, Message};
use tokio::time::timeout;

const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 1 << 20];

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    timeout(IO_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {IO_TIMEOUT:?}"))
}

/// All the checks against one running peer server; `bye` is the reason
/// of its 4001 close.
async fn check_peer(mut server: PeerServer, bye: &str) {
    let what = server.what.clone();
    let dialer = Dialer::new().no_proxy();

    // Echo at the length encodings' boundaries; the subprotocol is the
    // server's pick among those offered; the server closes nothing itself
    // and sees our 4000.
    let (mut ws, resp) = within(
        "connect",
        dialer
            .clone()
            .subprotocols(["a", "b"])
            .connect(&server.url_for("/echo")),
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    assert_eq!(resp.status(), 101);
    assert_eq!(ws.protocol(), Some("b"), "{what}");
    for n in SIZES {
        let text: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        within("send", ws.send(Message::text(text.clone())))
            .await
            .unwrap();
        let got = within("echo", ws.recv()).await.unwrap();
        assert!(got == Message::text(text), "{what}: text echo of {n} bytes");
        let bin: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        within("send", ws.send(Message::binary(bin.clone())))
            .await
            .unwrap();
        let got = within("echo", ws.recv()).await.unwrap();
        assert!(
            got == Message::binary(bin),
            "{what}: binary echo of {n} bytes"
        );
    }
    within("close", ws.close(CloseCode::from(4000), "client done"))
        .await
        .unwrap_or_else(|e| panic!("{what}: client close 4000: {e}"));
    assert_eq!(
        server.line_starting_with("closed").await,
        "closed code=4000 reason=client done",
        "{what}"
    );

    // A request header reaches the server: it sends the value back first.
    let (mut ws, _) = within(
        "connect",
        dialer
            .clone()
            .header("X-Test", "header value 42")
            .connect(&server.url_for("/headers")),
    )
    .await
    .unwrap();
    assert_eq!(ws.protocol(), None, "{what}: nothing offered, none chosen");
    assert_eq!(
        within("first message", ws.recv()).await.unwrap(),
        Message::text("header value 42"),
        "{what}"
    );

    // Server-initiated close with 4001 and its reason.
    within("send", ws.send(Message::text("close-me")))
        .await
        .unwrap();
    let end = within("close from the server", ws.recv())
        .await
        .unwrap_err();
    assert!(
        matches!(end.kind(), ErrorKind::Closed { by_us: false, .. }),
        "{what}: {end:?}"
    );
    assert_eq!(end.close_code(), Some(CloseCode::from(4001)), "{what}");
    assert_eq!(end.close_frame().unwrap().reason, bye, "{what}");
    // Our reply echoed its code.
    assert_eq!(
        server.line_starting_with("closed").await,
        "closed code=4001 reason=",
        "{what}"
    );

    // A refused upgrade: status, header and body surface in the error.
    let err = within("connect", dialer.connect(&server.url_for("/private")))
        .await
        .unwrap_err();
    assert!(err.is_handshake(), "{what}: {err:?}");
    let resp = err
        .http_response()
        .unwrap_or_else(|| panic!("{what}: no HTTP response in {err:?}"));
    assert_eq!(resp.status(), 401, "{what}");
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Basic realm=\"interop\"",
        "{what}"
    );
    assert_eq!(resp.body().as_ref(), b"go away", "{what}");
    assert!(err.to_string().contains("go away"), "{what}: {err}");
}

#[tokio::test]
async fn against_python_websockets_server() {
    let python = python_peer().await;
    let server = PeerServer::start(&python, "python_server.py", "python websockets").await;
    check_peer(server, "bye from python").await;
}

#[tokio::test]
async fn against_node_ws_server() {
    let server = PeerServer::start(&node_peer(), "node_server.mjs", "node ws").await;
    check_peer(server, "bye from node").await;
}
