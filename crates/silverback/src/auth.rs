//! Authentication at the upgrade: the [`Upgrader::authorize`] hook, what it
//! returns ([`Authorized`] or a [`Rejection`]), tokens ([`AuthToken`]) taken
//! from the request, and the response headers an upgrade may add.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use silverback_proto::handshake::server::Rejection;

use crate::request::Identity;
use crate::{Accepted, RequestHead, Upgrader};

/// The prefix that marks an access token offered as a
/// `Sec-WebSocket-Protocol` entry: `access_token.<TOKEN>`.
///
/// Browsers cannot set headers on a WebSocket request, but they can offer
/// subprotocols: `new WebSocket(url, ["chat", "access_token." + token])`.
/// [`RequestHead::protocol_token`] takes the token from such an entry, and
/// the upgrader never selects (so never echoes) an entry with this prefix,
/// whatever its subprotocol list. Offer a real subprotocol beside it: a
/// browser accepts a response that selects none, but your server can then
/// tell the two apart.
///
/// A subprotocol entry must be an HTTP token: letters, digits and
/// ``!#$%&'*+-.^_`|~``. A JWT or base64url without padding fits; standard
/// base64 (`/`, `=`) does not.
pub const TOKEN_PROTOCOL_PREFIX: &str = "access_token.";

/// A secret (bearer token, session cookie) taken from an upgrade request.
///
/// Its `Debug` and `Display` print `<redacted>`, so a token never ends up in
/// a log line by accident; [`expose`](Self::expose) gives the value to the
/// code that checks it.
///
/// ```
/// use silverback::AuthToken;
/// let t = AuthToken::new("s3cr3t");
/// assert_eq!(format!("{t} {t:?}"), "<redacted> AuthToken(<redacted>)");
/// assert_eq!(t.expose(), "s3cr3t");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(Box<str>);

impl AuthToken {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into().into_boxed_str())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret, unwrapped.
    pub fn into_inner(self) -> String {
        self.0.into()
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

impl fmt::Display for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a client can put a token, and how to take it out.
///
/// Three places are supported, for three kinds of clients:
/// - [`bearer_token`](Self::bearer_token): `Authorization: Bearer <token>`,
///   for clients that can set headers (servers, native apps, our
///   [`Dialer::header`](crate::Dialer::header));
/// - [`cookie_token`](Self::cookie_token): a cookie, which a browser sends
///   by itself to its own site (pair it with the origin check, the default,
///   against cross-site WebSocket hijacking);
/// - [`protocol_token`](Self::protocol_token): a `Sec-WebSocket-Protocol`
///   entry `access_token.<token>` (see [`TOKEN_PROTOCOL_PREFIX`]), the
///   only header a browser script controls.
///
/// A token in the query string (`/ws?token=...`) works too, but is
/// discouraged: URLs are written to access logs (the server's, a proxy's,
/// a load balancer's), kept in browser history, and shown in tooling, so
/// the secret leaks to places that were never meant to hold one. Prefer a
/// short-lived ticket if you must use the URL.
impl<'a> RequestHead<'a> {
    /// The token of an `Authorization: Bearer <token>` header (scheme
    /// compared without case). `None` if absent, empty, of another scheme,
    /// or if the header appears more than once.
    ///
    /// ```
    /// use silverback::RequestHead;
    /// let req = http::Request::get("/ws").header("authorization", "Bearer abc.def").body(()).unwrap();
    /// assert_eq!(RequestHead::of(&req).bearer_token().unwrap().expose(), "abc.def");
    /// ```
    pub fn bearer_token(&self) -> Option<AuthToken> {
        let mut all = self.headers.get_all(header::AUTHORIZATION).iter();
        let (Some(v), None) = (all.next(), all.next()) else {
            return None;
        };
        let v = v.to_str().ok()?.trim();
        let (scheme, token) = v.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| AuthToken::new(token))
    }

    /// The value of cookie `name` (from every `Cookie` header; surrounding
    /// double quotes removed), as a token. `None` if absent or empty.
    ///
    /// ```
    /// use silverback::RequestHead;
    /// let req = http::Request::get("/ws").header("cookie", "theme=dark; session=xyz").body(()).unwrap();
    /// assert_eq!(RequestHead::of(&req).cookie_token("session").unwrap().expose(), "xyz");
    /// ```
    pub fn cookie_token(&self, name: &str) -> Option<AuthToken> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim())
            .map(|v| {
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
            })
            .filter(|v| !v.is_empty())
            .map(AuthToken::new)
    }

    /// The token of a `Sec-WebSocket-Protocol` entry
    /// `access_token.<token>` ([`TOKEN_PROTOCOL_PREFIX`]). That entry is
    /// never selected as the subprotocol.
    ///
    /// ```
    /// use silverback::RequestHead;
    /// let req = http::Request::get("/ws")
    ///     .header("sec-websocket-protocol", "chat, access_token.abc.def")
    ///     .body(()).unwrap();
    /// assert_eq!(RequestHead::of(&req).protocol_token().unwrap().expose(), "abc.def");
    /// ```
    pub fn protocol_token(&self) -> Option<AuthToken> {
        self.headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|p| p.trim().strip_prefix(TOKEN_PROTOCOL_PREFIX))
            .find(|t| !t.is_empty())
            .map(AuthToken::new)
    }
}

