//! Streaming one message: `recv_stream` (an `AsyncRead` of the payload as
//! it arrives) and `send_stream` (an `AsyncWrite` that sends fragments),
//! over the in-memory pair, a raw peer, and loopback TCP with
//! permessage-deflate.

mod common;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use common::within;
use futures_util::FutureExt;
use silverback::testing::{self, RawPeer};
use silverback::{
    CloseCode, Config, DeflateConfig, Dialer, ErrorKind, Message, MessageKind, MessageReader,
    OpCode, Role, Upgrader,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

const MIB: usize = 1 << 20;

/// Deterministic, somewhat compressible bytes.
fn sample(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_u32;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Runs of text-like bytes with some noise.
            if i % 7 == 0 {
                (x & 0xff) as u8
            } else {
                b"abcdefgh"[(i / 64) % 8]
            }
        })
        .collect()
}

/// FNV-1a over everything written to it.
#[derive(Default)]
struct HashSink {
    hash: u64,
    len: usize,
}

impl HashSink {
    fn of(data: &[u8]) -> (u64, usize) {
        let mut s = HashSink::default();
        s.feed(data);
        (s.hash, s.len)
    }

    fn feed(&mut self, data: &[u8]) {
        if self.len == 0 {
            self.hash = 0xcbf2_9ce4_8422_2325;
        }
        for b in data {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x100_0000_01b3);
        }
        self.len += data.len();
    }
}

impl AsyncWrite for HashSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().feed(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Reads through a [`MessageReader`], recording the most input it held.
struct Watch<'r, 'a, S: AsyncRead + AsyncWrite + Unpin> {
    inner: &'r mut MessageReader<'a, S>,
    max_buffered: usize,
    reads: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watch<'_, '_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut *this.inner).poll_read(cx, buf);
        this.max_buffered = this.max_buffered.max(this.inner.buffered_input());
        this.reads += 1;
        res
    }
}

/// Sends `data` as one streamed message with `tokio::io::copy`, receives
/// it with `recv_stream` + `tokio::io::copy` into a hashing sink; returns
/// the most input the receiver held at once.
async fn stream_through<S>(
    sender: &mut silverback::WebSocket<S>,
    receiver: &mut silverback::WebSocket<S>,
    data: &[u8],
) -> usize
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let send = async {
        let mut writer = sender.send_stream(MessageKind::Binary).unwrap();
        let mut src = data;
        let n = tokio::io::copy(&mut src, &mut writer).await.unwrap();
        writer.shutdown().await.unwrap();
        assert_eq!(n as usize, data.len());
    };
    let recv = async {
        let mut reader = receiver.recv_stream().await.unwrap();
        assert_eq!(reader.kind(), MessageKind::Binary);
        let mut sink = HashSink::default();
        let mut watch = Watch {
            inner: &mut reader,
            max_buffered: 0,
            reads: 0,
        };
        tokio::io::copy(&mut watch, &mut sink).await.unwrap();
        let (max, reads) = (watch.max_buffered, watch.reads);
        assert!(reader.is_done());
        assert!(reads > 10, "read in pieces: {reads}");
        ((sink.hash, sink.len), max)
    };
    let ((), (got, max)) = within(async { tokio::join!(send, recv) }).await;
    assert_eq!(got, HashSink::of(data), "checksum and length");
    max
}

