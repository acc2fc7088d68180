//! Graceful server shutdown: stop accepting, send 1001 Going Away to every
//! connection, wait for the closing handshakes until a deadline, then
//! force-close what remains.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// After the deadline, how long [`Shutdown::shutdown`] waits for the forced
/// connections to close their transports (those in `recv` or `close` do at
/// once; one that nothing polls closes when it is dropped).
const FORCE_GRACE: Duration = Duration::from_millis(100);

struct Inner {
    drain: CancellationToken,
    force: CancellationToken,
    active: AtomicUsize,
    tracked: AtomicUsize,
    clean: AtomicUsize,
    unclean: AtomicUsize,
    all_done: Notify,
}

/// A shutdown handle shared by a server's accept loop and its connections.
///
/// Works the same for a raw TCP accept loop and for hyper: register each
/// connection with [`track`](Self::track), stop accepting when
/// [`draining`](Self::draining) resolves, and call
/// [`shutdown`](Self::shutdown) when the process should stop.
///
/// Connections act on the signal inside `recv()` (a connection needs a
/// reader anyway, for pings and Close frames): they send `1001 Going Away`,
/// complete the closing handshake, and `recv()` returns the closed error.
///
/// ```no_run
/// use std::time::Duration;
/// use silverback::{Shutdown, Upgrader};
/// use tokio::net::TcpListener;
///
/// # async fn run() -> std::io::Result<()> {
/// let shutdown = Shutdown::new();
/// let listener = TcpListener::bind("127.0.0.1:8080").await?;
/// let upgrader = Upgrader::new();
/// loop {
///     tokio::select! {
///         Ok((stream, _)) = listener.accept() => {
///             let (upgrader, shutdown) = (upgrader.clone(), shutdown.clone());
///             tokio::spawn(async move {
///                 let Ok(mut ws) = upgrader.upgrade(stream).await else { return };
///                 shutdown.track(&mut ws);
///                 while let Ok(msg) = ws.recv().await {
///                     if ws.send(msg).await.is_err() { break }
///                 }
///             });
///         }
///         _ = tokio::signal::ctrl_c() => break,
///     }
/// }
/// let report = shutdown.shutdown(Duration::from_secs(10)).await;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("draining", &self.is_draining())
            .field("active", &self.active())
            .finish()
    }
}

/// What [`Shutdown::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when the shutdown began.
    pub open_at_start: usize,
    /// Connections that ended with a completed closing handshake, since
    /// the shutdown began.
    pub closed_cleanly: usize,
    /// Connections that ended otherwise (no answer to our Close, peer
    /// vanished), since the shutdown began and before the deadline.
    pub closed_uncleanly: usize,
    /// Connections still open at the deadline: told to close at once (not
    /// counted as closed cleanly or uncleanly).
    pub forced: usize,
    /// How long the drain took.
    pub elapsed: Duration,
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections drained in {:.3}s: {} closed cleanly, {} uncleanly, {} forced",
            self.open_at_start,
            self.elapsed.as_secs_f64(),
            self.closed_cleanly,
            self.closed_uncleanly,
            self.forced
        )
    }
}

