//! Sans-I/O scenario tests for the RFC 6455 state machine: bytes go in,
//! events and the exact bytes queued for the peer come out. No sockets.
//!
//! Frames are built and parsed here by hand (not with the crate's own
//! `frame` module) so that a bug in the codec cannot hide itself.
//!
//! Where a rule applies to both ends the tests come in pairs,
//! `server_*` / `client_*`, sharing one helper that takes the [`Role`].
#![allow(missing_docs)]

use bytes::BytesMut;
use silverback_proto::extension::{Extension, ExtensionError};
use silverback_proto::frame::{RSV1, RSV2, RSV3};
use silverback_proto::{
    CloseCode, CloseFrame, Config, Connection, Event, Message, OpCode, ProtocolError, Role,
    SendError, State,
};

// ===== wire vocabulary ====================================================

const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const FIN: u8 = 0x80;

/// The masking key of the RFC 6455 §5.7 examples.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Default limits of [`Config`].
const DEFAULT_MAX_FRAME: usize = 16 << 20;
const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Largest length a frame may declare (the 64-bit length's top bit clear).
const MAX_DECLARED: u64 = (1 << 63) - 1;

// ===== frame builders =====================================================

fn xor_key(buf: &mut [u8], key: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// A frame header: first byte `b0` verbatim (FIN, RSV, opcode), the
/// shortest length form for `len`, then the masking key if any.
fn header(b0: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![b0];
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out
}

/// A whole frame with first byte `b0` verbatim.
fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = header(b0, payload.len() as u64, mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        xor_key(&mut out[start..], key);
    }
    out
}

/// A whole frame.
fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    raw_frame(if fin { FIN } else { 0 } | opcode, payload, mask)
}

/// The mask the peer of a `role` connection must use: a client masks
/// (with the RFC key, so expectations are easy to read), a server does not.
fn peer_mask(role: Role) -> Option<[u8; 4]> {
    match role {
        Role::Server => Some(KEY),
        Role::Client => None,
    }
}

/// A well-formed frame as the peer of `role` sends it.
fn from_peer(role: Role, opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, payload, peer_mask(role))
}

/// A frame from the peer of `role` with first byte `b0` verbatim.
fn raw_from_peer(role: Role, b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, payload, peer_mask(role))
}

/// Only the header of a frame from the peer of `role`, declaring `len`.
fn header_from_peer(role: Role, b0: u8, len: u64) -> Vec<u8> {
    header(b0, len, peer_mask(role))
}

/// A Close payload: big-endian code then reason.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// `n` bytes of a recognisable pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

/// A string of exactly `n` bytes mixing 1-, 2-, 3- and 4-byte characters.
fn text_of_len(n: usize) -> String {
    let mut s = String::with_capacity(n);
    for c in ['a', 'é', '€', '𝄞'].into_iter().cycle() {
        if s.len() + c.len_utf8() > n {
            break;
        }
        s.push(c);
    }
    while s.len() < n {
        s.push('x');
    }
    s
}

// ===== output parser ======================================================

/// A frame found in a connection's output, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    fin: bool,
    rsv: u8,
    opcode: u8,
    key: Option<[u8; 4]>,
    payload: Vec<u8>,
}

/// Splits output into frames, checking the length form is the shortest.
fn parse_frames(mut buf: &[u8]) -> Vec<Sent> {
    let mut frames = Vec::new();
    while !buf.is_empty() {
        assert!(buf.len() >= 2, "truncated header in output: {buf:x?}");
        let (b0, b1) = (buf[0], buf[1]);
        let (len, mut at) = match b1 & 0x7f {
            126 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (usize::from(n), 2),
        };
        match at {
            4 => assert!(len >= 126, "16-bit form for {len} bytes"),
            10 => assert!(len > 0xffff, "64-bit form for {len} bytes"),
            _ => {}
        }
        let key = if b1 & 0x80 != 0 {
            let k: [u8; 4] = buf[at..at + 4].try_into().unwrap();
            at += 4;
            Some(k)
        } else {
            None
        };
        assert!(buf.len() >= at + len, "truncated payload in output");
        let mut payload = buf[at..at + len].to_vec();
        if let Some(k) = key {
            xor_key(&mut payload, k);
        }
        frames.push(Sent {
            fin: b0 & 0x80 != 0,
            rsv: b0 & 0x70,
            opcode: b0 & 0x0f,
            key,
            payload,
        });
        buf = &buf[at + len..];
    }
    frames
}

/// Checks `frames` are masked exactly when `role` is a client.
fn assert_masking(role: Role, frames: &[Sent]) {
    for f in frames {
        assert_eq!(
            f.key.is_some(),
            role == Role::Client,
            "masking of {f:?} sent by a {role:?}"
        );
    }
}

/// The code and reason of the single Close frame that makes up `out`.
fn close_of(out: &[u8]) -> (u16, String) {
    let frames = parse_frames(out);
    assert_eq!(
        frames.len(),
        1,
        "expected exactly one frame, got {frames:?}"
    );
    let f = &frames[0];
    assert_eq!(
        (f.opcode, f.fin, f.rsv),
        (CLOSE, true, 0),
        "not a Close frame: {f:?}"
    );
    assert!(f.payload.len() >= 2, "Close without a code: {f:?}");
    assert!(f.payload.len() <= 125, "Close payload over 125 bytes");
    let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
    let reason = String::from_utf8(f.payload[2..].to_vec()).expect("UTF-8 close reason");
    (code, reason)
}

/// Takes the output of `conn` and parses it, checking the masking rule.
fn take_frames(conn: &mut Connection) -> Vec<Sent> {
    let out = conn.take_data_to_send();
    let frames = parse_frames(&out);
    assert_masking(conn.role(), &frames);
    frames
}

/// Takes the output of `conn`: exactly one Close frame; returns code and reason.
fn take_close(conn: &mut Connection) -> (u16, String) {
    let out = conn.take_data_to_send();
    assert_masking(conn.role(), &parse_frames(&out));
    close_of(&out)
}

// ===== event helpers ======================================================

fn text(s: &str) -> Event {
    Event::Message(Message::text(s))
}

fn binary(b: &[u8]) -> Event {
    Event::Message(Message::binary(b.to_vec()))
}

/// Takes every event available, panicking on a protocol error.
fn drain(conn: &mut Connection) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(ev) = conn.next_event().expect("no protocol error") {
        events.push(ev);
    }
    events
}

/// A connection of `role` fed `input`, with all its events.
fn receive(role: Role, input: &[u8]) -> (Connection, Vec<Event>) {
    let mut conn = Connection::new(role);
    conn.receive_data(input);
    let events = drain(&mut conn);
    (conn, events)
}

// ===== failure helpers ====================================================

/// Checks what follows a protocol error: exactly one Close frame with
/// `code` and the error's reason is queued (byte-exact for a server), the
/// connection expects the transport to close, ignores further input, and
/// refuses to send.
fn assert_failed(conn: &mut Connection, expected: &ProtocolError, code: u16) {
    let role = conn.role();
    // The rest of the input is dropped with the connection's state.
    assert_eq!(conn.buffered_input(), 0);
    let out = conn.take_data_to_send();
    assert_masking(role, &parse_frames(&out));
    assert_eq!(close_of(&out), (code, expected.reason().to_owned()));
    if role == Role::Server {
        let wire = frame(CLOSE, true, &close_payload(code, expected.reason()), None);
        assert_eq!(&out[..], &wire[..]);
    }
    assert_eq!(u16::from(expected.close_code()), code);
    assert!(conn.close_expected());
    assert_eq!(conn.failure(), Some(expected));
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(
        conn.close_sent(),
        Some(&Some(CloseFrame::new(
            CloseCode::from(code),
            expected.reason()
        )))
    );

    // Further input, valid or not, produces no events and no output.
    conn.receive_data(&from_peer(role, TEXT, true, b"more"));
    conn.receive_data(&from_peer(role, PING, true, b"ping"));
    conn.receive_data(&from_peer(role, CLOSE, true, &close_payload(1000, "")));
    for _ in 0..3 {
        assert_eq!(conn.next_event(), Ok(None));
    }
    assert!(!conn.has_data_to_send());
    assert!(conn.close_received().is_none());

    // Nothing may be sent after the Close.
    assert_eq!(conn.send_text("x"), Err(SendError::Closing));
    assert_eq!(conn.send_binary(b"x"), Err(SendError::Closing));
    assert_eq!(conn.send(&Message::text("x")), Err(SendError::Closing));
    assert_eq!(
        conn.send_fragment(OpCode::Text, b"x", false),
        Err(SendError::Closing)
    );
    assert_eq!(conn.ping(b"x"), Err(SendError::Closing));
    assert_eq!(conn.pong(b"x"), Err(SendError::Closing));
    assert_eq!(conn.close(CloseCode::Normal, ""), Err(SendError::Closing));
    assert!(!conn.has_data_to_send());
}

/// Feeds `input` to a fresh `role` connection with `config`; the first
/// `next_event` must fail with `expected`, and the connection must then be
/// failed cleanly with close `code`.
fn expect_failure_with(
    role: Role,
    config: Config,
    input: &[u8],
    expected: ProtocolError,
    code: u16,
) {
    let mut conn = Connection::with_config(role, config);
    conn.receive_data(input);
    assert_eq!(conn.next_event(), Err(expected.clone()), "input {input:x?}");
    assert_failed(&mut conn, &expected, code);
}

fn expect_failure(role: Role, input: &[u8], expected: ProtocolError, code: u16) {
    expect_failure_with(role, Config::default(), input, expected, code);
}

// ===== RFC 6455 §5.7 examples =============================================

