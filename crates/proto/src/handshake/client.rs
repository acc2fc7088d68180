//! Client side of the opening handshake.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};

use crate::extension::deflate::{client_accept, DeflateConfig, DeflateParams};

use super::{accept_key, header_has_token, header_tokens, HeadLimits};

/// A fresh random `Sec-WebSocket-Key` (base64 of 16 random bytes).
pub fn generate_key() -> HeaderValue {
    let raw: [u8; 16] = rand::random();
    HeaderValue::from_str(&BASE64.encode(raw)).expect("base64 is a valid header value")
}

/// Why a handshake response was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// The server answered with a status other than 101.
    Status(StatusCode),
    /// The head could not be parsed, or was too large.
    Malformed(String),
    /// `Upgrade: websocket` or `Connection: upgrade` is missing.
    NotUpgraded,
    /// `Sec-WebSocket-Accept` does not match the key sent.
    BadAccept,
    /// The server chose a subprotocol the client did not offer.
    UnofferedProtocol(String),
    /// The server answered with an extension the client did not offer.
    UnofferedExtension(String),
    /// The server's extension parameters are not acceptable.
    Extension(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "server answered {s} instead of 101 Switching Protocols"),
            Self::Malformed(e) => write!(f, "malformed handshake response: {e}"),
            Self::NotUpgraded => {
                f.write_str("response lacks Upgrade: websocket / Connection: upgrade")
            }
            Self::BadAccept => f.write_str("Sec-WebSocket-Accept does not match the key"),
            Self::UnofferedProtocol(p) => {
                write!(f, "server chose subprotocol {p:?} that was not offered")
            }
            Self::Extension(e) => write!(f, "unacceptable extension response: {e}"),
            Self::UnofferedExtension(e) => {
                write!(f, "server answered extension {e:?} that was not offered")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

/// Builds an upgrade request for `uri` (`ws://` or `wss://`) with `key`.
///
/// `protocols` become `Sec-WebSocket-Protocol`; `extra` headers are added
/// last (e.g. `Authorization`, `Origin`).
///
/// ```
/// use silverback_proto::handshake::client::{build_request, generate_key};
/// let uri: http::Uri = "ws://example.com:9000/chat?room=1".parse().unwrap();
/// let req = build_request(&uri, &generate_key(), &["chat"], &[]).unwrap();
/// assert_eq!(req.uri(), "/chat?room=1");
/// assert_eq!(req.headers()["host"], "example.com:9000");
/// ```
pub fn build_request(
    uri: &Uri,
    key: &HeaderValue,
    protocols: &[&str],
    extra: &[(HeaderName, HeaderValue)],
) -> Result<Request<()>, http::Error> {
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("localhost");
    let default_port = match uri.scheme_str() {
        Some("wss") | Some("https") => 443,
        _ => 80,
    };
    let host = match uri.port_u16() {
        Some(p) if p == default_port => authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority),
        _ => authority,
    };
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut b = Request::get(target)
        .version(Version::HTTP_11)
        .header(header::HOST, host)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_KEY, key.clone())
        .header(header::SEC_WEBSOCKET_VERSION, "13");
    if !protocols.is_empty() {
        b = b.header(header::SEC_WEBSOCKET_PROTOCOL, protocols.join(", "));
    }
    for (k, v) in extra {
        b = b.header(k.clone(), v.clone());
    }
    b.body(())
}

/// Serializes a request head as HTTP/1.1 bytes.
pub fn write_request<B>(req: &Request<B>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (k, v) in req.headers() {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses a response head from the start of `buf`: `Ok(None)` while
/// incomplete, else the response and the head's length (bytes after it
/// belong to the WebSocket stream).
pub fn parse_response(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(Response<()>, usize)>, ResponseError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head_size {
                Err(ResponseError::Malformed("response head too large".into()))
            } else {
                Ok(None)
            }
        }
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    // A head that completes past the limit (the buffer held all of it at
    // once) is as much over it as one still partial there.
    if len > limits.max_head_size {
        return Err(ResponseError::Malformed("response head too large".into()));
    }
    let status = StatusCode::from_u16(resp.code.unwrap_or(0))
        .map_err(|e| ResponseError::Malformed(e.to_string()))?;
    let mut out = Response::new(());
    *out.status_mut() = status;
    *out.version_mut() = Version::HTTP_11;
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|e| ResponseError::Malformed(e.to_string()))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|e| ResponseError::Malformed(e.to_string()))?;
        out.headers_mut().append(name, value);
    }
    Ok(Some((out, len)))
}

/// Validates the server's answer to a request sent with `key` offering
/// `protocols`: status 101, the upgrade headers, the accept hash, and a
/// subprotocol (returned) that was offered. Extensions are refused here,
/// since none were offered; see [`validate_response_with`].
pub fn validate_response<B>(
    resp: &Response<B>,
    key: &HeaderValue,
    protocols: &[&str],
) -> Result<Option<String>, ResponseError> {
    validate_response_with(resp, key, protocols, None).map(|(p, _)| p)
}

/// Like [`validate_response`], for a request that offered
/// permessage-deflate with `deflate` ([`client_offer`](crate::extension::deflate::client_offer)):
/// also returns the agreed compression parameters, if the server accepted.
pub fn validate_response_with<B>(
    resp: &Response<B>,
    key: &HeaderValue,
    protocols: &[&str],
    deflate: Option<&DeflateConfig>,
) -> Result<(Option<String>, Option<DeflateParams>), ResponseError> {
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(ResponseError::Status(resp.status()));
    }
    let h = resp.headers();
    if !header_has_token(h, header::UPGRADE, "websocket")
        || !header_has_token(h, header::CONNECTION, "upgrade")
    {
        return Err(ResponseError::NotUpgraded);
    }
    let expected = accept_key(key.as_bytes());
    if h.get(header::SEC_WEBSOCKET_ACCEPT).map(|v| v.as_bytes()) != Some(expected.as_bytes()) {
        return Err(ResponseError::BadAccept);
    }
    validate_negotiation(resp, protocols, deflate)
}

