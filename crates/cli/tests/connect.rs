#![allow(missing_docs)]
//! `silverback connect` as a user drives it through pipes: stdin lines go
//! out as text messages (`--binary`: stdin as binary messages), what comes
//! back goes to stdout, EOF closes with 1000, the summary goes to stderr,
//! and the exit status is 0 only for a clean close with 1000/1001/1005.
//! Against `silverback serve` (ws:// and wss:// with certificates made at
//! test time), small in-test servers, and the Python interop server.

mod common;

use std::net::SocketAddr;

use common::client_side::{python_peer, run_connect, PeerServer, Ran, StdinEnd, TlsFiles};
use common::Server;
use silverback::{CloseCode, Message, Upgrader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

fn assert_clean_close_by_us(ran: &Ran) {
    assert!(ran.status.success(), "{}", ran.output());
    assert!(
        ran.last_stderr_line().ends_with("closed by us: code 1000"),
        "{}",
        ran.output()
    );
}

#[tokio::test]
async fn stdin_lines_echoed_to_stdout_then_clean_close() {
    let server = Server::start(&[]).await;
    let ran = run_connect(&[&server.ws_url], b"a\nb\n", StdinEnd::Close).await;
    assert_clean_close_by_us(&ran);
    assert_eq!(ran.stdout_text(), "a\nb\n", "{}", ran.output());
    assert!(
        ran.stderr
            .contains(&format!("connected to {}", server.ws_url)),
        "{}",
        ran.output()
    );
}

#[tokio::test]
async fn binary_stdin_comes_back_byte_for_byte() {
    let server = Server::start(&[]).await;
    // Every byte value, over several 64 KiB reads of stdin.
    let input: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let ran = run_connect(&["--binary", &server.ws_url], &input, StdinEnd::Close).await;
    assert_clean_close_by_us(&ran);
    assert_eq!(ran.stdout.len(), input.len(), "{}", ran.stderr);
    assert!(ran.stdout == input, "binary output differs from the input");
}

/// A one-connection server built with the library: it records the
/// upgrade request's headers, picks subprotocol "b", accepts any origin,
/// then echoes.
async fn recording_server() -> (String, JoinHandle<silverback::proto::http::HeaderMap>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let upgrader = Upgrader::new().subprotocols(["b"]).check_origin(|_| true);
        let incoming = upgrader.read_request(tcp).await.unwrap();
        let headers = incoming.request().headers().clone();
        let mut ws = incoming.upgrade(&upgrader).await.unwrap();
        while let Ok(msg) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
        headers
    });
    (format!("ws://{addr}/ws"), task)
}

#[tokio::test]
async fn headers_subprotocols_and_origin_reach_the_server() {
    let (url, server) = recording_server().await;
    let ran = run_connect(
        &[
            "-H",
            "X-Test: v",
            "--header",
            "Authorization: Bearer t0ken",
            "--subprotocol",
            "a",
            "--subprotocol",
            "b",
            "--origin",
            "https://app.example",
            &url,
        ],
        b"hi\n",
        StdinEnd::Close,
    )
    .await;
    assert_clean_close_by_us(&ran);
    assert_eq!(ran.stdout_text(), "hi\n");
    assert!(ran.stderr.contains("(subprotocol b)"), "{}", ran.output());
    let headers = tokio::time::timeout(common::IO_TIMEOUT, server)
        .await
        .expect("server done")
        .unwrap();
    assert_eq!(headers["x-test"], "v");
    assert_eq!(headers["authorization"], "Bearer t0ken");
    assert_eq!(headers["sec-websocket-protocol"], "a, b");
    assert_eq!(headers["origin"], "https://app.example");
}

#[tokio::test]
async fn malformed_header_argument_is_refused() {
    let ran = run_connect(
        &["-H", "no colon here", "ws://127.0.0.1:9/ws"],
        b"",
        StdinEnd::Close,
    )
    .await;
    assert!(!ran.status.success(), "{}", ran.output());
    assert!(ran.stderr.contains("Name: value"), "{}", ran.output());
}

