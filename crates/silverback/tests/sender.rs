//! `WsSender`: many tasks sending on one connection through a bounded
//! queue, written out by the task that receives; overflow policies;
//! `buffered_amount`; prepared messages. In memory (`silverback::testing`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use silverback::testing::{self, RawPeer};
use silverback::{
    CloseCode, Config, ErrorKind, Message, Offered, OpCode, Overflow, PreparedMessage, QueueLimits,
    Role, TrySendError, WebSocket,
};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// Every await here completes quickly or the test fails.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

fn quiet() -> Config {
    Config::default().ping_interval(None)
}

/// Many tasks, one connection: everything arrives once, each task's
/// messages in the order it sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_send_through_clones_in_order() {
    const TASKS: usize = 8;
    const EACH: usize = 500;
    let (mut client, mut server) = testing::pair(quiet(), quiet());
    let tx = server.sender();
    let senders: Vec<_> = (0..TASKS)
        .map(|t| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    tx.send(Message::text(format!("{t}:{i}"))).await.unwrap();
                }
            })
        })
        .collect();
    // The server's own task drives the queue while it receives.
    let driver = tokio::spawn(async move {
        let err = server.recv().await.unwrap_err();
        assert!(err.is_closed(), "{err:?}");
        server
    });
    let mut next = [0usize; TASKS];
    for _ in 0..TASKS * EACH {
        let msg = within(client.recv()).await.unwrap();
        let (t, i) = msg.as_text().unwrap().split_once(':').unwrap();
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[t], "task {t} out of order");
        next[t] += 1;
    }
    for s in senders {
        within(s).await.unwrap();
    }
    within(client.close(CloseCode::Normal, "")).await.unwrap();
    let server = within(driver).await.unwrap();
    assert_eq!(server.stats().messages_out, (TASKS * EACH) as u64);
    // The connection ended: the senders learn.
    assert!(tx.is_closed());
    assert!(matches!(
        tx.send(Message::text("late")).await.unwrap_err().kind(),
        ErrorKind::AlreadyClosed
    ));
    assert!(matches!(tx.try_send("late"), Err(TrySendError::Closed(_))));
}

/// Nobody receives on the server (so nobody writes the queue out): the
/// queue fills to its limits; `try_send` says Full, `send` waits, and both
/// go through once the server's task receives again.
#[tokio::test]
async fn a_full_queue_refuses_or_waits_until_the_connection_is_driven() {
    let (mut client, mut server) = testing::pair(quiet(), quiet());
    let tx = server.sender_with_limits(QueueLimits::new(3, 1 << 20));
    for i in 0..3 {
        tx.try_send(Message::text(format!("{i}"))).unwrap();
    }
    assert_eq!(tx.queued(), 3);
    assert_eq!(tx.buffered_amount(), 3);
    match tx.try_send("3") {
        Err(e @ TrySendError::Full(_)) => assert_eq!(e.into_inner(), Message::text("3")),
        other => panic!("{other:?}"),
    }
    let waiting = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.send(Message::text("3")).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    let driver = tokio::spawn(async move {
        let _ = server.recv().await;
        server
    });
    for i in 0..4 {
        assert_eq!(
            within(client.recv()).await.unwrap(),
            Message::text(format!("{i}"))
        );
    }
    within(waiting).await.unwrap().unwrap();
    within(client.close(CloseCode::Normal, "")).await.unwrap();
    within(driver).await.unwrap();
}

/// The byte limit counts payloads; one message larger than the limit is
/// still taken by an empty queue (never refused forever).
#[tokio::test]
async fn the_byte_limit_counts_payloads() {
    let (_client, mut server) = testing::pair(quiet(), quiet());
    let tx = server.sender_with_limits(QueueLimits::new(100, 10));
    tx.try_send(Message::binary(vec![0u8; 64])).unwrap();
    assert!(tx
        .try_send(Message::binary(vec![0u8; 1]))
        .unwrap_err()
        .is_full());
    assert_eq!(tx.buffered_amount(), 64);
    assert_eq!(server.buffered_amount(), 64);
}

