#![allow(missing_docs)]
//! `silverback serve` over HTTP/2 on its one port: prior-knowledge h2c
//! driven by an independent client, Python's `h2` package speaking RFC 8441
//! extended CONNECT by hand (`interop/h2_ws_client.py`), and headless
//! Chromium opening `wss://` over ALPN h2, to `serve` and to an axum
//! Router upgrading with `silverback::axum::WebSocketUpgrade`. The peers come from
//! `scripts/install-peers.sh`; a missing one fails the test.

#[path = "../../silverback/tests/common/axum_app.rs"]
mod axum_app;
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::chromium;
use common::client_side::TlsFiles;
use common::{
    is_log_message, log_lines, repo_root, run_bounded, wait_for_lines, DrainReport, Running, Server,
};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;

const INSTALL_HINT: &str = "run scripts/install-peers.sh";
/// Bound on one run of the Python client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// `.peers/venv/bin/python interop/h2_ws_client.py ARGS...`, checked to
/// have the `h2` package.
fn h2_client(args: &[&str]) -> Command {
    let root = repo_root();
    let python: PathBuf = root.join(".peers/venv/bin/python");
    assert!(
        python.is_file(),
        "{} not found; {INSTALL_HINT}",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.arg(root.join("interop/h2_ws_client.py")).args(args);
    cmd
}

/// Runs the client to completion; panics with its output and the server
/// log unless it printed PASS.
async fn run_client(server: &Server, args: &[&str]) -> String {
    let out = run_bounded(h2_client(args), CLIENT_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("cannot run the h2 client: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success() && out.stdout.lines().any(|l| l == "PASS"),
        "h2 client {args:?} failed:\n{}\n--- server log ---\n{}",
        out.output(),
        server.log()
    );
    out.stdout
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
}

#[tokio::test]
async fn h2c_100_websockets_on_one_connection_closed_every_way() {
    let server = Server::start(&[]).await;
    let addr = server.addr.to_string();
    let out = run_client(
        &server,
        &[&addr, "echo", "--streams", "100", "--close", "mixed"],
    )
    .await;
    assert!(
        out.contains("ok: 100 WebSockets open on one HTTP/2 connection"),
        "{out}"
    );
    let opened = wait_for_lines(&server, "open", 100).await;
    assert!(
        opened.iter().all(|l| field(l, "http") == Some("2")),
        "{opened:#?}"
    );
    // How each ended, in the server's words: 25 closed by the client
    // (1000), 25 failed by the server (1007, invalid UTF-8), 25 reset and
    // 25 dropped with the connection (1006).
    let closed = wait_for_lines(&server, "closed", 25).await;
    assert!(
        closed
            .iter()
            .all(|l| field(l, "by") == Some("peer") && field(l, "code") == Some("1000")),
        "{closed:#?}"
    );
    let ended = wait_for_lines(&server, "closed unexpectedly", 75).await;
    let count = |code: &str| {
        ended
            .iter()
            .filter(|l| field(l, "code") == Some(code))
            .count()
    };
    assert_eq!(
        (closed.len(), count("1007"), count("1006")),
        (25, 25, 50),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn h2c_bad_input_is_refused_and_other_streams_go_on() {
    let server = Server::start(&[]).await;
    run_client(&server, &[&server.addr.to_string(), "bad"]).await;
    let log = server.log();
    for status in ["400", "501", "426"] {
        assert!(
            log_lines(&log, "upgrade refused")
                .iter()
                .any(|l| l.contains(&format!("status={status} "))),
            "no refusal with {status}:\n{log}"
        );
    }
}

#[tokio::test]
async fn h2c_streams_over_the_limit_are_refused() {
    let server = Server::start(&["--h2-max-streams", "8"]).await;
    run_client(
        &server,
        &[&server.addr.to_string(), "limit", "--streams", "8"],
    )
    .await;
}

#[tokio::test]
async fn h2c_plain_requests_and_http1_on_the_same_port() {
    let server = Server::start(&[]).await;
    run_client(&server, &[&server.addr.to_string(), "get"]).await;
    // HTTP/1.1 on the same port, same server.
    let (mut ws, _) = silverback::Dialer::new()
        .connect(&server.ws_url)
        .await
        .unwrap();
    ws.send(silverback::Message::text("h1")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), silverback::Message::text("h1"));
    ws.close(silverback::CloseCode::Normal, "").await.unwrap();
    let opened = wait_for_lines(&server, "open", 2).await;
    let versions: Vec<_> = opened.iter().map(|l| field(l, "http")).collect();
    assert_eq!(versions, [Some("2"), Some("1.1")], "{opened:#?}");
}

/// The server tells HTTP/2 from HTTP/1.1 by the first bytes, however they
/// are cut: a preface sent in pieces is HTTP/2 (the server's SETTINGS
/// come back), and an HTTP/1.1 request that starts like the preface
/// (`P...`) is HTTP/1.1, the bytes already read included.
#[tokio::test]
async fn h2c_preface_in_pieces_and_http1_that_starts_like_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[]).await;
    const LIMIT: Duration = Duration::from_secs(10);

    let mut h2 = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    h2.set_nodelay(true).unwrap();
    for piece in [&b"PRI * HT"[..], b"TP/2.0\r\n\r", b"\nSM\r\n\r\n"] {
        h2.write_all(piece).await.unwrap();
        h2.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    // An empty SETTINGS frame: the server answers with its own first.
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(LIMIT, h2.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[3], 4, "a SETTINGS frame first: {head:?}");

    let mut h1 = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    h1.set_nodelay(true).unwrap();
    h1.write_all(b"P").await.unwrap();
    h1.flush().await.unwrap();
    tokio::task::yield_now().await;
    h1.write_all(b"OST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, h1.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 405 "),
        "POST / over HTTP/1.1: {answer}"
    );
}

#[tokio::test]
async fn h2c_pubsub_raw_mode() {
    // One subscriber of topic t, publishing to it: it gets its own
    // messages back, through the hub, over its HTTP/2 stream.
    let server = Server::start(&["--pubsub", "--max-message-size", "100000"]).await;
    run_client(
        &server,
        &[
            &server.addr.to_string(),
            "echo",
            "--streams",
            "1",
            "--path",
            "/ws?topic=t",
        ],
    )
    .await;
    let opened = wait_for_lines(&server, "open", 1).await;
    assert_eq!(field(&opened[0], "http"), Some("2"), "{opened:#?}");
    assert_eq!(field(&opened[0], "mode"), Some("raw"), "{opened:#?}");
    let closed = wait_for_lines(&server, "closed", 1).await;
    assert_eq!(field(&closed[0], "code"), Some("1000"), "{closed:#?}");
}

#[tokio::test]
async fn h2c_shutdown_closes_every_stream_with_going_away() {
    let mut server = Server::start(&["--shutdown-timeout", "5"]).await;
    let mut client = Running::spawn(h2_client(&[
        &server.addr.to_string(),
        "shutdown",
        "--streams",
        "20",
    ]))
    .unwrap_or_else(|e| panic!("cannot run the h2 client: {e}; {INSTALL_HINT}"));
    assert!(
        client.wait_for_line("READY", CLIENT_TIMEOUT).await,
        "the client ended before READY:\n{}",
        client.finish(CLIENT_TIMEOUT).await.output()
    );
    server.terminate().await;
    let out = client.finish(CLIENT_TIMEOUT).await;
    assert!(
        out.status.success()
            && out.stdout.contains("ok: 20 closed by the server with 1001")
            && out
                .stdout
                .contains("ok: GOAWAY NO_ERROR, the open streams completed"),
        "{}\n--- server log ---\n{}",
        out.output(),
        server.log()
    );
    assert!(server.wait_exit().await.success());
    let report = DrainReport::from_log(&server.log());
    assert_eq!(
        (report.open, report.clean, report.forced),
        (20, 20, 0),
        "{}",
        server.log()
    );
}

// ----- Chromium over TLS + ALPN h2 -------------------------------------------

/// Bound on the whole browser run, from launch to the page's report.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// The page: a `fetch` of the server's page opens the HTTP/2 connection
/// (Chromium carries a WebSocket over HTTP/2 only on a connection already
/// open to that origin whose SETTINGS allowed extended CONNECT), then the
/// WebSocket echoes texts and binaries of several sizes and closes.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>silverback h2 browser test</title></head>
<body><pre id="log"></pre>
<script>
"use strict";
const HTTPS_BASE = "__HTTPS_BASE__";
const WSS_URL = "__WSS_URL__";
const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20];
const lines = [];
function log(s) { lines.push(s); document.getElementById("log").textContent = lines.join("\n"); }
function check(cond, what) { if (!cond) throw new Error(what); }
function withTimeout(p, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timed out: " + what)), 15000))]);
}
async function run() {
  // Same credentials mode as a WebSocket, so that Chromium pools them together.
  await withTimeout(fetch(HTTPS_BASE + "/", { mode: "no-cors", credentials: "include" }), "fetch");
  log("ok: page fetched");
  const ws = new WebSocket(WSS_URL);
  ws.binaryType = "arraybuffer";
  const queue = [], waiters = [];
  ws.onmessage = (e) => (waiters.length ? waiters.shift()(e.data) : queue.push(e.data));
  const next = (what) => withTimeout(new Promise((res) => (queue.length ? res(queue.shift()) : waiters.push(res))), what);
  const closed = new Promise((res) => (ws.onclose = res));
  await withTimeout(new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error("WebSocket error before open")); }), "open");
  log("extensions: " + ws.extensions);
  for (const n of SIZES) {
    let text = "";
    while (text.length < n) text += "h\u00e9llo " + text.length + " ";
    text = text.slice(0, n);
    ws.send(text);
    check((await next("text " + n)) === text, "text echo differs at " + n);
    const bin = new Uint8Array(n);
    for (let i = 0; i < n; i++) bin[i] = (i * 31) & 0xff;
    ws.send(bin);
    const got = new Uint8Array(await next("binary " + n));
    check(got.length === n && got.every((b, i) => b === bin[i]), "binary echo differs at " + n);
  }
  log("ok: echo of " + SIZES.length + " sizes, text and binary");
  ws.close(1000, "browser done");
  const ev = await withTimeout(closed, "close");
  log(`close: code=${ev.code} clean=${ev.wasClean}`);
  check(ev.code === 1000 && ev.wasClean, "unclean close");
}
run()
  .then(() => log("done"), (e) => log("FAIL: " + e.message))
  .finally(() => fetch("/result", { method: "POST", body: lines.join("\n") }));
