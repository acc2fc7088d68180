//! Offsets, epochs and history: what a subscriber that reconnects needs to
//! get what it missed.
//!
//! Every message published to a topic gets the next `offset` of that topic
//! (1, 2, 3, … with no gap: offsets are dense per topic), assigned by the
//! [`Backplane`](crate::Backplane). A topic's stream also has an `epoch`,
//! a random string that changes whenever the stream's history is lost (a
//! new process for the in-memory backplane, a flushed Redis, a stream that
//! expired): offsets are comparable only within one epoch. A subscriber
//! keeps the [`StreamPosition`] of the last message it got and, on
//! reconnect, asks [`Hub::subscribe_since`](crate::Hub::subscribe_since)
//! for what came after it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use silverback::PreparedMessage;

/// A place in a topic's stream: the offset of the last message seen, in
/// an epoch. Serializable, for clients to keep and send back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Offset of the last message (0: before the first).
    pub offset: u64,
    /// The stream's epoch (see the [module docs](self)).
    pub epoch: String,
}

impl StreamPosition {
    /// The position `offset` in `epoch`.
    pub fn new(offset: u64, epoch: impl Into<String>) -> Self {
        Self {
            offset,
            epoch: epoch.into(),
        }
    }
}

/// A message published to a topic, with its place in the topic's stream:
/// what a [`Backplane`](crate::Backplane) delivers and keeps in history.
/// Cheap to clone (the message is shared).
#[derive(Debug, Clone)]
pub struct Publication {
    /// The topic.
    pub topic: Arc<str>,
    /// Its offset in the topic's stream.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: Arc<str>,
    /// The message, encoded once for every subscriber.
    pub message: PreparedMessage,
}

impl Publication {
    /// The position of this publication.
    pub fn position(&self) -> StreamPosition {
        StreamPosition::new(self.offset, &*self.epoch)
    }
}

/// How much history a topic keeps: the last `max_messages` messages, none
/// older than `max_age`. Both limits apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryLimits {
    /// Most messages kept (0: no history; offsets and epochs are still
    /// assigned).
    pub max_messages: usize,
    /// Oldest message kept (`None`: no age limit).
    pub max_age: Option<Duration>,
}

impl HistoryLimits {
    /// No history (the default).
    pub const NONE: HistoryLimits = HistoryLimits {
        max_messages: 0,
        max_age: None,
    };

    /// Keep the last `max_messages` messages, none older than `max_age`.
    pub fn new(max_messages: usize, max_age: Option<Duration>) -> Self {
        Self {
            max_messages,
            max_age,
        }
    }
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self::NONE
    }
}

/// What a [`Backplane`](crate::Backplane) answers to a history query.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The publications kept after the asked position (all kept, when no
    /// position was given), oldest first, offsets increasing.
    pub publications: Vec<Publication>,
    /// The stream's current position (offset of its last message).
    pub position: StreamPosition,
    /// Whether `publications` is everything published after the asked
    /// position: the epoch matches and nothing since was trimmed.
    /// (`true` when no position was given.)
    pub complete: bool,
}

/// What [`Hub::subscribe_since`](crate::Hub::subscribe_since) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Whether the subscriber got everything published since its
    /// position: the epoch matched, every message since was still in
    /// history and was queued. When `false`, the client should refetch the
    /// state it derives from the topic (live messages follow anyway).
    pub recovered: bool,
    /// Messages replayed from history (and from live messages that
    /// arrived while history was fetched) before live delivery started.
    pub replayed: usize,
    /// The position of the last message queued for this subscriber (or
    /// the stream's position when nothing was): the client's new position.
    pub position: StreamPosition,
}

/// A new random epoch: 16 hex digits.
pub fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}
