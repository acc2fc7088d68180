//! The transport a client dials: plain TCP, TLS over it, or a stream of an
//! HTTP/2 connection (RFC 8441).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A plain or TLS transport (`ws://` or `wss://`), or one stream of an
/// HTTP/2 connection (a WebSocket over HTTP/2, RFC 8441).
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream<S> {
    /// Plain bytes (`ws://`).
    Plain(S),
    /// TLS (`wss://`).
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
    /// An extended CONNECT stream of an HTTP/2 connection, possibly shared
    /// with other WebSockets ([`Dialer::http2`](crate::Dialer::http2)).
    #[cfg(feature = "http2")]
    Http2(Box<crate::h2_client::H2Stream>),
}

impl<S> MaybeTlsStream<S> {
    /// Whether the transport is encrypted (TLS, or an HTTP/2 connection
    /// over TLS).
    pub fn is_tls(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            #[cfg(feature = "tls")]
            Self::Tls(_) => true,
            #[cfg(feature = "http2")]
            Self::Http2(s) => s.is_tls(),
        }
    }

    /// Whether this is a stream of an HTTP/2 connection (RFC 8441).
    pub fn is_http2(&self) -> bool {
        match self {
            #[cfg(feature = "http2")]
            Self::Http2(_) => true,
            _ => false,
        }
    }

    /// The underlying transport (the TCP stream), or `None` for a stream
    /// of an HTTP/2 connection, whose transport belongs to the connection
    /// (see [`H2Stream::peer_addr`](crate::H2Stream::peer_addr)).
    pub fn get_ref(&self) -> Option<&S> {
        match self {
            Self::Plain(s) => Some(s),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Some(s.get_ref().0),
            #[cfg(feature = "http2")]
            Self::Http2(_) => None,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.is_write_vectored(),
            #[cfg(feature = "http2")]
            Self::Http2(s) => s.is_write_vectored(),
        }
    }
}
