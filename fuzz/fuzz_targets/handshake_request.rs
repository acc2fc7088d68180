//! The server side of the opening handshake on arbitrary bytes:
//! `parse_request` (default and tiny head limits), then `validate_request`,
//! `same_origin`, the permessage-deflate negotiation and the response
//! (101 or the refusal). Never panics; a parsed head is within the limits;
//! an accepted request gets a valid 101; the deflate parameters chosen are
//! ones our client accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silverback_proto::extension::deflate::{client_accept, server_negotiate, DeflateConfig};
use silverback_proto::handshake::server::{
    accept_response, negotiate_subprotocol, parse_request, same_origin, validate_request,
    write_response,
};
use silverback_proto::handshake::HeadLimits;

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
    let (req, n) = match parse_request(wire, limits) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(wire.len() < limits.max_head_size);
            return;
        }
        Err(rejection) => {
            assert!(rejection.status.is_client_error(), "{rejection}");
            let mut out = Vec::new();
            write_response(&rejection.to_response(), &mut out);
            return;
        }
    };
    assert!(n <= wire.len() && n <= limits.max_head_size);
    assert!(req.headers().len() <= limits.max_headers);
    let _ = same_origin(&req);
    match validate_request(&req) {
        Ok(up) => {
            let protocol = negotiate_subprotocol(&up.protocols, &["chat", "superchat"]);
            let cfg = if sel & 2 == 0 {
                DeflateConfig::default()
            } else {
                DeflateConfig::shared()
            };
            let params = server_negotiate(up.extensions.iter().map(String::as_str), &cfg);
            let ext = params.map(|p| p.to_string());
            let resp = accept_response(&up.key, protocol, ext.as_deref())
                .expect("a validated request can be accepted");
            assert_eq!(resp.status(), 101);
            let mut out = Vec::new();
            write_response(&resp.map(|()| ""), &mut out);
            // What the server agreed, our client (offering the most)
            // accepts, unless it imposes an 8-bit client window (which our
            // client never offers: zlib cannot compress with it).
            if let (Some(p), Some(ext)) = (params, ext.as_deref()) {
                assert!((9..=15).contains(&p.server_max_window_bits));
                if p.client_max_window_bits >= 9 {
                    let offer = DeflateConfig::default();
                    let agreed = client_accept([ext], &offer)
                        .unwrap_or_else(|e| panic!("{ext:?} refused: {e}"));
                    let agreed = agreed.expect("an extension was agreed");
                    assert_eq!(agreed.server_max_window_bits, p.server_max_window_bits);
                    assert_eq!(agreed.client_max_window_bits, p.client_max_window_bits);
                    assert_eq!(
                        agreed.server_no_context_takeover,
                        p.server_no_context_takeover
                    );
                }
            }
        }
        Err(rejection) => {
            assert!(rejection.status.is_client_error(), "{rejection}");
            let mut out = Vec::new();
            write_response(&rejection.to_response(), &mut out);
        }
    }
});
