//! The client side: [`Dialer`] opens `ws://` and `wss://` connections,
//! directly or through a proxy, or runs the handshake over a transport you
//! connected yourself.

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

use crate::error::{Error, ErrorKind, Timeout};
use crate::proxy::Proxy;
use crate::stream::MaybeTlsStream;
use crate::{Config, WebSocket};

/// What a [`Dialer`] connects over: TCP, with TLS for `wss://`.
pub type ClientStream = MaybeTlsStream<TcpStream>;

/// Largest error body kept from a refused handshake.
const MAX_ERROR_BODY: usize = 64 * 1024;

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
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    config: Config,
    protocols: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    proxy: ProxyMode,
    max_redirects: usize,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
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

    /// The connection settings.
    pub fn get_config(&self) -> &Config {
        &self.config
    }

    /// See [`Config::handshake_timeout`]: bounds dialing, proxy, TLS and
    /// the HTTP upgrade together.
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

    /// Follows up to `n` HTTP redirects (3xx with `Location`) answered to
    /// the upgrade request (default 0: a redirect is an
    /// [`ErrorKind::HttpStatus`] error).
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
    /// connection and the server's `101` response.
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<(WebSocket<ClientStream>, Response<()>), Error> {
        let mut url = url.to_owned();
        let mut redirects = 0;
        loop {
            let attempt =
                tokio::time::timeout(self.config.handshake_timeout, self.connect_once(&url));
            let result = attempt
                .await
                .map_err(|_| Error::new(ErrorKind::Timeout(Timeout::Handshake)))?;
            match result {
                Err(e) if redirects < self.max_redirects => match redirect_target(&e, &url) {
                    Some(next) => {
                        tracing::debug!(from = %url, to = %next, "following redirect");
                        url = next;
                        redirects += 1;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    async fn connect_once(
        &self,
        url: &str,
    ) -> Result<(WebSocket<ClientStream>, Response<()>), Error> {
        let uri = parse_url(url)?;
        let secure = uri.scheme_str() == Some("wss");
        let host = uri.host().unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let proxy = match &self.proxy {
            ProxyMode::Env => Proxy::from_env(if secure { "wss" } else { "ws" }, &host),
            ProxyMode::None => None,
            ProxyMode::Explicit(p) => Some(p.clone()),
        };
        let tcp = match proxy {
            Some(p) => p.connect(&host, port).await?,
            None => {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                tcp
            }
        };
        let stream = if secure {
            self.tls_connect(&host, tcp).await?
        } else {
            MaybeTlsStream::Plain(tcp)
        };
        let result = self.handshake(stream, url).await;
        if secure {
            result.map_err(tls_failure_as_tls_error)
        } else {
            result
        }
    }

    #[cfg(feature = "tls")]
    async fn tls_connect(&self, host: &str, tcp: TcpStream) -> Result<ClientStream, Error> {
        let config = match &self.tls {
            Some(c) => c.clone(),
            None => crate::tls::TlsConfig::default(),
        };
        let tls = crate::tls::connect(&config, host, tcp).await?;
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
            self.handshake_inner(stream, url),
        )
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout(Timeout::Handshake)))?
    }

    async fn handshake_inner<S>(
        &self,
        mut stream: S,
        url: &str,
    ) -> Result<(WebSocket<S>, Response<()>), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let uri = parse_url(url)?;
        let key = generate_key();
        let protocols: Vec<&str> = self.protocols.iter().map(String::as_str).collect();
        let mut headers = self.headers.clone();
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
fn tls_failure_as_tls_error(e: Error) -> Error {
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
fn tls_failure_as_tls_error(e: Error) -> Error {
    e
}

/// Where a redirect answered to `url` points, as a `ws(s)://` URL.
fn redirect_target(err: &Error, url: &str) -> Option<String> {
    let resp = err.http_response()?;
    if !resp.status().is_redirection() {
        return None;
    }
    let location = resp.headers().get(http::header::LOCATION)?.to_str().ok()?;
    let base = parse_url(url).ok()?;
    let next = if let Some((scheme, rest)) = location.split_once("://") {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            _ => return None,
        };
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}://{}{location}", base.scheme_str()?, base.authority()?)
    } else {
        return None;
    };
    Some(next)
}

fn parse_url(url: &str) -> Result<Uri, Error> {
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

    #[test]
    fn redirect_targets() {
        let resp = |status: u16, loc: &str| {
            let r = Response::builder()
                .status(status)
                .header("location", loc)
                .body(Bytes::new())
                .unwrap();
            Error::new(ErrorKind::HttpStatus(Box::new(r)))
        };
        let base = "ws://a:1/x";
        assert_eq!(
            redirect_target(&resp(302, "/y?z"), base).as_deref(),
            Some("ws://a:1/y?z")
        );
        assert_eq!(
            redirect_target(&resp(301, "https://b/w"), base).as_deref(),
            Some("wss://b/w")
        );
        assert_eq!(
            redirect_target(&resp(307, "ws://c/"), base).as_deref(),
            Some("ws://c/")
        );
        assert_eq!(redirect_target(&resp(401, "/y"), base), None);
        assert_eq!(redirect_target(&resp(302, "ftp://x/"), base), None);
    }

    #[test]
    fn urls() {
        assert!(parse_url("ws://[::1]:9000/x").is_ok());
        assert!(parse_url("http://a/").is_err());
        assert!(parse_url("ws:///nohost").is_err());
        assert!(parse_url("not a url").is_err());
    }
}