#[tokio::test]
async fn ten_mib_streamed_through_the_in_memory_pair() {
    let (mut client, mut server) = testing::pair(Config::default(), Config::default());
    let data = sample(10 * MIB);
    let max = stream_through(&mut client, &mut server, &data).await;
    // The receiver holds what one read brought at most, never the message.
    assert!(max <= 512 * 1024, "receiver held {max} bytes");
    // Both ends are still in business.
    let max = stream_through(&mut server, &mut client, &data[..MIB]).await;
    assert!(max <= 512 * 1024);
    client.send(Message::text("after")).await.unwrap();
    assert_eq!(within(server.recv()).await.unwrap(), Message::text("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_streamed_over_loopback_with_permessage_deflate() {
    let deflate = DeflateConfig::default();
    let (mut server, mut client) = common::pair(
        Upgrader::new().compression(deflate),
        Dialer::new().compression(deflate),
    )
    .await;
    assert!(server.compression().is_some() && client.compression().is_some());
    let data = sample(10 * MIB);
    let max = stream_through(&mut client, &mut server, &data).await;
    assert!(max <= 512 * 1024, "receiver held {max} bytes");
    let sent = client.stats().bytes_out as usize;
    assert!(
        sent < data.len() / 2,
        "compressed: {sent} bytes on the wire"
    );
    // And back, server to client.
    let max = stream_through(&mut server, &mut client, &data).await;
    assert!(max <= 512 * 1024, "receiver held {max} bytes");
    // Whole messages still compress and decode after streamed ones.
    server
        .send(Message::binary(data[..100_000].to_vec()))
        .await
        .unwrap();
    let back = within(client.recv()).await.unwrap();
    assert_eq!(back.as_bytes(), &data[..100_000]);
    let (closed, end) =
        within(async { tokio::join!(client.close(CloseCode::Normal, ""), server.recv()) }).await;
    closed.unwrap();
    assert!(end.unwrap_err().is_closed());
}

#[tokio::test]
async fn text_stream_with_characters_split_across_writes() {
    let (mut client, mut server) =
        testing::pair(Config::default().write_buffer_size(7), Config::default());
    let text = "añb€c𝄞d".repeat(50);
    let send = async {
        let mut w = client.send_stream(MessageKind::Text).unwrap();
        for piece in text.as_bytes().chunks(3) {
            w.write_all(piece).await.unwrap();
        }
        w.shutdown().await.unwrap();
    };
    let recv = async {
        let mut r = server.recv_stream().await.unwrap();
        assert_eq!(r.kind(), MessageKind::Text);
        let mut got = String::new();
        r.read_to_string(&mut got).await.unwrap();
        got
    };
    let ((), got) = within(async { tokio::join!(send, recv) }).await;
    assert_eq!(got, text);
}

#[tokio::test]
async fn text_stream_refuses_invalid_utf8_and_a_truncated_character() {
    let (mut client, mut server) = testing::pair(Config::default(), Config::default());
    let mut w = client.send_stream(MessageKind::Text).unwrap();
    w.write_all("ok €".as_bytes()).await.unwrap();
    let err = w.write_all(b"\xff").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    w.write_all(&"€".as_bytes()[..1]).await.unwrap();
    let err = w.shutdown().await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    w.write_all(&"€".as_bytes()[1..]).await.unwrap();
    w.shutdown().await.unwrap();
    drop(w);
    assert_eq!(within(server.recv()).await.unwrap(), Message::text("ok €€"));
}

/// Our server reading a message streamed by a raw client, fragment by
/// fragment.
async fn raw_client() -> (silverback::WebSocket<tokio::io::DuplexStream>, RawPeer) {
    testing::raw_peer(Role::Server, Config::default().max_message_size(1000))
}

#[tokio::test]
async fn invalid_utf8_mid_stream_fails_the_reader_and_the_connection_with_1007() {
    let (mut ws, mut peer) = raw_client().await;
    let first = peer.encode(OpCode::Text, false, "κόσμε".as_bytes());
    peer.write(&first).await.unwrap();
    let mut r = within(ws.recv_stream()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = r.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], "κόσμε".as_bytes());
    let bad = peer.encode(OpCode::Continuation, false, b"ok \xed\xa0\x80 more");
    peer.write(&bad).await.unwrap();
    let send_close = async {
        let close = peer.read_frame().await.unwrap().unwrap();
        assert_eq!(close.close_frame().unwrap().code, CloseCode::InvalidPayload);
        peer.shutdown().await.unwrap();
    };
    let read = async {
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap_err()
    };
    let ((), err) = within(async { tokio::join!(send_close, read) }).await;
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err
        .into_inner()
        .unwrap()
        .downcast::<silverback::Error>()
        .unwrap();
    assert!(inner.is_protocol(), "{inner}");
    assert_eq!(inner.close_code(), Some(CloseCode::InvalidPayload));
    drop(r);
    // `recv` reports the end as usual.
    let end = within(ws.recv()).await.unwrap_err();
    assert!(matches!(end.kind(), ErrorKind::Protocol(_)), "{end}");
}

#[tokio::test]
async fn size_limit_applies_across_streamed_fragments_with_1009() {
    let (mut ws, mut peer) = raw_client().await;
    peer.write(&peer.encode(OpCode::Binary, false, &[1; 400]))
        .await
        .unwrap();
    peer.write(&peer.encode(OpCode::Continuation, false, &[2; 400]))
        .await
        .unwrap();
    peer.write(&peer.encode(OpCode::Continuation, true, &[3; 400]))
        .await
        .unwrap();
    let mut r = within(ws.recv_stream()).await.unwrap();
    let mut got = Vec::new();
    let err = within(r.read_to_end(&mut got)).await.unwrap_err();
    assert_eq!(got.len(), 800, "the first two fragments were handed out");
    let inner = err
        .into_inner()
        .unwrap()
        .downcast::<silverback::Error>()
        .unwrap();
    assert_eq!(inner.close_code(), Some(CloseCode::MessageTooBig));
    let close = within(peer.read_frame()).await.unwrap().unwrap();
    assert_eq!(close.close_frame().unwrap().code, CloseCode::MessageTooBig);
}

#[tokio::test]
async fn pings_between_fragments_are_answered_while_streaming() {
    let (mut ws, mut peer) = raw_client().await;
    let mut wire = peer.encode(OpCode::Binary, false, b"one ");
    wire.extend(peer.encode(OpCode::Ping, true, b"are you there"));
    wire.extend(peer.encode(OpCode::Continuation, true, b"two"));
    peer.write(&wire).await.unwrap();
    let mut r = within(ws.recv_stream()).await.unwrap();
    let mut got = Vec::new();
    within(r.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"one two");
    drop(r);
    // The pong goes out with the next write (or wait for input).
    let _ = ws.recv().now_or_never();
    let pong = within(peer.read_frame()).await.unwrap().unwrap();
    assert_eq!(
        (pong.opcode, &pong.payload[..]),
        (OpCode::Pong, &b"are you there"[..])
    );
}

#[tokio::test]
async fn dropping_the_reader_midway_skips_the_rest_of_the_message() {
    let (mut ws, mut peer) = raw_client().await;
    peer.write(&peer.encode(OpCode::Text, false, b"read me, "))
        .await
        .unwrap();
    let mut r = within(ws.recv_stream()).await.unwrap();
    let mut buf = [0u8; 4];
    r.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"read");
    assert!(!r.is_done());
    drop(r);
    let mut wire = peer.encode(OpCode::Continuation, false, b"not this, ");
    wire.extend(peer.encode(OpCode::Continuation, true, b"nor this"));
    wire.extend(peer.encode(OpCode::Text, true, b"next"));
    peer.write(&wire).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap(), Message::text("next"));
}

