//! Hub behaviour over in-memory connections.

use std::time::Duration;

use silverback::testing;
use silverback::{CloseCode, Message, Overflow, QueueLimits, WebSocket, WsSender};
use silverback_hub::{
    Backplane, BoxFuture, Delivery, History, HistoryLimits, Hub, HubError, HubLimits,
    MemoryBackplane, StreamPosition, SubscriberInfo, TopicOptions,
};
use tokio::io::DuplexStream;

type Ws = WebSocket<DuplexStream>;

/// A connection: the client end, and the server end's sender. The server
/// end is driven (receiving, so writing out its queue) when `drive`.
fn conn(limits: QueueLimits, drive: bool) -> (Ws, WsSender, Option<Ws>) {
    let (client, mut server) = testing::pair(Default::default(), Default::default());
    let tx = server.sender_with_limits(limits);
    if drive {
        tokio::spawn(async move { while server.recv().await.is_ok() {} });
        (client, tx, None)
    } else {
        (client, tx, Some(server))
    }
}

fn driven() -> (Ws, WsSender) {
    let (c, tx, _) = conn(QueueLimits::default(), true);
    (c, tx)
}

async fn text(ws: &mut Ws) -> String {
    let m = tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .expect("a message in time")
        .expect("a message");
    m.as_text().expect("text").to_owned()
}

fn hub_with_history(n: usize, age: Option<Duration>) -> Hub {
    Hub::builder()
        .history(HistoryLimits::new(n, age))
        .build()
        .unwrap()
}

#[tokio::test]
async fn publish_reaches_every_subscriber_in_offset_order() {
    let hub = Hub::new();
    let mut clients = Vec::new();
    for i in 0..3 {
        let (c, tx) = driven();
        hub.subscribe("t", &tx, format!("c{i}")).await.unwrap();
        clients.push(c);
    }
    // Four publishers at once: each message's offset is its place.
    let mut tasks = Vec::new();
    for p in 0..4 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..50 {
                let text = format!("{p}-{i}");
                let pos = hub.publish("t", Message::text(text.clone())).await.unwrap();
                offsets.push((text, pos.offset));
            }
            offsets
        }));
    }
    let mut by_text = std::collections::HashMap::new();
    for t in tasks {
        by_text.extend(t.await.unwrap());
    }
    for c in &mut clients {
        for expect in 1..=200u64 {
            assert_eq!(by_text[&text(c).await], expect);
        }
    }
    let s = hub.topic_stats("t").unwrap();
    assert_eq!((s.published, s.delivered, s.dropped), (200, 600, 0));
    assert_eq!(hub.stats().published, 200);
}

#[tokio::test]
async fn drop_oldest_counts_drops() {
    let hub = Hub::builder()
        .overflow(Overflow::DropOldest)
        .build()
        .unwrap();
    let (_c, tx, _server) = conn(QueueLimits::new(2, 1 << 20), false);
    hub.subscribe("t", &tx, "slow").await.unwrap();
    for i in 0..5 {
        hub.publish("t", Message::text(i.to_string()))
            .await
            .unwrap();
    }
    let s = hub.topic_stats("t").unwrap();
    assert_eq!(
        (s.published, s.delivered, s.dropped, s.closed_slow),
        (5, 5, 3, 0)
    );
    assert_eq!(tx.queued(), 2);
    assert_eq!(hub.subscriber_count("t"), 1);
}

#[tokio::test]
async fn drop_new_counts_drops_and_keeps_the_first() {
    let hub = Hub::builder().overflow(Overflow::DropNew).build().unwrap();
    let (mut c, tx, server) = conn(QueueLimits::new(2, 1 << 20), false);
    hub.subscribe("t", &tx, "slow").await.unwrap();
    for i in 0..5 {
        hub.publish("t", Message::text(i.to_string()))
            .await
            .unwrap();
    }
    let s = hub.topic_stats("t").unwrap();
    assert_eq!((s.delivered, s.dropped, s.closed_slow), (2, 3, 0));
    let mut server = server.unwrap();
    tokio::spawn(async move { while server.recv().await.is_ok() {} });
    assert_eq!(text(&mut c).await, "0");
    assert_eq!(text(&mut c).await, "1");
}

