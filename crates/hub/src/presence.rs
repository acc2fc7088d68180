//! Presence: who subscribes to a topic on this node.
//!
//! Each subscription carries a [`SubscriberInfo`] given at subscribe time:
//! an `id` chosen by the application (a user id, a session id; several
//! connections may share one — a user with two tabs appears twice) and
//! optional JSON `data` (a display name, a role). Presence is what this
//! [`Hub`](crate::Hub) knows: its own connections. The count across
//! nodes is [`Hub::presence_count`](crate::Hub::presence_count), from the
//! backplane (the Redis one shares counts per topic).

use serde::{Deserialize, Serialize};

/// Metadata of one subscription, shown by
/// [`Hub::presence`](crate::Hub::presence).
///
/// ```
/// use silverback_hub::SubscriberInfo;
/// let anon: SubscriberInfo = "conn-42".into();
/// let alice = SubscriberInfo::new("user-1").with_data(serde_json::json!({"name": "Alice"}));
/// assert_eq!(anon.id, "conn-42");
/// assert_eq!(alice.data.unwrap()["name"], "Alice");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SubscriberInfo {
    /// The application's id for the subscriber.
    pub id: String,
    /// Anything else to show to others (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl SubscriberInfo {
    /// Info with this `id` and no data.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            data: None,
        }
    }

    /// With `data`.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl From<&str> for SubscriberInfo {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for SubscriberInfo {
    fn from(id: String) -> Self {
        Self::new(id)
    }
}
