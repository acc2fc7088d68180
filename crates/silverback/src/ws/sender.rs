//! A cloneable sender: any number of tasks send to one connection through
//! a bounded queue, and the connection's own task writes what they queued,
//! coalesced (one write per wake-up where the transport takes it).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use silverback_proto::{CloseCode, Message, PreparedMessage};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use super::WebSocket;
use crate::error::{Error, ErrorKind};

/// Bounds of a connection's send queue (see [`WsSender`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueLimits {
    /// Most messages queued (default 1024).
    pub max_messages: usize,
    /// Most payload bytes queued (default 1 MiB).
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_messages: 1024,
            max_bytes: 1 << 20,
        }
    }
}

impl QueueLimits {
    /// Limits of `max_messages` messages and `max_bytes` payload bytes.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            max_messages: max_messages.max(1),
            max_bytes,
        }
    }
}

/// What to do with a message that finds the queue full; see
/// [`WsSender::offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the oldest queued messages until the new one fits.
    DropOldest,
    /// Drop the new message.
    DropNew,
    /// Drop everything queued and close the connection with this code and
    /// reason (e.g. 1008 Policy Violation or 1013 Try Again Later).
    Close(CloseCode, &'static str),
}

/// What [`WsSender::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offered {
    /// Queued.
    Queued,
    /// Queued, after dropping this many older messages.
    DroppedOldest(usize),
    /// The queue was full: the message was dropped.
    DroppedNew,
    /// The queue was full: everything queued was dropped (this many
    /// messages, the new one included) and the connection told to close.
    Closing(usize),
    /// The connection has ended or is closing: the message was dropped.
    Closed,
}

/// Why [`WsSender::try_send`] did not queue a message; the message is
/// handed back.
#[derive(Debug)]
pub enum TrySendError<T> {
    /// The queue is at its limits.
    Full(T),
    /// The connection has ended or is closing.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The message that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(t) | Self::Closed(t) => t,
        }
    }

    /// Whether the queue was full (rather than the connection gone).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "send queue full",
            Self::Closed(_) => "connection closed",
        })
    }
}

impl<T: fmt::Debug> std::error::Error for TrySendError<T> {}

/// An item of the queue.
enum Outgoing {
    Message(Message),
    Prepared(PreparedMessage),
    Close(CloseCode, String),
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Outgoing::Message(m) => m.len(),
            Outgoing::Prepared(p) => p.len(),
            Outgoing::Close(..) => 0,
        }
    }
}

struct State {
    items: VecDeque<Outgoing>,
    bytes: usize,
    limits: QueueLimits,
    /// The connection ended or is closing: nothing more is queued.
    closed: bool,
    /// Messages dropped by an overflow policy.
    dropped: u64,
    /// The task that writes the queue out (the one receiving).
    driver: Option<Waker>,
}

pub(crate) struct SendQueue {
    state: Mutex<State>,
    /// Senders waiting for room.
    room: Notify,
    /// Bytes in the connection's output not yet written.
    unwritten: AtomicUsize,
    /// See [`WsSender::connection_id`].
    id: u64,
}

