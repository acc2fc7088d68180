//! In-memory connections for tests: timeouts, keepalive and shutdown
//! deadlines on tokio's paused clock, without sockets and without waiting.
//!
//! - [`pair`]: one of our clients connected to one of our servers.
//! - [`raw_peer`]: one of our WebSockets connected to a [`RawPeer`] that
//!   does nothing by itself: it writes the frames (or bytes) it is told to
//!   and reads frames when asked. So it can leave Pings unanswered, never
//!   answer a Close, never read (its buffer fills up and our writes stall),
//!   or vanish (drop it).
//!
//! Both ends run over a [`tokio::io::duplex`] pipe whose buffer (each
//! direction) holds [`DEFAULT_BUFFER_SIZE`] bytes (`*_with_buffer` to choose
//! another size): a writer whose peer does not read is blocked once that
//! much is in flight, as with a socket's buffers, only smaller and exactly
//! known. The opening handshake is considered done
//! ([`WebSocket::from_raw_socket`]); no extension is negotiated (to test
//! compression, run [`Upgrader::upgrade`](crate::Upgrader::upgrade) and
//! [`Dialer::handshake`](crate::Dialer::handshake) over a
//! `tokio::io::duplex` yourself).
//!
//! A connection can be registered with a [`Shutdown`](crate::Shutdown) like
//! any other (`shutdown.track(&mut ws)`), so shutdown deadlines can be
//! tested the same way.
//!
//! # Paused clock
//! With `#[tokio::test(start_paused = true)]` (tokio's `test-util`
//! feature), time stands still while any task can make progress and jumps
//! to the next timer when all are idle: a 30 s timeout fires at once, after
//! exactly 30 s of virtual time. That is sound with in-memory streams only:
//! with real sockets, time could jump while bytes are still on their way.
//!
//! ```
//! use std::time::Duration;
//! use silverback::{testing, CloseCode, Config, ErrorKind, Role, Timeout};
//! use tokio::time::Instant;
//!
//! // In a test: #[tokio::test(start_paused = true)]
//! let rt = tokio::runtime::Builder::new_current_thread()
//!     .enable_time()
//!     .start_paused(true)
//!     .build()
//!     .unwrap();
//! rt.block_on(async {
//!     const IDLE: Duration = Duration::from_secs(30);
//!     let config = Config::default().ping_interval(None).idle_timeout(Some(IDLE));
//!     // Our server, and a client that sends nothing.
//!     let (mut ws, mut peer) = testing::raw_peer(Role::Server, config);
//!     let start = Instant::now();
//!     let err = ws.recv().await.unwrap_err();
//!     assert!(matches!(err.kind(), ErrorKind::Timeout(Timeout::Idle)));
//!     assert_eq!(start.elapsed(), IDLE); // virtual time: exact, and instant
//!
//!     // The peer got a Close frame "1001 idle timeout", then the end of stream.
//!     let close = peer.read_frame().await.unwrap().expect("a Close frame");
//!     let frame = close.close_frame().unwrap();
//!     assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::GoingAway, "idle timeout"));
//!     assert!(peer.read_frame().await.unwrap().is_none());
//! });
//! ```
//!
//! A shutdown deadline, with a peer that never answers the 1001:
//!
//! ```
//! use std::time::Duration;
//! use silverback::{testing, Config, OpCode, Role, Shutdown};
//!
//! let rt = tokio::runtime::Builder::new_current_thread()
//!     .enable_time()
//!     .start_paused(true)
//!     .build()
//!     .unwrap();
//! rt.block_on(async {
//!     let shutdown = Shutdown::new();
//!     // A close timeout longer than the deadline: the deadline comes first.
//!     let config = Config::default().close_timeout(Duration::from_secs(60));
//!     let (mut ws, mut peer) = testing::raw_peer(Role::Server, config);
//!     shutdown.track(&mut ws);
//!     let server = tokio::spawn(async move { ws.recv().await });
//!
//!     let report = shutdown.shutdown(Duration::from_secs(10)).await;
//!     assert_eq!((report.closed_cleanly, report.forced), (0, 1));
//!     assert_eq!(report.elapsed, Duration::from_secs(10));
//!     assert!(server.await.unwrap().unwrap_err().is_timeout());
//!     let close = peer.read_frame().await.unwrap().unwrap();
//!     assert_eq!(close.opcode, OpCode::Close);
//! });
//! ```

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use silverback_proto::close::parse_close_payload;
use silverback_proto::frame::{decode_header, encode_header, Decoded, FrameHeader};
use silverback_proto::mask::apply_mask;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::{CloseCode, CloseFrame, Config, OpCode, Role, WebSocket};

/// The capacity of each direction of the in-memory pipe made by [`pair`]
/// and [`raw_peer`]: 64 KiB, like a small socket buffer. Once that much is
/// written and not read, writes block.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;

/// The masking key a [`RawPeer`] playing the client uses.
pub const RAW_CLIENT_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client and a server of ours, connected in memory: `(client, server)`,
/// each with its config. See the [module docs](self).
pub fn pair(client: Config, server: Config) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    pair_with_buffer(client, server, DEFAULT_BUFFER_SIZE)
}

