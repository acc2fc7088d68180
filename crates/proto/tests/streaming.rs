#![allow(missing_docs)]
//! Messages streamed in pieces through the sans-I/O [`Connection`]:
//! receiving with [`Connection::stream_next_message`] ([`Event::Chunk`]s as
//! frames arrive, UTF-8 and size checks over the whole message,
//! permessage-deflate decoded piece by piece), and sending with
//! [`Connection::begin_message`] / [`Connection::send_message_part`]
//! (compressed fragments). Named in client/server pairs: the first role
//! sends, the second receives.

use bytes::BytesMut;
use silverback_proto::extension::deflate::{
    client_accept, client_offer, server_negotiate, DeflateConfig, PerMessageDeflate,
};
use silverback_proto::frame::{decode_header, Decoded, RSV1};
use silverback_proto::mask::apply_mask;
use silverback_proto::{
    CloseCode, Config, Connection, Event, Message, MessageKind, OpCode, ProtocolError, Role,
    SendError, State,
};

/// A frame on the wire, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WireFrame {
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    payload: Vec<u8>,
}

fn parse_frames(mut bytes: &[u8]) -> Vec<WireFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let Ok(Decoded::Header(h, n)) = decode_header(bytes) else {
            panic!("truncated or invalid frame: {bytes:x?}");
        };
        let len = h.payload_len as usize;
        let mut payload = bytes[n..n + len].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key);
        }
        frames.push(WireFrame {
            fin: h.fin,
            rsv: h.rsv,
            opcode: h.opcode,
            payload,
        });
        bytes = &bytes[n + len..];
    }
    frames
}

/// A masked client frame, built by hand.
fn client_frame(opcode: u8, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | rsv | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key);
    out
}

/// Takes events until none is ready: the chunks' bytes, whether the
/// message ended, and the other events.
fn drain(conn: &mut Connection) -> (Vec<u8>, bool, Vec<Event>) {
    let (mut data, mut fin, mut other) = (Vec::new(), false, Vec::new());
    while let Some(ev) = conn.next_event().unwrap() {
        match ev {
            Event::Chunk {
                data: d, fin: f, ..
            } => {
                assert!(!fin, "a chunk after the last one");
                data.extend_from_slice(&d);
                fin = f;
            }
            ev => other.push(ev),
        }
    }
    (data, fin, other)
}

fn deflate_pair(cfg: &DeflateConfig, config: Config) -> (Connection, Connection) {
    let offer = client_offer(cfg);
    let params = server_negotiate([offer.as_str()], cfg).unwrap();
    let header = params.to_string();
    let client_params = client_accept([header.as_str()], cfg).unwrap().unwrap();
    let mut client = Connection::with_config(Role::Client, config);
    client.set_extension(Box::new(PerMessageDeflate::new(
        Role::Client,
        client_params,
        cfg,
    )));
    let mut server = Connection::with_config(Role::Server, config);
    server.set_extension(Box::new(PerMessageDeflate::new(Role::Server, params, cfg)));
    (client, server)
}

/// Compressible, not trivial: JSON-like lines.
fn sample(len: usize) -> Vec<u8> {
    (0u32..)
        .flat_map(|i| format!("{{\"id\":{i},\"name\":\"item {}\"}}\n", i % 97).into_bytes())
        .take(len)
        .collect()
}

// ===== receiving ===========================================================

