#![allow(missing_docs)]
//! permessage-deflate (RFC 7692) through the sans-I/O [`Connection`]: pairs
//! of connections with [`PerMessageDeflate`] installed (parameters
//! negotiated with `client_offer` / `server_negotiate` / `client_accept`,
//! as the handshake does), exchanging compressed messages; hand-built
//! frames for fragmentation, interleaved control frames and protocol
//! violations; a decompression bomb; the per-message override.
//!
//! Frames on the wire are parsed here by hand (not with the crate's
//! `frame` module) so that a codec bug cannot hide itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use silverback_proto::extension::deflate::{
    client_accept, client_offer, server_negotiate, DeflateConfig, DeflateParams, PerMessageDeflate,
};
use silverback_proto::extension::{Extension, ExtensionError};
use silverback_proto::frame::{RSV1, RSV2, RSV3};
use silverback_proto::{
    CloseCode, Config, Connection, Event, Message, OpCode, ProtocolError, Role, State,
};

// ===== wire vocabulary ====================================================

const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const FIN: u8 = 0x80;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as it appears on the wire, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WireFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    payload: Vec<u8>,
}

/// Splits `bytes` into frames; panics on a partial frame.
fn parse_frames(mut bytes: &[u8]) -> Vec<WireFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "truncated header");
        let (b0, b1) = (bytes[0], bytes[1]);
        let mut pos = 2;
        let len = match b1 & 0x7f {
            126 => {
                let n = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
                pos = 4;
                n
            }
            127 => {
                let n = u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize;
                pos = 10;
                n
            }
            n => n as usize,
        };
        let mask = if b1 & 0x80 != 0 {
            let k: [u8; 4] = bytes[pos..pos + 4].try_into().unwrap();
            pos += 4;
            Some(k)
        } else {
            None
        };
        assert!(bytes.len() >= pos + len, "truncated payload");
        let mut payload = bytes[pos..pos + len].to_vec();
        if let Some(k) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        frames.push(WireFrame {
            fin: b0 & 0x80 != 0,
            rsv: b0 & 0x70,
            opcode: b0 & 0x0f,
            masked: mask.is_some(),
            payload,
        });
        bytes = &bytes[pos + len..];
    }
    frames
}

/// A frame with first byte `b0` verbatim, masked with [`KEY`] if `masked`.
fn raw_frame(b0: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&KEY);
    }
    out.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| if masked { b ^ KEY[i % 4] } else { *b }),
    );
    out
}

/// A frame as `role`'s peer sends it (masked when it goes to a server).
fn from_peer(role: Role, b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, payload, role == Role::Server)
}

/// The Close code of a Close frame's payload.
fn close_code(payload: &[u8]) -> u16 {
    assert!(payload.len() >= 2, "Close without a code: {payload:x?}");
    u16::from_be_bytes([payload[0], payload[1]])
}

// ===== data ===============================================================

/// Deterministic pseudo-random bytes (xorshift), incompressible.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// JSON-like, highly compressible text of exactly `n` bytes, with some
/// non-ASCII characters (never cut inside one).
fn json_text(n: usize) -> String {
    let mut s = String::with_capacity(n + 64);
    let mut i = 0u32;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"élément {}\",\"ok\":true}},",
            i % 37
        ));
        i += 1;
    }
    while s.len() > n {
        s.pop();
    }
    while s.len() < n {
        s.push(' ');
    }
    s
}

// ===== connection pairs ===================================================

/// Negotiates as the handshake does: the client's offer for `client_cfg`,
/// the server's answer for `server_cfg`, the client's check of it. Returns
/// what the server and what the client agreed to.
fn negotiate(
    client_cfg: &DeflateConfig,
    server_cfg: &DeflateConfig,
) -> (DeflateParams, DeflateParams) {
    let offer = client_offer(client_cfg);
    let params = server_negotiate([offer.as_str()], server_cfg).expect("server accepts");
    let answer = params.to_string();
    let client_params = client_accept([answer.as_str()], client_cfg)
        .expect("client accepts the answer")
        .expect("deflate agreed");
    assert_eq!(
        params.server_max_window_bits,
        client_params.server_max_window_bits
    );
    assert_eq!(
        params.client_max_window_bits,
        client_params.client_max_window_bits
    );
    (params, client_params)
}

/// The parameters `role` agreed to when both sides use `cfg`.
fn params_for(role: Role, cfg: &DeflateConfig) -> DeflateParams {
    let (server, client) = negotiate(cfg, cfg);
    match role {
        Role::Server => server,
        Role::Client => client,
    }
}

struct Pair {
    client: Connection,
    server: Connection,
    params: DeflateParams,
}

fn pair_with(client_cfg: DeflateConfig, server_cfg: DeflateConfig, config: Config) -> Pair {
    let (params, client_params) = negotiate(&client_cfg, &server_cfg);
    let mut client = Connection::with_config(Role::Client, config);
    client.set_extension(Box::new(PerMessageDeflate::new(
        Role::Client,
        client_params,
        &client_cfg,
    )));
    let mut server = Connection::with_config(Role::Server, config);
    server.set_extension(Box::new(PerMessageDeflate::new(
        Role::Server,
        params,
        &server_cfg,
    )));
    Pair {
        client,
        server,
        params,
    }
}

fn pair(cfg: DeflateConfig) -> Pair {
    pair_with(cfg, cfg, Config::default())
}

/// A connection of `role` with deflate installed (agreed for `cfg` on both
/// sides) and `config`.
fn endpoint(role: Role, cfg: DeflateConfig, config: Config) -> Connection {
    let mut conn = Connection::with_config(role, config);
    conn.set_extension(Box::new(PerMessageDeflate::new(
        role,
        params_for(role, &cfg),
        &cfg,
    )));
    conn
}

fn peer(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

/// The payload that `role`'s peer would put on the wire for `data`
/// compressed (a fresh compressor: the first message of a connection).
fn peer_compress(role: Role, cfg: &DeflateConfig, data: &[u8]) -> Vec<u8> {
    let peer_role = peer(role);
    let mut enc = PerMessageDeflate::new(peer_role, params_for(peer_role, cfg), cfg);
    let mut out = BytesMut::new();
    let rsv = enc
        .encode_with(OpCode::Binary, data, &mut out, Some(true))
        .unwrap();
    assert_eq!(rsv, Some(RSV1));
    out.to_vec()
}

/// Moves `from`'s output to `to` and returns the frames that went over.
fn transfer(from: &mut Connection, to: &mut Connection) -> Vec<WireFrame> {
    let bytes = from.take_data_to_send();
    let frames = parse_frames(&bytes);
    to.receive_data(&bytes);
    frames
}

/// Every event `conn` has, until it needs more input.
fn events(conn: &mut Connection) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(ev) = conn.next_event().expect("no protocol error") {
        out.push(ev);
    }
    out
}

