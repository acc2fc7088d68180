//! WebSockets over HTTP/2 for the client (RFC 8441, extended CONNECT):
//! feature `http2`.
//!
//! [`Dialer::http2`] opens the WebSocket as a stream of an HTTP/2
//! connection (`:method CONNECT`, `:protocol websocket`), with hyper's
//! HTTP/2 client: over TLS with ALPN `h2` for `wss://`, with prior
//! knowledge (h2c) for `ws://`. The stream then carries WebSocket frames
//! exactly as a TCP connection does, through the same sans-I/O core: the
//! result is the same [`WebSocket<ClientStream>`], its transport the
//! [`MaybeTlsStream::Http2`] variant. [`H2Pool`] multiplexes many
//! WebSockets to the same origin over one HTTP/2 connection.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use silverback_proto::extension::deflate;
use silverback_proto::handshake::client::validate_negotiation;
use silverback_proto::Role;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use crate::client::{parse_url, ClientStream, Target, MAX_ERROR_BODY};
use crate::error::{Error, ErrorKind, Http2Error};
use crate::stream::MaybeTlsStream;
use crate::{Dialer, WebSocket};

/// The receive window of each stream (each WebSocket) this client
/// advertises: how much a server may send on one WebSocket that the
/// application has not read yet. Bounded per stream, so a socket whose
/// reader lags holds at most this much of the connection window, and the
/// others keep flowing.
pub const H2_STREAM_WINDOW: u32 = 256 * 1024;

/// The receive window of a whole HTTP/2 connection this client
/// advertises (64 × [`H2_STREAM_WINDOW`]): 64 WebSockets whose readers
/// all lag are needed to stall the connection.
pub const H2_CONNECTION_WINDOW: u32 = 64 * H2_STREAM_WINDOW;

/// Whether a [`Dialer`] opens its WebSockets over HTTP/2 (RFC 8441):
/// [`Dialer::http2`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Http2 {
    /// HTTP/1.1 only (the default): one TCP (and TLS) connection per
    /// WebSocket, ALPN `http/1.1`.
    #[default]
    Off,
    /// HTTP/2 when the server offers it, else HTTP/1.1. `wss://` offers
    /// ALPN `h2` then `http/1.1`: a server picking `http/1.1` gets the
    /// HTTP/1.1 upgrade on the same connection. `ws://` speaks HTTP/2 with
    /// prior knowledge (h2c): a server that does not answer with HTTP/2
    /// costs one extra TCP connection, dialed for HTTP/1.1. A server
    /// speaking HTTP/2 without `SETTINGS_ENABLE_CONNECT_PROTOCOL` (no
    /// WebSockets over HTTP/2) also gets a new HTTP/1.1 connection.
    Prefer,
    /// HTTP/2 or nothing: where `Prefer` falls back, this is an
    /// [`ErrorKind::Http2`] error ([`Http2Error::NotNegotiated`] or
    /// [`Http2Error::ExtendedConnectDisabled`]).
    Require,
}

impl Dialer {
    /// Opens WebSockets over HTTP/2 (RFC 8441 extended CONNECT) when
    /// `mode` is [`Http2::Prefer`] or [`Http2::Require`]; default
    /// [`Http2::Off`].
    ///
    /// The request is `:method CONNECT`, `:protocol websocket`,
    /// `:scheme`/`:authority`/`:path` from the URL, `sec-websocket-version:
    /// 13`, the [subprotocols](Self::subprotocols), the permessage-deflate
    /// offer, the [origin](Self::origin) and the [headers](Self::header);
    /// the server accepts with `200` (another status is an
    /// [`ErrorKind::HttpStatus`] error with the response, as a refused
    /// HTTP/1.1 upgrade is), and its subprotocol and extension answers are
    /// checked as over HTTP/1.1. The [`WebSocket`] is the same, its
    /// transport [`MaybeTlsStream::Http2`]; every setting of the dialer
    /// (config, keepalive, limits, proxy, TLS, redirects) applies.
    ///
    /// Without a [pool](Self::http2_pool), each WebSocket gets an HTTP/2
    /// connection of its own, closed when the WebSocket ends.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), silverback::Error> {
    /// use silverback::{Dialer, Http2};
    /// let (ws, _) = Dialer::new()
    ///     .http2(Http2::Prefer)
    ///     .connect("wss://example.com/ws")
    ///     .await?;
    /// println!("over HTTP/2: {}", ws.get_ref().is_http2());
    /// # Ok(()) }
    /// ```
    pub fn http2(mut self, mode: Http2) -> Self {
        self.http2 = mode;
        self
    }