#[tokio::test]
async fn close_policy_closes_the_slow_subscriber_and_unsubscribes_it() {
    let hub = Hub::builder().overflow(Overflow::DropNew).build().unwrap();
    // Per-topic override of the hub's policy.
    let close = Overflow::Close(CloseCode::TryAgainLater, "slow consumer");
    hub.set_topic_options("t", TopicOptions::new().overflow(close))
        .unwrap();
    let (mut c, tx, server) = conn(QueueLimits::new(2, 1 << 20), false);
    hub.subscribe("t", &tx, "slow").await.unwrap();
    hub.subscribe("other", &tx, "slow").await.unwrap();
    for i in 0..3 {
        hub.publish("t", Message::text(i.to_string()))
            .await
            .unwrap();
    }
    let s = hub.topic_stats("t").unwrap();
    assert_eq!((s.delivered, s.dropped, s.closed_slow), (2, 3, 1));
    assert_eq!(s.subscribers, 0);
    assert!(tx.is_closed());
    let h = hub.stats();
    assert_eq!((h.closed_slow, h.dropped, h.subscriptions), (1, 3, 1));
    // The other topic drops it on its next publication.
    hub.publish("other", Message::text("x")).await.unwrap();
    assert_eq!(hub.subscriber_count("other"), 0);
    assert!(hub.subscriptions(&tx).is_empty());
    assert_eq!(hub.stats().connections, 0);
    // The client is told why.
    let mut server = server.unwrap();
    tokio::spawn(async move { while server.recv().await.is_ok() {} });
    let err = c.recv().await.unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::TryAgainLater));
    // The emptied topics go (their release runs on a task).
    for _ in 0..100 {
        if hub.topics().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(hub.topics().is_empty(), "{:?}", hub.topics());
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_stop_the_others() {
    let hub = Hub::builder()
        .overflow(Overflow::DropOldest)
        .build()
        .unwrap();
    let (_slow_client, slow, _slow_server) = conn(QueueLimits::new(8, 1 << 20), false);
    hub.subscribe("t", &slow, "slow").await.unwrap();
    let mut fast = Vec::new();
    for i in 0..3 {
        let (c, tx) = driven();
        hub.subscribe("t", &tx, format!("fast{i}")).await.unwrap();
        fast.push(c);
    }
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for i in 0..1000 {
                    assert_eq!(text(&mut c).await, i.to_string());
                }
            })
        })
        .collect();
    for i in 0..1000 {
        hub.publish("t", Message::text(i.to_string()))
            .await
            .unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    // The slow one holds at most its limit.
    assert_eq!(slow.queued(), 8);
    let s = hub.topic_stats("t").unwrap();
    assert_eq!(s.dropped, 1000 - 8);
    assert_eq!(s.delivered, 4000);
}

#[tokio::test]
async fn history_hit_replays_then_live_without_gap() {
    let hub = hub_with_history(10, None);
    let mut last = StreamPosition::default();
    for i in 1..=5 {
        last = hub
            .publish("t", Message::text(i.to_string()))
            .await
            .unwrap();
    }
    assert_eq!(last.offset, 5);
    let (mut c, tx) = driven();
    let since = StreamPosition::new(2, last.epoch.clone());
    let r = hub.subscribe_since("t", &tx, "late", since).await.unwrap();
    assert!(r.recovered);
    assert_eq!(r.replayed, 3);
    assert_eq!(r.position, last);
    hub.publish("t", Message::text("6")).await.unwrap();
    for i in 3..=6 {
        assert_eq!(text(&mut c).await, i.to_string());
    }
    // Subscribing again with a position is refused: it would duplicate.
    let again = hub.subscribe_since("t", &tx, "late", last.clone()).await;
    assert!(matches!(again, Err(HubError::AlreadySubscribed)));
    // Nothing missed: recovered, nothing replayed.
    let (_c2, tx2) = driven();
    let pos = hub.history("t", None).await.unwrap().position;
    let r = hub
        .subscribe_since("t", &tx2, "x", pos.clone())
        .await
        .unwrap();
    assert!(r.recovered && r.replayed == 0 && r.position == pos);
}

