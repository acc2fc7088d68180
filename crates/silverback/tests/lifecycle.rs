#![allow(missing_docs)]
//! The life of a connection over loopback, beyond what close.rs and
//! split.rs cover: clean closes by either side with several codes, what
//! happens around the peer's Close, peers that vanish, keepalive, `ping()`
//! round trips, idle and write timeouts, the close handler, and the
//! graceful [`Shutdown`] of a server.
//!
//! Timeouts are configured short (100-300 ms); the tests assert what kind
//! of end a connection had, never how long it took.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use silverback::{
    CloseCode, CloseFrame, Config, Dialer, Error, ErrorKind, Message, OpCode, Role, Shutdown,
    Timeout, Upgrader,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Keepalive: a Ping after this long without input...
const KEEPALIVE: Duration = Duration::from_millis(100);
/// ... and this long to answer it: the raw peer answers at once, but on a
/// loaded machine a test process can be descheduled for a while.
const PING_TIMEOUT: Duration = Duration::from_millis(300);

const ROLES: [Role; 2] = [Role::Server, Role::Client];

#[track_caller]
fn assert_timeout(err: &Error, which: Timeout) {
    assert!(
        matches!(err.kind(), ErrorKind::Timeout(t) if *t == which),
        "expected Timeout::{which:?}, got {err:?}"
    );
    assert!(err.is_timeout());
    assert!(!err.is_closed());
}

#[track_caller]
fn assert_already_closed(err: &Error) {
    assert!(
        matches!(err.kind(), ErrorKind::AlreadyClosed),
        "expected AlreadyClosed, got {err:?}"
    );
}

/// Checks a clean end: who closed, the peer's code and reason.
#[track_caller]
fn assert_clean(err: &Error, by_us: bool, code: CloseCode, reason: &str, what: &str) {
    assert!(err.is_closed(), "{what}: {err:?}");
    assert!(
        matches!(err.kind(), ErrorKind::Closed { by_us: b, .. } if *b == by_us),
        "{what}: expected by_us: {by_us}, got {err:?}"
    );
    assert_eq!(err.close_code(), Some(code), "{what}: {err:?}");
    let frame = err.close_frame().expect("a Close frame with a code");
    assert_eq!(frame.code, code, "{what}");
    assert_eq!(&*frame.reason, reason, "{what}");
    let who = if by_us {
        "closed by us"
    } else {
        "closed by peer"
    };
    assert!(err.to_string().contains(who), "{what}: {err}");
}

/// Whether `code` is one of the codes gorilla-style code treats as expected.
fn expected(code: CloseCode) -> bool {
    matches!(code, CloseCode::Normal | CloseCode::GoingAway)
}

// ----- clean closes ----------------------------------------------------------

/// Our server and our client; one of them closes with a code and reason
/// while the other is in `recv`. The closer's `close` succeeds and its
/// `recv` then reports `Closed { by_us: true }` with the echo (the code,
/// without reason); the other end reports `Closed { by_us: false }` with
/// the code and the reason.
#[tokio::test]
async fn clean_close_by_either_side_with_each_code() {
    let codes = [
        (CloseCode::Normal, ""),
        (CloseCode::GoingAway, "going away"),
        (CloseCode::from(4000), "custom reason"),
    ];
    for closer in ROLES {
        for (code, reason) in codes {
            let what = format!("{closer:?} closes with {code} {reason:?}");
            let (server, client) = pair(Upgrader::new(), Dialer::new()).await;
            let (mut ours, theirs) = match closer {
                Role::Server => (server, client),
                Role::Client => (client, server),
            };
            let other_end = tokio::spawn(echo(theirs));
            within(ours.send(Message::text("before"))).await.unwrap();
            assert_eq!(within(ours.recv()).await.unwrap(), Message::text("before"));

            within(ours.close(code, reason)).await.unwrap();
            assert!(ours.is_closed(), "{what}");
            let end = within(ours.recv()).await.unwrap_err();
            assert_clean(&end, true, code, "", &what);
            assert_eq!(
                end.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]),
                !expected(code)
            );
            assert_already_closed(&within(ours.recv()).await.unwrap_err());

            let (end, theirs) = within(other_end).await.unwrap();
            assert!(theirs.is_closed(), "{what}");
            assert_clean(&end, false, code, reason, &what);
            assert_eq!(
                end.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]),
                !expected(code)
            );
        }
    }
}

