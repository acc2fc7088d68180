//! Receiving, and driving a connection to its end.
//!
//! Every decision about the end is the core's ([`Connection::end`]): this
//! file only does the I/O the core asks for (write the Close, shut the
//! transport when [`Connection::eof_to_send`] says so, read until the
//! peer's Close or end of stream) and tells the core what the transport
//! and the clocks did.
//!
//! [`Connection::end`]: silverback_proto::Connection::end
//! [`Connection::eof_to_send`]: silverback_proto::Connection::eof_to_send

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use silverback_proto::{CloseCode, End, Event, Initiator, Message, Timeout};
use tokio::io::{AsyncRead, AsyncWrite};

use super::timers::Due;
use super::WebSocket;
use crate::error::{Error, ErrorKind};
use crate::shutdown::Signal;

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
        loop {
            if self.conn.is_over() {
                self.ended();
                return Poll::Ready(Err(self.report_end()));
            }
            if self.flags.draining {
                ready!(self.poll_finish(cx, true));
                continue;
            }
            match self.conn.next_event() {
                Ok(Some(Event::Message(m))) => {
                    self.stats.messages_in += 1;
                    return Poll::Ready(Ok(m));
                }
                Ok(Some(Event::Ping(p))) => {
                    self.ping_received(&p);
                    continue;
                }
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
                Ok(None) if self.conn.eof_received() => {
                    ready!(self.poll_finish(cx, true));
                    continue;
                }
                Ok(None) => {}
            }
            ready!(self.poll_wait_for_input(cx));
        }
    }

    /// Nothing to hand out: send what the handled input produced, then
    /// read. `Ready` when there is something new to look at.
    fn poll_wait_for_input(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.conn.has_data_to_send() {
            match self.poll_write_out(cx) {
                Poll::Ready(Err(e)) => {
                    self.io_failed(e);
                    return Poll::Ready(());
                }
                // The peer reads nothing: stop reading too (pongs would
                // pile up) until the output drains.
                Poll::Pending if self.conn.output_len() > self.config.max_write_buffer_size => {
                    return Poll::Pending;
                }
                _ => {}
            }
        }
        match self.poll_fill(cx) {
            Poll::Ready(Ok(0)) => self.conn.receive_eof(),
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => self.io_failed(e),
            // Buffers are kept while the connection is active (a large
            // message would otherwise fault in fresh pages each time); an
            // idle one gives them back when keepalive finds it idle.
            Poll::Pending => ready!(self.poll_read_timers(cx)),
        }
        Poll::Ready(())
    }

    /// Signals and timers checked while waiting for input: shutdown,
    /// keepalive, idle timeout. `Ready` when something happened that the
    /// receive loop must act on.
    fn poll_read_timers(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.poll_shutdown_signal(cx) {
            Signal::Force => {
                self.give_up(cx, Timeout::CloseHandshake);
                return Poll::Ready(());
            }
            Signal::Drain if !self.flags.draining => {
                self.flags.draining = true;
                let _ = self.start_close(CloseCode::GoingAway, "server shutting down");
                return Poll::Ready(());
            }
            _ => {}
        }
        match self.timers.poll_read_side(cx, &self.config) {
            Some(Due::Ping(counter)) => {
                // Idle for a whole interval: give back what the next message
                // can rebuild (buffers, compressors without context takeover).
                self.conn.release_idle_memory();
                let payload = counter.to_be_bytes();
                if self.conn.ping(&payload).is_ok() {
                    self.pings.keepalive_sent(payload);
                }
                Poll::Ready(())
            }
            Some(Due::Expired(which)) => {
                tracing::debug!(%which, "timeout");
                self.give_up(cx, which);
                Poll::Ready(())
            }
            None => Poll::Pending,
        }
    }

    fn poll_shutdown_signal(&mut self, cx: &mut Context<'_>) -> Signal {
        match self.shutdown.as_mut() {
            Some(guard) => guard.poll_signal(cx),
            None => Signal::None,
        }
    }

    /// Drives the connection to its end: write what is queued (the Close),
    /// shut the transport when the core asks, and read (if `read`: else the
    /// reader half does and wakes us) until the peer's Close or end of
    /// stream; bounded by `close_timeout`.
    pub(crate) fn poll_finish(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<()> {
        loop {
            if self.conn.is_over() {
                self.ended();
                return Poll::Ready(());
            }
            if self.timers.close_expired(cx)
                || matches!(self.poll_shutdown_signal(cx), Signal::Force)
            {
                self.give_up(cx, Timeout::CloseHandshake);
                continue;
            }
            if self.conn.has_data_to_send() {
                match self.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => self.io_failed(e),
                    Poll::Pending => ready!(self.poll_close_timer(cx)),
                }
                continue;
            }
            if self.conn.eof_to_send() {
                match Pin::new(&mut self.io).poll_shutdown(cx) {
                    Poll::Ready(res) => self.shut_down(res),
                    Poll::Pending => ready!(self.poll_close_timer(cx)),
                }
                continue;
            }
            if !read && !self.conn.close_expected() {
                // Another task (the reader half) reads; it wakes us.
                self.finish_wakers.register(cx.waker());
                ready!(self.poll_close_timer(cx));
                continue;
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) => self.conn.receive_eof(),
                Poll::Ready(Ok(_)) => self.skim_while_closing(),
                Poll::Ready(Err(e)) => self.io_failed(e),
                Poll::Pending => ready!(self.poll_close_timer(cx)),
            }
        }
    }

    /// Waiting for the peer's Close: data is dropped, pings are not
    /// answered after our Close; a Pong still answers a ping.
    fn skim_while_closing(&mut self) {
        while let Ok(Some(ev)) = self.conn.next_event() {
            match ev {
                Event::Close(frame) => tracing::debug!(?frame, "received Close"),
                Event::Pong(p) => self.pong_received(&p),
                _ => {}
            }
        }
        if self.conn.close_expected() {
            // A client waiting for the server to close TCP first.
            self.conn.read_buf().clear();
        }
    }

    fn poll_close_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.timers.poll_close(cx, self.config.close_timeout)
    }

    /// The transport's write side was shut (or failed to be).
    fn shut_down(&mut self, res: io::Result<()>) {
        if let Err(e) = res {
            self.io_error.get_or_insert(e);
        }
        self.conn.eof_sent();
        self.ended();
    }

    /// The transport failed.
    pub(super) fn io_failed(&mut self, e: io::Error) {
        self.io_error.get_or_insert(e);
        self.conn.transport_failed();
        self.ended();
    }

    /// A timer ran out: the core decides what to send and how it ended;
    /// one attempt to write that out and shut the transport, then done.
    fn give_up(&mut self, cx: &mut Context<'_>, which: Timeout) {
        self.conn.timeout(which);
        if let Poll::Ready(Ok(())) = self.poll_write_out(cx) {
            let _ = Pin::new(&mut self.io).poll_flush(cx);
        }
        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        self.ended();
    }

    /// The connection is over: free what it held, count and log its end,
    /// wake whoever waits on it. Once.
    fn ended(&mut self) {
        if self.flags.ended || !self.conn.is_over() {
            return;
        }
        self.flags.ended = true;
        self.timers.clear();
        self.pings.clear();
        let end = self.conn.end();
        if let Some(guard) = self.shutdown.as_ref() {
            guard.record(end.as_ref().is_some_and(End::is_clean));
        }
        if let Some(end) = &end {
            self.log_end(end);
        }
        self.conn.read_buf().clear();
        self.conn.shrink_buffers();
        self.finish_wakers.wake_all();
        self.write_wakers.wake_all();
    }

    fn log_end(&self, end: &End) {
        let _entered = self.span.enter();
        let closed_by = match end.initiator() {
            Some(Initiator::Local) => "us",
            Some(Initiator::Remote) => "peer",
            None if matches!(end, End::Timeout(_)) => "timeout",
            None => "nobody",
        };
        tracing::debug!(
            closed_by,
            code = u16::from(end.close_code()),
            reason = end.reason(),
            duration_ms = self.opened.elapsed().as_millis() as u64,
            bytes_in = self.stats.bytes_in,
            bytes_out = self.stats.bytes_out,
            messages_in = self.stats.messages_in,
            messages_out = self.stats.messages_out,
            "WebSocket closed"
        );
    }

    /// The end as an error; the I/O cause is handed out once.
    fn end_error(&mut self) -> Error {
        match self.conn.end() {
            Some(end) => Error::from_end(end, self.io_error.take()),
            None => Error::new(ErrorKind::AlreadyClosed),
        }
    }

    /// The end of the connection as an error, once.
    fn report_end(&mut self) -> Error {
        if std::mem::replace(&mut self.flags.reported, true) {
            return Error::new(ErrorKind::AlreadyClosed);
        }
        self.end_error()
    }

    /// What `close` returns: `Ok` for a completed closing handshake.
    pub(crate) fn close_result(&mut self) -> Result<(), Error> {
        match self.conn.end() {
            Some(End::Clean { .. }) => Ok(()),
            Some(_) => Err(self.end_error()),
            None => Err(Error::new(ErrorKind::AlreadyClosed)),
        }
    }
}