#[tokio::test]
async fn history_miss_when_trimmed() {
    let hub = hub_with_history(3, None);
    let mut last = StreamPosition::default();
    for i in 1..=10 {
        last = hub
            .publish("t", Message::text(i.to_string()))
            .await
            .unwrap();
    }
    let h = hub.history("t", None).await.unwrap();
    let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [8, 9, 10]);
    let (mut c, tx) = driven();
    let r = hub
        .subscribe_since("t", &tx, "late", StreamPosition::new(2, last.epoch.clone()))
        .await
        .unwrap();
    assert!(!r.recovered);
    assert_eq!(r.replayed, 3);
    for i in 8..=10 {
        assert_eq!(text(&mut c).await, i.to_string());
    }
}

#[tokio::test]
async fn epoch_change_is_not_recovered() {
    let hub = hub_with_history(10, None);
    let before = hub.publish("t", Message::text("a")).await.unwrap();
    hub.remove_history("t").await.unwrap();
    let after = hub.publish("t", Message::text("b")).await.unwrap();
    assert_ne!(before.epoch, after.epoch);
    assert_eq!(after.offset, 1);
    let (mut c, tx) = driven();
    let r = hub.subscribe_since("t", &tx, "x", before).await.unwrap();
    assert!(!r.recovered);
    assert_eq!((r.replayed, r.position.clone()), (0, after));
    hub.publish("t", Message::text("c")).await.unwrap();
    assert_eq!(text(&mut c).await, "c");
    // A new process (backplane) is a new epoch.
    let other = hub_with_history(10, None);
    let p = other.publish("t", Message::text("a")).await.unwrap();
    assert_ne!(p.epoch, r.position.epoch);
}

#[tokio::test(start_paused = true)]
async fn history_age_limit_on_the_paused_clock() {
    let hub = hub_with_history(100, Some(Duration::from_secs(60)));
    let first = hub.publish("t", Message::text("1")).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    hub.publish("t", Message::text("2")).await.unwrap();
    tokio::time::advance(Duration::from_secs(31)).await;
    let h = hub.history("t", None).await.unwrap();
    let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [2]);
    let since = StreamPosition::new(0, first.epoch.clone());
    assert!(!hub.history("t", Some(&since)).await.unwrap().complete);
    assert!(hub.history("t", Some(&first)).await.unwrap().complete);
    tokio::time::advance(Duration::from_secs(30)).await;
    let h = hub.history("t", None).await.unwrap();
    assert!(h.publications.is_empty());
}

#[tokio::test]
async fn topic_history_overrides_the_hub() {
    let hub = Hub::new(); // no history by default
    hub.set_topic_options(
        "kept",
        TopicOptions::new().history(HistoryLimits::new(2, None)),
    )
    .unwrap();
    for t in ["kept", "kept", "kept", "lost"] {
        hub.publish(t, Message::text("x")).await.unwrap();
    }
    assert_eq!(
        hub.history("kept", None).await.unwrap().publications.len(),
        2
    );
    assert!(hub
        .history("lost", None)
        .await
        .unwrap()
        .publications
        .is_empty());
}