/// The next [`WsSender::connection_id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl SendQueue {
    fn new(limits: QueueLimits) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                limits,
                closed: false,
                dropped: 0,
                driver: None,
            }),
            room: Notify::new(),
            unwritten: AtomicUsize::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data, consistent at every step: a panic elsewhere while it
        // was held leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` if it fits, waking the connection's task.
    fn push(&self, item: Outgoing) -> Result<(), TrySendError<Outgoing>> {
        let mut st = self.lock();
        if st.closed {
            return Err(TrySendError::Closed(item));
        }
        if !fits(&st, item.len()) {
            return Err(TrySendError::Full(item));
        }
        Self::enqueue(&mut st, item);
        Ok(())
    }

    fn enqueue(st: &mut State, item: Outgoing) {
        st.bytes += item.len();
        st.items.push_back(item);
        if st.items.len() == 1 {
            if let Some(w) = st.driver.take() {
                w.wake();
            }
        }
    }

    fn offer(&self, item: Outgoing, overflow: &Overflow) -> Offered {
        let mut st = self.lock();
        if st.closed {
            return Offered::Closed;
        }
        if fits(&st, item.len()) {
            Self::enqueue(&mut st, item);
            return Offered::Queued;
        }
        match overflow {
            Overflow::DropNew => {
                st.dropped += 1;
                Offered::DroppedNew
            }
            Overflow::DropOldest => {
                let mut dropped = 0;
                while !fits(&st, item.len()) {
                    let Some(old) = st.items.pop_front() else {
                        break;
                    };
                    st.bytes -= old.len();
                    dropped += 1;
                }
                st.dropped += dropped as u64;
                if !fits(&st, item.len()) {
                    // Larger than the whole queue may hold.
                    st.dropped += 1;
                    return Offered::DroppedNew;
                }
                Self::enqueue(&mut st, item);
                Offered::DroppedOldest(dropped)
            }
            Overflow::Close(code, reason) => {
                let dropped = st.items.len() + 1;
                st.dropped += dropped as u64;
                st.items.clear();
                st.bytes = 0;
                st.closed = true;
                Self::enqueue(&mut st, Outgoing::Close(*code, (*reason).to_owned()));
                drop(st);
                self.room.notify_waiters();
                Offered::Closing(dropped)
            }
        }
    }

    /// The connection ended: nothing more is queued; waiting senders learn.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.items.clear();
        st.bytes = 0;
        st.driver = None;
        drop(st);
        self.unwritten.store(0, Ordering::Relaxed);
        self.room.notify_waiters();
    }

    pub(crate) fn set_unwritten(&self, n: usize) {
        self.unwritten.store(n, Ordering::Relaxed);
    }

    fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Messages dropped by an overflow policy so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

fn fits(st: &State, len: usize) -> bool {
    // An empty queue takes any one message: a message larger than the
    // byte limit is not refused forever.
    st.items.is_empty()
        || (st.items.len() < st.limits.max_messages && st.bytes + len <= st.limits.max_bytes)
}

/// A cloneable handle to send on one connection from any number of tasks
/// (an HTTP handler, a pub/sub hub, a timer), while the connection's own
/// task keeps receiving.
///
/// Messages go through a bounded queue ([`QueueLimits`], in messages and
/// bytes). The task that calls [`WebSocket::recv`] (or
/// [`WsReader::recv`](crate::WsReader::recv)) writes them out — a
/// connection must be read anyway, for pings and the Close — so messages
/// queued by many tasks meanwhile leave together, in as few writes as the
/// transport takes. When the peer does not read, the connection's output
/// fills up first, then this queue: [`send`](Self::send) waits for room,
/// [`try_send`](Self::try_send) says [`TrySendError::Full`], and
/// [`offer`](Self::offer) applies an [`Overflow`] policy (drop the oldest,
/// drop the new, or close the connection).
///
/// ```no_run
/// use silverback::{Message, Upgrader};
/// # async fn f(stream: tokio::net::TcpStream) -> Result<(), silverback::Error> {
/// let mut ws = Upgrader::new().upgrade(stream).await?;
/// let tx = ws.sender();
/// tokio::spawn(async move {
///     let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
///     loop {
///         tick.tick().await;
///         if tx.send(Message::text("tick")).await.is_err() {
///             break; // the connection ended
///         }
///     }
/// });
/// while let Ok(msg) = ws.recv().await {
///     println!("got {msg:?}"); // the ticks are written by this loop
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WsSender {
    queue: Arc<SendQueue>,
}

