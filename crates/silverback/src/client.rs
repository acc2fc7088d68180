//! The client side (basic): the opening handshake over any transport and
//! `ws://` dialing. TLS, proxies and the rest of the dialer come with the
//! client issue.

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue};
use http::{Response, Uri};
use silverback_proto::handshake::client::{
    build_request, generate_key, parse_response, validate_response, write_request,
};
use silverback_proto::handshake::HeadLimits;
use silverback_proto::Role;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, ErrorKind, Timeout};
use crate::{Config, WebSocket};

/// Opens client connections.
///
/// ```no_run
/// # async fn f() -> Result<(), silverback::Error> {
/// use silverback::{Dialer, Message};
/// let (mut ws, _response) = Dialer::new()
///     .subprotocols(["chat"])
///     .header("authorization", "Bearer token")
///     .connect("ws://127.0.0.1:8080/ws")
///     .await?;
/// ws.send(Message::text("hello")).await?;
/// let reply = ws.recv().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    config: Config,
    protocols: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Dialer {
    /// A dialer with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the connection settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Subprotocols to offer, most preferred first.
    pub fn subprotocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a request header (e.g. `Origin`, `Authorization`).
    ///
    /// # Panics
    /// If `name` or `value` is not a valid header name or value.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        let value = HeaderValue::from_str(value).expect("valid header value");
        self.headers.push((name, value));
        self
    }

    /// Dials `url` (`ws://` only for now) over TCP and runs the handshake.
    pub async fn connect(&self, url: &str) -> Result<(WebSocket<TcpStream>, Response<()>), Error> {
        let uri = parse_url(url)?;
        if uri.scheme_str() != Some("ws") {
            return Err(Error::new(ErrorKind::InvalidUrl(format!(
                "{url}: only ws:// is supported by this build"
            ))));
        }
        let host = uri.host().unwrap_or("localhost");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let connect = TcpStream::connect((host, port));
        let stream = tokio::time::timeout(self.config.handshake_timeout, connect)
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout(Timeout::Handshake)))??;
        stream.set_nodelay(true)?;
        self.handshake(stream, url).await
    }

    /// Runs the client handshake for `url` over an already connected
    /// transport.
    pub async fn handshake<S>(
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
        let req = build_request(&uri, &key, &protocols, &self.headers)
            .map_err(|e| Error::new(ErrorKind::InvalidUrl(e.to_string())))?;
        let mut out = Vec::with_capacity(256);
        write_request(&req, &mut out);
        let limits = HeadLimits::default();
        let exchange = async {
            stream.write_all(&out).await?;
            stream.flush().await?;
            let mut buf = BytesMut::with_capacity(1024);
            loop {
                if let Some((resp, len)) =
                    parse_response(&buf, limits).map_err(|e| Error::new(ErrorKind::Handshake(e)))?
                {
                    let _ = buf.split_to(len);
                    return Ok::<_, Error>((resp, buf));
                }
                buf.reserve(1024);
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(Error::abnormal(Some(
                        std::io::ErrorKind::UnexpectedEof.into(),
                    )));
                }
            }
        };
        let (resp, rest) = tokio::time::timeout(self.config.handshake_timeout, exchange)
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout(Timeout::Handshake)))??;
        let protocol = validate_response(&resp, &key, &protocols)
            .map_err(|e| Error::new(ErrorKind::Handshake(e)))?;
        let mut ws = WebSocket::from_raw_socket(stream, Role::Client, self.config, &rest);
        ws.set_protocol(protocol);
        let span = tracing::debug_span!(
            "websocket",
            role = "client",
            url = %url,
            protocol = ws.protocol().unwrap_or(""),
        );
        span.in_scope(|| tracing::debug!("WebSocket opened"));
        ws.set_span(span);
        Ok((ws, resp))
    }
}

fn parse_url(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::new(ErrorKind::InvalidUrl(format!("{url}: {e}"))))?;
    match uri.scheme_str() {
        Some("ws") | Some("wss") if uri.host().is_some() => Ok(uri),
        _ => Err(Error::new(ErrorKind::InvalidUrl(format!(
            "{url}: expected ws:// or wss://"
        )))),
    }
}

/// Connects to `url` with the default [`Dialer`].
pub async fn connect(url: &str) -> Result<(WebSocket<TcpStream>, Response<()>), Error> {
    Dialer::new().connect(url).await
}
