//! Upgrading inside a hyper 1.x service (and so axum): feature `hyper`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use silverback_proto::handshake::server::Rejection;
use silverback_proto::Role;

use crate::auth::authorize;
use crate::error::{Error, ErrorKind, Timeout};
use crate::request::UpgradeInfo;
use crate::{Upgrader, WebSocket};

/// A WebSocket over a hyper upgraded connection.
pub type HyperWebSocket = WebSocket<TokioIo<Upgraded>>;

/// Resolves to the WebSocket once hyper has sent the `101` response and
/// handed over the connection. Spawn it; it is bounded by the handshake
/// timeout.
pub struct UpgradeFuture {
    inner: Pin<Box<dyn Future<Output = Result<HyperWebSocket, Error>> + Send>>,
}

impl fmt::Debug for UpgradeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeFuture").finish_non_exhaustive()
    }
}

impl Future for UpgradeFuture {
    type Output = Result<HyperWebSocket, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// The answer to a hyper upgrade request: the `101` response to return
/// and the future of the [`WebSocket`], or the refusal to return.
pub type HyperUpgrade = Result<(Response<Full<Bytes>>, UpgradeFuture), Response<Full<Bytes>>>;

impl Upgrader {
    /// Upgrades a request received by hyper: an HTTP/1.1 Upgrade, or an
    /// HTTP/2 extended CONNECT (RFC 8441; serve HTTP/2 with hyper's
    /// `http2::Builder::enable_connect_protocol`, as `axum::serve` does),
    /// answered with `200 OK` and carried on the request's stream.
    ///
    /// The request is validated, checked and authorized (the
    /// [`authorize`](Upgrader::authorize) hook, if any, runs in the returned
    /// future, which does not borrow `req`). On success, it yields the
    /// `101 Switching Protocols` response for the service to return (with
    /// the [`response_header`](Upgrader::response_header)s and the hook's
    /// headers), and a future yielding the [`WebSocket`] (bytes hyper read
    /// past the request are replayed by `Upgraded`, so nothing the client
    /// sent eagerly is lost). On refusal, it yields the HTTP response to
    /// send (400, 403, 405 or 426 with a one-line body, the hook's
    /// refusal, or 503 if the hook outlived the handshake timeout).
    ///
    /// ```no_run
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper::{body::Incoming, Request, Response};
    /// use silverback::Upgrader;
    ///
    /// async fn handle(mut req: Request<Incoming>, upgrader: Upgrader) -> Result<Response<Full<Bytes>>, Infallible> {
    ///     match upgrader.upgrade_hyper(&mut req).await {
    ///         Ok((response, ws)) => {
    ///             tokio::spawn(async move {
    ///                 let Ok(mut ws) = ws.await else { return };
    ///                 while let Ok(msg) = ws.recv().await {
    ///                     if ws.send(msg).await.is_err() { break }
    ///                 }
    ///             });
    ///             Ok(response)
    ///         }
    ///         Err(refusal) => Ok(refusal),
    ///     }
    /// }
    /// ```
    pub fn upgrade_hyper<B>(
        &self,
        req: &mut Request<B>,
    ) -> impl Future<Output = HyperUpgrade> + Send + 'static {
        let version = req.version();
        let refusal = move |rej: Rejection| {
            crate::metrics::rejected(&rej);
            refusal_response(&rej, version)
        };
        let negotiated = self
            .negotiate(req)
            .map(|acc| (acc, self.start_authorize(req)));
        let target = UpgradeInfo::target_of(req.uri());
        let headers = self
            .keep_request_headers
            .then(|| Box::new(req.headers().clone()));
        let on_upgrade = negotiated.is_ok().then(|| hyper::upgrade::on(req));
        let config = self.config.clone();
        async move {
            let (accepted, auth) = negotiated.map_err(refusal)?;
            let (accepted, identity) =
                match tokio::time::timeout(config.handshake_timeout, authorize(accepted, auth))
                    .await
                {
                    Ok(r) => r.map_err(refusal)?,
                    Err(_) => {
                        crate::metrics::rejected_timeout();
                        return Err(refusal_response(
                            &Rejection::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "authorization timed out",
                            ),
                            version,
                        ));
                    }
                };
            let on_upgrade = on_upgrade.expect("taken when negotiated");
            let protocol = accepted.protocol;
            let deflate = accepted.deflate;
            let inner = Box::pin(async move {
                let upgraded = tokio::time::timeout(config.handshake_timeout, on_upgrade)
                    .await
                    .map_err(|_| {
                        crate::metrics::rejected_timeout();
                        Error::new(ErrorKind::Timeout(Timeout::Handshake))
                    })?
                    .map_err(|e| Error::new(ErrorKind::Io(std::io::Error::other(e))))?;
                let mut ws = WebSocket::with_shared_config(
                    TokioIo::new(upgraded),
                    Role::Server,
                    config,
                    &[],
                );
                ws.opened(protocol, deflate, target.path());
                ws.set_http_version(version);
                ws.upgrade = Some(Box::new(UpgradeInfo {
                    target,
                    identity,
                    headers,
                }));
                Ok(ws)
            });
            let response = accepted.response.map(|()| Full::new(Bytes::new()));
            Ok((response, UpgradeFuture { inner }))
        }
    }
}

/// The HTTP answer to a refused upgrade, for a request of `version`:
/// over HTTP/2 without the connection-specific headers (`Connection`,
/// `Upgrade`) that HTTP/2 forbids.
pub(crate) fn refusal_response(rej: &Rejection, version: http::Version) -> Response<Full<Bytes>> {
    tracing::debug!(rejection = %rej, ?version, "upgrade refused");
    let mut resp = rej.to_response().map(|b| Full::new(Bytes::from(b)));
    if version >= http::Version::HTTP_2 {
        resp.headers_mut().remove(http::header::CONNECTION);
        resp.headers_mut().remove(http::header::UPGRADE);
    }
    resp
}

/// Whether `req` asks for a WebSocket: an HTTP/1.1 Upgrade
/// (`Upgrade: websocket`) or an HTTP/2 extended CONNECT (RFC 8441) with
/// `:protocol websocket`.
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    if silverback_proto::handshake::server::is_extended_connect(req) {
        return req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    }
    silverback_proto::handshake::header_has_token(req.headers(), http::header::UPGRADE, "websocket")
}
