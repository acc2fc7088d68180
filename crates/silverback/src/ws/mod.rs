//! `WebSocket<S>`: one connection over any `AsyncRead + AsyncWrite`.
//!
//! - `mod.rs`: the type and its public API;
//! - `drive.rs`: receiving, and driving a connection to its end (every
//!   decision about the end is the core's: `Connection::end`);
//! - `io.rs`: reading into and writing out of the core's buffers;
//! - `timers.rs`: keepalive, idle, write and close deadlines;
//! - `pings.rs`: pings awaiting their Pong, round-trip times.

mod drive;
#[cfg(unix)]
mod frozen;
mod io;
mod pings;
mod sender;
mod streaming;
mod timers;

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::stream::FusedStream;
use futures_core::Stream;
use futures_sink::Sink;
use silverback_proto::{
    CloseCode, CloseFrame, Connection, Event, Message, MessageKind, OpCode, Role,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::error::{Error, ErrorKind};
use crate::metrics::ConnMetrics;
use crate::shutdown::{Counters, ShutdownGuard, Stats};
use crate::split::WakerList;
use crate::Config;
use silverback_proto::extension::deflate::{DeflateParams, PerMessageDeflate};

pub(crate) use drive::Received;
#[cfg(unix)]
pub(crate) use frozen::Frozen;
use pings::Pings;
pub use pings::PongFuture;
use sender::SendQueue;
pub use sender::{Offered, Overflow, QueueLimits, TrySendError, WsSender};
pub use streaming::{MessageReader, MessageWriter};
use timers::Timers;

/// A WebSocket connection over a transport `S` (a `TcpStream`, a TLS
/// stream, hyper's `Upgraded`, or any `AsyncRead + AsyncWrite + Unpin`).
///
/// - [`recv`](Self::recv) returns the next data message. Pings are
///   answered and Close frames echoed for you; when the peer closes, `recv`
///   returns an [`Error`] for which [`Error::is_closed`] is true and that
///   carries the peer's code and reason.
/// - [`send`](Self::send) queues a message and writes it out (see *write
///   coalescing* in the crate docs for when exactly).
/// - [`close`](Self::close) runs the closing handshake.
/// - [`split`](Self::split) gives a reader and a writer for two tasks.
///
/// It also implements [`Stream`] of messages and [`Sink`] of messages.
///
/// # How the end is reported: `recv` and `Stream`
///
/// `recv` keeps gorilla's shape (every end is an `Err`, so a loop on
/// `recv` needs no other exit); the [`Stream`] follows Rust's (a stream
/// that ends yields `None`). Side by side, for this connection and for a
/// [`WsReader`](crate::WsReader):
///
/// | the connection...                         | `recv()` returns                          | `Stream::poll_next` yields  |
/// |-------------------------------------------|-------------------------------------------|-----------------------------|
/// | received a data message                   | `Ok(msg)`                                 | `Some(Ok(msg))`             |
/// | closed cleanly (either side started it)   | `Err(e)`, [`e.is_closed()`](Error::is_closed), the peer's code in [`e.close_frame()`](Error::close_frame) | `None`  |
/// | ended otherwise (1006, protocol, timeout) | `Err(e)`, [`e.is_unexpected_close(..)`](Error::is_unexpected_close) | `Some(Err(e))`, then `None` |
/// | ended, and that was already reported      | `Err(e)`, [`ErrorKind::AlreadyClosed`]    | `None` ([`FusedStream`])    |
///
/// The end is reported once, by whichever of the two sees it first. After
/// `None`, or at any time, [`end`](Self::end) says how the connection
/// ended (with the peer's Close frame for a clean close): what the
/// `Stream` does not carry.
///
/// ```
/// use futures_util::StreamExt;
/// use silverback::{testing, CloseCode, Config, End, Message};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), silverback::Error> {
/// let (mut client, mut server) = testing::pair(Config::default(), Config::default());
/// let closing = tokio::spawn(async move {
///     client.send(Message::text("last")).await?;
///     client.close(CloseCode::GoingAway, "done").await
/// });
/// // As a Stream: the message, then `None` for the clean close.
/// assert_eq!(server.next().await.transpose()?, Some(Message::text("last")));
/// assert!(server.next().await.is_none());
/// let end = server.end().expect("ended");
/// assert!(end.is_clean());
/// assert_eq!((end.close_code(), end.reason()), (CloseCode::GoingAway, "done"));
/// // The end was reported (by the Stream): `recv` now says AlreadyClosed.
/// assert!(server.recv().await.unwrap_err().is_closed());
/// closing.await.unwrap()?;
/// # Ok(()) }
/// ```
pub struct WebSocket<S> {
    io: S,
    /// The protocol: every decision, including how the connection ends.
    conn: Connection,
    /// Shared with the [`Upgrader`](crate::Upgrader) (and every
    /// connection it made): one copy per server, not per connection.
    config: std::sync::Arc<Config>,
    timers: Timers,
    pings: Pings,
    /// What few connections use, behind one pointer until needed.
    extras: Option<Box<Extras>>,
    shutdown: Option<ShutdownGuard>,
    /// The queue of this connection's [`WsSender`]s, once one was made.
    send_queue: Option<std::sync::Arc<SendQueue>>,
    /// The I/O error that ended the connection, handed out once as the
    /// source of an abnormal close.
    io_error: Option<std::io::Error>,
    flags: Flags,
    stats: Counters,
    /// What this connection records (feature `metrics`; nothing without).
    metrics: ConnMetrics,
    deflate: Option<DeflateParams>,
    opened: Instant,
    /// Server side: the upgrade request's target, identity, headers.
    pub(crate) upgrade: Option<Box<crate::request::UpgradeInfo>>,
    /// Ping and Pong hooks: one pointer while none is set.
    hooks: Option<Box<Hooks>>,
}

/// The parts of a connection that most connections never use (an idle
/// connection's memory is mostly its task's future: keep it small).
#[derive(Default)]
struct Extras {
    /// Tasks to wake when the connection ends (split halves).
    finish_wakers: WakerList,
    /// Tasks that found the transport not writable (split halves, or a
    /// writer under backpressure). The transport keeps only the waker of
    /// the latest `poll_write`, so when the reader and the writer both
    /// wait to write, the one it wakes passes the news on to the others.
    write_wakers: WakerList,
    /// The subprotocol agreed in the handshake.
    protocol: Option<String>,
    /// The connection's tracing span, when debug spans are on.
    span: Option<tracing::Span>,
}

/// A ping or pong hook: gets the control frame's payload.
type Hook = Box<dyn FnMut(&[u8]) + Send>;

/// The application's ping and pong hooks.
#[derive(Default)]
struct Hooks {
    ping: Option<Hook>,
    pong: Option<Hook>,
}

/// Whether one message is compressed: see [`WebSocket::send_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// As configured: compressed from the size threshold on, and only if
    /// that makes it smaller. What [`WebSocket::send`] does.
    #[default]
    Auto,
    /// Compressed, whatever its size.
    Always,
    /// Sent as it is.
    Never,
}