/// [`pair`] with a pipe of `buffer_size` bytes each way.
pub fn pair_with_buffer(
    client: Config,
    server: Config,
    buffer_size: usize,
) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (c, s) = tokio::io::duplex(buffer_size);
    (
        WebSocket::from_raw_socket(c, Role::Client, client, &[]),
        WebSocket::from_raw_socket(s, Role::Server, server, &[]),
    )
}

/// One of our WebSockets playing `role`, with `config`, connected in memory
/// to a [`RawPeer`] playing the other role. See the [module docs](self).
pub fn raw_peer(role: Role, config: Config) -> (WebSocket<DuplexStream>, RawPeer) {
    raw_peer_with_buffer(role, config, DEFAULT_BUFFER_SIZE)
}

/// [`raw_peer`] with a pipe of `buffer_size` bytes each way.
pub fn raw_peer_with_buffer(
    role: Role,
    config: Config,
    buffer_size: usize,
) -> (WebSocket<DuplexStream>, RawPeer) {
    let (ours, theirs) = tokio::io::duplex(buffer_size);
    let peer_role = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    (
        WebSocket::from_raw_socket(ours, role, config, &[]),
        RawPeer::new(theirs, peer_role),
    )
}

/// A frame as a [`RawPeer`] read it (payload unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Frame {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// The RSV1..RSV3 bits, in their wire positions.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// Whether it was masked (as a client's frames must be).
    pub masked: bool,
    /// The payload, unmasked.
    pub payload: Bytes,
}

impl Frame {
    /// The code and reason of a Close frame; `None` for another frame, an
    /// empty Close, or an invalid Close payload.
    pub fn close_frame(&self) -> Option<CloseFrame> {
        if self.opcode != OpCode::Close {
            return None;
        }
        parse_close_payload(self.payload.clone()).ok().flatten()
    }
}

/// The other end of a connection made by [`raw_peer`], driven by hand.
///
/// It does nothing on its own: no Pong, no Close echo, no reading unless
/// asked. Dropping it closes its end of the pipe: our side then reads the
/// end of stream and its writes fail (a peer that vanished).
#[derive(Debug)]
pub struct RawPeer {
    io: DuplexStream,
    /// Bytes read but not yet parsed into a frame.
    buf: BytesMut,
    role: Role,
}

/// One frame on the wire, without an extension's RSV bits: `mask` it
/// (as a client must) or not (as a server sends).
///
/// ```
/// use silverback::{testing::encode_frame, OpCode};
/// // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
/// assert_eq!(encode_frame(OpCode::Text, true, None, b"Hello"), b"\x81\x05Hello");
/// ```
pub fn encode_frame(opcode: OpCode, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(14 + payload.len());
    encode_header(
        &mut out,
        &FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        },
    );
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
    out.to_vec()
}

impl RawPeer {
    /// A raw peer playing `role` on `io`: as a client, it masks the
    /// frames it sends with [`RAW_CLIENT_MASK`].
    pub fn new(io: DuplexStream, role: Role) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            role,
        }
    }

    /// The role it plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// A frame as its role sends it (masked by a client), without an
    /// extension's RSV bits. Send it with [`write`](Self::write), cut into
    /// pieces or along with others.
    pub fn encode(&self, opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = (self.role == Role::Client).then_some(RAW_CLIENT_MASK);
        encode_frame(opcode, fin, mask, payload)
    }

    /// Writes `bytes` (anything: frames, garbage, half a frame). Waits
    /// while the pipe is full, that is while our side does not read.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Sends a whole (final) frame: see [`encode`](Self::encode).
    pub async fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        let bytes = self.encode(opcode, true, payload);
        self.write(&bytes).await
    }

    /// Sends a Close frame with `code` and `reason`.
    pub async fn send_close(&mut self, code: CloseCode, reason: &str) -> io::Result<()> {
        let mut payload = u16::from(code).to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_frame(OpCode::Close, &payload).await
    }

    /// Reads the next frame (any frame: Pings are not answered).
    ///
    /// `Ok(None)` at the end of stream between frames (our side closed
    /// the transport); an error of kind `UnexpectedEof` at the end of
    /// stream inside a frame, `InvalidData` for an invalid frame header.
    pub async fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.parse_frame()? {
                return Ok(Some(frame));
            }
            self.buf.reserve(8 * 1024);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("end of stream inside a frame ({} bytes)", self.buf.len()),
                ));
            }
        }
    }

    fn parse_frame(&mut self) -> io::Result<Option<Frame>> {
        let (h, n) = match decode_header(&self.buf) {
            Ok(Decoded::Header(h, n)) => (h, n),
            Ok(Decoded::Incomplete(_)) => return Ok(None),
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("invalid frame header: {e:?}"),
                ))
            }
        };
        let len = usize::try_from(h.payload_len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
        if self.buf.len() - n < len {
            return Ok(None);
        }
        self.buf.advance(n);
        let mut payload = self.buf.split_to(len);
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key);
        }
        Ok(Some(Frame {
            fin: h.fin,
            rsv: h.rsv,
            opcode: h.opcode,
            masked: h.mask.is_some(),
            payload: payload.freeze(),
        }))
    }

    /// Closes its writing side (like a TCP FIN): our side reads the end of
    /// stream; it can still read.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    /// The pipe, for reads and writes of your own. Bytes it already read
    /// and did not hand out as a frame are lost.
    pub fn into_inner(self) -> DuplexStream {
        self.io
    }
}
