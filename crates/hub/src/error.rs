//! The crate's one error type.

use std::error::Error as StdError;
use std::fmt;

/// What went wrong in a [`Hub`](crate::Hub) call or a
/// [`Backplane`](crate::Backplane).
#[derive(Debug)]
#[non_exhaustive]
pub enum HubError {
    /// The topic name is refused: empty, longer than
    /// [`HubLimits::max_topic_len`](crate::HubLimits::max_topic_len), or
    /// holding a control character.
    InvalidTopic(&'static str),
    /// The hub already has [`HubLimits::max_topics`](crate::HubLimits::max_topics)
    /// topics with subscribers.
    TooManyTopics {
        /// The limit.
        limit: usize,
    },
    /// The connection already subscribes to
    /// [`HubLimits::max_topics_per_connection`](crate::HubLimits::max_topics_per_connection)
    /// topics.
    TooManyTopicsForConnection {
        /// The limit.
        limit: usize,
    },
    /// [`Hub::subscribe_since`](crate::Hub::subscribe_since) on a topic the
    /// connection already subscribes to (it already gets every message).
    AlreadySubscribed,
    /// The connection has ended or is closing (or was unsubscribed while
    /// its subscription was being set up).
    ConnectionClosed,
    /// The backplane failed (e.g. the broker cannot be reached): the
    /// message was *not* published, or the subscription not made.
    Backplane(Box<dyn StdError + Send + Sync>),
}

impl HubError {
    /// A backplane failure, for [`Backplane`](crate::Backplane)
    /// implementations.
    pub fn backplane(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Backplane(err.into())
    }

    /// Whether the backplane failed (the operation may succeed later).
    pub fn is_backplane(&self) -> bool {
        matches!(self, Self::Backplane(_))
    }

    /// Whether a limit refused the operation (topic name, topics per hub
    /// or per connection).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Self::InvalidTopic(_)
                | Self::TooManyTopics { .. }
                | Self::TooManyTopicsForConnection { .. }
        )
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidTopic(why) => write!(f, "invalid topic name: {why}"),
            Self::TooManyTopics { limit } => write!(f, "too many topics (limit {limit})"),
            Self::TooManyTopicsForConnection { limit } => {
                write!(f, "too many topics for one connection (limit {limit})")
            }
            Self::AlreadySubscribed => f.write_str("already subscribed to this topic"),
            Self::ConnectionClosed => f.write_str("connection closed"),
            Self::Backplane(e) => write!(f, "backplane: {e}"),
        }
    }
}

impl StdError for HubError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Backplane(e) => Some(&**e),
            _ => None,
        }
    }
}
