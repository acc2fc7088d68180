//! The server side: [`Upgrader`] turns an HTTP upgrade request into a
//! [`WebSocket`], on a raw transport or (feature `hyper`) in a hyper service.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use silverback_proto::extension::deflate::{self, DeflateConfig, DeflateParams};
use silverback_proto::handshake::server::{
    accept_response, extended_connect_response, is_extended_connect, negotiate_subprotocol,
    parse_request, same_origin, validate_extended_connect, validate_request, write_accept_response,
    write_response, Rejection,
};
use silverback_proto::handshake::HeadLimits;
use silverback_proto::Role;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::auth::{authorize, is_token_protocol, AuthorizeHook};
use crate::error::{Error, ErrorKind, Timeout};
use crate::request::{Identity, UpgradeInfo};
use crate::{Config, WebSocket};

/// The parts of an upgrade request an origin check can look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The headers.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestHead<'a> {
    /// The head of `req`.
    pub fn of<B>(req: &'a Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
        }
    }

    /// The `Origin` header, if present and text.
    pub fn origin(&self) -> Option<&'a str> {
        self.headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
    }

    /// The `Host` header, if present and text.
    pub fn host(&self) -> Option<&'a str> {
        self.headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
    }
}

type OriginCheck = Arc<dyn Fn(&RequestHead<'_>) -> bool + Send + Sync>;

/// Upgrades HTTP requests to WebSocket connections: gorilla's `Upgrader`.
///
/// Cheap to clone (share one per server). Defaults are safe: a browser
/// request from another origin is refused with 403 (requests without
/// `Origin` are allowed), messages are limited to 64 MiB and frames to
/// 16 MiB, the handshake must complete in 10 s.
///
/// ```no_run
/// use silverback::{CloseCode, Message, Upgrader};
/// use tokio::net::TcpListener;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let upgrader = Upgrader::new()
///     .read_buffer_size(1024)
///     .write_buffer_size(1024)
///     .check_origin(|_req| true); // accept any origin, as the Go article does
/// let listener = TcpListener::bind("127.0.0.1:8080").await?;
/// loop {
///     let (stream, _) = listener.accept().await?;
///     let upgrader = upgrader.clone();
///     tokio::spawn(async move {
///         let Ok(mut ws) = upgrader.upgrade(stream).await else { return };
///         loop {
///             match ws.recv().await {
///                 Ok(msg) => { if ws.send(msg).await.is_err() { break } }
///                 Err(e) if e.is_unexpected_close(&[CloseCode::GoingAway]) => {
///                     eprintln!("unexpected close: {e}");
///                     break;
///                 }
///                 Err(_) => break,
///             }
///         }
///     });
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Upgrader {
    pub(crate) config: Arc<Config>,
    check_origin: Option<OriginCheck>,
    subprotocols: Arc<[String]>,
    head_limits: HeadLimits,
    /// Added to every 101 response (checked by `check_response_header`).
    pub(crate) response_headers: Arc<[(HeaderName, HeaderValue)]>,
    pub(crate) authorize: Option<AuthorizeHook>,
    pub(crate) keep_request_headers: bool,
}

impl Default for Upgrader {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Upgrader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrader")
            .field("config", &self.config)
            .field("custom_origin_check", &self.check_origin.is_some())
            .field("subprotocols", &self.subprotocols)
            .field("head_limits", &self.head_limits)
            .field("response_headers", &self.response_headers)
            .field("authorize", &self.authorize.is_some())
            .field("keep_request_headers", &self.keep_request_headers)
            .finish()
    }
}

/// What an upgrader decided for an acceptable request, before any
/// response is built.
struct Decided {
    extended: bool,
    key: HeaderValue,
    protocol: Option<String>,
    deflate: Option<DeflateParams>,
    /// `deflate` as its response header.
    ext_header: Option<String>,
}

/// What [`Upgrader::negotiate`] decided for an acceptable request.
#[derive(Debug)]
pub struct Accepted {
    /// The response to send: `101 Switching Protocols` to an HTTP/1.1
    /// Upgrade, `200 OK` to an HTTP/2 extended CONNECT.
    pub response: Response<()>,
    /// The subprotocol chosen.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters agreed, if any.
    pub deflate: Option<DeflateParams>,
}

impl Upgrader {
    /// An upgrader with the default settings.
    pub fn new() -> Self {
        Self {
            config: Arc::default(),
            check_origin: None,
            subprotocols: Arc::from(Vec::new()),
            head_limits: HeadLimits::default(),
            response_headers: Arc::from(Vec::new()),
            authorize: None,
            keep_request_headers: false,
        }
    }

