//! The extension hook (RFC 6455 §9): where permessage-deflate plugs in.
//!
//! An [`Extension`] negotiated during the handshake is given to the
//! [`Connection`](crate::Connection). It declares which RSV bits it uses;
//! frames with other RSV bits set are still a protocol error (1002). On
//! receive, each frame of a message whose first frame carries the
//! extension's bits is passed through [`Extension::decode`] (streaming,
//! with the message size limit, so a decompression bomb is stopped early);
//! on send, each whole message goes through [`Extension::encode`], and each
//! fragment of a message streamed in pieces through
//! [`Extension::encode_fragment`].

pub mod deflate;

use std::fmt;

use bytes::BytesMut;

use crate::{CloseCode, OpCode};

/// An error raised by an extension: the connection fails with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionError {
    /// The close code to fail the connection with (1002, 1007, 1009, ...).
    pub code: CloseCode,
    /// A short reason, sent in the Close frame.
    pub reason: &'static str,
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "extension error ({}): {}", self.code, self.reason)
    }
}

impl std::error::Error for ExtensionError {}

/// A per-message transform negotiated in the handshake.
pub trait Extension: Send + 'static {
    /// The RSV bits (e.g. [`RSV1`](crate::frame::RSV1)) this extension may
    /// set on the first frame of a data message.
    fn rsv_bits(&self) -> u8;

    /// Decodes one frame's payload of a message whose first frame carried
    /// `rsv` (a non-zero subset of [`rsv_bits`](Self::rsv_bits)),
    /// appending the result to `out`. `fin` marks the message's last frame.
    /// `out` must not grow past `max_len` bytes: return an error with
    /// [`CloseCode::MessageTooBig`] instead.
    fn decode(
        &mut self,
        rsv: u8,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ExtensionError>;

    /// Encodes a whole message payload into `out` and returns the RSV bits
    /// to set on its first frame. Returning `Ok(None)` sends `payload` as
    /// it is, without RSV bits (e.g. when compression does not pay).
    fn encode(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError>;

    /// Like [`encode`](Self::encode), with a per-message override:
    /// `Some(false)` sends this message as it is, `Some(true)` transforms
    /// it even when the extension would not (e.g. below a size threshold).
    fn encode_with(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut BytesMut,
        transform: Option<bool>,
    ) -> Result<Option<u8>, ExtensionError> {
        if transform == Some(false) {
            return Ok(None);
        }
        self.encode(opcode, payload, out)
    }

    /// Encodes one fragment of a message sent in pieces
    /// ([`Connection::send_message_part`](crate::Connection::send_message_part))
    /// into `out`: `first` for its first fragment, `fin` for its last (both
    /// for a message in one piece). Returns the RSV bits to set on the
    /// first frame; the result for the first fragment decides for the
    /// whole message: `Ok(None)` sends every fragment as it is (and later
    /// fragments are not passed here). The default sends streamed
    /// messages untransformed.
    fn encode_fragment(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        first: bool,
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError> {
        let _ = (opcode, payload, first, fin, out);
        Ok(None)
    }

    /// Frees memory that the next message can rebuild (e.g. a compressor
    /// without context takeover). Called for idle connections.
    fn release_memory(&mut self) {}

    /// A key for this extension's output when it does not depend on the
    /// messages sent before (no context kept between messages): two
    /// extensions with the same key encode a message to the same bytes, so
    /// a [`PreparedMessage`](crate::PreparedMessage) is encoded once per
    /// key. `None` (the default): the output depends on this connection's
    /// history, and each message is encoded by this extension.
    fn shared_encoding_key(&self) -> Option<u64> {
        None
    }

    /// Moves the receive side out, so that a message can be decoded
    /// without the rest of the connection (a reader task that does not hold
    /// the connection's lock while it inflates; see
    /// [`Connection::set_defer_decoding`](crate::Connection::set_defer_decoding)).
    /// `None` (the default): this extension cannot; messages are decoded
    /// inside the connection.
    fn take_decoder(&mut self) -> Option<Box<dyn Decoder>> {
        None
    }

    /// Puts back what [`take_decoder`](Self::take_decoder) gave.
    fn put_decoder(&mut self, decoder: Box<dyn Decoder>) {
        drop(decoder);
    }
}

/// The receive side of an [`Extension`], moved out of its connection
/// ([`Extension::take_decoder`]).
pub trait Decoder: Send + 'static {
    /// Like [`Extension::decode`].
    fn decode(
        &mut self,
        rsv: u8,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ExtensionError>;

    /// For [`Extension::put_decoder`] to take its own type back.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}