const RFC_TEXT_UNMASKED: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const RFC_TEXT_MASKED: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
const RFC_FRAG_1_UNMASKED: [u8; 5] = [0x01, 0x03, 0x48, 0x65, 0x6c];
const RFC_FRAG_2_UNMASKED: [u8; 4] = [0x80, 0x02, 0x6c, 0x6f];
const RFC_PING_UNMASKED: [u8; 7] = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const RFC_PONG_MASKED: [u8; 11] = [
    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

fn rfc_256_unmasked() -> Vec<u8> {
    let mut v = vec![0x82, 0x7e, 0x01, 0x00];
    v.extend(pattern(256));
    v
}

fn rfc_64k_unmasked() -> Vec<u8> {
    let mut v = vec![0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];
    v.extend(pattern(65536));
    v
}

/// The same frames masked with [`KEY`], header bytes spelled out.
fn rfc_256_masked() -> Vec<u8> {
    let mut payload = pattern(256);
    xor_key(&mut payload, KEY);
    let mut v = vec![0x82, 0xfe, 0x01, 0x00, 0x37, 0xfa, 0x21, 0x3d];
    v.extend(payload);
    v
}

fn rfc_64k_masked() -> Vec<u8> {
    let mut payload = pattern(65536);
    xor_key(&mut payload, KEY);
    let mut v = vec![
        0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0, 0, 0x37, 0xfa, 0x21, 0x3d,
    ];
    v.extend(payload);
    v
}

fn fixed_key_client() -> Connection {
    let mut c = Connection::new(Role::Client);
    c.set_fixed_mask_key(KEY);
    c
}

#[test]
fn builders_reproduce_the_rfc_examples() {
    // Sanity check of the helpers every other test relies on.
    assert_eq!(frame(TEXT, true, b"Hello", None), RFC_TEXT_UNMASKED);
    assert_eq!(frame(TEXT, true, b"Hello", Some(KEY)), RFC_TEXT_MASKED);
    assert_eq!(frame(TEXT, false, b"Hel", None), RFC_FRAG_1_UNMASKED);
    assert_eq!(frame(CONT, true, b"lo", None), RFC_FRAG_2_UNMASKED);
    assert_eq!(frame(PONG, true, b"Hello", Some(KEY)), RFC_PONG_MASKED);
    assert_eq!(frame(BINARY, true, &pattern(256), None), rfc_256_unmasked());
    assert_eq!(
        frame(BINARY, true, &pattern(65536), Some(KEY)),
        rfc_64k_masked()
    );
    let sent = parse_frames(&RFC_TEXT_MASKED);
    assert_eq!(sent[0].payload, b"Hello");
    assert_eq!(sent[0].key, Some(KEY));
}

#[test]
fn server_decodes_rfc_masked_text() {
    let (mut server, events) = receive(Role::Server, &RFC_TEXT_MASKED);
    assert_eq!(events, [text("Hello")]);
    assert!(!server.has_data_to_send());
    assert_eq!(server.buffered_input(), 0);
    assert_eq!(server.next_event(), Ok(None));
}

#[test]
fn client_decodes_rfc_unmasked_text() {
    let (client, events) = receive(Role::Client, &RFC_TEXT_UNMASKED);
    assert_eq!(events, [text("Hello")]);
    assert!(!client.has_data_to_send());
}

#[test]
fn server_encodes_rfc_unmasked_text() {
    let mut server = Connection::new(Role::Server);
    server.send_text("Hello").unwrap();
    assert_eq!(server.data_to_send(), RFC_TEXT_UNMASKED);
}

#[test]
fn client_encodes_rfc_masked_text() {
    let mut client = fixed_key_client();
    client.send_text("Hello").unwrap();
    assert_eq!(client.data_to_send(), RFC_TEXT_MASKED);
}

#[test]
fn client_masks_with_fresh_keys_by_default() {
    let mut client = Connection::new(Role::Client);
    for _ in 0..8 {
        client.send_text("Hello").unwrap();
    }
    let frames = take_frames(&mut client);
    assert!(frames
        .iter()
        .all(|f| f.payload == b"Hello" && f.opcode == TEXT));
    let keys: std::collections::HashSet<_> = frames.iter().map(|f| f.key.unwrap()).collect();
    assert!(keys.len() > 1, "every frame used the same mask key");
}

#[test]
fn server_decodes_rfc_fragmented_text() {
    let mut server = Connection::new(Role::Server);
    server.receive_data(&frame(TEXT, false, b"Hel", Some(KEY)));
    assert_eq!(server.next_event(), Ok(None));
    server.receive_data(&frame(CONT, true, b"lo", Some(KEY)));
    assert_eq!(drain(&mut server), [text("Hello")]);
}

#[test]
fn client_decodes_rfc_fragmented_text() {
    let mut client = Connection::new(Role::Client);
    client.receive_data(&RFC_FRAG_1_UNMASKED);
    assert_eq!(client.next_event(), Ok(None));
    client.receive_data(&RFC_FRAG_2_UNMASKED);
    assert_eq!(drain(&mut client), [text("Hello")]);
}

#[test]
fn server_encodes_rfc_fragmented_text() {
    let mut server = Connection::new(Role::Server);
    server.send_fragment(OpCode::Text, b"Hel", false).unwrap();
    server
        .send_fragment(OpCode::Continuation, b"lo", true)
        .unwrap();
    assert_eq!(
        server.data_to_send(),
        [&RFC_FRAG_1_UNMASKED[..], &RFC_FRAG_2_UNMASKED[..]].concat()
    );
}

#[test]
fn client_encodes_rfc_fragmented_text() {
    let mut client = fixed_key_client();
    client.send_fragment(OpCode::Text, b"Hel", false).unwrap();
    client
        .send_fragment(OpCode::Continuation, b"lo", true)
        .unwrap();
    let expected = [
        0x01, 0x83, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, // "Hel"
        0x80, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x5b, 0x95, // "lo"
    ];
    assert_eq!(client.data_to_send(), expected);
}

#[test]
fn server_answers_rfc_masked_ping_with_unmasked_pong() {
    let (mut server, events) = receive(Role::Server, &frame(PING, true, b"Hello", Some(KEY)));
    assert_eq!(events, [Event::Ping("Hello".into())]);
    assert_eq!(
        &server.take_data_to_send()[..],
        [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
}

#[test]
fn client_answers_rfc_unmasked_ping_with_rfc_masked_pong() {
    let mut client = fixed_key_client();
    client.receive_data(&RFC_PING_UNMASKED);
    assert_eq!(drain(&mut client), [Event::Ping("Hello".into())]);
    assert_eq!(client.data_to_send(), RFC_PONG_MASKED);
}

#[test]
fn server_decodes_rfc_masked_pong() {
    let (server, events) = receive(Role::Server, &RFC_PONG_MASKED);
    assert_eq!(events, [Event::Pong("Hello".into())]);
    assert!(!server.has_data_to_send());
}

#[test]
fn client_decodes_unmasked_pong() {
    let (client, events) = receive(Role::Client, &frame(PONG, true, b"Hello", None));
    assert_eq!(events, [Event::Pong("Hello".into())]);
    assert!(!client.has_data_to_send());
}

#[test]
fn server_encodes_rfc_unmasked_ping() {
    let mut server = Connection::new(Role::Server);
    server.ping(b"Hello").unwrap();
    assert_eq!(server.data_to_send(), RFC_PING_UNMASKED);
}

#[test]
fn client_encodes_rfc_masked_pong() {
    let mut client = fixed_key_client();
    client.pong(b"Hello").unwrap();
    assert_eq!(client.data_to_send(), RFC_PONG_MASKED);
}

#[test]
fn server_decodes_256_byte_masked_binary() {
    let (_, events) = receive(Role::Server, &rfc_256_masked());
    assert_eq!(events, [binary(&pattern(256))]);
}

#[test]
fn client_decodes_rfc_256_byte_unmasked_binary() {
    let (_, events) = receive(Role::Client, &rfc_256_unmasked());
    assert_eq!(events, [binary(&pattern(256))]);
}

#[test]
fn server_encodes_rfc_256_byte_unmasked_binary() {
    let mut server = Connection::new(Role::Server);
    server.send_binary(&pattern(256)).unwrap();
    assert_eq!(server.data_to_send(), rfc_256_unmasked());
}

#[test]
fn client_encodes_256_byte_masked_binary() {
    let mut client = fixed_key_client();
    client.send_binary(&pattern(256)).unwrap();
    assert_eq!(client.data_to_send(), rfc_256_masked());
}

#[test]
fn server_decodes_64k_masked_binary() {
    let (_, events) = receive(Role::Server, &rfc_64k_masked());
    assert_eq!(events, [binary(&pattern(65536))]);
}

#[test]
fn client_decodes_rfc_64k_unmasked_binary() {
    let (_, events) = receive(Role::Client, &rfc_64k_unmasked());
    assert_eq!(events, [binary(&pattern(65536))]);
}

#[test]
fn server_encodes_rfc_64k_unmasked_binary() {
    let mut server = Connection::new(Role::Server);
    server.send_binary(&pattern(65536)).unwrap();
    assert_eq!(server.data_to_send(), rfc_64k_unmasked());
}

#[test]
fn client_encodes_64k_masked_binary() {
    let mut client = fixed_key_client();
    client.send_binary(&pattern(65536)).unwrap();
    assert_eq!(client.data_to_send(), rfc_64k_masked());
}

// ===== protocol rules -> close codes ======================================

#[test]
fn server_rejects_unmasked_frame() {
    expect_failure(
        Role::Server,
        &RFC_TEXT_UNMASKED,
        ProtocolError::UnmaskedFrame,
        1002,
    );
    // Control frames too.
    expect_failure(
        Role::Server,
        &RFC_PING_UNMASKED,
        ProtocolError::UnmaskedFrame,
        1002,
    );
}

#[test]
fn client_rejects_masked_frame() {
    expect_failure(
        Role::Client,
        &RFC_TEXT_MASKED,
        ProtocolError::MaskedFrame,
        1002,
    );
    expect_failure(
        Role::Client,
        &RFC_PONG_MASKED,
        ProtocolError::MaskedFrame,
        1002,
    );
}

#[test]
fn server_rejects_unmasked_frame_from_header_alone() {
    // The masking rule is enforced before any payload arrives.
    expect_failure(
        Role::Server,
        &header(FIN | BINARY, 1000, None),
        ProtocolError::UnmaskedFrame,
        1002,
    );
}

#[test]
fn client_rejects_masked_frame_from_header_alone() {
    expect_failure(
        Role::Client,
        &header(FIN | BINARY, 1000, Some(KEY)),
        ProtocolError::MaskedFrame,
        1002,
    );
}

fn rejects_reserved_bits(role: Role) {
    for rsv in [RSV1, RSV2, RSV3, RSV1 | RSV2, RSV1 | RSV2 | RSV3] {
        for op in [TEXT, BINARY, PING, CLOSE] {
            let input = raw_from_peer(role, FIN | rsv | op, b"x\x00");
            expect_failure(role, &input, ProtocolError::ReservedBits(rsv), 1002);
        }
        // On a continuation frame of a well-started message.
        let input = concat(&[
            from_peer(role, TEXT, false, b"a"),
            raw_from_peer(role, FIN | rsv | CONT, b"b"),
        ]);
        expect_failure(role, &input, ProtocolError::ReservedBits(rsv), 1002);
    }
}

#[test]
fn server_rejects_reserved_bits_without_extension() {
    rejects_reserved_bits(Role::Server);
}

#[test]
fn client_rejects_reserved_bits_without_extension() {
    rejects_reserved_bits(Role::Client);
}

fn rejects_reserved_opcodes(role: Role) {
    for op in [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        expect_failure(
            role,
            &raw_from_peer(role, FIN | op, b"x"),
            ProtocolError::ReservedOpcode(op),
            1002,
        );
        // Without FIN, and from the first two bytes alone.
        expect_failure(role, &[op, 0x80], ProtocolError::ReservedOpcode(op), 1002);
    }
}

#[test]
fn server_rejects_reserved_opcodes() {
    rejects_reserved_opcodes(Role::Server);
}

#[test]
fn client_rejects_reserved_opcodes() {
    rejects_reserved_opcodes(Role::Client);
}

fn rejects_fragmented_control_frames(role: Role) {
    for op in [PING, PONG, CLOSE] {
        let input = from_peer(role, op, false, b"");
        expect_failure(role, &input, ProtocolError::FragmentedControl, 1002);
        // Also inside a fragmented message.
        let input = concat(&[
            from_peer(role, TEXT, false, b"a"),
            from_peer(role, op, false, b""),
        ]);
        expect_failure(role, &input, ProtocolError::FragmentedControl, 1002);
    }
}

#[test]
fn server_rejects_fragmented_control_frames() {
    rejects_fragmented_control_frames(Role::Server);
}

#[test]
fn client_rejects_fragmented_control_frames() {
    rejects_fragmented_control_frames(Role::Client);
}

fn rejects_long_control_frames(role: Role) {
    for op in [PING, PONG, CLOSE] {
        // Only the header, declaring 126 bytes: rejected before the payload.
        let input = header_from_peer(role, FIN | op, 126);
        expect_failure(role, &input, ProtocolError::ControlTooLong, 1002);
        let input = header_from_peer(role, FIN | op, 70_000);
        expect_failure(role, &input, ProtocolError::ControlTooLong, 1002);
    }
    // 125 bytes is fine.
    let (mut conn, events) = receive(role, &from_peer(role, PING, true, &[b'p'; 125]));
    assert_eq!(events, [Event::Ping(vec![b'p'; 125].into())]);
    let pong = take_frames(&mut conn);
    assert_eq!(pong.len(), 1);
    assert_eq!((pong[0].opcode, pong[0].payload.len()), (PONG, 125));
}

#[test]
fn server_rejects_control_frame_over_125_bytes() {
    rejects_long_control_frames(Role::Server);
}

#[test]
fn client_rejects_control_frame_over_125_bytes() {
    rejects_long_control_frames(Role::Client);
}

fn rejects_continuation_without_start(role: Role) {
    for fin in [true, false] {
        let input = from_peer(role, CONT, fin, b"lo");
        expect_failure(role, &input, ProtocolError::UnexpectedContinuation, 1002);
    }
    // After a complete message, too.
    let input = concat(&[
        from_peer(role, TEXT, true, b"Hel"),
        from_peer(role, CONT, true, b"lo"),
    ]);
    let mut conn = Connection::new(role);
    conn.receive_data(&input);
    assert_eq!(conn.next_event(), Ok(Some(text("Hel"))));
    assert_eq!(
        conn.next_event(),
        Err(ProtocolError::UnexpectedContinuation)
    );
    assert_failed(&mut conn, &ProtocolError::UnexpectedContinuation, 1002);
}

#[test]
fn server_rejects_continuation_without_start() {
    rejects_continuation_without_start(Role::Server);
}

#[test]
fn client_rejects_continuation_without_start() {
    rejects_continuation_without_start(Role::Client);
}

fn rejects_new_message_inside_fragmented(role: Role) {
    for first in [TEXT, BINARY] {
        for second in [TEXT, BINARY] {
            for fin in [true, false] {
                let input = concat(&[
                    from_peer(role, first, false, b"Hel"),
                    from_peer(role, second, fin, b"lo"),
                ]);
                expect_failure(role, &input, ProtocolError::ExpectedContinuation, 1002);
            }
        }
    }
}

#[test]
fn server_rejects_new_message_inside_fragmented_message() {
    rejects_new_message_inside_fragmented(Role::Server);
}

#[test]
fn client_rejects_new_message_inside_fragmented_message() {
    rejects_new_message_inside_fragmented(Role::Client);
}

fn rejects_invalid_utf8_single_frame(role: Role) {
    let bad: [&[u8]; 6] = [
        b"\xff",
        b"Hello\xc0\xafworld",            // overlong '/'
        b"\xed\xa0\x80",                  // surrogate
        b"\xf4\x90\x80\x80",              // above U+10FFFF
        "κόσμε".as_bytes().split_at(3).0, // ends inside a character
        b"abc\x80",
    ];
    for payload in bad {
        let input = from_peer(role, TEXT, true, payload);
        expect_failure(role, &input, ProtocolError::InvalidUtf8, 1007);
    }
    // The same bytes are a fine binary message.
    let (_, events) = receive(role, &from_peer(role, BINARY, true, b"\xff"));
    assert_eq!(events, [binary(b"\xff")]);
}

#[test]
fn server_rejects_invalid_utf8_text_frame() {
    rejects_invalid_utf8_single_frame(Role::Server);
}

#[test]
fn client_rejects_invalid_utf8_text_frame() {
    rejects_invalid_utf8_single_frame(Role::Client);
}

/// "κόσμε", then the surrogate ed a0 80 split over fragments: the error
/// comes with the fragment holding 0xa0, before the final fragment exists.
fn rejects_invalid_utf8_on_the_bad_fragment(role: Role) {
    let mut conn = Connection::new(role);
    conn.receive_data(&from_peer(role, TEXT, false, "κόσμε".as_bytes()));
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&from_peer(role, CONT, false, b"\xed"));
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&from_peer(role, CONT, false, b"\xa0\x80"));
    assert_eq!(conn.next_event(), Err(ProtocolError::InvalidUtf8));
    assert_failed(&mut conn, &ProtocolError::InvalidUtf8, 1007);

    // A bad byte wholly inside a middle fragment.
    let mut conn = Connection::new(role);
    conn.receive_data(&from_peer(role, TEXT, false, b"fine"));
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&from_peer(role, CONT, false, b"still fine \xff then"));
    assert_eq!(conn.next_event(), Err(ProtocolError::InvalidUtf8));
    assert_failed(&mut conn, &ProtocolError::InvalidUtf8, 1007);

    // A message that ends inside a character fails on its final fragment.
    let euro = "€".as_bytes();
    let mut conn = Connection::new(role);
    conn.receive_data(&from_peer(role, TEXT, false, &euro[..2]));
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&from_peer(role, CONT, true, b""));
    assert_eq!(conn.next_event(), Err(ProtocolError::InvalidUtf8));
    assert_failed(&mut conn, &ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn server_rejects_invalid_utf8_on_the_bad_fragment() {
    rejects_invalid_utf8_on_the_bad_fragment(Role::Server);
}

#[test]
fn client_rejects_invalid_utf8_on_the_bad_fragment() {
    rejects_invalid_utf8_on_the_bad_fragment(Role::Client);
}

/// Autobahn 6.4.3/6.4.4: one text frame arriving in chops. Invalid UTF-8
/// fails the connection with the chop that holds it, before the rest of the
/// frame (here: never sent) arrives. Also inside a continuation frame, and
/// a valid frame sent in chops still comes out whole.
fn rejects_invalid_utf8_inside_an_incomplete_frame(role: Role) {
    let prefix = "κόσμε".as_bytes();
    for (payload, good, bad) in [
        // 6.4.3: the second chop is f4 90 80 80 (above U+10FFFF).
        (&b"\xf4\x90\x80\x80edited"[..], 0, 4),
        // 6.4.4: the first chop ends on f4 (a valid start), then 0x90.
        (&b"\xf4\x90"[..], 1, 1),
    ] {
        let whole = from_peer(role, TEXT, true, &[prefix, payload].concat());
        let head = whole.len() - payload.len();
        let mut conn = Connection::new(role);
        conn.receive_data(&whole[..head + good]);
        assert_eq!(conn.next_event(), Ok(None), "first chop is fine");
        conn.receive_data(&whole[head + good..head + good + bad]);
        assert_eq!(conn.next_event(), Err(ProtocolError::InvalidUtf8));
        assert_failed(&mut conn, &ProtocolError::InvalidUtf8, 1007);
    }

    // Inside a continuation frame, with a character split across frames.
    let mut conn = Connection::new(role);
    conn.receive_data(&from_peer(role, TEXT, false, &prefix[..3]));
    assert_eq!(conn.next_event(), Ok(None));
    let cont = from_peer(
        role,
        CONT,
        true,
        &[&prefix[3..], b"\xed\xa0\x80 and more"].concat(),
    );
    let bad = cont.len() - b"\xa0\x80 and more".len();
    conn.receive_data(&cont[..bad]);
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&cont[bad..bad + 1]);
    assert_eq!(conn.next_event(), Err(ProtocolError::InvalidUtf8));
    assert_failed(&mut conn, &ProtocolError::InvalidUtf8, 1007);

    // Valid text in chops of every size: the same message as all at once.
    let text_in = text_of_len(300);
    let input = concat(&[
        from_peer(role, TEXT, false, &text_in.as_bytes()[..101]),
        from_peer(role, CONT, true, &text_in.as_bytes()[101..]),
    ]);
    for chunk in 1..=9 {
        let mut conn = Connection::new(role);
        let mut events = Vec::new();
        for piece in input.chunks(chunk) {
            conn.receive_data(piece);
            events.extend(drain(&mut conn));
        }
        assert_eq!(events, [text(&text_in)], "chunks of {chunk}");
    }
}

