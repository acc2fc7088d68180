//! Shared drivers for the fuzz targets (see `fuzz_targets/`).
//!
//! The connection targets read their input as a small program:
//!
//! ```text
//! byte 0   flags: bit 0 permessage-deflate installed, bit 1 shared memory
//!          mode, bit 2 client_no_context_takeover, bit 3
//!          server_no_context_takeover, bits 4-6 window bits (9 + n % 7),
//!          bit 7 auto_pong off
//! byte 1   limits: low nibble max_frame_size = 2^(6 + n % 12), high
//!          nibble max_message_size = 2^(6 + n) (64 B .. 2 MiB)
//! then ops:
//!   0x00..=0xDF  N: the next N bytes arrive from the peer (a read)
//!   0xE0 lo hi   the next lo + 256 * hi bytes arrive
//!   0xE1 n       we send a text message of n bytes
//!   0xE2 n       we send a binary message of n bytes
//!   0xE3         we send a Ping
//!   0xE4         we close with 1000
//!   0xE5         the transport writes everything queued
//!   0xE6         end of stream from the transport
//!   0xE7         idle: release_idle_memory
//!   0xE8 n       we send a fragment (text, continuation or the last one)
//!   0xE9 n       the transport writes n bytes of what is queued
//!   0xEA n       we send a message of n bytes, compression forced
//!   0xEB         the next message is received streamed (Event::Chunk)
//!   0xEC         deferred decoding on: compressed messages come out
//!                encoded and are decoded outside (as a reader half does)
//!   others       the rest of the input arrives in one read
//! ```
//!
//! After every read all events are drained. Checked throughout: no panic,
//! messages within `max_message_size`, control payloads within 125 bytes,
//! a failed connection expects the close and parses nothing more, input
//! buffered is at most what arrived, and the output queued is bounded by
//! what arrived and what we sent (a Pong per Ping, one Close, our messages).

use silverback_proto::extension::deflate::{
    DeflateConfig, DeflateParams, MemoryMode, PerMessageDeflate,
};
use silverback_proto::{CloseCode, Config, Connection, Event, OpCode, Role, State};

/// The options encoded in the first two input bytes.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// permessage-deflate installed, with these parameters and memory mode.
    pub deflate: Option<(DeflateParams, DeflateConfig)>,
    /// The connection's limits.
    pub config: Config,
}

impl Setup {
    /// Decodes the two setup bytes.
    pub fn from_bytes(flags: u8, limits: u8) -> Self {
        let bits = 9 + ((flags >> 4) & 0x7) % 7;
        let shared = flags & 0x02 != 0;
        let deflate = (flags & 0x01 != 0).then(|| {
            let cfg = DeflateConfig {
                memory: if shared {
                    MemoryMode::Shared
                } else {
                    MemoryMode::Dedicated
                },
                // Shared mode only applies without context takeover.
                server_no_context_takeover: shared || flags & 0x08 != 0,
                client_no_context_takeover: shared || flags & 0x04 != 0,
                server_max_window_bits: bits,
                client_max_window_bits: bits,
                ..DeflateConfig::default()
            };
            let params = DeflateParams {
                server_no_context_takeover: cfg.server_no_context_takeover,
                client_no_context_takeover: cfg.client_no_context_takeover,
                server_max_window_bits: bits,
                client_max_window_bits: bits,
            };
            (params, cfg)
        });
        let config = Config::default()
            .max_frame_size(1 << (6 + (limits & 0x0f) % 12))
            .max_message_size(1 << (6 + (limits >> 4)))
            .auto_pong(flags & 0x80 == 0);
        Self { deflate, config }
    }
}

/// Worst-case wire size of a message of `n` bytes that we send (header,
/// mask, and deflate's expansion of incompressible data).
fn send_cost(n: usize) -> usize {
    n + n / 8 + 64
}