/// Feeds `input` and expects the connection to fail with `expected`, a
/// Close with `code` queued, and the state Closing.
fn expect_failure(conn: &mut Connection, input: &[u8], expected: &ProtocolError, code: u16) {
    conn.receive_data(input);
    let err = loop {
        match conn.next_event() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no failure, expected {expected:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(&err, expected);
    assert_eq!(u16::from(err.close_code()), code);
    assert_eq!(conn.failure(), Some(expected));
    assert!(conn.close_expected());
    assert_eq!(conn.state(), State::Closing);
    let frames = parse_frames(conn.data_to_send());
    let last = frames.last().expect("a Close queued");
    assert_eq!(last.opcode, CLOSE);
    assert_eq!(close_code(&last.payload), code);
    // Nothing more is parsed.
    assert_eq!(conn.next_event(), Ok(None));
}

// ===== exchanges ==========================================================

/// Every combination of memory mode and context takeover.
fn configs() -> Vec<(String, DeflateConfig)> {
    let mut out = Vec::new();
    for bits in [9u8, 12, 15] {
        for takeover in [true, false] {
            out.push((
                format!("dedicated, {bits} bits, takeover {takeover}"),
                DeflateConfig {
                    server_max_window_bits: bits,
                    client_max_window_bits: bits,
                    server_no_context_takeover: !takeover,
                    client_no_context_takeover: !takeover,
                    ..DeflateConfig::default()
                },
            ));
        }
        out.push((
            format!("shared, {bits} bits"),
            DeflateConfig {
                server_max_window_bits: bits,
                client_max_window_bits: bits,
                ..DeflateConfig::shared()
            },
        ));
    }
    out
}

#[test]
fn compressed_messages_both_ways_in_every_mode() {
    let compressible = json_text(1 << 20);
    let random = random_bytes(200_000, 7);
    for (what, cfg) in configs() {
        let mut p = pair(cfg);
        let msgs = [
            Message::text(""),
            Message::text("tiny"),         // below the threshold
            Message::text(json_text(125)), // above it
            Message::text(json_text(126)), // 16-bit length
            Message::binary(json_text(65_536).into_bytes()), // 64-bit length
            Message::text(compressible.clone()),
            Message::binary(random.clone()),
            Message::text(compressible.clone()), // again: takeover pays
        ];
        for (i, msg) in msgs.iter().enumerate() {
            for dir in [Role::Client, Role::Server] {
                let (tx, rx) = match dir {
                    Role::Client => (&mut p.client, &mut p.server),
                    Role::Server => (&mut p.server, &mut p.client),
                };
                tx.send(msg).unwrap();
                let frames = transfer(tx, rx);
                assert_eq!(frames.len(), 1, "{what}: one frame per message");
                let f = &frames[0];
                assert!(f.fin, "{what}: FIN");
                assert_eq!(f.masked, dir == Role::Client, "{what}");
                // The random message would grow: it goes out as it is.
                let compressed = msg.len() >= cfg.threshold && i != 6;
                assert_eq!(
                    f.rsv,
                    if compressed { RSV1 } else { 0 },
                    "{what}: RSV1 iff compressed (msg {i}, {} bytes)",
                    msg.len()
                );
                if compressed && msg.len() > 1000 && msg.is_text() {
                    assert!(
                        f.payload.len() * 4 < msg.len(),
                        "{what}: {} bytes of JSON compressed to {}",
                        msg.len(),
                        f.payload.len()
                    );
                }
                if !compressed {
                    assert_eq!(&f.payload[..], msg.as_bytes(), "{what}: sent as is");
                }
                assert_eq!(
                    events(rx),
                    [Event::Message(msg.clone())],
                    "{what}: message {i} from the {dir:?}"
                );
            }
        }
    }
}

#[test]
fn context_takeover_shrinks_repeated_messages_and_no_takeover_does_not() {
    // Hex of random bytes: compresses about 2:1 alone, to almost nothing
    // when it can refer to an earlier copy.
    let hex: String = random_bytes(2000, 3)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let msg = Message::text(hex);
    let sizes = |cfg: DeflateConfig| {
        let mut p = pair(cfg);
        (0..3)
            .map(|_| {
                p.server.send(&msg).unwrap();
                let f = transfer(&mut p.server, &mut p.client);
                assert_eq!(events(&mut p.client), [Event::Message(msg.clone())]);
                f[0].payload.len()
            })
            .collect::<Vec<_>>()
    };
    let takeover = sizes(DeflateConfig::default());
    assert!(
        takeover[0] < 2500 && takeover[1] * 20 < takeover[0] && takeover[2] * 20 < takeover[0],
        "with context takeover the repeats refer to the first: {takeover:?}"
    );
    for cfg in [
        DeflateConfig {
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        },
        DeflateConfig::shared(),
    ] {
        let fresh = sizes(cfg);
        assert!(
            fresh.iter().all(|&s| s == fresh[0]),
            "without takeover every message compresses alike: {fresh:?}"
        );
    }
}

#[test]
fn idle_memory_release_keeps_the_stream_valid() {
    for (what, cfg) in configs() {
        let mut p = pair(cfg);
        for round in 0..4 {
            let msg = Message::text(json_text(3000 + round));
            p.client.send(&msg).unwrap();
            transfer(&mut p.client, &mut p.server);
            assert_eq!(events(&mut p.server), [Event::Message(msg.clone())]);
            p.server.send(&msg).unwrap();
            transfer(&mut p.server, &mut p.client);
            assert_eq!(events(&mut p.client), [Event::Message(msg)], "{what}");
            p.client.release_idle_memory();
            p.server.release_idle_memory();
        }
    }
}

// ===== fragmentation ======================================================

/// Splits `payload` into `n` nearly equal parts (some may be empty).
fn split(payload: &[u8], n: usize) -> Vec<&[u8]> {
    let step = payload.len().div_ceil(n).max(1);
    let mut parts: Vec<&[u8]> = payload.chunks(step).collect();
    while parts.len() < n {
        parts.push(&[]);
    }
    parts
}

/// The frames of one compressed message in `parts` (RSV1 on the first
/// only), with a Ping after every fragment but the last.
fn fragmented(role: Role, opcode: u8, parts: &[&[u8]], pings: bool) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let b0 = if i == 0 { RSV1 | opcode } else { CONT } | if last { FIN } else { 0 };
        wire.extend(from_peer(role, b0, part));
        if pings && !last {
            wire.extend(from_peer(role, FIN | PING, format!("p{i}").as_bytes()));
        }
    }
    wire
}

