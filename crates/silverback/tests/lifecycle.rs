#![allow(missing_docs)]
//! The life of a connection, beyond what close.rs and split.rs cover:
//! clean closes by either side with several codes, what happens around the
//! peer's Close, peers that vanish, `ping()` round trips, bounded writes,
//! the close handler (over loopback); and every timer: keepalive, idle,
//! write and close timeouts, the graceful [`Shutdown`] of a server and its
//! deadline (in memory, on tokio's paused clock: see [`timers`]).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use silverback::{
    CloseCode, CloseFrame, Config, Dialer, Error, ErrorKind, Message, OpCode, Role, Shutdown,
    Timeout, Upgrader,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

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

// ----- bounded writes ----------------------------------------------------------

/// The size on the wire of a 64 KiB message sent by `role`.
fn wire_len(payload: usize, role: Role) -> u64 {
    let header = 2 + if payload > 0xffff { 8 } else { 2 };
    let mask = if role == Role::Client { 4 } else { 0 };
    (header + mask + payload) as u64
}

const MSG: usize = 64 * 1024;
const MAX_WRITE_BUFFER: usize = 256 * 1024;

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

// ----- timers, in memory on the paused clock -----------------------------------

/// Keepalive, idle, write and close timeouts, and shutdown deadlines, over
/// `silverback::testing` pairs on tokio's paused clock: virtual time only
/// moves when every task waits, straight to the next timer, so each test
/// runs at once and can assert when exactly (in virtual time) something
/// happened: a timer that fires late, or a task left parked until some
/// other timer wakes it, shows as a wrong instant.
mod timers {
    use super::*;
    use silverback::testing::{self, Frame, RawPeer};
    use silverback::WebSocket;
    use tokio::io::DuplexStream;
    use tokio::time::sleep;

    /// Keepalive: a Ping after this long without input...
    const KEEPALIVE: Duration = Duration::from_secs(2);
    /// ... and this long to answer it (longer than the interval: the next
    /// Ping still follows the interval after an answer).
    const PING_TIMEOUT: Duration = Duration::from_secs(5);
    const IDLE: Duration = Duration::from_secs(3);
    const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
    const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

    /// The next frame the raw peer reads.
    async fn frame(peer: &mut RawPeer) -> Frame {
        within(peer.read_frame())
            .await
            .unwrap()
            .expect("a frame, not the end of stream")
    }

    /// The next frame, which must be a Close; its code and reason.
    async fn close_of(peer: &mut RawPeer) -> (Option<u16>, String) {
        let f = frame(peer).await;
        assert_eq!(f.opcode, OpCode::Close, "expected a Close, got {f:?}");
        let code = (f.payload.len() >= 2).then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
        let reason = String::from_utf8(f.payload.get(2..).unwrap_or_default().to_vec()).unwrap();
        (code, reason)
    }

    /// The end of stream: our side closed the transport.
    async fn eof(peer: &mut RawPeer) {
        let next = within(peer.read_frame()).await.unwrap();
        assert!(next.is_none(), "expected the end of stream, got {next:?}");
    }

    async fn send(peer: &mut RawPeer, opcode: OpCode, payload: &[u8]) {
        within(peer.send_frame(opcode, payload)).await.unwrap();
    }

    /// The peer closes with `code`, reads our answer (skipping what is
    /// still in flight) and the end of stream, closing its side first if it
    /// plays the server (RFC 6455 §7.1.1).
    async fn peer_closes(peer: &mut RawPeer, code: CloseCode, reason: &str) -> Option<u16> {
        within(peer.send_close(code, reason)).await.unwrap();
        let answer = loop {
            let f = frame(peer).await;
            if f.opcode == OpCode::Close {
                break f.close_frame().map(|c| u16::from(c.code));
            }
        };
        if peer.role() == Role::Server {
            within(peer.shutdown()).await.unwrap();
        }
        eof(peer).await;
        answer
    }

    /// How one of our connections ended, and the connection.
    type Ended = (Error, WebSocket<DuplexStream>);

    // ----- keepalive ----------------------------------------------------------

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Answer {
        /// Each Ping with its Pong.
        Pong,
        /// Each Ping with a data message instead (anything received counts).
        Data,
    }