/// Runs a [`Connection`] playing `role` on `data` (see the module docs).
pub fn run_connection(role: Role, data: &[u8]) {
    let [flags, limits, rest @ ..] = data else {
        return;
    };
    let setup = Setup::from_bytes(*flags, *limits);
    let mut conn = Connection::with_config(role, setup.config);
    conn.set_fixed_mask_key([0x37, 0xfa, 0x21, 0x3d]);
    if let Some((params, cfg)) = setup.deflate {
        conn.set_extension(Box::new(PerMessageDeflate::new(role, params, &cfg)));
    }
    let max_message = setup.config.max_message_size;

    let mut input = rest;
    // Everything the peer sent us, and a bound on what we may have queued.
    let mut fed = 0usize;
    let mut allowed_out = 512usize;
    let mut written = 0usize;
    let mut fragmenting = false;
    let mut failed = false;
    // Bytes of the message being streamed so far.
    let mut streamed = 0usize;

    while let Some((&op, tail)) = input.split_first() {
        input = tail;
        let chunk: Option<usize> = match op {
            0x00..=0xDF => Some(usize::from(op)),
            0xE0 => {
                let lo = input.first().copied().unwrap_or(0);
                let hi = input.get(1).copied().unwrap_or(0);
                input = input.get(2..).unwrap_or_default();
                Some(usize::from(lo) + 256 * usize::from(hi))
            }
            0xE1 | 0xE2 | 0xEA | 0xE8 | 0xE9 => {
                let n = usize::from(input.first().copied().unwrap_or(0));
                input = input.get(1..).unwrap_or_default();
                match op {
                    0xE1 => {
                        let text = "hé".repeat(n / 3 + 1);
                        if conn.send_text(&text).is_ok() {
                            allowed_out += send_cost(text.len());
                        }
                    }
                    0xE2 => {
                        let data: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
                        if conn.send_binary(&data).is_ok() {
                            allowed_out += send_cost(n);
                        }
                    }
                    0xEA => {
                        let msg = silverback_proto::Message::binary(vec![b'z'; n]);
                        if conn.send_with(&msg, Some(true)).is_ok() {
                            allowed_out += send_cost(n);
                        }
                    }
                    0xE8 => {
                        let payload = vec![b'f'; n];
                        let (opcode, fin) = match (fragmenting, n % 3) {
                            (false, _) => (OpCode::Text, false),
                            (true, 0) => (OpCode::Continuation, true),
                            (true, _) => (OpCode::Continuation, false),
                        };
                        if conn.send_fragment(opcode, &payload, fin).is_ok() {
                            fragmenting = !fin;
                            allowed_out += send_cost(n);
                        }
                    }
                    _ => {
                        let n = n.min(conn.data_to_send().len());
                        conn.advance_data_to_send(n);
                        written += n;
                    }
                }
                None
            }
            0xE3 => {
                if conn.ping(b"fuzz").is_ok() {
                    allowed_out += send_cost(4);
                }
                None
            }
            0xE4 => {
                if conn.close(CloseCode::Normal, "fuzz").is_ok() {
                    allowed_out += send_cost(6);
                }
                None
            }
            0xE5 => {
                written += conn.take_data_to_send().len();
                None
            }
            0xE6 => {
                conn.receive_eof();
                assert_eq!(conn.state(), State::Closed);
                None
            }
            0xE7 => {
                conn.release_idle_memory();
                None
            }
            0xEB => {
                conn.stream_next_message(true);
                None
            }
            0xEC => {
                conn.set_defer_decoding(true);
                None
            }
            _ => Some(input.len()),
        };
        if let Some(n) = chunk {
            let (now, later) = input.split_at(n.min(input.len()));
            input = later;
            conn.receive_data(now);
            fed += now.len();
            // A Pong per Ping: at most 3x the Ping on the wire (an empty
            // masked Pong is 6 bytes, an empty unmasked Ping 2).
            allowed_out += 3 * now.len();
        }
        loop {
            match conn.next_event() {
                Ok(Some(ev)) => {
                    assert!(!failed, "event after a failure: {ev:?}");
                    match ev {
                        Event::Message(m) => assert!(
                            m.len() <= max_message,
                            "message of {} bytes over the {max_message} limit",
                            m.len()
                        ),
                        Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
                        Event::Close(_) => {
                            assert_ne!(conn.state(), State::Open);
                            assert!(conn.close_sent().is_some());
                            assert!(conn.close_expected());
                        }
                        Event::Chunk { data, fin, .. } => {
                            streamed += data.len();
                            assert!(
                                streamed <= max_message,
                                "streamed {streamed} bytes over the {max_message} limit"
                            );
                            if fin {
                                streamed = 0;
                            }
                        }
                        Event::Encoded(encoded) => {
                            let mut decoder = conn.take_decoder().expect("a decoder");
                            let decoded = encoded.decode(&mut decoder);
                            conn.put_decoder(decoder);
                            match decoded {
                                Ok(m) => assert!(m.len() <= max_message),
                                Err(e) => {
                                    conn.decoding_failed(e);
                                    failed = true;
                                    assert!(conn.close_expected());
                                    assert!(conn.close_sent().is_some());
                                    break;
                                }
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(!failed, "a second error: {e:?}");
                    failed = true;
                    let _ = e.close_code();
                    assert!(conn.failure().is_some());
                    assert!(conn.close_expected());
                    assert_ne!(conn.state(), State::Open);
                    assert!(conn.close_sent().is_some());
                    assert_eq!(conn.buffered_input(), 0);
                    break;
                }
            }
        }
        if failed {
            assert!(matches!(conn.next_event(), Ok(None)));
        }
        assert!(conn.buffered_input() <= fed);
        let queued = conn.data_to_send().len();
        assert!(
            written + queued <= allowed_out,
            "{} bytes of output for {fed} bytes in (bound {allowed_out})",
            written + queued
        );
    }
}