#[test]
fn server_rejects_invalid_utf8_inside_an_incomplete_frame() {
    rejects_invalid_utf8_inside_an_incomplete_frame(Role::Server);
}

#[test]
fn client_rejects_invalid_utf8_inside_an_incomplete_frame() {
    rejects_invalid_utf8_inside_an_incomplete_frame(Role::Client);
}

fn rejects_one_byte_close(role: Role) {
    let input = from_peer(role, CLOSE, true, &[0x03]);
    expect_failure(role, &input, ProtocolError::ClosePayloadTooShort, 1002);
}

#[test]
fn server_rejects_one_byte_close_payload() {
    rejects_one_byte_close(Role::Server);
}

#[test]
fn client_rejects_one_byte_close_payload() {
    rejects_one_byte_close(Role::Client);
}

const INVALID_CLOSE_CODES: [u16; 10] = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535];

fn rejects_invalid_close_codes(role: Role) {
    for code in INVALID_CLOSE_CODES {
        for reason in ["", "why"] {
            let input = from_peer(role, CLOSE, true, &close_payload(code, reason));
            expect_failure(role, &input, ProtocolError::InvalidCloseCode(code), 1002);
        }
    }
}

#[test]
fn server_rejects_invalid_close_codes() {
    rejects_invalid_close_codes(Role::Server);
}

#[test]
fn client_rejects_invalid_close_codes() {
    rejects_invalid_close_codes(Role::Client);
}

fn valid_close_codes() -> Vec<u16> {
    (1000..=1003)
        .chain(1007..=1014)
        .chain([3000, 3999, 4000, 4999])
        .collect()
}

fn accepts_and_echoes_valid_close_codes(role: Role) {
    for code in valid_close_codes() {
        let (mut conn, events) = receive(
            role,
            &from_peer(role, CLOSE, true, &close_payload(code, "r")),
        );
        assert_eq!(
            events,
            [Event::Close(Some(CloseFrame::new(
                CloseCode::from(code),
                "r"
            )))]
        );
        assert_eq!(
            take_close(&mut conn),
            (code, String::new()),
            "echo of {code}"
        );
        assert!(conn.close_expected());
        assert_eq!(conn.failure(), None);
    }
}

#[test]
fn server_accepts_and_echoes_valid_close_codes() {
    accepts_and_echoes_valid_close_codes(Role::Server);
}

#[test]
fn client_accepts_and_echoes_valid_close_codes() {
    accepts_and_echoes_valid_close_codes(Role::Client);
}

fn rejects_invalid_utf8_close_reason(role: Role) {
    for reason in [&b"\xff"[..], b"bye\xed\xa0\x80", b"\xe2\x82"] {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        let input = from_peer(role, CLOSE, true, &payload);
        expect_failure(role, &input, ProtocolError::InvalidCloseReason, 1002);
    }
}

#[test]
fn server_rejects_invalid_utf8_close_reason() {
    rejects_invalid_utf8_close_reason(Role::Server);
}

#[test]
fn client_rejects_invalid_utf8_close_reason() {
    rejects_invalid_utf8_close_reason(Role::Client);
}

fn rejects_top_bit_length(role: Role) {
    let mut input = vec![
        FIN | BINARY,
        127 | if role == Role::Server { 0x80 } else { 0 },
    ];
    input.extend_from_slice(&(1u64 << 63).to_be_bytes());
    if role == Role::Server {
        input.extend_from_slice(&KEY);
    }
    expect_failure(role, &input, ProtocolError::InvalidLength, 1002);
    // All bits set.
    let mut input = header_from_peer(role, FIN | BINARY, MAX_DECLARED);
    input[2] = 0xff;
    expect_failure(role, &input, ProtocolError::InvalidLength, 1002);
}

#[test]
fn server_rejects_64_bit_length_with_top_bit_set() {
    rejects_top_bit_length(Role::Server);
}

#[test]
fn client_rejects_64_bit_length_with_top_bit_set() {
    rejects_top_bit_length(Role::Client);
}

// ===== size limits ========================================================

