//! The error type of the async layer.

use std::fmt;
use std::io;

use silverback_proto::handshake::client::ResponseError;
use silverback_proto::handshake::server::Rejection;
use silverback_proto::{CloseCode, CloseFrame, End, Initiator, ProtocolError, SendError};

pub use silverback_proto::Timeout;

/// What went wrong (or how the connection ended). See [`Error`].
///
/// Variants carry types of other crates; each is nameable through
/// silverback, so a program needs no dependency of its own (and no
/// matching version) to look inside: [`std::io::Error`];
/// [`silverback::http`](crate::http) for the refused upgrade's response
/// and [`silverback::bytes`](crate::bytes) for its body;
/// [`silverback::proto`](crate::proto) for the protocol types
/// ([`ProtocolError`], [`SendError`], [`Rejection`], [`ResponseError`],
/// [`CloseFrame`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The connection closed cleanly: a Close frame was received (and
    /// answered). `frame` is the peer's code and reason (`None` when its
    /// Close had no payload: code 1005). Not a failure.
    Closed {
        /// The peer's Close frame.
        frame: Option<CloseFrame>,
        /// Whether we sent our Close first (we initiated the close).
        by_us: bool,
    },
    /// The connection was used after it ended and its end was reported.
    AlreadyClosed,
    /// A send after a Close frame was sent: the connection is closing.
    Closing,
    /// The peer vanished: end of stream or a reset without a Close frame.
    /// Reported as close code 1006.
    Abnormal(Option<io::Error>),
    /// The peer broke the protocol; the Close frame with
    /// [`ProtocolError::close_code`] was sent before the transport closed.
    Protocol(ProtocolError),
    /// We failed the connection with this Close frame (the application
    /// found it unusable); see [`silverback_proto::Connection::fail`].
    Failed(CloseFrame),
    /// A send the protocol does not allow (control payload over 125 bytes,
    /// fragments out of order, a close code that may not be sent).
    InvalidSend(SendError),
    /// A timeout.
    Timeout(Timeout),
    /// The server refused the upgrade (this side sent the refusal).
    Rejected(Rejection),
    /// The server's handshake response was not acceptable (client side).
    Handshake(ResponseError),
    /// The write buffer is full (`max_write_buffer_size`): the peer does
    /// not read fast enough.
    WriteBufferFull,
    /// An I/O error outside of the WebSocket session (e.g. while dialing).
    Io(io::Error),
    /// A URL that cannot be dialed.
    InvalidUrl(String),
    /// The server redirected the upgrade request and the redirect was not
    /// followed, for a reason of security ([`RedirectRefusal`]); nothing
    /// was sent to `to`. (A redirect beyond
    /// [`Dialer::follow_redirects`](crate::Dialer::follow_redirects), or
    /// one that cannot be followed, is an [`HttpStatus`](Self::HttpStatus)
    /// error with the response.) See [`Error::is_redirect_refused`].
    RedirectRefused {
        /// The URL that was redirected.
        from: Box<str>,
        /// Where the redirect pointed (resolved, with its `ws`/`wss` scheme).
        to: Box<str>,
        /// Why it was refused.
        reason: RedirectRefusal,
    },
    /// The server answered the upgrade request with another status than
    /// 101 (e.g. 401, 403, or a redirect that was not followed): the
    /// response with its headers and (at most 64 KiB of) body.
    HttpStatus(Box<http::Response<bytes::Bytes>>),
    /// TLS failed: the handshake (e.g. certificate verification) or the
    /// configuration. Never downgraded to plain text.
    Tls(io::Error),
    /// The proxy could not be reached or refused the tunnel.
    Proxy(String),
    /// A WebSocket over HTTP/2 (RFC 8441) could not be opened: see
    /// [`Http2Error`] and [`Dialer::http2`](crate::Dialer). (A server
    /// answering the extended CONNECT with another status than `200` is an
    /// [`HttpStatus`](Self::HttpStatus) error, as a refused HTTP/1.1
    /// upgrade is.)
    Http2(Http2Error),
}

