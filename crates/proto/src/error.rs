//! Errors of the protocol core.

use std::fmt;

use crate::close::ClosePayloadError;
use crate::extension::ExtensionError;
use crate::frame::HeaderError;
use crate::CloseCode;

/// The peer broke the protocol. Each kind maps to the close code sent to
/// the peer before the connection is closed ([`close_code`](Self::close_code)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A client sent an unmasked frame (1002).
    UnmaskedFrame,
    /// A server sent a masked frame (1002).
    MaskedFrame,
    /// RSV bits set that no negotiated extension uses (1002).
    ReservedBits(u8),
    /// A reserved opcode (1002).
    ReservedOpcode(u8),
    /// A fragmented control frame (1002).
    FragmentedControl,
    /// A control frame over 125 bytes (1002).
    ControlTooLong,
    /// A 64-bit length with its top bit set (1002).
    InvalidLength,
    /// A continuation frame with no message to continue (1002).
    UnexpectedContinuation,
    /// A new data frame inside a fragmented message (1002).
    ExpectedContinuation,
    /// A text message (or close reason) that is not UTF-8 (1007).
    InvalidUtf8,
    /// A Close frame with a one-byte payload (1002).
    ClosePayloadTooShort,
    /// A Close frame with a code that may not be sent (1002).
    InvalidCloseCode(u16),
    /// A Close frame whose reason is not UTF-8 (1002).
    InvalidCloseReason,
    /// A frame larger than the frame size limit (1009).
    FrameTooLarge {
        /// The declared payload length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A message larger than the message size limit (1009).
    MessageTooLarge {
        /// The limit.
        max: usize,
    },
    /// A negotiated extension failed.
    Extension(ExtensionError),
}

impl ProtocolError {
    /// The close code sent to the peer for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 => CloseCode::InvalidPayload,
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::MessageTooBig,
            Self::Extension(e) => e.code,
            _ => CloseCode::ProtocolError,
        }
    }

    /// A short reason for the Close frame (no details of our internals).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnmaskedFrame => "client frames must be masked",
            Self::MaskedFrame => "server frames must not be masked",
            Self::ReservedBits(_) => "reserved bits set",
            Self::ReservedOpcode(_) => "reserved opcode",
            Self::FragmentedControl => "fragmented control frame",
            Self::ControlTooLong => "control frame too long",
            Self::InvalidLength => "invalid payload length",
            Self::UnexpectedContinuation => "unexpected continuation frame",
            Self::ExpectedContinuation => "expected continuation frame",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::ClosePayloadTooShort => "close payload of one byte",
            Self::InvalidCloseCode(_) => "invalid close code",
            Self::InvalidCloseReason => "invalid UTF-8 in close reason",
            Self::FrameTooLarge { .. } => "frame too large",
            Self::MessageTooLarge { .. } => "message too large",
            Self::Extension(e) => e.reason,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBits(b) => write!(f, "reserved bits set: {b:#04x}"),
            Self::ReservedOpcode(o) => write!(f, "reserved opcode {o:#x}"),
            Self::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            Self::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            Self::MessageTooLarge { max } => write!(f, "message exceeds the limit of {max} bytes"),
            Self::Extension(e) => write!(f, "{e}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<HeaderError> for ProtocolError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::ReservedOpcode(o) => Self::ReservedOpcode(o),
            HeaderError::FragmentedControl => Self::FragmentedControl,
            HeaderError::ControlTooLong => Self::ControlTooLong,
            HeaderError::InvalidLength => Self::InvalidLength,
        }
    }
}

impl From<ClosePayloadError> for ProtocolError {
    fn from(e: ClosePayloadError) -> Self {
        match e {
            ClosePayloadError::OneByte => Self::ClosePayloadTooShort,
            ClosePayloadError::InvalidCode(c) => Self::InvalidCloseCode(c),
            ClosePayloadError::InvalidReason => Self::InvalidCloseReason,
        }
    }
}

/// A send that the connection's state or the protocol does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A Close frame was already sent (or the connection failed): no more
    /// frames may follow it.
    Closing,
    /// A control frame payload over 125 bytes.
    ControlTooLong,
    /// A close code that may not be sent on the wire (e.g. 1006).
    InvalidCloseCode(CloseCode),
    /// A whole message while a fragmented one is being sent, or a
    /// continuation with no fragmented message started.
    Fragmentation,
    /// The negotiated extension failed to encode.
    Extension(ExtensionError),
    /// A piece of a text message streamed with
    /// [`Connection::send_message_part`](crate::Connection::send_message_part)
    /// that is not UTF-8 (or a message that ends inside a character).
    /// Nothing was queued.
    InvalidUtf8,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closing => {
                f.write_str("the connection is closing: no frame may follow the Close frame")
            }
            Self::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            Self::InvalidCloseCode(c) => write!(f, "close code {c} may not be sent"),
            Self::Fragmentation => f.write_str("fragmented message out of sequence"),
            Self::Extension(e) => write!(f, "{e}"),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8 in a text message"),
        }
    }
}

impl std::error::Error for SendError {}