/// Our client closes; the server reads the Close and never answers (the
/// server side of this is in close.rs): `close` gives up with
/// `Timeout::CloseHandshake` and closes TCP, which the server sees.
#[tokio::test]
async fn client_close_unanswered_times_out_then_closes_tcp() {
    let (mut ws, mut peer) = raw_pair(Role::Client, Config::default().close_timeout(SHORT)).await;
    let closing = tokio::spawn(async move {
        let res = ws.close(CloseCode::from(4000), "bye").await;
        (res, ws)
    });
    let close = peer.read_close().await;
    assert!(close.masked);
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(4000), "bye")
    );
    // Never answered: the client closes TCP anyway.
    peer.expect_eof().await;
    let (res, ws) = within(closing).await.unwrap();
    let err = res.unwrap_err();
    assert_timeout(&err, Timeout::CloseHandshake);
    assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
    assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
    assert!(ws.is_closed());
}

/// The peer sends data after its Close (in the same write, and later): it
/// is never handed out; `recv` reports the close, then `AlreadyClosed`.
#[tokio::test]
async fn data_after_the_peers_close_is_ignored() {
    for role in ROLES {
        let (ws, mut peer) = raw_pair(role, Config::default()).await;
        let ours = tokio::spawn(async move {
            let mut ws = ws;
            let mut got = Vec::new();
            loop {
                match ws.recv().await {
                    Ok(m) => got.push(m),
                    Err(e) => return (got, e, ws),
                }
            }
        });
        let mut bytes = peer.encode(OpCode::Text, b"before");
        bytes.extend(peer.encode(OpCode::Close, &close_payload(4000, "done")));
        bytes.extend(peer.encode(OpCode::Text, b"after"));
        bytes.extend(peer.encode(OpCode::Binary, b"after too"));
        peer.write(&bytes).await;
        let answer = peer.read_close().await;
        assert_eq!(answer.close_code(), Some(4000), "{role:?}");
        peer.send_frame(OpCode::Text, b"later still").await;
        peer.send_frame(OpCode::Ping, b"and a ping").await;
        peer.finish_tcp().await;

        let (got, end, mut ws) = within(ours).await.unwrap();
        assert_eq!(got, [Message::text("before")], "{role:?}");
        assert_clean(
            &end,
            false,
            CloseCode::from(4000),
            "done",
            &format!("{role:?}"),
        );
        assert_already_closed(&within(ws.recv()).await.unwrap_err());
        assert_eq!(ws.stats().messages_in, 1);
    }
}

// ----- peers that vanish -----------------------------------------------------

/// A client vanishes (FIN, then RST) in the middle of a frame: its
/// connection ends with a typed abnormal error, and the server goes on
/// serving the connection opened before and new ones.
#[tokio::test]
async fn peer_vanishing_mid_frame_does_not_disturb_the_server() {
    let mut server = EchoServer::spawn(Upgrader::new()).await;
    let (mut before, _) = within(Dialer::new().connect(&server.url)).await.unwrap();
    for reset in [false, true] {
        let mut c = RawPeer::handshake(server.addr).await;
        let f = client_frame(OpCode::Binary, true, &[7; 1000]);
        c.write(&f[..500]).await;
        if reset {
            reset_on_drop(&c.stream);
        }
        drop(c);
        let (err, ws) = server.next_end().await;
        assert!(
            matches!(err.kind(), ErrorKind::Abnormal(_)),
            "reset: {reset}: {err:?}"
        );
        assert!(!err.is_closed());
        assert!(err.close_frame().is_none());
        assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
        assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
        assert!(ws.is_closed());

        within(before.send(Message::text("still there?")))
            .await
            .unwrap();
        assert_eq!(
            within(before.recv()).await.unwrap(),
            Message::text("still there?")
        );
        let (mut after, _) = within(Dialer::new().connect(&server.url)).await.unwrap();
        within(after.send(Message::binary(vec![1; 70_000])))
            .await
            .unwrap();
        assert_eq!(
            within(after.recv()).await.unwrap(),
            Message::binary(vec![1; 70_000])
        );
        within(after.close(CloseCode::Normal, "")).await.unwrap();
        let (end, _) = server.next_end().await;
        assert!(end.is_closed(), "{end:?}");
    }
    within(before.close(CloseCode::Normal, "")).await.unwrap();
    assert!(server.next_end().await.0.is_closed());
}