#[tokio::test]
async fn wss_needs_the_servers_ca_or_insecure() {
    let files = TlsFiles::generate();
    let (cert, key, ca) = (
        files.cert.to_str().unwrap(),
        files.key.to_str().unwrap(),
        files.ca.to_str().unwrap(),
    );
    let server = Server::start(&["--tls-cert", cert, "--tls-key", key]).await;
    assert!(
        server.ws_url.starts_with("wss://127.0.0.1:"),
        "{}",
        server.ws_url
    );

    // Not trusted (webpki roots only): a TLS error, exit 1, nothing sent.
    let ran = run_connect(&[&server.ws_url], b"a\n", StdinEnd::Close).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.output());
    assert!(
        ran.stderr.contains("connect failed: TLS error"),
        "{}",
        ran.output()
    );
    assert!(ran.stdout.is_empty(), "{}", ran.output());

    // Trusting the CA, by IP address and by name; or not verifying.
    let by_name = format!("wss://localhost:{}/ws", server.addr.port());
    for args in [
        vec!["--ca", ca, &server.ws_url],
        vec!["--ca", ca, &by_name],
        vec!["--insecure", &server.ws_url],
    ] {
        let ran = run_connect(&args, b"a\nb\n", StdinEnd::Close).await;
        assert_clean_close_by_us(&ran);
        assert_eq!(ran.stdout_text(), "a\nb\n", "{args:?}\n{}", ran.output());
    }
}

#[tokio::test]
async fn unknown_path_is_a_404_and_exit_1() {
    let server = Server::start(&[]).await;
    let ran = run_connect(&[&server.ws_url_for("/nope")], b"", StdinEnd::Close).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.output());
    assert!(
        ran.stderr
            .contains("connect failed: server answered 404 Not Found"),
        "{}",
        ran.output()
    );
}

#[tokio::test]
async fn unreachable_proxy_is_a_proxy_error() {
    // A port that was just free: nothing listens there.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let proxy = format!("http://127.0.0.1:{port}");
    let server = Server::start(&[]).await;
    let ran = run_connect(&["--proxy", &proxy, &server.ws_url], b"", StdinEnd::Close).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.output());
    assert!(
        ran.stderr.contains("connect failed: proxy error"),
        "{}",
        ran.output()
    );
}

/// A one-connection library server that closes with `code` right after
/// the upgrade.
async fn closing_server(code: CloseCode, reason: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = Upgrader::new().upgrade(tcp).await.unwrap();
        ws.send(Message::text("hello")).await.unwrap();
        let _ = ws.close(code, reason).await;
    });
    addr
}

#[tokio::test]
async fn server_closing_with_1001_is_a_clean_end() {
    let addr = closing_server(CloseCode::GoingAway, "restarting").await;
    let ran = run_connect(&[&format!("ws://{addr}/")], b"", StdinEnd::KeepOpen).await;
    assert!(ran.status.success(), "{}", ran.output());
    assert_eq!(ran.stdout_text(), "hello\n");
    assert!(
        ran.last_stderr_line()
            .ends_with("closed by the server: code 1001, reason \"restarting\""),
        "{}",
        ran.output()
    );
}

#[tokio::test]
async fn server_closing_with_4001_is_exit_1() {
    let python = python_peer().await;
    let mut server = PeerServer::start(&python, "python_server.py", "python websockets").await;
    // The header's value comes back first; "close-me" makes the server
    // close with 4001. Stdin stays open: the server ends the session.
    let ran = run_connect(
        &["-H", "X-Test: from the cli", &server.url_for("/")],
        b"echo me\nclose-me\n",
        StdinEnd::KeepOpen,
    )
    .await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.output());
    assert_eq!(ran.stdout_text(), "from the cli\necho me\n");
    assert!(
        ran.last_stderr_line()
            .ends_with("closed by the server: code 4001, reason \"bye from python\""),
        "{}",
        ran.output()
    );
    assert!(server
        .line_starting_with("closed code=4001")
        .await
        .starts_with("closed code=4001"));
}

/// A raw TCP server for one connection: reads the upgrade request head,
/// answers `302 Found` with `Location: location`, and waits for the client
/// to hang up. Yields the request head, header names in lower case.
async fn redirector(location: String) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let serve = async {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut chunk = [0u8; 4096];
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "end of stream inside the request head");
                head.extend_from_slice(&chunk[..n]);
            }
            let resp =
                format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
            tcp.write_all(resp.as_bytes()).await.unwrap();
            let _ = tcp.read_to_end(&mut Vec::new()).await;
            String::from_utf8(head).unwrap()
        };
        tokio::time::timeout(common::IO_TIMEOUT, serve)
            .await
            .expect("the client hung up")
    });
    (format!("ws://{addr}/old"), task)
}