fn rejects_huge_frame_from_header_alone(role: Role) {
    for len in [MAX_DECLARED, DEFAULT_MAX_FRAME as u64 + 1] {
        for op in [TEXT, BINARY] {
            let input = header_from_peer(role, FIN | op, len);
            let expected = ProtocolError::FrameTooLarge {
                len,
                max: DEFAULT_MAX_FRAME,
            };
            expect_failure(role, &input, expected, 1009);
        }
    }
    // Before the error, an incomplete header is just incomplete.
    let input = header_from_peer(role, FIN | BINARY, MAX_DECLARED);
    let mut conn = Connection::new(role);
    conn.receive_data(&input[..input.len() - 1]);
    assert_eq!(conn.next_event(), Ok(None));
    assert!(!conn.has_data_to_send());
    conn.receive_data(&input[input.len() - 1..]);
    assert!(matches!(
        conn.next_event(),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
}

#[test]
fn server_rejects_frame_over_max_frame_size_from_header() {
    rejects_huge_frame_from_header_alone(Role::Server);
}

#[test]
fn client_rejects_frame_over_max_frame_size_from_header() {
    rejects_huge_frame_from_header_alone(Role::Client);
}

/// A message over the limit across fragments fails on the header of the
/// fragment that would exceed it, before that fragment's payload.
fn rejects_huge_message_from_header_alone(role: Role) {
    let max = 1000;
    let config = Config::default()
        .max_message_size(max)
        .max_frame_size(usize::MAX);
    let first = from_peer(role, BINARY, false, &pattern(600));
    for (len, fin) in [(401, true), (401, false), (MAX_DECLARED, true)] {
        let input = concat(&[
            first.clone(),
            header_from_peer(role, if fin { FIN } else { 0 }, len),
        ]);
        expect_failure_with(
            role,
            config,
            &input,
            ProtocolError::MessageTooLarge { max },
            1009,
        );
    }
    // A single frame declaring 2^63-1 with only the message limit binding.
    let input = header_from_peer(role, FIN | TEXT, MAX_DECLARED);
    expect_failure_with(
        role,
        config,
        &input,
        ProtocolError::MessageTooLarge { max },
        1009,
    );

    // With the default limits, across many fragments of the frame limit.
    let mut conn = Connection::new(role);
    let chunk = from_peer(role, BINARY, false, &[]);
    conn.receive_data(&chunk);
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&header_from_peer(role, CONT, DEFAULT_MAX_FRAME as u64));
    assert_eq!(conn.next_event(), Ok(None));
    assert_eq!(conn.bytes_needed(), DEFAULT_MAX_FRAME);
}

#[test]
fn server_rejects_message_over_max_message_size_across_fragments() {
    rejects_huge_message_from_header_alone(Role::Server);
}

#[test]
fn client_rejects_message_over_max_message_size_across_fragments() {
    rejects_huge_message_from_header_alone(Role::Client);
}

fn configurable_limits(role: Role) {
    let config = Config::default().max_message_size(10).max_frame_size(4);
    assert_eq!((config.max_message_size, config.max_frame_size), (10, 4));
    let defaults = Config::default();
    assert_eq!(
        (defaults.max_message_size, defaults.max_frame_size),
        (DEFAULT_MAX_MESSAGE, DEFAULT_MAX_FRAME)
    );

    // Exactly at both limits: 4 + 4 + 2 = 10 bytes, frames of at most 4.
    let mut conn = Connection::with_config(role, config);
    assert_eq!(conn.config().max_message_size, 10);
    conn.receive_data(&concat(&[
        from_peer(role, TEXT, false, b"abcd"),
        from_peer(role, CONT, false, b"efgh"),
        from_peer(role, CONT, true, b"ij"),
        from_peer(role, BINARY, true, b"1234"),
    ]));
    assert_eq!(drain(&mut conn), [text("abcdefghij"), binary(b"1234")]);

    // A 5-byte frame.
    let input = from_peer(role, BINARY, true, b"12345");
    expect_failure_with(
        role,
        config,
        &input,
        ProtocolError::FrameTooLarge { len: 5, max: 4 },
        1009,
    );
    // Also for control frames.
    let input = from_peer(role, PING, true, b"12345");
    expect_failure_with(
        role,
        config,
        &input,
        ProtocolError::FrameTooLarge { len: 5, max: 4 },
        1009,
    );

    // 11 bytes over three frames: fails on the third header.
    let mut conn = Connection::with_config(role, config);
    conn.receive_data(&concat(&[
        from_peer(role, TEXT, false, b"abcd"),
        from_peer(role, CONT, false, b"efgh"),
    ]));
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&header_from_peer(role, FIN | CONT, 3));
    assert_eq!(
        conn.next_event(),
        Err(ProtocolError::MessageTooLarge { max: 10 })
    );
    assert_failed(&mut conn, &ProtocolError::MessageTooLarge { max: 10 }, 1009);

    // Control frames do not count towards the message size.
    let mut conn = Connection::with_config(role, config);
    conn.receive_data(&concat(&[
        from_peer(role, BINARY, false, b"abcd"),
        from_peer(role, PING, true, b"pppp"),
        from_peer(role, CONT, false, b"efgh"),
        from_peer(role, PONG, true, b"pppp"),
        from_peer(role, CONT, true, b"ij"),
    ]));
    assert_eq!(
        drain(&mut conn),
        [
            Event::Ping("pppp".into()),
            Event::Pong("pppp".into()),
            binary(b"abcdefghij")
        ]
    );
}

#[test]
fn server_limits_are_configurable_and_inclusive() {
    configurable_limits(Role::Server);
}

#[test]
fn client_limits_are_configurable_and_inclusive() {
    configurable_limits(Role::Client);
}

fn message_exactly_at_default_frame_limit(role: Role) {
    let payload = pattern(DEFAULT_MAX_FRAME);
    let (_, events) = receive(role, &from_peer(role, BINARY, true, &payload));
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0], Event::Message(Message::Binary(b)) if b[..] == payload[..]));
}

#[test]
fn server_accepts_frame_exactly_at_default_limit() {
    message_exactly_at_default_frame_limit(Role::Server);
}

#[test]
fn client_accepts_frame_exactly_at_default_limit() {
    message_exactly_at_default_frame_limit(Role::Client);
}

/// With the limits lifted, a header declaring 2^63-1 bytes must not make
/// the connection try to allocate it: it just waits for the payload.
fn unlimited_config_survives_huge_header(role: Role) {
    let config = Config::default()
        .max_message_size(usize::MAX)
        .max_frame_size(usize::MAX);
    let mut conn = Connection::with_config(role, config);
    conn.receive_data(&header_from_peer(role, FIN | BINARY, MAX_DECLARED));
    assert_eq!(conn.next_event(), Ok(None));
    assert_eq!(conn.bytes_needed() as u64, MAX_DECLARED);
    assert!(!conn.has_data_to_send());
    assert!(
        conn.read_buf().capacity() < 1 << 20,
        "a header alone reserved a large buffer"
    );
    // The payload is still taken as it arrives.
    conn.receive_data(&pattern(1000));
    assert_eq!(conn.next_event(), Ok(None));
    assert_eq!(conn.bytes_needed() as u64, MAX_DECLARED - 1000);
}

/// With the default limits, a header declaring the largest allowed frame
/// does not make the connection reserve all of it up front.
fn header_alone_reserves_little(role: Role) {
    let mut conn = Connection::new(role);
    conn.receive_data(&header_from_peer(
        role,
        FIN | BINARY,
        DEFAULT_MAX_FRAME as u64,
    ));
    assert_eq!(conn.next_event(), Ok(None));
    assert_eq!(conn.bytes_needed(), DEFAULT_MAX_FRAME);
    assert!(
        conn.read_buf().capacity() < 1 << 20,
        "a header alone reserved a large buffer"
    );
}

#[test]
fn server_header_alone_reserves_little() {
    header_alone_reserves_little(Role::Server);
}

#[test]
fn client_header_alone_reserves_little() {
    header_alone_reserves_little(Role::Client);
}

#[test]
fn server_with_unlimited_config_survives_huge_header() {
    unlimited_config_survives_huge_header(Role::Server);
}

#[test]
fn client_with_unlimited_config_survives_huge_header() {
    unlimited_config_survives_huge_header(Role::Client);
}

// ===== message assembly ===================================================

fn ping_between_fragments(role: Role) {
    let mut conn = Connection::new(role);
    conn.set_fixed_mask_key(KEY);
    conn.receive_data(&from_peer(role, TEXT, false, b"Hel"));
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&from_peer(role, PING, true, b"are you there"));
    assert_eq!(
        conn.next_event(),
        Ok(Some(Event::Ping("are you there".into())))
    );
    // The pong is queued at once, in the middle of the message.
    let pong = frame(
        PONG,
        true,
        b"are you there",
        if role == Role::Client {
            Some(KEY)
        } else {
            None
        },
    );
    assert_eq!(&conn.take_data_to_send()[..], &pong[..]);
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&concat(&[
        from_peer(role, CONT, false, b"l"),
        from_peer(role, PONG, true, b"late"),
        from_peer(role, CONT, true, b"o"),
    ]));
    assert_eq!(conn.next_event(), Ok(Some(Event::Pong("late".into()))));
    assert_eq!(conn.next_event(), Ok(Some(text("Hello"))));
    assert_eq!(conn.next_event(), Ok(None));
    assert!(!conn.has_data_to_send());
}

#[test]
fn server_delivers_ping_between_text_fragments_first() {
    ping_between_fragments(Role::Server);
}

#[test]
fn client_delivers_ping_between_text_fragments_first() {
    ping_between_fragments(Role::Client);
}

fn auto_pong_can_be_disabled(role: Role) {
    let mut conn = Connection::with_config(role, Config::default().auto_pong(false));
    conn.receive_data(&from_peer(role, PING, true, b"x"));
    assert_eq!(drain(&mut conn), [Event::Ping("x".into())]);
    assert!(!conn.has_data_to_send());
}

#[test]
fn server_auto_pong_can_be_disabled() {
    auto_pong_can_be_disabled(Role::Server);
}

#[test]
fn client_auto_pong_can_be_disabled() {
    auto_pong_can_be_disabled(Role::Client);
}

fn one_byte_fragments_of_multibyte_text(role: Role) {
    let s = "aé€𝄞 κόσμε";
    let bytes = s.as_bytes();
    let mut conn = Connection::new(role);
    for (i, b) in bytes.iter().enumerate() {
        let opcode = if i == 0 { TEXT } else { CONT };
        let fin = i == bytes.len() - 1;
        conn.receive_data(&from_peer(role, opcode, fin, &[*b]));
        let expected = if fin { Some(text(s)) } else { None };
        assert_eq!(conn.next_event(), Ok(expected), "after byte {i}");
    }
}

#[test]
fn server_assembles_one_byte_fragments_of_multibyte_text() {
    one_byte_fragments_of_multibyte_text(Role::Server);
}

#[test]
fn client_assembles_one_byte_fragments_of_multibyte_text() {
    one_byte_fragments_of_multibyte_text(Role::Client);
}

fn empty_fragments(role: Role) {
    let input = concat(&[
        from_peer(role, TEXT, false, b""),
        from_peer(role, CONT, false, "€".as_bytes().split_at(1).0),
        from_peer(role, CONT, false, b""),
        from_peer(role, CONT, false, "€".as_bytes().split_at(1).1),
        from_peer(role, CONT, true, b""),
        from_peer(role, BINARY, false, b"ab"),
        from_peer(role, CONT, false, b""),
        from_peer(role, CONT, true, b"c"),
    ]);
    let (_, events) = receive(role, &input);
    assert_eq!(events, [text("€"), binary(b"abc")]);
}

#[test]
fn server_assembles_messages_with_empty_fragments() {
    empty_fragments(Role::Server);
}

#[test]
fn client_assembles_messages_with_empty_fragments() {
    empty_fragments(Role::Client);
}

fn zero_length_messages(role: Role) {
    let input = concat(&[
        from_peer(role, TEXT, true, b""),
        from_peer(role, BINARY, true, b""),
        from_peer(role, TEXT, false, b""),
        from_peer(role, CONT, true, b""),
        from_peer(role, BINARY, false, b""),
        from_peer(role, CONT, false, b""),
        from_peer(role, CONT, true, b""),
        from_peer(role, PING, true, b""),
        from_peer(role, PONG, true, b""),
    ]);
    let (mut conn, events) = receive(role, &input);
    assert_eq!(
        events,
        [
            text(""),
            binary(b""),
            text(""),
            binary(b""),
            Event::Ping("".into()),
            Event::Pong("".into()),
        ]
    );
    let pong = take_frames(&mut conn);
    assert_eq!(pong.len(), 1);
    assert_eq!(
        (pong[0].opcode, pong[0].fin, &pong[0].payload[..]),
        (PONG, true, &b""[..])
    );
}