    /// Multiplexes the WebSockets this dialer (and its clones, and every
    /// dialer given the same `pool`) opens to one origin over one HTTP/2
    /// connection. Sets [`Http2::Prefer`] if HTTP/2 was [`Http2::Off`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), silverback::Error> {
    /// use silverback::{Dialer, H2Pool};
    /// let dialer = Dialer::new().http2_pool(H2Pool::new());
    /// let (a, _) = dialer.connect("wss://example.com/a").await?;
    /// let (b, _) = dialer.connect("wss://example.com/b").await?; // same connection
    /// # Ok(()) }
    /// ```
    pub fn http2_pool(mut self, pool: H2Pool) -> Self {
        if self.http2 == Http2::Off {
            self.http2 = Http2::Prefer;
        }
        self.h2_pool = Some(pool);
        self
    }
}

/// One stream of an HTTP/2 connection carrying a WebSocket: the transport
/// of [`MaybeTlsStream::Http2`].
///
/// Writes are bounded by the stream's HTTP/2 send window (the server's
/// flow control), reads release window as they consume. A `RST_STREAM` or
/// the end of the connection reads as end of stream or an error: the
/// WebSocket ends abnormally (1006), as it does when a TCP connection
/// drops.
pub struct H2Stream {
    io: TokioIo<Upgraded>,
    tls: bool,
    peer: Option<SocketAddr>,
}

impl H2Stream {
    /// Whether the HTTP/2 connection runs over TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The address of the server (or proxy) the HTTP/2 connection is
    /// connected to.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}

impl fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Stream")
            .field("tls", &self.tls)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        finished_is_ok(Pin::new(&mut self.get_mut().io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        finished_is_ok(Pin::new(&mut self.get_mut().io).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A server that has ended its side of the stream may reset ours with
/// `NO_ERROR` (RFC 9113 §8.1: "stop sending, the response is complete");
/// axum does once its WebSocket handler returns. Flushing or shutting down
/// then has nothing left to do: not a failure.
fn finished_is_ok(polled: Poll<io::Result<()>>) -> Poll<io::Result<()>> {
    match polled {
        Poll::Ready(Err(e)) if reset_reason(&e) == Some(h2::Reason::NO_ERROR) => {
            Poll::Ready(Ok(()))
        }
        other => other,
    }
}

/// The HTTP/2 reset reason inside an I/O error from hyper, if any.
fn reset_reason(e: &io::Error) -> Option<h2::Reason> {
    let mut source: Option<&(dyn std::error::Error + 'static)> =
        e.get_ref().map(|inner| inner as _);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason();
        }
        source = err.source();
    }
    None
}

/// HTTP/2 connections shared by WebSockets to the same origin:
/// [`Dialer::http2_pool`].
///
/// Cloning is cheap and shares the connections. A connection is keyed by
/// scheme, host, port, proxy and TLS configuration (the same
/// [`TlsConfig`](crate::tls::TlsConfig) value or its clones); dials to
/// the same key wait for the first one's connection rather than opening
/// their own. A connection that died (closed by the server, `GOAWAY`,
/// network failure) is dropped and the next dial opens a new one; the
/// WebSockets that were on it end abnormally (1006). A server that speaks
/// HTTP/2 without extended CONNECT is remembered for the life of its
/// connection: with [`Http2::Prefer`], later dials go straight to HTTP/1.1.
///
/// Dropping the pool does not close the connections of open WebSockets;
/// each HTTP/2 connection closes when its last WebSocket ends and no pool
/// holds it.
#[derive(Clone, Default)]
pub struct H2Pool {
    slots: Arc<Mutex<HashMap<PoolKey, Slot>>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<H2Conn>>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    secure: bool,
    host: String,
    port: u16,
    tls: usize,
    proxy: Option<String>,
}

impl fmt::Debug for H2Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Pool")
            .field("connections", &self.connections())
            .finish()
    }
}

impl H2Pool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many live HTTP/2 connections the pool holds (those being
    /// dialed are not counted).
    pub fn connections(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .values()
            .filter(|slot| {
                slot.try_lock()
                    .is_ok_and(|c| c.as_ref().is_some_and(|c| !c.send.is_closed()))
            })
            .count()
    }

    /// Drops every connection from the pool (the WebSockets on them stay
    /// open; new dials open new connections).
    pub fn clear(&self) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn slot(&self, key: PoolKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the keys whose connection died, so the map does not grow
        // with every origin ever dialed.
        slots.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot
                    .try_lock()
                    .map_or(true, |c| c.as_ref().is_some_and(|c| !c.send.is_closed()))
        });
        slots.entry(key).or_default().clone()
    }
}