#[tokio::test]
async fn recv_stream_dropped_before_a_message_leaves_recv_as_usual() {
    let (mut ws, mut peer) = raw_client().await;
    assert!(ws.recv_stream().now_or_never().is_none());
    let mut wire = peer.encode(OpCode::Text, false, b"whole ");
    wire.extend(peer.encode(OpCode::Continuation, true, b"message"));
    peer.write(&wire).await.unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap(),
        Message::text("whole message")
    );
}

#[tokio::test]
async fn writer_dropped_before_any_fragment_leaves_the_connection_usable() {
    let (mut client, mut server) = testing::pair(Config::default(), Config::default());
    let mut w = client.send_stream(MessageKind::Binary).unwrap();
    w.write_all(b"never sent").await.unwrap();
    drop(w);
    client.send(Message::text("fine")).await.unwrap();
    assert_eq!(within(server.recv()).await.unwrap(), Message::text("fine"));
}

#[tokio::test]
async fn writer_dropped_after_a_fragment_fails_the_connection_with_1011() {
    let (mut client, mut server) = testing::pair(Config::default(), Config::default());
    let mut w = client.send_stream(MessageKind::Binary).unwrap();
    w.write_all(b"half a message").await.unwrap();
    w.flush().await.unwrap(); // the first fragment leaves
    drop(w);
    assert!(client.send(Message::text("no")).await.is_err());
    let (ours, theirs) = within(async { tokio::join!(client.recv(), server.recv()) }).await;
    let theirs = theirs.unwrap_err();
    assert_eq!(
        theirs.close_code(),
        Some(CloseCode::InternalError),
        "{theirs}"
    );
    assert_eq!(theirs.close_frame().unwrap().reason, "message abandoned");
    let ours = ours.unwrap_err();
    assert!(matches!(ours.kind(), ErrorKind::Failed(_)), "{ours}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_stream_in_two_tasks() {
    let (client, server) = testing::pair(Config::default(), Config::default());
    let (mut client_rx, mut client_tx) = client.split();
    let (mut server_rx, _server_tx) = server.split();
    let data = sample(3 * MIB);
    let expected = HashSink::of(&data);
    let sender = tokio::spawn(async move {
        {
            let mut w = client_tx.send_stream(MessageKind::Binary).unwrap();
            tokio::io::copy(&mut &data[..], &mut w).await.unwrap();
            w.shutdown().await.unwrap();
        }
        client_tx
    });
    // The client's reader half keeps reading meanwhile (pongs, the end).
    let client_reader = tokio::spawn(async move { client_rx.recv().await });
    let mut r = within(server_rx.recv_stream()).await.unwrap();
    let mut sink = HashSink::default();
    within(tokio::io::copy(&mut r, &mut sink)).await.unwrap();
    assert_eq!((sink.hash, sink.len), expected);
    drop(r);
    let mut client_tx = within(sender).await.unwrap();
    let (closed, end) = within(async {
        tokio::join!(client_tx.close(CloseCode::Normal, "done"), server_rx.recv())
    })
    .await;
    closed.unwrap();
    assert!(end.unwrap_err().is_closed());
    assert!(within(client_reader)
        .await
        .unwrap()
        .unwrap_err()
        .is_closed());
}
