//! `silverback serve`: the echo server of the gorilla tutorial, plus a demo
//! page; with `--pubsub`, a pub/sub server (see [`crate::pubsub`]) and a
//! chat page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::BytesMut;
use clap::Args;
use futures_util::FutureExt as _;
use silverback::park::Parking;
use silverback::tls::TlsAcceptor;
use silverback::{CloseCode, DeflateConfig, Initiator, QueueLimits, Shutdown, Upgrader};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::pubsub::{self, PubSub, SlowConsumer};

/// HTTP/2 on the same port (h2c prior knowledge, ALPN h2).
#[path = "h2.rs"]
mod h2;

const DEMO_PAGE: &str = include_str!("demo.html");
/// The default `--max-message-size` with `--pubsub`.
const PUBSUB_MAX_MESSAGE_SIZE: usize = 64 << 10;
const CHAT_PAGE: &str = include_str!("chat.html");

/// Options of `silverback serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Path of the WebSocket endpoint.
    #[arg(long, default_value = "/ws")]
    pub path: String,
    /// Largest message accepted, in bytes (larger: close 1009); default
    /// 64 MiB, 64 KiB with --pubsub (every message may be kept in history
    /// and queued for every subscriber).
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<usize>,
    /// Largest frame accepted, in bytes (larger: close 1009).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_frame_size: usize,
    /// Accept cross-origin browser requests (off: same origin only).
    #[arg(long)]
    pub any_origin: bool,
    /// Seconds a client has to complete the opening handshake.
    #[arg(long, default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Do not accept permessage-deflate (on by default).
    #[arg(long)]
    pub no_compression: bool,
    /// Compression memory mode: `shared` (default: no context takeover,
    /// compressors shared per thread, ~3.5 KiB per idle connection) or
    /// `dedicated` (a compressor per connection: best ratio, ~350 KiB per
    /// connection).
    #[arg(long, value_parser = ["dedicated", "shared"], default_value = "shared")]
    pub compression_mode: String,
    /// Seconds to let connections finish their closing handshake on
    /// SIGINT/SIGTERM before they are force-closed.
    #[arg(long, default_value_t = 10.0)]
    pub shutdown_timeout: f64,
    /// Serve wss:// with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Most connections open at once, HTTP and WebSocket alike (0: no
    /// limit); over it a connection gets `503 Service Unavailable` and is
    /// closed.
    #[arg(long, default_value_t = 0)]
    pub max_connections: usize,
    /// Pub/sub instead of echo: raw mode (`/ws?topic=NAME`, every message
    /// published unchanged to the URL's topics) or JSON envelopes with the
    /// `pubsub.v1` subprotocol; the chat page on `/`.
    #[arg(long)]
    pub pubsub: bool,
    /// --pubsub: most messages queued for one connection.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub queue_messages: usize,
    /// --pubsub: most bytes queued for one connection.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub queue_bytes: usize,
    /// --pubsub: what to do when a connection's queue is full: close it
    /// with 1013 "slow consumer" (it reconnects and recovers from
    /// history), drop its oldest queued messages, or drop the new one.
    #[arg(long, value_enum, default_value = "close")]
    pub slow_consumer: SlowConsumer,
    /// --pubsub: messages kept per topic for recovery (0: none).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub history: usize,
    /// --pubsub: seconds a message is kept for recovery (0: no age limit).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub history_age: u64,
    /// --pubsub: most topics with subscribers.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_topics: usize,
    /// --pubsub: most topics one connection subscribes to.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_subscriptions: usize,
    /// --pubsub: longest topic name, in bytes.
    #[arg(long, default_value_t = 128, value_name = "BYTES")]
    pub max_topic_len: usize,
    /// Most streams open at once on one HTTP/2 connection (WebSockets and
    /// requests); more are refused with RST_STREAM REFUSED_STREAM.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub h2_max_streams: u32,
    /// Serve `GET /metrics` (Prometheus) on this address instead of on
    /// the main port.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// --pubsub: share topics with other nodes through Redis
    /// (`redis://HOST:PORT`); repeat for shards (topics spread by
    /// consistent hashing). `/readyz` is 503 while it is unreachable.
    #[arg(long = "redis", value_name = "URL", requires = "pubsub")]
    pub redis: Vec<String>,
    /// Seconds without traffic after which an echo connection is parked
    /// (plain TCP only): held without a task, a runtime registration or a
    /// timer of its own, about a quarter of a running connection's memory
    /// (`silverback::park`); it runs again when something arrives, for its
    /// keepalive Ping, or on shutdown. 0: never.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub park_after: f64,
    /// Seconds after which a connection that has sent nothing since it
    /// opened is parked (most idle subscribers never do; a reconnect
    /// storm then costs parked connections, not running ones). A client
    /// that speaks later wakes it, once. 0: as --park-after.
    #[arg(long, default_value_t = 0.01, value_name = "SECS")]
    pub park_new_after: f64,
    /// --redis: this node's id (presence; default random).
    #[arg(long, value_name = "ID", requires = "redis")]
    pub node_id: Option<String>,
}