/// Whether a subprotocol entry carries a token and so must never be
/// selected.
pub(crate) fn is_token_protocol(p: &str) -> bool {
    p.starts_with(TOKEN_PROTOCOL_PREFIX)
}

/// A response header that an upgrade may not add, because the handshake
/// sets it or it would break the `101` response: `Upgrade`, `Connection`,
/// any `Sec-WebSocket-*`, `Content-Length`, `Transfer-Encoding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedHeader(HeaderName);

impl ReservedHeader {
    /// The header refused.
    pub fn name(&self) -> &HeaderName {
        &self.0
    }
}

impl fmt::Display for ReservedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "header {} is set by the WebSocket handshake and may not be added",
            self.0
        )
    }
}

impl std::error::Error for ReservedHeader {}

/// Refuses the headers the handshake owns.
pub(crate) fn check_response_header(name: &HeaderName) -> Result<(), ReservedHeader> {
    let reserved = name == header::UPGRADE
        || name == header::CONNECTION
        || name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name.as_str().starts_with("sec-websocket-");
    if reserved {
        Err(ReservedHeader(name.clone()))
    } else {
        Ok(())
    }
}

/// What an [`authorize`](Upgrader::authorize) hook returns to accept a
/// request: an identity for the connection (optional) and headers to add
/// to its `101` response (e.g. `Set-Cookie`).
///
/// ```
/// use silverback::Authorized;
/// use http::header::{HeaderValue, SET_COOKIE};
/// struct User { id: u64 }
/// let ok = Authorized::new(User { id: 7 })
///     .header(SET_COOKIE, HeaderValue::from_static("seen=1; HttpOnly"));
/// ```
pub struct Authorized {
    pub(crate) identity: Option<Identity>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for Authorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorized")
            .field("has_identity", &self.identity.is_some())
            .field("headers", &self.headers)
            .finish()
    }
}

impl Authorized {
    /// Accepts with `identity`, reachable as
    /// [`WebSocket::identity::<T>()`](crate::WebSocket::identity).
    pub fn new<T: Any + Send + Sync>(identity: T) -> Self {
        Self::from_arc(Arc::new(identity))
    }

    /// Accepts with an identity already shared.
    pub fn from_arc(identity: Arc<dyn Any + Send + Sync>) -> Self {
        Self {
            identity: Some(identity),
            headers: Vec::new(),
        }
    }

