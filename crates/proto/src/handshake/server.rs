//! Server side of the opening handshake.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::{accept_key, header_has_token, header_tokens, HeadLimits};

/// Why an upgrade request was refused: the HTTP status, a one-line reason
/// (sent as the body) and any header the response must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The response status (400, 403, 405, 426, 431, ...).
    pub status: StatusCode,
    /// A one-line reason, sent as the response body.
    pub reason: String,
    /// Extra headers (e.g. `Sec-WebSocket-Version: 13` with 426).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    /// A refusal with `status` and `reason`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// The complete HTTP response: status, headers, `Connection: close` and
    /// the reason as a plain-text body.
    pub fn to_response(&self) -> Response<String> {
        let body = format!("{}\n", self.reason);
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        for (k, v) in &self.headers {
            h.append(k.clone(), v.clone());
        }
        resp
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Rejection {}

/// What a valid upgrade request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The `Sec-WebSocket-Key`, as sent (empty for an HTTP/2 extended
    /// CONNECT, which has none).
    pub key: HeaderValue,
    /// The subprotocols offered, in the client's order.
    pub protocols: Vec<String>,
    /// The raw `Sec-WebSocket-Extensions` offers, in order.
    pub extensions: Vec<String>,
}

/// Validates an upgrade request: `GET`, HTTP/1.1 or later, `Host`,
/// `Upgrade: websocket`, `Connection: upgrade` (token lists, any case),
/// `Sec-WebSocket-Version: 13` (else 426) and a `Sec-WebSocket-Key` that is
/// base64 of 16 bytes (else 400). Non-GET gets 405.
///
/// The origin is not checked here: see [`same_origin`].
///
/// ```
/// use silverback_proto::handshake::server::validate_request;
/// let req = http::Request::get("/ws")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-protocol", "chat, superchat")
///     .body(())
///     .unwrap();
/// let up = validate_request(&req).unwrap();
/// assert_eq!(up.protocols, ["chat", "superchat"]);
/// ```
pub fn validate_request<B>(req: &Request<B>) -> Result<UpgradeRequest, Rejection> {
    if req.method() != Method::GET {
        let mut r = Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "WebSocket upgrade requires GET",
        );
        r.headers
            .push((header::ALLOW, HeaderValue::from_static("GET")));
        return Err(r);
    }
    if req.version() < Version::HTTP_11 {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "WebSocket upgrade requires HTTP/1.1",
        ));
    }
    let h = req.headers();
    if h.get(header::HOST).is_none() && req.uri().authority().is_none() {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "missing Host header",
        ));
    }
    if !header_has_token(h, header::UPGRADE, "websocket") {
        let mut r = Rejection::new(StatusCode::UPGRADE_REQUIRED, "expected Upgrade: websocket");
        r.headers
            .push((header::UPGRADE, HeaderValue::from_static("websocket")));
        r.headers.push((
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        ));
        return Err(r);
    }
    if !header_has_token(h, header::CONNECTION, "upgrade") {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "expected Connection: upgrade",
        ));
    }
    check_version(h)?;
    let mut keys = h.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.clone(),
        _ => {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "expected one Sec-WebSocket-Key",
            ))
        }
    };
    match BASE64.decode(key.as_bytes()) {
        Ok(raw) if raw.len() == 16 => {}
        _ => {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key must be base64 of 16 bytes",
            ))
        }
    }
    Ok(UpgradeRequest {
        key,
        protocols: header_tokens(h, header::SEC_WEBSOCKET_PROTOCOL),
        extensions: header_tokens(h, header::SEC_WEBSOCKET_EXTENSIONS),
    })
}

/// `Sec-WebSocket-Version: 13`, once (else 426 with `Sec-WebSocket-Version: 13`).
fn check_version(h: &http::HeaderMap) -> Result<(), Rejection> {
    let version_ok = h.get_all(header::SEC_WEBSOCKET_VERSION).iter().count() == 1
        && h.get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes().trim_ascii())
            == Some(b"13");
    if version_ok {
        return Ok(());
    }
    let mut r = Rejection::new(
        StatusCode::UPGRADE_REQUIRED,
        "unsupported Sec-WebSocket-Version, expected 13",
    );
    r.headers.push((
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    ));
    Err(r)
}