impl Default for ServeArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ServeArgs,
        }
        Wrapper::parse_from(["serve"]).args
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if args.threads > 1 {
            b.worker_threads(args.threads);
        }
        b
    };
    let rt = rt.enable_all().build().context("starting the runtime")?;
    rt.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.path.starts_with('/'), "--path must start with '/'");
    let handshake_timeout =
        Duration::try_from_secs_f64(args.handshake_timeout).context("--handshake-timeout")?;
    let shutdown_timeout =
        Duration::try_from_secs_f64(args.shutdown_timeout).context("--shutdown-timeout")?;
    let park_after = Duration::try_from_secs_f64(args.park_after).context("--park-after")?;
    let park_new_after =
        Duration::try_from_secs_f64(args.park_new_after).context("--park-new-after")?;
    let park_new_after = if park_new_after.is_zero() {
        park_after
    } else {
        park_new_after.min(park_after)
    };
    let mut upgrader = Upgrader::new()
        .max_message_size(args.max_message_size.unwrap_or(if args.pubsub {
            PUBSUB_MAX_MESSAGE_SIZE
        } else {
            64 << 20
        }))
        .max_frame_size(args.max_frame_size)
        .handshake_timeout(handshake_timeout);
    if !args.no_compression {
        let deflate = match args.compression_mode.as_str() {
            "shared" => DeflateConfig::shared(),
            _ => DeflateConfig::default(),
        };
        upgrader = upgrader.compression(deflate);
    }
    if args.any_origin {
        upgrader = upgrader.check_origin(|_| true);
    }
    let pubsub = if args.pubsub {
        anyhow::ensure!(args.queue_bytes > 0, "--queue-bytes must be positive");
        anyhow::ensure!(args.max_topic_len > 0, "--max-topic-len must be positive");
        upgrader = upgrader.subprotocols([silverback_hub::envelope::PROTOCOL]);
        Some(PubSub::new(&pubsub::Settings {
            queue: QueueLimits::new(args.queue_messages, args.queue_bytes),
            slow_consumer: args.slow_consumer,
            history: args.history,
            history_age: (args.history_age > 0).then(|| Duration::from_secs(args.history_age)),
            max_topics: args.max_topics,
            max_subscriptions: args.max_subscriptions,
            max_topic_len: args.max_topic_len,
            redis: args.redis.clone(),
            node_id: args.node_id.clone(),
            path: args.path.clone(),
        })?)
    } else {
        None
    };
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let local = listener.local_addr()?;
    // Before the first connection: the library resolves its counters once.
    let metrics_local = crate::metrics::start(args.metrics_addr).await?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsAcceptor::from(h2::alpn(
            silverback::tls::server_config_from_pem_files(cert, key)
                .with_context(|| format!("loading {} and {}", cert.display(), key.display()))?,
        ))),
        _ => None,
    };
    let (ws_scheme, http_scheme) = if tls.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    // Handle SIGINT/SIGTERM from before the listening line: whoever waits
    // for that line may signal at once.
    let signal = stop_signal();
    tracing::info!("listening on {ws_scheme}://{local}{}", args.path);
    let page = if pubsub.is_some() {
        tracing::info!(
            "pubsub: raw mode on {ws_scheme}://{local}{}?topic=NAME, JSON envelopes with the {} subprotocol",
            args.path,
            silverback_hub::envelope::PROTOCOL
        );
        tracing::info!("chat page on {http_scheme}://{local}/");
        CHAT_PAGE
    } else {
        tracing::info!("demo page on {http_scheme}://{local}/");
        DEMO_PAGE
    };
    if let Some(addr) = metrics_local {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let shutdown = Shutdown::new();
    // Echo connections idle for --park-after wait in the parking.
    let parking = if args.pubsub || park_after.is_zero() {
        None
    } else {
        Some((
            Parking::new(|ws, parked: ParkedConn, _: &Parking<ParkedConn>| {
                tokio::spawn(run_tcp(Some(parked.into_opened(ws)), true));
            })
            .context("starting the parking")?,
            ParkAfter {
                idle: park_after,
                new: park_new_after,
            },
        ))
    };
    let health = crate::health::Health::new(pubsub.as_ref().and_then(|p| p.redis()));
    let state = Arc::new(State {
        health,
        upgrader,
        path: args.path.clone(),
        page: page.replace("__WS_PATH__", &args.path),
        shutdown: shutdown.clone(),
        pubsub,
        h2_max_streams: args.h2_max_streams,
        parking,
    });
    // One permit per open connection (held until its task ends, the echo
    // task included); none left: 503.
    let slots = (args.max_connections > 0).then(|| Arc::new(Semaphore::new(args.max_connections)));
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let _ = stream.set_nodelay(true);
                let slot = match &slots {
                    None => Slot::Unlimited,
                    Some(s) => match s.clone().try_acquire_owned() {
                        Ok(permit) => Slot::Held(permit),
                        Err(_) => {
                            tracing::debug!(%peer, "over --max-connections: 503");
                            Slot::Full
                        }
                    },
                };
                // The handshake (HTTP/2 detection, TLS, the upgrade) runs
                // in a future of its own on the heap, freed when it ends:
                // an open connection's task then holds only what `run`
                // needs (the connection, its peer, query and slot).
                let parks = state.parking.is_some();
                match tls.clone() {
                    None => {
                        let prelude = Box::pin(async move {
                            let mut stream = stream;
                            if let Slot::Full = slot {
                                return handshake(stream, BytesMut::new(), peer, state, slot).await;
                            }
                            match h2::sniff(&mut stream, handshake_timeout).await {
                                h2::Opening::Http2(read) => {
                                    let io = h2::Replay::new(read, stream);
                                    Box::pin(h2::serve_connection(io, peer, state, slot)).await;
                                    None
                                }
                                h2::Opening::Http1(read) => handshake(stream, read, peer, state, slot).await,
                                h2::Opening::Nothing => {
                                    tracing::debug!(%peer, "nothing received: closed");
                                    None
                                }
                            }
                        });
                        if parks {
                            tokio::spawn(prelude.then(|opened| run_tcp(opened, false)));
                        } else {
                            tokio::spawn(prelude.then(run_opened));
                        }
                    }
                    Some(acceptor) => {
                        let prelude = Box::pin(async move {
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) if h2::negotiated(&stream) => {
                                    Box::pin(h2::serve_connection(stream, peer, state, slot)).await;
                                    None
                                }
                                Ok(Ok(stream)) => handshake(stream, BytesMut::new(), peer, state, slot).await,
                                Ok(Err(e)) => {
                                    crate::metrics::rejected_tls();
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    crate::metrics::rejected_tls();
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    None
                                }
                            }
                        });
                        tokio::spawn(prelude.then(run_opened));
                    }
                }
            }
            name = &mut signal => {
                tracing::info!(
                    "{name}: shutting down, closing {} connections with 1001 (deadline {:?})",
                    shutdown.active(),
                    shutdown_timeout
                );
                state.health.set_draining();
                break;
            }
        }
    }
    // Drain; meanwhile the listener answers only the health endpoints.
    let report = tokio::select! {
        report = shutdown.shutdown(shutdown_timeout) => report,
        () = state.health.serve_draining(&listener, &state.upgrader, tls.clone()) => unreachable!(),
    };
    drop(listener);
    h2::connections_ended(Duration::from_secs(1)).await;
    tracing::info!("{report}");
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now (a signal that comes
/// before the first poll is kept, not fatal) and resolves with the name of
/// the first one received.
fn stop_signal() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = signal(SignalKind::interrupt())
            .and_then(|int| Ok((int, signal(SignalKind::terminate())?)));
        async move {
            match handlers {
                Ok((mut int, mut term)) => tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                },
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    "SIGINT"
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

struct State {
    health: crate::health::Health,
    upgrader: Upgrader,
    path: String,
    page: String,
    shutdown: Shutdown,
    pubsub: Option<PubSub>,
    h2_max_streams: u32,
    /// Echo over plain TCP: where idle connections wait, and after how
    /// long without traffic.
    parking: Option<(Parking<ParkedConn>, ParkAfter)>,
}

/// After how long without traffic an echo connection is parked.
#[derive(Debug, Clone, Copy)]
struct ParkAfter {
    /// Once it has sent something.
    idle: Duration,
    /// While it has sent nothing since it opened.
    new: Duration,
}

/// A connection's place under `--max-connections`.
enum Slot {
    /// No limit.
    Unlimited,
    /// One of the permits, released when the connection's task ends.
    Held(#[allow(dead_code)] OwnedSemaphorePermit),
    /// Over the limit: answered with 503.
    Full,
}

/// The body of the answer over `--max-connections`.
const BUSY_BODY: &str = "too many connections, retry in 1s\n";

/// Answers 503 without reading the request, then closes: the write side
/// first, then what the client sent is read and dropped (at most 64 KiB,
/// for at most a second) so that closing does not reset the connection
/// before the client has read the answer.
async fn refuse<S>(mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let busy = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{BUSY_BODY}",
            BUSY_BODY.len()
        );
        stream.write_all(busy.as_bytes()).await?;
        stream.shutdown().await?;
        // On the heap: this future is part of every connection's.
        let mut buf = vec![0u8; 4096];
        let mut drained = 0;
        while drained < 64 << 10 {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        std::io::Result::Ok(())
    })
    .await;
}

/// An upgraded connection and what its task needs to run it.
struct Opened<S> {
    ws: silverback::WebSocket<S>,
    /// The upgrade request's query string (`serve --pubsub` reads topics
    /// from it).
    query: Option<String>,
    peer: SocketAddr,
    state: Arc<State>,
    /// Held until the connection ends (then released, by drop).
    _slot: Slot,
}

/// What a parked connection keeps beside its `WebSocket` (its peer's
/// address is asked of the socket again when it wakes up).
struct ParkedConn {
    query: Option<String>,
    state: Arc<State>,
    slot: Slot,
}

impl ParkedConn {
    fn into_opened(self, ws: silverback::WebSocket<TcpStream>) -> Opened<TcpStream> {
        // Only the log lines use it: no system call when they are off.
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let peer = if tracing::enabled!(tracing::Level::INFO) {
            ws.get_ref().peer_addr().unwrap_or(unknown)
        } else {
            unknown
        };
        Opened {
            ws,
            query: self.query,
            peer,
            state: self.state,
            _slot: self.slot,
        }
    }
}

/// Runs an upgraded plain TCP echo connection when `serve` parks them: as
/// [`run_opened`], except that the connection is parked once idle for
/// `--park-after` (and run again from here, `resumed`, when it wakes up).
#[allow(clippy::manual_async_fn)] // not an `async fn`, as `run_opened`
fn run_tcp(
    mut opened: Option<Opened<TcpStream>>,
    resumed: bool,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        // Only spawned when there is a parking (echo mode, plain TCP).
        let Some((parking, after)) = opened.as_ref().and_then(|o| o.state.parking.clone()) else {
            return;
        };
        let mut first = !resumed;
        loop {
            let Some(o) = opened.as_mut() else { return };
            if first {
                o.state.shutdown.track(&mut o.ws);
            }
            if !echo_until_idle(&mut o.ws, o.peer, &o.state.path, first, after).await {
                return;
            }
            first = false;
            let peer = o.peer;
            // Moved out and in without an await between: the future holds
            // the connection once.
            let Some(Opened {
                ws,
                query,
                state,
                _slot: slot,
                ..
            }) = opened.take()
            else {
                return;
            };
            let parked = ParkedConn { query, state, slot };
            match parking.park(ws, parked) {
                Ok(()) => {
                    tracing::debug!(%peer, "parked");
                    return;
                }
                // Not parkable now (a keepalive Ping is out, say): on.
                Err((ws, parked)) => opened = Some(parked.into_opened(ws)),
            }
        }
    }
}