/// One HTTP/2 connection: its request handle and what the server said.
#[derive(Clone)]
struct H2Conn {
    /// Tells connections apart (for [`forget`]).
    id: u64,
    send: SendRequest<Empty<Bytes>>,
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL` was in the server's SETTINGS.
    extended: bool,
    tls: bool,
    peer: Option<SocketAddr>,
}

/// What dialing for HTTP/2 gave.
enum Dialed {
    H2(H2Conn),
    /// TLS where ALPN did not pick `h2`: usable for HTTP/1.1 as it is.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Http1(ClientStream),
    /// No HTTP/2.
    Refused(Http2Error),
}

/// Why opening the stream failed.
enum OpenError {
    /// The connection failed before the server answered: another
    /// connection may do.
    Connection(Error),
    /// Anything else (refused, bad answer, stream reset).
    Other(Error),
}

fn h2_error(e: Http2Error) -> Error {
    Error::new(ErrorKind::Http2(e))
}

/// [`Dialer::connect`]'s single hop with HTTP/2 on.
pub(crate) async fn connect(
    dialer: &Dialer,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<(WebSocket<ClientStream>, Response<()>), Error> {
    let uri = parse_url(url)?;
    let target = Target::of(&uri);
    let mut retried = false;
    let refused = loop {
        let (dialed, reused) = match &dialer.h2_pool {
            Some(pool) => pooled(dialer, pool, &target).await?,
            None => (dial(dialer, &target).await?, false),
        };
        match dialed {
            Dialed::H2(conn) if conn.extended => {
                match open(dialer, &conn, &uri, url, headers).await {
                    Ok(opened) => return Ok(opened),
                    // A pooled connection that died since it was last
                    // used: once more on a fresh one.
                    Err(OpenError::Connection(e)) if reused && !retried => {
                        tracing::debug!(error = %e, "pooled HTTP/2 connection failed; redialing");
                        if let Some(pool) = &dialer.h2_pool {
                            forget(pool, dialer, &target, &conn).await;
                        }
                        retried = true;
                    }
                    Err(OpenError::Connection(e) | OpenError::Other(e)) => return Err(e),
                }
            }
            Dialed::H2(_) => break Http2Error::ExtendedConnectDisabled,
            Dialed::Http1(stream) => {
                if dialer.http2 == Http2::Require {
                    break Http2Error::NotNegotiated;
                }
                tracing::debug!(url, "ALPN chose HTTP/1.1");
                return dialer.http1_over(stream, url, headers).await;
            }
            Dialed::Refused(e) => break e,
        }
    };
    if dialer.http2 == Http2::Require {
        return Err(h2_error(refused));
    }
    tracing::debug!(url, reason = %refused, "falling back to HTTP/1.1");
    dialer.connect_http1(url, headers).await
}

fn pool_key(dialer: &Dialer, target: &Target) -> PoolKey {
    #[cfg(feature = "tls")]
    let tls = Arc::as_ptr(&dialer.tls_config().client) as usize;
    #[cfg(not(feature = "tls"))]
    let tls = 0;
    PoolKey {
        secure: target.secure,
        host: target.host.to_ascii_lowercase(),
        port: target.port,
        tls: if target.secure { tls } else { 0 },
        proxy: dialer.proxy_for(target).map(|p| format!("{p:?}")),
    }
}

/// The pool's connection for `target`, dialed if there is none alive.
async fn pooled(dialer: &Dialer, pool: &H2Pool, target: &Target) -> Result<(Dialed, bool), Error> {
    let slot = pool.slot(pool_key(dialer, target));
    let mut conn = slot.lock().await;
    if let Some(c) = conn.as_ref() {
        if !c.send.is_closed() {
            return Ok((Dialed::H2(c.clone()), true));
        }
        *conn = None;
    }
    let dialed = dial(dialer, target).await?;
    if let Dialed::H2(c) = &dialed {
        *conn = Some(c.clone());
    }
    Ok((dialed, false))
}

/// Drops `failed` from the pool (unless another dial replaced it already).
async fn forget(pool: &H2Pool, dialer: &Dialer, target: &Target, failed: &H2Conn) {
    let slot = pool.slot(pool_key(dialer, target));
    let mut conn = slot.lock().await;
    if conn.as_ref().is_some_and(|c| c.id == failed.id) {
        *conn = None;
    }
}

/// Connects to `target` for HTTP/2: TCP (through the proxy if any), TLS
/// with ALPN `h2` for `wss://`, the HTTP/2 handshake.
async fn dial(dialer: &Dialer, target: &Target) -> Result<Dialed, Error> {
    let tcp = dialer.dial_tcp(target).await?;
    let peer = tcp.peer_addr().ok();
    if target.secure {
        dial_tls(dialer, target, tcp, peer).await
    } else {
        handshake(tcp, false, peer).await
    }
}

#[cfg(feature = "tls")]
async fn dial_tls(
    dialer: &Dialer,
    target: &Target,
    tcp: tokio::net::TcpStream,
    peer: Option<SocketAddr>,
) -> Result<Dialed, Error> {
    let client = crate::tls::with_h2_alpn(dialer.tls_config());
    let tls = crate::tls::connect_with(client, &target.host, tcp).await?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Ok(Dialed::Http1(MaybeTlsStream::Tls(Box::new(tls))));
    }
    handshake(tls, true, peer)
        .await
        .map_err(crate::client::tls_failure_as_tls_error)
}

