//! The client side: [`Dialer`] opens `ws://` and `wss://` connections,
//! directly or through a proxy, or runs the handshake over a transport you
//! connected yourself.

use std::borrow::Cow;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode, Uri};
use silverback_proto::extension::deflate;
use silverback_proto::handshake::client::{
    build_request, generate_key, parse_response, validate_response_with, write_request,
};
use silverback_proto::handshake::HeadLimits;
use silverback_proto::Role;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, ErrorKind, RedirectRefusal, Timeout};
use crate::proxy::Proxy;
use crate::stream::MaybeTlsStream;
use crate::{Config, WebSocket};

/// What a [`Dialer`] connects over: TCP, with TLS for `wss://`.
pub type ClientStream = MaybeTlsStream<TcpStream>;

/// Largest error body kept from a refused handshake.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

/// Request headers set with [`Dialer::header`] that are credentials: not
/// sent again after a redirect to another origin.
const CREDENTIAL_HEADERS: [HeaderName; 3] = [
    http::header::AUTHORIZATION,
    http::header::COOKIE,
    http::header::PROXY_AUTHORIZATION,
];

#[derive(Debug, Clone, Default)]
enum ProxyMode {
    /// From `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`.
    #[default]
    Env,
    None,
    Explicit(Proxy),
}

/// Opens client connections: gorilla's `Dialer`.
///
/// ```no_run
/// # async fn f() -> Result<(), silverback::Error> {
/// use silverback::{Dialer, Message};
/// let (mut ws, _response) = Dialer::new()
///     .subprotocols(["chat"])
///     .header("authorization", "Bearer token")
///     .connect("wss://example.com/ws")
///     .await?;
/// ws.send(Message::text("hello")).await?;
/// let reply = ws.recv().await?;
/// # Ok(()) }
/// ```
///
/// Proxies come from the environment by default (`HTTPS_PROXY` for
/// `wss://`, `HTTP_PROXY` for `ws://`, then `ALL_PROXY`, minus `NO_PROXY`;
/// loopback hosts are always dialed directly); [`proxy`](Self::proxy) sets
/// one explicitly and [`no_proxy`](Self::no_proxy) turns them off.
///
/// With the `http2` feature (on by default), `Dialer::http2` opens the
/// WebSocket as a stream of an HTTP/2 connection (RFC 8441) and
/// `Dialer::http2_pool` shares one connection between the WebSockets to an
/// origin.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    pub(crate) config: Config,
    protocols: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    proxy: ProxyMode,
    max_redirects: usize,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
    #[cfg(feature = "http2")]
    pub(crate) http2: crate::h2_client::Http2,
    #[cfg(feature = "http2")]
    pub(crate) h2_pool: Option<crate::h2_client::H2Pool>,
}

/// Where a URL is dialed.
pub(crate) struct Target {
    pub(crate) secure: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    pub(crate) fn of(uri: &Uri) -> Self {
        let secure = uri.scheme_str() == Some("wss");
        let host = uri.host().unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        Self { secure, host, port }
    }
}