/// The echo loop until the connection ends (`false`) or had no traffic
/// for a while (`true`: park it; see [`ParkAfter`]). `first`: it just
/// opened (logged).
async fn echo_until_idle(
    ws: &mut silverback::WebSocket<TcpStream>,
    peer: SocketAddr,
    path: &str,
    first: bool,
    after: ParkAfter,
) -> bool {
    if first {
        log_open(ws, peer, path, None, "");
    }
    // Traffic is checked when the timer fires, not reset per message:
    // parked between `after` and twice `after` after the last of it.
    let traffic = |ws: &silverback::WebSocket<TcpStream>| {
        let s = ws.stats();
        (s.bytes_in, s.bytes_out)
    };
    let mut seen = traffic(ws);
    let silent = ws.stats().bytes_in == 0;
    let idle = tokio::time::sleep(if silent { after.new } else { after.idle });
    tokio::pin!(idle);
    let end = loop {
        tokio::select! {
            biased;
            received = ws.recv() => match received {
                Ok(msg) => {
                    if let Err(e) = ws.send(msg).await {
                        break e;
                    }
                }
                Err(e) => break e,
            },
            () = &mut idle => {
                let now = traffic(ws);
                if now == seen {
                    return true;
                }
                seen = now;
                idle.as_mut().reset(tokio::time::Instant::now() + after.idle);
            }
        }
    };
    log_end(ws, peer, &end);
    false
}

