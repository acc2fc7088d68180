//! The sans-I/O connection: bytes in, events and bytes out.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{parse_close_payload, truncate_reason, ClosePayload};
use crate::error::{ProtocolError, SendError};
use crate::extension::Extension;
use crate::frame::{self, decode_header, encode_header, Decoded, FrameHeader, OpCode};
use crate::lifecycle::{End, Failure, Finish, Lifecycle, Timeout, Transport};
use crate::mask::apply_mask;
use crate::output::Output;
use crate::utf8::Utf8Validator;
use crate::{
    CloseCode, CloseFrame, EncodedMessage, Message, MessageDecoder, MessageKind, PreparedMessage,
    Utf8Bytes,
};

/// The most input buffer space reserved ahead of a frame's payload.
const MAX_PREALLOC: usize = 64 << 10;

/// Most compressed payload bytes inflated for one [`Event::Chunk`]: bounds
/// what one chunk of a streamed compressed message holds (deflate expands
/// at most ~1032 times).
const STREAM_INFLATE_STEP: usize = 8 << 10;

/// Payloads at least this long that a server sends from a [`Bytes`] (an
/// echoed or forwarded [`Message`]) are queued by reference, not copied.
pub(crate) const ZERO_COPY_MIN: usize = 16 << 10;

/// Which end of the connection this is. It decides the masking rules: a
/// client masks every frame it sends and refuses masked frames; a server
/// requires masked frames and never masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the upgrade request.
    Client,
    /// The end that accepted it.
    Server,
}

/// The connection's state (RFC 6455 §4, §7), coarse: see
/// [`Connection::end`] for how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// A Close frame was sent or received (or the connection failed); the
    /// transport is about to close.
    Closing,
    /// The transport reached end of stream or is done.
    Closed,
}

/// Limits and behaviour of a [`Connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest message accepted, after reassembly (and decompression), in
    /// bytes. Larger messages fail the connection with 1009. Default 64 MiB.
    pub max_message_size: usize,
    /// Largest single frame payload accepted, in bytes; checked from the
    /// header before any of the payload is buffered. Default 16 MiB.
    pub max_frame_size: usize,
    /// Answer pings with pongs automatically. Default `true`.
    pub auto_pong: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            auto_pong: true,
        }
    }
}

impl Config {
    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }

    /// Sets [`max_frame_size`](Self::max_frame_size).
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n;
        self
    }

    /// Sets [`auto_pong`](Self::auto_pong).
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }
}

/// Chooses the reply to a peer's Close; see
/// [`Connection::set_close_handler`].
pub type CloseHandler = Box<dyn FnMut(Option<&CloseFrame>) -> CloseFrame + Send>;

/// What the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete data message.
    Message(Message),
    /// A Ping; with [`Config::auto_pong`] the Pong is already queued.
    Ping(Bytes),
    /// A Pong.
    Pong(Bytes),
    /// A Close frame (`None` when it had no payload). If we had not sent a
    /// Close yet, the echo is already queued.
    Close(Option<CloseFrame>),
    /// A piece of a data message being streamed (see
    /// [`Connection::stream_next_message`]), in order: the payload as it
    /// arrives (decompressed, UTF-8 checked so far for text), `fin` on the
    /// message's last piece. The first chunk of a message may be empty
    /// (it announces the message as soon as its first frame header is
    /// read); later ones are empty only with `fin`.
    Chunk {
        /// The message's type.
        kind: MessageKind,
        /// The next payload bytes.
        data: Bytes,
        /// This is the message's last piece.
        fin: bool,
    },
    /// A whole compressed message to decode outside the connection (only
    /// with [`Connection::set_defer_decoding`]).
    Encoded(EncodedMessage),
}

/// A message being received in fragments.
struct Partial {
    opcode: OpCode,
    /// RSV bits of the first frame (extension-encoded message when non-zero).
    rsv: u8,
    buf: BytesMut,
    utf8: Utf8Validator,
    /// With deferred decoding: the encoded frames' payloads, kept as they
    /// came.
    encoded: Option<Vec<Bytes>>,
    /// Bytes in `encoded`.
    encoded_len: usize,
}

impl Partial {
    /// Bytes received so far (decoded, or still encoded).
    fn len(&self) -> usize {
        self.buf.len() + self.encoded_len
    }
}

/// A data message being received as [`Event::Chunk`]s.
struct RecvStream {
    kind: MessageKind,
    /// RSV bits of the first frame (extension-encoded message when non-zero).
    rsv: u8,
    utf8: Utf8Validator,
    /// Payload bytes handed out (or skipped) so far, after decoding.
    size: usize,
    /// [`Connection::cancel_stream`]: read and check the rest, emit nothing.
    discard: bool,
    /// A chunk of this message was emitted.
    announced: bool,
    /// The frame whose payload is being read, if its header was consumed.
    frame: Option<InFrame>,
}

/// The frame of a streamed message whose payload is being read.
#[derive(Clone, Copy)]
struct InFrame {
    mask: Option<[u8; 4]>,
    /// Payload bytes of the frame already read.
    offset: usize,
    /// Payload bytes of the frame still to come.
    left: usize,
    fin: bool,
}

/// A data message being sent in pieces.
struct SendStream {
    opcode: OpCode,
    /// A frame of it was queued.
    started: bool,
    /// The extension transforms it (decided on the first piece).
    transformed: bool,
    utf8: Utf8Validator,
}

/// A [`Connection`] between messages, without its buffers: see
/// [`Connection::suspend`].
pub struct Suspended {
    role: Role,
    extension: Option<Box<dyn Extension>>,
    close_handler: Option<CloseHandler>,
    fixed_mask: Option<[u8; 4]>,
    defer_decoding: bool,
}

impl fmt::Debug for Suspended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suspended")
            .field("role", &self.role)
            .field("extension", &self.extension.is_some())
            .finish_non_exhaustive()
    }
}

