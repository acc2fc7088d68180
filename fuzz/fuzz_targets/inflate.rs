//! `PerMessageDeflate::decode` on arbitrary compressed data, split into
//! frames at arbitrary points, with a small `max_len`: it never panics,
//! never grows the message past `max_len`, and fails only with 1007
//! (invalid data) or 1009 (too large). Input: `len_sel flags` then
//! messages, each `k l1 .. lk data` (k = 1 + k % 4 frames of l1 .. lk
//! bytes). With the high bit of the second
//! byte set, the rest is plain data instead: compressed by one endpoint,
//! it inflates back to itself at the other (a round trip).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use silverback_proto::extension::deflate::{DeflateConfig, DeflateParams, PerMessageDeflate};
use silverback_proto::extension::Extension;
use silverback_proto::frame::RSV1;
use silverback_proto::{CloseCode, OpCode, Role};

fuzz_target!(|data: &[u8]| {
    let [len_sel, flags, rest @ ..] = data else {
        return;
    };
    let max_len = 1 + usize::from(*len_sel) * 64;
    let shared = flags & 0x01 != 0;
    let no_takeover = shared || flags & 0x02 != 0;
    let bits = 9 + ((flags >> 2) & 0x7) % 7;
    let cfg = DeflateConfig {
        server_no_context_takeover: no_takeover,
        client_no_context_takeover: no_takeover,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
        memory: if shared {
            silverback_proto::extension::deflate::MemoryMode::Shared
        } else {
            silverback_proto::extension::deflate::MemoryMode::Dedicated
        },
        level: u32::from(flags >> 5) + 1,
        ..DeflateConfig::default()
    };
    let params = DeflateParams {
        server_no_context_takeover: no_takeover,
        client_no_context_takeover: no_takeover,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    };
    let mut receiver = PerMessageDeflate::new(Role::Client, params, &cfg);

    if flags & 0x80 != 0 {
        // Round trip: the server compresses `rest` (twice: context
        // takeover), the client inflates it back.
        let mut sender = PerMessageDeflate::new(Role::Server, params, &cfg);
        for _ in 0..2 {
            let mut wire = BytesMut::new();
            let rsv = sender
                .encode_with(OpCode::Binary, rest, &mut wire, Some(true))
                .expect("compression never fails");
            assert_eq!(rsv, Some(RSV1));
            let mut out = BytesMut::new();
            receiver
                .decode(RSV1, &wire, true, &mut out, rest.len())
                .expect("our own compressed data inflates");
            assert_eq!(&out[..], rest);
        }
        return;
    }

    // Messages, each `k l1 .. lk data`: k frames (1..=4) of l1 .. lk
    // bytes (the last one takes what is left if the input is short).
    let mut input = rest;
    while let Some((&k, tail)) = input.split_first() {
        let k = usize::from(k % 4) + 1;
        let lens: Vec<usize> = tail.iter().take(k).map(|&l| usize::from(l)).collect();
        input = &tail[lens.len()..];
        let mut out = BytesMut::new();
        for i in 0..k {
            let fin = i + 1 == k;
            let n = lens.get(i).copied().unwrap_or(0).min(input.len());
            let (frame, later) = input.split_at(n);
            input = later;
            match receiver.decode(RSV1, frame, fin, &mut out, max_len) {
                Ok(()) => assert!(out.len() <= max_len, "{} > {max_len}", out.len()),
                Err(e) => {
                    assert!(out.len() <= max_len, "{} > {max_len}", out.len());
                    assert!(
                        matches!(e.code, CloseCode::InvalidPayload | CloseCode::MessageTooBig),
                        "{e}"
                    );
                    // A failed connection is closed: start over with a
                    // fresh receiver, as a new connection would.
                    receiver = PerMessageDeflate::new(Role::Client, params, &cfg);
                    break;
                }
            }
        }
    }
});
