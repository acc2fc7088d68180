//! A connection's life, from open to its end: the one place that decides
//! how a connection ended and when the transport must be shut.
//!
//! Two independent facts are recorded:
//! - the WebSocket side ([`Life`]): open, a Close sent first, the closing
//!   handshake done (and who started it), or failed by us;
//! - the transport side ([`Transport`]): open, end of stream received,
//!   our write side due to be shut, or done (shut, broken, or given up on
//!   after a timeout).
//!
//! [`Lifecycle::end`] combines them into the [`End`] every layer reports:
//! the async layer, the split halves, `serve`'s logs and the metrics.

use std::fmt;

use crate::error::ProtocolError;
use crate::{CloseCode, CloseFrame};

/// Who sent the first Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// This end (the application called `close`, or a timeout or shutdown
    /// did).
    Local,
    /// The peer.
    Remote,
}

/// Which timeout expired (the I/O layer owns the clocks and reports them
/// with [`Connection::timeout`](crate::Connection::timeout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// The opening handshake did not complete in time.
    Handshake,
    /// The peer did not complete the closing handshake in time (or a
    /// server shutdown's deadline passed first).
    CloseHandshake,
    /// The peer answered no keepalive Ping in time: closed with 1011.
    Keepalive,
    /// Nothing arrived for the idle timeout: closed with 1001.
    Idle,
    /// A write made no progress in time: the peer stopped reading.
    Write,
}

impl Timeout {
    /// The Close frame this end sends when the timeout fires, if any: a
    /// keepalive timeout says 1011, an idle timeout 1001; the others have
    /// nobody left to tell (the peer does not read, or already closed).
    fn close_frame(self) -> Option<(CloseCode, &'static str)> {
        match self {
            Timeout::Keepalive => Some((CloseCode::InternalError, "keepalive ping timeout")),
            Timeout::Idle => Some((CloseCode::GoingAway, "idle timeout")),
            _ => None,
        }
    }

    /// Whether this timeout decides the end even after the closing
    /// handshake completed (it ends a live connection; a close timeout
    /// only ends one that is still waiting).
    fn overrides_handshake(self) -> bool {
        matches!(self, Timeout::Keepalive | Timeout::Idle | Timeout::Write)
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timeout::Handshake => "opening handshake timed out",
            Timeout::CloseHandshake => "closing handshake timed out",
            Timeout::Keepalive => "keepalive ping timed out",
            Timeout::Idle => "idle timeout",
            Timeout::Write => "write timed out: the peer is not reading",
        })
    }
}

/// How a connection ended: one answer for every layer.
///
/// [`close_code`](Self::close_code) is the code that stands for it (the
/// one gorilla's `IsUnexpectedCloseError` compares), and
/// [`initiator`](Self::initiator) says who ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum End {
    /// The closing handshake completed: Close frames went both ways.
    Clean {
        /// Who sent the first Close.
        initiator: Initiator,
        /// The Close this end sent (`None`: no payload).
        sent: Option<CloseFrame>,
        /// The peer's Close (`None`: no payload, code 1005).
        received: Option<CloseFrame>,
    },
    /// The peer broke the protocol: this end sent a Close with
    /// [`ProtocolError::close_code`] and closed.
    Protocol(ProtocolError),
    /// The application failed the connection
    /// ([`Connection::fail`](crate::Connection::fail)) with this frame.
    Failed(CloseFrame),
    /// The transport ended (end of stream, reset, I/O error) before the
    /// closing handshake completed: code 1006.
    Abnormal,
    /// A timeout ended it.
    Timeout(Timeout),
}

impl End {
    /// The close code that stands for this end: the peer's code for a
    /// clean close (1005 when its Close was empty), the code we sent when we
    /// failed the connection, 1011 for a keepalive timeout, and 1006 when
    /// the transport ended or another timeout gave up on the peer.
    pub fn close_code(&self) -> CloseCode {
        match self {
            End::Clean { received, .. } => received
                .as_ref()
                .map_or(CloseCode::NoStatusReceived, |f| f.code),
            End::Protocol(p) => p.close_code(),
            End::Failed(f) => f.code,
            End::Timeout(Timeout::Keepalive) => CloseCode::InternalError,
            End::Abnormal | End::Timeout(_) => CloseCode::Abnormal,
        }
    }