impl Compression {
    /// The core's per-message override.
    fn transform(self) -> Option<bool> {
        match self {
            Self::Auto => None,
            Self::Always => Some(true),
            Self::Never => Some(false),
        }
    }
}

/// What the async layer remembers beyond the core's state.
#[derive(Debug, Default, Clone, Copy)]
struct Flags {
    /// A shutdown asked us to close: finish the handshake, drop data.
    draining: bool,
    /// The end was acted on (timers freed, waiters woken, logged).
    ended: bool,
    /// The end was reported by `recv`; later calls get `AlreadyClosed`.
    reported: bool,
    /// The opening handshake was an HTTP/2 extended CONNECT (RFC 8441):
    /// the connection is one stream of an HTTP/2 connection.
    http2: bool,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.conn)
            .field(
                "protocol",
                &self.extras.as_ref().and_then(|x| x.protocol.as_deref()),
            )
            .field("closed", &self.conn.is_over())
            .finish_non_exhaustive()
    }
}

impl<S> WebSocket<S> {
    pub(crate) fn set_shutdown(&mut self, guard: ShutdownGuard) {
        self.shutdown = Some(guard);
    }

    /// Whole compressed messages come out encoded, for a reader half to
    /// decode without holding the connection (see `split`).
    pub(crate) fn set_defer_decoding(&mut self, on: bool) {
        self.conn.set_defer_decoding(on);
    }

    pub(crate) fn wake_finish_waiters(&mut self) {
        if let Some(x) = self.extras.as_mut() {
            x.finish_wakers.wake_all();
        }
    }

