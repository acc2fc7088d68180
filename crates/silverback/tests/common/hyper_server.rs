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
    let (addr, _task) = spawn_accept(move |stream| async move {
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
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
    })
    .await;
    (addr, rx)
}