#[test]
fn server_delivers_zero_length_messages() {
    zero_length_messages(Role::Server);
}

#[test]
fn client_delivers_zero_length_messages() {
    zero_length_messages(Role::Client);
}

fn close_in_the_middle_of_a_fragmented_message(role: Role) {
    let input = concat(&[
        from_peer(role, TEXT, false, b"never "),
        from_peer(role, CLOSE, true, &close_payload(1001, "gone")),
        from_peer(role, CONT, true, b"finished"),
    ]);
    let (mut conn, events) = receive(role, &input);
    assert_eq!(
        events,
        [Event::Close(Some(CloseFrame::new(
            CloseCode::GoingAway,
            "gone"
        )))]
    );
    assert_eq!(take_close(&mut conn), (1001, String::new()));
    assert!(conn.close_expected());
}

#[test]
fn server_drops_unfinished_message_on_close() {
    close_in_the_middle_of_a_fragmented_message(Role::Server);
}

#[test]
fn client_drops_unfinished_message_on_close() {
    close_in_the_middle_of_a_fragmented_message(Role::Client);
}

// ===== sending rules ======================================================

fn send_rules(role: Role) {
    let mut conn = Connection::new(role);
    assert_eq!(
        conn.send_fragment(OpCode::Continuation, b"x", true),
        Err(SendError::Fragmentation)
    );
    assert_eq!(
        conn.send_fragment(OpCode::Ping, b"x", true),
        Err(SendError::Fragmentation)
    );
    assert_eq!(conn.ping(&[0; 126]), Err(SendError::ControlTooLong));
    assert_eq!(conn.pong(&[0; 126]), Err(SendError::ControlTooLong));
    assert!(!conn.has_data_to_send());

    conn.send_fragment(OpCode::Binary, b"ab", false).unwrap();
    assert_eq!(conn.send_text("no"), Err(SendError::Fragmentation));
    assert_eq!(
        conn.send_fragment(OpCode::Text, b"no", true),
        Err(SendError::Fragmentation)
    );
    conn.ping(b"p").unwrap(); // control frames may interleave
    conn.send_fragment(OpCode::Continuation, b"cd", false)
        .unwrap();
    conn.send_fragment(OpCode::Continuation, b"e", true)
        .unwrap();
    conn.send_text("after").unwrap();

    let frames = take_frames(&mut conn);
    let summary: Vec<_> = frames
        .iter()
        .map(|f| (f.opcode, f.fin, &f.payload[..]))
        .collect();
    assert_eq!(
        summary,
        [
            (BINARY, false, &b"ab"[..]),
            (PING, true, b"p"),
            (CONT, false, b"cd"),
            (CONT, true, b"e"),
            (TEXT, true, b"after"),
        ]
    );
}

#[test]
fn server_enforces_send_rules() {
    send_rules(Role::Server);
}

#[test]
fn client_enforces_send_rules() {
    send_rules(Role::Client);
}

// ===== close handshake ====================================================

fn peer_closes_first(role: Role) {
    let mut conn = Connection::new(role);
    conn.receive_data(&concat(&[
        from_peer(role, TEXT, true, b"before"),
        from_peer(role, CLOSE, true, &close_payload(1001, "going away")),
        from_peer(role, TEXT, true, b"after"),
        from_peer(role, PING, true, b"after"),
    ]));
    assert_eq!(conn.next_event(), Ok(Some(text("before"))));
    assert_eq!(conn.state(), State::Open);
    assert!(!conn.close_expected());
    let close = CloseFrame::new(CloseCode::GoingAway, "going away");
    assert_eq!(
        conn.next_event(),
        Ok(Some(Event::Close(Some(close.clone()))))
    );
    // The echo carries the same code.
    let out = conn.take_data_to_send();
    assert_eq!(close_of(&out), (1001, String::new()));
    if role == Role::Server {
        assert_eq!(&out[..], [0x88, 0x02, 0x03, 0xe9]);
    }
    assert!(conn.close_expected());
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(conn.close_received(), Some(&Some(close)));
    assert_eq!(
        conn.close_sent(),
        Some(&Some(CloseFrame::new(CloseCode::GoingAway, "")))
    );
    // Data after the Close is ignored; no pong either.
    assert_eq!(conn.next_event(), Ok(None));
    conn.receive_data(&from_peer(role, TEXT, true, b"later"));
    assert_eq!(conn.next_event(), Ok(None));
    assert!(!conn.has_data_to_send());
    assert_eq!(conn.failure(), None);
    assert_eq!(conn.send_text("x"), Err(SendError::Closing));
    assert_eq!(conn.close(CloseCode::Normal, ""), Err(SendError::Closing));
    assert!(!conn.has_data_to_send());
    conn.receive_eof();
    assert_eq!(conn.state(), State::Closed);
}

#[test]
fn server_echoes_close() {
    peer_closes_first(Role::Server);
}

#[test]
fn client_echoes_close() {
    peer_closes_first(Role::Client);
}

fn empty_close_echoed_as_1000(role: Role) {
    let (mut conn, events) = receive(role, &from_peer(role, CLOSE, true, b""));
    assert_eq!(events, [Event::Close(None)]);
    let out = conn.take_data_to_send();
    assert_eq!(close_of(&out), (1000, String::new()));
    if role == Role::Server {
        assert_eq!(&out[..], [0x88, 0x02, 0x03, 0xe8]);
    }
    assert_eq!(conn.close_received(), Some(&None));
    assert!(conn.close_expected());
}

#[test]
fn server_echoes_empty_close_with_1000() {
    empty_close_echoed_as_1000(Role::Server);
}

#[test]
fn client_echoes_empty_close_with_1000() {
    empty_close_echoed_as_1000(Role::Client);
}

fn we_close_first(role: Role) {
    let mut conn = Connection::new(role);
    conn.set_fixed_mask_key(KEY);
    conn.close(CloseCode::Normal, "bye").unwrap();
    let out = conn.take_data_to_send();
    let expected = frame(
        CLOSE,
        true,
        &close_payload(1000, "bye"),
        if role == Role::Client {
            Some(KEY)
        } else {
            None
        },
    );
    assert_eq!(&out[..], &expected[..]);
    if role == Role::Server {
        assert_eq!(&out[..], [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);
    }
    assert_eq!(conn.state(), State::Closing);
    assert!(!conn.close_expected());
    assert_eq!(
        conn.close_sent(),
        Some(&Some(CloseFrame::new(CloseCode::Normal, "bye")))
    );
    assert_eq!(conn.send_text("late"), Err(SendError::Closing));
    assert_eq!(conn.send_binary(b"late"), Err(SendError::Closing));
    assert_eq!(conn.ping(b"late"), Err(SendError::Closing));
    assert_eq!(
        conn.close(CloseCode::Normal, "again"),
        Err(SendError::Closing)
    );
    assert!(!conn.has_data_to_send());

    // The peer's data still arrives until its Close; no pong is sent after
    // our Close.
    conn.receive_data(&concat(&[
        from_peer(role, TEXT, false, b"still "),
        from_peer(role, PING, true, b"p"),
        from_peer(role, CONT, true, b"here"),
        from_peer(role, BINARY, true, b"\x00\x01"),
    ]));
    assert_eq!(
        drain(&mut conn),
        [
            Event::Ping("p".into()),
            text("still here"),
            binary(b"\x00\x01")
        ]
    );
    assert!(!conn.has_data_to_send());
    assert!(!conn.close_expected());

    conn.receive_data(&from_peer(role, CLOSE, true, &close_payload(1000, "ok")));
    assert_eq!(
        drain(&mut conn),
        [Event::Close(Some(CloseFrame::new(CloseCode::Normal, "ok")))]
    );
    // No second Close.
    assert!(!conn.has_data_to_send());
    assert!(conn.close_expected());
    assert_eq!(conn.failure(), None);
}

#[test]
fn server_closes_first() {
    we_close_first(Role::Server);
}

#[test]
fn client_closes_first() {
    we_close_first(Role::Client);
}

fn protocol_error_after_our_close(role: Role) {
    // A Close is already sent: the failure queues no second one.
    let mut conn = Connection::new(role);
    conn.close(CloseCode::GoingAway, "").unwrap();
    assert_eq!(take_close(&mut conn), (1001, String::new()));
    conn.receive_data(&from_peer(role, CONT, true, b"x"));
    assert_eq!(
        conn.next_event(),
        Err(ProtocolError::UnexpectedContinuation)
    );
    assert!(!conn.has_data_to_send());
    assert!(conn.close_expected());
    assert_eq!(
        conn.close_sent(),
        Some(&Some(CloseFrame::new(CloseCode::GoingAway, "")))
    );
}

#[test]
fn server_sends_one_close_when_failing_after_its_close() {
    protocol_error_after_our_close(Role::Server);
}

#[test]
fn client_sends_one_close_when_failing_after_its_close() {
    protocol_error_after_our_close(Role::Client);
}

fn long_close_reason_truncated(role: Role) {
    // ASCII: cut at 123 bytes exactly, so the payload is 125 bytes.
    let mut conn = Connection::new(role);
    conn.close(CloseCode::Normal, &"a".repeat(200)).unwrap();
    assert_eq!(take_close(&mut conn), (1000, "a".repeat(123)));
    // close_sent reports what went on the wire.
    let sent = CloseFrame::new(CloseCode::Normal, "a".repeat(123));
    assert_eq!(conn.close_sent(), Some(&Some(sent)));

    // Two-byte characters: 123 is inside the 62nd, so cut to 61 of them.
    let mut conn = Connection::new(role);
    conn.close(CloseCode::PolicyViolation, &"é".repeat(100))
        .unwrap();
    assert_eq!(take_close(&mut conn), (1008, "é".repeat(61)));

    // Four-byte characters: 30 of them fit (120 bytes).
    let mut conn = Connection::new(role);
    conn.close(CloseCode::from(4000), &"𝄞".repeat(40)).unwrap();
    assert_eq!(take_close(&mut conn), (4000, "𝄞".repeat(30)));

    // Exactly 123 bytes is kept whole.
    let reason = format!("{}€", "a".repeat(120));
    let mut conn = Connection::new(role);
    conn.close(CloseCode::Normal, &reason).unwrap();
    assert_eq!(take_close(&mut conn), (1000, reason));
}

#[test]
fn server_truncates_long_close_reason_on_char_boundary() {
    long_close_reason_truncated(Role::Server);
}

#[test]
fn client_truncates_long_close_reason_on_char_boundary() {
    long_close_reason_truncated(Role::Client);
}

fn close_code_validation_on_send(role: Role) {
    for code in [
        CloseCode::Abnormal,
        CloseCode::TlsHandshake,
        CloseCode::from(1004),
        CloseCode::from(999),
        CloseCode::from(2999),
        CloseCode::from(5000),
    ] {
        let mut conn = Connection::new(role);
        assert_eq!(
            conn.close(code, "x"),
            Err(SendError::InvalidCloseCode(code))
        );
        assert!(!conn.has_data_to_send());
        assert_eq!(conn.state(), State::Open);
        assert_eq!(conn.close_sent(), None);
        // The connection is still usable.
        conn.send_text("ok").unwrap();
    }
    // NoStatusReceived sends a Close without payload.
    let mut conn = Connection::new(role);
    conn.close(CloseCode::NoStatusReceived, "ignored").unwrap();
    let frames = take_frames(&mut conn);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].opcode, frames[0].fin, frames[0].payload.len()),
        (CLOSE, true, 0)
    );
    assert_eq!(conn.close_sent(), Some(&None));
    // Every valid code can be sent.
    for code in valid_close_codes() {
        let mut conn = Connection::new(role);
        conn.close(CloseCode::from(code), "r").unwrap();
        assert_eq!(take_close(&mut conn), (code, "r".to_owned()));
    }
}