impl Dialer {
    /// A dialer with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the connection settings (limits, buffers, timeouts,
    /// keepalive), shared with the server side.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// See [`Config::handshake_timeout`]: bounds dialing, proxy, TLS and
    /// the HTTP upgrade together (for each hop when redirects are
    /// followed).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.config = self.config.handshake_timeout(d);
        self
    }

    /// Offers permessage-deflate with `deflate` ([`Config::compression`]).
    pub fn compression(
        mut self,
        deflate: silverback_proto::extension::deflate::DeflateConfig,
    ) -> Self {
        self.config = self.config.compression(Some(deflate));
        self
    }

    /// Subprotocols to offer, most preferred first; the chosen one is
    /// [`WebSocket::protocol`].
    pub fn subprotocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a request header (e.g. `Authorization`, `Cookie`).
    ///
    /// # Panics
    /// If `name` or `value` is not a valid header name or value; see
    /// [`try_header`](Self::try_header).
    pub fn header(self, name: &str, value: &str) -> Self {
        self.try_header(name, value)
            .expect("valid header name and value")
    }

    /// Adds a request header, or fails if it is not valid HTTP.
    pub fn try_header(mut self, name: &str, value: &str) -> Result<Self, Error> {
        let invalid = |what: &str| {
            Error::new(ErrorKind::InvalidUrl(format!(
                "invalid header {what}: {name:?}"
            )))
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid("value"))?;
        self.headers.push((name, value));
        Ok(self)
    }

    /// Sets the `Origin` header (what a browser would send).
    pub fn origin(self, origin: &str) -> Self {
        self.header("origin", origin)
    }

    /// Dials through `proxy` (HTTP CONNECT or SOCKS5), whatever the
    /// environment says.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = ProxyMode::Explicit(proxy);
        self
    }

    /// Dials directly, ignoring proxy environment variables.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxyMode::None;
        self
    }

    /// Follows up to `n` HTTP redirects answered to the upgrade request
    /// (default 0: a redirect is an [`ErrorKind::HttpStatus`] error).
    ///
    /// A redirect is a `301`, `302`, `303`, `307` or `308` response with a
    /// `Location` header. `Location` may be absolute (`ws://`, `wss://`,
    /// or `http://`/`https://`, which stand for `ws://`/`wss://`) or
    /// relative (`//host/path`, `/path`, `path`, `../path`, `?query`),
    /// resolved against the URL that was redirected (RFC 3986 §5.2); its
    /// fragment is ignored. A `Location` that cannot be followed (another
    /// scheme, user info such as `ws://user:pass@host/`, not a valid URL)
    /// leaves the redirect as the [`ErrorKind::HttpStatus`] error, as does
    /// the redirect after the `n`th. Each hop gets its own
    /// [`handshake_timeout`](Self::handshake_timeout).
    ///
    /// What a redirect may not do:
    /// - **Carry credentials to another origin.** The `Authorization`,
    ///   `Cookie` and `Proxy-Authorization` headers set with
    ///   [`header`](Self::header) are sent to the URL given to
    ///   [`connect`](Self::connect) and to redirects that stay on its
    ///   origin, and to no other: once a redirect leaves the origin they
    ///   are dropped for every later hop, even one that comes back. The
    ///   origin is the scheme, the host and the port (the default port
    ///   filled in, the host compared without regard to case), so a change
    ///   of any of them counts. curl (since 7.83) also strips credentials
    ///   when the port or scheme changes, browsers compare whole origins;
    ///   a server on another port of the same host is not necessarily the
    ///   same party, and stripping too often only costs a refused
    ///   handshake, while stripping too rarely leaks a secret. Other
    ///   headers (e.g. `X-Custom`), [`origin`](Self::origin) and the
    ///   [`subprotocols`](Self::subprotocols) are sent on every hop.
    /// - **Downgrade TLS.** A redirect from `wss://` to `ws://` is refused
    ///   with an [`ErrorKind::RedirectRefused`] error naming both URLs
    ///   ([`RedirectRefusal::TlsDowngrade`],
    ///   [`Error::is_redirect_refused`]); nothing is sent to the `ws://`
    ///   URL.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), silverback::Error> {
    /// use silverback::Dialer;
    /// // Sent to ws.example.com only: a redirect to ws2.example.com gets
    /// // no Authorization header, X-Client on every hop.
    /// let (ws, _response) = Dialer::new()
    ///     .header("authorization", "Bearer token")
    ///     .header("x-client", "demo")
    ///     .follow_redirects(3)
    ///     .connect("wss://ws.example.com/chat")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn follow_redirects(mut self, n: usize) -> Self {
        self.max_redirects = n;
        self
    }

    /// TLS settings for `wss://` (default: [`TlsConfig::default`](crate::tls::TlsConfig),
    /// the webpki roots).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Dials `url` (`ws://` or `wss://`, IPv6 literals in brackets) and runs
    /// the handshake, all within the handshake timeout. Returns the
    /// connection and the server's `101` response. Redirects are followed
    /// only when asked, and never with credentials to another origin nor
    /// from `wss://` to `ws://`: see
    /// [`follow_redirects`](Self::follow_redirects).
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<(WebSocket<ClientStream>, Response<()>), Error> {
        let mut url = url.to_owned();
        let mut redirects = 0;
        // Whether the Authorization/Cookie/Proxy-Authorization headers are
        // still sent: until a redirect leaves the origin of `url`.
        let mut same_origin = true;
        loop {
            let headers = self.request_headers(same_origin);
            let attempt = tokio::time::timeout(
                self.config.handshake_timeout,
                self.connect_once(&url, &headers),
            );
            let result = attempt
                .await
                .map_err(|_| Error::new(ErrorKind::Timeout(Timeout::Handshake)))?;
            let err = match result {
                Err(e) if redirects < self.max_redirects => e,
                other => return other,
            };
            let from = parse_url(&url)?;
            let Some((next, to)) = redirect_target(&err, &from) else {
                return Err(err);
            };
            if is_tls_downgrade(&from, &to) {
                return Err(Error::new(ErrorKind::RedirectRefused {
                    from: url.into(),
                    to: next.into(),
                    reason: RedirectRefusal::TlsDowngrade,
                }));
            }
            same_origin = same_origin && Origin::of(&from) == Origin::of(&to);
            tracing::debug!(
                from = %url,
                to = %next,
                credentials = same_origin,
                "following redirect"
            );
            url = next;
            redirects += 1;
        }
    }

    /// The headers set with [`header`](Self::header), without the
    /// credentials unless `with_credentials`.
    fn request_headers(&self, with_credentials: bool) -> Cow<'_, [(HeaderName, HeaderValue)]> {
        if with_credentials {
            Cow::Borrowed(&self.headers)
        } else {
            Cow::Owned(
                self.headers
                    .iter()
                    .filter(|(name, _)| !CREDENTIAL_HEADERS.contains(name))
                    .cloned()
                    .collect(),
            )
        }
    }

    async fn connect_once(
        &self,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<(WebSocket<ClientStream>, Response<()>), Error> {
        #[cfg(feature = "http2")]
        if self.http2 != crate::h2_client::Http2::Off {
            return crate::h2_client::connect(self, url, headers).await;
        }
        self.connect_http1(url, headers).await
    }

    /// The proxy to dial `target` through, if any.
    pub(crate) fn proxy_for(&self, target: &Target) -> Option<Proxy> {
        match &self.proxy {
            ProxyMode::Env => {
                Proxy::from_env(if target.secure { "wss" } else { "ws" }, &target.host)
            }
            ProxyMode::None => None,
            ProxyMode::Explicit(p) => Some(p.clone()),
        }
    }

    /// A TCP connection to `target`, through the proxy if there is one.
    pub(crate) async fn dial_tcp(&self, target: &Target) -> Result<TcpStream, Error> {
        match self.proxy_for(target) {
            Some(p) => p.connect(&target.host, target.port).await,
            None => {
                let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
                tcp.set_nodelay(true)?;
                Ok(tcp)
            }
        }
    }

    /// Dials `url` and runs the HTTP/1.1 upgrade.
    pub(crate) async fn connect_http1(
        &self,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<(WebSocket<ClientStream>, Response<()>), Error> {
        let uri = parse_url(url)?;
        let target = Target::of(&uri);
        let tcp = self.dial_tcp(&target).await?;
        let stream = if target.secure {
            self.tls_connect(&target.host, tcp).await?
        } else {
            MaybeTlsStream::Plain(tcp)
        };
        self.http1_over(stream, url, headers).await
    }

    /// The HTTP/1.1 upgrade over a connected transport.
    pub(crate) async fn http1_over(
        &self,
        stream: ClientStream,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<(WebSocket<ClientStream>, Response<()>), Error> {
        let secure = stream.is_tls();
        let result = self.handshake_inner(stream, url, headers).await;
        if secure {
            result.map_err(tls_failure_as_tls_error)
        } else {
            result
        }
    }

    /// The TLS settings in use (the default ones unless set).
    #[cfg(all(feature = "http2", feature = "tls"))]
    pub(crate) fn tls_config(&self) -> &crate::tls::TlsConfig {
        match &self.tls {
            Some(c) => c,
            None => crate::tls::shared_default(),
        }
    }

    /// The subprotocols offered.
    pub(crate) fn protocols(&self) -> Vec<&str> {
        self.protocols.iter().map(String::as_str).collect()
    }

    #[cfg(feature = "tls")]
    async fn tls_connect(&self, host: &str, tcp: TcpStream) -> Result<ClientStream, Error> {
        let tls = match &self.tls {
            Some(c) => crate::tls::connect(c, host, tcp).await?,
            None => crate::tls::connect(&crate::tls::TlsConfig::default(), host, tcp).await?,
        };
        Ok(MaybeTlsStream::Tls(Box::new(tls)))
    }

    #[cfg(not(feature = "tls"))]
    async fn tls_connect(&self, _host: &str, _tcp: TcpStream) -> Result<ClientStream, Error> {
        Err(Error::new(ErrorKind::InvalidUrl(
            "wss:// needs the `tls` feature of silverback".into(),
        )))
    }

    /// Runs the client handshake for `url` over a transport you connected
    /// yourself (any `AsyncRead + AsyncWrite`: a Unix socket, a TLS stream
    /// of your own...). Bounded by the handshake timeout.
    pub async fn handshake<S>(
        &self,
        stream: S,
        url: &str,
    ) -> Result<(WebSocket<S>, Response<()>), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio::time::timeout(
            self.config.handshake_timeout,
            self.handshake_inner(stream, url, &self.headers),
        )
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout(Timeout::Handshake)))?
    }

    async fn handshake_inner<S>(
        &self,
        mut stream: S,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<(WebSocket<S>, Response<()>), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let uri = parse_url(url)?;
        let key = generate_key();
        let protocols = self.protocols();
        let mut headers = headers.to_vec();
        if let Some(cfg) = &self.config.compression {
            let offer = HeaderValue::from_str(&deflate::client_offer(cfg)).expect("ASCII offer");
            headers.push((http::header::SEC_WEBSOCKET_EXTENSIONS, offer));
        }
        let req = build_request(&uri, &key, &protocols, &headers)
            .map_err(|e| Error::new(ErrorKind::InvalidUrl(e.to_string())))?;
        let mut out = Vec::with_capacity(256);
        write_request(&req, &mut out);
        stream.write_all(&out).await?;
        stream.flush().await?;
        let mut buf = BytesMut::with_capacity(1024);
        let (resp, len) = loop {
            if let Some(parsed) = parse_response(&buf, HeadLimits::default())
                .map_err(|e| Error::new(ErrorKind::Handshake(e)))?
            {
                break parsed;
            }
            buf.reserve(1024);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(Error::abnormal(Some(
                    std::io::ErrorKind::UnexpectedEof.into(),
                )));
            }
        };
        let _ = buf.split_to(len);
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let body = read_error_body(&mut stream, &resp, buf).await;
            let (parts, ()) = resp.into_parts();
            return Err(Error::new(ErrorKind::HttpStatus(Box::new(
                Response::from_parts(parts, body),
            ))));
        }
        let (protocol, params) =
            validate_response_with(&resp, &key, &protocols, self.config.compression.as_ref())
                .map_err(|e| Error::new(ErrorKind::Handshake(e)))?;
        let mut ws = WebSocket::from_raw_socket(stream, Role::Client, self.config, &buf);
        ws.opened(protocol, params, url);
        Ok((ws, resp))
    }
}

