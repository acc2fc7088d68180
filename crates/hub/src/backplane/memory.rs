//! The in-process backplane.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use silverback::PreparedMessage;
use tokio::time::Instant;

use super::{Backplane, BoxFuture, Delivery};
use crate::error::HubError;
use crate::history::{new_epoch, History, HistoryLimits, Publication, StreamPosition};

/// The in-process [`Backplane`]: a broker in memory, the default of a
/// [`Hub`](crate::Hub).
///
/// Each topic's stream lives while it has history or an interested node;
/// when it goes (history emptied by its limits, nobody subscribed), its
/// offsets and epoch go with it, and the next publication starts a new
/// epoch. Epochs are random, so a new process never reuses one.
///
/// [`node`](Self::node) gives another node on the same broker: hubs on
/// nodes of one broker behave like hubs on several machines sharing a
/// Redis (used by tests; in one process one hub is enough).
///
/// Publication is synchronous: [`publish`](Backplane::publish) assigns the
/// offset and delivers to every interested node's hub (which offers the
/// message to its subscribers' queues) before its future completes,
/// holding the topic's stream lock so that deliveries stay in offset order.
pub struct MemoryBackplane {
    broker: Arc<Broker>,
    id: u64,
    node: OnceLock<Arc<dyn Delivery>>,
}

impl fmt::Debug for MemoryBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackplane")
            .field("node", &self.id)
            .field("streams", &lock(&self.broker.streams).len())
            .finish()
    }
}

#[derive(Default)]
struct Broker {
    streams: Mutex<HashMap<Arc<str>, Arc<Mutex<Stream>>>>,
    next_node: AtomicU64,
    /// Stream operations, for the periodic sweep.
    ops: AtomicU64,
}

/// Every this many stream operations, every stream's history is trimmed
/// (age limit) and streams left idle are dropped: a topic published to
/// once and never again does not keep its history forever.
const SWEEP_EVERY: u64 = 4096;

struct Stream {
    topic: Arc<str>,
    epoch: Arc<str>,
    offset: u64,
    history: VecDeque<(Instant, Publication)>,
    limits: HistoryLimits,
    /// Interested nodes.
    nodes: Vec<(u64, Arc<dyn Delivery>)>,
    /// Taken out of the broker's map: whoever holds it must look again.
    removed: bool,
}

impl Stream {
    fn trim(&mut self, now: Instant) {
        while self.history.len() > self.limits.max_messages {
            self.history.pop_front();
        }
        if let Some(max_age) = self.limits.max_age {
            while self
                .history
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > max_age)
            {
                self.history.pop_front();
            }
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition::new(self.offset, &*self.epoch)
    }

