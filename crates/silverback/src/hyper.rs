//! Upgrading inside a hyper 1.x service (and so axum): feature `hyper`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use silverback_proto::Role;

use crate::error::{Error, ErrorKind, Timeout};
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

impl Upgrader {
    /// Upgrades a request received by hyper.
    ///
    /// On success, returns the `101 Switching Protocols` response for the
    /// service to return, and a future yielding the [`WebSocket`] (bytes
    /// hyper read past the request are replayed by `Upgraded`, so nothing
    /// the client sent eagerly is lost). On refusal, returns the HTTP
    /// response to send (400, 403, 405 or 426, with a one-line body).
    ///
    /// ```no_run
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper::{body::Incoming, Request, Response};
    /// use silverback::Upgrader;
    ///
    /// async fn handle(mut req: Request<Incoming>, upgrader: Upgrader) -> Result<Response<Full<Bytes>>, Infallible> {
    ///     match upgrader.upgrade_hyper(&mut req) {
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
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    pub fn upgrade_hyper<B>(
        &self,
        req: &mut Request<B>,
    ) -> Result<(Response<Full<Bytes>>, UpgradeFuture), Response<Full<Bytes>>> {
        let accepted = match self.negotiate(req) {
            Ok(a) => a,
            Err(rej) => {
                tracing::debug!(rejection = %rej, "upgrade refused");
                return Err(rej.to_response().map(|b| Full::new(Bytes::from(b))));
            }
        };
        let path = req.uri().path().to_owned();
        let on_upgrade = hyper::upgrade::on(req);
        let config = *self.get_config();
        let protocol = accepted.protocol;
        let deflate = accepted.deflate;
        let inner = Box::pin(async move {
            let upgraded = tokio::time::timeout(config.handshake_timeout, on_upgrade)
                .await
                .map_err(|_| Error::new(ErrorKind::Timeout(Timeout::Handshake)))?
                .map_err(|e| Error::new(ErrorKind::Io(std::io::Error::other(e))))?;
            let mut ws =
                WebSocket::from_raw_socket(TokioIo::new(upgraded), Role::Server, config, &[]);
            ws.opened(protocol, deflate, &path);
            Ok(ws)
        });
        let response = accepted.response.map(|()| Full::new(Bytes::new()));
        Ok((response, UpgradeFuture { inner }))
    }
}

/// Whether `req` asks for a WebSocket upgrade (`Upgrade: websocket`).
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    silverback_proto::handshake::header_has_token(req.headers(), http::header::UPGRADE, "websocket")
}