/// Reads the body of a refused handshake: `Content-Length` bytes, or until
/// end of stream, at most [`MAX_ERROR_BODY`] and within a short time.
async fn read_error_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    resp: &Response<()>,
    mut buf: BytesMut,
) -> Bytes {
    let declared = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let want = declared.unwrap_or(MAX_ERROR_BODY).min(MAX_ERROR_BODY);
    let read = async {
        while buf.len() < want {
            buf.reserve((want - buf.len()).min(8192));
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    buf.truncate(want);
    buf.freeze()
}

/// A TLS failure seen while the upgrade request is exchanged over a
/// `wss://` connection is an [`ErrorKind::Tls`] error, as one during the
/// TLS handshake is: with TLS 1.3 the server checks the client's
/// certificate after the client considers the handshake done, so a refused
/// (or missing) client certificate arrives as an alert on the first read.
#[cfg(feature = "tls")]
pub(crate) fn tls_failure_as_tls_error(e: Error) -> Error {
    match e.into_kind() {
        ErrorKind::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            Error::new(ErrorKind::Tls(io))
        }
        other => Error::new(other),
    }
}

#[cfg(not(feature = "tls"))]
pub(crate) fn tls_failure_as_tls_error(e: Error) -> Error {
    e
}

/// Where a redirect answered to `base` points, as a `ws(s)://` URL and
/// its parse; `None` when `err` is not a redirect or its `Location` cannot
/// be followed (see [`Dialer::follow_redirects`]).
fn redirect_target(err: &Error, base: &Uri) -> Option<(String, Uri)> {
    let resp = err.http_response()?;
    if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = resp.headers().get(http::header::LOCATION)?.to_str().ok()?;
    let next = resolve_location(base, location)?;
    let uri = parse_url(&next).ok()?;
    // User info would end up in the Host header (and is a credential).
    if uri.authority()?.as_str().contains('@') {
        return None;
    }
    Some((next, uri))
}

/// Resolves a `Location` against `base` (RFC 3986 §5.2.2), the HTTP
/// schemes mapped to their WebSocket counterparts and the fragment
/// dropped; `None` for any other scheme.
fn resolve_location(base: &Uri, location: &str) -> Option<String> {
    let location = location.trim();
    let location = location.split_once('#').map_or(location, |(l, _)| l);
    let scheme = location.split_once(':').filter(|(s, _)| is_scheme(s));
    if let Some((scheme, rest)) = scheme {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            _ => return None,
        };
        let rest = rest.strip_prefix("//")?;
        return Some(format!("{scheme}://{rest}"));
    }
    let scheme = base.scheme_str()?;
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    let authority = base.authority()?.as_str();
    let (path, query) = match location.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (location, None),
    };
    let (path, query) = if path.is_empty() {
        (base.path().to_owned(), query.or(base.query()))
    } else if path.starts_with('/') {
        (remove_dot_segments(path), query)
    } else {
        let base_path = base.path();
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        let merged = if dir.is_empty() {
            format!("/{path}")
        } else {
            format!("{dir}{path}")
        };
        (remove_dot_segments(&merged), query)
    };
    Some(match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    })
}