// ----- keepalive -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Liveness {
    /// Answers every Ping with its Pong.
    Pongs,
    /// Answers every Ping with a data message instead.
    Data,
    /// Answers two Pings, then sends nothing at all.
    GoesSilent,
}

/// Keepalive with a 100 ms interval (and 300 ms to answer), on our server
/// and on our client, against a raw peer that answers pings, sends data
/// instead, or stops answering.
#[tokio::test]
async fn keepalive() {
    for role in ROLES {
        for liveness in [Liveness::Pongs, Liveness::Data, Liveness::GoesSilent] {
            keepalive_case(role, liveness).await;
        }
    }
}

async fn keepalive_case(role: Role, liveness: Liveness) {
    let what = format!("{role:?}, peer {liveness:?}");
    let config = Config::default()
        .ping_interval(Some(KEEPALIVE))
        .ping_timeout(PING_TIMEOUT);
    let (ws, mut peer) = raw_pair(role, config).await;
    let ours = tokio::spawn(echo(ws));
    let answered = match liveness {
        Liveness::GoesSilent => 2,
        _ => 4,
    };
    let mut pings = Vec::new();
    let mut echoes = 0;
    while pings.len() < answered {
        let f = peer.read_frame().await;
        match f.opcode {
            OpCode::Ping => {
                assert_eq!(f.masked, role == Role::Client, "{what}: {f:?}");
                match liveness {
                    Liveness::Data => {
                        let n = format!("alive {}", pings.len());
                        peer.send_frame(OpCode::Text, n.as_bytes()).await;
                    }
                    _ => peer.send_frame(OpCode::Pong, &f.payload).await,
                }
                pings.push(f.payload);
            }
            OpCode::Text => echoes += 1,
            _ => panic!("{what}: unexpected {f:?}"),
        }
    }
    // Each keepalive Ping has its own payload.
    let mut distinct = pings.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), pings.len(), "{what}: {pings:?}");

    if liveness == Liveness::GoesSilent {
        // The next Ping goes unanswered, and nothing else comes.
        let f = peer.read_frame().await;
        assert_eq!(f.opcode, OpCode::Ping, "{what}: {f:?}");
        let close = peer.read_close().await;
        assert_eq!(close.close_code(), Some(1011), "{what}");
        assert_eq!(close.close_reason(), "keepalive ping timeout", "{what}");
        peer.expect_eof().await;
        let (err, ws) = within(ours).await.unwrap();
        assert_timeout(&err, Timeout::Keepalive);
        assert_eq!(err.close_code(), Some(CloseCode::InternalError), "{what}");
        assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
        assert!(ws.is_closed(), "{what}");
        return;
    }

    // Still alive after several intervals: a message makes the round trip.
    peer.send_frame(OpCode::Text, b"still here").await;
    loop {
        let f = peer.read_frame().await;
        match f.opcode {
            OpCode::Text if f.payload == b"still here" => break,
            OpCode::Text => echoes += 1,
            OpCode::Ping => peer.send_frame(OpCode::Pong, &f.payload).await,
            _ => panic!("{what}: unexpected {f:?}"),
        }
    }
    if liveness == Liveness::Data {
        assert!(echoes >= answered - 1, "{what}: {echoes} echoes");
    }
    let answer = peer.close_handshake(1000, "done").await;
    assert_eq!(answer.close_code(), Some(1000), "{what}");
    let (end, _ws) = within(ours).await.unwrap();
    assert_clean(&end, false, CloseCode::Normal, "done", &what);
}

/// After each answer, the next keepalive Ping follows `ping_interval` (the
/// documented "this long without receiving anything"), even when
/// `ping_timeout` is much longer: here every Ping must come well within
/// one `ping_timeout` (each read is bounded by `LIMIT`, a third of it).
#[tokio::test]
async fn keepalive_pings_follow_the_interval_after_each_answer() {
    for role in ROLES {
        let config = Config::default()
            .ping_interval(Some(KEEPALIVE))
            .ping_timeout(3 * LIMIT);
        let (ws, mut peer) = raw_pair(role, config).await;
        let ours = tokio::spawn(echo(ws));
        for _ in 0..5 {
            let f = peer.read_frame().await;
            assert_eq!(f.opcode, OpCode::Ping, "{role:?}: {f:?}");
            peer.send_frame(OpCode::Pong, &f.payload).await;
        }
        peer.close_handshake(1000, "").await;
        assert!(within(ours).await.unwrap().0.is_closed());
    }
}

