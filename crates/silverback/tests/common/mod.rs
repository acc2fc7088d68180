//! Helpers shared by the loopback integration tests: servers on
//! 127.0.0.1:0, a raw "manual" peer that speaks hand-built HTTP and frames,
//! and a transport wrapper that counts writes.
#![allow(dead_code, missing_docs)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use silverback::proto::frame::{decode_header, encode_header, Decoded, FrameHeader};
use silverback::proto::handshake::client::parse_response;
use silverback::proto::handshake::server::parse_request;
use silverback::proto::handshake::{accept_key, HeadLimits};
use silverback::proto::http::{Request, Response};
use silverback::proto::mask::apply_mask;
use silverback::{Config, Dialer, Error, OpCode, Role, Shutdown, Upgrader, WebSocket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// An axum echo app (also included by the CLI's tests).
#[cfg(feature = "axum")]
pub mod axum_app;
/// Servers and proxies for the client-side tests.
pub mod dial;
/// A hyper server that upgrades with `upgrade_hyper`.
#[cfg(feature = "hyper")]
pub mod hyper_server;
/// Certificates made at test time (rcgen) and TLS settings.
#[cfg(feature = "tls")]
pub mod pki;

/// Upper bound for any one step of a test: generous, only there so that a
/// hang fails instead of blocking the suite.
pub const LIMIT: Duration = Duration::from_secs(10);

/// The sample key of RFC 6455 §1.3.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The masking key the raw client uses.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Awaits `f`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<F: Future>(f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("step did not complete within {LIMIT:?}"),
    }
}

/// Binds 127.0.0.1:0.
pub async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts one TCP connection and hands it to `f`, in a task.
pub async fn spawn_accept<F, Fut, T>(f: F) -> (SocketAddr, JoinHandle<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (listener, addr) = listen().await;
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        f(stream).await
    });
    (addr, task)
}

/// Accepts one connection, upgrades it with `upgrader` and runs `handler`
/// on the WebSocket, in a task. Returns the `ws://` URL and the task.
pub async fn spawn_server<F, Fut, T>(upgrader: Upgrader, handler: F) -> (String, JoinHandle<T>)
where
    F: FnOnce(WebSocket<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (addr, task) = spawn_accept(move |stream| async move {
        let ws = upgrader.upgrade(stream).await.expect("server upgrade");
        handler(ws).await
    })
    .await;
    (format!("ws://{addr}/ws"), task)
}

/// An echo server for one connection. The task yields the error that
/// ended the loop and the WebSocket itself (so the transport stays open
/// until the test drops it: whatever the peer sees of a close was done by
/// the library, not by dropping the socket).
pub async fn spawn_echo(upgrader: Upgrader) -> (String, JoinHandle<(Error, WebSocket<TcpStream>)>) {
    spawn_server(upgrader, echo).await
}

/// The socket address of a `ws://host:port/path` URL.
pub fn addr_of(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("ws://").expect("ws:// URL");
    rest.split('/').next().unwrap().parse().unwrap()
}

/// Echoes messages until `recv` or `send` fails.
pub async fn echo<S>(mut ws: WebSocket<S>) -> (Error, WebSocket<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.recv().await {
            Ok(msg) => {
                if let Err(e) = ws.send(msg).await {
                    return (e, ws);
                }
            }
            Err(e) => return (e, ws),
        }
    }
}

/// The request head of a valid upgrade for `host`, with `extra` headers.
pub fn upgrade_request(host: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// A frame as a client sends it: masked with [`MASK`].
pub fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, Some(MASK), payload)
}

/// A frame as a server sends it: unmasked.
pub fn server_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, None, payload)
}

/// A frame with an optional mask.
pub fn frame(opcode: OpCode, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    silverback::testing::encode_frame(opcode, fin, mask, payload)
}

/// Only the (masked) header of a frame that claims `len` payload bytes.
pub fn client_header(opcode: OpCode, fin: bool, len: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_header(
        &mut out,
        &FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: Some(MASK),
            payload_len: len,
        },
    );
    out.to_vec()
}

