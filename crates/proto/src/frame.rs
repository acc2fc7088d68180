//! Frame headers (RFC 6455 §5.2): incremental decoding and encoding.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! ```

use bytes::BufMut;

/// A frame opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: Close.
    Close,
    /// 0x9: Ping.
    Ping,
    /// 0xA: Pong.
    Pong,
}

impl OpCode {
    /// Decodes a 4-bit opcode; reserved values give `None`.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong are control frames.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// RSV1 bit (used by permessage-deflate).
pub const RSV1: u8 = 0x40;
/// RSV2 bit.
pub const RSV2: u8 = 0x20;
/// RSV3 bit.
pub const RSV3: u8 = 0x10;

/// Largest payload a control frame may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest possible frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of its message.
    pub fin: bool,
    /// The RSV1..RSV3 bits, in their wire positions (`RSV1 | RSV2 | RSV3`).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// The outcome of [`decode_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A whole header: the header and how many bytes it took.
    Header(FrameHeader, usize),
    /// The header is not complete: at least this many more bytes are needed.
    Incomplete(usize),
}

/// A header that breaks RFC 6455 no matter what was negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Opcode 0x3-0x7 or 0xB-0xF.
    ReservedOpcode(u8),
    /// A control frame without FIN.
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong,
    /// A 64-bit length with its most significant bit set.
    InvalidLength,
}

/// Decodes a frame header from the start of `buf`.
///
/// Checks the rules that depend on the header alone (reserved opcodes,
/// control frame limits, the 64-bit length's top bit). RSV bits, masking
/// and size limits depend on the connection and are checked by it.
///
/// ```
/// use silverback_proto::frame::{decode_header, Decoded, OpCode};
/// // An unmasked text frame "Hello" (RFC 6455 §5.7).
/// let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
/// assert_eq!(decode_header(&wire[..1]), Ok(Decoded::Incomplete(1)));
/// let Ok(Decoded::Header(h, len)) = decode_header(&wire) else { panic!() };
/// assert_eq!((h.fin, h.opcode, h.payload_len, len), (true, OpCode::Text, 5, 2));
/// ```
pub fn decode_header(buf: &[u8]) -> Result<Decoded, HeaderError> {
    if buf.len() < 2 {
        return Ok(Decoded::Incomplete(2 - buf.len()));
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let fin = b0 & 0x80 != 0;
    let rsv = b0 & (RSV1 | RSV2 | RSV3);
    let op = b0 & 0x0f;
    let opcode = OpCode::from_u8(op).ok_or(HeaderError::ReservedOpcode(op))?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    if opcode.is_control() {
        if !fin {
            return Err(HeaderError::FragmentedControl);
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(HeaderError::ControlTooLong);
        }
    }
    let ext_len = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext_len + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return Ok(Decoded::Incomplete(header_len - buf.len()));
    }
    let payload_len = match len7 {
        126 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(HeaderError::InvalidLength);
            }
            len
        }
        n => u64::from(n),
    };
    let mask = if masked {
        let at = 2 + ext_len;
        Some([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
    } else {
        None
    };
    Ok(Decoded::Header(
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        },
        header_len,
    ))
}

/// Appends a frame header to `out`, choosing the shortest length form.
///
/// ```
/// use bytes::BytesMut;
/// use silverback_proto::frame::{encode_header, FrameHeader, OpCode};
/// let mut out = BytesMut::new();
/// let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: 256 };
/// encode_header(&mut out, &h);
/// assert_eq!(&out[..], [0x82, 0x7e, 0x01, 0x00]);
/// ```
pub fn encode_header(out: &mut impl BufMut, h: &FrameHeader) {
    let b0 = (if h.fin { 0x80 } else { 0 }) | (h.rsv & (RSV1 | RSV2 | RSV3)) | h.opcode.as_u8();
    let mask_bit = if h.mask.is_some() { 0x80 } else { 0 };
    out.put_u8(b0);
    if h.payload_len < 126 {
        out.put_u8(mask_bit | h.payload_len as u8);
    } else if h.payload_len <= u64::from(u16::MAX) {
        out.put_u8(mask_bit | 126);
        out.put_u16(h.payload_len as u16);
    } else {
        out.put_u8(mask_bit | 127);
        out.put_u64(h.payload_len);
    }
    if let Some(key) = h.mask {
        out.put_slice(&key);
    }
}

/// The encoded size of a header for this payload length and masking.
pub fn header_len(payload_len: u64, masked: bool) -> usize {
    let base = if payload_len < 126 {
        2
    } else if payload_len <= u64::from(u16::MAX) {
        4
    } else {
        10
    };
    base + if masked { 4 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn roundtrip(h: FrameHeader) {
        let mut out = BytesMut::new();
        encode_header(&mut out, &h);
        assert_eq!(out.len(), header_len(h.payload_len, h.mask.is_some()));
        // Every strict prefix is incomplete and says how much is missing
        // (at least one byte, never more than the real remainder).
        for cut in 0..out.len() {
            match decode_header(&out[..cut]) {
                Ok(Decoded::Incomplete(n)) => assert!(n >= 1 && cut + n <= out.len()),
                other => panic!("prefix {cut} of {h:?}: {other:?}"),
            }
        }
        assert_eq!(decode_header(&out), Ok(Decoded::Header(h, out.len())));
    }

    #[test]
    fn all_length_forms_roundtrip() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 32, (1 << 63) - 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                for (fin, rsv) in [(true, 0), (false, RSV1), (true, RSV1 | RSV2 | RSV3)] {
                    roundtrip(FrameHeader {
                        fin,
                        rsv,
                        opcode: OpCode::Binary,
                        mask,
                        payload_len: len,
                    });
                }
            }
        }
    }

    #[test]
    fn lengths_use_the_minimal_form() {
        assert_eq!(header_len(125, false), 2);
        assert_eq!(header_len(126, false), 4);
        assert_eq!(header_len(65535, false), 4);
        assert_eq!(header_len(65536, false), 10);
        assert_eq!(header_len(65536, true), 14);
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                decode_header(&[0x80 | op, 0]),
                Err(HeaderError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn rejects_bad_control_frames() {
        assert_eq!(
            decode_header(&[0x09, 0]),
            Err(HeaderError::FragmentedControl)
        );
        assert_eq!(
            decode_header(&[0x89, 126]),
            Err(HeaderError::ControlTooLong)
        );
        assert!(matches!(
            decode_header(&[0x89, 125]),
            Ok(Decoded::Incomplete(_)) | Ok(Decoded::Header(..))
        ));
    }

    #[test]
    fn rejects_64_bit_length_with_top_bit() {
        let wire = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_header(&wire), Err(HeaderError::InvalidLength));
        let wire = [0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(
            matches!(decode_header(&wire), Ok(Decoded::Header(h, 10)) if h.payload_len == (1 << 63) - 1)
        );
    }
}