// ----- ping() ----------------------------------------------------------------

/// Our client pings our server while it reads in the same task (select):
/// the Pong arrives through `recv`, between the echoes, and resolves the
/// future with the round-trip time.
#[tokio::test]
async fn ping_resolves_with_the_rtt_while_reading_with_select() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    let start = Instant::now();
    within(ws.send(Message::text("a"))).await.unwrap();
    let pong = within(ws.ping(b"rtt?")).await.unwrap();
    within(ws.send(Message::text("b"))).await.unwrap();
    tokio::pin!(pong);
    let mut rtt = None;
    let mut got = Vec::new();
    while rtt.is_none() || got.len() < 2 {
        tokio::select! {
            r = &mut pong, if rtt.is_none() => rtt = Some(r.unwrap()),
            m = within(ws.recv()) => got.push(m.unwrap()),
        }
    }
    assert_eq!(got, [Message::text("a"), Message::text("b")]);
    let rtt = rtt.unwrap();
    assert!(rtt <= start.elapsed(), "{rtt:?}");
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert!(within(server).await.unwrap().0.is_closed());
}

/// The same with split halves: the writer pings, the reader (another task)
/// receives the Pong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_resolves_with_the_rtt_with_split_halves() {
    let (url, server) = spawn_echo(Upgrader::new()).await;
    let (ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    let (mut rx, mut tx) = ws.split();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            match rx.recv().await {
                Ok(m) => got.push(m),
                Err(e) => return (got, e),
            }
        }
    });
    let start = Instant::now();
    let first = within(tx.ping(b"one")).await.unwrap();
    within(tx.send(Message::text("between"))).await.unwrap();
    let second = within(tx.ping(b"two")).await.unwrap();
    let rtt1 = within(first).await.unwrap();
    let rtt2 = within(second).await.unwrap();
    assert!(rtt1 <= start.elapsed() && rtt2 <= start.elapsed());
    within(tx.close(CloseCode::Normal, "done")).await.unwrap();
    let (got, end) = within(reader).await.unwrap();
    assert_eq!(got, [Message::text("between")]);
    assert_clean(&end, true, CloseCode::Normal, "", "split client");
    assert!(within(server).await.unwrap().0.is_closed());
}

/// A Pong answers the ping with its payload and every earlier one; an
/// unsolicited Pong answers none.
#[tokio::test]
async fn a_pong_answers_the_earlier_pings_too() {
    let (mut ws, mut peer) = raw_pair(Role::Server, Config::default()).await;
    let first = within(ws.ping(b"1")).await.unwrap();
    let second = within(ws.ping(b"2")).await.unwrap();
    let third = within(ws.ping(b"3")).await.unwrap();
    let ours = tokio::spawn(async move {
        let msg = ws.recv().await;
        (msg, ws)
    });
    for want in [b"1", b"2", b"3"] {
        assert_eq!(peer.read_frame().await.payload, want);
    }
    peer.send_frame(OpCode::Pong, b"unsolicited").await;
    peer.send_frame(OpCode::Pong, b"2").await;
    peer.send_frame(OpCode::Text, b"after the pongs").await;
    let (msg, ws) = within(ours).await.unwrap();
    assert_eq!(msg.unwrap(), Message::text("after the pongs"));
    within(first).await.unwrap();
    within(second).await.unwrap();
    // The third one is still waiting: it fails when the connection ends.
    let ours = tokio::spawn(echo(ws));
    peer.close_handshake(1000, "").await;
    assert!(within(ours).await.unwrap().0.is_closed());
    assert_already_closed(&within(third).await.unwrap_err());
}