impl Suspended {
    /// The connection again, open, with `config`'s limits (not kept while
    /// suspended: they are usually one copy for many connections).
    pub fn resume(self, config: Config) -> Connection {
        let mut conn = Connection::with_config(self.role, config);
        conn.extension = self.extension;
        conn.close_handler = self.close_handler;
        conn.fixed_mask = self.fixed_mask;
        conn.defer_decoding = self.defer_decoding;
        conn
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// One WebSocket connection, without I/O.
///
/// Feed it what the transport reads ([`receive_data`](Self::receive_data)
/// or [`read_buf`](Self::read_buf), then [`receive_eof`](Self::receive_eof)
/// at end of stream), take [`next_event`](Self::next_event) until it gives
/// `None`, and write out [`data_to_send`](Self::data_to_send). Application
/// actions ([`send_text`](Self::send_text), [`ping`](Self::ping),
/// [`close`](Self::close), ...) queue bytes to send. When
/// [`close_expected`](Self::close_expected) is true, the transport should be
/// closed once the output is flushed (the server first, RFC 6455 §7.1.1).
///
/// Frames are parsed lazily, one per `next_event` call, so memory stays
/// bounded by what the application consumes.
///
/// ```
/// use silverback_proto::{Connection, Event, Message, Role};
/// let mut server = Connection::new(Role::Server);
/// // A masked text frame "Hello" from a client (RFC 6455 §5.7).
/// server.receive_data(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// assert_eq!(server.next_event().unwrap(), Some(Event::Message(Message::text("Hello"))));
/// server.send_text("Hello").unwrap();
/// assert_eq!(server.data_to_send(), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// ```
pub struct Connection {
    role: Role,
    config: Config,
    /// Open, closing, failed, ended: every decision about the end.
    life: Lifecycle,
    input: BytesMut,
    output: Output,
    /// Boxed, like `recv_stream`: most connections are between messages
    /// most of the time, and an idle connection should stay small.
    partial: Option<Box<Partial>>,
    /// Opcode of the fragmented message being sent, if any.
    sending_fragmented: Option<OpCode>,
    extension: Option<Box<dyn Extension>>,
    close_handler: Option<CloseHandler>,
    fixed_mask: Option<[u8; 4]>,
    /// Bytes known to be missing before the next frame can be parsed.
    needed: usize,
    /// Payload bytes of the incomplete text frame at the head of `input`
    /// already unmasked (in place) and fed to `scan_utf8`: invalid UTF-8
    /// fails the connection before the rest of the frame arrives.
    scanned: usize,
    scan_utf8: Utf8Validator,
    /// [`stream_next_message`](Self::stream_next_message) was asked.
    stream_next: bool,
    /// Whole compressed messages come out as [`Event::Encoded`].
    defer_decoding: bool,
    recv_stream: Option<Box<RecvStream>>,
    send_stream: Option<SendStream>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("life", &self.life)
            .field("buffered_in", &self.input.len())
            .field("buffered_out", &self.output.remaining())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection in the `Open` state with default limits.
    pub fn new(role: Role) -> Self {
        Self::with_config(role, Config::default())
    }

    /// A connection in the `Open` state with `config`.
    pub fn with_config(role: Role, config: Config) -> Self {
        Self {
            role,
            config,
            life: Lifecycle::new(),
            input: BytesMut::new(),
            output: Output::default(),
            partial: None,
            sending_fragmented: None,
            extension: None,
            fixed_mask: None,
            close_handler: None,
            needed: 2,
            scanned: 0,
            scan_utf8: Utf8Validator::new(),
            stream_next: false,
            defer_decoding: false,
            recv_stream: None,
            send_stream: None,
        }
    }

    /// Installs the extension negotiated in the handshake.
    /// Replaces the automatic reply to a peer's Close (by default the
    /// peer's code echoed with an empty reason, 1000 for an empty Close).
    /// The handler gets the peer's frame and returns ours; a code that may
    /// not be sent is replaced by 1000, a long reason is cut to 123 bytes.
    ///
    /// ```
    /// use silverback_proto::{CloseCode, CloseFrame, Connection, Role};
    /// let mut server = Connection::new(Role::Server);
    /// server.set_close_handler(Box::new(|_peer| CloseFrame::new(CloseCode::GoingAway, "bye")));
    /// ```
    pub fn set_close_handler(&mut self, handler: CloseHandler) {
        self.close_handler = Some(handler);
    }

    /// Installs the extension negotiated in the handshake.
    pub fn set_extension(&mut self, ext: Box<dyn Extension>) {
        self.extension = Some(ext);
    }

    /// Uses `key` to mask every frame instead of a fresh random key.
    /// For byte-exact tests only: a real client must use random keys.
    #[doc(hidden)]
    pub fn set_fixed_mask_key(&mut self, key: [u8; 4]) {
        self.fixed_mask = Some(key);
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        if self.life.eof_received || matches!(self.life.transport, Transport::Done(_)) {
            State::Closed
        } else if self.life.close_was_sent() || self.life.input_closed() {
            State::Closing
        } else {
            State::Open
        }
    }

    // ----- input -------------------------------------------------------

    /// Appends bytes read from the transport.
    pub fn receive_data(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    /// The input buffer, to read into directly (no copy). Bytes appended to
    /// it are treated like [`receive_data`](Self::receive_data).
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Bytes received but not yet parsed into events.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// A lower bound on the bytes still missing before the next frame is
    /// complete (useful to size reads).
    pub fn bytes_needed(&self) -> usize {
        self.needed
    }

    /// Tells the connection the transport reached end of stream. Events
    /// already buffered can still be taken; the state becomes `Closed`, and
    /// the transport's write side is to be shut ([`eof_to_send`](Self::eof_to_send)).
    pub fn receive_eof(&mut self) {
        self.life.received_eof();
    }

    /// Whether end of stream was seen.
    pub fn eof_received(&self) -> bool {
        self.life.eof_received
    }

    /// Parses the next event from buffered input.
    ///
    /// `Ok(None)` means more input is needed (or nothing more will be
    /// parsed: after a Close frame was received or the connection failed).
    /// On a protocol error, a Close frame with the matching code is queued
    /// (unless one was already sent), the connection stops parsing, and
    /// [`close_expected`](Self::close_expected) becomes true.
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            if self.life.input_closed() {
                return Ok(None);
            }
            if self.recv_stream.as_ref().is_some_and(|s| s.frame.is_some()) {
                match self.stream_payload() {
                    Ok(Some(ev)) => return Ok(Some(ev)),
                    Ok(None) if self.input.is_empty() => return Ok(None),
                    Ok(None) => continue,
                    Err(e) => return Err(self.fail_protocol(e)),
                }
            }
            let (header, header_len) = match decode_header(&self.input) {
                Ok(Decoded::Header(h, n)) => (h, n),
                Ok(Decoded::Incomplete(n)) => {
                    self.needed = n;
                    return Ok(None);
                }
                Err(e) => return Err(self.fail_protocol(e.into())),
            };
            if let Err(e) = self.check_header(&header) {
                return Err(self.fail_protocol(e));
            }
            if (self.stream_next || self.recv_stream.is_some()) && self.streams(&header) {
                self.start_stream_frame(&header, header_len);
                continue;
            }
            // Checked against max_frame_size (a usize) above.
            let payload_len = header.payload_len as usize;
            let total = header_len.saturating_add(payload_len);
            if self.input.len() < total {
                self.needed = total - self.input.len();
                // Only what a header alone may make us allocate: the length
                // is the peer's claim (up to 2^63-1 when the limits are
                // lifted), and reserving all of it would panic or let a
                // few bytes pin a large buffer. The buffer grows as the
                // payload actually arrives.
                self.input.reserve(self.needed.min(MAX_PREALLOC));
                if let Err(e) = self.scan_text_prefix(&header, header_len) {
                    return Err(self.fail_protocol(e));
                }
                return Ok(None);
            }
            self.needed = 2;
            self.input.advance(header_len);
            let mut payload = self.input.split_to(payload_len);
            let scanned = std::mem::take(&mut self.scanned);
            if let Some(key) = header.mask {
                apply_mask(&mut payload[scanned..], rotate_key(key, scanned));
            }
            match self.handle_frame(header, payload) {
                Ok(Some(ev)) => return Ok(Some(ev)),
                Ok(None) => continue,
                Err(e) => return Err(self.fail_protocol(e)),
            }
        }
    }

    /// Fails fast on invalid UTF-8 in a text frame that is still arriving
    /// (Autobahn 6.4.3/6.4.4): unmasks and checks the payload bytes received
    /// since the last call. The complete frame is still validated as usual.
    fn scan_text_prefix(
        &mut self,
        h: &FrameHeader,
        header_len: usize,
    ) -> Result<(), ProtocolError> {
        let text = h.rsv == 0
            && match (h.opcode, &self.partial) {
                (OpCode::Text, _) => true,
                (OpCode::Continuation, Some(p)) => p.opcode == OpCode::Text && p.rsv == 0,
                _ => false,
            };
        let avail = self.input.len().saturating_sub(header_len);
        if !text || avail <= self.scanned {
            return Ok(());
        }
        if self.scanned == 0 {
            self.scan_utf8 = match &self.partial {
                Some(p) if h.opcode == OpCode::Continuation => p.utf8.clone(),
                _ => Utf8Validator::new(),
            };
        }
        let new = &mut self.input[header_len + self.scanned..header_len + avail];
        if let Some(key) = h.mask {
            apply_mask(new, rotate_key(key, self.scanned));
        }
        self.scanned = avail;
        self.scan_utf8
            .feed(new)
            .map_err(|_| ProtocolError::InvalidUtf8)
    }

    fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let allowed = match (h.opcode, &self.extension) {
            (OpCode::Text | OpCode::Binary, Some(ext)) => ext.rsv_bits(),
            _ => 0,
        };
        if h.rsv & !allowed != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        let in_message = self.partial.is_some() || self.recv_stream.is_some();
        match (h.opcode, in_message) {
            (OpCode::Continuation, false) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, true) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => {}
        }
        if h.payload_len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len: h.payload_len,
                max: self.config.max_frame_size,
            });
        }
        if !h.opcode.is_control() {
            let so_far = match (&self.partial, &self.recv_stream) {
                (Some(p), _) => p.len(),
                (None, Some(s)) => s.size,
                (None, None) => 0,
            } as u64;
            if so_far + h.payload_len > self.config.max_message_size as u64 {
                return Err(ProtocolError::MessageTooLarge {
                    max: self.config.max_message_size,
                });
            }
        }
        Ok(())
    }

    fn handle_frame(
        &mut self,
        h: FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Event>, ProtocolError> {
        match h.opcode {
            OpCode::Ping => {
                let payload = payload.freeze();
                if self.config.auto_pong && !self.life.close_was_sent() {
                    self.write_frame(OpCode::Pong, true, 0, &payload);
                }
                Ok(Some(Event::Ping(payload)))
            }
            OpCode::Pong => Ok(Some(Event::Pong(payload.freeze()))),
            OpCode::Close => {
                let frame = parse_close_payload(payload.freeze())?;
                let mut echoed = None;
                if !self.life.close_was_sent() {
                    // Echo the code (1000 for an empty Close), RFC 6455
                    // §5.5.1, unless a close handler picks the reply.
                    let echo = match self.close_handler.as_mut() {
                        Some(handler) => handler(frame.as_ref()),
                        None => {
                            let code = frame.as_ref().map_or(CloseCode::Normal, |f| f.code);
                            CloseFrame::new(code, Utf8Bytes::new())
                        }
                    };
                    let echo = if echo.code.is_sendable() {
                        CloseFrame::new(echo.code, truncate_reason(&echo.reason))
                    } else {
                        CloseFrame::new(CloseCode::Normal, Utf8Bytes::new())
                    };
                    let bytes = ClosePayload::new(Some(&echo));
                    self.write_frame(OpCode::Close, true, 0, bytes.as_bytes());
                    echoed = Some(Some(echo));
                }
                let server = self.role == Role::Server;
                self.life.received_close(frame.clone(), echoed, server);
                self.partial = None;
                self.recv_stream = None;
                Ok(Some(Event::Close(frame)))
            }
            OpCode::Text | OpCode::Binary if h.fin && h.rsv == 0 => {
                // The common case: a whole message in one frame, no copy.
                let data = payload.freeze();
                let msg = if h.opcode == OpCode::Text {
                    Message::Text(
                        Utf8Bytes::try_from(data).map_err(|_| ProtocolError::InvalidUtf8)?,
                    )
                } else {
                    Message::Binary(data)
                };
                Ok(Some(Event::Message(msg)))
            }
            OpCode::Text | OpCode::Binary => {
                let mut p = Partial {
                    opcode: h.opcode,
                    rsv: h.rsv,
                    buf: BytesMut::new(),
                    utf8: Utf8Validator::new(),
                    encoded: (self.defer_decoding && h.rsv != 0).then(Vec::new),
                    encoded_len: 0,
                };
                self.append(&mut p, payload, h.fin)?;
                if h.fin {
                    return self.finish(p).map(Some);
                }
                self.partial = Some(Box::new(p));
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(mut p) = self.partial.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                self.append(&mut p, payload, h.fin)?;
                if h.fin {
                    return self.finish(*p).map(Some);
                }
                self.partial = Some(p);
                Ok(None)
            }
        }
    }

    /// Adds one frame's payload to a message being assembled.
    fn append(
        &mut self,
        p: &mut Partial,
        payload: BytesMut,
        fin: bool,
    ) -> Result<(), ProtocolError> {
        if let Some(parts) = p.encoded.as_mut() {
            // Decoded later, outside (the compressed size was checked
            // against the limits from the header).
            p.encoded_len += payload.len();
            parts.push(payload.freeze());
            return Ok(());
        }
        let payload = &payload[..];
        let start = p.buf.len();
        if p.rsv != 0 {
            let ext = self
                .extension
                .as_mut()
                .ok_or(ProtocolError::ReservedBits(p.rsv))?;
            ext.decode(
                p.rsv,
                payload,
                fin,
                &mut p.buf,
                self.config.max_message_size,
            )
            .map_err(ProtocolError::Extension)?;
            if p.buf.len() > self.config.max_message_size {
                return Err(ProtocolError::MessageTooLarge {
                    max: self.config.max_message_size,
                });
            }
        } else {
            p.buf.extend_from_slice(payload);
        }
        if p.opcode == OpCode::Text {
            p.utf8
                .feed(&p.buf[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    fn finish(&mut self, mut p: Partial) -> Result<Event, ProtocolError> {
        if let Some(parts) = p.encoded.take() {
            let kind = if p.opcode == OpCode::Text {
                MessageKind::Text
            } else {
                MessageKind::Binary
            };
            return Ok(Event::Encoded(EncodedMessage {
                kind,
                rsv: p.rsv,
                parts,
            }));
        }
        let data = p.buf.freeze();
        let msg = if p.opcode == OpCode::Text {
            p.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            Message::Text(Utf8Bytes::try_from(data).map_err(|_| ProtocolError::InvalidUtf8)?)
        } else {
            Message::Binary(data)
        };
        Ok(Event::Message(msg))
    }

    // ----- decoding outside the connection --------------------------------

    /// With `on`, a whole compressed message (whose first frame arrives
    /// from now on) comes out of [`next_event`](Self::next_event) as an
    /// [`Event::Encoded`], still compressed: decode it with
    /// [`EncodedMessage::decode`] and the decoder from
    /// [`take_decoder`](Self::take_decoder), without holding the
    /// connection (a reader half does not block its writer half while it
    /// inflates). Streamed messages ([`stream_next_message`](Self::stream_next_message))
    /// are still decoded inside, a bounded piece at a time.
    ///
    /// ```
    /// use silverback_proto::extension::deflate::{DeflateConfig, DeflateParams, PerMessageDeflate};
    /// use silverback_proto::{Connection, Event, Message, Role};
    /// let params = DeflateParams {
    ///     server_no_context_takeover: false,
    ///     client_no_context_takeover: false,
    ///     server_max_window_bits: 15,
    ///     client_max_window_bits: 15,
    /// };
    /// let cfg = DeflateConfig::default();
    /// let mut client = Connection::new(Role::Client);
    /// client.set_extension(Box::new(PerMessageDeflate::new(Role::Client, params, &cfg)));
    /// let mut server = Connection::new(Role::Server);
    /// server.set_extension(Box::new(PerMessageDeflate::new(Role::Server, params, &cfg)));
    /// server.set_defer_decoding(true);
    ///
    /// client.send_text(&"compress me ".repeat(100)).unwrap();
    /// server.receive_data(&client.take_data_to_send());
    /// let Some(Event::Encoded(encoded)) = server.next_event().unwrap() else { panic!() };
    /// let mut decoder = server.take_decoder().unwrap();
    /// let msg = encoded.decode(&mut decoder); // without `server`
    /// server.put_decoder(decoder);
    /// assert_eq!(msg.unwrap(), Message::text("compress me ".repeat(100)));
    /// ```
    pub fn set_defer_decoding(&mut self, on: bool) {
        self.defer_decoding = on;
    }

    /// Takes the extension's decoder out, for [`EncodedMessage::decode`];
    /// `None` without an extension that allows it (or while it is out).
    /// Give it back with [`put_decoder`](Self::put_decoder) before the
    /// connection decodes again (a streamed or, without deferred
    /// decoding, any compressed message).
    pub fn take_decoder(&mut self) -> Option<MessageDecoder> {
        let inner = self.extension.as_mut()?.take_decoder()?;
        Some(MessageDecoder {
            inner,
            max_message_size: self.config.max_message_size,
        })
    }

    /// Gives back the decoder taken with [`take_decoder`](Self::take_decoder).
    pub fn put_decoder(&mut self, decoder: MessageDecoder) {
        if let Some(ext) = self.extension.as_mut() {
            ext.put_decoder(decoder.inner);
        }
    }

    /// Decoding an [`EncodedMessage`] failed with `err`: fails the
    /// connection with its close code, as if it had happened inside.
    pub fn decoding_failed(&mut self, err: ProtocolError) {
        self.fail_protocol(err);
    }

    // ----- streamed receive ----------------------------------------------

    /// Asks for the next data message to be delivered as it arrives, in
    /// [`Event::Chunk`]s, instead of assembled into one
    /// [`Event::Message`]: memory stays bounded by what the transport
    /// delivers at once, whatever the message's size. The same checks
    /// apply (UTF-8 for text, failing fast with 1007;
    /// [`Config::max_message_size`] over all fragments, 1009;
    /// permessage-deflate decoded piece by piece, each chunk inflated from
    /// at most 8 KiB of compressed data). Control frames between
    /// fragments come as usual.
    ///
    /// It applies to one message: the next one that starts (a message
    /// whose first frame was already received is still assembled and
    /// comes whole). `false` withdraws the request if no message started.
    ///
    /// ```
    /// use silverback_proto::{Connection, Event, MessageKind, OpCode, Role};
    /// let mut client = Connection::new(Role::Client);
    /// let mut server = Connection::new(Role::Server);
    /// client.send_fragment(OpCode::Text, "caf".as_bytes(), false).unwrap();
    /// client.send_fragment(OpCode::Continuation, "é".as_bytes(), true).unwrap();
    /// server.receive_data(&client.take_data_to_send());
    /// server.stream_next_message(true);
    /// let mut text = Vec::new();
    /// while let Some(Event::Chunk { kind, data, fin }) = server.next_event().unwrap() {
    ///     assert_eq!(kind, MessageKind::Text);
    ///     text.extend_from_slice(&data);
    ///     if fin {
    ///         break;
    ///     }
    /// }
    /// assert_eq!(text, "café".as_bytes());
    /// ```
    pub fn stream_next_message(&mut self, on: bool) {
        self.stream_next = on;
    }

    /// Whether a message is being received in [`Event::Chunk`]s (its
    /// first frame came, its last did not).
    pub fn is_streaming_message(&self) -> bool {
        self.recv_stream.is_some()
    }

    /// Stops streaming: the rest of the message being streamed is still
    /// read and checked (UTF-8, size, decompression) but yields no more
    /// chunks; the message after it is assembled as usual. If no message
    /// started, withdraws [`stream_next_message`](Self::stream_next_message).
    ///
    /// ```
    /// use silverback_proto::{Connection, Event, Message, OpCode, Role};
    /// let mut client = Connection::new(Role::Client);
    /// let mut server = Connection::new(Role::Server);
    /// client.send_fragment(OpCode::Binary, b"skip", false).unwrap();
    /// server.receive_data(&client.take_data_to_send());
    /// server.stream_next_message(true);
    /// assert!(matches!(server.next_event().unwrap(), Some(Event::Chunk { fin: false, .. })));
    /// server.cancel_stream();
    /// client.send_fragment(OpCode::Continuation, b" me", true).unwrap();
    /// client.send_text("next").unwrap();
    /// server.receive_data(&client.take_data_to_send());
    /// assert_eq!(server.next_event().unwrap(), Some(Event::Message(Message::text("next"))));
    /// ```
    pub fn cancel_stream(&mut self) {
        self.stream_next = false;
        if let Some(s) = self.recv_stream.as_mut() {
            s.discard = true;
        }
    }

    /// Whether this data frame (checked) belongs to a streamed message.
    fn streams(&self, h: &FrameHeader) -> bool {
        match h.opcode {
            OpCode::Text | OpCode::Binary => self.stream_next,
            OpCode::Continuation => self.recv_stream.is_some(),
            _ => false,
        }
    }

    /// Consumes the header of a streamed message's frame; its payload is
    /// handed out as it arrives by [`stream_payload`](Self::stream_payload).
    fn start_stream_frame(&mut self, h: &FrameHeader, header_len: usize) {
        self.input.advance(header_len);
        if h.opcode != OpCode::Continuation {
            self.stream_next = false;
            self.recv_stream = Some(Box::new(RecvStream {
                kind: if h.opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                },
                rsv: h.rsv,
                utf8: Utf8Validator::new(),
                size: 0,
                discard: false,
                announced: false,
                frame: None,
            }));
        }
        if let Some(s) = self.recv_stream.as_mut() {
            s.frame = Some(InFrame {
                mask: h.mask,
                offset: 0,
                // Checked against max_frame_size (a usize).
                left: h.payload_len as usize,
                fin: h.fin,
            });
        }
    }

    /// Hands out the payload of the streamed frame received so far.
    fn stream_payload(&mut self) -> Result<Option<Event>, ProtocolError> {
        let Some(s) = self.recv_stream.as_mut() else {
            return Ok(None);
        };
        let Some(f) = s.frame.as_mut() else {
            return Ok(None);
        };
        let mut n = f.left.min(self.input.len());
        if s.rsv != 0 {
            n = n.min(STREAM_INFLATE_STEP);
        }
        let mut data = self.input.split_to(n);
        if let Some(key) = f.mask {
            apply_mask(&mut data, rotate_key(key, f.offset));
        }
        f.offset += n;
        f.left -= n;
        let frame_done = f.left == 0;
        let fin = frame_done && f.fin;
        if frame_done {
            s.frame = None;
            self.needed = 2;
        } else {
            self.needed = f.left;
        }
        let max = self.config.max_message_size;
        let data = if s.rsv != 0 {
            let ext = self
                .extension
                .as_mut()
                .ok_or(ProtocolError::ReservedBits(s.rsv))?;
            let room = max.saturating_sub(s.size);
            let mut out = BytesMut::new();
            ext.decode(s.rsv, &data, fin, &mut out, room)
                .map_err(ProtocolError::Extension)?;
            if out.len() > room {
                return Err(ProtocolError::MessageTooLarge { max });
            }
            out.freeze()
        } else {
            // The frame's declared length was checked against the limit.
            data.freeze()
        };
        s.size += data.len();
        if s.kind == MessageKind::Text {
            s.utf8.feed(&data).map_err(|_| ProtocolError::InvalidUtf8)?;
            if fin {
                s.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        let emit = !s.discard && (fin || !data.is_empty() || !s.announced);
        s.announced |= emit;
        let kind = s.kind;
        if fin {
            self.recv_stream = None;
        }
        Ok(emit.then_some(Event::Chunk { kind, data, fin }))
    }

    /// The peer broke the protocol: fail the connection with the error's
    /// close code.
    fn fail_protocol(&mut self, err: ProtocolError) -> ProtocolError {
        let frame = CloseFrame::new(err.close_code(), Utf8Bytes::from_static(err.reason()));
        self.fail_with(Failure::Protocol(err.clone()), frame);
        err
    }

    /// Fails the connection (RFC 6455 §7.1.7): queues a Close with `code`
    /// and `reason` (unless a Close was already sent), stops parsing input,
    /// and asks for the transport to be shut once the output is written
    /// ([`eof_to_send`](Self::eof_to_send)), by either role. The end is
    /// reported as [`End::Failed`]. Use it when the application, not the
    /// peer, finds the connection unusable (e.g. a message it cannot
    /// handle); a peer's protocol error fails the connection by itself.
    ///
    /// ```
    /// use silverback_proto::{CloseCode, Connection, Role, State};
    /// let mut conn = Connection::new(Role::Client);
    /// conn.fail(CloseCode::PolicyViolation, "not for me").unwrap();
    /// assert_eq!(conn.state(), State::Closing);
    /// assert!(conn.close_expected());
    /// conn.take_data_to_send();
    /// assert!(conn.eof_to_send()); // even a client shuts first after failing
    /// ```
    ///
    /// # Errors
    /// [`SendError::InvalidCloseCode`] for a code that may not be sent
    /// (nothing changes then).
    pub fn fail(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if !code.is_sendable() {
            return Err(SendError::InvalidCloseCode(code));
        }
        let frame = CloseFrame::new(code, truncate_reason(reason));
        self.fail_with(Failure::Local(frame.clone()), frame);
        Ok(())
    }

    fn fail_with(&mut self, cause: Failure, frame: CloseFrame) {
        let mut queued = None;
        if !self.life.close_was_sent() {
            let bytes = ClosePayload::new(Some(&frame));
            self.write_frame(OpCode::Close, true, 0, bytes.as_bytes());
            queued = Some(frame);
        }
        self.life.failed(cause, queued);
        self.partial = None;
        self.recv_stream = None;
        self.stream_next = false;
        self.input.clear();
        self.scanned = 0;
    }

    // ----- output ------------------------------------------------------

    /// The first contiguous piece of the output queued for the transport:
    /// all of it, unless a large payload was queued by reference (see
    /// [`send`](Self::send)); then write the pieces with
    /// [`data_to_send_vectored`](Self::data_to_send_vectored), or one by one.
    pub fn data_to_send(&self) -> &[u8] {
        self.output.chunk()
    }

    /// Fills `dst` with the pieces of the queued output, in order, and
    /// returns how many it filled: what a vectored write takes.
    pub fn data_to_send_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        self.output.chunks_vectored(dst)
    }

    /// Bytes queued for the transport, in all pieces.
    pub fn output_len(&self) -> usize {
        self.output.remaining()
    }

    /// Marks the first `n` bytes of the queued output as written (they may
    /// span several pieces).
    ///
    /// # Panics
    /// If `n` is more than [`output_len`](Self::output_len).
    pub fn advance_data_to_send(&mut self, n: usize) {
        self.output.advance(n);
    }

    /// Takes all queued output at once, in one buffer.
    pub fn take_data_to_send(&mut self) -> BytesMut {
        self.output.take_all()
    }

    /// Whether output is queued.
    pub fn has_data_to_send(&self) -> bool {
        self.output.has_remaining()
    }

    /// Frees the input and output buffers' memory if they are empty (for
    /// idle connections).
    pub fn shrink_buffers(&mut self) {
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
        self.output.shrink();
    }

    fn check_can_send(&self) -> Result<(), SendError> {
        if self.life.close_was_sent() {
            Err(SendError::Closing)
        } else {
            Ok(())
        }
    }

    /// Sends a whole text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_message(OpCode::Text, text.as_bytes())
    }

    /// Sends a whole binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_message(OpCode::Binary, data)
    }

    /// Sends a [`Message`]. A server queues a payload of 16 KiB or more
    /// by reference (the message's [`Bytes`] are shared, not copied) when
    /// no extension transforms it: see
    /// [`data_to_send_vectored`](Self::data_to_send_vectored).
    pub fn send(&mut self, msg: &Message) -> Result<(), SendError> {
        self.send_with(msg, None)
    }

    /// Sends a [`Message`], overriding the negotiated extension for this
    /// one: `Some(false)` sends it uncompressed, `Some(true)` compresses it
    /// even below the size threshold, `None` lets the extension decide.
    pub fn send_with(&mut self, msg: &Message, transform: Option<bool>) -> Result<(), SendError> {
        match msg {
            Message::Text(t) => {
                let bytes = t.as_bytes();
                self.send_message_with(OpCode::Text, bytes, Some(bytes), transform)
            }
            Message::Binary(b) => self.send_message_with(OpCode::Binary, b, Some(b), transform),
        }
    }

    /// Whether an extension (permessage-deflate) was negotiated.
    pub fn has_extension(&self) -> bool {
        self.extension.is_some()
    }

    /// Frees what an idle connection can rebuild on its next message: empty
    /// buffers and the extension's reusable state.
    pub fn release_idle_memory(&mut self) {
        self.shrink_buffers();
        if let Some(ext) = self.extension.as_mut() {
            ext.release_memory();
        }
    }

    fn send_message(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.send_message_with(opcode, payload, None, None)
    }

    /// Sends a whole message. When its payload is also held in a [`Bytes`]
    /// (`shared`), a large one a server sends untransformed is queued by
    /// reference instead of copied.
    fn send_message_with(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        shared: Option<&Bytes>,
        transform: Option<bool>,
    ) -> Result<(), SendError> {
        self.check_can_send()?;
        if self.sending_fragmented.is_some() {
            return Err(SendError::Fragmentation);
        }
        if let Some(ext) = self.extension.as_mut() {
            let mut encoded = BytesMut::new();
            if let Some(rsv) = ext
                .encode_with(opcode, payload, &mut encoded, transform)
                .map_err(SendError::Extension)?
            {
                self.write_frame(opcode, true, rsv, &encoded);
                return Ok(());
            }
        }
        match shared {
            Some(shared) => self.queue_frame(opcode, 0, shared),
            None => self.write_frame(opcode, true, 0, payload),
        }
        Ok(())
    }

    /// Queues a whole frame whose payload is held in a [`Bytes`]: a large
    /// one a server sends is queued by reference, the rest copied.
    fn queue_frame(&mut self, opcode: OpCode, rsv: u8, payload: &Bytes) {
        if self.role != Role::Server || payload.len() < ZERO_COPY_MIN {
            self.write_frame(opcode, true, rsv, payload);
            return;
        }
        let header = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; 14];
        let mut cursor = &mut head[..];
        encode_header(&mut cursor, &header);
        let head_len = 14 - cursor.len();
        self.output.push_shared(&head[..head_len], payload.clone());
    }

    /// Sends a [`PreparedMessage`]: encoded once for every server-side
    /// peer with the same wire form (see its docs), no copy of a large
    /// payload per peer. Like [`send`](Self::send) otherwise.
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), SendError> {
        // Without an extension, `send` shares the payload already; a client
        // masks with a fresh key, and an extension keeping context encodes
        // its own copy.
        let key = match (&self.extension, self.role) {
            (Some(ext), Role::Server) => ext.shared_encoding_key(),
            _ => None,
        };
        let Some(key) = key else {
            return self.send(prepared.message());
        };
        self.check_can_send()?;
        if self.sending_fragmented.is_some() {
            return Err(SendError::Fragmentation);
        }
        let ext = self.extension.as_mut().expect("checked above");
        let (opcode, bytes) = match prepared.message() {
            Message::Text(t) => (OpCode::Text, t.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        };
        let form = prepared
            .encoded_with(key, |msg| {
                let mut out = BytesMut::new();
                Ok(ext
                    .encode_with(opcode, msg.as_bytes(), &mut out, None)?
                    .map(|rsv| (rsv, out.freeze())))
            })
            .map_err(SendError::Extension)?;
        match form {
            Some((rsv, payload)) => self.queue_frame(opcode, rsv, &payload),
            None => self.queue_frame(opcode, 0, bytes),
        }
        Ok(())
    }

    /// Sends one fragment of a message: the first with `Text` or `Binary`,
    /// the following with `Continuation`, the last with `fin = true`.
    /// Control frames may be sent between fragments. Fragments bypass
    /// extensions.
    pub fn send_fragment(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        self.check_can_send()?;
        if self.send_stream.is_some() {
            return Err(SendError::Fragmentation);
        }
        match (opcode, self.sending_fragmented) {
            (OpCode::Text | OpCode::Binary, None) => {}
            (OpCode::Continuation, Some(_)) => {}
            _ => return Err(SendError::Fragmentation),
        }
        self.sending_fragmented = if fin {
            None
        } else if opcode == OpCode::Continuation {
            self.sending_fragmented
        } else {
            Some(opcode)
        };
        self.write_frame(opcode, fin, 0, payload);
        Ok(())
    }

    /// Starts a data message sent in pieces with
    /// [`send_message_part`](Self::send_message_part). Unlike
    /// [`send_fragment`](Self::send_fragment), the pieces go through the
    /// negotiated extension (permessage-deflate compresses each one). Until
    /// its last piece, other data messages are refused
    /// ([`SendError::Fragmentation`]); control frames may be sent between
    /// pieces. Nothing is queued before the first piece.
    ///
    /// # Errors
    /// [`SendError::Fragmentation`] if a message is already being sent in
    /// pieces or fragments; [`SendError::Closing`] after a Close.
    pub fn begin_message(&mut self, kind: MessageKind) -> Result<(), SendError> {
        self.check_can_send()?;
        if self.sending_fragmented.is_some() {
            return Err(SendError::Fragmentation);
        }
        let opcode = kind.opcode();
        self.sending_fragmented = Some(opcode);
        self.send_stream = Some(SendStream {
            opcode,
            started: false,
            transformed: false,
            utf8: Utf8Validator::new(),
        });
        Ok(())
    }

    /// Queues the next piece of the message started with
    /// [`begin_message`](Self::begin_message) as one frame (`fin` on the
    /// last piece, which may be empty). With permessage-deflate, the first
    /// frame has RSV1 and each frame carries the compressed bytes of its
    /// piece, flushed so that the peer can inflate it at once.
    ///
    /// ```
    /// use silverback_proto::{Connection, Event, Message, MessageKind, Role};
    /// let mut client = Connection::new(Role::Client);
    /// let mut server = Connection::new(Role::Server);
    /// client.begin_message(MessageKind::Text).unwrap();
    /// client.send_message_part(&"café".as_bytes()[..4], false).unwrap(); // "caf" + half of "é"
    /// client.send_message_part(&"café".as_bytes()[4..], true).unwrap();
    /// server.receive_data(&client.take_data_to_send());
    /// assert_eq!(server.next_event().unwrap(), Some(Event::Message(Message::text("café"))));
    /// ```
    ///
    /// # Errors
    /// [`SendError::InvalidUtf8`] when a text message's bytes so far are
    /// not UTF-8 (or, with `fin`, end inside a character): nothing is
    /// queued and the message stays open. [`SendError::Fragmentation`]
    /// without a message begun; [`SendError::Closing`] after a Close.
    pub fn send_message_part(&mut self, data: &[u8], fin: bool) -> Result<(), SendError> {
        self.check_can_send()?;
        let Some(s) = self.send_stream.as_mut() else {
            return Err(SendError::Fragmentation);
        };
        if s.opcode == OpCode::Text {
            let mut utf8 = s.utf8.clone();
            utf8.feed(data).map_err(|_| SendError::InvalidUtf8)?;
            if fin {
                utf8.finish().map_err(|_| SendError::InvalidUtf8)?;
            }
            s.utf8 = utf8;
        }
        let first = !s.started;
        let opcode = if first {
            s.opcode
        } else {
            OpCode::Continuation
        };
        let mut encoded = None;
        if let Some(ext) = self.extension.as_mut().filter(|_| first || s.transformed) {
            let mut out = BytesMut::new();
            if let Some(rsv) = ext
                .encode_fragment(s.opcode, data, first, fin, &mut out)
                .map_err(SendError::Extension)?
            {
                s.transformed = true;
                encoded = Some((if first { rsv } else { 0 }, out));
            }
        }
        s.started = true;
        if fin {
            self.send_stream = None;
            self.sending_fragmented = None;
        }
        match encoded {
            Some((rsv, out)) => self.write_frame(opcode, fin, rsv, &out),
            None => self.write_frame(opcode, fin, 0, data),
        }
        Ok(())
    }

    /// Whether a message begun with [`begin_message`](Self::begin_message)
    /// awaits its last piece.
    pub fn is_sending_message(&self) -> bool {
        self.send_stream.is_some()
    }

    /// Abandons the message begun with [`begin_message`](Self::begin_message).
    /// If none of its pieces was queued, it is forgotten and the connection
    /// stays usable. Otherwise the peer holds part of it and the message
    /// cannot be finished truthfully: the connection fails with 1011
    /// ("message abandoned"), as [`fail`](Self::fail) does. Returns whether
    /// it failed.
    ///
    /// ```
    /// use silverback_proto::{Connection, MessageKind, Role, State};
    /// let mut conn = Connection::new(Role::Server);
    /// conn.begin_message(MessageKind::Binary).unwrap();
    /// assert!(!conn.abort_message()); // nothing was sent: no harm done
    /// conn.send_binary(b"ok").unwrap();
    /// conn.begin_message(MessageKind::Binary).unwrap();
    /// conn.send_message_part(b"half", false).unwrap();
    /// assert!(conn.abort_message());
    /// assert_eq!(conn.state(), State::Closing);
    /// ```
    pub fn abort_message(&mut self) -> bool {
        let Some(s) = self.send_stream.take() else {
            return false;
        };
        self.sending_fragmented = None;
        if !s.started || self.life.close_was_sent() {
            return false;
        }
        let frame = CloseFrame::new(
            CloseCode::InternalError,
            Utf8Bytes::from_static("message abandoned"),
        );
        self.fail_with(Failure::Local(frame.clone()), frame);
        true
    }

    /// Sends a Ping (payload at most 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Sends an unsolicited Pong (payload at most 125 bytes).
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_can_send()?;
        if payload.len() > frame::MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        self.write_frame(opcode, true, 0, payload);
        Ok(())
    }

    /// Starts the closing handshake: queues a Close frame with `code` and
    /// `reason` (cut to 123 bytes on a character boundary).
    /// [`CloseCode::NoStatusReceived`] sends a Close without payload.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.check_can_send()?;
        let frame = if code == CloseCode::NoStatusReceived {
            None
        } else if code.is_sendable() {
            Some(CloseFrame::new(code, truncate_reason(reason)))
        } else {
            return Err(SendError::InvalidCloseCode(code));
        };
        let bytes = ClosePayload::new(frame.as_ref());
        self.write_frame(OpCode::Close, true, 0, bytes.as_bytes());
        self.life.sent_close(frame, self.role == Role::Server);
        Ok(())
    }

    /// The Close frame sent, if any (`Some(None)`: sent without payload).
    pub fn close_sent(&self) -> Option<&Option<CloseFrame>> {
        self.life.close_sent()
    }

    /// The Close frame received, if any (`Some(None)`: received without payload).
    pub fn close_received(&self) -> Option<&Option<CloseFrame>> {
        self.life.close_received()
    }

    /// The protocol error that failed the connection, if any.
    pub fn failure(&self) -> Option<&ProtocolError> {
        self.life.failure()
    }

    /// Whether the transport should be closed: the closing handshake is
    /// complete, or the connection failed. When exactly this end shuts its
    /// write side is [`eof_to_send`](Self::eof_to_send): a server at once,
    /// a client once the server closed (RFC 6455 §7.1.1).
    pub fn close_expected(&self) -> bool {
        self.life.close_expected()
    }

    // ----- the end ----------------------------------------------------

    /// The end-of-output marker: `true` when everything queued has been
    /// taken and the transport's write side must now be shut (TCP FIN,
    /// TLS close_notify). Set once the closing handshake is done on a
    /// server, once the peer's end of stream came ([`receive_eof`](Self::receive_eof)),
    /// or when the connection failed. After shutting, call
    /// [`eof_sent`](Self::eof_sent).
    ///
    /// ```
    /// use silverback_proto::{CloseCode, Connection, Role};
    /// let mut client = Connection::new(Role::Client);
    /// let mut server = Connection::new(Role::Server);
    /// client.close(CloseCode::Normal, "").unwrap();
    /// server.receive_data(&client.take_data_to_send());
    /// server.next_event().unwrap(); // the Close; the echo is queued
    /// assert!(!server.eof_to_send()); // the echo goes first
    /// client.receive_data(&server.take_data_to_send());
    /// assert!(server.eof_to_send()); // the server closes TCP first
    /// client.next_event().unwrap();
    /// assert!(!client.eof_to_send()); // the client waits for the server's FIN
    /// client.receive_eof();
    /// assert!(client.eof_to_send());
    /// ```
    pub fn eof_to_send(&self) -> bool {
        self.life.transport == Transport::EofQueued && !self.output.has_remaining()
    }

    /// The transport's write side was shut (after [`eof_to_send`](Self::eof_to_send)):
    /// the connection is over and [`end`](Self::end) says how.
    pub fn eof_sent(&mut self) {
        self.life.finish(Finish::Shutdown);
    }

    /// The transport failed (a read or write error, a reset): the
    /// connection is over. [`end`](Self::end) is [`End::Abnormal`] unless
    /// the closing handshake had completed or the connection had failed
    /// (a peer may send its Close and reset at once: its code stands).
    pub fn transport_failed(&mut self) {
        self.life.finish(Finish::Io);
    }

    /// A timer of the I/O layer ran out: the connection is over. For a
    /// keepalive timeout a Close 1011, for an idle timeout a Close 1001 is
    /// queued first (if no Close was sent yet): write it out if the
    /// transport takes it at once, then shut it. [`end`](Self::end) is
    /// [`End::Timeout`], except that a close timeout after the handshake
    /// completed (a client waiting for the server's FIN) still ends cleanly.
    pub fn timeout(&mut self, which: Timeout) {
        if let Some((code, reason)) = self.life.timeout_close(which) {
            let frame = CloseFrame::new(code, Utf8Bytes::from_static(reason));
            let bytes = ClosePayload::new(Some(&frame));
            self.write_frame(OpCode::Close, true, 0, bytes.as_bytes());
            self.life.sent_close(Some(frame), self.role == Role::Server);
        }
        self.life.finish(Finish::Timeout(which));
    }

    /// How the connection ended, once it is over ([`eof_sent`](Self::eof_sent),
    /// [`transport_failed`](Self::transport_failed) or
    /// [`timeout`](Self::timeout)); `None` while it runs. The one answer
    /// the async layer, logs and metrics report.
    pub fn end(&self) -> Option<End> {
        self.life.end()
    }

    /// Whether [`suspend`](Self::suspend) would succeed: the connection is
    /// open and between messages, with nothing received that is not yet
    /// parsed and nothing queued to send.
    pub fn is_suspendable(&self) -> bool {
        self.life.is_untouched()
            && self.input.is_empty()
            && self.output.is_empty()
            && self.partial.is_none()
            && self.sending_fragmented.is_none()
            && self.recv_stream.is_none()
            && self.send_stream.is_none()
            && !self.stream_next
    }

    /// The connection in its compact form, for holding many idle ones:
    /// its buffers are freed and only what outlives a message is kept
    /// (role, the negotiated extension with any compression context, the
    /// close handler). Gives the connection back unchanged if it is not
    /// [suspendable](Self::is_suspendable).
    ///
    /// ```
    /// use silverback_proto::{Config, Connection, Event, Message, Role};
    /// let mut server = Connection::new(Role::Server);
    /// server.send_text("hi").unwrap();
    /// // Something is queued to send: not yet.
    /// let mut server = server.suspend().unwrap_err();
    /// server.take_data_to_send(); // the transport took it
    /// let idle = server.suspend().expect("between messages");
    /// let mut server = idle.resume(Config::default());
    /// server.receive_data(&[0x81, 0x82, 1, 2, 3, 4, b'o' ^ 1, b'k' ^ 2]);
    /// assert_eq!(server.next_event().unwrap(), Some(Event::Message(Message::text("ok"))));
    /// ```
    #[allow(clippy::result_large_err)] // gives the connection back as it was, no allocation
    pub fn suspend(self) -> Result<Suspended, Self> {
        if !self.is_suspendable() {
            return Err(self);
        }
        Ok(Suspended {
            role: self.role,
            extension: self.extension,
            close_handler: self.close_handler,
            fixed_mask: self.fixed_mask,
            defer_decoding: self.defer_decoding,
        })
    }

    /// Whether the connection is over (see [`end`](Self::end)).
    pub fn is_over(&self) -> bool {
        matches!(self.life.transport, Transport::Done(_))
    }

    fn write_frame(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(self.fixed_mask.unwrap_or_else(rand::random)),
        };
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let out = self.output.tail_mut();
        out.reserve(frame::header_len(payload.len() as u64, mask.is_some()) + payload.len());
        encode_header(out, &header);
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key);
        }
    }
}

/// `key` as it applies from payload offset `offset` on.
fn rotate_key(mut key: [u8; 4], offset: usize) -> [u8; 4] {
    key.rotate_left(offset % 4);
    key
}
