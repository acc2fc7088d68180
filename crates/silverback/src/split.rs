//! The reader and writer halves of a split [`WebSocket`].

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use futures_core::stream::FusedStream;
use futures_core::Stream;
use futures_sink::Sink;
use silverback_proto::{CloseCode, Message, OpCode};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::request::{request_accessors, UpgradeInfo};
use crate::ws::Received;
use crate::{Compression, End, Error, PongFuture, WebSocket};

/// Tasks waiting on a connection shared by split halves (at most a few:
/// the reader, the writer, and whoever they hand the news to).
#[derive(Default)]
pub(crate) struct WakerList(Vec<Waker>);

impl WakerList {
    /// Adds `w` unless a waker that wakes the same task is there.
    pub(crate) fn register(&mut self, w: &Waker) {
        if !self.0.iter().any(|x| x.will_wake(w)) {
            self.0.push(w.clone());
        }
    }

    pub(crate) fn wake_all(&mut self) {
        for w in self.0.drain(..) {
            w.wake();
        }
    }

    /// Wakes every task but the current one (`current`).
    pub(crate) fn wake_others(&mut self, current: &Waker) {
        for w in self.0.drain(..) {
            if !w.will_wake(current) {
                w.wake();
            }
        }
    }
}

struct Shared<S> {
    ws: Mutex<WebSocket<S>>,
    reader_alive: AtomicBool,
    /// The upgrade request info, moved out of the `WebSocket` while split
    /// (read by both halves without the lock), put back by `reunite`.
    upgrade: Option<Box<UpgradeInfo>>,
}

impl<S> Shared<S> {
    /// The lock is only held inside a poll, never across an await, so it is
    /// never contended for long; a panic while holding it leaves the
    /// connection usable (its state is updated before any I/O result is
    /// acted on).
    fn lock(&self) -> MutexGuard<'_, WebSocket<S>> {
        self.ws.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The receiving half of a split [`WebSocket`]; see [`WebSocket::split`].
pub struct WsReader<S> {
    shared: Arc<Shared<S>>,
}

/// The sending half of a split [`WebSocket`]; see [`WebSocket::split`].
///
/// Pings from the peer are answered by the reader half, so keep calling
/// [`WsReader::recv`].
pub struct WsWriter<S> {
    shared: Arc<Shared<S>>,
}

pub(crate) fn split<S>(mut ws: WebSocket<S>) -> (WsReader<S>, WsWriter<S>) {
    // The reader inflates outside the lock the writer needs.
    ws.set_defer_decoding(true);
    let upgrade = ws.take_upgrade_info();
    let shared = Arc::new(Shared {
        ws: Mutex::new(ws),
        reader_alive: AtomicBool::new(true),
        upgrade,
    });
    (
        WsReader {
            shared: shared.clone(),
        },
        WsWriter { shared },
    )
}

impl<S> fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsReader").finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsWriter").finish_non_exhaustive()
    }
}

/// What both halves can tell without locking (the upgrade request) or
/// with a short lock (how the connection ended).
macro_rules! half_accessors {
    ($half:ident) => {
        impl<S> $half<S> {
            fn upgrade_info(&self) -> Option<&UpgradeInfo> {
                self.shared.upgrade.as_deref()
            }

            request_accessors!();

            /// Whether the connection has ended; see [`WebSocket::is_closed`].
            pub fn is_closed(&self) -> bool {
                self.shared.lock().is_closed()
            }

            /// How the connection ended, once it has; see [`WebSocket::end`].
            pub fn end(&self) -> Option<End> {
                self.shared.lock().end()
            }
        }
    };
}

half_accessors!(WsReader);
half_accessors!(WsWriter);

impl<S> Drop for WsReader<S> {
    fn drop(&mut self) {
        self.shared.reader_alive.store(false, Ordering::Release);
        // A writer waiting for us to read the peer's Close must now read
        // by itself.
        let mut ws = self.shared.lock();
        ws.wake_finish_waiters();
    }
}