#[cfg(not(feature = "tls"))]
async fn dial_tls(
    _dialer: &Dialer,
    _target: &Target,
    _tcp: tokio::net::TcpStream,
    _peer: Option<SocketAddr>,
) -> Result<Dialed, Error> {
    Err(Error::new(ErrorKind::InvalidUrl(
        "wss:// needs the `tls` feature of silverback".into(),
    )))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The HTTP/2 handshake over `io`, then waits for the server's SETTINGS
/// (RFC 8441 §3: no `:protocol` before the server has said it takes it).
async fn handshake<T>(io: T, tls: bool, peer: Option<SocketAddr>) -> Result<Dialed, Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ack_tx, ack_rx) = oneshot::channel();
    let io = TokioIo::new(SettingsAck::new(io, ack_tx));
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| h2_error(Http2Error::Connection(io::Error::other(e))))?;
    let (settings_tx, settings_rx) = oneshot::channel::<bool>();
    // Drives the connection's request side; hyper runs the connection
    // itself (and each stream's sender) in tasks of its own.
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        let mut ack_rx = Some(ack_rx);
        let mut settings_tx = Some(settings_tx);
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "HTTP/2 connection ended");
                    }
                    break;
                }
                acked = async { ack_rx.as_mut().expect("guarded").await }, if ack_rx.is_some() => {
                    ack_rx = None;
                    if acked.is_ok() {
                        // h2 applies the server's SETTINGS as it queues
                        // the ACK: the flag is now the server's.
                        let extended = conn.as_ref().get_ref().is_extended_connect_protocol_enabled();
                        if let Some(tx) = settings_tx.take() {
                            let _ = tx.send(extended);
                        }
                    }
                }
            }
        }
    });
    match settings_rx.await {
        Ok(extended) => Ok(Dialed::H2(H2Conn {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            send,
            extended,
            tls,
            peer,
        })),
        // The connection ended before the server's SETTINGS: it does not
        // speak HTTP/2 (e.g. an HTTP/1.1 server answering the preface
        // with a 400).
        Err(_) => Ok(Dialed::Refused(Http2Error::NotNegotiated)),
    }
}

