//! Hub metrics through the [`metrics`](https://docs.rs/metrics) crate
//! facade (feature `metrics`): install a recorder before the first hub is
//! built. Without the feature, the recording calls compile to nothing.
//!
//! | name | type | labels | meaning |
//! |------|------|--------|---------|
//! | `silverback_hub_topics` | gauge | | topics with subscribers, all hubs of the process |
//! | `silverback_hub_subscribers` | gauge | | connections subscribed to at least one topic |
//! | `silverback_hub_published_total` | counter | | successful `Hub::publish` calls |
//! | `silverback_hub_delivered_total` | counter | | messages queued for a subscriber (one publication to N subscribers: N), replays included |
//! | `silverback_hub_dropped_total` | counter | policy | messages dropped by a full subscriber queue's overflow policy: `drop_oldest` (the older ones pushed out), `drop_new` (the new one), `close` (everything queued for a connection closed as a slow consumer) |
//!
//! These are the process-wide sums of what [`Hub::stats`](crate::Hub::stats)
//! reports per hub.

#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

use silverback::Overflow;

use crate::stats::Fanout;

/// `silverback_hub_topics`.
pub const TOPICS: &str = "silverback_hub_topics";
/// `silverback_hub_subscribers`.
pub const SUBSCRIBERS: &str = "silverback_hub_subscribers";
/// `silverback_hub_published_total`.
pub const PUBLISHED: &str = "silverback_hub_published_total";
/// `silverback_hub_delivered_total`.
pub const DELIVERED: &str = "silverback_hub_delivered_total";
/// `silverback_hub_dropped_total`.
pub const DROPPED: &str = "silverback_hub_dropped_total";

/// The `policy` label of an overflow policy.
fn policy(overflow: &Overflow) -> usize {
    match overflow {
        Overflow::DropOldest => 0,
        Overflow::DropNew => 1,
        _ => 2,
    }
}

#[cfg(feature = "metrics")]
mod imp {
    use std::sync::{Mutex, OnceLock};

    use metrics::{counter, gauge, Counter, Gauge};

    use super::*;

    const POLICIES: [&str; 3] = ["drop_oldest", "drop_new", "close"];

    struct Handles {
        published: Counter,
        delivered: Counter,
        dropped: [Counter; 3],
        topics: Gauge,
        subscribers: Gauge,
    }

    fn handles() -> &'static Handles {
        static HANDLES: OnceLock<Handles> = OnceLock::new();
        HANDLES.get_or_init(|| Handles {
            published: counter!(PUBLISHED),
            delivered: counter!(DELIVERED),
            dropped: POLICIES.map(|p| counter!(DROPPED, "policy" => p)),
            topics: gauge!(TOPICS),
            subscribers: gauge!(SUBSCRIBERS),
        })
    }

    /// A publish call succeeded.
    pub(crate) fn published() {
        handles().published.increment(1);
    }

    /// A fan-out (or a replay) under `overflow` did `f`.
    pub(crate) fn fanout(overflow: &Overflow, f: Fanout) {
        let h = handles();
        if f.delivered > 0 {
            h.delivered.increment(f.delivered);
        }
        if f.dropped > 0 {
            h.dropped[policy(overflow)].increment(f.dropped);
        }
    }

    /// One hub's share of the gauges: what it last added.
    #[derive(Debug, Default)]
    pub(crate) struct Gauges {
        last: Mutex<(usize, usize)>,
    }

    impl Gauges {
        /// The hub now has `topics` topics and `subscribers` subscribed
        /// connections: `count` reads them, under this hub's gauge lock,
        /// so the last sync after a change always sees it.
        pub(crate) fn sync(&self, count: impl FnOnce() -> (usize, usize)) {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let (topics, subscribers) = count();
            let h = handles();
            if topics != last.0 {
                h.topics.increment(topics as f64 - last.0 as f64);
            }
            if subscribers != last.1 {
                h.subscribers.increment(subscribers as f64 - last.1 as f64);
            }
            *last = (topics, subscribers);
        }
    }

    impl Drop for Gauges {
        fn drop(&mut self) {
            self.sync(|| (0, 0));
        }
    }

    /// Describes the hub's metrics to the installed recorder (the `# HELP`
    /// lines of a Prometheus exposition). Optional.
    ///
    /// ```
    /// silverback_hub::metrics::describe();
    /// ```
    pub fn describe() {
        use metrics::{describe_counter, describe_gauge};
        describe_gauge!(TOPICS, "Topics with subscribers.");
        describe_gauge!(SUBSCRIBERS, "Connections subscribed to at least one topic.");
        describe_counter!(PUBLISHED, "Messages published.");
        describe_counter!(DELIVERED, "Messages queued for a subscriber.");
        describe_counter!(
            DROPPED,
            "Messages dropped by a full subscriber queue, by overflow policy."
        );
    }
}

#[cfg(feature = "metrics")]
pub use imp::describe;
#[cfg(feature = "metrics")]
pub(crate) use imp::{fanout, published, Gauges};

#[cfg(not(feature = "metrics"))]
mod off {
    use super::*;

    #[inline(always)]
    pub(crate) fn published() {}
    #[inline(always)]
    pub(crate) fn fanout(_: &Overflow, _: Fanout) {}

    #[derive(Debug, Default)]
    pub(crate) struct Gauges;

    impl Gauges {
        #[inline(always)]
        pub(crate) fn sync(&self, _: impl FnOnce() -> (usize, usize)) {}
    }
}

#[cfg(not(feature = "metrics"))]
pub(crate) use off::{fanout, published, Gauges};
