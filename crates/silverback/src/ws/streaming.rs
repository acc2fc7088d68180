//! Streaming one message: [`MessageReader`] (`AsyncRead`) and
//! [`MessageWriter`] (`AsyncWrite`), like gorilla's `NextReader` and
//! `NextWriter`. The protocol work is the core's
//! ([`Connection::stream_next_message`], [`Connection::begin_message`]);
//! this file moves bytes between it and the application.
//!
//! [`Connection::stream_next_message`]: silverback_proto::Connection::stream_next_message
//! [`Connection::begin_message`]: silverback_proto::Connection::begin_message

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use silverback_proto::utf8::Utf8Validator;
use silverback_proto::{Event, MessageKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::WebSocket;
use crate::error::{Error, ErrorKind};
use crate::{WsReader, WsWriter};

/// Where a streamed message's connection is: a whole [`WebSocket`] or one
/// of its split halves (locked for each step).
enum Handle<'a, S> {
    Ws(&'a mut WebSocket<S>),
    Reader(&'a mut WsReader<S>),
    Writer(&'a mut WsWriter<S>),
}

impl<S> Handle<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn with<R>(&mut self, f: impl FnOnce(&mut WebSocket<S>) -> R) -> R {
        match self {
            Handle::Ws(ws) => f(ws),
            Handle::Reader(r) => r.with_ws(f),
            Handle::Writer(w) => w.with_ws(f),
        }
    }

    /// Polls `f`; a pending split reader also waits for the writer to end
    /// the connection (as `WsReader::recv` does).
    fn poll<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WebSocket<S>, &mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        let reader = matches!(self, Handle::Reader(_));
        self.with(|ws| {
            let res = f(ws, cx);
            if res.is_pending() && reader {
                ws.register_finish_waker(cx.waker());
            }
            res
        })
    }
}

/// The next data message, read as it arrives: an [`AsyncRead`] of its
/// payload, from [`WebSocket::recv_stream`] or [`WsReader::recv_stream`].
///
/// The payload is handed out frame piece by frame piece as the transport
/// delivers it, so a message of any size (up to `max_message_size`) is
/// never held whole. The usual checks still apply while reading: a text
/// message's UTF-8 (invalid bytes fail the connection with 1007), the
/// message size (1009), permessage-deflate (inflated piece by piece).
/// Pings are answered and a Close is handled while reading.
///
/// A read returns 0 bytes (end of file) at the end of the message. If the
/// connection ends before (a protocol error, the peer closing or
/// vanishing), reads fail with an [`io::Error`] whose inner error is the
/// [`Error`] that ended it (`ErrorKind::InvalidData` for a protocol error,
/// `UnexpectedEof` for a close); [`WebSocket::recv`] then reports the end
/// as usual.
///
/// Dropping the reader before the end of the message skips the rest of it
/// (still read and checked, not handed out): the connection stays usable
/// and the next `recv` gets the message after it.
///
/// ```no_run
/// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) -> Result<(), silverback::Error> {
/// use silverback::MessageKind;
/// let mut reader = ws.recv_stream().await?;
/// if reader.kind() == MessageKind::Binary {
///     let mut file = tokio::fs::File::create("upload.bin").await?;
///     let n = tokio::io::copy(&mut reader, &mut file).await?;
///     println!("{n} bytes");
/// }
/// # Ok(()) }
/// ```
pub struct MessageReader<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handle: Handle<'a, S>,
    kind: MessageKind,
    /// Received, not yet read.
    chunk: Bytes,
    /// The message's last piece was received.
    fin: bool,
    /// The connection ended before the end of the message.
    failed: bool,
}

impl<S> fmt::Debug for MessageReader<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageReader")
            .field("kind", &self.kind)
            .field("buffered", &self.chunk.len())
            .field("fin", &self.fin)
            .finish_non_exhaustive()
    }
}

/// Disarmed once the message started: until then, dropping the
/// `recv_stream` future withdraws the request to stream.
struct Armed<'a, S>(Option<Handle<'a, S>>)
where
    S: AsyncRead + AsyncWrite + Unpin;

impl<S> Drop for Armed<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn drop(&mut self) {
        if let Some(h) = self.0.as_mut() {
            h.with(|ws| ws.conn.stream_next_message(false));
        }
    }
}