#[tokio::test]
async fn follow_redirects_drops_credentials_on_another_origin() {
    let args = |url: &str, n: &'static str| -> Vec<String> {
        [
            "--follow-redirects",
            n,
            "-H",
            "Authorization: Bearer t0ken",
            "-H",
            "Cookie: session=abc",
            "-H",
            "X-Test: v",
            "--subprotocol",
            "b",
            url,
        ]
        .map(str::to_owned)
        .to_vec()
    };

    // Default (0): the redirect is the error, with its Location and a hint.
    let (url, redirector_done) = redirector("ws://127.0.0.1:9/new".to_owned()).await;
    let plain_args = ["-H", "X-Test: v", &url];
    let ran = run_connect(&plain_args, b"", StdinEnd::Close).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.output());
    assert!(
        ran.stderr
            .contains("connect failed: server answered 302 Found"),
        "{}",
        ran.output()
    );
    assert!(
        ran.stderr.contains("location: ws://127.0.0.1:9/new"),
        "{}",
        ran.output()
    );
    assert!(
        ran.stderr.contains("--follow-redirects N"),
        "{}",
        ran.output()
    );
    within_io(redirector_done).await;

    // Followed to a server on another port: the credentials stay behind.
    let (target, server) = recording_server().await;
    let (url, redirector_done) = redirector(target).await;
    let owned = args(&url, "1");
    let argv: Vec<&str> = owned.iter().map(String::as_str).collect();
    let ran = run_connect(&argv, b"hi\n", StdinEnd::Close).await;
    assert_clean_close_by_us(&ran);
    assert_eq!(ran.stdout_text(), "hi\n", "{}", ran.output());
    assert!(ran.stderr.contains("(subprotocol b)"), "{}", ran.output());
    let first = within_io(redirector_done).await.to_ascii_lowercase();
    assert!(first.contains("authorization: bearer t0ken"), "{first}");
    assert!(first.contains("cookie: session=abc"), "{first}");
    let headers = within_io(server).await;
    assert!(headers.get("authorization").is_none(), "{headers:?}");
    assert!(headers.get("cookie").is_none(), "{headers:?}");
    assert_eq!(headers["x-test"], "v");
    assert_eq!(headers["sec-websocket-protocol"], "b");
}

#[tokio::test]
async fn follow_redirects_keeps_credentials_on_the_same_origin() {
    // The same host and port: a first connection redirected with a
    // relative Location, the second upgraded.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let upgrader = Upgrader::new().check_origin(|_| true);
        let (tcp, _) = listener.accept().await.unwrap();
        let incoming = upgrader.read_request(tcp).await.unwrap();
        let first = incoming.request().clone();
        let moved = silverback::proto::http::Response::builder()
            .status(307)
            .header("location", "/new")
            .body("moved")
            .unwrap();
        incoming.respond(moved).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let incoming = upgrader.read_request(tcp).await.unwrap();
        let second = incoming.request().clone();
        let mut ws = incoming.upgrade(&upgrader).await.unwrap();
        while let Ok(msg) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
        (first, second)
    });
    let url = format!("ws://{addr}/old");
    let ran = run_connect(
        &[
            "--follow-redirects",
            "1",
            "-H",
            "Authorization: Bearer t0ken",
            &url,
        ],
        b"hi\n",
        StdinEnd::Close,
    )
    .await;
    assert_clean_close_by_us(&ran);
    assert_eq!(ran.stdout_text(), "hi\n", "{}", ran.output());
    let (first, second) = within_io(server).await;
    assert_eq!(first.uri(), "/old");
    assert_eq!(second.uri(), "/new");
    for req in [&first, &second] {
        assert_eq!(req.headers()["authorization"], "Bearer t0ken", "{req:?}");
    }
}

/// Awaits a server task within [`common::IO_TIMEOUT`].
async fn within_io<T>(task: JoinHandle<T>) -> T {
    tokio::time::timeout(common::IO_TIMEOUT, task)
        .await
        .expect("server task done")
        .expect("server task panicked")
}
