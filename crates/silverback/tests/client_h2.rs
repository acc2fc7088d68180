//! The Dialer over HTTP/2 (RFC 8441 extended CONNECT): against a hyper
//! HTTP/2 server written here (`enable_connect_protocol`, answering the
//! CONNECT with 200 and running silverback's server WebSocket over
//! `hyper::upgrade::on`), over h2c and TLS with ALPN `h2`. Echo of every
//! size and both kinds with and without permessage-deflate; 100 WebSockets
//! over one pooled connection closed in every way (client close, server
//! close, the server dropping its stream, the whole connection dropped)
//! and the pool redialing; an explicit `RST_STREAM` from a server written
//! with the h2 crate; per-stream flow control (stalled sockets do not
//! starve the others); falling back to HTTP/1.1 (or failing under
//! `Require`) against servers without HTTP/2 or without extended CONNECT.
#![cfg(all(feature = "http2", feature = "tls"))]
#![allow(missing_docs)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::within;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use silverback::http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use silverback::{
    ClientStream, CloseCode, DeflateConfig, Dialer, ErrorKind, H2Pool, Http2, Http2Error, Message,
    Upgrader, WebSocket,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

type Ws = WebSocket<ClientStream>;

/// What the test server saw of one WebSocket request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    path: String,
    headers: silverback::http::HeaderMap,
}

/// How the test server speaks.
#[derive(Clone, Copy, PartialEq)]
enum Speaks {
    /// HTTP/2 with extended CONNECT, and HTTP/1.1 (told apart by the
    /// preface, or by ALPN with TLS).
    H2Connect,
    /// HTTP/2 without `SETTINGS_ENABLE_CONNECT_PROTOCOL`, and HTTP/1.1.
    H2Plain,
}

/// A hyper server on 127.0.0.1: HTTP/2 (extended CONNECT translated to
/// `upgrade_hyper`) and HTTP/1.1, optionally behind TLS. Every TCP
/// connection is served by a task kept in `conns`, so a test can drop
/// them all at once.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// Bytes the `/blast` handlers have sent so far, all together.
    blasted: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        self.kill_connections();
    }
}

impl Server {
    async fn start(speaks: Speaks, upgrader: Upgrader) -> Self {
        Self::start_with(speaks, upgrader, None).await
    }

    async fn start_with(
        speaks: Speaks,
        upgrader: Upgrader,
        tls: Option<silverback::tls::TlsAcceptor>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (blast_tx, blasted) = watch::channel(0);
        let (tx, seen) = mpsc::unbounded_channel();
        let ctx = Ctx {
            upgrader,
            seen: tx,
            blasted: Arc::new(blast_tx),
        };
        let task = tokio::spawn({
            let accepted = accepted.clone();
            let conns = conns.clone();
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let ctx = ctx.clone();
                    let tls = tls.clone();
                    let conn = tokio::spawn(async move {
                        match tls {
                            Some(acceptor) => {
                                let Ok(tls) = acceptor.accept(tcp).await else {
                                    return;
                                };
                                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                                serve(tls, h2, speaks, ctx).await;
                            }
                            None => {
                                let mut preface = [0u8; 3];
                                let h2 = match tcp.peek(&mut preface).await {
                                    Ok(3) => &preface == b"PRI",
                                    _ => false,
                                };
                                serve(tcp, h2, speaks, ctx).await;
                            }
                        }
                    });
                    conns.lock().unwrap().push(conn);
                }
            }
        });
        Self {
            addr,
            accepted,
            conns,
            seen,
            blasted,
            task,
        }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Drops every TCP connection (and the WebSockets on them).
    fn kill_connections(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

#[derive(Clone)]
struct Ctx {
    upgrader: Upgrader,
    seen: mpsc::UnboundedSender<Seen>,
    blasted: Arc<watch::Sender<usize>>,
}

async fn serve<I>(io: I, h2: bool, speaks: Speaks, ctx: Ctx)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let service = service_fn(move |req| handle(req, ctx.clone()));
    if h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        if speaks == Speaks::H2Connect {
            builder.enable_connect_protocol();
        }
        let _ = builder.serve_connection(io, service).await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades()
            .await;
    }
}

