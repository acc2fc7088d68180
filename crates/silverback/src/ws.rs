//! `WebSocket<S>`: one connection over any `AsyncRead + AsyncWrite`.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use silverback_proto::{
    CloseCode, CloseFrame, Connection, Event, Message, OpCode, ProtocolError, Role,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::error::{Error, ErrorKind, Timeout};
use crate::shutdown::{PongFuture, ShutdownGuard, Signal, Stats};
use crate::Config;
use silverback_proto::extension::deflate::{DeflateParams, PerMessageDeflate};

/// Most pings awaiting their Pong; older ones are dropped (their
/// [`PongFuture`] fails).
const MAX_PENDING_PINGS: usize = 64;

thread_local! {
    /// Where reads land when a connection has no partial frame buffered.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; MAX_READ_AHEAD].into_boxed_slice());
}

/// Most pieces of queued output given to one vectored write.
const MAX_WRITE_SLICES: usize = 32;

/// Most bytes reserved for one read beyond `read_buffer_size`.
const MAX_READ_AHEAD: usize = 256 * 1024;

/// How the connection ended, kept so it can be reported.
#[derive(Debug)]
enum End {
    Clean {
        frame: Option<CloseFrame>,
        by_us: bool,
    },
    Abnormal(Option<io::Error>),
    Protocol(ProtocolError),
    /// Closed after a timeout (or forced by a shutdown deadline).
    Timeout(Timeout),
}

impl End {
    fn is_clean(&self) -> bool {
        matches!(self, End::Clean { .. })
    }

    /// The end as an error; an I/O cause is handed out once.
    fn take_error(&mut self) -> Error {
        match self {
            End::Clean { frame, by_us } => Error::new(ErrorKind::Closed {
                frame: frame.clone(),
                by_us: *by_us,
            }),
            End::Abnormal(e) => Error::abnormal(e.take()),
            End::Protocol(p) => Error::new(ErrorKind::Protocol(p.clone())),
            End::Timeout(t) => Error::new(ErrorKind::Timeout(*t)),
        }
    }
}