    /// The rarely used parts, allocated on first use.
    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// The connection's tracing span (a disabled one when spans are off).
    fn span(&self) -> tracing::Span {
        self.extras
            .as_ref()
            .and_then(|x| x.span.clone())
            .unwrap_or_else(tracing::Span::none)
    }

    /// Whether the end of the connection was handed out (by `recv` or the
    /// `Stream`).
    pub(crate) fn end_reported(&self) -> bool {
        self.flags.reported
    }

    /// Whether the connection has ended (the transport is closed).
    pub fn is_closed(&self) -> bool {
        self.conn.is_over()
    }

    /// How the connection ended, once it has: who closed, the codes, the
    /// cause. The same answer `recv` reports as an error.
    pub fn end(&self) -> Option<silverback_proto::End> {
        self.conn.end()
    }
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a transport on which the opening handshake is already done.
    ///
    /// `buffered` holds bytes read past the handshake (they belong to the
    /// WebSocket stream and are parsed first).
    pub fn from_raw_socket(io: S, role: Role, config: Config, buffered: &[u8]) -> Self {
        Self::with_shared_config(io, role, std::sync::Arc::new(config), buffered)
    }

    /// [`from_raw_socket`](Self::from_raw_socket) with settings shared by
    /// many connections.
    pub(crate) fn with_shared_config(
        io: S,
        role: Role,
        config: std::sync::Arc<Config>,
        buffered: &[u8],
    ) -> Self {
        let mut conn = Connection::with_config(role, config.proto());
        conn.receive_data(buffered);
        Self {
            io,
            conn,
            config,
            timers: Timers::new(),
            pings: Pings::default(),
            extras: None,
            shutdown: None,
            send_queue: None,
            io_error: None,
            flags: Flags::default(),
            stats: Counters::default(),
            metrics: ConnMetrics::new(role),
            deflate: None,
            opened: Instant::now(),
            upgrade: None,
            hooks: None,
        }
    }

    /// Installs permessage-deflate with the agreed parameters.
    pub(crate) fn set_deflate(&mut self, params: Option<DeflateParams>) {
        if let (Some(params), Some(cfg)) = (params, self.config.compression.as_ref()) {
            let ext = PerMessageDeflate::new(self.conn.role(), params, cfg);
            self.conn.set_extension(Box::new(ext));
            self.deflate = Some(params);
        }
    }

    /// The permessage-deflate parameters agreed in the handshake, if any.
    pub fn compression(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }

    /// The handshake agreed on `protocol` and `deflate`: install them and
    /// open the connection's tracing span (`target`: the path or URL).
    pub(crate) fn opened(
        &mut self,
        protocol: Option<String>,
        deflate: Option<DeflateParams>,
        target: &str,
    ) {
        self.set_protocol(protocol);
        self.set_deflate(deflate);
        let role = match self.conn.role() {
            Role::Server => "server",
            Role::Client => "client",
        };
        let span = tracing::debug_span!(
            "websocket",
            role,
            target,
            protocol = self.protocol().unwrap_or(""),
        );
        span.in_scope(|| tracing::debug!("WebSocket opened"));
        if !span.is_disabled() {
            self.extras_mut().span = Some(span);
        }
    }

