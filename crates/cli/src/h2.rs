//! HTTP/2 for `silverback serve`, on the same port as HTTP/1.1: a
//! cleartext connection that opens with the HTTP/2 preface (prior-knowledge
//! h2c), or a TLS connection that chose `h2` by ALPN, is served by hyper's
//! HTTP/2 server with extended CONNECT enabled (RFC 8441: the server
//! advertises `SETTINGS_ENABLE_CONNECT_PROTOCOL`, which it may, since it
//! always has a WebSocket route). Each WebSocket is one stream, upgraded by
//! the same `Upgrader` and handled by the same echo or pub/sub code as over
//! HTTP/1.1; other requests get the same answers as over HTTP/1.1
//! ([`super::plain_response`]: add routes there, once, for both).
//!
//! A child module of `serve` (its state and handlers are private there).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::{echo, plain_response, Slot, State};

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The ALPN protocols of `serve --tls-cert`: HTTP/2 preferred.
pub(super) fn alpn(config: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// How a cleartext connection opened: what was read of it so far, and
/// whether that is the HTTP/2 preface.
pub(super) enum Opening {
    /// The HTTP/2 preface (prior knowledge): the bytes read, replayed to
    /// the HTTP/2 server by [`Replay`].
    Http2(BytesMut),
    /// Anything else (an HTTP/1.1 request, for the upgrader to parse).
    Http1(BytesMut),
    /// Nothing within the handshake timeout, or closed.
    Nothing,
}

/// Reads the start of a cleartext connection until it is or is not the
/// HTTP/2 preface (the first read usually decides). The bytes are kept
/// for whichever server takes the connection: no `peek`, no wait for a
/// partial preface; bounded by `limit` (the handshake timeout, whose
/// timer is armed only if the first read has to wait).
pub(super) async fn sniff(stream: &mut TcpStream, limit: Duration) -> Opening {
    let mut buf = BytesMut::with_capacity(1024);
    // The timer is armed only if the first read has to wait.
    let read = async {
        loop {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Opening::Nothing,
                Ok(_) => {}
            }
            if let Some(opening) = decide(&mut buf) {
                return opening;
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Opening::Nothing)
}

/// Whether `buf` tells: the preface, something else, or (`None`) a part
/// of the preface so far.
fn decide(buf: &mut BytesMut) -> Option<Opening> {
    let n = buf.len().min(PREFACE.len());
    if buf[..n] != PREFACE[..n] {
        Some(Opening::Http1(std::mem::take(buf)))
    } else if n == PREFACE.len() {
        Some(Opening::Http2(std::mem::take(buf)))
    } else {
        None
    }
}

/// A transport whose first bytes were already read: hands them out
/// again before reading on.
pub(super) struct Replay<S> {
    read: Bytes,
    io: S,
}

impl<S> Replay<S> {
    pub(super) fn new(read: BytesMut, io: S) -> Self {
        Self {
            read: read.freeze(),
            io,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Whether TLS chose HTTP/2 by ALPN.
pub(super) fn negotiated<S>(tls: &tokio_rustls::server::TlsStream<S>) -> bool {
    tls.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// HTTP/2 connections being served, and who waits for none to be left.
static OPEN: AtomicUsize = AtomicUsize::new(0);
static NONE_OPEN: Notify = Notify::const_new();

/// Counts one connection in [`OPEN`] while it lives.
struct Open;

impl Open {
    fn new() -> Open {
        OPEN.fetch_add(1, Ordering::AcqRel);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if OPEN.fetch_sub(1, Ordering::AcqRel) == 1 {
            NONE_OPEN.notify_waiters();
        }
    }
}

/// After the drain: waits (at most `limit`) for the HTTP/2 connections to
/// end, so that the last frames of their closed WebSockets (END_STREAM,
/// the final GOAWAY) are written before the process exits.
pub(super) async fn connections_ended(limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        loop {
            let notified = NONE_OPEN.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if OPEN.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    })
    .await;
}

/// Serves one HTTP/2 connection until the client ends it (or, once the
/// server shuts down, until its WebSockets have closed: GOAWAY first, no
/// new streams).
pub(super) async fn serve_connection<S>(io: S, peer: SocketAddr, state: Arc<State>, slot: Slot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Slot::Full = slot {
        // Over --max-connections: an HTTP/1.1 503 means nothing to an
        // HTTP/2 client, so close at once.
        tracing::debug!(%peer, "over --max-connections: HTTP/2 connection closed");
        return;
    }
    let open = Open::new();
    let service = {
        let state = state.clone();
        service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(req, peer, state).await) }
        })
    };
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(state.h2_max_streams);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = state.shutdown.draining() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP/2 connection ended");
    }
    drop((slot, open));
}

/// One request on an HTTP/2 connection: the WebSocket path (and any
/// CONNECT without `:protocol`, to refuse it with 400) goes to the
/// upgrader; the rest is answered as over HTTP/1.1.
async fn route(
    mut req: http::Request<Incoming>,
    peer: SocketAddr,
    state: Arc<State>,
) -> http::Response<Full<Bytes>> {
    let path = req.uri().path();
    let plain_connect = req.method() == http::Method::CONNECT
        && req.extensions().get::<hyper::ext::Protocol>().is_none();
    if path != state.path && !plain_connect {
        // The head is enough: plain routes read no body.
        let upgrade = silverback::is_upgrade_request(&req);
        let head = http::Request::from_parts(req.into_parts().0, ());
        let mut resp = plain_response(&state, &head, upgrade).map(Full::new);
        resp.headers_mut().remove(http::header::CONNECTION);
        return resp;
    }
    let query = req.uri().query().map(str::to_owned);
    let (response, upgraded) = match state.upgrader.upgrade_hyper(&mut req).await {
        Ok(pair) => pair,
        Err(refusal) => {
            tracing::info!(%peer, status = %refusal.status(), http = "2", "upgrade refused");
            return refusal;
        }
    };
    tokio::spawn(async move {
        let mut ws = match upgraded.await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP/2 WebSocket hand-over failed");
                return;
            }
        };
        state.shutdown.track(&mut ws);
        match &state.pubsub {
            Some(ps) => Box::pin(ps.serve(&mut ws, peer, query.as_deref())).await,
            None => echo(&mut ws, peer, &state.path).await,
        }
    });
    response
}