    /// The reason that goes with [`close_code`](Self::close_code) (the
    /// peer's, ours, or empty).
    pub fn reason(&self) -> &str {
        match self {
            End::Clean { received, .. } => received.as_ref().map_or("", |f| f.reason.as_str()),
            End::Protocol(p) => p.reason(),
            End::Failed(f) => f.reason.as_str(),
            End::Timeout(t) => t.close_frame().map_or("", |(_, reason)| reason),
            End::Abnormal => "",
        }
    }

    /// Whether the closing handshake completed.
    pub fn is_clean(&self) -> bool {
        matches!(self, End::Clean { .. })
    }

    /// Who ended the connection: `None` when nobody did (the transport
    /// broke, or a close timeout gave up waiting for the peer).
    pub fn initiator(&self) -> Option<Initiator> {
        match self {
            End::Clean { initiator, .. } => Some(*initiator),
            End::Protocol(_) | End::Failed(_) => Some(Initiator::Local),
            End::Timeout(Timeout::Keepalive | Timeout::Idle) => Some(Initiator::Local),
            End::Abnormal | End::Timeout(_) => None,
        }
    }
}

/// Why we failed the connection.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Protocol(ProtocolError),
    Local(CloseFrame),
}

/// The WebSocket side of a connection's life.
#[derive(Debug, Clone)]
pub(crate) enum Life {
    /// Messages flow both ways.
    Open,
    /// We sent a Close (`None`: without payload); the peer's is awaited.
    CloseSent(Option<CloseFrame>),
    /// Close frames went both ways.
    HandshakeDone {
        initiator: Initiator,
        sent: Option<CloseFrame>,
        received: Option<CloseFrame>,
    },
    /// We failed the connection; `sent` is the Close we sent (this one,
    /// or the one sent earlier). Nothing more is parsed.
    Failed {
        cause: Failure,
        sent: Option<CloseFrame>,
        received: Option<Option<CloseFrame>>,
    },
}

/// The transport side of a connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Open,
    /// Our write side is to be shut once the output is written.
    EofQueued,
    /// Nothing more goes through it: shut by us, broken, or given up on.
    Done(Finish),
}

/// How the transport was finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// We shut our write side as the protocol asked (the handshake
    /// completed, the connection failed, or the peer's stream ended).
    Shutdown,
    /// Reading or writing failed.
    Io,
    /// A timer ran out.
    Timeout(Timeout),
}

