//! # silverback
//!
//! WebSocket connections for tokio, from the opening handshake to the last
//! Close frame: what gorilla/websocket is to Go.
//!
//! ```
//! use silverback::{CloseCode, Dialer, Message, Upgrader};
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Server: accept one connection and echo until the client closes.
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("ws://{}/ws", listener.local_addr()?);
//! let server = tokio::spawn(async move {
//!     let (stream, _) = listener.accept().await?;
//!     let mut ws = Upgrader::new().upgrade(stream).await?;
//!     loop {
//!         match ws.recv().await {
//!             Ok(msg) => ws.send(msg).await?,
//!             // The client closed: its Close was already answered.
//!             Err(e) if e.is_closed() => return Ok::<_, silverback::Error>(e.close_code()),
//!             Err(e) => return Err(e),
//!         }
//!     }
//! });
//!
//! // Client.
//! let (mut ws, _) = Dialer::new().connect(&url).await?;
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.recv().await?, Message::text("hello"));
//! ws.close(CloseCode::Normal, "bye").await?;
//! assert_eq!(server.await??, Some(CloseCode::Normal));
//! # Ok(())
//! # }
//! ```
//!
//! ## Overview
//! An [`Upgrader`] turns an HTTP upgrade request into a [`WebSocket`]: on a
//! raw transport ([`Upgrader::upgrade`], or [`Upgrader::read_request`] to
//! route first) or inside a hyper service (`Upgrader::upgrade_hyper`,
//! feature `hyper`, on by default), over HTTP/1.1 (Upgrade) or HTTP/2
//! (extended CONNECT, RFC 8441; [`WebSocket::http_version`] tells which).
//! With feature `axum`, `silverback::axum::WebSocketUpgrade` is an axum
//! extractor. A [`Dialer`] opens client connections.
//!
//! ## Messages
//! [`WebSocket::recv`] returns whole data messages: [`Message::Text`]
//! (validated UTF-8, handed out without a copy) or [`Message::Binary`].
//! [`WebSocket::send`] sends one. Fragmented messages are reassembled for
//! you; [`WebSocket::send_fragment`] sends one in pieces.
//!
//! Large messages can be streamed instead, as gorilla's `NextReader` and
//! `NextWriter` do: [`WebSocket::recv_stream`] gives a [`MessageReader`]
//! (`AsyncRead`) that hands out the payload as frames arrive, still
//! checked (UTF-8, size limit) and decompressed; [`WebSocket::send_stream`]
//! gives a [`MessageWriter`] (`AsyncWrite`) that sends fragments, still
//! compressed. Both work with `tokio::io::copy`.
//!
//! ## Control frames
//! Pings are answered with Pongs and the peer's Close is echoed, by `recv`:
//! keep a task reading. When the peer closes, `recv` returns an [`Error`]
//! for which [`Error::is_closed`] is true, with the peer's code and reason
//! in [`Error::close_frame`].
//!
//! Like gorilla's `SetPingHandler`/`SetPongHandler`, [`WebSocket::on_ping`]
//! and [`WebSocket::on_pong`] see each Ping and Pong as it is handled
//! (and [`WebSocket::on_close`] picks the answer to the peer's Close). With
//! [`Config::auto_pong`] off, pings are not answered for you: reply with
//! [`WebSocket::pong`]. [`WebSocket::ping`] returns a future of the Pong.
//!
//! ## Concurrency
//! One reader and one writer at a time: `recv` takes `&mut self`, as do
//! `send` and `close`. To read and write from two tasks, [`WebSocket::split`]
//! gives a [`WsReader`] and a [`WsWriter`]; the reader answers pings, and the
//! writer's `close` lets the reader see every message sent before the
//! peer's Close. `WebSocket` also implements `futures` [`Stream`] and
//! [`Sink`](futures_sink::Sink); the `Stream` ends with `None` after a
//! clean close where `recv` returns an error for which
//! [`Error::is_closed`] is true (the mapping: [`WebSocket`]'s docs, *How
//! the end is reported*; [`WebSocket::end`] tells how it ended).
//!
//! ## Write coalescing
//! `send` queues the message, then writes it out unless more received input
//! is already buffered (and less than `write_buffer_size` is queued): then
//! the reply waits for the next flush, which happens at the latest when
//! `recv` is about to wait for input. So the replies to one read leave in
//! one write system call, and a sender that only sends is never left with
//! unflushed data. [`WebSocket::flush`] forces a flush.
//!
//! ## Origin
//! Browsers let any page open a WebSocket to any server, with the page's
//! origin in the `Origin` header. By default the upgrader refuses a request
//! whose `Origin` does not match its `Host` (403); requests without
//! `Origin` (not from a browser) are allowed. [`Upgrader::check_origin`]
//! replaces the policy.
//!
//! ## Authentication and the upgrade request
//! [`Upgrader::authorize`] runs an async hook on each request, after the
//! origin check and before the `101`: it returns an identity
//! ([`Authorized`], then [`WebSocket::identity`]) or a [`Rejection`] sent
//! with its status (401, 403...). Tokens come from `Authorization: Bearer`,
//! a cookie, or a `Sec-WebSocket-Protocol` entry `access_token.<token>`
//! (what a browser can send); they are [`AuthToken`]s, redacted in logs.
//! [`Upgrader::response_header`] and [`Authorized::header`] add headers
//! (e.g. `Set-Cookie`) to the `101`. A server's `WebSocket` keeps the
//! request's path and query ([`WebSocket::request_path`]); its headers
//! only with [`Upgrader::keep_request_headers`]. The split halves answer
//! the same questions ([`WsReader::identity`], [`WsWriter::request_path`]).
//!
//! ## JSON
//! With feature `json`, `send_json` and `recv_json` send and receive
//! serde values as text messages; a message that is not the JSON expected
//! comes back as a `JsonError` with its text, and the connection stays
//! usable.
//!
//! ## Metrics
//! With feature `metrics`, every connection records what it sees through
//! the [`metrics`](https://docs.rs/metrics) facade (connections, messages
//! and bytes each way, closes by code and initiator, ping round trips,
//! write backlogs, compression): see the `metrics` module for the names,
//! and install a recorder before the first connection. Without it, nothing
//! is recorded and nothing is compiled in. [`WebSocket::stats`] is the
//! same view of one connection, always available.
//!
//! ## Buffers and limits
//! Messages are limited to 64 MiB and frames to 16 MiB by default
//! ([`Config::max_message_size`], [`Config::max_frame_size`]); a larger one
//! is refused from its header, before its payload is buffered, with close
//! code 1009. Invalid UTF-8 gets 1007, other protocol errors 1002, always
//! with a Close frame before the transport closes.
//!
//! ## Closing
//! A connection ends in one of three ways, each reported precisely, plus a
//! server-wide shutdown.
//!
//! **1. We close.** [`WebSocket::close`] sends a Close frame after what was
//! queued before it, waits for the peer's Close (bounded by
//! [`Config::close_timeout`], 5 s by default), then closes the transport (a
//! server first; a client waits for the server to close TCP). Later sends
//! fail with [`ErrorKind::Closing`]; calling `close` again is harmless.
//!
//! ```no_run
//! # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) {
//! use silverback::{CloseCode, ErrorKind, Timeout};
//! match ws.close(CloseCode::Normal, "bye").await {
//!     Ok(()) => {} // the peer answered: closing handshake complete
//!     Err(e) if matches!(e.kind(), ErrorKind::Timeout(Timeout::CloseHandshake)) => {
//!         eprintln!("peer did not answer our Close; TCP closed anyway")
//!     }
//!     Err(e) => eprintln!("{e}"),
//! }
//! # }
//! ```
//!
//! **2. The peer closes.** `recv` returns an error for which
//! [`Error::is_closed`] is true, with the peer's code and reason; the Close
//! was already answered (its code echoed, or the reply of
//! [`WebSocket::on_close`]) and the transport closed.
//!
//! ```no_run
//! # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) {
//! match ws.recv().await {
//!     Ok(msg) => println!("{msg:?}"),
//!     Err(e) if e.is_closed() => println!("peer closed: {:?} {:?}", e.close_code(), e.close_frame()),
//!     Err(e) => println!("ended: {e}"),
//! }
//! # }
//! ```
//!
//! **3. Abnormal.** End of stream or a reset without a Close frame (close
//! code 1006), a keepalive Ping left unanswered ([`Timeout::Keepalive`], we
//! send 1011), nothing received for [`Config::idle_timeout`]
//! ([`Timeout::Idle`]), a peer that stops reading ([`Timeout::Write`]), or a
//! protocol violation (the code we sent). [`Error::is_unexpected_close`]
//! tells these apart from expected ends, like gorilla's
//! `IsUnexpectedCloseError`.
//!
//! ```no_run
//! # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) {
//! use silverback::CloseCode;
//! loop {
//!     match ws.recv().await {
//!         Ok(msg) => { let _ = ws.send(msg).await; }
//!         Err(e) if e.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]) => {
//!             eprintln!("unexpected close ({:?}): {e}", e.close_code());
//!             break;
//!         }
//!         Err(_) => break,
//!     }
//! }
//! # }
//! ```
//!
//! **Shutdown.** A [`Shutdown`] handle tracks a server's connections; on
//! [`Shutdown::shutdown`] each sends `1001 Going Away` and completes its
//! closing handshake, and those still open at the deadline are closed at
//! once. The report says how many closed cleanly. See [`Shutdown`] for a
//! whole accept loop.
//!
//! ```no_run
//! # async fn f(shutdown: silverback::Shutdown) {
//! let report = shutdown.shutdown(std::time::Duration::from_secs(10)).await;
//! println!("{report}"); // "N connections drained in Xs: N closed cleanly, 0 uncleanly, 0 forced"
//! # }
//! ```
//!
//! ## Keepalive and timeouts
//! While a task is in `recv`, a connection that received nothing for
//! [`Config::ping_interval`] (20 s) sends a Ping and expects anything back
//! within [`Config::ping_timeout`] (20 s). [`WebSocket::ping`] returns a
//! future with the round-trip time. The opening handshake is bounded by
//! [`Config::handshake_timeout`] (10 s), writes by [`Config::write_timeout`]
//! (30 s without progress), and queued output by
//! [`Config::max_write_buffer_size`].
//!
//! [`testing`] connects a pair in memory, or one of ours to a hand-driven
//! peer, to test timeouts, keepalive and shutdown deadlines on tokio's
//! paused clock, in virtual time.
//!
//! ## Many idle connections
//! A running connection costs its task, the runtime's registration of its
//! socket and its timers (about 2 KiB with the `WebSocket`). On unix,
//! [`park::Parking`] holds idle plain-TCP connections in about a quarter of
//! that, without a task, and hands each back as a `WebSocket` when
//! something arrives, for its keepalive Ping or idle timeout, or when the
//! server shuts down (`silverback serve` parks its idle echo connections).
//!
//! ## Compression
//! permessage-deflate (RFC 7692) is negotiated when
//! [`Config::compression`] is set, on both sides, with every parameter
//! (context takeover, window bits 9–15, level, a size threshold). Two memory
//! modes: a dedicated compressor per connection (best ratio), or
//! [`DeflateConfig::shared`] (no context takeover, compressors shared per
//! thread: the least memory). `max_message_size` applies to the inflated
//! size, checked while inflating, so a decompression bomb ends with 1009.
//! [`WebSocket::send_with`] overrides the choice per message
//! ([`Compression::Always`] or [`Compression::Never`]).
//!
//! ```
//! use silverback::{DeflateConfig, Upgrader};
//! let upgrader = Upgrader::new().compression(DeflateConfig::default());
//! ```
//!
//! ## API conventions
//! - Settings are set by builder methods named after them, on [`Config`]
//!   and on the [`Upgrader`] and [`Dialer`] that carry one
//!   (`.max_message_size(n)`), and read as [`Config`]'s public fields
//!   (`ws.config().max_message_size`), as in [`proto::Config`]. Builders
//!   are write-only, like tokio's, hyper's and reqwest's.
//! - Accessors have no `get_` prefix ([`WebSocket::protocol`],
//!   [`WebSocket::config`], [`Error::close_code`]), except
//!   [`WebSocket::get_ref`] and [`WebSocket::get_mut`] for the transport,
//!   std's convention (`BufReader::get_ref`).
//! - Yes/no questions are `is_*` ([`Error::is_closed`],
//!   [`WebSocket::is_closed`]); hooks are `on_*` ([`WebSocket::on_close`],
//!   [`WebSocket::on_ping`]).
//! - Types of other crates in the API are reachable through silverback:
//!   [`http`], [`bytes`], [`proto`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
#[cfg(feature = "axum")]
pub mod axum;
mod client;
mod config;
mod error;
#[cfg(feature = "http2")]
mod h2_client;
#[cfg(feature = "hyper")]
mod hyper;
#[cfg(feature = "json")]
mod json;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
#[cfg(unix)]
pub mod park;
mod proxy;
mod request;
mod server;
mod shutdown;
mod split;
mod stream;
pub mod testing;
#[cfg(feature = "tls")]
pub mod tls;
mod ws;

