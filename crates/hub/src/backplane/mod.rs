//! The [`Backplane`]: what carries messages between publishers and the
//! hubs that deliver them, on one node or many.
//!
//! A [`Hub`](crate::Hub) never delivers a published message directly:
//! [`Hub::publish`](crate::Hub::publish) hands it to the backplane, which
//! assigns its offset, keeps it in history and delivers it to every node
//! interested in the topic — this node included — through the
//! [`Delivery`] each node's hub attached. So the local and the remote
//! subscribers see the same stream, in the same order, with the same
//! offsets.
//!
//! [`MemoryBackplane`] (the default) runs in the process; a broker-backed
//! backplane (Redis, NATS) implements the same trait, one instance per
//! node.
//!
//! # Contract
//! - **Offsets**: per topic, the backplane assigns offsets 1, 2, 3, … in
//!   publish order, dense (no gap, no reuse) within an epoch.
//! - **Epoch**: a string naming the topic's stream; it changes whenever the
//!   stream's history or offset counter is lost (process restart, broker
//!   flush, stream expiry). Offsets of different epochs are not
//!   comparable. A new epoch may start again at offset 1.
//! - **Ordering**: [`Delivery::deliver`] is called for a topic in offset
//!   order and never concurrently for the same topic (calls for different
//!   topics may run in parallel). A backplane that may redeliver (at least
//!   once) is allowed to: the hub drops offsets it has already delivered.
//! - **Interest**: a node gets deliveries for a topic only between its
//!   [`subscribe`](Backplane::subscribe) (on its first local subscriber)
//!   and [`unsubscribe`](Backplane::unsubscribe) (after its last). Once
//!   `subscribe` has returned, every later publication is delivered.
//! - **History**: [`history`](Backplane::history) answers from the same
//!   stream, with the limits given at publish time.
//! - **Errors**: a `publish` that cannot reach the broker returns an
//!   error: it never drops silently. Delivery errors after a successful
//!   publish (a node gone) are the broker's and show as gaps in offsets,
//!   which `subscribe_since` recovers from history.
//! - **Non-blocking delivery**: `deliver` is synchronous and does not
//!   wait (it offers the message to bounded queues); a backplane may call
//!   it from its own reader task or, in memory, from the publisher's.

mod memory;
#[cfg(feature = "redis")]
pub mod redis;

pub use memory::MemoryBackplane;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use silverback::PreparedMessage;

use crate::error::HubError;
use crate::history::{History, HistoryLimits, Publication, StreamPosition};

/// A boxed future, `Send`: what the async [`Backplane`] methods return
/// (so the trait stays object-safe without `async-trait`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The node side of a backplane: where it delivers the publications of the
/// topics the node subscribed to. Implemented by the hub.
pub trait Delivery: Send + Sync + 'static {
    /// Delivers `publication` to this node's local subscribers (see the
    /// [contract](self#contract): per topic in offset order, not
    /// concurrently, never waits).
    fn deliver(&self, publication: &Publication);

    /// The topic's stream was reset or lost messages this node can no
    /// longer deliver (a broker that lost its data, a gap that history
    /// cannot fill): live delivery goes on after `position` (the next
    /// publications of the topic have offsets after it, in its epoch).
    /// The hub tells its subscribers (a [`Codec`](crate::Codec) may send
    /// them a notice, see [`Codec::reset`](crate::Codec::reset)) and
    /// forgets the offsets it delivered. Called like
    /// [`deliver`](Self::deliver): in order with it, never waiting. The
    /// default does nothing.
    fn reset(&self, topic: &str, position: &StreamPosition) {
        let _ = (topic, position);
    }

    /// Subscribers of `topic` on this node (for a backplane that shares
    /// presence between nodes). The default says 0.
    fn subscriber_count(&self, topic: &str) -> usize {
        let _ = topic;
        0
    }
}

/// Transport of a hub's messages: publish, delivery, interest, history.
/// See the [module docs](self) for the contract.
///
/// One instance serves one node (one [`Hub`](crate::Hub)).
pub trait Backplane: Send + Sync + 'static {
    /// Attaches the node's hub: from now on publications of the topics it
    /// [subscribes](Self::subscribe) to go to `node`. Called once, by the
    /// hub's constructor; a second call may fail.
    fn attach(&self, node: Arc<dyn Delivery>) -> Result<(), HubError>;

    /// Publishes `message` to `topic`, keeping it in history within
    /// `history` limits; returns its position. An error means the message
    /// was not published.
    ///
    /// Callers may have many publications in flight: the ones of a topic
    /// whose futures were first polled in some order (e.g. pushed into a
    /// `FuturesOrdered`) must get their offsets, and be delivered, in that
    /// order. Take the message in hand at the first poll (the memory
    /// backplane publishes there; the Redis one queues it for its writer).
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: PreparedMessage,
        history: HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, HubError>>;

    /// This node becomes interested in `topic` (its first local
    /// subscriber): once this returns, every later publication of the
    /// topic is delivered to the node.
    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>>;

    /// This node is no longer interested in `topic` (its last local
    /// subscriber left).
    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>>;

    /// The topic's history after `since` (everything kept when `None`),
    /// and its current position. `complete` says whether nothing since
    /// `since` is missing (same epoch, nothing trimmed).
    fn history<'a>(
        &'a self,
        topic: &'a str,
        since: Option<&'a StreamPosition>,
    ) -> BoxFuture<'a, Result<History, HubError>>;

    /// The topic's current position (offset of its last message, and
    /// epoch). The default asks [`history`](Self::history) and keeps only
    /// its position; a backplane that can answer without reading the
    /// history should.
    fn position<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<StreamPosition, HubError>> {
        Box::pin(async move { Ok(self.history(topic, None).await?.position) })
    }

    /// Subscribers of `topic` on the *other* nodes, as far as the
    /// backplane knows (nodes that died stop counting once their presence
    /// expires). The default, for a backplane without shared presence,
    /// says 0.
    fn remote_subscriber_count<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<usize, HubError>> {
        let _ = topic;
        Box::pin(async { Ok(0) })
    }

    /// Drops the topic's history and stream: the next publication starts a
    /// new epoch.
    fn remove_history<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), HubError>>;
}