/// Checks the subprotocol and extensions a server accepted against what was
/// offered, as [`validate_response_with`] does after the status, `Upgrade`
/// and `Sec-WebSocket-Accept` checks: for a WebSocket opened another way
/// than HTTP/1.1's `101` (RFC 8441's extended CONNECT over HTTP/2 answers
/// `200` with no key to check). Returns the chosen subprotocol and the
/// negotiated permessage-deflate parameters.
///
/// ```
/// use silverback_proto::handshake::client::{validate_negotiation, ResponseError};
/// let resp = http::Response::builder()
///     .status(200)
///     .header("sec-websocket-protocol", "chat")
///     .body(())
///     .unwrap();
/// let (protocol, deflate) = validate_negotiation(&resp, &["chat"], None).unwrap();
/// assert_eq!(protocol.as_deref(), Some("chat"));
/// assert!(deflate.is_none());
/// assert_eq!(
///     validate_negotiation(&resp, &["other"], None),
///     Err(ResponseError::UnofferedProtocol("chat".into()))
/// );
/// ```
pub fn validate_negotiation<B>(
    resp: &Response<B>,
    protocols: &[&str],
    deflate: Option<&DeflateConfig>,
) -> Result<(Option<String>, Option<DeflateParams>), ResponseError> {
    let h = resp.headers();
    let extensions = header_tokens(h, header::SEC_WEBSOCKET_EXTENSIONS);
    let params = match (deflate, extensions.first()) {
        (_, None) => None,
        (None, Some(ext)) => return Err(ResponseError::UnofferedExtension(ext.clone())),
        (Some(cfg), Some(_)) => client_accept(extensions.iter().map(String::as_str), cfg)
            .map_err(|e| ResponseError::Extension(e.0))?,
    };
    let chosen = header_tokens(h, header::SEC_WEBSOCKET_PROTOCOL);
    let protocol = match chosen.as_slice() {
        [] => None,
        [p] if protocols.contains(&p.as_str()) => Some(p.clone()),
        [p, ..] => return Err(ResponseError::UnofferedProtocol(p.clone())),
    };
    Ok((protocol, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::server;

    /// Found by the handshake_response fuzz target: a complete head longer
    /// than `max_head_size` arriving in one buffer was accepted.
    #[test]
    fn complete_head_over_the_size_limit_is_refused() {
        let wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let limits = HeadLimits {
            max_head_size: 64,
            max_headers: 8,
        };
        assert!(matches!(
            parse_response(wire, limits),
            Err(ResponseError::Malformed(_))
        ));
        let (_, n) = parse_response(wire, HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, wire.len());
    }

    #[test]
    fn request_built_here_is_accepted_by_the_server_side() {
        let uri: Uri = "ws://127.0.0.1:8080/ws".parse().unwrap();
        let key = generate_key();
        let req = build_request(&uri, &key, &["b", "a"], &[]).unwrap();
        let mut wire = Vec::new();
        write_request(&req, &mut wire);
        let (parsed, n) = server::parse_request(&wire, HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, wire.len());
        let up = server::validate_request(&parsed).unwrap();
        let proto = server::negotiate_subprotocol(&up.protocols, &["a", "b"]);
        assert_eq!(proto, Some("a"));
        let resp = server::accept_response(&up.key, proto, None).unwrap();
        let mut wire = Vec::new();
        server::write_response(&resp.map(|()| ""), &mut wire);
        let (resp, _) = parse_response(&wire, HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            validate_response(&resp, &key, &["b", "a"]),
            Ok(Some("a".into()))
        );
    }

    #[test]
    fn default_ports_are_left_out_of_host() {
        let key = generate_key();
        let req = build_request(&"ws://h:80/".parse().unwrap(), &key, &[], &[]).unwrap();
        assert_eq!(req.headers()["host"], "h");
        let req = build_request(&"wss://[::1]:443/".parse().unwrap(), &key, &[], &[]).unwrap();
        assert_eq!(req.headers()["host"], "[::1]");
        let req = build_request(&"ws://[::1]:9/".parse().unwrap(), &key, &[], &[]).unwrap();
        assert_eq!(req.headers()["host"], "[::1]:9");
    }

    #[test]
    fn bad_responses_are_refused() {
        let key = generate_key();
        let good = server::accept_response(&key, None, None).unwrap();
        assert_eq!(validate_response(&good, &key, &[]), Ok(None));

        let other = generate_key();
        assert_eq!(
            validate_response(&good, &other, &[]),
            Err(ResponseError::BadAccept)
        );

        let mut r = good.clone();
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        assert_eq!(
            validate_response(&r, &key, &[]),
            Err(ResponseError::Status(StatusCode::UNAUTHORIZED))
        );

        let mut r = good.clone();
        r.headers_mut().remove("upgrade");
        assert_eq!(
            validate_response(&r, &key, &[]),
            Err(ResponseError::NotUpgraded)
        );

        let r = server::accept_response(&key, Some("x"), None).unwrap();
        assert_eq!(
            validate_response(&r, &key, &["y"]),
            Err(ResponseError::UnofferedProtocol("x".into()))
        );

        let r = server::accept_response(&key, None, Some("permessage-deflate")).unwrap();
        assert!(matches!(
            validate_response(&r, &key, &[]),
            Err(ResponseError::UnofferedExtension(_))
        ));
    }
}