/// Why a WebSocket could not be opened over HTTP/2 (RFC 8441 extended
/// CONNECT): [`ErrorKind::Http2`]. With
/// [`Http2::Prefer`](crate::Dialer) the first two fall back to HTTP/1.1
/// instead; with `Http2::Require` they are errors.
#[derive(Debug)]
#[non_exhaustive]
pub enum Http2Error {
    /// The server does not speak HTTP/2: TLS ALPN did not pick `h2`, or
    /// (`ws://`, HTTP/2 with prior knowledge) it did not answer the
    /// connection preface with its SETTINGS.
    NotNegotiated,
    /// The server speaks HTTP/2 but did not advertise
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`: it accepts no WebSocket over
    /// HTTP/2.
    ExtendedConnectDisabled,
    /// The server reset the CONNECT stream (`RST_STREAM`) with this HTTP/2
    /// error code (e.g. `0x1` PROTOCOL_ERROR, `0x7` REFUSED_STREAM).
    StreamReset(u32),
    /// The HTTP/2 connection failed or was closed (`GOAWAY`, reset)
    /// before the server answered.
    Connection(io::Error),
}

impl fmt::Display for Http2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotNegotiated => f.write_str("the server does not speak HTTP/2"),
            Self::ExtendedConnectDisabled => f.write_str(
                "the server's HTTP/2 SETTINGS lack ENABLE_CONNECT_PROTOCOL (no RFC 8441 WebSockets)",
            ),
            Self::StreamReset(code) => {
                write!(f, "the server reset the CONNECT stream (HTTP/2 error code {code:#x})")
            }
            Self::Connection(e) => write!(f, "HTTP/2 connection failed: {e}"),
        }
    }
}

impl std::error::Error for Http2Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connection(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a [`Dialer`](crate::Dialer) refused to follow a redirect:
/// [`ErrorKind::RedirectRefused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedirectRefusal {
    /// From `wss://` to `ws://`: the request, its credentials and the
    /// whole session would travel in plain text.
    TlsDowngrade,
}

impl fmt::Display for RedirectRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TlsDowngrade => {
                f.write_str("it would downgrade wss:// (TLS) to ws:// (plain text)")
            }
        }
    }
}

