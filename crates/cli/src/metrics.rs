//! `silverback serve`'s observability: `GET /metrics` (Prometheus text
//! format, from the library's and the hub's metrics, feature `metrics`, on
//! by default), `GET /stats` (a small JSON summary for the demo and chat
//! pages), `--metrics-addr` (a separate listener for `/metrics`), and the
//! log format (`--log-format json`).
//!
//! Without the feature, `/metrics` and `/stats` answer 404 and
//! `--metrics-addr` is refused.

use std::net::SocketAddr;

use clap::ValueEnum;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields.
    Json,
}

/// Installs the log subscriber: to stderr, filtered by `filter`.
pub fn init_logging(format: LogFormat, filter: tracing_subscriber::EnvFilter, ansi: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// The HTTP response of a metrics route.
pub type Response = http::Response<Vec<u8>>;

#[cfg(feature = "metrics")]
mod imp {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    use anyhow::Context as _;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
    use silverback::metrics as m;

    use super::*;

    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    /// `/metrics` is served on the main port (no `--metrics-addr`).
    static ON_MAIN: AtomicBool = AtomicBool::new(false);

    /// How often the recorder's upkeep runs (histogram samples between
    /// scrapes are folded in, so memory stays bounded without a scraper).
    const UPKEEP: Duration = Duration::from_secs(5);

    /// Installs the Prometheus recorder (before any connection: the
    /// library resolves its counters once), and serves `/metrics` on
    /// `metrics_addr` if given (else on the main port). Returns the
    /// address of the separate listener. Call inside the runtime.
    pub async fn start(metrics_addr: Option<SocketAddr>) -> anyhow::Result<Option<SocketAddr>> {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in [
            (m::PING_RTT_SECONDS, m::PING_RTT_BUCKETS),
            (m::WRITE_QUEUE_BYTES, m::WRITE_QUEUE_BUCKETS),
            (m::COMPRESSION_RATIO, m::COMPRESSION_RATIO_BUCKETS),
        ] {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                .context("histogram buckets")?;
        }
        let handle = builder
            .install_recorder()
            .context("installing the metrics recorder")?;
        m::describe();
        m::register(silverback::Role::Server);
        silverback_hub::metrics::describe();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP);
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        let _ = HANDLE.set(handle);
        let Some(addr) = metrics_addr else {
            ON_MAIN.store(true, Ordering::Relaxed);
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --metrics-addr {addr}"))?;
        let local = listener.local_addr()?;
        tokio::spawn(async move {
            let upgrader = silverback::Upgrader::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let upgrader = upgrader.clone();
                tokio::spawn(async move {
                    let Ok(incoming) = upgrader.read_request(stream).await else {
                        return;
                    };
                    let resp = match incoming.request().uri().path() {
                        "/metrics" => exposition(),
                        _ => not_found(),
                    };
                    let _ = incoming.respond(resp).await;
                });
            }
        });
        Ok(Some(local))
    }

    /// The answer to `req` on the main port, if it is a metrics route.
    pub fn route(path: &str) -> Option<Response> {
        match path {
            "/metrics" if ON_MAIN.load(Ordering::Relaxed) => Some(exposition()),
            "/stats" if HANDLE.get().is_some() => Some(stats()),
            _ => None,
        }
    }

    fn exposition() -> Response {
        let body = HANDLE.get().map(|h| h.render()).unwrap_or_default();
        http::Response::builder()
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .header("cache-control", "no-store")
            .header("connection", "close")
            .body(body.into_bytes())
            .expect("static response")
    }

    /// The server's figures for the page: open connections, and the
    /// messages and bytes counted so far (the page derives rates).
    fn stats() -> Response {
        let text = HANDLE.get().map(|h| h.render()).unwrap_or_default();
        let sum = |name: &str| server_sum(&text, name) as u64;
        let body = serde_json::json!({
            "connections": sum(m::CONNECTIONS_ACTIVE),
            "messages_in": sum(m::MESSAGES_RECEIVED),
            "messages_out": sum(m::MESSAGES_SENT),
            "bytes_in": sum(m::BYTES_RECEIVED),
            "bytes_out": sum(m::BYTES_SENT),
            "parked": unlabelled(&text, m::CONNECTIONS_PARKED) as u64,
        });
        http::Response::builder()
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            // The chat page may be served elsewhere (its `ws` parameter).
            .header("access-control-allow-origin", "*")
            .header("connection", "close")
            .body(body.to_string().into_bytes())
            .expect("static response")
    }

    /// The value of `name`, a series without labels, in an exposition.
    fn unlabelled(text: &str, name: &str) -> f64 {
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .next()
            .unwrap_or(0.0)
    }

    /// The sum of the server-role series of `name` in an exposition.
    fn server_sum(text: &str, name: &str) -> f64 {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') && rest.contains("role=\"server\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    }

    fn not_found() -> Response {
        http::Response::builder()
            .status(404)
            .header("content-type", "text/plain; charset=utf-8")
            .header("connection", "close")
            .body(b"not found\n".to_vec())
            .expect("static response")
    }

    /// Over `--max-connections`: refused with 503.
    pub fn rejected_limit() {
        m::connection_rejected(m::RejectReason::Limit);
    }

    /// The TLS handshake failed or timed out.
    pub fn rejected_tls() {
        m::connection_rejected(m::RejectReason::Tls);
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn server_sum_adds_the_server_series_only() {
            let text = "# TYPE silverback_messages_sent_total counter\n\
                silverback_messages_sent_total{role=\"server\",kind=\"text\"} 3\n\
                silverback_messages_sent_total{role=\"server\",kind=\"binary\"} 4\n\
                silverback_messages_sent_total{role=\"client\",kind=\"text\"} 100\n\
                silverback_messages_sent_totalx{role=\"server\"} 100\n";
            assert_eq!(
                super::server_sum(text, "silverback_messages_sent_total"),
                7.0
            );
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use super::*;

    pub async fn start(metrics_addr: Option<SocketAddr>) -> anyhow::Result<Option<SocketAddr>> {
        anyhow::ensure!(
            metrics_addr.is_none(),
            "--metrics-addr: this silverback was built without the `metrics` feature"
        );
        Ok(None)
    }

    pub fn route(_path: &str) -> Option<Response> {
        None
    }

    pub fn rejected_limit() {}

    pub fn rejected_tls() {}
}

pub use imp::{rejected_limit, rejected_tls, route, start};
