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

use silverback_proto::{
    CloseCode, EncodedMessage, End, Event, Initiator, Message, ProtocolError, Timeout,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::timers::Due;

/// What the reader half receives.
pub(crate) enum Received {
    Message(Message),
    /// To decode without holding the connection.
    Encoded(EncodedMessage),
}

use super::WebSocket;
use crate::error::{Error, ErrorKind};
use crate::shutdown::Signal;

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
        self.poll_data(cx, true, false, |ws, ev| match ev {
            Event::Message(m) => {
                ws.stats.messages_in += 1;
                Some(m)
            }
            // Only a `MessageReader` asks for chunks, and it holds the
            // connection until it is dropped (which cancels the stream).
            _ => {
                ws.conn.cancel_stream();
                None
            }
        })
    }

    /// Like `poll_recv`, but a compressed message (with deferred decoding,
    /// see `split`) comes out still encoded, for the reader half to decode
    /// without holding the connection; then [`finish_decoding`](Self::finish_decoding).
    pub(crate) fn poll_recv_deferred(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Received, Error>> {
        self.poll_data(cx, true, true, |ws, ev| match ev {
            Event::Message(m) => {
                ws.stats.messages_in += 1;
                Some(Received::Message(m))
            }
            Event::Encoded(e) => Some(Received::Encoded(e)),
            _ => {
                ws.conn.cancel_stream();
                None
            }
        })
    }

    /// Takes the result of decoding an encoded message outside: the
    /// message, or `None` when it failed the connection (the next receive
    /// reports the end).
    pub(crate) fn finish_decoding(
        &mut self,
        decoded: Result<Message, ProtocolError>,
    ) -> Option<Message> {
        match decoded {
            Ok(m) => {
                self.stats.messages_in += 1;
                self.note_decoded(&m);
                Some(m)
            }
            Err(e) => {
                tracing::debug!(error = %e, "protocol error");
                self.conn.decoding_failed(e);
                None
            }
        }
    }

    /// Decodes an encoded message here, holding the connection (when its
    /// decoder could not be taken out).
    pub(crate) fn decode_in_place(&mut self, encoded: EncodedMessage) -> Option<Message> {
        let decoded = self.decode_here(encoded);
        self.finish_decoding(decoded)
    }

    /// Decodes an encoded message here, holding the connection.
    fn decode_here(&mut self, encoded: EncodedMessage) -> Result<Message, ProtocolError> {
        let mut decoder = self.conn.take_decoder().ok_or(ProtocolError::Extension(
            silverback_proto::extension::ExtensionError {
                code: CloseCode::InternalError,
                reason: "no decoder",
            },
        ))?;
        let res = encoded.decode(&mut decoder);
        self.conn.put_decoder(decoder);
        res
    }

    /// Receives until `take` accepts a data event ([`Event::Message`],
    /// [`Event::Chunk`], and [`Event::Encoded`] if `encoded`: else it is
    /// decoded here first), handling control frames, errors and the end on
    /// the way. The end is reported as `recv` does (once) when `report`,
    /// else as an error each time (a message cut short).
    #[inline]
    pub(super) fn poll_data<T>(
        &mut self,
        cx: &mut Context<'_>,
        report: bool,
        encoded: bool,
        mut take: impl FnMut(&mut Self, Event) -> Option<T>,
    ) -> Poll<Result<T, Error>> {
        loop {
            if self.conn.is_over() {
                self.ended();
                let err = if report {
                    self.report_end()
                } else {
                    self.end_error()
                };
                return Poll::Ready(Err(err));
            }
            if self.flags.draining {
                ready!(self.poll_finish(cx, true));
                continue;
            }
            let next = self.conn.next_event();
            if let Ok(Some(ev)) = &next {
                self.note_event(ev);
            }
            match next {
                Ok(Some(Event::Encoded(e))) if !encoded => match self.decode_here(e) {
                    Ok(m) => {
                        self.note_decoded(&m);
                        if let Some(t) = take(self, Event::Message(m)) {
                            return Poll::Ready(Ok(t));
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "protocol error");
                        self.conn.decoding_failed(e);
                        continue;
                    }
                },
                Ok(Some(ev @ (Event::Message(_) | Event::Chunk { .. } | Event::Encoded(_)))) => {
                    if let Some(t) = take(self, ev) {
                        return Poll::Ready(Ok(t));
                    }
                    continue;
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
                // `eof_received`, or this side failed the connection (an
                // abandoned `MessageWriter`): finish.
                Ok(None) if self.conn.eof_received() || self.conn.close_expected() => {
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
        // The batch is handled: its counts go to the shared counters.
        self.metrics.flush();
        // What other tasks queued leaves with the replies.
        let more_queued = self.pull_queued(Some(cx.waker()));
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
                // All written and more queued: take the next batch.
                Poll::Ready(Ok(())) if more_queued => return Poll::Ready(()),
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
                self.register_finish_waker(cx.waker());
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
        if let Some(queue) = self.send_queue.as_ref() {
            queue.close();
        }
        let end = self.conn.end();
        let ratio = if self.deflate.is_some() {
            self.stats().compression_ratio()
        } else {
            None
        };
        self.metrics.ended(end.as_ref(), ratio);
        if let Some(guard) = self.shutdown.as_ref() {
            guard.record(end.as_ref().is_some_and(End::is_clean));
        }
        if let Some(end) = &end {
            self.log_end(end);
        }
        self.conn.read_buf().clear();
        self.conn.shrink_buffers();
        if let Some(x) = self.extras.as_mut() {
            x.finish_wakers.wake_all();
            x.write_wakers.wake_all();
        }
    }

    fn log_end(&self, end: &End) {
        let span = self.span();
        let _entered = span.enter();
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
