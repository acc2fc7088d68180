//! The client side of the opening handshake on arbitrary bytes:
//! `parse_response` (default and tiny head limits), then
//! `validate_response_with` with and without a permessage-deflate offer.
//! Never panics; a parsed head is within the limits; an accepted response
//! has status 101, the right accept hash, an offered subprotocol and
//! deflate parameters within the offer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silverback_proto::extension::deflate::DeflateConfig;
use silverback_proto::handshake::client::{parse_response, validate_response_with};
use silverback_proto::handshake::{accept_key, HeadLimits};
use silverback_proto::http::HeaderValue;

/// The key of RFC 6455 §1.3; its accept value is
/// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=` (in the seeds).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, wire)) = data.split_first() else {
        return;
    };
    let limits = if sel & 1 == 0 {
        HeadLimits::default()
    } else {
        HeadLimits {
            max_head_size: 64 + usize::from(sel),
            max_headers: usize::from(sel >> 4),
        }
    };
    let (resp, n) = match parse_response(wire, limits) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(wire.len() < limits.max_head_size);
            return;
        }
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(n <= wire.len() && n <= limits.max_head_size);
    assert!(resp.headers().len() <= limits.max_headers);
    let key = HeaderValue::from_static(KEY);
    let protocols = ["chat", "superchat"];
    let offer = if sel & 2 == 0 {
        DeflateConfig::default()
    } else {
        DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            ..DeflateConfig::default()
        }
    };
    for deflate in [None, Some(&offer)] {
        match validate_response_with(&resp, &key, &protocols, deflate) {
            Ok((protocol, params)) => {
                assert_eq!(resp.status(), 101);
                assert_eq!(
                    resp.headers()["sec-websocket-accept"].as_bytes(),
                    accept_key(KEY.as_bytes()).as_bytes()
                );
                if let Some(p) = protocol {
                    assert!(protocols.contains(&p.as_str()));
                }
                match (deflate, params) {
                    (None, p) => assert!(p.is_none()),
                    (Some(cfg), Some(p)) => {
                        assert!(p.server_max_window_bits <= cfg.server_max_window_bits);
                        assert!(
                            (9..=cfg.client_max_window_bits).contains(&p.client_max_window_bits)
                        );
                        if cfg.server_no_context_takeover {
                            assert!(p.server_no_context_takeover);
                        }
                    }
                    (Some(_), None) => {}
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