    /// Accepts without an identity.
    pub fn anonymous() -> Self {
        Self {
            identity: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header to this connection's `101` response, after the
    /// upgrader's own ([`Upgrader::response_header`]). A reserved header
    /// ([`ReservedHeader`]) makes the handshake fail with `500`: it would
    /// break the response.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

type AuthFuture = Pin<Box<dyn Future<Output = Result<Authorized, Rejection>> + Send>>;

/// The authorize hook, type-erased.
pub(crate) type AuthorizeHook = Arc<dyn Fn(&RequestHead<'_>) -> AuthFuture + Send + Sync>;

impl Upgrader {
    /// Authenticates upgrade requests.
    ///
    /// `f` sees the request head and returns a future (it may not borrow
    /// the head: take what it needs, e.g. a token, before `async move`).
    /// The future resolves to [`Authorized`] (an identity and extra
    /// response headers) or to a [`Rejection`], sent as an HTTP response
    /// with its status and reason (e.g. `401`, `403`), like the upgrader's
    /// own refusals; on a raw transport, `upgrade` then returns
    /// [`ErrorKind::Rejected`](crate::ErrorKind::Rejected).
    ///
    /// It runs after the request was validated, the origin checked and the
    /// subprotocol chosen, before the `101` response, and within the
    /// handshake timeout: on a raw transport a hook still running at the
    /// deadline fails the upgrade with
    /// [`Timeout::Handshake`](crate::Timeout::Handshake); with hyper the
    /// request is answered `503`.
    ///
    /// [`Upgrader::negotiate`] alone does not run the hook.
    ///
    /// ```
    /// use silverback::{Authorized, Dialer, Rejection, Upgrader};
    /// use http::StatusCode;
    /// use tokio::net::TcpListener;
    ///
    /// struct User { name: String }
    ///
    /// async fn check(token: &str) -> Option<User> {
    ///     (token == "letmein").then(|| User { name: "ada".into() })
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let upgrader = Upgrader::new().authorize(|req| {
    ///     let token = req.bearer_token().or_else(|| req.protocol_token());
    ///     async move {
    ///         let token = token.ok_or_else(|| {
    ///             Rejection::new(StatusCode::UNAUTHORIZED, "missing token")
    ///         })?;
    ///         match check(token.expose()).await {
    ///             Some(user) => Ok(Authorized::new(user)),
    ///             None => Err(Rejection::new(StatusCode::FORBIDDEN, "bad token")),
    ///         }
    ///     }
    /// });
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let url = format!("ws://{}/ws", listener.local_addr()?);
    /// let server = tokio::spawn(async move {
    ///     for _ in 0..2 {
    ///         let (stream, _) = listener.accept().await.unwrap();
    ///         if let Ok(ws) = upgrader.upgrade(stream).await {
    ///             assert_eq!(ws.identity::<User>().unwrap().name, "ada");
    ///         }
    ///     }
    /// });
    ///
    /// let err = Dialer::new().connect(&url).await.unwrap_err();
    /// let resp = err.http_response().unwrap();
    /// assert_eq!(resp.status(), 401);
    /// assert_eq!(resp.body(), "missing token\n");
    ///
    /// let dialer = Dialer::new().header("authorization", "Bearer letmein");
    /// let (_ws, resp) = dialer.connect(&url).await?;
    /// assert_eq!(resp.status(), 101);
    /// server.await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn authorize<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Authorized, Rejection>> + Send + 'static,
    {
        self.authorize = Some(Arc::new(move |head| Box::pin(f(head))));
        self
    }

    /// Adds a header to every `101` response of this upgrader (e.g.
    /// `Set-Cookie`, `Server`). Headers from an authorize hook come after.
    ///
    /// # Panics
    /// If `name` is reserved for the handshake ([`ReservedHeader`]); see
    /// [`try_response_header`](Self::try_response_header).
    ///
    /// ```
    /// use http::header::{HeaderName, HeaderValue, SET_COOKIE};
    /// let upgrader = silverback::Upgrader::new()
    ///     .response_header(SET_COOKIE, HeaderValue::from_static("lang=en; Path=/"))
    ///     .response_header(HeaderName::from_static("x-served-by"), HeaderValue::from_static("node-1"));
    /// assert!(silverback::Upgrader::new()
    ///     .try_response_header(http::header::CONNECTION, HeaderValue::from_static("close"))
    ///     .is_err());
    /// ```
    pub fn response_header(self, name: HeaderName, value: HeaderValue) -> Self {
        match self.try_response_header(name, value) {
            Ok(u) => u,
            Err(e) => panic!("{e}"),
        }
    }

    /// Adds a header to every `101` response, or refuses a header the
    /// handshake owns: `Upgrade`, `Connection`, any `Sec-WebSocket-*`,
    /// `Content-Length`, `Transfer-Encoding`.
    pub fn try_response_header(
        mut self,
        name: HeaderName,
        value: HeaderValue,
    ) -> Result<Self, ReservedHeader> {
        check_response_header(&name)?;
        let mut all = self.response_headers.to_vec();
        all.push((name, value));
        self.response_headers = all.into();
        Ok(self)
    }

    /// Keeps the upgrade request's headers on the server-side
    /// [`WebSocket`](crate::WebSocket)
    /// ([`request_headers`](crate::WebSocket::request_headers)). Off by
    /// default: the headers of a browser request (cookies, user agent...)
    /// often weigh a kilobyte, kept for the life of every connection. The
    /// path and query, and the identity, are always kept. The headers
    /// include credentials (`Authorization`, `Cookie`): do not log them.
    pub fn keep_request_headers(mut self, keep: bool) -> Self {
        self.keep_request_headers = keep;
        self
    }

    /// Starts the authorize hook on `req`, if there is one.
    pub(crate) fn start_authorize<B>(&self, req: &Request<B>) -> Option<AuthFuture> {
        let hook = self.authorize.as_ref()?;
        Some(hook(&RequestHead::of(req)))
    }
}

/// Runs the hook started on the request (if any) and applies what it
/// returned to the `101` response: its headers (refusing reserved ones with
/// 500). Returns the response to send and the identity.
pub(crate) async fn authorize(
    mut accepted: Accepted,
    hook: Option<AuthFuture>,
) -> Result<(Accepted, Option<Identity>), Rejection> {
    let Some(hook) = hook else {
        return Ok((accepted, None));
    };
    let auth = hook.await?;
    for (name, value) in auth.headers {
        if let Err(e) = check_response_header(&name) {
            tracing::error!(error = %e, "authorize hook returned a reserved header");
            return Err(Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ));
        }
        accepted.response.headers_mut().append(name, value);
    }
    Ok((accepted, auth.identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn bearer() {
        let t = |h: &[(&str, &str)]| {
            RequestHead::of(&head(h))
                .bearer_token()
                .map(AuthToken::into_inner)
        };
        assert_eq!(
            t(&[("authorization", "Bearer abc")]).as_deref(),
            Some("abc")
        );
        assert_eq!(
            t(&[("authorization", "bearer  abc ")]).as_deref(),
            Some("abc")
        );
        assert_eq!(t(&[("authorization", "Basic abc")]), None);
        assert_eq!(t(&[("authorization", "Bearer ")]), None);
        assert_eq!(t(&[]), None);
        assert_eq!(
            t(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
            None
        );
    }

    #[test]
    fn cookie() {
        let req = head(&[("cookie", "a=1; sid=\"x y\""), ("cookie", "b=2; sid2=z")]);
        let h = RequestHead::of(&req);
        assert_eq!(h.cookie_token("sid").unwrap().expose(), "x y");
        assert_eq!(h.cookie_token("sid2").unwrap().expose(), "z");
        assert_eq!(h.cookie_token("b").unwrap().expose(), "2");
        assert!(h.cookie_token("si").is_none());
        let empty = head(&[("cookie", "sid=")]);
        assert!(RequestHead::of(&empty).cookie_token("sid").is_none());
    }

    #[test]
    fn protocol() {
        let req = head(&[("sec-websocket-protocol", "chat, access_token.eyJ.x_y")]);
        let h = RequestHead::of(&req);
        assert_eq!(h.protocol_token().unwrap().expose(), "eyJ.x_y");
        assert!(is_token_protocol("access_token.eyJ"));
        assert!(!is_token_protocol("chat"));
        let none = head(&[("sec-websocket-protocol", "chat, access_token.")]);
        assert!(RequestHead::of(&none).protocol_token().is_none());
    }

    #[test]
    fn reserved_headers() {
        for name in [
            "upgrade",
            "connection",
            "sec-websocket-accept",
            "sec-websocket-protocol",
            "sec-websocket-extensions",
            "content-length",
            "transfer-encoding",
        ] {
            let name = HeaderName::from_static(name);
            assert!(check_response_header(&name).is_err(), "{name}");
        }
        assert!(check_response_header(&header::SET_COOKIE).is_ok());
    }

    #[test]
    fn token_is_redacted() {
        let t = AuthToken::new("hunter2");
        assert!(!format!("{t} {t:?} {:?}", Some(&t)).contains("hunter2"));
    }
}