    fn is_idle(&self) -> bool {
        self.nodes.is_empty() && self.history.is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for MemoryBackplane {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackplane {
    /// A new broker in memory (new epochs), with one node: this one.
    pub fn new() -> Self {
        Self::on(Arc::new(Broker::default()))
    }

    fn on(broker: Arc<Broker>) -> Self {
        let id = broker.next_node.fetch_add(1, Ordering::Relaxed);
        Self {
            broker,
            id,
            node: OnceLock::new(),
        }
    }

    /// Another node on the same broker, for another [`Hub`](crate::Hub).
    pub fn node(&self) -> MemoryBackplane {
        Self::on(self.broker.clone())
    }

    /// Topics the broker keeps a stream for (history or interest).
    pub fn streams(&self) -> usize {
        lock(&self.broker.streams).len()
    }

    /// Trims every stream's history by age and drops the idle streams
    /// (no history, no interested node).
    fn sweep(&self) {
        let now = Instant::now();
        // The map, then each stream: the order of `with_stream`'s idle path.
        lock(&self.broker.streams).retain(|_, stream| {
            let mut s = lock(stream);
            s.trim(now);
            if s.is_idle() && !s.removed {
                s.removed = true;
                return false;
            }
            true
        });
    }

    /// Runs `f` on the topic's stream (created if missing), then drops the
    /// stream if it has become idle.
    fn with_stream<R>(&self, topic: &str, f: impl FnOnce(&mut Stream) -> R) -> R {
        if self.broker.ops.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        loop {
            let stream = {
                let mut map = lock(&self.broker.streams);
                match map.get(topic) {
                    Some(s) => s.clone(),
                    None => {
                        let topic: Arc<str> = topic.into();
                        let s = Arc::new(Mutex::new(Stream {
                            topic: topic.clone(),
                            epoch: new_epoch().into(),
                            offset: 0,
                            history: VecDeque::new(),
                            limits: HistoryLimits::NONE,
                            nodes: Vec::new(),
                            removed: false,
                        }));
                        map.insert(topic, s.clone());
                        s
                    }
                }
            };
            let mut s = lock(&stream);
            if s.removed {
                continue;
            }
            s.trim(Instant::now());
            let r = f(&mut s);
            let idle = s.is_idle();
            drop(s);
            if idle {
                let mut map = lock(&self.broker.streams);
                let mut s = lock(&stream);
                if s.is_idle() && !s.removed {
                    s.removed = true;
                    map.remove(topic);
                }
            }
            return r;
        }
    }
}

impl Backplane for MemoryBackplane {
    fn attach(&self, node: Arc<dyn Delivery>) -> Result<(), HubError> {
        self.node
            .set(node)
            .map_err(|_| HubError::backplane("this MemoryBackplane node is already attached to a hub; use MemoryBackplane::node() for another"))
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: PreparedMessage,
        history: HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, HubError>> {
        Box::pin(async move {
            Ok(self.with_stream(topic, |s| {
                s.offset += 1;
                let p = Publication {
                    topic: s.topic.clone(),
                    offset: s.offset,
                    epoch: s.epoch.clone(),
                    message,
                };
                s.limits = history;
                if history.max_messages > 0 {
                    s.history.push_back((Instant::now(), p.clone()));
                    s.trim(Instant::now());
                }
                for (_, node) in &s.nodes {
                    node.deliver(&p);
                }
                s.position()
            }))
        })
    }

    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            let node = self
                .node
                .get()
                .ok_or_else(|| HubError::backplane("MemoryBackplane not attached to a hub"))?
                .clone();
            self.with_stream(topic, |s| {
                if !s.nodes.iter().any(|(id, _)| *id == self.id) {
                    s.nodes.push((self.id, node));
                }
            });
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            self.with_stream(topic, |s| s.nodes.retain(|(id, _)| *id != self.id));
            Ok(())
        })
    }

    fn history<'a>(
        &'a self,
        topic: &'a str,
        since: Option<&'a StreamPosition>,
    ) -> BoxFuture<'a, Result<History, HubError>> {
        Box::pin(async move {
            Ok(self.with_stream(topic, |s| {
                let position = s.position();
                let Some(since) = since else {
                    return History {
                        publications: s.history.iter().map(|(_, p)| p.clone()).collect(),
                        position,
                        complete: true,
                    };
                };
                if since.epoch != *s.epoch || since.offset > s.offset {
                    return History {
                        publications: Vec::new(),
                        position,
                        complete: false,
                    };
                }
                let first_kept = s.history.front().map_or(s.offset + 1, |(_, p)| p.offset);
                let publications: Vec<Publication> = s
                    .history
                    .iter()
                    .filter(|(_, p)| p.offset > since.offset)
                    .map(|(_, p)| p.clone())
                    .collect();
                History {
                    publications,
                    position,
                    complete: first_kept <= since.offset + 1,
                }
            }))
        })
    }

    fn position<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<StreamPosition, HubError>> {
        Box::pin(async move { Ok(self.with_stream(topic, |s| s.position())) })
    }

    fn remove_history<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            self.with_stream(topic, |s| {
                s.history.clear();
                s.offset = 0;
                s.epoch = new_epoch().into();
            });
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use silverback::Message;

    use super::*;

    /// A node that records what it gets.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, u64)>>);

    impl Delivery for Recorder {
        fn deliver(&self, p: &Publication) {
            lock(&self.0).push((p.topic.to_string(), p.offset));
        }
    }

    fn msg(s: &str) -> PreparedMessage {
        PreparedMessage::new(Message::text(s.to_owned()))
    }

    #[tokio::test(start_paused = true)]
    async fn streams_published_to_once_go_when_their_history_expires() {
        let bp = MemoryBackplane::new();
        let limits = HistoryLimits::new(10, Some(std::time::Duration::from_secs(60)));
        for i in 0..100 {
            bp.publish(&format!("t{i}"), msg("x"), limits)
                .await
                .unwrap();
        }
        assert_eq!(bp.streams(), 100);
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        // One topic kept alive by a fresh message.
        bp.publish("kept", msg("y"), limits).await.unwrap();
        for _ in 0..SWEEP_EVERY {
            bp.history("kept", None).await.unwrap();
        }
        assert_eq!(bp.streams(), 1);
        assert_eq!(
            bp.history("kept", None).await.unwrap().publications.len(),
            1
        );
    }

    #[tokio::test]
    async fn offsets_are_dense_per_topic_and_delivered_in_order_to_interested_nodes() {
        let bp = MemoryBackplane::new();
        let rec = Arc::new(Recorder::default());
        bp.attach(rec.clone()).unwrap();
        assert!(bp.attach(rec.clone()).is_err(), "one hub per node");
        let keep = HistoryLimits::new(10, None);
        bp.subscribe("a").await.unwrap();
        for (t, expect) in [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)] {
            let pos = bp.publish(t, msg("x"), keep).await.unwrap();
            assert_eq!(pos.offset, expect);
        }
        let got = lock(&rec.0).clone();
        assert_eq!(got, [("a".into(), 1), ("a".into(), 2), ("a".into(), 3)]);
        bp.unsubscribe("a").await.unwrap();
        bp.publish("a", msg("x"), keep).await.unwrap();
        assert_eq!(lock(&rec.0).len(), 3);
    }

    #[tokio::test]
    async fn history_says_whether_it_is_complete() {
        let bp = MemoryBackplane::new();
        let keep = HistoryLimits::new(2, None);
        let mut last = StreamPosition::default();
        for _ in 0..4 {
            last = bp.publish("t", msg("x"), keep).await.unwrap();
        }
        let at = |o| StreamPosition::new(o, last.epoch.clone());
        let h = bp.history("t", Some(&at(2))).await.unwrap();
        assert!(h.complete);
        assert_eq!(
            h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [3, 4]
        );
        assert!(!bp.history("t", Some(&at(1))).await.unwrap().complete);
        assert!(bp.history("t", Some(&at(4))).await.unwrap().complete);
        // From the future, or another epoch: not complete, nothing given.
        for bad in [at(5), StreamPosition::new(2, "other")] {
            let h = bp.history("t", Some(&bad)).await.unwrap();
            assert!(!h.complete && h.publications.is_empty());
            assert_eq!(h.position, last);
        }
    }

    #[tokio::test]
    async fn an_idle_stream_goes_and_comes_back_in_a_new_epoch() {
        let bp = MemoryBackplane::new();
        let a = bp
            .publish("t", msg("x"), HistoryLimits::NONE)
            .await
            .unwrap();
        assert_eq!(bp.streams(), 0, "no history, no interest: nothing kept");
        let b = bp
            .publish("t", msg("x"), HistoryLimits::NONE)
            .await
            .unwrap();
        assert_eq!((a.offset, b.offset), (1, 1));
        assert_ne!(a.epoch, b.epoch);
        // With history, it stays.
        bp.publish("t", msg("x"), HistoryLimits::new(1, None))
            .await
            .unwrap();
        let c = bp
            .publish("t", msg("x"), HistoryLimits::new(1, None))
            .await
            .unwrap();
        assert_eq!(c.offset, 2);
        assert_eq!(bp.streams(), 1);
    }
}