/// An HTTP/1.1 connection's handshake (`read`: its first bytes, already
/// read): the upgrade (or the demo page, or an error page); gives the
/// connection if it was upgraded.
async fn handshake<S>(
    stream: S,
    read: BytesMut,
    peer: SocketAddr,
    state: Arc<State>,
    slot: Slot,
) -> Option<Opened<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Slot::Full = slot {
        crate::metrics::rejected_limit();
        refuse(stream).await;
        return None;
    }
    let (ws, query) = open(stream, read, peer, &state).await?;
    Some(Opened {
        ws,
        query,
        peer,
        state,
        _slot: slot,
    })
}

/// Runs an upgraded connection to its end: the echo loop, or pub/sub.
#[allow(clippy::manual_async_fn)] // on purpose: see the comment inside
fn run_opened<S>(mut opened: Option<Opened<S>>) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Not an `async fn`: its future would hold the argument twice (the
    // argument, and the local it is moved into). This block uses the
    // captured connection in place.
    async move {
        let Some(o) = opened.as_mut() else {
            return;
        };
        o.state.shutdown.track(&mut o.ws);
        match &o.state.pubsub {
            Some(ps) => Box::pin(ps.serve(&mut o.ws, o.peer, o.query.as_deref())).await,
            None => echo(&mut o.ws, o.peer, &o.state.path).await,
        }
    }
}

