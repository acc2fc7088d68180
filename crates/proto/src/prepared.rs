//! Messages encoded once for many peers (fan-out).

use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::extension::ExtensionError;
use crate::Message;

/// A message to send to many connections, encoded once per distinct wire
/// form (gorilla's `PreparedMessage`).
///
/// A server's frames are not masked, so every server-side peer without an
/// extension gets the same bytes: the payload is shared (a large one is
/// queued by reference, never copied per peer). With permessage-deflate,
/// the compressed payload is made once per distinct parameter set for
/// peers whose compressor does not keep context between messages
/// (`server_no_context_takeover`, the default of silverback's server);
/// a peer with context takeover compresses its own copy, as it must.
/// A client masks every frame with a fresh key: it encodes its own copy.
///
/// Cheap to clone (one reference count).
///
/// ```
/// use silverback_proto::{Connection, Message, PreparedMessage, Role};
/// let news = PreparedMessage::new(Message::text("market open"));
/// let mut peers = [Connection::new(Role::Server), Connection::new(Role::Server)];
/// for peer in &mut peers {
///     peer.send_prepared(&news).unwrap();
/// }
/// assert_eq!(peers[0].data_to_send(), peers[1].data_to_send());
/// ```
#[derive(Clone)]
pub struct PreparedMessage {
    inner: Arc<Inner>,
}

/// An encoded payload: its RSV bits and bytes, or `None` when the
/// extension sends the message as it is.
type Form = Option<(u8, Bytes)>;

struct Inner {
    message: Message,
    /// Encoded payloads by extension key: the RSV bits and the bytes, or
    /// `None` when the extension sends this message as it is.
    encoded: Mutex<Vec<(u64, Form)>>,
}

impl PreparedMessage {
    /// Prepares `message`. Nothing is encoded until the first send.
    pub fn new(message: impl Into<Message>) -> Self {
        Self {
            inner: Arc::new(Inner {
                message: message.into(),
                encoded: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.inner.message
    }

    /// The payload's length, before any extension.
    pub fn len(&self) -> usize {
        self.inner.message.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many encoded forms are held (one per extension key seen).
    pub fn encoded_forms(&self) -> usize {
        self.lock().len()
    }

    /// The form for extension `key`, made by `encode` the first time
    /// (under the lock: concurrent senders wait for it rather than encode
    /// the same bytes twice).
    pub(crate) fn encoded_with(
        &self,
        key: u64,
        encode: impl FnOnce(&Message) -> Result<Form, ExtensionError>,
    ) -> Result<Form, ExtensionError> {
        let mut forms = self.lock();
        if let Some((_, form)) = forms.iter().find(|(k, _)| *k == key) {
            return Ok(form.clone());
        }
        let form = encode(&self.inner.message)?;
        forms.push((key, form.clone()));
        Ok(form)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Form)>> {
        // The cache holds plain data: a panic while it was held leaves it
        // consistent.
        self.inner.encoded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("message", &self.inner.message)
            .field("encoded_forms", &self.encoded_forms())
            .finish()
    }
}

impl From<Message> for PreparedMessage {
    fn from(m: Message) -> Self {
        Self::new(m)
    }
}
