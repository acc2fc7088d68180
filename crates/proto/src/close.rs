//! Close codes and Close frame payloads (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::Utf8Bytes;

/// A close status code (RFC 6455 §7.4).
///
/// Named variants cover the codes the RFC and the IANA registry define;
/// anything else is [`CloseCode::Other`]. `CloseCode::from(u16)` always picks
/// the named variant when there is one, so codes compare equal however they
/// were built.
///
/// ```
/// use silverback_proto::CloseCode;
/// assert_eq!(CloseCode::from(1001), CloseCode::GoingAway);
/// assert_eq!(u16::from(CloseCode::MessageTooBig), 1009);
/// assert!(CloseCode::from(4000).is_sendable());
/// assert!(!CloseCode::Abnormal.is_sendable()); // 1006 never goes on the wire
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    Normal,
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    GoingAway,
    /// 1002: protocol error.
    ProtocolError,
    /// 1003: a type of data the endpoint cannot accept.
    UnsupportedData,
    /// 1005: no status code was present (never sent on the wire).
    NoStatusReceived,
    /// 1006: the connection closed without a Close frame (never sent).
    Abnormal,
    /// 1007: data inconsistent with the message type (e.g. bad UTF-8).
    InvalidPayload,
    /// 1008: a message violates the endpoint's policy.
    PolicyViolation,
    /// 1009: a message too big to process.
    MessageTooBig,
    /// 1010: the client expected an extension the server did not agree to.
    MandatoryExtension,
    /// 1011: an unexpected condition on the server.
    InternalError,
    /// 1012: the service is restarting.
    ServiceRestart,
    /// 1013: try again later.
    TryAgainLater,
    /// 1014: bad gateway.
    BadGateway,
    /// 1015: TLS handshake failure (never sent).
    TlsHandshake,
    /// Any other code, e.g. 3000–4999 for libraries and applications.
    Other(u16),
}

impl CloseCode {
    /// Whether this code may appear in a Close frame on the wire:
    /// 1000–1003, 1007–1014 and 3000–4999.
    pub fn is_sendable(self) -> bool {
        matches!(u16::from(self), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        match code {
            1000 => Self::Normal,
            1001 => Self::GoingAway,
            1002 => Self::ProtocolError,
            1003 => Self::UnsupportedData,
            1005 => Self::NoStatusReceived,
            1006 => Self::Abnormal,
            1007 => Self::InvalidPayload,
            1008 => Self::PolicyViolation,
            1009 => Self::MessageTooBig,
            1010 => Self::MandatoryExtension,
            1011 => Self::InternalError,
            1012 => Self::ServiceRestart,
            1013 => Self::TryAgainLater,
            1014 => Self::BadGateway,
            1015 => Self::TlsHandshake,
            other => Self::Other(other),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        match code {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::NoStatusReceived => 1005,
            CloseCode::Abnormal => 1006,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::MandatoryExtension => 1010,
            CloseCode::InternalError => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::TryAgainLater => 1013,
            CloseCode::BadGateway => 1014,
            CloseCode::TlsHandshake => 1015,
            CloseCode::Other(c) => c,
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", u16::from(*self))
    }
}

/// The code and reason carried by a Close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8 (may be empty).
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A Close frame with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {:?}", self.code, &*self.reason)
        }
    }
}

/// Why a received Close payload is invalid (all map to close code 1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosePayloadError {
    /// A one-byte payload: too short for a code.
    OneByte,
    /// A code that may not appear on the wire.
    InvalidCode(u16),
    /// A reason that is not UTF-8.
    InvalidReason,
}

/// Parses a received Close payload. An empty payload gives `None`.
pub fn parse_close_payload(payload: Bytes) -> Result<Option<CloseFrame>, ClosePayloadError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ClosePayloadError::OneByte),
        _ => {
            let raw = u16::from_be_bytes([payload[0], payload[1]]);
            let code = CloseCode::from(raw);
            if !code.is_sendable() {
                return Err(ClosePayloadError::InvalidCode(raw));
            }
            let reason = Utf8Bytes::try_from(payload.slice(2..))
                .map_err(|_| ClosePayloadError::InvalidReason)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// Maximum reason length in bytes: a control payload is at most 125 bytes.
pub const MAX_REASON_LEN: usize = 123;

/// Builds a Close payload; the reason is cut to at most 123 bytes on a
/// character boundary.
pub fn encode_close_payload(frame: Option<&CloseFrame>) -> BytesMut {
    let mut out = BytesMut::new();
    if let Some(frame) = frame {
        out.put_u16(frame.code.into());
        out.put_slice(truncate_reason(&frame.reason).as_bytes());
    }
    out
}

/// A Close frame's payload in a buffer of its own (no allocation): the
/// bytes and how many of them are used.
pub(crate) struct ClosePayload {
    buf: [u8; 125],
    len: usize,
}

impl ClosePayload {
    pub(crate) fn new(frame: Option<&CloseFrame>) -> Self {
        let mut buf = [0u8; 125];
        let mut len = 0;
        if let Some(frame) = frame {
            let reason = truncate_reason(&frame.reason).as_bytes();
            buf[..2].copy_from_slice(&u16::from(frame.code).to_be_bytes());
            buf[2..2 + reason.len()].copy_from_slice(reason);
            len = 2 + reason.len();
        }
        Self { buf, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Cuts `reason` to at most [`MAX_REASON_LEN`] bytes on a char boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_match_the_rfc() {
        for code in 0u16..=u16::MAX {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode::from(code).is_sendable(), expected, "{code}");
            assert_eq!(u16::from(CloseCode::from(code)), code);
        }
    }

    #[test]
    fn payload_parsing() {
        assert_eq!(parse_close_payload(Bytes::new()), Ok(None));
        assert_eq!(
            parse_close_payload(Bytes::from_static(&[3])),
            Err(ClosePayloadError::OneByte)
        );
        assert_eq!(
            parse_close_payload(Bytes::from_static(&[0x03, 0xed])),
            Err(ClosePayloadError::InvalidCode(1005))
        );
        assert_eq!(
            parse_close_payload(Bytes::from_static(&[0x03, 0xe8, 0xff])),
            Err(ClosePayloadError::InvalidReason)
        );
        let ok = parse_close_payload(Bytes::from_static(b"\x0f\xa0bye"))
            .unwrap()
            .unwrap();
        assert_eq!(ok.code, CloseCode::Other(4000));
        assert_eq!(&*ok.reason, "bye");
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let cut = truncate_reason(&reason);
        assert!(cut.len() <= MAX_REASON_LEN);
        assert_eq!(cut.len(), 122);
    }
}
