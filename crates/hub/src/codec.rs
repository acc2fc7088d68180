//! Codecs: the wire form of a publication for a kind of subscriber.

use silverback::PreparedMessage;

use crate::history::{Publication, StreamPosition};

/// Turns a publication into the message a subscriber gets: the raw
/// message (no codec), or a protocol's frame around it, such as the
/// [`pubsub.v1` envelope](crate::envelope) with the topic, the offset and
/// the epoch.
///
/// A codec is given at subscribe time
/// ([`SubscribeOptions::codec`](crate::SubscribeOptions::codec)). The hub
/// encodes each publication **once per codec**, not once per subscriber:
/// while fanning a publication out, the first subscriber with a given
/// codec (the same `Arc`, compared by address) has it encoded, and every
/// other subscriber with that codec gets a reference to the same
/// [`PreparedMessage`]. Share one `Arc` between the connections that speak
/// the same protocol. Messages replayed from history on
/// [recovery](crate::Hub::subscribe_since) are encoded for the recovering
/// subscriber.
///
/// `encode` runs under the topic's lock, on the publisher's task (or the
/// backplane's): keep it short, and never block.
///
/// ```
/// use silverback::{Message, PreparedMessage};
/// use silverback_hub::{Codec, Publication};
///
/// /// Prefixes text messages with their offset.
/// struct Numbered;
///
/// impl Codec for Numbered {
///     fn encode(&self, p: &Publication) -> PreparedMessage {
///         let text = p.message.message().as_text().unwrap_or("<binary>");
///         PreparedMessage::new(Message::text(format!("{}: {text}", p.offset)))
///     }
/// }
/// ```
pub trait Codec: Send + Sync + 'static {
    /// The message subscribers with this codec get for `publication`.
    fn encode(&self, publication: &Publication) -> PreparedMessage;

    /// The notice subscribers with this codec get when the topic's stream
    /// was reset under them (see [`Delivery::reset`](crate::Delivery::reset)):
    /// messages were lost, and the next ones follow `position`. `None`
    /// (the default): no notice.
    fn reset(&self, topic: &str, position: &StreamPosition) -> Option<PreparedMessage> {
        let _ = (topic, position);
        None
    }
}