/// The two facts and the decisions drawn from them.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// `None` while open: what a closing connection records is boxed, so
    /// an open one (most of them, most of the time) carries one pointer.
    closing: Option<Box<Life>>,
    pub(crate) transport: Transport,
    /// End of stream was received from the peer.
    pub(crate) eof_received: bool,
}

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Self {
            closing: None,
            transport: Transport::Open,
            eof_received: false,
        }
    }

    /// Open, and nothing of the end began: no Close sent or received, no
    /// end of stream either way.
    pub(crate) fn is_untouched(&self) -> bool {
        self.closing.is_none() && matches!(self.transport, Transport::Open) && !self.eof_received
    }

    fn life(&self) -> &Life {
        self.closing.as_deref().unwrap_or(&Life::Open)
    }

    fn set_life(&mut self, life: Life) {
        self.closing = match life {
            Life::Open => None,
            life => Some(Box::new(life)),
        };
    }

    fn take_life(&mut self) -> Life {
        self.closing.take().map_or(Life::Open, |b| *b)
    }

    /// The Close frame we sent, if any.
    pub(crate) fn close_sent(&self) -> Option<&Option<CloseFrame>> {
        match self.life() {
            Life::Open => None,
            Life::CloseSent(sent)
            | Life::HandshakeDone { sent, .. }
            | Life::Failed { sent, .. } => Some(sent),
        }
    }

    /// The Close frame the peer sent, if any.
    pub(crate) fn close_received(&self) -> Option<&Option<CloseFrame>> {
        match self.life() {
            Life::HandshakeDone { received, .. } => Some(received),
            Life::Failed { received, .. } => received.as_ref(),
            Life::Open | Life::CloseSent(_) => None,
        }
    }

    pub(crate) fn failure(&self) -> Option<&ProtocolError> {
        match self.life() {
            Life::Failed {
                cause: Failure::Protocol(p),
                ..
            } => Some(p),
            _ => None,
        }
    }

    /// No more frames may be sent.
    pub(crate) fn close_was_sent(&self) -> bool {
        !matches!(self.life(), Life::Open) || matches!(self.transport, Transport::Done(_))
    }

    /// No more input is parsed.
    pub(crate) fn input_closed(&self) -> bool {
        matches!(
            self.life(),
            Life::HandshakeDone { .. } | Life::Failed { .. }
        )
    }

    /// The closing handshake is over (or failed): the transport closes next.
    pub(crate) fn close_expected(&self) -> bool {
        self.input_closed()
    }

    /// We sent a Close (`frame`).
    pub(crate) fn sent_close(&mut self, frame: Option<CloseFrame>, role_is_server: bool) {
        let life = match self.take_life() {
            Life::Open => Life::CloseSent(frame),
            // Peer's Close came first: our echo completes the handshake.
            other => other,
        };
        self.set_life(life);
        self.after_handshake(role_is_server);
    }

    /// The peer's Close arrived (`echo`: the reply we queued, if we had
    /// not sent a Close yet).
    pub(crate) fn received_close(
        &mut self,
        received: Option<CloseFrame>,
        echo: Option<Option<CloseFrame>>,
        role_is_server: bool,
    ) {
        let life = match self.take_life() {
            Life::Open => Life::HandshakeDone {
                initiator: Initiator::Remote,
                sent: echo.flatten(),
                received,
            },
            Life::CloseSent(sent) => Life::HandshakeDone {
                initiator: Initiator::Local,
                sent,
                received,
            },
            other => other,
        };
        self.set_life(life);
        self.after_handshake(role_is_server);
    }

    /// A server shuts TCP as soon as the handshake is done (RFC 6455
    /// §7.1.1); a client waits for the server to do it first.
    fn after_handshake(&mut self, role_is_server: bool) {
        if role_is_server && matches!(self.life(), Life::HandshakeDone { .. }) {
            self.queue_eof();
        }
    }

    /// We fail the connection with `cause`; `sent` is the Close queued now
    /// (`None` if one was sent before).
    pub(crate) fn failed(&mut self, cause: Failure, sent: Option<CloseFrame>) {
        if matches!(self.life(), Life::Failed { .. }) {
            return;
        }
        let received = self.close_received().cloned();
        let sent = match self.close_sent() {
            Some(earlier) => earlier.clone(),
            None => sent,
        };
        self.set_life(Life::Failed {
            cause,
            sent,
            received,
        });
        self.queue_eof();
    }

    pub(crate) fn received_eof(&mut self) {
        self.eof_received = true;
        self.queue_eof();
    }

    fn queue_eof(&mut self) {
        if self.transport == Transport::Open {
            self.transport = Transport::EofQueued;
        }
    }

    /// The Close frame to send for a timeout, if the connection is still
    /// open enough to send one.
    pub(crate) fn timeout_close(&self, which: Timeout) -> Option<(CloseCode, &'static str)> {
        which.close_frame().filter(|_| !self.close_was_sent())
    }

    pub(crate) fn finish(&mut self, how: Finish) {
        if !matches!(self.transport, Transport::Done(_)) {
            self.transport = Transport::Done(how);
        }
    }

    /// How the connection ended, once the transport is done.
    pub(crate) fn end(&self) -> Option<End> {
        let Transport::Done(how) = self.transport else {
            return None;
        };
        if let Finish::Timeout(t) = how {
            if t.overrides_handshake() {
                return Some(End::Timeout(t));
            }
        }
        Some(match (self.life(), how) {
            (
                Life::Failed {
                    cause: Failure::Protocol(p),
                    ..
                },
                _,
            ) => End::Protocol(p.clone()),
            (
                Life::Failed {
                    cause: Failure::Local(f),
                    ..
                },
                _,
            ) => End::Failed(f.clone()),
            (
                Life::HandshakeDone {
                    initiator,
                    sent,
                    received,
                },
                _,
            ) => End::Clean {
                initiator: *initiator,
                sent: sent.clone(),
                received: received.clone(),
            },
            (_, Finish::Timeout(t)) => End::Timeout(t),
            (_, Finish::Shutdown | Finish::Io) => End::Abnormal,
        })
    }
}