</script></body></html>
"#;

#[tokio::test]
async fn chromium_wss_over_http2() {
    chromium::require();
    let tls = TlsFiles::generate();
    let cert = tls.cert.to_str().unwrap();
    let key = tls.key.to_str().unwrap();
    let server = Server::start(&["--any-origin", "--tls-cert", cert, "--tls-key", key]).await;
    let (report, netlog) =
        chromium_run(&format!("https://{}", server.addr), &server.ws_url, &|| {
            format!("--- server log ---\n{}", server.log())
        })
        .await;
    let context = format!(
        "page report:\n{report}\n--- server log ---\n{}",
        server.log()
    );
    assert_page_passed(&report, &context);
    // The server's record: the WebSocket was a stream of the HTTP/2
    // connection, with permessage-deflate, closed by the browser with 1000.
    let opened = wait_for_lines(&server, "open", 1).await;
    assert_eq!(field(&opened[0], "http"), Some("2"), "{context}");
    assert!(opened[0].contains("permessage-deflate"), "{context}");
    let closed = wait_for_lines(&server, "closed", 1).await;
    assert!(
        field(&closed[0], "by") == Some("peer") && field(&closed[0], "code") == Some("1000"),
        "{context}"
    );
    assert!(is_log_message(&closed[0], "closed"));
    // Chromium's side: it sent the extended CONNECT on an HTTP/2 session.
    assert!(
        netlog.contains("HTTP2_SESSION_SEND_HEADERS") && netlog.contains(":protocol: websocket"),
        "no extended CONNECT in Chromium's NetLog ({} bytes)",
        netlog.len()
    );
}

