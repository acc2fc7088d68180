//! Hub metrics (feature `metrics`), recorded into metrics-util's
//! `DebuggingRecorder`: exact values after a scripted fan-out with a slow
//! subscriber. One test: the recorder is process-wide.
#![cfg(feature = "metrics")]
#![allow(missing_docs)]

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use silverback::testing;
use silverback::{CloseCode, Message, Overflow, QueueLimits};
use silverback_hub::{Hub, TopicOptions};

#[tokio::test]
async fn fan_out_and_drops_are_counted_exactly() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");

    let hub = Hub::builder().overflow(Overflow::DropNew).build().unwrap();
    let close = Overflow::Close(CloseCode::TryAgainLater, "slow consumer");
    hub.set_topic_options("closing", TopicOptions::new().overflow(close))
        .unwrap();
    // Three connections nobody drives: their queues (2 messages) fill.
    let mut keep = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..3 {
        let (client, mut server) = testing::pair(Default::default(), Default::default());
        senders.push(server.sender_with_limits(QueueLimits::new(2, 1 << 20)));
        keep.push((client, server));
    }
    hub.subscribe("t", &senders[0], "a").await.unwrap();
    hub.subscribe("t", &senders[1], "b").await.unwrap();
    hub.subscribe("closing", &senders[2], "c").await.unwrap();
    assert_eq!(hub.stats().topics, 2);

    // "t": 3 publications to 2 subscribers: 4 queued, 2 dropped (new).
    for i in 0..3 {
        hub.publish("t", Message::text(i.to_string()))
            .await
            .unwrap();
    }
    // "closing": the third closes the subscriber: 2 queued, 3 dropped.
    for i in 0..3 {
        hub.publish("closing", Message::text(i.to_string()))
            .await
            .unwrap();
    }
    // The per-connection view sees its own drops.
    assert_eq!(keep[0].1.stats().dropped, 1);
    assert_eq!(keep[2].1.stats().dropped, 3);

    // The closed subscriber left "closing" (the topic is released on a
    // task: wait for the hub to say so, then the gauges agree).
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while hub.stats().topics != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the emptied topic is released");

    // Each snapshot takes what it reads (counters and gauges then read 0):
    // one snapshot for all, then the changes since.
    let s = snapshot_of(&snapshotter);
    let gauge = |s: &HashMap<String, DebugValue>, name: &str| match s.get(&key(name, &[])) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(gauge(&s, "silverback_hub_topics"), 1.0);
    assert_eq!(gauge(&s, "silverback_hub_subscribers"), 2.0);
    let c = |name: &str, labels: &[(&str, &str)]| match s.get(&key(name, labels)) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?}"),
    };
    assert_eq!(c("silverback_hub_published_total", &[]), 6);
    assert_eq!(c("silverback_hub_delivered_total", &[]), 6);
    assert_eq!(
        c("silverback_hub_dropped_total", &[("policy", "drop_new")]),
        2
    );
    assert_eq!(c("silverback_hub_dropped_total", &[("policy", "close")]), 3);
    // Every policy's series exists from the start.
    assert_eq!(
        c("silverback_hub_dropped_total", &[("policy", "drop_oldest")]),
        0
    );

    hub.unsubscribe_all(&senders[0]).await.unwrap();
    hub.unsubscribe_all(&senders[1]).await.unwrap();
    // Back to none: one topic and two subscribers fewer.
    let s = snapshot_of(&snapshotter);
    assert_eq!(gauge(&s, "silverback_hub_topics"), -1.0);
    assert_eq!(gauge(&s, "silverback_hub_subscribers"), -2.0);
}

/// `name{label=value,...}` (labels sorted).
fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn snapshot_of(s: &metrics_util::debugging::Snapshotter) -> HashMap<String, DebugValue> {
    s.snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _, _, v)| {
            let (_, k) = ck.into_parts();
            let labels: Vec<(&str, &str)> = k.labels().map(|l| (l.key(), l.value())).collect();
            (key(k.name(), &labels), v)
        })
        .collect()
}