    /// The first Ping leaves exactly `ping_interval` after the connection
    /// opened, each next one exactly `ping_interval` after the last input
    /// (an answer that came late, or a message before the Ping was due),
    /// even though `ping_timeout` is longer. Each has its own payload.
    #[tokio::test(start_paused = true)]
    async fn keepalive_pings_an_interval_after_the_last_input() {
        for role in ROLES {
            for answer in [Answer::Pong, Answer::Data] {
                let what = format!("{role:?}, answered with {answer:?}");
                let config = Config::default()
                    .ping_interval(Some(KEEPALIVE))
                    .ping_timeout(PING_TIMEOUT);
                let (ws, mut peer) = testing::raw_peer(role, config);
                let ours = tokio::spawn(echo(ws));
                let mut last_input = Instant::now();
                let mut pings = Vec::new();
                for i in 0..4 {
                    let ping = frame(&mut peer).await;
                    assert_eq!(ping.opcode, OpCode::Ping, "{what}: {ping:?}");
                    assert_eq!(ping.masked, role == Role::Client, "{what}");
                    assert_eq!(last_input.elapsed(), KEEPALIVE, "{what}: ping {i}");
                    pings.push(ping.payload.clone());
                    // Answer late (but within ping_timeout).
                    sleep(KEEPALIVE / 4 * (i + 1)).await;
                    match answer {
                        Answer::Pong => send(&mut peer, OpCode::Pong, &ping.payload).await,
                        Answer::Data => {
                            send(&mut peer, OpCode::Text, format!("alive {i}").as_bytes()).await;
                            assert_eq!(frame(&mut peer).await.payload, format!("alive {i}"));
                        }
                    }
                    last_input = Instant::now();
                }
                let mut distinct = pings.clone();
                distinct.sort();
                distinct.dedup();
                assert_eq!(distinct.len(), pings.len(), "{what}: {pings:?}");

                // Input before the Ping is due postpones it.
                sleep(KEEPALIVE / 2).await;
                send(&mut peer, OpCode::Text, b"still here").await;
                last_input = Instant::now();
                assert_eq!(frame(&mut peer).await.payload, "still here", "{what}");
                let ping = frame(&mut peer).await;
                assert_eq!(ping.opcode, OpCode::Ping, "{what}: {ping:?}");
                assert_eq!(last_input.elapsed(), KEEPALIVE, "{what}");
                send(&mut peer, OpCode::Pong, &ping.payload).await;

                let code = peer_closes(&mut peer, CloseCode::Normal, "done").await;
                assert_eq!(code, Some(1000), "{what}");
                let (end, _ws): Ended = within(ours).await.unwrap();
                assert_clean(&end, false, CloseCode::Normal, "done", &what);
            }
        }
    }

    /// A keepalive Ping left unanswered: exactly `ping_timeout` after it,
    /// the connection sends 1011 "keepalive ping timeout", closes the
    /// transport and reports `Timeout::Keepalive`. Here the first Ping is
    /// answered, the second is not.
    #[tokio::test(start_paused = true)]
    async fn keepalive_ping_unanswered_closes_with_1011() {
        for role in ROLES {
            let config = Config::default()
                .ping_interval(Some(KEEPALIVE))
                .ping_timeout(PING_TIMEOUT);
            let (ws, mut peer) = testing::raw_peer(role, config);
            let ours = tokio::spawn(echo(ws));
            let first = frame(&mut peer).await;
            assert_eq!(first.opcode, OpCode::Ping, "{role:?}");
            send(&mut peer, OpCode::Pong, &first.payload).await;
            let answered = Instant::now();

            let second = frame(&mut peer).await;
            assert_eq!(second.opcode, OpCode::Ping, "{role:?}");
            assert_eq!(answered.elapsed(), KEEPALIVE, "{role:?}");
            let pinged = Instant::now();
            // Never answered.
            let close = close_of(&mut peer).await;
            assert_eq!(pinged.elapsed(), PING_TIMEOUT, "{role:?}");
            assert_eq!(
                close,
                (Some(1011), "keepalive ping timeout".into()),
                "{role:?}"
            );
            eof(&mut peer).await;
            assert_eq!(pinged.elapsed(), PING_TIMEOUT, "{role:?}");

            let (err, ws): Ended = within(ours).await.unwrap();
            assert_timeout(&err, Timeout::Keepalive);
            assert_eq!(err.close_code(), Some(CloseCode::InternalError), "{role:?}");
            assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
            assert!(ws.is_closed(), "{role:?}");
        }
    }

    // ----- idle timeout -------------------------------------------------------

