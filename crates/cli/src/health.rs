//! `GET /healthz` (liveness) and `GET /readyz` (readiness) of `silverback
//! serve`.
//!
//! - `/healthz`: 200 while the process serves, with a small JSON body:
//!   `{"status":"ok","draining":false,"backplane":"connected"}`
//!   (`backplane`: `none` without `--redis`, else `connected` or
//!   `disconnected`).
//! - `/readyz`: 200 `{"ready":true,…}` when the server takes new clients;
//!   503 `{"ready":false,"reason":…}` while the Redis backplane is
//!   disconnected (its publications would fail) or while the server drains
//!   for shutdown (after SIGINT/SIGTERM the listener stays open for these
//!   two endpoints only; anything else gets 503).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use silverback::tls::TlsAcceptor;
use silverback::Upgrader;
use silverback_hub::backplane::redis::{BackplaneState, RedisBackplane};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// What the health endpoints report.
pub struct Health {
    redis: Option<RedisBackplane>,
    draining: AtomicBool,
}

/// A response: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Health {
    pub fn new(redis: Option<RedisBackplane>) -> Self {
        Self {
            redis,
            draining: AtomicBool::new(false),
        }
    }

    /// From now on `/readyz` answers 503.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    fn backplane(&self) -> &'static str {
        match &self.redis {
            None => "none",
            Some(r) if *r.state().borrow() == BackplaneState::Connected => "connected",
            Some(_) => "disconnected",
        }
    }

    /// The answer for `path`, if it is one of the health endpoints.
    pub fn answer(&self, path: &str) -> Option<Answer> {
        let draining = self.draining.load(Ordering::Acquire);
        let backplane = self.backplane();
        match path {
            "/healthz" => Some(Answer {
                status: 200,
                body: serde_json::json!({
                    "status": "ok",
                    "draining": draining,
                    "backplane": backplane,
                })
                .to_string(),
            }),
            "/readyz" => {
                let reason = if draining {
                    Some("draining")
                } else if backplane == "disconnected" {
                    Some("backplane disconnected")
                } else {
                    None
                };
                let mut body =
                    serde_json::json!({"ready": reason.is_none(), "backplane": backplane});
                if let Some(r) = reason {
                    body["reason"] = r.into();
                }
                Some(Answer {
                    status: if reason.is_none() { 200 } else { 503 },
                    body: body.to_string(),
                })
            }
            _ => None,
        }
    }

    /// The HTTP response for `path`, if it is a health endpoint.
    pub fn response(&self, path: &str) -> Option<http::Response<Vec<u8>>> {
        let a = self.answer(path)?;
        Some(
            http::Response::builder()
                .status(a.status)
                .header("content-type", "application/json")
                .header("cache-control", "no-store")
                .header("connection", "close")
                .body(a.body.into_bytes())
                .expect("static response"),
        )
    }

    /// While the server drains: keeps accepting on `listener`, answering
    /// the health endpoints (`/readyz`: 503) and 503 to anything else.
    /// Runs until dropped.
    pub async fn serve_draining(
        &self,
        listener: &TcpListener,
        upgrader: &Upgrader,
        tls: Option<TlsAcceptor>,
    ) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let answer = async {
                match &tls {
                    None => self.answer_draining(stream, peer, upgrader).await,
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            self.answer_draining(s, peer, upgrader).await;
                        }
                    }
                }
            };
            // One at a time, each bounded: only probes come now.
            let _ = tokio::time::timeout(Duration::from_secs(2), answer).await;
        }
    }

    async fn answer_draining<S>(&self, stream: S, peer: SocketAddr, upgrader: &Upgrader)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(incoming) = upgrader.read_request(stream).await else {
            return;
        };
        let path = incoming.request().uri().path().to_owned();
        let resp = self.response(&path).unwrap_or_else(|| {
            tracing::debug!(%peer, path, "shutting down: 503");
            http::Response::builder()
                .status(503)
                .header("content-type", "text/plain; charset=utf-8")
                .header("connection", "close")
                .body(b"shutting down\n".to_vec())
                .expect("static response")
        });
        let _ = incoming.respond(resp).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_until_draining_without_a_backplane() {
        let h = Health::new(None);
        let ready = h.answer("/readyz").unwrap();
        assert_eq!(ready.status, 200);
        assert_eq!(h.answer("/healthz").unwrap().status, 200);
        assert!(h.answer("/other").is_none());
        h.set_draining();
        let r = h.answer("/readyz").unwrap();
        assert_eq!(r.status, 503);
        assert!(r.body.contains("draining"), "{}", r.body);
        let live = h.answer("/healthz").unwrap();
        assert_eq!(live.status, 200);
        assert!(live.body.contains(r#""draining":true"#), "{}", live.body);
    }
}