/// Opens the WebSocket as an extended CONNECT stream of `conn`.
async fn open(
    dialer: &Dialer,
    conn: &H2Conn,
    uri: &Uri,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<(WebSocket<ClientStream>, Response<()>), OpenError> {
    let protocols = dialer.protocols();
    let req = extended_connect(dialer, uri, &protocols, headers).map_err(OpenError::Other)?;
    let mut send = conn.send.clone();
    let mut resp = match send.send_request(req).await {
        Ok(resp) => resp,
        Err(e) => return Err(classify(e)),
    };
    if resp.status() != StatusCode::OK {
        let (parts, body) = resp.into_parts();
        let body = read_error_body(body).await;
        return Err(OpenError::Other(Error::new(ErrorKind::HttpStatus(
            Box::new(Response::from_parts(parts, body)),
        ))));
    }
    let (protocol, params) =
        validate_negotiation(&resp, &protocols, dialer.config.compression.as_ref())
            .map_err(|e| OpenError::Other(Error::new(ErrorKind::Handshake(e))))?;
    let upgraded = hyper::upgrade::on(&mut resp)
        .await
        .map_err(|e| OpenError::Other(h2_error(Http2Error::Connection(io::Error::other(e)))))?;
    let stream = MaybeTlsStream::Http2(Box::new(H2Stream {
        io: TokioIo::new(upgraded),
        tls: conn.tls,
        peer: conn.peer,
    }));
    let mut ws = WebSocket::from_raw_socket(stream, Role::Client, dialer.config, &[]);
    ws.opened(protocol, params, url);
    let (parts, _) = resp.into_parts();
    Ok((ws, Response::from_parts(parts, ())))
}

/// Headers that may not travel in HTTP/2 (RFC 9113 §8.2.2), or that the
/// pseudo-headers replace.
fn is_h2_forbidden(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::CONNECTION
        || name == header::UPGRADE
        || name == header::TRANSFER_ENCODING
        || name == "keep-alive"
        || name == "proxy-connection"
        || name == header::SEC_WEBSOCKET_KEY
}

/// The RFC 8441 request for `uri`.
fn extended_connect(
    dialer: &Dialer,
    uri: &Uri,
    protocols: &[&str],
    headers: &[(HeaderName, HeaderValue)],
) -> Result<Request<Empty<Bytes>>, Error> {
    let scheme = if uri.scheme_str() == Some("wss") {
        "https"
    } else {
        "http"
    };
    let authority = uri.authority().map_or("", |a| a.as_str());
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut b = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("{scheme}://{authority}{path}"))
        .header(header::SEC_WEBSOCKET_VERSION, "13");
    if !protocols.is_empty() {
        b = b.header(header::SEC_WEBSOCKET_PROTOCOL, protocols.join(", "));
    }
    if let Some(cfg) = &dialer.config.compression {
        b = b.header(header::SEC_WEBSOCKET_EXTENSIONS, deflate::client_offer(cfg));
    }
    for (name, value) in headers.iter().filter(|(n, _)| !is_h2_forbidden(n)) {
        b = b.header(name, value);
    }
    let mut req = b
        .body(Empty::new())
        .map_err(|e| Error::new(ErrorKind::InvalidUrl(e.to_string())))?;
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    Ok(req)
}