pub use auth::{AuthToken, Authorized, ReservedHeader, TOKEN_PROTOCOL_PREFIX};
pub use client::{connect, ClientStream, Dialer};
pub use config::Config;
pub use error::{Error, ErrorKind, Http2Error, RedirectRefusal, Timeout};
#[cfg(feature = "http2")]
pub use h2_client::{H2Pool, H2Stream, Http2, H2_CONNECTION_WINDOW, H2_STREAM_WINDOW};
#[cfg(feature = "hyper")]
pub use hyper::{is_upgrade_request, HyperUpgrade, HyperWebSocket, UpgradeFuture};
#[cfg(feature = "json")]
pub use json::JsonError;
pub use proxy::{Proxy, ProxyKind};
pub use server::{Accepted, Incoming, RequestHead, Upgrader};
pub use shutdown::{Shutdown, ShutdownReport, Stats};
pub use split::{WsReader, WsWriter};
pub use stream::MaybeTlsStream;
pub use ws::{
    Compression, MessageReader, MessageWriter, Offered, Overflow, PongFuture, QueueLimits,
    TrySendError, WebSocket, WsSender,
};

/// The `bytes` crate silverback uses (message payloads, the body of
/// [`Error::http_response`]): name its types through this re-export to
/// always have the version silverback does.
pub use bytes;
pub use futures_core::Stream;
/// The `http` crate silverback uses (upgrade requests and responses,
/// headers, [`Error::http_response`]): name its types through this
/// re-export to always have the version silverback does.
pub use http;
pub use silverback_proto as proto;
pub use silverback_proto::extension::deflate::{DeflateConfig, DeflateParams, MemoryMode};
pub use silverback_proto::handshake::server::Rejection;
pub use silverback_proto::{
    CloseCode, CloseFrame, End, Initiator, Message, MessageKind, OpCode, PreparedMessage, Role,
    Utf8Bytes,
};
