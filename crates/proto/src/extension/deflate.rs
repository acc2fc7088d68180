//! permessage-deflate (RFC 7692): negotiation and the per-message
//! transform, with flate2 (zlib-rs backend).
//!
//! - [`DeflateConfig`]: what this endpoint wants (window bits, context
//!   takeover, level, the size under which messages go uncompressed).
//! - [`server_negotiate`] / [`client_offer`] + [`client_accept`]: the
//!   `Sec-WebSocket-Extensions` exchange, parameter by parameter.
//! - [`PerMessageDeflate`]: the [`Extension`] installed on the
//!   [`Connection`](crate::Connection).
//!
//! zlib cannot compress with a window of 8 bits (it silently uses 9), so
//! this implementation never agrees to compress with 8 bits: a server
//! declines an offer that demands `server_max_window_bits=8`, and a client
//! refuses a response imposing `client_max_window_bits=8`. Inflating a
//! peer's 8-bit stream is fine (a larger window reads it).

use std::cell::RefCell;
use std::fmt;

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{Decoder, Extension, ExtensionError};
use crate::frame::RSV1;
use crate::{CloseCode, OpCode, Role};

/// The extension's registered name.
pub const NAME: &str = "permessage-deflate";

/// The four bytes a sync flush ends with; stripped on send, appended on
/// receive (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How compressors are held (per server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MemoryMode {
    /// One compressor and one decompressor per connection, created on first
    /// use: the best ratio (context takeover), ~300 KiB per connection with
    /// 15-bit windows.
    #[default]
    Dedicated,
    /// No context takeover in either direction, with compressors shared by
    /// all connections of a thread: the smallest memory (no per-connection
    /// zlib state), as uWebSockets does. A compressed message received in
    /// several frames is inflated with a decompressor of its own, dropped
    /// at its last frame.
    Shared,
}

/// What this endpoint asks for and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Compression level 0..=9 (default 6).
    pub level: u32,
    /// Messages shorter than this are sent uncompressed (default 32 bytes).
    /// So is a message that compression would not make shorter (random or
    /// already compressed data), unless compression is forced for it.
    pub threshold: usize,
    /// The server does not keep its compression context between messages.
    pub server_no_context_takeover: bool,
    /// The client does not keep its compression context between messages.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, 9..=15 (default 15).
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, 9..=15 (default 15).
    pub client_max_window_bits: u8,
    /// How compressors are held (server side).
    pub memory: MemoryMode,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            level: 6,
            threshold: 32,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            memory: MemoryMode::Dedicated,
        }
    }
}

impl DeflateConfig {
    /// The smallest-memory configuration: no context takeover, shared
    /// compressors.
    pub fn shared() -> Self {
        Self {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            memory: MemoryMode::Shared,
            ..Self::default()
        }
    }
}

/// The parameters agreed in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// `server_no_context_takeover`.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`.
    pub client_no_context_takeover: bool,
    /// The server's window bits (15 when not stated).
    pub server_max_window_bits: u8,
    /// The client's window bits (15 when not stated).
    pub client_max_window_bits: u8,
}

impl fmt::Display for DeflateParams {
    /// The `Sec-WebSocket-Extensions` response value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAME)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if self.server_max_window_bits < 15 {
            write!(
                f,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            )?;
        }
        if self.client_max_window_bits < 15 {
            write!(
                f,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            )?;
        }
        Ok(())
    }
}

/// Why an extension header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiationError(pub String);

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "permessage-deflate negotiation: {}", self.0)
    }
}

impl std::error::Error for NegotiationError {}

/// One extension element: its name and parameters (value unquoted).
type Element = (String, Vec<(String, Option<String>)>);

/// Splits extension header values into elements (`,`) and parameters
/// (`;`), unquoting values.
pub fn parse_extensions<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Element> {
    let mut out = Vec::new();
    for value in values {
        for element in value.split(',') {
            let mut parts = element.split(';').map(str::trim);
            let Some(name) = parts.next().filter(|n| !n.is_empty()) else {
                continue;
            };
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (
                        k.trim().to_ascii_lowercase(),
                        Some(v.trim().trim_matches('"').to_owned()),
                    ),
                    None => (p.to_ascii_lowercase(), None),
                })
                .collect();
            out.push((name.to_ascii_lowercase(), params));
        }
    }
    out
}

fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0') {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// The parameters of one offer, validated: `None` if the offer must be
/// declined (unknown or duplicate parameter, invalid value).
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_offer(params: &[(String, Option<String>)]) -> Option<Offer> {
    let mut o = Offer::default();
    let mut seen = Vec::new();
    for (k, v) in params {
        if seen.contains(&k.as_str()) {
            return None;
        }
        seen.push(k.as_str());
        match (k.as_str(), v) {
            ("server_no_context_takeover", None) => o.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => o.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => o.server_max_window_bits = Some(window_bits(v)?),
            ("client_max_window_bits", None) => o.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                o.client_max_window_bits = Some(Some(window_bits(v)?))
            }
            _ => return None,
        }
    }
    Some(o)
}

/// Server side: picks the first acceptable permessage-deflate offer among
/// the client's `Sec-WebSocket-Extensions` values, and returns the agreed
/// parameters (their [`Display`](fmt::Display) is the response header).
/// Offers with unknown, duplicate or invalid parameters are declined, as
/// RFC 7692 §7.1 says; `None` if none is acceptable.
///
/// ```
/// use silverback_proto::extension::deflate::{server_negotiate, DeflateConfig};
/// let params = server_negotiate(["permessage-deflate; client_max_window_bits"], &DeflateConfig::default()).unwrap();
/// assert_eq!(params.to_string(), "permessage-deflate");
/// ```
pub fn server_negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<DeflateParams> {
    let shared = config.memory == MemoryMode::Shared;
    for (name, params) in parse_extensions(offers) {
        if name != NAME {
            continue;
        }
        let Some(offer) = parse_offer(&params) else {
            continue;
        };
        // Our compressor's window: what we want, within what the client allows.
        let mut server_bits = config.server_max_window_bits.clamp(9, 15);
        if let Some(max) = offer.server_max_window_bits {
            if max < 9 {
                continue; // zlib cannot compress with an 8-bit window
            }
            server_bits = server_bits.min(max);
        }
        // The client's window: only limited if the client said it can be.
        let client_bits = match offer.client_max_window_bits {
            None => 15,
            Some(limit) => config
                .client_max_window_bits
                .clamp(8, 15)
                .min(limit.unwrap_or(15)),
        };
        return Some(DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover
                || config.server_no_context_takeover
                || shared,
            client_no_context_takeover: offer.client_no_context_takeover
                || config.client_no_context_takeover
                || shared,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        });
    }
    None
}