impl Shutdown {
    /// A handle with no connections, not shutting down.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                drain: CancellationToken::new(),
                force: CancellationToken::new(),
                active: AtomicUsize::new(0),
                tracked: AtomicUsize::new(0),
                clean: AtomicUsize::new(0),
                unclean: AtomicUsize::new(0),
                all_done: Notify::new(),
            }),
        }
    }

    /// Registers a connection: on shutdown it closes with 1001. A
    /// connection registered after the shutdown began closes at once.
    pub fn track<S>(&self, ws: &mut crate::WebSocket<S>) {
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        self.inner.tracked.fetch_add(1, Ordering::Relaxed);
        ws.set_shutdown(ShutdownGuard {
            inner: self.inner.clone(),
            drain: None,
            force: None,
            done: AtomicBool::new(false),
        });
    }

    /// Whether `other` is a handle to the same shutdown.
    pub(crate) fn same(&self, other: &Shutdown) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether the shutdown began.
    pub fn is_draining(&self) -> bool {
        self.inner.drain.is_cancelled()
    }

    /// Resolves when the shutdown begins: select on it in an accept loop.
    pub async fn draining(&self) {
        self.inner.drain.cancelled().await
    }

    /// Connections registered and not yet ended.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Connections registered since the handle was made.
    pub fn total_tracked(&self) -> usize {
        self.inner.tracked.load(Ordering::Relaxed)
    }

    /// Shuts down: every tracked connection sends 1001 Going Away and runs
    /// its closing handshake; at `deadline` the remaining ones are told to
    /// close at once. Returns once all have ended, or at the deadline (plus
    /// a short grace for the forced ones to notice).
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let start = Instant::now();
        let open_at_start = self.active();
        let clean_before = self.inner.clean.load(Ordering::Acquire);
        let unclean_before = self.inner.unclean.load(Ordering::Acquire);
        self.inner.drain.cancel();
        let mut forced = 0;
        let (clean, unclean);
        if tokio::time::timeout(deadline, self.all_done())
            .await
            .is_err()
        {
            // Counted at the deadline: the forced ones are not also
            // counted as closed uncleanly when they notice.
            forced = self.active();
            clean = self.inner.clean.load(Ordering::Acquire);
            unclean = self.inner.unclean.load(Ordering::Acquire);
            self.inner.force.cancel();
            let _ = tokio::time::timeout(FORCE_GRACE, self.all_done()).await;
        } else {
            clean = self.inner.clean.load(Ordering::Acquire);
            unclean = self.inner.unclean.load(Ordering::Acquire);
        }
        ShutdownReport {
            open_at_start,
            closed_cleanly: clean - clean_before,
            closed_uncleanly: unclean - unclean_before,
            forced,
            elapsed: start.elapsed(),
        }
    }

    /// Resolves when no tracked connection is left.
    async fn all_done(&self) {
        loop {
            let notified = self.inner.all_done.notified();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// What a tracked connection holds.
pub(crate) struct ShutdownGuard {
    inner: Arc<Inner>,
    /// Made on the first poll (and dropped while the connection is parked).
    drain: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Made once the drain began (the deadline always comes after it).
    force: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    done: AtomicBool,
}

/// The signal a connection sees.
pub(crate) enum Signal {
    None,
    Drain,
    Force,
}

impl ShutdownGuard {
    pub(crate) fn poll_signal(&mut self, cx: &mut Context<'_>) -> Signal {
        let inner = &self.inner;
        let drain = self
            .drain
            .get_or_insert_with(|| Box::pin(inner.drain.clone().cancelled_owned()));
        if drain.as_mut().poll(cx).is_pending() {
            return Signal::None;
        }
        let force = self
            .force
            .get_or_insert_with(|| Box::pin(inner.force.clone().cancelled_owned()));
        if force.as_mut().poll(cx).is_ready() {
            Signal::Force
        } else {
            Signal::Drain
        }
    }

    /// Whether the shutdown began.
    pub(crate) fn is_draining(&self) -> bool {
        self.inner.drain.is_cancelled()
    }

    /// The connection is parked (no task polls it): its wake-up futures
    /// are freed, made again on the next poll.
    pub(crate) fn park(&mut self) {
        self.drain = None;
        self.force = None;
    }

    /// The [`Shutdown`] this connection belongs to.
    pub(crate) fn handle(&self) -> Shutdown {
        Shutdown {
            inner: self.inner.clone(),
        }
    }

    /// Records how the connection ended (once).
    pub(crate) fn record(&self, clean: bool) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let counter = if clean {
            &self.inner.clean
        } else {
            &self.inner.unclean
        };
        counter.fetch_add(1, Ordering::AcqRel);
        if self.inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.all_done.notify_waiters();
        }
    }
}

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        // Dropped without ending: the transport closes with the drop.
        self.record(false);
    }
}

/// Traffic counters and state of one connection: what
/// [`WebSocket::stats`](crate::WebSocket::stats) returns, to log or decide
/// from a handler.
///
/// ```
/// use silverback::{testing, CloseCode, Config, Message};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), silverback::Error> {
/// let (mut client, mut server) = testing::pair(Config::default(), Config::default());
/// let server = tokio::spawn(async move {
///     server.recv().await?; // "hello"
///     server.recv().await // answers the Ping, then the Close
/// });
/// client.send(Message::text("hello")).await?;
/// let pong = client.ping(b"rtt").await?;
/// client.close(CloseCode::Normal, "").await?; // reads the Pong, then the Close
/// pong.await?;
/// let stats = client.stats();
/// assert_eq!((stats.messages_out, stats.payload_out), (1, 5));
/// assert!(stats.last_rtt.is_some()); // the Pong came back
/// assert_eq!(stats.buffered, 0); // all written
/// assert_eq!(stats.dropped, 0);
/// assert!(stats.compression_ratio().is_none()); // not negotiated
/// assert!(server.await.unwrap().unwrap_err().is_closed());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes read from the transport (after the opening handshake).
    pub bytes_in: u64,
    /// Bytes written to the transport (after the opening handshake).
    pub bytes_out: u64,
    /// Data messages received.
    pub messages_in: u64,
    /// Data messages sent.
    pub messages_out: u64,
    /// Payload bytes of the data messages received, decompressed.
    pub payload_in: u64,
    /// Payload bytes of the data messages sent, before compression.
    pub payload_out: u64,
    /// The round-trip time of the last answered Ping (keepalive pings
    /// measure it for free).
    pub last_rtt: Option<std::time::Duration>,
    /// Bytes queued and not yet written
    /// ([`WebSocket::buffered_amount`](crate::WebSocket::buffered_amount)).
    pub buffered: usize,
    /// Messages the [`WsSender`](crate::WsSender) queue dropped by its
    /// [`Overflow`](crate::Overflow) policy (a pub/sub hub's drops of this
    /// connection's messages).
    pub dropped: u64,
    /// How long the connection has been open.
    pub age: std::time::Duration,
    /// permessage-deflate was negotiated.
    pub(crate) compressed: bool,
}

/// What a connection counts itself (the rest of [`Stats`] is computed
/// when asked).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) payload_in: u64,
    pub(crate) payload_out: u64,
}

impl Stats {
    /// Payload bytes per byte on the wire, both ways, when
    /// permessage-deflate was negotiated (`None` otherwise, or before any
    /// data): above 1 when compression saves. The wire bytes include frame
    /// headers and control frames.
    pub fn compression_ratio(&self) -> Option<f64> {
        let wire = self.bytes_in + self.bytes_out;
        (self.compressed && wire > 0)
            .then(|| (self.payload_in + self.payload_out) as f64 / wire as f64)
    }
}