/// Whether `req` is an HTTP/2 (or later) `CONNECT`: the start of an
/// extended CONNECT (RFC 8441), to be checked with
/// [`validate_extended_connect`] rather than [`validate_request`].
pub fn is_extended_connect<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT && req.version() >= Version::HTTP_2
}

/// Validates a WebSocket request over HTTP/2: an extended CONNECT
/// (RFC 8441 §4). `protocol` is the request's `:protocol` pseudo-header
/// (hyper hands it over as `hyper::ext::Protocol`).
///
/// The method must be `CONNECT` on HTTP/2 or later (else 405 or 400), with
/// an authority (`:authority` or `Host`, else 400). Without `:protocol`
/// it is a plain CONNECT, a proxy tunnel request, refused with 400; a
/// `:protocol` other than `websocket` (any case) is refused with
/// 501 Not Implemented. Then as on HTTP/1.1: `Sec-WebSocket-Version: 13`
/// (else 426 with `Sec-WebSocket-Version: 13`), and the subprotocols and
/// extensions offered are returned. There is no `Sec-WebSocket-Key` over
/// HTTP/2: the returned [`UpgradeRequest::key`] is empty.
///
/// ```
/// use silverback_proto::handshake::server::validate_extended_connect;
/// let mut req = http::Request::connect("https://example.com/ws")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-protocol", "chat")
///     .body(())
///     .unwrap();
/// *req.version_mut() = http::Version::HTTP_2;
/// let up = validate_extended_connect(&req, Some("websocket")).unwrap();
/// assert_eq!(up.protocols, ["chat"]);
/// assert_eq!(validate_extended_connect(&req, None).unwrap_err().status, 400);
/// assert_eq!(validate_extended_connect(&req, Some("webtransport")).unwrap_err().status, 501);
/// ```
pub fn validate_extended_connect<B>(
    req: &Request<B>,
    protocol: Option<&str>,
) -> Result<UpgradeRequest, Rejection> {
    if req.method() != Method::CONNECT {
        let mut r = Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "WebSocket over HTTP/2 requires CONNECT",
        );
        r.headers
            .push((header::ALLOW, HeaderValue::from_static("CONNECT")));
        return Err(r);
    }
    if req.version() < Version::HTTP_2 {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "extended CONNECT requires HTTP/2",
        ));
    }
    match protocol {
        None => {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "CONNECT without :protocol refused: this is a WebSocket endpoint, \
                 not a proxy (expected :protocol websocket, RFC 8441)",
            ))
        }
        Some(p) if !p.eq_ignore_ascii_case("websocket") => {
            let shown: String = p.chars().take(64).collect();
            return Err(Rejection::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("unsupported :protocol {shown:?}, expected websocket"),
            ));
        }
        Some(_) => {}
    }
    let h = req.headers();
    if h.get(header::HOST).is_none() && req.uri().authority().is_none() {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "missing :authority",
        ));
    }
    check_version(h)?;
    Ok(UpgradeRequest {
        key: HeaderValue::from_static(""),
        protocols: header_tokens(h, header::SEC_WEBSOCKET_PROTOCOL),
        extensions: header_tokens(h, header::SEC_WEBSOCKET_EXTENSIONS),
    })
}

/// The default origin policy: a request with no `Origin` header is allowed
/// (it does not come from a browser); otherwise the origin's `host[:port]`
/// must equal the `Host` header, ignoring ASCII case. `Origin: null` is
/// refused.
///
/// ```
/// use silverback_proto::handshake::server::same_origin;
/// let req = |origin: &str| http::Request::get("/ws")
///     .header("host", "example.com:8080")
///     .header("origin", origin)
///     .body(()).unwrap();
/// assert!(same_origin(&req("http://example.com:8080")));
/// assert!(same_origin(&req("https://EXAMPLE.com:8080")));
/// assert!(!same_origin(&req("http://evil.example:8080")));
/// assert!(!same_origin(&req("null")));
/// ```
pub fn same_origin<B>(req: &Request<B>) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Ok(uri) = origin.parse::<http::Uri>() else {
        return false;
    };
    let Some(origin_host) = uri.authority() else {
        return false;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) => origin_host.as_str().eq_ignore_ascii_case(host.trim()),
        None => false,
    }
}