/// Client side: the offer to send in `Sec-WebSocket-Extensions`.
///
/// ```
/// use silverback_proto::extension::deflate::{client_offer, DeflateConfig};
/// assert_eq!(client_offer(&DeflateConfig::default()), "permessage-deflate; client_max_window_bits");
/// ```
pub fn client_offer(config: &DeflateConfig) -> String {
    let mut s = String::from(NAME);
    if config.server_no_context_takeover {
        s.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        s.push_str("; client_no_context_takeover");
    }
    let server_bits = config.server_max_window_bits.clamp(9, 15);
    if server_bits < 15 {
        s.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    let client_bits = config.client_max_window_bits.clamp(9, 15);
    if client_bits < 15 {
        s.push_str(&format!("; client_max_window_bits={client_bits}"));
    } else {
        s.push_str("; client_max_window_bits");
    }
    s
}

/// Client side: validates the server's `Sec-WebSocket-Extensions` answer to
/// [`client_offer`]`(config)`. No header: no compression. Anything else
/// than one valid permessage-deflate element within what was offered is an
/// error (the client must fail the connection, RFC 7692 §7.1).
pub fn client_accept<'a>(
    values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Result<Option<DeflateParams>, NegotiationError> {
    let elements = parse_extensions(values);
    let (name, params) = match elements.as_slice() {
        [] => return Ok(None),
        [one] => one,
        _ => {
            return Err(NegotiationError(
                "more than one extension in the response".into(),
            ))
        }
    };
    if name != NAME {
        return Err(NegotiationError(format!("unoffered extension {name:?}")));
    }
    let resp = parse_offer(params)
        .ok_or_else(|| NegotiationError("invalid or duplicate parameter".into()))?;
    let offered_server_bits = config.server_max_window_bits.clamp(9, 15);
    let server_bits = resp.server_max_window_bits.unwrap_or(15);
    if server_bits > offered_server_bits {
        return Err(NegotiationError(format!(
            "server_max_window_bits={server_bits} above the offer"
        )));
    }
    let offered_client_bits = config.client_max_window_bits.clamp(9, 15);
    let client_bits = match resp.client_max_window_bits {
        None => offered_client_bits,
        Some(None) => {
            return Err(NegotiationError(
                "client_max_window_bits without a value".into(),
            ))
        }
        Some(Some(b)) if b > offered_client_bits => {
            return Err(NegotiationError(format!(
                "client_max_window_bits={b} above the offer"
            )))
        }
        Some(Some(8)) => {
            return Err(NegotiationError(
                "client_max_window_bits=8 is not supported (zlib)".into(),
            ));
        }
        Some(Some(b)) => b,
    };
    if config.server_no_context_takeover && !resp.server_no_context_takeover {
        return Err(NegotiationError(
            "server_no_context_takeover was requested".into(),
        ));
    }
    Ok(Some(DeflateParams {
        server_no_context_takeover: resp.server_no_context_takeover,
        client_no_context_takeover: resp.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }))
}

thread_local! {
    /// Shared mode: compressors per (window bits, level) and decompressors
    /// per thread, reset after each message.
    static SHARED_DEFLATE: RefCell<Vec<((u8, u32), Compress)>> = const { RefCell::new(Vec::new()) };
    static SHARED_INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// The permessage-deflate [`Extension`] for one connection.
pub struct PerMessageDeflate {
    level: u32,
    threshold: usize,
    send_bits: u8,
    send_no_takeover: bool,
    recv_no_takeover: bool,
    shared: bool,
    compressor: Option<Compress>,
    /// The receive side; `None` while it is taken out
    /// ([`Extension::take_decoder`]).
    inflater: Option<Inflater>,
}

/// The receive side of permessage-deflate.
struct Inflater {
    recv_no_takeover: bool,
    shared: bool,
    decompressor: Option<Decompress>,
    /// The peer's deflate stream ended (BFINAL) inside the current
    /// message: ignore the rest of it.
    stream_ended: bool,
    /// Shared mode: a message in several frames is being inflated, with
    /// this connection's own decompressor (the thread's one may serve other
    /// connections, or be another thread's, before the next frame).
    fragmented: bool,
}

impl fmt::Debug for PerMessageDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerMessageDeflate")
            .field("send_bits", &self.send_bits)
            .field("send_no_takeover", &self.send_no_takeover)
            .field("recv_no_takeover", &self.recv_no_takeover)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl PerMessageDeflate {
    /// The extension for `role` with the agreed `params` and our `config`
    /// (level, threshold, memory mode). Compressors are created on first
    /// use.
    pub fn new(role: Role, params: DeflateParams, config: &DeflateConfig) -> Self {
        let (send_bits, send_no_takeover, recv_no_takeover) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            ),
        };
        let shared = config.memory == MemoryMode::Shared && send_no_takeover && recv_no_takeover;
        Self {
            level: config.level.min(9),
            threshold: config.threshold,
            send_bits: send_bits.clamp(9, 15),
            send_no_takeover,
            recv_no_takeover,
            shared,
            compressor: None,
            inflater: Some(Inflater {
                recv_no_takeover,
                shared,
                decompressor: None,
                stream_ended: false,
                fragmented: false,
            }),
        }
    }

    fn new_compressor(bits: u8, level: u32) -> Compress {
        Compress::new_with_window_bits(Compression::new(level), false, bits)
    }

    fn new_decompressor() -> Decompress {
        // A 15-bit window inflates any peer window (8..=15).
        Decompress::new_with_window_bits(false, 15)
    }
}

fn zlib_error(reason: &'static str) -> ExtensionError {
    ExtensionError {
        code: CloseCode::InvalidPayload,
        reason,
    }
}

/// Deflates `input` with a sync flush into `out`, without the final
/// `00 00 ff ff`.
fn deflate_into(c: &mut Compress, input: &[u8], out: &mut BytesMut) -> Result<(), ExtensionError> {
    let start_out = out.len();
    deflate_sync(c, input, out)?;
    end_message(out, start_out);
    Ok(())
}