/// The overflow policies, seen from the peer: drop-oldest keeps the newest,
/// drop-new keeps the first, close sends the code and reason.
#[tokio::test]
async fn overflow_policies() {
    let m = |s: &str| PreparedMessage::new(Message::text(s.to_owned()));
    for (policy, expect) in [
        (Overflow::DropOldest, vec!["c", "d"]),
        (Overflow::DropNew, vec!["a", "b"]),
    ] {
        let (mut client, mut server) = testing::pair(quiet(), quiet());
        let tx = server.sender_with_limits(QueueLimits::new(2, 1 << 20));
        let outcomes: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|s| tx.offer(&m(s), &policy))
            .collect();
        match policy {
            Overflow::DropOldest => assert_eq!(
                outcomes,
                [
                    Offered::Queued,
                    Offered::Queued,
                    Offered::DroppedOldest(1),
                    Offered::DroppedOldest(1)
                ]
            ),
            _ => assert_eq!(
                outcomes,
                [
                    Offered::Queued,
                    Offered::Queued,
                    Offered::DroppedNew,
                    Offered::DroppedNew
                ]
            ),
        }
        let driver = tokio::spawn(async move {
            let _ = server.recv().await;
        });
        for s in expect {
            assert_eq!(within(client.recv()).await.unwrap(), Message::text(s));
        }
        within(client.close(CloseCode::Normal, "")).await.unwrap();
        within(driver).await.unwrap();
    }

    let (mut client, mut server) = testing::pair(quiet(), quiet());
    let tx = server.sender_with_limits(QueueLimits::new(2, 1 << 20));
    let slow = Overflow::Close(CloseCode::TryAgainLater, "too slow");
    assert_eq!(tx.offer(&m("a"), &slow), Offered::Queued);
    assert_eq!(tx.offer(&m("b"), &slow), Offered::Queued);
    assert_eq!(tx.offer(&m("c"), &slow), Offered::Closing(3));
    assert_eq!(tx.offer(&m("d"), &slow), Offered::Closed);
    let driver = tokio::spawn(async move { server.recv().await.unwrap_err() });
    let err = within(client.recv()).await.unwrap_err();
    let frame = err.close_frame().expect("a Close frame");
    assert_eq!(
        (frame.code, frame.reason.as_str()),
        (CloseCode::TryAgainLater, "too slow")
    );
    let server_end = within(driver).await.unwrap();
    assert!(server_end.is_closed(), "{server_end:?}");
}

/// Counts the writes a transport gets.
struct CountingIo {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if res.is_ready() {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        res
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Messages queued by many tasks before the connection's task runs leave
/// together: 200 small messages in one write.
#[tokio::test]
async fn queued_messages_leave_coalesced() {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let io = CountingIo {
        inner: ours,
        writes: writes.clone(),
    };
    let mut server = WebSocket::from_raw_socket(io, Role::Server, quiet(), &[]);
    let mut peer = RawPeer::new(theirs, Role::Client);
    let tx = server.sender();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    tx.try_send(Message::text(format!("{t}:{i}"))).unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let driver = tokio::spawn(async move {
        let _ = server.recv().await;
    });
    for _ in 0..200 {
        let frame = within(peer.read_frame()).await.unwrap().unwrap();
        assert_eq!(frame.opcode, OpCode::Text);
    }
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    assert_eq!(tx.buffered_amount(), 0);
    peer.send_close(CloseCode::Normal, "").await.unwrap();
    within(driver).await.unwrap();
}

/// A prepared message to many connections: every peer gets it once.
#[tokio::test]
async fn a_prepared_message_to_many_connections() {
    let prepared = PreparedMessage::new(Message::binary(vec![9u8; 40_000]));
    let mut clients = Vec::new();
    let mut drivers = Vec::new();
    for _ in 0..200 {
        let (client, mut server) = testing::pair(quiet(), quiet());
        let tx = server.sender();
        assert_eq!(tx.offer(&prepared, &Overflow::DropNew), Offered::Queued);
        drivers.push(tokio::spawn(async move {
            let _ = server.recv().await;
        }));
        clients.push(client);
    }
    for client in &mut clients {
        let msg = within(client.recv()).await.unwrap();
        assert_eq!(msg.as_bytes(), prepared.message().as_bytes());
        within(client.close(CloseCode::Normal, "")).await.unwrap();
    }
    for d in drivers {
        within(d).await.unwrap();
    }
}

/// `send_prepared` on the socket and on the writer half.
#[tokio::test]
async fn send_prepared_on_the_socket_and_the_writer_half() {
    let prepared = PreparedMessage::new(Message::text("both"));
    let (mut client, mut server) = testing::pair(quiet(), quiet());
    server.send_prepared(&prepared).await.unwrap();
    assert_eq!(within(client.recv()).await.unwrap(), Message::text("both"));
    let (mut reader, mut writer) = server.split();
    writer.send_prepared(&prepared).await.unwrap();
    assert_eq!(within(client.recv()).await.unwrap(), Message::text("both"));
    let tx = writer.sender();
    tx.send(Message::text("via the reader's recv"))
        .await
        .unwrap();
    let reading = tokio::spawn(async move { reader.recv().await });
    assert_eq!(
        within(client.recv()).await.unwrap(),
        Message::text("via the reader's recv")
    );
    within(client.close(CloseCode::Normal, "")).await.unwrap();
    assert!(within(reading).await.unwrap().unwrap_err().is_closed());
}