#[test]
fn client_server_fragmented_text_streams_with_a_character_split_across_frames() {
    let text = "héllo wörld €uro 𝄞";
    let bytes = text.as_bytes();
    // "é" (c3 a9) split between the first two frames, "𝄞" (4 bytes)
    // between the last two.
    let cuts = [2, 10, bytes.len() - 2];
    let mut wire = Vec::new();
    let mut start = 0;
    for (i, &end) in cuts.iter().chain([bytes.len()].iter()).enumerate() {
        let op = if i == 0 { 0x1 } else { 0x0 };
        wire.extend(client_frame(op, end == bytes.len(), 0, &bytes[start..end]));
        start = end;
    }
    let mut server = Connection::new(Role::Server);
    server.stream_next_message(true);
    // Fed one byte at a time: every payload byte comes out as soon as it
    // arrived, never held back until its frame is complete.
    let mut got = Vec::new();
    let mut kinds = Vec::new();
    let mut done = false;
    for b in &wire {
        server.receive_data(&[*b]);
        while let Some(ev) = server.next_event().unwrap() {
            let Event::Chunk { kind, data, fin } = ev else {
                panic!("{ev:?}")
            };
            kinds.push(kind);
            got.extend_from_slice(&data);
            done = fin;
        }
        assert!(server.buffered_input() <= 14, "input held back");
    }
    assert!(done);
    assert_eq!(got, bytes);
    assert!(kinds.iter().all(|k| *k == MessageKind::Text));
    assert!(kinds.len() > bytes.len() / 2, "{} chunks", kinds.len());
    assert!(!server.is_streaming_message());
    // One message only: the next one is assembled.
    server.receive_data(&client_frame(0x1, true, 0, b"next"));
    assert_eq!(
        server.next_event().unwrap(),
        Some(Event::Message(Message::text("next")))
    );
}

#[test]
fn client_server_first_chunk_announces_the_message_before_its_payload() {
    let mut server = Connection::new(Role::Server);
    server.stream_next_message(true);
    let frame = client_frame(0x2, false, 0, &[7; 1000]);
    server.receive_data(&frame[..8]); // the header only
    assert_eq!(
        server.next_event().unwrap(),
        Some(Event::Chunk {
            kind: MessageKind::Binary,
            data: Default::default(),
            fin: false
        })
    );
    assert_eq!(server.next_event().unwrap(), None);
    assert!(server.is_streaming_message());
    assert_eq!(server.bytes_needed(), 1000);
}

#[test]
fn client_server_single_frame_message_is_one_final_chunk() {
    let mut server = Connection::new(Role::Server);
    server.stream_next_message(true);
    server.receive_data(&client_frame(0x1, true, 0, b"whole"));
    let (data, fin, other) = drain(&mut server);
    assert_eq!((data.as_slice(), fin), (&b"whole"[..], true));
    assert!(other.is_empty());
    // An empty message too.
    server.stream_next_message(true);
    server.receive_data(&client_frame(0x2, true, 0, b""));
    assert_eq!(
        server.next_event().unwrap(),
        Some(Event::Chunk {
            kind: MessageKind::Binary,
            data: Default::default(),
            fin: true
        })
    );
}

#[test]
fn client_server_message_started_before_the_request_comes_whole() {
    let mut server = Connection::new(Role::Server);
    server.receive_data(&client_frame(0x1, false, 0, b"ab"));
    assert_eq!(server.next_event().unwrap(), None);
    server.stream_next_message(true);
    server.receive_data(&client_frame(0x0, true, 0, b"cd"));
    assert_eq!(
        server.next_event().unwrap(),
        Some(Event::Message(Message::text("abcd")))
    );
    // The request still stands for the next message.
    server.receive_data(&client_frame(0x2, true, 0, b"ef"));
    assert!(matches!(
        server.next_event().unwrap(),
        Some(Event::Chunk { fin: true, .. })
    ));
}

#[test]
fn client_server_control_frames_between_streamed_fragments() {
    let mut server = Connection::new(Role::Server);
    server.stream_next_message(true);
    let mut wire = client_frame(0x2, false, 0, b"one ");
    wire.extend(client_frame(0x9, true, 0, b"ping"));
    wire.extend(client_frame(0x0, false, 0, b"two "));
    wire.extend(client_frame(0xA, true, 0, b"pong"));
    wire.extend(client_frame(0x0, true, 0, b"three"));
    server.receive_data(&wire);
    let mut events = Vec::new();
    while let Some(ev) = server.next_event().unwrap() {
        events.push(ev);
    }
    let chunk = |d: &'static [u8], fin| Event::Chunk {
        kind: MessageKind::Binary,
        data: d.into(),
        fin,
    };
    assert_eq!(
        events,
        [
            chunk(b"one ", false),
            Event::Ping("ping".into()),
            chunk(b"two ", false),
            Event::Pong("pong".into()),
            chunk(b"three", true),
        ]
    );
    let out = parse_frames(&server.take_data_to_send());
    assert_eq!(out[0].opcode, OpCode::Pong, "the ping was answered");
}

