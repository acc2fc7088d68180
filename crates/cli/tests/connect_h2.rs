#![allow(missing_docs)]
//! `silverback connect --http2`: over HTTP/2 (h2c) against a hyper HTTP/2
//! server with extended CONNECT written here; `--http2` (prefer) falling
//! back to HTTP/1.1 and `--http2=require` failing against a library
//! HTTP/1.1 server; `silverback bench --http2` against the HTTP/2 server;
//! the library's Dialer (pooled, h2c) and `connect --http2=require` (wss://,
//! ALPN h2) against `silverback serve`.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::client_side::{run_connect, StdinEnd, TlsFiles};
use common::{wait_for_lines, Server};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use silverback::http::{header, Method, Request, Response, StatusCode, Version};
use silverback::Upgrader;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// An HTTP/2-only (h2c) echo server answering RFC 8441 extended CONNECT:
/// the request is translated into the HTTP/1.1 upgrade it stands for and
/// given to `upgrade_hyper`. Sends the version of each request it got.
async fn h2c_echo_server() -> (String, mpsc::UnboundedReceiver<Version>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, tx.clone()));
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .enable_connect_protocol()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (format!("ws://{addr}/ws"), rx, task)
}

async fn handle(
    mut req: Request<Incoming>,
    seen: mpsc::UnboundedSender<Version>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = seen.send(req.version());
    let protocol = req.extensions().get::<hyper::ext::Protocol>();
    if req.method() != Method::CONNECT || protocol.map(|p| p.as_str()) != Some("websocket") {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(resp);
    }
    let mut upgrade = Request::get(req.uri().path())
        .header(header::HOST, req.uri().authority().unwrap().as_str())
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    for (name, value) in req.headers() {
        upgrade.headers_mut().append(name, value.clone());
    }
    *upgrade.extensions_mut() = std::mem::take(req.extensions_mut());
    let upgrader = Upgrader::new()
        .check_origin(|_| true)
        .compression(silverback::DeflateConfig::default());
    match upgrader.upgrade_hyper(&mut upgrade).await {
        Ok((switching, ws)) => {
            tokio::spawn(async move {
                let Ok(mut ws) = ws.await else { return };
                while let Ok(msg) = ws.recv().await {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
            let mut ok = Response::new(Full::new(Bytes::new()));
            if let Some(v) = switching.headers().get(header::SEC_WEBSOCKET_EXTENSIONS) {
                ok.headers_mut()
                    .insert(header::SEC_WEBSOCKET_EXTENSIONS, v.clone());
            }
            Ok(ok)
        }
        Err(refusal) => Ok(refusal),
    }
}

/// A library HTTP/1.1 echo server (Upgrader::upgrade on TCP).
async fn http1_echo_server() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = Upgrader::new().upgrade(tcp).await else {
                    return;
                };
                while let Ok(msg) = ws.recv().await {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (format!("ws://{addr}/ws"), task)
}

#[tokio::test]
async fn http2_require_echoes_over_h2c() {
    let (url, mut seen, server) = h2c_echo_server().await;
    let ran = run_connect(&["--http2=require", &url], b"a\nb\n", StdinEnd::Close).await;
    assert!(ran.status.success(), "{}", ran.output());
    assert_eq!(ran.stdout_text(), "a\nb\n");
    assert!(
        ran.stderr
            .contains(&format!("connected to {url} over HTTP/2")),
        "{}",
        ran.output()
    );
    assert!(
        ran.last_stderr_line().ends_with("closed by us: code 1000"),
        "{}",
        ran.output()
    );
    assert_eq!(seen.recv().await, Some(Version::HTTP_2));
    server.abort();
}

#[tokio::test]
async fn bare_http2_prefers_and_falls_back_to_http1() {
    let (url, server) = http1_echo_server().await;
    let ran = run_connect(&["--http2", &url], b"hello\n", StdinEnd::Close).await;
    assert!(ran.status.success(), "{}", ran.output());
    assert_eq!(ran.stdout_text(), "hello\n");
    assert!(
        ran.stderr.contains(&format!("connected to {url}")),
        "{}",
        ran.output()
    );
    assert!(!ran.stderr.contains("over HTTP/2"), "{}", ran.output());

    let ran = run_connect(&["--http2=require", &url], b"", StdinEnd::Close).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.output());
    assert!(
        ran.stderr
            .contains("connect failed: HTTP/2: the server does not speak HTTP/2"),
        "{}",
        ran.output()
    );
    server.abort();
}

/// `silverback bench --http2`: the connect and echo modes open their
/// WebSockets over one HTTP/2 connection and report it (`transport`).
#[tokio::test]
async fn bench_http2_modes_run_over_h2() {
    let (url, mut seen, server) = h2c_echo_server().await;
    for mode in ["connect", "echo"] {
        let out = tokio::time::timeout(
            common::IO_TIMEOUT,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_silverback"))
                .args(["bench", "--http2", "--json", "--mode", mode, "--conns", "2"])
                .args(["--warmup", "0.1", "--duration", "0.5", "--url", &url])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("bench finished")
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["transport"], "h2", "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        let done = if mode == "connect" {
            "handshakes"
        } else {
            "messages"
        };
        assert!(report[done].as_u64().unwrap() > 0, "{report}");
    }
    assert_eq!(seen.recv().await, Some(Version::HTTP_2));
    server.abort();
}

/// The library's Dialer, pooled over h2c, against `silverback serve`: ten
/// WebSockets on one HTTP/2 connection, permessage-deflate negotiated,
/// every size and both kinds echoed, and serve's log saying HTTP/2.
#[tokio::test]
async fn pooled_dialer_over_h2c_to_silverback_serve() {
    use silverback::{CloseCode, Dialer, H2Pool, Http2, Message};
    let server = Server::start(&[]).await;
    let pool = H2Pool::new();
    let dialer = Dialer::new()
        .no_proxy()
        .compression(silverback::DeflateConfig::default())
        .http2(Http2::Require)
        .http2_pool(pool.clone());
    let mut sockets = Vec::new();
    for _ in 0..10 {
        let (ws, resp) = tokio::time::timeout(common::IO_TIMEOUT, dialer.connect(&server.ws_url))
            .await
            .expect("connect in time")
            .unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert!(ws.get_ref().is_http2());
        assert!(ws.compression().is_some());
        sockets.push(ws);
    }
    assert_eq!(pool.connections(), 1);
    for ws in &mut sockets {
        for n in [0usize, 125, 126, 65536, 200_000] {
            for msg in [
                Message::text("é".repeat(n / 2)),
                Message::binary(vec![(n % 251) as u8; n]),
            ] {
                tokio::time::timeout(common::IO_TIMEOUT, ws.send(msg.clone()))
                    .await
                    .unwrap()
                    .unwrap();
                let back = tokio::time::timeout(common::IO_TIMEOUT, ws.recv())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(back, msg);
            }
        }
    }
    for mut ws in sockets {
        tokio::time::timeout(common::IO_TIMEOUT, ws.close(CloseCode::Normal, "bye"))
            .await
            .unwrap()
            .unwrap();
    }
    let opened = wait_for_lines(&server, "open", 10).await;
    assert!(
        opened.iter().all(|l| l.contains("http=\"2\"")),
        "{opened:#?}"
    );
}

/// `connect --http2=require` to `silverback serve --tls-cert`: ALPN h2.
#[tokio::test]
async fn connect_http2_require_to_silverback_serve_over_wss() {
    let files = TlsFiles::generate();
    let server = Server::start(&[
        "--tls-cert",
        files.cert.to_str().unwrap(),
        "--tls-key",
        files.key.to_str().unwrap(),
    ])
    .await;
    let ca = files.ca.to_str().unwrap();
    let ran = run_connect(
        &["--http2=require", "--ca", ca, &server.ws_url],
        b"a\nb\n",
        StdinEnd::Close,
    )
    .await;
    assert!(ran.status.success(), "{}", ran.output());
    assert_eq!(ran.stdout_text(), "a\nb\n");
    assert!(
        ran.stderr
            .contains(&format!("connected to {} over HTTP/2", server.ws_url)),
        "{}",
        ran.output()
    );
    let opened = wait_for_lines(&server, "open", 1).await;
    assert!(opened[0].contains("http=\"2\""), "{opened:#?}");
}