impl<'a, S> MessageReader<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn start(mut handle: Handle<'a, S>) -> Result<Self, Error> {
        handle.with(|ws| ws.conn.stream_next_message(true));
        let mut armed = Armed(Some(handle));
        let (kind, chunk, fin) = poll_fn(|cx| {
            let Some(h) = armed.0.as_mut() else {
                return Poll::Pending;
            };
            h.poll(cx, |ws, cx| {
                ws.poll_data(cx, true, false, |ws, ev| {
                    ws.stats.messages_in += 1;
                    Some(match ev {
                        Event::Chunk { kind, data, fin } => (kind, data, fin),
                        // Its first frame came before the request: whole.
                        Event::Message(m) => (m.kind(), m.into_data(), true),
                        _ => unreachable!("poll_data passes data events only"),
                    })
                })
            })
        })
        .await?;
        let handle = armed.0.take().expect("armed until here");
        Ok(Self {
            handle,
            kind,
            chunk,
            fin,
            failed: false,
        })
    }

    /// Text or binary.
    ///
    /// ```no_run
    /// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) -> Result<(), silverback::Error> {
    /// use silverback::MessageKind;
    /// use tokio::io::AsyncReadExt;
    /// let mut reader = ws.recv_stream().await?;
    /// if reader.kind() == MessageKind::Text {
    ///     let mut text = String::new();
    ///     reader.read_to_string(&mut text).await?; // already checked: UTF-8
    /// }
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Whether the whole message was read (the next read returns 0).
    ///
    /// ```no_run
    /// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) -> Result<(), silverback::Error> {
    /// use tokio::io::AsyncReadExt;
    /// let mut reader = ws.recv_stream().await?;
    /// let mut head = [0u8; 4];
    /// let n = reader.read(&mut head).await?;
    /// if !reader.is_done() {
    ///     println!("more than {n} bytes: the rest is skipped");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_done(&self) -> bool {
        self.fin && self.chunk.is_empty()
    }

    /// Bytes received from the transport and not yet handed to this
    /// reader: what streaming keeps small. For tests and metrics.
    #[doc(hidden)]
    pub fn buffered_input(&mut self) -> usize {
        self.chunk.len() + self.handle.with(|ws| ws.conn.buffered_input())
    }
}

impl<S> AsyncRead for MessageReader<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.chunk.is_empty() {
                let n = this.chunk.len().min(buf.remaining());
                buf.put_slice(&this.chunk[..n]);
                this.chunk.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.fin {
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside the message",
                )));
            }
            let res = ready!(this.handle.poll(cx, |ws, cx| {
                ws.poll_data(cx, false, false, |_, ev| match ev {
                    Event::Chunk { data, fin, .. } if fin || !data.is_empty() => Some((data, fin)),
                    Event::Chunk { .. } => None,
                    Event::Message(m) => Some((m.into_data(), true)),
                    _ => unreachable!("poll_data passes data events only"),
                })
            }));
            match res {
                Ok((data, fin)) => {
                    this.chunk = data;
                    this.fin = fin;
                }
                Err(e) => {
                    this.failed = true;
                    let kind = match e.kind() {
                        ErrorKind::Protocol(_) => io::ErrorKind::InvalidData,
                        ErrorKind::Closed { .. } | ErrorKind::AlreadyClosed => {
                            io::ErrorKind::UnexpectedEof
                        }
                        ErrorKind::Timeout(_) => io::ErrorKind::TimedOut,
                        _ => io::ErrorKind::ConnectionAborted,
                    };
                    return Poll::Ready(Err(io::Error::new(kind, e)));
                }
            }
        }
    }
}

impl<S> Drop for MessageReader<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn drop(&mut self) {
        if !self.fin && !self.failed {
            self.handle.with(|ws| ws.conn.cancel_stream());
        }
    }
}