/// Answers an extended CONNECT (HTTP/2) or an upgrade (HTTP/1.1). The
/// HTTP/2 request is translated into the HTTP/1.1 upgrade request it
/// stands for (RFC 8441 §5), its `OnUpgrade` carried over, and given to
/// `Upgrader::upgrade_hyper`; its 101 answer becomes a 200.
async fn handle(mut req: Request<Incoming>, ctx: Ctx) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let version = req.version();
    let _ = ctx.seen.send(Seen {
        version,
        path: path.clone(),
        headers: req.headers().clone(),
    });
    if path == "/refuse" {
        return Ok(Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Full::new(Bytes::from_static(b"go away\n")))
            .unwrap());
    }
    let h2 = version == Version::HTTP_2;
    if h2 {
        let protocol = req.extensions().get::<hyper::ext::Protocol>();
        if req.method() != Method::CONNECT || protocol.map(|p| p.as_str()) != Some("websocket") {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not a WebSocket")));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(resp);
        }
    }
    let mut upgrade_req = if h2 {
        let mut r = Request::get(req.uri().path_and_query().unwrap().as_str())
            .header(header::HOST, req.uri().authority().unwrap().as_str())
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_KEY, common::KEY)
            .body(())
            .unwrap();
        for (name, value) in req.headers() {
            r.headers_mut().append(name, value.clone());
        }
        *r.extensions_mut() = std::mem::take(req.extensions_mut());
        r
    } else {
        req.map(|_| ())
    };
    match ctx.upgrader.upgrade_hyper(&mut upgrade_req).await {
        Ok((response, ws)) => {
            tokio::spawn(async move {
                if let Ok(ws) = ws.await {
                    behave(&path, ws, &ctx.blasted).await;
                }
            });
            if !h2 {
                return Ok(response);
            }
            let mut ok = Response::new(Full::new(Bytes::new()));
            for name in [
                header::SEC_WEBSOCKET_PROTOCOL,
                header::SEC_WEBSOCKET_EXTENSIONS,
            ] {
                if let Some(v) = response.headers().get(&name) {
                    ok.headers_mut().insert(name, v.clone());
                }
            }
            Ok(ok)
        }
        Err(refusal) => Ok(refusal),
    }
}

/// Bytes each `/blast` handler sends, in 64 KiB messages.
const BLAST: usize = 4 << 20;

/// The server side of each path: `/echo` echoes; `/close` echoes one
/// message then closes with 4000; `/drop` echoes one message then drops
/// its WebSocket (hyper ends the stream); `/blast` sends [`BLAST`] bytes
/// then echoes.
async fn behave(path: &str, mut ws: silverback::HyperWebSocket, blasted: &watch::Sender<usize>) {
    if path == "/blast" {
        let chunk = Bytes::from(vec![7u8; 64 << 10]);
        let mut sent = 0;
        while sent < BLAST {
            if ws.send(Message::binary(chunk.clone())).await.is_err() {
                return;
            }
            sent += chunk.len();
            blasted.send_modify(|n| *n += chunk.len());
        }
    }
    while let Ok(msg) = ws.recv().await {
        if ws.send(msg).await.is_err() {
            return;
        }
        match path {
            "/close" => {
                let _ = ws.close(CloseCode::from(4000), "bye").await;
                return;
            }
            "/drop" => return,
            _ => {}
        }
    }
}