/// Keepalive state: the timer and whether a ping awaits an answer.
struct Keepalive {
    timer: Pin<Box<Sleep>>,
    /// A keepalive ping is out and nothing was received since.
    waiting: bool,
    counter: u32,
}

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
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    config: Config,
    protocol: Option<String>,
    /// We sent our Close before receiving the peer's.
    close_initiated: bool,
    /// The transport is done (shut down or failed); no more I/O.
    finished: bool,
    /// How the connection ended, once known.
    end: Option<End>,
    /// `end` was reported by `recv`; later calls get `AlreadyClosed`.
    reported: bool,
    close_timer: Option<Pin<Box<Sleep>>>,
    /// Tasks to wake when the connection finishes (split halves).
    finish_wakers: Vec<Waker>,
    /// Tasks that found the transport not writable (split halves). The
    /// transport keeps only the waker of the latest `poll_write`, so when
    /// the reader and the writer both wait to write, the one it wakes
    /// passes the news on to the others.
    write_wakers: Vec<Waker>,
    /// When something was last received (keepalive and idle timeout).
    last_rx: Instant,
    keepalive: Option<Keepalive>,
    idle_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    write_timed_out: bool,
    shutdown: Option<ShutdownGuard>,
    /// A shutdown asked us to close: finish the handshake, drop data.
    draining: bool,
    pings: VecDeque<(Bytes, Instant, tokio::sync::oneshot::Sender<Duration>)>,
    stats: Stats,
    deflate: Option<DeflateParams>,
    opened: Instant,
    span: tracing::Span,
    /// Server side: the upgrade request's target, identity, headers.
    pub(crate) upgrade: Option<Box<crate::request::UpgradeInfo>>,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.conn)
            .field("protocol", &self.protocol)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<S> WebSocket<S> {
    pub(crate) fn set_shutdown(&mut self, guard: ShutdownGuard) {
        self.shutdown = Some(guard);
    }

    pub(crate) fn wake_finish_waiters(&mut self) {
        for w in self.finish_wakers.drain(..) {
            w.wake();
        }
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
        let mut conn = Connection::with_config(role, config.proto());
        conn.receive_data(buffered);
        Self {
            io,
            conn,
            config,
            protocol: None,
            close_initiated: false,
            finished: false,
            end: None,
            reported: false,
            close_timer: None,
            finish_wakers: Vec::new(),
            write_wakers: Vec::new(),
            last_rx: Instant::now(),
            keepalive: None,
            idle_timer: None,
            write_timer: None,
            write_timed_out: false,
            shutdown: None,
            draining: false,
            pings: VecDeque::new(),
            stats: Stats::default(),
            deflate: None,
            opened: Instant::now(),
            span: tracing::Span::none(),
            upgrade: None,
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
        self.span = span;
    }

    /// Traffic counters: bytes and messages in and out.
    pub fn stats(&self) -> Stats {
        self.stats
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

    pub(crate) fn set_protocol(&mut self, p: Option<String>) {
        self.protocol = p;
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.conn.role()
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

    /// Whether the connection has ended (the transport is closed).
    pub fn is_closed(&self) -> bool {
        self.finished
    }

    /// Receives the next data message.
    ///
    /// Before waiting for input, queued output is flushed, so replies to a
    /// batch of messages leave in one write. Returns an error when the
    /// connection ends: [`Error::is_closed`] for a clean close (the peer's
    /// Close was already answered and the transport closed), otherwise the
    /// cause (peer vanished: 1006, protocol error: the code we sent, ...).
    /// Once the end was reported, further calls fail with
    /// [`ErrorKind::AlreadyClosed`].
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

    /// Like [`send`](Self::send), choosing compression for this message:
    /// `true` compresses it even below the size threshold (or when it does
    /// not shrink), `false` sends it as it is. Without negotiated
    /// compression, the same as `send`.
    pub async fn send_compressed(
        &mut self,
        msg: impl Into<Message>,
        compress: bool,
    ) -> Result<(), Error> {
        self.queue_with(&msg.into(), Some(compress))?;
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

    pub(crate) fn queue_ping(&mut self, payload: &[u8]) -> Result<PongFuture, Error> {
        self.check_open()?;
        self.conn.ping(payload)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.pings.len() >= MAX_PENDING_PINGS {
            self.pings.pop_front();
        }
        self.pings
            .push_back((Bytes::copy_from_slice(payload), Instant::now(), tx));
        Ok(PongFuture { rx })
    }

    /// A Pong arrived: it answers the matching ping and every earlier one.
    fn pong_received(&mut self, payload: &[u8]) {
        if let Some(pos) = self.pings.iter().position(|(p, ..)| p == payload) {
            for (_, sent, tx) in self.pings.drain(..=pos) {
                let _ = tx.send(sent.elapsed());
            }
        }
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
    /// [`Timeout::CloseHandshake`] if the peer did not answer in time.
    /// Calling it again, or after the peer closed, is fine: it returns how
    /// the connection ended.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.start_close(code, reason)?;
        poll_fn(|cx| self.poll_finish(cx, true)).await;
        self.close_result()
    }

    // ----- internals shared with the split halves --------------------------

    pub(crate) fn check_open(&self) -> Result<(), Error> {
        if self.finished || self.conn.close_sent().is_some() {
            return Err(if self.finished {
                Error::new(ErrorKind::AlreadyClosed)
            } else {
                Error::new(ErrorKind::Closing)
            });
        }
        Ok(())
    }

    pub(crate) fn queue(&mut self, msg: &Message) -> Result<(), Error> {
        self.queue_with(msg, None)
    }

    pub(crate) fn queue_with(
        &mut self,
        msg: &Message,
        compress: Option<bool>,
    ) -> Result<(), Error> {
        self.check_open()?;
        if self.conn.output_len() > self.config.max_write_buffer_size {
            return Err(Error::new(ErrorKind::WriteBufferFull));
        }
        self.conn.send_with(msg, compress)?;
        self.stats.messages_out += 1;
        Ok(())
    }

    /// Flush now, or leave the output to ride with the replies to input
    /// that is already buffered?
    pub(crate) fn should_flush(&self) -> bool {
        self.conn.buffered_input() == 0 || self.conn.output_len() >= self.config.write_buffer_size
    }

    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.finished || self.conn.close_sent().is_some() {
            return Ok(());
        }
        self.conn.close(code, reason)?;
        if self.conn.close_received().is_none() {
            self.close_initiated = true;
        }
        tracing::debug!(code = %code, reason, "sent Close");
        Ok(())
    }

    pub(crate) fn close_result(&mut self) -> Result<(), Error> {
        match &mut self.end {
            Some(End::Clean { .. }) => Ok(()),
            Some(end) => Err(end.take_error()),
            None => Err(Error::new(ErrorKind::AlreadyClosed)),
        }
    }

    /// The end of the connection as an error, once.
    fn report_end(&mut self) -> Error {
        if self.reported {
            return Error::new(ErrorKind::AlreadyClosed);
        }
        self.reported = true;
        match &mut self.end {
            Some(end) => end.take_error(),
            None => Error::new(ErrorKind::AlreadyClosed),
        }
    }

    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
        loop {
            if self.finished {
                return Poll::Ready(Err(self.report_end()));
            }
            if self.draining {
                ready!(self.poll_finish(cx, true));
                continue;
            }
            match self.conn.next_event() {
                Ok(Some(Event::Message(m))) => {
                    self.stats.messages_in += 1;
                    return Poll::Ready(Ok(m));
                }
                Ok(Some(Event::Ping(_))) => continue,
                Ok(Some(Event::Pong(p))) => {
                    self.pong_received(&p);
                    continue;
                }
                Ok(Some(Event::Close(frame))) => {
                    tracing::debug!(?frame, "received Close");
                    ready!(self.poll_finish(cx, true));
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "protocol error");
                    ready!(self.poll_finish(cx, true));
                    continue;
                }
                Ok(None) => {}
            }
            if self.conn.eof_received() {
                ready!(self.poll_finish(cx, true));
                continue;
            }
            // About to wait for input: send what the handled input produced.
            if self.conn.has_data_to_send() {
                match self.poll_write_out(cx) {
                    Poll::Ready(Err(e)) => {
                        self.finish(self.end_after_io_error(e));
                        continue;
                    }
                    Poll::Pending if self.conn.output_len() > self.config.max_write_buffer_size => {
                        // The peer reads nothing: stop reading too (pongs
                        // would pile up) until the output drains.
                        return Poll::Pending;
                    }
                    _ => {}
                }
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) => self.conn.receive_eof(),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => self.finish(self.end_after_io_error(e)),
                Poll::Pending => {
                    if self.poll_timers(cx) {
                        continue;
                    }
                    // Buffers are kept while the connection is active (a large
                    // message would otherwise fault in fresh pages each
                    // time); an idle one gives them back when keepalive
                    // finds it idle.
                    return Poll::Pending;
                }
            }
        }
    }

    /// Timers and signals checked while waiting for input: shutdown,
    /// keepalive, idle timeout. Returns `true` if something happened that
    /// the receive loop must act on.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(guard) = self.shutdown.as_mut() {
            match guard.poll_signal(cx) {
                Signal::Force => {
                    self.abort(cx, End::Timeout(Timeout::CloseHandshake), None);
                    return true;
                }
                Signal::Drain if !self.draining => {
                    self.draining = true;
                    let _ = self.start_close(CloseCode::GoingAway, "server shutting down");
                    return true;
                }
                _ => {}
            }
        }
        if let Some(interval) = self.config.ping_interval {
            let mut ka = self.keepalive.take().unwrap_or_else(|| Keepalive {
                timer: Box::pin(tokio::time::sleep_until(self.last_rx + interval)),
                waiting: false,
                counter: 0,
            });
            let mut acted = false;
            while ka.timer.as_mut().poll(cx).is_ready() {
                let now = Instant::now();
                if ka.waiting {
                    self.keepalive = Some(ka);
                    tracing::debug!("keepalive ping unanswered");
                    let close = (CloseCode::InternalError, "keepalive ping timeout");
                    self.abort(cx, End::Timeout(Timeout::Keepalive), Some(close));
                    return true;
                }
                let due = self.last_rx + interval;
                if now >= due {
                    // Idle for a whole interval: give back what the next
                    // message can rebuild (buffers, compressors without
                    // context takeover).
                    self.conn.release_idle_memory();
                    ka.counter = ka.counter.wrapping_add(1);
                    if self.conn.ping(&ka.counter.to_be_bytes()).is_ok() {
                        ka.waiting = true;
                        acted = true;
                    }
                    ka.timer.as_mut().reset(now + self.config.ping_timeout);
                } else {
                    ka.timer.as_mut().reset(due);
                }
            }
            self.keepalive = Some(ka);
            if acted {
                return true;
            }
        }
        if let Some(idle) = self.config.idle_timeout {
            let due = self.last_rx + idle;
            let timer = self
                .idle_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_ready() {
                let close = (CloseCode::GoingAway, "idle timeout");
                self.abort(cx, End::Timeout(Timeout::Idle), Some(close));
                return true;
            }
        }
        false
    }

    /// Ends the connection now: queue a Close if asked (and none was
    /// sent), one attempt to write it out and shut the transport, finish.
    fn abort(&mut self, cx: &mut Context<'_>, end: End, close: Option<(CloseCode, &str)>) {
        if let Some((code, reason)) = close {
            let _ = self.conn.close(code, reason);
        }
        if let Poll::Ready(Ok(())) = self.poll_write_out(cx) {
            let _ = Pin::new(&mut self.io).poll_flush(cx);
        }
        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        self.end = Some(end);
        self.finish_now();
    }

    /// Something was received.
    fn received(&mut self, n: usize) {
        self.stats.bytes_in += n as u64;
        if self.config.ping_interval.is_some() || self.config.idle_timeout.is_some() {
            self.last_rx = Instant::now();
            if let (Some(ka), Some(interval)) = (self.keepalive.as_mut(), self.config.ping_interval)
            {
                if ka.waiting {
                    // Answered: the next Ping is due an interval from now,
                    // not when the answer's timeout would have expired.
                    ka.waiting = false;
                    ka.timer.as_mut().reset(self.last_rx + interval);
                }
            }
        }
    }

    /// Reads once into the connection's input buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Read more at once for a large frame, but never commit memory for
        // a length the peer only declared: the buffer grows as bytes arrive.
        let want = self
            .config
            .read_buffer_size
            .max(self.conn.bytes_needed().min(MAX_READ_AHEAD));
        let res = if self.conn.buffered_input() == 0
            && self.conn.read_buf().capacity() < want
            // The buffer the last frames were read into is free again once
            // the messages taken out of it are dropped: read straight into
            // it, with all its capacity.
            && !self.conn.read_buf().try_reclaim(want)
        {
            // Nothing pending and no buffer at hand: read into the thread's
            // scratch buffer and copy what arrived. An idle connection then
            // holds no read buffer at all while it waits.
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let len = want.min(scratch.len());
                let mut rb = ReadBuf::new(&mut scratch[..len]);
                match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        self.conn.receive_data(rb.filled());
                        Poll::Ready(Ok(n))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
        } else {
            let buf: &mut BytesMut = self.conn.read_buf();
            buf.reserve(want);
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf)
        };
        if let Poll::Ready(Ok(n)) = res {
            if n > 0 {
                self.received(n);
            }
        }
        res
    }

    /// Writes queued output (without flushing the transport).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut progress = false;
        let res = loop {
            if !self.conn.has_data_to_send() {
                break Poll::Ready(Ok(()));
            }
            let first = self.conn.data_to_send();
            let res = if first.len() < self.conn.output_len() && self.io.is_write_vectored() {
                // Payloads queued by reference leave with their headers
                // in one write.
                let mut slices = [io::IoSlice::new(&[]); MAX_WRITE_SLICES];
                let n = self.conn.data_to_send_vectored(&mut slices);
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n])
            } else {
                Pin::new(&mut self.io).poll_write(cx, first)
            };
            match res {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.conn.advance_data_to_send(n);
                    self.stats.bytes_out += n as u64;
                    progress = true;
                }
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        if progress || res.is_ready() {
            // Output moved (or failed): whoever else waits to write must
            // look again; the transport only wakes the latest of us.
            for w in self.write_wakers.drain(..) {
                if !w.will_wake(cx.waker()) {
                    w.wake();
                }
            }
        }
        if res.is_pending() && !self.write_wakers.iter().any(|w| w.will_wake(cx.waker())) {
            self.write_wakers.push(cx.waker().clone());
        }
        if res.is_pending() {
            if let Some(limit) = self.config.write_timeout {
                // A write that makes no progress for `limit` fails.
                let timer = self
                    .write_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if progress {
                    timer.as_mut().reset(Instant::now() + limit);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    self.write_timed_out = true;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "write timeout: the peer is not reading",
                    )));
                }
            }
        } else {
            self.write_timer = None;
        }
        res
    }

    pub(crate) fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.finished {
            return Poll::Ready(if self.conn.has_data_to_send() {
                Err(Error::new(ErrorKind::AlreadyClosed))
            } else {
                Ok(())
            });
        }
        let res = match ready!(self.poll_write_out(cx)) {
            Ok(()) => ready!(Pin::new(&mut self.io).poll_flush(cx)),
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            let kind = e.kind();
            self.finish(self.end_after_io_error(e));
            if self.write_timed_out {
                return Poll::Ready(Err(Error::new(ErrorKind::Timeout(Timeout::Write))));
            }
            return Poll::Ready(Err(Error::abnormal(Some(kind.into()))));
        }
        Poll::Ready(Ok(()))
    }

    fn finish(&mut self, end: End) {
        if self.end.is_none() {
            self.end = Some(end);
        }
        self.finish_now();
    }

    fn finish_now(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.keepalive = None;
        self.idle_timer = None;
        self.write_timer = None;
        self.pings.clear();
        let clean = self.end.as_ref().is_some_and(End::is_clean);
        if let Some(guard) = self.shutdown.as_ref() {
            guard.record(clean);
        }
        self.log_end();
        self.close_timer = None;
        self.conn.read_buf().clear();
        self.conn.shrink_buffers();
        for w in self
            .finish_wakers
            .drain(..)
            .chain(self.write_wakers.drain(..))
        {
            w.wake();
        }
    }

    fn log_end(&self) {
        let _entered = self.span.enter();
        let (who, code, reason) = match &self.end {
            Some(End::Clean { frame, by_us }) => (
                if *by_us { "us" } else { "peer" },
                frame.as_ref().map_or(1005, |f| u16::from(f.code)),
                frame.as_ref().map_or("", |f| f.reason.as_str()),
            ),
            Some(End::Protocol(p)) => ("us", u16::from(p.close_code()), p.reason()),
            Some(End::Timeout(Timeout::Keepalive)) => ("us", 1011, "keepalive timeout"),
            Some(End::Timeout(_)) => ("timeout", 1006, ""),
            Some(End::Abnormal(_)) | None => ("nobody", 1006, ""),
        };
        tracing::debug!(
            closed_by = who,
            code,
            reason,
            duration_ms = self.opened.elapsed().as_millis() as u64,
            bytes_in = self.stats.bytes_in,
            bytes_out = self.stats.bytes_out,
            messages_in = self.stats.messages_in,
            messages_out = self.stats.messages_out,
            "WebSocket closed"
        );
    }

    /// The end as known from the protocol state.
    fn end_from_state(&self) -> End {
        if let Some(e) = self.conn.failure() {
            return End::Protocol(e.clone());
        }
        match self.conn.close_received() {
            Some(frame) => End::Clean {
                frame: frame.clone(),
                by_us: self.close_initiated,
            },
            None => End::Abnormal(None),
        }
    }

    /// The end after the transport failed with `e`: abnormal (1006) only if
    /// no Close frame was received and the protocol did not fail first (a
    /// peer may send its Close and reset the connection before our echo is
    /// written: its code still stands).
    fn end_after_io_error(&self, e: io::Error) -> End {
        if self.write_timed_out {
            return End::Timeout(Timeout::Write);
        }
        match self.end_from_state() {
            End::Abnormal(None) => End::Abnormal(Some(e)),
            end => end,
        }
    }

    /// Drives the connection to its end: flush, wait for the peer's Close
    /// (reading, if `read` is true), close the transport; bounded by
    /// `close_timeout`.
    pub(crate) fn poll_finish(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<()> {
        loop {
            if self.finished {
                return Poll::Ready(());
            }
            // The timer is armed only once something must be waited for
            // (`wait_for_close`): a close that completes at once costs no
            // timer.
            let expired = self
                .close_timer
                .as_mut()
                .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
            if expired {
                let end = if self.conn.close_expected() {
                    self.end_from_state()
                } else {
                    End::Timeout(Timeout::CloseHandshake)
                };
                // Best effort: one attempt to shut down the transport.
                let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                self.finish(end);
                return Poll::Ready(());
            }
            if self.conn.has_data_to_send() {
                match self.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => {
                        self.finish(self.end_after_io_error(e));
                        return Poll::Ready(());
                    }
                    Poll::Pending => match self.wait_for_close(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(()) => continue,
                    },
                }
            }
            let eof = self.conn.eof_received();
            if self.conn.close_expected() || eof {
                let server_closes_first =
                    self.conn.role() == Role::Server || self.conn.failure().is_some();
                if server_closes_first || eof {
                    let res = match Pin::new(&mut self.io).poll_shutdown(cx) {
                        Poll::Ready(res) => res,
                        Poll::Pending => match self.wait_for_close(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(()) => continue,
                        },
                    };
                    let end = match (self.end_from_state(), res) {
                        (End::Abnormal(None), Err(e)) => End::Abnormal(Some(e)),
                        (end, _) => end,
                    };
                    self.finish(end);
                    return Poll::Ready(());
                }
                // A client waits for the server to close TCP first.
                self.conn.read_buf().clear();
            }
            if let Some(guard) = self.shutdown.as_mut() {
                if let Signal::Force = guard.poll_signal(cx) {
                    let end = if self.conn.close_expected() {
                        self.end_from_state()
                    } else {
                        End::Timeout(Timeout::CloseHandshake)
                    };
                    self.abort(cx, end, None);
                    return Poll::Ready(());
                }
            }
            if !read && !self.conn.close_expected() {
                // Another task (the reader half) reads; it wakes us.
                if !self.finish_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    self.finish_wakers.push(cx.waker().clone());
                }
                match self.wait_for_close(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => continue,
                }
            }
            let filled = match self.poll_fill(cx) {
                Poll::Ready(res) => res,
                Poll::Pending => match self.wait_for_close(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => continue,
                },
            };
            match filled {
                Ok(0) => self.conn.receive_eof(),
                Ok(_) => {
                    // Waiting for the peer's Close: data is dropped, pings
                    // are not answered after our Close.
                    while let Ok(Some(ev)) = self.conn.next_event() {
                        match ev {
                            Event::Close(frame) => tracing::debug!(?frame, "received Close"),
                            Event::Pong(p) => self.pong_received(&p),
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    self.finish(self.end_after_io_error(e));
                    return Poll::Ready(());
                }
            }
        }
    }

    /// Arms the closing handshake's timer (`close_timeout` from the first
    /// wait) and polls it: `Ready` when it has expired.
    fn wait_for_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let timeout = self.config.close_timeout;
        self.close_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)))
            .as_mut()
            .poll(cx)
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub(crate) fn register_finish_waker(&mut self, w: &Waker) {
        if !self.finish_wakers.iter().any(|x| x.will_wake(w)) {
            self.finish_wakers.push(w.clone());
        }
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
    /// the error of an abnormal one.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match ready!(self.poll_recv(cx)) {
            Ok(m) => Poll::Ready(Some(Ok(m))),
            Err(e) if e.is_closed() => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
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