/// Asserts that the page's `report` says it passed every step (`context`
/// shown on failure).
fn assert_page_passed(report: &str, context: &str) {
    assert!(!report.contains("FAIL"), "{context}");
    for line in [
        "ok: page fetched",
        "ok: echo of 7 sizes, text and binary",
        "close: code=1000 clean=true",
        "done",
    ] {
        assert!(
            report.lines().any(|l| l == line),
            "missing {line:?}: {context}"
        );
    }
}

/// Loads the page in Chromium (certificate errors ignored); gives its
/// report and what Chromium's NetLog holds.
async fn chromium_run(
    https_base: &str,
    wss_url: &str,
    context: &dyn Fn() -> String,
) -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_url = format!("http://{}/", listener.local_addr().unwrap());
    let page = PAGE
        .replace("__HTTPS_BASE__", https_base)
        .replace("__WSS_URL__", wss_url);
    let (tx, mut results) = mpsc::unbounded_channel();
    let responder = tokio::spawn(chromium::serve_page(listener, page, tx));
    let dir = common::client_side::TempDir::new("netlog");
    let netlog = dir.0.join("netlog.json");
    let netlog_arg = format!("--log-net-log={}", netlog.display());
    let run = chromium::run_page(
        &page_url,
        &["--ignore-certificate-errors", &netlog_arg],
        &mut results,
        BROWSER_TIMEOUT,
    )
    .await;
    responder.abort();
    let report = run.report.unwrap_or_else(|| {
        panic!(
            "no report from the page within {BROWSER_TIMEOUT:?}\n--- chromium stderr ---\n{}\n{}",
            run.stderr,
            context()
        )
    });
    (report, std::fs::read_to_string(&netlog).unwrap_or_default())
}

