//! An axum 0.8 extractor: feature `axum`.
//!
//! [`WebSocketUpgrade`] upgrades a request with an [`Upgrader`], so an axum
//! handler gets a silverback [`WebSocket`](crate::WebSocket): origin
//! policy, subprotocols, limits, permessage-deflate, keepalive, the
//! authorize hook and graceful [`Shutdown`] all as configured. It works on
//! HTTP/1.1 (Upgrade, `101`) and on HTTP/2 (extended CONNECT, RFC 8441,
//! `200`): `axum::serve` enables extended CONNECT on its HTTP/2
//! connections when axum's `http2` feature is on.
//!
//! The upgrader comes from the request's extensions (add it to the router
//! with `.layer(Extension(upgrader))`), or is [`Upgrader::new`]'s default.
//! A [`Shutdown`] in the extensions tracks every connection upgraded.
//!
//! Route WebSocket handlers with `any` (or `get(h).connect(h)`): over
//! HTTP/2 the request method is `CONNECT`, not `GET`.
//!
//! ```no_run
//! use axum::{routing::any, Extension, Router};
//! use silverback::axum::WebSocketUpgrade;
//! use silverback::{DeflateConfig, Shutdown, Upgrader};
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> axum::response::Response {
//!     upgrade.on_upgrade(|mut ws| async move {
//!         while let Ok(msg) = ws.recv().await {
//!             if ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let upgrader = Upgrader::new()
//!     .subprotocols(["chat.v1"])
//!     .compression(DeflateConfig::default());
//! let shutdown = Shutdown::new();
//! let app = Router::new()
//!     .route("/ws", any(ws))
//!     .layer(Extension(upgrader))
//!     .layer(Extension(shutdown.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! A refused request gets the answer silverback gives everywhere: 400,
//! 403 (origin), 405, 426 (not a WebSocket request, or not version 13),
//! 501 (an HTTP/2 CONNECT for another protocol), or the authorize hook's
//! refusal, with a one-line reason as the body. Use
//! `Option<WebSocketUpgrade>` to serve something else on the same route
//! when the request does not ask for a WebSocket.

use std::future::Future;

use axum_core::body::Body;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::Response;
use http::request::Parts;
use http::{Request, StatusCode};
use silverback_proto::handshake::server::Rejection;

use crate::hyper::refusal_response;
use crate::{HyperWebSocket, Shutdown, UpgradeFuture, Upgrader};

/// An accepted WebSocket request, as an axum extractor: return
/// [`on_upgrade`](Self::on_upgrade)'s response from the handler.
///
/// Extracting it runs the whole handshake decision (validation, origin,
/// subprotocol, compression, the [`authorize`](Upgrader::authorize) hook):
/// when it fails, the handler is not called and the refusal is the
/// response. See the [module docs](self) for where the [`Upgrader`] comes
/// from.
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use axum::routing::any;
/// use silverback::axum::WebSocketUpgrade;
///
/// // The page on GET, the WebSocket on an upgrade request.
/// async fn chat(upgrade: Option<WebSocketUpgrade>) -> Response {
///     match upgrade {
///         Some(upgrade) => upgrade.on_upgrade(|mut ws| async move {
///             let _ = ws.send(silverback::Message::text("welcome")).await;
///         }),
///         None => "<!doctype html><p>chat page</p>".into_response(),
///     }
/// }
/// let app: axum::Router = axum::Router::new().route("/chat", any(chat));
/// ```
#[must_use = "return the response of `on_upgrade` from the handler"]
pub struct WebSocketUpgrade {
    response: Response,
    upgrade: UpgradeFuture,
    shutdown: Option<Shutdown>,
    protocol: Option<String>,
    version: http::Version,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("status", &self.response.status())
            .field("protocol", &self.protocol)
            .field("version", &self.version)
            .field("shutdown", &self.shutdown.is_some())
            .finish_non_exhaustive()
    }
}

impl WebSocketUpgrade {
    /// Decides on the request whose head is `parts` with `upgrader`: what
    /// the extractor does with the upgrader of the request's extensions.
    /// For a custom extractor (an upgrader kept in the router's state,
    /// say). On refusal, the response to send.
    pub async fn from_parts(parts: &mut Parts, upgrader: &Upgrader) -> Result<Self, Response> {
        let version = parts.version;
        // The request is lent to `upgrade_hyper` and given back at once:
        // its synchronous part takes what it needs (the upgrade handle,
        // the authorize hook's view), the future borrows nothing.
        let placeholder = Request::new(()).into_parts().0;
        let mut req = Request::from_parts(std::mem::replace(parts, placeholder), ());
        let upgradable = req
            .extensions()
            .get::<::hyper::upgrade::OnUpgrade>()
            .is_some();
        let decided = upgrader.upgrade_hyper(&mut req);
        *parts = req.into_parts().0;
        let (response, upgrade) = decided.await.map_err(|r| r.map(Body::new))?;
        if !upgradable {
            // Valid, but the server cannot hand over this connection (an
            // HTTP/2 server without extended CONNECT, a test harness).
            let rej = Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this connection cannot be upgraded by the server",
            );
            return Err(refusal_response(&rej, version).map(Body::new));
        }
        let protocol = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self {
            response: response.map(Body::new),
            upgrade,
            shutdown: parts.extensions.get::<Shutdown>().cloned(),
            protocol,
            version,
        })
    }

    /// The subprotocol chosen, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The HTTP version of the request: [`http::Version::HTTP_2`] for an
    /// extended CONNECT, [`http::Version::HTTP_11`] for an Upgrade.
    pub fn http_version(&self) -> http::Version {
        self.version
    }

    /// Tracks the connection with `shutdown` (instead of the [`Shutdown`]
    /// found in the request's extensions, if any): on
    /// [`Shutdown::shutdown`] it closes with 1001 Going Away.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Returns the response that accepts the WebSocket (`101` on HTTP/1.1,
    /// `200` on HTTP/2) and, once the server has sent it and handed over
    /// the connection, runs `callback` with the [`WebSocket`](crate::WebSocket)
    /// in a task of its own. If the hand-over fails (the client went away
    /// first, or the handshake timeout passed), `callback` is not called.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(HyperWebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Self {
            response,
            upgrade,
            shutdown,
            ..
        } = self;
        tokio::spawn(async move {
            match upgrade.await {
                Ok(mut ws) => {
                    if let Some(shutdown) = shutdown {
                        shutdown.track(&mut ws);
                    }
                    callback(ws).await
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket hand-over failed"),
            }
        });
        response
    }
}

impl<S> FromRequestParts<S> for WebSocketUpgrade
where
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let upgrader = parts
            .extensions
            .get::<Upgrader>()
            .cloned()
            .unwrap_or_default();
        Self::from_parts(parts, &upgrader).await
    }
}

/// `None` when the request does not ask for a WebSocket (no
/// `Upgrade: websocket`, no extended CONNECT); otherwise as the required
/// extractor (a refusal is still a refusal).
impl<S> OptionalFromRequestParts<S> for WebSocketUpgrade
where
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let asks = {
            let mut head = Request::new(());
            *head.method_mut() = parts.method.clone();
            *head.version_mut() = parts.version;
            let asks_h1 = silverback_proto::handshake::header_has_token(
                &parts.headers,
                http::header::UPGRADE,
                "websocket",
            );
            asks_h1
                || (silverback_proto::handshake::server::is_extended_connect(&head)
                    && parts.extensions.get::<::hyper::ext::Protocol>().is_some())
        };
        if !asks {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}