/// A pending `PongFuture` fails (`AlreadyClosed`) when the connection ends
/// before the Pong: the peer closes, or vanishes.
#[tokio::test]
async fn ping_fails_when_the_connection_ends_first() {
    for role in ROLES {
        for vanish in [false, true] {
            let what = format!("{role:?}, peer vanishes: {vanish}");
            let (mut ws, mut peer) = raw_pair(role, Config::default()).await;
            let pong = within(ws.ping(b"anyone?")).await.unwrap();
            let ours = tokio::spawn(async move { ws.recv().await.unwrap_err() });
            let ping = peer.read_frame().await;
            assert_eq!(
                (ping.opcode, ping.payload.as_slice()),
                (OpCode::Ping, &b"anyone?"[..])
            );
            if vanish {
                drop(peer);
            } else {
                peer.close_handshake(1001, "bye").await;
            }
            let end = within(ours).await.unwrap();
            if vanish {
                assert_eq!(
                    end.close_code(),
                    Some(CloseCode::Abnormal),
                    "{what}: {end:?}"
                );
            } else {
                assert_clean(&end, false, CloseCode::GoingAway, "bye", &what);
            }
            assert_already_closed(&within(pong).await.unwrap_err());
        }
    }
}

// ----- idle and write timeouts -------------------------------------------------

/// `idle_timeout`: after one exchange, nothing more arrives: the
/// connection closes with 1001 "idle timeout" and reports `Timeout::Idle`
/// (close code 1006).
#[tokio::test]
async fn idle_timeout_when_nothing_arrives() {
    for role in ROLES {
        let config = Config::default()
            .ping_interval(None)
            .idle_timeout(Some(SHORT));
        let (ws, mut peer) = raw_pair(role, config).await;
        let ours = tokio::spawn(echo(ws));
        peer.send_frame(OpCode::Text, b"once").await;
        assert_eq!(peer.read_frame().await.payload, b"once");
        let close = peer.read_close().await;
        assert_eq!(close.masked, role == Role::Client);
        assert_eq!(close.close_code(), Some(1001), "{role:?}");
        assert_eq!(close.close_reason(), "idle timeout");
        peer.expect_eof().await;
        let (err, ws) = within(ours).await.unwrap();
        assert_timeout(&err, Timeout::Idle);
        assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
        assert!(ws.is_closed());
    }
}

/// The size on the wire of a 64 KiB message sent by `role`.
fn wire_len(payload: usize, role: Role) -> u64 {
    let header = 2 + if payload > 0xffff { 8 } else { 2 };
    let mask = if role == Role::Client { 4 } else { 0 };
    (header + mask + payload) as u64
}

const MSG: usize = 64 * 1024;
const MAX_WRITE_BUFFER: usize = 256 * 1024;

/// A peer that never reads; we keep sending 64 KiB messages. With a write
/// timeout, a send fails with `Timeout::Write` (it never hangs), and what
/// is queued in the library stays under `max_write_buffer_size` plus one
/// message.
#[tokio::test]
async fn write_timeout_when_the_peer_never_reads() {
    for role in ROLES {
        let config = Config::default()
            .write_timeout(Some(SHORT))
            .max_write_buffer_size(MAX_WRITE_BUFFER);
        // The peer keeps the connection open and reads nothing.
        let (mut ws, _peer) = raw_pair(role, config).await;
        let msg = Message::binary(vec![0x5a; MSG]);
        let mut sent = 0u64;
        let err = within(async {
            loop {
                match ws.send(msg.clone()).await {
                    Ok(()) => sent += 1,
                    Err(e) => break e,
                }
            }
        })
        .await;
        assert_timeout(&err, Timeout::Write);
        assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
        assert!(ws.is_closed(), "{role:?}");
        let stats = ws.stats();
        let frame = wire_len(MSG, role);
        assert!(
            sent > 0,
            "{role:?}: the first messages fit in the socket buffers"
        );
        // The failed message was queued; every accepted one was written.
        assert_eq!(stats.messages_out, sent + 1, "{role:?}");
        assert!(stats.bytes_out >= sent * frame, "{role:?}: {stats:?}");
        let queued = stats.messages_out * frame - stats.bytes_out;
        assert!(
            queued <= MAX_WRITE_BUFFER as u64 + frame,
            "{role:?}: {queued} bytes left queued: {stats:?}"
        );
        assert_already_closed(&within(ws.send(msg)).await.unwrap_err());
    }
}

