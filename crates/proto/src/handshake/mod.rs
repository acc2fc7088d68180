//! The opening handshake (RFC 6455 §4), on [`http`] types so that a raw
//! socket and hyper share one implementation.
//!
//! - [`server`]: parse and validate an upgrade request (HTTP/1.1 Upgrade,
//!   or HTTP/2 extended CONNECT, RFC 8441), negotiate the
//!   subprotocol, build the `101 Switching Protocols` response or the refusal.
//! - [`client`]: build an upgrade request and validate the response.

pub mod client;
pub mod server;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::HeaderMap;
use sha1::{Digest, Sha1};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
///
/// ```
/// // The example of RFC 6455 §1.3.
/// assert_eq!(
///     silverback_proto::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// [`accept_key`] into `buf`, without allocating: the 28 bytes of the
/// base64 of a SHA-1.
pub(crate) fn accept_key_into<'a>(key: &[u8], buf: &'a mut [u8; 28]) -> &'a [u8] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let n = BASE64.encode_slice(sha.finalize(), buf).unwrap_or_default();
    &buf[..n]
}

/// Whether header `name` holds `token` in any of its comma-separated
/// values, compared case-insensitively (e.g. `Connection: keep-alive, Upgrade`).
pub fn header_has_token(
    headers: &HeaderMap,
    name: impl http::header::AsHeaderName,
    token: &str,
) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The comma-separated tokens of every `name` header, trimmed, in order.
pub fn header_tokens(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Limits on the size of a handshake head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest request or response head (start line and headers), in bytes.
    pub max_head_size: usize,
    /// Largest number of header fields.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_head_size: 16 * 1024,
            max_headers: 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn token_lists_are_case_insensitive() {
        let mut h = HeaderMap::new();
        h.append(
            "connection",
            HeaderValue::from_static("keep-alive, UPGRADE"),
        );
        assert!(header_has_token(&h, "connection", "upgrade"));
        assert!(!header_has_token(&h, "connection", "close"));
        h.append("connection", HeaderValue::from_static("close"));
        assert!(header_has_token(&h, "connection", "close"));
        assert_eq!(
            header_tokens(&h, "connection"),
            ["keep-alive", "UPGRADE", "close"]
        );
    }
}