#[test]
fn server_refuses_to_send_reserved_close_codes() {
    close_code_validation_on_send(Role::Server);
}

#[test]
fn client_refuses_to_send_reserved_close_codes() {
    close_code_validation_on_send(Role::Client);
}

#[test]
fn client_and_server_complete_the_closing_handshake() {
    let mut client = Connection::new(Role::Client);
    let mut server = Connection::new(Role::Server);
    client.close(CloseCode::Normal, "done").unwrap();
    server.receive_data(&client.take_data_to_send());
    assert_eq!(
        drain(&mut server),
        [Event::Close(Some(CloseFrame::new(
            CloseCode::Normal,
            "done"
        )))]
    );
    assert!(server.close_expected());
    client.receive_data(&server.take_data_to_send());
    assert!(!client.close_expected());
    assert_eq!(
        drain(&mut client),
        [Event::Close(Some(CloseFrame::new(CloseCode::Normal, "")))]
    );
    assert!(client.close_expected());
    assert!(!client.has_data_to_send());
}

// ===== end of stream ======================================================

fn eof_with_buffered_frames(role: Role) {
    let mut conn = Connection::new(role);
    let last = from_peer(role, BINARY, true, b"cut short");
    conn.receive_data(&concat(&[
        from_peer(role, TEXT, true, b"one"),
        from_peer(role, TEXT, false, b"t"),
        from_peer(role, CONT, true, b"wo"),
        last[..last.len() - 1].to_vec(),
    ]));
    conn.receive_eof();
    assert!(conn.eof_received());
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(conn.next_event(), Ok(Some(text("one"))));
    assert_eq!(conn.next_event(), Ok(Some(text("two"))));
    // The truncated frame never completes.
    assert_eq!(conn.next_event(), Ok(None));
    assert_eq!(conn.next_event(), Ok(None));
    assert_eq!(conn.state(), State::Closed);
    assert!(!conn.has_data_to_send());
    assert_eq!(conn.failure(), None);
}

#[test]
fn server_yields_buffered_frames_after_eof() {
    eof_with_buffered_frames(Role::Server);
}

#[test]
fn client_yields_buffered_frames_after_eof() {
    eof_with_buffered_frames(Role::Client);
}

fn eof_with_truncated_header(role: Role) {
    let mut conn = Connection::new(role);
    conn.receive_data(&header_from_peer(role, FIN | BINARY, 70_000)[..3]);
    conn.receive_eof();
    assert_eq!(conn.next_event(), Ok(None));
    assert_eq!(conn.state(), State::Closed);
    assert!(!conn.has_data_to_send());
}

#[test]
fn server_yields_nothing_for_truncated_header_at_eof() {
    eof_with_truncated_header(Role::Server);
}

#[test]
fn client_yields_nothing_for_truncated_header_at_eof() {
    eof_with_truncated_header(Role::Client);
}

// ===== incremental input ==================================================

/// A valid stream mixing every kind of frame and length form, ending with
/// a Close.
fn mixed_stream(role: Role) -> (Vec<u8>, Vec<Event>) {
    let kosme = "κόσμε".as_bytes();
    let big = pattern(70_000);
    let input = concat(&[
        from_peer(role, TEXT, true, b"Hello"),
        from_peer(role, BINARY, true, &pattern(300)),
        from_peer(role, PING, true, b"ping 1"),
        from_peer(role, TEXT, false, &kosme[..3]), // splits "ό"
        from_peer(role, PING, true, b""),
        from_peer(role, CONT, false, &kosme[3..7]),
        from_peer(role, CONT, false, b""),
        from_peer(role, PONG, true, b"pong"),
        from_peer(role, CONT, true, &kosme[7..]),
        from_peer(role, BINARY, false, &big[..40_000]),
        from_peer(role, CONT, true, &big[40_000..]),
        from_peer(role, TEXT, true, b""),
        from_peer(role, BINARY, true, &big),
        from_peer(role, CLOSE, true, &close_payload(4001, "bye")),
    ]);
    let events = vec![
        text("Hello"),
        binary(&pattern(300)),
        Event::Ping("ping 1".into()),
        Event::Ping("".into()),
        Event::Pong("pong".into()),
        text("κόσμε"),
        binary(&big),
        text(""),
        binary(&big),
        Event::Close(Some(CloseFrame::new(CloseCode::from(4001), "bye"))),
    ];
    (input, events)
}

fn byte_at_a_time_matches_all_at_once(role: Role) {
    let (input, expected) = mixed_stream(role);

    let mut whole = Connection::new(role);
    whole.set_fixed_mask_key(KEY);
    whole.receive_data(&input);
    let whole_events = drain(&mut whole);
    assert_eq!(whole_events, expected);

    let mut bytewise = Connection::new(role);
    bytewise.set_fixed_mask_key(KEY);
    let mut bytewise_events = Vec::new();
    for b in &input {
        bytewise.receive_data(std::slice::from_ref(b));
        bytewise_events.extend(drain(&mut bytewise));
    }
    assert_eq!(bytewise_events, expected);

    // Same output too: two pongs then the echo of the Close.
    let out = whole.take_data_to_send();
    assert_eq!(&bytewise.take_data_to_send()[..], &out[..]);
    let frames = parse_frames(&out);
    assert_masking(role, &frames);
    let summary: Vec<_> = frames.iter().map(|f| (f.opcode, &f.payload[..])).collect();
    assert_eq!(
        summary,
        [(PONG, &b"ping 1"[..]), (PONG, b""), (CLOSE, b"\x0f\xa1")]
    );
    assert!(whole.close_expected() && bytewise.close_expected());

    // And in chunks of awkward sizes.
    for chunk in [2, 3, 7, 125, 4096] {
        let mut conn = Connection::new(role);
        let mut events = Vec::new();
        for piece in input.chunks(chunk) {
            conn.read_buf().extend_from_slice(piece);
            events.extend(drain(&mut conn));
        }
        assert_eq!(events, expected, "chunks of {chunk}");
    }
}

#[test]
fn server_byte_at_a_time_matches_all_at_once() {
    byte_at_a_time_matches_all_at_once(Role::Server);
}

#[test]
fn client_byte_at_a_time_matches_all_at_once() {
    byte_at_a_time_matches_all_at_once(Role::Client);
}

fn bytes_needed_tracks_the_frame(role: Role) {
    let input = from_peer(role, BINARY, true, &pattern(1000));
    let header_len = input.len() - 1000;
    let mut conn = Connection::new(role);
    assert_eq!(conn.bytes_needed(), 2);
    conn.receive_data(&input[..header_len]);
    assert_eq!(conn.next_event(), Ok(None));
    assert_eq!(conn.bytes_needed(), 1000);
    conn.receive_data(&input[header_len..header_len + 400]);
    assert_eq!(conn.next_event(), Ok(None));
    assert_eq!(conn.bytes_needed(), 600);
    conn.receive_data(&input[header_len + 400..]);
    assert_eq!(drain(&mut conn), [binary(&pattern(1000))]);
    assert_eq!(conn.buffered_input(), 0);
}

#[test]
fn server_bytes_needed_tracks_the_frame() {
    bytes_needed_tracks_the_frame(Role::Server);
}

#[test]
fn client_bytes_needed_tracks_the_frame() {
    bytes_needed_tracks_the_frame(Role::Client);
}

// ===== extension hook =====================================================

/// A toy extension on RSV1: every payload byte inverted.
struct Invert;

fn invert(data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| b ^ 0xff).collect()
}