/// Picks the subprotocol: the first of the server's `supported` list (its
/// order of preference) that the client offered.
///
/// ```
/// use silverback_proto::handshake::server::negotiate_subprotocol;
/// let offered = vec!["v1".to_string(), "v2".to_string()];
/// assert_eq!(negotiate_subprotocol(&offered, &["v2", "v1"]), Some("v2"));
/// assert_eq!(negotiate_subprotocol(&offered, &["v3"]), None);
/// ```
pub fn negotiate_subprotocol<'a, S: AsRef<str>>(
    offered: &[String],
    supported: &'a [S],
) -> Option<&'a str> {
    supported
        .iter()
        .map(AsRef::as_ref)
        .find(|s| offered.iter().any(|o| o == s))
}

/// Builds the `101 Switching Protocols` response.
pub fn accept_response(
    key: &HeaderValue,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Result<Response<()>, Rejection> {
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = HeaderValue::from_str(&accept_key(key.as_bytes()))
        .map_err(|_| Rejection::new(StatusCode::BAD_REQUEST, "bad key"))?;
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    negotiated_headers(resp, protocol, extensions)
}

/// Writes the `101 Switching Protocols` response of [`accept_response`]
/// to `out` without building it: the same bytes as [`write_response`] of
/// that response, for a server that sends no other header.
///
/// ```
/// use http::HeaderValue;
/// use silverback_proto::handshake::server::{accept_response, write_accept_response, write_response};
/// let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
/// let mut direct = Vec::new();
/// write_accept_response(&key, Some("chat"), None, &mut direct).unwrap();
/// let mut built = Vec::new();
/// write_response(&accept_response(&key, Some("chat"), None).unwrap().map(|()| ""), &mut built);
/// assert_eq!(direct, built);
/// assert!(direct.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// ```
///
/// # Errors
/// As [`accept_response`]: a subprotocol or extension header that is not
/// a valid header value (500).
pub fn write_accept_response(
    key: &HeaderValue,
    protocol: Option<&str>,
    extensions: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), Rejection> {
    // What `HeaderValue::from_str` accepts.
    let valid = |v: &str| v.bytes().all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t');
    if protocol.is_some_and(|p| !valid(p)) {
        return Err(Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad subprotocol name",
        ));
    }
    if extensions.is_some_and(|e| !valid(e)) {
        return Err(Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad extension header",
        ));
    }
    let mut accept = [0u8; 28];
    let accept = super::accept_key_into(key.as_bytes(), &mut accept);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n");
    for (name, value) in [
        ("sec-websocket-protocol", protocol),
        ("sec-websocket-extensions", extensions),
    ] {
        if let Some(v) = value {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Builds the `200 OK` answer to an extended CONNECT (RFC 8441 §5): no
/// `Upgrade`, `Connection` or `Sec-WebSocket-Accept`, and no body (the
/// stream carries the WebSocket from there on).
///
/// ```
/// use silverback_proto::handshake::server::extended_connect_response;
/// let resp = extended_connect_response(Some("chat"), None).unwrap();
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
/// assert!(resp.headers().get("sec-websocket-accept").is_none());
/// ```
pub fn extended_connect_response(
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Result<Response<()>, Rejection> {
    let mut resp = Response::new(());
    *resp.version_mut() = Version::HTTP_2;
    negotiated_headers(resp, protocol, extensions)
}

/// Adds the negotiated subprotocol and extensions to `resp`.
fn negotiated_headers(
    mut resp: Response<()>,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Result<Response<()>, Rejection> {
    let h = resp.headers_mut();
    if let Some(p) = protocol {
        let v = HeaderValue::from_str(p).map_err(|_| {
            Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "bad subprotocol name")
        })?;
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Some(e) = extensions {
        let v = HeaderValue::from_str(e).map_err(|_| {
            Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "bad extension header")
        })?;
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    Ok(resp)
}

/// Serializes a response head (and `body`, with a `Content-Length`) as
/// HTTP/1.1 bytes.
pub fn write_response<B: AsRef<[u8]>>(resp: &Response<B>, out: &mut Vec<u8>) {
    let status = resp.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in resp.headers() {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body = resp.body().as_ref();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Parses an HTTP/1.1 request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete, and
/// `Ok(Some((request, head_len)))` once it is whole: the bytes after
/// `head_len` belong to the WebSocket stream. A head larger than
/// `limits.max_head_size` or with more than `limits.max_headers` fields is
/// refused with 431; a malformed one with 400.
///
/// ```
/// use silverback_proto::handshake::{server::parse_request, HeadLimits};
/// let wire = b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n\x81\x00";
/// let (req, n) = parse_request(wire, HeadLimits::default()).unwrap().unwrap();
/// assert_eq!(req.uri().path(), "/ws");
/// assert_eq!(&wire[n..], b"\x81\x00");
/// ```
pub fn parse_request(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(Request<()>, usize)>, Rejection> {
    let too_large = || {
        Rejection::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        )
    };
    // The usual limit fits on the stack; a larger one gets a Vec.
    let mut on_stack = [httparse::EMPTY_HEADER; 64];
    let mut on_heap = Vec::new();
    let headers: &mut [httparse::Header<'_>] = if limits.max_headers <= on_stack.len() {
        &mut on_stack[..limits.max_headers]
    } else {
        on_heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut on_heap
    };
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head_size {
                Err(too_large())
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many headers",
            ))
        }
        Err(e) => {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                format!("malformed request: {e}"),
            ))
        }
    };
    if len > limits.max_head_size {
        return Err(too_large());
    }
    let bad = |what: &str| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("malformed request: {what}"),
        )
    };
    let method =
        Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| bad("method"))?;
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let uri = req
        .path
        .unwrap_or("/")
        .parse::<http::Uri>()
        .map_err(|_| bad("request target"))?;
    // Built in place: a `Request::builder()` moves the whole request
    // through every `header()` call.
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    let map = request.headers_mut();
    map.reserve(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("header value"))?;
        map.append(name, value);
    }
    Ok(Some((request, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> http::request::Builder {
        Request::get("/ws")
            .header("host", "localhost:8080")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    fn status_of(req: Request<()>) -> StatusCode {
        validate_request(&req).unwrap_err().status
    }

    #[test]
    fn accepts_a_valid_request_with_mixed_case_tokens() {
        let req = Request::get("/ws")
            .header("Host", "localhost")
            .header("Upgrade", "WebSocket")
            .header("Connection", "keep-alive, UPGRADE")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap();
        assert!(validate_request(&req).is_ok());
    }

    #[test]
    fn refusals_carry_the_right_status() {
        let post = Request::post("/ws").body(()).unwrap();
        assert_eq!(status_of(post), StatusCode::METHOD_NOT_ALLOWED);

        let mut r = base().body(()).unwrap();
        *r.version_mut() = Version::HTTP_10;
        assert_eq!(status_of(r), StatusCode::BAD_REQUEST);

        let mut r = base().body(()).unwrap();
        r.headers_mut().remove("host");
        assert_eq!(status_of(r), StatusCode::BAD_REQUEST);

        let mut r = base().body(()).unwrap();
        r.headers_mut().remove("upgrade");
        assert_eq!(status_of(r), StatusCode::UPGRADE_REQUIRED);

        let mut r = base().body(()).unwrap();
        r.headers_mut()
            .insert("connection", HeaderValue::from_static("keep-alive"));
        assert_eq!(status_of(r), StatusCode::BAD_REQUEST);

        let mut r = base().body(()).unwrap();
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("8"));
        let rej = validate_request(&r).unwrap_err();
        assert_eq!(rej.status, StatusCode::UPGRADE_REQUIRED);
        assert!(rej
            .headers
            .iter()
            .any(|(k, v)| k == header::SEC_WEBSOCKET_VERSION && v == "13"));

        for bad_key in [
            "",
            "not base64!",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
            "dGhlIHNhbXBsZSBub25jZQ",
        ] {
            let mut r = base().body(()).unwrap();
            r.headers_mut()
                .insert("sec-websocket-key", HeaderValue::from_static(bad_key));
            assert_eq!(status_of(r), StatusCode::BAD_REQUEST, "{bad_key:?}");
        }
    }

    #[test]
    fn rejection_response_has_body_and_extra_headers() {
        let mut r = base().body(()).unwrap();
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("7"));
        let resp = validate_request(&r).unwrap_err().to_response();
        let mut out = Vec::new();
        write_response(&resp, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("sec-websocket-version: 13\r\n"));
        assert!(text.ends_with("\r\n\r\nunsupported Sec-WebSocket-Version, expected 13\n"));
    }

    #[test]
    fn accept_response_matches_rfc_example() {
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        let resp = accept_response(&key, Some("chat"), None).unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            resp.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
    }

    fn h2_connect() -> Request<()> {
        let mut r = Request::connect("https://localhost:8443/ws")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-extensions", "permessage-deflate")
            .body(())
            .unwrap();
        *r.version_mut() = Version::HTTP_2;
        r
    }

    #[test]
    fn extended_connect_refusals_carry_the_right_status() {
        let ok = validate_extended_connect(&h2_connect(), Some("websocket")).unwrap();
        assert_eq!(ok.extensions, ["permessage-deflate"]);
        assert!(ok.key.is_empty());
        assert!(is_extended_connect(&h2_connect()));
        assert!(validate_extended_connect(&h2_connect(), Some("WebSocket")).is_ok());

        let status =
            |r: &Request<()>, p: Option<&str>| validate_extended_connect(r, p).unwrap_err().status;
        assert_eq!(status(&h2_connect(), None), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(&h2_connect(), Some("h3")),
            StatusCode::NOT_IMPLEMENTED
        );
        let long = "x".repeat(10_000);
        let rej = validate_extended_connect(&h2_connect(), Some(&long)).unwrap_err();
        assert!(rej.reason.len() < 200, "{}", rej.reason);

        let mut r = h2_connect();
        *r.version_mut() = Version::HTTP_11;
        assert!(!is_extended_connect(&r));
        assert_eq!(status(&r, Some("websocket")), StatusCode::BAD_REQUEST);

        let mut r = h2_connect();
        *r.method_mut() = Method::GET;
        assert_eq!(
            status(&r, Some("websocket")),
            StatusCode::METHOD_NOT_ALLOWED
        );

        let mut r = h2_connect();
        *r.uri_mut() = "/ws".parse().unwrap();
        assert_eq!(status(&r, Some("websocket")), StatusCode::BAD_REQUEST);

        let mut r = h2_connect();
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("8"));
        assert_eq!(status(&r, Some("websocket")), StatusCode::UPGRADE_REQUIRED);
    }

    #[test]
    fn extended_connect_response_is_a_bare_200() {
        let resp = extended_connect_response(None, Some("permessage-deflate")).unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers().len(), 1);
        assert_eq!(
            resp.headers()["sec-websocket-extensions"],
            "permessage-deflate"
        );
    }

    #[test]
    fn parse_limits() {
        let limits = HeadLimits {
            max_head_size: 64,
            max_headers: 2,
        };
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\n", limits),
            Ok(None)
        ));
        let big = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(100));
        assert_eq!(
            parse_request(big.as_bytes(), limits).unwrap_err().status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(
            parse_request(many, limits).unwrap_err().status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(
            parse_request(b"G\x00T / HTTP/1.1\r\n\r\n", limits)
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
    }

    /// The direct writer gives the bytes of the built response, for every
    /// combination of negotiated headers, and the same refusals.
    #[test]
    fn write_accept_response_matches_the_built_response() {
        let keys = ["dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwgJCgsMDQ4PEA=="];
        let protocols = [None, Some("chat"), Some("pubsub.v1"), Some("bad\u{7f}")];
        let extensions = [
            None,
            Some("permessage-deflate; server_no_context_takeover"),
            Some("bad\rext"),
        ];
        for key in keys {
            let key = HeaderValue::from_static(key);
            for protocol in protocols {
                for ext in extensions {
                    let mut direct = Vec::new();
                    let d = write_accept_response(&key, protocol, ext, &mut direct);
                    match accept_response(&key, protocol, ext) {
                        Ok(resp) => {
                            let mut built = Vec::new();
                            write_response(&resp.map(|()| ""), &mut built);
                            assert!(d.is_ok());
                            assert_eq!(
                                String::from_utf8_lossy(&direct),
                                String::from_utf8_lossy(&built)
                            );
                        }
                        Err(rej) => assert_eq!(d.unwrap_err().status, rej.status),
                    }
                }
            }
        }
    }
}