#[tokio::test]
async fn chromium_wss_over_http2_to_an_axum_router() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    chromium::require();
    let upgrader = silverback::Upgrader::new()
        .check_origin(|_| true)
        .compression(silverback::DeflateConfig::default());
    let (app, mut seen) = axum_app::echo_router(upgrader, silverback::Shutdown::new());
    // axum::serve has no TLS: the Router as a hyper service, behind rustls
    // with ALPN h2, on hyper-util's HTTP/1.1 + HTTP/2 server with extended
    // CONNECT on.
    let tls = TlsFiles::generate();
    let mut config = Arc::unwrap_or_clone(
        silverback::tls::server_config_from_pem_files(&tls.cert, &tls.key).unwrap(),
    );
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = silverback::tls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http2().enable_connect_protocol();
                let _ = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(tls),
                        TowerToHyperService::new(app),
                    )
                    .await;
            });
        }
    });
    let (report, netlog) = chromium_run(
        &format!("https://{addr}"),
        &format!("wss://{addr}/ws"),
        &|| String::new(),
    )
    .await;
    server.abort();
    assert_page_passed(&report, &report);
    let seen = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.version, silverback::http::Version::HTTP_2, "{report}");
    assert!(seen.compressed, "no permessage-deflate");
    let end = seen.end.expect("ended");
    assert!(
        end.is_clean() && end.close_code() == silverback::CloseCode::Normal,
        "{end:?}"
    );
    assert!(
        netlog.contains(":protocol: websocket"),
        "no extended CONNECT in Chromium's NetLog"
    );
}