    /// Traffic counters and state: bytes and messages in and out, the
    /// last ping's round-trip time, bytes queued, messages dropped by the
    /// send queue's overflow policy, the compression ratio, the age. See
    /// [`Stats`].
    ///
    /// ```no_run
    /// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) {
    /// let stats = ws.stats();
    /// if stats.dropped > 0 || stats.last_rtt.is_some_and(|rtt| rtt.as_secs() > 2) {
    ///     tracing::warn!(?stats, "slow peer");
    /// }
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        let c = self.stats;
        Stats {
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            messages_in: c.messages_in,
            messages_out: c.messages_out,
            payload_in: c.payload_in,
            payload_out: c.payload_out,
            last_rtt: self.pings.last_rtt(),
            buffered: self.buffered_amount(),
            dropped: self.send_queue.as_ref().map_or(0, |q| q.dropped()),
            age: self.opened.elapsed(),
            compressed: self.deflate.is_some(),
        }
    }

    /// The core handed out `ev`: counted (a data event is charged the
    /// input bytes parsed since the previous event).
    #[inline]
    pub(crate) fn note_event(&mut self, ev: &Event) {
        let (kind, len, messages) = match ev {
            Event::Message(m) => (Some(m.kind()), m.len(), 1),
            Event::Chunk { kind, data, fin } => (Some(*kind), data.len(), u64::from(*fin)),
            Event::Encoded(e) => (Some(e.kind()), 0, 1),
            _ => (None, 0, 0),
        };
        #[cfg(feature = "metrics")]
        {
            let consumed = self
                .stats
                .bytes_in
                .saturating_sub(self.conn.buffered_input() as u64);
            self.metrics.received(consumed, kind, messages);
        }
        let _ = messages;
        if let Some(kind) = kind {
            self.stats.payload_in += len as u64;
            self.metrics.received_payload(kind, len);
        }
    }

    /// A message that came out encoded was decoded: its payload counted.
    pub(crate) fn note_decoded(&mut self, m: &Message) {
        self.stats.payload_in += m.len() as u64;
        self.metrics.received_payload(m.kind(), m.len());
    }

    /// A data message (`fin`: its last fragment) of `payload` bytes was
    /// queued; the output grew from `before` bytes.
    #[inline]
    pub(crate) fn note_sent(
        &mut self,
        kind: MessageKind,
        fin: bool,
        payload: usize,
        before: usize,
    ) {
        let wire = self.conn.output_len().saturating_sub(before);
        self.stats.messages_out += u64::from(fin);
        self.stats.payload_out += payload as u64;
        self.metrics.sent(kind, u64::from(fin), payload, wire);
    }

    /// How long the connection has been open.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Replaces the automatic reply to the peer's Close frame (by default
    /// its code, echoed). The handler gets the peer's frame (`None` for an
    /// empty Close) and returns the frame to answer with.
    ///
    /// ```no_run
    /// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) {
    /// use silverback::{CloseCode, CloseFrame};
    /// ws.on_close(|_peer| CloseFrame::new(CloseCode::Normal, "see you"));
    /// # }
    /// ```
    pub fn on_close<F>(&mut self, handler: F)
    where
        F: FnMut(Option<&CloseFrame>) -> CloseFrame + Send + 'static,
    {
        self.conn.set_close_handler(Box::new(handler));
    }

    /// Calls `hook` with the payload of every Ping received, like
    /// gorilla's `SetPingHandler`, replacing the previous ping hook.
    ///
    /// The hook runs in the task that receives ([`recv`](Self::recv), the
    /// [`Stream`] impl or the [`WsReader`](crate::WsReader)), synchronously
    /// while the Ping is handled, before `recv` returns its next message:
    /// keep it short and never block in it. With
    /// [`Config::auto_pong`](crate::Config::auto_pong()) on (the default)
    /// the Pong is already queued when the hook runs; with it off, no Pong
    /// is sent unless the application sends one with [`pong`](Self::pong),
    /// e.g. from a task the hook hands the payload to. Pings that arrive
    /// after our Close was sent are neither answered nor reported.
    ///
    /// ```
    /// use silverback::{testing, Config, Message};
    /// use tokio::sync::mpsc;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), silverback::Error> {
    /// let manual = Config::default().auto_pong(false);
    /// let (mut client, mut server) = testing::pair(Config::default(), manual);
    ///
    /// // The server answers pings itself, from its receive loop.
    /// let (pings, mut to_answer) = mpsc::unbounded_channel();
    /// server.on_ping(move |payload| {
    ///     let _ = pings.send(payload.to_vec());
    /// });
    /// let server = tokio::spawn(async move {
    ///     loop {
    ///         tokio::select! {
    ///             msg = server.recv() => match msg {
    ///                 Ok(msg) => server.send(msg).await?,
    ///                 Err(e) if e.is_closed() => return Ok(()),
    ///                 Err(e) => return Err(e),
    ///             },
    ///             Some(payload) = to_answer.recv() => {
    ///                 server.pong(&payload).await?;
    ///             }
    ///         }
    ///     }
    /// });
    ///
    /// client.send(Message::text("echo")).await?;
    /// assert_eq!(client.recv().await?, Message::text("echo"));
    /// let pong = client.ping(b"hi").await?;
    /// // Pongs are received by `recv`: keep reading while waiting.
    /// tokio::select! {
    ///     rtt = pong => { rtt?; } // the server's own Pong
    ///     msg = client.recv() => panic!("unexpected {msg:?}"),
    /// }
    /// client.close(silverback::CloseCode::Normal, "").await?;
    /// server.await.unwrap()?;
    /// # Ok(()) }
    /// ```
    pub fn on_ping<F>(&mut self, hook: F)
    where
        F: FnMut(&[u8]) + Send + 'static,
    {
        self.hooks.get_or_insert_with(Box::default).ping = Some(Box::new(hook));
    }

    /// Calls `hook` with the payload of every Pong received (answers to
    /// our pings, keepalive ones included, and unsolicited pongs), like
    /// gorilla's `SetPongHandler`, replacing the previous pong hook. It
    /// runs where the [ping hook](Self::on_ping) runs, after the Pong
    /// resolved its [`PongFuture`], also while the connection closes.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use silverback::{testing, CloseCode, Config};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), silverback::Error> {
    /// let (mut client, mut server) = testing::pair(Config::default(), Config::default());
    /// let pongs = Arc::new(AtomicUsize::new(0));
    /// let seen = pongs.clone();
    /// client.on_pong(move |payload| {
    ///     assert_eq!(payload, b"ts=1");
    ///     seen.fetch_add(1, Ordering::Relaxed);
    /// });
    /// let server = tokio::spawn(async move { server.recv().await });
    /// let pong = client.ping(b"ts=1").await?;
    /// client.close(CloseCode::Normal, "").await?; // reads the Pong, then the Close
    /// pong.await?;
    /// assert_eq!(pongs.load(Ordering::Relaxed), 1);
    /// assert!(server.await.unwrap().unwrap_err().is_closed());
    /// # Ok(()) }
    /// ```
    pub fn on_pong<F>(&mut self, hook: F)
    where
        F: FnMut(&[u8]) + Send + 'static,
    {
        self.hooks.get_or_insert_with(Box::default).pong = Some(Box::new(hook));
    }

    /// Runs the ping hook, if any, unless our Close was sent.
    pub(crate) fn ping_received(&mut self, payload: &[u8]) {
        if self.conn.close_sent().is_some() {
            return;
        }
        if let Some(hook) = self.hooks.as_mut().and_then(|h| h.ping.as_mut()) {
            hook(payload);
        }
    }

    /// Resolves the ping the Pong answers, then runs the pong hook.
    pub(crate) fn pong_received(&mut self, payload: &[u8]) {
        if let Some(rtt) = self.pings.pong(payload) {
            self.metrics.rtt(rtt);
        }
        if let Some(hook) = self.hooks.as_mut().and_then(|h| h.pong.as_mut()) {
            hook(payload);
        }
    }

    pub(crate) fn set_protocol(&mut self, p: Option<String>) {
        if p.is_some() || self.extras.is_some() {
            self.extras_mut().protocol = p;
        }
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.extras.as_ref()?.protocol.as_deref()
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.conn.role()
    }

    /// The HTTP version of the opening handshake: [`http::Version::HTTP_2`]
    /// when the connection is a stream of an HTTP/2 connection (an
    /// extended CONNECT, RFC 8441), [`http::Version::HTTP_11`] for an
    /// HTTP/1.1 Upgrade (and a connection made with
    /// [`from_raw_socket`](Self::from_raw_socket)).
    pub fn http_version(&self) -> http::Version {
        if self.flags.http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        }
    }

    /// Records the HTTP version of the opening handshake.
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn set_http_version(&mut self, version: http::Version) {
        self.flags.http2 = version >= http::Version::HTTP_2;
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The transport, mutably. Reading or writing it directly breaks the
    /// WebSocket stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The round-trip time of the last answered ping: keepalive pings
    /// measure it for free, and so do [`ping`](Self::ping)s.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.pings.last_rtt()
    }

    /// Receives the next data message.
    ///
    /// Before waiting for input, queued output is flushed, so replies to a
    /// batch of messages leave in one write. Returns an error when the
    /// connection ends: [`Error::is_closed`] for a clean close (the peer's
    /// Close was already answered and the transport closed), otherwise the
    /// cause (peer vanished: 1006, protocol error: the code we sent, ...).
    /// Once the end was reported, further calls fail with
    /// [`ErrorKind::AlreadyClosed`]. The [`Stream`] reports the same ends
    /// as `None` or an error: see [how the end is
    /// reported](WebSocket#how-the-end-is-reported-recv-and-stream).
    ///
    /// Cancel safe: a message is never lost if the future is dropped.
    pub async fn recv(&mut self) -> Result<Message, Error> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Queues `msg` and writes it out, unless more received input is
    /// already waiting to be handled and the write buffer is below
    /// `write_buffer_size`: then the message leaves with the next flush
    /// (at the latest when [`recv`](Self::recv) waits for input), together
    /// with the other replies. Call [`flush`](Self::flush) to force it.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        self.queue(&msg.into())?;
        if self.should_flush() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Like [`send`](Self::send), choosing whether this message is
    /// compressed with permessage-deflate:
    ///
    /// - [`Compression::Auto`]: what `send` does: compressed when at least
    ///   the [`DeflateConfig`](crate::DeflateConfig) threshold long, and
    ///   sent as it is if deflating did not make it smaller;
    /// - [`Compression::Always`]: compressed whatever its size (even if it
    ///   grows);
    /// - [`Compression::Never`]: sent as it is (e.g. data already
    ///   compressed, or a secret next to attacker-chosen text in one
    ///   compression context, the BREACH/CRIME concern).
    ///
    /// Without negotiated compression (the peer did not accept it, or
    /// [`Config::compression`](crate::Config::compression()) is off), the
    /// choice is ignored: every message goes uncompressed, as RFC 7692
    /// requires, and this is not an error.
    /// [`compression`](Self::compression) says what was negotiated.
    ///
    /// ```
    /// use silverback::{testing, Compression, Config, DeflateConfig, Message};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), silverback::Error> {
    /// // In memory, without a handshake: nothing negotiated.
    /// let (mut client, mut server) = testing::pair(Config::default(), Config::default());
    /// assert!(client.compression().is_none());
    /// client.send_with(Message::text("sent as it is"), Compression::Always).await?;
    /// assert_eq!(server.recv().await?, Message::text("sent as it is"));
    /// # Ok(()) }
    /// ```
    pub async fn send_with(
        &mut self,
        msg: impl Into<Message>,
        compression: Compression,
    ) -> Result<(), Error> {
        self.queue_with(&msg.into(), compression)?;
        if self.should_flush() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends one fragment of a message (`OpCode::Text`/`Binary` first, then
    /// `OpCode::Continuation`; `fin` on the last one), and flushes it.
    pub async fn send_fragment(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        fin: bool,
    ) -> Result<(), Error> {
        self.check_open()?;
        self.conn.send_fragment(opcode, payload, fin)?;
        self.flush().await
    }

    /// Sends a Ping with `payload` (at most 125 bytes) and flushes it.
    ///
    /// Returns a [`PongFuture`] that resolves with the round-trip time when
    /// the matching Pong arrives. Pongs are received by `recv`, so keep
    /// reading (in this task after the ping, or in the reader half).
    ///
    /// ```no_run
    /// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) -> Result<(), silverback::Error> {
    /// let pong = ws.ping(b"are you there").await?;
    /// tokio::select! {
    ///     rtt = pong => println!("round trip: {:?}", rtt?),
    ///     msg = ws.recv() => println!("got {:?} first", msg?),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ping(&mut self, payload: &[u8]) -> Result<PongFuture, Error> {
        let pong = self.queue_ping(payload)?;
        self.flush().await?;
        Ok(pong)
    }

    /// Sends a Pong with `payload` (at most 125 bytes) and flushes it:
    /// the answer to a Ping when [`Config::auto_pong`](crate::Config::auto_pong())
    /// is off (see [`on_ping`](Self::on_ping)), or an unsolicited Pong (a
    /// one-way heartbeat, RFC 6455 §5.5.3).
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.queue_pong(payload)?;
        self.flush().await
    }

    pub(crate) fn queue_pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        self.conn.pong(payload)?;
        Ok(())
    }

    pub(crate) fn queue_ping(&mut self, payload: &[u8]) -> Result<PongFuture, Error> {
        self.check_open()?;
        self.conn.ping(payload)?;
        Ok(self.pings.sent(payload))
    }

    /// Writes out everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush_out(cx)).await
    }

    /// Closes the connection: sends a Close frame with `code` and `reason`
    /// after what was queued before it, waits for the peer's Close (up to
    /// `close_timeout`; data messages arriving meanwhile are dropped), then
    /// closes the transport (a client first gives the server the chance to
    /// close TCP, as RFC 6455 §7.1.1 asks).
    ///
    /// Returns `Ok(())` once the closing handshake completed;
    /// [`Timeout::CloseHandshake`](crate::Timeout::CloseHandshake) if the
    /// peer did not answer in time. Calling it again, or after the peer
    /// closed, is fine: it returns how the connection ended.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.start_close(code, reason)?;
        poll_fn(|cx| self.poll_finish(cx, true)).await;
        self.close_result()
    }

    // ----- internals shared with the split halves --------------------------

    pub(crate) fn check_open(&self) -> Result<(), Error> {
        if self.conn.is_over() || self.conn.close_sent().is_some() {
            return Err(if self.conn.is_over() {
                Error::new(ErrorKind::AlreadyClosed)
            } else {
                Error::new(ErrorKind::Closing)
            });
        }
        Ok(())
    }

    pub(crate) fn queue(&mut self, msg: &Message) -> Result<(), Error> {
        self.queue_with(msg, Compression::Auto)
    }

    pub(crate) fn queue_with(
        &mut self,
        msg: &Message,
        compression: Compression,
    ) -> Result<(), Error> {
        self.check_open()?;
        if self.conn.output_len() > self.config.max_write_buffer_size {
            return Err(Error::new(ErrorKind::WriteBufferFull));
        }
        let before = self.conn.output_len();
        self.conn.send_with(msg, compression.transform())?;
        self.note_sent(msg.kind(), true, msg.len(), before);
        Ok(())
    }

    /// Flush now, or leave the output to ride with the replies to input
    /// that is already buffered?
    pub(crate) fn should_flush(&self) -> bool {
        self.conn.buffered_input() == 0 || self.conn.output_len() >= self.config.write_buffer_size
    }

    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.conn.is_over() || self.conn.close_sent().is_some() {
            return Ok(());
        }
        self.conn.close(code, reason)?;
        tracing::debug!(code = %code, reason, "sent Close");
        Ok(())
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub(crate) fn register_finish_waker(&mut self, w: &std::task::Waker) {
        self.extras_mut().finish_wakers.register(w);
    }

    /// Splits into a reader and a writer that can be used from two tasks.
    ///
    /// The writer's [`close`](crate::WsWriter::close) lets the reader do the
    /// reading while it waits for the peer's Close (so the reader still
    /// gets every message sent before it); once the reader half is
    /// dropped, the writer reads by itself.
    pub fn split(self) -> (crate::WsReader<S>, crate::WsWriter<S>) {
        crate::split::split(self)
    }
}