impl Extension for Invert {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    fn decode(
        &mut self,
        rsv: u8,
        payload: &[u8],
        _fin: bool,
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ExtensionError> {
        assert_eq!(rsv, RSV1);
        if out.len() + payload.len() > max_len {
            return Err(ExtensionError {
                code: CloseCode::MessageTooBig,
                reason: "inverted message too big",
            });
        }
        out.extend_from_slice(&invert(payload));
        Ok(())
    }

    fn encode(
        &mut self,
        _opcode: OpCode,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError> {
        if payload == b"plain" {
            return Ok(None);
        }
        out.extend_from_slice(&invert(payload));
        Ok(Some(RSV1))
    }
}

/// A toy extension on RSV1 that refuses every message it is given.
struct Refuse;

fn refusal() -> ExtensionError {
    ExtensionError {
        code: CloseCode::PolicyViolation,
        reason: "refused by extension",
    }
}

impl Extension for Refuse {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    fn decode(
        &mut self,
        _: u8,
        _: &[u8],
        _: bool,
        _: &mut BytesMut,
        _: usize,
    ) -> Result<(), ExtensionError> {
        Err(refusal())
    }

    fn encode(
        &mut self,
        _: OpCode,
        _: &[u8],
        _: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError> {
        Err(refusal())
    }
}

#[test]
fn extension_encode_error_is_reported_to_the_sender() {
    for role in [Role::Server, Role::Client] {
        let mut conn = Connection::new(role);
        conn.set_extension(Box::new(Refuse));
        assert_eq!(conn.send_text("x"), Err(SendError::Extension(refusal())));
        assert!(!conn.has_data_to_send());
        // Control frames do not go through it.
        conn.ping(b"p").unwrap();
        assert_eq!(take_frames(&mut conn)[0].opcode, PING);
    }
}

fn with_invert(role: Role) -> Connection {
    let mut conn = Connection::new(role);
    conn.set_extension(Box::new(Invert));
    conn.set_fixed_mask_key(KEY);
    conn
}

fn extension_decodes_rsv1(role: Role) {
    let mut conn = with_invert(role);
    conn.receive_data(&concat(&[
        // A single frame.
        raw_from_peer(role, FIN | RSV1 | TEXT, &invert(b"Hello")),
        raw_from_peer(role, FIN | RSV1 | BINARY, &invert(&[0, 1, 2])),
        // Fragmented, with a ping in between; RSV1 on the first frame only.
        raw_from_peer(role, RSV1 | TEXT, &invert("κό".as_bytes())[..3]),
        from_peer(role, PING, true, b"p"),
        from_peer(role, CONT, false, &invert("κό".as_bytes())[3..]),
        from_peer(role, CONT, true, &invert("σμε".as_bytes())),
        // Frames without RSV1 bypass the extension.
        from_peer(role, TEXT, true, b"plain"),
        from_peer(role, TEXT, false, b"pl"),
        from_peer(role, CONT, true, b"ain"),
    ]));
    assert_eq!(
        drain(&mut conn),
        [
            text("Hello"),
            binary(&[0, 1, 2]),
            Event::Ping("p".into()),
            text("κόσμε"),
            text("plain"),
            text("plain"),
        ]
    );
    assert_eq!(conn.failure(), None);
}

#[test]
fn server_extension_decodes_rsv1_frames() {
    extension_decodes_rsv1(Role::Server);
}

#[test]
fn client_extension_decodes_rsv1_frames() {
    extension_decodes_rsv1(Role::Client);
}

fn extension_still_enforces_rsv_rules(role: Role) {
    // Without the extension: 1002.
    let input = raw_from_peer(role, FIN | RSV1 | TEXT, &invert(b"Hello"));
    expect_failure(role, &input, ProtocolError::ReservedBits(RSV1), 1002);

    let cases = [
        // RSV2 is not the extension's.
        (raw_from_peer(role, FIN | RSV2 | TEXT, b"x"), RSV2),
        (
            raw_from_peer(role, FIN | RSV1 | RSV2 | BINARY, b"x"),
            RSV1 | RSV2,
        ),
        // RSV1 on a control frame.
        (raw_from_peer(role, FIN | RSV1 | PING, b"x"), RSV1),
        // RSV1 on a continuation frame.
        (
            concat(&[
                raw_from_peer(role, RSV1 | TEXT, &invert(b"a")),
                raw_from_peer(role, FIN | RSV1 | CONT, &invert(b"b")),
            ]),
            RSV1,
        ),
    ];
    for (input, rsv) in cases {
        let mut conn = with_invert(role);
        conn.receive_data(&input);
        let expected = ProtocolError::ReservedBits(rsv);
        assert_eq!(conn.next_event(), Err(expected.clone()), "{input:x?}");
        assert_failed(&mut conn, &expected, 1002);
    }
}

#[test]
fn server_extension_still_rejects_other_rsv_bits() {
    extension_still_enforces_rsv_rules(Role::Server);
}

#[test]
fn client_extension_still_rejects_other_rsv_bits() {
    extension_still_enforces_rsv_rules(Role::Client);
}

fn extension_output_is_validated(role: Role) {
    // Valid UTF-8 on the wire, invalid once decoded: 1007.
    let mut conn = with_invert(role);
    conn.receive_data(&raw_from_peer(role, FIN | RSV1 | TEXT, &invert(b"ok \xff")));
    assert_eq!(conn.next_event(), Err(ProtocolError::InvalidUtf8));
    assert_failed(&mut conn, &ProtocolError::InvalidUtf8, 1007);

    // The message limit holds for extension-encoded messages, inclusively.
    let config = Config::default().max_message_size(4);
    let mut conn = Connection::with_config(role, config);
    conn.set_extension(Box::new(Invert));
    conn.receive_data(&concat(&[
        raw_from_peer(role, RSV1 | BINARY, &invert(b"abc")),
        from_peer(role, CONT, true, &invert(b"d")),
        raw_from_peer(role, RSV1 | BINARY, &invert(b"abc")),
        from_peer(role, CONT, true, &invert(b"de")),
    ]));
    assert_eq!(conn.next_event(), Ok(Some(binary(b"abcd"))));
    let expected = ProtocolError::MessageTooLarge { max: 4 };
    assert_eq!(conn.next_event(), Err(expected.clone()));
    assert_failed(&mut conn, &expected, 1009);

    // An extension's own error fails the connection with its code and reason.
    let mut conn = Connection::new(role);
    conn.set_extension(Box::new(Refuse));
    conn.receive_data(&raw_from_peer(role, FIN | RSV1 | BINARY, b"zz"));
    let expected = ProtocolError::Extension(refusal());
    assert_eq!(conn.next_event(), Err(expected.clone()));
    assert_failed(&mut conn, &expected, 1008);
}

#[test]
fn server_validates_extension_output() {
    extension_output_is_validated(Role::Server);
}

#[test]
fn client_validates_extension_output() {
    extension_output_is_validated(Role::Client);
}

fn extension_encodes_sends(role: Role) {
    let mut conn = with_invert(role);
    conn.send_text("Hello").unwrap();
    conn.send_binary(&[0, 1, 2]).unwrap();
    conn.send(&Message::text("plain")).unwrap(); // the extension passes on this one
    conn.send_fragment(OpCode::Text, b"frag", true).unwrap(); // fragments bypass it
    conn.ping(b"p").unwrap();
    let out = conn.take_data_to_send();
    if role == Role::Server {
        let expected = concat(&[
            raw_frame(FIN | RSV1 | TEXT, &invert(b"Hello"), None),
            raw_frame(FIN | RSV1 | BINARY, &invert(&[0, 1, 2]), None),
            frame(TEXT, true, b"plain", None),
            frame(TEXT, true, b"frag", None),
            frame(PING, true, b"p", None),
        ]);
        assert_eq!(&out[..], &expected[..]);
        assert_eq!(out[0], 0xc1);
    }
    let frames = parse_frames(&out);
    assert_masking(role, &frames);
    let summary: Vec<_> = frames
        .iter()
        .map(|f| (f.rsv, f.opcode, f.payload.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (RSV1, TEXT, invert(b"Hello")),
            (RSV1, BINARY, invert(&[0, 1, 2])),
            (0, TEXT, b"plain".to_vec()),
            (0, TEXT, b"frag".to_vec()),
            (0, PING, b"p".to_vec()),
        ]
    );
}

#[test]
fn server_send_text_through_extension_sets_rsv1() {
    extension_encodes_sends(Role::Server);
}

#[test]
fn client_send_text_through_extension_sets_rsv1() {
    extension_encodes_sends(Role::Client);
}

#[test]
fn extension_round_trip_between_client_and_server() {
    let mut client = with_invert(Role::Client);
    let mut server = with_invert(Role::Server);
    client.send_text("κόσμε").unwrap();
    server.receive_data(&client.take_data_to_send());
    assert_eq!(drain(&mut server), [text("κόσμε")]);
    server.send_binary(&pattern(70_000)).unwrap();
    client.receive_data(&server.take_data_to_send());
    assert_eq!(drain(&mut client), [binary(&pattern(70_000))]);
}

// ===== client <-> server round trips ======================================

const ROUND_TRIP_SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 1 << 20];

/// The header length a frame of `len` bytes must use.
fn expected_header_len(len: usize, masked: bool) -> usize {
    let base = match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    base + if masked { 4 } else { 0 }
}

fn round_trip(sender: &mut Connection, receiver: &mut Connection, msg: Message) {
    sender.send(&msg).unwrap();
    let out = sender.take_data_to_send();
    let masked = sender.role() == Role::Client;
    assert_eq!(
        out.len(),
        expected_header_len(msg.len(), masked) + msg.len()
    );
    assert_eq!(out[1] & 0x80 != 0, masked);
    receiver.receive_data(&out);
    assert_eq!(drain(receiver), [Event::Message(msg)]);
    assert!(!receiver.has_data_to_send());
}

#[test]
fn client_to_server_round_trip_all_sizes() {
    let mut client = Connection::new(Role::Client);
    let mut server = Connection::new(Role::Server);
    for size in ROUND_TRIP_SIZES {
        round_trip(&mut client, &mut server, Message::text(text_of_len(size)));
        round_trip(&mut client, &mut server, Message::binary(pattern(size)));
    }
}

#[test]
fn server_to_client_round_trip_all_sizes() {
    let mut client = Connection::new(Role::Client);
    let mut server = Connection::new(Role::Server);
    for size in ROUND_TRIP_SIZES {
        round_trip(&mut server, &mut client, Message::text(text_of_len(size)));
        round_trip(&mut server, &mut client, Message::binary(pattern(size)));
    }
}

/// `a` sends a 200 000-byte text in fragments of 65 537 bytes (so
/// characters straddle fragments) with a ping after each; `b` must see the
/// pings in order around the whole message, and `a` gets the pongs back.
fn fragmented_round_trip(a: &mut Connection, b: &mut Connection) {
    let body = text_of_len(200_000);
    let pieces: Vec<&[u8]> = body.as_bytes().chunks(65_537).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        a.send_fragment(opcode, piece, i == pieces.len() - 1)
            .unwrap();
        a.ping(&[i as u8]).unwrap();
    }
    b.receive_data(&a.take_data_to_send());
    let mut expected: Vec<Event> = (0..pieces.len())
        .map(|i| Event::Ping(vec![i as u8].into()))
        .collect();
    expected.insert(pieces.len() - 1, text(&body));
    assert_eq!(drain(b), expected);
    a.receive_data(&b.take_data_to_send());
    let pongs: Vec<Event> = (0..pieces.len())
        .map(|i| Event::Pong(vec![i as u8].into()))
        .collect();
    assert_eq!(drain(a), pongs);
}

#[test]
fn client_to_server_fragmented_round_trip() {
    let mut client = Connection::new(Role::Client);
    let mut server = Connection::new(Role::Server);
    fragmented_round_trip(&mut client, &mut server);
}

#[test]
fn server_to_client_fragmented_round_trip() {
    let mut client = Connection::new(Role::Client);
    let mut server = Connection::new(Role::Server);
    fragmented_round_trip(&mut server, &mut client);
}

// ===== large payloads queued by reference =================================

/// A server sending a large `Message` queues its payload by reference: the
/// pieces, written in order (whole or in short writes), are the exact
/// frames; small frames before and after keep their places; and the
/// payload piece is the message's own memory.
#[test]
fn server_queues_large_payload_by_reference_in_order() {
    let big = bytes::Bytes::from(pattern(64 << 10));
    let text_big = text_of_len(20_000);
    let expected = concat(&[
        frame(TEXT, true, b"before", None),
        frame(BINARY, true, &big, None),
        frame(PING, true, b"p", None),
        frame(TEXT, true, text_big.as_bytes(), None),
        frame(BINARY, true, &big[..100], None),
    ]);
    for max_write in [1, 5, 10, 4096, 1 << 20] {
        let mut server = Connection::new(Role::Server);
        server.send_text("before").unwrap();
        server.send(&Message::Binary(big.clone())).unwrap();
        server.ping(b"p").unwrap();
        server.send(&Message::text(text_big.as_str())).unwrap();
        server.send(&Message::Binary(big.slice(..100))).unwrap();
        assert_eq!(server.output_len(), expected.len());

        let mut slices = [std::io::IoSlice::new(&[]); 16];
        let n = server.data_to_send_vectored(&mut slices);
        assert!(n >= 4, "pieces: {n}");
        assert!(
            slices[..n].iter().any(|s| s.as_ptr() == big.as_ptr()),
            "the 64 KiB payload is the message's own memory"
        );

        let mut wire = Vec::new();
        while server.has_data_to_send() {
            let mut slices = [std::io::IoSlice::new(&[]); 3];
            let n = server.data_to_send_vectored(&mut slices);
            let mut budget = max_write;
            let mut written = 0;
            for s in &slices[..n] {
                let take = s.len().min(budget);
                wire.extend_from_slice(&s[..take]);
                budget -= take;
                written += take;
            }
            server.advance_data_to_send(written);
        }
        assert_eq!(wire, expected, "writes of at most {max_write} bytes");
        assert_eq!(server.output_len(), 0);
    }
}

/// `data_to_send` gives the pieces one by one; `take_data_to_send` joins
/// them; a client (masking) and a server's small payload copy as before.
#[test]
fn queued_pieces_one_by_one_and_joined() {
    let big = bytes::Bytes::from(pattern(40_000));
    let mut a = Connection::new(Role::Server);
    let mut b = Connection::new(Role::Server);
    for c in [&mut a, &mut b] {
        c.send(&Message::Binary(big.clone())).unwrap();
        c.send_text("after").unwrap();
    }
    let mut one_by_one = Vec::new();
    while a.has_data_to_send() {
        let piece = a.data_to_send().to_vec();
        assert!(!piece.is_empty());
        a.advance_data_to_send(piece.len());
        one_by_one.extend_from_slice(&piece);
    }
    assert_eq!(one_by_one, b.take_data_to_send().to_vec());
    assert!(!b.has_data_to_send());

    let mut client = Connection::new(Role::Client);
    client.send(&Message::Binary(big.clone())).unwrap();
    let mut slices = [std::io::IoSlice::new(&[]); 4];
    assert_eq!(
        client.data_to_send_vectored(&mut slices),
        1,
        "masked: one copy"
    );
    let frames = take_frames(&mut client);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].payload, big.to_vec());
}

// ===== the end: one answer, decided in the core ==============================
//
// Client/server pairs talking to each other through their output buffers:
// who shuts the transport first (RFC 6455 §7.1.1), how each side's end
// is reported (`Connection::end`), and what timeouts, failures and
// end-of-stream do to it.

use silverback_proto::{End, Initiator, Timeout};

/// Moves everything `from` queued into `to`.
fn pump(from: &mut Connection, to: &mut Connection) {
    let out = from.take_data_to_send();
    to.receive_data(&out);
}

fn pair() -> (Connection, Connection) {
    (Connection::new(Role::Client), Connection::new(Role::Server))
}