    /// `idle_timeout`: exactly that long after the last input (here one
    /// message), the connection sends 1001 "idle timeout", closes the
    /// transport and reports `Timeout::Idle` (close code 1006).
    #[tokio::test(start_paused = true)]
    async fn idle_timeout_an_exact_time_after_the_last_input() {
        for role in ROLES {
            let config = Config::default()
                .ping_interval(None)
                .idle_timeout(Some(IDLE));
            let (ws, mut peer) = testing::raw_peer(role, config);
            let ours = tokio::spawn(echo(ws));
            sleep(IDLE / 2).await;
            send(&mut peer, OpCode::Text, b"once").await;
            let last_input = Instant::now();
            assert_eq!(frame(&mut peer).await.payload, "once");
            let close = frame(&mut peer).await;
            assert_eq!(last_input.elapsed(), IDLE, "{role:?}");
            assert_eq!(close.masked, role == Role::Client);
            let close = close.close_frame().expect("a Close with a code");
            assert_eq!(close.code, CloseCode::GoingAway, "{role:?}");
            assert_eq!(close.reason.as_str(), "idle timeout");
            eof(&mut peer).await;

            let (err, ws): Ended = within(ours).await.unwrap();
            assert_timeout(&err, Timeout::Idle);
            assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
            assert!(ws.is_closed());
        }
    }

    // ----- write timeout ------------------------------------------------------

    /// The pipe between the ends: room for 3 of the 64 KiB messages.
    const PIPE: usize = 4 * MSG;

    /// A peer that never reads; we keep sending 64 KiB messages. Once the
    /// pipe is full, the send fails with `Timeout::Write` exactly
    /// `write_timeout` later (it never hangs); every accepted message was
    /// written, the failed one stays queued.
    #[tokio::test(start_paused = true)]
    async fn write_timeout_when_the_peer_never_reads() {
        for role in ROLES {
            let config = Config::default()
                .write_timeout(Some(WRITE_TIMEOUT))
                .max_write_buffer_size(MAX_WRITE_BUFFER);
            let (mut ws, _peer) = testing::raw_peer_with_buffer(role, config, PIPE);
            let msg = Message::binary(vec![0x5a; MSG]);
            let start = Instant::now();
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
            assert_eq!(start.elapsed(), WRITE_TIMEOUT, "{role:?}");
            assert_timeout(&err, Timeout::Write);
            assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
            assert!(ws.is_closed(), "{role:?}");
            let frame = wire_len(MSG, role);
            assert_eq!(sent, PIPE as u64 / frame, "{role:?}");
            let stats = ws.stats();
            assert_eq!(stats.messages_out, sent + 1, "{role:?}");
            assert_eq!(stats.bytes_out, PIPE as u64, "{role:?}: {stats:?}");
            assert_already_closed(&within(ws.send(msg)).await.unwrap_err());
        }
    }

    /// Progress restarts the write timeout: a peer that reads a little,
    /// late, delays the failure until `write_timeout` after its last read.
    #[tokio::test(start_paused = true)]
    async fn write_timeout_counts_from_the_last_progress() {
        let config = Config::default()
            .write_timeout(Some(WRITE_TIMEOUT))
            .max_write_buffer_size(MAX_WRITE_BUFFER);
        let (mut ws, mut peer) = testing::raw_peer_with_buffer(Role::Server, config, PIPE);
        let reader = tokio::spawn(async move {
            // One frame, read late.
            sleep(WRITE_TIMEOUT / 2).await;
            let f = frame(&mut peer).await;
            assert_eq!(f.payload.len(), MSG);
            let read_at = Instant::now();
            (read_at, peer)
        });
        let msg = Message::binary(vec![0x5a; MSG]);
        let err = within(async {
            loop {
                if let Err(e) = ws.send(msg.clone()).await {
                    break e;
                }
            }
        })
        .await;
        assert_timeout(&err, Timeout::Write);
        let (read_at, _peer) = within(reader).await.unwrap();
        assert_eq!(read_at.elapsed(), WRITE_TIMEOUT);
    }