impl fmt::Debug for WsSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsSender")
            .field("buffered_amount", &self.buffered_amount())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl WsSender {
    /// Queues `msg`, waiting for room while the queue is full. Fails with
    /// [`ErrorKind::AlreadyClosed`] once the connection has ended or is
    /// closing.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<(), Error> {
        self.send_item(Outgoing::Message(msg.into())).await
    }

    /// Queues a [`PreparedMessage`] (encoded once for all its peers),
    /// waiting for room while the queue is full.
    pub async fn send_prepared(&self, msg: &PreparedMessage) -> Result<(), Error> {
        self.send_item(Outgoing::Prepared(msg.clone())).await
    }

    async fn send_item(&self, mut item: Outgoing) -> Result<(), Error> {
        loop {
            let room = self.queue.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.queue.push(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => return Err(Error::new(ErrorKind::AlreadyClosed)),
                Err(TrySendError::Full(back)) => item = back,
            }
            room.await;
        }
    }

    /// Queues `msg` if there is room, without waiting.
    pub fn try_send(&self, msg: impl Into<Message>) -> Result<(), TrySendError<Message>> {
        self.queue
            .push(Outgoing::Message(msg.into()))
            .map_err(|e| match e {
                TrySendError::Full(Outgoing::Message(m)) => TrySendError::Full(m),
                TrySendError::Closed(Outgoing::Message(m)) => TrySendError::Closed(m),
                _ => unreachable!("a message comes back as it went"),
            })
    }

    /// Queues a [`PreparedMessage`] if there is room, without waiting.
    pub fn try_send_prepared(
        &self,
        msg: &PreparedMessage,
    ) -> Result<(), TrySendError<PreparedMessage>> {
        self.queue
            .push(Outgoing::Prepared(msg.clone()))
            .map_err(|e| match e {
                TrySendError::Full(_) => TrySendError::Full(msg.clone()),
                TrySendError::Closed(_) => TrySendError::Closed(msg.clone()),
            })
    }

    /// Queues a [`PreparedMessage`]; when the queue is full, `overflow`
    /// decides. Never waits: what a publisher to many connections calls.
    ///
    /// ```
    /// use silverback::{CloseCode, Message, Overflow, PreparedMessage, QueueLimits};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (_client, mut server) = silverback::testing::pair(Default::default(), Default::default());
    /// let tx = server.sender_with_limits(QueueLimits::new(2, 1 << 20));
    /// let m = PreparedMessage::new(Message::text("price"));
    /// for _ in 0..2 {
    ///     tx.offer(&m, &Overflow::DropOldest); // queued: nobody wrote them out yet
    /// }
    /// assert_eq!(tx.offer(&m, &Overflow::DropOldest), silverback::Offered::DroppedOldest(1));
    /// assert_eq!(tx.offer(&m, &Overflow::DropNew), silverback::Offered::DroppedNew);
    /// let slow = Overflow::Close(CloseCode::TryAgainLater, "too slow");
    /// assert_eq!(tx.offer(&m, &slow), silverback::Offered::Closing(3));
    /// assert!(tx.is_closed());
    /// # }
    /// ```
    pub fn offer(&self, msg: &PreparedMessage, overflow: &Overflow) -> Offered {
        self.queue.offer(Outgoing::Prepared(msg.clone()), overflow)
    }

    /// Asks the connection to close with `code` and `reason` after what is
    /// queued; nothing can be queued after it.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), TrySendError<()>> {
        let mut st = self.queue.lock();
        if st.closed {
            return Err(TrySendError::Closed(()));
        }
        st.closed = true;
        SendQueue::enqueue(&mut st, Outgoing::Close(code, reason.to_owned()));
        drop(st);
        self.queue.room.notify_waiters();
        Ok(())
    }

    /// Bytes queued and not yet written to the transport: this queue's
    /// payloads plus the connection's unwritten output (the browser's
    /// `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.queue.queued_bytes() + self.queue.unwritten.load(Ordering::Relaxed)
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// Whether the connection has ended or is closing (nothing more can
    /// be queued).
    pub fn is_closed(&self) -> bool {
        self.queue.lock().closed
    }

    /// Whether both senders send on the same connection.
    pub fn same_connection(&self, other: &WsSender) -> bool {
        Arc::ptr_eq(&self.queue, &other.queue)
    }

    /// An identifier of the connection's queue, the same for every handle
    /// on it and never reused in the process (a key for maps of
    /// connections, e.g. a pub/sub hub's subscribers).
    pub fn connection_id(&self) -> u64 {
        self.queue.id
    }
}