/// The bounded writer without a write timeout: messages queued without
/// flushing (Sink `feed`, write buffer larger than the bound) are refused
/// with `WriteBufferFull` once `max_write_buffer_size` is queued. That is
/// back-pressure, not an end: once the peer reads, the flush completes and
/// sending works again.
#[tokio::test]
async fn write_buffer_full_is_back_pressure() {
    for role in ROLES {
        let config = Config::default()
            .write_timeout(None)
            .write_buffer_size(usize::MAX)
            .max_write_buffer_size(MAX_WRITE_BUFFER);
        let (mut ws, mut peer) = raw_pair(role, config).await;
        let msg = Message::binary(vec![0xa5; MSG]);
        let mut accepted = 0u64;
        let err = within(async {
            loop {
                match ws.feed(msg.clone()).await {
                    Ok(()) => accepted += 1,
                    Err(e) => break e,
                }
            }
        })
        .await;
        assert!(
            matches!(err.kind(), ErrorKind::WriteBufferFull),
            "{role:?}: {err:?}"
        );
        assert_eq!(err.close_code(), None);
        assert!(!ws.is_closed());
        let frame = wire_len(MSG, role);
        assert!(
            accepted * frame <= MAX_WRITE_BUFFER as u64 + frame,
            "{role:?}: {accepted} messages queued"
        );
        assert_eq!(ws.stats().messages_out, accepted);

        // The peer starts reading: everything queued arrives, in order.
        let reader = tokio::spawn(async move {
            for _ in 0..accepted + 1 {
                let f = peer.read_frame().await;
                assert_eq!((f.opcode, f.payload.len()), (OpCode::Binary, MSG));
            }
            peer.answer_close().await;
        });
        within(ws.flush()).await.unwrap();
        within(ws.send(msg)).await.unwrap();
        within(ws.close(CloseCode::Normal, "")).await.unwrap();
        within(reader).await.unwrap();
    }
}

/// Split halves: the writer's send times out while the reader is parked
/// in `recv`; the reader learns the end too, and the writer the cause
/// (unless the reader, which also writes out queued output, saw it first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_writer_timeout_ends_the_parked_reader() {
    let config = Config::default()
        .write_timeout(Some(SHORT))
        .max_write_buffer_size(MAX_WRITE_BUFFER);
    let (ws, _peer) = raw_pair(Role::Server, config).await;
    let (mut rx, mut tx) = ws.split();
    let reader = tokio::spawn(async move { rx.recv().await.unwrap_err() });
    let msg = Message::binary(vec![0x5a; MSG]);
    let err = within(async {
        loop {
            if let Err(e) = tx.send(msg.clone()).await {
                break e;
            }
        }
    })
    .await;
    let reader_err = within(reader).await.unwrap();
    assert_timeout(&reader_err, Timeout::Write);
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Timeout(Timeout::Write) | ErrorKind::AlreadyClosed
        ),
        "{err:?}"
    );
}

/// A peer floods Pings and never reads: the Pongs cannot leave. The
/// connection stops reading once `max_write_buffer_size` is queued, and
/// fails with `Timeout::Write` instead of buffering Pongs without bound.
#[tokio::test]
async fn ping_flood_from_a_peer_that_never_reads_stays_bounded() {
    let config = Config::default()
        .write_timeout(Some(SHORT))
        .max_write_buffer_size(MAX_WRITE_BUFFER);
    let (ws, peer) = raw_pair(Role::Server, config).await;
    let ours = tokio::spawn(echo(ws));
    let (_unread, mut wr) = peer.stream.into_split();
    let ping = client_frame(OpCode::Ping, true, &[0x11; 125]);
    let batch = ping.repeat(500);
    let flood = tokio::spawn(async move { while wr.write_all(&batch).await.is_ok() {} });
    let (err, ws) = within(ours).await.unwrap();
    flood.abort();
    assert_timeout(&err, Timeout::Write);
    let stats = ws.stats();
    // Each whole Ping read (131 bytes) queued a 127-byte Pong.
    let pongs = stats.bytes_in / ping.len() as u64 * (125 + 2);
    let queued = pongs.saturating_sub(stats.bytes_out);
    assert!(
        queued <= (MAX_WRITE_BUFFER + 64 * 1024) as u64,
        "{queued} bytes of Pongs left queued: {stats:?}"
    );
}

// ----- close handler -----------------------------------------------------------