#[test]
fn fragmented_compressed_messages_with_control_frames_interleaved() {
    for role in [Role::Server, Role::Client] {
        for (what, cfg) in configs() {
            let text = json_text(40_000);
            let payload = peer_compress(role, &cfg, text.as_bytes());
            for n in [2, 3, 17] {
                let mut conn = endpoint(role, cfg, Config::default());
                conn.receive_data(&fragmented(role, TEXT, &split(&payload, n), true));
                let evs = events(&mut conn);
                let mut expected: Vec<Event> = (0..n - 1)
                    .map(|i| Event::Ping(format!("p{i}").into_bytes().into()))
                    .collect();
                expected.push(Event::Message(Message::text(text.clone())));
                assert_eq!(evs, expected, "{role:?} {what}: {n} fragments");
                // Every ping answered, in order, without RSV bits.
                let out = parse_frames(conn.data_to_send());
                assert_eq!(out.len(), n - 1);
                for (i, f) in out.iter().enumerate() {
                    assert_eq!((f.opcode, f.rsv), (PONG, 0));
                    assert_eq!(f.payload, format!("p{i}").as_bytes());
                }
            }
        }
    }
}

#[test]
fn compressed_message_one_byte_per_frame() {
    // The hardest cut for a streaming inflater: a frame per byte, empty
    // frames, a multi-byte character anywhere.
    for role in [Role::Server, Role::Client] {
        let text = format!("{} ünïcödé € 𝄞 {}", json_text(300), json_text(200));
        let cfg = DeflateConfig::default();
        let payload = peer_compress(role, &cfg, text.as_bytes());
        let mut parts: Vec<&[u8]> = payload.chunks(1).collect();
        parts.insert(1, &[]);
        parts.push(&[]);
        let mut conn = endpoint(role, cfg, Config::default());
        conn.receive_data(&fragmented(role, TEXT, &parts, false));
        assert_eq!(
            events(&mut conn),
            [Event::Message(Message::text(text))],
            "{role:?}"
        );
    }
}

#[test]
fn fragmented_then_whole_messages_keep_the_context() {
    // With context takeover a fragmented message and the whole messages
    // around it share one LZ77 window: the receiver must inflate them in
    // order, whatever the framing.
    for role in [Role::Server, Role::Client] {
        let cfg = DeflateConfig::default();
        let peer_role = peer(role);
        let mut enc = PerMessageDeflate::new(peer_role, params_for(peer_role, &cfg), &cfg);
        let mut conn = endpoint(role, cfg, Config::default());
        let msgs: Vec<String> = (0..6).map(|i| json_text(5000 + i)).collect();
        for (i, m) in msgs.iter().enumerate() {
            let mut out = BytesMut::new();
            enc.encode(OpCode::Text, m.as_bytes(), &mut out).unwrap();
            if i % 2 == 0 {
                conn.receive_data(&fragmented(role, TEXT, &split(&out, 4), i == 2));
            } else {
                conn.receive_data(&from_peer(role, FIN | RSV1 | TEXT, &out));
            }
            let evs = events(&mut conn);
            assert_eq!(
                evs.last(),
                Some(&Event::Message(Message::text(m.clone()))),
                "{role:?} message {i}"
            );
            if i >= 1 {
                assert!(out.len() < 200, "message {i} refers to the window");
            }
        }
    }
}

#[test]
fn shared_mode_fragmented_messages_on_connections_sharing_a_thread() {
    // Shared mode keeps one decompressor per thread. Two connections on the
    // same thread with interleaved fragmented messages (as two tasks of one
    // runtime thread see them) must not share the unfinished stream.
    let cfg = DeflateConfig::shared();
    let role = Role::Server;
    let a_text = json_text(30_000);
    let b_text = format!("other {}", json_text(20_000));
    let a_payload = peer_compress(role, &cfg, a_text.as_bytes());
    let b_payload = peer_compress(role, &cfg, b_text.as_bytes());
    let mut a = endpoint(role, cfg, Config::default());
    let mut b = endpoint(role, cfg, Config::default());
    let (a1, a2) = a_payload.split_at(a_payload.len() / 2);
    let (b1, b2) = b_payload.split_at(b_payload.len() / 3);
    a.receive_data(&from_peer(role, RSV1 | TEXT, a1));
    assert_eq!(events(&mut a), []);
    // b: a whole message, then the start of a fragmented one.
    b.receive_data(&from_peer(role, FIN | RSV1 | TEXT, &b_payload));
    b.receive_data(&from_peer(role, RSV1 | TEXT, b1));
    assert_eq!(
        events(&mut b),
        [Event::Message(Message::text(b_text.clone()))]
    );
    a.receive_data(&from_peer(role, FIN | CONT, a2));
    assert_eq!(events(&mut a), [Event::Message(Message::text(a_text))]);
    b.receive_data(&from_peer(role, FIN | CONT, b2));
    assert_eq!(events(&mut b), [Event::Message(Message::text(b_text))]);
}

#[test]
fn shared_mode_fragmented_message_continued_on_another_thread() {
    // A task of a multi-threaded runtime may be resumed on another worker
    // between two frames of one message.
    let cfg = DeflateConfig::shared();
    let role = Role::Server;
    let text = json_text(50_000);
    let payload = peer_compress(role, &cfg, text.as_bytes());
    let (p1, p2) = payload.split_at(payload.len() / 2);
    let mut conn = endpoint(role, cfg, Config::default());
    conn.receive_data(&from_peer(role, RSV1 | TEXT, p1));
    assert_eq!(events(&mut conn), []);
    let second = from_peer(role, FIN | CONT, p2);
    let evs = std::thread::spawn(move || {
        conn.receive_data(&second);
        events(&mut conn)
    })
    .join()
    .unwrap();
    assert_eq!(evs, [Event::Message(Message::text(text))]);
}

#[test]
fn our_own_fragments_are_sent_uncompressed() {
    let mut p = pair(DeflateConfig::default());
    let big = json_text(10_000);
    let (x, y) = big.as_bytes().split_at(5000);
    p.client.send_fragment(OpCode::Text, x, false).unwrap();
    p.client.ping(b"between").unwrap();
    p.client
        .send_fragment(OpCode::Continuation, y, true)
        .unwrap();
    let frames = transfer(&mut p.client, &mut p.server);
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|f| f.rsv == 0), "{frames:?}");
    assert_eq!(frames[0].payload, x);
    assert_eq!(
        events(&mut p.server),
        [
            Event::Ping(b"between".to_vec().into()),
            Event::Message(Message::text(big))
        ]
    );
}