    /// Split halves: the writer's send times out while the reader is
    /// parked in `recv`; the reader is woken at that instant and learns the
    /// end too, and the writer the cause (unless the reader, which also
    /// writes out queued output, saw it first).
    #[tokio::test(start_paused = true)]
    async fn split_writer_timeout_ends_the_parked_reader() {
        let config = Config::default()
            .write_timeout(Some(WRITE_TIMEOUT))
            .max_write_buffer_size(MAX_WRITE_BUFFER);
        let (ws, _peer) = testing::raw_peer(Role::Server, config);
        let (mut rx, mut tx) = ws.split();
        let start = Instant::now();
        let reader = tokio::spawn(async move {
            let err = rx.recv().await.unwrap_err();
            (err, Instant::now())
        });
        let msg = Message::binary(vec![0x5a; MSG]);
        let err = within(async {
            loop {
                if let Err(e) = tx.send(msg.clone()).await {
                    break e;
                }
            }
        })
        .await;
        assert_eq!(start.elapsed(), WRITE_TIMEOUT);
        let (reader_err, woken) = within(reader).await.unwrap();
        assert_timeout(&reader_err, Timeout::Write);
        assert_eq!(woken - start, WRITE_TIMEOUT);
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
    /// fails with `Timeout::Write` (exactly `write_timeout` after the pipe
    /// filled up) instead of buffering Pongs without bound.
    #[tokio::test(start_paused = true)]
    async fn ping_flood_from_a_peer_that_never_reads_stays_bounded() {
        let config = Config::default()
            .write_timeout(Some(WRITE_TIMEOUT))
            .max_write_buffer_size(MAX_WRITE_BUFFER);
        let (ws, mut peer) = testing::raw_peer(Role::Server, config);
        let ping = peer.encode(OpCode::Ping, true, &[0x11; 125]);
        let start = Instant::now();
        let ours = tokio::spawn(echo(ws));
        let batch = ping.repeat(500);
        let flood = tokio::spawn(async move { while peer.write(&batch).await.is_ok() {} });
        let (err, ws): Ended = within(ours).await.unwrap();
        assert_eq!(start.elapsed(), WRITE_TIMEOUT);
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
        assert!(queued > MAX_WRITE_BUFFER as u64, "{stats:?}");
    }

    // ----- close timeout ------------------------------------------------------

    /// We close; the peer reads the Close and never answers: `close` gives
    /// up with `Timeout::CloseHandshake` exactly `close_timeout` later and
    /// closes the transport, which the peer sees at that instant.
    #[tokio::test(start_paused = true)]
    async fn close_unanswered_times_out_then_closes_the_transport() {
        for role in ROLES {
            let config = Config::default().close_timeout(CLOSE_TIMEOUT);
            let (mut ws, mut peer) = testing::raw_peer(role, config);
            let start = Instant::now();
            let closing = tokio::spawn(async move {
                let res = ws.close(CloseCode::from(4000), "bye").await;
                (res, ws)
            });
            let close = frame(&mut peer).await;
            assert_eq!(close.masked, role == Role::Client);
            let close = close.close_frame().unwrap();
            assert_eq!(
                (u16::from(close.code), close.reason.as_str()),
                (4000, "bye")
            );
            // Never answered: our side closes the transport anyway.
            eof(&mut peer).await;
            assert_eq!(start.elapsed(), CLOSE_TIMEOUT, "{role:?}");
            let (res, ws) = within(closing).await.unwrap();
            let err = res.unwrap_err();
            assert_timeout(&err, Timeout::CloseHandshake);
            assert_eq!(err.close_code(), Some(CloseCode::Abnormal));
            assert!(err.is_unexpected_close(&[CloseCode::Normal, CloseCode::GoingAway]));
            assert!(ws.is_closed());
        }
    }

    /// The peer ignores our Close and sends data instead: data after our
    /// Close is dropped and does not extend the wait.
    #[tokio::test(start_paused = true)]
    async fn close_times_out_even_if_data_keeps_coming() {
        for role in ROLES {
            let config = Config::default().close_timeout(CLOSE_TIMEOUT);
            let (mut ws, mut peer) = testing::raw_peer(role, config);
            let start = Instant::now();
            let closing = tokio::spawn(async move {
                let res = ws.close(CloseCode::Normal, "").await;
                let after = ws.recv().await.unwrap_err();
                (res, after)
            });
            assert_eq!(close_of(&mut peer).await.0, Some(1000));
            for _ in 0..3 {
                sleep(CLOSE_TIMEOUT / 4).await;
                send(&mut peer, OpCode::Text, b"ignored").await;
            }
            eof(&mut peer).await;
            assert_eq!(start.elapsed(), CLOSE_TIMEOUT, "{role:?}");
            let (res, after) = within(closing).await.unwrap();
            assert_timeout(&res.unwrap_err(), Timeout::CloseHandshake);
            // recv after the end reports it (once), without hanging.
            assert!(after.is_timeout() || after.is_closed(), "{after:?}");
        }
    }

    /// RFC 6455 §7.1.1: our client waits for the server to close TCP
    /// first, but only up to `close_timeout`; the handshake itself was
    /// complete, so `close` succeeds, and the client closes its side then.
    #[tokio::test(start_paused = true)]
    async fn client_close_completes_when_the_server_answers_but_keeps_tcp_open() {
        let config = Config::default().close_timeout(CLOSE_TIMEOUT);
        let (mut ws, mut peer) = testing::raw_peer(Role::Client, config);
        let start = Instant::now();
        let closing = tokio::spawn(async move {
            let res = ws.close(CloseCode::from(3000), "done").await;
            (res, ws)
        });
        let close = frame(&mut peer).await;
        within(peer.send_frame(OpCode::Close, &close.payload))
            .await
            .unwrap();
        eof(&mut peer).await;
        assert_eq!(start.elapsed(), CLOSE_TIMEOUT);
        let (res, ws) = within(closing).await.unwrap();
        res.unwrap();
        assert!(ws.is_closed());
    }

    // ----- shutdown -----------------------------------------------------------

    /// Servers tracked by a [`Shutdown`], each echoing; their ends arrive
    /// on the receiver.
    struct Servers {
        shutdown: Shutdown,
        ends: mpsc::UnboundedSender<Ended>,
    }

    impl Servers {
        fn spawn(&self, mut ws: WebSocket<DuplexStream>) {
            self.shutdown.track(&mut ws);
            let ends = self.ends.clone();
            tokio::spawn(async move {
                let _ = ends.send(echo(ws).await);
            });
        }
    }

    fn servers() -> (Servers, mpsc::UnboundedReceiver<Ended>) {
        let (ends, rx) = mpsc::unbounded_channel();
        let shutdown = Shutdown::new();
        (Servers { shutdown, ends }, rx)
    }

    /// 100 clients of ours, each waiting in `recv`; the server shuts down:
    /// every client receives 1001 "server shutting down" and answers it,
    /// and the report counts 100 clean closes and nothing forced, drained
    /// without waiting for any timer.
    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_every_connection_with_1001() {
        const N: usize = 100;
        let (servers, mut ends) = servers();
        let (ready_tx, mut ready_rx) = mpsc::channel(N);
        let mut clients = Vec::new();
        for i in 0..N {
            let (mut client, server) = testing::pair(Config::default(), Config::default());
            servers.spawn(server);
            let ready = ready_tx.clone();
            clients.push(tokio::spawn(async move {
                let hello = Message::text(format!("hello {i}"));
                client.send(hello.clone()).await.unwrap();
                assert_eq!(client.recv().await.unwrap(), hello);
                ready.send(()).await.unwrap();
                let end = client.recv().await.unwrap_err();
                (end, client.is_closed())
            }));
        }
        for _ in 0..N {
            within(ready_rx.recv()).await.unwrap();
        }
        let shutdown = &servers.shutdown;
        assert_eq!(shutdown.active(), N);
        assert!(!shutdown.is_draining());

        let report = within(shutdown.shutdown(Duration::from_secs(5))).await;
        assert_eq!(
            (
                report.open_at_start,
                report.closed_cleanly,
                report.closed_uncleanly,
                report.forced,
                report.elapsed
            ),
            (N, N, 0, 0, Duration::ZERO),
            "{report}"
        );
        assert_eq!(
            report.to_string(),
            "100 connections drained in 0.000s: 100 closed cleanly, 0 uncleanly, 0 forced"
        );
        assert_eq!(shutdown.active(), 0);
        assert_eq!(shutdown.total_tracked(), N);
        assert!(shutdown.is_draining());
        within(shutdown.draining()).await;

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
            let (end, ws) = within(ends.recv()).await.unwrap();
            assert_clean(&end, true, CloseCode::GoingAway, "", "server side");
            assert!(ws.is_closed());
        }
    }