/// Deflates `input` into `out` with a sync flush: what is appended ends
/// on a byte boundary with `00 00 ff ff` (or is empty when there was
/// nothing new to flush).
fn deflate_sync(c: &mut Compress, input: &[u8], out: &mut BytesMut) -> Result<(), ExtensionError> {
    let start_in = c.total_in();
    out.reserve(input.len() / 2 + 64);
    loop {
        let consumed = (c.total_in() - start_in) as usize;
        let spare = out.capacity() - out.len();
        if spare < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let len = out.len();
        out.resize(out.capacity(), 0);
        let before = c.total_out();
        let res = c.compress(&input[consumed..], &mut out[len..], FlushCompress::Sync);
        let produced = (c.total_out() - before) as usize;
        out.truncate(len + produced);
        res.map_err(|_| ExtensionError {
            code: CloseCode::InternalError,
            reason: "compression failed",
        })?;
        let done_in = (c.total_in() - start_in) as usize == input.len();
        // A sync flush is complete once all input is consumed and the
        // output did not fill the space given.
        if done_in && out.len() < out.capacity() {
            break;
        }
    }
    Ok(())
}

/// Ends a message's compressed data (what follows `start_out` in `out`
/// being its last sync-flushed piece): strips the `00 00 ff ff` the peer
/// appends back (RFC 7692 §7.2.1).
fn end_message(out: &mut BytesMut, start_out: usize) {
    if out.len() == start_out {
        // No new input since the last flush (an empty message with context
        // takeover): zlib emits nothing, but the message must still hold
        // an empty stored block's header (RFC 7692 §7.2.1); an empty
        // payload would leave the peer's inflater inside a stored block.
        out.extend_from_slice(&[0x00]);
    } else if out[start_out..].ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
}

/// Inflates `input` into `out`, in bounded chunks, failing with 1009 as
/// soon as `out` would exceed `max_len`. `Ok(true)`: the deflate stream
/// ended (BFINAL) and the decompressor was reset.
fn inflate_into(
    d: &mut Decompress,
    input: &[u8],
    out: &mut BytesMut,
    max_len: usize,
) -> Result<bool, ExtensionError> {
    let start_in = d.total_in();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let consumed = (d.total_in() - start_in) as usize;
        let before = d.total_out();
        let status = d
            .decompress(&input[consumed..], &mut chunk, FlushDecompress::Sync)
            .map_err(|_| zlib_error("invalid compressed data"))?;
        let produced = (d.total_out() - before) as usize;
        if out.len() + produced > max_len {
            return Err(ExtensionError {
                code: CloseCode::MessageTooBig,
                reason: "message too large",
            });
        }
        out.extend_from_slice(&chunk[..produced]);
        let all_in = (d.total_in() - start_in) as usize == input.len();
        match status {
            Status::StreamEnd => {
                // BFINAL (RFC 7692 §7.2.3.6): what follows in this message
                // (padding, the appended tail) is not deflate data; a new
                // stream starts with the next message.
                d.reset(false);
                return Ok(true);
            }
            _ if all_in && produced < chunk.len() => return Ok(false),
            Status::BufError if produced == 0 => return Ok(false),
            _ => {}
        }
    }
}

impl Extension for PerMessageDeflate {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    fn decode(
        &mut self,
        rsv: u8,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ExtensionError> {
        match self.inflater.as_mut() {
            Some(inflater) => inflater.decode(rsv, payload, fin, out, max_len),
            None => Err(ExtensionError {
                code: CloseCode::InternalError,
                reason: "decoder in use elsewhere",
            }),
        }
    }

    fn take_decoder(&mut self) -> Option<Box<dyn Decoder>> {
        self.inflater
            .take()
            .map(|i| Box::new(i) as Box<dyn Decoder>)
    }

    fn put_decoder(&mut self, decoder: Box<dyn Decoder>) {
        if let Ok(inflater) = decoder.into_any().downcast::<Inflater>() {
            self.inflater = Some(*inflater);
        }
    }

    fn encode(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError> {
        self.encode_with(opcode, payload, out, None)
    }

    fn encode_with(
        &mut self,
        _opcode: OpCode,
        payload: &[u8],
        out: &mut BytesMut,
        compress: Option<bool>,
    ) -> Result<Option<u8>, ExtensionError> {
        let wanted = compress.unwrap_or(payload.len() >= self.threshold);
        if !wanted {
            return Ok(None);
        }
        if self.shared {
            let key = (self.send_bits, self.level);
            SHARED_DEFLATE.with(|cell| {
                let mut pool = cell.borrow_mut();
                let idx = match pool.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        pool.push((key, Self::new_compressor(key.0, key.1)));
                        pool.len() - 1
                    }
                };
                let c = &mut pool[idx].1;
                let res = deflate_into(c, payload, out);
                c.reset();
                res
            })?;
        } else {
            let (bits, level) = (self.send_bits, self.level);
            let c = self
                .compressor
                .get_or_insert_with(|| Self::new_compressor(bits, level));
            deflate_into(c, payload, out)?;
            if self.send_no_takeover {
                c.reset();
            }
        }
        if compress.is_none() && out.len() >= payload.len() {
            // Incompressible (random or already compressed data): it goes
            // out as it is (RFC 7692 lets each message choose), so it is
            // never larger on the wire than the application made it. The
            // peer's window does not hold this message, so a compressor
            // keeping its context starts afresh (references only what
            // follows, which the peer will have too).
            if let Some(c) = self.compressor.as_mut() {
                c.reset();
            }
            out.clear();
            return Ok(None);
        }
        Ok(Some(RSV1))
    }