impl<S> WsReader<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Receives the next data message; see [`WebSocket::recv`] (every end
    /// is an `Err`), and the [`Stream`] impl (a clean close ends it with
    /// `None`).
    ///
    /// A compressed message is inflated without holding the connection:
    /// the writer half goes on sending meanwhile.
    pub async fn recv(&mut self) -> Result<Message, Error> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
        loop {
            let received = {
                let mut ws = self.shared.lock();
                let res = ws.poll_recv_deferred(cx);
                if res.is_pending() {
                    // If the writer ends the connection (close timeout), wake us.
                    ws.register_finish_waker(cx.waker());
                }
                ready!(res)?
            };
            let encoded = match received {
                Received::Message(m) => return Poll::Ready(Ok(m)),
                Received::Encoded(e) => e,
            };
            // The decoder is the reader's alone: taken out under the lock,
            // used without it.
            let decoder = self.shared.lock().conn_mut().take_decoder();
            let decoded = match decoder {
                Some(mut decoder) => {
                    let decoded = encoded.decode(&mut decoder);
                    let mut ws = self.shared.lock();
                    ws.conn_mut().put_decoder(decoder);
                    ws.finish_decoding(decoded)
                }
                None => self.shared.lock().decode_in_place(encoded),
            };
            if let Some(m) = decoded {
                return Poll::Ready(Ok(m));
            }
        }
    }

    /// Runs `f` on the connection, locked.
    pub(crate) fn with_ws<R>(&self, f: impl FnOnce(&mut WebSocket<S>) -> R) -> R {
        f(&mut self.shared.lock())
    }

    /// Sets the ping hook; see [`WebSocket::on_ping`]. It runs in this
    /// half's task, while it receives.
    pub fn on_ping<F>(&mut self, hook: F)
    where
        F: FnMut(&[u8]) + Send + 'static,
    {
        self.shared.lock().on_ping(hook);
    }

    /// Sets the pong hook; see [`WebSocket::on_pong`]. It runs in this
    /// half's task, while it receives (or in the writer's, when it closes
    /// alone).
    pub fn on_pong<F>(&mut self, hook: F)
    where
        F: FnMut(&[u8]) + Send + 'static,
    {
        self.shared.lock().on_pong(hook);
    }

    /// Whether `self` and `writer` came from the same [`WebSocket`].
    pub fn is_pair_of(&self, writer: &WsWriter<S>) -> bool {
        Arc::ptr_eq(&self.shared, &writer.shared)
    }

    /// Puts the halves back together.
    ///
    /// # Panics
    /// If they do not come from the same `WebSocket`.
    pub fn reunite(self, writer: WsWriter<S>) -> WebSocket<S> {
        assert!(
            self.is_pair_of(&writer),
            "reunite: halves of different WebSockets"
        );
        let shared = self.shared.clone();
        drop(self);
        drop(writer);
        let mut ws = match Arc::try_unwrap(shared) {
            Ok(s) => {
                let mut ws = s.ws.into_inner().unwrap_or_else(|e| e.into_inner());
                ws.restore_upgrade_info(s.upgrade);
                ws
            }
            Err(_) => unreachable!("both halves were dropped"),
        };
        ws.set_defer_decoding(false);
        ws
    }
}