impl<S> Stream for WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = Result<Message, Error>;

    /// Yields messages; ends (`None`) after a clean close, after yielding
    /// the error of an abnormal one. See [how the end is
    /// reported](WebSocket#how-the-end-is-reported-recv-and-stream).
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match ready!(self.poll_recv(cx)) {
            Ok(m) => Poll::Ready(Some(Ok(m))),
            Err(e) if e.is_closed() => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}

impl<S> FusedStream for WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// True once the end of the connection was reported (by `recv` or
    /// the `Stream`): no message follows.
    fn is_terminated(&self) -> bool {
        self.end_reported()
    }
}

impl<S> Sink<Message> for WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.conn.output_len() >= self.config.write_buffer_size {
            ready!(self.poll_flush_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.queue(&item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_flush_out(cx)
    }

    /// Runs the closing handshake with 1000 (Normal).
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.start_close(CloseCode::Normal, "")?;
        ready!(self.poll_finish(cx, true));
        Poll::Ready(self.close_result())
    }
}

#[cfg(test)]
mod tests {
    /// An idle connection's memory is mostly its task's future, which
    /// holds the `WebSocket`: what only some connections use lives behind
    /// pointers (`Extras`, the config shared with the `Upgrader`, the
    /// core's fragment and stream state). Memory per idle connection is
    /// measured by `scripts/bench.sh`; this catches a field that grows it.
    #[test]
    fn an_idle_websocket_stays_small() {
        let size = std::mem::size_of::<super::WebSocket<tokio::net::TcpStream>>();
        assert!(size <= 640, "WebSocket<TcpStream> is {size} bytes");
    }
}