/// What a failed CONNECT request means.
fn classify(e: hyper::Error) -> OpenError {
    let h2 = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<h2::Error>());
    if let Some(h2) = h2 {
        if h2.is_reset() && !h2.is_go_away() {
            let code = h2.reason().map_or(0, u32::from);
            return OpenError::Other(h2_error(Http2Error::StreamReset(code)));
        }
    }
    OpenError::Connection(h2_error(Http2Error::Connection(io::Error::other(e))))
}

/// The body of a refused CONNECT: at most [`MAX_ERROR_BODY`] bytes,
/// within a short time.
async fn read_error_body(mut body: hyper::body::Incoming) -> Bytes {
    let mut buf = BytesMut::new();
    let read = async {
        while buf.len() < MAX_ERROR_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = MAX_ERROR_BODY - buf.len();
                        buf.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    buf.freeze()
}

/// The client's transport, watching what h2 writes for the `SETTINGS`
/// acknowledgement: h2 queues it as it applies the server's first
/// SETTINGS, so once it is written the connection knows whether the
/// server takes extended CONNECT. (hyper exposes the flag, not the moment
/// the server's SETTINGS arrived; until then it reads `false`.)
struct SettingsAck<T> {
    io: T,
    scan: Option<AckScan>,
}

struct AckScan {
    /// Bytes of the client connection preface still to skip.
    preface: usize,
    /// The frame header being read.
    head: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    found: Option<oneshot::Sender<()>>,
}

impl AckScan {
    /// Scans written bytes; true once a SETTINGS frame with ACK went by.
    fn scan(&mut self, mut data: &[u8]) -> bool {
        let n = self.preface.min(data.len());
        self.preface -= n;
        data = &data[n..];
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (9 - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 9 {
                self.have = 0;
                let [l0, l1, l2, kind, flags, ..] = self.head;
                if kind == 0x4 && flags & 0x1 != 0 {
                    return true;
                }
                self.skip = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            }
        }
        false
    }
}

impl<T> SettingsAck<T> {
    fn new(io: T, found: oneshot::Sender<()>) -> Self {
        Self {
            io,
            scan: Some(AckScan {
                preface: 24,
                head: [0; 9],
                have: 0,
                skip: 0,
                found: Some(found),
            }),
        }
    }

    fn written<'a>(&mut self, bufs: impl Iterator<Item = &'a [u8]>, mut n: usize) {
        let Some(scan) = &mut self.scan else { return };
        for buf in bufs {
            if n == 0 {
                break;
            }
            let part = &buf[..buf.len().min(n)];
            n -= part.len();
            if scan.scan(part) {
                if let Some(tx) = scan.found.take() {
                    let _ = tx.send(());
                }
                self.scan = None;
                return;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SettingsAck<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SettingsAck<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            this.written(std::iter::once(buf), n);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            this.written(bufs.iter().map(|b| &**b), n);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn settings_ack_found_across_writes() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(0x4, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
        wire.extend(frame(0x8, 0, &[0, 0, 0x10, 0])); // WINDOW_UPDATE
        wire.extend(frame(0x4, 0x1, &[])); // SETTINGS ACK
        for chunk in [1, 2, 5, 9, 100] {
            let mut scan = AckScan {
                preface: 24,
                head: [0; 9],
                have: 0,
                skip: 0,
                found: None,
            };
            let found = wire.chunks(chunk).position(|c| scan.scan(c));
            assert_eq!(found, Some((wire.len() - 1) / chunk), "chunk {chunk}");
        }
        // A payload byte that looks like an ACK header is skipped.
        let mut scan = AckScan {
            preface: 0,
            head: [0; 9],
            have: 0,
            skip: 0,
            found: None,
        };
        assert!(!scan.scan(&frame(0x0, 0, &[0, 0, 0, 4, 1, 0, 0, 0, 0])));
    }
}