#[tokio::test]
async fn replay_and_live_meet_without_gap_or_duplicate() {
    let hub = hub_with_history(10_000, None);
    let first = hub.publish("t", Message::text("1")).await.unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 2..=2000u64 {
                hub.publish("t", Message::text(i.to_string()))
                    .await
                    .unwrap();
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Subscribe while publication goes on, from position 1.
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    let (mut c, tx) = driven();
    let r = hub.subscribe_since("t", &tx, "x", first).await.unwrap();
    assert!(r.recovered);
    publisher.await.unwrap();
    for i in 2..=2000u64 {
        assert_eq!(text(&mut c).await, i.to_string());
    }
}

#[tokio::test]
async fn presence_lists_subscribers_with_their_info() {
    let hub = Hub::new();
    let (_a, ta) = driven();
    let (_b, tb) = driven();
    let info = SubscriberInfo::new("bob").with_data(serde_json::json!({"name": "Bob"}));
    hub.subscribe("room", &ta, "alice").await.unwrap();
    hub.subscribe("room", &tb, info.clone()).await.unwrap();
    hub.subscribe("other", &tb, "bob").await.unwrap();
    assert_eq!(hub.subscriber_count("room"), 2);
    let mut ids: Vec<String> = hub.presence("room").iter().map(|i| i.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["alice", "bob"]);
    assert!(hub.presence("room").iter().any(|i| **i == info));
    // Subscribing again replaces the info.
    hub.subscribe("room", &ta, "alice2").await.unwrap();
    assert_eq!(hub.subscriber_count("room"), 2);
    assert!(hub.presence("room").iter().any(|i| i.id == "alice2"));
    assert!(hub.unsubscribe("room", &ta).await.unwrap());
    assert!(!hub.unsubscribe("room", &ta).await.unwrap());
    assert_eq!(hub.subscriber_count("room"), 1);
    assert_eq!(hub.unsubscribe_all(&tb).await.unwrap(), 2);
    assert_eq!(hub.subscriber_count("room"), 0);
    assert!(hub.topics().is_empty());
    let s = hub.stats();
    assert_eq!((s.topics, s.connections, s.subscriptions), (0, 0, 0));
}

#[tokio::test]
async fn limits_refuse_with_clear_errors() {
    let limits = HubLimits::default()
        .max_topic_len(8)
        .max_topics_per_connection(2)
        .max_topics(3);
    let hub = Hub::builder().limits(limits).build().unwrap();
    let (_c, tx) = driven();
    for bad in ["", "123456789", "a\nb", "a\u{7f}"] {
        let e = hub.subscribe(bad, &tx, "x").await.unwrap_err();
        assert!(
            matches!(e, HubError::InvalidTopic(_)) && e.is_limit(),
            "{bad:?}: {e}"
        );
        assert!(hub.publish(bad, Message::text("x")).await.is_err());
    }
    hub.subscribe("a", &tx, "x").await.unwrap();
    hub.subscribe("b", &tx, "x").await.unwrap();
    let e = hub.subscribe("c", &tx, "x").await.unwrap_err();
    assert!(
        matches!(e, HubError::TooManyTopicsForConnection { limit: 2 }),
        "{e}"
    );
    let (_c2, tx2) = driven();
    hub.subscribe("c", &tx2, "x").await.unwrap();
    let e = hub.subscribe("d", &tx2, "x").await.unwrap_err();
    assert!(matches!(e, HubError::TooManyTopics { limit: 3 }), "{e}");
    assert_eq!(e.to_string(), "too many topics (limit 3)");
    // Freed, accepted again.
    hub.unsubscribe("a", &tx).await.unwrap();
    hub.subscribe("d", &tx2, "x").await.unwrap();
    assert_eq!(hub.subscriptions(&tx2).len(), 2);
    // A closed connection is refused.
    tx.close(CloseCode::Normal, "").unwrap();
    let e = hub.subscribe("e", &tx, "x").await.unwrap_err();
    assert!(matches!(e, HubError::ConnectionClosed));
}

#[tokio::test]
async fn two_nodes_share_one_stream() {
    let broker = MemoryBackplane::new();
    let node2 = broker.node();
    let hub1 = Hub::builder()
        .backplane(broker)
        .history(HistoryLimits::new(10, None))
        .build()
        .unwrap();
    let hub2 = Hub::builder()
        .backplane(node2)
        .history(HistoryLimits::new(10, None))
        .build()
        .unwrap();
    let (mut c1, t1) = driven();
    let (mut c2, t2) = driven();
    hub1.subscribe("t", &t1, "one").await.unwrap();
    hub2.subscribe("t", &t2, "two").await.unwrap();
    let a = hub1.publish("t", Message::text("from1")).await.unwrap();
    let b = hub2.publish("t", Message::text("from2")).await.unwrap();
    assert_eq!((a.offset, b.offset), (1, 2));
    assert_eq!(a.epoch, b.epoch);
    for c in [&mut c1, &mut c2] {
        assert_eq!(text(c).await, "from1");
        assert_eq!(text(c).await, "from2");
    }
    assert_eq!(hub1.stats().received, 2);
    assert_eq!(hub2.topic_stats("t").unwrap().published, 2);
    // Interest follows the subscribers: a node without any gets nothing.
    hub2.unsubscribe_all(&t2).await.unwrap();
    hub1.publish("t", Message::text("only1")).await.unwrap();
    assert_eq!(hub2.stats().received, 2);
}

/// A backplane whose broker is unreachable.
struct Down;

impl Backplane for Down {
    fn attach(&self, _: std::sync::Arc<dyn Delivery>) -> Result<(), HubError> {
        Ok(())
    }
    fn publish<'a>(
        &'a self,
        _: &'a str,
        _: silverback::PreparedMessage,
        _: HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, HubError>> {
        Box::pin(async { Err(HubError::backplane("connection refused")) })
    }
    fn subscribe<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async { Err(HubError::backplane("connection refused")) })
    }
    fn unsubscribe<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async { Ok(()) })
    }
    fn history<'a>(
        &'a self,
        _: &'a str,
        _: Option<&'a StreamPosition>,
    ) -> BoxFuture<'a, Result<History, HubError>> {
        Box::pin(async { Err(HubError::backplane("connection refused")) })
    }
    fn remove_history<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn backplane_errors_reach_the_caller() {
    let hub = Hub::builder().backplane(Down).build().unwrap();
    let e = hub.publish("t", Message::text("x")).await.unwrap_err();
    assert!(e.is_backplane());
    assert_eq!(e.to_string(), "backplane: connection refused");
    let s = hub.stats();
    assert_eq!((s.published, s.publish_errors), (0, 1));
    let (_c, tx) = driven();
    assert!(hub
        .subscribe("t", &tx, "x")
        .await
        .unwrap_err()
        .is_backplane());
    // Nothing left behind.
    assert!(hub.topics().is_empty() && hub.subscriptions(&tx).is_empty());
}