/// `on_close` picks the reply to the peer's Close: the peer receives exactly
/// that frame; the handler saw the peer's frame (`None` for an empty
/// Close); an unsendable code is replaced by 1000.
#[tokio::test]
async fn close_handler_picks_the_reply() {
    let cases: [(Vec<u8>, CloseFrame, Vec<u8>); 3] = [
        (
            close_payload(4000, "bye"),
            CloseFrame::new(CloseCode::Normal, "custom"),
            close_payload(1000, "custom"),
        ),
        (
            Vec::new(),
            CloseFrame::new(CloseCode::from(4001), "no status?"),
            close_payload(4001, "no status?"),
        ),
        (
            close_payload(1001, ""),
            CloseFrame::new(CloseCode::Abnormal, "not sendable"),
            close_payload(1000, ""),
        ),
    ];
    for role in ROLES {
        for (sent, reply, wire) in cases.clone() {
            let what = format!("{role:?}, reply {reply:?}");
            let (mut ws, mut peer) = raw_pair(role, Config::default()).await;
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            ws.on_close(move |frame| {
                log.lock().unwrap().push(frame.cloned());
                reply.clone()
            });
            let ours = tokio::spawn(echo(ws));
            peer.send_frame(OpCode::Close, &sent).await;
            // Exactly that frame: one final Close, masked by a client only,
            // with the handler's code and reason.
            let answer = peer.read_close().await;
            assert_eq!(answer.masked, role == Role::Client, "{what}");
            assert!(answer.fin);
            assert_eq!(answer.payload, wire, "{what}");
            peer.finish_tcp().await;
            let (end, _ws) = within(ours).await.unwrap();
            assert!(
                matches!(end.kind(), ErrorKind::Closed { by_us: false, .. }),
                "{what}: {end:?}"
            );
            let peer_frame = (sent.len() >= 2).then(|| {
                let code = u16::from_be_bytes([sent[0], sent[1]]);
                CloseFrame::new(
                    CloseCode::from(code),
                    String::from_utf8(sent[2..].to_vec()).unwrap(),
                )
            });
            assert_eq!(end.close_frame(), peer_frame.as_ref(), "{what}");
            assert_eq!(*seen.lock().unwrap(), [peer_frame], "{what}");
        }
    }
}

// ----- shutdown ----------------------------------------------------------------

/// 100 clients of ours, each waiting in `recv`; the server shuts down:
/// every client receives 1001 "server shutting down" and answers it, and
/// the report counts 100 clean closes and nothing forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_connection_with_1001() {
    const N: usize = 100;
    let mut server = EchoServer::spawn(Upgrader::new()).await;
    let (ready_tx, mut ready_rx) = mpsc::channel(N);
    let mut clients = Vec::new();
    for i in 0..N {
        let (url, ready) = (server.url.clone(), ready_tx.clone());
        clients.push(tokio::spawn(async move {
            let (mut ws, _) = Dialer::new().connect(&url).await.unwrap();
            let hello = Message::text(format!("hello {i}"));
            ws.send(hello.clone()).await.unwrap();
            // The echo proves the server tracks the connection.
            assert_eq!(ws.recv().await.unwrap(), hello);
            ready.send(()).await.unwrap();
            let end = ws.recv().await.unwrap_err();
            (end, ws.is_closed())
        }));
    }
    for _ in 0..N {
        within(ready_rx.recv()).await.unwrap();
    }
    assert_eq!(server.shutdown.active(), N);

    let report = within(server.shutdown.shutdown(LIMIT)).await;
    assert_eq!(
        (
            report.open_at_start,
            report.closed_cleanly,
            report.closed_uncleanly,
            report.forced
        ),
        (N, N, 0, 0),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .starts_with("100 connections drained in "),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .ends_with(": 100 closed cleanly, 0 uncleanly, 0 forced"),
        "{report}"
    );
    assert_eq!(server.shutdown.active(), 0);
    assert_eq!(server.shutdown.total_tracked(), N);
    // The accept loop stopped.
    within(&mut server.accept_loop).await.unwrap();

    for client in clients {
        let (end, closed) = within(client).await.unwrap();
        assert!(closed);
        assert_clean(
            &end,
            false,
            CloseCode::GoingAway,
            "server shutting down",
            "client",
        );
        assert!(!end.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
    }
    for _ in 0..N {
        let (end, ws) = server.next_end().await;
        assert_clean(&end, true, CloseCode::GoingAway, "", "server side");
        assert!(ws.is_closed());
    }
}