    fn shared_encoding_key(&self) -> Option<u64> {
        // Without context takeover each message is deflated from a fresh
        // state: the bytes depend only on the window, level and threshold.
        self.send_no_takeover.then(|| {
            (u64::from(self.send_bits) << 56)
                | (u64::from(self.level) << 48)
                | (self.threshold as u64 & ((1 << 48) - 1))
        })
    }

    /// Every streamed message is compressed (its size is not known up
    /// front, so the threshold does not apply). Each fragment carries the
    /// deflate output of its bytes, sync-flushed so that the peer can
    /// inflate it at once; the last one without the trailing
    /// `00 00 ff ff` (RFC 7692 §7.2.1). Without context takeover, the
    /// compressor is reset after the last fragment. In shared mode, the
    /// message is compressed with a compressor of its own (the thread's
    /// may serve other connections between fragments), dropped at the end.
    fn encode_fragment(
        &mut self,
        _opcode: OpCode,
        payload: &[u8],
        _first: bool,
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError> {
        let (bits, level) = (self.send_bits, self.level);
        let c = self
            .compressor
            .get_or_insert_with(|| Self::new_compressor(bits, level));
        let start_out = out.len();
        deflate_sync(c, payload, out)?;
        if fin {
            end_message(out, start_out);
            if self.send_no_takeover {
                c.reset();
            }
            if self.shared {
                self.compressor = None;
            }
        }
        Ok(Some(RSV1))
    }

    fn release_memory(&mut self) {
        if self.send_no_takeover {
            self.compressor = None;
        }
        if let Some(inflater) = self.inflater.as_mut().filter(|i| i.recv_no_takeover) {
            inflater.decompressor = None;
        }
    }
}

impl Decoder for Inflater {
    fn decode(
        &mut self,
        _rsv: u8,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ExtensionError> {
        let ended = &mut self.stream_ended;
        let mut run = |d: &mut Decompress| -> Result<(), ExtensionError> {
            if !*ended {
                *ended = inflate_into(d, payload, out, max_len)?;
            }
            if fin && !*ended {
                inflate_into(d, &TAIL, out, max_len)?;
            }
            if fin {
                *ended = false;
            }
            Ok(())
        };
        if self.shared && fin && !self.fragmented {
            // A whole message in one frame: inflated in one call with the
            // thread's decompressor, left clean for the next user.
            return SHARED_INFLATE.with(|cell| {
                let mut slot = cell.borrow_mut();
                let d = slot.get_or_insert_with(PerMessageDeflate::new_decompressor);
                let res = run(d);
                d.reset(false);
                res
            });
        }
        let d = self
            .decompressor
            .get_or_insert_with(PerMessageDeflate::new_decompressor);
        let res = run(d);
        if fin && self.recv_no_takeover {
            d.reset(false);
        }
        if self.shared {
            // A message in several frames keeps its own decompressor until
            // its last frame; then none is kept (shared mode holds no zlib
            // state per idle connection).
            self.fragmented = !fin && res.is_ok();
            if !self.fragmented {
                self.decompressor = None;
            }
        }
        res
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(header: &str) -> Option<DeflateParams> {
        server_negotiate([header], &DeflateConfig::default())
    }

    #[test]
    fn server_negotiation_of_each_parameter() {
        let p = params("permessage-deflate").unwrap();
        assert_eq!(p.to_string(), "permessage-deflate");
        let p = params("permessage-deflate; server_no_context_takeover").unwrap();
        assert!(p.server_no_context_takeover);
        assert_eq!(
            p.to_string(),
            "permessage-deflate; server_no_context_takeover"
        );
        let p = params("permessage-deflate; client_no_context_takeover").unwrap();
        assert!(p.client_no_context_takeover);
        let p = params("permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(
            p.to_string(),
            "permessage-deflate; server_max_window_bits=10"
        );
        let p = params("permessage-deflate; server_max_window_bits=\"12\"").unwrap();
        assert_eq!(p.server_max_window_bits, 12);
        let p = params("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        let p = params("permessage-deflate; client_max_window_bits=9").unwrap();
        assert_eq!(p.client_max_window_bits, 9);
        assert_eq!(
            p.to_string(),
            "permessage-deflate; client_max_window_bits=9"
        );
    }

    #[test]
    fn server_declines_bad_offers_and_takes_the_next() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=8",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(params(bad), None, "{bad}");
            let two = format!("{bad}, permessage-deflate; client_no_context_takeover");
            let p = server_negotiate([two.as_str()], &DeflateConfig::default()).unwrap();
            assert!(p.client_no_context_takeover, "{two}");
        }
    }

    #[test]
    fn server_limits_and_shared_mode() {
        let cfg = DeflateConfig {
            server_max_window_bits: 11,
            client_max_window_bits: 10,
            ..DeflateConfig::default()
        };
        let p = server_negotiate(["permessage-deflate; client_max_window_bits"], &cfg).unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (11, 10)
        );
        // The client's window is only limited when it said it can be.
        let p = server_negotiate(["permessage-deflate"], &cfg).unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        let p = server_negotiate(["permessage-deflate"], &DeflateConfig::shared()).unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
    }