#[test]
fn hub_is_send_sync_and_its_futures_are_send() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Hub>();
    fn send<T: Send>(_: &T) {}
    let hub = Hub::new();
    let (_c, mut s) = testing::pair(Default::default(), Default::default());
    let tx = s.sender();
    send(&hub.publish("t", Message::text("x")));
    send(&hub.subscribe("t", &tx, "x"));
    send(&hub.subscribe_since("t", &tx, "x", StreamPosition::default()));
    send(&hub.unsubscribe_all(&tx));
}

/// Counts its encodings; prefixes the offset.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicUsize);

impl silverback_hub::Codec for Counting {
    fn encode(&self, p: &silverback_hub::Publication) -> silverback::PreparedMessage {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let text = p.message.message().as_text().unwrap_or("");
        silverback::PreparedMessage::new(Message::text(format!("{}:{text}", p.offset)))
    }
}

#[tokio::test]
async fn a_codec_encodes_once_per_publication_for_all_its_subscribers() {
    use silverback_hub::SubscribeOptions;
    use std::sync::Arc;
    let hub = hub_with_history(10, None);
    let codec = Arc::new(Counting::default());
    hub.publish("t", Message::text("before")).await.unwrap();
    let mut encoded = Vec::new();
    for i in 0..5 {
        let (c, tx) = driven();
        let r = hub
            .subscribe_with(
                "t",
                &tx,
                SubscribeOptions::new()
                    .info(format!("e{i}"))
                    .codec(codec.clone()),
            )
            .await
            .unwrap();
        // Without `since`: starts after the current position.
        assert_eq!(r.position.offset, 1);
        assert!(r.recovered);
        encoded.push(c);
    }
    let (mut raw, tx) = driven();
    hub.subscribe("t", &tx, "raw").await.unwrap();
    for i in 0..3 {
        hub.publish("t", Message::text(format!("m{i}")))
            .await
            .unwrap();
    }
    for c in &mut encoded {
        for i in 0..3 {
            assert_eq!(text(c).await, format!("{}:m{i}", i + 2));
        }
    }
    for i in 0..3 {
        assert_eq!(text(&mut raw).await, format!("m{i}"));
    }
    assert_eq!(codec.0.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Recovery encodes the replayed messages for the recovering subscriber.
    let (mut late, tx) = driven();
    let epoch = hub.history("t", None).await.unwrap().position.epoch;
    let r = hub
        .subscribe_with(
            "t",
            &tx,
            SubscribeOptions::new()
                .since(StreamPosition::new(2, epoch))
                .codec(codec.clone()),
        )
        .await
        .unwrap();
    assert!(r.recovered);
    assert_eq!((r.replayed, r.position.offset), (2, 4));
    assert_eq!(text(&mut late).await, "3:m1");
    assert_eq!(text(&mut late).await, "4:m2");
    // Subscribing again is refused.
    let again = hub.subscribe_with("t", &tx, SubscribeOptions::new()).await;
    assert!(matches!(again, Err(HubError::AlreadySubscribed)));
}

/// A [`MemoryBackplane`] that lets the test reach the hub's [`Delivery`],
/// as a broker-backed backplane's reader task does.
struct Exposed {
    inner: MemoryBackplane,
    node: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<dyn Delivery>>>,
}

impl Backplane for Exposed {
    fn attach(&self, node: std::sync::Arc<dyn Delivery>) -> Result<(), HubError> {
        let _ = self.node.set(node.clone());
        self.inner.attach(node)
    }
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        m: silverback::PreparedMessage,
        h: HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, HubError>> {
        self.inner.publish(topic, m, h)
    }
    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        self.inner.subscribe(topic)
    }
    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        self.inner.unsubscribe(topic)
    }
    fn history<'a>(
        &'a self,
        topic: &'a str,
        since: Option<&'a StreamPosition>,
    ) -> BoxFuture<'a, Result<History, HubError>> {
        self.inner.history(topic, since)
    }
    fn remove_history<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        self.inner.remove_history(topic)
    }
}