/// A Close payload: code and reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// A frame read off the wire (payload unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: OpCode,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a Close frame (`None` if it has no payload).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OpCode::Close, "not a Close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// The reason of a Close frame.
    pub fn close_reason(&self) -> String {
        String::from_utf8(self.payload.get(2..).unwrap_or_default().to_vec()).unwrap()
    }
}

/// A peer driven by hand over a raw TCP socket: writes arbitrary bytes,
/// reads HTTP heads and frames.
pub struct RawPeer {
    pub stream: TcpStream,
    /// Bytes read but not consumed yet.
    pub buf: BytesMut,
    /// The role it plays: [`send_frame`](Self::send_frame) masks as a
    /// client does. `Client` unless it answered an upgrade request.
    pub role: Role,
}

impl RawPeer {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            role: Role::Client,
        }
    }

    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = within(TcpStream::connect(addr)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self::new(stream)
    }

    /// Connects and completes a valid upgrade (expects 101).
    pub async fn handshake(addr: SocketAddr) -> Self {
        let mut peer = Self::connect(addr).await;
        peer.write(&upgrade_request(&addr.to_string(), &[])).await;
        let resp = peer.read_response_head().await;
        assert_eq!(resp.status(), 101, "{resp:?}");
        assert_eq!(
            resp.headers()["sec-websocket-accept"],
            accept_key(KEY.as_bytes())
        );
        peer
    }

    /// Writes all of `bytes` in one `write_all` (one system call for the
    /// sizes used here).
    pub async fn write(&mut self, bytes: &[u8]) {
        within(self.stream.write_all(bytes)).await.unwrap();
    }

    /// Sends a masked frame.
    pub async fn send(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        self.write(&client_frame(opcode, fin, payload)).await;
    }

    /// A whole frame as its role sends it: masked by a client, unmasked by
    /// a server.
    pub fn encode(&self, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        match self.role {
            Role::Client => client_frame(opcode, true, payload),
            Role::Server => server_frame(opcode, true, payload),
        }
    }

    /// Sends a whole frame as its role does (see [`encode`](Self::encode)).
    pub async fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let bytes = self.encode(opcode, payload);
        self.write(&bytes).await;
    }

    /// Ends the TCP connection as its role does once the closing handshake
    /// is complete: a server closes first, a client waits for the server to
    /// (RFC 6455 §7.1.1). Either way, it then sees the end of stream.
    pub async fn finish_tcp(&mut self) {
        if self.role == Role::Server {
            within(self.stream.shutdown()).await.unwrap();
        }
        self.expect_eof().await;
    }

    /// Answers the other side's closing handshake: reads frames up to its
    /// Close (skipping the others), echoes the code, ends TCP
    /// ([`finish_tcp`](Self::finish_tcp)). Returns the Close it got.
    pub async fn answer_close(&mut self) -> Frame {
        let close = loop {
            let f = self.read_frame().await;
            if f.opcode == OpCode::Close {
                break f;
            }
        };
        let echo = close.payload.get(..2).unwrap_or_default().to_vec();
        self.send_frame(OpCode::Close, &echo).await;
        self.finish_tcp().await;
        close
    }

    /// Answers the upgrade request it reads with 101 (and `after_101` in
    /// the same write); from then on it plays the server.
    pub async fn answer_upgrade(&mut self, after_101: &[u8]) {
        let req = self.read_request_head().await;
        let key = req.headers()["sec-websocket-key"].as_bytes();
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        )
        .into_bytes();
        out.extend_from_slice(after_101);
        self.write(&out).await;
        self.role = Role::Server;
    }

    /// Runs a closing handshake it starts with `code`: sends the Close,
    /// reads the answer (skipping frames still in flight), and checks
    /// the TCP end as RFC 6455 §7.1.1 has it (a server closes first, a
    /// client waits for the server to). Returns the answer.
    pub async fn close_handshake(&mut self, code: u16, reason: &str) -> Frame {
        self.send_frame(OpCode::Close, &close_payload(code, reason))
            .await;
        let answer = loop {
            let f = self.read_frame().await;
            if f.opcode == OpCode::Close {
                break f;
            }
        };
        self.finish_tcp().await;
        answer
    }

    /// Reads more input; returns how many bytes came (0 at end of stream).
    async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(64 * 1024);
        within(self.stream.read_buf(&mut self.buf)).await
    }

    /// Reads a response head; the bytes after it stay in `buf`.
    pub async fn read_response_head(&mut self) -> Response<()> {
        loop {
            if let Some((resp, n)) = parse_response(&self.buf, HeadLimits::default()).unwrap() {
                self.buf.advance(n);
                return resp;
            }
            let n = self.fill().await.unwrap();
            assert!(
                n > 0,
                "end of stream before a complete response head: {:?}",
                self.buf
            );
        }
    }

    /// Reads a whole HTTP response: head and `Content-Length` body.
    pub async fn read_http_response(&mut self) -> (Response<()>, String) {
        let resp = self.read_response_head().await;
        let len: usize = resp
            .headers()
            .get("content-length")
            .expect("content-length")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = self.read_bytes(len).await;
        (resp, String::from_utf8(body).unwrap())
    }

    /// Reads exactly `n` bytes.
    pub async fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let got = self.fill().await.unwrap();
            assert!(
                got > 0,
                "end of stream after {} of {n} bytes",
                self.buf.len()
            );
        }
        self.buf.split_to(n).to_vec()
    }

    /// Reads a request head (raw server side); the bytes after it stay in `buf`.
    pub async fn read_request_head(&mut self) -> Request<()> {
        loop {
            if let Some((req, n)) = parse_request(&self.buf, HeadLimits::default()).unwrap() {
                self.buf.advance(n);
                return req;
            }
            let n = self.fill().await.unwrap();
            assert!(n > 0, "end of stream before a complete request head");
        }
    }

    /// Reads the next frame.
    pub async fn read_frame(&mut self) -> Frame {
        loop {
            if let Some(f) = self.parse_frame() {
                return f;
            }
            let n = self.fill().await.unwrap();
            assert!(
                n > 0,
                "end of stream before a complete frame ({} bytes buffered)",
                self.buf.len()
            );
        }
    }

    fn parse_frame(&mut self) -> Option<Frame> {
        let (h, n) = match decode_header(&self.buf).expect("valid frame header") {
            Decoded::Header(h, n) => (h, n),
            Decoded::Incomplete(_) => return None,
        };
        let len = usize::try_from(h.payload_len).unwrap();
        if self.buf.len() < n + len {
            return None;
        }
        self.buf.advance(n);
        let mut payload = self.buf.split_to(len).to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key);
        }
        Some(Frame {
            fin: h.fin,
            opcode: h.opcode,
            masked: h.mask.is_some(),
            payload,
        })
    }

    /// Reads a frame and checks it is a Close; returns it.
    pub async fn read_close(&mut self) -> Frame {
        let f = self.read_frame().await;
        assert_eq!(f.opcode, OpCode::Close, "expected a Close frame, got {f:?}");
        f
    }

    /// Asserts the peer closed TCP (a clean end of stream, not a reset)
    /// with nothing else pending.
    pub async fn expect_eof(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before end of stream: {:?}",
            self.buf
        );
        match self.fill().await {
            Ok(0) => {}
            Ok(_) => panic!("expected end of stream, got {:?}", self.buf),
            Err(e) => panic!("expected end of stream, got {e}"),
        }
    }
}