    #[test]
    fn client_offer_and_accept() {
        let cfg = DeflateConfig {
            server_no_context_takeover: true,
            client_max_window_bits: 12,
            ..DeflateConfig::default()
        };
        assert_eq!(
            client_offer(&cfg),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"
        );
        let ok = client_accept(
            ["permessage-deflate; server_no_context_takeover; client_max_window_bits=10"],
            &cfg,
        );
        let p = ok.unwrap().unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        assert_eq!(client_accept([], &cfg), Ok(None));
        for bad in [
            "permessage-deflate",                                                  // takeover requested
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=13", // above offer
            "permessage-deflate; server_no_context_takeover; client_max_window_bits",    // no value
            "permessage-deflate; server_no_context_takeover; bogus",
            "x-foo",
            "permessage-deflate; server_no_context_takeover, permessage-deflate; server_no_context_takeover",
        ] {
            assert!(client_accept([bad], &cfg).is_err(), "{bad}");
        }
        let default = DeflateConfig::default();
        assert!(client_accept(["permessage-deflate; client_max_window_bits=8"], &default).is_err());
        assert!(client_accept(["permessage-deflate; server_max_window_bits=8"], &default).is_ok());
    }

    fn pair(params: DeflateParams, cfg: &DeflateConfig) -> (PerMessageDeflate, PerMessageDeflate) {
        (
            PerMessageDeflate::new(Role::Client, params, cfg),
            PerMessageDeflate::new(Role::Server, params, cfg),
        )
    }

