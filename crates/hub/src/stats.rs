//! Counters: what the hub delivered and what its policies dropped.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one topic (kept while the topic has subscribers on this
/// hub: a topic that empties out starts again from zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TopicStats {
    /// Subscribers on this hub.
    pub subscribers: usize,
    /// Publications of the topic that reached this hub's fan-out (from any
    /// node: what was published to the topic while this hub had
    /// subscribers).
    pub published: u64,
    /// Messages queued for a subscriber (one publication to N subscribers:
    /// N), replays included.
    pub delivered: u64,
    /// Messages dropped by the overflow policy: with
    /// [`Overflow::DropNew`](silverback::Overflow::DropNew) the new one,
    /// with [`DropOldest`](silverback::Overflow::DropOldest) the older ones
    /// it pushed out (of any topic: the queue is the connection's), with
    /// [`Close`](silverback::Overflow::Close) everything that was queued.
    pub dropped: u64,
    /// Subscribers closed by an [`Overflow::Close`](silverback::Overflow::Close)
    /// policy.
    pub closed_slow: u64,
}

/// Counters of a whole hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HubStats {
    /// Topics with subscribers on this hub.
    pub topics: usize,
    /// Connections subscribed to at least one topic.
    pub connections: usize,
    /// Subscriptions (connection × topic).
    pub subscriptions: usize,
    /// Successful [`Hub::publish`](crate::Hub::publish) calls on this hub.
    pub published: u64,
    /// [`Hub::publish`](crate::Hub::publish) calls that failed (backplane
    /// errors: the message was not published).
    pub publish_errors: u64,
    /// Publications that reached this hub's fan-out (from any node).
    pub received: u64,
    /// As [`TopicStats::delivered`], all topics.
    pub delivered: u64,
    /// As [`TopicStats::dropped`], all topics.
    pub dropped: u64,
    /// As [`TopicStats::closed_slow`], all topics.
    pub closed_slow: u64,
}

/// Counts of one fan-out (or replay).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fanout {
    pub delivered: u64,
    pub dropped: u64,
    pub closed_slow: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub closed_slow: AtomicU64,
}

impl Counters {
    pub fn add(&self, published: u64, f: Fanout) {
        if published > 0 {
            self.published.fetch_add(published, Ordering::Relaxed);
        }
        if f.delivered > 0 {
            self.delivered.fetch_add(f.delivered, Ordering::Relaxed);
        }
        if f.dropped > 0 {
            self.dropped.fetch_add(f.dropped, Ordering::Relaxed);
        }
        if f.closed_slow > 0 {
            self.closed_slow.fetch_add(f.closed_slow, Ordering::Relaxed);
        }
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
