//! The hub over real loopback TCP: many connections, a slow one.

use std::time::Duration;

use silverback::{Message, Overflow, QueueLimits, Upgrader};
use silverback_hub::Hub;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The soft limit of open files (Linux `/proc/self/limits`; 1024 if
/// unknown).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(1024)
}

/// A server on 127.0.0.1 that subscribes every connection to `topic` with
/// `limits` and reports each subscription on the returned channel.
async fn serve(
    hub: Hub,
    topic: &'static str,
    limits: QueueLimits,
) -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (ready, subscribed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let upgrader = Upgrader::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (hub, upgrader, ready) = (hub.clone(), upgrader.clone(), ready.clone());
            tokio::spawn(async move {
                let mut ws = upgrader.upgrade(stream).await.unwrap();
                let tx = ws.sender_with_limits(limits);
                hub.subscribe(topic, &tx, "peer").await.unwrap();
                ready.send(()).unwrap();
                while ws.recv().await.is_ok() {}
                hub.unsubscribe_all(&tx).await.unwrap();
            });
        }
    });
    (url, subscribed)
}

/// Two thousand connections (fewer if the open-file limit is low: each
/// takes two descriptors, client and server, in this process), each gets
/// every message exactly once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_subscribers_over_tcp_get_everything_in_order() {
    const MESSAGES: usize = 20;
    let limit = open_files_limit();
    let n = 2000.min(limit.saturating_sub(100) / 2);
    assert!(n >= 100, "open-file limit {limit} too low for this test");
    let hub = Hub::new();
    let (url, mut subscribed) = serve(hub.clone(), "all", QueueLimits::default()).await;
    let run = async {
        let mut clients = Vec::with_capacity(n);
        // Connect in batches, not to overflow the listen backlog.
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            let dials: Vec<_> = chunk
                .iter()
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { silverback::connect(&url).await.unwrap().0 })
                })
                .collect();
            for d in dials {
                clients.push(d.await.unwrap());
            }
        }
        for _ in 0..n {
            subscribed.recv().await.unwrap();
        }
        assert_eq!(hub.subscriber_count("all"), n);
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut ws| {
                tokio::spawn(async move {
                    for i in 0..MESSAGES {
                        let m = ws.recv().await.unwrap();
                        assert_eq!(m.as_text(), Some(i.to_string().as_str()));
                    }
                    ws
                })
            })
            .collect();
        for i in 0..MESSAGES {
            hub.publish("all", Message::text(i.to_string()))
                .await
                .unwrap();
        }
        let mut clients = Vec::with_capacity(n);
        for r in readers {
            clients.push(r.await.unwrap());
        }
        let s = hub.topic_stats("all").unwrap();
        assert_eq!(s.delivered, (n * MESSAGES) as u64);
        assert_eq!((s.dropped, s.closed_slow), (0, 0));
        clients
    };
    let clients = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("done in time");
    drop(clients);
}

/// One client never reads: its queue fills (after the socket's buffers),
/// the Close policy closes it, and the others get every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_the_others_get_everything() {
    const MESSAGES: usize = 400;
    let hub = Hub::builder()
        .overflow(Overflow::Close(
            silverback::CloseCode::TryAgainLater,
            "slow consumer",
        ))
        .build()
        .unwrap();
    // 16 messages of 64 KiB at most queued per connection.
    let limits = QueueLimits::new(16, 1 << 20);
    let (url, mut subscribed) = serve(hub.clone(), "big", limits).await;
    let run = async {
        let (slow, _) = silverback::connect(&url).await.unwrap();
        let mut fast = Vec::new();
        for _ in 0..3 {
            fast.push(silverback::connect(&url).await.unwrap().0);
        }
        for _ in 0..4 {
            subscribed.recv().await.unwrap();
        }
        // Each fast reader says how many it got: the publisher stays at
        // most WINDOW messages ahead of them (publish itself never waits).
        const WINDOW: usize = 8;
        let mut progress = Vec::new();
        let readers: Vec<_> = fast
            .into_iter()
            .map(|mut ws| {
                let (got, rx) = tokio::sync::watch::channel(0usize);
                progress.push(rx);
                tokio::spawn(async move {
                    for i in 0..MESSAGES {
                        let m = ws.recv().await.unwrap();
                        assert_eq!(m.as_bytes()[..8], (i as u64).to_be_bytes());
                        got.send_replace(i + 1);
                    }
                    ws // still connected
                })
            })
            .collect();
        // 400 x 64 KiB = 25 MiB: more than loopback buffers hold.
        for i in 0..MESSAGES {
            for p in &mut progress {
                p.wait_for(|&got| got + WINDOW >= i).await.unwrap();
            }
            let mut payload = vec![0u8; 64 << 10];
            payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
            hub.publish("big", Message::binary(payload)).await.unwrap();
        }
        let mut fast = Vec::new();
        for r in readers {
            fast.push(r.await.unwrap());
        }
        let s = hub.stats();
        assert_eq!(s.closed_slow, 1, "{s:?}");
        // Its full queue (16) and the message that found it full.
        assert_eq!(s.dropped, 17, "{s:?}");
        assert!(s.delivered >= 3 * MESSAGES as u64, "{s:?}");
        assert_eq!(hub.subscriber_count("big"), 3);
        // What reached its socket before, in order, then the Close.
        let mut slow = slow;
        let mut next = 0u64;
        let err = loop {
            match slow.recv().await {
                Ok(m) => {
                    assert_eq!(m.as_bytes()[..8], next.to_be_bytes());
                    next += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err.close_code(), Some(silverback::CloseCode::TryAgainLater));
        assert!(next < MESSAGES as u64);
        drop(fast);
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("done in time");
}