    /// Replaces all connection settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// See [`Config::read_buffer_size`].
    pub fn read_buffer_size(mut self, n: usize) -> Self {
        self.config = Arc::new(self.config.read_buffer_size(n));
        self
    }

    /// See [`Config::write_buffer_size`].
    pub fn write_buffer_size(mut self, n: usize) -> Self {
        self.config = Arc::new(self.config.write_buffer_size(n));
        self
    }

    /// See [`Config::max_message_size`].
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.config = Arc::new(self.config.max_message_size(n));
        self
    }

    /// See [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.config = Arc::new(self.config.max_frame_size(n));
        self
    }

    /// Accepts permessage-deflate offers with `deflate`
    /// ([`Config::compression`]).
    pub fn compression(mut self, deflate: DeflateConfig) -> Self {
        self.config = Arc::new(self.config.compression(Some(deflate)));
        self
    }

    /// See [`Config::handshake_timeout`].
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.config = Arc::new(self.config.handshake_timeout(d));
        self
    }

    /// See [`Config::close_timeout`].
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.config = Arc::new(self.config.close_timeout(d));
        self
    }

    /// Replaces the origin policy. Return `true` to accept the request.
    /// The default is [`same_origin`]: no `Origin` header, or an origin
    /// whose host and port equal the `Host` header.
    pub fn check_origin<F>(mut self, f: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.check_origin = Some(Arc::new(f));
        self
    }

    /// The subprotocols this server speaks, most preferred first. The
    /// first one the client also offers is chosen. An offered entry that
    /// carries a token ([`TOKEN_PROTOCOL_PREFIX`](crate::TOKEN_PROTOCOL_PREFIX))
    /// is never chosen.
    pub fn subprotocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Largest request head accepted (default 16 KiB) and most header
    /// fields (default 64); beyond either, 431.
    pub fn max_request_head(mut self, bytes: usize, headers: usize) -> Self {
        self.head_limits = HeadLimits {
            max_head_size: bytes,
            max_headers: headers,
        };
        self
    }

    /// Decides on an upgrade request: validation (RFC 6455 §4.2.1), the
    /// origin policy (403), the subprotocol; the response carries the
    /// [`response_header`](Self::response_header)s. It does not run the
    /// [`authorize`](Self::authorize) hook: [`upgrade`](Self::upgrade),
    /// [`Incoming::upgrade`] and `upgrade_hyper` do.
    ///
    /// An HTTP/2 `CONNECT` is an extended CONNECT (RFC 8441): its
    /// `:protocol` is read from the request's extensions (hyper's
    /// `hyper::ext::Protocol`, feature `hyper`), it is validated by
    /// [`validate_extended_connect`](crate::proto::handshake::server::validate_extended_connect)
    /// (400 without `:protocol`, 501 for another protocol), and the answer
    /// is `200 OK` without `Sec-WebSocket-Accept`. Origin policy,
    /// subprotocols, compression and headers are the same as on HTTP/1.1.
    pub fn negotiate<B>(&self, req: &Request<B>) -> Result<Accepted, Rejection> {
        let n = self.decide(req)?;
        let mut response = if n.extended {
            extended_connect_response(n.protocol.as_deref(), n.ext_header.as_deref())?
        } else {
            accept_response(&n.key, n.protocol.as_deref(), n.ext_header.as_deref())?
        };
        for (name, value) in self.response_headers.iter() {
            response.headers_mut().append(name.clone(), value.clone());
        }
        Ok(Accepted {
            response,
            protocol: n.protocol,
            deflate: n.deflate,
        })
    }

    /// What [`negotiate`](Self::negotiate) decides, before a response is
    /// built from it.
    fn decide<B>(&self, req: &Request<B>) -> Result<Decided, Rejection> {
        let extended = is_extended_connect(req);
        let mut up = if extended {
            validate_extended_connect(req, connect_protocol(req))?
        } else {
            validate_request(req)?
        };
        up.protocols.retain(|p| !is_token_protocol(p));
        let head = RequestHead::of(req);
        let allowed = match &self.check_origin {
            Some(check) => check(&head),
            None => same_origin(req),
        };
        if !allowed {
            return Err(Rejection::new(
                http::StatusCode::FORBIDDEN,
                "cross-origin WebSocket request refused",
            ));
        }
        let protocol = negotiate_subprotocol(&up.protocols, &self.subprotocols).map(str::to_owned);
        let deflate = self.config.compression.as_ref().and_then(|cfg| {
            deflate::server_negotiate(up.extensions.iter().map(String::as_str), cfg)
        });
        let ext_header = deflate.map(|p| p.to_string());
        Ok(Decided {
            extended,
            key: up.key,
            protocol,
            deflate,
            ext_header,
        })
    }

    /// The answer to an accepted HTTP/1.1 upgrade, ready to write, with
    /// what was agreed: written directly when nothing but the handshake's
    /// own headers goes in it (no authorize hook, no extra response
    /// header), else built as [`negotiate`](Self::negotiate) does and
    /// completed by the hook.
    async fn answer(
        &self,
        req: &Request<()>,
    ) -> Result<
        (
            Vec<u8>,
            Option<String>,
            Option<DeflateParams>,
            Option<Identity>,
        ),
        Rejection,
    > {
        let mut out = Vec::with_capacity(256);
        if self.authorize.is_none() && self.response_headers.is_empty() {
            let n = self.decide(req)?;
            if !n.extended {
                write_accept_response(
                    &n.key,
                    n.protocol.as_deref(),
                    n.ext_header.as_deref(),
                    &mut out,
                )?;
                return Ok((out, n.protocol, n.deflate, None));
            }
        }
        let acc = self.negotiate(req)?;
        let (acc, identity) = authorize(acc, self.start_authorize(req)).await?;
        write_response(&acc.response.map(|()| ""), &mut out);
        Ok((out, acc.protocol, acc.deflate, identity))
    }

    /// Reads the HTTP request from `stream`, and upgrades it (or refuses
    /// it with the right HTTP response). The whole handshake is bounded by
    /// the handshake timeout.
    pub async fn upgrade<S>(&self, stream: S) -> Result<WebSocket<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.read_request(stream).await?.upgrade(self).await
    }

    /// Reads the HTTP request head from `stream` (bounded in size and by
    /// the handshake timeout), for a server that routes before upgrading.
    /// A malformed or oversized head is answered with 400/431.
    pub async fn read_request<S>(&self, stream: S) -> Result<Incoming<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.read_request_buffered(stream, BytesMut::with_capacity(1024))
            .await
    }

    /// [`read_request`](Self::read_request) for a stream whose first bytes
    /// were already read into `buf` (by a server that looked at them to
    /// tell an HTTP/2 preface or a TLS hello from an HTTP/1.1 request):
    /// they are parsed first, the rest is read from `stream`.
    ///
    /// ```no_run
    /// use bytes::BytesMut;
    /// use tokio::io::AsyncReadExt;
    /// # async fn f(mut stream: tokio::net::TcpStream) -> Result<(), silverback::Error> {
    /// let mut buf = BytesMut::with_capacity(1024);
    /// stream.read_buf(&mut buf).await?;
    /// if !buf.starts_with(b"PRI * HTTP/2.0") {
    ///     let upgrader = silverback::Upgrader::new();
    ///     let ws = upgrader.read_request_buffered(stream, buf).await?.upgrade(&upgrader).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_request_buffered<S>(
        &self,
        mut stream: S,
        mut buf: BytesMut,
    ) -> Result<Incoming<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let deadline = Instant::now() + self.config.handshake_timeout;
        let read = async {
            loop {
                match parse_request(&buf, self.head_limits) {
                    Ok(Some((req, len))) => {
                        let _ = buf.split_to(len);
                        return Ok(req);
                    }
                    Ok(None) => {}
                    Err(rej) => return Err(Some(rej)),
                }
                buf.reserve(1024);
                match stream.read_buf(&mut buf).await {
                    Ok(0) => return Err(None),
                    Ok(_) => {}
                    Err(_) => return Err(None),
                }
            }
        };
        match tokio::time::timeout_at(deadline, read).await {
            Err(_) => {
                crate::metrics::rejected_timeout();
                Err(Error::new(ErrorKind::Timeout(Timeout::Handshake)))
            }
            Ok(Err(None)) => Err(Error::new(ErrorKind::Io(
                std::io::ErrorKind::UnexpectedEof.into(),
            ))),
            Ok(Err(Some(rej))) => {
                crate::metrics::rejected(&rej);
                let _ = tokio::time::timeout_at(deadline, send_rejection(&mut stream, &rej)).await;
                Err(Error::new(ErrorKind::Rejected(rej)))
            }
            Ok(Ok(request)) => Ok(Incoming {
                request,
                stream,
                buffered: buf,
                deadline,
            }),
        }
    }
}