/// A payload of `n` bytes: text or binary.
fn payload(n: usize, text: bool) -> Message {
    if text {
        Message::text(
            (0..n)
                .map(|i| (b'a' + (i % 26) as u8) as char)
                .collect::<String>(),
        )
    } else {
        Message::binary((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    }
}

async fn assert_echoes(ws: &mut Ws) {
    for n in [0usize, 1, 125, 126, 65535, 65536, 300_000] {
        for text in [true, false] {
            let msg = payload(n, text);
            within(ws.send(msg.clone())).await.unwrap();
            let back = within(ws.recv()).await.unwrap();
            assert_eq!(back, msg, "{n} bytes, text: {text}");
        }
    }
}

fn h2c(mode: Http2) -> Dialer {
    Dialer::new().no_proxy().http2(mode)
}

#[tokio::test]
async fn echo_over_h2c_with_and_without_deflate() {
    let upgrader = Upgrader::new()
        .compression(DeflateConfig::default())
        .subprotocols(["chat.v2", "chat"])
        .check_origin(|r| r.origin() == Some("https://app.example"));
    let mut server = Server::start(Speaks::H2Connect, upgrader).await;
    for deflate in [false, true] {
        let mut dialer = h2c(Http2::Require)
            .subprotocols(["chat"])
            .origin("https://app.example")
            .header("x-client", "h2-test")
            .header("authorization", "Bearer t");
        if deflate {
            dialer = dialer.compression(DeflateConfig::default());
        }
        let (mut ws, resp) = within(dialer.connect(&server.url("ws", "/echo?x=1")))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), Version::HTTP_2);
        assert!(ws.get_ref().is_http2());
        assert!(!ws.get_ref().is_tls());
        assert!(ws.get_ref().get_ref().is_none());
        assert_eq!(ws.protocol(), Some("chat"));
        assert_eq!(ws.compression().is_some(), deflate);
        assert_echoes(&mut ws).await;
        within(ws.close(CloseCode::Normal, "done")).await.unwrap();

        let seen = within(server.seen.recv()).await.unwrap();
        assert_eq!(seen.version, Version::HTTP_2);
        assert_eq!(seen.path, "/echo");
        let h = &seen.headers;
        assert_eq!(h["sec-websocket-version"], "13");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h["origin"], "https://app.example");
        assert_eq!(h["x-client"], "h2-test");
        assert_eq!(h["authorization"], "Bearer t");
        assert!(h.get("sec-websocket-key").is_none());
        assert!(h.get("upgrade").is_none());
        assert_eq!(
            h.get("sec-websocket-extensions").is_some(),
            deflate,
            "{h:?}"
        );
    }
    // One TCP connection per WebSocket without a pool.
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn a_refused_connect_is_an_http_status_error() {
    let server = Server::start(Speaks::H2Connect, Upgrader::new()).await;
    let err = within(h2c(Http2::Require).connect(&server.url("ws", "/refuse")))
        .await
        .unwrap_err();
    let resp = err.http_response().expect("an HttpStatus error");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(&resp.body()[..], b"go away\n");
    assert!(err.is_handshake());
    // An origin the upgrader refuses: its 403, over HTTP/2 too.
    let strict = Server::start(
        Speaks::H2Connect,
        Upgrader::new().check_origin(|r| r.origin() == Some("https://ok.example")),
    )
    .await;
    let err = within(
        h2c(Http2::Require)
            .origin("https://evil.example")
            .connect(&strict.url("ws", "/echo")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.http_response().unwrap().status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_unoffered_subprotocol_is_refused_as_over_http1() {
    // The server picks a subprotocol the client did not offer: the
    // answer is checked as an HTTP/1.1 101 would be.
    let upgrader = Upgrader::new().subprotocols(["chat"]);
    let server = Server::start(Speaks::H2Connect, upgrader).await;
    let dialer = h2c(Http2::Require).header("sec-websocket-protocol", "chat");
    let err = within(dialer.connect(&server.url("ws", "/echo")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Handshake(silverback::proto::handshake::client::ResponseError::UnofferedProtocol(p)) if p == "chat"
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn hundred_websockets_over_one_pooled_connection_closed_every_way() {
    let server = Server::start(Speaks::H2Connect, Upgrader::new()).await;
    let pool = H2Pool::new();
    let dialer = h2c(Http2::Require).http2_pool(pool.clone());
    let paths = ["/echo", "/close", "/drop", "/echo"];
    let mut sockets: Vec<(usize, Ws)> = Vec::new();
    let opens = (0..100).map(|i| {
        let dialer = dialer.clone();
        let url = server.url("ws", paths[i % 4]);
        async move { (i, dialer.connect(&url).await) }
    });
    for (i, result) in within(futures_util::future::join_all(opens)).await {
        let (ws, _) = result.unwrap();
        assert!(ws.get_ref().is_http2());
        sockets.push((i, ws));
    }
    assert_eq!(server.accepted(), 1, "100 WebSockets, one TCP connection");
    assert_eq!(pool.connections(), 1);

    // Every socket echoes first.
    for (i, ws) in &mut sockets {
        let msg = Message::text(format!("hello {i}"));
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap(), msg);
    }
    let mut survivors = Vec::new();
    for (i, mut ws) in sockets {
        match i % 4 {
            // Client close: the handshake completes.
            0 => within(ws.close(CloseCode::Normal, "bye")).await.unwrap(),
            // Server close: its code and reason.
            1 => {
                let err = within(ws.recv()).await.unwrap_err();
                assert!(err.is_closed(), "{i}: {err}");
                let frame = err.close_frame().unwrap();
                assert_eq!(u16::from(frame.code), 4000);
                assert_eq!(frame.reason, "bye");
            }
            // The server dropped its stream: an abnormal end (1006).
            2 => {
                let err = within(ws.recv()).await.unwrap_err();
                assert_eq!(err.close_code(), Some(CloseCode::Abnormal), "{i}: {err}");
            }
            _ => survivors.push((i, ws)),
        }
    }
    // The other streams are unaffected by those ends.
    for (i, ws) in &mut survivors {
        let msg = Message::binary(vec![*i as u8; 1000]);
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap(), msg);
    }
    // The whole connection dropped: every socket on it ends abnormally.
    server.kill_connections();
    for (i, ws) in &mut survivors {
        let err = within(ws.recv()).await.unwrap_err();
        assert_eq!(err.close_code(), Some(CloseCode::Abnormal), "{i}: {err}");
    }
    // The pool redials for the next one.
    let (mut ws, _) = within(dialer.connect(&server.url("ws", "/echo")))
        .await
        .unwrap();
    assert_eq!(server.accepted(), 2);
    assert_eq!(pool.connections(), 1);
    let msg = Message::text("after the reconnect");
    within(ws.send(msg.clone())).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), msg);
}

/// Three sockets the server blasts and the client never reads, then an
/// echo on a fourth over the same connection. Each stalled socket holds
/// at most its stream window of the connection's window, so the echo
/// goes through. (With windows as large as the connection's, e.g. hyper's
/// defaults of 2 MiB per stream and 5 MiB per connection, three stalled
/// sockets would take the whole connection window and the echo would
/// never come back.)
#[tokio::test]
async fn stalled_streams_do_not_starve_the_others() {
    let server = Server::start(Speaks::H2Connect, Upgrader::new()).await;
    let dialer = h2c(Http2::Require).http2_pool(H2Pool::new());
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let (ws, _) = within(dialer.connect(&server.url("ws", "/blast")))
            .await
            .unwrap();
        stalled.push(ws);
    }
    // Until the server has sent what flow control lets it send.
    let window = silverback::H2_STREAM_WINDOW as usize;
    let mut blasted = server.blasted.clone();
    within(blasted.wait_for(|n| *n >= 3 * window))
        .await
        .unwrap();
    let (mut other, _) = within(dialer.connect(&server.url("ws", "/echo")))
        .await
        .unwrap();
    for i in 0..50 {
        let msg = payload(10_000 + i, i % 2 == 0);
        within(other.send(msg.clone())).await.unwrap();
        assert_eq!(within(other.recv()).await.unwrap(), msg);
    }
    // The blasts are still held back by the stalled streams' windows...
    assert!(*server.blasted.borrow() < BLAST);
    assert_eq!(server.accepted(), 1);
    // ...and one arrives whole, in order, once read.
    let mut ws = stalled.pop().unwrap();
    let mut got = 0;
    while got < BLAST {
        got += within(ws.recv()).await.unwrap().len();
    }
    assert_eq!(got, BLAST);
    let msg = Message::text("still in order");
    within(ws.send(msg.clone())).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), msg);
}