#[test]
fn client_server_invalid_utf8_mid_stream_fails_fast_with_1007() {
    let mut server = Connection::new(Role::Server);
    server.stream_next_message(true);
    server.receive_data(&client_frame(0x1, false, 0, "κόσμε".as_bytes()));
    let (data, fin, _) = drain(&mut server);
    assert_eq!((data.as_slice(), fin), ("κόσμε".as_bytes(), false));
    // The second fragment holds a surrogate (ed a0 80): the error comes
    // with its first bytes, long before the fragment is complete.
    let bad = client_frame(
        0x0,
        false,
        0,
        &[b"ok \xed\xa0\x80".as_slice(), &[b'x'; 5000]].concat(),
    );
    server.receive_data(&bad[..14]);
    assert_eq!(server.next_event(), Err(ProtocolError::InvalidUtf8));
    assert_eq!(server.state(), State::Closing);
    let out = parse_frames(&server.take_data_to_send());
    assert_eq!(out[0].opcode, OpCode::Close);
    assert_eq!(out[0].payload[..2], 1007u16.to_be_bytes());
    assert!(server.close_expected());
    assert!(!server.is_streaming_message());
}

#[test]
fn client_server_text_ending_inside_a_character_is_1007() {
    let mut server = Connection::new(Role::Server);
    server.stream_next_message(true);
    server.receive_data(&client_frame(0x1, false, 0, b"abc\xe2\x82"));
    assert_eq!(drain(&mut server).0, b"abc\xe2\x82");
    server.receive_data(&client_frame(0x0, true, 0, b""));
    assert_eq!(server.next_event(), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn client_server_size_limit_applies_across_streamed_fragments() {
    let config = Config::default().max_message_size(10);
    let mut server = Connection::with_config(Role::Server, config);
    server.stream_next_message(true);
    server.receive_data(&client_frame(0x2, false, 0, b"123456"));
    assert_eq!(drain(&mut server).0, b"123456");
    // 6 + 6 > 10: refused from the header, before its payload is read.
    server.receive_data(&client_frame(0x0, true, 0, b"789012")[..6]);
    assert_eq!(
        server.next_event(),
        Err(ProtocolError::MessageTooLarge { max: 10 })
    );
    let out = parse_frames(&server.take_data_to_send());
    assert_eq!(out[0].payload[..2], 1009u16.to_be_bytes());
}

#[test]
fn client_server_size_limit_applies_to_decompressed_streamed_bytes() {
    let cfg = DeflateConfig::default();
    let limit = 100_000;
    let (mut client, mut server) = deflate_pair(&cfg, Config::default().max_message_size(limit));
    // Zeros compress ~1000:1: a few hundred bytes on the wire, over the
    // limit once inflated.
    let zeros = vec![0u8; 60_000];
    client.begin_message(MessageKind::Binary).unwrap();
    client.send_message_part(&zeros, false).unwrap();
    client.send_message_part(&zeros, true).unwrap();
    let wire = client.take_data_to_send();
    assert!(wire.len() < 1000, "{} bytes", wire.len());
    server.stream_next_message(true);
    server.receive_data(&wire);
    let mut got = 0;
    let err = loop {
        match server.next_event() {
            Ok(Some(Event::Chunk { data, .. })) => got += data.len(),
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.close_code(), CloseCode::MessageTooBig);
    assert!(got <= limit, "{got} bytes handed out");
}

#[test]
fn client_server_cancelled_stream_skips_the_rest_and_still_checks_it() {
    let mut server = Connection::new(Role::Server);
    server.stream_next_message(true);
    server.receive_data(&client_frame(0x1, false, 0, b"first "));
    assert_eq!(drain(&mut server).0, b"first ");
    server.cancel_stream();
    let mut wire = client_frame(0x0, false, 0, b"skipped ");
    wire.extend(client_frame(0x9, true, 0, b"p"));
    wire.extend(client_frame(0x0, true, 0, b"too"));
    wire.extend(client_frame(0x1, true, 0, b"next"));
    server.receive_data(&wire);
    assert_eq!(server.next_event().unwrap(), Some(Event::Ping("p".into())));
    assert_eq!(
        server.next_event().unwrap(),
        Some(Event::Message(Message::text("next")))
    );

    // What is skipped is still checked.
    let mut server = Connection::new(Role::Server);
    server.stream_next_message(true);
    server.receive_data(&client_frame(0x1, false, 0, b"first "));
    drain(&mut server);
    server.cancel_stream();
    server.receive_data(&client_frame(0x0, true, 0, b"\xff"));
    assert_eq!(server.next_event(), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn cancel_before_a_message_withdraws_the_request() {
    let mut server = Connection::new(Role::Server);
    server.stream_next_message(true);
    server.cancel_stream();
    server.receive_data(&client_frame(0x1, true, 0, b"whole"));
    assert_eq!(
        server.next_event().unwrap(),
        Some(Event::Message(Message::text("whole")))
    );
}

#[test]
fn client_server_normal_compressed_messages_stream_in_bounded_chunks() {
    let cfg = DeflateConfig::default();
    let (mut client, mut server) = deflate_pair(&cfg, Config::default());
    let data = sample(3 << 20);
    // A whole message, compressed in one frame, then the same in fragments.
    client.send_binary(&data).unwrap();
    client
        .send_fragment(OpCode::Binary, b"raw ", false)
        .unwrap();
    client
        .send_fragment(OpCode::Continuation, b"fragments", true)
        .unwrap();
    let wire = client.take_data_to_send();
    assert_eq!(parse_frames(&wire)[0].rsv, RSV1);
    server.receive_data(&wire);
    server.stream_next_message(true);
    let mut got = Vec::new();
    let mut chunks = 0;
    loop {
        let Some(Event::Chunk { data, fin, .. }) = server.next_event().unwrap() else {
            panic!("expected a chunk")
        };
        assert!(data.len() <= 8 << 20, "chunk of {}", data.len());
        chunks += 1;
        got.extend_from_slice(&data);
        if fin {
            break;
        }
    }
    assert_eq!(got, data);
    assert!(chunks > 1, "inflated in pieces");
    server.stream_next_message(true);
    let (rest, fin, _) = drain(&mut server);
    assert_eq!((rest.as_slice(), fin), (&b"raw fragments"[..], true));
}

// ===== sending =============================================================

fn check_compressed_fragments(frames: &[WireFrame], opcode: OpCode) {
    assert_eq!(frames[0].opcode, opcode);
    assert_eq!(frames[0].rsv, RSV1, "the first fragment has RSV1");
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            assert_eq!((f.opcode, f.rsv), (OpCode::Continuation, 0));
        }
        let last = i == frames.len() - 1;
        assert_eq!(f.fin, last);
        if !last && !f.payload.is_empty() {
            assert!(
                f.payload.ends_with(&[0, 0, 0xff, 0xff]),
                "fragment {i} is sync-flushed"
            );
        }
    }
    let last = &frames[frames.len() - 1];
    assert!(
        !last.payload.ends_with(&[0, 0, 0xff, 0xff]),
        "tail stripped"
    );
}

#[test]
fn client_server_compressed_fragmented_send_is_decoded_by_a_normal_receiver() {
    for no_takeover in [false, true] {
        let cfg = DeflateConfig {
            client_no_context_takeover: no_takeover,
            ..DeflateConfig::default()
        };
        let (mut client, mut server) = deflate_pair(&cfg, Config::default());
        let data = sample(200_000);
        let mut wires = Vec::new();
        for _ in 0..2 {
            client.begin_message(MessageKind::Text).unwrap();
            for piece in data.chunks(30_000) {
                client.send_message_part(piece, false).unwrap();
            }
            client.send_message_part(b"", true).unwrap();
            let wire = client.take_data_to_send();
            let frames = parse_frames(&wire);
            assert_eq!(frames.len(), data.len().div_ceil(30_000) + 1);
            check_compressed_fragments(&frames, OpCode::Text);
            let total: usize = frames.iter().map(|f| f.payload.len()).sum();
            assert!(total < data.len() / 3, "compressed: {total} bytes");
            wires.push(frames);
            server.receive_data(&wire);
            let Some(Event::Message(Message::Text(t))) = server.next_event().unwrap() else {
                panic!("expected the text message")
            };
            assert_eq!(t.as_bytes(), &data[..]);
        }
        // Without context takeover the second message is compressed
        // afresh: the same bytes on the wire. With it, it refers to the
        // first (and the receiver followed).
        assert_eq!(wires[0] == wires[1], no_takeover);
        // Whole messages still work after the streamed ones.
        client.send_text("after").unwrap();
        server.receive_data(&client.take_data_to_send());
        assert_eq!(
            server.next_event().unwrap(),
            Some(Event::Message(Message::text("after")))
        );
    }
}

#[test]
fn server_client_compressed_stream_to_a_streaming_receiver_in_shared_mode() {
    let cfg = DeflateConfig::shared();
    let (mut client, mut server) = deflate_pair(&cfg, Config::default());
    let data = sample(100_000);
    server.begin_message(MessageKind::Binary).unwrap();
    let mut pieces = data.chunks(7_000);
    server
        .send_message_part(pieces.next().unwrap(), false)
        .unwrap();
    // A whole message from another connection of this thread in between
    // uses the thread's shared compressor.
    let (_, mut other) = deflate_pair(&cfg, Config::default());
    other.send_binary(&data).unwrap();
    for p in pieces {
        server.send_message_part(p, false).unwrap();
    }
    server.send_message_part(b"", true).unwrap();
    let wire = server.take_data_to_send();
    check_compressed_fragments(&parse_frames(&wire), OpCode::Binary);
    client.stream_next_message(true);
    client.receive_data(&wire);
    let (got, fin, _) = drain(&mut client);
    assert!(fin);
    assert_eq!(got, data);
}

#[test]
fn compressed_single_piece_and_empty_stream_round_trip() {
    let cfg = DeflateConfig::default();
    let (mut client, mut server) = deflate_pair(&cfg, Config::default());
    for msg in [&b""[..], b"x", b"hello hello hello"] {
        // Twice: with context takeover, the second has nothing new to
        // flush for an empty message.
        for _ in 0..2 {
            client.begin_message(MessageKind::Binary).unwrap();
            client.send_message_part(msg, true).unwrap();
            server.receive_data(&client.take_data_to_send());
            assert_eq!(
                server.next_event().unwrap(),
                Some(Event::Message(Message::binary(msg.to_vec())))
            );
        }
        // Empty non-final pieces, then the last.
        client.begin_message(MessageKind::Binary).unwrap();
        client.send_message_part(msg, false).unwrap();
        client.send_message_part(b"", false).unwrap();
        client.send_message_part(b"", true).unwrap();
        server.receive_data(&client.take_data_to_send());
        assert_eq!(
            server.next_event().unwrap(),
            Some(Event::Message(Message::binary(msg.to_vec())))
        );
    }
}

#[test]
fn uncompressed_stream_is_plain_fragments() {
    let mut server = Connection::new(Role::Server);
    server.begin_message(MessageKind::Binary).unwrap();
    server.send_message_part(b"ab", false).unwrap();
    server.ping(b"p").unwrap();
    server.send_message_part(b"cd", true).unwrap();
    let frames = parse_frames(&server.take_data_to_send());
    let summary: Vec<_> = frames
        .iter()
        .map(|f| (f.opcode, f.fin, f.rsv, f.payload.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (OpCode::Binary, false, 0, b"ab".to_vec()),
            (OpCode::Ping, true, 0, b"p".to_vec()),
            (OpCode::Continuation, true, 0, b"cd".to_vec()),
        ]
    );
}

#[test]
fn messages_while_a_stream_is_open_are_refused() {
    let mut conn = Connection::new(Role::Client);
    assert_eq!(
        conn.send_message_part(b"no", true),
        Err(SendError::Fragmentation)
    );
    conn.begin_message(MessageKind::Text).unwrap();
    assert!(conn.is_sending_message());
    assert_eq!(
        conn.begin_message(MessageKind::Text),
        Err(SendError::Fragmentation)
    );
    assert_eq!(conn.send_text("whole"), Err(SendError::Fragmentation));
    assert_eq!(
        conn.send_fragment(OpCode::Continuation, b"x", true),
        Err(SendError::Fragmentation)
    );
    conn.send_message_part(b"ok", true).unwrap();
    assert!(!conn.is_sending_message());
    conn.send_text("whole").unwrap();
    // And the other way round.
    conn.send_fragment(OpCode::Text, b"a", false).unwrap();
    assert_eq!(
        conn.begin_message(MessageKind::Text),
        Err(SendError::Fragmentation)
    );
}

#[test]
fn text_stream_is_checked_as_a_whole() {
    let mut conn = Connection::new(Role::Server);
    conn.begin_message(MessageKind::Text).unwrap();
    let euro = "€".as_bytes();
    conn.send_message_part(&euro[..1], false).unwrap(); // split: fine
    assert_eq!(
        conn.send_message_part(b"\x28", false),
        Err(SendError::InvalidUtf8)
    );
    conn.send_message_part(&euro[1..], false).unwrap(); // still open
    conn.send_message_part(&euro[..2], false).unwrap();
    let queued = conn.output_len();
    assert_eq!(
        conn.send_message_part(b"", true),
        Err(SendError::InvalidUtf8),
        "ends inside a character"
    );
    assert_eq!(conn.output_len(), queued, "nothing queued");
    conn.send_message_part(&euro[2..], true).unwrap();
    let mut client = Connection::new(Role::Client);
    client.receive_data(&conn.take_data_to_send());
    assert_eq!(
        client.next_event().unwrap(),
        Some(Event::Message(Message::text("€€")))
    );
}

#[test]
fn abandoned_stream_cancels_or_fails_with_1011() {
    let mut conn = Connection::new(Role::Client);
    conn.begin_message(MessageKind::Binary).unwrap();
    assert!(!conn.abort_message());
    assert!(!conn.has_data_to_send());
    conn.send_binary(b"usable").unwrap();
    conn.take_data_to_send();

    conn.begin_message(MessageKind::Binary).unwrap();
    conn.send_message_part(b"half", false).unwrap();
    assert!(conn.abort_message());
    let frames = parse_frames(&conn.take_data_to_send());
    assert_eq!(frames[1].opcode, OpCode::Close);
    assert_eq!(frames[1].payload[..2], 1011u16.to_be_bytes());
    assert_eq!(&frames[1].payload[2..], b"message abandoned");
    assert!(conn.close_expected());
    assert_eq!(conn.send_binary(b"x"), Err(SendError::Closing));
}

#[test]
fn streamed_send_round_trips_through_a_streaming_receiver_byte_by_byte() {
    let cfg = DeflateConfig::default();
    let (mut client, mut server) = deflate_pair(&cfg, Config::default());
    let data = sample(20_000);
    client.begin_message(MessageKind::Text).unwrap();
    for p in data.chunks(3_333) {
        client.send_message_part(p, false).unwrap();
    }
    client.send_message_part(b"", true).unwrap();
    client.send_text("then this").unwrap();
    let wire = client.take_data_to_send();
    server.stream_next_message(true);
    let mut got = BytesMut::new();
    let mut fin = false;
    for b in wire.iter() {
        server.receive_data(&[*b]);
        while let Some(ev) = server.next_event().unwrap() {
            match ev {
                Event::Chunk { data, fin: f, .. } => {
                    got.extend_from_slice(&data);
                    fin = f;
                }
                Event::Message(m) => {
                    assert!(fin);
                    assert_eq!(m, Message::text("then this"));
                }
                ev => panic!("{ev:?}"),
            }
        }
    }
    assert_eq!(&got[..], &data[..]);
}