/// A raw server: accepts one connection in a task, answers its upgrade
/// request with 101 (and `after_101`, in the same write), then hands the
/// peer to `f`.
pub async fn spawn_raw_server<F, Fut, T>(after_101: Vec<u8>, f: F) -> (String, JoinHandle<T>)
where
    F: FnOnce(RawPeer) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (addr, task) = spawn_accept(move |stream| async move {
        stream.set_nodelay(true).unwrap();
        let mut peer = RawPeer::new(stream);
        peer.answer_upgrade(&after_101).await;
        f(peer).await
    })
    .await;
    (format!("ws://{addr}/ws"), task)
}

/// One of our WebSockets playing `role` (a server from an [`Upgrader`], a
/// client from a [`Dialer`], with `config`), connected over loopback to a
/// [`RawPeer`] playing the other role.
pub async fn raw_pair(role: Role, config: Config) -> (WebSocket<TcpStream>, RawPeer) {
    match role {
        Role::Server => {
            let (addr, server) = spawn_accept(move |stream| async move {
                Upgrader::new().config(config).upgrade(stream).await
            })
            .await;
            let peer = RawPeer::handshake(addr).await;
            let ws = within(server).await.unwrap().expect("server upgrade");
            (ws, peer)
        }
        Role::Client => {
            let (url, server) = spawn_raw_server(Vec::new(), |peer| async move { peer }).await;
            let ws = dial(&Dialer::new().config(config), &url).await;
            (ws, within(server).await.unwrap())
        }
    }
}

