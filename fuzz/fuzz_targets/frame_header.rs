//! `decode_header` on arbitrary bytes: never panics, never claims more
//! bytes than it was given, and a decoded header re-encodes (in the
//! shortest form) to bytes that decode to the same header.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use silverback_proto::frame::{decode_header, encode_header, header_len, Decoded, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    match decode_header(data) {
        Ok(Decoded::Header(h, n)) => {
            assert!(n <= data.len() && (2..=MAX_HEADER_LEN).contains(&n));
            assert!(h.payload_len < 1 << 63);
            if h.opcode.is_control() {
                assert!(h.fin && h.payload_len <= 125);
            }
            let mut out = BytesMut::new();
            encode_header(&mut out, &h);
            assert_eq!(out.len(), header_len(h.payload_len, h.mask.is_some()));
            // The shortest form is never longer than what was decoded.
            assert!(out.len() <= n);
            assert_eq!(decode_header(&out), Ok(Decoded::Header(h, out.len())));
            // Same first byte (FIN, RSV, opcode) and mask bit.
            assert_eq!(out[0], data[0]);
            assert_eq!(out[1] & 0x80, data[1] & 0x80);
            // Any prefix of it is incomplete, and says how much is missing.
            for cut in 0..out.len() {
                match decode_header(&out[..cut]) {
                    Ok(Decoded::Incomplete(k)) => assert!(k >= 1 && cut + k <= out.len()),
                    other => panic!("prefix {cut}: {other:?}"),
                }
            }
        }
        Ok(Decoded::Incomplete(k)) => {
            assert!(k >= 1 && data.len() + k <= MAX_HEADER_LEN);
        }
        Err(_) => {}
    }
});
