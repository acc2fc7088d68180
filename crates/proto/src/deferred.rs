//! Decoding a compressed message outside its connection.
//!
//! A reader task that shares its connection with a writer (split halves
//! behind a lock) should not hold the connection while it inflates a large
//! message: with [`Connection::set_defer_decoding`], a whole compressed
//! message comes out as an [`EncodedMessage`] (its frames' payloads, still
//! compressed), and the reader decodes it with the connection's
//! [`MessageDecoder`], taken out for the time it takes.
//!
//! [`Connection::set_defer_decoding`]: crate::Connection::set_defer_decoding

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::extension::Decoder;
use crate::{Message, MessageKind, Utf8Bytes};

/// A whole data message whose payload an extension still has to decode;
/// see [`Connection::set_defer_decoding`](crate::Connection::set_defer_decoding).
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    pub(crate) kind: MessageKind,
    pub(crate) rsv: u8,
    /// The frames' payloads, in order.
    pub(crate) parts: Vec<Bytes>,
}

impl fmt::Debug for EncodedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedMessage")
            .field("kind", &self.kind)
            .field("frames", &self.parts.len())
            .field("encoded_len", &self.encoded_len())
            .finish()
    }
}

impl EncodedMessage {
    /// The message's type.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Bytes received (before decoding).
    pub fn encoded_len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Decodes the message with `decoder` (taken from its connection with
    /// [`Connection::take_decoder`](crate::Connection::take_decoder)), with
    /// the connection's checks: the size limit (1009) and UTF-8 for text
    /// (1007). On an error, fail the connection with
    /// [`Connection::decoding_failed`](crate::Connection::decoding_failed).
    pub fn decode(self, decoder: &mut MessageDecoder) -> Result<Message, ProtocolError> {
        let max = decoder.max_message_size;
        let mut out = BytesMut::new();
        let last = self.parts.len().saturating_sub(1);
        for (i, part) in self.parts.iter().enumerate() {
            decoder
                .inner
                .decode(self.rsv, part, i == last, &mut out, max)
                .map_err(ProtocolError::Extension)?;
            if out.len() > max {
                return Err(ProtocolError::MessageTooLarge { max });
            }
        }
        let data = out.freeze();
        Ok(match self.kind {
            MessageKind::Binary => Message::Binary(data),
            MessageKind::Text => {
                Message::Text(Utf8Bytes::try_from(data).map_err(|_| ProtocolError::InvalidUtf8)?)
            }
        })
    }
}

/// A connection's decoder, taken out of it; see
/// [`Connection::take_decoder`](crate::Connection::take_decoder).
pub struct MessageDecoder {
    pub(crate) inner: Box<dyn Decoder>,
    pub(crate) max_message_size: usize,
}

impl fmt::Debug for MessageDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageDecoder")
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}