// ===== the RFC 7692 §7.2.3 examples through a connection ===================

#[test]
fn rfc7692_examples_through_a_connection() {
    let hello = Message::text("Hello");
    for role in [Role::Client, Role::Server] {
        let mut conn = endpoint(role, DeflateConfig::default(), Config::default());
        let wire = [
            // §7.2.3.1 a message compressed in one frame
            from_peer(
                role,
                FIN | RSV1 | TEXT,
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            ),
            // §7.2.3.2 the same again, referring to the first (takeover)
            from_peer(role, FIN | RSV1 | TEXT, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            // §7.2.3.1 the same message in two frames
            from_peer(role, RSV1 | TEXT, &[0xf2, 0x48, 0xcd]),
            from_peer(role, FIN | CONT, &[0xc9, 0xc9, 0x07, 0x00]),
            // §7.2.3.3 a stored (uncompressed) block
            from_peer(
                role,
                FIN | RSV1 | TEXT,
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
            ),
            // §7.2.3.6 a block with BFINAL set, then a fresh stream
            from_peer(
                role,
                FIN | RSV1 | TEXT,
                &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            ),
            from_peer(
                role,
                FIN | RSV1 | TEXT,
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            ),
        ]
        .concat();
        conn.receive_data(&wire);
        assert_eq!(
            events(&mut conn),
            vec![Event::Message(hello.clone()); 6],
            "{role:?}"
        );
    }
}

// ===== errors =============================================================

/// Compressed `data` as the peer of `role` sends it, in one text frame.
fn compressed_text_frame(role: Role, data: &[u8]) -> Vec<u8> {
    let payload = peer_compress(role, &DeflateConfig::default(), data);
    from_peer(role, FIN | RSV1 | TEXT, &payload)
}

#[test]
fn invalid_utf8_after_inflating_is_1007() {
    for role in [Role::Server, Role::Client] {
        // Bad bytes in the middle of a long text.
        let mut bad = json_text(5000).into_bytes();
        bad[2500] = 0xff;
        let mut conn = endpoint(role, DeflateConfig::default(), Config::default());
        expect_failure(
            &mut conn,
            &compressed_text_frame(role, &bad),
            &ProtocolError::InvalidUtf8,
            1007,
        );

        // A character cut at the end of the message.
        let mut cut = json_text(100).into_bytes();
        cut.extend_from_slice(&"€".as_bytes()[..2]);
        let mut conn = endpoint(role, DeflateConfig::default(), Config::default());
        expect_failure(
            &mut conn,
            &compressed_text_frame(role, &cut),
            &ProtocolError::InvalidUtf8,
            1007,
        );

        // The same in a fragmented compressed message: the bad byte is
        // in the first fragment; the failure comes before the last.
        let mut conn = endpoint(role, DeflateConfig::default(), Config::default());
        let payload = peer_compress(role, &DeflateConfig::default(), &bad);
        let parts = split(&payload, 4);
        conn.receive_data(&from_peer(role, RSV1 | TEXT, parts[0]));
        conn.receive_data(&from_peer(role, CONT, parts[1]));
        conn.receive_data(&from_peer(role, CONT, parts[2]));
        let err = match conn.next_event() {
            Ok(Some(ev)) => panic!("unexpected {ev:?}"),
            Ok(None) => panic!("{role:?}: bad UTF-8 not caught before the last fragment"),
            Err(e) => e,
        };
        assert_eq!(err, ProtocolError::InvalidUtf8);

        // Binary messages are not checked.
        let mut conn = endpoint(role, DeflateConfig::default(), Config::default());
        let payload = peer_compress(role, &DeflateConfig::default(), &bad);
        conn.receive_data(&from_peer(role, FIN | RSV1 | BINARY, &payload));
        assert_eq!(events(&mut conn), [Event::Message(Message::binary(bad))]);
    }
}

#[test]
fn garbage_compressed_data_is_1007() {
    for role in [Role::Server, Role::Client] {
        let mut conn = endpoint(role, DeflateConfig::default(), Config::default());
        let err = ProtocolError::Extension(ExtensionError {
            code: CloseCode::InvalidPayload,
            reason: "invalid compressed data",
        });
        expect_failure(
            &mut conn,
            &from_peer(role, FIN | RSV1 | BINARY, &[0xff; 16]),
            &err,
            1007,
        );
    }
}

/// Wraps an extension and records the largest output it produced, checking
/// that it never exceeds the limit it is given.
struct Spy {
    inner: PerMessageDeflate,
    max_len: Arc<AtomicUsize>,
    max_capacity: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Extension for Spy {
    fn rsv_bits(&self) -> u8 {
        self.inner.rsv_bits()
    }

    fn decode(
        &mut self,
        rsv: u8,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ExtensionError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let res = self.inner.decode(rsv, payload, fin, out, max_len);
        assert!(
            out.len() <= max_len,
            "decode produced {} bytes, limit {max_len}",
            out.len()
        );
        self.max_len.fetch_max(out.len(), Ordering::Relaxed);
        self.max_capacity
            .fetch_max(out.capacity(), Ordering::Relaxed);
        res
    }

    fn encode(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError> {
        self.inner.encode(opcode, payload, out)
    }

    fn encode_with(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut BytesMut,
        transform: Option<bool>,
    ) -> Result<Option<u8>, ExtensionError> {
        self.inner.encode_with(opcode, payload, out, transform)
    }
}

struct Spied {
    conn: Connection,
    max_len: Arc<AtomicUsize>,
    max_capacity: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

fn spied(role: Role, cfg: DeflateConfig, config: Config) -> Spied {
    let (max_len, max_capacity, calls) = Default::default();
    let spy = Spy {
        inner: PerMessageDeflate::new(role, params_for(role, &cfg), &cfg),
        max_len: Arc::clone(&max_len),
        max_capacity: Arc::clone(&max_capacity),
        calls: Arc::clone(&calls),
    };
    let mut conn = Connection::with_config(role, config);
    conn.set_extension(Box::new(spy));
    Spied {
        conn,
        max_len,
        max_capacity,
        calls,
    }
}

const LIMIT: usize = 1 << 20;

fn too_big() -> ProtocolError {
    ProtocolError::Extension(ExtensionError {
        code: CloseCode::MessageTooBig,
        reason: "message too large",
    })
}

#[test]
fn decompression_bomb_is_1009_with_bounded_memory() {
    // 4 MiB of zeros deflate to about 4 KB: a few KB on the wire that
    // would inflate to four times the 1 MiB limit.
    let zeros = vec![0u8; 4 << 20];
    for (what, cfg) in configs() {
        for role in [Role::Server, Role::Client] {
            let payload = peer_compress(role, &cfg, &zeros);
            assert!(payload.len() < 8 << 10, "bomb of {} bytes", payload.len());
            let mut s = spied(role, cfg, Config::default().max_message_size(LIMIT));
            expect_failure(
                &mut s.conn,
                &from_peer(role, FIN | RSV1 | BINARY, &payload),
                &too_big(),
                1009,
            );
            let max_len = s.max_len.load(Ordering::Relaxed);
            let max_cap = s.max_capacity.load(Ordering::Relaxed);
            assert!(max_len <= LIMIT, "{what}: {max_len} bytes inflated");
            // The buffer grows by doubling at most once past the limit.
            assert!(
                max_cap <= 2 * LIMIT + (64 << 10),
                "{what}: buffer of {max_cap} bytes for a {LIMIT} limit"
            );
        }
    }
}

#[test]
fn fragmented_bomb_fails_at_the_fragment_that_crosses_the_limit() {
    let zeros = vec![0u8; 4 << 20];
    for role in [Role::Server, Role::Client] {
        let cfg = DeflateConfig::default();
        let payload = peer_compress(role, &cfg, &zeros);
        let parts = split(&payload, 64);
        let mut s = spied(role, cfg, Config::default().max_message_size(LIMIT));
        let mut failed_at = None;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let b0 = if i == 0 { RSV1 | BINARY } else { CONT } | if last { FIN } else { 0 };
            s.conn.receive_data(&from_peer(role, b0, part));
            match s.conn.next_event() {
                Ok(None) => {}
                Ok(Some(ev)) => panic!("unexpected {ev:?}"),
                Err(e) => {
                    assert_eq!(e, too_big());
                    failed_at = Some(i);
                    break;
                }
            }
        }
        let i = failed_at.expect("the bomb was not stopped");
        // About a quarter of the stream inflates to the limit.
        assert!(
            i < parts.len() / 2,
            "{role:?}: failed only at fragment {i} of {}",
            parts.len()
        );
        assert_eq!(s.calls.load(Ordering::Relaxed), i + 1);
        assert!(s.max_len.load(Ordering::Relaxed) <= LIMIT);
        let frames = parse_frames(s.conn.data_to_send());
        assert_eq!(frames.len(), 1);
        assert_eq!(close_code(&frames[0].payload), 1009);
    }
}

#[test]
fn message_of_exactly_the_limit_inflates_one_more_byte_does_not() {
    for role in [Role::Server, Role::Client] {
        let cfg = DeflateConfig::default();
        let exact = json_text(LIMIT).into_bytes();
        let mut conn = endpoint(role, cfg, Config::default().max_message_size(LIMIT));
        conn.receive_data(&compressed_text_frame(role, &exact));
        let evs = events(&mut conn);
        assert_eq!(evs.len(), 1);
        assert!(matches!(&evs[0], Event::Message(m) if m.len() == LIMIT));

        let mut over = exact.clone();
        over.push(b' ');
        let mut conn = endpoint(role, cfg, Config::default().max_message_size(LIMIT));
        expect_failure(
            &mut conn,
            &compressed_text_frame(role, &over),
            &too_big(),
            1009,
        );
    }
}

#[test]
fn shared_decompressor_is_clean_after_a_failed_message() {
    // Shared mode: a bomb (or garbage) stops one connection in the middle
    // of inflating; the next connection on the thread must not see its
    // leftover state.
    let cfg = DeflateConfig::shared();
    let role = Role::Server;
    let payload = peer_compress(role, &cfg, &vec![0u8; 4 << 20]);
    let mut bombed = endpoint(role, cfg, Config::default().max_message_size(LIMIT));
    expect_failure(
        &mut bombed,
        &from_peer(role, FIN | RSV1 | BINARY, &payload),
        &too_big(),
        1009,
    );
    let mut garbage = endpoint(role, cfg, Config::default());
    garbage.receive_data(&from_peer(role, FIN | RSV1 | BINARY, &[0xff; 8]));
    assert!(garbage.next_event().is_err());
    let text = json_text(10_000);
    let mut next = endpoint(role, cfg, Config::default());
    next.receive_data(&compressed_text_frame(role, text.as_bytes()));
    assert_eq!(events(&mut next), [Event::Message(Message::text(text))]);
}

#[test]
fn rsv1_on_control_or_continuation_frames_is_1002() {
    for role in [Role::Server, Role::Client] {
        let cfg = DeflateConfig::default();
        let compressed = peer_compress(role, &cfg, json_text(1000).as_bytes());
        let (c1, c2) = compressed.split_at(compressed.len() / 2);
        let cases: Vec<(&str, Vec<u8>, u8)> = vec![
            ("ping", from_peer(role, FIN | RSV1 | PING, b"x"), RSV1),
            ("pong", from_peer(role, FIN | RSV1 | PONG, b"x"), RSV1),
            (
                "close",
                from_peer(role, FIN | RSV1 | CLOSE, &[0x03, 0xe8]),
                RSV1,
            ),
            (
                "continuation of a compressed message",
                [
                    from_peer(role, RSV1 | TEXT, c1),
                    from_peer(role, FIN | RSV1 | CONT, c2),
                ]
                .concat(),
                RSV1,
            ),
            (
                "continuation of an uncompressed message",
                [
                    from_peer(role, TEXT, b"abc"),
                    from_peer(role, FIN | RSV1 | CONT, c2),
                ]
                .concat(),
                RSV1,
            ),
            (
                "ping inside a compressed message",
                [
                    from_peer(role, RSV1 | TEXT, c1),
                    from_peer(role, FIN | RSV1 | PING, b""),
                ]
                .concat(),
                RSV1,
            ),
            (
                "RSV2 on a data frame",
                from_peer(role, FIN | RSV2 | TEXT, b"x"),
                RSV2,
            ),
            (
                "RSV1|RSV3 on a data frame",
                from_peer(role, FIN | RSV1 | RSV3 | BINARY, &compressed),
                RSV1 | RSV3,
            ),
        ];
        for (what, input, rsv) in cases {
            let mut conn = endpoint(role, cfg, Config::default());
            conn.receive_data(&input);
            let err = loop {
                match conn.next_event() {
                    Ok(Some(Event::Message(m))) => panic!("{what}: got {m:?}"),
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("{role:?} {what}: accepted"),
                    Err(e) => break e,
                }
            };
            assert_eq!(err, ProtocolError::ReservedBits(rsv), "{role:?} {what}");
            let frames = parse_frames(conn.data_to_send());
            assert_eq!(close_code(&frames.last().unwrap().payload), 1002, "{what}");
        }
    }
}

#[test]
fn rsv1_without_the_extension_is_1002() {
    for role in [Role::Server, Role::Client] {
        let payload = peer_compress(role, &DeflateConfig::default(), b"Hello, Hello, Hello");
        let mut conn = Connection::new(role);
        expect_failure(
            &mut conn,
            &from_peer(role, FIN | RSV1 | TEXT, &payload),
            &ProtocolError::ReservedBits(RSV1),
            1002,
        );
    }
}

// ===== uncompressed messages and the per-message override ==================

#[test]
fn uncompressed_messages_are_accepted_with_the_extension_on() {
    for role in [Role::Server, Role::Client] {
        let cfg = DeflateConfig::default();
        let peer_role = peer(role);
        let mut enc = PerMessageDeflate::new(peer_role, params_for(peer_role, &cfg), &cfg);
        let mut conn = endpoint(role, cfg, Config::default());
        let a = json_text(3000);
        let b = json_text(2000);
        let mut wire = Vec::new();
        // compressed, plain, plain fragmented with a ping, binary, and a
        // compressed message referring to the first (takeover): the plain
        // ones in between must not disturb the window.
        let mut out = BytesMut::new();
        enc.encode(OpCode::Text, a.as_bytes(), &mut out).unwrap();
        wire.extend(from_peer(role, FIN | RSV1 | TEXT, &out));
        wire.extend(from_peer(role, FIN | TEXT, b.as_bytes()));
        wire.extend(from_peer(role, TEXT, &b.as_bytes()[..1000]));
        wire.extend(from_peer(role, FIN | PING, b"mid"));
        wire.extend(from_peer(role, FIN | CONT, &b.as_bytes()[1000..]));
        wire.extend(from_peer(role, FIN | BINARY, &[0, 1, 2, 255]));
        wire.extend(from_peer(role, FIN | TEXT, b""));
        out.clear();
        enc.encode(OpCode::Text, a.as_bytes(), &mut out).unwrap();
        assert!(out.len() < 100, "the repeat refers to the window");
        wire.extend(from_peer(role, FIN | RSV1 | TEXT, &out));
        conn.receive_data(&wire);
        assert_eq!(
            events(&mut conn),
            [
                Event::Message(Message::text(a.clone())),
                Event::Message(Message::text(b.clone())),
                Event::Ping(b"mid".to_vec().into()),
                Event::Message(Message::text(b)),
                Event::Message(Message::binary(vec![0, 1, 2, 255])),
                Event::Message(Message::text("")),
                Event::Message(Message::text(a)),
            ],
            "{role:?}"
        );
        // Invalid UTF-8 in a plain text frame is still 1007.
        let mut conn = endpoint(role, cfg, Config::default());
        expect_failure(
            &mut conn,
            &from_peer(role, FIN | TEXT, b"ab\xffcd"),
            &ProtocolError::InvalidUtf8,
            1007,
        );
    }
}

#[test]
fn per_message_override() {
    for (what, cfg) in configs() {
        let mut p = pair(cfg);
        let big = Message::text(json_text(10_000));
        let tiny = Message::binary(b"hey".to_vec());
        let cases = [
            (&big, None, true),
            (&big, Some(false), false),
            (&big, Some(true), true),
            (&tiny, None, false),
            (&tiny, Some(true), true),
            (&tiny, Some(false), false),
            (&big, None, true), // context still good after a plain one
        ];
        for (i, (msg, choice, compressed)) in cases.into_iter().enumerate() {
            p.server.send_with(msg, choice).unwrap();
            let frames = transfer(&mut p.server, &mut p.client);
            assert_eq!(frames.len(), 1);
            assert_eq!(
                frames[0].rsv,
                if compressed { RSV1 } else { 0 },
                "{what}: case {i} {choice:?}"
            );
            if !compressed {
                assert_eq!(frames[0].payload, msg.as_bytes());
            }
            assert_eq!(events(&mut p.client), [Event::Message(msg.clone())]);
            // And the other way.
            p.client.send_with(msg, choice).unwrap();
            let frames = transfer(&mut p.client, &mut p.server);
            assert_eq!(frames[0].rsv, if compressed { RSV1 } else { 0 });
            assert_eq!(events(&mut p.server), [Event::Message(msg.clone())]);
        }
        let _ = p.params;
    }
    // Without the extension, `Some(true)` cannot compress: sent as is.
    let mut plain = Connection::new(Role::Server);
    plain
        .send_with(&Message::text("compress me"), Some(true))
        .unwrap();
    let frames = parse_frames(plain.data_to_send());
    assert_eq!(frames[0].rsv, 0);
    assert_eq!(frames[0].payload, b"compress me");
}

#[test]
fn empty_messages_compressed_with_and_without_takeover() {
    // zlib emits nothing for a sync flush without new input: an empty
    // message after another one (context takeover) must still carry an
    // empty stored block's header, 0x00 (RFC 7692 §7.2.1), or the peer's
    // inflater is left inside a stored block and the next message breaks.
    for (what, cfg) in configs() {
        let cfg = DeflateConfig {
            threshold: 0,
            ..cfg
        };
        let mut p = pair(cfg);
        let msgs = [
            Message::text(""),
            Message::binary(Vec::new()),
            Message::text("a"),
            Message::text(""),
            Message::text(""),
            Message::text(json_text(500)),
            Message::binary(Vec::new()),
            Message::text(json_text(500)),
        ];
        for msg in msgs {
            for dir in [Role::Client, Role::Server] {
                let (tx, rx) = match dir {
                    Role::Client => (&mut p.client, &mut p.server),
                    Role::Server => (&mut p.server, &mut p.client),
                };
                // Forced: left to itself the extension sends what would
                // not shrink as it is.
                tx.send_with(&msg, Some(true)).unwrap();
                let frames = transfer(tx, rx);
                assert_eq!(frames[0].rsv, RSV1, "{what}");
                assert!(!frames[0].payload.is_empty(), "{what}: empty payload");
                if msg.is_empty() {
                    assert_eq!(frames[0].payload, [0x00], "{what}");
                }
                assert_eq!(events(rx), [Event::Message(msg.clone())], "{what}");
            }
        }
    }
}

#[test]
fn close_after_compressed_traffic() {
    let mut p = pair(DeflateConfig::default());
    let msg = Message::text(json_text(2000));
    p.client.send(&msg).unwrap();
    p.client.close(CloseCode::Normal, "done").unwrap();
    let frames = transfer(&mut p.client, &mut p.server);
    assert_eq!(frames.len(), 2);
    assert_eq!((frames[1].opcode, frames[1].rsv), (CLOSE, 0));
    let evs = events(&mut p.server);
    assert_eq!(evs[0], Event::Message(msg.clone()));
    assert!(matches!(&evs[1], Event::Close(Some(f)) if f.code == CloseCode::Normal));
    // The server can no longer send, compressed or not.
    assert!(p.server.send(&msg).is_err());
    let frames = transfer(&mut p.server, &mut p.client);
    assert_eq!((frames[0].opcode, frames[0].rsv), (CLOSE, 0));
    assert!(matches!(
        events(&mut p.client).as_slice(),
        [Event::Close(Some(_))]
    ));
    assert!(p.client.close_expected() && p.server.close_expected());
}

#[test]
fn memory_modes_agree_with_each_other() {
    // A shared-mode server and a dedicated client (and the reverse) agree
    // on no context takeover both ways, and interoperate.
    for (client_cfg, server_cfg) in [
        (DeflateConfig::default(), DeflateConfig::shared()),
        (DeflateConfig::shared(), DeflateConfig::default()),
    ] {
        let mut p = pair_with(client_cfg, server_cfg, Config::default());
        assert!(p.params.server_no_context_takeover && p.params.client_no_context_takeover);
        for i in 0..3 {
            let msg = Message::text(json_text(8000 + i));
            p.client.send(&msg).unwrap();
            transfer(&mut p.client, &mut p.server);
            assert_eq!(events(&mut p.server), [Event::Message(msg.clone())]);
            p.server.send(&msg).unwrap();
            transfer(&mut p.server, &mut p.client);
            assert_eq!(events(&mut p.client), [Event::Message(msg)]);
        }
    }
}

// ===== incompressible messages ============================================

/// A message that deflate would make larger (random bytes) goes out as it
/// is, RSV1 clear, so it is never bigger on the wire than the application
/// made it — a message exactly at the peer's limit stays within it. With
/// context takeover, compressed messages before and after it still
/// inflate correctly (the compressor starts afresh after it). Forcing
/// compression still compresses.
#[test]
fn incompressible_message_goes_out_uncompressed_in_every_mode() {
    let takeover = DeflateConfig::default();
    let no_takeover = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    for cfg in [takeover, no_takeover, DeflateConfig::shared()] {
        for sender in [Role::Server, Role::Client] {
            let Pair { client, server, .. } = pair(cfg);
            let (mut from, mut to) = match sender {
                Role::Server => (server, client),
                Role::Client => (client, server),
            };
            let text = json_text(3000);
            let random = random_bytes(5000, 7);
            from.send(&Message::text(text.as_str())).unwrap();
            from.send(&Message::binary(random.clone())).unwrap();
            from.send(&Message::text(text.as_str())).unwrap();
            from.send_with(&Message::binary(random.clone()), Some(true))
                .unwrap();
            from.send(&Message::text(text.as_str())).unwrap();
            let frames = transfer(&mut from, &mut to);
            let rsv: Vec<u8> = frames.iter().map(|f| f.rsv).collect();
            assert_eq!(rsv, [RSV1, 0, RSV1, RSV1, RSV1], "{sender:?} {cfg:?}");
            assert_eq!(frames[1].payload, random, "sent as it is");
            assert!(frames[0].payload.len() < text.len() / 2);
            assert!(frames[2].payload.len() < text.len() / 2);
            let got = events(&mut to);
            let text_msg = Event::Message(Message::text(text.as_str()));
            let random_msg = Event::Message(Message::binary(random.clone()));
            assert_eq!(
                got,
                [
                    text_msg.clone(),
                    random_msg.clone(),
                    text_msg.clone(),
                    random_msg,
                    text_msg
                ],
                "{sender:?} {cfg:?}"
            );
        }
    }
}

// ===== prepared messages: compressed once per parameter set ===============

use silverback_proto::PreparedMessage;

/// Server peers whose compressor keeps no context share one compressed
/// form; each client decodes it to the original message.
#[test]
fn prepared_message_is_compressed_once_for_peers_without_context_takeover() {
    let cfg = DeflateConfig {
        server_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let text = json_text(4000);
    let prepared = PreparedMessage::new(Message::text(text.clone()));
    let mut pairs: Vec<Pair> = (0..3).map(|_| pair(cfg)).collect();
    let mut wires = Vec::new();
    for p in &mut pairs {
        p.server.send_prepared(&prepared).unwrap();
        wires.push(p.server.data_to_send().to_vec());
        let frames = transfer(&mut p.server, &mut p.client);
        assert_eq!(frames.len(), 1);
        assert!(frames[0].rsv & RSV1 != 0, "compressed");
        assert!(frames[0].payload.len() < text.len() / 2);
        assert_eq!(
            events(&mut p.client),
            [Event::Message(Message::text(text.clone()))]
        );
    }
    assert_eq!(prepared.encoded_forms(), 1);
    assert!(wires.windows(2).all(|w| w[0] == w[1]), "same bytes for all");
    // A second message on the same connections still decodes (no context
    // was assumed).
    let second = PreparedMessage::new(Message::text(text.clone()));
    for p in &mut pairs {
        p.server.send_prepared(&second).unwrap();
        transfer(&mut p.server, &mut p.client);
        assert_eq!(
            events(&mut p.client),
            [Event::Message(Message::text(text.clone()))]
        );
    }
}

/// Different windows are different wire forms: one each.
#[test]
fn prepared_message_has_one_form_per_parameter_set() {
    let small = DeflateConfig {
        server_no_context_takeover: true,
        server_max_window_bits: 10,
        ..DeflateConfig::default()
    };
    let large = DeflateConfig {
        server_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let text = json_text(3000);
    let prepared = PreparedMessage::new(Message::text(text.clone()));
    for cfg in [small, large, small, large] {
        let mut p = pair(cfg);
        p.server.send_prepared(&prepared).unwrap();
        transfer(&mut p.server, &mut p.client);
        assert_eq!(
            events(&mut p.client),
            [Event::Message(Message::text(text.clone()))]
        );
    }
    assert_eq!(prepared.encoded_forms(), 2);
}

/// A compressor that keeps its context encodes its own copy (the bytes
/// depend on what it sent before); the message still arrives intact, and
/// the context is kept across prepared and ordinary messages.
#[test]
fn prepared_message_with_context_takeover_is_compressed_per_peer() {
    let cfg = DeflateConfig::default();
    assert!(!cfg.server_no_context_takeover);
    let text = json_text(2000);
    let prepared = PreparedMessage::new(Message::text(text.clone()));
    let mut p = pair(cfg);
    for _ in 0..3 {
        p.server.send_prepared(&prepared).unwrap();
        p.server.send(&Message::text(text.clone())).unwrap();
        transfer(&mut p.server, &mut p.client);
        let expected = Event::Message(Message::text(text.clone()));
        assert_eq!(events(&mut p.client), [expected.clone(), expected]);
    }
    assert_eq!(prepared.encoded_forms(), 0);
}

/// Below the threshold the shared form is "as it is" (no RSV1).
#[test]
fn prepared_message_below_the_threshold_is_sent_as_it_is() {
    let cfg = DeflateConfig {
        server_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let prepared = PreparedMessage::new(Message::binary(vec![7u8; 8]));
    let mut p = pair(cfg);
    p.server.send_prepared(&prepared).unwrap();
    let frames = transfer(&mut p.server, &mut p.client);
    assert_eq!(frames[0].rsv, 0);
    assert_eq!(
        events(&mut p.client),
        [Event::Message(Message::binary(vec![7u8; 8]))]
    );
    assert_eq!(prepared.encoded_forms(), 1);
}

/// A client (masked frames) encodes its own copy, compressed.
#[test]
fn prepared_message_from_a_client_is_masked_and_compressed() {
    let cfg = DeflateConfig::default();
    let text = json_text(2000);
    let prepared = PreparedMessage::new(Message::text(text.clone()));
    let mut p = pair(cfg);
    p.client.send_prepared(&prepared).unwrap();
    let frames = transfer(&mut p.client, &mut p.server);
    assert!(frames[0].masked && frames[0].rsv & RSV1 != 0);
    assert_eq!(events(&mut p.server), [Event::Message(Message::text(text))]);
}

// ===== decoding outside the connection (deferred) ===========================

/// Decodes every `Event::Encoded` outside the connection, like a reader
/// half does; other events pass through.
fn events_deferred(conn: &mut Connection) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(ev) = conn.next_event().expect("no protocol error") {
        match ev {
            Event::Encoded(enc) => {
                let mut decoder = conn.take_decoder().expect("a decoder");
                let msg = enc.decode(&mut decoder).expect("decodes");
                conn.put_decoder(decoder);
                out.push(Event::Message(msg));
            }
            ev => out.push(ev),
        }
    }
    out
}

/// Whole and fragmented compressed messages in every mode (context
/// takeover kept across messages decoded outside), uncompressed ones as
/// usual.
#[test]
fn deferred_decoding_gives_the_same_messages() {
    for role in [Role::Server, Role::Client] {
        for (what, cfg) in configs() {
            let text = json_text(20_000);
            let mut conn = endpoint(role, cfg, Config::default());
            conn.set_defer_decoding(true);
            let mut wire = Vec::new();
            for _ in 0..2 {
                wire.extend(from_peer(
                    role,
                    FIN | RSV1 | TEXT,
                    &peer_compress(role, &cfg, text.as_bytes()),
                ));
            }
            conn.receive_data(&wire);
            // The encoded form is what came, still compressed.
            let Some(Event::Encoded(first)) = conn.next_event().unwrap() else {
                panic!("{role:?} {what}: an encoded message")
            };
            assert!(first.encoded_len() < text.len() / 2);
            let mut decoder = conn.take_decoder().unwrap();
            assert!(conn.take_decoder().is_none(), "one decoder");
            assert_eq!(
                first.decode(&mut decoder).unwrap(),
                Message::text(text.clone())
            );
            conn.put_decoder(decoder);
            assert_eq!(
                events_deferred(&mut conn),
                [Event::Message(Message::text(text.clone()))],
                "{role:?} {what}"
            );

            let payload = peer_compress(role, &cfg, text.as_bytes());
            conn.receive_data(&fragmented(role, TEXT, &split(&payload, 5), true));
            conn.receive_data(&from_peer(role, FIN | BINARY, b"plain"));
            let evs = events_deferred(&mut conn);
            assert_eq!(evs.len(), 6, "{role:?} {what}: {evs:?}");
            assert_eq!(evs[4], Event::Message(Message::text(text.clone())));
            assert_eq!(evs[5], Event::Message(Message::binary(&b"plain"[..])));
        }
    }
}

/// A bad compressed payload or one inflating past the limit: the decode
/// fails, and `decoding_failed` fails the connection with its code.
#[test]
fn deferred_decoding_errors_fail_the_connection() {
    let cfg = DeflateConfig::default();
    for (input, code) in [
        (vec![0xff, 0xff, 0xff, 0xff], 1007u16),
        (
            peer_compress(Role::Server, &cfg, &vec![b'a'; 100_000]),
            1009,
        ),
    ] {
        let mut conn = endpoint(
            Role::Server,
            cfg,
            Config::default().max_message_size(10_000),
        );
        conn.set_defer_decoding(true);
        conn.receive_data(&from_peer(Role::Server, FIN | RSV1 | BINARY, &input));
        let Some(Event::Encoded(enc)) = conn.next_event().unwrap() else {
            panic!()
        };
        let mut decoder = conn.take_decoder().unwrap();
        let err = enc.decode(&mut decoder).unwrap_err();
        conn.put_decoder(decoder);
        assert_eq!(u16::from(err.close_code()), code, "{err:?}");
        conn.decoding_failed(err.clone());
        assert_eq!(conn.failure(), Some(&err));
        let out = conn.take_data_to_send();
        assert_eq!(close_code(&parse_frames(&out)[0].payload), code);
        assert!(conn.eof_to_send());
    }
}

/// The compressed size still counts against the message limit across
/// fragments (checked from the headers, before decoding).
#[test]
fn deferred_decoding_keeps_the_size_limit_across_fragments() {
    let cfg = DeflateConfig::default();
    let mut conn = endpoint(Role::Server, cfg, Config::default().max_message_size(1000));
    conn.set_defer_decoding(true);
    let junk = vec![0u8; 600];
    conn.receive_data(&fragmented(Role::Server, BINARY, &[&junk, &junk], false));
    assert!(matches!(
        conn.next_event(),
        Err(ProtocolError::MessageTooLarge { max: 1000 })
    ));
}