    #[test]
    fn rfc7692_examples_byte_exact() {
        // §7.2.3.1 / §7.2.3.2: "Hello" twice with context takeover.
        let cfg = DeflateConfig {
            threshold: 0,
            ..DeflateConfig::default()
        };
        let params = server_negotiate(["permessage-deflate"], &cfg).unwrap();
        let (_, mut server) = pair(params, &cfg);
        let mut out = BytesMut::new();
        // Forced: left to itself the extension sends "Hello" as it is,
        // since 7 compressed bytes would be more than 5.
        assert_eq!(
            server.encode_with(OpCode::Text, b"Hello", &mut out, Some(true)),
            Ok(Some(RSV1))
        );
        assert_eq!(&out[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        out.clear();
        server
            .encode_with(OpCode::Text, b"Hello", &mut out, Some(true))
            .unwrap();
        assert_eq!(&out[..], [0xf2, 0x00, 0x11, 0x00, 0x00]);

        // Decoding the same, plus §7.2.3.3 (stored block) and §7.2.3.6
        // (BFINAL set).
        let mut d = PerMessageDeflate::new(Role::Client, params, &cfg);
        for wire in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[0xf2, 0x00, 0x11, 0x00, 0x00][..],
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ][..],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00][..],
        ] {
            let mut out = BytesMut::new();
            d.decode(RSV1, wire, true, &mut out, 1024).unwrap();
            assert_eq!(&out[..], b"Hello", "{wire:x?}");
        }
        // §7.2.3.4: one message in two frames.
        let mut d = PerMessageDeflate::new(Role::Client, params, &cfg);
        let mut out = BytesMut::new();
        d.decode(RSV1, &[0xf2, 0x48, 0xcd], false, &mut out, 1024)
            .unwrap();
        d.decode(RSV1, &[0xc9, 0xc9, 0x07, 0x00], true, &mut out, 1024)
            .unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn round_trips_for_every_window_and_takeover() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"item {}\"}},", i % 97).into_bytes())
            .take(70_000)
            .collect();
        for bits in 9..=15u8 {
            for no_takeover in [false, true] {
                for memory in [MemoryMode::Dedicated, MemoryMode::Shared] {
                    let cfg = DeflateConfig {
                        threshold: 0,
                        server_max_window_bits: bits,
                        client_max_window_bits: bits,
                        server_no_context_takeover: no_takeover,
                        client_no_context_takeover: no_takeover,
                        memory,
                        ..DeflateConfig::default()
                    };
                    let offer = client_offer(&cfg);
                    let params = server_negotiate([offer.as_str()], &cfg).unwrap();
                    let header = params.to_string();
                    let client_params = client_accept([header.as_str()], &cfg).unwrap().unwrap();
                    assert_eq!(params, client_params);
                    let (mut client, mut server) = pair(params, &cfg);
                    for round in 0..3 {
                        let msg = &text[round * 1000..];
                        let what = format!("bits {bits} takeover {no_takeover} {memory:?}");
                        roundtrip(&mut client, &mut server, msg, &what);
                        roundtrip(&mut server, &mut client, msg, &what);
                    }
                }
            }
        }
    }

    fn roundtrip(tx: &mut PerMessageDeflate, rx: &mut PerMessageDeflate, msg: &[u8], what: &str) {
        let mut wire = BytesMut::new();
        tx.encode(OpCode::Binary, msg, &mut wire).unwrap();
        assert!(wire.len() < msg.len() / 2, "{what}: compresses");
        let mut back = BytesMut::new();
        rx.decode(RSV1, &wire, true, &mut back, usize::MAX).unwrap();
        assert_eq!(&back[..], msg, "{what}");
    }

    #[test]
    fn threshold_and_override() {
        let cfg = DeflateConfig::default();
        let params = server_negotiate(["permessage-deflate"], &cfg).unwrap();
        let (_, mut server) = pair(params, &cfg);
        let mut out = BytesMut::new();
        assert_eq!(server.encode(OpCode::Text, b"tiny", &mut out), Ok(None));
        assert_eq!(
            server.encode_with(OpCode::Text, b"tiny", &mut out, Some(true)),
            Ok(Some(RSV1))
        );
        out.clear();
        let big = vec![b'a'; 1000];
        assert_eq!(
            server.encode_with(OpCode::Text, &big, &mut out, Some(false)),
            Ok(None)
        );
    }

    #[test]
    fn bomb_is_stopped_at_the_limit() {
        let cfg = DeflateConfig {
            threshold: 0,
            ..DeflateConfig::default()
        };
        let params = server_negotiate(["permessage-deflate"], &cfg).unwrap();
        let (mut client, mut server) = pair(params, &cfg);
        let zeros = vec![0u8; 10 << 20];
        let mut wire = BytesMut::new();
        client.encode(OpCode::Binary, &zeros, &mut wire).unwrap();
        assert!(
            wire.len() < 20_000,
            "10 MiB of zeros is {} bytes compressed",
            wire.len()
        );
        let mut out = BytesMut::new();
        let err = server
            .decode(RSV1, &wire, true, &mut out, 1 << 20)
            .unwrap_err();
        assert_eq!(err.code, CloseCode::MessageTooBig);
        assert!(out.len() <= 1 << 20);
    }

    #[test]
    fn garbage_is_1007() {
        let cfg = DeflateConfig::default();
        let params = server_negotiate(["permessage-deflate"], &cfg).unwrap();
        let (_, mut server) = pair(params, &cfg);
        let mut out = BytesMut::new();
        let err = server
            .decode(RSV1, &[0xff, 0xff, 0xff, 0xff], true, &mut out, 1024)
            .unwrap_err();
        assert_eq!(err.code, CloseCode::InvalidPayload);
    }
}