/// A server and a client of ours, connected over loopback: the server
/// upgraded by `upgrader`, the client dialed by `dialer`.
pub async fn pair(
    upgrader: Upgrader,
    dialer: Dialer,
) -> (WebSocket<TcpStream>, WebSocket<TcpStream>) {
    let (url, server) = spawn_server(upgrader, |ws| async move { ws }).await;
    let client = dial(&dialer, &url).await;
    (within(server).await.unwrap(), client)
}

/// A client of ours on a plain `TcpStream` (what [`Dialer::connect`] does
/// for `ws://`, with the transport type of the server side).
pub async fn dial(dialer: &Dialer, url: &str) -> WebSocket<TcpStream> {
    let stream = within(TcpStream::connect(addr_of(url))).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, _) = within(dialer.handshake(stream, url))
        .await
        .expect("client handshake");
    ws
}

/// An echo server for any number of connections, each tracked by
/// `shutdown`. It stops accepting when the shutdown begins. Each
/// connection's end (the error that ended its echo loop, and the WebSocket,
/// so that its transport stays open until the test drops it) arrives on
/// `ends`.
pub struct EchoServer {
    pub url: String,
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub ends: mpsc::UnboundedReceiver<(Error, WebSocket<TcpStream>)>,
    /// The accept loop; it ends when the shutdown begins.
    pub accept_loop: JoinHandle<()>,
}

impl EchoServer {
    pub async fn spawn(upgrader: Upgrader) -> Self {
        let (listener, addr) = listen().await;
        let shutdown = Shutdown::new();
        let (tx, ends) = mpsc::unbounded_channel();
        let sd = shutdown.clone();
        let accept_loop = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap().0,
                    () = sd.draining() => return,
                };
                let (upgrader, sd, tx) = (upgrader.clone(), sd.clone(), tx.clone());
                tokio::spawn(async move {
                    stream.set_nodelay(true).unwrap();
                    let Ok(mut ws) = upgrader.upgrade(stream).await else {
                        return;
                    };
                    sd.track(&mut ws);
                    let _ = tx.send(echo(ws).await);
                });
            }
        });
        Self {
            url: format!("ws://{addr}/ws"),
            addr,
            shutdown,
            ends,
            accept_loop,
        }
    }

    /// The next connection end.
    pub async fn next_end(&mut self) -> (Error, WebSocket<TcpStream>) {
        within(self.ends.recv())
            .await
            .expect("server still running")
    }
}

/// Makes dropping `stream` reset the connection (RST) instead of closing
/// it (FIN): zero linger, which does not block.
pub fn reset_on_drop(stream: &TcpStream) {
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).unwrap();
}

/// A transport wrapper that counts the `poll_write` calls that wrote
/// bytes, and signals when a write would block.
pub struct Tap<S> {
    inner: S,
    pub writes: Arc<AtomicUsize>,
    pub write_blocked: Arc<Notify>,
}

impl<S> Tap<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            writes: Arc::default(),
            write_blocked: Arc::default(),
        }
    }

    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        match &res {
            Poll::Ready(Ok(n)) if *n > 0 => {
                this.writes.fetch_add(1, Ordering::SeqCst);
            }
            Poll::Pending => this.write_blocked.notify_one(),
            _ => {}
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
