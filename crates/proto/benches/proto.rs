//! Micro-benchmarks of the protocol core: masking (GB/s), header decoding,
//! frame parsing through `Connection`, UTF-8 validation, fragment assembly.
//!
//! Run: `cargo bench -p silverback-proto --bench proto`
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use silverback_proto::frame::{decode_header, encode_header, FrameHeader};
use silverback_proto::mask::{apply_mask, apply_mask_scalar};
use silverback_proto::utf8::Utf8Validator;
use silverback_proto::{Connection, Event, OpCode, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in [16usize, 125, 1024, 16 * 1024, 1 << 20] {
        let mut buf = vec![0x5au8; size + 1];
        g.throughput(Throughput::Bytes(size as u64));
        // Offset by one byte so the fast path also handles a misaligned head.
        g.bench_with_input(BenchmarkId::new("fast", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf[1..]), KEY))
        });
        g.bench_with_input(BenchmarkId::new("scalar", size), &size, |b, _| {
            b.iter(|| apply_mask_scalar(black_box(&mut buf[1..]), KEY))
        });
    }
    g.finish();
}

fn masked_frames(count: usize, payload: &[u8], opcode: OpCode) -> Vec<u8> {
    let mut client = Connection::new(Role::Client);
    for _ in 0..count {
        match opcode {
            OpCode::Text => client
                .send_text(std::str::from_utf8(payload).unwrap())
                .unwrap(),
            _ => client.send_binary(payload).unwrap(),
        }
    }
    client.take_data_to_send().to_vec()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_decode");
    let mut wire = bytes::BytesMut::new();
    for len in [5u64, 300, 70_000] {
        wire.clear();
        encode_header(
            &mut wire,
            &FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Binary,
                mask: Some(KEY),
                payload_len: len,
            },
        );
        g.bench_function(BenchmarkId::new("header", len), |b| {
            b.iter(|| decode_header(black_box(&wire)))
        });
    }
    // 100 masked 16-byte messages parsed and validated by a server Connection.
    for (name, opcode, payload) in [
        ("text_16B_x100", OpCode::Text, &b"0123456789abcdef"[..]),
        ("binary_16B_x100", OpCode::Binary, &b"0123456789abcdef"[..]),
    ] {
        let wire = masked_frames(100, payload, opcode);
        g.throughput(Throughput::Elements(100));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut server = Connection::new(Role::Server);
                server.receive_data(&wire);
                let mut n = 0;
                while let Some(Event::Message(m)) = server.next_event().unwrap() {
                    n += m.len();
                }
                black_box(n)
            })
        });
    }
    let wire = masked_frames(1, &vec![7u8; 64 * 1024], OpCode::Binary);
    g.throughput(Throughput::Bytes(64 * 1024));
    g.bench_function("binary_64KiB", |b| {
        b.iter(|| {
            let mut server = Connection::new(Role::Server);
            server.receive_data(&wire);
            black_box(server.next_event().unwrap())
        })
    });
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    let ascii = "a".repeat(64 * 1024);
    let mixed = "κόσμε € 𝄞 ascii ".repeat(3000);
    for (name, s) in [("ascii_64KiB", ascii.as_str()), ("mixed", mixed.as_str())] {
        g.throughput(Throughput::Bytes(s.len() as u64));
        g.bench_function(BenchmarkId::new("incremental_4KiB_pieces", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for chunk in s.as_bytes().chunks(4096) {
                    v.feed(chunk).unwrap();
                }
                v.finish().unwrap();
            })
        });
        g.bench_function(BenchmarkId::new("std_whole", name), |b| {
            b.iter(|| std::str::from_utf8(black_box(s.as_bytes())).is_ok())
        });
    }
    g.finish();
}

fn assembly(c: &mut Criterion) {
    let mut g = c.benchmark_group("assembly");
    // One 64 KiB text message in 64 fragments of 1 KiB.
    let mut client = Connection::new(Role::Client);
    let piece = "x".repeat(1024);
    client
        .send_fragment(OpCode::Text, piece.as_bytes(), false)
        .unwrap();
    for _ in 0..62 {
        client
            .send_fragment(OpCode::Continuation, piece.as_bytes(), false)
            .unwrap();
    }
    client
        .send_fragment(OpCode::Continuation, piece.as_bytes(), true)
        .unwrap();
    let wire = client.take_data_to_send().to_vec();
    g.throughput(Throughput::Bytes(64 * 1024));
    g.bench_function("text_64x1KiB_fragments", |b| {
        b.iter(|| {
            let mut server = Connection::new(Role::Server);
            server.receive_data(&wire);
            black_box(server.next_event().unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, mask, decode, utf8, assembly);
criterion_main!(benches);