#[tokio::test]
async fn falls_back_to_http1_without_extended_connect() {
    // HTTP/2 without SETTINGS_ENABLE_CONNECT_PROTOCOL (and HTTP/1.1).
    let mut server = Server::start(Speaks::H2Plain, Upgrader::new()).await;
    let (mut ws, resp) = within(h2c(Http2::Prefer).connect(&server.url("ws", "/echo")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(!ws.get_ref().is_http2());
    assert_echoes(&mut ws).await;
    assert_eq!(
        within(server.seen.recv()).await.unwrap().version,
        Version::HTTP_11
    );
    // Nothing reached the HTTP/2 connection: no CONNECT without the
    // setting.
    assert!(server.seen.try_recv().is_err());
    assert_eq!(server.accepted(), 2, "the HTTP/2 try, then HTTP/1.1");

    let err = within(h2c(Http2::Require).connect(&server.url("ws", "/echo")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Http2(Http2Error::ExtendedConnectDisabled)
        ),
        "{err:?}"
    );

    // A pool remembers the server's answer: later dials go straight to
    // HTTP/1.1 (one HTTP/2 connection, then one TCP connection each).
    let before = server.accepted();
    let dialer = h2c(Http2::Prefer).http2_pool(H2Pool::new());
    for _ in 0..3 {
        let (mut ws, _) = within(dialer.connect(&server.url("ws", "/echo")))
            .await
            .unwrap();
        assert!(!ws.get_ref().is_http2());
        let msg = Message::text("over HTTP/1.1");
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap(), msg);
    }
    assert_eq!(server.accepted() - before, 4);
}

#[tokio::test]
async fn falls_back_against_silverbacks_plain_http1_server() {
    // silverback's own HTTP/1.1 server (Upgrader::upgrade on TCP), which
    // answers the HTTP/2 preface with a refusal.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(ws) = Upgrader::new().upgrade(tcp).await {
                        common::echo(ws).await;
                    }
                });
            }
        }
    });
    let url = format!("ws://127.0.0.1:{}/echo", addr.port());
    let (mut ws, resp) = within(h2c(Http2::Prefer).connect(&url)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(!ws.get_ref().is_http2());
    assert_echoes(&mut ws).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    let err = within(h2c(Http2::Require).connect(&url)).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Http2(Http2Error::NotNegotiated)),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not speak HTTP/2"), "{err}");
    server.abort();
}