/// Most output collected from the queue before it is written.
const MIN_BATCH: usize = 64 << 10;

impl<S> WebSocket<S> {
    /// A cloneable sender for this connection (see [`WsSender`]); every
    /// call gives a handle to the same queue, created with default
    /// [`QueueLimits`] on the first call.
    pub fn sender(&mut self) -> WsSender {
        self.sender_with_limits_opt(None)
    }

    /// Like [`sender`](Self::sender), setting the queue's limits (for
    /// every handle, from now on).
    pub fn sender_with_limits(&mut self, limits: QueueLimits) -> WsSender {
        self.sender_with_limits_opt(Some(limits))
    }

    fn sender_with_limits_opt(&mut self, limits: Option<QueueLimits>) -> WsSender {
        let queue = self
            .send_queue
            .get_or_insert_with(|| Arc::new(SendQueue::new(limits.unwrap_or_default())))
            .clone();
        if let Some(limits) = limits {
            queue.lock().limits = limits;
        }
        if self.conn.is_over() || self.conn.close_sent().is_some() {
            queue.close();
        }
        WsSender { queue }
    }

    /// Bytes queued and not yet written: the connection's output plus its
    /// [`WsSender`] queue's payloads (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.conn.output_len() + self.send_queue.as_ref().map_or(0, |q| q.queued_bytes())
    }
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Sends a [`PreparedMessage`] (encoded once for all its peers): like
    /// [`send`](Self::send).
    pub async fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        self.check_open()?;
        if self.conn.output_len() > self.config.max_write_buffer_size {
            return Err(Error::new(ErrorKind::WriteBufferFull));
        }
        let before = self.conn.output_len();
        self.conn.send_prepared(msg)?;
        let m = msg.message();
        self.note_sent(m.kind(), true, m.len(), before);
        if self.should_flush() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Moves what senders queued into the connection's output, up to a
    /// batch; `driver`: the task to wake when more is queued. Returns
    /// whether items are left (the output is full for now).
    pub(super) fn pull_queued(&mut self, driver: Option<&Waker>) -> bool {
        let Some(queue) = self.send_queue.clone() else {
            return false;
        };
        let mut st = queue.lock();
        if let Some(w) = driver {
            if !st.driver.as_ref().is_some_and(|d| d.will_wake(w)) {
                st.driver = Some(w.clone());
            }
        }
        let batch = self.config.write_buffer_size.max(MIN_BATCH);
        let mut pulled = false;
        while self.conn.output_len() < batch {
            let Some(item) = st.items.pop_front() else {
                break;
            };
            st.bytes -= item.len();
            pulled = true;
            let before = self.conn.output_len();
            let (sent, kind, len) = match item {
                Outgoing::Message(m) => (self.conn.send(&m), m.kind(), m.len()),
                Outgoing::Prepared(p) => {
                    let m = p.message();
                    (self.conn.send_prepared(&p), m.kind(), m.len())
                }
                Outgoing::Close(code, reason) => {
                    st.closed = true;
                    if let Err(e) = self.start_close(code, &reason) {
                        tracing::debug!(error = %e, "queued Close not sent");
                    }
                    continue;
                }
            };
            match sent {
                Ok(()) => self.note_sent(kind, true, len, before),
                Err(_) if self.conn.close_sent().is_some() => {
                    // Closing: nothing more leaves.
                    st.closed = true;
                    st.items.clear();
                    st.bytes = 0;
                }
                Err(e) => tracing::debug!(error = %e, "queued message not sent"),
            }
        }
        let left = !st.items.is_empty();
        drop(st);
        if pulled {
            queue.room.notify_waiters();
        }
        left
    }
}
