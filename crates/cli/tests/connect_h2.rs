#![allow(missing_docs)]
//! `silverback connect --http2`: over HTTP/2 (h2c) against a hyper HTTP/2
//! server with extended CONNECT written here; `--http2` (prefer) falling
//! back to HTTP/1.1 and `--http2=require` failing against a library
//! HTTP/1.1 server; `silverback bench --http2` against the HTTP/2 server.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::client_side::{run_connect, StdinEnd};
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