#[tokio::test]
async fn off_is_http1_even_against_an_h2_server() {
    let mut server = Server::start(Speaks::H2Connect, Upgrader::new()).await;
    let (mut ws, _) = within(Dialer::new().no_proxy().connect(&server.url("ws", "/echo")))
        .await
        .unwrap();
    assert!(!ws.get_ref().is_http2());
    assert!(ws.get_ref().get_ref().is_some());
    assert_echoes(&mut ws).await;
    assert_eq!(
        within(server.seen.recv()).await.unwrap().version,
        Version::HTTP_11
    );
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use common::pki::loopback_pki;

    fn acceptor(leaf: &common::pki::Leaf, alpn: &[&[u8]]) -> silverback::tls::TlsAcceptor {
        let config = silverback::tls::server_config_from_pem(
            leaf.cert_pem.as_bytes(),
            leaf.key_pem.as_bytes(),
        )
        .unwrap();
        let mut config = (*config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        silverback::tls::TlsAcceptor::from(Arc::new(config))
    }

    #[tokio::test]
    async fn wss_with_alpn_h2_pooled() {
        let (ca, leaf) = loopback_pki();
        let mut server = Server::start_with(
            Speaks::H2Connect,
            Upgrader::new().compression(DeflateConfig::default()),
            Some(acceptor(&leaf, &[b"h2", b"http/1.1"])),
        )
        .await;
        let dialer = h2c(Http2::Require)
            .tls(ca.trusted_by_client())
            .compression(DeflateConfig::default())
            .http2_pool(H2Pool::new());
        let mut sockets = Vec::new();
        for _ in 0..3 {
            let (ws, resp) = within(dialer.connect(&server.url("wss", "/echo")))
                .await
                .unwrap();
            assert_eq!(resp.version(), Version::HTTP_2);
            assert!(ws.get_ref().is_http2());
            assert!(ws.get_ref().is_tls());
            assert!(ws.compression().is_some());
            sockets.push(ws);
        }
        assert_eq!(server.accepted(), 1);
        for ws in &mut sockets {
            assert_echoes(ws).await;
        }
        let seen = within(server.seen.recv()).await.unwrap();
        assert_eq!(seen.version, Version::HTTP_2);
        // A clone of the TLS settings is the same pool key; other settings
        // are another connection.
        let other = dialer.clone().tls(ca.trusted_by_client());
        let (ws, _) = within(other.connect(&server.url("wss", "/echo")))
            .await
            .unwrap();
        assert!(ws.get_ref().is_http2());
        assert_eq!(server.accepted(), 2);
    }

    #[tokio::test]
    async fn alpn_http1_falls_back_on_the_same_connection() {
        let (ca, leaf) = loopback_pki();
        let mut server = Server::start_with(
            Speaks::H2Connect,
            Upgrader::new(),
            Some(acceptor(&leaf, &[b"http/1.1"])),
        )
        .await;
        let dialer = h2c(Http2::Prefer).tls(ca.trusted_by_client());
        let (mut ws, resp) = within(dialer.connect(&server.url("wss", "/echo")))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(!ws.get_ref().is_http2());
        assert!(ws.get_ref().is_tls());
        assert_echoes(&mut ws).await;
        assert_eq!(
            server.accepted(),
            1,
            "the HTTP/1.1 upgrade reused the TLS connection"
        );
        assert_eq!(
            within(server.seen.recv()).await.unwrap().version,
            Version::HTTP_11
        );

        let err = within(
            dialer
                .clone()
                .http2(Http2::Require)
                .connect(&server.url("wss", "/echo")),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Http2(Http2Error::NotNegotiated)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_a_tls_error_over_h2_too() {
        let (_ca, leaf) = loopback_pki();
        let server = Server::start_with(
            Speaks::H2Connect,
            Upgrader::new(),
            Some(acceptor(&leaf, &[b"h2"])),
        )
        .await;
        let other_ca = common::pki::Ca::new("someone else");
        let err = within(
            h2c(Http2::Prefer)
                .tls(other_ca.trusted_by_client())
                .connect(&server.url("wss", "/echo")),
        )
        .await
        .unwrap_err();
        assert!(err.is_tls(), "{err:?}");
    }
}

#[test]
fn the_client_websocket_stays_small() {
    // The HTTP/2 stream is boxed: the transport enum does not grow.
    assert!(
        std::mem::size_of::<ClientStream>() <= std::mem::size_of::<TcpStream>() + 8,
        "{}",
        std::mem::size_of::<ClientStream>()
    );
    let _: HeaderValue = HeaderValue::from_static("x");
}

/// A server written with the h2 crate directly, to reset one stream
/// (`RST_STREAM` CANCEL) while another lives on, and to see the request
/// exactly as it arrives: `:method CONNECT`, `:protocol websocket`,
/// `:scheme http`, `:path`.
#[tokio::test]
async fn a_stream_reset_ends_its_websocket_only() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut streams) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::Builder::new()
            .enable_connect_protocol()
            .handshake::<_, Bytes>(tcp)
            .await
            .unwrap();
        while let Some(Ok(stream)) = conn.accept().await {
            let _ = tx.send(stream);
        }
    });
    let dialer = h2c(Http2::Require).http2_pool(H2Pool::new());
    let open = |path: &'static str| {
        let dialer = dialer.clone();
        tokio::spawn(async move {
            dialer
                .connect(&format!("ws://127.0.0.1:{}{path}", addr.port()))
                .await
        })
    };
    let mut opened = Vec::new();
    for path in ["/a", "/b"] {
        let ws = open(path);
        let (req, mut respond) = within(streams.recv()).await.unwrap();
        assert_eq!(req.method(), Method::CONNECT);
        assert_eq!(
            req.extensions()
                .get::<h2::ext::Protocol>()
                .map(|p| p.as_str()),
            Some("websocket")
        );
        assert_eq!(req.uri().scheme_str(), Some("http"));
        assert_eq!(req.uri().path(), path);
        assert_eq!(req.headers()["sec-websocket-version"], "13");
        let send = respond.send_response(Response::new(()), false).unwrap();
        let (ws, _) = within(ws).await.unwrap().unwrap();
        opened.push((ws, send));
    }
    let (mut b, mut b_send) = opened.pop().unwrap();
    let (mut a, mut a_send) = opened.pop().unwrap();
    a_send.send_reset(h2::Reason::CANCEL);
    let err = within(a.recv()).await.unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::Abnormal), "{err}");
    // The other stream carries on: an unmasked text frame "hi".
    b_send
        .send_data(Bytes::from_static(&[0x81, 0x02, b'h', b'i']), false)
        .unwrap();
    assert_eq!(within(b.recv()).await.unwrap(), Message::text("hi"));
    server.abort();
}
