//! A hyper 1.x server for the upgrade tests (`upgrade_hyper`).

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use silverback::{Error, HyperWebSocket, Upgrader};
use tokio::sync::mpsc;

use super::spawn_accept;

/// Serves one TCP connection with hyper; every upgraded WebSocket (or the
/// error of its upgrade future) is sent on the returned channel.
pub async fn spawn_hyper(
    upgrader: Upgrader,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Result<HyperWebSocket, Error>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (addr, _task) =
        spawn_accept(move |stream| serve_hyper(TokioIo::new(stream), upgrader, tx)).await;
    (addr, rx)
}

/// Serves one in-memory connection with hyper (for tests on the paused
/// clock): the client's end of the pipe, and the upgraded WebSockets.
#[allow(dead_code)]
pub fn hyper_in_memory(
    upgrader: Upgrader,
) -> (
    tokio::io::DuplexStream,
    mpsc::UnboundedReceiver<Result<HyperWebSocket, Error>>,
) {
    let (client, server) = tokio::io::duplex(64 << 10);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(serve_hyper(TokioIo::new(server), upgrader, tx));
    (client, rx)
}

/// Serves one connection with hyper, upgrading with `upgrader`.
async fn serve_hyper<I>(
    io: I,
    upgrader: Upgrader,
    tx: mpsc::UnboundedSender<Result<HyperWebSocket, Error>>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |mut req: Request<Incoming>| {
        let upgrader = upgrader.clone();
        let tx = tx.clone();
        async move {
            assert!(silverback::is_upgrade_request(&req) || req.method() != "GET");
            match upgrader.upgrade_hyper(&mut req).await {
                Ok((response, ws)) => {
                    tokio::spawn(async move {
                        let _ = tx.send(ws.await);
                    });
                    Ok::<_, Infallible>(response)
                }
                Err(refusal) => Ok(refusal),
            }
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}