#[tokio::test]
async fn a_reset_tells_envelope_subscribers_and_restarts_deduplication() {
    use silverback_hub::envelope::EnvelopeCodec;
    use silverback_hub::{Publication, SubscribeOptions};
    let node = std::sync::Arc::new(std::sync::OnceLock::new());
    let hub = Hub::builder()
        .backplane(Exposed {
            inner: MemoryBackplane::new(),
            node: node.clone(),
        })
        .build()
        .unwrap();
    let (mut raw, raw_tx) = driven();
    let (mut env, env_tx) = driven();
    hub.subscribe("t", &raw_tx, "raw").await.unwrap();
    let codec: std::sync::Arc<dyn silverback_hub::Codec> = std::sync::Arc::new(EnvelopeCodec);
    hub.subscribe_with("t", &env_tx, SubscribeOptions::new().codec(codec))
        .await
        .unwrap();
    for m in ["1", "2"] {
        hub.publish("t", Message::text(m)).await.unwrap();
        assert_eq!(text(&mut raw).await, m);
        text(&mut env).await;
    }
    // The broker lost the stream: a new epoch, from its start.
    let node = node.get().unwrap();
    node.reset("t", &StreamPosition::new(0, "fresh"));
    let notice: serde_json::Value = serde_json::from_str(&text(&mut env).await).unwrap();
    assert_eq!(
        notice,
        serde_json::json!({"op":"subscribed","topic":"t","offset":0,"epoch":"fresh","recovered":false})
    );
    // Offset 1 of the new epoch is not a duplicate of the old one's 1;
    // delivered twice, it is.
    let p = Publication {
        topic: "t".into(),
        offset: 1,
        epoch: "fresh".into(),
        message: silverback::PreparedMessage::new(Message::text("new")),
    };
    node.deliver(&p);
    node.deliver(&p);
    assert_eq!(text(&mut raw).await, "new", "raw subscribers get no notice");
    let m: serde_json::Value = serde_json::from_str(&text(&mut env).await).unwrap();
    assert_eq!(
        (m["offset"].as_u64(), m["epoch"].as_str()),
        (Some(1), Some("fresh"))
    );
    assert_eq!(hub.stats().received, 3);
    assert_eq!(node.subscriber_count("t"), 2);
}