    /// Some peers read the 1001 and never answer. Either the deadline comes
    /// first: they are forced closed at exactly the deadline and counted as
    /// forced; or their own close timeout ends them first, exactly then,
    /// and they are counted as closed uncleanly. The clients that answer
    /// close cleanly either way; each connection is counted once.
    #[tokio::test(start_paused = true)]
    async fn shutdown_counts_the_peers_that_never_answer() {
        const GOOD: usize = 4;
        const SILENT: usize = 3;
        const DEADLINE: Duration = Duration::from_secs(6);
        for forced in [true, false] {
            let what = format!("forced: {forced}");
            let close_timeout = if forced { 2 * DEADLINE } else { DEADLINE / 2 };
            let config = Config::default().close_timeout(close_timeout);
            let (servers, mut ends) = servers();
            let mut clients = Vec::new();
            for _ in 0..GOOD {
                let (mut client, server) = testing::pair(Config::default(), config);
                servers.spawn(server);
                clients.push(tokio::spawn(
                    async move { client.recv().await.unwrap_err() },
                ));
            }
            let mut silent = Vec::new();
            for _ in 0..SILENT {
                let (server, peer) = testing::raw_peer(Role::Server, config);
                servers.spawn(server);
                silent.push(peer);
            }
            let shutdown = &servers.shutdown;
            assert_eq!(shutdown.active(), GOOD + SILENT);

            let report = within(shutdown.shutdown(DEADLINE)).await;
            let (unclean, forced_n, elapsed) = if forced {
                (0, SILENT, DEADLINE)
            } else {
                (SILENT, 0, close_timeout)
            };
            assert_eq!(
                (
                    report.open_at_start,
                    report.closed_cleanly,
                    report.closed_uncleanly,
                    report.forced,
                    report.elapsed
                ),
                (GOOD + SILENT, GOOD, unclean, forced_n, elapsed),
                "{what}: {report}"
            );
            assert_eq!(shutdown.active(), 0, "{what}");

            for peer in &mut silent {
                let close = close_of(peer).await;
                assert_eq!(close, (Some(1001), "server shutting down".into()));
                // Closed without an answer.
                eof(peer).await;
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
                let (end, _ws) = within(ends.recv()).await.unwrap();
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

    /// The deadline also ends a connection whose peer reads nothing (its
    /// output, then our 1001, cannot leave): at the deadline it is closed
    /// at once, counted as forced, and its `recv` (or, split, the reader's
    /// `recv` and the writer's blocked `send`) returns then, not at its own
    /// (longer) close timeout. Without write timeout, so only the deadline
    /// can end it.
    #[tokio::test(start_paused = true)]
    async fn shutdown_deadline_force_closes_a_peer_that_never_reads() {
        const DEADLINE: Duration = Duration::from_secs(4);
        for split in [false, true] {
            let config = Config::default()
                .close_timeout(Duration::from_secs(60))
                .write_timeout(None);
            // A 1 KiB pipe: a 4 KiB message fills it.
            let (mut ws, peer) = testing::raw_peer_with_buffer(Role::Server, config, 1024);
            let shutdown = Shutdown::new();
            shutdown.track(&mut ws);
            let start = Instant::now();
            let msg = Message::binary(vec![7; 4096]);
            let mut ends = Vec::new();
            if split {
                let (mut rx, mut tx) = ws.split();
                ends.push(tokio::spawn(async move {
                    let end = rx.recv().await.unwrap_err();
                    (end, Instant::now())
                }));
                ends.push(tokio::spawn(async move {
                    let end = loop {
                        if let Err(e) = tx.send(msg.clone()).await {
                            break e;
                        }
                    };
                    (end, Instant::now())
                }));
            } else {
                // Queued, written out (in part) by recv before it waits.
                within(ws.feed(msg)).await.unwrap();
                ends.push(tokio::spawn(async move {
                    let end = ws.recv().await.unwrap_err();
                    (end, Instant::now())
                }));
            }
            tokio::task::yield_now().await;

            let report = within(shutdown.shutdown(DEADLINE)).await;
            assert_eq!(
                (report.open_at_start, report.closed_cleanly, report.forced),
                (1, 0, 1),
                "split: {split}: {report}"
            );
            for end in ends {
                // Bounded by its close timeout (not `within`: the failure
                // shows when it ended).
                let (err, at) = tokio::time::timeout(Duration::from_secs(120), end)
                    .await
                    .expect("ended by its close timeout at the latest")
                    .unwrap();
                assert!(
                    matches!(
                        err.kind(),
                        ErrorKind::Timeout(Timeout::CloseHandshake) | ErrorKind::AlreadyClosed
                    ),
                    "split: {split}: {err:?}"
                );
                assert_eq!(at - start, DEADLINE, "split: {split}: ended late ({err:?})");
            }
            assert_eq!(report.elapsed, DEADLINE, "split: {split}: {report}");
            drop(peer);
        }
    }
}