/// `closer` closes; the other side echoes. The server shuts TCP first;
/// the client shuts only after the server's end of stream.
fn close_handshake(closer: Role) {
    let (mut client, mut server) = pair();
    let (first, second) = match closer {
        Role::Client => (&mut client, &mut server),
        Role::Server => (&mut server, &mut client),
    };
    first.close(CloseCode::GoingAway, "bye").unwrap();
    assert!(!first.eof_to_send(), "{closer:?}: waits for the echo");
    pump(first, second);
    let ev = second.next_event().unwrap();
    assert!(matches!(ev, Some(Event::Close(Some(f))) if f.code == CloseCode::GoingAway));
    assert!(second.close_expected());
    // The echo must leave before the write side is shut.
    assert!(!second.eof_to_send());
    pump(second, first);
    assert!(matches!(first.next_event().unwrap(), Some(Event::Close(_))));
    assert!(first.close_expected());

    assert!(server.eof_to_send(), "{closer:?}: the server shuts first");
    assert!(!client.eof_to_send(), "{closer:?}: the client waits");
    assert_eq!(client.end(), None);
    server.eof_sent();
    client.receive_eof();
    assert!(client.eof_to_send(), "{closer:?}: then the client shuts");
    client.eof_sent();

    let (client_end, server_end) = (client.end().unwrap(), server.end().unwrap());
    for (end, role) in [(&client_end, Role::Client), (&server_end, Role::Server)] {
        assert!(end.is_clean(), "{role:?}: {end:?}");
        assert_eq!(end.close_code(), CloseCode::GoingAway, "{role:?}");
        let expected = if role == closer {
            Initiator::Local
        } else {
            Initiator::Remote
        };
        assert_eq!(end.initiator(), Some(expected), "{role:?}");
    }
    // The initiator's reason comes back empty in the echo; the other side
    // reports the reason it received.
    let reason_at = |end: &End| end.reason().to_owned();
    let (at_closer, at_other) = match closer {
        Role::Client => (reason_at(&client_end), reason_at(&server_end)),
        Role::Server => (reason_at(&server_end), reason_at(&client_end)),
    };
    assert_eq!(at_closer, "");
    assert_eq!(at_other, "bye");
    assert_eq!(client.state(), State::Closed);
    assert_eq!(server.state(), State::Closed);
}

#[test]
fn client_closes_and_the_server_shuts_tcp_first() {
    close_handshake(Role::Client);
}

#[test]
fn server_closes_and_shuts_tcp_first() {
    close_handshake(Role::Server);
}

/// End of stream without a Close frame is abnormal (1006), whoever saw it,
/// and the write side is then shut too.
fn eof_before_close(role: Role) {
    let mut conn = Connection::new(role);
    conn.receive_data(&from_peer(role, TEXT, true, b"last words"));
    conn.receive_eof();
    assert_eq!(conn.next_event(), Ok(Some(text("last words"))));
    assert!(conn.eof_to_send());
    assert_eq!(conn.end(), None, "not over until the transport is done");
    conn.eof_sent();
    let end = conn.end().unwrap();
    assert_eq!(end, End::Abnormal);
    assert_eq!(end.close_code(), CloseCode::Abnormal);
    assert_eq!(end.initiator(), None);
    assert_eq!(conn.send_text("too late"), Err(SendError::Closing));
}

#[test]
fn server_eof_before_close_is_abnormal() {
    eof_before_close(Role::Server);
}

#[test]
fn client_eof_before_close_is_abnormal() {
    eof_before_close(Role::Client);
}

/// Our Close was sent, the peer vanished without answering: still 1006.
#[test]
fn eof_after_our_close_is_abnormal() {
    let mut conn = Connection::new(Role::Client);
    conn.close(CloseCode::Normal, "").unwrap();
    conn.take_data_to_send();
    conn.receive_eof();
    conn.eof_sent();
    assert_eq!(conn.end(), Some(End::Abnormal));
}

/// `fail` sends one Close, stops parsing, and asks both roles to shut at
/// once; nothing can be sent after it, not even a Close.
fn close_after_fail(role: Role) {
    let mut conn = Connection::new(role);
    conn.fail(CloseCode::PolicyViolation, "go away").unwrap();
    assert_eq!(take_close(&mut conn), (1008, "go away".into()));
    assert!(conn.eof_to_send(), "{role:?}: a failing end shuts first");
    assert_eq!(conn.close(CloseCode::Normal, ""), Err(SendError::Closing));
    assert_eq!(conn.send_text("x"), Err(SendError::Closing));
    conn.fail(CloseCode::InternalError, "again").unwrap();
    assert!(!conn.has_data_to_send(), "{role:?}: one Close only");
    // Input after the failure is not parsed.
    conn.receive_data(&from_peer(role, TEXT, true, b"ignored"));
    assert_eq!(conn.next_event(), Ok(None));
    conn.eof_sent();
    let end = conn.end().unwrap();
    assert_eq!(
        end,
        End::Failed(CloseFrame::new(CloseCode::PolicyViolation, "go away"))
    );
    assert_eq!(end.close_code(), CloseCode::PolicyViolation);
    assert_eq!(end.initiator(), Some(Initiator::Local));
}

#[test]
fn server_close_after_fail_is_refused() {
    close_after_fail(Role::Server);
}

#[test]
fn client_close_after_fail_is_refused() {
    close_after_fail(Role::Client);
}

/// Failing after our own Close keeps that Close (no second frame) and
/// still reports the failure.
#[test]
fn fail_after_close_sends_nothing_more() {
    let mut conn = Connection::new(Role::Server);
    conn.close(CloseCode::Normal, "").unwrap();
    conn.take_data_to_send();
    conn.fail(CloseCode::PolicyViolation, "").unwrap();
    assert!(!conn.has_data_to_send());
    assert_eq!(
        conn.close_sent(),
        Some(&Some(CloseFrame::new(CloseCode::Normal, "")))
    );
    conn.eof_sent();
    assert!(matches!(conn.end(), Some(End::Failed(f)) if f.code == CloseCode::PolicyViolation));
}

#[test]
fn fail_refuses_a_code_that_may_not_be_sent() {
    let mut conn = Connection::new(Role::Server);
    assert_eq!(
        conn.fail(CloseCode::Abnormal, ""),
        Err(SendError::InvalidCloseCode(CloseCode::Abnormal))
    );
    assert_eq!(conn.state(), State::Open);
    assert!(!conn.has_data_to_send());
}

/// A protocol error from the peer: a client shuts at once too (it does
/// not wait for the server's FIN after failing).
#[test]
fn client_shuts_first_after_a_protocol_error() {
    let mut conn = Connection::new(Role::Client);
    conn.receive_data(&raw_from_peer(Role::Client, FIN | 0x3, b""));
    assert_eq!(conn.next_event(), Err(ProtocolError::ReservedOpcode(3)));
    assert_eq!(take_close(&mut conn).0, 1002);
    assert!(conn.eof_to_send());
    conn.eof_sent();
    assert_eq!(
        conn.end(),
        Some(End::Protocol(ProtocolError::ReservedOpcode(3)))
    );
}

/// The peer's Close arrived and then the transport broke (a reset right
/// after the Close): the peer's code stands.
#[test]
fn transport_failure_after_the_peers_close_is_still_clean() {
    let mut conn = Connection::new(Role::Server);
    conn.receive_data(&from_peer(
        Role::Server,
        CLOSE,
        true,
        &close_payload(4001, "done"),
    ));
    assert!(matches!(conn.next_event(), Ok(Some(Event::Close(_)))));
    conn.transport_failed();
    let end = conn.end().unwrap();
    assert!(end.is_clean());
    assert_eq!(end.close_code(), CloseCode::from(4001));
    assert_eq!(end.initiator(), Some(Initiator::Remote));
}

#[test]
fn transport_failure_while_open_is_abnormal() {
    let mut conn = Connection::new(Role::Client);
    conn.transport_failed();
    assert_eq!(conn.end(), Some(End::Abnormal));
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(conn.ping(b""), Err(SendError::Closing));
}

/// Timeouts: the core queues the Close that goes with each (1011 for
/// keepalive, 1001 for idle, none for the others) and decides the end.
#[test]
fn timeouts_queue_their_close_and_decide_the_end() {
    for (which, close, code) in [
        (
            Timeout::Keepalive,
            Some((1011, "keepalive ping timeout")),
            CloseCode::InternalError,
        ),
        (
            Timeout::Idle,
            Some((1001, "idle timeout")),
            CloseCode::Abnormal,
        ),
        (Timeout::Write, None, CloseCode::Abnormal),
        (Timeout::CloseHandshake, None, CloseCode::Abnormal),
    ] {
        for role in [Role::Client, Role::Server] {
            let mut conn = Connection::new(role);
            conn.timeout(which);
            match close {
                Some((c, reason)) => assert_eq!(take_close(&mut conn), (c, reason.into())),
                None => assert!(!conn.has_data_to_send(), "{which:?}"),
            }
            let end = conn.end().unwrap();
            assert_eq!(end, End::Timeout(which), "{role:?}");
            assert_eq!(end.close_code(), code, "{which:?}");
            assert!(!end.is_clean());
        }
    }
}

/// A close timeout after the handshake completed (a client waiting for the
/// server's FIN) is still a clean end; before it, a timeout.
#[test]
fn close_timeout_after_the_handshake_is_clean() {
    let (mut client, mut server) = pair();
    client.close(CloseCode::Normal, "").unwrap();
    pump(&mut client, &mut server);
    server.next_event().unwrap();
    pump(&mut server, &mut client);
    client.next_event().unwrap();
    client.timeout(Timeout::CloseHandshake);
    assert!(client.end().unwrap().is_clean());

    let mut waiting = Connection::new(Role::Client);
    waiting.close(CloseCode::Normal, "").unwrap();
    waiting.timeout(Timeout::CloseHandshake);
    assert_eq!(waiting.end(), Some(End::Timeout(Timeout::CloseHandshake)));
}

/// The first way a transport ends decides: a later report changes nothing.
#[test]
fn the_first_end_stands() {
    let mut conn = Connection::new(Role::Server);
    conn.timeout(Timeout::Write);
    conn.transport_failed();
    conn.eof_sent();
    assert_eq!(conn.end(), Some(End::Timeout(Timeout::Write)));
}

// ===== prepared messages ====================================================

use silverback_proto::PreparedMessage;

/// Server peers without an extension: identical bytes, and a large payload
/// is the message's own memory (no copy per peer).
#[test]
fn server_sends_a_prepared_message_without_copying_a_large_payload() {
    let payload = bytes::Bytes::from(pattern(100_000));
    let prepared = PreparedMessage::new(Message::binary(payload.clone()));
    for _ in 0..3 {
        let mut conn = Connection::new(Role::Server);
        conn.send_prepared(&prepared).unwrap();
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        let n = conn.data_to_send_vectored(&mut slices);
        assert_eq!(n, 2, "header, then the payload by reference");
        assert_eq!(slices[1].as_ptr(), payload.as_ptr());
        assert_eq!(
            conn.output_len(),
            10 + payload.len(),
            "a 64-bit length header"
        );
    }
    assert_eq!(prepared.encoded_forms(), 0);
}

#[test]
fn client_sends_a_prepared_message_masked() {
    let prepared = PreparedMessage::new(Message::text("hello"));
    let mut client = Connection::new(Role::Client);
    let mut server = Connection::new(Role::Server);
    client.send_prepared(&prepared).unwrap();
    let frames = take_frames(&mut client);
    assert_eq!(frames.len(), 1);
    client.send_prepared(&prepared).unwrap();
    server.receive_data(&client.take_data_to_send());
    assert_eq!(server.next_event(), Ok(Some(text("hello"))));
}

#[test]
fn prepared_message_after_close_is_refused() {
    let prepared = PreparedMessage::new(Message::text("late"));
    let mut conn = Connection::new(Role::Server);
    conn.close(CloseCode::Normal, "").unwrap();
    assert_eq!(conn.send_prepared(&prepared), Err(SendError::Closing));
}