impl<S> WsWriter<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Sends a message and flushes it.
    ///
    /// Unlike [`WebSocket::send`], it does not leave the message for the
    /// next flush when received input is buffered: that flush is the reader
    /// half's, and the reader may be busy elsewhere for any time.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        self.shared.lock().queue(&msg.into())?;
        self.flush().await
    }

    /// Runs `f` on the connection, locked.
    pub(crate) fn with_ws<R>(&self, f: impl FnOnce(&mut WebSocket<S>) -> R) -> R {
        f(&mut self.shared.lock())
    }

    /// Sends a message, choosing whether it is compressed, and flushes it;
    /// see [`WebSocket::send_with`].
    pub async fn send_with(
        &mut self,
        msg: impl Into<Message>,
        compression: Compression,
    ) -> Result<(), Error> {
        self.shared.lock().queue_with(&msg.into(), compression)?;
        self.flush().await
    }

    /// Sends one fragment of a message; see [`WebSocket::send_fragment`].
    pub async fn send_fragment(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        fin: bool,
    ) -> Result<(), Error> {
        {
            let mut ws = self.shared.lock();
            ws.check_open()?;
            ws.conn_mut().send_fragment(opcode, payload, fin)?;
        }
        self.flush().await
    }

    /// Sends a Ping; see [`WebSocket::ping`]. The reader half receives
    /// the Pong and resolves the returned future.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<PongFuture, Error> {
        let pong = self.shared.lock().queue_ping(payload)?;
        self.flush().await?;
        Ok(pong)
    }

    /// Sends a Pong and flushes it; see [`WebSocket::pong`]. With
    /// [`Config::auto_pong`](crate::Config::auto_pong()) off, this is how
    /// the writer task answers the pings the reader's
    /// [ping hook](WsReader::on_ping) reports.
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.shared.lock().queue_pong(payload)?;
        self.flush().await
    }

    /// Writes out everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.shared.lock().poll_flush_out(cx)).await
    }

    /// Sends a [`PreparedMessage`](crate::PreparedMessage) (encoded once
    /// for all its peers) and flushes it.
    pub async fn send_prepared(&mut self, msg: &crate::PreparedMessage) -> Result<(), Error> {
        {
            let mut ws = self.shared.lock();
            ws.check_open()?;
            ws.conn_mut().send_prepared(msg)?;
        }
        self.flush().await
    }

    /// A cloneable sender for this connection; see [`WebSocket::sender`].
    /// What it queues is written by the reader half's `recv`.
    pub fn sender(&self) -> crate::WsSender {
        self.shared.lock().sender()
    }

    /// Bytes queued and not yet written; see [`WebSocket::buffered_amount`].
    pub fn buffered_amount(&self) -> usize {
        self.shared.lock().buffered_amount()
    }

    /// Closes the connection; see [`WebSocket::close`]. While the reader
    /// half is alive, it does the reading (and still receives the messages
    /// the peer sent before its Close); this call completes when the reader
    /// has seen the peer's Close, or after `close_timeout`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.shared.lock().start_close(code, reason)?;
        poll_fn(|cx| self.poll_finish(cx)).await;
        self.shared.lock().close_result()
    }

    fn poll_finish(&self, cx: &mut Context<'_>) -> Poll<()> {
        let read = !self.shared.reader_alive.load(Ordering::Acquire);
        let mut ws = self.shared.lock();
        let res = ws.poll_finish(cx, read);
        if res.is_pending() {
            ws.register_finish_waker(cx.waker());
        }
        res
    }
}

impl<S> Stream for WsReader<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = Result<Message, Error>;

    /// As [`WebSocket`]'s: `None` after a clean close, after the error of
    /// another end; see [how the end is
    /// reported](WebSocket#how-the-end-is-reported-recv-and-stream).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match ready!(self.poll_recv(cx)) {
            Ok(m) => Poll::Ready(Some(Ok(m))),
            Err(e) if e.is_closed() => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}

impl<S> FusedStream for WsReader<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// True once the end of the connection was reported.
    fn is_terminated(&self) -> bool {
        self.shared.lock().end_reported()
    }
}

impl<S> Sink<Message> for WsWriter<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut ws = self.shared.lock();
        Pin::new(&mut *ws).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.shared.lock().queue(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared.lock().poll_flush_out(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared.lock().start_close(CloseCode::Normal, "")?;
        ready!(self.poll_finish(cx));
        Poll::Ready(self.shared.lock().close_result())
    }
}
