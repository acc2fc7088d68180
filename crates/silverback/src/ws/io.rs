//! Moving bytes between the transport and the core's buffers.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use silverback_proto::Timeout;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::WebSocket;
use crate::error::{Error, ErrorKind};

/// Most pieces of queued output given to one vectored write.
const MAX_WRITE_SLICES: usize = 32;

/// Bytes asked for beyond what the frame being read needs.
const READ_SLACK: usize = 1024;

/// Most bytes reserved for one read beyond `read_buffer_size`.
const MAX_READ_AHEAD: usize = 256 * 1024;

thread_local! {
    /// Where reads land when a connection has no partial frame buffered.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; MAX_READ_AHEAD].into_boxed_slice());
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Reads once into the connection's input buffer.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Read more at once for a large frame, but never commit memory for
        // a length the peer only declared: the buffer grows as bytes arrive.
        // A little more than the frame needs: a read that comes back short
        // tells tokio the socket is drained, so the next wait goes to the
        // reactor without a read that fails with WouldBlock first.
        let want = self
            .config
            .read_buffer_size
            .max(64)
            .max(self.conn.bytes_needed().min(MAX_READ_AHEAD) + READ_SLACK);
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
                let res = ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb));
                self.conn.receive_data(rb.filled());
                Poll::Ready(res.map(|()| rb.filled().len()))
            })
        } else {
            let buf: &mut BytesMut = self.conn.read_buf();
            buf.reserve(want);
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf)
        };
        if let Poll::Ready(Ok(n)) = res {
            if n > 0 {
                self.stats.bytes_in += n as u64;
                self.timers.received(&self.config);
            }
        }
        res
    }

    /// Writes queued output (without flushing the transport). A write that
    /// makes no progress for `write_timeout` ends the connection
    /// ([`Timeout::Write`]) and fails with `TimedOut`.
    pub(super) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut progress = false;
        let res = loop {
            if !self.conn.has_data_to_send() {
                break Poll::Ready(Ok(()));
            }
            match self.poll_write_once(cx) {
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
            if let Some(x) = self.extras.as_mut() {
                x.write_wakers.wake_others(cx.waker());
            }
            if let Some(queue) = self.send_queue.as_ref() {
                queue.set_unwritten(self.conn.output_len());
            }
        }
        if res.is_ready() {
            self.timers.write_done();
            self.metrics.drained();
            return res;
        }
        #[cfg(feature = "metrics")]
        {
            let backlog = self.buffered_amount();
            self.metrics.blocked(backlog);
        }
        self.extras_mut().write_wakers.register(cx.waker());
        if self
            .timers
            .poll_write_blocked(cx, self.config.write_timeout, progress)
        {
            self.conn.timeout(Timeout::Write);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "write timeout: the peer is not reading",
            )));
        }
        Poll::Pending
    }

    fn poll_write_once(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let first = self.conn.data_to_send();
        if first.len() < self.conn.output_len() && self.io.is_write_vectored() {
            // Payloads queued by reference leave with their headers in one
            // write.
            let mut slices = [io::IoSlice::new(&[]); MAX_WRITE_SLICES];
            let n = self.conn.data_to_send_vectored(&mut slices);
            Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n])
        } else {
            Pin::new(&mut self.io).poll_write(cx, first)
        }
    }

    /// Writes out and flushes everything queued.
    pub(crate) fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.conn.is_over() {
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
        let Err(e) = res else {
            self.metrics.flush();
            return Poll::Ready(Ok(()));
        };
        let kind = e.kind();
        self.io_failed(e);
        Poll::Ready(Err(match self.conn.end() {
            Some(end @ silverback_proto::End::Timeout(_)) => Error::from_end(end, None),
            _ => Error::abnormal(Some(kind.into())),
        }))
    }
}