/// A data message written as a stream: an [`AsyncWrite`] that sends it in
/// fragments, from [`WebSocket::send_stream`] or [`WsWriter::send_stream`].
///
/// Writes are gathered into fragments of `write_buffer_size` bytes: a
/// fragment leaves when that much was written, or on
/// [`flush`](tokio::io::AsyncWriteExt::flush) (a flush with nothing new
/// sends nothing). [`shutdown`](tokio::io::AsyncWriteExt::shutdown) sends
/// the last fragment (FIN) and flushes: the message is complete only
/// then. With permessage-deflate negotiated, every fragment is
/// compressed (see [`DeflateConfig`](crate::DeflateConfig); the size
/// threshold does not apply to streams). Control frames (pongs, pings)
/// may go out between fragments.
///
/// A text message must be UTF-8 as a whole: a write may end inside a
/// character, but a write whose bytes cannot be UTF-8 fails with
/// `InvalidData` (nothing of it is taken), and so does `shutdown` when the
/// message ends inside a character.
///
/// **Dropped without `shutdown`**: if no fragment had left yet, the
/// message is dropped and the connection stays usable. Otherwise the peer
/// holds part of a message that cannot be completed truthfully: the
/// connection fails with a Close 1011 "message abandoned" (written at the
/// next `recv`, `flush` or `close`; later sends fail).
///
/// ```no_run
/// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) -> Result<(), Box<dyn std::error::Error>> {
/// use silverback::MessageKind;
/// use tokio::io::AsyncWriteExt;
/// let mut file = tokio::fs::File::open("video.mp4").await?;
/// let mut writer = ws.send_stream(MessageKind::Binary)?;
/// tokio::io::copy(&mut file, &mut writer).await?;
/// writer.shutdown().await?; // the last fragment: the message is complete
/// # Ok(()) }
/// ```
pub struct MessageWriter<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handle: Handle<'a, S>,
    kind: MessageKind,
    /// Written, not yet queued as a fragment.
    buf: BytesMut,
    fragment_size: usize,
    utf8: Utf8Validator,
    /// The last fragment was queued.
    finished: bool,
}

impl<S> fmt::Debug for MessageWriter<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageWriter")
            .field("kind", &self.kind)
            .field("buffered", &self.buf.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

fn io_error(e: Error) -> io::Error {
    let kind = match e.kind() {
        ErrorKind::InvalidSend(silverback_proto::SendError::InvalidUtf8) => {
            io::ErrorKind::InvalidData
        }
        ErrorKind::Closing | ErrorKind::AlreadyClosed | ErrorKind::Closed { .. } => {
            io::ErrorKind::BrokenPipe
        }
        ErrorKind::Timeout(_) => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl<'a, S> MessageWriter<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn start(mut handle: Handle<'a, S>, kind: MessageKind) -> Result<Self, Error> {
        let fragment_size = handle.with(|ws| {
            ws.check_open()?;
            ws.conn.begin_message(kind)?;
            Ok::<_, Error>(ws.config.write_buffer_size)
        })?;
        Ok(Self {
            handle,
            kind,
            buf: BytesMut::new(),
            fragment_size,
            utf8: Utf8Validator::new(),
            finished: false,
        })
    }

    /// Text or binary, as given to `send_stream`.
    ///
    /// ```no_run
    /// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) -> Result<(), silverback::Error> {
    /// use silverback::MessageKind;
    /// let writer = ws.send_stream(MessageKind::Text)?;
    /// assert_eq!(writer.kind(), MessageKind::Text);
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Queues what was written as the next fragment (`fin`: the last).
    fn queue(&mut self, fin: bool) -> io::Result<()> {
        let buf = &mut self.buf;
        let kind = self.kind;
        let res = self.handle.with(|ws| {
            ws.check_open()?;
            let before = ws.conn.output_len();
            ws.conn.send_message_part(buf, fin)?;
            ws.note_sent(kind, fin, buf.len(), before);
            Ok::<_, Error>(())
        });
        res.map_err(io_error)?;
        self.buf.clear();
        self.finished = fin;
        Ok(())
    }

    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.handle
            .poll(cx, |ws, cx| ws.poll_flush_out(cx))
            .map_err(io_error)
    }
}