/// The `:protocol` pseudo-header of an HTTP/2 request, as hyper hands
/// it over.
#[cfg(feature = "hyper")]
fn connect_protocol<B>(req: &Request<B>) -> Option<&str> {
    req.extensions()
        .get::<::hyper::ext::Protocol>()
        .map(::hyper::ext::Protocol::as_str)
}

/// Without hyper there is no HTTP/2 server to hand over a `:protocol`.
#[cfg(not(feature = "hyper"))]
fn connect_protocol<B>(_req: &Request<B>) -> Option<&str> {
    None
}

async fn send_rejection<S: AsyncWrite + Unpin>(
    stream: &mut S,
    rej: &Rejection,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    write_response(&rej.to_response(), &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// An HTTP request read from a raw transport, not yet upgraded: route on
/// it, then [`upgrade`](Self::upgrade) it or [`respond`](Self::respond).
///
/// ```no_run
/// # async fn f(stream: tokio::net::TcpStream) -> Result<(), silverback::Error> {
/// let upgrader = silverback::Upgrader::new();
/// let incoming = upgrader.read_request(stream).await?;
/// if incoming.request().uri().path() == "/ws" {
///     let mut ws = incoming.upgrade(&upgrader).await?;
///     // ...
/// } else {
///     let resp = http::Response::builder().status(404).body("not found\n").unwrap();
///     incoming.respond(resp).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Incoming<S> {
    request: Request<()>,
    stream: S,
    buffered: BytesMut,
    deadline: Instant,
}

impl<S> Incoming<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The request head.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// Whether it asks for a WebSocket upgrade (`Upgrade: websocket`).
    pub fn is_upgrade(&self) -> bool {
        silverback_proto::handshake::header_has_token(
            self.request.headers(),
            http::header::UPGRADE,
            "websocket",
        )
    }

    /// Upgrades: sends `101 Switching Protocols` and returns the
    /// connection, or sends the refusal (400, 403, 405, 426, with a one-line
    /// body, or the authorize hook's) and returns [`ErrorKind::Rejected`].
    /// Bytes the client sent right after its request are kept for the
    /// WebSocket.
    pub async fn upgrade(mut self, upgrader: &Upgrader) -> Result<WebSocket<S>, Error> {
        let negotiated = tokio::time::timeout_at(self.deadline, upgrader.answer(&self.request))
            .await
            .map_err(|_| {
                crate::metrics::rejected_timeout();
                Error::new(ErrorKind::Timeout(Timeout::Handshake))
            })?;
        match negotiated {
            Ok((out, protocol, deflate, identity)) => {
                let write = async {
                    self.stream.write_all(&out).await?;
                    self.stream.flush().await
                };
                match tokio::time::timeout_at(self.deadline, write).await {
                    Err(_) => {
                        crate::metrics::rejected_timeout();
                        return Err(Error::new(ErrorKind::Timeout(Timeout::Handshake)));
                    }
                    Ok(Err(e)) => return Err(Error::new(ErrorKind::Io(e))),
                    Ok(Ok(())) => {}
                }
                let mut ws = WebSocket::with_shared_config(
                    self.stream,
                    Role::Server,
                    upgrader.config.clone(),
                    &self.buffered,
                );
                ws.opened(protocol, deflate, self.request.uri().path());
                let headers = upgrader
                    .keep_request_headers
                    .then(|| Box::new(std::mem::take(self.request.headers_mut())));
                ws.upgrade = Some(Box::new(UpgradeInfo {
                    target: UpgradeInfo::target_of(self.request.uri()),
                    identity,
                    headers,
                }));
                Ok(ws)
            }
            Err(rej) => {
                tracing::debug!(rejection = %rej, "upgrade refused");
                crate::metrics::rejected(&rej);
                let _ =
                    tokio::time::timeout_at(self.deadline, send_rejection(&mut self.stream, &rej))
                        .await;
                Err(Error::new(ErrorKind::Rejected(rej)))
            }
        }
    }

    /// Answers with a plain HTTP response (a `Content-Length` is added)
    /// and closes the connection.
    pub async fn respond<B: AsRef<[u8]>>(mut self, response: Response<B>) -> Result<(), Error> {
        let mut out = Vec::new();
        write_response(&response, &mut out);
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await?;
            self.stream.shutdown().await
        };
        match tokio::time::timeout_at(self.deadline, write).await {
            Err(_) => Err(Error::new(ErrorKind::Timeout(Timeout::Handshake))),
            Ok(r) => r.map_err(Error::from),
        }
    }

    /// The request, the transport and the bytes read past the request head.
    pub fn into_parts(self) -> (Request<()>, S, BytesMut) {
        (self.request, self.stream, self.buffered)
    }
}