/// Reads the request; upgrades it on the WebSocket path (giving the
/// connection and the request's query string), answers anything else (the
/// page on `/`, 404, 405) and gives `None`.
async fn open<S>(
    stream: S,
    read: BytesMut,
    peer: SocketAddr,
    state: &State,
) -> Option<(silverback::WebSocket<S>, Option<String>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (upgrader, path) = (&state.upgrader, state.path.as_str());
    let incoming = match upgrader.read_request_buffered(stream, read).await {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "bad request");
            return None;
        }
    };
    let req_path = incoming.request().uri().path().to_owned();
    if req_path == path {
        let query = incoming.request().uri().query().map(str::to_owned);
        match incoming.upgrade(upgrader).await {
            Ok(ws) => return Some((ws, query)),
            Err(e) => tracing::info!(%peer, error = %e, "upgrade refused"),
        }
    } else {
        let resp = plain_response(state, incoming.request(), incoming.is_upgrade());
        let _ = incoming.respond(resp).await;
    }
    None
}

/// The answer to a request (its head) that is not for the WebSocket path,
/// over HTTP/1.1 and HTTP/2 alike (`upgrade`: it asks for a WebSocket):
/// the health endpoints, `/metrics` and `/stats`, the page on `GET /`, 405
/// for another method there, 404 elsewhere. Routes for both HTTP versions
/// go here, before the 404.
fn plain_response(
    state: &State,
    req: &http::Request<()>,
    upgrade: bool,
) -> http::Response<bytes::Bytes> {
    let (method, path) = (req.method(), req.uri().path());
    if !upgrade {
        if let Some(resp) = state
            .health
            .response(path)
            .or_else(|| crate::metrics::route(path))
        {
            return resp.map(bytes::Bytes::from);
        }
    }
    let builder = http::Response::builder().header("connection", "close");
    let resp = if path == "/" && !upgrade {
        if method != http::Method::GET {
            builder
                .status(405)
                .header("allow", "GET")
                .header("content-type", "text/plain; charset=utf-8")
                .body(bytes::Bytes::from_static(b"method not allowed\n"))
        } else {
            builder
                .header("content-type", "text/html; charset=utf-8")
                .body(bytes::Bytes::copy_from_slice(state.page.as_bytes()))
        }
    } else {
        builder
            .status(404)
            .header("content-type", "text/plain; charset=utf-8")
            .body(bytes::Bytes::from_static(b"not found\n"))
    };
    resp.expect("static response")
}