/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3986 §3.1).
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `.` and `..` segments of an absolute path resolved (RFC 3986 §5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        match segment {
            "." | ".." => {
                if segment == ".." {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

/// What [`Dialer::follow_redirects`] compares to decide whether a redirect
/// stays on the same origin: scheme, host (ASCII lowercase) and port (the
/// scheme's default filled in).
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    secure: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(uri: &Uri) -> Self {
        let secure = uri.scheme_str() == Some("wss");
        Self {
            secure,
            host: uri.host().unwrap_or_default().to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(if secure { 443 } else { 80 }),
        }
    }
}

/// A redirect from `wss://` to `ws://`.
fn is_tls_downgrade(from: &Uri, to: &Uri) -> bool {
    from.scheme_str() == Some("wss") && to.scheme_str() == Some("ws")
}

pub(crate) fn parse_url(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::new(ErrorKind::InvalidUrl(format!("{url}: {e}"))))?;
    match uri.scheme_str() {
        Some("ws") | Some("wss") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(uri),
        _ => Err(Error::new(ErrorKind::InvalidUrl(format!(
            "{url}: expected ws:// or wss://"
        )))),
    }
}

/// Connects to `url` with the default [`Dialer`].
///
/// ```no_run
/// # async fn f() -> Result<(), silverback::Error> {
/// let (mut ws, _) = silverback::connect("ws://127.0.0.1:8080/ws").await?;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<(WebSocket<ClientStream>, Response<()>), Error> {
    Dialer::new().connect(url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(status: u16, location: &str) -> Error {
        let r = Response::builder()
            .status(status)
            .header("location", location)
            .body(Bytes::new())
            .unwrap();
        Error::new(ErrorKind::HttpStatus(Box::new(r)))
    }

    fn target(status: u16, location: &str, base: &str) -> Option<String> {
        redirect_target(&redirect(status, location), &parse_url(base).unwrap()).map(|(s, _)| s)
    }

    #[test]
    fn redirect_targets() {
        let base = "ws://a:1/x";
        assert_eq!(target(302, "/y?z", base).as_deref(), Some("ws://a:1/y?z"));
        assert_eq!(
            target(301, "https://b/w", base).as_deref(),
            Some("wss://b/w")
        );
        assert_eq!(target(307, "ws://c/", base).as_deref(), Some("ws://c/"));
        assert_eq!(
            target(308, "HTTP://C:2/", base).as_deref(),
            Some("ws://C:2/")
        );
        assert_eq!(
            target(303, "wss://d/#frag", base).as_deref(),
            Some("wss://d/")
        );
        // Network-path reference: another host, the same scheme.
        assert_eq!(
            target(302, "//evil.example:9/p", base).as_deref(),
            Some("ws://evil.example:9/p")
        );
        // A URL in the query is not the scheme.
        assert_eq!(
            target(302, "/login?next=http://b/", base).as_deref(),
            Some("ws://a:1/login?next=http://b/")
        );
        // Not followed: not a redirect status, no Location, another
        // scheme, user info, no host, not a URL.
        assert_eq!(target(401, "/y", base), None);
        assert_eq!(target(300, "/y", base), None);
        assert_eq!(target(304, "/y", base), None);
        assert_eq!(target(302, "ftp://x/", base), None);
        assert_eq!(target(302, "ws:x", base), None);
        assert_eq!(target(302, "ws://user:pw@b/", base), None);
        assert_eq!(target(302, "ws:///nohost", base), None);
        assert_eq!(target(302, "/with space", base), None);
        let no_location = Error::new(ErrorKind::HttpStatus(Box::new(
            Response::builder().status(302).body(Bytes::new()).unwrap(),
        )));
        assert!(redirect_target(&no_location, &parse_url(base).unwrap()).is_none());
    }

    #[test]
    fn relative_locations_resolve_as_rfc_3986_says() {
        // RFC 3986 §5.4.1, with ws:// for http://.
        let base = "ws://a/b/c/d;p?q";
        for (location, expected) in [
            ("g", "ws://a/b/c/g"),
            ("./g", "ws://a/b/c/g"),
            ("g/", "ws://a/b/c/g/"),
            ("/g", "ws://a/g"),
            ("//g", "ws://g"),
            ("?y", "ws://a/b/c/d;p?y"),
            ("g?y", "ws://a/b/c/g?y"),
            ("#s", "ws://a/b/c/d;p?q"),
            ("g#s", "ws://a/b/c/g"),
            (";x", "ws://a/b/c/;x"),
            ("", "ws://a/b/c/d;p?q"),
            (".", "ws://a/b/c/"),
            ("./", "ws://a/b/c/"),
            ("..", "ws://a/b/"),
            ("../", "ws://a/b/"),
            ("../g", "ws://a/b/g"),
            ("../..", "ws://a/"),
            ("../../g", "ws://a/g"),
            ("../../../g", "ws://a/g"),
            ("/./g", "ws://a/g"),
            ("/../g", "ws://a/g"),
            ("g.", "ws://a/b/c/g."),
            ("..g", "ws://a/b/c/..g"),
            ("./../g", "ws://a/b/g"),
            ("g/./h", "ws://a/b/c/g/h"),
            ("g/../h", "ws://a/b/c/h"),
            ("g?y/./x", "ws://a/b/c/g?y/./x"),
        ] {
            let resolved = resolve_location(&parse_url(base).unwrap(), location);
            assert_eq!(resolved.as_deref(), Some(expected), "{location:?}");
        }
        // "//g" has no path: a valid URL all the same.
        assert!(parse_url("ws://g").is_ok());
    }

    #[test]
    fn origins_and_downgrades() {
        let origin = |u: &str| Origin::of(&parse_url(u).unwrap());
        assert_eq!(origin("ws://A.example/x"), origin("ws://a.example:80/y?z"));
        assert_eq!(origin("wss://a/"), origin("wss://a:443/"));
        assert_eq!(origin("ws://[::1]:9/"), origin("ws://[::1]:9/other"));
        assert_ne!(origin("ws://a/"), origin("ws://b/"));
        assert_ne!(origin("ws://a/"), origin("ws://a:81/"));
        assert_ne!(origin("ws://a/"), origin("wss://a/"));
        assert_ne!(origin("ws://a:443/"), origin("wss://a/"));
        assert_ne!(origin("ws://localhost:9/"), origin("ws://127.0.0.1:9/"));
        let uri = |u: &str| parse_url(u).unwrap();
        assert!(is_tls_downgrade(&uri("wss://a/"), &uri("ws://a/")));
        assert!(!is_tls_downgrade(&uri("ws://a/"), &uri("wss://a/")));
        assert!(!is_tls_downgrade(&uri("wss://a/"), &uri("wss://b/")));
        assert!(!is_tls_downgrade(&uri("ws://a/"), &uri("ws://b/")));
    }

    #[test]
    fn credentials_dropped_only_when_asked() {
        let dialer = Dialer::new()
            .header("Authorization", "Bearer t")
            .header("cookie", "a=b")
            .header("Proxy-Authorization", "Basic x")
            .header("X-Custom", "kept")
            .origin("https://app.example");
        let names = |with: bool| -> Vec<String> {
            dialer
                .request_headers(with)
                .iter()
                .map(|(n, _)| n.as_str().to_owned())
                .collect()
        };
        assert_eq!(
            names(true),
            [
                "authorization",
                "cookie",
                "proxy-authorization",
                "x-custom",
                "origin"
            ]
        );
        assert_eq!(names(false), ["x-custom", "origin"]);
    }

    #[test]
    fn urls() {
        assert!(parse_url("ws://[::1]:9000/x").is_ok());
        assert!(parse_url("http://a/").is_err());
        assert!(parse_url("ws:///nohost").is_err());
        assert!(parse_url("not a url").is_err());
    }
}