impl<S> AsyncWrite for MessageWriter<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the message was already finished",
            )));
        }
        if this.buf.len() >= this.fragment_size {
            // A full fragment: queue it, and let it (and what was queued
            // before) leave before taking more.
            this.queue(false)?;
        }
        let cap = this.fragment_size;
        let busy = this.handle.with(|ws| ws.conn.output_len() >= cap);
        if busy {
            ready!(this.poll_flush_out(cx))?;
        }
        let n = data.len().min(cap - this.buf.len());
        if this.kind == MessageKind::Text {
            let mut utf8 = this.utf8.clone();
            utf8.feed(&data[..n]).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "invalid UTF-8 in a text message",
                )
            })?;
            this.utf8 = utf8;
        }
        this.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    /// Sends what was written as a fragment (if anything) and flushes.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() && !this.finished {
            this.queue(false)?;
        }
        this.poll_flush_out(cx)
    }

    /// Sends the last fragment (FIN) and flushes: the message is complete.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.finished {
            this.queue(true)?;
        }
        this.poll_flush_out(cx)
    }
}

impl<S> Drop for MessageWriter<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn drop(&mut self) {
        if !self.finished {
            self.handle.with(|ws| {
                if ws.conn.abort_message() {
                    tracing::debug!("message abandoned: connection failed (1011)");
                }
            });
        }
    }
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Receives the next data message as a stream: see [`MessageReader`].
    /// Returns once the message's first frame header arrived; errors as
    /// [`recv`](Self::recv) does when the connection ends first.
    ///
    /// Cancel safe: if the future is dropped before a message started,
    /// the next message is received as usual.
    ///
    /// ```no_run
    /// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) -> Result<(), silverback::Error> {
    /// // Count the bytes of each message without holding any of them.
    /// loop {
    ///     let mut reader = ws.recv_stream().await?;
    ///     let n = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await?;
    ///     println!("a {:?} message of {n} bytes", reader.kind());
    /// }
    /// # }
    /// ```
    pub async fn recv_stream(&mut self) -> Result<MessageReader<'_, S>, Error> {
        MessageReader::start(Handle::Ws(self)).await
    }

    /// Sends a message as a stream of fragments: see [`MessageWriter`].
    /// Nothing is sent until the first fragment is complete (or flushed).
    ///
    /// # Errors
    /// [`ErrorKind::Closing`] or [`ErrorKind::AlreadyClosed`] if the
    /// connection is closing or over.
    ///
    /// ```no_run
    /// # async fn f(mut ws: silverback::WebSocket<tokio::net::TcpStream>) -> Result<(), Box<dyn std::error::Error>> {
    /// use silverback::MessageKind;
    /// use tokio::io::AsyncWriteExt;
    /// let mut writer = ws.send_stream(MessageKind::Text)?;
    /// for i in 0..1000 {
    ///     writer.write_all(format!("line {i}\n").as_bytes()).await?;
    /// }
    /// writer.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn send_stream(&mut self, kind: MessageKind) -> Result<MessageWriter<'_, S>, Error> {
        MessageWriter::start(Handle::Ws(self), kind)
    }
}

impl<S> WsReader<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Receives the next data message as a stream; see
    /// [`WebSocket::recv_stream`].
    ///
    /// ```no_run
    /// # async fn f(mut reader: silverback::WsReader<tokio::net::TcpStream>) -> Result<(), silverback::Error> {
    /// let mut message = reader.recv_stream().await?;
    /// tokio::io::copy(&mut message, &mut tokio::io::sink()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_stream(&mut self) -> Result<MessageReader<'_, S>, Error> {
        MessageReader::start(Handle::Reader(self)).await
    }
}

impl<S> WsWriter<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Sends a message as a stream of fragments; see
    /// [`WebSocket::send_stream`]. The reader half keeps answering pings
    /// meanwhile (its Pongs go out between fragments).
    ///
    /// ```no_run
    /// # async fn f(mut writer: silverback::WsWriter<tokio::net::TcpStream>) -> Result<(), Box<dyn std::error::Error>> {
    /// use silverback::MessageKind;
    /// use tokio::io::AsyncWriteExt;
    /// let mut message = writer.send_stream(MessageKind::Binary)?;
    /// message.write_all(&[1, 2, 3]).await?;
    /// message.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn send_stream(&mut self, kind: MessageKind) -> Result<MessageWriter<'_, S>, Error> {
        MessageWriter::start(Handle::Writer(self), kind)
    }
}