async fn echo<S>(ws: &mut silverback::WebSocket<S>, peer: SocketAddr, path: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    log_open(ws, peer, path, None, "");
    let end = loop {
        match ws.recv().await {
            Ok(msg) => {
                if let Err(e) = ws.send(msg).await {
                    break e;
                }
            }
            Err(e) => break e,
        }
    };
    log_end(ws, peer, &end);
}

/// The `open` log line; with `--pubsub`, `mode` (`raw` or `pubsub.v1`)
/// and the topics of a raw connection.
pub(crate) fn log_open<S>(
    ws: &silverback::WebSocket<S>,
    peer: SocketAddr,
    path: &str,
    mode: Option<&str>,
    topics: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // What only the log lines need is computed only when they are on.
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let compression = ws.compression().map(|p| p.to_string()).unwrap_or_default();
    let protocol = ws.protocol().unwrap_or("");
    // Which HTTP carried the handshake: 1.1 (Upgrade) or 2 (extended CONNECT).
    let http = if ws.http_version() == http::Version::HTTP_2 {
        "2"
    } else {
        "1.1"
    };
    match mode {
        None => tracing::info!(%peer, path, http, protocol, compression, "open"),
        Some(mode) if topics.is_empty() => {
            tracing::info!(%peer, path, http, protocol, compression, mode, "open")
        }
        Some(mode) => {
            tracing::info!(%peer, path, http, protocol, compression, mode, topics, "open")
        }
    }
}

/// The `closed` (or `closed unexpectedly`) log line, with how the
/// connection ended.
pub(crate) fn log_end<S>(ws: &silverback::WebSocket<S>, peer: SocketAddr, end: &silverback::Error)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let stats = ws.stats();
    let duration = format!("{:.3}s", ws.age().as_secs_f64());
    // How it ended, as the core decided it (the same answer `recv` gave).
    let (by, code, reason) = match ws.end() {
        Some(how) => (
            match how.initiator() {
                Some(Initiator::Local) => "us",
                Some(Initiator::Remote) => "peer",
                None => "-",
            },
            u16::from(how.close_code()),
            how.reason().to_owned(),
        ),
        None => ("-", end.close_code().map_or(1006, u16::from), String::new()),
    };
    // A Close from the peer, whatever its code, is a clean end; a vanished
    // peer (1006), a timeout or a protocol error is not.
    if end.is_closed() || !end.is_unexpected_close(&[CloseCode::GoingAway]) {
        tracing::info!(
            %peer, by, code, reason, duration, bytes_in = stats.bytes_in, bytes_out = stats.bytes_out,
            messages_in = stats.messages_in, messages_out = stats.messages_out, "closed"
        );
    } else {
        tracing::info!(
            %peer, code, error = %end, duration, bytes_in = stats.bytes_in, bytes_out = stats.bytes_out,
            messages_in = stats.messages_in, messages_out = stats.messages_out, "closed unexpectedly"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open connection's task holds the connection once, and little
    /// beside it: the handshake's state was freed with its boxed future.
    /// (Memory per idle connection is measured by `scripts/bench.sh`; this
    /// catches a future that grows by holding a second copy or a large
    /// inline state, as an unboxed HTTP/2 branch once did.)
    #[test]
    fn an_open_connections_task_holds_the_connection_once() {
        let prelude = Box::pin(async { None::<Opened<tokio::net::TcpStream>> });
        let task = prelude.then(run_opened);
        let opened = std::mem::size_of::<Opened<tokio::net::TcpStream>>();
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= opened + 320,
            "the task's future is {size} bytes for a {opened}-byte connection"
        );
        // The same for an echo connection that parks when idle (its loop
        // also holds the park timer and the parking's handle: ~520 bytes;
        // a second copy of the connection would be 700 more).
        let prelude = Box::pin(async { None::<Opened<tokio::net::TcpStream>> });
        let task = prelude.then(|o| run_tcp(o, false));
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= opened + 576,
            "the parking task's future is {size} bytes for a {opened}-byte connection"
        );
    }
}
