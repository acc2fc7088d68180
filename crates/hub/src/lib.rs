//! Pub/sub for [silverback] WebSockets: topics, encode-once
//! fan-out to bounded per-connection queues, slow-consumer policies,
//! presence, history with offsets and epochs, and a [`Backplane`] to run
//! on many nodes.
//!
//! ```
//! use silverback::{testing, Message};
//! use silverback_hub::Hub;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::new();
//! // A connection (in-memory here; a real server upgrades a TcpStream).
//! let (mut client, mut server) = testing::pair(Default::default(), Default::default());
//! // The server side subscribes its connection's sender...
//! hub.subscribe("room:lobby", &server.sender(), "alice").await?;
//! // ... and keeps receiving: that loop writes out what the hub queued.
//! tokio::spawn(async move { while server.recv().await.is_ok() {} });
//!
//! // Anyone may publish: another connection's task, an HTTP handler.
//! let pos = hub.publish("room:lobby", Message::text("hello")).await?;
//! assert_eq!(pos.offset, 1);
//! assert_eq!(client.recv().await?.as_text(), Some("hello"));
//! assert_eq!(hub.presence("room:lobby")[0].id, "alice");
//! assert_eq!(hub.stats().delivered, 1);
//! # Ok(()) }
//! ```
//!
//! # Subscribers are queues
//! A subscriber is a connection's [`WsSender`](silverback::WsSender): the
//! connection's one bounded send queue ([`QueueLimits`](silverback::QueueLimits),
//! in messages and bytes), shared by every topic it subscribes to and
//! written out, coalesced, by the task that receives on the connection.
//! A published message is a [`PreparedMessage`](silverback::PreparedMessage),
//! encoded once per wire form; each queue holds a reference to it.
//! Publishing never waits for a subscriber: the message is *offered* to
//! each queue, and when one is full the topic's [`Overflow`](silverback::Overflow)
//! policy decides — drop the oldest queued messages, drop the new one, or
//! close the connection (the default, [`DEFAULT_OVERFLOW`]: 1013 "slow
//! consumer", so the client reconnects and recovers from history). A
//! subscriber that never reads costs at most its queue's limits and slows
//! nobody else. Every drop is counted: [`Hub::stats`], [`Hub::topic_stats`].
//!
//! A connection's subscriptions end with [`Hub::unsubscribe_all`] (call it
//! when the connection ends) or lazily, when a publication finds its
//! queue closed.
//!
//! # Ordering
//! Messages of one topic reach every subscriber in the order of their
//! offsets, the order the [`Backplane`] gave them. Messages of different
//! topics to one connection are in the order they were fanned out.
//!
//! # History and recovery
//! Each topic's stream numbers its messages (`offset` 1, 2, 3, …) within
//! an `epoch` that changes when history is lost (see [`history`]). With
//! history enabled ([`HistoryLimits`]: a count and an age, per hub or per
//! topic), a client that kept the [`StreamPosition`] of its last message
//! reconnects with [`Hub::subscribe_since`]: what it missed is queued
//! first, then live messages, without gap or duplicate, and
//! [`Recovery::recovered`] says whether it missed nothing.
//!
//! # Wire forms: codecs and the `pubsub.v1` envelope
//! By default a subscriber gets the published message as it is. A
//! subscriber given a [`Codec`] ([`Hub::subscribe_with`],
//! [`SubscribeOptions`]) gets the codec's encoding of each
//! [`Publication`] instead — e.g. [`envelope::EnvelopeCodec`], the JSON
//! `message` envelope with the topic, offset and epoch that `silverback
//! serve --pubsub` sends to `pubsub.v1` clients. Encoding happens once per
//! publication and codec, not per subscriber. [`envelope`] also parses
//! and validates that protocol's requests.
//!
//! # Presence
//! [`Hub::subscriber_count`] and [`Hub::presence`] (the [`SubscriberInfo`]
//! given at subscribe time), for this hub's connections;
//! [`Hub::presence_count`] adds the other nodes' subscribers that the
//! backplane knows of.
//!
//! # Many nodes
//! Publications go out through the [`Backplane`] and come back from it,
//! also to the node that published, so every node sees the same stream.
//! [`MemoryBackplane`] is the in-process default; a broker implements the
//! same trait: with the `redis` feature, `backplane::redis::RedisBackplane`
//! (history in Redis Streams, catch-up after an outage, subscribers told
//! through [`Delivery::reset`] when history was lost, presence across
//! nodes, sharding over several Redis servers).
//!
//! # Limits
//! [`HubLimits`]: topic names (256 bytes, no control characters), topics
//! per connection (1024) and per hub (100,000); refusals are
//! [`HubError`]s.
//!
//! # Concurrency
//! Each topic keeps its subscribers in a `Vec` behind a mutex: a
//! publication takes it once and offers the message to each queue in a
//! loop, without allocating per subscriber. A topic's publications are
//! fanned out one at a time (that is what keeps them in order); different
//! topics fan out in parallel.

#![forbid(unsafe_code)]

pub mod backplane;
mod codec;
pub mod envelope;
mod error;
pub mod history;
mod hub;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
mod presence;
mod stats;
mod topic;

pub use backplane::{Backplane, BoxFuture, Delivery, MemoryBackplane};
pub use codec::Codec;
pub use error::HubError;
pub use history::{History, HistoryLimits, Publication, Recovery, StreamPosition};
pub use hub::{Hub, HubBuilder, HubLimits, SubscribeOptions, DEFAULT_OVERFLOW};
pub use presence::SubscriberInfo;
pub use stats::{HubStats, TopicStats};
pub use topic::TopicOptions;