/// The one error type of `silverback`.
///
/// Small (one pointer) and opaque; ask it questions:
/// - [`is_closed`](Self::is_closed): the connection ended cleanly (or was
///   used after it ended);
/// - [`is_unexpected_close`](Self::is_unexpected_close): gorilla's
///   `IsUnexpectedCloseError`;
/// - [`close_code`](Self::close_code), [`close_frame`](Self::close_frame);
/// - [`is_timeout`](Self::is_timeout), [`is_protocol`](Self::is_protocol).
///
/// ```
/// use silverback::{CloseCode, Error};
/// fn log_end(e: &Error) {
///     if e.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]) {
///         eprintln!("unexpected close: {e}");
///     }
/// }
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    /// How the connection ended, when this error reports its end.
    end: Option<End>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self {
            inner: Box::new(Inner { kind, end: None }),
        }
    }

    /// The error that reports a connection's `end` (`io`: the I/O error
    /// that broke it, if any).
    pub(crate) fn from_end(end: End, io: Option<io::Error>) -> Self {
        let kind = match &end {
            End::Clean {
                initiator,
                received,
                ..
            } => ErrorKind::Closed {
                frame: received.clone(),
                by_us: *initiator == Initiator::Local,
            },
            End::Protocol(p) => ErrorKind::Protocol(p.clone()),
            End::Failed(f) => ErrorKind::Failed(f.clone()),
            End::Timeout(t) => ErrorKind::Timeout(*t),
            _ => ErrorKind::Abnormal(io),
        };
        Self {
            inner: Box::new(Inner {
                kind,
                end: Some(end),
            }),
        }
    }

    /// What happened.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// Consumes the error, giving what happened.
    pub fn into_kind(self) -> ErrorKind {
        self.inner.kind
    }

    /// How the connection ended, when this error reports its end (from
    /// `recv`, `close`, or a send that found the connection broken): who
    /// closed, with which codes, or which timeout. The same answer as
    /// [`WebSocket::end`](crate::WebSocket::end).
    pub fn end(&self) -> Option<&End> {
        self.inner.end.as_ref()
    }

    /// The connection ended cleanly with a Close handshake
    /// ([`ErrorKind::Closed`]) or was used after it ended
    /// ([`ErrorKind::AlreadyClosed`]).
    pub fn is_closed(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Closed { .. } | ErrorKind::AlreadyClosed
        )
    }

    /// The close code this error stands for, if it ends the connection:
    /// the peer's code for a clean close (1005 when its Close was empty),
    /// 1006 when the peer vanished (or never answered our Close, or
    /// stopped reading or sending until a timeout), 1011 for a keepalive
    /// timeout, and the code we sent for a protocol error.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.end().map(End::close_code)
    }

    /// Like gorilla's `IsUnexpectedCloseError`: true when this error ends
    /// the connection with a close code ([`close_code`](Self::close_code))
    /// that is not in `expected`.
    ///
    /// A peer that vanished counts as code 1006, so
    /// `is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway])` is
    /// true for a dropped connection and false for a tab being closed.
    pub fn is_unexpected_close(&self, expected: &[CloseCode]) -> bool {
        self.close_code().is_some_and(|c| !expected.contains(&c))
    }

    /// The peer's Close frame, for a clean close.
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        match &self.inner.kind {
            ErrorKind::Closed { frame, .. } => frame.as_ref(),
            _ => None,
        }
    }

    /// A timeout expired.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Timeout(_))
    }

    /// The peer broke the protocol.
    pub fn is_protocol(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Protocol(_))
    }

    /// The HTTP response of a server that answered the upgrade request
    /// with another status than 101 (status, headers, bounded body).
    pub fn http_response(&self) -> Option<&http::Response<bytes::Bytes>> {
        match &self.inner.kind {
            ErrorKind::HttpStatus(r) => Some(r),
            _ => None,
        }
    }

    /// The dialer refused to follow a redirect
    /// ([`ErrorKind::RedirectRefused`]: e.g. from `wss://` to `ws://`).
    ///
    /// ```
    /// # async fn f() {
    /// use silverback::{Dialer, ErrorKind, RedirectRefusal};
    /// match Dialer::new().follow_redirects(3).connect("wss://example.com/ws").await {
    ///     Err(e) if e.is_redirect_refused() => {
    ///         if let ErrorKind::RedirectRefused { from, to, reason } = e.kind() {
    ///             assert_eq!(*reason, RedirectRefusal::TlsDowngrade);
    ///             eprintln!("not following {from} -> {to}: {reason}");
    ///         }
    ///     }
    ///     other => { let _ = other; }
    /// }
    /// # }
    /// ```
    pub fn is_redirect_refused(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::RedirectRefused { .. })
    }

    /// TLS failed (e.g. the server's certificate did not verify).
    pub fn is_tls(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Tls(_))
    }

    /// The handshake failed (refused by us, a bad response, another
    /// status than 101, or a redirect refused).
    pub fn is_handshake(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Rejected(_)
                | ErrorKind::Handshake(_)
                | ErrorKind::HttpStatus(_)
                | ErrorKind::RedirectRefused { .. }
        ) || self.is_handshake_timeout()
    }

    fn is_handshake_timeout(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Timeout(Timeout::Handshake))
    }

    pub(crate) fn abnormal(e: Option<io::Error>) -> Self {
        Self::from_end(End::Abnormal, e)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner.kind, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            ErrorKind::Closed {
                frame: Some(fr),
                by_us,
            } => {
                let who = if *by_us {
                    "closed by us"
                } else {
                    "closed by peer"
                };
                write!(f, "connection {who}: {fr}")
            }
            ErrorKind::Closed { frame: None, by_us } => {
                let who = if *by_us {
                    "closed by us"
                } else {
                    "closed by peer"
                };
                write!(f, "connection {who} without status (1005)")
            }
            ErrorKind::AlreadyClosed => f.write_str("connection already closed"),
            ErrorKind::Closing => {
                f.write_str("connection is closing: no message may follow the Close frame")
            }
            ErrorKind::Abnormal(Some(e)) => write!(f, "connection closed abnormally (1006): {e}"),
            ErrorKind::Abnormal(None) => f.write_str(
                "connection closed abnormally (1006): end of stream without Close frame",
            ),
            ErrorKind::Protocol(p) => {
                write!(f, "protocol error, closed with {}: {p}", p.close_code())
            }
            ErrorKind::Failed(fr) => write!(f, "connection failed by us: {fr}"),
            ErrorKind::InvalidSend(e) => write!(f, "invalid send: {e}"),
            ErrorKind::Timeout(Timeout::Handshake) => f.write_str("opening handshake timed out"),
            ErrorKind::Timeout(Timeout::CloseHandshake) => f.write_str("close handshake timed out"),
            ErrorKind::Timeout(Timeout::Keepalive) => {
                f.write_str("keepalive ping timed out: closed with 1011")
            }
            ErrorKind::Timeout(Timeout::Idle) => {
                f.write_str("nothing received within idle timeout")
            }
            ErrorKind::Timeout(Timeout::Write) => {
                f.write_str("write made no progress within write timeout: the peer is not reading")
            }
            ErrorKind::Timeout(t) => write!(f, "{t}"),
            ErrorKind::Rejected(r) => write!(f, "upgrade refused: {r}"),
            ErrorKind::Handshake(e) => write!(f, "handshake failed: {e}"),
            ErrorKind::WriteBufferFull => f.write_str("write buffer full: the peer is not reading"),
            ErrorKind::Io(e) => write!(f, "I/O error: {e}"),
            ErrorKind::InvalidUrl(u) => write!(f, "invalid URL: {u}"),
            ErrorKind::RedirectRefused { from, to, reason } => {
                write!(f, "redirect from {from} to {to} refused: {reason}")
            }
            ErrorKind::HttpStatus(resp) => {
                write!(f, "server answered {} instead of upgrading", resp.status())?;
                let body = String::from_utf8_lossy(resp.body());
                match body.lines().map(str::trim).find(|l| !l.is_empty()) {
                    Some(line) => write!(f, ": {}", line.chars().take(200).collect::<String>()),
                    None => Ok(()),
                }
            }
            ErrorKind::Tls(e) => write!(f, "TLS error: {e}"),
            ErrorKind::Proxy(e) => write!(f, "proxy error: {e}"),
            ErrorKind::Http2(e) => write!(f, "HTTP/2: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.kind {
            ErrorKind::Abnormal(Some(e)) | ErrorKind::Io(e) | ErrorKind::Tls(e) => Some(e),
            ErrorKind::Protocol(e) => Some(e),
            ErrorKind::InvalidSend(e) => Some(e),
            ErrorKind::Rejected(e) => Some(e),
            ErrorKind::Handshake(e) => Some(e),
            ErrorKind::Http2(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::new(ErrorKind::Io(e))
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closing => Self::new(ErrorKind::Closing),
            other => Self::new(ErrorKind::InvalidSend(other)),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e.into_kind() {
            ErrorKind::Io(e) | ErrorKind::Abnormal(Some(e)) => e,
            other => io::Error::other(Error::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        let clean = Error::from_end(
            End::Clean {
                initiator: Initiator::Remote,
                sent: None,
                received: Some(CloseFrame::new(CloseCode::GoingAway, "tab closed")),
            },
            None,
        );
        assert!(matches!(
            clean.kind(),
            ErrorKind::Closed { by_us: false, .. }
        ));
        assert!(clean.is_closed());
        assert_eq!(clean.close_code(), Some(CloseCode::GoingAway));
        assert!(!clean.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
        assert!(clean.is_unexpected_close(&[CloseCode::Normal]));

        let empty = Error::from_end(
            End::Clean {
                initiator: Initiator::Local,
                sent: None,
                received: None,
            },
            None,
        );
        assert_eq!(empty.close_code(), Some(CloseCode::NoStatusReceived));

        let dropped = Error::abnormal(None);
        assert!(!dropped.is_closed());
        assert_eq!(dropped.close_code(), Some(CloseCode::Abnormal));
        assert!(dropped.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));

        let proto = Error::from_end(End::Protocol(ProtocolError::InvalidUtf8), None);
        assert!(proto.is_protocol());
        assert_eq!(proto.close_code(), Some(CloseCode::InvalidPayload));

        let misuse = Error::new(ErrorKind::AlreadyClosed);
        assert!(misuse.is_closed());
        assert!(!misuse.is_unexpected_close(&[]));

        let keepalive = Error::from_end(End::Timeout(Timeout::Keepalive), None);
        assert!(keepalive.is_timeout());
        assert_eq!(keepalive.close_code(), Some(CloseCode::InternalError));
        let handshake = Error::new(ErrorKind::Timeout(Timeout::Handshake));
        assert!(handshake.is_timeout());
        assert_eq!(handshake.close_code(), None);
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }
}