/// Some peers read the 1001 and never answer. Either their own close
/// timeout ends them (uncleanly, before the deadline), or the deadline
/// comes first and they are forced closed; the clients that answer close
/// cleanly either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_counts_the_peers_that_never_answer() {
    const GOOD: usize = 4;
    const SILENT: usize = 3;
    let deadline = Duration::from_millis(300);
    for forced in [true, false] {
        let what = format!("forced: {forced}");
        // Without force, the connections' own close timeout ends them.
        let close_timeout = if forced { LIMIT } else { deadline };
        let mut server = EchoServer::spawn(Upgrader::new().close_timeout(close_timeout)).await;
        let (ready_tx, mut ready_rx) = mpsc::channel(GOOD);
        let mut clients = Vec::new();
        for _ in 0..GOOD {
            let (url, ready) = (server.url.clone(), ready_tx.clone());
            clients.push(tokio::spawn(async move {
                let (mut ws, _) = Dialer::new().connect(&url).await.unwrap();
                ws.send(Message::text("hi")).await.unwrap();
                ws.recv().await.unwrap();
                ready.send(()).await.unwrap();
                ws.recv().await.unwrap_err()
            }));
        }
        let mut silent = Vec::new();
        for _ in 0..SILENT {
            let mut c = RawPeer::handshake(server.addr).await;
            c.send(OpCode::Text, true, b"hi").await;
            assert_eq!(c.read_frame().await.payload, b"hi");
            silent.push(c);
        }
        for _ in 0..GOOD {
            within(ready_rx.recv()).await.unwrap();
        }
        assert_eq!(server.shutdown.active(), GOOD + SILENT);

        let report = within(
            server
                .shutdown
                .shutdown(if forced { deadline } else { LIMIT }),
        )
        .await;
        // Each connection is counted once: clean, unclean, or forced.
        let (unclean, forced_n) = if forced { (0, SILENT) } else { (SILENT, 0) };
        assert_eq!(
            (
                report.open_at_start,
                report.closed_cleanly,
                report.closed_uncleanly,
                report.forced
            ),
            (GOOD + SILENT, GOOD, unclean, forced_n),
            "{what}: {report}"
        );
        if forced {
            assert!(report.elapsed >= deadline, "{report:?}");
        }
        assert_eq!(server.shutdown.active(), 0, "{what}");

        for c in &mut silent {
            let close = c.read_close().await;
            assert_eq!(close.close_code(), Some(1001));
            assert_eq!(close.close_reason(), "server shutting down");
            // Closed without an answer.
            c.expect_eof().await;
        }
        for client in clients {
            let end = within(client).await.unwrap();
            assert_clean(
                &end,
                false,
                CloseCode::GoingAway,
                "server shutting down",
                &what,
            );
        }
        let (mut clean, mut timed_out) = (0, 0);
        for _ in 0..GOOD + SILENT {
            let (end, _ws) = server.next_end().await;
            if end.is_closed() {
                clean += 1;
            } else {
                assert_timeout(&end, Timeout::CloseHandshake);
                timed_out += 1;
            }
        }
        assert_eq!((clean, timed_out), (GOOD, SILENT), "{what}");
    }
}

/// A connection tracked after the shutdown began closes at once with 1001,
/// without waiting for anything from the peer.
#[tokio::test]
async fn connection_tracked_after_the_shutdown_closes_at_once() {
    let shutdown = Shutdown::new();
    let report = within(shutdown.shutdown(LIMIT)).await;
    assert_eq!(
        (report.open_at_start, report.closed_cleanly, report.forced),
        (0, 0, 0)
    );
    assert!(shutdown.is_draining());
    within(shutdown.draining()).await;

    let sd = shutdown.clone();
    let (url, server) = spawn_server(Upgrader::new(), move |mut ws| async move {
        sd.track(&mut ws);
        echo(ws).await
    })
    .await;
    let (mut ws, _) = within(Dialer::new().connect(&url)).await.unwrap();
    let end = within(ws.recv()).await.unwrap_err();
    assert_clean(
        &end,
        false,
        CloseCode::GoingAway,
        "server shutting down",
        "client",
    );
    let (end, sws) = within(server).await.unwrap();
    assert_clean(&end, true, CloseCode::GoingAway, "", "server");
    assert!(sws.is_closed());
    assert_eq!(shutdown.active(), 0);
    assert_eq!(shutdown.total_tracked(), 1);
}
